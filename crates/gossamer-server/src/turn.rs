//! One assistant turn as both APIs see it: the engine's tokens go through the harmony stream
//! parser and come out as *parts* — reasoning, content, tool calls — each opened, grown by
//! text deltas and closed, with stop strings applied to the content.
//!
//! [`Turn`] is a plain state machine (no I/O), so the Chat Completions and Responses layers
//! share it for streaming and non-streaming answers alike, and tests drive it with tokens.
//! Nothing the model writes is lost or fails: text outside any message, odd headers and
//! truncated messages all land in some part (the parser's guarantees).

use gossamer_engine::{FinishReason, TokenLogprob};
use gossamer_harmony::parser::{Event, StreamParser};
use gossamer_harmony::{Role, Tokenizer};

/// What a part of the answer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartKind {
    /// The `analysis` channel.
    Reasoning,
    /// `final`, and `commentary` without a recipient (preambles), and anything else without
    /// a recipient.
    Content,
    /// A message addressed to a tool: `name` is the function name (`functions.` dropped), or
    /// the whole recipient for built-ins (`browser.search`, `python`).
    ToolCall { name: String },
}

/// One token's log-probability, for the API's `logprobs` (only for content tokens).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenInfo {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// Alternatives, best first: (text, bytes, logprob).
    pub top: Vec<(String, Vec<u8>, f32)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TurnEvent {
    /// Part number `index` (counted from 0 across the turn) begins.
    PartStart { index: usize, kind: PartKind },
    /// More text of the open part; never empty.
    Delta {
        index: usize,
        text: String,
        logprobs: Vec<TokenInfo>,
    },
    /// Part `index` is finished (`complete` false: the output ended inside it).
    PartEnd { index: usize, complete: bool },
}

/// Why the turn ended, in OpenAI's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    Stop,
    /// Out of `max_tokens` or context.
    Length,
    /// The model ended with a tool call.
    ToolCalls,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
        }
    }
}

/// A finished part.
#[derive(Clone, Debug, PartialEq)]
pub struct Part {
    pub kind: PartKind,
    pub text: String,
    pub complete: bool,
    /// Generated tokens counted to this part (its header and terminator included).
    pub tokens: usize,
}

/// A whole answer.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnOutcome {
    pub parts: Vec<Part>,
    pub finish: Finish,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Content tokens' log-probabilities, in order (when asked for).
    pub logprobs: Vec<TokenInfo>,
}

impl TurnOutcome {
    /// Text of every part of `kind`'s sort (reasoning or content), joined.
    pub fn text_of(&self, reasoning: bool) -> String {
        let want = if reasoning {
            PartKind::Reasoning
        } else {
            PartKind::Content
        };
        self.parts
            .iter()
            .filter(|p| p.kind == want)
            .map(|p| p.text.as_str())
            .collect()
    }

    /// Tokens generated in reasoning parts (headers included).
    pub fn reasoning_tokens(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| p.kind == PartKind::Reasoning)
            .map(|p| p.tokens)
            .sum()
    }

    pub fn tool_calls(&self) -> impl Iterator<Item = (&str, &str)> {
        self.parts.iter().filter_map(|p| match &p.kind {
            PartKind::ToolCall { name } => Some((name.as_str(), p.text.as_str())),
            _ => None,
        })
    }
}

/// The open part and what it holds back.
struct Open {
    index: usize,
    kind: PartKind,
    /// Content text not yet released because it could be the start of a stop string.
    held: String,
    held_logprobs: Vec<TokenInfo>,
}

pub struct Turn {
    tokenizer: Tokenizer,
    parser: StreamParser,
    stop: Vec<String>,
    want_logprobs: bool,
    parts: Vec<Part>,
    open: Option<Open>,
    /// A stop string was found: the caller should end the generation.
    stopped: bool,
    logprobs: Vec<TokenInfo>,
    /// Events of the forced prefix, until taken.
    pending_prefix: Vec<TurnEvent>,
    /// Log-probabilities of tokens whose text has not surfaced yet (the parser holds text
    /// while it could still be a header).
    pending_info: Vec<TokenInfo>,
    /// Tokens generated before the first part opened (its header): counted to it.
    unattributed: usize,
}

impl Turn {
    /// `prefix`: tokens the server wrote after `<|start|>assistant` itself (a forced tool-call
    /// header); they are parsed as if the model had written them. `stop`: strings that end
    /// the content (empty ones are ignored).
    pub fn new(tokenizer: Tokenizer, prefix: &[u32], stop: Vec<String>, logprobs: bool) -> Turn {
        let mut turn = Turn {
            tokenizer,
            parser: StreamParser::new(tokenizer, Some(Role::Assistant)),
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            want_logprobs: logprobs,
            parts: Vec::new(),
            open: None,
            stopped: false,
            logprobs: Vec::new(),
            pending_prefix: Vec::new(),
            pending_info: Vec::new(),
            unattributed: 0,
        };
        let mut out = Vec::new();
        for &t in prefix {
            let events = turn.parser.push(t);
            turn.apply(events, &mut out);
        }
        debug_assert!(out.iter().all(|e| !matches!(e, TurnEvent::Delta { .. })));
        turn.pending_prefix = out;
        turn
    }

