//! What only `etcd-smol` promises beyond the conformance suite: it needs no runtime of its
//! own to be running (smol's global executor drives it), it runs under other executors, and
//! a driver on an executor of the caller's closes with that executor.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use etcd_smol::{Client, Config, Error, Get, Smol};
use etcd_tests::{shared_endpoint, unique_prefix, EtcdVersion};

fn config(version: EtcdVersion) -> Config {
    let mut config = Config::from_endpoints([shared_endpoint(version)]).expect("config");
    config.default_timeout = Some(Duration::from_secs(10));
    config
}

#[test]
fn calls_from_a_plain_block_on_and_from_tokio() {
    let prefix = unique_prefix("smol_plain");
    let client = Client::with_config(config(EtcdVersion::V3_5)).unwrap();
    // futures-lite's block_on: a parker, no reactor, no executor.
    smol::future::block_on(client.put((format!("{prefix}a"), "1"))).unwrap();
    // Inside tokio (no smol runtime anywhere on this thread).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let in_tokio = client.clone();
    let key = format!("{prefix}b");
    rt.block_on(async move { in_tokio.put((key, "2")).await })
        .unwrap();
    let got = smol::future::block_on(client.get(Get::new(&prefix).prefix())).unwrap();
    assert_eq!(got.count, 2);
}

#[test]
fn dropping_the_callers_executor_closes_the_client() {
    let endpoint = shared_endpoint(EtcdVersion::V3_4);
    let name = unique_prefix("smol_executor_drop");
    let holder = Client::with_config(config(EtcdVersion::V3_4)).unwrap();
    let (lease, held) = smol::block_on(async {
        let lease = holder.lease_grant(30).await.unwrap().id;
        (lease, holder.lock(name.clone(), lease).await.unwrap())
    });

    let executor = Arc::new(smol::Executor::new());
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let runner = executor.clone();
    let thread = thread::spawn(move || {
        smol::block_on(runner.run(async {
            let _ = stopped.recv().await;
        }))
    });
    let client = Client::with_runtime(
        Smol::on(&executor),
        Config::from_endpoints([endpoint]).unwrap(),
    )
    .unwrap();
    // A lock call that waits on the server (on a fresh lease: with the holder's it would own
    // the lock at once), polled by a thread of its own.
    let waiter = client.clone();
    let lock_name = name.clone();
    let call = thread::spawn(move || {
        let result = smol::future::block_on(waiter.lock(lock_name, 0));
        (result, Instant::now())
    });
    thread::sleep(Duration::from_millis(500));
    assert!(!call.is_finished());

    let dropped = Instant::now();
    drop(stop);
    thread.join().unwrap();
    drop(executor);
    let (result, at) = call.join().unwrap();
    assert!(matches!(result, Err(Error::ClientClosed)), "{result:?}");
    assert!(at.duration_since(dropped) < Duration::from_secs(1));
    // New calls fail at once.
    assert!(matches!(
        smol::future::block_on(client.get("k")),
        Err(Error::ClientClosed)
    ));

    smol::block_on(async {
        holder.unlock(held.key).await.unwrap();
        holder.lease_revoke(lease).await.unwrap();
    });
}
