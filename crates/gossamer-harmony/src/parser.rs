//! Streaming parser for harmony model output: token ids in, [`Event`]s out.
//!
//! Built for what gpt-oss actually writes, not only for what the renderer writes (see
//! `shared/spec/harmony-and-api.md` §1.2 and §1.10). Well-formed output parses like
//! `openai-harmony`'s `StreamableParser`; irregular output never fails: it produces the most
//! plausible messages plus [`Event::Warning`]s.
//!
//! # Guarantees
//!
//! * Never panics, whatever the token ids.
//! * Never loses text. Call a token *ordinary* when its id is below 199998 (a BPE rank) and
//!   *structural* otherwise (harmony's special tokens, reserved and unknown ids). Cut the token
//!   stream at every structural token into runs of ordinary tokens and decode each run with
//!   [`String::from_utf8_lossy`]. Then the concatenation of those strings equals the
//!   concatenation, in event order, of every [`Event::MessageStart`]'s `header_text` and every
//!   [`Event::TextDelta`]'s `text`. Header fields (role word, channel, recipient, content type)
//!   are taken from `header_text`; everything else is content.
//! * Text deltas are valid UTF-8 and never split a character: bytes of a character cut across
//!   tokens are held until it is complete; bytes still incomplete when a structural token
//!   arrives (or at [`StreamParser::finish`]) become U+FFFD.
//!
//! # Tolerated irregularities
//!
//! Both recipient positions (`assistant to=R<|channel|>C` and `<|channel|>C to=R`);
//! `<|constrain|>` as the special token or as plain text, glued or spaced; `json`/`code`
//! content types without `<|constrain|>`; tool names as roles (`functions.f to=assistant`);
//! recipients without the `functions.` prefix or without `to=`; tool calls on any channel;
//! a message that starts with `<|channel|>` (or `<|constrain|>`) where `<|start|>assistant` was
//! left out; text outside any message (kept as an assistant message); a header that never
//! reaches `<|message|>` (its non-header words become content); `<|start|><|start|>`,
//! `assistantassistant`, empty channels; stray stop tokens; a new message starting before the
//! previous one ended; `<|call|>` without recipient; `<|endoftext|>` as a terminator;
//! reserved/unknown ids; output cut off anywhere.

mod header;
mod utf8;

use header::{HeaderBuf, Mode, CHANNEL_MARK, CONSTRAIN_MARK};
use utf8::Utf8Decoder;

use crate::tokenizer::{special, Tokenizer};

/// Headers longer than this (in text bytes) that contain words that cannot be header fields
/// are taken to be content that never got a header, so that it streams.
const MAX_HEADER_BYTES: usize = 256;
/// Headers longer than this are closed even when every word could be a header field.
const HARD_MAX_HEADER_BYTES: usize = 4096;

/// First id that is not a BPE rank.
const FIRST_SPECIAL: u32 = 199_998;
const STARTOFTEXT: u32 = 199_998;
const ENDOFTEXT: u32 = 199_999;

pub use crate::conversation::Role;

const ALL_ROLES: [Role; 5] = [
    Role::System,
    Role::Developer,
    Role::User,
    Role::Assistant,
    Role::Tool,
];

/// The role named by a header word (`assistant`), if any.
fn role_from_word(w: &str) -> Option<Role> {
    ALL_ROLES.into_iter().find(|r| r.as_str() == w)
}

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// `<|end|>`.
    End,
    /// `<|return|>`: the final answer is done.
    Return,
    /// `<|call|>`: a tool call is done.
    Call,
    /// `<|endoftext|>` (199999) used as a terminator.
    EndOfText,
    /// The next message began (`<|start|>` or `<|channel|>`) without a terminator.
    Interrupted,
    /// The output stopped ([`StreamParser::finish`]) inside the message.
    Truncated,
}

/// Something irregular in the output. Parsing always continues.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Warning {
    /// Index (0-based) of the token that triggered it; the token count for `finish()`.
    pub token_index: usize,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "token {}: {}", self.token_index, self.message)
    }
}

