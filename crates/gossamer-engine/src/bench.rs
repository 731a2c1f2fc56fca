//! Prefill and decode throughput, measured the way `llama-bench` does: a prompt of `p` tokens
//! (pp), `n` single-token decode steps (tg), optionally after `depth` tokens already in the
//! cache, with a warm-up and several repeats.

use std::time::Instant;

use gossamer_model::{GptOss, Logits, ModelError, OpTimes, Profile};

#[derive(Clone, Debug)]
pub struct BenchParams {
    pub prompt_tokens: usize,
    pub decode_tokens: usize,
    pub depth: usize,
    pub repeats: usize,
    pub seed: u64,
}

/// Mean and sample standard deviation of tokens/s over the repeats.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rate {
    pub mean: f64,
    pub stddev: f64,
}

#[derive(Clone, Debug)]
pub struct BenchResult {
    /// `None` when `prompt_tokens` is 0.
    pub prefill: Option<Rate>,
    /// `None` when `decode_tokens` is 0.
    pub decode: Option<Rate>,
    /// Time per kind of operation over all timed prefill / decode repeats, when a profile
    /// was passed to [`run`].
    pub prefill_ops: Option<OpTimes>,
    pub decode_ops: Option<OpTimes>,
}

/// Deterministic pseudo-random token ids below `vocab` (the content does not change speed,
/// but identical ids would hit the same experts every step).
fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let limit = vocab.min(199_998) as u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % limit) as u32
        })
        .collect()
}

