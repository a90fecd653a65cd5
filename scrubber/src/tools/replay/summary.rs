//! What a replay did: the [`Summary`] (its JSON is `--json`), its text for people, and the
//! progress line.

use crate::engine::counters::{group, render_families, render_group, Counters};
use crate::engine::policy::limiter::LimiterStats;
use crate::engine::session::TableStats;
use crate::engine::{DropReason, Engine};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

/// Frames dropped per [`DropReason`]; serialised as a map from reason name to count, every
/// reason present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonCounts(pub [u64; DropReason::COUNT]);

impl Default for ReasonCounts {
    fn default() -> Self {
        ReasonCounts([0; DropReason::COUNT])
    }
}

impl ReasonCounts {
    /// Count for one reason.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r.index()]
    }

    /// Nonzero reasons, largest first (ties in counter order).
    pub fn nonzero_by_count(&self) -> Vec<(DropReason, u64)> {
        let mut v: Vec<(DropReason, u64)> =
            DropReason::ALL.iter().map(|&r| (r, self.get(r))).filter(|&(_, n)| n > 0).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.index().cmp(&b.0.index())));
        v
    }
}

impl Serialize for ReasonCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(DropReason::COUNT))?;
        for r in DropReason::ALL {
            m.serialize_entry(r.as_str(), &self.0[r.index()])?;
        }
        m.end()
    }
}

/// One output file and how many frames went into it.
#[derive(Clone, Debug, Serialize)]
pub struct OutputSummary {
    /// `pass`, `drop` or `answers`.
    pub kind: &'static str,
    /// The file.
    pub path: String,
    /// Frames written.
    pub frames: u64,
}

/// What a replay did. `Serialize` gives the `--json` form; [`Summary::render_text`] the form
/// for people.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The input file.
    pub file: String,
    /// `pcap` or `pcapng`.
    pub format: &'static str,
    /// Frames (packet records) read from the capture.
    pub frames: u64,
    /// Frames fed to the engine as inbound (including `unclassified`).
    pub inbound: u64,
    /// Frames fed to the engine as outbound.
    pub outbound: u64,
    /// Frames whose source and destination are both unprotected, or that are not IP; fed as
    /// inbound.
    pub unclassified: u64,
    /// Frames sent on: [`crate::Verdict::Forward`] plus [`crate::Verdict::ForwardWithReply`].
    pub forwarded: u64,
    /// Of `forwarded`, frames that were inbound (ext → int).
    pub forwarded_inbound: u64,
    /// Of `forwarded`, frames that were outbound (int → ext).
    pub forwarded_outbound: u64,
    /// Frames sent back out of the arrival interface: [`crate::Verdict::Reply`] frames plus the extra
    /// frames of [`crate::Verdict::ForwardWithReply`].
    pub replied: u64,
    /// Verdicts that were [`crate::Verdict::Reply`].
    pub reply_verdicts: u64,
    /// Verdicts that were [`crate::Verdict::ForwardWithReply`].
    pub forward_with_reply_verdicts: u64,
    /// Verdicts that were [`crate::Verdict::Reset`]: the segment dropped (counted in
    /// `dropped`), its connection reset both ways (a RST sent on, one answered).
    pub reset_verdicts: u64,
    /// Frames dropped, all reasons.
    pub dropped: u64,
    /// Frames dropped, per reason (every reason, zeros included).
    pub dropped_by_reason: ReasonCounts,
    /// Frames whose captured length was below their length on the wire (fed anyway).
    pub snapped: u64,
    /// Frames longer than 65,535 bytes, skipped.
    pub oversize_skipped: u64,
    /// Sessions live in the engine's table at the end.
    pub sessions_live: usize,
    /// Time between the first and the last frame's timestamps, in seconds.
    pub capture_seconds: f64,
    /// Wall-clock time the replay took, in seconds.
    pub elapsed_seconds: f64,
    /// Frames judged per second of wall-clock time.
    pub frames_per_second: f64,
    /// Files written.
    pub outputs: Vec<OutputSummary>,
    /// Why the replay stopped before the end of the file, when it did.
    pub stopped: Option<String>,
    /// The engine's counters.
    pub counters: Counters,
    /// The engine's session table.
    pub table: TableStats,
    /// The engine's limiters.
    pub limiter: LimiterStats,
    /// Attack events found in the capture, on its clock (see `engine::detect`).
    pub events: Vec<crate::engine::detect::Event>,
}

impl Summary {
    /// A summary of nothing yet, for `file` in `format`, with `engine`'s counters.
    pub fn new(file: String, format: &'static str, engine: &Engine) -> Summary {
        Summary {
            file,
            format,
            frames: 0,
            inbound: 0,
            outbound: 0,
            unclassified: 0,
            forwarded: 0,
            forwarded_inbound: 0,
            forwarded_outbound: 0,
            replied: 0,
            reply_verdicts: 0,
            forward_with_reply_verdicts: 0,
            reset_verdicts: 0,
            dropped: 0,
            dropped_by_reason: ReasonCounts::default(),
            snapped: 0,
            oversize_skipped: 0,
            sessions_live: engine.sessions(),
            capture_seconds: 0.0,
            elapsed_seconds: 0.0,
            frames_per_second: 0.0,
            outputs: Vec::new(),
            stopped: None,
            counters: engine.counters().clone(),
            table: engine.table().stats(),
            limiter: engine.limiter_stats(),
            events: Vec::new(),
        }
    }

