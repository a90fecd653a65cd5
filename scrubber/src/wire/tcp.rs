//! TCP headers (RFC 9293) and options (MSS, window scale, SACK, timestamps).

use super::{be16, be32, checksum, put16, put32, Error, Result, IPPROTO_TCP};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Largest TCP header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;
/// Most option bytes a TCP header can carry.
pub const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;

/// The eight TCP flag bits (byte 13 of the header).
pub mod flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer field significant.
    pub const URG: u8 = 0x20;
    /// ECN-Echo.
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;
}

/// Option kinds.
pub mod kind {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No operation (padding).
    pub const NOP: u8 = 1;
    /// Maximum segment size (length 4).
    pub const MSS: u8 = 2;
    /// Window scale (length 3).
    pub const WSCALE: u8 = 3;
    /// SACK permitted (length 2).
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK blocks (length 2 + 8n).
    pub const SACK: u8 = 5;
    /// Timestamps (length 10).
    pub const TIMESTAMP: u8 = 8;
    /// TCP Fast Open cookie or cookie request (RFC 7413; length 2 + cookie).
    pub const FASTOPEN: u8 = 34;
    /// Experimental option (RFC 6994); Fast Open used it with the magic 0xF989 before kind 34.
    pub const EXPERIMENTAL: u8 = 254;
}

/// Largest window scale shift (RFC 7323 §2.3); larger values are clamped to it.
pub const MAX_WSCALE: u8 = 14;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WIN_SIZE: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// A read/write view of a TCP segment (header and payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wraps a buffer after [`check`](Self::check): no accessor can then panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Checks: at least 20 bytes (`Truncated`), data offset ≥ 5 words (`Malformed`), header
    /// within the buffer (`Truncated`).
    #[inline]
    pub fn check(&self) -> Result<()> {
        let d = self.buffer.as_ref();
        if d.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hl > d.len() {
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The eight flag bits (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether all the bits of `mask` are set in [`flags`](Self::flags).
    #[inline]
    pub fn has_flags(&self, mask: u8) -> bool {
        self.flags() & mask == mask
    }

    /// Window (unscaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    /// The option bytes (20..header_len), clamped to the buffer.
    #[inline]
    pub fn options(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let end = self.header_len().min(d.len());
        &d[HEADER_LEN.min(end)..end]
    }

    /// The payload (after the header), clamped to the buffer.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        &d[self.header_len().min(d.len())..]
    }

    /// Whether the checksum is correct for the given addresses (see
    /// [`checksum::verify_l4`]); covers the whole buffer.
    #[inline]
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16], v6: bool) -> bool {
        checksum::verify_l4(src, dst, v6, IPPROTO_TCP, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::SEQ_NUM, v);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::ACK_NUM, v);
    }

    /// Sets the eight flag bits.
    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    /// Sets the header length in bytes (stored as `len / 4` in the data offset nibble; the
    /// low nibble of byte 12 is kept).
    #[inline]
    pub fn set_header_len(&mut self, len: u8) {
        let d = self.buffer.as_mut();
        d[field::DATA_OFF] = (((len / 4) & 0x0f) << 4) | (d[field::DATA_OFF] & 0x0f);
    }

    /// Sets the window.
    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::WIN_SIZE, v);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::URGENT, v);
    }

    /// Mutable option bytes, clamped to the buffer.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let d = self.buffer.as_mut();
        let end = hl.min(d.len());
        &mut d[HEADER_LEN.min(end)..end]
    }

    /// Mutable payload, clamped to the buffer.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let d = self.buffer.as_mut();
        let n = hl.min(d.len());
        &mut d[n..]
    }

    /// Computes and stores the checksum over the whole buffer (see [`fill_checksum`]).
    #[inline]
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16], v6: bool) {
        fill_checksum(self.buffer.as_mut(), src, dst, v6);
    }
}

/// Zeroes the checksum field of the TCP segment `tcp` (header and payload), computes the
/// checksum under the IPv4/IPv6 pseudo-header and stores it. Does nothing when `tcp` is
/// shorter than 18 bytes.
#[inline]
pub fn fill_checksum(tcp: &mut [u8], src: &[u8; 16], dst: &[u8; 16], v6: bool) {
    if tcp.len() < field::CHECKSUM + 2 {
        return;
    }
    put16(tcp, field::CHECKSUM, 0);
    let c = checksum::l4_checksum(src, dst, v6, IPPROTO_TCP, tcp);
    put16(tcp, field::CHECKSUM, c);
}

