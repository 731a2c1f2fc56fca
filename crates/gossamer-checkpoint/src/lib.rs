//! Reading gpt-oss model folders exactly as published.
//!
//! * [`config`]: `config.json` (Hugging Face) and `original/config.json` (OpenAI reference).
//! * [`safetensors`]: memory-mapped files, parsed without copying tensor data.
//! * [`names`]: the tensor names and shapes of both layouts, derived from the config.
//! * [`checkpoint`]: opening a folder, validating every tensor, typed weight views.
//! * [`stats`]: parameter counts and bytes per decoded token.
//! * [`synth`]: seeded random checkpoints in the official layout, for tests and benchmarks.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod names;
pub mod safetensors;
pub mod stats;
pub mod synth;

pub use checkpoint::{Checkpoint, ExpertMatrix, Experts, LayerWeights, Linear, Weights};
pub use config::{AttentionKind, ExpertFormat, ModelConfig, RopeConfig};
pub use error::CheckpointError;
pub use names::Layout;
pub use safetensors::TensorBytes;
pub use stats::Stats;