/// A finished message addressed to a tool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    /// As written, e.g. `functions.get_weather`, `get_weather`, `browser.search`, `python`.
    pub recipient: String,
    pub channel: Option<String>,
    /// E.g. `<|constrain|>json` (crate convention), `json`, `code`.
    pub content_type: Option<String>,
    /// The message content, verbatim (not validated: may be code or broken JSON).
    pub arguments: String,
    pub end: End,
}

impl ToolCall {
    /// The function name for a developer-defined function: `functions.x` → `x`, and a bare
    /// `x` that is not a built-in tool → `x`. `None` for built-ins.
    pub fn function_name(&self) -> Option<&str> {
        if let Some(name) = self.recipient.strip_prefix("functions.") {
            return Some(name);
        }
        if self.is_builtin() {
            None
        } else {
            Some(&self.recipient)
        }
    }

    /// `python`, `browser.*` (the built-in tools of the system message).
    pub fn is_builtin(&self) -> bool {
        self.recipient == "python" || self.recipient.starts_with("browser.")
    }

    /// Content type without the `<|constrain|>` prefix.
    pub fn bare_content_type(&self) -> Option<&str> {
        self.content_type.as_deref().map(bare_content_type)
    }
}

/// `<|constrain|>json` → `json`.
pub fn bare_content_type(content_type: &str) -> &str {
    content_type
        .strip_prefix(CONSTRAIN_MARK)
        .unwrap_or(content_type)
}

/// What the parser reports, in stream order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// A message header is complete (normally at `<|message|>`).
    MessageStart {
        role: Role,
        /// Author name: the tool name for [`Role::Tool`], or `x` in `user:x`.
        name: Option<String>,
        channel: Option<String>,
        recipient: Option<String>,
        content_type: Option<String>,
        /// The header's text as generated, without special tokens (the role word is absent
        /// when the prompt supplied it). Part of the no-loss accounting.
        header_text: String,
    },
    /// Content text of the open message (never empty).
    TextDelta {
        text: String,
    },
    /// The open message is finished.
    MessageEnd {
        end: End,
    },
    /// The message that just ended was an assistant message addressed to a tool. Follows its
    /// `MessageEnd`. Not emitted when the message was truncated.
    ToolCall(ToolCall),
    Warning(Warning),
}

/// A whole message, as gathered by [`MessageCollector`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParsedMessage {
    pub role: Role,
    pub name: Option<String>,
    pub channel: Option<String>,
    pub recipient: Option<String>,
    pub content_type: Option<String>,
    pub header_text: String,
    pub content: String,
    pub end: End,
}

impl ParsedMessage {
    /// The tool call this message makes, if it is an assistant message addressed to a tool.
    pub fn tool_call(&self) -> Option<ToolCall> {
        let recipient = self.recipient.as_deref()?;
        if !is_tool_call(self.role, Some(recipient)) {
            return None;
        }
        Some(ToolCall {
            recipient: recipient.to_string(),
            channel: self.channel.clone(),
            content_type: self.content_type.clone(),
            arguments: self.content.clone(),
            end: self.end,
        })
    }
}

fn is_tool_call(role: Role, recipient: Option<&str>) -> bool {
    role == Role::Assistant
        && recipient.is_some_and(|r| {
            !r.is_empty() && r != "all" && role_from_word(r).is_none_or(|r| r == Role::Tool)
        })
}

/// Gathers events into messages.
#[derive(Debug, Default, Clone)]
pub struct MessageCollector {
    messages: Vec<ParsedMessage>,
    warnings: Vec<Warning>,
    open: Option<ParsedMessage>,
}

impl MessageCollector {
    pub fn new() -> MessageCollector {
        MessageCollector::default()
    }

    pub fn push(&mut self, event: &Event) {
        match event {
            Event::MessageStart {
                role,
                name,
                channel,
                recipient,
                content_type,
                header_text,
            } => {
                self.close(End::Interrupted);
                self.open = Some(ParsedMessage {
                    role: *role,
                    name: name.clone(),
                    channel: channel.clone(),
                    recipient: recipient.clone(),
                    content_type: content_type.clone(),
                    header_text: header_text.clone(),
                    content: String::new(),
                    end: End::Truncated,
                });
            }
            Event::TextDelta { text } => {
                if let Some(m) = &mut self.open {
                    m.content.push_str(text);
                }
            }
            Event::MessageEnd { end } => self.close(*end),
            Event::ToolCall(_) => {}
            Event::Warning(w) => self.warnings.push(w.clone()),
        }
    }

