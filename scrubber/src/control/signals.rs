//! Signals for `scrubber run`, as flags a loop polls.
//!
//! * SIGINT, SIGTERM → [`Signals::stop`] becomes true: finish the current batch, restore the
//!   kernel knobs, detach, exit. A *second* SIGINT (Ctrl-C pressed again while stopping) exits
//!   at once with status 130, without any clean-up (the XDP program still detaches, since its
//!   link dies with the process; kernel knobs stay as set).
//! * SIGHUP → [`Signals::reload`] becomes true: reload the policy. Take it with
//!   [`Signals::take_reload`], which also clears it.
//!
//! The handlers only store to atomics (via `signal-hook`); polling them is a relaxed load, cheap
//! enough for every loop iteration.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::SigId;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Exit status after a second SIGINT (128 + SIGINT, the shell convention).
pub const EXIT_ON_SECOND_INTERRUPT: i32 = 130;

/// A handler could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the {signal} handler: {source} (this is a bug or a very unusual system; please report it)")]
pub struct SignalError {
    /// Which signal.
    pub signal: &'static str,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// The installed handlers and their flags. Dropping it unregisters the handlers; from then on
/// the three signals are ignored (signal-hook does not restore the default action), so keep it
/// for the life of the run.
#[derive(Debug)]
pub struct Signals {
    /// Set by SIGINT and SIGTERM: stop.
    pub stop: Arc<AtomicBool>,
    /// Set by SIGHUP: reload the policy.
    pub reload: Arc<AtomicBool>,
    ids: Vec<SigId>,
}

impl Signals {
    /// Install the handlers.
    pub fn install() -> Result<Signals, SignalError> {
        let stop = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        let mut s = Signals { stop: Arc::clone(&stop), reload: Arc::clone(&reload), ids: Vec::with_capacity(4) };
        let err = |signal| move |source| SignalError { signal, source };
        // Order matters: actions run in registration order, so the conditional exit sees the
        // flag as it was before this SIGINT set it.
        s.ids.push(
            signal_hook::flag::register_conditional_shutdown(SIGINT, EXIT_ON_SECOND_INTERRUPT, Arc::clone(&stop))
                .map_err(err("SIGINT"))?,
        );
        s.ids.push(signal_hook::flag::register(SIGINT, Arc::clone(&stop)).map_err(err("SIGINT"))?);
        s.ids.push(signal_hook::flag::register(SIGTERM, stop).map_err(err("SIGTERM"))?);
        s.ids.push(signal_hook::flag::register(SIGHUP, reload).map_err(err("SIGHUP"))?);
        Ok(s)
    }

    /// Whether SIGINT or SIGTERM arrived.
    #[inline]
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Whether SIGHUP arrived since the last call (clears the flag).
    #[inline]
    pub fn take_reload(&self) -> bool {
        self.reload.load(Ordering::Relaxed) && self.reload.swap(false, Ordering::Relaxed)
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// Handlers are process-wide: one signal test at a time.
    static LOCK: Mutex<()> = Mutex::new(());

    fn wait_for(f: impl Fn() -> bool) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(2) {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn term_sets_stop_and_hup_sets_reload() {
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let s = Signals::install().unwrap();
        assert!(!s.stop_requested());
        assert!(!s.take_reload());
        signal_hook::low_level::raise(SIGHUP).unwrap();
        assert!(wait_for(|| s.reload.load(Ordering::Relaxed)));
        assert!(!s.stop_requested(), "SIGHUP must not stop");
        assert!(s.take_reload());
        assert!(!s.take_reload(), "take_reload clears the flag");
        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert!(wait_for(|| s.stop_requested()));
        // Another SIGTERM does not exit (only a second SIGINT does).
        signal_hook::low_level::raise(SIGTERM).unwrap();
        assert!(s.stop_requested());
    }

    #[test]
    fn first_sigint_sets_stop_second_exits() {
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // Run the child test below in a process of its own: the second SIGINT ends it.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "control::signals::tests::child_double_sigint",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SCRUBBER_SIGNALS_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("child: first SIGINT set stop"), "stdout: {stdout}");
        assert!(!stdout.contains("child: still alive"), "stdout: {stdout}");
        assert_eq!(out.status.code(), Some(EXIT_ON_SECOND_INTERRUPT), "stdout: {stdout}");
    }

    /// Child process of `first_sigint_sets_stop_second_exits` (does nothing elsewhere).
    #[test]
    #[ignore = "run by first_sigint_sets_stop_second_exits in a child process"]
    fn child_double_sigint() {
        if std::env::var_os("SCRUBBER_SIGNALS_CHILD").is_none() {
            return;
        }
        let s = Signals::install().unwrap();
        signal_hook::low_level::raise(SIGINT).unwrap();
        assert!(wait_for(|| s.stop_requested()));
        println!("child: first SIGINT set stop");
        signal_hook::low_level::raise(SIGINT).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        println!("child: still alive");
    }
}
