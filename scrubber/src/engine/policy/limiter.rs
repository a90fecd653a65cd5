//! Rate and connection limits of `limit` rules, in fixed memory.
//!
//! * [`TokenBucket`] — one bucket: `rate` units per second, at most `burst` units banked. The
//!   level is kept in unit·nanoseconds so refills are exact integer arithmetic.
//! * [`SourceTable`] — per-source state of one rule: a fixed array of 4-way sets indexed by a
//!   keyed hash of the source address. A flood of random (spoofed) sources replaces entries, it
//!   never grows the table. The victim in a full set is the entry idle longest among those with
//!   no live connections; a replaced source starts again with full buckets, so a legitimate
//!   source is never *more* limited because of a flood, only an attacker's own history is lost.
//! * [`ConnCounts`] — live connections per source (for `max-conns`): a fixed direct-mapped
//!   array of (tag, count); sessions remember their slot so closing them decrements it.
//!
//! Nothing here allocates after construction, and nothing is shared between cores: each engine
//! (worker) has its own tables; rates are divided among workers by the caller where they are
//! aggregate (see [`crate::engine::EngineConfig::rate_share`]).
#![forbid(unsafe_code)]

use xxhash_rust::xxh3::xxh3_64_with_seed;

const NS: u128 = 1_000_000_000;

/// A token bucket. `rate` = 0 means "no tokens ever" (everything over the burst is refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Units per second.
    pub rate: u64,
    /// Most units that can be banked.
    pub burst: u64,
}

/// Banked units × 10⁹ ("unit-nanoseconds") after refilling `level` for `dt_ns` at `b`'s rate,
/// capped at the burst.
#[inline]
fn refill(level: u64, dt_ns: u64, b: &TokenBucket) -> u64 {
    let cap = (u128::from(b.burst) * NS).min(u128::from(u64::MAX));
    (u128::from(level) + u128::from(dt_ns) * u128::from(b.rate)).min(cap) as u64
}

/// Takes `cost` units from `level` if it holds them.
#[inline]
fn take(level: &mut u64, cost: u64) -> bool {
    let need = (u128::from(cost) * NS).min(u128::from(u64::MAX)) as u64;
    if *level >= need {
        *level -= need;
        true
    } else {
        false
    }
}

/// The state of one [`TokenBucket`]: banked units × 10⁹ and the time of the last refill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketState {
    level: u64,
    last_ns: u64,
}

impl BucketState {
    /// A full bucket at time `now_ns`.
    pub fn full(b: &TokenBucket, now_ns: u64) -> Self {
        BucketState { level: refill(0, u64::MAX, b), last_ns: now_ns }
    }

    /// Refill to `now_ns`; then take `cost` units if the bucket holds them. Returns whether it
    /// did. The clock never runs backwards here (an older `now_ns` refills nothing).
    #[inline]
    pub fn take(&mut self, b: &TokenBucket, now_ns: u64, cost: u64) -> bool {
        if now_ns > self.last_ns {
            self.level = refill(self.level, now_ns - self.last_ns, b);
            self.last_ns = now_ns;
        }
        take(&mut self.level, cost)
    }

    /// Whole units banked (after the last refill).
    pub fn units(&self) -> u64 {
        (u128::from(self.level) / NS) as u64
    }
}

/// The limits of one rule that apply per source, resolved for this engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceLimits {
    /// Packets per second.
    pub pps: Option<TokenBucket>,
    /// Bytes per second (bps rates are converted to bytes).
    pub bytes: Option<TokenBucket>,
    /// New connections (TCP SYNs) per second.
    pub new_conns: Option<TokenBucket>,
}

impl SourceLimits {
    /// Whether any per-source bucket is configured.
    pub fn any(&self) -> bool {
        self.pps.is_some() || self.bytes.is_some() || self.new_conns.is_some()
    }
}

/// One source's state in a [`SourceTable`]: 40 bytes.
#[derive(Clone, Copy, Debug, Default)]
struct SourceEntry {
    /// Keyed hash of the source address; 0 = free.
    tag: u64,
    /// Time of the last refill of all three buckets.
    last_ns: u64,
    /// Banked unit-nanoseconds of the packet, byte and new-connection buckets.
    pps: u64,
    bytes: u64,
    conns: u64,
}

