//! Rotary position embedding with YaRN scaling, half-split pairs `(z[i], z[i + d/2])`
//! (spec §2.3 step 4, §1.5).

/// YaRN parameters as in the model config.
#[derive(Clone, Debug)]
pub struct YarnParams {
    pub head_dim: usize,
    pub theta: f64,
    pub factor: f64,
    pub beta_fast: f64,
    pub beta_slow: f64,
    pub original_max_position_embeddings: usize,
    /// Round the correction range (Hugging Face `truncate=true`); gpt-oss uses false.
    pub truncate: bool,
    pub attention_factor: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct Rope {
    pub inv_freq: Vec<f32>,
    /// The YaRN "concentration" m: multiplies both cos and sin.
    pub concentration: f32,
}

impl Rope {
    pub fn new(p: &YarnParams) -> Rope {
        let d = p.head_dim as f64;
        let half = p.head_dim / 2;
        let orig = p.original_max_position_embeddings as f64;
        let correction_dim = |rotations: f64| {
            d * (orig / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * p.theta.ln())
        };
        let (mut low, mut high) = (correction_dim(p.beta_fast), correction_dim(p.beta_slow));
        if p.truncate {
            low = low.floor();
            high = high.ceil();
        }
        low = low.max(0.0);
        high = high.min(d - 1.0);
        if low == high {
            high += 0.001;
        }
        let inv_freq = (0..half)
            .map(|i| {
                let freq = p.theta.powf(2.0 * i as f64 / d);
                let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                (ramp / (p.factor * freq) + (1.0 - ramp) / freq) as f32
            })
            .collect();
        let concentration = p.attention_factor.unwrap_or_else(|| {
            if p.factor <= 1.0 {
                1.0
            } else {
                0.1 * p.factor.ln() + 1.0
            }
        }) as f32;
        Rope {
            inv_freq,
            concentration,
        }
    }

    /// `cos·m` and `sin·m` for one position (f32 angle, like the reference).
    pub fn cos_sin(&self, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        for (i, &f) in self.inv_freq.iter().enumerate() {
            let angle = pos as f32 * f;
            cos[i] = angle.cos() * self.concentration;
            sin[i] = angle.sin() * self.concentration;
        }
    }

    /// Rotates every `head_dim`-wide head vector in `x` (one token) in place.
    pub fn apply(&self, x: &mut [f32], cos: &[f32], sin: &[f32]) {
        let half = self.inv_freq.len();
        for head in x.chunks_exact_mut(2 * half) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt_oss() -> YarnParams {
        YarnParams {
            head_dim: 64,
            theta: 150000.0,
            factor: 32.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            original_max_position_embeddings: 4096,
            truncate: false,
            attention_factor: None,
        }
    }

    #[test]
    fn inv_freq_matches_spec_table() {
        let r = Rope::new(&gpt_oss());
        let spec = [
            (0, 1.000000e+00),
            (1, 6.890443e-01),
            (8, 5.081327e-02),
            (9, 3.170570e-02),
            (12, 6.794959e-03),
            (17, 1.293187e-04),
            (18, 3.830881e-05),
            (31, 3.023511e-07),
        ];
        for (i, v) in spec {
            assert!(
                ((r.inv_freq[i] as f64 - v) / v).abs() < 1e-5,
                "i={i}: {} vs {v}",
                r.inv_freq[i]
            );
        }
        assert!((r.concentration - 1.346_573_6).abs() < 1e-6);
    }

    #[test]
    fn table_samples_match_spec() {
        let r = Rope::new(&gpt_oss());
        let (mut c, mut s) = (vec![0f32; 32], vec![0f32; 32]);
        r.cos_sin(1, &mut c, &mut s);
        assert!((c[0] - 0.7275568).abs() < 1e-6 && (s[0] - 1.1331026).abs() < 1e-6);
        r.cos_sin(4096, &mut c, &mut s);
        assert!((c[0] - 1.0826325).abs() < 1e-4 && (s[0] + 0.8007292).abs() < 1e-4);
        assert!((s[31] - 1.6676371e-3).abs() < 1e-7);
    }

    #[test]
    fn truncate_changes_the_range() {
        let mut p = gpt_oss();
        p.truncate = true;
        // Rounded range low 8, high 18: i = 8 is still pure extrapolation; i = 9 differs.
        let (a, b) = (Rope::new(&gpt_oss()), Rope::new(&p));
        assert_eq!(a.inv_freq[8], b.inv_freq[8]);
        assert_ne!(a.inv_freq[9], b.inv_freq[9]);
    }

    #[test]
    fn rotation_pairs_are_half_split() {
        let r = Rope {
            inv_freq: vec![1.0, 0.5],
            concentration: 1.0,
        };
        let (mut c, mut s) = (vec![0f32; 2], vec![0f32; 2]);
        r.cos_sin(1, &mut c, &mut s);
        let mut x = [1.0f32, 0.0, 0.0, 0.0];
        r.apply(&mut x, &c, &s);
        // (x[0], x[2]) rotate by 1 radian.
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6);
        assert_eq!(x[1], 0.0);
    }
}
