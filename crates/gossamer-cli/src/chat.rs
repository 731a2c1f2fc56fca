//! `gossamer chat`: an interactive harmony conversation in the terminal (or over a pipe).
//!
//! Each turn renders the whole conversation for completion (earlier chain of thought dropped
//! by harmony's rule), feeds only what the KV cache does not already hold, streams the parsed
//! channels as tokens arrive, and appends the parsed assistant messages to the conversation.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use gossamer_engine::{GenerateOptions, SamplingParams, StopReason, ASSISTANT_STOP_TOKENS};
use gossamer_harmony::conversation::{
    Conversation, DeveloperContent, Message, ReasoningEffort, Role, SystemContent,
};
use gossamer_harmony::parser::{Event, MessageCollector, StreamParser};
use gossamer_harmony::render::{render_conversation_for_completion, RenderConfig};
use gossamer_harmony::Tokenizer;
use gossamer_model::GptOss;
use serde_json::json;

pub struct ChatOptions {
    pub effort: ReasoningEffort,
    pub developer: Option<String>,
    pub show_reasoning: bool,
    /// `YYYY-MM-DD` for the system message's `Current date:` line.
    pub date: Option<String>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// JSON lines for scripts instead of styled text.
    pub events: bool,
}

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// Conversation state across turns.
struct Session {
    opts: ChatOptions,
    conversation: Conversation,
    /// Tokens the KV cache holds, so a turn only feeds what is new.
    cached: Vec<u32>,
    turns: usize,
}

impl Session {
    fn new(opts: ChatOptions) -> Session {
        let mut s = Session {
            opts,
            conversation: Conversation::new(),
            cached: Vec::new(),
            turns: 0,
        };
        s.reset_conversation();
        s
    }

    fn reset_conversation(&mut self) {
        let mut system = SystemContent::new().with_reasoning_effort(self.opts.effort);
        if let Some(d) = &self.opts.date {
            system = system.with_conversation_start_date(d.clone());
        }
        self.conversation = Conversation::new().with_message(Message::system(system));
        if let Some(text) = &self.opts.developer {
            self.conversation.push(Message::developer(
                DeveloperContent::new().with_instructions(text.clone()),
            ));
        }
    }
}

pub fn run(model: &GptOss, opts: ChatOptions) -> Result<()> {
    let tokenizer = Tokenizer::o200k_harmony();
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal() && !opts.events;
    let styled = std::io::stdout().is_terminal() && !opts.events;

    // Ctrl-C during an answer stops the answer; at the prompt it leaves.
    let generating = Arc::new(AtomicBool::new(false));
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let (generating, cancel) = (generating.clone(), cancel.clone());
        ctrlc::set_handler(move || {
            if generating.load(Ordering::SeqCst) {
                cancel.store(true, Ordering::SeqCst);
            } else {
                std::process::exit(130);
            }
        })
        .context("cannot install the Ctrl-C handler")?;
    }

    let mut session = Session::new(opts);
    let mut cache = model.new_cache();
    let mut out = std::io::stdout();
    if interactive {
        eprintln!(
            "gossamer chat — reasoning {}. Commands: /effort low|medium|high, /reset, /quit. Ctrl-C stops an answer.",
            session.opts.effort
        );
    }
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("> ");
            out.flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line.context("cannot read standard input")?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if let Some(command) = text.strip_prefix('/') {
            match command_of(command) {
                Command::Quit => break,
                Command::Reset => {
                    session.reset_conversation();
                    cache.clear();
                    session.cached.clear();
                    note(&session, &mut out, "reset", "conversation cleared")?;
                }
                Command::Effort(Some(e)) => {
                    session.opts.effort = e;
                    session.reset_conversation_keeping_turns();
                    note(
                        &session,
                        &mut out,
                        "effort",
                        &format!("reasoning effort {e}"),
                    )?;
                }
                Command::Effort(None) => note(
                    &session,
                    &mut out,
                    "error",
                    "usage: /effort low|medium|high",
                )?,
                Command::Unknown => note(
                    &session,
                    &mut out,
                    "error",
                    &format!("unknown command /{command} (try /effort, /reset, /quit)"),
                )?,
            }
            continue;
        }

        session.conversation.push(Message::user(text));
        let prompt = render_conversation_for_completion(
            &session.conversation,
            Role::Assistant,
            &RenderConfig {
                auto_drop_analysis: true,
            },
        )
        .context("cannot render the conversation")?;
        let reuse = prompt.starts_with(&session.cached) && prompt.len() > session.cached.len();
        if !reuse {
            cache.clear();
            session.cached.clear();
        }
        let feed = &prompt[session.cached.len()..];
        if session.opts.events {
            emit(
                &mut out,
                json!({"event": "prompt", "tokens": prompt, "reused": session.cached.len()}),
            )?;
        }

        let mut parser = StreamParser::new(tokenizer, Some(Role::Assistant));
        let mut collector = MessageCollector::new();
        let mut display = Display::new(session.opts.show_reasoning, styled);
        let gen_opts = GenerateOptions {
            max_tokens: session.opts.max_tokens,
            sampling: session.opts.sampling.clone(),
            stop_tokens: ASSISTANT_STOP_TOKENS.to_vec(),
            cancel: Some(cancel.clone()),
        };
        cancel.store(false, Ordering::SeqCst);
        generating.store(true, Ordering::SeqCst);
        let mut write_err = None;
        let mut handle = |events: Vec<Event>, out: &mut std::io::Stdout| {
            for ev in events {
                collector.push(&ev);
                let r = if session.opts.events {
                    emit(out, json!({"event": "parser", "data": ev}))
                } else {
                    display.show(out, &ev)
                };
                if let Err(e) = r {
                    write_err.get_or_insert(e);
                }
            }
        };
        let result = gossamer_engine::generate(model, &mut cache, feed, &gen_opts, |t| {
            handle(parser.push(t), &mut out);
        });
        generating.store(false, Ordering::SeqCst);
        let g = result?;
        handle(parser.finish(), &mut out);
        if let Some(e) = write_err {
            return Err(e).context("cannot write to standard output");
        }
        display.end_turn(&mut out)?;

        // Bookkeeping: what the cache holds now, and the assistant messages of this turn.
        if g.stop == StopReason::Cancelled && g.tokens.is_empty() {
            cache.clear();
            session.cached.clear();
        } else {
            session.cached = prompt.clone();
            session
                .cached
                .extend_from_slice(&g.tokens[..g.tokens.len().saturating_sub(1)]);
        }
        let (messages, warnings) = collector.into_parts();
        for m in &messages {
            session.conversation.push(Message::from(m));
        }
        session.turns += 1;
        if session.opts.events {
            emit(
                &mut out,
                json!({
                    "event": "turn_end",
                    "turn": session.turns,
                    "stop": g.stop.as_str(),
                    "generated": g.tokens.len(),
                    "messages": messages,
                    "warnings": warnings.len(),
                    "cached_tokens": session.cached.len(),
                    "conversation_messages": session.conversation.messages.len(),
                }),
            )?;
        } else if g.stop == StopReason::Cancelled {
            eprintln!("[stopped]");
        }
    }
    Ok(())
}

