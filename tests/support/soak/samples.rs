//! Resident memory and open file descriptors of every sessiongate and Envoy over time, read
//! from `/proc` (a replica killed with SIGKILL is followed to its new pid), and the check that
//! they level off.

use std::fmt::Write as _;
use std::path::Path;

/// One reading of one process.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Seconds since the soak started.
    pub at_s: f64,
    /// `sessiongate-a`, `envoy-b`, …
    pub process: String,
    pub pid: u32,
    pub rss_kib: u64,
    pub fds: u64,
}

/// `VmRSS` (KiB) and the number of entries in `/proc/<pid>/fd`; `None` if the process is gone.
pub fn read(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss_kib, fds))
}

pub fn write_csv(samples: &[Sample], path: &Path) {
    let mut csv = String::from("at_s,process,pid,rss_kib,fds\n");
    for s in samples {
        writeln!(
            csv,
            "{:.1},{},{},{},{}",
            s.at_s, s.process, s.pid, s.rss_kib, s.fds
        )
        .expect("format");
    }
    std::fs::write(path, csv).expect("write samples.csv");
}

/// Growth allowed from the middle third of a run to the last third: memory by at most 10% plus
/// 4 MiB (allocator noise, a cache that is still filling its last few percent), file
/// descriptors by at most 16 (connections that happen to be open at the sample). A leak of one
/// connection or one session record per request exceeds either within minutes.
pub const RSS_GROWTH_FACTOR: f64 = 1.10;
pub const RSS_GROWTH_SLACK_KIB: u64 = 4 * 1024;
pub const FD_GROWTH_SLACK: u64 = 16;
/// Runs shorter than this only report the figures: the first third is warm-up (the session
/// cache fills for one token lifetime plus the one-minute sweep), so a shorter run has no
/// steady middle to compare with.
pub const LEVEL_OFF_MIN_SECS: f64 = 600.0;

/// The level-off figures of one process.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LevelOff {
    pub process: String,
    pub rss_mid_max_kib: u64,
    pub rss_last_max_kib: u64,
    pub fds_mid_max: u64,
    pub fds_last_max: u64,
    pub within_bounds: bool,
}

/// Compares the maxima over the middle and the last third of a run of `duration_s`.
pub fn level_off(samples: &[Sample], duration_s: f64) -> Vec<LevelOff> {
    let mut processes: Vec<&str> = samples.iter().map(|s| s.process.as_str()).collect();
    processes.sort();
    processes.dedup();
    processes
        .into_iter()
        .map(|process| {
            let window = |from: f64, to: f64| {
                samples
                    .iter()
                    .filter(move |s| s.process == process && s.at_s >= from && s.at_s < to)
            };
            let (third, end) = (duration_s / 3.0, f64::INFINITY);
            let rss_mid = window(third, 2.0 * third)
                .map(|s| s.rss_kib)
                .max()
                .unwrap_or(0);
            let rss_last = window(2.0 * third, end)
                .map(|s| s.rss_kib)
                .max()
                .unwrap_or(0);
            let fds_mid = window(third, 2.0 * third).map(|s| s.fds).max().unwrap_or(0);
            let fds_last = window(2.0 * third, end).map(|s| s.fds).max().unwrap_or(0);
            let rss_ok =
                rss_last as f64 <= rss_mid as f64 * RSS_GROWTH_FACTOR + RSS_GROWTH_SLACK_KIB as f64;
            let fds_ok = fds_last <= fds_mid + FD_GROWTH_SLACK;
            LevelOff {
                process: process.to_owned(),
                rss_mid_max_kib: rss_mid,
                rss_last_max_kib: rss_last,
                fds_mid_max: fds_mid,
                fds_last_max: fds_last,
                within_bounds: rss_ok && fds_ok,
            }
        })
        .collect()
}
