//! The network-namespace lab: a topology of client, attacker, switch, middle box and server
//! namespaces; real TCP peers; bounded floods; packet counters on the server.
//!
//! Used by `scrubber lab` (a demonstration run with a summary table), by the end-to-end tests
//! (`tests/tests/e2e.rs`) and by `scrubber-perf wire`: one copy. Built only with the `lab`
//! cargo feature (on by default; `--no-default-features` builds the appliance without it). Everything here drives Linux tools as subprocesses (`ip`, `ethtool`,
//! `nft`, `hping3`, `trafgen`) and needs root; nothing here is on a packet path.
//!
//! * [`topo`] — [`topo::Topology`]: the namespaces and links, removed on drop.
//! * [`exec`] — running commands (inside a namespace), [`exec::NsChild`] process guards.
//! * [`peer`] — the TCP peers behind the hidden `scrubber peer` subcommand (server, connection
//!   storm, bulk transfer with a hash check).
//! * [`flood`] — hping3 and trafgen floods, bounded in count and time, spoofed sources only in
//!   198.19.0.0/16 and 2001:2:0:ffff::/64.
//! * [`nft`] — nftables counters in the server namespace, per source range and TCP flags.
//! * [`run`] — `scrubber lab` itself: phases of legitimate traffic and floods, live lines, a
//!   summary.
//!
//! Address plan (one L2 segment through the middle box): client 198.18.0.1 / 2001:2::1,
//! attacker 198.18.0.66 / 2001:2::66, server 198.18.0.10 / 2001:2::10. Spoofed flood sources:
//! 198.19.0.0/16 and 2001:2:0:ffff::/64 — both inside the benchmarking ranges 198.18.0.0/15 and
//! 2001:2::/48 (RFC 5180). Note that 2001:2:ffff::/48 would *not* be inside 2001:2::/48.

pub mod botnet;
pub mod exec;
pub mod fleet;
pub mod flood;
pub mod line;
pub mod nft;
pub mod peer;
pub mod run;
pub mod tcbpf;
pub mod topo;

use std::io;

/// Everything that can go wrong while building or driving the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The process is not running as root.
    #[error("the lab creates network namespaces and needs root: run it as root (e.g. with sudo)")]
    NotRoot,
    /// A required external tool is not installed.
    #[error("`{tool}` not found in PATH: install the Debian package `{package}` (apt-get install {package})")]
    MissingTool {
        /// The command that was looked for.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A command ran and failed.
    #[error("`{cmd}` failed ({status}){}", fmt_stderr(.stderr))]
    Command {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// A command could not be started at all.
    #[error("cannot start `{cmd}`")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A command did not finish in time (it was killed).
    #[error("`{cmd}` did not finish within {secs} s (killed){}", fmt_stderr(.stderr))]
    Timeout {
        /// The command line.
        cmd: String,
        /// The time limit.
        secs: u64,
        /// What it printed on stderr before it was killed.
        stderr: String,
    },
    /// A command's output could not be understood.
    #[error("unexpected output from `{cmd}`: {detail}")]
    Parse {
        /// The command line.
        cmd: String,
        /// What was wrong.
        detail: String,
    },
    /// A value given to the lab is outside what it allows.
    #[error("{0}")]
    Invalid(String),
    /// A plain I/O error (temporary files, sockets).
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A step failed; `source` says why.
    #[error("{what}")]
    Step {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Context for lab errors: `result.ctx("what was being done")`.
pub trait Ctx<T> {
    /// Wrap the error with what was being done.
    fn ctx(self, what: &str) -> Result<T, LabError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, LabError> {
        self.map_err(|e| LabError::Step { what: what.to_string(), source: Box::new(e) })
    }
}

fn fmt_stderr(s: &str) -> String {
    let t = s.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!(": {t}")
    }
}

/// The `scrubber run` command line of the lab's middle box: its `ext` and `int` interfaces, one
/// worker on core 0, the stats socket `socket`, and `policy` (e.g. [`PROTECT_LAB_SERVER`] or
/// `--rules FILE`).
pub fn run_argv(socket: &str, policy: &[&str]) -> Vec<String> {
    let mut v: Vec<String> =
        ["run", "--ext", "ext", "--int", "int", "--cores", "0", "--socket", socket].map(String::from).to_vec();
    v.extend(policy.iter().map(|p| p.to_string()));
    v
}

/// The lab's default policy: the SYN proxy for the server's port 80, IPv4 and IPv6.
pub const PROTECT_LAB_SERVER: [&str; 6] =
    ["--protect", "198.18.0.10:80", "--protect", "[2001:2::10]:80", "--syn-mode", "proxy"];

/// True when the effective user id is 0 (read from `/proc/self/status`, no libc).
pub fn is_root() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

/// The external tools the lab uses and the Debian package providing each.
pub const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("tcpdump", "tcpdump"),
    ("ethtool", "ethtool"),
    ("nft", "nftables"),
    ("hping3", "hping3"),
    ("trafgen", "netsniff-ng"),
    ("kill", "procps"),
    ("timeout", "coreutils"),
    ("bird", "bird2"),
];

/// Check that we are root and that every tool named in `tools` is on PATH.
///
/// `tools` are names from [`TOOLS`]; unknown names are looked up with the package `?`.
pub fn preflight(tools: &[&'static str]) -> Result<(), LabError> {
    if !is_root() {
        return Err(LabError::NotRoot);
    }
    for &tool in tools {
        if exec::find_in_path(tool).is_none() {
            let package = TOOLS.iter().find(|(t, _)| *t == tool).map_or("?", |(_, p)| p);
            return Err(LabError::MissingTool { tool, package });
        }
    }
    Ok(())
}
