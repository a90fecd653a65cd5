//! `scrubber ban list|add|del`: the operator's view of the ban table of a running scrubber,
//! over a control socket beside the stats socket ([`ctl_path`], mode 0600: root only).
//!
//! Protocol: one connection per command; the client sends one JSON object on one line —
//! `{"cmd":"list"}`, `{"cmd":"add","addr":"198.19.1.2","secs":600}`,
//! `{"cmd":"del","addr":"198.19.1.2"}` — and the server answers with one JSON object
//! ([`Answer`]) and closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dataplane::stats::Publisher;
use crate::engine::ban::{BanEntry, BanTable, BanWhy};

/// Longest ban the operator may set: 30 days.
pub const MAX_BAN_SECS: u64 = 30 * 86_400;

/// The control socket of the scrubber whose stats socket is `socket`.
pub fn ctl_path(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".ctl");
    PathBuf::from(p)
}

/// One ban as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// The banned source.
    pub addr: String,
    /// Seconds until the ban ends.
    pub seconds_left: u64,
    /// Violations that made it (0 for the operator's).
    pub strikes: u32,
    /// What banned it: a rule (`file:line …`), a service's HTTP checks, or the operator.
    pub by: String,
}

/// A command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Command {
    /// Every live ban.
    List,
    /// Ban `addr` for `secs` seconds.
    Add {
        /// The source.
        addr: IpAddr,
        /// How long.
        secs: u64,
    },
    /// Lift the ban of `addr`.
    Del {
        /// The source.
        addr: IpAddr,
    },
}

/// The answer to a command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Whether the command was carried out.
    pub ok: bool,
    /// What happened, for people.
    pub message: String,
    /// The bans (for `list`).
    #[serde(default)]
    pub bans: Vec<Listed>,
}

/// Errors of the ban commands (client side).
#[derive(Debug, thiserror::Error)]
pub enum BanError {
    /// No scrubber listens there.
    #[error("no scrubber answers at {} ({source}): is `scrubber run` running with this --socket? (the ban socket is its stats socket with .ctl appended)", .path.display())]
    Connect {
        /// The control socket.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Talking to it failed.
    #[error("talking to the scrubber at {}: {source}", .path.display())]
    Io {
        /// The control socket.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// It answered something else.
    #[error("the answer from {} is not a ban answer: {detail}", .path.display())]
    Decode {
        /// The control socket.
        path: PathBuf,
        /// What did not parse.
        detail: String,
    },
    /// It refused the command.
    #[error("{0}")]
    Refused(String),
}

/// Describe what banned a source, with the names of the policy `names` reads (its per-rule and
/// per-target counter labels: they follow reloads).
fn describe(why: BanWhy, names: Option<&Publisher>) -> String {
    let w = names.map(Publisher::read);
    match why {
        BanWhy::Operator => "operator".into(),
        BanWhy::Rule(i) => w
            .as_ref()
            .and_then(|w| w.counters.per_rule.get(usize::from(i)))
            .map(|r| format!("rule {}", r.label))
            .unwrap_or_else(|| format!("rule {}", usize::from(i) + 1)),
        BanWhy::Http(i) => w
            .as_ref()
            .and_then(|w| w.counters.per_target.get(usize::from(i)))
            .map(|t| format!("http checks of {}", t.label))
            .unwrap_or_else(|| "http checks".into()),
    }
}

/// The live bans at `now_ns`, described (at most `max`).
pub fn listed(t: &BanTable, now_ns: u64, names: Option<&Publisher>, max: usize) -> Vec<Listed> {
    t.list(now_ns)
        .into_iter()
        .take(max)
        .map(|e: BanEntry| Listed {
            addr: e.addr.to_string(),
            seconds_left: e.until_ns.saturating_sub(now_ns).div_ceil(1_000_000_000),
            strikes: e.strikes,
            by: describe(e.why, names),
        })
        .collect()
}

/// Carry out one command on `t` at `now_ns`.
pub fn handle(t: &BanTable, cmd: &Command, now_ns: u64, names: Option<&Publisher>) -> Answer {
    match cmd {
        Command::List => {
            let bans = listed(t, now_ns, names, usize::MAX);
            Answer { ok: true, message: format!("{} ban(s)", bans.len()), bans }
        }
        Command::Add { addr, secs } => {
            if *secs == 0 || *secs > MAX_BAN_SECS {
                return Answer {
                    ok: false,
                    message: format!("a ban of {secs} s: give 1 s to {} days", MAX_BAN_SECS / 86_400),
                    ..Answer::default()
                };
            }
            let until = now_ns.saturating_add(secs.saturating_mul(1_000_000_000));
            for _ in 0..100 {
                if t.add(*addr, now_ns, until) {
                    return Answer { ok: true, message: format!("{addr} banned for {secs} s"), ..Answer::default() };
                }
                std::thread::yield_now();
            }
            Answer { ok: false, message: format!("{addr}: its entry stayed busy; try again"), ..Answer::default() }
        }
        Command::Del { addr } => {
            if t.lift(*addr, now_ns) {
                Answer { ok: true, message: format!("ban of {addr} lifted"), ..Answer::default() }
            } else {
                Answer { ok: false, message: format!("{addr} is not banned"), ..Answer::default() }
            }
        }
    }
}

/// The control socket's server thread. Stops and removes the socket when dropped.
#[derive(Debug)]
pub struct BanServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BanServer {
    /// Listen on `path` (a stale socket file is replaced) for commands on `t`; `names` resolves
    /// what banned a source.
    pub fn start(path: &Path, t: Arc<BanTable>, names: Option<Publisher>) -> std::io::Result<BanServer> {
        if std::fs::symlink_metadata(path).is_ok() && UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
        let l = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("scrubber-bans".into()).spawn(move || {
            for conn in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(c) = conn else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                let _ = serve_one(c, &t, names.as_ref());
            }
        })?;
        Ok(BanServer { path: path.to_path_buf(), stop, thread: Some(thread) })
    }
}

fn serve_one(c: UnixStream, t: &BanTable, names: Option<&Publisher>) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    c.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new((&c).take(4096)).read_line(&mut line)?;
    let answer = match serde_json::from_str::<Command>(line.trim()) {
        Ok(cmd) => handle(t, &cmd, crate::dataplane::now_ns(), names),
        Err(e) => Answer { ok: false, message: format!("not a ban command: {e}"), ..Answer::default() },
    };
    let mut out = serde_json::to_vec(&answer).unwrap_or_default();
    out.push(b'\n');
    (&c).write_all(&out)
}

