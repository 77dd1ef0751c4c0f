//! The endpoint table: one entry per member address with its connection state, reconnect
//! backoff, circuit breaker and keepalive bookkeeping. Pure bookkeeping; the engine decides.

use std::time::{Duration, Instant};

use http::uri::Authority;

use crate::endpoint::{Endpoint, Scheme};
use crate::engine::EndpointId;
use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conn {
    Idle,
    Connecting { deadline: Instant },
    Connected,
    Backoff { until: Instant },
}

#[derive(Debug)]
pub(crate) struct EndpointState {
    pub id: EndpointId,
    pub target: Endpoint,
    pub scheme: http::uri::Scheme,
    pub authority: Authority,
    pub conn: Conn,
    /// Consecutive failed connection attempts (drives the reconnect backoff).
    pub connect_failures: u32,
    /// Consecutive transport failures of any kind (drives the circuit breaker).
    pub transport_failures: u32,
    /// The breaker is open (endpoint put aside) until then.
    pub breaker_until: Option<Instant>,
    /// Streams open on the connection.
    pub active_streams: usize,
    /// Last time anything arrived on the connection (or a ping was sent).
    pub last_activity: Instant,
    /// An unanswered keepalive ping must be answered by then.
    pub ping_deadline: Option<Instant>,
    /// Added only for calls pinned to it; not part of round robin or the public list.
    pub pinned_only: bool,
}

impl EndpointState {
    pub fn new(
        id: EndpointId,
        target: Endpoint,
        pinned_only: bool,
        now: Instant,
    ) -> Result<Self, Error> {
        let authority = Authority::try_from(target.authority().as_str()).map_err(|e| {
            Error::InvalidConfig(format!("endpoint {target}: invalid authority: {e}"))
        })?;
        let scheme = match target.scheme {
            Scheme::Http => http::uri::Scheme::HTTP,
            Scheme::Https => http::uri::Scheme::HTTPS,
        };
        Ok(EndpointState {
            id,
            target,
            scheme,
            authority,
            conn: Conn::Idle,
            connect_failures: 0,
            transport_failures: 0,
            breaker_until: None,
            active_streams: 0,
            last_activity: now,
            ping_deadline: None,
            pinned_only,
        })
    }

    /// The breaker lets calls through (closed, or its cool-down is over).
    pub fn breaker_closed(&self, now: Instant) -> bool {
        self.breaker_until.is_none_or(|until| until <= now)
    }

    /// Counts a transport failure; opens the breaker at the threshold.
    pub fn transport_failure(&mut self, now: Instant, threshold: u32, cooldown: Duration) {
        self.transport_failures = self.transport_failures.saturating_add(1);
        if self.transport_failures >= threshold {
            self.breaker_until = Some(now + cooldown);
        }
    }

    /// The endpoint answered: close the breaker.
    pub fn success(&mut self) {
        self.transport_failures = 0;
        self.breaker_until = None;
    }

    /// When the next keepalive ping is due, if one is.
    pub fn ping_due(&self, interval: Option<Duration>) -> Option<Instant> {
        let interval = interval?;
        (self.conn == Conn::Connected && self.active_streams > 0 && self.ping_deadline.is_none())
            .then(|| self.last_activity + interval)
    }
}

/// Client URLs of the members that a client should talk to: started (non-empty name) and not
/// learners, as Go's `Sync` does. Unparseable URLs are skipped.
pub fn endpoints_from_members(members: &[etcd_proto::etcdserverpb::Member]) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    for member in members {
        if member.name.is_empty() || member.is_learner {
            continue;
        }
        for url in &member.client_ur_ls {
            if let Ok(ep) = url.parse::<Endpoint>() {
                if !out.contains(&ep) {
                    out.push(ep);
                }
            }
        }
    }
    out
}
