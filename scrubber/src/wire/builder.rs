//! Frame construction for tests, tools and benchmarks. Unlike the rest of [`crate::wire`],
//! this module allocates.
//!
//! Built frames are not padded to the 60-byte Ethernet minimum: their length is exactly the
//! headers plus payload. Every checksum is correct. When the source and destination address
//! families differ, the source's family wins: an IPv4 destination is mapped into IPv6
//! (`::ffff:a.b.c.d`), an IPv6 destination into IPv4 when it is IPv4-mapped (otherwise
//! `0.0.0.0`).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::arp::{ArpPacket, ArpRepr, OP_REQUEST};
use super::ethernet::{self, EthernetFrame, EthernetRepr, VlanTag};
use super::icmp::IcmpPacket;
use super::icmpv6::{self, Icmpv6Packet};
use super::ipv4::{Ipv4Packet, Ipv4Repr};
use super::ipv6::{self, walk_ext_headers, Ipv6Packet, Ipv6Repr};
use super::tcp::{self, OptionsRepr, TcpPacket, TcpRepr};
use super::udp::{UdpPacket, UdpRepr};
use super::{Error, Result, ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_QINQ, ETH_VLAN};
use super::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

/// Default source MAC of built frames.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Default destination MAC of built frames.
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Default TTL / hop limit of built frames.
pub const DEFAULT_TTL: u8 = 64;
/// Default TCP window of [`TcpFrame::new`].
pub const DEFAULT_WINDOW: u16 = 64240;

/// A complete Ethernet / optional VLAN tags / IPv4-or-IPv6 / TCP frame as values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpFrame {
    /// Source MAC address.
    pub src_mac: [u8; 6],
    /// Destination MAC address.
    pub dst_mac: [u8; 6],
    /// VLAN TCIs, outermost first; with two tags the outer uses TPID 0x88a8, otherwise
    /// 0x8100.
    pub vlans: Vec<u16>,
    /// IP source.
    pub src: IpAddr,
    /// IP destination.
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// TCP source port.
    pub src_port: u16,
    /// TCP destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// TCP flags (see [`tcp::flags`]).
    pub flags: u8,
    /// Window (unscaled).
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// TCP options (at most 40 bytes once emitted).
    pub options: OptionsRepr,
    /// TCP payload.
    pub payload: Vec<u8>,
}

