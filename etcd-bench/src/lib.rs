//! Benchmark peer for the shared side-by-side harness (`../shared/bench`, contract
//! `etcd-bench/v1`): the workloads `put`, `range`, `txn-put`, `watch` and `lease-keepalive`,
//! written once against [`etcd_driver::Client`] and run by one binary per adapter
//! (`etcd-bench-tokio`, `etcd-bench-smol`).
//!
//! The last stdout line is the JSON result; logs go to stderr; exit status 2 for usage errors,
//! 1 when the run could not be done (connect, warm-up or setup failed).

pub mod flags;
pub mod hist;

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use etcd_driver::rpc::kv::{Get, Put, Txn};
use etcd_driver::{Client, Config, Error, Watch, WatchResponse};
use tokio::sync::Notify;

pub use flags::Cli;
pub use hist::Hist;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the workloads need from an async runtime.
pub trait Rt: Clone + Send + Sync + 'static {
    /// Free-text runtime description for the `runtime` field.
    fn describe(&self) -> String;
    /// A client (its own driver and connection) for this configuration.
    fn client(&self, config: Config) -> Result<Client, Error>;
    /// Runs a task; the returned future resolves to its output.
    fn spawn<T: Send + 'static>(
        &self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> BoxFuture<T>;
    /// Runs a task in the background; nothing waits for it.
    fn detach(&self, task: impl Future<Output = ()> + Send + 'static);
    /// Completes at `at`.
    fn sleep_until(&self, at: Instant) -> BoxFuture<()>;
}

/// The process-local monotonic epoch of watch timestamps (set at start).
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Call first thing in `main`: fixes the process start (for `--max-seconds`) and the epoch.
pub fn process_start() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

fn since_epoch_ns() -> u64 {
    process_start().elapsed().as_nanos() as u64
}

/// A failure that makes the run impossible: exit status 1.
fn fatal(msg: &str) -> ! {
    eprintln!("etcd-bench: {msg}");
    std::process::exit(1)
}

