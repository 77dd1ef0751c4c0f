//! Watches: many watchers multiplexed on one bidirectional Watch stream per group, exact
//! resume after any failure, fragment reassembly, compaction and cancel reasons as typed
//! errors, progress, and flow control that bounds memory per watcher.
//!
//! # How a watcher is matched to its create request
//!
//! Every watcher gets a client-chosen watch ID (`WatchCreateRequest.watch_id`, honoured by
//! etcd 3.4 and later), never reused, so events can never be confused between an old and a
//! new watcher. The server answers creates in request order, and a rejected create comes back
//! with ID -1, so rejections are matched to the oldest create still waiting for its answer.
//!
//! # Resume
//!
//! Each watcher keeps `next_rev`, the first revision it has not seen: the last delivered
//! event's mod revision + 1, or for a watcher that saw no event yet the Created (or progress)
//! header revision + 1. (Go resumes at the Created revision itself, which can deliver an
//! event older than the watch after a reconnect; we do not.) After a stream or connection
//! failure every watcher is re-created at `next_rev` on a new stream, on another endpoint when
//! there is one; repeated Created responses are hidden, and any event below `next_rev` is
//! dropped, so each event is delivered exactly once, in order.
//!
//! # Shared server watches
//!
//! Identical watches (same range and options, from "now"; see [`Watch::coalesce`]) share one
//! server watch. The first is the leader: it alone is on the wire. The others follow it: they
//! get a copy of each of its responses, filtered by their own `next_rev`, and start after the
//! later of the leader's position and the highest revision the client has seen in any
//! response. When the leader is cancelled, the follower furthest behind takes over its wire
//! ID, stream membership and pending create; an error that ends the server watch ends every
//! follower with it.
//!
//! # Memory and the head-of-line trade-off
//!
//! A watcher may hold at most `buffer_bytes` of delivered but unconsumed responses. Beyond
//! that, the core stops releasing HTTP/2 flow-control capacity for the stream, so the server
//! stops sending and nothing is buffered without bound and nothing is dropped. The price: all
//! watchers sharing that stream wait for the slowest one. A watcher that must not wait for
//! others (or hold them up) can ask for its own stream with [`Watch::own_stream`].

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request::RequestUnion, ResponseHeader,
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    WatchResponse as PbWatchResponse,
};
use etcd_proto::mvccpb;
use http::{HeaderMap, StatusCode};
use prost::Message;

use super::stream_slot::{reopen_pause, StreamSlot};
use super::{CallOptions, Core, EndpointId, Event, StreamId, StreamOwner, Transmit};
use crate::error::{Error, EtcdErrorKind};
use crate::grpc::encode_message;
use crate::idhash::{IdHashMap, SeqHashMap};
use crate::rpc::kv::{End, KeyRange};
use crate::rpc::IntoBytes;
use crate::status::{Code, Status};
use crate::watch_events::Events;

const WATCH_PATH: &str = "/etcdserverpb.Watch/Watch";

/// Default bound of delivered but unconsumed responses per watcher.
pub const DEFAULT_WATCH_BUFFER: usize = 4 << 20;

/// A watcher started with [`Core::watch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId(pub u64);

/// Which stream a watcher shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum GroupKey {
    Shared { require_leader: bool },
    Own(WatchId),
}

/// A watch request, with the Go client's options.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Watch {
    range: KeyRange,
    start_revision: i64,
    progress_notify: bool,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    created_notify: bool,
    require_leader: bool,
    own_stream: bool,
    buffer_bytes: usize,
    resync: bool,
    coalesce: bool,
}

impl Watch {
    /// Watches `key`.
    pub fn new(key: impl IntoBytes) -> Watch {
        Watch {
            range: KeyRange::new(key.into_bytes()),
            start_revision: 0,
            progress_notify: false,
            no_put: false,
            no_delete: false,
            prev_kv: false,
            fragment: false,
            created_notify: false,
            require_leader: false,
            own_stream: false,
            buffer_bytes: DEFAULT_WATCH_BUFFER,
            resync: false,
            coalesce: true,
        }
    }

    /// Beyond Go: when the watcher's history is compacted away (at creation or while it was
    /// disconnected), re-read the watched range at the current revision, deliver it as one
    /// [`WatchResponseKind::Snapshot`] (every key as a PUT event), and keep watching from
    /// there, instead of ending with [`Error::WatchCompacted`]. A cache built on the watch
    /// replaces its contents with the snapshot and stays correct.
    pub fn resync_on_compaction(mut self) -> Self {
        self.resync = true;
        self
    }

    /// Watches every key with the key as prefix (empty key: everything).
    pub fn prefix(mut self) -> Self {
        self.range.prefix();
        self
    }

    /// Watches every key `>=` the key.
    pub fn from_key(mut self) -> Self {
        self.range.set_from_key();
        self
    }

    /// Watches `[key, end)`.
    pub fn range_end(mut self, end: impl IntoBytes) -> Self {
        self.range.end = End::Range(end.into_bytes());
        self
    }

    /// Watches exactly `[key, range_end)` (an empty `range_end`: the key alone), replacing
    /// the key and any prefix / from-key / range choice. For layers that compute the range
    /// themselves, such as a namespace.
    pub fn key_range(mut self, key: impl IntoBytes, range_end: impl IntoBytes) -> Self {
        self.range = KeyRange::new(key.into_bytes());
        let end = range_end.into_bytes();
        if !end.is_empty() {
            self.range.end = End::Range(end);
        }
        self
    }

