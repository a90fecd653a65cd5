//! The compiled policy's tables and the three questions the engine asks of them per frame.

use super::*;

/// A rule's conditions, compiled. `NONE` / `ANY_*` mean "not written".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Matcher {
    pub(super) action: Action,
    pub(super) observe: bool,
    pub(super) from: u32,
    pub(super) to: u32,
    pub(super) service: u32,
    pub(super) dports: u32,
    pub(super) sports: u32,
    pub(super) proto: u16,
    pub(super) icmp4: u16,
    pub(super) icmp6: u16,
    pub(super) flags: bool,
    pub(super) flags_set: u8,
    pub(super) flags_clear: u8,
    /// Bit `FragKind as u8` set for each accepted fragment state.
    pub(super) frag: u8,
    pub(super) len_lo: u16,
    pub(super) len_hi: u16,
}

/// A compiled port set: up to [`PortMatch::MAX_RANGES`] ranges kept as ranges, more as a bitmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PortMatch {
    /// Inclusive ranges.
    Ranges(Box<[(u16, u16)]>),
    /// One bit per port.
    Bits(BitBox<u64, Lsb0>),
}

impl PortMatch {
    /// Most ranges kept as ranges (a handful of compares beat a cache miss into 8 KiB).
    pub(super) const MAX_RANGES: usize = 8;

    #[inline]
    pub(super) fn contains(&self, port: u16) -> bool {
        match self {
            PortMatch::Ranges(r) => r.iter().any(|&(a, z)| a <= port && port <= z),
            PortMatch::Bits(b) => b.get(port as usize).is_some_and(|x| *x),
        }
    }

    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            PortMatch::Ranges(r) => r.len() * 4,
            PortMatch::Bits(b) => b.as_raw_slice().len() * 8,
        }
    }

    pub(super) fn hash_into(&self, h: &mut xxhash_rust::xxh3::Xxh3) {
        match self {
            PortMatch::Ranges(r) => {
                h.update(&[0]);
                for (a, z) in r.iter() {
                    h.update(&a.to_le_bytes());
                    h.update(&z.to_le_bytes());
                }
            }
            PortMatch::Bits(b) => {
                h.update(&[1]);
                for w in b.as_raw_slice() {
                    h.update(&w.to_le_bytes());
                }
            }
        }
    }
}

/// A service's match part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct SvcMatch {
    pub(super) dst: u32,
    pub(super) proto: u8,
    pub(super) ports: u32,
}

