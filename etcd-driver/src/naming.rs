//! Service endpoints stored in etcd (Go's `naming/endpoints`): an [`EndpointManager`] keeps
//! the endpoints of a *target* (a service name) under keys `TARGET/...`, each value the JSON
//! the Go client writes (`{"Op":0,"Addr":"10.0.0.1:80","Metadata":...}`), so Go and Rust
//! processes can share one registry.
//!
//! ```no_run
//! # async fn demo(client: etcd_driver::Client) -> Result<(), etcd_driver::Error> {
//! use etcd_driver::naming::{EndpointChange, EndpointInfo, EndpointManager};
//!
//! let manager = EndpointManager::new(client, "my-service")?;
//! manager.add_endpoint("my-service/a", EndpointInfo::new("10.0.0.1:80")).await?;
//! // Atomically replace b by c: watchers see one batch with both changes.
//! manager
//!     .update([
//!         EndpointChange::delete("my-service/b"),
//!         EndpointChange::add("my-service/c", EndpointInfo::new("10.0.0.3:80")),
//!     ])
//!     .await?;
//! let mut updates = manager.watch().await?;
//! while let Some(batch) = updates.next().await {
//!     for update in batch? { println!("{:?} {}", update.op, update.key); }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Differences from Go
//!
//! * Go's watch channel sends one batch per *watch response*, which may hold several
//!   revisions (several atomic updates) when the watcher catches up; here every batch is
//!   exactly one revision, i.e. one [`EndpointManager::update`] (or one other write).
//! * [`EndpointManager::list`] lists `TARGET/` like the watch does (Go's `List` lists the bare
//!   prefix `TARGET`, so target `svc` also lists `svc2/...`).
//! * A watch error is returned as the last item instead of closing the channel silently.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use etcd_proto_core::proto::etcdserverpb::{
    request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, TxnResponse,
};
use etcd_proto_core::proto::mvccpb::{event::EventType, Event};
use etcd_proto_core::rpc::kv::prefix_range_end;
use etcd_proto_core::{Error, InvalidRequest, Watch};
use serde_json::Value;

use crate::watch::Watcher;
use crate::Client;

/// The JSON crate of [`EndpointInfo::metadata`], re-exported so metadata can be built
/// without depending on it directly.
pub use serde_json;

/// An endpoint: an address and optional metadata (any JSON value; `Null` when absent).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EndpointInfo {
    /// The address, e.g. `10.0.0.1:80`.
    pub addr: String,
    /// Free-form metadata, stored as JSON.
    pub metadata: Value,
}

impl EndpointInfo {
    /// An endpoint at `addr` without metadata.
    pub fn new(addr: impl Into<String>) -> EndpointInfo {
        EndpointInfo {
            addr: addr.into(),
            metadata: Value::Null,
        }
    }

    /// With metadata.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// The stored value: the JSON of Go's internal `Update{Op: Add, Addr, Metadata}`, byte
    /// for byte as Go's `encoding/json` writes it (fields in that order).
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"Op":0,"Addr":{},"Metadata":{}}}"#,
            Value::String(self.addr.clone()),
            self.metadata
        )
    }

    /// Decodes a stored value; `None` if it is not what Go (or this module) writes. As Go's
    /// `encoding/json`, field names match in any case.
    pub fn from_json(value: &[u8]) -> Option<EndpointInfo> {
        let Value::Object(fields) = serde_json::from_slice::<Value>(value).ok()? else {
            return None;
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let addr = match field("Addr") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(_) => return None,
        };
        Some(EndpointInfo {
            addr,
            metadata: field("Metadata").cloned().unwrap_or(Value::Null),
        })
    }
}

/// What an update does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// The endpoint was added or changed.
    Add,
    /// The endpoint was removed.
    Delete,
}

/// One change seen by a watcher (Go's `endpoints.Update`).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointUpdate {
    /// Add or delete.
    pub op: Operation,
    /// The endpoint's key (`TARGET/...`).
    pub key: String,
    /// The endpoint (empty for a delete).
    pub endpoint: EndpointInfo,
}

/// One change to apply with [`EndpointManager::update`] (Go's `UpdateWithOpts`).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointChange {
    op: Operation,
    key: String,
    endpoint: EndpointInfo,
    lease: i64,
}

impl EndpointChange {
    /// Adds (or replaces) the endpoint at `key`.
    pub fn add(key: impl Into<String>, endpoint: EndpointInfo) -> EndpointChange {
        EndpointChange {
            op: Operation::Add,
            key: key.into(),
            endpoint,
            lease: 0,
        }
    }

