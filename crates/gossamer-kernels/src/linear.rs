//! `y = W·x + b` for a batch of token vectors, over the three stored weight formats.

use rayon::prelude::*;

use crate::gemm::{self, Precision};
use crate::simd::{self, Isa};
use crate::{bf16, mxfp4};

/// A weight matrix of logical shape `[rows (out), cols (in)]`, as stored.
#[derive(Clone, Copy, Debug)]
pub enum Weight<'a> {
    /// bf16, row-major `[rows, cols]`.
    Bf16(&'a [u16]),
    /// MXFP4: `blocks [rows, cols/32, 16]`, `scales [rows, cols/32]`.
    Mxfp4 { blocks: &'a [u8], scales: &'a [u8] },
    /// bf16 stored transposed, `[cols, rows]` (Hugging Face's dense expert orientation).
    Bf16Transposed(&'a [u16]),
}

#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub weight: Weight<'a>,
    pub rows: usize,
    pub cols: usize,
}

impl<'a> Matrix<'a> {
    pub fn bf16(w: &'a [u16], rows: usize, cols: usize) -> Self {
        assert_eq!(w.len(), rows * cols, "bf16 matrix size");
        Matrix {
            weight: Weight::Bf16(w),
            rows,
            cols,
        }
    }

    pub fn mxfp4(blocks: &'a [u8], scales: &'a [u8], rows: usize, cols: usize) -> Self {
        assert!(
            cols.is_multiple_of(mxfp4::BLOCK_ELEMS),
            "MXFP4 columns must be a multiple of 32"
        );
        assert_eq!(
            scales.len(),
            rows * cols / mxfp4::BLOCK_ELEMS,
            "MXFP4 scales size"
        );
        assert_eq!(
            blocks.len(),
            scales.len() * mxfp4::BLOCK_BYTES,
            "MXFP4 blocks size"
        );
        Matrix {
            weight: Weight::Mxfp4 { blocks, scales },
            rows,
            cols,
        }
    }

    pub fn bf16_transposed(w: &'a [u16], rows: usize, cols: usize) -> Self {
        assert_eq!(w.len(), rows * cols, "bf16 matrix size");
        Matrix {
            weight: Weight::Bf16Transposed(w),
            rows,
            cols,
        }
    }

    /// Whether rows are read by the SIMD kernels, which take activations in pair order.
    fn uses_pairs(&self) -> bool {
        simd::isa() != Isa::Scalar
            && self.cols.is_multiple_of(simd::PAIR_BLOCK)
            && !matches!(self.weight, Weight::Bf16Transposed(_))
    }

    /// `W[r]·x` for one row (row-major formats only); `pairs` is [`Self::uses_pairs`],
    /// decided once per product, and then `x` is in the SIMD kernels' order.
    #[inline]
    fn dot_row(&self, r: usize, x: &[f32], pairs: bool) -> f32 {
        match self.weight {
            Weight::Bf16(w) => {
                let row = &w[r * self.cols..(r + 1) * self.cols];
                if pairs {
                    simd::dot_bf16_pairs(row, x)
                } else {
                    bf16::dot(row, x)
                }
            }
            Weight::Mxfp4 { blocks, scales } => {
                let g = self.cols / mxfp4::BLOCK_ELEMS;
                let b = &blocks[r * g * mxfp4::BLOCK_BYTES..(r + 1) * g * mxfp4::BLOCK_BYTES];
                let s = &scales[r * g..(r + 1) * g];
                if pairs {
                    simd::dot_mxfp4_ordered(b, s, x)
                } else {
                    mxfp4::dot_row(b, s, x)
                }
            }
            Weight::Bf16Transposed(_) => unreachable!("transposed weights are not read by row"),
        }
    }

    /// `out[k] = (W·x)[r0 + k]` for the rows `r0..r0+out.len()`, one token.
    fn rows_into(&self, r0: usize, x: &[f32], out: &mut [f32], pairs: bool) {
        match self.weight {
            Weight::Bf16Transposed(w) => {
                out.fill(0.0);
                let width = out.len();
                for (i, &xi) in x.iter().enumerate() {
                    let start = i * self.rows + r0;
                    bf16::axpy(xi, &w[start..start + width], out);
                }
            }
            _ => {
                for (k, o) in out.iter_mut().enumerate() {
                    *o = self.dot_row(r0 + k, x, pairs);
                }
            }
        }
    }
}

