//! The `sessiongate` command: parses the command line, loads config, runs the server.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sessiongate::admin::client::{self as admin_client, ClientError};
use sessiongate::admin::proto;
use sessiongate::logging::{self, LogFormat};
use sessiongate::{admin, app, config};

/// Exit code for an invalid configuration (distinct from runtime failures).
const EXIT_BAD_CONFIG: u8 = 2;
/// Exit code for a runtime failure (cannot bind, cannot load keys).
const EXIT_FAILURE: u8 = 1;

/// Where the container image (`Dockerfile`) puts the Envoy dynamic module.
const SHIPPED_MODULE: &str = "/usr/local/lib/sessiongate/libsessiongate_envoy.so";

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
        /// Threads serving ext_authz connections, each connection wholly on one of them
        /// (default: one per CPU available to the process, cgroup quota included). Envoy opens
        /// one connection per worker, so more threads than Envoy workers stay idle.
        #[arg(long, env = "SESSIONGATE_THREADS")]
        threads: Option<NonZeroUsize>,
    },
    /// Validate a configuration file (including its JWKS files) and exit: 0 valid, 2 invalid.
    CheckConfig {
        /// Configuration file (YAML).
        file: PathBuf,
    },
    /// Copy the Envoy dynamic module shipped in the image (libsessiongate_envoy.so) into DIR
    /// and exit: what an init container runs to hand it to an Envoy container through a shared
    /// volume (the image has no shell and no `cp`).
    InstallModule {
        /// Folder to copy it into (Envoy's `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`).
        dir: PathBuf,
        /// The library to copy.
        #[arg(long, default_value = SHIPPED_MODULE)]
        from: PathBuf,
    },
    /// Talk to a running sessiongate's admin API: revoke, list, explain.
    Admin {
        /// The admin listener (`admin.listen`).
        #[arg(long, default_value = admin::client::DEFAULT_ADDR, global = true)]
        admin_addr: String,
        /// File holding the admin token; without it, the `SESSIONGATE_ADMIN_TOKEN` variable.
        #[arg(long, global = true)]
        admin_token_file: Option<PathBuf>,
        /// Boxed: the revoke arguments are large, and clap builds this enum once.
        #[command(subcommand)]
        command: Box<AdminCommand>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Revoke sessions: every token matching the selector issued at or before the cut-off is
    /// denied (`revoked`) from its next request on; tokens issued later are not affected.
    #[command(group(clap::ArgGroup::new("selector").required(true).args(
        ["sub", "jti", "sid", "client_id", "workload", "email", "issuer_wide"])))]
    Revoke {
        /// Every token of this subject (with `--iss`).
        #[arg(long)]
        sub: Option<String>,
        /// One token, by `jti` (with `--iss`).
        #[arg(long)]
        jti: Option<String>,
        /// Every token of this OIDC session (with `--iss`).
        #[arg(long)]
        sid: Option<String>,
        /// Every token issued to this OAuth client.
        #[arg(long)]
        client_id: Option<String>,
        /// Every session presented by this workload (SPIFFE ID).
        #[arg(long)]
        workload: Option<String>,
        /// Every token carrying this `email` claim.
        #[arg(long)]
        email: Option<String>,
        /// Every token of the issuer (`--iss`): a watermark.
        #[arg(long)]
        issuer_wide: bool,
        /// The issuer; may be omitted when the server trusts exactly one.
        #[arg(long)]
        iss: Option<String>,
        /// Cut-off: `now` (default), an RFC 3339 instant, or a duration ago (`15m`, `2h ago`).
        #[arg(long, default_value = "now")]
        issued_before: String,
        /// Why, for the audit trail (never shown to clients).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List live revocations.
    List,
    /// Show what the server's cache knows about the session of a token, and why it would be
    /// denied now. The token is sent only to the admin API and never printed.
    Explain {
        /// File holding the bearer token.
        #[arg(long)]
        token_file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    // The Redis client (`rediss://`) builds its TLS config from rustls' process-wide crypto
    // provider. Only `ring` is compiled in today, but should a
    // dependency ever enable aws-lc-rs too, rustls would refuse to pick one and panic at the
    // first handshake; choosing here keeps that a non-event. An error only means a provider
    // is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Admin {
            admin_addr,
            admin_token_file,
            command,
        } => {
            let runtime = match runtime(tokio::runtime::Builder::new_current_thread()) {
                Ok(runtime) => runtime,
                Err(exit) => return exit,
            };
            match runtime.block_on(admin_command(
                &admin_addr,
                admin_token_file.as_deref(),
                *command,
            )) {
                Ok(output) => {
                    println!("{output}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
        Command::InstallModule { dir, from } => match install_module(&from, &dir) {
            Ok(copied) => {
                println!("{}: installed", copied.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
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
        Command::Serve { config, threads } => {
            let loaded = match config::load(&config) {
                Ok(loaded) => loaded,
                Err(error) => {
                    eprintln!("error: {error}");
                    tracing::error!(%error, "invalid configuration");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            let runtime = match runtime(tokio::runtime::Builder::new_multi_thread()) {
                Ok(runtime) => runtime,
                Err(exit) => return exit,
            };
            let stop = {
                let _inside = runtime.enter();
                app::stop_signal()
            };
            let served = runtime.block_on(async {
                let listeners = app::Listeners::bind(&loaded).await?;
                app::run(loaded, listeners, threads, stop).await
            });
            match served {
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

/// Copies the module at `from` into `dir` under the file name Envoy looks for, through a
/// temporary name and a rename, so an Envoy sharing the folder never loads half a library.
/// Returns where it now is; an error names the file that failed.
fn install_module(from: &std::path::Path, dir: &std::path::Path) -> Result<PathBuf, String> {
    let target = dir.join("libsessiongate_envoy.so");
    let partial = dir.join(".libsessiongate_envoy.so.partial");
    std::fs::copy(from, &partial).map_err(|error| {
        format!(
            "cannot copy {} to {}: {error}",
            from.display(),
            partial.display()
        )
    })?;
    std::fs::rename(&partial, &target).map_err(|error| {
        format!(
            "cannot rename {} to {}: {error}",
            partial.display(),
            target.display()
        )
    })?;
    Ok(target)
}

/// The async runtime from `builder`; failing to build one is a runtime failure (exit 1): the
/// admin client needs only the current thread, the server a multi-threaded one.
fn runtime(mut builder: tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, ExitCode> {
    builder.enable_all().build().map_err(|error| {
        eprintln!("error: cannot start the async runtime: {error}");
        ExitCode::from(EXIT_FAILURE)
    })
}

/// Runs one `sessiongate admin …` command; returns what to print.
async fn admin_command(
    addr: &str,
    token_file: Option<&std::path::Path>,
    command: AdminCommand,
) -> Result<String, ClientError> {
    let (_, token) =
        admin::credential::read_token(token_file).map_err(|e| ClientError::Input(e.to_string()))?;
    let mut client = admin_client::connect(addr, &token).await?;
    match command {
        AdminCommand::Revoke {
            sub,
            jti,
            sid,
            client_id,
            workload,
            email,
            issuer_wide,
            iss,
            issued_before,
            reason,
        } => {
            use proto::selector::Kind;
            let issuer = iss.unwrap_or_default();
            let kind = if let Some(sub) = sub {
                Kind::Subject(proto::Subject { issuer, sub })
            } else if let Some(jti) = jti {
                Kind::TokenId(proto::TokenId { issuer, jti })
            } else if let Some(sid) = sid {
                Kind::OidcSession(proto::OidcSession { issuer, sid })
            } else if let Some(client_id) = client_id {
                Kind::ClientId(client_id)
            } else if let Some(workload) = workload {
                Kind::Workload(workload)
            } else if let Some(email) = email {
                Kind::Email(email)
            } else {
                debug_assert!(issuer_wide);
                Kind::Issuer(proto::Issuer { issuer })
            };
            let issued_before_unix_ms =
                admin_client::parse_issued_before(&issued_before, std::time::SystemTime::now())
                    .map_err(ClientError::Input)?;
            let answer = client
                .revoke(proto::RevokeRequest {
                    selector: Some(proto::Selector { kind: Some(kind) }),
                    issued_before_unix_ms,
                    reason,
                })
                .await?
                .into_inner();
            Ok(answer
                .revocation
                .as_ref()
                .map(admin_client::format_revocation)
                .unwrap_or_default())
        }
        AdminCommand::List => {
            let answer = client
                .list_revocations(proto::ListRevocationsRequest {})
                .await?
                .into_inner();
            if answer.revocations.is_empty() {
                return Ok("no live revocations".into());
            }
            Ok(answer
                .revocations
                .iter()
                .map(admin_client::format_revocation)
                .collect::<Vec<_>>()
                .join("\n"))
        }
        AdminCommand::Explain { token_file } => {
            let token = std::fs::read_to_string(&token_file).map_err(|e| {
                ClientError::Input(format!("--token-file {}: {e}", token_file.display()))
            })?;
            let answer = client
                .explain_session(proto::ExplainSessionRequest {
                    token: token.trim().to_owned(),
                })
                .await?
                .into_inner();
            Ok(admin_client::format_explanation(&answer))
        }
    }
}
