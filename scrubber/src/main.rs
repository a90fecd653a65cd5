//! The `scrubber` command line.
//!
//! * `scrubber replay` — run a capture through the engine (pcap in, pcaps out, summary).
//! * `scrubber gen-secret` — print a fresh SYN-cookie secret.
//! * `scrubber stats` — show the statistics of a running scrubber.
//!
//! Exit status: 0 on success, 1 on any error (including a bad command line); errors are printed
//! as `error: …` followed by their causes.
#![forbid(unsafe_code)]

mod run_cmd;
mod stats_cmd;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use scrubber::cookie::CookieKey;
use scrubber::reload::{load_policy, LoadedPolicy, PolicyLoadError};
use scrubber::replay::{self, ReplayError, ReplayOptions};
use scrubber::{Engine, EngineConfig, Protected, SynMode};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod lab_cmd;

/// Inline DDoS packet scrubber.
///
/// The judging engine validates TCP towards protected services (SYN cookies or handshake
/// tracking; session-less ACK/RST/FIN floods dropped and counted by reason) and passes other
/// traffic. For now it runs over captures (`scrubber replay`); the AF_XDP data plane comes later.
#[derive(Debug, Parser)]
#[command(name = "scrubber", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Replay(ReplayArgs),
    Check(CheckArgs),
    GenSecret(GenSecretArgs),
    Run(run_cmd::RunArgs),
    Stats(stats_cmd::StatsArgs),
    Lab(lab_cmd::LabArgs),
    #[command(hide = true)]
    Peer(lab_cmd::PeerArgs),
}

/// Check a rule file and show what it compiles to.
///
/// Reads FILE and everything it includes (and the list files it names), reports every error
/// and warning with file:line:column, the line and a caret, then prints what was compiled:
/// settings, sets with their prefix counts, port sets, services, rules in order, and memory.
/// Exit status 0 when the file is valid (warnings allowed), 1 otherwise.
///
/// Example:
///   scrubber check examples/web-frontend.rules
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct CheckArgs {
    /// The rule file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Print only the diagnostics and the verdict line, not the compiled summary.
    #[arg(long, short)]
    quiet: bool,
}

/// How SYNs towards protected services are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SynModeArg {
    /// Forward SYNs and track the handshake (right for replaying recorded conversations).
    Track,
    /// Answer SYNs with cookie SYN-ACKs (shows what the SYN proxy does to floods).
    Proxy,
}

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
struct ReplayArgs {
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

    /// SYN handling. `track` (default) forwards SYNs and tracks handshakes: use it for captures
    /// recorded without the scrubber, where the server's own SYN-ACKs carry its own ISNs, so in
    /// proxy mode the clients' ACKs could never carry valid cookies and every recorded
    /// connection would be dropped. `proxy` answers every SYN with a cookie SYN-ACK: use it to
    /// see what the SYN proxy does to SYN floods (answers go to --answers).
    #[arg(long, value_enum, default_value_t = SynModeArg::Track, value_name = "MODE")]
    syn_mode: SynModeArg,

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

    /// SYN-cookie secret file (32 hex digits, `#` comment lines allowed), as written by
    /// `scrubber gen-secret`. Without it a random secret is used.
    #[arg(long, value_name = "FILE")]
    cookie_secret: Option<PathBuf>,

    /// Session table capacity (rounded up to a power of two) [default: 65536, or the rule
    /// file's `sessions`].
    #[arg(long, value_name = "N")]
    sessions: Option<usize>,
}

/// Print a fresh random SYN-cookie secret (32 hex digits) with a comment line.
///
/// Give every scrubber behind the same ECMP group the same secret so that any box validates any
/// box's cookies:
///   scrubber gen-secret > /etc/scrubber/cookie.secret && chmod 600 /etc/scrubber/cookie.secret
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct GenSecretArgs {}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; everything else exits 1, like any other error.
            return if e.use_stderr() { ExitCode::from(1) } else { ExitCode::SUCCESS };
        }
    };
    match run(cli) {
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

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Replay(a) => cmd_replay(a),
        Command::Check(a) => cmd_check(a),
        Command::GenSecret(_) => cmd_gen_secret(),
        Command::Run(a) => run_cmd::run(a),
        Command::Stats(a) => stats_cmd::run(a),
        Command::Lab(a) => lab_cmd::cmd_lab(a),
        Command::Peer(a) => lab_cmd::cmd_peer(a),
    }
}