impl TcpFrame {
    /// A frame with defaults: MACs 02:00:00:00:00:01 → 02:00:00:00:00:02, no VLAN, TTL 64,
    /// sequence and acknowledgment 0, window 64240, urgent 0, no options, no payload.
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, flags: u8) -> TcpFrame {
        TcpFrame {
            src_mac: SRC_MAC,
            dst_mac: DST_MAC,
            vlans: Vec::new(),
            src,
            dst,
            ttl: DEFAULT_TTL,
            src_port: sport,
            dst_port: dport,
            seq: 0,
            ack: 0,
            flags,
            window: DEFAULT_WINDOW,
            urgent: 0,
            options: OptionsRepr::default(),
            payload: Vec::new(),
        }
    }

    /// The TCP header fields as a [`TcpRepr`].
    pub fn tcp_repr(&self) -> TcpRepr {
        TcpRepr {
            src_port: self.src_port,
            dst_port: self.dst_port,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            window: self.window,
            urgent: self.urgent,
            options: self.options,
            payload_len: self.payload.len(),
        }
    }

    /// Builds the frame: IPv4 (DF, identification 0, TOS 0) or IPv6 (traffic class 0, flow
    /// label 0), with correct IPv4 header and TCP checksums. Not padded.
    ///
    /// # Panics
    /// If the options take more than 40 bytes (e.g. timestamps with four SACK blocks).
    pub fn build(&self) -> Vec<u8> {
        let repr = self.tcp_repr();
        let mut seg = vec![0u8; repr.buffer_len()];
        let mut t = TcpPacket::new_unchecked(&mut seg[..]);
        repr.emit(&mut t);
        t.payload_mut().copy_from_slice(&self.payload);
        let (s, d, v6) = addrs(self.src, self.dst);
        tcp::fill_checksum(&mut seg, &s, &d, v6);
        ip_frame(self.src_mac, self.dst_mac, &self.vlans, &s, &d, v6, self.ttl, IPPROTO_TCP, &seg)
    }

    /// Parses a frame built by [`build`](Self::build) (or any Ethernet / up to two VLAN tags
    /// / IP / TCP frame): the inverse of `build`.
    ///
    /// IPv6 extension headers are skipped; IP fragments, non-IP frames and non-TCP packets
    /// are `Malformed`; a bad IPv4 header or TCP checksum is `BadChecksum`; truncation is
    /// `Truncated`. IP fields `build` does not represent (TOS, identification, flow label,
    /// IPv4 options) are ignored.
    pub fn parse(frame: &[u8]) -> Result<TcpFrame> {
        let eth = EthernetFrame::new_checked(frame)?;
        let mut ethertype = eth.ethertype();
        let mut off = ethernet::HEADER_LEN;
        let mut vlans = Vec::new();
        while ethertype == ETH_VLAN || ethertype == ETH_QINQ {
            if vlans.len() == 2 {
                return Err(Error::Malformed);
            }
            let tag = VlanTag::new_checked(&frame[off..])?;
            vlans.push(tag.tci());
            ethertype = tag.ethertype();
            off += ethernet::VLAN_TAG_LEN;
        }
        let l3 = &frame[off..];
        let (src, dst, s, d, v6, ttl, l4) = match ethertype {
            ETH_IPV4 => {
                let ip = Ipv4Packet::new_checked(l3)?;
                let r = Ipv4Repr::parse(&ip)?;
                if r.protocol != IPPROTO_TCP || ip.more_frags() || ip.frag_offset() != 0 {
                    return Err(Error::Malformed);
                }
                let hl = ip.header_len();
                let l4 = &l3[hl..hl + r.payload_len];
                let (s, d) = (pad4(r.src), pad4(r.dst));
                (IpAddr::V4(Ipv4Addr::from(r.src)), IpAddr::V4(Ipv4Addr::from(r.dst)), s, d, false, r.ttl, l4)
            }
            ETH_IPV6 => {
                let ip = Ipv6Packet::new_checked(l3)?;
                let r = Ipv6Repr::parse(&ip)?;
                let payload = &l3[ipv6::HEADER_LEN..ipv6::HEADER_LEN + r.payload_len];
                let w = walk_ext_headers(r.next_header, payload)?;
                if w.proto != IPPROTO_TCP || w.frag.is_some_and(|f| f.offset != 0 || f.more) {
                    return Err(Error::Malformed);
                }
                let l4 = &payload[w.offset..];
                (
                    IpAddr::V6(Ipv6Addr::from(r.src)),
                    IpAddr::V6(Ipv6Addr::from(r.dst)),
                    r.src,
                    r.dst,
                    true,
                    r.hop_limit,
                    l4,
                )
            }
            _ => return Err(Error::Malformed),
        };
        let t = TcpPacket::new_checked(l4)?;
        if !t.verify_checksum(&s, &d, v6) {
            return Err(Error::BadChecksum);
        }
        let r = TcpRepr::parse(&t)?;
        Ok(TcpFrame {
            src_mac: eth.src_addr(),
            dst_mac: eth.dst_addr(),
            vlans,
            src,
            dst,
            ttl,
            src_port: r.src_port,
            dst_port: r.dst_port,
            seq: r.seq,
            ack: r.ack,
            flags: r.flags,
            window: r.window,
            urgent: r.urgent,
            options: r.options,
            payload: t.payload().to_vec(),
        })
    }
}

fn pad4(a: [u8; 4]) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[..4].copy_from_slice(&a);
    x
}

