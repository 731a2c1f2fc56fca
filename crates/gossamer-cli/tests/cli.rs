//! The real `gossamer` binary, driven as a script would drive it.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn gossamer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gossamer"))
        .args(["--threads", "2"])
        .args(args)
        .output()
        .expect("run gossamer")
}

fn ok_json(args: &[&str]) -> Value {
    let out = gossamer(args);
    assert!(
        out.status.success(),
        "gossamer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// The single error line a failing command prints.
fn err_line(args: &[&str]) -> String {
    let out = gossamer(args);
    assert!(!out.status.success(), "gossamer {args:?} should fail");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

fn make(dir: &Path, preset: &str, layers: &str) {
    let out = gossamer(&[
        "random-checkpoint",
        "--preset",
        preset,
        "--seed",
        "11",
        "--layers",
        layers,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn inspect_score_and_generate_speak_json() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().to_str().unwrap();
    make(dir.path(), "small-vocab", "2");

    let info = ok_json(&["inspect", "--model", m, "--json"]);
    assert_eq!(info["layout"], "hf");
    assert_eq!(info["tensor_count"], 2 * 19 + 3);
    assert_eq!(info["config"]["vocab_size"], 4096);
    assert!(
        info["active_params_per_token"].as_u64().unwrap() < info["total_params"].as_u64().unwrap()
    );
    assert!(info["bytes_read_per_token"].as_u64().unwrap() > 0);

    let scored = ok_json(&[
        "score", "--model", m, "--tokens", "5,6,7", "--top-k", "4", "--json",
    ]);
    let positions = scored["positions"].as_array().unwrap();
    assert_eq!(positions.len(), 3);
    for p in positions {
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 4);
        let logits: Vec<f64> = top.iter().map(|e| e["logit"].as_f64().unwrap()).collect();
        assert!(
            logits.windows(2).all(|w| w[0] >= w[1]),
            "not descending: {logits:?}"
        );
        assert!(top.iter().all(|e| e["id"].as_u64().unwrap() < 4096));
    }

    // Greedy: deterministic, and its first token is the top-1 of the last scored position
    // (in the same arithmetic: `score` defaults to exact, `generate` to fast).
    let greedy_args = [
        "--precision",
        "exact",
        "generate",
        "--model",
        m,
        "--tokens",
        "5,6,7",
        "--max-tokens",
        "6",
        "--temperature",
        "0",
        "--json",
    ];
    let greedy = ok_json(&greedy_args);
    let toks = greedy["tokens"].as_array().unwrap();
    assert_eq!(toks.len(), 6);
    assert_eq!(toks[0], positions[2]["top"][0]["id"]);
    let again = ok_json(&greedy_args);
    assert_eq!(greedy["tokens"], again["tokens"]);

    // The benchmark speaks JSON with the fields scripts compare.
    let b = ok_json(&[
        "bench", "--model", m, "-p", "8", "-n", "4", "-d", "3", "-r", "2", "--json",
    ]);
    for key in ["prefill_tok_s", "decode_tok_s", "decode_gb_s"] {
        assert!(b[key].as_f64().unwrap() > 0.0, "{key}: {b}");
    }
    assert_eq!(b["depth"], 3);
    assert_eq!(b["profile"]["prefill"], Value::Null);

    // --profile splits the time by operation; the shares add up to the whole. (Pinned
    // threads and the exact precision on the way.)
    let b = ok_json(&[
        "--pin-threads",
        "--precision",
        "exact",
        "bench",
        "--model",
        m,
        "-p",
        "8",
        "-n",
        "4",
        "-r",
        "1",
        "--profile",
        "--json",
    ]);
    for test in ["prefill", "decode"] {
        let rows = b["profile"][test].as_array().unwrap();
        let ops: Vec<&str> = rows.iter().map(|r| r["op"].as_str().unwrap()).collect();
        for op in [
            "qkv_proj",
            "attention",
            "expert_gate_up",
            "expert_down",
            "unembed",
        ] {
            assert!(ops.contains(&op), "{test} lacks {op}: {ops:?}");
        }
        let share: f64 = rows.iter().map(|r| r["percent"].as_f64().unwrap()).sum();
        assert!((share - 100.0).abs() < 0.01, "{test}: {share}");
    }
    assert_eq!(b["precision"], "exact");
    // One unembedding per decoded token.
    let decode = b["profile"]["decode"].as_array().unwrap();
    let unembed = decode.iter().find(|r| r["op"] == "unembed").unwrap();
    assert_eq!(unembed["calls_per_token"], 1.0);
    let b = ok_json(&[
        "bench", "--model", m, "-p", "8", "-n", "0", "-r", "1", "--json",
    ]);
    assert!(b["precision"].as_str().unwrap().starts_with("fast"), "{b}");
    // An unknown precision is a usage error that names the choices.
    let out = gossamer(&["--precision", "bf16", "bench", "--model", m]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exact or fast"), "{stderr}");

    // Seeded sampling repeats with the same seed.
    let sample = |seed: &str| {
        ok_json(&[
            "generate",
            "--model",
            m,
            "--tokens",
            "5,6,7",
            "--max-tokens",
            "8",
            "--temperature",
            "1.0",
            "--top-p",
            "0.9",
            "--seed",
            seed,
            "--json",
        ])["tokens"]
            .clone()
    };
    assert_eq!(sample("3"), sample("3"));
}

#[test]
fn generate_from_text_on_the_real_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), "tiny", "2");
    let out = ok_json(&[
        "generate",
        "--model",
        dir.path().to_str().unwrap(),
        "--prompt",
        "Hello, world",
        "--max-tokens",
        "4",
        "--temperature",
        "0",
        "--json",
    ]);
    assert_eq!(out["prompt_tokens"], 3); // "Hello" "," " world"
    assert_eq!(out["tokens"].as_array().unwrap().len(), 4);
}

#[test]
fn bad_input_gives_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().to_str().unwrap();
    make(dir.path(), "small-vocab", "1");

    let line = err_line(&["score", "--model", m, "--tokens", "1,99999", "--json"]);
    assert_eq!(
        line,
        "error: token id 99999 is outside the vocabulary (0..4096)"
    );

    let line = err_line(&[
        "generate",
        "--model",
        m,
        "--tokens",
        "1",
        "--temperature=-1",
        "--json",
    ]);
    assert!(line.contains("temperature"), "{line}");

    let line = err_line(&[
        "random-checkpoint",
        "--preset",
        "tiny",
        "--seed",
        "1",
        "--layout",
        "original",
        "--experts",
        "bf16",
        "--out",
        m,
    ]);
    assert_eq!(line, "error: the original layout stores MXFP4 experts only");

    // A GPU that cannot be used (no `cuda` feature, or no driver here) is one clear line.
    let line = err_line(&[
        "--device", "cuda", "score", "--model", m, "--tokens", "1,2", "--json",
    ]);
    assert!(
        line.contains("built without CUDA support") || line.contains("cannot run on cuda:0"),
        "{line}"
    );

    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let line = err_line(&["inspect", "--model", m]);
    assert_eq!(
        line,
        format!("error: cannot load model {m}: {m}/config.json: file not found")
    );
}

/// Runs `gossamer chat --events` with `input` on standard input; returns the JSON lines.
fn chat_events(model: &str, extra: &[&str], input: &str) -> Vec<Value> {
    let mut args = vec![
        "--threads",
        "2",
        "chat",
        "--model",
        model,
        "--events",
        "--temperature",
        "0",
        "--max-tokens",
        "6",
        "--date",
        "2026-11-23",
    ];
    args.extend_from_slice(extra);
    let out = with_stdin(&args, input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn decode(tokens: &Value) -> String {
    let ids: Vec<u32> = tokens
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    gossamer_harmony::Tokenizer::o200k_harmony()
        .decode_lossy(&ids)
        .unwrap()
}

#[test]
fn chat_over_a_pipe_renders_harmony_and_keeps_the_books() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), "tiny", "2");
    let m = dir.path().to_str().unwrap();
    let events = chat_events(
        m,
        &["--developer", "Answer in French."],
        "Hello there\nAnd now?\n/effort high\n/nonsense\n/reset\nAgain\n/quit\nnever read\n",
    );
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let prompts: Vec<&Value> = events.iter().filter(|e| e["event"] == "prompt").collect();
    let turns: Vec<&Value> = events.iter().filter(|e| e["event"] == "turn_end").collect();
    assert_eq!(prompts.len(), 3, "{kinds:?}");
    assert_eq!(turns.len(), 3);

    // Turn 1: the exact harmony prompt.
    let first = decode(&prompts[0]["tokens"]);
    assert_eq!(
        first,
        "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n\
         Knowledge cutoff: 2024-06\nCurrent date: 2026-11-23\n\nReasoning: medium\n\n\
         # Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>\
         <|start|>developer<|message|># Instructions\n\nAnswer in French.<|end|>\
         <|start|>user<|message|>Hello there<|end|><|start|>assistant"
    );
    // The streamed parser events of a turn: a message opens, text flows, the budget cuts it.
    let turn1: Vec<&Value> = events
        .iter()
        .skip_while(|e| e["event"] != "prompt")
        .skip(1)
        .take_while(|e| e["event"] != "turn_end")
        .collect();
    assert!(turn1
        .iter()
        .any(|e| e["data"].get("MessageStart").is_some()));
    assert!(turn1.iter().any(|e| e["data"].get("TextDelta").is_some()));
    assert_eq!(
        turn1.last().unwrap()["data"]["MessageEnd"]["end"],
        "truncated"
    );
    assert_eq!(turns[0]["stop"], "length");
    assert_eq!(turns[0]["generated"], 6);
    assert_eq!(turns[0]["conversation_messages"], 4); // system, developer, user, assistant

    // Turn 2 carries turn 1's answer in the history.
    let answer = turns[0]["messages"][0]["content"].as_str().unwrap();
    let second = decode(&prompts[1]["tokens"]);
    assert!(
        second.contains(&format!("<|start|>assistant<|message|>{answer}<|end|>")),
        "{second}"
    );
    assert!(second.ends_with("<|start|>user<|message|>And now?<|end|><|start|>assistant"));
    assert_eq!(turns[1]["conversation_messages"], 6);

    // /effort changes the system message; an unknown command is reported; /reset starts over;
    // /quit stops reading.
    assert!(kinds.contains(&"effort") && kinds.contains(&"error") && kinds.contains(&"reset"));
    let third = decode(&prompts[2]["tokens"]);
    assert!(third.contains("Reasoning: high"));
    assert!(third.ends_with("<|start|>user<|message|>Again<|end|><|start|>assistant"));
    assert!(!third.contains("Hello there"));
    assert_eq!(turns[2]["conversation_messages"], 4);
    assert_eq!(turns[2]["turn"], 3);
}

