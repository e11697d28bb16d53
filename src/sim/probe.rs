//! Machine probes for the report: CPU time from `/proc/stat` and bytes written to block devices
//! from `/sys/block/*/stat`, so a reader can tell whether the machine, not the mesh, was the
//! bottleneck. Linux only; elsewhere the probes read zeros.

/// Cumulative CPU jiffies: `(busy, total)` over all CPUs.
pub fn cpu_jiffies() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    parse_cpu_line(text.lines().next().unwrap_or(""))
}

/// `(busy, total)` from the aggregate `cpu` line of `/proc/stat`; idle and iowait are not busy.
pub fn parse_cpu_line(line: &str) -> (u64, u64) {
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Bytes written to real block devices so far (loop, ram and zram devices left out).
pub fn disk_written() -> u64 {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !["loop", "ram", "zram"].iter().any(|p| name.starts_with(p))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .map(|s| sectors_written(&s) * 512)
        .sum()
}

/// Field 7 (sectors written) of a block device's `stat` file.
pub fn sectors_written(stat: &str) -> u64 {
    stat.split_whitespace()
        .nth(6)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

/// Number of CPUs of the machine.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_line_counts_idle_and_iowait_as_not_busy() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let (busy, total) = parse_cpu_line("cpu  100 0 50 800 50 0 0 0 0 0");
        assert_eq!((busy, total), (150, 1000));
        assert_eq!(parse_cpu_line(""), (0, 0));
    }

    #[test]
    fn sectors_written_is_the_seventh_field() {
        assert_eq!(sectors_written("  10 0 80 5  20 0 4096 7 0 1 2"), 4096);
        assert_eq!(sectors_written("garbage"), 0);
    }
}
