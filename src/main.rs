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
#[command(version, about, after_help = EXAMPLES)]
struct Cli {
    /// The TOML configuration file (optional: defaults and environment apply without it).
    #[arg(long, global = true, env = "INNOHOOK_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Shown after `--help`: a line for each subcommand, and what the exit codes mean.
const EXAMPLES: &str = "Examples:
  innohook --config innohook.toml                      serve (the default)
  innohook check-config --config innohook.toml         check the file, the store, the sinks
  innohook dead-letters --config innohook.toml         what was rejected or not delivered
  innohook dead-letters --payload                      ... with each event's body
  innohook replay --sink crm                           queue a sink's dead letters again
  innohook replay --id 42                              queue one dead letter again
  innohook status 356139161272397824                   what happened to a message
  innohook batch 2002302023002010121                   how a batch did
  innohook batch 2002302023002010121 --csv > b.csv     its messages, one row each
  innohook prune --dry-run                             what the retention would remove
  innohook healthcheck                                 for Docker's HEALTHCHECK
  innohook validate examples/payloads/failed.json      check a payload offline
  innohook completions bash > /etc/bash_completion.d/innohook

Exit codes: 0 done; 1 the answer is no (not found, rejected, unhealthy, an invalid
configuration for check-config); 2 the command could not run (its message on stderr).
healthcheck exits 0 or 1 only.";

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
        #[arg(long, conflicts_with = "id")]
        sink: Option<String>,
        /// Only this dead letter (its `id` in `innohook dead-letters`).
        #[arg(long)]
        id: Option<i64>,
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
        /// Its messages as CSV instead, one row each (as the API's messages.csv).
        #[arg(long)]
        csv: bool,
    },
    /// The send list: what your sending system sent (see the README, "The send list").
    Sends {
        #[command(subcommand)]
        action: SendsCommand,
    },
    /// GET /healthz on the configured address; exit 0 when healthy (for Docker HEALTHCHECK).
    Healthcheck,
    /// Check one payload offline: prints the verdict, exits 0 if accepted, 1 if rejected.
    Validate {
        /// The payload file, or `-` for standard input.
        file: PathBuf,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum SendsCommand {
    /// Import a send list: CSV with a header row (id, phone, uid, sentAt and optionally
    /// template) or a JSON array of such objects. Sends already known are left as they
    /// are, so a file can be imported again.
    Import {
        /// The file, or `-` for standard input.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config.as_deref();
    let mut out = std::io::stdout();
    let command = cli.command.unwrap_or(Command::Serve);
    let healthcheck = matches!(command, Command::Healthcheck);
    let serving = matches!(command, Command::Serve);
    let result = match command {
        Command::Serve => innohook::commands::serve(config),
        Command::CheckConfig => innohook::commands::check_config(config, &mut out),
        Command::DeadLetters { payload } => {
            innohook::commands::dead_letters(config, payload, &mut out)
        }
        Command::Replay { sink, id } => {
            innohook::commands::replay(config, sink.as_deref(), id, &mut out)
        }
        Command::Prune { dry_run } => innohook::commands::prune(config, dry_run, &mut out),
        Command::Status { message_id } => innohook::commands::status(config, &message_id, &mut out),
        Command::Batch { uid, csv } => innohook::commands::batch(config, &uid, csv, &mut out),
        Command::Sends {
            action: SendsCommand::Import { file },
        } => innohook::commands::import_sends(config, &file, &mut out),
        Command::Healthcheck => innohook::commands::healthcheck(config, &mut out),
        Command::Validate { file } => innohook::commands::validate(&file, &mut out),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "innohook", &mut out);
            Ok(0)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        // The reader went away (`innohook dead-letters | head`): what it read was right,
        // and there is nothing to say.
        Err(e) if !serving && stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("innohook: {e:#}");
            // Docker reserves 2 in a HEALTHCHECK.
            ExitCode::from(if healthcheck { 1 } else { 2 })
        }
    }
}

/// Whether writing to stdout failed because its reader closed it.
fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
