//! The one-pass frame dissector the engine runs on every frame.
//!
//! [`dissect`] walks Ethernet, up to two VLAN tags, ARP / IPv4 / IPv6 (with extension
//! headers) and the L4 header, without allocating, and returns everything the later stages
//! read: addresses, protocol, ports, ICMP type, and for TCP the header fields and the parsed
//! options with their offsets ([`TcpHead`]). Nothing after it parses the frame again. Every
//! offset it returns is in bounds of the frame: `l3_off ≤ frame.len()`,
//! `l4_off + l4_len ≤ frame.len()` and, for TCP, `l4_off + tcp.header_len ≤ l4_off + l4_len`.

use super::ipv4::Ipv4Packet;
use super::ipv6::{walk_ext_headers, Ipv6Packet};
use super::tcp::TcpOptions;
use super::{be16, be32, ethernet, icmpv6, tcp, ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_QINQ, ETH_VLAN};
use super::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

/// The network layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// ARP.
    Arp,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// Any other EtherType (not inspected).
    Other,
}

/// Where an IP packet sits in a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frag {
    /// Not a fragment (offset 0, more-fragments clear; includes IPv6 atomic fragments).
    None,
    /// The first fragment: offset 0, more-fragments set. Carries the L4 header.
    First,
    /// A later fragment: offset > 0. Carries no L4 header.
    Later,
}

/// Why [`dissect`] rejected a frame: the layer that was malformed or truncated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DissectError {
    /// Shorter than the 14-byte Ethernet header.
    Ethernet,
    /// A truncated VLAN tag, or more than two tags.
    Vlan,
    /// A truncated or malformed IPv4 header (see [`Ipv4Packet::check`]).
    Ipv4,
    /// A bad IPv4 header checksum.
    Ipv4Checksum,
    /// A truncated or malformed IPv6 header or extension-header chain.
    Ipv6,
    /// A truncated TCP header, or a data offset below 5 words or beyond the segment.
    Tcp,
    /// A truncated ARP packet or UDP / ICMP / ICMPv6 header.
    L4,
}

/// What [`dissect`] found in a frame.
#[derive(Clone, Copy, Debug)]
pub struct Dissected {
    /// Number of 802.1Q / 802.1ad tags (0..=2).
    pub vlans: u8,
    /// The innermost EtherType.
    pub ethertype: u16,
    /// Offset of the IP / ARP header (the byte after the innermost EtherType).
    pub l3_off: usize,
    /// The network layer.
    pub net: Net,
    /// Whether the network layer is IPv6.
    pub v6: bool,
    /// IP source address (IPv4 in the first 4 bytes, the rest zero; all zero for non-IP).
    pub src: [u8; 16],
    /// IP destination address (same convention).
    pub dst: [u8; 16],
    /// Upper-layer protocol after any IPv6 extension headers (0 for non-IP).
    pub proto: u8,
    /// TTL / hop limit (0 for non-IP).
    pub ttl: u8,
    /// Offset of the L4 header in the frame (`l3_off` for non-IP).
    pub l4_off: usize,
    /// Bytes of L4 header and payload according to the IP header (Ethernet padding
    /// excluded; 0 for non-IP).
    pub l4_len: usize,
    /// Fragment position.
    pub frag: Frag,
    /// ICMPv6 neighbour discovery (types 133..=137).
    pub nd: bool,
    /// IPv4 don't-fragment flag (false for IPv6, which routers never fragment).
    pub df: bool,
    /// Source port (TCP and UDP that carry their header; 0 otherwise).
    pub sport: u16,
    /// Destination port (same convention).
    pub dport: u16,
    /// ICMP (over IPv4) or ICMPv6 (over IPv6) message type, when the header is present.
    pub icmp_type: Option<u8>,
    /// The TCP header, read once (all zero unless `proto` is TCP and the packet carries its
    /// header, i.e. `frag != Frag::Later`).
    pub tcp: TcpHead,
}

