//! The OpenAI-compatible API: Chat Completions requests mapped onto harmony conversations
//! ([`chat`]), the model's parsed output mapped back onto OpenAI messages, and errors in
//! OpenAI's shape ([`error`]). The HTTP layer builds on these.

pub mod chat;
pub mod error;
pub mod turn;

pub use error::ApiError;
