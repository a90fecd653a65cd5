//! ICMPv6 (RFC 4443) and the neighbour-discovery message types (RFC 4861).

use super::{be16, be32, checksum, put16, put32, Error, Result, IPPROTO_ICMPV6};

/// Length of the ICMPv6 header: type, code, checksum and the 4-byte message-specific word
/// that every defined ICMPv6 message carries.
pub const HEADER_LEN: usize = 8;

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

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQNO: usize = 6;
    pub const ND_TARGET: usize = 8;
}

/// A read/write view of an ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len): no accessor can then panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Err(Truncated)` when shorter than [`HEADER_LEN`] (8 bytes).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The 4-byte message-specific word after the checksum.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        be32(self.buffer.as_ref(), field::REST)
    }

    /// Echo identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO)
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
        let t = self.buffer.as_ref().get(field::ND_TARGET..field::ND_TARGET + 16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(t);
        Some(a)
    }

    /// Data after the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        &d[HEADER_LEN.min(d.len())..]
    }

    /// Whether the checksum (over the IPv6 pseudo-header and the whole buffer) is correct.
    #[inline]
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        checksum::verify_l4(src, dst, true, IPPROTO_ICMPV6, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    /// Sets the message code.
    #[inline]
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the message-specific word.
    #[inline]
    pub fn set_rest_of_header(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::REST, v);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_IDENT, v);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::ECHO_SEQNO, v);
    }

    /// Mutable data after the header.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let d = self.buffer.as_mut();
        let n = HEADER_LEN.min(d.len());
        &mut d[n..]
    }

    /// Computes and stores the checksum over the IPv6 pseudo-header and the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let c = checksum::l4_checksum(src, dst, true, IPPROTO_ICMPV6, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
