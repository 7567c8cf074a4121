//! Figures for benchmarks: percentiles and a description of the machine.

use std::process::Command;
use std::time::Duration;

/// The nearest-rank percentile of sorted `values`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `duration` in milliseconds, two decimals.
pub fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// The number of CPUs `nproc` reports, as text.
pub fn cpus() -> String {
    Command::new("nproc")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The machine in one line: CPUs, model and memory.
pub fn machine() -> String {
    let nproc = cpus();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or("?".into(), |kib| format!("{} MiB", kib / 1024));
    format!("nproc={nproc}, {cpu}, {memory} RAM")
}
