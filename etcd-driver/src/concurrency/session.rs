//! A session: a lease kept alive for as long as the program holds it (Go's
//! `concurrency.Session`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use etcd_proto_core::rpc::lease::LeaseRevoke;
use etcd_proto_core::{Error, EtcdErrorKind};

use super::fire_and_forget;
use crate::{Client, LeaseKeeper};

/// The TTL of a session's lease unless [`SessionOptions::ttl`] says otherwise (Go's
/// `defaultSessionTTL`).
pub const DEFAULT_SESSION_TTL: i64 = 60;

/// How to start a [`Session`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct SessionOptions {
    ttl: Option<i64>,
    lease: Option<i64>,
}

impl SessionOptions {
    /// The defaults: a fresh lease of [`DEFAULT_SESSION_TTL`] seconds.
    pub fn new() -> SessionOptions {
        SessionOptions::default()
    }

    /// The TTL of the lease to grant, in seconds; `<= 0` means the default (Go's `WithTTL`).
    /// With [`SessionOptions::lease`], only the bound of [`Session::close`]'s revoke.
    pub fn ttl(mut self, seconds: i64) -> Self {
        self.ttl = (seconds > 0).then_some(seconds);
        self
    }

    /// Keeps this existing lease alive instead of granting one (Go's `WithLease`).
    pub fn lease(mut self, lease: i64) -> Self {
        self.lease = Some(lease);
        self
    }
}

/// Why a session's keepalive ended: the value of [`Session::done`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEnd {
    /// [`Session::orphan`]: renewals stopped; the lease lives on until its TTL runs out.
    Orphaned,
    /// [`Session::close`]: renewals stopped and the lease was revoked.
    Closed,
    /// The lease is gone or must be presumed gone: the keeper's final error
    /// ([`Error::LeaseLost`] with the reason, or [`Error::ClientClosed`]).
    Lost(Error),
}

/// Wakes every task waiting on a session's end. The keeper's channel holds one waker; this is
/// the one it holds, so that any number of [`Session::done`] futures (and the waits of
/// mutexes and elections) are woken.
#[derive(Default)]
struct FanOut {
    wakers: StdMutex<Vec<Waker>>,
}

impl FanOut {
    fn register(&self, waker: &Waker) {
        let mut wakers = lock(&self.wakers);
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
        }
    }
}

impl Wake for FanOut {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for waker in wakers {
            waker.wake();
        }
    }
}

