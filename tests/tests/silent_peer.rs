//! A peer that accepts TCP and never answers: connect and calls fail with a typed timeout at
//! their deadline; with a healthy second endpoint, calls go there.

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use etcd_tests::shared_endpoint;
use etcd_tokio::{Client, Config, Error, Get};

/// Accepts connections and holds them open without ever writing a byte.
struct SilentPeer {
    url: String,
    stop: Arc<AtomicBool>,
}

impl SilentPeer {
    fn start() -> SilentPeer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SilentPeer { url, stop }
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn calls_to_a_silent_peer_time_out_at_their_deadline() {
    let peer = SilentPeer::start();
    let mut config = Config::from_endpoints([peer.url.as_str()]).unwrap();
    config.connect_timeout = Duration::from_millis(500);
    let client = Client::with_config(config).unwrap();
    let started = Instant::now();
    let err = client
        .with_timeout(Duration::from_secs(2))
        .get("k")
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            Error::DeadlineExceeded {
                request_sent: false
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable() && !err.outcome_unknown());
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "failed after {took:?}"
    );
}

per_version!(a_healthy_second_endpoint_serves_the_calls, |version| {
    let peer = SilentPeer::start();
    let healthy = shared_endpoint(version);
    let mut config = Config::from_endpoints([peer.url.as_str(), healthy.as_str()]).unwrap();
    config.connect_timeout = Duration::from_millis(500);
    let client = Client::with_config(config).unwrap();
    let client = client.with_timeout(Duration::from_secs(2));
    let prefix = etcd_tests::unique_prefix("silent_peer");
    for i in 0..10 {
        client
            .put((format!("{prefix}{i}"), "v"))
            .await
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
    }
    let got = client.get(Get::new(&prefix).prefix()).await.unwrap();
    assert_eq!(got.count, 10);
});
