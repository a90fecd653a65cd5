//! Longest-prefix match tables for IPv4 ([`Lpm4`]) and IPv6 ([`Lpm6`]).
//!
//! Both map an address to the value of the **longest** prefix that covers it, or 0 when no
//! prefix does. Values are `u32` below 2³¹ (the top bit is used internally as a tag). When the
//! same prefix is given twice, the later entry wins. Lookups never allocate and their cost does
//! not grow with the number of prefixes:
//!
//! * **IPv4: multibit trie, strides 16-8-8.** A root array of 65 536 `u32` entries (256 KiB)
//!   indexed by the top 16 bits, and a pool of 256-entry nodes (1 KiB each) for the next 8 and
//!   last 8 bits. An entry is either a value (top bit clear) or the index of a child node (top
//!   bit set). A lookup is at most 3 dependent loads. Prefixes are expanded into the entries
//!   they cover (controlled prefix expansion), shortest first, so longer prefixes overwrite
//!   shorter ones. Memory: 256 KiB + 1 KiB per /16 holding a prefix longer than /16 + 1 KiB per
//!   /24 holding a prefix longer than /24 (at most 64 MiB of level-2 nodes for prefixes up to
//!   /24; each /25–/32 in a new /24 costs another 1 KiB).
//! * **IPv6: a direct /16 table plus one open-addressing hash table per prefix length,
//!   searched by binary search on lengths.** Prefixes up to /16 are expanded into a root array
//!   of 65 536 values. Longer prefixes go into one hash table per length (key: the masked
//!   address, xxh3 hash, linear probing, load factor at most 3/4, 24-byte slots). Per /16 a
//!   128-bit mask records which lengths have a prefix under that /16. A lookup binary-searches
//!   those lengths (Waldvogel et al., "Scalable high speed IP routing lookups", 1997): probe the
//!   median length; on a hit go longer, on a miss go shorter. *Markers* make this exact: for
//!   each prefix, every shorter length on its search path holds an entry for the prefix's first
//!   bits, carrying the value of the longest real prefix covering it. A lookup costs at most
//!   ⌊log₂ k⌋ + 1 hash probes, `k` being the number of distinct lengths under the address's
//!   /16 (at most 112, so at most 7 probes), never more with more prefixes. Memory: 1.25 MiB
//!   of root arrays + 24–64 bytes per slot, one slot per prefix longer than /16 or marker (at
//!   most ⌊log₂ k⌋ markers per prefix, shared between prefixes with the same first bits). 1 M
//!   /48s of one length need no markers: 48 MiB.

use xxhash_rust::xxh3::xxh3_64;

/// Entry tag: the rest of the entry is a child-node index.
const CHILD: u32 = 1 << 31;
/// Largest value a table can hold.
pub const MAX_VALUE: u32 = CHILD - 1;
const ROOT: usize = 1 << 16;

/// Why a table could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LpmError {
    /// A value does not fit (values are below 2³¹).
    #[error("LPM value {0} too large: values must be below 2^31")]
    ValueTooLarge(u32),
    /// A prefix length beyond the address size.
    #[error("prefix length /{len} is longer than the address ({max} bits)")]
    BadLength {
        /// The length given.
        len: u8,
        /// 32 or 128.
        max: u8,
    },
    /// More trie nodes than the index can address.
    #[error("IPv4 prefix table too large ({0} nodes): split the prefix lists or drop host routes")]
    TooManyNodes(usize),
}

fn check_value(v: u32) -> Result<(), LpmError> {
    if v > MAX_VALUE {
        Err(LpmError::ValueTooLarge(v))
    } else {
        Ok(())
    }
}

/// Clear the host bits of `a` below `len` (0–32).
#[inline]
fn mask4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(len.min(32))))
    }
}

/// Clear the host bits of `a` below `len` (0–128).
#[inline]
fn mask6(a: u128, len: u32) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - len.min(128)))
    }
}

