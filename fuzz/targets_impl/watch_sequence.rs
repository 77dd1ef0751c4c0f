//! `watch_sequence`: drives the watches of a [`Core`] (one endpoint, `http://127.0.0.1:2379`)
//! through application inputs and transport events decoded from the fuzz input, plays the
//! etcd server on every `/etcdserverpb.Watch/Watch` stream (and on the internal
//! `/etcdserverpb.KV/Range` calls of resyncing watchers) with a model, and checks what the
//! core delivers after every step.
//!
//! Setup: byte 0 picks the configuration (bits 0-1 receive/send limit: default, default,
//! 300 bytes, 2048 bytes; bit 2 no keepalive; bits 3-4 default timeout: none, none, 100 ms,
//! 2 s; bit 5 empty store history, else 5 revisions; bit 6 connections are answered only by
//! op 4, else at once; bit 7 one attempt per call). Then, until the input runs out (at most
//! [`MAX_OPS`] operations), one opcode byte (`% 25`; for op 0, `byte / 25` odd picks the
//! second form) and its operands:
//!
//! | op | operands | input |
//! |---|---|---|
//! | 0 | opts, more | `Core::watch` of a fresh key `w<n>`: opts bits prefix, prev_kv, fragment, progress_notify, require_leader, own_stream, resync, created_notify; more bits 0-2 start revision (0, 0, 1, head, head-1, head+1, head+3, -1), 3-5 buffer_bytes (default, default, 1, 16, 64, 256, 1024, default), 6 no_delete, 7 from_key (with prefix: invalid) |
//! | 0 (byte 25, 75, 125, 175, 225) | watcher, var | `Core::watch` of the same request as an earlier watcher (live or ended): its key, range, prev_kv, fragment, progress_notify, no_delete and require_leader, from revision 0, no own_stream or resync, so it shares the server watch of a live identical one (or starts one). var bits 0-2: 0-3 identical, 4 `coalesce(false)`, 5 start revision head, 6 own_stream, 7 one option flipped (bits 6-7: prev_kv, fragment, progress_notify, require_leader); bit 3 created_notify; bits 4-5 buffer_bytes (default, 1, 64, 1024). Without a watcher yet: op 0 with operands (watcher, var) |
//! | 1 | watcher | `cancel_watch` (one past the end: unknown) |
//! | 2 | | `request_progress` |
//! | 3 | watcher, amount | `watch_consumed` (all, half, 1 byte, `usize::MAX`) |
//! | 4 | | connection established |
//! | 5 | | connection lost |
//! | 6 | | connection attempt failed |
//! | 7 | stream, kind | Created: for the server's oldest pending create (some kinds resume at an older revision than asked, so old events are replayed), or for a random wire ID, or again for a live one |
//! | 8 | stream, kind | rejected create (`watch_id` -1, or the ID; assorted cancel reasons, maybe a compact revision) |
//! | 9 | stream, wire, mode | events: next revisions, a replay of older ones, the last batch again, one old revision; or events for an unknown/foreign ID |
//! | 10 | stream, wire, kind | the next fragment of a revision split in fragments (maybe an old one) |
//! | 11 | stream, wire, kind | progress (`watch_id` -1 or a watcher's; current or stale revision) |
//! | 12 | stream, wire, kind | canceled (compact revision, compacted reason, another reason, none) |
//! | 13 | stream, flags, len, bytes | raw bytes (flags bit 0: as one well-formed frame) |
//! | 14 | stream, split | feed part of the bytes held back (bits 0-5 how much, 6 toggle holding back, 7 end_stream) |
//! | 15 | stream, flags, status spec | trailers (flags bit 0: feed what is held back first) |
//! | 16 | stream, status | response headers (HTTP status from a table; bit 3: trailers-only, then a status spec) |
//! | 17 | stream, reason | RST_STREAM from the peer |
//! | 18 | stream, flag | stream error |
//! | 19 | delta | time advances, `handle_timeout` |
//! | 20 | | time jumps to `poll_timeout`, `handle_timeout` |
//! | 21 | stream, kind | answer to a resync Range call (snapshot, split snapshot, Unavailable, PermissionDenied, garbage body, refused stream, no trailers) |
//! | 22 | | PING answered |
//! | 23 | | close |
//! | 24 | delta | time advances without `handle_timeout` (a late timer) |
//!
//! A "stream" operand picks a live watch stream, or (one past the end) a dead or unknown one.
//! Server messages are framed and fed at once unless the stream holds bytes back (op 14), so
//! messages may be split at any point or share DATA frames. The server model keeps one
//! history of revisions (each a few distinct keys), and per stream the creates it has not
//! answered yet (in request order, including those of watchers the client dropped meanwhile),
//! the watches it created (with a cursor: the next revision it sends) and unfinished
//! fragments.
//!
//! Shared server watches: the model predicts which watches the core coalesces (identical
//! requests from revision 0, not `own_stream`, resync or `coalesce(false)`) and keeps a
//! "share" per server watch: its members (the first watcher, then the followers that joined
//! while a member was live), its wire ID, stream and options. Only a share's holder sends
//! creates; when the application cancels the holder of several, the core promotes the
//! follower furthest behind, which the model does not see, so it only knows the holder again
//! once one member is left. A server error for the share's watch ends every member.
//!
//! Checked after every step: never a panic; per watcher, no event is delivered twice (no
//! `(key, mod_revision)` pair twice) and every delivered Events response's events have
//! `mod_revision` >= the highest one delivered before (and are in order); nothing follows
//! `WatchEnded`, which comes exactly once; `WatchCreated` at most once; a watcher ends only when
//! the step may end it (its cancel, the rejection or cancellation the server meant for its
//! share, a failed stream, connection or resync, close), and a cancelled or rejected (or
//! cancelled by the server) watcher does end then (with every member of its share), a
//! cancelled one without an error; the first Created for a share is reported for every
//! member, at a revision no lower than the server's when the create was from "now"; creates
//! carry fresh wire IDs (a follower's never: it sends none, and a promoted one inherits its
//! share's), the share's options, and resume after the last revision delivered to any member
//! (the holder is the one furthest behind); no cancel goes out for a wire ID a live member
//! still uses; a follower is announced when it joins a created share (else with its share),
//! at a revision no lower than any header delivered before it joined, gets nothing before
//! that and no event at or below that revision; every event the server sent as new on a
//! share's wire (at or past the revision asked, not sent before) with a revision above a
//! member's created revision reaches that member, and so does progress for that wire (once it
//! is created); streams only open on a live connection and
//! watchers share them only within their group (`hasleader` as asked); flow control never
//! hands back more than was received, and hands back everything when no watcher is over its
//! buffer; a live watcher is never stranded and no stream outlives its watchers; `watchers()`
//! agrees; after `close` every watcher has ended with `ClientClosed` and nothing more comes
//! out. Raw bytes that decode into events out of order (which no server sends) switch the
//! ordering and delivery checks off for the rest of the input.
//!
//! This file is shared by the cargo-fuzz binary and `etcd-proto-core/tests/fuzz_corpus.rs`,
//! so it may only use crates both can reach.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use etcd_proto_core::grpc::PREFIX_LEN;
use etcd_proto_core::proto::bytes::Bytes;
use etcd_proto_core::proto::etcdserverpb::{
    watch_request::RequestUnion, RangeRequest, RangeResponse, ResponseHeader, WatchCreateRequest,
    WatchRequest, WatchResponse as PbWatchResponse,
};
use etcd_proto_core::proto::mvccpb::{event::EventType, Event as PbEvent, KeyValue};
use etcd_proto_core::proto::prost::Message;
use etcd_proto_core::{
    Config, Core, EndpointId, Error, Event, StreamId, Transmit, Watch, WatchId, WatchResponseKind,
    DEFAULT_WATCH_BUFFER, RESET_CANCEL,
};
use http::{HeaderMap, HeaderValue, StatusCode};

/// Upper bound on operations per input, so that one input stays fast.
const MAX_OPS: usize = 512;
const OPS: u8 = 25;

const WATCH_PATH: &str = "/etcdserverpb.Watch/Watch";
const RANGE_PATH: &str = "/etcdserverpb.KV/Range";
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// Wire IDs from here on are never chosen by the client.
const UNKNOWN_WIRE: i64 = 1 << 40;
const EP: EndpointId = EndpointId(0);

/// The keys events are about (the core does not filter events by key).
const KEYS: [&str; 6] = ["a", "b", "c", "foo", "foo/bar", "z"];

const DELTAS_MS: [u64; 12] = [0, 1, 10, 50, 99, 100, 101, 1000, 2000, 5000, 10_000, 60_000];

const CANCEL_REASONS: [&str; 6] = [
    "rpc error: code = PermissionDenied desc = etcdserver: permission denied",
    COMPACTED,
    "",
    "etcdserver: mvcc: required revision is a future revision",
    "duplicate watch ID",
    "etcdserver: no leader",
];

const GRPC_STATUSES: [Option<&str>; 16] = [
    Some("0"),
    Some("0"),
    Some("1"),
    Some("2"),
    Some("4"),
    Some("7"),
    Some("9"),
    Some("13"),
    Some("14"),
    Some("14"),
    Some("16"),
    Some("5"),
    Some("8"),
    Some("3"),
    None,
    Some("abc"),
];

const GRPC_MESSAGES: [&str; 8] = [
    "",
    "etcdserver: no leader",
    COMPACTED,
    "etcdserver: permission denied",
    "etcdserver: request timed out",
    "rpc error: code = Unavailable desc = etcdserver: leader changed",
    "etcdserver: invalid auth token",
    "etcdserver: user name is empty",
];

pub fn run(data: &[u8]) {
    let mut input = Input { data, pos: 0 };
    let mut h = Harness::new(input.byte_or0());
    // `WATCH_SEQUENCE_TRACE=1` prints every step (to debug a failing input).
    h.trace = std::env::var_os("WATCH_SEQUENCE_TRACE").is_some();
    for _ in 0..MAX_OPS {
        let Some(byte) = input.byte() else { break };
        let op = byte % OPS;
        if h.trace {
            eprintln!("op {op} ({byte}) at +{:?}", h.now - h.start);
        }
        h.op(op, byte / OPS, &mut input);
        h.auto_connect();
    }
    if !h.closed {
        h.close();
    }
    h.check_closed();
}

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn byte_or0(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let end = (self.pos + n).min(self.data.len());
        let out = &self.data[self.pos..end];
        self.pos = end;
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Idle,
    Connecting,
    Connected,
}

/// Which stream a watcher shares (the core's grouping, as documented).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Shared { require_leader: bool },
    Own(WatchId),
}

/// What makes two coalescing watches identical for the core (same range and options).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Spec {
    key: String,
    prefix: bool,
    from_key: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    no_delete: bool,
    require_leader: bool,
}

