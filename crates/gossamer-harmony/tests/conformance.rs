//! Conformance of our harmony renderer with OpenAI's `openai-harmony` 0.0.8, the oracle:
//!
//! - every golden file in its `test-data/`, rebuilt from the conversations its own tests
//!   construct, compared with the file and with the oracle's rendering;
//! - the serde JSON shape, both directions;
//! - a seeded property test over generated conversations (all roles, channels, recipients,
//!   content types, efforts, dates, built-in and function tools with varied schemas),
//!   compared with the oracle for every render entry point and both drop settings.

mod support;

use gossamer_harmony::conversation::CONSTRAINED_JSON;
use gossamer_harmony::render::{render_message, retained_messages, MessageRenderOptions};
use gossamer_harmony::tokenizer::special;
use gossamer_harmony::{
    render_conversation, render_conversation_for_completion, render_conversation_for_training,
    Author, Conversation, DeveloperContent, Message, ReasoningEffort, RenderConfig, Role,
    SystemContent, ToolDescription,
};
use openai_harmony::chat as theirs;
use serde_json::json;
use support::{
    assert_tokens_eq, golden_id_tokens, golden_text_tokens, oracle, oracle_render, to_ours,
    to_theirs, OracleCall,
};

const IDENTITY: &str = "You are ChatGPT, a large language model trained by OpenAI.";

/// Every golden file must be covered by a test below.
const GOLDENS: [&str; 23] = [
    "test_browser_and_function_tool.txt",
    "test_browser_and_python_tool.txt",
    "test_browser_tool_only.txt",
    "test_does_not_drop_if_ongoing_analysis.txt",
    "test_dropping_cot_by_default.txt",
    "test_keep_analysis_between_finals.txt",
    "test_no_tools.txt",
    "test_preserve_cot.txt",
    "test_reasoning_system_message.txt",
    "test_reasoning_system_message_no_instruction.txt",
    "test_reasoning_system_message_with_dates.txt",
    "test_render_functions_with_parameters.txt",
    "test_simple_convo.txt",
    "test_simple_convo_high_effort.txt",
    "test_simple_convo_high_effort_no_instruction.txt",
    "test_simple_convo_low_effort.txt",
    "test_simple_convo_low_effort_no_instruction.txt",
    "test_simple_convo_medium_effort.txt",
    "test_simple_convo_medium_effort_no_instruction.txt",
    "test_simple_reasoning_response.txt",
    "test_simple_tool_call.txt",
    "test_streamable_parser.txt",
    "test_tool_response_parsing.txt",
];

#[test]
fn every_golden_file_is_covered() {
    let dir = support::harmony_crate_dir().join("test-data");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .expect("read test-data")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    found.sort();
    assert_eq!(found, GOLDENS, "openai-harmony's test-data/ changed");
}

/// What to render, for both sides.
#[derive(Clone, Copy)]
enum Call {
    Conversation,
    Completion,
}

/// Renders `ours` with our renderer and `reference` (built with openai-harmony's own API)
/// with the oracle; checks both JSON forms agree and both renderings equal `expected`.
#[track_caller]
fn check_golden(
    name: &str,
    ours: &Conversation,
    reference: &theirs::Conversation,
    call: Call,
    auto_drop_analysis: bool,
    expected: &[u32],
) {
    assert_eq!(
        serde_json::to_value(ours).unwrap(),
        serde_json::to_value(reference).unwrap(),
        "{name}: JSON of our conversation differs from openai-harmony's"
    );
    let config = RenderConfig { auto_drop_analysis };
    let (mine, oracle_tokens) = match call {
        Call::Conversation => (
            render_conversation(ours, &config),
            oracle_render(reference, OracleCall::Conversation, auto_drop_analysis),
        ),
        Call::Completion => (
            render_conversation_for_completion(ours, Role::Assistant, &config),
            oracle_render(
                reference,
                OracleCall::Completion(theirs::Role::Assistant),
                auto_drop_analysis,
            ),
        ),
    };
    let mine = mine.unwrap_or_else(|e| panic!("{name}: {e}"));
    let oracle_tokens = oracle_tokens.unwrap_or_else(|e| panic!("{name}: oracle: {e}"));
    assert_tokens_eq(
        &format!("{name} (oracle vs file)"),
        expected,
        &oracle_tokens,
    );
    assert_tokens_eq(&format!("{name} (ours vs file)"), expected, &mine);
}

fn t_msg(role: theirs::Role, content: impl Into<theirs::Content>) -> theirs::Message {
    theirs::Message::from_role_and_content(role, content)
}