impl Session {
    /// A new reasoning effort changes the system message; the turns so far stay.
    fn reset_conversation_keeping_turns(&mut self) {
        let rest: Vec<Message> = self
            .conversation
            .messages
            .iter()
            .filter(|m| !matches!(m.author.role, Role::System | Role::Developer))
            .cloned()
            .collect();
        self.reset_conversation();
        for m in rest {
            self.conversation.push(m);
        }
    }
}

enum Command {
    Quit,
    Reset,
    Effort(Option<ReasoningEffort>),
    Unknown,
}

fn command_of(text: &str) -> Command {
    let mut words = text.split_whitespace();
    match words.next().unwrap_or("") {
        "quit" | "exit" | "q" => Command::Quit,
        "reset" | "clear" => Command::Reset,
        "effort" => Command::Effort(words.next().and_then(|w| w.parse().ok())),
        _ => Command::Unknown,
    }
}

fn note(session: &Session, out: &mut std::io::Stdout, kind: &str, text: &str) -> Result<()> {
    if session.opts.events {
        emit(out, json!({"event": kind, "message": text}))
    } else {
        eprintln!("[{text}]");
        Ok(())
    }
}

fn emit(out: &mut std::io::Stdout, value: serde_json::Value) -> Result<()> {
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}

/// Terminal rendering of the parser's events: reasoning dimmed (or hidden), the answer plain,
/// tool calls marked.
struct Display {
    show_reasoning: bool,
    styled: bool,
    /// Whether the open message's text is shown.
    visible: bool,
    dimmed: bool,
    at_line_start: bool,
}

impl Display {
    fn new(show_reasoning: bool, styled: bool) -> Display {
        Display {
            show_reasoning,
            styled,
            visible: false,
            dimmed: false,
            at_line_start: true,
        }
    }

    fn show(&mut self, out: &mut std::io::Stdout, ev: &Event) -> Result<()> {
        match ev {
            Event::MessageStart {
                channel, recipient, ..
            } => {
                let analysis = channel.as_deref() == Some("analysis");
                self.visible = !analysis || self.show_reasoning;
                self.dimmed = analysis && self.styled;
                if !self.at_line_start {
                    writeln!(out)?;
                    self.at_line_start = true;
                }
                if let Some(r) = recipient {
                    write!(out, "[→ {r}] ")?;
                } else if analysis && self.show_reasoning && !self.styled {
                    write!(out, "[reasoning] ")?;
                }
                if self.dimmed && self.visible {
                    write!(out, "{DIM}")?;
                }
            }
            Event::TextDelta { text } if self.visible => {
                write!(out, "{text}")?;
                self.at_line_start = text.ends_with('\n');
            }
            Event::MessageEnd { .. } => {
                if self.dimmed && self.visible {
                    write!(out, "{RESET}")?;
                }
                self.dimmed = false;
            }
            Event::Warning(w) => tracing::debug!(%w, "harmony parser"),
            _ => {}
        }
        out.flush()?;
        Ok(())
    }

    fn end_turn(&mut self, out: &mut std::io::Stdout) -> Result<()> {
        if self.dimmed {
            write!(out, "{RESET}")?;
        }
        if !self.at_line_start {
            writeln!(out)?;
            self.at_line_start = true;
        }
        out.flush()?;
        Ok(())
    }
}