    fn close(&mut self, end: End) {
        if let Some(mut m) = self.open.take() {
            m.end = end;
            self.messages.push(m);
        }
    }

    /// Messages finished so far.
    pub fn messages(&self) -> &[ParsedMessage] {
        &self.messages
    }

    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The message still open, if any.
    pub fn current(&self) -> Option<&ParsedMessage> {
        self.open.as_ref()
    }

    /// All messages (an open one is closed as truncated) and all warnings.
    pub fn into_parts(mut self) -> (Vec<ParsedMessage>, Vec<Warning>) {
        self.close(End::Truncated);
        (self.messages, self.warnings)
    }
}

/// Parses a whole completion: the tokens the model generated after a prompt that ended with
/// `<|start|>assistant`.
pub fn parse_completion(tokens: &[u32]) -> (Vec<ParsedMessage>, Vec<Warning>) {
    parse_tokens(tokens, Some(Role::Assistant))
}

/// Parses a token stream; `first_role` as in [`StreamParser::new`] (`None` for a stream that
/// begins with `<|start|>`, such as a rendered conversation).
pub fn parse_tokens(
    tokens: &[u32],
    first_role: Option<Role>,
) -> (Vec<ParsedMessage>, Vec<Warning>) {
    let mut parser = StreamParser::new(Tokenizer::o200k_harmony(), first_role);
    let mut collector = MessageCollector::new();
    let mut events = Vec::new();
    for &t in tokens {
        parser.push_into(t, &mut events);
    }
    parser.finish_into(&mut events);
    for e in &events {
        collector.push(e);
    }
    collector.into_parts()
}

/// What kind of token an id is, for the parser.
enum Tok {
    Text(Vec<u8>),
    Start,
    Channel,
    Message,
    Constrain,
    Stop(End),
    /// No text and no role in the format; the string describes it for the warning.
    Ignored(String),
}

/// The open message's fields, for tool calls.
struct Open {
    role: Role,
    channel: Option<String>,
    recipient: Option<String>,
    content_type: Option<String>,
    /// Content so far; only kept for tool calls.
    content: Option<String>,
}

enum State {
    /// Between messages.
    Idle,
    Header(HeaderBuf),
    Content(Open),
}

/// The streaming parser. One per generation.
pub struct StreamParser {
    tokenizer: Tokenizer,
    state: State,
    decoder: Utf8Decoder,
    /// Index of the token being processed.
    index: usize,
}

impl StreamParser {
    /// `first_role`: `Some(Role::Assistant)` when the prompt ended with `<|start|>assistant`
    /// (the normal completion case: parsing starts inside that header); `None` to expect
    /// `<|start|>` first.
    pub fn new(tokenizer: Tokenizer, first_role: Option<Role>) -> StreamParser {
        let state = match first_role {
            Some(role) => State::Header(HeaderBuf::new(Some(role), true)),
            None => State::Idle,
        };
        StreamParser {
            tokenizer,
            state,
            decoder: Utf8Decoder::default(),
            index: 0,
        }
    }

    /// Feeds one token; returns the events it completes.
    pub fn push(&mut self, token: u32) -> Vec<Event> {
        let mut out = Vec::new();
        self.push_into(token, &mut out);
        out
    }

    /// Feeds one token, appending its events to `out`.
    pub fn push_into(&mut self, token: u32, out: &mut Vec<Event>) {
        let tok = self.classify(token);
        if !matches!(tok, Tok::Text(_)) {
            self.flush_decoder(out);
        }
        self.handle(tok, out);
        self.index += 1;
    }

    /// The output ended (a stop token was sampled, or max tokens, or the client went away).
    /// Closes whatever is open, as [`End::Truncated`] unless it had already ended.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }

