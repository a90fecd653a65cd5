//! The compiled policy: the lookup tables the packet engine consults for every frame.
//!
//! [`compile`] turns a checked [`Policy`] into an immutable [`Compiled`] value. The engine asks
//! it three questions per frame, none of which allocates or takes a lock:
//!
//! * [`Compiled::judge`]: the first rule (in file order) whose every condition holds, or the
//!   default action.
//! * [`Compiled::service`]: the first service whose destination set, protocol and ports match.
//! * [`Compiled::is_protected`]: whether an address lies in any service's destination set.
//!
//! # Address classes
//!
//! Every prefix of every address set that a rule or service uses (named sets, and each inline
//! prefix such as `to 198.18.0.0/24` as an anonymous set) goes into one longest-prefix-match
//! table per family ([`crate::lpm`]). The value stored for a prefix is a **class**: the set of
//! address sets that contain the addresses it covers — its own sets plus, inherited, the sets of
//! every shorter prefix covering it. Because a prefix's class includes its ancestors', the
//! longest matching prefix alone gives every set the address belongs to. Class 0 is "in no set".
//! Per class a small bitset (one `u64` per 64 address sets) records membership, so `from S` is
//! one bit test on the class of the source, looked up once per frame whatever the number of
//! rules. Unused sets cost nothing.
//!
//! # Conditions
//!
//! * `from`/`to`: the source/destination class contains the set (`any`: always true).
//! * `proto N`: the IP protocol number equals N.
//! * `port`/`sport`: the packet's destination/source port is in a 65 536-bit bitset (`bitvec`);
//!   the engine passes port 0 when the packet has no ports (not TCP/UDP, or a non-first
//!   fragment), so `port 0` is how such packets are matched by port.
//! * `flags`: TCP only (`proto 6`); every `set` bit set and every `clear` bit clear.
//! * `len A-B`: the IP packet length (header + payload) is within A..=B.
//! * `frag yes|no|first|later`: a fragment of any kind / not a fragment / first / non-first.
//! * `icmp-type T`: protocol 1 and ICMP type T; `icmpv6-type T`: protocol 58 and type T.
//! * `service S`: the destination is in S's `dst`, the protocol is S's, and the destination
//!   port is in S's ports (all ports when S lists none).
//!
//! # Limits
//!
//! Buckets hold `rate` units per second and at most `burst` units. `burst` defaults to one
//! second of the rate (packets for pps, **bytes** = rate/8 for bps, connections for
//! `new-conns`). With one rate, a written `burst` is in that rate's unit. With both a pps and a
//! bps rate, a written `burst` is in packets and sets the pps bucket; the bps bucket gets the
//! same burst *duration* (burst/pps seconds of the bps rate, in bytes).
//!
//! # Identity
//!
//! [`CRule::fingerprint`] hashes the rule as written (action, observe, conditions with set
//! *names*, limits) but not where it is nor what its sets contain, so that a reload keeping a
//! rule keeps its limiter state; the n-th identical copy of a rule gets a distinct fingerprint.
//! [`Compiled::generation_id`] hashes everything (set contents, services, rules, settings).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use bitvec::prelude::*;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::ast::{Action, AddrRef, Frag, Learnable, LimitSpec, PortItem, Prefix, Proto, RateUnit, SynMode, Toggle};
use crate::check::{describe_limit, describe_match, PortRanges, Rule, Service, Settings};
use crate::diag::{Span, Spanned};
use crate::lpm::{Lpm4, Lpm6, LpmError, MAX_VALUE};
use crate::{Policy, Target};

/// "No set / no port set / no service" in the compiled tables.
const NONE: u32 = u32::MAX;
/// "Any protocol" in a matcher.
const ANY_PROTO: u16 = 0x100;
/// "Any ICMP type" in a matcher.
const ANY_TYPE: u16 = 0x100;
/// Most rules and services a policy may have (their indices are `u16`).
pub const MAX_RULES: usize = 1 << 16;

mod model;
mod tables;