#[test]
fn golden_simple_convo() {
    let ours = Conversation::from_messages([
        Message::system(SystemContent::new().with_model_identity(IDENTITY)),
        Message::user("What is 2 + 2?"),
    ]);
    let reference = theirs::Conversation::from_messages([
        t_msg(
            theirs::Role::System,
            theirs::SystemContent::new().with_model_identity(IDENTITY),
        ),
        t_msg(theirs::Role::User, "What is 2 + 2?"),
    ]);
    let name = "test_simple_convo.txt";
    check_golden(
        name,
        &ours,
        &reference,
        Call::Completion,
        false,
        &golden_text_tokens(name),
    );
}

#[test]
fn golden_simple_convo_with_effort() {
    let question = "What is the capital of the largest country in the world?";
    let robot = "Answer the user's questions like a robot.";
    for (effort, their_effort, word) in [
        (ReasoningEffort::Low, theirs::ReasoningEffort::Low, "low"),
        (
            ReasoningEffort::Medium,
            theirs::ReasoningEffort::Medium,
            "medium",
        ),
        (ReasoningEffort::High, theirs::ReasoningEffort::High, "high"),
    ] {
        for with_instructions in [true, false] {
            let name = if with_instructions {
                format!("test_simple_convo_{word}_effort.txt")
            } else {
                format!("test_simple_convo_{word}_effort_no_instruction.txt")
            };
            let sys = SystemContent::new()
                .with_model_identity(IDENTITY)
                .with_reasoning_effort(effort);
            let their_sys = theirs::SystemContent::new()
                .with_model_identity(IDENTITY)
                .with_reasoning_effort(their_effort);
            let mut ours = Conversation::from_messages([Message::system(sys)]);
            let mut reference =
                theirs::Conversation::from_messages([t_msg(theirs::Role::System, their_sys)]);
            if with_instructions {
                ours.push(Message::developer(
                    DeveloperContent::new().with_instructions(robot),
                ));
                reference.messages.push(t_msg(
                    theirs::Role::Developer,
                    theirs::DeveloperContent::new().with_instructions(robot),
                ));
            }
            ours.push(Message::user(question));
            reference.messages.push(t_msg(theirs::Role::User, question));
            check_golden(
                &name,
                &ours,
                &reference,
                Call::Completion,
                false,
                &golden_text_tokens(&name),
            );
        }
    }
}

#[test]
fn golden_reasoning_system_messages() {
    // (file, effort, dates, user text), as in openai-harmony's tests.
    let cases = [
        (
            "test_reasoning_system_message.txt",
            ReasoningEffort::Medium,
            false,
            "What is 2 + 2?",
        ),
        (
            "test_reasoning_system_message_no_instruction.txt",
            ReasoningEffort::High,
            false,
            "What is the best place to eat candy in the world?",
        ),
        (
            "test_reasoning_system_message_with_dates.txt",
            ReasoningEffort::Medium,
            true,
            "What is 42 * pi?",
        ),
    ];
    for (name, effort, dates, question) in cases {
        let mut sys = SystemContent::new()
            .with_model_identity(IDENTITY)
            .with_reasoning_effort(effort);
        let their_effort = match effort {
            ReasoningEffort::Low => theirs::ReasoningEffort::Low,
            ReasoningEffort::Medium => theirs::ReasoningEffort::Medium,
            ReasoningEffort::High => theirs::ReasoningEffort::High,
        };
        let mut their_sys = theirs::SystemContent::new()
            .with_model_identity(IDENTITY)
            .with_reasoning_effort(their_effort);
        if dates {
            sys = sys
                .with_conversation_start_date("2021-01-01")
                .with_knowledge_cutoff("2021-01");
            their_sys = their_sys
                .with_conversation_start_date("2021-01-01")
                .with_knowledge_cutoff("2021-01");
        }
        sys = sys.with_required_channels(["analysis", "final"]);
        their_sys = their_sys.with_required_channels(["analysis", "final"]);
        let ours = Conversation::from_messages([Message::system(sys), Message::user(question)]);
        let reference = theirs::Conversation::from_messages([
            t_msg(theirs::Role::System, their_sys),
            t_msg(theirs::Role::User, question),
        ]);
        check_golden(
            name,
            &ours,
            &reference,
            Call::Completion,
            false,
            &golden_text_tokens(name),
        );
    }
}

