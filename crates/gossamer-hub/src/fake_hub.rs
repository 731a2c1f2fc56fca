//! A loopback server that speaks the Hugging Face Hub's download protocol, for tests (behind
//! the `fake-hub` feature; never in the binary).
//!
//! It answers what `gossamer pull` and Python's `huggingface_hub` ask, the way the Hub does:
//!
//! - `GET /api/models/{repo}[/revision/{rev}][?blobs=true]`: `sha` and `siblings` (with
//!   `blobId`, `size` and `lfs {sha256, size, pointerSize}` when `blobs=true`);
//! - `GET /api/models/{repo}/tree/{rev}[?recursive=true]`: the file listing
//!   `huggingface_hub.snapshot_download` reads;
//! - `HEAD|GET /{repo}/resolve/{rev}/{file}`: LFS files answer `302` to a second origin (the
//!   "CDN", another port) with `X-Linked-Etag` (the sha256), `X-Linked-Size` and
//!   `X-Repo-Commit`; small files answer `307` to a relative
//!   `/api/resolve-cache/models/{repo}/{commit}/{file}`, which serves them with `ETag` (the
//!   git sha1) and `X-Repo-Commit`;
//! - `Range: bytes=N-` → `206` with `Content-Range`, or `416` past the end;
//! - errors as `401`/`404` with `X-Error-Code` (`RepoNotFound`, `GatedRepo`,
//!   `RevisionNotFound`, `EntryNotFound`) and `X-Error-Message`; a wrong token gets `401`
//!   "Invalid credentials in Authorization header"; the CDN refuses requests that carry the
//!   Hub token, as a signed S3 URL does.
//!
//! Tests inject faults per file (a connection cut after N bytes, an error status, a flipped
//! byte), make the server ignore `Range`, lie about sizes, and read the request log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{json, Value};

use crate::checksum::{git_sha1_hex, sha256_hex};
use crate::reference::is_commit_hash;

/// A file of a fake repository.
#[derive(Debug, Clone)]
pub struct FakeFile {
    pub path: String,
    pub bytes: Arc<Vec<u8>>,
    /// Stored with Git LFS (served from the CDN, named by sha256).
    pub lfs: bool,
    sha256: String,
    git_oid: String,
}

impl FakeFile {
    /// LFS as the Hub's `.gitattributes` makes it: `*.safetensors`, `*.bin`, or over 10 MiB.
    pub fn new(path: impl Into<String>, bytes: impl Into<Arc<Vec<u8>>>) -> FakeFile {
        let path = path.into();
        let bytes = bytes.into();
        let lfs =
            path.ends_with(".safetensors") || path.ends_with(".bin") || bytes.len() > 10 << 20;
        let sha256 = sha256_hex(&bytes);
        // An LFS file's git blob is its pointer.
        let git_oid = if lfs {
            git_sha1_hex(pointer(&sha256, bytes.len()).as_bytes())
        } else {
            git_sha1_hex(&bytes)
        };
        FakeFile {
            path,
            bytes,
            lfs,
            sha256,
            git_oid,
        }
    }

    /// What the cache names the blob: the sha256 for LFS files, the git sha1 otherwise.
    pub fn etag(&self) -> &str {
        if self.lfs {
            &self.sha256
        } else {
            &self.git_oid
        }
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

fn pointer(sha256: &str, size: usize) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

/// What the next download of a file gets instead of the plain file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The headers (with the full `Content-Length`) and this many body bytes, then a closed
    /// connection.
    CutAfter(u64),
    /// This status (for example 503) and no body.
    Status(u16),
    /// The body with one byte flipped in its middle.
    Corrupt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Hub,
    Cdn,
}

#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub origin: Origin,
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
    /// The repository file whose bytes this answer carried, if any.
    pub file: Option<String>,
    /// Body bytes sent.
    pub body_bytes: u64,
}

#[derive(Default)]
struct Repo {
    /// Gated: only `Authorization: Bearer <token>` may read.
    token: Option<String>,
    refs: HashMap<String, String>,
    commits: HashMap<String, BTreeMap<String, FakeFile>>,
    /// Sizes the API reports instead of the real ones.
    announced: HashMap<String, u64>,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, Repo>,
    lfs: HashMap<String, FakeFile>,
    faults: HashMap<String, VecDeque<Fault>>,
    ignore_range: bool,
    /// Bytes per second per download (0: as fast as loopback goes).
    throttle: u64,
    log: Vec<LoggedRequest>,
    commits_made: u64,
}

