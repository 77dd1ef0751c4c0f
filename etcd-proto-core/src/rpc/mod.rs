//! Typed requests. Every RPC is a type implementing [`UnaryRpc`]: it knows its gRPC path, its
//! response type, its retry class, and how to turn itself into the wire message (validating
//! first, so misuse is a typed error and never a panic). Adapters need one generic way to run
//! any of them.

pub mod auth;
mod bytes_arg;
pub mod cluster;
pub mod election;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
mod raw;

pub use bytes_arg::IntoBytes;

use bytes::Bytes;
use prost::Message;

use crate::error::Error;

/// Whether a call may be sent again after it may have reached a server (the Go client's
/// "repeatable" / "non-repeatable" classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryClass {
    /// Safe to send again: reads, and calls whose repetition is harmless.
    Repeatable,
    /// Never sent twice once it may have reached a server (writes).
    NonRepeatable,
}

/// A gRPC method: its `:path` and retry class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method {
    /// The `:path`, e.g. `/etcdserverpb.KV/Range`.
    pub path: &'static str,
    /// The retry class.
    pub retry: RetryClass,
}

/// A unary RPC: one request message, one response message.
pub trait UnaryRpc {
    /// The protobuf request message.
    type Request: Message;
    /// The protobuf response message.
    type Response: Message + Default + Send + 'static;
    /// The method.
    const METHOD: Method;

    /// Validates and converts into the wire message.
    fn into_request(self) -> Result<Self::Request, Error>;
}

/// A server-streaming RPC: one request message, any number of response messages.
pub trait ServerStreamingRpc {
    /// The protobuf request message.
    type Request: Message;
    /// The protobuf message of each response.
    type Message: Message + Default + Send + 'static;
    /// The method.
    const METHOD: Method;

    /// Validates and converts into the wire message.
    fn into_request(self) -> Result<Self::Request, Error>;
}

/// Snapshot of the member's backend, streamed in chunks (`Maintenance/Snapshot`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot;

impl ServerStreamingRpc for Snapshot {
    type Request = etcd_proto::etcdserverpb::SnapshotRequest;
    type Message = etcd_proto::etcdserverpb::SnapshotResponse;
    const METHOD: Method = Method {
        path: "/etcdserverpb.Maintenance/Snapshot",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<Self::Request, Error> {
        Ok(Default::default())
    }
}

/// Every leader proclamation of an election, current one first (`Election/Observe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observe {
    /// The election name.
    pub name: Bytes,
}

impl Observe {
    /// Observes election `name`.
    pub fn new(name: impl IntoBytes) -> Observe {
        Observe {
            name: name.into_bytes(),
        }
    }
}

impl ServerStreamingRpc for Observe {
    type Request = etcd_proto::v3electionpb::LeaderRequest;
    type Message = etcd_proto::v3electionpb::LeaderResponse;
    const METHOD: Method = Method {
        path: "/v3electionpb.Election/Observe",
        retry: RetryClass::Repeatable,
    };
    fn into_request(self) -> Result<Self::Request, Error> {
        Ok(etcd_proto::v3electionpb::LeaderRequest { name: self.name })
    }
}

/// Decodes one message of a server stream.
pub fn decode_stream_message<R: ServerStreamingRpc>(body: Bytes) -> Result<R::Message, Error> {
    R::Message::decode(body).map_err(|e| {
        Error::Protocol(format!(
            "undecodable stream message of {}: {e}",
            R::METHOD.path
        ))
    })
}

/// Decodes a unary response message body (the bytes after the gRPC prefix).
pub fn decode_response<R: UnaryRpc>(body: Bytes) -> Result<R::Response, Error> {
    R::Response::decode(body)
        .map_err(|e| Error::Protocol(format!("undecodable response of {}: {e}", R::METHOD.path)))
}
