//! Conversation data types for the harmony format.
//!
//! The types mirror the data model of OpenAI's `openai-harmony` crate (v0.0.8) field for
//! field, and their serde JSON shape is the same, so a conversation serialised by either
//! side parses on the other. That matters twice: it lets the conformance tests hand our
//! conversations to the reference renderer, and it keeps stored or logged conversations
//! portable between gossamer and OpenAI's Python/Rust tooling.
//!
//! JSON shape in brief (what the reference emits, and therefore what we emit):
//! - `Message`: `role`, `name` (omitted when absent), `recipient`, `content`, `channel`,
//!   `content_type` (the last three omitted when absent). `content` is a plain string when
//!   the message holds exactly one text part, otherwise an array of parts tagged by `type`
//!   (`text`, `system_content`, `developer_content`).
//! - `SystemContent`, `DeveloperContent`, `ToolNamespaceConfig`, `ToolDescription`: every
//!   field is written, absent ones as `null`.
//! - `ReasoningEffort` is written capitalised (`"Low"`, `"Medium"`, `"High"`); lower-case
//!   spellings are accepted on input as a courtesy.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Well-known channel names. Channels are free-form strings in the format; these are the
/// three gpt-oss was trained on.
pub mod channel {
    /// Raw chain of thought; not meant for end users.
    pub const ANALYSIS: &str = "analysis";
    /// Function-tool calls and user-visible preambles.
    pub const COMMENTARY: &str = "commentary";
    /// The answer.
    pub const FINAL: &str = "final";
}

/// The content type harmony uses for JSON tool-call arguments. The renderer emits the
/// `<|constrain|>` prefix as the special token, not as text.
pub const CONSTRAINED_JSON: &str = "<|constrain|>json";

/// Who wrote a message. On conflicting instructions the model favours, in order: system,
/// developer, user, assistant, tool.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

impl Role {
    /// The word written in a message header.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(Role::System),
            "developer" => Ok(Role::Developer),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            "tool" => Ok(Role::Tool),
            other => Err(UnknownName(other.to_string())),
        }
    }
}

/// A role or reasoning-effort name that is not one of the known spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name `{0}`")]
pub struct UnknownName(pub String);

/// The author of a message: a role and, optionally, a name. For role `tool` the name is the
/// tool's (e.g. `functions.get_weather`) and is what the header shows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Author {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Author {
    pub fn new(role: Role, name: impl Into<String>) -> Self {
        Author {
            role,
            name: Some(name.into()),
        }
    }
}

impl From<Role> for Author {
    fn from(role: Role) -> Self {
        Author { role, name: None }
    }
}

/// One part of a message's content. Parts are rendered back to back with nothing between
/// them (and each is tokenised on its own).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Content {
    Text(TextContent),
    /// Structured content of the system message; valid only in a system message.
    SystemContent(SystemContent),
    /// Structured content of the developer message; valid only in a developer message.
    DeveloperContent(DeveloperContent),
}

impl From<&str> for Content {
    fn from(text: &str) -> Self {
        Content::Text(TextContent {
            text: text.to_string(),
        })
    }
}

impl From<String> for Content {
    fn from(text: String) -> Self {
        Content::Text(TextContent { text })
    }
}

impl From<&String> for Content {
    fn from(text: &String) -> Self {
        Content::from(text.as_str())
    }
}

impl From<SystemContent> for Content {
    fn from(content: SystemContent) -> Self {
        Content::SystemContent(content)
    }
}

impl From<DeveloperContent> for Content {
    fn from(content: DeveloperContent) -> Self {
        Content::DeveloperContent(content)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TextContent {
    pub text: String,
}

/// One harmony message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Message {
    #[serde(flatten)]
    pub author: Author,
    /// Who the message is addressed to: a tool name for a tool call (`functions.x`,
    /// `python`, `browser.search`), `assistant` for a tool result. `None` means everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(
        serialize_with = "serialize_content",
        deserialize_with = "deserialize_content"
    )]
    pub content: Vec<Content>,
    /// `analysis`, `commentary`, `final` (see [`channel`]); `None` renders no channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// E.g. [`CONSTRAINED_JSON`], `json`, `code`; usually only set on tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

