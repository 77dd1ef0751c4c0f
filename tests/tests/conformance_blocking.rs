//! What only the blocking client promises: many threads at once without deadlock, calls from
//! inside async runtimes, and an error (never a hang) for every call in flight when the
//! client is dropped. The KV/txn/unary behaviour itself is in the conformance suite.

use std::net::TcpListener;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use etcd_blocking::{Client, Config, Error, Get, Put};
use etcd_tests::{shared_endpoint, unique_prefix, EtcdServer, EtcdVersion};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn client(endpoint: &str) -> Client {
    let mut config = Config::from_endpoints([endpoint]).expect("config");
    config.default_timeout = Some(CALL_TIMEOUT);
    Client::with_config(config).expect("client")
}

#[test]
fn sixty_four_threads_of_a_thousand_puts() {
    const THREADS: usize = 64;
    const PUTS: usize = 1000;
    let server = EtcdServer::builder(EtcdVersion::V3_5)
        .start()
        .expect("etcd");
    let client = client(&server.client_url());
    let (done, finished) = mpsc::channel();
    let started = Instant::now();
    for t in 0..THREADS {
        let client = client.clone();
        let done = done.clone();
        thread::spawn(move || {
            for i in 0..PUTS {
                client
                    .put(Put::new(format!("t{t:02}/{i:04}"), "v"))
                    .unwrap_or_else(|e| panic!("thread {t}, put {i}: {e}"));
            }
            done.send(t).unwrap();
        });
    }
    // A deadlock shows as a thread that never reports (a panicked one drops its sender).
    for _ in 0..THREADS {
        finished
            .recv_timeout(Duration::from_secs(300))
            .expect("every thread finishes");
    }
    let took = started.elapsed();
    eprintln!(
        "{} puts from {THREADS} threads in {took:?} ({:.0}/s)",
        THREADS * PUTS,
        (THREADS * PUTS) as f64 / took.as_secs_f64()
    );
    let all = client.get(Get::new("t").prefix().count_only()).unwrap();
    assert_eq!(all.count as usize, THREADS * PUTS);
}

/// Inside `#[tokio::main]`: on the runtime's own thread (blocking it, as any blocking call
/// does), in a spawned task, and in `spawn_blocking`; the client is also built and dropped
/// there.
#[tokio::main(flavor = "current_thread")]
async fn inside_tokio_main(endpoint: String, prefix: String) {
    let client = client(&endpoint);
    client.put((format!("{prefix}main"), "1")).unwrap();
    let in_task = client.clone();
    let key = format!("{prefix}task");
    tokio::spawn(async move { in_task.put((key, "2")).unwrap() })
        .await
        .unwrap();
    let in_pool = client.clone();
    let key = format!("{prefix}pool");
    tokio::task::spawn_blocking(move || in_pool.put((key, "3")).unwrap())
        .await
        .unwrap();
    let got = client.get(Get::new(&prefix).prefix()).unwrap();
    assert_eq!(got.count, 3);
    // Timers of the runtime still work around blocking calls.
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(client);
}

#[test]
fn calls_inside_a_tokio_runtime() {
    inside_tokio_main(
        shared_endpoint(EtcdVersion::V3_5),
        unique_prefix("blocking_tokio"),
    );
}

#[test]
fn calls_inside_a_smol_runtime() {
    let endpoint = shared_endpoint(EtcdVersion::V3_4);
    let prefix = unique_prefix("blocking_smol");
    smol::block_on(async {
        let client = client(&endpoint);
        client.put((format!("{prefix}a"), "1")).unwrap();
        let in_task = client.clone();
        let key = format!("{prefix}b");
        smol::spawn(async move { in_task.put((key, "2")).unwrap() }).await;
        assert_eq!(client.get(Get::new(&prefix).prefix()).unwrap().count, 2);
    });
}

/// Starts `n` threads that each make one call with `call` on its own handle; returns the
/// receiver of (result, time the call returned).
fn in_flight(
    client: &Client,
    n: usize,
    call: impl Fn(&etcd_blocking::Handle) -> Result<(), Error> + Send + Sync + 'static,
) -> mpsc::Receiver<(Result<(), Error>, Instant)> {
    let (tx, rx) = mpsc::channel();
    let call = Arc::new(call);
    let ready = Arc::new(Barrier::new(n + 1));
    for _ in 0..n {
        let (handle, tx, call, ready) = (client.handle(), tx.clone(), call.clone(), ready.clone());
        thread::spawn(move || {
            ready.wait();
            let result = call(&handle);
            let _ = tx.send((result, Instant::now()));
        });
    }
    ready.wait();
    // Let every call reach the driver (and, for a live server, the server).
    thread::sleep(Duration::from_millis(500));
    rx
}

