//! `y = W·x + b` for a batch of token vectors, over the three stored weight formats.

use rayon::prelude::*;

use crate::gemm::{self, Precision};
use crate::simd::{self, Isa};
use crate::{bf16, moe, mxfp4};

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

    /// Whether rows are read by the x86 SIMD kernels, which take activations in pair order
    /// (the NEON ones read storage order).
    fn uses_pairs(&self) -> bool {
        matches!(simd::isa(), Isa::Avx2 | Isa::Avx512)
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
                    simd::dot_bf16_stored(row, x)
                }
            }
            Weight::Mxfp4 { blocks, scales } => {
                let g = self.cols / mxfp4::BLOCK_ELEMS;
                let b = &blocks[r * g * mxfp4::BLOCK_BYTES..(r + 1) * g * mxfp4::BLOCK_BYTES];
                let s = &scales[r * g..(r + 1) * g];
                if pairs {
                    simd::dot_mxfp4_ordered(b, s, x)
                } else {
                    simd::dot_mxfp4_stored(b, s, x)
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
///   blocked [`gemm`], even a lone token (slower for it), or row by row where the GEMM does
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
    linear_many(
        &[Product { m: *m, bias, x, n }],
        &mut [y],
        precision,
        batch_invariant,
        Epilogue::Store,
    );
}

/// Whether the fast precision's bf16 kernels take this product (then its rows have the
/// canonical arithmetic for any number of tokens).
fn canonical_fast(m: &Matrix, precision: Precision) -> bool {
    precision == Precision::Fast
        && gemm::has_bf16_dot()
        && m.cols.is_multiple_of(simd::PAIR_BLOCK)
        && !matches!(m.weight, Weight::Bf16Transposed(_))
}

/// Whether the one-token path ([`linear`] or [`linear_many`] with one token)
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

/// `out[k] = (W·x)[r0 + k]` for one token whose activations are `prepared`.
fn one_token_rows(m: &Matrix, x: &[f32], prepared: &Prepared, r0: usize, out: &mut [f32]) {
    let k = m.cols;
    match (prepared, m.weight) {
        (Prepared::Bf16(xb), Weight::Bf16(w)) => simd::dot_bf16_bf16_band(w, k, r0, xb, 1, out),
        (Prepared::Mxfp4Bf16(xb), Weight::Mxfp4 { blocks, scales }) => {
            simd::dot_mxfp4_bf16_band(blocks, scales, k, r0, xb, 1, out)
        }
        (Prepared::Ordered(xp), _) => m.rows_into(r0, xp, out, true),
        _ => m.rows_into(r0, x, out, false),
    }
}

/// One product of a parallel region ([`linear_many`]): `y_t = W·x_t + bias` for the `n`
/// tokens of `x` (`[n, cols]`).
#[derive(Clone, Copy, Debug)]
pub struct Product<'a> {
    pub m: Matrix<'a>,
    pub bias: Option<&'a [u16]>,
    pub x: &'a [f32],
    pub n: usize,
}

/// What a product's rows become once computed (bias included).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Epilogue {
    /// Stored as they are: the output is `[n, rows]`.
    Store,
    /// Rows come in (gate, up) pairs (an expert's gate/up projection): each pair becomes its
    /// clamped SwiGLU ([`moe::swiglu`]) while still in cache, and the output is
    /// `[n, rows / 2]`.
    SwiGlu { limit: f32 },
}

/// Several products in one parallel region: the routed experts of a decode step, the
/// query/key/value projections, every expert of a prefill step. One fork-join instead of one
/// per product, and the threads balance across all their rows. `ys[i]` receives product `i`
/// (`[n, rows]`, or `[n, rows / 2]` with [`Epilogue::SwiGlu`]). Every product is computed
/// exactly as [`linear_with`] computes it alone, bit for bit.
pub fn linear_many(
    products: &[Product],
    ys: &mut [&mut [f32]],
    precision: Precision,
    batch_invariant: bool,
    epilogue: Epilogue,
) {
    assert_eq!(products.len(), ys.len(), "linear: one output per product");
    for (p, y) in products.iter().zip(ys.iter()) {
        assert_eq!(p.x.len(), p.n * p.m.cols, "linear: input size");
        let out_cols = match epilogue {
            Epilogue::Store => p.m.rows,
            Epilogue::SwiGlu { .. } => {
                assert!(p.m.rows.is_multiple_of(2), "SwiGLU: rows come in pairs");
                p.m.rows / 2
            }
        };
        assert_eq!(y.len(), p.n * out_cols, "linear: output size");
        if let Some(b) = p.bias {
            assert_eq!(b.len(), p.m.rows, "linear: bias size");
        }
    }
    let kernels: Vec<Kernel> = products
        .par_iter()
        .map(|p| Kernel::plan(p, precision, batch_invariant))
        .collect();
    let mut tasks: Vec<(usize, usize, usize)> = Vec::new();
    for (i, (p, kernel)) in products.iter().zip(&kernels).enumerate() {
        if p.n == 0 {
            continue;
        }
        let mut band = kernel.band_rows(&p.m, p.n);
        if matches!(epilogue, Epilogue::SwiGlu { .. }) {
            band = band.next_multiple_of(2);
        }
        for r0 in (0..p.m.rows).step_by(band) {
            tasks.push((i, r0, band.min(p.m.rows - r0)));
        }
    }
    let outs: Vec<BandOutput> = products
        .iter()
        .zip(ys.iter_mut())
        .map(|(p, y)| BandOutput::new(y, p.n))
        .collect();
    tasks.into_par_iter().for_each(|(i, r0, width)| {
        let p = &products[i];
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let Scratch { band, second } = &mut *scratch;
            let band = grow(band, p.n * width);
            kernels[i].band(p, r0, band);
            if let Some(b) = p.bias {
                for row in band.chunks_exact_mut(width) {
                    for (o, &bb) in row.iter_mut().zip(&b[r0..r0 + width]) {
                        *o += bf16::to_f32(bb);
                    }
                }
            }
            match epilogue {
                // SAFETY (both): this task is the only one with rows r0..r0+width of
                // product i, so the only one writing those output columns.
                Epilogue::Store => unsafe { outs[i].put(r0, band) },
                Epilogue::SwiGlu { limit } => {
                    let half = width / 2;
                    let act = grow(second, p.n * half);
                    for (a, g) in act.chunks_exact_mut(half).zip(band.chunks_exact(width)) {
                        moe::swiglu(g, limit, a);
                    }
                    unsafe { outs[i].put(r0 / 2, act) }
                }
            }
        });
    });
}

