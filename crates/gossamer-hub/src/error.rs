//! Errors of the Hub client. Each one is a single line that says what went wrong and what to do
//! about it: a user whose download failed must know whether to retry, log in or free space.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("`{input}` is not a model reference: {reason}")]
    BadReference { input: String, reason: String },

    #[error("{var}: {reason}")]
    BadSetting { var: &'static str, reason: String },

    #[error("repository {repo} not found on {endpoint} (if it is private or gated, set HF_TOKEN to a token that can read it)")]
    RepoNotFound { repo: String, endpoint: String },

    #[error("{repo} is gated: accept its conditions on {page} and set HF_TOKEN to a token of that account")]
    GatedRepo { repo: String, page: String },

    #[error("revision `{revision}` not found in {repo}")]
    RevisionNotFound { repo: String, revision: String },

    #[error("{file} not found in {repo} at {revision}")]
    EntryNotFound {
        repo: String,
        revision: String,
        file: String,
    },

    #[error("{endpoint} refused HF_TOKEN: invalid credentials")]
    BadToken { endpoint: String },

    #[error("{url}: HTTP {status}{message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },

    #[error(
        "cannot reach {endpoint}: {detail} (with HF_HUB_OFFLINE=1 gossamer uses the cache only)"
    )]
    Unreachable { endpoint: String, detail: String },

    #[error("{url}: unexpected answer: {detail}")]
    Protocol { url: String, detail: String },

    #[error("{file}: download failed {attempts} times in a row ({detail}); run the same command again to resume where it stopped")]
    Interrupted {
        file: String,
        attempts: u32,
        detail: String,
    },

    #[error("{file}: downloaded twice and both copies fail the check (expected {kind} {expected}, got {actual})")]
    Checksum {
        file: String,
        kind: &'static str,
        expected: String,
        actual: String,
    },

    #[error("not enough disk space in {dir}: {needed} to download, {available} free")]
    DiskFull {
        dir: PathBuf,
        needed: String,
        available: String,
    },

    #[error("{repo} at {revision} has no checkpoint gossamer can load (it needs config.json with *.safetensors at the top level{hint})")]
    NotAModel {
        repo: String,
        revision: String,
        hint: &'static str,
    },

    #[error(
        "{repo} is not in the cache ({cache}) and HF_HUB_OFFLINE is set: unset it to download"
    )]
    OfflineNotCached { repo: String, cache: PathBuf },

    #[error("{repo} is not in the cache ({cache})")]
    NotCached { repo: String, cache: PathBuf },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Another download of the same pull failed first; this one stopped where it was.
    #[error("stopped")]
    Stopped,
}

pub type Result<T, E = HubError> = std::result::Result<T, E>;

/// Wraps an I/O error with the path it is about.
pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> HubError {
    let path = path.into();
    move |source| HubError::Io { path, source }
}

/// `12.8 GiB`, `105.2 MiB`, `512 B`: sizes in the binary units `gossamer inspect` uses.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(13_761_264_768), "12.8 GiB");
    }
}
