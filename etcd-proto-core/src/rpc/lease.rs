//! Lease requests of the Go client's `Lease` interface, except the keep-alive stream:
//! [`LeaseGrant`], [`LeaseRevoke`], [`LeaseTimeToLive`] and [`LeaseLeases`]. All four are
//! repeatable (the Go client retries them, LeaseGrant and LeaseRevoke included).

use etcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseLeasesRequest, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

use super::{Method, RetryClass, UnaryRpc};
use crate::error::{Error, InvalidRequest};

/// Creates a lease (`Lease/LeaseGrant`).
///
/// The TTL is in seconds. A negative TTL is rejected locally with
/// [`InvalidRequest::NegativeLeaseTtl`]; any other value is sent as given, like the Go client
/// does: the server raises a TTL below its minimum (including 0) to that minimum, and answers
/// a TTL above 9 000 000 000 with [`EtcdErrorKind::LeaseTtlTooLarge`](crate::EtcdErrorKind).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct LeaseGrant {
    req: LeaseGrantRequest,
}

impl LeaseGrant {
    /// A lease of `ttl_secs` seconds, its ID chosen by the server.
    pub fn new(ttl_secs: i64) -> LeaseGrant {
        LeaseGrant {
            req: LeaseGrantRequest {
                ttl: ttl_secs,
                id: 0,
            },
        }
    }

    /// Asks for this lease ID (0 = let the server choose, the default). The server answers
    /// [`EtcdErrorKind::LeaseExist`](crate::EtcdErrorKind) if it is taken. The Go client has
    /// no such option; the wire has.
    pub fn id(mut self, id: i64) -> Self {
        self.req.id = id;
        self
    }

    /// The wire request.
    pub fn build(self) -> Result<LeaseGrantRequest, Error> {
        if self.req.ttl < 0 {
            return Err(InvalidRequest::NegativeLeaseTtl(self.req.ttl).into());
        }
        Ok(self.req)
    }
}

impl UnaryRpc for LeaseGrant {
    type Request = LeaseGrantRequest;
    type Response = LeaseGrantResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Lease/LeaseGrant",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<LeaseGrantRequest, Error> {
        self.build()
    }
}

/// Revokes a lease, deleting every key attached to it (`Lease/LeaseRevoke`). An unknown lease
/// gives [`EtcdErrorKind::LeaseNotFound`](crate::EtcdErrorKind).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct LeaseRevoke {
    req: LeaseRevokeRequest,
}

impl LeaseRevoke {
    /// Revokes lease `id`.
    pub fn new(id: i64) -> LeaseRevoke {
        LeaseRevoke {
            req: LeaseRevokeRequest { id },
        }
    }
}

impl UnaryRpc for LeaseRevoke {
    type Request = LeaseRevokeRequest;
    type Response = LeaseRevokeResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Lease/LeaseRevoke",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<LeaseRevokeRequest, Error> {
        Ok(self.req)
    }
}

/// The remaining and granted TTL of a lease (`Lease/LeaseTimeToLive`). An unknown lease is not
/// an error: the response has TTL -1.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct LeaseTimeToLive {
    req: LeaseTimeToLiveRequest,
}

impl LeaseTimeToLive {
    /// Asks about lease `id`.
    pub fn new(id: i64) -> LeaseTimeToLive {
        LeaseTimeToLive {
            req: LeaseTimeToLiveRequest { id, keys: false },
        }
    }

    /// Also lists the keys attached to the lease (Go's `WithAttachedKeys`).
    pub fn keys(mut self) -> Self {
        self.req.keys = true;
        self
    }
}

impl UnaryRpc for LeaseTimeToLive {
    type Request = LeaseTimeToLiveRequest;
    type Response = LeaseTimeToLiveResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Lease/LeaseTimeToLive",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<LeaseTimeToLiveRequest, Error> {
        Ok(self.req)
    }
}

/// Lists the IDs of every live lease (`Lease/LeaseLeases`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct LeaseLeases {
    _private: (),
}

impl LeaseLeases {
    /// Lists the leases.
    pub fn new() -> LeaseLeases {
        LeaseLeases::default()
    }
}

impl UnaryRpc for LeaseLeases {
    type Request = LeaseLeasesRequest;
    type Response = LeaseLeasesResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Lease/LeaseLeases",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<LeaseLeasesRequest, Error> {
        Ok(LeaseLeasesRequest {})
    }
}
