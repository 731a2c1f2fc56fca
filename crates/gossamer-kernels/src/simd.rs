//! Run-time selected SIMD paths for the two hot dot products (bf16 rows and MXFP4 rows
//! against f32 activations). Each has the scalar twin in [`crate::bf16`] / [`crate::mxfp4`]
//! that the tests compare it with.
//!
//! Both formats pair elements `(2i, 2i+1)` of a 32-element block in one storage unit (a
//! 32-bit word of two bf16, a byte of two nibbles). Rather than shuffling weights in the inner
//! loop, the activations are permuted once per matrix product into "pair order": within each
//! block of 32, the 16 even-indexed values, then the 16 odd-indexed ones
//! ([`to_pair_order`]). The kernels then widen weights with shifts and masks only.
//!
//! The fast precision's kernels (bf16 activations, `vdpbf16ps`, AVX512-BF16) are also the
//! canonical arithmetic of batch-invariant products (`docs/numerics.md`): one arithmetic
//! per weight format, for a lone token ([`dot_mxfp4_bf16`], [`dot_bf16_bf16`]) and for
//! several at once ([`dot_mxfp4_bf16_band`], [`dot_bf16_bf16_band`]: each weight block
//! loaded and decoded once for several tokens, each (row, token) summed on its own with
//! the lone token's operations in the lone token's order), so a token's result has the same
//! bits whatever else shares the product. The tests check that bit for bit, and each
//! kernel against its scalar twin.

use std::sync::OnceLock;

/// The instruction set the kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    /// AVX2 with FMA (most x86-64 laptops and desktops since 2013).
    Avx2,
    /// AVX-512F, with BW (byte widening) and VL (lets the compiler use all 32 registers in
    /// the GEMM tiles).
    Avx512,
    /// NEON (every aarch64 CPU): row kernels over activations in storage order
    /// ([`dot_bf16_stored`], [`dot_mxfp4_stored`]); the x86 kernels' pair orders, GEMM tiles
    /// and bf16 arithmetic do not apply.
    Neon,
}

/// Detected once. `GOSSAMER_ISA=scalar` or `=avx2` caps it (for comparisons); a capped ISA
/// the CPU lacks falls back to what it has.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let best = detect();
        match std::env::var("GOSSAMER_ISA").as_deref() {
            Ok("scalar") => Isa::Scalar,
            Ok("avx2") if best == Isa::Avx512 => Isa::Avx2,
            _ => best,
        }
    })
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2;
        }
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        return Isa::Neon;
    }
    Isa::Scalar
}

/// Block width shared by both formats' pairing.
pub const PAIR_BLOCK: usize = 32;

/// Permutes `x` (length a multiple of 32) into pair order: in each block of 32, the even
/// elements then the odd ones.
pub fn to_pair_order(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    assert_eq!(x.len() % PAIR_BLOCK, 0);
    for (src, dst) in x
        .chunks_exact(PAIR_BLOCK)
        .zip(out.chunks_exact_mut(PAIR_BLOCK))
    {
        for i in 0..PAIR_BLOCK / 2 {
            dst[i] = src[2 * i];
            dst[PAIR_BLOCK / 2 + i] = src[2 * i + 1];
        }
    }
}

/// Blocks per MXFP4 "quad": one 64-byte load of nibbles.
pub const QUAD_BLOCKS: usize = 4;

/// Permutes `x` (length a multiple of 32) into the order the MXFP4 kernel reads: each group of
/// four blocks (128 elements) as 8 rows of 16, row `s` lane `i` holding element
/// `8·(i % 4) + s` of block `i / 4` (the nibble that a right shift by `4s` brings to the bottom
/// of 32-bit lane `i` of the 64 loaded bytes); blocks after the last whole group in pair order.
pub fn to_mxfp4_order(x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len());
    assert_eq!(x.len() % PAIR_BLOCK, 0);
    let quad = QUAD_BLOCKS * PAIR_BLOCK;
    let whole = x.len() / quad * quad;
    for (src, dst) in x[..whole]
        .chunks_exact(quad)
        .zip(out[..whole].chunks_exact_mut(quad))
    {
        for s in 0..8 {
            for i in 0..16 {
                dst[16 * s + i] = src[PAIR_BLOCK * (i / 4) + 8 * (i % 4) + s];
            }
        }
    }
    to_pair_order(&x[whole..], &mut out[whole..]);
}

fn from_mxfp4_order(xq: &[f32]) -> Vec<f32> {
    let quad = QUAD_BLOCKS * PAIR_BLOCK;
    let whole = xq.len() / quad * quad;
    let mut x = vec![0f32; xq.len()];
    for (src, dst) in xq[..whole]
        .chunks_exact(quad)
        .zip(x[..whole].chunks_exact_mut(quad))
    {
        for s in 0..8 {
            for i in 0..16 {
                dst[PAIR_BLOCK * (i / 4) + 8 * (i % 4) + s] = src[16 * s + i];
            }
        }
    }
    x[whole..].copy_from_slice(&from_pair_order(&xq[whole..]));
    x
}

/// `Σ w[i]·x[i]` for a bf16 row, `x` in storage order: the NEON kernel where [`isa`] is
/// `Neon`, the plain code ([`crate::bf16::dot`], its scalar twin) elsewhere.
#[inline]
pub fn dot_bf16_stored(w: &[u16], x: &[f32]) -> f32 {
    assert_eq!(w.len(), x.len());
    #[cfg(target_arch = "aarch64")]
    if isa() == Isa::Neon {
        // SAFETY: `isa()` returns Neon only after detecting neon; equal lengths (asserted).
        return unsafe { neon::dot_bf16(w, x) };
    }
    crate::bf16::dot(w, x)
}

/// `Σ W[i]·x[i]` for one MXFP4 row, `x` in storage order: the NEON kernel where [`isa`] is
/// `Neon`, the plain code ([`crate::mxfp4::dot_row`], its scalar twin) elsewhere.
#[inline]
pub fn dot_mxfp4_stored(blocks: &[u8], scales: &[u8], x: &[f32]) -> f32 {
    assert_eq!(blocks.len(), scales.len() * 16);
    assert_eq!(x.len(), scales.len() * PAIR_BLOCK);
    #[cfg(target_arch = "aarch64")]
    if isa() == Isa::Neon {
        // SAFETY: neon detected; the three lengths agree (asserted).
        return unsafe { neon::dot_mxfp4(blocks, scales, x) };
    }
    crate::mxfp4::dot_row(blocks, scales, x)
}