    /// Events produced by the prefix (a part opened by a forced header); call once, first.
    pub fn take_prefix_events(&mut self) -> Vec<TurnEvent> {
        std::mem::take(&mut self.pending_prefix)
    }

    /// True once a stop string has ended the content: stop generating, then call
    /// [`Turn::finish`] with [`FinishReason::Stop`].
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// One generated token.
    pub fn push(&mut self, id: u32, logprob: Option<&TokenLogprob>) -> Vec<TurnEvent> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        if let Some(lp) = logprob.filter(|_| self.want_logprobs) {
            let info = self.token_info(id, lp);
            self.pending_info.push(info);
        }
        let events = self.parser.push(id);
        self.apply(events, &mut out);
        let part = match &self.open {
            Some(open) => self.parts.get_mut(open.index),
            None => self.parts.last_mut(),
        };
        match part {
            Some(part) => part.tokens += 1,
            None => self.unattributed += 1,
        }
        out
    }

    /// The generation is over: closes what is open and sums up.
    pub fn finish(
        mut self,
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
    ) -> (Vec<TurnEvent>, TurnOutcome) {
        let mut out = Vec::new();
        if !self.stopped {
            let events = self.parser.finish();
            self.apply(events, &mut out);
        }
        // Still open only when a stop string ended it mid-message: that part is complete.
        self.close(true, &mut out);
        let finish = if self.stopped {
            Finish::Stop
        } else if reason == FinishReason::Length {
            Finish::Length
        } else if self
            .parts
            .iter()
            .any(|p| matches!(p.kind, PartKind::ToolCall { .. }))
        {
            Finish::ToolCalls
        } else {
            Finish::Stop
        };
        let outcome = TurnOutcome {
            parts: self.parts,
            finish,
            prompt_tokens,
            completion_tokens,
            logprobs: self.logprobs,
        };
        (out, outcome)
    }

    /// Turns parser events into part events. Token log-probabilities go with the content
    /// text they produced: a message start that is the last event of a batch consumed its
    /// tokens as header (dropped); one followed by text (a header that turned out to be
    /// content) hands them to that text.
    fn apply(&mut self, events: Vec<Event>, out: &mut Vec<TurnEvent>) {
        // Whether the last event (warnings aside) was a message start.
        let mut header_ended = false;
        for e in events {
            if !matches!(e, Event::Warning(_)) {
                header_ended = matches!(e, Event::MessageStart { .. });
            }
            match e {
                Event::MessageStart {
                    role,
                    channel,
                    recipient,
                    ..
                } => {
                    self.close(true, out);
                    let kind = classify(role, channel.as_deref(), recipient.as_deref());
                    let index = self.parts.len();
                    self.parts.push(Part {
                        kind: kind.clone(),
                        text: String::new(),
                        complete: false,
                        tokens: std::mem::take(&mut self.unattributed),
                    });
                    out.push(TurnEvent::PartStart {
                        index,
                        kind: kind.clone(),
                    });
                    self.open = Some(Open {
                        index,
                        kind,
                        held: String::new(),
                        held_logprobs: Vec::new(),
                    });
                }
                Event::TextDelta { text } => {
                    if self.open.is_none() {
                        // Content before any header (the parser normally opens a message
                        // itself; this keeps the no-loss promise if it does not).
                        self.apply(
                            vec![Event::MessageStart {
                                role: Role::Assistant,
                                name: None,
                                channel: None,
                                recipient: None,
                                content_type: None,
                                header_text: String::new(),
                            }],
                            out,
                        );
                    }
                    let info = std::mem::take(&mut self.pending_info);
                    self.text(text, info, out);
                    if self.stopped {
                        return;
                    }
                }
                Event::MessageEnd { end } => {
                    let complete = !matches!(end, gossamer_harmony::parser::End::Truncated);
                    self.close(complete, out);
                }
                Event::ToolCall(_) | Event::Warning(_) => {}
            }
        }
        if header_ended {
            self.pending_info.clear();
        }
    }

    fn text(&mut self, text: String, info: Vec<TokenInfo>, out: &mut Vec<TurnEvent>) {
        let open = self.open.as_mut().expect("a part is open");
        let content = open.kind == PartKind::Content;
        if !content || self.stop.is_empty() {
            let logprobs = if content { info } else { Vec::new() };
            self.logprobs.extend(logprobs.iter().cloned());
            self.parts[open.index].text.push_str(&text);
            out.push(TurnEvent::Delta {
                index: open.index,
                text,
                logprobs,
            });
            return;
        }
        open.held.push_str(&text);
        open.held_logprobs.extend(info);
        // A stop string inside what is held: keep the text before it and stop.
        let found = self
            .stop
            .iter()
            .filter_map(|s| open.held.find(s.as_str()))
            .min();
        let release = match found {
            Some(at) => {
                self.stopped = true;
                at
            }
            // Hold back the longest tail that could still grow into a stop string.
            None => open.held.len() - longest_stop_prefix_suffix(&open.held, &self.stop),
        };
        if release > 0 {
            let rest = open.held.split_off(release);
            let released = std::mem::replace(&mut open.held, rest);
            let logprobs = std::mem::take(&mut open.held_logprobs);
            self.logprobs.extend(logprobs.iter().cloned());
            self.parts[open.index].text.push_str(&released);
            out.push(TurnEvent::Delta {
                index: open.index,
                text: released,
                logprobs,
            });
        }
        if self.stopped {
            open.held.clear();
        }
    }

    /// Closes the open part, releasing any held text (it did not become a stop string).
    fn close(&mut self, complete: bool, out: &mut Vec<TurnEvent>) {
        let Some(open) = self.open.take() else {
            return;
        };
        if !open.held.is_empty() {
            self.logprobs.extend(open.held_logprobs.iter().cloned());
            self.parts[open.index].text.push_str(&open.held);
            out.push(TurnEvent::Delta {
                index: open.index,
                text: open.held,
                logprobs: open.held_logprobs,
            });
        }
        let complete = complete || self.stopped;
        self.parts[open.index].complete = complete;
        out.push(TurnEvent::PartEnd {
            index: open.index,
            complete,
        });
    }

    fn token_info(&self, id: u32, lp: &TokenLogprob) -> TokenInfo {
        let text_of = |id: u32| {
            let bytes = self.tokenizer.decode_bytes(&[id]).unwrap_or_default();
            (String::from_utf8_lossy(&bytes).into_owned(), bytes)
        };
        let (token, bytes) = text_of(id);
        TokenInfo {
            token,
            bytes,
            logprob: lp.logprob,
            top: lp
                .top
                .iter()
                .map(|&(t, l)| {
                    let (s, b) = text_of(t);
                    (s, b, l)
                })
                .collect(),
        }
    }
}