/// The four function tools of openai-harmony's `test_render_functions_with_parameters`.
fn weather_tools() -> Vec<(&'static str, &'static str, Option<serde_json::Value>)> {
    vec![
        ("get_location", "Gets the location of the user.", None),
        (
            "get_current_weather",
            "Gets the current weather in the provided location.",
            Some(json!({
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA"
                    },
                    "format": {
                        "type": "string",
                        "enum": ["celsius", "fahrenheit"],
                        "default": "celsius"
                    }
                },
                "required": ["location"]
            })),
        ),
        (
            "get_multiple_weathers",
            "Gets the current weather in the provided list of locations.",
            Some(json!({
                "type": "object",
                "properties": {
                    "locations": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "List of city and state, e.g. [\"San Francisco, CA\", \"New York, NY\"]"
                    },
                    "format": {
                        "type": "string",
                        "enum": ["celsius", "fahrenheit"],
                        "default": "celsius"
                    }
                },
                "required": ["locations"]
            })),
        ),
        (
            "kitchensink",
            "A function with various complex schemas.",
            Some(json!({
                "description": "params object",
                "type": "object",
                "properties": {
                    "string": {
                        "type": "string",
                        "title": "STRING",
                        "description": "A string",
                        "examples": ["hello", "world"]
                    },
                    "string_nullable": {
                        "type": "string",
                        "nullable": true,
                        "description": "A nullable string",
                        "default": "the default"
                    },
                    "string_enum": {
                        "type": "string",
                        "enum": ["a", "b", "c"]
                    },
                    "oneof_string_or_number": {
                        "oneOf": [
                            {"type": "string", "default": "default_string_in_oneof"},
                            {"type": "number", "description": "numbers can happen too"}
                        ],
                        "description": "a oneof",
                        "default": 20
                    }
                }
            })),
        ),
    ]
}

#[test]
fn golden_render_functions_with_parameters() {
    let name = "test_render_functions_with_parameters.txt";
    let tools = weather_tools();
    let ours = Conversation::from_messages([
        Message::system(
            SystemContent::new()
                .with_reasoning_effort(ReasoningEffort::High)
                .with_conversation_start_date("2025-06-28"),
        ),
        Message::developer(
            DeveloperContent::new()
                .with_instructions("Always respond in riddles")
                .with_function_tools(
                    tools
                        .iter()
                        .map(|(n, d, p)| ToolDescription::new(*n, *d, p.clone()))
                        .collect(),
                ),
        ),
        Message::user("What is the weather like in SF?"),
    ]);
    let reference = theirs::Conversation::from_messages([
        t_msg(
            theirs::Role::System,
            theirs::SystemContent::new()
                .with_reasoning_effort(theirs::ReasoningEffort::High)
                .with_conversation_start_date("2025-06-28"),
        ),
        t_msg(
            theirs::Role::Developer,
            theirs::DeveloperContent::new()
                .with_instructions("Always respond in riddles")
                .with_function_tools(
                    tools
                        .iter()
                        .map(|(n, d, p)| theirs::ToolDescription::new(*n, *d, p.clone()))
                        .collect(),
                ),
        ),
        t_msg(theirs::Role::User, "What is the weather like in SF?"),
    ]);
    check_golden(
        name,
        &ours,
        &reference,
        Call::Completion,
        false,
        &golden_text_tokens(name),
    );
}

#[test]
fn golden_builtin_tools() {
    let lookup = ToolDescription::new(
        "lookup_weather",
        "Use this tool to lookup the weather in a given location. Call it with the parameter 'location', can be any textual description of a location.",
        Some(json!({
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"]
        })),
    );
    let their_lookup = theirs::ToolDescription::new(
        lookup.name.clone(),
        lookup.description.clone(),
        lookup.parameters.clone(),
    );
    let date = "2025-06-28";
    let sys = SystemContent::new().with_conversation_start_date(date);
    let their_sys = theirs::SystemContent::new().with_conversation_start_date(date);
    let cases: Vec<(&str, Conversation, theirs::Conversation)> = vec![
        (
            "test_no_tools.txt",
            Conversation::from_messages([Message::system(sys.clone())]),
            theirs::Conversation::from_messages([t_msg(theirs::Role::System, their_sys.clone())]),
        ),
        (
            "test_browser_tool_only.txt",
            Conversation::from_messages([Message::system(sys.clone().with_browser_tool())]),
            theirs::Conversation::from_messages([t_msg(
                theirs::Role::System,
                their_sys.clone().with_browser_tool(),
            )]),
        ),
        (
            "test_browser_and_python_tool.txt",
            Conversation::from_messages([Message::system(
                sys.clone().with_browser_tool().with_python_tool(),
            )]),
            theirs::Conversation::from_messages([t_msg(
                theirs::Role::System,
                their_sys.clone().with_browser_tool().with_python_tool(),
            )]),
        ),
        (
            "test_browser_and_function_tool.txt",
            Conversation::from_messages([
                Message::system(sys.clone().with_browser_tool()),
                Message::developer(DeveloperContent::new().with_function_tools(vec![lookup])),
            ]),
            theirs::Conversation::from_messages([
                t_msg(theirs::Role::System, their_sys.clone().with_browser_tool()),
                t_msg(
                    theirs::Role::Developer,
                    theirs::DeveloperContent::new().with_function_tools(vec![their_lookup]),
                ),
            ]),
        ),
    ];
    for (name, ours, reference) in cases {
        // The Python tests that own these files use the default config (dropping on); there
        // is nothing to drop, so both settings must give the file.
        for auto_drop in [true, false] {
            check_golden(
                name,
                &ours,
                &reference,
                Call::Completion,
                auto_drop,
                &golden_text_tokens(name),
            );
        }
    }
}