/// `Σ w[i]·x[i]` for a bf16 row, `xp` in pair order. Caller guarantees `isa() != Scalar`.
#[inline]
pub fn dot_bf16_pairs(w: &[u16], xp: &[f32]) -> f32 {
    assert_eq!(w.len(), xp.len());
    assert_eq!(w.len() % PAIR_BLOCK, 0);
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa()` returned Avx512 only after detecting avx512f and avx512bw; the
        // lengths were checked above.
        Isa::Avx512 => unsafe { x86::dot_bf16_avx512(w, xp) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2 is returned only after detecting avx2 and fma; lengths checked above.
        Isa::Avx2 => unsafe { x86::dot_bf16_avx2(w, xp) },
        _ => crate::bf16::dot(w, &from_pair_order(xp)),
    }
}

/// `Σ W[i]·x[i]` for one MXFP4 row, `xp` in [`to_mxfp4_order`].
#[inline]
pub fn dot_mxfp4_ordered(blocks: &[u8], scales: &[u8], xp: &[f32]) -> f32 {
    assert_eq!(blocks.len(), scales.len() * 16);
    assert_eq!(xp.len(), scales.len() * PAIR_BLOCK);
    match isa() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; the three lengths agree (asserted).
        Isa::Avx512 => unsafe { x86::dot_mxfp4_avx512(blocks, scales, xp) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::dot_mxfp4_avx2(blocks, scales, xp) },
        _ => crate::mxfp4::dot_row(blocks, scales, &from_mxfp4_order(xp)),
    }
}

/// Permutes and rounds `x` (length a multiple of 32) to bf16 in the order
/// [`dot_mxfp4_bf16`] reads: each group of four blocks (128 elements) as four rows of 32
/// words, row `s` word `j` holding element `4j + s` (nibble `s` of 16-bit word `j` of the 64
/// loaded bytes, which is what a word shift by `4s` and a word table lookup give). Blocks
/// after the last whole group keep their order.
pub fn to_mxfp4_bf16_order(x: &[f32], out: &mut [u16]) {
    assert_eq!(x.len(), out.len());
    assert_eq!(x.len() % PAIR_BLOCK, 0);
    let quad = QUAD_BLOCKS * PAIR_BLOCK;
    let whole = x.len() / quad * quad;
    for (src, dst) in x[..whole]
        .chunks_exact(quad)
        .zip(out[..whole].chunks_exact_mut(quad))
    {
        for s in 0..4 {
            for j in 0..32 {
                dst[32 * s + j] = crate::bf16::from_f32_rne(src[4 * j + s]);
            }
        }
    }
    for (o, &v) in out[whole..].iter_mut().zip(&x[whole..]) {
        *o = crate::bf16::from_f32_rne(v);
    }
}

/// `Σ W[i]·x[i]` for one MXFP4 row against bf16 activations in [`to_mxfp4_bf16_order`]: the
/// fast precision's decode product (`vdpbf16ps`, products exact, sums in f32), and the
/// canonical MXFP4 arithmetic of batch-invariant products: it is
/// [`dot_mxfp4_bf16_multi`] for one token. Without AVX512-BF16, the scalar twin.
#[inline]
pub fn dot_mxfp4_bf16(blocks: &[u8], scales: &[u8], xb: &[u16]) -> f32 {
    let mut out = [0f32; 1];
    dot_mxfp4_bf16_multi::<1>(blocks, scales, xb, &mut out);
    out[0]
}

/// One MXFP4 row against `T` tokens: `xs` holds the tokens' bf16 activations one after
/// another, each in [`to_mxfp4_bf16_order`]; `out[t]` receives token `t`'s product. Each
/// 64-byte quad of the row is loaded and decoded once for all `T` tokens, and each token's
/// sum is accumulated on its own with exactly the operations, in exactly the order, that
/// [`dot_mxfp4_bf16`] uses for it alone (per quad: four `vdpbf16ps` chained from zero,
/// then one FMA by the four blocks' scales into the token's total; tail blocks one at a
/// time; the total reduced by the fixed tree of [`hsum16`]). So a token's result is the
/// same bits whatever `T` and whichever slot it has. Without AVX512-BF16, the scalar twin
/// token by token.
#[inline]
pub fn dot_mxfp4_bf16_multi<const T: usize>(
    blocks: &[u8],
    scales: &[u8],
    xs: &[u16],
    out: &mut [f32; T],
) {
    let k = scales.len() * PAIR_BLOCK;
    assert_eq!(blocks.len(), scales.len() * 16);
    assert_eq!(xs.len(), T * k);
    #[cfg(target_arch = "x86_64")]
    if crate::gemm::has_bf16_dot() {
        // SAFETY: avx512f/bw/vl/bf16 detected (has_bf16_dot); blocks and scales agree and
        // xs holds T tokens of 32·scales.len() (asserted).
        unsafe { x86::dot_mxfp4_bf16_multi::<T>(blocks, scales, xs, out) };
        return;
    }
    dot_mxfp4_bf16_multi_scalar(blocks, scales, xs, out);
}

/// Scalar twin of [`dot_mxfp4_bf16_multi`]: each token through [`dot_mxfp4_bf16_scalar`].
pub fn dot_mxfp4_bf16_multi_scalar(blocks: &[u8], scales: &[u8], xs: &[u16], out: &mut [f32]) {
    let k = scales.len() * PAIR_BLOCK;
    assert_eq!(xs.len(), out.len() * k);
    for (o, x) in out.iter_mut().zip(xs.chunks_exact(k.max(1))) {
        *o = dot_mxfp4_bf16_scalar(blocks, scales, x);
    }
}

/// Most tokens per pass of [`dot_mxfp4_bf16_band`] over its rows: four tokens' bf16
/// activations (4 × 2880 × 2 B = 23 KB for gpt-oss) stay in the 32 KB L1 while the rows
/// stream by. More tokens per decode of a row re-read them from L2 for every row, which
/// measured slower on Zen 4 (one core, one row at a time, rows in L2: 62 ns per row and
/// token for one token, 41 for 2, 36 for 3, 34 for 4 and 5, 37 for 6, 52 for 8).
pub const MXFP4_TOKENS: usize = 4;

/// `out[t·width + i] = W[r0 + i]·x_t` for the `width = out.len() / n` rows from `r0` of the
/// MXFP4 matrix (`blocks`, `scales`; `k` columns) and the `n` tokens of `xs` (bf16, each in
/// [`to_mxfp4_bf16_order`], one after another): each (row, token) bit for bit what
/// [`dot_mxfp4_bf16`] gives it alone, whatever `n`, `r0` and `width`. Two rows from the two
/// halves of the band at a time (two sequential streams for the memory, which keeps it
/// busier than one: 20b rows streamed at about 70 ns per row instead of 100 on one Zen 4
/// core),
/// each row decoded once for up to [`MXFP4_TOKENS`] tokens.
pub fn dot_mxfp4_bf16_band(
    blocks: &[u8],
    scales: &[u8],
    k: usize,
    r0: usize,
    xs: &[u16],
    n: usize,
    out: &mut [f32],
) {
    assert!(k.is_multiple_of(PAIR_BLOCK));
    assert_eq!(xs.len(), n * k);
    assert!(
        n > 0 && out.len().is_multiple_of(n),
        "dot_mxfp4_bf16_band: output size"
    );
    let width = out.len() / n;
    let g = k / PAIR_BLOCK;
    assert!(
        scales.len() >= (r0 + width) * g && blocks.len() >= (r0 + width) * g * 16,
        "dot_mxfp4_bf16_band: rows"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::gemm::has_bf16_dot() {
        // SAFETY: avx512f/bw/vl/bf16 detected; rows r0..r0+width lie inside blocks and
        // scales, xs holds n tokens of k (asserted above).
        unsafe { x86::mxfp4_band(blocks, scales, k, r0, xs, n, out) };
        return;
    }
    for t in 0..n {
        for i in 0..width {
            let r = r0 + i;
            out[t * width + i] = dot_mxfp4_bf16_scalar(
                &blocks[r * g * 16..(r + 1) * g * 16],
                &scales[r * g..(r + 1) * g],
                &xs[t * k..(t + 1) * k],
            );
        }
    }
}

/// Low and high bytes of each E2M1 code's bf16 value (the tables of the byte shuffles).
#[cfg(target_arch = "x86_64")]
const E2M1_BF16_LO: [u8; 16] = [
    0x00, 0x00, 0x80, 0xC0, 0x00, 0x40, 0x80, 0xC0, 0x00, 0x00, 0x80, 0xC0, 0x00, 0x40, 0x80, 0xC0,
];
#[cfg(target_arch = "x86_64")]
const E2M1_BF16_HI: [u8; 16] = [
    0x00, 0x3F, 0x3F, 0x3F, 0x40, 0x40, 0x40, 0x40, 0x80, 0xBF, 0xBF, 0xBF, 0xC0, 0xC0, 0xC0, 0xC0,
];

/// `Σ w[i]·x[i]` for a bf16 row against bf16 activations, both in storage order: the fast
/// precision's product for bf16 weights and the canonical bf16 arithmetic of batch-invariant
/// products: one `vdpbf16ps` chain over the 32-element blocks, from zero, reduced by the
/// fixed tree of [`hsum16`] (what each (row, token) of the prefill GEMM's bf16 tiles does,
/// and [`dot_bf16_bf16_band`] for every row). Without AVX512-BF16, the scalar twin.
#[inline]
pub fn dot_bf16_bf16(w: &[u16], xb: &[u16]) -> f32 {
    assert_eq!(w.len(), xb.len());
    assert_eq!(w.len() % PAIR_BLOCK, 0);
    #[cfg(target_arch = "x86_64")]
    if crate::gemm::has_bf16_dot() {
        // SAFETY: avx512f/bw/vl/bf16 detected; equal lengths, a multiple of 32 (asserted).
        return unsafe { x86::bf16_chains::<1, 1>([w.as_ptr()], xb.as_ptr(), w.len(), None)[0][0] };
    }
    dot_bf16_bf16_scalar(w, xb)
}

/// Rows in flight in [`dot_bf16_bf16_band`] for several tokens: four independent chains per
/// token, and each activation load serves four rows.
pub const BF16_ROWS: usize = 4;

/// Rows in flight in [`dot_bf16_bf16_band`] for one token (1, 2 or 4): one, row after
/// row. A lone token is bound by memory, and in the 20b decode on two Zen 4 cores one
/// sequential stream per core ran as fast as the former two-accumulator kernel, where four
/// or two rows in flight (more streams) ran 2 % slower (an A/B of 8 rounds; one core
/// alone prefers four: 24 GB/s against 22).
pub const BF16_ROWS_ONE_TOKEN: usize = 1;

/// Most tokens per pass of [`dot_bf16_bf16_band`] over its rows (4 rows × 6 tokens of
/// accumulators, 4 weight registers and one activation register fit in 32).
pub const BF16_TOKENS: usize = 6;

/// `out[t·width + i] = w[r0 + i]·x_t` for the `width = out.len() / n` rows from `r0` of the
/// row-major bf16 matrix `w` (`k` columns) and the `n` tokens of `xs` (bf16 in storage order,
/// one after another): each (row, token) one `vdpbf16ps` chain, bit for bit what
/// [`dot_bf16_bf16`] gives it alone, whatever `n`, `r0` and `width`. Several tokens: the
/// rows are walked as [`BF16_ROWS`] equal bands side by side, each band sequentially: four
/// chains in flight per token, and four sequential streams for the memory (four *adjacent*
/// rows at once, one 5.6 KB row after the other, streamed from memory at two thirds of the
/// speed on Zen 4), with the next rows prefetched while the first group of tokens goes by.
/// One token: [`BF16_ROWS_ONE_TOKEN`] rows at a time.
pub fn dot_bf16_bf16_band(w: &[u16], k: usize, r0: usize, xs: &[u16], n: usize, out: &mut [f32]) {
    assert!(k.is_multiple_of(PAIR_BLOCK));
    assert_eq!(xs.len(), n * k);
    assert!(
        n > 0 && out.len().is_multiple_of(n),
        "dot_bf16_bf16_band: output size"
    );
    let width = out.len() / n;
    assert!(w.len() >= (r0 + width) * k, "dot_bf16_bf16_band: rows");
    #[cfg(target_arch = "x86_64")]
    if crate::gemm::has_bf16_dot() {
        // SAFETY: avx512f/bw/vl/bf16 detected; every row pointer is at a row inside `w`
        // (asserted above), the token pointers at whole tokens of `xs`, k % 32 == 0.
        unsafe { x86::bf16_band(w, k, r0, xs, n, out) };
        return;
    }
    for t in 0..n {
        for i in 0..width {
            let r = r0 + i;
            out[t * width + i] =
                dot_bf16_bf16_scalar(&w[r * k..(r + 1) * k], &xs[t * k..(t + 1) * k]);
        }
    }
}

/// `n` tokens as consecutive groups of at most `most`, as even as possible (10 by 4: 3, 3,
/// 4), as `(first token, count)`: the passes of the multi-token kernels.
pub fn token_groups(n: usize, most: usize) -> impl Iterator<Item = (usize, usize)> {
    let groups = n.div_ceil(most).max(1);
    (0..groups).map(move |i| {
        let start = i * n / groups;
        (start, (i + 1) * n / groups - start)
    })
}

/// The fixed reduction of 16 lanes every canonical kernel ends with: lanes `i` and `i + 8`,
/// then `i` and `i + 4`, then `i` and `i + 2`, then the last two (the SIMD form is
/// `x86::hsum`).
pub fn hsum16(v: &[f32; 16]) -> f32 {
    let s8: [f32; 8] = std::array::from_fn(|i| v[i] + v[i + 8]);
    let s4: [f32; 4] = std::array::from_fn(|i| s8[i] + s8[i + 4]);
    let s2: [f32; 2] = std::array::from_fn(|i| s4[i] + s4[i + 2]);
    s2[0] + s2[1]
}

/// Scalar twin of [`dot_bf16_bf16`]: pairs of products summed in 16 lanes, one chain.
pub fn dot_bf16_bf16_scalar(w: &[u16], xb: &[u16]) -> f32 {
    let mut acc = [0f32; 16];
    for (wc, xc) in w.chunks_exact(32).zip(xb.chunks_exact(32)) {
        for l in 0..16 {
            acc[l] += crate::bf16::to_f32(wc[2 * l]) * crate::bf16::to_f32(xc[2 * l])
                + crate::bf16::to_f32(wc[2 * l + 1]) * crate::bf16::to_f32(xc[2 * l + 1]);
        }
    }
    hsum16(&acc)
}

/// Scalar twin of [`dot_mxfp4_bf16`], same activation order.
pub fn dot_mxfp4_bf16_scalar(blocks: &[u8], scales: &[u8], xb: &[u16]) -> f32 {
    let x = |i: usize| crate::bf16::to_f32(xb[i]);
    let e2m1 = |nibble: u8| crate::mxfp4::E2M1[nibble as usize];
    let quads = scales.len() / QUAD_BLOCKS;
    let mut total = 0f32;
    for q in 0..quads {
        let xq = 128 * q;
        for block in 0..4 {
            let g = 4 * q + block;
            let mut sum = 0f32;
            for e in 32 * block..32 * block + 32 {
                // Element e of the group: nibble e % 2 of byte e / 2; read at 32·(e % 4) + e / 4.
                let byte = blocks[64 * q + e / 2];
                let nibble = if e % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                sum += e2m1(nibble) * x(xq + 32 * (e % 4) + e / 4);
            }
            total += sum * crate::mxfp4::scale(scales[g]);
        }
    }
    for g in quads * QUAD_BLOCKS..scales.len() {
        let b = &blocks[16 * g..16 * g + 16];
        let mut sum = 0f32;
        for (k, &byte) in b.iter().enumerate() {
            sum += e2m1(byte & 0x0F) * x(32 * g + 2 * k) + e2m1(byte >> 4) * x(32 * g + 2 * k + 1);
        }
        total += sum * crate::mxfp4::scale(scales[g]);
    }
    total
}

fn from_pair_order(xp: &[f32]) -> Vec<f32> {
    let mut x = vec![0f32; xp.len()];
    for (src, dst) in xp
        .chunks_exact(PAIR_BLOCK)
        .zip(x.chunks_exact_mut(PAIR_BLOCK))
    {
        for i in 0..PAIR_BLOCK / 2 {
            dst[2 * i] = src[i];
            dst[2 * i + 1] = src[PAIR_BLOCK / 2 + i];
        }
    }
    x
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// 32 bf16 weights per step: one 64-byte load holds 16 words of (even, odd) pairs; the
    /// even value is the word shifted left 16, the odd one the word's high half.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn dot_bf16_avx512(w: &[u16], xp: &[f32]) -> f32 {
        let n = w.len() / 32;
        let (wp, xq) = (w.as_ptr(), xp.as_ptr());
        let hi_mask = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        for b in 0..n {
            // SAFETY (for the loads below): block b covers w[32b..32b+32] and
            // xp[32b..32b+32], inside the slices since n = len / 32.
            let words = _mm512_loadu_si512(wp.add(32 * b).cast());
            let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(words));
            let odd = _mm512_castsi512_ps(_mm512_and_si512(words, hi_mask));
            acc0 = _mm512_fmadd_ps(even, _mm512_loadu_ps(xq.add(32 * b)), acc0);
            acc1 = _mm512_fmadd_ps(odd, _mm512_loadu_ps(xq.add(32 * b + 16)), acc1);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    /// One 32-element block: the 16 bytes widen to 16 lanes, the low and high nibbles index
    /// the E2M1 table held in a register (`vpermps`), and the block's products are added into
    /// `acc` scaled by the block's power of two.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn mxfp4_block(
        lut: __m512,
        bytes: *const u8,
        x: *const f32,
        s: u8,
        acc: __m512,
    ) -> __m512 {
        let low4 = _mm512_set1_epi32(0x0F);
        let wide = _mm512_cvtepu8_epi32(_mm_loadu_si128(bytes.cast()));
        let lo = _mm512_permutexvar_ps(_mm512_and_si512(wide, low4), lut);
        let hi = _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(wide), lut);
        let sum = _mm512_fmadd_ps(
            lo,
            _mm512_loadu_ps(x),
            _mm512_mul_ps(hi, _mm512_loadu_ps(x.add(16))),
        );
        _mm512_fmadd_ps(sum, _mm512_set1_ps(crate::mxfp4::scale(s)), acc)
    }

    /// The scales of a group of four blocks as powers of two, block `L`'s in lanes
    /// `4L..4L+4` (its 128-bit lane). A scale byte of 0 gives 0 rather than 2^-127; the
    /// difference is below any f32 sum it joins.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn group_scales(four: &[u8]) -> __m512 {
        let s4 = u32::from_le_bytes(four.try_into().expect("4 scale bytes"));
        let shift = _mm512_setr_epi32(0, 0, 0, 0, 8, 8, 8, 8, 16, 16, 16, 16, 24, 24, 24, 24);
        let exps = _mm512_and_si512(
            _mm512_srlv_epi32(_mm512_set1_epi32(s4 as i32), shift),
            _mm512_set1_epi32(0xFF),
        );
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(exps))
    }

    /// Four blocks per 64-byte load: 32-bit lane `i` holds 8 nibbles of block `i / 4`;
    /// shifting the whole register right by `4s` puts nibble `s` of every lane at the bottom,
    /// where `vpermps` reads its 4-bit index, so no widening is needed. The per-lane block
    /// scales come from one 32-bit load of four scale bytes. (A scale byte of 0 is taken as
    /// 0 rather than 2^-127; the difference is below any f32 sum it joins.)
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn dot_mxfp4_avx512(blocks: &[u8], scales: &[u8], xp: &[f32]) -> f32 {
        let lut = _mm512_loadu_ps(crate::mxfp4::E2M1.as_ptr());
        let (bp, xq) = (blocks.as_ptr(), xp.as_ptr());
        let quads = scales.len() / super::QUAD_BLOCKS;
        let mut total = _mm512_setzero_ps();
        let mut tail = _mm512_setzero_ps();
        for q in 0..quads {
            // SAFETY (loads in this loop): quad q is blocks[64q..64q+64], scales[4q..4q+4]
            // and xp[128q..128q+128], inside the slices since q < scales.len() / 4.
            // Past the end of the slice is harmless: a prefetch never faults.
            _mm_prefetch::<_MM_HINT_T0>(bp.wrapping_add(64 * q + PREFETCH_AHEAD).cast());
            let w = _mm512_loadu_si512(bp.add(64 * q).cast());
            let x = xq.add(128 * q);
            let scale = group_scales(&scales[4 * q..4 * q + 4]);
            let v0 = _mm512_permutexvar_ps(w, lut);
            let v1 = _mm512_permutexvar_ps(_mm512_srli_epi32::<4>(w), lut);
            let v2 = _mm512_permutexvar_ps(_mm512_srli_epi32::<8>(w), lut);
            let v3 = _mm512_permutexvar_ps(_mm512_srli_epi32::<12>(w), lut);
            let v4 = _mm512_permutexvar_ps(_mm512_srli_epi32::<16>(w), lut);
            let v5 = _mm512_permutexvar_ps(_mm512_srli_epi32::<20>(w), lut);
            let v6 = _mm512_permutexvar_ps(_mm512_srli_epi32::<24>(w), lut);
            let v7 = _mm512_permutexvar_ps(_mm512_srli_epi32::<28>(w), lut);
            let mut a = _mm512_mul_ps(v0, _mm512_loadu_ps(x));
            let mut b = _mm512_mul_ps(v1, _mm512_loadu_ps(x.add(16)));
            a = _mm512_fmadd_ps(v2, _mm512_loadu_ps(x.add(32)), a);
            b = _mm512_fmadd_ps(v3, _mm512_loadu_ps(x.add(48)), b);
            a = _mm512_fmadd_ps(v4, _mm512_loadu_ps(x.add(64)), a);
            b = _mm512_fmadd_ps(v5, _mm512_loadu_ps(x.add(80)), b);
            a = _mm512_fmadd_ps(v6, _mm512_loadu_ps(x.add(96)), a);
            b = _mm512_fmadd_ps(v7, _mm512_loadu_ps(x.add(112)), b);
            total = _mm512_fmadd_ps(_mm512_add_ps(a, b), scale, total);
        }
        let first_tail = quads * super::QUAD_BLOCKS;
        for (g, &s) in scales.iter().enumerate().skip(first_tail) {
            // SAFETY: block g is blocks[16g..16g+16] and xp[32g..32g+32] (pair order).
            tail = mxfp4_block(lut, bp.add(16 * g), xq.add(32 * g), s, tail);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(total, tail))
    }

    /// How far ahead of the 64-byte MXFP4 load the next one is prefetched. The MXFP4 decode
    /// is heavy enough that the hardware prefetcher alone falls behind: streaming 20b expert
    /// rows ran at 21 GB/s on two cores without it and 31–33 with 256 bytes (4 lines) ahead;
    /// 512–2048 were measured no better. bf16 rows gained nothing and have none.
    const PREFETCH_AHEAD: usize = 256;

    /// The fixed reduction tree of [`super::hsum16`]: lanes `i` and `i + 8`, then `i` and
    /// `i + 4`, then `i` and `i + 2`, then the last two. Written out rather than left to
    /// `_mm512_reduce_add_ps`, so that every kernel whose results must agree bit for bit
    /// provably sums its lanes the same way.
    ///
    /// Safety: the CPU has avx512f.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn hsum(v: __m512) -> f32 {
        let lo = _mm512_castps512_ps256(v);
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        let s8 = _mm256_add_ps(lo, hi);
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2));
        _mm_cvtss_f32(s1)
    }

    /// [`hsum`] of every accumulator of an `R`-row, `T`-token tile: the row kernels' last step.
    ///
    /// Safety: the CPU has avx512f.
    #[allow(clippy::needless_range_loop)] // out[r][t] by index reads clearest here
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn hsum_tile<const R: usize, const T: usize>(acc: &[[__m512; T]; R]) -> [[f32; T]; R] {
        let mut out = [[0f32; T]; R];
        for r in 0..R {
            for t in 0..T {
                out[r][t] = hsum(acc[r][t]);
            }
        }
        out
    }

    /// The 16 E2M1 values as bf16 words, twice (`vpermw` reads 5 index bits; the bit above
    /// the nibble then does not matter).
    ///
    /// Safety: the CPU has avx512f.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn e2m1_bf16_table() -> __m512i {
        let mut table = [0u16; 32];
        for (i, t) in table.iter_mut().enumerate() {
            *t = (super::E2M1_BF16_HI[i % 16] as u16) << 8 | super::E2M1_BF16_LO[i % 16] as u16;
        }
        // SAFETY: 64 bytes read from a 64-byte array.
        _mm512_loadu_si512(table.as_ptr().cast())
    }

    /// One MXFP4 row against `T` tokens (see [`super::dot_mxfp4_bf16_multi`]): the rows
    /// kernel for one row.
    ///
    /// Safety: the CPU has avx512f/bw/vl/bf16; `blocks.len() == 16·scales.len()` and
    /// `xs.len() == T·32·scales.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn dot_mxfp4_bf16_multi<const T: usize>(
        blocks: &[u8],
        scales: &[u8],
        xs: &[u16],
        out: &mut [f32; T],
    ) {
        let r = mxfp4_rows::<1, T>(
            [blocks.as_ptr()],
            [scales.as_ptr()],
            scales.len(),
            xs.as_ptr(),
        );
        *out = r[0];
    }

    /// `R` MXFP4 rows of `groups` blocks (`blocks[r]`: `16·groups` bytes, `scales[r]`:
    /// `groups`) against `T` tokens (`xs`: `T·32·groups` bf16, each token in
    /// [`super::to_mxfp4_bf16_order`]). Four blocks per 64-byte load: shifting the 16-bit
    /// words by 0, 4, 8 and 12 brings each of their four nibbles to the bottom, where
    /// `vpermw` looks its bf16 value up in the table; `vdpbf16ps` then multiplies 32 pairs
    /// per instruction. Words 8L..8L+8 of every register come from block L, so the four
    /// blocks' scales apply per 128-bit lane, once per group. Each row's four decoded
    /// registers serve every token, each activation load every row; every (row, token)
    /// keeps its own total, computed with exactly the operations of the one-row one-token
    /// case: per quad four `vdpbf16ps` chained from zero, then one FMA by the group's
    /// scales into the total; tail blocks one at a time; [`hsum`] at the end.
    ///
    /// Safety: the CPU has avx512f/bw/vl/bf16; the pointers cover the sizes above.
    #[allow(clippy::needless_range_loop)] // part[r][t] by index reads clearest here
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn mxfp4_rows<const R: usize, const T: usize>(
        blocks: [*const u8; R],
        scales: [*const u8; R],
        groups: usize,
        xs: *const u16,
    ) -> [[f32; T]; R] {
        let table = e2m1_bf16_table();
        let k = groups * 32;
        let load_bh =
            |p: *const u16| std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast()));
        let as_bh = |v: __m512i| std::mem::transmute::<__m512i, __m512bh>(v);
        let quads = groups / super::QUAD_BLOCKS;
        let mut total = [[_mm512_setzero_ps(); T]; R];
        for q in 0..quads {
            // SAFETY (loads in this loop): quad q is blocks[r][64q..64q+64],
            // scales[r][4q..4q+4] and, for token t, xs[tk+128q..tk+128q+128], inside the
            // buffers since q < groups / 4 and t < T. The transmutes reinterpret 64 bytes of
            // bf16 bits as the bf16 vector type (same size).
            let w: [__m512i; R] = std::array::from_fn(|r| {
                // Past the end of the buffer is harmless: a prefetch never faults.
                _mm_prefetch::<_MM_HINT_T0>(blocks[r].wrapping_add(64 * q + PREFETCH_AHEAD).cast());
                _mm512_loadu_si512(blocks[r].add(64 * q).cast())
            });
            let mut part = [[_mm512_setzero_ps(); T]; R];
            for s in 0..4 {
                let shift = _mm512_set1_epi64(4 * s as i64);
                let v: [__m512bh; R] = std::array::from_fn(|r| {
                    as_bh(_mm512_permutexvar_epi16(
                        _mm512_srl_epi16(w[r], _mm512_castsi512_si128(shift)),
                        table,
                    ))
                });
                for t in 0..T {
                    let x = load_bh(xs.add(t * k + 128 * q + 32 * s));
                    for r in 0..R {
                        part[r][t] = _mm512_dpbf16_ps(part[r][t], v[r], x);
                    }
                }
            }
            for r in 0..R {
                let four = std::slice::from_raw_parts(scales[r].add(4 * q), 4);
                let scale = group_scales(four);
                for t in 0..T {
                    total[r][t] = _mm512_fmadd_ps(part[r][t], scale, total[r][t]);
                }
            }
        }
        // The last blocks when a row is not a whole number of quads (2880 columns = 22 quads
        // and 2 blocks), in storage order, one block per step: as slow as the scalar twin
        // they used to go through, they took 40 % of a 20b expert row's time.
        for g in quads * super::QUAD_BLOCKS..groups {
            // SAFETY: block g is blocks[r][16g..16g+16], scales[r][g] and, for token t,
            // xs[tk+32g..tk+32g+32], inside the buffers since g < groups.
            let values: [__m512bh; R] = std::array::from_fn(|r| {
                let wide = _mm512_cvtepu8_epi32(_mm_loadu_si128(blocks[r].add(16 * g).cast()));
                // Word 2k holds byte k (vpermw reads its low nibble, the duplicated table
                // makes bit 4 harmless); word 2k+1 holds byte k shifted right by 4.
                let idx = _mm512_or_si512(wide, _mm512_slli_epi32::<12>(wide));
                as_bh(_mm512_permutexvar_epi16(idx, table))
            });
            let scale: [__m512; R] =
                std::array::from_fn(|r| _mm512_set1_ps(crate::mxfp4::scale(*scales[r].add(g))));
            for t in 0..T {
                let x = load_bh(xs.add(t * k + 32 * g));
                for r in 0..R {
                    let part = _mm512_dpbf16_ps(_mm512_setzero_ps(), values[r], x);
                    total[r][t] = _mm512_fmadd_ps(part, scale[r], total[r][t]);
                }
            }
        }
        hsum_tile(&total)
    }

    /// [`super::dot_mxfp4_bf16_band`]'s loops: token groups outermost (their activations
    /// stay in L1), then rows `i` and `i + width / 2` together, then the odd row left over.
    ///
    /// Safety: the CPU has avx512f/bw/vl/bf16; `blocks` and `scales` hold rows
    /// `r0..r0 + out.len() / n` of `k / 32` blocks; `xs` holds `n` tokens of `k`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
    pub unsafe fn mxfp4_band(
        blocks: &[u8],
        scales: &[u8],
        k: usize,
        r0: usize,
        xs: &[u16],
        n: usize,
        out: &mut [f32],
    ) {
        let g = k / 32;
        let width = out.len() / n;
        let half = width / 2;
        let bp = |i: usize| blocks.as_ptr().add((r0 + i) * g * 16);
        let sp = |i: usize| scales.as_ptr().add((r0 + i) * g);
        for (t, count) in super::token_groups(n, super::MXFP4_TOKENS) {
            let x = xs.as_ptr().add(t * k);
            let mut put = |rows: &[usize], v: &[[f32; super::MXFP4_TOKENS]]| {
                for (&i, vr) in rows.iter().zip(v) {
                    for (c, &y) in vr[..count].iter().enumerate() {
                        out[(t + c) * width + i] = y;
                    }
                }
            };
            macro_rules! go {
                ($r:literal, $rows:expr) => {{
                    let rows: [usize; $r] = $rows;
                    let b = rows.map(|i| bp(i));
                    let s = rows.map(|i| sp(i));
                    let mut v = [[0f32; super::MXFP4_TOKENS]; $r];
                    match count {
                        1 => copy(&mut v, mxfp4_rows::<$r, 1>(b, s, g, x)),
                        2 => copy(&mut v, mxfp4_rows::<$r, 2>(b, s, g, x)),
                        3 => copy(&mut v, mxfp4_rows::<$r, 3>(b, s, g, x)),
                        _ => copy(&mut v, mxfp4_rows::<$r, 4>(b, s, g, x)),
                    }
                    put(&rows, &v);
                }};
            }
            for i in 0..half {
                go!(2, [i, i + half]);
            }
            if width % 2 == 1 {
                go!(1, [width - 1]);
            }
        }
    }

    /// Widens `[[f32; T]; R]` into the first `T` columns of `dst`.
    #[inline]
    fn copy<const R: usize, const T: usize>(
        dst: &mut [[f32; super::MXFP4_TOKENS]; R],
        src: [[f32; T]; R],
    ) {
        for (d, s) in dst.iter_mut().zip(src) {
            d[..T].copy_from_slice(&s);
        }
    }

    /// Rows to prefetch (into L2) while [`bf16_chains`] runs: of every `period` 64-byte
    /// lines, the one numbered `phase`, so that `period` passes over the same rows bring in
    /// the next rows evenly, keeping the memory busy the whole time.
    #[derive(Clone, Copy)]
    pub struct Ahead<const R: usize> {
        pub rows: [*const u16; R],
        pub phase: usize,
        pub period: usize,
    }

    impl<const R: usize> Ahead<R> {
        /// Prefetches element `i`'s line of each row if it is this pass's.
        #[inline(always)]
        fn prefetch(&self, i: usize) {
            if (i / 32) % self.period == self.phase {
                for p in self.rows {
                    // SAFETY: a prefetch never faults, wherever it points.
                    unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(i).cast()) };
                }
            }
        }
    }

    /// `R × T` bf16 dot products of length `k` (a multiple of 32): `w` are `R` rows, `x`
    /// holds `T` tokens of `k` one after another. Each (row, token) is one `vdpbf16ps`
    /// chain over the 32-element blocks, starting from zero, reduced by [`hsum`]: the
    /// canonical bf16 arithmetic, whatever `R` and `T` (the other rows and tokens are only
    /// independent chains interleaved with it).
    ///
    /// Safety: the CPU has avx512f/bw/vl/bf16; every `w[r]` points at `k` readable `u16`,
    /// `x` at `T·k`.
    #[allow(clippy::needless_range_loop)] // acc[r][t] by index reads clearest here
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16,avx512vl,avx512bw")]
    pub unsafe fn bf16_chains<const R: usize, const T: usize>(
        w: [*const u16; R],
        x: *const u16,
        k: usize,
        next: Option<Ahead<R>>,
    ) -> [[f32; T]; R] {
        // SAFETY (loads): i + 32 <= k. The transmutes reinterpret 64 bytes of bf16 bits as
        // the bf16 vector type, the same size and layout.
        let load =
            |p: *const u16| std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast()));
        // The first step from a fresh zero per accumulator: accumulators zeroed by VEX
        // `vxorps` before the loop get pinned to zmm0–15 by LLVM, which then spills some.
        if let Some(ahead) = next {
            ahead.prefetch(0);
        }
        let wv: [__m512bh; R] = std::array::from_fn(|r| load(w[r]));
        let mut acc: [[__m512; T]; R] = std::array::from_fn(|r| {
            std::array::from_fn(|t| {
                _mm512_dpbf16_ps(_mm512_setzero_ps(), wv[r], load(x.add(t * k)))
            })
        });
        let mut i = 32;
        while i < k {
            if let Some(ahead) = next {
                ahead.prefetch(i);
            }
            let wv: [__m512bh; R] = std::array::from_fn(|r| load(w[r].add(i)));
            for t in 0..T {
                let xv = load(x.add(t * k + i));
                for r in 0..R {
                    acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
                }
            }
            i += 32;
        }
        hsum_tile(&acc)
    }

    /// [`super::dot_bf16_bf16_band`]'s loops: `R` rows `width / R` apart (the heads of `R`
    /// equal bands) at a time, then the rows left over one at a time; tokens in groups of up
    /// to [`super::BF16_TOKENS`]. `R` is [`super::BF16_ROWS`], or
    /// [`super::BF16_ROWS_ONE_TOKEN`] for one token.
    ///
    /// Safety: the CPU has avx512f/bw/vl/bf16; `w` holds rows `r0..r0 + out.len() / n` of
    /// `k` (a multiple of 32) elements; `xs` holds `n` tokens of `k`.
    #[target_feature(enable = "avx512f,avx512bf16,avx512vl,avx512bw")]
    pub unsafe fn bf16_band(w: &[u16], k: usize, r0: usize, xs: &[u16], n: usize, out: &mut [f32]) {
        let width = out.len() / n;
        let r_count = if n == 1 {
            super::BF16_ROWS_ONE_TOKEN
        } else {
            super::BF16_ROWS
        };
        let stride = width / r_count;
        let row = |i: usize| w.as_ptr().add((r0 + i) * k);
        // `rows` of the band against tokens t..t+count; `next`: the next rows, their share of
        // whose lines this pass prefetches (pass g of G takes every G-th line from the g-th):
        // passes over rows already in cache would otherwise leave the memory idle, and the
        // next rows would arrive at full latency.
        let mut pass =
            |rows: &[usize], t: usize, count: usize, next: Option<(&[usize], usize, usize)>| {
                let x = xs.as_ptr().add(t * k);
                macro_rules! go {
                ($r:literal; $($t:literal)*) => {
                    match count {
                        $($t => {
                            let v = bf16_chains::<$r, $t>(
                                std::array::from_fn(|j| row(rows[j])),
                                x,
                                k,
                                next.map(|(nx, phase, period)| Ahead {
                                    rows: std::array::from_fn(|j| {
                                        w.as_ptr().wrapping_add((r0 + nx[j]) * k)
                                    }),
                                    phase,
                                    period,
                                }),
                            );
                            for (j, vr) in v.iter().enumerate() {
                                for (c, &y) in vr.iter().enumerate() {
                                    out[(t + c) * width + rows[j]] = y;
                                }
                            }
                        })*
                        _ => unreachable!("token groups are 1 to BF16_TOKENS"),
                    }
                };
            }
                match rows.len() {
                    4 => go!(4; 1 2 3 4 5 6),
                    2 => go!(2; 1 2 3 4 5 6),
                    _ => go!(1; 1 2 3 4 5 6),
                }
            };
        let mut rows = [0usize; 4];
        let mut next = [0usize; 4];
        for i in 0..stride {
            for j in 0..r_count {
                rows[j] = i + j * stride;
                next[j] = rows[j] + 1;
            }
            let passes = n.div_ceil(super::BF16_TOKENS);
            for (g, (t, count)) in super::token_groups(n, super::BF16_TOKENS).enumerate() {
                let ahead = (n > 1 && i + 1 < stride).then_some((&next[..r_count], g, passes));
                pass(&rows[..r_count], t, count, ahead);
            }
        }
        for i in r_count * stride..width {
            for (t, count) in super::token_groups(n, super::BF16_TOKENS) {
                pass(&[i], t, count, None);
            }
        }
    }

    /// AVX2 twin of [`dot_bf16_avx512`]: two 32-byte loads per 32-element block.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_bf16_avx2(w: &[u16], xp: &[f32]) -> f32 {
        let (wp, xq) = (w.as_ptr(), xp.as_ptr());
        let hi_mask = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..w.len() / 32 {
            // SAFETY: block b is w[32b..32b+32] and xp[32b..32b+32], inside the slices.
            let (w0, w1) = (
                _mm256_loadu_si256(wp.add(32 * b).cast()),
                _mm256_loadu_si256(wp.add(32 * b + 16).cast()),
            );
            let x = xq.add(32 * b);
            // Words 0..8 hold pairs 0..8 (x at 0..8 and 16..24), words 8..16 pairs 8..16.
            acc[0] = _mm256_fmadd_ps(
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w0)),
                _mm256_loadu_ps(x),
                acc[0],
            );
            acc[1] = _mm256_fmadd_ps(
                _mm256_castsi256_ps(_mm256_and_si256(w0, hi_mask)),
                _mm256_loadu_ps(x.add(16)),
                acc[1],
            );
            acc[2] = _mm256_fmadd_ps(
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w1)),
                _mm256_loadu_ps(x.add(8)),
                acc[2],
            );
            acc[3] = _mm256_fmadd_ps(
                _mm256_castsi256_ps(_mm256_and_si256(w1, hi_mask)),
                _mm256_loadu_ps(x.add(24)),
                acc[3],
            );
        }
        hsum256(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    /// E2M1 of the 4-bit index in the bottom of each lane: the magnitude from an 8-entry
    /// table (`vpermps` reads 3 bits), the sign bit moved from bit 3 to bit 31.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn e2m1_avx2(lut8: __m256, idx: __m256i) -> __m256 {
        let mag = _mm256_permutevar8x32_ps(lut8, idx);
        let sign = _mm256_slli_epi32::<28>(_mm256_and_si256(idx, _mm256_set1_epi32(8)));
        _mm256_xor_ps(mag, _mm256_castsi256_ps(sign))
    }

    /// AVX2 twin of [`dot_mxfp4_avx512`], same activation order: each 64-byte quad is read
    /// as two 32-byte halves (blocks 0–1 and 2–3).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_mxfp4_avx2(blocks: &[u8], scales: &[u8], xp: &[f32]) -> f32 {
        let lut8 = _mm256_loadu_ps(crate::mxfp4::E2M1.as_ptr());
        let (bp, xq) = (blocks.as_ptr(), xp.as_ptr());
        let quads = scales.len() / super::QUAD_BLOCKS;
        let mut total = _mm256_setzero_ps();
        for q in 0..quads {
            for half in 0..2 {
                // SAFETY: quad q is blocks[64q..64q+64], scales[4q..4q+4], xp[128q..128q+128].
                let w = _mm256_loadu_si256(bp.add(64 * q + 32 * half).cast());
                let x = xq.add(128 * q + 8 * half);
                let s0 = crate::mxfp4::scale(scales[4 * q + 2 * half]);
                let s1 = crate::mxfp4::scale(scales[4 * q + 2 * half + 1]);
                let scale = _mm256_setr_ps(s0, s0, s0, s0, s1, s1, s1, s1);
                let mut a = _mm256_mul_ps(e2m1_avx2(lut8, w), _mm256_loadu_ps(x));
                let mut b = _mm256_mul_ps(
                    e2m1_avx2(lut8, _mm256_srli_epi32::<4>(w)),
                    _mm256_loadu_ps(x.add(16)),
                );
                a = _mm256_fmadd_ps(
                    e2m1_avx2(lut8, _mm256_srli_epi32::<8>(w)),
                    _mm256_loadu_ps(x.add(32)),
                    a,
                );
                b = _mm256_fmadd_ps(
                    e2m1_avx2(lut8, _mm256_srli_epi32::<12>(w)),
                    _mm256_loadu_ps(x.add(48)),
                    b,
                );
                a = _mm256_fmadd_ps(
                    e2m1_avx2(lut8, _mm256_srli_epi32::<16>(w)),
                    _mm256_loadu_ps(x.add(64)),
                    a,
                );
                b = _mm256_fmadd_ps(
                    e2m1_avx2(lut8, _mm256_srli_epi32::<20>(w)),
                    _mm256_loadu_ps(x.add(80)),
                    b,
                );
                a = _mm256_fmadd_ps(
                    e2m1_avx2(lut8, _mm256_srli_epi32::<24>(w)),
                    _mm256_loadu_ps(x.add(96)),
                    a,
                );
                b = _mm256_fmadd_ps(
                    e2m1_avx2(lut8, _mm256_srli_epi32::<28>(w)),
                    _mm256_loadu_ps(x.add(112)),
                    b,
                );
                total = _mm256_fmadd_ps(_mm256_add_ps(a, b), scale, total);
            }
        }
        let mut rest = hsum256(total);
        for g in quads * super::QUAD_BLOCKS..scales.len() {
            // Tail blocks in pair order: bytes 0..8 pair with x 0..8 / 16..24, bytes 8..16
            // with 8..16 / 24..32.
            let b = &blocks[16 * g..16 * g + 16];
            let x = &xp[32 * g..32 * g + 32];
            let mut sum = 0f32;
            for (k, &byte) in b.iter().enumerate() {
                sum += crate::mxfp4::E2M1[(byte & 0x0F) as usize] * x[k]
                    + crate::mxfp4::E2M1[(byte >> 4) as usize] * x[16 + k];
            }
            rest += sum * crate::mxfp4::scale(scales[g]);
        }
        rest
    }
}

