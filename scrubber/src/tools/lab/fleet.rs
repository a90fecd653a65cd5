//! `scrubber lab --boxes N`: several scrubbers in parallel behind ECMP, steered by BGP with BFD
//! (BIRD 2, the Debian package), and what happens when one of them dies.
//!
//! ```text
//!  {tag}c client 198.18.11.2 ─┐                ┌─ ext {tag}b0 scrubber int ─┐
//!                             ├─ {tag}e edge ──┤            …               ├─ {tag}i inner ── {tag}s server
//!  {tag}a attacker 198.18.12.2┘   router       └─ ext {tag}bN scrubber int ─┘   router          198.18.30.10
//! ```
//!
//! * Path *i* is one L2 segment through box *i*: the edge router has 198.18.(20+i).1/24 on it,
//!   the inner router 198.18.(20+i).2/24; the box is a bump in the wire between them.
//! * The inner router announces the protected prefix 198.18.30.0/24 over a BGP session on
//!   every path, the edge router the client-side prefixes (and the spoofed range, routed to the
//!   attacker) back; both run BFD on every path (100 ms × 3) and install the BGP routes as one
//!   ECMP route (BIRD's `merge paths`). Both routers hash flows by their 5-tuple
//!   (`fib_multipath_hash_policy = 3`, fields 0x37) with the same seed: Linux orders the
//!   addresses and ports before hashing, so both directions of a flow take the same path — the
//!   same box — as a bump in the wire needs. (Policy 1 would reuse the hash a local socket put on
//!   the server's replies, a random value: replies would take any path.)
//! * Every box runs `scrubber run` with the same rule file and cookie secret: the SYN proxy for
//!   the servers, and exactly BGP and BFD between the routers' addresses.
//! * The BGP and BFD sessions cross the boxes: a dead box (its XDP program gone, fail-closed)
//!   takes its path's sessions down, BFD notices within ~300 ms, and both routers withdraw the
//!   path.
//!
//! [`run_failover`] measures a failover: long transfers and a stream of new connections from the client
//! and a spoofed ACK-PSH flood from the attacker run while box 0 is killed (SIGKILL) after a third
//! of the run and restarted after two thirds; it reports the time until the edge router withdrew
//! the path, new connections that failed, flood frames that reached the server, the time until
//! the restarted box had its path again, and the established connections that survived both
//! moves (to the survivors, and back to the restarted box).

use super::exec::{run as sh, run_ns, NsChild};
use super::flood::{self, Kind, Trafgen};
use super::nft::{Class, ServerCounters, Source};
use super::peer::{ConnectReport, TransferReport};
use super::LabError;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The protected server.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 30, 10);
/// The protected prefix the inner router announces.
pub const PROTECTED: &str = "198.18.30.0/24";
/// The client.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 11, 2);
/// Most boxes.
pub const MAX_BOXES: usize = 8;

/// How to run the fleet lab.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    /// Scrubber boxes (2..=8).
    pub boxes: usize,
    /// Seconds of traffic; box 0 dies at a third of it.
    pub seconds: u64,
    /// Spoofed ACK-PSH flood rate.
    pub flood_pps: u64,
    /// New legitimate connections per second.
    pub conn_rate: u64,
    /// Long-lived legitimate connections (paced downloads) across the failover.
    pub established: usize,
    /// Stream sessions between the boxes (over a management network of their own).
    pub sync: bool,
}

/// What a diversion did (`scrubber lab --boxes N --divert`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DivertReport {
    /// From the flood's start until the edge router held the blackhole route.
    pub announced_ms: u64,
    /// From the flood's start until the route was gone again (the attack's stop event: the
    /// quiet time after the flood stopped reaching the boxes — here the blackhole itself stops
    /// it at the edge, as RTBH does upstream).
    pub withdrawn_ms: u64,
    /// How long the flood ran.
    pub flood_ms: u64,
    /// The edge router's route while the attack lasted, as `ip route` shows it.
    pub route: String,
}

