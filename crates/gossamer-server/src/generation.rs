//! From a harmony conversation to a running generation: render the prompt, submit it to the
//! engine, and turn the engine's tokens into [`TurnEvent`]s. Shared by both APIs.

use gossamer_engine::sampler::SamplingError;
use gossamer_engine::{Engine, Event, FinishReason, Request, SamplingParams, SubmitError, Ticket};
use gossamer_harmony::render::{render_conversation_for_completion, RenderConfig};
use gossamer_harmony::tokenizer::special;
use gossamer_harmony::{Conversation, Role, Tokenizer};

use crate::chat::ToolChoice;
use crate::error::ApiError;
use crate::turn::{Turn, TurnEvent, TurnOutcome};

/// Tokens that end an assistant turn: `<|return|>` (the answer is done), `<|call|>` (a tool
/// call is done). `<|end|>` only ends one message; the turn goes on.
const STOP_TOKENS: [u32; 2] = [special::RETURN, special::CALL];

/// What to generate, independent of the API that asked.
pub struct GenerationSpec {
    pub conversation: Conversation,
    pub tool_choice: ToolChoice,
    /// Declared function names (for `required` with a single tool).
    pub tool_names: Vec<String>,
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Alternatives per token; `Some(0)` asks for the sampled token's log-probability only.
    pub logprobs: Option<usize>,
}

/// What the caller receives as the generation goes.
pub enum Progress {
    Events(Vec<TurnEvent>),
    /// The last events and the whole answer.
    Done(Vec<TurnEvent>, TurnOutcome),
    /// The engine failed mid-way (a model error, or it stopped).
    Failed(String),
}

/// A submitted generation. Dropping it cancels the request in the engine.
pub struct Generation {
    ticket: Ticket,
    turn: Option<Turn>,
    /// Events of the forced header, sent first.
    first: Vec<TurnEvent>,
    prompt_tokens: usize,
    generated: usize,
}

/// The tokens a forced tool call writes after `<|start|>assistant`: the header up to
/// `<|message|>` for a named function, or only ` to=functions.` when any declared function
/// will do (the model picks the name). gpt-oss then writes the arguments.
///
/// Forcing skips the model's reasoning for this turn; a grammar that lets the model reason
/// first and then constrains the call is the better tool, and not built yet.
fn forced_prefix(tokenizer: &Tokenizer, choice: &ToolChoice, tools: &[String]) -> Vec<u32> {
    let name = match choice {
        ToolChoice::Named(n) => Some(n.as_str()),
        ToolChoice::Required if tools.len() == 1 => Some(tools[0].as_str()),
        ToolChoice::Required => None,
        ToolChoice::Auto | ToolChoice::None => return Vec::new(),
    };
    let Some(name) = name else {
        return tokenizer.encode_ordinary(" to=functions.");
    };
    let mut t = tokenizer.encode_ordinary(&format!(" to=functions.{name}"));
    t.push(special::CHANNEL);
    t.extend(tokenizer.encode_ordinary("commentary "));
    t.push(special::CONSTRAIN);
    t.extend(tokenizer.encode_ordinary("json"));
    t.push(special::MESSAGE);
    t
}

/// Renders and submits. Errors are the API's: a prompt longer than the context (400), a
/// full queue (429), bad sampling values (400).
pub fn start(engine: &Engine, spec: GenerationSpec) -> Result<Generation, ApiError> {
    let tokenizer = Tokenizer::o200k_harmony();
    let mut prompt = render_conversation_for_completion(
        &spec.conversation,
        Role::Assistant,
        &RenderConfig::default(),
    )
    .map_err(|e| ApiError::invalid("messages", format!("cannot render the conversation: {e}")))?;
    let prefix = forced_prefix(&tokenizer, &spec.tool_choice, &spec.tool_names);
    prompt.extend_from_slice(&prefix);

    let context = engine.config().context;
    let room = context.saturating_sub(prompt.len());
    let max_tokens = spec.max_tokens.unwrap_or(room).min(room).max(1);
    let prompt_tokens = prompt.len();
    let ticket = engine
        .submit(Request {
            prompt,
            max_tokens,
            sampling: spec.sampling,
            stop_tokens: STOP_TOKENS.to_vec(),
            logprobs: spec.logprobs,
        })
        .map_err(|e| submit_error(e, context))?;
    let mut turn = Turn::new(tokenizer, &prefix, spec.stop, spec.logprobs.is_some());
    let first = turn.take_prefix_events();
    Ok(Generation {
        ticket,
        turn: Some(turn),
        first,
        prompt_tokens,
        generated: 0,
    })
}

fn submit_error(e: SubmitError, context: usize) -> ApiError {
    match e {
        SubmitError::QueueFull { .. } => ApiError {
            status: 429,
            message: e.to_string(),
            kind: "rate_limit_error",
            param: None,
            code: Some("rate_limit_exceeded"),
        },
        SubmitError::PromptTooLong { prompt, .. } => ApiError::invalid(
            "messages",
            format!(
                "this model's maximum context length is {context} tokens, but the prompt has \
                 {prompt} tokens; shorten the conversation"
            ),
        )
        .with_code("context_length_exceeded"),
        SubmitError::EmptyPrompt => ApiError::invalid("messages", e.to_string()),
        SubmitError::Sampling(s) => {
            let param = match s {
                SamplingError::Temperature(_) => "temperature",
                SamplingError::TopP(_) => "top_p",
            };
            ApiError::invalid(param, s.to_string())
        }
        SubmitError::Stopped => ApiError {
            status: 503,
            message: e.to_string(),
            kind: "server_error",
            param: None,
            code: None,
        },
    }
}

impl Generation {
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// The next events; `Done` or `Failed` once, then nothing more should be asked.
    pub async fn next(&mut self) -> Progress {
        if !self.first.is_empty() {
            return Progress::Events(std::mem::take(&mut self.first));
        }
        loop {
            let Some(turn) = self.turn.as_mut() else {
                return Progress::Failed("the generation is over".into());
            };
            match self.ticket.events.recv().await {
                Some(Event::Token { id, logprob }) => {
                    self.generated += 1;
                    let events = turn.push(id, logprob.as_ref());
                    if turn.stopped() {
                        // A stop string: end here, the engine drops the rest.
                        self.ticket.cancel();
                        return self.done(events, FinishReason::Stop, self.generated);
                    }
                    if !events.is_empty() {
                        return Progress::Events(events);
                    }
                }
                Some(Event::Done {
                    reason,
                    completion_tokens,
                    ..
                }) => return self.done(Vec::new(), reason, completion_tokens),
                Some(Event::Error(e)) => return Progress::Failed(e),
                None => return Progress::Failed("the engine has stopped".into()),
            }
        }
    }

    fn done(
        &mut self,
        mut events: Vec<TurnEvent>,
        reason: FinishReason,
        completion_tokens: usize,
    ) -> Progress {
        let turn = self.turn.take().expect("turn present until done");
        let (last, outcome) = turn.finish(reason, self.prompt_tokens, completion_tokens);
        events.extend(last);
        Progress::Done(events, outcome)
    }

    /// Runs to the end, for non-streaming answers.
    pub async fn complete(mut self) -> Result<TurnOutcome, String> {
        loop {
            match self.next().await {
                Progress::Events(_) => {}
                Progress::Done(_, outcome) => return Ok(outcome),
                Progress::Failed(e) => return Err(e),
            }
        }
    }
}