/// IPv4 longest-prefix match: a 16-8-8 multibit trie. See the module docs.
#[derive(Clone)]
pub struct Lpm4 {
    root: Box<[u32]>,
    nodes: Vec<[u32; 256]>,
    prefixes: usize,
}

impl std::fmt::Debug for Lpm4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lpm4").field("prefixes", &self.prefixes).field("nodes", &self.nodes.len()).finish()
    }
}

impl Default for Lpm4 {
    fn default() -> Self {
        Self { root: vec![0; ROOT].into_boxed_slice(), nodes: Vec::new(), prefixes: 0 }
    }
}

impl Lpm4 {
    /// Build from `(address, length, value)` triples; host bits of the address are ignored.
    pub fn build(entries: &[(u32, u8, u32)]) -> Result<Self, LpmError> {
        // Shortest first, stable (a later duplicate overwrites an earlier one): a counting sort
        // by length.
        let mut start = [0usize; 34];
        for &(_, len, v) in entries {
            if len > 32 {
                return Err(LpmError::BadLength { len, max: 32 });
            }
            check_value(v)?;
            start[len as usize + 1] += 1;
        }
        for l in 1..34 {
            start[l] += start[l - 1];
        }
        let mut order = vec![0u32; entries.len()];
        for (i, &(_, len, _)) in entries.iter().enumerate() {
            order[start[len as usize]] = i as u32;
            start[len as usize] += 1;
        }
        let mut t = Self::default();
        for i in order {
            let (a, len, v) = entries[i as usize];
            t.insert(mask4(a, len), len, v)?;
        }
        t.prefixes = entries.len();
        Ok(t)
    }

    fn new_node(&mut self, fill: u32) -> Result<u32, LpmError> {
        let idx = self.nodes.len();
        if idx as u64 >= u64::from(CHILD) {
            return Err(LpmError::TooManyNodes(idx));
        }
        self.nodes.push([fill; 256]);
        Ok(CHILD | idx as u32)
    }

    /// Write leaf value `v` over an entry; a child node is overwritten in all of its entries
    /// (they can only hold shorter prefixes when prefixes are inserted shortest first).
    fn fill(&mut self, entry: u32, v: u32) -> u32 {
        if entry & CHILD != 0 {
            let n = (entry & !CHILD) as usize;
            for k in 0..256 {
                let e = self.nodes[n][k];
                let new = self.fill(e, v);
                self.nodes[n][k] = new;
            }
            entry
        } else {
            v
        }
    }

    fn child_of_root(&mut self, hi: usize) -> Result<usize, LpmError> {
        let e = self.root[hi];
        if e & CHILD != 0 {
            return Ok((e & !CHILD) as usize);
        }
        let c = self.new_node(e)?;
        self.root[hi] = c;
        Ok((c & !CHILD) as usize)
    }

    fn child_of_node(&mut self, n: usize, k: usize) -> Result<usize, LpmError> {
        let e = self.nodes[n][k];
        if e & CHILD != 0 {
            return Ok((e & !CHILD) as usize);
        }
        let c = self.new_node(e)?;
        self.nodes[n][k] = c;
        Ok((c & !CHILD) as usize)
    }

    fn insert(&mut self, a: u32, len: u8, v: u32) -> Result<(), LpmError> {
        let hi = (a >> 16) as usize;
        if len <= 16 {
            let n = 1usize << (16 - len);
            for i in hi..hi + n {
                let e = self.root[i];
                self.root[i] = self.fill(e, v);
            }
            return Ok(());
        }
        let n1 = self.child_of_root(hi)?;
        let mid = ((a >> 8) & 0xff) as usize;
        if len <= 24 {
            let n = 1usize << (24 - len);
            for k in mid..mid + n {
                let e = self.nodes[n1][k];
                let new = self.fill(e, v);
                self.nodes[n1][k] = new;
            }
            return Ok(());
        }
        let n2 = self.child_of_node(n1, mid)?;
        let lo = (a & 0xff) as usize;
        let n = 1usize << (32 - len);
        for k in lo..lo + n {
            let e = self.nodes[n2][k];
            let new = self.fill(e, v);
            self.nodes[n2][k] = new;
        }
        Ok(())
    }

