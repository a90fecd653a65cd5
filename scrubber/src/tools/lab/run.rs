//! `scrubber lab`: build the lab, start a server and the middle box (the scrubber, or a plain
//! bridge), run legitimate clients alone, then with a spoofed ACK-PSH flood, then with a
//! spoofed SYN flood, then with HTTP floods from a botnet of 1,024 addresses (junk headers, and
//! a GET flood at 3,000 requests/s, half of it from a "country" list); print live counters every
//! second and summary tables, remove everything.

use super::exec::NsChild;
use super::flood::{self, Kind, Trafgen};
use super::nft::{Class, Counts, ServerCounters, Source};
use super::peer::ConnectReport;
use super::topo::{Middle, Role, TopoOptions, Topology, SERVER4};
use super::{Ctx, LabError};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What sits in the middle of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabMiddle {
    /// `scrubber run` on ext/int (AF_XDP, SYN proxy).
    Scrubber,
    /// A plain Linux bridge (no protection: the baseline).
    Bridge,
}

/// How to run the lab (`scrubber lab`'s options).
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Length of each of the four phases, in seconds (1-600).
    pub seconds: u64,
    /// What sits between the switch and the server.
    pub middle: LabMiddle,
    /// After the phases, keep the lab running until Ctrl-C.
    pub keep: bool,
    /// Flood rate in frames per second.
    pub flood_pps: u64,
    /// Legitimate new connections per second.
    pub conn_rate: u64,
}

impl LabOptions {
    /// Refuse values outside what the lab allows.
    pub fn validate(&self) -> Result<(), LabError> {
        if !(1..=600).contains(&self.seconds) {
            return Err(LabError::Invalid(format!("--seconds {}: give 1 to 600 seconds per phase", self.seconds)));
        }
        if !(1..=5_000_000).contains(&self.flood_pps) {
            return Err(LabError::Invalid(format!(
                "--flood-pps {}: give 1 to 5,000,000 frames per second",
                self.flood_pps
            )));
        }
        if !(1..=5_000).contains(&self.conn_rate) {
            return Err(LabError::Invalid(format!(
                "--conn-rate {}: give 1 to 5,000 connections per second",
                self.conn_rate
            )));
        }
        Ok(())
    }
}

struct PhaseResult {
    name: &'static str,
    secs: f64,
    legit: ConnectReport,
    flood_sent: Option<u64>,
    reached: Counts,
    flood: Option<Kind>,
}

