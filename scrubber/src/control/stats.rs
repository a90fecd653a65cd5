//! Statistics for people: the text `scrubber stats` prints (and `scrubber run` at exit), and
//! the watch loop that refreshes it.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::telemetry::{self, Snapshot, TelemetryError, Totals};
use crate::engine::counters::{render_families, render_group, Since};

/// Print the statistics of the scrubber at `socket` to `out`: once, or every `interval` with
/// per-second rates (clearing the screen first when `clear`); as JSON lines with `json`.
/// Returns when `out` is closed (e.g. `| head`).
pub fn watch(
    socket: &Path,
    interval: Option<Duration>,
    json: bool,
    clear: bool,
    out: &mut dyn std::io::Write,
) -> Result<(), TelemetryError> {
    let mut prev: Option<Snapshot> = None;
    loop {
        let snap = telemetry::fetch(socket)?;
        let mut text = String::new();
        if json {
            text = serde_json::to_string(&snap).unwrap_or_default();
            text.push('\n');
        } else {
            if interval.is_some() && clear {
                text.push_str("\x1b[H\x1b[2J");
            }
            text.push_str(&render(&snap, prev.as_ref()));
        }
        // A closed pipe ends the command quietly.
        if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
            return Ok(());
        }
        match interval {
            None => return Ok(()),
            Some(d) => std::thread::sleep(d),
        }
        prev = Some(snap);
    }
}

