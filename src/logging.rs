//! Log output: human-readable by default, JSON lines for log pipelines.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (`fields.message`, `fields.reason`, ...).
    Json,
}

/// Installs the global subscriber writing to stdout. The level comes from `RUST_LOG`
/// (default `info`), so operators can turn on per-allow debug lines without a rebuild.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // A second init (tests) keeps the first subscriber, which is what we want.
    drop(result);
}

/// A limit on log lines of one kind per second, for lines anyone can cause (a denied request, a
/// refused SET): a flood of bad input must not become a flood of lines, with their CPU, disk
/// and log-pipeline bill. Lines over the limit are dropped and counted, and the next line
/// written reports the count. Approximate under races (two threads may both start a new
/// second), which only moves the limit by a line or two.
#[derive(Debug, Default)]
pub struct LinesPerSecond {
    second: AtomicU64,
    written: AtomicU64,
    suppressed: AtomicU64,
}

impl LinesPerSecond {
    /// A window with nothing written yet (usable in a `static`).
    pub const fn new() -> LinesPerSecond {
        LinesPerSecond {
            second: AtomicU64::new(0),
            written: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written in `second` (Unix seconds) under `limit` lines a second
    /// (0: no limit): `Some(lines dropped since the last one written)`, or `None` to drop it.
    pub fn admit(&self, limit: u64, second: u64) -> Option<u64> {
        if limit == 0 {
            return Some(0);
        }
        if self.second.load(Ordering::Relaxed) != second {
            self.second.store(second, Ordering::Relaxed);
            self.written.store(0, Ordering::Relaxed);
        }
        if self.written.fetch_add(1, Ordering::Relaxed) < limit {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_over_the_limit_are_dropped_and_counted_in_the_next_one() {
        let window = LinesPerSecond::default();
        let admitted: Vec<Option<u64>> = (0..5).map(|_| window.admit(3, 100)).collect();
        assert_eq!(admitted, [Some(0), Some(0), Some(0), None, None]);
        assert_eq!(
            window.admit(3, 101),
            Some(2),
            "the next second says what was dropped"
        );
        assert_eq!(window.admit(3, 101), Some(0));
        assert!((0..1000).all(|_| LinesPerSecond::default().admit(0, 7) == Some(0)));
    }
}
