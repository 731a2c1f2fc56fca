//! The plain generation loop: prefill the prompt, then sample one token per step until a stop
//! token, the token budget, a full context or cancellation.
//!
//! Afterwards the cache holds the prompt and every generated token but the last (the last one
//! was sampled, never fed back) — except after a cancellation during the prompt, when it holds
//! a prefix of the prompt and `tokens` is empty.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    /// Set from another thread (a Ctrl-C handler, a disconnected client) to stop early.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Prompt tokens per forward call: bounds activation memory for long prompts and lets a
/// cancellation land between chunks.
const PREFILL_CHUNK: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token was produced (it is included in the output).
    StopToken,
    /// `max_tokens` reached, or the context is full.
    Length,
    /// `cancel` was set.
    Cancelled,
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
            StopReason::Cancelled => "cancelled",
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
    let cancelled = || {
        opts.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };
    let mut logits = Vec::new();
    for chunk in prompt.chunks(PREFILL_CHUNK) {
        if cancelled() {
            return Ok(Generation {
                tokens,
                stop: StopReason::Cancelled,
                prompt_seconds: start.elapsed().as_secs_f64(),
                decode_seconds: 0.0,
            });
        }
        logits = model.forward(chunk, cache, Logits::Last)?;
    }
    let prompt_seconds = start.elapsed().as_secs_f64();
    let decode_start = std::time::Instant::now();
    let done = |tokens: Vec<u32>, stop| Generation {
        tokens,
        stop,
        prompt_seconds,
        decode_seconds: decode_start.elapsed().as_secs_f64(),
    };
    loop {
        let t = sampler.sample(&logits);
        tokens.push(t);
        on_token(t);
        if opts.stop_tokens.contains(&t) {
            return Ok(done(tokens, StopReason::StopToken));
        }
        // A full context ends the turn like the token budget does (OpenAI's "length"),
        // keeping what was generated instead of failing the whole request.
        if tokens.len() >= opts.max_tokens || cache.len() >= model.config().max_position_embeddings
        {
            return Ok(done(tokens, StopReason::Length));
        }
        if cancelled() {
            return Ok(done(tokens, StopReason::Cancelled));
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
