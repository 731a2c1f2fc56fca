//! OCP MXFP4 as gpt-oss stores it (spec §3.3): blocks of 32 values along the input dimension,
//! 16 bytes of E2M1 nibbles (element `2b` in the low nibble of byte `b`, `2b+1` in the high
//! one) and one E8M0 scale byte `s` meaning `2^(s-127)`.

/// E2M1 code → value.
pub const E2M1: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// Bytes per 32-element block: 16 of nibbles (the scale is stored separately).
pub const BLOCK_BYTES: usize = 16;
pub const BLOCK_ELEMS: usize = 32;

/// `2^(s-127)` for an E8M0 byte. 0 is the subnormal 2^-127; 255 (NaN in OCP) is treated like
/// the references do, as the power of two 2^128 = inf.
#[inline(always)]
pub fn scale(s: u8) -> f32 {
    if s == 0 {
        f32::from_bits(0x0040_0000)
    } else {
        f32::from_bits((s as u32) << 23)
    }
}

/// One element's value.
#[inline]
pub fn decode(nibble: u8, scale_byte: u8) -> f32 {
    E2M1[(nibble & 0x0F) as usize] * scale(scale_byte)
}

/// `Σ W[row][i]·x[i]` for one MXFP4 row: `blocks` holds `x.len()/32 · 16` bytes, `scales`
/// `x.len()/32` bytes.
#[inline]
pub fn dot_row(blocks: &[u8], scales: &[u8], x: &[f32]) -> f32 {
    debug_assert_eq!(blocks.len(), scales.len() * BLOCK_BYTES);
    debug_assert_eq!(x.len(), scales.len() * BLOCK_ELEMS);
    let mut total = 0f32;
    for ((block, &s), xs) in blocks
        .chunks_exact(BLOCK_BYTES)
        .zip(scales)
        .zip(x.chunks_exact(BLOCK_ELEMS))
    {
        let mut lo = [0f32; BLOCK_BYTES];
        let mut hi = [0f32; BLOCK_BYTES];
        for b in 0..BLOCK_BYTES {
            lo[b] = E2M1[(block[b] & 0x0F) as usize] * xs[2 * b];
            hi[b] = E2M1[(block[b] >> 4) as usize] * xs[2 * b + 1];
        }
        let mut group = 0f32;
        for b in 0..BLOCK_BYTES {
            group += lo[b] + hi[b];
        }
        total += group * scale(s);
    }
    total
}

/// Decodes one row into f32 (tests and tools; the hot path never materialises rows).
pub fn decode_row(blocks: &[u8], scales: &[u8], out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        let byte = blocks[i / 2];
        let nibble = if i % 2 == 0 { byte & 0x0F } else { byte >> 4 };
        *o = decode(nibble, scales[i / BLOCK_ELEMS]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_worked_example() {
        // Spec §3.3: scale 0x7D, bytes 0x21 0x9F 0x70 → 0.125, 0.25, -1.5, -0.125, 0, 1.5.
        let mut blocks = [0u8; 16];
        blocks[..3].copy_from_slice(&[0x21, 0x9F, 0x70]);
        let mut out = [0f32; 32];
        decode_row(&blocks, &[0x7D], &mut out);
        assert_eq!(&out[..6], &[0.125, 0.25, -1.5, -0.125, 0.0, 1.5]);
    }

    #[test]
    fn scale_is_power_of_two() {
        assert_eq!(scale(127), 1.0);
        assert_eq!(scale(120), 2f32.powi(-7));
        assert_eq!(scale(1), 2f32.powi(-126));
        assert_eq!(scale(0), 2f32.powi(-127));
        assert_eq!(scale(254), 2f32.powi(127));
    }

    #[test]
    fn dot_row_equals_decoded_dot() {
        let blocks: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8).collect();
        let scales = [120u8, 125, 118, 130];
        let x: Vec<f32> = (0..128).map(|i| ((i as f32) * 0.3).sin()).collect();
        let mut w = vec![0f32; 128];
        decode_row(&blocks, &scales, &mut w);
        let expect: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((dot_row(&blocks, &scales, &x) as f64 - expect).abs() < 1e-4);
    }
}
