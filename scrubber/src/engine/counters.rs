//! Every counter, declared once: name, documentation, kind and section in one place
//! ([`crate::counters!`]), from which the struct, its merge, its JSON form and every text output are
//! generated. Nothing lists counters by hand anywhere else.
//!
//! * Groups of named counters: [`EngineCounters`] (one per decision the engine makes),
//!   [`TargetCounts`] and [`RuleCounts`] (per protected target, per rule), and, declared beside
//!   what they count, the session table's ([`crate::engine::session::TableStats`]), the
//!   limiters' ([`crate::engine::policy::limiter::LimiterStats`]), the data plane's
//!   ([`crate::dataplane::stats::RingStats`]) and the reloads' (`control::telemetry`).
//! * Families with a label: drops and would-drops by [`DropReason`], inbound TCP by flag
//!   combination, per target, per rule ([`Counters`]).
//!
//! One [`Counters`] per engine (per worker core); readers sum them ([`Group::merge`]).

use std::borrow::Cow;
use std::fmt::Write as _;

use super::verdict::{Direction, DropReason};
use crate::wire::tcp::flags as tf;
use serde::{Deserialize, Serialize};

/// Whether a counter only grows, or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only ever increases (rates are differences).
    Counter,
    /// A level (e.g. live sessions); summed over workers, never turned into a rate.
    Gauge,
}

/// What is declared about one counter.
#[derive(Clone, Copy, Debug)]
pub struct Info {
    /// The name: `snake_case`, stable across releases (JSON key, Prometheus name).
    pub name: &'static str,
    /// What it counts (its documentation).
    pub doc: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The section it is shown under in text outputs.
    pub section: &'static str,
}

impl Info {
    /// The first sentence of the documentation.
    pub fn summary(&self) -> &'static str {
        first_sentence(self.doc)
    }
}

/// A group of `u64` counters declared with [`crate::counters!`].
pub trait Group: Default + Clone {
    /// The group's name (`engine`, `table`, `rings`, …): a prefix for metric names.
    const NAME: &'static str;
    /// Every counter of the group, in field order.
    const INFO: &'static [Info];
    /// The value of counter `i` (in [`Group::INFO`] order); 0 for an index out of range.
    fn get(&self, i: usize) -> u64;
    /// Set counter `i`.
    fn set(&mut self, i: usize, v: u64);
    /// Add another instance's counters (gauges too: the sum over workers is the total).
    fn merge(&mut self, o: &Self) {
        for i in 0..Self::INFO.len() {
            self.set(i, self.get(i).saturating_add(o.get(i)));
        }
    }
}

/// `counter` or `gauge` → [`Kind`].
#[doc(hidden)]
#[macro_export]
macro_rules! counter_kind {
    (counter) => {
        $crate::engine::counters::Kind::Counter
    };
    (gauge) => {
        $crate::engine::counters::Kind::Gauge
    };
}

