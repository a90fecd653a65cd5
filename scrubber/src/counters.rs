//! Every counter the engine keeps. One [`Counters`] per engine (per worker core); readers sum
//! them. Counters only ever increase (except the `sessions_live` gauge).

use crate::verdict::{Direction, DropReason};
use serde::{Deserialize, Serialize};

/// Counters of one engine instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Counters {
    /// Frames handed to the engine from ext.
    pub rx_inbound: u64,
    /// Frames handed to the engine from int.
    pub rx_outbound: u64,
    /// Frames sent on to int (ext → int), rewritten or not.
    pub forwarded_inbound: u64,
    /// Frames sent on to ext (int → ext), rewritten or not.
    pub forwarded_outbound: u64,
    /// Frames the engine sent back out of the interface they arrived on (cookie SYN-ACKs, ACKs
    /// completing the backend handshake).
    pub replies: u64,
    /// Dropped frames, by reason; index with [`DropReason::index`].
    #[serde(serialize_with = "ser_reasons", deserialize_with = "de_reasons")]
    pub dropped: [u64; DropReason::COUNT],
    /// Frames a drop was decided for but that were forwarded anyway because the global mode or
    /// the matching rule is `observe`, by reason; index with [`DropReason::index`]. Not counted
    /// in `dropped`.
    #[serde(serialize_with = "ser_reasons", deserialize_with = "de_reasons")]
    pub would_drop: [u64; DropReason::COUNT],
    /// Session-less ACKs towards a service that were taken up as established sessions during
    /// the mid-stream pickup window after start (`pickup` / `learning-window`).
    pub sessions_picked_up: u64,
    /// Times a `syn auto` service switched from tracking to SYN proxying (its SYN rate went
    /// over the threshold).
    pub auto_proxy_engaged: u64,
    /// Policies installed in this engine after the first (hot reloads).
    pub policy_installs: u64,
    /// New connections not counted towards a `max-conns` limit because another source held
    /// their counter slot.
    pub conn_count_collisions: u64,
    /// ARP and IPv6 neighbour discovery frames passed unchanged.
    pub passed_arp_nd: u64,
    /// Non-TCP IP frames (UDP, ICMP, other protocols) passed unchanged.
    pub passed_non_tcp: u64,
    /// Frames passed because their destination (inbound) or source (outbound) is not a
    /// protected service.
    pub passed_unprotected: u64,
    /// Frames with an ethertype the engine does not parse (neither IPv4, IPv6 nor ARP), passed
    /// unchanged.
    pub passed_other_ethertype: u64,
    /// IP fragments that are not TCP towards a protected service, passed unchanged.
    pub passed_fragments: u64,
    /// Frames that carried one or two 802.1Q / 802.1ad tags.
    pub vlan_tagged: u64,
    /// Cookie SYN-ACKs sent in answer to SYNs (proxy mode).
    pub cookies_sent: u64,
    /// ACKs whose acknowledgement number carried a valid cookie: a session was created and the
    /// SYN towards the backend sent.
    pub cookies_validated: u64,
    /// Session-less ACKs checked against the cookie and rejected (forged, expired or for
    /// another 4-tuple). Each is also counted in `dropped[ack_no_session]`.
    pub cookies_failed: u64,
    /// SYNs sent to a backend to open the server side of a proxied session (first attempts).
    pub backend_syns_sent: u64,
    /// SYNs sent to a backend again because its SYN-ACK did not arrive in time.
    pub backend_syns_retransmitted: u64,
    /// Backend SYN-ACKs consumed by the proxy (answered with an ACK, client sent a window
    /// update).
    pub backend_synacks_consumed: u64,
    /// Retransmitted backend SYN-ACKs for an already open proxied session, answered again
    /// with the ACK.
    pub backend_synacks_reacked: u64,
    /// RSTs from clients forwarded to the protected servers (in window).
    pub rst_forwarded_inbound: u64,
    /// RSTs from the protected servers forwarded to clients.
    pub rst_forwarded_outbound: u64,
    /// RSTs the scrubber generated itself (none yet; kept so dashboards see the series).
    pub rst_sent: u64,
    /// Sessions created from a valid cookie (proxy mode).
    pub sessions_proxied: u64,
    /// Sessions created from an observed client SYN (track mode).
    pub sessions_tracked: u64,
    /// Sessions created from a SYN a protected server sent itself.
    pub sessions_outbound: u64,
    /// Closed or closing sessions replaced by a new SYN on the same 4-tuple (immediate port
    /// reuse).
    pub sessions_reused: u64,
    /// Sessions that ended with a RST or with FINs from both sides.
    pub sessions_closed: u64,
    /// Frames from a protected server that matched no session and were forwarded anyway (the
    /// inside is trusted; this counts traffic of connections the scrubber does not know).
    pub outbound_no_session: u64,
    /// Inbound TCP frames towards protected services by flag byte (CWR ECE URG ACK PSH RST
    /// SYN FIN, the low 8 bits of the TCP flags); index with the flag byte.
    #[serde(skip, default = "no_flags")]
    pub tcp_flags_inbound: [u64; 256],
    /// Per protected destination (in the order given by the configuration).
    pub per_target: Vec<TargetCounters>,
    /// Per rule of the policy, in rule order.
    pub per_rule: Vec<RuleCounters>,
}

/// Counters for one rule of the policy.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RuleCounters {
    /// `file:line` and the rule as summarised by `scrubber check`.
    pub rule: String,
    /// Inbound frames the rule matched (it was the first match).
    pub matched: u64,
    /// Frames it dropped (deny, or over a limit).
    pub dropped: u64,
    /// Frames it would have dropped, forwarded because of `observe`.
    pub would_drop: u64,
}

