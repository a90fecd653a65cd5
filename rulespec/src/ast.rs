//! The syntax tree of a rule file. Every part keeps its [`Span`](crate::Span).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::diag::Spanned;

/// An IPv4 or IPv6 prefix, host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length: 0–32 for IPv4, 0–128 for IPv6.
    pub len: u8,
}

impl Prefix {
    /// Whether `self` contains every address of `other`.
    pub fn contains(&self, other: &Prefix) -> bool {
        if self.len > other.len {
            return false;
        }
        match (self.addr, other.addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => mask4(u32::from(b), self.len) == u32::from(a),
            (IpAddr::V6(a), IpAddr::V6(b)) => mask6(u128::from(b), self.len) == u128::from(a),
            _ => false,
        }
    }
}

/// Clear the host bits of an IPv4 address.
pub fn mask4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(len.min(32))))
    }
}

/// Clear the host bits of an IPv6 address.
pub fn mask6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len.min(128))))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A reference to addresses: `any`, a set name, or a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrRef {
    /// Every address.
    Any,
    /// A named prefix set.
    Name(String),
    /// One prefix.
    Prefix(Prefix),
}

impl fmt::Display for AddrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrRef::Any => f.write_str("any"),
            AddrRef::Name(n) => f.write_str(n),
            AddrRef::Prefix(p) => p.fmt(f),
        }
    }
}

/// One element of a port list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortItem {
    /// One port.
    Port(u16),
    /// An inclusive range.
    Range(u16, u16),
    /// A named port set.
    Name(String),
}

impl fmt::Display for PortItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortItem::Port(p) => write!(f, "{p}"),
            PortItem::Range(a, b) => write!(f, "{a}-{b}"),
            PortItem::Name(n) => f.write_str(n),
        }
    }
}

/// An IP protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1).
    Icmp,
    /// ICMPv6 (58).
    Icmpv6,
    /// Any other protocol number.
    Other(u8),
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
            Proto::Icmpv6 => 58,
            Proto::Other(n) => n,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Tcp => f.write_str("tcp"),
            Proto::Udp => f.write_str("udp"),
            Proto::Icmp => f.write_str("icmp"),
            Proto::Icmpv6 => f.write_str("icmpv6"),
            Proto::Other(n) => write!(f, "{n}"),
        }
    }
}

/// What a rate counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateUnit {
    /// Packets per second.
    Pps,
    /// Bits per second.
    Bps,
    /// Events (connections, SYNs) per second, written `/s`.
    PerSec,
}

/// A rate: `value` units per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Units per second (pps, bits per second or events per second).
    pub value: u64,
    /// What is counted.
    pub unit: RateUnit,
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            RateUnit::Pps => "pps",
            RateUnit::Bps => "bps",
            RateUnit::PerSec => "/s",
        };
        write!(f, "{}{unit}", self.value)
    }
}

/// TCP flag bits as on the wire.
pub mod flag {
    /// FIN
    pub const FIN: u8 = 0x01;
    /// SYN
    pub const SYN: u8 = 0x02;
    /// RST
    pub const RST: u8 = 0x04;
    /// PSH
    pub const PSH: u8 = 0x08;
    /// ACK
    pub const ACK: u8 = 0x10;
    /// URG
    pub const URG: u8 = 0x20;
    /// ECE
    pub const ECE: u8 = 0x40;
    /// CWR
    pub const CWR: u8 = 0x80;
    /// Names in bit order.
    pub const NAMES: [(&str, u8); 8] = [
        ("fin", FIN),
        ("syn", SYN),
        ("rst", RST),
        ("psh", PSH),
        ("ack", ACK),
        ("urg", URG),
        ("ece", ECE),
        ("cwr", CWR),
    ];
}

/// A TCP flag condition: every bit of `set` set and every bit of `clear` clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flags {
    /// Bits that must be set.
    pub set: u8,
    /// Bits that must be clear.
    pub clear: u8,
}

