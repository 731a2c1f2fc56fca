//! Rendering conversations into o200k_harmony prompt tokens.
//!
//! The output is token-for-token what OpenAI's `openai-harmony` 0.0.8 renders (checked by
//! `tests/conformance.rs` against that crate). One message is
//!
//! ```text
//! <|start|>AUTHOR[ to=RECIPIENT][<|channel|>CHANNEL][ CONTENT_TYPE]<|message|>CONTENT(<|end|>|<|call|>)
//! ```
//!
//! Token-level details that the text above hides, all load-bearing for equality:
//! - Every piece of text (role, `:name`, ` to=...`, channel name, ` type`, each content
//!   part) is tokenised separately with *ordinary* encoding, so BPE never merges across a
//!   piece boundary and special-token text typed by a user stays plain text.
//! - A content type starting with `<|constrain|>` is written as the text `" "`, the special
//!   token `<|constrain|>` and the rest as text.
//! - An assistant message with any recipient (even `all`, which is otherwise not written)
//!   ends with `<|call|>`; everything else ends with `<|end|>`. `<|return|>` is never
//!   rendered except by [`render_conversation_for_training`].

use crate::conversation::{
    channel, Content, Conversation, DeveloperContent, Message, Role, SystemContent,
};
use crate::tokenizer::{special, Tokenizer};
use crate::typescript::render_tools_section;

/// What the conversation-level renderers do beyond rendering each message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderConfig {
    /// Drop chain of thought that the model no longer needs, by harmony's rule: when the
    /// last assistant message of the conversation is on `final`, every `analysis` message
    /// (of any role) that comes before the *first* `final` message is left out.
    ///
    /// Consequences of that exact rule (kept for token equality with the reference):
    /// analysis of a turn still in progress (a tool loop, last assistant message not final)
    /// is kept; in `user, A1, F1, user, A2, F2` only `A1` is dropped, `A2` stays.
    pub auto_drop_analysis: bool,
}

impl Default for RenderConfig {
    /// Dropping on, like the reference's default config.
    fn default() -> Self {
        RenderConfig {
            auto_drop_analysis: true,
        }
    }
}

/// Facts about the whole conversation that change how one message renders.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageRenderOptions {
    /// Some developer message defines a non-empty `functions` namespace. The system message
    /// then tells the model that such calls go to the commentary channel.
    pub conversation_has_function_tools: bool,
}

/// Why a message cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderProblem {
    #[error("a tool message needs an author name (the tool's name, e.g. `functions.get_weather`)")]
    ToolWithoutName,
    #[error("system content may only appear in a system message, found in a {0} message")]
    SystemContentOutsideSystem(Role),
    #[error("developer content may only appear in a developer message, found in a {0} message")]
    DeveloperContentOutsideDeveloper(Role),
}

/// A message that cannot be rendered, with its index in the input (0 for a single message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot render message {index}: {problem}")]
pub struct RenderError {
    pub index: usize,
    pub problem: RenderProblem,
}

/// Whether any developer message content in `messages` has function tools (a non-empty
/// namespace stored under the key `functions`). Function tools in a system message do not
/// count, as in the reference.
pub fn conversation_has_function_tools(messages: &[Message]) -> bool {
    messages.iter().flat_map(|m| &m.content).any(|c| match c {
        Content::DeveloperContent(dev) => dev
            .tools
            .as_ref()
            .and_then(|tools| tools.get("functions"))
            .is_some_and(|ns| !ns.tools.is_empty()),
        _ => false,
    })
}

/// For each message, whether it is rendered under `config` (see
/// [`RenderConfig::auto_drop_analysis`]). Useful to know where a cached prompt prefix stops
/// matching after chain of thought is dropped.
pub fn retained_messages(messages: &[Message], config: &RenderConfig) -> Vec<bool> {
    let is_on = |m: &Message, ch: &str| m.channel.as_deref() == Some(ch);
    let last_assistant_is_final = messages
        .iter()
        .rev()
        .find(|m| m.author.role == Role::Assistant)
        .is_some_and(|m| is_on(m, channel::FINAL));
    let drop_before = if config.auto_drop_analysis && last_assistant_is_final {
        messages.iter().position(|m| is_on(m, channel::FINAL))
    } else {
        None
    };
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| !(drop_before.is_some_and(|first| i < first) && is_on(m, channel::ANALYSIS)))
        .collect()
}