/// The two-turn arithmetic conversation of the chain-of-thought goldens.
fn arithmetic(analysis: &str) -> (Conversation, theirs::Conversation) {
    let ours = Conversation::from_messages([
        Message::user("What is 2 + 2?"),
        Message::assistant(analysis).with_channel("analysis"),
        Message::assistant("2 + 2 equals 4.").with_channel("final"),
        Message::user("What about 9 / 2?"),
    ]);
    let reference = theirs::Conversation::from_messages([
        t_msg(theirs::Role::User, "What is 2 + 2?"),
        t_msg(theirs::Role::Assistant, analysis).with_channel("analysis"),
        t_msg(theirs::Role::Assistant, "2 + 2 equals 4.").with_channel("final"),
        t_msg(theirs::Role::User, "What about 9 / 2?"),
    ]);
    (ours, reference)
}

#[test]
fn golden_dropping_cot_by_default() {
    let name = "test_dropping_cot_by_default.txt";
    let (ours, reference) =
        arithmetic("User asks: “What is 2 + 2?” Simple arithmetic. Provide answer.");
    check_golden(
        name,
        &ours,
        &reference,
        Call::Completion,
        true,
        &golden_text_tokens(name),
    );
}

#[test]
fn golden_preserve_cot() {
    let name = "test_preserve_cot.txt";
    let (ours, reference) =
        arithmetic("User asks a simple question: \"What is 2 + 2?\" The answer: 4.");
    check_golden(
        name,
        &ours,
        &reference,
        Call::Completion,
        false,
        &golden_text_tokens(name),
    );
}

#[test]
fn golden_does_not_drop_if_ongoing_analysis() {
    let name = "test_does_not_drop_if_ongoing_analysis.txt";
    let analysis = "User asks: “What is the weather in SF?” We need to use lookup_weather tool.";
    let args = "{\"location\": \"San Francisco\"}";
    let result = "{\"temperature\": 20, \"description\": \"sunny\"}";
    let ours = Conversation::from_messages([
        Message::user("What is the weather in SF?"),
        Message::assistant(analysis).with_channel("analysis"),
        Message::assistant(args)
            .with_channel("commentary")
            .with_recipient("functions.lookup_weather")
            .with_content_type(CONSTRAINED_JSON),
        Message::tool("functions.lookup_weather", result),
    ]);
    let reference = theirs::Conversation::from_messages([
        t_msg(theirs::Role::User, "What is the weather in SF?"),
        t_msg(theirs::Role::Assistant, analysis).with_channel("analysis"),
        t_msg(theirs::Role::Assistant, args)
            .with_channel("commentary")
            .with_recipient("functions.lookup_weather")
            .with_content_type("<|constrain|>json"),
        theirs::Message::from_author_and_content(
            theirs::Author::new(theirs::Role::Tool, "functions.lookup_weather"),
            result,
        ),
    ]);
    let expected = golden_text_tokens(name);
    // `<|constrain|>` must be the special token, as the file's tokenisation has it.
    assert!(expected.contains(&special::CONSTRAIN));
    check_golden(name, &ours, &reference, Call::Completion, true, &expected);
}

