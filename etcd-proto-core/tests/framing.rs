//! gRPC length-prefixed framing: the decoder must give the same messages for any split of the
//! incoming bytes, reject what it must reject, and hand out zero-copy slices when it can.

use bytes::{Bytes, BytesMut};
use etcd_proto_core::error::{Direction, Error};
use etcd_proto_core::grpc::{encode_message, FrameError, MessageDecoder, PREFIX_LEN};
use etcd_proto_core::proto::etcdserverpb::{PutResponse, RangeResponse, ResponseHeader};
use etcd_proto_core::proto::mvccpb::KeyValue;
use prost::Message;

const NO_LIMIT: usize = u32::MAX as usize;

/// A small deterministic generator (xorshift64*), independent of the crate under test.
struct TestRng(u64);

impl TestRng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn kv(key: &str, value_len: usize, rev: i64) -> KeyValue {
    KeyValue {
        key: Bytes::copy_from_slice(key.as_bytes()),
        create_revision: rev,
        mod_revision: rev,
        version: 1,
        value: Bytes::from(vec![b'v'; value_len]),
        lease: 0,
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        cluster_id: 0x0482_76a8_f75b_6a87,
        member_id: 0x2e12_59d4_15f2_a040,
        revision,
        raft_term: 2,
    })
}

/// The message bodies (without prefix) of a mixed sequence, including an empty message and one
/// whose length needs more than one byte of the length prefix.
fn sample_bodies() -> Vec<Vec<u8>> {
    let range_small = RangeResponse {
        header: header(2),
        kvs: vec![kv("foo", 3, 2)],
        more: false,
        count: 1,
    };
    let range_big = RangeResponse {
        header: header(7),
        kvs: vec![kv("a", 300, 3), kv("b", 0, 4), kv("c", 20, 5)],
        more: true,
        count: 10,
    };
    let put_with_header = PutResponse {
        header: header(9),
        prev_kv: None,
    };
    let put_empty = PutResponse::default();
    let range_empty = RangeResponse::default();
    let bodies = vec![
        range_small.encode_to_vec(),
        put_empty.encode_to_vec(),
        range_big.encode_to_vec(),
        put_with_header.encode_to_vec(),
        range_empty.encode_to_vec(),
        put_empty.encode_to_vec(),
    ];
    assert!(bodies[1].is_empty() && bodies[4].is_empty());
    assert!(
        bodies[2].len() > 255,
        "one message must need a multi-byte length"
    );
    bodies
}

/// Frames every body by hand (flag, big-endian length, body) into one buffer.
fn sample_stream() -> (Vec<Vec<u8>>, Vec<u8>) {
    let bodies = sample_bodies();
    let mut buf = Vec::new();
    for body in &bodies {
        buf.push(0);
        buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
        buf.extend_from_slice(body);
    }
    (bodies, buf)
}

/// Feeds the chunks in order, collecting messages after each push; then checks `finish`.
fn decode_chunks(chunks: &[&[u8]], limit: usize) -> Vec<Vec<u8>> {
    let mut dec = MessageDecoder::new(limit);
    let mut out = Vec::new();
    for chunk in chunks {
        dec.push(Bytes::copy_from_slice(chunk));
        while let Some(msg) = dec.next_message().expect("valid stream") {
            out.push(msg.to_vec());
        }
    }
    assert_eq!(dec.finish(), Ok(()));
    assert_eq!(dec.buffered(), 0);
    out
}

#[test]
fn encode_message_frames_like_the_hand_built_stream() {
    let range_small = RangeResponse {
        header: header(2),
        kvs: vec![kv("foo", 3, 2)],
        more: false,
        count: 1,
    };
    let framed = encode_message(&range_small, NO_LIMIT).unwrap();
    let body = range_small.encode_to_vec();
    assert_eq!(framed.len(), PREFIX_LEN + body.len());
    assert_eq!(framed[0], 0);
    assert_eq!(&framed[1..5], &(body.len() as u32).to_be_bytes());
    assert_eq!(&framed[5..], &body[..]);
}

#[test]
fn empty_message_frames_as_five_zero_bytes() {
    let framed = encode_message(&PutResponse::default(), NO_LIMIT).unwrap();
    assert_eq!(&framed[..], &[0, 0, 0, 0, 0]);

    let mut dec = MessageDecoder::new(NO_LIMIT);
    dec.push(Bytes::from_static(&[0, 0, 0, 0, 0]));
    let msg = dec.next_message().unwrap().expect("a whole empty message");
    assert!(msg.is_empty());
    assert_eq!(dec.next_message().unwrap(), None);
    assert_eq!(dec.finish(), Ok(()));
}

#[test]
fn whole_stream_in_one_chunk() {
    let (bodies, buf) = sample_stream();
    assert_eq!(decode_chunks(&[&buf], NO_LIMIT), bodies);
}

