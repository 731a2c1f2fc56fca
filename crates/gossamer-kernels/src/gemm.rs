//! Batched products for prefill: `y[t] = W·x[t]` for many tokens at once. Each group of
//! [`MR`] weight rows is decoded once per block of tokens into a small panel, then multiplied
//! with [`NR`] tokens at a time in registers, so the weights cost one read (and one decode)
//! per block instead of one per token, and every load feeds several multiply-adds.
//!
//! Two precisions ([`Precision`]):
//! - `Exact`: weights widened to f32, activations f32, f32 FMAs: the one-token path's
//!   arithmetic, only summed in another order.
//! - `Fast`: activations rounded to bf16 and multiplied with `vdpbf16ps` (AVX512-BF16), twice
//!   the multiply rate. The weights lose nothing (bf16 weights are bf16 already; an MXFP4
//!   value, two significant bits times a power of two, is exact in bf16), products are
//!   accumulated in f32.
//!
//! In the fast precision the bf16 tiles give each (row, token) one `vdpbf16ps` chain over
//! the row from zero, reduced by a fixed tree: the canonical bf16 arithmetic of
//! batch-invariant products, the one-token kernel's ([`crate::simd::dot_bf16_bf16`]) too.
//!
//! Panels and activations share one element order inside each block of 32, which is all a
//! dot product needs: "pair order" (evens then odds, [`crate::simd::to_pair_order`]) for f32
//! panels and MXFP4, storage order for bf16 weights used directly by the fast path.
//!
//! The SIMD tiles have scalar twins run through the same blocking ([`Tiles::Scalar`]); the
//! tests compare the two.

use rayon::prelude::*;

use crate::linear::{Matrix, Weight};
use crate::simd::{self, Isa, PAIR_BLOCK};
use crate::{bf16, mxfp4};

/// Arithmetic of batched products (several tokens at once). One-token products always use
/// f32 activations: they are bound by memory, where bf16 would save nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 activations everywhere (scoring, the goldens).
    #[default]
    Exact,
    /// bf16 activations in prefill products where the CPU multiplies bf16 natively.
    Fast,
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(Precision::Exact),
            "fast" => Ok(Precision::Fast),
            other => Err(format!("unknown precision {other:?} (exact or fast)")),
        }
    }
}

/// Weight rows per micro-tile.
pub const MR: usize = 4;
/// Tokens per micro-tile: `MR × NR` accumulators plus `MR` weight registers fit in 32.
pub const NR: usize = 6;
/// Most tokens per block, by arithmetic: a block's activations (64 × 2880 × 4 B = 737 KB of
/// f32, or 128 × 2880 × 2 B of bf16, for gpt-oss) stay in a 1 MB L2 while every row of a
/// band goes by. Each block decodes every panel again, so the blocks of a product are made
/// as even as possible: an expert's 70 tokens in the f32 arithmetic are two blocks of 35, and
/// one block of 70 in bf16 (not 64 and then a panel decode for 6 more tokens).
fn token_block(arith: Arith) -> usize {
    match arith {
        Arith::F32 => 64,
        Arith::Bf16 => 128,
    }
}

/// Which tile implementation runs (the SIMD one, or its scalar twin for tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tiles {
    /// The widest the CPU has ([`simd::isa`]).
    Simd,
    /// The AVX2 tiles even on an AVX-512 CPU (x86 tests only).
    #[cfg_attr(any(not(test), not(target_arch = "x86_64")), allow(dead_code))]
    Avx2,
    Scalar,
}

/// The arithmetic a product actually gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arith {
    F32,
    Bf16,
}

/// Whether the CPU has `vdpbf16ps` (and the AVX-512 this module needs).
pub fn has_bf16_dot() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd::isa() == Isa::Avx512 && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether [`gemm`] takes this product: AVX-512 or AVX2, row-major weights, whole blocks of
/// 32.
pub fn applies(m: &Matrix) -> bool {
    matches!(simd::isa(), Isa::Avx512 | Isa::Avx2)
        && m.cols.is_multiple_of(PAIR_BLOCK)
        && !matches!(m.weight, Weight::Bf16Transposed(_))
}

