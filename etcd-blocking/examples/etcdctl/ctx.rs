//! What every command shares: the parsed flags, the client (made on first use, as etcdctl's
//! `mustClientFromCmd`), the output format, exits with etcdctl's codes, and the log lines the
//! Go client writes to standard error.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_blocking::rpc::UnaryRpc;
use etcd_blocking::{Client, Code, Config, Error, EtcdErrorKind, TlsConfig};

use crate::flags::Flags;
use crate::gofmt::go_duration;

pub const EXIT_ERROR: i32 = 1;
pub const EXIT_BAD_CONNECTION: i32 = 2;
pub const EXIT_INVALID_INPUT: i32 = 3;
pub const EXIT_BAD_FEATURE: i32 = 4;
pub const EXIT_INTERRUPTED: i32 = 5;
pub const EXIT_BAD_ARGS: i32 = 128;

/// Writes to standard output (bytes: keys and values need not be UTF-8).
pub fn out(bytes: &[u8]) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(bytes);
}

pub fn outln(s: impl AsRef<[u8]>) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_ref());
    let _ = o.write_all(b"\n");
}

pub fn flush() {
    let _ = std::io::stdout().flush();
}

/// Ends the process with `code`.
pub fn exit(code: i32) -> ! {
    flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

/// etcdctl's `ExitWithError`: `Error: MSG` on standard error, then exit.
pub fn fail(code: i32, msg: impl std::fmt::Display) -> ! {
    flush();
    eprintln!("Error: {msg}");
    exit(code)
}

/// Output formats (`--write-out`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Table,
    Protobuf,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Fields => "fields",
            Format::Table => "table",
            Format::Protobuf => "protobuf",
        }
    }

    /// Exits as etcdctl's unsupported printers do.
    pub fn unsupported(self) -> ! {
        fail(
            EXIT_BAD_FEATURE,
            format!("{} not supported as output format", self.name()),
        )
    }
}

/// Go's name of a gRPC code (`codes.Code.String()`).
pub fn go_code(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
        _ => "Unknown",
    }
}

/// The error as the Go client reports it (what follows `Error: `).
pub fn go_err(e: &Error) -> String {
    match e {
        Error::Etcd(e) => e.message.clone(),
        Error::Status(s) => format!("rpc error: code = {} desc = {}", go_code(s.code), s.message),
        Error::DeadlineExceeded { .. } | Error::Transport { .. } => {
            "context deadline exceeded".into()
        }
        Error::Cancelled | Error::ClientClosed => "context canceled".into(),
        Error::LeaseLost { .. } => EtcdErrorKind::LeaseNotFound.message().into(),
        Error::WatchCompacted { .. } => EtcdErrorKind::Compacted.message().into(),
        other => other.to_string(),
    }
}

/// The gRPC error the Go client sees for a failed call to `addr` (`host:port`), as its
/// logs show it; `None` for errors that never reach the wire.
pub fn grpc_error_text(e: &Error, addr: &str) -> Option<String> {
    Some(match e {
        Error::Etcd(x) => format!("rpc error: code = {} desc = {}", go_code(x.code), x.message),
        Error::Status(s) => format!("rpc error: code = {} desc = {}", go_code(s.code), s.message),
        Error::DeadlineExceeded { .. } => {
            "rpc error: code = DeadlineExceeded desc = context deadline exceeded".into()
        }
        Error::Transport { message, .. } => {
            let cause = if message.contains("refused") {
                format!("Error while dialing dial tcp {addr}: connect: connection refused")
            } else {
                message.clone()
            };
            format!("rpc error: code = DeadlineExceeded desc = latest balancer error: last connection error: connection error: desc = \"transport: {cause}\"")
        }
        _ => return None,
    })
}

/// Local time as zap's ISO8601 encoder writes it: `2006-01-02T15:04:05.000Z0700`.
pub fn iso_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    // SAFETY: localtime_r only writes the `tm` we pass.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&secs, &mut tm) };
    let off = tm.tm_gmtoff;
    let zone = if off == 0 {
        "Z".to_string()
    } else {
        let sign = if off < 0 { '-' } else { '+' };
        let a = off.abs();
        format!("{sign}{:02}{:02}", a / 3600, (a % 3600) / 60)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{zone}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_millis()
    )
}

