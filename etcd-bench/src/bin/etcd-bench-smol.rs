//! `etcd-bench/v1` peer on the smol adapter: one `smol::Executor` run by the main thread
//! (`smol::block_on`, which also drives the async-io reactor) carries the driver, the
//! connection and the workers.

use std::sync::Arc;
use std::time::Instant;

use etcd_bench::{BoxFuture, Cli, Rt};
use etcd_driver::{Client, Config, Error};
use etcd_smol::Smol;
use smol::Executor;

#[derive(Clone)]
struct SmolRt {
    executor: Arc<Executor<'static>>,
}

impl Rt for SmolRt {
    fn describe(&self) -> String {
        "smol 2 (one async-executor on the main thread, async-io reactor); etcd-driver over h2"
            .to_string()
    }

    fn client(&self, config: Config) -> Result<Client, Error> {
        Ok(
            etcd_smol::Client::with_runtime(Smol::on(&self.executor), config)?
                .inner()
                .clone(),
        )
    }

    fn spawn<T: Send + 'static>(
        &self,
        task: impl std::future::Future<Output = T> + Send + 'static,
    ) -> BoxFuture<T> {
        Box::pin(self.executor.spawn(task))
    }

    fn detach(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.executor.spawn(task).detach();
    }

    fn sleep_until(&self, at: Instant) -> BoxFuture<()> {
        let timer = smol::Timer::at(at);
        Box::pin(async move {
            timer.await;
        })
    }
}

fn main() {
    etcd_bench::process_start();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = Cli::parse(&args);
    let executor = Arc::new(Executor::new());
    let rt = SmolRt {
        executor: executor.clone(),
    };
    let line = smol::block_on(executor.run(etcd_bench::run(rt, cli)));
    println!("{line}");
    // Do not wait for the background tasks to shut down.
    std::process::exit(0);
}
