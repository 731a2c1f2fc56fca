//! `pull`: bring the files gossamer needs from a Hub repository into the cache, resumable and
//! verified.
//!
//! 1. Ask the Hub which commit the revision means and what files it holds (sizes, checksums).
//! 2. Keep the files the checkpoint loader reads: `config.json`, `generation_config.json`,
//!    `model.safetensors.index.json` and the top-level `*.safetensors` (plus `original/` when
//!    asked; never `metal/`, which gossamer cannot read).
//! 3. Check the disk has room for what is missing, before anything is written.
//! 4. Several files at once (largest first): a cached blob is re-hashed and fetched again if it
//!    fails; a missing one is downloaded into `blobs/<etag>.incomplete`, resumed with `Range`
//!    after a cut (here, or in an earlier run), hashed as it arrives and only renamed into
//!    place when its sha256 (LFS files) or git sha1 (small files) matches the Hub's.
//! 5. Link the snapshot's files to their blobs; record the branch or tag in `refs/` last, so a
//!    ref always names a complete snapshot.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::api::{FetchError, HubClient, RepoInfo};
use crate::cache::{HubCache, Lookup};
use crate::checksum::{file_checksum, hash_reader, ChecksumKind, Hasher};
use crate::error::{human_bytes, io_err, HubError, Result};
use crate::reference::RepoRef;
use crate::settings::HubSettings;

/// The top-level files the checkpoint loader reads besides the weights.
const MODEL_FILES: [&str; 3] = [
    "config.json",
    "generation_config.json",
    "model.safetensors.index.json",
];

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Also fetch `original/` (OpenAI's reference layout).
    pub include_original: bool,
    /// Files downloaded at once.
    pub jobs: usize,
    /// Attempts in a row without progress before a file's download gives up.
    pub max_retries: u32,
    /// The first pause between attempts; it doubles on each failure, up to 30 s.
    pub retry_delay: Duration,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            include_original: false,
            jobs: 4,
            max_retries: 5,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// A file of the repository at the pulled commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub path: String,
    pub size: u64,
    /// The checksum the Hub gives (sha256 for LFS files, git sha1 otherwise): the blob's name.
    pub etag: String,
}

