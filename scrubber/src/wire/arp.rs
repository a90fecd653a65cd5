//! ARP (RFC 826) for Ethernet hardware addresses and IPv4 protocol addresses.

use super::{be16, put16, Error, Result, ETH_IPV4};

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Hardware type of Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// ARP request operation.
pub const OP_REQUEST: u16 = 1;
/// ARP reply operation.
pub const OP_REPLY: u16 = 2;

mod field {
    use core::ops::Range;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// A read/write view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wraps a buffer after [`check`](Self::check): no accessor can then panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// `Err(Truncated)` when shorter than [`PACKET_LEN`]; `Err(Malformed)` when the hardware
    /// type is not Ethernet (1, length 6) or the protocol type not IPv4 (0x0800, length 4).
    #[inline]
    pub fn check(&self) -> Result<()> {
        let d = self.buffer.as_ref();
        if d.len() < 8 {
            return Err(Error::Truncated);
        }
        if be16(d, field::HTYPE) != HTYPE_ETHERNET
            || be16(d, field::PTYPE) != ETH_IPV4
            || d[field::HLEN] != 6
            || d[field::PLEN] != 4
        {
            return Err(Error::Malformed);
        }
        if d.len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 for Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (0x0800 for IPv4).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PTYPE)
    }

    /// Hardware address length.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation ([`OP_REQUEST`], [`OP_REPLY`], ...).
    #[inline]
    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER)
    }

    /// Sender hardware (MAC) address.
    #[inline]
    pub fn sender_hw_addr(&self) -> [u8; 6] {
        arr6(&self.buffer.as_ref()[field::SHA])
    }

    /// Sender protocol (IPv4) address.
    #[inline]
    pub fn sender_proto_addr(&self) -> [u8; 4] {
        arr4(&self.buffer.as_ref()[field::SPA])
    }

    /// Target hardware (MAC) address.
    #[inline]
    pub fn target_hw_addr(&self) -> [u8; 6] {
        arr6(&self.buffer.as_ref()[field::THA])
    }

    /// Target protocol (IPv4) address.
    #[inline]
    pub fn target_proto_addr(&self) -> [u8; 4] {
        arr4(&self.buffer.as_ref()[field::TPA])
    }
}

#[inline(always)]
fn arr6(s: &[u8]) -> [u8; 6] {
    [s[0], s[1], s[2], s[3], s[4], s[5]]
}

#[inline(always)]
fn arr4(s: &[u8]) -> [u8; 4] {
    [s[0], s[1], s[2], s[3]]
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    #[inline]
    pub fn set_hardware_type(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::HTYPE, v);
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol_type(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::PTYPE, v);
    }

    /// Sets the hardware address length.
    #[inline]
    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    /// Sets the protocol address length.
    #[inline]
    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::OPER, v);
    }

    /// Sets the sender hardware address.
    #[inline]
    pub fn set_sender_hw_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&a);
    }

    /// Sets the sender protocol address.
    #[inline]
    pub fn set_sender_proto_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&a);
    }

    /// Sets the target hardware address.
    #[inline]
    pub fn set_target_hw_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&a);
    }

    /// Sets the target protocol address.
    #[inline]
    pub fn set_target_proto_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&a);
    }
}

/// The fields of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArpRepr {
    /// Operation ([`OP_REQUEST`], [`OP_REPLY`], ...).
    pub operation: u16,
    /// Sender MAC address.
    pub sender_hw_addr: [u8; 6],
    /// Sender IPv4 address.
    pub sender_proto_addr: [u8; 4],
    /// Target MAC address (zero in a request).
    pub target_hw_addr: [u8; 6],
    /// Target IPv4 address.
    pub target_proto_addr: [u8; 4],
}

impl ArpRepr {
    /// Reads `packet`, checking it as [`ArpPacket::check`] does.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check()?;
        Ok(ArpRepr {
            operation: packet.operation(),
            sender_hw_addr: packet.sender_hw_addr(),
            sender_proto_addr: packet.sender_proto_addr(),
            target_hw_addr: packet.target_hw_addr(),
            target_proto_addr: packet.target_proto_addr(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: [`PACKET_LEN`].
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet.
    ///
    /// # Panics
    /// If the buffer is shorter than [`PACKET_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(ETH_IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_sender_hw_addr(self.sender_hw_addr);
        packet.set_sender_proto_addr(self.sender_proto_addr);
        packet.set_target_hw_addr(self.target_hw_addr);
        packet.set_target_proto_addr(self.target_proto_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::EthernetFrame;
    use crate::wire::ETH_ARP;
    use proptest::prelude::*;

    /// Who-has 192.168.1.1 tell 192.168.1.100, broadcast, padded to 60 bytes.
    const REQUEST: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x1b, 0x21, 0x3a, 0x4c, 0x5d, 0x08, 0x06, // eth
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype ptype hlen plen oper
        0x00, 0x1b, 0x21, 0x3a, 0x4c, 0x5d, 0xc0, 0xa8, 0x01, 0x64, // sha spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01, // tha tpa
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    #[test]
    fn parse_request() {
        let eth = EthernetFrame::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(eth.ethertype(), ETH_ARP);
        let p = ArpPacket::new_checked(eth.payload()).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!(p.hardware_len(), 6);
        assert_eq!(p.protocol_len(), 4);
        assert_eq!(p.operation(), OP_REQUEST);
        assert_eq!(p.sender_hw_addr(), [0x00, 0x1b, 0x21, 0x3a, 0x4c, 0x5d]);
        assert_eq!(p.sender_proto_addr(), [192, 168, 1, 100]);
        assert_eq!(p.target_hw_addr(), [0; 6]);
        assert_eq!(p.target_proto_addr(), [192, 168, 1, 1]);
        let r = ArpRepr::parse(&p).unwrap();
        let mut out = [0u8; 28];
        r.emit(&mut ArpPacket::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &REQUEST[14..42]);
    }

    #[test]
    fn rejects_other_types_and_truncation() {
        let mut b = REQUEST;
        b[15] = 6; // IEEE 802
        assert_eq!(ArpPacket::new_checked(&b[14..]).err(), Some(Error::Malformed));
        let mut b = REQUEST;
        b[16] = 0x86;
        b[17] = 0xdd;
        assert_eq!(ArpPacket::new_checked(&b[14..]).err(), Some(Error::Malformed));
        for n in 0..28 {
            assert_eq!(ArpPacket::new_checked(&REQUEST[14..14 + n]).err(), Some(Error::Truncated));
        }
    }

    proptest! {
        #[test]
        fn never_panics(d in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ArpRepr::parse(&ArpPacket::new_unchecked(&d[..]));
            let mut d2 = d.clone();
            if d2.len() >= 6 {
                d2[..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
            }
            if let Ok(p) = ArpPacket::new_checked(&d2[..]) {
                let _ = ArpRepr::parse(&p).unwrap();
            }
        }
    }
}
