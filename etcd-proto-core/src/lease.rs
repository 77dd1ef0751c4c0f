//! Lease keepalive: one LeaseKeepAlive stream carries every lease the client keeps alive.
//!
//! Each lease's renewal is scheduled against its **expiry instant as last confirmed by the
//! server**: a response to a request sent at `t` with TTL `ttl` proves the lease lives until
//! at least `t + ttl` (the server renewed it after `t`). The next renewal is sent a third of
//! the TTL after `t`, and never later than a safety margin (a sixth of the TTL) before the
//! expiry, so a reconnect close to the expiry renews at once instead of overshooting it.
//! Whenever a renewal goes out, those due within a twelfth of their TTL (at most 1 s) go in
//! the same write: leases granted at scattered instants settle into shared rounds. A
//! lease ends with a definite [`LeaseLostReason`]: the server said it does not exist (TTL <=
//! 0), or its expiry passed without a confirmation, or it was revoked through this client.
//! Timers live in ordered sets, so each event costs O(log n) in the number of leases.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use etcd_proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use http::{HeaderMap, StatusCode};
use prost::Message;

use super::stream_slot::{reopen_pause, StreamSlot};
use super::{CallOptions, Core, EndpointId, Event, StreamId, StreamOwner, Transmit};
use crate::error::{Error, EtcdErrorKind};
use crate::grpc::encode_message;

const KEEPALIVE_PATH: &str = "/etcdserverpb.Lease/LeaseKeepAlive";

/// One subscription to a lease's keepalive, from [`Core::keep_alive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeepAliveId(pub u64);

/// Why a kept-alive lease is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseLostReason {
    /// The server answered TTL <= 0: the lease was revoked or has expired.
    NotFound,
    /// The lease's expiry passed before the server confirmed a renewal (no connection,
    /// no leader, ...): it must be presumed expired.
    Expired,
    /// It was revoked through this client.
    Revoked,
}

impl std::fmt::Display for LeaseLostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LeaseLostReason::NotFound => "the server no longer has the lease (revoked or expired)",
            LeaseLostReason::Expired => "the lease expired before a renewal was confirmed",
            LeaseLostReason::Revoked => "the lease was revoked",
        })
    }
}

#[derive(Debug)]
struct LeaseState {
    subscribers: BTreeSet<KeepAliveId>,
    /// Confirmed (or, before the first answer, assumed) expiry.
    expiry: Instant,
    /// When the next renewal is due (`None`: one is outstanding).
    next_send: Option<Instant>,
    /// Send instants of unanswered requests, oldest first.
    outstanding: VecDeque<Instant>,
    /// The TTL last confirmed (or the hint), which sets how early a renewal may go out.
    ttl: Option<Duration>,
}

/// The keepalive stream and every kept lease.
#[derive(Debug)]
pub(crate) struct Keeper {
    pub(crate) state: StreamSlot,
    leases: HashMap<i64, LeaseState>,
    subscriptions: HashMap<KeepAliveId, (i64, bool)>,
    renewals: BTreeSet<(Instant, i64)>,
    expiries: BTreeSet<(Instant, i64)>,
    next_id: u64,
    failures: u32,
    avoid: Option<EndpointId>,
}

impl Keeper {
    pub(crate) fn new() -> Keeper {
        Keeper {
            state: StreamSlot::Waiting,
            leases: HashMap::new(),
            subscriptions: HashMap::new(),
            renewals: BTreeSet::new(),
            expiries: BTreeSet::new(),
            next_id: 0,
            failures: 0,
            avoid: None,
        }
    }

    fn open_on(&self) -> Option<(StreamId, EndpointId)> {
        self.state.open_on()
    }

    /// Whether the stream is wanted but not open.
    pub(crate) fn waiting(&self) -> bool {
        !self.leases.is_empty() && matches!(self.state, StreamSlot::Waiting)
    }

    fn schedule(&mut self, lease: i64, at: Instant) {
        if let Some(l) = self.leases.get_mut(&lease) {
            if let Some(old) = l.next_send.replace(at) {
                self.renewals.remove(&(old, lease));
            }
            self.renewals.insert((at, lease));
        }
    }

    fn set_expiry(&mut self, lease: i64, expiry: Instant) {
        if let Some(l) = self.leases.get_mut(&lease) {
            self.expiries.remove(&(l.expiry, lease));
            l.expiry = expiry;
            self.expiries.insert((expiry, lease));
        }
    }

    /// Removes a lease; returns its subscribers.
    fn remove(&mut self, lease: i64) -> Vec<KeepAliveId> {
        let Some(l) = self.leases.remove(&lease) else {
            return Vec::new();
        };
        self.expiries.remove(&(l.expiry, lease));
        if let Some(at) = l.next_send {
            self.renewals.remove(&(at, lease));
        }
        for id in &l.subscribers {
            self.subscriptions.remove(id);
        }
        l.subscribers.into_iter().collect()
    }
}

