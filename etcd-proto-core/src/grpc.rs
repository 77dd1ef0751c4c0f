//! gRPC length-prefixed message framing (both directions).
//!
//! Every message on a gRPC stream is `flag (1 byte) | length (u32, big endian) | bytes`.
//! DATA frame boundaries are unrelated to message boundaries, so [`MessageDecoder`] accepts the
//! incoming bytes split anywhere and hands out whole messages, zero-copy whenever a message sits
//! inside one received chunk.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use crate::error::{Direction, Error};

/// Size of the length prefix in front of every gRPC message.
pub const PREFIX_LEN: usize = 5;

/// Largest length a gRPC prefix can express.
pub const MAX_FRAME_LEN: usize = u32::MAX as usize;

/// Encodes `msg` as one gRPC message, writing the 5-byte prefix in place in the same buffer (no
/// second copy). Fails with [`Error::MessageTooLarge`] before encoding when the message is larger
/// than `limit` bytes.
pub fn encode_message<M: Message>(msg: &M, limit: usize) -> Result<Bytes, Error> {
    let len = msg.encoded_len();
    let limit = limit.min(MAX_FRAME_LEN);
    if len > limit {
        return Err(Error::MessageTooLarge {
            size: len,
            limit,
            direction: Direction::Send,
        });
    }
    let mut buf = BytesMut::with_capacity(PREFIX_LEN + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    // Cannot fail: the buffer has exactly the capacity `encoded_len` asked for (and grows anyway).
    msg.encode(&mut buf)
        .map_err(|e| Error::Protocol(format!("encoding failed: {e}")))?;
    Ok(buf.freeze())
}

/// Why the incoming byte stream could not be split into messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The compressed flag was set although no compression was negotiated.
    #[error("received a compressed message, but no compression was negotiated")]
    Compressed,
    /// The flag byte is neither 0 nor 1.
    #[error("invalid gRPC message flag {0:#04x}")]
    InvalidFlag(u8),
    /// The message is larger than the configured receive limit.
    #[error("received message of {size} bytes exceeds the receive limit of {limit} bytes")]
    TooLarge {
        /// Announced message size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The stream ended in the middle of a message.
    #[error("stream ended inside a message ({0} bytes left over)")]
    Truncated(usize),
}

impl From<FrameError> for Error {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { size, limit } => Error::MessageTooLarge {
                size,
                limit,
                direction: Direction::Receive,
            },
            other => Error::Protocol(other.to_string()),
        }
    }
}

/// Streaming decoder of gRPC messages: push bytes as they arrive, pull whole messages.
#[derive(Debug)]
pub struct MessageDecoder {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    limit: usize,
    /// Length of the message whose prefix was already consumed.
    pending_len: Option<usize>,
}

impl MessageDecoder {
    /// A decoder that rejects messages larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MessageDecoder {
            chunks: VecDeque::new(),
            buffered: 0,
            limit,
            pending_len: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.buffered += data.len();
            self.chunks.push_back(data);
        }
    }

    /// Number of bytes received but not yet handed out (including a consumed prefix).
    pub fn buffered(&self) -> usize {
        self.buffered
            + if self.pending_len.is_some() {
                PREFIX_LEN
            } else {
                0
            }
    }

    /// Returns the next whole message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, FrameError> {
        let len = match self.pending_len {
            Some(len) => len,
            None => {
                if self.buffered < PREFIX_LEN {
                    return Ok(None);
                }
                let mut prefix = [0u8; PREFIX_LEN];
                self.copy_out(&mut prefix);
                match prefix[0] {
                    0 => {}
                    1 => return Err(FrameError::Compressed),
                    f => return Err(FrameError::InvalidFlag(f)),
                }
                let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
                if len > self.limit {
                    return Err(FrameError::TooLarge {
                        size: len,
                        limit: self.limit,
                    });
                }
                self.pending_len = Some(len);
                len
            }
        };
        if self.buffered < len {
            return Ok(None);
        }
        self.pending_len = None;
        Ok(Some(self.take(len)))
    }

    /// Checks that the stream ended on a message boundary.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buffered() {
            0 => Ok(()),
            n => Err(FrameError::Truncated(n)),
        }
    }

    fn copy_out(&mut self, out: &mut [u8]) {
        let mut filled = 0;
        while filled < out.len() {
            let front = self
                .chunks
                .front_mut()
                .expect("buffered count covers the copy");
            let n = front.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&front[..n]);
            front.advance(n);
            filled += n;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        self.buffered -= out.len();
    }

    fn take(&mut self, len: usize) -> Bytes {
        self.buffered -= len;
        if len == 0 {
            return Bytes::new();
        }
        let front = self
            .chunks
            .front_mut()
            .expect("buffered count covers the take");
        if front.len() >= len {
            // Zero-copy: the whole message is inside one received chunk.
            let msg = front.split_to(len);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            return msg;
        }
        let mut out = BytesMut::with_capacity(len);
        while out.len() < len {
            let front = self
                .chunks
                .front_mut()
                .expect("buffered count covers the take");
            let n = front.len().min(len - out.len());
            out.extend_from_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
        out.freeze()
    }
}
