//! The Responses API (`POST /v1/responses`) onto harmony and back.
//!
//! Requests: `input` items (messages, reasoning, function calls and their outputs) become a
//! harmony conversation the way OpenAI's reference gpt-oss server and vLLM build it, with the
//! same per-message mapping as [`crate::chat`] so both APIs show the model identical tokens.
//! `previous_response_id` continues from the stored items of the earlier response (its
//! `instructions` are not carried over, as with OpenAI).
//!
//! Answers: [`ResponseBuilder`] turns the [`Turn`](crate::turn::Turn)'s part events into the
//! Responses streaming events and the final response object from one state, so the item ids a
//! client sees while streaming are those of the object it gets (and that is stored).

use std::time::{SystemTime, UNIX_EPOCH};

use gossamer_harmony::{Conversation, DeveloperContent, Message, ReasoningEffort, ToolDescription};
use serde_json::{json, Map, Value};

use crate::chat::{
    effort_of, opening, text_of, tool_call_message, tool_choice_of, tool_result_message, tools_of,
    ToolChoice,
};
use crate::error::ApiError;
use crate::params;
use crate::turn::{Finish, PartKind, TurnEvent, TurnOutcome};

/// A Responses request, checked and mapped.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponsesRequest {
    /// `model` as given (the HTTP layer decides whether it names the served model).
    pub model: Option<String>,
    pub conversation: Conversation,
    pub effort: ReasoningEffort,
    pub tool_choice: ToolChoice,
    /// The function tools as declared (names to validate tool calls against).
    pub tools: Vec<ToolDescription>,
    /// This request's items only, each with an explicit `type`.
    pub input_items: Vec<Value>,
    /// The previous response's context followed by [`Self::input_items`]: what the
    /// conversation was built from, and what the next turn continues from (with the output).
    pub context: Vec<Value>,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stream: bool,
    pub store: bool,
    pub previous_response_id: Option<String>,
    /// An object of strings, or `Null` when not given.
    pub metadata: Value,
    /// The `tools` array as given (`[]` when absent), echoed in the response object.
    pub tools_json: Value,
    /// The tool choice in the Responses shape (`"auto"`, `{"type": "function", "name"}`).
    pub tool_choice_json: Value,
}

impl ResponsesRequest {
    /// What the response object repeats back of this request.
    pub fn echo(&self) -> ResponseEcho {
        ResponseEcho {
            instructions: self.instructions.clone(),
            max_output_tokens: self.max_output_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            tools: self.tools_json.clone(),
            tool_choice: self.tool_choice_json.clone(),
            previous_response_id: self.previous_response_id.clone(),
            store: self.store,
            metadata: self.metadata.clone(),
            effort: self.effort,
        }
    }
}

/// Checks and maps a Responses body. `previous_context`: the stored context of the response
/// named by `previous_response_id`, already looked up by the caller (which answers 404 when
/// it is unknown); its items come before this request's `input`.
pub fn parse_request(
    body: &Value,
    previous_context: Option<&[Value]>,
) -> Result<ResponsesRequest, ApiError> {
    let model = params::opt_str(body, "model")?.map(str::to_string);
    let instructions = params::opt_str(body, "instructions")?.map(str::to_string);
    let max_output_tokens =
        params::opt_int(body, "max_output_tokens", 1, u32::MAX as u64)?.map(|x| x as usize);
    let temperature = params::opt_number(body, "temperature", 0.0, false, 2.0)?;
    let top_p = params::opt_number(body, "top_p", 0.0, true, 1.0)?;
    let stream = params::opt_bool(body, "stream")?.unwrap_or(false);
    // OpenAI stores responses unless told not to.
    let store = params::opt_bool(body, "store")?.unwrap_or(true);
    let previous_response_id = params::opt_str(body, "previous_response_id")?.map(str::to_string);
    let metadata = metadata_of(body)?;
    check_unsupported(body)?;
    let effort = reasoning_effort(body)?;
    let tools = tools_of(body.get("tools"))?;
    let tool_choice = responses_tool_choice(body.get("tool_choice"), &tools)?;

    let previous = previous_context.unwrap_or(&[]);
    let input = input_of(body)?;
    if input.is_empty() && previous.is_empty() {
        return Err(ApiError::invalid("input", "`input` must not be empty"));
    }
    let mut items = Vec::with_capacity(previous.len() + input.len());
    for v in previous {
        items.push(parse_item(v, Origin::Previous).map_err(from_previous)?);
    }
    for (i, v) in input.iter().enumerate() {
        items.push(parse_item(v, Origin::Input(i))?);
    }
    let shown_tools = if tool_choice == ToolChoice::None {
        Vec::new()
    } else {
        tools.clone()
    };
    let conversation = build_conversation(&items, instructions.as_deref(), effort, shown_tools)?;

    let input_items: Vec<Value> = input.iter().map(normalized).collect();
    let mut context: Vec<Value> = previous.iter().map(normalized).collect();
    context.extend(input_items.iter().cloned());
    let tools_json = body
        .get("tools")
        .filter(|v| !v.is_null())
        .cloned()
        .unwrap_or_else(|| json!([]));
    Ok(ResponsesRequest {
        model,
        conversation,
        effort,
        tool_choice_json: tool_choice_json(&tool_choice),
        tool_choice,
        tools,
        input_items,
        context,
        instructions,
        max_output_tokens,
        temperature,
        top_p,
        stream,
        store,
        previous_response_id,
        metadata,
        tools_json,
    })
}

/// `metadata`: up to 16 string values, as OpenAI allows.
fn metadata_of(body: &Value) -> Result<Value, ApiError> {
    match body.get("metadata") {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::Object(m)) => {
            if m.len() > 16 {
                return Err(ApiError::invalid(
                    "metadata",
                    "`metadata` holds at most 16 key-value pairs",
                ));
            }
            if let Some((k, _)) = m.iter().find(|(_, v)| !v.is_string()) {
                return Err(ApiError::invalid(
                    format!("metadata.{k}"),
                    "`metadata` values must be strings",
                ));
            }
            Ok(Value::Object(m.clone()))
        }
        Some(_) => Err(ApiError::invalid(
            "metadata",
            "`metadata` must be an object of strings",
        )),
    }
}

