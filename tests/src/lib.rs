//! Integration-test harness: provisions and runs real etcd servers.
//!
//! * [`EtcdVersion`] names the server versions under test (3.4.23 and 3.5.1)
//!   and finds their binaries, installing them with
//!   `scripts/install-etcd.sh` on first use if they are missing.
//! * [`EtcdServer`] is one etcd process on free loopback ports, with its own
//!   temp data dir; [`EtcdCluster`] is an n-member cluster.
//! * [`shared_endpoint`] gives a server shared by all tests of a run (the one
//!   `scripts/test.sh` started, from `ETCD_TEST_ENDPOINT_3_x`, else one
//!   started for this process); isolate by key with [`unique_prefix`].
//! * [`TcpProxy`] sits between a client and a server for fault injection:
//!   forward, black-hole, stall or refuse connections ([`ProxyMode`]), cut
//!   them all at once or periodically.
//! * [`TestCerts`] generates a CA, server and client certificates;
//!   [`EtcdServerBuilder::tls`] / [`EtcdClusterBuilder::tls`] serve clients
//!   over TLS with them (optionally requiring client certificates).
//! * [`enable_auth`], [`add_user`], ... manage users, roles and auth through
//!   the `etcdctl` binary; [`Etcdctl`] runs any etcdctl command.
//!
//! Every etcd runs under a watchdog shell whose stdin is a pipe held by the
//! test process: when the process exits or dies (even by SIGKILL), the pipe
//! closes and the watchdog kills etcd and removes its directory.
//!
//! Environment variables:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `ETCD_BIN_3_4`, `ETCD_BIN_3_5` | etcd binary to use for that version |
//! | `ETCD_TEST_ENDPOINT_3_4`, `ETCD_TEST_ENDPOINT_3_5` | URL of an already running shared server |
//! | `ETCDCTL_BIN` | etcdctl binary (default: next to the etcd 3.5 binary) |
//!
//! ```no_run
//! use etcd_tests::{EtcdServer, EtcdVersion};
//!
//! let server = EtcdServer::builder(EtcdVersion::V3_5)
//!     .name("m0")
//!     .flag("--max-request-bytes", "10485760")
//!     .start()
//!     .expect("start etcd");
//! println!("etcd at {}", server.client_url());
//! ```

mod auth;
mod cluster;
pub mod http;
mod install;
mod ports;
mod proxy;
mod server;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub use auth::{
    add_role, add_user, disable_auth, enable_auth, etcdctl_binary, grant_permission, grant_role,
    Etcdctl, EtcdctlOutput, Permission, ETCDCTL_TIMEOUT,
};
pub use cluster::{EtcdCluster, EtcdClusterBuilder};
pub use install::{repo_root, EtcdVersion};
pub use ports::{free_port, try_free_port};
pub use proxy::{ProxyMode, ProxyTarget, TcpProxy};
pub use server::{EtcdServer, EtcdServerBuilder, ServerStatus, START_TIMEOUT, STOP_TIMEOUT};
pub use tls::{CertKey, ServerTlsFiles, TestCerts, CLIENT_CN, SERVER_NAMES};

/// The client URL (`http://127.0.0.1:PORT`) of a server of `version` shared
/// by every test of the run.
///
/// Returns `$ETCD_TEST_ENDPOINT_3_4` / `$ETCD_TEST_ENDPOINT_3_5` when set
/// (`scripts/test.sh` sets them); otherwise starts one server per version for
/// this process on first use and keeps it for the life of the process.
///
/// # Panics
///
/// If the server cannot be started.
pub fn shared_endpoint(version: EtcdVersion) -> String {
    if let Ok(url) = std::env::var(version.endpoint_env_var()) {
        if !url.trim().is_empty() {
            return url.trim().to_string();
        }
    }
    shared_server(version).client_url()
}

/// The process-wide server behind [`shared_endpoint`] when no
/// `ETCD_TEST_ENDPOINT_3_x` is set. Never dropped: its watchdog kills it
/// when the process exits.
fn shared_server(version: EtcdVersion) -> &'static EtcdServer {
    static V3_4: OnceLock<EtcdServer> = OnceLock::new();
    static V3_5: OnceLock<EtcdServer> = OnceLock::new();
    let cell = match version {
        EtcdVersion::V3_4 => &V3_4,
        EtcdVersion::V3_5 => &V3_5,
    };
    cell.get_or_init(|| {
        EtcdServer::builder(version)
            .name("shared")
            .start()
            .unwrap_or_else(|e| panic!("could not start the shared {version} server: {e}"))
    })
}

/// A key prefix unique to this call and process, ending in `/`:
/// `etcd-tests/TEST/PID-COUNTER-NANOS/`. Tests that share one server keep
/// all their keys under their own prefix.
pub fn unique_prefix(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("etcd-tests/{test}/{}-{n}-{nanos}/", std::process::id())
}

#[cfg(test)]
mod tests;