/// The options the scrubber cares about, found by [`parse_options`], with the offsets needed
/// to rewrite timestamps and SACK blocks in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift, clamped to [`MAX_WSCALE`].
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// Timestamps `(TSval, TSecr)`.
    pub timestamp: Option<(u32, u32)>,
    /// Byte offset of TSval within the option bytes (TSecr follows at `+ 4`; option bytes are
    /// at most 40, so a byte holds it).
    pub ts_offset: Option<u8>,
    /// Byte offset of the first SACK block's left edge within the option bytes; blocks are 8
    /// bytes each (left edge, right edge).
    pub sack_offset: Option<u8>,
    /// Number of SACK blocks (0..=4).
    pub sack_blocks: u8,
    /// A Fast Open option (cookie or cookie request, RFC 7413; kind 34 or the experimental
    /// kind 254 with magic 0xF989).
    pub fastopen: bool,
}

impl TcpOptions {
    /// No options.
    pub const NONE: TcpOptions = TcpOptions {
        mss: None,
        wscale: None,
        sack_permitted: false,
        timestamp: None,
        ts_offset: None,
        sack_offset: None,
        sack_blocks: 0,
        fastopen: false,
    };
}

/// Parses TCP option bytes (the header bytes after the first 20) without allocating.
///
/// EOL ends parsing; NOP is skipped; every other option must have a length byte ≥ 2 that
/// stays within `opts` (`Malformed` otherwise). Known kinds with a wrong length (MSS ≠ 4,
/// WS ≠ 3, SACK-permitted ≠ 2, timestamps ≠ 10, SACK not 2 + 8n with 1 ≤ n ≤ 4) are
/// `Malformed`; unknown kinds are skipped. A window scale above 14 is clamped to 14. When an
/// option appears twice, the last one wins.
#[inline]
pub fn parse_options(opts: &[u8]) -> Result<TcpOptions> {
    let mut o = TcpOptions::default();
    let mut i = 0usize;
    while let Some(&k) = opts.get(i) {
        match k {
            kind::EOL => break,
            kind::NOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let len = usize::from(*opts.get(i + 1).ok_or(Error::Malformed)?);
        if len < 2 {
            return Err(Error::Malformed);
        }
        let body = opts.get(i + 2..i + len).ok_or(Error::Malformed)?;
        match k {
            kind::MSS => {
                if len != 4 {
                    return Err(Error::Malformed);
                }
                o.mss = Some(be16(body, 0));
            }
            kind::WSCALE => {
                if len != 3 {
                    return Err(Error::Malformed);
                }
                o.wscale = Some(body[0].min(MAX_WSCALE));
            }
            kind::SACK_PERMITTED => {
                if len != 2 {
                    return Err(Error::Malformed);
                }
                o.sack_permitted = true;
            }
            kind::SACK => {
                let n = (len - 2) / 8;
                if (len - 2) % 8 != 0 || n == 0 || n > 4 {
                    return Err(Error::Malformed);
                }
                o.sack_offset = Some(u8::try_from(i + 2).map_err(|_| Error::Malformed)?);
                o.sack_blocks = n as u8;
            }
            kind::TIMESTAMP => {
                if len != 10 {
                    return Err(Error::Malformed);
                }
                o.timestamp = Some((be32(body, 0), be32(body, 4)));
                o.ts_offset = Some(u8::try_from(i + 2).map_err(|_| Error::Malformed)?);
            }
            kind::FASTOPEN => o.fastopen = true,
            kind::EXPERIMENTAL if body.len() >= 2 && be16(body, 0) == 0xf989 => o.fastopen = true,
            _ => {}
        }
        i += len;
    }
    Ok(o)
}

/// Up to four SACK blocks `(left edge, right edge)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SackBlocks {
    /// The blocks; only the first `len` are meaningful (the rest are kept zero by
    /// [`push`](Self::push) and by parsing).
    pub blocks: [(u32, u32); 4],
    /// Number of blocks in use (0..=4).
    pub len: u8,
}

