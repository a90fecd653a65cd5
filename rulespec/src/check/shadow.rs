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

    pub(super) fn shadowing(&mut self, rules: &[Rule]) {
        for (j, later) in rules.iter().enumerate() {
            if let Some(earlier) = rules[..j].iter().find(|e| !e.observe && broader(e, later)) {
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
