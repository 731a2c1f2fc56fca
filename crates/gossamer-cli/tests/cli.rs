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

    // Greedy: deterministic, and its first token is the top-1 of the last scored position.
    let greedy = ok_json(&[
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
    ]);
    let toks = greedy["tokens"].as_array().unwrap();
    assert_eq!(toks.len(), 6);
    assert_eq!(toks[0], positions[2]["top"][0]["id"]);
    let again = ok_json(&[
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
    ]);
    assert_eq!(greedy["tokens"], again["tokens"]);

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

    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let line = err_line(&["inspect", "--model", m]);
    assert_eq!(
        line,
        format!("error: cannot load model {m}: {m}/config.json: file not found")
    );
}