    /// Starts at this revision (inclusive); 0 (the default) means "after now".
    pub fn start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }

    /// Asks the server for periodic progress notifications while idle.
    pub fn progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }

    /// Leaves out PUT events (server-side).
    pub fn no_put(mut self) -> Self {
        self.no_put = true;
        self
    }

    /// Leaves out DELETE events (server-side).
    pub fn no_delete(mut self) -> Self {
        self.no_delete = true;
        self
    }

    /// Includes each event's previous key-value.
    pub fn prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// Lets the server split huge revisions; the client reassembles them.
    pub fn fragment(mut self) -> Self {
        self.fragment = true;
        self
    }

    /// Delivers the Created response too.
    pub fn created_notify(mut self) -> Self {
        self.created_notify = true;
        self
    }

    /// Ends the watcher with a typed `NoLeader` error when its member loses its leader.
    pub fn require_leader(mut self) -> Self {
        self.require_leader = true;
        self
    }

    /// Beyond Go: whether this watcher may share one server watch with identical ones (same
    /// range and options, all from "now", none with its own stream or resync). On by
    /// default. The server then sends each change once, and every sharer gets the same
    /// events as one shared allocation (etcd's gRPC proxy calls this coalescing): many
    /// watchers of the same keys in one process cost the server and the client about what
    /// one costs. The difference a sharer can see: it is created at the revision the shared
    /// watch reached, or after the last revision this client saw in any response if that is
    /// later, rather than at the server's current revision, so it may also report changes
    /// committed by others just before it was asked for; every event after its
    /// [`created_revision`](crate::Event::WatchCreated) is delivered, once, in order, as
    /// always. `coalesce(false)` gives the watcher a server watch of its own.
    pub fn coalesce(mut self, share: bool) -> Self {
        self.coalesce = share;
        self
    }

    /// Puts this watcher on a stream of its own (no head-of-line blocking with others).
    pub fn own_stream(mut self) -> Self {
        self.own_stream = true;
        self
    }

    /// Bound of delivered but unconsumed response bytes before the stream is paused.
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes.max(1);
        self
    }
}

/// What a watch response is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchResponseKind {
    /// Events (one revision or more, fragments already merged).
    Events,
    /// The watcher was created (only with [`Watch::created_notify`]).
    Created,
    /// Progress: for a watcher's own progress notification, every event up to the header
    /// revision has been delivered. The answer to [`Core::request_progress`] is broadcast to
    /// every watcher of the stream; servers before etcd 3.5.8 (issue 15220) may send it ahead
    /// of events at or below its revision, so the core does not move resume points on it.
    Progress,
    /// The whole watched range at the header revision, as PUT events (after compaction in
    /// resync mode): replace what you built so far; events after it follow.
    Snapshot,
}

/// One response delivered to a watcher.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchResponse {
    /// What this response is.
    pub kind: WatchResponseKind,
    /// The header (`revision`: the store revision the response reflects).
    pub header: ResponseHeader,
    /// The events, in revision order (shared, not copied, between coalesced watchers).
    pub events: Events,
}

// Fields read for every delivered response come first, next to the map key, so a fan-out
// to many followers touches one cache line per follower; the rarely read parts are boxed.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Watcher {
    /// First revision not yet delivered (0: none promised yet).
    next_rev: i64,
    buffered: usize,
    limit: usize,
    /// Created at least once (later Created responses are resumes).
    announced: bool,
    /// Over its buffer limit (counted in the group's `over_limit`).
    over: bool,
    /// Created on the current stream.
    created: bool,
    created_notify: bool,
    resync: bool,
    /// Re-reading the range after a compaction: not created on the stream meanwhile.
    resyncing: bool,
    auth_retries: u32,
    /// The create in flight asks for "from now" (start revision 0): the server watch then
    /// starts after the revision its Created answer carries.
    from_now: bool,
    group: GroupKey,
    /// The followers of a leader.
    followers: Vec<WatchId>,
    /// A follower: no watch of its own on the server, it gets copies of this watcher's
    /// responses (see "Shared server watches" in the module docs).
    leader: Option<WatchId>,
    /// The ID on the wire: the watcher's own ID, or a fresh one after a resync (the server
    /// keeps a compacted watcher's ID registered on the stream).
    wire_id: i64,
    create: Box<WatchCreateRequest>,
    /// Under which key it leads (in `Core::watch_shares`), when it may be followed.
    share: Option<Box<ShareKey>>,
    /// A leader's events not yet handed to it and its followers (see [`Core::flush_fanouts`]).
    batch: Option<Box<Batch>>,
}

/// Events a leader received since the application last polled: delivered to the leader and
/// every follower as one shared allocation, however many responses they came in.
#[derive(Debug)]
struct Batch {
    header: ResponseHeader,
    events: Vec<mvccpb::Event>,
    size: usize,
}

fn mod_revision(event: &mvccpb::Event) -> i64 {
    event.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

/// What makes two watches identical on the server: they can share one server watch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ShareKey {
    group: GroupKey,
    key: Bytes,
    range_end: Bytes,
    filters: Vec<i32>,
    prev_kv: bool,
    progress_notify: bool,
    fragment: bool,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) state: StreamSlot,
    members: BTreeSet<WatchId>,
    pending_creates: VecDeque<WatchId>,
    /// Keyed by wire IDs of our own watchers only (checked before insertion).
    fragments: IdHashMap<i64, (ResponseHeader, Vec<mvccpb::Event>, usize)>,
    cancelled_unknown: HashSet<i64>,
    /// Wire watch ID to watcher.
    /// Wire watch ID to watcher (inserted with our own IDs only, so no SipHash needed).
    wire: SeqHashMap<i64, WatchId>,
    /// Received bytes not handed back to flow control because a watcher is over its limit.
    held: usize,
    /// Watchers over their buffer limit.
    over_limit: usize,
    failures: u32,
    avoid: Option<EndpointId>,
    require_leader: bool,
}

impl Group {
    fn new(require_leader: bool) -> Group {
        Group {
            state: StreamSlot::Waiting,
            members: BTreeSet::new(),
            pending_creates: VecDeque::new(),
            fragments: IdHashMap::default(),
            cancelled_unknown: HashSet::new(),
            wire: SeqHashMap::default(),
            held: 0,
            over_limit: 0,
            failures: 0,
            avoid: None,
            require_leader,
        }
    }

    pub(crate) fn open_on(&self) -> Option<(StreamId, EndpointId)> {
        self.state.open_on()
    }

    fn has_fragments_of(&self, wire_id: i64) -> bool {
        !self.fragments.is_empty() && self.fragments.contains_key(&wire_id)
    }
}

/// Whether a stream-level failure ends the watchers (halt) or the stream is reopened.
fn halts(error: &Error) -> bool {
    match error {
        Error::Etcd(e) => match e.kind {
            EtcdErrorKind::NoLeader => true,
            kind => kind.canonical_code() != Code::Unavailable && !kind.is_retryable(),
        },
        Error::Status(s) => !matches!(
            s.code,
            Code::Unavailable | Code::Internal | Code::Unknown | Code::Cancelled
        ),
        Error::Transport { .. } | Error::DeadlineExceeded { .. } => false,
        _ => true,
    }
}