    pub fn finish_into(&mut self, out: &mut Vec<Event>) {
        self.flush_decoder(out);
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => {}
            State::Header(h) => {
                if h.is_empty() {
                    if h.explicit_start && h.preset.is_none() {
                        self.warn(out, "output ended right after <|start|>".to_string());
                    }
                } else {
                    self.warn(out, "output ended inside a message header".to_string());
                    self.header_as_message(&h, End::Truncated, out);
                }
            }
            State::Content(open) => {
                self.warn(out, "output ended inside a message".to_string());
                self.end_message(open, End::Truncated, out);
            }
        }
    }

    /// Whether a message (or header) is open.
    pub fn in_message(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    fn classify(&self, id: u32) -> Tok {
        match id {
            special::START => Tok::Start,
            special::CHANNEL => Tok::Channel,
            special::MESSAGE => Tok::Message,
            special::CONSTRAIN => Tok::Constrain,
            special::END => Tok::Stop(End::End),
            special::RETURN => Tok::Stop(End::Return),
            special::CALL => Tok::Stop(End::Call),
            ENDOFTEXT => Tok::Stop(End::EndOfText),
            STARTOFTEXT => Tok::Ignored("<|startoftext|>".to_string()),
            id if id < FIRST_SPECIAL => match self.tokenizer.decode_bytes(&[id]) {
                Ok(bytes) => Tok::Text(bytes),
                Err(_) => Tok::Ignored(format!("undecodable token {id}")),
            },
            id if id < 201_088 => Tok::Ignored(format!("reserved token {id}")),
            id => Tok::Ignored(format!("token id {id} outside the vocabulary")),
        }
    }

    fn warn(&self, out: &mut Vec<Event>, message: String) {
        tracing::debug!(token_index = self.index, "harmony parser: {message}");
        out.push(Event::Warning(Warning {
            token_index: self.index,
            message,
        }));
    }

    /// Ends the current run of ordinary tokens: incomplete UTF-8 becomes U+FFFD.
    fn flush_decoder(&mut self, out: &mut Vec<Event>) {
        if self.decoder.is_empty() {
            return;
        }
        let mut text = String::new();
        self.decoder.flush(&mut text);
        self.route_text(text, out);
    }

    fn route_text(&mut self, text: String, out: &mut Vec<Event>) {
        if text.is_empty() {
            return;
        }
        match &mut self.state {
            State::Header(h) => h.push_text(&text),
            State::Content(open) => {
                if let Some(c) = &mut open.content {
                    c.push_str(&text);
                }
                out.push(Event::TextDelta { text });
            }
            State::Idle => {
                // Unreachable in practice (text always opens a header first); keep it anyway.
                let mut h = HeaderBuf::new(None, false);
                h.push_text(&text);
                self.state = State::Header(h);
            }
        }
    }

    fn handle(&mut self, tok: Tok, out: &mut Vec<Event>) {
        let state = std::mem::replace(&mut self.state, State::Idle);
        match (state, tok) {
            (state, Tok::Ignored(what)) => {
                self.state = state;
                self.warn(out, format!("ignored {what}"));
            }

            // ---- text ----
            (State::Idle, Tok::Text(bytes)) => {
                self.state = State::Header(HeaderBuf::new(None, false));
                self.text(&bytes, out);
            }
            (state, Tok::Text(bytes)) => {
                self.state = state;
                self.text(&bytes, out);
            }

            // ---- <|start|> ----
            (State::Idle, Tok::Start) => {
                self.state = State::Header(HeaderBuf::new(None, true));
            }
            (State::Header(h), Tok::Start) => {
                if h.is_empty() {
                    self.warn(out, "repeated <|start|>".to_string());
                    let mut h = h;
                    h.explicit_start = true;
                    self.state = State::Header(h);
                } else {
                    self.warn(
                        out,
                        "<|start|> before the header reached <|message|>".to_string(),
                    );
                    self.header_as_message(&h, End::Interrupted, out);
                    self.state = State::Header(HeaderBuf::new(None, true));
                }
            }
            (State::Content(open), Tok::Start) => {
                self.warn(
                    out,
                    "<|start|> inside a message that was not ended".to_string(),
                );
                self.end_message(open, End::Interrupted, out);
                self.state = State::Header(HeaderBuf::new(None, true));
            }

            // ---- <|channel|> ----
            (State::Idle, Tok::Channel) => {
                self.warn(out, "<|channel|> without <|start|>assistant".to_string());
                let mut h = HeaderBuf::new(Some(Role::Assistant), false);
                h.push_marker(CHANNEL_MARK);
                self.state = State::Header(h);
            }
            (State::Header(h), Tok::Channel) => {
                let p = header::parse(&h, Mode::Partial);
                if p.has_content {
                    // Text, then a new header: the text was a message of its own.
                    self.warn(
                        out,
                        "<|channel|> after text that is not a header; starting a new message"
                            .to_string(),
                    );
                    self.header_as_message(&h, End::Interrupted, out);
                    let mut h = HeaderBuf::new(Some(Role::Assistant), false);
                    h.push_marker(CHANNEL_MARK);
                    self.state = State::Header(h);
                } else {
                    let mut h = h;
                    h.push_marker(CHANNEL_MARK);
                    self.state = State::Header(h);
                }
            }
            (State::Content(open), Tok::Channel) => {
                self.warn(
                    out,
                    "<|channel|> inside a message: a new assistant message without <|end|><|start|>assistant"
                        .to_string(),
                );
                self.end_message(open, End::Interrupted, out);
                let mut h = HeaderBuf::new(Some(Role::Assistant), false);
                h.push_marker(CHANNEL_MARK);
                self.state = State::Header(h);
            }

            // ---- <|constrain|> ----
            (State::Idle, Tok::Constrain) => {
                self.warn(out, "<|constrain|> outside a message header".to_string());
                let mut h = HeaderBuf::new(Some(Role::Assistant), false);
                h.push_marker(CONSTRAIN_MARK);
                self.state = State::Header(h);
            }
            (State::Header(mut h), Tok::Constrain) => {
                h.push_marker(CONSTRAIN_MARK);
                self.state = State::Header(h);
            }
            (State::Content(open), Tok::Constrain) => {
                self.warn(
                    out,
                    "<|constrain|> inside message content (dropped)".to_string(),
                );
                self.state = State::Content(open);
            }

            // ---- <|message|> ----
            (State::Idle, Tok::Message) => {
                self.warn(out, "<|message|> without a header".to_string());
                let empty = HeaderBuf::new(Some(Role::Assistant), false);
                self.open_message(&empty, out);
            }
            (State::Header(h), Tok::Message) => {
                if !h.explicit_start && h.preset.is_none() {
                    self.warn(out, "message header without <|start|>".to_string());
                }
                self.open_message(&h, out);
            }
            (State::Content(open), Tok::Message) => {
                self.warn(
                    out,
                    "<|message|> inside message content (dropped)".to_string(),
                );
                self.state = State::Content(open);
            }

            // ---- <|end|> <|return|> <|call|> <|endoftext|> ----
            (State::Idle, Tok::Stop(end)) => {
                self.warn(
                    out,
                    format!("{} outside a message (ignored)", end_token_name(end)),
                );
            }
            (State::Header(h), Tok::Stop(end)) => {
                if h.is_empty() {
                    if h.preset.is_none() || !h.explicit_start {
                        self.warn(
                            out,
                            format!("empty message ended by {}", end_token_name(end)),
                        );
                    }
                } else {
                    if h.explicit_start || h.preset.is_some() {
                        self.warn(
                            out,
                            format!(
                                "message header ended by {} without <|message|>",
                                end_token_name(end)
                            ),
                        );
                    } else {
                        self.warn(out, "text outside any message".to_string());
                    }
                    self.header_as_message(&h, end, out);
                }
            }
            (State::Content(open), Tok::Stop(end)) => {
                if end == End::EndOfText {
                    self.warn(
                        out,
                        "<|endoftext|> used as a message terminator".to_string(),
                    );
                }
                self.end_message(open, end, out);
            }
        }
    }

    fn text(&mut self, bytes: &[u8], out: &mut Vec<Event>) {
        let mut text = String::new();
        self.decoder.push(bytes, &mut text);
        self.route_text(text, out);
        // A header that keeps growing with words that cannot be header fields is content
        // that never got a header: stream it instead of holding it back. Checked every
        // `MAX_HEADER_BYTES` of growth; past `HARD_MAX_HEADER_BYTES` the header is closed
        // whatever it holds (bounds the work per token).
        if let State::Header(h) = &mut self.state {
            if h.text_bytes > h.next_check {
                h.next_check = h.text_bytes + MAX_HEADER_BYTES;
                let p = header::parse(h, Mode::Partial);
                if p.has_content || h.text_bytes > HARD_MAX_HEADER_BYTES {
                    let h = h.clone();
                    self.warn(
                        out,
                        "long message header without <|message|>: treating it as content"
                            .to_string(),
                    );
                    self.emit_start(&h, Mode::Partial, out);
                }
            }
        }
    }

    /// `<|message|>`: the header is complete.
    fn open_message(&mut self, h: &HeaderBuf, out: &mut Vec<Event>) {
        self.emit_start(h, Mode::Full, out);
    }

    /// Emits `MessageStart` (and, in partial mode, the content found in the header) and
    /// enters the content state.
    fn emit_start(&mut self, h: &HeaderBuf, mode: Mode, out: &mut Vec<Event>) {
        let p = header::parse(h, mode);
        for w in p.warnings {
            self.warn(out, w);
        }
        let tool = is_tool_call(p.role, p.recipient.as_deref());
        out.push(Event::MessageStart {
            role: p.role,
            name: p.name,
            channel: p.channel.clone(),
            recipient: p.recipient.clone(),
            content_type: p.content_type.clone(),
            header_text: p.header_text,
        });
        self.state = State::Content(Open {
            role: p.role,
            channel: p.channel,
            recipient: p.recipient,
            content_type: p.content_type,
            content: tool.then(String::new),
        });
        if !p.content.is_empty() {
            self.route_text(p.content, out);
        }
    }

    /// A header that never reached `<|message|>`: what is not header is content.
    fn header_as_message(&mut self, h: &HeaderBuf, end: End, out: &mut Vec<Event>) {
        self.emit_start(h, Mode::Partial, out);
        if let State::Content(open) = std::mem::replace(&mut self.state, State::Idle) {
            self.end_message(open, end, out);
        }
    }

    fn end_message(&mut self, open: Open, end: End, out: &mut Vec<Event>) {
        self.state = State::Idle;
        out.push(Event::MessageEnd { end });
        match (open.content, open.recipient) {
            (Some(arguments), Some(recipient)) => {
                if end == End::Truncated {
                    self.warn(
                        out,
                        format!("tool call to {recipient:?} was cut off; not reported as a call"),
                    );
                } else {
                    out.push(Event::ToolCall(ToolCall {
                        recipient,
                        channel: open.channel,
                        content_type: open.content_type,
                        arguments,
                        end,
                    }));
                }
            }
            (_, recipient) => {
                if end == End::Call && open.role == Role::Assistant {
                    let what = match recipient {
                        None => "no recipient".to_string(),
                        Some(r) => format!("recipient {r:?}"),
                    };
                    self.warn(
                        out,
                        format!("<|call|> ends a message with {what}: not a tool call"),
                    );
                }
            }
        }
    }
}

