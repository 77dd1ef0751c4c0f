//! One etcd server process on loopback.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http;
use crate::install::EtcdVersion;
use crate::ports::try_free_port;
use crate::tls::{ServerTlsFiles, TestCerts, TlsMaterial};

/// How long [`EtcdServerBuilder::start`] and [`EtcdServer::restart`] wait for
/// `/health` to report `"health":"true"`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`EtcdServer::stop`] waits after SIGTERM before it sends SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a start is retried with fresh ports when etcd reports
/// "address already in use" (another process took a port we picked).
const START_ATTEMPTS: usize = 4;

/// Watchdog wrapper that runs etcd (`"$@"`) as its child.
///
/// * `$1` is the server's base dir, `$2` the file to write etcd's pid to.
/// * The wrapper's stdin is a pipe whose write end only the harness holds. A
///   background `cat` reads it; when it hits EOF (the test process exited or
///   died, even by SIGKILL) the watchdog SIGKILLs etcd and removes the base
///   dir. Only a live harness never closes it while etcd runs.
/// * When etcd exits (by itself or because the harness signalled it) the
///   wrapper exits with etcd's status and kills the `cat` subshell, so the
///   harness can wait on the wrapper to know etcd is gone.
///
/// Async lists in a non-interactive `sh` get stdin from /dev/null, hence the
/// copy of the pipe on fd 3 with explicit redirections.
const WATCHDOG: &str = r#"dir=$1; pidfile=$2; shift 2
exec 3<&0 </dev/null
"$@" </dev/null 3<&- &
c=$!
echo "$c" > "$pidfile.tmp" && mv -f "$pidfile.tmp" "$pidfile"
( cat <&3 >/dev/null 2>&1; : > "$dir/.orphaned"; kill -9 "$c" 2>/dev/null ) &
w=$!
exec 3<&-
wait "$c"; rc=$?
if [ -e "$dir/.orphaned" ]; then rm -rf "$dir"; else kill "$w" 2>/dev/null; fi
exit $rc
"#;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// A token unique to this process and call, for `--initial-cluster-token`.
pub(crate) fn unique_token(what: &str) -> String {
    format!(
        "etcd-tests-{what}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos()
    )
}