/// Fields gossamer does not implement: accepted at their neutral value, refused otherwise.
fn check_unsupported(body: &Value) -> Result<(), ApiError> {
    params::opt_bool(body, "parallel_tool_calls")?;
    match body.get("text") {
        None | Some(Value::Null) => {}
        Some(Value::Object(t)) => {
            let format = t.get("format").filter(|f| !f.is_null());
            if format.is_some_and(|f| f.get("type").and_then(Value::as_str) != Some("text")) {
                return Err(ApiError::invalid(
                    "text.format",
                    "`text.format` is not supported: structured output (json_object, json_schema) is not implemented yet",
                )
                .with_code("unsupported_parameter"));
            }
        }
        Some(_) => return Err(ApiError::invalid("text", "`text` must be an object")),
    }
    params::unsupported_unless(
        body,
        "background",
        |v| v == &Value::Bool(false),
        "responses run in the foreground",
    )?;
    params::unsupported_unless(
        body,
        "conversation",
        |_| false,
        "use `previous_response_id` to continue a conversation",
    )?;
    params::unsupported_unless(body, "prompt", |_| false, "no stored prompts")?;
    params::unsupported_unless(
        body,
        "top_logprobs",
        |v| v.as_u64() == Some(0),
        "no log-probabilities in Responses yet",
    )?;
    params::unsupported_unless(
        body,
        "truncation",
        |v| v == "disabled" || v == "auto",
        "`truncation` is `disabled` or `auto`",
    )?;
    Ok(())
}

/// `reasoning.effort`, with chat.rs's rules (`minimal` → low, default medium).
fn reasoning_effort(body: &Value) -> Result<ReasoningEffort, ApiError> {
    match body.get("reasoning") {
        None | Some(Value::Null) => Ok(ReasoningEffort::Medium),
        Some(r @ Value::Object(_)) => effort_of(r.get("effort")).map_err(|e| {
            ApiError::invalid(
                "reasoning.effort",
                e.message.replace("reasoning_effort", "reasoning.effort"),
            )
        }),
        Some(_) => Err(ApiError::invalid(
            "reasoning",
            "`reasoning` must be an object like {\"effort\": \"high\"}",
        )),
    }
}

/// `tool_choice`: a string as in Chat Completions, or `{"type": "function", "name"}` (the
/// Chat Completions `function.name` accepted too); validated by chat.rs's rules.
fn responses_tool_choice(
    v: Option<&Value>,
    tools: &[ToolDescription],
) -> Result<ToolChoice, ApiError> {
    let Some(obj) = v.filter(|v| v.is_object()) else {
        return tool_choice_of(v, tools);
    };
    if obj.get("type").and_then(Value::as_str) != Some("function") {
        return Err(ApiError::invalid(
            "tool_choice",
            "a `tool_choice` object must be {\"type\": \"function\", \"name\": ...} (function tools only)",
        ));
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .or_else(|| obj.pointer("/function/name").and_then(Value::as_str))
        .ok_or_else(|| {
            ApiError::invalid(
                "tool_choice",
                "a named `tool_choice` needs the function's `name`",
            )
        })?;
    tool_choice_of(
        Some(&json!({"type": "function", "function": {"name": name}})),
        tools,
    )
}

fn tool_choice_json(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Named(name) => json!({"type": "function", "name": name}),
    }
}

/// `input`: a string (one user message) or an array of items.
fn input_of(body: &Value) -> Result<Vec<Value>, ApiError> {
    match body.get("input") {
        Some(Value::String(s)) => Ok(vec![
            json!({"type": "message", "role": "user", "content": s}),
        ]),
        Some(Value::Array(items)) => Ok(items.clone()),
        None | Some(Value::Null) => Err(ApiError::invalid(
            "input",
            "`input` is required: a string or an array of input items",
        )),
        Some(_) => Err(ApiError::invalid(
            "input",
            "`input` must be a string or an array of input items",
        )),
    }
}

/// The item with its `type` spelled out (a message may leave it out), `type` first.
fn normalized(item: &Value) -> Value {
    let Some(obj) = item.as_object() else {
        return item.clone();
    };
    if obj.contains_key("type") {
        return item.clone();
    }
    let mut out = Map::new();
    out.insert("type".into(), json!("message"));
    out.extend(obj.iter().map(|(k, v)| (k.clone(), v.clone())));
    Value::Object(out)
}

/// Where an item came from, for the `param` of errors.
#[derive(Clone, Copy, Debug)]
enum Origin {
    Input(usize),
    /// The stored context of `previous_response_id`.
    Previous,
}

impl Origin {
    fn param(self, field: &str) -> String {
        match self {
            Origin::Input(i) if field.is_empty() => format!("input.{i}"),
            Origin::Input(i) => format!("input.{i}.{field}"),
            Origin::Previous => "previous_response_id".to_string(),
        }
    }
}