/// The running server; it stops when dropped.
pub struct FakeHub {
    state: Arc<Mutex<State>>,
    hub: SocketAddr,
    cdn: SocketAddr,
    shutdown: Arc<AtomicBool>,
    acceptors: Vec<JoinHandle<()>>,
}

impl FakeHub {
    pub fn start() -> FakeHub {
        let state = Arc::new(Mutex::new(State::default()));
        let shutdown = Arc::new(AtomicBool::new(false));
        let hub_listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake Hub");
        let cdn_listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake CDN");
        let hub = hub_listener.local_addr().expect("address");
        let cdn = cdn_listener.local_addr().expect("address");
        let acceptors = [(hub_listener, Origin::Hub), (cdn_listener, Origin::Cdn)]
            .into_iter()
            .map(|(listener, origin)| {
                let state = state.clone();
                let shutdown = shutdown.clone();
                std::thread::spawn(move || {
                    for stream in listener.incoming() {
                        if shutdown.load(Ordering::Relaxed) {
                            return;
                        }
                        let Ok(stream) = stream else { continue };
                        let state = state.clone();
                        std::thread::spawn(move || serve(stream, origin, &state, cdn));
                    }
                })
            })
            .collect();
        FakeHub {
            state,
            hub,
            cdn,
            shutdown,
            acceptors,
        }
    }

    /// The value for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.hub)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake hub state")
    }

    /// Commits `files` to `repo` (created if new) and points `branch` at the commit.
    pub fn push(&self, repo: &str, branch: &str, files: Vec<FakeFile>) -> String {
        let mut s = self.state();
        s.commits_made += 1;
        let mut seed = format!("{repo}\n{}\n", s.commits_made);
        for f in &files {
            seed.push_str(&format!("{} {}\n", f.path, f.etag()));
        }
        let commit = git_sha1_hex(seed.as_bytes());
        for f in files.iter().filter(|f| f.lfs) {
            s.lfs.insert(f.sha256.clone(), f.clone());
        }
        let r = s.repos.entry(repo.to_string()).or_default();
        r.commits.insert(
            commit.clone(),
            files.into_iter().map(|f| (f.path.clone(), f)).collect(),
        );
        r.refs.insert(branch.to_string(), commit.clone());
        commit
    }

    /// Points a branch or tag at a commit.
    pub fn set_ref(&self, repo: &str, name: &str, commit: &str) {
        let mut s = self.state();
        let r = s.repos.get_mut(repo).expect("push the repo first");
        r.refs.insert(name.to_string(), commit.to_string());
    }

    /// Makes `repo` gated: only this token reads it.
    pub fn gate(&self, repo: &str, token: &str) {
        let mut s = self.state();
        s.repos.get_mut(repo).expect("push the repo first").token = Some(token.to_string());
    }

    /// The next downloads of `path` (in any repository) get these faults, in order.
    pub fn inject(&self, path: &str, faults: impl IntoIterator<Item = Fault>) {
        self.state()
            .faults
            .entry(path.to_string())
            .or_default()
            .extend(faults);
    }

    /// Answer `Range` requests with the whole file (`200`), as some proxies do.
    pub fn ignore_range(&self, ignore: bool) {
        self.state().ignore_range = ignore;
    }

    /// Sends file bodies at about this many bytes per second each (for watching progress).
    pub fn throttle(&self, bytes_per_second: u64) {
        self.state().throttle = bytes_per_second;
    }

    /// The API reports `size` for `path` (the file itself is unchanged).
    pub fn announce_size(&self, repo: &str, path: &str, size: u64) {
        let mut s = self.state();
        let r = s.repos.get_mut(repo).expect("push the repo first");
        r.announced.insert(path.to_string(), size);
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state().log.clone()
    }

    pub fn clear_requests(&self) {
        self.state().log.clear();
    }

    /// The answers that carried bytes of `path`.
    pub fn downloads_of(&self, path: &str) -> Vec<LoggedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.file.as_deref() == Some(path) && r.method == "GET")
            .collect()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        // Wake the acceptors so that they see the flag.
        let _ = TcpStream::connect(self.hub);
        let _ = TcpStream::connect(self.cdn);
        for a in self.acceptors.drain(..) {
            let _ = a.join();
        }
    }
}

