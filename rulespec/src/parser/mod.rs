//! Line-oriented parser: text → [`Ast`] plus every diagnostic of the file.

use std::net::IpAddr;
use std::time::Duration;

use crate::ast::*;
use crate::diag::{Diagnostic, FileId, Span, Spanned};
use crate::lexer::{lex_line, LinePos, TokKind, Token};

const STATEMENTS: &str = "a statement: include, set, ports, service, allow, deny, limit, default, mode, sessions, \
                          cookie-secret, learning-window, attack-threshold, attack-quiet";
const TOP_KEYWORDS: [&str; 15] = [
    "include",
    "set",
    "ports",
    "service",
    "allow",
    "deny",
    "limit",
    "default",
    "mode",
    "sessions",
    "cookie-secret",
    "learning-window",
    "attack-threshold",
    "attack-quiet",
    "end",
];
const SVC_KEYWORDS: [&str; 13] = [
    "dst",
    "proto",
    "ports",
    "syn",
    "mss",
    "wscale",
    "sack",
    "timestamps",
    "idle",
    "pickup",
    "attack-threshold",
    "http",
    "end",
];
const SVC_EXPECTED: &str = "a service setting: dst, proto, ports, syn, mss, wscale, sack, timestamps, idle, pickup, \
                            attack-threshold, http, or end";
const HTTP_KEYWORDS: [&str; 5] = ["max-header-bytes", "max-header-line", "max-headers", "methods", "ban"];
const MATCH_KEYWORDS: [&str; 16] = [
    "from",
    "to",
    "proto",
    "port",
    "sport",
    "flags",
    "len",
    "frag",
    "icmp-type",
    "icmpv6-type",
    "service",
    "per-source",
    "aggregate",
    "new-conns",
    "max-conns",
    "ban",
];
const MATCH_EXPECTED: &str =
    "a match (from, to, proto, port, sport, flags, len, frag, icmp-type, icmpv6-type, service) or end of line";
const ADDR_EXPECTED: &str = "a set name, a prefix (e.g. 198.18.0.0/24) or any";
const PORT_EXPECTED: &str = "a port (0-65535), a range like 8000-8099, or a port-set name";

type PResult<T> = Result<T, Diagnostic>;

/// Parse one file. Returns the statements that parsed and every diagnostic (errors and warnings);
/// a line with an error is skipped and parsing resumes on the next line.
pub fn parse(file: FileId, text: &str) -> (Ast, Vec<Diagnostic>) {
    let mut p = Parser { diags: Vec::new(), stmts: Vec::new(), open: None };
    let mut start = 0usize;
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let pos = LinePos { file, line: u32::try_from(n + 1).unwrap_or(u32::MAX), start };
        start += raw.len() + 1;
        match lex_line(line, pos) {
            Ok(toks) if toks.is_empty() => {}
            Ok(toks) => {
                let eol = toks.last().map(|t| t.span).map(|s| Span { start: s.end, col: s.col + width(line, s), ..s });
                let eol = eol.unwrap_or(pos.span(line, 0, 0));
                p.line(&toks, eol);
            }
            Err(d) => p.diags.push(d),
        }
    }
    if let Some(svc) = p.open.take() {
        p.diags.push(
            Diagnostic::error(svc.name.span, format!("service '{}' has no `end`", svc.name.node))
                .expected("a line `end` after the service's settings"),
        );
        p.stmts.push(Spanned { span: svc.name.span, node: Stmt::Service(svc) });
    }
    (Ast { stmts: p.stmts }, p.diags)
}

fn width(line: &str, s: Span) -> u32 {
    let a = line.char_indices().nth(s.col.saturating_sub(1) as usize).map(|(i, _)| i).unwrap_or(line.len());
    let len = s.end.saturating_sub(s.start);
    line.get(a..a + len).map(|t| t.chars().count()).unwrap_or(len) as u32
}

mod values;
pub(crate) use values::prefix;
use values::*;

struct Parser {
    diags: Vec<Diagnostic>,
    stmts: Vec<Spanned<Stmt>>,
    open: Option<ServiceDecl>,
}

struct Cur<'a> {
    toks: &'a [Token],
    i: usize,
    eol: Span,
}