/// What a failover did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FleetReport {
    /// Boxes.
    pub boxes: usize,
    /// From the SIGKILL of box 0 until the edge router's route had one path less.
    pub failover_ms: u64,
    /// From the restart of box 0 until the edge router's route had every path again.
    pub rejoin_ms: u64,
    /// New connections opened during the run, and how many failed.
    pub new_connections: u64,
    /// New connections that failed.
    pub new_connections_failed: u64,
    /// New connections that failed from two seconds after the path was withdrawn on (attempts
    /// begun before it have timed out by then; the prober reports once a second).
    pub new_connections_failed_after_failover: u64,
    /// Spoofed flood frames sent.
    pub flood_frames_sent: u64,
    /// Of them, frames that reached the server (nftables in the server namespace).
    pub flood_frames_at_server: u64,
    /// Long-lived connections running when box 0 died (and still running when it rejoined).
    pub established: u64,
    /// Of them, connections that completed intact (through the failover and the rejoin).
    pub established_survived: u64,
    /// `established_survived` in percent.
    pub established_survived_pct: f64,
    /// Traffic each box carried (frames forwarded in, from its stats), before the failure.
    pub per_box_forwarded: Vec<u64>,
    /// Whether the boxes streamed their sessions to each other.
    pub sync: bool,
    /// Sessions the restarted box 0 took in from its peers before and after it rejoined (their
    /// table walks for it, and what they streamed since).
    pub rejoin_sessions_imported: u64,
    /// Open sessions the other boxes sent in their table walks (at the start of the fleet, and
    /// when box 0 came back: see `control::sync`).
    pub sessions_walked: u64,
    /// Session-sync bytes the surviving box 1 sent (UDP payload), and new connections per
    /// second over the run: the sync traffic per 1,000 new connections/s is
    /// `sync_bytes_per_s * 1000 / conn_rate`.
    pub sync_bytes_per_s: f64,
    /// New connections per second offered.
    pub conn_rate: u64,
}

impl FleetOptions {
    /// Refuse values outside what the lab allows.
    pub fn validate(&self) -> Result<(), LabError> {
        if !(2..=MAX_BOXES).contains(&self.boxes) {
            return Err(LabError::Invalid(format!("--boxes {}: give 2 to {MAX_BOXES} boxes", self.boxes)));
        }
        if !(3..=600).contains(&self.seconds) {
            return Err(LabError::Invalid(format!("--seconds {}: give 3 to 600 seconds", self.seconds)));
        }
        if !(1..=2_000_000).contains(&self.flood_pps) || !(1..=2000).contains(&self.conn_rate) {
            return Err(LabError::Invalid("--flood-pps 1..2M and --conn-rate 1..2000".into()));
        }
        if !(1..=64).contains(&self.established) {
            return Err(LabError::Invalid("1 to 64 established connections".into()));
        }
        Ok(())
    }
}

/// The fleet's namespaces, daemons and files; removed when dropped.
#[derive(Debug)]
pub struct Fleet {
    tag: String,
    boxes: usize,
    namespaces: Vec<String>,
    dir: PathBuf,
    exe: String,
    /// BIRD of the edge and the inner router, the server, the scrubbers (by box).
    daemons: Vec<NsChild>,
    scrubbers: Vec<Option<NsChild>>,
    sync: bool,
    divert: bool,
    /// nftables counters on the server.
    pub counters: Option<ServerCounters>,
}

fn ns(tag: &str, role: &str) -> String {
    format!("{tag}{role}")
}

impl Fleet {
    /// The namespace of a role: `c`, `a`, `e` (edge router), `i` (inner router), `s`, `b0`….
    pub fn ns(&self, role: &str) -> String {
        ns(&self.tag, role)
    }

    /// The stats socket of box `i`.
    pub fn socket(&self, i: usize) -> String {
        format!("/run/scrubber-{}b{i}.sock", self.tag)
    }

