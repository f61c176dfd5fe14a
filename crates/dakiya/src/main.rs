//! dakiya: a mail transfer agent. This binary is the command line around the `dakiya`
//! library (the server), plus the process-wide choices: the allocator and the log.
#![forbid(unsafe_code)]

use dakiya::{checkconfig, dkimcli, dnscli, queuecli, reloadcli, setupcli, statuscli, tracecli, usercli};

/// jemalloc, with its background thread purging freed pages (decay, 10 s): glibc's malloc
/// kept what a flood of connections had taken and grew with every flood; jemalloc gives it
/// back (measured with scripts/flood; docs/hardening.md, "Memory").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};
use dakiya_config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// dakiya ("postman"): an SMTP server that never loses a message it said 250 to.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (without --config: the embedded default, listening on 127.0.0.1:2525
    /// for the domain `localhost`, delivering into ./dakiya-data).
    Serve {
        /// Configuration file (TOML); see dakiya.example.toml.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Set up a new mail domain: write a complete configuration, make the data directory,
    /// a DKIM key and optionally the first user, and print the next steps and DNS records.
    /// Never overwrites a file (docs/hosting.md).
    Setup(setupcli::SetupArgs),
    /// Check a configuration file and print the effective configuration.
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
    },
    /// Manage the users who may authenticate (SMTP AUTH) and send mail. Changes take effect
    /// in a running server without a restart. Passwords are read from a prompt or stdin.
    User {
        /// Configuration file (for the location of the user store); default: the embedded one.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: usercli::UserCmd,
    },
    /// DKIM signing keys: create one and print its DNS record, or print the records again.
    Dkim {
        /// Configuration file (for the data directory); default: the embedded one.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: dkimcli::DkimCmd,
    },
    /// The DNS records to publish for the local domains (MX, SPF, DKIM, DMARC, MTA-STS,
    /// TLS-RPT, SRV and the helper names), or `check DOMAIN`: whether they are published
    /// (exit status 0 only when all are; docs/dns.md).
    Dns {
        /// Configuration file; default: the embedded one.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: dnscli::DnsArgs,
    },
    /// Make the running server re-read its configuration file and apply it without a
    /// restart, as SIGHUP does (docs/reload.md). A file with errors is refused (exit status 1)
    /// and the running configuration stays; exit status 3 means the server is not running.
    Reload {
        /// Configuration file (for the data directory, where the control socket is); default:
        /// the embedded one. The server re-reads the file it was started with.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the server's JSON response instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Look at and manage the queue of the running server (through its control socket in
    /// the data directory). Exit status 3 means the server is not running.
    Queue {
        /// Configuration file (for the data directory); default: the embedded one.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: queuecli::QueueCmd,
    },
    /// The whole history of a message: received, checks, each delivery attempt, notices,
    /// operator actions and its final state, also after it left the queue. Reads the history
    /// files in the data directory (the server need not run). Exit status 1: nothing matches.
    Trace {
        /// Configuration file (for the data directory); default: the embedded one.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: tracecli::TraceArgs,
    },
    /// The running server at a glance: version, uptime, health, listeners, queue, recent
    /// warnings and errors (through its control socket). Exit status 3: not running.
    Status {
        /// Configuration file (for the data directory); default: the embedded one.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the server's JSON response instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::CheckConfig { file } => checkconfig::run(&file),
        Cmd::Setup(args) => setupcli::run(args),
        Cmd::User { config, command } => match load(config) {
            Ok(cfg) => usercli::run(command, &cfg.auth.users_file),
            Err(code) => code,
        },
        Cmd::Dkim { config, command } => match load(config) {
            Ok(cfg) => dkimcli::run(command, &cfg),
            Err(code) => code,
        },
        Cmd::Dns { config, args } => match load(config) {
            Ok(cfg) => dnscli::run(args, &cfg),
            Err(code) => code,
        },
        Cmd::Queue { config, command } => match load(config) {
            Ok(cfg) => queuecli::run(command, &cfg.data_dir),
            Err(code) => code,
        },
        Cmd::Trace { config, args } => match load(config) {
            Ok(cfg) => tracecli::run(&args, &cfg.data_dir),
            Err(code) => code,
        },
        Cmd::Reload { config, json } => match config.map(|file| reloadcli::data_dir_of(&file)) {
            None => reloadcli::run(&Config::embedded_default().data_dir, json),
            Some(Ok(data_dir)) => reloadcli::run(&data_dir, json),
            Some(Err(code)) => code,
        },
        Cmd::Status { config, json } => match load(config) {
            Ok(cfg) => statuscli::run(json, &cfg.data_dir),
            Err(code) => code,
        },
        Cmd::Serve { config } => {
            let cfg = match load(config.clone()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            dakiya::init_logging(&cfg.log);
            let result = dakiya::run(cfg, config);
            if let Err(e) = &result {
                tracing::error!("{e}");
            }
            // The log's last lines, still gathered in memory, before the process exits.
            dakiya::flush_logging();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dakiya: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The configuration from FILE, or the embedded default; a bad file is exit status 2.
fn load(path: Option<PathBuf>) -> Result<Config, ExitCode> {
    match path {
        Some(path) => Config::from_file(&path).map_err(|e| {
            eprintln!("dakiya: {e}");
            ExitCode::from(2)
        }),
        None => Ok(Config::embedded_default()),
    }
}