/// A stored item that no longer parses is the stored response's fault, not this request's.
fn from_previous(e: ApiError) -> ApiError {
    ApiError::invalid(
        "previous_response_id",
        format!("the stored response cannot be continued: {}", e.message),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Speaker {
    User,
    Assistant,
    /// `system` and `developer`.
    Instructions,
}

/// One input item, read.
#[derive(Clone, Debug)]
enum Item {
    Message {
        speaker: Speaker,
        text: String,
    },
    Reasoning(String),
    Call {
        call_id: String,
        name: String,
        arguments: String,
    },
    CallOutput {
        call_id: String,
        output: String,
    },
}

struct Parsed {
    item: Item,
    origin: Origin,
}

fn parse_item(v: &Value, origin: Origin) -> Result<Parsed, ApiError> {
    let Some(obj) = v.as_object() else {
        return Err(ApiError::invalid(
            origin.param(""),
            "an input item must be an object",
        ));
    };
    let kind = match obj.get("type") {
        None | Some(Value::Null) if obj.contains_key("role") => "message",
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                origin.param("type"),
                "an input item needs a `type` (or a `role` for a message)",
            ))
        }
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(ApiError::invalid(
                origin.param("type"),
                "`type` must be a string",
            ))
        }
    };
    let item = match kind {
        "message" => message_item(v, origin)?,
        "reasoning" => Item::Reasoning(reasoning_text(v, origin)?),
        "function_call" => call_item(v, origin)?,
        "function_call_output" => Item::CallOutput {
            call_id: required_str(v, "call_id", origin)?,
            output: match v.get("output") {
                None | Some(Value::Null) => {
                    return Err(ApiError::invalid(
                        origin.param("output"),
                        "a `function_call_output` needs its `output`",
                    ))
                }
                Some(o) => text_of(o, &origin.param("output"))?,
            },
        },
        other => {
            return Err(ApiError::invalid(
                origin.param("type"),
                format!("input items of type `{other}` are not supported by this server"),
            ))
        }
    };
    Ok(Parsed { item, origin })
}

fn required_str(v: &Value, key: &str, origin: Origin) -> Result<String, ApiError> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            ApiError::invalid(
                origin.param(key),
                format!("`{key}` must be a non-empty string"),
            )
        })
}

fn message_item(v: &Value, origin: Origin) -> Result<Item, ApiError> {
    let speaker = match v.get("role").and_then(Value::as_str) {
        Some("user") => Speaker::User,
        Some("assistant") => Speaker::Assistant,
        Some("system" | "developer") => Speaker::Instructions,
        Some(other) => {
            return Err(ApiError::invalid(
                origin.param("role"),
                format!("unknown role `{other}` (user, assistant, system or developer)"),
            ))
        }
        None => {
            return Err(ApiError::invalid(
                origin.param("role"),
                "a message needs a `role`",
            ))
        }
    };
    let content = v.get("content").unwrap_or(&Value::Null);
    let text = text_of(content, &origin.param("content"))?;
    Ok(Item::Message { speaker, text })
}

/// A reasoning item's text: its `reasoning_text` content, or else its summary.
fn reasoning_text(v: &Value, origin: Origin) -> Result<String, ApiError> {
    let content = parts_text(v, "content", "reasoning_text", "", origin)?;
    if !content.is_empty() {
        return Ok(content);
    }
    parts_text(v, "summary", "summary_text", "\n\n", origin)
}

/// The `text` of every part of `part_type` in the array at `key`, joined with `sep`.
fn parts_text(
    v: &Value,
    key: &str,
    part_type: &str,
    sep: &str,
    origin: Origin,
) -> Result<String, ApiError> {
    let parts = match v.get(key) {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(Value::Array(parts)) => parts,
        Some(_) => {
            return Err(ApiError::invalid(
                origin.param(key),
                format!("`{key}` must be an array of `{part_type}` parts"),
            ))
        }
    };
    let mut texts = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let text = part
            .get("text")
            .and_then(Value::as_str)
            .filter(|_| part.get("type").and_then(Value::as_str) == Some(part_type))
            .ok_or_else(|| {
                ApiError::invalid(
                    origin.param(&format!("{key}.{i}")),
                    format!("expected {{\"type\": \"{part_type}\", \"text\": ...}}"),
                )
            })?;
        texts.push(text);
    }
    Ok(texts.join(sep))
}

fn call_item(v: &Value, origin: Origin) -> Result<Item, ApiError> {
    let arguments = match v.get("arguments") {
        Some(Value::String(s)) => s.clone(),
        // Some clients send the object itself.
        Some(o @ Value::Object(_)) => o.to_string(),
        _ => {
            return Err(ApiError::invalid(
                origin.param("arguments"),
                "a `function_call` needs its `arguments` string",
            ))
        }
    };
    Ok(Item::Call {
        call_id: required_str(v, "call_id", origin)?,
        name: required_str(v, "name", origin)?,
        arguments,
    })
}

/// The harmony conversation of the items: system (effort), developer (instructions, leading
/// system/developer items, tools), then one message per item.
fn build_conversation(
    items: &[Parsed],
    instructions: Option<&str>,
    effort: ReasoningEffort,
    shown_tools: Vec<ToolDescription>,
) -> Result<Conversation, ApiError> {
    let leading = items
        .iter()
        .take_while(|p| {
            matches!(
                p.item,
                Item::Message {
                    speaker: Speaker::Instructions,
                    ..
                }
            )
        })
        .count();
    let mut texts: Vec<&str> = instructions.filter(|s| !s.is_empty()).into_iter().collect();
    for p in &items[..leading] {
        if let Item::Message { text, .. } = &p.item {
            texts.push(text);
        }
    }
    let mut conversation = opening(effort, &texts, shown_tools);
    // Call ids seen so far → function names, for the outputs.
    let mut calls: Vec<(&str, &str)> = Vec::new();
    for (k, p) in items.iter().enumerate().skip(leading) {
        let next_is_call = matches!(items.get(k + 1).map(|n| &n.item), Some(Item::Call { .. }));
        if let Some(m) = harmony_message(p, next_is_call, &mut calls)? {
            conversation.push(m);
        }
    }
    Ok(conversation)
}

