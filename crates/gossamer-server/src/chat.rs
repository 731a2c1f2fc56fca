//! Chat Completions `messages` (+ `tools`, `tool_choice`, `reasoning_effort`) onto a harmony
//! conversation, following vLLM's mapping (the most faithful of the peers):
//! - the system message carries the reasoning effort; leading `system`/`developer` messages
//!   become the developer message's `# Instructions`, the function tools its `# Tools`;
//! - an assistant message's `reasoning` (or `reasoning_content`, or `thinking`) becomes an
//!   `analysis` message; its `content` is `final`, or a `commentary` preamble when it also
//!   calls tools; each tool call is a `commentary` message to `functions.<name>` with
//!   `<|constrain|>json` content, as the model writes it;
//! - a `tool` message is authored by the function its `tool_call_id` names, to the assistant.
//!
//! The way back (the model's output as an answer) is [`crate::turn`] and
//! [`crate::chat_output`].

use gossamer_harmony::{
    Conversation, DeveloperContent, Message, ReasoningEffort, SystemContent, ToolDescription,
};
use serde_json::Value;

use crate::error::ApiError;
use crate::params;
use gossamer_engine::SamplingParams;

/// `tool_choice`: which tools the model is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    /// No tools are rendered, so the model cannot call one.
    None,
    Required,
    Named(String),
}

/// The harmony side of a Chat Completions request.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatPrompt {
    pub conversation: Conversation,
    pub effort: ReasoningEffort,
    pub tool_choice: ToolChoice,
    /// The function tools as declared (names to validate tool calls against).
    pub tools: Vec<ToolDescription>,
}

/// The generation settings of a Chat Completions request.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatOptions {
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
    /// `include_reasoning: false` leaves the reasoning out of the answer (vLLM's switch).
    pub include_reasoning: bool,
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// `logprobs: true` → `Some(top_logprobs)`.
    pub logprobs: Option<usize>,
}

/// Reads and checks every generation field; unsupported ones are refused unless neutral.
pub fn chat_options(body: &Value) -> Result<ChatOptions, ApiError> {
    let model = params::opt_str(body, "model")?
        .ok_or_else(|| ApiError::invalid("model", "`model` is required"))?
        .to_string();
    let stream = params::opt_bool(body, "stream")?.unwrap_or(false);
    let stream_options = body.get("stream_options").filter(|v| !v.is_null());
    let include_usage = match stream_options {
        None => false,
        Some(o) if o.is_object() => params::opt_bool(o, "include_usage")
            .map_err(|e| ApiError::invalid("stream_options.include_usage", e.message))?
            .unwrap_or(false),
        Some(_) => {
            return Err(ApiError::invalid(
                "stream_options",
                "`stream_options` must be an object",
            ))
        }
    };
    let include_reasoning = params::opt_bool(body, "include_reasoning")?.unwrap_or(true);
    let max_completion = params::opt_int(body, "max_completion_tokens", 1, u32::MAX as u64)?;
    let max_tokens = params::opt_int(body, "max_tokens", 1, u32::MAX as u64)?;
    let temperature = params::opt_number(body, "temperature", 0.0, false, 2.0)?.unwrap_or(1.0);
    let top_p = params::opt_number(body, "top_p", 0.0, true, 1.0)?.unwrap_or(1.0);
    let seed = match body.get("seed").filter(|v| !v.is_null()) {
        None => params::fresh_seed(),
        // OpenAI takes any 64-bit integer; negative seeds keep their bits.
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_i64().map(|x| x as u64))
            .ok_or_else(|| ApiError::invalid("seed", "`seed` must be an integer"))?,
    };
    let stop = params::stop_strings(body)?;
    let logprobs = params::opt_bool(body, "logprobs")?.unwrap_or(false);
    let top_logprobs = params::opt_int(body, "top_logprobs", 0, 20)?;
    if top_logprobs.is_some() && !logprobs {
        return Err(ApiError::invalid(
            "top_logprobs",
            "`top_logprobs` needs `logprobs: true`",
        ));
    }
    params::unsupported_unless(
        body,
        "n",
        |v| v.as_u64() == Some(1),
        "one choice per request",
    )?;
    let zero = |v: &Value| v.as_f64() == Some(0.0);
    params::unsupported_unless(body, "presence_penalty", zero, "no penalties yet")?;
    params::unsupported_unless(body, "frequency_penalty", zero, "no penalties yet")?;
    params::unsupported_unless(
        body,
        "logit_bias",
        |v| v.as_object().is_some_and(|o| o.is_empty()),
        "no logit bias yet",
    )?;
    params::unsupported_unless(
        body,
        "response_format",
        |v| v.get("type").and_then(Value::as_str) == Some("text"),
        "structured output (json_object, json_schema) is not implemented yet",
    )?;
    params::unsupported_unless(
        body,
        "modalities",
        |v| v.as_array().is_some_and(|m| m.iter().all(|x| x == "text")),
        "text only",
    )?;
    params::unsupported_unless(body, "audio", |_| false, "text only")?;
    Ok(ChatOptions {
        model,
        stream,
        include_usage,
        include_reasoning,
        max_tokens: max_completion.or(max_tokens).map(|x| x as usize),
        sampling: SamplingParams {
            temperature,
            top_p,
            top_k: 0,
            seed,
        },
        stop,
        logprobs: logprobs.then(|| top_logprobs.unwrap_or(0) as usize),
    })
}