/// The safety margin before an expiry by which a renewal must have been sent.
fn margin(ttl: Duration) -> Duration {
    (ttl / 6).max(Duration::from_millis(100))
}

/// The longest a renewal is ever sent ahead of its due instant.
const MAX_EARLY: Duration = Duration::from_secs(1);

/// How early a lease's renewal may go out to share the write of one that is due: a twelfth of
/// its TTL (a quarter of its renewal interval), at most [`MAX_EARLY`]. Renewing early is always
/// safe; leases granted at scattered instants then fall into a few shared rounds instead of
/// costing a timer wake-up and a write each.
fn early_window(ttl: Option<Duration>) -> Duration {
    ttl.map_or(Duration::ZERO, |ttl| (ttl / 12).min(MAX_EARLY))
}

impl Core {
    /// Keeps `lease` alive until [`Core::stop_keep_alive`]. `ttl_hint` (the granted TTL, if
    /// known) sets the presumed expiry until the server first confirms; without it the first
    /// confirmation must come within the configured first-keepalive timeout. Renewals arrive
    /// as [`Event::LeaseKeptAlive`], the end as [`Event::LeaseLost`].
    pub fn keep_alive(
        &mut self,
        lease: i64,
        ttl_hint: Option<Duration>,
        now: Instant,
    ) -> Result<KeepAliveId, Error> {
        self.subscribe_lease(lease, ttl_hint, false, now)
    }

    /// Renews `lease` once: one [`Event::LeaseKeptAlive`] (or [`Event::LeaseLost`] with
    /// [`LeaseLostReason::NotFound`]) and the subscription ends.
    pub fn keep_alive_once(&mut self, lease: i64, now: Instant) -> Result<KeepAliveId, Error> {
        self.subscribe_lease(lease, None, true, now)
    }

    fn subscribe_lease(
        &mut self,
        lease: i64,
        ttl_hint: Option<Duration>,
        once: bool,
        now: Instant,
    ) -> Result<KeepAliveId, Error> {
        if self.closed {
            return Err(Error::ClientClosed);
        }
        if lease <= 0 {
            return Err(Error::InvalidRequest(crate::InvalidRequest::Invalid(
                format!("lease ID {lease} cannot be kept alive"),
            )));
        }
        let k = &mut self.keeper;
        let id = KeepAliveId(k.next_id);
        k.next_id += 1;
        k.subscriptions.insert(id, (lease, once));
        let first_timeout = self.config.lease_first_keepalive_timeout;
        if let Some(l) = k.leases.get_mut(&lease) {
            l.subscribers.insert(id);
            if once && l.next_send.is_some() {
                // Renew now so the answer comes promptly.
                k.schedule(lease, now);
            }
        } else {
            let expiry = now + ttl_hint.unwrap_or(first_timeout);
            k.leases.insert(
                lease,
                LeaseState {
                    subscribers: [id].into_iter().collect(),
                    expiry,
                    next_send: None,
                    outstanding: VecDeque::new(),
                    ttl: ttl_hint,
                },
            );
            k.expiries.insert((expiry, lease));
            k.schedule(lease, now);
        }
        self.send_due_renewals(now);
        self.dispatch(now);
        Ok(id)
    }

    /// Ends a subscription; renewals stop when a lease has no subscriber left (the lease is
    /// not revoked: it expires on its own).
    pub fn stop_keep_alive(&mut self, id: KeepAliveId, now: Instant) {
        let k = &mut self.keeper;
        let Some((lease, _)) = k.subscriptions.remove(&id) else {
            return;
        };
        let empty = k.leases.get_mut(&lease).is_some_and(|l| {
            l.subscribers.remove(&id);
            l.subscribers.is_empty()
        });
        if empty {
            k.remove(lease);
        }
        self.drop_keeper_stream_if_idle(now);
    }

    /// The lease was revoked through this client: its subscribers get
    /// [`LeaseLostReason::Revoked`].
    pub fn lease_revoked(&mut self, lease: i64, now: Instant) {
        self.lose_lease(lease, LeaseLostReason::Revoked);
        self.drop_keeper_stream_if_idle(now);
    }

    /// Number of leases kept alive.
    pub fn kept_leases(&self) -> usize {
        self.keeper.leases.len()
    }

    fn lose_lease(&mut self, lease: i64, reason: LeaseLostReason) {
        for keeper in self.keeper.remove(lease) {
            self.events.push_back(Event::LeaseLost {
                keeper,
                lease,
                reason,
            });
        }
    }

