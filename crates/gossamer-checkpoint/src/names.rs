//! Tensor names and shapes of the two published layouts (spec §3.1, §3.2), derived from the
//! config. One table drives both loading and the random-checkpoint generator, so the two
//! cannot drift apart.

use crate::config::{ExpertFormat, ModelConfig};
use crate::safetensors::Dtype;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Hugging Face: `model.layers.N.*`, split q/k/v, `config.json` at the root.
    Hf,
    /// OpenAI reference: `block.N.*`, fused qkv, `original/config.json`.
    Original,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Hf => "hf",
            Layout::Original => "original",
        })
    }
}

/// What a stored tensor is, independent of its name in a given layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Embedding,
    FinalNorm,
    Unembedding,
    AttnNorm(usize),
    /// Fused q/k/v (original layout only).
    QkvWeight(usize),
    QkvBias(usize),
    QWeight(usize),
    QBias(usize),
    KWeight(usize),
    KBias(usize),
    VWeight(usize),
    VBias(usize),
    OWeight(usize),
    OBias(usize),
    Sinks(usize),
    MlpNorm(usize),
    RouterWeight(usize),
    RouterBias(usize),
    GateUpBlocks(usize),
    GateUpScales(usize),
    /// Dense bf16 `[E, in, out]` (fine-tunes without MXFP4).
    GateUpDense(usize),
    GateUpBias(usize),
    DownBlocks(usize),
    DownScales(usize),
    DownDense(usize),
    DownBias(usize),
}

