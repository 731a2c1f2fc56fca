//! Continuous batching: many requests share every forward step.
//!
//! One compute thread owns the model. Each step it plans a batch — one token for every
//! sequence that is decoding, then prompt chunks of the sequences still prefilling, oldest
//! first, up to a token budget (chunked prefill, so a long prompt never stalls the others) —
//! runs it as one [`GptOss::forward_batch`], samples, and sends each request its token.
//! Requests wait in a bounded first-come-first-served queue until a slot frees; a full queue
//! refuses at once ([`SubmitError::QueueFull`]) instead of growing without bound. A request
//! whose receiver is dropped (the client went away) or whose ticket is cancelled leaves the
//! batch before the next step.
//!
//! The engine never blocks on a client: events go through unbounded channels that the
//! receiver drains at its own pace (one small event per token).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use gossamer_model::{GptOss, KvCache, Logits, ModelError, Step};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::sampler::{Sampler, SamplingError, SamplingParams};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Sequences in the batch at once (slots).
    pub max_concurrency: usize,
    /// Requests allowed to wait while every slot is taken; one more is refused. Requests
    /// that a free slot will take at once do not count.
    pub max_queue: usize,
    /// Tokens per step: every decoding sequence's one token, then prompt chunks.
    pub max_batch_tokens: usize,
    /// Positions per sequence (prompt and output); at most the model's own limit.
    pub context: usize,
}

impl EngineConfig {
    /// Defaults for `model`: 16 slots, a queue of 64, 512 tokens a step, the model's context.
    pub fn for_model(model: &GptOss) -> EngineConfig {
        EngineConfig {
            max_concurrency: 16,
            max_queue: 64,
            max_batch_tokens: 512,
            context: model.config().max_position_embeddings,
        }
    }
}

/// What one request asks of the engine: prompt tokens in, sampled tokens out.
#[derive(Clone, Debug)]
pub struct Request {
    pub prompt: Vec<u32>,
    /// Generated tokens at most (the stop token included).
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// Tokens that end the generation (included in the output).
    pub stop_tokens: Vec<u32>,
    /// Report each sampled token's log-probability and this many alternatives (0..=20).
    pub logprobs: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token was sampled.
    Stop,
    /// `max_tokens` reached or the context is full.
    Length,
    /// Cancelled by the caller or the receiver dropped.
    Cancelled,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub logprob: f32,
    /// The most likely tokens at this position with their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Token {
        id: u32,
        logprob: Option<TokenLogprob>,
    },
    Done {
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    /// The step failed (a model error); the request is over.
    Error(String),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SubmitError {
    #[error("the server is busy: {waiting} requests are already waiting; retry later")]
    QueueFull { waiting: usize },
    #[error("the prompt has {prompt} tokens, which leaves no room in a context of {context}")]
    PromptTooLong { prompt: usize, context: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error("the engine has stopped")]
    Stopped,
}

/// A submitted request: its events, and a way to cancel it. Dropping the ticket cancels.
pub struct Ticket {
    pub events: UnboundedReceiver<Event>,
    cancel: Arc<AtomicBool>,
}

impl Ticket {
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Counters for health and metrics pages.
#[derive(Default, Debug)]
pub struct EngineStats {
    pub waiting: AtomicUsize,
    pub active: AtomicUsize,
    pub steps: AtomicUsize,
}

struct Pending {
    req: Request,
    sampler: Sampler,
    tx: UnboundedSender<Event>,
    cancel: Arc<AtomicBool>,
    submitted: Instant,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    stats: EngineStats,
}

struct Queue {
    waiting: VecDeque<Pending>,
    /// Slots the engine holds, as it last said under this lock. Requests that will take a
    /// free slot at the next admission are not counted against `max_queue`: without this, a
    /// burst that arrives before the engine thread wakes is refused with a slot still idle.
    /// Stale only upward (finished sequences are counted until the next admission).
    running: usize,
    shutdown: bool,
}

/// The handle servers hold; cheap to clone. The compute thread stops when the last handle
/// is dropped, after failing whatever is still queued or running.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    config: EngineConfig,
    _owner: Arc<Owner>,
}

struct Owner {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.queue.lock().expect("queue lock").shutdown = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.lock().expect("thread lock").take() {
            let _ = t.join();
        }
    }
}