/// Rows per parallel task: enough work to amortise scheduling, enough tasks to balance.
fn rows_per_task(m: &Matrix, n: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_balance = m.rows.div_ceil(threads * 8);
    // Aim for at least ~32k multiply-adds per task.
    let by_work = (32 * 1024 / (m.cols * n).max(1)).max(1);
    by_balance.max(by_work).clamp(1, m.rows.max(1))
}

/// `y[t] = W·x[t] + bias` for `n` tokens: `x` is `[n, cols]`, `y` is `[n, rows]`.
/// Several tokens go through the blocked [`gemm`] where it applies; one token is a row-by-row
/// matrix-vector product. Both in `precision` (see [`Precision`]).
pub fn linear(
    m: &Matrix,
    bias: Option<&[u16]>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    precision: Precision,
) {
    linear_with(m, bias, x, n, y, precision, false);
}

/// [`linear`], optionally batch-invariant: with `batch_invariant` a token's result depends
/// only on its own activations, never on how many other tokens share the product or where
/// it sits among them (what a server uses so that a request's tokens do not depend on the
/// batch). Each weight format then has one arithmetic per precision, used for every `n`:
///
/// - fast precision on AVX512-BF16 (the canonical kernels, see `docs/numerics.md`): a lone
///   token takes the ordinary one-token path, several tokens the same kernels over bands of
///   rows ([`simd::dot_mxfp4_bf16_band`]: each MXFP4 row decoded once for up to
///   [`simd::MXFP4_TOKENS`] tokens; [`simd::dot_bf16_bf16_band`]), and bf16 rows past
///   [`BF16_BAND_TOKENS`] tokens the blocked [`gemm`], whose bf16 tiles have the same
///   chains; each token's sums are exactly the one-token kernels';
/// - otherwise (exact precision, CPUs without AVX512-BF16) every product goes through the
///   blocked [`gemm`], even a lone token (slower for it), or [`banded`] where the GEMM does
///   not apply; transposed weights are per-token column updates either way.
pub fn linear_with(
    m: &Matrix,
    bias: Option<&[u16]>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    precision: Precision,
    batch_invariant: bool,
) {
    assert_eq!(x.len(), n * m.cols, "linear: input size");
    assert_eq!(y.len(), n * m.rows, "linear: output size");
    if let Some(b) = bias {
        assert_eq!(b.len(), m.rows, "linear: bias size");
    }
    if n == 0 {
        return;
    }
    if n == 1 && (!batch_invariant || one_token_is_batch_invariant(m, precision)) {
        one_token(m, bias, x, y, precision);
    } else if batch_invariant && canonical_fast(m, precision) && small_or_mxfp4(m, n) {
        canonical_tokens(m, bias, x, n, y);
    } else if gemm::applies(m) {
        gemm::gemm(m, x, n, y, precision);
        add_bias(y, m.rows, bias);
    } else {
        banded(m, bias, x, n, y);
    }
}

/// Whether the fast precision's bf16 kernels take this product (then its rows have the
/// canonical arithmetic for any number of tokens).
fn canonical_fast(m: &Matrix, precision: Precision) -> bool {
    precision == Precision::Fast
        && gemm::has_bf16_dot()
        && m.cols.is_multiple_of(simd::PAIR_BLOCK)
        && !matches!(m.weight, Weight::Bf16Transposed(_))
}

/// Whether the one-token path ([`linear`] with one token, [`linear_one_token_many`])
/// computes exactly what [`linear_with`] computes for each token of a batch-invariant
/// product: true in the fast precision on AVX512-BF16 (the same kernels) and for transposed
/// weights (the same per-token column updates); false where a batch-invariant lone token
/// must go through the GEMM instead.
pub fn one_token_is_batch_invariant(m: &Matrix, precision: Precision) -> bool {
    matches!(m.weight, Weight::Bf16Transposed(_)) || canonical_fast(m, precision)
}

/// Most tokens a batch-invariant bf16 product runs through [`simd::dot_bf16_bf16_band`]
/// rather than the [`gemm`] (same arithmetic; the band kernel streams its rows faster, the
/// GEMM reuses them better).
const BF16_BAND_TOKENS: usize = 16;

/// Which batch-invariant products [`canonical_tokens`] takes: MXFP4 ones always (their
/// band kernel is their only canonical form), bf16 ones up to [`BF16_BAND_TOKENS`].
fn small_or_mxfp4(m: &Matrix, n: usize) -> bool {
    match m.weight {
        Weight::Mxfp4 { .. } => true,
        Weight::Bf16(_) => n <= BF16_BAND_TOKENS,
        Weight::Bf16Transposed(_) => false,
    }
}