    /// Build the namespaces and links, write the daemons' files, start BIRD, the server and
    /// every scrubber, and wait until the edge router has every path.
    pub fn create(tag: &str, boxes: usize, exe: &str, sync: bool, divert: bool) -> Result<Fleet, LabError> {
        let dir = std::env::temp_dir().join(format!("scrubber-fleet-{tag}"));
        std::fs::create_dir_all(&dir)
            .map_err(|source| LabError::Io { what: format!("cannot create {}", dir.display()), source })?;
        let mut f = Fleet {
            tag: tag.to_string(),
            boxes,
            namespaces: Vec::new(),
            dir,
            exe: exe.to_string(),
            daemons: Vec::new(),
            scrubbers: Vec::new(),
            sync,
            divert,
            counters: None,
        };
        f.build()?;
        f.start()?;
        Ok(f)
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf, LabError> {
        let p = self.dir.join(name);
        std::fs::write(&p, text)
            .map_err(|source| LabError::Io { what: format!("cannot write {}", p.display()), source })?;
        Ok(p)
    }

    fn build(&mut self) -> Result<(), LabError> {
        let mut roles: Vec<String> = ["c", "a", "e", "i", "s", "g"].iter().map(|r| r.to_string()).collect();
        if self.divert {
            roles.push("x".into());
        }
        roles.extend((0..self.boxes).map(|i| format!("b{i}")));
        for r in &roles {
            let n = self.ns(r);
            if super::topo::netns_exists(&n) {
                return Err(LabError::Invalid(format!("namespace {n} already exists: remove it (ip netns del {n})")));
            }
            sh("ip", &["netns", "add", &n])?;
            self.namespaces.push(n.clone());
            run_ns(&n, "ip", &["link", "set", "lo", "up"])?;
            if r.starts_with('b') {
                run_ns(&n, "sysctl", &["-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
                run_ns(&n, "sysctl", &["-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
            }
        }
        let (c, a, e, i, s) = (self.ns("c"), self.ns("a"), self.ns("e"), self.ns("i"), self.ns("s"));
        // Hosts and their routers: (router ns, router if, router addr, host ns, host addr).
        let hosts = [
            (&e, "cl", "198.18.11.1", &c, "198.18.11.2"),
            (&e, "at", "198.18.12.1", &a, "198.18.12.2"),
            (&i, "sv", "198.18.30.1", &s, "198.18.30.10"),
        ];
        for (rn, rif, raddr, hn, haddr) in hosts {
            sh("ip", &["link", "add", rif, "netns", rn, "type", "veth", "peer", "name", "lan", "netns", hn])?;
            run_ns(rn, "ip", &["addr", "add", &format!("{raddr}/24"), "dev", rif])?;
            run_ns(rn, "ip", &["link", "set", rif, "up"])?;
            run_ns(hn, "ethtool", &["-K", "lan", "tx", "off", "gro", "off", "tso", "off"])?;
            run_ns(hn, "ip", &["addr", "add", &format!("{haddr}/24"), "dev", "lan"])?;
            run_ns(hn, "ip", &["link", "set", "lan", "up"])?;
            run_ns(hn, "ip", &["route", "add", "default", "via", raddr])?;
        }
        for b in 0..self.boxes {
            let bn = self.ns(&format!("b{b}"));
            let p = format!("p{b}");
            sh("ip", &["link", "add", &p, "netns", &e, "type", "veth", "peer", "name", "ext", "netns", &bn])?;
            sh("ip", &["link", "add", &p, "netns", &i, "type", "veth", "peer", "name", "int", "netns", &bn])?;
            for (rn, host) in [(&e, 1), (&i, 2)] {
                run_ns(rn, "ip", &["addr", "add", &format!("198.18.{}.{host}/24", 20 + b), "dev", &p])?;
                run_ns(rn, "ethtool", &["-K", &p, "tx", "off"])?;
                run_ns(rn, "ip", &["link", "set", &p, "up"])?;
            }
            for dev in ["ext", "int"] {
                run_ns(&bn, "ip", &["link", "set", dev, "up"])?;
            }
        }
        // The management network: the boxes' sync traffic, on a bridge of its own.
        let g = self.ns("g");
        run_ns(&g, "ip", &["link", "add", "br0", "type", "bridge"])?;
        run_ns(&g, "ip", &["link", "set", "br0", "up"])?;
        for b in 0..self.boxes {
            let bn = self.ns(&format!("b{b}"));
            let port = format!("g{b}");
            sh("ip", &["link", "add", "mg", "netns", &bn, "type", "veth", "peer", "name", &port, "netns", &g])?;
            run_ns(&g, "ip", &["link", "set", &port, "master", "br0", "up"])?;
            run_ns(&bn, "ip", &["addr", "add", &format!("{}/24", mgmt_addr(b)), "dev", "mg"])?;
            run_ns(&bn, "ip", &["link", "set", "mg", "up"])?;
        }
        if self.divert {
            // The BGP speaker the attack events drive (GoBGP), and the edge router, on the
            // management network too.
            for (n, dev, port, addr) in
                [(self.ns("x"), "mg", "gx", "198.18.40.2"), (e.clone(), "mg", "ge", "198.18.40.1")]
            {
                sh("ip", &["link", "add", dev, "netns", &n, "type", "veth", "peer", "name", port, "netns", &g])?;
                run_ns(&g, "ip", &["link", "set", port, "master", "br0", "up"])?;
                run_ns(&n, "ip", &["addr", "add", &format!("{addr}/24"), "dev", dev])?;
                run_ns(&n, "ip", &["link", "set", dev, "up"])?;
            }
        }
        for rn in [&e, &i] {
            // One 5-tuple hash, the same seed on both routers: both directions of a flow take
            // the same path (Linux orders the addresses and ports before hashing). Policy 3 with
            // the five fields, not policy 1: policy 1 takes the hash a local socket put on the
            // packet when there is one (the server's replies: a random per-connection value), so
            // replies would pick paths at random.
            run_ns(
                rn,
                "sysctl",
                &[
                    "-qw",
                    "net.ipv4.ip_forward=1",
                    "net.ipv4.fib_multipath_hash_policy=3",
                    "net.ipv4.fib_multipath_hash_fields=0x0037",
                ],
            )?;
            let _ = run_ns(rn, "sysctl", &["-qw", "net.ipv4.fib_multipath_hash_seed=24117"]);
        }
        Ok(())
    }

    /// BIRD's configuration for the edge (`edge`) or the inner router.
    fn bird_conf(&self, edge: bool) -> String {
        let (id, local_as, peer_as, me, peer, export) = if edge {
            ("198.18.11.1", 64500, 64501, 1, 2, "net ~ [198.18.11.0/24, 198.18.12.0/24, 198.19.0.0/16]")
        } else {
            ("198.18.30.1", 64501, 64500, 2, 1, "net = 198.18.30.0/24")
        };
        let mut c = format!(
            "# scrubber lab --boxes: the {} router\n\
             router id {id};\n\
             log stderr {{ info, remote, warning, error, auth, fatal, bug }};\n\
             protocol device {{ scan time 1; }}\n\
             protocol direct {{ ipv4; interface \"{}\"; }}\n",
            if edge { "edge" } else { "inner" },
            if edge { "cl\", \"at" } else { "sv" }
        );
        if edge {
            c.push_str("protocol static { ipv4; route 198.19.0.0/16 via 198.18.12.2; }\n");
        }
        c.push_str(
            "protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; merge paths on; }\n\
             protocol bfd { interface \"p*\" { min rx interval 100 ms; min tx interval 100 ms; idle tx interval 100 ms; multiplier 3; }; }\n",
        );
        c.push_str(&format!(
            "template bgp uplink {{ local as {local_as}; bfd on; hold time 9; connect delay time 1; connect retry time 1; \
             error wait time 1, 4; ipv4 {{ import all; export where {export}; next hop self; }}; }}\n"
        ));
        for b in 0..self.boxes {
            c.push_str(&format!(
                "protocol bgp p{b} from uplink {{ neighbor 198.18.{n}.{peer} as {peer_as}; source address 198.18.{n}.{me}; }}\n",
                n = 20 + b
            ));
        }
        if edge && self.divert {
            // Routes from the diversion speaker with the blackhole community (RFC 7999) become
            // blackholes; nothing else is taken from it, nothing is sent to it.
            c.push_str(
                "protocol bgp divert { local 198.18.40.1 as 64500; neighbor 198.18.40.2 as 64510; connect delay time 1; \
                 connect retry time 1; \
                 ipv4 { import filter { if (65535, 666) ~ bgp_community then { dest = RTD_BLACKHOLE; accept; } reject; }; \
                 export none; }; }\n",
            );
        }
        c
    }

    /// The rule file every box runs.
    pub fn rules(&self) -> String {
        format!(
            "# scrubber lab --boxes: one box of the fleet. The SYN proxy for the servers; between the\n\
             # routers' addresses on the box's path exactly BGP and BFD.\n\
             cookie-secret \"cookie.secret\"\n\
             set web-servers = {PROTECTED}\n\
             set routers = 198.18.20.0/21\n\
             service web\n  dst web-servers\n  ports 80\n  syn proxy\nend\n\
             allow from routers to routers proto tcp port 179\n\
             allow from routers to routers proto tcp sport 179\n\
             allow from routers to routers proto udp port 3784\n\
             deny to routers\n\
             attack-threshold 5kpps\n\
             attack-quiet 3s\n"
        )
    }

    fn start(&mut self) -> Result<(), LabError> {
        let secret = sh(&self.exe, &["gen-secret"])?;
        let p = self.write("cookie.secret", &secret)?;
        let _ = std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600));
        self.write("fleet.rules", &self.rules())?;
        let ns_s = self.ns("s");
        let server = NsChild::spawn(Some(&ns_s), &self.exe, &args(&["peer", "serve", "--listen", "0.0.0.0:80"]), true)?;
        self.daemons.push(server);
        self.counters = Some(ServerCounters::install(&ns_s)?);
        if self.divert {
            let conf = self.write(
                "gobgpd.toml",
                "[global.config]\n  as = 64510\n  router-id = \"198.18.40.2\"\n\
                 [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"198.18.40.1\"\n    peer-as = 64500\n",
            )?;
            let argv =
                args(&["-f", &conf.to_string_lossy(), "--api-hosts", "198.18.40.2:50051", "-p", "--pprof-disable"]);
            self.daemons.push(NsChild::spawn(Some(&self.ns("x")), "gobgpd", &argv, true)?);
            let hook = self.write("divert.sh", DIVERT_HOOK)?;
            let _ = hook;
        }
        for (role, edge) in [("e", true), ("i", false)] {
            let conf = self.write(&format!("bird-{role}.conf"), &self.bird_conf(edge))?;
            let ctl = self.dir.join(format!("bird-{role}.ctl"));
            let argv = args(&["-f", "-c", &conf.to_string_lossy(), "-s", &ctl.to_string_lossy()]);
            self.daemons.push(NsChild::spawn(Some(&self.ns(role)), "bird", &argv, true)?);
        }
        for b in 0..self.boxes {
            let s = self.start_box(b)?;
            self.scrubbers.push(Some(s));
        }
        self.wait_paths(self.boxes, Duration::from_secs(40)).map(|_| ()).map_err(|n| {
            LabError::Invalid(format!(
                "the edge router has {n} of {} paths after 40 s: BGP/BFD through the boxes did not come up (see {})",
                self.boxes,
                self.dir.display()
            ))
        })
    }

    /// Start `scrubber run` in box `b`.
    pub fn start_box(&self, b: usize) -> Result<NsChild, LabError> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let rules = self.dir.join("fleet.rules");
        let argv = args(&[
            "run",
            "--ext",
            "ext",
            "--int",
            "int",
            "--cores",
            &(b % cores).to_string(),
            "--socket",
            &self.socket(b),
            "--metrics",
            "off",
            "--rules",
            &rules.to_string_lossy(),
        ]);
        let mut argv = argv;
        if self.divert {
            let hook = self.dir.join("divert.sh");
            argv.extend(args(&[
                "--on-event",
                &format!("sh {} 198.18.40.2:50051 web=198.18.30.10/32", hook.to_string_lossy()),
            ]));
        }
        if self.sync {
            let peers: Vec<String> =
                (0..self.boxes).filter(|&p| p != b).map(|p| format!("{}:{SYNC_PORT}", mgmt_addr(p))).collect();
            argv.extend(args(&[
                "--sync-listen",
                &format!("{}:{SYNC_PORT}", mgmt_addr(b)),
                "--sync-peer",
                &peers.join(","),
            ]));
        }
        NsChild::spawn(Some(&self.ns(&format!("b{b}"))), &self.exe, &argv, true)
    }

    /// Paths in the edge router's route to the protected prefix.
    pub fn paths(&self) -> usize {
        let out = run_ns(&self.ns("e"), "ip", &["route", "show", PROTECTED]).unwrap_or_default();
        let hops = out.matches("nexthop").count();
        if hops > 0 {
            hops
        } else {
            usize::from(out.contains(" via "))
        }
    }

    /// Wait until the edge router has `n` paths: the time it took, or `Err(paths)` at the limit.
    pub fn wait_paths(&self, n: usize, limit: Duration) -> Result<Duration, usize> {
        let t = Instant::now();
        loop {
            let p = self.paths();
            if p == n {
                return Ok(t.elapsed());
            }
            if t.elapsed() > limit {
                return Err(p);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL the scrubber of box `b` (no clean-up of its own: a crash).
    pub fn kill_box(&mut self, b: usize) {
        if let Some(mut c) = self.scrubbers.get_mut(b).and_then(Option::take) {
            c.stop_with("KILL", Duration::from_secs(2));
        }
    }

    /// Frames forwarded inbound by box `b` so far.
    pub fn forwarded(&self, b: usize) -> u64 {
        let out = run_ns(&self.ns(&format!("b{b}")), &self.exe, &["stats", "--socket", &self.socket(b), "--json"]);
        out.ok()
            .and_then(|o| serde_json::from_str::<serde_json::Value>(o.trim()).ok())
            .and_then(|v| v.pointer("/workers/0/counters/forwarded_inbound").and_then(|x| x.as_u64()))
            .unwrap_or(0)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in self.scrubbers.iter_mut().flatten() {
            c.stop_with("INT", Duration::from_secs(3));
        }
        for d in &mut self.daemons {
            d.stop_with("TERM", Duration::from_secs(2));
        }
        self.counters = None;
        for n in self.namespaces.iter().rev() {
            if let Ok(pids) = sh("ip", &["netns", "pids", n]) {
                for p in pids.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
                    super::exec::signal_pid(p, "KILL");
                }
            }
            let _ = sh("ip", &["netns", "del", n]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The diversion hook the lab's boxes run (`examples/hooks/gobgp-blackhole.sh`).
pub const DIVERT_HOOK: &str = include_str!("../../../../examples/hooks/gobgp-blackhole.sh");

/// The sync port of every box.
pub const SYNC_PORT: u16 = 7470;

/// Box `b`'s address on the management network.
fn mgmt_addr(b: usize) -> String {
    format!("198.18.40.{}", 10 + b)
}

/// Session-sync bytes box `b` has sent (its stats socket).
fn sync_bytes(f: &Fleet, b: usize) -> u64 {
    let out = run_ns(&f.ns(&format!("b{b}")), &f.exe, &["stats", "--socket", &f.socket(b), "--json"]);
    out.ok()
        .and_then(|o| serde_json::from_str::<serde_json::Value>(o.trim()).ok())
        .and_then(|v| v.pointer("/sync/sync_bytes_sent").and_then(|x| x.as_u64()))
        .unwrap_or(0)
}

/// Both routers' routes towards the other side, as `ip route` shows them.
fn say_routes(f: &Fleet, say: &mut dyn FnMut(&str)) {
    for (r, pfx) in [("e", PROTECTED), ("i", "198.18.11.0/24")] {
        let route = run_ns(&f.ns(r), "ip", &["route", "show", pfx]).unwrap_or_default();
        say(&format!(
            "    {} router: {}",
            if r == "e" { "edge" } else { "inner" },
            route.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
}

/// Session-streaming counter `name` of box `b` (e.g. `sync_sessions_imported`), all workers.
fn sync_counter(f: &Fleet, exe: &str, b: usize, name: &str) -> u64 {
    let out = run_ns(&f.ns(&format!("b{b}")), exe, &["stats", "--socket", &f.socket(b), "--json"]).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
    v["workers"].as_array().map(|w| w.iter().filter_map(|x| x["sync"][name].as_u64()).sum()).unwrap_or(0)
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Run the failover measurement on a fresh fleet; `say` gets progress lines.
pub fn run_failover(o: &FleetOptions, exe: &str, say: &mut dyn FnMut(&str)) -> Result<FleetReport, LabError> {
    o.validate()?;
    super::preflight(&["ip", "ethtool", "nft", "trafgen", "kill", "timeout", "sysctl", "bird"])?;
    let tag = super::topo::Topology::new_tag_with("fl");
    say(&format!(
        "==> building the fleet {tag}: {} boxes between an edge and an inner router (BIRD 2, BGP + BFD, ECMP)",
        o.boxes
    ));
    let mut f = Fleet::create(&tag, o.boxes, exe, o.sync, false)?;
    say(&format!("==> the edge router has {} paths to {PROTECTED}", f.paths()));
    say_routes(&f, say);
    let to = SocketAddr::new(IpAddr::V4(SERVER), 80);
    let (ns_c, ns_a) = (f.ns("c"), f.ns("a"));
    // Long-lived connections: paced downloads that last the whole run.
    let mbit = 4u32;
    let bytes = (u64::from(mbit) * 1_000_000 / 8 * (o.seconds + 2)).to_string();
    let mut transfers = Vec::new();
    for _ in 0..o.established {
        let argv = args(&[
            "peer",
            "transfer",
            "--to",
            &to.to_string(),
            "--bytes",
            &bytes,
            "--dir",
            "down",
            "--idle-ms",
            "4000",
            "--rate-mbit",
            &mbit.to_string(),
        ]);
        transfers.push(NsChild::spawn(Some(&ns_c), exe, &argv, true)?);
    }
    // New connections, with their progress by second.
    let count = o.conn_rate * o.seconds;
    let argv = args(&[
        "peer",
        "connect",
        "--to",
        &to.to_string(),
        "--count",
        &count.to_string(),
        "--rate",
        &o.conn_rate.to_string(),
        "--parallel",
        "8",
        "--timeout-ms",
        "1000",
        "--progress",
    ]);
    let prober = NsChild::spawn(Some(&ns_c), exe, &argv, true)?;
    let failed_at: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let fa = Arc::clone(&failed_at);
        prober.on_stderr_line(move |l| {
            if let Some(v) =
                l.strip_prefix("progress ").and_then(|r| r.split_whitespace().find_map(|w| w.strip_prefix("failed=")))
            {
                if let Ok(n) = v.parse::<u64>() {
                    fa.lock().unwrap_or_else(|e| e.into_inner()).push((Instant::now(), n));
                }
            }
        });
    }
    // The flood: spoofed ACK-PSH towards the server, through the edge router.
    let at_mac = super::topo::mac_of(&f.ns("e"), "at")?;
    let lan_mac = super::topo::mac_of(&ns_a, "lan")?;
    let fl = flood::start_trafgen(
        &ns_a,
        &Trafgen {
            kind: Kind::AckPsh,
            target: IpAddr::V4(SERVER),
            port: 80,
            dst_mac: at_mac,
            src_mac: lan_mac,
            vlan: None,
            count: o.flood_pps * o.seconds,
            rate_pps: Some(o.flood_pps),
            limit: Duration::from_secs(o.seconds + 2),
            dev: "lan".into(),
        },
    )?;
    let before = f.counters.as_ref().map(|c| c.read()).transpose()?.unwrap_or_default();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(o.seconds * 1000 / 3));
    let per_box_forwarded: Vec<u64> = (0..o.boxes).map(|b| f.forwarded(b)).collect();
    let sync_t0 = (Instant::now(), sync_bytes(&f, 1));
    say(&format!(
        "==> killing box 0 (SIGKILL) at t={:.1}s; traffic by box so far: {per_box_forwarded:?}",
        t0.elapsed().as_secs_f64()
    ));
    let kill_at = Instant::now();
    f.kill_box(0);
    let failover = f.wait_paths(o.boxes - 1, Duration::from_secs(20)).map_err(|n| {
        LabError::Invalid(format!("the edge router still has {n} paths 20 s after box 0 died: BFD did not notice"))
    })?;
    let withdrawn_at = kill_at + failover;
    say(&format!("==> path withdrawn {} ms after the kill", failover.as_millis()));
    say_routes(&f, say);
    // After two thirds of the run the box comes back, while the traffic goes on.
    std::thread::sleep((t0 + Duration::from_millis(o.seconds * 2000 / 3)).saturating_duration_since(Instant::now()));
    say(&format!("==> restarting box 0 at t={:.1}s", t0.elapsed().as_secs_f64()));
    let s = f.start_box(0)?;
    f.scrubbers[0] = Some(s);
    let rejoin = f
        .wait_paths(o.boxes, Duration::from_secs(60))
        .map_err(|n| LabError::Invalid(format!("box 0 did not rejoin: {n} paths 60 s after its restart")))?;
    say(&format!("==> box 0 has its path again {} ms after its restart", rejoin.as_millis()));
    // The rest of the run, then every client's report.
    let end = t0 + Duration::from_secs(o.seconds);
    if Instant::now() + Duration::from_secs(1) > end {
        say("    (the rejoin took longer than the run: the clients go on for a second more)");
    }
    std::thread::sleep((end.max(Instant::now() + Duration::from_secs(1))).saturating_duration_since(Instant::now()));
    let sync_rate = (sync_bytes(&f, 1).saturating_sub(sync_t0.1)) as f64 / sync_t0.0.elapsed().as_secs_f64();
    let flood_res = fl.finish()?;
    let mut prober = prober;
    let out = prober.finish(Duration::from_secs(30))?;
    let conn: ConnectReport = serde_json::from_str(out.stdout.trim()).map_err(|e| LabError::Parse {
        cmd: "scrubber peer connect".into(),
        detail: format!("{e}: {}", out.stderr.trim()),
    })?;
    let mut survived = 0;
    for mut t in transfers {
        let out = t.finish(Duration::from_secs(o.seconds + 30))?;
        if serde_json::from_str::<TransferReport>(out.stdout.trim()).is_ok_and(|r| r.hash_ok && r.error.is_none()) {
            survived += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let reached = f.counters.as_ref().map(|c| c.read()).transpose()?.unwrap_or_default().since(&before);
    // Failures counted from the withdrawal on, once the attempts begun before it (1 s timeout)
    // have ended, at the granularity of the prober's once-a-second progress lines.
    let fa = failed_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let base =
        fa.iter().filter(|(t, _)| *t <= withdrawn_at + Duration::from_secs(2)).map(|(_, n)| *n).max().unwrap_or(0);
    let after = conn.failed.saturating_sub(base);
    for b in 1..o.boxes {
        let out =
            run_ns(&f.ns(&format!("b{b}")), exe, &["stats", "--socket", &f.socket(b), "--json"]).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
        let c = v.pointer("/workers/0/counters").cloned().unwrap_or_default();
        let mut drops: Vec<(String, u64)> = c["dropped"]
            .as_object()
            .map(|m| m.iter().filter_map(|(k, n)| n.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), n))).collect())
            .unwrap_or_default();
        drops.sort_by_key(|d| std::cmp::Reverse(d.1));
        drops.truncate(4);
        let k = |n: &str| c[n].as_u64().unwrap_or(0);
        say(&format!(
            "    box {b}: cookies sent {} validated {}, backend SYN-ACKs {}, outbound without session {}, imported {}, drops {drops:?}",
            k("cookies_sent"),
            k("cookies_validated"),
            k("backend_synacks_consumed"),
            k("outbound_no_session"),
            v.pointer("/workers/0/sync/sync_sessions_imported").and_then(|x| x.as_u64()).unwrap_or(0)
        ));
    }
    let rejoin_imported = sync_counter(&f, exe, 0, "sync_sessions_imported");
    let walked: u64 = (1..o.boxes).map(|b| sync_counter(&f, exe, b, "sync_records_dumped")).sum();
    say(&format!(
        "    box 0 (restarted): imported {rejoin_imported} sessions; its peers' table walks sent {walked} open sessions"
    ));
    let established = o.established as u64;
    Ok(FleetReport {
        boxes: o.boxes,
        failover_ms: failover.as_millis() as u64,
        rejoin_ms: rejoin.as_millis() as u64,
        new_connections: conn.ok + conn.failed,
        new_connections_failed: conn.failed,
        new_connections_failed_after_failover: after,
        flood_frames_sent: flood_res.sent,
        flood_frames_at_server: reached.get(Source::Spoof4, Class::All),
        established,
        established_survived: survived,
        established_survived_pct: if established > 0 { (survived as f64) * 100.0 / established as f64 } else { 0.0 },
        per_box_forwarded,
        sync: o.sync,
        rejoin_sessions_imported: rejoin_imported,
        sessions_walked: walked,
        sync_bytes_per_s: (sync_rate * 10.0).round() / 10.0,
        conn_rate: o.conn_rate,
    })
}

/// `scrubber lab --boxes N --divert`: a spoofed flood over the attack threshold; the boxes'
/// attack events run the GoBGP hook, which announces a blackhole route for the attacked server to
/// the edge router while the attack lasts. Measures when the route appears and goes.
pub fn run_divert(o: &FleetOptions, exe: &str, say: &mut dyn FnMut(&str)) -> Result<DivertReport, LabError> {
    o.validate()?;
    super::preflight(&[
        "ip", "ethtool", "nft", "trafgen", "kill", "timeout", "sysctl", "bird", "birdc", "gobgpd", "gobgp",
    ])?;
    let tag = super::topo::Topology::new_tag_with("fd");
    say(&format!("==> building the fleet {tag}: {} boxes, and a GoBGP speaker the attack events drive", o.boxes));
    let f = Fleet::create(&tag, o.boxes, exe, o.sync, true)?;
    // The speaker's session with the edge router is up before the attack begins.
    let ctl = f.dir.join("bird-e.ctl").to_string_lossy().into_owned();
    let up = Instant::now();
    while !run_ns(&f.ns("e"), "birdc", &["-s", &ctl, "show", "protocols", "divert"])
        .unwrap_or_default()
        .contains("Established")
    {
        if up.elapsed() > Duration::from_secs(20) {
            return Err(LabError::Invalid(format!(
                "the edge router's BGP session with the GoBGP speaker is not up after 20 s (files in {})",
                f.dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    say(&format!("==> the GoBGP speaker's session with the edge router is up ({} ms)", up.elapsed().as_millis()));
    let route = || run_ns(&f.ns("e"), "ip", &["route", "show", "198.18.30.10/32"]).unwrap_or_default();
    let ns_a = f.ns("a");
    let flood_secs = o.seconds.max(4);
    let fl = flood::start_trafgen(
        &ns_a,
        &Trafgen {
            kind: Kind::AckPsh,
            target: IpAddr::V4(SERVER),
            port: 80,
            dst_mac: super::topo::mac_of(&f.ns("e"), "at")?,
            src_mac: super::topo::mac_of(&ns_a, "lan")?,
            vlan: None,
            count: o.flood_pps * flood_secs,
            rate_pps: Some(o.flood_pps),
            limit: Duration::from_secs(flood_secs + 2),
            dev: "lan".into(),
        },
    )?;
    let t0 = Instant::now();
    say(&format!("==> spoofed ACK-PSH flood at {} pps for {flood_secs} s towards {SERVER}", o.flood_pps));
    let mut held = String::new();
    while t0.elapsed() < Duration::from_secs(flood_secs + 5) {
        let r = route();
        if r.contains("blackhole") {
            held = r.trim().to_string();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let announced = t0.elapsed();
    if held.is_empty() {
        return Err(LabError::Invalid(format!(
            "no blackhole route for {SERVER} at the edge router during the flood (files in {})",
            f.dir.display()
        )));
    }
    say(&format!("==> after {} ms the edge router has: {held}", announced.as_millis()));
    while route().contains("blackhole") {
        if t0.elapsed() > Duration::from_secs(flood_secs + 30) {
            return Err(LabError::Invalid("the blackhole route stayed 30 s after the flood".into()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let withdrawn = t0.elapsed();
    say(&format!("==> {} ms after the flood began the route is gone", withdrawn.as_millis()));
    let flood = fl.finish()?;
    Ok(DivertReport {
        announced_ms: announced.as_millis() as u64,
        withdrawn_ms: withdrawn.as_millis() as u64,
        flood_ms: flood.elapsed.as_millis() as u64,
        route: held,
    })
}
