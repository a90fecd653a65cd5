//! The lab topology: five network namespaces, one L2 segment through a middle box.
//!
//! ```text
//!  {tag}c client   lan ─┐  (switch ports swc, swa, swm)
//!                       ├─ {tag}w switch (bridge br0) ── m ──ext─ {tag}m middle ─int── lan {tag}s server
//!  {tag}a attacker lan ─┘
//! ```
//!
//! * Client 198.18.0.1 / 2001:2::1, attacker 198.18.0.66 / 2001:2::66, server 198.18.0.10 /
//!   2001:2::10, all in 198.18.0.0/24 and 2001:2::/64. The switch and the middle have no
//!   addresses (IPv6 disabled there, so they send nothing of their own).
//! * [`Middle::Bridge`]: a kernel bridge joins `ext` and `int` (a stand-in, and the kernel
//!   baseline). [`Middle::Open`]: `ext` and `int` are up and joined by nothing: the scrubber
//!   attaches there.
//! * With `vlan: Some(id)` every frame the client, attacker and server send is 802.1Q-tagged and
//!   every frame they receive untagged, so every frame through the middle is tagged. This is done
//!   by two tc eBPF classifiers on `lan` ([`super::tcbpf`]), not by `lan.ID` VLAN devices: the
//!   kernel this project's CI runs on has no `CONFIG_VLAN_8021Q`. TX VLAN offload is off on
//!   every veth, so the tag is inside the frame on the wire, where XDP sees it.
//! * Checksum offload is off on the kernel-stack veths (`ethtool -K lan tx off`), and GRO off on
//!   the server (its nftables counters count frames, not merged super-packets). No static
//!   neighbours: ARP and ND cross the middle like any frame. MTU stays 1500.
//! * The server routes 198.19.0.0/16 and 2001:2:0:ffff::/64 (the spoofed flood sources) on-link on
//!   its LAN interface, and nothing else.
//!
//! Veths are created directly inside their namespaces, so no interface name ever appears in the
//! root namespace. Dropping the [`Topology`] kills every process left in its namespaces and
//! deletes them (also when a test panics).

use super::exec::{run, run_ns, signal_pid};
use super::{tcbpf, LabError};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Client IPv4 address.
pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Client IPv6 address.
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
/// Attacker IPv4 address (its own; floods spoof other sources).
pub const ATTACKER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 66);
/// Attacker IPv6 address.
pub const ATTACKER6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x66);
/// Server IPv4 address.
pub const SERVER4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
/// Server IPv6 address.
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10);
/// Spoofed IPv4 flood sources: 198.19.0.0/16.
pub const SPOOF4_NET: &str = "198.19.0.0/16";
/// Spoofed IPv6 flood sources: 2001:2:0:ffff::/64.
pub const SPOOF6_NET: &str = "2001:2:0:ffff::/64";

/// What joins `ext` and `int` in the middle namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Middle {
    /// A kernel bridge joins them (a stand-in for the scrubber, and the kernel baseline).
    Bridge,
    /// Nothing joins them: the scrubber attaches to `ext` and `int`.
    Open,
}

/// The roles, one namespace each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Legitimate client.
    Client,
    /// Attacker (flood tools run here).
    Attacker,
    /// The L2 switch joining client, attacker and the middle's ext link.
    Switch,
    /// The middle box (interfaces `ext` and `int`).
    Middle,
    /// The protected server.
    Server,
}

impl Role {
    /// Every role, in creation order.
    pub const ALL: [Role; 5] = [Role::Client, Role::Attacker, Role::Switch, Role::Middle, Role::Server];

    fn suffix(self) -> char {
        match self {
            Role::Client => 'c',
            Role::Attacker => 'a',
            Role::Switch => 'w',
            Role::Middle => 'm',
            Role::Server => 's',
        }
    }
}

/// How to build a [`Topology`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopoOptions {
    /// What joins ext and int.
    pub middle: Middle,
    /// Put client, attacker and server on 802.1Q subinterfaces with this VLAN id.
    pub vlan: Option<u16>,
    /// Rx and tx queues of the middle's `ext` and `int` veths (and of their peers), for a
    /// scrubber with one worker per queue. The sending veth picks a queue per flow from the
    /// packet's hash (a locally opened socket's is random per connection), so the two directions
    /// of a connection may arrive on different queues: the hand-off path's case.
    pub queues: u16,
}

impl Default for TopoOptions {
    fn default() -> Self {
        TopoOptions { middle: Middle::Open, vlan: None, queues: 1 }
    }
}

/// The lab's namespaces and links. Dropping it removes everything (see the module doc).
#[derive(Debug)]
pub struct Topology {
    tag: String,
    opts: TopoOptions,
    created: Vec<String>,
}