/// 16-byte addresses (crate convention) and the family, the source's family winning.
fn addrs(src: IpAddr, dst: IpAddr) -> ([u8; 16], [u8; 16], bool) {
    match src {
        IpAddr::V4(s) => {
            let d = match dst {
                IpAddr::V4(d) => d,
                IpAddr::V6(d) => d.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
            };
            (pad4(s.octets()), pad4(d.octets()), false)
        }
        IpAddr::V6(s) => {
            let d = match dst {
                IpAddr::V6(d) => d,
                IpAddr::V4(d) => d.to_ipv6_mapped(),
            };
            (s.octets(), d.octets(), true)
        }
    }
}

/// Ethernet header plus VLAN tags.
fn l2(src_mac: [u8; 6], dst_mac: [u8; 6], vlans: &[u16], ethertype: u16) -> Vec<u8> {
    let mut f = vec![0u8; ethernet::HEADER_LEN];
    EthernetRepr { src: src_mac, dst: dst_mac, ethertype }.emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
    with_vlans(&f, vlans)
}

/// Ethernet / VLANs / IP header around an L4 segment whose checksum is already filled.
#[allow(clippy::too_many_arguments)]
fn ip_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlans: &[u16],
    s: &[u8; 16],
    d: &[u8; 16],
    v6: bool,
    ttl: u8,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = l2(src_mac, dst_mac, vlans, if v6 { ETH_IPV6 } else { ETH_IPV4 });
    let off = f.len();
    if v6 {
        f.resize(off + ipv6::HEADER_LEN, 0);
        Ipv6Repr { src: *s, dst: *d, next_header: proto, payload_len: l4.len(), hop_limit: ttl }
            .emit(&mut Ipv6Packet::new_unchecked(&mut f[off..]));
    } else {
        f.resize(off + super::ipv4::HEADER_LEN, 0);
        Ipv4Repr {
            src: [s[0], s[1], s[2], s[3]],
            dst: [d[0], d[1], d[2], d[3]],
            protocol: proto,
            payload_len: l4.len(),
            ttl,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut f[off..]));
    }
    f.extend_from_slice(l4);
    f
}

/// A UDP frame with default MACs and TTL, no VLAN, correct checksums. Not padded.
pub fn udp_frame(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let (s, d, v6) = addrs(src, dst);
    let mut seg = vec![0u8; super::udp::HEADER_LEN + payload.len()];
    let mut u = UdpPacket::new_unchecked(&mut seg[..]);
    UdpRepr { src_port: sport, dst_port: dport, payload_len: payload.len() }.emit(&mut u);
    u.payload_mut().copy_from_slice(payload);
    u.fill_checksum(&s, &d, v6);
    ip_frame(SRC_MAC, DST_MAC, &[], &s, &d, v6, DEFAULT_TTL, IPPROTO_UDP, &seg)
}

/// An echo request without data: ICMP type 8 over IPv4, ICMPv6 type 128 over IPv6. Default
/// MACs and TTL, no VLAN, correct checksums. Not padded.
pub fn icmp_echo(src: IpAddr, dst: IpAddr, id: u16, seq: u16) -> Vec<u8> {
    let (s, d, v6) = addrs(src, dst);
    let mut seg = vec![0u8; 8];
    if v6 {
        let mut m = Icmpv6Packet::new_unchecked(&mut seg[..]);
        m.set_msg_type(icmpv6::ECHO_REQUEST);
        m.set_echo_ident(id);
        m.set_echo_seq_no(seq);
        m.fill_checksum(&s, &d);
        ip_frame(SRC_MAC, DST_MAC, &[], &s, &d, true, DEFAULT_TTL, IPPROTO_ICMPV6, &seg)
    } else {
        let mut m = IcmpPacket::new_unchecked(&mut seg[..]);
        m.set_msg_type(super::icmp::ECHO_REQUEST);
        m.set_echo_ident(id);
        m.set_echo_seq_no(seq);
        m.fill_checksum();
        ip_frame(SRC_MAC, DST_MAC, &[], &s, &d, false, DEFAULT_TTL, IPPROTO_ICMP, &seg)
    }
}

