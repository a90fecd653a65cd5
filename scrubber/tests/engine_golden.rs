//! Golden packet tables for the engine — `{description, input frame, expected verdict, expected
//! output frame}` — and floods of every kind the engine must drop.

use scrubber::engine::cookie::{CookieKey, SynCookies};
use scrubber::engine::flow::FlowKey;
use scrubber::engine::verdict::{Direction, DropReason, Verdict};
use scrubber::engine::{Engine, EngineConfig, FrameBuf, Protected, SynMode};
use scrubber::wire::builder::{self, TcpFrame};
use scrubber::wire::checksum;
use scrubber::wire::tcp::flags as tf;
use std::net::IpAddr;

const KEY: [u8; 16] = *b"golden-table-key";
const NOW: u64 = 1_767_225_600 * 1_000_000_000;

/// A Linux-style SYN, literal bytes: 198.18.1.1:40000 → 198.18.0.10:80, ISN 0x11223344,
/// options MSS 1460, SACK-permitted, TS (0x0a0b0c0d, 0), NOP, WS 7.
const LINUX_SYN: [u8; 74] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00, //
    0x00, 0x3c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0xad, 0x8c, 0xc6, 0x12, 0x01, 0x01, 0xc6, 0x12, //
    0x00, 0x0a, 0x9c, 0x40, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, //
    0xfa, 0xf0, 0xc8, 0xd0, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x0a, 0x0b, //
    0x0c, 0x0d, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
];

/// An ACK-PSH flood frame, literal bytes: 198.19.7.9:1234 → 198.18.0.10:80, seq 0xdeadbeef,
/// ack 0xcafef00d, 18 bytes of "GET / HTTP/1.1".
const ACK_PSH: [u8; 72] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00, //
    0x00, 0x3a, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0xa7, 0x85, 0xc6, 0x13, 0x07, 0x09, 0xc6, 0x12, //
    0x00, 0x0a, 0x04, 0xd2, 0x00, 0x50, 0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xf0, 0x0d, 0x50, 0x18, //
    0x02, 0x00, 0xde, 0x14, 0x00, 0x00, 0x47, 0x45, 0x54, 0x20, 0x2f, 0x20, 0x48, 0x54, 0x54, 0x50, //
    0x2f, 0x31, 0x2e, 0x31, 0x0d, 0x0a, 0x0d, 0x0a,
];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn engine(mode: SynMode) -> Engine {
    Engine::new(EngineConfig {
        protect: vec![
            Protected { addr: ip("198.18.0.10"), port: Some(80) },
            Protected { addr: ip("2001:2::10"), port: Some(443) },
        ],
        syn_mode: mode,
        table_capacity: 1 << 12,
        cookie_key: KEY,
        ..EngineConfig::default()
    })
    .unwrap()
}

fn run(e: &mut Engine, dir: Direction, input: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    let mut extra = vec![0u8; 2048];
    buf[..input.len()].copy_from_slice(input);
    let mut f = FrameBuf { buf: &mut buf, len: input.len() };
    let mut x = FrameBuf { buf: &mut extra, len: 0 };
    let v = e.process(NOW, dir, &mut f, &mut x);
    let n = f.len;
    (v, buf[..n].to_vec())
}

enum Expect {
    /// Dropped with this reason.
    Drop(DropReason),
    /// Forwarded byte for byte.
    Unchanged,
    /// Answered back out of the arrival side; the closure checks the answer.
    Reply(fn(&[u8])),
}

