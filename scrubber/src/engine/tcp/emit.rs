//! Segments the engine writes into frames, through the `wire` Reprs: answers (cookie SYN-ACKs,
//! ACKs to backends, window updates), backend SYNs, and RSTs made from the frame at hand.

use crate::engine::FrameBuf;
use crate::wire::frame::Dissected;
use crate::wire::ipv4::{Ipv4Packet, Ipv4Repr};
use crate::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use crate::wire::tcp::{self, flags as tf, OptionsRepr, TcpPacket, TcpRepr, MAX_OPTIONS_LEN};
use crate::wire::IPPROTO_TCP;

/// Hop limit / TTL of the segments the scrubber writes.
const TTL: u8 = 64;

/// The frame's buffer has no room for the segment (the data plane gives every frame a full
/// UMEM chunk, so this means a misconfigured caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoRoom;

/// A segment to write: its addresses (16 bytes, IPv4 in the first four) and its TCP header.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// The TCP header (no payload).
    pub tcp: TcpRepr,
}

impl Segment {
    /// A segment without payload from `src:sport` to `dst:dport`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        src: [u8; 16],
        dst: [u8; 16],
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        options: OptionsRepr,
    ) -> Segment {
        Segment {
            src,
            dst,
            tcp: TcpRepr {
                src_port: sport,
                dst_port: dport,
                seq,
                ack,
                flags,
                window,
                urgent: 0,
                options,
                payload_len: 0,
            },
        }
    }
}

/// Write a fresh IP header (no options, no extension headers) and the segment at the frame's
/// L3 offset; the Ethernet header and VLAN tags are left as they are. The frame's length
/// becomes the end of the segment.
pub fn write_segment(frame: &mut FrameBuf<'_>, d: &Dissected, s: &Segment) -> Result<(), NoRoom> {
    write_segment_with(frame, d, s, &[])
}

/// [`write_segment`] with `payload` after the header.
pub fn write_segment_with(frame: &mut FrameBuf<'_>, d: &Dissected, s: &Segment, payload: &[u8]) -> Result<(), NoRoom> {
    let opt_len = s.tcp.options.buffer_len();
    if opt_len > MAX_OPTIONS_LEN {
        return Err(NoRoom);
    }
    let tcp_len = tcp::HEADER_LEN + opt_len + payload.len();
    let ip_len = if d.v6 { crate::wire::ipv6::HEADER_LEN } else { crate::wire::ipv4::HEADER_LEN };
    let total = d.l3_off + ip_len + tcp_len;
    let Some(b) = frame.buf.get_mut(d.l3_off..total) else { return Err(NoRoom) };
    let (ip, seg) = b.split_at_mut(ip_len);
    if d.v6 {
        let repr = Ipv6Repr { src: s.src, dst: s.dst, next_header: IPPROTO_TCP, payload_len: tcp_len, hop_limit: TTL };
        repr.emit(&mut Ipv6Packet::new_unchecked(ip));
    } else {
        let v4 = |a: &[u8; 16]| [a[0], a[1], a[2], a[3]];
        let repr = Ipv4Repr { src: v4(&s.src), dst: v4(&s.dst), protocol: IPPROTO_TCP, payload_len: tcp_len, ttl: TTL };
        repr.emit(&mut Ipv4Packet::new_unchecked(ip));
    }
    let mut t = s.tcp;
    t.payload_len = payload.len();
    t.emit(&mut TcpPacket::new_unchecked(&mut *seg));
    seg[tcp_len - payload.len()..].copy_from_slice(payload);
    tcp::fill_checksum(seg, &s.src, &s.dst, d.v6);
    frame.len = total;
    Ok(())
}

/// Turn the frame's segment into a bare RST (no ACK) with sequence number `seq`, checksum
/// recomputed; addresses, ports and payload stay.
pub fn bare_rst(d: &Dissected, frame: &mut FrameBuf<'_>, seq: u32) {
    let Some(seg) = frame.buf.get_mut(d.l4_off..d.l4_off + d.l4_len) else { return };
    if let Ok(mut t) = TcpPacket::new_checked(&mut *seg) {
        t.set_seq_number(seq);
        t.set_ack_number(0);
        t.set_flags(tf::RST);
    }
    tcp::fill_checksum(seg, &d.src, &d.dst, d.v6);
}

/// Swap the Ethernet source and destination addresses (an answer goes back where the frame
/// came from).
pub fn swap_macs(buf: &mut [u8]) {
    if buf.len() >= 12 {
        let (a, b) = buf.split_at_mut(6);
        a.swap_with_slice(&mut b[..6]);
    }
}