/// Per-thread buffers for the bands of [`linear_many`]: no allocation (and no page faults
/// on fresh memory) per task.
#[derive(Default)]
struct Scratch {
    band: Vec<f32>,
    second: Vec<f32>,
}

/// `buf`'s first `len` values, growing it if needed (contents are the caller's to overwrite).
fn grow(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// A token-major output `[n, cols]` that the tasks of a region fill concurrently, each its
/// own columns.
struct BandOutput {
    ptr: *mut f32,
    n: usize,
    cols: usize,
}

// SAFETY: a `BandOutput` is only written through `put`, whose callers guarantee that no two
// tasks write the same columns; the buffer is borrowed mutably for the whole region.
unsafe impl Sync for BandOutput {}
unsafe impl Send for BandOutput {}

impl BandOutput {
    fn new(y: &mut [f32], n: usize) -> BandOutput {
        BandOutput {
            ptr: y.as_mut_ptr(),
            n,
            cols: y.len().checked_div(n).unwrap_or(0),
        }
    }

    /// Copies `band` (`[n, width]`) into columns `c0..c0 + width` of every token.
    ///
    /// Safety: no other task writes those columns while this runs.
    unsafe fn put(&self, c0: usize, band: &[f32]) {
        let width = band.len() / self.n;
        assert!(c0 + width <= self.cols, "band outside the output");
        for (t, src) in band.chunks_exact(width).enumerate() {
            // SAFETY: token t's columns c0..c0+width lie inside the `[n, cols]` buffer
            // (asserted), and the caller owns them for this call.
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(t * self.cols + c0), width);
        }
    }
}

/// How one product's rows are computed, chosen once per product with its activations
/// prepared for the kernel.
enum Kernel {
    /// One token through the one-token row kernels.
    OneToken(Prepared),
    /// A batch-invariant product in the fast precision on AVX512-BF16: the canonical band
    /// kernels (the one-token kernels' arithmetic, given more tokens), bf16 activations per
    /// token in their order.
    Canonical(Vec<u16>),
    /// The blocked GEMM.
    Gemm(gemm::Activations),
    /// Row by row with the one-token row kernels, f32 (no AVX2, transposed weights).
    Rows(Prepared),
}

impl Kernel {
    fn plan(p: &Product, precision: Precision, invariant: bool) -> Kernel {
        let (m, n, x) = (&p.m, p.n, p.x);
        if n == 1 && (!invariant || one_token_is_batch_invariant(m, precision)) {
            Kernel::OneToken(prepare(m, x, precision))
        } else if invariant && canonical_fast(m, precision) && small_or_mxfp4(m, n) {
            let k = m.cols;
            let mut xb = vec![0u16; n * k];
            xb.par_chunks_mut(k)
                .zip(x.par_chunks(k))
                .for_each(|(dst, src)| match m.weight {
                    Weight::Mxfp4 { .. } => simd::to_mxfp4_bf16_order(src, dst),
                    _ => gemm::to_bf16_into(src, dst, gemm::Tiles::Simd),
                });
            Kernel::Canonical(xb)
        } else if gemm::applies(m) {
            let arith = gemm::arith(precision, gemm::Tiles::Simd);
            Kernel::Gemm(gemm::Activations::new(m, x, arith, gemm::Tiles::Simd))
        } else if m.uses_pairs() {
            // Permute the activations once for the whole product (see `simd`).
            let mut xp = vec![0f32; x.len()];
            for (src, dst) in x.chunks_exact(m.cols).zip(xp.chunks_exact_mut(m.cols)) {
                match m.weight {
                    Weight::Mxfp4 { .. } => simd::to_mxfp4_order(src, dst),
                    _ => simd::to_pair_order(src, dst),
                }
            }
            Kernel::Rows(Prepared::Ordered(xp))
        } else {
            Kernel::Rows(Prepared::Plain)
        }
    }