/// One item as harmony renders it (`None`: nothing to render, e.g. an empty message).
fn harmony_message<'a>(
    p: &'a Parsed,
    next_is_call: bool,
    calls: &mut Vec<(&'a str, &'a str)>,
) -> Result<Option<Message>, ApiError> {
    let message = match &p.item {
        Item::Message {
            speaker: Speaker::Instructions,
            text,
        } => Message::developer(DeveloperContent::new().with_instructions(text.clone())),
        Item::Message {
            speaker: Speaker::User,
            text,
        } => Message::user(text.clone()),
        Item::Message { text, .. } | Item::Reasoning(text) if text.is_empty() => return Ok(None),
        // Text right before a call is a preamble, which the model writes on commentary.
        Item::Message { text, .. } => Message::assistant(text.clone())
            .with_channel(if next_is_call { "commentary" } else { "final" }),
        Item::Reasoning(text) => Message::assistant(text.clone()).with_channel("analysis"),
        Item::Call {
            call_id,
            name,
            arguments,
        } => {
            calls.push((call_id, name));
            tool_call_message(name, arguments.clone())
        }
        Item::CallOutput { call_id, output } => {
            let name = calls
                .iter()
                .rev()
                .find(|(id, _)| id == call_id)
                .map(|(_, name)| *name)
                .ok_or_else(|| {
                    ApiError::invalid(
                        p.origin.param("call_id"),
                        format!("no earlier `function_call` has call_id `{call_id}`"),
                    )
                })?;
            tool_result_message(name, output.clone())
        }
    };
    Ok(Some(message))
}

/// What the response object repeats of its request.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponseEcho {
    pub instructions: Option<String>,
    pub max_output_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// The request's `tools` array.
    pub tools: Value,
    /// The request's tool choice, Responses-shaped.
    pub tool_choice: Value,
    pub previous_response_id: Option<String>,
    pub store: bool,
    /// An object, or `Null` (shown as `{}`).
    pub metadata: Value,
    pub effort: ReasoningEffort,
}

impl Default for ResponseEcho {
    fn default() -> Self {
        ResponseEcho {
            instructions: None,
            max_output_tokens: None,
            temperature: None,
            top_p: None,
            tools: json!([]),
            tool_choice: json!("auto"),
            previous_response_id: None,
            store: true,
            metadata: Value::Null,
            effort: ReasoningEffort::Medium,
        }
    }
}

/// The fixed facts of one response.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponseMeta {
    /// `resp_` and 32 hex digits.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    pub model: String,
    pub request: ResponseEcho,
}

impl ResponseMeta {
    /// A fresh id, created now.
    pub fn new(model: impl Into<String>, request: ResponseEcho) -> ResponseMeta {
        ResponseMeta {
            id: new_response_id(),
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: model.into(),
            request,
        }
    }
}

pub fn new_response_id() -> String {
    new_id("resp")
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemState {
    Open,
    Done { complete: bool },
}

/// One output item as it is built.
#[derive(Clone, Debug)]
struct OutItem {
    /// The turn's part index.
    part: usize,
    kind: PartKind,
    id: String,
    /// `call_…` for function calls.
    call_id: String,
    text: String,
    state: ItemState,
}

impl OutItem {
    fn status(&self) -> &'static str {
        match self.state {
            ItemState::Open => "in_progress",
            ItemState::Done { complete: true } => "completed",
            ItemState::Done { complete: false } => "incomplete",
        }
    }

    /// The item as `output` shows it; `fresh`: as just added (no text yet).
    fn json(&self, fresh: bool) -> Value {
        let (status, text) = if fresh {
            ("in_progress", "")
        } else {
            (self.status(), self.text.as_str())
        };
        match &self.kind {
            PartKind::Reasoning => json!({
                "type": "reasoning", "id": self.id, "summary": [],
                "content": if fresh { json!([]) } else { json!([{"type": "reasoning_text", "text": text}]) },
                "status": status,
            }),
            PartKind::Content => json!({
                "type": "message", "id": self.id, "role": "assistant", "status": status,
                "content": if fresh { json!([]) } else { json!([output_text(text)]) },
            }),
            PartKind::ToolCall { name } => json!({
                "type": "function_call", "id": self.id, "call_id": self.call_id,
                "name": name, "arguments": text, "status": status,
            }),
        }
    }
}

fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// The Responses answer as it is produced: streaming events and the response object.
pub struct ResponseBuilder {
    meta: ResponseMeta,
    /// The next event's `sequence_number`.
    seq: u64,
    /// In `output` order.
    items: Vec<OutItem>,
}

