//! Watch against real servers (3.4.23 and 3.5.1).

mod common;

use std::time::Duration;

use common::*;
use etcd_tests::EtcdServer;
use etcd_tokio::proto::mvccpb::event::EventType;
use etcd_tokio::{Delete, Error, Put, Watch, WatchResponse, WatchResponseKind, Watcher};

const WAIT: Duration = Duration::from_secs(10);

async fn next(w: &mut Watcher) -> WatchResponse {
    tokio::time::timeout(WAIT, w.next())
        .await
        .expect("a watch response in time")
        .expect("the watcher is still running")
        .expect("no watch error")
}

/// Collects `n` events (keys and types) from a watcher.
async fn events(w: &mut Watcher, n: usize) -> Vec<(String, EventType, i64)> {
    let mut out = Vec::new();
    while out.len() < n {
        let resp = next(w).await;
        assert_eq!(resp.kind, WatchResponseKind::Events);
        for e in resp.events {
            let kv = e.kv.expect("kv");
            out.push((
                String::from_utf8_lossy(&kv.key).into_owned(),
                EventType::try_from(e.r#type).unwrap_or(EventType::Put),
                kv.mod_revision,
            ));
        }
    }
    out
}

per_version!(prefix_watch_sees_puts_and_deletes_in_order, |version| {
    let (c, p) = shared_client(version, "watch_prefix");
    let mut w = c.watch(Watch::new(&p).prefix()).await.unwrap();
    assert!(w.created_revision() > 0);
    c.put((format!("{p}a"), "1")).await.unwrap();
    c.put((format!("{p}b"), "2")).await.unwrap();
    c.delete(format!("{p}a")).await.unwrap();
    c.put(("elsewhere", "x")).await.unwrap();
    let got = events(&mut w, 3).await;
    let keys: Vec<(String, EventType)> = got
        .iter()
        .map(|(k, t, _)| (k.strip_prefix(&p).unwrap().to_string(), *t))
        .collect();
    assert_eq!(
        keys,
        [
            ("a".to_string(), EventType::Put),
            ("b".to_string(), EventType::Put),
            ("a".to_string(), EventType::Delete)
        ]
    );
    assert!(got.windows(2).all(|w| w[0].2 < w[1].2));
});

per_version!(range_watch_a_to_c, |version| {
    let (c, p) = shared_client(version, "watch_range");
    let mut w = c
        .watch(Watch::new(format!("{p}a")).range_end(format!("{p}c")))
        .await
        .unwrap();
    for k in ["a", "b", "bar", "c", "d"] {
        c.put((format!("{p}{k}"), "v")).await.unwrap();
    }
    let got: Vec<String> = events(&mut w, 3)
        .await
        .into_iter()
        .map(|(k, _, _)| k.strip_prefix(&p).unwrap().to_string())
        .collect();
    assert_eq!(got, ["a", "b", "bar"]);
});

per_version!(filters_and_prev_kv, |version| {
    let (c, p) = shared_client(version, "watch_filters");
    let mut no_put = c.watch(Watch::new(&p).prefix().no_put()).await.unwrap();
    let mut no_delete = c
        .watch(Watch::new(&p).prefix().no_delete().prev_kv())
        .await
        .unwrap();
    c.put((format!("{p}k"), "1")).await.unwrap();
    c.put((format!("{p}k"), "2")).await.unwrap();
    c.delete(format!("{p}k")).await.unwrap();
    let deletes = events(&mut no_put, 1).await;
    assert_eq!(deletes[0].1, EventType::Delete);
    let resp1 = next(&mut no_delete).await;
    let resp2 = if resp1.events.len() == 2 {
        resp1.clone()
    } else {
        next(&mut no_delete).await
    };
    let all: Vec<_> = if resp1.events.len() == 2 {
        resp1.events
    } else {
        resp1.events.into_iter().chain(resp2.events).collect()
    };
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|e| e.r#type == EventType::Put as i32));
    assert!(all[0].prev_kv.is_none());
    assert_eq!(&all[1].prev_kv.as_ref().expect("prev kv").value[..], b"1");
});

per_version!(compacted_start_revision_is_a_typed_error, |version| {
    let server = EtcdServer::builder(version).start().expect("etcd");
    let c = client_for(&server, |_| {});
    let r1 = c.put(("k", "1")).await.unwrap().header.unwrap().revision;
    let r2 = c.put(("k", "2")).await.unwrap().header.unwrap().revision;
    c.compact(r2).await.unwrap();
    let result = c.watch(Watch::new("k").start_revision(r1)).await;
    let err = match result {
        Err(e) => e,
        Ok(mut w) => tokio::time::timeout(WAIT, w.next())
            .await
            .expect("in time")
            .expect("an item")
            .expect_err("a compaction error"),
    };
    assert_eq!(
        err,
        Error::WatchCompacted {
            compact_revision: r2
        }
    );
    // From the compact revision on, the history is there.
    let mut w = c.watch(Watch::new("k").start_revision(r2)).await.unwrap();
    let got = events(&mut w, 1).await;
    assert_eq!(got[0].2, r2);
});

per_version!(
    history_from_a_start_revision_and_request_progress,
    |version| {
        let (c, p) = shared_client(version, "watch_history");
        let first = c
            .put((format!("{p}h"), "1"))
            .await
            .unwrap()
            .header
            .unwrap()
            .revision;
        c.put((format!("{p}h"), "2")).await.unwrap();
        let mut w = c
            .watch(Watch::new(format!("{p}h")).start_revision(first))
            .await
            .unwrap();
        let got = events(&mut w, 2).await;
        assert_eq!(got[0].2, first);
        let mut other = c.watch(Watch::new(format!("{p}other"))).await.unwrap();
        c.request_progress().await.unwrap();
        for watcher in [&mut w, &mut other] {
            let resp = next(watcher).await;
            assert_eq!(resp.kind, WatchResponseKind::Progress);
            assert!(resp.header.revision > first);
        }
        let _ = Delete::new("unused");
        let _ = Put::new("unused", "");
    }
);

// A watcher that does not read holds its stream paused once it is over its buffer limit (the
// server stops sending: nothing buffers without bound), its stream mates wait with it, and
// once it reads again everything arrives, in order, for both. This is the driver's lazy
// consumption accounting end to end: consumption is reported without a message per response,
// but promptly while the stream is paused.
per_version!(
    a_slow_watcher_pauses_its_stream_and_nothing_is_lost,
    |version| {
        const PUTS: usize = 600;
        let (c, p) = shared_client(version, "watch_slow_consumer");
        let mut slow = c
            .watch(Watch::new(&p).prefix().buffer_bytes(16 << 10))
            .await
            .unwrap();
        let mut mate = c.watch(Watch::new(&p).prefix()).await.unwrap();
        let value = "v".repeat(4 << 10);
        for i in 0..PUTS {
            c.put((format!("{p}{i:04}"), value.as_str())).await.unwrap();
        }
        // 2.4 MiB were written; the stream's 1 MiB window closes behind the slow watcher.
        let mut mate_events = Vec::new();
        let stalled = tokio::time::timeout(Duration::from_secs(2), async {
            while mate_events.len() < PUTS {
                let resp = next(&mut mate).await;
                mate_events.extend(resp.events.into_iter().map(|e| e.kv.unwrap().mod_revision));
            }
        })
        .await
        .is_err();
        assert!(
            stalled,
            "the stream mate got all {PUTS} events although the slow watcher read nothing"
        );
        assert!(mate_events.len() < PUTS);
        // The slow watcher reads everything: the stream resumes.
        let slow_events = events(&mut slow, PUTS).await;
        assert_eq!(slow_events.len(), PUTS);
        for (i, (key, kind, _)) in slow_events.iter().enumerate() {
            assert_eq!(key, &format!("{p}{i:04}"));
            assert_eq!(*kind, EventType::Put);
        }
        assert!(slow_events.windows(2).all(|w| w[0].2 < w[1].2));
        while mate_events.len() < PUTS {
            let resp = next(&mut mate).await;
            mate_events.extend(resp.events.into_iter().map(|e| e.kv.unwrap().mod_revision));
        }
        let slow_revisions: Vec<i64> = slow_events.iter().map(|e| e.2).collect();
        assert_eq!(mate_events, slow_revisions);
    }
);
