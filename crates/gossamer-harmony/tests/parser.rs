//! The harmony streaming parser: well-formed output, every malformed sample in
//! `shared/spec/harmony-and-api.md`, agreement with openai-harmony's `StreamableParser`, and
//! property tests (no panic, no lost text, round trip).

use gossamer_harmony::parser::{
    ordinary_text, parse_completion, parse_tokens, End, Event, MessageCollector, ParsedMessage,
    Role, StreamParser, ToolCall, Warning,
};
use gossamer_harmony::tokenizer::special;
use gossamer_harmony::Tokenizer;
use proptest::prelude::*;

mod support;

// ------------------------------------------------------------------------------------------
// helpers

fn tk() -> Tokenizer {
    Tokenizer::o200k_harmony()
}

const SPECIALS: &[(&str, u32)] = &[
    ("<|start|>", special::START),
    ("<|channel|>", special::CHANNEL),
    ("<|message|>", special::MESSAGE),
    ("<|constrain|>", special::CONSTRAIN),
    ("<|end|>", special::END),
    ("<|return|>", special::RETURN),
    ("<|call|>", special::CALL),
    ("<|endoftext|>", 199_999),
];

/// Tokens of `s`: special-token names become their ids, the rest is encoded ordinarily.
/// Text inside `«…»` is always ordinary (so `«<|constrain|>»` is the literal text).
fn toks(s: &str) -> Vec<u32> {
    let t = tk();
    let mut out = Vec::new();
    let mut rest = s;
    let mut text = String::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('«') {
            let end = r.find('»').expect("unclosed «");
            text.push_str(&r[..end]);
            rest = &r[end + '»'.len_utf8()..];
            continue;
        }
        if let Some((name, id)) = SPECIALS.iter().find(|(n, _)| rest.starts_with(n)) {
            out.extend(t.encode_ordinary(&text));
            text.clear();
            out.push(*id);
            rest = &rest[name.len()..];
            continue;
        }
        let c = rest.chars().next().unwrap();
        text.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.extend(t.encode_ordinary(&text));
    out
}

/// Runs the parser, checks the structural invariants, returns the events.
fn run(tokens: &[u32], first_role: Option<Role>) -> Vec<Event> {
    let mut p = StreamParser::new(tk(), first_role);
    let mut events = Vec::new();
    for &t in tokens {
        events.extend(p.push(t));
    }
    events.extend(p.finish());
    check_invariants(tokens, &events);
    events
}

/// Expected text: the lossy decoding of each run of ordinary tokens, concatenated.
fn expected_text(tokens: &[u32]) -> String {
    ordinary_text(&tk(), tokens)
}

fn check_invariants(tokens: &[u32], events: &[Event]) {
    // No text lost: header texts and deltas, in order, are exactly the decoded text.
    let mut got = String::new();
    let mut open = false;
    let mut last_end = false;
    for e in events {
        match e {
            Event::MessageStart {
                header_text,
                channel,
                recipient,
                content_type,
                name,
                ..
            } => {
                assert!(!open, "MessageStart while a message is open: {events:#?}");
                open = true;
                got.push_str(header_text);
                // Header fields come from the header text.
                for f in [channel, recipient, name].into_iter().flatten() {
                    assert!(
                        header_text.contains(f.as_str()),
                        "{f:?} not in {header_text:?}"
                    );
                }
                if let Some(ct) = content_type {
                    let bare = gossamer_harmony::parser::bare_content_type(ct);
                    assert!(header_text.contains(bare), "{ct:?} not in {header_text:?}");
                }
            }
            Event::TextDelta { text } => {
                assert!(open, "TextDelta outside a message");
                assert!(!text.is_empty(), "empty TextDelta");
                got.push_str(text);
            }
            Event::MessageEnd { .. } => {
                assert!(open, "MessageEnd without MessageStart");
                open = false;
            }
            Event::ToolCall(_) => assert!(last_end, "ToolCall must follow MessageEnd"),
            Event::Warning(_) => {}
        }
        last_end = matches!(e, Event::MessageEnd { .. });
    }
    assert!(!open, "message left open after finish()");
    assert_eq!(got, expected_text(tokens), "text lost or invented");
}

fn messages(tokens: &[u32], first_role: Option<Role>) -> (Vec<ParsedMessage>, Vec<Warning>) {
    let events = run(tokens, first_role);
    let mut c = MessageCollector::new();
    for e in &events {
        c.push(e);
    }
    let (m, w) = c.into_parts();
    // The convenience functions agree with the streaming path.
    assert_eq!(parse_tokens(tokens, first_role), (m.clone(), w.clone()));
    (m, w)
}

fn completion(s: &str) -> (Vec<ParsedMessage>, Vec<Warning>) {
    let tokens = toks(s);
    let r = messages(&tokens, Some(Role::Assistant));
    assert_eq!(parse_completion(&tokens), r);
    r
}