impl Engine {
    /// Starts the compute thread. The model's batch invariance is the caller's choice
    /// ([`GptOss::set_batch_invariant`]): a server turns it on.
    pub fn start(model: Arc<GptOss>, mut config: EngineConfig) -> Engine {
        config.max_concurrency = config.max_concurrency.max(1);
        config.max_batch_tokens = config.max_batch_tokens.max(config.max_concurrency + 1);
        config.context = config
            .context
            .clamp(1, model.config().max_position_embeddings);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                running: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            stats: EngineStats::default(),
        });
        let worker = {
            let shared = shared.clone();
            let config = config.clone();
            std::thread::Builder::new()
                .name("gossamer-engine".into())
                .spawn(move || run(&model, &config, &shared))
                .expect("spawn the engine thread")
        };
        Engine {
            _owner: Arc::new(Owner {
                shared: shared.clone(),
                thread: Mutex::new(Some(worker)),
            }),
            shared,
            config,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn stats(&self) -> &EngineStats {
        &self.shared.stats
    }

    /// Queues a request, or refuses it at once (full queue, prompt too long, bad sampling).
    pub fn submit(&self, req: Request) -> Result<Ticket, SubmitError> {
        if req.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        if req.prompt.len() >= self.config.context {
            return Err(SubmitError::PromptTooLong {
                prompt: req.prompt.len(),
                context: self.config.context,
            });
        }
        let sampler = Sampler::new(req.sampling.clone())?;
        let (tx, events) = unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let mut q = self.shared.queue.lock().expect("queue lock");
        if q.shutdown {
            return Err(SubmitError::Stopped);
        }
        let free_slots = self.config.max_concurrency.saturating_sub(q.running);
        if q.waiting.len() >= self.config.max_queue + free_slots {
            metrics::counter!("gossamer_requests_rejected_total").increment(1);
            return Err(SubmitError::QueueFull {
                waiting: q.waiting.len(),
            });
        }
        q.waiting.push_back(Pending {
            req,
            sampler,
            tx,
            cancel: cancel.clone(),
            submitted: Instant::now(),
        });
        self.shared
            .stats
            .waiting
            .store(q.waiting.len(), Ordering::Relaxed);
        metrics::gauge!("gossamer_queue_depth").set(q.waiting.len() as f64);
        drop(q);
        self.shared.wake.notify_one();
        Ok(Ticket { events, cancel })
    }
}

/// A sequence in the batch.
struct Running {
    p: Pending,
    cache: KvCache,
    /// Prompt tokens already in the cache.
    prefilled: usize,
    /// The token to feed next while decoding (the last one sampled).
    next: Option<u32>,
    generated: usize,
    last_token_at: Option<Instant>,
}

impl Running {
    fn gone(&self) -> bool {
        self.p.cancel.load(Ordering::Relaxed) || self.p.tx.is_closed()
    }

    fn finish(&self, reason: FinishReason) {
        let _ = self.p.tx.send(Event::Done {
            reason,
            prompt_tokens: self.p.req.prompt.len(),
            completion_tokens: self.generated,
        });
    }
}

