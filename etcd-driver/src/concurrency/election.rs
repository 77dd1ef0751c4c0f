//! Leader election (Go's `concurrency.Election`).

use std::collections::VecDeque;

use bytes::Bytes;
use etcd_proto_core::proto::etcdserverpb::ResponseHeader;
use etcd_proto_core::proto::mvccpb::KeyValue;
use etcd_proto_core::proto::v3electionpb::LeaderKey;
use etcd_proto_core::rpc::kv::{Compare, CompareOp, Delete, Get, Put, Txn};
use etcd_proto_core::rpc::IntoBytes;
use etcd_proto_core::{Error, Watch};

use super::mutex::wait_predecessors;
use super::{
    concat, fire_and_forget, is_delete, is_put, lease_key, range_at, start_watch, ConcurrencyError,
    Session,
};
use crate::{Client, Watcher};

/// A leader's key-value and the header of the response that carried it (Go returns a
/// `GetResponse` whose only key-value is the leader's).
#[derive(Debug, Clone, PartialEq)]
pub struct Proclamation {
    /// The header of the read or watch response.
    pub header: ResponseHeader,
    /// The leader's key; its value is the proclamation.
    pub kv: KeyValue,
}

impl Proclamation {
    /// The proclaimed value.
    pub fn value(&self) -> &Bytes {
        &self.kv.value
    }

    /// The leader's key.
    pub fn key(&self) -> &Bytes {
        &self.kv.key
    }
}

#[derive(Debug, Clone)]
struct Leadership {
    key: Bytes,
    rev: i64,
    lease: i64,
}

/// Resigns from `Drop` unless disarmed: the clean-up of a cancelled campaign.
struct ResignOnDrop {
    client: Client,
    leadership: Option<Leadership>,
}

impl Drop for ResignOnDrop {
    fn drop(&mut self) {
        if let Some(l) = self.leadership.take() {
            fire_and_forget(&self.client, resign_txn(&l));
        }
    }
}

fn resign_txn(l: &Leadership) -> Txn {
    Txn::new()
        .when([Compare::create_revision(
            l.key.clone(),
            CompareOp::Equal,
            l.rev,
        )])
        .and_then([Delete::new(l.key.clone())])
}

/// One candidate of a leader election: the leader is the candidate whose key under the
/// prefix was created first, and its value is the leader's proclamation (Go's
/// `concurrency.Election`; the keys are those of Go and the server's election service).
#[derive(Debug)]
pub struct Election {
    session: Session,
    name: Bytes,
    prefix: Bytes,
    leader: Option<Leadership>,
    header: Option<ResponseHeader>,
}

impl Election {
    /// The election named `name` (keys under `name/`; Go's `NewElection`).
    pub fn new(session: &Session, name: impl IntoBytes) -> Election {
        let name = name.into_bytes();
        Election {
            session: session.clone(),
            prefix: concat(&name, b"/"),
            name,
            leader: None,
            header: None,
        }
    }