pub use model::*;
pub use tables::Compiled;
use tables::PortMatch;
use tables::{Matcher, SvcMatch};
/// Address sets used by the policy, numbered.
#[derive(Default)]
struct AddrSets<'p> {
    names: Vec<String>,
    prefixes: Vec<std::borrow::Cow<'p, [Prefix]>>,
    index: HashMap<String, u32>,
}

impl<'p> AddrSets<'p> {
    fn resolve(&mut self, a: &AddrRef, policy: &'p Policy, location: &dyn Fn() -> String) -> Result<u32, CompileError> {
        let (key, name) = match a {
            AddrRef::Any => return Ok(NONE),
            AddrRef::Name(n) => (format!("set {n}"), n.clone()),
            AddrRef::Prefix(p) => (format!("prefix {p}"), p.to_string()),
        };
        if let Some(&id) = self.index.get(&key) {
            return Ok(id);
        }
        let prefixes = match a {
            AddrRef::Name(n) => match policy.sets.iter().find(|s| &s.name == n) {
                Some(s) => std::borrow::Cow::Borrowed(s.prefixes.as_slice()),
                None => return Err(CompileError::UnknownSet { name: n.clone(), location: location() }),
            },
            AddrRef::Prefix(p) => std::borrow::Cow::Owned(vec![*p]),
            AddrRef::Any => return Ok(NONE),
        };
        let id = self.names.len() as u32;
        self.names.push(name);
        self.prefixes.push(prefixes);
        self.index.insert(key, id);
        Ok(id)
    }
}

/// Interned port sets: a few ranges as ranges, more as a 65,536-bit bitmap (8 KiB), so that
/// thousands of rules with a port each do not cost 8 KiB apiece.
#[derive(Default)]
struct PortTable {
    sets: Vec<PortMatch>,
    index: HashMap<PortRanges, u32>,
}

impl PortTable {
    fn intern(&mut self, r: &PortRanges) -> u32 {
        if let Some(&i) = self.index.get(r) {
            return i;
        }
        let valid: Vec<(u16, u16)> = r.iter().copied().filter(|(a, z)| a <= z).collect();
        let set = if valid.len() <= PortMatch::MAX_RANGES {
            PortMatch::Ranges(valid.into_boxed_slice())
        } else {
            let mut b = bitbox![u64, Lsb0; 0; 1 << 16];
            for &(a, z) in &valid {
                b[a as usize..=z as usize].fill(true);
            }
            PortMatch::Bits(b)
        };
        let i = self.sets.len() as u32;
        self.sets.push(set);
        self.index.insert(r.clone(), i);
        i
    }
}

/// Interned class bitsets (indexed by a hash of the bits, so that each bitset is stored once).
struct Classes {
    words: usize,
    bits: Vec<u64>,
    index: HashMap<u64, Vec<u32>>,
}

fn bits_hash(b: &[u64]) -> u64 {
    let mut h = Xxh3::new();
    for w in b {
        h.update(&w.to_le_bytes());
    }
    h.digest()
}

impl Classes {
    fn new(words: usize) -> Self {
        let zero = vec![0u64; words];
        let mut index = HashMap::new();
        index.insert(bits_hash(&zero), vec![0]);
        Self { words, bits: zero, index }
    }

    fn count(&self) -> usize {
        self.bits.len() / self.words
    }

    fn get(&self, c: u32) -> &[u64] {
        let i = c as usize * self.words;
        &self.bits[i..i + self.words]
    }

    fn intern(&mut self, b: &[u64]) -> Result<u32, CompileError> {
        let h = bits_hash(b);
        if let Some(cs) = self.index.get(&h) {
            if let Some(&c) = cs.iter().find(|&&c| self.get(c) == b) {
                return Ok(c);
            }
        }
        let n = self.count();
        if n > MAX_VALUE as usize {
            return Err(CompileError::TooManyClasses(n));
        }
        self.bits.extend_from_slice(b);
        self.index.entry(h).or_default().push(n as u32);
        Ok(n as u32)
    }
}

