//! The RFC 2544 part of `scrubber-perf wire`: per path, the highest offered rate the middle
//! takes with 0 % loss and with at most 0.5 % loss, found by binary search on the generator's
//! rate (as RFC 2544 §26.1 and FD.io CSIT's MLRsearch do), for the bare loop and the scrubber in
//! the same run; then legitimate TCP round trips under 10, 50 and 90 % of the 0 %-loss rate.
//!
//! Paths (the generator is `scrubber-perf gen`, AF_XDP, paced exactly):
//!
//! * **drop**: ACK-PSH from random 198.19.0.0/16 sources → 198.18.0.10:80, no session exists;
//!   received = frames the middle took (the generator's sent count minus the middle's ext rx
//!   drops); against the bare drop loop.
//! * **syn**: SYN from random sources → 198.18.0.10:80; received = SYN-ACKs back at the
//!   generator (its veth's rx count); against the bare reflect loop (every frame back out, MACs
//!   swapped: the cheapest possible answer).
//! * **forward**: UDP 198.18.0.1 → 198.18.0.10:9; received = frames at the sink; against the
//!   bare forward loop.
//!
//! A trial asks the generator for exactly rate × duration frames. Loss = 1 − received / asked;
//! a trial passes when the loss is within the threshold **and** the generator kept the rate (a
//! middle whose receive ring stays full makes veth refuse transmits, which the generator
//! retries: it then takes longer than the trial — a NIC would have dropped those frames).

use crate::wire_bench::{cpu_sample, Middle, MiddleKind, PollVariant, MIDDLE_CORE};
// (With several workers, the middle's busy time is that of MIDDLE_CORE: the last core.)
use anyhow::{Context, Result};
use scrubber::tools::lab::line::{in_ns, mac_str, Interrupt, Line, Watched, SINK_IP, SINK_MAC};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// A path of the search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SearchPath {
    /// ACK-PSH flood, dropped.
    Drop,
    /// SYN flood, answered.
    Syn,
    /// UDP, forwarded.
    Forward,
}

impl SearchPath {
    fn gen_kind(self) -> &'static str {
        match self {
            SearchPath::Drop => "ack-psh",
            SearchPath::Syn => "syn",
            SearchPath::Forward => "udp",
        }
    }

    fn bare(self) -> MiddleKind {
        match self {
            SearchPath::Drop => MiddleKind::BareDrop,
            SearchPath::Syn => MiddleKind::BareReflect,
            SearchPath::Forward => MiddleKind::BareForward,
        }
    }

    /// Name for the tables.
    pub fn name(self) -> &'static str {
        match self {
            SearchPath::Drop => "drop (ACK-PSH)",
            SearchPath::Syn => "SYN answer",
            SearchPath::Forward => "forward (UDP)",
        }
    }
}

/// One trial at a fixed rate.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    /// Rate asked of the generator, frames per second.
    pub rate: f64,
    /// Frames that should have been offered (rate × duration).
    pub target: u64,
    /// Frames the generator got out.
    pub sent: u64,
    /// Frames received (see the module docs).
    pub received: u64,
    /// Loss, percent.
    pub loss_pct: f64,
    /// How long the generator took (longer than the trial when the middle held it back).
    pub seconds: f64,
    /// Whether the generator kept the rate (took at most 5 % longer than asked).
    pub sustained: bool,
    /// Busy time of the middle's core, percent.
    pub middle_busy_pct: Option<f64>,
}

/// Round trips under a fraction of the found rate.
#[derive(Clone, Debug, Serialize)]
pub struct LoadLatency {
    /// Percent of the 0 %-loss rate.
    pub load_pct: u32,
    /// The rate, frames per second.
    pub rate: f64,
    /// Round trips measured.
    pub n: u64,
    /// Percentiles, µs.
    pub p50_us: f64,
    /// 90th.
    pub p90_us: f64,
    /// 99th.
    pub p99_us: f64,
    /// 99.9th.
    pub p999_us: f64,
}

/// The search for one path and middle.
#[derive(Clone, Debug, Serialize)]
pub struct Search {
    /// The path.
    pub path: SearchPath,
    /// `bare-…` or `scrubber`.
    pub middle: &'static str,
    /// Highest rate with no loss (frames per second; 0 if even the lowest trial lost frames).
    pub rate_0: f64,
    /// Highest rate with at most 0.5 % loss.
    pub rate_05: f64,
    /// Every trial, in order.
    pub trials: Vec<Trial>,
    /// Legit round trips under 10, 50 and 90 % of `rate_0` (of `rate_05` when `rate_0` is 0).
    pub latency: Vec<LoadLatency>,
}

