//! Client configuration from a YAML file with the Go client's keys (Go's `client/v3/yaml`),
//! or from `ETCDCTL_*` environment variables, mapped onto [`Config`].
//!
//! ```no_run
//! # fn demo() -> Result<(), etcd_driver::Error> {
//! let loaded = etcd_driver::config_file::from_yaml_file("/etc/etcd/client.yaml")?;
//! let config = loaded.config; // pass to Client::new / etcd_tokio::Client::with_config
//! # let _ = config;
//! # Ok(())
//! # }
//! ```
//!
//! # YAML keys
//!
//! | key | maps to |
//! | --- | --- |
//! | `endpoints` (list) | [`Config::endpoints`] |
//! | `auto-sync-interval` | [`Config::auto_sync_interval`] (0: off) |
//! | `dial-timeout` | [`Config::connect_timeout`] and [`Config::auth_timeout`]; the first-keepalive timeout becomes it + 1 s, as in Go |
//! | `dial-keep-alive-time` | [`Config::keepalive_interval`] (0: no pings; raised to etcd's 5 s minimum, as grpc-go raises it to 10 s) |
//! | `dial-keep-alive-timeout` | [`Config::keepalive_timeout`] |
//! | `max-call-send-msg-size`, `max-call-recv-msg-size` | the send and receive limits (bytes) |
//! | `username`, `password` | [`Config::credentials`] (both or neither) |
//! | `max-unary-retries` | [`Config::max_attempts`] (attempts in all, as Go's) |
//! | `backoff-wait-between`, `backoff-jitter-fraction` | [`Config::retry_wait_between`], [`Config::retry_jitter`] |
//! | `reject-old-cluster` | [`LoadedConfig::reject_old_cluster`]; run [`check_cluster_version`] after connecting |
//! | `permit-without-stream` | [`LoadedConfig::permit_without_stream`] (recorded only: the driver pings only connections with calls in flight) |
//! | `insecure-transport` | no TLS at all |
//! | `insecure-skip-tls-verify` | [`TlsConfig::insecure_skip_verify`]: **no server authentication** (tests and development only) |
//! | `cert-file`, `key-file` | the client certificate and key (PEM files) |
//! | `trusted-ca-file` (`ca-file`) | the CA bundle (PEM file) |
//!
//! A zero value means the default, as in Go. Durations are Go durations: an integer is
//! nanoseconds (what Go's YAML-through-JSON decoding reads), a string is Go's duration
//! syntax (`"5s"`, `"1m30s"`, `"250ms"`).
//!
//! # Differences from Go
//!
//! * Unknown keys, wrong types, duplicate keys, a certificate without its key, and only one
//!   of `username` / `password` are errors (Go ignores them silently).
//! * Durations may be written as strings (`5s`); Go reads only integer nanoseconds.
//! * `ca-file` (parsed but unused by Go) is read as the CA bundle when `trusted-ca-file` is
//!   absent.
//! * As in Go, unless `insecure-transport: true`, TLS is configured even without files, and
//!   bare `host:port` endpoints use it (they become `https://`); `http://` endpoints stay plain.
//!   Relative file paths are relative to the working directory, as in Go.
//!
//! `insecure-skip-tls-verify: true` turns server certificate verification off, as in Go:
//! anyone on the network path can then impersonate the server and read the credentials and
//! data sent. Like every TLS setting it has no effect with `insecure-transport: true`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_proto_core::config::MIN_KEEPALIVE_INTERVAL;
use etcd_proto_core::{Code, Config, Credentials, Error, Status, TlsConfig};
use yaml_rust2::{Yaml, YamlLoader};

use crate::Client;

/// A loaded configuration: the [`Config`], plus the Go settings it has no field for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadedConfig {
    /// The client configuration.
    pub config: Config,
    /// `reject-old-cluster`: the caller should run [`check_cluster_version`] after
    /// connecting (Go's `New` does it).
    pub reject_old_cluster: bool,
    /// `permit-without-stream`: recorded only (this driver pings only connections with calls
    /// in flight).
    pub permit_without_stream: bool,
}

