//! TLS against real servers: CA verification, mutual TLS, IP-address endpoints, server-name
//! override, and the (dangerous) option that skips server verification.

mod common;

use std::time::Duration;

use etcd_tests::{EtcdServer, EtcdVersion, TestCerts};
use etcd_tokio::{Client, Config, Error, TlsConfig};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn client(url: &str, tls: Option<TlsConfig>) -> Client {
    let mut config = Config::from_endpoints([url]).unwrap();
    config.default_timeout = Some(Duration::from_secs(2));
    config.connect_timeout = Duration::from_secs(1);
    config.tls = tls;
    Client::with_config(config).unwrap()
}

async fn tls_server(version: EtcdVersion, mtls: bool) -> (EtcdServer, TestCerts) {
    blocking(move || {
        let certs = TestCerts::generate_temp().expect("certs");
        let server = EtcdServer::builder(version)
            .tls(&certs, mtls)
            .start()
            .expect("etcd with TLS");
        (server, certs)
    })
    .await
}

per_version!(verification_needs_the_ca, |version| {
    let (server, certs) = tls_server(version, false).await;
    let url = server.client_url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    // Without our CA the server's certificate is not trusted: a clear TLS error.
    let untrusted = client(&url, None);
    let err = untrusted.get("k").await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::Transport {
                request_sent: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        text.contains("certificate") || text.contains("UnknownIssuer"),
        "{text}"
    );
    // A CA that did not sign it is not enough either.
    let wrong_ca = client(
        &url,
        Some(TlsConfig::with_ca_pem(certs.other_ca().cert_pem())),
    );
    assert!(wrong_ca.get("k").await.is_err());
    // With the CA, over an IP-address endpoint (verified against the IP SAN), it works.
    let trusted = client(&url, Some(TlsConfig::with_ca_pem(certs.ca().cert_pem())));
    trusted.put(("k", "v")).await.unwrap();
    assert_eq!(&trusted.get("k").await.unwrap().kvs[0].value[..], b"v");
    // Server-name override: verify against the DNS SAN instead of the IP.
    let named = client(
        &url,
        Some(TlsConfig::with_ca_pem(certs.ca().cert_pem()).server_name("etcd.test")),
    );
    assert_eq!(&named.get("k").await.unwrap().kvs[0].value[..], b"v");
    let misnamed = client(
        &url,
        Some(TlsConfig::with_ca_pem(certs.ca().cert_pem()).server_name("not-in-the-cert.test")),
    );
    assert!(misnamed.get("k").await.is_err());
    let _ = text;
});

per_version!(mutual_tls, |version| {
    let (server, certs) = tls_server(version, true).await;
    let url = server.client_url();
    let ca = certs.ca().cert_pem().to_vec();
    let anonymous = client(&url, Some(TlsConfig::with_ca_pem(ca.clone())));
    assert!(
        anonymous.get("k").await.is_err(),
        "a client without a certificate is refused"
    );
    let with_cert = client(
        &url,
        Some(
            TlsConfig::with_ca_pem(ca)
                .identity(certs.client().cert_pem(), certs.client().key_pem()),
        ),
    );
    with_cert.put(("k", "mtls")).await.unwrap();
    assert_eq!(&with_cert.get("k").await.unwrap().kvs[0].value[..], b"mtls");
});

/// The server's certificate is refused: a transport error naming the certificate problem,
/// before anything was sent.
async fn refused_for_its_certificate(client: &Client) {
    let err = client.get("k").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                request_sent: false,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("certificate") || text.contains("UnknownIssuer"),
        "{text}"
    );
}

per_version!(insecure_skip_verify_trusts_any_server, |version| {
    let (server, certs) = tls_server(version, false).await;
    let url = server.client_url();
    // By default a client that does not know the server's CA refuses it.
    refused_for_its_certificate(&client(&url, Some(TlsConfig::default()))).await;
    let other_ca = certs.other_ca().cert_pem().to_vec();
    refused_for_its_certificate(&client(
        &url,
        Some(TlsConfig::with_ca_pem(other_ca.clone())),
    ))
    .await;
    // With verification off it connects without the CA.
    let insecure = client(&url, Some(TlsConfig::default().insecure_skip_verify()));
    insecure.put(("k", "insecure")).await.unwrap();
    assert_eq!(
        &insecure.get("k").await.unwrap().kvs[0].value[..],
        b"insecure"
    );
    // Neither the CA bundle nor the name is checked then.
    let anything_goes = client(
        &url,
        Some(
            TlsConfig::with_ca_pem(other_ca)
                .server_name("not-in-the-cert.test")
                .insecure_skip_verify(),
        ),
    );
    assert_eq!(
        &anything_goes.get("k").await.unwrap().kvs[0].value[..],
        b"insecure"
    );
});

per_version!(insecure_skip_verify_with_a_client_identity, |version| {
    let (server, certs) = tls_server(version, true).await;
    let url = server.client_url();
    let identity =
        || TlsConfig::default().identity(certs.client().cert_pem(), certs.client().key_pem());
    // Without the CA the client refuses the server, identity or not.
    refused_for_its_certificate(&client(&url, Some(identity()))).await;
    // Verification off but no certificate: the server refuses the client.
    let anonymous = client(&url, Some(TlsConfig::default().insecure_skip_verify()));
    assert!(
        anonymous.get("k").await.is_err(),
        "a client without a certificate is refused"
    );
    // Verification off, with the identity: mutual TLS works.
    let with_cert = client(&url, Some(identity().insecure_skip_verify()));
    with_cert.put(("k", "mtls-insecure")).await.unwrap();
    assert_eq!(
        &with_cert.get("k").await.unwrap().kvs[0].value[..],
        b"mtls-insecure"
    );
});

#[tokio::test]
async fn the_tls_error_says_what_failed() {
    let (server, _certs) = tls_server(EtcdVersion::V3_5, false).await;
    // Fail fast on the connect error instead of waiting: one attempt, short deadline.
    let mut config = Config::from_endpoints([server.client_url()]).unwrap();
    config.default_timeout = Some(Duration::from_millis(1500));
    let c = Client::with_config(config).unwrap();
    let err = c.get("k").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("certificate") || text.contains("UnknownIssuer"),
        "the error names the TLS problem: {text}"
    );
    assert!(bad_pem_is_a_config_error());
}

fn bad_pem_is_a_config_error() -> bool {
    let mut config = Config::from_endpoints(["https://127.0.0.1:1"]).unwrap();
    config.tls = Some(TlsConfig::with_ca_pem(b"not a pem".to_vec()));
    let rt = tokio::runtime::Handle::current();
    let _guard = rt.enter();
    matches!(Client::with_config(config), Err(Error::InvalidConfig(_)))
}