/// What a pull is doing, for progress displays. Sent from the download threads.
#[derive(Debug, Clone, Copy)]
pub enum PullEvent<'a> {
    /// The commit and its files; `present` of the `total` bytes are already on disk (complete
    /// blobs and partial downloads).
    Plan {
        commit: &'a str,
        files: &'a [RemoteFile],
        total: u64,
        present: u64,
    },
    /// Hashing a cached file to check it.
    Verifying { path: &'a str, size: u64 },
    /// Downloading; `from` is non-zero when a partial download resumes.
    Downloading { path: &'a str, size: u64, from: u64 },
    /// `bytes` more arrived.
    Progress { path: &'a str, bytes: u64 },
    /// `bytes` counted before were thrown away (a corrupt file, a server that ignored `Range`).
    Discarded { path: &'a str, bytes: u64 },
    /// The file is in the snapshot, checked.
    Ready { path: &'a str, downloaded: bool },
    /// Something worth telling the user: a retry, a corrupt file fetched again.
    Note(&'a str),
}

pub trait PullProgress: Sync {
    fn event(&self, event: PullEvent<'_>);
}

/// Progress nobody watches.
pub struct Quiet;

impl PullProgress for Quiet {
    fn event(&self, _: PullEvent<'_>) {}
}

impl<F: Fn(PullEvent<'_>) + Sync> PullProgress for F {
    fn event(&self, event: PullEvent<'_>) {
        self(event)
    }
}

/// A finished pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub repo: RepoRef,
    pub commit: String,
    /// The snapshot folder: a model folder the checkpoint loader opens.
    pub dir: PathBuf,
    /// The files checked or fetched (empty when offline: nothing was checked).
    pub files: Vec<RemoteFile>,
    /// Bytes downloaded by this pull.
    pub downloaded: u64,
}

/// Pulls `r` into the cache `settings` names. Offline, only answers from the cache.
pub fn pull(
    settings: &HubSettings,
    r: &RepoRef,
    opts: &PullOptions,
    progress: &dyn PullProgress,
) -> Result<Pulled> {
    let cache = HubCache::new(&settings.cache_dir);
    if settings.offline {
        return match cache.lookup(r) {
            Lookup::Ready { commit, dir } => Ok(Pulled {
                repo: r.clone(),
                commit,
                dir,
                files: Vec::new(),
                downloaded: 0,
            }),
            _ => Err(HubError::OfflineNotCached {
                repo: r.to_string(),
                cache: settings.cache_dir.clone(),
            }),
        };
    }
    let client = HubClient::new(settings)?;
    let info = client.repo_info(r)?;
    let commit = info.sha.clone().expect("repo_info checks the commit");
    let files = select_files(&info, r, opts.include_original)?;

    let blobs = cache.repo_dir(&r.repo_id).join("blobs");
    fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    cache.tag();
    let total: u64 = files.iter().map(|f| f.size).sum();
    let mut present = 0;
    for f in &files {
        present += if cache.blob_path(&r.repo_id, &f.etag).exists() {
            f.size
        } else {
            fs::metadata(cache.incomplete_path(&r.repo_id, &f.etag))
                .map_or(0, |m| m.len().min(f.size))
        };
    }
    progress.event(PullEvent::Plan {
        commit: &commit,
        files: &files,
        total,
        present,
    });
    check_disk_space(&blobs, total - present)?;

    let job = Job {
        cache: &cache,
        client: &client,
        repo: r,
        commit: &commit,
        opts,
        progress,
        stop: AtomicBool::new(false),
    };
    // Largest last, so that `pop` hands out the shards first.
    let mut queue: Vec<&RemoteFile> = files.iter().collect();
    queue.sort_by_key(|f| f.size);
    let queue = Mutex::new(queue);
    let first_error: Mutex<Option<HubError>> = Mutex::new(None);
    let downloaded = AtomicU64::new(0);
    let workers = opts.jobs.clamp(1, files.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if job.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Some(file) = queue.lock().expect("queue lock").pop() else {
                    return;
                };
                match job.ensure(file) {
                    Ok(n) => {
                        downloaded.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(HubError::Stopped) => return,
                    Err(e) => {
                        job.stop.store(true, Ordering::Relaxed);
                        first_error.lock().expect("error lock").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("error lock") {
        return Err(e);
    }
    cache.write_ref(&r.repo_id, r.revision(), &commit)?;
    Ok(Pulled {
        repo: r.clone(),
        dir: cache.snapshot_dir(&r.repo_id, &commit),
        commit,
        files,
        downloaded: downloaded.into_inner(),
    })
}

/// The files gossamer needs, with the sizes and checksums the Hub lists.
fn select_files(info: &RepoInfo, r: &RepoRef, include_original: bool) -> Result<Vec<RemoteFile>> {
    let protocol = |detail: String| HubError::Protocol {
        url: format!("repository description of {r}"),
        detail,
    };
    let mut files = Vec::new();
    for s in &info.siblings {
        let path = s.rfilename.as_str();
        let top_level = !path.contains('/');
        let wanted = (top_level && (MODEL_FILES.contains(&path) || path.ends_with(".safetensors")))
            || (include_original && path.starts_with("original/"));
        if !wanted {
            continue;
        }
        if path.contains('\\')
            || path
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(protocol(format!("unsafe file name `{path}`")));
        }
        let (etag, size) = match (&s.lfs, &s.blob_id, s.size) {
            (Some(lfs), _, _) => (lfs.sha256.clone(), lfs.size),
            (None, Some(blob), Some(size)) => (blob.clone(), size),
            _ => {
                return Err(protocol(format!(
                    "no size or checksum for {path} (a Hub lists them with ?blobs=true)"
                )))
            }
        };
        if ChecksumKind::of_etag(&etag).is_none() {
            return Err(protocol(format!(
                "`{etag}` for {path} is neither a sha256 nor a git sha1"
            )));
        }
        files.push(RemoteFile {
            path: path.to_string(),
            size,
            etag,
        });
    }
    let loadable = |prefix: &str| {
        files
            .iter()
            .any(|f| f.path == format!("{prefix}config.json"))
            && files.iter().any(|f| {
                f.path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| !rest.contains('/') && rest.ends_with(".safetensors"))
            })
    };
    let loadable = loadable("") || (include_original && loadable("original/"));
    if !loadable {
        let has_original = info
            .siblings
            .iter()
            .any(|s| s.rfilename == "original/config.json");
        return Err(HubError::NotAModel {
            repo: r.repo_id.clone(),
            revision: r.revision().to_string(),
            hint: if has_original && !include_original {
                "; it has original/: add --include-original"
            } else {
                ""
            },
        });
    }
    Ok(files)
}

fn check_disk_space(dir: &Path, needed: u64) -> Result<()> {
    if needed == 0 {
        return Ok(());
    }
    match fs4::available_space(dir) {
        Ok(available) if available < needed => Err(HubError::DiskFull {
            dir: dir.to_path_buf(),
            needed: human_bytes(needed),
            available: human_bytes(available),
        }),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::debug!("cannot tell the free space of {}: {e}", dir.display());
            Ok(())
        }
    }
}

/// What every download thread of one pull shares.
struct Job<'a> {
    cache: &'a HubCache,
    client: &'a HubClient,
    repo: &'a RepoRef,
    commit: &'a str,
    opts: &'a PullOptions,
    progress: &'a dyn PullProgress,
    /// Set when one file fails: the others stop at their next read, keeping what they have.
    stop: AtomicBool,
}

/// How reading a body ended.
enum BodyEnd {
    /// The server closed the body.
    Eof,
    /// The server sent more than the file's size: not the file we want.
    TooLong,
    Read(std::io::Error),
}

impl Job<'_> {
    fn note(&self, text: &str) {
        self.progress.event(PullEvent::Note(text));
    }

    /// Makes `file` present and checked in the snapshot; returns the bytes downloaded.
    fn ensure(&self, file: &RemoteFile) -> Result<u64> {
        let repo = &self.repo.repo_id;
        // One writer per blob, across gossamer and huggingface_hub processes (both flock it).
        let lock_path = self.cache.lock_path(repo, &file.etag);
        let lock_dir = lock_path.parent().expect("lock has a folder");
        fs::create_dir_all(lock_dir).map_err(io_err(lock_dir))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                self.note(&format!(
                    "{}: waiting for another download of it to finish",
                    file.path
                ));
                lock.lock().map_err(io_err(&lock_path))?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }

        let blob = self.cache.blob_path(repo, &file.etag);
        if blob.exists() {
            self.progress.event(PullEvent::Verifying {
                path: &file.path,
                size: file.size,
            });
            let actual = file_checksum(&blob, &file.etag)?.unwrap_or_default();
            if actual != file.etag {
                let kind = ChecksumKind::of_etag(&file.etag).map_or("checksum", |k| k.name());
                self.note(&format!(
                    "{}: the cached copy is corrupt ({kind} {actual}, expected {}); fetching it again",
                    file.path, file.etag
                ));
                self.progress.event(PullEvent::Discarded {
                    path: &file.path,
                    bytes: file.size,
                });
                fs::remove_file(&blob).map_err(io_err(&blob))?;
            }
        }
        let downloaded = if blob.exists() {
            0
        } else {
            self.download(file, &blob)?
        };
        self.cache
            .link_file(repo, self.commit, &file.path, &file.etag)?;
        self.progress.event(PullEvent::Ready {
            path: &file.path,
            downloaded: downloaded > 0,
        });
        Ok(downloaded)
    }

    /// Downloads `file` into `blob` through its `.incomplete` twin; returns the bytes fetched.
    fn download(&self, file: &RemoteFile, blob: &Path) -> Result<u64> {
        let part_path = self.cache.incomplete_path(&self.repo.repo_id, &file.etag);
        let io = |e| io_err(&part_path)(e);
        // Append mode: every write lands at the end, whatever was read before.
        let mut part = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&part_path)
            .map_err(io)?;
        let kind = ChecksumKind::of_etag(&file.etag).expect("select_files checks etags");
        let mut fetched = 0u64;
        let mut bad_copies = 0;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let mut have = part.metadata().map_err(io)?.len();
            if have > file.size {
                self.restart(&mut part, file, file.size).map_err(io)?;
                have = 0;
            }
            let mut hasher = Hasher::new(kind, file.size);
            if have > 0 {
                part.seek(SeekFrom::Start(0)).map_err(io)?;
                let read = hash_reader(&mut part, &mut hasher, have).map_err(io)?;
                if read != have {
                    return Err(io(std::io::Error::other(
                        "the file shrank while being read",
                    )));
                }
            }
            self.progress.event(PullEvent::Downloading {
                path: &file.path,
                size: file.size,
                from: have,
            });
            let mut failures = 0u32;
            let mut too_long = false;
            while have < file.size && !too_long {
                if self.stop.load(Ordering::Relaxed) {
                    return Err(HubError::Stopped);
                }
                let failure = match self
                    .client
                    .open_file(self.repo, self.commit, &file.path, have)
                {
                    Err(FetchError::Fatal(e)) => return Err(e),
                    Err(FetchError::RangeNotSatisfiable) => {
                        self.restart(&mut part, file, have).map_err(io)?;
                        have = 0;
                        hasher = Hasher::new(kind, file.size);
                        continue;
                    }
                    Err(FetchError::Unreachable(d) | FetchError::Transient(d)) => d,
                    Ok(body) => {
                        if body.start != have {
                            if body.start != 0 {
                                return Err(HubError::Protocol {
                                    url: file.path.clone(),
                                    detail: format!(
                                        "asked from byte {have}, answered from byte {}",
                                        body.start
                                    ),
                                });
                            }
                            // The server ignored `Range`: start over with what it sends.
                            self.restart(&mut part, file, have).map_err(io)?;
                            have = 0;
                            hasher = Hasher::new(kind, file.size);
                        }
                        let before = have;
                        let end = self.copy_body(
                            body.reader,
                            &mut part,
                            &mut hasher,
                            &mut have,
                            file,
                            &mut buf,
                        )?;
                        fetched += have - before;
                        if have > before {
                            failures = 0;
                        }
                        match end {
                            BodyEnd::Eof if have == file.size => break,
                            BodyEnd::Eof => {
                                format!("connection closed at byte {have} of {}", file.size)
                            }
                            BodyEnd::TooLong => {
                                too_long = true;
                                continue;
                            }
                            BodyEnd::Read(e) => e.to_string(),
                        }
                    }
                };
                failures += 1;
                if failures > self.opts.max_retries {
                    return Err(HubError::Interrupted {
                        file: file.path.clone(),
                        attempts: failures,
                        detail: failure,
                    });
                }
                let pause = self
                    .opts
                    .retry_delay
                    .saturating_mul(1 << (failures - 1).min(5))
                    .min(Duration::from_secs(30));
                self.note(&format!(
                    "{}: {failure}; resuming from byte {have} in {:.1} s",
                    file.path,
                    pause.as_secs_f64()
                ));
                std::thread::sleep(pause);
            }
            let actual = hasher.finish();
            if !too_long && actual == file.etag {
                part.sync_all().map_err(io)?;
                drop(part);
                fs::rename(&part_path, blob).map_err(io_err(blob))?;
                return Ok(fetched);
            }
            bad_copies += 1;
            self.restart(&mut part, file, have).map_err(io)?;
            if bad_copies >= 2 {
                drop(part);
                let _ = fs::remove_file(&part_path);
                return Err(HubError::Checksum {
                    file: file.path.clone(),
                    kind: kind.name(),
                    expected: file.etag.clone(),
                    actual: if too_long {
                        "more bytes than the file's size".into()
                    } else {
                        actual
                    },
                });
            }
            self.note(&format!(
                "{}: the download does not match its {} (got {actual}); fetching it again",
                file.path,
                kind.name()
            ));
        }
    }

    /// Empties the partial file, telling the display its `had` bytes are gone.
    fn restart(&self, part: &mut File, file: &RemoteFile, had: u64) -> std::io::Result<()> {
        part.set_len(0)?;
        self.progress.event(PullEvent::Discarded {
            path: &file.path,
            bytes: had,
        });
        Ok(())
    }

    /// Appends the body to the partial file, hashing as it goes.
    fn copy_body(
        &self,
        mut reader: Box<dyn Read + Send>,
        part: &mut File,
        hasher: &mut Hasher,
        have: &mut u64,
        file: &RemoteFile,
        buf: &mut [u8],
    ) -> Result<BodyEnd> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(HubError::Stopped);
            }
            let n = match reader.read(buf) {
                Ok(0) => return Ok(BodyEnd::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Ok(BodyEnd::Read(e)),
            };
            if *have + n as u64 > file.size {
                return Ok(BodyEnd::TooLong);
            }
            part.write_all(&buf[..n]).map_err(io_err(
                self.cache.incomplete_path(&self.repo.repo_id, &file.etag),
            ))?;
            hasher.update(&buf[..n]);
            *have += n as u64;
            self.progress.event(PullEvent::Progress {
                path: &file.path,
                bytes: n as u64,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{LfsInfo, Sibling};

    fn sibling(name: &str, lfs: bool) -> Sibling {
        Sibling {
            rfilename: name.into(),
            size: Some(10),
            blob_id: Some("a".repeat(40)),
            lfs: lfs.then(|| LfsInfo {
                sha256: "b".repeat(64),
                size: 1000,
            }),
        }
    }

    fn info(names: &[&str]) -> RepoInfo {
        RepoInfo {
            sha: Some("c".repeat(40)),
            siblings: names
                .iter()
                .map(|n| sibling(n, n.ends_with(".safetensors") || n.ends_with(".bin")))
                .collect(),
        }
    }

    #[test]
    fn only_what_gossamer_reads() {
        let repo = RepoRef::parse("openai/gpt-oss-20b").unwrap();
        let all = [
            ".gitattributes",
            "README.md",
            "LICENSE",
            "chat_template.jinja",
            "config.json",
            "generation_config.json",
            "model-00000-of-00002.safetensors",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "metal/model.bin",
            "original/config.json",
            "original/dtypes.json",
            "original/model.safetensors",
        ];
        let picked: Vec<String> = select_files(&info(&all), &repo, false)
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(
            picked,
            [
                "config.json",
                "generation_config.json",
                "model-00000-of-00002.safetensors",
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors",
                "model.safetensors.index.json"
            ]
        );
        let with_original = select_files(&info(&all), &repo, true).unwrap();
        assert_eq!(with_original.len(), 9);
        let shard = &with_original[2];
        assert_eq!((shard.size, shard.etag.len()), (1000, 64));
        assert_eq!(with_original[0].etag.len(), 40);
        assert!(with_original.iter().all(|f| !f.path.starts_with("metal/")));
    }

    #[test]
    fn repos_without_weights_are_refused() {
        let repo = RepoRef::parse("someone/adapter").unwrap();
        let e = select_files(&info(&["config.json", "adapter.bin"]), &repo, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no checkpoint gossamer can load"), "{e}");
        let e = select_files(
            &info(&[
                "README.md",
                "original/config.json",
                "original/model.safetensors",
            ]),
            &repo,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("add --include-original"), "{e}");
        let ok = select_files(
            &info(&[
                "README.md",
                "original/config.json",
                "original/model.safetensors",
            ]),
            &repo,
            true,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        let e = select_files(
            &info(&["config.json", "model.safetensors", "original/../../x"]),
            &repo,
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unsafe file name"), "{e}");
    }
}
