//! `scrubber-perf gen`: an AF_XDP traffic generator — TCP (SYN, ACK-PSH, ACK, RST, FIN) and
//! UDP floods from random sources in a prefix (and random ports, sequence and acknowledgement
//! numbers), written straight into UMEM frames and transmitted in batches, paced to a rate,
//! bounded in count and time, with a JSON line of counts every second.
//!
//! Why its own: trafgen (netsniff-ng) tops out near 0.5–1 Mpps on this project's VM through
//! veth, and the kernel's pktgen module is not available everywhere (it is not here). A frame
//! costs a template copy, a few random words and two checksums; transmission is the kernel's
//! (copy mode on veth, zero-copy on NICs that support it).

use anyhow::{bail, Context, Result};
use scrubber::wire::checksum;
use scrubber_xsk::{Desc, TxSocket, TxSocketConfig, ZeroCopy};
use serde::Serialize;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GenKind {
    /// TCP SYN.
    Syn,
    /// TCP ACK+PSH with a payload.
    AckPsh,
    /// TCP ACK.
    Ack,
    /// TCP RST.
    Rst,
    /// TCP FIN+ACK.
    Fin,
    /// UDP.
    Udp,
}

/// Options of `scrubber-perf gen`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Interface to transmit on.
    #[arg(long)]
    pub dev: String,
    /// Its queue.
    #[arg(long, default_value_t = 0)]
    pub queue: u32,
    /// What to send.
    #[arg(long, value_enum, default_value_t = GenKind::AckPsh)]
    pub kind: GenKind,
    /// Source prefix: each frame gets a random address in it (e.g. 198.19.0.0/16).
    #[arg(long, default_value = "198.19.0.0/16")]
    pub src: String,
    /// Destination address.
    #[arg(long, default_value = "198.18.0.10")]
    pub dst: IpAddr,
    /// Destination port (source ports are random).
    #[arg(long, default_value_t = 80)]
    pub dport: u16,
    /// Destination MAC (the next hop), e.g. 02:00:5b:00:00:02.
    #[arg(long)]
    pub dst_mac: String,
    /// Source MAC [default: the interface's].
    #[arg(long)]
    pub src_mac: Option<String>,
    /// Frame length in bytes (up to 1514; padded with payload) [default: 64, or the smallest
    /// frame the headers fit in (IPv6 TCP: 74)].
    #[arg(long)]
    pub len: Option<usize>,
    /// Frames per second (0: as fast as it goes).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Frames to send at most.
    #[arg(long, default_value_t = 10_000_000)]
    pub count: u64,
    /// Seconds to run at most (1–3600).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Pin to this core.
    #[arg(long)]
    pub core: Option<usize>,
    /// Zero-copy: auto, on or off.
    #[arg(long, default_value = "auto")]
    pub zero_copy: String,
    /// Print nothing per second, only the final line.
    #[arg(long)]
    pub quiet: bool,
}

/// The final report (also printed once per second with `event` = `tick`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `start`, `tick` or `done`.
    pub event: &'static str,
    /// Seconds since the start.
    pub t: f64,
    /// Frames queued for transmission.
    pub sent: u64,
    /// Frames whose transmission completed.
    pub completed: u64,
    /// Rate over the last interval (frames per second).
    pub pps: f64,
    /// Times the tx ring was full.
    pub tx_ring_full: u64,
    /// Bind mode.
    pub mode: String,
}

/// A parsed prefix: family, base address, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// The address (host bits cleared).
    pub addr: u128,
    /// IPv6.
    pub v6: bool,
    /// Length.
    pub len: u8,
}

/// Parse `a.b.c.d/n` or `x::y/n`.
pub fn parse_prefix(s: &str) -> Result<Prefix> {
    let (a, l) = s.split_once('/').unwrap_or((s, ""));
    let ip: IpAddr = a.parse().with_context(|| format!("{s:?}: not an address/length"))?;
    let (v6, bits, max) = match ip {
        IpAddr::V4(x) => (false, u128::from(u32::from(x)), 32u8),
        IpAddr::V6(x) => (true, u128::from(x), 128u8),
    };
    let len: u8 = if l.is_empty() { max } else { l.parse().with_context(|| format!("{s:?}: bad length"))? };
    if len > max {
        bail!("{s:?}: /{len} is longer than the address");
    }
    let host = if len == max { 0 } else { (1u128 << (max - len)) - 1 };
    Ok(Prefix { addr: bits & !host, v6, len })
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{s:?}: not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    v.try_into().map_err(|_| anyhow::anyhow!("{s:?}: a MAC address has 6 bytes"))
}

