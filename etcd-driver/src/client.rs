//! The async client handle: cheap to clone, usable from any task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_proto_core::proto::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, PutResponse, RangeResponse, TxnResponse,
};
use etcd_proto_core::rpc::kv::{Compact, Delete, Get, Put, Txn};
use etcd_proto_core::rpc::{decode_response, UnaryRpc};
use etcd_proto_core::{
    endpoints_from_members, CallOptions, Config, Core, Endpoint, Error, Watch, WatchId,
};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Command, Driver, StartFn, WatchFlow, WatchSender};
use crate::runtime::Runtime;
use crate::tls::TlsConnector;
use crate::watch::{WatchSet, Watcher};

pub(crate) struct Inner {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) next_token: AtomicU64,
}

/// An etcd client. Clones share one driver and its connections; when the last clone is
/// dropped the driver closes the connections and stops.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    pub(crate) options: CallOptions,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Cancels the call on the driver if the caller stops waiting for it.
struct CancelOnDrop<'a> {
    inner: &'a Inner,
    token: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self
                .inner
                .commands
                .send(Command::Cancel { token: self.token });
        }
    }
}

/// Starts a watcher whose updates go to `updates`; waits until it is created.
pub(crate) async fn start_watch(
    inner: &Inner,
    watch: Watch,
    updates: WatchSender,
) -> Result<(WatchId, i64, Arc<WatchFlow>), Error> {
    let (reply, created) = oneshot::channel();
    let flow = Arc::new(WatchFlow::default());
    inner
        .commands
        .send(Command::Watch {
            watch,
            reply,
            updates,
            flow: flow.clone(),
        })
        .map_err(|_| Error::ClientClosed)?;
    let (id, revision) = created.await.map_err(|_| Error::ClientClosed)??;
    Ok((id, revision, flow))
}

impl Client {
    /// Starts a driver on `runtime` for this configuration. Connections are opened lazily, by
    /// the first call.
    pub fn new<R: Runtime>(runtime: R, config: Config) -> Result<Client, Error> {
        let tls = config.tls.as_ref().map(TlsConnector::new).transpose()?;
        let core = Core::new(config, runtime.now())?;
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = Driver::new(runtime.clone(), core, tls, rx);
        runtime.spawn(Box::pin(driver.run()));
        Ok(Client {
            inner: Arc::new(Inner {
                commands: tx,
                next_token: AtomicU64::new(0),
            }),
            options: CallOptions::default(),
        })
    }

    /// A handle whose calls use these options (sharing the same connections).
    pub fn with_options(&self, options: CallOptions) -> Client {
        Client {
            inner: self.inner.clone(),
            options,
        }
    }