/// The TCP header fields every later stage reads, and the options parsed once.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpHead {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// The flag byte (CWR ECE URG ACK PSH RST SYN FIN; see [`tcp::flags`]).
    pub flags: u8,
    /// Window field, unscaled.
    pub window: u16,
    /// Header length in bytes (20..=60): the options are `l4_off + 20 .. l4_off + header_len`.
    pub header_len: usize,
    /// Payload bytes after the header (Ethernet padding excluded).
    pub payload_len: usize,
    /// The options as [`tcp::parse_options`] reads them (offsets relative to the first option
    /// byte); default when `opts_ok` is false.
    pub opts: TcpOptions,
    /// Whether the option bytes parsed. Malformed options are not a dissect error: the engine
    /// decides per path whether it needs them.
    pub opts_ok: bool,
}

impl TcpHead {
    /// No TCP header.
    pub const EMPTY: TcpHead = TcpHead {
        seq: 0,
        ack: 0,
        flags: 0,
        window: 0,
        header_len: 0,
        payload_len: 0,
        opts: TcpOptions::NONE,
        opts_ok: false,
    };

    /// The options, or `Err` when they did not parse.
    #[inline]
    pub fn options(&self) -> Result<&TcpOptions, super::Error> {
        if self.opts_ok {
            Ok(&self.opts)
        } else {
            Err(super::Error::Malformed)
        }
    }

    /// Whether every flag in `mask` is set.
    #[inline]
    pub fn has(&self, mask: u8) -> bool {
        self.flags & mask == mask
    }
}

impl Dissected {
    /// Nothing dissected yet (a frame of no known ethertype).
    pub const EMPTY: Dissected = Dissected {
        vlans: 0,
        ethertype: 0,
        l3_off: 0,
        net: Net::Other,
        v6: false,
        src: [0; 16],
        dst: [0; 16],
        proto: 0,
        ttl: 0,
        l4_off: 0,
        l4_len: 0,
        frag: Frag::None,
        nd: false,
        df: false,
        sport: 0,
        dport: 0,
        icmp_type: None,
        tcp: TcpHead::EMPTY,
    };

    /// Length of the IP packet (header, extension headers and payload) from the IP header:
    /// Ethernet padding is not part of it.
    #[inline]
    pub fn ip_len(&self) -> usize {
        self.l4_off + self.l4_len - self.l3_off
    }

    /// Offset of the first TCP option byte in the frame.
    #[inline]
    pub fn tcp_opts_off(&self) -> usize {
        self.l4_off + tcp::HEADER_LEN
    }

    /// The L4 header and payload within `frame` (the frame passed to [`dissect`]); empty if
    /// `frame` is not that frame and the range is out of bounds.
    #[inline]
    pub fn l4<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame.get(self.l4_off..self.l4_off + self.l4_len).unwrap_or(&[])
    }
}

/// Length of an Ethernet/IPv4 ARP packet, the minimum accepted for `Net::Arp`.
const ARP_LEN: usize = super::arp::PACKET_LEN;

/// Dissects one Ethernet frame.
///
/// * Ethernet header (14 bytes) else [`DissectError::Ethernet`].
/// * Up to two VLAN tags (TPID 0x8100 or 0x88a8, in any order); a third, or a truncated
///   tag → [`DissectError::Vlan`].
/// * ARP → [`Net::Arp`] if the 28-byte Ethernet/IPv4 ARP packet is present (the hardware and
///   protocol types are not checked), else [`DissectError::L4`].
/// * IPv4: [`Ipv4Packet::check`] (→ `Ipv4`) and the header checksum (→ `Ipv4Checksum`).
/// * IPv6: [`Ipv6Packet::check`] and [`walk_ext_headers`] (→ `Ipv6`).
/// * Other EtherTypes → `Ok` with [`Net::Other`].
/// * Unless the packet is a [`Frag::Later`] fragment: TCP needs a full header with a valid
///   data offset (→ `Tcp`); UDP needs 8 bytes, ICMP (over IPv4) and ICMPv6 (over IPv6) 4
///   bytes (→ `L4`), and `nd` is set for ICMPv6 types 133..=137. Other protocols are
///   accepted with `proto` set.
#[inline]
pub fn dissect(frame: &[u8]) -> Result<Dissected, DissectError> {
    let mut d = Dissected::EMPTY;
    dissect_into(frame, &mut d).map(|()| d)
}