/// Render a snapshot for people: every declared counter, by group and section, with what it
/// means; families (drops by reason, flags, targets, rules) where nonzero. With `prev` (an
/// earlier snapshot of the same process), rates per second are shown next to the totals.
pub fn render(cur: &Snapshot, prev: Option<&Snapshot>) -> String {
    let prev = prev.filter(|p| p.pid == cur.pid && p.workers.len() == cur.workers.len());
    let dt = prev.map(|p| cur.uptime_secs - p.uptime_secs).filter(|d| *d > 0.0);
    let prev = if dt.is_some() { prev } else { None };
    let mut o = String::new();
    let _ = writeln!(
        o,
        "scrubber pid {}, up {}, {} worker{}",
        cur.pid,
        human_duration(cur.uptime_secs),
        cur.workers.len(),
        if cur.workers.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(o, "policy: {}", if cur.policy.is_empty() { "(none)" } else { &cur.policy });
    match dt {
        Some(d) => {
            let _ = writeln!(o, "rates: per second over the last {d:.1} s");
        }
        None => {
            let _ = writeln!(o, "(totals since start; use --watch for rates)");
        }
    }
    render_group(&mut o, &cur.reload, prev.zip(dt).map(|(p, secs)| Since { prev: &p.reload, secs }));
    render_group(&mut o, &cur.links, prev.zip(dt).map(|(p, secs)| Since { prev: &p.links, secs }));
    render_group(&mut o, &cur.events, prev.zip(dt).map(|(p, secs)| Since { prev: &p.events, secs }));
    render_group(&mut o, &cur.samples, prev.zip(dt).map(|(p, secs)| Since { prev: &p.samples, secs }));
    render_group(&mut o, &cur.bans, prev.zip(dt).map(|(p, secs)| Since { prev: &p.bans, secs }));
    render_group(&mut o, &cur.sync, prev.zip(dt).map(|(p, secs)| Since { prev: &p.sync, secs }));
    if !cur.banned.is_empty() {
        let _ = writeln!(o, "banned (first {}; all: scrubber ban list):", cur.banned.len());
        for b in &cur.banned {
            let _ = writeln!(o, "  {:<40} {:>7} s left  {}", b.addr, b.seconds_left, b.by);
        }
    }
    let _ = writeln!(
        o,
        "under attack: {}",
        if cur.under_attack.is_empty() { "none".to_string() } else { cur.under_attack.join(", ") }
    );
    let total = cur.total();
    let ptotal = prev.map(Snapshot::total);
    let _ = writeln!(o, "\n== all workers ==");
    block(&mut o, &total, ptotal.as_ref().zip(dt));
    for (i, w) in cur.workers.iter().enumerate() {
        let core = w.core.map_or("not pinned".to_string(), |c| format!("core {c}"));
        let mode = |m: &str| if m.is_empty() { "unbound".to_string() } else { m.to_string() };
        let _ =
            writeln!(o, "\n== worker {} ({}, ext {}, int {}) ==", w.worker, core, mode(&w.ext_mode), mode(&w.int_mode));
        let pw = prev.and_then(|p| p.workers.get(i)).map(Totals::of);
        block(&mut o, &Totals::of(w), pw.as_ref().zip(dt));
    }
    o
}

/// One block of numbers (a worker or the total): every group, then the families.
fn block(o: &mut String, t: &Totals, p: Option<(&Totals, f64)>) {
    render_group(o, &t.counters.engine, p.map(|(p, secs)| Since { prev: &p.counters.engine, secs }));
    render_families(o, &t.counters, p.map(|(p, secs)| Since { prev: &p.counters, secs }));
    render_group(o, &t.table, p.map(|(p, secs)| Since { prev: &p.table, secs }));
    render_group(o, &t.limiter, p.map(|(p, secs)| Since { prev: &p.limiter, secs }));
    render_group(o, &t.rings, p.map(|(p, secs)| Since { prev: &p.rings, secs }));
    render_group(o, &t.http, p.map(|(p, secs)| Since { prev: &p.http, secs }));
    render_group(o, &t.sync, p.map(|(p, secs)| Since { prev: &p.sync, secs }));
}

fn human_duration(secs: f64) -> String {
    let s = if secs.is_finite() && secs > 0.0 { secs as u64 } else { 0 };
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m {s:02}s"),
        _ => format!("{d}d {h:02}h {m:02}m {s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::reload::ReloadStats;
    use crate::control::telemetry::SNAPSHOT_VERSION;
    use crate::dataplane::stats::{RingStats, WorkerStats};
    use crate::engine::counters::group;
    use crate::DropReason;

    fn snap(uptime: f64, k: u64) -> Snapshot {
        let mut w = WorkerStats::new(0, &["198.18.0.10:80".to_string()]);
        w.core = Some(1);
        w.ext_mode = "copy".into();
        w.int_mode = "zero-copy".into();
        w.counters.rx_inbound = 1_000_000 * k;
        w.counters.dropped[DropReason::AckNoSession.index()] = 500 * k;
        w.counters.dropped_total = 500 * k;
        w.counters.cookies_sent = 3 * k;
        w.counters.per_target[0].dropped = 500 * k;
        w.rings = RingStats { rx_ring_full: 9 * k, ..Default::default() };
        w.table.live = 77;
        Snapshot {
            version: SNAPSHOT_VERSION,
            pid: 7,
            started_unix: 0,
            uptime_secs: uptime,
            policy: "p gen 1".into(),
            reload: ReloadStats::default(),
            links: Default::default(),
            events: Default::default(),
            under_attack: Vec::new(),
            samples: Default::default(),
            bans: Default::default(),
            banned: Vec::new(),
            sync: Default::default(),
            workers: vec![w],
        }
    }

    #[test]
    fn totals_without_rates() {
        let out = render(&snap(3725.0, 2), None);
        assert!(out.contains("up 1h 02m 05s"), "{out}");
        assert!(out.contains("worker 0 (core 1, ext copy, int zero-copy)"), "{out}");
        assert!(out.contains("2,000,000"), "{out}");
        assert!(out.contains("ack_no_session"), "{out}");
        assert!(out.contains("ACK or ACK-PSH"), "description missing: {out}");
        // Zero reasons are not listed.
        assert!(!out.contains("tcp_xmas"), "{out}");
        assert!(out.contains("198.18.0.10:80"), "{out}");
        assert!(!out.contains("/s"), "rates without a previous snapshot: {out}");
    }

    #[test]
    fn rates_from_previous_snapshot() {
        let a = snap(10.0, 1);
        let b = snap(12.0, 3);
        let out = render(&b, Some(&a));
        // rx: (3M - 1M) / 2 s = 1M/s; ack_no_session: (1500-500)/2 = 500/s.
        assert!(out.contains("1,000,000/s"), "{out}");
        assert!(out.contains("500/s"), "{out}");
        // The live-session gauge has no rate.
        let live = out.lines().find(|l| l.trim_start().starts_with("live")).unwrap();
        assert!(!live.contains("/s"), "{live}");
        // A restarted process (other pid) gives no rates.
        let mut c = snap(1.0, 3);
        c.pid = 8;
        assert!(!render(&c, Some(&a)).contains("/s"));
    }

    #[test]
    fn grouping_and_durations() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(human_duration(59.9), "59s");
        assert_eq!(human_duration(90_061.0), "1d 01h 01m 01s");
        assert_eq!(human_duration(f64::NAN), "0s");
    }
}
