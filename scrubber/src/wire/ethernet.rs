//! Ethernet II frames and IEEE 802.1Q / 802.1ad VLAN tags.

use super::{be16, put16, Error, Result};

/// Length of an Ethernet II header: destination MAC, source MAC, EtherType.
pub const HEADER_LEN: usize = 14;
/// Length of one 802.1Q / 802.1ad tag as seen after the EtherType (TPID) field: the TCI and
/// the inner EtherType.
pub const VLAN_TAG_LEN: usize = 4;

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// A read/write view of an Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer without checking its length; accessors may panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len): no accessor can then panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// `Err(Truncated)` when the buffer is shorter than [`HEADER_LEN`].
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

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 6] {
        let d = self.buffer.as_ref();
        [d[0], d[1], d[2], d[3], d[4], d[5]]
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 6] {
        let d = self.buffer.as_ref();
        [d[6], d[7], d[8], d[9], d[10], d[11]]
    }

    /// EtherType (or the TPID of the first VLAN tag).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Everything after the 14-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        &d[field::PAYLOAD.min(d.len())..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, t: u16) {
        put16(self.buffer.as_mut(), field::ETHERTYPE, t);
    }

    /// Mutable access to everything after the header.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let d = self.buffer.as_mut();
        let n = field::PAYLOAD.min(d.len());
        &mut d[n..]
    }
}

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EthernetRepr {
    /// Source MAC address.
    pub src: [u8; 6],
    /// Destination MAC address.
    pub dst: [u8; 6],
    /// EtherType.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Reads the header of `frame` (`Err(Truncated)` if it is too short).
    pub fn parse<T: AsRef<[u8]>>(frame: &EthernetFrame<T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        Ok(EthernetRepr { src: frame.src_addr(), dst: frame.dst_addr(), ethertype: frame.ethertype() })
    }

    /// Bytes [`emit`](Self::emit) writes: [`HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `frame`.
    ///
    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut EthernetFrame<T>) {
        frame.set_dst_addr(self.dst);
        frame.set_src_addr(self.src);
        frame.set_ethertype(self.ethertype);
    }
}

mod vfield {
    pub const TCI: usize = 0;
    pub const ETHERTYPE: usize = 2;
    pub const PAYLOAD: usize = 4;
}

/// A read/write view of an 802.1Q / 802.1ad tag.
///
/// The view starts just after the EtherType field that carried the tag's TPID (`0x8100` or
/// `0x88a8`): bytes 0..2 are the tag control information, bytes 2..4 the inner EtherType.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wraps a buffer without checking its length; accessors may panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len): no accessor can then panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let v = Self::new_unchecked(buffer);
        v.check_len()?;
        Ok(v)
    }

    /// `Err(Truncated)` when the buffer is shorter than [`VLAN_TAG_LEN`].
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < VLAN_TAG_LEN {
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

    /// The 16-bit tag control information.
    #[inline]
    pub fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), vfield::TCI)
    }

    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The EtherType following the tag (another TPID for stacked tags).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), vfield::ETHERTYPE)
    }

    /// Everything after the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        &d[vfield::PAYLOAD.min(d.len())..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets the tag control information.
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        put16(self.buffer.as_mut(), vfield::TCI, tci);
    }

    /// Sets the VLAN identifier (low 12 bits of `vid`), keeping PCP and DEI.
    #[inline]
    pub fn set_vid(&mut self, vid: u16) {
        let t = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(t);
    }

    /// Sets the inner EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, t: u16) {
        put16(self.buffer.as_mut(), vfield::ETHERTYPE, t);
    }

    /// Mutable access to everything after the tag.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let d = self.buffer.as_mut();
        let n = vfield::PAYLOAD.min(d.len());
        &mut d[n..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ETH_IPV4, ETH_QINQ, ETH_VLAN};
    use proptest::prelude::*;

    /// QinQ frame: outer S-tag 0x88a8 VID 100 PCP 3, inner C-tag 0x8100 VID 200, then IPv4.
    const QINQ: [u8; 22] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88, 0xa8, 0x60, 0x64, 0x81, 0x00,
        0x00, 0xc8, 0x08, 0x00,
    ];

    #[test]
    fn parse_qinq() {
        let f = EthernetFrame::new_checked(&QINQ[..]).unwrap();
        assert_eq!(f.dst_addr(), [2, 0, 0, 0, 0, 2]);
        assert_eq!(f.src_addr(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(f.ethertype(), ETH_QINQ);
        let outer = VlanTag::new_checked(f.payload()).unwrap();
        assert_eq!(outer.tci(), 0x6064);
        assert_eq!(outer.pcp(), 3);
        assert!(!outer.dei());
        assert_eq!(outer.vid(), 100);
        assert_eq!(outer.ethertype(), ETH_VLAN);
        let inner = VlanTag::new_checked(outer.payload()).unwrap();
        assert_eq!(inner.vid(), 200);
        assert_eq!(inner.pcp(), 0);
        assert_eq!(inner.ethertype(), ETH_IPV4);
        assert!(inner.payload().is_empty());
    }

    #[test]
    fn repr_round_trip_and_setters() {
        let r = EthernetRepr { src: [1, 2, 3, 4, 5, 6], dst: [7, 8, 9, 10, 11, 12], ethertype: 0x86dd };
        let mut buf = [0u8; 14];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        r.emit(&mut f);
        assert_eq!(EthernetRepr::parse(&f), Ok(r));
        let mut t = [0u8; 4];
        let mut v = VlanTag::new_unchecked(&mut t[..]);
        v.set_tci(0xe000);
        v.set_vid(0xabc);
        v.set_ethertype(0x0806);
        assert_eq!(t, [0xea, 0xbc, 0x08, 0x06]);
    }

    #[test]
    fn truncated() {
        for n in 0..14 {
            assert_eq!(EthernetFrame::new_checked(&QINQ[..n]).err(), Some(Error::Truncated));
            assert!(EthernetRepr::parse(&EthernetFrame::new_unchecked(&QINQ[..n])).is_err());
        }
        for n in 0..4 {
            assert!(VlanTag::new_checked(&QINQ[14..14 + n]).is_err());
        }
    }

    proptest! {
        #[test]
        fn never_panics(d in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(f) = EthernetFrame::new_checked(&d[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload());
            }
            if let Ok(v) = VlanTag::new_checked(&d[..]) {
                let _ = (v.tci(), v.pcp(), v.dei(), v.vid(), v.ethertype(), v.payload());
            }
        }
    }
}
