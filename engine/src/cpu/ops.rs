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

/// In-place softmax, with [`exp`] (which the compiler vectorizes, where
/// libm's `expf` is a call per value) and the sum in eight partial sums
/// like [`dot`]'s.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
    for v in x.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / sum(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Σ `x[i]` with eight partial sums, added in [`dot`]'s order.
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// e^x within one ulp for x in [-87, 88] (the argument is clamped to that
/// range: e^-87 ≈ 1.6e-38 stands for every smaller value), from only
/// multiplications, additions and bit operations (Cody and Waite's
/// reduction by ln 2 and Cephes' degree-6 polynomial), so a loop of them
/// vectorizes and every CPU, vector width and kernel set gives the same
/// bits (no FMA: Rust never fuses on its own).
#[inline]
pub fn exp(x: f32) -> f32 {
    // 1.5 · 2^23: adding it rounds to an integer, which lands in the low
    // mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // x − n·ln 2, with ln 2 in two parts so that n·ln2_hi is exact.
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = p * r + c;
    }
    let e = p * r * r + r + 1.0;
    // 2^n from n's bits in `t` (n ≥ -126: a normal float).
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let pow2 = f32::from_bits(n_bits.wrapping_add(127) << 23);
    e * pow2
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
    fn exp_is_within_two_ulp() {
        let ulps = |x: f32| {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            let ulp = f32::from_bits((want as f32).to_bits() + 1) as f64 - want as f32 as f64;
            (got - want).abs() / ulp
        };
        let mut worst = 0f64;
        for i in 0..=1_750_000 {
            let x = -87.0 + i as f32 * 1e-4;
            worst = worst.max(ulps(x));
        }
        assert!(worst <= 2.0, "{worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert!(exp(f32::NEG_INFINITY) > 0.0 && exp(88.0).is_finite());
    }

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
