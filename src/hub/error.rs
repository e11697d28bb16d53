//! Hub errors: every failure the Hub can answer with becomes one variant whose message is one
//! sentence that says what to do.

use reqwest::StatusCode;

/// A failed Hub operation.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Gated repository and no token, or a token whose account has not been granted access.
    #[error("{}", gated_message(repo, *authenticated, url))]
    GatedRepo {
        repo: String,
        authenticated: bool,
        url: String,
    },
    /// Missing repository, or a private one this token cannot read (the Hub does not tell which).
    #[error("{}", not_found_message(repo, *authenticated))]
    RepoNotFound { repo: String, authenticated: bool },
    /// The branch, tag or commit does not exist.
    #[error("revision `{revision}` does not exist in {repo}: check the branch, tag or commit id")]
    RevisionNotFound { repo: String, revision: String },
    /// The file does not exist at that revision.
    #[error("file `{path}` does not exist in {repo} at `{revision}`")]
    EntryNotFound {
        repo: String,
        revision: String,
        path: String,
    },
    /// The Hub refused the token itself.
    #[error("the Hub rejected the token as invalid: check HF_TOKEN or --token (public repositories need none)")]
    InvalidToken,
    /// The repository was disabled by the Hub.
    #[error("repository {repo} has been disabled on the Hub and cannot be downloaded")]
    Disabled { repo: String },
    /// 429 answers outlasted the retry budget.
    #[error("the Hub is rate-limiting requests (HTTP 429) and still was after {attempts} attempts{}: retry later, or use a token for a higher limit", wait_hint(*retry_after_secs))]
    RateLimited {
        attempts: u32,
        retry_after_secs: Option<u64>,
    },
    /// 5xx answers outlasted the retry budget.
    #[error("the Hub answered HTTP {status} to {attempts} attempts at {url}: it may be down, retry later")]
    Server {
        status: u16,
        attempts: u32,
        url: String,
    },
    /// Any other refusal (400, 403 without a gate, 416, ...).
    #[error("the Hub refused {url} with HTTP {status}{}", detail(message))]
    Refused {
        status: u16,
        url: String,
        message: String,
    },
    /// The Hub could not be reached, or a transfer kept failing, within the retry budget.
    #[error("cannot reach the Hub at {url} after {attempts} attempts (check the network, HF_ENDPOINT or --endpoint)")]
    Network {
        url: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    /// The Hub answered something we cannot use (malformed JSON, bad ids, inconsistent sizes).
    #[error("unexpected answer from the Hub at {url}: {what}")]
    Protocol { url: String, what: String },
}

impl HubError {
    /// Whether trying the same operation again later could succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HubError::RateLimited { .. } | HubError::Server { .. } | HubError::Network { .. }
        )
    }
}

fn gated_message(repo: &str, authenticated: bool, url: &str) -> String {
    if authenticated {
        format!("{repo} is a gated repository and the token's account has no access yet: accept its terms at {url} with that account, or use a token of an account that has")
    } else {
        format!("{repo} is a gated repository: accept its terms at {url} and set HF_TOKEN (or --token) to a token of that account")
    }
}

fn not_found_message(repo: &str, authenticated: bool) -> String {
    if authenticated {
        format!("repository {repo} was not found, or the token cannot read it: check the name and the token's access")
    } else {
        format!("repository {repo} was not found: check the name; if it is private, set HF_TOKEN (or --token) to a token that can read it")
    }
}

fn wait_hint(secs: Option<u64>) -> String {
    secs.map(|s| format!(" (it asked to wait {s} s)"))
        .unwrap_or_default()
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// What a request was about, to name it in errors.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Repository id.
    pub repo: String,
    /// Revision asked for.
    pub revision: String,
    /// File path, for file requests.
    pub path: Option<String>,
    /// Whether a token was sent.
    pub authenticated: bool,
    /// Web page of the repository (to accept a gate's terms).
    pub repo_url: String,
}

