//! `scrubber stats`.

use anyhow::{bail, Result};
use clap::Args;
use scrubber::control::config::defaults;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// Show the statistics of a running scrubber.
///
/// Connects to the stats socket of `scrubber run` and prints, for all workers together and for
/// each worker: frames received, forwarded and answered; drops by reason (only reasons that
/// occurred, with what they mean); per protected target; SYN cookies; RSTs; sessions; ring
/// stalls; hand-offs between workers; how the sockets are bound.
///
/// With --watch the numbers are refreshed every SECS seconds (default 1) and per-second rates
/// are shown next to the totals. Stop with Ctrl-C.
///
/// Examples:
///   scrubber stats
///   scrubber stats --watch
///   scrubber stats --json | jq .workers[0].counters.dropped
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct StatsArgs {
    /// The scrubber's stats socket (as given to `scrubber run --socket`).
    #[arg(long, value_name = "PATH", default_value = defaults::SOCKET)]
    socket: PathBuf,

    /// Refresh every SECS seconds (default 1) and show per-second rates.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1")]
    watch: Option<f64>,

    /// Print the raw snapshot as JSON (one object per line with --watch).
    #[arg(long)]
    json: bool,
}

/// Run `scrubber stats`.
pub fn run(a: StatsArgs) -> Result<()> {
    let interval = match a.watch {
        None => None,
        Some(s) if (0.05..=86_400.0).contains(&s) => Some(Duration::from_secs_f64(s)),
        Some(s) => bail!("--watch {s}: give a refresh interval in seconds between 0.05 and 86400 (e.g. --watch 1)"),
    };
    let tty = std::io::stdout().is_terminal();
    scrubber::control::stats::watch(&a.socket, interval, a.json, tty, &mut std::io::stdout().lock())?;
    Ok(())
}
