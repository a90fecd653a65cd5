//! IPv4 headers (RFC 791).

use super::{be16, checksum, put16, Error, Result};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A read/write view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps a buffer after [`check`](Self::check): no accessor can then panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Checks the header: at least 20 bytes (`Truncated`), version 4 and IHL ≥ 5
    /// (`Malformed`), the header within the buffer (`Truncated`), `total_len ≥ header_len`
    /// (`Malformed`) and `total_len ≤` the buffer length (`Truncated`). Bytes past
    /// `total_len` (Ethernet padding) are allowed and ignored by [`payload`](Self::payload).
    /// The header checksum is not verified here (see [`verify_checksum`](Self::verify_checksum)).
    #[inline]
    pub fn check(&self) -> Result<()> {
        let d = self.buffer.as_ref();
        if d.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let vi = d[field::VER_IHL];
        if vi >> 4 != 4 || vi & 0x0f < 5 {
            return Err(Error::Malformed);
        }
        let hl = usize::from(vi & 0x0f) * 4;
        if d.len() < hl {
            return Err(Error::Truncated);
        }
        let tl = usize::from(be16(d, field::LENGTH));
        if tl < hl {
            return Err(Error::Malformed);
        }
        if tl > d.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (4).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Internet header length in 32-bit words.
    #[inline]
    pub fn ihl(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] & 0x0f
    }

    /// Header length in bytes (`ihl * 4`).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.ihl()) * 4
    }

    /// The DSCP and ECN byte (formerly TOS).
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length of header and payload.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    /// The don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// The more-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units (as carried in the header).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Upper-layer protocol number.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 4] {
        let d = self.buffer.as_ref();
        [d[12], d[13], d[14], d[15]]
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 4] {
        let d = self.buffer.as_ref();
        [d[16], d[17], d[18], d[19]]
    }

    /// The options (bytes 20..header_len), clamped to the buffer.
    #[inline]
    pub fn options(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let end = self.header_len().min(d.len());
        &d[HEADER_LEN.min(end)..end]
    }

    /// The payload: bytes `header_len..total_len` (Ethernet padding excluded), clamped to
    /// the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let end = usize::from(self.total_len()).min(d.len());
        &d[self.header_len().min(end)..end]
    }

    /// Whether the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let d = self.buffer.as_ref();
        let hl = self.header_len().min(d.len());
        checksum::fold(checksum::sum(&d[..hl])) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version (high nibble) and IHL (low nibble) at once.
    #[inline]
    pub fn set_version_ihl(&mut self, version: u8, ihl: u8) {
        self.buffer.as_mut()[field::VER_IHL] = (version << 4) | (ihl & 0x0f);
    }

    /// Sets the header length in bytes (rounded down to 4), keeping the version.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let v = self.version();
        self.set_version_ihl(v, ((len / 4) & 0x0f) as u8);
    }

    /// Sets the DSCP/ECN byte.
    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, v);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::IDENT, v);
    }

    fn set_flg_off(&mut self, mask: u16, v: u16) {
        let old = be16(self.buffer.as_ref(), field::FLG_OFF);
        put16(self.buffer.as_mut(), field::FLG_OFF, (old & !mask) | (v & mask));
    }

    /// Sets the don't-fragment flag.
    #[inline]
    pub fn set_dont_frag(&mut self, v: bool) {
        self.set_flg_off(FLAG_DF, if v { FLAG_DF } else { 0 });
    }

    /// Sets the more-fragments flag.
    #[inline]
    pub fn set_more_frags(&mut self, v: bool) {
        self.set_flg_off(FLAG_MF, if v { FLAG_MF } else { 0 });
    }

    /// Sets the fragment offset (in 8-byte units; 13 bits).
    #[inline]
    pub fn set_frag_offset(&mut self, v: u16) {
        self.set_flg_off(OFFSET_MASK, v);
    }

    /// Sets the time to live.
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    /// Sets the protocol number.
    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    /// Sets the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a);
    }

    /// Mutable options, clamped to the buffer.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let d = self.buffer.as_mut();
        let end = hl.min(d.len());
        &mut d[HEADER_LEN.min(end)..end]
    }

    /// Mutable payload (`header_len..total_len`), clamped to the buffer.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let tl = usize::from(self.total_len());
        let d = self.buffer.as_mut();
        let end = tl.min(d.len());
        &mut d[hl.min(end)..end]
    }

    /// Computes and stores the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let d = self.buffer.as_ref();
        let c = checksum::finish(checksum::sum(&d[..hl.min(d.len())]));
        self.set_checksum(c);
    }
}