fn frame(req: RequestUnion, limit: usize) -> Result<Bytes, Error> {
    encode_message(
        &WatchRequest {
            request_union: Some(req),
        },
        limit,
    )
}

impl Core {
    /// Starts a watcher. Its responses arrive as [`Event::WatchResponse`]; its end (with the
    /// reason) as [`Event::WatchEnded`].
    pub fn watch(&mut self, watch: Watch, now: Instant) -> Result<WatchId, Error> {
        if self.closed {
            return Err(Error::ClientClosed);
        }
        let (key, range_end) = watch.range.clone().resolve()?;
        let mut filters = Vec::new();
        if watch.no_put {
            filters.push(FilterType::Noput as i32);
        }
        if watch.no_delete {
            filters.push(FilterType::Nodelete as i32);
        }
        let id = WatchId(self.next_watch);
        self.next_watch += 1;
        let create = WatchCreateRequest {
            key,
            range_end,
            start_revision: watch.start_revision,
            progress_notify: watch.progress_notify,
            filters,
            prev_kv: watch.prev_kv,
            watch_id: id.0 as i64,
            fragment: watch.fragment,
        };
        // Refuse oversized creates now, not when a stream opens.
        frame(
            RequestUnion::CreateRequest(create.clone()),
            self.config.max_send_message_size,
        )?;
        let group = if watch.own_stream {
            GroupKey::Own(id)
        } else {
            GroupKey::Shared {
                require_leader: watch.require_leader,
            }
        };
        // Only coalescing watches from "now" share, never those with their own stream or a
        // resync.
        let share =
            (watch.coalesce && !watch.own_stream && watch.start_revision == 0 && !watch.resync)
                .then(|| ShareKey {
                    group,
                    key: create.key.clone(),
                    range_end: create.range_end.clone(),
                    filters: create.filters.clone(),
                    prev_kv: create.prev_kv,
                    progress_notify: create.progress_notify,
                    fragment: create.fragment,
                });
        let leader = share
            .as_ref()
            .and_then(|k| self.watch_shares.get(k).copied())
            .filter(|l| self.watchers.contains_key(l));
        self.watchers.insert(
            id,
            Watcher {
                group,
                // A negative start is sent as is: the server rejects it as compacted. A
                // follower starts after every revision this client has seen, so it never
                // reports a change the application made before it asked to watch.
                next_rev: if leader.is_some() {
                    self.max_revision + 1
                } else {
                    watch.start_revision
                },
                create: Box::new(create),
                created: false,
                from_now: false,
                announced: false,
                created_notify: watch.created_notify,
                buffered: 0,
                limit: watch.buffer_bytes,
                over: false,
                wire_id: id.0 as i64,
                auth_retries: 0,
                resync: watch.resync,
                resyncing: false,
                leader,
                followers: Vec::new(),
                share: if leader.is_none() {
                    share.map(Box::new)
                } else {
                    None
                },
                batch: None,
            },
        );
        if let Some(leader) = leader {
            let l = self.watchers.get_mut(&leader).expect("checked above");
            l.followers.push(id);
            if l.announced {
                self.announce_follower(id);
            }
            return Ok(id);
        }
        if let Some(share) = self.watchers[&id].share.clone() {
            self.watch_shares.insert(*share, id);
        }
        let g = self
            .groups
            .entry(group)
            .or_insert_with(|| Group::new(watch.require_leader));
        g.members.insert(id);
        g.wire.insert(id.0 as i64, id);
        if let Some((stream, _)) = g.open_on() {
            self.send_create(group, id, stream);
        }
        self.dispatch(now);
        Ok(id)
    }

    /// A follower's leader is created: the follower is too, at the later of the leader's
    /// position and its own.
    fn announce_follower(&mut self, id: WatchId) {
        let Some(leader_rev) = self
            .watchers
            .get(&id)
            .and_then(|f| f.leader)
            .and_then(|l| self.watchers.get(&l))
            .map(|l| l.next_rev)
        else {
            return;
        };
        let Some(f) = self.watchers.get_mut(&id) else {
            return;
        };
        if f.announced {
            return;
        }
        f.next_rev = f.next_rev.max(leader_rev);
        f.created = true;
        f.announced = true;
        let revision = f.next_rev - 1;
        let created_notify = f.created_notify;
        self.events.push_back(Event::WatchCreated {
            watch: id,
            revision,
        });
        if created_notify {
            let header = ResponseHeader {
                revision,
                ..Default::default()
            };
            self.deliver(id, WatchResponseKind::Created, header, Vec::new(), 0);
        }
    }

    /// A leader leaves while followers remain: the one furthest behind takes over its server
    /// watch (wire ID, stream membership, pending create), so the server is not asked to
    /// cancel and re-create anything, and every follower still resumes correctly after a
    /// failure (the new leader's position is the lowest of them).
    fn promote_follower(&mut self, old: &mut Watcher, old_id: WatchId) {
        let followers = std::mem::take(&mut old.followers);
        let Some(&new_id) = followers
            .iter()
            .filter(|f| self.watchers.contains_key(f))
            .min_by_key(|f| self.watchers[f].next_rev)
        else {
            return;
        };
        let rest: Vec<WatchId> = followers.into_iter().filter(|f| *f != new_id).collect();
        for f in &rest {
            if let Some(w) = self.watchers.get_mut(f) {
                w.leader = Some(new_id);
            }
        }
        let n = self.watchers.get_mut(&new_id).expect("checked above");
        n.leader = None;
        n.followers = rest;
        n.create = old.create.clone();
        n.wire_id = old.wire_id;
        n.created = old.created;
        // It answers the leader's create: if that was "from now", so is this one now.
        n.from_now = old.from_now;
        n.auth_retries = old.auth_retries;
        n.share = old.share.take();
        if let Some(share) = &n.share {
            self.watch_shares.insert((**share).clone(), new_id);
        }
        if let Some(g) = self.groups.get_mut(&old.group) {
            g.members.remove(&old_id);
            g.members.insert(new_id);
            g.wire.insert(old.wire_id, new_id);
            for pending in g.pending_creates.iter_mut() {
                if *pending == old_id {
                    *pending = new_id;
                }
            }
        }
    }

