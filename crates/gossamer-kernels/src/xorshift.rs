//! The deterministic random numbers of the kernels' tests and benches: one xorshift64
//! generator, so every test draws its weights the same way. Compiled into the unit tests
//! (`#[cfg(test)]` in `lib.rs`) and included by path into `tests/` and `benches/`.

/// Marsaglia's xorshift64 from `seed` (forced odd, so never the all-zero state).
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// A draw mapped to a float in [-0.5, 0.5) from its top 24 bits.
#[allow(dead_code)] // benches draw their own values
pub fn unit(v: u64) -> f32 {
    (v >> 40) as f32 / (1u32 << 24) as f32 - 0.5
}