struct Request {
    method: String,
    target: String,
    path: String,
    query: String,
    headers: HashMap<String, String>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn query_flag(&self, name: &str) -> bool {
        self.query.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
            k == name && matches!(v.to_ascii_lowercase().as_str(), "true" | "1")
        })
    }
}

enum Body {
    Bytes(Vec<u8>),
    File {
        data: Arc<Vec<u8>>,
        start: usize,
        end: usize,
        cut_after: Option<u64>,
        corrupt: bool,
    },
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
    file: Option<String>,
}

impl Reply {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Bytes(body.into()),
            file: None,
        }
    }

    fn json(value: &Value) -> Reply {
        Reply::new(200, value.to_string()).header("Content-Type", "application/json")
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn hub_error(status: u16, code: Option<&str>, message: &str) -> Reply {
        let mut r = Reply::new(status, json!({ "error": message }).to_string())
            .header("Content-Type", "application/json")
            .header("X-Error-Message", message);
        if let Some(code) = code {
            r = r.header("X-Error-Code", code);
        }
        r
    }
}

fn serve(stream: TcpStream, origin: Origin, state: &Mutex<State>, cdn: SocketAddr) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let req = Request {
        method: method.to_string(),
        target: target.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
    };
    let (reply, throttle) = {
        let mut s = state.lock().expect("fake hub state");
        let reply = match origin {
            Origin::Hub => route_hub(&req, &mut s, cdn),
            Origin::Cdn => route_cdn(&req, &mut s),
        };
        (reply, s.throttle)
    };
    // Logged before the answer goes out: a client that has its answer must find it in the
    // log (tests read the log right after a call returns).
    let planned = match (&reply.body, req.method.as_str()) {
        (_, "HEAD") => 0,
        (Body::Bytes(b), _) => b.len() as u64,
        (
            Body::File {
                start,
                end,
                cut_after,
                ..
            },
            _,
        ) => cut_after.map_or((end - start) as u64, |c| c.min((end - start) as u64)),
    };
    let index = {
        let mut s = state.lock().expect("fake hub state");
        s.log.push(LoggedRequest {
            origin,
            method: req.method.clone(),
            target: req.target.clone(),
            range: req.header("range").map(str::to_string),
            authorization: req.header("authorization").map(str::to_string),
            status: reply.status,
            file: reply.file.clone(),
            body_bytes: planned,
        });
        s.log.len() - 1
    };
    let sent = write_reply(stream, &req, reply, throttle);
    if sent != planned {
        // The client left early: record what really went out.
        if let Some(entry) = state.lock().expect("fake hub state").log.get_mut(index) {
            entry.body_bytes = sent;
        }
    }
}

