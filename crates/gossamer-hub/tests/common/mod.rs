//! What the Hub tests share: a `tiny` random checkpoint (generated once per test binary, in
//! three shards so that parallel downloads happen) published on a fresh fake Hub.

#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use gossamer_checkpoint::synth::{self, Preset, SynthOptions};
use gossamer_hub::fake_hub::{FakeFile, FakeHub};
use gossamer_hub::{HubSettings, PullEvent, PullOptions};

pub const REPO: &str = "openai/gpt-oss-tiny";
pub const SHARD: &str = "model-00000-of-00002.safetensors";

/// The `tiny` preset (seed 1) as the Hub would hold it, plus files gossamer must not fetch.
pub fn tiny_files() -> Vec<FakeFile> {
    static FILES: OnceLock<Vec<FakeFile>> = OnceLock::new();
    FILES
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut opts = SynthOptions::new(Preset::Tiny, 1);
            opts.max_shard_bytes = 40_000_000;
            synth::write_checkpoint(&opts, dir.path(), &mut |_, _| {}).unwrap();
            let mut files: Vec<FakeFile> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let name = e.file_name().into_string().unwrap();
                    FakeFile::new(name, std::fs::read(e.path()).unwrap())
                })
                .collect();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            for (path, bytes) in [
                (
                    ".gitattributes",
                    &b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"[..],
                ),
                ("README.md", b"# gpt-oss-tiny\n"),
                ("original/config.json", b"{\"num_hidden_layers\": 4}\n"),
                ("metal/model.bin", b"not for gossamer"),
            ] {
                files.push(FakeFile::new(path, bytes.to_vec()));
            }
            files
        })
        .clone()
}

/// A fake Hub holding the tiny checkpoint as `REPO` (branch `main`); returns it and the commit.
pub fn hub_with_tiny() -> (FakeHub, String) {
    let hub = FakeHub::start();
    let commit = hub.push(REPO, "main", tiny_files());
    (hub, commit)
}

pub fn settings(hub: &FakeHub, cache: &Path) -> HubSettings {
    HubSettings {
        endpoint: hub.endpoint(),
        cache_dir: cache.to_path_buf(),
        token: None,
        offline: false,
    }
}

/// Short pauses: the tests retry on purpose.
pub fn options() -> PullOptions {
    PullOptions {
        retry_delay: Duration::from_millis(10),
        ..PullOptions::default()
    }
}

/// The files gossamer should fetch from `tiny_files()`.
pub fn wanted(path: &str) -> bool {
    !path.contains('/') && (path.ends_with(".json") || path.ends_with(".safetensors"))
}

pub fn file(path: &str) -> FakeFile {
    tiny_files().into_iter().find(|f| f.path == path).unwrap()
}

/// Records a pull's events as text, and how many files were downloading at once.
#[derive(Default)]
pub struct Recorder {
    pub lines: Mutex<Vec<String>>,
    active: Mutex<(usize, usize)>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    pub fn record(&self, e: PullEvent<'_>) {
        let line = match e {
            PullEvent::Plan {
                files,
                total,
                present,
                ..
            } => format!(
                "plan {} files {total} bytes, {present} present",
                files.len()
            ),
            PullEvent::Verifying { path, .. } => format!("verify {path}"),
            PullEvent::Downloading { path, from, .. } => {
                let mut a = self.active.lock().unwrap();
                a.0 += 1;
                a.1 = a.1.max(a.0);
                format!("download {path} from {from}")
            }
            PullEvent::Progress { .. } => return,
            PullEvent::Discarded { path, bytes } => format!("discard {path} {bytes}"),
            PullEvent::Ready { path, downloaded } => {
                if downloaded {
                    self.active.lock().unwrap().0 -= 1;
                }
                format!("ready {path}")
            }
            PullEvent::Note(text) => format!("note {text}"),
        };
        self.lines.lock().unwrap().push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn notes(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with("note "))
            .collect()
    }

    /// The most files downloading at the same time.
    pub fn most_at_once(&self) -> usize {
        self.active.lock().unwrap().1
    }
}
