//! Bounded floods with real tools: hping3 (IPv4) and trafgen (netsniff-ng; IPv4 and IPv6,
//! optionally 802.1Q-tagged).
//!
//! Every flood is bounded in count *and* time: the tool gets a packet count, and it runs under
//! `timeout -s INT -k 2` in its own process group (interrupted at its time limit, so that it
//! still reports what it sent; killed 2 s later if it lingers; the group is killed when the
//! flood ends). Spoofed sources stay inside 198.19.0.0/16 (IPv4) and 2001:2:0:ffff::/64 (IPv6);
//! targets must be in 198.18.0.0/15 or 2001:2::/48. hping3's `--rand-source` (all of IPv4) is
//! never used: hping3 floods use one fixed spoofed source (its source port increments per
//! packet), trafgen floods draw the low bytes of the source at random for every frame
//! (`drnd()`), inside the range.

use super::exec::{find_in_path, NsChild};
use super::LabError;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The TCP flag combination of a flood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// ACK+PSH with a few bytes of payload, no handshake (the incident's flood).
    AckPsh,
    /// Bare ACK.
    Ack,
    /// SYN.
    Syn,
    /// RST.
    Rst,
    /// FIN (with ACK, as a closing peer would send it).
    Fin,
}

impl Kind {
    /// TCP flags byte.
    pub fn flags(self) -> u8 {
        match self {
            Kind::AckPsh => 0x18,
            Kind::Ack => 0x10,
            Kind::Syn => 0x02,
            Kind::Rst => 0x04,
            Kind::Fin => 0x11,
        }
    }

    fn hping_flags(self) -> &'static [&'static str] {
        match self {
            Kind::AckPsh => &["-A", "-P", "-d", "8"],
            Kind::Ack => &["-A"],
            Kind::Syn => &["-S"],
            Kind::Rst => &["-R"],
            Kind::Fin => &["-F", "-A"],
        }
    }

    fn payload(self) -> &'static [u8] {
        match self {
            Kind::AckPsh => b"GET /x\r\n",
            _ => b"",
        }
    }

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::AckPsh => "ACK-PSH",
            Kind::Ack => "ACK",
            Kind::Syn => "SYN",
            Kind::Rst => "RST",
            Kind::Fin => "FIN",
        }
    }
}

/// What a flood did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodResult {
    /// Frames the tool reports sent (or the count asked for, when it finished without saying).
    pub sent: u64,
    /// Whether it finished by itself (false: the time limit stopped it).
    pub completed: bool,
    /// How long it ran.
    pub elapsed: Duration,
}

/// True if `a` is inside 198.18.0.0/15 or 2001:2::/48 (the benchmarking ranges).
pub fn in_lab_range(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            let o = v.octets();
            o[0] == 198 && (o[1] & 0xfe) == 18
        }
        IpAddr::V6(v) => {
            let s = v.segments();
            s[..3] == [0x2001, 2, 0]
        }
    }
}

/// True if `a` may be used as a spoofed source: 198.19.0.0/16 or 2001:2:0:ffff::/64.
pub fn is_spoof_source(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.octets()[0] == 198 && v.octets()[1] == 19,
        IpAddr::V6(v) => v.segments()[..4] == [0x2001, 2, 0, 0xffff],
    }
}

/// An hping3 flood (IPv4 only).
#[derive(Clone, Debug)]
pub struct Hping {
    /// Flags.
    pub kind: Kind,
    /// Target address (198.18.0.0/15).
    pub target: Ipv4Addr,
    /// Target port.
    pub port: u16,
    /// The spoofed source (198.19.0.0/16).
    pub spoof: Ipv4Addr,
    /// Packets to send.
    pub count: u64,
    /// Gap between packets, microseconds (hping3 `-i uN`; 0 is raised to 1).
    pub interval_us: u64,
    /// Hard time limit.
    pub limit: Duration,
}