    /// Cancels a watcher: the server is told, and [`Event::WatchEnded`] follows with no error.
    pub fn cancel_watch(&mut self, id: WatchId, now: Instant) {
        self.end_watcher(id, None, now);
    }

    /// Asks the server for a progress notification on the shared streams (the plain one and
    /// the one of [`Watch::require_leader`] watchers; a watcher with its own stream is not
    /// asked); the answer is delivered to every watcher of those streams as a
    /// [`WatchResponseKind::Progress`].
    pub fn request_progress(&mut self, now: Instant) -> Result<(), Error> {
        let _ = now;
        // Both shared streams: the plain one and the one of `require_leader` watchers.
        let streams: Vec<StreamId> = [false, true]
            .into_iter()
            .filter_map(|require_leader| {
                self.groups
                    .get(&GroupKey::Shared { require_leader })
                    .and_then(Group::open_on)
                    .map(|(stream, _)| stream)
            })
            .collect();
        if streams.is_empty() {
            return Err(Error::InvalidRequest(crate::InvalidRequest::Invalid(
                "no open watch stream to request progress on".into(),
            )));
        }
        let data = frame(
            RequestUnion::ProgressRequest(WatchProgressRequest {}),
            self.config.max_send_message_size,
        )?;
        for stream in streams {
            self.transmits.push_back(Transmit::SendData {
                stream,
                data: data.clone(),
                end_stream: false,
            });
        }
        Ok(())
    }

    /// The application took `bytes` (as reported in [`Event::WatchResponse`]) of a watcher's
    /// responses: flow-control capacity held back for it may be released. Returns whether the
    /// watcher is still over its buffer limit (its stream stays paused until it is not): a
    /// driver may report consumption lazily, in batches, as long as it reports promptly while
    /// this is true. Reporting 0 bytes just asks.
    pub fn watch_consumed(&mut self, id: WatchId, bytes: usize) -> bool {
        let Some(w) = self.watchers.get_mut(&id) else {
            return false;
        };
        w.buffered = w.buffered.saturating_sub(bytes);
        if w.over && w.buffered <= w.limit {
            w.over = false;
            let group = w.group;
            self.below_limit(group);
            return false;
        }
        w.over
    }