impl<'a> Cur<'a> {
    fn peek_word(&self) -> Option<&'a str> {
        match self.toks.get(self.i).map(|t| &t.kind) {
            Some(TokKind::Word(w)) => Some(w.as_str()),
            _ => None,
        }
    }

    fn at_end(&self) -> bool {
        self.i >= self.toks.len()
    }

    fn peek_comma(&self) -> bool {
        matches!(self.toks.get(self.i).map(|t| &t.kind), Some(TokKind::Comma))
    }

    fn prev(&self) -> String {
        match self.i.checked_sub(1).and_then(|i| self.toks.get(i)) {
            Some(t) => t.describe(),
            None => "the start of the line".into(),
        }
    }

    /// The next word, or an error saying `what` was expected.
    fn word(&mut self, what: &str) -> PResult<(String, Span)> {
        match self.toks.get(self.i) {
            None => Err(Diagnostic::error(self.eol, format!("missing argument after {}", self.prev())).expected(what)),
            Some(t) => match &t.kind {
                TokKind::Word(w) => {
                    self.i += 1;
                    Ok((w.clone(), t.span))
                }
                _ => Err(Diagnostic::error(t.span, format!("unexpected {}", t.describe())).expected(what)),
            },
        }
    }

    fn string(&mut self, what: &str) -> PResult<Spanned<String>> {
        match self.toks.get(self.i) {
            None => Err(Diagnostic::error(self.eol, format!("missing argument after {}", self.prev())).expected(what)),
            Some(t) => match &t.kind {
                TokKind::Str(s) => {
                    self.i += 1;
                    Ok(Spanned { node: s.clone(), span: t.span })
                }
                _ => Err(Diagnostic::error(t.span, format!("unexpected {}", t.describe())).expected(what)),
            },
        }
    }

    fn keyword(&mut self, choices: &[&str]) -> PResult<(String, Span)> {
        let what = one_of(choices);
        let (w, s) = self.word(&what)?;
        if choices.contains(&w.as_str()) {
            Ok((w, s))
        } else {
            Err(Diagnostic::error(s, format!("unknown value '{w}'")).expected(what))
        }
    }

    fn expect_eq(&mut self) -> PResult<()> {
        match self.toks.get(self.i) {
            Some(t) if t.kind == TokKind::Eq => {
                self.i += 1;
                Ok(())
            }
            Some(t) => Err(Diagnostic::error(t.span, format!("unexpected {}", t.describe())).expected("'='")),
            None => Err(Diagnostic::error(self.eol, format!("missing '=' after {}", self.prev())).expected("'='")),
        }
    }

    fn finish(&self) -> PResult<()> {
        match self.toks.get(self.i) {
            None => Ok(()),
            Some(t) => Err(Diagnostic::error(t.span, format!("unexpected {} (trailing text)", t.describe()))
                .expected("end of line (use # for comments)")),
        }
    }
}

