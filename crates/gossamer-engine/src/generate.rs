//! The plain generation loop: prefill the prompt, then sample one token per step until a stop
//! token or the token budget.

use gossamer_model::{GptOss, KvCache, Logits, ModelError};

use crate::sampler::{Sampler, SamplingParams};

/// `<|return|>` and `<|call|>`: the ends of an assistant's turn (harmony's stop set for
/// assistant actions). `<|end|>` is not among them: it only closes the analysis message.
pub const ASSISTANT_STOP_TOKENS: [u32; 2] = [200002, 200012];

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop_tokens: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token was produced (it is included in the output).
    StopToken,
    /// `max_tokens` reached.
    Length,
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    pub prompt_seconds: f64,
    pub decode_seconds: f64,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::StopToken => "stop",
            StopReason::Length => "length",
        }
    }
}

/// Generates from `prompt` (continuing `cache`), calling `on_token` as each token arrives.
pub fn generate(
    model: &GptOss,
    cache: &mut KvCache,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_token: impl FnMut(u32),
) -> Result<Generation, GenerateError> {
    let mut sampler = Sampler::new(opts.sampling.clone())?;
    let start = std::time::Instant::now();
    let mut tokens = Vec::new();
    if opts.max_tokens == 0 {
        return Ok(Generation {
            tokens,
            stop: StopReason::Length,
            prompt_seconds: 0.0,
            decode_seconds: 0.0,
        });
    }
    let mut logits = model.forward(prompt, cache, Logits::Last)?;
    let prompt_seconds = start.elapsed().as_secs_f64();
    let decode_start = std::time::Instant::now();
    loop {
        let t = sampler.sample(&logits);
        tokens.push(t);
        on_token(t);
        if opts.stop_tokens.contains(&t) {
            return Ok(Generation {
                tokens,
                stop: StopReason::StopToken,
                prompt_seconds,
                decode_seconds: decode_start.elapsed().as_secs_f64(),
            });
        }
        // A full context ends the turn like the token budget does (OpenAI's "length"),
        // keeping what was generated instead of failing the whole request.
        if tokens.len() >= opts.max_tokens || cache.len() >= model.config().max_position_embeddings
        {
            return Ok(Generation {
                tokens,
                stop: StopReason::Length,
                prompt_seconds,
                decode_seconds: decode_start.elapsed().as_secs_f64(),
            });
        }
        logits = model.forward(&[t], cache, Logits::Last)?;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Sampling(#[from] crate::sampler::SamplingError),
}