    /// Removes the endpoint at `key`.
    pub fn delete(key: impl Into<String>) -> EndpointChange {
        EndpointChange {
            op: Operation::Delete,
            key: key.into(),
            endpoint: EndpointInfo::default(),
            lease: 0,
        }
    }

    /// Attaches an added endpoint to a lease (Go's `WithLease` option): it disappears with
    /// the lease.
    pub fn lease(mut self, lease: i64) -> Self {
        self.lease = lease;
        self
    }
}

/// Manages the endpoints of one target; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct EndpointManager {
    client: Client,
    target: String,
}

impl EndpointManager {
    /// A manager of `target`'s endpoints (keys `target/...`); an empty target is refused.
    pub fn new(client: Client, target: impl Into<String>) -> Result<EndpointManager, Error> {
        let target = target.into();
        if target.is_empty() {
            return Err(InvalidRequest::Invalid("endpoints: invalid target".into()).into());
        }
        Ok(EndpointManager { client, target })
    }

    /// The target.
    pub fn target(&self) -> &str {
        &self.target
    }

    fn key_prefix(&self) -> String {
        format!("{}/", self.target)
    }

    /// Applies every change in one transaction: all or none, one revision. Keys must start
    /// with `target/`.
    pub async fn update(
        &self,
        changes: impl IntoIterator<Item = EndpointChange>,
    ) -> Result<TxnResponse, Error> {
        let prefix = self.key_prefix();
        let mut ops = Vec::new();
        for change in changes {
            if !change.key.starts_with(&prefix) {
                return Err(InvalidRequest::Invalid(format!(
                    "endpoints: endpoint key should be prefixed with '{prefix}' got: '{}'",
                    change.key
                ))
                .into());
            }
            let key = Bytes::from(change.key);
            let request = match change.op {
                Operation::Add => request_op::Request::RequestPut(PutRequest {
                    key,
                    value: Bytes::from(change.endpoint.to_json()),
                    lease: change.lease,
                    ..Default::default()
                }),
                Operation::Delete => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    key,
                    ..Default::default()
                }),
            };
            ops.push(RequestOp {
                request: Some(request),
            });
        }
        self.client
            .call(TxnRequest {
                compare: Vec::new(),
                success: ops,
                failure: Vec::new(),
            })
            .await
    }

    /// Adds (or replaces) one endpoint.
    pub async fn add_endpoint(
        &self,
        key: impl Into<String>,
        endpoint: EndpointInfo,
    ) -> Result<(), Error> {
        self.update([EndpointChange::add(key, endpoint)]).await?;
        Ok(())
    }

    /// Adds (or replaces) one endpoint attached to `lease`.
    pub async fn add_endpoint_with_lease(
        &self,
        key: impl Into<String>,
        endpoint: EndpointInfo,
        lease: i64,
    ) -> Result<(), Error> {
        self.update([EndpointChange::add(key, endpoint).lease(lease)])
            .await?;
        Ok(())
    }

    /// Removes one endpoint.
    pub async fn delete_endpoint(&self, key: impl Into<String>) -> Result<(), Error> {
        self.update([EndpointChange::delete(key)]).await?;
        Ok(())
    }

    fn range(&self) -> RangeRequest {
        let prefix = Bytes::from(self.key_prefix());
        RangeRequest {
            range_end: prefix_range_end(&prefix),
            key: prefix,
            serializable: true,
            ..Default::default()
        }
    }

    /// Every endpoint, by key (a serializable read, as Go's; undecodable values are skipped).
    pub async fn list(&self) -> Result<BTreeMap<String, EndpointInfo>, Error> {
        let resp = self.client.call(self.range()).await?;
        Ok(resp
            .kvs
            .iter()
            .filter_map(|kv| {
                let endpoint = EndpointInfo::from_json(&kv.value)?;
                Some((String::from_utf8_lossy(&kv.key).into_owned(), endpoint))
            })
            .collect())
    }

    /// Watches the endpoints: the first batch holds every current endpoint as an add (none if
    /// there is none), then one batch per revision that changed any.
    pub async fn watch(&self) -> Result<EndpointWatcher, Error> {
        let resp = self.client.call(self.range()).await?;
        let revision = resp.header.map(|h| h.revision).unwrap_or_default();
        let initial: Vec<EndpointUpdate> = resp
            .kvs
            .iter()
            .filter_map(|kv| {
                Some(EndpointUpdate {
                    op: Operation::Add,
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    endpoint: EndpointInfo::from_json(&kv.value)?,
                })
            })
            .collect();
        let watcher = self
            .client
            .watch(
                Watch::new(self.key_prefix())
                    .prefix()
                    .start_revision(revision + 1),
            )
            .await?;
        let mut pending = VecDeque::new();
        if !initial.is_empty() {
            pending.push_back(initial);
        }
        Ok(EndpointWatcher {
            watcher,
            pending,
            done: false,
        })
    }
}

