//! `scrubber replay IN …`.

use anyhow::{Context, Result};
use clap::Args;
use scrubber::control::config::{ReplayConfig, ReplayRequest};
use scrubber::tools::replay::{self, ReplayError, Summary};
use scrubber::Engine;
use std::path::PathBuf;

use super::SynModeArg;

/// Run a capture through the engine and write what it forwarded, dropped and answered.
///
/// Reads a pcap or pcapng file of Ethernet frames (both directions mixed) and judges every frame
/// with the capture's own timestamps as the clock. A frame is inbound when its destination is a
/// protected target, outbound when its source is; anything else (including ARP) is fed as
/// inbound, and the engine passes it.
///
/// Only the outputs you name are written; each appears only when the run succeeds (written to a
/// temporary file beside it, then renamed). If the capture turns out truncated or corrupt part
/// way, the frames before the bad record are still judged and written, the summary is printed
/// marked INCOMPLETE, and the exit status is 1.
///
/// Example:
///   scrubber replay samples/sample.pcap --protect 198.18.0.10:80 --protect '[2001:2::10]:80'
///       --pass /tmp/pass.pcap --drop /tmp/drop.pcap
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ReplayArgs {
    /// Capture to replay (pcap or pcapng, Ethernet link type).
    #[arg(value_name = "IN")]
    input: PathBuf,

    /// Protect this destination: IP (all ports), IP:PORT, IPv6, [IPv6] or [IPv6]:PORT.
    /// Repeat for several targets. A shorthand for a rule file with one TCP service per
    /// target and no rules; give either --protect or --rules.
    #[arg(long, value_name = "IP[:PORT]", required_unless_present = "rules", conflicts_with = "rules")]
    protect: Vec<String>,

    /// Judge with this rule file (services, rules, limits, settings), as `scrubber run` would.
    /// Its `sessions` and `cookie-secret` settings apply unless --sessions / --cookie-secret
    /// are given.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,

    /// SYN handling. `track` (the default for --protect) forwards SYNs and tracks handshakes:
    /// use it for captures recorded without the scrubber, where the server's own SYN-ACKs carry
    /// its own ISNs, so in proxy mode the clients' ACKs could never carry valid cookies and every
    /// recorded connection would be dropped. `proxy` answers every SYN with a cookie SYN-ACK: use
    /// it to see what the SYN proxy does to SYN floods (answers go to --answers). With --rules,
    /// the file's per-service setting applies unless this option is given, which then applies to
    /// every service.
    #[arg(long, value_enum, value_name = "MODE")]
    syn_mode: Option<SynModeArg>,

    /// Write the frames the engine forwarded (as rewritten) to this pcap.
    #[arg(long, value_name = "OUT")]
    pass: Option<PathBuf>,

    /// Write the dropped frames (as received) to this pcap.
    #[arg(long, value_name = "OUT")]
    drop: Option<PathBuf>,

    /// Write the frames the engine sent back towards the sender (cookie SYN-ACKs, ACKs to
    /// backends) to this pcap.
    #[arg(long, value_name = "OUT")]
    answers: Option<PathBuf>,

    /// Print the summary as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Write the attack events found in the capture (on its clock) to FILE, one JSON object per
    /// line (appended); they are also in the `--json` summary and the log.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,

    /// SYN-cookie secret file (32 hex digits, `#` comment lines allowed), as written by
    /// `scrubber gen-secret`. Without it (and without the rule file's `cookie-secret`) a random
    /// secret is used.
    #[arg(long, value_name = "FILE")]
    cookie_secret: Option<PathBuf>,

    /// Session table capacity (rounded up to a power of two) [default: the rule file's
    /// `sessions`, or 1048576].
    #[arg(long, value_name = "N")]
    sessions: Option<usize>,

    #[command(flatten)]
    limit: super::FileLimit,
}

/// Run `scrubber replay`.
pub fn run(a: ReplayArgs) -> Result<()> {
    let cfg = ReplayConfig::resolve(ReplayRequest {
        input: a.input,
        rules: a.rules,
        protect: a.protect,
        syn_mode: a.syn_mode.map(Into::into),
        pass: a.pass,
        drop: a.drop,
        answers: a.answers,
        cookie_secret: a.cookie_secret,
        sessions: a.sessions,
        max_file_size: a.limit.max_file_size,
    })?;
    for w in &cfg.warnings {
        eprintln!("{w}");
    }
    let mut engine = Engine::new(cfg.engine).context("cannot build the engine")?;
    // SIGINT/SIGTERM end the replay between batches, leaving no output behind.
    let signals = scrubber::control::signals::Signals::install()?;
    let mut sink = scrubber::control::events::EventSink::new(a.events.as_deref(), None, true)?;
    match replay::replay_until(&mut engine, &cfg.files, &signals.stop) {
        Ok(summary) => {
            sink.emit(&summary.events);
            print_summary(&summary, a.json)
        }
        Err(ReplayError::Stopped { path, packet, offset, detail, summary }) => {
            // Show what was done before the bad record, then fail.
            sink.emit(&summary.events);
            print_summary(&summary, a.json)?;
            let e = ReplayError::Stopped { path, packet, offset, detail, summary };
            Err(anyhow::Error::new(e).context("the replay did not reach the end of the capture"))
        }
        Err(e) => Err(e.into()),
    }
}

fn print_summary(s: &Summary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(s).context("cannot encode the summary as JSON")?);
    } else {
        print!("{}", s.render_text());
    }
    Ok(())
}
