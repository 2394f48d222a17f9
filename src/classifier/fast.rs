//! The fastText prediction path of [`super::Classifier`], rewritten for speed and
//! kept bit-identical to the `fasttext` crate's `FastText::predict`.
//!
//! What the crate does per text: build a whitespace-joined `String` of tokens,
//! split it again, hash every token (FNV-1a) and look it up in a hash table that
//! compares against heap `String`s, collect the row ids (words, then word n-grams,
//! then `</s>`), and average the rows of the *product-quantized* input matrix:
//! every row is rebuilt from 16 centroid lookups and a quantized norm, through
//! bounds-checked generic code. That was ~80% of the two classifier stages.
//!
//! What this does instead, with the same float operations in the same order:
//! - tokens are produced straight from the text (no intermediate `String`), hashed
//!   as they are built, and looked up in a table that stores each word's hash
//!   (a mismatch costs no string compare);
//! - the row ids are collected first, then the rows summed in the crate's order
//!   with the same float operations: for a quantized model with 2-wide
//!   sub-quantizers (what `train-classifier` writes) each row is still read from
//!   its 16 codes and norm code (17 bytes, packed side by side, in huge pages),
//!   `x[j] += norm * centroid[j]` as the crate's `addcode` computes it, the sum in
//!   registers and the next rows prefetched; other quantized shapes are
//!   dequantized once at load (`row[j] = norm * centroid[j]`, the same product);
//!   an unquantized model's own rows are summed as the crate does;
//! - the output layer is the crate's own dot kernel (copied below: its runtime
//!   SIMD dispatch decides the summation order, so it must be the same code),
//!   then the same softmax and `exp(ln(p + 1e-5))`;
//! - per-thread scratch buffers: no allocation per text.
//!
//! Memory: a second copy of the codes (3.5 MB for the COLD model, 4.3 MB for the
//! machine-text one) and a 256 KiB table of one-character words per model. Dense
//! `f32` rows were measured too: 8x the bytes (27 and 32 MB), slower, since the
//! sum waits on memory, not on arithmetic.
//!
//! Only what the bundled models use takes this path: no character n-grams
//! (`maxn` 0), softmax-style output, a dense output matrix. Anything else (and a
//! model whose shape does not check out) goes through the crate's `predict`.
//! Unit tests in `super` compare both paths bit for bit on real texts.

use std::cell::RefCell;
use std::collections::HashMap;

use fasttext::args::LossName;
use fasttext::dictionary::{EntryType, EOS};
use fasttext::matrix::Matrix;
use fasttext::FastText;

use crate::text::{fold_width_and_case, is_cjk_through_ext_f};

/// FNV-1a as fastText computes it (bytes sign-extended).
#[inline]
fn fnv(h: u32, bytes: &[u8]) -> u32 {
    let mut h = h;
    for &b in bytes {
        h ^= b as i8 as i32 as u32;
        h = h.wrapping_mul(16777619);
    }
    h
}
const FNV_SEED: u32 = 2166136261;

/// The model's vocabulary: open addressing on the fastText hash (each slot holds
/// the hash beside the word id, so a probe past another word costs no string
/// compare), and a direct table for one-character words of the BMP (most tokens
/// of Chinese text).
struct Vocab {
    /// `(hash, id + 1)`, 0 = empty.
    slots: Vec<(u32, u32)>,
    mask: usize,
    starts: Vec<usize>,
    bytes: Vec<u8>,
    is_word: Vec<bool>,
    /// `id + 1` of the word that is this one character, 0 = none.
    chars: Vec<u32>,
}

impl Vocab {
    fn new(model: &FastText) -> Vocab {
        let words = model.dict().words();
        let cap = (words.len() * 2).next_power_of_two().max(16);
        let mut v = Vocab {
            slots: vec![(0, 0); cap],
            mask: cap - 1,
            starts: Vec::with_capacity(words.len() + 1),
            bytes: Vec::new(),
            is_word: Vec::with_capacity(words.len()),
            chars: vec![0; 0x10000],
        };
        v.starts.push(0);
        for (i, e) in words.iter().enumerate() {
            let h = fnv(FNV_SEED, e.word.as_bytes());
            v.bytes.extend_from_slice(e.word.as_bytes());
            v.starts.push(v.bytes.len());
            v.is_word.push(e.entry_type == EntryType::Word);
            if v.get(e.word.as_bytes(), h).is_some() {
                continue; // the crate's table keeps the first of equal words too
            }
            let mut s = h as usize & v.mask;
            while v.slots[s].1 != 0 {
                s = (s + 1) & v.mask;
            }
            v.slots[s] = (h, i as u32 + 1);
            let mut cs = e.word.chars();
            if let (Some(c), None) = (cs.next(), cs.next()) {
                if (c as u32) < 0x10000 {
                    v.chars[c as usize] = i as u32 + 1;
                }
            }
        }
        v
    }

