//! Runtime-agnostic driver of the etcd sans-IO core over HTTP/2, and the async [`Client`].
//!
//! The driver is one task that owns the [`Core`](etcd_proto_core::Core): it feeds it what the
//! connections and streams report, carries out what it asks (connect, open streams, reset,
//! disconnect) with [`h2`], sleeps until its next deadline, and hands results to callers. It
//! runs on any executor through the small [`Runtime`] trait; `etcd-tokio` and `etcd-smol`
//! implement it. Nothing here decides protocol questions: those live in the core.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod client_api;
pub mod concurrency;
mod driver;
mod inbox;
mod lease;
mod runtime;
mod server_stream;
mod snapshot;
mod stream;
mod tls;
mod watch;

pub use client::Client;
pub use lease::{KeepAliveResponse, KeepAliveTarget, LeaseKeeper};
pub use runtime::{BoxFuture, BoxIo, Io, Runtime};
pub use server_stream::{ObserveStream, ServerStream, SnapshotStream};
pub use snapshot::SavedSnapshot;
pub use tls::TlsConnector;
pub use watch::{WatchSet, Watcher};

pub use etcd_proto_core as core;
pub use etcd_proto_core::{
    proto, rpc, CallOptions, Code, Config, Credentials, Endpoint, Error, EtcdError, EtcdErrorKind,
    LeaseLostReason, Status, TlsConfig, Watch, WatchId, WatchResponse, WatchResponseKind,
};
pub mod config_file;
pub mod leasing;
pub mod mirror;
pub mod namespace;
pub mod naming;
pub mod ordering;
pub mod util;
