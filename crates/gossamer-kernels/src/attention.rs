//! Causal grouped-query attention with learned sinks and an optional sliding window
//! (spec §2.3 steps 5–8), f32 throughout.

use rayon::prelude::*;

use crate::simd::{self, Isa};

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
    let isa = simd::isa();
    // One task per (query token, KV head): the group's query heads are contiguous in `out`,
    // and each key and value row is read once for all of them. The scores buffer is one per
    // worker thread, reused.
    out.par_chunks_mut(group * head_dim)
        .enumerate()
        .for_each_init(Vec::new, |scores, (idx, o)| {
            let (t, g) = (idx / kv_heads, idx % kv_heads);
            let pos = q_pos + t;
            let mut lo = kv.first_pos;
            if let Some(w) = window {
                lo = lo.max((pos + 1).saturating_sub(w));
            }
            let task = GroupTask {
                keys: lo - kv.first_pos..pos + 1 - kv.first_pos,
                q: &q[t * qw + g * group * head_dim..t * qw + (g + 1) * group * head_dim],
                kv_head: g,
                kv_width: kvw,
                head_dim,
                scale,
                sinks: &sinks[g * group..(g + 1) * group],
            };
            attend(isa, &task, kv, scores, o);
        });
}

/// One query token's heads that share one KV head.
struct GroupTask<'a> {
    /// Rows of the cache this token sees.
    keys: std::ops::Range<usize>,
    /// The group's query heads, `[group, head_dim]`.
    q: &'a [f32],
    kv_head: usize,
    kv_width: usize,
    head_dim: usize,
    scale: f32,
    sinks: &'a [f32],
}