#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub role: Role,
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Every tensor a checkpoint of this config and layout must contain, in file order.
pub fn expected_tensors(cfg: &ModelConfig, layout: Layout) -> Vec<TensorSpec> {
    let h = cfg.hidden_size;
    let i2 = 2 * cfg.intermediate_size;
    let e = cfg.num_local_experts;
    let (q, kv) = (cfg.q_dim(), cfg.kv_dim());
    let mut out = Vec::new();
    let mut push = |role: Role, name: String, dtype: Dtype, shape: Vec<usize>| {
        out.push(TensorSpec {
            role,
            name,
            dtype,
            shape,
        })
    };
    let bf = Dtype::BF16;
    match layout {
        Layout::Hf => push(
            Role::Embedding,
            "model.embed_tokens.weight".into(),
            bf,
            vec![cfg.vocab_size, h],
        ),
        Layout::Original => push(
            Role::Embedding,
            "embedding.weight".into(),
            bf,
            vec![cfg.vocab_size, h],
        ),
    }
    for l in 0..cfg.num_hidden_layers {
        match layout {
            Layout::Hf => {
                let p = format!("model.layers.{l}");
                push(
                    Role::AttnNorm(l),
                    format!("{p}.input_layernorm.weight"),
                    bf,
                    vec![h],
                );
                push(
                    Role::QWeight(l),
                    format!("{p}.self_attn.q_proj.weight"),
                    bf,
                    vec![q, h],
                );
                push(
                    Role::QBias(l),
                    format!("{p}.self_attn.q_proj.bias"),
                    bf,
                    vec![q],
                );
                push(
                    Role::KWeight(l),
                    format!("{p}.self_attn.k_proj.weight"),
                    bf,
                    vec![kv, h],
                );
                push(
                    Role::KBias(l),
                    format!("{p}.self_attn.k_proj.bias"),
                    bf,
                    vec![kv],
                );
                push(
                    Role::VWeight(l),
                    format!("{p}.self_attn.v_proj.weight"),
                    bf,
                    vec![kv, h],
                );
                push(
                    Role::VBias(l),
                    format!("{p}.self_attn.v_proj.bias"),
                    bf,
                    vec![kv],
                );
                push(
                    Role::OWeight(l),
                    format!("{p}.self_attn.o_proj.weight"),
                    bf,
                    vec![h, q],
                );
                push(
                    Role::OBias(l),
                    format!("{p}.self_attn.o_proj.bias"),
                    bf,
                    vec![h],
                );
                push(
                    Role::Sinks(l),
                    format!("{p}.self_attn.sinks"),
                    bf,
                    vec![cfg.num_attention_heads],
                );
                push(
                    Role::MlpNorm(l),
                    format!("{p}.post_attention_layernorm.weight"),
                    bf,
                    vec![h],
                );
                push(
                    Role::RouterWeight(l),
                    format!("{p}.mlp.router.weight"),
                    bf,
                    vec![e, h],
                );
                push(
                    Role::RouterBias(l),
                    format!("{p}.mlp.router.bias"),
                    bf,
                    vec![e],
                );
                let x = format!("{p}.mlp.experts");
                match cfg.expert_format {
                    ExpertFormat::Mxfp4 => {
                        push(
                            Role::GateUpBlocks(l),
                            format!("{x}.gate_up_proj_blocks"),
                            Dtype::U8,
                            vec![e, i2, h / 32, 16],
                        );
                        push(
                            Role::GateUpScales(l),
                            format!("{x}.gate_up_proj_scales"),
                            Dtype::U8,
                            vec![e, i2, h / 32],
                        );
                        push(
                            Role::GateUpBias(l),
                            format!("{x}.gate_up_proj_bias"),
                            bf,
                            vec![e, i2],
                        );
                        push(
                            Role::DownBlocks(l),
                            format!("{x}.down_proj_blocks"),
                            Dtype::U8,
                            vec![e, h, cfg.intermediate_size / 32, 16],
                        );
                        push(
                            Role::DownScales(l),
                            format!("{x}.down_proj_scales"),
                            Dtype::U8,
                            vec![e, h, cfg.intermediate_size / 32],
                        );
                        push(
                            Role::DownBias(l),
                            format!("{x}.down_proj_bias"),
                            bf,
                            vec![e, h],
                        );
                    }
                    ExpertFormat::Bf16 => {
                        push(
                            Role::GateUpDense(l),
                            format!("{x}.gate_up_proj"),
                            bf,
                            vec![e, h, i2],
                        );
                        push(
                            Role::GateUpBias(l),
                            format!("{x}.gate_up_proj_bias"),
                            bf,
                            vec![e, i2],
                        );
                        push(
                            Role::DownDense(l),
                            format!("{x}.down_proj"),
                            bf,
                            vec![e, cfg.intermediate_size, h],
                        );
                        push(
                            Role::DownBias(l),
                            format!("{x}.down_proj_bias"),
                            bf,
                            vec![e, h],
                        );
                    }
                }
            }
            Layout::Original => {
                let p = format!("block.{l}");
                let qkv = cfg.qkv_dim();
                push(
                    Role::AttnNorm(l),
                    format!("{p}.attn.norm.scale"),
                    bf,
                    vec![h],
                );
                push(
                    Role::QkvWeight(l),
                    format!("{p}.attn.qkv.weight"),
                    bf,
                    vec![qkv, h],
                );
                push(
                    Role::QkvBias(l),
                    format!("{p}.attn.qkv.bias"),
                    bf,
                    vec![qkv],
                );
                push(
                    Role::Sinks(l),
                    format!("{p}.attn.sinks"),
                    bf,
                    vec![cfg.num_attention_heads],
                );
                push(
                    Role::OWeight(l),
                    format!("{p}.attn.out.weight"),
                    bf,
                    vec![h, q],
                );
                push(Role::OBias(l), format!("{p}.attn.out.bias"), bf, vec![h]);
                push(Role::MlpNorm(l), format!("{p}.mlp.norm.scale"), bf, vec![h]);
                push(
                    Role::RouterWeight(l),
                    format!("{p}.mlp.gate.weight"),
                    bf,
                    vec![e, h],
                );
                push(
                    Role::RouterBias(l),
                    format!("{p}.mlp.gate.bias"),
                    bf,
                    vec![e],
                );
                push(
                    Role::GateUpBlocks(l),
                    format!("{p}.mlp.mlp1_weight.blocks"),
                    Dtype::U8,
                    vec![e, i2, h / 32, 16],
                );
                push(
                    Role::GateUpScales(l),
                    format!("{p}.mlp.mlp1_weight.scales"),
                    Dtype::U8,
                    vec![e, i2, h / 32],
                );
                push(
                    Role::GateUpBias(l),
                    format!("{p}.mlp.mlp1_bias"),
                    bf,
                    vec![e, i2],
                );
                push(
                    Role::DownBlocks(l),
                    format!("{p}.mlp.mlp2_weight.blocks"),
                    Dtype::U8,
                    vec![e, h, cfg.intermediate_size / 32, 16],
                );
                push(
                    Role::DownScales(l),
                    format!("{p}.mlp.mlp2_weight.scales"),
                    Dtype::U8,
                    vec![e, h, cfg.intermediate_size / 32],
                );
                push(
                    Role::DownBias(l),
                    format!("{p}.mlp.mlp2_bias"),
                    bf,
                    vec![e, h],
                );
            }
        }
    }
    match layout {
        Layout::Hf => {
            push(Role::FinalNorm, "model.norm.weight".into(), bf, vec![h]);
            push(
                Role::Unembedding,
                "lm_head.weight".into(),
                bf,
                vec![cfg.vocab_size, h],
            );
        }
        Layout::Original => {
            push(Role::FinalNorm, "norm.scale".into(), bf, vec![h]);
            push(
                Role::Unembedding,
                "unembedding.weight".into(),
                bf,
                vec![cfg.vocab_size, h],
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_tensor_counts_and_bytes() {
        let cfg = ModelConfig::gpt_oss_20b();
        let hf = expected_tensors(&cfg, Layout::Hf);
        assert_eq!(hf.len(), 459);
        let orig = expected_tensors(&cfg, Layout::Original);
        assert_eq!(orig.len(), 24 * 15 + 3);
        // Spec §5.2: MXFP4 blocks + scales + BF16 payload of the 20b checkpoint.
        let payload: usize = hf.iter().map(|t| t.numel() * t.dtype.size()).sum();
        assert_eq!(payload, 13_761_264_768);
        let orig_payload: usize = orig.iter().map(|t| t.numel() * t.dtype.size()).sum();
        assert_eq!(orig_payload, payload);
    }
}
