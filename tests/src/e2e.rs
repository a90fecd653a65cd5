//! The end-to-end harness: one lab (namespaces, server, counters, the middle box) per test,
//! the binary under test, real peers and floods. Used by `tests/e2e.rs` and `tests/e2e_tcp.rs`.
//!
//! Root only: without root every test prints a loud SKIPPED message and passes ([`begin`]).
#![allow(missing_docs, clippy::missing_panics_doc)]

use scrubber::tools::lab::exec::NsChild;
use scrubber::tools::lab::flood::{self, FloodResult, Hping, Kind, Trafgen};
use scrubber::tools::lab::nft::{Counts, ServerCounters};
use scrubber::tools::lab::peer::{ConnectReport, TransferReport};
use scrubber::tools::lab::topo::{Middle, Role, TopoOptions, Topology, SERVER4, SERVER6};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Take the global lock, or return `None` (after a loud message) when not root.
pub fn begin(test: &str) -> Option<MutexGuard<'static, ()>> {
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
pub fn scrubber_bin() -> String {
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

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub const V4_80: SocketAddr = SocketAddr::new(IpAddr::V4(SERVER4), 80);
pub const V6_80: SocketAddr = SocketAddr::new(IpAddr::V6(SERVER6), 80);
pub const SPOOF: Ipv4Addr = Ipv4Addr::new(198, 19, 7, 7);

/// One test's lab: topology, server, counters. Field order is drop order: processes first.
#[allow(missing_debug_implementations)]
pub struct Lab {
    pub scrubber: Option<NsChild>,
    pub server: NsChild,
    pub counters: ServerCounters,
    pub exe: String,
    pub socket: String,
    pub topo: Topology,
    /// Where the server writes the requests it served (`peer serve --counts`).
    pub served: PathBuf,
}

impl Lab {
    pub fn new(middle: Middle, vlan: Option<u16>) -> Lab {
        Self::with(TopoOptions { middle, vlan, queues: 1 })
    }

    /// A lab with the given topology options (e.g. several queues on the middle's veths).
    pub fn with(opts: TopoOptions) -> Lab {
        let exe = scrubber_bin();
        let tag = Topology::new_tag_with("e2e");
        let left = Topology::remove_leftovers(&tag);
        if !left.is_empty() {
            eprintln!("e2e: removed leftover namespaces {left:?}");
        }
        let topo = Topology::create(&tag, opts).expect("build the lab topology");
        let ns_s = topo.ns(Role::Server);
        let served = std::env::temp_dir().join(format!("scrubber-{tag}.served.json"));
        let served_arg = served.display().to_string();
        let server = NsChild::spawn(
            Some(&ns_s),
            &exe,
            &s(&["peer", "serve", "--listen", "[::]:80", "--counts", &served_arg]),
            true,
        )
        .expect("start the lab server");
        let counters = ServerCounters::install(&ns_s).expect("install nftables counters");
        let socket = format!("/run/scrubber-e2e-{tag}.sock");
        let lab = Lab { scrubber: None, server, counters, exe, socket, topo, served };
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
    pub fn peer_in(&self, role: Role, args: &[&str]) -> Result<String, String> {
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

    pub fn connect_args(
        to: SocketAddr,
        count: u64,
        rate: Option<u64>,
        parallel: usize,
        timeout_ms: u64,
    ) -> Vec<String> {
        let mut v = s(&["peer", "connect", "--to", &to.to_string(), "--count", &count.to_string()]);
        v.extend(s(&["--parallel", &parallel.to_string(), "--timeout-ms", &timeout_ms.to_string()]));
        if let Some(r) = rate {
            v.extend(s(&["--rate", &format!("{r}/s")]));
        }
        v
    }

    /// Start N connections from the client in the background.
    pub fn connect_bg(&self, to: SocketAddr, count: u64, rate: Option<u64>, parallel: usize) -> NsChild {
        NsChild::spawn(
            Some(&self.topo.ns(Role::Client)),
            &self.exe,
            &Self::connect_args(to, count, rate, parallel, 5000),
            true,
        )
        .expect("start peer connect")
    }

    pub fn connect_done(mut c: NsChild) -> ConnectReport {
        let out = c.finish(Duration::from_secs(180)).expect("peer connect finishes");
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("bad peer connect report ({e}): {} / {}", out.stdout, out.stderr))
    }

    /// N connections from the client; returns the report (whatever the outcome).
    pub fn connect(&self, to: SocketAddr, count: u64, rate: Option<u64>, parallel: usize) -> ConnectReport {
        Self::connect_done(self.connect_bg(to, count, rate, parallel))
    }

    pub fn transfer_bg(&self, to: SocketAddr, bytes: &str, dir: &str) -> NsChild {
        let v = s(&["peer", "transfer", "--to", &to.to_string(), "--bytes", bytes, "--dir", dir]);
        NsChild::spawn(Some(&self.topo.ns(Role::Client)), &self.exe, &v, true).expect("start peer transfer")
    }

    /// A transfer no faster than `mbit` Mbit/s (to do something to the middle box meanwhile).
    pub fn transfer_paced_bg(&self, to: SocketAddr, bytes: &str, dir: &str, mbit: u32) -> NsChild {
        let v = s(&["peer", "transfer", "--to", &to.to_string(), "--bytes", bytes, "--dir", dir]);
        let mut v = v;
        v.extend(s(&["--rate-mbit", &mbit.to_string(), "--idle-ms", "8000"]));
        NsChild::spawn(Some(&self.topo.ns(Role::Client)), &self.exe, &v, true).expect("start peer transfer")
    }

    pub fn transfer_done(mut c: NsChild) -> TransferReport {
        let out = c.finish(Duration::from_secs(180)).expect("peer transfer finishes");
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("bad peer transfer report ({e}): {} / {}", out.stdout, out.stderr))
    }

    pub fn transfer(&self, to: SocketAddr, bytes: &str, dir: &str) -> TransferReport {
        Self::transfer_done(self.transfer_bg(to, bytes, dir))
    }

    /// Wait until one connection gets through (the middle box is forwarding).
    pub fn wait_path(&mut self, to: SocketAddr, limit: Duration) {
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

    pub fn start_scrubber(&mut self) {
        self.start_scrubber_with(&[
            "--protect",
            "198.18.0.10:80",
            "--protect",
            "[2001:2::10]:80",
            "--syn-mode",
            "proxy",
        ]);
    }

    pub fn start_scrubber_with(&mut self, policy: &[&str]) {
        let argv = scrubber::tools::lab::run_argv(&self.socket, policy);
        self.start_scrubber_argv(argv);
    }

    /// Start `scrubber ARGV` in the middle (e.g. with other `--cores` than the lab's).
    pub fn start_scrubber_argv(&mut self, argv: Vec<String>) {
        assert!(self.scrubber.is_none());
        let c = NsChild::spawn(Some(&self.topo.ns(Role::Middle)), &self.exe, &argv, true).expect("start scrubber run");
        self.scrubber = Some(c);
        std::thread::sleep(Duration::from_millis(300));
        if let Some(st) = self.scrubber.as_mut().and_then(|c| c.try_wait()) {
            let out = self.scrubber.as_mut().map(|c| c.finish(Duration::from_secs(1)));
            panic!("scrubber run exited at once ({st}): {out:?}");
        }
    }

    /// SIGINT the scrubber, wait for it (it prints its final counters) and return its output.
    pub fn stop_scrubber(&mut self) -> String {
        let Some(mut c) = self.scrubber.take() else { return String::new() };
        c.stop_with("INT", Duration::from_secs(5));
        match c.finish(Duration::from_secs(2)) {
            Ok(o) => format!("{}\n{}", o.stdout, o.stderr),
            Err(e) => e.to_string(),
        }
    }

    /// SIGKILL the scrubber (no clean-up of its own) and return its output.
    pub fn kill_scrubber(&mut self) -> String {
        let Some(mut c) = self.scrubber.take() else { return String::new() };
        c.stop_with("KILL", Duration::from_secs(2));
        match c.finish(Duration::from_secs(2)) {
            Ok(o) => format!("{}\n{}", o.stdout, o.stderr),
            Err(e) => e.to_string(),
        }
    }

    pub fn counts(&self) -> Counts {
        self.counters.read().expect("read nftables counters")
    }

    pub fn hping(&self, kind: Kind, count: u64, interval_us: u64) -> FloodResult {
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

    pub fn trafgen(&self, kind: Kind, target: IpAddr, count: u64, pps: u64) -> flood::Flood {
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

impl Lab {
    /// The HTTP requests the server has served so far (written every 200 ms).
    pub fn served(&self) -> scrubber::tools::lab::peer::ServedCounts {
        std::fs::read(&self.served).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.served);
        if self.scrubber.is_some() {
            let out = self.stop_scrubber();
            if std::thread::panicking() {
                eprintln!("--- scrubber output ---\n{out}\n-----------------------");
            }
        }
    }
}

pub fn assert_all_ok(what: &str, r: &ConnectReport, count: u64) {
    assert_eq!((r.ok, r.failed), (count, 0), "{what}: not every connection succeeded: {r:?}");
}

pub fn assert_intact(what: &str, t: &TransferReport) {
    assert!(t.hash_ok && t.error.is_none(), "{what}: transfer not intact: {t:?}");
}

pub fn has_xdp(ip_link_output: &str) -> bool {
    ip_link_output.contains("prog/xdp")
        || ip_link_output
            .split_whitespace()
            .any(|w| matches!(w, "xdp" | "xdpgeneric" | "xdpdrv" | "xdpoffload" | "xdpmulti"))
}
