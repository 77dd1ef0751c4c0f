//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use etcd_tests::{shared_endpoint, unique_prefix, EtcdServer, EtcdVersion};
use etcd_tokio::{Client, Config};

/// Every call of a test is bounded, so a hung server fails the test instead of stalling CI.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of the shared server of `version`, and a key prefix of its own.
pub fn shared_client(version: EtcdVersion, test: &str) -> (Client, String) {
    let endpoint = shared_endpoint(version);
    let client = Client::connect([endpoint.as_str()]).expect("client");
    (client, unique_prefix(test))
}

/// A client of a given server with a configuration tweak.
pub fn client_for(server: &EtcdServer, tweak: impl FnOnce(&mut Config)) -> Client {
    let mut config = Config::from_endpoints([server.client_url()]).expect("config");
    config.default_timeout = Some(CALL_TIMEOUT);
    tweak(&mut config);
    Client::with_config(config).expect("client")
}

/// Defines one `#[tokio::test]` per server version from an async body taking the version.
#[macro_export]
macro_rules! per_version {
    ($name:ident, |$version:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($version: etcd_tests::EtcdVersion) $body

            #[tokio::test]
            async fn v3_4() {
                run(etcd_tests::EtcdVersion::V3_4).await
            }

            #[tokio::test]
            async fn v3_5() {
                run(etcd_tests::EtcdVersion::V3_5).await
            }
        }
    };
}
