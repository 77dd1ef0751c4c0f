//! The coordination layer against real servers (3.4.23 and 3.5.1): sessions, the mutex, the
//! election, STM at every isolation level, and the recipes.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use etcd_driver::concurrency::recipes::{Barrier, DoubleBarrier, PriorityQueue, Queue, RwMutex};
use etcd_driver::concurrency::stm::{self, Isolation, Stm, StmOptions};
use etcd_driver::concurrency::{
    ConcurrencyError, Election, Mutex, Observer, Session, SessionEnd, SessionOptions,
};
use etcd_tests::EtcdServer;
use etcd_tokio::{Client, Compact, Error, Get, Txn};

/// The runtime-agnostic handle (what `with_timeout` returns).
type Handle = etcd_driver::Client;

/// Every wait of these tests is bounded.
const WAIT: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {WAIT:?}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

async fn session(c: &Handle) -> Session {
    Session::new(c).await.expect("session")
}

fn text(v: &Option<Bytes>) -> String {
    v.as_ref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn number(v: Option<Bytes>) -> i64 {
    v.and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
        .unwrap_or(0)
}

async fn value_of(c: &Handle, key: &str) -> Option<Bytes> {
    c.get(key)
        .await
        .unwrap()
        .kvs
        .first()
        .map(|kv| kv.value.clone())
}

async fn count_under(c: &Handle, prefix: &str) -> i64 {
    c.get(Get::new(prefix).prefix().count_only())
        .await
        .unwrap()
        .count
}

// ---- Session ----

per_version!(session_keeps_its_lease_and_reports_its_end, |version| {
    let (c, _) = shared_client(version, "session");
    let c = c.with_timeout(CALL_TIMEOUT);
    let s = Session::with_options(&c, SessionOptions::new().ttl(5))
        .await
        .unwrap();
    assert_eq!(s.ttl(), 5);
    assert!(s.end().is_none());
    // Kept alive well past its TTL.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(c.lease_time_to_live(s.lease(), false).await.unwrap().ttl > 0);
    assert!(!s.is_expired());
    // Revoked elsewhere: every `done` future completes with the loss.
    let waiters: Vec<_> = (0..3).map(|_| tokio::spawn(s.done())).collect();
    let other = Client::connect([etcd_tests::shared_endpoint(version)]).unwrap();
    other.lease_revoke(s.lease()).await.unwrap();
    for w in waiters {
        let end = within("done", w).await.unwrap();
        assert!(
            matches!(end, SessionEnd::Lost(Error::LeaseLost { .. })),
            "{end:?}"
        );
    }
    assert!(s.is_expired());

    // Orphan stops the renewals but leaves the lease; close revokes it.
    let s = session(&c).await;
    s.orphan();
    assert_eq!(within("done", s.done()).await, SessionEnd::Orphaned);
    assert!(c.lease_time_to_live(s.lease(), false).await.unwrap().ttl > 0);
    s.close().await.unwrap();
    assert_eq!(
        c.lease_time_to_live(s.lease(), false).await.unwrap().ttl,
        -1
    );
    assert!(!s.is_expired(), "an orphaned session did not expire");

    // A session over an existing lease.
    let granted = c.lease_grant(30).await.unwrap();
    let s = Session::with_options(&c, SessionOptions::new().lease(granted.id))
        .await
        .unwrap();
    assert_eq!(s.lease(), granted.id);
    s.close().await.unwrap();
    assert_eq!(s.done().await, SessionEnd::Closed);
});

// ---- Mutex ----

per_version!(of_five_concurrent_try_lockers_exactly_one_wins, |version| {
    let (c, p) = shared_client(version, "try_lock");
    let c = c.with_timeout(CALL_TIMEOUT);
    let name = format!("{p}lock");
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let c = c.clone();
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            let s = session(&c).await;
            let mut m = Mutex::new(&s, name.as_str());
            let r = m.try_lock().await;
            (s, m, r)
        }));
    }
    let mut winners = Vec::new();
    let mut sessions = Vec::new();
    for t in tasks {
        let (s, m, r) = within("try_lock", t).await.unwrap();
        match r {
            Ok(()) => winners.push(m),
            Err(ConcurrencyError::Locked) => assert!(m.key().is_none()),
            Err(e) => panic!("unexpected {e:?}"),
        }
        sessions.push(s);
    }
    assert_eq!(winners.len(), 1, "exactly one try-locker wins");
    // The losers removed their keys: only the winner's is left.
    assert_eq!(count_under(&c, &format!("{name}/")).await, 1);
    let mut winner = winners.pop().unwrap();
    let owner = c
        .txn(Txn::new().when([winner.is_owner()]))
        .await
        .unwrap()
        .succeeded;
    assert!(owner, "is_owner holds for the winner");
    // The server's lock service sees the same lock.
    let service = {
        let c = c.clone();
        let name = name.clone();
        let lease = sessions[0].lease();
        tokio::spawn(async move { c.with_timeout(WAIT).lock(name.as_str(), lease).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    if winner.session().lease() != sessions[0].lease() {
        assert!(!service.is_finished(), "the lock service waits too");
    }
    winner.unlock().await.unwrap();
    let held = within("lock service", service).await.unwrap().unwrap();
    c.unlock(held.key).await.unwrap();
    assert_eq!(count_under(&c, &format!("{name}/")).await, 0);
    for s in sessions {
        s.close().await.unwrap();
    }
});

per_version!(
    a_second_lock_on_the_same_session_returns_at_once,
    |version| {
        let (c, p) = shared_client(version, "relock");
        let c = c.with_timeout(CALL_TIMEOUT);
        let name = format!("{p}lock");
        let s = session(&c).await;
        let mut first = Mutex::new(&s, name.as_str());
        first.lock().await.unwrap();
        let mut second = Mutex::new(&s, name.as_str());
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(2), second.lock())
            .await
            .expect("re-entrant lock returns at once")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(first.key(), second.key());
        assert_eq!(first.revision(), second.revision());
        // Locking again through the same handle returns at once as well.
        tokio::time::timeout(Duration::from_secs(2), first.lock())
            .await
            .expect("lock again")
            .unwrap();
        // Another session is locked out.
        let other = session(&c).await;
        let mut theirs = Mutex::new(&other, name.as_str());
        assert_eq!(theirs.try_lock().await, Err(ConcurrencyError::Locked));
        first.unlock().await.unwrap();
        theirs.try_lock().await.unwrap();
        theirs.unlock().await.unwrap();
        s.close().await.unwrap();
        other.close().await.unwrap();
    }
);