/// xorshift64*.
struct Rng(u64);
impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Builds the frames: a template per kind, then per frame a random source, ports and numbers,
/// and the checksums.
pub struct FrameMaker {
    tmpl: Vec<u8>,
    kind: GenKind,
    src: Prefix,
    l3: usize,
    l4: usize,
    rng: Rng,
}

impl FrameMaker {
    /// A maker for frames of `len` bytes.
    pub fn new(
        kind: GenKind,
        src: Prefix,
        dst: IpAddr,
        dport: u16,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
        len: Option<usize>,
    ) -> Result<FrameMaker> {
        let dst_v6 = matches!(dst, IpAddr::V6(_));
        if dst_v6 != src.v6 {
            bail!("--src and --dst must be of the same family");
        }
        let l3 = 14;
        let ip_len = if src.v6 { 40 } else { 20 };
        let l4 = l3 + ip_len;
        let l4_hdr = if kind == GenKind::Udp { 8 } else { 20 };
        let min = l4 + l4_hdr;
        let len = len.unwrap_or(64.max(min));
        if !(60.max(min)..=1514).contains(&len) {
            bail!("--len {len}: give {} to 1514 bytes", 60.max(min));
        }
        let mut t = vec![0u8; len];
        t[0..6].copy_from_slice(&dst_mac);
        t[6..12].copy_from_slice(&src_mac);
        let payload = len - min;
        if src.v6 {
            t[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            t[l3] = 0x60;
            t[l3 + 4..l3 + 6].copy_from_slice(&((l4_hdr + payload) as u16).to_be_bytes());
            t[l3 + 6] = if kind == GenKind::Udp { 17 } else { 6 };
            t[l3 + 7] = 64;
            if let IpAddr::V6(d) = dst {
                t[l3 + 24..l3 + 40].copy_from_slice(&d.octets());
            }
        } else {
            t[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            t[l3] = 0x45;
            t[l3 + 2..l3 + 4].copy_from_slice(&((20 + l4_hdr + payload) as u16).to_be_bytes());
            t[l3 + 6] = 0x40; // DF
            t[l3 + 8] = 64;
            t[l3 + 9] = if kind == GenKind::Udp { 17 } else { 6 };
            if let IpAddr::V4(d) = dst {
                t[l3 + 16..l3 + 20].copy_from_slice(&d.octets());
            }
        }
        t[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
        if kind == GenKind::Udp {
            t[l4 + 4..l4 + 6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        } else {
            use scrubber::wire::tcp::flags as f;
            t[l4 + 12] = 5 << 4;
            t[l4 + 13] = match kind {
                GenKind::Syn => f::SYN,
                GenKind::AckPsh => f::ACK | f::PSH,
                GenKind::Ack => f::ACK,
                GenKind::Rst => f::RST,
                GenKind::Fin => f::FIN | f::ACK,
                GenKind::Udp => 0,
            };
            t[l4 + 14..l4 + 16].copy_from_slice(&64240u16.to_be_bytes());
        }
        for b in &mut t[min..] {
            *b = 0x41;
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Ok(FrameMaker { tmpl: t, kind, src, l3, l4, rng: Rng(seed | 1) })
    }

    /// Frame length.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.tmpl.len()
    }

    /// Write one frame into `buf` (at least [`FrameMaker::len`] bytes).
    #[inline]
    pub fn make(&mut self, buf: &mut [u8]) {
        let n = self.tmpl.len();
        let f = &mut buf[..n];
        f.copy_from_slice(&self.tmpl);
        let r = self.rng.next();
        let r2 = self.rng.next();
        let (l3, l4) = (self.l3, self.l4);
        let host_bits = if self.src.v6 { 128 - u32::from(self.src.len) } else { 32 - u32::from(self.src.len) };
        let host = if host_bits == 0 {
            0
        } else {
            (u128::from(r) | u128::from(r2) << 64) & ((1u128 << host_bits.min(127)) - 1)
        };
        let a = self.src.addr | host;
        if self.src.v6 {
            f[l3 + 8..l3 + 24].copy_from_slice(&a.to_be_bytes());
        } else {
            f[l3 + 12..l3 + 16].copy_from_slice(&(a as u32).to_be_bytes());
            f[l3 + 4..l3 + 6].copy_from_slice(&(r2 as u16).to_be_bytes()); // IP id
            let c = checksum::finish(checksum::sum(&f[l3..l3 + 20]));
            f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        let sport = 1024 + (r >> 48) as u16 % 64512;
        f[l4..l4 + 2].copy_from_slice(&sport.to_be_bytes());
        let proto_off = if self.kind == GenKind::Udp {
            l4 + 6
        } else {
            f[l4 + 4..l4 + 8].copy_from_slice(&(r2 as u32).to_be_bytes());
            f[l4 + 8..l4 + 12].copy_from_slice(&((r2 >> 32) as u32).to_be_bytes());
            l4 + 16
        };
        // L4 checksum over the pseudo-header and the segment.
        let seg_len = n - l4;
        let (src, dst) =
            if self.src.v6 { (l3 + 8..l3 + 24, l3 + 24..l3 + 40) } else { (l3 + 12..l3 + 16, l3 + 16..l3 + 20) };
        let proto = if self.kind == GenKind::Udp { 17u16 } else { 6 };
        let mut s = checksum::sum(&f[src]) + checksum::sum(&f[dst]);
        s += u32::from(proto) + seg_len as u32;
        s += checksum::sum(&f[l4..]);
        let mut c = checksum::finish(s);
        if self.kind == GenKind::Udp && c == 0 {
            c = 0xffff;
        }
        f[proto_off..proto_off + 2].copy_from_slice(&c.to_be_bytes());
    }
}

fn iface_mac(dev: &str) -> Result<[u8; 6]> {
    let p = format!("/sys/class/net/{dev}/address");
    let s =
        std::fs::read_to_string(&p).with_context(|| format!("reading {p} (does {dev} exist in this namespace?)"))?;
    parse_mac(s.trim())
}

/// Run the generator; `emit` gets the start, tick and done reports.
pub fn run(a: &Args, emit: &mut dyn FnMut(&Report)) -> Result<Report> {
    if !(a.seconds.is_finite() && (0.1..=3600.0).contains(&a.seconds)) {
        bail!("--seconds {}: give 0.1 to 3600", a.seconds);
    }
    let src = parse_prefix(&a.src)?;
    let dst_mac = parse_mac(&a.dst_mac)?;
    let src_mac = match &a.src_mac {
        Some(m) => parse_mac(m)?,
        None => iface_mac(&a.dev)?,
    };
    let mut maker = FrameMaker::new(a.kind, src, a.dst, a.dport, src_mac, dst_mac, a.len)?;
    if let Some(c) = a.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    scrubber_xsk::raise_memlock();
    let mut cfg = TxSocketConfig::new(&a.dev, a.queue);
    cfg.zero_copy = a.zero_copy.parse::<ZeroCopy>().map_err(|e| anyhow::anyhow!("--zero-copy: {e}"))?;
    let mut s =
        TxSocket::new(&cfg).with_context(|| format!("opening an AF_XDP socket on {} queue {}", a.dev, a.queue))?;
    let mode = s.mode().to_string();
    let start = Instant::now();
    let limit = Duration::from_secs_f64(a.seconds);
    let mut rep = Report { event: "start", t: 0.0, sent: 0, completed: 0, pps: 0.0, tx_ring_full: 0, mode };
    emit(&rep);
    let mut batch = [Desc::default(); 64];
    let (mut last_t, mut last_sent) = (start, 0u64);
    let mut completed = 0u64;
    while rep.sent < a.count && start.elapsed() < limit {
        let mut want = (a.count - rep.sent).min(batch.len() as u64) as usize;
        if a.rate > 0 {
            let due = (start.elapsed().as_secs_f64() * a.rate as f64) as u64;
            want = want.min(due.saturating_sub(rep.sent) as usize);
        }
        let mut n = 0;
        while n < want {
            let Some(mut d) = s.alloc_frame() else { break };
            match s.frame_buf_mut(&d) {
                Some(buf) if buf.len() >= maker.len() => maker.make(buf),
                _ => {
                    s.recycle(&[d]);
                    break;
                }
            }
            d.set_len(maker.len());
            batch[n] = d;
            n += 1;
        }
        let sent = s.tx_batch(&batch[..n]);
        if sent < n {
            rep.tx_ring_full += 1;
            s.recycle(&batch[sent..n]);
        }
        rep.sent += sent as u64;
        completed += u64::from(s.service());
        if n == 0 && a.rate > 0 {
            // Ahead of the schedule: sleep until a batch is due (a generator sharing its core
            // with other load must not spin the time away).
            let next = (rep.sent + batch.len() as u64) as f64 / a.rate as f64;
            let ahead = next - start.elapsed().as_secs_f64();
            if ahead > 50e-6 {
                std::thread::sleep(Duration::from_secs_f64(ahead.min(0.001)));
            }
        } else if n == 0 {
            std::hint::spin_loop();
        }
        if last_t.elapsed() >= Duration::from_secs(1) {
            let el = last_t.elapsed().as_secs_f64();
            rep.event = "tick";
            rep.t = start.elapsed().as_secs_f64();
            rep.pps = (rep.sent - last_sent) as f64 / el;
            rep.completed = completed;
            if !a.quiet {
                emit(&rep);
            }
            (last_t, last_sent) = (Instant::now(), rep.sent);
        }
    }
    // Let the last frames go out.
    let drain = Instant::now();
    while s.tx_pending() > 0 && drain.elapsed() < Duration::from_millis(500) {
        completed += u64::from(s.service());
    }
    completed += u64::from(s.service());
    rep.event = "done";
    rep.t = start.elapsed().as_secs_f64();
    rep.pps = rep.sent as f64 / rep.t.max(1e-9);
    rep.completed = completed;
    emit(&rep);
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scrubber::wire::builder::TcpFrame;

    #[test]
    fn frames_parse_with_valid_checksums_and_random_sources_in_the_prefix() {
        for (src, dst, kind) in [
            ("198.19.0.0/16", "198.18.0.10", GenKind::Syn),
            ("198.19.0.0/16", "198.18.0.10", GenKind::AckPsh),
            ("2001:2:0:ffff::/64", "2001:2::10", GenKind::Rst),
        ] {
            let p = parse_prefix(src).unwrap();
            let mut m =
                FrameMaker::new(kind, p, dst.parse().unwrap(), 80, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], Some(90))
                    .unwrap();
            let mut seen = std::collections::HashSet::new();
            for _ in 0..200 {
                let mut buf = [0u8; 2048];
                m.make(&mut buf);
                let f = TcpFrame::parse(&buf[..m.len()]).expect("valid frame with valid checksums");
                assert_eq!(f.dst, dst.parse::<IpAddr>().unwrap());
                assert_eq!(f.dst_port, 80);
                let a = match f.src {
                    IpAddr::V4(a) => u128::from(u32::from(a)),
                    IpAddr::V6(a) => u128::from(a),
                };
                let max = if p.v6 { 128 } else { 32 };
                assert_eq!(a >> (max - p.len), p.addr >> (max - p.len), "source outside the prefix");
                seen.insert(a);
            }
            assert!(seen.len() > 190, "sources are random");
        }
        assert!(parse_prefix("198.19.0.0/33").is_err());
        assert!(FrameMaker::new(
            GenKind::Udp,
            parse_prefix("2001:2::/48").unwrap(),
            "198.18.0.1".parse().unwrap(),
            9,
            [0; 6],
            [0; 6],
            Some(64)
        )
        .is_err());
    }
}
