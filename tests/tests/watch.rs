//! Watch against real servers (3.4.23 and 3.5.1).

mod common;

use std::time::Duration;

use common::*;
use etcd_tests::EtcdServer;
use etcd_tokio::proto::mvccpb::event::EventType;
use etcd_tokio::{
    Delete, Error, Put, Watch, WatchId, WatchResponse, WatchResponseKind, WatchSet, Watcher,
};

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
        resp1.events.into_vec()
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

/// The next item of a set, in time.
async fn set_next(set: &mut WatchSet) -> Option<(WatchId, Result<WatchResponse, Error>)> {
    tokio::time::timeout(WAIT, set.next())
        .await
        .expect("a watch set item in time")
}

// Many watchers read through one receiver: each response comes tagged with its watcher, in
// order per watcher; a cancelled watcher yields nothing more; the set ends (None) when it has
// no watcher left.
per_version!(
    a_watch_set_delivers_every_watcher_s_events_through_one_receiver,
    |version| {
        let (c, p) = shared_client(version, "watch_set");
        let mut set = c.watch_set();
        assert!(
            set_next(&mut set).await.is_none(),
            "an empty set ends at once"
        );
        let a = set.add(Watch::new(format!("{p}a"))).await.unwrap();
        let b = set.add(Watch::new(format!("{p}b"))).await.unwrap();
        let all = set.add(Watch::new(&p).prefix()).await.unwrap();
        assert_eq!(set.len(), 3);
        assert!(set.created_revision(a).unwrap() > 0);

        for i in 0..5 {
            c.put((format!("{p}a"), format!("{i}"))).await.unwrap();
            c.put((format!("{p}b"), format!("{i}"))).await.unwrap();
        }
        let mut seen: std::collections::HashMap<WatchId, Vec<i64>> = Default::default();
        while seen.values().map(Vec::len).sum::<usize>() < 20 {
            let (id, resp) = set_next(&mut set).await.expect("watchers left");
            for e in resp.unwrap().events {
                seen.entry(id).or_default().push(e.kv.unwrap().mod_revision);
            }
        }
        assert_eq!(seen[&a].len(), 5);
        assert_eq!(seen[&b].len(), 5);
        assert_eq!(seen[&all].len(), 10);
        for revs in seen.values() {
            assert!(revs.windows(2).all(|w| w[0] < w[1]), "in order: {revs:?}");
        }
        let mut merged: Vec<i64> = seen[&a].iter().chain(&seen[&b]).copied().collect();
        merged.sort();
        assert_eq!(merged, seen[&all]);

        // A cancelled watcher yields nothing more.
        set.cancel(a);
        assert!(!set.contains(a));
        c.put((format!("{p}a"), "after")).await.unwrap();
        let (id, resp) = set_next(&mut set).await.unwrap();
        assert_eq!(id, all);
        assert_eq!(resp.unwrap().events.len(), 1);
        set.cancel(b);
        set.cancel(all);
        assert!(set_next(&mut set).await.is_none());
    }
);

// A burst far larger than what the driver reads per wake-up (its read budget) arrives whole
// and in order: the rest of a stream is read on the next wake-up, never forgotten.
per_version!(
    a_burst_larger_than_the_read_budget_arrives_whole,
    |version| {
        const PUTS: usize = 400;
        let (c, p) = shared_client(version, "watch_burst");
        let value = "b".repeat(2 << 10);
        let first = c.put((format!("{p}0000"), value.as_str())).await.unwrap();
        let start = first.header.unwrap().revision;
        for i in 1..PUTS {
            c.put((format!("{p}{i:04}"), value.as_str())).await.unwrap();
        }
        // 800 KiB of history, sent as fast as the server can: watchers on one stream and a set.
        let mut w1 = c
            .watch(Watch::new(&p).prefix().start_revision(start))
            .await
            .unwrap();
        let mut set = c.watch_set();
        let id = set
            .add(Watch::new(&p).prefix().start_revision(start))
            .await
            .unwrap();
        let got = events(&mut w1, PUTS).await;
        assert_eq!(got.len(), PUTS);
        let mut from_set = Vec::new();
        while from_set.len() < PUTS {
            let (from, resp) = set_next(&mut set).await.unwrap();
            assert_eq!(from, id);
            from_set.extend(
                resp.unwrap()
                    .events
                    .into_iter()
                    .map(|e| e.kv.unwrap().mod_revision),
            );
        }
        let revs: Vec<i64> = got.iter().map(|e| e.2).collect();
        assert_eq!(revs, from_set);
        assert!(revs.windows(2).all(|w| w[0] < w[1]));
        for (i, (key, _, _)) in got.iter().enumerate() {
            assert_eq!(key, &format!("{p}{i:04}"));
        }
    }
);

// Coalescing watchers share one server watch and each still sees every event; cancelling
// the first leaves the others running on it.
per_version!(coalescing_watchers_share_a_server_watch, |version| {
    let (c, p) = shared_client(version, "watch_coalesce");
    let mut w1 = c
        .watch(Watch::new(&p).prefix().coalesce(true))
        .await
        .unwrap();
    let mut w2 = c
        .watch(Watch::new(&p).prefix().coalesce(true))
        .await
        .unwrap();
    let mut w3 = c
        .watch(Watch::new(&p).prefix().coalesce(true))
        .await
        .unwrap();
    // A change made before w4 asked to watch is not reported to it.
    let before = c.put((format!("{p}before"), "x")).await.unwrap();
    let mut w4 = c
        .watch(Watch::new(&p).prefix().coalesce(true))
        .await
        .unwrap();
    assert!(w4.created_revision() >= before.header.unwrap().revision);
    c.put((format!("{p}k"), "1")).await.unwrap();
    let one = events(&mut w1, 2).await;
    assert_eq!(events(&mut w2, 2).await, one);
    assert_eq!(events(&mut w3, 2).await, one);
    assert_eq!(events(&mut w4, 1).await, one[1..]);
    drop(w1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.put((format!("{p}k"), "2")).await.unwrap();
    let two = events(&mut w2, 1).await;
    assert_eq!(events(&mut w3, 1).await, two);
    assert_eq!(events(&mut w4, 1).await, two);
});