/// The high-level fields of an IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Upper-layer protocol.
    pub protocol: u8,
    /// Payload length (`total_len - header_len`).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
}

impl Ipv4Repr {
    /// Reads `packet` after [`Ipv4Packet::check`] and verifying the header checksum
    /// (`Err(BadChecksum)`). Options, DSCP/ECN, identification and the fragmentation fields
    /// are not represented and are ignored.
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        packet.check()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        Ok(Ipv4Repr {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes: [`HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header (no options, DSCP/ECN 0, identification 0, DF set, offset 0)
    /// with a correct checksum. `total_len` is `20 + payload_len`, truncated to 16 bits.
    ///
    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv4Packet<T>) {
        packet.set_version_ihl(4, 5);
        packet.set_dscp_ecn(0);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(0);
        put16(packet.buffer.as_mut(), field::FLG_OFF, FLAG_DF);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src);
        packet.set_dst_addr(self.dst);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// IPv4 header of a UDP datagram 192.168.0.1 → 192.168.0.199, 115 bytes, DF, TTL 64.
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
        0x00, 0xc7,
    ];

    fn packet() -> Vec<u8> {
        let mut v = HDR.to_vec();
        v.resize(0x73, 0xaa);
        v.extend_from_slice(&[0, 0, 0]); // padding beyond total_len
        v
    }

    #[test]
    fn parse_fields() {
        let b = packet();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.ihl(), 5);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 115);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.checksum(), 0xb861);
        assert_eq!(p.src_addr(), [192, 168, 0, 1]);
        assert_eq!(p.dst_addr(), [192, 168, 0, 199]);
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 95);
        assert!(p.verify_checksum());
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Ipv4Repr { src: [192, 168, 0, 1], dst: [192, 168, 0, 199], protocol: 17, payload_len: 95, ttl: 64 }
        );
        let mut out = [0u8; 20];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, HDR);
    }

    #[test]
    fn setters_and_checksum() {
        let mut b = packet();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_ttl(3);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.set_more_frags(true);
        p.set_frag_offset(0x1234);
        p.set_dont_frag(false);
        assert!(p.more_frags());
        assert!(!p.dont_frag());
        assert_eq!(p.frag_offset(), 0x1234);
        p.set_src_addr([10, 0, 0, 1]);
        p.set_dst_addr([10, 0, 0, 2]);
        p.set_total_len(40);
        assert_eq!(p.payload().len(), 20);
        assert_eq!(p.src_addr(), [10, 0, 0, 1]);
        assert_eq!(p.dst_addr(), [10, 0, 0, 2]);
        let mut q = p;
        q.fill_checksum();
        assert_eq!(Ipv4Repr::parse(&q).map(|r| r.payload_len), Ok(20));
        q.set_checksum(q.checksum() ^ 1);
        assert_eq!(Ipv4Repr::parse(&q), Err(Error::BadChecksum));
    }

    #[test]
    fn check_errors() {
        let b = packet();
        for n in 0..115 {
            assert_eq!(Ipv4Packet::new_checked(&b[..n]).err(), Some(Error::Truncated), "{n}");
        }
        let mut x = packet();
        x[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&x[..]).err(), Some(Error::Malformed));
        x[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&x[..]).err(), Some(Error::Malformed));
        let mut x = packet();
        x[3] = 19;
        assert_eq!(Ipv4Packet::new_checked(&x[..]).err(), Some(Error::Malformed));
        let mut x = packet();
        x[0] = 0x4f; // 60-byte header
        let p = Ipv4Packet::new_checked(&x[..]).unwrap();
        assert_eq!(p.options().len(), 40);
        assert_eq!(p.payload().len(), 115 - 60);
    }

    proptest! {
        #[test]
        fn never_panics(d in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&d[..]));
            if let Ok(p) = Ipv4Packet::new_checked(&d[..]) {
                let _ = (p.options(), p.payload(), p.verify_checksum(), p.frag_offset());
            }
        }
    }
}