    /// The value of the longest prefix covering `addr` (host order), or 0.
    #[inline]
    pub fn lookup(&self, addr: u32) -> u32 {
        let e = self.root.get((addr >> 16) as usize).copied().unwrap_or(0);
        if e & CHILD == 0 {
            return e;
        }
        let Some(n) = self.nodes.get((e & !CHILD) as usize) else { return 0 };
        let e = n[((addr >> 8) & 0xff) as usize];
        if e & CHILD == 0 {
            return e;
        }
        match self.nodes.get((e & !CHILD) as usize) {
            Some(n) => n[(addr & 0xff) as usize],
            None => 0,
        }
    }

    /// Ask for the root entry a lookup of `addr` reads first (a prefetch; see
    /// `scrubber_intrin::prefetch`), e.g. a batch ahead of the lookups.
    #[inline]
    pub fn prefetch(&self, addr: u32) {
        scrubber_intrin::prefetch_at(&self.root, (addr >> 16) as usize);
    }

    /// Number of prefixes given to [`build`](Self::build).
    pub fn prefixes(&self) -> usize {
        self.prefixes
    }

    /// Number of 256-entry nodes below the root.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Heap bytes of the tables.
    pub fn memory_bytes(&self) -> usize {
        self.root.len() * 4 + self.nodes.capacity() * std::mem::size_of::<[u32; 256]>()
    }
}

/// One slot of a per-length IPv6 hash table. `val` has [`CHILD`] set when occupied.
#[derive(Clone, Copy, Default)]
struct Slot {
    hi: u64,
    lo: u64,
    val: u32,
}

/// Open-addressing table of the prefixes of one length.
#[derive(Clone, Default)]
struct Table6 {
    slots: Vec<Slot>,
    mask: usize,
}

#[inline]
fn hash6(key: u128) -> u64 {
    xxh3_64(&key.to_be_bytes())
}

impl Table6 {
    fn with_entries(n: usize) -> Self {
        // Load factor at most 3/4.
        let cap = (n + n / 3 + 1).next_power_of_two().max(8);
        Self { slots: vec![Slot::default(); cap], mask: cap - 1 }
    }