/// `y[t] = W·x[t]` (no bias) for `n` tokens; the caller checked [`applies`].
pub fn gemm(m: &Matrix, x: &[f32], n: usize, y: &mut [f32], precision: Precision) {
    gemm_with(m, x, n, y, precision, Tiles::Simd);
}

pub(crate) fn gemm_with(
    m: &Matrix,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    precision: Precision,
    tiles: Tiles,
) {
    assert!(m.cols.is_multiple_of(PAIR_BLOCK), "gemm: columns");
    assert_eq!(x.len(), n * m.cols, "gemm: input size");
    assert_eq!(y.len(), n * m.rows, "gemm: output size");
    let acts = Activations::new(m, x, arith(precision, tiles), tiles);
    let band = band_rows(m);
    let bands: Vec<(usize, Vec<f32>)> = (0..m.rows.div_ceil(band))
        .into_par_iter()
        .map(|b| {
            let r0 = b * band;
            let width = band.min(m.rows - r0);
            let mut out = vec![0f32; n * width];
            band_product(m, &acts, n, r0, tiles, &mut out);
            (r0, out)
        })
        .collect();
    for (r0, band) in bands {
        let width = band.len() / n;
        for (t, src) in band.chunks_exact(width).enumerate() {
            y[t * m.rows + r0..t * m.rows + r0 + width].copy_from_slice(src);
        }
    }
}

/// The arithmetic `precision` gets from `tiles` on this CPU: bf16 products only where the
/// CPU multiplies bf16 (or in the scalar twins, which model it).
pub(crate) fn arith(precision: Precision, tiles: Tiles) -> Arith {
    if precision == Precision::Fast
        && (tiles == Tiles::Scalar || (tiles == Tiles::Simd && has_bf16_dot()))
    {
        Arith::Bf16
    } else {
        Arith::F32
    }
}

/// Weight rows per parallel task of a product: a few tasks per thread (balance), whole
/// micro-tiles.
pub(crate) fn band_rows(m: &Matrix) -> usize {
    let threads = rayon::current_num_threads().max(1);
    m.rows.div_ceil(threads * 4).next_multiple_of(MR).max(MR)
}

/// `out[t·width + i] = W[r0 + i]·x_t` for the `width = out.len() / n` rows from `r0` and the
/// `n` tokens of `acts` (no bias): one task's band of a [`gemm`]. Each output is computed
/// whole by one tile, so the band boundaries never change a result.
pub(crate) fn band_product(
    m: &Matrix,
    acts: &Activations,
    n: usize,
    r0: usize,
    tiles: Tiles,
    out: &mut [f32],
) {
    let width = out.len() / n;
    assert!(r0 + width <= m.rows, "gemm: band rows");
    let mut panel = Panel::new(m.cols, acts.arith());
    let mut tile = [[0f32; NR]; MR];
    for (t0, count) in simd::token_groups(n, token_block(acts.arith())) {
        let t_end = t0 + count;
        for q in (0..width).step_by(MR) {
            let rows = MR.min(width - q);
            panel.load(m, r0 + q, rows, tiles);
            for t in (t0..t_end).step_by(NR) {
                let count = NR.min(t_end - t);
                panel.multiply(m, acts, t, count, tiles, &mut tile);
                for (r, tile_row) in tile.iter().enumerate().take(rows) {
                    for (j, &v) in tile_row.iter().enumerate().take(count) {
                        out[(t + j) * width + q + r] = v;
                    }
                }
            }
        }
    }
}

/// The activations of one product, in the panels' element order and arithmetic.
pub(crate) enum Activations {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

impl Activations {
    /// Token by token in parallel (a 512-token prompt is 1.5 M values to reorder and round).
    pub(crate) fn new(m: &Matrix, x: &[f32], arith: Arith, tiles: Tiles) -> Activations {
        let k = m.cols;
        match arith {
            Arith::F32 => {
                let mut xp = vec![0f32; x.len()];
                xp.par_chunks_mut(k)
                    .zip(x.par_chunks(k))
                    .for_each(|(dst, src)| simd::to_pair_order(src, dst));
                Activations::F32(xp)
            }
            Arith::Bf16 => {
                // bf16 weights in the fast path are read as stored; MXFP4 in pair order.
                let direct = matches!(m.weight, Weight::Bf16(_));
                let mut xb = vec![0u16; x.len()];
                xb.par_chunks_mut(k)
                    .zip(x.par_chunks(k))
                    .for_each(|(dst, src)| {
                        if direct {
                            to_bf16_into(src, dst, tiles);
                        } else {
                            let mut xp = vec![0f32; k];
                            simd::to_pair_order(src, &mut xp);
                            to_bf16_into(&xp, dst, tiles);
                        }
                    });
                Activations::Bf16(xb)
            }
        }
    }