fn with_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gossamer"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn harmony_render_and_parse_round_trip() {
    let conversation = r#"{"messages": [
        {"role": "user", "content": [{"type": "text", "text": "What is 2 + 2?"}]},
        {"role": "assistant", "channel": "analysis", "content": [{"type": "text", "text": "Simple."}]},
        {"role": "assistant", "channel": "commentary", "recipient": "functions.add", "content_type": "<|constrain|>json",
         "content": [{"type": "text", "text": "{\"a\": 2, \"b\": 2}"}]}
    ]}"#;
    let out = with_stdin(&["harmony", "render", "--keep-analysis"], conversation);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<String> = rendered["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(ids[0], "200006"); // <|start|>
    assert_eq!(ids.last().unwrap(), "200012"); // a tool call ends in <|call|>

    let parsed = ok_json(&["harmony", "parse", "--tokens", &ids.join(",")]);
    let messages = parsed["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{parsed}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[1]["channel"], "analysis");
    assert_eq!(messages[2]["recipient"], "functions.add");
    assert_eq!(messages[2]["content_type"], "<|constrain|>json");
    assert_eq!(messages[2]["end"], "call");
    assert_eq!(parsed["warnings"].as_array().unwrap().len(), 0);

    // Completion mode, token list on standard input.
    let out = with_stdin(
        &["harmony", "parse", "--completion", "assistant"],
        "200005,17196,200008,19,200002",
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(parsed["messages"][0]["channel"], "final");
    assert_eq!(parsed["messages"][0]["end"], "return");

    // Bad input: one error line.
    let out = with_stdin(&["harmony", "render"], "{\"messages\": 3}");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("error: the input is not a harmony conversation"));
}

#[test]
fn ctrl_c_stops_the_answer_and_keeps_the_session() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), "tiny", "2");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gossamer"))
        .args([
            "--threads",
            "2",
            "chat",
            "--model",
            dir.path().to_str().unwrap(),
            "--events",
            "--max-tokens",
            "100000",
            "--date",
            "none",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    stdin.write_all(b"Tell me a long story\n").unwrap();
    stdin.flush().unwrap();
    // Wait until the answer is streaming, then interrupt it.
    loop {
        let line = lines.next().expect("chat output").unwrap();
        if line.contains("\"parser\"") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let turn_end: Value = loop {
        let line = lines.next().expect("a turn summary").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "turn_end" {
            break v;
        }
    };
    assert_eq!(turn_end["stop"], "cancelled");
    assert!(turn_end["generated"].as_u64().unwrap() < 100000);
    // The session goes on and still takes commands.
    stdin.write_all(b"/effort low\n/quit\n").unwrap();
    drop(stdin);
    let rest: Vec<Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(rest[0]["event"], "effort");
    assert!(child.wait().unwrap().success());
}