    /// Take the engine's counters, table and limiter statistics as they are now.
    pub fn take_counters(&mut self, engine: &Engine) {
        self.sessions_live = engine.sessions();
        self.counters = engine.counters().clone();
        self.table = engine.table().stats();
        self.limiter = engine.limiter_stats();
    }
}

/// A progress line on stderr, about once a second, for large inputs when stderr is a terminal.
pub(crate) struct Progress {
    on: bool,
    start: Instant,
    last: Instant,
    printed: bool,
}

impl Progress {
    const LARGE: u64 = 64 << 20;

    pub(crate) fn new(input: &Path) -> Progress {
        let large = std::fs::metadata(input).map(|m| m.len() >= Self::LARGE).unwrap_or(false);
        let now = Instant::now();
        Progress { on: large && std::io::stderr().is_terminal(), start: now, last: now, printed: false }
    }

    #[inline]
    pub(crate) fn tick(&mut self, frames: u64) {
        if !self.on || frames % 8192 != 0 {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.last) >= Duration::from_secs(1) {
            self.last = now;
            let rate = frames as f64 / now.duration_since(self.start).as_secs_f64();
            eprint!("\r{} frames, {} frames/s   ", group(frames), group(rate as u64));
            self.printed = true;
        }
    }

    pub(crate) fn finish(&mut self) {
        if self.printed {
            eprint!("\r{:60}\r", "");
        }
    }
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / of as f64)
    }
}

impl Summary {
    /// The summary for people: verdicts, drop reasons by count with their meaning, cookies,
    /// sessions and per-target counters.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{} ({}): {} frames, {:.3} s of traffic; {} inbound, {} outbound ({} neither protected nor IP, fed as inbound)",
            self.file,
            self.format,
            group(self.frames),
            self.capture_seconds,
            group(self.inbound),
            group(self.outbound),
            group(self.unclassified),
        );
        if let Some(stop) = &self.stopped {
            let _ = writeln!(o, "INCOMPLETE: {stop}");
        }
        let judged = self.forwarded + self.reply_verdicts + self.dropped;
        let _ = writeln!(o);
        let _ = writeln!(o, "  {:<24} {:>12} {:>7}", "verdict", "frames", "share");
        let rows = [
            ("forwarded", self.forwarded),
            ("  inbound (ext -> int)", self.forwarded_inbound),
            ("  outbound (int -> ext)", self.forwarded_outbound),
            ("replied (answers sent)", self.replied),
            ("dropped", self.dropped),
        ];
        for (name, n) in rows {
            let _ = writeln!(o, "  {:<24} {:>12} {:>7}", name, group(n), pct(n, judged));
        }
        if self.forward_with_reply_verdicts > 0 {
            let _ = writeln!(
                o,
                "  ({} forwarded frames also sent an answer back)",
                group(self.forward_with_reply_verdicts)
            );
        }
        if self.reset_verdicts > 0 {
            let _ = writeln!(
                o,
                "  ({} dropped segments reset their connection both ways: a RST sent on, one answered)",
                group(self.reset_verdicts)
            );
        }

        let reasons = self.dropped_by_reason.nonzero_by_count();
        if !reasons.is_empty() {
            let w = reasons.iter().map(|(r, _)| r.as_str().len()).max().unwrap_or(0).max(17);
            let _ = writeln!(o);
            let _ = writeln!(o, "  {:<w$} {:>12}  meaning", "dropped by reason", "frames");
            for (r, n) in reasons {
                let _ = writeln!(o, "  {:<w$} {:>12}  {}", r.as_str(), group(n), r.describe());
            }
        }

        // Every declared counter, as `scrubber stats` shows them.
        let _ = writeln!(o, "\nengine counters (as `scrubber stats` shows them)");
        render_group(&mut o, &self.counters.engine, None);
        render_families(&mut o, &self.counters, None);
        render_group(&mut o, &self.table, None);
        render_group(&mut o, &self.limiter, None);

        let _ = writeln!(o);
        if self.snapped > 0 {
            let _ = writeln!(
                o,
                "  {} frames were cut short by the capture's snap length (judged as captured)",
                group(self.snapped)
            );
        }
        if self.oversize_skipped > 0 {
            let _ = writeln!(
                o,
                "  {} frames over 65,535 bytes skipped (offload super-frames, not wire frames)",
                group(self.oversize_skipped)
            );
        }
        for out in &self.outputs {
            let _ = writeln!(o, "  wrote {:<8} {} frames to {}", out.kind, group(out.frames), out.path);
        }
        let _ = writeln!(
            o,
            "  {} frames in {:.3} s ({} frames/s)",
            group(self.frames),
            self.elapsed_seconds,
            group(self.frames_per_second as u64)
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_sorted_by_count() {
        let mut r = ReasonCounts::default();
        r.0[DropReason::TcpNull.index()] = 3;
        r.0[DropReason::AckNoSession.index()] = 10;
        r.0[DropReason::TcpXmas.index()] = 3;
        let v = r.nonzero_by_count();
        assert_eq!(v, vec![(DropReason::AckNoSession, 10), (DropReason::TcpNull, 3), (DropReason::TcpXmas, 3)]);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["ack_no_session"], 10);
        assert_eq!(j["rst_no_session"], 0);
    }
}