    #[inline]
    fn get(&self, token: &[u8], h: u32) -> Option<usize> {
        let mut s = h as usize & self.mask;
        loop {
            let (sh, w) = self.slots[s];
            if w == 0 {
                return None;
            }
            if sh == h {
                let w = (w - 1) as usize;
                let word = &self.bytes[self.starts[w]..self.starts[w + 1]];
                if word.len() == token.len() && word.iter().zip(token).all(|(a, b)| a == b) {
                    return Some(w);
                }
            }
            s = (s + 1) & self.mask;
        }
    }

    /// [`Vocab::get`] for a token that is the one character `c`.
    #[inline]
    fn get_char(&self, c: char, token: &[u8], h: u32) -> Option<usize> {
        match self.chars.get(c as usize) {
            Some(&w) => w.checked_sub(1).map(|w| w as usize),
            None => self.get(token, h),
        }
    }
}

/// How word n-gram buckets map to rows (`Dictionary::push_hash`).
enum Prune {
    None,
    All,
    Map(HashMap<i32, i32>),
}

/// Where the input rows come from.
enum Input {
    /// A quantized model with 2-wide sub-quantizers (what `curate train-classifier`
    /// writes): per row its 16 codes and its norm code side by side, the centroids
    /// and the 256 norms in small tables; a row is added as `x[j] += norm * c[j]`,
    /// the crate's `addcode` product. 17 bytes a row instead of 128: the table stays
    /// in cache, which is what the sum waits on.
    Codes {
        /// `nsubq` codes then the norm code, per row, from `packed[base]`.
        packed: Vec<u8>,
        base: usize,
        nsubq: usize,
        /// Sub-quantizer `m`, centroid `k`: `centroids[(m * 256 + k) * 2..][..2]`.
        centroids: Vec<f32>,
        /// Norm by norm code (all 1.0 without `qnorm`).
        norms: Vec<f32>,
    },
    /// A quantized model's rows, dequantized at load with the norms folded in.
    Dequantized(Vec<f32>),
    /// An unquantized model's own dense matrix (read through the model).
    Dense,
}

/// Per-thread buffers, reused across texts.
#[derive(Default)]
struct Scratch {
    token: Vec<u8>,
    hashes: Vec<i32>,
    ids: Vec<u32>,
    hidden: Vec<f32>,
    output: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The fast path for one loaded model.
pub(super) struct Predictor {
    vocab: Vocab,
    input: Input,
    dim: usize,
    nwords: i32,
    nlabels: usize,
    bucket: i32,
    word_ngrams: usize,
    prune: Prune,
    eos: Option<usize>,
    label_prefix: Vec<u8>,
}

impl Predictor {
    /// `None` when the model needs something this path does not do.
    pub(super) fn new(model: &FastText) -> Option<Predictor> {
        let args = model.args();
        let dict = model.dict();
        let dim = usize::try_from(args.dim).ok().filter(|&d| d > 0)?;
        let nlabels = usize::try_from(dict.nlabels()).ok().filter(|&n| n > 0)?;
        if args.maxn > 0
            || model.output_matrix().rows() != nlabels as i64
            || model.output_matrix().cols() != dim as i64
        {
            return None;
        }
        let input = if model.is_quant() {
            if model.quant_output().is_some() || args.loss == LossName::OneVsAll {
                return None;
            }
            match codes(model, dim) {
                Some(c) => c,
                None => Input::Dequantized(dequantize(model, dim)?),
            }
        } else {
            let m = model.input_matrix();
            if args.loss != LossName::Softmax || m.cols() != dim as i64 || m.rows() < dict.size() as i64 {
                return None;
            }
            Input::Dense
        };
        let prune = match dict.pruneidx_size() {
            s if s < 0 => Prune::None,
            0 => Prune::All,
            _ => Prune::Map(dict.pruneidx().clone()),
        };
        Some(Predictor {
            vocab: Vocab::new(model),
            input,
            dim,
            nwords: dict.nwords(),
            nlabels,
            bucket: args.bucket,
            word_ngrams: usize::try_from(args.word_ngrams).unwrap_or(0),
            prune,
            eos: dict.get_id(EOS).map(|i| i as usize),
            label_prefix: args.label.as_bytes().to_vec(),
        })
    }