impl ResponseBuilder {
    pub fn new(meta: ResponseMeta) -> ResponseBuilder {
        ResponseBuilder {
            meta,
            seq: 0,
            items: Vec::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.meta.id
    }

    /// `response.created` and `response.in_progress`.
    pub fn start(&mut self) -> Vec<Value> {
        let response = self.response("in_progress", Value::Null, Value::Null, Value::Null);
        vec![
            self.event("response.created", json!({"response": response})),
            self.event("response.in_progress", json!({"response": response})),
        ]
    }

    /// The events of one turn event.
    pub fn on(&mut self, ev: &TurnEvent) -> Vec<Value> {
        let mut out = Vec::new();
        match ev {
            TurnEvent::PartStart { index, kind } => self.open_item(*index, kind, &mut out),
            TurnEvent::Delta { index, text, .. } => self.delta(*index, text, &mut out),
            TurnEvent::PartEnd { index, complete } => self.close_item(*index, *complete, &mut out),
        }
        out
    }

    /// The last events and the final object. Parts the builder was not shown as events
    /// are added from `outcome` (so a non-streaming caller may call this alone).
    pub fn finish(&mut self, outcome: &TurnOutcome) -> (Vec<Value>, Value) {
        let mut events = self.catch_up(outcome);
        let (status, kind, details) = match outcome.finish {
            Finish::Length => (
                "incomplete",
                "response.incomplete",
                json!({"reason": "max_output_tokens"}),
            ),
            Finish::Stop | Finish::ToolCalls => ("completed", "response.completed", Value::Null),
        };
        let response = self.response(status, details, Value::Null, usage(outcome));
        events.push(self.event(kind, json!({"response": response})));
        (events, response)
    }

    /// The engine failed: `response.failed` and the object (what was produced so far kept,
    /// unfinished items marked incomplete).
    pub fn failed(&mut self, message: &str) -> (Vec<Value>, Value) {
        for item in &mut self.items {
            if item.state == ItemState::Open {
                item.state = ItemState::Done { complete: false };
            }
        }
        let error = json!({"code": "server_error", "message": message});
        let response = self.response("failed", Value::Null, error, Value::Null);
        let event = self.event("response.failed", json!({"response": response}));
        (vec![event], response)
    }

    fn event(&mut self, kind: &str, payload: Value) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(kind));
        m.insert("sequence_number".into(), json!(self.seq));
        self.seq += 1;
        if let Value::Object(p) = payload {
            m.extend(p);
        }
        Value::Object(m)
    }

    fn find(&self, part: usize) -> Option<usize> {
        self.items.iter().position(|it| it.part == part)
    }

    fn open_item(&mut self, part: usize, kind: &PartKind, out: &mut Vec<Value>) {
        if self.find(part).is_some() {
            return;
        }
        let prefix = match kind {
            PartKind::Reasoning => "rs",
            PartKind::Content => "msg",
            PartKind::ToolCall { .. } => "fc",
        };
        let item = OutItem {
            part,
            kind: kind.clone(),
            id: new_id(prefix),
            call_id: match kind {
                PartKind::ToolCall { .. } => new_id("call"),
                _ => String::new(),
            },
            text: String::new(),
            state: ItemState::Open,
        };
        let output_index = self.items.len();
        let (item_json, item_id) = (item.json(true), item.id.clone());
        self.items.push(item);
        out.push(self.event(
            "response.output_item.added",
            json!({"output_index": output_index, "item": item_json}),
        ));
        if *kind == PartKind::Content {
            out.push(self.event(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": output_index, "content_index": 0,
                       "part": output_text("")}),
            ));
        }
    }

    fn delta(&mut self, part: usize, text: &str, out: &mut Vec<Value>) {
        let Some(at) = self
            .find(part)
            .filter(|&at| self.items[at].state == ItemState::Open)
        else {
            return;
        };
        let item = &mut self.items[at];
        item.text.push_str(text);
        let id = item.id.clone();
        let (kind, payload) = match item.kind {
            PartKind::Reasoning => (
                "response.reasoning_text.delta",
                json!({"item_id": id, "output_index": at, "content_index": 0, "delta": text}),
            ),
            PartKind::Content => (
                "response.output_text.delta",
                json!({"item_id": id, "output_index": at, "content_index": 0, "delta": text,
                       "logprobs": []}),
            ),
            PartKind::ToolCall { .. } => (
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": at, "delta": text}),
            ),
        };
        out.push(self.event(kind, payload));
    }

    fn close_item(&mut self, part: usize, complete: bool, out: &mut Vec<Value>) {
        let Some(at) = self
            .find(part)
            .filter(|&at| self.items[at].state == ItemState::Open)
        else {
            return;
        };
        let item = &mut self.items[at];
        item.state = ItemState::Done { complete };
        let item = item.clone();
        let (id, text) = (item.id.as_str(), item.text.as_str());
        match &item.kind {
            PartKind::Reasoning => out.push(self.event(
                "response.reasoning_text.done",
                json!({"item_id": id, "output_index": at, "content_index": 0, "text": text}),
            )),
            PartKind::Content => {
                out.push(self.event(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": at, "content_index": 0, "text": text,
                           "logprobs": []}),
                ));
                out.push(self.event(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": at, "content_index": 0,
                           "part": output_text(text)}),
                ));
            }
            PartKind::ToolCall { name } => out.push(self.event(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": at, "name": name, "arguments": text}),
            )),
        }
        out.push(self.event(
            "response.output_item.done",
            json!({"output_index": at, "item": item.json(false)}),
        ));
    }

    /// Events for whatever of `outcome` the builder has not seen, then closes all items.
    fn catch_up(&mut self, outcome: &TurnOutcome) -> Vec<Value> {
        let mut out = Vec::new();
        for (index, part) in outcome.parts.iter().enumerate() {
            if self.find(index).is_none() {
                out.extend(self.on(&TurnEvent::PartStart {
                    index,
                    kind: part.kind.clone(),
                }));
                if !part.text.is_empty() {
                    out.extend(self.on(&TurnEvent::Delta {
                        index,
                        text: part.text.clone(),
                        logprobs: Vec::new(),
                    }));
                }
            }
            out.extend(self.on(&TurnEvent::PartEnd {
                index,
                complete: part.complete,
            }));
        }
        let open: Vec<usize> = self
            .items
            .iter()
            .filter(|it| it.state == ItemState::Open)
            .map(|it| it.part)
            .collect();
        for index in open {
            out.extend(self.on(&TurnEvent::PartEnd {
                index,
                complete: false,
            }));
        }
        out
    }

    fn response(&self, status: &str, details: Value, error: Value, usage: Value) -> Value {
        let r = &self.meta.request;
        let metadata = if r.metadata.is_object() {
            r.metadata.clone()
        } else {
            json!({})
        };
        let output: Vec<Value> = self.items.iter().map(|it| it.json(false)).collect();
        json!({
            "id": self.meta.id,
            "object": "response",
            "created_at": self.meta.created_at,
            "status": status,
            "background": false,
            "error": error,
            "incomplete_details": details,
            "instructions": r.instructions,
            "max_output_tokens": r.max_output_tokens,
            "model": self.meta.model,
            "output": output,
            // gpt-oss writes one call per turn.
            "parallel_tool_calls": false,
            "previous_response_id": r.previous_response_id,
            "reasoning": {"effort": r.effort.as_str(), "summary": null},
            "store": r.store,
            "temperature": json_f32(r.temperature.unwrap_or(1.0)),
            "text": {"format": {"type": "text"}},
            "tool_choice": r.tool_choice,
            "tools": r.tools,
            "top_p": json_f32(r.top_p.unwrap_or(1.0)),
            "truncation": "disabled",
            "usage": usage,
            "metadata": metadata,
        })
    }
}