#[test]
fn golden_keep_analysis_between_finals() {
    let name = "test_keep_analysis_between_finals.txt";
    let turns = [
        ("user", "What is 2 + 2?"),
        ("analysis", "thinking 2+2"),
        ("final", "4"),
        ("user", "What is 3 + 5?"),
        ("analysis", "thinking 3+5"),
        ("final", "8"),
    ];
    let ours: Conversation = turns
        .iter()
        .map(|&(kind, text)| match kind {
            "user" => Message::user(text),
            ch => Message::assistant(text).with_channel(ch),
        })
        .collect();
    let reference =
        theirs::Conversation::from_messages(turns.iter().map(|&(kind, text)| match kind {
            "user" => t_msg(theirs::Role::User, text),
            ch => t_msg(theirs::Role::Assistant, text).with_channel(ch),
        }));
    // Rendered by the Python test with its default config: dropping on.
    check_golden(
        name,
        &ours,
        &reference,
        Call::Conversation,
        true,
        &golden_text_tokens(name),
    );
}

/// Model output as history: the reference parses it; re-rendered, a generation reads as
/// `<|start|>assistant` + the output, with `<|return|>` stored as `<|end|>`.
fn as_history(output: &[u32]) -> Vec<u32> {
    let mut tokens = vec![special::START, 173781];
    tokens.extend(output.iter().map(|&t| {
        if t == special::RETURN {
            special::END
        } else {
            t
        }
    }));
    tokens
}

/// Parses `tokens` with the oracle, converts the messages to ours through JSON, and checks
/// that both renderers give `expected` (no dropping: these hold a final answer's analysis).
#[track_caller]
fn check_parsed(name: &str, tokens: &[u32], role: Option<theirs::Role>, expected: &[u32]) {
    let parsed = oracle()
        .parse_messages_from_completion_tokens(tokens.iter().copied(), role)
        .unwrap_or_else(|e| panic!("{name}: oracle cannot parse: {e}"));
    let reference = theirs::Conversation::from_messages(parsed);
    let ours = to_ours(&reference);
    check_golden(name, &ours, &reference, Call::Conversation, false, expected);
}

#[test]
fn golden_simple_reasoning_response() {
    let name = "test_simple_reasoning_response.txt";
    let output = golden_id_tokens(name);
    // The file stops before the final answer's stop token; rendered history closes it.
    let mut expected = as_history(&output);
    expected.push(special::END);
    check_parsed(name, &output, Some(theirs::Role::Assistant), &expected);
}

#[test]
fn golden_simple_tool_call() {
    let name = "test_simple_tool_call.txt";
    let output = golden_id_tokens(name);
    // The file stops right after the call's arguments; rendered history closes it.
    let mut expected = as_history(&output);
    expected.push(special::CALL);
    check_parsed(name, &output, Some(theirs::Role::Assistant), &expected);
}

#[test]
fn golden_streamable_parser() {
    let name = "test_streamable_parser.txt";
    let text = support::golden_text(name);
    let bpe = tiktoken_rs::o200k_harmony_singleton();
    // The model wrote the recipient after the channel; the renderer writes it before.
    let canonical = format!(
        "<|start|>assistant{}",
        text.replace(
            "<|channel|>commentary to=browser.search code",
            " to=browser.search<|channel|>commentary code"
        )
    );
    let expected = bpe.encode_with_special_tokens(&canonical);
    let output = bpe.encode_with_special_tokens(&text);
    check_parsed(name, &output, Some(theirs::Role::Assistant), &expected);
}

#[test]
fn golden_tool_response_parsing() {
    let name = "test_tool_response_parsing.txt";
    let tokens = golden_text_tokens(name);
    // The file holds an unterminated tool message; rendered, it ends with `<|end|>`.
    let mut expected = tokens.clone();
    expected.push(special::END);
    check_parsed(name, &tokens, None, &expected);
}

#[test]
fn builders_match_reference_builders() {
    assert_eq!(
        serde_json::to_value(gossamer_harmony::ToolNamespaceConfig::browser()).unwrap(),
        serde_json::to_value(theirs::ToolNamespaceConfig::browser()).unwrap()
    );
    assert_eq!(
        serde_json::to_value(gossamer_harmony::ToolNamespaceConfig::python()).unwrap(),
        serde_json::to_value(theirs::ToolNamespaceConfig::python()).unwrap()
    );
    assert_eq!(
        serde_json::to_value(SystemContent::default()).unwrap(),
        serde_json::to_value(theirs::SystemContent::default()).unwrap()
    );
    let msg = Message::tool("functions.f", "{}")
        .with_recipient("assistant")
        .with_channel("commentary");
    let their_msg = theirs::Message::from_author_and_content(
        theirs::Author::new(theirs::Role::Tool, "functions.f"),
        "{}",
    )
    .with_recipient("assistant")
    .with_channel("commentary");
    assert_eq!(
        serde_json::to_value(&msg).unwrap(),
        serde_json::to_value(&their_msg).unwrap()
    );
    assert_eq!(msg.author, Author::new(Role::Tool, "functions.f"));
}

