//! Top sources per target in fixed memory, for attack events and `scrubber top`.
//!
//! # Space-Saving behind a count-min filter
//!
//! Each target keeps [`TOP_K`] (source, count) slots for the current second, and a count-min
//! sketch ([`CMS_ROWS`] × [`CMS_WIDTH`] counters) of every source's frames. A source already in
//! a slot is counted up; a new one replaces the slot with the smallest count only when its
//! count-min estimate is larger than that count (Space-Saving, Metwally et al. 2005, filtered
//! as in Homem & Carvalho 2010). A flood of random spoofed sources — each seen once or twice —
//! never has an estimate above the counts of real heavy hitters, so it cannot evict them; it
//! only churns the slots below them. Memory is fixed. Frames are sampled at random, 1 in
//! [`SAMPLE_EVERY`], which keeps the drop path's cost to a random-number step for most frames;
//! at each second boundary of the engine's clock the current summary becomes the published one.

use std::net::IpAddr;

/// Slots per target.
pub const TOP_K: usize = 16;
/// Rows of the count-min filter.
pub const CMS_ROWS: usize = 2;
/// Counters per row of the count-min filter.
pub const CMS_WIDTH: usize = 1024;
/// One frame in this many (on average, drawn at random) updates the sketch.
pub const SAMPLE_EVERY: u32 = 4;

/// A Space-Saving summary of sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceSaving {
    addr: [[u8; 16]; TOP_K],
    v6: [bool; TOP_K],
    count: [u32; TOP_K],
    used: u8,
}

impl Default for SpaceSaving {
    fn default() -> Self {
        SpaceSaving { addr: [[0; 16]; TOP_K], v6: [false; TOP_K], count: [0; TOP_K], used: 0 }
    }
}

impl SpaceSaving {
    /// Count `addr` once; `estimate` is its count so far by another measure (the count-min
    /// filter; `u32::MAX` for plain Space-Saving): a new source takes the smallest slot only
    /// when its estimate is above that slot's count.
    #[inline]
    pub fn add(&mut self, v6: bool, addr: &[u8; 16], estimate: u32) {
        let n = usize::from(self.used);
        for i in 0..n {
            if self.addr[i] == *addr && self.v6[i] == v6 {
                self.count[i] = self.count[i].saturating_add(1);
                return;
            }
        }
        if n < TOP_K {
            self.addr[n] = *addr;
            self.v6[n] = v6;
            self.count[n] = if estimate == u32::MAX { 1 } else { estimate.max(1) };
            self.used += 1;
            return;
        }
        let mut m = 0;
        for i in 1..TOP_K {
            if self.count[i] < self.count[m] {
                m = i;
            }
        }
        if estimate == u32::MAX {
            self.addr[m] = *addr;
            self.v6[m] = v6;
            self.count[m] = self.count[m].saturating_add(1);
        } else if estimate > self.count[m] {
            self.addr[m] = *addr;
            self.v6[m] = v6;
            self.count[m] = estimate;
        }
    }

    /// The sources, largest first, with their (estimated, upper-bound) counts.
    pub fn top(&self) -> Vec<(IpAddr, u64)> {
        let mut v: Vec<(IpAddr, u64)> = (0..usize::from(self.used))
            .map(|i| {
                let a = self.addr[i];
                let ip = if self.v6[i] { IpAddr::from(a) } else { IpAddr::from([a[0], a[1], a[2], a[3]]) };
                (ip, u64::from(self.count[i]))
            })
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Slots in use.
    pub fn len(&self) -> usize {
        usize::from(self.used)
    }

    /// Whether no source was counted.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }
}

/// One target's top sources: the second being counted and the last complete one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopSources {
    cur: SpaceSaving,
    /// The count-min filter of the current second (empty in a deserialized copy).
    cms: Vec<u32>,
    /// The last complete second.
    pub last: SpaceSaving,
    /// Second (of the engine's clock) `cur` counts.
    epoch: u64,
    /// The sampling generator's state.
    skip: u32,
}

impl TopSources {
    /// A frame from `src` at `now_ns` (sampled 1 in [`SAMPLE_EVERY`]).
    #[inline]
    pub fn frame(&mut self, now_ns: u64, v6: bool, src: &[u8; 16]) {
        // Sampled at random (an LCG), not every n-th frame: periodic traffic must not alias.
        // Frames not sampled cost this step and nothing else.
        self.skip = self.skip.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        if self.skip >> 30 != 0 {
            return;
        }
        self.rotate(now_ns);
        let est = if self.cms.len() == CMS_ROWS * CMS_WIDTH {
            let h = xxhash_rust::xxh3::xxh3_64(&src[..if v6 { 16 } else { 4 }]);
            let mut e = u32::MAX;
            for r in 0..CMS_ROWS {
                let i = r * CMS_WIDTH + ((h >> (r * 20)) as usize & (CMS_WIDTH - 1));
                self.cms[i] = self.cms[i].saturating_add(1);
                e = e.min(self.cms[i]);
            }
            e
        } else {
            u32::MAX
        };
        self.cur.add(v6, src, est);
    }