per_version!(a_dropped_lock_call_removes_its_waiter_key, |version| {
    let (c, p) = shared_client(version, "lock_drop");
    let c = c.with_timeout(CALL_TIMEOUT);
    let name = format!("{p}lock");
    let (a, b, d) = (session(&c).await, session(&c).await, session(&c).await);
    let mut held = Mutex::new(&a, name.as_str());
    held.lock().await.unwrap();
    let mut waiter = Mutex::new(&b, name.as_str());
    let gave_up = tokio::time::timeout(Duration::from_millis(500), waiter.lock()).await;
    assert!(gave_up.is_err(), "the waiter waits");
    // The dropped call's clean-up deletes its key in the background.
    let deadline = Instant::now() + Duration::from_secs(5);
    while count_under(&c, &format!("{name}/")).await != 1 {
        assert!(Instant::now() < deadline, "the waiter key stays");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    held.unlock().await.unwrap();
    let mut next = Mutex::new(&d, name.as_str());
    tokio::time::timeout(Duration::from_secs(2), next.lock())
        .await
        .expect("nobody waits ahead any more")
        .unwrap();
    next.unlock().await.unwrap();
    for s in [a, b, d] {
        s.close().await.unwrap();
    }
});

per_version!(
    a_waiter_whose_session_expires_gets_session_expired,
    |version| {
        let (c, p) = shared_client(version, "lock_expired");
        let c = c.with_timeout(CALL_TIMEOUT);
        let name = format!("{p}lock");
        let holder = session(&c).await;
        let mut held = Mutex::new(&holder, name.as_str());
        held.lock().await.unwrap();

        // Orphaned with a short TTL: the lease expires while its lock call waits.
        let short = Session::with_options(&c, SessionOptions::new().ttl(2))
            .await
            .unwrap();
        short.orphan();
        let mut waiter = Mutex::new(&short, name.as_str());
        let started = Instant::now();
        let r = within("expiring waiter", waiter.lock()).await;
        assert_eq!(r, Err(ConcurrencyError::SessionExpired));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "reported at expiry, while the holder still holds ({:?})",
            started.elapsed()
        );
        assert!(waiter.key().is_none());
        // A lock on the dead session fails the same way.
        assert_eq!(
            waiter.lock().await,
            Err(ConcurrencyError::SessionExpired),
            "lock with an expired session"
        );

        // A kept-alive session whose lease is revoked elsewhere: reported at once.
        let revoked = session(&c).await;
        let lease = revoked.lease();
        let task = {
            let name = name.clone();
            tokio::spawn(async move {
                let mut m = Mutex::new(&revoked, name.as_str());
                m.lock().await
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!task.is_finished());
        let other = Client::connect([etcd_tests::shared_endpoint(version)]).unwrap();
        other.lease_revoke(lease).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .expect("reported promptly")
            .unwrap();
        assert_eq!(r, Err(ConcurrencyError::SessionExpired));

        // The holder was never disturbed.
        assert!(
            c.txn(Txn::new().when([held.is_owner()]))
                .await
                .unwrap()
                .succeeded
        );
        held.unlock().await.unwrap();
        holder.close().await.unwrap();
    }
);

per_version!(
    ten_clients_incrementing_under_the_mutex_end_at_1000,
    |version| {
        let (c, p) = shared_client(version, "counter");
        let name = format!("{p}lock");
        let counter = format!("{p}counter");
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let name = name.clone();
            let counter = counter.clone();
            tasks.push(tokio::spawn(async move {
                let c = Client::connect([etcd_tests::shared_endpoint(version)])
                    .unwrap()
                    .with_timeout(CALL_TIMEOUT);
                let s = session(&c).await;
                let mut m = Mutex::new(&s, name.as_str());
                for _ in 0..100 {
                    m.lock().await.unwrap();
                    let n = number(value_of(&c, &counter).await);
                    // Written only while this session holds the lock.
                    let wrote = c
                        .txn(
                            Txn::new()
                                .when([m.is_owner()])
                                .and_then([etcd_tokio::Put::new(
                                    counter.as_str(),
                                    (n + 1).to_string(),
                                )]),
                        )
                        .await
                        .unwrap();
                    assert!(wrote.succeeded, "the lock holder owns the lock");
                    m.unlock().await.unwrap();
                }
                s.close().await.unwrap();
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(120), t)
                .await
                .expect("the increments finish")
                .unwrap();
        }
        assert_eq!(number(value_of(&c, &counter).await), 1000);
        assert_eq!(count_under(&c, &format!("{name}/")).await, 0);
        eprintln!(
            "1000 increments under the mutex took {:?}",
            started.elapsed()
        );
    }
);

// ---- Election ----

per_version!(campaign_blocks_a_second_candidate_until_resign, |version| {
    let (c, p) = shared_client(version, "campaign");
    let c = c.with_timeout(CALL_TIMEOUT);
    let name = format!("{p}election");
    let (s1, s2) = (session(&c).await, session(&c).await);
    let mut first = Election::new(&s1, name.as_str());
    first.campaign("alpha").await.unwrap();
    assert_eq!(first.leader().await.unwrap().value(), "alpha");
    let second = {
        let s2 = s2.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let mut e = Election::new(&s2, name.as_str());
            e.campaign("beta").await.map(|()| e)
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!second.is_finished(), "the second candidate waits");
    first.proclaim("alpha-2").await.unwrap();
    // The server's election service reads the same election.
    let leader = c.leader(name.as_str()).await.unwrap();
    assert_eq!(&leader.kv.unwrap().value[..], b"alpha-2");
    assert!(!second.is_finished());
    first.resign().await.unwrap();
    assert!(first.key().is_none());
    let mut second = within("second candidate", second).await.unwrap().unwrap();
    let leader = second.leader().await.unwrap();
    assert_eq!(leader.value(), "beta");
    assert_eq!(Some(leader.key()), second.key());
    // Campaigning again keeps the place and proclaims the new value.
    second.campaign("beta-2").await.unwrap();
    assert_eq!(second.leader().await.unwrap().value(), "beta-2");
    second.resign().await.unwrap();
    assert_eq!(second.leader().await, Err(ConcurrencyError::NoLeader));
    s1.close().await.unwrap();
    s2.close().await.unwrap();
});

per_version!(
    proclaim_by_a_non_leader_fails_with_the_typed_error,
    |version| {
        let (c, p) = shared_client(version, "proclaim");
        let c = c.with_timeout(CALL_TIMEOUT);
        let name = format!("{p}election");
        let (s1, s2) = (session(&c).await, session(&c).await);
        // Never campaigned.
        let mut never = Election::new(&s2, name.as_str());
        assert_eq!(never.proclaim("x").await, Err(ConcurrencyError::NotLeader));
        assert_eq!(never.leader().await, Err(ConcurrencyError::NoLeader));
        // A stale leadership: resumed from a key that was resigned since.
        let mut leader = Election::new(&s1, name.as_str());
        leader.campaign("one").await.unwrap();
        let key = leader.leader_key().unwrap();
        let mut resumed = Election::resume(&s1, key.clone());
        resumed
            .proclaim("through the resumed handle")
            .await
            .unwrap();
        assert_eq!(
            leader.leader().await.unwrap().value(),
            "through the resumed handle"
        );
        leader.resign().await.unwrap();
        assert_eq!(
            resumed.proclaim("stale").await,
            Err(ConcurrencyError::NotLeader)
        );
        assert!(resumed.key().is_none(), "the lost leadership is forgotten");
        assert_eq!(
            resumed.proclaim("again").await,
            Err(ConcurrencyError::NotLeader)
        );
        // Nothing was written by the failed proclamations.
        assert_eq!(count_under(&c, &format!("{name}/")).await, 0);
        s1.close().await.unwrap();
        s2.close().await.unwrap();
    }
);

per_version!(
    observe_yields_each_leader_value_even_older_than_the_compact_revision,
    |version| {
        let server = Arc::new(
            blocking(move || EtcdServer::start(version))
                .await
                .expect("etcd"),
        );
        let c = client_for(&server, |_| {});
        let name = "jobs/leader";
        let (s1, s2) = (session(&c).await, session(&c).await);
        let mut first = Election::new(&s1, name);
        first.campaign("v1").await.unwrap();
        // Move the history on and compact it past the leader key's revision.
        let mut last = 0;
        for i in 0..20 {
            last = c
                .put((format!("other/{i}"), "x"))
                .await
                .unwrap()
                .header
                .unwrap()
                .revision;
        }
        c.compact(Compact::new(last).physical()).await.unwrap();
        let leader_rev = first.rev().unwrap();
        assert!(leader_rev < last, "the leader key predates the compaction");

        let mut observer = Observer::new(&c, name);
        let mut next = async || {
            within("observe", observer.next())
                .await
                .expect("observing")
                .expect("a leader value")
        };
        let seen = next().await;
        assert_eq!(seen.value(), "v1");
        assert_eq!(seen.kv.create_revision, leader_rev);
        first.proclaim("v2").await.unwrap();
        assert_eq!(next().await.value(), "v2");
        first.proclaim("v3").await.unwrap();
        assert_eq!(next().await.value(), "v3");
        // A new leader after a resignation.
        let second = {
            let s2 = s2.clone();
            tokio::spawn(async move {
                let mut e = Election::new(&s2, name);
                e.campaign("w1").await.map(|()| e)
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.resign().await.unwrap();
        let seen = next().await;
        assert_eq!(seen.value(), "w1");
        let mut second = within("second", second).await.unwrap().unwrap();
        second.proclaim("w2").await.unwrap();
        assert_eq!(next().await.value(), "w2");
        // Nobody leads, then somebody does.
        second.resign().await.unwrap();
        let mut third = Election::new(&s1, name);
        third.campaign("x1").await.unwrap();
        assert_eq!(next().await.value(), "x1");
        // An observer from an election handle starts with the current leader.
        let mut from_handle = third.observe();
        assert_eq!(
            within("observe", from_handle.next())
                .await
                .unwrap()
                .unwrap()
                .value(),
            "x1"
        );
        s1.close().await.unwrap();
        s2.close().await.unwrap();
    }
);

// ---- STM ----

fn account(p: &str, i: usize) -> String {
    format!("{p}account/{i}")
}

per_version!(
    five_concurrent_repeatable_reads_stms_preserve_the_sum,
    |version| {
        let (c, p) = shared_client(version, "stm_accounts");
        let c = c.with_timeout(CALL_TIMEOUT);
        for i in 0..10 {
            c.put((account(&p, i), "100")).await.unwrap();
        }
        let mut tasks = Vec::new();
        for worker in 0..5u64 {
            let c = c.clone();
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                let mut seed = worker * 7919 + 17;
                let mut rand = move |n: u64| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((seed >> 33) % n) as usize
                };
                let mut attempts = 0;
                for _ in 0..20 {
                    let from = account(&p, rand(10));
                    let to = account(&p, rand(10));
                    let amount = rand(30) as i64 + 1;
                    // Spawned, so the closure owns what it uses (see the `stm` docs).
                    let done = stm::run(
                        &c,
                        Isolation::RepeatableReads,
                        async move |stm: &mut Stm| -> Result<bool, Error> {
                            let have = number(stm.get(from.as_str()).await?);
                            if from == to || have < amount {
                                return Ok(false);
                            }
                            let theirs = number(stm.get(to.as_str()).await?);
                            stm.put(from.as_str(), (have - amount).to_string());
                            stm.put(to.as_str(), (theirs + amount).to_string());
                            Ok(true)
                        },
                    )
                    .await
                    .unwrap();
                    attempts += done.attempts;
                }
                attempts
            }));
        }
        let mut attempts = 0;
        for t in tasks {
            attempts += within("transfers", t).await.unwrap();
        }
        let all = c
            .get(Get::new(format!("{p}account/")).prefix())
            .await
            .unwrap();
        let sum: i64 = all
            .kvs
            .iter()
            .map(|kv| number(Some(kv.value.clone())))
            .sum();
        assert_eq!(all.kvs.len(), 10);
        assert_eq!(sum, 1000, "the transfers preserve the sum");
        assert!(attempts >= 100);
        eprintln!("100 transfers took {attempts} attempts");
    }
);

/// Runs `isolation` over keys `a` and `b` (both "0"): the first attempt reads `a`, then
/// another client writes `a` and `b` ("1"), then it reads `b` and `a` again and writes `c`.
/// Returns what each attempt read and the commit's attempt count.
async fn read_write_scenario(
    c: &Handle,
    p: &str,
    isolation: Isolation,
) -> (Vec<(String, String, String)>, u32) {
    let (a, b, k) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));
    c.put((a.as_str(), "0")).await.unwrap();
    c.put((b.as_str(), "0")).await.unwrap();
    let mut seen = Vec::new();
    let done = stm::run(c, isolation, async |stm: &mut Stm| -> Result<(), Error> {
        let first_a = text(&stm.get(a.as_str()).await?);
        if seen.is_empty() {
            c.put((a.as_str(), "1")).await?;
            c.put((b.as_str(), "1")).await?;
        }
        let b_value = text(&stm.get(b.as_str()).await?);
        let again_a = text(&stm.get(a.as_str()).await?);
        seen.push((first_a.clone(), b_value.clone(), again_a));
        stm.put(k.as_str(), format!("{first_a}{b_value}"));
        Ok(())
    })
    .await
    .unwrap();
    (seen, done.attempts)
}

