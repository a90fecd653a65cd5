//! Flows whose two directions reach different workers: the owner of a flow (a symmetric hash
//! of its addresses and ports) and the lock-free queues frames are handed to it through.

use crossbeam::queue::ArrayQueue;
use scrubber_xsk::{Desc, SocketPair};
use xxhash_rust::xxh3::xxh3_64;

use crate::engine::Direction;
use crate::wire::frame::{dissect, Frag};
use crate::wire::{IPPROTO_TCP, IPPROTO_UDP};

/// Largest frame a hand-off carries.
pub const HANDOFF_FRAME: usize = 2048;
/// Hand-off queue entries per worker.
pub const HANDOFF_QUEUE: usize = 1024;

/// A frame handed from one worker to the flow's owner.
#[derive(Debug)]
pub struct Handoff {
    pub(crate) dir: Direction,
    pub(crate) len: u16,
    pub(crate) data: [u8; HANDOFF_FRAME],
}

/// Owner of a frame's flow among `n` workers: a hash of the (address, port) pairs taken in a
/// fixed order so both directions agree. Frames that are not unfragmented TCP or UDP stay where
/// they are (`None`).
#[inline]
pub fn flow_owner(frame: &[u8], n: usize) -> Option<usize> {
    if n <= 1 {
        return None;
    }
    let d = dissect(frame).ok()?;
    if !matches!(d.proto, IPPROTO_TCP | IPPROTO_UDP) || d.frag != Frag::None {
        return None;
    }
    Some(owner_of((&d.src, d.sport), (&d.dst, d.dport), d.proto, n))
}

/// Owner among `n` workers of the flow between (address, port) `a` and `b` (either order;
/// addresses as [`crate::wire::frame::Dissected`] holds them) over IP protocol `proto`.
#[inline]
pub fn owner_of(a: (&[u8; 16], u16), b: (&[u8; 16], u16), proto: u8, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let a = (a.0, a.1.to_be_bytes());
    let b = (b.0, b.1.to_be_bytes());
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    let mut key = [0u8; 37];
    key[..16].copy_from_slice(x.0);
    key[16..18].copy_from_slice(&x.1);
    key[18..34].copy_from_slice(y.0);
    key[34..36].copy_from_slice(&y.1);
    key[36] = proto;
    (xxh3_64(&key) % n as u64) as usize
}

/// What happened to a frame offered to another worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandedOff {
    /// Queued for the owner.
    Queued,
    /// Not handed over: too large, or the owner's queue was full.
    Dropped,
}

/// Copy the frame of `d` into the owner's queue `q`.
#[inline]
pub fn hand_off(w: &mut SocketPair, q: &ArrayQueue<Handoff>, d: &Desc, dir: Direction) -> HandedOff {
    let Some(f) = w.frame(d) else { return HandedOff::Dropped };
    if f.len() > HANDOFF_FRAME {
        return HandedOff::Dropped;
    }
    let mut h = Handoff { dir, len: f.len() as u16, data: [0; HANDOFF_FRAME] };
    h.data[..f.len()].copy_from_slice(f);
    if q.push(h).is_ok() {
        HandedOff::Queued
    } else {
        HandedOff::Dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{udp_frame, TcpFrame};

    #[test]
    fn flow_owner_is_symmetric_and_spreads() {
        let mut seen = [0usize; 4];
        for p in 1000..1400u16 {
            let a = TcpFrame::new("198.19.0.1".parse().unwrap(), p, "198.18.0.10".parse().unwrap(), 80, 0x10).build();
            let b = TcpFrame::new("198.18.0.10".parse().unwrap(), 80, "198.19.0.1".parse().unwrap(), p, 0x10).build();
            let oa = flow_owner(&a, 4).unwrap();
            assert_eq!(Some(oa), flow_owner(&b, 4));
            seen[oa] += 1;
            let v6 = TcpFrame::new("2001:2::1".parse().unwrap(), p, "2001:2::10".parse().unwrap(), 80, 0x10).build();
            let v6r = TcpFrame::new("2001:2::10".parse().unwrap(), 80, "2001:2::1".parse().unwrap(), p, 0x10).build();
            assert_eq!(flow_owner(&v6, 4), flow_owner(&v6r, 4));
        }
        assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
        let u = udp_frame("198.19.0.1".parse().unwrap(), 5, "198.18.0.10".parse().unwrap(), 53, b"x");
        assert!(flow_owner(&u, 4).is_some());
        assert_eq!(flow_owner(&u, 1), None);
        assert_eq!(flow_owner(&[0u8; 10], 4), None);
        let arp = crate::wire::builder::arp_request([2, 0, 0, 0, 0, 1], [198, 18, 0, 1], [198, 18, 0, 10]);
        assert_eq!(flow_owner(&arp, 4), None);
    }
}
