//! The compiled policy: LPM tables against a brute-force reference, every match condition hit
//! and miss, rule order, defaults, limits, `protect_policy`, fingerprints and generation ids.

use rulespec::ast::{mask4, mask6};
use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;
use rulespec::ast::{Action, Learnable, SynMode, Toggle};
use rulespec::lpm::{Lpm4, Lpm6};
use rulespec::{
    check, compile, parse_target, protect_policy, Bucket, CLimit, Compiled, FragKind, FsSource, Hit, MemSource, Packet,
    Policy,
};

// ---------------------------------------------------------------------------------------------
// Helpers

fn policy(text: &str) -> Policy {
    policy_with(text, &[])
}

fn policy_with(text: &str, files: &[(&str, &str)]) -> Policy {
    let mut src = MemSource::new().with("t.rules", text);
    for (n, t) in files {
        src.insert(*n, *t);
    }
    let c = check("t.rules", &src);
    assert!(!c.has_errors(), "{}", c.render());
    c.policy.expect("no errors")
}

fn compiled(text: &str) -> Compiled {
    compile(&policy(text)).expect("compiles")
}

fn addr(s: &str) -> (bool, [u8; 16]) {
    let mut b = [0u8; 16];
    match s.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            (false, b)
        }
        IpAddr::V6(a) => (true, a.octets()),
    }
}

/// An owned packet description; `.p()` borrows it as a [`Packet`].
#[derive(Clone, Copy)]
struct Pk {
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    sport: u16,
    dport: u16,
    flags: u8,
    len: u16,
    frag: FragKind,
    icmp: Option<u8>,
}

impl Pk {
    fn new(src: &str, dst: &str) -> Self {
        let (v6, s) = addr(src);
        let (v6d, d) = addr(dst);
        assert_eq!(v6, v6d, "mixed families in a test packet");
        Pk {
            v6,
            src: s,
            dst: d,
            proto: 17,
            sport: 40000,
            dport: 53,
            flags: 0,
            len: 100,
            frag: FragKind::None,
            icmp: None,
        }
    }
    fn tcp(mut self, sport: u16, dport: u16, flags: u8) -> Self {
        (self.proto, self.sport, self.dport, self.flags) = (6, sport, dport, flags);
        self
    }
    fn udp(mut self, sport: u16, dport: u16) -> Self {
        (self.proto, self.sport, self.dport, self.flags) = (17, sport, dport, 0);
        self
    }
    fn icmp(mut self, proto: u8, t: u8) -> Self {
        (self.proto, self.sport, self.dport, self.icmp) = (proto, 0, 0, Some(t));
        self
    }
    fn len(mut self, n: u16) -> Self {
        self.len = n;
        self
    }
    fn frag(mut self, f: FragKind) -> Self {
        self.frag = f;
        self
    }
    fn p(&self) -> Packet<'_> {
        Packet {
            v6: self.v6,
            src: &self.src,
            dst: &self.dst,
            proto: self.proto,
            sport: self.sport,
            dport: self.dport,
            tcp_flags: self.flags,
            ip_len: self.len,
            frag: self.frag,
            icmp_type: self.icmp,
        }
    }
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

/// Whether the single `allow` rule of `cond` (under `default deny`) matches the packet.
fn hits(c: &Compiled, p: &Pk) -> bool {
    let h = c.judge(&p.p());
    match h.rule {
        Some(0) => {
            assert_eq!(h.action, Action::Allow);
            true
        }
        None => {
            assert_eq!(h.action, Action::Deny);
            false
        }
        Some(n) => panic!("unexpected rule {n}"),
    }
}

fn one_rule(prelude: &str, cond: &str) -> Compiled {
    compiled(&format!("{prelude}\nallow {cond}\ndefault deny\n"))
}

// ---------------------------------------------------------------------------------------------
// LPM against brute force

/// Longest covering prefix; among equal prefixes the later entry wins.
fn brute4(entries: &[(u32, u8, u32)], a: u32) -> u32 {
    let mut best: Option<(u8, u32)> = None;
    for &(p, l, v) in entries {
        if mask4(a, l) == mask4(p, l) && best.is_none_or(|(bl, _)| l >= bl) {
            best = Some((l, v));
        }
    }
    best.map_or(0, |b| b.1)
}

fn brute6(entries: &[(u128, u8, u32)], a: u128) -> u32 {
    let mut best: Option<(u8, u32)> = None;
    for &(p, l, v) in entries {
        if mask6(a, l) == mask6(p, l) && best.is_none_or(|(bl, _)| l >= bl) {
            best = Some((l, v));
        }
    }
    best.map_or(0, |b| b.1)
}

/// Prefixes drawn around a few base addresses, so that they nest and overlap; lengths cover
/// 0 and the full length.
fn prefixes4() -> impl Strategy<Value = Vec<(u32, u8, u32)>> {
    (
        prop::collection::vec(any::<u32>(), 1..4),
        prop::collection::vec((0usize..4, any::<u32>(), 0u8..=32, 1u32..50), 0..60),
    )
        .prop_map(|(bases, v)| {
            v.into_iter()
                .map(|(b, noise, l, val)| {
                    let base = bases[b % bases.len()];
                    // Keep the top bits of the base, so that prefixes share ancestors.
                    let keep = (noise % 33) as u8;
                    let a = mask4(base, keep) | (noise & !mask4(u32::MAX, keep));
                    (a, l, val)
                })
                .collect()
        })
}