per_version!(
    read_committed_sees_a_concurrent_write_and_commits,
    |version| {
        let (c, p) = shared_client(version, "stm_rc");
        let c = c.with_timeout(CALL_TIMEOUT);
        let (seen, attempts) = read_write_scenario(&c, &p, Isolation::ReadCommitted).await;
        // It saw the write to b made after its first read, and committed anyway.
        assert_eq!(seen, vec![("0".into(), "1".into(), "0".into())]);
        assert_eq!(attempts, 1);
        assert_eq!(text(&value_of(&c, &format!("{p}c")).await), "01");
    }
);

per_version!(
    repeatable_reads_retries_when_a_read_key_changed,
    |version| {
        let (c, p) = shared_client(version, "stm_rr");
        let c = c.with_timeout(CALL_TIMEOUT);
        let (seen, attempts) = read_write_scenario(&c, &p, Isolation::RepeatableReads).await;
        // The first attempt read b's new value (reads are not pinned), read a again as it first
        // read it (repeatable), and its commit failed because a changed: the second attempt read
        // the new values.
        assert_eq!(
            seen,
            vec![
                ("0".into(), "1".into(), "0".into()),
                ("1".into(), "1".into(), "1".into())
            ]
        );
        assert_eq!(attempts, 2);
        assert_eq!(text(&value_of(&c, &format!("{p}c")).await), "11");
    }
);

