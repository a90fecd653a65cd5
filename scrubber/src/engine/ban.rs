//! Expiring bans of source addresses, shared by every engine of a process (like an nftables
//! set with timeouts, or FastNetMon's ban time).
//!
//! A `limit` rule or an `http` line with `ban DURATION [after N]` records a *strike* against a
//! source each time it refuses one of its packets or requests; the N-th strike within DURATION
//! bans the source for DURATION. Every frame from a banned source is then dropped
//! (`banned`) before the rules see it. The operator lists, adds and lifts bans with
//! `scrubber ban` over the control socket.
//!
//! **Shared, not per worker.** A source's connections are spread over the workers by the
//! flow hash, so a ban one worker decides must hold on all of them. The table is a fixed array
//! of atomics (no locks, no allocation after start): readers check a source with a few relaxed
//! loads guarded by a per-entry sequence number (a seqlock: a torn read is retried, never
//! believed); writers — strikes, which are rare next to packets, and the operator — take an
//! entry by a compare-exchange on that number and skip it when another writer holds it. When
//! no ban is live, the per-frame cost is one load of a counter shared read-only by all cores.
//! A 4-way set per address hash; a full set gives up its entry closest to expiry.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

/// Ways per set.
const WAYS: usize = 4;

/// One entry: 48 bytes.
#[derive(Debug, Default)]
struct Entry {
    /// Even: stable; odd: a writer is changing the entry.
    seq: AtomicU32,
    /// Strikes so far (while not banned), or the strikes that made the ban.
    strikes: AtomicU32,
    /// Address (IPv4 in the first four bytes), as two big-endian halves.
    hi: AtomicU64,
    lo: AtomicU64,
    /// Bit 63: IPv6; bit 62: banned; bits 0–61: until when (ns since the epoch) the entry
    /// lives (the ban, or the strike window). 0 = free.
    until: AtomicU64,
    /// Index of what banned it (a rule or a service; see [`BanWhy`]), for listings.
    why: AtomicU32,
}

const V6: u64 = 1 << 63;
const BANNED: u64 = 1 << 62;
const TIME: u64 = (1 << 62) - 1;

/// What a ban or strike came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BanWhy {
    /// A `limit` rule (its index in the policy).
    Rule(u16),
    /// An `http` service's checks (its index).
    Http(u16),
    /// The operator (`scrubber ban add`).
    Operator,
}

impl BanWhy {
    fn to_u32(self) -> u32 {
        match self {
            BanWhy::Rule(i) => 0x1_0000 | u32::from(i),
            BanWhy::Http(i) => 0x2_0000 | u32::from(i),
            BanWhy::Operator => 0x3_0000,
        }
    }

    fn from_u32(v: u32) -> BanWhy {
        match v >> 16 {
            1 => BanWhy::Rule(v as u16),
            2 => BanWhy::Http(v as u16),
            _ => BanWhy::Operator,
        }
    }
}

/// One live ban, as listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanEntry {
    /// The banned source.
    pub addr: IpAddr,
    /// Until when (ns since the epoch).
    pub until_ns: u64,
    /// Strikes that made it (0 for the operator's).
    pub strikes: u32,
    /// What banned it.
    pub why: BanWhy,
}

crate::counters! {
    /// The ban table (one per process, shared by the workers).
    pub struct BanStats("bans") {
        /// Bans live now.
        gauge "bans" bans_live,
        /// Entries in the table (fixed memory).
        gauge "bans" ban_slots,
        /// Sources banned by rules or checks (strikes reached `after`).
        counter "bans" bans_added,
        /// Bans the operator added.
        counter "bans" bans_added_by_operator,
        /// Bans the operator lifted.
        counter "bans" bans_lifted,
        /// Violations recorded against sources (strikes).
        counter "bans" ban_strikes,
        /// Live entries (bans or strikes) replaced because their set was full.
        counter "bans" ban_entries_replaced,
        /// Strikes not recorded because another worker was writing the same entry.
        counter "bans" ban_writes_skipped,
    }
}

