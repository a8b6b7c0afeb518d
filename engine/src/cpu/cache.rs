//! One sequence's keys or values for one layer, laid out so that a KV
//! head's rows lie one after another: pages of [`PAGE`] positions, each
//! page holding every KV head's rows for its positions, head after head.
//!
//! Appending rows as they come (`[position][kv head][head_dim]`) put a
//! head's consecutive rows `kv_heads × head_dim` floats apart, so a decode
//! step read them as short strided runs. With pages a head's rows are one
//! contiguous run per page (16 KiB for 64-wide heads), which the hardware
//! prefetchers stream: measured in BENCHMARKS.md ("Attention").
//!
//! Rows are kept as f16 (llama.cpp's default too): a decode step reads the
//! whole cache, which the weights' stream evicted since the step before,
//! so its bytes are what attention waits for, and half the bytes is half
//! the memory per sequence. The rounding happens here, once, so every
//! kernel set reads the same values (f16 to f32 is exact).

use half::f16;
use half::slice::HalfFloatSliceExt;

/// Positions per page.
pub const PAGE: usize = 64;

/// Keys (or values) of one layer: `len` rows of `kv_heads × head_dim`.
#[derive(Debug, Clone)]
pub struct Rows {
    data: Vec<f16>,
    kv_heads: usize,
    head_dim: usize,
    len: usize,
}

impl Rows {
    pub fn new(kv_heads: usize, head_dim: usize) -> Rows {
        Rows {
            data: Vec::new(),
            kv_heads,
            head_dim,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.len = 0;
    }

    /// Appends one position: `row` holds every KV head's values, head
    /// after head (rounded to the nearest f16).
    pub fn push(&mut self, row: &[f32]) {
        let (hd, page) = (self.head_dim, PAGE * self.kv_heads * self.head_dim);
        assert_eq!(row.len(), self.kv_heads * hd);
        let slot = self.len % PAGE;
        if slot == 0 {
            self.data.resize(self.data.len() + page, f16::ZERO);
        }
        let base = self.data.len() - page + slot * hd;
        for (h, values) in row.chunks_exact(hd).enumerate() {
            self.data[base + h * PAGE * hd..][..hd].convert_from_f32_slice(values);
        }
        self.len += 1;
    }

    /// KV head `head`'s row at `pos`.
    #[inline]
    pub fn row(&self, pos: usize, head: usize) -> &[f16] {
        debug_assert!(pos < self.len && head < self.kv_heads);
        let hd = self.head_dim;
        let page = (pos / PAGE) * PAGE * self.kv_heads * hd;
        &self.data[page + (head * PAGE + pos % PAGE) * hd..][..hd]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_back_as_pushed_across_pages() {
        let (kv_heads, hd) = (3, 8);
        let mut rows = Rows::new(kv_heads, hd);
        // Integers below 2048: exact in f16.
        let value = |p: usize, i: usize| ((p * 7 + i) % 2000) as f32;
        for p in 0..2 * PAGE + 5 {
            let row: Vec<f32> = (0..kv_heads * hd).map(|i| value(p, i)).collect();
            rows.push(&row);
        }
        assert_eq!(rows.len(), 2 * PAGE + 5);
        for p in 0..rows.len() {
            for h in 0..kv_heads {
                let want: Vec<f16> = (0..hd)
                    .map(|i| f16::from_f32(value(p, h * hd + i)))
                    .collect();
                assert_eq!(rows.row(p, h), &want[..], "position {p}, head {h}");
            }
        }
        // A head's rows within a page are contiguous.
        let first = rows.row(0, 1).as_ptr();
        assert_eq!(rows.row(1, 1).as_ptr(), first.wrapping_add(hd));
        // Rounded to the nearest f16 on the way in.
        let mut one = Rows::new(1, 2);
        one.push(&[1.0 + 1.0 / 4096.0, 0.1]);
        assert_eq!(one.row(0, 0), &[f16::ONE, f16::from_f32(0.1)]);
        rows.clear();
        assert!(rows.is_empty());
    }
}