per_version!(serializable_reads_at_the_first_reads_revision, |version| {
    let (c, p) = shared_client(version, "stm_ser");
    let c = c.with_timeout(CALL_TIMEOUT);
    let (seen, attempts) = read_write_scenario(&c, &p, Isolation::Serializable).await;
    // The first attempt read b at the revision of its first read: the old value.
    assert_eq!(
        seen,
        vec![
            ("0".into(), "0".into(), "0".into()),
            ("1".into(), "1".into(), "1".into())
        ]
    );
    assert_eq!(attempts, 2);
    assert_eq!(text(&value_of(&c, &format!("{p}c")).await), "11");

    // A key only written (never read) may change under it: Serializable commits anyway.
    let (attempts, value) = write_conflict_scenario(&c, &p, Isolation::Serializable).await;
    assert_eq!((attempts, value.as_str()), (1, "mine"));
});

/// Reads `x`; the first attempt lets another client write `w`, then writes `w` itself.
async fn write_conflict_scenario(c: &Handle, p: &str, isolation: Isolation) -> (u32, String) {
    let (x, w) = (format!("{p}x"), format!("{p}w"));
    c.put((x.as_str(), "x")).await.unwrap();
    c.put((w.as_str(), "old")).await.unwrap();
    let mut attempt = 0;
    let done = stm::run(c, isolation, async |stm: &mut Stm| -> Result<(), Error> {
        attempt += 1;
        stm.get(x.as_str()).await?;
        if attempt == 1 {
            c.put((w.as_str(), "theirs")).await?;
        }
        stm.put(w.as_str(), "mine");
        Ok(())
    })
    .await
    .unwrap();
    (done.attempts, text(&value_of(c, &w).await))
}

