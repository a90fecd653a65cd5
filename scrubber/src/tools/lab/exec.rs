//! Running commands, in the current or in a named network namespace, and guarding the
//! long-running ones.
//!
//! Every long-running process is started as the leader of its own process group
//! ([`NsChild`]); dropping the guard sends SIGTERM to that group (by its id), waits briefly, then
//! sends SIGKILL, so helpers that fork (trafgen) are removed with it. Signals go through the
//! `kill` command (procps): this crate has no unsafe code.

use super::LabError;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Look a program up on PATH (or check a path containing `/`).
pub fn find_in_path(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/sbin:/usr/bin:/sbin:/bin"));
    // Tools such as ip, nft and hping3 live in sbin, which a non-login root shell may lack.
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for extra in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        if !dirs.iter().any(|d| d == Path::new(extra)) {
            dirs.push(PathBuf::from(extra));
        }
    }
    dirs.into_iter().map(|d| d.join(prog)).find(|p| p.is_file())
}

/// The argument vector for `prog args…` inside namespace `ns` (`None`: the current namespace).
pub fn ns_argv(ns: Option<&str>, prog: &str, args: &[String]) -> Vec<String> {
    let mut v = Vec::with_capacity(args.len() + 4);
    if let Some(ns) = ns {
        v.extend(["ip".to_string(), "netns".to_string(), "exec".to_string(), ns.to_string()]);
    }
    v.push(prog.to_string());
    v.extend(args.iter().cloned());
    v
}

fn command_for(argv: &[String]) -> Result<Command, LabError> {
    let Some((prog, rest)) = argv.split_first() else {
        return Err(LabError::Invalid("empty command line".into()));
    };
    let resolved = find_in_path(prog).unwrap_or_else(|| PathBuf::from(prog));
    let mut c = Command::new(resolved);
    c.args(rest);
    Ok(c)
}

fn shown(argv: &[String]) -> String {
    argv.join(" ")
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Run a command to completion (at most `limit`), capturing its output; fail on non-zero exit.
pub fn run_argv(argv: &[String], limit: Duration) -> Result<String, LabError> {
    let out = run_argv_status(argv, limit)?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(LabError::Command { cmd: shown(argv), status: out.status.to_string(), stderr: out.stderr })
    }
}

/// Run a command to completion (at most `limit`), capturing its output whatever its exit status.
pub fn run_argv_status(argv: &[String], limit: Duration) -> Result<Captured, LabError> {
    let mut child = NsChild::spawn_argv(argv, true)?;
    child.finish(limit)
}

/// `run(prog, args)`: run in the current namespace with a 30 s limit; fail on non-zero exit.
pub fn run(prog: &str, args: &[&str]) -> Result<String, LabError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_argv(&ns_argv(None, prog, &args), Duration::from_secs(30))
}

/// Run `prog args` inside namespace `ns` with a 30 s limit; fail on non-zero exit.
pub fn run_ns(ns: &str, prog: &str, args: &[&str]) -> Result<String, LabError> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    run_argv(&ns_argv(Some(ns), prog, &args), Duration::from_secs(30))
}