/// Every setting either source can give, before it is mapped.
#[derive(Debug, Default)]
struct Settings {
    endpoints: Option<Vec<String>>,
    auto_sync_interval: Option<Duration>,
    dial_timeout: Option<Duration>,
    keepalive_time: Option<Duration>,
    keepalive_timeout: Option<Duration>,
    command_timeout: Option<Duration>,
    max_send: Option<usize>,
    max_receive: Option<usize>,
    username: Option<String>,
    password: Option<String>,
    reject_old_cluster: bool,
    permit_without_stream: bool,
    max_unary_retries: Option<u64>,
    backoff_wait_between: Option<Duration>,
    backoff_jitter_fraction: Option<f64>,
    insecure_transport: bool,
    insecure_skip_tls_verify: bool,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    trusted_ca_file: Option<PathBuf>,
    /// Whether bare `host:port` endpoints use TLS.
    tls_for_bare: bool,
}

fn invalid(source: &str, message: impl std::fmt::Display) -> Error {
    Error::InvalidConfig(format!("{source}: {message}"))
}

fn read_file(source: &str, what: &str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        invalid(
            source,
            format_args!("cannot read {what} {}: {e}", path.display()),
        )
    })
}

impl Settings {
    fn build(self, source: &str) -> Result<LoadedConfig, Error> {
        let endpoints: Vec<String> = self
            .endpoints
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let e = e.trim().to_string();
                if self.tls_for_bare && !e.contains("://") {
                    format!("https://{e}")
                } else {
                    e
                }
            })
            .collect();
        let endpoints = endpoints
            .iter()
            .map(|e| e.parse())
            .collect::<Result<Vec<_>, Error>>()
            .map_err(|e| invalid(source, e))?;
        let mut config = Config::new(endpoints);
        if let Some(d) = self.auto_sync_interval {
            config.auto_sync_interval = (!d.is_zero()).then_some(d);
        }
        if let Some(d) = self.dial_timeout.filter(|d| !d.is_zero()) {
            config.connect_timeout = d;
            config.auth_timeout = d;
            config.lease_first_keepalive_timeout = d + Duration::from_secs(1);
        }
        if let Some(d) = self.keepalive_time {
            config.keepalive_interval = (!d.is_zero()).then(|| d.max(MIN_KEEPALIVE_INTERVAL));
        }
        if let Some(d) = self.keepalive_timeout.filter(|d| !d.is_zero()) {
            config.keepalive_timeout = d;
        }
        if let Some(d) = self.command_timeout.filter(|d| !d.is_zero()) {
            config.default_timeout = Some(d);
        }
        if let Some(n) = self.max_send.filter(|n| *n > 0) {
            config.max_send_message_size = n;
        }
        if let Some(n) = self.max_receive.filter(|n| *n > 0) {
            config.max_receive_message_size = n;
        }
        let user = self.username.filter(|s| !s.is_empty());
        let password = self.password.filter(|s| !s.is_empty());
        config.credentials = match (user, password) {
            (Some(user), Some(password)) => Some(Credentials::new(user, password)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(source, "a user name is given without a password"))
            }
            (None, Some(_)) => {
                return Err(invalid(source, "a password is given without a user name"))
            }
        };
        if let Some(n) = self.max_unary_retries.filter(|n| *n > 0) {
            config.max_attempts = u32::try_from(n)
                .map_err(|_| invalid(source, format_args!("max-unary-retries {n} is too large")))?;
        }
        if let Some(d) = self.backoff_wait_between.filter(|d| !d.is_zero()) {
            config.retry_wait_between = d;
        }
        if let Some(f) = self.backoff_jitter_fraction {
            if !f.is_finite() || f < 0.0 {
                return Err(invalid(
                    source,
                    format_args!("backoff-jitter-fraction must be a non-negative number, got {f}"),
                ));
            }
            if f > 0.0 {
                config.retry_jitter = f;
            }
        }
        if !self.insecure_transport {
            let mut tls = TlsConfig::default();
            if self.insecure_skip_tls_verify {
                tls = tls.insecure_skip_verify();
            }
            if let Some(path) = &self.trusted_ca_file {
                tls.ca_pem = Some(read_file(source, "the CA file", path)?);
            }
            tls.client_identity = match (&self.cert_file, &self.key_file) {
                (Some(cert), Some(key)) => Some((
                    read_file(source, "the certificate file", cert)?,
                    read_file(source, "the key file", key)?,
                )),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(invalid(
                        source,
                        "a certificate file is given without its key file",
                    ))
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        source,
                        "a key file is given without its certificate file",
                    ))
                }
            };
            config.tls = Some(tls);
        }
        config.validate().map_err(|e| invalid(source, e))?;
        Ok(LoadedConfig {
            config,
            reject_old_cluster: self.reject_old_cluster,
            permit_without_stream: self.permit_without_stream,
        })
    }
}