per_version!(
    serializable_snapshot_also_aborts_on_write_conflicts,
    |version| {
        let (c, p) = shared_client(version, "stm_snap");
        let c = c.with_timeout(CALL_TIMEOUT);
        let (attempts, value) =
            write_conflict_scenario(&c, &p, Isolation::SerializableSnapshot).await;
        assert_eq!((attempts, value.as_str()), (2, "mine"));
        // Read conflicts abort too, and the retry reads one snapshot.
        let (seen, attempts) =
            read_write_scenario(&c, &format!("{p}r/"), Isolation::SerializableSnapshot).await;
        assert_eq!(attempts, 2);
        assert_eq!(seen[0], ("0".into(), "0".into(), "0".into()));
        assert_eq!(seen[1], ("1".into(), "1".into(), "1".into()));
    }
);

per_version!(stm_prefetch_deletes_revisions_and_aborts, |version| {
    let (c, p) = shared_client(version, "stm_misc");
    let c = c.with_timeout(CALL_TIMEOUT);
    let (a, b) = (format!("{p}a"), format!("{p}b"));
    let put_rev = c
        .put((a.as_str(), "1"))
        .await
        .unwrap()
        .header
        .unwrap()
        .revision;
    let options = StmOptions::new()
        .isolation(Isolation::SerializableSnapshot)
        .prefetch([a.as_str(), b.as_str()]);
    let done = stm::run(&c, options, async |stm: &mut Stm| -> Result<_, Error> {
        let values = stm.get_many([a.as_str(), b.as_str()]).await?;
        let rev = stm.rev(a.as_str()).await?;
        stm.delete(a.as_str());
        let after_delete = stm.get(a.as_str()).await?;
        stm.put(b.as_str(), "2");
        let after_put = stm.get(b.as_str()).await?;
        Ok((values, rev, after_delete, after_put))
    })
    .await
    .unwrap();
    let (values, rev, after_delete, after_put) = done.value;
    assert_eq!(values, vec![Some(Bytes::from("1")), None]);
    assert_eq!(rev, put_rev);
    assert_eq!(after_delete, None);
    assert_eq!(after_put, Some(Bytes::from("2")));
    assert!(c.get(a.as_str()).await.unwrap().kvs.is_empty());
    assert_eq!(text(&value_of(&c, &b).await), "2");

    // An error of the function aborts without writing.
    let aborted = stm::run(&c, Isolation::ReadCommitted, async |stm: &mut Stm| {
        stm.put(a.as_str(), "never");
        Err::<(), _>(ConcurrencyError::NotLeader)
    })
    .await;
    assert_eq!(aborted.unwrap_err(), ConcurrencyError::NotLeader);
    assert!(c.get(a.as_str()).await.unwrap().kvs.is_empty());
});