/// Ways per set.
const WAYS: usize = 4;

/// Why a packet was refused by a per-source limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Packet-rate or byte-rate bucket empty.
    Rate,
    /// New-connection bucket empty.
    NewConns,
}

crate::counters! {
    /// The limiters of one engine, summed over the rules of its policy.
    pub struct LimiterStats("limiter") {
        /// Per-source tables in use (one per `limit` rule with per-source limits).
        gauge "limiters" source_tables,
        /// Source entries in those tables (fixed memory: 40 bytes each).
        gauge "limiters" source_slots,
        /// Sources given a fresh entry (a free slot or a replaced one).
        counter "limiters" sources_inserted,
        /// Entries of other sources replaced to make room (evictions: a flood of random
        /// sources replaces entries instead of growing the table).
        counter "limiters" sources_evicted,
    }
}

impl LimiterStats {
    /// Add one table's numbers.
    pub fn add_table(&mut self, t: &SourceTable) {
        let s = t.stats();
        self.source_tables += 1;
        self.source_slots += t.capacity() as u64;
        self.sources_inserted += s.inserts;
        self.sources_evicted += s.replaced;
    }
}

/// Statistics of a [`SourceTable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SourceTableStats {
    /// Sources given a fresh entry (a free slot or a replaced one).
    pub inserts: u64,
    /// Entries of other sources replaced to make room.
    pub replaced: u64,
}

/// Per-source limiter state of one rule, in fixed memory (see the module docs).
#[derive(Clone, Debug)]
pub struct SourceTable {
    limits: SourceLimits,
    sets: Vec<[SourceEntry; WAYS]>,
    mask: usize,
    seed: u64,
    stats: SourceTableStats,
}

impl SourceTable {
    /// A table of at least `slots` entries (rounded up to a power of two, at least 64).
    pub fn new(limits: SourceLimits, slots: usize, seed: u64) -> SourceTable {
        let sets = (slots.max(64) / WAYS).next_power_of_two();
        SourceTable {
            limits,
            sets: vec![[SourceEntry::default(); WAYS]; sets],
            mask: sets - 1,
            seed,
            stats: SourceTableStats::default(),
        }
    }

    /// The limits this table enforces.
    pub fn limits(&self) -> &SourceLimits {
        &self.limits
    }

    /// Replace the limits (a reloaded rule with new rates keeps its sources' state).
    pub fn set_limits(&mut self, l: SourceLimits) {
        self.limits = l;
    }

    /// Number of entries.
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Heap bytes used.
    pub fn memory_bytes(&self) -> usize {
        self.sets.len() * core::mem::size_of::<[SourceEntry; WAYS]>()
    }

    /// Statistics.
    pub fn stats(&self) -> SourceTableStats {
        self.stats
    }

