//! The Hugging Face cache layout, shared with Python's `huggingface_hub`:
//!
//! ```text
//! <cache>/models--openai--gpt-oss-20b/
//!   blobs/<etag>                       the files' bytes, named by checksum (sha256 or git sha1)
//!   blobs/<etag>.incomplete            a download in progress (resumed from its length)
//!   refs/main                          the commit a branch or tag pointed at, no newline
//!   snapshots/<commit>/config.json  -> ../../blobs/<etag>   (relative symlinks)
//! <cache>/.locks/models--openai--gpt-oss-20b/<etag>.lock     one writer per blob
//! ```
//!
//! A snapshot folder is an ordinary model folder, so the checkpoint loader reads it as is.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{io_err, HubError, Result};
use crate::reference::{is_commit_hash, RepoRef};

const INCOMPLETE: &str = ".incomplete";

#[derive(Debug, Clone)]
pub struct HubCache {
    root: PathBuf,
}

/// What the cache holds for a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Every file the checkpoint needs is there.
    Ready { commit: String, dir: PathBuf },
    /// The snapshot exists but lacks these files (an interrupted pull).
    Partial {
        commit: String,
        dir: PathBuf,
        missing: Vec<String>,
    },
    /// Unknown revision, or never downloaded.
    Absent,
}

/// One repository in the cache, for `gossamer list`.
#[derive(Debug, Clone, Serialize)]
pub struct CachedRepo {
    pub repo_id: String,
    pub dir: PathBuf,
    /// Bytes of complete blobs (shared blobs counted through their links).
    pub size: u64,
    /// Bytes of downloads in progress.
    pub partial_bytes: u64,
    /// `(name, commit)` of every ref, sorted by name.
    pub refs: Vec<(String, String)>,
    pub snapshots: Vec<CachedSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CachedSnapshot {
    pub commit: String,
    pub dir: PathBuf,
    pub files: usize,
    /// Every file the checkpoint needs is there.
    pub ready: bool,
}

/// What `remove` deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Bytes freed (blobs owned by the repository, not shared blobs it linked to).
    pub freed: u64,
    /// The whole repository folder went (no snapshot left).
    pub repo_removed: bool,
}

