//! The continuous-batching engine: batched requests give exactly the tokens they give alone,
//! a cancelled request frees its slot at once, and a full queue refuses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gossamer_checkpoint::synth::{write_checkpoint, Preset, SynthOptions};
use gossamer_checkpoint::Checkpoint;
use gossamer_engine::{
    Engine, EngineConfig, Event, FinishReason, Request, SamplingParams, SubmitError,
};
use gossamer_model::{GptOss, Precision};

fn tiny_model(precision: Precision) -> (tempfile::TempDir, Arc<GptOss>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = SynthOptions::new(Preset::Tiny, 21);
    write_checkpoint(&opts, dir.path(), &mut |_, _| {}).unwrap();
    let mut model = GptOss::new(&Checkpoint::open(dir.path()).unwrap());
    model.set_precision(precision);
    model.set_batch_invariant(true);
    (dir, Arc::new(model))
}

/// An engine on the tiny model in exact precision, 64 tokens a step.
fn exact_engine(
    max_concurrency: usize,
    max_queue: usize,
    context: usize,
) -> (tempfile::TempDir, Engine) {
    let (dir, model) = tiny_model(Precision::Exact);
    let config = EngineConfig {
        max_concurrency,
        max_queue,
        max_batch_tokens: 64,
        context,
    };
    (dir, Engine::start(model, config))
}

fn greedy(prompt: Vec<u32>, max_tokens: usize) -> Request {
    Request {
        prompt,
        max_tokens,
        sampling: SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
        stop_tokens: vec![],
        logprobs: None,
    }
}

