//! `scrubber-perf legit`: legitimate traffic under attack, next to the middle core's load.
//!
//! On the benchmark line (generator → middle → sink, see `scrubber::tools::lab::line`), with
//! the middle's worker and its veths' NAPI threads on core 1 and everything else on core 0:
//!
//! * the legit load: `wrk` (HTTP/1.1 keep-alive, 1 thread, 16 connections) and a handshake
//!   prober (`scrubber peer connect`: new connections, each a `GET /`, 4 at a time, as fast as
//!   they complete) from 198.18.0.1 to the server (`scrubber peer serve`) at 198.18.0.10:80;
//! * a flood from `scrubber-perf gen` (AF_XDP) at a fixed rate (`--flood-pps`, default
//!   0.3 Mpps: the same load on the generator's core through both middles): spoofed ACK-PSH or
//!   spoofed SYNs from 198.19.0.0/16
//!   (the cookie SYN-ACKs to the spoofed sources die at the generator's ingress);
//! * the end hosts' veths receive in NAPI threads of their own on core 0 (a veth without NAPI
//!   receives in the sender's context, which would charge the server's TCP work to the
//!   middle's core);
//! * the middle: `scrubber run --protect 198.18.0.10:80 --syn-mode proxy --cores 1` with the
//!   poll strategy under test, and the control — "ideal": the bare AF_XDP forward loop
//!   (`xdp-bare`) passing everything, the flood to the sink, which drops it at its ingress
//!   (what the generator's load and moving the frames cost, with nothing judged).
//!
//! Per flood and middle, `--runs` runs (median reported): offered flood rate, the middle core's
//! busy time, frames lost at the wire (the ext veth's rx drops: the AF_XDP rx ring was full or
//! had no buffer), wrk's requests/s and p99, the prober's connections/s and p99. A benchmark,
//! not a test: nothing is asserted.

use crate::wire_bench::{
    bins, busy_pct, check_tools, cpu_sample, find_root, Middle, MiddleKind, PollVariant, GEN_CORE, MAX_PPS, MIDDLE_CORE,
};
use anyhow::{bail, Context, Result};
use scrubber::tools::lab::line::{in_ns, mac_str, Flood, Interrupt, Line, Watched, SINK_IP, SINK_MAC};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `scrubber-perf legit`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds of legit load per measurement (2–60).
    #[arg(long, default_value_t = 8)]
    pub seconds: u64,
    /// Runs per flood and middle (the median is reported).
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
    /// Floods to measure, comma-separated: none, ack-psh, syn.
    #[arg(long, value_delimiter = ',', default_value = "ack-psh,syn")]
    pub floods: Vec<String>,
    /// Flood rate in frames per second, the same through both middles (`scrubber-perf gen`
    /// paces it); 0: as fast as it goes.
    #[arg(long, default_value_t = 300_000)]
    pub flood_pps: u64,
    /// Poll strategy of the scrubber and of the bare forward loop.
    #[arg(long, value_enum, default_value_t = PollVariant::Block)]
    pub poll: PollVariant,
    /// More arguments for `scrubber run` (e.g. `--scrubber-arg=--ring-size --scrubber-arg=4096`).
    #[arg(long = "scrubber-arg", allow_hyphen_values = true)]
    pub scrubber_args: Vec<String>,
    /// Measure the scrubber only (no ideal control run).
    #[arg(long)]
    pub no_ideal: bool,
    /// Directory holding the release `scrubber` and `xdp-bare` binaries [default: beside this one].
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One measurement.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Flood offered, frames per second (the generator veth's tx count).
    pub offered_pps: f64,
    /// Busy time of the middle's core, percent.
    pub middle_busy_pct: f64,
    /// Flood and legit frames lost at the middle's ext (rx drops), percent of those offered.
    pub wire_lost_pct: f64,
    /// wrk keep-alive requests per second.
    pub req_per_s: f64,
    /// wrk p99 latency, milliseconds.
    pub req_p99_ms: f64,
    /// Prober: completed new connections per second.
    pub conn_per_s: f64,
    /// Prober: p99 of a connection (handshake + GET), milliseconds.
    pub conn_p99_ms: f64,
    /// Prober: failed connections.
    pub conn_failed: u64,
    /// Frames lost at the middle's int (server → client direction), rx drops.
    pub int_lost: u64,
    /// Transmissions the generator's veth refused (the middle's receive ring was full): for
    /// trafgen a retry, for the client's TCP a lost segment.
    pub gen_tx_refused: u64,
    /// The scrubber's own ring counters over the measurement: rx ring full, fill ring empty,
    /// tx ring full.
    pub rings: Option<(u64, u64, u64)>,
}

