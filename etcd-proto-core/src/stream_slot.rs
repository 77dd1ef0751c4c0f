//! The state of one long-lived bidirectional stream the core owns (a watch group's stream,
//! the lease keepalive stream): waiting for a connection, pausing before a reopen, or open
//! with its message decoder. Shared so that both decode, end and back off the same way.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::{EndpointId, StreamId};
use crate::error::Error;
use crate::grpc::MessageDecoder;
use crate::status::{Code, Status};

#[derive(Debug)]
pub(crate) enum StreamSlot {
    /// Wanted, waiting for a connection (and a token).
    Waiting,
    /// Failed repeatedly: reopened after this instant.
    Backoff { until: Instant },
    /// Open on an endpoint.
    Open {
        stream: StreamId,
        endpoint: EndpointId,
        decoder: MessageDecoder,
        http_status: Option<StatusCode>,
    },
}

impl StreamSlot {
    /// A freshly opened stream.
    pub(crate) fn open(stream: StreamId, endpoint: EndpointId, limit: usize) -> StreamSlot {
        StreamSlot::Open {
            stream,
            endpoint,
            decoder: MessageDecoder::new(limit),
            http_status: None,
        }
    }

    /// The stream and its endpoint, when open.
    pub(crate) fn open_on(&self) -> Option<(StreamId, EndpointId)> {
        match self {
            StreamSlot::Open {
                stream, endpoint, ..
            } => Some((*stream, *endpoint)),
            _ => None,
        }
    }

    /// When the backoff ends, if backing off.
    pub(crate) fn backoff_until(&self) -> Option<Instant> {
        match self {
            StreamSlot::Backoff { until } => Some(*until),
            _ => None,
        }
    }

    /// Ends a backoff that is over.
    pub(crate) fn expire_backoff(&mut self, now: Instant) {
        if self.backoff_until().is_some_and(|until| until <= now) {
            *self = StreamSlot::Waiting;
        }
    }

    /// Records the response's HTTP status.
    pub(crate) fn set_http_status(&mut self, status: StatusCode) {
        if let StreamSlot::Open { http_status, .. } = self {
            *http_status = Some(status);
        }
    }

    /// Feeds received bytes; returns the complete messages, or the framing error after the
    /// messages before it.
    pub(crate) fn push(&mut self, data: Bytes) -> (Vec<Bytes>, Option<Error>) {
        self.feed(data);
        let mut messages = Vec::new();
        loop {
            match self.next_message() {
                Ok(Some(msg)) => messages.push(msg),
                Ok(None) => return (messages, None),
                Err(e) => return (messages, Some(e)),
            }
        }
    }

    /// Feeds received bytes, to be taken with [`StreamSlot::next_message`]. The body of a
    /// non-200 response is not gRPC and is ignored (the outcome comes from the trailers or the
    /// HTTP status).
    pub(crate) fn feed(&mut self, data: Bytes) {
        if let StreamSlot::Open {
            decoder,
            http_status,
            ..
        } = self
        {
            if http_status.is_none_or(|s| s == StatusCode::OK) {
                decoder.push(data);
            }
        }
    }

    /// The next complete message fed, or the framing error.
    pub(crate) fn next_message(&mut self) -> Result<Option<Bytes>, Error> {
        match self {
            StreamSlot::Open { decoder, .. } => decoder.next_message().map_err(Error::from),
            _ => Ok(None),
        }
    }

    /// The error a stream that ended reports (it is meant to run until cancelled, so even an
    /// OK status is a failure to recover from). `None` when the slot is not open.
    pub(crate) fn ended(&self, trailers: Option<&HeaderMap>, what: &str) -> Option<Error> {
        let StreamSlot::Open { http_status, .. } = self else {
            return None;
        };
        let http_status = http_status.unwrap_or(StatusCode::OK);
        let status = trailers.and_then(Status::from_headers).unwrap_or_else(|| {
            let code = if http_status == StatusCode::OK {
                Code::Unavailable
            } else {
                Code::from_http_status(http_status)
            };
            Status::new(
                code,
                format!("{what} ended without grpc-status (HTTP status {http_status})"),
            )
        });
        Some(if status.is_ok() {
            Error::Status(Status::new(
                Code::Unavailable,
                format!("{what} ended by the server"),
            ))
        } else {
            Error::from_status(status)
        })
    }
}

/// The pause before reopening a stream after `failures` consecutive failures: none for the
/// first (move to another member at once), then `base` doubling up to 2 s.
pub(crate) fn reopen_pause(failures: u32, base: Duration) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    (base * (1u32 << (failures - 2).min(6))).min(Duration::from_secs(2))
}