/// Fragment condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Frag {
    /// Any fragment.
    Yes,
    /// Not a fragment.
    No,
    /// A first fragment (offset 0, more-fragments set).
    First,
    /// A non-first fragment.
    Later,
}

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Forward.
    Allow,
    /// Drop.
    Deny,
    /// Forward within limits, drop the rest.
    Limit,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Limit => "limit",
        })
    }
}

/// `on`, `off` or `learn` (SACK, timestamps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Toggle {
    /// Advertise.
    On,
    /// Do not advertise.
    Off,
    /// Do what the backend does.
    Learn,
}

/// A number or `learn` (MSS, window scale).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Learnable {
    /// Advertise this value.
    Value(u64),
    /// Learn from the backend's SYN-ACKs.
    Learn,
}

/// SYN flood defence for a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SynMode {
    /// Always answer with SYN cookies.
    Proxy,
    /// Forward SYNs and track handshakes.
    Track,
    /// Track below the SYN rate, proxy above.
    Auto(Rate),
}

/// Which idle timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdleKind {
    /// Handshake in progress.
    Embryonic,
    /// Established.
    Established,
    /// FIN or RST seen.
    Closing,
}

/// One line inside `service … end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SvcItem {
    /// `dst`
    Dst(AddrRef),
    /// `proto`
    Proto(Proto),
    /// `ports`
    Ports(Vec<Spanned<PortItem>>),
    /// `syn`
    Syn(SynMode),
    /// `mss`
    Mss(Learnable),
    /// `wscale`
    Wscale(Learnable),
    /// `sack`
    Sack(Toggle),
    /// `timestamps`
    Timestamps(Toggle),
    /// `idle`
    Idle(IdleKind, Duration),
    /// `pickup`
    Pickup(Duration),
    /// `attack-threshold RATE [RATE]`: when traffic of one attack class towards the service is
    /// an attack (pps and/or bps).
    AttackThreshold(Vec<Spanned<Rate>>),
    /// `http [max-header-bytes SIZE] [max-header-line SIZE] [max-headers N] [methods M,…]
    /// [ban DURATION [after N]]`: plaintext HTTP request-head checks.
    Http(HttpSpec),
}

/// The `http` line of a service, as written (see [`crate::HttpCheck`] for the resolved form).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpSpec {
    /// `max-header-bytes`: the whole request head (request line, header lines, blank line).
    pub max_header_bytes: Option<Spanned<u64>>,
    /// `max-header-line`: any one line of the head.
    pub max_header_line: Option<Spanned<u64>>,
    /// `max-headers`: header fields per request.
    pub max_headers: Option<Spanned<u64>>,
    /// `methods`: the request methods allowed (case-sensitive, as RFC 9110 says).
    pub methods: Option<Vec<Spanned<String>>>,
    /// `ban`: ban a source whose requests break the checks.
    pub ban: Option<Spanned<BanSpec>>,
}

/// `ban DURATION [after N]`: ban a source for `duration` once it has broken a limit or check
/// `after` times (1 when not given) within that duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BanSpec {
    /// How long the ban lasts.
    pub duration: Duration,
    /// Violations before the ban.
    pub after: Option<u64>,
}

/// A `service NAME … end` block.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceDecl {
    /// The name.
    pub name: Spanned<String>,
    /// The lines of the block; the span covers the keyword.
    pub items: Vec<Spanned<SvcItem>>,
}

/// What a rule matches. `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Match {
    /// `from`
    pub from: Option<Spanned<AddrRef>>,
    /// `to`
    pub to: Option<Spanned<AddrRef>>,
    /// `proto`
    pub proto: Option<Spanned<Proto>>,
    /// `port` (destination)
    pub port: Option<Spanned<Vec<Spanned<PortItem>>>>,
    /// `sport` (source)
    pub sport: Option<Spanned<Vec<Spanned<PortItem>>>>,
    /// `flags`
    pub flags: Option<Spanned<Flags>>,
    /// `len`, inclusive
    pub len: Option<Spanned<(u16, u16)>>,
    /// `frag`
    pub frag: Option<Spanned<Frag>>,
    /// `icmp-type`
    pub icmp_type: Option<Spanned<u8>>,
    /// `icmpv6-type`
    pub icmpv6_type: Option<Spanned<u8>>,
    /// `service`
    pub service: Option<Spanned<String>>,
}