/// The median of each field over runs.
fn median(v: &[Sample]) -> Sample {
    let m = |f: &dyn Fn(&Sample) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(|a, b| a.total_cmp(b));
        match x.len() {
            0 => 0.0,
            n if n % 2 == 1 => x[n / 2],
            n => (x[n / 2 - 1] + x[n / 2]) / 2.0,
        }
    };
    Sample {
        offered_pps: m(&|s| s.offered_pps),
        middle_busy_pct: m(&|s| s.middle_busy_pct),
        wire_lost_pct: m(&|s| s.wire_lost_pct),
        req_per_s: m(&|s| s.req_per_s),
        req_p99_ms: m(&|s| s.req_p99_ms),
        conn_per_s: m(&|s| s.conn_per_s),
        conn_p99_ms: m(&|s| s.conn_p99_ms),
        conn_failed: v.iter().map(|s| s.conn_failed).max().unwrap_or(0),
        int_lost: v.iter().map(|s| s.int_lost).max().unwrap_or(0),
        gen_tx_refused: v.iter().map(|s| s.gen_tx_refused).max().unwrap_or(0),
        rings: v.iter().filter_map(|s| s.rings).max(),
    }
}

/// One row: a flood, through the scrubber and through the ideal control.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `none`, `ack-psh` or `syn`.
    pub flood: String,
    /// Median through the scrubber.
    pub scrubber: Sample,
    /// Median through the control.
    pub ideal: Option<Sample>,
    /// Every run, scrubber then control.
    pub runs: Vec<(String, Sample)>,
}