    /// P(label `label` | text), as `FastText::predict` then `exp` gives it; `None`
    /// for a text without tokens (the crate returns no prediction).
    pub(super) fn prob(
        &self,
        model: &FastText,
        text: &str,
        char_split: bool,
        keep_punct: bool,
        label: usize,
    ) -> Option<f32> {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            self.softmax_with(model, text, char_split, keep_punct, &mut s)
                .then(|| rounded(s.output[label]))
        })
    }

    /// P(each label | text), in label order; `None` for a text without tokens.
    pub(super) fn probs(
        &self,
        model: &FastText,
        text: &str,
        char_split: bool,
        keep_punct: bool,
    ) -> Option<Vec<f32>> {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            self.softmax_with(model, text, char_split, keep_punct, &mut s)
                .then(|| s.output.iter().map(|&p| rounded(p)).collect())
        })
    }

    /// The sum of the input rows `ids`, in order, into `hidden` (zeros on entry).
    /// Rows are prefetched a few ids ahead: the table lookups, not the additions,
    /// are what the sum waits on.
    fn sum_rows(&self, model: &FastText, ids: &[u32], hidden: &mut [f32]) {
        match &self.input {
            Input::Codes {
                packed,
                base,
                nsubq,
                centroids,
                norms,
            } => {
                let packed = &packed[*base..];
                if *nsubq == 16 {
                    sum_codes::<16>(ids, packed, centroids, norms, hidden);
                } else {
                    sum_codes_any(*nsubq, ids, packed, centroids, norms, hidden);
                }
            }
            Input::Dequantized(rows) => {
                let dim = self.dim;
                for (i, &id) in ids.iter().enumerate() {
                    if let Some(&next) = ids.get(i + AHEAD) {
                        let row = &rows[next as usize * dim..][..dim];
                        prefetch(row.as_ptr() as *const u8);
                        prefetch(row[dim - 1..].as_ptr() as *const u8);
                    }
                    for (x, r) in hidden.iter_mut().zip(&rows[id as usize * dim..][..dim]) {
                        *x += *r;
                    }
                }
            }
            // The crate's dense path starts from a copy of the first row (the
            // quantized one from zeros: they differ in the sign of an all-zero column).
            Input::Dense => {
                let m = model.input_matrix();
                for (i, &id) in ids.iter().enumerate() {
                    let row = m.row(id as i64);
                    if i == 0 {
                        hidden.copy_from_slice(row);
                    } else {
                        for (x, r) in hidden.iter_mut().zip(row) {
                            *x += *r;
                        }
                    }
                }
            }
        }
    }

    /// The label distribution of `text` into `s.output`; false for a text without tokens.
    fn softmax_with(
        &self,
        model: &FastText,
        text: &str,
        char_split: bool,
        keep_punct: bool,
        s: &mut Scratch,
    ) -> bool {
        let Scratch {
            token,
            hashes,
            ids,
            hidden,
            output,
        } = s;
        hashes.clear();
        ids.clear();
        // Row ids in the crate's order: the words, then the word n-grams, then `</s>`.
        for_each_token(text, char_split, keep_punct, token, &mut |tok: &[u8],
                                                                  single: Option<
            char,
        >| {
            let h = fnv(FNV_SEED, tok);
            let wid = match single {
                Some(c) => self.vocab.get_char(c, tok, h),
                None => self.vocab.get(tok, h),
            };
            let is_word = match wid {
                Some(w) => self.vocab.is_word[w],
                None => !tok.starts_with(&self.label_prefix),
            };
            if is_word {
                if let Some(w) = wid {
                    ids.push(w as u32);
                }
                hashes.push(h as i32);
            }
            !(tok.len() == EOS.len() && tok == EOS.as_bytes())
        });
        if self.bucket > 0 && self.word_ngrams > 1 {
            let bucket = self.bucket as u64;
            for i in 0..hashes.len() {
                let mut h = hashes[i] as i64 as u64;
                for &hj in &hashes[i + 1..hashes.len().min(i + self.word_ngrams)] {
                    h = h.wrapping_mul(116049371).wrapping_add(hj as i64 as u64);
                    let id = (h % bucket) as i32;
                    match &self.prune {
                        Prune::None => ids.push((self.nwords + id) as u32),
                        Prune::All => {}
                        Prune::Map(m) => {
                            if let Some(&mapped) = m.get(&id) {
                                ids.push((self.nwords + mapped) as u32);
                            }
                        }
                    }
                }
            }
        }
        if ids.is_empty() {
            return false;
        }
        if let Some(e) = self.eos {
            ids.push(e as u32);
        }
        hidden.clear();
        hidden.resize(self.dim, 0.0);
        self.sum_rows(model, ids, hidden);
        let n = ids.len();
        let scale = 1.0 / n as f32;
        for x in hidden.iter_mut() {
            *x *= scale;
        }
        output.clear();
        let out = model.output_matrix();
        for i in 0..self.nlabels {
            let row = out.row(i as i64);
            output.push(match self.input {
                // `predict_raw_quantized`: `DenseMatrix::dot_row`, the SIMD kernel.
                Input::Codes { .. } | Input::Dequantized(_) => simd::dot(row, hidden),
                // `SoftmaxLoss::compute_output`: a plain sum.
                Input::Dense => row.iter().zip(hidden.iter()).map(|(&a, &b)| a * b).sum(),
            });
        }
        softmax_in_place(output);
        true
    }
}