/// Declare a group of counters: a struct of `pub u64` fields, each with its doc comment, its
/// kind (`counter` or `gauge`) and the section text outputs show it in. Generates the struct,
/// its [`Group`] impl (names, docs, kinds, get/set/merge) and its JSON form (an object keyed by
/// name; names a reader does not know are ignored, missing ones read as 0).
///
/// ```
/// scrubber::counters! {
///     /// What a widget does.
///     pub struct Widget("widget") {
///         /// Frames seen.
///         counter "traffic" frames,
///         /// Widgets alive now.
///         gauge "state" alive,
///     }
/// }
/// use scrubber::engine::counters::Group;
/// assert_eq!(Widget::INFO[1].name, "alive");
/// ```
#[macro_export]
macro_rules! counters {
    (
        $(#[doc = $sdoc:literal])*
        $vis:vis struct $name:ident ($group:literal) {
            $( $(#[doc = $doc:literal])* $kind:ident $section:literal $field:ident, )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        $vis struct $name {
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        impl $crate::engine::counters::Group for $name {
            const NAME: &'static str = $group;
            const INFO: &'static [$crate::engine::counters::Info] = &[
                $( $crate::engine::counters::Info {
                    name: stringify!($field),
                    doc: concat!($($doc),*),
                    kind: $crate::counter_kind!($kind),
                    section: $section,
                }, )*
            ];
            #[allow(unused_assignments)]
            fn get(&self, i: usize) -> u64 {
                let mut k = 0usize;
                $( if i == k { return self.$field; } k += 1; )*
                0
            }
            #[allow(unused_assignments)]
            fn set(&mut self, i: usize, v: u64) {
                let mut k = 0usize;
                $( if i == k { self.$field = v; return; } k += 1; )*
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::engine::counters::serialize_group(self, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::engine::counters::deserialize_group(d)
            }
        }
    };
}

#[doc(hidden)]
pub fn serialize_group<G: Group, S: serde::Serializer>(g: &G, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(G::INFO.len()))?;
    for (i, info) in G::INFO.iter().enumerate() {
        m.serialize_entry(info.name, &g.get(i))?;
    }
    m.end()
}

#[doc(hidden)]
pub fn deserialize_group<'de, G: Group, D: serde::Deserializer<'de>>(d: D) -> Result<G, D::Error> {
    let m = std::collections::BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    let mut g = G::default();
    for (i, info) in G::INFO.iter().enumerate() {
        if let Some(v) = m.get(info.name).and_then(|v| v.as_u64()) {
            g.set(i, v);
        }
    }
    Ok(g)
}

crate::counters! {
    /// The engine's counters, one per decision it makes (the families by reason, flag, target
    /// and rule are in [`Counters`]).
    pub struct EngineCounters("engine") {
        /// Frames handed to the engine from ext.
        counter "traffic" rx_inbound,
        /// Frames handed to the engine from int.
        counter "traffic" rx_outbound,
        /// Frames sent on to int (ext → int), rewritten or not.
        counter "traffic" forwarded_inbound,
        /// Frames sent on to ext (int → ext), rewritten or not.
        counter "traffic" forwarded_outbound,
        /// Frames the engine sent back out of the interface they arrived on (cookie SYN-ACKs,
        /// ACKs completing the backend handshake).
        counter "traffic" replies,
        /// Frames dropped, all reasons (by reason: `dropped`).
        counter "traffic" dropped_total,
        /// Frames a drop was decided for but that were forwarded because the global mode or the
        /// matching rule is `observe`, all reasons (by reason: `would_drop`).
        counter "traffic" would_drop_total,
        /// Frames too large for the egress link answered with ICMP fragmentation-needed or
        /// ICMPv6 packet-too-big (from the destination's address), so that path MTU discovery
        /// works through the bump.
        counter "traffic" too_big_answered,
        /// ARP and IPv6 neighbour discovery frames passed unchanged.
        counter "passed" passed_arp_nd,
        /// Non-TCP IP frames (UDP, ICMP, other protocols) passed unchanged.
        counter "passed" passed_non_tcp,
        /// Frames passed because their destination (inbound) or source (outbound) is not a
        /// protected service.
        counter "passed" passed_unprotected,
        /// Frames with an ethertype the engine does not parse (neither IPv4, IPv6 nor ARP),
        /// passed unchanged.
        counter "passed" passed_other_ethertype,
        /// IP fragments that are not TCP towards a protected service, passed unchanged.
        counter "passed" passed_fragments,
        /// Frames that carried one or two 802.1Q / 802.1ad tags.
        counter "passed" vlan_tagged,
        /// Cookie SYN-ACKs sent in answer to SYNs (proxy mode).
        counter "tcp" cookies_sent,
        /// ACKs whose acknowledgement number carried a valid cookie: a session was created and
        /// the SYN towards the backend sent.
        counter "tcp" cookies_validated,
        /// Session-less ACKs checked against the cookie and rejected (forged, expired or for
        /// another 4-tuple). Each is also counted in `dropped[ack_no_session]`.
        counter "tcp" cookies_failed,
        /// SYNs sent to a backend to open the server side of a proxied session (first
        /// attempts).
        counter "tcp" backend_syns_sent,
        /// SYNs sent to a backend again because its SYN-ACK did not arrive in time.
        counter "tcp" backend_syns_retransmitted,
        /// Backend SYN-ACKs consumed by the proxy (answered with an ACK, client sent a window
        /// update).
        counter "tcp" backend_synacks_consumed,
        /// Retransmitted backend SYN-ACKs for an already open proxied session, answered again
        /// with the ACK.
        counter "tcp" backend_synacks_reacked,
        /// RSTs from clients forwarded to the protected servers (in window).
        counter "tcp" rst_forwarded_inbound,
        /// RSTs from the protected servers forwarded to clients.
        counter "tcp" rst_forwarded_outbound,
        /// RSTs the scrubber wrote itself (not a forwarded RST): resets of stale backend
        /// connections, of connections a rule or check cut.
        counter "tcp" rst_sent,
        /// RSTs inside the receive window but not at its exact next sequence number: forwarded
        /// without closing the session, so that the endpoint answers with a challenge ACK and a
        /// blind reset cannot cut the connection (RFC 5961).
        counter "tcp" rst_inexact_forwarded,
        /// Challenge ACKs from a backend that still held an old connection on the 4-tuple of a
        /// new proxied one: answered with a RST (counted in `rst_sent`) so that the SYN can be
        /// retried, as a client in SYN-SENT would (RFC 9293).
        counter "tcp" backend_challenge_acks,
        /// ACKs on a live session tried as a new connection's cookie first because the client
        /// sent a new SYN on the same 4-tuple moments before (a reconnect on a busy port).
        counter "tcp" reopen_tried,
        /// Cookie SYN-ACKs whose MSS was lowered to what the backend path carries (the MSS the
        /// backend last announced, or the int link's MTU).
        counter "tcp" mss_clamped,
        /// SYNs carrying data (TCP Fast Open): answered with a window as large as that data, so
        /// that the client resends it with its handshake ACK at once instead of waiting for its
        /// persist timer; the SYN's data itself is not accepted.
        counter "tcp" tfo_syns,
        /// Data that came with a cookie ACK (a Fast Open client's request), kept and delivered
        /// to the backend with the ACK that completes the backend handshake.
        counter "tcp" early_data_delivered,
        /// Sessions created from a valid cookie (proxy mode).
        counter "sessions" sessions_proxied,
        /// Sessions created from an observed client SYN (track mode).
        counter "sessions" sessions_tracked,
        /// Sessions created from a SYN a protected server sent itself.
        counter "sessions" sessions_outbound,
        /// Session-less ACKs towards a service that were taken up as established sessions
        /// during the mid-stream pickup window after start (`pickup` / `learning-window`).
        counter "sessions" sessions_picked_up,
        /// Keep-alive probes sent to servers for session-less client ACKs seen twice during
        /// the pickup window.
        counter "sessions" pickup_probes,
        /// Session-less client ACKs seen twice during the pickup window that found the probe
        /// budget spent (or the probe area's slot taken).
        counter "sessions" pickup_probes_refused,
        /// Closed or closing sessions replaced by a new SYN on the same 4-tuple (immediate port
        /// reuse).
        counter "sessions" sessions_reused,
        /// Segments of a session a RST closed, forwarded while it lingers so that the other end
        /// can reset them again (a lost RST must not hang the peer).
        counter "sessions" closed_forwarded,
        /// Sessions that ended with a RST or with FINs from both sides.
        counter "sessions" sessions_closed,
        /// Frames from a protected server that matched no session and were forwarded anyway
        /// (the inside is trusted; this counts traffic of connections the scrubber does not
        /// know).
        counter "sessions" outbound_no_session,
        /// Times a `syn auto` service switched from tracking to SYN proxying (its SYN rate went
        /// over the threshold).
        counter "policy" auto_proxy_engaged,
        /// Policies installed in this engine after the first (hot reloads).
        counter "policy" policy_installs,
        /// Cookie secrets replaced by a reload (the previous one is still accepted for two
        /// slots).
        counter "policy" cookie_secret_rotations,
        /// New connections not counted towards a `max-conns` limit because another source held
        /// their counter slot.
        counter "policy" conn_count_collisions,
        /// Sources this engine banned: a `ban` of a limit rule or of an `http` line reached its
        /// number of violations (see `scrubber ban list`).
        counter "policy" bans_made,
        /// Requests started on connections of `http` services (counted at their first byte).
        counter "http" http_requests,
        /// Connections of `http` services reset both ways because a request broke a check or
        /// the request limit (the segment is counted by reason, the two RSTs in `rst_sent`).
        counter "http" http_resets,
        /// Connections of `http` services no longer followed: a transfer coding other than
        /// chunked, a chunk size or extension beyond the limits, or a segment whose state was
        /// lost and that does not start a request.
        counter "http" http_unchecked,
        /// Connections of `http` services that switched protocols (a 101 answer to `Upgrade`,
        /// a 2xx to `CONNECT`): no longer HTTP, no longer followed.
        counter "http" http_switched,
        /// Client segments of `http` services whose connection state was not in the table
        /// (replaced in a full table, or a session picked up or restored): followed again from
        /// the segment when it starts like a request, else unchecked.
        counter "http" http_states_lost,
    }
}

crate::counters! {
    /// Counters of one protected destination (a service; with `--protect`, one `IP[:PORT]`).
    pub struct TargetCounts("target") {
        /// Inbound frames towards the target.
        counter "target" rx,
        /// Inbound frames towards it that were forwarded.
        counter "target" forwarded,
        /// Inbound frames towards it answered by the scrubber (cookie SYN-ACKs).
        counter "target" replied,
        /// Inbound frames towards it that were dropped (any reason).
        counter "target" dropped,
        /// Inbound bare ACKs that belong to no session (dropped: untracked, or unconfirmed during pickup), towards the target.
        counter "class" class_ack,
        /// Bytes of `class_ack` (IP length).
        counter "class" class_ack_bytes,
        /// Inbound ACK-PSH or ACK with data that belong to no session (dropped), towards the target.
        counter "class" class_ack_psh,
        /// Bytes of `class_ack_psh` (IP length).
        counter "class" class_ack_psh_bytes,
        /// Inbound SYNs (answered with cookies, tracked or dropped), towards the target.
        counter "class" class_syn,
        /// Bytes of `class_syn` (IP length).
        counter "class" class_syn_bytes,
        /// Inbound RSTs that were dropped, towards the target.
        counter "class" class_rst,
        /// Bytes of `class_rst` (IP length).
        counter "class" class_rst_bytes,
        /// Inbound FINs that were dropped, towards the target.
        counter "class" class_fin,
        /// Bytes of `class_fin` (IP length).
        counter "class" class_fin_bytes,
        /// Inbound TCP frames with flag combinations no stack sends (null, xmas, SYN+FIN, SYN+RST...), dropped, towards the target.
        counter "class" class_bad_flags,
        /// Bytes of `class_bad_flags` (IP length).
        counter "class" class_bad_flags_bytes,
        /// Inbound UDP frames (any verdict), towards the target.
        counter "class" class_udp,
        /// Bytes of `class_udp` (IP length).
        counter "class" class_udp_bytes,
        /// Inbound ICMP and ICMPv6 frames (any verdict), towards the target.
        counter "class" class_icmp,
        /// Bytes of `class_icmp` (IP length).
        counter "class" class_icmp_bytes,
        /// Inbound IP fragments (any verdict), towards the target.
        counter "class" class_fragments,
        /// Bytes of `class_fragments` (IP length).
        counter "class" class_fragments_bytes,
        /// Inbound other frames dropped by a rule, a limit or the default, towards the target.
        counter "class" class_rule_drops,
        /// Bytes of `class_rule_drops` (IP length).
        counter "class" class_rule_drops_bytes,
        /// Inbound TCP frames forwarded (sessions, handshakes), the traffic that is not an attack, towards the target.
        counter "class" class_legit,
        /// Bytes of `class_legit` (IP length).
        counter "class" class_legit_bytes,
        /// Requests started towards it (services with `http`).
        counter "http" http_requests,
        /// Requests towards it that broke an `http` check or the request limit (connection reset).
        counter "http" http_violations,
    }
}

/// What kind of traffic a frame towards a target is, for attack detection (the `class_*`
/// counters of [`TargetCounts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TrafficClass {
    /// Untracked bare ACK.
    Ack = 0,
    /// Untracked ACK-PSH / ACK with data.
    AckPsh,
    /// SYN.
    Syn,
    /// RST dropped.
    Rst,
    /// FIN dropped.
    Fin,
    /// Impossible flag combination.
    BadFlags,
    /// UDP.
    Udp,
    /// ICMP / ICMPv6.
    Icmp,
    /// IP fragment.
    Fragments,
    /// Dropped by a rule, limit or default.
    RuleDrops,
    /// Forwarded TCP.
    Legit,
}

impl TrafficClass {
    /// Every class, in counter order.
    pub const ALL: [TrafficClass; 11] = [
        TrafficClass::Ack,
        TrafficClass::AckPsh,
        TrafficClass::Syn,
        TrafficClass::Rst,
        TrafficClass::Fin,
        TrafficClass::BadFlags,
        TrafficClass::Udp,
        TrafficClass::Icmp,
        TrafficClass::Fragments,
        TrafficClass::RuleDrops,
        TrafficClass::Legit,
    ];

    /// The class's name (`ack_psh`, ...).
    pub fn name(self) -> &'static str {
        ["ack", "ack_psh", "syn", "rst", "fin", "bad_flags", "udp", "icmp", "fragments", "rule_drops", "legit"]
            [self as usize]
    }

    /// The attack this class makes when it floods, as events name it.
    pub fn attack(self) -> &'static str {
        [
            "ack flood",
            "ack-psh flood",
            "syn flood",
            "rst flood",
            "fin flood",
            "tcp flag abuse",
            "udp flood",
            "icmp flood",
            "fragment flood",
            "rule-matched flood",
            "connection flood",
        ][self as usize]
    }
}

