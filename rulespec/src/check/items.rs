//! Checking one service and one rule: their matches, ports, limits and settings.

use super::*;

impl Checker<'_> {
    pub(super) fn service(
        &mut self,
        svc: &ServiceDecl,
        p: &Policy,
        names: &HashMap<String, (Kind, Span)>,
    ) -> Option<Service> {
        let mut out = Service {
            name: svc.name.node.clone(),
            dst: AddrRef::Any,
            proto: Proto::Tcp,
            ports: Vec::new(),
            syn: SynMode::Proxy,
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
            span: svc.name.span,
        };
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut has_dst = false;
        let mut tcp_only: Option<Span> = None;
        let errors = |c: &Self| c.diags.iter().filter(|d| d.is_error()).count();
        let before = errors(self);
        for it in &svc.items {
            let key = match &it.node {
                SvcItem::Idle(k, _) => format!("idle {k:?}").to_lowercase(),
                other => format!("{other:?}").split('(').next().unwrap_or("").to_lowercase(),
            };
            if let Some(first) = seen.insert(key.clone(), it.span) {
                let first = self.sources.location(first);
                self.diags.push(
                    Diagnostic::error(it.span, format!("'{key}' given twice in service '{}'", svc.name.node))
                        .expected("each setting once per service")
                        .note(format!("first given at {first}")),
                );
                continue;
            }
            match &it.node {
                SvcItem::Dst(a) => {
                    has_dst = true;
                    self.addr(&Spanned { node: a.clone(), span: it.span }, p, names);
                    out.dst = a.clone();
                }
                SvcItem::Proto(pr) => out.proto = *pr,
                SvcItem::Ports(items) => out.ports = self.ports(items, &p.port_sets, names, false),
                SvcItem::Syn(m) => {
                    tcp_only.get_or_insert(it.span);
                    if let SynMode::Auto(r) = m {
                        if r.unit == RateUnit::Bps || r.value == 0 {
                            self.diags.push(
                                Diagnostic::error(it.span, format!("'syn auto {r}' needs a SYN rate"))
                                    .expected("a SYN rate above 0, in pps or /s (e.g. syn auto 20kpps)"),
                            );
                        }
                    }
                    out.syn = *m;
                }
                SvcItem::Mss(v) => {
                    tcp_only.get_or_insert(it.span);
                    if let Learnable::Value(n) = v {
                        if !(536..=9000).contains(n) {
                            self.diags.push(
                                Diagnostic::error(it.span, format!("MSS {n} out of range"))
                                    .expected("an MSS from 536 to 9000, or learn"),
                            );
                        }
                    }
                    out.mss = *v;
                }
                SvcItem::Wscale(v) => {
                    tcp_only.get_or_insert(it.span);
                    if let Learnable::Value(n) = v {
                        if *n > 14 {
                            self.diags.push(
                                Diagnostic::error(it.span, format!("window scale {n} out of range"))
                                    .expected("a window scale from 0 to 14, or learn"),
                            );
                        }
                    }
                    out.wscale = *v;
                }
                SvcItem::Sack(t) => {
                    tcp_only.get_or_insert(it.span);
                    out.sack = *t;
                }
                SvcItem::Timestamps(t) => {
                    tcp_only.get_or_insert(it.span);
                    out.timestamps = *t;
                }
                SvcItem::Idle(k, d) => {
                    if d.is_zero() || *d > Duration::from_secs(86_400) {
                        self.diags.push(
                            Diagnostic::error(it.span, format!("idle timeout {} out of range", fmt_dur(*d)))
                                .expected("a timeout from 1ms to 24h"),
                        );
                    }
                    match k {
                        IdleKind::Embryonic => out.idle_embryonic = *d,
                        IdleKind::Established => out.idle_established = *d,
                        IdleKind::Closing => out.idle_closing = *d,
                    }
                }
                SvcItem::AttackThreshold(rates) => {
                    let (pps, bps) = self.thresholds(rates);
                    out.attack_pps = pps;
                    out.attack_bps = bps;
                }
                SvcItem::Http(h) => {
                    tcp_only.get_or_insert(it.span);
                    out.http = Some(self.http(h));
                }
                SvcItem::Pickup(d) => {
                    if *d > Duration::from_secs(3600) {
                        self.diags.push(
                            Diagnostic::error(it.span, format!("pickup window {} out of range", fmt_dur(*d)))
                                .expected("a duration from 0s to 1h"),
                        );
                    }
                    out.pickup = *d;
                }
            }
        }
        if !has_dst {
            self.diags.push(
                Diagnostic::error(svc.name.span, format!("service '{}' has no `dst`", svc.name.node))
                    .expected("a line `dst SET|PREFIX|any` inside the service"),
            );
        }
        if let (Proto::Udp, Some(at)) = (out.proto, tcp_only) {
            self.diags.push(
                Diagnostic::error(at, format!("TCP setting in UDP service '{}'", svc.name.node))
                    .expected("proto tcp, or no syn/mss/wscale/sack/timestamps/http lines"),
            );
        }
        let ok = errors(self) == before;
        ok.then_some(out)
    }

    pub(super) fn rule(&mut self, r: &RuleDecl, p: &Policy, names: &HashMap<String, (Kind, Span)>) -> Option<Rule> {
        let before = self.diags.iter().filter(|d| d.is_error()).count();
        let m = &r.matches;
        for a in [&m.from, &m.to].into_iter().flatten() {
            self.addr(a, p, names);
        }
        if let Some(s) = &m.service {
            if !p.services.iter().any(|x| x.name == s.node)
                && names.get(&s.node).is_none_or(|(k, _)| *k != Kind::Service)
            {
                self.unknown(&s.node, s.span, Kind::Service, names, false);
            }
        }
        let dst_ports = m.port.as_ref().map(|l| self.ports(&l.node, &p.port_sets, names, false));
        let src_ports = m.sport.as_ref().map(|l| self.ports(&l.node, &p.port_sets, names, false));
        if let (Some(t), Some(pr)) = (&m.icmp_type, &m.proto) {
            if pr.node != Proto::Icmp {
                self.diags.push(
                    Diagnostic::error(t.span, format!("icmp-type with proto {}", pr.node)).expected("proto icmp"),
                );
            }
        }
        if let (Some(t), Some(pr)) = (&m.icmpv6_type, &m.proto) {
            if pr.node != Proto::Icmpv6 {
                self.diags.push(
                    Diagnostic::error(t.span, format!("icmpv6-type with proto {}", pr.node)).expected("proto icmpv6"),
                );
            }
        }
        // Conditions that exclude each other: the rule can never match (a warning, not an
        // error: the file means something, just not what was written).
        if let Some(pr) = &m.proto {
            let never = |what: &str, sp: Span, c: &mut Self, fix: &str| {
                c.diags.push(
                    Diagnostic::warning(sp, format!("{what} with proto {}: this rule can never match", pr.node))
                        .expected(fix.to_string()),
                );
            };
            if let Some(f) = &m.flags {
                if pr.node != Proto::Tcp {
                    never("TCP flags", f.span, self, "proto tcp, or no flags");
                }
            }
            for pl in [&m.port, &m.sport].into_iter().flatten() {
                if !matches!(pr.node, Proto::Tcp | Proto::Udp) {
                    never("ports", pl.span, self, "proto tcp or udp, or no port");
                }
            }
        }
        let mut limits = Vec::new();
        for l in &r.limits {
            match &l.node {
                LimitSpec::PerSource { rates, burst } | LimitSpec::Aggregate { rates, burst } => {
                    let mut units = Vec::new();
                    for rt in rates {
                        if rt.node.unit == RateUnit::PerSec {
                            self.diags.push(
                                Diagnostic::error(rt.span, format!("'{}' is not a packet or bit rate", rt.node))
                                    .expected("pps or bps units (use new-conns for connections per second)"),
                            );
                        } else if rt.node.value == 0 {
                            self.diags.push(
                                Diagnostic::error(rt.span, "a rate of 0 drops everything")
                                    .expected("a rate above 0 (use deny to drop everything)"),
                            );
                        } else if units.contains(&rt.node.unit) {
                            self.diags.push(
                                Diagnostic::error(rt.span, "two rates of the same unit")
                                    .expected("at most one pps rate and one bps rate"),
                            );
                        }
                        units.push(rt.node.unit);
                    }
                    self.burst(burst);
                }
                LimitSpec::NewConns { rate, burst } => {
                    if rate.node.unit != RateUnit::PerSec || rate.node.value == 0 {
                        self.diags.push(
                            Diagnostic::error(rate.span, format!("new-conns {} is not a connection rate", rate.node))
                                .expected("connections per second above 0, e.g. 20/s"),
                        );
                    }
                    self.burst(burst);
                }
                LimitSpec::Requests { rate, burst } => {
                    if rate.node.unit != RateUnit::PerSec || rate.node.value == 0 {
                        self.diags.push(
                            Diagnostic::error(rate.span, format!("requests {} is not a request rate", rate.node))
                                .expected("requests per second above 0, e.g. 20/s"),
                        );
                    }
                    self.burst(burst);
                    let http = m.service.as_ref().and_then(|s| p.services.iter().find(|x| x.name == s.node));
                    match (&m.service, http) {
                        (None, _) => self.diags.push(
                            Diagnostic::error(l.span, "per-source requests needs the rule to name its service")
                                .expected("`service NAME` in the rule, for a service with an `http` line"),
                        ),
                        (Some(s), Some(svc)) if svc.http.is_none() => self.diags.push(
                            Diagnostic::error(
                                l.span,
                                format!("service '{}' has no `http` line: its requests are not counted", s.node),
                            )
                            .expected(format!(
                                "an `http` line in service '{}' (requests are counted by its HTTP checks)",
                                s.node
                            )),
                        ),
                        _ => {}
                    }
                }
                LimitSpec::MaxConns(n) => {
                    if !(1..=1_000_000).contains(&n.node) {
                        self.diags.push(
                            Diagnostic::error(n.span, format!("max-conns {} out of range", n.node))
                                .expected("a number of connections from 1 to 1M"),
                        );
                    }
                }
            }
            limits.push(l.node.clone());
        }
        if self.diags.iter().filter(|d| d.is_error()).count() != before {
            return None;
        }
        Some(Rule {
            action: r.action.node,
            observe: r.observe,
            matches: r.matches.clone(),
            dst_ports,
            src_ports,
            limits,
            ban: r.ban.as_ref().map(|b| self.ban(b)),
            location: format!("{}:{}", self.sources.name(r.action.span.file), r.action.span.line),
            span: r.action.span,
        })
    }

    /// Resolve an `http` line: ranges, methods, defaults.
    fn http(&mut self, h: &HttpSpec) -> HttpCheck {
        let mut range = |v: &Option<Spanned<u64>>, lo: u64, hi: u64, def: u32, what: &str| -> u32 {
            match v {
                None => def,
                Some(v) if (lo..=hi).contains(&v.node) => v.node as u32,
                Some(v) => {
                    self.diags.push(
                        Diagnostic::error(v.span, format!("{what} {} out of range", v.node))
                            .expected(format!("{what} from {lo} to {hi}")),
                    );
                    def
                }
            }
        };
        let bytes = range(&h.max_header_bytes, 256, 1 << 20, HttpCheck::DEFAULT_HEADER_BYTES, "max-header-bytes");
        let line = range(&h.max_header_line, 64, 1 << 20, HttpCheck::DEFAULT_HEADER_LINE.min(bytes), "max-header-line");
        let headers = range(&h.max_headers, 1, 10_000, HttpCheck::DEFAULT_HEADERS, "max-headers");
        if let Some(l) = h.max_header_line.as_ref().filter(|_| line > bytes) {
            self.diags.push(
                Diagnostic::warning(l.span, format!("max-header-line {line} is above max-header-bytes {bytes}"))
                    .expected("a line limit at most the head limit (the head limit decides first)"),
            );
        }
        let mut methods: Vec<String> = Vec::new();
        for m in h.methods.iter().flatten() {
            let token = m.node.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token || m.node.len() > HttpCheck::MAX_METHOD_LEN {
                self.diags.push(Diagnostic::error(m.span, format!("'{}' is not a request method", m.node)).expected(
                    format!("a method name (a token of at most {} characters), e.g. GET", HttpCheck::MAX_METHOD_LEN),
                ));
            } else if methods.contains(&m.node) {
                self.diags.push(
                    Diagnostic::warning(m.span, format!("method {} listed twice", m.node)).expected("each method once"),
                );
            } else {
                if m.node.bytes().any(|b| b.is_ascii_lowercase()) {
                    self.diags.push(
                        Diagnostic::warning(m.span, format!("method '{}' has lower-case letters", m.node))
                            .expected("methods as clients send them: they are case-sensitive (GET, not get)"),
                    );
                }
                methods.push(m.node.clone());
            }
        }
        if methods.len() > HttpCheck::MAX_METHODS {
            if let Some(m) = h.methods.as_ref().and_then(|v| v.get(HttpCheck::MAX_METHODS)) {
                self.diags.push(
                    Diagnostic::error(m.span, format!("{} methods", methods.len()))
                        .expected(format!("at most {} methods", HttpCheck::MAX_METHODS)),
                );
            }
        }
        HttpCheck {
            max_header_bytes: bytes,
            max_header_line: line,
            max_headers: headers,
            methods,
            ban: h.ban.as_ref().map(|b| self.ban(b)),
        }
    }

    /// Resolve a `ban`: 1s–7d, 1–1000 violations.
    fn ban(&mut self, b: &Spanned<BanSpec>) -> Ban {
        let d = b.node.duration;
        if d < Duration::from_secs(1) || d > Duration::from_secs(7 * 86_400) {
            self.diags.push(
                Diagnostic::error(b.span, format!("ban {} out of range", fmt_dur(d)))
                    .expected("a ban from 1s to 7d (e.g. ban 10m)"),
            );
        }
        let after = b.node.after.unwrap_or(1);
        if !(1..=1000).contains(&after) {
            self.diags.push(
                Diagnostic::error(b.span, format!("ban after {after} violations out of range"))
                    .expected("after 1 to 1000 violations"),
            );
        }
        Ban { duration: d, after: after.clamp(1, 1000) as u32 }
    }

    pub(super) fn burst(&mut self, b: &Option<Spanned<u64>>) {
        if let Some(b) = b {
            if b.node == 0 {
                self.diags.push(
                    Diagnostic::error(b.span, "burst 0 out of range")
                        .expected("a burst of at least 1 (or no burst: one second of the rate)"),
                );
            }
        }
    }
}