/// What the search needs from the bench.
pub struct Ctx<'a> {
    /// The line.
    pub line: &'a Line,
    /// Binaries.
    pub bins: &'a Path,
    /// This program (for `gen` and the round-trip helper).
    pub me: &'a Path,
    /// Ctrl-C.
    pub stop: &'a Interrupt,
    /// Seconds per trial.
    pub trial_secs: f64,
    /// Binary-search steps per threshold.
    pub steps: u32,
    /// Poll strategy of the middles.
    pub poll: PollVariant,
    /// The generator's top rate (the first trial).
    pub max_rate: f64,
    /// Cores of the middle's workers, worker *i* on queue *i* (one generator per queue too).
    pub cores: Vec<usize>,
}

/// The generators for `secs` seconds at `rate` in total: one per queue (a veth delivers a frame
/// on the receive queue of the transmit queue it was sent on), each exactly its share of
/// rate × secs frames, with time to spare (a middle that keeps its ring full slows a generator
/// down; the trial sees that).
fn gen_cmds(c: &Ctx, path: SearchPath, rate: f64, secs: f64) -> Vec<std::process::Command> {
    let n = c.cores.len().max(1);
    (0..n)
        .map(|q| {
            let mut g = in_ns(&c.line.gen_ns, &c.me.to_string_lossy());
            let src = if path == SearchPath::Forward { "198.18.0.1/32" } else { "198.19.0.0/16" };
            let dport = if path == SearchPath::Forward { "9" } else { "80" };
            g.args(["gen", "--dev", &c.line.gen_if, "--queue", &q.to_string(), "--kind", path.gen_kind()]);
            g.args(["--src", src, "--dst", SINK_IP, "--dport", dport, "--dst-mac", &mac_str(&SINK_MAC)]);
            g.args(["--core", &c.cores.get(q).copied().unwrap_or(0).to_string(), "--quiet"]);
            let r = rate / n as f64;
            g.args(["--rate", &format!("{}", r.round() as u64), "--seconds", &format!("{:.3}", secs * 3.0 + 1.0)]);
            g.args(["--count", &format!("{}", (r * secs).ceil() as u64)]);
            g
        })
        .collect()
}

fn spawn_gens(c: &Ctx, path: SearchPath, rate: f64, secs: f64) -> Result<Vec<Watched>> {
    gen_cmds(c, path, rate, secs).into_iter().map(|g| Ok(Watched::spawn("gen", g, true)?)).collect()
}

fn trial(c: &Ctx, path: SearchPath, rate: f64) -> Result<Trial> {
    let l = c.line;
    let g0 = l.stats(&l.gen_ns, &l.gen_if)?;
    let e0 = l.stats(&l.mid_ns, &l.ext)?;
    let s0 = l.stats(&l.sink_ns, &l.sink_if)?;
    let c0 = cpu_sample(MIDDLE_CORE);
    let t0 = Instant::now();
    let mut secs = 0f64;
    for mut g in spawn_gens(c, path, rate, c.trial_secs)? {
        let left = Duration::from_secs_f64(c.trial_secs * 3.0 + 5.0).saturating_sub(t0.elapsed());
        if !g.wait_exit(c.stop, left)? {
            g.stop("INT", Duration::from_millis(300));
        }
        g.drain();
        let t = g
            .log
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["event"] == "done")
            .and_then(|v| v["t"].as_f64())
            .unwrap_or_else(|| t0.elapsed().as_secs_f64());
        secs = secs.max(t);
    }
    let c1 = cpu_sample(MIDDLE_CORE);
    c.stop.sleep(Duration::from_millis(250))?; // the last frames land
    let g1 = l.stats(&l.gen_ns, &l.gen_if)?;
    let e1 = l.stats(&l.mid_ns, &l.ext)?;
    let s1 = l.stats(&l.sink_ns, &l.sink_if)?;
    let sent = g1.tx_packets.saturating_sub(g0.tx_packets);
    let received = match path {
        SearchPath::Drop => sent.saturating_sub(e1.rx_dropped.saturating_sub(e0.rx_dropped)),
        SearchPath::Syn => g1.rx_packets.saturating_sub(g0.rx_packets),
        SearchPath::Forward => s1.rx_packets.saturating_sub(s0.rx_packets),
    };
    let target = (rate * c.trial_secs).round() as u64;
    let loss = if target == 0 { 0.0 } else { (1.0 - received as f64 / target as f64).max(0.0) * 100.0 };
    Ok(Trial {
        rate,
        target,
        sent,
        received,
        loss_pct: (loss * 1000.0).round() / 1000.0,
        seconds: secs,
        sustained: secs <= c.trial_secs * 1.05 + 0.01,
        middle_busy_pct: crate::wire_bench::busy_pct(c0, c1),
    })
}

