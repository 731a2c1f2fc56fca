//! `pull` against a loopback server that speaks the Hub's protocol (`fake_hub`), serving a
//! `tiny` random checkpoint: fresh pulls, cuts and resumes, corruption, offline use, revision
//! pins, errors, the disk-space check.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use gossamer_checkpoint::Checkpoint;
use gossamer_hub::checksum::sha256_hex;
use gossamer_hub::fake_hub::{FakeFile, FakeHub, Fault, Origin};
use gossamer_hub::{
    pull, HubCache, HubError, HubSettings, Lookup, PullEvent, PullOptions, Quiet, RepoRef,
};

fn repo(s: &str) -> RepoRef {
    RepoRef::parse(s).unwrap()
}

fn pull_recorded(
    settings: &HubSettings,
    r: &RepoRef,
    opts: &PullOptions,
) -> (
    Result<gossamer_hub::Pulled, HubError>,
    std::sync::Arc<Recorder>,
) {
    let rec = Recorder::new();
    let sink = rec.clone();
    let result = pull(settings, r, opts, &move |e: PullEvent<'_>| sink.record(e));
    (result, rec)
}

fn assert_same_bytes(path: &Path, expected: &FakeFile) {
    let got = fs::read(path).unwrap();
    assert!(
        got == *expected.bytes,
        "{} differs from the Hub's {}",
        path.display(),
        expected.path
    );
}

#[test]
fn fresh_pull_fetches_what_gossamer_reads_in_parallel_and_loads() {
    let (hub, commit) = hub_with_tiny();
    let cache_dir = tempfile::tempdir().unwrap();
    let settings = settings(&hub, cache_dir.path());
    let (pulled, rec) = pull_recorded(&settings, &repo(REPO), &options());
    let pulled = pulled.unwrap();

    assert_eq!(pulled.commit, commit);
    let cache = HubCache::new(cache_dir.path());
    assert_eq!(pulled.dir, cache.snapshot_dir(REPO, &commit));
    let mut names: Vec<String> = pulled.files.iter().map(|f| f.path.clone()).collect();
    names.sort();
    let expected: Vec<String> = tiny_files()
        .into_iter()
        .map(|f| f.path)
        .filter(|p| wanted(p))
        .collect();
    assert_eq!(
        names, expected,
        "only config, index, generation config, shards"
    );
    assert_eq!(expected.len(), 6);

    // The Hugging Face layout: blobs named by checksum, relative links, refs/main.
    let repo_dir = cache_dir.path().join("models--openai--gpt-oss-tiny");
    for f in tiny_files().iter().filter(|f| wanted(&f.path)) {
        let link = pulled.dir.join(&f.path);
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("../../blobs").join(f.etag())
        );
        assert_same_bytes(&link, f);
        assert_eq!(f.etag().len(), if f.lfs { 64 } else { 40 }, "{}", f.path);
    }
    assert_eq!(
        fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        commit
    );
    assert!(!pulled.dir.join("original").exists() && !pulled.dir.join("metal").exists());
    assert!(cache_dir.path().join("CACHEDIR.TAG").exists());
    let leftovers: Vec<_> = fs::read_dir(repo_dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".incomplete"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The snapshot is a model folder.
    let ck = Checkpoint::open(&pulled.dir).unwrap();
    assert_eq!(ck.config.hidden_size, 128);
    assert_eq!(
        pulled.downloaded,
        ck.bytes_on_disk + json_bytes(&pulled.dir)
    );
    assert!(
        rec.most_at_once() >= 2,
        "shards download in parallel: {:?}",
        rec.lines()
    );
    assert!(matches!(cache.lookup(&repo(REPO)), Lookup::Ready { .. }));

    // The token stays on the Hub; signed CDN URLs get none.
    let requests = hub.requests();
    assert!(requests
        .iter()
        .any(|r| r.origin == Origin::Cdn && r.status == 200));
    assert!(requests.iter().all(|r| r.authorization.is_none()));

    // Pulling again verifies and downloads nothing.
    hub.clear_requests();
    let (again, rec) = pull_recorded(&settings, &repo(REPO), &options());
    let again = again.unwrap();
    assert_eq!(again.downloaded, 0);
    assert_eq!(
        rec.lines()
            .iter()
            .filter(|l| l.starts_with("verify "))
            .count(),
        6
    );
    assert!(hub.requests().iter().all(|r| r.file.is_none()));
}

fn json_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn a_cut_connection_resumes_with_a_range_request() {
    let (hub, _) = hub_with_tiny();
    let cache_dir = tempfile::tempdir().unwrap();
    hub.inject(SHARD, [Fault::CutAfter(5_000_000)]);
    let (pulled, rec) = pull_recorded(&settings(&hub, cache_dir.path()), &repo(REPO), &options());
    let pulled = pulled.unwrap();
    assert_same_bytes(&pulled.dir.join(SHARD), &file(SHARD));

    let gets = hub.downloads_of(SHARD);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[0].body_bytes, 5_000_000);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=5000000-"));
    assert_eq!(gets[1].status, 206);
    assert_eq!(
        gets[0].body_bytes + gets[1].body_bytes,
        file(SHARD).bytes.len() as u64,
        "nothing fetched twice"
    );
    assert!(
        rec.notes()
            .iter()
            .any(|n| n.contains(SHARD) && n.contains("resuming from byte 5000000")),
        "{:?}",
        rec.notes()
    );
}

