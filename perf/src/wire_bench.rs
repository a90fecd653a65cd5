//! `scrubber-perf wire`: the end-to-end benchmark on veth, in one run.
//!
//! Line (namespaces and interfaces named `wb<pid>…`, removed on exit, on error and on Ctrl-C):
//!
//! ```text
//!  gen ns                middle ns                         sink ns
//!  wb<pid>g  ---veth---  wb<pid>e (ext) | wb<pid>i (int)  ---veth---  wb<pid>s
//!  198.18.0.1/24                                                      198.18.0.10/24
//! ```
//!
//! The generator (trafgen, one process pinned to core 0) and the latency client live in the gen
//! namespace, the echo server in the sink namespace; the middle namespace holds, in turn, the bare
//! AF_XDP drop loop, the bare forward loop (`xdp-bare`), `scrubber run`, and the Linux kernel (a
//! bridge with conntrack). The middle's worker and the NAPI threads of its veths run on core 1.
//! Both ends have static neighbour entries and IPv6 off, so no ARP/ND crosses the middle; the
//! kernel-stack veths (gen, sink) have tx checksum offload off. The sink drops the floods at its
//! ingress hook (nftables, netdev family) so that its stack costs little; its interface counters
//! still count every frame that reached it.
//!
//! Per middle, per phase, the counters are read before and after the flood:
//! * offered = frames that left the gen veth (its tx packets);
//! * lost at the wire = the middle ext veth's rx dropped (AF_XDP rx ring full or no fill buffer,
//!   veth receive queue drops);
//! * received by the middle = offered − lost at the wire;
//! * sender retries = the gen veth's tx dropped. On Linux 6.18 a veth whose peer's receive ring
//!   is full pushes back instead of losing the frame: the transmit is refused (counted as a tx
//!   drop), and trafgen's sendto path sends the same frame again. A slow middle therefore shows
//!   as a lower offered rate and many retries, not as loss (measured: trafgen's own count equals
//!   the gen veth's tx packets, the tx drops come on top);
//! * at the sink = the sink veth's rx packets.
//!
//! Figures are measured, never asserted: nothing here is a pass/fail test.

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use scrubber::tools::lab::line::{
    in_ns, sh_in_ns, trafgen_config, Flood, IfStats, Interrupt, Line, Watched, GEN_MAC, PORT, SINK_IP, SINK_MAC,
};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Core of the generator, the latency client and the echo server.
pub(crate) const GEN_CORE: usize = 0;
/// Core of the middle's worker and of its veths' NAPI threads.
pub(crate) const MIDDLE_CORE: usize = 1;
/// Upper bound of trafgen's rate used to size a flood's packet count (it is also time-bounded).
pub(crate) const MAX_PPS: u64 = 2_000_000;
/// Bytes of one latency round trip, each way.
const RTT_BYTES: usize = 64;
/// Round trips measured at most per latency phase.
const RTT_MAX_SAMPLES: usize = 200_000;

/// Arguments of `scrubber-perf wire`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds each flood and each latency measurement lasts (1–60).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Print one JSON object (all figures) instead of the tables.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    json_file: Option<PathBuf>,
    /// Smoke run, ≤ 60 s: 1-second phases, poll sweep reduced to block and spin-tuned, no kernel middle.
    #[arg(long)]
    quick: bool,
    /// Skip the Linux-kernel middle (bridge + conntrack).
    #[arg(long)]
    no_kernel: bool,
    /// Poll strategy of the scrubber and the bare forward loop in the forward and latency phases
    /// (the drop path is measured with every strategy).
    #[arg(long, value_enum, default_value_t = PollVariant::Block)]
    poll: PollVariant,
    /// Directory holding the release `scrubber` and `xdp-bare` binaries [default: the directory of
    /// this binary].
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Workers of the middles (1–cores): with more than one, the veths get that many queues,
    /// worker *i* runs on core *i* (sharing cores with the generators) and only the RFC 2544
    /// search runs.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Skip the RFC 2544 search (highest rate with 0 % / 0.5 % loss per path, then latency
    /// under 10/50/90 % of it).
    #[arg(long)]
    no_search: bool,
    /// Seconds per trial of the search.
    #[arg(long, default_value_t = 2.0)]
    search_secs: f64,
    /// The search's top rate (its first trial), frames per second.
    #[arg(long, default_value_t = 1_200_000.0)]
    search_max_pps: f64,
    /// Internal: run as a helper inside a namespace.
    #[arg(long, value_enum, hide = true)]
    role: Option<Role>,
    /// Internal: address the helper listens on or connects to.
    #[arg(long, hide = true)]
    addr: Option<SocketAddr>,
    /// Internal: how long the latency helper measures, in seconds.
    #[arg(long, hide = true, default_value_t = 1.0)]
    role_secs: f64,
}

/// Helpers run inside the namespaces (the same binary, re-executed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Role {
    /// TCP echo server.
    Echo,
    /// TCP round-trip client: prints one JSON line with percentiles.
    Rtt,
}

/// How a middle's worker waits, and whether the NAPI knobs are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PollVariant {
    /// Busy loop.
    Spin,
    /// `sched_yield` when idle.
    Yield,
    /// `poll(2)` when idle.
    Block,
    /// Busy loop, NAPI knobs applied (`scrubber run --napi-tune`; the same knobs set by hand for
    /// the bare loops).
    SpinTuned,
    /// `poll(2)` when idle, NAPI knobs applied.
    BlockTuned,
    /// Preferred busy polling (`scrubber run --poll busy`); the bare loops use `block`.
    Busy,
}

impl PollVariant {
    pub(crate) fn poll_arg(self) -> &'static str {
        match self {
            PollVariant::Spin | PollVariant::SpinTuned => "spin",
            PollVariant::Yield => "yield",
            PollVariant::Block | PollVariant::BlockTuned => "block",
            PollVariant::Busy => "busy",
        }
    }

    pub(crate) fn tuned(self) -> bool {
        matches!(self, PollVariant::SpinTuned | PollVariant::BlockTuned)
    }

    fn name(self) -> &'static str {
        match self {
            PollVariant::Spin => "spin",
            PollVariant::Yield => "yield",
            PollVariant::Block => "block",
            PollVariant::SpinTuned => "spin+napi-tune",
            PollVariant::BlockTuned => "block+napi-tune",
            PollVariant::Busy => "busy",
        }
    }
}