impl HubCache {
    pub fn new(root: impl Into<PathBuf>) -> HubCache {
        HubCache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models--owner--name`, as `huggingface_hub.file_download.repo_folder_name` spells it.
    pub fn repo_dir(&self, repo_id: &str) -> PathBuf {
        self.root
            .join(format!("models--{}", repo_id.replace('/', "--")))
    }

    pub fn blob_path(&self, repo_id: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo_id).join("blobs").join(etag)
    }

    pub fn incomplete_path(&self, repo_id: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo_id)
            .join("blobs")
            .join(format!("{etag}{INCOMPLETE}"))
    }

    pub fn snapshot_dir(&self, repo_id: &str, commit: &str) -> PathBuf {
        self.repo_dir(repo_id).join("snapshots").join(commit)
    }

    pub fn lock_path(&self, repo_id: &str, etag: &str) -> PathBuf {
        self.root
            .join(".locks")
            .join(format!("models--{}", repo_id.replace('/', "--")))
            .join(format!("{etag}.lock"))
    }

    fn ref_path(&self, repo_id: &str, revision: &str) -> PathBuf {
        self.repo_dir(repo_id).join("refs").join(revision)
    }

    /// The commit a branch or tag pointed at when it was last pulled.
    pub fn read_ref(&self, repo_id: &str, revision: &str) -> Option<String> {
        let text = fs::read_to_string(self.ref_path(repo_id, revision)).ok()?;
        let commit = text.trim();
        is_commit_hash(commit).then(|| commit.to_string())
    }

    /// Records `revision -> commit`, atomically (a reader never sees a half-written ref), and
    /// only when it changed (the cache may be read-only for an up-to-date ref).
    pub fn write_ref(&self, repo_id: &str, revision: &str, commit: &str) -> Result<()> {
        if revision == commit || self.read_ref(repo_id, revision).as_deref() == Some(commit) {
            return Ok(());
        }
        let path = self.ref_path(repo_id, revision);
        let parent = path.parent().expect("refs/<revision> has a parent");
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        let tmp = path.with_file_name(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("ref"),
            std::process::id()
        ));
        fs::write(&tmp, commit).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// The commit a reference means offline: itself if it is a hash, else its ref.
    pub fn commit_of(&self, r: &RepoRef) -> Option<String> {
        let rev = r.revision();
        if is_commit_hash(rev) {
            Some(rev.to_string())
        } else {
            self.read_ref(&r.repo_id, rev)
        }
    }

    /// Looks `r` up without the network.
    pub fn lookup(&self, r: &RepoRef) -> Lookup {
        let Some(commit) = self.commit_of(r) else {
            return Lookup::Absent;
        };
        let dir = self.snapshot_dir(&r.repo_id, &commit);
        if !dir.is_dir() {
            return Lookup::Absent;
        }
        let missing = missing_files(&dir);
        if missing.is_empty() {
            Lookup::Ready { commit, dir }
        } else {
            Lookup::Partial {
                commit,
                dir,
                missing,
            }
        }
    }

    /// Points `snapshots/<commit>/<path>` at `blobs/<etag>` with a relative symlink, as
    /// `huggingface_hub` does (the cache keeps working when moved).
    pub fn link_file(&self, repo_id: &str, commit: &str, path: &str, etag: &str) -> Result<()> {
        let link = self.snapshot_dir(repo_id, commit).join(path);
        let parent = link.parent().expect("a snapshot file has a parent");
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        let depth = path.matches('/').count();
        let target = PathBuf::from(format!("{}blobs/{etag}", "../".repeat(2 + depth)));
        if fs::read_link(&link).ok().as_deref() == Some(target.as_path()) {
            return Ok(());
        }
        match fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&link)(e)),
        }
        make_link(&target, &link, &self.blob_path(repo_id, etag))
    }

    /// Marks the cache for backup tools (the Cache Directory Tagging Standard), as
    /// `huggingface_hub` does.
    pub fn tag(&self) {
        let tag = self.root.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = fs::write(
                tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n\
                 # This file is a cache directory tag created by gossamer.\n\
                 # For information about cache directory tags, see https://bford.info/cachedir/\n",
            );
        }
    }

    /// Every model repository in the cache, sorted by id. A missing cache is an empty one.
    pub fn list(&self) -> Result<Vec<CachedRepo>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.root)(e)),
        };
        let mut repos = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("models--") else {
                continue;
            };
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            repos.push(self.describe(rest.replace("--", "/"), dir)?);
        }
        repos.sort_by(|a, b| a.repo_id.cmp(&b.repo_id));
        Ok(repos)
    }

    fn describe(&self, repo_id: String, dir: PathBuf) -> Result<CachedRepo> {
        let (mut size, mut partial_bytes) = (0, 0);
        for (name, path) in dir_entries(&dir.join("blobs"))? {
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if name.ends_with(INCOMPLETE) {
                partial_bytes += len;
            } else {
                size += len;
            }
        }
        let refs_dir = dir.join("refs");
        let mut refs: Vec<(String, String)> = walk_files(&refs_dir)?
            .into_iter()
            // `.main.123.tmp`: a ref being written (or left by a crash), not a ref.
            .filter(|(rel, _)| !rel.rsplit('/').next().unwrap_or("").starts_with('.'))
            .filter_map(|(rel, path)| {
                let commit = fs::read_to_string(path).ok()?.trim().to_string();
                is_commit_hash(&commit).then_some((rel, commit))
            })
            .collect();
        refs.sort();
        let mut snapshots = Vec::new();
        for (commit, path) in dir_entries(&dir.join("snapshots"))? {
            if !path.is_dir() {
                continue;
            }
            snapshots.push(CachedSnapshot {
                files: walk_files(&path)?.len(),
                ready: missing_files(&path).is_empty(),
                commit,
                dir: path,
            });
        }
        snapshots.sort_by(|a, b| a.commit.cmp(&b.commit));
        Ok(CachedRepo {
            repo_id,
            dir,
            size,
            partial_bytes,
            refs,
            snapshots,
        })
    }

    /// Deletes a repository, or with `@revision` that revision's snapshot, its refs and the
    /// blobs no other snapshot uses (the whole folder when none is left).
    pub fn remove(&self, r: &RepoRef) -> Result<Removed> {
        let dir = self.repo_dir(&r.repo_id);
        let not_cached = || HubError::NotCached {
            repo: r.to_string(),
            cache: self.root.clone(),
        };
        if !dir.is_dir() {
            return Err(not_cached());
        }
        if r.revision.is_some() {
            let commit = self.commit_of(r).ok_or_else(not_cached)?;
            let snapshot = self.snapshot_dir(&r.repo_id, &commit);
            if !snapshot.is_dir() {
                return Err(not_cached());
            }
            fs::remove_dir_all(&snapshot).map_err(io_err(&snapshot))?;
            for (_, path) in walk_files(&dir.join("refs"))? {
                if fs::read_to_string(&path).is_ok_and(|c| c.trim() == commit) {
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
            }
            let remaining = dir_entries(&dir.join("snapshots"))?;
            if !remaining.is_empty() {
                let mut used = std::collections::HashSet::new();
                for (_, snap) in &remaining {
                    for (_, file) in walk_files(snap)? {
                        if let Some(etag) = fs::read_link(&file)
                            .ok()
                            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
                        {
                            used.insert(etag);
                        }
                    }
                }
                let mut freed = 0;
                for (name, path) in dir_entries(&dir.join("blobs"))? {
                    if name.ends_with(INCOMPLETE) || used.contains(&name) {
                        continue;
                    }
                    freed += owned_len(&path);
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
                return Ok(Removed {
                    freed,
                    repo_removed: false,
                });
            }
        }
        let freed = dir_entries(&dir.join("blobs"))?
            .iter()
            .map(|(_, p)| owned_len(p))
            .sum();
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        let locks = self.lock_path(&r.repo_id, "x");
        if let Some(locks) = locks.parent() {
            let _ = fs::remove_dir_all(locks);
        }
        Ok(Removed {
            freed,
            repo_removed: true,
        })
    }
}

/// The files a snapshot still needs before the checkpoint loads: `config.json`, then the
/// index's shards or `model.safetensors`; or the same under `original/`. Empty when ready.
pub fn missing_files(dir: &Path) -> Vec<String> {
    if dir.join("config.json").exists() {
        return missing_weights(dir, "");
    }
    if dir.join("original/config.json").exists() {
        return missing_weights(&dir.join("original"), "original/");
    }
    vec!["config.json".into()]
}

fn missing_weights(dir: &Path, prefix: &str) -> Vec<String> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let shards: Option<std::collections::BTreeSet<String>> = fs::read(&index)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|v| {
                v.get("weight_map")?.as_object().map(|m| {
                    m.values()
                        .filter_map(|f| f.as_str().map(str::to_string))
                        .collect()
                })
            });
        return match shards {
            Some(shards) => shards
                .into_iter()
                .filter(|s| !dir.join(s).exists())
                .map(|s| format!("{prefix}{s}"))
                .collect(),
            None => vec![format!("{prefix}model.safetensors.index.json")],
        };
    }
    let any_weights = fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".safetensors") && e.path().exists())
    });
    if any_weights {
        Vec::new()
    } else {
        vec![format!("{prefix}model.safetensors")]
    }
}

/// The bytes deleting `path` frees: a link into a shared store frees nothing.
fn owned_len(path: &Path) -> u64 {
    fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map_or(0, |m| m.len())
}

/// `(name, path)` of a folder's entries; none if it does not exist.
fn dir_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                let e = e.map_err(io_err(dir))?;
                Ok((e.file_name().to_string_lossy().into_owned(), e.path()))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// `(path relative to dir with /, path)` of every file or link below `dir`.
fn walk_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, d)) = stack.pop() {
        for (name, path) in dir_entries(&d)? {
            let rel = format!("{prefix}{name}");
            let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if is_dir {
                stack.push((format!("{rel}/"), path));
            } else {
                out.push((rel, path));
            }
        }
    }
    Ok(out)
}

#[cfg(unix)]
fn make_link(target: &Path, link: &Path, _blob: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, link).map_err(io_err(link))
}

/// Without symlinks the snapshot holds a copy, as `huggingface_hub` falls back to.
#[cfg(not(unix))]
fn make_link(_target: &Path, link: &Path, blob: &Path) -> Result<()> {
    fs::copy(blob, link).map(|_| ()).map_err(io_err(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    const C1: &str = "1111111111111111111111111111111111111111";
    const C2: &str = "2222222222222222222222222222222222222222";

    fn put_blob(cache: &HubCache, repo: &str, etag: &str, bytes: &[u8]) {
        let p = cache.blob_path(repo, etag);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }

    #[test]
    fn layout_lookup_list_and_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = HubCache::new(tmp.path());
        let repo = "openai/gpt-oss-tiny";
        assert_eq!(
            cache.repo_dir(repo),
            tmp.path().join("models--openai--gpt-oss-tiny")
        );
        let r = RepoRef::parse(repo).unwrap();
        assert_eq!(cache.lookup(&r), Lookup::Absent);

        put_blob(&cache, repo, "aaaa", b"{\"hidden_size\": 1}");
        put_blob(&cache, repo, "bbbb", b"weights1");
        put_blob(&cache, repo, "cccc", b"weights-2");
        put_blob(&cache, repo, "dddd.incomplete", b"part");
        cache.link_file(repo, C1, "config.json", "aaaa").unwrap();
        cache.write_ref(repo, "main", C1).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("models--openai--gpt-oss-tiny/refs/main")).unwrap(),
            C1
        );
        assert!(
            matches!(cache.lookup(&r), Lookup::Partial { ref missing, .. } if missing == &["model.safetensors"])
        );
        cache
            .link_file(repo, C1, "model.safetensors", "bbbb")
            .unwrap();
        assert_eq!(
            fs::read_link(cache.snapshot_dir(repo, C1).join("model.safetensors")).unwrap(),
            PathBuf::from("../../blobs/bbbb")
        );
        assert_eq!(
            cache.lookup(&r),
            Lookup::Ready {
                commit: C1.into(),
                dir: cache.snapshot_dir(repo, C1)
            }
        );

        // A second revision sharing config.json; nested paths climb one more level.
        cache.link_file(repo, C2, "config.json", "aaaa").unwrap();
        cache
            .link_file(repo, C2, "model.safetensors", "cccc")
            .unwrap();
        cache
            .link_file(repo, C2, "original/config.json", "aaaa")
            .unwrap();
        assert_eq!(
            fs::read_link(cache.snapshot_dir(repo, C2).join("original/config.json")).unwrap(),
            PathBuf::from("../../../blobs/aaaa")
        );
        cache.write_ref(repo, "refs/pr/1", C2).unwrap();
        let pinned = RepoRef::parse(&format!("{repo}@refs/pr/1")).unwrap();
        assert!(matches!(cache.lookup(&pinned), Lookup::Ready { ref commit, .. } if commit == C2));

        let listed = cache.list().unwrap();
        assert_eq!(listed.len(), 1);
        let l = &listed[0];
        assert_eq!(l.repo_id, repo);
        assert_eq!(l.size, 18 + 8 + 9);
        assert_eq!(l.partial_bytes, 4);
        assert_eq!(
            l.refs,
            vec![("main".into(), C1.into()), ("refs/pr/1".into(), C2.into())]
        );
        assert_eq!(l.snapshots.len(), 2);
        assert_eq!(l.snapshots[1].files, 3);
        assert!(l.snapshots.iter().all(|s| s.ready));

        // Removing one revision frees only the blob nobody else uses.
        let removed = cache.remove(&pinned).unwrap();
        assert_eq!(
            removed,
            Removed {
                freed: 9,
                repo_removed: false
            }
        );
        assert!(cache.blob_path(repo, "aaaa").exists());
        assert!(!cache.blob_path(repo, "cccc").exists());
        assert_eq!(cache.read_ref(repo, "refs/pr/1"), None);
        assert!(matches!(cache.lookup(&r), Lookup::Ready { .. }));

        let removed = cache.remove(&r).unwrap();
        assert!(removed.repo_removed);
        assert_eq!(removed.freed, 18 + 8 + 4);
        assert!(!cache.repo_dir(repo).exists());
        assert!(cache.list().unwrap().is_empty());
        let e = cache.remove(&r).unwrap_err().to_string();
        assert!(e.contains("is not in the cache"), "{e}");
    }

    #[test]
    fn sharded_snapshots_need_every_shard() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        assert_eq!(missing_files(d), vec!["config.json".to_string()]);
        fs::write(d.join("config.json"), "{}").unwrap();
        fs::write(
            d.join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "model-00000-of-00001.safetensors", "b": "model-00001-of-00001.safetensors"}}"#,
        )
        .unwrap();
        fs::write(d.join("model-00000-of-00001.safetensors"), "x").unwrap();
        assert_eq!(
            missing_files(d),
            vec!["model-00001-of-00001.safetensors".to_string()]
        );
        fs::write(d.join("model-00001-of-00001.safetensors"), "x").unwrap();
        assert!(missing_files(d).is_empty());
    }
}
