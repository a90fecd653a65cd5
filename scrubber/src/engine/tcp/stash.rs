//! Early data: the payload a client sent with its cookie ACK — a TCP Fast Open client resends
//! the data of its SYN with the ACK of the handshake — kept until the backend's SYN-ACK, then
//! delivered with the ACK that completes the backend handshake, so that the client does not wait
//! a retransmission timeout (~200 ms) for its request to get through.
//!
//! Fixed memory: a direct-mapped array of slots keyed by the flow; a colliding flow replaces the
//! older entry (whose data the client then resends by itself, as without the stash). Only data
//! of a client that proved its address (a valid cookie) is kept.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::engine::flow::FlowKey;

/// Slots (a few handshakes in flight at a time carry data).
const SLOTS: usize = 64;
/// Largest payload kept (a full Ethernet MSS).
pub const MAX_EARLY: usize = 1460;

/// One slot: the flow's tag (0 = empty), the length, the bytes.
struct Slot {
    tag: u64,
    len: u16,
    data: [u8; MAX_EARLY],
}

/// The early-data stash of one engine (see the module docs): 64 × 1.5 KiB.
pub struct Stash {
    slots: Box<[Slot]>,
    seed: u64,
}

impl core::fmt::Debug for Stash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let used = self.slots.iter().filter(|s| s.tag != 0).count();
        f.debug_struct("Stash").field("slots", &SLOTS).field("used", &used).finish()
    }
}

impl Stash {
    /// An empty stash keyed with `seed`.
    pub fn new(seed: u64) -> Self {
        let slots = (0..SLOTS).map(|_| Slot { tag: 0, len: 0, data: [0; MAX_EARLY] }).collect();
        Stash { slots, seed }
    }

    fn slot(&self, key: &FlowKey) -> (usize, u64) {
        let (b, n) = key.to_bytes();
        let h = xxh3_64_with_seed(&b[..n], self.seed) | 1;
        ((h as usize) % SLOTS, h)
    }

    /// Keep `data` for `key`; `false` (nothing kept) when it is too long.
    pub fn put(&mut self, key: &FlowKey, data: &[u8]) -> bool {
        if data.is_empty() || data.len() > MAX_EARLY {
            return false;
        }
        let (i, tag) = self.slot(key);
        let s = &mut self.slots[i];
        s.tag = tag;
        s.len = data.len() as u16;
        s.data[..data.len()].copy_from_slice(data);
        true
    }

    /// Take the data kept for `key`, if it is still there: copied into `out` (which must hold
    /// [`MAX_EARLY`] bytes); returns its length.
    pub fn take(&mut self, key: &FlowKey, out: &mut [u8]) -> Option<usize> {
        let (i, tag) = self.slot(key);
        let s = &mut self.slots[i];
        if s.tag != tag {
            return None;
        }
        s.tag = 0;
        let n = usize::from(s.len);
        out.get_mut(..n)?.copy_from_slice(&s.data[..n]);
        Some(n)
    }

    /// Forget what is kept for `key`.
    pub fn forget(&mut self, key: &FlowKey) {
        let (i, tag) = self.slot(key);
        if self.slots[i].tag == tag {
            self.slots[i].tag = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_take_once_and_limits() {
        let mut s = Stash::new(3);
        let a = FlowKey::v4([198, 18, 1, 1], 1, [198, 18, 0, 10], 80);
        let b = FlowKey::v4([198, 18, 1, 2], 1, [198, 18, 0, 10], 80);
        let mut out = [0u8; MAX_EARLY];
        assert!(s.put(&a, b"GET / HTTP/1.1\r\n\r\n"));
        assert_eq!(s.take(&b, &mut out), None);
        assert_eq!(s.take(&a, &mut out), Some(18));
        assert_eq!(&out[..18], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(s.take(&a, &mut out), None, "taken once");
        assert!(!s.put(&a, &[0; MAX_EARLY + 1]) && !s.put(&a, &[]));
        assert!(s.put(&a, b"x"));
        s.forget(&a);
        assert_eq!(s.take(&a, &mut out), None);
    }
}
