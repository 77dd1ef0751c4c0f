//! The sans-IO core of an etcd v3 client.
//!
//! This crate decides everything that is not moving bytes or waiting: how a request is encoded
//! and framed, what a response or trailer means, which endpoint a call goes to, when a
//! connection attempt or a call has run out of time. It has no sockets, no clock, no threads
//! and no async runtime: time comes in as an [`Instant`](std::time::Instant) argument, bytes
//! come in as [`Bytes`](bytes::Bytes), randomness comes from a seed in the [`Config`].
//!
//! # Shape
//!
//! * **Inputs** are method calls on [`Core`]: from the application ([`Core::start_unary`],
//!   [`Core::cancel`], [`Core::close`]) and from the transport ([`Core::handle_connected`],
//!   [`Core::handle_connect_failed`], [`Core::handle_connection_lost`],
//!   [`Core::handle_response_headers`], [`Core::handle_data`], [`Core::handle_trailers`],
//!   [`Core::handle_stream_reset`], [`Core::handle_stream_error`], [`Core::handle_timeout`]).
//! * **Outputs** are polled: [`Core::poll_transmit`] (connect, open a stream with a request
//!   head and body, send data, reset a stream, disconnect), [`Core::poll_event`] (a call
//!   finished) and [`Core::poll_timeout`] (when to call [`Core::handle_timeout`] next).
//!
//! # The drain rule
//!
//! After **every** input, the driver drains the outputs in this order before it waits for
//! anything else:
//!
//! 1. call [`Core::poll_transmit`] until it returns `None`, carrying out each transmit;
//! 2. call [`Core::poll_event`] until it returns `None`, delivering each event;
//! 3. read [`Core::poll_timeout`] and arrange to call [`Core::handle_timeout`] at that instant
//!    (earlier or spurious calls are harmless).
//!
//! Outputs are queued, never dropped, so a driver that drains late only adds latency; but a
//! driver that never reads `poll_timeout` will miss deadlines. The `now` passed to inputs must
//! not go backwards. Events of watchers that share one server watch are assembled when
//! `poll_event` is called: everything a shared watch received since the last drain reaches
//! each of its watchers as one response (so draining after a batch of inputs, rather than
//! after each, gives fewer and larger responses). Watch consumption may be reported to
//! [`Core::watch_consumed`] lazily, except for a watcher whose last response event said
//! `over_limit`.
//!
//! # Layers
//!
//! * [`grpc`]: length-prefixed message framing and a streaming decoder that accepts any split.
//! * [`status`]: gRPC status codes, trailers and trailers-only parsing, `grpc-timeout`.
//! * [`error`]: typed errors, including every etcd error string.
//! * [`rpc`]: typed requests ([`rpc::kv::Get`], [`rpc::kv::Put`], [`rpc::kv::Txn`], ...), each
//!   knowing its path, response type and retry class; raw protobuf requests work too.
//! * [`wire`]: the hand-written decoder of watch responses (the hot path).
//! * [`Core`]: endpoints, connections, calls and deadlines.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod endpoint;
mod endpoints;
mod engine;
pub mod error;
pub mod grpc;
pub mod idhash;
pub mod retry;
pub mod rng;
pub mod rpc;
pub mod status;
mod watch_events;
pub mod wire;

pub use config::{Config, Credentials, TlsConfig};
pub use endpoint::{Endpoint, Scheme};
pub use endpoints::endpoints_from_members;
pub use engine::lease::{KeepAliveId, LeaseLostReason};
pub use engine::watch::{Watch, WatchId, WatchResponse, WatchResponseKind, DEFAULT_WATCH_BUFFER};
pub use engine::{
    CallId, CallOptions, Core, EndpointId, Event, StreamId, Transmit, RESET_CANCEL, STREAM_BUFFER,
};
pub use error::{Direction, Error, EtcdError, EtcdErrorKind, InvalidRequest};
pub use status::{Code, Status};
pub use watch_events::Events;

/// The generated protobuf types.
pub use etcd_proto as proto;