/// The compiled policy. Immutable after [`compile`]; share it between workers (`Send + Sync`).
#[derive(Clone)]
pub struct Compiled {
    pub(super) settings: Settings,
    pub(super) set_names: Vec<String>,
    pub(super) words: usize,
    pub(super) classes: Vec<u64>,
    pub(super) class_protected: Vec<bool>,
    pub(super) all_protected: bool,
    pub(super) need_src: bool,
    pub(super) need_dst: bool,
    pub(super) v4: Lpm4,
    pub(super) v6: Lpm6,
    pub(super) ports: Vec<PortMatch>,
    pub(super) svc_match: Vec<SvcMatch>,
    pub(super) services: Vec<CService>,
    pub(super) matchers: Vec<Matcher>,
    pub(super) rules: Vec<CRule>,
    pub(super) stats: CompileStats,
    pub(super) generation: u64,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("generation_id", &format_args!("{:016x}", self.generation))
            .field("settings", &self.settings)
            .field("sets", &self.set_names)
            .field("services", &self.services)
            .field("rules", &self.rules)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Compiled {
    /// The address class of `addr` (0: in no set). The same class means membership in the same
    /// sets.
    #[inline]
    pub fn address_class(&self, v6: bool, addr: &[u8; 16]) -> u32 {
        if v6 {
            self.v6.lookup_bytes(addr)
        } else {
            self.v4.lookup(u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]]))
        }
    }

    #[inline]
    fn has(&self, class: u32, set: u32) -> bool {
        let i = class as usize * self.words + (set as usize >> 6);
        self.classes.get(i).is_some_and(|w| (w >> (set & 63)) & 1 != 0)
    }

    #[inline]
    fn port_in(&self, set: u32, port: u16) -> bool {
        self.ports.get(set as usize).is_some_and(|b| b.contains(port))
    }

    #[inline]
    fn svc_matches(&self, s: &SvcMatch, dst_class: u32, proto: u8, dport: u16) -> bool {
        s.proto == proto
            && (s.dst == NONE || self.has(dst_class, s.dst))
            && (s.ports == NONE || self.port_in(s.ports, dport))
    }

    #[inline]
    fn rule_matches(&self, m: &Matcher, p: &Packet<'_>, sc: u32, dc: u32, frag: u8) -> bool {
        (m.proto == ANY_PROTO || m.proto == u16::from(p.proto))
            && m.frag & frag != 0
            && (m.len_lo <= p.ip_len && p.ip_len <= m.len_hi)
            && (!m.flags
                || (p.proto == 6 && p.tcp_flags & m.flags_set == m.flags_set && p.tcp_flags & m.flags_clear == 0))
            && (m.icmp4 == ANY_TYPE || (p.proto == 1 && p.icmp_type.map(u16::from) == Some(m.icmp4)))
            && (m.icmp6 == ANY_TYPE || (p.proto == 58 && p.icmp_type.map(u16::from) == Some(m.icmp6)))
            && (m.dports == NONE || self.port_in(m.dports, p.dport))
            && (m.sports == NONE || self.port_in(m.sports, p.sport))
            && (m.from == NONE || self.has(sc, m.from))
            && (m.to == NONE || self.has(dc, m.to))
            && (m.service == NONE
                || self.svc_match.get(m.service as usize).is_some_and(|s| self.svc_matches(s, dc, p.proto, p.dport)))
    }

    /// The first rule whose every condition holds, else the default action. Does not allocate;
    /// looks up the source and destination class once, then tests each rule in O(1).
    ///
    /// An `observe` rule is not terminal: when [`Hit::observe`] is set, the caller counts it and
    /// asks again with [`judge_from`](Self::judge_from) from the next rule.
    #[inline]
    pub fn judge(&self, p: &Packet<'_>) -> Hit {
        self.judge_from(p, 0)
    }

    /// As [`judge`](Self::judge), from rule `start` on (the rule after an `observe` hit).
    #[inline]
    pub fn judge_from(&self, p: &Packet<'_>, start: usize) -> Hit {
        self.judge_classes(p, start, self.classes_of(p))
    }

    /// The (source, destination) address classes [`judge`](Self::judge) needs for `p` (0 for a
    /// side no rule looks at): compute them once for several calls of
    /// [`judge_classes`](Self::judge_classes).
    #[inline]
    pub fn classes_of(&self, p: &Packet<'_>) -> (u32, u32) {
        let sc = if self.need_src { self.address_class(p.v6, p.src) } else { 0 };
        let dc = if self.need_dst { self.address_class(p.v6, p.dst) } else { 0 };
        (sc, dc)
    }

    /// Whether the destination class [`classes_of`](Self::classes_of) returns is the real
    /// one (some rule or service looks at destinations), so that
    /// [`service_in_class`](Self::service_in_class) may use it.
    #[inline]
    pub fn dst_class_known(&self) -> bool {
        self.need_dst
    }

    /// As [`judge_from`](Self::judge_from), with the classes from [`classes_of`](Self::classes_of).
    #[inline]
    pub fn judge_classes(&self, p: &Packet<'_>, start: usize, (sc, dc): (u32, u32)) -> Hit {
        let frag = 1u8 << (p.frag as u8);
        for (i, m) in self.matchers.iter().enumerate().skip(start) {
            if self.rule_matches(m, p, sc, dc, frag) {
                return Hit { rule: Some(i as u16), action: m.action, observe: m.observe };
            }
        }
        Hit { rule: None, action: self.settings.default, observe: false }
    }

    /// Ask for the memory [`judge`](Self::judge) will read first for a packet from `src` to
    /// `dst` (the prefix tables' root lines), ahead of the judging: prefetches only, no result.
    #[inline]
    pub fn prefetch(&self, v6: bool, src: &[u8; 16], dst: &[u8; 16]) {
        for (need, a) in [(self.need_src, src), (self.need_dst, dst)] {
            if !need {
                continue;
            }
            if v6 {
                self.v6.prefetch_bytes(a);
            } else {
                self.v4.prefetch(u32::from_be_bytes([a[0], a[1], a[2], a[3]]));
            }
        }
    }

    /// The second step of [`prefetch`](Self::prefetch), a little later (once the root lines
    /// have arrived): ask for the prefix tables' next level.
    #[inline]
    pub fn prefetch_next(&self, v6: bool, src: &[u8; 16], dst: &[u8; 16]) {
        for (need, a) in [(self.need_src, src), (self.need_dst, dst)] {
            if !need {
                continue;
            }
            if v6 {
                self.v6.prefetch_node_bytes(a);
            } else {
                self.v4.prefetch_node(u32::from_be_bytes([a[0], a[1], a[2], a[3]]));
            }
        }
    }

    /// The first service whose destination set holds `dst`, whatever its protocol and ports
    /// (where traffic without ports, such as ICMP or fragments, towards an address belongs).
    pub fn service_at(&self, v6: bool, dst: &[u8; 16]) -> Option<u16> {
        let dc = self.address_class(v6, dst);
        self.svc_match.iter().position(|s| s.dst == NONE || self.has(dc, s.dst)).map(|i| i as u16)
    }

    /// The first service whose destination set, protocol and ports match. Does not allocate.
    #[inline]
    pub fn service(&self, v6: bool, dst: &[u8; 16], proto: u8, dport: u16) -> Option<u16> {
        if self.svc_match.is_empty() {
            return None;
        }
        self.service_in_class(self.address_class(v6, dst), proto, dport)
    }

    /// As [`service`](Self::service), for a destination whose address class is known.
    #[inline]
    pub fn service_in_class(&self, dst_class: u32, proto: u8, dport: u16) -> Option<u16> {
        self.svc_match.iter().position(|s| self.svc_matches(s, dst_class, proto, dport)).map(|i| i as u16)
    }

    /// Whether `addr` lies inside any service's destination set (any protocol, any port).
    #[inline]
    pub fn is_protected(&self, v6: bool, addr: &[u8; 16]) -> bool {
        if self.all_protected {
            return true;
        }
        if self.svc_match.is_empty() {
            return false;
        }
        let c = self.address_class(v6, addr);
        self.class_protected.get(c as usize).copied().unwrap_or(false)
    }

    /// Whether `addr` is in the address set `set` (a set name, or an inline prefix as written in
    /// a rule, e.g. `198.18.0.0/24`). `None` when no rule or service uses that set. For tools
    /// and tests, not for the per-frame path.
    pub fn in_set(&self, set: &str, v6: bool, addr: &[u8; 16]) -> Option<bool> {
        let id = self.set_names.iter().position(|n| n == set)?;
        Some(self.has(self.address_class(v6, addr), id as u32))
    }

    /// Services, indexed by what [`service`](Self::service) returns.
    pub fn services(&self) -> &[CService] {
        &self.services
    }

    /// Rules in evaluation order, indexed by [`Hit::rule`].
    pub fn rules(&self) -> &[CRule] {
        &self.rules
    }

    /// Global settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Heap bytes of all tables.
    pub fn memory_bytes(&self) -> usize {
        self.stats.memory_bytes
    }

    /// Sizes of the tables.
    pub fn stats(&self) -> CompileStats {
        self.stats
    }

    /// A hash of the whole compiled content: changes when anything changes (set contents
    /// included).
    pub fn generation_id(&self) -> u64 {
        self.generation
    }

    pub(super) fn heap_bytes(&self) -> usize {
        let s = |x: &String| x.capacity();
        self.v4.memory_bytes()
            + self.v6.memory_bytes()
            + self.classes.capacity() * 8
            + self.class_protected.capacity()
            + self.set_names.capacity() * std::mem::size_of::<String>()
            + self.set_names.iter().map(s).sum::<usize>()
            + self.ports.capacity() * std::mem::size_of::<PortMatch>()
            + self.ports.iter().map(PortMatch::heap_bytes).sum::<usize>()
            + self.svc_match.capacity() * std::mem::size_of::<SvcMatch>()
            + self.services.capacity() * std::mem::size_of::<CService>()
            + self.services.iter().map(|x| s(&x.name)).sum::<usize>()
            + self.matchers.capacity() * std::mem::size_of::<Matcher>()
            + self.rules.capacity() * std::mem::size_of::<CRule>()
            + self
                .rules
                .iter()
                .map(|r| s(&r.location) + s(&r.text) + r.limits.capacity() * std::mem::size_of::<CLimit>())
                .sum::<usize>()
    }
}