/// A batch-invariant product in the fast precision on AVX512-BF16, `n` tokens: each task
/// owns a band of rows and runs the tokens through it with the canonical band kernels (the
/// one-token path's, given more tokens); every token's result is the one-token path's, bit
/// for bit.
fn canonical_tokens(m: &Matrix, bias: Option<&[u16]>, x: &[f32], n: usize, y: &mut [f32]) {
    let k = m.cols;
    let mut xb = vec![0u16; n * k];
    xb.par_chunks_mut(k)
        .zip(x.par_chunks(k))
        .for_each(|(dst, src)| match m.weight {
            Weight::Mxfp4 { .. } => simd::to_mxfp4_bf16_order(src, dst),
            _ => dst.copy_from_slice(&gemm::to_bf16(src, gemm::Tiles::Simd)),
        });
    let chunk = rows_per_task(m, n);
    let bands: Vec<(usize, Vec<f32>)> = (0..m.rows.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let r0 = c * chunk;
            let width = chunk.min(m.rows - r0);
            let mut band = vec![0f32; n * width];
            match m.weight {
                Weight::Mxfp4 { blocks, scales } => {
                    simd::dot_mxfp4_bf16_band(blocks, scales, k, r0, &xb, n, &mut band)
                }
                Weight::Bf16(w) => simd::dot_bf16_bf16_band(w, k, r0, &xb, n, &mut band),
                Weight::Bf16Transposed(_) => unreachable!("not a canonical product"),
            }
            (r0, band)
        })
        .collect();
    scatter_bands(bands, n, m.rows, y);
    add_bias(y, m.rows, bias);
}

/// Copies row bands (`[n, width]` each, starting at row `r0`) into token-major `y`.
fn scatter_bands(bands: Vec<(usize, Vec<f32>)>, n: usize, rows: usize, y: &mut [f32]) {
    for (r0, band) in bands {
        let width = band.len() / n;
        for (t, src) in band.chunks_exact(width).enumerate() {
            y[t * rows + r0..t * rows + r0 + width].copy_from_slice(src);
        }
    }
}

/// The products [`gemm`] does not take (no AVX2, transposed weights), for any `n`: each task
/// owns a band of rows and runs every token through it with the one-token row kernels, f32.
fn banded(m: &Matrix, bias: Option<&[u16]>, x: &[f32], n: usize, y: &mut [f32]) {
    let chunk = rows_per_task(m, n);
    // Permute the activations once for the whole product (see `simd`).
    let permuted;
    let pairs = m.uses_pairs();
    let x = if pairs {
        let mut xp = vec![0f32; x.len()];
        for (src, dst) in x.chunks_exact(m.cols).zip(xp.chunks_exact_mut(m.cols)) {
            match m.weight {
                Weight::Mxfp4 { .. } => simd::to_mxfp4_order(src, dst),
                _ => simd::to_pair_order(src, dst),
            }
        }
        permuted = xp;
        &permuted[..]
    } else {
        x
    };
    // Several tokens: each task owns a band of rows and runs every token through it while the
    // band's weights are in cache, then the bands are scattered into token-major order.
    let bands: Vec<(usize, Vec<f32>)> = (0..m.rows.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let r0 = c * chunk;
            let width = chunk.min(m.rows - r0);
            let mut band = vec![0f32; n * width];
            match m.weight {
                Weight::Bf16Transposed(_) => {
                    for t in 0..n {
                        m.rows_into(
                            r0,
                            &x[t * m.cols..(t + 1) * m.cols],
                            &mut band[t * width..(t + 1) * width],
                            pairs,
                        );
                    }
                }
                _ => {
                    for k in 0..width {
                        for t in 0..n {
                            band[t * width + k] =
                                m.dot_row(r0 + k, &x[t * m.cols..(t + 1) * m.cols], pairs);
                        }
                    }
                }
            }
            (r0, band)
        })
        .collect();
    scatter_bands(bands, n, m.rows, y);
    add_bias(y, m.rows, bias);
}

/// One token's activations in the order and format its row kernel reads.
enum Prepared {
    /// As given (scalar rows, transposed weights).
    Plain,
    /// f32 in the SIMD kernels' order ([`simd::to_pair_order`] / [`simd::to_mxfp4_order`]).
    Ordered(Vec<f32>),
    /// bf16 in storage order, for bf16 rows in the fast precision.
    Bf16(Vec<u16>),
    /// bf16 in [`simd::to_mxfp4_bf16_order`], for MXFP4 rows in the fast precision.
    Mxfp4Bf16(Vec<u16>),
}

