//! Translation of a proxied session's segments between the two sequence spaces: the client
//! knows the cookie ISN and the scrubber's timestamps, the backend its own ISN and clock.
//! Fields are rewritten in place with incremental checksum updates (RFC 1624), at the option
//! offsets [`crate::wire::frame::dissect`] found.

use super::{eff_ws, rescale};
use crate::engine::session::{Session, F_TS_STRIP, WS_NONE};
use crate::engine::{DropReason, FrameBuf};
use crate::wire::checksum;
use crate::wire::frame::Dissected;
use crate::wire::tcp::{self, flags as tf, TcpPacket};

/// Client → backend: ack and SACK blocks from the cookie sequence space to the backend's,
/// TSecr from the scrubber's clock to the backend's, the window to the backend's view.
#[inline]
pub(crate) fn inbound(d: &Dissected, frame: &mut FrameBuf<'_>, s: &Session) -> Result<(), DropReason> {
    let (hl, opts_at) = (d.tcp.header_len, tcp::HEADER_LEN);
    let seg = frame.buf.get_mut(d.l4_off..d.l4_off + d.l4_len).ok_or(DropReason::TcpMalformed)?;
    let mut t = TcpPacket::new_checked(&mut *seg).map_err(|_| DropReason::TcpMalformed)?;
    let mut ck = t.checksum();
    if d.tcp.flags & tf::ACK != 0 {
        let a = d.tcp.ack;
        let na = a.wrapping_sub(s.seq_off);
        t.set_ack_number(na);
        ck = checksum::update32(ck, a, na);
    }
    // Window: the client scales by its own shift; the backend assumes that shift only if it
    // negotiated scaling itself.
    let backend_view = if s.server_ws == WS_NONE { 0 } else { eff_ws(s.client_ws) };
    let w = d.tcp.window;
    let nw = rescale(w, eff_ws(s.client_ws), backend_view);
    if nw != w {
        t.set_window_len(nw);
        ck = checksum::update16(ck, w, nw);
    }
    t.set_checksum(ck);
    if hl > opts_at {
        let o = d.tcp.options().map_err(|_| DropReason::TcpBadOptions)?;
        let opts = &mut seg[opts_at..hl];
        if let Some(off) = o.ts_offset.map(usize::from) {
            if s.flags & F_TS_STRIP != 0 {
                // The backend did not negotiate timestamps: blank the option (kind and length
                // sit just before TSval) so the segment keeps its length.
                ck = blank_option(opts, off.wrapping_sub(2), 10, ck);
            } else {
                // TSecr follows TSval.
                ck = patch_u32(opts, off + 4, ck, |v| v.wrapping_sub(s.ts_off));
            }
        }
        if let Some(off) = o.sack_offset.map(usize::from) {
            for i in 0..usize::from(o.sack_blocks) {
                ck = patch_u32(opts, off + 8 * i, ck, |v| v.wrapping_sub(s.seq_off));
                ck = patch_u32(opts, off + 8 * i + 4, ck, |v| v.wrapping_sub(s.seq_off));
            }
        }
        seg[16..18].copy_from_slice(&ck.to_be_bytes());
    }
    Ok(())
}

/// Backend → client: seq into the cookie sequence space, TSval into the scrubber's clock, the
/// window to the scale advertised to the client.
pub(crate) fn outbound(d: &Dissected, frame: &mut FrameBuf<'_>, s: &Session) -> Result<(), DropReason> {
    let (hl, opts_at) = (d.tcp.header_len, tcp::HEADER_LEN);
    let seg = frame.buf.get_mut(d.l4_off..d.l4_off + d.l4_len).ok_or(DropReason::TcpMalformed)?;
    let mut t = TcpPacket::new_checked(&mut *seg).map_err(|_| DropReason::TcpMalformed)?;
    let mut ck = t.checksum();
    let q = d.tcp.seq;
    let nq = q.wrapping_add(s.seq_off);
    t.set_seq_number(nq);
    ck = checksum::update32(ck, q, nq);
    let w = d.tcp.window;
    let nw = rescale(w, eff_ws(s.server_ws), eff_ws(s.adv_ws));
    if nw != w {
        t.set_window_len(nw);
        ck = checksum::update16(ck, w, nw);
    }
    t.set_checksum(ck);
    if hl > opts_at && s.ts_off != 0 {
        let o = d.tcp.options().map_err(|_| DropReason::TcpBadOptions)?;
        if let Some(off) = o.ts_offset.map(usize::from) {
            ck = patch_u32(&mut seg[opts_at..hl], off, ck, |v| v.wrapping_add(s.ts_off));
            seg[16..18].copy_from_slice(&ck.to_be_bytes());
        }
    }
    Ok(())
}

/// Read a big-endian u32 at `off` in `b`, replace it with `f(old)` and return the updated
/// checksum.
#[inline]
fn patch_u32(b: &mut [u8], off: usize, ck: u16, f: impl Fn(u32) -> u32) -> u16 {
    let Some(field) = b.get_mut(off..off + 4) else { return ck };
    let old = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
    let new = f(old);
    field.copy_from_slice(&new.to_be_bytes());
    checksum::update32(ck, old, new)
}

/// Overwrite `len` bytes at `at` in the TCP options (which start at an even offset of the
/// header, 20) with NOP options and return the updated checksum.
fn blank_option(opts: &mut [u8], at: usize, len: usize, ck: u16) -> u16 {
    let Some(end) = at.checked_add(len).filter(|&e| e <= opts.len()) else { return ck };
    // Work on 16-bit words aligned to the TCP header (options start at byte 20).
    let (lo, hi) = (at & !1, (end + 1) & !1);
    let mut old = [0u8; 16];
    let span = hi.min(opts.len()) - lo;
    if span > old.len() {
        return ck;
    }
    old[..span].copy_from_slice(&opts[lo..lo + span]);
    opts[at..end].fill(tcp::kind::NOP);
    let mut ck = ck;
    for i in (0..span).step_by(2) {
        let o = u16::from_be_bytes([old[i], *old.get(i + 1).unwrap_or(&0)]);
        let n = u16::from_be_bytes([opts[lo + i], *opts.get(lo + i + 1).unwrap_or(&0)]);
        if o != n {
            ck = checksum::update16(ck, o, n);
        }
    }
    ck
}
