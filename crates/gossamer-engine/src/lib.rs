//! Turning logits into tokens: sampling and the stop rules of a generation.

pub mod generate;
pub mod sampler;

pub use generate::{
    generate, GenerateError, GenerateOptions, Generation, StopReason, ASSISTANT_STOP_TOKENS,
};
pub use sampler::{Sampler, SamplingParams};