impl TargetCounts {
    /// Count one frame of `class` of `bytes` bytes.
    #[inline]
    pub fn add_class(&mut self, class: TrafficClass, bytes: u64) {
        let (f, b) = match class {
            TrafficClass::Ack => (&mut self.class_ack, &mut self.class_ack_bytes),
            TrafficClass::AckPsh => (&mut self.class_ack_psh, &mut self.class_ack_psh_bytes),
            TrafficClass::Syn => (&mut self.class_syn, &mut self.class_syn_bytes),
            TrafficClass::Rst => (&mut self.class_rst, &mut self.class_rst_bytes),
            TrafficClass::Fin => (&mut self.class_fin, &mut self.class_fin_bytes),
            TrafficClass::BadFlags => (&mut self.class_bad_flags, &mut self.class_bad_flags_bytes),
            TrafficClass::Udp => (&mut self.class_udp, &mut self.class_udp_bytes),
            TrafficClass::Icmp => (&mut self.class_icmp, &mut self.class_icmp_bytes),
            TrafficClass::Fragments => (&mut self.class_fragments, &mut self.class_fragments_bytes),
            TrafficClass::RuleDrops => (&mut self.class_rule_drops, &mut self.class_rule_drops_bytes),
            TrafficClass::Legit => (&mut self.class_legit, &mut self.class_legit_bytes),
        };
        *f += 1;
        *b += bytes;
    }

