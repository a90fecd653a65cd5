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

mod items;
mod shadow;
mod summary;

pub(crate) use summary::{describe_limit, describe_match};

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
    /// `attack-threshold` of this service (frames per second), if given.
    pub attack_pps: Option<u64>,
    /// `attack-threshold` of this service (bits per second), if given.
    pub attack_bps: Option<u64>,
    /// `http`: request-head checks, if given.
    pub http: Option<HttpCheck>,
    /// Where it was defined.
    pub span: Span,
}

/// The `http` checks of a service, every default filled in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpCheck {
    /// Most bytes of one request head (request line, header lines and the blank line).
    pub max_header_bytes: u32,
    /// Most bytes of one line of the head, its line ending included.
    pub max_header_line: u32,
    /// Most header fields in one request.
    pub max_headers: u32,
    /// The methods allowed; empty: any method (a token, RFC 9110).
    pub methods: Vec<String>,
    /// Ban sources whose requests break the checks.
    pub ban: Option<Ban>,
}

impl HttpCheck {
    /// Default `max-header-bytes`: 16 KiB.
    pub const DEFAULT_HEADER_BYTES: u32 = 16 << 10;
    /// Default `max-header-line`: 8 KiB.
    pub const DEFAULT_HEADER_LINE: u32 = 8 << 10;
    /// Default `max-headers`: 100 (Apache's `LimitRequestFields`).
    pub const DEFAULT_HEADERS: u32 = 100;
    /// Longest method name accepted in `methods`.
    pub const MAX_METHOD_LEN: usize = 16;
    /// Most methods in `methods`.
    pub const MAX_METHODS: usize = 32;
}

/// A ban: after `after` violations within `duration`, the source is banned for `duration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ban {
    /// How long a ban lasts (and the window violations are counted in).
    pub duration: Duration,
    /// Violations that make a ban.
    pub after: u32,
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
    /// `ban` of a `limit` rule.
    pub ban: Option<Ban>,
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
    /// `attack-threshold`: frames per second of one attack class that make an attack.
    pub attack_pps: Option<u64>,
    /// `attack-threshold`: bits per second of one attack class that make an attack.
    pub attack_bps: Option<u64>,
    /// `attack-quiet`: quiet time that ends an attack.
    pub attack_quiet: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            sessions: 1 << 20,
            cookie_secret: None,
            learning_window: Duration::ZERO,
            default: Action::Allow,
            attack_pps: None,
            attack_bps: None,
            attack_quiet: None,
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

    /// An `attack-threshold`'s rates: at most one pps and one bps value, neither zero.
    fn thresholds(&mut self, rates: &[Spanned<crate::ast::Rate>]) -> (Option<u64>, Option<u64>) {
        use crate::ast::RateUnit;
        let (mut pps, mut bps) = (None, None);
        for r in rates {
            let slot = match r.node.unit {
                RateUnit::Pps => &mut pps,
                RateUnit::Bps => &mut bps,
                RateUnit::PerSec => {
                    self.diags.push(
                        Diagnostic::error(r.span, "an attack threshold is a packet or bit rate")
                            .expected("a rate like 10kpps or 100Mbps"),
                    );
                    continue;
                }
            };
            if r.node.value == 0 {
                self.diags.push(
                    Diagnostic::error(r.span, "an attack threshold of 0 would report all traffic as an attack")
                        .expected("a rate above 0, like 10kpps or 100Mbps"),
                );
            } else if slot.is_some() {
                self.diags.push(
                    Diagnostic::error(r.span, "a second threshold in the same unit")
                        .expected("at most one packet rate and one bit rate"),
                );
            }
            *slot = Some(r.node.value);
        }
        (pps, bps)
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
                        Setting::AttackThreshold(rates) => {
                            let (pps, bps) = self.thresholds(rates);
                            p.settings.attack_pps = pps;
                            p.settings.attack_bps = bps;
                        }
                        Setting::AttackQuiet(d) => {
                            if d.is_zero() || *d > Duration::from_secs(3600) {
                                self.diags.push(
                                    Diagnostic::error(
                                        set.span,
                                        format!("attack quiet time {} out of range", fmt_dur(*d)),
                                    )
                                    .expected("a duration from 1s to 1h"),
                                );
                            }
                            p.settings.attack_quiet = Some(*d);
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
        // Refused early: a file with more rules than the engine supports is not worth checking
        // rule by rule (and the shadow analysis of hundreds of thousands of rules is long).
        let count = stmts.iter().filter(|s| matches!(s.node, Stmt::Rule(_))).count();
        if count > crate::compile::MAX_RULES {
            if let Some(Stmt::Rule(r)) =
                stmts.iter().filter(|s| matches!(s.node, Stmt::Rule(_))).nth(crate::compile::MAX_RULES).map(|s| &s.node)
            {
                self.diags.push(
                    Diagnostic::error(
                        r.action.span,
                        format!("{count} rules: at most {} are supported", crate::compile::MAX_RULES),
                    )
                    .expected("fewer rules: merge rules that differ only in addresses or ports into sets"),
                );
            }
            return p;
        }
        for s in stmts {
            if let Stmt::Rule(r) = &s.node {
                if let Some(rule) = self.rule(r, &p, &names) {
                    p.rules.push(rule);
                }
            }
        }
        self.shadowing(&p.rules);
        self.all_ports_proxied(&p.services);
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
}