/// Text of a `content` field: a string, or an array of `{"type": "text", "text"}` parts.
pub(crate) fn text_of(content: &Value, param: &str) -> Result<String, ApiError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (i, part) in parts.iter().enumerate() {
                let p = format!("{param}.{i}");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") | Some("input_text") | Some("output_text") => {
                        let t = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                            ApiError::invalid(format!("{p}.text"), "a text part needs a string `text`")
                        })?;
                        text.push_str(t);
                    }
                    Some(other) => {
                        return Err(ApiError::invalid(
                            format!("{p}.type"),
                            format!("content parts of type `{other}` are not supported by this model (text only)"),
                        ))
                    }
                    None => return Err(ApiError::invalid(format!("{p}.type"), "a content part needs a `type`")),
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::invalid(
            param,
            "`content` must be a string or an array of text parts",
        )),
    }
}

pub(crate) fn effort_of(v: Option<&Value>) -> Result<ReasoningEffort, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(ReasoningEffort::Medium),
        // `minimal` is OpenAI's lowest for other models; gpt-oss's lowest is low.
        Some(Value::String(s)) if s == "minimal" => Ok(ReasoningEffort::Low),
        Some(Value::String(s)) => s.parse().map_err(|_| {
            ApiError::invalid(
                "reasoning_effort",
                format!("`reasoning_effort` must be low, medium or high, not `{s}`"),
            )
        }),
        Some(_) => Err(ApiError::invalid(
            "reasoning_effort",
            "`reasoning_effort` must be a string",
        )),
    }
}

/// Function tools in either API's shape: Chat Completions nests the function
/// (`{"type": "function", "function": {"name", ...}}`), Responses has it flat
/// (`{"type": "function", "name", ...}`); both are accepted everywhere.
pub(crate) fn tools_of(v: Option<&Value>) -> Result<Vec<ToolDescription>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = v
        .as_array()
        .ok_or_else(|| ApiError::invalid("tools", "`tools` must be an array"))?;
    let mut out: Vec<ToolDescription> = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let p = format!("tools.{i}");
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("{p}.type"),
                    format!("tools of type `{other}` are not supported (function tools only)"),
                ))
            }
            None => {
                return Err(ApiError::invalid(
                    format!("{p}.type"),
                    "a tool needs a `type` (`function`)",
                ))
            }
        }
        let (f, fp) = match t.get("function") {
            Some(f) if f.is_object() && t.get("name").is_none() => (f, format!("{p}.function")),
            _ => (t, p),
        };
        let tool = function_tool(f, &fp)?;
        if out.iter().any(|d| d.name == tool.name) {
            return Err(ApiError::invalid(
                format!("{fp}.name"),
                format!("two tools are named `{}`", tool.name),
            ));
        }
        out.push(tool);
    }
    Ok(out)
}

