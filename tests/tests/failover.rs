//! Failover and waiting for a connection, against real clusters (3.4.23 and 3.5.1).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use etcd_tests::{EtcdCluster, EtcdServer, EtcdVersion};
use etcd_tokio::{Client, Compare, CompareOp, Config, Delete, Get, Put, Txn};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

per_version!(writes_fail_over_when_a_member_is_killed, |version| {
    let cluster = Arc::new(
        blocking(move || EtcdCluster::start(version, 3))
            .await
            .expect("cluster"),
    );
    let client = Client::connect(cluster.client_urls()).unwrap();
    let two_s = client.with_timeout(Duration::from_secs(2));
    // Warm up: every member gets a connection.
    for i in 0..6 {
        two_s.put((format!("warm/{i}"), "x")).await.unwrap();
    }
    let leader = {
        let c = cluster.clone();
        blocking(move || c.leader()).await.expect("leader")
    };
    // Kill a member the client is connected to (a follower, so no election gets in the way).
    let victim = (leader + 1) % 3;
    {
        let c = cluster.clone();
        blocking(move || c.member(victim).kill()).await.unwrap();
    }
    for round in 0..6 {
        let key = format!("after-kill/{round}");
        two_s
            .put(Put::new(&key, "v"))
            .await
            .unwrap_or_else(|e| panic!("put {round} after the kill: {e}"));
        let txn = Txn::new()
            .when([Compare::value(&key, CompareOp::Equal, "v")])
            .and_then([Put::new(&key, "w")]);
        let resp = two_s
            .txn(txn)
            .await
            .unwrap_or_else(|e| panic!("txn {round} after the kill: {e}"));
        assert!(resp.succeeded);
        let deleted = two_s
            .delete(Delete::new(&key))
            .await
            .unwrap_or_else(|e| panic!("delete {round} after the kill: {e}"));
        assert_eq!(deleted.deleted, 1);
    }
    // Bring the member back: the client reconnects to it by itself.
    {
        let c = cluster.clone();
        blocking(move || c.member(victim).restart()).await.unwrap();
    }
    let got = client
        .with_timeout(Duration::from_secs(10))
        .get(Get::new("after-kill/").prefix())
        .await
        .unwrap();
    assert_eq!(got.count, 0);
});

per_version!(writes_fail_over_when_the_leader_is_killed, |version| {
    // Default raft timing needs 1-2 s just to notice a dead leader; a faster election keeps
    // the new leader inside the 2 s deadline of the first write.
    let cluster = Arc::new(
        blocking(move || {
            EtcdCluster::builder(version)
                .flag("--heartbeat-interval", "50")
                .flag("--election-timeout", "300")
                .start()
        })
        .await
        .expect("cluster"),
    );
    let client = Client::connect(cluster.client_urls()).unwrap();
    let two_s = client.with_timeout(Duration::from_secs(2));
    for i in 0..6 {
        two_s.put((format!("warm/{i}"), "x")).await.unwrap();
    }
    let leader = {
        let c = cluster.clone();
        blocking(move || c.leader()).await.expect("leader")
    };
    {
        let c = cluster.clone();
        blocking(move || c.member(leader).kill()).await.unwrap();
    }
    // A write proposed while the followers still believe in the dead leader is dropped by
    // raft and hangs until the server's own timeout, whatever the client does: wait until
    // the survivors have elected a new leader, then every write must succeed at once.
    let new_leader = {
        let c = cluster.clone();
        blocking(move || c.leader()).await.expect("new leader")
    };
    assert_ne!(new_leader, leader);
    two_s
        .put(("after-leader-kill", "1"))
        .await
        .expect("put after the leader died");
    let resp = two_s
        .txn(
            Txn::new()
                .when([Compare::value("after-leader-kill", CompareOp::Equal, "1")])
                .and_then([Put::new("after-leader-kill", "2")]),
        )
        .await
        .expect("txn after the leader died");
    assert!(resp.succeeded);
    let deleted = two_s
        .delete("after-leader-kill")
        .await
        .expect("delete after the leader died");
    assert_eq!(deleted.deleted, 1);
});

