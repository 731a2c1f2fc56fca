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