fn update_of(event: &Event) -> Option<EndpointUpdate> {
    let kv = event.kv.as_ref()?;
    let key = String::from_utf8_lossy(&kv.key).into_owned();
    match EventType::try_from(event.r#type) {
        Ok(EventType::Put) => Some(EndpointUpdate {
            op: Operation::Add,
            key,
            endpoint: EndpointInfo::from_json(&kv.value)?,
        }),
        Ok(EventType::Delete) => Some(EndpointUpdate {
            op: Operation::Delete,
            key,
            endpoint: EndpointInfo::default(),
        }),
        Err(_) => None,
    }
}

/// Splits events into one batch per revision, dropping undecodable puts and empty batches.
fn batches(events: &[Event]) -> Vec<Vec<EndpointUpdate>> {
    let revision = |e: &Event| e.kv.as_ref().map(|kv| kv.mod_revision).unwrap_or_default();
    let mut out: Vec<Vec<EndpointUpdate>> = Vec::new();
    let mut current = None;
    let mut batch = Vec::new();
    for event in events {
        let rev = revision(event);
        if current != Some(rev) {
            if !batch.is_empty() {
                out.push(std::mem::take(&mut batch));
            }
            current = Some(rev);
        }
        batch.extend(update_of(event));
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// The endpoint updates of a target, one batch per atomic update; see
/// [`EndpointManager::watch`]. Dropping it stops the watch.
#[derive(Debug)]
pub struct EndpointWatcher {
    watcher: Watcher,
    pending: VecDeque<Vec<EndpointUpdate>>,
    done: bool,
}

impl EndpointWatcher {
    /// The next batch; `Some(Err(..))` once if the watch failed, then `None`.
    pub async fn next(&mut self) -> Option<Result<Vec<EndpointUpdate>, Error>> {
        loop {
            if let Some(batch) = self.pending.pop_front() {
                return Some(Ok(batch));
            }
            if self.done {
                return None;
            }
            match self.watcher.next().await {
                Some(Ok(resp)) => self.pending.extend(batches(&resp.events)),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                None => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_proto_core::proto::mvccpb::KeyValue;

    #[test]
    fn json_is_what_go_writes_and_reads() {
        let e = EndpointInfo::new("10.0.0.1:80").metadata(serde_json::json!({"zone": "a"}));
        let text = e.to_json();
        assert_eq!(
            text,
            r#"{"Op":0,"Addr":"10.0.0.1:80","Metadata":{"zone":"a"}}"#
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["Op"], 0);
        assert_eq!(v["Addr"], "10.0.0.1:80");
        assert_eq!(v["Metadata"]["zone"], "a");
        assert_eq!(EndpointInfo::from_json(text.as_bytes()), Some(e));
        // Go's decoder matches field names in any case; missing metadata is null.
        let go = EndpointInfo::from_json(br#"{"op":0,"addr":"h:1"}"#).unwrap();
        assert_eq!(go, EndpointInfo::new("h:1"));
        assert_eq!(EndpointInfo::from_json(b"not json"), None);
        assert_eq!(EndpointInfo::from_json(br#"{"Addr":5}"#), None);
    }

    #[test]
    fn events_are_batched_by_revision() {
        let ev = |t: EventType, key: &str, rev: i64| Event {
            r#type: t as i32,
            kv: Some(KeyValue {
                key: Bytes::from(key.to_string()),
                mod_revision: rev,
                value: Bytes::from(EndpointInfo::new(key).to_json()),
                ..Default::default()
            }),
            prev_kv: None,
        };
        let events = [
            ev(EventType::Put, "t/a", 5),
            ev(EventType::Delete, "t/b", 6),
            ev(EventType::Put, "t/c", 6),
            ev(EventType::Put, "t/d", 7),
        ];
        let b = batches(&events);
        let keys: Vec<Vec<&str>> = b
            .iter()
            .map(|batch| batch.iter().map(|u| u.key.as_str()).collect())
            .collect();
        assert_eq!(keys, [vec!["t/a"], vec!["t/b", "t/c"], vec!["t/d"]]);
        assert_eq!(b[1][0].op, Operation::Delete);
    }
}
