//! One row's attention over one KV head of its cache, for the query heads
//! that share that KV head (grouped-query attention): scores, softmax, the
//! weighted sum of value rows. The heads of a group go through together,
//! so each cached key and value row is loaded once for all of them
//! instead of once per head; every head's result is the same to the bit as
//! if it went alone (each kernel keeps one head's additions in one order),
//! so how heads are grouped into work items changes no logit.

pub mod scores;
pub mod values;

use half::f16;

use super::ops;
use super::simd::Kernels;

/// The most query heads one call takes (their accumulators fill the
/// registers); larger groups go through in parts.
pub const MAX_HEADS: usize = 4;

/// One KV head of a row's cache: its key and value rows by position.
pub struct KvHead<K, V> {
    pub key: K,
    pub value: V,
    /// `1 / √head_dim`.
    pub scale: f32,
}

impl<'k, K: Fn(usize) -> &'k [f16], V: Fn(usize) -> &'k [f16]> KvHead<K, V> {
    /// Attention of the query heads in `qs` (`head_dim` values each, at
    /// most [`MAX_HEADS`] heads) over positions `0..seen`, into `out`
    /// (the heads one after another, as in `qs`); `scores` is scratch.
    pub fn attend(
        &self,
        kernels: Kernels,
        (qs, head_dim): (&[f32], usize),
        seen: usize,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        assert!(qs.len() == out.len() && qs.len().is_multiple_of(head_dim));
        match qs.len() / head_dim {
            1 => self.heads::<1>(kernels, qs, seen, scores, out),
            2 => self.heads::<2>(kernels, qs, seen, scores, out),
            3 => self.heads::<3>(kernels, qs, seen, scores, out),
            4 => self.heads::<4>(kernels, qs, seen, scores, out),
            h => panic!("{h} query heads in one call (at most {MAX_HEADS})"),
        }
    }

    #[inline]
    fn heads<const H: usize>(
        &self,
        kernels: Kernels,
        qs: &[f32],
        seen: usize,
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        let hd = qs.len() / H;
        let qs: [&[f32]; H] = std::array::from_fn(|h| &qs[h * hd..][..hd]);
        scores.clear();
        scores.resize(H * seen, 0.0);
        scores::scores(kernels, qs, &self.key, self.scale, scores);
        for s in scores.chunks_exact_mut(seen.max(1)) {
            ops::softmax(s);
        }
        values::weighted::<H>(kernels, scores, &self.value, out);
    }
}

/// Asks for the cache lines of the row `rows` rows after `row` (its
/// KV head's rows lie one after another within a page). The cache is cold
/// at every decode step (the weights streamed since evicted it), so the
/// scores and the value sums ask ahead; a prefetch of an address past the
/// cache's end or into another page is harmless (it never faults).
#[inline]
pub(crate) fn prefetch_ahead(row: &[f16], rows: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let a = row.as_ptr().wrapping_add(rows * row.len());
        for line in (0..row.len()).step_by(32) {
            // SAFETY: a prefetch never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(line) as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (row, rows);
}

/// The work items of one attention section: each is one row's query heads
/// of one KV group, the whole group (in parts of at most [`MAX_HEADS`])
/// while that gives every thread two items or more, else a head per item
/// (each row loaded more often, but no thread idle).
#[derive(Debug, Clone, Copy)]
pub struct Items {
    heads: usize,
    kv_heads: usize,
    /// Query heads per item, and items per KV group.
    per: usize,
    parts: usize,
}

/// One work item: row `row`'s query heads `first..first + count`, which
/// share KV head `kv_head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub row: usize,
    pub kv_head: usize,
    pub first: usize,
    pub count: usize,
}

impl Items {
    pub fn new(heads: usize, kv_heads: usize, rows: usize, threads: usize) -> Items {
        assert!(kv_heads > 0 && heads.is_multiple_of(kv_heads));
        let group = heads / kv_heads;
        let per = if threads > 1 && rows * kv_heads < 2 * threads {
            1
        } else {
            group.min(MAX_HEADS)
        };
        Items {
            heads,
            kv_heads,
            per,
            parts: group.div_ceil(per),
        }
    }

    /// How many items a section of `rows` rows has.
    pub fn count(&self, rows: usize) -> usize {
        rows * self.kv_heads * self.parts
    }

    pub fn item(&self, i: usize) -> Item {
        let group = self.heads / self.kv_heads;
        let per_row = self.kv_heads * self.parts;
        let (kv_head, part) = ((i % per_row) / self.parts, i % self.parts);
        Item {
            row: i / per_row,
            kv_head,
            first: kv_head * group + part * self.per,
            count: self.per.min(group - part * self.per),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cpu::ops::tests::noise;

    /// [`noise`] rounded to f16, as the cache holds it.
    pub(crate) fn half_noise(n: usize, seed: u32) -> Vec<f16> {
        noise(n, seed).into_iter().map(f16::from_f32).collect()
    }

    /// Every (row, head) pair in exactly one item, with its own KV head.
    #[test]
    fn items_cover_every_head_once() {
        for (heads, kv_heads) in [(9, 3), (32, 8), (14, 2), (12, 12), (16, 1), (4, 2)] {
            for (rows, threads) in [(1, 1), (1, 2), (1, 16), (5, 2), (128, 16)] {
                let items = Items::new(heads, kv_heads, rows, threads);
                let mut seen = vec![0; rows * heads];
                for i in 0..items.count(rows) {
                    let it = items.item(i);
                    assert!(it.count >= 1 && it.count <= MAX_HEADS);
                    for h in it.first..it.first + it.count {
                        assert_eq!(h / (heads / kv_heads), it.kv_head);
                        seen[it.row * heads + h] += 1;
                    }
                }
                assert!(
                    seen.iter().all(|&s| s == 1),
                    "{heads}/{kv_heads}, {rows} rows, {threads} threads"
                );
                // Two items per thread, or a head per item.
                assert!(items.count(rows) >= 2 * threads || items.per == 1 || threads == 1);
            }
        }
    }

    /// Heads that go through together get the bits each gets alone.
    #[test]
    fn a_group_gives_each_head_its_bits_alone() {
        for kernels in Kernels::available() {
            for (hd, seen) in [(64, 1), (64, 70), (128, 9), (32, 13), (48, 5)] {
                let (k, v) = (half_noise(seen * hd, 1), half_noise(seen * hd, 2));
                let qs = noise(4 * hd, 3);
                let head = KvHead {
                    key: |p: usize| &k[p * hd..][..hd],
                    value: |p: usize| &v[p * hd..][..hd],
                    scale: 0.3,
                };
                let mut scratch = Vec::new();
                let mut alone = vec![0f32; 4 * hd];
                for (q, o) in qs.chunks_exact(hd).zip(alone.chunks_exact_mut(hd)) {
                    head.attend(kernels, (q, hd), seen, &mut scratch, o);
                }
                for h in 2..=4 {
                    let mut together = vec![f32::NAN; h * hd];
                    head.attend(
                        kernels,
                        (&qs[..h * hd], hd),
                        seen,
                        &mut scratch,
                        &mut together,
                    );
                    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&together),
                        bits(&alone[..h * hd]),
                        "{kernels:?} {hd} {seen} {h}"
                    );
                }
                // Softmax weights sum to one: the output is a mean of values.
                assert!(alone.iter().all(|o| o.abs() <= 2.0));
            }
        }
    }
}