impl Message {
    pub fn from_author_and_content(author: Author, content: impl Into<Content>) -> Self {
        Message {
            author,
            recipient: None,
            content: vec![content.into()],
            channel: None,
            content_type: None,
        }
    }

    pub fn from_role_and_content(role: Role, content: impl Into<Content>) -> Self {
        Self::from_author_and_content(Author::from(role), content)
    }

    pub fn from_role_and_contents(role: Role, contents: impl IntoIterator<Item = Content>) -> Self {
        Message {
            author: Author::from(role),
            recipient: None,
            content: contents.into_iter().collect(),
            channel: None,
            content_type: None,
        }
    }

    /// The system message (identity, dates, reasoning effort, built-in tools).
    pub fn system(content: SystemContent) -> Self {
        Self::from_role_and_content(Role::System, content)
    }

    /// The developer message (instructions, function tools).
    pub fn developer(content: DeveloperContent) -> Self {
        Self::from_role_and_content(Role::Developer, content)
    }

    pub fn user(text: impl Into<String>) -> Self {
        Self::from_role_and_content(Role::User, text.into())
    }

    /// An assistant message with no channel; chain it with [`Message::with_channel`].
    pub fn assistant(text: impl Into<String>) -> Self {
        Self::from_role_and_content(Role::Assistant, text.into())
    }

    /// A tool message authored by `tool_name` (e.g. `functions.get_weather`). Add
    /// `.with_recipient("assistant").with_channel(..)` for the documented result shape.
    pub fn tool(tool_name: impl Into<String>, text: impl Into<String>) -> Self {
        Self::from_author_and_content(Author::new(Role::Tool, tool_name), text.into())
    }

    pub fn adding_content(mut self, content: impl Into<Content>) -> Self {
        self.content.push(content.into());
        self
    }

    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    pub fn with_recipient(mut self, recipient: impl Into<String>) -> Self {
        self.recipient = Some(recipient.into());
        self
    }

    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Sets the author's name (written as `role:name`, or alone for tools).
    pub fn with_author_name(mut self, name: impl Into<String>) -> Self {
        self.author.name = Some(name.into());
        self
    }

    /// All text parts concatenated (structured parts are skipped).
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|c| match c {
                Content::Text(t) => Some(t.text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A single text part is written as a bare string, as the reference does.
fn serialize_content<S: Serializer>(content: &[Content], serializer: S) -> Result<S::Ok, S::Error> {
    if let [Content::Text(TextContent { text })] = content {
        return serializer.serialize_str(text);
    }
    content.serialize(serializer)
}

fn deserialize_content<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Content>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrParts {
        Text(String),
        Parts(Vec<Content>),
    }
    Ok(match TextOrParts::deserialize(deserializer)? {
        TextOrParts::Text(text) => vec![Content::Text(TextContent { text })],
        TextOrParts::Parts(parts) => parts,
    })
}

/// How long the model should think. Rendered as `Reasoning: low|medium|high`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ReasoningEffort {
    #[serde(alias = "low")]
    Low,
    #[default]
    #[serde(alias = "medium")]
    Medium,
    #[serde(alias = "high")]
    High,
}

impl ReasoningEffort {
    /// The lower-case word used in the system message.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningEffort::Low => "low",
            ReasoningEffort::Medium => "medium",
            ReasoningEffort::High => "high",
        }
    }
}

impl fmt::Display for ReasoningEffort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ReasoningEffort {
    type Err = UnknownName;
    /// Case-insensitive `low` / `medium` / `high` (API bodies and CLI flags).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(ReasoningEffort::Low),
            "medium" => Ok(ReasoningEffort::Medium),
            "high" => Ok(ReasoningEffort::High),
            _ => Err(UnknownName(s.to_string())),
        }
    }
}

