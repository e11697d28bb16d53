//! Parsing of raw hub request paths: every segment percent-decoded, repo ids of one or two
//! segments (a known two-segment id wins), revisions such as `refs%2Fpr%2F1`.

use axum::http::Method;
use percent_encoding::percent_decode_str;

use crate::repo::RepoKind;

/// A parsed hub request. Ids, revisions and paths are decoded but not yet validated.
#[derive(Debug, PartialEq)]
pub(crate) enum HubRoute {
    Info {
        kind: RepoKind,
        id: String,
        rev: Option<String>,
    },
    Tree {
        kind: RepoKind,
        id: String,
        rev: String,
        dir: Option<String>,
    },
    Resolve {
        kind: RepoKind,
        id: String,
        rev: String,
        path: String,
    },
    AgentHarnesses,
    Other,
}

impl HubRoute {
    pub(crate) fn label(&self, method: &Method) -> &'static str {
        match self {
            HubRoute::Info { .. } => "api_info",
            HubRoute::Tree { .. } => "api_tree",
            HubRoute::Resolve { .. } if method == Method::HEAD => "resolve_head",
            HubRoute::Resolve { .. } => "resolve_get",
            HubRoute::AgentHarnesses => "agent_harnesses",
            HubRoute::Other => "other",
        }
    }

    /// Parses a raw (still percent-encoded) path. `known` says whether a repo id exists, to
    /// choose between one- and two-segment ids.
    pub(crate) fn parse(
        method: &Method,
        raw_path: &str,
        known: impl Fn(RepoKind, &str) -> bool,
    ) -> HubRoute {
        if method != Method::GET && method != Method::HEAD {
            return HubRoute::Other;
        }
        let Some(segs) = decode_segments(raw_path) else {
            return HubRoute::Other;
        };
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let (kind, rest, api) = match s.as_slice() {
            ["api", "agent-harnesses"] => return HubRoute::AgentHarnesses,
            ["api", "models", rest @ ..] => (RepoKind::Model, rest, true),
            ["api", "datasets", rest @ ..] => (RepoKind::Dataset, rest, true),
            ["api", ..] => return HubRoute::Other,
            ["datasets", rest @ ..] => (RepoKind::Dataset, rest, false),
            rest => (RepoKind::Model, rest, false),
        };
        let keywords: &[&str] = if api {
            &["revision", "tree"]
        } else {
            &["resolve"]
        };
        let Some((id, after)) = split_id(rest, keywords, api, |id| known(kind, id)) else {
            return HubRoute::Other;
        };
        match after {
            [] if api => HubRoute::Info {
                kind,
                id,
                rev: None,
            },
            ["revision", rev @ ..] if api && !rev.is_empty() => HubRoute::Info {
                kind,
                id,
                rev: Some(rev.join("/")),
            },
            ["tree", rev @ ..] if api && !rev.is_empty() => {
                let (rev, dir) = split_rev(rev);
                let dir = dir.join("/");
                HubRoute::Tree {
                    kind,
                    id,
                    rev,
                    dir: (!dir.is_empty()).then_some(dir),
                }
            }
            ["resolve", rev @ ..] if !api && rev.len() >= 2 => {
                let (rev, path) = split_rev(rev);
                if path.is_empty() {
                    return HubRoute::Other;
                }
                HubRoute::Resolve {
                    kind,
                    id,
                    rev,
                    path: path.join("/"),
                }
            }
            _ => HubRoute::Other,
        }
    }
}

/// Percent-decodes every segment of a path; `None` if one is not UTF-8.
fn decode_segments(raw: &str) -> Option<Vec<String>> {
    let raw = raw.strip_prefix('/')?;
    raw.split('/')
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        })
        .collect()
}

