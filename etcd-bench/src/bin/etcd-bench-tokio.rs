//! `etcd-bench/v1` peer on the tokio adapter.
//!
//! The runtime is tokio's current-thread scheduler by default (the driver, the connection and
//! the workers share one thread); `ETCD_BENCH_WORKERS=N` (N >= 1) selects the multi-thread
//! scheduler with N workers instead.

use std::time::Instant;

use etcd_bench::{BoxFuture, Cli, Rt};
use etcd_driver::{Client, Config, Error};

#[derive(Clone)]
struct TokioRt {
    describe: String,
}

impl Rt for TokioRt {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn client(&self, config: Config) -> Result<Client, Error> {
        Ok(etcd_tokio::Client::with_config(config)?.inner().clone())
    }

    fn spawn<T: Send + 'static>(
        &self,
        task: impl std::future::Future<Output = T> + Send + 'static,
    ) -> BoxFuture<T> {
        let handle = tokio::spawn(task);
        Box::pin(async move { handle.await.expect("bench task panicked") })
    }

    fn detach(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        Box::pin(tokio::time::sleep_until(at.into()))
    }
}

fn main() {
    etcd_bench::process_start();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = Cli::parse(&args);
    let workers = std::env::var("ETCD_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n >= 1);
    let (runtime, describe) = match workers {
        None => (
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            "tokio current-thread; etcd-driver over h2".to_string(),
        ),
        Some(n) => (
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(n)
                .enable_all()
                .build(),
            format!("tokio multi-thread ({n} workers); etcd-driver over h2"),
        ),
    };
    let runtime = runtime.expect("tokio runtime");
    let line = runtime.block_on(etcd_bench::run(TokioRt { describe }, cli));
    println!("{line}");
    // Do not wait for the background tasks to shut down.
    std::process::exit(0);
}
