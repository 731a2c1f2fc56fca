//! CPU kernels for gpt-oss. They know nothing of layers or requests: slices in, slices out.
//!
//! Activations are f32; weights stay as stored (bf16 bit patterns as `u16`, MXFP4 blocks and
//! scales as bytes) and are decoded inside the loops, never expanded in memory. Every kernel
//! here is the plain scalar form written so the compiler can vectorise it; SIMD paths added
//! later are tested against these (see `tests` in each module).
//!
//! Parallelism: one rayon pool for the whole process ([`threads::init`]); kernels split their
//! output rows across it.

pub mod attention;
pub mod bf16;
pub mod gemm;
pub mod linear;
pub mod moe;
pub mod mxfp4;
pub mod norm;
pub mod rope;
pub mod simd;
pub mod threads;
#[cfg(test)]
mod xorshift;