    /// A watcher of `group` came back under its limit: when none is over, hand back what was
    /// held.
    fn below_limit(&mut self, group: GroupKey) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        g.over_limit = g.over_limit.saturating_sub(1);
        if g.over_limit == 0 {
            let held = std::mem::take(&mut g.held);
            self.release(group, held);
        }
    }

    /// Number of live watchers.
    pub fn watchers(&self) -> usize {
        self.watchers.len()
    }

    /// The watcher a wire watch ID names on this group's stream.
    fn watcher_of_wire(&self, group: GroupKey, wire_id: i64) -> Option<WatchId> {
        self.groups.get(&group)?.wire.get(&wire_id).copied()
    }

    fn release(&mut self, group: GroupKey, bytes: usize) {
        if bytes == 0 {
            return;
        }
        if let Some((stream, _)) = self.groups.get(&group).and_then(Group::open_on) {
            // Chunks read back to back make one release (one `h2` flow-control update).
            if let Some(Transmit::ReleaseCapacity {
                stream: last,
                bytes: queued,
            }) = self.transmits.back_mut()
            {
                if *last == stream {
                    *queued += bytes;
                    return;
                }
            }
            self.transmits
                .push_back(Transmit::ReleaseCapacity { stream, bytes });
        }
    }

    fn send_create(&mut self, group: GroupKey, id: WatchId, stream: StreamId) {
        let Some(w) = self.watchers.get_mut(&id) else {
            return;
        };
        let mut create = (*w.create).clone();
        create.start_revision = w.next_rev;
        w.from_now = create.start_revision == 0;
        create.watch_id = w.wire_id;
        match frame(
            RequestUnion::CreateRequest(create),
            self.config.max_send_message_size,
        ) {
            Ok(data) => {
                self.transmits.push_back(Transmit::SendData {
                    stream,
                    data,
                    end_stream: false,
                });
                if let Some(g) = self.groups.get_mut(&group) {
                    g.pending_creates.push_back(id);
                }
            }
            Err(e) => self.finish_watcher(id, Some(e)),
        }
    }

    fn send_cancel(&mut self, stream: StreamId, wire_id: i64) {
        if let Ok(data) = frame(
            RequestUnion::CancelRequest(WatchCancelRequest { watch_id: wire_id }),
            self.config.max_send_message_size,
        ) {
            self.transmits.push_back(Transmit::SendData {
                stream,
                data,
                end_stream: false,
            });
        }
    }

    /// Removes a watcher, telling the server when it knows it, and reports its end.
    fn end_watcher(&mut self, id: WatchId, error: Option<Error>, now: Instant) {
        let Some(w) = self.watchers.get(&id) else {
            return;
        };
        let group = w.group;
        let created = w.created;
        let wire_id = w.wire_id;
        // A follower has no server watch; a leader with followers hands its over.
        let on_server = w.leader.is_none() && (w.followers.is_empty() || error.is_some());
        if let Some((stream, _)) = self.groups.get(&group).and_then(Group::open_on) {
            if created && on_server {
                self.send_cancel(stream, wire_id);
            }
        }
        self.finish_watcher(id, error);
        self.drop_group_if_empty(group, now);
    }

    fn finish_watcher(&mut self, id: WatchId, error: Option<Error>) {
        // Followers get what the leader received before it ended.
        self.flush_fanout_of(id);
        let Some(mut w) = self.watchers.remove(&id) else {
            return;
        };
        if w.over {
            self.below_limit(w.group);
        }
        if let Some(leader) = w.leader {
            if let Some(l) = self.watchers.get_mut(&leader) {
                l.followers.retain(|f| *f != id);
            }
            self.events
                .push_back(Event::WatchEnded { watch: id, error });
            return;
        }
        if !w.followers.is_empty() {
            if error.is_none() {
                self.promote_follower(&mut w, id);
                self.events
                    .push_back(Event::WatchEnded { watch: id, error });
                return;
            }
            // What ended the server watch ends every copy of it.
            for f in std::mem::take(&mut w.followers) {
                self.finish_watcher(f, error.clone());
            }
        }
        if let Some(share) = &w.share {
            if self.watch_shares.get(share) == Some(&id) {
                self.watch_shares.remove(share);
            }
        }
        if let Some(g) = self.groups.get_mut(&w.group) {
            g.wire.remove(&w.wire_id);
            g.members.remove(&id);
            // Its entry stays in `pending_creates`: the server still answers that create,
            // and the answer must take its place, or a later rejection (ID -1) would be
            // matched to the wrong watcher.
        }
        self.events
            .push_back(Event::WatchEnded { watch: id, error });
    }

    fn drop_group_if_empty(&mut self, group: GroupKey, _now: Instant) {
        let empty = self
            .groups
            .get(&group)
            .is_some_and(|g| g.members.is_empty());
        if !empty {
            return;
        }
        if let Some(g) = self.groups.remove(&group) {
            if let Some((stream, endpoint)) = g.state.open_on() {
                self.detach_watch_stream(stream, endpoint);
                self.transmits.push_back(Transmit::ResetStream {
                    stream,
                    reason: super::RESET_CANCEL,
                });
            }
        }
    }

    fn detach_watch_stream(&mut self, stream: StreamId, endpoint: EndpointId) {
        self.streams.remove(&stream);
        if let Some(ep) = self.endpoint_mut(endpoint) {
            ep.active_streams = ep.active_streams.saturating_sub(1);
        }
    }

    /// Groups waiting for a stream: open one on a connected endpoint (after a token when
    /// one is needed). Returns whether some group still needs a connection.
    pub(crate) fn dispatch_watches(&mut self, now: Instant, token_ready: bool) -> bool {
        let mut want_connect = false;
        let waiting: Vec<GroupKey> = self
            .groups
            .iter()
            .filter(|(_, g)| matches!(g.state, StreamSlot::Waiting) && !g.members.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for key in waiting {
            if !token_ready {
                continue;
            }
            let avoid = self.groups[&key].avoid;
            let Some(idx) = self.pick_connected(avoid, now) else {
                want_connect = true;
                continue;
            };
            self.open_watch_stream(key, idx);
        }
        want_connect
    }

    /// Whether some group waits for a token.
    pub(crate) fn watches_need_token(&self) -> bool {
        self.groups
            .values()
            .any(|g| matches!(g.state, StreamSlot::Waiting) && !g.members.is_empty())
    }

    fn open_watch_stream(&mut self, key: GroupKey, idx: usize) {
        let require_leader = self.groups[&key].require_leader;
        let options = CallOptions {
            require_leader,
            ..Default::default()
        };
        let ep = &self.endpoints[idx];
        let request = self.request_head(ep, WATCH_PATH, &options, None, true);
        let endpoint = ep.id;
        let stream = StreamId(self.next_stream);
        self.next_stream += 1;
        let limit = self.config.max_receive_message_size;
        let members: Vec<WatchId> = self.groups[&key].members.iter().copied().collect();
        let mut body = Vec::new();
        let mut pending = VecDeque::new();
        for id in members {
            let Some(w) = self.watchers.get_mut(&id) else {
                continue;
            };
            w.created = false;
            if w.resyncing {
                // Created again once its range has been re-read.
                continue;
            }
            let mut create = (*w.create).clone();
            create.start_revision = w.next_rev;
            create.watch_id = w.wire_id;
            w.from_now = create.start_revision == 0;
            match frame(
                RequestUnion::CreateRequest(create),
                self.config.max_send_message_size,
            ) {
                Ok(data) => {
                    body.extend_from_slice(&data);
                    pending.push_back(id);
                }
                Err(e) => self.finish_watcher(id, Some(e)),
            }
        }
        let g = self.groups.get_mut(&key).expect("group exists");
        g.pending_creates = pending;
        g.fragments.clear();
        g.cancelled_unknown.clear();
        g.state = StreamSlot::open(stream, endpoint, limit);
        self.streams.insert(stream, StreamOwner::Watch(key));
        self.endpoints[idx].active_streams += 1;
        self.transmits.push_back(Transmit::OpenStream {
            endpoint,
            stream,
            request,
            body: Bytes::from(body),
            end_stream: false,
            manual_flow_control: true,
        });
    }

    pub(crate) fn watch_headers(
        &mut self,
        key: GroupKey,
        status: StatusCode,
        headers: &HeaderMap,
        end_stream: bool,
        now: Instant,
    ) {
        if let Some(g) = self.groups.get_mut(&key) {
            g.state.set_http_status(status);
        }
        if end_stream {
            self.watch_stream_ended(key, Some(headers), now);
        }
    }

    /// Hands received bytes back to flow control at once, unless a watcher of the group is
    /// over its limit (then the server is paused until the application catches up). Bytes
    /// of incomplete messages are released too, so a message larger than the window can
    /// never deadlock.
    fn received(&mut self, key: GroupKey, bytes: usize) {
        let Some(g) = self.groups.get_mut(&key) else {
            return;
        };
        if g.over_limit > 0 {
            g.held += bytes;
        } else {
            self.release(key, bytes);
        }
    }

    pub(crate) fn watch_data(
        &mut self,
        key: GroupKey,
        data: Bytes,
        end_stream: bool,
        now: Instant,
    ) {
        let data_len = data.len();
        let Some(g) = self.groups.get_mut(&key) else {
            return;
        };
        g.state.feed(data);
        self.received(key, data_len);
        // One message at a time: handling one may end or reopen the stream, after which the
        // rest of this chunk belongs to nobody.
        loop {
            let Some(g) = self.groups.get_mut(&key) else {
                return;
            };
            match g.state.next_message() {
                Ok(Some(msg)) => self.watch_message(key, msg, now),
                Ok(None) => break,
                Err(e) => {
                    self.watch_stream_failed(key, e, true, now);
                    return;
                }
            }
        }
        if end_stream {
            self.watch_stream_ended(key, None, now);
        }
    }

    pub(crate) fn watch_trailers(&mut self, key: GroupKey, trailers: &HeaderMap, now: Instant) {
        self.watch_stream_ended(key, Some(trailers), now);
    }

    fn watch_stream_ended(&mut self, key: GroupKey, trailers: Option<&HeaderMap>, now: Instant) {
        let error = self
            .groups
            .get(&key)
            .and_then(|g| g.state.ended(trailers, "watch stream"));
        if let Some(error) = error {
            self.watch_stream_failed(key, error, false, now);
        }
    }

    /// The group's stream failed or ended: reopen it (all watchers resume at their next
    /// revision) or, for a halting error, end every watcher of the group with it.
    pub(crate) fn watch_stream_failed(
        &mut self,
        key: GroupKey,
        error: Error,
        reset: bool,
        now: Instant,
    ) {
        let Some(g) = self.groups.get_mut(&key) else {
            return;
        };
        let old = std::mem::replace(&mut g.state, StreamSlot::Waiting);
        let mut failed_endpoint = None;
        if let Some((stream, endpoint)) = old.open_on() {
            failed_endpoint = Some(endpoint);
            self.detach_watch_stream(stream, endpoint);
            if reset {
                self.transmits.push_back(Transmit::ResetStream {
                    stream,
                    reason: super::RESET_CANCEL,
                });
            }
        }
        let members: Vec<WatchId> = self.groups[&key].members.iter().copied().collect();
        let auth_problem = matches!(
            error.etcd_kind(),
            Some(EtcdErrorKind::InvalidAuthToken | EtcdErrorKind::AuthOldRevision)
        ) && self.config.credentials.is_some();
        if auth_problem {
            self.token_rejected();
        } else if halts(&error) {
            for id in members {
                self.finish_watcher(id, Some(error.clone()));
            }
            self.groups.remove(&key);
            return;
        }
        for id in &members {
            if let Some(w) = self.watchers.get_mut(id) {
                w.created = false;
                // Capacity is per stream: what was held died with the old one.
            }
        }
        let g = self.groups.get_mut(&key).expect("group exists");
        g.held = 0;
        g.avoid = failed_endpoint;
        g.failures += 1;
        let pause = reopen_pause(g.failures, Duration::from_millis(50));
        if !pause.is_zero() {
            g.state = StreamSlot::Backoff { until: now + pause };
        }
        self.dispatch(now);
    }

    /// Moves groups whose backoff is over back to waiting.
    pub(crate) fn watch_timers(&mut self, now: Instant) {
        for g in self.groups.values_mut() {
            g.state.expire_backoff(now);
        }
    }

    pub(crate) fn watch_poll_timeout(&self) -> Option<Instant> {
        self.groups
            .values()
            .filter_map(|g| g.state.backoff_until())
            .min()
    }

    /// Groups whose stream runs on `endpoint`.
    pub(crate) fn watch_groups_on(&self, endpoint: EndpointId) -> Vec<GroupKey> {
        self.groups
            .iter()
            .filter(|(_, g)| g.open_on().is_some_and(|(_, e)| e == endpoint))
            .map(|(k, _)| *k)
            .collect()
    }

    /// The credentials were refused: watchers whose stream waits for a token end with the
    /// error (the ones on open streams go on with the token they have).
    pub(crate) fn fail_watches_waiting_for_token(&mut self, error: &Error) {
        let waiting: Vec<GroupKey> = self
            .groups
            .iter()
            .filter(|(_, g)| matches!(g.state, StreamSlot::Waiting) && !g.members.is_empty())
            .map(|(k, _)| *k)
            .collect();
        for key in waiting {
            let members: Vec<WatchId> = self.groups[&key].members.iter().copied().collect();
            for id in members {
                self.finish_watcher(id, Some(error.clone()));
            }
            self.groups.remove(&key);
        }
    }

    /// Ends every watcher (client closing).
    pub(crate) fn close_watches(&mut self) {
        let ids: Vec<WatchId> = self.watchers.keys().copied().collect();
        for id in ids {
            self.finish_watcher(id, Some(Error::ClientClosed));
        }
        let groups: Vec<Group> = self.groups.drain().map(|(_, g)| g).collect();
        for g in groups {
            if let Some((stream, _)) = g.state.open_on() {
                self.streams.remove(&stream);
                self.transmits.push_back(Transmit::ResetStream {
                    stream,
                    reason: super::RESET_CANCEL,
                });
            }
        }
    }

    /// One WatchResponse message of the group's stream.
    fn watch_message(&mut self, key: GroupKey, msg: Bytes, now: Instant) {
        let size = msg.len() + crate::grpc::PREFIX_LEN;
        let resp = match crate::wire::decode_watch_response(&msg) {
            Ok(r) => r,
            Err(e) => {
                let error = Error::Protocol(format!("undecodable watch response: {e}"));
                self.watch_stream_failed(key, error, true, now);
                return;
            }
        };
        let Some((stream, _)) = self.groups.get(&key).and_then(Group::open_on) else {
            return;
        };
        let header = resp.header.unwrap_or_default();
        if resp.created {
            self.watch_created(key, stream, resp, now);
            return;
        }
        if resp.canceled {
            let Some(id) = self.watcher_of_wire(key, resp.watch_id) else {
                return;
            };
            let error = if resp.compact_revision > 0 {
                Error::WatchCompacted {
                    compact_revision: resp.compact_revision,
                }
            } else if !resp.cancel_reason.is_empty() {
                Error::from_status(Status::new(Code::FailedPrecondition, resp.cancel_reason))
            } else {
                Error::Status(Status::new(Code::Cancelled, "watch canceled by the server"))
            };
            // The server dropped it: no cancel request needed.
            if let Some(w) = self.watchers.get_mut(&id) {
                w.created = false;
            }
            if self.try_resync(id, &error, now) {
                return;
            }
            self.end_watcher(id, Some(error), now);
            return;
        }
        if let Some(g) = self.groups.get_mut(&key) {
            g.failures = 0;
        }
        if resp.watch_id == -1 {
            // Stream-wide progress (answer to a progress request). Servers without the fix
            // for etcd #15220 (3.4 and 3.5 before early 2023) send it unordered with the
            // events: events up to its revision may still follow, so it must not move the
            // resume point (they would be dropped as replays).
            let members: Vec<WatchId> = self.groups[&key].members.iter().copied().collect();
            for id in members {
                let Some(w) = self.watchers.get(&id).filter(|w| w.created) else {
                    continue;
                };
                // The leader's followers get it through the leader: keep their positions too.
                let positions: Vec<(WatchId, i64)> = std::iter::once(id)
                    .chain(w.followers.iter().copied())
                    .filter_map(|f| self.watchers.get(&f).map(|w| (f, w.next_rev)))
                    .collect();
                self.deliver(id, WatchResponseKind::Progress, header, Vec::new(), 0);
                for (f, next_rev) in positions {
                    if let Some(w) = self.watchers.get_mut(&f) {
                        w.next_rev = next_rev;
                    }
                }
            }
            return;
        }
        let Some(id) = self.watcher_of_wire(key, resp.watch_id) else {
            let fresh = self
                .groups
                .get_mut(&key)
                .is_some_and(|g| g.cancelled_unknown.insert(resp.watch_id));
            if fresh {
                self.send_cancel(stream, resp.watch_id);
            }
            return;
        };
        let (header, events, size) =
            if resp.fragment || self.groups[&key].has_fragments_of(resp.watch_id) {
                let g = self.groups.get_mut(&key).expect("group exists");
                let entry = g
                    .fragments
                    .entry(resp.watch_id)
                    .or_insert_with(|| (header, Vec::new(), 0));
                entry.1.extend(resp.events);
                entry.2 += size;
                entry.0 = header;
                if resp.fragment {
                    return;
                }
                g.fragments.remove(&resp.watch_id).expect("just inserted")
            } else {
                (header, resp.events, size)
            };
        if events.is_empty() {
            self.deliver(id, WatchResponseKind::Progress, header, Vec::new(), 0);
        } else {
            self.deliver(id, WatchResponseKind::Events, header, events, size);
        }
    }

    fn watch_created(
        &mut self,
        key: GroupKey,
        stream: StreamId,
        resp: PbWatchResponse,
        now: Instant,
    ) {
        let head = self
            .groups
            .get_mut(&key)
            .and_then(|g| g.pending_creates.pop_front());
        let header = resp.header.unwrap_or_default();
        if resp.canceled {
            // A rejected create comes back with ID -1: it answers the oldest pending create.
            let id = match self.watcher_of_wire(key, resp.watch_id).or(head) {
                Some(id) => id,
                None => return,
            };
            let error = if resp.compact_revision > 0 {
                Error::WatchCompacted {
                    compact_revision: resp.compact_revision,
                }
            } else {
                Error::from_status(Status::new(
                    Code::FailedPrecondition,
                    resp.cancel_reason.clone(),
                ))
            };
            let auth_problem = matches!(
                error.etcd_kind(),
                Some(
                    EtcdErrorKind::InvalidAuthToken
                        | EtcdErrorKind::AuthOldRevision
                        | EtcdErrorKind::UserEmpty
                )
            ) && self.config.credentials.is_some();
            let retries = self.watchers.get(&id).map_or(u32::MAX, |w| w.auth_retries);
            if auth_problem && retries < crate::retry::MAX_AUTH_RETRIES {
                // The stream carries the token: refresh it and reopen the stream.
                if let Some(w) = self.watchers.get_mut(&id) {
                    w.auth_retries += 1;
                }
                self.token_rejected();
                let error =
                    Error::Status(Status::new(Code::Unauthenticated, "watch token refresh"));
                self.watch_stream_failed(key, error, true, now);
                return;
            }
            if self.try_resync(id, &error, now) {
                return;
            }
            self.end_watcher(id, Some(error), now);
            return;
        }
        let Some(id) = self
            .watcher_of_wire(key, resp.watch_id)
            .filter(|id| self.watchers.contains_key(id))
        else {
            // Created for a watcher cancelled meanwhile: cancel it on the server.
            self.send_cancel(stream, resp.watch_id);
            return;
        };
        let w = self.watchers.get_mut(&id).expect("checked above");
        w.created = true;
        w.auth_retries = 0;
        // A watch "from now" starts after the Created revision. A follower promoted while
        // the leader's create was pending may have a position of its own (after the last
        // revision the client saw); it keeps the later of the two.
        // Only the answer to that create: a repeated Created must not move the position.
        if std::mem::take(&mut w.from_now) {
            w.next_rev = w.next_rev.max(header.revision + 1);
        }
        if let Some(g) = self.groups.get_mut(&key) {
            g.failures = 0;
        }
        if !w.announced {
            w.announced = true;
            let created_notify = w.created_notify;
            // A watch from "now" reports where it starts (a promoted follower may be past
            // the server's creation revision, or, re-created after a failure, before it); one
            // from a given revision reports the server's revision at creation, as Go does.
            let revision = if w.create.start_revision == 0 {
                w.next_rev - 1
            } else {
                header.revision.max(w.next_rev - 1)
            };
            let followers = w.followers.clone();
            self.events.push_back(Event::WatchCreated {
                watch: id,
                revision,
            });
            if created_notify {
                self.deliver(id, WatchResponseKind::Created, header, Vec::new(), 0);
            }
            for f in followers {
                self.announce_follower(f);
            }
        }
    }

    /// Delivers a response to a watcher, dropping events it has already seen, and decides
    /// whether the response's flow-control capacity is released now or held. A leader's
    /// events are batched for it and its followers until the application polls.
    fn deliver(
        &mut self,
        id: WatchId,
        kind: WatchResponseKind,
        header: ResponseHeader,
        mut events: Vec<mvccpb::Event>,
        size: usize,
    ) {
        if header.revision > self.max_revision {
            self.max_revision = header.revision;
        }
        let Some(w) = self.watchers.get_mut(&id) else {
            return;
        };
        if kind == WatchResponseKind::Events {
            let next = w.next_rev;
            events.retain(|e| mod_revision(e) >= next);
            let Some(last) = events.last().map(mod_revision) else {
                return;
            };
            w.next_rev = last + 1;
            if !w.followers.is_empty() {
                match &mut w.batch {
                    Some(batch) => {
                        batch.events.extend(events);
                        batch.size += size;
                        batch.header = header;
                    }
                    None => {
                        w.batch = Some(Box::new(Batch {
                            header,
                            events,
                            size,
                        }));
                        self.fanout_pending.push(id);
                    }
                }
                return;
            }
            self.push_response(id, kind, header, Events::from(events), size);
            return;
        }
        // What the leader batched comes first.
        self.flush_fanout_of(id);
        let Some(w) = self.watchers.get_mut(&id) else {
            return;
        };
        if kind == WatchResponseKind::Progress {
            w.next_rev = w.next_rev.max(header.revision + 1);
            if !w.followers.is_empty() {
                for f in w.followers.clone() {
                    if self.watchers.get(&f).is_some_and(|fw| fw.announced) {
                        self.deliver(f, kind, header, Vec::new(), 0);
                    }
                }
            }
        }
        self.push_response(id, kind, header, Events::from(events), size);
    }

    /// Queues a response for the application and counts it against the watcher's buffer.
    fn push_response(
        &mut self,
        id: WatchId,
        kind: WatchResponseKind,
        header: ResponseHeader,
        events: Events,
        size: usize,
    ) {
        let Some(w) = self.watchers.get_mut(&id) else {
            return;
        };
        w.buffered += size;
        if !w.over && w.buffered > w.limit {
            w.over = true;
            let group = w.group;
            if let Some(g) = self.groups.get_mut(&group) {
                g.over_limit += 1;
            }
        }
        let over_limit = w.over;
        self.events.push_back(Event::WatchResponse {
            watch: id,
            response: WatchResponse {
                kind,
                header,
                events,
            },
            size,
            over_limit,
        });
    }

    /// Hands every leader's batch to it and its followers (the application is polling).
    pub(crate) fn flush_fanouts(&mut self) {
        for id in std::mem::take(&mut self.fanout_pending) {
            self.flush_fanout_of(id);
        }
    }

    /// Hands a leader's batch to it and to each follower that has not seen all of it, as one
    /// shared allocation.
    fn flush_fanout_of(&mut self, id: WatchId) {
        let Some(w) = self.watchers.get_mut(&id) else {
            return;
        };
        let Some(batch) = w.batch.take() else {
            return;
        };
        let followers = std::mem::take(&mut w.followers);
        let all: std::sync::Arc<[mvccpb::Event]> = batch.events.into();
        let last = all.last().map_or(0, mod_revision);
        // The leader filtered the batch as it grew: all of it is new to the leader.
        self.push_response(
            id,
            WatchResponseKind::Events,
            batch.header,
            Events::shared(all.clone(), 0),
            batch.size,
        );
        for &f in &followers {
            let Some(fw) = self.watchers.get_mut(&f).filter(|fw| fw.announced) else {
                continue;
            };
            // Events are in revision order: what the follower has not seen is a suffix.
            let start = all.partition_point(|e| mod_revision(e) < fw.next_rev);
            if start == all.len() {
                continue;
            }
            fw.next_rev = last + 1;
            self.push_response(
                f,
                WatchResponseKind::Events,
                batch.header,
                Events::shared(all.clone(), start),
                batch.size,
            );
        }
        if let Some(w) = self.watchers.get_mut(&id) {
            w.followers = followers;
        }
    }
}