    /// Insert or overwrite.
    fn insert(&mut self, key: u128, v: u32) {
        let (hi, lo) = ((key >> 64) as u64, key as u64);
        let mut i = hash6(key) as usize & self.mask;
        loop {
            let s = &mut self.slots[i];
            if s.val & CHILD == 0 || (s.hi == hi && s.lo == lo) {
                *s = Slot { hi, lo, val: v | CHILD };
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    fn get(&self, key: u128) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let (hi, lo) = ((key >> 64) as u64, key as u64);
        let mut i = hash6(key) as usize & self.mask;
        // The table always has an empty slot (load factor below 1), so this ends; the bound
        // only guards against a broken invariant.
        for _ in 0..self.slots.len() {
            let s = self.slots.get(i)?;
            if s.val & CHILD == 0 {
                return None;
            }
            if s.hi == hi && s.lo == lo {
                return Some(s.val & !CHILD);
            }
            i = (i + 1) & self.mask;
        }
        None
    }
}

/// Bits above `bit` (exclusive).
#[inline]
fn above(bit: u32) -> u128 {
    if bit >= 127 {
        0
    } else {
        !((2u128 << bit) - 1)
    }
}

/// Bits below `bit` (exclusive).
#[inline]
fn below(bit: u32) -> u128 {
    (1u128 << bit) - 1
}

/// The `k`-th set bit of `x` (0-based, from the least significant).
#[inline]
fn select64(mut x: u64, k: u32) -> u32 {
    for _ in 0..k {
        x &= x.wrapping_sub(1);
    }
    x.trailing_zeros()
}

/// The median set bit of a non-empty length mask: the length a binary search probes first.
#[inline]
fn pick(m: u128) -> u32 {
    let k = m.count_ones() / 2;
    let lo = m as u64;
    let c = lo.count_ones();
    if k < c {
        select64(lo, k)
    } else {
        64 + select64((m >> 64) as u64, k - c)
    }
}

/// Probes of a binary search over `k` lengths: ⌊log₂ k⌋ + 1.
fn probes_for(k: u32) -> usize {
    if k == 0 {
        0
    } else {
        (32 - k.leading_zeros()) as usize
    }
}

/// IPv6 longest-prefix match: a /16 root table plus one hash table per prefix length longer
/// than /16, searched by binary search on the lengths present under the address's /16. See the
/// module docs.
#[derive(Clone)]
pub struct Lpm6 {
    /// Values of prefixes up to /16, expanded.
    root: Box<[u32]>,
    /// Per /16: bit `len - 1` set when a prefix of length `len` (17–128) lies under it.
    lens: Box<[u128]>,
    /// Index = prefix length (0–128); only lengths 17–128 are used. Entries are prefixes (their
    /// value) and markers (the value of the longest prefix covering the marker).
    tables: Vec<Table6>,
    prefixes: usize,
    markers: usize,
}

impl std::fmt::Debug for Lpm6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lpm6")
            .field("prefixes", &self.prefixes)
            .field("markers", &self.markers)
            .field("lengths", &self.lengths())
            .field("slots", &self.slots())
            .finish()
    }
}

impl Default for Lpm6 {
    fn default() -> Self {
        Self {
            root: vec![0; ROOT].into_boxed_slice(),
            lens: vec![0; ROOT].into_boxed_slice(),
            tables: vec![Table6::default(); 129],
            prefixes: 0,
            markers: 0,
        }
    }
}

