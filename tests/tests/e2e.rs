//! End-to-end tests: real Linux TCP peers and real flood tools in network namespaces, with the
//! scrubber (or, for the harness self-tests, a kernel bridge) as the middle box.
//!
//! Root only: without root every test prints a loud SKIPPED message and passes. With root the
//! tools must be installed (`scripts/test.sh` installs them) and the scrubber binary built:
//! `SCRUBBER_BIN`, else `<workspace>/target/release/scrubber` (`cargo build --release -p
//! scrubber --locked`, which scripts/test.sh runs first), else `<workspace>/target/debug/scrubber`.
//!
//! Each test builds its own topology (tag `e2e<pid%1000>x<n>`; namespaces removed on drop, also
//! on panic) and the tests run one at a time (a global lock): floods and timing-sensitive
//! connection storms must not share the 2 cores with another test.
//!
//! Addresses: client 198.18.0.1, attacker 198.18.0.66, server 198.18.0.10 (and 2001:2::1, ::66,
//! ::10); spoofed flood sources only in 198.19.0.0/16 and 2001:2:0:ffff::/64. Every flood is
//! bounded in count and time.
//!
//! The `e2e_*` tests run `scrubber run` in the middle. The harness self-tests run a kernel bridge
//! there instead and show that the harness really measures: connections and transfers succeed,
//! and flood frames that cross the middle box ARE counted at the server, so the "zero flood
//! frames at the server" assertions of the scrubber tests can fail. (Pointing SCRUBBER_BIN at a
//! wrapper whose `run` just bridges ext and int makes every `e2e_*` flood assertion fail with
//! the whole flood counted, and the connection/transfer test pass.)

use scrubber::tools::lab::exec::{run_ns, NsChild};
use scrubber::tools::lab::flood::{self, FloodResult, Hping, Kind, Trafgen};
use scrubber::tools::lab::nft::{Class, Counts, ServerCounters, Source};
use scrubber::tools::lab::peer::{ConnectReport, TransferReport};
use scrubber::tools::lab::topo::{self, Middle, Role, TopoOptions, Topology, SERVER4, SERVER6};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Take the global lock, or return `None` (after a loud message) when not root.
fn begin(test: &str) -> Option<MutexGuard<'static, ()>> {
    if !scrubber::tools::lab::is_root() {
        // Written to the stderr handle directly: the test harness captures eprintln! of passing
        // tests, and this message must be seen.
        let bang = "!".repeat(92);
        let msg = format!(
            "\n{bang}\n!!! SKIPPED end-to-end test `{test}`: it needs root (network namespaces, AF_XDP).\n\
             !!! Run `sudo scripts/test.sh` to run it. It PASSES WITHOUT CHECKING ANYTHING now.\n{bang}\n\n"
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
        return None;
    }
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = scrubber::tools::lab::preflight(&[
        "ip", "tc", "ethtool", "nft", "hping3", "trafgen", "tcpdump", "kill", "timeout", "sysctl",
    ]) {
        panic!("end-to-end test `{test}` cannot run: {e} (scripts/test.sh installs everything needed)");
    }
    Some(guard)
}