/// Which channels the system message announces.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ChannelConfig {
    /// Channels listed in `# Valid channels: ...`; when empty the line (and with it the
    /// functions note) is not rendered at all.
    pub valid_channels: Vec<String>,
    /// Adds ` Channel must be included for every message.`.
    pub channel_required: bool,
}

impl ChannelConfig {
    pub fn require_channels<I, T>(channels: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        ChannelConfig {
            valid_channels: channels.into_iter().map(Into::into).collect(),
            channel_required: true,
        }
    }
}

/// A group of tools rendered under `## <name>` (as a TypeScript `namespace` when it has
/// functions, as plain prose when it has none, like `python`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ToolNamespaceConfig {
    pub name: String,
    pub description: Option<String>,
    pub tools: Vec<ToolDescription>,
}

/// Text of the built-in browser namespace, exactly as the model was trained with it.
const BROWSER_DESCRIPTION: &str = "Tool for browsing.
The `cursor` appears in brackets before each browsing display: `[{cursor}]`.
Cite information from the tool using the following format:
`【{cursor}†L{line_start}(-L{line_end})?】`, for example: `【6†L9-L11】` or `【8†L3】`.
Do not quote more than 10 words directly from the tool output.
sources=web (default: web)";

const BROWSER_SEARCH_DESCRIPTION: &str =
    "Searches for information related to `query` and displays `topn` results.";

const BROWSER_OPEN_DESCRIPTION: &str = "Opens the link `id` from the page indicated by `cursor` starting at line number `loc`, showing `num_lines` lines.
Valid link ids are displayed with the formatting: `【{id}†.*】`.
If `cursor` is not provided, the most recent page is implied.
If `id` is a string, it is treated as a fully qualified URL associated with `source`.
If `loc` is not provided, the viewport will be positioned at the beginning of the document or centered on the most relevant passage, if available.
Use this function without `id` to scroll to a new location of an opened page.";

const BROWSER_FIND_DESCRIPTION: &str =
    "Finds exact matches of `pattern` in the current page, or the page given by `cursor`.";

/// Text of the built-in (stateful Jupyter) python namespace.
const PYTHON_DESCRIPTION: &str = "Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. This tool should be used for internal reasoning, but not for code that is intended to be visible to the user (e.g. when creating plots, tables, or files).

When you send a message containing Python code to python, it will be executed in a stateful Jupyter notebook environment. python will respond with the output of the execution or time out after 120.0 seconds. The drive at '/mnt/data' can be used to save and persist user files. Internet access for this session is UNKNOWN. Depends on the cluster.";

/// Parses a built-in schema literal. The literals are compile-time constants covered by
/// tests, so the fallback (`None`: a parameterless tool) is never taken in practice; it
/// exists only so this path cannot panic.
fn builtin_schema(json: &str) -> Option<serde_json::Value> {
    serde_json::from_str(json).ok()
}

impl ToolNamespaceConfig {
    pub fn new(
        name: impl Into<String>,
        description: Option<String>,
        tools: Vec<ToolDescription>,
    ) -> Self {
        ToolNamespaceConfig {
            name: name.into(),
            description,
            tools,
        }
    }

    /// The `functions` namespace of a developer message.
    pub fn functions(tools: Vec<ToolDescription>) -> Self {
        Self::new("functions", None, tools)
    }

