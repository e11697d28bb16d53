//! The results table: each row an hfmesh measurement, its baseline from the same run, their
//! ratio and the load average when it was taken; printed as markdown, written as JSON.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::Settings;

/// One measured value.
#[derive(Debug, Clone, Serialize)]
pub struct Value {
    /// What was measured.
    pub what: String,
    /// The number.
    pub value: f64,
    /// Its unit (`MB/s`, `MiB`, `ms`).
    pub unit: &'static str,
}

/// One row: a measurement, optionally against a baseline (ratio = value / baseline).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Which part of the run.
    pub section: &'static str,
    /// The hfmesh measurement.
    pub measured: Value,
    /// The reference it is compared with.
    pub baseline: Option<Value>,
    /// `measured / baseline`.
    pub ratio: Option<f64>,
    /// The 1-minute load average just after the measurement.
    pub load1: f64,
    /// How the number was taken (best of N, median, ...).
    pub note: String,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `nproc`.
    pub nproc: usize,
    /// The CPU model from `/proc/cpuinfo`.
    pub cpu: String,
    /// `/proc/loadavg` at the start.
    pub load_at_start: String,
    /// `net.core.rmem_max` / `wmem_max` during the run (the cap on hfmesh's UDP buffers).
    pub udp_buffer_max: String,
    /// Size of the model moved between agents (bytes).
    pub model_bytes: u64,
    /// Whether this is an optimized build.
    pub profile: &'static str,
    /// The rows, in order.
    pub rows: Vec<Row>,
}

/// MB/s (10^6 bytes per second) of `bytes` moved in `elapsed`.
pub fn mbps(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

/// The 1-minute load average now.
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The best (largest) of some measurements, and all of them for the note.
pub fn best(samples: &[f64]) -> (f64, String) {
    let best = samples.iter().cloned().fold(f64::NAN, f64::max);
    let all: Vec<String> = samples.iter().map(|s| format!("{s:.0}")).collect();
    (
        best,
        format!("best of {} ({})", samples.len(), all.join(", ")),
    )
}

impl Report {
    /// An empty report describing this machine.
    pub fn new(settings: &Settings) -> Report {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Report {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            load_at_start: std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_string(),
            udp_buffer_max: ["rmem_max", "wmem_max"]
                .map(|k| {
                    std::fs::read_to_string(format!("/proc/sys/net/core/{k}"))
                        .map_or_else(|_| "?".into(), |v| v.trim().to_string())
                })
                .join("/"),
            model_bytes: settings.size,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            rows: Vec::new(),
        }
    }

    /// One line about the machine, for the log and the table's caption.
    pub fn machine_line(&self) -> String {
        format!(
            "nproc {} | CPU {} | load at start {} | net.core.rmem_max/wmem_max {} | {} build | \
             model {} bytes",
            self.nproc,
            self.cpu,
            self.load_at_start,
            self.udp_buffer_max,
            self.profile,
            self.model_bytes
        )
    }

    /// Adds a row (and logs it at once, so a long run shows progress).
    pub fn add(
        &mut self,
        section: &'static str,
        measured: Value,
        baseline: Option<Value>,
        note: impl Into<String>,
    ) {
        let ratio = baseline.as_ref().map(|b| measured.value / b.value);
        let row = Row {
            section,
            measured,
            baseline,
            ratio,
            load1: load1(),
            note: note.into(),
        };
        eprintln!("{}", markdown_row(&row));
        self.rows.push(row);
    }

    /// Prints the markdown table and writes `bench.md` and `bench.json` into `out`.
    pub fn finish(&self, out: &Path) {
        let mut md = format!("{}\n\n", self.machine_line());
        md.push_str("| part | hfmesh | baseline (same run) | ratio | load 1m | how |\n");
        md.push_str("|---|---|---|---|---|---|\n");
        for row in &self.rows {
            md.push_str(&markdown_row(row));
            md.push('\n');
        }
        println!("{md}");
        let _ = std::fs::create_dir_all(out);
        let json = serde_json::to_string_pretty(self).expect("the report serializes");
        for (name, body) in [("bench.md", md), ("bench.json", json)] {
            if let Err(e) = std::fs::write(out.join(name), body) {
                eprintln!("cannot write {}: {e}", out.join(name).display());
            }
        }
        eprintln!("written to {}", out.display());
    }
}

fn show(v: &Value) -> String {
    let digits = if v.value >= 100.0 { 0 } else { 1 };
    format!("{}: {:.*} {}", v.what, digits, v.value, v.unit)
}

fn markdown_row(row: &Row) -> String {
    format!(
        "| {} | {} | {} | {} | {:.2} | {} |",
        row.section,
        show(&row.measured),
        row.baseline.as_ref().map(show).unwrap_or_default(),
        row.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
        row.load1,
        row.note
    )
}