/// The scrubber binary the namespaces run (`peer` and `run` subcommands).
fn scrubber_bin() -> String {
    if let Some(p) = std::env::var_os("SCRUBBER_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "SCRUBBER_BIN={} is not a file", p.display());
        return p.to_string_lossy().into_owned();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("scrubber");
        if p.is_file() {
            let p = p.canonicalize().unwrap_or(p);
            eprintln!("e2e: using scrubber binary {}", p.display());
            return p.to_string_lossy().into_owned();
        }
    }
    panic!(
        "no scrubber binary under {}: build it first with `cargo build --release -p scrubber --locked` \
         (scripts/test.sh does), or set SCRUBBER_BIN",
        target.display()
    );
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

const V4_80: SocketAddr = SocketAddr::new(IpAddr::V4(SERVER4), 80);
const V6_80: SocketAddr = SocketAddr::new(IpAddr::V6(SERVER6), 80);
const SPOOF: Ipv4Addr = Ipv4Addr::new(198, 19, 7, 7);

/// One test's lab: topology, server, counters. Field order is drop order: processes first.
struct Lab {
    scrubber: Option<NsChild>,
    server: NsChild,
    counters: ServerCounters,
    exe: String,
    socket: String,
    topo: Topology,
}

impl Lab {
    fn new(middle: Middle, vlan: Option<u16>) -> Lab {
        let exe = scrubber_bin();
        let tag = Topology::new_tag_with("e2e");
        let left = Topology::remove_leftovers(&tag);
        if !left.is_empty() {
            eprintln!("e2e: removed leftover namespaces {left:?}");
        }
        let topo = Topology::create(&tag, TopoOptions { middle, vlan }).expect("build the lab topology");
        let ns_s = topo.ns(Role::Server);
        let server = NsChild::spawn(Some(&ns_s), &exe, &s(&["peer", "serve", "--listen", "[::]:80"]), true)
            .expect("start the lab server");
        let counters = ServerCounters::install(&ns_s).expect("install nftables counters");
        let socket = format!("/run/scrubber-e2e-{tag}.sock");
        let lab = Lab { scrubber: None, server, counters, exe, socket, topo };
        // The server listens before anything else happens (checked from inside its namespace).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r =
                lab.peer_in(Role::Server, &["connect", "--to", "127.0.0.1:80", "--count", "1", "--timeout-ms", "500"]);
            if r.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the lab server did not start listening: {r:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        lab
    }

    /// Run `scrubber peer ARGS` in a namespace and return its stdout (error: status + stderr).
    fn peer_in(&self, role: Role, args: &[&str]) -> Result<String, String> {
        let mut v = s(&["peer"]);
        v.extend(s(args));
        let mut c = NsChild::spawn(Some(&self.topo.ns(role)), &self.exe, &v, true).map_err(|e| e.to_string())?;
        let out = c.finish(Duration::from_secs(120)).map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!("{}: {}{}", out.status, out.stdout.trim(), out.stderr.trim()))
        }
    }

    fn connect_args(to: SocketAddr, count: u64, rate: Option<u64>, parallel: usize, timeout_ms: u64) -> Vec<String> {
        let mut v = s(&["peer", "connect", "--to", &to.to_string(), "--count", &count.to_string()]);
        v.extend(s(&["--parallel", &parallel.to_string(), "--timeout-ms", &timeout_ms.to_string()]));
        if let Some(r) = rate {
            v.extend(s(&["--rate", &format!("{r}/s")]));
        }
        v
    }

    /// Start N connections from the client in the background.
    fn connect_bg(&self, to: SocketAddr, count: u64, rate: Option<u64>, parallel: usize) -> NsChild {
        NsChild::spawn(
            Some(&self.topo.ns(Role::Client)),
            &self.exe,
            &Self::connect_args(to, count, rate, parallel, 5000),
            true,
        )
        .expect("start peer connect")
    }

    fn connect_done(mut c: NsChild) -> ConnectReport {
        let out = c.finish(Duration::from_secs(180)).expect("peer connect finishes");
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("bad peer connect report ({e}): {} / {}", out.stdout, out.stderr))
    }

    /// N connections from the client; returns the report (whatever the outcome).
    fn connect(&self, to: SocketAddr, count: u64, rate: Option<u64>, parallel: usize) -> ConnectReport {
        Self::connect_done(self.connect_bg(to, count, rate, parallel))
    }

    fn transfer_bg(&self, to: SocketAddr, bytes: &str, dir: &str) -> NsChild {
        let v = s(&["peer", "transfer", "--to", &to.to_string(), "--bytes", bytes, "--dir", dir]);
        NsChild::spawn(Some(&self.topo.ns(Role::Client)), &self.exe, &v, true).expect("start peer transfer")
    }

    fn transfer_done(mut c: NsChild) -> TransferReport {
        let out = c.finish(Duration::from_secs(180)).expect("peer transfer finishes");
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("bad peer transfer report ({e}): {} / {}", out.stdout, out.stderr))
    }

    fn transfer(&self, to: SocketAddr, bytes: &str, dir: &str) -> TransferReport {
        Self::transfer_done(self.transfer_bg(to, bytes, dir))
    }

    /// Wait until one connection gets through (the middle box is forwarding).
    fn wait_path(&mut self, to: SocketAddr, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.server.try_wait() {
                panic!("the lab server (scrubber peer serve) exited ({st})");
            }
            // A scrubber that died is reported at once, with what it said.
            if let Some(st) = self.scrubber.as_mut().and_then(|c| c.try_wait()) {
                let out = self.stop_scrubber();
                panic!("scrubber run exited ({st}) before {to} became reachable:\n{out}");
            }
            let r = self.connect(to, 1, None, 1);
            if r.ok == 1 {
                return;
            }
            assert!(Instant::now() < deadline, "no connection to {to} through the middle box within {limit:?}: {r:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn start_scrubber(&mut self) {
        self.start_scrubber_with(&[
            "--protect",
            "198.18.0.10:80",
            "--protect",
            "[2001:2::10]:80",
            "--syn-mode",
            "proxy",
        ]);
    }

    fn start_scrubber_with(&mut self, policy: &[&str]) {
        assert!(self.scrubber.is_none());
        let argv = scrubber::tools::lab::run_argv(&self.socket, policy);
        let c = NsChild::spawn(Some(&self.topo.ns(Role::Middle)), &self.exe, &argv, true).expect("start scrubber run");
        self.scrubber = Some(c);
        std::thread::sleep(Duration::from_millis(300));
        if let Some(st) = self.scrubber.as_mut().and_then(|c| c.try_wait()) {
            let out = self.scrubber.as_mut().map(|c| c.finish(Duration::from_secs(1)));
            panic!("scrubber run exited at once ({st}): {out:?}");
        }
    }

    /// SIGINT the scrubber, wait for it (it prints its final counters) and return its output.
    fn stop_scrubber(&mut self) -> String {
        let Some(mut c) = self.scrubber.take() else { return String::new() };
        c.stop_with("INT", Duration::from_secs(5));
        match c.finish(Duration::from_secs(2)) {
            Ok(o) => format!("{}\n{}", o.stdout, o.stderr),
            Err(e) => e.to_string(),
        }
    }

    fn counts(&self) -> Counts {
        self.counters.read().expect("read nftables counters")
    }

    fn hping(&self, kind: Kind, count: u64, interval_us: u64) -> FloodResult {
        let h = Hping {
            kind,
            target: SERVER4,
            port: 80,
            spoof: SPOOF,
            count,
            interval_us,
            limit: Duration::from_secs(count * interval_us.max(1) / 1_000_000 + 10),
        };
        flood::start_hping(&self.topo.ns(Role::Attacker), &h).expect("start hping3").finish().expect("hping3 runs")
    }

    fn trafgen(&self, kind: Kind, target: IpAddr, count: u64, pps: u64) -> flood::Flood {
        let t = Trafgen {
            kind,
            target,
            port: 80,
            dst_mac: self.topo.mac(Role::Server, "lan").expect("server MAC"),
            src_mac: self.topo.mac(Role::Attacker, "lan").expect("attacker MAC"),
            vlan: self.topo.options().vlan,
            count,
            rate_pps: Some(pps),
            limit: Duration::from_secs(count / pps + 10),
            dev: "lan".into(),
        };
        flood::start_trafgen(&self.topo.ns(Role::Attacker), &t).expect("start trafgen")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.scrubber.is_some() {
            let out = self.stop_scrubber();
            if std::thread::panicking() {
                eprintln!("--- scrubber output ---\n{out}\n-----------------------");
            }
        }
    }
}