/// One limit of a `limit` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitSpec {
    /// A token bucket per source address.
    PerSource {
        /// One or two rates (pps and/or bps).
        rates: Vec<Spanned<Rate>>,
        /// Burst, in packets or bytes.
        burst: Option<Spanned<u64>>,
    },
    /// One token bucket for all matching traffic.
    Aggregate {
        /// One or two rates (pps and/or bps).
        rates: Vec<Spanned<Rate>>,
        /// Burst, in packets or bytes.
        burst: Option<Spanned<u64>>,
    },
    /// New TCP connections per second per source.
    NewConns {
        /// The rate, in `/s`.
        rate: Spanned<Rate>,
        /// Burst, in connections.
        burst: Option<Spanned<u64>>,
    },
    /// Concurrent connections per source.
    MaxConns(Spanned<u64>),
    /// HTTP request starts per second per source (`per-source requests 20/s burst 40`; the
    /// rule's service must have `http`).
    Requests {
        /// The rate, in `/s`.
        rate: Spanned<Rate>,
        /// Burst, in requests.
        burst: Option<Spanned<u64>>,
    },
}

/// An `allow`, `deny` or `limit` line.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleDecl {
    /// The action keyword.
    pub action: Spanned<Action>,
    /// `observe`: count would-drops, forward everything.
    pub observe: bool,
    /// The conditions.
    pub matches: Match,
    /// For `limit`: the limits.
    pub limits: Vec<Spanned<LimitSpec>>,
    /// For `limit`: `ban DURATION [after N]`, ban sources the limits refuse.
    pub ban: Option<Spanned<BanSpec>>,
}

/// Global mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Drop what the rules drop.
    Enforce,
    /// Count would-drops, forward everything.
    Observe,
}

/// A global setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `mode`
    Mode(Mode),
    /// `sessions`
    Sessions(u64),
    /// `cookie-secret`
    CookieSecret(String),
    /// `learning-window`
    LearningWindow(Duration),
    /// `attack-threshold RATE [RATE]`: the default attack thresholds (pps and/or bps).
    AttackThreshold(Vec<Spanned<Rate>>),
    /// `attack-quiet DURATION`: how long an attack's traffic must stay under its thresholds
    /// before the attack is over.
    AttackQuiet(Duration),
}

impl Setting {
    /// The keyword.
    pub fn keyword(&self) -> &'static str {
        match self {
            Setting::Mode(_) => "mode",
            Setting::Sessions(_) => "sessions",
            Setting::CookieSecret(_) => "cookie-secret",
            Setting::LearningWindow(_) => "learning-window",
            Setting::AttackThreshold(_) => "attack-threshold",
            Setting::AttackQuiet(_) => "attack-quiet",
        }
    }
}

/// An element of an inline prefix set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetItem {
    /// A prefix.
    Prefix(Prefix),
    /// Another set, by name.
    Name(String),
}

/// A set's contents.
#[derive(Clone, Debug, PartialEq)]
pub enum SetBody {
    /// `= a, b, c`
    Items(Vec<Spanned<SetItem>>),
    /// `file "path"`
    File(Spanned<String>),
}

/// One statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `include "path"`
    Include(Spanned<String>),
    /// `set NAME …`
    Set {
        /// The name.
        name: Spanned<String>,
        /// The contents.
        body: SetBody,
    },
    /// `ports NAME = …`
    Ports {
        /// The name.
        name: Spanned<String>,
        /// The contents.
        items: Vec<Spanned<PortItem>>,
    },
    /// `service NAME … end`
    Service(ServiceDecl),
    /// `allow` / `deny` / `limit`
    Rule(Box<RuleDecl>),
    /// `default allow|deny`
    Default(Spanned<Action>),
    /// A global setting.
    Setting(Spanned<Setting>),
}

/// A parsed file: its statements with the span of each statement's first word.
#[derive(Clone, Debug, Default)]
pub struct Ast {
    /// Statements in order.
    pub stmts: Vec<Spanned<Stmt>>,
}