    /// Charge one packet of `bytes` from `src` (a SYN when `syn`). `Err` names the bucket that
    /// was empty; nothing is taken from the other buckets then.
    #[inline]
    pub fn admit(&mut self, src: &[u8; 16], now_ns: u64, bytes: u64, syn: bool) -> Result<(), Refusal> {
        let h = xxh3_64_with_seed(src, self.seed) | 1;
        let set = &mut self.sets[(h as usize) & self.mask];
        let l = &self.limits;
        let full = |b: &Option<TokenBucket>| b.as_ref().map(|b| refill(0, u64::MAX, b)).unwrap_or(0);
        let way = match set.iter().position(|e| e.tag == h) {
            Some(w) => w,
            None => {
                // A free way, else the one idle longest.
                let mut w = 0;
                for (i, e) in set.iter().enumerate() {
                    if e.tag == 0 {
                        w = i;
                        break;
                    }
                    if e.last_ns < set[w].last_ns {
                        w = i;
                    }
                }
                if set[w].tag != 0 {
                    self.stats.replaced += 1;
                }
                self.stats.inserts += 1;
                set[w] = SourceEntry {
                    tag: h,
                    last_ns: now_ns,
                    pps: full(&l.pps),
                    bytes: full(&l.bytes),
                    conns: full(&l.new_conns),
                };
                w
            }
        };
        let e = &mut set[way];
        if now_ns > e.last_ns {
            let dt = now_ns - e.last_ns;
            if let Some(b) = &l.pps {
                e.pps = refill(e.pps, dt, b);
            }
            if let Some(b) = &l.bytes {
                e.bytes = refill(e.bytes, dt, b);
            }
            if let Some(b) = &l.new_conns {
                e.conns = refill(e.conns, dt, b);
            }
            e.last_ns = now_ns;
        }
        // Check every bucket before taking from any, so a refused packet costs nothing.
        let (mut pps, mut by, mut cn) = (e.pps, e.bytes, e.conns);
        if l.pps.is_some() && !take(&mut pps, 1) {
            return Err(Refusal::Rate);
        }
        if l.bytes.is_some() && !take(&mut by, bytes) {
            return Err(Refusal::Rate);
        }
        if syn && l.new_conns.is_some() && !take(&mut cn, 1) {
            return Err(Refusal::NewConns);
        }
        (e.pps, e.bytes, e.conns) = (pps, by, cn);
        Ok(())
    }
}

/// Aggregate buckets of one rule (all matching traffic together).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aggregate {
    pps: Option<(TokenBucket, BucketState)>,
    bytes: Option<(TokenBucket, BucketState)>,
}

impl Aggregate {
    /// Full buckets for these limits.
    pub fn new(pps: Option<TokenBucket>, bytes: Option<TokenBucket>, now_ns: u64) -> Self {
        Aggregate {
            pps: pps.map(|b| (b, BucketState::full(&b, now_ns))),
            bytes: bytes.map(|b| (b, BucketState::full(&b, now_ns))),
        }
    }

    /// Charge one packet of `bytes`; both buckets must hold tokens.
    #[inline]
    pub fn admit(&mut self, now_ns: u64, bytes: u64) -> bool {
        let mut p = *self;
        if let Some((b, s)) = &mut p.pps {
            if !s.take(b, now_ns, 1) {
                return false;
            }
        }
        if let Some((b, s)) = &mut p.bytes {
            if !s.take(b, now_ns, bytes) {
                return false;
            }
        }
        *self = p;
        true
    }

    /// Keep the banked state but use `fresh`'s rates (a reloaded rule); a bucket `fresh` has
    /// and `self` had not starts as `fresh` has it (full).
    pub fn retune_from(&mut self, fresh: &Aggregate) {
        let re = |old: Option<(TokenBucket, BucketState)>, new: Option<(TokenBucket, BucketState)>| {
            new.map(|(b, fs)| match old {
                Some((_, s)) => (b, BucketState { level: s.level.min(refill(0, u64::MAX, &b)), last_ns: s.last_ns }),
                None => (b, fs),
            })
        };
        self.pps = re(self.pps, fresh.pps);
        self.bytes = re(self.bytes, fresh.bytes);
    }
}

/// Live connections per source, for `max-conns`, in fixed memory.
///
/// A direct-mapped array of `(tag, count)`. A source whose slot is held by another source with
/// live connections shares nothing: it is counted as having none (the check is skipped rather
/// than punishing it for a stranger's connections), and [`ConnCounts::collisions`] counts it.
#[derive(Clone, Debug)]
pub struct ConnCounts {
    slots: Vec<(u32, u32)>,
    mask: usize,
    seed: u64,
    collisions: u64,
}

/// A slot of [`ConnCounts`], remembered by a session ([`crate::engine::session::Session::conn_slot`])
/// so its end can be counted.
pub type ConnSlot = u16;

/// Counters in a [`ConnCounts`] (fixed: slots are 16-bit).
pub const CONN_SLOTS: usize = 1 << 16;

impl ConnCounts {
    /// [`CONN_SLOTS`] counters (512 KiB).
    pub fn new(seed: u64) -> Self {
        ConnCounts { slots: vec![(0, 0); CONN_SLOTS], mask: CONN_SLOTS - 1, seed, collisions: 0 }
    }

