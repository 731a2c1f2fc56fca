//! The harmony side of gpt-oss: the o200k_harmony tokenizer (embedded, offline), the
//! conversation types ([`conversation`]), prompt rendering token-identical to OpenAI's
//! `openai-harmony` crate ([`render`], [`typescript`]), and parsing model output.

pub mod conversation;
pub mod parser;
pub mod render;
pub mod tokenizer;
pub mod typescript;

pub use conversation::{
    Author, ChannelConfig, Content, Conversation, DeveloperContent, Message, ReasoningEffort, Role,
    SystemContent, TextContent, ToolDescription, ToolNamespaceConfig,
};
pub use render::{
    render_conversation, render_conversation_for_completion, render_conversation_for_training,
    render_message, MessageRenderOptions, RenderConfig, RenderError,
};
pub use tokenizer::Tokenizer;