/// Assign each distinct prefix of one family its class (own sets ∪ covering prefixes' sets).
/// `items` are (address as u128 left-aligned, length, set id); returns (address, length, class).
fn classify(mut items: Vec<(u128, u8, u32)>, classes: &mut Classes) -> Result<Vec<(u128, u8, u32)>, CompileError> {
    // Address, then length ascending: a DFS order of the prefix tree (parents first).
    items.sort_unstable();
    let words = classes.words;
    let mut out = Vec::with_capacity(items.len());
    // (address, length, class) of the chain of prefixes covering the current one.
    let mut stack: Vec<(u128, u8, u32)> = Vec::new();
    let mut scratch = vec![0u64; words];
    let mut i = 0;
    while i < items.len() {
        let (a, len, _) = items[i];
        while let Some(&(pa, plen, _)) = stack.last() {
            if plen <= len && mask(a, plen) == pa {
                break;
            }
            stack.pop();
        }
        match stack.last() {
            Some(&(_, _, c)) => scratch.copy_from_slice(classes.get(c)),
            None => scratch.fill(0),
        }
        while i < items.len() && items[i].0 == a && items[i].1 == len {
            let s = items[i].2 as usize;
            scratch[s >> 6] |= 1 << (s & 63);
            i += 1;
        }
        let c = match stack.last() {
            Some(&(_, _, pc)) if classes.get(pc) == scratch.as_slice() => pc,
            _ => classes.intern(&scratch)?,
        };
        stack.push((a, len, c));
        out.push((a, len, c));
    }
    Ok(out)
}

#[inline]
fn mask(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len.min(128))))
    }
}

/// Feed `(address, length, value)` triples to a hasher in chunks.
fn feed_entries(h: &mut Xxh3, v: &[(u128, u8, u32)]) {
    let mut buf = Vec::with_capacity(21 * 512);
    for chunk in v.chunks(512) {
        buf.clear();
        for (a, l, c) in chunk {
            buf.extend_from_slice(&a.to_le_bytes());
            buf.push(*l);
            buf.extend_from_slice(&c.to_le_bytes());
        }
        h.update(&buf);
    }
}

fn items_text(items: &[Spanned<PortItem>]) -> String {
    items.iter().map(|i| i.node.to_string()).collect::<Vec<_>>().join(",")
}

/// The rule as written, canonically, without locations or set contents.
fn canonical(r: &Rule) -> String {
    let m = &r.matches;
    let a = |x: &Option<Spanned<AddrRef>>| x.as_ref().map(|x| x.node.to_string()).unwrap_or_else(|| "-".into());
    let opt = |x: Option<String>| x.unwrap_or_else(|| "-".into());
    let mut s = format!(
        "{}|{}|from={}|to={}|proto={}|port={}|sport={}|flags={}|len={}|frag={}|icmp={}|icmp6={}|service={}",
        r.action,
        r.observe,
        a(&m.from),
        a(&m.to),
        opt(m.proto.as_ref().map(|p| p.node.number().to_string())),
        opt(m.port.as_ref().map(|p| items_text(&p.node))),
        opt(m.sport.as_ref().map(|p| items_text(&p.node))),
        opt(m.flags.as_ref().map(|f| format!("{}/{}", f.node.set, f.node.clear))),
        opt(m.len.as_ref().map(|l| format!("{}-{}", l.node.0, l.node.1))),
        opt(m.frag.as_ref().map(|f| format!("{:?}", f.node))),
        opt(m.icmp_type.as_ref().map(|t| t.node.to_string())),
        opt(m.icmpv6_type.as_ref().map(|t| t.node.to_string())),
        opt(m.service.as_ref().map(|t| t.node.clone())),
    );
    for l in &r.limits {
        s.push_str("|limit ");
        s.push_str(&describe_limit(l));
    }
    if let Some(b) = &r.ban {
        s.push_str(&format!("|ban {}ms after {}", b.duration.as_millis(), b.after));
    }
    s
}

fn rule_text(r: &Rule) -> String {
    let obs = if r.observe { " observe" } else { "" };
    let mut line = format!("{}{obs} {}", r.action, describe_match(&r.matches, r));
    for l in &r.limits {
        line.push_str(" ; ");
        line.push_str(&describe_limit(l));
    }
    if let Some(b) = &r.ban {
        line.push_str(&format!(" ; ban {}s after {}", b.duration.as_secs(), b.after));
    }
    line
}

