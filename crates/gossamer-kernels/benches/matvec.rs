//! Decode matrix-vector throughput in GB/s of weights read, for bf16 and MXFP4 rows:
//! once with the matrix resident in L2 (the kernel's compute ceiling), once streaming a
//! matrix far larger than the caches (what decoding sees). Then the batch-invariant
//! products of a few tokens (a server's decode step, `linear_with(.., true)`), streamed:
//! GB/s of weights and GMAC/s.
//!
//! `cargo bench -p gossamer-kernels --bench matvec [-- THREADS]`

use std::time::Instant;

use gossamer_kernels::gemm::Precision;
use gossamer_kernels::linear::{linear, linear_with, Matrix};

#[path = "../src/xorshift.rs"]
mod xorshift;
use xorshift::xorshift;

/// Best-of seconds for one pass of batch-invariant `n`-token products over `views`.
fn measure_tokens(views: &[Matrix], n: usize, reps: usize) -> f64 {
    let cols = views[0].cols;
    let x: Vec<f32> = (0..n * cols).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut y = vec![0f32; n * views[0].rows];
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        for m in views {
            linear_with(m, None, &x, n, &mut y, Precision::Fast, true);
        }
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(&y);
    }
    best
}

/// Best-of GB/s for `y = W·x` over `reps` passes, each pass over `views` (disjoint row bands
/// of one big matrix, so streaming passes never hit the cache).
fn measure(views: &[Matrix], bytes_per_view: usize, reps: usize, precision: Precision) -> f64 {
    let cols = views[0].cols;
    let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut y = vec![0f32; views[0].rows];
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        for m in views {
            linear(m, None, &x, 1, &mut y, precision);
        }
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(&y);
    }
    (bytes_per_view * views.len()) as f64 / best / 1e9
}

fn main() {
    let threads: Option<usize> = std::env::args().nth(1).and_then(|a| a.parse().ok());
    let threads = gossamer_kernels::threads::init(threads.or(Some(2)), false);
    let mut next = xorshift(0x2545_F491_4F6C_DD1D);
    let cols = 2880usize;
    // 1 GiB-ish of each format: far beyond any cache.
    let big_rows = 96 * 2880;
    let blocks: Vec<u8> = (0..big_rows * cols / 2).map(|_| next() as u8).collect();
    let scales: Vec<u8> = (0..big_rows * cols / 32)
        .map(|_| 118 + (next() % 8) as u8)
        .collect();
    let bf: Vec<u16> = (0..big_rows * cols / 4)
        .map(|_| 0x3C00 | (next() as u16 & 0x80FF))
        .collect();
    println!(
        "threads: {threads}, ISA: {:?}",
        gossamer_kernels::simd::isa()
    );
    println!("| format | matrix | precision | GB/s |");
    println!("|---|---|---|---|");
    // The ceiling: a read-only stream over 512 MiB with every thread, no arithmetic to speak of.
    println!(
        "| read-only stream | 512 MiB | - | {:.1} |",
        gossamer_kernels::threads::read_bandwidth(512 << 20, 5)
    );

    let band = 2880; // rows per product, like one expert's down projection
    let g = cols / 32;
    let mx = |r0: usize, rows: usize| {
        Matrix::mxfp4(
            &blocks[r0 * g * 16..(r0 + rows) * g * 16],
            &scales[r0 * g..(r0 + rows) * g],
            rows,
            cols,
        )
    };
    let mx_bytes = band * g * 17;
    let hot_rows = 512; // 512 × 1.5 KB: L2-resident
    let mx_views: Vec<Matrix> = (0..big_rows / band).map(|i| mx(i * band, band)).collect();
    let bf_rows = big_rows / 4;
    let bv = |r0: usize, rows: usize| Matrix::bf16(&bf[r0 * cols..(r0 + rows) * cols], rows, cols);
    let hot = 128;
    let bf_views: Vec<Matrix> = (0..bf_rows / band).map(|i| bv(i * band, band)).collect();
    for precision in [Precision::Exact, Precision::Fast] {
        println!(
            "| MXFP4 | {hot_rows}×{cols}, in L2 | {precision:?} | {:.1} |",
            measure(&[mx(0, hot_rows)], hot_rows * g * 17, 2000, precision)
        );
        println!(
            "| MXFP4 | {} × {band}×{cols}, streamed | {precision:?} | {:.1} |",
            mx_views.len(),
            measure(&mx_views, mx_bytes, 5, precision)
        );
        println!(
            "| bf16 | {hot}×{cols}, in L2 | {precision:?} | {:.1} |",
            measure(&[bv(0, hot)], hot * cols * 2, 2000, precision)
        );
        println!(
            "| bf16 | {} × {band}×{cols}, streamed | {precision:?} | {:.1} |",
            bf_views.len(),
            measure(&bf_views, band * cols * 2, 5, precision)
        );
    }
    println!();
    println!("Batch-invariant products of n tokens (fast precision), streamed:");
    println!();
    println!("| format | tokens | GB/s of weights | GMAC/s |");
    println!("|---|---|---|---|");
    for n in [1, 2, 3, 4, 8, 16] {
        let t = measure_tokens(&mx_views, n, 3);
        let macs = (mx_views.len() * band * cols * n) as f64;
        println!(
            "| MXFP4 | {n} | {:.1} | {:.1} |",
            (mx_bytes * mx_views.len()) as f64 / t / 1e9,
            macs / t / 1e9
        );
    }
    for n in [1, 2, 3, 4, 8, 16] {
        let t = measure_tokens(&bf_views, n, 3);
        let macs = (bf_views.len() * band * cols * n) as f64;
        println!(
            "| bf16 | {n} | {:.1} | {:.1} |",
            (band * cols * 2 * bf_views.len()) as f64 / t / 1e9,
            macs / t / 1e9
        );
    }
}
