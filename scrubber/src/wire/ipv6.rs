//! IPv6 headers (RFC 8200) and the extension-header walk.

use super::{be16, be32, put16, put32, Error, Result};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// The most extension headers [`walk_ext_headers`] follows before giving up (`Malformed`).
pub const MAX_EXT_HEADERS: usize = 8;

/// Next-header value of the hop-by-hop options header.
pub const NH_HOP_BY_HOP: u8 = 0;
/// Next-header value of the routing header.
pub const NH_ROUTING: u8 = 43;
/// Next-header value of the fragment header.
pub const NH_FRAGMENT: u8 = 44;
/// Next-header value of ESP (not walked: the rest is encrypted).
pub const NH_ESP: u8 = 50;
/// Next-header value of the authentication header.
pub const NH_AH: u8 = 51;
/// Next-header value meaning "no next header".
pub const NH_NONE: u8 = 59;
/// Next-header value of the destination options header.
pub const NH_DST_OPTS: u8 = 60;

mod field {
    use core::ops::Range;
    pub const VER_TC_FL: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// A read/write view of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wraps a buffer after [`check`](Self::check): no accessor can then panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Checks: at least 40 bytes (`Truncated`), version 6 (`Malformed`), and
    /// `40 + payload_len ≤` the buffer length (`Truncated`). Bytes past the payload
    /// (Ethernet padding) are allowed. Jumbograms (payload length 0 with a jumbo option) are
    /// not supported: their payload appears empty.
    #[inline]
    pub fn check(&self) -> Result<()> {
        let d = self.buffer.as_ref();
        if d.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if d[0] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(be16(d, field::LENGTH)) > d.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (6).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic class (DSCP and ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (be16(self.buffer.as_ref(), field::VER_TC_FL) >> 4) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FL) & 0x000f_ffff
    }

    /// Payload length (extension headers included).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The first next-header value.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        a
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        a
    }

    /// The payload, `40..40 + payload_len` (extension headers included, padding
    /// excluded), clamped to the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let end = (HEADER_LEN + usize::from(self.payload_len())).min(d.len());
        &d[HEADER_LEN.min(end)..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version, traffic class and flow label at once.
    #[inline]
    pub fn set_version_tc_fl(&mut self, version: u8, tc: u8, fl: u32) {
        let w = (u32::from(version) << 28) | (u32::from(tc) << 20) | (fl & 0x000f_ffff);
        put32(self.buffer.as_mut(), field::VER_TC_FL, w);
    }

    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let (v, fl) = (self.version(), self.flow_label());
        self.set_version_tc_fl(v, tc, fl);
    }

    /// Sets the flow label (low 20 bits).
    #[inline]
    pub fn set_flow_label(&mut self, fl: u32) {
        let (v, tc) = (self.version(), self.traffic_class());
        self.set_version_tc_fl(v, tc, fl);
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the first next-header value.
    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = v;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: &[u8; 16]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(a);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: &[u8; 16]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(a);
    }

    /// Mutable payload, clamped to the buffer.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let pl = usize::from(self.payload_len());
        let d = self.buffer.as_mut();
        let end = (HEADER_LEN + pl).min(d.len());
        &mut d[HEADER_LEN.min(end)..end]
    }
}

/// Fragment header contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FragInfo {
    /// Fragment offset in 8-byte units.
    pub offset: u16,
    /// The more-fragments flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

/// The result of [`walk_ext_headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtWalk {
    /// The upper-layer protocol (or the header the walk stopped at: ESP, no-next-header,
    /// anything unknown).
    pub proto: u8,
    /// Offset of the upper-layer header within the IPv6 payload.
    pub offset: usize,
    /// The fragment header, if one was present.
    pub frag: Option<FragInfo>,
}