fn prefixes6() -> impl Strategy<Value = Vec<(u128, u8, u32)>> {
    (
        prop::collection::vec(any::<u128>(), 1..4),
        prop::collection::vec((0usize..4, any::<u128>(), 0u8..=128, 1u32..50, 0u8..=128), 0..60),
    )
        .prop_map(|(bases, v)| {
            v.into_iter()
                .map(|(b, noise, l, val, keep)| {
                    let base = bases[b % bases.len()];
                    let a = mask6(base, keep) | (noise & !mask6(u128::MAX, keep));
                    (a, l, val)
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn lpm4_matches_brute_force(entries in prefixes4(), probes in prop::collection::vec((any::<u32>(), 0usize..64, 0u8..=32), 1..64)) {
        let t = Lpm4::build(&entries).unwrap();
        for (noise, i, keep) in probes {
            // Half near a prefix (its top `keep` bits), half anywhere.
            let a = match entries.get(i) {
                Some(&(p, _, _)) => mask4(p, keep) | (noise & !mask4(u32::MAX, keep)),
                None => noise,
            };
            prop_assert_eq!(t.lookup(a), brute4(&entries, a), "address {:#010x}", a);
        }
        for &(p, l, _) in &entries {
            prop_assert_eq!(t.lookup(p), brute4(&entries, p));
            let last = p | !mask4(u32::MAX, l);
            prop_assert_eq!(t.lookup(last), brute4(&entries, last));
        }
    }

    #[test]
    fn lpm6_matches_brute_force(entries in prefixes6(), probes in prop::collection::vec((any::<u128>(), 0usize..64, 0u8..=128), 1..64)) {
        let t = Lpm6::build(&entries).unwrap();
        for (noise, i, keep) in probes {
            let a = match entries.get(i) {
                Some(&(p, _, _)) => mask6(p, keep) | (noise & !mask6(u128::MAX, keep)),
                None => noise,
            };
            prop_assert_eq!(t.lookup(a), brute6(&entries, a), "address {:#034x}", a);
        }
        for &(p, l, _) in &entries {
            prop_assert_eq!(t.lookup(p), brute6(&entries, p));
            let last = p | !mask6(u128::MAX, l);
            prop_assert_eq!(t.lookup(last), brute6(&entries, last));
        }
    }

    /// Set membership through address classes equals "some prefix of the set covers the
    /// address", for overlapping sets of both families.
    #[test]
    fn set_membership_matches_brute_force(
        sets in prop::collection::vec(prop::collection::vec((any::<bool>(), 0usize..3, any::<u128>(), 0u8..=128), 1..12), 1..5),
        probes in prop::collection::vec((any::<bool>(), 0usize..3, any::<u128>(), 0u8..=128), 1..40),
    ) {
        // A few shared bases per family so that prefixes of different sets nest.
        let bases4 = [0xC612_0000u32, 0xC613_8000, 0x0A00_0000];
        let bases6 = [0x2001_0002u128 << 96, 0x2001_0002_0000_0053u128 << 64, 0x2400u128 << 112];
        let make = |v6: bool, b: usize, noise: u128, keep: u8| -> (IpAddr, u8) {
            if v6 {
                let a = mask6(bases6[b], keep) | (noise & !mask6(u128::MAX, keep));
                (IpAddr::V6(a.into()), keep)
            } else {
                let k = keep % 33;
                let n = noise as u32;
                let a = mask4(bases4[b], k) | (n & !mask4(u32::MAX, k));
                (IpAddr::V4(a.into()), k)
            }
        };
        let mut text = String::new();
        let mut members: Vec<Vec<(IpAddr, u8)>> = Vec::new();
        for (i, s) in sets.iter().enumerate() {
            let ps: Vec<(IpAddr, u8)> = s.iter().map(|&(v6, b, n, l)| {
                let (a, _) = make(v6, b, n, 128);
                let l = if v6 { l } else { l % 33 };
                let a = match a {
                    IpAddr::V4(x) => IpAddr::V4(mask4(u32::from(x), l).into()),
                    IpAddr::V6(x) => IpAddr::V6(mask6(u128::from(x), l).into()),
                };
                (a, l)
            }).collect();
            let list = ps.iter().map(|(a, l)| format!("{a}/{l}")).collect::<Vec<_>>().join(", ");
            text.push_str(&format!("set s{i} = {list}\ndeny from s{i}\n"));
            members.push(ps);
        }
        let c = compile(&policy(&text)).unwrap();
        for (v6, b, n, keep) in probes {
            let (a, _) = make(v6, b, n, keep);
            let bytes = match a {
                IpAddr::V4(x) => { let mut o = [0u8; 16]; o[..4].copy_from_slice(&x.octets()); o }
                IpAddr::V6(x) => x.octets(),
            };
            for (i, ps) in members.iter().enumerate() {
                let want = ps.iter().any(|&(p, l)| match (p, a) {
                    (IpAddr::V4(p), IpAddr::V4(a)) => mask4(u32::from(a), l) == u32::from(p),
                    (IpAddr::V6(p), IpAddr::V6(a)) => mask6(u128::from(a), l) == u128::from(p),
                    _ => false,
                });
                prop_assert_eq!(c.in_set(&format!("s{i}"), a.is_ipv6(), &bytes), Some(want), "{} in s{}", a, i);
            }
            // The first `deny from sN` that contains the address decides.
            let first = members.iter().position(|ps| ps.iter().any(|&(p, l)| match (p, a) {
                (IpAddr::V4(p), IpAddr::V4(a)) => mask4(u32::from(a), l) == u32::from(p),
                (IpAddr::V6(p), IpAddr::V6(a)) => mask6(u128::from(a), l) == u128::from(p),
                _ => false,
            }));
            let pk = Packet { v6: a.is_ipv6(), src: &bytes, dst: &bytes, proto: 17, sport: 1, dport: 1, tcp_flags: 0, ip_len: 60, frag: FragKind::None, icmp_type: None };
            prop_assert_eq!(c.judge(&pk).rule, first.map(|i| i as u16));
        }
    }
}

#[test]
fn lpm_edges_default_route_and_host_routes() {
    let t = Lpm4::build(&[(0, 0, 1), (0xC612_0001, 32, 2), (0xFFFF_FFFF, 32, 3)]).unwrap();
    assert_eq!(t.lookup(0x0102_0304), 1);
    assert_eq!(t.lookup(0xC612_0001), 2);
    assert_eq!(t.lookup(0xC612_0002), 1);
    assert_eq!(t.lookup(u32::MAX), 3);
    let t = Lpm6::build(&[(0, 0, 1), (1, 128, 2), (u128::MAX, 128, 3), (u128::MAX, 17, 4)]).unwrap();
    assert_eq!(t.lookup(0), 1);
    assert_eq!(t.lookup(1), 2);
    assert_eq!(t.lookup(u128::MAX), 3);
    assert_eq!(t.lookup(u128::MAX - 1), 4);
    assert_eq!(t.lookup(2), 1);
}

#[test]
fn lpm6_every_length_under_one_slash16() {
    // Nested prefixes of one address at many lengths (some left out), plus siblings: the trie
    // must find the longest for an address diverging at every bit.
    let base: u128 = 0x2001_0002_dead_beef_0123_4567_89ab_cdef;
    let mut e: Vec<(u128, u8, u32)> = (0u8..=128).filter(|l| l % 5 != 3).map(|l| (base, l, u32::from(l) + 1)).collect();
    e.push((base ^ (1 << 40), 100, 999));
    e.push((base ^ (1 << 90), 70, 998));
    let t = Lpm6::build(&e).unwrap();
    assert_eq!(t.depth(), 19, "/16 table, then 6-bit levels to bit 130");
    for bit in 0..128 {
        for a in [base ^ (1u128 << bit), base ^ (1u128 << bit) ^ 1, base] {
            assert_eq!(t.lookup(a), brute6(&e, a), "bit {bit}");
        }
    }
}

#[test]
fn big_mixed_list_matches_brute_force_on_samples() {
    // 20k prefixes, country-like lengths, deterministic.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut e4 = Vec::new();
    let mut e6 = Vec::new();
    for i in 0..20_000u32 {
        let r = rnd();
        if i % 7 == 0 {
            let l = 19 + (r % 30) as u8;
            e6.push((mask6(u128::from(rnd()) << 64 | 0x2000u128 << 112, l), l, i + 1));
        } else {
            let l = 8 + (r % 17) as u8;
            e4.push((mask4((r >> 32) as u32, l), l, i + 1));
        }
    }
    let t4 = Lpm4::build(&e4).unwrap();
    let t6 = Lpm6::build(&e6).unwrap();
    for _ in 0..300 {
        let a = rnd() as u32;
        assert_eq!(t4.lookup(a), brute4(&e4, a));
        let (p, _, _) = e4[(rnd() % e4.len() as u64) as usize];
        let a = p | (rnd() as u32 & 0xff);
        assert_eq!(t4.lookup(a), brute4(&e4, a));
        let (p, _, _) = e6[(rnd() % e6.len() as u64) as usize];
        let a = p | u128::from(rnd() & 0xffff_ffff);
        assert_eq!(t6.lookup(a), brute6(&e6, a));
    }
}

// ---------------------------------------------------------------------------------------------
// Conditions, each hit and miss

const SETS: &str = "set clients = 198.18.1.0/24, 2001:2:0:1::/64\n\
                    set servers = 198.18.10.0/28, 2001:2::10/124\n\
                    ports web = 80, 443\n";

#[test]
fn from_and_to() {
    let c = one_rule(SETS, "from clients to servers");
    assert!(hits(&c, &Pk::new("198.18.1.7", "198.18.10.3")));
    assert!(hits(&c, &Pk::new("2001:2:0:1::99", "2001:2::1f")));
    assert!(!hits(&c, &Pk::new("198.18.2.7", "198.18.10.3")), "source outside clients");
    assert!(!hits(&c, &Pk::new("198.18.1.7", "198.18.10.16")), "destination outside servers");
    assert!(!hits(&c, &Pk::new("198.18.10.3", "198.18.1.7")), "reversed");
    assert!(!hits(&c, &Pk::new("2001:2:0:2::99", "2001:2::1f")));
    let c = one_rule("", "from 198.18.1.0/24 to any");
    assert!(hits(&c, &Pk::new("198.18.1.255", "2.2.2.2")));
    assert!(!hits(&c, &Pk::new("198.18.0.255", "2.2.2.2")));
    assert!(!hits(&c, &Pk::new("2001:2::1", "2001:2::2")), "an IPv4 prefix never matches IPv6");
}

#[test]
fn proto() {
    let c = one_rule("", "proto udp");
    assert!(hits(&c, &Pk::new("198.18.0.1", "198.18.0.2").udp(1, 2)));
    assert!(!hits(&c, &Pk::new("198.18.0.1", "198.18.0.2").tcp(1, 2, SYN)));
    let c = one_rule("", "proto 47");
    let mut p = Pk::new("198.18.0.1", "198.18.0.2");
    p.proto = 47;
    assert!(hits(&c, &p));
    p.proto = 46;
    assert!(!hits(&c, &p));
}

#[test]
fn port_and_sport() {
    let c = one_rule(SETS, "proto tcp port web, 8000-8009");
    for port in [80, 443, 8000, 8005, 8009] {
        assert!(hits(&c, &Pk::new("198.18.0.1", "198.18.0.2").tcp(5000, port, SYN)), "{port}");
    }
    for port in [0, 79, 81, 442, 7999, 8010, 65535] {
        assert!(!hits(&c, &Pk::new("198.18.0.1", "198.18.0.2").tcp(5000, port, SYN)), "{port}");
    }
    let c = one_rule("", "sport 0, 19, 1900");
    assert!(hits(&c, &Pk::new("198.18.0.1", "198.18.0.2").udp(1900, 53)));
    assert!(hits(&c, &Pk::new("198.18.0.1", "198.18.0.2").udp(19, 53)));
    assert!(!hits(&c, &Pk::new("198.18.0.1", "198.18.0.2").udp(1901, 53)));
    // Port 0 stands for "no ports": a later fragment carries none.
    assert!(hits(&c, &Pk::new("198.18.0.1", "198.18.0.2").udp(0, 0).frag(FragKind::Later)));
}

#[test]
fn flags() {
    let c = one_rule("", "flags syn+!ack");
    let p = Pk::new("198.18.0.1", "198.18.0.2");
    assert!(hits(&c, &p.tcp(1, 80, SYN)));
    assert!(hits(&c, &p.tcp(1, 80, SYN | FIN)));
    assert!(!hits(&c, &p.tcp(1, 80, SYN | ACK)));
    assert!(!hits(&c, &p.tcp(1, 80, ACK)));
    assert!(!hits(&c, &p.udp(1, 80)), "flags only match TCP");
    let c = one_rule("", "flags !ack");
    assert!(hits(&c, &p.tcp(1, 80, 0)));
    assert!(!hits(&c, &p.udp(1, 80)), "flags only match TCP, even all-clear conditions");
}

#[test]
fn len() {
    let c = one_rule("", "len 0-60");
    let p = Pk::new("198.18.0.1", "198.18.0.2");
    assert!(hits(&c, &p.len(0)));
    assert!(hits(&c, &p.len(60)));
    assert!(!hits(&c, &p.len(61)));
    let c = one_rule("", "len 1400-65535");
    assert!(hits(&c, &p.len(65535)));
    assert!(!hits(&c, &p.len(1399)));
}

#[test]
fn frag() {
    let p = Pk::new("198.18.0.1", "198.18.0.2");
    let cases = [
        ("yes", [false, true, true]),
        ("no", [true, false, false]),
        ("first", [false, true, false]),
        ("later", [false, false, true]),
    ];
    for (w, want) in cases {
        let c = one_rule("", &format!("frag {w}"));
        for (f, want) in [FragKind::None, FragKind::First, FragKind::Later].into_iter().zip(want) {
            assert_eq!(hits(&c, &p.frag(f)), want, "frag {w} vs {f:?}");
        }
    }
}

#[test]
fn icmp_types() {
    let p = Pk::new("198.18.0.1", "198.18.0.2");
    let c = one_rule("", "proto icmp icmp-type echo-request");
    assert!(hits(&c, &p.icmp(1, 8)));
    assert!(!hits(&c, &p.icmp(1, 0)));
    assert!(!hits(&c, &p.icmp(58, 8)));
    let c = one_rule("", "icmp-type 3");
    assert!(hits(&c, &p.icmp(1, 3)));
    assert!(!hits(&c, &p.icmp(58, 3)), "icmp-type is ICMP (protocol 1) only");
    let p6 = Pk::new("2001:2::1", "2001:2::2");
    let c = one_rule("", "proto icmpv6 icmpv6-type packet-too-big");
    assert!(hits(&c, &p6.icmp(58, 2)));
    assert!(!hits(&c, &p6.icmp(58, 1)));
    assert!(!hits(&c, &p6.icmp(1, 2)));
    let c = one_rule("", "icmpv6-type 128");
    assert!(hits(&c, &p6.icmp(58, 128)));
    assert!(!hits(&c, &p6.icmp(1, 128)));
}

#[test]
fn service_condition() {
    let prelude = format!("{SETS}service https\n  dst servers\n  ports web\nend\nservice dns\n  dst servers\n  proto udp\n  ports 53\nend\n");
    let c = one_rule(&prelude, "service https");
    assert!(hits(&c, &Pk::new("203.0.113.9", "198.18.10.1").tcp(999, 443, SYN)));
    assert!(hits(&c, &Pk::new("2001:db8::1", "2001:2::1a").tcp(999, 80, ACK)));
    assert!(!hits(&c, &Pk::new("203.0.113.9", "198.18.10.1").tcp(999, 22, SYN)), "port");
    assert!(!hits(&c, &Pk::new("203.0.113.9", "198.18.10.1").udp(999, 443)), "proto");
    assert!(!hits(&c, &Pk::new("203.0.113.9", "198.18.11.1").tcp(999, 443, SYN)), "dst");
    let c = one_rule(&prelude, "service dns");
    assert!(hits(&c, &Pk::new("203.0.113.9", "198.18.10.1").udp(999, 53)));
    assert!(!hits(&c, &Pk::new("203.0.113.9", "198.18.10.1").tcp(999, 53, SYN)));
}

#[test]
fn all_conditions_together() {
    let c =
        one_rule(SETS, "from clients to servers proto tcp port web sport 1024-65535 flags syn+!ack len 40-80 frag no");
    let base = Pk::new("198.18.1.1", "198.18.10.1").tcp(5000, 443, SYN).len(60);
    assert!(hits(&c, &base));
    assert!(!hits(&c, &base.tcp(1000, 443, SYN)));
    assert!(!hits(&c, &base.len(81)));
    assert!(!hits(&c, &base.frag(FragKind::First)));
    assert!(!hits(&c, &base.tcp(5000, 443, SYN | ACK)));
}

// ---------------------------------------------------------------------------------------------
// Order, default, observe, services

#[test]
fn first_match_wins_and_default_applies() {
    let c = compiled(&format!(
        "{SETS}deny from clients port 22\nlimit from clients per-source 10pps\nallow observe to servers\ndefault deny\n"
    ));
    let p = Pk::new("198.18.1.1", "198.18.10.1");
    assert_eq!(c.judge(&p.tcp(1, 22, SYN).p()), Hit { rule: Some(0), action: Action::Deny, observe: false });
    assert_eq!(c.judge(&p.tcp(1, 80, SYN).p()), Hit { rule: Some(1), action: Action::Limit, observe: false });
    let q = Pk::new("203.0.113.1", "198.18.10.1");
    assert_eq!(c.judge(&q.p()), Hit { rule: Some(2), action: Action::Allow, observe: true });
    let r = Pk::new("203.0.113.1", "203.0.113.2");
    assert_eq!(c.judge(&r.p()), Hit { rule: None, action: Action::Deny, observe: false });
    let c = compiled("deny proto 47\n");
    assert_eq!(c.judge(&r.p()), Hit { rule: None, action: Action::Allow, observe: false }, "default allow");
    let h = c.judge(&Pk { proto: 47, ..r }.p());
    assert_eq!(h.rule, Some(0));
    assert_eq!(c.rules()[0].location, "t.rules:1");
    assert_eq!(c.rules()[0].text, "deny proto 47");
}

#[test]
fn services_and_protection() {
    let c = compiled(&format!(
        "{SETS}service https\n  dst servers\n  ports web\n  syn track\nend\nservice all\n  dst 198.18.10.0/24\nend\nservice dns\n  dst 2001:2::53\n  proto udp\n  ports 53\nend\n"
    ));
    let (v6, d) = addr("198.18.10.2");
    assert_eq!(c.service(v6, &d, 6, 443), Some(0));
    assert_eq!(c.service(v6, &d, 6, 22), Some(1), "falls through to the next service");
    assert_eq!(c.service(v6, &d, 17, 443), None);
    let (v6, d) = addr("198.18.10.200");
    assert_eq!(c.service(v6, &d, 6, 443), Some(1));
    assert!(c.is_protected(v6, &d));
    let (v6, d) = addr("198.18.11.1");
    assert_eq!(c.service(v6, &d, 6, 443), None);
    assert!(!c.is_protected(v6, &d));
    let (v6, d) = addr("2001:2::53");
    assert_eq!(c.service(v6, &d, 17, 53), Some(2));
    assert!(c.is_protected(v6, &d));
    let (v6, d) = addr("2001:2::54");
    assert!(!c.is_protected(v6, &d));
    assert!(c.is_protected(true, &addr("2001:2::1f").1), "in servers");
    let s = &c.services()[0];
    assert_eq!((s.name.as_str(), s.proto, s.syn), ("https", 6, SynMode::Track));
    assert_eq!(c.services()[2].proto, 17);

    let any = compiled("service everything\n  dst any\nend\n");
    assert!(any.is_protected(false, &addr("1.2.3.4").1));
    assert_eq!(any.service(true, &addr("2001:2::9").1, 6, 1), Some(0));
    let none = compiled("deny proto 47\n");
    assert!(!none.is_protected(false, &addr("198.18.0.1").1));
    assert_eq!(none.service(false, &addr("198.18.0.1").1, 6, 80), None);
}

#[test]
fn limits_and_bucket_defaults() {
    let c = compiled(
        "limit proto udp per-source 200pps burst 400 aggregate 100kpps 400Mbps burst 20k\n\
         limit proto tcp new-conns 20/s burst 40 max-conns 64\n\
         limit proto 47 per-source 8Mbps new-conns 5/s aggregate 1kpps\n\
         limit proto 50 per-source 2kpps 20Mbps\n",
    );
    let l = |i: usize| c.rules()[i].limits.clone();
    assert_eq!(
        l(0),
        [
            CLimit::PerSource { pps: Some(Bucket { rate: 200, burst: 400 }), bps: None },
            // 20k packets at 100 kpps = 0.2 s; 0.2 s of 400 Mbps = 10 MB.
            CLimit::Aggregate {
                pps: Some(Bucket { rate: 100_000, burst: 20_000 }),
                bps: Some(Bucket { rate: 400_000_000, burst: 10_000_000 })
            },
        ]
    );
    assert_eq!(l(1), [CLimit::NewConns(Bucket { rate: 20, burst: 40 }), CLimit::MaxConns(64)]);
    assert_eq!(
        l(2),
        [
            CLimit::PerSource { pps: None, bps: Some(Bucket { rate: 8_000_000, burst: 1_000_000 }) },
            CLimit::NewConns(Bucket { rate: 5, burst: 5 }),
            CLimit::Aggregate { pps: Some(Bucket { rate: 1000, burst: 1000 }), bps: None },
        ]
    );
    assert_eq!(
        l(3),
        [CLimit::PerSource {
            pps: Some(Bucket { rate: 2000, burst: 2000 }),
            bps: Some(Bucket { rate: 20_000_000, burst: 2_500_000 })
        }]
    );
    assert!(c.rules()[0].text.contains("per-source 200pps burst 400"), "{}", c.rules()[0].text);
}

// ---------------------------------------------------------------------------------------------
// protect_policy

#[test]
fn protect_policy_builds_one_tcp_service_per_target() {
    let targets: Vec<_> =
        ["198.18.0.10:80", "198.18.0.11", "[2001:2::10]:443"].iter().map(|t| parse_target(t).unwrap()).collect();
    let p = protect_policy(&targets, SynMode::Track);
    assert!(p.rules.is_empty());
    assert_eq!(p.settings.default, Action::Allow);
    let names: Vec<_> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["198.18.0.10:80", "198.18.0.11", "[2001:2::10]:443"]);
    // The same defaults as a service written in a rule file.
    let written = policy("service x\n  dst 198.18.0.10\nend\n").services.remove(0);
    for s in &p.services {
        assert_eq!(s.syn, SynMode::Track);
        assert_eq!(
            (s.mss, s.wscale, s.sack, s.timestamps),
            (written.mss, written.wscale, written.sack, written.timestamps)
        );
        assert_eq!(
            (s.idle_embryonic, s.idle_established, s.idle_closing, s.pickup),
            (written.idle_embryonic, written.idle_established, written.idle_closing, written.pickup)
        );
        assert_eq!(s.proto, written.proto);
    }
    assert_eq!(p.services[0].dst, written.dst);
    let c = compile(&p).unwrap();
    let (v6, a) = addr("198.18.0.10");
    assert_eq!(c.service(v6, &a, 6, 80), Some(0));
    assert_eq!(c.service(v6, &a, 6, 81), None);
    assert_eq!(c.service(v6, &a, 17, 80), None);
    let (v6, b) = addr("198.18.0.11");
    assert_eq!(c.service(v6, &b, 6, 1), Some(1));
    assert_eq!(c.service(v6, &b, 6, 65535), Some(1));
    assert!(c.is_protected(v6, &b));
    assert!(!c.is_protected(v6, &addr("198.18.0.12").1));
    let (v6, d) = addr("2001:2::10");
    assert_eq!(c.service(v6, &d, 6, 443), Some(2));
    assert!(c.is_protected(v6, &d));
    assert!(!c.is_protected(v6, &addr("2001:2::11").1));
    assert_eq!(c.judge(&Pk::new("203.0.113.1", "198.18.0.10").p()).action, Action::Allow);
    assert_eq!(c.services()[2].mss, Learnable::Learn);
    assert_eq!(c.services()[2].sack, Toggle::Learn);
    assert_eq!(c.services()[0].idle_established, Duration::from_secs(300));
    assert_eq!(compile(&protect_policy(&[], SynMode::Proxy)).unwrap().services().len(), 0);
}

// ---------------------------------------------------------------------------------------------
// Identity

#[test]
fn fingerprints_are_stable_and_distinguish_rules() {
    let text =
        format!("{SETS}deny from clients port 22\nlimit to servers per-source 10pps burst 20\nallow proto icmp\n");
    let a = compiled(&text);
    // Re-parsed, moved down and with comments: same fingerprints, different locations.
    let b = compiled(&format!("# a comment\n\n{text}"));
    let fa: Vec<_> = a.rules().iter().map(|r| r.fingerprint).collect();
    let fb: Vec<_> = b.rules().iter().map(|r| r.fingerprint).collect();
    assert_eq!(fa, fb);
    assert_ne!(a.rules()[0].location, b.rules()[0].location);
    let mut uniq = fa.clone();
    uniq.sort_unstable();
    uniq.dedup();
    assert_eq!(uniq.len(), 3);
    // Set contents change: the rules keep their fingerprints, the generation changes.
    let c = compiled(&text.replace("198.18.1.0/24", "198.18.2.0/24"));
    assert_eq!(c.rules().iter().map(|r| r.fingerprint).collect::<Vec<_>>(), fa);
    assert_ne!(c.generation_id(), a.generation_id());
    assert_eq!(compiled(&text).generation_id(), a.generation_id(), "deterministic");
    // Any change to a rule changes its fingerprint (and only its).
    for (from, to) in [
        ("port 22", "port 23"),
        ("deny from", "deny observe from"),
        ("deny from clients", "allow from clients"),
        ("from clients port 22", "from servers port 22"),
    ] {
        let d = compiled(&text.replace(from, to));
        assert_ne!(d.rules()[0].fingerprint, fa[0], "{from} -> {to}");
        assert_eq!(d.rules()[1].fingerprint, fa[1]);
        assert_ne!(d.generation_id(), a.generation_id());
    }
    let d = compiled(&text.replace("burst 20", "burst 21"));
    assert_ne!(d.rules()[1].fingerprint, fa[1]);
    assert_eq!(d.rules()[0].fingerprint, fa[0]);
    // Settings are part of the generation.
    assert_ne!(compiled(&format!("{text}default deny\n")).generation_id(), a.generation_id());
    // Two copies of one rule get two fingerprints.
    let e = compiled("deny proto 47\ndeny proto 47\n");
    assert_ne!(e.rules()[0].fingerprint, e.rules()[1].fingerprint);
}

// ---------------------------------------------------------------------------------------------
// Examples, sizes, errors

fn example(name: &str) -> Policy {
    let path = rulespec::resolve(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"), &format!("../examples/{name}"));
    let checked = check(&path, &FsSource::default());
    assert!(!checked.has_errors(), "{}", checked.render());
    checked.policy.unwrap()
}

#[test]
fn examples_compile() {
    let p = example("web-frontend.rules");
    let c = compile(&p).unwrap();
    assert_eq!(c.rules().len(), p.rules.len());
    assert_eq!(c.services().len(), 3);
    let s = c.stats();
    assert!(s.prefixes_v4 > 0 && s.prefixes_v6 > 0 && s.classes > 1, "{s:?}");
    assert!(c.memory_bytes() > 256 * 1024, "root tables alone are 256 KiB+");
    for (r, pr) in c.rules().iter().zip(&p.rules) {
        assert!(p.summary().contains(&r.text), "{}", r.text);
        assert_eq!(r.location, pr.location);
    }
    // Something from the blocklist is denied by rule 0; office may reach admin.
    let office = Pk::new("198.18.200.5", "198.18.10.1").tcp(4000, 22, SYN);
    let h = c.judge(&office.p());
    assert_eq!(c.rules()[h.rule.unwrap() as usize].text, "allow from office service admin");
    let stranger = Pk::new("203.0.113.5", "198.18.10.1").tcp(4000, 22, SYN);
    assert_eq!(c.judge(&stranger.p()).action, Action::Deny);
    let https = Pk::new("203.0.113.5", "198.18.10.1").tcp(4000, 443, SYN);
    assert_eq!(c.judge(&https.p()).action, Action::Limit);
    assert_eq!(c.service(false, &https.dst, 6, 443), Some(0));
    assert!(format!("{c:?}").len() < 20_000, "Debug does not dump the tables");

    let p = example("dns-and-icmp.rules");
    let c = compile(&p).unwrap();
    let q = Pk::new("203.0.113.5", "198.18.53.1").udp(4000, 53);
    assert_eq!(c.judge(&q.p()).action, Action::Limit);
    assert_eq!(c.judge(&q.udp(1900, 53).p()).action, Action::Deny);
    assert_eq!(c.judge(&q.len(30).p()).action, Action::Deny);
}

#[test]
fn stats_and_memory_grow_with_the_lists() {
    let small = compiled("set a = 198.18.0.0/24\ndeny from a\n");
    let mut list = String::new();
    for i in 0..2000u32 {
        list.push_str(&format!("{}.{}.{}.0/24\n2001:2:{:x}::/48\n", 10 + i / 65536, (i / 256) % 256, i % 256, i));
    }
    let big = compile(&policy_with("set a file \"l.txt\"\ndeny from a\n", &[("l.txt", &list)])).unwrap();
    let (s, b) = (small.stats(), big.stats());
    assert_eq!((s.prefixes_v4, s.prefixes_v6), (1, 0));
    assert_eq!((b.prefixes_v4, b.prefixes_v6), (2000, 2000));
    assert_eq!(b.lpm4_nodes, 8, "2000 /24s in 8 /16s");
    // 2000 /48s 2001:2:i::/48: nodes for bits 16–22, 22–28, 28–34 and 34–40 (one each: i <
    // 2048), 40–46 (one per i >> 8: 8) and 46–52, where the /48s end (one per i >> 2: 500).
    assert_eq!(b.lpm6_depth, 6);
    assert_eq!(b.lpm6_nodes, 1 + 1 + 1 + 1 + 8 + 500);
    assert!(
        big.memory_bytes() > small.memory_bytes() + 512 * 24,
        "v6 nodes counted: {} vs {}",
        big.memory_bytes(),
        small.memory_bytes()
    );
    assert_eq!(b.classes, 2);
    // Sets that nothing uses cost nothing.
    let unused = compile(&policy_with("set a file \"l.txt\"\ndeny proto 47\n", &[("l.txt", &list)])).unwrap();
    assert_eq!(unused.stats().prefixes_v4, 0);
    assert_eq!(unused.in_set("a", false, &addr("10.0.0.1").1), None);
}

#[test]
fn unchecked_policies_are_rejected_with_a_reason() {
    let mut p = policy("set a = 198.18.0.0/24\ndeny from a\n");
    p.sets.clear();
    let e = compile(&p).unwrap_err();
    assert!(e.to_string().contains("unknown prefix set 'a'") && e.to_string().contains("t.rules:2"), "{e}");
    let mut p = policy("service s\n  dst any\nend\nallow service s\n");
    p.services.clear();
    assert!(compile(&p).unwrap_err().to_string().contains("unknown service 's'"));
    let mut p = policy("allow proto 47\n");
    let r = p.rules[0].clone();
    p.rules = vec![r; 70_000];
    assert!(matches!(compile(&p), Err(rulespec::CompileError::TooManyRules { count: 70_000 })));
}

#[test]
fn http_checks_request_limits_and_bans_compile_as_written() {
    // The form of the HTTP-flood issue, exactly as written there.
    let c = compiled(
        "set web-servers = 198.18.0.10/32\n\
         service web\n  dst web-servers\n  ports 80\n  \
         http max-header-bytes 8k max-header-line 4k max-headers 64 methods GET,HEAD,POST\nend\n\
         service plain\n  dst 198.18.0.11\n  http\nend\n\
         service junk\n  dst 198.18.0.12\n  http max-header-bytes 1M ban 10m after 3\nend\n\
         limit service web per-source requests 20/s burst 40 ban 10m after 5\n\
         limit service plain per-source requests 5/s\n",
    );
    let h = c.services()[0].http.clone().expect("web has http");
    assert_eq!((h.max_header_bytes, h.max_header_line, h.max_headers), (8192, 4096, 64));
    assert_eq!(h.methods, ["GET", "HEAD", "POST"]);
    assert_eq!(h.ban, None);
    let d = c.services()[1].http.clone().expect("plain has http");
    assert_eq!(
        (d.max_header_bytes, d.max_header_line, d.max_headers, d.methods.len()),
        (16 << 10, 8 << 10, 100, 0),
        "defaults: 16k head, 8k line, 100 headers, any method"
    );
    let j = c.services()[2].http.clone().unwrap();
    assert_eq!(j.max_header_bytes, 1 << 20);
    assert_eq!(j.ban, Some(rulespec::Ban { duration: std::time::Duration::from_secs(600), after: 3 }));
    let r = &c.rules()[0];
    assert_eq!(r.limits, [CLimit::Requests(Bucket { rate: 20, burst: 40 })]);
    assert_eq!(r.ban, Some(rulespec::Ban { duration: std::time::Duration::from_secs(600), after: 5 }));
    assert!(r.text.contains("per-source requests 20/s burst 40") && r.text.contains("ban 600s after 5"), "{}", r.text);
    assert_eq!(c.rules()[1].limits, [CLimit::Requests(Bucket { rate: 5, burst: 5 })], "burst defaults to one second");
    assert_eq!(c.rules()[1].ban, None);
    assert_ne!(c.rules()[0].fingerprint, compiled_rule_without_ban(), "the ban is part of the rule");
}

fn compiled_rule_without_ban() -> u64 {
    let c = compiled(
        "service web\n  dst 198.18.0.10/32\n  ports 80\n  http\nend\n\
         limit service web per-source requests 20/s burst 40\n",
    );
    c.rules()[0].fingerprint
}
