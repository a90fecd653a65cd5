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
//! * **IPv6: a direct /16 table plus one open-addressing hash table per prefix length.**
//!   Prefixes up to /16 are expanded into a root array of 65 536 values. Longer prefixes go into
//!   one hash table per length (key: the masked address, xxh3 hash, linear probing, load factor
//!   at most 3/4, 24-byte slots). Per /16 a 128-bit mask records which lengths have a prefix
//!   under that /16; a lookup probes only those lengths, longest first, and stops at the first
//!   hit, so its cost is bounded by the number of distinct lengths under the address's /16 (at
//!   most 112, typically 1–4), never by the number of prefixes. Memory: 1.25 MiB for the root
//!   arrays + 24–64 bytes per prefix longer than /16 (1 M /48s: 48 MiB).

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

    /// Insert or overwrite. Returns the number of slots probed.
    fn insert(&mut self, key: u128, v: u32) -> usize {
        let (hi, lo) = ((key >> 64) as u64, key as u64);
        let mut i = hash6(key) as usize & self.mask;
        let mut probes = 1;
        loop {
            let s = &mut self.slots[i];
            if s.val & CHILD == 0 || (s.hi == hi && s.lo == lo) {
                *s = Slot { hi, lo, val: v | CHILD };
                return probes;
            }
            i = (i + 1) & self.mask;
            probes += 1;
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

/// IPv6 longest-prefix match: a /16 root table plus one hash table per prefix length longer
/// than /16. See the module docs.
#[derive(Clone)]
pub struct Lpm6 {
    /// Values of prefixes up to /16, expanded.
    root: Box<[u32]>,
    /// Per /16: bit `len - 1` set when a prefix of length `len` (17–128) lies under it.
    lens: Box<[u128]>,
    /// Index = prefix length (0–128); only lengths 17–128 are used.
    tables: Vec<Table6>,
    prefixes: usize,
    max_probe: usize,
}

impl std::fmt::Debug for Lpm6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lpm6")
            .field("prefixes", &self.prefixes)
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
            max_probe: 0,
        }
    }
}

impl Lpm6 {
    /// Build from `(address, length, value)` triples; host bits of the address are ignored.
    pub fn build(entries: &[(u128, u8, u32)]) -> Result<Self, LpmError> {
        let mut per_len = [0usize; 129];
        for &(_, len, v) in entries {
            if len > 128 {
                return Err(LpmError::BadLength { len, max: 128 });
            }
            check_value(v)?;
            per_len[len as usize] += 1;
        }
        let mut t = Self::default();
        for (len, &n) in per_len.iter().enumerate().skip(17) {
            if n > 0 {
                t.tables[len] = Table6::with_entries(n);
            }
        }
        let mut short: Vec<usize> = Vec::new();
        for (i, &(a, len, v)) in entries.iter().enumerate() {
            if len <= 16 {
                short.push(i);
                continue;
            }
            let key = mask6(a, u32::from(len));
            let probes = t.tables[len as usize].insert(key, v);
            t.max_probe = t.max_probe.max(probes);
            t.lens[(key >> 112) as usize] |= 1u128 << (len - 1);
        }
        short.sort_by_key(|&i| entries[i].1);
        for i in short {
            let (a, len, v) = entries[i];
            let hi = (mask6(a, u32::from(len)) >> 112) as usize;
            for e in &mut t.root[hi..hi + (1usize << (16 - len))] {
                *e = v;
            }
        }
        t.prefixes = entries.len();
        Ok(t)
    }

    /// The value of the longest prefix covering `addr`, or 0.
    #[inline]
    pub fn lookup(&self, addr: u128) -> u32 {
        let hi = (addr >> 112) as usize;
        let mut m = self.lens.get(hi).copied().unwrap_or(0);
        while m != 0 {
            let bit = 127 - m.leading_zeros();
            let len = bit + 1;
            if let Some(t) = self.tables.get(len as usize) {
                if let Some(v) = t.get(mask6(addr, len)) {
                    return v;
                }
            }
            m &= !(1u128 << bit);
        }
        self.root.get(hi).copied().unwrap_or(0)
    }

    /// The value of the longest prefix covering the address in network byte order.
    #[inline]
    pub fn lookup_bytes(&self, addr: &[u8; 16]) -> u32 {
        self.lookup(u128::from_be_bytes(*addr))
    }

    /// Number of prefixes given to [`build`](Self::build).
    pub fn prefixes(&self) -> usize {
        self.prefixes
    }

    /// Number of distinct prefix lengths longer than /16 (the bound on hash probes per lookup).
    pub fn lengths(&self) -> usize {
        self.tables.iter().filter(|t| !t.slots.is_empty()).count()
    }

    /// Largest number of lengths any one /16 needs probed.
    pub fn max_lengths_per_slash16(&self) -> usize {
        self.lens.iter().map(|m| m.count_ones() as usize).max().unwrap_or(0)
    }

    /// Longest linear-probe run seen while inserting.
    pub fn max_probe(&self) -> usize {
        self.max_probe
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
