//! The scrubber rule-file language.
//!
//! [`check`] reads a rule file and everything it includes through a [`Source`], parses it
//! ([`parse`]), checks it, and returns every diagnostic plus a checked [`Policy`]. The language is
//! described in the crate's README. [`parse_target`] parses the `--protect IP[:PORT]` shorthand
//! used on the command line, and [`protect_policy`] turns such targets into a policy.
//!
//! [`compile()`] turns a checked policy into [`Compiled`] lookup tables (address classes over
//! longest-prefix-match tables, port bitsets, per-rule matchers) that the packet engine consults
//! for every frame; see the [`compile`](mod@compile) and [`lpm`] modules.
//!
//! The crate reads only what it is given (strings here, and later the files it is named), does
//! no I/O of its own beyond that, and contains no `unsafe` code.
#![forbid(unsafe_code)]

pub mod ast;
mod check;
pub mod compile;
mod diag;
mod lexer;
pub mod lpm;
mod parser;
mod source;

pub use check::{
    check, Ban, Checked, HttpCheck, Policy, PortRanges, PortSet, PrefixSet, Rule, Service, Settings, MAX_INCLUDE_DEPTH,
};
pub use compile::{
    compile, protect_policy, Bucket, CLimit, CRule, CService, CompileError, CompileStats, Compiled, FragKind, Hit,
    Packet,
};
pub use diag::{render_all, Diagnostic, FileId, Severity, SourceFile, SourceMap, Span, Spanned};
pub use parser::parse;
pub use source::{resolve, FsSource, LoadError, MemSource, Source};

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// A destination to protect: an address and optionally one TCP port (all ports when `None`).
///
/// Written as `198.18.0.10`, `198.18.0.10:80`, `2001:2::10`, `[2001:2::10]` or
/// `[2001:2::10]:443`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The protected address.
    pub addr: IpAddr,
    /// The protected port; `None` protects every port of `addr`.
    pub port: Option<u16>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.addr, self.port) {
            (IpAddr::V4(a), Some(p)) => write!(f, "{a}:{p}"),
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
            (a, None) => write!(f, "{a}"),
        }
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_target(s)
    }
}

/// Why a `IP[:PORT]` target was rejected. Every message quotes the offending text and says what
/// was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Nothing was given.
    #[error("empty target: expected IP, IP:PORT, IPv6 or [IPv6]:PORT (e.g. 198.18.0.10:80 or [2001:2::10]:443)")]
    Empty,
    /// `[` without the closing `]`.
    #[error("'{input}': missing ] after the IPv6 address: write [ADDR] or [ADDR]:PORT")]
    MissingBracket {
        /// The text as given.
        input: String,
    },
    /// A `]` without an opening `[`.
    #[error("'{input}': ] without [: write [ADDR] or [ADDR]:PORT")]
    StrayBracket {
        /// The text as given.
        input: String,
    },
    /// Something other than an IPv6 address inside brackets.
    #[error(
        "'{input}': '{inner}' inside [ ] is not an IPv6 address (brackets are only for IPv6; write IPv4 as ADDR:PORT)"
    )]
    BracketsNotIpv6 {
        /// The text as given.
        input: String,
        /// What was inside the brackets.
        inner: String,
    },
    /// Text after `]` that is not `:PORT`.
    #[error("'{input}': unexpected '{rest}' after ]: expected nothing or :PORT")]
    AfterBracket {
        /// The text as given.
        input: String,
        /// What followed the bracket.
        rest: String,
    },
    /// An IPv6 address followed by `:PORT` without brackets.
    #[error("'{input}': IPv6 with port needs brackets: [ADDR]:PORT, e.g. [{addr}]:{port}")]
    Ipv6NeedsBrackets {
        /// The text as given.
        input: String,
        /// The address part.
        addr: Ipv6Addr,
        /// The port part, as written.
        port: String,
    },
    /// Port 0.
    #[error("'{input}': port 0 is not a service port: give a port from 1 to 65535, or no port to protect all ports")]
    PortZero {
        /// The text as given.
        input: String,
    },
    /// A port above 65535.
    #[error("'{input}': port {port} out of range: ports are 1 to 65535")]
    PortOutOfRange {
        /// The text as given.
        input: String,
        /// The port as written.
        port: String,
    },
    /// A port that is not a decimal number.
    #[error("'{input}': port '{port}' is not a number: expected a decimal port from 1 to 65535")]
    PortNotNumber {
        /// The text as given.
        input: String,
        /// The port as written.
        port: String,
    },
    /// The address part is not an IP address.
    #[error("'{input}': '{addr}' is not an IP address: expected IP, IP:PORT, IPv6 or [IPv6]:PORT (e.g. 198.18.0.10:80 or [2001:2::10]:443)")]
    BadAddress {
        /// The text as given.
        input: String,
        /// The part that should have been an address.
        addr: String,
    },
}

