//! Seeded random checkpoints in the exact published layout.
//!
//! No real weights can be downloaded where gossamer is built and tested, so correctness is
//! proven on random weights of the official shapes, compared against the reference
//! implementation run on the same files. Every tensor's values come from its own RNG stream,
//! seeded from the checkpoint seed and the tensor's Hugging Face name, so the Hugging Face and
//! `original/` layouts (and MXFP4 versus dense bf16 experts) of one seed hold the same numbers.
//!
//! Value scales are chosen so activations stay in a realistic range through every layer:
//! projections have standard deviation `1/sqrt(fan_in)` so normalised inputs give unit-scale
//! outputs, attention logits come out with a standard deviation near 2, router logits near 1,
//! and the unembedding gives logits with a spread of about 3 (top logits near 13 over the full
//! vocabulary), which keeps greedy decoding away from near-ties.

use std::path::{Path, PathBuf};

use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::json;

use crate::config::{alternating_layers, AttentionKind, ExpertFormat, ModelConfig};
use crate::error::{io_err, Result};
use crate::names::{expected_tensors, tensor_name, Layout, Role, TensorSpec};
use crate::safetensors::{SafetensorsWriter, TensorDecl};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// The real 201088-token vocabulary, small layers (hidden 128, 8 experts, 4 layers) and a
    /// 16-token sliding window so short prompts already exercise the window.
    Tiny,
    /// A 4096-token vocabulary with wider layers (hidden 512, 16 experts, 6 layers) and the
    /// official 128-token window.
    SmallVocab,
    /// The full gpt-oss-20b shapes (about 13 GB).
    Gpt20b,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tiny" => Ok(Preset::Tiny),
            "small-vocab" => Ok(Preset::SmallVocab),
            "20b" => Ok(Preset::Gpt20b),
            _ => Err(format!("unknown preset `{s}` (tiny, small-vocab, 20b)")),
        }
    }
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::SmallVocab => "small-vocab",
            Preset::Gpt20b => "20b",
        }
    }

    pub fn config(self) -> ModelConfig {
        let mut cfg = ModelConfig::gpt_oss_20b();
        match self {
            Preset::Gpt20b => {}
            Preset::Tiny => {
                cfg.num_hidden_layers = 4;
                cfg.hidden_size = 128;
                cfg.intermediate_size = 128;
                cfg.num_attention_heads = 8;
                cfg.num_key_value_heads = 2;
                cfg.num_local_experts = 8;
                cfg.sliding_window = 16;
            }
            Preset::SmallVocab => {
                cfg.num_hidden_layers = 6;
                cfg.hidden_size = 512;
                cfg.intermediate_size = 512;
                cfg.num_attention_heads = 16;
                cfg.num_key_value_heads = 4;
                cfg.num_local_experts = 16;
                cfg.vocab_size = 4096;
            }
        }
        cfg.layer_types = alternating_layers(cfg.num_hidden_layers);
        cfg
    }
}

#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub preset: Preset,
    pub seed: u64,
    pub layers: Option<usize>,
    pub sliding_window: Option<usize>,
    pub experts: ExpertFormat,
    pub layout: Layout,
    /// Largest shard before starting a new file (the official shards are about 4.8 GB).
    pub max_shard_bytes: u64,
}

impl SynthOptions {
    pub fn new(preset: Preset, seed: u64) -> SynthOptions {
        SynthOptions {
            preset,
            seed,
            layers: None,
            sliding_window: None,
            experts: ExpertFormat::Mxfp4,
            layout: Layout::Hf,
            max_shard_bytes: 5_000_000_000,
        }
    }

    pub fn config(&self) -> ModelConfig {
        let mut cfg = self.preset.config();
        if let Some(n) = self.layers {
            cfg.num_hidden_layers = n;
            cfg.layer_types = alternating_layers(n);
        }
        if let Some(w) = self.sliding_window {
            cfg.sliding_window = w;
        }
        cfg.expert_format = self.experts;
        cfg
    }
}

