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
    let mut roles = vec![Role::Embedding];
    for l in 0..cfg.num_hidden_layers {
        let attention: &[Role] = match layout {
            Layout::Hf => &[
                Role::AttnNorm(l),
                Role::QWeight(l),
                Role::QBias(l),
                Role::KWeight(l),
                Role::KBias(l),
                Role::VWeight(l),
                Role::VBias(l),
                Role::OWeight(l),
                Role::OBias(l),
                Role::Sinks(l),
            ],
            Layout::Original => &[
                Role::AttnNorm(l),
                Role::QkvWeight(l),
                Role::QkvBias(l),
                Role::Sinks(l),
                Role::OWeight(l),
                Role::OBias(l),
            ],
        };
        roles.extend_from_slice(attention);
        roles.extend([Role::MlpNorm(l), Role::RouterWeight(l), Role::RouterBias(l)]);
        match cfg.expert_format {
            ExpertFormat::Mxfp4 => roles.extend([
                Role::GateUpBlocks(l),
                Role::GateUpScales(l),
                Role::GateUpBias(l),
                Role::DownBlocks(l),
                Role::DownScales(l),
                Role::DownBias(l),
            ]),
            ExpertFormat::Bf16 => roles.extend([
                Role::GateUpDense(l),
                Role::GateUpBias(l),
                Role::DownDense(l),
                Role::DownBias(l),
            ]),
        }
    }
    roles.extend([Role::FinalNorm, Role::Unembedding]);
    roles
        .into_iter()
        .map(|role| {
            let (dtype, shape) = dtype_and_shape(cfg, role);
            TensorSpec {
                role,
                name: tensor_name(role, layout).expect("role stored in this layout"),
                dtype,
                shape,
            }
        })
        .collect()
}

/// The stored element type and shape of a role's tensor.
pub fn dtype_and_shape(cfg: &ModelConfig, role: Role) -> (Dtype, Vec<usize>) {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let e = cfg.num_local_experts;
    let (q, kv) = (cfg.q_dim(), cfg.kv_dim());
    let bf = |shape: Vec<usize>| (Dtype::BF16, shape);
    let u8 = |shape: Vec<usize>| (Dtype::U8, shape);
    match role {
        Role::Embedding | Role::Unembedding => bf(vec![cfg.vocab_size, h]),
        Role::FinalNorm | Role::AttnNorm(_) | Role::MlpNorm(_) | Role::OBias(_) => bf(vec![h]),
        Role::QkvWeight(_) => bf(vec![cfg.qkv_dim(), h]),
        Role::QkvBias(_) => bf(vec![cfg.qkv_dim()]),
        Role::QWeight(_) => bf(vec![q, h]),
        Role::QBias(_) => bf(vec![q]),
        Role::KWeight(_) | Role::VWeight(_) => bf(vec![kv, h]),
        Role::KBias(_) | Role::VBias(_) => bf(vec![kv]),
        Role::OWeight(_) => bf(vec![h, q]),
        Role::Sinks(_) => bf(vec![cfg.num_attention_heads]),
        Role::RouterWeight(_) => bf(vec![e, h]),
        Role::RouterBias(_) => bf(vec![e]),
        // MXFP4 keeps [out, in] with 32-element blocks along `in`.
        Role::GateUpBlocks(_) => u8(vec![e, 2 * i, h / 32, 16]),
        Role::GateUpScales(_) => u8(vec![e, 2 * i, h / 32]),
        Role::DownBlocks(_) => u8(vec![e, h, i / 32, 16]),
        Role::DownScales(_) => u8(vec![e, h, i / 32]),
        // Dense experts are Hugging Face's in-memory [in, out].
        Role::GateUpDense(_) => bf(vec![e, h, 2 * i]),
        Role::DownDense(_) => bf(vec![e, i, h]),
        Role::GateUpBias(_) => bf(vec![e, 2 * i]),
        Role::DownBias(_) => bf(vec![e, h]),
    }
}