    /// Frames and bytes of `class`.
    pub fn class(&self, class: TrafficClass) -> (u64, u64) {
        let i = 4 + 2 * class as usize;
        (self.get(i), self.get(i + 1))
    }
}

crate::counters! {
    /// Counters of one rule of the policy.
    pub struct RuleCounts("rule") {
        /// Inbound frames the rule matched (it was the first match).
        counter "rule" matched,
        /// Frames it dropped (deny, or over a limit).
        counter "rule" dropped,
        /// Frames it would have dropped, forwarded because of `observe`.
        counter "rule" would_drop,
    }
}

/// A group of counters with a label (a target's name, a rule's text).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labelled<G> {
    /// What the counters are of.
    pub label: String,
    /// The counters.
    pub n: G,
}

impl<G> core::ops::Deref for Labelled<G> {
    type Target = G;
    fn deref(&self) -> &G {
        &self.n
    }
}

impl<G> core::ops::DerefMut for Labelled<G> {
    fn deref_mut(&mut self) -> &mut G {
        &mut self.n
    }
}

impl<G: Group> Labelled<G> {
    /// Zeroed counters labelled `label`.
    pub fn new(label: impl Into<String>) -> Self {
        Labelled { label: label.into(), n: G::default() }
    }
}

/// Counters of one protected target, labelled with the target as configured
/// (e.g. `198.18.0.10:80`, or a service name).
pub type TargetCounters = Labelled<TargetCounts>;
/// Counters of one rule, labelled with `file:line` and the rule as `scrubber check` shows it.
pub type RuleCounters = Labelled<RuleCounts>;

