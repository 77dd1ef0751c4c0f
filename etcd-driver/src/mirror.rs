//! Mirroring a prefix (Go's `mirror` package): a [`Syncer`] first copies every key under the
//! prefix as of one fixed revision, page by page ([`Syncer::sync_base`]), then follows every
//! change after that revision with a watch ([`Syncer::sync_updates`]). Together they give a
//! gap-free, duplicate-free copy.
//!
//! ```no_run
//! # async fn demo(client: etcd_driver::Client) -> Result<(), etcd_driver::Error> {
//! use etcd_driver::mirror::Syncer;
//!
//! let mut syncer = Syncer::new(client, "config/", 0);
//! let mut pages = syncer.sync_base().await?;
//! while let Some(page) = pages.next().await {
//!     for kv in page?.kvs { /* store kv */ let _ = kv; }
//! }
//! let mut updates = syncer.sync_updates().await?;
//! while let Some(resp) = updates.next().await {
//!     for event in resp?.events { /* apply event */ let _ = event; }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Differences from Go
//!
//! * Pages are read serializably at the fixed revision (the member's local copy of that
//!   revision is as good as the leader's); a member that has not reached the revision yet
//!   answers `FutureRev`, and that page is then read again linearizably.
//! * [`Syncer::sync_updates`] before the revision is known is a typed error, not a panic.
//! * The base is a pull-based [`BasePages`] instead of a channel filled by a goroutine.

use bytes::{BufMut, Bytes, BytesMut};
use etcd_proto_core::proto::etcdserverpb::{range_request, RangeRequest, RangeResponse};
use etcd_proto_core::rpc::kv::prefix_range_end;
use etcd_proto_core::rpc::IntoBytes;
use etcd_proto_core::{Error, EtcdErrorKind, InvalidRequest, Watch};

use crate::watch::Watcher;
use crate::Client;

/// Keys per page of the base copy (Go's `batchLimit`).
pub const DEFAULT_PAGE_SIZE: i64 = 1000;

/// Mirrors the keys under a prefix; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Syncer {
    client: Client,
    prefix: Bytes,
    revision: i64,
    page_size: i64,
}

impl Syncer {
    /// A syncer of the keys under `prefix` (empty: the whole keyspace) as of `revision` (0:
    /// the current revision when [`Syncer::sync_base`] starts).
    pub fn new(client: Client, prefix: impl IntoBytes, revision: i64) -> Syncer {
        Syncer {
            client,
            prefix: prefix.into_bytes(),
            revision,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }

    /// Keys per page (default [`DEFAULT_PAGE_SIZE`]; at least 1).
    pub fn page_size(mut self, keys: i64) -> Self {
        self.page_size = keys.max(1);
        self
    }

    /// The revision the base copy is taken at (0 until [`Syncer::sync_base`] fixed it).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Starts the base copy. Without a revision given, the current one is fixed first (by a
    /// linearizable read of the prefix, as Go does); then [`BasePages::next`] reads the
    /// pages, all at that revision.
    pub async fn sync_base(&mut self) -> Result<BasePages, Error> {
        if self.revision == 0 {
            let probe = if self.prefix.is_empty() {
                Bytes::from_static(b"foo")
            } else {
                self.prefix.clone()
            };
            let resp = self
                .client
                .call(RangeRequest {
                    key: probe,
                    count_only: true,
                    ..Default::default()
                })
                .await?;
            self.revision = resp.header.map(|h| h.revision).unwrap_or_default();
            if self.revision == 0 {
                return Err(Error::Protocol("range response without a revision".into()));
            }
        }
        let (key, end) = if self.prefix.is_empty() {
            (Bytes::from_static(b"\0"), Bytes::from_static(b"\0"))
        } else {
            (self.prefix.clone(), prefix_range_end(&self.prefix))
        };
        Ok(BasePages {
            client: self.client.clone(),
            next_key: key,
            end,
            revision: self.revision,
            page_size: self.page_size,
            done: false,
        })
    }

    /// Watches every change under the prefix after the base revision (from revision + 1).
    /// A typed error if the revision is not known yet (Go panics).
    pub async fn sync_updates(&self) -> Result<Watcher, Error> {
        if self.revision == 0 {
            return Err(InvalidRequest::Invalid(
                "mirror: sync_base must fix the revision before sync_updates".into(),
            )
            .into());
        }
        let watch = Watch::new(self.prefix.clone())
            .prefix()
            .start_revision(self.revision + 1);
        self.client.watch(watch).await
    }
}

/// The pages of a base copy, read one by one at the fixed revision.
#[derive(Debug)]
pub struct BasePages {
    client: Client,
    next_key: Bytes,
    end: Bytes,
    revision: i64,
    page_size: i64,
    done: bool,
}

impl BasePages {
    /// The revision every page is read at.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The next page (key-ascending, at most the page size); `None` after the last one. An
    /// error ends the copy (e.g. `Compacted` when the revision was compacted meanwhile:
    /// start over with a new syncer).
    pub async fn next(&mut self) -> Option<Result<RangeResponse, Error>> {
        if self.done {
            return None;
        }
        let result = self.fetch().await;
        match &result {
            Ok(page) => match page.kvs.last() {
                Some(last) if page.more => {
                    let mut key = BytesMut::with_capacity(last.key.len() + 1);
                    key.put_slice(&last.key);
                    key.put_u8(0);
                    self.next_key = key.freeze();
                }
                _ => self.done = true,
            },
            Err(_) => self.done = true,
        }
        Some(result)
    }

    async fn fetch(&self) -> Result<RangeResponse, Error> {
        let request = RangeRequest {
            key: self.next_key.clone(),
            range_end: self.end.clone(),
            limit: self.page_size,
            revision: self.revision,
            sort_order: range_request::SortOrder::None as i32,
            sort_target: range_request::SortTarget::Key as i32,
            serializable: true,
            ..Default::default()
        };
        match self.client.call(request.clone()).await {
            Err(e) if e.etcd_kind() == Some(EtcdErrorKind::FutureRev) => {
                // This member has not applied the revision yet: ask the leader's view.
                self.client
                    .call(RangeRequest {
                        serializable: false,
                        ..request
                    })
                    .await
            }
            other => other,
        }
    }
}