    /// Rows per parallel task.
    fn band_rows(&self, m: &Matrix, n: usize) -> usize {
        match self {
            Kernel::Gemm(_) => gemm::band_rows(m),
            _ => rows_per_task(m, n),
        }
    }

    /// `out[t·width + i] = (W·x_t)[r0 + i]` (no bias) for the `width = out.len() / n` rows
    /// from `r0`.
    fn band(&self, p: &Product, r0: usize, out: &mut [f32]) {
        let (m, n, k) = (&p.m, p.n, p.m.cols);
        let width = out.len() / n;
        match self {
            Kernel::OneToken(prepared) => one_token_rows(m, p.x, prepared, r0, out),
            Kernel::Canonical(xb) => match m.weight {
                Weight::Mxfp4 { blocks, scales } => {
                    simd::dot_mxfp4_bf16_band(blocks, scales, k, r0, xb, n, out)
                }
                Weight::Bf16(w) => simd::dot_bf16_bf16_band(w, k, r0, xb, n, out),
                Weight::Bf16Transposed(_) => unreachable!("not a canonical product"),
            },
            Kernel::Gemm(acts) => gemm::band_product(m, acts, n, r0, gemm::Tiles::Simd, out),
            Kernel::Rows(prepared) => {
                let (x, pairs) = match prepared {
                    Prepared::Ordered(xp) => (&xp[..], true),
                    _ => (p.x, false),
                };
                match m.weight {
                    Weight::Bf16Transposed(_) => {
                        for t in 0..n {
                            m.rows_into(
                                r0,
                                &x[t * k..(t + 1) * k],
                                &mut out[t * width..(t + 1) * width],
                                pairs,
                            );
                        }
                    }
                    _ => {
                        // Each row once for every token, while it is in cache.
                        for i in 0..width {
                            for t in 0..n {
                                out[t * width + i] =
                                    m.dot_row(r0 + i, &x[t * k..(t + 1) * k], pairs);
                            }
                        }
                    }
                }
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
    fn products_in_one_region_equal_one_at_a_time() {
        let (rows, cols) = (38, 64);
        let w: Vec<u16> = (0..rows * cols)
            .map(|i| bf(((i * 13 % 29) as f32 - 14.0) * 0.03))
            .collect();
        let blocks: Vec<u8> = (0..rows * cols / 2).map(|i| (i * 91 + 3) as u8).collect();
        let scales: Vec<u8> = (0..rows * cols / 32).map(|i| 121 + (i % 7) as u8).collect();
        let bias: Vec<u16> = (0..rows).map(|r| bf(r as f32 * 0.01)).collect();
        let x: Vec<f32> = (0..9 * cols).map(|i| (i as f32 * 0.7).sin()).collect();
        let mats = [
            Matrix::bf16(&w, rows, cols),
            Matrix::mxfp4(&blocks, &scales, rows, cols),
            Matrix::bf16_transposed(&w, rows, cols),
        ];
        for precision in [Precision::Exact, Precision::Fast] {
            for invariant in [false, true] {
                // Every format with one token and with several.
                let products: Vec<Product> = mats
                    .iter()
                    .flat_map(|m| {
                        [1, 2, 9].map(|n| Product {
                            m: *m,
                            bias: Some(&bias),
                            x: &x[..n * cols],
                            n,
                        })
                    })
                    .collect();
                let mut ys: Vec<Vec<f32>> =
                    products.iter().map(|p| vec![0f32; p.n * rows]).collect();
                let mut refs: Vec<&mut [f32]> = ys.iter_mut().map(|y| &mut y[..]).collect();
                linear_many(&products, &mut refs, precision, invariant, Epilogue::Store);
                for (p, y) in products.iter().zip(&ys) {
                    let mut alone = vec![0f32; p.n * rows];
                    linear_with(&p.m, p.bias, p.x, p.n, &mut alone, precision, invariant);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(y), bits(&alone), "{precision:?}, {} tokens", p.n);
                }
                // The SwiGLU epilogue is SwiGLU applied to the stored product.
                let mut acts: Vec<Vec<f32>> = products
                    .iter()
                    .map(|p| vec![0f32; p.n * rows / 2])
                    .collect();
                let mut refs: Vec<&mut [f32]> = acts.iter_mut().map(|y| &mut y[..]).collect();
                let limit = 0.4;
                linear_many(
                    &products,
                    &mut refs,
                    precision,
                    invariant,
                    Epilogue::SwiGlu { limit },
                );
                for ((p, y), a) in products.iter().zip(&ys).zip(&acts) {
                    let mut want = vec![0f32; p.n * rows / 2];
                    for (w, g) in want.chunks_exact_mut(rows / 2).zip(y.chunks_exact(rows)) {
                        moe::swiglu(g, limit, w);
                    }
                    assert_eq!(a, &want, "{precision:?}, {} tokens, SwiGLU", p.n);
                }
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