/// Parse a `--protect` target: `IPv4`, `IPv4:PORT`, `IPv6`, `[IPv6]` or `[IPv6]:PORT`.
///
/// Surrounding whitespace is ignored. Ports must be 1–65535; zone identifiers (`%eth0`) and host
/// names are not accepted.
///
/// ```
/// let t = rulespec::parse_target("[2001:2::10]:443").unwrap();
/// assert_eq!(t.port, Some(443));
/// assert!(rulespec::parse_target("198.18.0.10:0").is_err());
/// ```
pub fn parse_target(s: &str) -> Result<Target, TargetError> {
    let input = s;
    let s = s.trim();
    if s.is_empty() {
        return Err(TargetError::Empty);
    }
    let owned = || input.to_string();

    if let Some(rest) = s.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err(TargetError::MissingBracket { input: owned() });
        };
        let inner = &rest[..close];
        let after = &rest[close + 1..];
        let addr = match inner.parse::<Ipv6Addr>() {
            Ok(a) => a,
            Err(_) => return Err(TargetError::BracketsNotIpv6 { input: owned(), inner: inner.to_string() }),
        };
        let port = if after.is_empty() {
            None
        } else if let Some(p) = after.strip_prefix(':') {
            Some(parse_port(input, p)?)
        } else {
            return Err(TargetError::AfterBracket { input: owned(), rest: after.to_string() });
        };
        return Ok(Target { addr: IpAddr::V6(addr), port });
    }
    if s.contains(']') || s.contains('[') {
        return Err(TargetError::StrayBracket { input: owned() });
    }

    // A bare address (IPv4 or IPv6, no port).
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok(Target { addr, port: None });
    }

    match s.rfind(':') {
        None => Err(TargetError::BadAddress { input: owned(), addr: s.to_string() }),
        Some(i) => {
            let (host, port) = (&s[..i], &s[i + 1..]);
            if host.contains(':') {
                // More than one colon: an IPv6 address, possibly followed by a port.
                if let Ok(a) = host.parse::<Ipv6Addr>() {
                    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(TargetError::Ipv6NeedsBrackets { input: owned(), addr: a, port: port.to_string() });
                    }
                }
                return Err(TargetError::BadAddress { input: owned(), addr: s.to_string() });
            }
            let addr = match host.parse::<std::net::Ipv4Addr>() {
                Ok(a) => a,
                Err(_) => return Err(TargetError::BadAddress { input: owned(), addr: host.to_string() }),
            };
            let port = parse_port(input, port)?;
            Ok(Target { addr: IpAddr::V4(addr), port: Some(port) })
        }
    }
}

/// A warning for targets that parse, but probably not as meant: an unbracketed IPv6 address
/// whose last group looks like a port (`2001:2::10:80` is the *address* `2001:2::10:80`, all
/// ports). Returns the text to show the operator, or `None`.
///
/// ```
/// assert!(rulespec::target_warning("2001:2::10:80").unwrap().contains("[2001:2::10]:80"));
/// assert!(rulespec::target_warning("[2001:2::10]:80").is_none());
/// assert!(rulespec::target_warning("2001:2::10").is_none());
/// ```
pub fn target_warning(s: &str) -> Option<String> {
    let s = s.trim();
    if s.starts_with('[') || s.parse::<Ipv6Addr>().is_err() {
        return None;
    }
    let (host, last) = s.rsplit_once(':')?;
    if last.is_empty() || last.len() > 5 || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = last.parse::<u16>().ok().filter(|&p| p != 0)?;
    let addr = host.parse::<Ipv6Addr>().ok()?;
    Some(format!(
        "'{s}' is read as the IPv6 address {} (all ports); to protect port {port} of {addr}, write [{addr}]:{port}",
        s.parse::<Ipv6Addr>().ok()?
    ))
}