/// Renders every message (after dropping per `config`), with nothing appended.
pub fn render_conversation(
    conversation: &impl AsRef<[Message]>,
    config: &RenderConfig,
) -> Result<Vec<u32>, RenderError> {
    let mut out = Vec::new();
    render_conversation_into(conversation.as_ref(), config, &mut out)?;
    Ok(out)
}

/// The prompt for sampling the next message: the conversation followed by
/// `<|start|>` and the role word of `next_role` (normally [`Role::Assistant`]).
pub fn render_conversation_for_completion(
    conversation: &impl AsRef<[Message]>,
    next_role: Role,
    config: &RenderConfig,
) -> Result<Vec<u32>, RenderError> {
    let mut out = Vec::new();
    render_conversation_into(conversation.as_ref(), config, &mut out)?;
    out.push(special::START);
    out.extend(Tokenizer::o200k_harmony().encode_ordinary(next_role.as_str()));
    Ok(out)
}

/// Like [`render_conversation`], but when the last message is an assistant message on
/// `final`, its closing `<|end|>` becomes `<|return|>` (the training target's stop token).
pub fn render_conversation_for_training(
    conversation: &impl AsRef<[Message]>,
    config: &RenderConfig,
) -> Result<Vec<u32>, RenderError> {
    let messages = conversation.as_ref();
    let mut out = render_conversation(&messages, config)?;
    if let Some(last) = messages.last() {
        if last.author.role == Role::Assistant && last.channel.as_deref() == Some(channel::FINAL) {
            if let Some(token) = out.last_mut() {
                *token = special::RETURN;
            }
        }
    }
    Ok(out)
}

/// Appends the rendering of `messages` to `out`. On error `out` may hold a partial prefix.
pub fn render_conversation_into(
    messages: &[Message],
    config: &RenderConfig,
    out: &mut Vec<u32>,
) -> Result<(), RenderError> {
    let options = MessageRenderOptions {
        conversation_has_function_tools: conversation_has_function_tools(messages),
    };
    let retained = retained_messages(messages, config);
    for (index, (message, keep)) in messages.iter().zip(retained).enumerate() {
        if keep {
            render_message_into(message, &options, out)
                .map_err(|problem| RenderError { index, problem })?;
        }
    }
    Ok(())
}

/// Renders one message on its own. Without the conversation around it, pass the options
/// explicitly (only a system message depends on them).
pub fn render_message(
    message: &Message,
    options: &MessageRenderOptions,
) -> Result<Vec<u32>, RenderError> {
    let mut out = Vec::new();
    render_message_into(message, options, &mut out)
        .map_err(|problem| RenderError { index: 0, problem })?;
    Ok(out)
}

/// Appends one message to `out`. On error `out` may hold a partial message.
pub fn render_message_into(
    message: &Message,
    options: &MessageRenderOptions,
    out: &mut Vec<u32>,
) -> Result<(), RenderProblem> {
    let tokenizer = Tokenizer::o200k_harmony();
    let text = |s: &str, out: &mut Vec<u32>| out.extend(tokenizer.encode_ordinary(s));

    out.push(special::START);
    let role = message.author.role;
    if role == Role::Tool {
        // A tool message is headed by the tool's name alone.
        let name = message
            .author
            .name
            .as_deref()
            .ok_or(RenderProblem::ToolWithoutName)?;
        text(name, out);
    } else {
        text(role.as_str(), out);
        if let Some(name) = &message.author.name {
            text(&format!(":{name}"), out);
        }
    }
    if let Some(recipient) = message.recipient.as_deref().filter(|r| *r != "all") {
        text(&format!(" to={recipient}"), out);
    }
    if let Some(channel) = &message.channel {
        out.push(special::CHANNEL);
        text(channel, out);
    }
    if let Some(content_type) = &message.content_type {
        match content_type.strip_prefix("<|constrain|>") {
            Some(rest) => {
                text(" ", out);
                out.push(special::CONSTRAIN);
                text(rest, out);
            }
            None => text(&format!(" {content_type}"), out),
        }
    }
    out.push(special::MESSAGE);
    for part in &message.content {
        match part {
            Content::Text(t) => text(&t.text, out),
            Content::SystemContent(sys) => {
                if role != Role::System {
                    return Err(RenderProblem::SystemContentOutsideSystem(role));
                }
                text(&system_text(sys, options), out);
            }
            Content::DeveloperContent(dev) => {
                if role != Role::Developer {
                    return Err(RenderProblem::DeveloperContentOutsideDeveloper(role));
                }
                text(&developer_text(dev), out);
            }
        }
    }
    out.push(if role == Role::Assistant && message.recipient.is_some() {
        special::CALL
    } else {
        special::END
    });
    Ok(())
}