fn run(model: &GptOss, config: &EngineConfig, shared: &Shared) {
    let mut running: Vec<Running> = Vec::new();
    loop {
        // Whoever left since the last step gives back their slot before admission.
        let before = running.len();
        running.retain(|r| {
            if r.gone() {
                r.finish(FinishReason::Cancelled);
                metrics::counter!("gossamer_requests_cancelled_total").increment(1);
                false
            } else {
                true
            }
        });
        if running.len() != before {
            shared.stats.active.store(running.len(), Ordering::Relaxed);
        }
        // Admit in arrival order while there are free slots; sleep when there is nothing.
        {
            let mut q = shared.queue.lock().expect("queue lock");
            loop {
                if q.shutdown {
                    for p in q.waiting.drain(..) {
                        let _ = p.tx.send(Event::Error("the engine has stopped".into()));
                    }
                    for r in &running {
                        let _ = r.p.tx.send(Event::Error("the engine has stopped".into()));
                    }
                    return;
                }
                while running.len() < config.max_concurrency {
                    let Some(p) = q.waiting.pop_front() else {
                        break;
                    };
                    if p.cancel.load(Ordering::Relaxed) || p.tx.is_closed() {
                        continue; // gave up while waiting
                    }
                    metrics::histogram!("gossamer_queue_seconds")
                        .record(p.submitted.elapsed().as_secs_f64());
                    running.push(Running {
                        p,
                        cache: model.new_cache(),
                        prefilled: 0,
                        next: None,
                        generated: 0,
                        last_token_at: None,
                    });
                }
                q.running = running.len();
                if !running.is_empty() {
                    break;
                }
                q = shared.wake.wait(q).expect("queue lock");
            }
            shared
                .stats
                .waiting
                .store(q.waiting.len(), Ordering::Relaxed);
            metrics::gauge!("gossamer_queue_depth").set(q.waiting.len() as f64);
        }

        shared.stats.active.store(running.len(), Ordering::Relaxed);
        metrics::gauge!("gossamer_active_sequences").set(running.len() as f64);

        step(model, config, &mut running);
        shared.stats.steps.fetch_add(1, Ordering::Relaxed);
        // Finished sequences left in the step: say so before the engine may go to sleep.
        shared.stats.active.store(running.len(), Ordering::Relaxed);
        metrics::gauge!("gossamer_active_sequences").set(running.len() as f64);
    }
}