// ---- Recipes ----

per_version!(barrier_holds_waiters_until_release, |version| {
    let (c, p) = shared_client(version, "barrier");
    let c = c.with_timeout(CALL_TIMEOUT);
    let barrier = Barrier::new(&c, format!("{p}barrier"));
    // Down: wait returns at once.
    within("open barrier", barrier.wait()).await.unwrap();
    barrier.hold().await.unwrap();
    assert_eq!(barrier.hold().await, Err(ConcurrencyError::KeyExists));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let b = barrier.clone();
            tokio::spawn(async move { b.wait().await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(waiters.iter().all(|w| !w.is_finished()), "waiters wait");
    barrier.release().await.unwrap();
    for w in waiters {
        within("released waiter", w).await.unwrap().unwrap();
    }
});

per_version!(double_barrier_enters_and_leaves_together, |version| {
    let (c, p) = shared_client(version, "double_barrier");
    let c = c.with_timeout(CALL_TIMEOUT);
    let key = format!("{p}db");
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(session(&c).await);
    }
    let enter = |s: &Session| {
        let mut b = DoubleBarrier::new(s, key.as_str(), 3);
        tokio::spawn(async move { b.enter().await.map(|()| b) })
    };
    let first = enter(&sessions[0]);
    let second = enter(&sessions[1]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !first.is_finished() && !second.is_finished(),
        "two of three wait"
    );
    let third = enter(&sessions[2]);
    let mut inside = Vec::new();
    for t in [first, second, third] {
        inside.push(within("enter", t).await.unwrap().unwrap());
    }
    // Full: a fourth is turned away.
    let mut fourth = DoubleBarrier::new(&sessions[3], key.as_str(), 3);
    assert_eq!(fourth.enter().await, Err(ConcurrencyError::TooManyClients));
    // Leaving waits for everybody.
    let mut last = inside.pop().unwrap();
    let leaving: Vec<_> = inside
        .into_iter()
        .map(|mut b| tokio::spawn(async move { b.leave().await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        leaving.iter().all(|l| !l.is_finished()),
        "leavers wait for the last"
    );
    within("last leave", last.leave()).await.unwrap();
    for l in leaving {
        within("leave", l).await.unwrap().unwrap();
    }
    assert_eq!(count_under(&c, &format!("{key}/")).await, 0);
    for s in sessions {
        s.close().await.unwrap();
    }
});

per_version!(queue_is_fifo_and_dequeue_waits, |version| {
    let (c, p) = shared_client(version, "queue");
    let c = c.with_timeout(CALL_TIMEOUT);
    let queue = Queue::new(&c, format!("{p}q"));
    for i in 0..5 {
        queue.enqueue(format!("item-{i}")).await.unwrap();
    }
    for i in 0..5 {
        assert_eq!(queue.dequeue().await.unwrap(), format!("item-{i}"));
    }
    let waiting = {
        let q = queue.clone();
        tokio::spawn(async move { q.dequeue().await })
    };
    // An item of another queue whose name extends this one's is not taken.
    Queue::new(&c, format!("{p}q2"))
        .enqueue("not mine")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "dequeue waits for an item");
    queue.enqueue("late").await.unwrap();
    assert_eq!(within("dequeue", waiting).await.unwrap().unwrap(), "late");
    // Concurrent consumers each take a different item.
    for i in 0..6 {
        queue.enqueue(format!("c{i}")).await.unwrap();
    }
    let consumers: Vec<_> = (0..6)
        .map(|_| {
            let q = queue.clone();
            tokio::spawn(async move { q.dequeue().await })
        })
        .collect();
    let mut got = Vec::new();
    for t in consumers {
        got.push(within("consumer", t).await.unwrap().unwrap());
    }
    got.sort();
    assert_eq!(got, (0..6).map(|i| format!("c{i}")).collect::<Vec<_>>());
});

per_version!(priority_queue_orders_by_priority_then_arrival, |version| {
    let (c, p) = shared_client(version, "pqueue");
    let c = c.with_timeout(CALL_TIMEOUT);
    let queue = PriorityQueue::new(&c, format!("{p}pq"));
    for (value, priority) in [
        ("c", 3),
        ("a1", 1),
        ("b", 2),
        ("a2", 1),
        ("z", 0),
        ("a3", 1),
    ] {
        queue.enqueue(value, priority).await.unwrap();
    }
    let mut order = Vec::new();
    for _ in 0..6 {
        order.push(String::from_utf8(queue.dequeue().await.unwrap().to_vec()).unwrap());
    }
    assert_eq!(order, ["z", "a1", "a2", "a3", "b", "c"]);
    let waiting = {
        let q = queue.clone();
        tokio::spawn(async move { q.dequeue().await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    queue.enqueue("late", 7).await.unwrap();
    assert_eq!(within("dequeue", waiting).await.unwrap().unwrap(), "late");
});

per_version!(rw_mutex_shares_readers_and_excludes_writers, |version| {
    let (c, p) = shared_client(version, "rwmutex");
    let c = c.with_timeout(CALL_TIMEOUT);
    let name = format!("{p}rw");
    let s = session(&c).await;
    let mut r1 = RwMutex::new(&s, name.as_str());
    let mut r2 = RwMutex::new(&s, name.as_str());
    within("reader 1", r1.read_lock()).await.unwrap();
    within("reader 2", r2.read_lock()).await.unwrap();
    let writer = {
        let s = s.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let mut w = RwMutex::new(&s, name.as_str());
            w.lock().await.map(|()| w)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the writer waits for the readers");
    // A reader after a waiting writer waits for the writer.
    let late_reader = {
        let s = s.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let mut r = RwMutex::new(&s, name.as_str());
            r.read_lock().await.map(|()| r)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!late_reader.is_finished());
    r1.read_unlock().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "one reader is still in");
    r2.read_unlock().await.unwrap();
    let mut w = within("writer", writer).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!late_reader.is_finished(), "the writer excludes readers");
    w.unlock().await.unwrap();
    let mut r = within("late reader", late_reader).await.unwrap().unwrap();
    r.read_unlock().await.unwrap();
    assert_eq!(count_under(&c, &format!("{name}/")).await, 0);
    s.close().await.unwrap();
});
