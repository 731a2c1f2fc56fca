//! The gpt-oss forward pass.
//!
//! Mirrors Hugging Face `transformers`' `models/gpt_oss/modeling_gpt_oss.py` (itself a port of
//! OpenAI's `gpt_oss/torch/model.py`): embedding → L × (RMSNorm → attention with sinks,
//! sliding window on even layers, YaRN RoPE → residual; RMSNorm → top-k router → clamped
//! SwiGLU experts → residual) → RMSNorm → unembedding. Activations are f32; weights are read
//! in place from the memory-mapped checkpoint (bf16 and MXFP4 decoded inside the kernels).

mod cache;
mod model;
pub mod profile;

pub use cache::{DeviceCache, KvCache};
pub use model::{rope_for, Accelerator, GptOss, Logits, ModelError, Precision, Step};
pub use profile::{Op, OpTimes, Profile};