fn check_limits(count: u64, limit: Duration) -> Result<(), LabError> {
    if count == 0 || count > 50_000_000 {
        return Err(LabError::Invalid(format!("flood count {count}: use 1 to 50,000,000")));
    }
    if limit.is_zero() || limit > Duration::from_secs(600) {
        return Err(LabError::Invalid(format!("flood time limit {limit:?}: use 1 s to 600 s")));
    }
    Ok(())
}

/// The wrapper every flood runs under: at its time limit the tool is interrupted (SIGINT, on
/// which both hping3 and trafgen stop and print how many frames they sent), and killed 2 s
/// later if it is still running.
fn timeout_prefix(limit: Duration) -> Vec<String> {
    ["timeout", "-s", "INT", "-k", "2"].iter().map(|s| s.to_string()).chain([secs_arg(limit)]).collect()
}

/// The argument vector for an hping3 flood: `timeout -s INT -k 2 N hping3 …`.
pub fn hping_argv(h: &Hping) -> Result<Vec<String>, LabError> {
    check_limits(h.count, h.limit)?;
    if !is_spoof_source(IpAddr::V4(h.spoof)) {
        return Err(LabError::Invalid(format!("spoofed source {} is outside 198.19.0.0/16", h.spoof)));
    }
    if !in_lab_range(IpAddr::V4(h.target)) {
        return Err(LabError::Invalid(format!("flood target {} is outside 198.18.0.0/15", h.target)));
    }
    let mut v = timeout_prefix(h.limit);
    v.push("hping3".into());
    v.extend(["-q", "-n"].iter().map(|s| s.to_string()));
    v.extend(h.kind.hping_flags().iter().map(|s| s.to_string()));
    v.extend([
        "-a".to_string(),
        h.spoof.to_string(),
        "-p".to_string(),
        h.port.to_string(),
        "-s".to_string(),
        "10000".to_string(),
        "-c".to_string(),
        h.count.to_string(),
        "-i".to_string(),
        format!("u{}", h.interval_us.max(1)),
        h.target.to_string(),
    ]);
    Ok(v)
}

fn secs_arg(d: Duration) -> String {
    format!("{}", d.as_secs().max(1))
}

/// A running flood; [`Flood::finish`] waits for it; dropping it kills it.
#[derive(Debug)]
pub struct Flood {
    child: NsChild,
    asked: u64,
    started: Instant,
    limit: Duration,
    tool: &'static str,
}

impl Flood {
    /// Wait for the flood to end (it ends by its count or by its time limit) and report.
    pub fn finish(mut self) -> Result<FloodResult, LabError> {
        let out = self.child.finish(self.limit + Duration::from_secs(5))?;
        let elapsed = self.started.elapsed();
        let text = format!("{}\n{}", out.stdout, out.stderr);
        let parsed = match self.tool {
            "hping3" => parse_hping_sent(&text),
            _ => parse_trafgen_sent(&text),
        };
        // `timeout` exits 124 when it interrupted the tool at the time limit, 137 when it then
        // had to kill it; the tool's own count is still read (SIGINT makes it print it).
        let stopped_by_limit = matches!(out.status.code(), Some(124) | Some(137) | None);
        if !stopped_by_limit && parsed.is_none() && !out.status.success() {
            return Err(LabError::Command {
                cmd: self.child.cmd().to_string(),
                status: out.status.to_string(),
                stderr: out.stderr,
            });
        }
        Ok(FloodResult {
            sent: parsed.unwrap_or(if stopped_by_limit { 0 } else { self.asked }),
            completed: !stopped_by_limit,
            elapsed,
        })
    }

    /// Stop the flood now (kills its process group).
    pub fn stop(mut self) {
        self.child.terminate();
    }
}

/// Start an hping3 flood inside namespace `ns`.
pub fn start_hping(ns: &str, h: &Hping) -> Result<Flood, LabError> {
    if find_in_path("hping3").is_none() {
        return Err(LabError::MissingTool { tool: "hping3", package: "hping3" });
    }
    let argv = hping_argv(h)?;
    let (prog, args) = argv.split_first().ok_or_else(|| LabError::Invalid("empty argv".into()))?;
    let child = NsChild::spawn(Some(ns), prog, args, true)?;
    Ok(Flood { child, asked: h.count, started: Instant::now(), limit: h.limit, tool: "hping3" })
}

