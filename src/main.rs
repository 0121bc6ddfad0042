//! The `sessiongate` command: parses the command line, loads config, runs the server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sessiongate::logging::{self, LogFormat};
use sessiongate::{app, config};

/// Exit code for an invalid configuration (distinct from runtime failures).
const EXIT_BAD_CONFIG: u8 = 2;
/// Exit code for a runtime failure (cannot bind, cannot load keys).
const EXIT_FAILURE: u8 = 1;

/// Envoy ext_authz sidecar that denies stale, out-of-scope and unbound sessions.
#[derive(Parser)]
#[command(name = "sessiongate", version, about, long_about = None)]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ext_authz gRPC server.
    Serve {
        /// Configuration file (YAML).
        #[arg(long, env = "SESSIONGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration file (including its JWKS files) and exit: 0 valid, 2 invalid.
    CheckConfig {
        /// Configuration file (YAML).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::CheckConfig { file } => match config::load(&file) {
            Ok(loaded) => {
                println!(
                    "{}: ok ({} issuer(s), {} route(s))",
                    file.display(),
                    loaded.keys.len(),
                    loaded.policy.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Serve { config } => {
            let loaded = match config::load(&config) {
                Ok(loaded) => loaded,
                Err(error) => {
                    eprintln!("error: {error}");
                    tracing::error!(%error, "invalid configuration");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("error: cannot start the async runtime: {error}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            };
            match runtime.block_on(app::run(loaded, app::stop_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "sessiongate stopped on an error"
                    );
                    eprintln!("error: {error:#}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
    }
}
