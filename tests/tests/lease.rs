//! Lease keepalive against real servers (3.4.23 and 3.5.1).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etcd_tests::{EtcdCluster, EtcdServer};
use etcd_tokio::{Client, Config, Error, EtcdErrorKind, LeaseLostReason};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

per_version!(a_ttl_2_lease_kept_alive_for_20_s_is_alive, |version| {
    let (c, _) = shared_client(version, "lease_ka");
    let c = c.with_timeout(CALL_TIMEOUT);
    let granted = c.lease_grant(2).await.unwrap();
    let mut keeper = c.keep_alive(&granted).await.unwrap();
    let started = Instant::now();
    let mut renewals = 0;
    while started.elapsed() < Duration::from_secs(20) {
        let r = tokio::time::timeout(Duration::from_secs(3), keeper.next())
            .await
            .expect("renewals keep coming")
            .expect("keeper running")
            .expect("renewed");
        assert_eq!(r.lease, granted.id);
        assert!(r.ttl > 0);
        renewals += 1;
    }
    let ttl = c.lease_time_to_live(granted.id, false).await.unwrap().ttl;
    assert!(ttl > 0, "the lease is alive after 20 s (ttl {ttl})");
    assert!(
        (25..=40).contains(&renewals),
        "about three renewals per 2 s TTL, got {renewals}"
    );
    drop(keeper);
    c.lease_revoke(granted.id).await.unwrap();
});