/// Binary search between `lo` (passes) and `hi` (fails, or untested) for the highest rate with
/// loss at most `max_loss`.
fn search(c: &Ctx, path: SearchPath, max_loss: f64, mut lo: f64, mut hi: f64, trials: &mut Vec<Trial>) -> Result<f64> {
    // The top rate first: a middle that takes everything the generator offers is done at once.
    if lo == 0.0 {
        let t = trial(c, path, hi)?;
        let ok = t.loss_pct <= max_loss && t.sustained;
        trials.push(t);
        if ok {
            return Ok(hi);
        }
    }
    for _ in 0..c.steps {
        if hi - lo < hi * 0.02 {
            break;
        }
        let mid = (lo + hi) / 2.0;
        let t = trial(c, path, mid)?;
        let ok = t.loss_pct <= max_loss && t.sustained;
        trials.push(t);
        if ok {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn latency_under(c: &Ctx, path: SearchPath, rate: f64, pct: u32) -> Result<LoadLatency> {
    let secs = c.trial_secs.max(2.0);
    let load = rate * f64::from(pct) / 100.0;
    let mut gens = if load >= 1.0 { spawn_gens(c, path, load, secs + 1.0)? } else { Vec::new() };
    c.stop.sleep(Duration::from_millis(300))?;
    let mut cl = in_ns(&c.line.gen_ns, "taskset");
    cl.args(["-c", "0", "chrt", "-f", "20"]).arg(c.me);
    cl.args([
        "wire",
        "--role",
        "rtt",
        "--addr",
        &format!("{SINK_IP}:80"),
        "--role-secs",
        &format!("{:.2}", secs - 0.5),
    ]);
    let mut client = Watched::spawn("latency client", cl, false)?;
    let t0 = Instant::now();
    let done = client.wait_exit(c.stop, Duration::from_secs_f64(secs + 15.0))?;
    for g in gens.iter_mut() {
        let left = Duration::from_secs_f64(secs + 2.0).saturating_sub(t0.elapsed());
        if !g.wait_exit(c.stop, left)? {
            g.stop("INT", Duration::from_millis(300));
        }
    }
    client.drain();
    let st = if done {
        client.log.iter().find_map(|l| serde_json::from_str::<crate::wire_bench::RttStats>(l).ok()).unwrap_or_default()
    } else {
        client.stop("KILL", Duration::from_millis(100));
        crate::wire_bench::RttStats::default()
    };
    Ok(LoadLatency {
        load_pct: pct,
        rate: load,
        n: st.n,
        p50_us: st.p50_us,
        p90_us: st.p90_us,
        p99_us: st.p99_us,
        p999_us: st.p999_us,
    })
}

/// Search one path through one middle.
pub fn run_one(c: &Ctx, path: SearchPath, scrubber: bool) -> Result<Search> {
    let kind = if scrubber { MiddleKind::Scrubber } else { path.bare() };
    eprintln!("… RFC 2544 search, {} path, through {}", path.name(), kind.name());
    let mut m = Middle::start_on(c.line, c.bins, kind, Some(c.poll), &[], &c.cores, c.stop)?;
    let res = (|| -> Result<Search> {
        let mut trials = Vec::new();
        let rate_0 = search(c, path, 0.0, 0.0, c.max_rate, &mut trials)?;
        let rate_05 =
            if rate_0 >= c.max_rate { rate_0 } else { search(c, path, 0.5, rate_0.max(1.0), c.max_rate, &mut trials)? };
        let base = if rate_0 > 0.0 { rate_0 } else { rate_05 };
        let mut latency = Vec::new();
        // Legit TCP crosses the scrubber and the forward loop (the drop and reflect loops
        // carry none).
        if matches!(kind, MiddleKind::Scrubber | MiddleKind::BareForward) {
            for pct in [10, 50, 90] {
                latency.push(latency_under(c, path, base, pct)?);
            }
        }
        Ok(Search { path, middle: kind.name(), rate_0, rate_05, trials, latency })
    })();
    m.finish();
    res.with_context(|| format!("searching the {} path through {}", path.name(), kind.name()))
}

/// The search table.
pub fn render(rows: &[Search]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nRFC 2544 search: highest rate with 0 % and with ≤ 0.5 % loss, then legit TCP round trips (µs) under 10/50/90 % of the 0 %-loss rate"
    );
    let _ = writeln!(
        o,
        "{:<16} {:<13} {:>9} {:>9} {:>7} | {:>22} {:>22} {:>22}",
        "path",
        "middle",
        "0 % Mpps",
        "0.5 % Mpps",
        "trials",
        "10 %: p50/p99/p99.9",
        "50 %: p50/p99/p99.9",
        "90 %: p50/p99/p99.9"
    );
    for r in rows {
        let lat = |i: usize| {
            r.latency
                .get(i)
                .map(|l| format!("{:.0}/{:.0}/{:.0}", l.p50_us, l.p99_us, l.p999_us))
                .unwrap_or_else(|| "-".into())
        };
        let _ = writeln!(
            o,
            "{:<16} {:<13} {:>9.3} {:>9.3} {:>7} | {:>22} {:>22} {:>22}",
            r.path.name(),
            r.middle,
            r.rate_0 / 1e6,
            r.rate_05 / 1e6,
            r.trials.len(),
            lat(0),
            lat(1),
            lat(2)
        );
    }
    o
}
