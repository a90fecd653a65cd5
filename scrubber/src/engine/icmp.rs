//! Path MTU discovery through the bump: a frame larger than the egress link's MTU is answered
//! with ICMP "fragmentation needed" (IPv4, RFC 1191) or ICMPv6 "packet too big" (RFC 8201),
//! from the frame's destination address — as a middle box may — written into the frame's own
//! buffer: the original IP packet, cut to what an ICMP error may quote (576 bytes in all for
//! IPv4, 1280 for IPv6), moves behind a fresh IP and ICMP header.

use super::tcp::emit::{swap_macs, NoRoom};
use super::FrameBuf;
use crate::wire::frame::Dissected;
use crate::wire::icmp::{IcmpPacket, DEST_UNREACHABLE};
use crate::wire::icmpv6::{Icmpv6Packet, PACKET_TOO_BIG};
use crate::wire::ipv4::{Ipv4Packet, Ipv4Repr};
use crate::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use crate::wire::{IPPROTO_ICMP, IPPROTO_ICMPV6};

/// ICMP code of "fragmentation needed and DF set".
const FRAG_NEEDED: u8 = 4;
/// Largest ICMPv4 error datagram (RFC 1812 §4.3.2.3).
const V4_ERROR_MAX: usize = 576;
/// Largest ICMPv6 error packet (RFC 4443 §2.4 (c): the IPv6 minimum MTU).
const V6_ERROR_MAX: usize = 1280;
/// Hop limit / TTL of the errors.
const TTL: u8 = 64;

/// Turn the frame (an IP packet of `d`) into the ICMP error telling its sender that the path
/// carries at most `mtu` bytes, addressed back to the sender from the packet's destination.
pub fn write_too_big(frame: &mut FrameBuf<'_>, d: &Dissected, mtu: u16) -> Result<(), NoRoom> {
    let ip_len = frame.len.saturating_sub(d.l3_off).min(d.ip_len().max(1));
    let (hdr, max) = if d.v6 { (40, V6_ERROR_MAX) } else { (20, V4_ERROR_MAX) };
    let quote = ip_len.min(max - hdr - 8);
    let total = d.l3_off + hdr + 8 + quote;
    if total > frame.buf.len() || d.l3_off + ip_len > frame.len {
        return Err(NoRoom);
    }
    frame.buf.copy_within(d.l3_off..d.l3_off + quote, d.l3_off + hdr + 8);
    let b = &mut frame.buf[d.l3_off..total];
    let (ip, icmp) = b.split_at_mut(hdr);
    if d.v6 {
        let repr =
            Ipv6Repr { src: d.dst, dst: d.src, next_header: IPPROTO_ICMPV6, payload_len: 8 + quote, hop_limit: TTL };
        repr.emit(&mut Ipv6Packet::new_unchecked(ip));
        let mut m = Icmpv6Packet::new_unchecked(icmp);
        m.set_msg_type(PACKET_TOO_BIG);
        m.set_msg_code(0);
        m.set_rest_of_header(u32::from(mtu));
        m.fill_checksum(&d.dst, &d.src);
    } else {
        let v4 = |a: &[u8; 16]| [a[0], a[1], a[2], a[3]];
        let repr =
            Ipv4Repr { src: v4(&d.dst), dst: v4(&d.src), protocol: IPPROTO_ICMP, payload_len: 8 + quote, ttl: TTL };
        repr.emit(&mut Ipv4Packet::new_unchecked(ip));
        let mut m = IcmpPacket::new_unchecked(icmp);
        m.set_msg_type(DEST_UNREACHABLE);
        m.set_msg_code(FRAG_NEEDED);
        m.set_rest_of_header(u32::from(mtu));
        m.fill_checksum();
    }
    swap_macs(frame.buf);
    frame.len = total;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::TcpFrame;
    use crate::wire::frame::dissect;
    use crate::wire::tcp::flags as tf;

    fn big(src: &str, dst: &str, payload: usize) -> Vec<u8> {
        let mut f = TcpFrame::new(src.parse().unwrap(), 40000, dst.parse().unwrap(), 80, tf::ACK | tf::PSH);
        f.seq = 0x0102_0304;
        f.payload = vec![0x5a; payload];
        f.build()
    }

    #[test]
    fn ipv4_fragmentation_needed_quotes_the_packet_from_the_destination() {
        let f = big("198.18.1.1", "198.18.0.10", 1400);
        let d = dissect(&f).unwrap();
        let mut buf = vec![0u8; 2048];
        buf[..f.len()].copy_from_slice(&f);
        let mut fb = FrameBuf::new(&mut buf, f.len());
        write_too_big(&mut fb, &d, 1280).unwrap();
        let out = fb.frame().to_vec();
        assert_eq!(out.len(), 14 + 576, "the error is at most 576 bytes");
        assert_eq!((&out[..6], &out[6..12]), (&f[6..12], &f[..6]), "MACs swapped");
        let e = dissect(&out).unwrap();
        assert_eq!((e.proto, e.icmp_type), (IPPROTO_ICMP, Some(DEST_UNREACHABLE)));
        assert_eq!((e.src, e.dst), (d.dst, d.src), "from the destination back to the sender");
        let m = IcmpPacket::new_checked(e.l4(&out)).unwrap();
        assert!(m.verify_checksum());
        assert_eq!((m.msg_code(), m.rest_of_header()), (FRAG_NEEDED, 1280));
        // The quoted packet starts with the original IP and TCP headers.
        assert_eq!(&m.data()[..40], &f[14..54]);
    }

    #[test]
    fn ipv6_packet_too_big() {
        let f = big("2001:2::1", "2001:2::10", 1400);
        let d = dissect(&f).unwrap();
        let mut buf = vec![0u8; 2048];
        buf[..f.len()].copy_from_slice(&f);
        let mut fb = FrameBuf::new(&mut buf, f.len());
        write_too_big(&mut fb, &d, 1280).unwrap();
        let out = fb.frame().to_vec();
        assert_eq!(out.len(), 14 + 1280);
        let e = dissect(&out).unwrap();
        assert_eq!((e.proto, e.icmp_type, e.src, e.dst), (IPPROTO_ICMPV6, Some(PACKET_TOO_BIG), d.dst, d.src));
        let m = Icmpv6Packet::new_checked(e.l4(&out)).unwrap();
        assert!(m.verify_checksum(&e.src, &e.dst));
        assert_eq!(m.rest_of_header(), 1280);
        assert_eq!(&m.data()[..60], &f[14..74]);
    }

    #[test]
    fn small_buffers_are_refused_not_overrun() {
        let f = big("198.18.1.1", "198.18.0.10", 100);
        let d = dissect(&f).unwrap();
        let mut buf = f.clone();
        let mut fb = FrameBuf::new(&mut buf, f.len());
        assert_eq!(write_too_big(&mut fb, &d, 100), Err(NoRoom));
    }
}