per_version!(
    revocation_by_another_client_is_reported_within_a_second,
    |version| {
        let (c, _) = shared_client(version, "lease_revoked");
        let c = c.with_timeout(CALL_TIMEOUT);
        let other = Client::connect([etcd_tests::shared_endpoint(version)]).unwrap();
        let granted = c.lease_grant(2).await.unwrap();
        let mut keeper = c.keep_alive(&granted).await.unwrap();
        keeper.next().await.unwrap().unwrap();
        other.lease_revoke(granted.id).await.unwrap();
        let revoked_at = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_secs(3), keeper.next())
                .await
                .expect("in time")
            {
                Some(Ok(_)) => continue,
                Some(Err(Error::LeaseLost { lease, reason })) => {
                    assert_eq!(lease, granted.id);
                    assert_eq!(reason, LeaseLostReason::NotFound);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let took = revoked_at.elapsed();
        assert!(
            took <= Duration::from_secs(1),
            "lost reported after {took:?}"
        );
        assert!(keeper.next().await.is_none());
        // A revoke through the same client ends its keepalives at once.
        let granted = c.lease_grant(30).await.unwrap();
        let mut keeper = c.keep_alive(&granted).await.unwrap();
        c.lease_revoke(granted.id).await.unwrap();
        loop {
            match keeper.next().await {
                Some(Ok(_)) => continue,
                Some(Err(Error::LeaseLost { reason, .. })) => {
                    assert!(matches!(
                        reason,
                        LeaseLostReason::Revoked | LeaseLostReason::NotFound
                    ));
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
);

per_version!(keep_alive_once, |version| {
    let (c, _) = shared_client(version, "lease_once");
    let c = c.with_timeout(CALL_TIMEOUT);
    let granted = c.lease_grant(30).await.unwrap();
    let r = c.keep_alive_once(granted.id).await.unwrap();
    assert!(r.ttl > 0 && r.ttl <= 30);
    c.lease_revoke(granted.id).await.unwrap();
    let err = c.keep_alive_once(granted.id).await.unwrap_err();
    assert_eq!(
        err.etcd_kind(),
        Some(EtcdErrorKind::LeaseNotFound),
        "{err:?}"
    );
});

per_version!(
    keepalive_while_the_only_member_is_down_reports_loss_at_expiry,
    |version| {
        let server = Arc::new(
            blocking(move || EtcdServer::start(version))
                .await
                .expect("etcd"),
        );
        let c = client_for(&server, |_| {});
        let granted = c.lease_grant(3).await.unwrap();
        let granted_at = Instant::now();
        {
            let s = server.clone();
            blocking(move || s.kill()).await.unwrap();
        }
        let mut keeper = c.keep_alive(&granted).await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(10), keeper.next())
            .await
            .expect("a definite end");
        match end {
            Some(Err(Error::LeaseLost { reason, .. })) => {
                assert_eq!(reason, LeaseLostReason::Expired)
            }
            other => panic!("expected LeaseLost(Expired), got {other:?}"),
        }
        let took = granted_at.elapsed();
        assert!(
            took >= Duration::from_millis(2500) && took <= Duration::from_millis(4500),
            "reported at {took:?}, the lease expired at 3 s"
        );
    }
);

per_version!(a_lease_survives_killing_the_leader, |version| {
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
    let mut config = Config::from_endpoints(cluster.client_urls()).unwrap();
    config.default_timeout = Some(CALL_TIMEOUT);
    let c = Client::with_config(config).unwrap();
    let granted = c.lease_grant(5).await.unwrap();
    let mut keeper = c.keep_alive(&granted).await.unwrap();
    keeper.next().await.unwrap().unwrap();
    let leader = {
        let cl = cluster.clone();
        blocking(move || cl.leader()).await.unwrap()
    };
    {
        let cl = cluster.clone();
        blocking(move || cl.member(leader).kill()).await.unwrap();
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        match tokio::time::timeout(Duration::from_secs(6), keeper.next()).await {
            Ok(Some(Ok(r))) => assert!(r.ttl > 0),
            other => panic!("the lease must stay alive: {other:?}"),
        }
    }
    let ttl = c.lease_time_to_live(granted.id, false).await.unwrap().ttl;
    assert!(ttl > 0, "alive after the leader died (ttl {ttl})");
});

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

per_version!(ten_thousand_leases_kept_alive_for_a_minute, |version| {
    let server = Arc::new(
        blocking(move || EtcdServer::start(version))
            .await
            .expect("etcd"),
    );
    let c = client_for(&server, |config| {
        config.default_timeout = Some(Duration::from_secs(30))
    });
    const N: usize = 10_000;
    let mut grants = Vec::with_capacity(N);
    for chunk in 0..N / 250 {
        let mut batch = Vec::new();
        for _ in 0..250 {
            let c = c.clone();
            batch.push(tokio::spawn(async move { c.lease_grant(5).await }));
        }
        for g in batch {
            grants.push(
                g.await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("grant in chunk {chunk}: {e}")),
            );
        }
    }
    let mut keepers: Vec<etcd_tokio::LeaseKeeper> = Vec::with_capacity(N);
    for g in &grants {
        keepers.push(c.keep_alive(g).await.unwrap());
    }
    // Renewals queue up in the keepers unread (a few hundred KiB): the CPU measured below is
    // the client's own work, not a consumer's.
    let cpu_before = cpu_time();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let cpu = cpu_time() - cpu_before;
    let wall = started.elapsed();
    // Every lease is alive at the end, and every keeper saw renewals and no loss.
    let mut dead = 0;
    for chunk in grants.chunks(500) {
        let mut checks = Vec::new();
        for g in chunk {
            let c = c.clone();
            let id = g.id;
            checks.push(tokio::spawn(async move {
                c.lease_time_to_live(id, false).await
            }));
        }
        for check in checks {
            if check.await.unwrap().unwrap().ttl <= 0 {
                dead += 1;
            }
        }
    }
    // Count what queued up (unconstrained: tokio's budget would report a full channel as
    // pending after 128 receives).
    let renewals = tokio::task::unconstrained(async {
        let mut renewals = 0u64;
        for k in keepers.iter_mut() {
            while let Some(item) = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(match k.poll_next(cx) {
                    std::task::Poll::Ready(item) => item,
                    std::task::Poll::Pending => None,
                })
            })
            .await
            {
                item.expect("no lease lost");
                renewals += 1;
            }
        }
        renewals
    })
    .await;
    println!(
        "{version}: {N} leases (TTL 5) kept alive for {wall:?}: {renewals} renewals, client CPU \
         {cpu:?} ({:.1}% of one core)",
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    );
    assert!(
        renewals as usize >= N * 30,
        "about 36 renewals per lease per minute"
    );
    assert_eq!(dead, 0, "{dead} leases expired");
});
