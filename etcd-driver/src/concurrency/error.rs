//! The errors of the coordination types.

use std::fmt;

use etcd_proto_core::{Error, EtcdErrorKind, LeaseLostReason};

/// An error of a [`Mutex`](super::Mutex), [`Election`](super::Election) or recipe: a failed
/// etcd call, or one of the Go package's own errors.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConcurrencyError {
    /// An etcd call failed.
    Etcd(Error),
    /// [`Mutex::try_lock`](super::Mutex::try_lock): another session holds the lock (Go's
    /// `ErrLocked`).
    Locked,
    /// The session's lease is gone, and with it the waiter or candidate key (Go's
    /// `ErrSessionExpired`).
    SessionExpired,
    /// Not the leader, or no longer: the leader key was deleted or re-created (Go's
    /// `ErrElectionNotLeader`).
    NotLeader,
    /// Nobody is campaigning (Go's `ErrElectionNoLeader`).
    NoLeader,
    /// A recipe's key exists already, e.g. a [`Barrier`](super::recipes::Barrier) that is held
    /// (Go's `ErrKeyExists`).
    KeyExists,
    /// A [`DoubleBarrier`](super::recipes::DoubleBarrier) already has its count of
    /// participants (Go's `ErrTooManyClients`).
    TooManyClients,
    /// A recipe found a key under its prefix that it could not have written (a priority
    /// queue key without a sequence number).
    UnexpectedKey(bytes::Bytes),
}

impl ConcurrencyError {
    /// The etcd error, if this is one.
    pub fn etcd(&self) -> Option<&Error> {
        match self {
            ConcurrencyError::Etcd(e) => Some(e),
            _ => None,
        }
    }

    /// Maps a call error of a request made with the session's lease: an unknown lease is the
    /// session's expiry.
    pub(crate) fn from_session_call(e: Error) -> ConcurrencyError {
        match &e {
            Error::Etcd(etcd) if etcd.kind == EtcdErrorKind::LeaseNotFound => {
                ConcurrencyError::SessionExpired
            }
            Error::LeaseLost {
                reason: LeaseLostReason::NotFound | LeaseLostReason::Expired,
                ..
            } => ConcurrencyError::SessionExpired,
            _ => ConcurrencyError::Etcd(e),
        }
    }
}

impl fmt::Display for ConcurrencyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConcurrencyError::Etcd(e) => e.fmt(f),
            ConcurrencyError::Locked => f.write_str("mutex: Locked by another session"),
            ConcurrencyError::SessionExpired => f.write_str("mutex: session is expired"),
            ConcurrencyError::NotLeader => f.write_str("election: not leader"),
            ConcurrencyError::NoLeader => f.write_str("election: no leader"),
            ConcurrencyError::KeyExists => f.write_str("key already exists"),
            ConcurrencyError::TooManyClients => f.write_str("too many clients"),
            ConcurrencyError::UnexpectedKey(key) => {
                write!(f, "unexpected key {:?}", String::from_utf8_lossy(key))
            }
        }
    }
}

impl std::error::Error for ConcurrencyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConcurrencyError::Etcd(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for ConcurrencyError {
    fn from(e: Error) -> Self {
        ConcurrencyError::Etcd(e)
    }
}
