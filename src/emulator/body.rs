//! File bodies: `Range` requests, and content streamed in small slices that pass through the
//! shared bandwidth cap, the byte counters and the truncation fault.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::store::{FileData, Source};
use super::{synthetic, Shared};

/// Size of one body slice: the unit of throttling, counting and truncation.
pub(crate) const SLICE: u64 = 64 * 1024;

/// Pause before aborting a truncated body (see [`Sender::next_slice`]).
const CUT_FLUSH_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// What a `Range` header asks of a file of known size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteRange {
    /// No (usable) range: the whole file, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Part { start: u64, end: u64 },
    /// Nothing of the file is in the range, 416.
    Unsatisfiable,
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n`. Malformed and multi-range headers
/// are ignored (the whole file is sent), as RFC 9110 allows.
pub(crate) fn parse_range(value: Option<&HeaderValue>, total: u64) -> ByteRange {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return ByteRange::Full;
    };
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(0) => ByteRange::Unsatisfiable,
            Ok(_) if total == 0 => ByteRange::Unsatisfiable,
            Ok(n) => ByteRange::Part {
                start: total - n.min(total),
                end: total - 1,
            },
            Err(_) => ByteRange::Full,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return ByteRange::Full;
    };
    let end = match b {
        "" => u64::MAX,
        b => match b.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return ByteRange::Full,
        },
    };
    if start >= total {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part {
        start,
        end: end.min(total - 1),
    }
}

/// Answers a request for a file's content: 200, 206 or 416 with `headers` added, and for a GET
/// a streamed body (a HEAD gets the same headers and no body).
pub(crate) fn file_response(
    shared: &Arc<Shared>,
    file: &Arc<FileData>,
    request: &HeaderMap,
    head: bool,
    mut headers: HeaderMap,
) -> Response {
    let total = file.size;
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let (status, start, len) = match parse_range(request.get(header::RANGE), total) {
        ByteRange::Full => (StatusCode::OK, 0, total),
        ByteRange::Part { start, end } => {
            headers.insert(
                header::CONTENT_RANGE,
                value(format!("bytes {start}-{end}/{total}")),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        ByteRange::Unsatisfiable => {
            headers.insert(header::CONTENT_RANGE, value(format!("bytes */{total}")));
            return (StatusCode::RANGE_NOT_SATISFIABLE, headers).into_response();
        }
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    let whole = start == 0 && len == total;
    let body = if head {
        Body::empty()
    } else if len == 0 {
        shared.stats.file_done();
        Body::empty()
    } else {
        let sender = Sender {
            shared: shared.clone(),
            file: file.clone(),
            pos: start,
            end: start + len,
            cut: shared
                .faults
                .take_truncation(len)
                .map(|after| start + after),
            whole,
            reader: None,
            done: false,
        };
        Body::from_stream(futures_util::stream::unfold(sender, |mut s| async move {
            let item = s.next_slice().await?;
            Some((item, s))
        }))
    };
    (status, headers, body).into_response()
}

/// A header value from text we formatted ourselves (digits, spaces, `-`, `/`, `*`).
fn value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The state of one body being sent.
struct Sender {
    shared: Arc<Shared>,
    file: Arc<FileData>,
    pos: u64,
    end: u64,
    /// Absolute offset where the truncation fault aborts the body.
    cut: Option<u64>,
    /// The body is the complete file.
    whole: bool,
    reader: Option<tokio::fs::File>,
    done: bool,
}

impl Sender {
    async fn next_slice(&mut self) -> Option<io::Result<Bytes>> {
        if self.done || self.pos >= self.end {
            return None;
        }
        let limit = self.cut.map_or(self.end, |c| c.min(self.end));
        if self.pos >= limit {
            self.done = true;
            // Yield first, so that the connection flushes the headers and the bytes before the
            // cut: the client sees a short body, not a failed request.
            tokio::time::sleep(CUT_FLUSH_PAUSE).await;
            return Some(Err(io::Error::other(
                "body cut short by the truncate fault",
            )));
        }
        let n = (limit - self.pos).min(SLICE);
        self.shared
            .throttle
            .acquire(self.shared.faults.bandwidth(), n)
            .await;
        let bytes = match self.read(n).await {
            Ok(b) => b,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        self.shared.stats.bytes(n);
        self.pos += n;
        if self.pos == self.end && self.whole {
            self.shared.stats.file_done();
        }
        Some(Ok(bytes))
    }

    async fn read(&mut self, n: u64) -> io::Result<Bytes> {
        let len = n as usize;
        match &self.file.source {
            Source::Memory(b) => {
                let start = self.pos as usize;
                b.get(start..start + len)
                    .map(Bytes::copy_from_slice)
                    .ok_or_else(|| io::Error::other("short content"))
            }
            Source::Synthetic { seed } => {
                let mut buf = vec![0; len];
                synthetic::fill(*seed, self.pos, &mut buf);
                Ok(buf.into())
            }
            Source::Disk(path) => {
                if self.reader.is_none() {
                    let mut f = tokio::fs::File::open(path).await?;
                    f.seek(io::SeekFrom::Start(self.pos)).await?;
                    self.reader = Some(f);
                }
                let mut buf = vec![0; len];
                if let Some(f) = &mut self.reader {
                    f.read_exact(&mut buf).await?;
                }
                Ok(buf.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str, total: u64) -> ByteRange {
        parse_range(Some(&HeaderValue::from_str(s).unwrap()), total)
    }

    #[test]
    fn ranges() {
        use ByteRange::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(r("bytes=0-4", 10), Part { start: 0, end: 4 });
        assert_eq!(r("bytes=5-", 10), Part { start: 5, end: 9 });
        assert_eq!(r("bytes=5-100", 10), Part { start: 5, end: 9 });
        assert_eq!(r("bytes=-3", 10), Part { start: 7, end: 9 });
        assert_eq!(r("bytes=-30", 10), Part { start: 0, end: 9 });
        assert_eq!(r("bytes=9-9", 10), Part { start: 9, end: 9 });
        assert_eq!(r("bytes=10-", 10), Unsatisfiable);
        assert_eq!(r("bytes=-0", 10), Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Unsatisfiable);
        assert_eq!(r("bytes=4-2", 10), Full);
        assert_eq!(r("bytes=0-1,3-4", 10), Full);
        assert_eq!(r("items=0-1", 10), Full);
        assert_eq!(r("bytes=x-", 10), Full);
    }
}