per_version!(
    get_without_deadline_waits_for_a_member_to_come_back,
    |version| {
        let server = Arc::new(
            blocking(move || EtcdServer::start(version))
                .await
                .expect("etcd"),
        );
        let mut config = Config::from_endpoints([server.client_url()]).unwrap();
        config.default_timeout = None;
        let client = Client::with_config(config).unwrap();
        client.put(("k", "before")).await.unwrap();
        {
            let s = server.clone();
            blocking(move || s.kill()).await.unwrap();
        }
        let waiter = {
            let client = client.clone();
            tokio::spawn(async move { client.get("k").await })
        };
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !waiter.is_finished(),
            "the get must wait while the member is down"
        );
        {
            let s = server.clone();
            blocking(move || s.restart()).await.unwrap();
        }
        let got = tokio::time::timeout(Duration::from_secs(20), waiter)
            .await
            .expect("the get completes after the restart")
            .unwrap()
            .expect("get");
        assert_eq!(&got.kvs[0].value[..], b"before");
    }
);

per_version!(sync_takes_the_member_list, |version| {
    let cluster = blocking(move || EtcdCluster::start(version, 3))
        .await
        .expect("cluster");
    // Start from one member; sync discovers the other two.
    let client = Client::connect([cluster.client_urls()[0].clone()]).unwrap();
    let client = client.with_timeout(CALL_TIMEOUT);
    let synced = client.sync().await.unwrap();
    let mut got: Vec<String> = synced.iter().map(|e| e.to_string()).collect();
    got.sort();
    let mut want = cluster.client_urls();
    want.sort();
    assert_eq!(got, want);
    let mut listed: Vec<String> = client
        .endpoints()
        .await
        .unwrap()
        .iter()
        .map(|e| e.to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, want);
    for i in 0..6 {
        client.put((format!("k{i}"), "v")).await.unwrap();
    }
    let _ = EtcdVersion::ALL;
});

per_version!(keepalive_pings_detect_a_paused_member, |version| {
    let cluster = Arc::new(
        blocking(move || EtcdCluster::start(version, 3))
            .await
            .expect("cluster"),
    );
    let urls = cluster.client_urls();
    let leader = {
        let c = cluster.clone();
        blocking(move || c.leader()).await.expect("leader")
    };
    let victim = (leader + 1) % 3;
    let healthy = (leader + 2) % 3;
    let mut config =
        Config::from_endpoints([urls[victim].as_str(), urls[healthy].as_str()]).unwrap();
    config.keepalive_interval = Some(Duration::from_secs(5));
    config.keepalive_timeout = Duration::from_secs(1);
    let client = Client::with_config(config).unwrap();
    for i in 0..4 {
        client.put((format!("ka/{i}"), "v")).await.unwrap();
    }
    {
        let c = cluster.clone();
        blocking(move || c.member(victim).pause()).await.unwrap();
    }
    // Reads without a deadline: those sent to the frozen member hang until a keepalive PING
    // goes unanswered, then they are retried on the other member.
    let started = std::time::Instant::now();
    let mut reads = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        reads.push(tokio::spawn(async move {
            client.get(Get::new("ka/").prefix().serializable()).await
        }));
    }
    for r in reads {
        let got = tokio::time::timeout(Duration::from_secs(15), r)
            .await
            .expect("the read completes once the dead connection is detected")
            .unwrap()
            .expect("read");
        assert_eq!(got.count, 4);
    }
    let took = started.elapsed();
    {
        let c = cluster.clone();
        blocking(move || c.member(victim).resume()).await.unwrap();
    }
    println!("{version}: reads recovered from a paused member after {took:?}");
    assert!(took < Duration::from_secs(12), "{took:?}");
});
