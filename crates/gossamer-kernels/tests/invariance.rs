//! Batch invariance of `linear_with`: for every weight format and both precisions, a token's
//! outputs are the same bits whether it is computed alone or among others, in any position,
//! and (where `one_token_is_batch_invariant` says so) the same bits as the ordinary one-token
//! path. Shapes are gpt-oss's (2880 columns, so 22 whole MXFP4 quads and two tail blocks),
//! with odd row counts so the bands and row groups never divide evenly.

use gossamer_kernels::gemm::Precision;
use gossamer_kernels::linear::{
    linear, linear_many, linear_with, one_token_is_batch_invariant, Epilogue, Matrix, Product,
};

#[path = "../src/xorshift.rs"]
mod xorshift;
use xorshift::{unit, xorshift};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn batch_invariant_products_equal_each_token_alone_bit_for_bit() {
    let cols = 2880;
    let most = 40;
    for (seed, rows) in [(1u64, 37usize), (2, 131)] {
        let mut next = xorshift(seed);
        let blocks: Vec<u8> = (0..rows * cols / 2).map(|_| next() as u8).collect();
        let scales: Vec<u8> = (0..rows * cols / 32)
            .map(|_| 116 + (next() % 10) as u8)
            .collect();
        let w: Vec<u16> = (0..rows * cols)
            .map(|_| half::bf16::from_f32(unit(next()) * 0.2).to_bits())
            .collect();
        let bias: Vec<u16> = (0..rows)
            .map(|_| half::bf16::from_f32(unit(next())).to_bits())
            .collect();
        let x: Vec<f32> = (0..most * cols).map(|_| unit(next()) * 4.0).collect();
        let matrices = [
            ("MXFP4", Matrix::mxfp4(&blocks, &scales, rows, cols)),
            ("bf16", Matrix::bf16(&w, rows, cols)),
            ("bf16 transposed", Matrix::bf16_transposed(&w, rows, cols)),
        ];
        for precision in [Precision::Fast, Precision::Exact] {
            for (name, m) in &matrices {
                let token = |t: usize| &x[t * cols..(t + 1) * cols];
                let alone: Vec<Vec<f32>> = (0..most)
                    .map(|t| {
                        let mut y = vec![0f32; rows];
                        linear_with(m, Some(&bias), token(t), 1, &mut y, precision, true);
                        y
                    })
                    .collect();
                for n in [1, 2, 3, 7, 16, 40] {
                    // The batch at the start and at the end of the tokens: every token in
                    // another slot, next to other tokens.
                    for first in [0, most - n] {
                        let mut y = vec![0f32; n * rows];
                        let xs = &x[first * cols..(first + n) * cols];
                        linear_with(m, Some(&bias), xs, n, &mut y, precision, true);
                        for t in 0..n {
                            assert_eq!(
                                bits(&y[t * rows..(t + 1) * rows]),
                                bits(&alone[first + t]),
                                "{name} {rows} rows, {precision:?}: token {t} of {n} (from {first})"
                            );
                        }
                    }
                }
                if one_token_is_batch_invariant(m, precision) {
                    // Then the ordinary one-token paths give the same bits too.
                    let mut y = vec![0f32; rows];
                    linear(m, Some(&bias), token(5), 1, &mut y, precision);
                    assert_eq!(bits(&y), bits(&alone[5]), "{name} {precision:?}: linear");
                    let products: Vec<Product> = [3, 9]
                        .iter()
                        .map(|&t| Product {
                            m: *m,
                            bias: Some(&bias),
                            x: token(t),
                            n: 1,
                        })
                        .collect();
                    let mut ys = vec![vec![0f32; rows]; 2];
                    let mut refs: Vec<&mut [f32]> = ys.iter_mut().map(|y| &mut y[..]).collect();
                    linear_many(&products, &mut refs, precision, false, Epilogue::Store);
                    assert_eq!(bits(&ys[0]), bits(&alone[3]), "{name} {precision:?}: many");
                    assert_eq!(bits(&ys[1]), bits(&alone[9]), "{name} {precision:?}: many");
                }
            }
        }
    }
}

/// Where the fast kernels apply, the batch-invariant arithmetic *is* the one-token kernels',
/// so a lone token loses nothing to invariance; elsewhere it says so.
#[test]
fn one_token_paths_are_invariant_where_the_fast_kernels_run() {
    let (rows, cols) = (4, 64);
    let w = vec![0u16; rows * cols];
    let blocks = vec![0u8; rows * cols / 2];
    let scales = vec![127u8; rows * cols / 32];
    let fast = gossamer_kernels::gemm::has_bf16_dot();
    for m in [
        Matrix::bf16(&w, rows, cols),
        Matrix::mxfp4(&blocks, &scales, rows, cols),
    ] {
        assert_eq!(one_token_is_batch_invariant(&m, Precision::Fast), fast);
        assert!(!one_token_is_batch_invariant(&m, Precision::Exact));
    }
    let t = Matrix::bf16_transposed(&w, rows, cols);
    assert!(one_token_is_batch_invariant(&t, Precision::Exact));
}