fn assert_all_ok(what: &str, r: &ConnectReport, count: u64) {
    assert_eq!((r.ok, r.failed), (count, 0), "{what}: not every connection succeeded: {r:?}");
}

fn assert_intact(what: &str, t: &TransferReport) {
    assert!(t.hash_ok && t.error.is_none(), "{what}: transfer not intact: {t:?}");
}

fn has_xdp(ip_link_output: &str) -> bool {
    ip_link_output.contains("prog/xdp")
        || ip_link_output
            .split_whitespace()
            .any(|w| matches!(w, "xdp" | "xdpgeneric" | "xdpdrv" | "xdpoffload" | "xdpmulti"))
}

// ---------------------------------------------------------------------------------------------
// Harness self-tests (kernel bridge in the middle).

/// Through a plain bridge: connections, a port-reuse storm and transfers succeed, and a bounded
/// spoofed hping3 flood IS counted at the server — so the harness can see flood frames, and the
/// scrubber tests' "zero at the server" assertions are able to fail.
#[test]
fn harness_self_test_bridge_counts_floods() {
    let Some(_g) = begin("harness_self_test_bridge_counts_floods") else { return };
    let mut lab = Lab::new(Middle::Bridge, None);
    lab.wait_path(V4_80, Duration::from_secs(10));

    let r = lab.connect(V4_80, 200, None, 8);
    assert_all_ok("200 connections through the bridge", &r, 200);
    assert!(r.p50_ms > 0.0 && r.p99_ms >= r.p50_ms, "{r:?}");
    assert_intact("5 MiB up", &lab.transfer(V4_80, "5M", "up"));
    assert_intact("5 MiB down", &lab.transfer(V4_80, "5M", "down"));

    // A narrow client port range forces fast 4-tuple reuse; the kernel alone handles it.
    lab.topo.set_port_range(Role::Client, 40000, 40099).expect("port range");
    let r = lab.connect(V4_80, 600, Some(300), 8);
    assert_all_ok("600 connections at 300/s over 100 source ports", &r, 600);
    assert_eq!(r.stalled, 0, "{r:?}");

    let before = lab.counts();
    let f = lab.hping(Kind::AckPsh, 300, 1000);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    eprintln!("hping3 ACK-PSH through the bridge: sent {} seen {}", f.sent, d.get(Source::Spoof4, Class::AckPsh));
    assert!(f.completed && f.sent > 0, "{f:?}");
    assert!(d.get(Source::Spoof4, Class::AckPsh) > 0, "the server counted no flood frame: {d}");
    assert_eq!(d.get(Source::Spoof4, Class::AckPsh), f.sent, "a bridge forwards every frame: {d}");
    assert_eq!(d.get(Source::Spoof4, Class::Syn), 0, "flags classified wrongly: {d}");

    let before = lab.counts();
    let f = lab.trafgen(Kind::Syn, IpAddr::V4(SERVER4), 2000, 20_000).finish().expect("trafgen");
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(f.completed && f.sent == 2000, "{f:?}");
    assert_eq!(d.get(Source::Spoof4, Class::Syn), 2000, "trafgen SYNs through the bridge: {d}");
}

