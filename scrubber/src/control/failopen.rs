//! `--on-exit open|closed`: what the box does while no scrubber is attached.
//!
//! * **closed** (the default): nothing passes between ext and int unless a scrubber forwards
//!   it. A crash, a SIGKILL or an upgrade is an outage of the protected servers, never a
//!   leak.
//! * **open**: a kernel bridge joins ext and int (named [`bridge_name`], no addresses, no STP,
//!   no IPv6 link-local). While a scrubber runs, its XDP programs take every frame before the
//!   bridge sees it (a worker must serve every queue of both interfaces, see
//!   [`OnExit::check_queues`]); the moment the programs go — the process exits or is killed
//!   and the kernel releases its BPF links — the bridge carries everything, unfiltered, and it
//!   stops again the moment the next scrubber attaches. The risk: while no scrubber runs, a
//!   flood reaches the servers in full, and connections opened through the SYN proxy break
//!   anyway (their sequence numbers are translated; the bridge does not). Choose it where an
//!   outage costs more than an unfiltered minute.
//!
//! Starting with `closed` removes a bridge an earlier `open` run left (only one with this
//! module's name); a port of any other bridge is reported, since that bridge would pass
//! traffic whenever no scrubber is attached.

use std::path::Path;
use std::process::Command;

/// What the box does while no scrubber is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnExit {
    /// Pass nothing (fail-closed).
    #[default]
    Closed,
    /// Bridge ext and int in the kernel (fail-open).
    Open,
}

/// Why the bypass bridge could not be set up or removed.
#[derive(Debug, thiserror::Error)]
pub enum FailOpenError {
    /// An `ip` command failed.
    #[error("--on-exit: `{command}` failed: {detail} (needs CAP_NET_ADMIN and iproute2)")]
    Command {
        /// The command line.
        command: String,
        /// Its error output.
        detail: String,
    },
    /// A queue would be served by no worker: its frames would cross the bridge unfiltered.
    #[error(
        "--on-exit open: {ifname} has {queues} queue(s) but only {workers} worker(s): frames on the other queues would cross the bypass bridge unfiltered; give one core per queue with --cores, or reduce the queues (`ethtool -L {ifname} combined {workers}`)"
    )]
    Queues {
        /// The interface.
        ifname: String,
        /// Its queues.
        queues: u32,
        /// Workers.
        workers: usize,
    },
}

/// The bypass bridge's name for `ext`: `sbr-` and as much of `ext` as fits in 15 bytes.
pub fn bridge_name(ext: &str) -> String {
    let mut n = String::from("sbr-");
    for c in ext.chars() {
        if n.len() + c.len_utf8() > 15 {
            break;
        }
        n.push(c);
    }
    n
}

fn ip(args: &[&str]) -> Result<(), FailOpenError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| FailOpenError::Command { command: command.clone(), detail: e.to_string() })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FailOpenError::Command { command, detail: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// The master (bridge) device `ifname` is a port of, if any.
pub fn master_of(sys: &Path, ifname: &str) -> Option<String> {
    let link = std::fs::read_link(sys.join("class/net").join(ifname).join("master")).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

impl OnExit {
    /// With `open`, every queue of `ifname` needs a worker.
    pub fn check_queues(self, ifname: &str, queues: u32, workers: usize) -> Result<(), FailOpenError> {
        if self == OnExit::Open && queues as usize > workers {
            return Err(FailOpenError::Queues { ifname: ifname.to_string(), queues, workers });
        }
        Ok(())
    }

    /// Put the choice in place for `ext` and `int` (call once the XDP programs are attached):
    /// with `open`, create the bridge (or keep the one there) with both as ports; with
    /// `closed`, remove a bridge an `open` run left. Returns what to log.
    pub fn apply(self, ext: &str, int: &str) -> Result<Vec<String>, FailOpenError> {
        let sys = Path::new("/sys");
        let br = bridge_name(ext);
        let mut said = Vec::new();
        match self {
            OnExit::Open => {
                if !sys.join("class/net").join(&br).exists() {
                    ip(&["link", "add", &br, "type", "bridge", "stp_state", "0", "forward_delay", "0"])?;
                }
                // No addresses of its own: the bridge must not speak (no IPv6 link-local, no ND).
                ip(&["link", "set", "dev", &br, "addrgenmode", "none"])?;
                for port in [ext, int] {
                    if master_of(sys, port).as_deref() != Some(br.as_str()) {
                        ip(&["link", "set", "dev", port, "master", &br])?;
                    }
                }
                ip(&["link", "set", "dev", &br, "up"])?;
                said.push(format!(
                    "on-exit open: bridge {br} joins {ext} and {int}; it carries all traffic, unfiltered, whenever no scrubber is attached"
                ));
            }
            OnExit::Closed => {
                for port in [ext, int] {
                    match master_of(sys, port) {
                        Some(m) if m == br => {
                            ip(&["link", "set", "dev", port, "nomaster"])?;
                        }
                        Some(other) => said.push(format!(
                            "warning: {port} is a port of bridge {other}: it passes traffic whenever no scrubber is attached, although --on-exit is closed; remove it (`ip link set dev {port} nomaster`) or use --on-exit open"
                        )),
                        None => {}
                    }
                }
                if sys.join("class/net").join(&br).exists() {
                    ip(&["link", "del", &br])?;
                    said.push(format!(
                        "on-exit closed: removed the bypass bridge {br} an earlier --on-exit open run left"
                    ));
                }
            }
        }
        Ok(said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_queue_checks() {
        assert_eq!(bridge_name("ext"), "sbr-ext");
        assert_eq!(bridge_name("enp129s0f1np1"), "sbr-enp129s0f1n");
        assert!(bridge_name("a-very-long-interface-name").len() <= 15);
        assert!(OnExit::Closed.check_queues("ext", 8, 1).is_ok());
        assert!(OnExit::Open.check_queues("ext", 2, 2).is_ok());
        let e = OnExit::Open.check_queues("ext", 4, 2).unwrap_err().to_string();
        assert!(e.contains("ethtool -L ext combined 2"), "{e}");
        assert_eq!(master_of(Path::new("/nonexistent"), "ext"), None);
    }
}