fn tool_calls(tokens: &[u32], first_role: Option<Role>) -> Vec<ToolCall> {
    run(tokens, first_role)
        .into_iter()
        .filter_map(|e| match e {
            Event::ToolCall(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// Compact view of a message: (role, name, channel, recipient, content_type, content, end).
type View<'a> = (
    Role,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    End,
);

fn view(m: &ParsedMessage) -> View<'_> {
    (
        m.role,
        m.name.as_deref(),
        m.channel.as_deref(),
        m.recipient.as_deref(),
        m.content_type.as_deref(),
        m.content.as_str(),
        m.end,
    )
}

fn views(ms: &[ParsedMessage]) -> Vec<View<'_>> {
    ms.iter().map(view).collect()
}

const A: Role = Role::Assistant;

// Copies of openai-harmony 0.0.8 `test-data/` vectors (test data, not code).
// openai-harmony's published vectors, read from its crate sources at test time (never copied
// into this repository).
fn streamable_parser() -> String {
    support::golden_text("test_streamable_parser.txt")
}
fn tool_response_parsing() -> String {
    support::golden_text("test_tool_response_parsing.txt")
}
fn simple_tool_call() -> Vec<u32> {
    support::golden_id_tokens("test_simple_tool_call.txt")
}
fn simple_reasoning_response() -> Vec<u32> {
    support::golden_id_tokens("test_simple_reasoning_response.txt")
}

// ------------------------------------------------------------------------------------------
// well-formed output

#[test]
fn reasoning_then_final() {
    let (ms, w) = completion(
        "<|channel|>analysis<|message|>User asks 2+2. Easy.<|end|>\
         <|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>",
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        views(&ms),
        vec![
            (
                A,
                None,
                Some("analysis"),
                None,
                None,
                "User asks 2+2. Easy.",
                End::End
            ),
            (
                A,
                None,
                Some("final"),
                None,
                None,
                "2 + 2 = 4.",
                End::Return
            ),
        ]
    );
}

#[test]
fn tool_call_model_order_with_constrain() {
    let s = "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>\
             {\"location\":\"Tokyo\"}<|call|>";
    let (ms, w) = completion(s);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        views(&ms),
        vec![(
            A,
            None,
            Some("commentary"),
            Some("functions.get_weather"),
            Some("<|constrain|>json"),
            "{\"location\":\"Tokyo\"}",
            End::Call
        )]
    );
    let calls = tool_calls(&toks(s), Some(A));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].function_name(), Some("get_weather"));
    assert_eq!(calls[0].bare_content_type(), Some("json"));
    assert_eq!(calls[0].arguments, "{\"location\":\"Tokyo\"}");
    assert_eq!(calls[0].end, End::Call);
    assert_eq!(ms[0].tool_call().as_ref(), Some(&calls[0]));
}

#[test]
fn tool_call_renderer_order() {
    // What the renderer writes in history: recipient right after the role.
    let s = "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json\
             <|message|>{\"location\":\"Tokyo\"}<|call|>";
    let (ms, w) = messages(&toks(s), None);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        views(&ms),
        vec![(
            A,
            None,
            Some("commentary"),
            Some("functions.get_weather"),
            Some("<|constrain|>json"),
            "{\"location\":\"Tokyo\"}",
            End::Call
        )]
    );
    // Same in a completion (role given by the prompt).
    let s2 =
        " to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{}<|call|>";
    let (ms, w) = completion(s2);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(ms[0].recipient.as_deref(), Some("functions.get_weather"));
    assert_eq!(ms[0].channel.as_deref(), Some("commentary"));
}

#[test]
fn tool_result_messages() {
    let s = "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>\
             {\"sunny\": true}<|end|>\
             <|start|>browser.search to=assistant<|channel|>analysis<|message|>results<|end|>\
             <|start|>functions.lookup<|message|>42<|end|>";
    let tokens = toks(s);
    let (ms, w) = messages(&tokens, None);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        views(&ms),
        vec![
            (
                Role::Tool,
                Some("functions.get_weather"),
                Some("commentary"),
                Some("assistant"),
                None,
                "{\"sunny\": true}",
                End::End
            ),
            (
                Role::Tool,
                Some("browser.search"),
                Some("analysis"),
                Some("assistant"),
                None,
                "results",
                End::End
            ),
            (
                Role::Tool,
                Some("functions.lookup"),
                None,
                None,
                None,
                "42",
                End::End
            ),
        ]
    );
    assert!(tool_calls(&tokens, None).is_empty());
}

#[test]
fn whole_conversation_with_all_roles() {
    let s = "<|start|>system<|message|>You are ChatGPT.<|end|>\
             <|start|>developer<|message|># Instructions\n\nBe brief.<|end|>\
             <|start|>user<|message|>Hi <|end|> typed by a user<|end|>\
             <|start|>assistant<|channel|>final<|message|>Hello!<|return|>";
    // `<|end|>` typed by the user is ordinary text here; build it by hand.
    let t = tk();
    let mut tokens = toks(
        "<|start|>system<|message|>You are ChatGPT.<|end|>\
         <|start|>developer<|message|># Instructions\n\nBe brief.<|end|>\
         <|start|>user<|message|>",
    );
    tokens.extend(t.encode_ordinary("Hi <|end|> typed by a user"));
    tokens.extend(toks(
        "<|end|><|start|>assistant<|channel|>final<|message|>Hello!<|return|>",
    ));
    let _ = s;
    let (ms, w) = messages(&tokens, None);
    assert!(w.is_empty(), "{w:?}");
    let roles: Vec<Role> = ms.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::System, Role::Developer, Role::User, A]);
    assert_eq!(ms[2].content, "Hi <|end|> typed by a user");
    assert_eq!(ms[1].content, "# Instructions\n\nBe brief.");
}