    fn arith(&self) -> Arith {
        match self {
            Activations::F32(_) => Arith::F32,
            Activations::Bf16(_) => Arith::Bf16,
        }
    }
}

/// Up to [`MR`] weight rows, decoded for the tile kernels (rows past the matrix are zero).
struct Panel {
    k: usize,
    f32s: Vec<f32>,
    bf16s: Vec<u16>,
    arith: Arith,
    /// Fast path over bf16 weights: the first row's offset into the stored matrix, read in
    /// place; `None` when the rows were copied into `bf16s`.
    direct: Option<usize>,
}

impl Panel {
    fn new(k: usize, arith: Arith) -> Panel {
        Panel {
            k,
            f32s: if arith == Arith::F32 {
                vec![0f32; MR * k]
            } else {
                Vec::new()
            },
            bf16s: if arith == Arith::Bf16 {
                vec![0u16; MR * k]
            } else {
                Vec::new()
            },
            arith,
            direct: None,
        }
    }

    /// Decodes rows `r..r+rows` of `m`.
    fn load(&mut self, m: &Matrix, r: usize, rows: usize, tiles: Tiles) {
        let k = self.k;
        self.direct = None;
        match (self.arith, m.weight) {
            (Arith::Bf16, Weight::Bf16(_)) if rows == MR => {
                // Read in place: already bf16, already in the order the activations have.
                self.direct = Some(r * k);
            }
            (Arith::Bf16, Weight::Bf16(w)) => {
                self.bf16s[..rows * k].copy_from_slice(&w[r * k..(r + rows) * k]);
                self.bf16s[rows * k..].fill(0);
            }
            (Arith::Bf16, Weight::Mxfp4 { blocks, scales }) => {
                let g = k / mxfp4::BLOCK_ELEMS;
                for i in 0..rows {
                    let row = r + i;
                    decode_mxfp4_bf16(
                        &blocks[row * g * 16..(row + 1) * g * 16],
                        &scales[row * g..(row + 1) * g],
                        &mut self.bf16s[i * k..(i + 1) * k],
                        tiles,
                    );
                }
                self.bf16s[rows * k..].fill(0);
            }
            (Arith::F32, Weight::Bf16(w)) => {
                for i in 0..rows {
                    let row = r + i;
                    widen_bf16_pairs(
                        &w[row * k..(row + 1) * k],
                        &mut self.f32s[i * k..(i + 1) * k],
                        tiles,
                    );
                }
                self.f32s[rows * k..].fill(0.0);
            }
            (Arith::F32, Weight::Mxfp4 { blocks, scales }) => {
                let g = k / mxfp4::BLOCK_ELEMS;
                for i in 0..rows {
                    let row = r + i;
                    decode_mxfp4_pairs(
                        &blocks[row * g * 16..(row + 1) * g * 16],
                        &scales[row * g..(row + 1) * g],
                        &mut self.f32s[i * k..(i + 1) * k],
                        tiles,
                    );
                }
                self.f32s[rows * k..].fill(0.0);
            }
            (_, Weight::Bf16Transposed(_)) => unreachable!("gemm takes row-major weights"),
        }
    }

