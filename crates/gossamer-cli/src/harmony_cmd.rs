//! `gossamer harmony render|parse`: the harmony format as JSON in, tokens out (and back), for
//! scripts and debugging. Conversations use the JSON shape `openai-harmony` serialises.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use gossamer_harmony::conversation::{Conversation, Message, Role};
use gossamer_harmony::parser::parse_tokens;
use gossamer_harmony::render::{
    render_conversation, render_conversation_for_completion, render_conversation_for_training,
    RenderConfig,
};
use serde_json::json;

#[derive(Subcommand)]
pub enum HarmonyCommand {
    /// Render a conversation (JSON) to token ids.
    Render(RenderArgs),
    /// Parse token ids into messages (JSON).
    Parse(ParseArgs),
}

#[derive(Args)]
pub struct RenderArgs {
    /// JSON file with `{"messages": [...]}` (default: standard input).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Append `<|start|>{role}` for sampling the next message (usually `assistant`).
    #[arg(long, value_name = "ROLE", conflicts_with = "training")]
    completion: Option<Role>,
    /// Render as a training target (a final assistant message ends with `<|return|>`).
    #[arg(long)]
    training: bool,
    /// Keep earlier chain of thought (harmony drops it by default).
    #[arg(long)]
    keep_analysis: bool,
}

#[derive(Args)]
pub struct ParseArgs {
    /// Comma-separated token ids (default: standard input, as `[1,2,3]`, `{"tokens": [...]}`
    /// or comma/space-separated ids).
    #[arg(long, value_delimiter = ',')]
    tokens: Option<Vec<u32>>,
    /// The tokens continue a prompt that ended with `<|start|>ROLE` (a completion).
    #[arg(long, value_name = "ROLE")]
    completion: Option<Role>,
}

pub fn run(cmd: HarmonyCommand) -> Result<()> {
    match cmd {
        HarmonyCommand::Render(a) => render(a),
        HarmonyCommand::Parse(a) => parse(a),
    }
}

fn read_input(path: &Option<PathBuf>) -> Result<String> {
    let mut text = String::new();
    match path {
        Some(p) => {
            text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
        }
    }
    Ok(text)
}

fn render(a: RenderArgs) -> Result<()> {
    let text = read_input(&a.input)?;
    let conversation: Conversation = serde_json::from_str(&text)
        .context("the input is not a harmony conversation (JSON with \"messages\")")?;
    let config = RenderConfig {
        auto_drop_analysis: !a.keep_analysis,
    };
    let tokens = if let Some(role) = a.completion {
        render_conversation_for_completion(&conversation, role, &config)
    } else if a.training {
        render_conversation_for_training(&conversation, &config)
    } else {
        render_conversation(&conversation, &config)
    }
    .context("cannot render the conversation")?;
    println!("{}", json!({ "tokens": tokens }));
    Ok(())
}

fn parse(a: ParseArgs) -> Result<()> {
    let tokens = match a.tokens {
        Some(t) => t,
        None => tokens_from_text(&read_input(&None)?)?,
    };
    let (messages, warnings) = parse_tokens(&tokens, a.completion);
    let messages: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let mut v = serde_json::to_value(Message::from(m)).expect("messages serialise");
            // How the message ended is not part of openai-harmony's message shape but matters
            // to a caller (a tool call ends in <|call|>, a cut-off answer is truncated).
            v["end"] = serde_json::to_value(m.end).expect("end serialises");
            v
        })
        .collect();
    let warnings: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    println!("{}", json!({ "messages": messages, "warnings": warnings }));
    Ok(())
}

fn tokens_from_text(text: &str) -> Result<Vec<u32>> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(trimmed).context("malformed JSON")?;
        let list = v.get("tokens").unwrap_or(&v);
        return serde_json::from_value(list.clone())
            .context("expected a list of token ids, or {\"tokens\": [...]}");
    }
    let ids: Result<Vec<u32>, _> = trimmed
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect();
    let ids = ids.context("token ids must be non-negative integers")?;
    if ids.is_empty() {
        bail!("no token ids given");
    }
    Ok(ids)
}