impl<K: IntoBytes> From<K> for Watch {
    fn from(key: K) -> Watch {
        Watch::new(key)
    }
}

impl Core {
    /// A compaction ended a watcher: in resync mode, re-read its range instead. Returns
    /// whether the watcher goes on.
    fn try_resync(&mut self, id: WatchId, error: &Error, now: Instant) -> bool {
        let compacted = matches!(error, Error::WatchCompacted { .. })
            || error.etcd_kind() == Some(EtcdErrorKind::Compacted);
        let Some(w) = self.watchers.get_mut(&id) else {
            return false;
        };
        if !compacted || !w.resync || w.resyncing {
            return false;
        }
        w.resyncing = true;
        w.created = false;
        // The server keeps a compacted watcher's ID registered on the stream: free it, and
        // watch again under a fresh one.
        let old_wire = w.wire_id;
        let group = w.group;
        let new_wire = self.next_watch as i64;
        self.next_watch += 1;
        if let Some(w) = self.watchers.get_mut(&id) {
            w.wire_id = new_wire;
        }
        if let Some(g) = self.groups.get_mut(&group) {
            g.wire.remove(&old_wire);
            g.wire.insert(new_wire, id);
        }
        if let Some((stream, _)) = self.groups.get(&group).and_then(Group::open_on) {
            self.send_cancel(stream, old_wire);
        }
        let Some(w) = self.watchers.get(&id) else {
            return false;
        };
        let request = etcd_proto::etcdserverpb::RangeRequest {
            key: w.create.key.clone(),
            range_end: w.create.range_end.clone(),
            ..Default::default()
        };
        let method = crate::rpc::Method {
            path: "/etcdserverpb.KV/Range",
            retry: crate::rpc::RetryClass::Repeatable,
        };
        match self.start_call(
            super::Owner::Resync(id),
            method,
            &request,
            CallOptions::default(),
            now,
        ) {
            Ok(_) => true,
            Err(_) => {
                if let Some(w) = self.watchers.get_mut(&id) {
                    w.resyncing = false;
                }
                false
            }
        }
    }

