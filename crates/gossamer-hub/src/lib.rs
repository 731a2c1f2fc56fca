//! Getting gpt-oss checkpoints from the Hugging Face Hub: model references (`openai/gpt-oss-20b`,
//! `gpt-oss-20b@<revision>`, or a folder), the Hub's download protocol, and the Hugging Face
//! cache layout that Python's `huggingface_hub` (and so `transformers`, `huggingface-cli`)
//! shares, so a model downloaded by either tool is found by the other.
//!
//! Why not the `hf-hub` crate: its 1.x line has no resume (a cut leaves a `.incomplete` that
//! the next run starts over), maps 404s by context rather than by the Hub's `X-Error-Code`, and
//! brings an async stack plus `hf-xet`; its 0.4 line is superseded, appends to a partial file
//! even when the server ignored `Range`, and checks no checksum. What gossamer needs on top
//! (resume, sha256 / git-sha1 verification, clear repo-level errors, parallel files, a
//! disk-space check, offline lookups, `list` / `rm`) is most of a client, so the two routes are
//! spoken here over `ureq` (see [`api`]).

mod api;
pub mod cache;
pub mod checksum;
mod error;
#[cfg(feature = "fake-hub")]
pub mod fake_hub;
mod pull;
pub mod reference;
mod settings;

pub use cache::{missing_files, CachedRepo, CachedSnapshot, HubCache, Lookup, Removed};
pub use error::{human_bytes, HubError, Result};
pub use pull::{pull, PullEvent, PullOptions, PullProgress, Pulled, Quiet, RemoteFile};
pub use reference::{is_commit_hash, ModelRef, RepoRef, ALIASES, DEFAULT_REVISION};
pub use settings::{HubSettings, DEFAULT_ENDPOINT};
