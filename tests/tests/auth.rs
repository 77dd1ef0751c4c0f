//! Token authentication against real servers (3.4.23 and 3.5.1): typed failure, token on
//! every call, transparent re-authentication after the server forgets tokens.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etcd_tests::EtcdServer;
use etcd_tokio::proto::etcdserverpb::{
    AuthEnableRequest, AuthUserAddRequest, AuthUserGrantRoleRequest,
};
use etcd_tokio::{Client, Config, EtcdErrorKind, Get};

const ROOT_PASSWORD: &str = "s3cret-Pa55";

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// Creates `root` with the root role and turns auth on, through our own client.
async fn enable_auth(server: &EtcdServer) {
    let admin = client_for(server, |_| {});
    admin
        .call(AuthUserAddRequest {
            name: "root".into(),
            password: ROOT_PASSWORD.into(),
            ..Default::default()
        })
        .await
        .expect("user add");
    admin
        .call(AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        })
        .await
        .expect("grant root");
    admin.call(AuthEnableRequest {}).await.expect("auth enable");
    // Without credentials every call is now refused with a typed error.
    let err = admin.get("k").await.unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::UserEmpty), "{err:?}");
}

fn authed(server: &EtcdServer, password: &str) -> Client {
    let config = Config::from_endpoints([server.client_url()])
        .unwrap()
        .with_credentials("root", password);
    let mut config = config;
    config.default_timeout = Some(CALL_TIMEOUT);
    Client::with_config(config).unwrap()
}

per_version!(
    wrong_password_is_auth_failed_and_right_one_works,
    |version| {
        let server = blocking(move || EtcdServer::start(version))
            .await
            .expect("etcd");
        enable_auth(&server).await;
        let wrong = authed(&server, "not-the-password");
        let err = wrong.put(("k", "v")).await.unwrap_err();
        assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::AuthFailed), "{err:?}");
        assert!(!err.is_retryable());
        let right = authed(&server, ROOT_PASSWORD);
        right.put(("k", "v")).await.unwrap();
        assert_eq!(&right.get("k").await.unwrap().kvs[0].value[..], b"v");
        // Neither the password nor the token shows up in Debug output.
        let config = Config::from_endpoints([server.client_url()])
            .unwrap()
            .with_credentials("root", ROOT_PASSWORD);
        let shown = format!("{config:?} {right:?}");
        assert!(!shown.contains(ROOT_PASSWORD), "{shown}");
    }
);

per_version!(
    member_restart_loses_tokens_and_the_client_reauthenticates,
    |version| {
        let server = Arc::new(
            blocking(move || EtcdServer::start(version))
                .await
                .expect("etcd"),
        );
        enable_auth(&server).await;
        let client = authed(&server, ROOT_PASSWORD);
        client.put(("k", "1")).await.unwrap();
        {
            let s = server.clone();
            blocking(move || s.restart()).await.unwrap();
        }
        // Simple tokens live in the member's memory: the old one is now invalid.
        client.put(("k", "2")).await.expect("put after the restart");
        assert_eq!(&client.get("k").await.unwrap().kvs[0].value[..], b"2");
    }
);

#[tokio::test]
async fn short_token_ttl_never_surfaces_v3_5() {
    let server = blocking(|| {
        EtcdServer::builder(etcd_tests::EtcdVersion::V3_5)
            .flag("--auth-token-ttl", "2")
            .start()
    })
    .await
    .expect("etcd");
    enable_auth(&server).await;
    let client = authed(&server, ROOT_PASSWORD);
    let started = Instant::now();
    let mut round = 0u32;
    while started.elapsed() < Duration::from_secs(15) {
        client
            .put(("ttl", round.to_string()))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        client
            .get(Get::new("ttl"))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        // Every fourth round idles past the token TTL, so the token expires in between.
        let pause = if round % 4 == 3 { 2500 } else { 200 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        round += 1;
    }
    assert!(round > 10);
}

// With a wrong password a watch ends with the typed error at once, after one Authenticate (it
// used to wait forever while the client asked the server again and again).
per_version!(wrong_password_ends_watches_at_once, |version| {
    let server = blocking(move || EtcdServer::start(version))
        .await
        .expect("etcd");
    enable_auth(&server).await;
    let wrong = authed(&server, "not-the-password");
    let watched = tokio::time::timeout(
        Duration::from_secs(10),
        wrong.watch(etcd_tokio::Watch::new("k")),
    )
    .await;
    let err = watched.expect("the watch ends in time").unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::AuthFailed), "{err:?}");
    // A second watch asks again (the password may have been fixed on the server meanwhile).
    let again = tokio::time::timeout(
        Duration::from_secs(10),
        wrong.watch(etcd_tokio::Watch::new("k")),
    )
    .await;
    let err = again.expect("the watch ends in time").unwrap_err();
    assert_eq!(err.etcd_kind(), Some(EtcdErrorKind::AuthFailed), "{err:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts = server.log().matches("authentication failed").count();
    assert!(attempts <= 3, "{attempts} failed authentications");
});