#[test]
fn single_message_render_matches_reference() {
    let msg = Message::assistant("{\"a\": 1}")
        .with_author_name("bot")
        .with_channel("commentary")
        .with_recipient("functions.f")
        .with_content_type(CONSTRAINED_JSON);
    let conv = Conversation::from_messages([msg.clone()]);
    let reference = to_theirs(&conv);
    let theirs_tokens = oracle().render(&reference.messages[0], None).unwrap();
    let ours = render_message(&msg, &MessageRenderOptions::default()).unwrap();
    assert_tokens_eq("single message", &theirs_tokens, &ours);
}

#[test]
fn training_render_ends_with_return() {
    let (ours, reference) = arithmetic("thinking");
    let mut ours = ours;
    ours.push(Message::assistant("4.5").with_channel("final"));
    let mut reference = reference;
    reference
        .messages
        .push(t_msg(theirs::Role::Assistant, "4.5").with_channel("final"));
    for drop in [true, false] {
        let config = RenderConfig {
            auto_drop_analysis: drop,
        };
        let mine = render_conversation_for_training(&ours, &config).unwrap();
        assert_eq!(mine.last(), Some(&special::RETURN));
        let expected = oracle_render(&reference, OracleCall::Training, drop).unwrap();
        assert_tokens_eq("training", &expected, &mine);
        // Dropping removes exactly the first turn's analysis.
        let kept = retained_messages(&ours.messages, &config);
        assert_eq!(kept, [true, !drop, true, true, true]);
    }
}

/// Number of generated conversations the property test must check.
const GENERATED_CASES: u32 = 1500;

/// Features the generated conversations must have exercised (so the generator cannot
/// silently lose coverage).
const REQUIRED_FEATURES: &[&str] = &[
    "role:system",
    "role:developer",
    "role:user",
    "role:assistant",
    "role:tool",
    "channel:analysis",
    "channel:commentary",
    "channel:final",
    "channel:none",
    "channel:other",
    "recipient",
    "recipient:all",
    "content_type:constrain",
    "content_type:plain",
    "effort:low",
    "effort:medium",
    "effort:high",
    "effort:none",
    "date",
    "no_date",
    "cutoff",
    "no_cutoff",
    "tools:browser",
    "tools:python",
    "tools:functions",
    "multi_part",
    "dropped_analysis",
    "kept_analysis_with_final",
    "error",
    "schema:properties",
    "schema:nested_object",
    "schema:required",
    "schema:enum",
    "schema:items",
    "schema:oneOf",
    "schema:anyOf",
    "schema:description",
    "schema:default",
    "schema:nullable",
    "schema:type_array",
];

