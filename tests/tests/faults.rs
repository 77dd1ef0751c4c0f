//! Faults through a TCP proxy that cuts connections: writes are never applied twice, and a
//! watcher receives every event exactly once, in order.

mod common;

use std::time::Duration;

use common::*;
use etcd_tests::{shared_endpoint, unique_prefix, TcpProxy};
use etcd_tokio::{Client, Config, Get, Watch};

fn proxied_client(proxy: &TcpProxy, timeout: Duration) -> Client {
    let mut config = Config::from_endpoints([proxy.url()]).unwrap();
    config.default_timeout = Some(timeout);
    config.reconnect_backoff_min = Duration::from_millis(10);
    config.reconnect_backoff_max = Duration::from_millis(200);
    Client::with_config(config).unwrap()
}

fn upstream(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

per_version!(
    puts_through_a_cutting_proxy_are_applied_at_most_once,
    |version| {
        let shared = shared_endpoint(version);
        let proxy = TcpProxy::start(upstream(&shared)).unwrap();
        let client = proxied_client(&proxy, Duration::from_secs(3));
        let direct = Client::connect([shared.as_str()]).unwrap();
        let key = format!("{}counter", unique_prefix("at_most_once"));
        proxy.cut_randomly(Duration::from_millis(2), Duration::from_millis(40), 7);
        let (mut ok, mut unknown, mut failed) = (0u32, 0u32, 0u32);
        for i in 0..200u32 {
            match client.put((key.as_str(), i.to_string())).await {
                Ok(_) => ok += 1,
                Err(e) if e.outcome_unknown() => unknown += 1,
                Err(e) => {
                    assert!(e.is_retryable(), "unexpected error {e:?}");
                    failed += 1;
                }
            }
        }
        proxy.stop_cutting();
        let version_now = direct
            .get(key.as_str())
            .await
            .unwrap()
            .kvs
            .first()
            .map_or(0, |kv| kv.version);
        println!(
        "{version}: {ok} ok, {unknown} unknown, {failed} not sent; key version {version_now}; {} cuts",
        proxy.total_cut()
    );
        assert!(proxy.total_cut() > 0, "the proxy must have cut connections");
        assert!(version_now <= 200);
        assert!(version_now >= ok as i64, "a reported success is missing");
        assert!(
            version_now <= (ok + unknown) as i64,
            "a put reported as not applied was applied"
        );
    }
);

per_version!(
    a_watcher_behind_a_cutting_proxy_sees_every_event_once,
    |version| {
        let shared = shared_endpoint(version);
        let proxy = TcpProxy::start(upstream(&shared)).unwrap();
        let watcher_client = proxied_client(&proxy, Duration::from_secs(5));
        let writer = Client::connect([shared.as_str()])
            .unwrap()
            .with_timeout(CALL_TIMEOUT);
        let prefix = unique_prefix("watch_cuts");
        let mut w = watcher_client
            .watch(Watch::new(&prefix).prefix())
            .await
            .unwrap();
        proxy.start_cutting(Duration::from_millis(200));
        const N: usize = 5000;
        let writes = {
            let prefix = prefix.clone();
            tokio::spawn(async move {
                let mut tasks = Vec::new();
                for t in 0..8 {
                    let writer = writer.clone();
                    let prefix = prefix.clone();
                    tasks.push(tokio::spawn(async move {
                        for i in (t..N).step_by(8) {
                            writer
                                .put((format!("{prefix}{i:05}"), "v"))
                                .await
                                .expect("direct put");
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
        };
        let mut seen = std::collections::HashSet::new();
        let mut last_rev = 0;
        while seen.len() < N {
            let resp = tokio::time::timeout(Duration::from_secs(30), w.next())
                .await
                .expect("events keep coming")
                .expect("watcher alive")
                .expect("no watch error");
            for e in resp.events {
                let kv = e.kv.unwrap();
                assert!(
                    kv.mod_revision > last_rev,
                    "out of order or repeated revision"
                );
                last_rev = kv.mod_revision;
                assert!(seen.insert(kv.key.clone()), "event delivered twice");
            }
        }
        writes.await.unwrap();
        proxy.stop_cutting();
        assert!(proxy.total_cut() > 0);
        // Nothing more is pending for this prefix.
        let count = Client::connect([shared.as_str()])
            .unwrap()
            .get(Get::new(&prefix).prefix().count_only())
            .await
            .unwrap()
            .count;
        assert_eq!(count as usize, N);
        println!(
            "{version}: {N} events once and in order across {} cuts",
            proxy.total_cut()
        );
    }
);