/// Writes the answer; returns the body bytes sent.
fn write_reply(mut stream: TcpStream, req: &Request, reply: Reply, throttle: u64) -> u64 {
    let (body, cut_after): (Vec<u8>, Option<u64>) = match reply.body {
        Body::Bytes(b) => (b, None),
        Body::File {
            data,
            start,
            end,
            cut_after,
            corrupt,
        } => {
            let mut b = data[start..end].to_vec();
            if corrupt && !b.is_empty() {
                let mid = b.len() / 2;
                b[mid] ^= 0xff;
            }
            (b, cut_after)
        }
    };
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    if stream.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    if req.method == "HEAD" {
        let _ = stream.flush();
        return 0;
    }
    let n = cut_after.map_or(body.len(), |c| (c as usize).min(body.len()));
    let chunk = if throttle > 0 { 64 << 10 } else { n.max(1) };
    let mut sent = 0u64;
    for piece in body[..n].chunks(chunk) {
        if stream.write_all(piece).is_err() {
            break;
        }
        sent += piece.len() as u64;
        if throttle > 0 {
            std::thread::sleep(std::time::Duration::from_secs_f64(
                piece.len() as f64 / throttle as f64,
            ));
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
    sent
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| segment.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn route_hub(req: &Request, s: &mut State, cdn: SocketAddr) -> Reply {
    let segments: Vec<String> = req
        .path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    match seg.as_slice() {
        ["api", "models", owner, name] => repo_info(req, s, &format!("{owner}/{name}"), "main"),
        ["api", "models", owner, name, "revision", rev @ ..] => {
            repo_info(req, s, &format!("{owner}/{name}"), &rev.join("/"))
        }
        ["api", "models", owner, name, "tree", rev, prefix @ ..] => {
            tree(req, s, &format!("{owner}/{name}"), rev, &prefix.join("/"))
        }
        ["api", "resolve-cache", "models", owner, name, commit, file @ ..] => {
            let repo = format!("{owner}/{name}");
            let file = file.join("/");
            let found = access(req, s, &repo)
                .and_then(|r| revision(r, commit))
                .and_then(|(_, files)| {
                    files
                        .get(&file)
                        .cloned()
                        .ok_or_else(|| entry_missing(commit))
                });
            match found {
                Ok(f) => serve_file(req, s, &f, commit),
                Err(reply) => reply,
            }
        }
        [owner, name, "resolve", rev, file @ ..] if !file.is_empty() => resolve(
            req,
            s,
            &format!("{owner}/{name}"),
            rev,
            &file.join("/"),
            cdn,
        ),
        _ => Reply::new(404, "Not Found"),
    }
}

fn route_cdn(req: &Request, s: &mut State) -> Reply {
    if req.header("authorization").is_some() {
        return Reply::new(
            400,
            "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
        );
    }
    let sha = req.path.trim_start_matches("/lfs/");
    match s.lfs.get(sha).cloned() {
        Some(f) => serve_file(req, s, &f, ""),
        None => Reply::new(404, "NoSuchKey"),
    }
}

/// The repository, if this request may read it.
fn access<'a>(req: &Request, s: &'a State, repo: &str) -> Result<&'a Repo, Reply> {
    let auth = req.header("authorization");
    let Some(r) = s.repos.get(repo) else {
        let status = if auth.is_some() { 404 } else { 401 };
        return Err(Reply::hub_error(
            status,
            Some("RepoNotFound"),
            "Repository not found",
        ));
    };
    if let Some(token) = &r.token {
        match auth {
            None => {
                return Err(Reply::hub_error(
                    401,
                    Some("GatedRepo"),
                    &format!(
                        "Access to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in."
                    ),
                ))
            }
            Some(a) if a != format!("Bearer {token}") => {
                return Err(Reply::hub_error(
                    401,
                    None,
                    "Invalid credentials in Authorization header",
                ))
            }
            Some(_) => {}
        }
    }
    Ok(r)
}

fn revision<'a>(r: &'a Repo, rev: &str) -> Result<(String, &'a BTreeMap<String, FakeFile>), Reply> {
    let commit = match r.refs.get(rev) {
        Some(c) => c.clone(),
        None if is_commit_hash(rev) && r.commits.contains_key(rev) => rev.to_string(),
        None => {
            return Err(Reply::hub_error(
                404,
                Some("RevisionNotFound"),
                &format!("Invalid rev id: {rev}"),
            ))
        }
    };
    let files = &r.commits[&commit];
    Ok((commit, files))
}

fn entry_missing(commit: &str) -> Reply {
    Reply::hub_error(404, Some("EntryNotFound"), "Entry not found").header("X-Repo-Commit", commit)
}

fn repo_info(req: &Request, s: &State, repo: &str, rev: &str) -> Reply {
    let r = match access(req, s, repo) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let (commit, files) = match revision(r, rev) {
        Ok(x) => x,
        Err(reply) => return reply,
    };
    let blobs = req.query_flag("blobs");
    let siblings: Vec<Value> = files
        .values()
        .map(|f| {
            if !blobs {
                return json!({ "rfilename": f.path });
            }
            let size = r
                .announced
                .get(&f.path)
                .copied()
                .unwrap_or(f.bytes.len() as u64);
            let mut v = json!({ "rfilename": f.path, "blobId": f.git_oid, "size": size });
            if f.lfs {
                v["lfs"] = json!({
                    "sha256": f.sha256,
                    "size": size,
                    "pointerSize": pointer(&f.sha256, f.bytes.len()).len(),
                });
            }
            v
        })
        .collect();
    Reply::json(&json!({
        "_id": format!("{:0>24}", &commit[..12]),
        "id": repo,
        "modelId": repo,
        "author": repo.split('/').next(),
        "sha": commit,
        "lastModified": "2025-08-05T00:00:00.000Z",
        "private": false,
        "disabled": false,
        "gated": if r.token.is_some() { json!("manual") } else { json!(false) },
        "library_name": "transformers",
        "tags": ["transformers", "safetensors", "gpt_oss"],
        "siblings": siblings,
    }))
}