    /// Start the second of `now_ns` if it is a new one: the current summary becomes the last
    /// complete one (or an empty one, if seconds passed without a sample).
    #[inline]
    fn rotate(&mut self, now_ns: u64) {
        let sec = now_ns / 1_000_000_000;
        if sec != self.epoch {
            self.last = if sec == self.epoch + 1 { self.cur } else { SpaceSaving::default() };
            self.cur = SpaceSaving::default();
            self.cms.fill(0);
            self.epoch = sec;
        }
    }

    /// Published sources with `rates` (frames per second), as [`TopSources::per_second`] gave
    /// them (for readers of a serialized snapshot).
    pub fn from_rates(rates: &[(IpAddr, u64)]) -> TopSources {
        let mut t = TopSources { cms: Vec::new(), ..TopSources::default() };
        for (i, &(a, pps)) in rates.iter().take(TOP_K).enumerate() {
            let (v6, b) = match a {
                IpAddr::V4(x) => {
                    let mut b = [0u8; 16];
                    b[..4].copy_from_slice(&x.octets());
                    (false, b)
                }
                IpAddr::V6(x) => (true, x.octets()),
            };
            t.last.addr[i] = b;
            t.last.v6[i] = v6;
            t.last.count[i] = u32::try_from(pps / u64::from(SAMPLE_EVERY)).unwrap_or(u32::MAX);
            t.last.used = (i + 1) as u8;
        }
        t
    }

    /// The last complete second's sources with estimated frames per second, largest first.
    /// When the last second had no sample (traffic that began within the current second), the
    /// current second so far (an underestimate of its rates, but the right sources).
    pub fn per_second(&self) -> Vec<(IpAddr, u64)> {
        let s = if self.last.is_empty() { &self.cur } else { &self.last };
        s.top().into_iter().map(|(a, n)| (a, n * u64::from(SAMPLE_EVERY))).collect()
    }
}

impl Default for TopSources {
    fn default() -> Self {
        TopSources {
            cur: SpaceSaving::default(),
            cms: vec![0; CMS_ROWS * CMS_WIDTH],
            last: SpaceSaving::default(),
            epoch: 0,
            skip: 0,
        }
    }
}

/// Merge top-source lists (summing the rates of a source) and keep the `n` largest.
pub fn merge_top(lists: &[Vec<(IpAddr, u64)>], n: usize) -> Vec<(IpAddr, u64)> {
    let mut m: std::collections::BTreeMap<IpAddr, u64> = std::collections::BTreeMap::new();
    for l in lists {
        for &(a, c) in l {
            *m.entry(a).or_default() += c;
        }
    }
    let mut v: Vec<(IpAddr, u64)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_767_225_600 * 1_000_000_000;

    #[test]
    fn heavy_hitters_survive_a_random_flood_in_fixed_memory() {
        let mut t = TopSources::default();
        let mut s = SpaceSaving::default(); // plain Space-Saving, for comparison
        let mut x = 0x1234_5678u32;
        for i in 0..1_000_000u32 {
            // Three heavy sources, 5 % each; the rest random (a million sources).
            let src: [u8; 4] = match i % 20 {
                0 => [198, 19, 7, 1],
                1 => [198, 19, 7, 2],
                2 => [198, 19, 7, 3],
                _ => {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    [198, 19, (x >> 8) as u8, x as u8]
                }
            };
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&src);
            s.add(false, &a, u32::MAX);
            t.frame(T + u64::from(i), false, &a);
        }
        // Plain Space-Saving cannot promise sources under 1/TOP_K of the traffic (here 5 %).
        let plain: Vec<IpAddr> = s.top().iter().take(3).map(|x| x.0).collect();
        eprintln!("plain Space-Saving's top 3: {plain:?}");
        t.rotate(T + 1_000_000_000); // close the second
        let top = t.last.top();
        assert_eq!(t.last.len(), TOP_K, "fixed memory");
        let heavy: Vec<IpAddr> = top.iter().take(3).map(|t| t.0).collect();
        for h in ["198.19.7.1", "198.19.7.2", "198.19.7.3"] {
            assert!(heavy.contains(&h.parse().unwrap()), "{h} not among the top 3: {top:?}");
        }
        // Sampled 1 in SAMPLE_EVERY: about 50,000 / SAMPLE_EVERY each.
        let want = 50_000 / u64::from(SAMPLE_EVERY);
        assert!(top[0].1 >= want && top[0].1 <= want + want / 5, "{top:?}");
    }
}