#[test]
fn every_two_piece_split() {
    let (bodies, buf) = sample_stream();
    for split in 0..=buf.len() {
        let (a, b) = buf.split_at(split);
        assert_eq!(
            decode_chunks(&[a, b], NO_LIMIT),
            bodies,
            "split at {split} of {}",
            buf.len()
        );
    }
}

#[test]
fn byte_by_byte() {
    let (bodies, buf) = sample_stream();
    let chunks: Vec<&[u8]> = buf.chunks(1).collect();
    assert_eq!(decode_chunks(&chunks, NO_LIMIT), bodies);
}

#[test]
fn random_chunkings_with_fixed_seed() {
    let (bodies, buf) = sample_stream();
    let mut rng = TestRng(0x1234_5678_9abc_def1);
    for round in 0..500 {
        // Mix of tiny and larger chunk sizes, including empty pushes.
        let max_chunk = [1, 3, 6, 17, 64, 400][round % 6];
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut pos = 0;
        while pos < buf.len() {
            let n = rng.below(max_chunk + 1).min(buf.len() - pos);
            chunks.push(&buf[pos..pos + n]);
            pos += n;
        }
        assert_eq!(
            decode_chunks(&chunks, NO_LIMIT),
            bodies,
            "round {round}, chunk sizes {:?}",
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn messages_come_out_only_when_complete() {
    let (bodies, buf) = sample_stream();
    let first_len = PREFIX_LEN + bodies[0].len();
    let mut dec = MessageDecoder::new(NO_LIMIT);
    dec.push(Bytes::copy_from_slice(&buf[..first_len - 1]));
    assert_eq!(dec.next_message().unwrap(), None);
    assert_eq!(dec.buffered(), first_len - 1);
    assert_eq!(dec.finish(), Err(FrameError::Truncated(first_len - 1)));
    dec.push(Bytes::copy_from_slice(&buf[first_len - 1..first_len]));
    assert_eq!(dec.next_message().unwrap().unwrap(), &bodies[0][..]);
    assert_eq!(dec.next_message().unwrap(), None);
    assert_eq!(dec.finish(), Ok(()));
}

#[test]
fn compressed_flag_is_rejected() {
    let mut dec = MessageDecoder::new(NO_LIMIT);
    dec.push(Bytes::from_static(&[1, 0, 0, 0, 2, 0x08, 0x01]));
    assert_eq!(dec.next_message(), Err(FrameError::Compressed));
}

#[test]
fn invalid_flag_is_rejected() {
    for flag in [2u8, 0x80, 0xff] {
        let mut dec = MessageDecoder::new(NO_LIMIT);
        dec.push(Bytes::from(vec![flag, 0, 0, 0, 0]));
        assert_eq!(dec.next_message(), Err(FrameError::InvalidFlag(flag)));
    }
}

#[test]
fn too_large_is_reported_from_the_prefix_alone() {
    let limit = 100;
    // Only the prefix has arrived; the body (101 bytes) has not.
    let mut dec = MessageDecoder::new(limit);
    dec.push(Bytes::from_static(&[0, 0, 0, 0, 101]));
    assert_eq!(
        dec.next_message(),
        Err(FrameError::TooLarge {
            size: 101,
            limit: 100
        })
    );

    // A prefix announcing 4 GiB - 1 is rejected at once as well.
    let mut dec = MessageDecoder::new(limit);
    dec.push(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]));
    assert_eq!(
        dec.next_message(),
        Err(FrameError::TooLarge {
            size: u32::MAX as usize,
            limit: 100
        })
    );

    // Exactly at the limit is fine.
    let mut dec = MessageDecoder::new(limit);
    let mut buf = vec![0, 0, 0, 0, 100];
    buf.extend_from_slice(&[7u8; 100]);
    dec.push(Bytes::from(buf));
    assert_eq!(dec.next_message().unwrap().unwrap(), &[7u8; 100][..]);
    assert_eq!(dec.finish(), Ok(()));

    // As an Error it is a receive-side size error.
    let err: Error = FrameError::TooLarge {
        size: 101,
        limit: 100,
    }
    .into();
    assert_eq!(
        err,
        Error::MessageTooLarge {
            size: 101,
            limit: 100,
            direction: Direction::Receive
        }
    );
}

#[test]
fn too_large_split_prefix() {
    // The prefix arrives in two pieces: nothing is reported until it is complete.
    let mut dec = MessageDecoder::new(10);
    dec.push(Bytes::from_static(&[0, 0, 0]));
    assert_eq!(dec.next_message(), Ok(None));
    dec.push(Bytes::from_static(&[0, 11]));
    assert_eq!(
        dec.next_message(),
        Err(FrameError::TooLarge {
            size: 11,
            limit: 10
        })
    );
}

#[test]
fn truncated_stream() {
    let (bodies, buf) = sample_stream();

    // Stream ends inside the prefix of the second message.
    let first_len = PREFIX_LEN + bodies[0].len();
    let mut dec = MessageDecoder::new(NO_LIMIT);
    dec.push(Bytes::copy_from_slice(&buf[..first_len + 3]));
    assert_eq!(dec.next_message().unwrap().unwrap(), &bodies[0][..]);
    assert_eq!(dec.next_message().unwrap(), None);
    assert_eq!(dec.finish(), Err(FrameError::Truncated(3)));

    // Stream ends inside the body of a message: the consumed prefix counts as left over.
    let mut dec = MessageDecoder::new(NO_LIMIT);
    dec.push(Bytes::from_static(&[0, 0, 0, 0, 10, 1, 2]));
    assert_eq!(dec.next_message().unwrap(), None);
    assert_eq!(dec.finish(), Err(FrameError::Truncated(7)));

    // A truncation becomes a protocol error.
    let err: Error = FrameError::Truncated(7).into();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
}

#[test]
fn encode_over_send_limit_fails_before_encoding() {
    let msg = PutResponse {
        header: header(9),
        prev_kv: Some(kv("key", 1000, 3)),
    };
    let len = msg.encoded_len();
    assert!(len > 1000);
    assert_eq!(
        encode_message(&msg, len - 1),
        Err(Error::MessageTooLarge {
            size: len,
            limit: len - 1,
            direction: Direction::Send,
        })
    );
    // At the limit it is encoded.
    let framed = encode_message(&msg, len).unwrap();
    assert_eq!(framed.len(), PREFIX_LEN + len);
}

fn points_into(msg: &Bytes, chunk: &Bytes) -> bool {
    let start = chunk.as_ptr() as usize;
    let end = start + chunk.len();
    let m = msg.as_ptr() as usize;
    m >= start && m + msg.len() <= end
}

#[test]
fn zero_copy_when_message_is_inside_one_chunk() {
    let (bodies, buf) = sample_stream();
    let chunk = Bytes::from(buf);
    let mut dec = MessageDecoder::new(NO_LIMIT);
    dec.push(chunk.clone());
    let mut offset = 0;
    for body in &bodies {
        let msg = dec.next_message().unwrap().unwrap();
        assert_eq!(&msg[..], &body[..]);
        if !body.is_empty() {
            assert!(points_into(&msg, &chunk), "message was copied");
            assert_eq!(
                msg.as_ptr() as usize,
                chunk.as_ptr() as usize + offset + PREFIX_LEN
            );
        }
        offset += PREFIX_LEN + body.len();
    }
    assert_eq!(dec.finish(), Ok(()));
}

#[test]
fn zero_copy_when_body_chunk_follows_prefix_chunk() {
    let body = RangeResponse {
        header: header(2),
        kvs: vec![kv("foo", 50, 2)],
        more: false,
        count: 1,
    }
    .encode_to_vec();
    let mut prefix = BytesMut::new();
    prefix.extend_from_slice(&[0]);
    prefix.extend_from_slice(&(body.len() as u32).to_be_bytes());
    let body_chunk = Bytes::from(body.clone());

    let mut dec = MessageDecoder::new(NO_LIMIT);
    dec.push(prefix.freeze());
    assert_eq!(dec.next_message().unwrap(), None);
    dec.push(body_chunk.clone());
    let msg = dec.next_message().unwrap().unwrap();
    assert_eq!(&msg[..], &body[..]);
    assert_eq!(msg.as_ptr(), body_chunk.as_ptr());
    assert!(points_into(&msg, &body_chunk));
}

#[test]
fn message_split_across_chunks_is_reassembled() {
    let body: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let mut buf = vec![0];
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    let a = Bytes::copy_from_slice(&buf[..300]);
    let b = Bytes::copy_from_slice(&buf[300..]);
    let mut dec = MessageDecoder::new(NO_LIMIT);
    dec.push(a.clone());
    assert_eq!(dec.next_message().unwrap(), None);
    dec.push(b.clone());
    let msg = dec.next_message().unwrap().unwrap();
    assert_eq!(&msg[..], &body[..]);
    assert!(!points_into(&msg, &a) && !points_into(&msg, &b));
    assert_eq!(dec.finish(), Ok(()));
}

#[test]
fn empty_pushes_are_harmless() {
    let mut dec = MessageDecoder::new(NO_LIMIT);
    dec.push(Bytes::new());
    assert_eq!(dec.next_message(), Ok(None));
    assert_eq!(dec.finish(), Ok(()));
    dec.push(Bytes::from_static(&[0, 0, 0]));
    dec.push(Bytes::new());
    dec.push(Bytes::from_static(&[0, 1, 0x42]));
    assert_eq!(dec.next_message().unwrap().unwrap(), &[0x42][..]);
    assert_eq!(dec.finish(), Ok(()));
}