fn end_token_name(end: End) -> &'static str {
    match end {
        End::End => "<|end|>",
        End::Return => "<|return|>",
        End::Call => "<|call|>",
        End::EndOfText => "<|endoftext|>",
        End::Interrupted => "a new message",
        End::Truncated => "the end of output",
    }
}

/// Whether the parser treats `id` as structural (no text of its own): every id that is not a
/// BPE rank. This is the cut used by the no-loss guarantee in the module docs.
pub fn is_structural(id: u32) -> bool {
    id >= FIRST_SPECIAL
}

/// The text the parser's events must account for: each run of ordinary (non-structural) tokens
/// decoded on its own, invalid UTF-8 as U+FFFD, concatenated. The no-loss guarantee (checked by
/// the property tests and the fuzz target) is that the header texts and deltas, in order,
/// equal this.
pub fn ordinary_text(tokenizer: &Tokenizer, tokens: &[u32]) -> String {
    let mut out = String::new();
    let mut run = Vec::new();
    for &id in tokens.iter().chain(std::iter::once(&u32::MAX)) {
        if is_structural(id) {
            out.push_str(&String::from_utf8_lossy(&run));
            run.clear();
        } else if let Ok(bytes) = tokenizer.decode_bytes(&[id]) {
            run.extend(bytes);
        }
    }
    out
}