#[test]
fn an_interrupted_pull_resumes_in_the_next_run() {
    let (hub, commit) = hub_with_tiny();
    let cache_dir = tempfile::tempdir().unwrap();
    let settings = settings(&hub, cache_dir.path());
    let mut opts = options();
    opts.max_retries = 2;
    // Cut after 3 MB, then the server is down for as long as the retries last.
    hub.inject(
        SHARD,
        [
            Fault::CutAfter(3_000_000),
            Fault::Status(503),
            Fault::Status(503),
        ],
    );
    let (failed, _) = pull_recorded(&settings, &repo(REPO), &opts);
    let e = failed.unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{SHARD}: download failed 3 times in a row (HTTP 503)"
        )) && e.ends_with("run the same command again to resume where it stopped"),
        "{e}"
    );
    let cache = HubCache::new(cache_dir.path());
    let part = cache.incomplete_path(REPO, file(SHARD).etag());
    assert_eq!(fs::metadata(&part).unwrap().len(), 3_000_000);
    // No ref names an incomplete snapshot.
    assert_eq!(cache.read_ref(REPO, "main"), None);
    assert_eq!(cache.lookup(&repo(REPO)), Lookup::Absent);

    hub.clear_requests();
    let (pulled, rec) = pull_recorded(&settings, &repo(REPO), &opts);
    let pulled = pulled.unwrap();
    assert_eq!(pulled.commit, commit);
    assert_same_bytes(&pulled.dir.join(SHARD), &file(SHARD));
    let gets = hub.downloads_of(SHARD);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range.as_deref(), Some("bytes=3000000-"));
    assert_eq!(
        gets[0].body_bytes,
        file(SHARD).bytes.len() as u64 - 3_000_000
    );
    assert!(rec
        .lines()
        .contains(&format!("download {SHARD} from 3000000")));
    assert!(!part.exists());
}

#[test]
fn a_server_that_ignores_range_is_restarted_cleanly() {
    let (hub, _) = hub_with_tiny();
    let cache_dir = tempfile::tempdir().unwrap();
    hub.ignore_range(true);
    hub.inject(SHARD, [Fault::CutAfter(1_000_000)]);
    let (pulled, rec) = pull_recorded(&settings(&hub, cache_dir.path()), &repo(REPO), &options());
    let pulled = pulled.unwrap();
    assert_same_bytes(&pulled.dir.join(SHARD), &file(SHARD));
    let gets = hub.downloads_of(SHARD);
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[1].status, 200, "asked for a range, got the whole file");
    assert!(rec.lines().contains(&format!("discard {SHARD} 1000000")));
}

#[test]
fn corrupt_cached_files_are_detected_and_fetched_again() {
    let (hub, _) = hub_with_tiny();
    let cache_dir = tempfile::tempdir().unwrap();
    let settings = settings(&hub, cache_dir.path());
    let pulled = pull(&settings, &repo(REPO), &options(), &Quiet).unwrap();

    // Bit rot in a shard (checked by sha256) and an edited config (checked by git sha1).
    let cache = HubCache::new(cache_dir.path());
    let shard_blob = cache.blob_path(REPO, file(SHARD).etag());
    let mut bytes = fs::read(&shard_blob).unwrap();
    bytes[1234] ^= 1;
    fs::write(&shard_blob, bytes).unwrap();
    let config_blob = cache.blob_path(REPO, file("config.json").etag());
    fs::write(&config_blob, b"{\"hidden_size\": 4096}").unwrap();

    hub.clear_requests();
    let (again, rec) = pull_recorded(&settings, &repo(REPO), &options());
    let again = again.unwrap();
    let notes = rec.notes();
    for path in [SHARD, "config.json"] {
        assert!(
            notes
                .iter()
                .any(|n| n.contains(&format!("{path}: the cached copy is corrupt"))),
            "{notes:?}"
        );
        assert_eq!(hub.downloads_of(path).len(), 1, "{path} fetched again");
        assert_same_bytes(&pulled.dir.join(path), &file(path));
    }
    assert_eq!(
        again.downloaded,
        (file(SHARD).bytes.len() + file("config.json").bytes.len()) as u64
    );
    assert!(notes.iter().any(|n| n.contains("sha256")));
    assert!(notes.iter().any(|n| n.contains("git sha1")));
}