impl<G: Group> Serialize for Labelled<G> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(G::INFO.len() + 1))?;
        m.serialize_entry(G::NAME, &self.label)?;
        for (i, info) in G::INFO.iter().enumerate() {
            m.serialize_entry(info.name, &self.n.get(i))?;
        }
        m.end()
    }
}

impl<'de, G: Group> Deserialize<'de> for Labelled<G> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = std::collections::BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        let mut n = G::default();
        for (i, info) in G::INFO.iter().enumerate() {
            if let Some(v) = m.get(info.name).and_then(|v| v.as_u64()) {
                n.set(i, v);
            }
        }
        let label = m.get(G::NAME).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        Ok(Labelled { label, n })
    }
}

/// A family of counters: one value per label.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    /// The family's name (JSON key, Prometheus name).
    pub name: &'static str,
    /// What it counts.
    pub doc: &'static str,
    /// What the label is (Prometheus label name).
    pub label: &'static str,
}

/// Everything one engine counts: its [`EngineCounters`] (reachable directly: `Counters`
/// dereferences to them) and the labelled families.
#[derive(Clone, Debug)]
pub struct Counters {
    /// One counter per decision.
    pub engine: EngineCounters,
    /// Dropped frames by reason; index with [`DropReason::index`].
    pub dropped: [u64; DropReason::COUNT],
    /// Frames a drop was decided for but that were forwarded anyway (observe), by reason.
    /// Not counted in `dropped`.
    pub would_drop: [u64; DropReason::COUNT],
    /// Inbound TCP frames towards protected services by flag byte (CWR ECE URG ACK PSH RST SYN
    /// FIN); index with the flag byte.
    pub tcp_flags_inbound: [u64; 256],
    /// Per protected destination (in the order given by the configuration).
    pub per_target: Vec<TargetCounters>,
    /// Per rule of the policy, in rule order.
    pub per_rule: Vec<RuleCounters>,
    /// Top sources per target, two per target (same order as `per_target`): at `2 i` of
    /// attack-class traffic (dropped, or SYNs, UDP, ICMP), at `2 i + 1` of traffic that passed.
    pub top_sources: Vec<super::sources::TopSources>,
}

impl core::ops::Deref for Counters {
    type Target = EngineCounters;
    fn deref(&self) -> &EngineCounters {
        &self.engine
    }
}

impl core::ops::DerefMut for Counters {
    fn deref_mut(&mut self) -> &mut EngineCounters {
        &mut self.engine
    }
}