/// A probability as `FastText::predict` reports it (stored as a log, read back with `exp`).
fn rounded(p: f32) -> f32 {
    (p + 1e-5_f32).ln().exp()
}

/// How far ahead rows are prefetched.
const AHEAD: usize = 16;

/// A transparent huge page.
const HUGE: usize = 2 << 20;

/// Ask the kernel to back a large table's capacity with transparent huge pages
/// (where it allows them on request): the row lookups are random over megabytes,
/// and with 4 KiB pages most of them also miss the TLB. A hint; nothing changes
/// when it is refused.
fn huge_pages<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        let start = v.as_ptr() as usize;
        let end = start + v.capacity() * std::mem::size_of::<T>();
        let (a, b) = (start.div_ceil(HUGE) * HUGE, end / HUGE * HUGE);
        if b > a {
            // SAFETY: madvise on whole pages inside this Vec's own allocation; the
            // advice only changes how the kernel backs them, not their contents.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// [`Input::Codes`] rows summed for `N` sub-quantizers known at compile time (16:
/// `dim` 32, the bundled models): the sum stays in registers.
#[inline(never)]
fn sum_codes<const N: usize>(
    ids: &[u32],
    packed: &[u8],
    centroids: &[f32],
    norms: &[f32],
    hidden: &mut [f32],
) {
    let stride = N + 1;
    let mut x = [[0.0f32; 2]; N];
    for (i, &id) in ids.iter().enumerate() {
        if let Some(&next) = ids.get(i + AHEAD) {
            let at = next as usize * stride;
            prefetch(packed[at..].as_ptr());
            if (packed.as_ptr() as usize + at) % 64 + stride > 64 {
                prefetch(packed[at + N..].as_ptr());
            }
        }
        let p: &[u8; N] = packed[id as usize * stride..][..N].try_into().expect("N codes");
        let norm = norms[packed[id as usize * stride + N] as usize];
        for m in 0..N {
            let c = &centroids[(m * 256 + p[m] as usize) * 2..][..2];
            x[m][0] += norm * c[0];
            x[m][1] += norm * c[1];
        }
    }
    for (h, x) in hidden.chunks_exact_mut(2).zip(&x) {
        h.copy_from_slice(x);
    }
}

/// [`sum_codes`] for any number of sub-quantizers.
fn sum_codes_any(
    nsubq: usize,
    ids: &[u32],
    packed: &[u8],
    centroids: &[f32],
    norms: &[f32],
    hidden: &mut [f32],
) {
    let stride = nsubq + 1;
    let x = &mut hidden[..2 * nsubq];
    for (i, &id) in ids.iter().enumerate() {
        if let Some(&next) = ids.get(i + AHEAD) {
            let at = next as usize * stride;
            prefetch(packed[at..].as_ptr());
            prefetch(packed[at + nsubq..].as_ptr());
        }
        let p = &packed[id as usize * stride..][..stride];
        let norm = norms[p[nsubq] as usize];
        for (m, (&code, x)) in p[..nsubq].iter().zip(x.chunks_exact_mut(2)).enumerate() {
            let c = &centroids[(m * 256 + code as usize) * 2..][..2];
            x[0] += norm * c[0];
            x[1] += norm * c[1];
        }
    }
}

/// Ask for the cache line at `p` (a hint: it never faults).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only hints the cache; it reads nothing into the program
    // and does not fault, whatever the address (here always inside a live table).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// `fasttext::utils::softmax_in_place` (crate-private there).
fn softmax_in_place(data: &mut [f32]) {
    let max = data.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut z = 0.0f32;
    for v in data.iter_mut() {
        *v = (*v - max).exp();
        z += *v;
    }
    if z > 0.0 {
        let inv_z = 1.0 / z;
        for v in data.iter_mut() {
            *v *= inv_z;
        }
    }
}

/// [`Input::Codes`] for a quantized input matrix with `dsub` 2 (and an even `dim`).
fn codes(model: &FastText, dim: usize) -> Option<Input> {
    let q = model.quant_input()?;
    let pq = &q.pq;
    let nsubq = pq.nsubq as usize;
    let rows = usize::try_from(q.m).ok()?;
    if pq.dsub != 2
        || pq.lastdsub != 2
        || dim != 2 * nsubq
        || q.n != dim as i64
        || pq.dim as usize != dim
        || q.codes.len() != rows * nsubq
        || pq.centroids.len() != dim * 256
        || rows < model.dict().size() as usize
    {
        return None;
    }
    let norms: Vec<f32> = if q.qnorm {
        let npq = q.npq.as_ref()?;
        (0..=255u8).map(|k| npq.get_centroids(0, k)[0]).collect()
    } else {
        vec![1.0; 256]
    };
    let norm_codes = if q.qnorm {
        Some(q.norm_codes.as_deref()?)
    } else {
        None
    };
    if norm_codes.is_some_and(|c| c.len() != rows) {
        return None;
    }
    // Rows start on a 2 MiB boundary inside the buffer, so huge pages cover all of them.
    let mut packed = Vec::with_capacity(rows * (nsubq + 1) + HUGE);
    let base = (packed.as_ptr() as usize).next_multiple_of(HUGE) - packed.as_ptr() as usize;
    huge_pages(&packed);
    packed.resize(base, 0);
    for r in 0..rows {
        packed.extend_from_slice(&q.codes[r * nsubq..(r + 1) * nsubq]);
        packed.push(norm_codes.map_or(0, |c| c[r]));
    }
    let mut centroids = Vec::with_capacity(dim * 256);
    for m in 0..nsubq {
        for k in 0..=255u8 {
            centroids.extend_from_slice(pq.get_centroids(m, k));
        }
    }
    Some(Input::Codes {
        packed,
        base,
        nsubq,
        centroids,
        norms,
    })
}

/// Every row of a quantized input matrix as `ProductQuantizer::addcode` adds it
/// with `alpha = 1.0 * norm`: `norm * centroid[j]`.
fn dequantize(model: &FastText, dim: usize) -> Option<Vec<f32>> {
    let q = model.quant_input()?;
    let pq = &q.pq;
    let (nsubq, dsub, lastdsub) = (pq.nsubq as usize, pq.dsub as usize, pq.lastdsub as usize);
    let rows = usize::try_from(q.m).ok()?;
    if q.n != dim as i64
        || pq.dim as usize != dim
        || nsubq == 0
        || (nsubq - 1) * dsub + lastdsub != dim
        || q.codes.len() != rows * nsubq
        || rows < model.dict().size() as usize
    {
        return None;
    }
    let norms: Option<(&[u8], _)> = if q.qnorm {
        Some((q.norm_codes.as_deref()?, q.npq.as_ref()?))
    } else {
        None
    };
    let mut out = vec![0.0f32; rows * dim];
    for r in 0..rows {
        let norm = match norms {
            Some((codes, npq)) => npq.get_centroids(0, codes[r])[0],
            None => 1.0,
        };
        let alpha = 1.0 * norm;
        let code = &q.codes[r * nsubq..(r + 1) * nsubq];
        let row = &mut out[r * dim..(r + 1) * dim];
        for (m, &c) in code.iter().enumerate() {
            let d = if m == nsubq - 1 { lastdsub } else { dsub };
            let cent = pq.get_centroids(m, c);
            for k in 0..d {
                row[m * dsub + k] = alpha * cent[k];
            }
        }
    }
    Some(out)
}

/// Tokens as `to_fasttext_input_with` writes them and fastText splits them (on
/// ASCII whitespace), without building the string in `char_split` mode. `f`
/// returns false to stop (fastText stops at a `</s>` token); its second argument
/// is the token's character when the token is one character.
fn for_each_token(
    text: &str,
    char_split: bool,
    keep_punct: bool,
    buf: &mut Vec<u8>,
    f: &mut impl FnMut(&[u8], Option<char>) -> bool,
) {
    let one = |t: &str| {
        let mut cs = t.chars();
        match (cs.next(), cs.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    };
    if !char_split {
        let joined = super::to_fasttext_input_with(text, false, keep_punct);
        for tok in joined.split(|c: char| c.is_ascii_whitespace()) {
            if !tok.is_empty() && !f(tok.as_bytes(), one(tok)) {
                return;
            }
        }
        return;
    }
    buf.clear();
    // The word being built: its first character, and whether it has only that one.
    let mut first = ' ';
    let mut utf8 = [0u8; 4];
    let line_break = one(super::LINE_BREAK_TOKEN).expect("one character");
    for raw in text.chars() {
        let c = fold_width_and_case(raw);
        let single: Option<char> = if keep_punct
            && (raw == '\n' || !(raw.is_whitespace() || is_cjk_through_ext_f(c) || c.is_alphanumeric()))
        {
            Some(if raw == '\n' { line_break } else { raw })
        } else if is_cjk_through_ext_f(c) {
            Some(c)
        } else if c.is_alphanumeric() {
            if buf.is_empty() {
                first = c;
            }
            buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            continue;
        } else {
            None
        };
        if !buf.is_empty() {
            let go = f(buf, (buf.len() == first.len_utf8()).then_some(first));
            buf.clear();
            if !go {
                return;
            }
        }
        if let Some(t) = single {
            if !f(t.encode_utf8(&mut utf8).as_bytes(), Some(t)) {
                return;
            }
        }
    }
    if !buf.is_empty() {
        f(buf, (buf.len() == first.len_utf8()).then_some(first));
        buf.clear();
    }
}

/// The `fasttext` crate's dot kernels and their runtime dispatch (`src/simd/`,
/// fasttext 0.8.0, MIT licence, copied unchanged in substance): the quantized
/// predict path scores labels with them, and which one runs decides the order of
/// the float additions, so bit-identical scores need the same code.
mod simd {
    #[inline]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        #[cfg(target_arch = "aarch64")]
        {
            neon::dot(a, b)
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: each kernel runs only where its CPU features were detected,
            // and reads `a`/`b` within their (equal) lengths.
            if is_x86_feature_detected!("avx512f") {
                unsafe { x86::dot_avx512(a, b) }
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                unsafe { x86::dot_avx2(a, b) }
            } else if is_x86_feature_detected!("avx") {
                unsafe { x86::dot_avx(a, b) }
            } else {
                x86::dot_sse2(a, b)
            }
        }
        #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
        {
            a.iter().zip(b.iter()).map(|(&x, &y)| x * y).sum()
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use std::arch::x86_64::*;

        /// # Safety
        /// AVX-512F must be available; `a.len() == b.len()`.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let chunks4 = n / 64;
            let chunks1 = (n % 64) / 16;
            let remainder = n % 16;
            let mut acc0 = _mm512_setzero_ps();
            let mut acc1 = _mm512_setzero_ps();
            let mut acc2 = _mm512_setzero_ps();
            let mut acc3 = _mm512_setzero_ps();
            let a_ptr = a.as_ptr();
            let b_ptr = b.as_ptr();
            for i in 0..chunks4 {
                let off = i * 64;
                let a0 = _mm512_loadu_ps(a_ptr.add(off));
                let a1 = _mm512_loadu_ps(a_ptr.add(off + 16));
                let a2 = _mm512_loadu_ps(a_ptr.add(off + 32));
                let a3 = _mm512_loadu_ps(a_ptr.add(off + 48));
                let b0 = _mm512_loadu_ps(b_ptr.add(off));
                let b1 = _mm512_loadu_ps(b_ptr.add(off + 16));
                let b2 = _mm512_loadu_ps(b_ptr.add(off + 32));
                let b3 = _mm512_loadu_ps(b_ptr.add(off + 48));
                acc0 = _mm512_fmadd_ps(a0, b0, acc0);
                acc1 = _mm512_fmadd_ps(a1, b1, acc1);
                acc2 = _mm512_fmadd_ps(a2, b2, acc2);
                acc3 = _mm512_fmadd_ps(a3, b3, acc3);
            }
            acc0 = _mm512_add_ps(acc0, acc1);
            acc2 = _mm512_add_ps(acc2, acc3);
            acc0 = _mm512_add_ps(acc0, acc2);
            let rem_start4 = chunks4 * 64;
            for i in 0..chunks1 {
                let off = rem_start4 + i * 16;
                let a0 = _mm512_loadu_ps(a_ptr.add(off));
                let b0 = _mm512_loadu_ps(b_ptr.add(off));
                acc0 = _mm512_fmadd_ps(a0, b0, acc0);
            }
            let mut result = _mm512_reduce_add_ps(acc0);
            let rem_start = rem_start4 + chunks1 * 16;
            for i in 0..remainder {
                result += a[rem_start + i] * b[rem_start + i];
            }
            result
        }

        /// # Safety
        /// AVX2 and FMA must be available; `a.len() == b.len()`.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let chunks4 = n / 32;
            let chunks1 = (n % 32) / 8;
            let remainder = n % 8;
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut acc2 = _mm256_setzero_ps();
            let mut acc3 = _mm256_setzero_ps();
            let a_ptr = a.as_ptr();
            let b_ptr = b.as_ptr();
            for i in 0..chunks4 {
                let off = i * 32;
                let a0 = _mm256_loadu_ps(a_ptr.add(off));
                let a1 = _mm256_loadu_ps(a_ptr.add(off + 8));
                let a2 = _mm256_loadu_ps(a_ptr.add(off + 16));
                let a3 = _mm256_loadu_ps(a_ptr.add(off + 24));
                let b0 = _mm256_loadu_ps(b_ptr.add(off));
                let b1 = _mm256_loadu_ps(b_ptr.add(off + 8));
                let b2 = _mm256_loadu_ps(b_ptr.add(off + 16));
                let b3 = _mm256_loadu_ps(b_ptr.add(off + 24));
                acc0 = _mm256_fmadd_ps(a0, b0, acc0);
                acc1 = _mm256_fmadd_ps(a1, b1, acc1);
                acc2 = _mm256_fmadd_ps(a2, b2, acc2);
                acc3 = _mm256_fmadd_ps(a3, b3, acc3);
            }
            acc0 = _mm256_add_ps(acc0, acc1);
            acc2 = _mm256_add_ps(acc2, acc3);
            acc0 = _mm256_add_ps(acc0, acc2);
            let rem_start4 = chunks4 * 32;
            for i in 0..chunks1 {
                let off = rem_start4 + i * 8;
                let a0 = _mm256_loadu_ps(a_ptr.add(off));
                let b0 = _mm256_loadu_ps(b_ptr.add(off));
                acc0 = _mm256_fmadd_ps(a0, b0, acc0);
            }
            let low = _mm256_castps256_ps128(acc0);
            let high = _mm256_extractf128_ps(acc0, 1);
            let sum128 = _mm_add_ps(low, high);
            let hi = _mm_movehl_ps(sum128, sum128);
            let s = _mm_add_ps(sum128, hi);
            let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            let mut result = _mm_cvtss_f32(s);
            let rem_start = rem_start4 + chunks1 * 8;
            for i in 0..remainder {
                result += a[rem_start + i] * b[rem_start + i];
            }
            result
        }

        /// # Safety
        /// AVX must be available; `a.len() == b.len()`.
        #[target_feature(enable = "avx")]
        pub(super) unsafe fn dot_avx(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let chunks4 = n / 32;
            let chunks1 = (n % 32) / 8;
            let remainder = n % 8;
            let mut acc0 = _mm256_setzero_ps();
            let mut acc1 = _mm256_setzero_ps();
            let mut acc2 = _mm256_setzero_ps();
            let mut acc3 = _mm256_setzero_ps();
            let a_ptr = a.as_ptr();
            let b_ptr = b.as_ptr();
            for i in 0..chunks4 {
                let off = i * 32;
                let a0 = _mm256_loadu_ps(a_ptr.add(off));
                let a1 = _mm256_loadu_ps(a_ptr.add(off + 8));
                let a2 = _mm256_loadu_ps(a_ptr.add(off + 16));
                let a3 = _mm256_loadu_ps(a_ptr.add(off + 24));
                let b0 = _mm256_loadu_ps(b_ptr.add(off));
                let b1 = _mm256_loadu_ps(b_ptr.add(off + 8));
                let b2 = _mm256_loadu_ps(b_ptr.add(off + 16));
                let b3 = _mm256_loadu_ps(b_ptr.add(off + 24));
                acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(a0, b0));
                acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(a1, b1));
                acc2 = _mm256_add_ps(acc2, _mm256_mul_ps(a2, b2));
                acc3 = _mm256_add_ps(acc3, _mm256_mul_ps(a3, b3));
            }
            acc0 = _mm256_add_ps(acc0, acc1);
            acc2 = _mm256_add_ps(acc2, acc3);
            acc0 = _mm256_add_ps(acc0, acc2);
            let rem_start4 = chunks4 * 32;
            for i in 0..chunks1 {
                let off = rem_start4 + i * 8;
                let a0 = _mm256_loadu_ps(a_ptr.add(off));
                let b0 = _mm256_loadu_ps(b_ptr.add(off));
                acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(a0, b0));
            }
            let low = _mm256_castps256_ps128(acc0);
            let high = _mm256_extractf128_ps(acc0, 1);
            let sum128 = _mm_add_ps(low, high);
            let hi = _mm_movehl_ps(sum128, sum128);
            let s = _mm_add_ps(sum128, hi);
            let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            let mut result = _mm_cvtss_f32(s);
            let rem_start = rem_start4 + chunks1 * 8;
            for i in 0..remainder {
                result += a[rem_start + i] * b[rem_start + i];
            }
            result
        }

        pub(super) fn dot_sse2(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let chunks = n / 16;
            let remainder = n % 16;
            // SAFETY: SSE2 is part of x86_64; loads stay within `chunks * 16 <= n`.
            unsafe {
                let mut sum0 = _mm_setzero_ps();
                let mut sum1 = _mm_setzero_ps();
                let mut sum2 = _mm_setzero_ps();
                let mut sum3 = _mm_setzero_ps();
                let a_ptr = a.as_ptr();
                let b_ptr = b.as_ptr();
                for i in 0..chunks {
                    let offset = i * 16;
                    let a0 = _mm_loadu_ps(a_ptr.add(offset));
                    let a1 = _mm_loadu_ps(a_ptr.add(offset + 4));
                    let a2 = _mm_loadu_ps(a_ptr.add(offset + 8));
                    let a3 = _mm_loadu_ps(a_ptr.add(offset + 12));
                    let b0 = _mm_loadu_ps(b_ptr.add(offset));
                    let b1 = _mm_loadu_ps(b_ptr.add(offset + 4));
                    let b2 = _mm_loadu_ps(b_ptr.add(offset + 8));
                    let b3 = _mm_loadu_ps(b_ptr.add(offset + 12));
                    sum0 = _mm_add_ps(sum0, _mm_mul_ps(a0, b0));
                    sum1 = _mm_add_ps(sum1, _mm_mul_ps(a1, b1));
                    sum2 = _mm_add_ps(sum2, _mm_mul_ps(a2, b2));
                    sum3 = _mm_add_ps(sum3, _mm_mul_ps(a3, b3));
                }
                sum0 = _mm_add_ps(sum0, sum1);
                sum2 = _mm_add_ps(sum2, sum3);
                sum0 = _mm_add_ps(sum0, sum2);
                let hi = _mm_movehl_ps(sum0, sum0);
                let s = _mm_add_ps(sum0, hi);
                let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
                let mut result = _mm_cvtss_f32(s);
                let rem_start = chunks * 16;
                for i in 0..remainder {
                    result += a[rem_start + i] * b[rem_start + i];
                }
                result
            }
        }
    }

    #[cfg(target_arch = "aarch64")]
    mod neon {
        use std::arch::aarch64::*;

        pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len();
            let chunks = n / 16;
            let remainder = n % 16;
            // SAFETY: NEON is part of aarch64; loads stay within `chunks * 16 <= n`.
            unsafe {
                let mut sum0 = vdupq_n_f32(0.0);
                let mut sum1 = vdupq_n_f32(0.0);
                let mut sum2 = vdupq_n_f32(0.0);
                let mut sum3 = vdupq_n_f32(0.0);
                let a_ptr = a.as_ptr();
                let b_ptr = b.as_ptr();
                for i in 0..chunks {
                    let offset = i * 16;
                    let a0 = vld1q_f32(a_ptr.add(offset));
                    let a1 = vld1q_f32(a_ptr.add(offset + 4));
                    let a2 = vld1q_f32(a_ptr.add(offset + 8));
                    let a3 = vld1q_f32(a_ptr.add(offset + 12));
                    let b0 = vld1q_f32(b_ptr.add(offset));
                    let b1 = vld1q_f32(b_ptr.add(offset + 4));
                    let b2 = vld1q_f32(b_ptr.add(offset + 8));
                    let b3 = vld1q_f32(b_ptr.add(offset + 12));
                    sum0 = vfmaq_f32(sum0, a0, b0);
                    sum1 = vfmaq_f32(sum1, a1, b1);
                    sum2 = vfmaq_f32(sum2, a2, b2);
                    sum3 = vfmaq_f32(sum3, a3, b3);
                }
                sum0 = vaddq_f32(sum0, sum1);
                sum2 = vaddq_f32(sum2, sum3);
                sum0 = vaddq_f32(sum0, sum2);
                let mut result = vaddvq_f32(sum0);
                let rem_start = chunks * 16;
                for i in 0..remainder {
                    result += a[rem_start + i] * b[rem_start + i];
                }
                result
            }
        }
    }
}
