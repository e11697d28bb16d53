//! Progress output for long work: a bar on a terminal, plain periodic lines otherwise, nothing
//! when quiet. Always on stderr, so stdout stays machine-readable. [`Watched`] keeps progress
//! for others to read (the agent streams it to `hfmesh pull`), and [`Replay`] turns what was
//! read back into calls on a local output.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Receives progress of a transfer. Implementations must be cheap: `advance` is called per
/// received buffer.
pub trait Progress: Send + Sync {
    /// A transfer of `total_bytes` starts.
    fn begin(&self, what: &str, total_bytes: u64);
    /// `bytes` more are done (downloaded, or found already present when resuming).
    fn advance(&self, bytes: u64);
    /// A one-line remark (a resume, a retry).
    fn note(&self, message: &str);
    /// The transfer is over.
    fn finish(&self);
    /// `bytes` more were received from `origin`; by default plain progress, as
    /// [`Progress::advance`].
    fn received(&self, bytes: u64, origin: Origin) {
        let _ = origin;
        self.advance(bytes);
    }
}

/// Where received bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Other nodes of the cluster.
    Peers,
    /// The Hub.
    Hub,
}

/// Where a transfer stands, as one reading of a [`Watched`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProgressSnapshot {
    /// Bytes done: received, or found already present when resuming.
    pub done: u64,
    /// Bytes to fetch in all (0 until the transfer knows).
    pub total: u64,
    /// Bytes received from peers.
    pub from_peers: u64,
    /// Bytes received from the Hub.
    pub from_hub: u64,
}

/// Progress kept in atomics, for any number of watchers to read while the transfer runs (one
/// pull shared by several requests shows each of them the same numbers).
#[derive(Debug, Default)]
pub struct Watched {
    done: AtomicU64,
    total: AtomicU64,
    from_peers: AtomicU64,
    from_hub: AtomicU64,
}

impl Watched {
    /// Where the transfer stands now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            from_peers: self.from_peers.load(Ordering::Relaxed),
            from_hub: self.from_hub.load(Ordering::Relaxed),
        }
    }
}

impl Progress for Watched {
    fn begin(&self, _: &str, total_bytes: u64) {
        self.total.store(total_bytes, Ordering::Relaxed);
    }
    fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }
    fn note(&self, _: &str) {}
    fn finish(&self) {}
    fn received(&self, bytes: u64, origin: Origin) {
        self.advance(bytes);
        let by = match origin {
            Origin::Peers => &self.from_peers,
            Origin::Hub => &self.from_hub,
        };
        by.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Replays readings of a remote transfer ([`ProgressSnapshot`]s) on a local output: `begin` at
/// the first reading with something to show, then `advance` by how much `done` grew.
pub struct Replay {
    out: Arc<dyn Progress>,
    what: String,
    began: bool,
    done: u64,
}

impl Replay {
    /// Replays the transfer of `what` on `out`.
    pub fn new(what: &str, out: Arc<dyn Progress>) -> Replay {
        Replay {
            out,
            what: what.to_string(),
            began: false,
            done: 0,
        }
    }

    /// Shows a new reading.
    pub fn update(&mut self, s: &ProgressSnapshot) {
        if !self.began {
            if s.total == 0 && s.done == 0 {
                return;
            }
            self.out.begin(&self.what, s.total);
            self.began = true;
        }
        if s.done > self.done {
            self.out.advance(s.done - self.done);
            self.done = s.done;
        }
    }

    /// The transfer is over (nothing is shown if it never began).
    pub fn finish(&mut self) {
        if std::mem::take(&mut self.began) {
            self.out.finish();
        }
    }
}

/// No output at all.
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn note(&self, _: &str) {}
    fn finish(&self) {}
}

/// The right progress output for stderr: a bar on a terminal, lines otherwise, none if quiet.
pub fn for_stderr(quiet: bool) -> Arc<dyn Progress> {
    if quiet {
        Arc::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bar::new())
    } else {
        Arc::new(Lines::new(Duration::from_secs(2)))
    }
}

/// An `indicatif` bar with bytes, rate and ETA.
pub struct Bar {
    bar: indicatif::ProgressBar,
}

impl Bar {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::hidden();
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        Bar { bar }
    }
}