/// Parse wrk's `Requests/sec:` and the `99%` line of `--latency` (in ms).
pub fn parse_wrk(out: &str) -> Option<(f64, f64)> {
    let rps = out.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok())?;
    let p99 = out.lines().find_map(|l| l.trim().strip_prefix("99%")).and_then(|v| parse_duration_ms(v.trim()));
    Some((rps, p99.unwrap_or(f64::NAN)))
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.00s`, `1.5m`.
pub fn parse_duration_ms(v: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e3)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|x| x * mult)
}

fn flood_of(name: &str) -> Result<Option<Flood>> {
    Ok(match name {
        "none" => None,
        "ack-psh" => Some(Flood::AckPsh),
        "syn" => Some(Flood::Syn),
        other => bail!("unknown flood {other:?}: use none, ack-psh or syn"),
    })
}

struct Harness {
    flood_pps: u64,
    perf: PathBuf,
    line: Line,
    bins: PathBuf,
    stop: Interrupt,
    secs: u64,
    me: PathBuf,
}

impl Harness {
    /// The flood: `scrubber-perf gen` (AF_XDP, paced exactly) on the generator's veth, on
    /// the generator's core.
    fn flood(&self, flood: Flood) -> Result<Watched> {
        let kind = match flood {
            Flood::AckPsh => "ack-psh",
            Flood::Syn => "syn",
            Flood::Udp => "udp",
        };
        let mut c = in_ns(&self.line.gen_ns, &self.perf.to_string_lossy());
        c.args(["gen", "--dev", &self.line.gen_if, "--kind", kind, "--src", "198.19.0.0/16", "--dst", SINK_IP]);
        c.args(["--dport", "80", "--dst-mac", &mac_str(&SINK_MAC), "--core", &GEN_CORE.to_string(), "--quiet"]);
        c.args(["--rate", &self.flood_pps.to_string(), "--seconds", &(self.secs + 5).to_string()]);
        c.args(["--count", &(MAX_PPS * (self.secs + 5)).to_string()]);
        Ok(Watched::spawn("gen", c, true)?)
    }

    /// One measurement through the running middle; the flood (if any) out of `flood_if`.
    fn measure(&self, m: &Middle, flood: Option<Flood>) -> Result<Sample> {
        let flood_if = self.line.gen_if.as_str();
        let mut tg = match flood {
            Some(f) => Some(self.flood(f)?),
            None => None,
        };
        self.stop.sleep(Duration::from_millis(500))?;
        let g0 = self.line.stats(&self.line.gen_ns, flood_if)?;
        let lg0 = g0;
        let e0 = self.line.stats(&self.line.mid_ns, &self.line.ext)?;
        let i0 = self.line.stats(&self.line.mid_ns, &self.line.int)?;
        let sc0 = m.scrubber_counts();
        let c0 = cpu_sample(MIDDLE_CORE);
        let t0 = Instant::now();
        let secs = self.secs.to_string();
        let mut wrk = in_ns(&self.line.gen_ns, "taskset");
        wrk.args(["-c", &GEN_CORE.to_string(), "wrk", "-t1", "-c16", "-d", &format!("{secs}s"), "--latency"]);
        wrk.args(["--timeout", "5s", &format!("http://{SINK_IP}/")]);
        let mut wrk = Watched::spawn("wrk", wrk, true)?;
        let mut probe = in_ns(&self.line.gen_ns, "taskset");
        probe.args(["-c", &GEN_CORE.to_string()]).arg(&self.me);
        probe.args(["peer", "connect", "--to", &format!("{SINK_IP}:80"), "--count", "10000000", "--parallel", "4"]);
        probe.args(["--timeout-ms", "5000", "--seconds", &secs]);
        let mut probe = Watched::spawn("prober", probe, true)?;
        let limit = Duration::from_secs(self.secs + 20);
        let w_ok = wrk.wait_exit(&self.stop, limit)?;
        let p_ok = probe.wait_exit(&self.stop, limit)?;
        let el = t0.elapsed().as_secs_f64();
        let c1 = cpu_sample(MIDDLE_CORE);
        let g1 = self.line.stats(&self.line.gen_ns, flood_if)?;
        let lg1 = g1;
        let e1 = self.line.stats(&self.line.mid_ns, &self.line.ext)?;
        let i1 = self.line.stats(&self.line.mid_ns, &self.line.int)?;
        let sc1 = m.scrubber_counts();
        if let Some(t) = tg.as_mut() {
            t.stop("INT", Duration::from_millis(500));
        }
        wrk.drain();
        probe.drain();
        if !w_ok || !p_ok {
            bail!("wrk or the prober did not finish:\n{}\n{}", wrk.tail(), probe.tail());
        }
        let (rps, p99) = parse_wrk(&wrk.log.join("\n")).with_context(|| format!("wrk said:\n{}", wrk.tail()))?;
        let rep: scrubber::tools::lab::peer::ConnectReport = probe
            .log
            .iter()
            .find_map(|l| serde_json::from_str(l).ok())
            .with_context(|| format!("the prober said:\n{}", probe.tail()))?;
        let flood_tx = g1.tx_packets.saturating_sub(g0.tx_packets);
        // Offered at ext: the flood (when it goes through the middle) and the legit frames.
        let offered_ext = lg1.tx_packets.saturating_sub(lg0.tx_packets);
        let lost = e1.rx_dropped.saturating_sub(e0.rx_dropped);
        Ok(Sample {
            offered_pps: (flood.map_or(0, |_| flood_tx) as f64 / el).round(),
            middle_busy_pct: busy_pct(c0, c1).unwrap_or(f64::NAN),
            wire_lost_pct: if offered_ext > 0 { lost as f64 * 100.0 / offered_ext as f64 } else { 0.0 },
            req_per_s: rps,
            req_p99_ms: p99,
            conn_per_s: if rep.secs > 0.0 { rep.ok as f64 / rep.secs } else { 0.0 },
            conn_p99_ms: rep.p99_ms,
            conn_failed: rep.failed,
            int_lost: i1.rx_dropped.saturating_sub(i0.rx_dropped),
            gen_tx_refused: lg1.tx_dropped.saturating_sub(lg0.tx_dropped),
            rings: sc0.zip(sc1).map(|(a, b)| {
                (
                    b.rx_ring_full.saturating_sub(a.rx_ring_full),
                    b.fill_ring_empty.saturating_sub(a.fill_ring_empty),
                    b.tx_ring_full.saturating_sub(a.tx_ring_full),
                )
            }),
        })
    }
}

/// Run the harness.
pub fn run(a: &Args) -> Result<Vec<Row>> {
    if !(2..=60).contains(&a.seconds) {
        bail!("--seconds {}: give 2 to 60", a.seconds);
    }
    if !(1..=9).contains(&a.runs) {
        bail!("--runs {}: give 1 to 9", a.runs);
    }
    let floods: Vec<(String, Option<Flood>)> =
        a.floods.iter().map(|f| flood_of(f).map(|x| (f.clone(), x))).collect::<Result<_>>()?;
    find_root()?;
    check_tools()?;
    if !std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join("wrk").is_file()) {
        bail!("missing tool: wrk (apt-get install wrk)");
    }
    let bins = bins(a.bin_dir.as_ref())?;
    let stop = Interrupt::install()?;
    let tag = format!("lg{}", std::process::id());
    eprintln!("… building the line ({tag}g | {tag}m | {tag}s)");
    let line = Line::create(&tag)?;
    // The end hosts' receive work on the generator's core: core 1 carries the middle alone.
    if line.isolate_middle_core(GEN_CORE)? < 2 {
        eprintln!(
            "warning: NAPI threads missing for the end hosts' veths: their receive work stays on the middle's core"
        );
    }
    let me = bins.join("scrubber");
    let mut server = in_ns(&line.sink_ns, "taskset");
    server.args(["-c", &GEN_CORE.to_string()]).arg(&me).args(["peer", "serve", "--listen", &format!("{SINK_IP}:80")]);
    let _server = Watched::spawn("server", server, true)?;
    stop.sleep(Duration::from_millis(300))?;
    let perf = std::env::current_exe().context("cannot find this binary's path")?;
    let h = Harness { flood_pps: a.flood_pps, perf, line, bins, stop, secs: a.seconds, me };

    let mut rows = Vec::new();
    for (name, flood) in floods {
        let mut row = Row { flood: name.clone(), scrubber: Sample::default(), ideal: None, runs: Vec::new() };
        let mut s = Vec::new();
        let mut i = Vec::new();
        for run in 0..a.runs {
            eprintln!("… {name}: run {} of {}, through the scrubber", run + 1, a.runs);
            let mut m =
                Middle::start_with(&h.line, &h.bins, MiddleKind::Scrubber, Some(a.poll), &a.scrubber_args, &h.stop)?;
            let r = h.measure(&m, flood);
            let warn = m.finish();
            let r = r?;
            if let Some(w) = warn {
                eprintln!("warning: {w}");
            }
            row.runs.push(("scrubber".into(), r.clone()));
            s.push(r);
            if a.no_ideal {
                continue;
            }
            eprintln!("… {name}: run {} of {}, ideal (bare forward loop; the sink drops the flood)", run + 1, a.runs);
            let mut m = Middle::start_with(&h.line, &h.bins, MiddleKind::BareForward, Some(a.poll), &[], &h.stop)?;
            let r = h.measure(&m, flood);
            m.finish();
            let r = r?;
            row.runs.push(("ideal".into(), r.clone()));
            i.push(r);
        }
        row.scrubber = median(&s);
        row.ideal = (!i.is_empty()).then(|| median(&i));
        rows.push(row);
    }
    Ok(rows)
}

/// The table of a run.
pub fn render(rows: &[Row]) -> String {
    let mut o = String::new();
    o.push_str(
        "| flood (offered) | middle core busy | lost at the wire | legit keep-alive req/s vs ideal | legit p99 (ideal) | new conn/s vs ideal | conn p99 (ideal) |\n",
    );
    o.push_str("|---|---|---|---|---|---|---|\n");
    for r in rows {
        let s = &r.scrubber;
        let (rr, cr, ip99, icp99) = match &r.ideal {
            Some(i) => (
                format!("{:.0} ({:.2}×)", s.req_per_s, s.req_per_s / i.req_per_s),
                format!("{:.0} ({:.2}×)", s.conn_per_s, s.conn_per_s / i.conn_per_s),
                format!("{:.1} ms ({:.1} ms)", s.req_p99_ms, i.req_p99_ms),
                format!("{:.1} ms ({:.1} ms)", s.conn_p99_ms, i.conn_p99_ms),
            ),
            None => (
                format!("{:.0}", s.req_per_s),
                format!("{:.0}", s.conn_per_s),
                format!("{:.1} ms", s.req_p99_ms),
                format!("{:.1} ms", s.conn_p99_ms),
            ),
        };
        o.push_str(&format!(
            "| {} ({:.2} Mpps) | {:.0} % | {:.2} % | {rr} | {ip99} | {cr} | {icp99} |\n",
            r.flood,
            s.offered_pps / 1e6,
            s.middle_busy_pct,
            s.wire_lost_pct,
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output() {
        let out = "Running 8s test @ http://198.18.0.10/\n  1 threads and 16 connections\n  Latency Distribution\n     50%  412.00us\n     75%  601.00us\n     90%    1.20ms\n     99%    6.54ms\n  101 requests in 8.00s\nRequests/sec:  12345.67\nTransfer/sec:      1.00MB\n";
        assert_eq!(parse_wrk(out), Some((12345.67, 6.54)));
        assert_eq!(parse_duration_ms("2.00s"), Some(2000.0));
        assert_eq!(parse_duration_ms("812.00us"), Some(0.812));
        assert_eq!(parse_wrk("nothing"), None);
    }

    #[test]
    fn medians() {
        let a = Sample { req_per_s: 1.0, conn_failed: 3, ..Sample::default() };
        let b = Sample { req_per_s: 3.0, conn_failed: 1, ..Sample::default() };
        let m = median(&[a, b]);
        assert_eq!(m.req_per_s, 2.0);
        assert_eq!(m.conn_failed, 3);
    }
}