/// A function tool's `name`, `description` and `parameters` (the object at `p`: Chat
/// Completions' `tools[i].function`, or a Responses tool itself), checked.
pub(crate) fn function_tool(f: &Value, p: &str) -> Result<ToolDescription, ApiError> {
    let name = f.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::invalid(
            format!("{p}.name"),
            format!("invalid function name `{name}`: use letters, digits, `_` and `-`"),
        ));
    }
    let description = match f.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                format!("{p}.description"),
                "`description` must be a string",
            ))
        }
    };
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => None,
        Some(schema @ Value::Object(_)) => Some(schema.clone()),
        Some(_) => {
            return Err(ApiError::invalid(
                format!("{p}.parameters"),
                "`parameters` must be a JSON Schema object",
            ))
        }
    };
    Ok(ToolDescription::new(name, description, parameters))
}

pub(crate) fn tool_choice_of(
    v: Option<&Value>,
    tools: &[ToolDescription],
) -> Result<ToolChoice, ApiError> {
    let choice = match v {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("unknown `tool_choice` `{other}`"),
                ))
            }
        },
        Some(obj) => {
            let name = obj.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid("tool_choice", "a named `tool_choice` is {\"type\": \"function\", \"function\": {\"name\": ...}}")
            })?;
            ToolChoice::Named(name.to_string())
        }
    };
    let needs_tools = matches!(choice, ToolChoice::Required | ToolChoice::Named(_));
    if needs_tools && tools.is_empty() {
        return Err(ApiError::invalid(
            "tool_choice",
            "`tool_choice` asks for a tool but `tools` is empty",
        ));
    }
    if let ToolChoice::Named(n) = &choice {
        if !tools.iter().any(|t| &t.name == n) {
            return Err(ApiError::invalid(
                "tool_choice",
                format!("`tool_choice` names `{n}`, which is not among `tools`"),
            ));
        }
    }
    Ok(choice)
}

/// The opening of every conversation: the system message with the reasoning effort, then
/// the developer message (instructions joined by blank lines, the function tools) when there
/// is anything to put in it.
pub(crate) fn opening(
    effort: ReasoningEffort,
    instructions: &[&str],
    shown_tools: Vec<ToolDescription>,
) -> Conversation {
    let mut conversation = Conversation::new();
    conversation.push(Message::system(
        SystemContent::new().with_reasoning_effort(effort),
    ));
    if !instructions.is_empty() || !shown_tools.is_empty() {
        let mut dev = DeveloperContent::new();
        if !instructions.is_empty() {
            dev = dev.with_instructions(instructions.join("\n\n"));
        }
        if !shown_tools.is_empty() {
            dev = dev.with_function_tools(shown_tools);
        }
        conversation.push(Message::developer(dev));
    }
    conversation
}

/// A call of function `name` as gpt-oss writes it: commentary, `<|constrain|>json`.
pub(crate) fn tool_call_message(name: &str, arguments: String) -> Message {
    Message::assistant(arguments)
        .with_channel("commentary")
        .with_recipient(format!("functions.{name}"))
        .with_content_type("<|constrain|>json")
}

/// A function's result, authored by the function, to the assistant.
pub(crate) fn tool_result_message(name: &str, text: String) -> Message {
    Message::tool(format!("functions.{name}"), text)
        .with_recipient("assistant")
        .with_channel("commentary")
}