fn bad(location: &str, what: impl Into<String>) -> CompileError {
    CompileError::BadLimit { location: location.to_string(), what: what.into() }
}

fn buckets(
    rates: &[Spanned<crate::ast::Rate>],
    burst: Option<u64>,
    loc: &str,
) -> Result<(Option<Bucket>, Option<Bucket>), CompileError> {
    let (mut pps, mut bps) = (None, None);
    for r in rates {
        let r = r.node;
        if r.value == 0 {
            return Err(bad(loc, "a rate of 0"));
        }
        match r.unit {
            RateUnit::Pps => pps = Some(r.value),
            RateUnit::Bps => bps = Some(r.value),
            RateUnit::PerSec => return Err(bad(loc, format!("'{r}' is not a packet or bit rate"))),
        }
    }
    if pps.is_none() && bps.is_none() {
        return Err(bad(loc, "a per-source or aggregate limit without a rate"));
    }
    let pb = pps.map(|rate| Bucket { rate, burst: burst.unwrap_or(rate) });
    let bb = bps.map(|rate| {
        let bytes = match (burst, pps) {
            (Some(b), None) => u128::from(b),
            // Same burst duration as the pps bucket: b/pps seconds of rate/8 bytes.
            (Some(b), Some(p)) => (u128::from(b) * u128::from(rate)).div_ceil(8 * u128::from(p)),
            (None, _) => u128::from(rate) / 8,
        };
        Bucket { rate, burst: u64::try_from(bytes).unwrap_or(u64::MAX).max(1) }
    });
    Ok((pb, bb))
}

fn limit(l: &LimitSpec, loc: &str) -> Result<CLimit, CompileError> {
    let burst = |b: &Option<Spanned<u64>>| -> Result<Option<u64>, CompileError> {
        match b {
            Some(b) if b.node == 0 => Err(bad(loc, "burst 0")),
            Some(b) => Ok(Some(b.node)),
            None => Ok(None),
        }
    };
    Ok(match l {
        LimitSpec::PerSource { rates, burst: b } => {
            let (pps, bps) = buckets(rates, burst(b)?, loc)?;
            CLimit::PerSource { pps, bps }
        }
        LimitSpec::Aggregate { rates, burst: b } => {
            let (pps, bps) = buckets(rates, burst(b)?, loc)?;
            CLimit::Aggregate { pps, bps }
        }
        LimitSpec::NewConns { rate, burst: b } => {
            if rate.node.unit != RateUnit::PerSec || rate.node.value == 0 {
                return Err(bad(loc, format!("new-conns {} is not a connection rate above 0", rate.node)));
            }
            CLimit::NewConns(Bucket { rate: rate.node.value, burst: burst(b)?.unwrap_or(rate.node.value) })
        }
        LimitSpec::Requests { rate, burst: b } => {
            if rate.node.unit != RateUnit::PerSec || rate.node.value == 0 {
                return Err(bad(loc, format!("requests {} is not a request rate above 0", rate.node)));
            }
            CLimit::Requests(Bucket { rate: rate.node.value, burst: burst(b)?.unwrap_or(rate.node.value) })
        }
        LimitSpec::MaxConns(n) => match u32::try_from(n.node) {
            Ok(v) if v > 0 => CLimit::MaxConns(v),
            _ => return Err(bad(loc, format!("max-conns {} out of range 1..=4294967295", n.node))),
        },
    })
}

fn frag_bits(f: Option<Frag>) -> u8 {
    let (none, first, later) = (1 << FragKind::None as u8, 1 << FragKind::First as u8, 1 << FragKind::Later as u8);
    match f {
        None => none | first | later,
        Some(Frag::Yes) => first | later,
        Some(Frag::No) => none,
        Some(Frag::First) => first,
        Some(Frag::Later) => later,
    }
}