#[test]
fn a_corrupt_transfer_is_fetched_again_then_refused() {
    let (hub, _) = hub_with_tiny();
    let cache_dir = tempfile::tempdir().unwrap();
    let settings = settings(&hub, cache_dir.path());
    hub.inject(SHARD, [Fault::Corrupt]);
    let (pulled, rec) = pull_recorded(&settings, &repo(REPO), &options());
    assert_same_bytes(&pulled.unwrap().dir.join(SHARD), &file(SHARD));
    assert!(rec
        .notes()
        .iter()
        .any(|n| n.contains("does not match its sha256")));
    assert_eq!(hub.downloads_of(SHARD).len(), 2);

    let other_cache = tempfile::tempdir().unwrap();
    hub.inject("config.json", [Fault::Corrupt, Fault::Corrupt]);
    let e = pull(
        &settings_in(&hub, other_cache.path()),
        &repo(REPO),
        &options(),
        &Quiet,
    )
    .unwrap_err()
    .to_string();
    let expected = file("config.json").etag().to_string();
    assert!(
        e.starts_with(
            "config.json: downloaded twice and both copies fail the check (expected git sha1 "
        ) && e.contains(&expected),
        "{e}"
    );
    let cache = HubCache::new(other_cache.path());
    assert!(!cache.blob_path(REPO, &expected).exists());
    assert!(!cache.incomplete_path(REPO, &expected).exists());
}

fn settings_in(hub: &FakeHub, dir: &Path) -> HubSettings {
    settings(hub, dir)
}

#[test]
fn offline_runs_from_the_cache_without_a_request() {
    let (hub, commit) = hub_with_tiny();
    let cache_dir = tempfile::tempdir().unwrap();
    pull(
        &settings(&hub, cache_dir.path()),
        &repo(REPO),
        &options(),
        &Quiet,
    )
    .unwrap();
    hub.clear_requests();

    let offline = HubSettings {
        // Nothing listens there; offline must not even try.
        endpoint: "http://127.0.0.1:9".into(),
        offline: true,
        ..settings(&hub, cache_dir.path())
    };
    let pulled = pull(&offline, &repo(REPO), &options(), &Quiet).unwrap();
    assert_eq!(pulled.commit, commit);
    assert!(Checkpoint::open(&pulled.dir).is_ok());
    let pinned = pull(
        &offline,
        &repo(&format!("{REPO}@{commit}")),
        &options(),
        &Quiet,
    )
    .unwrap();
    assert_eq!(pinned.dir, pulled.dir);
    assert!(hub.requests().is_empty());

    let e = pull(&offline, &repo("openai/gpt-oss-20b"), &options(), &Quiet)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "openai/gpt-oss-20b is not in the cache ({}) and HF_HUB_OFFLINE is set: unset it to download",
            cache_dir.path().display()
        )
    );
}

#[test]
fn revisions_pin_commits_and_tags() {
    let hub = FakeHub::start();
    let mut old = tiny_files();
    let old_gen = b"{\"bos_token_id\": 199998, \"revision\": \"old\"}\n".to_vec();
    for f in old
        .iter_mut()
        .filter(|f| f.path == "generation_config.json")
    {
        *f = FakeFile::new("generation_config.json", old_gen.clone());
    }
    let old_commit = hub.push(REPO, "main", old);
    let new_commit = hub.push(REPO, "main", tiny_files());
    hub.set_ref(REPO, "v1", &old_commit);
    assert_ne!(old_commit, new_commit);

    let cache_dir = tempfile::tempdir().unwrap();
    let settings = settings(&hub, cache_dir.path());
    let cache = HubCache::new(cache_dir.path());

    let by_hash = pull(
        &settings,
        &repo(&format!("{REPO}@{old_commit}")),
        &options(),
        &Quiet,
    )
    .unwrap();
    assert_eq!(by_hash.commit, old_commit);
    assert_eq!(
        fs::read(by_hash.dir.join("generation_config.json")).unwrap(),
        old_gen
    );
    assert!(
        !cache.repo_dir(REPO).join("refs").exists(),
        "a hash needs no ref"
    );

    let by_tag = pull(&settings, &repo(&format!("{REPO}@v1")), &options(), &Quiet).unwrap();
    assert_eq!(by_tag.commit, old_commit);
    assert_eq!(by_tag.downloaded, 0);
    assert_eq!(
        cache.read_ref(REPO, "v1").as_deref(),
        Some(old_commit.as_str())
    );

    // main moved on: only the changed file is new, the shards are shared blobs.
    let main = pull(&settings, &repo(REPO), &options(), &Quiet).unwrap();
    assert_eq!(main.commit, new_commit);
    assert_eq!(
        main.downloaded,
        file("generation_config.json").bytes.len() as u64
    );
    assert_same_bytes(
        &main.dir.join("generation_config.json"),
        &file("generation_config.json"),
    );
    assert_eq!(
        cache.read_ref(REPO, "main").as_deref(),
        Some(new_commit.as_str())
    );

    let e = pull(
        &settings,
        &repo(&format!("{REPO}@nope")),
        &options(),
        &Quiet,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, format!("revision `nope` not found in {REPO}"));
}

