//! Temperature / top-k / top-p sampling with a seeded RNG; temperature 0 is greedy.

use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 selects the highest logit (ties: lowest id). OpenAI recommends 1.0 for gpt-oss.
    pub temperature: f32,
    /// Nucleus: keep the smallest set of tokens whose probability reaches `top_p` (1 = off).
    pub top_p: f32,
    /// Keep only the `top_k` most likely tokens (0 = off).
    pub top_k: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SamplingError {
    #[error("temperature must be a finite number ≥ 0, got {0}")]
    Temperature(f32),
    #[error("top_p must be in (0, 1], got {0}")]
    TopP(f32),
}

pub struct Sampler {
    params: SamplingParams,
    rng: Xoshiro256PlusPlus,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Sampler, SamplingError> {
        if !(params.temperature.is_finite() && params.temperature >= 0.0) {
            return Err(SamplingError::Temperature(params.temperature));
        }
        if !(params.top_p > 0.0 && params.top_p <= 1.0) {
            return Err(SamplingError::TopP(params.top_p));
        }
        Ok(Sampler {
            rng: Xoshiro256PlusPlus::seed_from_u64(params.seed),
            params,
        })
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.params.temperature == 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.params.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((l - max) * inv_t).exp()))
            .filter(|&(_, p)| p > 0.0)
            .collect();
        let truncating = self.params.top_k > 0 || self.params.top_p < 1.0;
        if truncating {
            cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            if self.params.top_k > 0 {
                cand.truncate(self.params.top_k);
            }
            if self.params.top_p < 1.0 {
                let total: f32 = cand.iter().map(|c| c.1).sum();
                let mut acc = 0.0;
                let mut keep = cand.len();
                for (i, c) in cand.iter().enumerate() {
                    acc += c.1;
                    if acc >= self.params.top_p * total {
                        keep = i + 1;
                        break;
                    }
                }
                cand.truncate(keep);
            }
        }
        let total: f64 = cand.iter().map(|c| c.1 as f64).sum();
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut acc = 0.0f64;
        for &(id, p) in &cand {
            acc += p as f64;
            if u < acc {
                return id;
            }
        }
        cand.last().map(|c| c.0).unwrap_or_else(|| argmax(logits))
    }
}

/// Index of the highest logit; the lowest index wins a tie.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_with_low_index_ties() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 0.0,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.sample(&[0.0, 3.0, 3.0, 1.0]), 1);
    }

    #[test]
    fn seeded_sampling_repeats_and_follows_probabilities() {
        let logits = [0.0f32, (3.0f32).ln(), f32::NEG_INFINITY];
        let draw = |seed| {
            let mut s = Sampler::new(SamplingParams {
                seed,
                ..Default::default()
            })
            .unwrap();
            (0..4000).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        let ones = a.iter().filter(|&&t| t == 1).count() as f64 / a.len() as f64;
        assert!((ones - 0.75).abs() < 0.03, "{ones}");
        assert!(!a.contains(&2));
    }

    #[test]
    fn top_p_and_top_k_truncate() {
        let logits = [2.0f32, 1.0, 0.0, -1.0];
        let mut s = Sampler::new(SamplingParams {
            top_p: 0.5,
            seed: 1,
            ..Default::default()
        })
        .unwrap();
        assert!((0..200).all(|_| s.sample(&logits) == 0));
        let mut s = Sampler::new(SamplingParams {
            top_k: 2,
            seed: 1,
            ..Default::default()
        })
        .unwrap();
        assert!((0..200).all(|_| s.sample(&logits) < 2));
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(Sampler::new(SamplingParams {
            temperature: -1.0,
            ..Default::default()
        })
        .is_err());
        assert!(Sampler::new(SamplingParams {
            temperature: f32::NAN,
            ..Default::default()
        })
        .is_err());
        assert!(Sampler::new(SamplingParams {
            top_p: 0.0,
            ..Default::default()
        })
        .is_err());
    }
}