impl Drop for BanServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let woke = UnixStream::connect(&self.path).is_ok();
        if let Some(t) = self.thread.take() {
            if woke {
                let _ = t.join();
            }
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Send `cmd` to the scrubber whose stats socket is `socket`.
pub fn send(socket: &Path, cmd: &Command) -> Result<Answer, BanError> {
    let path = ctl_path(socket);
    let c = UnixStream::connect(&path).map_err(|source| BanError::Connect { path: path.clone(), source })?;
    let io = |source| BanError::Io { path: path.clone(), source };
    c.set_read_timeout(Some(Duration::from_secs(5))).map_err(io)?;
    let mut req = serde_json::to_vec(cmd).unwrap_or_default();
    req.push(b'\n');
    (&c).write_all(&req).map_err(io)?;
    let mut line = String::new();
    BufReader::new((&c).take(64 << 20)).read_line(&mut line).map_err(io)?;
    let a: Answer = serde_json::from_str(line.trim())
        .map_err(|e| BanError::Decode { path: path.clone(), detail: e.to_string() })?;
    if a.ok {
        Ok(a)
    } else {
        Err(BanError::Refused(a.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_over_the_socket() {
        let dir = std::env::temp_dir().join(format!("scrubber-bans-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s.sock");
        let t = Arc::new(BanTable::new(64, 1));
        let srv = BanServer::start(&ctl_path(&sock), Arc::clone(&t), None).unwrap();
        let a: IpAddr = "198.19.3.4".parse().unwrap();
        send(&sock, &Command::Add { addr: a, secs: 60 }).unwrap();
        let l = send(&sock, &Command::List).unwrap();
        assert_eq!(l.bans.len(), 1);
        assert_eq!((l.bans[0].addr.as_str(), l.bans[0].by.as_str()), ("198.19.3.4", "operator"));
        assert!((59..=60).contains(&l.bans[0].seconds_left));
        send(&sock, &Command::Del { addr: a }).unwrap();
        let e = send(&sock, &Command::Del { addr: a }).unwrap_err();
        assert!(e.to_string().contains("not banned"), "{e}");
        let e = send(&sock, &Command::Add { addr: a, secs: 0 }).unwrap_err();
        assert!(e.to_string().contains("1 s to 30 days"), "{e}");
        drop(srv);
        assert!(matches!(send(&sock, &Command::List), Err(BanError::Connect { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