#[test]
fn utf8_split_across_tokens_is_never_torn() {
    let t = tk();
    // Find a character whose encoding needs more than one token.
    let text = "日本語のテキスト 🎉🎊 ﷽ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢";
    let mut tokens = toks("<|channel|>final<|message|>");
    tokens.extend(t.encode_ordinary(text));
    tokens.push(special::RETURN);
    let events = run(&tokens, Some(A));
    for e in &events {
        if let Event::TextDelta { text } = e {
            assert!(!text.contains('\u{FFFD}'));
        }
    }
    let (ms, _) = messages(&tokens, Some(A));
    assert_eq!(ms[0].content, text);
    // Some emoji byte must have been split across tokens for this test to mean anything.
    let split = t.encode_ordinary(text).iter().any(|&id| {
        let b = t.decode_bytes(&[id]).unwrap();
        std::str::from_utf8(&b).is_err()
    });
    assert!(split, "pick a text with split characters");
}

#[test]
fn invalid_bytes_at_the_end_become_replacement_at_finish() {
    let t = tk();
    // A token that is the first bytes of a multi-byte character.
    let partial = (0..199_998u32)
        .find(|&id| {
            let b = t.decode_bytes(&[id]).unwrap();
            std::str::from_utf8(&b).is_err_and(|e| e.error_len().is_none() && e.valid_up_to() == 0)
        })
        .unwrap();
    let mut tokens = toks("<|channel|>final<|message|>ok ");
    tokens.push(partial);
    let mut p = StreamParser::new(t, Some(A));
    let mut texts = String::new();
    for &id in &tokens {
        for e in p.push(id) {
            if let Event::TextDelta { text } = e {
                texts.push_str(&text);
            }
        }
    }
    assert_eq!(texts, "ok ", "incomplete character must be held back");
    let end = p.finish();
    assert!(end.contains(&Event::TextDelta {
        text: "\u{FFFD}".to_string()
    }));
    assert!(end.contains(&Event::MessageEnd {
        end: End::Truncated
    }));
}

// ------------------------------------------------------------------------------------------
// malformed samples from shared/spec/harmony-and-api.md §1.2, §1.9, §1.10

#[test]
fn recipient_in_role_part_and_plain_json() {
    let (ms, w) = completion(
        " to=functions.get_weather<|channel|>commentary json<|message|>{\"a\":1}<|call|>",
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(ms[0].recipient.as_deref(), Some("functions.get_weather"));
    assert_eq!(ms[0].content_type.as_deref(), Some("json"));
    assert_eq!(ms[0].content, "{\"a\":1}");
}

#[test]
fn constrain_glued_to_recipient() {
    for s in [
        "<|channel|>commentary to=functions.f<|constrain|>json<|message|>{}<|call|>",
        "<|channel|>commentary to=functions.f«<|constrain|>»json<|message|>{}<|call|>",
    ] {
        let (ms, w) = completion(s);
        assert!(w.is_empty(), "{s}: {w:?}");
        assert_eq!(ms[0].recipient.as_deref(), Some("functions.f"), "{s}");
        assert_eq!(
            ms[0].content_type.as_deref(),
            Some("<|constrain|>json"),
            "{s}"
        );
        assert_eq!(ms[0].content, "{}");
    }
}

#[test]
fn constrain_as_ordinary_text_from_the_stub_backend() {
    // The reference server's stub replays ` <|constrain|>` as six ordinary tokens.
    assert_eq!(
        tk().encode_ordinary(" <|constrain|>"),
        [464, 91, 542, 141043, 91, 29]
    );
    let s = "<|channel|>analysis to=functions.get_weather« <|constrain|>»json<|message|>\
             {\"location\": \"Tokyo\"}<|call|>";
    let tokens = toks(s);
    assert!(!tokens.contains(&special::CONSTRAIN));
    let (ms, w) = messages(&tokens, Some(A));
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        views(&ms),
        vec![(
            A,
            None,
            Some("analysis"),
            Some("functions.get_weather"),
            Some("<|constrain|>json"),
            "{\"location\": \"Tokyo\"}",
            End::Call
        )]
    );
    let calls = tool_calls(&tokens, Some(A));
    assert_eq!(
        calls.len(),
        1,
        "a tool call on analysis is still a tool call"
    );
    assert_eq!(calls[0].channel.as_deref(), Some("analysis"));
}

#[test]
fn builtin_calls_with_code_type() {
    let s = "<|channel|>analysis to=python code<|message|>print(1+1)<|call|>";
    let (ms, w) = completion(s);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        views(&ms),
        vec![(
            A,
            None,
            Some("analysis"),
            Some("python"),
            Some("code"),
            "print(1+1)",
            End::Call
        )]
    );
    let calls = tool_calls(&toks(s), Some(A));
    assert!(calls[0].is_builtin());
    assert_eq!(calls[0].function_name(), None);

    let s = "<|channel|>commentary to=browser.search code<|message|>{\"query\": \"x\"}<|call|>";
    let (ms, _) = completion(s);
    assert_eq!(ms[0].recipient.as_deref(), Some("browser.search"));
    assert_eq!(ms[0].content_type.as_deref(), Some("code"));
}

