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
//! * **IPv6: a direct /16 table plus a Poptrie** (Asai & Ohara, SIGCOMM 2015). Prefixes up to
//!   /16 are expanded into a root array of 65 536 entries; an entry is a value or the index of a
//!   node for the next bits. Below, a compressed multibit trie of 6-bit strides: a node is 24
//!   bytes — a 64-bit `vector` marking which of its 64 slots lead to children, a 64-bit
//!   `leafvec` marking where runs of equal leaf values start, and the bases of its children and
//!   of its leaf values, each stored contiguously — so a step is one node load, a shift and a
//!   population count, and a lookup ends at the first slot no longer prefix lies under. At most
//!   19 levels for /128s; 6 for prefixes up to /52. Prefixes are expanded within their node
//!   (controlled prefix expansion), shortest first. The previous design (a hash table per
//!   length, binary search on lengths) made up to 7 dependent hash probes per lookup: 2–4 M
//!   lookups/s at a million prefixes; see README for this one's figures.

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

    /// Second step, once the root entry has arrived: ask for the node entry a lookup of `addr`
    /// reads next, if there is one.
    #[inline]
    pub fn prefetch_node(&self, addr: u32) {
        let e = self.root.get((addr >> 16) as usize).copied().unwrap_or(0);
        if e & CHILD != 0 {
            if let Some(n) = self.nodes.get((e & !CHILD) as usize) {
                scrubber_intrin::prefetch_at(n, ((addr >> 8) & 0xff) as usize);
            }
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

/// Bits per level of the IPv6 trie below the direct /16 table.
const STRIDE: u32 = 6;

/// One internal node of the IPv6 trie (Poptrie): 64 slots for the next 6 address bits.
/// `vector` bit `i` set: slot `i` leads to a child node, the `rank`-th of the node's children,
/// stored contiguously from `base1` (`rank` = set bits of `vector` below `i`). Otherwise slot
/// `i` is a leaf: the leaf values of a node are stored from `base0`, one per run of equal
/// values among its leaf slots; `leafvec` has a bit at the first slot of each run, so slot `i`'s
/// value is the `(set bits of leafvec up to and including i) - 1`-th.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Node6 {
    vector: u64,
    leafvec: u64,
    base0: u32,
    base1: u32,
}

/// IPv6 longest-prefix match: a Poptrie (Asai & Ohara, "Poptrie: a compressed trie with
/// population count for fast and scalable software IP routing table lookup", SIGCOMM 2015).
/// See the module docs.
#[derive(Clone)]
pub struct Lpm6 {
    /// Per /16: the value of the longest prefix up to /16 covering it, or [`CHILD`] | the
    /// index of the node for the next bits.
    root: Box<[u32]>,
    nodes: Vec<Node6>,
    leaves: Vec<u32>,
    prefixes: usize,
    depth: usize,
}

impl std::fmt::Debug for Lpm6 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lpm6")
            .field("prefixes", &self.prefixes)
            .field("nodes", &self.nodes.len())
            .field("leaves", &self.leaves.len())
            .field("depth", &self.depth)
            .finish()
    }
}

impl Default for Lpm6 {
    fn default() -> Self {
        Self { root: vec![0; ROOT].into_boxed_slice(), nodes: Vec::new(), leaves: Vec::new(), prefixes: 0, depth: 0 }
    }
}

/// The 6 bits of `addr` after the first `p` (zeros beyond bit 128).
#[inline(always)]
fn slot_at(addr: u128, p: u32) -> u32 {
    ((addr << p) >> (128 - STRIDE)) as u32
}

/// Build-time state of [`Lpm6::build`].
struct Builder6<'a> {
    /// (masked address, length, value) of the prefixes longer than /16, sorted by address then
    /// length, one per distinct prefix.
    items: &'a [(u128, u8, u32)],
    nodes: Vec<Node6>,
    leaves: Vec<u32>,
    depth: usize,
}