/// A broadcast ARP request "who has `target_ip`, tell `sender_ip`" from `sender_mac` (42
/// bytes, not padded).
pub fn arp_request(sender_mac: [u8; 6], sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut f = l2(sender_mac, [0xff; 6], &[], ETH_ARP);
    let off = f.len();
    f.resize(off + super::arp::PACKET_LEN, 0);
    ArpRepr {
        operation: OP_REQUEST,
        sender_hw_addr: sender_mac,
        sender_proto_addr: sender_ip,
        target_hw_addr: [0; 6],
        target_proto_addr: target_ip,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut f[off..]));
    f
}

/// A neighbor solicitation for `target` from `src` (MAC [`SRC_MAC`]), sent to the
/// solicited-node multicast address ff02::1:ffXX:XXXX (MAC 33:33:ff:XX:XX:XX), hop limit 255,
/// with a source link-layer address option unless `src` is unspecified (duplicate address
/// detection).
pub fn neighbor_solicitation(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let mut dst = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    dst[13..].copy_from_slice(&t[13..]);
    let dst_mac = [0x33, 0x33, 0xff, t[13], t[14], t[15]];
    let mut seg = vec![0u8; 24];
    seg[8..24].copy_from_slice(&t);
    if !src.is_unspecified() {
        seg.extend_from_slice(&[1, 1]);
        seg.extend_from_slice(&SRC_MAC);
    }
    let s = src.octets();
    let mut m = Icmpv6Packet::new_unchecked(&mut seg[..]);
    m.set_msg_type(icmpv6::NEIGHBOR_SOLICIT);
    m.fill_checksum(&s, &dst);
    ip_frame(SRC_MAC, dst_mac, &[], &s, &dst, true, 255, IPPROTO_ICMPV6, &seg)
}