    /// The range of a compacted watcher was re-read: deliver it and watch on from there.
    pub(crate) fn resync_finished(
        &mut self,
        id: WatchId,
        result: Result<Bytes, Error>,
        now: Instant,
    ) {
        let range = result.and_then(|body| {
            etcd_proto::etcdserverpb::RangeResponse::decode(body)
                .map_err(|e| Error::Protocol(format!("undecodable resync range: {e}")))
        });
        let Some(w) = self.watchers.get_mut(&id) else {
            return;
        };
        w.resyncing = false;
        let range = match range {
            Ok(r) => r,
            Err(e) => {
                self.end_watcher(id, Some(e), now);
                return;
            }
        };
        let header = range.header.unwrap_or_default();
        w.next_rev = header.revision + 1;
        let group = w.group;
        let events = range
            .kvs
            .into_iter()
            .map(|kv| mvccpb::Event {
                r#type: mvccpb::event::EventType::Put as i32,
                kv: Some(kv),
                prev_kv: None,
            })
            .collect();
        self.events.push_back(Event::WatchResponse {
            watch: id,
            response: WatchResponse {
                kind: WatchResponseKind::Snapshot,
                header,
                events,
            },
            size: 0,
            over_limit: false,
        });
        if let Some((stream, _)) = self.groups.get(&group).and_then(Group::open_on) {
            self.send_create(group, id, stream);
        }
        self.dispatch(now);
    }
}