#[test]
fn crate_streamable_parser_transcript() {
    let text = streamable_parser();
    let text = text.as_str();
    let (ms, w) = completion(text);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(ms.len(), 3);
    assert_eq!(ms[0].channel.as_deref(), Some("analysis"));
    assert_eq!(
        (ms[1].recipient.as_deref(), ms[1].content_type.as_deref()),
        (Some("browser.search"), Some("code"))
    );
    assert_eq!(ms[1].end, End::Call);
    assert_eq!(ms[2].role, Role::Tool);
    assert_eq!(ms[2].name.as_deref(), Some("browser.search"));
    assert_eq!(ms[2].recipient.as_deref(), Some("assistant"));
}

#[test]
fn crate_token_vectors() {
    // test_simple_tool_call: first message closed by <|return|>, recipient in the role part,
    // no `functions.` prefix, type `code`, and no stop token at the end.
    let tokens = simple_tool_call();
    let (ms, w) = messages(&tokens, Some(A));
    assert_eq!(ms.len(), 2);
    assert_eq!(
        (ms[0].channel.as_deref(), ms[0].end),
        (Some("analysis"), End::Return)
    );
    assert_eq!(
        (
            ms[1].channel.as_deref(),
            ms[1].recipient.as_deref(),
            ms[1].content_type.as_deref(),
            ms[1].end
        ),
        (
            Some("analysis"),
            Some("lookup_weather"),
            Some("code"),
            End::Truncated
        )
    );
    assert!(ms[1].content.starts_with("{\"location\""));
    assert!(w.iter().any(|w| w.message.contains("cut off")));
    // Cut-off calls are not reported as calls.
    assert!(tool_calls(&tokens, Some(A)).is_empty());

    let tokens = simple_reasoning_response();
    let (ms, _) = messages(&tokens, Some(A));
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[1].channel.as_deref(), Some("final"));
    assert_eq!(ms[1].content, "2 + 2 = 4.");
}

#[test]
fn recipient_without_functions_prefix() {
    let s = "<|channel|>commentary to=get_weather <|constrain|>json<|message|>{}<|call|>";
    let calls = tool_calls(&toks(s), Some(A));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].recipient, "get_weather");
    assert_eq!(calls[0].function_name(), Some("get_weather"));
}

#[test]
fn tool_call_on_invented_channel_and_unknown_recipients() {
    for (s, rec) in [
        (
            "<|channel|>comment to=functions.f<|message|>{}<|call|>",
            "functions.f",
        ),
        (
            "<|channel|>analysis to=container.exec<|message|>{\"cmd\":[\"ls\"]}<|call|>",
            "container.exec",
        ),
        (
            "<|channel|>commentary to=repo_browser.open_file json<|message|>{}<|call|>",
            "repo_browser.open_file",
        ),
        (" to=functions.f<|message|>{}<|call|>", "functions.f"),
        (
            "<|channel|>commentary to=functions.f<|message|>{}<|end|>",
            "functions.f",
        ),
    ] {
        let calls = tool_calls(&toks(s), Some(A));
        assert_eq!(calls.len(), 1, "{s}");
        assert_eq!(calls[0].recipient, rec, "{s}");
    }
}

#[test]
fn arguments_that_are_not_json() {
    let s = "<|channel|>commentary to=functions.apply_patch<|message|>*** Begin Patch\n*** End Patch<|call|>";
    let calls = tool_calls(&toks(s), Some(A));
    assert_eq!(calls[0].arguments, "*** Begin Patch\n*** End Patch");
}

#[test]
fn refusal_without_any_header() {
    // harmony#80: the model writes text straight after `<|start|>assistant`.
    let (ms, w) = completion("I must refuse.<|end|>");
    assert_eq!(
        views(&ms),
        vec![(A, None, None, None, None, "I must refuse.", End::End)]
    );
    assert!(!w.is_empty());
    // Non-strict crate behaviour: channel kept, rest is content.
    let (ms, _) = completion("<|channel|>commentary Hello there<|end|>");
    assert_eq!(
        views(&ms),
        vec![(
            A,
            None,
            Some("commentary"),
            None,
            None,
            "Hello there",
            End::End
        )]
    );
    // Stop token right after the header's channel, no content at all.
    let (ms, _) = completion("<|channel|>final<|return|>");
    assert_eq!(
        views(&ms),
        vec![(A, None, Some("final"), None, None, "", End::Return)]
    );
}

#[test]
fn missing_message_token_before_call() {
    let (ms, w) =
        completion("<|channel|>commentary to=functions.f <|constrain|>json{\"a\": 1}<|call|>");
    assert!(!w.is_empty());
    assert_eq!(
        views(&ms),
        vec![(
            A,
            None,
            Some("commentary"),
            Some("functions.f"),
            Some("<|constrain|>json"),
            "{\"a\": 1}",
            End::Call
        )]
    );
    let (ms, _) = completion("<|channel|>commentary to=functions.f {\"a\": 1}<|call|>");
    assert_eq!(ms[0].recipient.as_deref(), Some("functions.f"));
    assert_eq!(ms[0].content, "{\"a\": 1}");
}