fn prepare(m: &Matrix, x: &[f32], precision: Precision) -> Prepared {
    let fast = precision == Precision::Fast
        && gemm::has_bf16_dot()
        && m.cols.is_multiple_of(simd::PAIR_BLOCK);
    match m.weight {
        Weight::Bf16(_) if fast => Prepared::Bf16(gemm::to_bf16(x, gemm::Tiles::Simd)),
        Weight::Mxfp4 { .. } if fast => {
            let mut xb = vec![0u16; x.len()];
            simd::to_mxfp4_bf16_order(x, &mut xb);
            Prepared::Mxfp4Bf16(xb)
        }
        _ if m.uses_pairs() => {
            let mut xp = vec![0f32; x.len()];
            match m.weight {
                Weight::Mxfp4 { .. } => simd::to_mxfp4_order(x, &mut xp),
                _ => simd::to_pair_order(x, &mut xp),
            }
            Prepared::Ordered(xp)
        }
        _ => Prepared::Plain,
    }
}

/// `out[k] = (W·x)[r0 + k] + bias` for one token whose activations are `prepared`.
fn one_token_rows(
    m: &Matrix,
    bias: Option<&[u16]>,
    x: &[f32],
    prepared: &Prepared,
    r0: usize,
    out: &mut [f32],
) {
    let k = m.cols;
    match (prepared, m.weight) {
        (Prepared::Bf16(xb), Weight::Bf16(w)) => simd::dot_bf16_bf16_band(w, k, r0, xb, 1, out),
        (Prepared::Mxfp4Bf16(xb), Weight::Mxfp4 { blocks, scales }) => {
            simd::dot_mxfp4_bf16_band(blocks, scales, k, r0, xb, 1, out)
        }
        (Prepared::Ordered(xp), _) => m.rows_into(r0, xp, out, true),
        _ => m.rows_into(r0, x, out, false),
    }
    if let Some(b) = bias {
        for (o, &bb) in out.iter_mut().zip(&b[r0..]) {
            *o += bf16::to_f32(bb);
        }
    }
}

/// A one-token product: rows split across the pool, each read once.
fn one_token(m: &Matrix, bias: Option<&[u16]>, x: &[f32], y: &mut [f32], precision: Precision) {
    let prepared = prepare(m, x, precision);
    let chunk = rows_per_task(m, 1);
    y.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(c, out)| one_token_rows(m, bias, x, &prepared, c * chunk, out));
}

/// One token's product with one matrix, for [`linear_one_token_many`].
pub struct OneToken<'a> {
    pub m: Matrix<'a>,
    pub bias: Option<&'a [u16]>,
    /// `[cols]`.
    pub x: &'a [f32],
}

/// Several one-token products (a decode step's routed experts) in one parallel region: one
/// fork-join instead of one per matrix, and the threads balance across all their rows.
/// `ys[i]` receives product `i` (`[rows]`).
pub fn linear_one_token_many(products: &[OneToken], ys: &mut [Vec<f32>], precision: Precision) {
    assert_eq!(products.len(), ys.len(), "one output per product");
    let prepared: Vec<Prepared> = products
        .iter()
        .map(|p| {
            assert_eq!(p.x.len(), p.m.cols, "linear: input size");
            if let Some(b) = p.bias {
                assert_eq!(b.len(), p.m.rows, "linear: bias size");
            }
            prepare(&p.m, p.x, precision)
        })
        .collect();
    let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
    for (i, (p, y)) in products.iter().zip(ys.iter_mut()).enumerate() {
        assert_eq!(y.len(), p.m.rows, "linear: output size");
        let chunk = rows_per_task(&p.m, 1);
        for (c, out) in y.chunks_mut(chunk).enumerate() {
            tasks.push((i, c * chunk, out));
        }
    }
    tasks.into_par_iter().for_each(|(i, r0, out)| {
        let p = &products[i];
        one_token_rows(&p.m, p.bias, p.x, &prepared[i], r0, out);
    });
}

