//! Parameter counts and bytes touched per decoded token (spec §5), computed from the config.

use crate::config::{ExpertFormat, ModelConfig};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Every parameter, MXFP4 weights counted as logical elements.
    pub total_params: u64,
    /// Parameters used for one token: attention, router, `top-k` experts, norms and the
    /// unembedding; the embedding table is excluded (one row is read, not a matrix product).
    pub active_params: u64,
    /// Weight bytes streamed from memory to decode one token at batch size 1.
    pub bytes_per_token: u64,
    /// KV-cache bytes that one position of context occupies across all layers (f32 K and V).
    pub kv_bytes_per_position: u64,
}

impl Stats {
    pub fn of(cfg: &ModelConfig) -> Stats {
        let h = cfg.hidden_size as u64;
        let i = cfg.intermediate_size as u64;
        let e = cfg.num_local_experts as u64;
        let k = cfg.num_experts_per_tok as u64;
        let l = cfg.num_hidden_layers as u64;
        let (q, kv) = (cfg.q_dim() as u64, cfg.kv_dim() as u64);
        let vocab = cfg.vocab_size as u64;

        let attention =
            (q + 2 * kv) * h + (q + 2 * kv) + h * q + h + cfg.num_attention_heads as u64 + h;
        let router = e * h + e;
        let mlp_norm = h;
        let expert_weights = 2 * i * h + h * i;
        let expert_biases = 2 * i + h;
        let table = vocab * h;

        let total_params = l
            * (attention + router + mlp_norm + e * (expert_weights + expert_biases))
            + 2 * table
            + h;
        let active_params =
            l * (attention + router + mlp_norm + k * (expert_weights + expert_biases)) + table + h;

        let expert_weight_bytes = match cfg.expert_format {
            // 17 bytes (16 of nibbles, one scale) per 32 weights.
            ExpertFormat::Mxfp4 => expert_weights * 17 / 32,
            ExpertFormat::Bf16 => expert_weights * 2,
        };
        let bytes_per_token = l * (2 * attention + 2 * (router + mlp_norm))
            + l * k * (expert_weight_bytes + 2 * expert_biases)
            + 2 * (table + h)
            + 2 * h;
        Stats {
            total_params,
            active_params,
            bytes_per_token,
            kv_bytes_per_position: l * 2 * kv * 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_spec_section_5_for_20b() {
        let cfg = ModelConfig::gpt_oss_20b();
        let s = Stats::of(&cfg);
        assert_eq!(s.total_params, 20_914_757_184);
        assert_eq!(s.active_params, 3_608_307_264);
        assert_eq!(s.bytes_per_token, 3_708_089_088);
    }

    #[test]
    fn matches_spec_section_5_for_120b() {
        let mut cfg = ModelConfig::gpt_oss_20b();
        cfg.num_hidden_layers = 36;
        cfg.num_local_experts = 128;
        cfg.layer_types = crate::config::alternating_layers(36);
        let s = Stats::of(&cfg);
        assert_eq!(s.total_params, 116_829_156_672);
        assert_eq!(s.active_params, 5_132_849_472);
        assert_eq!(s.bytes_per_token, 5_002_907_904);
    }
}