/// The same harness over IPv6 and with 802.1Q tags: connections to [2001:2::10] and a trafgen
/// IPv6 flood (tagged) are counted at the server.
#[test]
fn harness_self_test_bridge_ipv6_vlan() {
    let Some(_g) = begin("harness_self_test_bridge_ipv6_vlan") else { return };
    let mut lab = Lab::new(Middle::Bridge, Some(100));
    lab.wait_path(V6_80, Duration::from_secs(10));
    // The frames crossing the middle box carry the tag.
    let dump = s(&["timeout", "10", "tcpdump", "-c", "20", "-nn", "-i", "ext", "vlan 100 and tcp port 80"]);
    let mut tcpdump =
        NsChild::spawn(Some(&lab.topo.ns(Role::Middle)), &dump[0], &dump[1..], true).expect("start tcpdump");
    std::thread::sleep(Duration::from_millis(500));
    assert_all_ok("IPv6 over VLAN 100", &lab.connect(V6_80, 100, None, 4), 100);
    assert_all_ok("IPv4 over VLAN 100", &lab.connect(V4_80, 100, None, 4), 100);
    let out = tcpdump.finish(Duration::from_secs(12)).expect("tcpdump");
    assert!(out.status.success(), "tcpdump saw no 20 tagged TCP frames on ext: {out:?}");
    let before = lab.counts();
    let f = lab.trafgen(Kind::AckPsh, IpAddr::V6(SERVER6), 1000, 20_000).finish().expect("trafgen");
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert_eq!(f.sent, 1000, "{f:?}");
    assert_eq!(d.get(Source::Spoof6, Class::AckPsh), 1000, "tagged IPv6 flood through the bridge: {d}");
    assert_eq!(d.get(Source::Spoof4, Class::All), 0, "{d}");
}

