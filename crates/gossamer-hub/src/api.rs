//! The two Hub routes a download needs, over a blocking HTTP client:
//!
//! - `GET /api/models/{repo}/revision/{rev}?blobs=true`: the commit a revision points at
//!   (`sha`) and its files (`siblings`), each with its size and checksum (`blobId`, the git
//!   sha1, or `lfs.sha256` for large files);
//! - `GET /{repo}/resolve/{commit}/{file}`, which answers the file (small files, possibly after
//!   a relative redirect) or redirects to a CDN (LFS files), honouring `Range` for resumes.
//!
//! Redirects are followed by hand: the token goes to the Hub's own origin only (a signed CDN
//! URL refuses a second credential), and relative redirects stay on the Hub. Errors are mapped
//! from the Hub's `X-Error-Code` header, not guessed from the status.

use std::io::Read;
use std::time::Duration;

use serde::Deserialize;
use ureq::http::{HeaderMap, Response};
use url::Url;

use crate::error::{HubError, Result};
use crate::reference::{is_commit_hash, RepoRef};
use crate::settings::HubSettings;

const MAX_REDIRECTS: usize = 10;

/// A repository at a commit, as `/api/models/{repo}/revision/{rev}?blobs=true` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct RepoInfo {
    pub sha: Option<String>,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Sibling {
    pub rfilename: String,
    pub size: Option<u64>,
    #[serde(rename = "blobId")]
    pub blob_id: Option<String>,
    pub lfs: Option<LfsInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LfsInfo {
    pub sha256: String,
    pub size: u64,
}

/// Why fetching a file failed: worth another try (the network), or not (the Hub said no).
#[derive(Debug)]
pub(crate) enum FetchError {
    /// No answer: the host is unknown or unreachable, or the connection broke.
    Unreachable(String),
    /// An answer that says "try later" (408, 429, 5xx).
    Transient(String),
    /// The server cannot serve the asked range (the partial file is longer than the file).
    RangeNotSatisfiable,
    Fatal(HubError),
}

/// A file body, from `start` on.
pub(crate) struct FileBody {
    pub start: u64,
    pub reader: Box<dyn Read + Send>,
}

pub(crate) struct HubClient {
    agent: ureq::Agent,
    endpoint: Url,
    token: Option<String>,
}

impl HubClient {
    pub fn new(settings: &HubSettings) -> Result<HubClient> {
        let endpoint = Url::parse(&settings.endpoint).map_err(|e| HubError::BadSetting {
            var: "HF_ENDPOINT",
            reason: format!("`{}`: {e}", settings.endpoint),
        })?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(format!("gossamer/{}", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // A stalled transfer is retried (and resumed) rather than waited on forever.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build()
            .into();
        Ok(HubClient {
            agent,
            endpoint,
            token: settings.token.clone(),
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .expect("an http(s) endpoint has a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// The commit `r` points at and its files, with sizes and checksums.
    pub fn repo_info(&self, r: &RepoRef) -> Result<RepoInfo> {
        let (owner, name) = r.repo_id.split_once('/').expect("validated owner/name");
        let mut url = self.url(&["api", "models", owner, name, "revision", r.revision()]);
        url.set_query(Some("blobs=true"));
        let context = Context {
            repo: r,
            file: None,
        };
        let response = self.get(url.clone(), None).map_err(|e| match e {
            FetchError::Fatal(e) => e,
            FetchError::Transient(detail) | FetchError::Unreachable(detail) => {
                HubError::Unreachable {
                    endpoint: self.endpoint.as_str().trim_end_matches('/').to_string(),
                    detail,
                }
            }
            FetchError::RangeNotSatisfiable => unreachable!("no range asked"),
        })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(self.status_error(status, response.headers(), &url, &context));
        }
        let body = response
            .into_body()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| HubError::Unreachable {
                endpoint: self.endpoint.as_str().trim_end_matches('/').to_string(),
                detail: e.to_string(),
            })?;
        let info: RepoInfo = serde_json::from_slice(&body).map_err(|e| HubError::Protocol {
            url: url.to_string(),
            detail: format!("not a repository description ({e}); does HF_ENDPOINT point at a Hub?"),
        })?;
        if !info.sha.as_deref().is_some_and(is_commit_hash) {
            return Err(HubError::Protocol {
                url: url.to_string(),
                detail: "no commit hash (`sha`) in the repository description".into(),
            });
        }
        Ok(info)
    }

    /// Opens `path` at `commit` from byte `offset` on.
    pub fn open_file(
        &self,
        r: &RepoRef,
        commit: &str,
        path: &str,
        offset: u64,
    ) -> Result<FileBody, FetchError> {
        let (owner, name) = r.repo_id.split_once('/').expect("validated owner/name");
        let mut segments = vec![owner, name, "resolve", commit];
        segments.extend(path.split('/'));
        let url = self.url(&segments);
        let context = Context {
            repo: r,
            file: Some(path),
        };
        let response = self
            .get(url.clone(), (offset > 0).then_some(offset))
            .map_err(|e| match e {
                FetchError::Unreachable(d) => FetchError::Transient(d),
                e => e,
            })?;
        let status = response.status().as_u16();
        let start = match status {
            200 => 0,
            206 => content_range_start(response.headers()).ok_or_else(|| {
                FetchError::Fatal(HubError::Protocol {
                    url: url.to_string(),
                    detail: "206 without a readable Content-Range".into(),
                })
            })?,
            416 => return Err(FetchError::RangeNotSatisfiable),
            408 | 429 | 500..=599 => return Err(FetchError::Transient(format!("HTTP {status}"))),
            _ => {
                return Err(FetchError::Fatal(self.status_error(
                    status,
                    response.headers(),
                    &url,
                    &context,
                )))
            }
        };
        Ok(FileBody {
            start,
            reader: Box::new(response.into_body().into_reader()),
        })
    }

    /// GET with redirects followed by hand (see the module's notes).
    fn get(
        &self,
        mut url: Url,
        range_from: Option<u64>,
    ) -> Result<Response<ureq::Body>, FetchError> {
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self
                .agent
                .get(url.as_str())
                // The sizes and checksums are those of the stored bytes.
                .header("Accept-Encoding", "identity");
            if let Some(token) = &self.token {
                if url.origin() == self.endpoint.origin() {
                    request = request.header("Authorization", format!("Bearer {token}"));
                }
            }
            if let Some(from) = range_from {
                request = request.header("Range", format!("bytes={from}-"));
            }
            tracing::debug!(%url, ?range_from, "GET");
            let response = request.call().map_err(|e| transport_error(&url, e))?;
            let status = response.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                return Ok(response);
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    FetchError::Fatal(HubError::Protocol {
                        url: url.to_string(),
                        detail: format!("redirect {status} without a Location"),
                    })
                })?;
            url = url.join(location).map_err(|e| {
                FetchError::Fatal(HubError::Protocol {
                    url: url.to_string(),
                    detail: format!("bad redirect `{location}`: {e}"),
                })
            })?;
        }
        Err(FetchError::Fatal(HubError::Protocol {
            url: url.to_string(),
            detail: format!("more than {MAX_REDIRECTS} redirects"),
        }))
    }

    /// Maps an error answer to what it means, by the Hub's `X-Error-Code` first.
    fn status_error(&self, status: u16, headers: &HeaderMap, url: &Url, c: &Context) -> HubError {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let message = header("x-error-message");
        let repo = c.repo.repo_id.clone();
        let endpoint = self.endpoint.as_str().trim_end_matches('/').to_string();
        if status == 401 && message.is_some_and(|m| m.contains("Invalid credentials")) {
            return HubError::BadToken { endpoint };
        }
        match header("x-error-code") {
            Some("RepoNotFound") => HubError::RepoNotFound { repo, endpoint },
            Some("GatedRepo") => HubError::GatedRepo {
                page: format!("{endpoint}/{repo}"),
                repo,
            },
            Some("RevisionNotFound") => HubError::RevisionNotFound {
                repo,
                revision: c.repo.revision().to_string(),
            },
            Some("EntryNotFound") => HubError::EntryNotFound {
                repo,
                revision: c.repo.revision().to_string(),
                file: c.file.unwrap_or("a file").to_string(),
            },
            // Without a code, a 401 is how the Hub hides private repositories.
            _ if status == 401 => HubError::RepoNotFound { repo, endpoint },
            _ => HubError::Status {
                url: url.to_string(),
                status,
                message: message.map(|m| format!(": {m}")).unwrap_or_default(),
            },
        }
    }
}

struct Context<'a> {
    repo: &'a RepoRef,
    file: Option<&'a str>,
}

fn transport_error(url: &Url, e: ureq::Error) -> FetchError {
    let host = url.host_str().unwrap_or("?");
    FetchError::Unreachable(match e {
        ureq::Error::HostNotFound => format!("host {host} not found"),
        ureq::Error::Io(io) => format!("{host}: {io}"),
        other => format!("{host}: {other}"),
    })
}

/// `bytes 100-199/1000` → 100.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get("content-range")?.to_str().ok()?;
    let range = v.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        let mut h = HeaderMap::new();
        h.insert("content-range", "bytes 100-199/1000".parse().unwrap());
        assert_eq!(content_range_start(&h), Some(100));
        h.insert("content-range", "bytes */1000".parse().unwrap());
        assert_eq!(content_range_start(&h), None);
    }
}