/// Local time as Go's standard logger writes it: `2006/01/02 15:04:05`.
pub fn log_now() -> String {
    let iso = iso_now();
    format!("{} {}", iso[..10].replace('-', "/"), &iso[11..19])
}

/// Seconds since the epoch as zap's production encoder writes them.
pub fn epoch_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}", now.as_secs_f64())
}

/// A string as zap's JSON encoder escapes it.
pub fn zap_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A fake Go pointer for log lines that show one (`0xc000123456`).
pub fn fake_pointer() -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("0xc000{:06x}", (n >> 4) & 0xffff80)
}

/// Everything a command needs.
pub struct Ctx {
    /// The command's path (`"lease grant"`).
    pub path: &'static str,
    pub flags: Flags,
    /// The arguments after the program name, as given.
    pub raw_args: Vec<String>,
    client: Option<Client>,
    /// Output format and `--hex`, known once the client is made.
    pub format: Format,
    pub hex: bool,
    /// Whether credentials were given (an authentication failure is then a connection
    /// failure, exit code 2, as in Go where the client authenticates when it is made).
    creds: bool,
    calls: u32,
    target: String,
}

impl Ctx {
    pub fn new(path: &'static str, flags: Flags, raw_args: Vec<String>) -> Ctx {
        Ctx {
            path,
            flags,
            raw_args,
            client: None,
            format: Format::Simple,
            hex: false,
            creds: false,
            calls: 0,
            target: String::new(),
        }
    }

    /// The command timeout (`--command-timeout`).
    pub fn command_timeout(&self) -> Duration {
        self.flags.dur("command-timeout")
    }

    /// The endpoints as given (after `ETCDCTL_ENDPOINTS`).
    pub fn endpoints(&mut self) -> Vec<String> {
        self.client();
        self.flags
            .list("endpoints")
            .iter()
            .map(|e| e.trim().to_string())
            .collect()
    }

