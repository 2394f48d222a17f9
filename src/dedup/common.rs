//! Text that many records share: templates, counted over the whole corpus.
//!
//! Two items of one long template (an exam's fixed question text with two scenario
//! slots, a form letter) look like near duplicates to every pairwise measure: most of
//! their characters are the template, and when a slot text recurs in another slot the
//! alignment matches it too, so what differs is one-sided on both sides and no gap
//! counts against the pair. What tells them apart is corpus-level: the template is
//! text that *many* records hold, a duplicate's content is not. So the cluster step
//! first counts, for every window of [`WINDOW`] consecutive characters of each
//! record's verification sample, how many records hold it; a sampled character in a
//! window held by at least `min_records` records is *common*. Verification then
//! compares what is left once the common text is set aside (see
//! [`crate::dedup::minhash::Verify::matches`]).
//!
//! The sample of a record is taken at a level (every character whose selection hash
//! has `level` trailing zero bits); a pair is compared at the coarser of its two
//! levels, so each record's windows are counted at its own level and the next one.
//!
//! **Memory** (the one index of this step): a count-min sketch of saturating byte
//! counters, each window counted in two slots of one table and read as the smaller,
//! `min(max_bytes, 2^ceil(log2(windows / 2)))` bytes for `windows` counted windows,
//! at least 64 KiB. Colliding windows add up, so a full table reports too much
//! sharing: a window held by one record reads as common only when *both* its slots
//! reach `min_records` (32) through other windows, either by many collisions (at load
//! `2 windows / slots = λ`, Poisson `P(X >= 31 | λ)`: ~1e-18 at λ = 4, the default
//! size) or by sharing both slots with common windows (`(c / slots)^2` for `c`
//! distinct common windows). Beyond the cap more text reads as common, which only
//! weakens the template rule (a pair whose text is all common is judged as before
//! it), never merges a pair it would not merge without it.
//!
//! Counts are sums over records, so the table does not depend on record order or
//! on how a sharded run split the corpus.

use crate::decontam::normalize::mix;

/// Sampled characters per counted window.
pub const WINDOW: usize = 8;
/// Levels above a record's own at which its windows are counted too.
const EXTRA_LEVELS: u32 = 1;
const SEED: u64 = 0x636f_6d6d_6f6e_0001; // "common"

/// Per window of sampled characters, how many records hold it (saturating at 255).
pub struct CommonWindows {
    counts: Vec<u8>,
    mask: u64,
    min_records: u8,
    /// Per-record scratch: the window keys, and the sample at one level.
    keys: Vec<u64>,
    at: Vec<u32>,
}

impl CommonWindows {
    /// A table sized for about `windows` windows, at most `max_bytes` bytes.
    pub fn new(windows: u64, max_bytes: u64, min_records: u8) -> CommonWindows {
        let want = (windows / 2).max(1 << 16).next_power_of_two();
        let cap = max_bytes.max(1 << 16);
        let cap = 1u64 << (63 - cap.leading_zeros()); // a power of two <= max_bytes
        let slots = want.min(cap);
        CommonWindows {
            counts: vec![0; slots as usize],
            mask: slots - 1,
            min_records: min_records.max(1),
            keys: Vec::new(),
            at: Vec::new(),
        }
    }

    /// Windows one record adds (for sizing): its own level and the next ones.
    pub fn windows_per_record(sample_len: usize) -> u64 {
        (sample_len.saturating_sub(WINDOW - 1) * 2) as u64
    }

    /// Count one record's sample (`(selection << 16) | char` words at `level`).
    pub fn add(&mut self, sample: &[u32], level: u32) {
        let (mut keys, mut at) = (std::mem::take(&mut self.keys), std::mem::take(&mut self.at));
        keys.clear();
        for l in level..=(level + EXTRA_LEVELS).min(16) {
            at.clear();
            at.extend(sample.iter().filter(|&&w| (w >> 16).trailing_zeros() >= l));
            keys.extend(at.windows(WINDOW).map(|w| key(w, l)));
        }
        keys.sort_unstable();
        keys.dedup();
        for &k in &keys {
            let (i, j) = self.slots(k);
            self.counts[i] = self.counts[i].saturating_add(1);
            if j != i {
                self.counts[j] = self.counts[j].saturating_add(1);
            }
        }
        (self.keys, self.at) = (keys, at);
    }