impl Counters {
    /// The labelled families, in output order.
    pub const FAMILIES: &'static [Family] = &[
        Family { name: "dropped", doc: "Frames dropped, by reason.", label: "reason" },
        Family {
            name: "would_drop",
            doc: "Frames a drop was decided for but forwarded because of observe mode, by reason.",
            label: "reason",
        },
        Family {
            name: "tcp_flags_inbound",
            doc: "Inbound TCP frames towards protected services, by flag combination.",
            label: "flags",
        },
        Family { name: "per_target", doc: "Counters per protected target.", label: "target" },
        Family { name: "per_rule", doc: "Counters per rule of the policy.", label: "rule" },
    ];

    /// Zeroed counters with one [`TargetCounters`] per configured target.
    pub fn new(targets: &[String]) -> Self {
        Counters {
            engine: EngineCounters::default(),
            dropped: [0; DropReason::COUNT],
            would_drop: [0; DropReason::COUNT],
            tcp_flags_inbound: [0; 256],
            per_target: targets.iter().map(TargetCounters::new).collect(),
            per_rule: Vec::new(),
            top_sources: vec![Default::default(); 2 * targets.len()],
        }
    }

    /// Count a drop.
    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.dropped[r.index()] += 1;
        self.engine.dropped_total += 1;
    }

    /// Count a would-drop (observe).
    #[inline]
    pub fn count_would_drop(&mut self, r: DropReason) {
        self.would_drop[r.index()] += 1;
        self.engine.would_drop_total += 1;
    }

    /// Frames dropped, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.engine.dropped_total
    }

    /// Frames received in `dir`.
    pub fn rx(&self, dir: Direction) -> u64 {
        match dir {
            Direction::Inbound => self.rx_inbound,
            Direction::Outbound => self.rx_outbound,
        }
    }

    /// Add another engine's counters to these (per-target and per-rule entries are matched by
    /// position).
    pub fn merge(&mut self, o: &Counters) {
        self.engine.merge(&o.engine);
        add(&mut self.dropped, &o.dropped);
        add(&mut self.would_drop, &o.would_drop);
        add(&mut self.tcp_flags_inbound, &o.tcp_flags_inbound);
        for (a, b) in self.per_target.iter_mut().zip(&o.per_target) {
            a.n.merge(&b.n);
        }
        for (a, b) in self.per_rule.iter_mut().zip(&o.per_rule) {
            a.n.merge(&b.n);
        }
    }

    /// The nonzero flag combinations, as (name, count), in flag-byte order.
    pub fn tcp_flags(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        self.tcp_flags_inbound.iter().enumerate().filter(|(_, &n)| n > 0).map(|(f, &n)| (flag_name(f as u8), n))
    }
}

fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// A TCP flag byte as people write it: `SYN`, `ACK|PSH`, `FIN|ACK`, …; `none` for 0.
pub fn flag_name(f: u8) -> String {
    const NAMES: [(u8, &str); 8] = [
        (tf::SYN, "SYN"),
        (tf::ACK, "ACK"),
        (tf::PSH, "PSH"),
        (tf::RST, "RST"),
        (tf::FIN, "FIN"),
        (tf::URG, "URG"),
        (tf::ECE, "ECE"),
        (tf::CWR, "CWR"),
    ];
    let v: Vec<&str> = NAMES.iter().filter(|(b, _)| f & b != 0).map(|(_, n)| *n).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join("|")
    }
}

/// The flag byte of a [`flag_name`].
pub fn flag_byte(name: &str) -> Option<u8> {
    if name == "none" {
        return Some(0);
    }
    (0..=255u8).find(|&f| flag_name(f) == name)
}

fn ser_reasons<S: serde::Serializer>(v: &[u64; DropReason::COUNT], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(DropReason::COUNT))?;
    for r in DropReason::ALL {
        m.serialize_entry(r.as_str(), &v[r.index()])?;
    }
    m.end()
}

fn reasons_from(m: Option<&serde_json::Value>) -> [u64; DropReason::COUNT] {
    let mut v = [0; DropReason::COUNT];
    if let Some(m) = m.and_then(|m| m.as_object()) {
        for r in DropReason::ALL {
            v[r.index()] = m.get(r.as_str()).and_then(|x| x.as_u64()).unwrap_or(0);
        }
    }
    v
}

/// JSON: the [`EngineCounters`] by name at the top level, then each family under its name —
/// reasons as a map (every reason), flag combinations as a map (nonzero only), targets and
/// rules as lists of objects.
impl Serialize for Counters {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Reasons<'a>(&'a [u64; DropReason::COUNT]);
        impl Serialize for Reasons<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                ser_reasons(self.0, s)
            }
        }
        let flags: std::collections::BTreeMap<String, u64> = self.tcp_flags().collect();
        let mut m = s.serialize_map(None)?;
        for (i, info) in EngineCounters::INFO.iter().enumerate() {
            m.serialize_entry(info.name, &self.engine.get(i))?;
        }
        m.serialize_entry("dropped", &Reasons(&self.dropped))?;
        m.serialize_entry("would_drop", &Reasons(&self.would_drop))?;
        m.serialize_entry("tcp_flags_inbound", &flags)?;
        m.serialize_entry("per_target", &self.per_target)?;
        m.serialize_entry("per_rule", &self.per_rule)?;
        let list = |s: Option<&super::sources::TopSources>| -> Vec<serde_json::Value> {
            s.map(|s| {
                s.per_second()
                    .into_iter()
                    .map(|(a, pps)| serde_json::json!({"src": a.to_string(), "pps": pps}))
                    .collect()
            })
            .unwrap_or_default()
        };
        let top: Vec<serde_json::Value> = self
            .per_target
            .iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::json!({
                    "target": t.label,
                    "sources": list(self.top_sources.get(2 * i)),
                    "passed": list(self.top_sources.get(2 * i + 1)),
                })
            })
            .collect();
        m.serialize_entry("top_sources", &top)?;
        m.end()
    }
}

