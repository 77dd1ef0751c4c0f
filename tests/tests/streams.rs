//! Server-streaming calls against real servers: snapshot save (verified, restorable) and
//! election observe.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use etcd_tests::{repo_root, EtcdServer, EtcdVersion};
use etcd_tokio::{Client, Endpoint, Get};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

per_version!(
    snapshot_save_is_verified_private_and_restorable,
    |version| {
        let source = Arc::new(
            blocking(move || EtcdServer::start(version))
                .await
                .expect("etcd"),
        );
        let c = client_for(&source, |_| {});
        for i in 0..50 {
            c.put((format!("snap/{i:02}"), format!("value-{i}")))
                .await
                .unwrap();
        }
        let dir = std::env::temp_dir().join(format!(
            "etcd-snap-{}-{}",
            std::process::id(),
            version.minor()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snap.db");
        let endpoint: Endpoint = source.client_url().parse().unwrap();
        let saved = c.snapshot_save(&endpoint, &path).await.unwrap();
        assert!(saved.size > 0);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), saved.size);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        assert!(!dir.join("snap.db.part").exists());

        // Restore with etcdutl 3.5.1 into a fresh 3.5.1 member and read the keys back.
        let target = Arc::new(
            blocking(|| EtcdServer::start(EtcdVersion::V3_5))
                .await
                .expect("etcd"),
        );
        {
            let t = target.clone();
            let path = path.clone();
            blocking(move || {
                t.stop().unwrap();
                let data_dir = t.data_dir().to_path_buf();
                std::fs::remove_dir_all(&data_dir).unwrap();
                let etcdutl = repo_root().join(".etcd/3.5.1/etcdutl");
                let out = Command::new(etcdutl)
                    .arg("snapshot")
                    .arg("restore")
                    .arg(&path)
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .arg("--name")
                    .arg(t.name())
                    .arg("--initial-cluster")
                    .arg(format!("{}={}", t.name(), t.peer_url()))
                    .arg("--initial-advertise-peer-urls")
                    .arg(t.peer_url())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "restore: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                t.restart().unwrap();
            })
            .await;
        }
        let restored = client_for(&target, |_| {});
        let got = restored.get(Get::new("snap/").prefix()).await.unwrap();
        assert_eq!(got.count, 50);
        assert_eq!(&got.kvs[7].value[..], b"value-7");
        std::fs::remove_dir_all(&dir).unwrap();
    }
);

per_version!(observe_yields_each_leader_value, |version| {
    let (c, p) = shared_client(version, "observe");
    let c = c.with_timeout(Duration::from_secs(20));
    let name = format!("{p}election");
    let lease = c.lease_grant(30).await.unwrap().id;
    let won = c.campaign(name.as_str(), lease, "first").await.unwrap();
    let leader = won.leader.unwrap();
    let observer = Client::connect([etcd_tests::shared_endpoint(version)]).unwrap();
    let mut stream = observer.observe(name.as_str()).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&first.kv.unwrap().value[..], b"first");
    c.proclaim(leader.clone(), "second").await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&second.kv.unwrap().value[..], b"second");
    drop(stream);
    c.resign(leader).await.unwrap();
});