/// Creates a fresh, empty directory under the system temp dir.
pub(crate) fn make_base_dir(name: &str) -> io::Result<PathBuf> {
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let tmp = std::env::temp_dir();
    loop {
        let dir = tmp.join(format!(
            "etcd-tests-{safe}-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos() % 1_000_000_000
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The value of `ETCD_UNSUPPORTED_ARCH` this machine needs, if any (etcd 3.4
/// refuses to run on anything but amd64 without it; 3.5 also supports arm64).
fn unsupported_arch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => None,
        "aarch64" => Some("arm64"),
        "powerpc64" => Some("ppc64le"),
        other => Some(other),
    }
}

fn normalize_flag(name: &str) -> String {
    format!("--{}", name.trim_start_matches('-'))
}

/// Builder for an [`EtcdServer`]; see [`EtcdServer::builder`].
#[derive(Debug, Clone)]
pub struct EtcdServerBuilder {
    version: EtcdVersion,
    name: String,
    flags: Vec<(String, String)>,
    client_port: Option<u16>,
    peer_port: Option<u16>,
    initial_cluster: Option<String>,
    cluster_token: Option<String>,
    tls: Option<TlsMaterial>,
}

impl EtcdServerBuilder {
    /// The member name (`--name`); default `"default"`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds an etcd flag, passed as `--name=value` (so boolean flags work:
    /// `.flag("--experimental-foo", "true")`). The leading dashes are
    /// optional. A flag given twice keeps the last value, and a flag given
    /// here replaces the harness's default for it (e.g. `--logger`).
    pub fn flag(mut self, name: &str, value: impl Into<String>) -> Self {
        let name = normalize_flag(name);
        self.flags.retain(|(n, _)| *n != name);
        self.flags.push((name, value.into()));
        self
    }

    /// Uses this client port instead of a free one (no retry on conflicts).
    pub fn client_port(mut self, port: u16) -> Self {
        self.client_port = Some(port);
        self
    }

    /// Uses this peer port instead of a free one (no retry on conflicts).
    pub fn peer_port(mut self, port: u16) -> Self {
        self.peer_port = Some(port);
        self
    }

    /// Sets `--initial-cluster` (default: this member alone,
    /// `NAME=http://127.0.0.1:PEER_PORT`).
    pub fn initial_cluster(mut self, initial_cluster: impl Into<String>) -> Self {
        self.initial_cluster = Some(initial_cluster.into());
        self
    }

    /// Sets `--initial-cluster-token` (default: unique per server).
    pub fn cluster_token(mut self, token: impl Into<String>) -> Self {
        self.cluster_token = Some(token.into());
        self
    }

    /// Serves clients over TLS with `certs`' server certificate:
    /// `https://127.0.0.1:PORT` client URLs, `--cert-file`, `--key-file`,
    /// and, if `client_cert_auth`, `--trusted-ca-file` (the CA of `certs`)
    /// and `--client-cert-auth=true`: clients must then present a
    /// certificate signed by that CA, whose CN is their etcd user once auth
    /// is enabled. (etcd requires client certificates whenever
    /// `--trusted-ca-file` is set, so without `client_cert_auth` it is not
    /// passed.) Peer URLs stay plain http.
    ///
    /// The files are copied into the server's directory (`BASE/tls/`, see
    /// [`EtcdServer::tls_files`]), so `certs` may be dropped. As the
    /// harness's HTTP checks cannot speak TLS, the server also gets
    /// `--listen-metrics-urls=http://127.0.0.1:<free port>`, which serves
    /// `/health` (see [`EtcdServer::metrics_port`]).
    pub fn tls(mut self, certs: &TestCerts, client_cert_auth: bool) -> Self {
        self.tls = Some(certs.server_material(client_cert_auth));
        self
    }

    pub(crate) fn tls_material(mut self, tls: Option<TlsMaterial>) -> Self {
        self.tls = tls;
        self
    }

    /// Starts the server and waits (up to [`START_TIMEOUT`]) until `/health`
    /// reports healthy. On failure the error message includes the log tail.
    pub fn start(self) -> io::Result<EtcdServer> {
        self.start_inner(true)
    }

    /// Starts the server without waiting for it to become healthy (a cluster
    /// member cannot be healthy before a quorum of members runs). Use
    /// [`EtcdServer::wait_healthy`] afterwards.
    pub fn start_no_wait(self) -> io::Result<EtcdServer> {
        self.start_inner(false)
    }

    fn start_inner(self, wait: bool) -> io::Result<EtcdServer> {
        let fixed_ports = self.client_port.is_some() || self.peer_port.is_some();
        let attempts = if fixed_ports { 1 } else { START_ATTEMPTS };
        let mut last_err = None;
        for _ in 0..attempts {
            let server = self.launch()?;
            let res = if wait {
                server.wait_healthy(START_TIMEOUT)
            } else {
                // Catch an immediate bind failure even without waiting.
                thread::sleep(Duration::from_millis(50));
                if !server.is_running() && server.port_conflict() {
                    Err(server.error("exited at start"))
                } else {
                    Ok(())
                }
            };
            match res {
                Ok(()) => return Ok(server),
                Err(e) if server.port_conflict() => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("etcd failed to start")))
    }

    /// Creates the base dir, builds the command line and spawns etcd.
    fn launch(&self) -> io::Result<EtcdServer> {
        let client_port = match self.client_port {
            Some(p) => p,
            None => try_free_port()?,
        };
        let peer_port = match self.peer_port {
            Some(p) => p,
            None => try_free_port()?,
        };
        let binary = self.version.binary();
        let base_dir = make_base_dir(&self.name)?;
        let data_dir = base_dir.join("data");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let initial_cluster = self
            .initial_cluster
            .clone()
            .unwrap_or_else(|| format!("{}={peer_url}", self.name));
        let token = self
            .cluster_token
            .clone()
            .unwrap_or_else(|| unique_token(&self.name));

        let mut flags: Vec<(String, String)> = vec![
            ("--name".into(), self.name.clone()),
            ("--data-dir".into(), data_dir.display().to_string()),
            ("--listen-client-urls".into(), client_url.clone()),
            ("--advertise-client-urls".into(), client_url.clone()),
            ("--listen-peer-urls".into(), peer_url.clone()),
            ("--initial-advertise-peer-urls".into(), peer_url.clone()),
            ("--initial-cluster".into(), initial_cluster),
            ("--initial-cluster-state".into(), "new".into()),
            ("--initial-cluster-token".into(), token),
            // Both 3.4 and 3.5 accept these; 3.4 would otherwise use the
            // deprecated capnslog logger. The process's stderr goes to the
            // log file.
            ("--logger".into(), "zap".into()),
            ("--log-outputs".into(), "stderr".into()),
        ];
        let mut metrics_port = None;
        let mut tls_files = None;
        if let Some(tls) = &self.tls {
            let files = tls.write(&base_dir.join("tls"))?;
            let port = try_free_port()?;
            flags.extend([
                (
                    "--cert-file".into(),
                    files.server_cert.display().to_string(),
                ),
                ("--key-file".into(), files.server_key.display().to_string()),
                (
                    "--listen-metrics-urls".into(),
                    format!("http://127.0.0.1:{port}"),
                ),
            ]);
            // etcd 3.4 and 3.5 require client certificates as soon as
            // --trusted-ca-file is given, --client-cert-auth or not: pass it
            // only when client certs are asked for.
            if tls.client_cert_auth {
                flags.extend([
                    ("--trusted-ca-file".into(), files.ca.display().to_string()),
                    ("--client-cert-auth".into(), "true".into()),
                ]);
            }
            metrics_port = Some(port);
            tls_files = Some(files);
        }
        for (name, value) in &self.flags {
            flags.retain(|(n, _)| n != name);
            flags.push((name.clone(), value.clone()));
        }
        let args = flags.iter().map(|(n, v)| format!("{n}={v}")).collect();

        let server = EtcdServer {
            version: self.version,
            name: self.name.clone(),
            client_port,
            peer_port,
            metrics_port,
            tls: tls_files,
            log_path: base_dir.join("etcd.log"),
            pid_path: base_dir.join("etcd.pid"),
            data_dir,
            base_dir,
            binary,
            args,
            state: Mutex::new(State::default()),
        };
        server.spawn()?;
        Ok(server)
    }
}

struct Proc {
    /// The watchdog `sh`; it exits when etcd exits.
    wrapper: Child,
    /// Write end of the watchdog pipe; dropping it while etcd runs kills etcd.
    _lifeline: ChildStdin,
    /// etcd's own pid.
    pid: u32,
}

#[derive(Default)]
struct State {
    proc: Option<Proc>,
    last_pid: u32,
    paused: bool,
}

/// Status of a member as reported by `/v3/maintenance/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// This member's id.
    pub member_id: u64,
    /// The leader's member id (0 if there is none).
    pub leader_id: u64,
    /// The server version, e.g. `"3.5.1"`.
    pub version: String,
    /// The raft term.
    pub raft_term: u64,
}

impl ServerStatus {
    /// Whether this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.member_id != 0 && self.member_id == self.leader_id
    }
}

/// A real etcd server process listening on 127.0.0.1.
///
/// All methods take `&self` (the process state sits behind a mutex), so a
/// server can be shared between threads. Dropping it SIGKILLs etcd and
/// removes its directory. etcd runs under a watchdog, so it also dies when
/// the test process exits or is killed without running destructors.
pub struct EtcdServer {
    version: EtcdVersion,
    name: String,
    client_port: u16,
    peer_port: u16,
    metrics_port: Option<u16>,
    tls: Option<ServerTlsFiles>,
    base_dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    pid_path: PathBuf,
    binary: PathBuf,
    args: Vec<String>,
    state: Mutex<State>,
}

impl EtcdServer {
    /// A builder for a single-member server of `version`.
    pub fn builder(version: EtcdVersion) -> EtcdServerBuilder {
        EtcdServerBuilder {
            version,
            name: "default".into(),
            flags: Vec::new(),
            client_port: None,
            peer_port: None,
            initial_cluster: None,
            cluster_token: None,
            tls: None,
        }
    }

    /// Starts a single-member server with default settings and waits until
    /// it is healthy.
    pub fn start(version: EtcdVersion) -> io::Result<EtcdServer> {
        Self::builder(version).start()
    }

    /// The server's version.
    pub fn version(&self) -> EtcdVersion {
        self.version
    }

    /// The member name (`--name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client URL: `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT`
    /// for a TLS server.
    pub fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// Whether clients must speak TLS (see [`EtcdServerBuilder::tls`]).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS files of a TLS server (copies in its own directory).
    pub fn tls_files(&self) -> Option<&ServerTlsFiles> {
        self.tls.as_ref()
    }

    /// The plain-HTTP metrics port (`--listen-metrics-urls`, serving
    /// `/metrics` and `/health`); only TLS servers have one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// The port the harness's plain-HTTP health checks use: the metrics
    /// port of a TLS server, else the client port.
    fn http_port(&self) -> u16 {
        self.metrics_port.unwrap_or(self.client_port)
    }

    /// The client endpoint without scheme, `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The peer URL, `http://127.0.0.1:PEER_PORT`.
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The peer port.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// The pid of the etcd process (of its latest run if it is not running).
    pub fn pid(&self) -> u32 {
        self.lock().last_pid
    }

    /// etcd's `--data-dir` (kept across [`EtcdServer::restart`]).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the data dir, log and pid file; removed on drop.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The log file (etcd's stdout and stderr, all runs appended).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log (empty if it cannot be read).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log (reads at most the last 256 KiB).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut buf = Vec::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(256 * 1024)));
            let _ = f.read_to_end(&mut buf);
        }
        let text = String::from_utf8_lossy(&buf);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the etcd process is running (paused counts as running).
    pub fn is_running(&self) -> bool {
        let mut st = self.lock();
        Self::reap(&mut st);
        st.proc.is_some()
    }

    /// Whether the process is stopped with SIGSTOP by [`EtcdServer::pause`].
    pub fn is_paused(&self) -> bool {
        let mut st = self.lock();
        Self::reap(&mut st);
        st.proc.is_some() && st.paused
    }

    /// One `GET /health` (on the metrics port of a TLS server): true if it
    /// answers 200 with `"health":"true"`.
    pub fn is_healthy(&self) -> bool {
        match http::get(self.http_port(), "/health", Duration::from_secs(2)) {
            Ok(r) => r.status == 200 && r.body.contains("\"health\":\"true\""),
            Err(_) => false,
        }
    }

    /// Waits until `/health` reports healthy. Fails at once if the process
    /// exits, and after `timeout`; the error includes the log tail.
    pub fn wait_healthy(&self, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return Err(self.error("exited before becoming healthy"));
            }
            if self.is_healthy() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    self.describe(&format!("not healthy after {timeout:?}")),
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `GET /version`: the server's version JSON,
    /// e.g. `{"etcdserver":"3.5.1","etcdcluster":"3.5.0"}`.
    ///
    /// Not available for TLS servers (the metrics port does not serve
    /// `/version`, and the harness speaks no TLS): an `Unsupported` error;
    /// [`EtcdServer::status`] has the server version.
    pub fn version_json(&self) -> io::Result<String> {
        if self.is_tls() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "version_json() needs plain HTTP; {} serves TLS (use status().version)",
                    self.client_url()
                ),
            ));
        }
        let r = http::get(self.client_port, "/version", Duration::from_secs(5))?;
        Ok(r.body)
    }

    /// The member's status via the JSON gateway (`POST /v3/maintenance/status`);
    /// for a TLS server via `etcdctl endpoint status -w json` (with the
    /// server's CA and client certificate), as the harness speaks no TLS.
    pub fn status(&self) -> io::Result<ServerStatus> {
        let body = if self.is_tls() {
            crate::auth::Etcdctl::for_server(self)
                .dial_timeout(Duration::from_secs(2))
                .command_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(10))
                .run(["endpoint", "status", "-w", "json"])?
        } else {
            let r = http::request(
                self.client_port,
                "POST",
                "/v3/maintenance/status",
                Some("{}"),
                Duration::from_secs(5),
            )?;
            if r.status != 200 {
                return Err(io::Error::other(format!(
                    "status request answered {}: {}",
                    r.status, r.body
                )));
            }
            r.body
        };
        let num = |key: &str| {
            http::json_field(&body, key)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(ServerStatus {
            member_id: num("member_id"),
            leader_id: num("leader"),
            version: http::json_field(&body, "version").unwrap_or_default(),
            raft_term: num("raft_term"),
        })
    }

    /// SIGKILLs etcd and waits until it is gone. The data dir is kept (see
    /// [`EtcdServer::restart`]). Does nothing if it is not running.
    pub fn kill(&self) -> io::Result<()> {
        let mut st = self.lock();
        Self::reap(&mut st);
        st.paused = false;
        match st.proc.take() {
            Some(p) => kill_proc(p),
            None => Ok(()),
        }
    }

    /// Stops etcd gracefully (SIGTERM; SIGKILL after [`STOP_TIMEOUT`]) and
    /// waits until it is gone. The data dir is kept. Does nothing if it is
    /// not running.
    pub fn stop(&self) -> io::Result<()> {
        let mut st = self.lock();
        Self::reap(&mut st);
        let Some(mut p) = st.proc.take() else {
            return Ok(());
        };
        if st.paused {
            let _ = send_signal("CONT", p.pid);
            st.paused = false;
        }
        if send_signal("TERM", p.pid).is_err() {
            return kill_proc(p);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while p.wrapper.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                return kill_proc(p);
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Freezes etcd with SIGSTOP (it keeps its sockets but answers nothing).
    pub fn pause(&self) -> io::Result<()> {
        let mut st = self.lock();
        let pid = Self::running_pid(&mut st, &self.name)?;
        send_signal("STOP", pid)?;
        st.paused = true;
        Ok(())
    }

    /// Continues a paused etcd with SIGCONT.
    pub fn resume(&self) -> io::Result<()> {
        let mut st = self.lock();
        let pid = Self::running_pid(&mut st, &self.name)?;
        send_signal("CONT", pid)?;
        st.paused = false;
        Ok(())
    }

    /// Starts etcd again with the same name, ports, flags and data dir
    /// (stopping it gracefully first if it runs) and waits until it is
    /// healthy. A cluster member can only become healthy while a quorum of
    /// members runs; use [`EtcdServer::restart_no_wait`] to bring several
    /// back.
    pub fn restart(&self) -> io::Result<()> {
        self.restart_no_wait()?;
        self.wait_healthy(START_TIMEOUT)
    }

    /// Like [`EtcdServer::restart`] without waiting for health.
    pub fn restart_no_wait(&self) -> io::Result<()> {
        self.stop()?;
        self.spawn()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the process if it has exited.
    fn reap(st: &mut State) {
        if let Some(p) = st.proc.as_mut() {
            if !matches!(p.wrapper.try_wait(), Ok(None)) {
                st.proc = None;
                st.paused = false;
            }
        }
    }

    fn running_pid(st: &mut State, name: &str) -> io::Result<u32> {
        Self::reap(st);
        st.proc.as_ref().map(|p| p.pid).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotConnected,
                format!("etcd '{name}' is not running"),
            )
        })
    }

    /// Spawns etcd under the watchdog and waits for its pid.
    fn spawn(&self) -> io::Result<()> {
        let mut st = self.lock();
        Self::reap(&mut st);
        if st.proc.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("etcd '{}' is already running", self.name),
            ));
        }
        let _ = fs::remove_file(&self.pid_path);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("etcd-watchdog")
            .arg(&self.base_dir)
            .arg(&self.pid_path)
            .arg(&self.binary)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log);
        // etcd reads ETCD_* variables as flags; keep the test process's own
        // (ETCD_TEST_ENDPOINT_*, ETCD_BIN_*, ...) away from it.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(&key);
            }
        }
        if let Some(arch) = unsupported_arch() {
            cmd.env("ETCD_UNSUPPORTED_ARCH", arch);
        }
        let mut wrapper = cmd.spawn()?;
        let lifeline = wrapper.stdin.take().expect("piped stdin");

        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = fs::read_to_string(&self.pid_path)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                break pid;
            }
            if let Some(status) = wrapper.try_wait()? {
                drop(st);
                return Err(self.error(&format!("watchdog exited ({status}) before etcd started")));
            }
            if Instant::now() >= deadline {
                let _ = wrapper.kill();
                let _ = wrapper.wait();
                drop(st);
                return Err(self.error("watchdog did not report etcd's pid"));
            }
            thread::sleep(Duration::from_millis(5));
        };
        st.proc = Some(Proc {
            wrapper,
            _lifeline: lifeline,
            pid,
        });
        st.last_pid = pid;
        st.paused = false;
        Ok(())
    }

    /// Whether the log shows a failed bind (port taken by someone else).
    fn port_conflict(&self) -> bool {
        self.log().contains("address already in use")
    }

    fn describe(&self, what: &str) -> String {
        format!(
            "etcd {} '{}' at {} (data dir {}): {what}; log tail ({}):\n{}",
            self.version.label(),
            self.name,
            self.client_url(),
            self.data_dir.display(),
            self.log_path.display(),
            self.log_tail(40)
        )
    }

    fn error(&self, what: &str) -> io::Error {
        io::Error::other(self.describe(what))
    }
}

/// Sends `SIG<sig>` to `pid` with the shell's `kill` builtin (always there,
/// unlike a `kill` binary).
fn send_signal(sig: &str, pid: u32) -> io::Result<()> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"kill -s "$0" "$1""#)
        .arg(sig)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "kill -s {sig} {pid} failed: {status}"
        )))
    }
}

/// SIGKILLs etcd and reaps the watchdog.
fn kill_proc(mut p: Proc) -> io::Result<()> {
    if send_signal("KILL", p.pid).is_err() && p.wrapper.try_wait()?.is_none() {
        // Could not signal etcd: kill the watchdog instead; closing the
        // lifeline then makes its `cat` subshell SIGKILL etcd.
        let _ = p.wrapper.kill();
    }
    p.wrapper.wait()?;
    Ok(())
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = fs::remove_dir_all(&self.base_dir);
    }
}

impl fmt::Debug for EtcdServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdServer")
            .field("version", &self.version.label())
            .field("name", &self.name)
            .field("client_url", &self.client_url())
            .field("peer_url", &self.peer_url())
            .field("pid", &self.pid())
            .field("base_dir", &self.base_dir)
            .finish()
    }
}