/// Inverse of `Serialize`: names not known to this build are ignored, missing ones are zero.
impl<'de> Deserialize<'de> for Counters {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let m = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let mut c = Counters::new(&[]);
        for (i, info) in EngineCounters::INFO.iter().enumerate() {
            if let Some(v) = m.get(info.name).and_then(|v| v.as_u64()) {
                c.engine.set(i, v);
            }
        }
        c.dropped = reasons_from(m.get("dropped"));
        c.would_drop = reasons_from(m.get("would_drop"));
        if let Some(f) = m.get("tcp_flags_inbound").and_then(|f| f.as_object()) {
            for (k, v) in f {
                if let (Some(b), Some(n)) = (flag_byte(k), v.as_u64()) {
                    c.tcp_flags_inbound[usize::from(b)] = n;
                }
            }
        }
        let list = |k: &str| m.get(k).cloned().unwrap_or(serde_json::Value::Array(Vec::new()));
        c.per_target = serde_json::from_value(list("per_target")).map_err(D::Error::custom)?;
        c.top_sources = c.per_target.iter().map(|_| super::sources::TopSources::default()).collect();
        if let Some(list) = m.get("top_sources").and_then(|v| v.as_array()) {
            for (slot, t) in c.top_sources.iter_mut().zip(list) {
                let rates: Vec<(std::net::IpAddr, u64)> = t["sources"]
                    .as_array()
                    .map(|a| {
                        a.iter().filter_map(|s| Some((s["src"].as_str()?.parse().ok()?, s["pps"].as_u64()?))).collect()
                    })
                    .unwrap_or_default();
                *slot = super::sources::TopSources::from_rates(&rates);
            }
        }
        c.per_rule = serde_json::from_value(list("per_rule")).map_err(D::Error::custom)?;
        Ok(c)
    }
}

// ---------------------------------------------------------------------------------------------
// Text for people, generated from the declarations.

/// `1234567` → `1,234,567` (the thousands grouping of every counter shown to people).
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn first_sentence(s: &str) -> &str {
    let s = s.trim();
    match s.find(". ") {
        Some(i) => &s[..=i],
        None => s,
    }
}

/// An earlier reading and the seconds since it: rates are shown against it.
#[derive(Debug)]
pub struct Since<'a, T> {
    /// The earlier reading.
    pub prev: &'a T,
    /// Seconds between the two readings (> 0).
    pub secs: f64,
}

impl<T> Clone for Since<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Since<'_, T> {}

fn rate(now: u64, prev: u64, secs: f64) -> f64 {
    now.saturating_sub(prev) as f64 / secs
}

/// One text row: `name  value  [rate/s]  note`.
pub fn row(o: &mut String, name: &str, v: u64, rate: Option<f64>, note: &str) {
    let _ = write!(o, "    {name:<30} {:>16}", group(v));
    match rate {
        Some(r) => {
            let _ = write!(o, " {:>14}/s", group(r.round() as u64));
        }
        None => o.push_str("                "),
    }
    if !note.is_empty() {
        let _ = write!(o, "   {note}");
    }
    o.push('\n');
}

/// Every counter of group `g`, by section (a header line per section), with rates against
/// `since` (counters only; gauges have none) and each counter's first sentence of doc.
pub fn render_group<G: Group>(o: &mut String, g: &G, since: Option<Since<'_, G>>) {
    let mut section = "";
    for (i, info) in G::INFO.iter().enumerate() {
        if info.section != section {
            section = info.section;
            let _ = writeln!(o, "  {section}");
        }
        let r = match (since, info.kind) {
            (Some(s), Kind::Counter) => Some(rate(g.get(i), s.prev.get(i), s.secs)),
            _ => None,
        };
        row(o, info.name, g.get(i), r, info.summary());
    }
}

/// The families of `c` (nonzero rows only), with rates against `since`.
pub fn render_families(o: &mut String, c: &Counters, since: Option<Since<'_, Counters>>) {
    for (name, values, prev) in [
        ("dropped", &c.dropped, since.map(|s| &s.prev.dropped)),
        ("would_drop", &c.would_drop, since.map(|s| &s.prev.would_drop)),
    ] {
        if values.iter().all(|&v| v == 0) {
            continue;
        }
        let _ = writeln!(o, "  {name} by reason");
        for r in DropReason::ALL {
            let v = values[r.index()];
            if v > 0 {
                let rt = prev.zip(since).map(|(p, s)| rate(v, p[r.index()], s.secs));
                row(o, r.as_str(), v, rt, first_sentence(r.describe()));
            }
        }
    }
    if c.tcp_flags_inbound.iter().any(|&v| v > 0) {
        let _ = writeln!(o, "  tcp_flags_inbound (TCP towards protected targets, by flags)");
        for (f, &v) in c.tcp_flags_inbound.iter().enumerate() {
            if v > 0 {
                let rt = since.map(|s| rate(v, s.prev.tcp_flags_inbound[f], s.secs));
                row(o, &flag_name(f as u8), v, rt, "");
            }
        }
    }
    labelled_table(o, "per_target", &c.per_target, since.map(|s| (&s.prev.per_target[..], s.secs)));
    labelled_table(o, "per_rule", &c.per_rule, since.map(|s| (&s.prev.per_rule[..], s.secs)));
}

