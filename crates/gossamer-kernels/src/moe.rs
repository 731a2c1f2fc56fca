//! Mixture-of-experts pieces: router top-k with softmax over the selected logits (spec §2.4)
//! and the clamped SwiGLU over interleaved gate/up rows (spec §2.5).

/// SwiGLU's sigmoid gain, fixed by the model (not in config.json).
pub const SWIGLU_ALPHA: f32 = 1.702;

/// Picks the `k` largest router logits; returns `(expert, weight)` with the weights a softmax
/// over the selected logits. Ties go to the lower expert index.
pub fn route(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    idx.truncate(k);
    let max = idx
        .iter()
        .map(|&i| logits[i])
        .fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = idx.iter().map(|&i| (logits[i] - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    idx.into_iter()
        .zip(exps)
        .map(|(i, e)| (i, e / sum))
        .collect()
}

/// `out[j] = g·σ(α·g)·(u + 1)` with `g = min(h[2j], limit)`, `u = clamp(h[2j+1], ±limit)`.
pub fn swiglu(gate_up: &[f32], limit: f32, out: &mut [f32]) {
    assert_eq!(gate_up.len(), 2 * out.len());
    for (o, pair) in out.iter_mut().zip(gate_up.chunks_exact(2)) {
        let g = pair[0].min(limit);
        let u = pair[1].clamp(-limit, limit);
        *o = g / (1.0 + (-SWIGLU_ALPHA * g).exp()) * (u + 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swiglu_spec_values() {
        let cases = [
            ((2.0, 0.5), 2.903_488),
            ((10.0, -9.0), -41.999_72),
            ((-3.0, 2.0), -0.0542139),
            ((0.0, 5.0), 0.0),
        ];
        for ((g, u), want) in cases {
            let mut out = [0f32];
            swiglu(&[g, u], 7.0, &mut out);
            assert!(
                (out[0] - want).abs() < 1e-5,
                "({g},{u}) → {} want {want}",
                out[0]
            );
        }
    }

    #[test]
    fn route_selects_top_k_and_normalises() {
        let r = route(&[0.1, 3.0, -1.0, 2.0, 2.5], 2);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 4]);
        let e = (0.5f32).exp();
        assert!((r[0].1 - e / (1.0 + e)).abs() < 1e-6);
        assert!((r.iter().map(|x| x.1).sum::<f32>() - 1.0).abs() < 1e-6);
    }
}