#[test]
fn missing_gated_and_unreachable_repos_say_so() {
    let (hub, _) = hub_with_tiny();
    let gated_commit = hub.push("openai/gated-tiny", "main", tiny_files());
    hub.gate("openai/gated-tiny", "hf_right");
    let cache_dir = tempfile::tempdir().unwrap();
    let anonymous = settings(&hub, cache_dir.path());
    let endpoint = hub.endpoint();
    let err = |s: &HubSettings, r: &str| {
        pull(s, &repo(r), &options(), &Quiet)
            .unwrap_err()
            .to_string()
    };

    assert_eq!(
        err(&anonymous, "openai/nothing-here"),
        format!("repository openai/nothing-here not found on {endpoint} (if it is private or gated, set HF_TOKEN to a token that can read it)")
    );
    let statuses: Vec<u16> = hub.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401]);
    assert_eq!(
        err(&anonymous, "openai/gated-tiny"),
        format!("openai/gated-tiny is gated: accept its conditions on {endpoint}/openai/gated-tiny and set HF_TOKEN to a token of that account")
    );
    let wrong = HubSettings {
        token: Some("hf_wrong".into()),
        ..anonymous.clone()
    };
    assert_eq!(
        err(&wrong, "openai/gated-tiny"),
        format!("{endpoint} refused HF_TOKEN: invalid credentials")
    );
    // With a token, a missing repository is a 404; the message is the same.
    assert!(
        err(&wrong, "openai/nothing-here").starts_with("repository openai/nothing-here not found")
    );

    hub.clear_requests();
    let right = HubSettings {
        token: Some("hf_right".into()),
        ..anonymous.clone()
    };
    let pulled = pull(&right, &repo("openai/gated-tiny"), &options(), &Quiet).unwrap();
    assert_eq!(pulled.commit, gated_commit);
    let requests = hub.requests();
    assert!(requests
        .iter()
        .filter(|r| r.origin == Origin::Hub)
        .all(|r| r.authorization.as_deref() == Some("Bearer hf_right")));
    assert!(requests
        .iter()
        .filter(|r| r.origin == Origin::Cdn)
        .all(|r| r.authorization.is_none() && r.status == 200));

    // A closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = HubSettings {
        endpoint: format!("http://127.0.0.1:{port}"),
        ..anonymous.clone()
    };
    let e = err(&unreachable, REPO);
    assert!(
        e.starts_with(&format!("cannot reach http://127.0.0.1:{port}: "))
            && e.ends_with("(with HF_HUB_OFFLINE=1 gossamer uses the cache only)"),
        "{e}"
    );

    // A repository without weights.
    hub.push(
        "someone/adapter",
        "main",
        vec![FakeFile::new("adapter_config.json", b"{}".to_vec())],
    );
    assert_eq!(
        err(&anonymous, "someone/adapter"),
        "someone/adapter at main has no checkpoint gossamer can load (it needs config.json with *.safetensors at the top level)"
    );
}

#[test]
fn disk_space_is_checked_before_anything_is_written() {
    let (hub, _) = hub_with_tiny();
    hub.announce_size(REPO, SHARD, 1 << 60);
    let cache_dir = tempfile::tempdir().unwrap();
    let e = pull(
        &settings(&hub, cache_dir.path()),
        &repo(REPO),
        &options(),
        &Quiet,
    )
    .unwrap_err()
    .to_string();
    let blobs = cache_dir.path().join("models--openai--gpt-oss-tiny/blobs");
    assert!(
        e.starts_with(&format!(
            "not enough disk space in {}: 1024.0 PiB to download, ",
            blobs.display()
        )) && e.ends_with(" free"),
        "{e}"
    );
    assert_eq!(fs::read_dir(&blobs).unwrap().count(), 0);
    assert!(hub.requests().iter().all(|r| r.file.is_none()));
}

#[test]
fn checksums_match_what_the_hub_lists() {
    // The fake Hub's LFS etags are the content's sha256, as on huggingface.co.
    let f = file(SHARD);
    assert!(f.lfs);
    assert_eq!(f.etag(), sha256_hex(&f.bytes));
}