/// [`dissect`] into `d`, which must be [`Dissected::EMPTY`] (as a fresh local is): the form the
/// engine uses per frame, so that the result is written in place rather than moved. Fields the
/// frame does not have keep their `EMPTY` values.
#[inline]
pub fn dissect_into(frame: &[u8], d: &mut Dissected) -> Result<(), DissectError> {
    if frame.len() < ethernet::HEADER_LEN {
        return Err(DissectError::Ethernet);
    }
    let mut ethertype = be16(frame, 12);
    let mut off = ethernet::HEADER_LEN;
    let mut vlans = 0u8;
    while ethertype == ETH_VLAN || ethertype == ETH_QINQ {
        if vlans == 2 || frame.len() < off + ethernet::VLAN_TAG_LEN {
            return Err(DissectError::Vlan);
        }
        ethertype = be16(frame, off + 2);
        off += ethernet::VLAN_TAG_LEN;
        vlans += 1;
    }
    d.vlans = vlans;
    d.ethertype = ethertype;
    d.l3_off = off;
    d.l4_off = off;
    let l3 = &frame[off..];
    match ethertype {
        ETH_IPV4 => ipv4(l3, d)?,
        ETH_IPV6 => ipv6(l3, d)?,
        ETH_ARP => {
            if l3.len() < ARP_LEN {
                return Err(DissectError::L4);
            }
            d.net = Net::Arp;
            return Ok(());
        }
        _ => return Ok(()),
    }
    if d.frag != Frag::Later {
        l4(frame, d)?;
    }
    Ok(())
}

#[inline(always)]
fn ipv4(l3: &[u8], d: &mut Dissected) -> Result<(), DissectError> {
    let ip = Ipv4Packet::new_checked(l3).map_err(|_| DissectError::Ipv4)?;
    if !ip.verify_checksum() {
        return Err(DissectError::Ipv4Checksum);
    }
    let hl = ip.header_len();
    d.net = Net::Ipv4;
    d.src[..4].copy_from_slice(&ip.src_addr());
    d.dst[..4].copy_from_slice(&ip.dst_addr());
    d.proto = ip.protocol();
    d.ttl = ip.ttl();
    d.df = ip.dont_frag();
    d.l4_off = d.l3_off + hl;
    d.l4_len = usize::from(ip.total_len()) - hl;
    d.frag = if ip.frag_offset() != 0 {
        Frag::Later
    } else if ip.more_frags() {
        Frag::First
    } else {
        Frag::None
    };
    Ok(())
}

#[inline(always)]
fn ipv6(l3: &[u8], d: &mut Dissected) -> Result<(), DissectError> {
    let ip = Ipv6Packet::new_checked(l3).map_err(|_| DissectError::Ipv6)?;
    let payload = ip.payload();
    let w = walk_ext_headers(ip.next_header(), payload).map_err(|_| DissectError::Ipv6)?;
    d.net = Net::Ipv6;
    d.v6 = true;
    d.src = ip.src_addr();
    d.dst = ip.dst_addr();
    d.proto = w.proto;
    d.ttl = ip.hop_limit();
    d.l4_off = d.l3_off + super::ipv6::HEADER_LEN + w.offset;
    d.l4_len = payload.len() - w.offset;
    d.frag = match w.frag {
        Some(f) if f.offset != 0 => Frag::Later,
        Some(f) if f.more => Frag::First,
        _ => Frag::None,
    };
    Ok(())
}

