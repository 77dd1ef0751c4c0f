//! Watch at scale and under faults, against real servers (3.4.23 and 3.5.1): many watchers on
//! one stream, progress notifications, resync after compaction, members killed and restarted,
//! a slow consumer with bounded memory, and cancellation reaching the server.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etcd_tests::{EtcdCluster, EtcdServer, EtcdVersion};
use etcd_tokio::{Client, Config, Error, Get, Put, Watch, WatchResponseKind, Watcher};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

async fn next_events(w: &mut Watcher, n: usize) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    while out.len() < n {
        let resp = tokio::time::timeout(Duration::from_secs(20), w.next())
            .await
            .expect("events in time")
            .expect("watcher running")
            .expect("no error");
        for e in resp.events {
            let kv = e.kv.unwrap();
            out.push((
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            ));
        }
    }
    out
}

per_version!(
    a_thousand_watchers_and_a_prefix_watcher_on_one_connection,
    |version| {
        let (c, p) = shared_client(version, "watch_1000");
        let c = c.with_timeout(CALL_TIMEOUT);
        let mut creating = Vec::new();
        for i in 0..1000 {
            let c = c.clone();
            let key = format!("{p}k{i:04}");
            creating.push(tokio::spawn(async move { c.watch(Watch::new(key)).await }));
        }
        let mut watchers = Vec::new();
        for w in creating {
            watchers.push(w.await.unwrap().unwrap());
        }
        let mut prefix = c.watch(Watch::new(&p).prefix()).await.unwrap();
        for round in 0..2 {
            let mut writes = Vec::new();
            for i in 0..1000 {
                let c = c.clone();
                let key = format!("{p}k{i:04}");
                writes.push(tokio::spawn(async move {
                    c.put((key, round.to_string())).await
                }));
            }
            for w in writes {
                w.await.unwrap().unwrap();
            }
        }
        for (i, w) in watchers.iter_mut().enumerate() {
            let got = next_events(w, 2).await;
            assert_eq!(got.len(), 2, "watcher {i}");
            assert!(got.iter().all(|(k, _)| *k == format!("{p}k{i:04}")));
            assert!(got[0].1 < got[1].1);
        }
        let all = next_events(&mut prefix, 2000).await;
        assert_eq!(all.len(), 2000);
        assert!(
            all.windows(2).all(|w| w[0].1 < w[1].1),
            "prefix events in revision order"
        );
    }
);