/// Writes a checkpoint folder. `progress` is called with (bytes written, bytes total).
pub fn write_checkpoint(
    opts: &SynthOptions,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let cfg = opts.config();
    assert!(
        opts.layout == Layout::Hf || cfg.expert_format == ExpertFormat::Mxfp4,
        "the original layout only stores MXFP4 experts"
    );
    let dir = match opts.layout {
        Layout::Hf => out.to_path_buf(),
        Layout::Original => out.join("original"),
    };
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let specs = expected_tensors(&cfg, opts.layout);
    let shards = split_into_shards(&specs, opts.max_shard_bytes);
    let total: u64 = specs
        .iter()
        .map(|s| (s.numel() * s.dtype.size()) as u64)
        .sum();
    let names = shard_names(opts.layout, shards.len());

    let mut done = 0u64;
    let mut weight_map = serde_json::Map::new();
    for (shard, file_name) in shards.iter().zip(&names) {
        let decls: Vec<TensorDecl> = shard
            .iter()
            .map(|s| TensorDecl {
                name: s.name.clone(),
                dtype: s.dtype,
                shape: s.shape.clone(),
            })
            .collect();
        let mut w = SafetensorsWriter::create(&dir.join(file_name), &decls)?;
        for spec in shard {
            weight_map.insert(spec.name.clone(), json!(file_name));
            write_tensor(&cfg, opts.seed, spec, &mut w, &mut |n| {
                done += n;
                progress(done, total)
            })?;
        }
        w.finish()?;
    }

    match opts.layout {
        Layout::Hf => {
            write_json(&dir.join("config.json"), &hf_config_json(&cfg))?;
            write_json(
                &dir.join("generation_config.json"),
                &json!({"bos_token_id": 199998, "do_sample": true,
                        "eos_token_id": [200002, 199999, 200012], "pad_token_id": 199999}),
            )?;
            if names.len() > 1 {
                write_json(
                    &dir.join("model.safetensors.index.json"),
                    &json!({"metadata": {"total_size": total}, "weight_map": weight_map}),
                )?;
            }
        }
        Layout::Original => {
            write_json(&dir.join("config.json"), &original_config_json(&cfg))?;
            let dtypes: serde_json::Map<String, serde_json::Value> = specs
                .iter()
                .map(|s| {
                    let d = match s.role {
                        Role::GateUpBlocks(_) | Role::DownBlocks(_) => "FP4",
                        Role::GateUpScales(_) | Role::DownScales(_) => "UE8",
                        _ => "BF16",
                    };
                    (s.name.clone(), json!(d))
                })
                .collect();
            write_json(&dir.join("dtypes.json"), &serde_json::Value::Object(dtypes))?;
        }
    }
    Ok(())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("json");
    std::fs::write(path, text + "\n").map_err(io_err(path))
}

/// Hugging Face shard names count from zero: `model-00000-of-00002.safetensors` is the first
/// of three (spec §3.1); the original 120b files use `model--0000k-of-0000n`.
fn shard_names(layout: Layout, n: usize) -> Vec<String> {
    if n == 1 {
        return vec!["model.safetensors".into()];
    }
    (0..n)
        .map(|k| match layout {
            Layout::Hf => format!("model-{k:05}-of-{:05}.safetensors", n - 1),
            Layout::Original => format!("model--{:05}-of-{n:05}.safetensors", k + 1),
        })
        .collect()
}

fn split_into_shards(specs: &[TensorSpec], max_bytes: u64) -> Vec<Vec<TensorSpec>> {
    let mut shards: Vec<Vec<TensorSpec>> = vec![Vec::new()];
    let mut size = 0u64;
    for s in specs {
        let n = (s.numel() * s.dtype.size()) as u64;
        if size > 0 && size + n > max_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        size += n;
        shards.last_mut().expect("one shard").push(s.clone());
    }
    shards
}