/// Maps a Chat Completions body (already parsed JSON) onto a harmony conversation.
pub fn chat_prompt(body: &Value) -> Result<ChatPrompt, ApiError> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("messages", "`messages` must be an array of messages"))?;
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty",
        ));
    }
    // Top level (OpenAI, vLLM) or llama.cpp's `chat_template_kwargs`.
    let effort = effort_of(
        body.get("reasoning_effort")
            .filter(|v| !v.is_null())
            .or_else(|| body.pointer("/chat_template_kwargs/reasoning_effort")),
    )?;
    let tools = tools_of(body.get("tools"))?;
    let tool_choice = tool_choice_of(body.get("tool_choice"), &tools)?;

    // Leading system/developer messages: the developer instructions.
    let leading = messages
        .iter()
        .take_while(|m| {
            matches!(
                m.get("role").and_then(Value::as_str),
                Some("system" | "developer")
            )
        })
        .count();
    let mut instructions = Vec::new();
    for (i, m) in messages[..leading].iter().enumerate() {
        instructions.push(text_of(
            m.get("content").unwrap_or(&Value::Null),
            &format!("messages.{i}.content"),
        )?);
    }
    let shown_tools = if tool_choice == ToolChoice::None {
        Vec::new()
    } else {
        tools.clone()
    };
    let instructions: Vec<&str> = instructions.iter().map(String::as_str).collect();
    let mut conversation = opening(effort, &instructions, shown_tools);

    // Tool-call ids seen so far → function names, for tool results.
    let mut call_names: Vec<(String, String)> = Vec::new();
    for (i, m) in messages.iter().enumerate().skip(leading) {
        let p = format!("messages.{i}");
        let content = m.get("content").unwrap_or(&Value::Null);
        match m.get("role").and_then(Value::as_str) {
            Some("system" | "developer") => {
                let text = text_of(content, &format!("{p}.content"))?;
                conversation.push(Message::developer(
                    DeveloperContent::new().with_instructions(text),
                ));
            }
            Some("user") => {
                conversation.push(Message::user(text_of(content, &format!("{p}.content"))?));
            }
            Some("assistant") => {
                let reasoning = ["reasoning", "reasoning_content", "thinking"]
                    .iter()
                    .find_map(|k| m.get(*k).and_then(Value::as_str))
                    .filter(|r| !r.is_empty());
                if let Some(r) = reasoning {
                    conversation.push(Message::assistant(r).with_channel("analysis"));
                }
                let text = text_of(content, &format!("{p}.content"))?;
                let calls = match m.get("tool_calls") {
                    None | Some(Value::Null) => &[][..],
                    Some(Value::Array(c)) => &c[..],
                    Some(_) => {
                        return Err(ApiError::invalid(
                            format!("{p}.tool_calls"),
                            "`tool_calls` must be an array",
                        ))
                    }
                };
                if !text.is_empty() {
                    let channel = if calls.is_empty() {
                        "final"
                    } else {
                        "commentary"
                    };
                    conversation.push(Message::assistant(text).with_channel(channel));
                }
                for (j, c) in calls.iter().enumerate() {
                    let cp = format!("{p}.tool_calls.{j}");
                    let name = c
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            ApiError::invalid(
                                format!("{cp}.function.name"),
                                "a tool call needs `function.name`",
                            )
                        })?;
                    let arguments = match c.pointer("/function/arguments") {
                        None | Some(Value::Null) => "{}".to_string(),
                        Some(Value::String(s)) => s.clone(),
                        // Some clients send the object itself.
                        Some(other) => other.to_string(),
                    };
                    if let Some(id) = c.get("id").and_then(Value::as_str) {
                        call_names.push((id.to_string(), name.to_string()));
                    }
                    conversation.push(tool_call_message(name, arguments));
                }
            }
            Some("tool") => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::invalid(
                            format!("{p}.tool_call_id"),
                            "a tool message needs the `tool_call_id` it answers",
                        )
                    })?;
                let name = call_names
                    .iter()
                    .rev()
                    .find(|(i, _)| i == id)
                    .map(|(_, n)| n.clone())
                    .or_else(|| m.get("name").and_then(Value::as_str).map(str::to_string))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            format!("{p}.tool_call_id"),
                            format!("no earlier assistant tool call has id `{id}`"),
                        )
                    })?;
                let text = text_of(content, &format!("{p}.content"))?;
                conversation.push(tool_result_message(&name, text));
            }
            Some(other) => {
                return Err(ApiError::invalid(
                    format!("{p}.role"),
                    format!("unknown role `{other}`"),
                ));
            }
            None => {
                return Err(ApiError::invalid(
                    format!("{p}.role"),
                    "every message needs a `role`",
                ))
            }
        }
    }
    Ok(ChatPrompt {
        conversation,
        effort,
        tool_choice,
        tools,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use gossamer_harmony::render::{render_conversation_for_completion, RenderConfig};
    use gossamer_harmony::Role;
    use serde_json::json;

    /// A conversation's completion prompt as text (special tokens spelled out); the tests of
    /// both APIs read the prompts they build through it.
    pub(crate) fn render_text(conversation: &Conversation) -> String {
        let tokens = render_conversation_for_completion(
            conversation,
            Role::Assistant,
            &RenderConfig::default(),
        )
        .unwrap();
        gossamer_harmony::Tokenizer::o200k_harmony()
            .decode_lossy(&tokens)
            .unwrap()
    }

    #[test]
    fn a_tool_round_trip_renders_as_the_model_writes_it() {
        let body = json!({
            "model": "gpt-oss-20b",
            "reasoning_effort": "high",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "reasoning_content": "Need the tool.", "content": null,
                 "tool_calls": [{"id": "call_1", "type": "function",
                                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 C"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                       "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
        });
        let p = chat_prompt(&body).unwrap();
        let text = render_text(&p.conversation);
        assert!(text.contains("Reasoning: high"), "{text}");
        assert!(text.contains("# Instructions\n\nBe brief."), "{text}");
        assert!(
            text.contains("type get_weather = (_: {\ncity?: string,\n}) => any;"),
            "{text}"
        );
        assert!(
            text.contains("<|start|>assistant<|channel|>analysis<|message|>Need the tool.<|end|>"),
            "{text}"
        );
        assert!(text.contains("<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>"), "{text}");
        assert!(text.contains("<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>18 C<|end|>"), "{text}");
        assert!(text.ends_with("<|start|>assistant"), "{text}");
    }

    #[test]
    fn tool_choice_none_hides_the_tools() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "none",
                          "tools": [{"type": "function", "function": {"name": "f"}}]});
        let p = chat_prompt(&body).unwrap();
        assert!(!render_text(&p.conversation).contains("namespace functions"));
    }

    #[test]
    fn bad_requests_name_the_field_at_fault() {
        let cases = [
            (json!({}), "messages"),
            (json!({"messages": []}), "messages"),
            (json!({"messages": [{"content": "x"}]}), "messages.0.role"),
            (
                json!({"messages": [{"role": "wizard", "content": "x"}]}),
                "messages.0.role",
            ),
            (
                json!({"messages": [{"role": "user", "content": 5}]}),
                "messages.0.content",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages.0.content.0.type",
            ),
            (
                json!({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}),
                "messages.0.tool_call_id",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "max"}),
                "reasoning_effort",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "a b"}}]}),
                "tools.0.function.name",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}),
                "tools.0.function.parameters",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}),
                "tool_choice",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "function", "function": {"name": "g"}},
                    "tools": [{"type": "function", "function": {"name": "f"}}]}),
                "tool_choice",
            ),
        ];
        for (body, param) in cases {
            let e = chat_prompt(&body).unwrap_err();
            assert_eq!(
                (e.status, e.param.as_deref()),
                (400, Some(param)),
                "{body}: {}",
                e.message
            );
        }
    }
}
