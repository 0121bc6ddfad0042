//! Log output: human-readable by default, JSON lines for log pipelines.

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