/// Dropping a Topology removes every namespace, kills what still runs inside, also on panic.
#[test]
fn topology_drop_removes_every_namespace() {
    let Some(_g) = begin("topology_drop_removes_every_namespace") else { return };
    let tag = Topology::new_tag_with("e2e");
    let t = Topology::create(&tag, TopoOptions { middle: Middle::Open, vlan: None }).expect("topology");
    let names: Vec<String> = t.namespaces().to_vec();
    assert_eq!(names.len(), 5);
    assert!(names.iter().all(|n| topo::netns_exists(n)));
    // A process left running inside (no guard): the drop must kill it.
    let mut stray = std::process::Command::new("ip")
        .args(["netns", "exec", &t.ns(Role::Server), "sleep", "60"])
        .spawn()
        .expect("spawn a stray process");
    std::thread::sleep(Duration::from_millis(200));
    drop(t);
    let t0 = Instant::now();
    let st = stray.wait().expect("reap the stray process");
    assert!(!st.success() && t0.elapsed() < Duration::from_secs(5), "the stray process was not killed: {st}");
    for n in &names {
        assert!(!topo::netns_exists(n), "{n} still exists");
    }
    let listed = topo::list_netns().expect("ip netns list");
    assert!(!listed.iter().any(|n| n.starts_with(&tag)), "{listed:?}");

    // On panic, too.
    let tag2 = Topology::new_tag_with("e2e");
    let tag2c = tag2.clone();
    let res = std::panic::catch_unwind(move || {
        let _t = Topology::create(&tag2c, TopoOptions { middle: Middle::Bridge, vlan: Some(7) }).expect("topology");
        panic!("deliberate panic inside a test");
    });
    assert!(res.is_err());
    let listed = topo::list_netns().expect("ip netns list");
    assert!(!listed.iter().any(|n| n.starts_with(&tag2)), "{listed:?}");
}

// ---------------------------------------------------------------------------------------------
// The scrubber in the middle.

/// 1,000 connections through the SYN proxy; 50 MiB up and down intact; one client opening 300
/// new connections per second over a narrow source-port range never stalls.
#[test]
fn e2e_syn_proxy_connections_and_transfers() {
    let Some(_g) = begin("e2e_syn_proxy_connections_and_transfers") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    let r = lab.connect(V4_80, 1000, None, 8);
    eprintln!("1,000 connections: {r:?}");
    assert_all_ok("1,000 connections through the SYN proxy", &r, 1000);
    let (up, down) = (lab.transfer(V4_80, "50M", "up"), lab.transfer(V4_80, "50M", "down"));
    eprintln!("50 MiB up: {up:?}\n50 MiB down: {down:?}");
    assert_intact("50 MiB up", &up);
    assert_intact("50 MiB down", &down);
    lab.topo.set_port_range(Role::Client, 40000, 40199).expect("port range");
    let r = lab.connect(V4_80, 1500, Some(300), 8);
    eprintln!("1,500 connections at 300/s over 200 ports: {r:?}");
    assert_all_ok("1,500 connections at 300/s over 200 source ports", &r, 1500);
    assert_eq!(r.stalled, 0, "connections stalled (> 1 s) under fast source-port reuse: {r:?}");
    assert!(r.secs < 8.0, "300/s was not sustained: {r:?}");
}

/// A spoofed hping3 ACK-PSH flood while legitimate transfers and connections run: zero flood
/// frames at the server, every legitimate transfer intact.
#[test]
fn e2e_ack_psh_flood_dropped() {
    let Some(_g) = begin("e2e_ack_psh_flood_dropped") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    let before = lab.counts();
    let up = lab.transfer_bg(V4_80, "20M", "up");
    let down = lab.transfer_bg(V4_80, "20M", "down");
    let conns = lab.connect_bg(V4_80, 300, Some(100), 4);
    let f = lab.hping(Kind::AckPsh, 20_000, 100);
    let tg = lab.trafgen(Kind::AckPsh, IpAddr::V4(SERVER4), 100_000, 50_000).finish().expect("trafgen");
    assert_intact("20 MiB up under flood", &Lab::transfer_done(up));
    assert_intact("20 MiB down under flood", &Lab::transfer_done(down));
    assert_all_ok("connections under flood", &Lab::connect_done(conns), 300);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(f.sent > 0 && tg.sent > 0, "the floods did not run: {f:?} {tg:?}");
    assert_eq!(d.get(Source::Spoof4, Class::All), 0, "flood frames reached the server: {d}");
    assert!(d.get(Source::Client4, Class::All) > 1000, "legit traffic was not counted: {d}");
}