/// Walks the extension headers at the start of an IPv6 `payload`, `first_next_header` being
/// the fixed header's next-header value.
///
/// Follows hop-by-hop (0, only as the first header), routing (43), destination options (60),
/// fragment (44) and AH (51, length `(len + 2) * 4`), and stops at anything else (including
/// 59 no-next-header and 50 ESP), returning it as `proto`. After a fragment header with a
/// non-zero offset the walk stops too: the rest of the chain is in the first fragment, so
/// `proto` is the fragment header's next-header value and `offset` points just past it.
///
/// Errors: a header running past `payload` → `Truncated`; hop-by-hop not first, a second
/// fragment header, or more than [`MAX_EXT_HEADERS`] headers → `Malformed`.
#[inline]
pub fn walk_ext_headers(first_next_header: u8, payload: &[u8]) -> Result<ExtWalk> {
    let mut nh = first_next_header;
    let mut off = 0usize;
    let mut frag = None;
    let mut count = 0usize;
    loop {
        let len = match nh {
            NH_HOP_BY_HOP | NH_ROUTING | NH_DST_OPTS | NH_AH | NH_FRAGMENT => {
                if count >= MAX_EXT_HEADERS {
                    return Err(Error::Malformed);
                }
                if nh == NH_HOP_BY_HOP && count != 0 {
                    return Err(Error::Malformed);
                }
                let h = payload.get(off..off + 2).ok_or(Error::Truncated)?;
                match nh {
                    NH_FRAGMENT => 8,
                    NH_AH => (usize::from(h[1]) + 2) * 4,
                    _ => (usize::from(h[1]) + 1) * 8,
                }
            }
            _ => return Ok(ExtWalk { proto: nh, offset: off, frag }),
        };
        let h = payload.get(off..off + len).ok_or(Error::Truncated)?;
        count += 1;
        off += len;
        let this = nh;
        nh = h[0];
        if this == NH_FRAGMENT {
            if frag.is_some() {
                return Err(Error::Malformed);
            }
            let fo = be16(h, 2);
            let info = FragInfo { offset: fo >> 3, more: fo & 1 != 0, ident: be32(h, 4) };
            frag = Some(info);
            if info.offset != 0 {
                return Ok(ExtWalk { proto: nh, offset: off, frag });
            }
        }
    }
}

