//! Every unary service family against real servers (3.4.23 and 3.5.1): lease, cluster,
//! maintenance, auth administration, lock and election.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use etcd_tests::{EtcdCluster, EtcdServer, EtcdVersion};
use etcd_tokio::core::rpc::auth::Permission;
use etcd_tokio::core::rpc::maintenance::AlarmType;
use etcd_tokio::proto::etcdserverpb::Member;
use etcd_tokio::{Client, Code, Error, EtcdErrorKind, InvalidRequest, Put};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn kind<T: std::fmt::Debug>(r: Result<T, Error>) -> EtcdErrorKind {
    match r {
        Err(e) => e
            .etcd_kind()
            .unwrap_or_else(|| panic!("not an etcd error: {e:?}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// The member list once it no longer looks `stale`. 3.4 answers MemberList from the member's
/// own view (3.5 linearizably), and a follower may not have applied a change yet.
async fn members_once(c: &etcd_driver::Client, stale: impl Fn(&[Member]) -> bool) -> Vec<Member> {
    for _ in 0..50 {
        let members = c.member_list().await.unwrap().members;
        if !stale(&members) {
            return members;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.member_list().await.unwrap().members
}

per_version!(lease_unary_calls, |version| {
    let (c, p) = shared_client(version, "lease_unary");
    let c = c.with_timeout(CALL_TIMEOUT);
    let granted = c.lease_grant(1).await.unwrap();
    assert!(granted.id > 0);
    assert_eq!(granted.ttl, 2, "the server raises a TTL below its minimum");
    let lease = c.lease_grant(60).await.unwrap().id;
    c.put(Put::new(format!("{p}a"), "1").lease(lease))
        .await
        .unwrap();
    c.put(Put::new(format!("{p}b"), "2").lease(lease))
        .await
        .unwrap();
    let ttl = c.lease_time_to_live(lease, true).await.unwrap();
    assert_eq!(ttl.granted_ttl, 60);
    assert!(ttl.ttl > 0 && ttl.ttl <= 60);
    let mut keys: Vec<String> = ttl
        .keys
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, [format!("{p}a"), format!("{p}b")]);
    let listed = c.lease_leases().await.unwrap();
    assert!(listed.leases.iter().any(|l| l.id == lease));
    c.lease_revoke(lease).await.unwrap();
    assert_eq!(
        c.get(format!("{p}a")).await.unwrap().count,
        0,
        "revoke deletes its keys"
    );
    assert_eq!(
        kind(c.lease_revoke(lease).await),
        EtcdErrorKind::LeaseNotFound
    );
    assert_eq!(c.lease_time_to_live(lease, false).await.unwrap().ttl, -1);
    assert_eq!(
        kind(c.put(Put::new(format!("{p}c"), "3").lease(lease)).await),
        EtcdErrorKind::LeaseNotFound
    );
    assert_eq!(
        kind(c.lease_grant(9_000_000_001).await),
        EtcdErrorKind::LeaseTtlTooLarge
    );
    assert!(matches!(
        c.lease_grant(-5).await,
        Err(Error::InvalidRequest(InvalidRequest::NegativeLeaseTtl(-5)))
    ));
});

per_version!(cluster_membership, |version| {
    let cluster = blocking(move || EtcdCluster::start(version, 3))
        .await
        .expect("cluster");
    let c = Client::connect(cluster.client_urls())
        .unwrap()
        .with_timeout(CALL_TIMEOUT);
    let members = c.member_list().await.unwrap().members;
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| !m.name.is_empty() && !m.is_learner));
    // URL validation happens before anything is sent.
    for bad in [
        vec![],
        vec!["ftp://127.0.0.1:1"],
        vec!["http://127.0.0.1:1/path"],
    ] {
        let err = c.member_add_as_learner(bad.clone()).await.unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{bad:?}: {err:?}");
    }
    // A learner that never starts: promoting it fails with the typed not-in-sync error.
    let peer = format!("http://127.0.0.1:{}", etcd_tests::free_port());
    // etcd refuses reconfiguration until its members have been connected for 5 s.
    let mut added = None;
    for _ in 0..100 {
        match c.member_add_as_learner([peer.as_str()]).await {
            Ok(resp) => {
                added = Some(resp);
                break;
            }
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::Unhealthy) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("member add: {e}"),
        }
    }
    let added = added.expect("the cluster accepts a learner");
    let learner = added.member.expect("the added member");
    assert!(learner.is_learner);
    assert_eq!(added.members.len(), 4);
    assert_eq!(
        kind(c.member_promote(learner.id).await),
        EtcdErrorKind::MemberLearnerNotReady
    );
    assert_eq!(
        kind(c.member_promote(members[0].id).await),
        EtcdErrorKind::MemberNotLearner
    );
    let moved = format!("http://127.0.0.1:{}", etcd_tests::free_port());
    c.member_update(learner.id, [moved.as_str()]).await.unwrap();
    let listed = members_once(&c, |members| {
        members
            .iter()
            .any(|m| m.id == learner.id && m.peer_ur_ls != [moved.clone()])
    })
    .await;
    let updated = listed
        .iter()
        .find(|m| m.id == learner.id)
        .expect("learner listed");
    assert_eq!(updated.peer_ur_ls, std::slice::from_ref(&moved));
    c.member_remove(learner.id).await.unwrap();
    let listed = members_once(&c, |members| members.iter().any(|m| m.id == learner.id)).await;
    assert_eq!(listed.len(), 3);
    assert_eq!(
        kind(c.member_remove(learner.id).await),
        EtcdErrorKind::MemberNotFound
    );
});

per_version!(maintenance_per_endpoint, |version| {
    let cluster = Arc::new(
        blocking(move || EtcdCluster::start(version, 3))
            .await
            .expect("cluster"),
    );
    let c = Client::connect(cluster.client_urls())
        .unwrap()
        .with_timeout(CALL_TIMEOUT);
    let rev = c.put(("m", "1")).await.unwrap().header.unwrap().revision;
    // Status of each member, asked of that member: exactly one leader, agreed by all.
    let mut statuses = Vec::new();
    for url in cluster.client_urls() {
        statuses.push(c.on_endpoint(&url).unwrap().status().await.unwrap());
    }
    let leader_id = statuses[0].leader;
    assert!(statuses.iter().all(|s| s.leader == leader_id));
    let leaders: Vec<usize> = statuses
        .iter()
        .enumerate()
        .filter(|(_, s)| s.header.as_ref().unwrap().member_id == s.leader)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one leader");
    let leader = leaders[0];
    // HashKV at one revision is the same on every member (followers may need a moment).
    let mut hashes = Vec::new();
    for url in cluster.client_urls() {
        let member = c.on_endpoint(&url).unwrap();
        let mut hash = None;
        for _ in 0..50 {
            match member.hash_kv(rev).await {
                Ok(h) => {
                    hash = Some(h.hash);
                    break;
                }
                Err(e) if e.etcd_kind() == Some(EtcdErrorKind::FutureRev) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("hash_kv on {url}: {e}"),
            }
        }
        hashes.push(hash.expect("hash"));
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    // MoveLeader must go to the leader.
    let follower = (leader + 1) % 3;
    let target = statuses[(leader + 2) % 3]
        .header
        .as_ref()
        .unwrap()
        .member_id;
    let via_follower = c
        .on_endpoint(&cluster.client_urls()[follower])
        .unwrap()
        .move_leader(target)
        .await;
    assert_eq!(kind(via_follower), EtcdErrorKind::NotLeader);
    c.on_endpoint(&cluster.client_urls()[leader])
        .unwrap()
        .move_leader(target)
        .await
        .unwrap();
    let status = c
        .on_endpoint(&cluster.client_urls()[(leader + 2) % 3])
        .unwrap()
        .status()
        .await
        .unwrap();
    assert_eq!(status.leader, target, "leadership moved");
    // Alarms: none raised; disarming everything is a no-op.
    assert!(c.alarm_list().await.unwrap().alarms.is_empty());
    assert!(c
        .alarm_disarm(0, AlarmType::None)
        .await
        .unwrap()
        .alarms
        .is_empty());
    // Defragment each member.
    for url in cluster.client_urls() {
        c.on_endpoint(&url).unwrap().defragment().await.unwrap();
    }
    // The pinned endpoints are not part of the balanced list.
    assert_eq!(c.endpoints().await.unwrap().len(), 3);
});

per_version!(auth_administration, |version| {
    let server = blocking(move || EtcdServer::start(version))
        .await
        .expect("etcd");
    let c = client_for(&server, |_| {});
    c.user_add("alice", "pw1").await.unwrap();
    assert_eq!(
        kind(c.user_add("alice", "pw2").await),
        EtcdErrorKind::UserAlreadyExist
    );
    assert_eq!(kind(c.role_get("nope").await), EtcdErrorKind::RoleNotFound);
    assert_eq!(kind(c.role_add("").await), EtcdErrorKind::RoleEmpty);
    c.role_add("reader").await.unwrap();
    c.role_grant_permission("reader", Permission::read("data/").with_prefix())
        .await
        .unwrap();
    let role = c.role_get("reader").await.unwrap();
    assert_eq!(role.perm.len(), 1);
    assert_eq!(&role.perm[0].key[..], b"data/");
    c.user_grant_role("alice", "reader").await.unwrap();
    assert_eq!(c.user_get("alice").await.unwrap().roles, ["reader"]);
    assert_eq!(
        kind(c.user_revoke_role("alice", "writer").await),
        EtcdErrorKind::RoleNotGranted
    );
    assert!(c
        .user_list()
        .await
        .unwrap()
        .users
        .contains(&"alice".to_string()));
    assert!(c
        .role_list()
        .await
        .unwrap()
        .roles
        .contains(&"reader".to_string()));
    c.user_change_password("alice", "pw3").await.unwrap();
    c.user_add_no_password("cert-user").await.unwrap();
    c.role_revoke_permission("reader", "data/", etcd_tokio::prefix_range_end(b"data/"))
        .await
        .unwrap();
    assert!(c.role_get("reader").await.unwrap().perm.is_empty());
    c.user_delete("alice").await.unwrap();
    assert_eq!(kind(c.user_get("alice").await), EtcdErrorKind::UserNotFound);
    c.role_delete("reader").await.unwrap();
    match version {
        EtcdVersion::V3_5 => assert!(!c.auth_status().await.unwrap().enabled),
        EtcdVersion::V3_4 => match c.auth_status().await {
            Err(Error::Status(s)) => assert_eq!(s.code, Code::Unimplemented),
            other => panic!("3.4 has no AuthStatus: {other:?}"),
        },
    }
    assert_eq!(kind(c.auth_enable().await), EtcdErrorKind::RootUserNotExist);
});

per_version!(lock_excludes_a_second_locker_until_unlock, |version| {
    let (c, p) = shared_client(version, "lock");
    let c = c.with_timeout(Duration::from_secs(20));
    let lease_a = c.lease_grant(30).await.unwrap().id;
    let lease_b = c.lease_grant(30).await.unwrap().id;
    let name = format!("{p}lock");
    let held = c.lock(name.as_str(), lease_a).await.unwrap();
    let second = {
        let c = c.clone();
        let name = name.clone();
        tokio::spawn(async move { c.lock(name.as_str(), lease_b).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!second.is_finished(), "the second locker must wait");
    c.unlock(held.key.clone()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second locker gets the lock")
        .unwrap()
        .unwrap();
    assert_ne!(got.key, held.key);
    c.unlock(got.key).await.unwrap();
});

per_version!(election_campaign_proclaim_leader_resign, |version| {
    let (c, p) = shared_client(version, "election");
    let c = c.with_timeout(Duration::from_secs(20));
    let name = format!("{p}election");
    let lease_a = c.lease_grant(30).await.unwrap().id;
    let lease_b = c.lease_grant(30).await.unwrap().id;
    let a = c.campaign(name.as_str(), lease_a, "alpha").await.unwrap();
    let a_key = a.leader.expect("leader key");
    let b = {
        let c = c.clone();
        let name = name.clone();
        tokio::spawn(async move { c.campaign(name.as_str(), lease_b, "beta").await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!b.is_finished(), "the second candidate waits");
    let leader = c.leader(name.as_str()).await.unwrap();
    assert_eq!(&leader.kv.unwrap().value[..], b"alpha");
    c.proclaim(a_key.clone(), "alpha-2").await.unwrap();
    assert_eq!(
        &c.leader(name.as_str()).await.unwrap().kv.unwrap().value[..],
        b"alpha-2"
    );
    c.resign(a_key.clone()).await.unwrap();
    let b = tokio::time::timeout(Duration::from_secs(10), b)
        .await
        .expect("the second candidate wins")
        .unwrap()
        .unwrap();
    assert_eq!(
        &c.leader(name.as_str()).await.unwrap().kv.unwrap().value[..],
        b"beta"
    );
    // The old key no longer leads.
    assert_eq!(
        kind(c.proclaim(a_key, "stale").await),
        EtcdErrorKind::ElectionNotLeader
    );
    c.resign(b.leader.unwrap()).await.unwrap();
});
