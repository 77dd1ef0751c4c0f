//! Client configuration consumed by the core.

use std::fmt;
use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::error::Error;

/// Default send limit: 2 MiB, as the Go client (the server accepts 1.5 MiB requests plus
/// overhead by default).
pub const DEFAULT_MAX_SEND: usize = 2 * 1024 * 1024;

/// Default receive limit: no cap beyond what a gRPC prefix can express.
pub const DEFAULT_MAX_RECEIVE: usize = u32::MAX as usize;

/// etcd answers client pings closer together than this with GOAWAY `too_many_pings`.
pub const MIN_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// User name and password for etcd's token authentication. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl Credentials {
    /// Credentials for `user`.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// TLS settings, as plain data: the adapters build their TLS connector from it. `https://`
/// endpoints always use TLS (with the platform-independent Mozilla roots when no CA is given);
/// `http://` endpoints never do.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM bundle of CA certificates to trust instead of the default roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and private key, for mutual TLS.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Server name to verify instead of the endpoint's host (also sent as SNI).
    pub server_name: Option<String>,
    /// **Dangerous**: accept any server certificate, whoever issued it and whatever names it
    /// holds (Go's `InsecureSkipVerify`). See [`TlsConfig::insecure_skip_verify`].
    pub insecure_skip_verify: bool,
}

impl TlsConfig {
    /// TLS trusting the CAs of this PEM bundle.
    pub fn with_ca_pem(ca_pem: impl Into<Vec<u8>>) -> TlsConfig {
        TlsConfig {
            ca_pem: Some(ca_pem.into()),
            ..Default::default()
        }
    }

    /// Adds a client certificate chain and key (PEM) for mutual TLS.
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.client_identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Verifies the server certificate against this name instead of the endpoint's host.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// **Dangerous: turns server authentication off.** The server's certificate is accepted
    /// whoever issued it and whatever names it holds (the CA bundle and the server name are
    /// not checked against it; the name is still sent as SNI), like Go's
    /// `InsecureSkipVerify` and etcdctl's `--insecure-skip-tls-verify`.
    ///
    /// The connection is still encrypted, and the handshake still proves that the server holds
    /// the key of the certificate it shows, but nothing proves that this certificate belongs
    /// to your etcd: anyone on the network path can impersonate the server, read everything
    /// sent (the user name and password, tokens, keys and values), and answer anything. Use
    /// it only for tests and development, never in production: give the server's CA
    /// ([`TlsConfig::with_ca_pem`]) instead.
    ///
    /// A client identity ([`TlsConfig::identity`]) is still presented to servers that ask
    /// for one.
    pub fn insecure_skip_verify(mut self) -> Self {
        self.insecure_skip_verify = true;
        self
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .field(
                "client_identity",
                &self.client_identity.as_ref().map(|_| "<set>"),
            )
            .field("server_name", &self.server_name)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

/// Configuration of a [`Core`](crate::Core).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The members to talk to.
    pub endpoints: Vec<Endpoint>,
    /// Requests larger than this fail locally before anything is sent.
    pub max_send_message_size: usize,
    /// Responses larger than this fail the call.
    pub max_receive_message_size: usize,
    /// How long a connection attempt (TCP, TLS, HTTP/2 handshake and first PING) may take.
    pub connect_timeout: Duration,
    /// First delay before reconnecting to an endpoint that failed; doubles up to the max.
    pub reconnect_backoff_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_backoff_max: Duration,
    /// Deadline of calls that do not set their own (`None`: wait as long as it takes).
    pub default_timeout: Option<Duration>,
    /// Attempts per unary call, the first included (Go's `MaxUnaryRetries`, default 100).
    pub max_attempts: u32,
    /// Pause before every quorum-th retry (Go: 25 ms), so retries first try other members.
    pub retry_wait_between: Duration,
    /// Jitter fraction of that pause (Go: 0.1).
    pub retry_jitter: f64,
    /// Consecutive transport failures after which an endpoint is put aside.
    pub breaker_threshold: u32,
    /// How long an endpoint stays aside before it is tried again.
    pub breaker_cooldown: Duration,
    /// Ping a connection that has calls in flight but has been silent this long (at least
    /// 5 s, etcd's minimum); `None` disables keepalive pings.
    pub keepalive_interval: Option<Duration>,
    /// A ping unanswered for this long means the connection is dead.
    pub keepalive_timeout: Duration,
    /// Token authentication.
    pub credentials: Option<Credentials>,
    /// How long one Authenticate call may take.
    pub auth_timeout: Duration,
    /// How long a keepalive may wait for its first confirmation when the lease's TTL is not
    /// given (Go: 5 s).
    pub lease_first_keepalive_timeout: Duration,
    /// Refresh the endpoint list from the member list this often (`None`: never).
    pub auto_sync_interval: Option<Duration>,
    /// TLS settings for `https://` endpoints.
    pub tls: Option<TlsConfig>,
    /// Seed of the jitter generator.
    pub seed: u64,
}

impl Config {
    /// A configuration for these endpoints with the defaults.
    pub fn new(endpoints: Vec<Endpoint>) -> Config {
        Config {
            endpoints,
            max_send_message_size: DEFAULT_MAX_SEND,
            max_receive_message_size: DEFAULT_MAX_RECEIVE,
            connect_timeout: Duration::from_secs(5),
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            default_timeout: None,
            max_attempts: 100,
            retry_wait_between: Duration::from_millis(25),
            retry_jitter: 0.1,
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(5),
            keepalive_interval: Some(Duration::from_secs(10)),
            keepalive_timeout: Duration::from_secs(5),
            credentials: None,
            auth_timeout: Duration::from_secs(5),
            lease_first_keepalive_timeout: Duration::from_secs(5),
            auto_sync_interval: None,
            tls: None,
            seed: 0x5EED,
        }
    }

    /// Parses endpoint strings (`http://h:p`, `https://h:p`, `h:p`).
    pub fn from_endpoints<I, S>(endpoints: I) -> Result<Config, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints = endpoints
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<Endpoint>, Error>>()?;
        let config = Config::new(endpoints);
        config.validate()?;
        Ok(config)
    }

    /// Sets the credentials (builder style).
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some(Credentials::new(user, password));
        self
    }

    /// Sets the TLS settings (builder style).
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), Error> {
        if self.endpoints.is_empty() {
            return Err(Error::InvalidConfig("no endpoints given".into()));
        }
        if self.max_receive_message_size < self.max_send_message_size {
            return Err(Error::InvalidConfig(format!(
                "receive limit ({} bytes) must not be below the send limit ({} bytes)",
                self.max_receive_message_size, self.max_send_message_size
            )));
        }
        if let Some(interval) = self.keepalive_interval {
            if interval < MIN_KEEPALIVE_INTERVAL {
                return Err(Error::InvalidConfig(format!(
                    "keepalive interval {interval:?} is below etcd's minimum of 5 s \
                     (the server would close the connection with too_many_pings)"
                )));
            }
        }
        if self.max_attempts == 0 {
            return Err(Error::InvalidConfig(
                "max_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