fn left_aligned(p: &Prefix) -> (bool, u128) {
    match p.addr {
        IpAddr::V4(a) => (false, u128::from(u32::from(a)) << 96),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

/// Compile a checked policy into lookup tables. See the module docs for the semantics.
pub fn compile(policy: &Policy) -> Result<Compiled, CompileError> {
    if policy.rules.len() > MAX_RULES {
        return Err(CompileError::TooManyRules { count: policy.rules.len() });
    }
    if policy.services.len() > MAX_RULES {
        return Err(CompileError::TooManyServices { count: policy.services.len() });
    }
    let mut sets = AddrSets::default();
    let mut ports = PortTable::default();

    // Services.
    let mut svc_match = Vec::with_capacity(policy.services.len());
    let mut services = Vec::with_capacity(policy.services.len());
    for s in &policy.services {
        let dst = sets.resolve(&s.dst, policy, &|| format!("service {}", s.name))?;
        let p = if s.ports.is_empty() { NONE } else { ports.intern(&s.ports) };
        svc_match.push(SvcMatch { dst, proto: s.proto.number(), ports: p });
        services.push(CService {
            name: s.name.clone(),
            proto: s.proto.number(),
            syn: s.syn,
            mss: s.mss,
            wscale: s.wscale,
            sack: s.sack,
            timestamps: s.timestamps,
            idle_embryonic: s.idle_embryonic,
            idle_established: s.idle_established,
            idle_closing: s.idle_closing,
            pickup: s.pickup,
            attack_pps: s.attack_pps,
            attack_bps: s.attack_bps,
            http: s.http.clone(),
        });
    }

    // Rules.
    let mut matchers = Vec::with_capacity(policy.rules.len());
    let mut rules = Vec::with_capacity(policy.rules.len());
    let mut seen: HashMap<u64, u64> = HashMap::new();
    for r in &policy.rules {
        let m = &r.matches;
        let loc = || r.location.clone();
        let from = match &m.from {
            Some(a) => sets.resolve(&a.node, policy, &loc)?,
            None => NONE,
        };
        let to = match &m.to {
            Some(a) => sets.resolve(&a.node, policy, &loc)?,
            None => NONE,
        };
        let service = match &m.service {
            Some(n) => match policy.services.iter().position(|s| s.name == n.node) {
                Some(i) => i as u32,
                None => return Err(CompileError::UnknownService { name: n.node.clone(), location: loc() }),
            },
            None => NONE,
        };
        let (len_lo, len_hi) = m.len.as_ref().map_or((0, u16::MAX), |l| l.node);
        let flags = m.flags.as_ref().map(|f| f.node);
        matchers.push(Matcher {
            action: r.action,
            observe: r.observe,
            from,
            to,
            service,
            dports: r.dst_ports.as_ref().map_or(NONE, |p| ports.intern(p)),
            sports: r.src_ports.as_ref().map_or(NONE, |p| ports.intern(p)),
            proto: m.proto.as_ref().map_or(ANY_PROTO, |p| u16::from(p.node.number())),
            icmp4: m.icmp_type.as_ref().map_or(ANY_TYPE, |t| u16::from(t.node)),
            icmp6: m.icmpv6_type.as_ref().map_or(ANY_TYPE, |t| u16::from(t.node)),
            flags: flags.is_some(),
            flags_set: flags.map_or(0, |f| f.set),
            flags_clear: flags.map_or(0, |f| f.clear),
            frag: frag_bits(m.frag.as_ref().map(|f| f.node)),
            len_lo,
            len_hi,
        });
        let limits = r.limits.iter().map(|l| limit(l, &r.location)).collect::<Result<Vec<_>, _>>()?;
        let canon = canonical(r);
        let base = xxh3_64(canon.as_bytes());
        let nth = seen.entry(base).or_insert(0);
        let fingerprint = if *nth == 0 { base } else { xxh3_64(format!("{canon}#{nth}").as_bytes()) };
        *nth += 1;
        rules.push(CRule {
            action: r.action,
            observe: r.observe,
            location: r.location.clone(),
            text: rule_text(r),
            limits,
            ban: r.ban,
            fingerprint,
        });
    }

    // Address classes and LPM tables.
    let words = sets.names.len().div_ceil(64).max(1);
    let mut classes = Classes::new(words);
    let total: usize = sets.prefixes.iter().map(|p| p.len()).sum();
    let (mut i4, mut i6) = (Vec::with_capacity(total), Vec::new());
    for (id, ps) in sets.prefixes.iter().enumerate() {
        for p in ps.iter() {
            let (v6, a) = left_aligned(p);
            let len = p.len.min(if v6 { 128 } else { 32 });
            if v6 {
                i6.push((mask(a, len), len, id as u32));
            } else {
                i4.push((mask(a, len), len, id as u32));
            }
        }
    }
    let c4 = classify(i4, &mut classes)?;
    let c6 = classify(i6, &mut classes)?;
    let e4: Vec<(u32, u8, u32)> = c4.iter().map(|&(a, l, c)| ((a >> 96) as u32, l, c)).collect();
    let v4 = Lpm4::build(&e4)?;
    drop(e4);
    let v6 = Lpm6::build(&c6)?;

    let n_classes = classes.count();
    let mut protected_mask = vec![0u64; words];
    for s in &svc_match {
        if s.dst != NONE {
            protected_mask[s.dst as usize >> 6] |= 1 << (s.dst & 63);
        }
    }
    let class_protected: Vec<bool> =
        (0..n_classes as u32).map(|c| classes.get(c).iter().zip(&protected_mask).any(|(a, b)| a & b != 0)).collect();
    let all_protected = svc_match.iter().any(|s| s.dst == NONE);
    let need_src = matchers.iter().any(|m| m.from != NONE);
    let need_dst = matchers.iter().any(|m| m.to != NONE || m.service != NONE);

    // Generation: everything that decides a verdict or is reported.
    let mut h = Xxh3::new();
    h.update(format!("{:?}", policy.settings).as_bytes());
    h.update(format!("{:?}", sets.names).as_bytes());
    feed_entries(&mut h, &c4);
    feed_entries(&mut h, &c6);
    for w in &classes.bits {
        h.update(&w.to_le_bytes());
    }
    for b in &ports.sets {
        b.hash_into(&mut h);
    }
    h.update(format!("{svc_match:?}{services:?}{matchers:?}{rules:?}").as_bytes());
    let generation = h.digest();

    let Classes { bits: class_bits, .. } = classes;
    let mut c = Compiled {
        settings: policy.settings.clone(),
        set_names: sets.names,
        words,
        classes: class_bits,
        class_protected,
        all_protected,
        need_src,
        need_dst,
        stats: CompileStats {
            sets: 0,
            prefixes_v4: c4.len(),
            prefixes_v6: c6.len(),
            lpm4_nodes: v4.nodes(),
            lpm4_entries: (1 << 16) + v4.nodes() * 256,
            lpm6_nodes: v6.nodes(),
            lpm6_leaves: v6.leaves(),
            lpm6_depth: v6.depth(),
            classes: n_classes,
            port_sets: ports.sets.len(),
            rules: rules.len(),
            services: services.len(),
            memory_bytes: 0,
        },
        v4,
        v6,
        ports: ports.sets,
        svc_match,
        services,
        matchers,
        rules,
        generation,
    };
    c.stats.sets = c.set_names.len();
    c.stats.memory_bytes = c.heap_bytes();
    Ok(c)
}

/// The policy equivalent of `--protect TARGET…`: one TCP service per target (destination that
/// /32 or /128, that port or all ports, SYN defence `syn`, every other setting at its
/// rule-file default), no rules, default allow. Each service is named after its target as
/// written by [`Target`]'s `Display` (e.g. `198.18.0.10:80`).
pub fn protect_policy(targets: &[Target], syn: SynMode) -> Policy {
    let services = targets
        .iter()
        .map(|t| {
            let len = if t.addr.is_ipv4() { 32 } else { 128 };
            Service {
                name: t.to_string(),
                dst: AddrRef::Prefix(Prefix { addr: t.addr, len }),
                proto: Proto::Tcp,
                ports: t.port.map(|p| vec![(p, p)]).unwrap_or_default(),
                syn,
                mss: Learnable::Learn,
                wscale: Learnable::Learn,
                sack: Toggle::Learn,
                timestamps: Toggle::Learn,
                idle_embryonic: Duration::from_secs(5),
                idle_established: Duration::from_secs(300),
                idle_closing: Duration::from_secs(10),
                pickup: Duration::ZERO,
                attack_pps: None,
                attack_bps: None,
                http: None,
                span: Span::default(),
            }
        })
        .collect();
    Policy {
        root: "--protect".into(),
        sets: Vec::new(),
        port_sets: Vec::new(),
        services,
        rules: Vec::new(),
        settings: Settings::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn compiled_is_send_and_sync() {
        assert_send_sync::<Compiled>();
    }

    #[test]
    fn classes_inherit_covering_prefixes() {
        let p = |s: &str| {
            let (a, l) = s.split_once('/').unwrap();
            let px = Prefix { addr: a.parse().unwrap(), len: l.parse().unwrap() };
            let (_, a) = left_aligned(&px);
            (a, px.len)
        };
        let (a, l) = p("198.18.0.0/15");
        let (b, m) = p("198.18.5.0/24");
        let mut cl = Classes::new(1);
        let out = classify(vec![(b, m, 1), (a, l, 0), (b, m, 2)], &mut cl).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(cl.get(out[0].2), &[0b001]);
        assert_eq!(cl.get(out[1].2), &[0b111]);
    }

    #[test]
    fn port_sets_as_ranges_or_bitmaps_match_alike() {
        let mut t = PortTable::default();
        let few: PortRanges = vec![(22, 22), (80, 90), (443, 443)];
        let many: PortRanges = (0..20u16).map(|i| (1000 + 10 * i, 1003 + 10 * i)).collect();
        let (a, b) = (t.intern(&few), t.intern(&many));
        assert_eq!(t.intern(&few), a, "interned once");
        assert!(matches!(t.sets[a as usize], PortMatch::Ranges(_)));
        assert!(matches!(t.sets[b as usize], PortMatch::Bits(_)));
        for port in 0..=u16::MAX {
            let want = |r: &PortRanges| r.iter().any(|&(x, y)| x <= port && port <= y);
            assert_eq!(t.sets[a as usize].contains(port), want(&few), "{port}");
            assert_eq!(t.sets[b as usize].contains(port), want(&many), "{port}");
        }
        assert!(t.sets[a as usize].heap_bytes() < 64 && t.sets[b as usize].heap_bytes() == 8192);
        // Classes are interned by content: the same bits give the same class.
        let mut cl = Classes::new(2);
        let x = cl.intern(&[1, 2]).unwrap();
        assert_eq!(cl.intern(&[1, 2]).unwrap(), x);
        assert_ne!(cl.intern(&[2, 1]).unwrap(), x);
        assert_eq!(cl.intern(&[0, 0]).unwrap(), 0);
    }

    #[test]
    fn bps_burst_follows_the_pps_burst_duration() {
        use crate::ast::Rate;
        let r = |value, unit| Spanned { node: Rate { value, unit }, span: Span::default() };
        let (p, b) = buckets(&[r(2000, RateUnit::Pps), r(20_000_000, RateUnit::Bps)], Some(4000), "x:1").unwrap();
        assert_eq!(p, Some(Bucket { rate: 2000, burst: 4000 }));
        // 4000 packets at 2 kpps = 2 s; 2 s of 20 Mbps = 5 MB.
        assert_eq!(b, Some(Bucket { rate: 20_000_000, burst: 5_000_000 }));
        let (p, b) = buckets(&[r(8000, RateUnit::Bps)], Some(3), "x:1").unwrap();
        assert_eq!((p, b), (None, Some(Bucket { rate: 8000, burst: 3 })));
        let (_, b) = buckets(&[r(8000, RateUnit::Bps)], None, "x:1").unwrap();
        assert_eq!(b, Some(Bucket { rate: 8000, burst: 1000 }));
        assert!(buckets(&[r(5, RateUnit::PerSec)], None, "x:1").is_err());
        assert!(buckets(&[], None, "x:1").is_err());
        assert!(buckets(&[r(0, RateUnit::Pps)], None, "x:1").is_err());
    }
}
