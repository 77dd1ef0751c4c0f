//! The retry policy: whether a failed attempt is sent again, and after what pause.
//!
//! It follows the Go client (`retry_interceptor.go`, `retry.go`) with one deliberate change:
//! a request the transport proves never left the client (the stream could not be opened, or
//! the server refused it with `REFUSED_STREAM`) is retried whatever its class, where Go relies
//! on old balancer error strings for that. A write that may have reached a server is never
//! sent twice.

use std::time::Duration;

use crate::error::{Error, EtcdErrorKind};
use crate::rng::Rng;
use crate::rpc::RetryClass;
use crate::status::Code;

/// Re-authentications one call may trigger before its auth error is returned.
pub const MAX_AUTH_RETRIES: u32 = 3;

/// What to do after an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it again (preferably to another endpoint).
    Retry {
        /// The token was rejected: authenticate again first.
        refresh_token: bool,
    },
    /// Return the error to the caller.
    Fail,
}

/// Facts about the call the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// The call's retry class.
    pub class: RetryClass,
    /// Attempts made so far, the failed one included.
    pub attempts: u32,
    /// The configured attempt limit.
    pub max_attempts: u32,
    /// How many endpoints are configured.
    pub endpoints: usize,
    /// Whether the client authenticates with credentials.
    pub has_credentials: bool,
    /// Re-authentications this call already caused.
    pub auth_retries: u32,
}

/// Decides whether a failed attempt is retried.
pub fn decide(attempt: Attempt, error: &Error) -> Decision {
    if attempt.attempts >= attempt.max_attempts {
        return Decision::Fail;
    }
    let kind = error.etcd_kind();
    // Token problems are found before the request is applied: safe for every class.
    let token_rejected = matches!(
        kind,
        Some(EtcdErrorKind::InvalidAuthToken | EtcdErrorKind::AuthOldRevision)
    ) || (attempt.has_credentials && kind == Some(EtcdErrorKind::UserEmpty));
    if token_rejected {
        return if attempt.has_credentials && attempt.auth_retries < MAX_AUTH_RETRIES {
            Decision::Retry {
                refresh_token: true,
            }
        } else {
            Decision::Fail
        };
    }
    let retry = Decision::Retry {
        refresh_token: false,
    };
    // A learner refuses before doing anything; another member may serve it, the same one
    // would refuse again.
    if kind == Some(EtcdErrorKind::NotSupportedForLearner) {
        return if attempt.endpoints > 1 {
            retry
        } else {
            Decision::Fail
        };
    }
    // Nothing reached a server: safe for every class.
    if let Error::Transport {
        request_sent: false,
        ..
    } = error
    {
        return retry;
    }
    match attempt.class {
        RetryClass::NonRepeatable => Decision::Fail,
        RetryClass::Repeatable => {
            let unavailable = match error {
                // A known etcd error whose code is not Unavailable will not go away.
                Error::Etcd(e) => e.kind.canonical_code() == Code::Unavailable,
                Error::Status(s) => s.code == Code::Unavailable,
                Error::Transport { .. } => true,
                _ => false,
            };
            if unavailable {
                retry
            } else {
                Decision::Fail
            }
        }
    }
}

/// The pause before attempt number `attempt` (1 = the first retry): Go's round-robin quorum
/// backoff. Only every quorum-th retry waits, so the first retries go straight to other
/// members; with one endpoint every retry waits.
pub fn backoff(
    attempt: u32,
    endpoints: usize,
    wait_between: Duration,
    jitter: f64,
    rng: &mut Rng,
) -> Duration {
    let quorum = (endpoints / 2 + 1) as u32;
    if attempt == 0 || !attempt.is_multiple_of(quorum) {
        return Duration::ZERO;
    }
    let jitter = jitter.clamp(0.0, 1.0);
    let factor = 1.0 - jitter + 2.0 * jitter * rng.next_f64();
    wait_between.mul_f64(factor)
}