fn parse_port(input: &str, p: &str) -> Result<u16, TargetError> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TargetError::PortNotNumber { input: input.to_string(), port: p.to_string() });
    }
    // All digits: only overflow can fail.
    match p.parse::<u64>() {
        Ok(0) => Err(TargetError::PortZero { input: input.to_string() }),
        Ok(n) if n <= u64::from(u16::MAX) => Ok(n as u16),
        _ => Err(TargetError::PortOutOfRange { input: input.to_string(), port: p.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(s: &str) -> Target {
        parse_target(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> TargetError {
        match parse_target(s) {
            Ok(t) => panic!("{s} accepted as {t:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_the_documented_forms() {
        let v4: IpAddr = "198.18.0.10".parse().unwrap();
        let v6: IpAddr = "2001:2::10".parse().unwrap();
        assert_eq!(ok("198.18.0.10"), Target { addr: v4, port: None });
        assert_eq!(ok("198.18.0.10:80"), Target { addr: v4, port: Some(80) });
        assert_eq!(ok("2001:2::10"), Target { addr: v6, port: None });
        assert_eq!(ok("[2001:2::10]:443"), Target { addr: v6, port: Some(443) });
        assert_eq!(ok("[2001:2::10]"), Target { addr: v6, port: None });
        assert_eq!(ok("  198.18.0.10:65535 "), Target { addr: v4, port: Some(65535) });
        assert_eq!(ok("198.18.0.10:1").port, Some(1));
    }

    #[test]
    fn display_round_trips() {
        for s in ["198.18.0.10", "198.18.0.10:80", "2001:2::10", "[2001:2::10]:443"] {
            assert_eq!(ok(s).to_string(), s);
            assert_eq!(s.parse::<Target>().unwrap(), ok(s));
        }
    }

    #[test]
    fn rejects_with_precise_messages() {
        assert!(matches!(err("198.18.0.10:0"), TargetError::PortZero { .. }));
        assert!(err("198.18.0.10:0").to_string().contains("port 0"));
        assert!(matches!(err("[2001:2::10]:0"), TargetError::PortZero { .. }));
        let e = err("198.18.0.10:65536");
        assert!(matches!(e, TargetError::PortOutOfRange { .. }));
        assert!(e.to_string().contains("port 65536 out of range"), "{e}");
        assert!(matches!(err("198.18.0.10:99999999999999999999999"), TargetError::PortOutOfRange { .. }));
        let e = err("[2001:2::10");
        assert!(matches!(e, TargetError::MissingBracket { .. }));
        assert!(e.to_string().contains("missing ]"), "{e}");
        assert!(matches!(err("[2001:2::10]:"), TargetError::PortNotNumber { .. }));
        assert!(matches!(err("198.18.0.10:http"), TargetError::PortNotNumber { .. }));
        assert!(matches!(err("198.18.0.10:+80"), TargetError::PortNotNumber { .. }));
        assert!(matches!(err("[2001:2::10]443"), TargetError::AfterBracket { .. }));
        assert!(matches!(err("[198.18.0.10]:80"), TargetError::BracketsNotIpv6 { .. }));
        assert!(matches!(err("2001:2::10]:80"), TargetError::StrayBracket { .. }));
        let e = err("2001:2:0:0:0:0:0:10:443");
        assert!(matches!(e, TargetError::Ipv6NeedsBrackets { .. }));
        assert!(e.to_string().contains("IPv6 with port needs brackets: [ADDR]:PORT"), "{e}");
        assert!(e.to_string().contains("[2001:2::10]:443"), "{e}");
        assert!(matches!(err(""), TargetError::Empty));
        assert!(matches!(err("   "), TargetError::Empty));
        for g in ["garbage", "example.com:80", "198.18.0:80", "198.18.0.256", "fe80::1%eth0", ":80", "::::"] {
            let e = err(g);
            assert!(matches!(e, TargetError::BadAddress { .. }), "{g}: {e:?}");
            assert!(e.to_string().contains(g.trim()), "message for {g} does not quote it: {e}");
        }
    }

    #[test]
    fn warns_about_ipv6_that_looks_like_it_has_a_port() {
        let w = target_warning("2001:2::10:443").unwrap();
        assert!(w.contains("[2001:2::10]:443") && w.contains("all ports"), "{w}");
        for quiet in
            ["198.18.0.10:80", "2001:2::10", "[2001:2::10]:80", "2001:2::abcd", "::1", "garbage", "2001:2::10:0"]
        {
            assert_eq!(target_warning(quiet), None, "{quiet}");
        }
    }

    #[test]
    fn messages_quote_the_input() {
        for s in ["198.18.0.10:0", "198.18.0.10:70000", "[2001:2::10", "x:1", "[::1]x"] {
            assert!(err(s).to_string().contains(s), "{s}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC*") {
            let _ = parse_target(&s);
            let _ = target_warning(&s);
        }

        #[test]
        fn target_like_strings_never_panic(s in "[\\[\\]0-9a-fA-F:.% ]{0,48}") {
            if let Ok(t) = parse_target(&s) {
                // Whatever is accepted prints back to something that parses the same.
                prop_assert_eq!(parse_target(&t.to_string()).unwrap(), t);
            }
        }

        #[test]
        fn formatted_targets_round_trip(addr in any::<IpAddr>(), port in proptest::option::of(1u16..)) {
            let t = Target { addr, port };
            prop_assert_eq!(parse_target(&t.to_string()).unwrap(), t);
        }
    }
}
