//! Revision ordering (Go's `ordering` package): a KV view that never hands out a response
//! older than one it already returned. Every response's header revision is compared with the
//! highest seen so far; a lower one (a serializable read from a member that lags behind, or a
//! member cut off from its cluster) is an *order violation*, handled by a
//! [`ViolationPolicy`] — by default Go's: try the request again on the next endpoint, and give
//! up with [`OrderingError::NoGreaterRevision`] once every endpoint answered stale.
//!
//! ```no_run
//! # async fn demo(client: etcd_driver::Client) -> Result<(), etcd_driver::ordering::OrderingError> {
//! use etcd_driver::ordering::OrderedKv;
//! use etcd_driver::rpc::kv::Get;
//!
//! let kv = OrderedKv::new(client);
//! let fresh = kv.get(Get::new("k").serializable()).await?; // never older than an earlier answer
//! # let _ = fresh;
//! # Ok(())
//! # }
//! ```
//!
//! # Differences from Go
//!
//! * Go's 3.4 policy pins the whole client to one endpoint (`SetEndpoints`) and sleeps a
//!   second per violation; its 3.5 policy just retries through the balancer. Here the retry is
//!   pinned to one endpoint with [`Client::on_endpoint`], leaving the client's endpoint list
//!   (shared by every clone) alone, and each configured endpoint is tried once, in order.
//! * Go counts violations for the life of the closure, so after `len(endpoints)` (3.4) or
//!   `5 × len(endpoints)` (3.5) violations *in total* every later violation fails at once.
//!   Here the budget is per request.
//! * Put, Delete and write transactions record their revision too (Go only looks at Get and
//!   Txn), so a read after a write is never older than the write. A transaction with writes is
//!   never sent twice: it cannot come back older than a revision seen before it (the member
//!   applies it after every entry committed earlier), so its answer is always accepted.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use etcd_proto_core::proto::etcdserverpb::{
    request_op, DeleteRangeResponse, PutResponse, RangeResponse, RequestOp, ResponseHeader,
    TxnRequest, TxnResponse,
};
use etcd_proto_core::rpc::kv::{Delete, Get, Put, Txn};
use etcd_proto_core::rpc::UnaryRpc;
use etcd_proto_core::{Endpoint, Error};

use crate::Client;

/// Go's `ErrNoGreaterRev` message.
pub const NO_GREATER_REV_MESSAGE: &str =
    "etcdclient: no cluster members have a revision higher than the previously received revision";

/// An error of an [`OrderedKv`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OrderingError {
    /// Every endpoint tried answered with a revision below one already seen (Go's
    /// `ErrNoGreaterRev`).
    NoGreaterRevision {
        /// The highest revision seen before the request.
        previous: i64,
        /// The revision of the last (stale) answer.
        received: i64,
    },
    /// The call itself failed.
    Client(Error),
}

impl fmt::Display for OrderingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderingError::NoGreaterRevision { previous, received } => write!(
                f,
                "{NO_GREATER_REV_MESSAGE} (previous {previous}, received {received})"
            ),
            OrderingError::Client(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for OrderingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OrderingError::Client(e) => Some(e),
            OrderingError::NoGreaterRevision { .. } => None,
        }
    }
}

impl From<Error> for OrderingError {
    fn from(e: Error) -> Self {
        OrderingError::Client(e)
    }
}

/// One stale answer, as shown to a [`ViolationPolicy::Custom`] handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    /// The highest revision seen before the request.
    pub previous: i64,
    /// The stale answer's revision.
    pub received: i64,
    /// The member that answered.
    pub member_id: u64,
    /// How many stale answers this request got so far (1 for the first).
    pub count: u32,
}

/// A handler deciding what a violation leads to: `Ok(())` sends the request again (through the
/// balancer), an error ends the request with it.
pub type ViolationHandler = Arc<dyn Fn(&Violation) -> Result<(), OrderingError> + Send + Sync>;

/// What to do with a stale answer.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum ViolationPolicy {
    /// Go's endpoint switching: send the request again to each configured endpoint in turn;
    /// [`OrderingError::NoGreaterRevision`] once all of them answered stale.
    #[default]
    SwitchEndpoint,
    /// Fail at once with [`OrderingError::NoGreaterRevision`].
    Fail,
    /// A custom handler (Go's `OrderViolationFunc`).
    Custom(ViolationHandler),
}

impl fmt::Debug for ViolationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ViolationPolicy::SwitchEndpoint => "SwitchEndpoint",
            ViolationPolicy::Fail => "Fail",
            ViolationPolicy::Custom(_) => "Custom(..)",
        })
    }
}

#[derive(Debug, Default)]
struct State {
    previous: AtomicI64,
    violations: AtomicU64,
}

/// A KV view that detects and resolves revision order violations; see the
/// [module docs](self). Clones, and views made with [`OrderedKv::on_endpoint`] or
/// [`OrderedKv::with_client`], share the highest revision seen.
#[derive(Debug, Clone)]
pub struct OrderedKv {
    client: Client,
    policy: ViolationPolicy,
    state: Arc<State>,
}

fn revision(header: &Option<ResponseHeader>) -> i64 {
    header.as_ref().map(|h| h.revision).unwrap_or_default()
}

fn member(header: &Option<ResponseHeader>) -> u64 {
    header.as_ref().map(|h| h.member_id).unwrap_or_default()
}