/// Parses a Go duration: `"300ms"`, `"-1.5h"`, `"2h45m"`, `"0"`; units `ns`, `us` (`µs`),
/// `ms`, `s`, `m`, `h`. Negative durations are refused (no setting takes one).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}");
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if let Some(magnitude) = s.strip_prefix('-') {
        if magnitude.chars().all(|c| c == '0' || c == '.') && !magnitude.is_empty() {
            return Ok(Duration::ZERO);
        }
        return Err(format!("negative duration {text:?}"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {text:?}"))?;
        let (number, after) = rest.split_at(digits);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(bad());
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        total += value * nanos_per;
        rest = next;
    }
    if total > u64::MAX as f64 {
        return Err(format!("duration {text:?} is too large"));
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

fn type_name(value: &Yaml) -> &'static str {
    match value {
        Yaml::Real(_) => "a number",
        Yaml::Integer(_) => "an integer",
        Yaml::String(_) => "a string",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a mapping",
        Yaml::Alias(_) => "an alias",
        Yaml::Null => "null",
        Yaml::BadValue => "an invalid value",
    }
}

struct Field<'a> {
    source: &'a str,
    key: &'a str,
    value: &'a Yaml,
}

impl Field<'_> {
    fn error(&self, expected: &str) -> Error {
        invalid(
            self.source,
            format_args!(
                "key `{}`: expected {expected}, got {}",
                self.key,
                type_name(self.value)
            ),
        )
    }

    fn string(&self) -> Result<String, Error> {
        match self.value {
            Yaml::String(s) => Ok(s.clone()),
            Yaml::Integer(i) => Ok(i.to_string()),
            Yaml::Real(r) => Ok(r.clone()),
            _ => Err(self.error("a string")),
        }
    }

    fn boolean(&self) -> Result<bool, Error> {
        match self.value {
            Yaml::Boolean(b) => Ok(*b),
            // YAML 1.1 spellings, which the Go decoder (go-yaml v2) reads as booleans.
            Yaml::String(s) => match s.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Ok(true),
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Ok(false),
                _ => Err(self.error("a boolean")),
            },
            _ => Err(self.error("a boolean")),
        }
    }

    fn unsigned(&self) -> Result<u64, Error> {
        match self.value {
            Yaml::Integer(i) if *i >= 0 => Ok(*i as u64),
            _ => Err(self.error("a non-negative integer")),
        }
    }

    fn number(&self) -> Result<f64, Error> {
        match self.value {
            Yaml::Integer(i) => Ok(*i as f64),
            Yaml::Real(r) => r.parse().map_err(|_| self.error("a number")),
            _ => Err(self.error("a number")),
        }
    }

    fn duration(&self) -> Result<Duration, Error> {
        match self.value {
            Yaml::Integer(i) if *i >= 0 => Ok(Duration::from_nanos(*i as u64)),
            Yaml::String(s) => parse_go_duration(s)
                .map_err(|e| invalid(self.source, format_args!("key `{}`: {e}", self.key))),
            _ => Err(self.error("a duration (integer nanoseconds or a string such as \"5s\")")),
        }
    }

    fn strings(&self) -> Result<Vec<String>, Error> {
        match self.value {
            Yaml::Array(items) => items
                .iter()
                .map(|item| {
                    Field {
                        source: self.source,
                        key: self.key,
                        value: item,
                    }
                    .string()
                })
                .collect(),
            _ => Err(self.error("a list of strings")),
        }
    }

    fn path(&self) -> Result<Option<PathBuf>, Error> {
        let s = self.string()?;
        Ok((!s.is_empty()).then(|| PathBuf::from(s)))
    }
}