impl Lpm6 {
    /// Build from `(address, length, value)` triples; host bits of the address are ignored.
    pub fn build(entries: &[(u128, u8, u32)]) -> Result<Self, LpmError> {
        for &(_, len, v) in entries {
            if len > 128 {
                return Err(LpmError::BadLength { len, max: 128 });
            }
            check_value(v)?;
        }
        let mut t = Self { prefixes: entries.len(), ..Self::default() };

        // Prefixes up to /16: expanded into the root, shortest first (stable: later wins).
        let mut short: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].1 <= 16).collect();
        short.sort_by_key(|&i| entries[i].1);
        for i in short {
            let (a, len, v) = entries[i];
            let hi = (mask6(a, u32::from(len)) >> 112) as usize;
            for e in &mut t.root[hi..hi + (1usize << (16 - len))] {
                *e = v;
            }
        }

        // Longer prefixes, masked, deduplicated (the later of two equal prefixes wins).
        let mut long: Vec<(u8, u128, u32, usize)> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.1 > 16)
            .map(|(i, &(a, len, v))| (len, mask6(a, u32::from(len)), v, i))
            .collect();
        long.sort_unstable_by_key(|x| (x.0, x.1, std::cmp::Reverse(x.3)));
        long.dedup_by(|later, first| later.0 == first.0 && later.1 == first.1);
        for &(len, key, _, _) in &long {
            t.lens[(key >> 112) as usize] |= 1u128 << (len - 1);
        }

        // Markers: on the binary-search path of each prefix, every shorter length probed gets
        // an entry for the prefix's first bits, so that the search turns towards longer lengths
        // there. A marker holds the value of the longest real prefix covering it.
        let mut markers: Vec<(u8, u128)> = Vec::new();
        for &(len, key, _, _) in &long {
            let mut m = t.lens[(key >> 112) as usize];
            while m != 0 {
                let bit = pick(m);
                let l = bit + 1;
                match l.cmp(&u32::from(len)) {
                    std::cmp::Ordering::Equal => break,
                    std::cmp::Ordering::Less => {
                        markers.push((l as u8, mask6(key, l)));
                        m &= above(bit);
                    }
                    std::cmp::Ordering::Greater => m &= below(bit),
                }
            }
        }
        markers.sort_unstable();
        markers.dedup();

        // Real prefixes first, in tables sized for prefixes and markers.
        let mut per_len = [0usize; 129];
        for &(len, ..) in &long {
            per_len[len as usize] += 1;
        }
        for &(len, _) in &markers {
            per_len[len as usize] += 1;
        }
        for (len, &n) in per_len.iter().enumerate().skip(17) {
            if n > 0 {
                t.tables[len] = Table6::with_entries(n);
            }
        }
        for &(len, key, v, _) in &long {
            t.tables[len as usize].insert(key, v);
        }
        // Marker values, from the real prefixes only (computed before any marker is stored).
        let values: Vec<Option<u32>> = markers
            .iter()
            .map(|&(len, key)| {
                if t.tables[len as usize].get(key).is_some() {
                    None // a real prefix already stands there
                } else {
                    Some(t.covering(key, u32::from(len)))
                }
            })
            .collect();
        for (&(len, key), v) in markers.iter().zip(values) {
            if let Some(v) = v {
                t.tables[len as usize].insert(key, v);
                t.markers += 1;
            }
        }
        Ok(t)
    }

    /// Build-time: the value of the longest real prefix of length at most `len` covering
    /// `addr`, by probing every length longest first. Only valid before markers are stored.
    fn covering(&self, addr: u128, len: u32) -> u32 {
        let hi = (addr >> 112) as usize;
        let mut m = self.lens[hi] & (below(len - 1) | (1u128 << (len - 1)));
        while m != 0 {
            let bit = 127 - m.leading_zeros();
            if let Some(v) = self.tables[bit as usize + 1].get(mask6(addr, bit + 1)) {
                return v;
            }
            m &= !(1u128 << bit);
        }
        self.root[hi]
    }

    /// The value of the longest prefix covering `addr`, or 0.
    #[inline]
    pub fn lookup(&self, addr: u128) -> u32 {
        let hi = (addr >> 112) as usize;
        let mut best = self.root.get(hi).copied().unwrap_or(0);
        let mut m = self.lens.get(hi).copied().unwrap_or(0);
        while m != 0 {
            let bit = pick(m);
            let len = bit + 1;
            match self.tables.get(len as usize).and_then(|t| t.get(mask6(addr, len))) {
                Some(v) => {
                    best = v;
                    m &= above(bit);
                }
                None => m &= below(bit),
            }
        }
        best
    }

    /// The value of the longest prefix covering the address in network byte order.
    #[inline]
    pub fn lookup_bytes(&self, addr: &[u8; 16]) -> u32 {
        self.lookup(u128::from_be_bytes(*addr))
    }

    /// Ask for the root lines a lookup of `addr` (network byte order) reads first.
    #[inline]
    pub fn prefetch_bytes(&self, addr: &[u8; 16]) {
        let hi = usize::from(u16::from_be_bytes([addr[0], addr[1]]));
        scrubber_intrin::prefetch_at(&self.root, hi);
        scrubber_intrin::prefetch_at(&self.lens, hi);
    }

    /// Number of prefixes given to [`build`](Self::build).
    pub fn prefixes(&self) -> usize {
        self.prefixes
    }

    /// Number of marker entries added for the binary search.
    pub fn markers(&self) -> usize {
        self.markers
    }

    /// Number of distinct prefix lengths longer than /16 (one hash table each).
    pub fn lengths(&self) -> usize {
        self.tables.iter().filter(|t| !t.slots.is_empty()).count()
    }

    /// Most hash-table probes any lookup needs: ⌊log₂ k⌋ + 1 for the largest number `k` of
    /// distinct lengths under one /16.
    pub fn max_probes(&self) -> usize {
        probes_for(self.lens.iter().map(|m| m.count_ones()).max().unwrap_or(0))
    }

    /// Total hash slots over all lengths.
    pub fn slots(&self) -> usize {
        self.tables.iter().map(|t| t.slots.len()).sum()
    }

    /// Heap bytes of the tables.
    pub fn memory_bytes(&self) -> usize {
        self.root.len() * 4
            + self.lens.len() * 16
            + self.tables.capacity() * std::mem::size_of::<Table6>()
            + self.tables.iter().map(|t| t.slots.capacity() * std::mem::size_of::<Slot>()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> u32 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap())
    }
    fn v6(s: &str) -> u128 {
        u128::from(s.parse::<std::net::Ipv6Addr>().unwrap())
    }

    #[test]
    fn v4_nested_prefixes_longest_wins() {
        let t = Lpm4::build(&[
            (v4("198.18.0.0"), 15, 1),
            (v4("198.18.5.0"), 24, 3),
            (v4("198.18.0.0"), 16, 2),
            (v4("198.18.5.7"), 32, 4),
            (v4("198.18.5.128"), 25, 5),
        ])
        .unwrap();
        assert_eq!(t.lookup(v4("198.19.1.1")), 1);
        assert_eq!(t.lookup(v4("198.18.1.1")), 2);
        assert_eq!(t.lookup(v4("198.18.5.1")), 3);
        assert_eq!(t.lookup(v4("198.18.5.7")), 4);
        assert_eq!(t.lookup(v4("198.18.5.200")), 5);
        assert_eq!(t.lookup(v4("10.0.0.1")), 0);
        assert_eq!(t.nodes(), 2);
    }

    #[test]
    fn v4_default_route_and_host_bits() {
        let t = Lpm4::build(&[(v4("1.2.3.4"), 0, 9), (v4("198.18.0.77"), 24, 7)]).unwrap();
        assert_eq!(t.lookup(0), 9);
        assert_eq!(t.lookup(u32::MAX), 9);
        assert_eq!(t.lookup(v4("198.18.0.1")), 7);
    }

    #[test]
    fn v6_nested_prefixes_longest_wins() {
        let t = Lpm6::build(&[
            (v6("2000::"), 3, 1),
            (v6("2001:2::"), 48, 3),
            (v6("2001::"), 16, 2),
            (v6("2001:2::10"), 128, 4),
            (v6("2001:2::"), 32, 5),
        ])
        .unwrap();
        assert_eq!(t.lookup(v6("2400::1")), 1);
        assert_eq!(t.lookup(v6("2001:1::1")), 2);
        assert_eq!(t.lookup(v6("2001:2:1::1")), 5);
        assert_eq!(t.lookup(v6("2001:2::1")), 3);
        assert_eq!(t.lookup(v6("2001:2::10")), 4);
        assert_eq!(t.lookup(v6("fe80::1")), 0);
        assert_eq!(t.lengths(), 3);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(Lpm4::build(&[(0, 33, 1)]), Err(LpmError::BadLength { .. })));
        assert!(matches!(Lpm6::build(&[(0, 129, 1)]), Err(LpmError::BadLength { .. })));
        assert!(matches!(Lpm4::build(&[(0, 8, CHILD)]), Err(LpmError::ValueTooLarge(_))));
        assert!(matches!(Lpm6::build(&[(0, 8, u32::MAX)]), Err(LpmError::ValueTooLarge(_))));
    }

    #[test]
    fn later_duplicate_wins() {
        let t = Lpm4::build(&[(v4("198.18.0.0"), 24, 1), (v4("198.18.0.0"), 24, 2)]).unwrap();
        assert_eq!(t.lookup(v4("198.18.0.9")), 2);
        let t = Lpm6::build(&[(v6("2001:2::"), 48, 1), (v6("2001:2::"), 48, 2)]).unwrap();
        assert_eq!(t.lookup(v6("2001:2::9")), 2);
    }
}