/// The text of a system message: sections separated by a blank line — identity and dates,
/// reasoning effort, built-in tools, channel rules — each only when it has something to say.
pub fn system_text(sys: &SystemContent, options: &MessageRenderOptions) -> String {
    let mut sections = Vec::new();

    let top: Vec<String> = [
        sys.model_identity.clone(),
        sys.knowledge_cutoff
            .as_ref()
            .map(|c| format!("Knowledge cutoff: {c}")),
        sys.conversation_start_date
            .as_ref()
            .map(|d| format!("Current date: {d}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !top.is_empty() {
        sections.push(top.join("\n"));
    }
    if let Some(effort) = sys.reasoning_effort {
        sections.push(format!("Reasoning: {effort}"));
    }
    if let Some(tools) = sys.tools.as_ref().filter(|t| !t.is_empty()) {
        sections.push(render_tools_section(tools));
    }
    if let Some(channels) = sys
        .channel_config
        .as_ref()
        .filter(|c| !c.valid_channels.is_empty())
    {
        let mut line = format!("# Valid channels: {}.", channels.valid_channels.join(", "));
        if channels.channel_required {
            line.push_str(" Channel must be included for every message.");
        }
        // The functions note rides on the channels line: no channels, no note.
        if options.conversation_has_function_tools {
            line.push_str("\nCalls to these tools must go to the commentary channel: 'functions'.");
        }
        sections.push(line);
    }
    sections.join("\n\n")
}

/// The text of a developer message: `# Instructions`, the instructions, then the tools
/// block, separated by blank lines.
pub fn developer_text(dev: &DeveloperContent) -> String {
    let mut sections = Vec::new();
    if let Some(instructions) = &dev.instructions {
        sections.push("# Instructions".to_string());
        sections.push(instructions.clone());
    }
    if let Some(tools) = dev.tools.as_ref().filter(|t| !t.is_empty()) {
        sections.push(render_tools_section(tools));
    }
    sections.join("\n\n")
}

impl Conversation {
    /// Shorthand for [`render_conversation_for_completion`] with the assistant as next role.
    pub fn render_for_assistant(&self, config: &RenderConfig) -> Result<Vec<u32>, RenderError> {
        render_conversation_for_completion(self, Role::Assistant, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_system_then_user() {
        let conv = Conversation::from_messages([
            Message::system(SystemContent::new()),
            Message::user("hi"),
        ]);
        let tokens = conv.render_for_assistant(&RenderConfig::default()).unwrap();
        let text = Tokenizer::o200k_harmony().decode_lossy(&tokens).unwrap();
        assert_eq!(
            text,
            "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n\
             Knowledge cutoff: 2024-06\n\nReasoning: medium\n\n# Valid channels: analysis, \
             commentary, final. Channel must be included for every message.<|end|>\
             <|start|>user<|message|>hi<|end|><|start|>assistant"
        );
        assert_eq!(&tokens[tokens.len() - 2..], &[special::START, 173781]);
    }

    #[test]
    fn errors_instead_of_panics() {
        let nameless_tool = Message::from_role_and_content(Role::Tool, "x");
        let err = render_conversation(
            &[Message::user("a"), nameless_tool],
            &RenderConfig::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            RenderError {
                index: 1,
                problem: RenderProblem::ToolWithoutName
            }
        );
        let misplaced = Message::from_role_and_content(Role::User, SystemContent::new());
        assert!(render_message(&misplaced, &MessageRenderOptions::default()).is_err());
    }

    #[test]
    fn tool_call_ends_with_call_and_constrain_is_special() {
        let call = Message::assistant("{}")
            .with_channel("commentary")
            .with_recipient("functions.f")
            .with_content_type("<|constrain|>json");
        let tokens = render_message(&call, &MessageRenderOptions::default()).unwrap();
        assert_eq!(tokens.last(), Some(&special::CALL));
        assert!(tokens.contains(&special::CONSTRAIN));
    }
}
