//! `gossamer pull`, `list`, `rm` and `--model owner/name` in every command, driven as a user
//! would, against a loopback server that speaks the Hub's protocol (`HF_ENDPOINT`) serving a
//! `tiny` random checkpoint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use gossamer_checkpoint::synth::{self, Preset, SynthOptions};
use gossamer_hub::fake_hub::{FakeFile, FakeHub};
use serde_json::Value;

const REPO: &str = "openai/gpt-oss-tiny";

fn tiny_files() -> Vec<FakeFile> {
    static FILES: OnceLock<Vec<FakeFile>> = OnceLock::new();
    FILES
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let opts = SynthOptions::new(Preset::Tiny, 3);
            synth::write_checkpoint(&opts, dir.path(), &mut |_, _| {}).unwrap();
            let mut files: Vec<FakeFile> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    FakeFile::new(
                        e.file_name().into_string().unwrap(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect();
            files.push(FakeFile::new("README.md", b"# tiny\n".to_vec()));
            files
        })
        .clone()
}

/// A user's machine: its own Hugging Face home, talking to `endpoint`.
struct Machine {
    home: tempfile::TempDir,
    endpoint: String,
}

impl Machine {
    fn new(hub: &FakeHub) -> Machine {
        Machine {
            home: tempfile::tempdir().unwrap(),
            endpoint: hub.endpoint(),
        }
    }

