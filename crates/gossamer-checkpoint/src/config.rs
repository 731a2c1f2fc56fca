//! The model configuration, read from Hugging Face `config.json` or the OpenAI reference's
//! `original/config.json` into one struct (spec §1.2, §1.3).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{io_err, CheckpointError, Result};

/// How the expert matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpertFormat {
    /// `*_blocks` + `*_scales` (OCP MXFP4), `[E, out, in/32, 16]`, as published.
    Mxfp4,
    /// Dense bf16 `gate_up_proj` `[E, in, out]` and `down_proj` `[E, in, out]` (fine-tunes).
    Bf16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    Sliding,
    Full,
}

/// YaRN rotary embedding parameters (spec §2.3 step 4).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RopeConfig {
    pub theta: f64,
    pub factor: f64,
    pub beta_fast: f64,
    pub beta_slow: f64,
    pub original_max_position_embeddings: usize,
    /// Round the correction range to integers (Hugging Face's default when the key is absent;
    /// gpt-oss sets it to false and the OpenAI reference never rounds).
    pub truncate: bool,
    /// Overrides the default concentration `0.1·ln(factor) + 1` when the config gives one.
    pub attention_factor: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelConfig {
    pub num_hidden_layers: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub num_local_experts: usize,
    pub num_experts_per_tok: usize,
    pub vocab_size: usize,
    pub sliding_window: usize,
    pub rms_norm_eps: f64,
    pub swiglu_limit: f32,
    pub max_position_embeddings: usize,
    pub rope: RopeConfig,
    pub layer_types: Vec<AttentionKind>,
    pub expert_format: ExpertFormat,
}

impl ModelConfig {
    /// The published gpt-oss-20b configuration (spec §1.1); 120b differs in layers and experts.
    pub fn gpt_oss_20b() -> ModelConfig {
        ModelConfig {
            num_hidden_layers: 24,
            hidden_size: 2880,
            intermediate_size: 2880,
            num_attention_heads: 64,
            num_key_value_heads: 8,
            head_dim: 64,
            num_local_experts: 32,
            num_experts_per_tok: 4,
            vocab_size: 201088,
            sliding_window: 128,
            rms_norm_eps: 1e-5,
            swiglu_limit: 7.0,
            max_position_embeddings: 131072,
            rope: RopeConfig {
                theta: 150000.0,
                factor: 32.0,
                beta_fast: 32.0,
                beta_slow: 1.0,
                original_max_position_embeddings: 4096,
                truncate: false,
                attention_factor: None,
            },
            layer_types: alternating_layers(24),
            expert_format: ExpertFormat::Mxfp4,
        }
    }