/// Drains a ticket's events on this thread (the test has no async runtime).
fn collect(mut ticket: gossamer_engine::Ticket) -> (Vec<u32>, FinishReason) {
    let mut tokens = Vec::new();
    loop {
        match ticket
            .events
            .blocking_recv()
            .expect("the engine ends every request")
        {
            Event::Token { id, .. } => tokens.push(id),
            Event::Done { reason, .. } => return (tokens, reason),
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
}

fn prompts() -> Vec<Vec<u32>> {
    (0..16u32)
        .map(|i| {
            (0..3 + 5 * i)
                .map(|j| (i * 7919 + j * 104_729) % 199_000)
                .collect()
        })
        .collect()
}

fn batched_equals_alone(precision: Precision) {
    let (_dir, model) = tiny_model(precision);
    let alone = Engine::start(
        model.clone(),
        EngineConfig {
            max_concurrency: 1,
            max_queue: 64,
            max_batch_tokens: 512,
            context: 4096,
        },
    );
    let expected: Vec<Vec<u32>> = prompts()
        .into_iter()
        .map(|p| collect(alone.submit(greedy(p, 20)).unwrap()).0)
        .collect();
    // All sixteen at once, with a small step budget so prompts are cut into other chunks.
    let batched = Engine::start(
        model,
        EngineConfig {
            max_concurrency: 16,
            max_queue: 64,
            max_batch_tokens: 40,
            context: 4096,
        },
    );
    let tickets: Vec<_> = prompts()
        .into_iter()
        .map(|p| batched.submit(greedy(p, 20)).unwrap())
        .collect();
    for (i, t) in tickets.into_iter().enumerate() {
        let (tokens, reason) = collect(t);
        assert_eq!(reason, FinishReason::Length);
        assert_eq!(tokens, expected[i], "request {i} ({precision:?})");
    }
    // The batch really was shared: far fewer steps than 16 requests one by one.
    let steps = batched
        .stats()
        .steps
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(steps < 16 * 20 / 4, "{steps} steps");
}

#[test]
fn sixteen_batched_requests_give_the_tokens_each_gives_alone_exact() {
    batched_equals_alone(Precision::Exact);
}

#[test]
fn sixteen_batched_requests_give_the_tokens_each_gives_alone_fast() {
    batched_equals_alone(Precision::Fast);
}

#[test]
fn a_dropped_request_frees_its_slot_within_a_step() {
    let (_dir, engine) = exact_engine(1, 4, 4096);
    let mut long = engine.submit(greedy(vec![1, 2, 3], 4000)).unwrap();
    // Wait until it is decoding, then queue a second request behind it and drop the first.
    assert!(matches!(
        long.events.blocking_recv(),
        Some(Event::Token { .. })
    ));
    let mut next = engine.submit(greedy(vec![4, 5, 6], 3)).unwrap();
    let at_drop = engine
        .stats()
        .steps
        .load(std::sync::atomic::Ordering::Relaxed);
    drop(long);
    assert!(matches!(
        next.events.blocking_recv(),
        Some(Event::Token { .. })
    ));
    let at_first = engine
        .stats()
        .steps
        .load(std::sync::atomic::Ordering::Relaxed);
    // The step running at the drop, then the one that admits the next request.
    assert!(at_first <= at_drop + 2, "{at_drop} -> {at_first}");
    let (rest, reason) = collect(next);
    assert_eq!((rest.len(), reason), (2, FinishReason::Length));
}

#[test]
fn a_full_queue_refuses_while_admitted_requests_complete() {
    let (_dir, engine) = exact_engine(1, 2, 4096);
    let mut first = engine.submit(greedy(vec![1, 2, 3], 30)).unwrap();
    assert!(matches!(
        first.events.blocking_recv(),
        Some(Event::Token { .. })
    ));
    let queued: Vec<_> = (0..2)
        .map(|i| engine.submit(greedy(vec![7, 8, i], 5)).unwrap())
        .collect();
    let refused = engine.submit(greedy(vec![9], 5)).err();
    assert_eq!(refused, Some(SubmitError::QueueFull { waiting: 2 }));
    let (rest, reason) = collect(first);
    assert_eq!((rest.len(), reason), (29, FinishReason::Length));
    for t in queued {
        assert_eq!(collect(t).0.len(), 5);
    }
}

/// A burst submitted before the engine thread has admitted anything fills the free slot and
/// the queue: it is not refused early because the slot's request is still counted as waiting.
#[test]
fn a_burst_fills_the_free_slot_and_the_queue_before_refusing() {
    let (_dir, engine) = exact_engine(1, 2, 4096);
    // Back to back, with no wait for the engine: whether it has woken yet must not matter.
    let burst: Vec<_> = (0..3)
        .map(|i| engine.submit(greedy(vec![1, 2, i], 4000)))
        .collect();
    assert!(
        burst.iter().all(|t| t.is_ok()),
        "{:?}",
        burst.iter().map(|t| t.as_ref().err()).collect::<Vec<_>>()
    );
    assert!(matches!(
        engine.submit(greedy(vec![9], 5)).err(),
        Some(SubmitError::QueueFull { .. })
    ));
}

#[test]
fn bad_requests_are_refused_at_submission() {
    let (_dir, engine) = exact_engine(2, 2, 10);
    assert_eq!(
        engine.submit(greedy((0..10).collect(), 5)).err(),
        Some(SubmitError::PromptTooLong {
            prompt: 10,
            context: 10
        })
    );
    assert_eq!(
        engine.submit(greedy(vec![], 5)).err(),
        Some(SubmitError::EmptyPrompt)
    );
    let mut bad = greedy(vec![1], 5);
    bad.sampling.temperature = -1.0;
    assert!(matches!(
        engine.submit(bad).err(),
        Some(SubmitError::Sampling(_))
    ));
    // A request that reaches the context ends with `length`, keeping what it generated.
    let (tokens, reason) = collect(engine.submit(greedy((0..7).collect(), 50)).unwrap());
    assert_eq!((tokens.len(), reason), (4, FinishReason::Length));
    let started = Instant::now();
    drop(engine);
    assert!(started.elapsed() < Duration::from_secs(5));
}