pub fn hf_config_json(cfg: &ModelConfig) -> serde_json::Value {
    let layer_types: Vec<&str> = cfg
        .layer_types
        .iter()
        .map(|k| match k {
            AttentionKind::Sliding => "sliding_attention",
            AttentionKind::Full => "full_attention",
        })
        .collect();
    let mut v = json!({
        "architectures": ["GptOssForCausalLM"],
        "attention_bias": true,
        "attention_dropout": 0.0,
        "eos_token_id": 200002,
        "experts_per_token": cfg.num_experts_per_tok,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "hidden_size": cfg.hidden_size,
        "initial_context_length": cfg.rope.original_max_position_embeddings,
        "initializer_range": 0.02,
        "intermediate_size": cfg.intermediate_size,
        "layer_types": layer_types,
        "max_position_embeddings": cfg.max_position_embeddings,
        "model_type": "gpt_oss",
        "num_attention_heads": cfg.num_attention_heads,
        "num_experts_per_tok": cfg.num_experts_per_tok,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads,
        "num_local_experts": cfg.num_local_experts,
        "output_router_logits": false,
        "pad_token_id": 199999,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_scaling": {
            "beta_fast": cfg.rope.beta_fast,
            "beta_slow": cfg.rope.beta_slow,
            "factor": cfg.rope.factor,
            "original_max_position_embeddings": cfg.rope.original_max_position_embeddings,
            "rope_type": "yarn",
            "truncate": cfg.rope.truncate
        },
        "rope_theta": cfg.rope.theta,
        "router_aux_loss_coef": 0.9,
        "sliding_window": cfg.sliding_window,
        "swiglu_limit": cfg.swiglu_limit,
        "tie_word_embeddings": false,
        "transformers_version": "4.55.0.dev0",
        "use_cache": true,
        "vocab_size": cfg.vocab_size
    });
    if cfg.expert_format == ExpertFormat::Mxfp4 {
        v["quantization_config"] = json!({
            "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                       "model.embed_tokens", "lm_head"],
            "quant_method": "mxfp4"
        });
    }
    v
}

fn original_config_json(cfg: &ModelConfig) -> serde_json::Value {
    json!({
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_experts": cfg.num_local_experts,
        "experts_per_token": cfg.num_experts_per_tok,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "swiglu_limit": cfg.swiglu_limit,
        "head_dim": cfg.head_dim,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "sliding_window": cfg.sliding_window,
        "initial_context_length": cfg.rope.original_max_position_embeddings,
        "rope_theta": cfg.rope.theta,
        "rope_scaling_factor": cfg.rope.factor,
        "rope_ntk_alpha": cfg.rope.beta_slow,
        "rope_ntk_beta": cfg.rope.beta_fast
    })
}

/// How one logical tensor's values are drawn.
#[derive(Clone, Copy)]
enum Fill {
    /// bf16, uniform in `center ± amplitude`.
    Uniform { center: f32, amplitude: f32 },
    /// Raw random bytes (MXFP4 nibbles: every E2M1 code equally likely).
    Nibbles,
    /// E8M0 scale bytes: `base` plus a random step of -1, 0 or +1.
    Scales { base: u8 },
}

/// Uniform amplitude for a given standard deviation.
fn amp(std: f32) -> f32 {
    std * 3f32.sqrt()
}

/// Scale exponent that gives MXFP4 weights a standard deviation near `1/sqrt(fan_in)`. A
/// uniformly random E2M1 code has RMS value sqrt(68.5/8) ≈ 2.93.
fn scale_base(fan_in: usize) -> u8 {
    let target = 1.0 / ((fan_in as f64).sqrt() * (68.5f64 / 8.0).sqrt());
    (127.0 + target.log2().round()) as u8
}