static NEXT_TAG: AtomicU32 = AtomicU32::new(0);

/// Longest tag accepted: namespace names stay short and readable.
pub const MAX_TAG_LEN: usize = 12;

impl Topology {
    /// A fresh tag unique within this process: `sl<pid % 1000><n>` (prefix `sl`).
    pub fn new_tag() -> String {
        Self::new_tag_with("sl")
    }

    /// A fresh tag with another prefix: `<prefix><pid % 1000><n>`.
    pub fn new_tag_with(prefix: &str) -> String {
        let n = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{}x{n}", std::process::id() % 1000)
    }

    /// Build the topology. On error everything created so far is removed.
    pub fn create(tag: &str, opts: TopoOptions) -> Result<Topology, LabError> {
        if tag.is_empty()
            || tag.len() > MAX_TAG_LEN
            || !tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'x')
        {
            return Err(LabError::Invalid(format!(
                "bad lab tag '{tag}': use 1-{MAX_TAG_LEN} characters from a-z and 0-9"
            )));
        }
        if let Some(v) = opts.vlan {
            if !(1..=4094).contains(&v) {
                return Err(LabError::Invalid(format!("VLAN id {v} out of range: use 1-4094")));
            }
        }
        let mut t = Topology { tag: tag.to_string(), opts, created: Vec::new() };
        t.build()?;
        Ok(t)
    }

    fn build(&mut self) -> Result<(), LabError> {
        for role in Role::ALL {
            let ns = self.ns(role);
            if netns_exists(&ns) {
                return Err(LabError::Invalid(format!(
                    "namespace {ns} already exists: remove it (ip netns del {ns}) or use \
                     `Topology::cleanup_stale(\"{}\")`",
                    self.tag
                )));
            }
            run("ip", &["netns", "add", &ns])?;
            self.created.push(ns.clone());
            run_ns(&ns, "ip", &["link", "set", "lo", "up"])?;
            if matches!(role, Role::Switch | Role::Middle) {
                // No addresses there, not even link-local ones: the middle sends nothing itself.
                for key in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
                    run_ns(&ns, "sysctl", &["-qw", key])?;
                }
            } else {
                for key in [
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.all.accept_ra=0",
                    "net.ipv6.conf.default.accept_ra=0",
                ] {
                    run_ns(&ns, "sysctl", &["-qw", key])?;
                }
            }
        }
        let (c, a, w, m, s) = (
            self.ns(Role::Client),
            self.ns(Role::Attacker),
            self.ns(Role::Switch),
            self.ns(Role::Middle),
            self.ns(Role::Server),
        );
        // Links, created inside their namespaces: (ns1, if1, ns2, if2).
        let links = [(&c, "lan", &w, "swc"), (&a, "lan", &w, "swa"), (&m, "ext", &w, "swm"), (&m, "int", &s, "lan")];
        let q = self.opts.queues.max(1).to_string();
        for (n1, i1, n2, i2) in links {
            let mut argv = vec!["link", "add", i1, "netns", n1];
            if i1 == "ext" || i1 == "int" {
                argv.extend(["numtxqueues", &q, "numrxqueues", &q]);
            }
            argv.extend(["type", "veth", "peer", "name", i2, "netns", n2]);
            if i1 == "ext" || i1 == "int" {
                argv.extend(["numtxqueues", &q, "numrxqueues", &q]);
            }
            run("ip", &argv)?;
        }
        // The switch.
        run_ns(&w, "ip", &["link", "add", "br0", "type", "bridge", "stp_state", "0", "mcast_snooping", "0"])?;
        for port in ["swc", "swa", "swm"] {
            run_ns(&w, "ip", &["link", "set", port, "master", "br0", "up"])?;
        }
        run_ns(&w, "ip", &["link", "set", "br0", "up"])?;
        // The middle.
        for dev in ["ext", "int"] {
            run_ns(&m, "ip", &["link", "set", dev, "up"])?;
        }
        if self.opts.middle == Middle::Bridge {
            run_ns(&m, "ip", &["link", "add", "br0", "type", "bridge", "stp_state", "0", "mcast_snooping", "0"])?;
            for port in ["ext", "int"] {
                run_ns(&m, "ip", &["link", "set", port, "master", "br0"])?;
            }
            run_ns(&m, "ip", &["link", "set", "br0", "up"])?;
        }
        // Tags travel inside the frames (the middle box's XDP program must see them): no tx VLAN
        // offload on any veth.
        for (ns, dev) in [(&w, "swc"), (&w, "swa"), (&w, "swm"), (&m, "ext"), (&m, "int")] {
            run_ns(ns, "ethtool", &["-K", dev, "txvlan", "off"])?;
        }
        // The hosts.
        let hosts = [(&c, CLIENT4, CLIENT6), (&a, ATTACKER4, ATTACKER6), (&s, SERVER4, SERVER6)];
        for (ns, v4, v6) in hosts {
            // Kernel-stack veths send partial checksums unless tx offload is off; GRO off so that
            // what the server counts is frames as they crossed the wire.
            run_ns(ns, "ethtool", &["-K", "lan", "tx", "off", "txvlan", "off", "gro", "off", "tso", "off"])?;
            if let Some(v) = self.opts.vlan {
                self.tag_host(ns, v)?;
            }
            run_ns(ns, "ip", &["addr", "add", &format!("{v4}/24"), "dev", "lan"])?;
            run_ns(ns, "ip", &["-6", "addr", "add", &format!("{v6}/64"), "dev", "lan", "nodad"])?;
            run_ns(ns, "ip", &["link", "set", "lan", "up"])?;
        }
        let lan = self.lan_if();
        run_ns(&s, "ip", &["route", "add", SPOOF4_NET, "dev", &lan])?;
        run_ns(&s, "ip", &["-6", "route", "add", SPOOF6_NET, "dev", &lan])?;
        Ok(())
    }

    /// Tag every frame `lan` sends in `ns` with VLAN `vid` and untag what it receives (tc eBPF
    /// classifiers, see [`super::tcbpf`]: this works without the kernel's 802.1Q module).
    fn tag_host(&self, ns: &str, vid: u16) -> Result<(), LabError> {
        let dir = std::env::temp_dir();
        let push = dir.join(format!("scrubber-lab-{ns}-push.o"));
        let pop = dir.join(format!("scrubber-lab-{ns}-pop.o"));
        let write = |p: &std::path::Path, code: Vec<u8>| {
            std::fs::write(p, tcbpf::elf_object(&code))
                .map_err(|source| LabError::Io { what: format!("cannot write {}", p.display()), source })
        };
        write(&push, tcbpf::push_program(vid))?;
        write(&pop, tcbpf::pop_program())?;
        let (push_s, pop_s) = (push.to_string_lossy().into_owned(), pop.to_string_lossy().into_owned());
        let res = (|| {
            run_ns(ns, "tc", &["qdisc", "add", "dev", "lan", "clsact"])?;
            run_ns(
                ns,
                "tc",
                &["filter", "add", "dev", "lan", "egress", "bpf", "da", "obj", &push_s, "sec", tcbpf::SECTION],
            )?;
            run_ns(
                ns,
                "tc",
                &["filter", "add", "dev", "lan", "ingress", "bpf", "da", "obj", &pop_s, "sec", tcbpf::SECTION],
            )?;
            Ok(())
        })();
        let _ = std::fs::remove_file(&push);
        let _ = std::fs::remove_file(&pop);
        res
    }

    /// Delete the middle's `int` veth (and with it the server's `lan`) and create the pair
    /// again, configured as at creation (addresses, offloads, routes; no VLAN tagging): the
    /// "interface vanished and came back" fault, e.g. a driver reload.
    pub fn recreate_int(&self) -> Result<(), LabError> {
        let (m, s) = (self.ns(Role::Middle), self.ns(Role::Server));
        run_ns(&m, "ip", &["link", "del", "int"])?;
        let q = self.opts.queues.max(1).to_string();
        run(
            "ip",
            &[
                "link",
                "add",
                "int",
                "netns",
                &m,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                "lan",
                "netns",
                &s,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
            ],
        )?;
        run_ns(&m, "ethtool", &["-K", "int", "txvlan", "off"])?;
        run_ns(&m, "ip", &["link", "set", "int", "up"])?;
        run_ns(&s, "ethtool", &["-K", "lan", "tx", "off", "txvlan", "off", "gro", "off", "tso", "off"])?;
        run_ns(&s, "ip", &["addr", "add", &format!("{SERVER4}/24"), "dev", "lan"])?;
        run_ns(&s, "ip", &["-6", "addr", "add", &format!("{SERVER6}/64"), "dev", "lan", "nodad"])?;
        run_ns(&s, "ip", &["link", "set", "lan", "up"])?;
        run_ns(&s, "ip", &["route", "add", SPOOF4_NET, "dev", "lan"])?;
        run_ns(&s, "ip", &["-6", "route", "add", SPOOF6_NET, "dev", "lan"])?;
        Ok(())
    }

    /// The tag (namespace name prefix).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The options it was built with.
    pub fn options(&self) -> TopoOptions {
        self.opts
    }

    /// The namespace name of a role: `{tag}c`, `{tag}a`, `{tag}w`, `{tag}m`, `{tag}s`.
    pub fn ns(&self, role: Role) -> String {
        format!("{}{}", self.tag, role.suffix())
    }

    /// Every namespace this topology created.
    pub fn namespaces(&self) -> &[String] {
        &self.created
    }

    /// The addressed interface in client, attacker and server (`lan`, also with a VLAN: the tag
    /// is pushed and popped by tc on `lan` itself).
    pub fn lan_if(&self) -> String {
        "lan".to_string()
    }

    /// The MAC address of `dev` in the namespace of `role`.
    pub fn mac(&self, role: Role, dev: &str) -> Result<String, LabError> {
        mac_of(&self.ns(role), dev)
    }

    /// Set the range the kernel picks source ports from in a namespace (e.g. a narrow range on
    /// the client forces fast reuse of 4-tuples).
    pub fn set_port_range(&self, role: Role, lo: u16, hi: u16) -> Result<(), LabError> {
        if lo > hi || lo < 1024 {
            return Err(LabError::Invalid(format!("bad port range {lo}-{hi}: need 1024 <= lo <= hi")));
        }
        run_ns(&self.ns(role), "sysctl", &["-qw", &format!("net.ipv4.ip_local_port_range={lo} {hi}")])?;
        Ok(())
    }

    /// `ip -s link` packet counters of `dev` in the namespace of `role`: (rx packets, tx packets,
    /// rx dropped, tx dropped).
    pub fn link_counters(&self, role: Role, dev: &str) -> Result<LinkCounters, LabError> {
        let ns = self.ns(role);
        let read = |name: &str| -> Result<u64, LabError> {
            let p = format!("/sys/class/net/{dev}/statistics/{name}");
            let s = run_ns(&ns, "cat", &[&p])?;
            s.trim().parse().map_err(|_| LabError::Parse { cmd: format!("cat {p}"), detail: s })
        };
        Ok(LinkCounters {
            rx_packets: read("rx_packets")?,
            tx_packets: read("tx_packets")?,
            rx_dropped: read("rx_dropped")?,
            tx_dropped: read("tx_dropped")?,
        })
    }

    /// Remove the five namespaces a topology with this exact `tag` would use, if they exist
    /// (left by a crashed run that had the same tag). Returns the names removed.
    pub fn remove_leftovers(tag: &str) -> Vec<String> {
        let mut removed = Vec::new();
        for role in Role::ALL {
            let ns = format!("{tag}{}", role.suffix());
            if netns_exists(&ns) {
                remove_netns(&ns);
                removed.push(ns);
            }
        }
        removed
    }

    /// Remove every namespace whose name starts with `prefix` (left by a crashed run), after
    /// killing the processes inside them. Returns the names removed.
    pub fn cleanup_stale(prefix: &str) -> Result<Vec<String>, LabError> {
        if prefix.len() < 2 {
            return Err(LabError::Invalid(format!(
                "cleanup prefix '{prefix}' is too short: give at least 2 characters"
            )));
        }
        let mut removed = Vec::new();
        for ns in list_netns()? {
            if ns.starts_with(prefix) {
                remove_netns(&ns);
                removed.push(ns);
            }
        }
        Ok(removed)
    }
}

