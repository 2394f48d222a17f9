//! Scoring extracted text against gold text, the way docs/benchmarks/extract.md's tables are made.
//!
//! Character level (the Chinese benchmark): both texts are NFKC-normalized and
//! reduced to their letters and digits (`char::is_alphanumeric`), so whitespace,
//! punctuation and markup prefixes (`- `, code fences) never count. The overlap is
//! the longest common subsequence of the two character sequences (order matters:
//! a bag of characters would credit any Chinese text with most common characters).
//! P = LCS / extracted length, R = LCS / gold length; an empty side scores 0.
//!
//! Token level (English, the usual article-extraction metric of the ScrapingHub
//! benchmark): lower-cased runs of letters and digits, overlap = size of the
//! multiset intersection.
//!
//! Over a set of pages, P and R are averaged per page and F1 is the harmonic mean
//! of those averages (`Totals::f1`). The file depends only on `std` and
//! `unicode-normalization`, so the peers' benchmark project includes it by path.

use std::collections::HashMap;

use unicode_normalization::UnicodeNormalization;

/// Precision and recall of one page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pr {
    pub precision: f64,
    pub recall: f64,
}

impl Pr {
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub fn f1(&self) -> f64 {
        harmonic(self.precision, self.recall)
    }
}

fn harmonic(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// The letters and digits of `text` after NFKC, as the character scorer sees them.
pub fn scoring_chars(text: &str) -> Vec<char> {
    text.nfkc().filter(|c| c.is_alphanumeric()).collect()
}

/// Character-level P/R of `extracted` against `gold` (LCS over letters and digits after NFKC).
pub fn char_pr(extracted: &str, gold: &str) -> Pr {
    let e = scoring_chars(extracted);
    let g = scoring_chars(gold);
    let common = lcs_len(&e, &g) as f64;
    Pr {
        precision: if e.is_empty() {
            0.0
        } else {
            common / e.len() as f64
        },
        recall: if g.is_empty() {
            0.0
        } else {
            common / g.len() as f64
        },
    }
}

/// Token-level P/R (lower-cased letter/digit runs, multiset intersection).
pub fn token_pr(extracted: &str, gold: &str) -> Pr {
    let count = |t: &str| {
        let mut m: HashMap<String, usize> = HashMap::new();
        let lower = t.nfkc().collect::<String>().to_lowercase();
        for w in lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            *m.entry(w.to_string()).or_default() += 1;
        }
        m
    };
    let (e, g) = (count(extracted), count(gold));
    let (ne, ng): (usize, usize) = (e.values().sum(), g.values().sum());
    let common: usize = e
        .iter()
        .map(|(w, n)| (*n).min(g.get(w).copied().unwrap_or(0)))
        .sum();
    Pr {
        precision: if ne == 0 { 0.0 } else { common as f64 / ne as f64 },
        recall: if ng == 0 { 0.0 } else { common as f64 / ng as f64 },
    }
}

/// Length of the longest common subsequence, bit-parallel (Hyyrö 2004):
/// O(len(a) * len(b) / 64) word operations, so 20k x 20k characters is instant.
pub fn lcs_len(a: &[char], b: &[char]) -> usize {
    if a.is_empty() || b.is_empty() {
        return 0;
    }
    let words = a.len().div_ceil(64);
    // For each character of `a`, the bit mask of its positions.
    let mut masks: HashMap<char, Vec<u64>> = HashMap::new();
    for (i, &c) in a.iter().enumerate() {
        masks.entry(c).or_insert_with(|| vec![0; words])[i / 64] |= 1u64 << (i % 64);
    }
    let zero = vec![0u64; words];
    let mut v = vec![u64::MAX; words];
    for c in b {
        let m = masks.get(c).unwrap_or(&zero);
        // V' = (V + (V & M)) | (V & !M), with the addition carried across words.
        let mut carry = 0u64;
        for k in 0..words {
            let u = v[k] & m[k];
            let (s1, c1) = v[k].overflowing_add(u);
            let (s2, c2) = s1.overflowing_add(carry);
            carry = (c1 || c2) as u64;
            v[k] = s2 | (v[k] & !m[k]);
        }
    }
    let unused = words * 64 - a.len();
    let zeros: usize = v.iter().map(|w| w.count_zeros() as usize).sum();
    // Bits past the end of `a` stay 1 (they never match), so all zeros are real.
    debug_assert!(unused < 64);
    zeros
}

/// Running per-page averages over a set of pages.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub pages: usize,
    sum_p: f64,
    sum_r: f64,
}

impl Totals {
    /// Add one page's scores.
    pub fn add(&mut self, pr: Pr) {
        self.pages += 1;
        self.sum_p += pr.precision;
        self.sum_r += pr.recall;
    }

    /// Mean precision over the pages.
    pub fn precision(&self) -> f64 {
        self.sum_p / self.pages.max(1) as f64
    }

    /// Mean recall over the pages.
    pub fn recall(&self) -> f64 {
        self.sum_r / self.pages.max(1) as f64
    }

    /// Harmonic mean of the mean precision and the mean recall.
    pub fn f1(&self) -> f64 {
        harmonic(self.precision(), self.recall())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_lcs(a: &[char], b: &[char]) -> usize {
        let mut dp = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                dp[i][j] = if a[i - 1] == b[j - 1] {
                    dp[i - 1][j - 1] + 1
                } else {
                    dp[i - 1][j].max(dp[i][j - 1])
                };
            }
        }
        dp[a.len()][b.len()]
    }

    #[test]
    fn bit_parallel_lcs_matches_the_textbook_one() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for _ in 0..200 {
            let (la, lb) = (next() % 150, next() % 150);
            let a: Vec<char> = (0..la).map(|_| (b'a' + (next() % 4) as u8) as char).collect();
            let b: Vec<char> = (0..lb).map(|_| (b'a' + (next() % 4) as u8) as char).collect();
            assert_eq!(lcs_len(&a, &b), naive_lcs(&a, &b), "{a:?} {b:?}");
        }
    }

    #[test]
    fn char_scores_ignore_punctuation_width_and_order_counts() {
        let pr = char_pr("今天，天气很好！", "今天天气很好");
        assert_eq!((pr.precision, pr.recall), (1.0, 1.0));
        let pr = char_pr("ＡＢＣ好", "abc好");
        assert!(
            (pr.precision - 0.25).abs() < 1e-9,
            "NFKC folds width, not case: {pr:?}"
        );
        let pr = char_pr("好天气今天", "今天好天气");
        assert!(pr.recall < 1.0, "order matters");
        assert_eq!(char_pr("", "x").f1(), 0.0);
        let pr = token_pr("The cat sat. The end", "the cat sat on the mat");
        assert!((pr.precision - 0.8).abs() < 1e-9 && (pr.recall - 4.0 / 6.0).abs() < 1e-9);
    }
}
