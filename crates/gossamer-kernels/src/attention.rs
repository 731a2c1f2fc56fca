//! Causal grouped-query attention with learned sinks and an optional sliding window
//! (spec §2.3 steps 5–8), f32 throughout.

use rayon::prelude::*;

/// Shapes shared by every call in a model.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Logit scale, `1/sqrt(head_dim)`.
    pub scale: f32,
}

/// Keys and values of consecutive positions `first_pos, first_pos + 1, …`, each row
/// `[kv_heads · head_dim]`.
pub struct KvView<'a> {
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub first_pos: usize,
}

/// Attends `n` query tokens at positions `q_pos, q_pos + 1, …` (`q`: `[n, heads·head_dim]`,
/// already rotated) over `kv`, writing `out` (`[n, heads·head_dim]`). Query at position `p`
/// sees keys `j ≤ p`, and with `window = Some(w)` only `j > p − w`. `sinks[h]` joins each
/// head's softmax denominator unscaled, and its own probability is dropped.
pub fn attention(
    shape: AttentionShape,
    q: &[f32],
    q_pos: usize,
    kv: &KvView,
    window: Option<usize>,
    sinks: &[f32],
    out: &mut [f32],
) {
    let AttentionShape {
        heads,
        kv_heads,
        head_dim,
        scale,
    } = shape;
    let (qw, kvw) = (heads * head_dim, kv_heads * head_dim);
    let n = q.len() / qw;
    assert_eq!(out.len(), n * qw);
    assert_eq!(kv.k.len(), kv.v.len());
    let n_keys = kv.k.len() / kvw;
    assert!(
        q_pos + n <= kv.first_pos + n_keys,
        "attention: keys must reach the last query position"
    );
    let group = heads / kv_heads;
    // One task per (query token, KV head): the group's query heads are contiguous in `out`,
    // and each key and value row is read once for all of them.
    out.par_chunks_mut(group * head_dim)
        .enumerate()
        .for_each(|(idx, o)| {
            let (t, g) = (idx / kv_heads, idx % kv_heads);
            let pos = q_pos + t;
            let mut lo = kv.first_pos;
            if let Some(w) = window {
                lo = lo.max((pos + 1).saturating_sub(w));
            }
            let keys = lo - kv.first_pos..pos + 1 - kv.first_pos;
            let n_keys = keys.len();
            let first_head = g * group;
            let qg = &q[t * qw + first_head * head_dim..t * qw + (first_head + group) * head_dim];
            // scores[hh * n_keys + k]: query head `first_head + hh`, key `keys.start + k`.
            let mut scores = vec![0f32; group * n_keys];
            for (k, j) in keys.clone().enumerate() {
                let kj = &kv.k[j * kvw + g * head_dim..j * kvw + (g + 1) * head_dim];
                for (hh, qh) in qg.chunks_exact(head_dim).enumerate() {
                    scores[hh * n_keys + k] = dot_f32(qh, kj) * scale;
                }
            }
            for (hh, row) in scores.chunks_exact_mut(n_keys).enumerate() {
                let sink = sinks[first_head + hh];
                let max = row.iter().copied().fold(sink, f32::max);
                let mut denom = (sink - max).exp();
                for s in row.iter_mut() {
                    *s = (*s - max).exp();
                    denom += *s;
                }
                let inv = 1.0 / denom;
                for s in row.iter_mut() {
                    *s *= inv;
                }
            }
            o.fill(0.0);
            for (k, j) in keys.enumerate() {
                let vj = &kv.v[j * kvw + g * head_dim..j * kvw + (g + 1) * head_dim];
                for (hh, oh) in o.chunks_exact_mut(head_dim).enumerate() {
                    let w = scores[hh * n_keys + k];
                    for (oo, vv) in oh.iter_mut().zip(vj) {
                        *oo += w * vv;
                    }
                }
            }
        });
}

/// `Σ a[i]·b[i]` in independent lanes, so the compiler vectorises it (a single running sum
/// would pin the order of additions and stay scalar).
#[inline]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_sink_example() {
        // One key with scaled logit 1.0 and sink 0.5 → p = e/(e + e^0.5) = 0.6224593.
        let shape = AttentionShape {
            heads: 1,
            kv_heads: 1,
            head_dim: 2,
            scale: 1.0,
        };
        let q = [1.0f32, 0.0];
        let kv = KvView {
            k: &[1.0, 0.0],
            v: &[2.0, -4.0],
            first_pos: 0,
        };
        let mut out = [0f32; 2];
        attention(shape, &q, 0, &kv, None, &[0.5], &mut out);
        assert!((out[0] - 2.0 * 0.6224593).abs() < 1e-6);
        assert!((out[1] + 4.0 * 0.6224593).abs() < 1e-6);
    }

    #[test]
    fn window_limits_keys_and_gqa_maps_heads() {
        // 2 query heads share one KV head; window 2 → position 3 sees keys 2 and 3 only.
        let shape = AttentionShape {
            heads: 2,
            kv_heads: 1,
            head_dim: 1,
            scale: 1.0,
        };
        let k = [0.0f32, 0.0, 0.0, 0.0];
        let v = [100.0f32, 100.0, 1.0, 3.0];
        let kv = KvView {
            k: &k,
            v: &v,
            first_pos: 0,
        };
        let q = [1.0f32, 1.0];
        let mut out = [0f32; 2];
        // Sink −inf-like: equal scores → mean of visible values.
        attention(shape, &q, 3, &kv, Some(2), &[-1e9, -1e9], &mut out);
        assert!((out[0] - 2.0).abs() < 1e-6 && (out[1] - 2.0).abs() < 1e-6);
        attention(shape, &q, 3, &kv, None, &[-1e9, -1e9], &mut out);
        assert!((out[0] - 51.0).abs() < 1e-4);
    }
}