#[inline(always)]
fn l4(frame: &[u8], d: &mut Dissected) -> Result<(), DissectError> {
    let l4 = frame.get(d.l4_off..d.l4_off + d.l4_len).ok_or(DissectError::L4)?;
    match d.proto {
        IPPROTO_TCP => {
            if l4.len() < tcp::HEADER_LEN {
                return Err(DissectError::Tcp);
            }
            let hl = usize::from(l4[12] >> 4) * 4;
            if hl < tcp::HEADER_LEN || hl > l4.len() {
                return Err(DissectError::Tcp);
            }
            d.sport = be16(l4, 0);
            d.dport = be16(l4, 2);
            let opts = tcp::parse_options(&l4[tcp::HEADER_LEN..hl]);
            d.tcp = TcpHead {
                seq: be32(l4, 4),
                ack: be32(l4, 8),
                flags: l4[13],
                window: be16(l4, 14),
                header_len: hl,
                payload_len: l4.len() - hl,
                opts_ok: opts.is_ok(),
                opts: opts.unwrap_or_default(),
            };
        }
        IPPROTO_UDP => {
            if l4.len() < super::udp::HEADER_LEN {
                return Err(DissectError::L4);
            }
            d.sport = be16(l4, 0);
            d.dport = be16(l4, 2);
        }
        IPPROTO_ICMP if !d.v6 => {
            if l4.len() < 4 {
                return Err(DissectError::L4);
            }
            d.icmp_type = Some(l4[0]);
        }
        IPPROTO_ICMPV6 if d.v6 => {
            if l4.len() < 4 {
                return Err(DissectError::L4);
            }
            d.icmp_type = Some(l4[0]);
            d.nd = icmpv6::is_neighbor_discovery(l4[0]);
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{self, TcpFrame};
    use crate::wire::tcp::flags;
    use core::net::{IpAddr, Ipv6Addr};
    use proptest::prelude::*;

    /// Linux SYN (see `tcp.rs`): 10.0.2.15:48350 → 93.184.216.34:80.
    const SYN: [u8; 74] = [
        0x52, 0x54, 0x00, 0x12, 0x35, 0x02, 0x08, 0x00, 0x27, 0x8a, 0x1f, 0x3c, 0x08, 0x00, 0x45, 0x00, 0x00, 0x3c,
        0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0xdc, 0x8c, 0x0a, 0x00, 0x02, 0x0f, 0x5d, 0xb8, 0xd8, 0x22, 0xbc, 0xde,
        0x00, 0x50, 0x6a, 0x3b, 0x9c, 0x01, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0xdd, 0x19, 0x00, 0x00,
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x3e, 0x8f, 0x2c, 0x11, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03,
        0x03, 0x07,
    ];

    /// IPv6 SYN-ACK 2001:db8::10:443 → 2001:db8::1:51000, MSS 1440, SACK_PERM, TS, WS 9.
    const V6_SYNACK: [u8; 94] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, 0x60, 0x00, 0x00, 0x00,
        0x00, 0x28, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x10, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x01, 0xbb, 0xc7, 0x38, 0xde, 0xad, 0xbe, 0xef, 0x6a, 0x3b, 0x9c, 0x02, 0xa0, 0x12, 0xfe, 0x88, 0x6f, 0xd2,
        0x00, 0x00, 0x02, 0x04, 0x05, 0xa0, 0x04, 0x02, 0x08, 0x0a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
        0x01, 0x03, 0x03, 0x09,
    ];

    /// ARP request who-has 192.168.1.1 tell 192.168.1.100 (unpadded).
    const ARP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x1b, 0x21, 0x3a, 0x4c, 0x5d, 0x08, 0x06, 0x00, 0x01, 0x08, 0x00,
        0x06, 0x04, 0x00, 0x01, 0x00, 0x1b, 0x21, 0x3a, 0x4c, 0x5d, 0xc0, 0xa8, 0x01, 0x64, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01,
    ];

    /// IPv6 UDP 2001:db8::1 → 2001:db8::2 with hop-by-hop (router alert) and a first-fragment
    /// header (see `ipv6.rs`).
    fn hbh_frag() -> Vec<u8> {
        let mut f = vec![0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        f.extend_from_slice(&[
            0x60, 0x0a, 0xbc, 0xde, 0x00, 0x20, 0x00, 0x40, // ver tc fl, len 32, nh 0, hlim 64
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // dst
            0x2c, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00, // HBH
            0x11, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, // fragment: first, more
            0x04, 0xd2, 0x16, 0x2e, 0x00, 0x10, 0x00, 0x00, // UDP
            0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
        ]);
        f
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut x = [0u8; 16];
        x[..4].copy_from_slice(&a);
        x
    }

    fn assert_truncations_fail(frame: &[u8]) {
        for n in 0..frame.len() {
            let r = dissect(&frame[..n]);
            assert!(r.is_err(), "prefix of {n} bytes accepted: {r:?}");
            if n < 14 {
                assert_eq!(r.unwrap_err(), DissectError::Ethernet);
            }
        }
        assert!(dissect(frame).is_ok());
    }

    #[test]
    fn linux_syn() {
        let d = dissect(&SYN).unwrap();
        assert_eq!(d.vlans, 0);
        assert_eq!(d.ethertype, ETH_IPV4);
        assert_eq!(d.l3_off, 14);
        assert_eq!(d.net, Net::Ipv4);
        assert!(!d.v6);
        assert_eq!(d.src, v4([10, 0, 2, 15]));
        assert_eq!(d.dst, v4([93, 184, 216, 34]));
        assert_eq!(d.proto, IPPROTO_TCP);
        assert_eq!(d.ttl, 64);
        assert_eq!(d.l4_off, 34);
        assert_eq!(d.l4_len, 40);
        assert_eq!(d.frag, Frag::None);
        assert!(!d.nd);
        assert_eq!(d.l4(&SYN), &SYN[34..]);
        assert_eq!((d.sport, d.dport, d.icmp_type), (48350, 80, None));
        assert_eq!((d.tcp.seq, d.tcp.ack, d.tcp.flags, d.tcp.window), (0x6a3b_9c01, 0, flags::SYN, 0xfaf0));
        assert_eq!((d.tcp.header_len, d.tcp.payload_len, d.tcp_opts_off(), d.ip_len()), (40, 0, 54, 60));
        assert!(d.tcp.opts_ok);
        assert_eq!(d.tcp.options().unwrap(), &crate::wire::tcp::parse_options(&SYN[54..74]).unwrap());
        assert_eq!((d.tcp.opts.mss, d.tcp.opts.wscale, d.tcp.opts.ts_offset), (Some(1460), Some(7), Some(8)));
        // Malformed options are recorded, not refused.
        let mut bad = SYN;
        bad[55] = 1; // MSS option length 1
        let db = dissect(&bad).unwrap();
        assert!(!db.tcp.opts_ok && db.tcp.options().is_err());
        assert_truncations_fail(&SYN);
        // Ethernet padding is accepted and excluded from l4_len.
        let mut padded = SYN.to_vec();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(dissect(&padded).unwrap().l4_len, 40);
    }

    #[test]
    fn ipv6_synack() {
        let d = dissect(&V6_SYNACK).unwrap();
        assert_eq!(d.net, Net::Ipv6);
        assert!(d.v6);
        assert_eq!(d.ethertype, ETH_IPV6);
        assert_eq!(d.src, "2001:db8::10".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(d.dst, "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!((d.proto, d.ttl, d.l4_off, d.l4_len), (6, 64, 54, 40));
        assert_eq!(d.frag, Frag::None);
        let t = crate::wire::tcp::TcpPacket::new_checked(d.l4(&V6_SYNACK)).unwrap();
        assert!(t.verify_checksum(&d.src, &d.dst, true));
        assert_eq!(t.flags(), flags::SYN | flags::ACK);
        let o = crate::wire::tcp::parse_options(t.options()).unwrap();
        assert_eq!(
            (o.mss, o.wscale, o.sack_permitted, o.timestamp),
            (Some(1440), Some(9), true, Some((0x11223344, 0x55667788)))
        );
        assert_truncations_fail(&V6_SYNACK);
        let f = TcpFrame::parse(&V6_SYNACK).unwrap();
        assert_eq!(f.build(), V6_SYNACK.to_vec());
    }

    #[test]
    fn qinq_tagged_syn() {
        let f = builder::with_vlans(&SYN, &[0x6064, 0x00c8]);
        assert_eq!(&f[12..22], &[0x88, 0xa8, 0x60, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x08, 0x00]);
        let d = dissect(&f).unwrap();
        assert_eq!((d.vlans, d.ethertype, d.l3_off, d.l4_off, d.l4_len), (2, ETH_IPV4, 22, 42, 40));
        assert_eq!(d.proto, IPPROTO_TCP);
        assert_truncations_fail(&f);
        for n in 14..22 {
            assert_eq!(dissect(&f[..n]).unwrap_err(), DissectError::Vlan, "{n}");
        }
        // Three tags are refused.
        let f3 = builder::with_vlans(&SYN, &[1, 2, 3]);
        assert_eq!(dissect(&f3).unwrap_err(), DissectError::Vlan);
        let f1 = builder::with_vlans(&SYN, &[5]);
        assert_eq!(&f1[12..14], &[0x81, 0x00]);
        assert_eq!(dissect(&f1).unwrap().vlans, 1);
    }

    #[test]
    fn arp() {
        let d = dissect(&ARP).unwrap();
        assert_eq!((d.net, d.ethertype, d.l3_off, d.proto, d.l4_len), (Net::Arp, ETH_ARP, 14, 0, 0));
        for n in 14..ARP.len() {
            assert_eq!(dissect(&ARP[..n]).unwrap_err(), DissectError::L4);
        }
        assert_truncations_fail(&ARP);
        let b = builder::arp_request([0x00, 0x1b, 0x21, 0x3a, 0x4c, 0x5d], [192, 168, 1, 100], [192, 168, 1, 1]);
        assert_eq!(b, ARP.to_vec());
    }

    #[test]
    fn neighbor_solicitation() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let target: Ipv6Addr = "fe80::2".parse().unwrap();
        let f = builder::neighbor_solicitation(src, target);
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0x00, 0x00, 0x02]);
        let d = dissect(&f).unwrap();
        assert_eq!((d.net, d.proto, d.ttl, d.nd), (Net::Ipv6, IPPROTO_ICMPV6, 255, true));
        assert_eq!(d.dst, "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap().octets());
        let m = crate::wire::icmpv6::Icmpv6Packet::new_checked(d.l4(&f)).unwrap();
        assert!(m.verify_checksum(&d.src, &d.dst));
        assert_eq!(m.nd_target(), Some(target.octets()));
        assert_eq!(&m.data()[16..], &[1, 1, 2, 0, 0, 0, 0, 1]);
        assert_truncations_fail(&f);
        // An echo request is not neighbour discovery.
        let e = builder::icmp_echo(IpAddr::V6(src), IpAddr::V6(target), 1, 2);
        let d = dissect(&e).unwrap();
        assert_eq!((d.proto, d.nd), (IPPROTO_ICMPV6, false));
    }

    #[test]
    fn udp_and_icmp() {
        let f = builder::udp_frame("192.0.2.1".parse().unwrap(), 53000, "192.0.2.2".parse().unwrap(), 53, b"hello");
        let d = dissect(&f).unwrap();
        assert_eq!((d.proto, d.l4_off, d.l4_len), (IPPROTO_UDP, 34, 13));
        assert_eq!((d.sport, d.dport, d.tcp.flags), (53000, 53, 0));
        let u = crate::wire::udp::UdpPacket::new_checked(d.l4(&f)).unwrap();
        assert!(u.verify_checksum(&d.src, &d.dst, false));
        assert_eq!(u.payload(), b"hello");
        assert_truncations_fail(&f);
        let f = builder::icmp_echo("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap(), 7, 9);
        let d = dissect(&f).unwrap();
        assert_eq!((d.proto, d.l4_len, d.icmp_type), (IPPROTO_ICMP, 8, Some(8)));
        let m = crate::wire::icmp::IcmpPacket::new_checked(d.l4(&f)).unwrap();
        assert!(m.verify_checksum());
        assert_eq!((m.msg_type(), m.echo_ident(), m.echo_seq_no()), (8, 7, 9));
        assert_truncations_fail(&f);
    }

    #[test]
    fn ipv6_hbh_fragment() {
        let f = hbh_frag();
        let d = dissect(&f).unwrap();
        assert_eq!((d.proto, d.frag, d.l4_off, d.l4_len), (IPPROTO_UDP, Frag::First, 14 + 40 + 16, 16));
        assert_truncations_fail(&f);
        // Make it a later fragment: offset 0x100, the UDP header is not checked.
        let mut later = f.clone();
        later[14 + 48 + 2..14 + 48 + 4].copy_from_slice(&[0x08, 0x00]);
        let d = dissect(&later).unwrap();
        assert_eq!((d.proto, d.frag), (IPPROTO_UDP, Frag::Later));
        // Hop-by-hop after the fragment header is malformed.
        let mut bad = f.clone();
        bad[14 + 48] = 0;
        assert_eq!(dissect(&bad).unwrap_err(), DissectError::Ipv6);
    }

    #[test]
    fn ipv4_errors_and_fragments() {
        let mut b = SYN;
        b[24] ^= 0x01; // header checksum
        assert_eq!(dissect(&b).unwrap_err(), DissectError::Ipv4Checksum);
        let mut b = SYN;
        b[14] = 0x55; // version 5
        assert_eq!(dissect(&b).unwrap_err(), DissectError::Ipv4);
        let mut b = SYN;
        b[46] = 0x40; // TCP data offset 4
        assert_eq!(dissect(&b).unwrap_err(), DissectError::Tcp);
        b[46] = 0xb0; // data offset 11 > 40 bytes
        assert_eq!(dissect(&b).unwrap_err(), DissectError::Tcp);
        // A later fragment skips the L4 check.
        let mut ip = crate::wire::ipv4::Ipv4Packet::new_checked(&mut b[14..]).unwrap();
        ip.set_frag_offset(100);
        ip.fill_checksum();
        assert_eq!(dissect(&b).unwrap().frag, Frag::Later);
        let mut ip = crate::wire::ipv4::Ipv4Packet::new_checked(&mut b[14..]).unwrap();
        ip.set_frag_offset(0);
        ip.set_more_frags(true);
        ip.fill_checksum();
        assert_eq!(dissect(&b).unwrap_err(), DissectError::Tcp);
        let mut ip = crate::wire::ipv4::Ipv4Packet::new_checked(&mut b[34 - 20..]).unwrap();
        ip.set_protocol(47); // GRE: accepted, not inspected
        ip.fill_checksum();
        let d = dissect(&b).unwrap();
        assert_eq!((d.proto, d.frag), (47, Frag::First));
        // Non-IP ethertypes.
        let mut o = SYN;
        o[12..14].copy_from_slice(&[0x88, 0xcc]);
        let d = dissect(&o).unwrap();
        assert_eq!((d.net, d.ethertype, d.proto, d.l4_off, d.l4_len), (Net::Other, 0x88cc, 0, 14, 0));
    }

    fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..1600)
    }

    fn check_bounds(frame: &[u8]) {
        if let Ok(d) = dissect(frame) {
            assert!(d.l3_off <= frame.len());
            assert!(d.l4_off + d.l4_len <= frame.len());
            assert!(d.vlans <= 2);
            if d.proto == IPPROTO_TCP && d.frag != Frag::Later {
                assert!(d.tcp.header_len >= 20 && d.tcp.header_len + d.tcp.payload_len == d.l4_len);
                if d.tcp.opts_ok {
                    let n = d.tcp.header_len - 20;
                    assert!(d.tcp.opts.ts_offset.is_none_or(|o| usize::from(o) + 8 <= n));
                    let sack_end = |o: u8| usize::from(o) + 8 * usize::from(d.tcp.opts.sack_blocks);
                    assert!(d.tcp.opts.sack_offset.is_none_or(|o| sack_end(o) <= n));
                }
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics(d in arb_bytes()) {
            check_bounds(&d);
        }

        /// Random bytes after a valid Ethernet/IPv4 prefix whose length and checksum are
        /// fixed up, so that the TCP/UDP/ICMP paths are reached.
        #[test]
        fn deep_ipv4(proto in prop::sample::select(vec![6u8, 17, 1, 58, 47]),
                     ihl in 5u8..=7, frag in 0u16..4, tail in arb_bytes()) {
            let mut f = SYN[..34].to_vec();
            f.extend_from_slice(&tail);
            let hl = usize::from(ihl) * 4;
            let tl = (f.len() - 14).max(hl).min(0xffff);
            f.resize(14 + tl, 0);
            let mut ip = crate::wire::ipv4::Ipv4Packet::new_unchecked(&mut f[14..]);
            ip.set_header_len(hl);
            ip.set_total_len(tl as u16);
            ip.set_protocol(proto);
            ip.set_frag_offset(if frag == 3 { 1 } else { 0 });
            ip.set_more_frags(frag == 2);
            ip.fill_checksum();
            check_bounds(&f);
            let _ = TcpFrame::parse(&f);
            prop_assert!(!matches!(dissect(&f), Err(DissectError::Ipv4 | DissectError::Ipv4Checksum | DissectError::Ethernet)));
        }

        /// Random bytes after a valid Ethernet/IPv6 prefix (payload length fixed up), with
        /// extension-header next-header values favoured.
        #[test]
        fn deep_ipv6(nh in prop::sample::select(vec![0u8, 43, 44, 51, 60, 6, 17, 58, 59]),
                     tail in proptest::collection::vec(prop::sample::select(vec![0u8, 1, 2, 6, 8, 17, 43, 44, 51, 58, 60, 135, 0xff]), 0..200)) {
            let mut f = V6_SYNACK[..54].to_vec();
            f[20] = nh;
            f.extend_from_slice(&tail);
            let pl = (tail.len() as u16).to_be_bytes();
            f[18..20].copy_from_slice(&pl);
            check_bounds(&f);
            let _ = TcpFrame::parse(&f);
        }

        /// Valid TCP/IPv4 prefix, random TCP header and options.
        #[test]
        fn deep_tcp(tail in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut f = SYN[..34].to_vec();
            f.extend_from_slice(&tail);
            let tl = (f.len() - 14) as u16;
            let mut ip = crate::wire::ipv4::Ipv4Packet::new_unchecked(&mut f[14..]);
            ip.set_total_len(tl);
            ip.fill_checksum();
            check_bounds(&f);
            if let Ok(d) = dissect(&f) {
                let t = crate::wire::tcp::TcpPacket::new_checked(d.l4(&f)).unwrap();
                let _ = crate::wire::tcp::parse_options(t.options());
            }
            let _ = TcpFrame::parse(&f);
        }
    }
}