/// The options of a watch that do not make it a different request.
#[derive(Debug, Clone, Copy)]
struct Opts {
    own: bool,
    resync: bool,
    created_notify: bool,
    start: i64,
    buffer: Option<usize>,
    coalesce: bool,
}

#[derive(Debug)]
struct WatcherModel {
    spec: Spec,
    /// Its share (index into `Harness::shares`).
    share: usize,
    /// Joined a live share: it had no server watch of its own then.
    follower: bool,
    group: Group,
    start: i64,
    resync: bool,
    created_notify: bool,
    limit: usize,
    live: bool,
    announced: bool,
    /// The revision its `WatchCreated` reported.
    created_rev: Option<i64>,
    /// A follower: the highest header revision delivered to anyone before it joined.
    join_seen: i64,
    resyncing: bool,
    /// Highest delivered event revision.
    max_rev: Option<i64>,
    seen: HashSet<(Bytes, i64)>,
    /// Something delivered may have moved its resume revision.
    moved: bool,
    buffered: usize,
    /// How much of its share's `sent` it has been checked against.
    checked: usize,
    /// Got events before its share was created (which no server sends).
    early: bool,
}

/// One server watch as the client sees it: the watchers sharing it (a watcher that does not
/// coalesce has a share of its own).
#[derive(Debug)]
struct ShareModel {
    /// Every watcher that belonged to it, in join order (the first started it).
    members: Vec<WatchId>,
    /// The member holding the server watch, when the model knows it (the core promotes the
    /// follower furthest behind when the holder is cancelled, which the model cannot see).
    holder: Option<WatchId>,
    group: Group,
    /// The first create sent for it (resumes must carry the same options).
    first_create: Option<WatchCreateRequest>,
    /// The wire ID of its latest create (`None` while the core picks a fresh one to resync).
    current_wire: Option<i64>,
    /// The stream its latest create went out on.
    stream: Option<StreamId>,
    /// Events the server sent as new on its current wire and stream, which the core decoded:
    /// every live member created below one of them must get it.
    sent: Vec<(Bytes, i64)>,
    /// Decoded events count in `sent` (off once a rejection or cancellation may have taken
    /// it off its wire; on again with its next create).
    counting: bool,
    /// Events or progress for its wire came before the server created it (which no server
    /// does): its created revision is not checked against the server's.
    premature: bool,
}

#[derive(Debug, Default)]
struct ServerWatch {
    /// The next revision the server sends.
    cursor: i64,
    /// Revisions from here on have not been sent (nor skipped by progress) yet, and were asked
    /// for: the server sends them as new.
    fresh: i64,
    /// The last batch of revisions sent.
    last: Option<(i64, i64)>,
    prev_kv: bool,
}

/// Events (key, revision) the server sends for the first time.
type NewEvents = Vec<(Bytes, i64)>;

/// What a server message on a watch stream means, for the checks.
#[derive(Debug, Clone)]
enum Meta {
    /// Progress, old events, stray messages: no watcher may end.
    Plain,
    /// Events for this wire ID; `new`: those the server sends for the first time.
    Events { wire: i64, new: NewEvents },
    /// Progress for this wire ID (not completing a fragmented revision).
    Progress { wire: i64 },
    /// The answer to the create with this wire ID. `aligned`: no stray answer went before
    /// (which could make the client end or resync this watcher on a wrong match). `floor`:
    /// the server's revision, when the create was from "now" (nothing at or below it comes).
    Created {
        wire: i64,
        aligned: bool,
        floor: Option<i64>,
    },
    /// A rejected create (the oldest pending one on the server, if any). `aligned`: no stray
    /// Created went before it, so the client's notion of the oldest pending create agrees.
    Rejected {
        wire: Option<i64>,
        compaction: bool,
        aligned: bool,
    },
    /// The server cancelled this watch (`aligned` as for `Created`).
    Canceled {
        wire: i64,
        compaction: bool,
        aligned: bool,
    },
}

#[derive(Debug)]
struct WatchStream {
    live: bool,
    hasleader: bool,
    group: Option<Group>,
    http_ok: bool,
    received: usize,
    released: usize,
    /// Creates not yet answered, in request order: (wire ID, start revision, prev_kv).
    pending: VecDeque<(i64, i64, bool)>,
    active: BTreeMap<i64, ServerWatch>,
    /// Cancels for creates not answered yet: the watch is cancelled right after it is created.
    cancel_before_created: HashSet<i64>,
    /// Watches the client cancelled: the server owes a Canceled response.
    owed_cancel: Vec<i64>,
    /// Remaining fragments of a split revision, per wire ID (the last one carries the new
    /// events, delivered with it).
    frags: BTreeMap<i64, VecDeque<(PbWatchResponse, NewEvents)>>,
    /// Generated bytes not yet fed to the core.
    out: Vec<u8>,
    /// Frame length and meaning of every whole frame generated and not yet decoded.
    metas: VecDeque<(usize, Meta)>,
    /// The bytes the core's decoder holds (a mirror).
    decoder: Vec<u8>,
    hold: bool,
    /// Raw bytes were fed (or bytes dropped): frames no longer match `metas`.
    garbage: bool,
    /// A stray Created or raw bytes went out: the client may match rejections to others.
    misaligned: bool,
    /// The framing broke: the core drops the stream.
    failed: bool,
    progress_requests: u32,
}

impl WatchStream {
    fn new(hasleader: bool) -> WatchStream {
        WatchStream {
            live: true,
            hasleader,
            group: None,
            http_ok: true,
            received: 0,
            released: 0,
            pending: VecDeque::new(),
            active: BTreeMap::new(),
            cancel_before_created: HashSet::new(),
            owed_cancel: Vec::new(),
            frags: BTreeMap::new(),
            out: Vec::new(),
            metas: VecDeque::new(),
            decoder: Vec::new(),
            hold: false,
            garbage: false,
            misaligned: false,
            failed: false,
            progress_requests: 0,
        }
    }
}

#[derive(Debug)]
struct RangeStream {
    watcher: WatchId,
    live: bool,
}

/// What a step may and must do to watchers.
#[derive(Debug, Default)]
struct Expect {
    /// Any watcher may end (a stream, connection or timer failure).
    any: bool,
    allowed: BTreeSet<WatchId>,
    must_end: BTreeSet<WatchId>,
    /// Cancelled by the application: must end without an error.
    cancelled: BTreeSet<WatchId>,
    must_created: BTreeSet<WatchId>,
    /// Compacted in resync mode: ends, or re-reads its range under a fresh wire ID.
    resync: BTreeSet<WatchId>,
    /// Shares created from "now" at this server revision: members announced now report at
    /// least it.
    floors: Vec<(usize, i64)>,
    /// Must get a progress response (the server sent one for their share).
    progress: BTreeSet<WatchId>,
    closing: bool,
}

struct Harness {
    core: Core,
    now: Instant,
    start: Instant,
    limit: usize,
    auto_connect: bool,
    conn: Conn,
    ping_outstanding: bool,
    /// Time passed without `handle_timeout`: a resync call may find its deadline passed.
    timer_late: bool,
    closed: bool,
    trace: bool,
    /// Raw bytes decoded into events no server sends: ordering checks are off.
    tainted: bool,
    watchers: BTreeMap<WatchId, WatcherModel>,
    order: Vec<WatchId>,
    shares: Vec<ShareModel>,
    /// The latest share of each coalescing request (joined while it has a live member).
    share_of_spec: HashMap<Spec, usize>,
    /// The watchers of each key (Range calls name their watcher by key; only the first, a
    /// fresh watch, may resync).
    key_owner: HashMap<Bytes, Vec<WatchId>>,
    /// The share each wire ID belongs to.
    wire_owner: BTreeMap<i64, usize>,
    /// The highest header revision delivered to any watcher.
    max_seen: i64,
    streams: BTreeMap<StreamId, WatchStream>,
    ranges: BTreeMap<StreamId, RangeStream>,
    /// Streams the transport ended in this step: the core may still reset them, release
    /// capacity or send on them while it learns of the end.
    dead_now: BTreeSet<StreamId>,
    /// Creates sent in this step: (share, start revision).
    step_creates: Vec<(usize, i64)>,
    /// Cancels sent in this step: (stream, wire ID).
    step_cancels: Vec<(StreamId, i64)>,
    /// The store: per revision (from 1), its events (key index, delete, value length).
    history: Vec<Vec<(usize, bool, usize)>>,
    next_key: u64,
    progress_sent: u32,
}

impl Harness {
    fn new(config_byte: u8) -> Harness {
        let mut config = Config::from_endpoints(["http://127.0.0.1:2379"]).expect("valid config");
        match config_byte & 3 {
            2 => {
                config.max_receive_message_size = 300;
                config.max_send_message_size = 300;
            }
            3 => {
                config.max_receive_message_size = 2048;
                config.max_send_message_size = 2048;
            }
            _ => {}
        }
        if config_byte & 4 != 0 {
            config.keepalive_interval = None;
        }
        config.default_timeout = match (config_byte >> 3) & 3 {
            2 => Some(Duration::from_millis(100)),
            3 => Some(Duration::from_secs(2)),
            _ => None,
        };
        if config_byte & 0x80 != 0 {
            config.max_attempts = 1;
        }
        let limit = config.max_receive_message_size;
        let now = Instant::now();
        let core = Core::new(config, now).expect("valid config");
        let mut h = Harness {
            core,
            now,
            start: now,
            limit,
            auto_connect: config_byte & 0x40 == 0,
            conn: Conn::Idle,
            ping_outstanding: false,
            timer_late: false,
            closed: false,
            trace: false,
            tainted: false,
            watchers: BTreeMap::new(),
            order: Vec::new(),
            shares: Vec::new(),
            share_of_spec: HashMap::new(),
            key_owner: HashMap::new(),
            wire_owner: BTreeMap::new(),
            max_seen: 0,
            streams: BTreeMap::new(),
            ranges: BTreeMap::new(),
            dead_now: BTreeSet::new(),
            step_creates: Vec::new(),
            step_cancels: Vec::new(),
            history: Vec::new(),
            next_key: 0,
            progress_sent: 0,
        };
        if config_byte & 0x20 == 0 {
            h.ensure(5, config_byte);
        }
        h
    }

