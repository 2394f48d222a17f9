//! Hash maps keyed by values that are already good hashes (xxh3 of a text, an
//! n-gram key): std's SipHash would hash them a second time, which was a visible
//! share of the per-record stages' CPU. The hasher folds the key with one multiply.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A [`Hasher`] for keys that are already hashes (`u64`, `u128`).
#[derive(Default, Clone, Copy)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not expected (keys are integers); still a correct hash.
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u64(&mut self, v: u64) {
        // One multiply spreads the low bits into the high ones hashbrown uses for its tags.
        self.0 = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64 ^ (v >> 64) as u64);
    }
}

/// Build [`PrehashedHasher`]s.
pub type Prehashed = BuildHasherDefault<PrehashedHasher>;

/// A map keyed by hashes.
pub type HashKeyMap<K, V> = HashMap<K, V, Prehashed>;

/// A set of hashes.
pub type HashKeySet<K> = HashSet<K, Prehashed>;
