//! Client configuration consumed by the core.

use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::error::Error;

/// Default send limit: 2 MiB, as the Go client (the server accepts 1.5 MiB requests plus
/// overhead by default).
pub const DEFAULT_MAX_SEND: usize = 2 * 1024 * 1024;

/// Default receive limit: no cap beyond what a gRPC prefix can express.
pub const DEFAULT_MAX_RECEIVE: usize = u32::MAX as usize;

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
    /// How long a connection attempt (TCP + TLS + HTTP/2 handshake) may take.
    pub connect_timeout: Duration,
    /// First delay before reconnecting to an endpoint that failed; doubles up to the max.
    pub reconnect_backoff_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_backoff_max: Duration,
    /// Deadline of calls that do not set their own (`None`: wait as long as it takes).
    pub default_timeout: Option<Duration>,
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
        Ok(())
    }
}