    /// `tile[r][j] = panel row r · token (t + j)` for `j < count`.
    fn multiply(
        &self,
        m: &Matrix,
        acts: &Activations,
        t: usize,
        count: usize,
        tiles: Tiles,
        tile: &mut [[f32; NR]; MR],
    ) {
        let k = self.k;
        match acts {
            Activations::F32(x) => {
                let rows: [&[f32]; MR] = std::array::from_fn(|i| &self.f32s[i * k..(i + 1) * k]);
                let xs = &x[t * k..(t + count) * k];
                tile_f32(rows, xs, k, count, tiles, tile);
            }
            Activations::Bf16(x) => {
                let rows: [&[u16]; MR] = match (self.direct, m.weight) {
                    (Some(offset), Weight::Bf16(w)) => {
                        std::array::from_fn(|i| &w[offset + i * k..offset + (i + 1) * k])
                    }
                    _ => std::array::from_fn(|i| &self.bf16s[i * k..(i + 1) * k]),
                };
                let xs = &x[t * k..(t + count) * k];
                tile_bf16(rows, xs, k, count, tiles, tile);
            }
        }
    }
}

/// Calls the `x86` tile kernel instantiated for `count` tokens (1..=NR; the const parameter sizes
/// its accumulator array).
#[cfg(target_arch = "x86_64")]
macro_rules! by_count {
    ($count:expr, $kernel:ident, $($arg:expr),*) => {
        match $count {
            1 => x86::$kernel::<1>($($arg),*),
            2 => x86::$kernel::<2>($($arg),*),
            3 => x86::$kernel::<3>($($arg),*),
            4 => x86::$kernel::<4>($($arg),*),
            5 => x86::$kernel::<5>($($arg),*),
            _ => x86::$kernel::<6>($($arg),*),
        }
    };
}

fn tile_f32(
    rows: [&[f32]; MR],
    xs: &[f32],
    k: usize,
    count: usize,
    tiles: Tiles,
    tile: &mut [[f32; NR]; MR],
) {
    #[cfg(target_arch = "x86_64")]
    if tiles == Tiles::Avx2 || (tiles == Tiles::Simd && simd::isa() == Isa::Avx2) {
        let w = rows.map(|r| r.as_ptr());
        // Two tokens per pass: 4 × 2 accumulators, 4 weight and 1 activation register of 16.
        for t in (0..count).step_by(2) {
            // SAFETY: the AVX2 tiles run only where `isa()` found avx2 and fma (or, in tests,
            // after detecting them); rows have k elements, `xs` holds `count` rows of k, and
            // t + 2 <= count or the one-token form is used.
            unsafe {
                let x = xs.as_ptr().add(t * k);
                if t + 2 <= count {
                    x86::tile_f32_avx2::<2>(w, x, k, tile, t);
                } else {
                    x86::tile_f32_avx2::<1>(w, x, k, tile, t);
                }
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if tiles == Tiles::Simd && simd::isa() == Isa::Avx512 {
        let w = rows.map(|r| r.as_ptr());
        let x = xs.as_ptr();
        // SAFETY: `isa()` is Avx512 (avx512f/bw/vl detected); each row has k elements and `xs`
        // holds `count` rows of k, k a multiple of 32.
        unsafe { by_count!(count, tile_f32, w, x, k, tile) }
        return;
    }
    // (The plain code reads every token of `xs`; `count` and `tiles` pick x86 kernels.)
    let _ = (tiles, count);
    for (r, row) in rows.iter().enumerate() {
        for (j, xr) in xs.chunks_exact(k).enumerate() {
            // 16 lanes, as the SIMD tile sums.
            let mut acc = [0f32; 16];
            for (wc, xc) in row.chunks_exact(16).zip(xr.chunks_exact(16)) {
                for l in 0..16 {
                    acc[l] = wc[l].mul_add(xc[l], acc[l]);
                }
            }
            tile[r][j] = acc.iter().sum();
        }
    }
}

fn tile_bf16(
    rows: [&[u16]; MR],
    xs: &[u16],
    k: usize,
    count: usize,
    tiles: Tiles,
    tile: &mut [[f32; NR]; MR],
) {
    #[cfg(target_arch = "x86_64")]
    if tiles == Tiles::Simd && has_bf16_dot() {
        let w = rows.map(|r| r.as_ptr());
        let x = xs.as_ptr();
        // SAFETY: the bf16 arithmetic is chosen only when `has_bf16_dot()` detected
        // avx512bf16 on top of `isa()`'s avx512f/bw/vl; each row has k elements, `xs` `count` rows of k, k % 32 == 0.
        unsafe { by_count!(count, tile_bf16, w, x, k, tile) }
        return;
    }
    let _ = (tiles, count);
    for (r, row) in rows.iter().enumerate() {
        for (j, xr) in xs.chunks_exact(k).enumerate() {
            tile[r][j] = simd::dot_bf16_bf16_scalar(row, xr);
        }
    }
}

/// f32 → bf16, round to nearest even, order kept (the fast precision's activations).
pub(crate) fn to_bf16(x: &[f32], tiles: Tiles) -> Vec<u16> {
    let mut out = vec![0u16; x.len()];
    to_bf16_into(x, &mut out, tiles);
    out
}

/// [`to_bf16`] into `out` (as long as `x`).
pub(crate) fn to_bf16_into(x: &[f32], out: &mut [u16], tiles: Tiles) {
    assert_eq!(x.len(), out.len(), "to_bf16: lengths");
    #[cfg(target_arch = "x86_64")]
    if tiles == Tiles::Simd && has_bf16_dot() && x.len().is_multiple_of(32) {
        // SAFETY: avx512bf16 detected; both lengths are x.len(), a multiple of 32.
        unsafe { x86::to_bf16(x, out) };
        return;
    }
    let _ = tiles;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = bf16::from_f32_rne(v);
    }
}

/// A bf16 row widened to f32 in pair order.
fn widen_bf16_pairs(w: &[u16], out: &mut [f32], tiles: Tiles) {
    #[cfg(target_arch = "x86_64")]
    if tiles == Tiles::Simd && simd::isa() == Isa::Avx512 {
        // SAFETY: Avx512 detected; both lengths are k, a multiple of 32.
        unsafe { x86::widen_bf16_pairs(w, out) };
        return;
    }
    let _ = tiles;
    for (src, dst) in w.chunks_exact(32).zip(out.chunks_exact_mut(32)) {
        for i in 0..16 {
            dst[i] = bf16::to_f32(src[2 * i]);
            dst[16 + i] = bf16::to_f32(src[2 * i + 1]);
        }
    }
}

/// An MXFP4 row decoded to f32 in pair order: each block's low nibbles, then its high ones.
fn decode_mxfp4_pairs(blocks: &[u8], scales: &[u8], out: &mut [f32], tiles: Tiles) {
    #[cfg(target_arch = "x86_64")]
    if tiles == Tiles::Simd && simd::isa() == Isa::Avx512 {
        // SAFETY: Avx512 detected; blocks = 16·scales, out = 32·scales bytes.
        unsafe { x86::decode_mxfp4_pairs(blocks, scales, out) };
        return;
    }
    let _ = tiles;
    for ((b, &s), dst) in blocks
        .chunks_exact(16)
        .zip(scales)
        .zip(out.chunks_exact_mut(32))
    {
        let scale = mxfp4::scale(s);
        for i in 0..16 {
            dst[i] = mxfp4::E2M1[(b[i] & 0x0F) as usize] * scale;
            dst[16 + i] = mxfp4::E2M1[(b[i] >> 4) as usize] * scale;
        }
    }
}

/// An MXFP4 row decoded to bf16 in pair order (exact: E2M1 values are bf16 numbers).
fn decode_mxfp4_bf16(blocks: &[u8], scales: &[u8], out: &mut [u16], tiles: Tiles) {
    #[cfg(target_arch = "x86_64")]
    if tiles == Tiles::Simd && has_bf16_dot() {
        // SAFETY: avx512f + avx512bf16 detected; lengths as in `decode_mxfp4_pairs`.
        unsafe { x86::decode_mxfp4_bf16(blocks, scales, out) };
        return;
    }
    let _ = tiles;
    let mut f = vec![0f32; out.len()];
    decode_mxfp4_pairs(blocks, scales, &mut f, Tiles::Scalar);
    for (o, v) in out.iter_mut().zip(f) {
        *o = bf16::from_f32_rne(v);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// `MR × T` dot products of length `k` (a multiple of 16): `w` are `MR` rows, `x` holds
    /// `T` rows of `k` one after another.
    #[allow(clippy::needless_range_loop)] // acc[r][t] by index reads clearest here
    #[target_feature(enable = "avx512f,avx512vl")]
    pub unsafe fn tile_f32<const T: usize>(
        w: [*const f32; MR],
        x: *const f32,
        k: usize,
        out: &mut [[f32; NR]; MR],
    ) {
        // The first step multiplies instead of adding to zero: accumulators zeroed by VEX
        // `vxorps` get pinned to zmm0–15 by LLVM, which then spills some of them.
        // SAFETY (loads): i + 16 <= k, inside every row and every token's k elements.
        let wv: [__m512; MR] = std::array::from_fn(|r| _mm512_loadu_ps(w[r]));
        let mut acc: [[__m512; T]; MR] = std::array::from_fn(|r| {
            std::array::from_fn(|t| _mm512_mul_ps(wv[r], _mm512_loadu_ps(x.add(t * k))))
        });
        let mut i = 16;
        while i < k {
            let wv: [__m512; MR] = std::array::from_fn(|r| _mm512_loadu_ps(w[r].add(i)));
            for t in 0..T {
                let xv = _mm512_loadu_ps(x.add(t * k + i));
                for r in 0..MR {
                    acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
                }
            }
            i += 16;
        }
        for r in 0..MR {
            for t in 0..T {
                out[r][t] = _mm512_reduce_add_ps(acc[r][t]);
            }
        }
    }

    /// AVX2 form of [`tile_f32`] for `T` ≤ 2 tokens starting at token `t0` of the tile:
    /// 8 lanes per step, results written to `out[r][t0 + t]`.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_f32_avx2<const T: usize>(
        w: [*const f32; MR],
        x: *const f32,
        k: usize,
        out: &mut [[f32; NR]; MR],
        t0: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); T]; MR];
        let mut i = 0;
        while i < k {
            // SAFETY (loads): i + 8 <= k, inside every row and every token's k elements.
            let wv: [__m256; MR] = std::array::from_fn(|r| _mm256_loadu_ps(w[r].add(i)));
            for t in 0..T {
                let xv = _mm256_loadu_ps(x.add(t * k + i));
                for r in 0..MR {
                    acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
                }
            }
            i += 8;
        }
        for r in 0..MR {
            for t in 0..T {
                let v = acc[r][t];
                let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
                out[r][t0 + t] = _mm_cvtss_f32(s);
            }
        }
    }