/// A role's tensor name in a layout (spec §3.1, §3.2); `None` for the roles a layout does not
/// store (split q/k/v in the reference layout, fused qkv in Hugging Face's, dense experts in
/// the reference layout).
pub fn tensor_name(role: Role, layout: Layout) -> Option<String> {
    let hf = |l: usize, suffix: &str| format!("model.layers.{l}.{suffix}");
    let orig = |l: usize, suffix: &str| format!("block.{l}.{suffix}");
    let name = match (layout, role) {
        (Layout::Hf, Role::Embedding) => "model.embed_tokens.weight".into(),
        (Layout::Hf, Role::FinalNorm) => "model.norm.weight".into(),
        (Layout::Hf, Role::Unembedding) => "lm_head.weight".into(),
        (Layout::Hf, Role::AttnNorm(l)) => hf(l, "input_layernorm.weight"),
        (Layout::Hf, Role::QWeight(l)) => hf(l, "self_attn.q_proj.weight"),
        (Layout::Hf, Role::QBias(l)) => hf(l, "self_attn.q_proj.bias"),
        (Layout::Hf, Role::KWeight(l)) => hf(l, "self_attn.k_proj.weight"),
        (Layout::Hf, Role::KBias(l)) => hf(l, "self_attn.k_proj.bias"),
        (Layout::Hf, Role::VWeight(l)) => hf(l, "self_attn.v_proj.weight"),
        (Layout::Hf, Role::VBias(l)) => hf(l, "self_attn.v_proj.bias"),
        (Layout::Hf, Role::OWeight(l)) => hf(l, "self_attn.o_proj.weight"),
        (Layout::Hf, Role::OBias(l)) => hf(l, "self_attn.o_proj.bias"),
        (Layout::Hf, Role::Sinks(l)) => hf(l, "self_attn.sinks"),
        (Layout::Hf, Role::MlpNorm(l)) => hf(l, "post_attention_layernorm.weight"),
        (Layout::Hf, Role::RouterWeight(l)) => hf(l, "mlp.router.weight"),
        (Layout::Hf, Role::RouterBias(l)) => hf(l, "mlp.router.bias"),
        (Layout::Hf, Role::GateUpBlocks(l)) => hf(l, "mlp.experts.gate_up_proj_blocks"),
        (Layout::Hf, Role::GateUpScales(l)) => hf(l, "mlp.experts.gate_up_proj_scales"),
        (Layout::Hf, Role::GateUpDense(l)) => hf(l, "mlp.experts.gate_up_proj"),
        (Layout::Hf, Role::GateUpBias(l)) => hf(l, "mlp.experts.gate_up_proj_bias"),
        (Layout::Hf, Role::DownBlocks(l)) => hf(l, "mlp.experts.down_proj_blocks"),
        (Layout::Hf, Role::DownScales(l)) => hf(l, "mlp.experts.down_proj_scales"),
        (Layout::Hf, Role::DownDense(l)) => hf(l, "mlp.experts.down_proj"),
        (Layout::Hf, Role::DownBias(l)) => hf(l, "mlp.experts.down_proj_bias"),
        (Layout::Original, Role::Embedding) => "embedding.weight".into(),
        (Layout::Original, Role::FinalNorm) => "norm.scale".into(),
        (Layout::Original, Role::Unembedding) => "unembedding.weight".into(),
        (Layout::Original, Role::AttnNorm(l)) => orig(l, "attn.norm.scale"),
        (Layout::Original, Role::QkvWeight(l)) => orig(l, "attn.qkv.weight"),
        (Layout::Original, Role::QkvBias(l)) => orig(l, "attn.qkv.bias"),
        (Layout::Original, Role::Sinks(l)) => orig(l, "attn.sinks"),
        (Layout::Original, Role::OWeight(l)) => orig(l, "attn.out.weight"),
        (Layout::Original, Role::OBias(l)) => orig(l, "attn.out.bias"),
        (Layout::Original, Role::MlpNorm(l)) => orig(l, "mlp.norm.scale"),
        (Layout::Original, Role::RouterWeight(l)) => orig(l, "mlp.gate.weight"),
        (Layout::Original, Role::RouterBias(l)) => orig(l, "mlp.gate.bias"),
        (Layout::Original, Role::GateUpBlocks(l)) => orig(l, "mlp.mlp1_weight.blocks"),
        (Layout::Original, Role::GateUpScales(l)) => orig(l, "mlp.mlp1_weight.scales"),
        (Layout::Original, Role::GateUpBias(l)) => orig(l, "mlp.mlp1_bias"),
        (Layout::Original, Role::DownBlocks(l)) => orig(l, "mlp.mlp2_weight.blocks"),
        (Layout::Original, Role::DownScales(l)) => orig(l, "mlp.mlp2_weight.scales"),
        (Layout::Original, Role::DownBias(l)) => orig(l, "mlp.mlp2_bias"),
        (Layout::Hf, Role::QkvWeight(_) | Role::QkvBias(_)) => return None,
        (
            Layout::Original,
            Role::QWeight(_)
            | Role::KWeight(_)
            | Role::VWeight(_)
            | Role::QBias(_)
            | Role::KBias(_)
            | Role::VBias(_)
            | Role::GateUpDense(_)
            | Role::DownDense(_),
        ) => return None,
    };
    Some(name)
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