impl SackBlocks {
    /// The blocks in use.
    #[inline]
    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.blocks[..usize::from(self.len).min(4)]
    }

    /// Appends a block; returns `false` (and does nothing) when four are already held.
    #[inline]
    pub fn push(&mut self, block: (u32, u32)) -> bool {
        let n = usize::from(self.len);
        if n >= 4 {
            return false;
        }
        self.blocks[n] = block;
        self.len += 1;
        true
    }

    /// Number of blocks in use.
    #[inline]
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether no block is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The TCP options the scrubber emits and understands, as values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionsRepr {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift.
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// Timestamps `(TSval, TSecr)`.
    pub timestamp: Option<(u32, u32)>,
    /// SACK blocks.
    pub sack: SackBlocks,
}

impl OptionsRepr {
    /// Bytes [`emit`](Self::emit) writes (a multiple of 4). Keep it ≤ 40
    /// ([`MAX_OPTIONS_LEN`]) to fit a TCP header: timestamps with four SACK blocks do not.
    pub fn buffer_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.timestamp.is_some() {
            n += 12;
        } else if self.sack_permitted {
            n += 4;
        }
        if self.wscale.is_some() {
            n += 4;
        }
        if !self.sack.is_empty() {
            n += 4 + 8 * self.sack.len();
        }
        n
    }

    /// Writes the options in Linux order and returns the number of bytes written (a multiple
    /// of 4, NOP-padded): MSS; then SACK-permitted and timestamps as `4,2,8,10,…` (both),
    /// `1,1,8,10,…` (timestamps only) or `1,1,4,2` (SACK-permitted only); then `1,3,3,ws`;
    /// then `1,1,5,2+8n,…` SACK blocks.
    ///
    /// Requires `buf.len() >= self.buffer_len()`; when `buf` is shorter nothing is written and
    /// 0 is returned.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let n = self.buffer_len();
        let Some(buf) = buf.get_mut(..n) else {
            return 0;
        };
        let mut i = 0;
        if let Some(mss) = self.mss {
            buf[i..i + 2].copy_from_slice(&[kind::MSS, 4]);
            put16(buf, i + 2, mss);
            i += 4;
        }
        if let Some((tsval, tsecr)) = self.timestamp {
            if self.sack_permitted {
                buf[i..i + 2].copy_from_slice(&[kind::SACK_PERMITTED, 2]);
            } else {
                buf[i..i + 2].copy_from_slice(&[kind::NOP, kind::NOP]);
            }
            buf[i + 2..i + 4].copy_from_slice(&[kind::TIMESTAMP, 10]);
            put32(buf, i + 4, tsval);
            put32(buf, i + 8, tsecr);
            i += 12;
        } else if self.sack_permitted {
            buf[i..i + 4].copy_from_slice(&[kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2]);
            i += 4;
        }
        if let Some(ws) = self.wscale {
            buf[i..i + 4].copy_from_slice(&[kind::NOP, kind::WSCALE, 3, ws]);
            i += 4;
        }
        if !self.sack.is_empty() {
            let blocks = self.sack.as_slice();
            buf[i..i + 4].copy_from_slice(&[kind::NOP, kind::NOP, kind::SACK, (2 + 8 * blocks.len()) as u8]);
            i += 4;
            for &(l, r) in blocks {
                put32(buf, i, l);
                put32(buf, i + 4, r);
                i += 8;
            }
        }
        debug_assert_eq!(i, n);
        i
    }

    /// Parses option bytes as [`parse_options`] does, collecting the SACK blocks.
    pub fn parse(opts: &[u8]) -> Result<OptionsRepr> {
        let o = parse_options(opts)?;
        let mut sack = SackBlocks::default();
        if let Some(off) = o.sack_offset.map(usize::from) {
            for k in 0..usize::from(o.sack_blocks) {
                let b = opts.get(off + 8 * k..off + 8 * k + 8).ok_or(Error::Malformed)?;
                sack.push((be32(b, 0), be32(b, 4)));
            }
        }
        Ok(OptionsRepr { mss: o.mss, wscale: o.wscale, sack_permitted: o.sack_permitted, timestamp: o.timestamp, sack })
    }
}

