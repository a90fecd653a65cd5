//! Mid-stream pickup a flood cannot use.
//!
//! After a start without a snapshot (a crash, a first start in front of live servers), the
//! clients of connections opened before it send segments that belong to no session. Taking
//! every such ACK up as a session (what pickup did before) forwards a random-source ACK flood
//! in full and fills the table with its "sessions". Instead, during the pickup window
//! (`pickup` / `learning-window`):
//!
//! 1. **The server confirms.** A session-less segment *from a protected server* (not a RST or
//!    SYN) proves the server has the connection: it becomes an established, tracked session
//!    at once. Connections where the server talks (downloads, responses, its keep-alives)
//!    resume on their own.
//! 2. **A client's ACK is seen twice, then probed.** A session-less ACK from a client is dropped
//!    (the client retransmits it). Its flow is recorded in a two-generation blocked Bloom
//!    filter ([`GEN_MS`] per generation, 4 MiB each); when the same flow is seen again within
//!    two generations, the scrubber turns the segment into a keep-alive-style probe to the
//!    server (an ACK with `seq − 1`, no data, the client's timestamps) — within a budget of
//!    [`PROBES_PER_SEC`] per box. A server that has the connection answers with an ACK (step 1
//!    then confirms it); one that does not answers with a RST, which the scrubber consumes
//!    (it never reaches the spoofed source) and remembers for [`REJECT_TTL_MS`]. A random-source
//!    flood rarely sends a flow twice: what reaches the server is at most the probe budget.
//! 3. **Unconfirmed flows never enter the session table.** Probes in flight and rejections are
//!    kept in a fixed area of [`PENDING`] slots with short timeouts ([`PROBE_TTL_MS`]), apart
//!    from the sessions: a flood can neither fill the table nor evict a confirmed session.
//!
//! Memory: 8.25 MiB per engine, allocated when a policy with a pickup window is prepared.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::engine::policy::limiter::{BucketState, TokenBucket};

/// Length of one generation of the "seen once" filter, in ms: a flow seen again within one
/// to two generations is probed.
pub const GEN_MS: u32 = 2_000;
/// Words (64 bits) of one generation: 2¹⁹ words = 4 MiB.
const WORDS: usize = 1 << 19;
/// Slots of the probe area.
pub const PENDING: usize = 1 << 14;
/// A probe unanswered this long may be sent again.
pub const PROBE_TTL_MS: u32 = 1_000;
/// A flow the server refused (RST) is dropped without a probe this long.
pub const REJECT_TTL_MS: u32 = 10_000;
/// Probes per second, per box (divided among the workers).
pub const PROBES_PER_SEC: u64 = 1_000;

const PROBING: u8 = 1;
const REJECTED: u8 = 2;

#[derive(Clone, Copy, Debug, Default)]
struct Pend {
    tag: u64,
    t: u32,
    state: u8,
}

/// What to do with a session-less client ACK during the pickup window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Send a probe to the server (the segment becomes the probe).
    Probe,
    /// First sighting of the flow: drop, remember.
    FirstSighting,
    /// A probe for this flow is in flight: drop.
    Pending,
    /// The server refused this flow: drop.
    Rejected,
    /// The probe area's slot is taken by another flow's live probe: drop.
    Busy,
    /// The probe budget is spent: drop.
    Budget,
}

/// The filter, the probe area and the budget of one engine (see the module docs).
pub struct PickupGate {
    gens: [Box<[u64]>; 2],
    cur: usize,
    gen_start: Option<u32>,
    pending: Box<[Pend]>,
    bucket: BucketState,
    rate: TokenBucket,
    seed: u64,
}

impl core::fmt::Debug for PickupGate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PickupGate").field("rate", &self.rate).finish_non_exhaustive()
    }
}

impl PickupGate {
    /// A gate for one of `share` engines (the budget is divided), hashing with `seed`.
    pub fn new(share: u32, seed: u64, now_ns: u64) -> PickupGate {
        let per = (PROBES_PER_SEC / u64::from(share.max(1))).max(1);
        let rate = TokenBucket { rate: per, burst: (per / 10).max(1) };
        PickupGate {
            gens: [vec![0u64; WORDS].into_boxed_slice(), vec![0u64; WORDS].into_boxed_slice()],
            cur: 0,
            gen_start: None,
            pending: vec![Pend::default(); PENDING].into_boxed_slice(),
            bucket: BucketState::full(&rate, now_ns),
            rate,
            seed,
        }
    }

    /// The flow hash of a stored table key.
    #[inline]
    pub fn hash(&self, key: u128) -> u64 {
        xxh3_64_with_seed(&key.to_le_bytes(), self.seed) | 1
    }

    /// The word and the three bits of `h` in a generation.
    #[inline]
    fn bits(h: u64) -> (usize, u64) {
        let w = (h as usize >> 1) & (WORDS - 1);
        let m = 1u64 << ((h >> 40) & 63) | 1u64 << ((h >> 46) & 63) | 1u64 << ((h >> 52) & 63);
        (w, m)
    }

