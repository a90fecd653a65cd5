//! Rules an earlier rule shadows: they can never match.

use super::*;

impl Checker<'_> {
    /// Advice once a file is otherwise valid: a SYN-proxied service without `ports` proxies
    /// every port, so closed ports look open from outside.
    pub(super) fn all_ports_proxied(&mut self, services: &[Service]) {
        if self.diags.iter().any(|d| d.is_error()) {
            return;
        }
        for s in services.iter().filter(|s| s.proto == Proto::Tcp && s.syn != SynMode::Track && s.ports.is_empty()) {
            self.diags.push(
                Diagnostic::warning(s.span, format!("service '{}' proxies every TCP port of its destinations", s.name))
                    .expected("a `ports` line listing the ports the servers listen on")
                    .note(
                        "the SYN proxy answers SYNs to closed ports too: such connections open, then the backend \
                         resets them, and every port looks open from outside",
                    ),
            );
        }
    }

    /// Each rule covered by an earlier one gets a warning naming the first such rule. Near-linear:
    /// an earlier rule can cover a later one only if its `from` is absent, the same set, or a
    /// prefix containing the later rule's prefix, so earlier rules are indexed by `from` and only
    /// those candidates are compared (at most [`MAX_CANDIDATES`] per rule: beyond that the
    /// analysis of that rule is cut short, which can only miss a warning).
    pub(super) fn shadowing(&mut self, rules: &[Rule]) {
        let mut idx = FromIndex::default();
        let mut cand = Vec::new();
        for (j, later) in rules.iter().enumerate() {
            idx.candidates(&later.matches.from, &mut cand);
            let shadow = cand.iter().copied().filter(|&i| !rules[i].observe && broader(&rules[i], later)).min();
            if let Some(i) = shadow {
                let earlier = &rules[i];
                self.diags.push(
                    Diagnostic::warning(later.span, "rule can never match: an earlier rule matches everything it does")
                        .expected("a rule that is not covered by an earlier allow, deny or limit rule")
                        .note(format!(
                            "shadowed by the `{}` rule at {}",
                            earlier.action,
                            self.sources.location(earlier.span)
                        )),
                );
            }
            idx.add(j, &later.matches.from);
        }
    }
}

/// Candidates compared per rule at most.
const MAX_CANDIDATES: usize = 4096;

/// Earlier rules by their `from`.
#[derive(Default)]
struct FromIndex {
    any: Vec<usize>,
    sets: HashMap<String, Vec<usize>>,
    /// (IPv6, masked address, length) → rules.
    prefixes: HashMap<(bool, u128, u8), Vec<usize>>,
    /// Lengths present per family, to look up only those.
    lens: [std::collections::BTreeSet<u8>; 2],
}

fn key(p: &Prefix) -> (bool, u128, u8) {
    match p.addr {
        std::net::IpAddr::V4(a) => (false, u128::from(u32::from(a)), p.len),
        std::net::IpAddr::V6(a) => (true, u128::from(a), p.len),
    }
}

impl FromIndex {
    fn add(&mut self, i: usize, from: &Option<Spanned<AddrRef>>) {
        match from.as_ref().map(|f| &f.node) {
            None | Some(AddrRef::Any) => self.any.push(i),
            Some(AddrRef::Name(n)) => self.sets.entry(n.clone()).or_default().push(i),
            Some(AddrRef::Prefix(p)) => {
                let k = key(p);
                self.lens[usize::from(k.0)].insert(k.2);
                self.prefixes.entry(k).or_default().push(i);
            }
        }
    }

    /// The earlier rules that might cover a rule with this `from`, in `out`.
    fn candidates(&self, from: &Option<Spanned<AddrRef>>, out: &mut Vec<usize>) {
        out.clear();
        let push = |v: &[usize], out: &mut Vec<usize>| {
            let room = MAX_CANDIDATES.saturating_sub(out.len());
            out.extend(v.iter().take(room));
        };
        push(&self.any, out);
        match from.as_ref().map(|f| &f.node) {
            None | Some(AddrRef::Any) => {}
            Some(AddrRef::Name(n)) => {
                if let Some(v) = self.sets.get(n) {
                    push(v, out);
                }
            }
            Some(AddrRef::Prefix(p)) => {
                let (v6, a, len) = key(p);
                let max = if v6 { 128 } else { 32 };
                for &l in self.lens[usize::from(v6)].range(..=len) {
                    let masked = if l == 0 {
                        0
                    } else {
                        let host = max - u32::from(l);
                        if host >= 128 {
                            0
                        } else {
                            a & !((1u128 << host) - 1)
                        }
                    };
                    if let Some(v) = self.prefixes.get(&(v6, masked, l)) {
                        push(v, out);
                    }
                }
            }
        }
    }
}

fn addr_covers(e: &Option<Spanned<AddrRef>>, l: &Option<Spanned<AddrRef>>) -> bool {
    let e = e.as_ref().map(|x| &x.node).filter(|x| **x != AddrRef::Any);
    let l = l.as_ref().map(|x| &x.node).filter(|x| **x != AddrRef::Any);
    match (e, l) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(AddrRef::Prefix(a)), Some(AddrRef::Prefix(b))) => a.contains(b),
        (Some(a), Some(b)) => a == b,
    }
}

fn eq_or_none<T: PartialEq>(e: &Option<Spanned<T>>, l: &Option<Spanned<T>>) -> bool {
    match (e, l) {
        (None, _) => true,
        (Some(a), Some(b)) => a.node == b.node,
        _ => false,
    }
}

fn ports_cover(e: &Option<PortRanges>, l: &Option<PortRanges>) -> bool {
    match (e, l) {
        (None, _) => true,
        (Some(a), Some(b)) => covers(a, b),
        _ => false,
    }
}

/// Whether the earlier rule `e` matches every packet the later rule `l` matches.
fn broader(e: &Rule, l: &Rule) -> bool {
    let (em, lm) = (&e.matches, &l.matches);
    addr_covers(&em.from, &lm.from)
        && addr_covers(&em.to, &lm.to)
        && eq_or_none(&em.proto, &lm.proto)
        && ports_cover(&e.dst_ports, &l.dst_ports)
        && ports_cover(&e.src_ports, &l.src_ports)
        && match (&em.flags, &lm.flags) {
            (None, _) => true,
            (Some(a), Some(b)) => a.node.set & !b.node.set == 0 && a.node.clear & !b.node.clear == 0,
            _ => false,
        }
        && match (&em.len, &lm.len) {
            (None, _) => true,
            (Some(a), Some(b)) => a.node.0 <= b.node.0 && b.node.1 <= a.node.1,
            _ => false,
        }
        && eq_or_none(&em.frag, &lm.frag)
        && eq_or_none(&em.icmp_type, &lm.icmp_type)
        && eq_or_none(&em.icmpv6_type, &lm.icmpv6_type)
        && eq_or_none(&em.service, &lm.service)
}
