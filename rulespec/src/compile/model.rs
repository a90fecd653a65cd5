//! What a compiled policy is made of, and what it answers: the public types.

use super::*;

/// Why a policy could not be compiled. These only occur for policies that did not come from
/// [`check`](crate::check) (which rejects the same problems with a source location) or that
/// exceed the table limits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// More rules than a `u16` can number.
    #[error("{count} rules: at most 65536 rules are supported; merge rules that differ only in addresses or ports into sets")]
    TooManyRules {
        /// Number of rules.
        count: usize,
    },
    /// More services than a `u16` can number.
    #[error("{count} services: at most 65536 services are supported; merge services with the same settings by using a set as `dst`")]
    TooManyServices {
        /// Number of services.
        count: usize,
    },
    /// A rule or service names a prefix set the policy does not define.
    #[error("{location}: unknown prefix set '{name}': define it with `set {name} = …`, and run `scrubber check` on the file")]
    UnknownSet {
        /// The set name.
        name: String,
        /// `file:line` of the rule, or `service NAME`.
        location: String,
    },
    /// A rule names a service the policy does not define.
    #[error("{location}: unknown service '{name}': define it with `service {name} … end`, and run `scrubber check` on the file")]
    UnknownService {
        /// The service name.
        name: String,
        /// `file:line` of the rule.
        location: String,
    },
    /// A limit with a missing, zero or wrong-unit rate, a zero burst or an impossible max-conns.
    #[error("{location}: {what}; fix the limit and run `scrubber check` on the file")]
    BadLimit {
        /// `file:line` of the rule.
        location: String,
        /// What is wrong.
        what: String,
    },
    /// More distinct address classes than the tables can number.
    #[error("{0} distinct address classes: too many overlapping sets; merge sets that rules use the same way")]
    TooManyClasses(usize),
    /// A prefix table could not be built.
    #[error(transparent)]
    Lpm(#[from] LpmError),
}

/// Fragment state of a frame, as the engine's dissector sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FragKind {
    /// Not a fragment.
    None,
    /// The first fragment (offset 0, more-fragments set).
    First,
    /// A non-first fragment (offset above 0).
    Later,
}

/// What the engine knows about a frame (all from its dissector).
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// Source address; IPv4 in the first 4 bytes (network order), rest zero.
    pub src: &'a [u8; 16],
    /// Destination address; IPv4 in the first 4 bytes (network order), rest zero.
    pub dst: &'a [u8; 16],
    /// IP protocol number.
    pub proto: u8,
    /// Source port; 0 when not TCP/UDP, or a non-first fragment.
    pub sport: u16,
    /// Destination port; 0 when not TCP/UDP, or a non-first fragment.
    pub dport: u16,
    /// TCP flags; 0 when not TCP.
    pub tcp_flags: u8,
    /// Bytes of the IP packet (header + payload).
    pub ip_len: u16,
    /// Fragment state.
    pub frag: FragKind,
    /// ICMP type for protocol 1, ICMPv6 type for protocol 58.
    pub icmp_type: Option<u8>,
}

/// The outcome of [`Compiled::judge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hit {
    /// Index of the matching rule in [`Compiled::rules`]; `None` for the default action.
    pub rule: Option<u16>,
    /// What to do.
    pub action: Action,
    /// The rule is in observe mode: count would-drops, forward. (The global mode is in
    /// [`Compiled::settings`].)
    pub observe: bool,
}

/// A token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// Units per second: packets, bits, or connections.
    pub rate: u64,
    /// Most units held: packets, **bytes** for bps buckets, or connections.
    pub burst: u64,
}

/// One limit of a `limit` rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CLimit {
    /// A bucket (pair) per source address; both must have tokens when both are given.
    PerSource {
        /// Packets per second.
        pps: Option<Bucket>,
        /// Bits per second (burst in bytes).
        bps: Option<Bucket>,
    },
    /// One bucket (pair) for all matching traffic; both must have tokens when both are given.
    Aggregate {
        /// Packets per second.
        pps: Option<Bucket>,
        /// Bits per second (burst in bytes).
        bps: Option<Bucket>,
    },
    /// TCP SYNs (new connections) per second per source.
    NewConns(Bucket),
    /// Concurrent connections per source.
    MaxConns(u32),
    /// HTTP request starts per second per source (the rule's service has `http`).
    Requests(Bucket),
}

/// A compiled service: what the TCP engine needs to defend it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CService {
    /// The name.
    pub name: String,
    /// IP protocol number (6 or 17).
    pub proto: u8,
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
    /// This service's attack threshold in frames per second (else the global one).
    pub attack_pps: Option<u64>,
    /// This service's attack threshold in bits per second (else the global one).
    pub attack_bps: Option<u64>,
    /// Plaintext HTTP request-head checks (`http`).
    pub http: Option<crate::HttpCheck>,
}

/// A compiled rule: what the engine reports and limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CRule {
    /// What it does.
    pub action: Action,
    /// Count would-drops only.
    pub observe: bool,
    /// `file:line`.
    pub location: String,
    /// One-line description, as in [`Policy::summary`].
    pub text: String,
    /// The limits of a `limit` rule.
    pub limits: Vec<CLimit>,
    /// `ban`: sources this rule's limits refuse are banned.
    pub ban: Option<crate::Ban>,
    /// Stable hash of the rule as written (see the module docs).
    pub fingerprint: u64,
}

/// Sizes of the compiled tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompileStats {
    /// Address sets in the tables (named sets used by rules or services, plus inline prefixes).
    pub sets: usize,
    /// Distinct IPv4 prefixes in the LPM table.
    pub prefixes_v4: usize,
    /// Distinct IPv6 prefixes in the LPM table.
    pub prefixes_v6: usize,
    /// IPv4 trie nodes below the root (256 entries each).
    pub lpm4_nodes: usize,
    /// IPv4 trie entries (root + nodes).
    pub lpm4_entries: usize,
    /// IPv6 trie nodes below the /16 table (64 slots, 24 bytes each).
    pub lpm6_nodes: usize,
    /// IPv6 leaf values stored (one per run of equal values per node).
    pub lpm6_leaves: usize,
    /// Most IPv6 trie nodes one lookup visits below the /16 table.
    pub lpm6_depth: usize,
    /// Distinct address classes, including class 0 (in no set).
    pub classes: usize,
    /// Distinct port bitsets.
    pub port_sets: usize,
    /// Rules.
    pub rules: usize,
    /// Services.
    pub services: usize,
    /// Heap bytes of all tables ([`Compiled::memory_bytes`]).
    pub memory_bytes: usize,
}