fn size(n: u64, field: &Field<'_>) -> Result<usize, Error> {
    usize::try_from(n).map_err(|_| field.error("a smaller size"))
}

/// Loads a configuration from YAML text (paths in it are relative to the working
/// directory).
pub fn from_yaml_str(text: &str) -> Result<LoadedConfig, Error> {
    parse_yaml("YAML configuration", text)
}

/// Loads a configuration from a YAML file with the Go client's keys.
pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<LoadedConfig, Error> {
    let path = path.as_ref();
    let source = format!("config file {}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(&source, format_args!("cannot read it: {e}")))?;
    parse_yaml(&source, &text)
}

fn parse_yaml(source: &str, text: &str) -> Result<LoadedConfig, Error> {
    let docs = YamlLoader::load_from_str(text)
        .map_err(|e| invalid(source, format_args!("invalid YAML: {e}")))?;
    let root = match docs.as_slice() {
        [] => return Settings::default().build(source),
        [root] => root,
        _ => return Err(invalid(source, "more than one YAML document")),
    };
    let map = match root {
        Yaml::Hash(map) => map,
        Yaml::Null => return Settings::default().build(source),
        other => {
            return Err(invalid(
                source,
                format_args!("expected a mapping of settings, got {}", type_name(other)),
            ))
        }
    };
    let mut s = Settings::default();
    let mut ca_file = None;
    for (key, value) in map {
        let Yaml::String(key) = key else {
            return Err(invalid(
                source,
                format_args!("keys must be strings, got {}", type_name(key)),
            ));
        };
        if matches!(value, Yaml::Null) {
            continue; // as Go's decoder: null leaves the zero value
        }
        let f = Field { source, key, value };
        match key.as_str() {
            "endpoints" => s.endpoints = Some(f.strings()?),
            "auto-sync-interval" => s.auto_sync_interval = Some(f.duration()?),
            "dial-timeout" => s.dial_timeout = Some(f.duration()?),
            "dial-keep-alive-time" => s.keepalive_time = Some(f.duration()?),
            "dial-keep-alive-timeout" => s.keepalive_timeout = Some(f.duration()?),
            "max-call-send-msg-size" => s.max_send = Some(size(f.unsigned()?, &f)?),
            "max-call-recv-msg-size" => s.max_receive = Some(size(f.unsigned()?, &f)?),
            "username" => s.username = Some(f.string()?),
            "password" => s.password = Some(f.string()?),
            "reject-old-cluster" => s.reject_old_cluster = f.boolean()?,
            "permit-without-stream" => s.permit_without_stream = f.boolean()?,
            "max-unary-retries" => s.max_unary_retries = Some(f.unsigned()?),
            "backoff-wait-between" => s.backoff_wait_between = Some(f.duration()?),
            "backoff-jitter-fraction" => s.backoff_jitter_fraction = Some(f.number()?),
            "insecure-transport" => s.insecure_transport = f.boolean()?,
            "insecure-skip-tls-verify" => s.insecure_skip_tls_verify = f.boolean()?,
            "cert-file" => s.cert_file = f.path()?,
            "key-file" => s.key_file = f.path()?,
            "trusted-ca-file" => s.trusted_ca_file = f.path()?,
            "ca-file" => ca_file = f.path()?,
            other => {
                return Err(invalid(source, format_args!("unknown key `{other}`")));
            }
        }
    }
    match (&s.trusted_ca_file, ca_file) {
        (None, ca) => s.trusted_ca_file = ca,
        (Some(trusted), Some(ca)) if *trusted != ca => {
            return Err(invalid(
                source,
                "`ca-file` and `trusted-ca-file` name different files (use `trusted-ca-file`)",
            ))
        }
        _ => {}
    }
    // Go's YAML loader sets a TLS configuration unless insecure-transport is true, and bare
    // host:port endpoints then use it.
    s.tls_for_bare = !s.insecure_transport;
    s.build(source)
}

fn parse_bool(var: &str, value: &str) -> Result<bool, Error> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(invalid(
            "environment",
            format_args!("{var}: invalid boolean {other:?}"),
        )),
    }
}