per_version!(progress_notifications_at_the_server_interval, |version| {
    let server = blocking(move || {
        EtcdServer::builder(version)
            .flag("--experimental-watch-progress-notify-interval", "200ms")
            .start()
    })
    .await
    .expect("etcd");
    let c = client_for(&server, |_| {});
    let rev = c
        .put(("other", "x"))
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    let mut w = c.watch(Watch::new("idle").progress_notify()).await.unwrap();
    let started = Instant::now();
    let mut progress = 0;
    while progress < 3 {
        let resp = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("progress in time")
            .unwrap()
            .unwrap();
        assert_eq!(resp.kind, WatchResponseKind::Progress);
        assert!(resp.events.is_empty());
        assert!(resp.header.revision >= rev);
        progress += 1;
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
});

per_version!(
    resync_mode_delivers_the_state_then_later_events,
    |version| {
        let server = blocking(move || EtcdServer::start(version))
            .await
            .expect("etcd");
        let c = client_for(&server, |_| {});
        let r1 = c
            .put(("cache/a", "1"))
            .await
            .unwrap()
            .header
            .unwrap()
            .revision;
        c.put(("cache/b", "1")).await.unwrap();
        c.put(("cache/a", "2")).await.unwrap();
        let r4 = c.delete("cache/b").await.unwrap().header.unwrap().revision;
        c.compact(r4).await.unwrap();
        // Without resync: the typed compaction error.
        let plain = c
            .watch(Watch::new("cache/").prefix().start_revision(r1))
            .await;
        let err = match plain {
            Err(e) => e,
            Ok(mut w) => w.next().await.unwrap().unwrap_err(),
        };
        assert!(matches!(err, Error::WatchCompacted { .. }), "{err:?}");
        // With resync: the current state, then what happens next.
        let mut w = c
            .watch(
                Watch::new("cache/")
                    .prefix()
                    .start_revision(r1)
                    .resync_on_compaction(),
            )
            .await
            .unwrap();
        let snapshot = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(snapshot.kind, WatchResponseKind::Snapshot);
        let state: Vec<(String, String)> = snapshot
            .events
            .iter()
            .map(|e| {
                let kv = e.kv.as_ref().unwrap();
                (
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                )
            })
            .collect();
        assert_eq!(state, [("cache/a".to_string(), "2".to_string())]);
        c.put(("cache/c", "3")).await.unwrap();
        let later = next_events(&mut w, 1).await;
        assert_eq!(later[0].0, "cache/c");
    }
);

per_version!(
    every_event_once_while_members_are_killed_and_restarted,
    |version| {
        let cluster = Arc::new(
            blocking(move || EtcdCluster::start(version, 3))
                .await
                .expect("cluster"),
        );
        let urls = cluster.client_urls();
        let watcher_client = Client::connect(urls.clone()).unwrap();
        let mut w = watcher_client
            .watch(Watch::new("chaos/").prefix())
            .await
            .unwrap();
        let mut writer_config = Config::from_endpoints(urls.clone()).unwrap();
        writer_config.default_timeout = Some(Duration::from_secs(10));
        let writer = Client::with_config(writer_config).unwrap();
        const N: usize = 5000;
        let chaos = {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                for victim in 0..3 {
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    let c = cluster.clone();
                    blocking(move || {
                        c.member(victim).kill().unwrap();
                        std::thread::sleep(Duration::from_millis(500));
                        c.member(victim).restart().unwrap();
                    })
                    .await;
                }
            })
        };
        let writes = tokio::spawn(async move {
            let mut tasks = Vec::new();
            for t in 0..8 {
                let writer = writer.clone();
                tasks.push(tokio::spawn(async move {
                    for i in (t..N).step_by(8) {
                        // A write cut off by the kill may or may not have been applied: retry it
                        // until it is known to be (an extra revision of the same key is fine).
                        loop {
                            match writer.put((format!("chaos/{i:05}"), "v")).await {
                                Ok(_) => break,
                                Err(e) => {
                                    assert!(e.is_retryable(), "{e:?}");
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                            }
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let mut keys = HashSet::new();
        let mut last = 0;
        while keys.len() < N {
            let resp = tokio::time::timeout(Duration::from_secs(60), w.next())
                .await
                .expect("events keep coming")
                .expect("watcher alive")
                .expect("no error");
            for e in resp.events {
                let kv = e.kv.unwrap();
                assert!(kv.mod_revision > last, "revision order, no repeats");
                last = kv.mod_revision;
                keys.insert(kv.key.clone());
            }
        }
        writes.await.unwrap();
        chaos.await.unwrap();
        assert_eq!(keys.len(), N);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_keeps_memory_bounded_v3_5() {
    let server = blocking(|| {
        EtcdServer::builder(EtcdVersion::V3_5)
            .flag("--quota-backend-bytes", "4294967296")
            .start()
    })
    .await
    .expect("etcd");
    let c = client_for(&server, |_| {});
    let mut w = c.watch(Watch::new("big/").prefix()).await.unwrap();
    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    let before = rss();
    let value = vec![b'v'; 1 << 20];
    let writer = Client::connect([server.client_url()]).unwrap();
    let mut writes = Vec::new();
    for i in 0..200 {
        let writer = writer.clone();
        let value = value.clone();
        writes.push(tokio::spawn(async move {
            writer.put((format!("big/{i:03}"), value)).await
        }));
        if writes.len() == 4 {
            for t in writes.drain(..) {
                t.await.unwrap().unwrap();
            }
        }
    }
    for t in writes {
        t.await.unwrap().unwrap();
    }
    drop(value);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = rss();
    let growth = peak.saturating_sub(before);
    println!(
        "RSS grew by {} MiB while 200 MiB of events waited",
        growth >> 20
    );
    assert!(growth < 64 << 20, "RSS grew by {} MiB", growth >> 20);
    let got = next_events(&mut w, 200).await;
    assert_eq!(got.len(), 200);
    let _ = Put::new("unused", "");
    let _ = Get::new("unused");
}

per_version!(dropping_watchers_cancels_them_on_the_server, |version| {
    let server = blocking(move || EtcdServer::start(version))
        .await
        .expect("etcd");
    let c = client_for(&server, |_| {});
    let port = server.client_port();
    let metric = move || {
        let body = etcd_tests::http::get(port, "/metrics", Duration::from_secs(5))
            .unwrap()
            .body;
        body.lines()
            .find(|l| l.starts_with("etcd_debugging_mvcc_watcher_total "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap() as i64
    };
    let base = blocking(metric).await;
    let mut watchers = Vec::new();
    for i in 0..100 {
        watchers.push(c.watch(Watch::new(format!("m/{i}"))).await.unwrap());
    }
    assert_eq!(blocking(metric).await, base + 100);
    drop(watchers);
    let dropped = Instant::now();
    loop {
        let now = blocking(metric).await;
        if now == base {
            break;
        }
        assert!(
            dropped.elapsed() < Duration::from_secs(1),
            "still {now} watchers after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
});

// Identical watches share one server watch by default, and every one of them still gets every
// event once, in order, also after the leader (the first) is cancelled; `coalesce(false)` gets
// a server watch of its own.
per_version!(identical_watchers_cost_the_server_one_watch, |version| {
    let server = blocking(move || EtcdServer::start(version))
        .await
        .expect("etcd");
    let c = client_for(&server, |_| {});
    let port = server.client_port();
    let metric = move || {
        let body = etcd_tests::http::get(port, "/metrics", Duration::from_secs(5))
            .unwrap()
            .body;
        body.lines()
            .find(|l| l.starts_with("etcd_debugging_mvcc_watcher_total "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap() as i64
    };
    let base = blocking(metric).await;
    let mut set = c.watch_set();
    let mut ids = Vec::new();
    for _ in 0..300 {
        ids.push(set.add(Watch::new("same/").prefix()).await.unwrap());
    }
    assert_eq!(blocking(metric).await, base + 1, "one server watch for 300");
    let mut own = c
        .watch(Watch::new("same/").prefix().coalesce(false))
        .await
        .unwrap();
    assert_eq!(blocking(metric).await, base + 2);

    // Collects `n` events for every watcher of the set, checking order and uniqueness.
    async fn collect(
        set: &mut etcd_tokio::WatchSet,
        live: &[etcd_tokio::WatchId],
        n: usize,
    ) -> std::collections::HashMap<etcd_tokio::WatchId, Vec<i64>> {
        let mut got: std::collections::HashMap<_, Vec<i64>> = std::collections::HashMap::new();
        while live.iter().any(|id| got.get(id).map_or(0, Vec::len) < n) {
            let (id, resp) = tokio::time::timeout(Duration::from_secs(20), set.next())
                .await
                .expect("events in time")
                .expect("set not empty");
            let resp = resp.expect("no error");
            let revs = got.entry(id).or_default();
            for e in resp.events.iter() {
                let rev = e.kv.as_ref().unwrap().mod_revision;
                assert!(
                    revs.last().is_none_or(|&last| last < rev),
                    "{id:?} out of order"
                );
                revs.push(rev);
            }
        }
        got
    }

    let mut first = Vec::new();
    for i in 0..20 {
        let put = c.put((format!("same/{i}"), "v")).await.unwrap();
        first.push(put.header.unwrap().revision);
    }
    let got = collect(&mut set, &ids, 20).await;
    for id in &ids {
        assert_eq!(got[id], first, "{id:?}");
    }
    assert_eq!(next_events(&mut own, 20).await.len(), 20);

    // Cancel the leader and half the others: the rest go on, on the same server watch.
    for id in ids.drain(..150) {
        set.cancel(id);
    }
    let mut second = Vec::new();
    for i in 0..10 {
        let put = c.put((format!("same/{i}"), "w")).await.unwrap();
        second.push(put.header.unwrap().revision);
    }
    let got = collect(&mut set, &ids, 10).await;
    for id in &ids {
        assert_eq!(got[id], second, "{id:?}");
    }
    assert_eq!(blocking(metric).await, base + 2);
    drop(set);
    drop(own);
    let dropped = Instant::now();
    while blocking(metric).await != base {
        assert!(
            dropped.elapsed() < Duration::from_secs(2),
            "server watches left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
});
