//! One conformance suite, written once (`conformance/scenarios.rs`) and run on every runtime
//! (tokio, smol, async-std and the blocking client) against etcd 3.4.23 and 3.5.1.
//!
//! Test names read `RUNTIME::SCENARIO::VERSION`: `cargo test --test conformance blocking::`
//! runs one runtime, `cargo test --test conformance leases` one scenario everywhere.

#[path = "conformance/client.rs"]
mod client;
#[path = "conformance/scenarios.rs"]
mod scenarios;
#[path = "conformance/target.rs"]
mod target;

use std::future::Future;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use etcd_driver::Config;
use target::{Server, Target};

/// tokio: a current-thread runtime, as `#[tokio::test]` builds.
fn tokio_block_on<F: Future>(future: F) -> F::Output {
    ::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

fn tokio_client(config: Config) -> etcd_tokio::Client {
    etcd_tokio::Client::with_config(config).expect("client")
}

/// smol: the driver on smol's global executor, the scenario in `smol::block_on`.
fn smol_client(config: Config) -> etcd_smol::Client {
    etcd_smol::Client::with_config(config).expect("client")
}

/// async-std: the scenario in async-std's `block_on`, and the driver on an executor that an
/// async-std task runs, so no smol thread is involved at all.
struct AsyncStdClient {
    client: etcd_smol::Client,
    _executor: Arc<::smol::Executor<'static>>,
}

impl std::ops::Deref for AsyncStdClient {
    type Target = etcd_smol::Client;
    fn deref(&self) -> &etcd_smol::Client {
        &self.client
    }
}

fn async_std_client(config: Config) -> AsyncStdClient {
    let executor = Arc::new(::smol::Executor::new());
    let runner = executor.clone();
    ::async_std::task::spawn(async move {
        runner.run(std::future::pending::<()>()).await;
    });
    let runtime = etcd_smol::Smol::on(&executor);
    AsyncStdClient {
        client: etcd_smol::Client::with_runtime(runtime, config).expect("client"),
        _executor: executor,
    }
}

/// blocking: synchronous calls from the test's own plain thread.
fn blocking_client(config: Config) -> etcd_blocking::Client {
    etcd_blocking::Client::with_config(config).expect("client")
}

/// A blocking read of a stream cannot be given a deadline from outside, so a scenario that
/// hangs (a watcher that never resumes, say) ends its process after this long instead of
/// stalling the run (nextest runs each test in a process of its own).
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

/// Aborts the process unless dropped within [`SCENARIO_LIMIT`].
struct Watchdog(#[allow(dead_code)] mpsc::Sender<()>);

impl Watchdog {
    fn arm(test: &'static str) -> Watchdog {
        let (armed, disarmed) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(SCENARIO_LIMIT) {
                eprintln!("{test}: still running after {SCENARIO_LIMIT:?}, aborting");
                std::process::abort();
            }
        });
        Watchdog(armed)
    }
}

/// One module per scenario on `$runtime`, one test per server version in it.
macro_rules! on_runtime {
    ($runtime:ident, $block_on:path, $connect:path, |$c:ident| $handle:expr;
     $($server:ident $name:ident,)*) => {
        mod $runtime {
            use super::*;
            $(mod $name {
                use super::*;

                fn run(version: etcd_tests::EtcdVersion) {
                    let _watchdog = Watchdog::arm(module_path!());
                    let target = Target::new(version, Server::$server, stringify!($name));
                    $block_on(async {
                        let $c = $connect(target.config.clone());
                        scenarios::$name($handle, &target).await
                    })
                }

                #[test]
                fn v3_4() {
                    run(etcd_tests::EtcdVersion::V3_4)
                }

                #[test]
                fn v3_5() {
                    run(etcd_tests::EtcdVersion::V3_5)
                }
            })*
        }
    };
}

macro_rules! conformance {
    ($($server:ident $name:ident,)*) => {
        on_runtime!(tokio, tokio_block_on, tokio_client, |c| c.inner(); $($server $name,)*);
        on_runtime!(smol, ::smol::block_on, smol_client, |c| c.inner(); $($server $name,)*);
        on_runtime!(async_std, ::async_std::task::block_on, async_std_client, |c| c.inner();
            $($server $name,)*);
        on_runtime!(blocking, ::smol::future::block_on, blocking_client, |c| &c;
            $($server $name,)*);
    };
}

conformance! {
    Shared kv_put_get_delete,
    Shared kv_ranges_and_options,
    Shared txn_compares_and_nesting,
    Shared typed_errors_and_limits,
    Fresh compaction,
    Shared leases,
    Shared cluster_and_maintenance,
    Shared auth_admin,
    Shared lock_and_election,
    Tls over_mutual_tls,
    Shared watch_prefix,
    Shared lease_keepalive,
    Proxied watch_through_cuts,
    Proxied writes_at_most_once_across_cuts,
    Proxied lease_keepalive_through_cuts,
    Fresh calls_to_a_stopped_server,
    TwoProxies failover_between_endpoints,
}
