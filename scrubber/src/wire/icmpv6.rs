//! ICMPv6 (RFC 4443) and the neighbour-discovery message types (RFC 4861).

use super::icmp::IcmpPacket;
use super::{checksum, Result, IPPROTO_ICMPV6};

/// Length of the ICMPv6 header: type, code, checksum and the 4-byte message-specific word
/// that every defined ICMPv6 message carries (the same layout as ICMPv4).
pub const HEADER_LEN: usize = super::icmp::HEADER_LEN;

/// Destination unreachable.
pub const DEST_UNREACHABLE: u8 = 1;
/// Packet too big.
pub const PACKET_TOO_BIG: u8 = 2;
/// Time exceeded.
pub const TIME_EXCEEDED: u8 = 3;
/// Parameter problem.
pub const PARAM_PROBLEM: u8 = 4;
/// Echo request.
pub const ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const ECHO_REPLY: u8 = 129;
/// Router solicitation.
pub const ROUTER_SOLICIT: u8 = 133;
/// Router advertisement.
pub const ROUTER_ADVERT: u8 = 134;
/// Neighbor solicitation.
pub const NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbor advertisement.
pub const NEIGHBOR_ADVERT: u8 = 136;
/// Redirect.
pub const REDIRECT: u8 = 137;

/// Whether `ty` is a neighbour-discovery message type (133..=137: router solicitation and
/// advertisement, neighbor solicitation and advertisement, redirect).
#[inline]
pub fn is_neighbor_discovery(ty: u8) -> bool {
    (ROUTER_SOLICIT..=REDIRECT).contains(&ty)
}

/// Offset of the neighbor solicitation / advertisement target address.
const ND_TARGET: usize = 8;

/// A read/write view of an ICMPv6 message: the ICMPv4 header view ([`IcmpPacket`]: type, code,
/// checksum, rest-of-header, echo fields, data — the layout is the same), plus the ICMPv6
/// checksum over the IPv6 pseudo-header and the neighbour-discovery helpers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>>(IcmpPacket<T>);

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet(IcmpPacket::new_unchecked(buffer))
    }

    /// Wraps a buffer after checking it holds the 8-byte header (`Err(Truncated)` otherwise):
    /// no accessor can then panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        Ok(Icmpv6Packet(IcmpPacket::new_checked(buffer)?))
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.0.into_inner()
    }

    /// Whether this is a neighbour-discovery message (see [`is_neighbor_discovery`]).
    #[inline]
    pub fn is_neighbor_discovery(&self) -> bool {
        is_neighbor_discovery(self.msg_type())
    }

    /// Target address of a neighbor solicitation / advertisement; `None` for other types or
    /// when the message is shorter than 24 bytes.
    #[inline]
    pub fn nd_target(&self) -> Option<[u8; 16]> {
        let ty = self.msg_type();
        if ty != NEIGHBOR_SOLICIT && ty != NEIGHBOR_ADVERT {
            return None;
        }
        let t = self.as_bytes().get(ND_TARGET..ND_TARGET + 16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(t);
        Some(a)
    }

    /// Whether the checksum (over the IPv6 pseudo-header and the whole buffer) is correct.
    #[inline]
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        checksum::verify_l4(src, dst, true, IPPROTO_ICMPV6, self.as_bytes())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Computes and stores the checksum over the IPv6 pseudo-header and the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let c = checksum::l4_checksum(src, dst, true, IPPROTO_ICMPV6, self.as_bytes());
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> core::ops::Deref for Icmpv6Packet<T> {
    type Target = IcmpPacket<T>;

    fn deref(&self) -> &IcmpPacket<T> {
        &self.0
    }
}

impl<T: AsRef<[u8]>> core::ops::DerefMut for Icmpv6Packet<T> {
    fn deref_mut(&mut self) -> &mut IcmpPacket<T> {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Error;
    use proptest::prelude::*;

    /// Neighbor solicitation fe80::1 → ff02::1:ff00:2 for target fe80::2, with a source
    /// link-layer address option (02:00:00:00:00:01).
    const NS: [u8; 32] = [
        0x87, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // type 135, code, checksum, reserved
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // target
        0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // SLLA option
    ];

    #[test]
    fn neighbor_solicitation() {
        let mut src = [0u8; 16];
        src[..2].copy_from_slice(&[0xfe, 0x80]);
        src[15] = 1;
        let dst = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2];
        let mut b = NS;
        let mut p = Icmpv6Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(&src, &dst);
        assert!(p.verify_checksum(&src, &dst));
        assert!(!p.verify_checksum(&src, &src));
        assert_eq!(p.msg_type(), NEIGHBOR_SOLICIT);
        assert_eq!(p.msg_code(), 0);
        assert!(p.is_neighbor_discovery());
        let mut t = [0u8; 16];
        t[..2].copy_from_slice(&[0xfe, 0x80]);
        t[15] = 2;
        assert_eq!(p.nd_target(), Some(t));
        assert_eq!(p.data().len(), 24);
        p.set_msg_type(ECHO_REQUEST);
        assert_eq!(p.nd_target(), None);
        p.set_echo_ident(7);
        p.set_echo_seq_no(9);
        assert_eq!(p.rest_of_header(), 0x0007_0009);
        for n in 0..8 {
            assert_eq!(Icmpv6Packet::new_checked(&NS[..n]).err(), Some(Error::Truncated));
        }
        assert_eq!(Icmpv6Packet::new_checked(&NS[..20]).unwrap().nd_target(), None);
    }

    #[test]
    fn nd_types() {
        for ty in 0..=255u8 {
            assert_eq!(is_neighbor_discovery(ty), (133..=137).contains(&ty));
        }
    }

    proptest! {
        #[test]
        fn never_panics(d in proptest::collection::vec(any::<u8>(), 0..60)) {
            if let Ok(p) = Icmpv6Packet::new_checked(&d[..]) {
                let _ = (p.nd_target(), p.data(), p.verify_checksum(&[0; 16], &[0; 16]));
            }
        }
    }
}