/// The high-level fields of a TCP header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flag bits (see [`flags`]).
    pub flags: u8,
    /// Window (unscaled).
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options.
    pub options: OptionsRepr,
    /// Payload length.
    pub payload_len: usize,
}

impl TcpRepr {
    /// Reads `packet` after [`TcpPacket::check`], parsing its options. The checksum is not
    /// verified (it needs the IP addresses: see [`TcpPacket::verify_checksum`]).
    pub fn parse<T: AsRef<[u8]>>(packet: &TcpPacket<T>) -> Result<TcpRepr> {
        packet.check()?;
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: packet.seq_number(),
            ack: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window_len(),
            urgent: packet.urgent_at(),
            options: OptionsRepr::parse(packet.options())?,
            payload_len: packet.payload().len(),
        })
    }

    /// Header length: 20 plus the options.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.buffer_len()
    }

    /// Header plus payload length.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes the header and options, with the checksum field zero (fill it with
    /// [`TcpPacket::fill_checksum`] once the payload is in place).
    ///
    /// # Panics
    /// If the buffer is shorter than [`header_len`](Self::header_len), or the options exceed
    /// [`MAX_OPTIONS_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) {
        let hl = self.header_len();
        assert!(hl <= MAX_HEADER_LEN, "TCP options exceed 40 bytes");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq);
        packet.set_ack_number(self.ack);
        packet.buffer.as_mut()[field::DATA_OFF] = ((hl / 4) as u8) << 4;
        packet.set_flags(self.flags);
        packet.set_window_len(self.window);
        packet.set_checksum(0);
        packet.set_urgent_at(self.urgent);
        let written = self.options.emit(&mut packet.buffer.as_mut()[HEADER_LEN..hl]);
        assert_eq!(written, hl - HEADER_LEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A Linux SYN: 10.0.2.15:48350 → 93.184.216.34:80, MSS 1460, SACK_PERM, TS, NOP, WS 7.
    /// Ethernet and IPv4 headers included; the TCP header starts at byte 34.
    const SYN: [u8; 74] = [
        0x52, 0x54, 0x00, 0x12, 0x35, 0x02, 0x08, 0x00, 0x27, 0x8a, 0x1f, 0x3c, 0x08, 0x00, 0x45, 0x00, 0x00, 0x3c,
        0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0xdc, 0x8c, 0x0a, 0x00, 0x02, 0x0f, 0x5d, 0xb8, 0xd8, 0x22, 0xbc, 0xde,
        0x00, 0x50, 0x6a, 0x3b, 0x9c, 0x01, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0xdd, 0x19, 0x00, 0x00,
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x3e, 0x8f, 0x2c, 0x11, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03,
        0x03, 0x07,
    ];

    fn addrs() -> ([u8; 16], [u8; 16]) {
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s[..4].copy_from_slice(&[10, 0, 2, 15]);
        d[..4].copy_from_slice(&[93, 184, 216, 34]);
        (s, d)
    }

    #[test]
    fn fast_open_options() {
        let tfo = [kind::MSS, 4, 5, 0xb4, kind::FASTOPEN, 2, kind::NOP, kind::NOP];
        assert!(parse_options(&tfo).unwrap().fastopen);
        let cookie = [kind::FASTOPEN, 10, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0];
        assert!(parse_options(&cookie).unwrap().fastopen);
        let exp = [kind::EXPERIMENTAL, 4, 0xf9, 0x89];
        assert!(parse_options(&exp).unwrap().fastopen);
        let other = [kind::EXPERIMENTAL, 4, 0x12, 0x34];
        assert!(!parse_options(&other).unwrap().fastopen);
        assert!(!parse_options(&[kind::MSS, 4, 5, 0xb4]).unwrap().fastopen);
    }

    #[test]
    fn parse_linux_syn() {
        let t = TcpPacket::new_checked(&SYN[34..]).unwrap();
        assert_eq!(t.src_port(), 48350);
        assert_eq!(t.dst_port(), 80);
        assert_eq!(t.seq_number(), 0x6a3b_9c01);
        assert_eq!(t.ack_number(), 0);
        assert_eq!(t.header_len(), 40);
        assert_eq!(t.flags(), flags::SYN);
        assert!(t.has_flags(flags::SYN));
        assert!(!t.has_flags(flags::SYN | flags::ACK));
        assert_eq!(t.window_len(), 64240);
        assert_eq!(t.checksum(), 0xdd19);
        assert_eq!(t.urgent_at(), 0);
        assert_eq!(t.options().len(), 20);
        assert!(t.payload().is_empty());
        let (s, d) = addrs();
        assert!(t.verify_checksum(&s, &d, false));
        // (Swapping the addresses would not change the sum: use another address.)
        assert!(!t.verify_checksum(&s, &[1; 16], false));

        let o = parse_options(t.options()).unwrap();
        assert_eq!(
            o,
            TcpOptions {
                mss: Some(1460),
                wscale: Some(7),
                sack_permitted: true,
                timestamp: Some((0x3e8f_2c11, 0)),
                ts_offset: Some(8),
                sack_offset: None,
                fastopen: false,
                sack_blocks: 0,
            }
        );
        let r = TcpRepr::parse(&t).unwrap();
        assert_eq!(r.options.mss, Some(1460));
        assert_eq!(r.payload_len, 0);
        // Emitting the repr reproduces the segment byte for byte (Linux option order).
        let mut out = [0u8; 40];
        let mut p = TcpPacket::new_unchecked(&mut out[..]);
        r.emit(&mut p);
        p.fill_checksum(&s, &d, false);
        assert_eq!(&out[..], &SYN[34..]);
    }

    #[test]
    fn setters() {
        let mut b = SYN;
        let (s, d) = addrs();
        let mut t = TcpPacket::new_checked(&mut b[34..]).unwrap();
        t.set_src_port(1);
        t.set_dst_port(2);
        t.set_seq_number(3);
        t.set_ack_number(4);
        t.set_flags(flags::SYN | flags::ACK | flags::ECE);
        t.set_window_len(5);
        t.set_urgent_at(6);
        t.set_header_len(24);
        t.options_mut().copy_from_slice(&[2, 4, 0x05, 0xb4]);
        assert_eq!(t.payload_mut().len(), 16);
        t.fill_checksum(&s, &d, false);
        assert!(t.verify_checksum(&s, &d, false));
        assert_eq!(
            (t.src_port(), t.dst_port(), t.seq_number(), t.ack_number(), t.flags(), t.window_len(), t.urgent_at()),
            (1, 2, 3, 4, 0x52, 5, 6)
        );
        assert_eq!(parse_options(t.options()).unwrap().mss, Some(1460));
        let c = t.checksum();
        t.set_checksum(c ^ 0x100);
        assert!(!t.verify_checksum(&s, &d, false));
        // Incremental update of the sequence number keeps the checksum valid.
        t.set_checksum(c);
        t.set_seq_number(0xdead_beef);
        t.set_checksum(checksum::update32(c, 3, 0xdead_beef));
        assert!(t.verify_checksum(&s, &d, false));
    }

    #[test]
    fn check_errors() {
        for n in 0..40 {
            assert_eq!(TcpPacket::new_checked(&SYN[34..34 + n]).err(), Some(Error::Truncated), "{n}");
        }
        let mut b = SYN;
        b[46] = 0x40;
        assert_eq!(TcpPacket::new_checked(&b[34..]).err(), Some(Error::Malformed));
        let mut short = [0u8; 17];
        fill_checksum(&mut short, &[0; 16], &[0; 16], false);
        assert_eq!(short, [0; 17]);
    }

    #[test]
    fn option_errors() {
        let ok = |o: &[u8]| parse_options(o).is_ok();
        assert!(ok(&[]));
        assert!(ok(&[0, 0xff, 0xff])); // EOL stops before garbage
        assert!(ok(&[1, 1, 1]));
        assert!(ok(&[99, 3, 7, 1])); // unknown kind skipped
        assert!(!ok(&[2])); // no length byte
        assert!(!ok(&[2, 4, 5])); // runs past the end
        assert!(!ok(&[99, 1])); // length < 2
        assert!(!ok(&[99, 0]));
        assert!(!ok(&[2, 3, 5])); // MSS length 3
        assert!(!ok(&[3, 4, 7, 0])); // WS length 4
        assert!(!ok(&[4, 3, 0])); // SACK_PERM length 3
        assert!(!ok(&[8, 8, 0, 0, 0, 0, 0, 0])); // TS length 8
        assert!(!ok(&[5, 2])); // SACK with no block
        assert!(!ok(&[5, 9, 0, 0, 0, 0, 0, 0, 0]));
        let mut five = vec![5u8, 42];
        five.resize(42, 0);
        assert!(!ok(&five));
        assert_eq!(parse_options(&[3, 3, 200]).unwrap().wscale, Some(14));
        let o = parse_options(&[1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4]).unwrap();
        assert_eq!((o.sack_offset, o.sack_blocks), (Some(4), 2));
    }

    #[test]
    fn emit_layouts() {
        let mut buf = [0u8; 40];
        let r = OptionsRepr { timestamp: Some((1, 2)), ..Default::default() };
        assert_eq!(r.emit(&mut buf), 12);
        assert_eq!(&buf[..4], &[1, 1, 8, 10]);
        let r = OptionsRepr { sack_permitted: true, ..Default::default() };
        assert_eq!(r.emit(&mut buf), 4);
        assert_eq!(&buf[..4], &[1, 1, 4, 2]);
        let mut sack = SackBlocks::default();
        assert!(sack.push((10, 20)));
        let r = OptionsRepr { mss: Some(536), wscale: Some(0), sack, ..Default::default() };
        assert_eq!(r.emit(&mut buf), 20);
        assert_eq!(&buf[..20], &[2, 4, 2, 24, 1, 3, 3, 0, 1, 1, 5, 10, 0, 0, 0, 10, 0, 0, 0, 20]);
        assert_eq!(r.emit(&mut buf[..19]), 0);
        assert_eq!(OptionsRepr::parse(&buf[..20]), Ok(r));
        for _ in 0..3 {
            assert!(sack.push((1, 2)));
        }
        assert!(!sack.push((1, 2)));
        assert_eq!(sack.len(), 4);
    }

    fn options_strategy() -> impl Strategy<Value = OptionsRepr> {
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u8..=14),
            any::<bool>(),
            proptest::option::of(any::<(u32, u32)>()),
            proptest::collection::vec(any::<(u32, u32)>(), 0..=4),
        )
            .prop_map(|(mss, wscale, sack_permitted, timestamp, blocks)| {
                let mut sack = SackBlocks::default();
                for b in blocks {
                    sack.push(b);
                }
                OptionsRepr { mss, wscale, sack_permitted, timestamp, sack }
            })
    }

    proptest! {
        #[test]
        fn options_round_trip(r in options_strategy()) {
            let mut buf = [0u8; 64];
            let n = r.emit(&mut buf);
            prop_assert_eq!(n, r.buffer_len());
            prop_assert_eq!(n % 4, 0);
            prop_assert_eq!(OptionsRepr::parse(&buf[..n]), Ok(r));
            let o = parse_options(&buf[..n]).unwrap();
            if let Some(off) = o.ts_offset.map(usize::from) {
                prop_assert_eq!(Some((be32(&buf, off), be32(&buf, off + 4))), r.timestamp);
            }
            if let Some(off) = o.sack_offset.map(usize::from) {
                prop_assert_eq!(be32(&buf, off), r.sack.blocks[0].0);
            }
        }

        #[test]
        fn parse_options_never_panics(d in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(o) = parse_options(&d) {
                if let Some(off) = o.ts_offset.map(usize::from) { prop_assert!(off + 8 <= d.len()); }
                if let Some(off) = o.sack_offset.map(usize::from) { prop_assert!(off + 8 * usize::from(o.sack_blocks) <= d.len()); }
            }
            let _ = OptionsRepr::parse(&d);
        }

        #[test]
        fn view_never_panics(d in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = TcpRepr::parse(&TcpPacket::new_unchecked(&d[..]));
            if let Ok(t) = TcpPacket::new_checked(&d[..]) {
                let _ = (t.options(), t.payload(), t.flags(), t.verify_checksum(&[0; 16], &[0; 16], true));
            }
        }
    }
}
