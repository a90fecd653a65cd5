//! `scrubber stats`: read the statistics of a running scrubber from its socket and print them for
//! people (or as JSON).

use anyhow::{bail, Context, Result};
use clap::Args;
use scrubber::counters::Counters;
use scrubber::replay::group;
use scrubber::telemetry::{self, Snapshot, Totals, WorkerStats};
use scrubber::DropReason;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::time::Duration;

/// Show the statistics of a running scrubber.
///
/// Connects to the stats socket of `scrubber run` and prints, for all workers together and for
/// each worker: frames received, forwarded and answered; drops by reason (only reasons that
/// occurred, with what they mean); per protected target; SYN cookies; RSTs; sessions; ring
/// stalls; hand-offs between workers; how the sockets are bound.
///
/// With --watch the numbers are refreshed every SECS seconds (default 1) and per-second rates
/// are shown next to the totals. Stop with Ctrl-C.
///
/// Examples:
///   scrubber stats
///   scrubber stats --watch
///   scrubber stats --json | jq .workers[0].counters.dropped
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct StatsArgs {
    /// The scrubber's stats socket (as given to `scrubber run --socket`).
    #[arg(long, value_name = "PATH", default_value = telemetry::DEFAULT_SOCKET)]
    socket: PathBuf,

    /// Refresh every SECS seconds (default 1) and show per-second rates.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1")]
    watch: Option<f64>,

    /// Print the raw snapshot as JSON (one object per line with --watch).
    #[arg(long)]
    json: bool,
}

/// Run `scrubber stats`.
pub fn run(a: StatsArgs) -> Result<()> {
    let interval = match a.watch {
        None => None,
        Some(s) if (0.05..=86_400.0).contains(&s) => Some(Duration::from_secs_f64(s)),
        Some(s) => bail!("--watch {s}: give a refresh interval in seconds between 0.05 and 86400 (e.g. --watch 1)"),
    };
    let tty = std::io::stdout().is_terminal();
    let mut prev: Option<Snapshot> = None;
    loop {
        let snap = telemetry::fetch(&a.socket)?;
        let mut out = String::new();
        if a.json {
            out = serde_json::to_string(&snap).context("cannot encode the snapshot as JSON")?;
            out.push('\n');
        } else {
            if interval.is_some() && tty {
                out.push_str("\x1b[H\x1b[2J");
            }
            out.push_str(&render(&snap, prev.as_ref()));
        }
        let mut stdout = std::io::stdout().lock();
        // A closed pipe (e.g. `| head`) ends the command quietly.
        if stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()).is_err() {
            return Ok(());
        }
        drop(stdout);
        match interval {
            None => return Ok(()),
            Some(d) => std::thread::sleep(d),
        }
        prev = Some(snap);
    }
}

/// One block of numbers: a worker or the total.
fn worker_block(w: &WorkerStats) -> Totals {
    Totals {
        workers: 1,
        counters: w.counters.clone(),
        rings: w.rings,
        sessions: w.sessions,
        handoffs_out: w.handoffs_out,
        handoffs_in: w.handoffs_in,
    }
}

type Get = fn(&Totals) -> u64;

/// Rows shown for every block, in order: (section, label, value, rate shown).
const ROWS: &[(&str, &str, Get, bool)] = &[
    ("traffic", "received from ext", |t| t.counters.rx_inbound, true),
    ("traffic", "received from int", |t| t.counters.rx_outbound, true),
    ("traffic", "forwarded ext -> int", |t| t.counters.forwarded_inbound, true),
    ("traffic", "forwarded int -> ext", |t| t.counters.forwarded_outbound, true),
    ("traffic", "replies sent back", |t| t.counters.replies, true),
    ("traffic", "dropped", |t| t.counters.dropped_total(), true),
    ("tcp", "cookies sent", |t| t.counters.cookies_sent, true),
    ("tcp", "cookies validated", |t| t.counters.cookies_validated, true),
    ("tcp", "cookies failed", |t| t.counters.cookies_failed, true),
    ("tcp", "RSTs forwarded ext -> int", |t| t.counters.rst_forwarded_inbound, true),
    ("tcp", "RSTs forwarded int -> ext", |t| t.counters.rst_forwarded_outbound, true),
    ("tcp", "RSTs sent by the scrubber", |t| t.counters.rst_sent, true),
    ("tcp", "backend SYNs sent", |t| t.counters.backend_syns_sent, true),
    ("tcp", "backend SYNs retransmitted", |t| t.counters.backend_syns_retransmitted, true),
    ("sessions", "live", |t| t.sessions, false),
    ("sessions", "created (proxied)", |t| t.counters.sessions_proxied, true),
    ("sessions", "created (tracked)", |t| t.counters.sessions_tracked, true),
    ("sessions", "created (by servers)", |t| t.counters.sessions_outbound, true),
    ("sessions", "closed", |t| t.counters.sessions_closed, true),
    ("rings", "rx ring full", |t| t.rings.rx_ring_full, true),
    ("rings", "fill ring empty", |t| t.rings.fill_ring_empty, true),
    ("rings", "tx ring full", |t| t.rings.tx_ring_full, true),
    ("rings", "rx dropped by kernel", |t| t.rings.rx_dropped, true),
    ("rings", "tx invalid descriptors", |t| t.rings.tx_invalid, true),
    ("rings", "tx kicks", |t| t.rings.tx_kicks, true),
    ("rings", "polls", |t| t.rings.polls, true),
    ("hand-offs", "to other workers", |t| t.handoffs_out, true),
    ("hand-offs", "from other workers", |t| t.handoffs_in, true),
];