    fn drop_keeper_stream_if_idle(&mut self, _now: Instant) {
        if !self.keeper.leases.is_empty() {
            return;
        }
        let old = std::mem::replace(&mut self.keeper.state, StreamSlot::Waiting);
        if let Some((stream, endpoint)) = old.open_on() {
            self.streams.remove(&stream);
            if let Some(ep) = self.endpoint_mut(endpoint) {
                ep.active_streams = ep.active_streams.saturating_sub(1);
            }
            self.transmits.push_back(Transmit::ResetStream {
                stream,
                reason: super::RESET_CANCEL,
            });
        }
    }

    /// Sends every renewal that is due, with those close enough to due to go early (see
    /// [`early_window`]), in one DATA write. The renewals are taken in order of due instant
    /// and the scan stops at the first one that may not go yet, so a call costs what it sends.
    fn send_due_renewals(&mut self, now: Instant) {
        let Some((stream, _)) = self.keeper.open_on() else {
            return;
        };
        let k = &mut self.keeper;
        if k.renewals.first().is_none_or(|&(at, _)| at > now) {
            return;
        }
        let mut batch = BytesMut::new();
        while let Some(&(at, lease)) = k.renewals.first() {
            let may_go = at <= now
                || k.leases
                    .get(&lease)
                    .is_some_and(|l| at <= now + early_window(l.ttl));
            if !may_go {
                break;
            }
            k.renewals.pop_first();
            let Some(l) = k.leases.get_mut(&lease) else {
                continue;
            };
            l.next_send = None;
            l.outstanding.push_back(now);
            if let Ok(frame) = encode_message(
                &LeaseKeepAliveRequest { id: lease },
                self.config.max_send_message_size,
            ) {
                batch.extend_from_slice(&frame);
            }
        }
        if !batch.is_empty() {
            self.transmits.push_back(Transmit::SendData {
                stream,
                data: batch.freeze(),
                end_stream: false,
            });
        }
    }

    /// Opens the keepalive stream when leases are kept and an endpoint is connected.
    /// Returns whether a connection is needed.
    pub(crate) fn dispatch_keeper(&mut self, now: Instant, token_ready: bool) -> bool {
        if !self.keeper.waiting() || !token_ready {
            return false;
        }
        let Some(idx) = self.pick_connected(self.keeper.avoid, now) else {
            return true;
        };
        // The Go client always requires a leader on this stream: a leaderless member cannot
        // renew anything, so the stream should move.
        let options = CallOptions {
            require_leader: true,
            ..Default::default()
        };
        let ep = &self.endpoints[idx];
        let request = self.request_head(ep, KEEPALIVE_PATH, &options, None, true);
        let endpoint = ep.id;
        let stream = StreamId(self.next_stream);
        self.next_stream += 1;
        self.endpoints[idx].active_streams += 1;
        self.streams.insert(stream, StreamOwner::Lease);
        self.keeper.state =
            StreamSlot::open(stream, endpoint, self.config.max_receive_message_size);
        // Requests sent on the old stream may be lost: renew every lease now.
        let leases: Vec<i64> = self.keeper.leases.keys().copied().collect();
        for lease in leases {
            if let Some(l) = self.keeper.leases.get_mut(&lease) {
                l.outstanding.clear();
            }
            self.keeper.schedule(lease, now);
        }
        self.transmits.push_back(Transmit::OpenStream {
            endpoint,
            stream,
            request,
            body: Bytes::new(),
            end_stream: false,
            manual_flow_control: false,
        });
        self.send_due_renewals(now);
        false
    }

    pub(crate) fn keeper_headers(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
        end_stream: bool,
        now: Instant,
    ) {
        self.keeper.state.set_http_status(status);
        if end_stream {
            self.keeper_stream_ended(Some(headers), now);
        }
    }

    pub(crate) fn keeper_data(&mut self, data: Bytes, end_stream: bool, now: Instant) {
        let (messages, mut failure) = self.keeper.state.push(data);
        for msg in messages {
            match LeaseKeepAliveResponse::decode(msg) {
                Ok(resp) => self.keepalive_answered(resp, now),
                Err(e) => {
                    failure = Some(Error::Protocol(format!(
                        "undecodable keepalive response: {e}"
                    )));
                    break;
                }
            }
        }
        if let Some(e) = failure {
            self.keeper_stream_failed(e, true, now);
        } else if end_stream {
            self.keeper_stream_ended(None, now);
        } else {
            self.send_due_renewals(now);
        }
    }

    pub(crate) fn keeper_trailers(&mut self, trailers: &HeaderMap, now: Instant) {
        self.keeper_stream_ended(Some(trailers), now);
    }

    fn keeper_stream_ended(&mut self, trailers: Option<&HeaderMap>, now: Instant) {
        if let Some(error) = self.keeper.state.ended(trailers, "keepalive stream") {
            self.keeper_stream_failed(error, false, now);
        }
    }

