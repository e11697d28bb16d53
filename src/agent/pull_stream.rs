//! `POST /v1/pull` with progress: the answer is NDJSON, one [`PullEvent`] per line — a
//! `{"progress": {...}}` line every [`PROGRESS_EVERY`] while the (shared) pull runs, then one
//! last progress line and the result, `{"report": {...}}` or `{"error": "..."}`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::daemon::{Daemon, JoinedPull};
use crate::mesh::MeshReport;
use crate::progress::ProgressSnapshot;
use crate::repo::RepoRef;

/// How often a streamed pull reports its progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The media type of a streamed pull (a client asks for it with `Accept`, or `?progress=true`).
pub const NDJSON: &str = "application/x-ndjson";

/// One line of a streamed pull.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullEvent {
    /// Where the pull stands.
    Progress(ProgressSnapshot),
    /// The pull succeeded (the last line).
    Report(MeshReport),
    /// The pull failed, in one sentence (the last line).
    Error(String),
}

/// Whether a request asks for a streamed answer: `Accept: application/x-ndjson`.
pub fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with(NDJSON)))
}

/// `event` as one NDJSON line.
fn line(event: &PullEvent) -> String {
    // A `PullEvent` is plain data: serializing it cannot fail.
    let mut text = serde_json::to_string(event).unwrap_or_default();
    text.push('\n');
    text
}

/// What the stream still has to do.
struct Running {
    joined: JoinedPull,
    tick: Interval,
    stop: CancellationToken,
}

/// The next chunk of the stream, and what is left (`None` after the result).
async fn next(mut r: Running) -> (String, Option<Running>) {
    tokio::select! {
        result = &mut r.joined.result => {
            let last = match result {
                Ok(report) => PullEvent::Report(report),
                Err(e) => PullEvent::Error(e),
            };
            let progress = line(&PullEvent::Progress(r.joined.progress.snapshot()));
            (progress + &line(&last), None)
        }
        _ = r.stop.cancelled() => {
            let e = PullEvent::Error("the agent is shutting down; pull again when it is back".into());
            (line(&e), None)
        }
        _ = r.tick.tick() => (line(&PullEvent::Progress(r.joined.progress.snapshot())), Some(r)),
    }
}

/// Joins the pull of `what` and answers with its progress and result as NDJSON.
pub fn respond(d: &Arc<Daemon>, what: RepoRef) -> Response {
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let running = Running {
        joined: d.join_pull(what),
        tick,
        stop: d.stopping(),
    };
    let body = stream::unfold(Some(running), |state| async move {
        let (chunk, rest) = next(state?).await;
        Some((Ok::<_, Infallible>(Bytes::from(chunk)), rest))
    });
    ([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_line_each_in_the_documented_shape() {
        let p = line(&PullEvent::Progress(ProgressSnapshot {
            done: 1,
            total: 2,
            from_peers: 1,
            from_hub: 0,
        }));
        assert_eq!(
            p,
            "{\"progress\":{\"done\":1,\"total\":2,\"from_peers\":1,\"from_hub\":0}}\n"
        );
        assert_eq!(line(&PullEvent::Error("no".into())), "{\"error\":\"no\"}\n");
    }

    #[test]
    fn ndjson_is_asked_for_by_accept() {
        let mut h = HeaderMap::new();
        assert!(!wants_stream(&h));
        h.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_stream(&h));
        h.insert(
            header::ACCEPT,
            "application/json, application/x-ndjson;q=0.9"
                .parse()
                .unwrap(),
        );
        assert!(wants_stream(&h));
    }
}
