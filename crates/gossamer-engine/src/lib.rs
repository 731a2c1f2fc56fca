//! Turning logits into tokens: sampling, the stop rules of a generation, and the throughput
//! benchmark.

pub mod bench;
pub mod generate;
pub mod sampler;

pub use generate::{
    generate, GenerateError, GenerateOptions, Generation, StopReason, ASSISTANT_STOP_TOKENS,
};
pub use sampler::{Sampler, SamplingParams};