/// Turns a non-success, non-retryable answer into an error, from its status and the Hub's
/// `X-Error-Code` / `X-Error-Message` headers and JSON `error` body (hf-hub.md §3.5).
pub fn classify(
    status: StatusCode,
    error_code: Option<&str>,
    error_message: Option<&str>,
    body_message: &str,
    url: &str,
    ctx: &RequestContext,
) -> HubError {
    let repo = ctx.repo.clone();
    match error_code {
        Some("RevisionNotFound") => {
            return HubError::RevisionNotFound {
                repo,
                revision: ctx.revision.clone(),
            }
        }
        Some("EntryNotFound") => {
            return HubError::EntryNotFound {
                repo,
                revision: ctx.revision.clone(),
                path: ctx.path.clone().unwrap_or_default(),
            }
        }
        Some("GatedRepo") => {
            return HubError::GatedRepo {
                repo,
                authenticated: ctx.authenticated,
                url: ctx.repo_url.clone(),
            }
        }
        Some("RepoNotFound") => {
            return HubError::RepoNotFound {
                repo,
                authenticated: ctx.authenticated,
            }
        }
        _ => {}
    }
    if error_message == Some("Access to this resource is disabled.") {
        return HubError::Disabled { repo };
    }
    match status.as_u16() {
        401 if body_message.contains("Invalid credentials")
            || error_message.is_some_and(|m| m.contains("Invalid credentials")) =>
        {
            HubError::InvalidToken
        }
        401 => HubError::RepoNotFound {
            repo,
            authenticated: ctx.authenticated,
        },
        404 if ctx.path.is_none() => HubError::RepoNotFound {
            repo,
            authenticated: ctx.authenticated,
        },
        404 => HubError::EntryNotFound {
            repo,
            revision: ctx.revision.clone(),
            path: ctx.path.clone().unwrap_or_default(),
        },
        s => HubError::Refused {
            status: s,
            url: url.to_string(),
            message: error_message
                .unwrap_or(body_message)
                .chars()
                .take(300)
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(authenticated: bool) -> RequestContext {
        RequestContext {
            repo: "acme/x".into(),
            revision: "main".into(),
            path: Some("config.json".into()),
            authenticated,
            repo_url: "https://huggingface.co/acme/x".into(),
        }
    }

    #[test]
    fn error_codes_map_to_one_clear_sentence() {
        let c = |status: u16, code: Option<&str>, auth: bool| {
            classify(
                StatusCode::from_u16(status).unwrap(),
                code,
                None,
                "",
                "u",
                &ctx(auth),
            )
            .to_string()
        };
        let m = c(401, Some("GatedRepo"), false);
        assert!(
            m.contains("gated")
                && m.contains("HF_TOKEN")
                && m.contains("https://huggingface.co/acme/x"),
            "{m}"
        );
        let m = c(403, Some("GatedRepo"), true);
        assert!(m.contains("no access yet"), "{m}");
        let m = c(401, Some("RepoNotFound"), false);
        assert!(m.contains("not found") && m.contains("private"), "{m}");
        assert!(c(404, Some("RevisionNotFound"), false).contains("revision `main` does not exist"));
        assert!(c(404, Some("EntryNotFound"), false).contains("file `config.json` does not exist"));
        assert!(
            c(401, None, false).contains("not found"),
            "bare 401 is a missing or private repo"
        );
        let m = classify(
            StatusCode::BAD_REQUEST,
            None,
            None,
            "bad thing",
            "http://h/x",
            &ctx(false),
        )
        .to_string();
        assert!(m.contains("HTTP 400") && m.contains("bad thing"), "{m}");
        for m in [
            c(401, Some("GatedRepo"), false),
            c(404, Some("RepoNotFound"), true),
        ] {
            assert!(!m.contains('\n'), "one line: {m}");
        }
    }

    #[test]
    fn disabled_and_invalid_token() {
        let e = classify(
            StatusCode::FORBIDDEN,
            None,
            Some("Access to this resource is disabled."),
            "",
            "u",
            &ctx(true),
        );
        assert!(matches!(e, HubError::Disabled { .. }));
        let e = classify(
            StatusCode::UNAUTHORIZED,
            None,
            None,
            "Invalid credentials in Authorization header",
            "u",
            &ctx(true),
        );
        assert!(matches!(e, HubError::InvalidToken));
        assert!(!e.is_retryable());
    }
}
