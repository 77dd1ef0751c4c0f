//! The application side of lease keepalive.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use etcd_proto_core::proto::etcdserverpb::LeaseGrantResponse;
use etcd_proto_core::{Error, EtcdError, EtcdErrorKind, KeepAliveId, LeaseLostReason};
use tokio::sync::{mpsc, oneshot};

use crate::client::{Client, Inner};
use crate::driver::{Command, KeepAliveUpdate};

/// A lease to keep alive: an ID, or a grant response (whose TTL then bounds the wait for the
/// first renewal exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAliveTarget {
    /// The lease ID.
    pub lease: i64,
    /// Its TTL, when known.
    pub ttl: Option<Duration>,
}

impl From<i64> for KeepAliveTarget {
    fn from(lease: i64) -> Self {
        KeepAliveTarget { lease, ttl: None }
    }
}

impl From<&LeaseGrantResponse> for KeepAliveTarget {
    fn from(granted: &LeaseGrantResponse) -> Self {
        KeepAliveTarget {
            lease: granted.id,
            ttl: Some(Duration::from_secs(granted.ttl.max(0) as u64)),
        }
    }
}

/// A renewal confirmed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAliveResponse {
    /// The lease.
    pub lease: i64,
    /// Remaining TTL in seconds.
    pub ttl: i64,
}

/// Keeps a lease alive while it exists. Read renewals with [`LeaseKeeper::next`]; the stream
/// ends with `Some(Err(Error::LeaseLost { .. }))` saying why the lease is gone, then `None`.
/// Dropping it stops the renewals (without revoking: the lease expires on its own).
pub struct LeaseKeeper {
    inner: Arc<Inner>,
    id: KeepAliveId,
    lease: i64,
    updates: mpsc::UnboundedReceiver<KeepAliveUpdate>,
    done: bool,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("lease", &self.lease)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl LeaseKeeper {
    /// The lease kept alive.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The next renewal, or the end.
    pub async fn next(&mut self) -> Option<Result<KeepAliveResponse, Error>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polls for the next renewal (the `Stream::poll_next` shape).
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<KeepAliveResponse, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.updates.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(KeepAliveUpdate::Renewed { lease, ttl })) => {
                Poll::Ready(Some(Ok(KeepAliveResponse { lease, ttl })))
            }
            Poll::Ready(Some(KeepAliveUpdate::Ended(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Err(Error::ClientClosed)))
            }
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if !self.done {
            let _ = self
                .inner
                .commands
                .send(Command::StopKeepAlive { keeper: self.id });
        }
    }
}

impl Client {
    async fn subscribe(
        &self,
        target: KeepAliveTarget,
        once: bool,
    ) -> Result<(KeepAliveId, mpsc::UnboundedReceiver<KeepAliveUpdate>), Error> {
        let (reply, started) = oneshot::channel();
        let (tx, updates) = mpsc::unbounded_channel();
        self.inner
            .commands
            .send(Command::KeepAlive {
                lease: target.lease,
                ttl_hint: target.ttl,
                once,
                reply,
                updates: tx,
            })
            .map_err(|_| Error::ClientClosed)?;
        let id = started.await.map_err(|_| Error::ClientClosed)??;
        Ok((id, updates))
    }

    /// Keeps a lease alive: `client.keep_alive(&granted)` (exact first deadline) or
    /// `client.keep_alive(id)`. One stream carries every kept lease; renewals are timed by
    /// the core against each lease's confirmed expiry.
    pub async fn keep_alive(
        &self,
        lease: impl Into<KeepAliveTarget>,
    ) -> Result<LeaseKeeper, Error> {
        let target = lease.into();
        let (id, updates) = self.subscribe(target, false).await?;
        Ok(LeaseKeeper {
            inner: self.inner.clone(),
            id,
            lease: target.lease,
            updates,
            done: false,
        })
    }

    /// Renews a lease once; an unknown lease gives the typed `LeaseNotFound` error.
    pub async fn keep_alive_once(&self, lease: i64) -> Result<KeepAliveResponse, Error> {
        let (_, mut updates) = self.subscribe(lease.into(), true).await?;
        match updates.recv().await {
            Some(KeepAliveUpdate::Renewed { lease, ttl }) => Ok(KeepAliveResponse { lease, ttl }),
            Some(KeepAliveUpdate::Ended(Error::LeaseLost {
                reason: LeaseLostReason::NotFound,
                ..
            })) => Err(Error::Etcd(EtcdError {
                kind: EtcdErrorKind::LeaseNotFound,
                code: EtcdErrorKind::LeaseNotFound.canonical_code(),
                message: EtcdErrorKind::LeaseNotFound.message().to_string(),
            })),
            Some(KeepAliveUpdate::Ended(e)) => Err(e),
            None => Err(Error::ClientClosed),
        }
    }

    pub(crate) fn notify_revoked(&self, lease: i64) {
        let _ = self.inner.commands.send(Command::LeaseRevoked { lease });
    }
}