/// Send signal `sig` (a name such as `TERM`, `INT`, `KILL`) to process group `pgid` via `kill`.
/// Errors (e.g. the group is gone) are ignored: this is best-effort cleanup.
pub fn signal_group(pgid: u32, sig: &str) {
    if pgid <= 1 {
        return;
    }
    let kill = find_in_path("kill").unwrap_or_else(|| PathBuf::from("kill"));
    let _ = Command::new(kill)
        .args(["-s", sig, "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Send signal `sig` to the single process `pid` via `kill` (best effort).
pub fn signal_pid(pid: u32, sig: &str) {
    if pid <= 1 {
        return;
    }
    let kill = find_in_path("kill").unwrap_or_else(|| PathBuf::from("kill"));
    let _ = Command::new(kill)
        .args(["-s", sig, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

type LineHook = Box<dyn FnMut(&str) + Send>;

/// A child process (usually `ip netns exec NS …`) that leads its own process group.
///
/// Dropping it terminates the whole group: SIGTERM, up to 2 s grace, then SIGKILL, then reaps
/// the leader. With `capture`, stdout and stderr are read by two threads into strings so the
/// child never blocks on a full pipe; [`NsChild::on_stderr_line`] lets a caller watch stderr
/// lines as they come (progress reports).
pub struct NsChild {
    child: Child,
    cmd: String,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
    err_hook: Arc<Mutex<Option<LineHook>>>,
    status: Option<ExitStatus>,
}

impl std::fmt::Debug for NsChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsChild").field("pid", &self.child.id()).field("cmd", &self.cmd).finish()
    }
}

impl NsChild {
    /// Start `prog args` inside namespace `ns` (or here when `ns` is `None`).
    /// With `capture` its stdout/stderr are collected, otherwise inherited.
    pub fn spawn(ns: Option<&str>, prog: &str, args: &[String], capture: bool) -> Result<NsChild, LabError> {
        Self::spawn_argv(&ns_argv(ns, prog, args), capture)
    }

    /// Start a full argument vector (see [`ns_argv`]).
    pub fn spawn_argv(argv: &[String], capture: bool) -> Result<NsChild, LabError> {
        let mut c = command_for(argv)?;
        c.process_group(0).stdin(Stdio::null());
        if capture {
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let cmd = shown(argv);
        let mut child = c.spawn().map_err(|source| LabError::Spawn { cmd: cmd.clone(), source })?;
        let err_hook: Arc<Mutex<Option<LineHook>>> = Arc::new(Mutex::new(None));
        let out = child.stdout.take().map(|mut o| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let mut buf = Vec::new();
                let _ = o.read_to_end(&mut buf);
                s.push_str(&String::from_utf8_lossy(&buf));
                s
            })
        });
        let err = child.stderr.take().map(|e| {
            let hook = Arc::clone(&err_hook);
            std::thread::spawn(move || {
                let mut s = String::new();
                let mut r = BufReader::new(e);
                let mut line = Vec::new();
                while let Ok(n) = r.read_until(b'\n', &mut line) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&line).into_owned();
                    if let Ok(mut h) = hook.lock() {
                        if let Some(f) = h.as_mut() {
                            f(text.trim_end());
                        }
                    }
                    // Keep the output bounded (a chatty tool must not eat memory).
                    if s.len() < 1 << 20 {
                        s.push_str(&text);
                    }
                    line.clear();
                }
                s
            })
        });
        Ok(NsChild { child, cmd, out, err, err_hook, status: None })
    }

    /// Call `f` for every stderr line from now on (only with `capture`).
    pub fn on_stderr_line(&self, f: impl FnMut(&str) + Send + 'static) {
        if let Ok(mut h) = self.err_hook.lock() {
            *h = Some(Box::new(f));
        }
    }

    /// The process id (and process group id) of the child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The command line, for messages.
    pub fn cmd(&self) -> &str {
        &self.cmd
    }

    /// The exit status if the child has exited (non-blocking).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
            }
        }
        self.status
    }

    /// Wait up to `limit` for the child to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Send a signal (`INT`, `TERM`, `KILL`, …) to the child's whole process group.
    pub fn signal(&self, sig: &str) {
        if self.status.is_none() {
            signal_group(self.pid(), sig);
        }
    }

    /// Send a signal to the leader only (`ip netns exec` execs the program, so that is the
    /// program itself).
    pub fn signal_leader(&self, sig: &str) {
        if self.status.is_none() {
            signal_pid(self.pid(), sig);
        }
    }

    /// Wait for the child to exit (at most `limit`, then kill its group) and return its output.
    pub fn finish(&mut self, limit: Duration) -> Result<Captured, LabError> {
        let status = match self.wait_timeout(limit) {
            Some(s) => s,
            None => {
                self.terminate();
                let stderr = self.take_stderr();
                return Err(LabError::Timeout { cmd: self.cmd.clone(), secs: limit.as_secs(), stderr });
            }
        };
        let stdout = self.out.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = self.take_stderr();
        Ok(Captured { status, stdout, stderr })
    }

    fn take_stderr(&mut self) -> String {
        self.err.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }

    /// Stop the group: SIGTERM, up to 2 s grace, SIGKILL; then reap the leader.
    pub fn terminate(&mut self) {
        self.stop_with("TERM", Duration::from_secs(2));
    }

    /// Stop the group with `sig` first (e.g. `INT` for a graceful stop), waiting up to `grace`
    /// before SIGKILL; reap the leader. Returns the exit status.
    pub fn stop_with(&mut self, sig: &str, grace: Duration) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            signal_group(self.pid(), sig);
            if self.wait_timeout(grace).is_none() {
                signal_group(self.pid(), "KILL");
                let _ = self.child.wait().map(|s| self.status = Some(s));
            }
        }
        // Children of the leader (same group) may outlive it: make sure they are gone too.
        signal_group(self.pid(), "KILL");
        self.status
    }
}

impl Drop for NsChild {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.terminate();
        } else {
            signal_group(self.pid(), "KILL");
        }
        // Reader threads end when the pipes close.
        if let Some(h) = self.out.take() {
            let _ = h.join();
        }
        if let Some(h) = self.err.take() {
            let _ = h.join();
        }
    }
}
