//! The cache `gossamer pull` writes is the one Python's `huggingface_hub` reads and writes:
//!
//! 1. gossamer pulls the tiny checkpoint from the fake Hub; `huggingface_hub`, offline
//!    (`HF_HUB_OFFLINE=1`, the endpoint dead), finds the snapshot and each file, and its cache
//!    scanner reports the repository without a warning;
//! 2. `huggingface_hub` downloads the same files from the fake Hub into another cache;
//!    gossamer finds them offline, and a pull online fetches nothing and verifies them all;
//! 3. the two caches hold the same blobs, refs and snapshot links, byte for byte.
//!
//! `huggingface_hub` comes from PyPI: `.ci/run` installs `tests/e2e/requirements.txt` into
//! `.venv-e2e/`; `GOSSAMER_E2E_PYTHON` names another interpreter. Without it this test fails
//! and says how to install it.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use gossamer_hub::{pull, HubCache, HubSettings, Lookup, Quiet, RepoRef};
use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/gossamer-hub sits two levels below the root")
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

/// Runs `script` with `huggingface_hub` in a clean environment; returns its JSON output.
fn run_python(script: &str, args: &[&str], env: &[(&str, &Path)], hf_home: &Path) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg("-c").arg(script).args(args);
    for var in [
        "HF_TOKEN",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("HF_HOME", hf_home)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("NO_PROXY", "127.0.0.1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run python");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

const READ_OFFLINE: &str = r#"
import json, sys
from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download
repo, commit, shard = sys.argv[1:4]
report = {
    "snapshot": snapshot_download(repo, local_files_only=True),
    "pinned": snapshot_download(repo, revision=commit, local_files_only=True),
    "config": hf_hub_download(repo, "config.json", local_files_only=True),
    "shard": hf_hub_download(repo, shard, local_files_only=True),
}
scan = scan_cache_dir()
report["warnings"] = [str(w) for w in scan.warnings]
report["repos"] = [
    {"repo_id": r.repo_id, "size": r.size_on_disk, "files": r.nb_files,
     "refs": sorted(ref for rev in r.revisions for ref in rev.refs)}
    for r in scan.repos
]
print(json.dumps(report))
"#;

const DOWNLOAD: &str = r#"
import json, sys
from huggingface_hub import snapshot_download
path = snapshot_download(sys.argv[1], allow_patterns=["*.json", "*.safetensors"], ignore_patterns=["*/*"])
print(json.dumps({"snapshot": path}))
"#;

/// `blobs/`, `refs/` and `snapshots/` of a cached repository: file names with their content
/// (blobs, refs) or link targets (snapshots).
fn layout(repo_dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![repo_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path
                .strip_prefix(repo_dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let top = rel.split('/').next().unwrap();
            if !matches!(top, "blobs" | "refs" | "snapshots") {
                continue; // huggingface_hub also keeps a tree listing (`trees/`)
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(rel, format!("-> {}", target.display()));
            } else {
                let bytes = fs::read(&path).unwrap();
                let text = if top == "refs" {
                    String::from_utf8(bytes).unwrap()
                } else {
                    gossamer_hub::checksum::sha256_hex(&bytes)
                };
                out.insert(rel, text);
            }
        }
    }
    out
}

#[test]
fn huggingface_hub_and_gossamer_share_one_cache() {
    let python = python();
    let probe = Command::new(&python)
        .args(["-c", "import huggingface_hub"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        probe.success(),
        "the `huggingface_hub` Python package is missing for {}; run `python3 -m venv .venv-e2e && \
         .venv-e2e/bin/pip install -r tests/e2e/requirements.txt` (what .ci/run does), or set \
         GOSSAMER_E2E_PYTHON",
        python.display()
    );

    let (hub, commit) = hub_with_tiny();
    let tmp = tempfile::tempdir().unwrap();
    let hf_home = tmp.path().join("hf-home");
    let ours = tmp.path().join("gossamer-cache");
    let theirs = tmp.path().join("python-cache");
    let r = RepoRef::parse(REPO).unwrap();

    // 1. gossamer pulls; huggingface_hub reads offline.
    let pulled = pull(&settings(&hub, &ours), &r, &options(), &Quiet).unwrap();
    let dead = Path::new("http://127.0.0.1:9");
    let report = run_python(
        READ_OFFLINE,
        &[REPO, &commit, SHARD],
        &[
            ("HF_HUB_CACHE", &ours),
            ("HF_HUB_OFFLINE", Path::new("1")),
            ("HF_ENDPOINT", dead),
        ],
        &hf_home,
    );
    let snapshot = pulled.dir.to_string_lossy().into_owned();
    assert_eq!(report["snapshot"], snapshot.as_str());
    assert_eq!(report["pinned"], snapshot.as_str());
    assert_eq!(
        report["config"],
        pulled.dir.join("config.json").to_string_lossy().as_ref()
    );
    assert_eq!(
        report["shard"],
        pulled.dir.join(SHARD).to_string_lossy().as_ref()
    );
    assert_eq!(report["warnings"], serde_json::json!([]), "{report}");
    let blob_bytes: u64 = tiny_files()
        .iter()
        .filter(|f| wanted(&f.path))
        .map(|f| f.bytes.len() as u64)
        .sum();
    assert_eq!(
        report["repos"],
        serde_json::json!([{"repo_id": REPO, "size": blob_bytes, "files": 6, "refs": ["main"]}])
    );

    // 2. huggingface_hub downloads from the fake Hub; gossamer finds it.
    let report = run_python(
        DOWNLOAD,
        &[REPO],
        &[
            ("HF_HUB_CACHE", &theirs),
            ("HF_ENDPOINT", Path::new(&hub.endpoint())),
        ],
        &hf_home,
    );
    let python_snapshot = HubCache::new(&theirs).snapshot_dir(REPO, &commit);
    assert_eq!(
        report["snapshot"],
        python_snapshot.to_string_lossy().as_ref()
    );
    assert_eq!(
        HubCache::new(&theirs).lookup(&r),
        Lookup::Ready {
            commit: commit.clone(),
            dir: python_snapshot.clone()
        }
    );
    let offline = HubSettings {
        offline: true,
        endpoint: "http://127.0.0.1:9".into(),
        ..settings(&hub, &theirs)
    };
    assert_eq!(
        pull(&offline, &r, &options(), &Quiet).unwrap().dir,
        python_snapshot
    );
    hub.clear_requests();
    let online = pull(&settings(&hub, &theirs), &r, &options(), &Quiet).unwrap();
    assert_eq!(online.downloaded, 0, "every file was already there");
    assert!(hub.requests().iter().all(|r| r.file.is_none()));

    // 3. Byte for byte the same layout.
    let repo_dir = |cache: &Path| HubCache::new(cache).repo_dir(REPO);
    let (a, b) = (layout(&repo_dir(&ours)), layout(&repo_dir(&theirs)));
    assert_eq!(a.len(), 6 + 1 + 6, "{a:#?}");
    assert_eq!(a, b);
}
