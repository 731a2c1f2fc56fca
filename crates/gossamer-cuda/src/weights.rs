//! The checkpoint's weights uploaded once, as stored: bf16 stays bf16 and MXFP4 stays MXFP4.
//! Two rearrangements, both exact: q, k and v are stacked into one `[qkv, hidden]` matrix
//! (one product instead of three), and bf16 experts in Hugging Face's `[E, in, out]`
//! orientation are transposed on the device to `[E, out, in]` rows like every other matrix.
//! The router also keeps an f32 copy (368 KB per layer) for exact batched routing.

use gossamer_checkpoint::{Checkpoint, ExpertMatrix, Linear, ModelConfig};
use gossamer_kernels::bf16;

use crate::device::{Arg, Buf, Gpu};
use crate::CudaError;

pub(crate) enum ExpertWeights {
    /// `blocks [E, out, in/32, 16]`, `scales [E, out, in/32]`.
    Mxfp4 { blocks: Buf, scales: Buf },
    /// bf16 `[E, out, in]`.
    Bf16 { weight: Buf },
}

impl ExpertWeights {
    /// The kernels' `fmt` and the two pointers they take (scales null for bf16).
    pub fn kernel_args(&self) -> (i32, u64, u64) {
        match self {
            ExpertWeights::Mxfp4 { blocks, scales } => (0, blocks.ptr, scales.ptr),
            ExpertWeights::Bf16 { weight } => (1, weight.ptr, 0),
        }
    }
}

pub(crate) struct LayerWeights {
    pub attn_norm: Buf,
    /// `[q_dim + 2·kv_dim, hidden]` and its bias.
    pub qkv: Buf,
    pub qkv_bias: Buf,
    pub o: Buf,
    pub o_bias: Buf,
    pub sinks: Buf,
    pub mlp_norm: Buf,
    pub router: Buf,
    pub router_f32: Buf,
    pub router_bias: Buf,
    pub gate_up: ExpertWeights,
    pub gate_up_bias: Buf,
    pub down: ExpertWeights,
    pub down_bias: Buf,
}

pub(crate) struct DeviceWeights {
    pub embedding: Buf,
    pub layers: Vec<LayerWeights>,
    pub final_norm: Buf,
    pub unembedding: Buf,
    pub bytes: usize,
}

/// What the kernels assume of the shapes; anything else is refused with a clear error
/// rather than computed wrongly.
pub(crate) fn check_shapes(cfg: &ModelConfig) -> Result<(), CudaError> {
    let bad = |what: String| Err(CudaError::Unsupported(what));
    if cfg.head_dim != 64 {
        return bad(format!(
            "head_dim {} (the kernels are built for 64)",
            cfg.head_dim
        ));
    }
    if !cfg
        .num_attention_heads
        .is_multiple_of(cfg.num_key_value_heads)
        || cfg.num_attention_heads / cfg.num_key_value_heads > 32
    {
        return bad(format!(
            "{} query heads over {} KV heads (at most 32 per KV head)",
            cfg.num_attention_heads, cfg.num_key_value_heads
        ));
    }
    for (what, v) in [
        ("hidden_size", cfg.hidden_size),
        ("intermediate_size", cfg.intermediate_size),
    ] {
        if !v.is_multiple_of(64) {
            return bad(format!("{what} {v} (must be a multiple of 64)"));
        }
    }
    // MAX_TOPK and MAX_EXPERTS_PER_LANE · 32 in kernels.cu.
    if cfg.num_experts_per_tok > 8
        || cfg.num_experts_per_tok > cfg.num_local_experts
        || cfg.num_local_experts > 256
    {
        return bad(format!(
            "{} experts per token of {} (at most 8 of 256)",
            cfg.num_experts_per_tok, cfg.num_local_experts
        ));
    }
    Ok(())
}

fn bias_bytes(lin: &Linear) -> Vec<u8> {
    match &lin.bias {
        Some(b) => b.as_bytes().to_vec(),
        None => vec![0u8; lin.rows * 2],
    }
}