/// `N packets transmitted` from hping3's statistics.
pub fn parse_hping_sent(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (n, rest) = l.trim().split_once(' ')?;
        rest.starts_with("packets transmitted").then(|| n.parse().ok()).flatten()
    })
}

/// `N packets outgoing` from trafgen's summary.
pub fn parse_trafgen_sent(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (n, rest) = l.trim().split_once(' ')?;
        rest.trim_start().starts_with("packets outgoing").then(|| n.parse().ok()).flatten()
    })
}

/// A trafgen flood: raw frames with random spoofed sources inside the allowed range.
#[derive(Clone, Debug)]
pub struct Trafgen {
    /// Flags.
    pub kind: Kind,
    /// Destination address (its family selects IPv4 or IPv6).
    pub target: IpAddr,
    /// Destination port.
    pub port: u16,
    /// Destination MAC (the server's: the middle is a bump in the wire).
    pub dst_mac: String,
    /// Source MAC (the sending interface's).
    pub src_mac: String,
    /// 802.1Q tag to put on every frame.
    pub vlan: Option<u16>,
    /// Frames to send.
    pub count: u64,
    /// Frames per second (`None`: as fast as trafgen goes, ~1 Mpps from one core).
    pub rate_pps: Option<u64>,
    /// Hard time limit.
    pub limit: Duration,
    /// Sending device (the parent device, `lan`, also with a VLAN).
    pub dev: String,
}

fn mac_bytes(mac: &str) -> Result<[u8; 6], LabError> {
    let parts: Vec<u8> = mac.split(':').filter_map(|p| u8::from_str_radix(p, 16).ok()).collect();
    <[u8; 6]>::try_from(parts.as_slice()).map_err(|_| LabError::Invalid(format!("bad MAC address '{mac}'")))
}

fn hex_list(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "0x{b:02x}, ");
    }
}

/// The trafgen packet configuration for a flood (one packet template with runtime-random
/// fields and checksums recomputed per frame).
pub fn trafgen_config(t: &Trafgen) -> Result<String, LabError> {
    if !in_lab_range(t.target) {
        return Err(LabError::Invalid(format!("flood target {} is outside 198.18.0.0/15 and 2001:2::/48", t.target)));
    }
    let dst = mac_bytes(&t.dst_mac)?;
    let src = mac_bytes(&t.src_mac)?;
    let payload = t.kind.payload();
    let mut c = String::from(
        "/* generated by scrubber lab: spoofed sources only inside 198.19.0.0/16 or 2001:2:0:ffff::/64 */\n{\n  ",
    );
    hex_list(&mut c, &dst);
    hex_list(&mut c, &src);
    let mut l2 = 14usize;
    if let Some(v) = t.vlan {
        if !(1..=4094).contains(&v) {
            return Err(LabError::Invalid(format!("VLAN id {v} out of range: use 1-4094")));
        }
        let _ = write!(c, "c16(0x8100), c16({v}), ");
        l2 += 4;
    }
    let tcp_len = 20 + payload.len();
    match t.target {
        IpAddr::V4(d) => {
            c.push_str("c16(0x0800),\n  ");
            // Version/IHL, TOS, total length, id, DF, TTL, protocol, checksum.
            let _ = write!(
                c,
                "0x45, 0x00, c16({}), drnd(2), c16(0x4000), 64, 6, csumip({l2}, {}),\n  ",
                20 + tcp_len,
                l2 + 19
            );
            // Source 198.19.x.y: the two low bytes random per frame.
            c.push_str("198, 19, drnd(2),\n  ");
            hex_list(&mut c, &d.octets());
            c.push_str("\n  ");
        }
        IpAddr::V6(d) => {
            c.push_str("c16(0x86dd),\n  ");
            let _ = write!(c, "0x60, 0x00, 0x00, 0x00, c16({tcp_len}), 6, 64,\n  ");
            // Source 2001:2:0:ffff::/64: the low 64 bits random per frame.
            c.push_str("0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0xff, 0xff, drnd(8),\n  ");
            hex_list(&mut c, &d.octets());
            c.push_str("\n  ");
        }
    }
    let l4 = l2 + if t.target.is_ipv4() { 20 } else { 40 };
    let flags = t.kind.flags();
    // Source port (random), destination port, seq (random), ack (random when ACK is set).
    let _ = write!(c, "drnd(2), c16({}), drnd(4), ", t.port);
    if flags & 0x10 != 0 {
        c.push_str("drnd(4), ");
    } else {
        c.push_str("c32(0), ");
    }
    let csum = if t.target.is_ipv4() { format!("csumtcp({l2}, {l4})") } else { format!("csumtcp6({l2}, {l4})") };
    let _ = write!(c, "0x50, 0x{flags:02x}, c16(8192), {csum}, c16(0)");
    if !payload.is_empty() {
        c.push_str(",\n  ");
        hex_list(&mut c, payload);
        // Drop the trailing ", ".
        c.truncate(c.len() - 2);
    }
    c.push_str("\n}\n");
    // Defence in depth: the only source bytes written are the fixed prefixes above.
    debug_assert!(is_spoof_source(IpAddr::V4(Ipv4Addr::new(198, 19, 0, 0))));
    debug_assert!(is_spoof_source(IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0xffff, 0, 0, 0, 0))));
    Ok(c)
}