/// Runs [`attend_body`] compiled for the widest vector unit the CPU has: the same source
/// each time, so the SIMD builds are checked against the plain one (tests below).
fn attend(isa: Isa, task: &GroupTask, kv: &KvView, scores: &mut Vec<f32>, o: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa()` returns Avx512 only after detecting avx512f, avx512bw, avx512vl.
        Isa::Avx512 => unsafe { attend_avx512(task, kv, scores, o) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2 is returned only after detecting avx2 and fma.
        Isa::Avx2 => unsafe { attend_avx2(task, kv, scores, o) },
        _ => attend_body(task, kv, scores, o),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn attend_avx512(task: &GroupTask, kv: &KvView, scores: &mut Vec<f32>, o: &mut [f32]) {
    let group = task.q.len() / task.head_dim;
    if task.head_dim != x86::HEAD_DIM || !group.is_multiple_of(x86::HEADS_PER_PASS) {
        return attend_body(task, kv, scores, o);
    }
    let n_keys = task.keys.len();
    scores.clear();
    scores.resize(group * n_keys, 0.0);
    x86::scores(task, kv, scores);
    softmax_rows(task, scores, n_keys);
    x86::weighted_values(task, kv, scores, o);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_avx2(task: &GroupTask, kv: &KvView, scores: &mut Vec<f32>, o: &mut [f32]) {
    attend_body(task, kv, scores, o)
}

/// Scores, softmax with the sink, and the weighted sum of values for one [`GroupTask`].
/// Every loop runs over 16 independent lanes or whole rows, so it vectorises.
#[inline(always)]
fn attend_body(task: &GroupTask, kv: &KvView, scores: &mut Vec<f32>, o: &mut [f32]) {
    let (hd, kvw) = (task.head_dim, task.kv_width);
    let col = task.kv_head * hd;
    let n_keys = task.keys.len();
    let group = task.q.len() / hd;
    // scores[hh * n_keys + k]: query head hh, key keys.start + k.
    scores.clear();
    scores.resize(group * n_keys, 0.0);
    for (k, j) in task.keys.clone().enumerate() {
        let kj = &kv.k[j * kvw + col..j * kvw + col + hd];
        for (hh, qh) in task.q.chunks_exact(hd).enumerate() {
            scores[hh * n_keys + k] = dot_f32(qh, kj) * task.scale;
        }
    }
    softmax_rows(task, scores, n_keys);
    o.fill(0.0);
    for (k, j) in task.keys.clone().enumerate() {
        let vj = &kv.v[j * kvw + col..j * kvw + col + hd];
        for (hh, oh) in o.chunks_exact_mut(hd).enumerate() {
            let w = scores[hh * n_keys + k];
            for (oo, vv) in oh.iter_mut().zip(vj) {
                *oo += w * vv;
            }
        }
    }
}

/// Each head's row of scores becomes probabilities, the sink joining the denominator.
#[inline(always)]
fn softmax_rows(task: &GroupTask, scores: &mut [f32], n_keys: usize) {
    for (hh, row) in scores.chunks_exact_mut(n_keys).enumerate() {
        let sink = task.sinks[hh];
        let max = max_f32(row).max(sink);
        let mut denom = [0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                c[l] = exp_f32(c[l] - max);
                denom[l] += c[l];
            }
        }
        let mut total = exp_f32(sink - max) + denom.iter().sum::<f32>();
        for s in chunks.into_remainder() {
            *s = exp_f32(*s - max);
            total += *s;
        }
        let inv = 1.0 / total;
        for s in row.iter_mut() {
            *s *= inv;
        }
    }
}

/// The dot products and the weighted sum written with AVX-512 intrinsics for gpt-oss's head
/// size: a compiler-vectorised 64-element dot product ends in a slow lane-by-lane sum.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{GroupTask, KvView};

    pub const HEAD_DIM: usize = 64;
    /// Query heads whose outputs are accumulated in registers at once (4 × 4 zmm).
    pub const HEADS_PER_PASS: usize = 4;

    /// `scores[hh * n + k] = q_hh · key_k × scale`. Four query heads at a time are held in 16
    /// registers while the keys go by; their four dot products are summed together by one
    /// shuffle tree ([`sum4`]) instead of four separate horizontal sums.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scores(task: &GroupTask, kv: &KvView, scores: &mut [f32]) {
        let kvw = task.kv_width;
        let col = task.kv_head * HEAD_DIM;
        let n_keys = task.keys.len();
        let group = task.q.len() / HEAD_DIM;
        assert!(task.keys.end * kvw <= kv.k.len() && col + HEAD_DIM <= kvw);
        assert_eq!(scores.len(), group * n_keys);
        assert!(group.is_multiple_of(HEADS_PER_PASS));
        let scale = _mm_set1_ps(task.scale);
        for h0 in (0..group).step_by(HEADS_PER_PASS) {
            // SAFETY: heads h0..h0+4 are task.q[(h0 + i)·64..][..64], inside task.q since
            // group = len / 64 and h0 + 4 <= group.
            let qp = task.q.as_ptr().add(h0 * HEAD_DIM);
            let q: [[__m512; 4]; HEADS_PER_PASS] = std::array::from_fn(|h| {
                std::array::from_fn(|c| _mm512_loadu_ps(qp.add(h * HEAD_DIM + 16 * c)))
            });
            for (k, j) in task.keys.clone().enumerate() {
                // SAFETY: row j's slice [j·kvw + col, +64) is inside kv.k (asserted above).
                let kp = kv.k.as_ptr().add(j * kvw + col);
                let kr: [__m512; 4] = std::array::from_fn(|c| _mm512_loadu_ps(kp.add(16 * c)));
                let acc: [__m512; HEADS_PER_PASS] = std::array::from_fn(|h| {
                    let mut a = _mm512_mul_ps(q[h][0], kr[0]);
                    a = _mm512_fmadd_ps(q[h][1], kr[1], a);
                    a = _mm512_fmadd_ps(q[h][2], kr[2], a);
                    _mm512_fmadd_ps(q[h][3], kr[3], a)
                });
                let mut four = [0f32; 4];
                _mm_storeu_ps(four.as_mut_ptr(), _mm_mul_ps(sum4(acc), scale));
                for (h, v) in four.into_iter().enumerate() {
                    scores[(h0 + h) * n_keys + k] = v;
                }
            }
        }
    }

    /// The lane sums of four vectors, as one 4-lane vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn sum4(a: [__m512; 4]) -> __m128 {
        // Within each 128-bit lane: pairs of vectors interleaved and added, then pairs of
        // pairs; this leaves [Σa0, Σa1, Σa2, Σa3] per 128-bit lane, and the four lanes add.
        let t0 = _mm512_add_ps(
            _mm512_unpacklo_ps(a[0], a[1]),
            _mm512_unpackhi_ps(a[0], a[1]),
        );
        let t1 = _mm512_add_ps(
            _mm512_unpacklo_ps(a[2], a[3]),
            _mm512_unpackhi_ps(a[2], a[3]),
        );
        let (d0, d1) = (_mm512_castps_pd(t0), _mm512_castps_pd(t1));
        let u = _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(d0, d1)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(d0, d1)),
        );
        let lo = _mm512_castps512_ps256(u);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(u)));
        let v = _mm256_add_ps(lo, hi);
        _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v))
    }

    /// `o_hh = Σ_k p[hh][k] · value_k`, four heads' outputs held in registers per pass.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn weighted_values(task: &GroupTask, kv: &KvView, scores: &[f32], o: &mut [f32]) {
        let kvw = task.kv_width;
        let col = task.kv_head * HEAD_DIM;
        let n_keys = task.keys.len();
        let group = task.q.len() / HEAD_DIM;
        assert!(task.keys.end * kvw <= kv.v.len() && col + HEAD_DIM <= kvw);
        assert_eq!(o.len(), group * HEAD_DIM);
        assert_eq!(scores.len(), group * n_keys);
        for h0 in (0..group).step_by(HEADS_PER_PASS) {
            let mut acc = [[_mm512_setzero_ps(); 4]; HEADS_PER_PASS];
            for (k, j) in task.keys.clone().enumerate() {
                // SAFETY: as in `scores`, for kv.v.
                let vp = kv.v.as_ptr().add(j * kvw + col);
                let vr = [
                    _mm512_loadu_ps(vp),
                    _mm512_loadu_ps(vp.add(16)),
                    _mm512_loadu_ps(vp.add(32)),
                    _mm512_loadu_ps(vp.add(48)),
                ];
                for (hh, a) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(scores[(h0 + hh) * n_keys + k]);
                    for c in 0..4 {
                        a[c] = _mm512_fmadd_ps(w, vr[c], a[c]);
                    }
                }
            }
            for (hh, a) in acc.iter().enumerate() {
                for (c, v) in a.iter().enumerate() {
                    let at = (h0 + hh) * HEAD_DIM + 16 * c;
                    // SAFETY: at + 16 <= group · 64 = o.len() (asserted).
                    _mm512_storeu_ps(o.as_mut_ptr().add(at), *v);
                }
            }
        }
    }
}

const LANES: usize = 16;

/// `Σ a[i]·b[i]` in independent lanes, so the compiler vectorises it (a single running sum
/// would pin the order of additions and stay scalar).
#[inline(always)]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
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
    // Pairwise, halving the width each step: each step is one vector add, where a running
    // sum over the lanes would be 15 dependent scalar adds per score.
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    acc[0] + tail
}

#[inline(always)]
fn max_f32(v: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for l in 0..LANES {
            m[l] = if c[l] > m[l] { c[l] } else { m[l] };
        }
    }
    m.iter().copied().fold(rest, f32::max)
}

/// `e^x` in plain arithmetic the compiler can vectorise (libm's `expf` is a call per
/// element): `2^n · e^r` with `n = round(x·log2 e)`, `r` reduced with a two-part ln 2, and
/// Cephes' degree-6 polynomial for `e^r`. Within 2 ulp of the true value (tested); 0 below
/// the smallest normal result, as softmax wants.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.0, 88.0);
    let n = (xc * LOG2E + 0.5).floor();
    let r = xc - n * LN2_HI - n * LN2_LO;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 0.5)
        * z
        + r
        + 1.0;
    let pow2 = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let y = p * pow2;
    if x < -87.0 {
        0.0
    } else if x > 88.0 {
        f32::INFINITY
    } else {
        y
    }
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

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0f64;
        for i in 0..=2_000_000 {
            let x = -87.0 + 175.0 * i as f32 / 2_000_000.0;
            let got = exp_f32(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(
            worst < 2.5 * f32::EPSILON as f64,
            "max relative error {worst:e}"
        );
        assert_eq!(exp_f32(-1e9), 0.0);
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(1e9), f32::INFINITY);
    }

    /// The vectorised builds of the attention body against the plain one, over GQA groups,
    /// windows, uneven key counts and a cache that starts after position 0.
    #[test]
    fn simd_builds_equal_the_plain_one() {
        for heads in [8, 16] {
            simd_build_case(heads);
        }
    }

    fn simd_build_case(heads: usize) {
        let (kv_heads, hd) = (2, 64);
        let group = heads / kv_heads;
        let n_keys: usize = 37;
        let mut draw = crate::xorshift::xorshift(0x1234_5678_9ABC_DEF1);
        let mut next = || crate::xorshift::unit(draw());
        let k: Vec<f32> = (0..n_keys * kv_heads * hd).map(|_| next() * 4.0).collect();
        let v: Vec<f32> = (0..n_keys * kv_heads * hd).map(|_| next()).collect();
        let q: Vec<f32> = (0..heads * hd).map(|_| next() * 4.0).collect();
        let sinks: Vec<f32> = (0..heads).map(|_| next()).collect();
        let kv = KvView {
            k: &k,
            v: &v,
            first_pos: 100,
        };
        for window in [None, Some(5), Some(64)] {
            let task_for = |g: usize| GroupTask {
                keys: window.map_or(0, |w| n_keys.saturating_sub(w))..n_keys,
                q: &q[g * group * hd..(g + 1) * group * hd],
                kv_head: g,
                kv_width: kv_heads * hd,
                head_dim: hd,
                scale: 0.125,
                sinks: &sinks[g * group..(g + 1) * group],
            };
            for g in 0..kv_heads {
                let mut plain = vec![0f32; group * hd];
                attend_body(&task_for(g), &kv, &mut Vec::new(), &mut plain);
                let mut fast = vec![0f32; group * hd];
                attend(simd::isa(), &task_for(g), &kv, &mut Vec::new(), &mut fast);
                for (a, b) in plain.iter().zip(&fast) {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
                }
            }
        }
    }
}