/// The shared ban table (see the module docs).
#[derive(Debug)]
pub struct BanTable {
    sets: Vec<[Entry; WAYS]>,
    mask: usize,
    seed: u64,
    /// Bans added minus bans seen expired or lifted: 0 means no frame needs a lookup. It may
    /// stay above the true number until expired entries are swept ([`BanTable::sweep`]).
    live: AtomicU64,
    added: AtomicU64,
    added_op: AtomicU64,
    lifted: AtomicU64,
    strikes: AtomicU64,
    replaced: AtomicU64,
    skipped: AtomicU64,
}

/// Address bytes (IPv4 in the first four) → (v6, hi, lo).
fn split(v6: bool, a: &[u8; 16]) -> (u64, u64) {
    let hi = u64::from_be_bytes([a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]]);
    let lo = u64::from_be_bytes([a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15]]);
    if v6 {
        (hi, lo)
    } else {
        (hi & 0xffff_ffff_0000_0000, 0)
    }
}

/// The address as 16 bytes (IPv4 in the first four) and whether it is IPv6.
pub fn addr_bytes(a: IpAddr) -> (bool, [u8; 16]) {
    match a {
        IpAddr::V4(v) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v.octets());
            (false, b)
        }
        IpAddr::V6(v) => (true, v.octets()),
    }
}

