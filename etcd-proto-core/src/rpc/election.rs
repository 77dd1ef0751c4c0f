//! Unary requests of the server-side election service (`v3electionpb.Election`):
//! [`Campaign`], [`Proclaim`], [`Leader`] and [`Resign`] (the `Observe` stream is not unary).
//! The Go client has no wrapper for them (it elects with its `concurrency` package); the
//! server implements them with that same package.
//!
//! [`Proclaim`] and [`Resign`] take the [`LeaderKey`] that [`Campaign`] returned, so the
//! server's `"leader" field must be provided` error cannot happen through these builders.

use etcd_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};

use super::{IntoBytes, Method, RetryClass, UnaryRpc};
use crate::error::Error;

/// Runs for leader of an election, waiting until elected (`Election/Campaign`). The response
/// holds the [`LeaderKey`] to pass to [`Proclaim`] and [`Resign`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Campaign {
    req: CampaignRequest,
}

impl Campaign {
    /// Campaigns in election `name` with the candidacy tied to `lease` (leadership ends with
    /// the lease), announcing `value` once elected. With lease 0 the server attaches the
    /// candidacy to a fresh 60 s lease that nobody keeps alive.
    pub fn new(name: impl IntoBytes, lease: i64, value: impl IntoBytes) -> Campaign {
        Campaign {
            req: CampaignRequest {
                name: name.into_bytes(),
                lease,
                value: value.into_bytes(),
            },
        }
    }
}

impl UnaryRpc for Campaign {
    type Request = CampaignRequest;
    type Response = CampaignResponse;
    const METHOD: Method = Method {
        path: "/v3electionpb.Election/Campaign",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<CampaignRequest, Error> {
        Ok(self.req)
    }
}

/// Announces a new value as the current leader (`Election/Proclaim`). A stale leader key gives
/// [`EtcdErrorKind::ElectionNotLeader`](crate::EtcdErrorKind).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Proclaim {
    req: ProclaimRequest,
}

impl Proclaim {
    /// Proclaims `value` as the leader holding `leader`.
    pub fn new(leader: LeaderKey, value: impl IntoBytes) -> Proclaim {
        Proclaim {
            req: ProclaimRequest {
                leader: Some(leader),
                value: value.into_bytes(),
            },
        }
    }
}

impl UnaryRpc for Proclaim {
    type Request = ProclaimRequest;
    type Response = ProclaimResponse;
    const METHOD: Method = Method {
        path: "/v3electionpb.Election/Proclaim",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<ProclaimRequest, Error> {
        Ok(self.req)
    }
}

/// The current leader's proclamation (`Election/Leader`). With nobody elected the server
/// answers [`EtcdErrorKind::ElectionNoLeader`](crate::EtcdErrorKind).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Leader {
    req: LeaderRequest,
}

impl Leader {
    /// Asks who leads election `name`.
    pub fn new(name: impl IntoBytes) -> Leader {
        Leader {
            req: LeaderRequest {
                name: name.into_bytes(),
            },
        }
    }
}

impl UnaryRpc for Leader {
    type Request = LeaderRequest;
    type Response = LeaderResponse;
    const METHOD: Method = Method {
        path: "/v3electionpb.Election/Leader",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<LeaderRequest, Error> {
        Ok(self.req)
    }
}

/// Gives up leadership, letting the next candidate win (`Election/Resign`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Resign {
    req: ResignRequest,
}

impl Resign {
    /// Resigns the leadership held by `leader`.
    pub fn new(leader: LeaderKey) -> Resign {
        Resign {
            req: ResignRequest {
                leader: Some(leader),
            },
        }
    }
}

impl UnaryRpc for Resign {
    type Request = ResignRequest;
    type Response = ResignResponse;
    const METHOD: Method = Method {
        path: "/v3electionpb.Election/Resign",
        retry: RetryClass::NonRepeatable,
    };
    fn into_request(self) -> Result<ResignRequest, Error> {
        Ok(self.req)
    }
}
