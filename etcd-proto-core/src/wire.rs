//! A hand-written protobuf decoder for the one message that arrives by the million:
//! `WatchResponse` (with its `Event`s and `KeyValue`s).
//!
//! prost's generated decoding is generic over `Buf` and goes through a trait call, a
//! wire-type check and a `Bytes` split per field; for a watch response carrying one small
//! event that was most of the client's work (see `docs/PERFORMANCE.md`). This decoder reads a
//! contiguous `Bytes` by index, matches whole field keys (tag and wire type in one compare),
//! sizes the event vector from the first event, and slices keys and values out of the
//! received buffer (no copy). It produces exactly the prost
//! types, with prost's semantics: unknown fields (groups included) skipped, a repeated
//! optional message merged, last scalar wins, UTF-8 checked, a wrong wire type an error. A
//! differential fuzz target (`fuzz/fuzz_targets/watch_decode.rs`) holds it to prost's
//! answer on arbitrary input.

use bytes::Bytes;
use etcd_proto::etcdserverpb::{ResponseHeader, WatchResponse};
use etcd_proto::mvccpb::{Event, KeyValue};

/// Why a message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid protobuf: {0}")]
pub struct DecodeError(&'static str);

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// prost's recursion limit: each nested message and each group level uses one, and a field
/// skipped with none left is an error (kept identical so both accept the same inputs).
const RECURSION_LIMIT: u32 = 100;

/// Decodes a `WatchResponse` from one whole gRPC message body.
pub fn decode_watch_response(msg: &Bytes) -> Result<WatchResponse, DecodeError> {
    let mut r = Reader::new(msg);
    let mut resp = WatchResponse::default();
    while let Some(key) = r.key()? {
        match key {
            0x0a => {
                let end = r.len_end()?;
                let header = resp.header.get_or_insert_with(ResponseHeader::default);
                r.header(header, end)?;
            }
            0x10 => resp.watch_id = r.varint()? as i64,
            0x18 => resp.created = r.varint()? != 0,
            0x20 => resp.canceled = r.varint()? != 0,
            0x28 => resp.compact_revision = r.varint()? as i64,
            0x32 => {
                let end = r.len_end()?;
                let text = std::str::from_utf8(&r.data[r.pos..end])
                    .map_err(|_| DecodeError("string is not UTF-8"))?;
                resp.cancel_reason.clear();
                resp.cancel_reason.push_str(text);
                r.pos = end;
            }
            0x38 => resp.fragment = r.varint()? != 0,
            0x5a => {
                let end = r.len_end()?;
                if resp.events.capacity() == 0 {
                    resp.events.reserve_exact(r.events_estimate(end));
                }
                let mut event = Event::default();
                r.event(&mut event, end)?;
                resp.events.push(event);
            }
            _ => r.unknown(key, &[1, 2, 3, 4, 5, 6, 7, 11])?,
        }
    }
    Ok(resp)
}

/// The store revision in the header (field 1) of an etcd response, or 0 when the message
/// does not start with a well-formed header. Reads only the header's own bytes.
pub fn header_revision(msg: &Bytes) -> i64 {
    let mut r = Reader::new(msg);
    if !matches!(r.key(), Ok(Some(0x0a))) {
        return 0;
    }
    let Ok(end) = r.len_end() else {
        return 0;
    };
    let mut h = ResponseHeader::default();
    match r.header(&mut h, end) {
        Ok(()) => h.revision,
        Err(_) => 0,
    }
}

/// A cursor over `data[..end]` (`end` is the end of the message being read); `bytes` is the
/// same buffer, for slicing out keys and values.
struct Reader<'a> {
    bytes: &'a Bytes,
    data: &'a [u8],
    pos: usize,
    end: usize,
    /// Recursion budget left at the current nesting level.
    budget: u32,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a Bytes) -> Reader<'a> {
        Reader {
            bytes,
            data: bytes,
            pos: 0,
            end: bytes.len(),
            budget: RECURSION_LIMIT,
        }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, DecodeError> {
        // One byte is the common case (tags, flags, small numbers).
        if self.pos < self.end {
            let b = self.data[self.pos];
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_long()
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, DecodeError> {
        let bytes = &self.data[self.pos..self.end];
        let mut value = 0u64;
        for (i, &b) in bytes.iter().enumerate().take(10) {
            if i == 9 && b > 1 {
                return Err(DecodeError("invalid varint"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(value);
            }
        }
        Err(DecodeError(if bytes.len() < 10 {
            "buffer underflow"
        } else {
            "invalid varint"
        }))
    }

    /// The next field's key (tag << 3 | wire type), checked, or `None` at the end of the
    /// message.
    #[inline(always)]
    fn key(&mut self) -> Result<Option<u64>, DecodeError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err(DecodeError("invalid key value"));
        }
        if key & 7 > u64::from(FIXED32) {
            return Err(DecodeError("invalid wire type value"));
        }
        if key >> 3 == 0 {
            return Err(DecodeError("invalid tag value: 0"));
        }
        Ok(Some(key))
    }

    /// A field none of the expected keys matched: a known tag (one of `known`) with another
    /// wire type is an error, anything else is skipped.
    #[inline(never)]
    fn unknown(&mut self, key: u64, known: &[u32]) -> Result<(), DecodeError> {
        let tag = (key >> 3) as u32;
        if known.contains(&tag) {
            return Err(DecodeError("invalid wire type"));
        }
        self.skip(tag, (key & 7) as u8, self.budget)
    }

    /// A length-delimited field's end offset (the cursor is left at its start).
    #[inline(always)]
    fn len_end(&mut self) -> Result<usize, DecodeError> {
        let len = self.varint()?;
        if len > (self.end - self.pos) as u64 {
            return Err(DecodeError("buffer underflow"));
        }
        Ok(self.pos + len as usize)
    }

    /// A bytes field: a slice of the received buffer.
    #[inline(always)]
    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let end = self.len_end()?;
        let slice = self.bytes.slice(self.pos..end);
        self.pos = end;
        Ok(slice)
    }

    /// How many events to make room for, judging by the size of the first (which ends at
    /// `end`): events of one response are alike. Bounded by the bytes left, so a hostile
    /// message cannot make it allocate much more than its own size.
    fn events_estimate(&self, end: usize) -> usize {
        let first = end - self.pos + 2;
        let left = self.end - end;
        1 + left / first.max(48)
    }

    /// Runs `field` for every field key of the nested message ending at `end`.
    #[inline(always)]
    fn within(
        &mut self,
        end: usize,
        mut field: impl FnMut(&mut Self, u64) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        let outer = std::mem::replace(&mut self.end, end);
        self.budget -= 1;
        while let Some(key) = self.key()? {
            field(self, key)?;
        }
        self.budget += 1;
        self.end = outer;
        Ok(())
    }

    fn header(&mut self, h: &mut ResponseHeader, end: usize) -> Result<(), DecodeError> {
        self.within(end, |r, key| {
            match key {
                0x08 => h.cluster_id = r.varint()?,
                0x10 => h.member_id = r.varint()?,
                0x18 => h.revision = r.varint()? as i64,
                0x20 => h.raft_term = r.varint()?,
                _ => r.unknown(key, &[1, 2, 3, 4])?,
            }
            Ok(())
        })
    }

    fn event(&mut self, e: &mut Event, end: usize) -> Result<(), DecodeError> {
        self.within(end, |r, key| {
            match key {
                0x08 => e.r#type = r.varint()? as i32,
                0x12 => {
                    let end = r.len_end()?;
                    r.key_value(e.kv.get_or_insert_with(KeyValue::default), end)?;
                }
                0x1a => {
                    let end = r.len_end()?;
                    r.key_value(e.prev_kv.get_or_insert_with(KeyValue::default), end)?;
                }
                _ => r.unknown(key, &[1, 2, 3])?,
            }
            Ok(())
        })
    }

    #[inline(always)]
    fn key_value(&mut self, kv: &mut KeyValue, end: usize) -> Result<(), DecodeError> {
        self.within(end, |r, key| {
            match key {
                0x0a => kv.key = r.bytes()?,
                0x10 => kv.create_revision = r.varint()? as i64,
                0x18 => kv.mod_revision = r.varint()? as i64,
                0x20 => kv.version = r.varint()? as i64,
                0x2a => kv.value = r.bytes()?,
                0x30 => kv.lease = r.varint()? as i64,
                _ => r.unknown(key, &[1, 2, 3, 4, 5, 6])?,
            }
            Ok(())
        })
    }

    /// Skips an unknown field (a group up to its matching end).
    fn skip(&mut self, tag: u32, wt: u8, budget: u32) -> Result<(), DecodeError> {
        if budget == 0 {
            return Err(DecodeError("recursion limit reached"));
        }
        let len = match wt {
            VARINT => {
                self.varint()?;
                0
            }
            FIXED64 => 8,
            FIXED32 => 4,
            LEN => {
                self.pos = self.len_end()?;
                0
            }
            START_GROUP => {
                loop {
                    let Some(inner) = self.key()? else {
                        return Err(DecodeError("buffer underflow"));
                    };
                    let (inner_tag, inner_wt) = ((inner >> 3) as u32, (inner & 7) as u8);
                    if inner_wt == END_GROUP {
                        if inner_tag != tag {
                            return Err(DecodeError("unexpected end group tag"));
                        }
                        break;
                    }
                    self.skip(inner_tag, inner_wt, budget - 1)?;
                }
                0
            }
            _ => return Err(DecodeError("unexpected end group tag")),
        };
        if self.end - self.pos < len {
            return Err(DecodeError("buffer underflow"));
        }
        self.pos += len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            create_revision: rev - 1,
            mod_revision: rev,
            version: 2,
            value: Bytes::copy_from_slice(value.as_bytes()),
            lease: 7,
        }
    }

    fn sample() -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                cluster_id: u64::MAX,
                member_id: 1 << 40,
                revision: 123_456_789,
                raft_term: 3,
            }),
            watch_id: 42,
            created: false,
            canceled: true,
            compact_revision: -5,
            cancel_reason: "ünïcode reason".into(),
            fragment: true,
            events: vec![
                Event {
                    r#type: 0,
                    kv: Some(kv("a", "1", 10)),
                    prev_kv: None,
                },
                Event {
                    r#type: 1,
                    kv: Some(kv("b", "", 11)),
                    prev_kv: Some(kv("b", "old", 9)),
                },
                Event::default(),
            ],
        }
    }

    fn both(
        bytes: &[u8],
    ) -> (
        Result<WatchResponse, DecodeError>,
        Result<WatchResponse, ()>,
    ) {
        let b = Bytes::copy_from_slice(bytes);
        (
            decode_watch_response(&b),
            WatchResponse::decode(b.clone()).map_err(|_| ()),
        )
    }

    #[test]
    fn round_trips_every_field() {
        let msg = sample();
        let bytes = Bytes::from(msg.encode_to_vec());
        assert_eq!(decode_watch_response(&bytes).unwrap(), msg);
        assert_eq!(
            decode_watch_response(&Bytes::new()).unwrap(),
            Default::default()
        );
    }

    #[test]
    fn keys_and_values_are_slices_of_the_message() {
        let bytes = Bytes::from(sample().encode_to_vec());
        let resp = decode_watch_response(&bytes).unwrap();
        let key = &resp.events[0].kv.as_ref().unwrap().key;
        let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
        assert!(range.contains(&(key.as_ptr() as usize)));
    }

    #[test]
    fn matches_prost_on_unknown_fields_merges_and_repeats() {
        let mut raw = sample().encode_to_vec();
        // unknown varint, fixed64, fixed32, length-delimited and a nested group at the top
        raw.extend_from_slice(&[0x40, 0x96, 0x01]); // field 8 varint
        raw.extend_from_slice(&[0x49, 1, 2, 3, 4, 5, 6, 7, 8]); // field 9 fixed64
        raw.extend_from_slice(&[0x55, 1, 2, 3, 4]); // field 10 fixed32
        raw.extend_from_slice(&[0x62, 2, 0xff, 0xff]); // field 12 bytes
        raw.extend_from_slice(&[0x6b, 0x73, 0x08, 0x01, 0x74, 0x6c]); // group 13 { group 14 { 1: 1 } }
                                                                      // a second header (merged: only revision changes) and a second watch_id (last wins)
        raw.extend_from_slice(&[0x0a, 0x02, 0x18, 0x07, 0x10, 0x09]);
        // an event whose kv appears twice (merged) with an unknown field inside
        raw.extend_from_slice(&[
            0x5a, 0x0e, 0x12, 0x05, 0x0a, 0x01, b'k', 0x18, 0x05, 0x12, 0x05, 0x2a, 0x01, b'v',
            0x38, 0x01,
        ]);
        let (ours, prost) = both(&raw);
        assert_eq!(ours.unwrap(), prost.unwrap());
    }

    #[test]
    fn rejects_what_prost_rejects() {
        let good = sample().encode_to_vec();
        let cases: Vec<Vec<u8>> = vec![
            good[..good.len() - 1].to_vec(), // truncated
            vec![0x10],                      // varint missing
            vec![0x10, 0x80],                // varint cut
            vec![
                0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ], // varint overflow
            vec![0x12, 0x00],                // watch_id with wire type LEN
            vec![0x07],                      // wire type 7
            vec![0x00],                      // tag 0
            vec![0x0c],                      // end group without start
            vec![0x6b, 0x08, 0x01],          // group without end
            vec![0x6b, 0x74],                // group closed by another tag
            vec![0x32, 0x02, 0xc3, 0x28],    // cancel_reason not UTF-8
            vec![0x5a, 0x05, 0x12, 0x09, 0x0a], // kv longer than its event
            vec![0x49, 1, 2, 3],             // fixed64 cut
            vec![0x5a, 0x02, 0x08],          // event type missing
            vec![0x5a, 0x01, 0x0a],          // event field 1 with wire type LEN
        ];
        for case in cases {
            let (ours, prost) = both(&case);
            assert!(prost.is_err(), "prost accepted {case:x?}");
            assert!(ours.is_err(), "we accepted {case:x?}: {ours:?}");
        }
    }

    #[test]
    fn nesting_limit_is_prost_s() {
        fn groups(depth: usize) -> Vec<u8> {
            // field 13 groups, nested `depth` deep
            let mut v = vec![0x6b; depth];
            v.extend(std::iter::repeat_n(0x6c, depth));
            v
        }
        for depth in 95..=102 {
            let top = groups(depth);
            let (ours, prost) = both(&top);
            assert_eq!(ours.is_ok(), prost.is_ok(), "top level, {depth} groups");
            // the same inside an event's kv
            let mut kv = vec![0x0a, 0x01, b'k'];
            kv.extend(groups(depth));
            let mut event = vec![0x12, kv.len() as u8];
            event.extend(kv);
            let mut msg = vec![0x5a, event.len() as u8];
            msg.extend(event);
            let (ours, prost) = both(&msg);
            assert_eq!(ours.is_ok(), prost.is_ok(), "in a kv, {depth} groups");
        }
    }

    #[test]
    fn agrees_with_prost_on_every_prefix_and_every_single_byte_change() {
        let good = sample().encode_to_vec();
        for end in 0..=good.len() {
            let (ours, prost) = both(&good[..end]);
            assert_eq!(ours.ok(), prost.ok(), "prefix of {end} bytes");
        }
        for i in 0..good.len() {
            for b in [0x00, 0x01, 0x07, 0x0a, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let (ours, prost) = both(&bad);
                assert_eq!(ours.ok(), prost.ok(), "byte {i} set to {b:#x}");
            }
        }
    }
}