fn one_of(choices: &[&str]) -> String {
    match choices {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn sub(span: Span, word: &str, a: usize, b: usize) -> Span {
    let a = a.min(word.len());
    let chars = word.get(..a).map(|s| s.chars().count()).unwrap_or(0) as u32;
    Span { col: span.col + chars, start: span.start + a, end: span.start + b.min(word.len()).max(a), ..span }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn suggest(word: &str, choices: &[&str]) -> Option<String> {
    choices
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| format!("did you mean '{c}'?"))
}

impl Parser {
    fn line(&mut self, toks: &[Token], eol: Span) {
        let mut cur = Cur { toks, i: 0, eol };
        if self.open.is_some() {
            let first = cur.peek_word().unwrap_or("");
            if SVC_KEYWORDS.contains(&first) || !TOP_KEYWORDS.contains(&first) {
                if let Err(d) = self.svc_line(&mut cur) {
                    self.diags.push(d);
                }
                return;
            }
            if let Some(svc) = self.open.take() {
                self.diags.push(
                    Diagnostic::error(svc.name.span, format!("service '{}' has no `end`", svc.name.node))
                        .expected("a line `end` before the next statement"),
                );
                self.stmts.push(Spanned { span: svc.name.span, node: Stmt::Service(svc) });
            }
        }
        match self.statement(&mut cur) {
            Ok(Some(s)) => self.stmts.push(s),
            Ok(None) => {}
            Err(d) => self.diags.push(d),
        }
    }

    fn svc_line(&mut self, cur: &mut Cur<'_>) -> PResult<()> {
        let (kw, ks) = cur.word(SVC_EXPECTED)?;
        let item = match kw.as_str() {
            "end" => {
                cur.finish()?;
                if let Some(svc) = self.open.take() {
                    self.stmts.push(Spanned { span: svc.name.span, node: Stmt::Service(svc) });
                }
                return Ok(());
            }
            "dst" => SvcItem::Dst(addr_ref(cur, &mut self.diags)?.node),
            "proto" => {
                let p = proto(cur)?;
                if !matches!(p.node, Proto::Tcp | Proto::Udp) {
                    return Err(Diagnostic::error(p.span, format!("a service's protocol cannot be {}", p.node))
                        .expected("tcp or udp (use rules for other protocols)"));
                }
                SvcItem::Proto(p.node)
            }
            "ports" => SvcItem::Ports(port_list(cur)?.node),
            "syn" => {
                let (m, _) = cur.keyword(&["proxy", "track", "auto"])?;
                SvcItem::Syn(match m.as_str() {
                    "proxy" => SynMode::Proxy,
                    "track" => SynMode::Track,
                    _ => SynMode::Auto(rate(cur)?.node),
                })
            }
            "mss" | "wscale" => {
                let what = if kw == "mss" {
                    "an MSS from 536 to 9000, or learn"
                } else {
                    "a window scale from 0 to 14, or learn"
                };
                let v = if cur.peek_word() == Some("learn") {
                    cur.i += 1;
                    Learnable::Learn
                } else {
                    Learnable::Value(num(cur, what)?.node)
                };
                if kw == "mss" {
                    SvcItem::Mss(v)
                } else {
                    SvcItem::Wscale(v)
                }
            }
            "sack" | "timestamps" => {
                let (v, _) = cur.keyword(&["on", "off", "learn"])?;
                let t = match v.as_str() {
                    "on" => Toggle::On,
                    "off" => Toggle::Off,
                    _ => Toggle::Learn,
                };
                if kw == "sack" {
                    SvcItem::Sack(t)
                } else {
                    SvcItem::Timestamps(t)
                }
            }
            "idle" => {
                let (k, _) = cur.keyword(&["embryonic", "established", "closing"])?;
                let kind = match k.as_str() {
                    "embryonic" => IdleKind::Embryonic,
                    "established" => IdleKind::Established,
                    _ => IdleKind::Closing,
                };
                SvcItem::Idle(kind, duration(cur)?.node)
            }
            "pickup" => SvcItem::Pickup(duration(cur)?.node),
            "attack-threshold" => SvcItem::AttackThreshold(threshold_rates(cur)?),
            "http" => SvcItem::Http(http_spec(cur)?),
            other => {
                let mut d = Diagnostic::error(ks, format!("unknown service setting '{other}'")).expected(SVC_EXPECTED);
                if let Some(s) = suggest(other, &SVC_KEYWORDS) {
                    d = d.note(s);
                }
                return Err(d);
            }
        };
        cur.finish()?;
        if let Some(svc) = self.open.as_mut() {
            svc.items.push(Spanned { node: item, span: ks });
        }
        Ok(())
    }

    fn statement(&mut self, cur: &mut Cur<'_>) -> PResult<Option<Spanned<Stmt>>> {
        let (kw, ks) = cur.word(STATEMENTS)?;
        let stmt = match kw.as_str() {
            "include" => Stmt::Include(cur.string("a file name in double quotes, e.g. \"common.rules\"")?),
            "set" => {
                let name = name(cur, "a name for the set")?;
                if cur.peek_word() == Some("file") {
                    cur.i += 1;
                    Stmt::Set { name, body: SetBody::File(cur.string("a file name in double quotes")?) }
                } else {
                    cur.expect_eq().map_err(|d| d.expected("'=' and a list of prefixes, or file \"PATH\""))?;
                    let diags = &mut self.diags;
                    let items = list(cur, |c| {
                        let (w, s) = c.word("a prefix (e.g. 198.18.0.0/24) or a set name")?;
                        let node = if looks_like_prefix(&w) {
                            SetItem::Prefix(prefix(&w, s, diags)?)
                        } else if is_name(&w) {
                            SetItem::Name(w)
                        } else {
                            return Err(Diagnostic::error(s, format!("'{w}' is not a prefix"))
                                .expected("a prefix (e.g. 198.18.0.0/24) or a set name"));
                        };
                        Ok(Spanned { node, span: s })
                    })?;
                    Stmt::Set { name, body: SetBody::Items(items) }
                }
            }
            "ports" => {
                let name = name(cur, "a name for the port set")?;
                cur.expect_eq()?;
                Stmt::Ports { name, items: port_list(cur)?.node }
            }
            "service" => {
                let name = name(cur, "a name for the service")?;
                cur.finish()?;
                self.open = Some(ServiceDecl { name, items: Vec::new() });
                return Ok(None);
            }
            "allow" | "deny" | "limit" => {
                let action = match kw.as_str() {
                    "allow" => Action::Allow,
                    "deny" => Action::Deny,
                    _ => Action::Limit,
                };
                Stmt::Rule(Box::new(self.rule(cur, Spanned { node: action, span: ks })?))
            }
            "default" => {
                let (a, s) = cur.keyword(&["allow", "deny"])?;
                Stmt::Default(Spanned { node: if a == "allow" { Action::Allow } else { Action::Deny }, span: s })
            }
            "mode" => {
                let (m, _) = cur.keyword(&["enforce", "observe"])?;
                let m = if m == "enforce" { Mode::Enforce } else { Mode::Observe };
                Stmt::Setting(Spanned { node: Setting::Mode(m), span: ks })
            }
            "sessions" => {
                let n = num(cur, "a session-table capacity, e.g. 4M")?;
                Stmt::Setting(Spanned { node: Setting::Sessions(n.node), span: n.span })
            }
            "cookie-secret" => {
                let s = cur.string("a file name in double quotes")?;
                Stmt::Setting(Spanned { node: Setting::CookieSecret(s.node), span: s.span })
            }
            "learning-window" => {
                let d = duration(cur)?;
                Stmt::Setting(Spanned { node: Setting::LearningWindow(d.node), span: d.span })
            }
            "attack-threshold" => {
                let rates = threshold_rates(cur)?;
                Stmt::Setting(Spanned { node: Setting::AttackThreshold(rates), span: ks })
            }
            "attack-quiet" => {
                let d = duration(cur)?;
                Stmt::Setting(Spanned { node: Setting::AttackQuiet(d.node), span: d.span })
            }
            "end" => {
                return Err(Diagnostic::error(ks, "`end` without a `service`").expected(STATEMENTS));
            }
            other => {
                let mut d = Diagnostic::error(ks, format!("unknown keyword '{other}'")).expected(STATEMENTS);
                if let Some(s) = suggest(other, &TOP_KEYWORDS) {
                    d = d.note(s);
                }
                return Err(d);
            }
        };
        cur.finish()?;
        Ok(Some(Spanned { node: stmt, span: ks }))
    }

    fn rule(&mut self, cur: &mut Cur<'_>, action: Spanned<Action>) -> PResult<RuleDecl> {
        let mut r = RuleDecl { action, observe: false, matches: Match::default(), limits: Vec::new(), ban: None };
        if cur.peek_word() == Some("observe") {
            cur.i += 1;
            r.observe = true;
        }
        while !cur.at_end() {
            let (kw, ks) = cur.word(MATCH_EXPECTED)?;
            macro_rules! once {
                ($field:ident, $val:expr) => {{
                    if r.matches.$field.is_some() {
                        return Err(Diagnostic::error(ks, format!("'{kw}' given twice in one rule"))
                            .expected("each match at most once per rule"));
                    }
                    r.matches.$field = Some($val);
                }};
            }
            match kw.as_str() {
                "from" => once!(from, addr_ref(cur, &mut self.diags)?),
                "to" => once!(to, addr_ref(cur, &mut self.diags)?),
                "proto" => once!(proto, proto(cur)?),
                "port" => once!(port, port_list(cur)?),
                "sport" => once!(sport, port_list(cur)?),
                "flags" => once!(flags, flags(cur)?),
                "len" => once!(len, len_range(cur)?),
                "frag" => {
                    let (f, s) = cur.keyword(&["yes", "no", "first", "later"])?;
                    let f = match f.as_str() {
                        "yes" => Frag::Yes,
                        "no" => Frag::No,
                        "first" => Frag::First,
                        _ => Frag::Later,
                    };
                    once!(frag, Spanned { node: f, span: s })
                }
                "icmp-type" => once!(icmp_type, icmp_type(cur, &ICMP_NAMES)?),
                "icmpv6-type" => once!(icmpv6_type, icmp_type(cur, &ICMPV6_NAMES)?),
                "service" => once!(service, name(cur, "a service name")?),
                "ban" => {
                    if r.action.node != Action::Limit {
                        return Err(Diagnostic::error(ks, "'ban' only applies to `limit` rules")
                            .expected(MATCH_EXPECTED)
                            .note("a `deny` rule already drops everything it matches"));
                    }
                    if r.ban.is_some() {
                        return Err(Diagnostic::error(ks, "'ban' given twice in one rule")
                            .expected("each match at most once per rule"));
                    }
                    r.ban = Some(Spanned { node: ban_spec(cur)?, span: ks });
                }
                "per-source" | "aggregate" | "new-conns" | "max-conns" => {
                    if r.action.node != Action::Limit {
                        return Err(Diagnostic::error(ks, format!("'{kw}' only applies to `limit` rules"))
                            .expected(MATCH_EXPECTED));
                    }
                    let spec = match kw.as_str() {
                        "per-source" if cur.peek_word() == Some("requests") => {
                            cur.i += 1;
                            let rate = rate(cur)?;
                            LimitSpec::Requests { rate, burst: burst(cur)? }
                        }
                        "per-source" => {
                            let (rates, burst) = rates_and_burst(cur)?;
                            LimitSpec::PerSource { rates, burst }
                        }
                        "aggregate" => {
                            let (rates, burst) = rates_and_burst(cur)?;
                            LimitSpec::Aggregate { rates, burst }
                        }
                        "new-conns" => {
                            let rate = rate(cur)?;
                            LimitSpec::NewConns { rate, burst: burst(cur)? }
                        }
                        _ => LimitSpec::MaxConns(num(cur, "a number of concurrent connections")?),
                    };
                    r.limits.push(Spanned { node: spec, span: ks });
                }
                other => {
                    let expected = if r.action.node == Action::Limit {
                        format!("{MATCH_EXPECTED}, or a limit (per-source, aggregate, new-conns, max-conns, ban)")
                    } else {
                        MATCH_EXPECTED.to_string()
                    };
                    let mut d = Diagnostic::error(ks, format!("unknown match '{other}'")).expected(expected);
                    if let Some(s) = suggest(other, &MATCH_KEYWORDS) {
                        d = d.note(s);
                    }
                    return Err(d);
                }
            }
        }
        if r.action.node == Action::Limit && r.limits.is_empty() {
            return Err(Diagnostic::error(cur.eol, "a `limit` rule needs at least one limit")
                .expected("per-source RATE, per-source requests RATE, aggregate RATE, new-conns RATE or max-conns N"));
        }
        Ok(r)
    }
}

/// The settings after `http`, up to the end of the line (each at most once).
fn http_spec(cur: &mut Cur<'_>) -> PResult<HttpSpec> {
    let mut h = HttpSpec::default();
    while !cur.at_end() {
        let what = one_of(&HTTP_KEYWORDS);
        let (kw, ks) = cur.word(&what)?;
        let twice = |ks: Span, kw: &str| {
            Err(Diagnostic::error(ks, format!("'{kw}' given twice on one `http` line")).expected("each setting once"))
        };
        match kw.as_str() {
            "max-header-bytes" | "max-header-line" => {
                let v = size(cur, "a size in bytes, e.g. 8k (8192), 4096 or 1M")?;
                let slot = if kw == "max-header-bytes" { &mut h.max_header_bytes } else { &mut h.max_header_line };
                if slot.is_some() {
                    return twice(ks, &kw);
                }
                *slot = Some(v);
            }
            "max-headers" => {
                if h.max_headers.is_some() {
                    return twice(ks, &kw);
                }
                h.max_headers = Some(num(cur, "a number of header fields, e.g. 64")?);
            }
            "methods" => {
                if h.methods.is_some() {
                    return twice(ks, &kw);
                }
                h.methods = Some(list(cur, |c| {
                    let (w, s) = c.word("a request method, e.g. GET")?;
                    Ok(Spanned { node: w, span: s })
                })?);
            }
            "ban" => {
                if h.ban.is_some() {
                    return twice(ks, &kw);
                }
                h.ban = Some(Spanned { node: ban_spec(cur)?, span: ks });
            }
            other => {
                let mut d = Diagnostic::error(ks, format!("unknown http setting '{other}'")).expected(what);
                if let Some(s) = suggest(other, &HTTP_KEYWORDS) {
                    d = d.note(s);
                }
                return Err(d);
            }
        }
    }
    Ok(h)
}

/// `DURATION [after N]` (after the word `ban`).
fn ban_spec(cur: &mut Cur<'_>) -> PResult<BanSpec> {
    let d = duration(cur)?;
    let after = if cur.peek_word() == Some("after") {
        cur.i += 1;
        Some(num(cur, "a number of violations before the ban, e.g. 3")?.node)
    } else {
        None
    };
    Ok(BanSpec { duration: d.node, after })
}

/// One or two rates (a pps and/or a bps threshold) up to the end of the line.
fn threshold_rates(cur: &mut Cur<'_>) -> PResult<Vec<Spanned<Rate>>> {
    let mut v = vec![rate(cur)?];
    if !cur.at_end() {
        v.push(rate(cur)?);
    }
    Ok(v)
}