fn cmd_check(a: CheckArgs) -> Result<()> {
    match load_policy(&a.file) {
        Ok(l) => {
            if l.warning_count > 0 {
                eprintln!("{}", l.warnings);
            }
            if !a.quiet {
                print!("{}", l.summary);
                let st = l.compiled.stats();
                println!(
                    "compiled: {} IPv4 + {} IPv6 prefixes in {} address classes, {} port sets; tables {:.1} MiB",
                    st.prefixes_v4,
                    st.prefixes_v6,
                    st.classes,
                    st.port_sets,
                    st.memory_bytes as f64 / (1024.0 * 1024.0)
                );
            }
            println!("{}: OK ({} warning(s))", a.file.display(), l.warning_count);
            Ok(())
        }
        Err(PolicyLoadError::Invalid { path, errors, warnings, rendered }) => {
            eprintln!("{rendered}");
            bail!("{path}: {errors} error(s), {warnings} warning(s): not valid, nothing compiled")
        }
        Err(e) => Err(e.into()),
    }
}

fn cmd_replay(a: ReplayArgs) -> Result<()> {
    if a.rules.is_none() && a.protect.is_empty() {
        bail!("give at least one --protect IP[:PORT] (e.g. --protect 198.18.0.10:80), or --rules FILE");
    }
    let (protect, loaded) = policy_from_args(a.rules.as_deref(), &a.protect)?;
    let settings = loaded.as_ref().map(|l| l.compiled.settings());
    let sessions =
        a.sessions.or(settings.map(|st| usize::try_from(st.sessions).unwrap_or(usize::MAX))).unwrap_or(65_536);
    if sessions == 0 {
        bail!("--sessions 0: the session table needs at least one slot (default 65536)");
    }
    let cookie_key = cookie_key(a.cookie_secret.as_deref(), settings.and_then(|st| st.cookie_secret.as_deref()))?;
    let policy = loaded.map(|l| l.compiled);
    let cfg = EngineConfig {
        protect,
        policy,
        syn_mode: match a.syn_mode {
            SynModeArg::Track => SynMode::Track,
            SynModeArg::Proxy => SynMode::Proxy,
        },
        table_capacity: sessions,
        cookie_key,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(cfg).context("cannot build the engine")?;
    let opts = ReplayOptions { input: a.input, pass: a.pass, drop: a.drop, answers: a.answers };

    match replay::replay(&mut engine, &opts) {
        Ok(summary) => {
            print_summary(&summary, a.json)?;
            Ok(())
        }
        Err(ReplayError::Stopped { path, packet, offset, detail, summary }) => {
            // Show what was done before the bad record, then fail.
            print_summary(&summary, a.json)?;
            let e = ReplayError::Stopped { path, packet, offset, detail, summary };
            Err(anyhow::Error::new(e).context("the replay did not reach the end of the capture"))
        }
        Err(e) => Err(e.into()),
    }
}

fn print_summary(s: &replay::Summary, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(s).context("cannot encode the summary as JSON")?);
    } else {
        print!("{}", s.render_text());
    }
    Ok(())
}

/// The policy given on the command line (`replay`, `run`): `--rules FILE` loaded (its warnings
/// printed; its errors printed and refused), or the `--protect IP[:PORT]` targets parsed.
fn policy_from_args(rules: Option<&Path>, protect: &[String]) -> Result<(Vec<Protected>, Option<LoadedPolicy>)> {
    if let Some(path) = rules {
        return match load_policy(path) {
            Ok(l) => {
                if l.warning_count > 0 {
                    eprintln!("{}", l.warnings);
                }
                Ok((Vec::new(), Some(l)))
            }
            Err(PolicyLoadError::Invalid { path, errors, rendered, .. }) => {
                eprintln!("{rendered}");
                bail!("{path}: {errors} error(s): fix the rule file (see `scrubber check {path}`)")
            }
            Err(e) => Err(e.into()),
        };
    }
    let mut targets = Vec::with_capacity(protect.len());
    for p in protect {
        let t = rulespec::parse_target(p).with_context(|| format!("bad --protect value '{p}'"))?;
        if let Some(w) = rulespec::target_warning(p) {
            eprintln!("warning: --protect {w}");
        }
        targets.push(Protected { addr: t.addr, port: t.port });
    }
    Ok((targets, None))
}

/// The SYN-cookie secret: the `--cookie-secret` file, else the rule file's `cookie-secret`
/// setting, else random. Files hold one line of 32 hex digits (`#` comment lines ignored).
fn cookie_key(arg: Option<&Path>, setting: Option<&str>) -> Result<[u8; 16]> {
    Ok(match (arg, setting) {
        (Some(path), _) => CookieKey::load(path)?.bytes(),
        (None, Some(path)) => {
            CookieKey::load(Path::new(path)).context("the rule file's cookie-secret setting")?.bytes()
        }
        (None, None) => CookieKey::random().context("cannot get random bytes from the OS")?.bytes(),
    })
}

fn cmd_gen_secret() -> Result<()> {
    let hex = CookieKey::random().context("cannot get random bytes from the OS")?.to_hex();
    println!("# scrubber SYN-cookie secret: give the same file to every scrubber behind one ECMP group (--cookie-secret FILE); keep it private (chmod 600)");
    println!("{hex}");
    Ok(())
}