    fn hub_cache(&self) -> PathBuf {
        self.home.path().join("hub")
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gossamer"));
        cmd.args(["--threads", "2"]).args(args);
        for var in [
            "HF_TOKEN",
            "HF_TOKEN_PATH",
            "HF_HUB_CACHE",
            "HUGGINGFACE_HUB_CACHE",
            "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("HF_HOME", self.home.path())
            .env("HF_ENDPOINT", &self.endpoint)
            .env("NO_PROXY", "127.0.0.1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run gossamer")
    }

    /// Runs with `input` on standard input (a pipe, not a terminal).
    fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gossamer"))
            .args(["--threads", "2"])
            .args(args)
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_HUB_OFFLINE")
            .env("HF_HOME", self.home.path())
            .env("HF_ENDPOINT", &self.endpoint)
            .env("NO_PROXY", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run gossamer");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
        let out = self.run(args, env);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "gossamer {args:?} failed: {stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    }

    /// The one `error: …` line a failing command prints.
    fn error(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(args, env);
        assert_eq!(out.status.code(), Some(1), "gossamer {args:?} should fail");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line, got: {stderr}");
        lines[0]
            .strip_prefix("error: ")
            .unwrap_or_else(|| panic!("{stderr}"))
            .to_string()
    }
}

fn hub() -> (FakeHub, String) {
    let hub = FakeHub::start();
    let commit = hub.push(REPO, "main", tiny_files());
    (hub, commit)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not one JSON object ({e}): {text}"))
}

#[test]
fn pull_list_run_offline_and_remove() {
    let (hub, commit) = hub();
    let m = Machine::new(&hub);
    let short = &commit[..7];

    let (stdout, stderr) = m.ok(&["pull", REPO], &[]);
    let snapshot = m
        .hub_cache()
        .join("models--openai--gpt-oss-tiny/snapshots")
        .join(&commit);
    assert_eq!(stdout.trim_end(), snapshot.to_str().unwrap());
    assert!(
        stderr.contains(&format!(
            "{REPO}: 3 files, 100.3 MiB at commit {short} (100.3 MiB downloaded)"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("fetching model.safetensors (100.3 MiB)"),
        "{stderr}"
    );
    assert!(!snapshot.join("README.md").exists());

    let (again, stderr) = m.ok(&["pull", REPO], &[]);
    assert_eq!(again, stdout);
    assert!(stderr.contains("(all in the cache, verified)"), "{stderr}");

    let (table, _) = m.ok(&["list"], &[]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("MODEL"));
    for cell in [REPO, "100.3 MiB", &format!("main ({short})"), "ready"] {
        assert!(lines[1].contains(cell), "{cell} missing: {table}");
    }
    let (listed, _) = m.ok(&["list", "--json"], &[]);
    let listed = json(&listed);
    assert_eq!(listed["models"][0]["model"], REPO);
    assert_eq!(listed["models"][0]["ready"], true);
    assert_eq!(
        listed["models"][0]["refs"][0],
        serde_json::json!({"name": "main", "commit": commit})
    );

    // Offline, from the cache only: nothing reaches the Hub.
    hub.clear_requests();
    let offline = [
        ("HF_HUB_OFFLINE", "1"),
        ("HF_ENDPOINT", "http://127.0.0.1:9"),
    ];
    let (out, stderr) = m.ok(
        &[
            "generate",
            "--model",
            REPO,
            "--tokens",
            "1,2,3",
            "--max-tokens",
            "2",
            "--temperature",
            "0",
            "--json",
        ],
        &offline,
    );
    assert_eq!(json(&out)["tokens"].as_array().unwrap().len(), 2);
    assert!(stderr.is_empty(), "{stderr}");
    let pinned = format!("{REPO}@{commit}");
    let (out, _) = m.ok(&["inspect", "--model", &pinned, "--json"], &offline);
    assert_eq!(json(&out)["model"], snapshot.to_str().unwrap());
    let (out, stderr) = m.ok(&["pull", REPO], &offline);
    assert_eq!(out, stdout);
    assert!(stderr.contains("HF_HUB_OFFLINE is set: not checked against the Hub"));
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
    assert_eq!(
        m.error(&["inspect", "--model", "gpt-oss-120b"], &offline),
        format!(
            "openai/gpt-oss-120b is not in the cache ({}) and HF_HUB_OFFLINE is set: unset it to download",
            m.hub_cache().display()
        )
    );

    let out = m.run(&["rm", REPO], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("removed {REPO} (100.3 MiB freed)\n")
    );
    let (listed, _) = m.ok(&["list", "--json"], &[]);
    assert_eq!(json(&listed)["models"], serde_json::json!([]));
    assert_eq!(
        m.error(&["rm", REPO], &[]),
        format!("{REPO} is not in the cache ({})", m.hub_cache().display())
    );
}

#[test]
fn other_commands_pull_with_consent_only() {
    let (hub, _) = hub();
    let m = Machine::new(&hub);
    // Not a terminal and no --yes: refuse, touch nothing.
    assert_eq!(
        m.error(&["inspect", "--model", REPO, "--json"], &[]),
        format!("{REPO} is not downloaded yet: run `gossamer pull {REPO}` first, or pass --yes to download it now")
    );
    assert!(hub.requests().is_empty());
    assert!(!m.hub_cache().exists());

    // --yes pulls first; standard output stays one JSON object.
    let (out, stderr) = m.ok(&["inspect", "--model", REPO, "--json", "--yes"], &[]);
    assert_eq!(json(&out)["config"]["hidden_size"], 128);
    assert!(stderr.contains(&format!("{REPO}: 3 files")), "{stderr}");
    // Then it is cached: no question, no request.
    hub.clear_requests();
    m.ok(&["inspect", "--model", REPO, "--json"], &[]);
    assert!(hub.requests().is_empty());
}

#[test]
fn bad_references_and_hub_errors_are_one_clear_line() {
    let (hub, _) = hub();
    hub.push("openai/gated-tiny", "main", tiny_files());
    hub.gate("openai/gated-tiny", "hf_secret");
    let m = Machine::new(&hub);
    let endpoint = hub.endpoint();

    assert_eq!(
        m.error(&["pull", "openai/missing"], &[]),
        format!("repository openai/missing not found on {endpoint} (if it is private or gated, set HF_TOKEN to a token that can read it)")
    );
    assert_eq!(
        m.error(&["pull", "openai/gated-tiny"], &[]),
        format!("openai/gated-tiny is gated: accept its conditions on {endpoint}/openai/gated-tiny and set HF_TOKEN to a token of that account")
    );
    assert_eq!(
        m.error(&["pull", "openai/gated-tiny"], &[("HF_TOKEN", "hf_nope")]),
        format!("{endpoint} refused HF_TOKEN: invalid credentials")
    );
    assert_eq!(
        m.error(&["pull", &format!("{REPO}@v9")], &[]),
        format!("revision `v9` not found in {REPO}")
    );
    assert_eq!(
        m.error(&["score", "--model", "gpt-oss", "--tokens", "1"], &[]),
        "`gpt-oss` is not a model reference: not a folder, not a Hub repository (owner/name) and not an alias (gpt-oss-20b, gpt-oss-120b)"
    );
    assert_eq!(
        m.error(&["generate", "--model", "./no/such", "--tokens", "1"], &[]),
        "cannot load model ./no/such: ./no/such: file not found"
    );
    assert_eq!(
        m.error(&["pull", REPO], &[("HF_ENDPOINT", "not a url")]),
        "HF_ENDPOINT: `not a url` is not an http(s) URL"
    );

    // The login token file works as HF_TOKEN does.
    std::fs::write(m.home.path().join("token"), "hf_secret\n").unwrap();
    let (out, _) = m.ok(&["pull", "openai/gated-tiny"], &[]);
    assert!(Path::new(out.trim_end()).join("config.json").exists());
}

#[test]
fn the_first_command_pulls_gpt_oss_20b_and_chats() {
    // The README's `gossamer chat`, with the tiny checkpoint standing in for gpt-oss-20b.
    let hub = FakeHub::start();
    hub.push("openai/gpt-oss-20b", "main", tiny_files());
    let m = Machine::new(&hub);
    let chat = [
        "chat",
        "--events",
        "--temperature",
        "0",
        "--max-tokens",
        "3",
        "--date",
        "none",
    ];
    let refused = m.run_with_stdin(&chat, "Hello\n/quit\n");
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(refused.stderr).unwrap(),
        "error: openai/gpt-oss-20b is not downloaded yet: run `gossamer pull openai/gpt-oss-20b` first, or pass --yes to download it now\n"
    );

    let mut with_yes = chat.to_vec();
    with_yes.push("--yes");
    let out = m.run_with_stdin(&with_yes, "Hello\n/quit\n");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("openai/gpt-oss-20b: 3 files, 100.3 MiB"),
        "{stderr}"
    );
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(json)
        .collect();
    assert_eq!(
        events.iter().filter(|e| e["event"] == "turn_end").count(),
        1,
        "{events:?}"
    );
}