impl BanTable {
    /// A table of at least `slots` entries (a power of two, at least 64).
    pub fn new(slots: usize, seed: u64) -> BanTable {
        let sets = (slots.max(64) / WAYS).next_power_of_two();
        BanTable {
            sets: (0..sets).map(|_| Default::default()).collect(),
            mask: sets - 1,
            seed,
            live: AtomicU64::new(0),
            added: AtomicU64::new(0),
            added_op: AtomicU64::new(0),
            lifted: AtomicU64::new(0),
            strikes: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    #[inline]
    fn set_of(&self, v6: bool, hi: u64, lo: u64) -> &[Entry; WAYS] {
        let mut b = [0u8; 17];
        b[..8].copy_from_slice(&hi.to_le_bytes());
        b[8..16].copy_from_slice(&lo.to_le_bytes());
        b[16] = u8::from(v6);
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(&b, self.seed);
        &self.sets[(h as usize) & self.mask]
    }

    /// Whether any ban may be live (one shared load; no lookup is needed when `false`).
    #[inline]
    pub fn any(&self) -> bool {
        self.live.load(Relaxed) != 0
    }

    /// Whether `src` is banned at `now_ns`.
    #[inline]
    pub fn banned(&self, v6: bool, src: &[u8; 16], now_ns: u64) -> bool {
        let (hi, lo) = split(v6, src);
        let want = if v6 { V6 } else { 0 };
        for e in self.set_of(v6, hi, lo) {
            for _ in 0..2 {
                let s1 = e.seq.load(Acquire);
                if s1 & 1 != 0 {
                    continue;
                }
                let u = e.until.load(Acquire);
                let ok = u & V6 == want
                    && u & BANNED != 0
                    && u & TIME > now_ns
                    && e.hi.load(Acquire) == hi
                    && e.lo.load(Acquire) == lo;
                if e.seq.load(Acquire) == s1 {
                    if ok {
                        return true;
                    }
                    break;
                }
            }
        }
        false
    }

    /// Take entry `e` for writing: `Some(seq)` to pass to [`BanTable::release`].
    fn lock(e: &Entry) -> Option<u32> {
        let s = e.seq.load(Acquire);
        if s & 1 != 0 {
            return None;
        }
        e.seq.compare_exchange(s, s.wrapping_add(1), AcqRel, Relaxed).ok()
    }

    fn release(e: &Entry, s: u32) {
        e.seq.store(s.wrapping_add(2), Release);
    }

    /// The entry of an address in its set, or the one to replace: free, expired, else the one
    /// expiring first. Returns (index, whether it already holds the address).
    fn find(set: &[Entry; WAYS], v6: bool, hi: u64, lo: u64, now_ns: u64) -> (usize, bool) {
        let want = if v6 { V6 } else { 0 };
        let mut best = (0, u64::MAX);
        for (i, e) in set.iter().enumerate() {
            let u = e.until.load(Acquire);
            if u != 0 && u & V6 == want && e.hi.load(Acquire) == hi && e.lo.load(Acquire) == lo && u & TIME > now_ns {
                return (i, true);
            }
            let t = if u & TIME <= now_ns { 0 } else { u & TIME };
            if t < best.1 {
                best = (i, t);
            }
        }
        (best.0, false)
    }

    /// Record a violation by `src`: the `after`-th within `dur_ns` bans it for `dur_ns`.
    /// Returns whether this strike made a ban.
    pub fn strike(&self, v6: bool, src: &[u8; 16], now_ns: u64, dur_ns: u64, after: u32, why: BanWhy) -> bool {
        let (hi, lo) = split(v6, src);
        let set = self.set_of(v6, hi, lo);
        let (i, found) = Self::find(set, v6, hi, lo, now_ns);
        let e = &set[i];
        let Some(s) = Self::lock(e) else {
            self.skipped.fetch_add(1, Relaxed);
            return false;
        };
        self.strikes.fetch_add(1, Relaxed);
        // Re-read under the lock: another writer may have changed the entry meanwhile.
        let u = e.until.load(Acquire);
        let same = found
            && u & V6 == (if v6 { V6 } else { 0 })
            && e.hi.load(Acquire) == hi
            && e.lo.load(Acquire) == lo
            && u & TIME > now_ns;
        if same && u & BANNED != 0 {
            Self::release(e, s);
            return false;
        }
        if !same && u & TIME > now_ns {
            self.replaced.fetch_add(1, Relaxed);
            if u & BANNED != 0 {
                self.live.fetch_sub(1, Relaxed);
            }
        }
        let n = if same { e.strikes.load(Acquire) + 1 } else { 1 };
        let until = now_ns.saturating_add(dur_ns).min(TIME);
        let banned = n >= after;
        e.hi.store(hi, Release);
        e.lo.store(lo, Release);
        e.strikes.store(n, Release);
        e.why.store(why.to_u32(), Release);
        let old_until = if same { u & TIME } else { until };
        e.until.store((if v6 { V6 } else { 0 }) | if banned { BANNED | until } else { old_until }, Release);
        Self::release(e, s);
        if banned {
            self.live.fetch_add(1, Relaxed);
            self.added.fetch_add(1, Relaxed);
        }
        banned
    }

    /// The operator bans `addr` until `until_ns` (replacing any entry it had). `false` when
    /// the entry was busy (try again).
    pub fn add(&self, addr: IpAddr, now_ns: u64, until_ns: u64) -> bool {
        let (v6, b) = addr_bytes(addr);
        let (hi, lo) = split(v6, &b);
        let set = self.set_of(v6, hi, lo);
        let (i, found) = Self::find(set, v6, hi, lo, now_ns);
        let e = &set[i];
        let Some(s) = Self::lock(e) else { return false };
        let u = e.until.load(Acquire);
        let was_ban = u & BANNED != 0 && u & TIME > now_ns;
        if !found && u & TIME > now_ns {
            self.replaced.fetch_add(1, Relaxed);
        }
        e.hi.store(hi, Release);
        e.lo.store(lo, Release);
        e.strikes.store(0, Release);
        e.why.store(BanWhy::Operator.to_u32(), Release);
        e.until.store((if v6 { V6 } else { 0 }) | BANNED | until_ns.min(TIME), Release);
        Self::release(e, s);
        if !was_ban {
            self.live.fetch_add(1, Relaxed);
        }
        self.added_op.fetch_add(1, Relaxed);
        true
    }

    /// Lift the ban (and strikes) of `addr`. Returns whether it was banned.
    pub fn lift(&self, addr: IpAddr, now_ns: u64) -> bool {
        let (v6, b) = addr_bytes(addr);
        let (hi, lo) = split(v6, &b);
        let set = self.set_of(v6, hi, lo);
        let (i, found) = Self::find(set, v6, hi, lo, now_ns);
        if !found {
            return false;
        }
        let e = &set[i];
        let mut s = Self::lock(e);
        for _ in 0..1000 {
            if s.is_some() {
                break;
            }
            std::thread::yield_now();
            s = Self::lock(e);
        }
        let Some(s) = s else { return false };
        let u = e.until.load(Acquire);
        let was_ban = u & BANNED != 0 && u & TIME > now_ns && e.hi.load(Acquire) == hi && e.lo.load(Acquire) == lo;
        if was_ban || (e.hi.load(Acquire) == hi && e.lo.load(Acquire) == lo) {
            e.until.store(0, Release);
        }
        Self::release(e, s);
        if was_ban {
            self.live.fetch_sub(1, Relaxed);
            self.lifted.fetch_add(1, Relaxed);
        }
        was_ban
    }

    /// Free expired bans, so that [`BanTable::any`] drops back to `false` once every ban has
    /// expired (the control plane calls this about once a second). Returns the bans freed.
    pub fn sweep(&self, now_ns: u64) -> usize {
        let mut n = 0;
        for set in &self.sets {
            for e in set {
                let u = e.until.load(Acquire);
                if u == 0 || u & TIME > now_ns {
                    continue;
                }
                let Some(s) = Self::lock(e) else { continue };
                let u = e.until.load(Acquire);
                if u != 0 && u & TIME <= now_ns {
                    e.until.store(0, Release);
                    if u & BANNED != 0 {
                        n += 1;
                    }
                }
                Self::release(e, s);
            }
        }
        if n > 0 {
            let _ = self.live.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n as u64)));
        }
        n
    }

    /// Every live ban at `now_ns`, soonest expiry first.
    pub fn list(&self, now_ns: u64) -> Vec<BanEntry> {
        let mut v = Vec::new();
        for set in &self.sets {
            for e in set {
                let s1 = e.seq.load(Acquire);
                let u = e.until.load(Acquire);
                if u & BANNED == 0 || u & TIME <= now_ns {
                    continue;
                }
                let (hi, lo) = (e.hi.load(Acquire), e.lo.load(Acquire));
                let (strikes, why) = (e.strikes.load(Acquire), e.why.load(Acquire));
                if s1 & 1 != 0 || e.seq.load(Acquire) != s1 {
                    continue;
                }
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&hi.to_be_bytes());
                b[8..].copy_from_slice(&lo.to_be_bytes());
                let addr = if u & V6 != 0 {
                    IpAddr::V6(b.into())
                } else {
                    IpAddr::V4(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]))
                };
                v.push(BanEntry { addr, until_ns: u & TIME, strikes, why: BanWhy::from_u32(why) });
            }
        }
        v.sort_by_key(|e| (e.until_ns, e.addr));
        v
    }

    /// Counters; `bans_live` counted exactly at `now_ns`.
    pub fn stats(&self, now_ns: u64) -> BanStats {
        BanStats {
            bans_live: self.list(now_ns).len() as u64,
            ban_slots: (self.sets.len() * WAYS) as u64,
            bans_added: self.added.load(Relaxed),
            bans_added_by_operator: self.added_op.load(Relaxed),
            bans_lifted: self.lifted.load(Relaxed),
            ban_strikes: self.strikes.load(Relaxed),
            ban_entries_replaced: self.replaced.load(Relaxed),
            ban_writes_skipped: self.skipped.load(Relaxed),
        }
    }

    /// Heap bytes.
    pub fn memory_bytes(&self) -> usize {
        self.sets.len() * core::mem::size_of::<[Entry; WAYS]>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn a4(s: &str) -> (bool, [u8; 16]) {
        addr_bytes(s.parse().unwrap())
    }

    #[test]
    fn strikes_ban_after_n_and_bans_expire() {
        let t = BanTable::new(1024, 7);
        let (v6, a) = a4("198.19.1.2");
        assert!(!t.any());
        assert!(!t.strike(v6, &a, 10 * S, 60 * S, 3, BanWhy::Rule(0)));
        assert!(!t.strike(v6, &a, 11 * S, 60 * S, 3, BanWhy::Rule(0)));
        assert!(!t.banned(v6, &a, 11 * S));
        assert!(t.strike(v6, &a, 12 * S, 60 * S, 3, BanWhy::Rule(0)));
        assert!(t.any() && t.banned(v6, &a, 12 * S) && t.banned(v6, &a, 71 * S));
        let (_, b) = a4("198.19.1.3");
        assert!(!t.banned(false, &b, 12 * S), "only that source");
        let l = t.list(13 * S);
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].addr, l[0].strikes, l[0].why), ("198.19.1.2".parse().unwrap(), 3, BanWhy::Rule(0)));
        assert!(!t.banned(v6, &a, 72 * S), "expired");
        assert_eq!(t.sweep(72 * S), 1);
        assert!(!t.any());
    }

    #[test]
    fn strikes_outside_the_window_start_over() {
        let t = BanTable::new(64, 1);
        let (v6, a) = a4("2001:2::5");
        assert!(!t.strike(v6, &a, 0, 10 * S, 2, BanWhy::Http(1)));
        assert!(!t.strike(v6, &a, 11 * S, 10 * S, 2, BanWhy::Http(1)), "the first strike expired");
        assert!(t.strike(v6, &a, 12 * S, 10 * S, 2, BanWhy::Http(1)));
        assert!(t.banned(v6, &a, 12 * S));
        let (_, v4same) = a4("32.1.0.2");
        assert!(!t.banned(false, &v4same, 12 * S), "an IPv4 address with the same leading bytes is not the IPv6 one");
    }

    #[test]
    fn operator_add_and_lift() {
        let t = BanTable::new(64, 3);
        let ip: IpAddr = "198.19.9.9".parse().unwrap();
        assert!(t.add(ip, S, 100 * S));
        let (v6, a) = addr_bytes(ip);
        assert!(t.banned(v6, &a, 2 * S));
        assert_eq!(t.list(2 * S)[0].why, BanWhy::Operator);
        assert!(t.lift(ip, 3 * S));
        assert!(!t.banned(v6, &a, 3 * S));
        assert!(!t.any());
        assert!(!t.lift(ip, 3 * S));
        let s = t.stats(3 * S);
        assert_eq!((s.bans_added_by_operator, s.bans_lifted, s.bans_live), (1, 1, 0));
    }

    #[test]
    fn fixed_memory_under_a_million_sources() {
        let t = BanTable::new(4096, 9);
        for i in 0..1_000_000u32 {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&(0xC613_0000u32.wrapping_add(i)).to_be_bytes());
            t.strike(false, &a, S, 600 * S, 1, BanWhy::Rule(1));
        }
        let s = t.stats(S);
        assert_eq!(s.ban_slots, 4096);
        assert!(s.bans_live <= 4096 && s.bans_live > 3000, "{s:?}");
        assert!(s.ban_entries_replaced > 900_000);
    }

    #[test]
    fn workers_striking_at_once_never_tear_an_entry() {
        let t = std::sync::Arc::new(BanTable::new(64, 5));
        let hs: Vec<_> = (0..4)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in 0..50_000u32 {
                        let mut a = [0u8; 16];
                        a[..4].copy_from_slice(&(0xC613_0000u32 + (i % 300) + w * 1000).to_be_bytes());
                        t.strike(false, &a, S, 600 * S, 2, BanWhy::Rule(0));
                        // Every listed ban is of an address that was struck.
                        if i % 5000 == 0 {
                            for e in t.list(S) {
                                let IpAddr::V4(v) = e.addr else { panic!("v6 {e:?}") };
                                assert_eq!(u32::from(v) >> 16, 0xC613, "{e:?}");
                            }
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    }
}