/// Drops `client` and checks every one of the `n` calls returns `ClientClosed` within 1 s.
fn drop_and_expect_closed(
    client: Client,
    rx: mpsc::Receiver<(Result<(), Error>, Instant)>,
    n: usize,
) {
    assert!(rx.try_recv().is_err(), "a call finished before the drop");
    let handle = client.handle();
    let dropped = Instant::now();
    drop(client);
    let deadline = dropped + Duration::from_secs(1);
    let mut latest = Duration::ZERO;
    for i in 0..n {
        let left = deadline.saturating_duration_since(Instant::now());
        let (result, at) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("only {i} of {n} calls returned within 1 s of the drop"));
        assert!(matches!(result, Err(Error::ClientClosed)), "{result:?}");
        latest = latest.max(at.duration_since(dropped));
    }
    eprintln!("{n} in-flight calls all failed {latest:?} after the drop");
    // A handle outliving the client fails at once too.
    assert!(matches!(handle.get("k"), Err(Error::ClientClosed)));
}

#[test]
fn a_clone_or_a_handle_keeps_working_while_a_client_clone_lives() {
    let first = client(&shared_endpoint(EtcdVersion::V3_4));
    let second = first.clone();
    let handle = first.handle();
    drop(first);
    let key = unique_prefix("blocking_clone");
    second.put((key.clone(), "v")).unwrap();
    assert_eq!(handle.get(key.clone()).unwrap().count, 1);
    drop(second);
    assert!(matches!(handle.get(key), Err(Error::ClientClosed)));
}

#[test]
fn a_call_returns_at_its_deadline() {
    // A listener that never accepts: the kernel completes the TCP handshake, then nothing is
    // ever read or written.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let client = Client::connect([url.as_str()]).unwrap();
    let timeout = Duration::from_millis(300);
    let timed = client.with_timeout(timeout);
    let handle = timed.handle();
    let calls: [&dyn Fn() -> Result<(), Error>; 3] = [
        &|| timed.get("k").map(drop),
        &|| timed.put(("k", "v")).map(drop),
        &|| handle.get("k").map(drop),
    ];
    for call in calls {
        let started = Instant::now();
        let result = call();
        let took = started.elapsed();
        assert!(
            matches!(result, Err(Error::DeadlineExceeded { .. })),
            "{result:?}"
        );
        assert!(took >= timeout && took < Duration::from_secs(2), "{took:?}");
    }
}

#[test]
fn dropping_the_client_fails_100_calls_waiting_on_a_silent_peer() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    // No deadline: without the drop these calls would wait forever.
    let client = Client::connect([url.as_str()]).unwrap();
    let rx = in_flight(&client, 100, |h| h.get("k").map(drop));
    drop_and_expect_closed(client, rx, 100);
}

#[test]
fn dropping_the_client_fails_100_calls_waiting_on_the_server() {
    // Lock calls on a held lock wait on the server: 100 HTTP/2 streams open at the drop.
    // (Lease 0: each waiter gets a fresh lease of its own on the server; with the holder's
    // lease a waiter would own the lock at once.) On a server of the test's own: abandoning
    // 100 waiters at once can wedge etcd 3.5.1's internal watch stream that its Lock and
    // Election services share (handlers left in `waitDelete`), and every later Lock,
    // Campaign or Proclaim on that server would then hang.
    let server = EtcdServer::start(EtcdVersion::V3_5).expect("etcd");
    let endpoint = server.client_url();
    let name = unique_prefix("blocking_drop_lock");
    let holder = client(&endpoint);
    let lease = holder.lease_grant(30).unwrap().id;
    let held = holder.lock(name.clone(), lease).unwrap();
    let client = Client::connect([endpoint.as_str()]).unwrap();
    let rx = in_flight(&client, 100, move |h| h.lock(name.clone(), 0).map(drop));
    drop_and_expect_closed(client, rx, 100);
    holder.unlock(held.key).unwrap();
    holder.lease_revoke(lease).unwrap();
}