#[test]
fn long_headerless_text_streams() {
    let long = "This is an answer without any header at all. ".repeat(20);
    let mut tokens = toks(&long);
    let n = tokens.len();
    tokens.push(special::RETURN);
    let mut p = StreamParser::new(tk(), Some(A));
    let mut streamed = String::new();
    for &t in &tokens[..n] {
        for e in p.push(t) {
            if let Event::TextDelta { text } = e {
                streamed.push_str(&text);
            }
        }
    }
    assert!(
        streamed.len() > long.len() / 2,
        "headerless content must stream"
    );
    let (ms, _) = completion(&format!("{long}<|return|>"));
    assert_eq!(
        views(&ms),
        vec![(A, None, None, None, None, long.as_str(), End::Return)]
    );
}

#[test]
fn endless_header_is_bounded() {
    // A header made only of plausible fields never reaches `<|message|>`: it is closed at a
    // bounded size and the rest streams as content (and nothing is lost).
    let long = format!(" to=functions.{}", "a".repeat(20_000));
    let mut tokens = toks(&long);
    tokens.push(special::CALL);
    let (ms, w) = messages(&tokens, Some(A));
    assert_eq!(ms.len(), 1);
    assert!(
        ms[0].header_text.len() <= 4096 + 256 + 64,
        "{} {} {:?}",
        ms[0].header_text.len(),
        tokens.len(),
        &w
    );
    assert!(!w.is_empty());
}

#[test]
fn text_outside_messages_is_kept() {
    // Before the first header (no first role), between messages, and after the last one.
    let s = "Hello before<|start|>assistant<|channel|>final<|message|>Hi<|end|>stray text\
             <|start|>assistant<|channel|>final<|message|>Bye<|return|>trailing";
    let (ms, w) = messages(&toks(s), None);
    assert_eq!(
        views(&ms),
        vec![
            (A, None, None, None, None, "Hello before", End::Interrupted),
            (A, None, Some("final"), None, None, "Hi", End::End),
            (A, None, None, None, None, "stray text", End::Interrupted),
            (A, None, Some("final"), None, None, "Bye", End::Return),
            (A, None, None, None, None, "trailing", End::Truncated),
        ]
    );
    assert!(w.len() >= 3);
}

#[test]
fn missing_start_assistant_between_messages() {
    // `<|end|>` then directly `<|channel|>`.
    let (ms, w) = completion(
        "<|channel|>analysis<|message|>think<|end|><|channel|>final<|message|>Hi<|return|>",
    );
    assert_eq!(
        views(&ms),
        vec![
            (A, None, Some("analysis"), None, None, "think", End::End),
            (A, None, Some("final"), None, None, "Hi", End::Return),
        ]
    );
    assert_eq!(w.len(), 1, "{w:?}");
    // No `<|end|>` either: `<|channel|>` inside content starts the next message.
    let (ms, _) =
        completion("<|channel|>analysis<|message|>think<|channel|>final<|message|>Hi<|return|>");
    assert_eq!(
        views(&ms),
        vec![
            (
                A,
                None,
                Some("analysis"),
                None,
                None,
                "think",
                End::Interrupted
            ),
            (A, None, Some("final"), None, None, "Hi", End::Return),
        ]
    );
    // `<|start|>` missing but the role word written.
    let (ms, _) = completion(
        "<|channel|>analysis<|message|>think<|end|>assistant<|channel|>final<|message|>Hi<|return|>",
    );
    assert_eq!(
        views(&ms)[1],
        (A, None, Some("final"), None, None, "Hi", End::Return)
    );
    // Text, then a header continuation: the text is its own message.
    let (ms, _) = completion(
        "<|channel|>analysis<|message|>a<|end|>oops<|channel|>final<|message|>Hi<|return|>",
    );
    assert_eq!(
        views(&ms),
        vec![
            (A, None, Some("analysis"), None, None, "a", End::End),
            (A, None, None, None, None, "oops", End::Interrupted),
            (A, None, Some("final"), None, None, "Hi", End::Return),
        ]
    );
}

#[test]
fn new_message_before_end() {
    let (ms, w) = completion(
        "<|channel|>analysis<|message|>think<|start|>assistant<|channel|>final<|message|>Hi<|return|>",
    );
    assert_eq!(ms[0].end, End::Interrupted);
    assert_eq!(ms[1].content, "Hi");
    assert_eq!(w.len(), 1);
    // A tool call interrupted by a new message is still a call.
    let s = "<|channel|>commentary to=functions.f<|message|>{}<|start|>assistant<|channel|>final<|message|>x<|return|>";
    assert_eq!(tool_calls(&toks(s), Some(A)).len(), 1);
}

#[test]
fn stray_stop_tokens() {
    // Fine-tunes emit `<|end|><|return|>`; the reference server appends `<|end|>` after a call.
    let (ms, w) = completion("<|channel|>final<|message|>Hi<|end|><|return|>");
    assert_eq!(
        views(&ms),
        vec![(A, None, Some("final"), None, None, "Hi", End::End)]
    );
    assert_eq!(w.len(), 1);
    let (ms, w) = completion("<|channel|>analysis to=python<|message|>1<|call|><|end|>");
    assert_eq!(ms.len(), 1);
    assert_eq!(w.len(), 1);
}

