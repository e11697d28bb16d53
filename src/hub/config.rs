//! Which Hub to talk to and with which token: `--endpoint` else `HF_ENDPOINT`; `--token` else
//! `HF_TOKEN` (legacy `HUGGING_FACE_HUB_TOKEN`) else `RUNPOD_HUGGINGFACE_TOKEN` else the token
//! file (`HF_TOKEN_PATH`, default `HF_HOME/token`).

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::retry::RetryPolicy;

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Everything the Hub client needs to know, resolved once.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Base URL of the Hub (no trailing `/`).
    pub endpoint: Url,
    /// Bearer token, if any.
    pub token: Option<String>,
    /// Retry policy for 429, 5xx and network failures.
    pub retry: RetryPolicy,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Longest silence allowed while reading an answer (a stalled transfer fails after this).
    pub read_timeout: Duration,
}

/// A bad `--endpoint` / `HF_ENDPOINT`.
#[derive(Debug, thiserror::Error)]
#[error("Hub endpoint `{value}` is not a valid http(s) URL: set --endpoint or HF_ENDPOINT to one like https://huggingface.co")]
pub struct BadEndpoint {
    /// The value given.
    pub value: String,
}

impl HubConfig {
    /// Resolves the configuration from flags and the environment (`env` looks up a variable).
    pub fn resolve(
        endpoint_flag: Option<&str>,
        token_flag: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<HubConfig, BadEndpoint> {
        let raw = endpoint_flag
            .map(str::to_string)
            .or_else(|| env("HF_ENDPOINT").filter(|v| !v.trim().is_empty()))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let endpoint = parse_endpoint(&raw).ok_or(BadEndpoint { value: raw })?;
        Ok(HubConfig {
            endpoint,
            token: resolve_token(token_flag, env),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        })
    }

    /// A configuration for `endpoint` with no token and default timeouts.
    pub fn for_endpoint(endpoint: &str) -> Result<HubConfig, BadEndpoint> {
        HubConfig::resolve(Some(endpoint), None, &|_| None)
    }
}

fn parse_endpoint(raw: &str) -> Option<Url> {
    let url = Url::parse(raw.trim().trim_end_matches('/')).ok()?;
    let ok =
        matches!(url.scheme(), "http" | "https") && url.host().is_some() && url.query().is_none();
    ok.then_some(url)
}

/// The token: flag, `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN`, `RUNPOD_HUGGINGFACE_TOKEN`, token file.
/// CR and LF are removed and blanks trimmed; an empty token is no token.
pub fn resolve_token(flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let clean =
        |t: String| Some(t.replace(['\r', '\n'], "").trim().to_string()).filter(|t| !t.is_empty());
    if let Some(t) = flag {
        return clean(t.to_string());
    }
    for var in [
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "RUNPOD_HUGGINGFACE_TOKEN",
    ] {
        if let Some(t) = env(var).and_then(clean) {
            return Some(t);
        }
    }
    let path = env("HF_TOKEN_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::cache::layout::hf_home(env).join("token"));
    std::fs::read_to_string(path).ok().and_then(clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn endpoint_precedence_and_validation() {
        let env = env_of(&[("HF_ENDPOINT", "http://127.0.0.1:9/".into())]);
        assert_eq!(
            HubConfig::resolve(None, None, &env)
                .unwrap()
                .endpoint
                .as_str(),
            "http://127.0.0.1:9/"
        );
        let c = HubConfig::resolve(Some("https://mirror.example"), None, &env).unwrap();
        assert_eq!(c.endpoint.host_str(), Some("mirror.example"));
        assert_eq!(
            HubConfig::resolve(None, None, &|_| None)
                .unwrap()
                .endpoint
                .as_str(),
            "https://huggingface.co/"
        );
        let e = HubConfig::resolve(Some("ftp://x"), None, &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("HF_ENDPOINT"), "{e}");
    }

    #[test]
    fn token_precedence() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_file\n").unwrap();
        let home = dir.path().to_string_lossy().to_string();
        let full = env_of(&[
            ("HF_TOKEN", "hf_env".into()),
            ("RUNPOD_HUGGINGFACE_TOKEN", "hf_runpod".into()),
            ("HF_HOME", home.clone()),
        ]);
        assert_eq!(
            resolve_token(Some(" hf_flag\r\n"), &full).as_deref(),
            Some("hf_flag")
        );
        assert_eq!(resolve_token(None, &full).as_deref(), Some("hf_env"));
        let runpod = env_of(&[
            ("RUNPOD_HUGGINGFACE_TOKEN", "hf_runpod".into()),
            ("HF_HOME", home.clone()),
        ]);
        assert_eq!(resolve_token(None, &runpod).as_deref(), Some("hf_runpod"));
        let file = env_of(&[("HF_TOKEN", "".into()), ("HF_HOME", home)]);
        assert_eq!(resolve_token(None, &file).as_deref(), Some("hf_file"));
        assert_eq!(
            resolve_token(None, &env_of(&[("HF_HOME", "/nonexistent".into())])),
            None
        );
    }
}