    /// A handle whose calls have this deadline.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        let mut options = self.options.clone();
        options.timeout = Some(timeout);
        self.with_options(options)
    }

    /// A handle whose calls all go to this one endpoint (`http://h:p`, `https://h:p`, `h:p`),
    /// for per-member calls such as Status, Defragment and HashKV. The endpoint need not be
    /// in the configured list; it gets its own connection.
    pub fn on_endpoint(&self, endpoint: &str) -> Result<Client, Error> {
        let mut options = self.options.clone();
        options.endpoint = Some(endpoint.parse()?);
        Ok(self.with_options(options))
    }

    /// A handle whose calls require the member to have a leader (`hasleader`).
    pub fn with_require_leader(&self) -> Client {
        let mut options = self.options.clone();
        options.require_leader = true;
        self.with_options(options)
    }

    /// Runs any unary request: a typed builder ([`Get`], [`Put`], [`Txn`], ...) or a raw
    /// protobuf request message.
    pub async fn call<R>(&self, rpc: R) -> Result<R::Response, Error>
    where
        R: UnaryRpc + Send + 'static,
    {
        self.call_with(rpc, self.options.clone()).await
    }

    /// Runs any unary request with explicit options.
    pub async fn call_with<R>(&self, rpc: R, options: CallOptions) -> Result<R::Response, Error>
    where
        R: UnaryRpc + Send + 'static,
    {
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        let start: StartFn = Box::new(move |core, now| core.start_unary(rpc, options, now));
        self.inner
            .commands
            .send(Command::Unary {
                token,
                start,
                reply: reply_tx,
            })
            .map_err(|_| Error::ClientClosed)?;
        let mut guard = CancelOnDrop {
            inner: &self.inner,
            token,
            armed: true,
        };
        let result = reply_rx.await;
        guard.armed = false;
        let body = result.map_err(|_| Error::ClientClosed)??;
        decode_response::<R>(body)
    }

    /// Reads a key or range: `client.get("k")` or `client.get(Get::new("k").prefix())`.
    pub async fn get(&self, get: impl Into<Get>) -> Result<RangeResponse, Error> {
        self.call(get.into()).await
    }

    /// Writes a key: `client.put(("k", "v"))` or `client.put(Put::new("k", "v").prev_kv())`.
    pub async fn put(&self, put: impl Into<Put>) -> Result<PutResponse, Error> {
        self.call(put.into()).await
    }

    /// Deletes a key or range: `client.delete("k")` or `client.delete(Delete::new("k").prefix())`.
    pub async fn delete(&self, delete: impl Into<Delete>) -> Result<DeleteRangeResponse, Error> {
        self.call(delete.into()).await
    }

    /// Runs a transaction.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        self.call(txn).await
    }

    /// Compacts the history: `client.compact(rev)` or `client.compact(Compact::new(rev).physical())`.
    pub async fn compact(&self, compact: impl Into<Compact>) -> Result<CompactionResponse, Error> {
        self.call(compact.into()).await
    }

    /// The endpoints calls are balanced over.
    pub async fn endpoints(&self) -> Result<Vec<Endpoint>, Error> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Endpoints { reply })
            .map_err(|_| Error::ClientClosed)?;
        rx.await.map_err(|_| Error::ClientClosed)
    }

    /// Replaces the endpoint list (`http://h:p`, `https://h:p`, `h:p`). Connections to
    /// endpoints that stay are kept.
    pub async fn set_endpoints<I, S>(&self, endpoints: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints = endpoints
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<Endpoint>, Error>>()?;
        self.replace_endpoints(endpoints).await
    }

    async fn replace_endpoints(&self, endpoints: Vec<Endpoint>) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::SetEndpoints { endpoints, reply })
            .map_err(|_| Error::ClientClosed)?;
        rx.await.map_err(|_| Error::ClientClosed)?
    }

    /// Refreshes the endpoint list from the member list: the client URLs of started,
    /// non-learner members (Go's `Sync`). Returns the new list.
    pub async fn sync(&self) -> Result<Vec<Endpoint>, Error> {
        let members = self
            .call(etcd_proto_core::proto::etcdserverpb::MemberListRequest { linearizable: true })
            .await?;
        let endpoints = endpoints_from_members(&members.members);
        if endpoints.is_empty() {
            return Err(Error::Protocol(
                "the member list has no started, non-learner member with a client URL".into(),
            ));
        }
        self.replace_endpoints(endpoints.clone()).await?;
        Ok(endpoints)
    }

    /// Starts a watcher and waits until the server created it, so every change after this
    /// returns is seen: `client.watch(Watch::new("k").prefix())`.
    ///
    /// Identical watches marked [`Watch::coalesce`] share one watch on the server.
    pub async fn watch(&self, watch: impl Into<Watch>) -> Result<Watcher, Error> {
        let (updates_tx, updates) = crate::inbox::channel();
        let (id, revision, flow) = start_watch(&self.inner, watch.into(), updates_tx).await?;
        Ok(Watcher::new(
            self.inner.clone(),
            id,
            revision,
            updates,
            flow,
        ))
    }

    /// Many watchers read through one receiver: see [`WatchSet`].
    pub fn watch_set(&self) -> WatchSet {
        WatchSet::new(self.inner.clone())
    }

    /// Asks for a progress notification on the shared watch streams (the plain one and the one
    /// of `require_leader` watchers); every watcher on them receives one.
    pub async fn request_progress(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::RequestProgress { reply })
            .map_err(|_| Error::ClientClosed)?;
        rx.await.map_err(|_| Error::ClientClosed)?
    }
}