/// Run `scrubber lab`: build the lab, run the phases, print the live lines and the summary,
/// remove everything.
pub fn run(a: &LabOptions) -> Result<(), LabError> {
    a.validate()?;
    super::preflight(&["ip", "tc", "ethtool", "nft", "trafgen", "kill", "timeout", "sysctl"])?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).ctx("cannot install signal handlers")?;
    }
    let exe = std::env::current_exe().ctx("cannot find this program's own path")?;
    let exe_s = exe.to_string_lossy().into_owned();

    let tag = Topology::new_tag_with("lab");
    let middle = match a.middle {
        LabMiddle::Scrubber => Middle::Open,
        LabMiddle::Bridge => Middle::Bridge,
    };
    println!("==> creating lab {tag} (namespaces {tag}c client, {tag}a attacker, {tag}w switch, {tag}m middle, {tag}s server)");
    let topo =
        Topology::create(&tag, TopoOptions { middle, vlan: None, queues: 1 }).ctx("cannot build the lab topology")?;
    let (ns_c, ns_a, ns_m, ns_s) =
        (topo.ns(Role::Client), topo.ns(Role::Attacker), topo.ns(Role::Middle), topo.ns(Role::Server));

    // The lab's files: the rule file the scrubber runs, its country list, the server's counts.
    let dir = std::env::temp_dir().join(format!("scrubber-lab-{tag}"));
    std::fs::create_dir_all(&dir).ctx("cannot create the lab's directory")?;
    let _dir_guard = RemoveDir(dir.clone());
    std::fs::write(dir.join("country-x.txt"), format!("# the lab's \"country\"\n{BOT_COUNTRY}\n"))
        .ctx("cannot write the lab's country list")?;
    std::fs::write(dir.join("lab.rules"), LAB_RULES).ctx("cannot write the lab's rule file")?;
    let served_path = dir.join("served.json");
    // The botnet's addresses belong to the attacker (AnyIP); the server answers them through it.
    super::exec::run_ns(&ns_a, "ip", &["route", "add", "local", BOTNET, "dev", "lo"])?;
    super::exec::run_ns(&ns_s, "ip", &["route", "add", BOTNET, "via", "198.18.0.66"])?;
    let server = NsChild::spawn(
        Some(&ns_s),
        &exe_s,
        &args(&["peer", "serve", "--listen", "[::]:80", "--counts", &served_path.to_string_lossy()]),
        true,
    )?;
    let counters = ServerCounters::install(&ns_s).ctx("cannot install the nftables counters on the server")?;
    let socket = PathBuf::from(format!("/run/scrubber-lab-{tag}.sock"));
    let mut scrubber = match a.middle {
        LabMiddle::Scrubber => {
            println!(
                "==> starting the scrubber in {ns_m}: ext (switch side) / int (server side), rules {}:",
                dir.join("lab.rules").display()
            );
            for l in LAB_RULES.lines().filter(|l| !l.trim().is_empty()) {
                println!("      {l}");
            }
            let rules = dir.join("lab.rules").to_string_lossy().into_owned();
            let argv = super::run_argv(&socket.to_string_lossy(), &["--rules", &rules]);
            let child = NsChild::spawn(Some(&ns_m), &exe_s, &argv, true)?;
            child.on_stderr_line(|l| eprintln!("    scrubber| {l}"));
            Some(child)
        }
        LabMiddle::Bridge => {
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
                return Err(LabError::Invalid(format!(
                    "the scrubber exited ({st}) before the lab was ready (its messages are above, marked \
                     `scrubber|`); try `scrubber lab --middle bridge` to see the lab without it"
                )));
            }
        }
        let probe = run_peer_connect(&ns_c, &exe_s, to, 1, None, 1000, false);
        if matches!(probe, Ok(ref r) if r.ok == 1) {
            break;
        }
        if Instant::now() >= ready_by {
            return Err(LabError::Invalid(
                "no connection from the client reached the server through the middle box within 15 s".into(),
            ));
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
            "==> phase {}/4: {name} ({} s; legit {} conn/s{})",
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
                LabMiddle::Scrubber => line.push_str(&scrubber_line(&ns_m, &exe_s, &socket, &mut last_stats)),
                LabMiddle::Bridge => {
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
        let legit_rep: ConnectReport = serde_json::from_str(out.stdout.trim()).map_err(|e| LabError::Parse {
            cmd: "scrubber peer connect".into(),
            detail: format!("{e}: {}", out.stderr.trim()),
        })?;
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

    let http = if stop.load(Ordering::Relaxed) {
        None
    } else {
        Some(http_phase(a, &ns_c, &ns_a, &ns_m, &exe_s, &socket, &served_path, &stop)?)
    };
    print_summary(&results, a.middle);
    if let Some(h) = &http {
        print_http_summary(h, a.middle);
    }
    if a.keep && !stop.load(Ordering::Relaxed) {
        println!("\n==> --keep: the lab stays up until Ctrl-C. Try:");
        println!("    ip netns exec {ns_c} curl -s http://198.18.0.10/");
        println!("    ip netns exec {ns_c} curl -s 'http://[2001:2::10]/'");
        if a.middle == LabMiddle::Scrubber {
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

/// The botnet's addresses (the attacker namespace owns them all).
const BOTNET: &str = "198.19.16.0/22";
/// Of those, the "country" the rule file denies (512 sources).
const BOT_COUNTRY: &str = "198.19.16.0/23";

/// The rule file `scrubber lab` runs the scrubber with.
pub const LAB_RULES: &str = "\
# scrubber lab: the SYN proxy for the server's port 80, HTTP checks, a country list, per-source
# request limits and bans.
set lab-server = 198.18.0.10/32, 2001:2::10/128
set country-x file \"country-x.txt\"
service web
  dst lab-server
  ports 80
  syn proxy
  http max-header-bytes 8k max-header-line 4k max-headers 64 methods GET,HEAD,POST ban 30s after 2
end
deny from country-x service web
limit service web per-source requests 60/s burst 120 ban 10s after 3
";

/// Removes a directory when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the HTTP phase saw.
struct HttpPhase {
    secs: f64,
    legit: ConnectReport,
    junk: super::botnet::BotnetReport,
    listed: super::botnet::BotnetReport,
    unlisted: super::botnet::BotnetReport,
    served: super::peer::ServedCounts,
    before: super::peer::ServedCounts,
    bans: Option<u64>,
}

fn read_served(p: &std::path::Path) -> super::peer::ServedCounts {
    std::fs::read(p).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Requests served to sources whose third octet is in `lo..=hi` of 198.19.x.y.
fn served_from(c: &super::peer::ServedCounts, lo: u8, hi: u8) -> u64 {
    c.by_source
        .iter()
        .filter(|(a, _)| {
            let o: Vec<u8> = a.split('.').filter_map(|x| x.parse().ok()).collect();
            o.len() == 4 && o[0] == 198 && o[1] == 19 && (lo..=hi).contains(&o[2])
        })
        .map(|(_, n)| *n)
        .sum()
}

/// Phase 4: legitimate clients plus a junk-header flood (256 sources, 100 requests/s) and a GET
/// flood (1,500 requests/s from the 512 sources of the country list, 1,500/s from 8 sources
/// outside it, over their 60/s budget), all through real TCP.
#[allow(clippy::too_many_arguments)]
fn http_phase(
    a: &LabOptions,
    ns_c: &str,
    ns_a: &str,
    ns_m: &str,
    exe: &str,
    socket: &std::path::Path,
    served_path: &std::path::Path,
    stop: &AtomicBool,
) -> Result<HttpPhase, LabError> {
    println!(
        "==> phase 4/4: + HTTP floods ({} s; legit {} conn/s; botnet of 1,024 addresses in {BOTNET}: junk headers from \
         198.19.19.0/24 at 100 req/s, GET flood at 3,000 req/s: half from the country list {BOT_COUNTRY}, half from 8 \
         sources in 198.19.18.0/29, each over its budget of 60/s)",
        a.seconds, a.conn_rate
    );
    let to = SocketAddr::new(IpAddr::V4(SERVER4), 80);
    let secs = a.seconds.to_string();
    let bot = |extra: &[&str]| -> Result<NsChild, LabError> {
        let mut v = args(&["peer", "botnet", "--to", "198.18.0.10:80", "--seconds", &secs, "--timeout-ms", "300"]);
        v.extend(args(extra));
        NsChild::spawn(Some(ns_a), exe, &v, true)
    };
    let before = read_served(served_path);
    let t0 = Instant::now();
    let legit = spawn_peer_connect(ns_c, exe, to, a.conn_rate * a.seconds, Some(a.conn_rate as f64), 3000, true)?;
    let bots = [
        bot(&["--kind", "junk", "--first", "198.19.19.0", "--sources", "256", "--rate", "100", "--threads", "16"])?,
        bot(&["--kind", "get", "--first", "198.19.16.0", "--sources", "512", "--rate", "1500", "--threads", "96"])?,
        bot(&["--kind", "get", "--first", "198.19.18.0", "--sources", "8", "--rate", "1500", "--threads", "48"])?,
    ];
    let mut legit = legit;
    let mut last: Option<serde_json::Value> = None;
    let mut tick = Instant::now();
    while legit.try_wait().is_none() && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if tick.elapsed() < Duration::from_secs(1) {
            continue;
        }
        tick = Instant::now();
        let now = read_served(served_path);
        let mut line = format!(
            "  t={:>3}s  at server: junk requests {:>4}, GETs from the country list {:>6}, from over-limit sources {:>6}",
            t0.elapsed().as_secs(),
            now.junk.saturating_sub(before.junk),
            served_from(&now, 16, 17).saturating_sub(served_from(&before, 16, 17)),
            served_from(&now, 18, 18).saturating_sub(served_from(&before, 18, 18)),
        );
        if scrubber_running(socket) {
            line.push_str(&scrubber_line(ns_m, exe, socket, &mut last));
            if let Some(b) = last.as_ref().and_then(|v| v.pointer("/bans/bans_live")).and_then(|b| b.as_u64()) {
                line.push_str(&format!(" bans {b}"));
            }
        }
        println!("{line}");
    }
    let out = legit.finish(Duration::from_secs(10))?;
    let legit_rep: ConnectReport = serde_json::from_str(out.stdout.trim()).map_err(|e| LabError::Parse {
        cmd: "scrubber peer connect".into(),
        detail: format!("{e}: {}", out.stderr.trim()),
    })?;
    let mut reps = Vec::new();
    for mut b in bots {
        let o = b.finish(Duration::from_secs(30))?;
        reps.push(serde_json::from_str::<super::botnet::BotnetReport>(o.stdout.trim()).map_err(|e| {
            LabError::Parse { cmd: "scrubber peer botnet".into(), detail: format!("{e}: {}", o.stderr.trim()) }
        })?);
    }
    std::thread::sleep(Duration::from_millis(400));
    let served = read_served(served_path);
    let bans = if scrubber_running(socket) {
        let mut l = None;
        let _ = scrubber_line(ns_m, exe, socket, &mut l);
        l.and_then(|v| v.pointer("/bans/bans_live").and_then(|b| b.as_u64()))
    } else {
        None
    };
    let mut it = reps.into_iter();
    let (junk, listed, unlisted) =
        (it.next().unwrap_or_default(), it.next().unwrap_or_default(), it.next().unwrap_or_default());
    Ok(HttpPhase { secs: t0.elapsed().as_secs_f64(), legit: legit_rep, junk, listed, unlisted, served, before, bans })
}

/// Whether a scrubber serves its stats socket (the middle is not a bridge).
fn scrubber_running(socket: &std::path::Path) -> bool {
    socket.exists()
}

fn print_http_summary(h: &HttpPhase, middle: LabMiddle) {
    let m = match middle {
        LabMiddle::Scrubber => "scrubber (http checks, country list, request limits, bans)",
        LabMiddle::Bridge => "Linux bridge (no protection)",
    };
    println!("\n==> HTTP floods ({:.1} s), middle box: {m}", h.secs);
    println!("{:<34} {:>9} {:>9} {:>16}", "clients", "offered", "answered", "served (server)");
    println!("{}", "-".repeat(72));
    let rows = [
        ("junk headers, 256 sources", &h.junk, h.served.junk.saturating_sub(h.before.junk)),
        (
            "GET, country list (512 sources)",
            &h.listed,
            served_from(&h.served, 16, 17).saturating_sub(served_from(&h.before, 16, 17)),
        ),
        (
            "GET, 8 sources over 60/s",
            &h.unlisted,
            served_from(&h.served, 18, 18).saturating_sub(served_from(&h.before, 18, 18)),
        ),
    ];
    for (name, r, srv) in rows {
        println!("{name:<34} {:>9} {:>9} {:>16}", r.offered, r.answered, srv);
    }
    println!(
        "{:<34} {:>9} {:>9} {:>16}",
        "legit client (connections)",
        h.legit.ok + h.legit.failed,
        h.legit.ok,
        format!("{} failed", h.legit.failed)
    );
    if let Some(b) = h.bans {
        println!("bans live at the end: {b} (scrubber ban list --socket …)");
    }
    println!("(\"served\": requests whose whole head the server read; junk = a header line over 1 KiB)");
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
) -> Result<NsChild, LabError> {
    NsChild::spawn(Some(ns), exe, &connect_argv(to, count, rate, timeout_ms, progress), true)
}

fn run_peer_connect(
    ns: &str,
    exe: &str,
    to: SocketAddr,
    count: u64,
    rate: Option<f64>,
    timeout_ms: u64,
    progress: bool,
) -> Result<ConnectReport, LabError> {
    let mut c = spawn_peer_connect(ns, exe, to, count, rate, timeout_ms, progress)?;
    let out = c.finish(Duration::from_millis(timeout_ms * count.max(1) + 5000))?;
    serde_json::from_str(out.stdout.trim()).map_err(|e| LabError::Parse {
        cmd: "scrubber peer connect".into(),
        detail: format!("{e}: {}", out.stderr.trim()),
    })
}

/// One short summary of the scrubber's counters (from `scrubber stats --json`), with rates
/// against the previous reading.
fn scrubber_line(ns: &str, exe: &str, socket: &std::path::Path, last: &mut Option<serde_json::Value>) -> String {
    let argv = super::exec::ns_argv(Some(ns), exe, &args(&["stats", "--socket", &socket.to_string_lossy(), "--json"]));
    let out = match super::exec::run_argv(&argv, Duration::from_secs(2)) {
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
    // Attack state and the top source of the first target with one (worker 0's view).
    let attacked: Vec<String> = v
        .get("under_attack")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let top = v
        .pointer("/workers/0/counters/top_sources")
        .and_then(|t| t.as_array())
        .and_then(|t| t.iter().find_map(|x| x.pointer("/sources/0")).cloned())
        .map(|s| format!(" top {} {} pps", s["src"].as_str().unwrap_or("?"), s["pps"].as_u64().unwrap_or(0)))
        .unwrap_or_default();
    let attack = if attacked.is_empty() { String::new() } else { format!(" | ATTACK on {}{top}", attacked.join(",")) };
    let keys = ["forwarded_inbound", "dropped", "cookies_sent", "cookies_validated"];
    let now: Vec<u64> = keys.iter().map(|k| total(&v, k)).collect();
    let prev: Vec<u64> =
        last.as_ref().map(|p| keys.iter().map(|k| total(p, k)).collect()).unwrap_or_else(|| now.clone());
    *last = Some(v);
    format!(
        " | scrubber: fwd in {} (+{}/s) dropped {} (+{}/s) cookies {} (+{}/s) valid {}{attack}",
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

fn print_summary(results: &[PhaseResult], middle: LabMiddle) {
    let m = match middle {
        LabMiddle::Scrubber => "scrubber (SYN proxy)",
        LabMiddle::Bridge => "Linux bridge (no protection)",
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