/// Inserts VLAN tags with the given TCIs (outermost first) after the MAC addresses of
/// `frame`. With exactly two tags the outer one uses TPID 0x88a8 (802.1ad) and the inner
/// 0x8100; otherwise every tag uses 0x8100. A frame shorter than 12 bytes is returned
/// unchanged.
pub fn with_vlans(frame: &[u8], tcis: &[u16]) -> Vec<u8> {
    if frame.len() < 12 {
        return frame.to_vec();
    }
    let mut f = Vec::with_capacity(frame.len() + 4 * tcis.len());
    f.extend_from_slice(&frame[..12]);
    for (i, &tci) in tcis.iter().enumerate() {
        let tpid = if tcis.len() == 2 && i == 0 { ETH_QINQ } else { ETH_VLAN };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&frame[12..]);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::dissect;
    use crate::wire::tcp::{flags, SackBlocks};
    use proptest::prelude::*;

    #[test]
    fn defaults_and_build() {
        let f = TcpFrame::new("198.18.0.1".parse().unwrap(), 40000, "198.18.0.10".parse().unwrap(), 80, flags::SYN);
        assert_eq!(f.window, 64240);
        assert_eq!(f.ttl, 64);
        let b = f.build();
        assert_eq!(b.len(), 14 + 20 + 20);
        assert_eq!(&b[..12], &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        assert_eq!(&b[20..22], &[0x40, 0x00]); // DF, offset 0
        assert_eq!(TcpFrame::parse(&b), Ok(f.clone()));
        let mut bad = b.clone();
        bad[50] ^= 1; // TCP checksum
        assert_eq!(TcpFrame::parse(&bad), Err(Error::BadChecksum));
        let mut bad = b.clone();
        bad[24] ^= 1; // IPv4 header checksum
        assert_eq!(TcpFrame::parse(&bad), Err(Error::BadChecksum));
        let u = udp_frame(f.src, 1, f.dst, 2, b"x");
        assert_eq!(TcpFrame::parse(&u), Err(Error::Malformed));
        assert_eq!(TcpFrame::parse(&arp_request([1; 6], [1; 4], [2; 4])), Err(Error::Malformed));
        for n in 0..b.len() {
            assert!(TcpFrame::parse(&b[..n]).is_err());
        }
        // Mixed families: the source family wins.
        let m = TcpFrame::new("10.0.0.1".parse().unwrap(), 1, "::ffff:10.0.0.2".parse().unwrap(), 2, 0);
        let p = TcpFrame::parse(&m.build()).unwrap();
        assert_eq!(p.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn neighbor_solicitation_dad() {
        let f = neighbor_solicitation(Ipv6Addr::UNSPECIFIED, "2001:db8::abcd:1234".parse().unwrap());
        let d = dissect(&f).unwrap();
        assert!(d.nd);
        assert_eq!(d.l4_len, 24);
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0xcd, 0x12, 0x34]);
    }

    fn ip_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<[u8; 4]>())
                .prop_map(|(a, b)| (IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V4(Ipv4Addr::from(b)))),
            (any::<[u8; 16]>(), any::<[u8; 16]>())
                .prop_map(|(a, b)| (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))),
        ]
    }

    fn options() -> impl Strategy<Value = OptionsRepr> {
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u8..=14),
            any::<bool>(),
            proptest::option::of(any::<(u32, u32)>()),
            proptest::collection::vec(any::<(u32, u32)>(), 0..=4),
        )
            .prop_map(|(mss, wscale, sack_permitted, timestamp, blocks)| {
                let mut sack = SackBlocks::default();
                // Timestamps (12) + 4 blocks (36) exceed 40 bytes: keep at most 3 then.
                let max = if timestamp.is_some() { 3 } else { 4 };
                for b in blocks.into_iter().take(max) {
                    sack.push(b);
                }
                let mut r = OptionsRepr { mss, wscale, sack_permitted, timestamp, sack };
                // MSS + TS + WS + 3 blocks = 48: drop optional ones until it fits.
                if r.buffer_len() > tcp::MAX_OPTIONS_LEN {
                    r.wscale = None;
                }
                if r.buffer_len() > tcp::MAX_OPTIONS_LEN {
                    r.mss = None;
                }
                r
            })
    }

    prop_compose! {
        fn tcp_frame()((src, dst) in ip_pair(),
                       src_mac in any::<[u8; 6]>(), dst_mac in any::<[u8; 6]>(),
                       vlans in proptest::collection::vec(any::<u16>(), 0..=2),
                       ttl in any::<u8>(), src_port in any::<u16>(), dst_port in any::<u16>(),
                       seq in any::<u32>(), ack in any::<u32>(), flags in any::<u8>(),
                       window in any::<u16>(), urgent in any::<u16>(),
                       options in options(),
                       payload in proptest::collection::vec(any::<u8>(), 0..200)) -> TcpFrame {
            TcpFrame { src_mac, dst_mac, vlans, src, dst, ttl, src_port, dst_port, seq, ack, flags,
                       window, urgent, options, payload }
        }
    }

    proptest! {
        #[test]
        fn round_trip(f in tcp_frame()) {
            let b = f.build();
            prop_assert_eq!(TcpFrame::parse(&b), Ok(f.clone()));
            let d = dissect(&b).unwrap();
            prop_assert_eq!(usize::from(d.vlans), f.vlans.len());
            prop_assert_eq!(d.proto, IPPROTO_TCP);
            prop_assert_eq!(d.l4_len, 20 + f.options.buffer_len() + f.payload.len());
            prop_assert_eq!(d.l4_off + d.l4_len, b.len());
        }

        #[test]
        fn parse_never_panics(d in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = TcpFrame::parse(&d);
        }

        #[test]
        fn udp_and_echo_dissect((src, dst) in ip_pair(), payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            let u = udp_frame(src, 1000, dst, 2000, &payload);
            let d = dissect(&u).unwrap();
            prop_assert_eq!(d.l4_len, 8 + payload.len());
            let e = icmp_echo(src, dst, 1, 2);
            let d = dissect(&e).unwrap();
            prop_assert_eq!(d.proto, if d.v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP });
        }
    }
}
