//! The command line: clap structs only; every command calls into `scrubber::control` or
//! `scrubber::tools`.
//!
//! * `scrubber run` — the AF_XDP data plane between two interfaces ([`run`]).
//! * `scrubber check` — validate a rule file and show what it compiles to ([`check`]).
//! * `scrubber replay` — a capture through the engine, pcaps out ([`replay`]).
//! * `scrubber stats` — the statistics of a running scrubber ([`stats`]).
//! * `scrubber gen-secret` — a fresh SYN-cookie secret.
//! * `scrubber lab` — the network-namespace lab (with the `lab` feature; [`lab`]).

mod ban;
mod check;
#[cfg(feature = "lab")]
mod lab;
mod replay;
mod run;
mod stats;
mod top;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

/// `--max-file-size`: largest rule or list file read (bytes, or with K, M, G: KiB, MiB, GiB).
#[derive(Debug, Args, Clone, Copy)]
pub(crate) struct FileLimit {
    /// Largest rule or list file read, e.g. 64M (K, M, G: binary units). A larger file is
    /// refused before it is read.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
    max_file_size: u64,
}

/// A size: digits with an optional K, M or G (KiB, MiB, GiB) and an optional trailing B/iB.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a size: give bytes, or a number with K, M or G (e.g. 64M)"))
}

/// Inline DDoS packet scrubber.
///
/// An AF_XDP bump in the wire between an internet-facing and a server-facing interface
/// (`scrubber run`): TCP towards protected services is validated with SYN cookies or handshake
/// tracking, ACK/RST/FIN floods without a session are dropped and counted by reason and target,
/// rule files (`scrubber check`) allow, deny and limit the rest. The same engine judges captures
/// (`scrubber replay`); `scrubber stats` watches a running instance; `scrubber lab` shows it all
/// in network namespaces.
#[derive(Debug, Parser)]
#[command(name = "scrubber", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(Box<run::RunArgs>),
    Check(check::CheckArgs),
    Replay(replay::ReplayArgs),
    Stats(stats::StatsArgs),
    Top(top::TopArgs),
    Ban(ban::BanArgs),
    GenSecret(GenSecretArgs),
    #[cfg(feature = "lab")]
    Lab(lab::LabArgs),
    #[cfg(feature = "lab")]
    #[command(hide = true)]
    Peer(lab::PeerArgs),
}

/// Print a fresh random SYN-cookie secret (32 hex digits) with a comment line.
///
/// Give every scrubber behind the same ECMP group the same secret so that any box validates any
/// box's cookies:
///   scrubber gen-secret > /etc/scrubber/cookie.secret && chmod 600 /etc/scrubber/cookie.secret
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct GenSecretArgs {}

/// Parse the command line, run the command, print errors with their causes.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; everything else exits 1, like any other error.
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    init_logging();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}

/// Logs (`tracing`) to stderr: level from `SCRUBBER_LOG` (e.g. `debug`, `warn`; default
/// `info`), colours only on a terminal, no timestamps under systemd (journald adds its own).
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCRUBBER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if std::env::var_os("JOURNAL_STREAM").is_some() { b.without_time().try_init() } else { b.try_init() };
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(a) => run::run(*a),
        Command::Check(a) => check::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Top(a) => top::run(a),
        Command::Ban(a) => ban::run(a),
        Command::GenSecret(_) => gen_secret(),
        #[cfg(feature = "lab")]
        Command::Lab(a) => lab::cmd_lab(a),
        #[cfg(feature = "lab")]
        Command::Peer(a) => lab::cmd_peer(a),
    }
}

fn gen_secret() -> Result<()> {
    let hex = scrubber::control::config::random_cookie_secret().context("cannot make a secret")?.to_hex();
    println!("# scrubber SYN-cookie secret: give the same file to every scrubber behind one ECMP group (--cookie-secret FILE); keep it private (chmod 600)");
    println!("{hex}");
    Ok(())
}

/// SYN handling, as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SynModeArg {
    /// Answer SYNs with cookie SYN-ACKs; keep no state until the client proves its address.
    Proxy,
    /// Forward SYNs and track the handshake in the (bounded) session table.
    Track,
}

impl From<SynModeArg> for scrubber::SynMode {
    fn from(a: SynModeArg) -> Self {
        match a {
            SynModeArg::Proxy => scrubber::SynMode::Proxy,
            SynModeArg::Track => scrubber::SynMode::Track,
        }
    }
}
