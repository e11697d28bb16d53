//! Progress output for long work: a bar on a terminal, plain periodic lines otherwise, nothing
//! when quiet. Always on stderr, so stdout stays machine-readable.

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

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