/// SplitMix64, identical in every peer so random key sequences match.
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64) -> Self {
        SplitMix(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `prefix` + the index in decimal, zero-padded so the key is `size` bytes (longer if the
/// index needs more digits).
fn make_key(prefix: &[u8], idx: u64, size: usize) -> Vec<u8> {
    let mut digits = [0u8; 20];
    let mut n = idx;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let width = size.saturating_sub(prefix.len()).max(len);
    let mut key = Vec::with_capacity(prefix.len() + width);
    key.extend_from_slice(prefix);
    key.resize(prefix.len() + width - len, b'0');
    key.extend(digits[..len].iter().rev());
    key
}

#[derive(Clone, Copy)]
struct Rusage {
    user: f64,
    sys: f64,
    maxrss_kb: i64,
}

#[allow(unsafe_code)]
fn rusage() -> Rusage {
    // SAFETY: getrusage only writes the zero-initialised struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Rusage {
        user: tv(ru.ru_utime),
        sys: tv(ru.ru_stime),
        maxrss_kb: ru.ru_maxrss,
    }
}

/// Everything a workload measured.
struct Outcome {
    ops: u64,
    errors: u64,
    duration: Duration,
    lats: Option<Arc<Hist>>,
    ru0: Rusage,
    ru1: Rusage,
    setup: Duration,
    extra: Vec<(&'static str, String)>,
}

/// Waits for `a`, or until `at`; true if `a` finished first.
async fn until<R: Rt>(rt: &R, a: impl Future<Output = ()>, at: Instant) -> bool {
    let mut a = pin!(a);
    let mut timer = rt.sleep_until(at);
    poll_fn(|cx| {
        if a.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Runs the workload the command line names and returns the result line.
pub async fn run<R: Rt>(rt: R, cli: Cli) -> String {
    let start = process_start();
    let endpoints: Vec<String> = cli
        .str("endpoints", "127.0.0.1:42379")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let conns = cli.at_least_one("conns", 1) as usize;
    let deadline = start + Duration::from_secs_f64(cli.num::<f64>("max-seconds", 120.0).max(0.0));

    let setup_t0 = Instant::now();
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns {
        let config = Config::from_endpoints(&endpoints)
            .unwrap_or_else(|e| fatal(&format!("endpoints: {e}")));
        let client = rt
            .client(config)
            .unwrap_or_else(|e| fatal(&format!("client: {e}")));
        // Brings the HTTP/2 connection up before anything is measured.
        client
            .get(Get::new("__bench_warmup__").serializable())
            .await
            .unwrap_or_else(|e| fatal(&format!("warm-up get: {e}")));
        clients.push(client);
    }
    let connect_time = setup_t0.elapsed();

    let outcome = match cli.workload.as_str() {
        "put" | "range" | "txn-put" => run_kv(&rt, &clients, &cli, deadline, connect_time).await,
        "watch" => run_watch(&rt, &clients, &cli, deadline, connect_time).await,
        "lease-keepalive" => run_lease(&rt, &clients, &cli, deadline, connect_time).await,
        w => flags::usage_error(&format!("unknown workload {w:?}")),
    };
    result_line(&rt, &cli, outcome)
}

fn result_line<R: Rt>(rt: &R, cli: &Cli, o: Outcome) -> String {
    let params = cli
        .params
        .iter()
        .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
        .collect::<Vec<_>>()
        .join(",");
    let extra = o
        .extra
        .iter()
        .map(|(k, v)| format!("{}:{}", json_str(k), v))
        .collect::<Vec<_>>()
        .join(",");
    let secs = o.duration.as_secs_f64();
    let cpu_user = o.ru1.user - o.ru0.user;
    let cpu_sys = o.ru1.sys - o.ru0.sys;
    let cpu_us_per_op = if o.ops > 0 {
        (cpu_user + cpu_sys) * 1e6 / o.ops as f64
    } else {
        0.0
    };
    let total = rusage();
    format!(
        concat!(
            "{{\"schema\":\"etcd-bench/v1\",\"client\":\"etcd-rs\",\"client_version\":{},",
            "\"lang\":\"rust\",\"runtime\":{},\"workload\":{},\"label\":{},\"params\":{{{}}},",
            "\"ops\":{},\"errors\":{},\"duration_s\":{:.6},\"ops_per_s\":{:.1},\"lat_us\":{},",
            "\"cpu_user_s\":{:.6},\"cpu_sys_s\":{:.6},\"cpu_us_per_op\":{:.3},",
            "\"cpu_process_total_s\":{:.6},\"peak_rss_kb\":{},\"setup_s\":{:.6},\"extra\":{{{}}}}}"
        ),
        json_str(env!("CARGO_PKG_VERSION")),
        json_str(&rt.describe()),
        json_str(&cli.workload),
        json_str(&cli.str("label", "")),
        params,
        o.ops,
        o.errors,
        secs,
        if secs > 0.0 { o.ops as f64 / secs } else { 0.0 },
        o.lats.map_or_else(|| "null".to_string(), |h| h.json()),
        cpu_user,
        cpu_sys,
        cpu_us_per_op,
        total.user + total.sys,
        total.maxrss_kb,
        o.setup.as_secs_f64(),
        extra,
    )
}

// ---------------------------------------------------------------- put, range, txn-put

#[derive(Clone, Copy, PartialEq)]
enum KvOp {
    Put,
    Range { serializable: bool },
    TxnPut { ops: u64 },
}

struct KvCfg {
    op: KvOp,
    total: u64,
    key_size: usize,
    key_space: u64,
    sequential: bool,
    value: Bytes,
    range_key: Bytes,
    deadline: Instant,
}

impl KvCfg {
    fn index(&self, n: u64, rng: &mut SplitMix) -> u64 {
        if self.sequential {
            n % self.key_space
        } else {
            rng.next() % self.key_space
        }
    }
}

async fn run_kv<R: Rt>(
    rt: &R,
    clients: &[Client],
    cli: &Cli,
    deadline: Instant,
    mut setup: Duration,
) -> Outcome {
    let workers = cli.at_least_one("clients", 1) as usize;
    let total = cli.count("total", 10000);
    let val_size = cli.count("val-size", 8) as usize;
    let op = match cli.workload.as_str() {
        "put" => KvOp::Put,
        "txn-put" => KvOp::TxnPut {
            ops: cli.at_least_one("txn-ops", 1),
        },
        _ => KvOp::Range {
            serializable: cli.str("consistency", "l") == "s",
        },
    };
    let is_range = matches!(op, KvOp::Range { .. });
    let value = Bytes::from(vec![b'v'; val_size]);
    let range_key = Bytes::from(cli.str("key", "range-key").into_bytes());
    if is_range {
        let t = Instant::now();
        clients[0]
            .put(Put::new(range_key.clone(), value.clone()))
            .await
            .unwrap_or_else(|e| fatal(&format!("range setup put: {e}")));
        setup += t.elapsed();
    }
    let cfg = Arc::new(KvCfg {
        op,
        total,
        key_size: if is_range {
            8
        } else {
            cli.count("key-size", 8) as usize
        },
        key_space: if is_range {
            1
        } else {
            cli.at_least_one("key-space-size", 1)
        },
        sequential: !is_range && cli.flag("sequential-keys"),
        value,
        range_key,
        deadline,
    });
    let counter = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Hist::new());
    let ru0 = rusage();
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let client = clients[w % clients.len()].clone();
        let cfg = cfg.clone();
        let counter = counter.clone();
        let hist = hist.clone();
        handles.push(rt.spawn(async move {
            let mut rng = SplitMix::new(w as u64 + 1);
            let mut errors = 0u64;
            loop {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if n >= cfg.total || Instant::now() > cfg.deadline {
                    break;
                }
                let t = Instant::now();
                let result = match cfg.op {
                    KvOp::Put => {
                        let key = make_key(b"", cfg.index(n, &mut rng), cfg.key_size);
                        client.put(Put::new(key, cfg.value.clone())).await.map(drop)
                    }
                    KvOp::Range { serializable } => {
                        let get = Get::new(cfg.range_key.clone());
                        let get = if serializable {
                            get.serializable()
                        } else {
                            get
                        };
                        client.get(get).await.map(drop)
                    }
                    KvOp::TxnPut { ops } => {
                        // Keys base, base+1, ... (mod the key space): never repeated in one
                        // txn, and with one op exactly the keys of `put`.
                        let base = if cfg.sequential {
                            n.wrapping_mul(ops) % cfg.key_space
                        } else {
                            rng.next() % cfg.key_space
                        };
                        let puts = (0..ops).map(|i| {
                            let key = make_key(b"", (base + i) % cfg.key_space, cfg.key_size);
                            Put::new(key, cfg.value.clone())
                        });
                        client.txn(Txn::new().and_then(puts)).await.map(drop)
                    }
                };
                match result {
                    Ok(()) => hist.record(t.elapsed().as_nanos() as u64),
                    Err(e) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("etcd-bench: op error: {e}");
                        }
                    }
                }
            }
            errors
        }));
    }
    let mut errors = 0;
    for h in handles {
        errors += h.await;
    }
    let duration = t0.elapsed();
    let ru1 = rusage();
    Outcome {
        ops: hist.count(),
        errors,
        duration,
        lats: Some(hist),
        ru0,
        ru1,
        setup,
        extra: Vec::new(),
    }
}

// ---------------------------------------------------------------- watch

struct WatchShared {
    created: AtomicU64,
    all_created: Notify,
    received: AtomicU64,
    expected: u64,
    end: Mutex<Option<Instant>>,
    done: Notify,
    watchers: u64,
}

/// Records a watch response's events: latency from the timestamp in each value, and the count.
fn record_events(resp: &WatchResponse, now: u64, hist: &Hist, shared: &WatchShared) {
    if resp.events.is_empty() {
        return;
    }
    for ev in &resp.events {
        if let Some(kv) = &ev.kv {
            if let Some(ts) = kv.value.get(..8) {
                let ts = u64::from_le_bytes(ts.try_into().expect("8 bytes"));
                hist.record(now.saturating_sub(ts));
            }
        }
    }
    let n = resp.events.len() as u64;
    let prev = shared.received.fetch_add(n, Ordering::AcqRel);
    if prev < shared.expected && prev + n >= shared.expected {
        *shared.end.lock().expect("not poisoned") = Some(Instant::now());
        shared.done.notify_one();
    }
}

async fn run_watch<R: Rt>(
    rt: &R,
    clients: &[Client],
    cli: &Cli,
    deadline: Instant,
    connect_time: Duration,
) -> Outcome {
    let watchers = cli.count("watchers", 1000);
    let streams = cli.at_least_one("streams", 1).min(watchers.max(1));
    let prefix_mode = cli.str("watch-mode", "keys") == "prefix";
    let put_total = cli.count("put-total", 10000);
    let put_rate = cli.num::<f64>("put-rate", 0.0);
    let workers = cli.at_least_one("clients", 1) as usize;
    let key_size = cli.count("key-size", 16) as usize;
    let val_size = (cli.count("val-size", 16) as usize).max(8);
    let prefix: &'static [u8] = if prefix_mode { b"wp/" } else { b"wk/" };
    let expected = if prefix_mode {
        put_total * watchers
    } else {
        put_total
    };
    // Our client multiplexes every watcher of a client on one gRPC stream: watch i goes to the
    // client of stream i mod S, stream s to client s mod K, so min(S, K) streams exist.
    let real_streams = (streams as usize).min(clients.len());
    let shared = Arc::new(WatchShared {
        created: AtomicU64::new(0),
        all_created: Notify::new(),
        received: AtomicU64::new(0),
        expected,
        end: Mutex::new(None),
        done: Notify::new(),
        watchers,
    });
    let hist = Arc::new(Hist::new());

    // ---- setup: one task per client reads all of that client's watchers through one
    // `WatchSet` (as the reference Rust peer reads one multiplexed stream per client).
    let setup_t0 = Instant::now();
    for c in 0..real_streams {
        let client = clients[c].clone();
        // watch i -> stream i mod S -> client (i mod S) mod K
        let mine: Vec<u64> = (0..watchers)
            .filter(|i| (i % streams) as usize % clients.len() == c)
            .collect();
        let shared = shared.clone();
        let hist = hist.clone();
        rt.detach(async move {
            let mut set = client.watch_set();
            for i in mine {
                let watch = if prefix_mode {
                    Watch::new(prefix).prefix()
                } else {
                    Watch::new(make_key(prefix, i, key_size))
                };
                if let Err(e) = set.add(watch).await {
                    fatal(&format!("watch creation: {e}"));
                }
                if shared.created.fetch_add(1, Ordering::AcqRel) + 1 == shared.watchers {
                    shared.all_created.notify_one();
                }
            }
            // One clock read per wake-up (refreshed every 64 responses): on the
            // current-thread runtime every response drained after `next` returned was
            // already received when it did.
            while let Some(first) = set.next().await {
                let mut now = since_epoch_ns();
                let mut item = Some(first);
                let mut drained = 0u32;
                while let Some((_, resp)) = item {
                    drained += 1;
                    if drained.is_multiple_of(64) {
                        now = since_epoch_ns();
                    }
                    let resp = match resp {
                        Ok(r) => r,
                        Err(e) => {
                            eprintln!("etcd-bench: watcher ended: {e}");
                            return;
                        }
                    };
                    record_events(&resp, now, &hist, &shared);
                    item = set.try_next();
                }
            }
        });
    }
    if watchers > 0 {
        let all = async {
            while shared.created.load(Ordering::Acquire) < watchers {
                shared.all_created.notified().await;
            }
        };
        if !until(rt, all, deadline).await {
            fatal("watch creation did not finish before --max-seconds");
        }
    }
    let setup = connect_time + setup_t0.elapsed();

    // ---- measured phase: the puts, round robin over the watched keys.
    let ru0 = rusage();
    let t0 = Instant::now();
    let counter = Arc::new(AtomicU64::new(0));
    let put_errors = Arc::new(AtomicU64::new(0));
    let mut template = BytesMut::new();
    template.resize(val_size, b'x');
    let template = template.freeze();
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        let client = clients[w % clients.len()].clone();
        let counter = counter.clone();
        let put_errors = put_errors.clone();
        let template = template.clone();
        let rt2 = rt.clone();
        handles.push(rt.spawn(async move {
            loop {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if n >= put_total || Instant::now() > deadline {
                    break;
                }
                if put_rate > 0.0 {
                    let due = t0 + Duration::from_secs_f64(n as f64 / put_rate);
                    if due > Instant::now() {
                        rt2.sleep_until(due).await;
                    }
                }
                let key = make_key(prefix, n % watchers.max(1), key_size);
                let mut value = BytesMut::from(&template[..]);
                value[..8].copy_from_slice(&since_epoch_ns().to_le_bytes());
                if let Err(e) = client.put(Put::new(key, value.freeze())).await {
                    if put_errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("etcd-bench: put error: {e}");
                    }
                }
            }
        }));
    }
    for h in handles {
        h.await;
    }
    let put_elapsed = t0.elapsed();
    let all = async {
        while shared.received.load(Ordering::Acquire) < expected {
            shared.done.notified().await;
        }
    };
    until(rt, all, deadline).await;
    let end = shared
        .end
        .lock()
        .expect("not poisoned")
        .unwrap_or_else(Instant::now);
    let ru1 = rusage();
    let duration = end.saturating_duration_since(t0);
    let received = shared.received.load(Ordering::Acquire).min(expected);
    let put_errors = put_errors.load(Ordering::Relaxed);
    let puts_ok = put_total.min(counter.load(Ordering::Relaxed)) - put_errors;
    Outcome {
        ops: received,
        errors: put_errors + expected.saturating_sub(received),
        duration,
        lats: Some(hist),
        ru0,
        ru1,
        setup,
        extra: vec![
            ("events_expected", expected.to_string()),
            ("puts_ok", puts_ok.to_string()),
            ("put_phase_s", format!("{:.6}", put_elapsed.as_secs_f64())),
            (
                "puts_per_s",
                format!(
                    "{:.1}",
                    puts_ok as f64 / put_elapsed.as_secs_f64().max(1e-9)
                ),
            ),
            ("grpc_watch_streams", real_streams.to_string()),
        ],
    }
}

