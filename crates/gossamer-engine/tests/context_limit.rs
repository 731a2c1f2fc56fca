//! Generation at the edge of the context window keeps what it generated.

use gossamer_checkpoint::synth::{write_checkpoint, Preset, SynthOptions};
use gossamer_checkpoint::Checkpoint;
use gossamer_engine::{generate, GenerateOptions, SamplingParams, StopReason};
use gossamer_model::GptOss;

fn model_with_context(max_positions: usize) -> (tempfile::TempDir, GptOss) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = SynthOptions::new(Preset::SmallVocab, 9);
    opts.layers = Some(2);
    write_checkpoint(&opts, dir.path(), &mut |_, _| {}).unwrap();
    let path = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    cfg["max_position_embeddings"] = max_positions.into();
    std::fs::write(&path, cfg.to_string()).unwrap();
    let model = GptOss::new(&Checkpoint::open(dir.path()).unwrap());
    (dir, model)
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
        stop_tokens: vec![],
        cancel: None,
    }
}

#[test]
fn a_full_context_ends_generation_with_length() {
    let (_d, model) = model_with_context(20);
    let mut cache = model.new_cache();
    let prompt: Vec<u32> = (1..=15).collect();
    let mut streamed = Vec::new();
    let g = generate(&model, &mut cache, &prompt, &greedy(100), |t| {
        streamed.push(t)
    })
    .unwrap();
    // Positions 15..19 are fed back; the token sampled at position 19 is the last.
    assert_eq!(g.tokens.len(), 6);
    assert_eq!(g.stop, StopReason::Length);
    assert_eq!(streamed, g.tokens);
    assert_eq!(cache.len(), 20);
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error() {
    let (_d, model) = model_with_context(20);
    let mut cache = model.new_cache();
    let prompt: Vec<u32> = (1..=21).collect();
    let err = generate(&model, &mut cache, &prompt, &greedy(5), |_| {}).unwrap_err();
    assert_eq!(
        err.to_string(),
        "context full: 21 positions requested, the model supports 20"
    );
}

#[test]
fn cancellation_keeps_the_tokens_so_far() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (_d, model) = model_with_context(1000);
    let mut cache = model.new_cache();
    let flag = Arc::new(AtomicBool::new(false));
    let mut opts = greedy(50);
    opts.cancel = Some(flag.clone());
    let mut seen = 0;
    let g = generate(&model, &mut cache, &[1, 2, 3], &opts, |_| {
        seen += 1;
        if seen == 4 {
            flag.store(true, Ordering::Relaxed);
        }
    })
    .unwrap();
    assert_eq!(g.stop, StopReason::Cancelled);
    assert_eq!(g.tokens.len(), 4);
    // The cache holds the prompt and every token but the last.
    assert_eq!(cache.len(), 3 + 3);

    // Cancelled before the prompt: nothing generated.
    let mut cache = model.new_cache();
    let g = generate(&model, &mut cache, &[1, 2, 3], &opts, |_| {}).unwrap();
    assert_eq!((g.stop, g.tokens.len()), (StopReason::Cancelled, 0));
}
