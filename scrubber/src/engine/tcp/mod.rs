//! TCP towards protected services: the state machine of DESIGN.md's TCP table.
//!
//! * [`inbound`] — ext → int, one function per session state (SYN, SYN-ACK from outside, no
//!   session, backend handshake pending, open).
//! * [`outbound`] — int → ext: connections the servers open, backend SYN-ACKs, replies.
//! * [`proxy`] — the SYN proxy: cookie SYN-ACKs, cookie ACKs into backend SYNs, consuming the
//!   backend's SYN-ACK, mid-stream pickup.
//! * [`translate`] — sequence, SACK, timestamp and window translation of proxied sessions.
//! * [`emit`] — segments written through the `wire` Reprs.
//! * [`seq`] — [`SeqNumber`], modular sequence arithmetic.
//! * [`recent`] — new SYNs on busy 4-tuples, and the MSS each backend announced.
//! * [`stash`] — early data (TCP Fast Open) kept until the backend handshake completes.
//!
//! RSTs follow RFC 5961: only a RST at the exact next sequence number closes a session; one
//! elsewhere in the window is forwarded (the endpoint answers with a challenge ACK) and the
//! session stays. A closed session lingers (its state's idle timeout, `Closed`): segments of
//! the peer that did not hear the RST are forwarded so that the other end resets them again.

pub mod emit;
pub mod inbound;
pub mod outbound;
pub mod pickup;
pub mod proxy;
pub mod recent;
pub mod requests;
pub mod seq;
pub mod stash;
pub mod translate;

pub use seq::SeqNumber;

use super::flow::FlowKey;
use super::session::WS_NONE;
use super::{Direction, DropReason};
use crate::wire::frame::Dissected;
use crate::wire::tcp::flags as tf;

/// Minimum interval between SYNs re-sent to a silent backend.
const BACKEND_SYN_RETRY_MS: u32 = 1_000;
/// Sequence distance beyond which a segment on a live proxied session is checked as a fresh
/// cookie ACK (a client that reused the 4-tuple after a close the scrubber did not see).
const FAR_SEQ: u32 = 1 << 24;

/// The session key of a TCP frame, oriented client (ext side) / server (protected side).
#[inline]
pub fn flow_key(d: &Dissected, dir: Direction) -> FlowKey {
    let (c, cp, s, sp) = match dir {
        Direction::Inbound => (&d.src, d.sport, &d.dst, d.dport),
        Direction::Outbound => (&d.dst, d.dport, &d.src, d.sport),
    };
    if d.v6 {
        FlowKey::v6(*c, cp, *s, sp)
    } else {
        FlowKey::v4([c[0], c[1], c[2], c[3]], cp, [s[0], s[1], s[2], s[3]], sp)
    }
}

/// The flag bits the state machine branches on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub rst: bool,
    pub fin: bool,
}

impl Flags {
    #[inline]
    pub(crate) fn of(f: u8) -> Flags {
        Flags { syn: f & tf::SYN != 0, ack: f & tf::ACK != 0, rst: f & tf::RST != 0, fin: f & tf::FIN != 0 }
    }
}

/// Flag sanity shared by both directions: `Err` for combinations no TCP stack sends.
#[inline]
pub fn check_flags(f: u8) -> Result<(), DropReason> {
    let f = f & !(tf::ECE | tf::CWR);
    if f == 0 {
        return Err(DropReason::TcpNull);
    }
    if f & (tf::FIN | tf::PSH | tf::URG) == (tf::FIN | tf::PSH | tf::URG) {
        return Err(DropReason::TcpXmas);
    }
    if f & (tf::SYN | tf::FIN) == (tf::SYN | tf::FIN) {
        return Err(DropReason::TcpSynFin);
    }
    if f & (tf::SYN | tf::RST) == (tf::SYN | tf::RST) {
        return Err(DropReason::TcpSynRst);
    }
    let ok = match f & !tf::PSH {
        x if x == tf::SYN => f & tf::PSH == 0,
        x if x == tf::SYN | tf::ACK => f & tf::PSH == 0,
        x if x == tf::RST || x == tf::RST | tf::ACK => true,
        x if x == tf::ACK || x == tf::ACK | tf::FIN || x == tf::ACK | tf::URG || x == tf::ACK | tf::FIN | tf::URG => {
            true
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(DropReason::TcpBadFlags)
    }
}

/// A window field converted from one scale shift to another.
#[inline]
pub(crate) fn rescale(field: u16, from: u8, to: u8) -> u16 {
    if from == to {
        return field;
    }
    let bytes = (field as u64) << from;
    (bytes >> to).min(0xffff) as u16
}

/// The shift a window-scale field stands for ([`WS_NONE`]: no scaling).
#[inline]
pub(crate) fn eff_ws(ws: u8) -> u8 {
    if ws == WS_NONE {
        0
    } else {
        ws.min(14)
    }
}

/// The sequence number just after a segment: `seq + payload + FIN`.
#[inline]
pub(crate) fn seg_end(d: &Dissected) -> SeqNumber {
    SeqNumber(d.tcp.seq) + d.tcp.payload_len as u32 + u32::from(d.tcp.flags & tf::FIN != 0)
}
