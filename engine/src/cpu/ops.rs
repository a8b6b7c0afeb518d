//! The small float operations between matrix products, written so the
//! compiler vectorizes them (eight independent accumulators).

/// Σ `a[i]·b[i]` with eight partial sums.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out = Σ_p w[p] · row(p)`: the additions of `out.fill(0.0)` then
/// [`axpy`] row after row, in the same order (so the same bits), with 64
/// values of `out` held in registers across the rows instead of loaded
/// and stored for every row.
pub fn weighted_rows<'a>(w: &[f32], row: impl Fn(usize) -> &'a [f32], out: &mut [f32]) {
    const B: usize = 64;
    let n = out.len();
    let mut start = 0;
    while start + B <= n {
        let mut acc = [0f32; B];
        for (p, &s) in w.iter().enumerate() {
            let r: &[f32; B] = row(p)[start..start + B].try_into().expect("B values");
            for i in 0..B {
                acc[i] += s * r[i];
            }
        }
        out[start..start + B].copy_from_slice(&acc);
        start += B;
    }
    if start < n {
        let rest = &mut out[start..];
        rest.fill(0.0);
        for (p, &s) in w.iter().enumerate() {
            axpy(s, &row(p)[start..n], rest);
        }
    }
}

/// out += w · x
#[inline]
pub fn axpy(w: f32, x: &[f32], out: &mut [f32]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o += w * v;
    }
}

/// 1 / rms(x).
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    1.0 / (dot(x, x) / x.len() as f32 + eps).sqrt()
}

/// x · weight / rms(x), into `out`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let scale = inv_rms(x, eps);
    for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
        *o = v * scale * w;
    }
}

/// [`rms_norm`] of `x` into itself.
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let scale = inv_rms(x, eps);
    for (v, w) in x.iter_mut().zip(weight) {
        *v *= scale * w;
    }
}

/// In-place softmax.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Rotates one head in place: pairs (2i, 2i+1) when `interleaved` (GGUF
/// llama, whose q/k weights were permuted for it), else (i, i + d/2)
/// (Qwen's NeoX layout). `cos`/`sin` hold d/2 angles for this position.
pub fn rope(head: &mut [f32], cos: &[f32], sin: &[f32], interleaved: bool) {
    let half = head.len() / 2;
    for i in 0..half {
        let (a, b) = if interleaved {
            (2 * i, 2 * i + 1)
        } else {
            (i, i + half)
        };
        let (x, y) = (head[a], head[b]);
        head[a] = x * cos[i] - y * sin[i];
        head[b] = x * sin[i] + y * cos[i];
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn dot_handles_tails_and_softmax_sums_to_one() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &a), (0..19).map(|i| (i * i) as f32).sum::<f32>());
        let mut x = vec![1.0, 2.0, 3.0, 1000.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[3] > 0.99);
    }

    /// Values with every bit of the mantissa in play, so that another
    /// order of additions would show.
    pub(crate) fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2654435761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32 - 0.5) * 3.7
            })
            .collect()
    }

    #[test]
    fn weighted_rows_gives_axpy_s_bits() {
        for width in [32, 48, 64, 80, 128, 200, 256] {
            let w = noise(37, 2);
            let v = noise(37 * width, 3);
            let row = |p: usize| &v[p * width..(p + 1) * width];
            let mut want = vec![0f32; width];
            for (p, &s) in w.iter().enumerate() {
                axpy(s, row(p), &mut want);
            }
            let mut got = vec![f32::NAN; width];
            weighted_rows(&w, row, &mut got);
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "width {width}");
        }
    }

    #[test]
    fn rope_rotates_pairs_by_their_angle() {
        let (c, s) = (0.6f32, 0.8f32);
        let mut h = vec![1.0, 0.0, 0.0, 1.0];
        rope(&mut h, &[c, 1.0], &[s, 0.0], true);
        assert_eq!(h, vec![c, s, 0.0, 1.0]);
        let mut h = vec![1.0, 0.0, 0.0, 1.0];
        rope(&mut h, &[c, 1.0], &[s, 0.0], false);
        assert_eq!(h, vec![c, 0.0, s, 1.0]);
    }
}