    /// bf16 twin of [`tile_f32`]: 32 elements per step, `vdpbf16ps` adds each lane's pair
    /// of products into an f32 accumulator. Each (row, token) is one chain from zero,
    /// reduced by the fixed tree: [`crate::simd::x86::bf16_chains`], the canonical bf16
    /// arithmetic the one-token kernel ([`crate::simd::dot_bf16_bf16`]) also has.
    #[target_feature(enable = "avx512f,avx512bf16,avx512vl,avx512bw")]
    pub unsafe fn tile_bf16<const T: usize>(
        w: [*const u16; MR],
        x: *const u16,
        k: usize,
        out: &mut [[f32; NR]; MR],
    ) {
        // SAFETY: forwarded from the caller (the same contract).
        let r = crate::simd::x86::bf16_chains::<MR, T>(w, x, k, None);
        for (o, v) in out.iter_mut().zip(&r) {
            o[..T].copy_from_slice(v);
        }
    }

    /// f32 → bf16 (round to nearest even), 32 at a time, order kept.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn to_bf16(x: &[f32], out: &mut [u16]) {
        assert_eq!(x.len(), out.len());
        for i in (0..x.len()).step_by(32) {
            // SAFETY: i + 32 <= len for both slices (len % 32 == 0).
            let lo = _mm512_loadu_ps(x.as_ptr().add(i));
            let hi = _mm512_loadu_ps(x.as_ptr().add(i + 16));
            let packed = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(
                out.as_mut_ptr().add(i).cast(),
                std::mem::transmute::<__m512bh, __m512i>(packed),
            );
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn widen_bf16_pairs(w: &[u16], out: &mut [f32]) {
        assert_eq!(w.len(), out.len());
        let hi_mask = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
        for i in (0..w.len()).step_by(32) {
            // SAFETY: i + 32 <= len for both slices.
            let words = _mm512_loadu_si512(w.as_ptr().add(i).cast());
            let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(words));
            let odd = _mm512_castsi512_ps(_mm512_and_si512(words, hi_mask));
            _mm512_storeu_ps(out.as_mut_ptr().add(i), even);
            _mm512_storeu_ps(out.as_mut_ptr().add(i + 16), odd);
        }
    }