fn add_bias(y: &mut [f32], rows: usize, bias: Option<&[u16]>) {
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(rows) {
            for (o, &bb) in row.iter_mut().zip(b) {
                *o += bf16::to_f32(bb);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bf(x: f32) -> u16 {
        half::bf16::from_f32(x).to_bits()
    }

    /// Plain triple loop over decoded f64 weights: the oracle for every format and batch size.
    fn naive(w: &[f32], rows: usize, cols: usize, bias: &[f32], x: &[f32], n: usize) -> Vec<f32> {
        let mut y = vec![0f32; n * rows];
        for t in 0..n {
            for r in 0..rows {
                let mut s = bias[r] as f64;
                for c in 0..cols {
                    s += w[r * cols + c] as f64 * x[t * cols + c] as f64;
                }
                y[t * rows + r] = s as f32;
            }
        }
        y
    }

    /// Both precisions against the plain product; the fast one with its activations rounded
    /// to bf16 (what it computes on a CPU with AVX512-BF16; elsewhere it is exact, and the
    /// rounding error stays far inside the bound below).
    fn check(m: &Matrix, dense: &[f32], n: usize) {
        let bias: Vec<u16> = (0..m.rows).map(|r| bf((r as f32 * 0.1).sin())).collect();
        let biasf: Vec<f32> = bias.iter().map(|&b| bf16::to_f32(b)).collect();
        let x: Vec<f32> = (0..n * m.cols)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.173)
            .collect();
        for precision in [Precision::Exact, Precision::Fast] {
            let mut y = vec![0f32; n * m.rows];
            linear(m, Some(&bias), &x, n, &mut y, precision);
            // (Transposed dense experts have no bf16 path: they stay f32.)
            let rounds = precision == Precision::Fast
                && gemm::has_bf16_dot()
                && !matches!(m.weight, Weight::Bf16Transposed(_));
            let xr: Vec<f32> = if rounds {
                x.iter()
                    .map(|&v| bf16::to_f32(bf16::from_f32_rne(v)))
                    .collect()
            } else {
                x.clone()
            };
            let expect = naive(dense, m.rows, m.cols, &biasf, &xr, n);
            for (a, b) in y.iter().zip(&expect) {
                assert!(
                    (a - b).abs() < 1e-3 * (1.0 + b.abs()),
                    "{precision:?}, {n} tokens: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn many_one_token_products_equal_one_at_a_time() {
        let (rows, cols) = (37, 64);
        let w: Vec<u16> = (0..rows * cols)
            .map(|i| bf(((i * 13 % 29) as f32 - 14.0) * 0.03))
            .collect();
        let blocks: Vec<u8> = (0..rows * cols / 2).map(|i| (i * 91 + 3) as u8).collect();
        let scales: Vec<u8> = (0..rows * cols / 32).map(|i| 121 + (i % 7) as u8).collect();
        let bias: Vec<u16> = (0..rows).map(|r| bf(r as f32 * 0.01)).collect();
        let xa: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.7).sin()).collect();
        let xb: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.3).cos()).collect();
        let mats = [
            Matrix::bf16(&w, rows, cols),
            Matrix::mxfp4(&blocks, &scales, rows, cols),
            Matrix::bf16_transposed(&w, rows, cols),
        ];
        for precision in [Precision::Exact, Precision::Fast] {
            let products: Vec<OneToken> = mats
                .iter()
                .zip([&xa, &xb, &xa])
                .map(|(m, x)| OneToken {
                    m: *m,
                    bias: Some(&bias),
                    x,
                })
                .collect();
            let mut ys = vec![vec![0f32; rows]; 3];
            linear_one_token_many(&products, &mut ys, precision);
            for (p, y) in products.iter().zip(&ys) {
                let mut alone = vec![0f32; rows];
                linear(&p.m, p.bias, p.x, 1, &mut alone, precision);
                assert_eq!(y, &alone, "{precision:?}");
            }
        }
    }

    #[test]
    fn all_formats_match_naive() {
        let (rows, cols) = (70, 96);
        let dense: Vec<f32> = (0..rows * cols)
            .map(|i| half::bf16::from_f32(((i * 31 % 17) as f32 - 8.0) * 0.05).to_f32())
            .collect();
        let w: Vec<u16> = dense.iter().map(|&v| bf(v)).collect();
        let mut wt = vec![0u16; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                wt[c * rows + r] = w[r * cols + c];
            }
        }
        let blocks: Vec<u8> = (0..rows * cols / 2).map(|i| (i * 77 + 5) as u8).collect();
        let scales: Vec<u8> = (0..rows * cols / 32).map(|i| 120 + (i % 5) as u8).collect();
        let mut dense4 = vec![0f32; rows * cols];
        for r in 0..rows {
            let g = cols / 32;
            mxfp4::decode_row(
                &blocks[r * g * 16..(r + 1) * g * 16],
                &scales[r * g..(r + 1) * g],
                &mut dense4[r * cols..(r + 1) * cols],
            );
        }
        for n in [1, 3, 8] {
            check(&Matrix::bf16(&w, rows, cols), &dense, n);
            check(&Matrix::bf16_transposed(&wt, rows, cols), &dense, n);
            check(&Matrix::mxfp4(&blocks, &scales, rows, cols), &dense4, n);
        }
    }
}