    fn rotate(&mut self, now_ms: u32) {
        match self.gen_start {
            None => self.gen_start = Some(now_ms),
            Some(t) if now_ms.wrapping_sub(t) >= GEN_MS && now_ms.wrapping_sub(t) < 1 << 31 => {
                self.cur ^= 1;
                self.gens[self.cur].fill(0);
                self.gen_start = Some(now_ms);
            }
            _ => {}
        }
    }

    fn live(p: &Pend, now_ms: u32) -> bool {
        let age = now_ms.wrapping_sub(p.t);
        match p.state {
            PROBING => age < PROBE_TTL_MS,
            REJECTED => age < REJECT_TTL_MS,
            _ => false,
        }
    }

    /// A session-less ACK of flow `h` from a client at `now_ns`.
    pub fn client_ack(&mut self, h: u64, now_ns: u64) -> Gate {
        let now_ms = (now_ns / 1_000_000) as u32;
        let slot = (h >> 20) as usize & (PENDING - 1);
        let p = self.pending[slot];
        let live = Self::live(&p, now_ms);
        if live && p.tag == h {
            return if p.state == REJECTED { Gate::Rejected } else { Gate::Pending };
        }
        self.rotate(now_ms);
        let (w, m) = Self::bits(h);
        let seen = self.gens[0][w] & m == m || self.gens[1][w] & m == m;
        self.gens[self.cur][w] |= m;
        if !seen {
            return Gate::FirstSighting;
        }
        if live {
            return Gate::Busy;
        }
        if !self.bucket.take(&self.rate, now_ns, 1) {
            return Gate::Budget;
        }
        self.pending[slot] = Pend { tag: h, t: now_ms, state: PROBING };
        Gate::Probe
    }

    /// A session-less segment of flow `h` from the server at `now_ns`: `Some(true)` when it
    /// answers a probe with a RST (refused: consume it), `Some(false)` when it answers one
    /// otherwise, `None` when no probe was in flight.
    pub fn server_segment(&mut self, h: u64, rst: bool, now_ns: u64) -> Option<bool> {
        let now_ms = (now_ns / 1_000_000) as u32;
        let slot = (h >> 20) as usize & (PENDING - 1);
        let p = &mut self.pending[slot];
        if p.tag != h || p.state != PROBING || now_ms.wrapping_sub(p.t) >= PROBE_TTL_MS {
            return None;
        }
        if rst {
            *p = Pend { tag: h, t: now_ms, state: REJECTED };
            Some(true)
        } else {
            *p = Pend::default();
            Some(false)
        }
    }

    /// Bytes allocated.
    pub fn memory_bytes(&self) -> usize {
        2 * WORDS * 8 + PENDING * core::mem::size_of::<Pend>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_767_225_600 * 1_000_000_000;
    const MS: u64 = 1_000_000;

    #[test]
    fn seen_twice_then_probed_then_answered() {
        let mut g = PickupGate::new(1, 7, T);
        let h = g.hash(0x1234);
        assert_eq!(g.client_ack(h, T), Gate::FirstSighting);
        assert_eq!(g.client_ack(h, T + 300 * MS), Gate::Probe);
        assert_eq!(g.client_ack(h, T + 400 * MS), Gate::Pending);
        // The server's ACK answers it: the probe is gone (the engine confirms the session).
        assert_eq!(g.server_segment(h, false, T + 401 * MS), Some(false));
        assert_eq!(g.server_segment(h, false, T + 402 * MS), None);
        // Another flow, refused by the server: dropped without a probe for REJECT_TTL_MS.
        let r = g.hash(0x5678);
        g.client_ack(r, T);
        assert_eq!(g.client_ack(r, T + 3_000 * MS), Gate::Probe, "seen within two generations");
        assert_eq!(g.server_segment(r, true, T + 3_001 * MS), Some(true));
        assert_eq!(g.client_ack(r, T + 5_000 * MS), Gate::Rejected);
        // A flow seen only long ago is a first sighting again.
        let mut g = PickupGate::new(1, 7, T);
        let old = g.hash(0x9abc);
        g.client_ack(old, T);
        g.client_ack(g.hash(1), T + 2_100 * MS);
        g.client_ack(g.hash(2), T + 4_200 * MS);
        assert_eq!(g.client_ack(old, T + 4_300 * MS), Gate::FirstSighting);
    }

    #[test]
    fn a_random_flood_is_mostly_first_sightings_and_the_budget_holds() {
        let mut g = PickupGate::new(1, 7, T);
        let mut probes = 0u64;
        let n = 800_000u64; // 400 kpps for two seconds
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if g.client_ack(g.hash(u128::from(x)), T + i * 2_500) == Gate::Probe {
                probes += 1;
            }
        }
        // Two seconds of budget (1,000/s, burst 100) at most; the filter's false positives
        // are far fewer than that.
        assert!(probes <= 2_100, "{probes} probes");
        eprintln!("random flood: {probes} probes for {n} frames");
        // A legitimate flow retransmitting amid the flood gets its probe.
        let legit = g.hash(0xfeed);
        let t = T + n * 2_500;
        g.client_ack(legit, t);
        let mut got = false;
        for k in 1..5 {
            if g.client_ack(legit, t + k * 250 * MS) == Gate::Probe {
                got = true;
                break;
            }
        }
        assert!(got, "the legitimate flow was never probed");
    }
}