/// `0.7` rather than `0.699999988079071`: the shortest decimal that reads back as `x`.
fn json_f32(x: f32) -> Value {
    format!("{x}")
        .parse::<f64>()
        .map_or(Value::Null, Value::from)
}

fn usage(outcome: &TurnOutcome) -> Value {
    let reasoning = outcome.reasoning_tokens();
    json!({
        "input_tokens": outcome.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": outcome.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
    })
}

/// Output items as input items of the next turn: reasoning with its text, assistant
/// messages, function calls. Empty reasoning and unknown items are left out.
pub fn output_as_context(output: &[Value]) -> Vec<Value> {
    output.iter().filter_map(context_item).collect()
}

/// What a follow-up naming this response continues from: its context, then its output.
pub fn next_context(context: &[Value], output: &[Value]) -> Vec<Value> {
    let mut next = context.to_vec();
    next.extend(output_as_context(output));
    next
}

fn context_item(item: &Value) -> Option<Value> {
    let id = item.get("id").cloned().unwrap_or(Value::Null);
    let texts = |key: &str| -> Vec<&str> {
        item.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect()
    };
    match item.get("type").and_then(Value::as_str)? {
        "reasoning" => {
            let text: String = texts("content").concat();
            (!text.is_empty()).then(|| {
                json!({"type": "reasoning", "id": id, "summary": [],
                       "content": [{"type": "reasoning_text", "text": text}]})
            })
        }
        "message" => Some(json!({
            "type": "message", "id": id, "role": "assistant",
            "content": [{"type": "output_text", "text": texts("content").concat()}],
        })),
        "function_call" => Some(json!({
            "type": "function_call", "id": id,
            "call_id": item.get("call_id").cloned().unwrap_or(Value::Null),
            "name": item.get("name").cloned().unwrap_or(Value::Null),
            "arguments": item.get("arguments").cloned().unwrap_or(json!("")),
        })),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::tests::render_text;
    use crate::turn::Part;

    fn weather_tool() -> Value {
        json!([{"type": "function", "name": "get_weather", "description": "Weather now",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": false}])
    }

    fn part(kind: PartKind, text: &str, tokens: usize) -> Part {
        Part {
            kind,
            text: text.into(),
            complete: true,
            tokens,
        }
    }

    fn call_part(text: &str) -> Part {
        let kind = PartKind::ToolCall {
            name: "get_weather".into(),
        };
        part(kind, text, 9)
    }

    fn outcome(parts: Vec<Part>, finish: Finish) -> TurnOutcome {
        TurnOutcome {
            parts,
            finish,
            prompt_tokens: 100,
            completion_tokens: 30,
            logprobs: Vec::new(),
        }
    }

    fn types(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    #[test]
    fn a_two_turn_function_call_round_trip_renders_as_the_model_writes_it() {
        let first = json!({
            "model": "gpt-oss-20b", "instructions": "Be brief.", "reasoning": {"effort": "high"},
            "input": "Weather in Paris?", "tools": weather_tool(),
        });
        let req = parse_request(&first, None).unwrap();
        let text = render_text(&req.conversation);
        assert!(text.contains("Reasoning: high"), "{text}");
        assert!(text.contains("# Instructions\n\nBe brief."), "{text}");
        assert!(
            text.contains("type get_weather = (_: {\ncity?: string,\n}) => any;"),
            "{text}"
        );
        assert!(
            text.ends_with("<|start|>user<|message|>Weather in Paris?<|end|><|start|>assistant"),
            "{text}"
        );

        // The model thinks, then calls the tool; the server answers without streaming.
        let mut b = ResponseBuilder::new(ResponseMeta::new("gpt-oss-20b", req.echo()));
        let parts = vec![
            part(PartKind::Reasoning, "Need the tool.", 5),
            call_part("{\"city\":\"Paris\"}"),
        ];
        let (_, response) = b.finish(&outcome(parts, Finish::ToolCalls));
        let call_id = response["output"][1]["call_id"].as_str().unwrap();
        let stored = next_context(&req.context, response["output"].as_array().unwrap());
        assert_eq!(stored.len(), 3);

        let second = json!({
            "model": "gpt-oss-20b", "previous_response_id": response["id"], "tools": weather_tool(),
            "input": [{"type": "function_call_output", "call_id": call_id, "output": "18 C"}],
        });
        let req2 = parse_request(&second, Some(&stored)).unwrap();
        assert_eq!(req2.input_items.len(), 1);
        assert_eq!(req2.context.len(), 4);
        assert_eq!(
            req2.previous_response_id.as_deref(),
            response["id"].as_str()
        );
        let text = render_text(&req2.conversation);
        assert!(text.contains("Reasoning: medium"), "{text}");
        assert!(
            !text.contains("Be brief."),
            "instructions are not carried over: {text}"
        );
        assert!(text.contains(
            "<|start|>user<|message|>Weather in Paris?<|end|>\
             <|start|>assistant<|channel|>analysis<|message|>Need the tool.<|end|>\
             <|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>\
             <|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>18 C<|end|>\
             <|start|>assistant"
        ), "{text}");
        assert!(text.ends_with("<|start|>assistant"), "{text}");
    }

    #[test]
    fn messages_map_like_chat_completions() {
        let body = json!({
            "instructions": "Top.",
            "input": [
                {"role": "system", "content": "Sys."},
                {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Dev."}]},
                {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Hello."}]},
                {"role": "system", "content": "Later."},
                {"role": "user", "content": "Check x"},
                {"role": "assistant", "content": "Checking."},
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            ],
            "tools": weather_tool(), "tool_choice": "none",
        });
        let req = parse_request(&body, None).unwrap();
        assert_eq!(req.context[0]["type"], "message");
        assert_eq!(req.context, req.input_items);
        let text = render_text(&req.conversation);
        assert!(
            text.contains("# Instructions\n\nTop.\n\nSys.\n\nDev."),
            "{text}"
        );
        assert!(
            !text.contains("namespace functions"),
            "tool_choice none: {text}"
        );
        assert!(text.contains("<|start|>user<|message|>Hi<|end|><|start|>assistant<|channel|>final<|message|>Hello.<|end|>"), "{text}");
        assert!(
            text.contains("<|start|>developer<|message|># Instructions\n\nLater.<|end|>"),
            "{text}"
        );
        assert!(
            text.contains("<|start|>assistant<|channel|>commentary<|message|>Checking.<|end|>"),
            "{text}"
        );
        assert_eq!(req.tool_choice_json, json!("none"));
    }

    #[test]
    fn named_tool_choice_is_flat_or_nested() {
        let flat = json!({"input": "x", "tools": weather_tool(),
                          "tool_choice": {"type": "function", "name": "get_weather"}});
        let nested = json!({"input": "x", "tools": weather_tool(),
                            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
        for body in [flat, nested] {
            let req = parse_request(&body, None).unwrap();
            assert_eq!(req.tool_choice, ToolChoice::Named("get_weather".into()));
            assert_eq!(
                req.tool_choice_json,
                json!({"type": "function", "name": "get_weather"})
            );
        }
    }

    #[test]
    fn scalar_fields_and_defaults() {
        let req = parse_request(&json!({"input": "x"}), None).unwrap();
        assert!(req.store && !req.stream);
        assert_eq!(req.effort, ReasoningEffort::Medium);
        assert_eq!(req.metadata, Value::Null);
        let req = parse_request(
            &json!({"input": "x", "reasoning": {"effort": "minimal"}, "store": false,
                    "stream": true, "temperature": 0.7, "top_p": 0.9, "max_output_tokens": 64,
                    "metadata": {"k": "v"}, "text": {"format": {"type": "text"}}}),
            None,
        )
        .unwrap();
        assert_eq!(req.effort, ReasoningEffort::Low);
        assert!(!req.store && req.stream);
        assert_eq!(req.max_output_tokens, Some(64));
        let mut b = ResponseBuilder::new(ResponseMeta::new("m", req.echo()));
        let (_, r) = b.finish(&outcome(vec![], Finish::Stop));
        assert_eq!(r["temperature"], json!(0.7));
        assert_eq!(r["top_p"], json!(0.9));
        assert_eq!(r["metadata"], json!({"k": "v"}));
        assert_eq!(r["reasoning"]["effort"], "low");
        assert_eq!(r["store"], false);
    }

    #[test]
    fn bad_requests_name_the_field_at_fault() {
        let tools = weather_tool();
        let cases = [
            (json!({}), "input"),
            (json!({"input": 3}), "input"),
            (json!({"input": []}), "input"),
            (json!({"input": [5]}), "input.0"),
            (json!({"input": [{"content": "x"}]}), "input.0.type"),
            (
                json!({"input": ["x", {"role": "wizard", "content": "x"}]}),
                "input.0",
            ),
            (
                json!({"input": [{"role": "wizard", "content": "x"}]}),
                "input.0.role",
            ),
            (
                json!({"input": [{"type": "message", "content": "x"}]}),
                "input.0.role",
            ),
            (
                json!({"input": [{"role": "user", "content": 5}]}),
                "input.0.content",
            ),
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]}),
                "input.0.content.0.type",
            ),
            (
                json!({"input": [{"type": "item_reference", "id": "x"}]}),
                "input.0.type",
            ),
            (
                json!({"input": [{"type": "web_search_call"}]}),
                "input.0.type",
            ),
            (
                json!({"input": [{"role": "user", "content": "x"},
                                 {"type": "function_call_output", "call_id": "nope", "output": "x"}]}),
                "input.1.call_id",
            ),
            (
                json!({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
                "input.0.call_id",
            ),
            (
                json!({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": 3}]}),
                "input.0.arguments",
            ),
            (
                json!({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                                 {"type": "function_call_output", "call_id": "c"}]}),
                "input.1.output",
            ),
            (
                json!({"input": [{"type": "reasoning", "content": [{"type": "text", "text": "t"}]}]}),
                "input.0.content.0",
            ),
            (
                json!({"input": "x", "reasoning": {"effort": "max"}}),
                "reasoning.effort",
            ),
            (json!({"input": "x", "reasoning": "high"}), "reasoning"),
            (
                json!({"input": "x", "tools": [{"type": "web_search"}]}),
                "tools.0.type",
            ),
            (
                json!({"input": "x", "tools": [{"type": "function", "name": "a b"}]}),
                "tools.0.name",
            ),
            (
                json!({"input": "x", "tools": [{"type": "function", "name": "f"}, {"type": "function", "name": "f"}]}),
                "tools.1.name",
            ),
            (
                json!({"input": "x", "tool_choice": "required"}),
                "tool_choice",
            ),
            (
                json!({"input": "x", "tools": tools, "tool_choice": {"type": "function", "name": "g"}}),
                "tool_choice",
            ),
            (
                json!({"input": "x", "max_output_tokens": 0}),
                "max_output_tokens",
            ),
            (
                json!({"input": "x", "max_output_tokens": "5"}),
                "max_output_tokens",
            ),
            (json!({"input": "x", "temperature": 2.5}), "temperature"),
            (json!({"input": "x", "top_p": 0}), "top_p"),
            (json!({"input": "x", "stream": "yes"}), "stream"),
            (json!({"input": "x", "store": 1}), "store"),
            (
                json!({"input": "x", "previous_response_id": 7}),
                "previous_response_id",
            ),
            (json!({"input": "x", "metadata": []}), "metadata"),
            (json!({"input": "x", "metadata": {"k": 1}}), "metadata.k"),
            (
                json!({"input": "x", "text": {"format": {"type": "json_schema"}}}),
                "text.format",
            ),
            (json!({"input": "x", "background": true}), "background"),
        ];
        for (body, param) in cases {
            let e = parse_request(&body, None).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(param)),
                "{body}: {}",
                e.message
            );
        }
        // An empty input is fine when continuing a response.
        let previous = [json!({"type": "message", "role": "user", "content": "x"})];
        assert!(parse_request(&json!({"input": []}), Some(&previous)).is_ok());
        let bad = [json!({"type": "mystery"})];
        let e = parse_request(&json!({"input": "x"}), Some(&bad)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("previous_response_id"));
    }

    #[test]
    fn streamed_events_and_the_final_object_agree() {
        let echo = ResponseEcho {
            max_output_tokens: Some(30),
            ..ResponseEcho::default()
        };
        let mut b = ResponseBuilder::new(ResponseMeta::new("gpt-oss-20b", echo));
        let mut events = b.start();
        let call = PartKind::ToolCall {
            name: "get_weather".into(),
        };
        let delta = |index: usize, text: &str| TurnEvent::Delta {
            index,
            text: text.into(),
            logprobs: Vec::new(),
        };
        let turn = [
            TurnEvent::PartStart {
                index: 0,
                kind: PartKind::Reasoning,
            },
            delta(0, "Let me "),
            delta(0, "think."),
            TurnEvent::PartEnd {
                index: 0,
                complete: true,
            },
            TurnEvent::PartStart {
                index: 1,
                kind: PartKind::Content,
            },
            delta(1, "Checking."),
            TurnEvent::PartEnd {
                index: 1,
                complete: true,
            },
            TurnEvent::PartStart {
                index: 2,
                kind: call.clone(),
            },
            delta(2, "{\"city\":"),
            delta(2, "\"Oslo\""),
        ];
        for ev in &turn {
            events.extend(b.on(ev));
        }
        // Out of tokens inside the call: the turn ends without its PartEnd.
        let parts = vec![
            part(PartKind::Reasoning, "Let me think.", 7),
            part(PartKind::Content, "Checking.", 4),
            Part {
                complete: false,
                ..call_part("{\"city\":\"Oslo\"")
            },
        ];
        let (last, response) = b.finish(&outcome(parts, Finish::Length));
        events.extend(last);

        assert_eq!(
            types(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.incomplete",
            ]
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["sequence_number"], json!(i), "{e}");
        }
        assert_eq!(events[0]["response"]["status"], "in_progress");
        assert_eq!(events[0]["response"]["output"], json!([]));
        assert_eq!(events[2]["item"]["content"], json!([]));

        let output = response["output"].as_array().unwrap();
        assert_eq!(output.len(), 3);
        // Every event about an item names it by the id it has in the final object.
        for e in &events {
            let (Some(at), Some(id)) = (
                e["output_index"].as_u64(),
                e.get("item_id").or_else(|| e.pointer("/item/id")),
            ) else {
                continue;
            };
            assert_eq!(&output[at as usize]["id"], id, "{e}");
        }
        assert!(output[0]["id"].as_str().unwrap().starts_with("rs_"));
        assert!(output[1]["id"].as_str().unwrap().starts_with("msg_"));
        assert!(output[2]["id"].as_str().unwrap().starts_with("fc_"));
        assert!(output[2]["call_id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(
            output[0]["content"],
            json!([{"type": "reasoning_text", "text": "Let me think."}])
        );
        assert_eq!(output[1]["content"][0]["text"], "Checking.");
        assert_eq!(output[2]["arguments"], "{\"city\":\"Oslo\"");
        assert_eq!(output[2]["status"], "incomplete");
        assert_eq!(output[1]["status"], "completed");
        assert_eq!(events[16]["arguments"], "{\"city\":\"Oslo\"");
        assert_eq!(events[16]["name"], "get_weather");

        assert_eq!(response["status"], "incomplete");
        assert_eq!(
            response["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(events[18]["response"], response);
        assert_eq!(
            response["usage"]["output_tokens_details"]["reasoning_tokens"],
            7
        );
        assert_eq!(response["usage"]["total_tokens"], 130);
        assert_eq!(response["max_output_tokens"], 30);
        assert!(response["id"].as_str().unwrap().starts_with("resp_"));
        assert_eq!(response["id"].as_str().unwrap().len(), 5 + 32);
        for key in [
            "object",
            "created_at",
            "error",
            "instructions",
            "model",
            "parallel_tool_calls",
            "previous_response_id",
            "reasoning",
            "store",
            "temperature",
            "text",
            "tool_choice",
            "tools",
            "top_p",
            "truncation",
            "metadata",
        ] {
            assert!(response.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn a_completed_answer_without_streaming() {
        let mut b = ResponseBuilder::new(ResponseMeta::new("m", ResponseEcho::default()));
        let parts = vec![
            part(PartKind::Reasoning, "", 2),
            part(PartKind::Content, "Hi!", 3),
        ];
        let (events, response) = b.finish(&outcome(parts, Finish::Stop));
        assert_eq!(types(&events).last(), Some(&"response.completed"));
        assert_eq!(response["status"], "completed");
        assert_eq!(response["incomplete_details"], Value::Null);
        assert_eq!(response["output"][1]["content"][0]["text"], "Hi!");
        assert_eq!(response["metadata"], json!({}));
        assert_eq!(response["tool_choice"], "auto");
        // Empty reasoning is not worth carrying to the next turn.
        let context = output_as_context(response["output"].as_array().unwrap());
        assert_eq!(
            context,
            vec![
                json!({"type": "message", "id": response["output"][1]["id"], "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hi!"}]})
            ]
        );
    }

    #[test]
    fn a_failure_keeps_what_was_produced() {
        let mut b = ResponseBuilder::new(ResponseMeta::new("m", ResponseEcho::default()));
        b.start();
        b.on(&TurnEvent::PartStart {
            index: 0,
            kind: PartKind::Content,
        });
        let (events, response) = b.failed("engine stopped");
        assert_eq!(types(&events), ["response.failed"]);
        assert_eq!(events[0]["sequence_number"], 4);
        assert_eq!(response["status"], "failed");
        assert_eq!(
            response["error"],
            json!({"code": "server_error", "message": "engine stopped"})
        );
        assert_eq!(response["output"][0]["status"], "incomplete");
    }
}
