//! A Chat Completions answer, whole (`chat.completion`) or as stream chunks
//! (`chat.completion.chunk`), built from a [`Turn`](crate::turn::Turn)'s events.
//!
//! The reasoning goes out under both names clients read, `reasoning` (vLLM, OpenRouter,
//! ollama) and `reasoning_content` (llama.cpp, DeepSeek); preambles are content; every
//! message the model addresses to a tool is a tool call with its own `call_…` id, streamed
//! as a start delta (id, name) and argument deltas.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::turn::{PartKind, TokenInfo, TurnEvent, TurnOutcome};

pub struct ChatBuilder {
    id: String,
    created: u64,
    model: String,
    include_reasoning: bool,
    logprobs: bool,
    /// Part index → (tool-call index, id).
    calls: HashMap<usize, (usize, String)>,
    /// Part index → what it is.
    kinds: HashMap<usize, PartKind>,
}

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn logprob_entry(t: &TokenInfo) -> Value {
    json!({
        "token": t.token,
        "logprob": t.logprob,
        "bytes": t.bytes,
        "top_logprobs": t.top.iter().map(|(s, b, l)| json!({"token": s, "logprob": l, "bytes": b})).collect::<Vec<_>>(),
    })
}

fn usage(o: &TurnOutcome) -> Value {
    let reasoning = o.reasoning_tokens();
    json!({
        "prompt_tokens": o.prompt_tokens,
        "completion_tokens": o.completion_tokens,
        "total_tokens": o.prompt_tokens + o.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    })
}

impl ChatBuilder {
    pub fn new(model: &str, include_reasoning: bool, logprobs: bool) -> ChatBuilder {
        ChatBuilder {
            id: new_id("chatcmpl-"),
            created: unix_now(),
            model: model.to_string(),
            include_reasoning,
            logprobs,
            calls: HashMap::new(),
            kinds: HashMap::new(),
        }
    }

    fn call_for(&mut self, part: usize) -> (usize, String, bool) {
        if let Some((i, id)) = self.calls.get(&part) {
            return (*i, id.clone(), false);
        }
        let entry = (self.calls.len(), new_id("call_"));
        self.calls.insert(part, entry.clone());
        (entry.0, entry.1, true)
    }

    fn chunk(&self, delta: Value, logprobs: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": crate::FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        })
    }

    /// The opening chunk: the role.
    pub fn first_chunk(&self) -> Value {
        self.chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            None,
        )
    }

    /// Chunks for a batch of turn events (text deltas and tool-call starts).
    pub fn chunks(&mut self, events: &[TurnEvent]) -> Vec<Value> {
        let mut out = Vec::new();
        for e in events {
            match e {
                TurnEvent::PartStart { index, kind } => {
                    self.kinds.insert(*index, kind.clone());
                    if let PartKind::ToolCall { name } = kind {
                        let (i, id, _) = self.call_for(*index);
                        out.push(self.chunk(
                            json!({"tool_calls": [{"index": i, "id": id, "type": "function",
                                   "function": {"name": name, "arguments": ""}}]}),
                            Value::Null,
                            None,
                        ));
                    }
                }
                TurnEvent::Delta {
                    index,
                    text,
                    logprobs,
                } => match self.kinds.get(index) {
                    Some(PartKind::Reasoning) if self.include_reasoning => out.push(self.chunk(
                        json!({"reasoning": text, "reasoning_content": text}),
                        Value::Null,
                        None,
                    )),
                    Some(PartKind::Reasoning) => {}
                    Some(PartKind::ToolCall { .. }) => {
                        let (i, _, _) = self.call_for(*index);
                        out.push(self.chunk(
                            json!({"tool_calls": [{"index": i, "function": {"arguments": text}}]}),
                            Value::Null,
                            None,
                        ));
                    }
                    _ => {
                        let lp = if self.logprobs {
                            json!({"content": logprobs.iter().map(logprob_entry).collect::<Vec<_>>()})
                        } else {
                            Value::Null
                        };
                        out.push(self.chunk(json!({"content": text}), lp, None));
                    }
                },
                TurnEvent::PartEnd { .. } => {}
            }
        }
        out
    }

    /// The closing chunks: the finish reason, then the usage when asked for.
    pub fn last_chunks(&self, outcome: &TurnOutcome, include_usage: bool) -> Vec<Value> {
        let mut out = vec![self.chunk(json!({}), Value::Null, Some(outcome.finish.as_str()))];
        if include_usage {
            out.push(json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": crate::FINGERPRINT,
                "choices": [],
                "usage": usage(outcome),
            }));
        }
        out
    }

    /// The whole answer (non-streaming).
    pub fn completion(&mut self, outcome: &TurnOutcome) -> Value {
        let mut message = Map::new();
        message.insert("role".into(), json!("assistant"));
        let content = outcome.text_of(false);
        let mut tool_calls = Vec::new();
        for (index, part) in outcome.parts.iter().enumerate() {
            if let PartKind::ToolCall { name } = &part.kind {
                let (_, id, _) = self.call_for(index);
                tool_calls.push(json!({"id": id, "type": "function",
                    "function": {"name": name, "arguments": part.text}}));
            }
        }
        message.insert(
            "content".into(),
            if content.is_empty() && !tool_calls.is_empty() {
                Value::Null
            } else {
                json!(content)
            },
        );
        let reasoning = outcome.text_of(true);
        let reasoning = if self.include_reasoning && !reasoning.is_empty() {
            json!(reasoning)
        } else {
            Value::Null
        };
        message.insert("reasoning".into(), reasoning.clone());
        message.insert("reasoning_content".into(), reasoning);
        if !tool_calls.is_empty() {
            message.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        let logprobs = if self.logprobs {
            json!({"content": outcome.logprobs.iter().map(logprob_entry).collect::<Vec<_>>()})
        } else {
            Value::Null
        };
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": crate::FINGERPRINT,
            "choices": [{"index": 0, "message": message, "logprobs": logprobs,
                         "finish_reason": outcome.finish.as_str()}],
            "usage": usage(outcome),
        })
    }
}