    fn slot(&self, src: &[u8; 16]) -> (usize, u32) {
        let h = xxh3_64_with_seed(src, self.seed);
        ((h as usize) & self.mask, ((h >> 32) as u32) | 1)
    }

    /// Live connections of `src` (0 when its slot belongs to another source).
    pub fn count(&self, src: &[u8; 16]) -> u32 {
        let (i, tag) = self.slot(src);
        let (t, c) = self.slots[i];
        if t == tag {
            c
        } else {
            0
        }
    }

    /// Count a new connection of `src`; returns its slot for [`ConnCounts::release`], or
    /// `None` when the slot is held by another source's live connections.
    pub fn acquire(&mut self, src: &[u8; 16]) -> Option<ConnSlot> {
        let (i, tag) = self.slot(src);
        let s = &mut self.slots[i];
        if s.0 == tag || s.1 == 0 {
            if s.0 != tag {
                *s = (tag, 0);
            }
            s.1 = s.1.saturating_add(1);
            Some(i as ConnSlot)
        } else {
            self.collisions += 1;
            None
        }
    }

    /// A connection counted in `slot` ended.
    pub fn release(&mut self, slot: ConnSlot) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.1 = s.1.saturating_sub(1);
        }
    }

    /// Sources not counted because their slot was taken.
    pub fn collisions(&self) -> u64 {
        self.collisions
    }

    /// Heap bytes used.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
        let mut k = [0; 16];
        k[..4].copy_from_slice(&[a, b, c, d]);
        k
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn bucket_refills_at_rate_and_caps_at_burst() {
        let b = TokenBucket { rate: 100, burst: 10 };
        let mut s = BucketState::full(&b, 0);
        for _ in 0..10 {
            assert!(s.take(&b, 0, 1));
        }
        assert!(!s.take(&b, 0, 1));
        // 10 ms at 100/s = 1 token.
        assert!(s.take(&b, 10 * MS, 1));
        assert!(!s.take(&b, 10 * MS, 1));
        // A long pause refills to the burst only.
        assert_eq!(
            {
                s.take(&b, 100_000 * MS, 0);
                s.units()
            },
            10
        );
        // The clock going backwards refills nothing.
        let mut t = BucketState::full(&b, 1_000 * MS);
        for _ in 0..10 {
            assert!(t.take(&b, 1_000 * MS, 1));
        }
        assert!(!t.take(&b, 0, 1));
    }

    #[test]
    fn fractional_refill_is_exact() {
        // 3 tokens per second, queried every 1 ms for 10 s: exactly 30 tokens.
        let b = TokenBucket { rate: 3, burst: 2 };
        let mut s = BucketState::default();
        let mut got = 0;
        for ms in 1..=10_000u64 {
            if s.take(&b, ms * MS, 1) {
                got += 1;
            }
        }
        assert_eq!(got, 30);
    }

    #[test]
    fn per_source_limits_each_source_separately() {
        let l = SourceLimits { pps: Some(TokenBucket { rate: 10, burst: 5 }), ..Default::default() };
        let mut t = SourceTable::new(l, 1024, 7);
        let a = v4(198, 18, 0, 1);
        let b = v4(198, 18, 0, 2);
        let ok = (0..20).filter(|_| t.admit(&a, 0, 100, false).is_ok()).count();
        assert_eq!(ok, 5);
        assert_eq!(t.admit(&a, 0, 100, false), Err(Refusal::Rate));
        assert!(t.admit(&b, 0, 100, false).is_ok());
        // 100 ms later a has one token again.
        assert!(t.admit(&a, 100 * MS, 100, false).is_ok());
        assert!(t.admit(&a, 100 * MS, 100, false).is_err());
    }

    #[test]
    fn byte_bucket_and_refused_packets_cost_nothing() {
        let l = SourceLimits {
            pps: Some(TokenBucket { rate: 1000, burst: 3 }),
            bytes: Some(TokenBucket { rate: 1000, burst: 1500 }),
            ..Default::default()
        };
        let mut t = SourceTable::new(l, 64, 1);
        let a = v4(198, 18, 0, 1);
        assert!(t.admit(&a, 0, 1000, false).is_ok());
        // 500 bytes left: a 1000-byte packet is refused and takes no packet token either.
        assert!(t.admit(&a, 0, 1000, false).is_err());
        assert!(t.admit(&a, 0, 500, false).is_ok());
        assert!(t.admit(&a, 0, 0, false).is_ok());
        assert!(t.admit(&a, 0, 0, false).is_err(), "packet bucket (3) exhausted");
    }

    #[test]
    fn new_conns_only_charge_syns() {
        let l = SourceLimits { new_conns: Some(TokenBucket { rate: 1, burst: 2 }), ..Default::default() };
        let mut t = SourceTable::new(l, 64, 1);
        let a = v4(198, 18, 0, 1);
        for _ in 0..100 {
            assert!(t.admit(&a, 0, 60, false).is_ok());
        }
        assert!(t.admit(&a, 0, 60, true).is_ok());
        assert!(t.admit(&a, 0, 60, true).is_ok());
        assert_eq!(t.admit(&a, 0, 60, true), Err(Refusal::NewConns));
        assert!(t.admit(&a, 0, 60, false).is_ok());
    }

    #[test]
    fn random_source_flood_keeps_memory_flat_and_legit_within_budget() {
        let l = SourceLimits { pps: Some(TokenBucket { rate: 100, burst: 100 }), ..Default::default() };
        let mut t = SourceTable::new(l, 4096, 99);
        let mem = t.memory_bytes();
        let legit = v4(198, 18, 0, 1);
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut legit_ok = 0;
        let mut legit_sent = 0;
        // 10 s: 1M flood packets from random 198.19/16 sources; legit sends 50 pps (half its budget).
        for i in 0..1_000_000u64 {
            let now = i * 10_000; // 100 kpps
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let src = v4(198, 19, rng as u8, (rng >> 8) as u8);
            let _ = t.admit(&src, now, 60, false);
            if i % 2_000 == 0 {
                legit_sent += 1;
                legit_ok += usize::from(t.admit(&legit, now, 60, false).is_ok());
            }
        }
        assert_eq!(t.memory_bytes(), mem, "memory must not grow");
        assert_eq!(legit_ok, legit_sent, "legit source within budget must never be limited");
        assert!(t.stats().replaced > 0, "the flood did cycle entries");
    }

    #[test]
    fn aggregate_and_retune() {
        let mut a = Aggregate::new(Some(TokenBucket { rate: 10, burst: 10 }), None, 0);
        assert_eq!((0..50).filter(|_| a.admit(0, 100)).count(), 10);
        a.retune_from(&Aggregate::new(
            Some(TokenBucket { rate: 10, burst: 20 }),
            Some(TokenBucket { rate: 1000, burst: 1000 }),
            0,
        ));
        // Retuning keeps the empty packet bucket; the new byte bucket starts full.
        assert!(!a.admit(0, 1));
        assert!(a.admit(100 * MS, 1000));
        assert!(!a.admit(200 * MS, 1000), "byte bucket empty");
    }

    #[test]
    fn conn_counts_acquire_release_and_collisions() {
        let mut c = ConnCounts::new(5);
        let a = v4(198, 18, 0, 1);
        let s1 = c.acquire(&a).unwrap();
        let s2 = c.acquire(&a).unwrap();
        assert_eq!(c.count(&a), 2);
        c.release(s1);
        c.release(s2);
        c.release(s2);
        assert_eq!(c.count(&a), 0);
        // Find a colliding source: it is not counted while a holds the slot.
        let _held = c.acquire(&a).unwrap();
        let (ia, _) = c.slot(&a);
        let other = (0..=u16::MAX)
            .map(|i| v4(198, 19, (i >> 8) as u8, i as u8))
            .find(|s| c.slot(s).0 == ia)
            .expect("a collision exists among 65536 sources");
        assert_eq!(c.acquire(&other), None);
        assert_eq!(c.count(&other), 0);
        assert_eq!(c.collisions(), 1);
    }
}
