//! Semantic checks: includes, names, list files, ranges, shadowed rules → a checked [`Policy`].

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use crate::ast::*;
use crate::diag::{render_all, Diagnostic, SourceMap, Span, Spanned};
use crate::lexer::LinePos;
use crate::parser::{parse, prefix};
use crate::source::{resolve, LoadError, Source};

/// Deepest include nesting accepted.
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// A named set of prefixes, deduplicated and sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixSet {
    /// The name.
    pub name: String,
    /// The prefixes.
    pub prefixes: Vec<Prefix>,
    /// Where it was defined.
    pub span: Span,
}

impl PrefixSet {
    /// Number of IPv4 prefixes.
    pub fn v4(&self) -> usize {
        self.prefixes.iter().filter(|p| p.addr.is_ipv4()).count()
    }

    /// Number of IPv6 prefixes.
    pub fn v6(&self) -> usize {
        self.prefixes.len() - self.v4()
    }
}

/// Inclusive port ranges, sorted and merged.
pub type PortRanges = Vec<(u16, u16)>;

/// A named port set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSet {
    /// The name.
    pub name: String,
    /// The ports.
    pub ranges: PortRanges,
    /// Where it was defined.
    pub span: Span,
}

/// A checked service with every default filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The name.
    pub name: String,
    /// The protected destinations.
    pub dst: AddrRef,
    /// TCP or UDP.
    pub proto: Proto,
    /// The protected ports (all when empty).
    pub ports: PortRanges,
    /// SYN defence.
    pub syn: SynMode,
    /// MSS to advertise.
    pub mss: Learnable,
    /// Window scale to advertise.
    pub wscale: Learnable,
    /// SACK-permitted.
    pub sack: Toggle,
    /// Timestamps.
    pub timestamps: Toggle,
    /// Idle timeout while the handshake is in progress.
    pub idle_embryonic: Duration,
    /// Idle timeout once established.
    pub idle_established: Duration,
    /// Idle timeout after FIN/RST.
    pub idle_closing: Duration,
    /// Mid-stream pickup window after start.
    pub pickup: Duration,
    /// Where it was defined.
    pub span: Span,
}

/// A checked rule. Names in `matches` are known to exist.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// What it does.
    pub action: Action,
    /// Count would-drops only.
    pub observe: bool,
    /// The conditions as written.
    pub matches: Match,
    /// Resolved destination ports (`None`: any).
    pub dst_ports: Option<PortRanges>,
    /// Resolved source ports (`None`: any).
    pub src_ports: Option<PortRanges>,
    /// The limits of a `limit` rule.
    pub limits: Vec<LimitSpec>,
    /// `file:line` of the rule, for counters and logs.
    pub location: String,
    /// Where the rule starts.
    pub span: Span,
}

/// Global settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// enforce or observe.
    pub mode: Mode,
    /// Session-table capacity.
    pub sessions: u64,
    /// File holding the cookie secret, if any.
    pub cookie_secret: Option<String>,
    /// Mid-stream pickup window after start.
    pub learning_window: Duration,
    /// Action when no rule matches.
    pub default: Action,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            sessions: 1 << 20,
            cookie_secret: None,
            learning_window: Duration::ZERO,
            default: Action::Allow,
        }
    }
}

/// A policy with every name resolved and every value checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The top file's name.
    pub root: String,
    /// Prefix sets in definition order.
    pub sets: Vec<PrefixSet>,
    /// Port sets in definition order.
    pub port_sets: Vec<PortSet>,
    /// Services in definition order.
    pub services: Vec<Service>,
    /// Rules in evaluation order.
    pub rules: Vec<Rule>,
    /// Settings.
    pub settings: Settings,
}

/// The outcome of [`check`]: every file read, every diagnostic, and the policy when there was no
/// error.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The files read (rule files and list files).
    pub sources: SourceMap,
    /// Errors and warnings, in the order found.
    pub diagnostics: Vec<Diagnostic>,
    /// The policy, when there are no errors.
    pub policy: Option<Policy>,
}

