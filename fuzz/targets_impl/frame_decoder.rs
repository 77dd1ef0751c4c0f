//! `frame_decoder`: the streaming gRPC message decoder must give the same answer however the
//! byte stream is split, and that answer must match a straightforward reference parser.
//!
//! Input layout:
//!
//! * byte 0: receive limit selector (see [`LIMITS`]);
//! * byte 1: number `n` of chunk lengths that follow (`n = byte % 16`);
//! * the next `n` bytes: chunk lengths, used cyclically (0 pushes an empty chunk);
//! * everything after: the response byte stream.
//!
//! Shorter inputs are the byte stream itself, with the default limit and no split.
//!
//! This file is shared by the cargo-fuzz binary and `etcd-proto-core/tests/fuzz_corpus.rs`,
//! so it may only use crates both can reach.

use etcd_proto_core::grpc::{FrameError, MessageDecoder, PREFIX_LEN};
use etcd_proto_core::proto::bytes::Bytes;

const LIMITS: [usize; 6] = [0, 1, 5, 46, 1024, u32::MAX as usize];

/// What a decoder made of a byte stream.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<Bytes>,
    /// The error that stopped decoding, if any.
    error: Option<FrameError>,
    /// Bytes left in the decoder after the last message (when there was no error).
    left_over: usize,
}

pub fn run(data: &[u8]) {
    let (limit, lengths, stream) = split_input(data);

    let expected = reference(stream, limit);

    let whole = decode(std::iter::once(stream), limit);
    assert_eq!(
        whole, expected,
        "unsplit decoding differs from the reference"
    );

    let chunks = chunks(stream, &lengths);
    assert_eq!(
        chunks.iter().map(|c| c.len()).sum::<usize>(),
        stream.len(),
        "the chunking lost bytes"
    );
    let split = decode(chunks.iter().copied(), limit);
    assert_eq!(
        split, expected,
        "split decoding differs (chunks {lengths:?})"
    );

    if stream.len() <= 4096 {
        let bytewise = decode(stream.chunks(1), limit);
        assert_eq!(bytewise, expected, "byte-by-byte decoding differs");
    }

    // The consumed prefix of the stream is exactly the re-framed messages.
    let mut reframed = Vec::with_capacity(stream.len());
    for msg in &expected.messages {
        assert!(msg.len() <= limit, "message above the limit was accepted");
        reframed.push(0);
        reframed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        reframed.extend_from_slice(msg);
    }
    assert_eq!(
        &stream[..reframed.len()],
        &reframed[..],
        "messages are not the consumed prefix of the input"
    );
    if expected.error.is_none() {
        assert_eq!(reframed.len() + expected.left_over, stream.len());
    }
}

fn split_input(data: &[u8]) -> (usize, Vec<usize>, &[u8]) {
    if data.len() < 2 {
        return (u32::MAX as usize, Vec::new(), data);
    }
    let limit = LIMITS[data[0] as usize % LIMITS.len()];
    let n = (data[1] % 16) as usize;
    let rest = &data[2..];
    let n = n.min(rest.len());
    let lengths = rest[..n].iter().map(|&b| b as usize).collect();
    (limit, lengths, &rest[n..])
}

fn chunks<'a>(stream: &'a [u8], lengths: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    if lengths.is_empty() {
        out.push(rest);
        return out;
    }
    let mut i = 0;
    while !rest.is_empty() {
        let n = lengths[i % lengths.len()].min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
        i += 1;
        // All-zero lengths would never make progress: after one round, take the rest.
        if i >= lengths.len() && lengths.iter().all(|&l| l == 0) {
            out.push(rest);
            break;
        }
    }
    out
}

/// Pushes the chunks one by one, pulling every available message after each push; stops at
/// the first error, like the engine does.
fn decode<'a>(chunks: impl Iterator<Item = &'a [u8]>, limit: usize) -> Outcome {
    let mut decoder = MessageDecoder::new(limit);
    let mut messages = Vec::new();
    for chunk in chunks {
        decoder.push(Bytes::copy_from_slice(chunk));
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => messages.push(msg),
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        messages,
                        error: Some(error),
                        left_over: 0,
                    }
                }
            }
        }
    }
    // Pulling again without new bytes must not produce anything.
    assert_eq!(decoder.next_message(), Ok(None));
    let left_over = decoder.buffered();
    match decoder.finish() {
        Ok(()) => assert_eq!(left_over, 0),
        Err(e) => assert_eq!(e, FrameError::Truncated(left_over)),
    }
    Outcome {
        messages,
        error: None,
        left_over,
    }
}

/// The framing rules of gRPC (PROTOCOL-HTTP2.md, "Length-Prefixed-Message"), applied to the
/// whole stream at once.
fn reference(stream: &[u8], limit: usize) -> Outcome {
    let mut messages = Vec::new();
    let mut at = 0;
    while stream.len() - at >= PREFIX_LEN {
        let flag = stream[at];
        let len = u32::from_be_bytes([
            stream[at + 1],
            stream[at + 2],
            stream[at + 3],
            stream[at + 4],
        ]) as usize;
        let error = match flag {
            0 if len > limit => Some(FrameError::TooLarge { size: len, limit }),
            0 => None,
            1 => Some(FrameError::Compressed),
            f => Some(FrameError::InvalidFlag(f)),
        };
        if error.is_some() {
            return Outcome {
                messages,
                error,
                left_over: 0,
            };
        }
        let body = at + PREFIX_LEN;
        if stream.len() - body < len {
            break;
        }
        messages.push(Bytes::copy_from_slice(&stream[body..body + len]));
        at = body + len;
    }
    Outcome {
        messages,
        error: None,
        left_over: stream.len() - at,
    }
}