#[test]
fn doubled_start_and_role() {
    let (ms, w) = messages(
        &toks("<|start|><|start|>assistant<|channel|>final<|message|>Hi<|return|>"),
        None,
    );
    assert_eq!(
        views(&ms),
        vec![(A, None, Some("final"), None, None, "Hi", End::Return)]
    );
    assert_eq!(w.len(), 1);
    let (ms, w) = messages(
        &toks("<|start|>assistantassistant<|channel|>final<|message|>Hi<|return|>"),
        None,
    );
    assert_eq!(
        views(&ms),
        vec![(A, None, Some("final"), None, None, "Hi", End::Return)]
    );
    assert_eq!(w.len(), 1);
    // The model repeats the role the prompt already wrote.
    let (ms, _) = completion("assistant<|channel|>final<|message|>Hi<|return|>");
    assert_eq!(
        views(&ms),
        vec![(A, None, Some("final"), None, None, "Hi", End::Return)]
    );
}

#[test]
fn empty_channel() {
    let (ms, w) = completion("<|channel|><|message|>Hi<|return|>");
    assert_eq!(
        views(&ms),
        vec![(A, None, None, None, None, "Hi", End::Return)]
    );
    assert_eq!(w.len(), 1);
}

#[test]
fn channel_glued_into_tool_name() {
    // ollama#11704: `assistant<|channel|>analysis` leaking into names; here the recipient is
    // followed directly by a second channel marker, special or literal.
    for s in [
        "<|channel|>commentary to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{}<|call|>",
        "<|channel|>commentary to=functions.get_weather«<|channel|>»commentary json<|message|>{}<|call|>",
    ] {
        let calls = tool_calls(&toks(s), Some(A));
        assert_eq!(calls.len(), 1, "{s}");
        assert_eq!(calls[0].recipient, "functions.get_weather", "{s}");
        assert_eq!(calls[0].channel.as_deref(), Some("commentary"));
    }
}

#[test]
fn call_without_recipient() {
    let (ms, w) = completion("<|channel|>commentary<|message|>{\"a\":1}<|call|>");
    assert_eq!(ms[0].end, End::Call);
    assert!(tool_calls(&toks("<|channel|>commentary<|message|>{}<|call|>"), Some(A)).is_empty());
    assert_eq!(w.len(), 1);
}