/// Passed-unchanged counters, shown only when non-zero.
const PASSED: &[(&str, Get)] = &[
    ("passed: ARP / neighbour discovery", |t| t.counters.passed_arp_nd),
    ("passed: not TCP", |t| t.counters.passed_non_tcp),
    ("passed: not a protected target", |t| t.counters.passed_unprotected),
    ("passed: other ethertype", |t| t.counters.passed_other_ethertype),
    ("passed: fragments", |t| t.counters.passed_fragments),
];

/// Render a snapshot for people. With `prev` (an earlier snapshot of the same process), rates
/// per second are shown next to the totals.
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
    let total = cur.total();
    let ptotal = prev.map(Snapshot::total);
    let _ = writeln!(o, "\n== all workers ==");
    block(&mut o, &total, ptotal.as_ref(), dt);
    for (i, w) in cur.workers.iter().enumerate() {
        let core = w.core.map_or("not pinned".to_string(), |c| format!("core {c}"));
        let mode = |m: &str| if m.is_empty() { "unbound".to_string() } else { m.to_string() };
        let _ =
            writeln!(o, "\n== worker {} ({}, ext {}, int {}) ==", w.worker, core, mode(&w.ext_mode), mode(&w.int_mode));
        let pw = prev.and_then(|p| p.workers.get(i)).map(worker_block);
        block(&mut o, &worker_block(w), pw.as_ref(), dt);
    }
    o
}

fn block(o: &mut String, t: &Totals, p: Option<&Totals>, dt: Option<f64>) {
    let rate = |get: Get| -> Option<f64> {
        let (p, dt) = (p?, dt?);
        Some(get(t).saturating_sub(get(p)) as f64 / dt)
    };
    let mut section = "";
    for &(sec, label, get, has_rate) in ROWS {
        if sec != section {
            let _ = writeln!(o, "  {sec}");
            section = sec;
        }
        row(o, label, get(t), if has_rate { rate(get) } else { None }, "");
        if label == "dropped" {
            for r in DropReason::ALL {
                let get_r = |c: &Counters| c.dropped[r.index()];
                let v = get_r(&t.counters);
                if v == 0 {
                    continue;
                }
                let rt = match (p, dt) {
                    (Some(p), Some(dt)) => Some(v.saturating_sub(get_r(&p.counters)) as f64 / dt),
                    _ => None,
                };
                row(o, &format!("  {}", r.as_str()), v, rt, first_sentence(r.describe()));
            }
        }
        if label == "replies sent back" {
            for &(label, get) in PASSED {
                if get(t) != 0 {
                    row(o, label, get(t), rate(get), "");
                }
            }
        }
    }
    if !t.counters.per_target.is_empty() {
        let _ = writeln!(o, "  per target");
        let _ = writeln!(
            o,
            "    {:<30} {:>14} {:>14} {:>14} {:>14}",
            "target", "received", "forwarded", "answered", "dropped"
        );
        for (i, pt) in t.counters.per_target.iter().enumerate() {
            let _ = writeln!(
                o,
                "    {:<30} {:>14} {:>14} {:>14} {:>14}",
                pt.target,
                group(pt.rx),
                group(pt.forwarded),
                group(pt.replied),
                group(pt.dropped)
            );
            if let (Some(pp), Some(dt)) = (p.and_then(|p| p.counters.per_target.get(i)), dt) {
                let r = |a: u64, b: u64| format!("{}/s", group((a.saturating_sub(b) as f64 / dt).round() as u64));
                let _ = writeln!(
                    o,
                    "    {:<30} {:>14} {:>14} {:>14} {:>14}",
                    "",
                    r(pt.rx, pp.rx),
                    r(pt.forwarded, pp.forwarded),
                    r(pt.replied, pp.replied),
                    r(pt.dropped, pp.dropped)
                );
            }
        }
    }
}

fn row(o: &mut String, label: &str, v: u64, rate: Option<f64>, note: &str) {
    let _ = write!(o, "    {label:<32} {:>16}", group(v));
    if let Some(r) = rate {
        let _ = write!(o, " {:>14}/s", group(r.round() as u64));
    }
    if !note.is_empty() {
        let _ = write!(o, "   {note}");
    }
    o.push('\n');
}

fn first_sentence(s: &str) -> &str {
    match s.find(". ") {
        Some(i) => &s[..=i],
        None => s,
    }
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
    use scrubber::telemetry::{RingStats, SNAPSHOT_VERSION};

    fn snap(uptime: f64, k: u64) -> Snapshot {
        let mut w = WorkerStats::new(0, &["198.18.0.10:80".to_string()]);
        w.core = Some(1);
        w.ext_mode = "copy".into();
        w.int_mode = "zero-copy".into();
        w.counters.rx_inbound = 1_000_000 * k;
        w.counters.dropped[DropReason::AckNoSession.index()] = 500 * k;
        w.counters.cookies_sent = 3 * k;
        w.counters.per_target[0].dropped = 500 * k;
        w.rings = RingStats { rx_ring_full: 9 * k, ..Default::default() };
        w.sessions = 77;
        Snapshot {
            version: SNAPSHOT_VERSION,
            pid: 7,
            started_unix: 0,
            uptime_secs: uptime,
            policy: "p gen 1".into(),
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