fn has_writes(txn: &TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .any(|op: &RequestOp| match &op.request {
            Some(request_op::Request::RequestRange(_)) | None => false,
            Some(request_op::Request::RequestTxn(t)) => has_writes(t),
            Some(_) => true,
        })
}

impl OrderedKv {
    /// Ordering over `client` with Go's endpoint-switching policy.
    pub fn new(client: Client) -> OrderedKv {
        OrderedKv::with_policy(client, ViolationPolicy::SwitchEndpoint)
    }

    /// Ordering over `client` with a policy.
    pub fn with_policy(client: Client, policy: ViolationPolicy) -> OrderedKv {
        OrderedKv {
            client,
            policy,
            state: Arc::default(),
        }
    }

    /// A view over another handle of the client (another timeout, a pinned endpoint, ...)
    /// sharing the highest revision seen.
    pub fn with_client(&self, client: Client) -> OrderedKv {
        OrderedKv {
            client,
            policy: self.policy.clone(),
            state: self.state.clone(),
        }
    }

    /// A view whose requests go to one endpoint first (see [`Client::on_endpoint`]), sharing
    /// the highest revision seen. Violations are still resolved on the configured endpoints.
    pub fn on_endpoint(&self, endpoint: &str) -> Result<OrderedKv, Error> {
        Ok(self.with_client(self.client.on_endpoint(endpoint)?))
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The highest revision seen so far.
    pub fn previous_revision(&self) -> i64 {
        self.state.previous.load(Ordering::Acquire)
    }

    /// How many stale answers were seen so far (by every view sharing this state).
    pub fn violations(&self) -> u64 {
        self.state.violations.load(Ordering::Relaxed)
    }

    fn record(&self, revision: i64) {
        self.state.previous.fetch_max(revision, Ordering::AcqRel);
    }

    /// Runs a read-only request until an answer is not older than the highest revision seen
    /// when it started.
    async fn ordered<R>(
        &self,
        request: R,
        header: fn(&R::Response) -> &Option<ResponseHeader>,
    ) -> Result<R::Response, OrderingError>
    where
        R: UnaryRpc + Clone + Send + 'static,
    {
        let previous = self.previous_revision();
        let mut client = self.client.clone();
        let mut endpoints: Option<Vec<Endpoint>> = None;
        let mut count = 0u32;
        loop {
            let resp = client.call(request.clone()).await?;
            let received = revision(header(&resp));
            if received >= previous {
                self.record(received);
                return Ok(resp);
            }
            count += 1;
            self.state.violations.fetch_add(1, Ordering::Relaxed);
            let stale = OrderingError::NoGreaterRevision { previous, received };
            match &self.policy {
                ViolationPolicy::Fail => return Err(stale),
                ViolationPolicy::Custom(handler) => {
                    handler(&Violation {
                        previous,
                        received,
                        member_id: member(header(&resp)),
                        count,
                    })?;
                    client = self.client.clone();
                }
                ViolationPolicy::SwitchEndpoint => {
                    if endpoints.is_none() {
                        endpoints = Some(self.client.endpoints().await?);
                    }
                    let list = endpoints.as_deref().unwrap_or_default();
                    match list.get(count as usize - 1) {
                        Some(next) => client = self.client.on_endpoint(&next.to_string())?,
                        None => return Err(stale),
                    }
                }
            }
        }
    }

    /// Reads, never returning an answer older than one returned before (Go's ordering
    /// `Get`).
    pub async fn get(&self, get: impl Into<Get>) -> Result<RangeResponse, OrderingError> {
        let request = get.into().build()?;
        self.ordered(request, |r: &RangeResponse| &r.header).await
    }

    /// Runs a transaction. A read-only one is checked and retried like a read; one with
    /// writes is sent once and its revision recorded.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, OrderingError> {
        let request = txn.build()?;
        if has_writes(&request) {
            let resp = self.client.call(request).await?;
            self.record(revision(&resp.header));
            return Ok(resp);
        }
        self.ordered(request, |r: &TxnResponse| &r.header).await
    }

    /// Writes a key and records the revision.
    pub async fn put(&self, put: impl Into<Put>) -> Result<PutResponse, OrderingError> {
        let resp = self.client.put(put).await?;
        self.record(revision(&resp.header));
        Ok(resp)
    }

    /// Deletes a key or range and records the revision.
    pub async fn delete(
        &self,
        delete: impl Into<Delete>,
    ) -> Result<DeleteRangeResponse, OrderingError> {
        let resp = self.client.delete(delete).await?;
        self.record(revision(&resp.header));
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_proto_core::rpc::kv::{Compare, CompareOp};

    #[test]
    fn write_detection_looks_into_nested_txns() {
        let read = Txn::new()
            .when([Compare::version("a", CompareOp::Equal, 0)])
            .and_then([Get::new("a")])
            .or_else([Txn::new().and_then([Get::new("b")])]);
        assert!(!has_writes(&read.build().unwrap()));
        let write = Txn::new().or_else([Txn::new().and_then([Put::new("b", "v")])]);
        assert!(has_writes(&write.build().unwrap()));
    }

    #[test]
    fn the_error_says_what_happened() {
        let e = OrderingError::NoGreaterRevision {
            previous: 10,
            received: 4,
        };
        assert!(e.to_string().starts_with(NO_GREATER_REV_MESSAGE));
        assert!(e.to_string().contains("previous 10, received 4"));
    }
}