/// Features of one conversation, for the coverage check.
fn features(conv: &Conversation, rendered_ok: bool) -> Vec<String> {
    let mut f = Vec::new();
    for m in &conv.messages {
        f.push(format!("role:{}", m.author.role));
        f.push(match m.channel.as_deref() {
            None => "channel:none".to_string(),
            Some(c @ ("analysis" | "commentary" | "final")) => format!("channel:{c}"),
            Some(_) => "channel:other".to_string(),
        });
        if let Some(r) = &m.recipient {
            f.push("recipient".into());
            if r == "all" {
                f.push("recipient:all".into());
            }
        }
        if let Some(ct) = &m.content_type {
            f.push(if ct.starts_with("<|constrain|>") {
                "content_type:constrain".into()
            } else {
                "content_type:plain".into()
            });
        }
        if m.content.len() > 1 {
            f.push("multi_part".into());
        }
        for part in &m.content {
            match part {
                gossamer_harmony::Content::SystemContent(s) => {
                    f.push(match s.reasoning_effort {
                        Some(e) => format!("effort:{e}"),
                        None => "effort:none".into(),
                    });
                    f.push(
                        if s.conversation_start_date.is_some() {
                            "date"
                        } else {
                            "no_date"
                        }
                        .into(),
                    );
                    f.push(
                        if s.knowledge_cutoff.is_some() {
                            "cutoff"
                        } else {
                            "no_cutoff"
                        }
                        .into(),
                    );
                    for name in s.tools.iter().flat_map(|t| t.keys()) {
                        f.push(format!("tools:{name}"));
                    }
                }
                gossamer_harmony::Content::DeveloperContent(d) => {
                    for ns in d.tools.iter().flat_map(|t| t.values()) {
                        if ns.name == "functions" && !ns.tools.is_empty() {
                            f.push("tools:functions".into());
                        }
                        for tool in &ns.tools {
                            let schema = tool
                                .parameters
                                .as_ref()
                                .map(|p| p.to_string())
                                .unwrap_or_default();
                            for key in [
                                "properties",
                                "required",
                                "enum",
                                "items",
                                "oneOf",
                                "anyOf",
                                "description",
                                "default",
                                "nullable",
                            ] {
                                if schema.contains(&format!("\"{key}\":")) {
                                    f.push(format!("schema:{key}"));
                                }
                            }
                            if schema.matches("\"properties\":").count() > 1 {
                                f.push("schema:nested_object".into());
                            }
                            if schema.contains("\"type\":[") {
                                f.push("schema:type_array".into());
                            }
                        }
                    }
                }
                gossamer_harmony::Content::Text(_) => {}
            }
        }
    }
    let has_final = conv
        .messages
        .iter()
        .any(|m| m.channel.as_deref() == Some("final"));
    let has_analysis = conv
        .messages
        .iter()
        .any(|m| m.channel.as_deref() == Some("analysis"));
    let kept = retained_messages(&conv.messages, &RenderConfig::default());
    if kept.contains(&false) {
        f.push("dropped_analysis".into());
    } else if has_final && has_analysis {
        f.push("kept_analysis_with_final".into());
    }
    if !rendered_ok {
        f.push("error".into());
    }
    f
}

/// Both sides succeed with equal tokens, or both fail.
fn same_outcome(
    what: &str,
    ours: Result<Vec<u32>, gossamer_harmony::RenderError>,
    reference: Result<Vec<u32>, String>,
) -> Result<bool, proptest::test_runner::TestCaseError> {
    match (ours, reference) {
        (Ok(mine), Ok(expected)) => {
            if mine != expected {
                return Err(proptest::test_runner::TestCaseError::fail(format!(
                    "{what}: tokens differ\n--- openai-harmony ---\n{}\n--- ours ---\n{}",
                    support::decode(&expected),
                    support::decode(&mine)
                )));
            }
            Ok(true)
        }
        (Err(_), Err(_)) => Ok(false),
        (mine, expected) => Err(proptest::test_runner::TestCaseError::fail(format!(
            "{what}: outcomes differ: ours {:?}, openai-harmony {:?}",
            mine.map(|t| t.len()),
            expected.map(|t| t.len())
        ))),
    }
}

