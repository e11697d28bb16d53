//! Fetch the missing chunks of one blob from the Hub: its missing runs are cut into segments
//! that several connections download in parallel with HTTP Range, each streamed into the partial
//! blob at its offset. A connection that dies mid-body resumes from the last byte written.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use url::Url;

use super::{PullError, PullOptions};
use crate::hub::{HubClient, HubError};
use crate::progress::Progress;
use crate::store::{PartialBlob, CHUNK_SIZE};
use crate::transfer::ratelimit::{pay, RateLimit};

/// Consecutive failed body reads (without progress in between) before a segment gives up.
const MAX_BODY_FAILURES: u32 = 5;
/// Bytes gathered before one write to the file.
const WRITE_BUFFER: usize = 1 << 20;
/// Longest time between two checkpoints of the chunk record while bytes arrive.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Shared state of one blob's fetch.
struct Job<'a> {
    client: &'a HubClient,
    url: &'a Url,
    partial: Arc<PartialBlob>,
    progress: &'a dyn Progress,
    last_checkpoint: Mutex<Instant>,
    limit: Option<Arc<RateLimit>>,
}

/// Downloads every missing chunk of `partial` from `url`, using up to
/// `opts.max_ranges_per_file` parallel ranges, each holding a permit of `connections`.
pub async fn fetch_missing(
    client: &HubClient,
    url: &Url,
    partial: Arc<PartialBlob>,
    opts: &PullOptions,
    connections: &Semaphore,
    progress: &dyn Progress,
) -> Result<(), PullError> {
    let size = partial.size();
    let segment_chunks = (opts.segment_size / CHUNK_SIZE).max(1);
    let segments: VecDeque<Range<u64>> = partial
        .missing_runs()
        .into_iter()
        .flat_map(|run| {
            (run.start..run.end)
                .step_by(segment_chunks as usize)
                .map(move |first| {
                    let last = (first + segment_chunks).min(run.end);
                    first * CHUNK_SIZE..(last * CHUNK_SIZE).min(size)
                })
        })
        .collect();
    let workers = opts.max_ranges_per_file.clamp(1, segments.len().max(1));
    let queue = Mutex::new(segments);
    let job = Job {
        client,
        url,
        partial,
        progress,
        last_checkpoint: Mutex::new(Instant::now()),
        limit: opts.download_limit.clone(),
    };
    let worker = || async {
        loop {
            let Some(segment) = queue.lock().expect("queue lock").pop_front() else {
                return Ok::<(), PullError>(());
            };
            let _permit = connections
                .acquire()
                .await
                .expect("semaphore is never closed");
            job.fetch_segment(segment).await?;
        }
    };
    let results = futures_util::future::join_all((0..workers).map(|_| worker())).await;
    let checkpoint = job.checkpoint().await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    checkpoint
}

impl Job<'_> {
    /// Downloads one segment, resuming after body failures from the last byte written.
    async fn fetch_segment(&self, segment: Range<u64>) -> Result<(), PullError> {
        let mut pos = segment.start;
        let mut failures = 0u32;
        while pos < segment.end {
            let resp = self
                .client
                .open_range(self.url, pos..segment.end, self.partial.size())
                .await?;
            let before = pos;
            match self.stream(resp, &mut pos, segment.clone()).await {
                Ok(()) => {}
                Err(StreamError::Pull(e)) => return Err(e),
                Err(StreamError::Body(e)) => {
                    failures = if pos > before { 1 } else { failures + 1 };
                    if failures >= MAX_BODY_FAILURES {
                        return Err(HubError::Network {
                            url: self.url.to_string(),
                            attempts: failures,
                            source: e,
                        }
                        .into());
                    }
                    tracing::debug!(url = %self.url, pos, error = %e, "transfer interrupted, resuming");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(failures))).await;
                }
                Err(StreamError::Short) => {
                    failures = if pos > before { 1 } else { failures + 1 };
                    if failures >= MAX_BODY_FAILURES {
                        return Err(HubError::Protocol {
                            url: self.url.to_string(),
                            what: format!("the body keeps ending early (at byte {pos})"),
                        }
                        .into());
                    }
                }
            }
        }
        self.checkpoint().await
    }

    /// Streams one answer into the blob from `*pos` up to `segment.end`, marking each chunk
    /// complete once all of its bytes are written.
    async fn stream(
        &self,
        mut resp: reqwest::Response,
        pos: &mut u64,
        segment: Range<u64>,
    ) -> Result<(), StreamError> {
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_BUFFER);
        let mut buf_start = *pos;
        loop {
            let chunk = resp.chunk().await.map_err(StreamError::Body);
            let chunk = match chunk {
                Ok(Some(c)) => {
                    pay(&self.limit, c.len() as u64).await;
                    c
                }
                Ok(None) => break,
                Err(e) => {
                    self.flush(&mut buf, &mut buf_start, pos).await?;
                    return Err(e);
                }
            };
            let room = (segment.end - buf_start) as usize - buf.len();
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let next_boundary = ((buf_start / CHUNK_SIZE) + 1) * CHUNK_SIZE;
            let buffered_end = buf_start + buf.len() as u64;
            if buf.len() >= WRITE_BUFFER || buffered_end >= next_boundary.min(segment.end) {
                self.flush(&mut buf, &mut buf_start, pos).await?;
            }
            if *pos >= segment.end {
                return Ok(());
            }
        }
        self.flush(&mut buf, &mut buf_start, pos).await?;
        if *pos < segment.end {
            return Err(StreamError::Short);
        }
        Ok(())
    }

    /// Writes the buffer at its offset, advances `pos`, marks finished chunks.
    async fn flush(
        &self,
        buf: &mut Vec<u8>,
        buf_start: &mut u64,
        pos: &mut u64,
    ) -> Result<(), StreamError> {
        if buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(buf, Vec::with_capacity(WRITE_BUFFER));
        let offset = *buf_start;
        let len = data.len() as u64;
        let partial = self.partial.clone();
        tokio::task::spawn_blocking(move || partial.write_at(offset, &data))
            .await
            .map_err(|e| StreamError::Pull(PullError::Task(e.to_string())))?
            .map_err(|e| StreamError::Pull(PullError::Store(e)))?;
        // Every byte from the segment start up to `pos` is written: chunks ending by the new
        // `pos` are complete (those ending by the old `pos` were marked before).
        let mut index = *pos / CHUNK_SIZE;
        *pos = offset + len;
        *buf_start = *pos;
        self.progress.advance(len);
        while index < self.partial.chunks()
            && crate::store::chunk_range(self.partial.size(), index).end <= *pos
        {
            self.partial.mark_complete(index);
            index += 1;
        }
        let due = self
            .last_checkpoint
            .lock()
            .expect("checkpoint lock")
            .elapsed()
            >= CHECKPOINT_EVERY;
        if due {
            self.checkpoint().await.map_err(StreamError::Pull)?;
        }
        Ok(())
    }

    async fn checkpoint(&self) -> Result<(), PullError> {
        *self.last_checkpoint.lock().expect("checkpoint lock") = Instant::now();
        let partial = self.partial.clone();
        tokio::task::spawn_blocking(move || partial.checkpoint())
            .await
            .map_err(|e| PullError::Task(e.to_string()))?
            .map_err(|e| PullError::Store(e.into()))
    }
}

enum StreamError {
    /// The connection failed mid-body: resume.
    Body(reqwest::Error),
    /// The body ended before the range did: resume.
    Short,
    /// A local failure: stop.
    Pull(PullError),
}
