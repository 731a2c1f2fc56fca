//! Where the Hub is, where the cache lives, who we are: read from the same environment
//! variables, with the same precedence, as Python's `huggingface_hub`, so both tools share one
//! cache and one login.

use std::path::PathBuf;

use crate::error::{HubError, Result};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[derive(Debug, Clone)]
pub struct HubSettings {
    /// `HF_ENDPOINT`, without a trailing slash.
    pub endpoint: String,
    /// The hub cache: `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    pub cache_dir: PathBuf,
    /// `HF_TOKEN`, else the file `huggingface-cli login` writes (`HF_TOKEN_PATH`, else
    /// `$HF_HOME/token`).
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) set to 1 / true / yes / on.
    pub offline: bool,
}

impl HubSettings {
    pub fn from_env() -> Result<HubSettings> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads settings through `var` (tests pass their own environment instead of mutating the
    /// process's).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<HubSettings> {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let home = || var("HOME").map(PathBuf::from);
        let expand = |v: String| -> PathBuf {
            match (v.strip_prefix("~/"), home()) {
                (Some(rest), Some(h)) => h.join(rest),
                _ if v == "~" => home().unwrap_or_else(|| PathBuf::from(v)),
                _ => PathBuf::from(v),
            }
        };
        let hf_home = match (var("HF_HOME"), var("XDG_CACHE_HOME")) {
            (Some(h), _) => expand(h),
            (None, Some(x)) => expand(x).join("huggingface"),
            (None, None) => match home() {
                Some(h) => h.join(".cache/huggingface"),
                None => {
                    return Err(HubError::BadSetting {
                        var: "HOME",
                        reason: "not set; set HF_HOME or HF_HUB_CACHE to say where the cache is"
                            .into(),
                    })
                }
            },
        };
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(expand)
            .unwrap_or_else(|| hf_home.join("hub"));

        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let endpoint = endpoint.trim_end_matches('/').to_string();
        match url::Url::parse(&endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(HubError::BadSetting {
                    var: "HF_ENDPOINT",
                    reason: format!("`{endpoint}` is not an http(s) URL"),
                })
            }
        }

        let token = match var("HF_TOKEN") {
            Some(t) => Some(t),
            None => {
                let path = var("HF_TOKEN_PATH")
                    .map(expand)
                    .unwrap_or_else(|| hf_home.join("token"));
                std::fs::read_to_string(path).ok()
            }
        }
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());

        let truthy = |name: &str| {
            var(name).is_some_and(|v| {
                matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE")
            })
        };
        let offline = truthy("HF_HUB_OFFLINE") || truthy("TRANSFORMERS_OFFLINE");

        Ok(HubSettings {
            endpoint,
            cache_dir,
            token,
            offline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<HubSettings> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubSettings::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn precedence_matches_huggingface_hub() {
        let s = settings(&[("HOME", "/home/u")]).unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert_eq!(s.endpoint, "https://huggingface.co");
        assert!(!s.offline);
        let s = settings(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]).unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/xdg/huggingface/hub"));
        let s = settings(&[("HOME", "/home/u"), ("HF_HOME", "~/hf")]).unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/home/u/hf/hub"));
        let s = settings(&[
            ("HF_HOME", "/hf"),
            ("HUGGINGFACE_HUB_CACHE", "/legacy"),
            ("HF_HUB_CACHE", "/new"),
        ])
        .unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/new"));
        let s = settings(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy")]).unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/legacy"));
    }

    #[test]
    fn endpoint_token_offline() {
        let s = settings(&[
            ("HF_HOME", "/nonexistent"),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_TOKEN", " hf_abc\n"),
            ("HF_HUB_OFFLINE", "yes"),
        ])
        .unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:9");
        assert_eq!(s.token.as_deref(), Some("hf_abc"));
        assert!(s.offline);
        let s = settings(&[("HF_HOME", "/nonexistent"), ("HF_HUB_OFFLINE", "0")]).unwrap();
        assert!(!s.offline);
        assert_eq!(s.token, None);
        let e = settings(&[("HF_HOME", "/x"), ("HF_ENDPOINT", "huggingface.co")]).unwrap_err();
        assert!(e.to_string().starts_with("HF_ENDPOINT: "), "{e}");
    }

    #[test]
    fn token_file_from_login() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_from_file\n").unwrap();
        let home = dir.path().to_str().unwrap();
        let s = settings(&[("HF_HOME", home)]).unwrap();
        assert_eq!(s.token.as_deref(), Some("hf_from_file"));
        let s = settings(&[("HF_HOME", home), ("HF_TOKEN", "hf_env")]).unwrap();
        assert_eq!(s.token.as_deref(), Some("hf_env"));
    }
}