/// A spoofed SYN flood (random sources in 198.19.0.0/16): the server sees no SYN from them;
/// legitimate connections complete.
#[test]
fn e2e_syn_flood_answered_by_proxy() {
    let Some(_g) = begin("e2e_syn_flood_answered_by_proxy") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    let before = lab.counts();
    let conns = lab.connect_bg(V4_80, 400, Some(100), 4);
    let tg = lab.trafgen(Kind::Syn, IpAddr::V4(SERVER4), 150_000, 50_000);
    let f = lab.hping(Kind::Syn, 5_000, 200);
    let tg = tg.finish().expect("trafgen");
    assert_all_ok("connections under SYN flood", &Lab::connect_done(conns), 400);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(f.sent > 0 && tg.sent > 0, "{f:?} {tg:?}");
    assert_eq!(d.get(Source::Spoof4, Class::Syn), 0, "spoofed SYNs reached the server: {d}");
    assert_eq!(d.get(Source::Spoof4, Class::All), 0, "{d}");
}

/// RST and FIN floods without sessions are dropped: zero at the server.
#[test]
fn e2e_rst_fin_floods_dropped() {
    let Some(_g) = begin("e2e_rst_fin_floods_dropped") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    let before = lab.counts();
    let conns = lab.connect_bg(V4_80, 200, Some(100), 4);
    let rst = lab.hping(Kind::Rst, 5_000, 100);
    let fin = lab.hping(Kind::Fin, 5_000, 100);
    let tg_rst = lab.trafgen(Kind::Rst, IpAddr::V4(SERVER4), 50_000, 50_000).finish().expect("trafgen RST");
    let tg_fin = lab.trafgen(Kind::Fin, IpAddr::V4(SERVER4), 50_000, 50_000).finish().expect("trafgen FIN");
    assert_all_ok("connections under RST/FIN floods", &Lab::connect_done(conns), 200);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(rst.sent > 0 && fin.sent > 0 && tg_rst.sent > 0 && tg_fin.sent > 0);
    assert_eq!(d.get(Source::Spoof4, Class::Rst), 0, "{d}");
    assert_eq!(d.get(Source::Spoof4, Class::Fin), 0, "{d}");
    assert_eq!(d.get(Source::Spoof4, Class::All), 0, "{d}");
}

/// IPv6: a batch of connections through the proxy and a spoofed IPv6 ACK-PSH flood dropped.
#[test]
fn e2e_ipv6_connections_and_ack_psh_flood() {
    let Some(_g) = begin("e2e_ipv6_connections_and_ack_psh_flood") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber();
    lab.wait_path(V6_80, Duration::from_secs(15));
    let before = lab.counts();
    let conns = lab.connect_bg(V6_80, 300, Some(100), 4);
    let tg = lab.trafgen(Kind::AckPsh, IpAddr::V6(SERVER6), 100_000, 50_000).finish().expect("trafgen");
    assert_all_ok("IPv6 connections under flood", &Lab::connect_done(conns), 300);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(tg.sent > 0, "{tg:?}");
    assert_eq!(d.get(Source::Spoof6, Class::All), 0, "IPv6 flood frames reached the server: {d}");
    assert!(d.get(Source::Client6, Class::All) > 1000, "{d}");
}

/// 802.1Q-tagged frames through the scrubber: connections and a tagged ACK-PSH flood dropped,
/// over IPv4 and IPv6.
#[test]
fn e2e_vlan_connections_and_ack_psh_flood() {
    let Some(_g) = begin("e2e_vlan_connections_and_ack_psh_flood") else { return };
    let mut lab = Lab::new(Middle::Open, Some(100));
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    let before = lab.counts();
    let conns = lab.connect_bg(V4_80, 300, Some(100), 4);
    let tg = lab.trafgen(Kind::AckPsh, IpAddr::V4(SERVER4), 50_000, 50_000).finish().expect("trafgen");
    let tg6 = lab.trafgen(Kind::AckPsh, IpAddr::V6(SERVER6), 50_000, 50_000).finish().expect("trafgen v6");
    assert_all_ok("tagged IPv4 connections under flood", &Lab::connect_done(conns), 300);
    assert_all_ok("tagged IPv6 connections", &lab.connect(V6_80, 100, None, 4), 100);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(tg.sent > 0 && tg6.sent > 0);
    assert_eq!(d.get(Source::Spoof4, Class::All), 0, "{d}");
    assert_eq!(d.get(Source::Spoof6, Class::All), 0, "{d}");
}