/// The fill of a logical (Hugging Face named) tensor.
fn fill_for(cfg: &ModelConfig, role: Role) -> Fill {
    let h = cfg.hidden_size as f32;
    let uni = |center: f32, amplitude: f32| Fill::Uniform { center, amplitude };
    match role {
        Role::Embedding => uni(0.0, 1.0),
        Role::AttnNorm(_) | Role::MlpNorm(_) | Role::FinalNorm => uni(1.0, 0.2),
        Role::QWeight(_) | Role::KWeight(_) | Role::VWeight(_) | Role::RouterWeight(_) => {
            uni(0.0, amp(1.0 / h.sqrt()))
        }
        Role::OWeight(_) => uni(0.0, amp(1.0 / (cfg.q_dim() as f32).sqrt())),
        Role::QBias(_) | Role::KBias(_) | Role::VBias(_) | Role::OBias(_) => uni(0.0, 0.1),
        Role::RouterBias(_) | Role::GateUpBias(_) | Role::DownBias(_) => uni(0.0, 0.1),
        Role::Sinks(_) => uni(0.0, 2.0),
        Role::Unembedding => uni(0.0, amp(3.0 / h.sqrt())),
        Role::GateUpBlocks(_) | Role::DownBlocks(_) => Fill::Nibbles,
        Role::GateUpScales(_) => Fill::Scales {
            base: scale_base(cfg.hidden_size),
        },
        Role::DownScales(_) => Fill::Scales {
            base: scale_base(cfg.intermediate_size),
        },
        Role::QkvWeight(_) | Role::QkvBias(_) | Role::GateUpDense(_) | Role::DownDense(_) => {
            unreachable!("composite tensors are drawn from their parts")
        }
    }
}

struct Stream {
    rng: Xoshiro256PlusPlus,
    fill: Fill,
}

impl Stream {
    fn new(cfg: &ModelConfig, seed: u64, role: Role) -> Stream {
        // The stream is keyed by the Hugging Face (MXFP4) name of the logical tensor, so every
        // layout and expert format of one seed draws the same numbers. FNV-1a of the name,
        // mixed with the seed; Xoshiro's own seeding expands it.
        let key = tensor_name(role, Layout::Hf).expect("logical tensors have Hugging Face names");
        let mut h: u64 = 0xcbf29ce484222325;
        for b in key.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        Stream {
            rng: Xoshiro256PlusPlus::seed_from_u64(h ^ seed.wrapping_mul(0x9E3779B97F4A7C15)),
            fill: fill_for(cfg, role),
        }
    }

    /// Appends `n` elements' bytes (bf16: 2 bytes each; nibbles and scales: 1) to `out`.
    fn fill(&mut self, n: usize, out: &mut Vec<u8>) {
        match self.fill {
            Fill::Uniform { center, amplitude } => {
                for _ in 0..n {
                    // 24 random bits → [0, 1) exactly representable in f32.
                    let u = (self.rng.next_u64() >> 40) as f32 / (1u32 << 24) as f32;
                    let x = center + amplitude * (2.0 * u - 1.0);
                    out.extend_from_slice(&half::bf16::from_f32(x).to_bits().to_le_bytes());
                }
            }
            Fill::Nibbles => {
                let start = out.len();
                out.resize(start + n, 0);
                for chunk in out[start..].chunks_mut(8) {
                    let r = self.rng.next_u64().to_le_bytes();
                    chunk.copy_from_slice(&r[..chunk.len()]);
                }
            }
            Fill::Scales { base } => {
                for _ in 0..n {
                    let step = (self.rng.next_u64() % 3) as u8;
                    out.push(base + step - 1);
                }
            }
        }
    }
}