    /// One block's low and high nibbles as scaled f32 (16 lanes each).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn mxfp4_block(lut: __m512, bytes: *const u8, s: u8) -> (__m512, __m512) {
        let wide = _mm512_cvtepu8_epi32(_mm_loadu_si128(bytes.cast()));
        let scale = _mm512_set1_ps(crate::mxfp4::scale(s));
        let lo = _mm512_permutexvar_ps(_mm512_and_si512(wide, _mm512_set1_epi32(0x0F)), lut);
        let hi = _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(wide), lut);
        (_mm512_mul_ps(lo, scale), _mm512_mul_ps(hi, scale))
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn decode_mxfp4_pairs(blocks: &[u8], scales: &[u8], out: &mut [f32]) {
        assert_eq!(blocks.len(), scales.len() * 16);
        assert_eq!(out.len(), scales.len() * 32);
        let lut = _mm512_loadu_ps(crate::mxfp4::E2M1.as_ptr());
        for (g, &s) in scales.iter().enumerate() {
            // SAFETY: block g is blocks[16g..16g+16] and out[32g..32g+32] (asserted sizes).
            let (lo, hi) = mxfp4_block(lut, blocks.as_ptr().add(16 * g), s);
            _mm512_storeu_ps(out.as_mut_ptr().add(32 * g), lo);
            _mm512_storeu_ps(out.as_mut_ptr().add(32 * g + 16), hi);
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn decode_mxfp4_bf16(blocks: &[u8], scales: &[u8], out: &mut [u16]) {
        assert_eq!(blocks.len(), scales.len() * 16);
        assert_eq!(out.len(), scales.len() * 32);
        let lut = _mm512_loadu_ps(crate::mxfp4::E2M1.as_ptr());
        for (g, &s) in scales.iter().enumerate() {
            // SAFETY: as in `decode_mxfp4_pairs`.
            let (lo, hi) = mxfp4_block(lut, blocks.as_ptr().add(16 * g), s);
            let packed = _mm512_cvtne2ps_pbh(hi, lo);
            _mm512_storeu_si512(
                out.as_mut_ptr().add(32 * g).cast(),
                std::mem::transmute::<__m512bh, __m512i>(packed),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xorshift::{unit, xorshift};
    use proptest::prelude::*;

    /// Dense f32 copy of the weights and Σ|w·x| per output (the error bound's scale).
    fn dense(m: &Matrix) -> Vec<f32> {
        let mut w = vec![0f32; m.rows * m.cols];
        for r in 0..m.rows {
            let row = &mut w[r * m.cols..(r + 1) * m.cols];
            match m.weight {
                Weight::Bf16(b) => {
                    for (o, &v) in row.iter_mut().zip(&b[r * m.cols..]) {
                        *o = bf16::to_f32(v);
                    }
                }
                Weight::Mxfp4 { blocks, scales } => {
                    let g = m.cols / 32;
                    mxfp4::decode_row(
                        &blocks[r * g * 16..(r + 1) * g * 16],
                        &scales[r * g..(r + 1) * g],
                        row,
                    );
                }
                Weight::Bf16Transposed(_) => unreachable!(),
            }
        }
        w
    }

    /// Checks both tile implementations against a f64 product (with bf16-rounded activations
    /// in the fast mode), within a few roundings of Σ|w·x|.
    fn check(m: &Matrix, x: &[f32], n: usize, precision: Precision) -> Result<(), TestCaseError> {
        let w = dense(m);
        let xr: Vec<f32> = match precision {
            Precision::Exact => x.to_vec(),
            Precision::Fast => x
                .iter()
                .map(|&v| bf16::to_f32(bf16::from_f32_rne(v)))
                .collect(),
        };
        let mut scalar = vec![0f32; n * m.rows];
        gemm_with(m, x, n, &mut scalar, precision, Tiles::Scalar);
        let mut simd_out = vec![0f32; n * m.rows];
        let simd_runs = applies(m);
        if simd_runs {
            gemm_with(m, x, n, &mut simd_out, precision, Tiles::Simd);
        }
        // The AVX2 tiles (f32 arithmetic in either precision) wherever the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            let mut avx2 = vec![0f32; n * m.rows];
            gemm_with(m, x, n, &mut avx2, precision, Tiles::Avx2);
            for t in 0..n {
                for r in 0..m.rows {
                    let (mut exact, mut mag) = (0f64, 0f64);
                    for c in 0..m.cols {
                        let p = w[r * m.cols + c] as f64 * x[t * m.cols + c] as f64;
                        exact += p;
                        mag += p.abs();
                    }
                    let v = avx2[t * m.rows + r] as f64;
                    prop_assert!(
                        (v - exact).abs() <= 1e-5 * mag + 1e-30,
                        "avx2 {v} vs {exact} (row {r}, token {t})"
                    );
                }
            }
        }
        for t in 0..n {
            for r in 0..m.rows {
                let (mut exact, mut mag) = (0f64, 0f64);
                for c in 0..m.cols {
                    let p = w[r * m.cols + c] as f64 * xr[t * m.cols + c] as f64;
                    exact += p;
                    mag += p.abs();
                }
                let bound = 1e-5 * mag + 1e-30;
                let s = scalar[t * m.rows + r] as f64;
                prop_assert!(
                    (s - exact).abs() <= bound,
                    "scalar {s} vs {exact} (row {r}, token {t})"
                );
                if simd_runs {
                    // Fast mode on a CPU without vdpbf16ps computes in f32: compare it with
                    // the f32 product instead.
                    let reference = if precision == Precision::Fast && !has_bf16_dot() {
                        (0..m.cols)
                            .map(|c| w[r * m.cols + c] as f64 * x[t * m.cols + c] as f64)
                            .sum::<f64>()
                    } else {
                        exact
                    };
                    let v = simd_out[t * m.rows + r] as f64;
                    prop_assert!(
                        (v - reference).abs() <= bound,
                        "simd {v} vs {reference} (row {r}, token {t})"
                    );
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn tiles_equal_their_scalar_twins(
            rows in 1usize..23,
            blocks in 1usize..7,
            n in 1usize..80,
            seed in any::<u64>(),
            fast in any::<bool>(),
            mx in any::<bool>(),
        ) {
            let cols = blocks * 32;
            let mut next = xorshift(seed);
            let x: Vec<f32> = (0..n * cols).map(|_| unit(next()) * 4.0).collect();
            let precision = if fast { Precision::Fast } else { Precision::Exact };
            if mx {
                let b: Vec<u8> = (0..rows * cols / 2).map(|_| next() as u8).collect();
                let s: Vec<u8> = (0..rows * blocks).map(|_| 118 + (next() % 12) as u8).collect();
                check(&Matrix::mxfp4(&b, &s, rows, cols), &x, n, precision)?;
            } else {
                let w: Vec<u16> = (0..rows * cols)
                    .map(|_| bf16::from_f32_rne(unit(next()) * 3.0))
                    .collect();
                check(&Matrix::bf16(&w, rows, cols), &x, n, precision)?;
            }
        }
    }

    /// The fast precision's bf16 tiles are the canonical bf16 arithmetic: every (row, token)
    /// of the GEMM has the bits of the one-token kernel for that row and token, which is what
    /// lets a batch-invariant product send many tokens through the GEMM and one through the
    /// one-token kernel.
    #[test]
    fn bf16_tiles_are_the_one_token_chains_bit_for_bit() {
        if !has_bf16_dot() {
            return;
        }
        let (rows, cols) = (23, 2880);
        let mut next = xorshift(11);
        let w: Vec<u16> = (0..rows * cols)
            .map(|_| bf16::from_f32_rne(unit(next()) * 0.3))
            .collect();
        let m = Matrix::bf16(&w, rows, cols);
        for n in [1, 5, 6, 7, 40, 70] {
            let x: Vec<f32> = (0..n * cols).map(|_| unit(next()) * 4.0).collect();
            let mut y = vec![0f32; n * rows];
            gemm(&m, &x, n, &mut y, Precision::Fast);
            for t in 0..n {
                let xb = to_bf16(&x[t * cols..(t + 1) * cols], Tiles::Simd);
                for r in 0..rows {
                    let alone = simd::dot_bf16_bf16(&w[r * cols..(r + 1) * cols], &xb);
                    assert_eq!(
                        y[t * rows + r].to_bits(),
                        alone.to_bits(),
                        "{n} tokens: row {r}, token {t}"
                    );
                }
            }
        }
    }

    #[test]
    fn precision_parses() {
        assert_eq!("exact".parse::<Precision>(), Ok(Precision::Exact));
        assert_eq!("fast".parse::<Precision>(), Ok(Precision::Fast));
        assert!("bf16".parse::<Precision>().is_err());
    }
}