/// Splits `segs` into a repo id of one or two segments and what follows it. The id must be
/// followed by one of `keywords` (or by nothing, if `bare` is allowed). A known two-segment id
/// wins over a known one-segment id; an unknown id takes the two-segment shape if it fits.
fn split_id<'a, 'b>(
    segs: &'a [&'b str],
    keywords: &[&str],
    bare: bool,
    known: impl Fn(&str) -> bool,
) -> Option<(String, &'a [&'b str])> {
    let fits = |n: usize| segs.len() >= n && segs.get(n).map_or(bare, |k| keywords.contains(k));
    let two = fits(2).then(|| format!("{}/{}", segs[0], segs[1]));
    let one = fits(1).then(|| segs[0].to_string());
    match (two, one) {
        (Some(id), _) if known(&id) => Some((id, &segs[2..])),
        (_, Some(id)) if known(&id) => Some((id, &segs[1..])),
        (Some(id), _) => Some((id, &segs[2..])),
        (None, Some(id)) => Some((id, &segs[1..])),
        (None, None) => None,
    }
}

/// The revision at the head of `segs`: one (decoded) segment, or an unencoded `refs/pr/N`.
fn split_rev<'a, 'b>(segs: &'a [&'b str]) -> (String, &'a [&'b str]) {
    match segs {
        ["refs", "pr", n, rest @ ..] => (format!("refs/pr/{n}"), rest),
        [rev, rest @ ..] => (rev.to_string(), rest),
        [] => (String::new(), segs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> HubRoute {
        HubRoute::parse(&Method::GET, path, |_, id| id == "gpt2" || id == "acme/x")
    }

    #[test]
    fn parses_routes() {
        use RepoKind::*;
        let info = |kind, id: &str, rev: Option<&str>| HubRoute::Info {
            kind,
            id: id.into(),
            rev: rev.map(Into::into),
        };
        assert_eq!(parse("/api/models/acme/x"), info(Model, "acme/x", None));
        assert_eq!(parse("/api/models/gpt2"), info(Model, "gpt2", None));
        assert_eq!(
            parse("/api/models/gpt2/revision/main"),
            info(Model, "gpt2", Some("main"))
        );
        assert_eq!(
            parse("/api/datasets/o/d/revision/refs%2Fpr%2F1"),
            info(Dataset, "o/d", Some("refs/pr/1"))
        );
        assert_eq!(
            parse("/api/models/o/missing/revision/main"),
            info(Model, "o/missing", Some("main"))
        );
        assert_eq!(
            parse("/api/models/acme/x/tree/main/a%2Fb"),
            HubRoute::Tree {
                kind: Model,
                id: "acme/x".into(),
                rev: "main".into(),
                dir: Some("a/b".into())
            }
        );
        assert_eq!(
            parse("/api/models/gpt2/tree/refs/pr/2"),
            HubRoute::Tree {
                kind: Model,
                id: "gpt2".into(),
                rev: "refs/pr/2".into(),
                dir: None
            }
        );
        assert_eq!(
            parse("/gpt2/resolve/refs%2Fpr%2F1/onnx/model%20x.onnx"),
            HubRoute::Resolve {
                kind: Model,
                id: "gpt2".into(),
                rev: "refs/pr/1".into(),
                path: "onnx/model x.onnx".into()
            }
        );
        assert_eq!(
            parse("/datasets/o/d/resolve/main/data/train.csv"),
            HubRoute::Resolve {
                kind: Dataset,
                id: "o/d".into(),
                rev: "main".into(),
                path: "data/train.csv".into()
            }
        );
        assert_eq!(parse("/api/agent-harnesses"), HubRoute::AgentHarnesses);
        for other in [
            "/",
            "/acme/x",
            "/acme/x/resolve/main",
            "/api/spaces/a/b",
            "/api/models/a/b/c",
            "/x/%ff/resolve/main/f",
        ] {
            assert_eq!(parse(other), HubRoute::Other, "{other}");
        }
        assert_eq!(
            HubRoute::parse(&Method::POST, "/api/models/gpt2", |_, _| true),
            HubRoute::Other
        );
    }
}