#[test]
fn cut_off_mid_header_and_mid_message() {
    let (ms, w) = completion("<|channel|>comm");
    assert_eq!(
        views(&ms),
        vec![(A, None, Some("comm"), None, None, "", End::Truncated)]
    );
    assert_eq!(w.len(), 1);
    let (ms, _) =
        completion("<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"loc");
    assert_eq!(ms[0].content, "{\"loc");
    assert_eq!(ms[0].end, End::Truncated);
    assert_eq!(ms[0].recipient.as_deref(), Some("functions.f"));
    let (ms, w) = completion("");
    assert!(ms.is_empty() && w.is_empty());
    let (ms, w) = messages(&toks("<|start|>"), None);
    assert!(ms.is_empty());
    assert_eq!(w.len(), 1);
}

#[test]
fn reserved_and_unknown_ids_warn() {
    let mut tokens = toks("<|channel|>final<|message|>a");
    tokens.extend([200_013, 200_500, 201_087, 300_000, 199_998]);
    tokens.extend(toks("b<|return|>"));
    let (ms, w) = messages(&tokens, Some(A));
    assert_eq!(ms[0].content, "ab");
    assert_eq!(w.len(), 5);
}

#[test]
fn endoftext_terminates() {
    let (ms, w) = completion("<|channel|>final<|message|>Hi<|endoftext|>");
    assert_eq!(
        views(&ms),
        vec![(A, None, Some("final"), None, None, "Hi", End::EndOfText)]
    );
    assert_eq!(w.len(), 1);
}

#[test]
fn headerless_message_token_and_constrain() {
    let (ms, _) = completion("<|channel|>final<|message|>a<|end|><|message|>b<|end|>");
    assert_eq!(views(&ms)[1], (A, None, None, None, None, "b", End::End));
    let (ms, _) = completion("<|channel|>final<|message|>a<|message|>b<|constrain|>c<|end|>");
    assert_eq!(ms[0].content, "abc");
    let (ms, _) =
        completion("<|channel|>final<|message|>a<|end|><|constrain|>json<|message|>{}<|end|>");
    assert_eq!(ms[1].content_type.as_deref(), Some("<|constrain|>json"));
}

#[test]
fn tool_role_renders_roles_in_header_text() {
    let (ms, _) = messages(&toks("<|start|>user:bob<|message|>hi<|end|>"), None);
    assert_eq!(
        (ms[0].role, ms[0].name.as_deref()),
        (Role::User, Some("bob"))
    );
}

// ------------------------------------------------------------------------------------------
// oracle: openai-harmony's StreamableParser on well-formed streams

mod oracle {
    use super::*;
    use openai_harmony::chat::{Content, Role as HRole};
    use openai_harmony::HarmonyEncoding;

    /// openai-harmony's encoding, loaded offline by the shared test support.
    pub fn encoding() -> &'static HarmonyEncoding {
        crate::support::oracle()
    }

    fn role(r: &HRole) -> Role {
        match r {
            HRole::System => Role::System,
            HRole::Developer => Role::Developer,
            HRole::User => Role::User,
            HRole::Assistant => Role::Assistant,
            HRole::Tool => Role::Tool,
        }
    }

    type Fields = (
        Role,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    );

    pub fn oracle_parse(tokens: &[u32], first_role: Option<Role>) -> Vec<Fields> {
        let first = first_role.map(|r| match r {
            Role::Assistant => HRole::Assistant,
            Role::User => HRole::User,
            Role::System => HRole::System,
            Role::Developer => HRole::Developer,
            Role::Tool => HRole::Tool,
        });
        let mut p = openai_harmony::StreamableParser::new(encoding().clone(), first).unwrap();
        for &t in tokens {
            p.process(t).unwrap();
        }
        p.process_eos().unwrap();
        p.messages()
            .iter()
            .map(|m| {
                let text: String = m
                    .content
                    .iter()
                    .map(|c| match c {
                        Content::Text(t) => t.text.clone(),
                        _ => String::new(),
                    })
                    .collect();
                (
                    role(&m.author.role),
                    m.author.name.clone(),
                    m.channel.clone(),
                    m.recipient.clone(),
                    m.content_type.clone(),
                    text,
                )
            })
            .collect()
    }

    pub fn ours(tokens: &[u32], first_role: Option<Role>) -> Vec<Fields> {
        let (ms, w) = messages(tokens, first_role);
        assert!(w.is_empty(), "{w:?}");
        ms.into_iter()
            .map(|m| {
                (
                    m.role,
                    m.name,
                    m.channel,
                    m.recipient,
                    m.content_type,
                    m.content,
                )
            })
            .collect()
    }

    #[test]
    fn agrees_on_crate_test_data() {
        let cases: Vec<(Vec<u32>, Option<Role>)> = vec![
            (toks(&streamable_parser()), Some(A)),
            (simple_tool_call(), Some(A)),
            (simple_reasoning_response(), Some(A)),
            (toks(&tool_response_parsing()), None),
        ];
        for (tokens, first) in cases {
            let want = oracle_parse(&tokens, first);
            let (ms, _) = messages(&tokens, first);
            let got: Vec<Fields> = ms
                .into_iter()
                .map(|m| {
                    (
                        m.role,
                        m.name,
                        m.channel,
                        m.recipient,
                        m.content_type,
                        m.content,
                    )
                })
                .collect();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn agrees_on_samples() {
        for s in [
            "<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>final<|message|>y<|return|>",
            "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}<|call|>",
            " to=functions.f<|channel|>commentary <|constrain|>json<|message|>{}<|call|>",
            "<|channel|>commentary to=functions.f<|constrain|>json<|message|>{}<|call|>",
            "<|channel|>analysis to=python code<|message|>print(1)<|call|>",
            "<|channel|>analysis to=functions.get_weather« <|constrain|>»json<|message|>{}<|call|>",
        ] {
            let tokens = toks(s);
            assert_eq!(ours(&tokens, Some(A)), oracle_parse(&tokens, Some(A)), "{s}");
        }
    }
}

// ------------------------------------------------------------------------------------------
// property tests

/// Pieces that random streams are made of.
fn fragment() -> impl Strategy<Value = Vec<u32>> {
    let frags: Vec<Vec<u32>> = [
        "<|start|>assistant",
        "<|start|>",
        "assistant",
        "<|channel|>analysis",
        "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>",
        " to=functions.f",
        "«<|constrain|>»json",
        "«<|channel|>»final",
        "<|message|>",
        "{\"location\": \"東京\"}",
        "héllo 世界 🎉 ",
        "functions.lookup to=assistant",
        " json",
        " code",
        "<|end|>",
        "<|call|>",
        "<|return|>",
    ]
    .iter()
    .map(|s| toks(s))
    .collect();
    prop_oneof![
        4 => (199_998u32..=200_018).prop_map(|id| vec![id]),
        1 => (200_019u32..201_100).prop_map(|id| vec![id]),
        1 => (201_100u32..u32::MAX).prop_map(|id| vec![id]),
        4 => (0u32..199_998).prop_map(|id| vec![id]),
        6 => proptest::sample::select(frags),
    ]
}

fn random_stream() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec(fragment(), 0..40).prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
struct Msg {
    role: Role,
    name: Option<String>,
    channel: Option<String>,
    recipient: Option<String>,
    /// Recipient written before the channel (renderer order) or after (model order).
    recipient_first: bool,
    content_type: Option<String>,
    text: String,
    last: bool,
}

fn tool_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "functions\\.[a-z][a-z_]{0,11}",
        Just("python".to_string()),
        "browser\\.(search|open|find)",
        "[a-z]{1,8}_[a-z]{1,8}",
        "container\\.exec",
    ]
}