struct Row {
    desc: &'static str,
    mode: SynMode,
    dir: Direction,
    input: Vec<u8>,
    expect: Expect,
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> TcpFrame {
    let mut f = TcpFrame::new(ip(src), sport, ip(dst), dport, flags);
    f.seq = 0x0102_0304;
    f.ack = if flags & tf::ACK != 0 { 0x0506_0708 } else { 0 };
    f
}

fn v4(flags: u8) -> Vec<u8> {
    tcp("198.19.1.2", 5555, "198.18.0.10", 80, flags).build()
}

fn v6(flags: u8) -> Vec<u8> {
    tcp("2001:2:0:ff::7", 5555, "2001:2::10", 443, flags).build()
}

/// Recompute the IPv4 header checksum of an untagged frame.
fn fix_ipv4_checksum(f: &mut [u8]) {
    f[24] = 0;
    f[25] = 0;
    let c = checksum::finish(checksum::sum(&f[14..34]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

fn check_cookie_synack(out: &[u8]) {
    let f = TcpFrame::parse(out).expect("answer parses with valid checksums");
    assert_eq!(f.src_mac, [2, 0, 0, 0, 0, 2], "MACs swapped");
    assert_eq!(f.dst_mac, [2, 0, 0, 0, 0, 1]);
    assert_eq!((f.src, f.src_port, f.dst, f.dst_port), (ip("198.18.0.10"), 80, ip("198.18.1.1"), 40000));
    assert_eq!(f.flags, tf::SYN | tf::ACK);
    assert_eq!(f.ack, 0x1122_3345);
    assert_eq!(f.window, 0);
    assert_eq!(f.options.mss, Some(1460));
    assert_eq!(f.options.wscale, Some(7));
    assert!(f.options.sack_permitted);
    let (tsval, tsecr) = f.options.timestamp.expect("timestamps echoed");
    assert_eq!(tsecr, 0x0a0b_0c0d);
    // The ISN is a cookie for this 4-tuple that carries the client's options.
    let mut cookies = SynCookies::new(CookieKey::from_bytes(KEY), 64);
    let flow = FlowKey::v4([198, 18, 1, 1], 40000, [198, 18, 0, 10], 80);
    let dec = cookies.validate(NOW, &flow, 0x1122_3344, f.seq, Some(tsval)).expect("ISN is a valid cookie");
    assert_eq!(dec.mss, 1460);
    assert_eq!(dec.wscale, Some(7));
    assert!(dec.sack_permitted);
}

fn check_cookie_synack_v6(out: &[u8]) {
    let f = TcpFrame::parse(out).expect("answer parses with valid checksums");
    assert_eq!((f.src, f.dst), (ip("2001:2::10"), ip("2001:2:0:ff::7")));
    assert_eq!(f.flags, tf::SYN | tf::ACK);
    assert_eq!(f.ack, 0x0102_0305);
    assert_eq!(f.options.mss, Some(1440));
    assert_eq!(f.options.wscale, None, "the client offered no window scale");
    assert_eq!(f.options.timestamp, None);
}

fn rows() -> Vec<Row> {
    use Direction::*;
    use DropReason as R;
    use Expect::*;
    use SynMode::*;
    let row = |desc, mode, dir, input, expect| Row { desc, mode, dir, input, expect };
    let mut frag = v4(tf::ACK);
    frag[20] |= 0x20; // more fragments
    fix_ipv4_checksum(&mut frag);
    let mut frag_udp = builder::udp_frame(ip("198.19.0.1"), 53, ip("198.18.0.10"), 53, b"0123456789");
    frag_udp[20] = 0x20;
    frag_udp[21] = 0x10; // more fragments, offset 16*8
    fix_ipv4_checksum(&mut frag_udp);
    let mut bad_ipv4_sum = v4(tf::ACK);
    bad_ipv4_sum[24] ^= 0xff;
    let mut bad_doff = v4(tf::ACK);
    bad_doff[46] = 0xf0; // data offset 60 > segment
                         // An option whose length runs past the header.
    let bad_opts = {
        let mut f = tcp("198.19.1.2", 5555, "198.18.0.10", 80, tf::SYN);
        f.options.mss = Some(1460);
        let mut bad_opts = f.build();
        bad_opts[55] = 40; // MSS option length 40 > header
        let seg_len = bad_opts.len() - 34;
        let c = checksum::l4_checksum(
            &{
                let mut a = [0u8; 16];
                a[..4].copy_from_slice(&[198, 19, 1, 2]);
                a
            },
            &{
                let mut a = [0u8; 16];
                a[..4].copy_from_slice(&[198, 18, 0, 10]);
                a
            },
            false,
            6,
            &{
                let mut s = bad_opts[34..34 + seg_len].to_vec();
                s[16] = 0;
                s[17] = 0;
                s
            },
        );
        bad_opts[50..52].copy_from_slice(&c.to_be_bytes());
        bad_opts
    };
    let mut syn_v6 = tcp("2001:2:0:ff::7", 5555, "2001:2::10", 443, tf::SYN);
    syn_v6.options.mss = Some(1440);
    vec![
        row(
            "Linux SYN (literal bytes), proxy mode → cookie SYN-ACK in the same frame",
            Proxy,
            Inbound,
            LINUX_SYN.to_vec(),
            Reply(check_cookie_synack),
        ),
        row(
            "IPv6 SYN without window scale or timestamps → cookie SYN-ACK",
            Proxy,
            Inbound,
            syn_v6.build(),
            Reply(check_cookie_synack_v6),
        ),
        row("Linux SYN, track mode → forwarded unchanged", Track, Inbound, LINUX_SYN.to_vec(), Unchanged),
        row(
            "ACK-PSH with payload, no session (literal bytes)",
            Proxy,
            Inbound,
            ACK_PSH.to_vec(),
            Drop(R::AckNoSession),
        ),
        row("ACK-PSH with payload, no session, track mode", Track, Inbound, ACK_PSH.to_vec(), Drop(R::AckNoSession)),
        row("bare ACK, no session", Proxy, Inbound, v4(tf::ACK), Drop(R::AckNoSession)),
        row("ACK-URG, no session", Proxy, Inbound, v4(tf::ACK | tf::URG), Drop(R::AckNoSession)),
        row("RST, no session", Proxy, Inbound, v4(tf::RST), Drop(R::RstNoSession)),
        row("RST-ACK, no session", Track, Inbound, v4(tf::RST | tf::ACK), Drop(R::RstNoSession)),
        row("FIN-ACK, no session", Proxy, Inbound, v4(tf::FIN | tf::ACK), Drop(R::FinNoSession)),
        row(
            "SYN-ACK from outside, no server-opened connection",
            Proxy,
            Inbound,
            v4(tf::SYN | tf::ACK),
            Drop(R::SynAckNoSession),
        ),
        row("null scan (no flags)", Proxy, Inbound, v4(0), Drop(R::TcpNull)),
        row("null scan with only ECE/CWR", Track, Inbound, v4(tf::ECE | tf::CWR), Drop(R::TcpNull)),
        row("xmas (FIN PSH URG)", Proxy, Inbound, v4(tf::FIN | tf::PSH | tf::URG), Drop(R::TcpXmas)),
        row("all flags set", Proxy, Inbound, v4(0xff), Drop(R::TcpXmas)),
        row("SYN+FIN", Proxy, Inbound, v4(tf::SYN | tf::FIN), Drop(R::TcpSynFin)),
        row("SYN+RST", Track, Inbound, v4(tf::SYN | tf::RST), Drop(R::TcpSynRst)),
        row("FIN without ACK", Proxy, Inbound, v4(tf::FIN), Drop(R::TcpBadFlags)),
        row("SYN with PSH", Proxy, Inbound, v4(tf::SYN | tf::PSH), Drop(R::TcpBadFlags)),
        row("PSH alone", Proxy, Inbound, v4(tf::PSH), Drop(R::TcpBadFlags)),
        row("802.1Q ACK-PSH, no session", Proxy, Inbound, builder::with_vlans(&ACK_PSH, &[100]), Drop(R::AckNoSession)),
        row(
            "QinQ RST, no session",
            Proxy,
            Inbound,
            builder::with_vlans(&v4(tf::RST), &[200, 100]),
            Drop(R::RstNoSession),
        ),
        row(
            "802.1Q xmas",
            Proxy,
            Inbound,
            builder::with_vlans(&v4(tf::FIN | tf::PSH | tf::URG), &[7]),
            Drop(R::TcpXmas),
        ),
        row("IPv6 ACK-PSH, no session", Proxy, Inbound, v6(tf::ACK | tf::PSH), Drop(R::AckNoSession)),
        row("IPv6 FIN-ACK, no session", Track, Inbound, v6(tf::FIN | tf::ACK), Drop(R::FinNoSession)),
        row("IPv6 SYN+FIN", Proxy, Inbound, v6(tf::SYN | tf::FIN), Drop(R::TcpSynFin)),
        row("802.1Q IPv6 null", Proxy, Inbound, builder::with_vlans(&v6(0), &[5]), Drop(R::TcpNull)),
        row(
            "ARP request → forwarded",
            Proxy,
            Inbound,
            builder::arp_request([2, 0, 0, 0, 0, 9], [198, 18, 0, 1], [198, 18, 0, 10]),
            Unchanged,
        ),
        row(
            "ICMPv6 neighbour solicitation → forwarded",
            Proxy,
            Inbound,
            builder::neighbor_solicitation("2001:2::1".parse().unwrap(), "2001:2::10".parse().unwrap()),
            Unchanged,
        ),
        row(
            "UDP to a protected address → forwarded (rules come later)",
            Proxy,
            Inbound,
            builder::udp_frame(ip("198.19.0.1"), 53, ip("198.18.0.10"), 53, b"hello"),
            Unchanged,
        ),
        row(
            "ICMP echo → forwarded",
            Proxy,
            Inbound,
            builder::icmp_echo(ip("198.19.0.1"), ip("198.18.0.10"), 1, 1),
            Unchanged,
        ),
        row(
            "bare ACK to an unprotected address → forwarded",
            Proxy,
            Inbound,
            tcp("198.19.1.2", 5555, "198.18.0.99", 80, tf::ACK).build(),
            Unchanged,
        ),
        row(
            "bare ACK to a protected address, unprotected port → forwarded",
            Proxy,
            Inbound,
            tcp("198.19.1.2", 5555, "198.18.0.10", 22, tf::ACK).build(),
            Unchanged,
        ),
        row("TCP fragment towards a protected service", Proxy, Inbound, frag, Drop(R::TcpFragment)),
        row("UDP non-first fragment → forwarded", Proxy, Inbound, frag_udp, Unchanged),
        row("10-byte runt frame", Proxy, Inbound, vec![0u8; 10], Drop(R::EthTruncated)),
        row(
            "802.1Q tag cut short",
            Proxy,
            Inbound,
            builder::with_vlans(&v4(tf::ACK), &[1])[..16].to_vec(),
            Drop(R::VlanMalformed),
        ),
        row("IPv4 header checksum wrong", Proxy, Inbound, bad_ipv4_sum, Drop(R::Ipv4BadChecksum)),
        row("IPv4 cut inside the header", Proxy, Inbound, v4(tf::ACK)[..30].to_vec(), Drop(R::Ipv4Malformed)),
        row("IPv6 cut inside the header", Proxy, Inbound, v6(tf::ACK)[..40].to_vec(), Drop(R::Ipv6Malformed)),
        row("TCP data offset past the segment", Proxy, Inbound, bad_doff, Drop(R::TcpMalformed)),
        row("SYN whose option runs past the header", Proxy, Inbound, bad_opts, Drop(R::TcpBadOptions)),
        row(
            "server SYN-ACK answering no SYN",
            Proxy,
            Outbound,
            tcp("198.18.0.10", 80, "198.19.1.2", 5555, tf::SYN | tf::ACK).build(),
            Drop(R::SynAckNoSession),
        ),
        row(
            "server ACK of an unknown connection → forwarded (the inside is trusted)",
            Proxy,
            Outbound,
            tcp("198.18.0.10", 80, "198.19.1.2", 5555, tf::ACK).build(),
            Unchanged,
        ),
    ]
}

#[test]
fn golden_table() {
    let mut failures = vec![];
    for r in rows() {
        let mut e = engine(r.mode);
        let (v, out) = run(&mut e, r.dir, &r.input);
        let ok = match (&r.expect, v) {
            (Expect::Drop(want), Verdict::Drop(got)) => *want == got,
            (Expect::Unchanged, Verdict::Forward) => out == r.input,
            (Expect::Reply(check), Verdict::Reply) => {
                check(&out);
                true
            }
            _ => false,
        };
        if !ok {
            failures.push(format!("{}: got {v:?}", r.desc));
        }
        // Every counted verdict lands in exactly one place.
        let c = e.counters();
        assert_eq!(c.forwarded_inbound + c.forwarded_outbound + c.replies + c.dropped_total(), 1, "{}", r.desc);
    }
    assert!(failures.is_empty(), "golden rows failed:\n{}", failures.join("\n"));
}

/// A small deterministic generator (no external RNG needed for bounded floods).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 32) as u32
    }
}

fn flood_frame(rng: &mut Lcg, v6: bool, flags: u8, vlan: bool) -> Vec<u8> {
    let r = rng.next();
    let (src, dst, dport) = if v6 {
        (IpAddr::V6(format!("2001:2:0:ff::{:x}:{:x}", r >> 16, r & 0xffff).parse().unwrap()), ip("2001:2::10"), 443)
    } else {
        (IpAddr::V4([198, 19, (r >> 8) as u8, r as u8].into()), ip("198.18.0.10"), 80)
    };
    let mut f = TcpFrame::new(src, 1024 + (rng.next() % 60000) as u16, dst, dport, flags);
    f.seq = rng.next();
    f.ack = if flags & tf::ACK != 0 { rng.next() } else { 0 };
    if flags & tf::PSH != 0 {
        f.payload = vec![b'A'; (rng.next() % 512) as usize];
    }
    if vlan {
        f.vlans = vec![100];
    }
    f.build()
}

#[test]
fn floods_are_dropped_and_leave_no_state() {
    use DropReason as R;
    let kinds: &[(&str, u8, R)] = &[
        ("ACK-PSH", tf::ACK | tf::PSH, R::AckNoSession),
        ("bare ACK", tf::ACK, R::AckNoSession),
        ("RST", tf::RST, R::RstNoSession),
        ("RST-ACK", tf::RST | tf::ACK, R::RstNoSession),
        ("FIN-ACK", tf::FIN | tf::ACK, R::FinNoSession),
        ("xmas", tf::FIN | tf::PSH | tf::URG, R::TcpXmas),
        ("null", 0, R::TcpNull),
        ("SYN+FIN", tf::SYN | tf::FIN, R::TcpSynFin),
    ];
    const N: u64 = 5_000;
    for mode in [SynMode::Proxy, SynMode::Track] {
        for &(name, flags, reason) in kinds {
            for v6 in [false, true] {
                for vlan in [false, true] {
                    let mut e = engine(mode);
                    let mut rng = Lcg(flags as u64 * 31 + v6 as u64 * 7 + vlan as u64);
                    for _ in 0..N {
                        let f = flood_frame(&mut rng, v6, flags, vlan);
                        let (v, _) = run(&mut e, Direction::Inbound, &f);
                        assert_eq!(v, Verdict::Drop(reason), "{name} flood ({mode:?}, v6={v6}, vlan={vlan})");
                    }
                    let c = e.counters();
                    assert_eq!(c.dropped[reason.index()], N);
                    assert_eq!(c.forwarded_inbound, 0);
                    assert_eq!(e.sessions(), 0, "a flood must not create state");
                    if mode == SynMode::Proxy && reason == R::AckNoSession {
                        assert_eq!(c.cookies_failed, N, "every session-less ACK was checked against the cookie");
                    }
                    let target = c.per_target.iter().map(|t| t.dropped).sum::<u64>();
                    assert_eq!(target, N, "drops are attributed to the attacked target");
                }
            }
        }
    }
}

#[test]
fn proxy_syn_flood_is_answered_without_state() {
    let mut e = engine(SynMode::Proxy);
    let mut rng = Lcg(9);
    for _ in 0..20_000 {
        let v6 = rng.0 % 2 == 0;
        let f = flood_frame(&mut rng, v6, tf::SYN, false);
        let (v, out) = run(&mut e, Direction::Inbound, &f);
        assert_eq!(v, Verdict::Reply);
        assert_eq!(TcpFrame::parse(&out).unwrap().flags, tf::SYN | tf::ACK);
    }
    assert_eq!(e.sessions(), 0);
    assert_eq!(e.counters().cookies_sent, 20_000);
}

#[test]
fn track_syn_flood_never_evicts_established_sessions() {
    // A 4096-slot table: 200 established connections, then a 50k spoofed SYN flood.
    let mut e = engine(SynMode::Track);
    let mut legit = vec![];
    for i in 0..200u16 {
        let c = format!("198.18.1.{}", i % 250 + 1);
        let port = 30000 + i;
        let mut syn = tcp(&c, port, "198.18.0.10", 80, tf::SYN);
        syn.seq = 1000;
        assert_eq!(run(&mut e, Direction::Inbound, &syn.build()).0, Verdict::Forward);
        let mut sa = tcp("198.18.0.10", 80, &c, port, tf::SYN | tf::ACK);
        sa.seq = 5000;
        sa.ack = 1001;
        assert_eq!(run(&mut e, Direction::Outbound, &sa.build()).0, Verdict::Forward);
        let mut a = tcp(&c, port, "198.18.0.10", 80, tf::ACK);
        a.seq = 1001;
        a.ack = 5001;
        assert_eq!(run(&mut e, Direction::Inbound, &a.build()).0, Verdict::Forward);
        legit.push(a);
    }
    let mut rng = Lcg(77);
    for _ in 0..50_000 {
        let f = flood_frame(&mut rng, false, tf::SYN, false);
        let (v, _) = run(&mut e, Direction::Inbound, &f);
        assert!(matches!(v, Verdict::Forward | Verdict::Drop(DropReason::SessionTableFull)), "{v:?}");
    }
    assert!(e.sessions() <= 4096, "table stays bounded");
    for a in &legit {
        assert_eq!(
            run(&mut e, Direction::Inbound, &a.build()).0,
            Verdict::Forward,
            "established session survived the flood"
        );
    }
}