    fn op(&mut self, op: u8, high: u8, input: &mut Input<'_>) {
        match op {
            0 => {
                let a = input.byte_or0();
                let b = input.byte_or0();
                if high % 2 == 1 && !self.order.is_empty() {
                    self.watch_again(a, b);
                } else {
                    self.start_watch(a, b);
                }
            }
            1 => {
                let id = self.pick_watcher(input.byte_or0());
                let mut exp = self.expect();
                if self.watchers.get(&id).is_some_and(|w| w.live) {
                    exp.cancelled.insert(id);
                    exp.must_end.insert(id);
                }
                self.core.cancel_watch(id, self.now);
                self.drain(exp);
            }
            2 => {
                let before = self.progress_sent;
                let result = self.core.request_progress(self.now);
                self.drain(self.expect());
                match result {
                    Ok(()) => {
                        assert!(!self.closed, "progress requested after close");
                        // One request on each open shared stream (plain and require-leader).
                        // (The model's "live" can run ahead of the core's "open" for a stream
                        // being torn down, so the count is bounded, not matched.)
                        let sent = self.progress_sent - before;
                        assert!(
                            (1..=2).contains(&sent),
                            "request_progress is Ok but sent {sent} requests"
                        );
                    }
                    Err(e) => {
                        assert_eq!(self.progress_sent, before, "{e:?} but a request went out");
                        let open = self
                            .streams
                            .values()
                            .any(|s| s.live && matches!(s.group, Some(Group::Shared { .. })));
                        assert!(
                            !open,
                            "request_progress failed ({e:?}) with a shared stream open"
                        );
                    }
                }
            }
            3 => {
                let id = self.pick_watcher(input.byte_or0());
                let a = input.byte_or0();
                let buffered = self.watchers.get(&id).map_or(0, |w| w.buffered);
                let n = match a % 4 {
                    0 => buffered,
                    1 => buffered / 2,
                    2 => 1,
                    _ => usize::MAX,
                };
                if let Some(w) = self.watchers.get_mut(&id) {
                    w.buffered = w.buffered.saturating_sub(n);
                }
                self.core.watch_consumed(id, n);
                self.drain(self.expect());
            }
            4 => self.connect(),
            5 => {
                self.all_streams_dead();
                self.conn = Conn::Idle;
                self.ping_outstanding = false;
                self.core
                    .handle_connection_lost(EP, "connection reset", self.now);
                self.drain(Expect {
                    any: true,
                    ..Default::default()
                });
            }
            6 => {
                if self.conn == Conn::Connecting {
                    self.conn = Conn::Idle;
                }
                self.core
                    .handle_connect_failed(EP, "connection refused", self.now);
                self.drain(self.expect());
            }
            7..=12 => {
                let s = input.byte_or0();
                let sel = input.byte_or0();
                let kind = if op == 7 || op == 8 {
                    sel
                } else {
                    input.byte_or0()
                };
                let Some(stream) = self.pick_stream(s) else {
                    self.poke_dead(op);
                    return;
                };
                let mut exp = self.expect();
                match op {
                    7 => self.created(stream, kind, &mut exp),
                    8 => self.rejected(stream, kind, &mut exp),
                    9 => self.events(stream, sel, kind, &mut exp),
                    10 => self.fragment(stream, sel, kind, &mut exp),
                    11 => self.progress(stream, sel, kind, &mut exp),
                    _ => self.canceled(stream, sel, kind, &mut exp),
                }
                self.drain(exp);
            }
            13 => {
                let s = input.byte_or0();
                let flags = input.byte_or0();
                let n = input.byte_or0() as usize;
                let raw = input.bytes(n).to_vec();
                let bytes = if flags & 1 != 0 { frame(&raw) } else { raw };
                let Some(stream) = self.pick_stream(s) else {
                    self.poke_dead(op);
                    return;
                };
                let mut exp = self.expect();
                let st = self.streams.get_mut(&stream).expect("live stream");
                st.garbage = true;
                st.misaligned = true;
                st.metas.clear();
                st.out.extend_from_slice(&bytes);
                if !st.hold {
                    let n = st.out.len();
                    self.feed(stream, n, false, &mut exp);
                }
                self.drain(exp);
            }
            14 => {
                let s = input.byte_or0();
                let b = input.byte_or0();
                let Some(stream) = self.pick_stream(s) else {
                    self.poke_dead(op);
                    return;
                };
                let mut exp = self.expect();
                let st = self.streams.get_mut(&stream).expect("live stream");
                if b & 0x40 != 0 {
                    st.hold = !st.hold;
                }
                let n = st.out.len() * (b & 0x3f) as usize / 63;
                self.feed(stream, n, b & 0x80 != 0, &mut exp);
                self.drain(exp);
            }
            15 => {
                let s = input.byte_or0();
                let flags = input.byte_or0();
                let trailers = status_spec(input);
                let Some(stream) = self.pick_stream(s) else {
                    self.core
                        .handle_trailers(self.dead_stream(), &trailers, self.now);
                    self.drain(self.expect());
                    return;
                };
                let mut exp = self.expect();
                if flags & 1 != 0 {
                    let n = self.streams[&stream].out.len();
                    self.feed(stream, n, false, &mut exp);
                }
                if self.streams[&stream].live {
                    self.peer_ended(stream);
                    self.group_may_end(stream, &mut exp);
                }
                self.core.handle_trailers(stream, &trailers, self.now);
                self.drain(exp);
            }
            16 => {
                let s = input.byte_or0();
                let b = input.byte_or0();
                let status = [200, 200, 200, 503, 404, 500, 502, 204][(b & 7) as usize];
                let status = StatusCode::from_u16(status).expect("valid");
                let end_stream = b & 8 != 0;
                let headers = if end_stream {
                    status_spec(input)
                } else {
                    HeaderMap::new()
                };
                let target = self.pick_stream(s);
                let stream = target.unwrap_or_else(|| self.dead_stream());
                let mut exp = self.expect();
                if target.is_some() {
                    if end_stream {
                        self.peer_ended(stream);
                        self.group_may_end(stream, &mut exp);
                    } else {
                        let st = self.streams.get_mut(&stream).expect("live stream");
                        st.http_ok = status == StatusCode::OK;
                    }
                }
                self.core
                    .handle_response_headers(stream, status, &headers, end_stream, self.now);
                self.drain(exp);
            }
            17 | 18 => {
                let s = input.byte_or0();
                let b = input.byte_or0();
                let target = self.pick_stream(s);
                let stream = target.unwrap_or_else(|| self.dead_stream());
                let mut exp = self.expect();
                if target.is_some() {
                    self.peer_ended(stream);
                    self.group_may_end(stream, &mut exp);
                }
                if op == 17 {
                    let reason = [0, 1, 2, 7, 8, 11, 12, 13][(b & 7) as usize];
                    self.core.handle_stream_reset(stream, reason, self.now);
                } else {
                    self.core
                        .handle_stream_error(stream, "stream broke", b & 1 != 0, self.now);
                }
                self.drain(exp);
            }
            19 | 20 => {
                if op == 19 {
                    let ms = DELTAS_MS[input.byte_or0() as usize % DELTAS_MS.len()];
                    self.now += Duration::from_millis(ms);
                } else if let Some(at) = self.core.poll_timeout() {
                    self.now = self.now.max(at);
                }
                self.timer_late = false;
                self.core.handle_timeout(self.now);
                self.drain(Expect {
                    any: true,
                    ..Default::default()
                });
            }
            21 => {
                let s = input.byte_or0();
                let kind = input.byte_or0();
                self.answer_range(s, kind);
            }
            22 => {
                if self.ping_outstanding {
                    self.ping_outstanding = false;
                    self.core.handle_pong(EP, self.now);
                }
                self.drain(self.expect());
            }
            23 => self.close(),
            _ => {
                let ms = DELTAS_MS[input.byte_or0() as usize % DELTAS_MS.len()];
                self.now += Duration::from_millis(ms);
                if ms > 0 {
                    self.timer_late = true;
                }
            }
        }
    }

    /// The default expectation of a step: no watcher ends, except a resyncing one when a
    /// timer is late (its call may be dispatched past its deadline).
    fn expect(&self) -> Expect {
        let mut exp = Expect::default();
        if self.timer_late {
            exp.allowed.extend(
                self.watchers
                    .iter()
                    .filter(|(_, w)| w.live && w.resyncing)
                    .map(|(id, _)| *id),
            );
        }
        exp
    }

    fn auto_connect(&mut self) {
        if self.auto_connect && self.conn == Conn::Connecting && !self.closed {
            self.connect();
        }
    }

    fn connect(&mut self) {
        if self.conn == Conn::Connecting {
            self.conn = Conn::Connected;
        }
        self.core.handle_connected(EP, self.now);
        self.drain(self.expect());
    }

    fn start_watch(&mut self, a: u8, b: u8) {
        let n = self.next_key;
        self.next_key += 1;
        let spec = Spec {
            key: format!("w{n}"),
            prefix: a & 1 != 0,
            from_key: b & 128 != 0,
            prev_kv: a & 2 != 0,
            fragment: a & 4 != 0,
            progress_notify: a & 8 != 0,
            no_delete: b & 64 != 0,
            require_leader: a & 16 != 0,
        };
        let head = self.head();
        let start = match b & 7 {
            0 | 1 => 0,
            2 => 1,
            3 => head,
            4 => head - 1,
            5 => head + 1,
            6 => head + 3,
            _ => -1,
        };
        let buffer = match (b >> 3) & 7 {
            2 => Some(1),
            3 => Some(16),
            4 => Some(64),
            5 => Some(256),
            6 => Some(1024),
            _ => None,
        };
        let opts = Opts {
            own: a & 32 != 0,
            resync: a & 64 != 0,
            created_notify: a & 128 != 0,
            start,
            buffer,
            coalesce: true,
        };
        self.add_watch(spec, opts);
    }

    /// A watch of the same request as an earlier watcher (see the table).
    fn watch_again(&mut self, x: u8, v: u8) {
        let of = self.order[x as usize % self.order.len()];
        let mut spec = self.watchers[&of].spec.clone();
        let mut opts = Opts {
            own: false,
            resync: false,
            created_notify: v & 8 != 0,
            start: 0,
            buffer: [None, Some(1), Some(64), Some(1024)][((v >> 4) & 3) as usize],
            coalesce: true,
        };
        match v & 7 {
            4 => opts.coalesce = false,
            5 => opts.start = self.head(),
            6 => opts.own = true,
            7 => match v >> 6 {
                0 => spec.prev_kv = !spec.prev_kv,
                1 => spec.fragment = !spec.fragment,
                2 => spec.progress_notify = !spec.progress_notify,
                _ => spec.require_leader = !spec.require_leader,
            },
            _ => {}
        }
        if self.trace {
            eprintln!("  watch again as {of:?}: {spec:?} {opts:?}");
        }
        self.add_watch(spec, opts);
    }