fn parse_env_duration(var: &str, value: &str) -> Result<Duration, Error> {
    parse_go_duration(value).map_err(|e| invalid("environment", format_args!("{var}: {e}")))
}

fn parse_env_size(var: &str, value: &str) -> Result<usize, Error> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid("environment", format_args!("{var}: invalid size {value:?}")))
}

/// Loads a configuration from the process's `ETCDCTL_*` environment variables; see
/// [`from_env_vars`].
pub fn from_env() -> Result<LoadedConfig, Error> {
    from_env_vars(std::env::vars())
}

/// Loads a configuration from `ETCDCTL_*` variables, as `etcdctl` reads its global flags
/// from them:
///
/// | variable | meaning |
/// | --- | --- |
/// | `ETCDCTL_ENDPOINTS` | comma-separated endpoints (default `127.0.0.1:2379`) |
/// | `ETCDCTL_DIAL_TIMEOUT` | connect (and auth) timeout, a Go duration |
/// | `ETCDCTL_COMMAND_TIMEOUT` | deadline of every call ([`Config::default_timeout`]) |
/// | `ETCDCTL_KEEPALIVE_TIME`, `ETCDCTL_KEEPALIVE_TIMEOUT` | keepalive pings |
/// | `ETCDCTL_USER` | `name` or `name:password` |
/// | `ETCDCTL_PASSWORD` | the password (then `ETCDCTL_USER` is the name as given) |
/// | `ETCDCTL_CACERT`, `ETCDCTL_CERT`, `ETCDCTL_KEY` | PEM files |
/// | `ETCDCTL_INSECURE_TRANSPORT` | `false`: bare endpoints use TLS (default `true`) |
/// | `ETCDCTL_INSECURE_SKIP_TLS_VERIFY` | `true`: no server certificate verification ([`TlsConfig::insecure_skip_verify`]; tests and development only) |
/// | `ETCDCTL_MAX_REQUEST_BYTES`, `ETCDCTL_MAX_RECV_BYTES` | the send and receive limits |
/// | `ETCDCTL_API` | must be `3` when set |
///
/// Bare endpoints use TLS when a CA, certificate or key is given, or when
/// `ETCDCTL_INSECURE_TRANSPORT=false`, as in etcdctl. `ETCDCTL_INSECURE_SKIP_TLS_VERIFY=true`
/// alone configures TLS without verification for `https://` endpoints but does not make bare
/// endpoints use TLS (etcdctl ignores it unless TLS is on). `ETCDCTL_DISCOVERY_SRV` is
/// refused (no DNS discovery). Other `ETCDCTL_*` variables (output format and such) are not client
/// settings and are ignored. Unset settings keep [`Config::new`]'s defaults, not etcdctl's.
pub fn from_env_vars<I, K, V>(vars: I) -> Result<LoadedConfig, Error>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut s = Settings {
        insecure_transport: true,
        ..Default::default()
    };
    let mut user = None;
    for (var, value) in vars {
        let (var, value) = (var.as_ref(), value.as_ref());
        let Some(name) = var.strip_prefix("ETCDCTL_") else {
            continue;
        };
        match name {
            "ENDPOINTS" => {
                s.endpoints = Some(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(String::from)
                        .collect(),
                )
            }
            "DIAL_TIMEOUT" => s.dial_timeout = Some(parse_env_duration(var, value)?),
            "COMMAND_TIMEOUT" => s.command_timeout = Some(parse_env_duration(var, value)?),
            "KEEPALIVE_TIME" => s.keepalive_time = Some(parse_env_duration(var, value)?),
            "KEEPALIVE_TIMEOUT" => s.keepalive_timeout = Some(parse_env_duration(var, value)?),
            "USER" => user = Some(value.to_string()),
            "PASSWORD" => s.password = Some(value.to_string()),
            "CACERT" => s.trusted_ca_file = Some(PathBuf::from(value)),
            "CERT" => s.cert_file = Some(PathBuf::from(value)),
            "KEY" => s.key_file = Some(PathBuf::from(value)),
            "INSECURE_TRANSPORT" => s.insecure_transport = parse_bool(var, value)?,
            "INSECURE_SKIP_TLS_VERIFY" => s.insecure_skip_tls_verify = parse_bool(var, value)?,
            "MAX_REQUEST_BYTES" => s.max_send = Some(parse_env_size(var, value)?),
            "MAX_RECV_BYTES" => s.max_receive = Some(parse_env_size(var, value)?),
            "API" if value.trim() != "3" => {
                return Err(invalid(
                    "environment",
                    format_args!("ETCDCTL_API={value}: only API 3 is supported"),
                ))
            }
            "DISCOVERY_SRV" | "DISCOVERY_SRV_NAME" if !value.trim().is_empty() => {
                return Err(invalid(
                    "environment",
                    format_args!("{var}: DNS discovery is not supported"),
                ))
            }
            _ => {}
        }
    }
    if let Some(user) = user.filter(|u| !u.is_empty()) {
        match (&s.password, user.split_once(':')) {
            (Some(_), _) => s.username = Some(user),
            (None, Some((name, password))) => {
                s.username = Some(name.to_string());
                s.password = Some(password.to_string());
            }
            (None, None) => {
                return Err(invalid(
                    "environment",
                    "ETCDCTL_USER has no password: use ETCDCTL_USER=name:password or set \
                     ETCDCTL_PASSWORD",
                ))
            }
        }
    }
    if s.endpoints.as_ref().is_none_or(|e| e.is_empty()) {
        s.endpoints = Some(vec!["127.0.0.1:2379".into()]);
    }
    let tls_files = s.trusted_ca_file.is_some() || s.cert_file.is_some() || s.key_file.is_some();
    s.tls_for_bare = tls_files || !s.insecure_transport;
    if tls_files || s.insecure_skip_tls_verify {
        // etcdctl configures TLS as soon as TLS material is given; skipping verification
        // configures it too (for https:// endpoints: bare ones stay plain).
        s.insecure_transport = false;
    }
    s.build("environment")
}

