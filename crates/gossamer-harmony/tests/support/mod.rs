//! Test helpers: the `openai-harmony` oracle (loaded offline), conversion between our
//! conversation types and the oracle's through serde JSON, and the oracle's golden files.
#![allow(dead_code)]

pub mod strategies;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use openai_harmony::chat as theirs;
use openai_harmony::{HarmonyEncoding, HarmonyEncodingName};
use sha2::{Digest, Sha256};

/// sha256 of `o200k_base.tiktoken`, the hash openai-harmony checks when it loads the file
/// from `TIKTOKEN_ENCODINGS_BASE`.
const O200K_BASE_SHA256: &str = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d";
/// Mergeable ranks of o200k_base (the specials start at 199998).
const O200K_BASE_RANKS: u32 = 199_998;

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rebuilds `o200k_base.tiktoken` (`base64(token bytes) rank` per line) from the vocabulary
/// embedded in tiktoken-rs, so the oracle never needs the network.
fn build_o200k_base_file() -> Vec<u8> {
    let bpe = tiktoken_rs::o200k_base_singleton();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::with_capacity(3_700_000);
    for rank in 0..O200K_BASE_RANKS {
        let bytes = bpe
            .decode_bytes(&[rank])
            .unwrap_or_else(|_| panic!("tiktoken-rs o200k_base lacks rank {rank}"));
        out.extend_from_slice(b64.encode(bytes).as_bytes());
        out.extend_from_slice(format!(" {rank}\n").as_bytes());
    }
    out
}

/// A folder holding a hash-verified `o200k_base.tiktoken`, written once per target dir.
fn vocab_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openai-harmony-vocab");
        let file = dir.join("o200k_base.tiktoken");
        let cached_ok = std::fs::read(&file).is_ok_and(|b| sha256_hex(&b) == O200K_BASE_SHA256);
        if !cached_ok {
            let bytes = build_o200k_base_file();
            assert_eq!(
                sha256_hex(&bytes),
                O200K_BASE_SHA256,
                "the o200k_base file rebuilt from tiktoken-rs does not have the hash openai-harmony expects"
            );
            std::fs::create_dir_all(&dir).expect("create vocab dir");
            // Write under a unique name, then rename: concurrent test binaries never see a
            // half-written file.
            let tmp = dir.join(format!("o200k_base.tiktoken.{}", std::process::id()));
            std::fs::write(&tmp, &bytes).expect("write vocab file");
            std::fs::rename(&tmp, &file).expect("move vocab file into place");
        }
        dir
    })
}

/// The reference renderer (openai-harmony's HarmonyGptOss encoding), loaded once.
pub fn oracle() -> &'static HarmonyEncoding {
    static ORACLE: OnceLock<HarmonyEncoding> = OnceLock::new();
    ORACLE.get_or_init(|| {
        let dir = vocab_dir();
        // Set before the first load, from inside the OnceLock, so no oracle call can race it.
        std::env::set_var("TIKTOKEN_ENCODINGS_BASE", dir);
        openai_harmony::load_harmony_encoding(HarmonyEncodingName::HarmonyGptOss)
            .expect("load openai-harmony's encoding from the rebuilt vocabulary")
    })
}

/// What the oracle renders, with its config passed explicitly (`Some`): without one,
/// openai-harmony's Rust API never drops analysis.
pub enum OracleCall {
    Conversation,
    Completion(theirs::Role),
    Training,
}

pub fn oracle_render(
    conversation: &theirs::Conversation,
    call: OracleCall,
    auto_drop_analysis: bool,
) -> Result<Vec<u32>, String> {
    let enc = oracle();
    // `RenderConversationConfig` sits in a private module and cannot be named here; a first
    // (empty) call fixes the type of `config` so that its public field can be set.
    let mut config = Default::default();
    let _ = enc.render_conversation(std::iter::empty::<&theirs::Message>(), Some(&config));
    config.auto_drop_analysis = auto_drop_analysis;
    let result = match call {
        OracleCall::Conversation => enc.render_conversation(conversation, Some(&config)),
        OracleCall::Completion(role) => {
            enc.render_conversation_for_completion(conversation, role, Some(&config))
        }
        OracleCall::Training => enc.render_conversation_for_training(conversation, Some(&config)),
    };
    result.map_err(|e| format!("{e:#}"))
}

/// Our conversation as the oracle's, through JSON (which also exercises the serde shape).
pub fn to_theirs(conv: &gossamer_harmony::Conversation) -> theirs::Conversation {
    let json = serde_json::to_string(conv).expect("serialize ours");
    serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("openai-harmony cannot parse our JSON ({e}): {json}"))
}

/// The oracle's conversation as ours, through JSON.
pub fn to_ours(conv: &theirs::Conversation) -> gossamer_harmony::Conversation {
    let json = serde_json::to_string(conv).expect("serialize theirs");
    serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("we cannot parse openai-harmony's JSON ({e}): {json}"))
}

pub fn to_theirs_role(role: gossamer_harmony::Role) -> theirs::Role {
    serde_json::from_value(serde_json::to_value(role).expect("role")).expect("role")
}

/// openai-harmony's crate folder (for its `test-data/`): `$CARGO_HOME/registry/src/*/`, or
/// `$HOME/.cargo/...` when `CARGO_HOME` is unset.
pub fn harmony_crate_dir() -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(cargo_home) = cargo_home else {
        panic!("neither CARGO_HOME nor HOME is set: cannot find openai-harmony's test data");
    };
    let registry = cargo_home.join("registry").join("src");
    let found = std::fs::read_dir(&registry).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("openai-harmony-0.0.8"))
            .find(|p| p.join("test-data").is_dir())
    });
    found.unwrap_or_else(|| {
        panic!(
            "openai-harmony-0.0.8 sources (with test-data/) not found under {}; \
             run `cargo fetch` with network access once, or set CARGO_HOME",
            registry.display()
        )
    })
}

/// A golden file as openai-harmony's tests read it: CRLF normalised, trailing space trimmed.
pub fn golden_text(name: &str) -> String {
    let path = harmony_crate_dir().join("test-data").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .replace("\r\n", "\n")
        .trim_end()
        .to_string()
}

/// A golden text file tokenised with special-token strings allowed (how the reference
/// tests turn them into expected tokens).
pub fn golden_text_tokens(name: &str) -> Vec<u32> {
    tiktoken_rs::o200k_harmony_singleton().encode_with_special_tokens(&golden_text(name))
}

/// A golden file of whitespace-separated token ids.
pub fn golden_id_tokens(name: &str) -> Vec<u32> {
    golden_text(name)
        .split_whitespace()
        .map(|t| {
            t.parse()
                .unwrap_or_else(|_| panic!("{name}: bad token id {t}"))
        })
        .collect()
}

/// Text of tokens, for readable assertion failures.
pub fn decode(tokens: &[u32]) -> String {
    gossamer_harmony::Tokenizer::o200k_harmony()
        .decode_lossy(tokens)
        .unwrap_or_else(|e| format!("<{e}>"))
}

/// Asserts token equality, showing both decodings on failure.
#[track_caller]
pub fn assert_tokens_eq(what: &str, expected: &[u32], actual: &[u32]) {
    if expected != actual {
        let at = expected
            .iter()
            .zip(actual)
            .position(|(a, b)| a != b)
            .unwrap_or(expected.len().min(actual.len()));
        panic!(
            "{what}: tokens differ at index {at} (expected {} tokens, got {})\n\
             --- expected ---\n{}\n--- actual ---\n{}",
            expected.len(),
            actual.len(),
            decode(expected),
            decode(actual)
        );
    }
}