/// Plans and runs one batched step, then samples and reports for every sequence in it.
fn step(model: &GptOss, config: &EngineConfig, running: &mut Vec<Running>) {
    // Decoding sequences first (one token each), then prompt chunks in admission order.
    let decoding = running.iter().filter(|r| r.next.is_some()).count();
    let mut budget = config.max_batch_tokens.saturating_sub(decoding);
    // (index into running, the prompt range it prefills, or None for its decode token), in
    // index order; `running` is in admission order, so older prompts get the budget first.
    let mut plan: Vec<(usize, Option<std::ops::Range<usize>>)> = Vec::new();
    for (i, r) in running.iter().enumerate() {
        if r.next.is_some() {
            plan.push((i, None));
        } else if budget > 0 {
            let take = (r.p.req.prompt.len() - r.prefilled).min(budget);
            budget -= take;
            plan.push((i, Some(r.prefilled..r.prefilled + take)));
        }
    }

    let batch_tokens: usize = plan
        .iter()
        .map(|(_, range)| range.as_ref().map_or(1, |r| r.len()))
        .sum();
    metrics::histogram!("gossamer_batch_tokens").record(batch_tokens as f64);
    metrics::histogram!("gossamer_batch_sequences").record(plan.len() as f64);

    let decode_tokens: Vec<[u32; 1]> = plan
        .iter()
        .map(|&(i, _)| [running[i].next.unwrap_or(0)])
        .collect();
    let result = {
        // Split `running` into disjoint &mut borrows, in plan order (indices ascending).
        let mut steps: Vec<Step> = Vec::with_capacity(plan.len());
        let mut rest: &mut [Running] = running;
        let mut base = 0;
        for (k, (i, range)) in plan.iter().enumerate() {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(i - base);
            let (r, tail) = tail.split_first_mut().expect("planned index in range");
            rest = tail;
            base = i + 1;
            let (tokens, logits): (&[u32], Logits) = match range {
                None => (&decode_tokens[k], Logits::Last),
                Some(range) => {
                    let last = range.end == r.p.req.prompt.len();
                    (
                        &r.p.req.prompt[range.clone()],
                        if last { Logits::Last } else { Logits::None },
                    )
                }
            };
            steps.push(Step {
                tokens,
                cache: &mut r.cache,
                logits,
            });
        }
        model.forward_batch(&mut steps)
    };
    let logits = match result {
        Ok(l) => l,
        Err(e) => {
            fail_planned(running, &plan, &e);
            return;
        }
    };

    let now = Instant::now();
    let mut finished: Vec<usize> = Vec::new();
    for ((i, range), logits) in plan.iter().zip(logits) {
        let r = &mut running[*i];
        if let Some(range) = range {
            r.prefilled = range.end;
            metrics::counter!("gossamer_prompt_tokens_total").increment(range.len() as u64);
            if logits.is_empty() {
                continue; // more prompt to go
            }
        }
        let id = r.p.sampler.sample(&logits);
        let logprob = r.p.req.logprobs.map(|top| logprobs(&logits, id, top));
        r.generated += 1;
        r.next = Some(id);
        metrics::counter!("gossamer_generated_tokens_total").increment(1);
        match r.last_token_at {
            None => metrics::histogram!("gossamer_time_to_first_token_seconds")
                .record(r.p.submitted.elapsed().as_secs_f64()),
            Some(t) => metrics::histogram!("gossamer_inter_token_latency_seconds")
                .record(now.duration_since(t).as_secs_f64()),
        }
        r.last_token_at = Some(now);
        if r.p.tx.send(Event::Token { id, logprob }).is_err() {
            metrics::counter!("gossamer_requests_cancelled_total").increment(1);
            finished.push(*i); // the receiver is gone
            continue;
        }
        let reason = if r.p.req.stop_tokens.contains(&id) {
            Some(FinishReason::Stop)
        } else if r.generated >= r.p.req.max_tokens || r.cache.len() >= config.context {
            Some(FinishReason::Length)
        } else {
            None
        };
        if let Some(reason) = reason {
            r.finish(reason);
            finished.push(*i);
        }
    }
    for i in finished.into_iter().rev() {
        running.remove(i);
    }
}

fn fail_planned(
    running: &mut Vec<Running>,
    plan: &[(usize, Option<std::ops::Range<usize>>)],
    e: &ModelError,
) {
    tracing::error!("batched step failed: {e}");
    for &(i, _) in plan.iter().rev() {
        let r = running.remove(i);
        let _ = r.p.tx.send(Event::Error(e.to_string()));
    }
}

/// The sampled token's log-probability and the `top` best alternatives (log-softmax of the
/// raw logits, as OpenAI reports them).
fn logprobs(logits: &[f32], id: u32, top: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = max
        + logits
            .iter()
            .map(|&l| ((l - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if best.len() < top || l > best[best.len() - 1].1 {
                let at = best.partition_point(|&(_, b)| b >= l);
                best.insert(at, (i as u32, l));
                best.truncate(top);
            }
        }
    }
    TokenLogprob {
        logprob: logits[id as usize] - log_sum,
        top: best.into_iter().map(|(t, l)| (t, l - log_sum)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logprobs_are_a_log_softmax_with_the_best_first() {
        let logits = [1.0f32, 3.0, 2.0, 3.0];
        let lp = logprobs(&logits, 2, 3);
        let z: f32 = logits.iter().map(|l| l.exp()).sum();
        assert!((lp.logprob - (2f32.exp() / z).ln()).abs() < 1e-5);
        assert_eq!(
            lp.top.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![1, 3, 2]
        );
        assert!((lp.top[0].1 - (3f32.exp() / z).ln()).abs() < 1e-5);
        assert!(logprobs(&logits, 0, 0).top.is_empty());
    }
}