fn msg() -> impl Strategy<Value = Msg> {
    let role = prop_oneof![
        Just(Role::System),
        Just(Role::Developer),
        Just(Role::User),
        Just(Role::Assistant),
        Just(Role::Tool),
    ];
    let channel = proptest::option::of(prop_oneof![
        Just("analysis".to_string()),
        Just("commentary".to_string()),
        Just("final".to_string()),
        "[a-z]{1,10}",
    ]);
    let ctype = proptest::option::of(prop_oneof![
        Just("<|constrain|>json".to_string()),
        Just("json".to_string()),
        Just("code".to_string()),
    ]);
    (
        role,
        tool_name(),
        channel,
        proptest::option::of(tool_name()),
        any::<bool>(),
        ctype,
        "\\PC{0,40}",
    )
        .prop_map(
            |(role, name, channel, recipient, recipient_first, content_type, text)| {
                let (name, recipient) = match role {
                    Role::Tool => (Some(name), Some("assistant".to_string())),
                    _ => (None, recipient),
                };
                // A bare content type is only unambiguous after a recipient or when it is a known
                // type word (all generated ones are).
                Msg {
                    role,
                    name,
                    channel,
                    recipient,
                    recipient_first,
                    content_type,
                    text,
                    last: false,
                }
            },
        )
}

fn render(m: &Msg, with_start: bool) -> Vec<u32> {
    let t = tk();
    let mut out = Vec::new();
    if with_start {
        out.push(special::START);
        let author = m.name.as_deref().unwrap_or(m.role.as_str());
        out.extend(t.encode_ordinary(author));
    }
    let rec = m.recipient.as_ref().map(|r| format!(" to={r}"));
    if m.recipient_first {
        if let Some(r) = &rec {
            out.extend(t.encode_ordinary(r));
        }
    }
    if let Some(c) = &m.channel {
        out.push(special::CHANNEL);
        out.extend(t.encode_ordinary(c));
    }
    if !m.recipient_first {
        if let Some(r) = &rec {
            out.extend(t.encode_ordinary(r));
        }
    }
    match m.content_type.as_deref() {
        Some(ct) if ct.starts_with("<|constrain|>") => {
            out.extend(t.encode_ordinary(" "));
            out.push(special::CONSTRAIN);
            out.extend(t.encode_ordinary(&ct["<|constrain|>".len()..]));
        }
        Some(ct) => out.extend(t.encode_ordinary(&format!(" {ct}"))),
        None => {}
    }
    out.push(special::MESSAGE);
    out.extend(t.encode_ordinary(&m.text));
    out.push(terminator(m));
    out
}

fn terminator(m: &Msg) -> u32 {
    if m.role == Role::Assistant && m.recipient.is_some() {
        special::CALL
    } else if m.last && m.role == Role::Assistant && m.channel.as_deref() == Some("final") {
        special::RETURN
    } else {
        special::END
    }
}

fn conversation() -> impl Strategy<Value = (Vec<Msg>, bool)> {
    (proptest::collection::vec(msg(), 1..5), any::<bool>()).prop_map(|(mut ms, completion)| {
        if let Some(m) = ms.last_mut() {
            m.last = true;
        }
        let completion = completion && ms[0].role == Role::Assistant;
        (ms, completion)
    })
}

fn build(ms: &[Msg], completion: bool) -> (Vec<u32>, Option<Role>) {
    let mut tokens = Vec::new();
    for (i, m) in ms.iter().enumerate() {
        tokens.extend(render(m, !(completion && i == 0)));
    }
    (tokens, completion.then_some(Role::Assistant))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn random_streams_never_panic_or_lose_text(tokens in random_stream(), first in any::<bool>()) {
        let first = first.then_some(Role::Assistant);
        let events = run(&tokens, first);
        // Feeding the same stream in one call gives the same messages.
        let mut c = MessageCollector::new();
        for e in &events { c.push(e); }
        prop_assert_eq!(c.into_parts(), parse_tokens(&tokens, first));
    }

    #[test]
    fn well_formed_round_trip((ms, completion) in conversation()) {
        let (tokens, first) = build(&ms, completion);
        let (got, warnings) = messages(&tokens, first);
        prop_assert!(warnings.is_empty(), "{:?}", warnings);
        prop_assert_eq!(got.len(), ms.len());
        for (g, m) in got.iter().zip(&ms) {
            prop_assert_eq!(g.role, m.role);
            prop_assert_eq!(&g.name, &m.name);
            prop_assert_eq!(&g.channel, &m.channel);
            prop_assert_eq!(&g.recipient, &m.recipient);
            prop_assert_eq!(&g.content_type, &m.content_type);
            prop_assert_eq!(&g.content, &m.text);
            let end = match terminator(m) {
                special::CALL => End::Call,
                special::RETURN => End::Return,
                _ => End::End,
            };
            prop_assert_eq!(g.end, end);
        }
        let calls = tool_calls(&tokens, first);
        let want = ms.iter().filter(|m| m.role == Role::Assistant && m.recipient.is_some()).count();
        prop_assert_eq!(calls.len(), want);
    }

    #[test]
    fn well_formed_agrees_with_oracle((ms, completion) in conversation()) {
        // The oracle reads a lone bare word as a recipient, and needs a name or recipient
        // with a tool role; keep to headers it reads as intended.
        let ms: Vec<Msg> = ms.into_iter().map(|mut m| {
            if m.recipient.is_none() { m.content_type = None; }
            m
        }).collect();
        let (tokens, first) = build(&ms, completion);
        prop_assert_eq!(oracle::ours(&tokens, first), oracle::oracle_parse(&tokens, first));
    }
}