// ---------------------------------------------------------------- lease keepalive

/// Grants `n` leases with `workers` concurrent grants; ids in grant-completion order.
async fn grant_leases<R: Rt>(
    rt: &R,
    clients: &[Client],
    n: u64,
    ttl: i64,
    workers: usize,
) -> Vec<(usize, i64, i64)> {
    let next = Arc::new(AtomicU64::new(0));
    let granted = Arc::new(Mutex::new(Vec::with_capacity(n as usize)));
    let mut hs = Vec::new();
    for w in 0..workers.max(1).min(n.max(1) as usize) {
        let c = w % clients.len();
        let client = clients[c].clone();
        let next = next.clone();
        let granted = granted.clone();
        hs.push(rt.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let r = client
                    .lease_grant(ttl)
                    .await
                    .unwrap_or_else(|e| fatal(&format!("lease grant: {e}")));
                granted.lock().expect("not poisoned").push((c, r.id, r.ttl));
            }
        }));
    }
    for h in hs {
        h.await;
    }
    let v = std::mem::take(&mut *granted.lock().expect("not poisoned"));
    v
}

async fn run_lease<R: Rt>(
    rt: &R,
    clients: &[Client],
    cli: &Cli,
    deadline: Instant,
    connect_time: Duration,
) -> Outcome {
    let leases = cli.at_least_one("leases", 1000);
    let workers = cli.at_least_one("clients", 1) as usize;
    if cli.str("mode", "once") == "once" {
        let total = cli.count("total", 10000);
        let ttl = cli.num::<i64>("lease-ttl", 600);
        let setup_t0 = Instant::now();
        let ids = Arc::new(grant_leases(rt, clients, leases, ttl, workers.max(16)).await);
        let setup = connect_time + setup_t0.elapsed();
        let counter = Arc::new(AtomicU64::new(0));
        let hist = Arc::new(Hist::new());
        let ru0 = rusage();
        let t0 = Instant::now();
        let mut hs = Vec::with_capacity(workers);
        for w in 0..workers {
            let client = clients[w % clients.len()].clone();
            let ids = ids.clone();
            let counter = counter.clone();
            let hist = hist.clone();
            hs.push(rt.spawn(async move {
                let mut errors = 0u64;
                loop {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    if n >= total || Instant::now() > deadline {
                        break;
                    }
                    let (_, id, _) = ids[(n % ids.len() as u64) as usize];
                    let t = Instant::now();
                    match client.keep_alive_once(id).await {
                        Ok(r) if r.ttl > 0 => hist.record(t.elapsed().as_nanos() as u64),
                        Ok(r) => {
                            errors += 1;
                            if errors <= 3 {
                                eprintln!("etcd-bench: keepalive of {id}: ttl {}", r.ttl);
                            }
                        }
                        Err(e) => {
                            errors += 1;
                            if errors <= 3 {
                                eprintln!("etcd-bench: keepalive error: {e}");
                            }
                        }
                    }
                }
                errors
            }));
        }
        let mut errors = 0;
        for h in hs {
            errors += h.await;
        }
        let duration = t0.elapsed();
        let ru1 = rusage();
        Outcome {
            ops: hist.count(),
            errors,
            duration,
            lats: Some(hist),
            ru0,
            ru1,
            setup,
            extra: vec![("leases", ids.len().to_string())],
        }
    } else {
        let ttl = cli.num::<i64>("lease-ttl", 3);
        let dur = Duration::from_secs_f64(cli.num::<f64>("duration", 10.0).max(0.0));
        let setup_t0 = Instant::now();
        let granted = grant_leases(rt, clients, leases, ttl, 16).await;
        // The idiomatic way: one LeaseKeeper per lease, all started together; the client
        // multiplexes them on one LeaseKeepAlive stream per client and batches due renewals.
        let count = Arc::new(AtomicU64::new(0));
        let started = Arc::new((AtomicU64::new(0), Notify::new()));
        let mut streams = std::collections::BTreeSet::new();
        let total = granted.len() as u64;
        for &(c, id, granted_ttl) in &granted {
            streams.insert(c);
            let client = clients[c].clone();
            let count = count.clone();
            let started = started.clone();
            rt.detach(async move {
                let target = etcd_driver::KeepAliveTarget {
                    lease: id,
                    ttl: Some(Duration::from_secs(granted_ttl.max(0) as u64)),
                };
                let mut keeper = client
                    .keep_alive(target)
                    .await
                    .unwrap_or_else(|e| fatal(&format!("keep_alive: {e}")));
                if started.0.fetch_add(1, Ordering::AcqRel) + 1 == total {
                    started.1.notify_one();
                }
                while let Some(r) = keeper.next().await {
                    match r {
                        Ok(r) if r.ttl > 0 => {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("etcd-bench: keepalive ended: {e}");
                            return;
                        }
                    }
                }
            });
        }
        let all = async {
            while started.0.load(Ordering::Acquire) < total {
                started.1.notified().await;
            }
        };
        if !until(rt, all, deadline).await {
            fatal("keepalive subscriptions did not start before --max-seconds");
        }
        let setup = connect_time + setup_t0.elapsed();
        let ru0 = rusage();
        let c0 = count.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let end = (t0 + dur).min(deadline.max(t0));
        rt.sleep_until(end).await;
        let c1 = count.load(Ordering::Relaxed);
        let duration = t0.elapsed();
        let ru1 = rusage();
        Outcome {
            ops: c1 - c0,
            errors: 0,
            duration,
            lats: None,
            ru0,
            ru1,
            setup,
            extra: vec![
                ("leases", granted.len().to_string()),
                ("grpc_keepalive_streams", streams.len().to_string()),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{make_key, SplitMix};

    #[test]
    fn keys_are_padded_decimal() {
        assert_eq!(make_key(b"", 42, 8), b"00000042");
        assert_eq!(make_key(b"wk/", 7, 16), b"wk/0000000000007");
        assert_eq!(make_key(b"", 123_456, 3), b"123456");
        assert_eq!(make_key(b"", 0, 0), b"0");
    }

    #[test]
    fn splitmix_matches_the_reference() {
        // First outputs of SplitMix64 with state 0x9E3779B97F4A7C15 (worker 0).
        let mut r = SplitMix::new(1);
        let first = r.next();
        let mut s = SplitMix(0x9E37_79B9_7F4A_7C15);
        assert_eq!(first, s.next());
    }
}