/// The high-level fields of an IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// The fixed header's next-header value.
    pub next_header: u8,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Reads `packet` after [`Ipv6Packet::check`]. Traffic class and flow label are not
    /// represented.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        packet.check()?;
        Ok(Ipv6Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: [`HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header (traffic class 0, flow label 0). `payload_len` is truncated
    /// to 16 bits.
    ///
    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.set_version_tc_fl(6, 0, 0);
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(&self.src);
        packet.set_dst_addr(&self.dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2001:db8::1 → 2001:db8::2, hop-by-hop (router alert) + fragment (first, more) + UDP.
    const HBH_FRAG_UDP: [u8; 72] = [
        0x60, 0x0a, 0xbc, 0xde, 0x00, 0x20, 0x00, 0x40, // ver tc fl, len 32, nh 0, hlim 64
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // dst
        0x2c, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00, // HBH: nh 44, len 0, router alert, PadN
        0x11, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, // frag: nh 17, off 0, M, id
        0x04, 0xd2, 0x16, 0x2e, 0x00, 0x10, 0x00, 0x00, // UDP 1234 → 5678, len 16
        0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    ];

    #[test]
    fn parse_fields_and_walk() {
        let p = Ipv6Packet::new_checked(&HBH_FRAG_UDP[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x00);
        assert_eq!(p.flow_label(), 0xabcde);
        assert_eq!(p.payload_len(), 32);
        assert_eq!(p.next_header(), 0);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr()[15], 1);
        assert_eq!(p.dst_addr()[15], 2);
        assert_eq!(p.payload().len(), 32);
        let w = walk_ext_headers(p.next_header(), p.payload()).unwrap();
        assert_eq!(w.proto, 17);
        assert_eq!(w.offset, 16);
        assert_eq!(w.frag, Some(FragInfo { offset: 0, more: true, ident: 0xdeadbeef }));
        let r = Ipv6Repr::parse(&p).unwrap();
        let mut out = [0u8; 40];
        r.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
        assert_eq!(&out[4..], &HBH_FRAG_UDP[4..40]);
        assert_eq!(&out[..4], &[0x60, 0, 0, 0]);
        // 32 bytes of payload are claimed but absent.
        assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_unchecked(&out[..])), Err(Error::Truncated));
    }

    #[test]
    fn walk_cases() {
        // Later fragment: stops at the fragment header.
        let later = [6u8, 0, 0x05, 0x38, 0, 0, 0, 7];
        let w = walk_ext_headers(44, &later).unwrap();
        assert_eq!(w, ExtWalk { proto: 6, offset: 8, frag: Some(FragInfo { offset: 0xa7, more: false, ident: 7 }) });
        // AH: length (1 + 2) * 4 = 12.
        let ah = [6u8, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0xff];
        assert_eq!(walk_ext_headers(51, &ah).unwrap(), ExtWalk { proto: 6, offset: 12, frag: None });
        // ESP and no-next-header stop immediately.
        assert_eq!(walk_ext_headers(50, &[]).unwrap().proto, 50);
        assert_eq!(walk_ext_headers(59, &[]).unwrap(), ExtWalk { proto: 59, offset: 0, frag: None });
        // Hop-by-hop not first.
        let dst_hbh = [0u8, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(walk_ext_headers(60, &dst_hbh), Err(Error::Malformed));
        // Long chain of destination options.
        let chain = [60u8, 0, 1, 4, 0, 0, 0, 0].repeat(20);
        assert_eq!(walk_ext_headers(60, &chain), Err(Error::Malformed));
        // Two fragment headers.
        let ff = [44u8, 0, 0, 1, 0, 0, 0, 1, 6, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(walk_ext_headers(44, &ff), Err(Error::Malformed));
        // Truncated headers.
        let b = HBH_FRAG_UDP;
        for n in 0..16 {
            assert_eq!(walk_ext_headers(0, &b[40..40 + n]), Err(Error::Truncated), "{n}");
        }
        let routing = [6u8, 2, 0, 0, 0, 0, 0, 0];
        assert_eq!(walk_ext_headers(43, &routing), Err(Error::Truncated));
    }

    #[test]
    fn check_errors() {
        for n in 0..HBH_FRAG_UDP.len() {
            assert_eq!(Ipv6Packet::new_checked(&HBH_FRAG_UDP[..n]).err(), Some(Error::Truncated));
        }
        let mut b = HBH_FRAG_UDP;
        b[0] = 0x40;
        assert_eq!(Ipv6Packet::new_checked(&b[..]).err(), Some(Error::Malformed));
    }

    #[test]
    fn setters() {
        let mut b = HBH_FRAG_UDP;
        let mut p = Ipv6Packet::new_checked(&mut b[..]).unwrap();
        p.set_traffic_class(0xb8);
        p.set_flow_label(0x12345);
        assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0xb8, 0x12345));
        p.set_hop_limit(1);
        p.set_next_header(17);
        p.set_payload_len(8);
        assert_eq!(p.payload_mut().len(), 8);
        p.set_src_addr(&[9; 16]);
        p.set_dst_addr(&[8; 16]);
        assert_eq!(p.src_addr(), [9; 16]);
        assert_eq!(p.dst_addr(), [8; 16]);
        assert_eq!(p.hop_limit(), 1);
    }

    proptest! {
        #[test]
        fn never_panics(nh in any::<u8>(), d in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = walk_ext_headers(nh, &d);
            let _ = Ipv6Repr::parse(&Ipv6Packet::new_unchecked(&d[..]));
            if let Ok(p) = Ipv6Packet::new_checked(&d[..]) {
                let _ = (p.payload(), p.flow_label(), p.traffic_class());
                if let Ok(w) = walk_ext_headers(p.next_header(), p.payload()) {
                    prop_assert!(w.offset <= p.payload().len());
                }
            }
        }

        #[test]
        fn walk_offsets_in_bounds(nh in prop::sample::select(vec![0u8, 43, 44, 51, 60, 6]),
                                  d in proptest::collection::vec(prop::sample::select(vec![0u8, 1, 6, 43, 44, 51, 60, 2]), 0..120)) {
            if let Ok(w) = walk_ext_headers(nh, &d) {
                prop_assert!(w.offset <= d.len());
            }
        }
    }
}
