//! `scrubber lab` (build the namespace lab, run legit traffic and floods through the middle box,
//! print live counters and a summary) and the hidden `scrubber peer` subcommand (the TCP peers
//! the lab and the end-to-end tests run inside the namespaces).

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use scrubber::lab::exec::NsChild;
use scrubber::lab::flood::{self, Kind, Trafgen};
use scrubber::lab::nft::{Class, Counts, ServerCounters, Source};
use scrubber::lab::peer::{self, ConnectOptions, ConnectReport, Dir};
use scrubber::lab::topo::{Middle, Role, TopoOptions, Topology, SERVER4};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// scrubber peer

/// Lab TCP peers (used by `scrubber lab` and the end-to-end tests).
#[derive(Debug, Args)]
pub struct PeerArgs {
    #[command(subcommand)]
    cmd: PeerCmd,
}

#[derive(Debug, Subcommand)]
enum PeerCmd {
    /// Threaded TCP server: HTTP GET `/` and `/bytes/N`, raw `PUT N` (answers the xxh3-128 hash)
    /// and raw `GET N`. Runs until SIGINT/SIGTERM.
    Serve {
        /// Address to listen on, e.g. `[::]:80` (IPv4 and IPv6) or `198.18.0.10:80`.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: SocketAddr,
    },
    /// Open N short connections (HTTP/1.0 GET /) and print a JSON report
    /// {ok, failed, stalled, p50_ms, p99_ms, max_ms, secs, errors}. Exit 1 if any failed.
    Connect {
        /// Server address.
        #[arg(long, value_name = "ADDR:PORT")]
        to: SocketAddr,
        /// Number of connections.
        #[arg(long, value_name = "N")]
        count: u64,
        /// Pace new connections at R per second (`300` or `300/s`); default: as fast as possible.
        #[arg(long, value_name = "R/s")]
        rate: Option<String>,
        /// Threads opening connections.
        #[arg(long, value_name = "P", default_value_t = 4)]
        parallel: usize,
        /// Limit for each connection, in milliseconds.
        #[arg(long, value_name = "T", default_value_t = 5000)]
        timeout_ms: u64,
        /// Print `progress ok=… failed=… stalled=…` on stderr every second.
        #[arg(long)]
        progress: bool,
    },
    /// One bulk transfer with a hash check; prints JSON {bytes, hash_ok, secs, mbit_s, error}.
    /// Exit 1 if the data did not arrive intact.
    Transfer {
        /// Server address.
        #[arg(long, value_name = "ADDR:PORT")]
        to: SocketAddr,
        /// Bytes to move: 123, 64K, 50M, 1G (powers of 1024).
        #[arg(long, value_name = "SIZE")]
        bytes: String,
        /// `up` (client to server) or `down`.
        #[arg(long, value_enum)]
        dir: DirArg,
        /// Longest time any single read or write may wait, in milliseconds.
        #[arg(long, value_name = "T", default_value_t = 10_000)]
        idle_ms: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DirArg {
    Up,
    Down,
}

fn parse_rate(s: &str) -> Result<f64> {
    let t = s.trim().trim_end_matches("/s");
    t.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| anyhow!("bad --rate '{s}': give connections per second, e.g. 300 or 300/s"))
}

/// Run `scrubber peer …`.
pub fn cmd_peer(a: PeerArgs) -> Result<()> {
    match a.cmd {
        PeerCmd::Serve { listen } => {
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install signal handlers")?;
            }
            peer::serve(listen, stop)?;
            Ok(())
        }
        PeerCmd::Connect { to, count, rate, parallel, timeout_ms, progress } => {
            let rate = rate.as_deref().map(parse_rate).transpose()?;
            let o = ConnectOptions { to, count, rate, parallel, timeout: Duration::from_millis(timeout_ms), progress };
            let rep = peer::connect(&o)?;
            println!("{}", serde_json::to_string(&rep)?);
            if rep.failed > 0 {
                bail!("{} of {count} connections to {to} failed", rep.failed);
            }
            Ok(())
        }
        PeerCmd::Transfer { to, bytes, dir, idle_ms } => {
            let n = peer::parse_size(&bytes)?;
            let dir = match dir {
                DirArg::Up => Dir::Up,
                DirArg::Down => Dir::Down,
            };
            let rep = peer::transfer(to, n, dir, Duration::from_millis(idle_ms));
            println!("{}", serde_json::to_string(&rep)?);
            if !rep.hash_ok {
                bail!("transfer of {n} bytes {dir:?} failed: {}", rep.error.as_deref().unwrap_or("hash mismatch"));
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// scrubber lab

/// What sits in the middle of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MiddleArg {
    /// `scrubber run` on ext/int (AF_XDP, SYN proxy).
    Scrubber,
    /// A plain Linux bridge (no protection: the baseline).
    Bridge,
}

/// Build a network-namespace lab and show the scrubber at work.
///
/// Creates namespaces for a legitimate client, an attacker, a switch, the middle box and a
/// server (198.18.0.10, [2001:2::10], port 80), starts a server, starts the middle box (the
/// scrubber in SYN-proxy mode, or a plain bridge), then runs three phases of --seconds each:
/// legitimate clients alone; plus a spoofed ACK-PSH flood (sources in 198.19.0.0/16); plus a
/// spoofed SYN flood. Live counters are printed every second; a summary table at the end shows
/// the legitimate connections (ok, failed, latency) and how many flood frames were sent and how
/// many reached the server (nftables counters in the server namespace).
///
/// Needs root, iproute2, ethtool, nftables, netsniff-ng (trafgen) and procps. Ctrl-C stops
/// everything and removes the namespaces.
///
/// Example:
///   sudo scrubber lab                       # scrubber in the middle, ~35 s
///   sudo scrubber lab --middle bridge       # the same through a plain bridge
///   sudo scrubber lab --seconds 5 --keep    # keep the lab up afterwards until Ctrl-C
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LabArgs {
    /// Length of each of the three phases, in seconds (1-600).
    #[arg(long, value_name = "N", default_value_t = 10)]
    seconds: u64,
    /// What sits between the switch and the server.
    #[arg(long, value_enum, default_value_t = MiddleArg::Scrubber)]
    middle: MiddleArg,
    /// After the phases, keep the lab running (server, middle box) until Ctrl-C, and print
    /// commands to try.
    #[arg(long)]
    keep: bool,
    /// Flood rate in frames per second (trafgen, one core).
    #[arg(long, value_name = "PPS", default_value_t = 50_000)]
    flood_pps: u64,
    /// Legitimate new connections per second.
    #[arg(long, value_name = "R", default_value_t = 50)]
    conn_rate: u64,
}

struct PhaseResult {
    name: &'static str,
    secs: f64,
    legit: ConnectReport,
    flood_sent: Option<u64>,
    reached: Counts,
    flood: Option<Kind>,
}

/// Run `scrubber lab`.
pub fn cmd_lab(a: LabArgs) -> Result<()> {
    if !(1..=600).contains(&a.seconds) {
        bail!("--seconds {}: give 1 to 600 seconds per phase", a.seconds);
    }
    if !(1..=5_000_000).contains(&a.flood_pps) {
        bail!("--flood-pps {}: give 1 to 5,000,000 frames per second", a.flood_pps);
    }
    if !(1..=5_000).contains(&a.conn_rate) {
        bail!("--conn-rate {}: give 1 to 5,000 connections per second", a.conn_rate);
    }
    scrubber::lab::preflight(&["ip", "tc", "ethtool", "nft", "trafgen", "kill", "timeout", "sysctl"])?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install signal handlers")?;
    }
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let exe_s = exe.to_string_lossy().into_owned();

    let tag = Topology::new_tag_with("lab");
    let middle = match a.middle {
        MiddleArg::Scrubber => Middle::Open,
        MiddleArg::Bridge => Middle::Bridge,
    };
    println!("==> creating lab {tag} (namespaces {tag}c client, {tag}a attacker, {tag}w switch, {tag}m middle, {tag}s server)");
    let topo = Topology::create(&tag, TopoOptions { middle, vlan: None }).context("cannot build the lab topology")?;
    let (ns_c, ns_a, ns_m, ns_s) =
        (topo.ns(Role::Client), topo.ns(Role::Attacker), topo.ns(Role::Middle), topo.ns(Role::Server));

    let server = NsChild::spawn(Some(&ns_s), &exe_s, &args(&["peer", "serve", "--listen", "[::]:80"]), true)?;
    let counters = ServerCounters::install(&ns_s).context("cannot install the nftables counters on the server")?;
    let socket = PathBuf::from(format!("/run/scrubber-lab-{tag}.sock"));
    let mut scrubber = match a.middle {
        MiddleArg::Scrubber => {
            println!("==> starting the scrubber in {ns_m}: ext (switch side) / int (server side), SYN proxy for 198.18.0.10:80 and [2001:2::10]:80");
            let argv = scrubber::lab::run_argv(&socket.to_string_lossy(), &scrubber::lab::PROTECT_LAB_SERVER);
            let child = NsChild::spawn(Some(&ns_m), &exe_s, &argv, true)?;
            child.on_stderr_line(|l| eprintln!("    scrubber| {l}"));
            Some(child)
        }
        MiddleArg::Bridge => {
            println!("==> middle box {ns_m}: a plain Linux bridge (no protection)");
            None
        }
    };

    // Wait until a connection gets through.
    let to = SocketAddr::new(IpAddr::V4(SERVER4), 80);
    let ready_by = Instant::now() + Duration::from_secs(15);
    loop {
        if stop.load(Ordering::Relaxed) {
            println!("interrupted: removing the lab");
            return Ok(());
        }
        if let Some(s) = scrubber.as_mut() {
            if let Some(st) = s.try_wait() {
                let _ = s.finish(Duration::from_secs(1));
                bail!(
                    "the scrubber exited ({st}) before the lab was ready (its messages are above, marked \
                     `scrubber|`); try `scrubber lab --middle bridge` to see the lab without it"
                );
            }
        }
        let probe = run_peer_connect(&ns_c, &exe_s, to, 1, None, 1000, false);
        if matches!(probe, Ok(ref r) if r.ok == 1) {
            break;
        }
        if Instant::now() >= ready_by {
            bail!("no connection from the client reached the server through the middle box within 15 s");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("==> lab ready: the client reaches the server through the middle box");

    let attacker_mac = topo.mac(Role::Attacker, "lan")?;
    let server_mac = topo.mac(Role::Server, "lan")?;
    let phases: [(&'static str, Option<Kind>); 3] =
        [("legit only", None), ("+ ACK-PSH flood", Some(Kind::AckPsh)), ("+ SYN flood", Some(Kind::Syn))];
    let mut results = Vec::new();
    let mut last_stats: Option<serde_json::Value> = None;
    for (i, (name, kind)) in phases.iter().enumerate() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        println!(
            "==> phase {}/3: {name} ({} s; legit {} conn/s{})",
            i + 1,
            a.seconds,
            a.conn_rate,
            kind.map(|k| format!("; spoofed {} flood from 198.19.0.0/16 at {} pps", k.name(), a.flood_pps))
                .unwrap_or_default()
        );
        let before = counters.read()?;
        let t0 = Instant::now();
        let count = a.conn_rate * a.seconds;
        let legit = spawn_peer_connect(&ns_c, &exe_s, to, count, Some(a.conn_rate as f64), 3000, true)?;
        let progress = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        {
            let p = Arc::clone(&progress);
            legit.on_stderr_line(move |l| {
                if let Some(rest) = l.strip_prefix("progress ") {
                    for (i, key) in ["ok=", "failed=", "stalled="].iter().enumerate() {
                        if let Some(v) = rest.split_whitespace().find_map(|w| w.strip_prefix(key)) {
                            p[i].store(v.parse().unwrap_or(0), Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        let fl = match kind {
            Some(k) => Some(flood::start_trafgen(
                &ns_a,
                &Trafgen {
                    kind: *k,
                    target: IpAddr::V4(SERVER4),
                    port: 80,
                    dst_mac: server_mac.clone(),
                    src_mac: attacker_mac.clone(),
                    vlan: None,
                    count: a.flood_pps * a.seconds,
                    rate_pps: Some(a.flood_pps),
                    limit: Duration::from_secs(a.seconds + 2),
                    dev: "lan".into(),
                },
            )?),
            None => None,
        };
        let mut legit = legit;
        let mut tick = Instant::now();
        while legit.try_wait().is_none() && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if tick.elapsed() < Duration::from_secs(1) {
                continue;
            }
            tick = Instant::now();
            let now = counters.read().map(|c| c.since(&before)).unwrap_or_default();
            let mut line = format!(
                "  t={:>3}s  legit ok {:>5} failed {:>3} stalled {:>3} | at server: spoofed {:>8}",
                t0.elapsed().as_secs(),
                progress[0].load(Ordering::Relaxed),
                progress[1].load(Ordering::Relaxed),
                progress[2].load(Ordering::Relaxed),
                now.get(Source::Spoof4, Class::All),
            );
            match a.middle {
                MiddleArg::Scrubber => line.push_str(&scrubber_line(&ns_m, &exe_s, &socket, &mut last_stats)),
                MiddleArg::Bridge => {
                    if let (Ok(e), Ok(i)) =
                        (topo.link_counters(Role::Middle, "ext"), topo.link_counters(Role::Middle, "int"))
                    {
                        line.push_str(&format!(
                            " | bridge: ext rx {} (dropped {}), int tx {}",
                            e.rx_packets, e.rx_dropped, i.tx_packets
                        ));
                    }
                }
            }
            println!("{line}");
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let out = legit.finish(Duration::from_secs(10))?;
        let legit_rep: ConnectReport = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("cannot read the client's report: {}", out.stderr.trim()))?;
        let flood_sent = match fl {
            Some(f) => Some(f.finish()?.sent),
            None => None,
        };
        // Let the last frames land before reading the counters.
        std::thread::sleep(Duration::from_millis(300));
        let reached = counters.read()?.since(&before);
        results.push(PhaseResult {
            name,
            secs: t0.elapsed().as_secs_f64(),
            legit: legit_rep,
            flood_sent,
            reached,
            flood: *kind,
        });
    }

    print_summary(&results, a.middle);
    if a.keep && !stop.load(Ordering::Relaxed) {
        println!("\n==> --keep: the lab stays up until Ctrl-C. Try:");
        println!("    ip netns exec {ns_c} curl -s http://198.18.0.10/");
        println!("    ip netns exec {ns_c} curl -s 'http://[2001:2::10]/'");
        if a.middle == MiddleArg::Scrubber {
            println!("    {exe_s} stats --socket {} --watch", socket.display());
        }
        println!("    ip netns exec {ns_a} hping3 -A -P -a 198.19.1.2 -p 80 -c 1000 -i u1000 198.18.0.10");
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if let Some(s) = scrubber.as_mut() {
        s.on_stderr_line(|_| {});
        s.stop_with("INT", Duration::from_secs(5));
        if let Ok(out) = s.finish(Duration::from_secs(1)) {
            if !out.stdout.trim().is_empty() {
                println!("\n==> scrubber final counters:\n{}", out.stdout.trim_end());
            }
        }
    }
    drop(scrubber);
    drop(server);
    drop(counters);
    drop(topo);
    println!("==> lab {tag} removed");
    Ok(())
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn connect_argv(to: SocketAddr, count: u64, rate: Option<f64>, timeout_ms: u64, progress: bool) -> Vec<String> {
    let mut v = args(&["peer", "connect", "--to", &to.to_string(), "--count", &count.to_string()]);
    v.extend(args(&["--parallel", "4", "--timeout-ms", &timeout_ms.to_string()]));
    if let Some(r) = rate {
        v.extend(args(&["--rate", &r.to_string()]));
    }
    if progress {
        v.push("--progress".into());
    }
    v
}

fn spawn_peer_connect(
    ns: &str,
    exe: &str,
    to: SocketAddr,
    count: u64,
    rate: Option<f64>,
    timeout_ms: u64,
    progress: bool,
) -> Result<NsChild> {
    Ok(NsChild::spawn(Some(ns), exe, &connect_argv(to, count, rate, timeout_ms, progress), true)?)
}

fn run_peer_connect(
    ns: &str,
    exe: &str,
    to: SocketAddr,
    count: u64,
    rate: Option<f64>,
    timeout_ms: u64,
    progress: bool,
) -> Result<ConnectReport> {
    let mut c = spawn_peer_connect(ns, exe, to, count, rate, timeout_ms, progress)?;
    let out = c.finish(Duration::from_millis(timeout_ms * count.max(1) + 5000))?;
    serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("bad report from peer connect: {}", out.stderr.trim()))
}

/// One short summary of the scrubber's counters (from `scrubber stats --json`), with rates
/// against the previous reading.
fn scrubber_line(ns: &str, exe: &str, socket: &std::path::Path, last: &mut Option<serde_json::Value>) -> String {
    let argv =
        scrubber::lab::exec::ns_argv(Some(ns), exe, &args(&["stats", "--socket", &socket.to_string_lossy(), "--json"]));
    let out = match scrubber::lab::exec::run_argv(&argv, Duration::from_secs(2)) {
        Ok(o) => o,
        Err(e) => return format!(" | scrubber stats: {}", first_line(&e.to_string())),
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(out.trim()) else {
        return format!(" | scrubber stats: {}", first_line(&out));
    };
    let total = |v: &serde_json::Value, key: &str| -> u64 {
        v.get("workers").and_then(|w| w.as_array()).map_or(0, |ws| {
            ws.iter()
                .filter_map(|w| w.get("counters").and_then(|c| c.get(key)))
                .map(|x| match x {
                    serde_json::Value::Array(a) => a.iter().filter_map(|n| n.as_u64()).sum(),
                    serde_json::Value::Object(m) => m.values().filter_map(|n| n.as_u64()).sum(),
                    other => other.as_u64().unwrap_or(0),
                })
                .sum()
        })
    };
    let keys = ["forwarded_inbound", "dropped", "cookies_sent", "cookies_validated"];
    let now: Vec<u64> = keys.iter().map(|k| total(&v, k)).collect();
    let prev: Vec<u64> =
        last.as_ref().map(|p| keys.iter().map(|k| total(p, k)).collect()).unwrap_or_else(|| now.clone());
    *last = Some(v);
    format!(
        " | scrubber: fwd in {} (+{}/s) dropped {} (+{}/s) cookies {} (+{}/s) valid {}",
        now[0],
        now[0].saturating_sub(prev[0]),
        now[1],
        now[1].saturating_sub(prev[1]),
        now[2],
        now[2].saturating_sub(prev[2]),
        now[3]
    )
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(100).collect()
}

fn print_summary(results: &[PhaseResult], middle: MiddleArg) {
    let m = match middle {
        MiddleArg::Scrubber => "scrubber (SYN proxy)",
        MiddleArg::Bridge => "Linux bridge (no protection)",
    };
    println!("\n==> summary, middle box: {m}");
    println!(
        "{:<17} {:>5} | {:>8} {:>6} {:>7} {:>8} {:>8} | {:>11} {:>14} {:>11}",
        "phase",
        "secs",
        "legit ok",
        "failed",
        "stalled",
        "p50 ms",
        "p99 ms",
        "flood sent",
        "reached server",
        "of them SYN"
    );
    println!("{}", "-".repeat(112));
    for r in results {
        let (sent, reached, syn) = match r.flood {
            Some(_) => (
                r.flood_sent.map_or("?".to_string(), |s| s.to_string()),
                r.reached.get(Source::Spoof4, Class::All).to_string(),
                r.reached.get(Source::Spoof4, Class::Syn).to_string(),
            ),
            None => ("-".into(), r.reached.get(Source::Spoof4, Class::All).to_string(), "-".into()),
        };
        println!(
            "{:<17} {:>5.1} | {:>8} {:>6} {:>7} {:>8.2} {:>8.2} | {:>11} {:>14} {:>11}",
            r.name,
            r.secs,
            r.legit.ok,
            r.legit.failed,
            r.legit.stalled,
            r.legit.p50_ms,
            r.legit.p99_ms,
            sent,
            reached,
            syn
        );
    }
    println!(
        "(\"reached server\": frames from the spoofed range 198.19.0.0/16 counted by nftables in the server namespace)"
    );
}