impl DeviceWeights {
    /// Uploads every tensor; `progress(done, total)` in bytes.
    pub fn upload(
        gpu: &Gpu,
        ck: &Checkpoint,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<DeviceWeights, CudaError> {
        let cfg = &ck.config;
        check_shapes(cfg)?;
        let w = &ck.weights;
        let total: u64 = w.tensors().iter().map(|t| t.as_bytes().len() as u64).sum();
        let mut done = 0u64;
        let mut up = |data: &[u8]| -> Result<Buf, CudaError> {
            let b = gpu.upload(data)?;
            done += data.len() as u64;
            progress(done.min(total), total);
            Ok(b)
        };
        let embedding = up(w.embedding.as_bytes())?;
        let mut layers = Vec::with_capacity(w.layers.len());
        let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
        for l in &w.layers {
            let mut qkv = Vec::new();
            let mut qkv_bias = Vec::new();
            for lin in [&l.q, &l.k, &l.v] {
                qkv.extend_from_slice(lin.weight.as_bytes());
                qkv_bias.extend(bias_bytes(lin));
            }
            let router_f32: Vec<u8> = bf16::to_f32_vec(l.router.weight.as_u16())
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            let experts = &l.experts;
            let mut upload_experts = |m: &ExpertMatrix, rows: usize, cols: usize| {
                Ok::<_, CudaError>(match m {
                    ExpertMatrix::Mxfp4 { blocks, scales } => ExpertWeights::Mxfp4 {
                        blocks: up(blocks.as_bytes())?,
                        scales: up(scales.as_bytes())?,
                    },
                    ExpertMatrix::Bf16InOut { weight } => {
                        let raw = up(weight.as_bytes())?;
                        let out = gpu.alloc(raw.bytes())?;
                        let e = cfg.num_local_experts as u32;
                        // [E, cols(in), rows(out)] → [E, rows, cols].
                        gpu.launch(
                            &gpu.k.transpose_bf16,
                            ((rows as u32).div_ceil(32), (cols as u32).div_ceil(32), e),
                            (32, 8, 1),
                            0,
                            &[
                                Arg::P(raw.ptr),
                                Arg::P(out.ptr),
                                Arg::I(cols as i32),
                                Arg::I(rows as i32),
                            ],
                        )?;
                        gpu.sync()?;
                        ExpertWeights::Bf16 { weight: out }
                    }
                })
            };
            let gate_up = upload_experts(&experts.gate_up, 2 * inter, h)?;
            let down = upload_experts(&experts.down, h, inter)?;
            layers.push(LayerWeights {
                attn_norm: up(l.attn_norm.as_bytes())?,
                qkv: up(&qkv)?,
                qkv_bias: up(&qkv_bias)?,
                o: up(l.o.weight.as_bytes())?,
                o_bias: up(&bias_bytes(&l.o))?,
                sinks: up(l.sinks.as_bytes())?,
                mlp_norm: up(l.mlp_norm.as_bytes())?,
                router: up(l.router.weight.as_bytes())?,
                router_f32: gpu.upload(&router_f32)?,
                router_bias: up(&bias_bytes(&l.router))?,
                gate_up,
                gate_up_bias: up(experts.gate_up_bias.as_bytes())?,
                down,
                down_bias: up(experts.down_bias.as_bytes())?,
            });
        }
        let final_norm = up(w.final_norm.as_bytes())?;
        let unembedding = up(w.unembedding.weight.as_bytes())?;
        gpu.sync()?;
        Ok(DeviceWeights {
            embedding,
            layers,
            final_norm,
            unembedding,
            bytes: total as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_shapes_pass_and_others_are_refused_by_name() {
        let cfg = ModelConfig::gpt_oss_20b();
        check_shapes(&cfg).unwrap();
        let mut wide = cfg.clone();
        wide.head_dim = 128;
        assert!(check_shapes(&wide)
            .unwrap_err()
            .to_string()
            .contains("head_dim 128"));
        let mut odd = cfg.clone();
        odd.hidden_size = 2880 + 32;
        assert!(check_shapes(&odd)
            .unwrap_err()
            .to_string()
            .contains("hidden_size 2912"));
        let mut many = cfg;
        many.num_experts_per_tok = 16;
        assert!(check_shapes(&many).is_err());
    }
}