/// SIGKILL the scrubber: its XDP program is gone from ext (BPF link released with the process)
/// and a restarted scrubber forwards again.
#[test]
fn e2e_sigkill_detaches_and_restart_works() {
    let Some(_g) = begin("e2e_sigkill_detaches_and_restart_works") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    let ns_m = lab.topo.ns(Role::Middle);
    let link = run_ns(&ns_m, "ip", &["-d", "link", "show", "ext"]).expect("ip link");
    assert!(has_xdp(&link), "no XDP program on ext while the scrubber runs:\n{link}");
    let mut c = lab.scrubber.take().expect("scrubber child");
    c.signal_leader("KILL");
    assert!(c.wait_timeout(Duration::from_secs(5)).is_some(), "the scrubber did not die on SIGKILL");
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let link = run_ns(&ns_m, "ip", &["-d", "link", "show", "ext"]).expect("ip link");
        if !has_xdp(&link) {
            break;
        }
        assert!(Instant::now() < deadline, "XDP program still attached to ext after SIGKILL:\n{link}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&lab.socket);
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    assert_all_ok("connections after a restart", &lab.connect(V4_80, 200, None, 4), 200);
}

#[test]
fn xdp_detection_reads_ip_link_output() {
    let with = "3: ext@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 xdpgeneric qdisc noqueue state UP\n    prog/xdp id 42 name redirect";
    let without =
        "3: ext@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\n    veth addrgenmode eui64";
    assert!(has_xdp(with));
    assert!(!has_xdp(without));
}

/// Hot reload of a rule file under `scrubber run`: a change of the file is picked up; a broken
/// file is refused and the running policy stays; SIGHUP reloads at once.
#[test]
fn e2e_rules_hot_reload() {
    let Some(_g) = begin("e2e_rules_hot_reload") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    let dir = std::env::temp_dir().join(format!("scrubber-e2e-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("edge.rules");
    let service = "set servers = 198.18.0.10, 2001:2::10\nservice web\n  dst servers\n  proto tcp\n  ports 80\n  syn proxy\nend\n";
    let write = |extra: &str| std::fs::write(&rules, format!("{service}{extra}")).unwrap();
    write("allow proto icmp\n");
    lab.start_scrubber_with(&["--rules", rules.to_str().unwrap()]);
    lab.wait_path(V4_80, Duration::from_secs(15));

    // The client is denied: picked up from the file change within a couple of seconds.
    write("deny from 198.18.0.1\n");
    let deadline = Instant::now() + Duration::from_secs(6);
    while lab.connect(V4_80, 1, None, 1).ok == 1 {
        assert!(Instant::now() < deadline, "the deny rule was not loaded after the file changed");
        std::thread::sleep(Duration::from_millis(300));
    }
    // A broken file is refused: the deny stays in force.
    write("deny from nosuchset\n");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(lab.connect(V4_80, 1, None, 1).ok, 0, "a broken file must leave the running policy in place");
    // SIGHUP with a good file: allowed again at once.
    write("allow from 198.18.0.0/24\n");
    lab.scrubber.as_ref().unwrap().signal_leader("HUP");
    lab.wait_path(V4_80, Duration::from_secs(5));
    let r = lab.connect(V4_80, 50, None, 4);
    assert_all_ok("connections after the reload", &r, 50);
    let out = lab.stop_scrubber();
    assert!(out.contains("refused, running policy kept"), "the refusal is logged:\n{out}");
    assert!(out.contains("nosuchset"), "with its diagnostic:\n{out}");
    assert!(out.contains("reload (SIGHUP)") || out.contains("reload (file changed)"), "{out}");
    assert!(out.contains("rule_deny"), "final counters show the rule drops:\n{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