/// Which box is in the middle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MiddleKind {
    BareDrop,
    BareForward,
    BareReflect,
    Scrubber,
    Kernel,
}

impl MiddleKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            MiddleKind::BareDrop => "bare-drop",
            MiddleKind::BareForward => "bare-forward",
            MiddleKind::BareReflect => "bare-reflect",
            MiddleKind::Scrubber => "scrubber",
            MiddleKind::Kernel => "kernel",
        }
    }
}

/// Frames of one flood, from the counters of the gen veth (`g`) and the middle's ext veth (`e`)
/// over the flood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accounting {
    /// Frames that left the gen veth.
    pub offered: u64,
    /// Frames the middle's ext side dropped on receive.
    pub wire_lost: u64,
    /// offered − wire_lost.
    pub received: u64,
    /// Refused transmissions trafgen repeated (back-pressure).
    pub sender_retries: u64,
}

/// Account one flood (see the module documentation for the definitions).
pub fn account(g: &IfStats, e: &IfStats) -> Accounting {
    let offered = g.tx_packets;
    let wire_lost = e.rx_dropped.min(offered);
    Accounting { offered, wire_lost, received: offered - wire_lost, sender_retries: g.tx_dropped }
}

/// Busy and total jiffies of one CPU from `/proc/stat` text.
pub fn parse_proc_stat_cpu(text: &str, cpu: usize) -> Option<(u64, u64)> {
    let tag = format!("cpu{cpu}");
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(tag.as_str()))?;
    let f: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().ok()).collect::<Option<_>>()?;
    if f.len() < 5 {
        return None;
    }
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    // inside user/nice.
    let total: u64 = f.iter().take(8).sum();
    let idle = f[3] + f[4];
    Some((total - idle, total))
}

/// Effective uid from `/proc/self/status` text.
pub fn parse_euid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The packet count trafgen reports on exit (`N packets outgoing`).
pub fn parse_trafgen_sent(out: &str) -> Option<u64> {
    out.lines().find(|l| l.contains("packets outgoing"))?.split_whitespace().next()?.parse().ok()
}

