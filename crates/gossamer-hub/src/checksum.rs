//! The two checksums the Hub names its files by, which are also the cache's blob names: the
//! sha256 of the content for LFS files (the weights), the git blob sha1 (`blob <len>\0` then
//! the content) for files kept in git itself (the JSON files).

use std::io::Read;
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::{io_err, Result};

/// How a blob name is checked: 64 hex digits are a sha256, 40 a git blob sha1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumKind {
    Sha256,
    GitSha1,
}

impl ChecksumKind {
    pub fn of_etag(etag: &str) -> Option<ChecksumKind> {
        if !etag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        match etag.len() {
            64 => Some(ChecksumKind::Sha256),
            40 => Some(ChecksumKind::GitSha1),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ChecksumKind::Sha256 => "sha256",
            ChecksumKind::GitSha1 => "git sha1",
        }
    }
}

/// A running checksum over a file's content.
pub enum Hasher {
    Sha256(Sha256),
    GitSha1(Sha1),
}

impl Hasher {
    /// `len` is the content's length: a git blob hash starts with it.
    pub fn new(kind: ChecksumKind, len: u64) -> Hasher {
        match kind {
            ChecksumKind::Sha256 => Hasher::Sha256(Sha256::new()),
            ChecksumKind::GitSha1 => {
                let mut h = Sha1::new();
                h.update(format!("blob {len}\0").as_bytes());
                Hasher::GitSha1(h)
            }
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::GitSha1(h) => h.update(data),
        }
    }

    /// Lower-case hex, as the Hub writes it.
    pub fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::GitSha1(h) => hex(&h.finalize()),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds `len` bytes of `reader` into `hasher` in 1 MiB reads; fewer if the reader ends first.
/// Returns the bytes read.
pub fn hash_reader(reader: &mut impl Read, hasher: &mut Hasher, len: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(done)
}

/// The checksum of a whole file, of the kind `etag` names; `None` when `etag` names no kind.
pub fn file_checksum(path: &Path, etag: &str) -> Result<Option<String>> {
    let Some(kind) = ChecksumKind::of_etag(etag) else {
        return Ok(None);
    };
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let mut hasher = Hasher::new(kind, len);
    hash_reader(&mut file, &mut hasher, len).map_err(io_err(path))?;
    Ok(Some(hasher.finish()))
}

/// The checksums of a byte string under both kinds (for the test Hub and for tests).
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn git_sha1_hex(data: &[u8]) -> String {
    let mut h = Hasher::new(ChecksumKind::GitSha1, data.len() as u64);
    h.update(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_hash_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_sha1_hex(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // `git hash-object /dev/null`
        assert_eq!(
            git_sha1_hex(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn etag_kinds() {
        assert_eq!(
            ChecksumKind::of_etag(&sha256_hex(b"x")),
            Some(ChecksumKind::Sha256)
        );
        assert_eq!(
            ChecksumKind::of_etag(&git_sha1_hex(b"x")),
            Some(ChecksumKind::GitSha1)
        );
        assert_eq!(ChecksumKind::of_etag("abc"), None);
        assert_eq!(ChecksumKind::of_etag(&"z".repeat(40)), None);
    }
}