    /// A window's two slots (a count-min sketch of two rows in one table).
    fn slots(&self, k: u64) -> (usize, usize) {
        ((k & self.mask) as usize, ((k >> 32) & self.mask) as usize)
    }

    /// How many records hold a window: at least the true count, the smaller of its
    /// two slots.
    fn count(&self, k: u64) -> u8 {
        let (i, j) = self.slots(k);
        self.counts[i].min(self.counts[j])
    }

    /// Per character of `sample` (taken at `level`): whether it lies in a common window.
    pub fn common_mask(&self, sample: &[u32], level: u32) -> Vec<bool> {
        let mut out = vec![false; sample.len()];
        for (p, w) in sample.windows(WINDOW).enumerate() {
            if self.count(key(w, level)) >= self.min_records {
                out[p..p + WINDOW].iter_mut().for_each(|m| *m = true);
            }
        }
        out
    }
}

/// A window's key: its eight 16-bit characters packed into two words, mixed with
/// the level (two mixes per window, not one per character).
fn key(w: &[u32], level: u32) -> u64 {
    let pack = |half: &[u32]| half.iter().fold(0u64, |h, &x| h << 16 | (x & 0xffff) as u64);
    let (lo, hi) = w.split_at(WINDOW / 2);
    mix(pack(lo) ^ mix(pack(hi) ^ SEED ^ (level as u64) << 56))
}

/// The characters of `sample` outside common text, in order, taken only from
/// stretches of at least `min_run` uncommon characters: a typo inside common text
/// breaks the windows around it, and that short stretch is not content of its own.
pub fn remainder(sample: &[u32], common: &[bool], min_run: usize) -> Vec<u32> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..=sample.len() {
        if i == sample.len() || common[i] {
            if i - start >= min_run {
                out.extend_from_slice(&sample[start..i]);
            }
            start = i + 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<u32> {
        // Level-0 words: every character selected.
        s.chars().map(|c| c as u32 & 0xffff).collect()
    }

    #[test]
    fn text_held_by_many_records_is_common_and_the_rest_remains() {
        let template = "For which of these two situations is the act clearly wrong? Situation one: ";
        let mut table = CommonWindows::new(1000, 1 << 20, 3);
        let slots = [
            "I paid for my coffee.",
            "I lied to my best friend.",
            "I fed the cat.",
            "I kept the lost wallet.",
        ];
        for s in slots {
            table.add(&chars(&format!("{template}{s}")), 0);
        }
        let probe = chars(&format!("{template}{}", slots[1]));
        let mask = table.common_mask(&probe, 0);
        let n = template.chars().count();
        assert!(mask[..n - WINDOW].iter().all(|&m| m), "the template is common");
        let rest = remainder(&probe, &mask, 8);
        let rest: String = rest.iter().map(|&c| char::from_u32(c).unwrap()).collect();
        assert!(rest.contains("lied to my best friend"), "{rest}");
        // Held by two records only: not common at 3.
        let mut two = CommonWindows::new(1000, 1 << 20, 3);
        two.add(&probe, 0);
        two.add(&probe, 0);
        assert!(two.common_mask(&probe, 0).iter().all(|&m| !m));
    }

    #[test]
    fn short_uncommon_stretches_are_not_remainder() {
        let s: Vec<u32> = (0..30).collect();
        let mut m = vec![true; 30];
        m[10] = false; // a typo in common text
        m[20..30].iter_mut().for_each(|x| *x = false);
        assert_eq!(remainder(&s, &m, 8), (20..30).collect::<Vec<u32>>());
    }
}