/// Mean and sample standard deviation of `samples`.
pub fn rate(samples: &[f64]) -> Rate {
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = if samples.len() > 1 {
        samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Rate {
        mean,
        stddev: var.sqrt(),
    }
}

/// Runs the benchmark; `on_repeat` is told after each timed repeat (for progress output).
/// `profile`, if given, is the model's ([`GptOss::enable_profile`]); its totals are split
/// between the prefill and decode tests.
pub fn run(
    model: &GptOss,
    p: &BenchParams,
    profile: Option<&Profile>,
    mut on_repeat: impl FnMut(&str, usize, f64),
) -> Result<BenchResult, ModelError> {
    let vocab = model.config().vocab_size;
    let context = tokens(p.depth, vocab, p.seed);
    let prompt = tokens(p.prompt_tokens, vocab, p.seed ^ 1);
    let steps = tokens(p.decode_tokens, vocab, p.seed ^ 2);

    // A cache holding `depth` tokens, built once (not timed); each test starts from a copy.
    let mut filled = model.new_cache();
    for chunk in context.chunks(512) {
        model.forward(chunk, &mut filled, Logits::Last)?;
    }

    // Warm-up: fault in every weight page (as llama-bench's warm-up run and mmap prefetch
    // do), then one pass of the test's own shapes (a GPU sizes its buffers and picks its
    // product algorithms on first sight of a shape, as the allocator does here).
    model.prefault();
    {
        let mut cache = filled.clone();
        let warm = if prompt.is_empty() {
            tokens(4, vocab, p.seed ^ 3)
        } else {
            prompt.clone()
        };
        model.forward(&warm, &mut cache, Logits::Last)?;
        model.forward(&[1], &mut cache, Logits::Last)?;
    }

    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    let (mut prefill_ops, mut decode_ops) = (OpTimes::default(), OpTimes::default());
    if let Some(prof) = profile {
        prof.take(); // drop the warm-up's
    }
    for r in 0..p.repeats.max(1) {
        if p.prompt_tokens > 0 {
            let mut cache = filled.clone();
            let t = Instant::now();
            model.forward(&prompt, &mut cache, Logits::Last)?;
            let tps = p.prompt_tokens as f64 / t.elapsed().as_secs_f64();
            prefill.push(tps);
            if let Some(prof) = profile {
                prefill_ops.add(&prof.take());
            }
            on_repeat("prefill", r, tps);
        }
        if p.decode_tokens > 0 {
            let mut cache = filled.clone();
            let t = Instant::now();
            for &tok in &steps {
                model.forward(&[tok], &mut cache, Logits::Last)?;
            }
            let tps = p.decode_tokens as f64 / t.elapsed().as_secs_f64();
            decode.push(tps);
            if let Some(prof) = profile {
                decode_ops.add(&prof.take());
            }
            on_repeat("decode", r, tps);
        }
    }
    let profiled = profile.is_some();
    Ok(BenchResult {
        prefill: (!prefill.is_empty()).then(|| rate(&prefill)),
        decode: (!decode.is_empty()).then(|| rate(&decode)),
        prefill_ops: (profiled && !prefill.is_empty()).then_some(prefill_ops),
        decode_ops: (profiled && !decode.is_empty()).then_some(decode_ops),
    })
}

/// Aggregate decode throughput of `concurrency` requests served together by the
/// continuous-batching [`Engine`](crate::Engine).
#[derive(Clone, Debug)]
pub struct ConcurrentResult {
    pub concurrency: usize,
    /// Generated tokens per second over all streams, from the step that gave every stream
    /// its first token to the end of the last one.
    pub decode_tok_s: f64,
    /// Mean time from submission to first token.
    pub first_token_s: f64,
}

/// Submits `concurrency` requests of `prompt_tokens` random tokens at once, each greedily
/// generating `decode_tokens` tokens, and measures the aggregate decode rate. The engine gets
/// one slot per request and room to prefill every prompt in one step.
pub fn run_concurrent(
    model: std::sync::Arc<GptOss>,
    concurrency: usize,
    prompt_tokens: usize,
    decode_tokens: usize,
    seed: u64,
) -> Result<ConcurrentResult, crate::SubmitError> {
    use crate::{Engine, EngineConfig, Event, Request, SamplingParams};
    let vocab = model.config().vocab_size;
    let context = model.config().max_position_embeddings;
    let engine = Engine::start(
        model,
        EngineConfig {
            max_concurrency: concurrency.max(1),
            max_queue: concurrency.max(1),
            max_batch_tokens: (concurrency * prompt_tokens.max(1)).max(concurrency + 1),
            context,
        },
    );
    let start = Instant::now();
    let tickets = (0..concurrency)
        .map(|i| {
            engine.submit(Request {
                prompt: tokens(prompt_tokens.max(1), vocab, seed ^ (i as u64 + 7)),
                max_tokens: decode_tokens.max(2),
                sampling: SamplingParams {
                    temperature: 0.0,
                    ..Default::default()
                },
                stop_tokens: vec![],
                logprobs: None,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // One thread per stream, each noting when its first and last tokens came.
    let streams: Vec<(Instant, Instant, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = tickets
            .into_iter()
            .map(|mut t| {
                scope.spawn(move || {
                    let (mut first, mut count) = (None, 0usize);
                    while let Some(event) = t.events.blocking_recv() {
                        match event {
                            Event::Token { .. } => {
                                first.get_or_insert_with(Instant::now);
                                count += 1;
                            }
                            Event::Done { .. } | Event::Error(_) => break,
                        }
                    }
                    let now = Instant::now();
                    (first.unwrap_or(now), now, count)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("stream thread"))
            .collect()
    });
    let window_start = streams.iter().map(|s| s.0).max().unwrap_or(start);
    let window_end = streams.iter().map(|s| s.1).max().unwrap_or(start);
    let decoded: usize = streams.iter().map(|s| s.2.saturating_sub(1)).sum();
    let first_token_s = streams
        .iter()
        .map(|s| s.0.duration_since(start).as_secs_f64())
        .sum::<f64>()
        / streams.len().max(1) as f64;
    Ok(ConcurrentResult {
        concurrency,
        decode_tok_s: decoded as f64 / (window_end - window_start).as_secs_f64().max(1e-9),
        first_token_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_mean_and_sample_stddev() {
        let r = rate(&[2.0, 4.0, 6.0]);
        assert_eq!(r.mean, 4.0);
        assert_eq!(r.stddev, 2.0);
        assert_eq!(rate(&[5.0]).stddev, 0.0);
    }

    #[test]
    fn bench_tokens_stay_below_the_specials() {
        assert!(tokens(1000, 201_088, 1).iter().all(|&t| t < 199_998));
        assert!(tokens(1000, 4096, 1).iter().all(|&t| t < 4096));
    }
}
