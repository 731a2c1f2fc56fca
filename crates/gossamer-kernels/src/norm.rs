//! RMSNorm: `y = x / sqrt(mean(x²) + eps) · g`, all in f32 (spec §2.2). The gain is stored
//! directly (no "+1").

use crate::bf16;

/// Normalises each `dim`-wide row of `x` into `y`.
pub fn rms_norm(x: &[f32], gain: &[u16], eps: f32, y: &mut [f32]) {
    let dim = gain.len();
    assert_eq!(x.len(), y.len());
    assert_eq!(x.len() % dim, 0);
    for (xr, yr) in x.chunks_exact(dim).zip(y.chunks_exact_mut(dim)) {
        let mean_sq = xr.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let inv = 1.0 / (mean_sq + eps).sqrt();
        for ((o, &v), &g) in yr.iter_mut().zip(xr).zip(gain) {
            *o = v * inv * bf16::to_f32(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_gain_gives_unit_rms() {
        let g = vec![half::bf16::from_f32(1.0).to_bits(); 4];
        let x = [1.0f32, -2.0, 3.0, -4.0, 0.5, 0.5, 0.5, 0.5];
        let mut y = [0f32; 8];
        rms_norm(&x, &g, 0.0, &mut y);
        for row in y.chunks(4) {
            let rms = (row.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
            assert!((rms - 1.0).abs() < 1e-6);
        }
        assert!((y[0] - 1.0 / 7.5f32.sqrt()).abs() < 1e-6);
    }
}
