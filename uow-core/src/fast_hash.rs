//! A fast hasher for the unit of work's internal maps.
//!
//! Those maps are keyed by values the crate itself chooses, never by user data: `TypeId`s
//! (which store holds an entity type) and slot numbers (pending generated values, scope logs,
//! the change index of a commit). HashDoS resistance buys nothing there, while SipHash was the
//! largest single cost of `get_mut` and a visible one of every commit (see BENCHMARKS.md).
//! Maps keyed by the user's keys (the identity map, the matching of an aggregate's members,
//! the parents of a level being loaded) use [`KeyHash`]: foldhash, seeded at random per
//! process and per map like the standard library's SipHash (so keys read from a database
//! cannot be chosen to collide without learning the seed), at a fraction of SipHash's cost,
//! which was a tenth of loading and committing an aggregate of 1,100 entities.
//!
//! The mixing step is FxHash's (rustc's own hasher): rotate, xor, multiply by an odd constant.

use std::hash::{BuildHasherDefault, Hasher};

/// `BuildHasher` for maps keyed by the user's keys (the identity map): foldhash, seeded at
/// random per process and per map, as the standard library's SipHash is, at a fraction of its
/// cost.
pub(crate) type KeyHash = foldhash::quality::RandomState;

/// `BuildHasher` for maps keyed by crate-chosen values.
pub(crate) type FastHash = BuildHasherDefault<FastHasher>;

/// FxHash: one rotate, xor and multiply per word.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::any::TypeId;
    use std::collections::{HashMap, HashSet};
    use std::hash::BuildHasher;

    #[test]
    fn maps_work_with_slots_pairs_and_type_ids() {
        let mut slots: HashMap<u32, u32, FastHash> = HashMap::default();
        let mut pairs: HashMap<(usize, u32), usize, FastHash> = HashMap::default();
        for i in 0..10_000u32 {
            slots.insert(i, i * 2);
            pairs.insert((i as usize % 3, i), i as usize);
        }
        assert!((0..10_000u32).all(|i| slots[&i] == i * 2));
        assert!((0..10_000u32).all(|i| pairs[&(i as usize % 3, i)] == i as usize));
        let mut types: HashMap<TypeId, usize, FastHash> = HashMap::default();
        types.insert(TypeId::of::<u8>(), 1);
        types.insert(TypeId::of::<String>(), 2);
        assert_eq!(types[&TypeId::of::<String>()], 2);
        assert_eq!(types.get(&TypeId::of::<u16>()), None);
    }

    #[test]
    fn distinct_small_keys_get_distinct_hashes() {
        let build = FastHash::default();
        let hashes: HashSet<u64> = (0..100_000u32).map(|i| build.hash_one(i)).collect();
        assert_eq!(hashes.len(), 100_000);
        let bytes: HashSet<u64> = (0..1000u32)
            .map(|i| build.hash_one(format!("key {i}").as_bytes()))
            .collect();
        assert_eq!(bytes.len(), 1000);
    }
}
