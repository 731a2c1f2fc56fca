//! End-to-end: the real `gossamer serve` binary on loopback, driven by the official `openai`
//! Python client (`tests/e2e/test_openai_client.py`) over a `tiny` random checkpoint.
//!
//! The client comes from PyPI: `.ci/run` installs it into `.venv-e2e/`. Another interpreter
//! can be named with `GOSSAMER_E2E_PYTHON`. Without the client this test fails and says how
//! to install it: the server's API is only proven by a real client.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/gossamer-cli sits two levels below the root")
        .to_path_buf()
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GOSSAMER_E2E_PYTHON") {
        return p.into();
    }
    let venv = workspace_root().join(".venv-e2e/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

#[test]
fn the_openai_python_client_drives_the_server() {
    let python = python();
    let probe = Command::new(&python)
        .args(["-c", "import openai"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        probe.success(),
        "the `openai` Python package is missing for {}; run `python3 -m venv .venv-e2e && \
         .venv-e2e/bin/pip install -r tests/e2e/requirements.txt` (what .ci/run does), or \
         set GOSSAMER_E2E_PYTHON",
        python.display()
    );

    let bin = env!("CARGO_BIN_EXE_gossamer");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    let made = Command::new(bin)
        .args([
            "random-checkpoint",
            "--preset",
            "tiny",
            "--seed",
            "5",
            "--out",
        ])
        .arg(&model)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");

    let script = workspace_root().join("tests/e2e/test_openai_client.py");
    let run = Command::new(&python)
        .arg(&script)
        .env("GOSSAMER_BIN", bin)
        .env("GOSSAMER_MODEL", &model)
        .env("GOSSAMER_TMP", dir.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&run.stderr);
    println!("{report}");
    assert!(run.status.success(), "end-to-end tests failed:\n{report}");
}