impl Progress for Bar {
    fn begin(&self, what: &str, total_bytes: u64) {
        self.bar
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.bar.set_length(total_bytes);
        self.bar.set_message(what.to_string());
    }
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
    fn note(&self, message: &str) {
        self.bar.println(message);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Plain lines on stderr, at most one per `every`, for logs and pipes.
pub struct Lines {
    done: AtomicU64,
    state: Mutex<LineState>,
    every: Duration,
}

struct LineState {
    what: String,
    total: u64,
    started: Instant,
    last: Instant,
}

impl Lines {
    fn new(every: Duration) -> Self {
        let now = Instant::now();
        Lines {
            done: AtomicU64::new(0),
            state: Mutex::new(LineState {
                what: String::new(),
                total: 0,
                started: now,
                last: now,
            }),
            every,
        }
    }

    fn line(&self, s: &LineState) -> String {
        let done = self.done.load(Ordering::Relaxed);
        let secs = s.started.elapsed().as_secs_f64().max(1e-3);
        let pct = if s.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / s.total as f64
        };
        format!(
            "{}: {} / {} ({pct:.0}%), {}/s",
            s.what,
            human_bytes(done),
            human_bytes(s.total),
            human_bytes((done as f64 / secs) as u64)
        )
    }
}

impl Progress for Lines {
    fn begin(&self, what: &str, total_bytes: u64) {
        let mut s = self.state.lock().expect("progress lock");
        s.what = what.to_string();
        s.total = total_bytes;
        s.started = Instant::now();
        s.last = s.started;
        self.done.store(0, Ordering::Relaxed);
        let _ = writeln!(
            std::io::stderr(),
            "{what}: {} to fetch",
            human_bytes(total_bytes)
        );
    }
    fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
        let mut s = self.state.lock().expect("progress lock");
        if s.last.elapsed() >= self.every {
            s.last = Instant::now();
            let _ = writeln!(std::io::stderr(), "{}", self.line(&s));
        }
    }
    fn note(&self, message: &str) {
        let _ = writeln!(std::io::stderr(), "{message}");
    }
    fn finish(&self) {
        let s = self.state.lock().expect("progress lock");
        let _ = writeln!(std::io::stderr(), "{}", self.line(&s));
    }
}

/// `1.5 GiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every call, for checking what a replay does.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Progress for Recorder {
        fn begin(&self, what: &str, total: u64) {
            self.0.lock().unwrap().push(format!("begin {what} {total}"));
        }
        fn advance(&self, bytes: u64) {
            self.0.lock().unwrap().push(format!("advance {bytes}"));
        }
        fn note(&self, m: &str) {
            self.0.lock().unwrap().push(format!("note {m}"));
        }
        fn finish(&self) {
            self.0.lock().unwrap().push("finish".into());
        }
    }

    #[test]
    fn watched_progress_splits_by_origin() {
        let w = Watched::default();
        w.begin("x", 100);
        w.advance(10);
        w.received(30, Origin::Peers);
        w.received(5, Origin::Hub);
        assert_eq!(
            w.snapshot(),
            ProgressSnapshot {
                done: 45,
                total: 100,
                from_peers: 30,
                from_hub: 5
            }
        );
    }

    #[test]
    fn replay_begins_once_and_advances_by_growth() {
        let rec = Arc::new(Recorder::default());
        let mut r = Replay::new("acme/x:main", rec.clone());
        let at = |done, total| ProgressSnapshot {
            done,
            total,
            ..ProgressSnapshot::default()
        };
        r.update(&at(0, 0));
        r.update(&at(0, 100));
        r.update(&at(40, 100));
        r.update(&at(40, 100));
        r.update(&at(30, 100));
        r.update(&at(100, 100));
        r.finish();
        r.finish();
        assert_eq!(
            *rec.0.lock().unwrap(),
            [
                "begin acme/x:main 100",
                "advance 40",
                "advance 60",
                "finish"
            ]
        );
        // A transfer that never had anything to show shows nothing.
        let quiet = Arc::new(Recorder::default());
        let mut r = Replay::new("y", quiet.clone());
        r.update(&at(0, 0));
        r.finish();
        assert!(quiet.0.lock().unwrap().is_empty());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
