//! Fast hashers for maps keyed by the client's own IDs (calls, streams, watchers): one
//! multiply per word instead of SipHash. The keys are chosen by the client, never by the
//! network, so there is nothing for an attacker to collide. Public so the adapters share them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash-style hasher: rotate, xor, multiply.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for IdHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }

    #[inline]
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }
}

/// A `HashMap` with [`IdHasher`].
pub type IdHashMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Hasher for IDs handed out one after another (watchers), looked up in bulk: the ID itself
/// picks the bucket, so consecutive IDs sit side by side in memory and a fan-out to many
/// watchers walks memory in order (the prefetcher hides the cache misses that dominate a
/// fan-out after the process slept); a multiply supplies the tag bits the table compares
/// first. The price is a pathological pattern: live IDs that are all multiples of a large
/// power of two share buckets (still correct, only slower).
#[derive(Debug, Default, Clone, Copy)]
pub struct SeqHasher(u64);

/// The top seven bits: what `hashbrown` stores as the tag of an entry.
const TAG_BITS: u64 = 0x7f << 57;

impl Hasher for SeqHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        let n = n ^ self.0.wrapping_mul(K);
        self.0 = (n & !TAG_BITS) | (n.wrapping_mul(K) & TAG_BITS);
    }

    #[inline]
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// A `HashMap` with [`SeqHasher`].
pub type SeqHashMap<K, V> = HashMap<K, V, BuildHasherDefault<SeqHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn consecutive_ids_get_consecutive_buckets_and_mixed_tags() {
        let build = BuildHasherDefault::<SeqHasher>::default();
        let hashes: Vec<u64> = (1000u64..1016).map(|id| build.hash_one(id)).collect();
        for (i, h) in hashes.iter().enumerate() {
            assert_eq!(h & 0xffff, 1000 + i as u64);
        }
        let tags: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(tags.len() > 8, "tags barely vary: {tags:?}");
    }
}