/// A table of labelled counters: one row per label, one column per counter (rates below each
/// row when `since` is given).
pub fn labelled_table<G: Group>(
    o: &mut String,
    title: &str,
    rows: &[Labelled<G>],
    since: Option<(&[Labelled<G>], f64)>,
) {
    if rows.is_empty() {
        return;
    }
    let w = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(0).clamp(6, 60);
    // The table's columns: the group's own section; others (a target's traffic classes) are
    // listed below each row, nonzero ones only.
    let cols: Vec<usize> = (0..G::INFO.len()).filter(|&i| G::INFO[i].section == G::NAME).collect();
    let _ = write!(o, "  {title}\n    {:<w$}", G::NAME);
    for &i in &cols {
        let _ = write!(o, " {:>14}", G::INFO[i].name);
    }
    o.push('\n');
    for (k, r) in rows.iter().enumerate() {
        let label: Cow<'_, str> = if r.label.chars().count() > w {
            Cow::Owned(r.label.chars().take(w).collect())
        } else {
            Cow::Borrowed(&r.label)
        };
        let _ = write!(o, "    {label:<w$}");
        for &i in &cols {
            let _ = write!(o, " {:>14}", group(r.n.get(i)));
        }
        o.push('\n');
        let extra: Vec<String> = (0..G::INFO.len())
            .filter(|&i| G::INFO[i].section != G::NAME && r.n.get(i) > 0)
            .map(|i| format!("{} {}", G::INFO[i].name, group(r.n.get(i))))
            .collect();
        if !extra.is_empty() {
            let _ = writeln!(o, "    {:<w$}   {}", "", extra.join(", "));
        }
        if let Some((prev, secs)) = since {
            if let Some(p) = prev.get(k) {
                let _ = write!(o, "    {:<w$}", "");
                for &i in &cols {
                    let _ = write!(o, " {:>12}/s", group(rate(r.n.get(i), p.n.get(i), secs).round() as u64));
                }
                o.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn declarations_are_unique_documented_and_indexable() {
        let mut names: Vec<&str> = EngineCounters::INFO.iter().map(|i| i.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EngineCounters::INFO.len());
        let mut e = EngineCounters::default();
        for (i, info) in EngineCounters::INFO.iter().enumerate() {
            assert!(!info.doc.trim().is_empty(), "{} has no doc", info.name);
            e.set(i, i as u64 + 1);
        }
        for i in 0..EngineCounters::INFO.len() {
            assert_eq!(e.get(i), i as u64 + 1);
        }
        assert_eq!(e.get(EngineCounters::INFO.len()), 0);
        let mut f = e;
        f.merge(&e);
        assert_eq!(f.get(3), 8);
    }

    #[test]
    fn json_round_trip_with_families() {
        let mut c = Counters::new(&["198.18.0.10:80".into()]);
        c.rx_inbound = 7;
        c.drop(DropReason::AckNoSession);
        c.count_would_drop(DropReason::RuleDeny);
        c.tcp_flags_inbound[usize::from(tf::ACK | tf::PSH)] = 5;
        c.per_target[0].rx = 3;
        c.per_rule.push(RuleCounters::new("a.rules:3 deny from bad"));
        c.per_rule[0].matched = 2;
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["rx_inbound"], 7);
        assert_eq!(j["dropped"]["ack_no_session"], 1);
        assert_eq!(j["dropped_total"], 1);
        assert_eq!(j["tcp_flags_inbound"]["ACK|PSH"], 5);
        assert_eq!(j["per_target"][0]["target"], "198.18.0.10:80");
        assert_eq!(j["per_rule"][0]["rule"], "a.rules:3 deny from bad");
        let back: Counters = serde_json::from_value(j).unwrap();
        assert_eq!(back.engine, c.engine);
        assert_eq!(back.tcp_flags_inbound, c.tcp_flags_inbound);
        assert_eq!(back.would_drop, c.would_drop);
        assert_eq!(back.per_target, c.per_target);
        assert_eq!(back.per_rule, c.per_rule);
        for f in 0..=255u8 {
            assert_eq!(flag_byte(&flag_name(f)), Some(f));
        }
    }
}