impl Builder6<'_> {
    /// Fill node `at` for the prefixes of `items[range]` longer than `p` bits (all sharing their
    /// first `p` bits; shorter ones in the range belong to ancestors and are skipped), under the
    /// value `inherited` of the longest shorter prefix.
    fn fill(&mut self, at: usize, p: u32, range: std::ops::Range<usize>, inherited: u32, level: usize) {
        self.depth = self.depth.max(level);
        let items = &self.items[range.clone()];
        let mut slots = [inherited; 64];
        // Prefixes ending within this node's 6 bits, shortest first so longer ones win.
        let mut ending: Vec<(u8, u128, u32)> = items
            .iter()
            .filter(|e| u32::from(e.1) > p && u32::from(e.1) <= p + STRIDE)
            .map(|&(a, l, v)| (l, a, v))
            .collect();
        ending.sort_by_key(|e| e.0);
        for (len, a, v) in ending {
            let span = 1usize << (p + STRIDE - u32::from(len));
            let first = slot_at(a, p) as usize & !(span - 1);
            for s in &mut slots[first..first + span] {
                *s = v;
            }
        }
        // Slots under which longer prefixes lie become children. Those prefixes, in address
        // order, come in one run per slot: the child gets the range from the run's first to its
        // last (shorter prefixes sorted in between are skipped by it).
        let mut groups: Vec<(u32, std::ops::Range<usize>)> = Vec::new();
        for (i, e) in items.iter().enumerate() {
            if u32::from(e.1) <= p + STRIDE {
                continue;
            }
            let s = slot_at(e.0, p);
            match groups.last_mut() {
                Some((gs, r)) if *gs == s => r.end = range.start + i + 1,
                _ => groups.push((s, range.start + i..range.start + i + 1)),
            }
        }
        let mut vector = 0u64;
        for (s, _) in &groups {
            vector |= 1u64 << s;
        }
        let mut leafvec = 0u64;
        let base0 = self.leaves.len() as u32;
        let mut prev: Option<u32> = None;
        for (i, &v) in slots.iter().enumerate() {
            if vector >> i & 1 == 1 {
                continue;
            }
            if prev != Some(v) {
                leafvec |= 1u64 << i;
                self.leaves.push(v);
                prev = Some(v);
            }
        }
        let base1 = self.nodes.len() as u32;
        self.nodes.resize(self.nodes.len() + groups.len(), Node6::default());
        self.nodes[at] = Node6 { vector, leafvec, base0, base1 };
        for (k, (s, r)) in groups.into_iter().enumerate() {
            self.fill(base1 as usize + k, p + STRIDE, r, slots[s as usize], level + 1);
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

        // Longer prefixes, masked, by address then length, deduplicated (the later of two
        // equal prefixes wins).
        let mut long: Vec<(u128, u8, u32, usize)> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.1 > 16)
            .map(|(i, &(a, len, v))| (mask6(a, u32::from(len)), len, v, i))
            .collect();
        long.sort_unstable_by_key(|x| (x.0, x.1, std::cmp::Reverse(x.3)));
        long.dedup_by(|later, first| later.0 == first.0 && later.1 == first.1);
        let items: Vec<(u128, u8, u32)> = long.into_iter().map(|(a, l, v, _)| (a, l, v)).collect();

        // One node per /16 holding longer prefixes, under the /16's own value.
        let mut b = Builder6 { items: &items, nodes: Vec::new(), leaves: Vec::new(), depth: 0 };
        let mut i = 0;
        while i < items.len() {
            let hi = (items[i].0 >> 112) as usize;
            let start = i;
            while i < items.len() && (items[i].0 >> 112) as usize == hi {
                i += 1;
            }
            let at = b.nodes.len();
            if at as u32 >= CHILD {
                return Err(LpmError::TooManyNodes(at));
            }
            b.nodes.push(Node6::default());
            let inherited = t.root[hi];
            b.fill(at, 16, start..i, inherited, 1);
            t.root[hi] = CHILD | at as u32;
        }
        if b.nodes.len() as u64 >= u64::from(CHILD) || b.leaves.len() as u64 >= u64::from(u32::MAX) {
            return Err(LpmError::TooManyNodes(b.nodes.len()));
        }
        t.depth = b.depth;
        t.nodes = b.nodes;
        t.leaves = b.leaves;
        t.nodes.shrink_to_fit();
        t.leaves.shrink_to_fit();
        Ok(t)
    }

    /// The value of the longest prefix covering `addr`, or 0.
    #[inline]
    pub fn lookup(&self, addr: u128) -> u32 {
        let e = self.root.get((addr >> 112) as usize).copied().unwrap_or(0);
        if e & CHILD == 0 {
            return e;
        }
        let mut at = (e & !CHILD) as usize;
        let mut p = 16;
        while p < 128 {
            let Some(n) = self.nodes.get(at) else { return 0 };
            let bit = 1u64 << slot_at(addr, p);
            if n.vector & bit != 0 {
                at = n.base1 as usize + (n.vector & (bit - 1)).count_ones() as usize;
                p += STRIDE;
            } else {
                let run = (n.leafvec & (bit | (bit - 1))).count_ones() as usize;
                return self.leaves.get(n.base0 as usize + run.saturating_sub(1)).copied().unwrap_or(0);
            }
        }
        0
    }

    /// The value of the longest prefix covering the address in network byte order.
    #[inline]
    pub fn lookup_bytes(&self, addr: &[u8; 16]) -> u32 {
        self.lookup(u128::from_be_bytes(*addr))
    }

    /// Ask for the root entry and the first node a lookup of `addr` (network byte order)
    /// reads (a prefetch, e.g. a batch ahead of the lookups).
    #[inline]
    pub fn prefetch_bytes(&self, addr: &[u8; 16]) {
        let hi = usize::from(u16::from_be_bytes([addr[0], addr[1]]));
        scrubber_intrin::prefetch_at(&self.root, hi);
    }

    /// Second step, once the root entry has arrived: ask for the first node, if any.
    #[inline]
    pub fn prefetch_node_bytes(&self, addr: &[u8; 16]) {
        let hi = usize::from(u16::from_be_bytes([addr[0], addr[1]]));
        let e = self.root.get(hi).copied().unwrap_or(0);
        if e & CHILD != 0 {
            scrubber_intrin::prefetch_at(&self.nodes, (e & !CHILD) as usize);
        }
    }

    /// Number of prefixes given to [`build`](Self::build).
    pub fn prefixes(&self) -> usize {
        self.prefixes
    }

    /// Internal nodes below the /16 table.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Leaf values stored (one per run of equal values per node).
    pub fn leaves(&self) -> usize {
        self.leaves.len()
    }

    /// Most nodes one lookup visits below the /16 table.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Heap bytes of the tables.
    pub fn memory_bytes(&self) -> usize {
        self.root.len() * 4 + self.nodes.capacity() * std::mem::size_of::<Node6>() + self.leaves.capacity() * 4
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
        assert_eq!(t.depth(), 19, "/16 table, then 19 6-bit levels down to /128");
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
