//! The golden files of `tests/data/goldens/` (written by `reference/make_goldens.py`), read
//! the same way by every test that checks a backend against them: the CPU model's
//! (`gossamer-model/tests/goldens.rs`) and the GPU's (`gossamer-cuda/tests/gpu.rs`) include
//! this file with `#[path]`, so that the schema has one definition.

#![allow(dead_code)] // each test binary reads a different part of the schema

use std::path::{Path, PathBuf};

use gossamer_checkpoint::synth::{write_checkpoint, Preset, SynthOptions};
use gossamer_checkpoint::{Checkpoint, ExpertFormat, Layout};
use gossamer_model::{GptOss, KvCache, Logits};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Golden {
    pub checkpoint: GoldenCheckpoint,
    pub reference: serde_json::Value,
    pub prompts: Vec<Prompt>,
    /// The reference's bfloat16 run against these float32 logits (`reference/bf16_drift.py`).
    #[serde(default)]
    pub bf16_run: serde_json::Value,
}

#[derive(Deserialize)]
pub struct GoldenCheckpoint {
    pub generator: Generator,
    /// The `config.json` the reference loaded.
    pub config: serde_json::Value,
}

/// How the golden's checkpoint was generated; the files are too large to commit, so each test
/// regenerates them from this.
#[derive(Deserialize, Clone, PartialEq, Eq, Hash, Debug)]
pub struct Generator {
    pub preset: String,
    pub seed: u64,
    pub layers: Option<usize>,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    pub experts: String,
    pub layout: String,
}

#[derive(Deserialize)]
pub struct Prompt {
    pub tokens: Vec<u32>,
    /// The reference's top-k logits at every position of `tokens`.
    pub positions: Vec<Position>,
    pub greedy: Greedy,
}

#[derive(Deserialize)]
pub struct Position {
    pub top: Vec<Entry>,
}

#[derive(Deserialize)]
pub struct Entry {
    pub id: u32,
    pub logit: f32,
}

/// The reference's greedy continuation of the prompt.
#[derive(Deserialize)]
pub struct Greedy {
    pub tokens: Vec<u32>,
}

impl Generator {
    /// The generator options that write this golden's checkpoint.
    pub fn options(&self) -> SynthOptions {
        let preset: Preset = self.preset.parse().expect("known preset");
        let mut o = SynthOptions::new(preset, self.seed);
        o.layers = self.layers;
        o.sliding_window = self.sliding_window;
        o.experts = match self.experts.as_str() {
            "mxfp4" => ExpertFormat::Mxfp4,
            "bf16" => ExpertFormat::Bf16,
            other => panic!("unknown expert format {other}"),
        };
        o.layout = match self.layout.as_str() {
            "hf" => Layout::Hf,
            "original" => Layout::Original,
            other => panic!("unknown layout {other}"),
        };
        o
    }
}

/// Highest logit, lowest id on ties: the greedy rule of the goldens' continuations (torch's
/// argmax) and of the engine (`gossamer_engine::sampler::argmax`, which the model crate cannot
/// depend on).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in row.iter().enumerate() {
        if l > row[best] {
            best = i;
        }
    }
    best as u32
}

impl Prompt {
    /// Continues greedily from `last` (the logits after the prompt, `cache` holding it) for as
    /// many tokens as the reference did; says how the two continuations differ, if they do.
    pub fn greedy_mismatch(
        &self,
        model: &GptOss,
        cache: &mut KvCache,
        mut last: Vec<f32>,
    ) -> Option<String> {
        let mut ours = Vec::new();
        for _ in 0..self.greedy.tokens.len() {
            let t = argmax(&last);
            ours.push(t);
            last = model.forward(&[t], cache, Logits::Last).unwrap();
        }
        (ours != self.greedy.tokens).then(|| {
            format!(
                "greedy continuation differs\n  ours {ours:?}\n  ref  {:?}",
                self.greedy.tokens
            )
        })
    }
}

/// Every golden file, in name order, parsed.
pub fn all() -> Vec<(PathBuf, Golden)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/goldens");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let g = serde_json::from_slice(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, g)
        })
        .collect()
}

/// Writes a checkpoint into a fresh temporary folder and opens it (the folder lives as long as
/// the returned guard).
pub fn write_and_open(o: &SynthOptions) -> (tempfile::TempDir, Checkpoint) {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(o, dir.path(), &mut |_, _| {}).unwrap();
    let ck = Checkpoint::open(dir.path()).unwrap();
    (dir, ck)
}
