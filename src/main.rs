//! The `innohook` command line: parses arguments and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: the request path makes many short-lived
/// allocations, and glibc spent a tenth of the core on them under load (bench/run.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Receives InnoPaaS WhatsApp webhooks, keeps them safe, hands them on.
///
/// Without a subcommand it serves. Configuration: built-in defaults, then the TOML file
/// given by --config, then INNOHOOK_SECTION__KEY environment variables.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The TOML configuration file (optional: defaults and environment apply without it).
    #[arg(long, global = true, env = "INNOHOOK_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the receiver (the default).
    Serve,
    /// Check the configuration and report problems without starting.
    CheckConfig,
    /// List dead letters, one JSON object a line, oldest first.
    DeadLetters {
        /// Also the body of each undelivered event, as received (a rejected request's
        /// body is always shown: it is the dead letter).
        #[arg(long)]
        payload: bool,
    },
    /// Put undelivered events (sink dead letters) back in their sink's queue.
    Replay {
        /// Only this sink's dead letters.
        #[arg(long)]
        sink: Option<String>,
    },
    /// Apply the retention policy ([store] retain_*) once, and say what was removed.
    Prune {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// What happened to a message: current status, when each was reached, error, batch.
    Status {
        /// The InnoPaaS message id (body.id).
        message_id: String,
    },
    /// How a batch (uid) did: counts by status, read rate, failures by error code.
    Batch {
        /// The customer batch number (body.uid).
        uid: String,
    },
    /// GET /healthz on the configured address; exit 0 when healthy (for Docker HEALTHCHECK).
    Healthcheck,
    /// Check one payload offline: prints the verdict, exits 0 if accepted, 1 if rejected.
    Validate {
        /// The payload file, or `-` for standard input.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config.as_deref();
    let mut out = std::io::stdout();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => innohook::commands::serve(config),
        Command::CheckConfig => innohook::commands::check_config(config, &mut out),
        Command::DeadLetters { payload } => {
            innohook::commands::dead_letters(config, payload, &mut out)
        }
        Command::Replay { sink } => innohook::commands::replay(config, sink.as_deref(), &mut out),
        Command::Prune { dry_run } => innohook::commands::prune(config, dry_run, &mut out),
        Command::Status { message_id } => innohook::commands::status(config, &message_id, &mut out),
        Command::Batch { uid } => innohook::commands::batch(config, &uid, &mut out),
        Command::Healthcheck => innohook::commands::healthcheck(config, &mut out),
        Command::Validate { file } => innohook::commands::validate(&file, &mut out),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("innohook: {e:#}");
            ExitCode::from(2)
        }
    }
}