/// Go's `reject-old-cluster` check: asks every configured endpoint for its status and fails
/// if any member runs a version below 3.4 (Go's `ErrOldCluster`), or if a status call fails.
pub async fn check_cluster_version(client: &Client) -> Result<(), Error> {
    for endpoint in client.endpoints().await? {
        let status = client.on_endpoint(&endpoint.to_string())?.status().await?;
        let mut parts = status
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) < (3, 4) {
            return Err(Error::Status(Status::new(
                Code::FailedPrecondition,
                format!(
                    "etcdclient: old cluster version ({endpoint} runs {})",
                    status.version
                ),
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let ok = |s: &str| parse_go_duration(s).unwrap();
        assert_eq!(ok("5s"), Duration::from_secs(5));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("2h45m"), Duration::from_secs(9900));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("+3s"), Duration::from_secs(3));
        for bad in ["", "5", "s", "5x", "-1s", "1..5s", "5s3", ".s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_go_key_maps() {
        let loaded = from_yaml_str(
            r#"
endpoints: [http://10.0.0.1:2379, "10.0.0.2:2379"]
auto-sync-interval: 30s
dial-timeout: 3000000000   # integer nanoseconds, as Go writes them
dial-keep-alive-time: 2s   # below etcd's minimum: raised to 5 s
dial-keep-alive-timeout: 7s
max-call-send-msg-size: 1048576
max-call-recv-msg-size: 8388608
username: alice
password: "s3cret"
reject-old-cluster: true
permit-without-stream: yes
max-unary-retries: 7
backoff-wait-between: 40ms
backoff-jitter-fraction: 0.2
insecure-transport: true
"#,
        )
        .unwrap();
        let c = &loaded.config;
        assert_eq!(c.endpoints[0].to_string(), "http://10.0.0.1:2379");
        // insecure-transport: bare endpoints stay plain.
        assert_eq!(c.endpoints[1].to_string(), "http://10.0.0.2:2379");
        assert_eq!(c.auto_sync_interval, Some(Duration::from_secs(30)));
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.auth_timeout, Duration::from_secs(3));
        assert_eq!(c.lease_first_keepalive_timeout, Duration::from_secs(4));
        assert_eq!(c.keepalive_interval, Some(MIN_KEEPALIVE_INTERVAL));
        assert_eq!(c.keepalive_timeout, Duration::from_secs(7));
        assert_eq!(c.max_send_message_size, 1 << 20);
        assert_eq!(c.max_receive_message_size, 8 << 20);
        assert_eq!(c.credentials, Some(Credentials::new("alice", "s3cret")));
        assert_eq!(c.max_attempts, 7);
        assert_eq!(c.retry_wait_between, Duration::from_millis(40));
        assert_eq!(c.retry_jitter, 0.2);
        assert!(c.tls.is_none());
        assert!(loaded.reject_old_cluster && loaded.permit_without_stream);
    }

    #[test]
    fn zero_means_default_and_tls_is_on_unless_insecure() {
        let loaded = from_yaml_str(
            "endpoints: ['127.0.0.1:2379']\ndial-timeout: 0\ndial-keep-alive-time: 0\nmax-unary-retries: 0\n",
        )
        .unwrap();
        let c = loaded.config;
        let d = Config::new(vec![]);
        assert_eq!(c.connect_timeout, d.connect_timeout);
        assert_eq!(c.keepalive_interval, None, "0 turns pings off, as in Go");
        assert_eq!(c.max_attempts, d.max_attempts);
        assert_eq!(c.tls, Some(TlsConfig::default()));
        assert_eq!(c.endpoints[0].to_string(), "https://127.0.0.1:2379");
    }

    #[test]
    fn insecure_skip_tls_verify_sets_the_flag() {
        let c = from_yaml_str("endpoints: [a:1]\ninsecure-skip-tls-verify: true\n")
            .unwrap()
            .config;
        let tls = c.tls.expect("TLS is on");
        assert!(tls.insecure_skip_verify);
        assert_eq!(tls, TlsConfig::default().insecure_skip_verify());
        assert_eq!(c.endpoints[0].to_string(), "https://a:1");
        let c = from_yaml_str("endpoints: [a:1]\ninsecure-skip-tls-verify: false\n")
            .unwrap()
            .config;
        assert!(!c.tls.expect("TLS is on").insecure_skip_verify);
        // As in Go, no TLS at all with insecure-transport.
        let c = from_yaml_str(
            "endpoints: [a:1]\ninsecure-transport: true\ninsecure-skip-tls-verify: true\n",
        )
        .unwrap()
        .config;
        assert!(c.tls.is_none());
        assert_eq!(c.endpoints[0].to_string(), "http://a:1");
    }

    fn err(text: &str) -> String {
        match from_yaml_str(text) {
            Err(Error::InvalidConfig(m)) => m,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn mistakes_are_typed_errors() {
        assert!(err("endpoints: [a:1]\ndial-timeot: 5s\n").contains("unknown key `dial-timeot`"));
        assert!(err("endpoints: a:1\n").contains("expected a list of strings"));
        assert!(err("endpoints: [a:1]\ndial-timeout: 5 seconds\n").contains("dial-timeout"));
        assert!(err("endpoints: [a:1]\ndial-timeout: 5 seconds\n").contains("unknown unit"));
        assert!(err("endpoints: [a:1]\ndial-timeout: -5\n").contains("expected a duration"));
        assert!(err("endpoints: [a:1]\nusername: bob\n").contains("without a password"));
        assert!(err("endpoints: [a:1]\ncert-file: /x.pem\n").contains("without its key file"));
        assert!(
            err("endpoints: [a:1]\ntrusted-ca-file: /nonexistent/ca.pem\n")
                .contains("cannot read the CA file")
        );
        assert!(err("endpoints: [a:1]\nendpoints: [b:2]\n").contains("invalid YAML"));
        assert!(err("endpoints: [a:1]\n---\nendpoints: [b:2]\n").contains("more than one"));
        assert!(err("- a\n- b\n").contains("expected a mapping"));
        assert!(err("dial-timeout: 5s\n").contains("no endpoints"));
        assert!(err("endpoints: ['ftp://a:1']\n").contains("scheme"));
        assert!(err("endpoints: [a:1]\nbackoff-jitter-fraction: -1\n").contains("non-negative"));
    }

    #[test]
    fn etcdctl_environment() {
        let env = |pairs: &[(&str, &str)]| {
            from_env_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        };
        let loaded = env(&[
            ("ETCDCTL_ENDPOINTS", "10.0.0.1:2379, http://10.0.0.2:2379"),
            ("ETCDCTL_DIAL_TIMEOUT", "3s"),
            ("ETCDCTL_COMMAND_TIMEOUT", "9s"),
            ("ETCDCTL_USER", "root:pa:ss"),
            ("ETCDCTL_WRITE_OUT", "json"),
            ("PATH", "/bin"),
        ])
        .unwrap();
        let c = loaded.config;
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!(c.endpoints[0].to_string(), "http://10.0.0.1:2379");
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.default_timeout, Some(Duration::from_secs(9)));
        assert_eq!(c.credentials, Some(Credentials::new("root", "pa:ss")));
        assert!(c.tls.is_none());
        let c = env(&[("ETCDCTL_USER", "a:b"), ("ETCDCTL_PASSWORD", "pw")])
            .unwrap()
            .config;
        assert_eq!(c.credentials, Some(Credentials::new("a:b", "pw")));
        assert_eq!(c.endpoints[0].to_string(), "http://127.0.0.1:2379");
        let c = env(&[("ETCDCTL_INSECURE_TRANSPORT", "false")])
            .unwrap()
            .config;
        assert_eq!(c.endpoints[0].to_string(), "https://127.0.0.1:2379");
        assert!(c.tls.is_some());
        let c = env(&[
            ("ETCDCTL_ENDPOINTS", "10.0.0.1:2379,https://10.0.0.2:2379"),
            ("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true"),
        ])
        .unwrap()
        .config;
        assert!(c.tls.expect("TLS is configured").insecure_skip_verify);
        assert_eq!(c.endpoints[0].to_string(), "http://10.0.0.1:2379");
        assert_eq!(c.endpoints[1].to_string(), "https://10.0.0.2:2379");
        let c = env(&[
            ("ETCDCTL_INSECURE_TRANSPORT", "false"),
            ("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "1"),
        ])
        .unwrap()
        .config;
        assert!(c.tls.expect("TLS is on").insecure_skip_verify);
        assert_eq!(c.endpoints[0].to_string(), "https://127.0.0.1:2379");
        let c = env(&[("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "false")])
            .unwrap()
            .config;
        assert!(c.tls.is_none());
        assert!(env(&[("ETCDCTL_USER", "nopassword")]).is_err());
        assert!(env(&[("ETCDCTL_DIAL_TIMEOUT", "soon")]).is_err());
        assert!(env(&[("ETCDCTL_API", "2")]).is_err());
        assert!(env(&[("ETCDCTL_CACERT", "/nonexistent/ca.pem")]).is_err());
    }
}