/// Which part a message header makes.
fn classify(role: Role, channel: Option<&str>, recipient: Option<&str>) -> PartKind {
    let call = role == Role::Assistant
        && recipient.is_some_and(|r| {
            !r.is_empty() && !matches!(r, "all" | "assistant" | "user" | "system" | "developer")
        });
    if call {
        let r = recipient.unwrap_or_default();
        let name = r.strip_prefix("functions.").unwrap_or(r);
        return PartKind::ToolCall {
            name: name.to_string(),
        };
    }
    match channel {
        Some("analysis") => PartKind::Reasoning,
        _ => PartKind::Content,
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of some stop string.
fn longest_stop_prefix_suffix(text: &str, stop: &[String]) -> usize {
    let mut best = 0;
    for s in stop {
        let max = s.len().saturating_sub(1).min(text.len());
        for len in (best + 1..=max).rev() {
            let start = text.len() - len;
            if text.is_char_boundary(start) && s.starts_with(&text[start..]) {
                best = len;
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use gossamer_harmony::render::RenderConfig;
    use gossamer_harmony::{render_conversation, Conversation, Message};

    /// Tokens of assistant messages as the model writes them after `<|start|>assistant`.
    fn written(messages: Vec<Message>) -> Vec<u32> {
        let config = RenderConfig {
            auto_drop_analysis: false,
        };
        let tokens = render_conversation(&Conversation::from_messages(messages), &config).unwrap();
        // The prompt supplies `<|start|>assistant`; the model writes the rest.
        let skip = Tokenizer::o200k_harmony()
            .encode_ordinary("assistant")
            .len()
            + 1;
        tokens[skip..].to_vec()
    }

    fn run(tokens: &[u32], stop: &[&str], reason: FinishReason) -> (Vec<TurnEvent>, TurnOutcome) {
        let mut turn = Turn::new(
            Tokenizer::o200k_harmony(),
            &[],
            stop.iter().map(|s| s.to_string()).collect(),
            true,
        );
        let mut events = Vec::new();
        for &t in tokens {
            let lp = TokenLogprob {
                logprob: -0.5,
                top: vec![(t, -0.5)],
            };
            events.extend(turn.push(t, Some(&lp)));
            if turn.stopped() {
                break;
            }
        }
        let (last, outcome) = turn.finish(reason, 7, tokens.len());
        events.extend(last);
        (events, outcome)
    }

    #[test]
    fn reasoning_preamble_and_tool_call_become_parts() {
        let tokens = written(vec![
            Message::assistant("Need weather.").with_channel("analysis"),
            Message::assistant("Checking.").with_channel("commentary"),
            Message::assistant("{\"city\":\"Oslo\"}")
                .with_channel("commentary")
                .with_recipient("functions.get_weather")
                .with_content_type("<|constrain|>json"),
        ]);
        let (events, outcome) = run(&tokens, &[], FinishReason::Stop);
        let kinds: Vec<_> = outcome.parts.iter().map(|p| p.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                PartKind::Reasoning,
                PartKind::Content,
                PartKind::ToolCall {
                    name: "get_weather".into()
                }
            ]
        );
        assert_eq!(outcome.text_of(true), "Need weather.");
        assert_eq!(outcome.text_of(false), "Checking.");
        assert_eq!(
            outcome.tool_calls().collect::<Vec<_>>(),
            vec![("get_weather", "{\"city\":\"Oslo\"}")]
        );
        assert_eq!(outcome.finish, Finish::ToolCalls);
        assert!(outcome.parts.iter().all(|p| p.complete));
        assert_eq!(
            outcome.parts.iter().map(|p| p.tokens).sum::<usize>(),
            tokens.len()
        );
        // Streamed deltas add up to the parts.
        let streamed: String = events
            .iter()
            .filter_map(|e| match e {
                TurnEvent::Delta { index: 2, text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(streamed, "{\"city\":\"Oslo\"}");
        // Log-probabilities only for content tokens: "Checking." is 2 tokens.
        assert_eq!(
            outcome.logprobs.len(),
            Tokenizer::o200k_harmony()
                .encode_ordinary("Checking.")
                .len()
        );
    }

    #[test]
    fn a_stop_string_split_across_tokens_ends_the_content_before_it() {
        let tokens = written(vec![
            Message::assistant("Hello world, and goodbye").with_channel("final")
        ]);
        let (events, outcome) = run(&tokens, &["d, an"], FinishReason::Length);
        assert_eq!(outcome.text_of(false), "Hello worl");
        assert_eq!(outcome.finish, Finish::Stop);
        let streamed: String = events
            .iter()
            .filter_map(|e| match e {
                TurnEvent::Delta { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(streamed, "Hello worl");
        // Held text that never became a stop string is released at the end.
        let (_, outcome) = run(&tokens, &["goodbye!"], FinishReason::Stop);
        assert_eq!(outcome.text_of(false), "Hello world, and goodbye");
    }

    #[test]
    fn output_cut_off_inside_a_tool_call_is_kept_and_marked_incomplete() {
        let tokens = written(vec![Message::assistant("{\"city\":\"Os")
            .with_channel("commentary")
            .with_recipient("functions.get_weather")]);
        let cut = &tokens[..tokens.len() - 1]; // drop <|call|>
        let (_, outcome) = run(cut, &[], FinishReason::Length);
        assert_eq!(outcome.finish, Finish::Length);
        let part = &outcome.parts[0];
        assert!(!part.complete);
        assert_eq!(part.text, "{\"city\":\"Os");
    }

    #[test]
    fn a_forced_header_opens_the_tool_call_before_any_token() {
        let t = Tokenizer::o200k_harmony();
        let mut prefix = t.encode_ordinary(" to=functions.f");
        prefix.push(gossamer_harmony::tokenizer::special::CHANNEL);
        prefix.extend(t.encode_ordinary("commentary"));
        prefix.push(gossamer_harmony::tokenizer::special::MESSAGE);
        let mut turn = Turn::new(t, &prefix, Vec::new(), false);
        assert_eq!(
            turn.take_prefix_events(),
            vec![TurnEvent::PartStart {
                index: 0,
                kind: PartKind::ToolCall { name: "f".into() }
            }]
        );
        for id in t.encode_ordinary("{}") {
            turn.push(id, None);
        }
        turn.push(gossamer_harmony::tokenizer::special::CALL, None);
        let (_, outcome) = turn.finish(FinishReason::Stop, 1, 2);
        assert_eq!(outcome.tool_calls().collect::<Vec<_>>(), vec![("f", "{}")]);
        assert_eq!(outcome.finish, Finish::ToolCalls);
    }

    #[test]
    fn garbage_is_content_and_keeps_its_logprobs() {
        let t = Tokenizer::o200k_harmony();
        let tokens = t.encode_ordinary("zebra quantum pickle");
        let (_, outcome) = run(&tokens, &[], FinishReason::Length);
        assert_eq!(outcome.text_of(false), "zebra quantum pickle");
        assert_eq!(outcome.logprobs.len(), tokens.len());
    }
}
