//! GEMM throughput on gpt-oss-20b shapes, in GFLOP/s (2 × rows × cols × tokens per product).
//!
//! `cargo bench -p gossamer-kernels --bench gemm [-- THREADS]`
//!
//! Each product is also timed batch-invariant in the fast precision (`linear_with`), which on
//! AVX512-BF16 runs MXFP4 rows through the multi-token row kernels instead of the GEMM.
//!
//! The weights are random but of the real formats and sizes: an expert's gate/up and down
//! projections in MXFP4 with the tokens one expert sees in a 512-token prefill (512 × 4 / 32
//! = 64 on average), and the q projection in bf16 with 512 tokens.

use std::time::Instant;

use gossamer_kernels::gemm::{self, Precision};
use gossamer_kernels::linear::{linear_with, Matrix};

#[path = "../src/xorshift.rs"]
mod xorshift;
use xorshift::{unit, xorshift};

fn main() {
    let threads: Option<usize> = std::env::args().nth(1).and_then(|a| a.parse().ok());
    let threads = gossamer_kernels::threads::init(threads.or(Some(2)), false);
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
    let (h, inter, q) = (2880usize, 2880usize, 4096usize);
    let blocks: Vec<u8> = (0..2 * inter * h / 2).map(|_| next() as u8).collect();
    let scales: Vec<u8> = (0..2 * inter * h / 32)
        .map(|_| 118 + (next() % 8) as u8)
        .collect();
    let bf: Vec<u16> = (0..q * h)
        .map(|_| 0x3C00 | (next() as u16 & 0x80FF))
        .collect();
    let x: Vec<f32> = (0..512 * h).map(|_| unit(next()) * 2.0).collect();

    let cases: Vec<(&str, Matrix, usize)> = vec![
        (
            "expert gate_up  MXFP4 5760x2880",
            Matrix::mxfp4(&blocks, &scales, 2 * inter, h),
            64,
        ),
        (
            "expert down     MXFP4 2880x2880",
            Matrix::mxfp4(
                &blocks[..inter * h / 2],
                &scales[..inter * h / 32],
                h,
                inter,
            ),
            64,
        ),
        (
            "attention q     bf16  4096x2880",
            Matrix::bf16(&bf, q, h),
            512,
        ),
    ];
    println!("threads: {threads}, AVX512-BF16: {}", gemm::has_bf16_dot());
    println!("| product | tokens | precision | GFLOP/s |");
    println!("|---|---|---|---|");
    for (name, m, n) in &cases {
        if !gemm::applies(m) {
            println!("| {name} | {n} | - | (no AVX-512: the GEMM does not apply) |");
            continue;
        }
        for precision in [Precision::Exact, Precision::Fast] {
            let xs = &x[..n * m.cols];
            let mut y = vec![0f32; n * m.rows];
            gemm::gemm(m, xs, *n, &mut y, precision);
            let flops = 2.0 * (m.rows * m.cols * n) as f64;
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = Instant::now();
                gemm::gemm(m, xs, *n, &mut y, precision);
                best = best.min(t.elapsed().as_secs_f64());
            }
            std::hint::black_box(&y);
            println!(
                "| {name} | {n} | {precision:?} | {:.1} |",
                flops / best / 1e9
            );
        }
        // The same product batch-invariant (what a server runs): in the fast precision on
        // AVX512-BF16, the canonical row kernels instead of the GEMM for MXFP4 rows.
        let xs = &x[..n * m.cols];
        let mut y = vec![0f32; n * m.rows];
        let run = |y: &mut [f32]| linear_with(m, None, xs, *n, y, Precision::Fast, true);
        run(&mut y);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            run(&mut y);
            best = best.min(t.elapsed().as_secs_f64());
        }
        std::hint::black_box(&y);
        let flops = 2.0 * (m.rows * m.cols * n) as f64;
        println!(
            "| {name} | {n} | Fast, batch-invariant | {:.1} |",
            flops / best / 1e9
        );
    }
}