/// The aarch64 row kernels: activations in storage order, f32 arithmetic.
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use std::arch::aarch64::*;

    /// E2M1 values times two (all integers), by code: what `tbl` looks up.
    const E2M1_TWICE: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

    /// `Σ w[i]·x[i]`: 16 elements a step into four accumulators (a bf16 widens to f32 by a
    /// 16-bit left shift), the tail in the plain code.
    ///
    /// Safety: the CPU has neon; `w.len() == x.len()`.
    #[target_feature(enable = "neon")]
    pub unsafe fn dot_bf16(w: &[u16], x: &[f32]) -> f32 {
        let n = w.len() / 16 * 16;
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i < n {
            // SAFETY: i + 16 <= n <= len for both slices.
            let a = vld1q_u16(wp.add(i));
            let b = vld1q_u16(wp.add(i + 8));
            let wf = [
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(a))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(a)),
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(b))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(b)),
            ];
            for (j, (acc, wf)) in acc.iter_mut().zip(wf).enumerate() {
                *acc = vfmaq_f32(*acc, wf, vld1q_f32(xp.add(i + 4 * j)));
            }
            i += 16;
        }
        let total = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
        vaddvq_f32(total) + crate::bf16::dot(&w[n..], &x[n..])
    }

    /// `Σ W[i]·x[i]` for one MXFP4 row: per block, `tbl` looks each code's value (times two)
    /// up, the two nibbles of a byte are zipped back into element order, widened to f32 and
    /// multiplied with the activations in four accumulators; their sum times the block scale
    /// (halved) goes into the total.
    ///
    /// Safety: the CPU has neon; `blocks.len() == 16·scales.len()`, `x.len() ==
    /// 32·scales.len()`.
    #[target_feature(enable = "neon")]
    pub unsafe fn dot_mxfp4(blocks: &[u8], scales: &[u8], x: &[f32]) -> f32 {
        // SAFETY (loads): block g is blocks[16g..16g+16] and x[32g..32g+32].
        let table = vld1q_s8(E2M1_TWICE.as_ptr());
        let low = vdupq_n_u8(0x0F);
        let mut total = vdupq_n_f32(0.0);
        for (g, &s) in scales.iter().enumerate() {
            let bytes = vld1q_u8(blocks.as_ptr().add(16 * g));
            let lo = vqtbl1q_s8(table, vandq_u8(bytes, low));
            let hi = vqtbl1q_s8(table, vshrq_n_u8::<4>(bytes));
            // Byte j holds elements 2j (low nibble) and 2j + 1 (high nibble).
            let values = [vzip1q_s8(lo, hi), vzip2q_s8(lo, hi)];
            let xs = x.as_ptr().add(32 * g);
            let mut acc = [vdupq_n_f32(0.0); 4];
            for (h, v) in values.into_iter().enumerate() {
                let wide = [vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v)];
                for (q, w16) in wide.into_iter().enumerate() {
                    let w32 = [vmovl_s16(vget_low_s16(w16)), vmovl_high_s16(w16)];
                    for (r, w) in w32.into_iter().enumerate() {
                        let k = 16 * h + 8 * q + 4 * r;
                        let a = &mut acc[2 * q + r];
                        *a = vfmaq_f32(*a, vcvtq_f32_s32(w), vld1q_f32(xs.add(k)));
                    }
                }
            }
            let block = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
            total = vfmaq_n_f32(total, block, crate::mxfp4::scale(s) * 0.5);
        }
        vaddvq_f32(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xorshift::{unit, xorshift};
    use proptest::prelude::*;

    fn bf(x: f32) -> u16 {
        half::bf16::from_f32(x).to_bits()
    }

    /// The bound both paths must meet: a few f32 rounding steps of Σ|w·x|.
    fn close(a: f32, b: f32, magnitude: f32) -> bool {
        (a - b).abs() <= 1e-5 * magnitude + 1e-30
    }

    proptest! {
        #[test]
        fn bf16_simd_equals_scalar(blocks in 1usize..200, seed in any::<u64>()) {
            let n = blocks * 32;
            let mut draw = xorshift(seed);
            let mut next = || unit(draw());
            let w: Vec<u16> = (0..n).map(|_| bf(next() * 8.0)).collect();
            let x: Vec<f32> = (0..n).map(|_| next() * 3.0).collect();
            let mut xp = vec![0f32; n];
            to_pair_order(&x, &mut xp);
            let scalar = crate::bf16::dot(&w, &x);
            let simd = dot_bf16_pairs(&w, &xp);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: features detected just above; lengths are multiples of 32.
                let avx2 = unsafe { x86::dot_bf16_avx2(&w, &xp) };
                let mag: f32 = w.iter().zip(&x).map(|(a, b)| (crate::bf16::to_f32(*a) * b).abs()).sum();
                prop_assert!(close(scalar, avx2, mag), "avx2 {scalar} vs {avx2}");
            }
            let mag: f32 = w.iter().zip(&x).map(|(a, b)| (crate::bf16::to_f32(*a) * b).abs()).sum();
            prop_assert!(close(scalar, simd, mag), "{scalar} vs {simd}");
        }

        #[test]
        fn mxfp4_simd_equals_scalar(groups in 1usize..120, seed in any::<u64>(), base in 100u8..150) {
            let mut next = xorshift(seed);
            let blocks: Vec<u8> = (0..groups * 16).map(|_| next() as u8).collect();
            let scales: Vec<u8> = (0..groups).map(|_| base + (next() % 8) as u8).collect();
            let x: Vec<f32> = (0..groups * 32).map(|_| unit(next()) * 4.0).collect();
            let mut xp = vec![0f32; x.len()];
            to_mxfp4_order(&x, &mut xp);
            let scalar = crate::mxfp4::dot_row(&blocks, &scales, &x);
            let simd = dot_mxfp4_ordered(&blocks, &scales, &xp);
            let mut w = vec![0f32; x.len()];
            crate::mxfp4::decode_row(&blocks, &scales, &mut w);
            let mag: f32 = w.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: features detected just above; the three lengths agree.
                let avx2 = unsafe { x86::dot_mxfp4_avx2(&blocks, &scales, &xp) };
                prop_assert!(close(scalar, avx2, mag), "avx2 {scalar} vs {avx2}");
            }
            prop_assert!(close(scalar, simd, mag), "{scalar} vs {simd}");
        }
    }

    proptest! {
        #[test]
        fn mxfp4_bf16_simd_equals_scalar(groups in 1usize..120, seed in any::<u64>(), base in 100u8..150) {
            let mut next = xorshift(seed);
            let blocks: Vec<u8> = (0..groups * 16).map(|_| next() as u8).collect();
            let scales: Vec<u8> = (0..groups).map(|_| base + (next() % 8) as u8).collect();
            let x: Vec<f32> = (0..groups * 32).map(|_| unit(next()) * 4.0).collect();
            let mut xb = vec![0u16; x.len()];
            to_mxfp4_bf16_order(&x, &mut xb);
            // Both against the plain dot product with the activations rounded to bf16.
            let rounded: Vec<f32> = x.iter().map(|&v| crate::bf16::to_f32(crate::bf16::from_f32_rne(v))).collect();
            let reference = crate::mxfp4::dot_row(&blocks, &scales, &rounded);
            let mut w = vec![0f32; x.len()];
            crate::mxfp4::decode_row(&blocks, &scales, &mut w);
            let mag: f32 = w.iter().zip(&rounded).map(|(a, b)| (a * b).abs()).sum();
            let scalar = dot_mxfp4_bf16_scalar(&blocks, &scales, &xb);
            prop_assert!(close(reference, scalar, mag), "scalar {reference} vs {scalar}");
            let simd = dot_mxfp4_bf16(&blocks, &scales, &xb);
            prop_assert!(close(reference, simd, mag), "simd {reference} vs {simd}");
        }
    }

    proptest! {
        #[test]
        fn bf16_bf16_simd_equals_scalar(blocks in 1usize..200, seed in any::<u64>()) {
            let n = blocks * 32;
            let mut draw = xorshift(seed);
            let mut next = || unit(draw());
            let w: Vec<u16> = (0..n).map(|_| bf(next() * 8.0)).collect();
            let xb: Vec<u16> = (0..n).map(|_| bf(next() * 3.0)).collect();
            let reference: f64 = w.iter().zip(&xb)
                .map(|(a, b)| crate::bf16::to_f32(*a) as f64 * crate::bf16::to_f32(*b) as f64).sum();
            let mag: f32 = w.iter().zip(&xb)
                .map(|(a, b)| (crate::bf16::to_f32(*a) * crate::bf16::to_f32(*b)).abs()).sum();
            let scalar = dot_bf16_bf16_scalar(&w, &xb);
            prop_assert!(close(reference as f32, scalar, mag), "scalar {reference} vs {scalar}");
            let simd = dot_bf16_bf16(&w, &xb);
            prop_assert!(close(reference as f32, simd, mag), "simd {reference} vs {simd}");
        }
    }

    /// Random bf16 bits of moderate magnitude (sign, exponent 2^-4..2^3).
    fn random_bf16(next: &mut impl FnMut() -> u64, n: usize) -> Vec<u16> {
        (0..n)
            .map(|_| {
                let v = next();
                (v as u16 & 0x807F) | ((123 + (v >> 16) % 8) as u16) << 7
            })
            .collect()
    }

    /// `dot_mxfp4_bf16_multi::<T>` with T tokens: each token's result bit for bit the
    /// one-token kernel's, and close to the scalar twin.
    fn check_multi<const T: usize>(
        blocks: &[u8],
        scales: &[u8],
        xs: &[u16],
    ) -> Result<(), TestCaseError> {
        let k = scales.len() * PAIR_BLOCK;
        let mut out = [0f32; T];
        dot_mxfp4_bf16_multi::<T>(blocks, scales, &xs[..T * k], &mut out);
        let mut twin = [0f32; T];
        dot_mxfp4_bf16_multi_scalar(blocks, scales, &xs[..T * k], &mut twin);
        let mut w = vec![0f32; k];
        crate::mxfp4::decode_row(blocks, scales, &mut w);
        for t in 0..T {
            let x = &xs[t * k..(t + 1) * k];
            let alone = dot_mxfp4_bf16(blocks, scales, x);
            prop_assert_eq!(out[t].to_bits(), alone.to_bits(), "T = {}, token {}", T, t);
            let mut dense = vec![0f32; k];
            for (i, d) in dense.iter_mut().enumerate() {
                *d = crate::bf16::to_f32(x[i]);
            }
            let xn = from_mxfp4_order(&dense);
            let mag: f32 = w.iter().zip(&xn).map(|(a, b)| (a * b).abs()).sum();
            prop_assert!(
                close(twin[t], out[t], mag),
                "T = {}: twin {} vs {}",
                T,
                twin[t],
                out[t]
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn mxfp4_multi_token_rows_equal_one_token_bit_for_bit(
            groups in 1usize..100,
            seed in any::<u64>(),
            base in 100u8..150,
        ) {
            let mut next = xorshift(seed);
            let blocks: Vec<u8> = (0..groups * 16).map(|_| next() as u8).collect();
            let scales: Vec<u8> = (0..groups).map(|_| base + (next() % 8) as u8).collect();
            let xs = random_bf16(&mut next, 8 * groups * PAIR_BLOCK);
            check_multi::<1>(&blocks, &scales, &xs)?;
            check_multi::<2>(&blocks, &scales, &xs)?;
            check_multi::<3>(&blocks, &scales, &xs)?;
            check_multi::<4>(&blocks, &scales, &xs)?;
            check_multi::<5>(&blocks, &scales, &xs)?;
            check_multi::<6>(&blocks, &scales, &xs)?;
            check_multi::<7>(&blocks, &scales, &xs)?;
            check_multi::<8>(&blocks, &scales, &xs)?;
        }

        #[test]
        fn mxfp4_band_equals_one_row_one_token_bit_for_bit(
            rows in 1usize..12,
            groups in 1usize..30,
            n in 1usize..11,
            first in 0usize..3,
            seed in any::<u64>(),
        ) {
            let k = groups * PAIR_BLOCK;
            let mut next = xorshift(seed);
            let total = first + rows;
            let blocks: Vec<u8> = (0..total * groups * 16).map(|_| next() as u8).collect();
            let scales: Vec<u8> = (0..total * groups).map(|_| 110 + (next() % 20) as u8).collect();
            let xs = random_bf16(&mut next, n * k);
            let mut out = vec![0f32; n * rows];
            dot_mxfp4_bf16_band(&blocks, &scales, k, first, &xs, n, &mut out);
            for t in 0..n {
                for i in 0..rows {
                    let r = first + i;
                    let alone = dot_mxfp4_bf16(
                        &blocks[r * groups * 16..(r + 1) * groups * 16],
                        &scales[r * groups..(r + 1) * groups],
                        &xs[t * k..(t + 1) * k],
                    );
                    prop_assert_eq!(
                        out[t * rows + i].to_bits(),
                        alone.to_bits(),
                        "row {}, token {}", i, t
                    );
                }
            }
        }

        #[test]
        fn bf16_band_equals_one_row_one_token_bit_for_bit(
            rows in 1usize..23,
            blocks in 1usize..100,
            n in 1usize..15,
            first in 0usize..3,
            seed in any::<u64>(),
        ) {
            let k = blocks * PAIR_BLOCK;
            let mut next = xorshift(seed);
            let w = random_bf16(&mut next, (first + rows) * k);
            let xs = random_bf16(&mut next, n * k);
            let mut out = vec![0f32; n * rows];
            dot_bf16_bf16_band(&w, k, first, &xs, n, &mut out);
            for t in 0..n {
                let x = &xs[t * k..(t + 1) * k];
                for i in 0..rows {
                    let row = &w[(first + i) * k..(first + i + 1) * k];
                    let alone = dot_bf16_bf16(row, x);
                    prop_assert_eq!(
                        out[t * rows + i].to_bits(),
                        alone.to_bits(),
                        "row {}, token {}", i, t
                    );
                    let mag: f32 = row.iter().zip(x)
                        .map(|(a, b)| (crate::bf16::to_f32(*a) * crate::bf16::to_f32(*b)).abs())
                        .sum();
                    let twin = dot_bf16_bf16_scalar(row, x);
                    prop_assert!(close(twin, alone, mag), "twin {} vs {}", twin, alone);
                }
            }
        }

        #[cfg(target_arch = "x86_64")]
        #[test]
        fn hsum_is_the_scalar_tree(seed in any::<u64>()) {
            let mut next = xorshift(seed);
            // Magnitudes far apart, so that a different order would round differently.
            let v: [f32; 16] = std::array::from_fn(|i| {
                let m = unit(next());
                m * [1.0f32, 1e-7, 3e3, 1e7][i % 4]
            });
            if crate::gemm::has_bf16_dot() {
                // SAFETY: avx512f detected (has_bf16_dot); 16 floats read from a 16-array.
                let simd = unsafe {
                    x86::hsum(std::arch::x86_64::_mm512_loadu_ps(v.as_ptr()))
                };
                prop_assert_eq!(simd.to_bits(), hsum16(&v).to_bits());
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn e2m1_bf16_tables_hold_the_e2m1_values() {
        for (i, v) in crate::mxfp4::E2M1.iter().enumerate() {
            let bits = (E2M1_BF16_HI[i] as u16) << 8 | E2M1_BF16_LO[i] as u16;
            assert_eq!(crate::bf16::to_f32(bits).to_bits(), v.to_bits(), "code {i}");
        }
    }

    #[test]
    fn pair_order_round_trips() {
        let x: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let mut xp = vec![0f32; 64];
        to_pair_order(&x, &mut xp);
        assert_eq!(&xp[..4], &[0.0, 2.0, 4.0, 6.0]);
        assert_eq!(xp[16], 1.0);
        assert_eq!(from_pair_order(&xp), x);
        // 5 blocks: one quad, one block in pair order.
        let x: Vec<f32> = (0..160).map(|i| i as f32).collect();
        let mut xq = vec![0f32; 160];
        to_mxfp4_order(&x, &mut xq);
        assert_eq!(&xq[..5], &[0.0, 8.0, 16.0, 24.0, 32.0]);
        assert_eq!(xq[16], 1.0);
        assert_eq!(&xq[128..130], &[128.0, 130.0]);
        assert_eq!(from_mxfp4_order(&xq), x);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The storage-order row kernels (NEON on aarch64) against their plain twins, over
        /// odd lengths (bf16 tails) and any scale.
        #[test]
        fn stored_order_kernels_equal_their_scalar_twins(
            blocks in 1usize..12,
            extra in 0usize..32,
            seed in any::<u64>(),
        ) {
            let mut next = xorshift(seed);
            let k = 32 * blocks;
            let x: Vec<f32> = (0..k + extra).map(|_| unit(next()) * 4.0).collect();
            let w: Vec<u16> = (0..k + extra).map(|_| bf(unit(next()) * 2.0)).collect();
            let mag: f32 = w.iter().zip(&x).map(|(&a, b)| (crate::bf16::to_f32(a) * b).abs()).sum();
            let (got, want) = (dot_bf16_stored(&w, &x), crate::bf16::dot(&w, &x));
            prop_assert!(close(got, want, mag), "bf16 {} vs {}", got, want);

            let bytes: Vec<u8> = (0..16 * blocks).map(|_| next() as u8).collect();
            let scales: Vec<u8> = (0..blocks).map(|_| 100 + (next() % 40) as u8).collect();
            let mut dense = vec![0f32; k];
            crate::mxfp4::decode_row(&bytes, &scales, &mut dense);
            let mag: f32 = dense.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
            let (got, want) = (
                dot_mxfp4_stored(&bytes, &scales, &x[..k]),
                crate::mxfp4::dot_row(&bytes, &scales, &x[..k]),
            );
            prop_assert!(close(got, want, mag), "mxfp4 {} vs {}", got, want);
        }
    }

    #[test]
    fn reports_the_isa() {
        // Not an assertion about the machine: just that detection runs and is stable.
        assert_eq!(isa(), isa());
        // Except on aarch64, where NEON is part of the architecture: the NEON kernels must
        // be the ones the tests exercise.
        #[cfg(target_arch = "aarch64")]
        if std::env::var_os("GOSSAMER_ISA").is_none() {
            assert_eq!(isa(), Isa::Neon);
        }
    }
}