impl Checked {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }

    /// All diagnostics rendered, separated by blank lines.
    pub fn render(&self) -> String {
        render_all(&self.diagnostics, &self.sources)
    }
}

/// Read `root` and everything it includes through `source`, check it, and build the policy.
pub fn check(root: &str, source: &dyn Source) -> Checked {
    let mut c = Checker { src: source, sources: SourceMap::new(), diags: Vec::new(), loaded: HashSet::new() };
    let mut stmts = Vec::new();
    let mut stack = Vec::new();
    c.load(root, None, &mut stack, &mut stmts);
    let policy = c.analyse(root, &stmts);
    let policy = if c.diags.iter().any(Diagnostic::is_error) { None } else { Some(policy) };
    // Report in file order, then position, so that a file's problems read top to bottom.
    c.diags.sort_by_key(|d| d.span.map(|s| (s.file, s.start)));
    Checked { sources: c.sources, diagnostics: c.diags, policy }
}

struct Checker<'a> {
    src: &'a dyn Source,
    sources: SourceMap,
    diags: Vec<Diagnostic>,
    loaded: HashSet<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Set,
    Ports,
    Service,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Set => "prefix set",
            Kind::Ports => "port set",
            Kind::Service => "service",
        }
    }
}

fn merge(mut v: PortRanges) -> PortRanges {
    v.sort_unstable();
    let mut out: PortRanges = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn covers(outer: &PortRanges, inner: &PortRanges) -> bool {
    inner.iter().all(|&(a, b)| outer.iter().any(|&(x, y)| x <= a && b <= y))
}

fn fmt_ports(r: &PortRanges) -> String {
    if r.is_empty() {
        return "any".into();
    }
    r.iter().map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect::<Vec<_>>().join(",")
}

fn fmt_dur(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn fmt_bytes(n: u64) -> String {
    const U: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

impl Checker<'_> {
    fn load(&mut self, path: &str, at: Option<Span>, stack: &mut Vec<String>, out: &mut Vec<Spanned<Stmt>>) {
        if let Some(pos) = stack.iter().position(|p| p == path) {
            let chain = stack[pos..].iter().chain(std::iter::once(&path.to_string())).cloned().collect::<Vec<_>>();
            if let Some(at) = at {
                self.diags.push(
                    Diagnostic::error(at, format!("include cycle: '{path}' is already being read"))
                        .expected("a file that does not include itself")
                        .note(format!("cycle: {}", chain.join(" -> "))),
                );
            }
            return;
        }
        if stack.len() >= MAX_INCLUDE_DEPTH {
            if let Some(at) = at {
                self.diags.push(
                    Diagnostic::error(at, "includes nested too deeply")
                        .expected(format!("at most {MAX_INCLUDE_DEPTH} levels of include")),
                );
            }
            return;
        }
        if !self.loaded.insert(path.to_string()) {
            if let Some(at) = at {
                self.diags.push(Diagnostic::warning(at, format!("'{path}' is already included; ignored here")));
            }
            return;
        }
        let text = match self.src.read(path) {
            Ok(t) => t,
            Err(e) => {
                let msg = match e {
                    LoadError::NotFound => format!("cannot read '{path}': no such file"),
                    LoadError::Unreadable(why) => format!("cannot read '{path}': {why}"),
                };
                self.diags.push(match at {
                    Some(at) => Diagnostic::error(at, msg)
                        .expected("an existing rule file (the path is relative to the including file)"),
                    None => Diagnostic {
                        severity: crate::Severity::Error,
                        span: None,
                        message: msg,
                        expected: None,
                        notes: vec![],
                    },
                });
                return;
            }
        };
        let id = self.sources.add(path, text.clone());
        let (ast, diags) = parse(id, &text);
        self.diags.extend(diags);
        stack.push(path.to_string());
        for s in ast.stmts {
            if let Stmt::Include(p) = &s.node {
                let target = resolve(path, &p.node);
                self.load(&target, Some(p.span), stack, out);
            } else {
                out.push(s);
            }
        }
        stack.pop();
    }

    fn file_of(&self, span: Span) -> String {
        self.sources.name(span.file).to_string()
    }

    fn load_list(&mut self, at: &Spanned<String>) -> Vec<Prefix> {
        let path = resolve(&self.file_of(at.span), &at.node);
        let text = match self.src.read(&path) {
            Ok(t) => t,
            Err(e) => {
                self.diags.push(
                    Diagnostic::error(at.span, format!("cannot read list file '{path}': {e}"))
                        .expected("a file of prefixes, one per line (the path is relative to this rule file)"),
                );
                return Vec::new();
            }
        };
        let id = self.sources.add(path, text.clone());
        let mut out = Vec::new();
        let mut start = 0;
        for (n, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let pos = LinePos { file: id, line: u32::try_from(n + 1).unwrap_or(u32::MAX), start };
            start += raw.len() + 1;
            let content = line.split('#').next().unwrap_or("");
            let trimmed = content.trim();
            if trimmed.is_empty() {
                continue;
            }
            let a = content.len() - content.trim_start().len();
            let span = pos.span(line, a, a + trimmed.len());
            if trimmed.contains(char::is_whitespace) {
                self.diags
                    .push(Diagnostic::error(span, "more than one prefix on a line").expected("one prefix per line"));
                continue;
            }
            match prefix(trimmed, span, &mut self.diags) {
                Ok(p) => out.push(p),
                Err(d) => self.diags.push(d),
            }
        }
        out
    }

    fn analyse(&mut self, root: &str, stmts: &[Spanned<Stmt>]) -> Policy {
        // Pass 1: names.
        let mut names: HashMap<String, (Kind, Span)> = HashMap::new();
        for s in stmts {
            let (n, k) = match &s.node {
                Stmt::Set { name, .. } => (name, Kind::Set),
                Stmt::Ports { name, .. } => (name, Kind::Ports),
                Stmt::Service(svc) => (&svc.name, Kind::Service),
                _ => continue,
            };
            if let Some((_, first)) = names.get(&n.node) {
                let first = self.sources.location(*first);
                self.diags.push(
                    Diagnostic::error(n.span, format!("'{}' is defined twice", n.node))
                        .expected("a name not used before")
                        .note(format!("first defined at {first}")),
                );
            } else {
                names.insert(n.node.clone(), (k, n.span));
            }
        }
        let mut p = Policy {
            root: root.to_string(),
            sets: vec![],
            port_sets: vec![],
            services: vec![],
            rules: vec![],
            settings: Settings::default(),
        };
        let mut seen_settings: HashMap<&'static str, Span> = HashMap::new();
        for s in stmts {
            match &s.node {
                Stmt::Include(_) => {}
                Stmt::Set { name, body } => {
                    let mut prefixes = match body {
                        SetBody::File(f) => self.load_list(f),
                        SetBody::Items(items) => {
                            let mut v = Vec::new();
                            for it in items {
                                match &it.node {
                                    SetItem::Prefix(px) => v.push(*px),
                                    SetItem::Name(n) => match p.sets.iter().find(|s| &s.name == n) {
                                        Some(other) => v.extend(other.prefixes.iter().copied()),
                                        None => self.unknown(n, it.span, Kind::Set, &names, true),
                                    },
                                }
                            }
                            v
                        }
                    };
                    prefixes.sort_unstable();
                    prefixes.dedup();
                    if names.get(&name.node).is_some_and(|(_, sp)| *sp == name.span) {
                        p.sets.push(PrefixSet { name: name.node.clone(), prefixes, span: name.span });
                    }
                }
                Stmt::Ports { name, items } => {
                    let ranges = self.ports(items, &p.port_sets, &names, true);
                    if names.get(&name.node).is_some_and(|(_, sp)| *sp == name.span) {
                        p.port_sets.push(PortSet { name: name.node.clone(), ranges, span: name.span });
                    }
                }
                Stmt::Service(_) => {}
                Stmt::Rule(_) => {}
                Stmt::Default(a) => {
                    if let Some(first) = seen_settings.insert("default", a.span) {
                        self.twice("default", a.span, first);
                    }
                    p.settings.default = a.node;
                }
                Stmt::Setting(set) => {
                    let kw = set.node.keyword();
                    if let Some(first) = seen_settings.insert(kw, set.span) {
                        self.twice(kw, set.span, first);
                    }
                    match &set.node {
                        Setting::Mode(m) => p.settings.mode = *m,
                        Setting::Sessions(n) => {
                            if !(1_000..=256_000_000).contains(n) {
                                self.diags.push(
                                    Diagnostic::error(set.span, format!("session-table capacity {n} out of range"))
                                        .expected("a capacity from 1k to 256M"),
                                );
                            }
                            p.settings.sessions = *n;
                        }
                        Setting::CookieSecret(f) => {
                            p.settings.cookie_secret = Some(resolve(&self.file_of(set.span), f));
                        }
                        Setting::LearningWindow(d) => {
                            if *d > Duration::from_secs(3600) {
                                self.diags.push(
                                    Diagnostic::error(
                                        set.span,
                                        format!("learning window {} out of range", fmt_dur(*d)),
                                    )
                                    .expected("a duration from 0s to 1h"),
                                );
                            }
                            p.settings.learning_window = *d;
                        }
                    }
                }
            }
        }
        for s in stmts {
            if let Stmt::Service(svc) = &s.node {
                if let Some(checked) = self.service(svc, &p, &names) {
                    if names.get(&svc.name.node).is_some_and(|(_, sp)| *sp == svc.name.span) {
                        p.services.push(checked);
                    }
                }
            }
        }
        for s in stmts {
            if let Stmt::Rule(r) = &s.node {
                if let Some(rule) = self.rule(r, &p, &names) {
                    p.rules.push(rule);
                }
            }
        }
        self.shadowing(&p.rules);
        p
    }

    fn twice(&mut self, kw: &str, at: Span, first: Span) {
        let first = self.sources.location(first);
        self.diags.push(
            Diagnostic::error(at, format!("'{kw}' is set twice"))
                .expected(format!("one '{kw}' in the whole policy"))
                .note(format!("first set at {first}")),
        );
    }

    fn unknown(&mut self, n: &str, at: Span, want: Kind, names: &HashMap<String, (Kind, Span)>, above: bool) {
        let d = match names.get(n) {
            Some((k, _)) if *k != want => {
                Diagnostic::error(at, format!("'{n}' is a {}, not a {}", k.word(), want.word()))
            }
            Some(_) if above => Diagnostic::error(at, format!("{} '{n}' is used before it is defined", want.word())),
            _ => Diagnostic::error(at, format!("unknown {} '{n}'", want.word())),
        };
        let expected = match want {
            Kind::Set => "the name of a `set` defined above or in an included file, a prefix, or any",
            Kind::Ports => "the name of a `ports` set defined above, a port, or a range",
            Kind::Service => "the name of a `service`",
        };
        self.diags.push(d.expected(expected));
    }

    fn ports(
        &mut self,
        items: &[Spanned<PortItem>],
        sets: &[PortSet],
        names: &HashMap<String, (Kind, Span)>,
        above: bool,
    ) -> PortRanges {
        let mut v = Vec::new();
        for it in items {
            match &it.node {
                PortItem::Port(x) => v.push((*x, *x)),
                PortItem::Range(a, b) => v.push((*a, *b)),
                PortItem::Name(n) => match sets.iter().find(|s| &s.name == n) {
                    Some(s) => v.extend(s.ranges.iter().copied()),
                    None => self.unknown(n, it.span, Kind::Ports, names, above),
                },
            }
        }
        merge(v)
    }

    fn addr(&mut self, a: &Spanned<AddrRef>, p: &Policy, names: &HashMap<String, (Kind, Span)>) {
        if let AddrRef::Name(n) = &a.node {
            if !p.sets.iter().any(|s| &s.name == n) {
                self.unknown(n, a.span, Kind::Set, names, false);
            }
        }
    }

    fn service(&mut self, svc: &ServiceDecl, p: &Policy, names: &HashMap<String, (Kind, Span)>) -> Option<Service> {
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
            span: svc.name.span,
        };
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut has_dst = false;
        let mut tcp_only: Option<Span> = None;
        let before = self.diags.len();
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
                    .expected("proto tcp, or no syn/mss/wscale/sack/timestamps lines"),
            );
        }
        (self.diags.len() == before).then_some(out)
    }

    fn rule(&mut self, r: &RuleDecl, p: &Policy, names: &HashMap<String, (Kind, Span)>) -> Option<Rule> {
        let before = self.diags.iter().filter(|d| d.is_error()).count();
        let m = &r.matches;
        for a in [&m.from, &m.to].into_iter().flatten() {
            self.addr(a, p, names);
        }
        if let Some(s) = &m.service {
            if !p.services.iter().any(|x| x.name == s.node)
                && names.get(&s.node).map_or(true, |(k, _)| *k != Kind::Service)
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
            location: format!("{}:{}", self.sources.name(r.action.span.file), r.action.span.line),
            span: r.action.span,
        })
    }

    fn burst(&mut self, b: &Option<Spanned<u64>>) {
        if let Some(b) = b {
            if b.node == 0 {
                self.diags.push(
                    Diagnostic::error(b.span, "burst 0 out of range")
                        .expected("a burst of at least 1 (or no burst: one second of the rate)"),
                );
            }
        }
    }

    fn shadowing(&mut self, rules: &[Rule]) {
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

pub(crate) fn describe_match(m: &Match, r: &Rule) -> String {
    let mut s = Vec::new();
    if let Some(x) = &m.from {
        s.push(format!("from {}", x.node));
    }
    if let Some(x) = &m.to {
        s.push(format!("to {}", x.node));
    }
    if let Some(x) = &m.service {
        s.push(format!("service {}", x.node));
    }
    if let Some(x) = &m.proto {
        s.push(format!("proto {}", x.node));
    }
    if let Some(x) = &r.dst_ports {
        s.push(format!("port {}", fmt_ports(x)));
    }
    if let Some(x) = &r.src_ports {
        s.push(format!("sport {}", fmt_ports(x)));
    }
    if let Some(x) = &m.flags {
        let mut parts = Vec::new();
        for (n, b) in flag::NAMES {
            if x.node.set & b != 0 {
                parts.push(n.to_string());
            }
            if x.node.clear & b != 0 {
                parts.push(format!("!{n}"));
            }
        }
        s.push(format!("flags {}", parts.join("+")));
    }
    if let Some(x) = &m.len {
        s.push(format!("len {}-{}", x.node.0, x.node.1));
    }
    if let Some(x) = &m.frag {
        s.push(format!("frag {}", format!("{:?}", x.node).to_lowercase()));
    }
    if let Some(x) = &m.icmp_type {
        s.push(format!("icmp-type {}", x.node));
    }
    if let Some(x) = &m.icmpv6_type {
        s.push(format!("icmpv6-type {}", x.node));
    }
    if s.is_empty() {
        "everything".into()
    } else {
        s.join(" ")
    }
}

pub(crate) fn describe_limit(l: &LimitSpec) -> String {
    let rates = |r: &Vec<Spanned<Rate>>| r.iter().map(|x| x.node.to_string()).collect::<Vec<_>>().join(" ");
    let burst = |b: &Option<Spanned<u64>>| b.as_ref().map(|b| format!(" burst {}", b.node)).unwrap_or_default();
    match l {
        LimitSpec::PerSource { rates: r, burst: b } => format!("per-source {}{}", rates(r), burst(b)),
        LimitSpec::Aggregate { rates: r, burst: b } => format!("aggregate {}{}", rates(r), burst(b)),
        LimitSpec::NewConns { rate, burst: b } => format!("new-conns {}{}", rate.node, burst(b)),
        LimitSpec::MaxConns(n) => format!("max-conns {}", n.node),
    }
}

/// Per-source limiter table size assumed by the memory estimate (entries per rule).
pub const PER_SOURCE_SLOTS: u64 = 65_536;

impl Policy {
    /// A rough estimate of the memory the compiled policy and session table need, in bytes:
    /// (prefix tables, port bitsets, per-source limiter tables, session table).
    pub fn estimated_memory(&self) -> (u64, u64, u64, u64) {
        let prefixes: u64 = self
            .sets
            .iter()
            .flat_map(|s| &s.prefixes)
            .map(|p| match p.addr {
                IpAddr::V4(_) => 16,
                IpAddr::V6(_) => 40,
            })
            .sum();
        let bitsets = 8192 * (self.port_sets.len() + self.services.len() + self.rules.len()) as u64;
        let limiters: u64 = self
            .rules
            .iter()
            .flat_map(|r| &r.limits)
            .map(|l| match l {
                LimitSpec::Aggregate { .. } => 64,
                _ => PER_SOURCE_SLOTS * 32,
            })
            .sum();
        let sessions = self.settings.sessions.saturating_mul(64);
        (prefixes, bitsets, limiters, sessions)
    }

    /// What `scrubber check FILE` prints: settings, sets with prefix counts, port sets, services,
    /// rules in order, and estimated memory.
    pub fn summary(&self) -> String {
        let mut o = String::new();
        let st = &self.settings;
        let mode = if st.mode == Mode::Enforce { "enforce" } else { "observe" };
        let _ = writeln!(o, "policy {}: mode {mode}, default {}", self.root, st.default);
        let _ = writeln!(
            o,
            "settings: sessions {}, learning-window {}, cookie-secret {}",
            st.sessions,
            fmt_dur(st.learning_window),
            st.cookie_secret.as_deref().unwrap_or("(generated)")
        );
        let _ = writeln!(o, "sets ({}):", self.sets.len());
        for s in &self.sets {
            let _ = writeln!(o, "  {:<20} {} prefixes ({} IPv4, {} IPv6)", s.name, s.prefixes.len(), s.v4(), s.v6());
        }
        let _ = writeln!(o, "port sets ({}):", self.port_sets.len());
        for s in &self.port_sets {
            let n: u32 = s.ranges.iter().map(|&(a, b)| u32::from(b) - u32::from(a) + 1).sum();
            let _ = writeln!(o, "  {:<20} {} ({n} ports)", s.name, fmt_ports(&s.ranges));
        }
        let _ = writeln!(o, "services ({}):", self.services.len());
        for s in &self.services {
            let syn = match s.syn {
                SynMode::Proxy => "proxy".to_string(),
                SynMode::Track => "track".to_string(),
                SynMode::Auto(r) => format!("auto {r}"),
            };
            let l = |v: Learnable| match v {
                Learnable::Value(n) => n.to_string(),
                Learnable::Learn => "learn".into(),
            };
            let t = |v: Toggle| format!("{v:?}").to_lowercase();
            let _ = write!(o, "  {:<20} dst {} {} ports {}", s.name, s.dst, s.proto, fmt_ports(&s.ports));
            if s.proto == Proto::Tcp {
                let _ = write!(
                    o,
                    "; syn {syn}, mss {}, wscale {}, sack {}, timestamps {}",
                    l(s.mss),
                    l(s.wscale),
                    t(s.sack),
                    t(s.timestamps)
                );
            }
            let _ = writeln!(
                o,
                "; idle {}/{}/{}, pickup {}",
                fmt_dur(s.idle_embryonic),
                fmt_dur(s.idle_established),
                fmt_dur(s.idle_closing),
                fmt_dur(s.pickup)
            );
        }
        let _ = writeln!(o, "rules ({}):", self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let obs = if r.observe { " observe" } else { "" };
            let mut line = format!("{}{obs} {}", r.action, describe_match(&r.matches, r));
            for l in &r.limits {
                line.push_str(" ; ");
                line.push_str(&describe_limit(l));
            }
            let _ = writeln!(o, "  {:>3}. {line}  [{}]", i + 1, r.location);
        }
        let _ = writeln!(o, "  default {}", st.default);
        let (px, bits, lim, sess) = self.estimated_memory();
        let total = px + bits + lim + sess;
        let _ = writeln!(
            o,
            "estimated memory: {} (session table {}, prefixes {}, port bitsets {}, limiters {})",
            fmt_bytes(total),
            fmt_bytes(sess),
            fmt_bytes(px),
            fmt_bytes(bits),
            fmt_bytes(lim)
        );
        o
    }
}