/// The argument vector for a trafgen flood reading its configuration from `conf`.
pub fn trafgen_argv(t: &Trafgen, conf: &str) -> Result<Vec<String>, LabError> {
    check_limits(t.count, t.limit)?;
    let mut v = timeout_prefix(t.limit);
    v.extend(
        ["trafgen", "--dev", &t.dev, "--conf", conf, "--cpus", "1", "-n", &t.count.to_string()]
            .iter()
            .map(|s| s.to_string()),
    );
    // Leave the system's socket memory and IRQ affinity alone; no CPU statistics.
    v.extend(["--no-sock-mem", "--notouch-irq", "--no-cpu-stats"].iter().map(|s| s.to_string()));
    if let Some(r) = t.rate_pps {
        if r == 0 {
            return Err(LabError::Invalid("flood rate 0 pps: give a positive rate".into()));
        }
        v.extend(["-b".to_string(), format!("{r}pps")]);
    }
    Ok(v)
}

/// Start a trafgen flood inside namespace `ns` (its config is written to a temporary file that
/// is removed when the flood ends).
pub fn start_trafgen(ns: &str, t: &Trafgen) -> Result<Flood, LabError> {
    if find_in_path("trafgen").is_none() {
        return Err(LabError::MissingTool { tool: "trafgen", package: "netsniff-ng" });
    }
    let conf = trafgen_config(t)?;
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("scrubber-lab-trafgen-{}-{ns}-{n}.cfg", std::process::id()));
    std::fs::write(&path, conf)
        .map_err(|source| LabError::Io { what: format!("cannot write {}", path.display()), source })?;
    let argv = trafgen_argv(t, &path.to_string_lossy())?;
    let (prog, args) = argv.split_first().ok_or_else(|| LabError::Invalid("empty argv".into()))?;
    let child = NsChild::spawn(Some(ns), prog, args, true);
    // trafgen reads its configuration at start; wait for that before removing the file.
    let cleanup = path.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        let _ = std::fs::remove_file(cleanup);
    });
    Ok(Flood { child: child?, asked: t.count, started: Instant::now(), limit: t.limit, tool: "trafgen" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tg(target: IpAddr, vlan: Option<u16>) -> Trafgen {
        Trafgen {
            kind: Kind::AckPsh,
            target,
            port: 80,
            dst_mac: "02:00:00:00:00:10".into(),
            src_mac: "02:00:00:00:00:66".into(),
            vlan,
            count: 1000,
            rate_pps: Some(10_000),
            limit: Duration::from_secs(5),
            dev: "lan".into(),
        }
    }

    #[test]
    fn ranges() {
        assert!(is_spoof_source("198.19.3.4".parse().unwrap()));
        assert!(!is_spoof_source("198.18.3.4".parse().unwrap()));
        assert!(!is_spoof_source("10.0.0.1".parse().unwrap()));
        assert!(is_spoof_source("2001:2:0:ffff::1".parse().unwrap()));
        assert!(!is_spoof_source("2001:2:ffff::1".parse().unwrap()));
        assert!(!is_spoof_source("2001:2::1".parse().unwrap()));
        assert!(in_lab_range("198.18.0.10".parse().unwrap()));
        assert!(in_lab_range("198.19.255.255".parse().unwrap()));
        assert!(!in_lab_range("198.20.0.1".parse().unwrap()));
        assert!(in_lab_range("2001:2::10".parse().unwrap()));
        assert!(!in_lab_range("2001:3::10".parse().unwrap()));
        assert!(!in_lab_range("2001:2:1::10".parse().unwrap()));
    }

    #[test]
    fn hping_rejects_sources_outside_the_range_and_unbounded_floods() {
        let mut h = Hping {
            kind: Kind::Syn,
            target: Ipv4Addr::new(198, 18, 0, 10),
            port: 80,
            spoof: Ipv4Addr::new(198, 19, 1, 2),
            count: 100,
            interval_us: 100,
            limit: Duration::from_secs(3),
        };
        let v = hping_argv(&h).unwrap();
        assert_eq!(&v[..7], ["timeout", "-s", "INT", "-k", "2", "3", "hping3"]);
        assert!(!v.iter().any(|a| a.contains("rand")));
        assert!(v.windows(2).any(|w| w == ["-c", "100"]));
        h.spoof = Ipv4Addr::new(198, 18, 0, 1);
        assert!(hping_argv(&h).is_err());
        h.spoof = Ipv4Addr::new(198, 19, 1, 2);
        h.target = Ipv4Addr::new(192, 0, 2, 1);
        assert!(hping_argv(&h).is_err());
        h.target = Ipv4Addr::new(198, 18, 0, 10);
        h.count = 0;
        assert!(hping_argv(&h).is_err());
        h.count = 10;
        h.limit = Duration::ZERO;
        assert!(hping_argv(&h).is_err());
    }

    #[test]
    fn trafgen_config_layout() {
        let c4 = trafgen_config(&tg("198.18.0.10".parse().unwrap(), None)).unwrap();
        assert!(c4.contains("198, 19, drnd(2)"), "{c4}");
        assert!(c4.contains("csumip(14, 33)") && c4.contains("csumtcp(14, 34)"), "{c4}");
        assert!(c4.contains("0x18, c16(8192)"), "{c4}");
        let c6 = trafgen_config(&tg("2001:2::10".parse().unwrap(), Some(100))).unwrap();
        assert!(c6.contains("c16(0x8100), c16(100)"), "{c6}");
        assert!(c6.contains("0x20, 0x01, 0x00, 0x02, 0x00, 0x00, 0xff, 0xff, drnd(8)"), "{c6}");
        assert!(c6.contains("csumtcp6(18, 58)"), "{c6}");
        assert!(trafgen_config(&tg("192.0.2.1".parse().unwrap(), None)).is_err());
        let mut t = tg("198.18.0.10".parse().unwrap(), None);
        t.count = 0;
        assert!(trafgen_argv(&t, "x").is_err());
        t.count = 5;
        let v = trafgen_argv(&t, "x").unwrap();
        assert!(v.windows(2).any(|w| w == ["--cpus", "1"]) && v.windows(2).any(|w| w == ["-n", "5"]));
    }

    #[test]
    fn parse_tool_output() {
        let h = "--- 198.18.0.10 hping statistic ---\n500 packets transmitted, 0 packets received, 100% packet loss\n";
        assert_eq!(parse_hping_sent(h), Some(500));
        let t = "\n  1000 packets outgoing\n  54000 bytes outgoing\n";
        assert_eq!(parse_trafgen_sent(t), Some(1000));
        assert_eq!(parse_trafgen_sent("nothing"), None);
    }
}