    fn add_watch(&mut self, spec: Spec, o: Opts) {
        let mut watch = Watch::new(spec.key.as_str());
        if spec.prefix {
            watch = watch.prefix();
        }
        if spec.prev_kv {
            watch = watch.prev_kv();
        }
        if spec.fragment {
            watch = watch.fragment();
        }
        if spec.progress_notify {
            watch = watch.progress_notify();
        }
        if spec.require_leader {
            watch = watch.require_leader();
        }
        if o.own {
            watch = watch.own_stream();
        }
        if o.resync {
            watch = watch.resync_on_compaction();
        }
        if o.created_notify {
            watch = watch.created_notify();
        }
        watch = watch.start_revision(o.start);
        if let Some(bytes) = o.buffer {
            watch = watch.buffer_bytes(bytes);
        }
        if spec.no_delete {
            watch = watch.no_delete();
        }
        let invalid = spec.from_key && spec.prefix;
        if spec.from_key {
            watch = watch.from_key();
        }
        if !o.coalesce {
            watch = watch.coalesce(false);
        }
        // The core shares a server watch between identical watches from "now".
        let coalescing = o.coalesce && !o.own && !o.resync && o.start == 0;
        let joins = if coalescing {
            self.share_of_spec
                .get(&spec)
                .copied()
                .filter(|&s| !self.live_members(s).is_empty())
        } else {
            None
        };
        let result = self.core.watch(watch, self.now);
        let mut exp = self.expect();
        match result {
            Ok(id) => {
                assert!(!self.closed, "watch started after close");
                assert!(!invalid, "prefix and from_key accepted");
                assert!(!self.watchers.contains_key(&id), "{id:?} reused");
                assert!(
                    !self.wire_owner.contains_key(&(id.0 as i64)),
                    "{id:?} was a wire ID already"
                );
                let group = if o.own {
                    Group::Own(id)
                } else {
                    Group::Shared {
                        require_leader: spec.require_leader,
                    }
                };
                // Members of a share are announced together: when it is created, a follower
                // is at once, else with it.
                let created = joins.is_some_and(|s| self.share_created(s));
                if created {
                    exp.must_created.insert(id);
                }
                let share = match joins {
                    Some(s) => {
                        if self.trace {
                            eprintln!("  {id:?} follows share {s} (created: {created})");
                        }
                        self.shares[s].members.push(id);
                        s
                    }
                    None => {
                        self.shares.push(ShareModel {
                            members: vec![id],
                            holder: Some(id),
                            group,
                            first_create: None,
                            current_wire: None,
                            stream: None,
                            sent: Vec::new(),
                            counting: false,
                            premature: false,
                        });
                        let s = self.shares.len() - 1;
                        if coalescing {
                            self.share_of_spec.insert(spec.clone(), s);
                        }
                        s
                    }
                };
                self.key_owner
                    .entry(Bytes::from(spec.key.clone().into_bytes()))
                    .or_default()
                    .push(id);
                self.watchers.insert(
                    id,
                    WatcherModel {
                        spec,
                        share,
                        follower: joins.is_some(),
                        group,
                        start: o.start,
                        resync: o.resync,
                        created_notify: o.created_notify,
                        limit: o.buffer.unwrap_or(DEFAULT_WATCH_BUFFER),
                        live: true,
                        announced: false,
                        created_rev: None,
                        join_seen: self.max_seen,
                        resyncing: false,
                        max_rev: None,
                        seen: HashSet::new(),
                        // A follower starts where the client is, not where it asked.
                        moved: joins.is_some(),
                        buffered: 0,
                        checked: 0,
                        early: false,
                    },
                );
                self.order.push(id);
                self.drain(exp);
                let w = &self.watchers[&id];
                assert!(
                    !w.follower || created || !w.announced,
                    "{id:?} announced before its share was created"
                );
                return;
            }
            Err(Error::ClientClosed) => assert!(self.closed, "ClientClosed from an open client"),
            Err(Error::InvalidRequest(_)) if invalid => {}
            Err(e) => panic!("watch failed: {e:?}"),
        }
        self.drain(exp);
    }

    /// The live members of a share.
    fn live_members(&self, share: usize) -> Vec<WatchId> {
        self.shares[share]
            .members
            .iter()
            .copied()
            .filter(|m| self.watchers[m].live)
            .collect()
    }

    /// Whether the server watch of a share has been reported created (to its live members).
    fn share_created(&self, share: usize) -> bool {
        self.shares[share]
            .members
            .iter()
            .any(|m| self.watchers[m].live && self.watchers[m].announced)
    }

    fn pick_watcher(&self, b: u8) -> WatchId {
        self.order
            .get(b as usize % (self.order.len() + 1))
            .copied()
            .unwrap_or(WatchId(u64::MAX))
    }