/// Writes one stored tensor, drawing its values from the logical streams it is made of.
fn write_tensor(
    cfg: &ModelConfig,
    seed: u64,
    spec: &TensorSpec,
    w: &mut SafetensorsWriter,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let mut buf = Vec::with_capacity(2 * CHUNK);
    let mut emit = |stream: &mut Stream, mut n: usize, w: &mut SafetensorsWriter| -> Result<()> {
        while n > 0 {
            let take = n.min(CHUNK);
            buf.clear();
            stream.fill(take, &mut buf);
            w.write(&buf)?;
            progress(buf.len() as u64);
            n -= take;
        }
        Ok(())
    };
    let (qd, kvd, h) = (cfg.q_dim(), cfg.kv_dim(), cfg.hidden_size);
    match spec.role {
        Role::QkvWeight(l) => {
            for (role, rows) in [
                (Role::QWeight(l), qd),
                (Role::KWeight(l), kvd),
                (Role::VWeight(l), kvd),
            ] {
                emit(&mut Stream::new(cfg, seed, role), rows * h, w)?;
            }
        }
        Role::QkvBias(l) => {
            for (role, rows) in [
                (Role::QBias(l), qd),
                (Role::KBias(l), kvd),
                (Role::VBias(l), kvd),
            ] {
                emit(&mut Stream::new(cfg, seed, role), rows, w)?;
            }
        }
        Role::GateUpDense(l) => write_dense_experts(
            cfg,
            seed,
            Role::GateUpBlocks(l),
            Role::GateUpScales(l),
            2 * cfg.intermediate_size,
            h,
            w,
            progress,
        )?,
        Role::DownDense(l) => write_dense_experts(
            cfg,
            seed,
            Role::DownBlocks(l),
            Role::DownScales(l),
            h,
            cfg.intermediate_size,
            w,
            progress,
        )?,
        role => emit(&mut Stream::new(cfg, seed, role), spec.numel(), w)?,
    }
    Ok(())
}

/// Dense bf16 experts `[E, in, out]` holding exactly the values the MXFP4 tensors of the same
/// seed decode to (E2M1 times a power of two is exact in bf16), so both formats of one seed
/// describe the same model.
#[allow(clippy::too_many_arguments)]
fn write_dense_experts(
    cfg: &ModelConfig,
    seed: u64,
    blocks_role: Role,
    scales_role: Role,
    rows: usize,
    cols: usize,
    w: &mut SafetensorsWriter,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let mut blocks = Stream::new(cfg, seed, blocks_role);
    let mut scales = Stream::new(cfg, seed, scales_role);
    let groups = cols / 32;
    let (mut b, mut s) = (Vec::new(), Vec::new());
    let mut out = vec![0u8; rows * cols * 2];
    for _expert in 0..cfg.num_local_experts {
        b.clear();
        s.clear();
        blocks.fill(rows * groups * 16, &mut b);
        scales.fill(rows * groups, &mut s);
        for r in 0..rows {
            for c in 0..cols {
                let (g, j) = (c / 32, c % 32);
                let byte = b[(r * groups + g) * 16 + j / 2];
                let nibble = if j % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                let x = gossamer_kernels::mxfp4::decode(nibble, s[r * groups + g]);
                let at = (c * rows + r) * 2;
                out[at..at + 2].copy_from_slice(&half::bf16::from_f32(x).to_bits().to_le_bytes());
            }
        }
        w.write(&out)?;
        progress(out.len() as u64);
    }
    Ok(())
}

/// A scratch directory path for tests and tools: `<tmp>/gossamer-<preset>-s<seed>-<tag>`.
pub fn default_dir(opts: &SynthOptions, tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "gossamer-{}-s{}-{tag}",
        opts.preset.name(),
        opts.seed
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_bases_match_fan_in() {
        // fan-in 2880: target std 0.00636 → 2^-7; fan-in 128: 0.030 → 2^-5.
        assert_eq!(scale_base(2880), 120);
        assert_eq!(scale_base(128), 122);
    }

    #[test]
    fn shard_names_count_from_zero() {
        assert_eq!(
            shard_names(Layout::Hf, 3),
            [
                "model-00000-of-00002.safetensors",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"
            ]
        );
        assert_eq!(shard_names(Layout::Hf, 1), ["model.safetensors"]);
        assert_eq!(
            shard_names(Layout::Original, 2)[0],
            "model--00001-of-00002.safetensors"
        );
    }

    #[test]
    fn official_20b_shards_into_three_files() {
        let cfg = Preset::Gpt20b.config();
        let specs = expected_tensors(&cfg, Layout::Hf);
        assert_eq!(split_into_shards(&specs, 5_000_000_000).len(), 3);
    }
}