    /// The built-in browser tool (`browser.search`, `browser.open`, `browser.find`), with
    /// the descriptions and schemas gpt-oss was trained on. Schema key order matters for
    /// the rendered text, so the schemas are parsed from JSON text (order-preserving when
    /// serde_json's `preserve_order` feature is on).
    pub fn browser() -> Self {
        Self::new(
            "browser",
            Some(BROWSER_DESCRIPTION.to_string()),
            vec![
                ToolDescription::new(
                    "search",
                    BROWSER_SEARCH_DESCRIPTION,
                    builtin_schema(
                        r#"{"type":"object","properties":{"query":{"type":"string"},"topn":{"type":"number","default":10},"source":{"type":"string"}},"required":["query"]}"#,
                    ),
                ),
                ToolDescription::new(
                    "open",
                    BROWSER_OPEN_DESCRIPTION,
                    builtin_schema(
                        r#"{"type":"object","properties":{"id":{"type":["number","string"],"default":-1},"cursor":{"type":"number","default":-1},"loc":{"type":"number","default":-1},"num_lines":{"type":"number","default":-1},"view_source":{"type":"boolean","default":false},"source":{"type":"string"}}}"#,
                    ),
                ),
                ToolDescription::new(
                    "find",
                    BROWSER_FIND_DESCRIPTION,
                    builtin_schema(
                        r#"{"type":"object","properties":{"pattern":{"type":"string"},"cursor":{"type":"number","default":-1}},"required":["pattern"]}"#,
                    ),
                ),
            ],
        )
    }

    /// The built-in python tool: a namespace with no functions, only prose; the model
    /// calls it with recipient `python`.
    pub fn python() -> Self {
        Self::new("python", Some(PYTHON_DESCRIPTION.to_string()), vec![])
    }
}

/// One function: name, description (each line becomes a `//` comment) and a JSON Schema
/// for its single object argument (`None` renders `() => any`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ToolDescription {
    pub name: String,
    pub description: String,
    pub parameters: Option<serde_json::Value>,
}

impl ToolDescription {
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Option<serde_json::Value>,
    ) -> Self {
        ToolDescription {
            name: name.into(),
            description: description.into(),
            parameters,
        }
    }
}

/// Adds a namespace to an optional map, replacing one with the same name. The map is a
/// `BTreeMap` because the format lists namespaces in name order (browser before python).
fn insert_namespace(
    tools: &mut Option<BTreeMap<String, ToolNamespaceConfig>>,
    ns: ToolNamespaceConfig,
) {
    tools
        .get_or_insert_with(BTreeMap::new)
        .insert(ns.name.clone(), ns);
}

/// Content of the system message. `SystemContent::new()` (= `Default`) gives the values
/// gpt-oss expects: the ChatGPT identity, knowledge cutoff 2024-06, medium reasoning, the
/// three channels required, no date and no tools.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SystemContent {
    pub model_identity: Option<String>,
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Built-in tool namespaces, keyed by namespace name.
    pub tools: Option<BTreeMap<String, ToolNamespaceConfig>>,
    /// `Current date:` line, conventionally `YYYY-MM-DD`. Keep it injectable: a wall-clock
    /// date changes the first message, and with it every cached prompt prefix.
    pub conversation_start_date: Option<String>,
    pub knowledge_cutoff: Option<String>,
    pub channel_config: Option<ChannelConfig>,
}

/// The identity line of the default system message.
pub const DEFAULT_MODEL_IDENTITY: &str =
    "You are ChatGPT, a large language model trained by OpenAI.";
/// The knowledge cutoff of the default system message.
pub const DEFAULT_KNOWLEDGE_CUTOFF: &str = "2024-06";

impl Default for SystemContent {
    fn default() -> Self {
        SystemContent {
            model_identity: Some(DEFAULT_MODEL_IDENTITY.to_string()),
            reasoning_effort: Some(ReasoningEffort::Medium),
            tools: None,
            conversation_start_date: None,
            knowledge_cutoff: Some(DEFAULT_KNOWLEDGE_CUTOFF.to_string()),
            channel_config: Some(ChannelConfig::require_channels([
                channel::ANALYSIS,
                channel::COMMENTARY,
                channel::FINAL,
            ])),
        }
    }
}

impl SystemContent {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_model_identity(mut self, identity: impl Into<String>) -> Self {
        self.model_identity = Some(identity.into());
        self
    }

    pub fn with_reasoning_effort(mut self, effort: ReasoningEffort) -> Self {
        self.reasoning_effort = Some(effort);
        self
    }

    pub fn with_tools(mut self, namespace: ToolNamespaceConfig) -> Self {
        insert_namespace(&mut self.tools, namespace);
        self
    }