/// Round-trip statistics in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct RttStats {
    /// Round trips measured.
    pub n: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    #[serde(default)]
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    #[serde(default)]
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// What ended the measurement early, if anything did.
    pub error: Option<String>,
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=100); `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Summarise round-trip samples given in nanoseconds (sorts them).
pub fn rtt_stats(samples: &mut [u64], error: Option<String>) -> RttStats {
    samples.sort_unstable();
    let us = |x: Option<u64>| x.map(|v| (v as f64 / 100.0).round() / 10.0).unwrap_or(0.0);
    RttStats {
        n: samples.len() as u64,
        p50_us: us(percentile(samples, 50.0)),
        p90_us: us(percentile(samples, 90.0)),
        p99_us: us(percentile(samples, 99.0)),
        p999_us: us(percentile(samples, 99.9)),
        max_us: us(samples.last().copied()),
        error,
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers run inside the namespaces.

fn echo_server(addr: SocketAddr) -> Result<()> {
    let l = TcpListener::bind(addr).with_context(|| format!("echo server: cannot listen on {addr}"))?;
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        std::thread::spawn(move || {
            let _ = s.set_nodelay(true);
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    Ok(())
}

fn rtt_client(addr: SocketAddr, secs: f64) -> Result<()> {
    // Under a flood the SYN may be refused at the congested veth: allow two retransmissions.
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("latency client: cannot connect to {addr} through the middle"))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let msg = [0x5au8; RTT_BYTES];
    let mut buf = [0u8; RTT_BYTES];
    let mut once = |s: &mut TcpStream| -> std::io::Result<u64> {
        let t = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut buf)?;
        Ok(t.elapsed().as_nanos() as u64)
    };
    for _ in 0..20 {
        once(&mut s).context("latency client: warm-up round trip failed")?;
    }
    let mut samples = Vec::with_capacity(RTT_MAX_SAMPLES);
    let end = Instant::now() + Duration::from_secs_f64(secs.clamp(0.1, 120.0));
    let mut error = None;
    while samples.len() < RTT_MAX_SAMPLES && Instant::now() < end {
        match once(&mut s) {
            Ok(ns) => samples.push(ns),
            Err(e) => {
                error = Some(format!("round trip {} failed: {e}", samples.len() + 1));
                break;
            }
        }
    }
    println!("{}", serde_json::to_string(&rtt_stats(&mut samples, error))?);
    Ok(())
}

pub(crate) fn cpu_sample(cpu: usize) -> Option<(u64, u64)> {
    parse_proc_stat_cpu(&std::fs::read_to_string("/proc/stat").ok()?, cpu)
}

pub(crate) fn busy_pct(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (a?, b?);
    let dt = t1.checked_sub(t0)?;
    (dt > 0).then(|| ((b1.saturating_sub(b0)) as f64 * 1000.0 / dt as f64).round() / 10.0)
}

// ---------------------------------------------------------------------------------------------
// Middles.

/// A running middle; stopped on drop.
pub(crate) struct Middle<'t> {
    kind: MiddleKind,
    poll: Option<PollVariant>,
    topo: &'t Line,
    proc: Option<Watched>,
    socket: Option<PathBuf>,
    napi_threads: usize,
    defer_set: bool,
    kernel_set: bool,
}

impl<'t> Middle<'t> {
    fn start(
        topo: &'t Line,
        bins: &Path,
        kind: MiddleKind,
        poll: Option<PollVariant>,
        stop: &Interrupt,
    ) -> Result<Middle<'t>> {
        Self::start_with(topo, bins, kind, poll, &[], stop)
    }

    /// [`Middle::start`], with more arguments for `scrubber run`.
    pub(crate) fn start_with(
        topo: &'t Line,
        bins: &Path,
        kind: MiddleKind,
        poll: Option<PollVariant>,
        extra: &[String],
        stop: &Interrupt,
    ) -> Result<Middle<'t>> {
        Self::start_on(topo, bins, kind, poll, extra, &[MIDDLE_CORE], stop)
    }

    /// [`Middle::start_with`] with one worker per core of `cores`, worker *i* on queue *i*
    /// (the line must have that many queues).
    pub(crate) fn start_on(
        topo: &'t Line,
        bins: &Path,
        kind: MiddleKind,
        poll: Option<PollVariant>,
        extra: &[String],
        cores: &[usize],
        stop: &Interrupt,
    ) -> Result<Middle<'t>> {
        let mut m =
            Middle { kind, poll, topo, proc: None, socket: None, napi_threads: 0, defer_set: false, kernel_set: false };
        let p = poll.unwrap_or(PollVariant::Block);
        let core = cores.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        match kind {
            MiddleKind::BareDrop | MiddleKind::BareForward | MiddleKind::BareReflect => {
                let mode = match kind {
                    MiddleKind::BareDrop => "drop",
                    MiddleKind::BareReflect => "reflect",
                    _ => "forward",
                };
                // The same UMEM size as `scrubber run` with its default 1024-entry rings (8192
                // frames); xdp-bare's fill and completion rings stay at 1024 (the scrubber's are 2048).
                let bp = if p == PollVariant::Busy { "block" } else { p.poll_arg() };
                // One process, queue i on core cores[0] + i (the cores are consecutive).
                let mut c = in_ns(&topo.mid_ns, &bins.join("xdp-bare").to_string_lossy());
                let first = cores.first().copied().unwrap_or(MIDDLE_CORE).to_string();
                c.args(["--ext", &topo.ext, "--int", &topo.int, "--mode", mode, "--core", &first]);
                c.args(["--queues", &cores.len().max(1).to_string()]);
                c.args(["--poll", bp, "--seconds", "900", "--json", "--frames", "8192"]);
                let mut pr = Watched::spawn(kind.name(), c, false)?;
                pr.wait_line(stop, Duration::from_secs(15), |l| l.contains("\"event\":\"start\""))?;
                m.proc = Some(pr);
                if p.tuned() {
                    m.defer_set = true;
                    topo.napi_defer(true)?;
                }
            }
            MiddleKind::Scrubber => {
                let sock = PathBuf::from(format!("/run/{}/scrubber.sock", topo.tag));
                let mut c = in_ns(&topo.mid_ns, &bins.join("scrubber").to_string_lossy());
                c.args(["run", "--ext", &topo.ext, "--int", &topo.int]);
                c.args(["--protect", &format!("{SINK_IP}:{PORT}"), "--syn-mode", "proxy", "--cores", &core]);
                c.args(["--poll", p.poll_arg()]);
                if p.tuned() {
                    c.arg("--napi-tune");
                }
                c.args(extra);
                c.arg("--socket").arg(&sock);
                let mut pr = Watched::spawn("scrubber run", c, false)?;
                pr.wait_line(stop, Duration::from_secs(30), |l| l.contains("running: ext "))?;
                m.proc = Some(pr);
                m.socket = Some(sock);
            }
            MiddleKind::Kernel => {
                m.kernel_set = true;
                let (ns, br) = (&topo.mid_ns, format!("{}b", topo.tag));
                sh_in_ns(
                    ns,
                    &format!(
                        "set -e; ethtool -K {e} gro on; ethtool -K {i} gro on; \
                         ip link add {br} type bridge; ip link set {e} master {br}; ip link set {i} master {br}; \
                         ip link set {br} up; \
                         echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables; \
                         echo 0 > /proc/sys/net/netfilter/nf_conntrack_tcp_loose",
                        e = topo.ext,
                        i = topo.int
                    ),
                )
                .context("setting up the kernel middle (bridge, br_netfilter, conntrack)")?;
                topo.nft(
                    ns,
                    "kernel.nft",
                    "table inet wbk {\n  chain wbforward {\n    type filter hook forward priority 0; policy accept;\n    \
                     ct state invalid counter drop\n  }\n}",
                )
                .context("installing the kernel middle's nftables rules")?;
            }
        }
        m.napi_threads = topo.pin_napi_to(cores, p.tuned() && kind != MiddleKind::Kernel)?;
        // Let the first frames of the kernel's bridge (learning) and the workers settle.
        stop.sleep(Duration::from_millis(300))?;
        Ok(m)
    }

    fn label(&self) -> String {
        match self.poll {
            Some(p) if self.kind != MiddleKind::Kernel => format!("{} ({})", self.kind.name(), p.name()),
            _ => self.kind.name().to_string(),
        }
    }

    pub(crate) fn scrubber_counts(&self) -> Option<ScrubberCounts> {
        let snap = scrubber::control::telemetry::fetch(self.socket.as_ref()?).ok()?;
        let t = snap.total();
        Some(ScrubberCounts {
            rx_inbound: t.counters.rx_inbound,
            forwarded_inbound: t.counters.forwarded_inbound,
            dropped: t.counters.dropped_total(),
            rx_ring_full: t.rings.rx_ring_full,
            fill_ring_empty: t.rings.fill_ring_empty,
            rx_dropped: t.rings.rx_dropped,
            tx_ring_full: t.rings.tx_ring_full,
        })
    }

    /// Interrupt the middle and undo what was set for it. Returns a warning, if any.
    pub(crate) fn finish(&mut self) -> Option<String> {
        let mut warn = None;
        if let Some(mut p) = self.proc.take() {
            let sig = if self.kind == MiddleKind::Scrubber { "INT" } else { "TERM" };
            let clean = p.stop(sig, Duration::from_secs(10));
            if self.kind == MiddleKind::Scrubber {
                let ok = clean && matches!(p.child.try_wait(), Ok(Some(s)) if s.success());
                if !ok {
                    warn = Some(format!("scrubber did not stop cleanly:\n{}", p.tail()));
                }
            }
        }
        if self.defer_set {
            self.defer_set = false;
            let _ = self.topo.napi_defer(false);
        }
        if self.kernel_set {
            self.kernel_set = false;
            let _ = sh_in_ns(
                &self.topo.mid_ns,
                &format!(
                    "nft delete table inet wbk; ip link del {}b; ethtool -K {} gro off; ethtool -K {} gro off",
                    self.topo.tag, self.topo.ext, self.topo.int
                ),
            );
        }
        warn
    }
}

impl Drop for Middle<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// What the scrubber counted during a phase (differences).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ScrubberCounts {
    /// Frames received from ext.
    pub rx_inbound: u64,
    /// Frames forwarded ext → int.
    pub forwarded_inbound: u64,
    /// Frames dropped (all reasons).
    pub dropped: u64,
    /// AF_XDP rx ring full (kernel).
    pub rx_ring_full: u64,
    /// Fill ring empty (kernel).
    pub fill_ring_empty: u64,
    /// Dropped by the kernel before the rx ring.
    pub rx_dropped: u64,
    /// Tx ring full (worker).
    pub tx_ring_full: u64,
}

impl ScrubberCounts {
    fn delta(&self, b: &ScrubberCounts) -> ScrubberCounts {
        ScrubberCounts {
            rx_inbound: self.rx_inbound.saturating_sub(b.rx_inbound),
            forwarded_inbound: self.forwarded_inbound.saturating_sub(b.forwarded_inbound),
            dropped: self.dropped.saturating_sub(b.dropped),
            rx_ring_full: self.rx_ring_full.saturating_sub(b.rx_ring_full),
            fill_ring_empty: self.fill_ring_empty.saturating_sub(b.fill_ring_empty),
            rx_dropped: self.rx_dropped.saturating_sub(b.rx_dropped),
            tx_ring_full: self.tx_ring_full.saturating_sub(b.tx_ring_full),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Phases.

/// One flood through one middle.
#[derive(Clone, Debug, Serialize)]
pub struct FloodResult {
    /// `drop` (ACK-PSH flood) or `forward` (UDP flood).
    pub path: &'static str,
    /// The middle.
    pub middle: &'static str,
    /// Its poll strategy (none for the kernel).
    pub poll: Option<PollVariant>,
    /// How long trafgen ran, seconds.
    pub seconds: f64,
    /// Frames offered by trafgen (the gen veth's tx packets).
    pub offered: u64,
    /// What trafgen itself reported sending (when it was not stopped by the time limit).
    pub trafgen_sent: Option<u64>,
    /// Offered rate.
    pub offered_pps: f64,
    /// Frames the middle received (offered − lost at the wire).
    pub received: u64,
    /// Received rate.
    pub received_pps: f64,
    /// Frames that reached the sink.
    pub at_sink: u64,
    /// Rate at the sink.
    pub sink_pps: f64,
    /// Frames lost at the wire (veth ring full, AF_XDP ring full / no fill buffer).
    pub wire_lost: u64,
    /// Transmissions the gen veth refused because the middle's receive ring was full; trafgen
    /// sent those frames again (back-pressure, not loss).
    pub sender_retries: u64,
    /// Share of the offered frames lost at the wire, percent.
    pub wire_loss_pct: f64,
    /// Busy time of the middle's core during the flood, percent.
    pub middle_core_busy_pct: Option<f64>,
    /// Busy time of the generator's core during the flood, percent.
    pub gen_core_busy_pct: Option<f64>,
    /// What the scrubber itself counted (scrubber only).
    pub scrubber: Option<ScrubberCounts>,
}

/// One latency measurement through one middle.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyResult {
    /// The middle.
    pub middle: &'static str,
    /// Its poll strategy.
    pub poll: Option<PollVariant>,
    /// Whether the ACK-PSH flood ran meanwhile.
    pub under_flood: bool,
    /// Offered flood rate, if any.
    pub flood_offered_pps: Option<f64>,
    /// Round-trip statistics.
    pub rtt: RttStats,
}

struct Bench<'a> {
    topo: &'a Line,
    bins: PathBuf,
    stop: Interrupt,
    secs: u64,
    warnings: Vec<String>,
}

impl Bench<'_> {
    fn trafgen(&self, flood: Flood) -> Result<Watched> {
        let name = match flood {
            Flood::AckPsh => "ackpsh.cfg",
            Flood::Udp => "udp.cfg",
            Flood::Syn => "syn.cfg",
        };
        let cfg = self.topo.dir.join(name);
        std::fs::write(&cfg, trafgen_config(flood, &GEN_MAC, &SINK_MAC))
            .with_context(|| format!("cannot write {}", cfg.display()))?;
        let mut c = in_ns(&self.topo.gen_ns, "taskset");
        c.args(["-c", &GEN_CORE.to_string(), "trafgen", "-o", &self.topo.gen_if, "-i"]);
        c.arg(&cfg);
        // `-t 0` selects trafgen's sendto path: on veth a slow receiver holds the sender's skbs
        // (socket memory), and the TX_RING path then dies with EAGAIN, while sendto waits.
        c.args(["-n", &(MAX_PPS * self.secs).to_string(), "--cpus", "1", "-Q", "-t", "0"]);
        Ok(Watched::spawn("trafgen", c, true)?)
    }

    /// Run one flood for at most `secs` seconds and wait for its last frames to land. Returns
    /// its duration and, when it ended by itself, the count trafgen reported.
    fn flood(&self, flood: Flood) -> Result<(f64, Option<u64>)> {
        let mut p = self.trafgen(flood)?;
        let t0 = Instant::now();
        let ended = p.wait_exit(&self.stop, Duration::from_secs(self.secs))?;
        if !ended {
            p.stop("INT", Duration::from_millis(500));
        }
        let secs = t0.elapsed().as_secs_f64();
        let sent = parse_trafgen_sent(&p.log.join("\n"));
        if ended && sent.is_none() {
            bail!("trafgen stopped after {secs:.2} s without sending its frames:\n{}", p.tail());
        }
        self.stop.sleep(Duration::from_millis(200))?;
        Ok((secs, sent))
    }

    fn flood_phase(&mut self, m: &Middle, flood: Flood) -> Result<FloodResult> {
        let path = if flood == Flood::AckPsh { "drop" } else { "forward" };
        eprintln!("… {path} path through {}", m.label());
        let before = self.topo.snapshot()?;
        let sc0 = m.scrubber_counts();
        let (c0, g0) = (cpu_sample(MIDDLE_CORE), cpu_sample(GEN_CORE));
        let (secs, trafgen_sent) = self.flood(flood)?;
        let (c1, g1) = (cpu_sample(MIDDLE_CORE), cpu_sample(GEN_CORE));
        let after = self.topo.snapshot()?;
        let sc1 = m.scrubber_counts();
        let [g, e, s] = [after[0].delta(&before[0]), after[1].delta(&before[1]), after[2].delta(&before[2])];
        let Accounting { offered, wire_lost, received, sender_retries } = account(&g, &e);
        let rate = |n: u64| (n as f64 / secs).round();
        Ok(FloodResult {
            path,
            middle: m.kind.name(),
            poll: (m.kind != MiddleKind::Kernel).then_some(m.poll).flatten(),
            seconds: (secs * 1000.0).round() / 1000.0,
            offered,
            trafgen_sent,
            offered_pps: rate(offered),
            received,
            received_pps: rate(received),
            at_sink: s.rx_packets,
            sink_pps: rate(s.rx_packets),
            wire_lost,
            sender_retries,
            wire_loss_pct: if offered > 0 {
                (wire_lost as f64 * 10000.0 / offered as f64).round() / 100.0
            } else {
                0.0
            },
            middle_core_busy_pct: busy_pct(c0, c1),
            gen_core_busy_pct: busy_pct(g0, g1),
            scrubber: sc0.zip(sc1).map(|(a, b)| b.delta(&a)),
        })
    }

    fn latency_phase(&mut self, m: &Middle, under_flood: bool) -> Result<LatencyResult> {
        eprintln!("… latency through {}{}", m.label(), if under_flood { " under the ACK-PSH flood" } else { "" });
        let me = std::env::current_exe().context("cannot find this binary's path")?;
        let flood = if under_flood { Some(self.trafgen(Flood::AckPsh)?) } else { None };
        let before = self.topo.snapshot()?;
        let t0 = Instant::now();
        let rtt_secs = (self.secs as f64 - 0.5).max(0.5);
        let mut c = in_ns(&self.topo.gen_ns, "taskset");
        c.args(["-c", &GEN_CORE.to_string(), "chrt", "-f", "20"]);
        c.arg(&me).args(["wire", "--role", "rtt", "--addr", &format!("{SINK_IP}:{PORT}")]);
        c.args(["--role-secs", &rtt_secs.to_string()]);
        let mut client = Watched::spawn("latency client", c, false)?;
        let done = client.wait_exit(&self.stop, Duration::from_secs_f64(rtt_secs + 15.0))?;
        let mut flood_pps = None;
        if let Some(mut f) = flood {
            f.stop("INT", Duration::from_millis(500));
            let secs = t0.elapsed().as_secs_f64();
            let after = self.topo.snapshot()?;
            let g = after[0].delta(&before[0]);
            flood_pps = Some((g.tx_packets as f64 / secs).round());
        }
        // A failed measurement is a result (n = 0, with the reason), not the end of the run.
        let rtt = if done {
            client.drain();
            let found = client.log.iter().find_map(|l| serde_json::from_str::<RttStats>(l).ok());
            found.unwrap_or_else(|| RttStats { error: Some(client.tail().replace('\n', " | ")), ..RttStats::default() })
        } else {
            client.stop("KILL", Duration::from_millis(100));
            RttStats {
                error: Some(format!("did not finish: {}", client.tail().replace('\n', " | "))),
                ..RttStats::default()
            }
        };
        if let Some(e) = &rtt.error {
            self.warnings.push(format!("latency through {}: {e}", m.label()));
        }
        self.stop.sleep(Duration::from_millis(200))?;
        Ok(LatencyResult {
            middle: m.kind.name(),
            poll: (m.kind != MiddleKind::Kernel).then_some(m.poll).flatten(),
            under_flood,
            flood_offered_pps: flood_pps,
            rtt,
        })
    }

    fn with_middle<T>(
        &mut self,
        kind: MiddleKind,
        poll: Option<PollVariant>,
        f: impl FnOnce(&mut Self, &Middle) -> Result<T>,
    ) -> Result<T> {
        let topo = self.topo;
        let mut m = Middle::start(topo, &self.bins, kind, poll, &self.stop)?;
        if m.napi_threads == 0 {
            self.warnings.push(format!("{}: no NAPI threads found to pin to core {MIDDLE_CORE}", m.label()));
        }
        let r = f(self, &m);
        if let Some(w) = m.finish() {
            self.warnings.push(w);
        }
        r
    }
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Seconds per phase.
    pub seconds: u64,
    /// `--quick` run.
    pub quick: bool,
    /// The command line.
    pub command: String,
    /// Kernel release.
    pub kernel: String,
    /// 1-minute load average when the run started (other work on the machine lowers figures).
    pub loadavg_at_start: Option<f64>,
    /// 1-minute load average when the run ended.
    pub loadavg_at_end: Option<f64>,
    /// Drop path, every middle and poll strategy.
    pub drop: Vec<FloodResult>,
    /// Forward path.
    pub forward: Vec<FloodResult>,
    /// RFC 2544 search per path and middle.
    pub search: Vec<crate::wire_search::Search>,
    /// Latency of legitimate TCP round trips.
    pub latency: Vec<LatencyResult>,
    /// Ratios scrubber / bare loop.
    pub ratios: Vec<Ratio>,
    /// The poll strategy under which the scrubber's drop path received the most frames per second.
    pub best_drop_poll: Option<PollVariant>,
    /// Things that went wrong without stopping the run.
    pub warnings: Vec<String>,
}

/// A scrubber figure against its bare-loop counterpart.
#[derive(Debug, Serialize)]
pub struct Ratio {
    /// What is compared.
    pub what: String,
    /// Scrubber figure.
    pub scrubber: f64,
    /// Bare-loop figure.
    pub bare: f64,
    /// scrubber / bare (for latencies: the difference in µs is in `added_us`).
    pub ratio: f64,
    /// For latencies: scrubber − bare, µs.
    pub added_us: Option<f64>,
}

fn ratio(what: String, s: f64, b: f64, added: bool) -> Ratio {
    Ratio {
        what,
        scrubber: s,
        bare: b,
        ratio: if b > 0.0 { (s / b * 1000.0).round() / 1000.0 } else { 0.0 },
        added_us: added.then(|| ((s - b) * 10.0).round() / 10.0),
    }
}

pub(crate) fn find_root() -> Result<()> {
    let st = std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    if parse_euid(&st) != Some(0) {
        bail!(
            "scrubber-perf wire must run as root (it creates network namespaces, attaches XDP programs and \
             sets kernel knobs): run it with sudo"
        );
    }
    Ok(())
}

pub(crate) fn check_tools() -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let need = [
        ("ip", "iproute2"),
        ("ethtool", "ethtool"),
        ("trafgen", "netsniff-ng"),
        ("nft", "nftables"),
        ("taskset", "util-linux"),
        ("chrt", "util-linux"),
        ("kill", "procps"),
    ];
    let missing: Vec<String> = need
        .iter()
        .filter(|(t, _)| !std::env::split_paths(&path).any(|d| d.join(t).is_file()))
        .map(|(t, p)| format!("{t} (apt-get install {p})"))
        .collect();
    if !missing.is_empty() {
        bail!("missing tools: {}", missing.join(", "));
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cores < 2 {
        bail!("this benchmark needs 2 CPU cores (generator on core {GEN_CORE}, middle on core {MIDDLE_CORE}); found {cores}");
    }
    Ok(())
}

fn bin_dir(a: &Args) -> Result<PathBuf> {
    bins(a.bin_dir.as_ref())
}

/// The directory of the release `scrubber` and `xdp-bare` (given, or beside this binary).
pub(crate) fn bins(given: Option<&PathBuf>) -> Result<PathBuf> {
    let dir = match given {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .context("cannot find this binary's path")?
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| anyhow!("cannot find this binary's directory"))?,
    };
    for b in ["scrubber", "xdp-bare"] {
        if !dir.join(b).is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p scrubber -p scrubber-perf --locked`, or pass --bin-dir",
                dir.join(b).display()
            );
        }
    }
    if dir.components().any(|c| c.as_os_str() == "debug") {
        eprintln!("warning: {} holds debug builds; figures need release builds", dir.display());
    }
    Ok(dir)
}

