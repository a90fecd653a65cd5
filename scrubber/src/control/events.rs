//! Where attack events go: a JSON-lines file (`--events FILE`), the log, and a command
//! (`--on-event CMD`: run by `sh -c` with the event's JSON on its stdin, at most
//! [`HOOK_TIMEOUT`] each, on a thread of its own — the hook an operator wires to a BGP speaker,
//! a pager or a ticket). Nothing here ever blocks the data plane: the control loop hands events
//! over a bounded queue; a full queue, a failing command or a full disk is reported once and
//! counted.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::detect::Event;

/// Longest a `--on-event` command may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Events waiting for the command, at most.
const HOOK_QUEUE: usize = 256;

crate::counters! {
    /// Attack events and where they went.
    pub struct EventStats("events") {
        /// Attack events (start, update, stop).
        counter "events" events,
        /// Events that could not be written to the `--events` file.
        counter "events" events_write_failures,
        /// `--on-event` commands that failed, timed out or could not start.
        counter "events" hook_failures,
        /// Events not given to `--on-event` because its queue was full.
        counter "events" hook_dropped,
    }
}

/// Why the events file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("--events {path}: {source}")]
pub struct EventsError {
    /// The file.
    pub path: PathBuf,
    /// The error.
    pub source: std::io::Error,
}

/// The destinations of attack events.
#[derive(Debug)]
pub struct EventSink {
    file: Option<(PathBuf, File)>,
    hook: Option<SyncSender<String>>,
    hook_failures: Arc<AtomicU64>,
    stats: EventStats,
    warned_write: bool,
    warned_hook: bool,
    log: bool,
}

impl EventSink {
    /// Events to `file` (appended), to the log when `log`, and to `cmd`.
    pub fn new(file: Option<&Path>, cmd: Option<&str>, log: bool) -> Result<EventSink, EventsError> {
        let file = match file {
            Some(p) => Some((
                p.to_path_buf(),
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| EventsError { path: p.to_path_buf(), source })?,
            )),
            None => None,
        };
        let hook_failures = Arc::new(AtomicU64::new(0));
        let hook = cmd.map(|c| {
            let (tx, rx) = sync_channel::<String>(HOOK_QUEUE);
            let c = c.to_string();
            let failures = Arc::clone(&hook_failures);
            std::thread::Builder::new()
                .name("scrubber-on-event".into())
                .spawn(move || {
                    let mut warned = false;
                    for json in rx {
                        if let Err(e) = run_hook(&c, &json) {
                            failures.fetch_add(1, Ordering::Relaxed);
                            if !warned {
                                tracing::warn!("--on-event `{c}`: {e} (further failures are only counted)");
                                warned = true;
                            }
                        }
                    }
                })
                .map(|_| tx)
        });
        let hook = match hook {
            Some(Ok(tx)) => Some(tx),
            Some(Err(e)) => {
                tracing::warn!("--on-event: cannot start its thread: {e}");
                None
            }
            None => None,
        };
        Ok(EventSink {
            file,
            hook,
            hook_failures,
            stats: EventStats::default(),
            warned_write: false,
            warned_hook: false,
            log,
        })
    }

    /// Send `events` everywhere.
    pub fn emit(&mut self, events: &[Event]) {
        for e in events {
            self.stats.events += 1;
            let json = serde_json::to_string(e).unwrap_or_default();
            if self.log {
                let types = e.types.join(", ");
                let top: Vec<String> =
                    e.top_sources.iter().take(3).map(|s| format!("{} {} pps", s.src, s.pps)).collect();
                let kind = match e.event {
                    crate::engine::detect::EventKind::Start => "started",
                    crate::engine::detect::EventKind::Update => "continues",
                    crate::engine::detect::EventKind::Stop => "is over",
                };
                let top = if top.is_empty() { "-".to_string() } else { top.join(", ") };
                tracing::warn!(
                    service = %e.target,
                    types = %types,
                    peak_pps = e.peak_pps,
                    peak_bps = e.peak_bps,
                    dropped = e.dropped,
                    forwarded = e.forwarded,
                    top_sources = %top,
                    "attack {kind} on {}: {types}",
                    e.target
                );
            }
            if let Some((path, f)) = self.file.as_mut() {
                if let Err(err) = writeln!(f, "{json}").and_then(|()| f.flush()) {
                    self.stats.events_write_failures += 1;
                    if !self.warned_write {
                        tracing::warn!(
                            "--events {}: {err} (events are still logged; further failures only counted)",
                            path.display()
                        );
                        self.warned_write = true;
                    }
                }
            }
            if let Some(tx) = &self.hook {
                match tx.try_send(json) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                        self.stats.hook_dropped += 1;
                        if !self.warned_hook {
                            tracing::warn!(
                                "--on-event: the command is not keeping up; events dropped for it are counted"
                            );
                            self.warned_hook = true;
                        }
                    }
                }
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> EventStats {
        let mut s = self.stats;
        s.hook_failures = self.hook_failures.load(Ordering::Relaxed);
        s
    }
}

/// Run `cmd` with `json` on stdin, at most [`HOOK_TIMEOUT`].
fn run_hook(cmd: &str, json: &str) -> Result<(), String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(json.as_bytes());
        let _ = i.write_all(b"\n");
    }
    let t = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("exited with {st}")),
            Ok(None) if t.elapsed() > HOOK_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {} s: killed", HOOK_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::detect::EventKind;

    fn event() -> Event {
        Event {
            event: EventKind::Start,
            target: "web".into(),
            time: 1.0,
            started: 1.0,
            types: vec!["ack-psh flood"],
            peak_pps: 20_000,
            peak_bps: 9_600_000,
            pps_by_class: vec![("ack_psh", 20_000)],
            dropped: 40_000,
            forwarded: 10,
            top_sources: vec![],
        }
    }

    #[test]
    fn file_hook_and_failures() {
        let dir = std::env::temp_dir().join(format!("scrubber-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("events.jsonl");
        let got = dir.join("hook.out");
        let cmd = format!("cat >> {}", got.display());
        let mut s = EventSink::new(Some(&file), Some(&cmd), false).unwrap();
        s.emit(&[event(), event()]);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!((v["event"].as_str(), v["target"].as_str()), (Some("start"), Some("web")));
        let t = Instant::now();
        while std::fs::read_to_string(&got).map(|t| t.lines().count()).unwrap_or(0) < 2 {
            assert!(t.elapsed() < Duration::from_secs(5), "the hook got both events");
            std::thread::sleep(Duration::from_millis(20));
        }
        // A failing command is counted, never fatal.
        let mut bad = EventSink::new(None, Some("exit 3"), false).unwrap();
        bad.emit(&[event()]);
        let t = Instant::now();
        while bad.stats().hook_failures == 0 {
            assert!(t.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(20));
        }
        // A file that cannot be opened is an error up front.
        assert!(EventSink::new(Some(&dir.join("no/such/dir/e.jsonl")), None, false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