impl RuleCounters {
    /// Take `o`'s numbers (a reloaded, unchanged rule).
    pub fn copy_counts(&mut self, o: &RuleCounters) {
        self.matched = o.matched;
        self.dropped = o.dropped;
        self.would_drop = o.would_drop;
    }
}

/// Counters for one protected destination (a service; with `--protect`, one `IP[:PORT]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TargetCounters {
    /// The entry as configured, e.g. `198.18.0.10:80`.
    pub target: String,
    /// Inbound frames towards it.
    pub rx: u64,
    /// Inbound frames towards it that were forwarded.
    pub forwarded: u64,
    /// Inbound frames towards it answered by the scrubber (cookie SYN-ACKs).
    pub replied: u64,
    /// Inbound frames towards it that were dropped (any reason).
    pub dropped: u64,
}

impl TargetCounters {
    /// These numbers under another name (no allocation: `target` is moved in).
    pub fn clone_counts(&self, target: String) -> TargetCounters {
        TargetCounters { target, rx: self.rx, forwarded: self.forwarded, replied: self.replied, dropped: self.dropped }
    }
}

fn ser_reasons<S: serde::Serializer>(v: &[u64; DropReason::COUNT], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(DropReason::COUNT))?;
    for r in DropReason::ALL {
        m.serialize_entry(r.as_str(), &v[r.index()])?;
    }
    m.end()
}

/// Inverse of `ser_reasons`: names not known to this build are ignored, missing ones are zero.
fn de_reasons<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u64; DropReason::COUNT], D::Error> {
    let m = std::collections::BTreeMap::<String, u64>::deserialize(d)?;
    let mut v = [0; DropReason::COUNT];
    for r in DropReason::ALL {
        v[r.index()] = m.get(r.as_str()).copied().unwrap_or(0);
    }
    Ok(v)
}

/// `tcp_flags_inbound` is not serialised; it deserialises as zeros.
fn no_flags() -> [u64; 256] {
    [0; 256]
}

impl Counters {
    /// Zeroed counters with one [`TargetCounters`] per configured target.
    pub fn new(targets: &[String]) -> Self {
        Counters {
            rx_inbound: 0,
            rx_outbound: 0,
            forwarded_inbound: 0,
            forwarded_outbound: 0,
            replies: 0,
            dropped: [0; DropReason::COUNT],
            would_drop: [0; DropReason::COUNT],
            sessions_picked_up: 0,
            auto_proxy_engaged: 0,
            policy_installs: 0,
            conn_count_collisions: 0,
            passed_arp_nd: 0,
            passed_non_tcp: 0,
            passed_unprotected: 0,
            passed_other_ethertype: 0,
            passed_fragments: 0,
            vlan_tagged: 0,
            cookies_sent: 0,
            cookies_validated: 0,
            cookies_failed: 0,
            backend_syns_sent: 0,
            backend_syns_retransmitted: 0,
            backend_synacks_consumed: 0,
            backend_synacks_reacked: 0,
            rst_forwarded_inbound: 0,
            rst_forwarded_outbound: 0,
            rst_sent: 0,
            sessions_proxied: 0,
            sessions_tracked: 0,
            sessions_outbound: 0,
            sessions_reused: 0,
            sessions_closed: 0,
            outbound_no_session: 0,
            tcp_flags_inbound: [0; 256],
            per_target: targets.iter().map(|t| TargetCounters { target: t.clone(), ..Default::default() }).collect(),
            per_rule: Vec::new(),
        }
    }

    /// Count a drop.
    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.dropped[r.index()] += 1;
    }

    /// Frames dropped, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Frames received in `dir`.
    pub fn rx(&self, dir: Direction) -> u64 {
        match dir {
            Direction::Inbound => self.rx_inbound,
            Direction::Outbound => self.rx_outbound,
        }
    }

    /// Add another engine's counters to these (per-target entries are matched by position).
    pub fn merge(&mut self, o: &Counters) {
        macro_rules! add { ($($f:ident),*) => { $( self.$f += o.$f; )* } }
        add!(
            rx_inbound,
            rx_outbound,
            forwarded_inbound,
            forwarded_outbound,
            replies,
            passed_arp_nd,
            passed_non_tcp,
            passed_unprotected,
            passed_other_ethertype,
            passed_fragments,
            vlan_tagged,
            cookies_sent,
            cookies_validated,
            cookies_failed,
            backend_syns_sent,
            backend_syns_retransmitted,
            backend_synacks_consumed,
            backend_synacks_reacked,
            rst_forwarded_inbound,
            rst_forwarded_outbound,
            rst_sent,
            sessions_proxied,
            sessions_tracked,
            sessions_outbound,
            sessions_reused,
            sessions_closed,
            outbound_no_session,
            sessions_picked_up,
            auto_proxy_engaged,
            policy_installs,
            conn_count_collisions
        );
        for (a, b) in self.would_drop.iter_mut().zip(o.would_drop.iter()) {
            *a += b;
        }
        for (a, b) in self.per_rule.iter_mut().zip(o.per_rule.iter()) {
            a.matched += b.matched;
            a.dropped += b.dropped;
            a.would_drop += b.would_drop;
        }
        for (a, b) in self.dropped.iter_mut().zip(o.dropped.iter()) {
            *a += b;
        }
        for (a, b) in self.tcp_flags_inbound.iter_mut().zip(o.tcp_flags_inbound.iter()) {
            *a += b;
        }
        for (a, b) in self.per_target.iter_mut().zip(o.per_target.iter()) {
            a.rx += b.rx;
            a.forwarded += b.forwarded;
            a.replied += b.replied;
            a.dropped += b.dropped;
        }
    }
}
