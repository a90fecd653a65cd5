//! UDP headers (RFC 768).

use super::{be16, checksum, put16, Error, Result, IPPROTO_UDP};

/// Length of a UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A read/write view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after [`check`](Self::check): no accessor can then panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Checks: at least 8 bytes (`Truncated`); the length field must be consistent:
    /// `≥ 8` (`Malformed`) and `≤` the buffer length (`Truncated`). Bytes past the length
    /// field (padding) are allowed and excluded from [`payload`](Self::payload).
    #[inline]
    pub fn check(&self) -> Result<()> {
        let d = self.buffer.as_ref();
        if d.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(be16(d, field::LENGTH));
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > d.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header and payload).
    #[inline]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Whether the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field (0: none, IPv4 only).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload, `8..length`, clamped to the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let end = usize::from(self.len()).min(d.len());
        &d[HEADER_LEN.min(end)..end]
    }

    /// Whether the checksum is correct for the given addresses, over `0..length`. An IPv4
    /// checksum of 0 means "not computed" and verifies.
    #[inline]
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16], v6: bool) -> bool {
        if !v6 && self.checksum() == 0 {
            return true;
        }
        let d = self.buffer.as_ref();
        let end = usize::from(self.len()).min(d.len());
        checksum::verify_l4(src, dst, v6, IPPROTO_UDP, &d[..end])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Mutable payload, clamped to the buffer.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        let d = self.buffer.as_mut();
        let end = len.min(d.len());
        &mut d[HEADER_LEN.min(end)..end]
    }

    /// Computes and stores the checksum over `0..length` (a computed 0 is stored as
    /// `0xffff`, RFC 768).
    #[inline]
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16], v6: bool) {
        self.set_checksum(0);
        let len = usize::from(self.len());
        let d = self.buffer.as_ref();
        let c = checksum::l4_checksum(src, dst, v6, IPPROTO_UDP, &d[..len.min(d.len())]);
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

/// The high-level fields of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Reads `packet` after [`UdpPacket::check`]. The checksum is not verified.
    pub fn parse<T: AsRef<[u8]>>(packet: &UdpPacket<T>) -> Result<UdpRepr> {
        packet.check()?;
        Ok(UdpRepr { src_port: packet.src_port(), dst_port: packet.dst_port(), payload_len: packet.payload().len() })
    }

    /// Bytes [`emit`](Self::emit) writes: [`HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with the length field `8 + payload_len` (truncated to 16 bits) and a
    /// zero checksum (fill it with [`UdpPacket::fill_checksum`] once the payload is in
    /// place).
    ///
    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut UdpPacket<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A DNS query for example.com, 192.168.1.100:53000 → 8.8.8.8:53 (IPv4 header included).
    const DNS: [u8; 57] = [
        0x45, 0x00, 0x00, 0x39, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x68, 0x98, 0xc0, 0xa8, 0x01, 0x64, 0x08, 0x08,
        0x08, 0x08, // IPv4
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x25, 0x7c, 0xa8, // UDP
        0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, b'e', b'x', b'a', b'm', b'p',
        b'l', b'e', 0x03, b'c', b'o', b'm', 0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    fn addrs() -> ([u8; 16], [u8; 16]) {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s[..4].copy_from_slice(&[192, 168, 1, 100]);
        d[..4].copy_from_slice(&[8, 8, 8, 8]);
        (s, d)
    }

    #[test]
    fn parse_dns_query() {
        let ip = crate::wire::ipv4::Ipv4Packet::new_checked(&DNS[..]).unwrap();
        assert!(ip.verify_checksum());
        let u = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(u.src_port(), 53000);
        assert_eq!(u.dst_port(), 53);
        assert_eq!(u.len(), 37);
        assert!(!u.is_empty());
        assert_eq!(u.payload().len(), 29);
        assert_eq!(&u.payload()[..2], &[0x12, 0x34]);
        let (s, d) = addrs();
        assert!(u.verify_checksum(&s, &d, false));
        let r = UdpRepr::parse(&u).unwrap();
        assert_eq!(r, UdpRepr { src_port: 53000, dst_port: 53, payload_len: 29 });
        let mut b = DNS[20..].to_vec();
        let mut p = UdpPacket::new_unchecked(&mut b[..]);
        r.emit(&mut p);
        p.fill_checksum(&s, &d, false);
        assert_eq!(&b[..], &DNS[20..]);
        let mut p = UdpPacket::new_unchecked(&mut b[..]);
        p.set_checksum(0);
        assert!(p.verify_checksum(&s, &d, false));
        assert!(!p.verify_checksum(&s, &d, true));
    }

    #[test]
    fn check_errors() {
        for n in 0..37 {
            assert_eq!(UdpPacket::new_checked(&DNS[20..20 + n]).err(), Some(Error::Truncated));
        }
        let mut b = DNS;
        b[25] = 7;
        assert_eq!(UdpPacket::new_checked(&b[20..]).err(), Some(Error::Malformed));
    }

    proptest! {
        #[test]
        fn never_panics(d in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = UdpRepr::parse(&UdpPacket::new_unchecked(&d[..]));
            if let Ok(u) = UdpPacket::new_checked(&d[..]) {
                let _ = (u.payload(), u.verify_checksum(&[1; 16], &[2; 16], true));
            }
        }
    }
}
