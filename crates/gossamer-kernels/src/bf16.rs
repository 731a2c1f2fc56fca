//! bfloat16 helpers: a bf16 value is the top half of an f32, so widening is a shift.

#[inline(always)]
pub fn to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// Rounds to the nearest bf16, ties to even (NaN stays a quiet NaN).
#[inline]
pub fn from_f32_rne(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x0040) as u16;
    }
    let round = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// Widens a bf16 vector (norm gains, biases, sinks) into f32.
pub fn to_f32_vec(bits: &[u16]) -> Vec<f32> {
    bits.iter().map(|&b| to_f32(b)).collect()
}

/// Lanes of independent accumulators: lets the compiler keep several vector registers busy
/// without reassociating a single sum (which it may not do for floats).
pub(crate) const LANES: usize = 16;

/// `Σ w[i]·x[i]` with `w` in bf16.
#[inline]
pub fn dot(w: &[u16], x: &[f32]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    let mut acc = [0f32; LANES];
    let wc = w.chunks_exact(LANES);
    let xc = x.chunks_exact(LANES);
    let (wr, xr) = (wc.remainder(), xc.remainder());
    for (wb, xb) in wc.zip(xc) {
        for l in 0..LANES {
            acc[l] += to_f32(wb[l]) * xb[l];
        }
    }
    let mut tail = 0f32;
    for (a, b) in wr.iter().zip(xr) {
        tail += to_f32(*a) * b;
    }
    acc.iter().sum::<f32>() + tail
}

/// `y[i] += a · w[i]` with `w` in bf16.
#[inline]
pub fn axpy(a: f32, w: &[u16], y: &mut [f32]) {
    debug_assert_eq!(w.len(), y.len());
    for (yi, wi) in y.iter_mut().zip(w) {
        *yi += a * to_f32(*wi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_half() {
        for v in [
            0.0f32,
            -0.0,
            1.0,
            1.0 + 2f32.powi(-8), // a tie: rounds to even (1.0)
            1.0 + 3.0 * 2f32.powi(-9),
            3.0e38,
            -7.1e-39,
            f32::INFINITY,
            1.0e-40,
        ] {
            assert_eq!(from_f32_rne(v), half::bf16::from_f32(v).to_bits(), "{v}");
        }
        for i in 0..100_000u32 {
            let v = f32::from_bits(i.wrapping_mul(2_654_435_761));
            if !v.is_nan() {
                assert_eq!(from_f32_rne(v), half::bf16::from_f32(v).to_bits(), "{v}");
            }
        }
    }

    #[test]
    fn widening_is_exact() {
        for x in [0.0f32, 1.0, -2.5, 3.140625, 1e-30, -65504.0] {
            let b = half::bf16::from_f32(x);
            assert_eq!(to_f32(b.to_bits()), b.to_f32());
        }
    }

    #[test]
    fn dot_matches_f64_sum() {
        let w: Vec<u16> = (0..1000)
            .map(|i| half::bf16::from_f32((i as f32).sin()).to_bits())
            .collect();
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).cos()).collect();
        let exact: f64 = w
            .iter()
            .zip(&x)
            .map(|(a, b)| to_f32(*a) as f64 * *b as f64)
            .sum();
        assert!((dot(&w, &x) as f64 - exact).abs() < 1e-3);
    }
}