    pub fn with_conversation_start_date(mut self, date: impl Into<String>) -> Self {
        self.conversation_start_date = Some(date.into());
        self
    }

    pub fn with_knowledge_cutoff(mut self, cutoff: impl Into<String>) -> Self {
        self.knowledge_cutoff = Some(cutoff.into());
        self
    }

    pub fn with_channel_config(mut self, config: ChannelConfig) -> Self {
        self.channel_config = Some(config);
        self
    }

    pub fn with_required_channels<I, T>(mut self, channels: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.channel_config = Some(ChannelConfig::require_channels(channels));
        self
    }

    pub fn with_browser_tool(self) -> Self {
        self.with_tools(ToolNamespaceConfig::browser())
    }

    pub fn with_python_tool(self) -> Self {
        self.with_tools(ToolNamespaceConfig::python())
    }
}

/// Content of the developer message: the "system prompt" of API users, plus function tools.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct DeveloperContent {
    /// Rendered under `# Instructions`.
    pub instructions: Option<String>,
    /// Tool namespaces, keyed by name; function tools live under `functions`.
    pub tools: Option<BTreeMap<String, ToolNamespaceConfig>>,
}

impl DeveloperContent {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    pub fn with_tools(mut self, namespace: ToolNamespaceConfig) -> Self {
        insert_namespace(&mut self.tools, namespace);
        self
    }

    /// Sets the `functions` namespace (what `to=functions.<name>` calls address).
    pub fn with_function_tools(self, tools: Vec<ToolDescription>) -> Self {
        self.with_tools(ToolNamespaceConfig::functions(tools))
    }
}

/// An ordered list of messages.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Conversation {
    pub messages: Vec<Message>,
}

impl Conversation {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_messages(messages: impl IntoIterator<Item = Message>) -> Self {
        Conversation {
            messages: messages.into_iter().collect(),
        }
    }

    pub fn push(&mut self, message: Message) {
        self.messages.push(message);
    }

    pub fn with_message(mut self, message: Message) -> Self {
        self.messages.push(message);
        self
    }
}

impl AsRef<[Message]> for Conversation {
    fn as_ref(&self) -> &[Message] {
        &self.messages
    }
}

impl<'a> IntoIterator for &'a Conversation {
    type Item = &'a Message;
    type IntoIter = std::slice::Iter<'a, Message>;
    fn into_iter(self) -> Self::IntoIter {
        self.messages.iter()
    }
}

impl FromIterator<Message> for Conversation {
    fn from_iter<I: IntoIterator<Item = Message>>(iter: I) -> Self {
        Self::from_messages(iter)
    }
}

impl From<&crate::parser::ParsedMessage> for Message {
    /// A parsed message as a conversation message (for history and for JSON output).
    fn from(m: &crate::parser::ParsedMessage) -> Message {
        Message {
            author: Author {
                role: m.role,
                name: m.name.clone(),
            },
            recipient: m.recipient.clone(),
            content: vec![Content::Text(TextContent {
                text: m.content.clone(),
            })],
            channel: m.channel.clone(),
            content_type: m.content_type.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_schemas_parse() {
        for tool in ToolNamespaceConfig::browser().tools {
            assert!(tool.parameters.is_some(), "{}", tool.name);
        }
    }

    #[test]
    fn single_text_part_is_a_bare_string() {
        let json = serde_json::to_value(Message::user("hi")).unwrap();
        assert_eq!(json, serde_json::json!({"role": "user", "content": "hi"}));
        let back: Message = serde_json::from_value(json).unwrap();
        assert_eq!(back, Message::user("hi"));
    }

    #[test]
    fn effort_spellings() {
        assert_eq!(
            serde_json::to_string(&ReasoningEffort::High).unwrap(),
            "\"High\""
        );
        let low: ReasoningEffort = serde_json::from_str("\"low\"").unwrap();
        assert_eq!(low, ReasoningEffort::Low);
        assert_eq!(
            "MEDIUM".parse::<ReasoningEffort>().unwrap(),
            ReasoningEffort::Medium
        );
    }
}
