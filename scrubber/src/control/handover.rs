//! `scrubber run --take-over`: an upgrade (or a restart with other settings) that keeps every
//! connection, without a state file and without a stop in between.
//!
//! The running scrubber listens on a hand-over socket beside its stats socket
//! ([`handover_path`], mode 0600). A new `scrubber run --take-over` with the same `--socket`
//! builds its engines first (the slow part: the session tables), then connects and asks. The
//! running one stops its workers, detaches its XDP programs and closes its AF_XDP sockets,
//! stops its stats server, and sends its session tables (the `--state` format, version header
//! and checksum included) over the socket; then it exits. The new one restores them and
//! attaches at once. What the wire loses is what arrives between the old program's detach and
//! the new one's attach (with `--on-exit open`, the bypass bridge carries it instead);
//! `tests/e2e_restart.rs` measures it.
//!
//! Protocol (one connection): the new process sends `TAKEOVER 1\n`; the old answers
//! `STATE <bytes>\n` followed by that many bytes, or `REFUSED <reason>\n`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::state::{Saved, StateError};

/// Largest state accepted over the socket (2³¹ sessions would not fit anyway).
const MAX_STATE: u64 = 64 << 30;

/// Why a take-over failed.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// No scrubber to take over from.
    #[error(
        "--take-over: no running scrubber answers at {path} ({source}); start without --take-over, or give the --socket of the running one"
    )]
    Connect {
        /// The hand-over socket.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The exchange failed midway.
    #[error("--take-over: talking to the running scrubber at {path}: {detail}")]
    Protocol {
        /// The hand-over socket.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The state it sent did not decode.
    #[error("--take-over: {0}")]
    State(#[from] StateError),
    /// The hand-over socket could not be served.
    #[error("cannot listen for hand-overs on {path}: {source}")]
    Listen {
        /// The hand-over socket.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The hand-over socket of the scrubber whose stats socket is `stats`: `STATS.handover`.
pub fn handover_path(stats: &Path) -> PathBuf {
    let mut s = stats.as_os_str().to_owned();
    s.push(".handover");
    PathBuf::from(s)
}

/// The listening side, polled by the control loop.
#[derive(Debug)]
pub struct HandoverListener {
    listener: UnixListener,
    path: PathBuf,
}

impl HandoverListener {
    /// Listen at `path` (a stale socket file is replaced; mode 0600: the state holds sequence
    /// offsets).
    pub fn bind(path: &Path) -> Result<HandoverListener, HandoverError> {
        let err = |source| HandoverError::Listen { path: path.to_path_buf(), source };
        if UnixStream::connect(path).is_ok() {
            return Err(err(std::io::Error::other("another scrubber already listens there")));
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        Ok(HandoverListener { listener, path: path.to_path_buf() })
    }

    /// A new scrubber asking to take over, if one connected (never blocks for long: the request
    /// line must arrive within a second).
    pub fn poll(&self) -> Option<UnixStream> {
        let (s, _) = self.listener.accept().ok()?;
        s.set_nonblocking(false).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        let mut line = String::new();
        BufReader::new(&s).take(64).read_line(&mut line).ok()?;
        if line.trim() == "TAKEOVER 1" {
            Some(s)
        } else {
            let _ = (&s).write_all(b"REFUSED unknown request\n");
            None
        }
    }
}

impl Drop for HandoverListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Send the sessions to the new scrubber on `s` (the old side's last act).
pub fn send_state(mut s: UnixStream, saved: &Saved) -> std::io::Result<()> {
    let bytes = saved.encode();
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(format!("STATE {}\n", bytes.len()).as_bytes())?;
    s.write_all(&bytes)?;
    s.flush()
}

/// The new side: ask the scrubber listening at `path` to hand over; its sessions. The old
/// scrubber has detached and closed its sockets when this returns.
pub fn take_over(path: &Path, timeout: Duration) -> Result<Saved, HandoverError> {
    let proto = |detail: String| HandoverError::Protocol { path: path.to_path_buf(), detail };
    let s = UnixStream::connect(path).map_err(|source| HandoverError::Connect { path: path.to_path_buf(), source })?;
    s.set_read_timeout(Some(timeout)).map_err(|e| proto(e.to_string()))?;
    (&s).write_all(b"TAKEOVER 1\n").map_err(|e| proto(format!("sending the request: {e}")))?;
    let mut r = BufReader::new(&s);
    let mut line = String::new();
    (&mut r).take(128).read_line(&mut line).map_err(|e| proto(format!("waiting for the answer: {e}")))?;
    let line = line.trim();
    let n: u64 = match line.strip_prefix("STATE ") {
        Some(n) => n.parse().map_err(|_| proto(format!("bad answer '{line}'")))?,
        None => return Err(proto(format!("it answered '{line}'"))),
    };
    if n > MAX_STATE {
        return Err(proto(format!("a state of {n} bytes is more than this build accepts")));
    }
    let mut bytes = Vec::with_capacity(n as usize);
    (&mut r).take(n).read_to_end(&mut bytes).map_err(|e| proto(format!("receiving the state: {e}")))?;
    if bytes.len() as u64 != n {
        return Err(proto(format!("the state ended after {} of {n} bytes", bytes.len())));
    }
    Ok(Saved::decode(&bytes, path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_over_on_a_socket() {
        let dir = std::env::temp_dir().join(format!("scrubber-handover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = handover_path(&dir.join("stats.sock"));
        assert!(path.to_string_lossy().ends_with("stats.sock.handover"));
        let l = HandoverListener::bind(&path).unwrap();
        assert!(HandoverListener::bind(&path).is_err(), "one listener per path");
        assert!(l.poll().is_none(), "nobody asked yet");
        let saved = Saved { saved_ms: 42, services: vec!["web".into()], tables: vec![Default::default(); 2] };
        let p2 = path.clone();
        let t = std::thread::spawn(move || take_over(&p2, Duration::from_secs(5)));
        let s = loop {
            if let Some(s) = l.poll() {
                break s;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        send_state(s, &saved).unwrap();
        assert_eq!(t.join().unwrap().unwrap(), saved);
        drop(l);
        assert!(!path.exists(), "the socket file goes with the listener");
        let e = take_over(&path, Duration::from_secs(1)).unwrap_err().to_string();
        assert!(e.contains("no running scrubber answers"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