    /// Applies `ETCDCTL_*` variables to the global flags not given on the command line, as
    /// etcdctl's `SetPflagsFromEnv` does.
    fn apply_env(&mut self) {
        let mut vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("ETCDCTL_"))
            .collect();
        vars.sort();
        let key_of = |name: &str| format!("ETCDCTL_{}", name.to_uppercase().replace('-', "_"));
        let mut used = Vec::new();
        let mut shadowed = Vec::new();
        let mut inherited: Vec<&str> = crate::cli::GLOBAL.iter().map(|s| s.name).collect();
        if self.flags.has("cluster") {
            inherited.push("cluster");
        }
        inherited.sort();
        for name in inherited {
            let key = key_of(name);
            if self.flags.changed(name) {
                shadowed.push(key);
                continue;
            }
            if let Ok(v) = std::env::var(&key) {
                if !v.is_empty() {
                    used.push(key);
                    let _ = self.flags.set(name, &v);
                }
            }
        }
        for (k, v) in vars {
            if used.contains(&k) || k == "ETCDCTL_API" {
                continue;
            }
            if self.path == "watch" && (k == "ETCDCTL_WATCH_KEY" || k == "ETCDCTL_WATCH_RANGE_END")
            {
                continue;
            }
            if shadowed.contains(&k) {
                eprintln!(
                    "{{\"level\":\"fatal\",\"ts\":{},\"caller\":\"flags/flag.go:85\",\"msg\":\"conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag))\",\"environment-variable\":{}}}",
                    epoch_now(),
                    zap_str(&k)
                );
                exit(1);
            }
            eprintln!(
                "{{\"level\":\"warn\",\"ts\":{},\"caller\":\"flags/flag.go:93\",\"msg\":\"unrecognized environment variable\",\"environment-variable\":{}}}",
                epoch_now(),
                zap_str(&format!("{k}={v}"))
            );
        }
    }

    /// The output format, as etcdctl's `initDisplayFromCmd` reads it.
    fn init_display(&mut self) {
        self.hex = self.flags.bool("hex");
        self.format = match self.flags.str("write-out").as_str() {
            "simple" => Format::Simple,
            "json" => Format::Json,
            "fields" => Format::Fields,
            "table" => Format::Table,
            "protobuf" => Format::Protobuf,
            _ => fail(EXIT_BAD_FEATURE, "unsupported output format"),
        };
    }

    /// Reads the flags the client needs, without making it (also for `snapshot save`, which
    /// makes its own).
    pub fn client_config(&mut self) -> Config {
        self.apply_env();
        let debug = self.flags.bool("debug");
        if debug {
            let mut all: Vec<(String, String)> = self
                .flags
                .all()
                .filter(|(n, _)| crate::cli::is_global(n) || *n == "cluster")
                .map(|(n, v)| {
                    (
                        format!("ETCDCTL_{}", n.to_uppercase().replace('-', "_")),
                        v.show(),
                    )
                })
                .collect();
            all.sort();
            for (k, v) in all {
                eprintln!("{k}={v}");
            }
        }
        let endpoints: Vec<String> = self
            .flags
            .list("endpoints")
            .iter()
            .map(|e| e.trim().to_string())
            .collect();
        let cert = self.flags.str("cert");
        let key = self.flags.str("key");
        let cacert = self.flags.str("cacert");
        for (name, v) in [("cert", &cert), ("key", &key), ("cacert", &cacert)] {
            if v.is_empty() && self.flags.changed(name) {
                fail(
                    EXIT_BAD_ARGS,
                    format!("empty string is passed to --{name} option"),
                );
            }
        }
        let creds = self.auth_from_flags();
        self.init_display();

        let tls_wanted = !cert.is_empty()
            || !key.is_empty()
            || !cacert.is_empty()
            || !self.flags.bool("insecure-transport");
        let endpoints: Vec<String> = endpoints
            .into_iter()
            .map(|e| {
                if tls_wanted && !e.contains("://") {
                    format!("https://{e}")
                } else {
                    e
                }
            })
            .collect();
        let mut config = match Config::from_endpoints(&endpoints) {
            Ok(c) => c,
            Err(e) => fail(EXIT_BAD_ARGS, go_err(&e)),
        };
        config.connect_timeout = self.flags.dur("dial-timeout");
        config.keepalive_interval = Some(
            self.flags
                .dur("keepalive-time")
                .max(Duration::from_secs(10)),
        );
        config.keepalive_timeout = self.flags.dur("keepalive-timeout");
        if tls_wanted {
            let read = |path: &str| -> Vec<u8> {
                std::fs::read(path).unwrap_or_else(|e| {
                    fail(
                        EXIT_BAD_ARGS,
                        format!("open {path}: {}", crate::gofmt::go_io_err(&e)),
                    )
                })
            };
            let mut tls = TlsConfig::default();
            if !cacert.is_empty() {
                tls = TlsConfig::with_ca_pem(read(&cacert));
            }
            if !cert.is_empty() && !key.is_empty() {
                tls = tls.identity(read(&cert), read(&key));
            }
            // As in etcdctl, only when TLS is on (dangerous: no server authentication).
            if self.flags.bool("insecure-skip-tls-verify") {
                tls = tls.insecure_skip_verify();
            }
            config.tls = Some(tls);
        }
        if let Some((user, password)) = creds {
            self.creds = true;
            config.credentials = Some(etcd_blocking::Credentials::new(user, password));
        }
        if debug {
            self.grpc_debug_log(&endpoints);
        }
        self.target = format!(
            "etcd-endpoints://{}/{}",
            fake_pointer(),
            endpoints
                .first()
                .map(|e| e.split_once("://").map(|(_, a)| a).unwrap_or(e))
                .unwrap_or("")
        );
        config
    }

    /// `--user`, `--password` (asking for the password when `--user` has none).
    fn auth_from_flags(&mut self) -> Option<(String, String)> {
        let user = self.flags.str("user");
        let password = self.flags.str("password");
        if user.is_empty() {
            return None;
        }
        if !password.is_empty() {
            return Some((user, password));
        }
        match user.split_once(':') {
            Some((u, p)) => Some((u.to_string(), p.to_string())),
            None => {
                let p =
                    crate::cli::ask_password("Password: ").unwrap_or_else(|e| fail(EXIT_ERROR, e));
                Some((user, p))
            }
        }
    }

    /// What grpc-go logs at verbosity 4 while it connects (`--debug`).
    fn grpc_debug_log(&self, endpoints: &[String]) {
        let addrs: Vec<String> = endpoints
            .iter()
            .map(|e| e.split_once("://").map(|(_, a)| a).unwrap_or(e).to_string())
            .collect();
        let t = log_now();
        let host = |a: &str| {
            a.rsplit_once(':')
                .map(|(h, _)| h.to_string())
                .unwrap_or_default()
        };
        let state = addrs
            .iter()
            .map(|a| format!("{{{a} {} <nil> 0 <nil>}}", host(a)))
            .collect::<Vec<_>>()
            .join(" ");
        let p = fake_pointer();
        if self.flags.dur("keepalive-time") < Duration::from_secs(10) {
            for _ in 0..2 {
                eprintln!("WARNING: {t} [core] Adjusting keepalive ping interval to minimum period of 10s");
            }
        }
        eprintln!("INFO: {t} [core] parsed scheme: \"etcd-endpoints\"");
        eprintln!(
            "INFO: {t} [core] ccResolverWrapper: sending update to cc: {{[{state}] {p} <nil>}}"
        );
        eprintln!("INFO: {t} [core] ClientConn switching balancer to \"round_robin\"");
        eprintln!("INFO: {t} [core] Channel switches to new LB policy \"round_robin\"");
        eprintln!("INFO: {t} [balancer] base.baseBalancer: got new ClientConn state:  {{{{[{state}] {p} <nil>}} <nil>}}");
        let subs: Vec<String> = addrs.iter().map(|_| fake_pointer()).collect();
        for s in &subs {
            eprintln!("INFO: {t} [core] Subchannel Connectivity change to CONNECTING");
            eprintln!("INFO: {t} [balancer] base.baseBalancer: handle SubConn state change: {s}, CONNECTING");
        }
        eprintln!("INFO: {t} [core] Channel Connectivity change to CONNECTING");
        for (a, s) in addrs.iter().zip(&subs) {
            eprintln!("INFO: {t} [core] Subchannel picks a new address \"{a}\" to connect");
            eprintln!("INFO: {t} [core] Subchannel Connectivity change to READY");
            eprintln!(
                "INFO: {t} [balancer] base.baseBalancer: handle SubConn state change: {s}, READY"
            );
        }
        let picker = addrs
            .iter()
            .zip(&subs)
            .map(|(a, s)| format!("{s}:{{{{{a} {} <nil> 0 <nil>}}}}", host(a)))
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!("INFO: {t} [roundrobin] roundrobinPicker: newPicker called with info: {{map[{picker}]}}");
        eprintln!("INFO: {t} [core] Channel Connectivity change to READY");
    }

    /// The client, made on first use.
    pub fn client(&mut self) -> &Client {
        if self.client.is_none() {
            let config = self.client_config();
            let client = Client::with_config(config)
                .unwrap_or_else(|e| fail(EXIT_BAD_CONNECTION, go_err(&e)));
            self.client = Some(client);
        }
        self.client.as_ref().expect("client")
    }

    /// The zap line the Go client's retry interceptor logs for a failed unary call.
    pub fn log_failed_call(&self, e: &Error) {
        let addr = self.target.rsplit('/').next().unwrap_or("").to_string();
        self.log_failed_call_to(e, &addr);
    }

    /// The same, for a call dialed to `addr` (`host:port`).
    pub fn log_failed_call_to(&self, e: &Error, addr: &str) {
        let Some(err) = grpc_error_text(e, addr) else {
            return;
        };
        eprintln!(
            "{{\"level\":\"warn\",\"ts\":\"{}\",\"logger\":\"etcd-client\",\"caller\":\"v3/retry_interceptor.go:62\",\"msg\":\"retrying of unary invoker failed\",\"target\":{},\"attempt\":0,\"error\":{}}}",
            iso_now(),
            zap_str(&self.target),
            zap_str(&err)
        );
    }

    /// A failed call: its log line, and for a failed authentication (which Go reports
    /// when it makes the client) the exit with code 2.
    fn failed(&mut self, e: &Error, addr: Option<&str>) {
        match addr {
            Some(a) => self.log_failed_call_to(e, a),
            None => self.log_failed_call(e),
        }
        if self.creds
            && self.calls == 1
            && matches!(
                e.etcd_kind(),
                Some(EtcdErrorKind::AuthFailed | EtcdErrorKind::NoPasswordUser)
            )
        {
            fail(EXIT_BAD_CONNECTION, go_err(e));
        }
    }

    /// A unary call with the command timeout (etcdctl's `commandCtx`).
    pub fn call<R: UnaryRpc + Send + 'static>(&mut self, rpc: R) -> Result<R::Response, Error> {
        let timeout = self.command_timeout();
        self.call_timeout(rpc, Some(timeout))
    }

    /// A unary call without a deadline (etcdctl's `context.TODO()`).
    pub fn call_untimed<R: UnaryRpc + Send + 'static>(
        &mut self,
        rpc: R,
    ) -> Result<R::Response, Error> {
        self.call_timeout(rpc, None)
    }

    pub fn call_timeout<R: UnaryRpc + Send + 'static>(
        &mut self,
        rpc: R,
        timeout: Option<Duration>,
    ) -> Result<R::Response, Error> {
        let client = self.client().clone();
        let client = match timeout {
            Some(t) => client.with_timeout(t),
            None => client,
        };
        self.calls += 1;
        let result = client.call(rpc);
        if let Err(e) = &result {
            self.failed(e, None);
        }
        result
    }

    /// A unary call to one endpoint.
    pub fn call_on<R: UnaryRpc + Send + 'static>(
        &mut self,
        endpoint: &str,
        rpc: R,
    ) -> Result<R::Response, Error> {
        let timeout = self.command_timeout();
        let client = self.client().clone();
        let ep = self.endpoint_url(endpoint);
        let client = match client.on_endpoint(&ep) {
            Ok(c) => c.with_timeout(timeout),
            Err(e) => return Err(e),
        };
        self.calls += 1;
        let result = client.call(rpc);
        if let Err(e) = &result {
            let addr = endpoint
                .split_once("://")
                .map(|(_, a)| a)
                .unwrap_or(endpoint);
            self.failed(e, Some(addr));
        }
        result
    }

    /// An endpoint as the client dials it (bare `host:port` gets TLS when TLS is on).
    pub fn endpoint_url(&self, endpoint: &str) -> String {
        let tls = !self.flags.str("cert").is_empty()
            || !self.flags.str("key").is_empty()
            || !self.flags.str("cacert").is_empty()
            || !self.flags.bool("insecure-transport");
        if tls && !endpoint.contains("://") {
            format!("https://{endpoint}")
        } else {
            endpoint.to_string()
        }
    }

    /// `call`, exiting with `code` and etcdctl's message on failure.
    pub fn must<R: UnaryRpc + Send + 'static>(&mut self, rpc: R, code: i32) -> R::Response {
        match self.call(rpc) {
            Ok(r) => r,
            Err(e) => fail(code, go_err(&e)),
        }
    }

    /// `call_untimed`, exiting with `code` on failure.
    pub fn must_untimed<R: UnaryRpc + Send + 'static>(&mut self, rpc: R, code: i32) -> R::Response {
        match self.call_untimed(rpc) {
            Ok(r) => r,
            Err(e) => fail(code, go_err(&e)),
        }
    }
}

/// A duration as `took` shows it.
pub fn took(d: Duration) -> String {
    go_duration(d)
}