    fn pick_stream(&self, b: u8) -> Option<StreamId> {
        let live: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.live)
            .map(|(id, _)| *id)
            .collect();
        live.get(b as usize % (live.len() + 1)).copied()
    }

    /// A stream the core no longer knows (or never knew).
    fn dead_stream(&self) -> StreamId {
        self.streams
            .iter()
            .rev()
            .find(|(_, s)| !s.live)
            .map(|(id, _)| *id)
            .unwrap_or(StreamId(u64::MAX - 1))
    }

    /// A server message for a stream that is gone: the core must ignore it.
    fn poke_dead(&mut self, op: u8) {
        let msg = PbWatchResponse {
            header: Some(header(self.head())),
            watch_id: 1,
            created: op == 7,
            events: self.rev_events(1, false),
            ..Default::default()
        };
        let data = Bytes::from(frame(&msg.encode_to_vec()));
        self.core
            .handle_data(self.dead_stream(), data, false, self.now);
        self.drain(self.expect());
    }

    fn head(&self) -> i64 {
        self.history.len() as i64
    }

    /// Extends the store history up to `rev`.
    fn ensure(&mut self, rev: i64, seed: u8) {
        while self.head() < rev {
            let r = self.head() as usize + 1;
            let n = 1 + (seed as usize + r) % 3;
            let first = (seed as usize * 7 + r * 3) % KEYS.len();
            let entry = (0..n)
                .map(|i| {
                    let delete = seed & 16 != 0 && i == n - 1 && r.is_multiple_of(2);
                    let len = [1, 8, 40, 200][((seed >> 6) as usize + i) % 4];
                    ((first + i) % KEYS.len(), delete, len)
                })
                .collect();
            self.history.push(entry);
        }
    }

    fn rev_events(&self, rev: i64, prev_kv: bool) -> Vec<PbEvent> {
        if rev < 1 || rev > self.head() {
            return Vec::new();
        }
        self.history[rev as usize - 1]
            .iter()
            .map(|&(k, delete, len)| {
                let kv = KeyValue {
                    key: Bytes::from_static(KEYS[k].as_bytes()),
                    create_revision: 1,
                    mod_revision: rev,
                    version: if delete { 0 } else { rev },
                    value: if delete {
                        Bytes::new()
                    } else {
                        Bytes::from(vec![b'v'; len])
                    },
                    lease: 0,
                };
                PbEvent {
                    r#type: if delete {
                        EventType::Delete as i32
                    } else {
                        EventType::Put as i32
                    },
                    prev_kv: prev_kv.then(|| KeyValue {
                        mod_revision: rev - 1,
                        value: Bytes::from_static(b"old"),
                        ..kv.clone()
                    }),
                    kv: Some(kv),
                }
            })
            .collect()
    }

    /// A wire ID on this stream: a watch the server created there, or (one past the end) a
    /// foreign one (bit 7: a wire ID the client used that is not active here, else one it
    /// never used).
    fn pick_wire(&self, stream: StreamId, sel: u8, foreign_known: bool) -> (i64, bool) {
        let st = &self.streams[&stream];
        let active: Vec<i64> = st.active.keys().copied().collect();
        if let Some(&wire) = active.get(sel as usize % (active.len() + 1)) {
            return (wire, true);
        }
        // Not one active here: its events would merge with an unfinished fragment.
        let known: Vec<i64> = self
            .wire_owner
            .keys()
            .copied()
            .filter(|w| !st.active.contains_key(w))
            .collect();
        if foreign_known && sel & 0x80 != 0 && !known.is_empty() {
            return (known[sel as usize % known.len()], false);
        }
        (UNKNOWN_WIRE + (sel & 0x7f) as i64, false)
    }

    /// Frames a server message on a live stream and feeds it unless bytes are held back.
    fn send(&mut self, stream: StreamId, msg: PbWatchResponse, meta: Meta, exp: &mut Expect) {
        let bytes = frame(&msg.encode_to_vec());
        let st = self.streams.get_mut(&stream).expect("live stream");
        if !st.garbage {
            st.metas.push_back((bytes.len(), meta));
        }
        st.out.extend_from_slice(&bytes);
        if !st.hold {
            let n = st.out.len();
            self.feed(stream, n, false, exp);
        }
    }

    /// Feeds `n` held bytes of a live stream to the core, and works out what the whole frames
    /// among them may and must do.
    fn feed(&mut self, stream: StreamId, n: usize, end_stream: bool, exp: &mut Expect) {
        let limit = self.limit;
        let st = self.streams.get_mut(&stream).expect("known stream");
        let n = n.min(st.out.len());
        let chunk: Vec<u8> = st.out.drain(..n).collect();
        // Whole frames: Ok(meaning) for generated ones, Err(bytes) for the rest.
        let mut frames: Vec<Result<Meta, Vec<u8>>> = Vec::new();
        let mut broken = false;
        if st.live {
            st.received += chunk.len();
            if !st.http_ok {
                // The core ignores the body of a non-200 response.
                st.garbage = true;
                st.metas.clear();
            } else if !st.failed {
                st.decoder.extend_from_slice(&chunk);
                while st.decoder.len() >= PREFIX_LEN {
                    let d = &st.decoder;
                    let len = u32::from_be_bytes([d[1], d[2], d[3], d[4]]) as usize;
                    if d[0] != 0 || len > limit {
                        st.failed = true;
                        broken = true;
                        break;
                    }
                    if d.len() < PREFIX_LEN + len {
                        break;
                    }
                    let whole: Vec<u8> = st.decoder.drain(..PREFIX_LEN + len).collect();
                    if st.garbage {
                        frames.push(Err(whole[PREFIX_LEN..].to_vec()));
                    } else {
                        let (l, meta) = st.metas.pop_front().expect("a generated frame");
                        assert_eq!(l, whole.len(), "model framing out of step");
                        frames.push(Ok(meta));
                    }
                }
            }
            for f in frames {
                let go_on = match f {
                    Ok(meta) => {
                        self.evaluate(stream, meta, exp);
                        true
                    }
                    Err(msg) => self.evaluate_raw(stream, &msg, exp),
                };
                if !go_on {
                    // The core fails the stream: later frames are never looked at.
                    break;
                }
            }
            if broken {
                self.group_may_end(stream, exp);
            }
            if end_stream {
                self.peer_ended(stream);
                self.group_may_end(stream, exp);
            }
        }
        self.core
            .handle_data(stream, Bytes::from(chunk), end_stream, self.now);
    }

    /// The share with live members whose current wire ID this is.
    fn current_share(&self, wire: i64) -> Option<usize> {
        let share = *self.wire_owner.get(&wire)?;
        (self.shares[share].current_wire == Some(wire) && !self.live_members(share).is_empty())
            .then_some(share)
    }

    /// The server ended a share's watch: every member must end, unless compaction makes it
    /// resync.
    fn target(&self, share: usize, compaction: bool, exp: &mut Expect) {
        for id in self.live_members(share) {
            exp.allowed.insert(id);
            if compaction && self.watchers[&id].resync {
                exp.resync.insert(id);
            } else {
                exp.must_end.insert(id);
            }
        }
    }

    /// The stream may fail: every watcher of its group may end (all when its group is not
    /// known yet).
    fn group_may_end(&self, stream: StreamId, exp: &mut Expect) {
        match self.streams.get(&stream).and_then(|s| s.group) {
            Some(g) => exp.allowed.extend(
                self.watchers
                    .iter()
                    .filter(|(_, w)| w.live && w.group == g)
                    .map(|(id, _)| *id),
            ),
            None => exp.any = true,
        }
    }

    fn evaluate(&mut self, stream: StreamId, meta: Meta, exp: &mut Expect) {
        if self.trace {
            eprintln!("  frame {meta:?} on {stream:?}");
        }
        match meta {
            Meta::Plain => {}
            Meta::Events { wire, new } => {
                if let Some(share) = self.current_share(wire) {
                    let s = &mut self.shares[share];
                    if s.counting && s.stream == Some(stream) {
                        s.sent.extend(new);
                    }
                }
            }
            Meta::Progress { wire } => {
                if let Some(share) = self.current_share(wire) {
                    if self.shares[share].stream == Some(stream) {
                        // The holder's progress reaches every created member.
                        for id in self.live_members(share) {
                            if self.watchers[&id].announced {
                                exp.progress.insert(id);
                            }
                        }
                    }
                }
            }
            Meta::Created {
                wire,
                aligned,
                floor,
            } => {
                if let Some(share) = self.current_share(wire).filter(|_| aligned) {
                    for id in self.live_members(share) {
                        if !self.watchers[&id].announced {
                            exp.must_created.insert(id);
                        }
                    }
                    if let Some(floor) = floor.filter(|_| !self.shares[share].premature) {
                        exp.floors.push((share, floor));
                    }
                }
            }
            Meta::Rejected {
                wire,
                compaction,
                aligned,
            } => {
                if !aligned {
                    self.group_may_end(stream, exp);
                    // The client may match it to any create: later events may go nowhere.
                    for s in self.shares.iter_mut() {
                        if s.stream == Some(stream) {
                            s.counting = false;
                        }
                    }
                } else if let Some(share) = wire.and_then(|w| self.current_share(w)) {
                    self.shares[share].counting = false;
                    self.target(share, compaction, exp);
                }
            }
            Meta::Canceled {
                wire,
                compaction,
                aligned,
            } => {
                if let Some(share) = self.current_share(wire) {
                    self.shares[share].counting = false;
                    if aligned {
                        self.target(share, compaction, exp);
                    } else {
                        // A wrong match before may have moved it to a fresh wire ID.
                        exp.allowed.extend(self.live_members(share));
                    }
                }
            }
        }
    }

    /// A whole frame of raw bytes: anything may happen to the stream's watchers; returns
    /// whether the core goes on reading the stream. Events no server would send switch the ordering checks off.
    fn evaluate_raw(&mut self, stream: StreamId, msg: &[u8], exp: &mut Expect) -> bool {
        self.group_may_end(stream, exp);
        let head = self.head();
        let st = self.streams.get_mut(&stream).expect("known stream");
        st.misaligned = true;
        let Ok(resp) = PbWatchResponse::decode(msg) else {
            if self.trace {
                eprintln!("  undecodable frame on {stream:?}");
            }
            return false;
        };
        if self.trace {
            eprintln!("  raw frame on {stream:?}: {resp:?}");
        }
        if resp.fragment || !resp.events.is_empty() {
            let mut sane = !resp.fragment && st.frags.is_empty();
            let mut prev: Option<i64> = None;
            let mut pairs = HashSet::new();
            for e in &resp.events {
                let Some(kv) = &e.kv else {
                    sane = false;
                    break;
                };
                let rev = kv.mod_revision;
                sane &= rev >= 1 && rev <= head && prev.is_none_or(|p| p <= rev);
                sane &= pairs.insert((kv.key.clone(), rev));
                prev = Some(rev);
            }
            if !sane {
                self.tainted = true;
            }
        }
        true
    }

    fn created(&mut self, stream: StreamId, c: u8, exp: &mut Expect) {
        let head = self.head();
        let st = self.streams.get_mut(&stream).expect("live stream");
        let kind = c % 8;
        let normal = kind <= 4 || kind == 7;
        let (wire, meta) = match (normal, st.pending.pop_front()) {
            (true, Some((wire, start, prev_kv))) => {
                let fresh = if start > 0 { start } else { head + 1 };
                let mut cursor = fresh;
                if kind == 3 || kind == 4 {
                    // The server resumes earlier than asked: old events come again.
                    cursor = (cursor - 1 - ((c >> 3) % 4) as i64).max(1);
                }
                if st.cancel_before_created.remove(&wire) {
                    st.owed_cancel.push(wire);
                } else {
                    st.active.insert(
                        wire,
                        ServerWatch {
                            cursor,
                            fresh,
                            last: None,
                            prev_kv,
                        },
                    );
                }
                let aligned = !st.misaligned;
                let floor = (start <= 0).then_some(head);
                (
                    wire,
                    Meta::Created {
                        wire,
                        aligned,
                        floor,
                    },
                )
            }
            (_, popped) => {
                if let Some(p) = popped {
                    st.pending.push_front(p);
                }
                // A stray Created: the client pops its oldest pending create for it.
                st.misaligned = true;
                let active: Vec<i64> = st.active.keys().copied().collect();
                let known: Vec<i64> = self.wire_owner.keys().copied().collect();
                let wire = if kind == 6 && !active.is_empty() {
                    active[(c >> 3) as usize % active.len()]
                } else if c & 0x80 != 0 && !known.is_empty() {
                    known[(c >> 3) as usize % known.len()]
                } else {
                    UNKNOWN_WIRE + (c >> 3) as i64
                };
                (wire, Meta::Plain)
            }
        };
        let msg = PbWatchResponse {
            header: Some(header(head)),
            watch_id: wire,
            created: true,
            ..Default::default()
        };
        self.send(stream, msg, meta, exp);
    }

    fn rejected(&mut self, stream: StreamId, r: u8, exp: &mut Expect) {
        let head = self.head();
        let st = self.streams.get_mut(&stream).expect("live stream");
        let wire = st.pending.pop_front().map(|(w, _, _)| w);
        if let Some(w) = wire {
            st.cancel_before_created.remove(&w);
        }
        let aligned = !st.misaligned && wire.is_some();
        if wire.is_none() {
            // Nothing to reject: the client matches it to whatever create it sends next.
            st.misaligned = true;
        }
        let reason = CANCEL_REASONS[(r % 6) as usize];
        let compact_revision = if r & 8 != 0 { head.max(1) } else { 0 };
        let compaction = compact_revision > 0 || reason == COMPACTED;
        let msg = PbWatchResponse {
            header: Some(header(head)),
            // etcd answers with -1; some servers may name the watch.
            watch_id: match (r & 16 != 0, wire) {
                (true, Some(w)) => w,
                _ => -1,
            },
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            compact_revision,
            ..Default::default()
        };
        let meta = Meta::Rejected {
            wire,
            compaction,
            aligned,
        };
        self.send(stream, msg, meta, exp);
    }

    fn events(&mut self, stream: StreamId, sel: u8, m: u8, exp: &mut Expect) {
        let (wire, active) = self.pick_wire(stream, sel, true);
        if active {
            if let Some((part, meta)) = self.next_fragment(stream, wire) {
                self.send(stream, part, meta, exp);
                return;
            }
        } else {
            self.premature(stream, wire);
        }
        // The revisions sent for the first time start here.
        let mut fresh = i64::MAX;
        let (revs, prev_kv) = if active {
            let st = self.streams.get_mut(&stream).expect("live stream");
            let sw = st.active.get_mut(&wire).expect("active");
            let c = sw.cursor;
            let revs = match m % 5 {
                0 | 1 => {
                    let n = 1 + ((m >> 3) % 3) as i64;
                    sw.cursor = c + n;
                    (c, c + n - 1)
                }
                2 => {
                    // A replay of older revisions, then a new one.
                    let back = 1 + ((m >> 3) % 4) as i64;
                    sw.cursor = c + 1;
                    ((c - back).max(1), c)
                }
                3 => match sw.last {
                    Some(last) => last,
                    None => {
                        sw.cursor = c + 1;
                        (c, c)
                    }
                },
                _ => {
                    let r = (c - 1 - ((m >> 3) % 4) as i64).max(1);
                    (r, r)
                }
            };
            sw.last = Some(revs);
            fresh = sw.fresh;
            sw.fresh = sw.fresh.max(revs.1 + 1);
            (revs, sw.prev_kv)
        } else {
            let r = self.head().max(1);
            ((r, r), false)
        };
        self.ensure(revs.1, m);
        let events: Vec<PbEvent> = (revs.0..=revs.1)
            .flat_map(|r| self.rev_events(r, prev_kv))
            .collect();
        let meta = events_meta(wire, &events, fresh);
        let msg = PbWatchResponse {
            header: Some(header(self.head())),
            watch_id: wire,
            events,
            ..Default::default()
        };
        self.send(stream, msg, meta, exp);
    }

    /// Events or progress for a wire ID the server has not created on this stream: when it is
    /// the pending create of a share (which no server does), its created revision and what it
    /// is sent next are not checked until its next create.
    fn premature(&mut self, stream: StreamId, wire: i64) {
        if let Some(share) = self.current_share(wire) {
            let s = &mut self.shares[share];
            if s.stream == Some(stream) {
                s.premature = true;
                s.counting = false;
            }
        }
    }

    fn next_fragment(&mut self, stream: StreamId, wire: i64) -> Option<(PbWatchResponse, Meta)> {
        let st = self.streams.get_mut(&stream).expect("live stream");
        let parts = st.frags.get_mut(&wire)?;
        let part = parts.pop_front();
        if parts.is_empty() {
            st.frags.remove(&wire);
        }
        part.map(|(msg, new)| {
            let meta = if new.is_empty() {
                Meta::Plain
            } else {
                Meta::Events { wire, new }
            };
            (msg, meta)
        })
    }

    fn fragment(&mut self, stream: StreamId, sel: u8, f: u8, exp: &mut Expect) {
        // Fragments only for watches of this stream or IDs nobody uses: a stray fragment for
        // a watcher would merge with its next events, which no server does.
        let (wire, active) = self.pick_wire(stream, sel, false);
        if active {
            if let Some((part, meta)) = self.next_fragment(stream, wire) {
                self.send(stream, part, meta, exp);
                return;
            }
        }
        let (rev, prev_kv, fresh) = match self
            .streams
            .get_mut(&stream)
            .expect("live stream")
            .active
            .get_mut(&wire)
        {
            Some(sw) if f & 1 != 0 => ((sw.cursor - 1).max(1), sw.prev_kv, sw.fresh),
            Some(sw) => {
                sw.cursor += 1;
                sw.last = Some((sw.cursor - 1, sw.cursor - 1));
                let fresh = sw.fresh;
                sw.fresh = sw.fresh.max(sw.cursor);
                (sw.cursor - 1, sw.prev_kv, fresh)
            }
            None => (self.head().max(1), false, i64::MAX),
        };
        self.ensure(rev, f);
        let head = self.head();
        let events = self.rev_events(rev, prev_kv);
        // The revision is delivered with the last part.
        let new = match events_meta(wire, &events, fresh) {
            Meta::Events { new, .. } => new,
            _ => Vec::new(),
        };
        let per_part = 1 + ((f >> 1) % 2) as usize;
        let mut parts: VecDeque<PbWatchResponse> = events
            .chunks(per_part)
            .map(|chunk| PbWatchResponse {
                header: Some(header(head)),
                watch_id: wire,
                events: chunk.to_vec(),
                fragment: true,
                ..Default::default()
            })
            .collect();
        if parts.len() < 2 || f & 8 != 0 {
            // The last part may carry no event.
            parts.push_back(PbWatchResponse {
                header: Some(header(head)),
                watch_id: wire,
                fragment: true,
                ..Default::default()
            });
        }
        if let Some(last) = parts.back_mut() {
            last.fragment = false;
        }
        let first = parts.pop_front().expect("two parts at least");
        if active {
            let last = parts.len() - 1;
            let parts = parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| (p, if i == last { new.clone() } else { Vec::new() }))
                .collect();
            self.streams
                .get_mut(&stream)
                .expect("live stream")
                .frags
                .insert(wire, parts);
        }
        self.send(stream, first, Meta::Plain, exp);
    }

    fn progress(&mut self, stream: StreamId, sel: u8, h: u8, exp: &mut Expect) {
        let head = self.head();
        let revision = if h % 3 == 2 {
            (head - 1 - ((h >> 2) % 3) as i64).max(0)
        } else {
            head
        };
        let wire = if sel & 1 == 0 {
            -1
        } else {
            let (wire, active) = self.pick_wire(stream, sel >> 1, true);
            if !active {
                self.premature(stream, wire);
            }
            wire
        };
        let st = self.streams.get_mut(&stream).expect("live stream");
        let mut meta = Meta::Plain;
        if wire == -1 {
            st.progress_requests = st.progress_requests.saturating_sub(1);
        } else if !st.frags.contains_key(&wire) {
            meta = Meta::Progress { wire };
        } else if let Some(parts) = st.frags.get_mut(&wire) {
            // It completes the unfinished revision (which no server does): what is left of it
            // comes later, below the watcher's resume point.
            for part in parts.iter_mut() {
                part.1.clear();
            }
        }
        // Everything up to the revision counts as sent.
        for (w, sw) in st.active.iter_mut() {
            if wire == -1 || *w == wire {
                sw.cursor = sw.cursor.max(revision + 1);
                sw.fresh = sw.fresh.max(revision + 1);
            }
        }
        let msg = PbWatchResponse {
            header: Some(header(revision)),
            watch_id: wire,
            ..Default::default()
        };
        self.send(stream, msg, meta, exp);
    }

    fn canceled(&mut self, stream: StreamId, sel: u8, c: u8, exp: &mut Expect) {
        let head = self.head();
        let st = self.streams.get_mut(&stream).expect("live stream");
        let mut candidates: Vec<i64> = st.active.keys().copied().collect();
        candidates.extend(st.owed_cancel.iter().copied());
        let wire = candidates
            .get(sel as usize % (candidates.len() + 1))
            .copied()
            .unwrap_or(UNKNOWN_WIRE + (sel & 0x7f) as i64);
        st.active.remove(&wire);
        st.frags.remove(&wire);
        st.owed_cancel.retain(|w| *w != wire);
        let (compact_revision, reason) = match c % 4 {
            0 => (head.max(1), ""),
            1 => (0, COMPACTED),
            2 => (0, CANCEL_REASONS[(c >> 2) as usize % CANCEL_REASONS.len()]),
            _ => (0, ""),
        };
        let compaction = compact_revision > 0 || reason == COMPACTED;
        let msg = PbWatchResponse {
            header: Some(header(head)),
            watch_id: wire,
            canceled: true,
            compact_revision,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        let aligned = !self.streams[&stream].misaligned;
        let meta = Meta::Canceled {
            wire,
            compaction,
            aligned,
        };
        self.send(stream, msg, meta, exp);
    }

    fn answer_range(&mut self, s: u8, kind: u8) {
        let live: Vec<StreamId> = self
            .ranges
            .iter()
            .filter(|(_, r)| r.live)
            .map(|(id, _)| *id)
            .collect();
        let Some(&stream) = live.get(s as usize % (live.len() + 1)) else {
            let dead = self
                .ranges
                .iter()
                .rev()
                .find(|(_, r)| !r.live)
                .map(|(id, _)| *id)
                .unwrap_or(StreamId(u64::MAX - 2));
            self.core.handle_trailers(dead, &ok_trailers(), self.now);
            self.drain(self.expect());
            return;
        };
        let mut exp = self.expect();
        let id = self.ranges[&stream].watcher;
        if self.watchers.get(&id).is_some_and(|w| w.live) {
            exp.allowed.insert(id);
        }
        self.ranges.get_mut(&stream).expect("live").live = false;
        let now = self.now;
        let body = frame(&self.range_response().encode_to_vec());
        match kind % 8 {
            0 | 1 => {
                self.core.handle_data(stream, Bytes::from(body), false, now);
                self.core.handle_trailers(stream, &ok_trailers(), now);
            }
            2 => {
                let at = (kind >> 3) as usize % body.len();
                let (a, b) = body.split_at(at);
                self.core
                    .handle_data(stream, Bytes::copy_from_slice(a), false, now);
                self.core
                    .handle_data(stream, Bytes::copy_from_slice(b), false, now);
                self.core.handle_trailers(stream, &ok_trailers(), now);
            }
            3 => {
                let mut h = HeaderMap::new();
                h.insert("grpc-status", HeaderValue::from_static("14"));
                self.core
                    .handle_response_headers(stream, StatusCode::OK, &h, true, now);
            }
            4 => {
                let mut h = HeaderMap::new();
                h.insert("grpc-status", HeaderValue::from_static("7"));
                h.insert(
                    "grpc-message",
                    HeaderValue::from_static("etcdserver: permission denied"),
                );
                self.core.handle_trailers(stream, &h, now);
            }
            5 => {
                let garbage = frame(&[0xff, 0xff, 0xff]);
                self.core
                    .handle_data(stream, Bytes::from(garbage), false, now);
                self.core.handle_trailers(stream, &ok_trailers(), now);
            }
            6 => self.core.handle_stream_reset(stream, 7, now),
            _ => self.core.handle_data(stream, Bytes::from(body), true, now),
        }
        self.drain(exp);
    }

    /// The store now, as a Range answer: the latest PUT of every key.
    fn range_response(&self) -> RangeResponse {
        let mut latest: BTreeMap<usize, Option<i64>> = BTreeMap::new();
        for (i, entry) in self.history.iter().enumerate() {
            for &(k, delete, _) in entry {
                latest.insert(k, (!delete).then_some(i as i64 + 1));
            }
        }
        let kvs: Vec<KeyValue> = latest
            .into_iter()
            .filter_map(|(k, rev)| {
                rev.map(|rev| KeyValue {
                    key: Bytes::from_static(KEYS[k].as_bytes()),
                    create_revision: 1,
                    mod_revision: rev,
                    version: rev,
                    value: Bytes::from_static(b"v"),
                    lease: 0,
                })
            })
            .collect();
        RangeResponse {
            header: Some(header(self.head())),
            count: kvs.len() as i64,
            kvs,
            more: false,
        }
    }

    /// The transport ended a live stream.
    fn peer_ended(&mut self, stream: StreamId) {
        self.dead_now.insert(stream);
        self.end_stream(stream);
    }

    fn end_stream(&mut self, stream: StreamId) {
        if let Some(st) = self.streams.get_mut(&stream) {
            st.live = false;
        }
        for s in self.shares.iter_mut() {
            if s.stream == Some(stream) {
                s.stream = None;
            }
        }
    }

    fn all_streams_dead(&mut self) {
        let live: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.live)
            .map(|(id, _)| *id)
            .collect();
        for s in live {
            self.peer_ended(s);
        }
        for r in self.ranges.values_mut() {
            r.live = false;
        }
    }

    fn close(&mut self) {
        let mut exp = Expect {
            closing: true,
            ..Default::default()
        };
        for (id, w) in &self.watchers {
            if w.live {
                exp.must_end.insert(*id);
            }
        }
        let was_closed = self.closed;
        self.core.close(self.now);
        if was_closed {
            self.drain(Expect::default());
        } else {
            self.drain_checked(exp);
            self.closed = true;
        }
        assert_eq!(self.conn, Conn::Idle, "close left a connection");
        assert!(
            self.streams.values().all(|s| !s.live) && self.ranges.values().all(|r| !r.live),
            "close left a stream open"
        );
        self.check_closed();
        let again = self.core.watch(Watch::new("late"), self.now);
        assert!(
            matches!(again, Err(Error::ClientClosed)),
            "watch after close: {again:?}"
        );
        assert!(self.core.request_progress(self.now).is_err());
        self.drain(Expect::default());
    }

    fn check_closed(&self) {
        assert_eq!(self.core.watchers(), 0, "watchers left after close");
        assert_eq!(self.core.calls_in_progress(), 0, "calls left after close");
        for (id, w) in &self.watchers {
            assert!(!w.live, "{id:?} never ended");
        }
    }

    /// Carries out every transmit and delivers every event, checking them; after `close`
    /// nothing may come out.
    fn drain(&mut self, exp: Expect) {
        if self.closed {
            if let Some(t) = self.core.poll_transmit() {
                panic!("transmit after close: {t:?}");
            }
            if let Some(e) = self.core.poll_event() {
                panic!("event after close: {e:?}");
            }
            return;
        }
        self.drain_checked(exp);
    }

    fn drain_checked(&mut self, exp: Expect) {
        if self.trace {
            eprintln!("  expect {exp:?}");
        }
        while let Some(t) = self.core.poll_transmit() {
            if self.trace {
                eprintln!("  transmit {t:?}");
            }
            self.transmit(t);
        }
        let mut ended = BTreeSet::new();
        let mut created = BTreeSet::new();
        let mut progressed = BTreeSet::new();
        while let Some(e) = self.core.poll_event() {
            if self.trace {
                eprintln!("  event {e:?}");
            }
            if let Event::WatchResponse {
                watch, response, ..
            } = &e
            {
                if response.kind == WatchResponseKind::Progress {
                    progressed.insert(*watch);
                }
            }
            self.event(e, &exp, &mut ended, &mut created);
        }
        for id in &exp.progress {
            assert!(
                progressed.contains(id) || ended.contains(id),
                "{id:?} got no progress, which the server sent for its share"
            );
        }
        for id in &exp.must_end {
            assert!(
                ended.contains(id),
                "{id:?} had to end but did not ({exp:?})"
            );
        }
        for id in &exp.must_created {
            // (A watcher ended first, as garbage may make the client do, is not reported.)
            assert!(
                created.contains(id) || ended.contains(id),
                "{id:?} was created by the server but not reported"
            );
        }
        for id in &exp.resync {
            if !ended.contains(id) {
                let w = self.watchers.get_mut(id).expect("known");
                w.resyncing = true;
                // The snapshot sets its resume revision (its create may go out before the
                // snapshot is seen).
                w.moved = true;
                let share = w.share;
                self.shares[share].current_wire = None;
            }
        }
        for &(share, floor) in &exp.floors {
            // Created from "now": the server sends nothing at or below its revision then.
            for id in &self.shares[share].members {
                if created.contains(id) {
                    let c = self.watchers[id].created_rev.expect("announced");
                    assert!(
                        c >= floor,
                        "{id:?} created at {c}, but its server watch was created at {floor} \
                         ({:?})",
                        self.shares[share]
                    );
                }
            }
        }
        self.dead_now.clear();
        for (share, start) in std::mem::take(&mut self.step_creates) {
            let s = &self.shares[share];
            if let Some(h) = s.holder {
                let w = &self.watchers[&h];
                if !w.moved {
                    assert_eq!(start, w.start, "{h:?} created at another revision");
                }
            }
            // The holder is the member furthest behind: past everything any member got
            // (but events before the share was created, which no server sends, may have gone
            // to a holder that left and was followed by one further behind).
            for id in &s.members {
                let w = &self.watchers[id];
                if w.early && s.holder != Some(*id) {
                    continue;
                }
                if let (false, Some(m)) = (self.tainted, w.max_rev) {
                    assert!(
                        start > m,
                        "{:?} resume at {start} after revision {m} was delivered to {id:?}",
                        s.members
                    );
                }
            }
        }
        for (stream, wire) in std::mem::take(&mut self.step_cancels) {
            let share = self
                .current_share(wire)
                .filter(|&s| self.shares[s].stream == Some(stream));
            if let Some(share) = share {
                panic!(
                    "cancel sent for wire ID {wire}, which {:?} still use",
                    self.live_members(share)
                );
            }
        }
        if !self.tainted {
            // Nothing lost: every new event decoded for a share's watch after a member's
            // created revision reached that member.
            for (id, w) in self.watchers.iter_mut() {
                let (true, Some(c)) = (w.live, w.created_rev) else {
                    continue;
                };
                let sent = &self.shares[w.share].sent;
                for (key, rev) in &sent[w.checked..] {
                    assert!(
                        *rev <= c || w.seen.contains(&(key.clone(), *rev)),
                        "{id:?} (created at {c}) never got {key:?}@{rev}, which the server sent \
                         to its share {:?}",
                        self.shares[w.share].members
                    );
                }
                w.checked = sent.len();
            }
        }
        self.check_state();
    }

    fn transmit(&mut self, t: Transmit) {
        match t {
            Transmit::Connect { endpoint, target } => {
                assert_eq!(endpoint, EP);
                assert_eq!(target.authority(), "127.0.0.1:2379");
                assert_eq!(self.conn, Conn::Idle, "connect while {:?}", self.conn);
                self.conn = Conn::Connecting;
            }
            Transmit::OpenStream {
                endpoint,
                stream,
                request,
                body,
                end_stream,
                manual_flow_control,
            } => {
                assert_eq!(endpoint, EP);
                assert_eq!(
                    self.conn,
                    Conn::Connected,
                    "stream opened while {:?}",
                    self.conn
                );
                assert!(
                    !self.streams.contains_key(&stream) && !self.ranges.contains_key(&stream),
                    "{stream:?} reused"
                );
                assert_eq!(request.method(), http::Method::POST);
                let hasleader = request
                    .headers()
                    .get("hasleader")
                    .is_some_and(|v| v == "true");
                match request.uri().path() {
                    WATCH_PATH => {
                        assert!(!end_stream, "a watch stream is bidirectional");
                        assert!(manual_flow_control, "watch streams are flow-controlled");
                        self.streams.insert(stream, WatchStream::new(hasleader));
                        for req in requests(&body) {
                            match req {
                                RequestUnion::CreateRequest(c) => self.on_create(stream, c),
                                other => panic!("{other:?} in the first watch request body"),
                            }
                        }
                    }
                    RANGE_PATH => {
                        assert!(end_stream && !manual_flow_control);
                        let msgs = messages(&body);
                        assert_eq!(msgs.len(), 1, "one Range request");
                        let range = RangeRequest::decode(msgs[0].clone()).expect("a Range request");
                        // Only the first watcher of a key (a fresh watch) may resync.
                        let id = *self
                            .key_owner
                            .get(&range.key)
                            .and_then(|ids| ids.first())
                            .unwrap_or_else(|| panic!("Range of unknown key {:?}", range.key));
                        let w = &self.watchers[&id];
                        assert!(w.resync, "Range for {id:?}, which does not resync");
                        let share = w.share;
                        assert_eq!(
                            Some(&range.range_end),
                            self.shares[share]
                                .first_create
                                .as_ref()
                                .map(|c| &c.range_end),
                            "resync reads another range"
                        );
                        let w = self.watchers.get_mut(&id).expect("known");
                        if w.live {
                            // Resyncing (also when raw bytes started it): a fresh wire ID
                            // follows the snapshot.
                            w.resyncing = true;
                            w.moved = true;
                            self.shares[share].current_wire = None;
                        }
                        self.ranges.insert(
                            stream,
                            RangeStream {
                                watcher: id,
                                live: true,
                            },
                        );
                    }
                    other => panic!("unexpected stream for {other}"),
                }
            }
            Transmit::SendData {
                stream,
                data,
                end_stream,
            } => {
                assert!(!end_stream, "the client never ends a watch stream");
                let live = self.streams.get(&stream).is_some_and(|s| s.live);
                assert!(
                    live || self.dead_now.contains(&stream),
                    "data sent on {stream:?}, which is not a live watch stream"
                );
                for req in requests(&data) {
                    match req {
                        RequestUnion::CreateRequest(c) => self.on_create(stream, c),
                        RequestUnion::CancelRequest(c) => {
                            self.step_cancels.push((stream, c.watch_id));
                            let st = self.streams.get_mut(&stream).expect("live");
                            if st.active.remove(&c.watch_id).is_some() {
                                st.frags.remove(&c.watch_id);
                                st.owed_cancel.push(c.watch_id);
                            } else if st.pending.iter().any(|p| p.0 == c.watch_id) {
                                st.cancel_before_created.insert(c.watch_id);
                            }
                        }
                        RequestUnion::ProgressRequest(_) => {
                            let st = self.streams.get_mut(&stream).expect("live");
                            assert!(
                                matches!(st.group, None | Some(Group::Shared { .. })),
                                "progress requested on a {:?} stream",
                                st.group
                            );
                            st.progress_requests += 1;
                            self.progress_sent += 1;
                        }
                    }
                }
            }
            Transmit::ReleaseCapacity { stream, bytes } => {
                let st = self
                    .streams
                    .get_mut(&stream)
                    .unwrap_or_else(|| panic!("capacity released on unknown {stream:?}"));
                assert!(
                    st.live || self.dead_now.contains(&stream),
                    "capacity released on finished {stream:?}"
                );
                assert!(bytes > 0, "empty release");
                st.released += bytes;
                assert!(
                    st.released <= st.received,
                    "{stream:?}: released {} of {} bytes received",
                    st.released,
                    st.received
                );
            }
            Transmit::ResetStream { stream, reason } => {
                assert_eq!(reason, RESET_CANCEL);
                if let Some(st) = self.streams.get(&stream) {
                    let ended_now = self.dead_now.remove(&stream);
                    assert!(st.live || ended_now, "reset of finished {stream:?}");
                    self.end_stream(stream);
                } else if let Some(r) = self.ranges.get_mut(&stream) {
                    r.live = false;
                } else {
                    panic!("reset of unknown {stream:?}");
                }
            }
            Transmit::Ping { endpoint } => {
                assert_eq!(endpoint, EP);
                assert_eq!(self.conn, Conn::Connected, "ping while {:?}", self.conn);
                assert!(!self.ping_outstanding, "second ping before an answer");
                self.ping_outstanding = true;
            }
            Transmit::Disconnect { endpoint } => {
                assert_eq!(endpoint, EP);
                assert_ne!(self.conn, Conn::Idle, "disconnect without a connection");
                self.all_streams_dead();
                self.conn = Conn::Idle;
                self.ping_outstanding = false;
            }
            other => panic!("unexpected transmit: {other:?}"),
        }
    }

    /// A create request went out on a watch stream: for a share's first create, the wire ID
    /// of the watcher that started it; after a resync, a fresh one (the key names the watcher);
    /// else the share's wire ID (its holder's, inherited by a promoted follower).
    fn on_create(&mut self, stream: StreamId, c: WatchCreateRequest) {
        assert!(c.watch_id > 0, "wire ID {}", c.watch_id);
        let share = match self.wire_owner.get(&c.watch_id) {
            Some(&share) => {
                assert_eq!(
                    self.shares[share].current_wire,
                    Some(c.watch_id),
                    "wire ID {} reused",
                    c.watch_id
                );
                share
            }
            None => {
                let first = self
                    .shares
                    .iter()
                    .position(|s| s.members[0].0 as i64 == c.watch_id && s.first_create.is_none());
                let resync = || {
                    let id = self.key_owner.get(&c.key)?.first()?;
                    let w = &self.watchers[id];
                    let s = &self.shares[w.share];
                    (w.resync && s.first_create.is_some() && s.current_wire.is_none())
                        .then_some(w.share)
                };
                let share = first.or_else(resync).unwrap_or_else(|| {
                    panic!(
                        "create for {:?} with wire ID {}, which no watcher may use",
                        c.key, c.watch_id
                    )
                });
                self.wire_owner.insert(c.watch_id, share);
                share
            }
        };
        let live = self.live_members(share);
        assert!(
            !live.is_empty(),
            "create sent for {:?}, whose watchers all ended",
            self.shares[share].members
        );
        let s = &mut self.shares[share];
        match &s.first_create {
            Some(first) => {
                assert_eq!(
                    (
                        &first.key,
                        &first.range_end,
                        &first.filters,
                        first.prev_kv,
                        first.fragment,
                        first.progress_notify
                    ),
                    (
                        &c.key,
                        &c.range_end,
                        &c.filters,
                        c.prev_kv,
                        c.fragment,
                        c.progress_notify
                    ),
                    "{:?} re-created with other options",
                    s.members
                );
            }
            None => s.first_create = Some(c.clone()),
        }
        // Its resume revision is checked once the step's events are known (the core sends
        // before the driver sees what moved it).
        self.step_creates.push((share, c.start_revision));
        s.current_wire = Some(c.watch_id);
        s.stream = Some(stream);
        s.counting = true;
        s.premature = false;
        let group = s.group;
        let spec = &self.watchers[&s.members[0]].spec;
        assert_eq!(
            (spec.prev_kv, spec.fragment, spec.progress_notify),
            (c.prev_kv, c.fragment, c.progress_notify),
            "{:?} created with options it did not ask for",
            s.members
        );
        let require_leader = spec.require_leader;
        let st = self.streams.get_mut(&stream).expect("known");
        match st.group {
            Some(g) => assert_eq!(g, group, "{share}: shares a stream of another group"),
            None => st.group = Some(group),
        }
        assert_eq!(
            st.hasleader, require_leader,
            "hasleader header of {live:?}'s stream"
        );
        st.pending
            .push_back((c.watch_id, c.start_revision, c.prev_kv));
    }

    fn event(
        &mut self,
        e: Event,
        exp: &Expect,
        ended: &mut BTreeSet<WatchId>,
        created: &mut BTreeSet<WatchId>,
    ) {
        let tainted = self.tainted;
        match e {
            Event::WatchCreated { watch, revision } => {
                let w = self
                    .watchers
                    .get_mut(&watch)
                    .unwrap_or_else(|| panic!("WatchCreated for unknown {watch:?}"));
                assert!(w.live, "WatchCreated for {watch:?} after it ended");
                assert!(!w.announced, "WatchCreated twice for {watch:?}");
                w.announced = true;
                w.created_rev = Some(revision);
                if w.start == 0 {
                    w.moved = true;
                }
                if w.follower {
                    // It never reports what the client saw before it asked.
                    assert!(
                        revision >= w.join_seen,
                        "follower {watch:?} created at {revision}, but revision {} was seen \
                         before it joined",
                        w.join_seen
                    );
                }
                created.insert(watch);
            }
            Event::WatchResponse {
                watch,
                response,
                size,
                ..
            } => {
                let w = self
                    .watchers
                    .get_mut(&watch)
                    .unwrap_or_else(|| panic!("response for unknown {watch:?}"));
                assert!(
                    w.live,
                    "response for {watch:?} after it ended: {response:?}"
                );
                let share = &self.shares[w.share];
                if share.holder.is_some_and(|h| h != watch) {
                    // A follower (surely not the holder) gets nothing before its share is
                    // created.
                    assert!(
                        w.announced,
                        "follower {watch:?} got {response:?} before WatchCreated"
                    );
                }
                if response.kind != WatchResponseKind::Snapshot {
                    self.max_seen = self.max_seen.max(response.header.revision);
                }
                w.buffered += size;
                match response.kind {
                    WatchResponseKind::Events => {
                        assert!(!response.events.is_empty(), "Events without events");
                        assert!(size > 0, "Events of size 0");
                        w.moved = true;
                        w.early |= !w.announced;
                        if !tainted {
                            let prev = w.max_rev;
                            let mut last: Option<i64> = None;
                            for ev in &response.events {
                                let kv = ev.kv.as_ref().expect("event without kv");
                                let rev = kv.mod_revision;
                                if let Some(p) = prev {
                                    assert!(
                                        rev >= p,
                                        "{watch:?}: revision {rev} delivered after {p}"
                                    );
                                }
                                if let Some(l) = last {
                                    assert!(
                                        rev >= l,
                                        "{watch:?}: events out of order ({rev} after {l})"
                                    );
                                }
                                assert!(
                                    w.seen.insert((kv.key.clone(), rev)),
                                    "{watch:?}: event {:?}@{rev} delivered twice",
                                    kv.key
                                );
                                if let (true, Some(c)) = (w.follower, w.created_rev) {
                                    assert!(
                                        rev > c,
                                        "follower {watch:?} created at {c} got revision {rev}"
                                    );
                                }
                                last = Some(rev);
                            }
                            w.max_rev = w.max_rev.max(last);
                        }
                    }
                    WatchResponseKind::Progress => {
                        assert!(response.events.is_empty(), "progress with events");
                        w.moved = true;
                    }
                    WatchResponseKind::Created => {
                        assert!(response.events.is_empty(), "Created with events");
                        assert!(w.created_notify, "Created delivered without created_notify");
                    }
                    WatchResponseKind::Snapshot => {
                        assert!(w.resync, "snapshot for {watch:?}, which does not resync");
                        assert!(
                            w.resyncing,
                            "snapshot for {watch:?}, which was not resyncing"
                        );
                        w.resyncing = false;
                        w.moved = true;
                    }
                    other => panic!("unknown response kind {other:?}"),
                }
            }
            Event::WatchEnded { watch, error } => {
                let w = self
                    .watchers
                    .get_mut(&watch)
                    .unwrap_or_else(|| panic!("WatchEnded for unknown {watch:?}"));
                assert!(w.live, "{watch:?} ended twice");
                let cancelled = exp.cancelled.contains(&watch);
                assert!(
                    exp.any || exp.closing || cancelled || exp.allowed.contains(&watch),
                    "{watch:?} ended ({error:?}), which this step must not do ({exp:?})"
                );
                if cancelled {
                    assert!(error.is_none(), "cancelled {watch:?} ended with {error:?}");
                } else {
                    assert!(error.is_some(), "{watch:?} ended without an error");
                }
                if exp.closing {
                    assert!(
                        matches!(error, Some(Error::ClientClosed)),
                        "{watch:?} ended with {error:?} on close"
                    );
                }
                w.live = false;
                w.resyncing = false;
                ended.insert(watch);
                // The model knows the holder again once one member is left (a cancelled
                // holder hands its server watch to a follower it cannot see).
                let share = w.share;
                let rest = self.live_members(share);
                if self.trace && (!rest.is_empty() || self.shares[share].members.len() > 1) {
                    let holder = self.shares[share].holder;
                    eprintln!("  share {share} (holder {holder:?}) left to {rest:?}");
                }
                let s = &mut self.shares[share];
                if s.holder.is_none_or(|h| h == watch) {
                    s.holder = (rest.len() == 1).then(|| rest[0]);
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
    }

    fn check_state(&self) {
        let live: Vec<(&WatchId, &WatcherModel)> =
            self.watchers.iter().filter(|(_, w)| w.live).collect();
        assert_eq!(self.core.watchers(), live.len(), "watchers() disagrees");
        // Flow control: never more than received; everything when nobody is over its buffer.
        let over = live.iter().any(|(_, w)| w.buffered > w.limit);
        for (id, st) in self.streams.iter().filter(|(_, s)| s.live) {
            assert!(st.released <= st.received);
            if !over {
                assert_eq!(
                    st.released, st.received,
                    "{id:?}: capacity held back while no watcher is over its buffer"
                );
            }
            // No stream outlives its watchers.
            if let Some(g) = st.group {
                assert!(
                    live.iter().any(|(_, w)| w.group == g),
                    "{id:?} stays open without watchers"
                );
            } else {
                assert!(!live.is_empty(), "{id:?} stays open without watchers");
            }
        }
        // Nobody stranded: a stream, a connection attempt or a timer for every watcher.
        if !live.is_empty() && self.conn != Conn::Connecting && self.core.poll_timeout().is_none() {
            for (id, w) in &live {
                let covered = if w.resyncing {
                    self.ranges.values().any(|r| r.live && r.watcher == **id)
                } else {
                    self.shares[w.share]
                        .stream
                        .is_some_and(|s| self.streams[&s].live)
                };
                assert!(covered, "{id:?} is stranded ({w:?}, {:?})", self.conn);
            }
        }
    }
}

fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision,
        raft_term: 3,
    }
}

