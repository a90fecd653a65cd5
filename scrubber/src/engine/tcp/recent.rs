//! Two small fixed-memory memories of the TCP state machine, beside the session table:
//!
//! * [`RecentSyns`] — 4-tuples whose client sent a *new* SYN (another ISN) while a session was
//!   live: the next ACK there is tried as a new connection's cookie first, whatever its
//!   distance from the old sequence space (a client that crashed or sits behind a NAT reuses the
//!   port within a second: Linux's ISNs then differ by less than 2²⁴ from the old ones).
//! * [`BackendMss`] — the MSS each backend address announced in its latest SYN-ACK, so that
//!   cookie SYN-ACKs never promise clients more than the backend's path carries.
//!
//! Both are direct-mapped arrays indexed by a keyed hash (a colliding entry replaces the older
//! one): no allocation after construction, O(1), nothing shared between engines.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::engine::flow::FlowKey;

/// Entries of [`RecentSyns`] (16 KiB).
const RECENT_SLOTS: usize = 2048;
/// How long a recorded SYN makes the tuple's next ACK a cookie candidate, in ms.
pub const RECENT_SYN_MS: u32 = 3_000;

/// 4-tuples with a recent new SYN over a live session (see the module docs).
#[derive(Debug)]
pub struct RecentSyns {
    /// (tag, tick + 1); tick 0 = empty.
    slots: Box<[(u32, u32)]>,
    seed: u64,
    /// Tick + 1 of the latest note (0: none yet): while nothing was noted lately, lookups are
    /// skipped without hashing (the common case).
    latest: u32,
}

impl RecentSyns {
    /// An empty memory keyed with `seed`.
    pub fn new(seed: u64) -> Self {
        RecentSyns { slots: vec![(0, 0); RECENT_SLOTS].into_boxed_slice(), seed, latest: 0 }
    }

    fn slot(&self, key: &FlowKey) -> (usize, u32) {
        let (b, n) = key.to_bytes();
        let h = xxh3_64_with_seed(&b[..n], self.seed);
        ((h as usize) & (RECENT_SLOTS - 1), (h >> 32) as u32)
    }

    /// Remember a new SYN on `key` at `tick` (ms).
    pub fn note(&mut self, key: &FlowKey, tick: u32) {
        let (i, tag) = self.slot(key);
        let at = tick.wrapping_add(1).max(1);
        self.slots[i] = (tag, at);
        self.latest = at;
    }

    /// Whether a new SYN was seen on `key` within [`RECENT_SYN_MS`] before `tick`.
    #[inline]
    pub fn recent(&self, key: &FlowKey, tick: u32) -> bool {
        if self.latest == 0 || tick.wrapping_add(1).wrapping_sub(self.latest) > RECENT_SYN_MS {
            return false;
        }
        let (i, tag) = self.slot(key);
        let (t, at) = self.slots[i];
        at != 0 && t == tag && tick.wrapping_add(1).wrapping_sub(at) <= RECENT_SYN_MS
    }

    /// Forget `key` (its new connection was established).
    pub fn forget(&mut self, key: &FlowKey) {
        let (i, tag) = self.slot(key);
        if self.slots[i].0 == tag {
            self.slots[i] = (0, 0);
        }
    }
}

/// Entries of [`BackendMss`] (16 KiB).
const MSS_SLOTS: usize = 2048;

/// The latest MSS each backend address announced (see the module docs).
#[derive(Debug)]
pub struct BackendMss {
    /// (tag, mss); mss 0 = empty.
    slots: Box<[(u32, u16)]>,
    seed: u64,
}

impl BackendMss {
    /// An empty memory keyed with `seed`.
    pub fn new(seed: u64) -> Self {
        BackendMss { slots: vec![(0, 0); MSS_SLOTS].into_boxed_slice(), seed }
    }

    fn slot(&self, addr: &[u8; 16]) -> (usize, u32) {
        let h = xxh3_64_with_seed(addr, self.seed);
        ((h as usize) & (MSS_SLOTS - 1), (h >> 32) as u32)
    }

    /// Record the MSS `mss` the backend at `addr` announced.
    pub fn note(&mut self, addr: &[u8; 16], mss: u16) {
        let (i, tag) = self.slot(addr);
        self.slots[i] = (tag, mss.max(1));
    }

    /// The MSS the backend at `addr` last announced, if it is remembered.
    pub fn get(&self, addr: &[u8; 16]) -> Option<u16> {
        let (i, tag) = self.slot(addr);
        let (t, m) = self.slots[i];
        (m != 0 && t == tag).then_some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_syns_expire_and_are_forgotten() {
        let mut r = RecentSyns::new(7);
        let k = FlowKey::v4([198, 18, 1, 1], 40000, [198, 18, 0, 10], 80);
        let other = FlowKey::v4([198, 18, 1, 1], 40001, [198, 18, 0, 10], 80);
        assert!(!r.recent(&k, 100));
        r.note(&k, 100);
        assert!(!r.recent(&other, 150));
        assert!(r.recent(&k, 150) && r.recent(&k, 151));
        r.forget(&k);
        assert!(!r.recent(&k, 152), "forgotten");
        r.note(&k, 100);
        assert!(!r.recent(&k, 100 + RECENT_SYN_MS + 1), "expired");
        // Tick 0 and wrap-around work.
        r.note(&k, u32::MAX);
        assert!(r.recent(&k, 5));
    }

    #[test]
    fn backend_mss_remembers_the_latest() {
        let mut m = BackendMss::new(9);
        let a = [198, 18, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let b = [198, 18, 0, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(m.get(&a), None);
        m.note(&a, 1460);
        m.note(&a, 1240);
        assert_eq!((m.get(&a), m.get(&b)), (Some(1240), None));
    }
}