fn lock<T>(mutex: &StdMutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct State {
    keeper: Option<LeaseKeeper>,
    end: Option<SessionEnd>,
    /// The TTL the server confirmed last.
    remaining: Option<i64>,
}

struct Shared {
    client: Client,
    lease: i64,
    ttl: i64,
    state: StdMutex<State>,
    fan_out: Arc<FanOut>,
}

impl Shared {
    /// Reads what the keeper reported, recording its end. Polls with the fan-out waker, so the
    /// keeper wakes every registered waiter.
    fn pump(&self, state: &mut State) {
        let waker = Waker::from(self.fan_out.clone());
        let mut cx = Context::from_waker(&waker);
        while state.end.is_none() {
            let Some(keeper) = state.keeper.as_mut() else {
                return;
            };
            match keeper.poll_next(&mut cx) {
                Poll::Pending => return,
                Poll::Ready(Some(Ok(renewed))) => state.remaining = Some(renewed.ttl),
                Poll::Ready(Some(Err(e))) => state.end = Some(SessionEnd::Lost(e)),
                Poll::Ready(None) => state.end = Some(SessionEnd::Lost(Error::ClientClosed)),
            }
        }
        state.keeper = None;
    }

    fn finish(&self, end: SessionEnd) {
        {
            let mut state = lock(&self.state);
            if state.end.is_none() {
                state.end = Some(end);
            }
            // Dropping the keeper stops the renewals (without revoking).
            state.keeper = None;
        }
        self.fan_out.wake_by_ref();
    }
}

/// A lease kept alive in the background, to which mutexes, elections and recipes attach
/// their keys: when the process dies or loses contact, the lease expires and its keys go.
/// Clones share the session (Go passes `*Session`).
///
/// # Keepalive without a task of its own
///
/// The renewals are sent by the client's driver, which schedules them against the lease's
/// confirmed expiry ([`Client::keep_alive`]); they go on whether or not anybody looks. The
/// session holds the [`LeaseKeeper`] only to learn when the lease is lost, and reads it
/// whenever it is asked: [`Session::done`], [`Session::end`], and the waits of
/// [`Mutex`](super::Mutex) and [`Election`](super::Election), which end with
/// [`ConcurrencyError::SessionExpired`](super::ConcurrencyError::SessionExpired) when the
/// lease is lost. So no runtime or spawner is needed here. Each renewal leaves a small notice
/// until the session is next read (about one per TTL/3); a program that holds a session for days
/// without using it can spawn [`Session::done`] on its runtime, which reads them as they come.
///
/// Dropping the last clone stops the renewals without revoking (the lease then expires after
/// its TTL); [`Session::close`] revokes it at once.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("lease", &self.shared.lease)
            .field("ttl", &self.shared.ttl)
            .field("end", &self.end())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Grants a lease of [`DEFAULT_SESSION_TTL`] seconds and keeps it alive (Go's
    /// `NewSession(client)`).
    pub async fn new(client: &Client) -> Result<Session, Error> {
        Session::with_options(client, SessionOptions::new()).await
    }

    /// Starts a session with options (Go's `NewSession(client, opts...)`).
    pub async fn with_options(client: &Client, options: SessionOptions) -> Result<Session, Error> {
        let ttl = options.ttl.unwrap_or(DEFAULT_SESSION_TTL);
        let (lease, keeper) = match options.lease {
            Some(lease) => (lease, client.keep_alive(lease).await?),
            None => {
                let granted = client.lease_grant(ttl).await?;
                match client.keep_alive(&granted).await {
                    Ok(keeper) => (granted.id, keeper),
                    Err(e) => {
                        fire_and_forget(client, LeaseRevoke::new(granted.id));
                        return Err(e);
                    }
                }
            }
        };
        Ok(Session {
            shared: Arc::new(Shared {
                client: client.clone(),
                lease,
                ttl,
                state: StdMutex::new(State {
                    keeper: Some(keeper),
                    end: None,
                    remaining: None,
                }),
                fan_out: Arc::default(),
            }),
        })
    }

    /// The client the session uses.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// The lease ID.
    pub fn lease(&self) -> i64 {
        self.shared.lease
    }

    /// The TTL asked for, in seconds.
    pub fn ttl(&self) -> i64 {
        self.shared.ttl
    }

    /// The TTL the server confirmed with the latest renewal read, if any.
    pub fn remaining_ttl(&self) -> Option<i64> {
        let mut state = lock(&self.shared.state);
        self.shared.pump(&mut state);
        state.remaining
    }

    /// Why the keepalive ended, or `None` while it runs. Never waits.
    pub fn end(&self) -> Option<SessionEnd> {
        let mut state = lock(&self.shared.state);
        self.shared.pump(&mut state);
        state.end.clone()
    }

    /// Whether the lease is lost (expired, revoked, or the client closed). An orphaned or
    /// closed session is not "expired": its end was asked for.
    pub fn is_expired(&self) -> bool {
        matches!(self.end(), Some(SessionEnd::Lost(_)))
    }

    /// Completes when the keepalive ends, saying why (Go's `Done()`). Any number of these
    /// may wait at once; the future owns a handle to the session and can be spawned.
    pub fn done(&self) -> Done {
        Done {
            session: self.clone(),
        }
    }

    /// Polls for the end of the keepalive (the shape of [`Session::done`]).
    pub fn poll_done(&self, cx: &mut Context<'_>) -> Poll<SessionEnd> {
        let mut state = lock(&self.shared.state);
        if let Some(end) = &state.end {
            return Poll::Ready(end.clone());
        }
        // Registered before the keeper is polled, so a wake in between is not lost.
        self.shared.fan_out.register(cx.waker());
        self.shared.pump(&mut state);
        match &state.end {
            Some(end) => Poll::Ready(end.clone()),
            None => Poll::Pending,
        }
    }

    /// Stops the renewals without revoking the lease, which then expires after its TTL; the
    /// keys attached to it stay until then (Go's `Orphan`).
    pub fn orphan(&self) {
        self.shared.finish(SessionEnd::Orphaned);
    }

    /// Stops the renewals and revokes the lease, deleting every key attached to it, within
    /// the TTL (Go's `Close`). A lease that is already gone is not an error.
    pub async fn close(&self) -> Result<(), Error> {
        self.shared.finish(SessionEnd::Closed);
        let bounded = self
            .shared
            .client
            .with_timeout(Duration::from_secs(self.shared.ttl.max(1) as u64));
        match bounded.lease_revoke(self.shared.lease).await {
            Ok(_) => Ok(()),
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::LeaseNotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The future of [`Session::done`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Done {
    session: Session,
}

impl Future for Done {
    type Output = SessionEnd;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<SessionEnd> {
        self.session.poll_done(cx)
    }
}