/// The meaning of events sent for a wire: those at or after `fresh` are new.
fn events_meta(wire: i64, events: &[PbEvent], fresh: i64) -> Meta {
    let new: Vec<(Bytes, i64)> = events
        .iter()
        .filter_map(|e| e.kv.as_ref())
        .filter(|kv| kv.mod_revision >= fresh)
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect();
    if new.is_empty() {
        Meta::Plain
    } else {
        Meta::Events { wire, new }
    }
}

fn ok_trailers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from_static("0"));
    h
}

/// One well-formed gRPC message.
fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + msg.len());
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// The messages of a request body the client sent (which must be well framed).
fn messages(body: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        assert!(body.len() - at >= PREFIX_LEN, "truncated request prefix");
        assert_eq!(body[at], 0, "request flag");
        let len =
            u32::from_be_bytes([body[at + 1], body[at + 2], body[at + 3], body[at + 4]]) as usize;
        assert!(body.len() - at - PREFIX_LEN >= len, "truncated request");
        out.push(Bytes::copy_from_slice(
            &body[at + PREFIX_LEN..at + PREFIX_LEN + len],
        ));
        at += PREFIX_LEN + len;
    }
    out
}

fn requests(body: &[u8]) -> Vec<RequestUnion> {
    messages(body)
        .into_iter()
        .map(|m| {
            WatchRequest::decode(m)
                .expect("a WatchRequest")
                .request_union
                .expect("a request")
        })
        .collect()
}

/// Trailers (or trailers-only headers) from a status spec in the input.
fn status_spec(input: &mut Input<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let s = input.byte_or0();
    if let Some(v) = GRPC_STATUSES[(s % 16) as usize] {
        headers.insert("grpc-status", HeaderValue::from_static(v));
    }
    let m = GRPC_MESSAGES[(s >> 4) as usize % GRPC_MESSAGES.len()];
    if !m.is_empty() {
        headers.insert("grpc-message", HeaderValue::from_static(m));
    }
    headers
}
