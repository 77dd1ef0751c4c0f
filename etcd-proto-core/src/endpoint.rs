//! Endpoint addresses: `http://host:port`, `https://host:port` and bare `host:port`.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The default etcd client port, used when an endpoint names none.
pub const DEFAULT_PORT: u16 = 2379;

/// Plain TCP (h2c with prior knowledge) or TLS with ALPN `h2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http://` or a bare `host:port`.
    Http,
    /// `https://`.
    Https,
}

impl Scheme {
    /// The `:scheme` pseudo-header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// One etcd member address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Transport security.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// `host:port` as sent in `:authority` (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority())
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Endpoint, Error> {
        let bad = |why: &str| Error::InvalidConfig(format!("endpoint {s:?}: {why}"));
        let (scheme, rest) = if let Some(rest) = s.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = s.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else if s.contains("://") {
            return Err(bad("scheme must be http or https"));
        } else {
            (Scheme::Http, s)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(bad("must not contain a path"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in IPv6 address"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("expected ':port'"))?),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad("invalid port"))?,
            None => DEFAULT_PORT,
        };
        Ok(Endpoint {
            scheme,
            host: host.to_string(),
            port,
        })
    }
}