    /// The keepalive stream failed: reopen it (after a pause when it keeps failing); leases
    /// keep their confirmed expiries meanwhile.
    pub(crate) fn keeper_stream_failed(&mut self, error: Error, reset: bool, now: Instant) {
        let old = std::mem::replace(&mut self.keeper.state, StreamSlot::Waiting);
        let mut failed = None;
        if let Some((stream, endpoint)) = old.open_on() {
            failed = Some(endpoint);
            self.streams.remove(&stream);
            if let Some(ep) = self.endpoint_mut(endpoint) {
                ep.active_streams = ep.active_streams.saturating_sub(1);
            }
            if reset {
                self.transmits.push_back(Transmit::ResetStream {
                    stream,
                    reason: super::RESET_CANCEL,
                });
            }
        }
        if matches!(
            error.etcd_kind(),
            Some(
                EtcdErrorKind::InvalidAuthToken
                    | EtcdErrorKind::AuthOldRevision
                    | EtcdErrorKind::UserEmpty
            )
        ) && self.config.credentials.is_some()
        {
            self.token_rejected();
        }
        let k = &mut self.keeper;
        k.avoid = failed;
        k.failures += 1;
        let pause = reopen_pause(k.failures, Duration::from_millis(100));
        if !pause.is_zero() {
            k.state = StreamSlot::Backoff { until: now + pause };
        }
        self.dispatch(now);
    }

    fn keepalive_answered(&mut self, resp: LeaseKeepAliveResponse, now: Instant) {
        let lease = resp.id;
        let k = &mut self.keeper;
        k.failures = 0;
        let Some(l) = k.leases.get_mut(&lease) else {
            return;
        };
        let sent_at = l.outstanding.pop_front().unwrap_or(now);
        if resp.ttl <= 0 {
            self.lose_lease(lease, LeaseLostReason::NotFound);
            self.drop_keeper_stream_if_idle(now);
            return;
        }
        let ttl = Duration::from_secs(resp.ttl as u64);
        l.ttl = Some(ttl);
        let expiry = sent_at + ttl;
        let next = (sent_at + ttl / 3).min(expiry - margin(ttl)).max(now);
        let subscribers: Vec<KeepAliveId> = l.subscribers.iter().copied().collect();
        let pending = !l.outstanding.is_empty();
        k.set_expiry(lease, expiry);
        if !pending {
            k.schedule(lease, next);
        }
        let mut once_done = Vec::new();
        for keeper in subscribers {
            self.events.push_back(Event::LeaseKeptAlive {
                keeper,
                lease,
                ttl: resp.ttl,
            });
            if self
                .keeper
                .subscriptions
                .get(&keeper)
                .is_some_and(|(_, once)| *once)
            {
                once_done.push(keeper);
            }
        }
        for keeper in once_done {
            self.stop_keep_alive(keeper, now);
        }
    }

    /// Timers: renewals due, expiries passed, backoff over.
    pub(crate) fn keeper_timers(&mut self, now: Instant) {
        while let Some(&(at, lease)) = self.keeper.expiries.first() {
            if at > now {
                break;
            }
            self.lose_lease(lease, LeaseLostReason::Expired);
        }
        self.keeper.state.expire_backoff(now);
        self.send_due_renewals(now);
        self.drop_keeper_stream_if_idle(now);
    }

    pub(crate) fn keeper_poll_timeout(&self) -> Option<Instant> {
        let k = &self.keeper;
        let renewal = k
            .open_on()
            .and_then(|_| k.renewals.first().map(|(at, _)| *at));
        let backoff = k.state.backoff_until();
        [renewal, k.expiries.first().map(|(at, _)| *at), backoff]
            .into_iter()
            .flatten()
            .min()
    }

    pub(crate) fn keeper_endpoint(&self) -> Option<EndpointId> {
        self.keeper.open_on().map(|(_, e)| e)
    }

    pub(crate) fn keeper_on(&self, endpoint: EndpointId) -> bool {
        self.keeper.open_on().is_some_and(|(_, e)| e == endpoint)
    }

    pub(crate) fn close_keeper(&mut self) {
        let leases: Vec<i64> = self.keeper.leases.keys().copied().collect();
        for lease in leases {
            for keeper in self.keeper.remove(lease) {
                self.events
                    .push_back(Event::LeaseKeepAliveClosed { keeper, lease });
            }
        }
        if let Some((stream, _)) =
            std::mem::replace(&mut self.keeper.state, StreamSlot::Waiting).open_on()
        {
            self.streams.remove(&stream);
            self.transmits.push_back(Transmit::ResetStream {
                stream,
                reason: super::RESET_CANCEL,
            });
        }
    }
}