#[test]
fn generated_conversations_match_reference() {
    use proptest::test_runner::{Config, RngSeed, TestRunner};
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    let config = Config {
        cases: GENERATED_CASES,
        rng_seed: RngSeed::Fixed(0x6a72_6d6f_6e79),
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let checked = AtomicU32::new(0);
    let seen = Mutex::new(BTreeSet::new());
    let strategy = (
        support::strategies::conversation(),
        support::strategies::any_role(),
    );
    let result = runner.run(&strategy, |(conv, next_role)| {
        checked.fetch_add(1, Ordering::Relaxed);
        // The JSON shape: theirs parses ours, writes the same JSON back, and we read it
        // back into the same conversation.
        let json = serde_json::to_value(&conv).expect("serialize");
        let reference: theirs::Conversation =
            serde_json::from_value(json.clone()).map_err(|e| {
                proptest::test_runner::TestCaseError::fail(format!("theirs rejects our JSON: {e}"))
            })?;
        proptest::prop_assert_eq!(&serde_json::to_value(&reference).expect("serialize"), &json);
        proptest::prop_assert_eq!(&to_ours(&reference), &conv);

        let mut all_ok = true;
        for auto_drop_analysis in [true, false] {
            let config = RenderConfig { auto_drop_analysis };
            all_ok &= same_outcome(
                "render_conversation",
                render_conversation(&conv, &config),
                oracle_render(&reference, OracleCall::Conversation, auto_drop_analysis),
            )?;
            all_ok &= same_outcome(
                "render_conversation_for_completion",
                render_conversation_for_completion(&conv, next_role, &config),
                oracle_render(
                    &reference,
                    OracleCall::Completion(support::to_theirs_role(next_role)),
                    auto_drop_analysis,
                ),
            )?;
            all_ok &= same_outcome(
                "render_conversation_for_training",
                render_conversation_for_training(&conv, &config),
                oracle_render(&reference, OracleCall::Training, auto_drop_analysis),
            )?;
        }
        if let (Some(mine), Some(theirs_msg)) = (conv.messages.first(), reference.messages.first())
        {
            same_outcome(
                "render_message",
                render_message(mine, &MessageRenderOptions::default()),
                oracle().render(theirs_msg, None).map_err(|e| e.to_string()),
            )?;
        }
        if let Ok(mut seen) = seen.lock() {
            seen.extend(features(&conv, all_ok));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let checked = checked.load(Ordering::Relaxed);
    assert!(
        checked >= GENERATED_CASES,
        "only {checked} conversations checked"
    );
    let seen = seen.into_inner().expect("coverage set");
    let missing: Vec<_> = REQUIRED_FEATURES
        .iter()
        .filter(|f| !seen.contains(**f))
        .collect();
    assert!(missing.is_empty(), "generator never produced: {missing:?}");
    eprintln!("checked {checked} generated conversations against openai-harmony");
}

/// The parser reads back what the renderer writes: every message of a generated conversation,
/// rendered without dropping anything, comes back with its role, channel, recipient, content
/// type and text (text-only messages).
#[test]
fn parser_round_trips_rendered_conversations() {
    use gossamer_harmony::conversation::Content;
    use gossamer_harmony::parser::parse_tokens;
    use proptest::test_runner::{Config, RngSeed, TestRunner};

    let config = Config {
        cases: 500,
        rng_seed: RngSeed::Fixed(0x7061_7273_6572),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let keep_all = RenderConfig {
        auto_drop_analysis: false,
    };
    let checked = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&support::strategies::conversation(), |conv| {
        // Header fields are single words. Empty ones, ones with spaces or with special-token
        // text render as something else to read back (` <|constrain|>` alone, `yaml <|end|>`);
        // the parser flags those, which is right, but they cannot round-trip.
        let odd = |f: &Option<String>| {
            f.as_deref().is_some_and(|v| {
                let v = v.strip_prefix("<|constrain|>").unwrap_or(v);
                v.is_empty() || v.contains("<|") || v.chars().any(char::is_whitespace)
            })
        };
        // A bare content type is only read back for the words models write (`json`, `code`);
        // any other bare word after the role is ambiguous and flagged.
        let bare_unknown = |f: &Option<String>| {
            f.as_deref()
                .is_some_and(|v| !v.starts_with("<|constrain|>") && v != "json" && v != "code")
        };
        // A tool's author name stands where the role does; the parser takes a word there as a
        // tool name when it looks like one (`functions.x`, `browser.search`, `python`).
        let toolish = |n: &str| {
            n.starts_with(|c: char| c.is_ascii_alphabetic())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c))
                && (n.contains('.') || n.contains('_') || n == "python")
        };
        if conv.messages.iter().any(|m| {
            (m.author.role == Role::Tool && !m.author.name.as_deref().is_some_and(toolish))
                || odd(&m.channel)
                || odd(&m.recipient)
                || odd(&m.content_type)
                || odd(&m.author.name)
                || bare_unknown(&m.content_type)
        }) {
            return Ok(());
        }
        let Ok(tokens) = gossamer_harmony::render_conversation(&conv, &keep_all) else {
            return Ok(()); // conversations the reference refuses to render too
        };
        // Warnings may remain for legal but odd messages (an assistant message addressed to a
        // role ends in <|call|> without being a tool call); the fields must still come back.
        checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (parsed, _warnings) = parse_tokens(&tokens, None);
        proptest::prop_assert_eq!(
            parsed.len(),
            conv.messages.len(),
            "{}",
            support::decode(&tokens)
        );
        for (m, p) in conv.messages.iter().zip(&parsed) {
            proptest::prop_assert_eq!(p.role, m.author.role);
            proptest::prop_assert_eq!(&p.channel, &m.channel);
            // `to=all` is not written into the header (the reference's rule).
            let recipient = m.recipient.clone().filter(|r| r != "all");
            proptest::prop_assert_eq!(&p.recipient, &recipient);
            proptest::prop_assert_eq!(&p.content_type, &m.content_type);
            if m.content.iter().all(|c| matches!(c, Content::Text(_))) {
                proptest::prop_assert_eq!(&p.content, &m.text());
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let checked = checked.into_inner();
    eprintln!("parser round trip: {checked} of 500 generated conversations checked");
    assert!(
        checked >= 100,
        "only {checked} conversations were plain enough to check"
    );
}
