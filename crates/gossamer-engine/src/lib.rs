//! Turning logits into tokens: sampling, the stop rules of a generation, the continuous-
//! batching scheduler that serves many requests at once, and the throughput benchmark.

pub mod bench;
pub mod generate;
pub mod sampler;
pub mod scheduler;

pub use generate::{
    generate, GenerateError, GenerateOptions, Generation, StopReason, ASSISTANT_STOP_TOKENS,
};
pub use sampler::{Sampler, SamplingParams};
pub use scheduler::{
    Engine, EngineConfig, Event, FinishReason, Request, SubmitError, Ticket, TokenLogprob,
};
