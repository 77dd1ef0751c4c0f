//! Requests of the server-side lock service (`v3lockpb.Lock`): [`Lock`] and [`Unlock`]. The
//! Go client has no wrapper for them (it locks with its `concurrency` package); the server
//! implements them with that same package.

use etcd_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

use super::{IntoBytes, Method, RetryClass, UnaryRpc};
use crate::error::Error;

/// Acquires a named distributed lock, waiting until it is free (`Lock/Lock`). The response
/// holds the lock's own key: pass it to [`Unlock`]. The lock is held until it is unlocked or
/// its lease ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Lock {
    req: LockRequest,
}

impl Lock {
    /// Locks `name`. Without [`Lock::lease`], the server attaches the lock to a fresh 60 s
    /// lease that nobody keeps alive: the lock is released when it expires.
    pub fn new(name: impl IntoBytes) -> Lock {
        Lock {
            req: LockRequest {
                name: name.into_bytes(),
                lease: 0,
            },
        }
    }

    /// Attaches the lock to lease `id`: the lock is released when the lease ends.
    pub fn lease(mut self, id: i64) -> Self {
        self.req.lease = id;
        self
    }
}

impl UnaryRpc for Lock {
    type Request = LockRequest;
    type Response = LockResponse;
    const METHOD: Method = Method {
        path: "/v3lockpb.Lock/Lock",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<LockRequest, Error> {
        Ok(self.req)
    }
}

/// Releases a lock by the key [`Lock`] returned (`Lock/Unlock`; the server deletes the key).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Unlock {
    req: UnlockRequest,
}

impl Unlock {
    /// Releases the lock whose key is `key`.
    pub fn new(key: impl IntoBytes) -> Unlock {
        Unlock {
            req: UnlockRequest {
                key: key.into_bytes(),
            },
        }
    }
}

impl UnaryRpc for Unlock {
    type Request = UnlockRequest;
    type Response = UnlockResponse;
    const METHOD: Method = Method {
        path: "/v3lockpb.Lock/Unlock",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<UnlockRequest, Error> {
        Ok(self.req)
    }
}