    /// Takes over a leadership won earlier, e.g. by another process of the same session or
    /// through the election service (Go's `ResumeElection`). Proclamations then put with this
    /// session's lease. Unlike Go, the prefix is `name/` as for [`Election::new`].
    pub fn resume(session: &Session, leader: LeaderKey) -> Election {
        let mut election = Election::new(session, leader.name);
        election.leader = Some(Leadership {
            key: leader.key,
            rev: leader.rev,
            lease: session.lease(),
        });
        election
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The election name.
    pub fn name(&self) -> &Bytes {
        &self.name
    }

    /// This candidate's key while it leads (Go's `Key`).
    pub fn key(&self) -> Option<&Bytes> {
        self.leader.as_ref().map(|l| &l.key)
    }

    /// The create revision of this candidate's key while it leads (Go's `Rev`).
    pub fn rev(&self) -> Option<i64> {
        self.leader.as_ref().map(|l| l.rev)
    }

    /// The leadership as the election service's handle, for its `Proclaim` and `Resign`.
    pub fn leader_key(&self) -> Option<LeaderKey> {
        self.leader.as_ref().map(|l| LeaderKey {
            name: self.name.clone(),
            key: l.key.clone(),
            rev: l.rev,
            lease: l.lease,
        })
    }

    /// The header of the last response that changed the leadership (Go's `Header`).
    pub fn header(&self) -> Option<&ResponseHeader> {
        self.header.as_ref()
    }

    /// Puts this candidate's key with `value` and waits until it leads, that is until every
    /// key created before it is gone, watching only the one just before it (Go's
    /// `Campaign`). A session that campaigns again keeps its place (and proclaims `value`
    /// if it differs).
    ///
    /// Fails with [`ConcurrencyError::SessionExpired`] as soon as the session's key is
    /// deleted or its lease is lost (Go only notices later, if at all). When the future is
    /// dropped while waiting, the candidacy is withdrawn (Go's `Resign` on a cancelled
    /// context); after any other failure the key stays, so campaigning again with the same
    /// session resumes the place in line (as in Go).
    pub async fn campaign(&mut self, value: impl IntoBytes) -> Result<(), ConcurrencyError> {
        let value = value.into_bytes();
        let lease = self.session.lease();
        let key = lease_key(&self.prefix, lease);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([Put::new(key.clone(), value.clone()).lease(lease)])
            .or_else([Get::new(key.clone())]);
        let resp = self
            .session
            .client()
            .txn(txn)
            .await
            .map_err(ConcurrencyError::from_session_call)?;
        let header = resp.header.unwrap_or_default();
        let mut leadership = Leadership {
            key: key.clone(),
            rev: header.revision,
            lease,
        };
        if !resp.succeeded {
            let existing = range_at(&resp, 0)
                .and_then(|r| r.kvs.first())
                .ok_or_else(|| {
                    Error::Protocol(
                        "campaign transaction: the existing key was not returned".into(),
                    )
                })?;
            leadership.rev = existing.create_revision;
            let differs = existing.value != value;
            self.leader = Some(leadership.clone());
            if differs {
                if let Err(e) = self.proclaim(value).await {
                    let _ = self.resign().await;
                    return Err(e);
                }
            }
        }
        self.leader = Some(leadership.clone());
        let mut guard = ResignOnDrop {
            client: self.session.client().clone(),
            leadership: Some(leadership.clone()),
        };
        let waited =
            wait_predecessors(&self.session, &self.prefix, &leadership.key, leadership.rev).await;
        guard.leadership = None;
        match waited {
            Ok(header) => {
                self.header = Some(header);
                Ok(())
            }
            Err(e) => {
                self.leader = None;
                Err(e)
            }
        }
    }

    /// Replaces the leader's value, guarded by the leadership: fails with
    /// [`ConcurrencyError::NotLeader`] when this candidate does not lead, or no longer does
    /// (its key was deleted or re-created), after which it no longer counts as leader (Go's
    /// `Proclaim`).
    pub async fn proclaim(&mut self, value: impl IntoBytes) -> Result<(), ConcurrencyError> {
        let Some(l) = self.leader.clone() else {
            return Err(ConcurrencyError::NotLeader);
        };
        let txn = Txn::new()
            .when([Compare::create_revision(
                l.key.clone(),
                CompareOp::Equal,
                l.rev,
            )])
            .and_then([Put::new(l.key.clone(), value).lease(l.lease)]);
        let resp = self
            .session
            .client()
            .txn(txn)
            .await
            .map_err(ConcurrencyError::from_session_call)?;
        if !resp.succeeded {
            self.leader = None;
            return Err(ConcurrencyError::NotLeader);
        }
        self.header = resp.header;
        Ok(())
    }

    /// Gives up the leadership, deleting the key if it is still this leadership's; nothing
    /// to do when not leading (Go's `Resign`).
    pub async fn resign(&mut self) -> Result<(), ConcurrencyError> {
        let Some(l) = self.leader.take() else {
            return Ok(());
        };
        let resp = self.session.client().txn(resign_txn(&l)).await?;
        self.header = resp.header;
        Ok(())
    }

    /// The current leader's key-value, or [`ConcurrencyError::NoLeader`] (Go's `Leader`).
    pub async fn leader(&self) -> Result<Proclamation, ConcurrencyError> {
        let resp = self
            .session
            .client()
            .get(Get::new(self.prefix.clone()).first_create())
            .await?;
        let header = resp.header.unwrap_or_default();
        match resp.kvs.into_iter().next() {
            Some(kv) => Ok(Proclamation { header, kv }),
            None => Err(ConcurrencyError::NoLeader),
        }
    }

    /// Every leader value from now on (Go's `Observe`); see [`Observer`].
    pub fn observe(&self) -> Observer {
        Observer::with_prefix(self.session.client(), self.prefix.clone())
    }
}

enum ObserveState {
    /// Read the current leader.
    Read,
    /// Nobody leads: wait for the first key put under the prefix.
    AwaitFirst(Watcher),
    /// Start following the leader's key from this revision.
    StartFollow { key: Bytes, from: i64 },
    /// Following the leader's key: every put is a proclamation, a delete ends the reign.
    Follow(Watcher),
}

/// The leader values of an election as they change (Go's `Observe`), read with
/// [`Observer::next`].
///
/// It starts with the current leader's value, read (not replayed from history, so a leader
/// whose key is older than the compaction revision is seen like any other), then watches the
/// leader's key from that read on: every put is a new value, and when the key is deleted the
/// next leader is read (or, with nobody campaigning, awaited). The same key-value is never
/// yielded twice in a row. A watch whose history was compacted away is resumed by reading the
/// leader again. The stream ends with `Some(Err(..))` when a call fails, then `None`.
///
/// Needs no session: [`Observer::new`] observes with a bare client.
pub struct Observer {
    client: Client,
    prefix: Bytes,
    state: ObserveState,
    pending: VecDeque<Proclamation>,
    last: Option<(Bytes, i64)>,
    ended: bool,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("prefix", &self.prefix)
            .field("pending", &self.pending.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Observer {
    /// Observes the election named `name`.
    pub fn new(client: &Client, name: impl IntoBytes) -> Observer {
        Observer::with_prefix(client, concat(&name.into_bytes(), b"/"))
    }

    fn with_prefix(client: &Client, prefix: Bytes) -> Observer {
        Observer {
            client: client.clone(),
            prefix,
            state: ObserveState::Read,
            pending: VecDeque::new(),
            last: None,
            ended: false,
        }
    }

    /// The next leader value. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Option<Result<Proclamation, ConcurrencyError>> {
        loop {
            if let Some(p) = self.pending.pop_front() {
                return Some(Ok(p));
            }
            if self.ended {
                return None;
            }
            if let Err(e) = self.step().await {
                self.ended = true;
                self.state = ObserveState::Read;
                return Some(Err(e.into()));
            }
        }
    }

    fn emit(&mut self, p: Proclamation) {
        let id = (p.kv.key.clone(), p.kv.mod_revision);
        if self.last.as_ref() != Some(&id) {
            self.last = Some(id);
            self.pending.push_back(p);
        }
    }

    /// One await and the state change it leads to (so a dropped `next` loses nothing).
    async fn step(&mut self) -> Result<(), Error> {
        match &mut self.state {
            ObserveState::Read => {
                let resp = self
                    .client
                    .get(Get::new(self.prefix.clone()).first_create())
                    .await?;
                let header = resp.header.unwrap_or_default();
                let from = header.revision + 1;
                match resp.kvs.into_iter().next() {
                    Some(kv) => {
                        self.state = ObserveState::StartFollow {
                            key: kv.key.clone(),
                            from,
                        };
                        self.emit(Proclamation { header, kv });
                    }
                    None => {
                        let watch = Watch::new(self.prefix.clone())
                            .prefix()
                            .start_revision(from);
                        if let Some(watcher) = start_watch(&self.client, watch).await? {
                            self.state = ObserveState::AwaitFirst(watcher);
                        }
                    }
                }
            }
            ObserveState::StartFollow { key, from } => {
                let watch = Watch::new(key.clone()).start_revision(*from);
                self.state = match start_watch(&self.client, watch).await? {
                    Some(watcher) => ObserveState::Follow(watcher),
                    None => ObserveState::Read,
                };
            }
            ObserveState::AwaitFirst(watcher) => match watcher.next().await {
                Some(Ok(resp)) => {
                    let first = resp.events.into_iter().find(is_put).and_then(|e| e.kv);
                    if let Some(kv) = first {
                        let header = ResponseHeader {
                            revision: kv.mod_revision,
                            ..resp.header
                        };
                        self.state = ObserveState::StartFollow {
                            key: kv.key.clone(),
                            from: kv.mod_revision + 1,
                        };
                        self.emit(Proclamation { header, kv });
                    }
                }
                Some(Err(Error::WatchCompacted { .. })) => self.state = ObserveState::Read,
                Some(Err(e)) => return Err(e),
                None => return Err(Error::ClientClosed),
            },
            ObserveState::Follow(watcher) => match watcher.next().await {
                Some(Ok(resp)) => {
                    let mut deleted = false;
                    for event in resp.events {
                        if is_delete(&event) {
                            deleted = true;
                            break;
                        }
                        if let Some(kv) = event.kv {
                            self.emit(Proclamation {
                                header: resp.header,
                                kv,
                            });
                        }
                    }
                    if deleted {
                        self.state = ObserveState::Read;
                    }
                }
                Some(Err(Error::WatchCompacted { .. })) => self.state = ObserveState::Read,
                Some(Err(e)) => return Err(e),
                None => return Err(Error::ClientClosed),
            },
        }
        Ok(())
    }
}