    /// Width of the fused q/k/v output.
    pub fn qkv_dim(&self) -> usize {
        (self.num_attention_heads + 2 * self.num_key_value_heads) * self.head_dim
    }

    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    fn check(&self, path: &Path) -> Result<()> {
        let fail = |message: String| {
            Err(CheckpointError::Config {
                path: path.to_path_buf(),
                message,
            })
        };
        let positive = [
            ("num_hidden_layers", self.num_hidden_layers),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("num_local_experts", self.num_local_experts),
            ("num_experts_per_tok", self.num_experts_per_tok),
            ("vocab_size", self.vocab_size),
            ("sliding_window", self.sliding_window),
        ];
        for (key, v) in positive {
            if v == 0 {
                return fail(format!("`{key}` must be positive"));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return fail(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return fail(format!(
                "head_dim ({}) must be even for RoPE",
                self.head_dim
            ));
        }
        if self.num_experts_per_tok > self.num_local_experts {
            return fail(format!(
                "num_experts_per_tok ({}) exceeds num_local_experts ({})",
                self.num_experts_per_tok, self.num_local_experts
            ));
        }
        if self.expert_format == ExpertFormat::Mxfp4
            && (!self.hidden_size.is_multiple_of(32) || !self.intermediate_size.is_multiple_of(32))
        {
            return fail(format!(
                "MXFP4 needs hidden_size ({}) and intermediate_size ({}) to be multiples of 32",
                self.hidden_size, self.intermediate_size
            ));
        }
        if self.layer_types.len() != self.num_hidden_layers {
            return fail(format!(
                "layer_types has {} entries but num_hidden_layers is {}",
                self.layer_types.len(),
                self.num_hidden_layers
            ));
        }
        Ok(())
    }

    /// Parses a Hugging Face `config.json`.
    pub fn from_hf_file(path: &Path) -> Result<ModelConfig> {
        let value = read_json(path)?;
        let cfg = Self::from_hf_value(&value, path)?;
        cfg.check(path)?;
        Ok(cfg)
    }

    /// Parses the OpenAI reference `original/config.json`.
    pub fn from_original_file(path: &Path) -> Result<ModelConfig> {
        let value = read_json(path)?;
        let raw: OriginalConfig =
            serde_json::from_value(value).map_err(|e| CheckpointError::Config {
                path: path.to_path_buf(),
                message: format!("not a gpt-oss original config: {e}"),
            })?;
        let layers = raw.num_hidden_layers;
        let cfg = ModelConfig {
            num_hidden_layers: layers,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads,
            head_dim: raw.head_dim,
            num_local_experts: raw.num_experts,
            num_experts_per_tok: raw.experts_per_token,
            vocab_size: raw.vocab_size,
            sliding_window: raw.sliding_window,
            rms_norm_eps: 1e-5,
            swiglu_limit: raw.swiglu_limit,
            max_position_embeddings: (raw.initial_context_length as f64 * raw.rope_scaling_factor)
                as usize,
            rope: RopeConfig {
                theta: raw.rope_theta,
                factor: raw.rope_scaling_factor,
                beta_fast: raw.rope_ntk_beta,
                beta_slow: raw.rope_ntk_alpha,
                original_max_position_embeddings: raw.initial_context_length,
                truncate: false,
                attention_factor: None,
            },
            layer_types: alternating_layers(layers),
            // The reference format always stores MXFP4 experts.
            expert_format: ExpertFormat::Mxfp4,
        };
        cfg.check(path)?;
        Ok(cfg)
    }

    fn from_hf_value(v: &Value, path: &Path) -> Result<ModelConfig> {
        let cfg_err = |message: String| CheckpointError::Config {
            path: path.to_path_buf(),
            message,
        };
        if !v.is_object() {
            return Err(cfg_err("top level is not a JSON object".into()));
        }
        if let Some(mt) = v.get("model_type").and_then(Value::as_str) {
            if mt != "gpt_oss" {
                return Err(cfg_err(format!(
                    "model_type is `{mt}`, not `gpt_oss`: gossamer runs gpt-oss models only"
                )));
            }
        }
        let usize_key = |key: &str| -> Result<usize> {
            match v.get(key) {
                Some(x) => x.as_u64().map(|n| n as usize).ok_or_else(|| {
                    cfg_err(format!("`{key}` must be a non-negative integer, got {x}"))
                }),
                None => Err(cfg_err(format!("missing key `{key}`"))),
            }
        };
        let f64_key = |obj: &Value, key: &str, default: Option<f64>| -> Result<f64> {
            match obj.get(key) {
                Some(x) => x
                    .as_f64()
                    .ok_or_else(|| cfg_err(format!("`{key}` must be a number, got {x}"))),
                None => default.ok_or_else(|| cfg_err(format!("missing key `{key}`"))),
            }
        };

        let layers = usize_key("num_hidden_layers")?;
        let experts_per_tok = match v.get("num_experts_per_tok") {
            Some(_) => usize_key("num_experts_per_tok")?,
            None => usize_key("experts_per_token")?,
        };
        let head_dim = match v.get("head_dim") {
            Some(_) => usize_key("head_dim")?,
            None => usize_key("hidden_size")? / usize_key("num_attention_heads")?,
        };

        // Newer transformers write `rope_parameters` (with rope_theta inside); older ones
        // `rope_scaling` plus a top-level `rope_theta`. Accept both.
        let rope_obj = v
            .get("rope_parameters")
            .filter(|x| !x.is_null())
            .or_else(|| v.get("rope_scaling").filter(|x| !x.is_null()));
        let rope = match rope_obj {
            Some(r) => {
                let rope_type = r
                    .get("rope_type")
                    .or_else(|| r.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("yarn");
                if rope_type != "yarn" {
                    return Err(cfg_err(format!(
                        "rope type `{rope_type}` is not supported (gpt-oss uses yarn)"
                    )));
                }
                let theta = match r.get("rope_theta") {
                    Some(_) => f64_key(r, "rope_theta", None)?,
                    None => f64_key(v, "rope_theta", None)?,
                };
                let original = match r.get("original_max_position_embeddings") {
                    Some(x) => x.as_u64().ok_or_else(|| {
                        cfg_err(format!(
                            "`original_max_position_embeddings` must be an integer, got {x}"
                        ))
                    })? as usize,
                    None => usize_key("initial_context_length")?,
                };
                RopeConfig {
                    theta,
                    factor: f64_key(r, "factor", None)?,
                    beta_fast: f64_key(r, "beta_fast", Some(32.0))?,
                    beta_slow: f64_key(r, "beta_slow", Some(1.0))?,
                    original_max_position_embeddings: original,
                    truncate: r.get("truncate").and_then(Value::as_bool).unwrap_or(true),
                    attention_factor: r.get("attention_factor").and_then(Value::as_f64),
                }
            }
            None => {
                return Err(cfg_err(
                    "missing `rope_scaling` / `rope_parameters` (gpt-oss uses yarn)".into(),
                ))
            }
        };

        let layer_types = match v.get("layer_types") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|t| match t.as_str() {
                    Some("sliding_attention") => Ok(AttentionKind::Sliding),
                    Some("full_attention") => Ok(AttentionKind::Full),
                    _ => Err(cfg_err(format!("unknown layer type {t} in `layer_types`"))),
                })
                .collect::<Result<Vec<_>>>()?,
            Some(other) => {
                return Err(cfg_err(format!(
                    "`layer_types` must be a list, got {other}"
                )))
            }
            None => alternating_layers(layers),
        };

        let expert_format = match v.get("quantization_config").filter(|q| !q.is_null()) {
            None => ExpertFormat::Bf16,
            Some(q) => match q.get("quant_method").and_then(Value::as_str) {
                Some("mxfp4") => ExpertFormat::Mxfp4,
                Some(other) => {
                    return Err(CheckpointError::UnknownQuantMethod {
                        path: path.to_path_buf(),
                        method: other.to_string(),
                    })
                }
                None => {
                    return Err(CheckpointError::UnknownQuantMethod {
                        path: path.to_path_buf(),
                        method: format!("{}", q.get("quant_method").unwrap_or(&Value::Null)),
                    })
                }
            },
        };

        Ok(ModelConfig {
            num_hidden_layers: layers,
            hidden_size: usize_key("hidden_size")?,
            intermediate_size: usize_key("intermediate_size")?,
            num_attention_heads: usize_key("num_attention_heads")?,
            num_key_value_heads: usize_key("num_key_value_heads")?,
            head_dim,
            num_local_experts: usize_key("num_local_experts")?,
            num_experts_per_tok: experts_per_tok,
            vocab_size: usize_key("vocab_size")?,
            sliding_window: usize_key("sliding_window")?,
            rms_norm_eps: f64_key(v, "rms_norm_eps", Some(1e-5))?,
            swiglu_limit: f64_key(v, "swiglu_limit", Some(7.0))? as f32,
            max_position_embeddings: match v.get("max_position_embeddings") {
                Some(_) => usize_key("max_position_embeddings")?,
                None => 131072,
            },
            rope,
            layer_types,
            expert_format,
        })
    }
}

/// gpt-oss alternates sliding (even layers) and full attention (odd layers).
pub fn alternating_layers(n: usize) -> Vec<AttentionKind> {
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                AttentionKind::Sliding
            } else {
                AttentionKind::Full
            }
        })
        .collect()
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&text).map_err(|source| CheckpointError::Json {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Deserialize)]
struct OriginalConfig {
    num_hidden_layers: usize,
    num_experts: usize,
    experts_per_token: usize,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    swiglu_limit: f32,
    head_dim: usize,
    num_attention_heads: usize,
    num_key_value_heads: usize,
    sliding_window: usize,
    initial_context_length: usize,
    rope_theta: f64,
    rope_scaling_factor: f64,
    rope_ntk_alpha: f64,
    rope_ntk_beta: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn official_20b() -> Value {
        serde_json::json!({
            "architectures": ["GptOssForCausalLM"], "attention_bias": true,
            "eos_token_id": 200002, "experts_per_token": 4, "head_dim": 64,
            "hidden_act": "silu", "hidden_size": 2880, "initial_context_length": 4096,
            "intermediate_size": 2880,
            "layer_types": alternating_layers(24).iter().map(|k| match k {
                AttentionKind::Sliding => "sliding_attention", AttentionKind::Full => "full_attention"
            }).collect::<Vec<_>>(),
            "max_position_embeddings": 131072, "model_type": "gpt_oss",
            "num_attention_heads": 64, "num_experts_per_tok": 4, "num_hidden_layers": 24,
            "num_key_value_heads": 8, "num_local_experts": 32,
            "quantization_config": {"quant_method": "mxfp4"},
            "rms_norm_eps": 1e-05,
            "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
                "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": false},
            "rope_theta": 150000, "sliding_window": 128, "swiglu_limit": 7.0,
            "tie_word_embeddings": false, "vocab_size": 201088
        })
    }

    #[test]
    fn parses_official_config() {
        let cfg = ModelConfig::from_hf_value(&official_20b(), Path::new("config.json")).unwrap();
        assert_eq!(cfg.num_hidden_layers, 24);
        assert_eq!(cfg.qkv_dim(), 5120);
        assert_eq!(cfg.rope.theta, 150000.0);
        assert!(!cfg.rope.truncate);
        assert_eq!(cfg.expert_format, ExpertFormat::Mxfp4);
        assert_eq!(cfg.layer_types[0], AttentionKind::Sliding);
        assert_eq!(cfg.layer_types[1], AttentionKind::Full);
    }

    #[test]
    fn accepts_rope_parameters_spelling() {
        let mut v = official_20b();
        let obj = v.as_object_mut().unwrap();
        let mut rope = obj.remove("rope_scaling").unwrap();
        obj.remove("rope_theta");
        rope.as_object_mut()
            .unwrap()
            .insert("rope_theta".into(), 150000.0.into());
        obj.insert("rope_parameters".into(), rope);
        let a = ModelConfig::from_hf_value(&v, Path::new("c")).unwrap();
        let b = ModelConfig::from_hf_value(&official_20b(), Path::new("c")).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_unknown_quant_method() {
        let mut v = official_20b();
        v["quantization_config"]["quant_method"] = "gptq".into();
        let err = ModelConfig::from_hf_value(&v, Path::new("m/config.json")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "m/config.json: unknown quant_method `gptq` (supported: mxfp4, or no quantization_config for bf16 weights)"
        );
    }

    #[test]
    fn missing_key_is_named() {
        let mut v = official_20b();
        v.as_object_mut().unwrap().remove("hidden_size");
        let err = ModelConfig::from_hf_value(&v, Path::new("config.json")).unwrap_err();
        assert!(
            err.to_string().contains("missing key `hidden_size`"),
            "{err}"
        );
    }
}