/// Interface packet counters (from sysfs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Received packets.
    pub rx_packets: u64,
    /// Transmitted packets.
    pub tx_packets: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Transmitted packets dropped.
    pub tx_dropped: u64,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            remove_netns(ns);
        }
    }
}

/// The MAC address of `dev` in namespace `ns`.
pub fn mac_of(ns: &str, dev: &str) -> Result<String, LabError> {
    let out = run_ns(ns, "cat", &[&format!("/sys/class/net/{dev}/address")])?;
    let mac = out.trim().to_string();
    if mac.len() != 17 {
        return Err(LabError::Parse { cmd: format!("cat /sys/class/net/{dev}/address"), detail: mac });
    }
    Ok(mac)
}

/// Names of all network namespaces (`ip netns list`).
pub fn list_netns() -> Result<Vec<String>, LabError> {
    let out = run("ip", &["netns", "list"])?;
    Ok(out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect())
}

/// True if a namespace of that name exists.
pub fn netns_exists(ns: &str) -> bool {
    std::path::Path::new("/run/netns").join(ns).exists()
}

/// Kill every process still inside `ns` (they are ours: the namespace is), then delete it.
fn remove_netns(ns: &str) {
    for round in 0..3 {
        let pids = run("ip", &["netns", "pids", ns]).unwrap_or_default();
        let pids: Vec<u32> = pids.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            signal_pid(pid, if round == 0 { "TERM" } else { "KILL" });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = run("ip", &["netns", "del", ns]);
}