/// Run `scrubber-perf wire`.
pub fn main(a: &Args) -> Result<()> {
    match a.role {
        Some(Role::Echo) => return echo_server(a.addr.ok_or_else(|| anyhow!("--addr is required"))?),
        Some(Role::Rtt) => return rtt_client(a.addr.ok_or_else(|| anyhow!("--addr is required"))?, a.role_secs),
        None => {}
    }
    if !(1..=60).contains(&a.seconds) {
        bail!("--seconds {}: give 1 to 60", a.seconds);
    }
    find_root()?;
    check_tools()?;
    let bins = bin_dir(a)?;
    let stop = Interrupt::install()?;
    let loadavg = load_average();
    if let Some(l) = loadavg.filter(|&l| l > 0.5) {
        eprintln!("warning: load average {l:.2}: other work is running; the figures will be lower and noisier");
    }
    let secs = if a.quick { 1 } else { a.seconds };
    let tag = format!("wb{}", std::process::id());
    eprintln!("… building the topology ({tag}g | {tag}m | {tag}s)");
    let ncores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if a.workers == 0 || a.workers > ncores {
        bail!("--workers {}: give 1 to {ncores} (the cores of this machine)", a.workers);
    }
    let topo = Line::create_with_queues(&tag, a.workers as u16)?;
    if topo.isolate_middle_core(GEN_CORE)? < 2 {
        eprintln!(
            "warning: NAPI threads missing for the end hosts' veths: their receive work stays on the middle's core"
        );
    }
    let me = std::env::current_exe().context("cannot find this binary's path")?;
    let mut echo_cmd = in_ns(&topo.sink_ns, "taskset");
    echo_cmd.args(["-c", &GEN_CORE.to_string(), "chrt", "-f", "20"]);
    echo_cmd.arg(&me).args(["wire", "--role", "echo", "--addr", &format!("{SINK_IP}:{PORT}")]);
    let _echo = Watched::spawn("echo server", echo_cmd, false)?;
    stop.sleep(Duration::from_millis(200))?;

    let mut b = Bench { topo: &topo, bins, stop, secs, warnings: Vec::new() };
    let mut report = Report {
        seconds: secs,
        quick: a.quick,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        loadavg_at_start: loadavg,
        loadavg_at_end: None,
        drop: Vec::new(),
        forward: Vec::new(),
        latency: Vec::new(),
        ratios: Vec::new(),
        best_drop_poll: None,
        search: Vec::new(),
        warnings: Vec::new(),
    };

    let multi = a.workers > 1;
    // 1. Drop path: bare drop loop and scrubber, every poll strategy.
    let sweep: Vec<PollVariant> = if a.quick {
        let mut v = vec![a.poll, PollVariant::SpinTuned];
        v.dedup();
        v
    } else {
        vec![PollVariant::Spin, PollVariant::Yield, PollVariant::Block, PollVariant::SpinTuned, PollVariant::BlockTuned]
    };
    for &p in sweep.iter().filter(|_| !multi) {
        for kind in [MiddleKind::BareDrop, MiddleKind::Scrubber] {
            let r = b.with_middle(kind, Some(p), |b, m| b.flood_phase(m, Flood::AckPsh))?;
            report.drop.push(r);
        }
    }
    // 2 and 3. Forward path and latency: bare forward loop, scrubber, kernel.
    let mut middles = vec![(MiddleKind::BareForward, Some(a.poll)), (MiddleKind::Scrubber, Some(a.poll))];
    if !a.quick && !a.no_kernel {
        middles.push((MiddleKind::Kernel, None));
    }
    if multi {
        middles.clear();
    }
    for (kind, poll) in middles {
        let (fwd, lat, drop) = b.with_middle(kind, poll, |b, m| {
            let drop = if kind == MiddleKind::Kernel { Some(b.flood_phase(m, Flood::AckPsh)?) } else { None };
            let fwd = b.flood_phase(m, Flood::Udp)?;
            let idle = b.latency_phase(m, false)?;
            let busy = b.latency_phase(m, true)?;
            Ok((fwd, [idle, busy], drop))
        })?;
        report.forward.push(fwd);
        report.latency.extend(lat);
        report.drop.extend(drop);
    }
    // 4. RFC 2544 search per path, bare loop and scrubber.
    if !a.no_search {
        let c = crate::wire_search::Ctx {
            line: &topo,
            bins: &b.bins,
            me: &me,
            stop: &b.stop,
            trial_secs: if a.quick { 1.0 } else { a.search_secs.clamp(0.5, 30.0) },
            steps: if a.quick { 3 } else { 7 },
            poll: a.poll,
            max_rate: a.search_max_pps.clamp(1000.0, 20e6),
            cores: if multi { (0..a.workers).collect() } else { vec![MIDDLE_CORE] },
        };
        for path in [
            crate::wire_search::SearchPath::Drop,
            crate::wire_search::SearchPath::Syn,
            crate::wire_search::SearchPath::Forward,
        ] {
            for scrubber in [false, true] {
                report.search.push(crate::wire_search::run_one(&c, path, scrubber)?);
            }
        }
    }
    report.warnings = std::mem::take(&mut b.warnings);
    report.loadavg_at_end = load_average();
    compute_ratios(&mut report, a.poll);
    drop(_echo);
    drop(topo);
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(f) = &a.json_file {
        std::fs::write(f, format!("{json}\n")).with_context(|| format!("cannot write {}", f.display()))?;
    }
    if a.json {
        println!("{json}");
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn compute_ratios(r: &mut Report, main_poll: PollVariant) {
    for d in r.drop.iter().filter(|d| d.middle == "scrubber") {
        if let Some(bare) = r.drop.iter().find(|x| x.middle == "bare-drop" && x.poll == d.poll) {
            let p = d.poll.map(PollVariant::name).unwrap_or("-");
            r.ratios.push(ratio(format!("drop path received pps ({p})"), d.received_pps, bare.received_pps, false));
        }
    }
    let fwd = |m: &str| r.forward.iter().find(|x| x.middle == m);
    if let (Some(s), Some(b)) = (fwd("scrubber"), fwd("bare-forward")) {
        let p = main_poll.name();
        r.ratios.push(ratio(format!("forward path pps at sink ({p})"), s.sink_pps, b.sink_pps, false));
    }
    for flood in [false, true] {
        let lat = |m: &str| r.latency.iter().find(|x| x.middle == m && x.under_flood == flood);
        if let (Some(s), Some(b)) = (lat("scrubber"), lat("bare-forward")) {
            if s.rtt.n == 0 || b.rtt.n == 0 {
                continue;
            }
            let w = if flood { "under flood" } else { "idle" };
            r.ratios.push(ratio(format!("RTT p50 µs, {w}"), s.rtt.p50_us, b.rtt.p50_us, true));
            r.ratios.push(ratio(format!("RTT p99 µs, {w}"), s.rtt.p99_us, b.rtt.p99_us, true));
        }
    }
    // Best poll strategy for the scrubber's drop path: the most frames received per second.
    r.best_drop_poll = r
        .drop
        .iter()
        .filter(|d| d.middle == "scrubber")
        .max_by(|a, b| a.received_pps.total_cmp(&b.received_pps))
        .and_then(|d| d.poll);
}

fn mpps(x: f64) -> String {
    format!("{:.3}", x / 1e6)
}

/// The report as text tables.
pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let pname = |p: Option<PollVariant>| p.map(PollVariant::name).unwrap_or("-");
    let pct = |x: Option<f64>| x.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
    let la = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "?".into());
    let _ = writeln!(
        o,
        "scrubber-perf wire: {} s per phase{}; generator on core {GEN_CORE}, middle on core {MIDDLE_CORE}; kernel {}; \
         load average {} at start, {} at end",
        r.seconds,
        if r.quick { " (quick)" } else { "" },
        r.kernel,
        la(r.loadavg_at_start),
        la(r.loadavg_at_end)
    );
    let flood_table = |o: &mut String, title: &str, rows: &[FloodResult]| {
        let _ = writeln!(o, "\n{title}");
        let _ = writeln!(
            o,
            "{:<13} {:<16} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>9} {:>5} {:>5}",
            "middle",
            "poll",
            "offered",
            "Mpps in",
            "Mpps rx",
            "lost",
            "lost %",
            "at sink",
            "Mpps out",
            "retries",
            "mid%",
            "gen%"
        );
        for d in rows {
            let _ = writeln!(
                o,
                "{:<13} {:<16} {:>9} {:>8} {:>8} {:>8} {:>9.2} {:>8} {:>7} {:>9} {:>5} {:>5}",
                d.middle,
                pname(d.poll),
                d.offered,
                mpps(d.offered_pps),
                mpps(d.received_pps),
                d.wire_lost,
                d.wire_loss_pct,
                d.at_sink,
                mpps(d.sink_pps),
                d.sender_retries,
                pct(d.middle_core_busy_pct),
                pct(d.gen_core_busy_pct)
            );
        }
    };
    flood_table(
        &mut o,
        "drop path: trafgen ACK-PSH flood, spoofed 198.19.0.0/16 -> 198.18.0.10:80\n(Mpps in = left the generator, Mpps rx = received by the middle, lost = dropped at the middle's ext receive,\n retries = transmissions the full veth refused and trafgen repeated, mid%/gen% = busy time of core 1/core 0)",
        &r.drop,
    );
    flood_table(
        &mut o,
        "forward path: trafgen UDP flood 198.18.0.1 -> 198.18.0.10:9 (forwarded to the sink)",
        &r.forward,
    );
    let sc: Vec<&FloodResult> = r.drop.iter().chain(&r.forward).filter(|d| d.scrubber.is_some()).collect();
    if !sc.is_empty() {
        let _ = writeln!(o, "\nscrubber's own counters during the floods (k = counted by the kernel at its sockets)");
        let _ = writeln!(
            o,
            "{:<8} {:<16} {:>10} {:>10} {:>10} {:>13} {:>13} {:>12} {:>10}",
            "path", "poll", "rx ext", "dropped", "fwd ext", "k rx ring full", "k fill empty", "k dropped", "tx full"
        );
        for d in sc {
            if let Some(c) = d.scrubber {
                let _ = writeln!(
                    o,
                    "{:<8} {:<16} {:>10} {:>10} {:>10} {:>13} {:>13} {:>12} {:>10}",
                    d.path,
                    pname(d.poll),
                    c.rx_inbound,
                    c.dropped,
                    c.forwarded_inbound,
                    c.rx_ring_full,
                    c.fill_ring_empty,
                    c.rx_dropped,
                    c.tx_ring_full
                );
            }
        }
    }
    let _ = writeln!(o, "\nlatency: {RTT_BYTES}-byte TCP echo round trips gen -> middle -> sink and back");
    let _ = writeln!(
        o,
        "{:<13} {:<16} {:<12} {:>8} {:>9} {:>9} {:>10}",
        "middle", "poll", "flood", "n", "p50 µs", "p99 µs", "max µs"
    );
    for l in &r.latency {
        let flood = l.flood_offered_pps.map(|p| format!("{} Mpps", mpps(p))).unwrap_or_else(|| "none".into());
        let _ = writeln!(
            o,
            "{:<13} {:<16} {:<12} {:>8} {:>9.1} {:>9.1} {:>10.1}",
            l.middle,
            pname(l.poll),
            flood,
            l.rtt.n,
            l.rtt.p50_us,
            l.rtt.p99_us,
            l.rtt.max_us
        );
    }
    let _ = writeln!(o, "\nscrubber / bare loop");
    for x in &r.ratios {
        match x.added_us {
            Some(d) => {
                let _ = writeln!(o, "  {:<40} {:>9.1} vs {:>9.1}   added {:+.1} µs", x.what, x.scrubber, x.bare, d);
            }
            None => {
                let _ = writeln!(
                    o,
                    "  {:<40} {:>9} vs {:>9}   ratio {:.3}",
                    x.what,
                    mpps(x.scrubber),
                    mpps(x.bare),
                    x.ratio
                );
            }
        }
    }
    if let Some(p) = r.best_drop_poll {
        let _ = writeln!(o, "\nbest scrubber drop path: --poll {}", p.name());
    }
    if !r.search.is_empty() {
        o.push_str(&crate::wire_search::render(&r.search));
    }
    for w in &r.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_accounting() {
        // Measured on veth: trafgen sent 571585 frames; the gen veth counted them as tx packets
        // plus 107534 refused transmissions (retried); the AF_XDP socket dropped 78560.
        let g = IfStats { tx_packets: 571_585, tx_dropped: 107_534, ..IfStats::default() };
        let e = IfStats { rx_packets: 571_585, rx_dropped: 78_560, ..IfStats::default() };
        let a = account(&g, &e);
        assert_eq!(a, Accounting { offered: 571_585, wire_lost: 78_560, received: 493_025, sender_retries: 107_534 });
        // Counters that disagree (a reset in between) never make received negative.
        let a =
            account(&IfStats { tx_packets: 5, ..IfStats::default() }, &IfStats { rx_dropped: 9, ..IfStats::default() });
        assert_eq!((a.offered, a.wire_lost, a.received), (5, 5, 0));
    }

    #[test]
    fn proc_stat_cpu_busy() {
        let t = "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\ncpu1 100 0 50 800 50 0 0 0 0 0\n";
        assert_eq!(parse_proc_stat_cpu(t, 0), Some((1 + 2 + 3 + 6 + 7 + 8, 36)));
        assert_eq!(parse_proc_stat_cpu(t, 1), Some((150, 1000)));
        assert_eq!(parse_proc_stat_cpu(t, 2), None);
        assert_eq!(busy_pct(Some((150, 1000)), Some((650, 2000))), Some(50.0));
        assert_eq!(busy_pct(Some((150, 1000)), Some((150, 1000))), None);
    }

    #[test]
    fn euid_and_trafgen_summary() {
        assert_eq!(parse_euid("Name:\tx\nUid:\t1000\t0\t0\t0\n"), Some(0));
        assert_eq!(parse_euid("Uid:\t0\t1000\t1000\t1000\n"), Some(1000));
        assert_eq!(parse_euid("Name: x\n"), None);
        let out = "\n     2000000 packets outgoing\n   128000000 bytes outgoing\n";
        assert_eq!(parse_trafgen_sent(out), Some(2_000_000));
        assert_eq!(parse_trafgen_sent("Running!"), None);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().map(|x| x * 1000).collect();
        let s = rtt_stats(&mut v, None);
        assert_eq!((s.n, s.p50_us, s.p99_us, s.max_us), (100, 50.0, 99.0, 100.0));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(rtt_stats(&mut [], Some("x".into())).n, 0);
    }
}
