//! What `--model` may name: a folder on disk, a Hub repository (`openai/gpt-oss-20b`, with an
//! optional `@revision`) or a short alias (`gpt-oss-20b`, `gpt-oss-120b`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{HubError, Result};

/// The branch a reference without `@revision` means, as on the Hub.
pub const DEFAULT_REVISION: &str = "main";

/// Short names for the official repositories.
pub const ALIASES: &[(&str, &str)] = &[
    ("gpt-oss-20b", "openai/gpt-oss-20b"),
    ("gpt-oss-120b", "openai/gpt-oss-120b"),
];

/// A Hub model repository at a revision (a branch, a tag or a commit hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    /// `owner/name`.
    pub repo_id: String,
    /// `None` means [`DEFAULT_REVISION`].
    pub revision: Option<String>,
}

impl RepoRef {
    /// `owner/name`, `owner/name@revision`, or an alias with an optional `@revision`.
    pub fn parse(input: &str) -> Result<RepoRef> {
        let bad = |reason: String| HubError::BadReference {
            input: input.to_string(),
            reason,
        };
        let (id, revision) = match input.split_once('@') {
            Some((id, rev)) => {
                check_revision(rev).map_err(bad)?;
                (id, Some(rev.to_string()))
            }
            None => (input, None),
        };
        let repo_id = match ALIASES.iter().find(|(alias, _)| *alias == id) {
            Some((_, repo)) => repo.to_string(),
            None if !id.contains('/') => {
                let aliases: Vec<&str> = ALIASES.iter().map(|(a, _)| *a).collect();
                return Err(bad(format!(
                    "not a folder, not a Hub repository (owner/name) and not an alias ({})",
                    aliases.join(", ")
                )));
            }
            None => {
                check_repo_id(id).map_err(bad)?;
                id.to_string()
            }
        };
        Ok(RepoRef { repo_id, revision })
    }

    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or(DEFAULT_REVISION)
    }

    /// The repository's name without its owner (`gpt-oss-20b`): what a server calls the model.
    pub fn name(&self) -> &str {
        self.repo_id
            .rsplit_once('/')
            .map_or(self.repo_id.as_str(), |(_, n)| n)
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.revision {
            Some(rev) => write!(f, "{}@{rev}", self.repo_id),
            None => f.write_str(&self.repo_id),
        }
    }
}

/// A `--model` argument, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    Folder(PathBuf),
    Repo(RepoRef),
}

impl ModelRef {
    /// An existing path is a folder (a folder called `openai/gpt-oss-20b` wins over the
    /// repository, as in `transformers`); so is anything spelled like a path (`./x`, `/x`,
    /// `~/x`, `a/b/c`), which then fails to load with the path in the message. Everything else
    /// must be a repository or an alias.
    pub fn parse(input: &str) -> Result<ModelRef> {
        if input.trim().is_empty() {
            return Err(HubError::BadReference {
                input: input.to_string(),
                reason: "empty".into(),
            });
        }
        if Path::new(input).exists() || looks_like_path(input) {
            return Ok(ModelRef::Folder(PathBuf::from(input)));
        }
        RepoRef::parse(input).map(ModelRef::Repo)
    }
}

fn looks_like_path(s: &str) -> bool {
    let id = s.split_once('@').map_or(s, |(id, _)| id);
    s.starts_with(['/', '.', '~'])
        || s.contains('\\')
        || id.ends_with('/')
        || id.matches('/').count() > 1
}

/// The Hub's rule for `owner/name`: letters, digits, `-`, `_`, `.`; at most 96 characters a
/// part; no `--` or `..`; no `-` or `.` at either end.
fn check_repo_id(id: &str) -> std::result::Result<(), String> {
    let Some((owner, name)) = id.split_once('/') else {
        return Err("a repository is named owner/name".into());
    };
    for part in [owner, name] {
        let ok = !part.is_empty()
            && part.len() <= 96
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !part.contains("--")
            && !part.contains("..")
            && !part.starts_with(['-', '.'])
            && !part.ends_with(['-', '.']);
        if !ok {
            return Err(format!(
                "`{part}` is not a valid repository part (letters, digits, -, _ and . only, \
                 at most 96, no -- or .., no - or . at either end)"
            ));
        }
    }
    Ok(())
}

/// Revisions become file names under `refs/` (branches may hold `/`), so nothing may climb out.
fn check_revision(rev: &str) -> std::result::Result<(), String> {
    if rev.is_empty() {
        return Err("empty revision after @".into());
    }
    if rev
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(format!(
            "revision `{rev}` holds a space, a control character or \\"
        ));
    }
    if rev
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(format!("revision `{rev}` has an empty, . or .. component"));
    }
    Ok(())
}

/// A full commit hash, which needs no lookup in `refs/`.
pub fn is_commit_hash(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(s: &str) -> RepoRef {
        match ModelRef::parse(s).unwrap() {
            ModelRef::Repo(r) => r,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn aliases_repos_and_revisions() {
        let r = repo("gpt-oss-20b");
        assert_eq!(r.repo_id, "openai/gpt-oss-20b");
        assert_eq!(r.revision(), "main");
        assert_eq!(r.name(), "gpt-oss-20b");
        let r = repo("gpt-oss-120b@v1");
        assert_eq!(
            (r.repo_id.as_str(), r.revision()),
            ("openai/gpt-oss-120b", "v1")
        );
        let r = repo("someone/my-fine.tune_2@refs/pr/3");
        assert_eq!(r.repo_id, "someone/my-fine.tune_2");
        assert_eq!(r.revision.as_deref(), Some("refs/pr/3"));
        assert_eq!(r.to_string(), "someone/my-fine.tune_2@refs/pr/3");
    }

    #[test]
    fn paths_are_folders() {
        for p in ["./x", "/abs/path", "~/models/x", "a/b/c", "dir/", "..", "."] {
            assert!(
                matches!(ModelRef::parse(p).unwrap(), ModelRef::Folder(_)),
                "{p}"
            );
        }
        let dir = std::env::temp_dir();
        let existing = dir.to_str().unwrap();
        assert_eq!(
            ModelRef::parse(existing).unwrap(),
            ModelRef::Folder(dir.clone())
        );
    }

    #[test]
    fn bad_references_say_why() {
        for (input, needle) in [
            ("gpt-oss", "not an alias"),
            ("owner/na me", "not a valid repository part"),
            ("owner/-x", "not a valid repository part"),
            ("owner/a--b", "not a valid repository part"),
            ("owner/x@", "empty revision"),
            ("owner/x@../../etc", ".. component"),
            ("owner/x@a b", "space"),
            ("", "empty"),
        ] {
            let e = ModelRef::parse(input).unwrap_err().to_string();
            assert!(e.contains(needle), "{input}: {e}");
        }
    }

    #[test]
    fn commit_hashes() {
        assert!(is_commit_hash("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_hash("0123456789ABCDEF0123456789abcdef01234567"));
        assert!(!is_commit_hash("main"));
    }
}