fn tree(req: &Request, s: &State, repo: &str, rev: &str, prefix: &str) -> Reply {
    let r = match access(req, s, repo) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let (_, files) = match revision(r, rev) {
        Ok(x) => x,
        Err(reply) => return reply,
    };
    let recursive = req.query_flag("recursive");
    let base = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let mut dirs = std::collections::BTreeSet::new();
    let mut entries = Vec::new();
    for f in files.values() {
        let Some(rest) = f.path.strip_prefix(&base) else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        for depth in 1..parts.len() {
            if recursive || depth == 1 {
                dirs.insert(format!("{base}{}", parts[..depth].join("/")));
            }
        }
        if !recursive && parts.len() > 1 {
            continue;
        }
        let mut v = json!({
            "type": "file",
            "oid": f.git_oid,
            "size": f.bytes.len(),
            "path": f.path,
        });
        if f.lfs {
            v["lfs"] = json!({
                "oid": f.sha256,
                "size": f.bytes.len(),
                "pointerSize": pointer(&f.sha256, f.bytes.len()).len(),
            });
        }
        entries.push(v);
    }
    for d in dirs {
        entries.push(
            json!({ "type": "directory", "oid": git_sha1_hex(d.as_bytes()), "size": 0, "path": d }),
        );
    }
    Reply::json(&Value::Array(entries))
}

fn resolve(req: &Request, s: &State, repo: &str, rev: &str, path: &str, cdn: SocketAddr) -> Reply {
    let r = match access(req, s, repo) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let (commit, files) = match revision(r, rev) {
        Ok(x) => x,
        Err(reply) => return reply,
    };
    let Some(f) = files.get(path) else {
        return entry_missing(&commit);
    };
    if f.lfs {
        let location = format!("http://{cdn}/lfs/{}?X-Amz-Signature=fake", f.sha256);
        Reply::new(302, format!("Found. Redirecting to {location}"))
            .header("Location", location)
            .header("X-Repo-Commit", commit.as_str())
            .header("X-Linked-Etag", format!("\"{}\"", f.sha256))
            .header("X-Linked-Size", f.bytes.len().to_string())
            .header("ETag", format!("\"{}\"", f.git_oid))
    } else {
        let location = format!(
            "/api/resolve-cache/models/{repo}/{commit}/{path}?etag=%22{}%22",
            f.git_oid
        );
        Reply::new(
            307,
            format!("Temporary Redirect. Redirecting to {location}"),
        )
        .header("Location", location)
        .header("X-Repo-Commit", commit.as_str())
        .header("ETag", format!("\"{}\"", f.git_oid))
    }
}

/// The file's bytes (all, or from `Range`), with the next injected fault applied.
fn serve_file(req: &Request, s: &mut State, f: &FakeFile, commit: &str) -> Reply {
    let len = f.bytes.len();
    let fault = if req.method == "GET" {
        s.faults.get_mut(&f.path).and_then(VecDeque::pop_front)
    } else {
        None
    };
    let with_meta = |r: Reply| {
        let mut r = r
            .header("Accept-Ranges", "bytes")
            .header("Content-Type", "application/octet-stream");
        if !commit.is_empty() {
            r = r
                .header("X-Repo-Commit", commit)
                .header("ETag", format!("\"{}\"", f.etag()));
        } else {
            r = r.header("ETag", format!("\"{}\"", f.sha256));
        }
        r
    };
    if let Some(Fault::Status(status)) = fault {
        let mut r = Reply::new(status, "");
        r.file = Some(f.path.clone());
        return r;
    }
    let requested = req
        .header("range")
        .filter(|_| !s.ignore_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| {
            let (a, b) = r.split_once('-')?;
            let a: usize = a.parse().ok()?;
            let b: Option<usize> = if b.is_empty() { None } else { b.parse().ok() };
            Some((a, b))
        });
    let (status, start, end) = match requested {
        Some((a, _)) if a >= len => {
            return with_meta(Reply::new(416, "")).header("Content-Range", format!("bytes */{len}"))
        }
        Some((a, b)) => (206, a, b.map_or(len, |b| (b + 1).min(len))),
        None => (200, 0, len),
    };
    let mut reply = with_meta(Reply {
        status,
        headers: Vec::new(),
        body: Body::File {
            data: f.bytes.clone(),
            start,
            end,
            cut_after: match fault {
                Some(Fault::CutAfter(n)) => Some(n),
                _ => None,
            },
            corrupt: fault == Some(Fault::Corrupt),
        },
        file: Some(f.path.clone()),
    });
    if status == 206 {
        reply = reply.header(
            "Content-Range",
            format!("bytes {start}-{}/{len}", end.saturating_sub(1)),
        );
    }
    reply
}
