//! The sans-IO packet engine: one frame and the time in, a [`Verdict`] out.
//!
//! The engine implements the TCP table of DESIGN.md for frames towards (and from) protected
//! services, in two SYN modes:
//!
//! * **proxy** — a SYN is answered with a SYN-ACK whose ISN is a SYN cookie, written into the
//!   SYN's own frame; nothing is remembered. The client's ACK (`ack - 1` a valid cookie for its
//!   4-tuple) creates the session and is rewritten into the SYN the client would have sent to
//!   the backend, with the client's original options. The backend's SYN-ACK is consumed: the
//!   backend gets its ACK, the client a window update (the cookie SYN-ACK advertised a zero
//!   window so the client waits for the backend). From then on sequence numbers, SACK blocks and
//!   timestamps are translated both ways for the whole session.
//! * **track** — handshakes are observed and forwarded unchanged; the session table remembers
//!   them (bounded: embryonic sessions never evict established ones).
//!
//! In both modes ACK, ACK-PSH, RST and FIN segments that belong to no session are dropped, RSTs
//! must fall inside the receiver's window, impossible flag combinations are dropped, and
//! connections opened by the protected servers themselves are tracked. Every drop has a named
//! [`DropReason`]; every decision is counted in [`Counters`].
//!
//! The engine allocates nothing per frame, takes no locks and makes no syscalls.

use crate::cookie::{CookieKey, SynCookies, SynOptions};
use crate::counters::Counters;
use crate::flow::FlowKey;
use crate::session::{
    tick, Session, SessionState, SessionTable, StateClass, Timeouts, F_ECN, F_FIN_CLIENT, F_FIN_SERVER, F_OUTBOUND,
    F_PROXIED, F_SACK, F_TS, F_TS_STRIP, WS_NONE,
};
use crate::verdict::{Direction, DropReason, Verdict};
use crate::wire::checksum;
use crate::wire::frame::{dissect, DissectError, Dissected, Frag, Net};
use crate::wire::tcp::{self, flags as tf, OptionsRepr, TcpOptions, TcpPacket};
use crate::wire::IPPROTO_TCP;
use core::net::IpAddr;
use std::sync::Arc;

use crate::limiter::{ConnCounts, Refusal};
use crate::policy::{PrepareOptions, Prepared, Retired, SynPolicy};
use crate::session::SVC_COUNTED;
use crate::wire::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_UDP};
use rulespec::ast::Action;
use rulespec::{Compiled, FragKind, Packet};

/// A protected destination: an address and optionally one port (all ports when `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protected {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

impl core::fmt::Display for Protected {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match (self.addr, self.port) {
            (IpAddr::V4(a), Some(p)) => write!(f, "{a}:{p}"),
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
            (a, None) => write!(f, "{a}"),
        }
    }
}

/// How SYNs towards protected services are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynMode {
    /// Answer with a cookie SYN-ACK; keep no state until the client proves its address.
    Proxy,
    /// Forward the SYN and remember the handshake in the (bounded) session table.
    Track,
}

impl SynMode {
    /// `"proxy"` or `"track"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SynMode::Proxy => "proxy",
            SynMode::Track => "track",
        }
    }
}

/// TCP options the cookie SYN-ACK advertises to clients (they must match what the backend
/// will use: the window scale is translated if the backend differs, the MSS is not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advertise {
    /// MSS advertised on IPv4.
    pub mss_v4: u16,
    /// MSS advertised on IPv6.
    pub mss_v6: u16,
    /// Window scale advertised (when the client offered window scaling), 0..=14.
    pub wscale: u8,
    /// Offer SACK (when the client offered it).
    pub sack: bool,
    /// Echo timestamps (when the client sent them).
    pub timestamps: bool,
}

impl Default for Advertise {
    fn default() -> Self {
        Advertise { mss_v4: 1460, mss_v6: 1440, wscale: 7, sack: true, timestamps: true }
    }
}

/// Engine configuration.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Destinations to protect.
    pub protect: Vec<Protected>,
    /// SYN handling.
    pub syn_mode: SynMode,
    /// Session table capacity (slots; rounded up to a power of two).
    pub table_capacity: usize,
    /// SYN cookie secret (SipHash key).
    pub cookie_key: [u8; 16],
    /// Cookie time slot length in seconds; the current and previous slot validate.
    pub cookie_slot_secs: u32,
    /// Options advertised in cookie SYN-ACKs.
    pub advertise: Advertise,
    /// Idle timeouts (services of a policy bring their own).
    pub timeouts: Timeouts,
    /// A compiled rule-file policy. When given, it replaces `protect` and `syn_mode`: its
    /// services are the protected destinations, its rules judge every inbound frame.
    pub policy: Option<Arc<Compiled>>,
    /// Engines sharing the traffic (workers): aggregate limits and `syn auto` thresholds are
    /// divided by it.
    pub rate_share: u32,
    /// Entries of each per-source limiter table.
    pub per_source_slots: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            protect: Vec::new(),
            syn_mode: SynMode::Proxy,
            table_capacity: 1 << 16,
            cookie_key: [0; 16],
            cookie_slot_secs: 64,
            advertise: Advertise::default(),
            timeouts: Timeouts::default(),
            policy: None,
            rate_share: 1,
            per_source_slots: 65_536,
        }
    }
}

impl EngineConfig {
    /// The compiled policy this configuration stands for: `policy` if given, else the
    /// `--protect` shorthand (one TCP service per target with `syn_mode`, no rules, default
    /// allow).
    pub fn compiled(&self) -> Result<Arc<Compiled>, EngineError> {
        if let Some(p) = &self.policy {
            return Ok(p.clone());
        }
        let targets: Vec<rulespec::Target> =
            self.protect.iter().map(|p| rulespec::Target { addr: p.addr, port: p.port }).collect();
        let syn = match self.syn_mode {
            SynMode::Proxy => rulespec::ast::SynMode::Proxy,
            SynMode::Track => rulespec::ast::SynMode::Track,
        };
        let pol = rulespec::protect_policy(&targets, syn);
        rulespec::compile(&pol).map(Arc::new).map_err(|e| EngineError::Config(e.to_string()))
    }

    /// How a policy is prepared for an engine built from this configuration.
    pub fn prepare_options(&self, now_ns: u64) -> PrepareOptions {
        PrepareOptions {
            per_source_slots: self.per_source_slots,
            rate_share: self.rate_share.max(1),
            seed: limiter_seed(&self.cookie_key),
            advertise: self.advertise,
            fixed_advertise: self.policy.is_none(),
            now_ns,
        }
    }

    /// Prepare `compiled` for an engine built from this configuration (allocates; do it away
    /// from the packet path, then hand the result to [`Engine::install`]).
    pub fn prepare(&self, compiled: Arc<Compiled>, now_ns: u64) -> Result<Prepared, EngineError> {
        Prepared::new(compiled, &self.prepare_options(now_ns)).map_err(|e| EngineError::Config(e.to_string()))
    }
}

fn limiter_seed(key: &[u8; 16]) -> u64 {
    u64::from_le_bytes(key[8..].try_into().unwrap_or([0; 8])) ^ 0x11e1_7e55_0b5e_ed00
}

/// Errors building an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The session table could not be allocated.
    #[error("session table: {0}")]
    Table(#[from] crate::session::TableError),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A frame buffer: `buf[..len]` is the frame; the engine may rewrite it and change `len`
/// (up to `buf.len()`). Answers need up to 134 bytes from the start of the frame; give every
/// frame a buffer of at least 256 bytes (a UMEM chunk is 2048 or 4096).
#[derive(Debug)]
pub struct FrameBuf<'a> {
    pub buf: &'a mut [u8],
    pub len: usize,
}

impl<'a> FrameBuf<'a> {
    /// Wrap a buffer holding a `len`-byte frame.
    pub fn new(buf: &'a mut [u8], len: usize) -> Self {
        FrameBuf { buf, len }
    }

    /// The frame.
    pub fn frame(&self) -> &[u8] {
        &self.buf[..self.len.min(self.buf.len())]
    }
}

/// Sequence-space "a is after b" (RFC 9293 modular comparison).
#[inline]
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// A window field converted from one scale shift to another.
#[inline]
fn rescale(field: u16, from: u8, to: u8) -> u16 {
    if from == to {
        return field;
    }
    let bytes = (field as u64) << from;
    (bytes >> to).min(0xffff) as u16
}

#[inline]
fn eff_ws(ws: u8) -> u8 {
    if ws == WS_NONE {
        0
    } else {
        ws.min(14)
    }
}

/// How many sessions' worth of slots the clock hand sweeps every `SWEEP_EVERY` frames.
const SWEEP_SLOTS: usize = 16;
const SWEEP_EVERY: u32 = 256;
/// Minimum interval between SYNs re-sent to a silent backend.
const BACKEND_SYN_RETRY_MS: u32 = 1_000;
/// Sequence distance beyond which a segment on a live proxied session is checked as a fresh
/// cookie ACK (a client that reused the 4-tuple after a close the scrubber did not see).
const FAR_SEQ: u32 = 1 << 24;

/// The TCP header fields the state machine reads, read once.
#[derive(Clone, Copy)]
struct SegHead {
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    sport: u16,
    dport: u16,
    payload_len: usize,
}

impl SegHead {
    #[inline]
    fn read(d: &Dissected, frame: &FrameBuf<'_>) -> Result<SegHead, DropReason> {
        let t =
            TcpPacket::new_checked(&frame.buf[d.l4_off..d.l4_off + d.l4_len]).map_err(|_| DropReason::TcpMalformed)?;
        Ok(SegHead {
            seq: t.seq_number(),
            ack: t.ack_number(),
            flags: t.flags(),
            window: t.window_len(),
            sport: t.src_port(),
            dport: t.dst_port(),
            payload_len: d.l4_len - t.header_len(),
        })
    }

    /// SYN, ACK, RST, FIN.
    #[inline]
    fn flag_bits(&self) -> (bool, bool, bool, bool) {
        let f = self.flags;
        (f & tf::SYN != 0, f & tf::ACK != 0, f & tf::RST != 0, f & tf::FIN != 0)
    }

    /// The session key, oriented client (ext side) / server (protected side).
    #[inline]
    fn key(&self, d: &Dissected, dir: Direction) -> FlowKey {
        let (c, cp, s, sp) = match dir {
            Direction::Inbound => (&d.src, self.sport, &d.dst, self.dport),
            Direction::Outbound => (&d.dst, self.dport, &d.src, self.sport),
        };
        if d.v6 {
            FlowKey::v6(*c, cp, *s, sp)
        } else {
            FlowKey::v4([c[0], c[1], c[2], c[3]], cp, [s[0], s[1], s[2], s[3]], sp)
        }
    }
}

/// Which TCP fields a segment header rewrite writes (the IP header is always written fresh:
/// minimal, no options or extension headers).
struct Segment {
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    opts: OptionsRepr,
}

/// The engine: one per worker core.
#[derive(Debug)]
pub struct Engine {
    /// The policy in force, with this engine's limiter and service state.
    pol: Prepared,
    /// `mode observe`: judge and count, forward everything, never answer.
    observe: bool,
    /// The policy has rules or a default other than allow (else rules are skipped).
    judge_rules: bool,
    /// Live connections per source (`max-conns`).
    conns: ConnCounts,
    /// Time of the first frame (start of the pickup window).
    started_ns: Option<u64>,
    /// Set by the rules for the frame being judged: its `max-conns` limit, and whether a
    /// refusal is only counted (observe).
    frame_max_conns: Option<(u32, bool)>,
    cookies: SynCookies,
    table: SessionTable,
    counters: Counters,
    /// Latest time seen (the clock never runs backwards inside the engine).
    now_ns: u64,
    frames: u32,
}

impl Engine {
    /// Build an engine (allocates the session table once).
    pub fn new(cfg: EngineConfig) -> Result<Engine, EngineError> {
        if cfg.advertise.wscale > 14 {
            return Err(EngineError::Config(format!("window scale {} is above 14 (RFC 7323)", cfg.advertise.wscale)));
        }
        if cfg.advertise.mss_v4 < 536 || cfg.advertise.mss_v6 < 1220 {
            return Err(EngineError::Config("advertised MSS below the protocol minimum (536 IPv4, 1220 IPv6)".into()));
        }
        let compiled = cfg.compiled()?;
        let pol = cfg.prepare(compiled, 0)?;
        let key = CookieKey::from_bytes(cfg.cookie_key);
        // The table's hash seed is derived from the cookie secret so it is secret too.
        let seed = u64::from_le_bytes(cfg.cookie_key[..8].try_into().unwrap_or([0; 8])) ^ 0x5eed_5c4b_b3e4_0001;
        let table = SessionTable::new(cfg.table_capacity, cfg.timeouts, seed)?;
        let mut e = Engine {
            pol,
            observe: false,
            judge_rules: true,
            conns: ConnCounts::new(seed.rotate_left(17)),
            started_ns: None,
            frame_max_conns: None,
            cookies: SynCookies::new(key, cfg.cookie_slot_secs),
            table,
            counters: Counters::new(&[]),
            now_ns: 0,
            frames: 0,
        };
        e.apply_installed(cfg.policy.is_none());
        Ok(e)
    }

    /// Per-target and per-rule counters, table timeouts and the global mode from the policy
    /// just put in `self.pol`.
    fn apply_installed(&mut self, shorthand: bool) {
        core::mem::swap(&mut self.counters.per_target, &mut self.pol.per_target);
        core::mem::swap(&mut self.counters.per_rule, &mut self.pol.per_rule);
        for (i, s) in self.pol.services.iter().enumerate() {
            if !shorthand {
                self.table.set_service_timeouts(i, s.timeouts);
            }
        }
        self.observe = self.pol.compiled.settings().mode == rulespec::ast::Mode::Observe;
        self.judge_rules =
            !self.pol.compiled.rules().is_empty() || self.pol.compiled.settings().default != Action::Allow;
    }

    /// Install a new policy between two frames (see [`crate::policy`]): one swap, no
    /// allocation or freeing here. Limiter state of unchanged rules, counters of rules and
    /// targets with the same name, and learned options survive. Returns the old policy, to be
    /// dropped away from the packet path.
    pub fn install(&mut self, mut next: Prepared) -> Retired {
        // Give the outgoing policy its counters back so `adopt` can carry them over.
        core::mem::swap(&mut self.counters.per_target, &mut self.pol.per_target);
        core::mem::swap(&mut self.counters.per_rule, &mut self.pol.per_rule);
        next.adopt(&mut self.pol);
        core::mem::swap(&mut self.pol, &mut next);
        self.apply_installed(false);
        self.counters.policy_installs += 1;
        Retired(next)
    }

    /// The compiled policy in force.
    pub fn policy(&self) -> &Arc<Compiled> {
        &self.pol.compiled
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Live sessions in the table.
    pub fn sessions(&self) -> usize {
        self.table.len()
    }

    /// The session table (statistics, memory).
    pub fn table(&self) -> &SessionTable {
        &self.table
    }

    /// The SYN mode of the first service (`Proxy` for `syn auto`), for reports.
    pub fn syn_mode(&self) -> SynMode {
        match self.pol.services.first().map(|s| s.syn) {
            Some(SynPolicy::Track) => SynMode::Track,
            _ => SynMode::Proxy,
        }
    }

    /// Housekeeping without traffic: advance the clock to `now_ns` and sweep up to `slots`
    /// session-table slots, freeing expired sessions. The per-frame sweep only moves with
    /// traffic; a data-plane worker calls this when its rings are idle so that a quiet box
    /// still reclaims dead sessions. Returns the number of sessions freed.
    pub fn housekeeping(&mut self, now_ns: u64, slots: usize) -> usize {
        if now_ns > self.now_ns {
            self.now_ns = now_ns;
        }
        let n = self.table.sweep(tick(self.now_ns), slots);
        self.release_departed();
        n
    }

    /// Count the end of every live-connection-limited session that left the table.
    #[inline]
    fn release_departed(&mut self) {
        let conns = &mut self.conns;
        self.table.drain_departed(|slot| conns.release(slot));
    }

    /// Direction of a frame by address: inbound when its destination is protected, outbound
    /// when its source is; `None` for neither (and for frames that are not IP).
    pub fn classify(&self, frame: &[u8]) -> Option<Direction> {
        let d = dissect(frame).ok()?;
        if !matches!(d.net, Net::Ipv4 | Net::Ipv6) {
            return None;
        }
        let c = &self.pol.compiled;
        if c.is_protected(d.v6, &d.dst) {
            Some(Direction::Inbound)
        } else if c.is_protected(d.v6, &d.src) {
            Some(Direction::Outbound)
        } else {
            None
        }
    }

    /// Judge one frame. `now_ns` is nanoseconds since the UNIX epoch (a capture's timestamps
    /// in replay). `extra` receives a second frame when the verdict is
    /// [`Verdict::ForwardWithReply`]. The frame in `frame` may be rewritten (forwarded with
    /// translated sequence numbers, or turned into an answer).
    pub fn process(
        &mut self,
        now_ns: u64,
        dir: Direction,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
    ) -> Verdict {
        if now_ns > self.now_ns {
            self.now_ns = now_ns;
        }
        let now = self.now_ns;
        self.frames = self.frames.wrapping_add(1);
        if self.frames % SWEEP_EVERY == 0 {
            self.table.sweep(tick(now), SWEEP_SLOTS);
        }
        match dir {
            Direction::Inbound => self.counters.rx_inbound += 1,
            Direction::Outbound => self.counters.rx_outbound += 1,
        }
        if self.started_ns.is_none() {
            self.started_ns = Some(now);
        }
        self.frame_max_conns = None;
        let (mut verdict, target) = self.judge(now, dir, frame, extra);
        self.release_departed();
        if let Verdict::Drop(r) = verdict {
            if self.observe {
                self.counters.would_drop[r.index()] += 1;
                verdict = Verdict::Forward;
            }
        }
        let c = &mut self.counters;
        match verdict {
            Verdict::Forward => match dir {
                Direction::Inbound => c.forwarded_inbound += 1,
                Direction::Outbound => c.forwarded_outbound += 1,
            },
            Verdict::Reply => c.replies += 1,
            Verdict::ForwardWithReply => {
                c.replies += 1;
                match dir {
                    Direction::Inbound => c.forwarded_inbound += 1,
                    Direction::Outbound => c.forwarded_outbound += 1,
                }
            }
            Verdict::Drop(r) => c.drop(r),
        }
        if dir == Direction::Inbound {
            if let Some(t) = target.and_then(|i| c.per_target.get_mut(i)) {
                t.rx += 1;
                match verdict {
                    Verdict::Forward | Verdict::ForwardWithReply => t.forwarded += 1,
                    Verdict::Reply => t.replied += 1,
                    Verdict::Drop(_) => t.dropped += 1,
                }
            }
        }
        verdict
    }

    /// The rules' verdict on an inbound IP frame: `Some(reason)` to drop it. Counts the
    /// rule; a drop by an `observe` rule is counted as a would-drop and `None` returned.
    #[inline]
    fn rules(&mut self, now: u64, d: &Dissected, frame: &FrameBuf<'_>) -> Option<DropReason> {
        let l4 = &frame.buf[d.l4_off.min(frame.len)..(d.l4_off + d.l4_len).min(frame.len)];
        let ports = matches!(d.proto, IPPROTO_TCP | IPPROTO_UDP) && d.frag != Frag::Later && l4.len() >= 4;
        let (sport, dport) =
            if ports { (u16::from_be_bytes([l4[0], l4[1]]), u16::from_be_bytes([l4[2], l4[3]])) } else { (0, 0) };
        let tcp_flags = if d.proto == IPPROTO_TCP && d.frag != Frag::Later && l4.len() >= 14 { l4[13] } else { 0 };
        let icmp_type = if matches!(d.proto, IPPROTO_ICMP | IPPROTO_ICMPV6) && d.frag != Frag::Later {
            l4.first().copied()
        } else {
            None
        };
        // From the IP header, not the frame: Ethernet padding is not part of the packet.
        let ip_len = (d.l4_off + d.l4_len - d.l3_off).min(usize::from(u16::MAX)) as u16;
        let pkt = Packet {
            v6: d.v6,
            src: &d.src,
            dst: &d.dst,
            proto: d.proto,
            sport,
            dport,
            tcp_flags,
            ip_len,
            frag: match d.frag {
                Frag::None => FragKind::None,
                Frag::First => FragKind::First,
                Frag::Later => FragKind::Later,
            },
            icmp_type,
        };
        let hit = self.pol.compiled.judge(&pkt);
        let rc = hit.rule.and_then(|i| self.counters.per_rule.get_mut(usize::from(i)));
        if let Some(rc) = rc {
            rc.matched += 1;
        }
        let reason = match hit.action {
            Action::Allow => return None,
            Action::Deny if hit.rule.is_some() => DropReason::RuleDeny,
            Action::Deny => DropReason::DefaultDeny,
            Action::Limit => {
                let rt = hit.rule.and_then(|i| self.pol.rules.get_mut(usize::from(i)))?;
                if let Some(n) = rt.max_conns {
                    self.frame_max_conns = Some((n, hit.observe));
                }
                let syn = tcp_flags & (tf::SYN | tf::ACK) == tf::SYN;
                let bytes = u64::from(ip_len);
                let refused = match &mut rt.source {
                    // A rule with only `new-conns` per source charges SYNs alone: other
                    // packets need not touch (or fill) the source table.
                    Some(t) if syn || t.limits().pps.is_some() || t.limits().bytes.is_some() => {
                        t.admit(&d.src, now, bytes, syn).err()
                    }
                    _ => None,
                };
                let refused = refused.or_else(|| match &mut rt.aggregate {
                    Some(a) => (!a.admit(now, bytes)).then_some(Refusal::Rate),
                    None => None,
                });
                match refused {
                    None => return None,
                    Some(Refusal::Rate) => DropReason::RateLimited,
                    Some(Refusal::NewConns) => DropReason::NewConnLimit,
                }
            }
        };
        let rc = hit.rule.and_then(|i| self.counters.per_rule.get_mut(usize::from(i)));
        if hit.observe {
            if let Some(rc) = rc {
                rc.would_drop += 1;
            }
            self.counters.would_drop[reason.index()] += 1;
            None
        } else {
            if let Some(rc) = rc {
                rc.dropped += 1;
            }
            Some(reason)
        }
    }

    /// `max-conns`: whether the frame being judged may open one more connection for `src`;
    /// `Err` when over the limit (enforced; an observe rule counts a would-drop).
    #[inline]
    fn conn_admit(&mut self, src: &[u8; 16]) -> Result<(), DropReason> {
        let Some((max, observe)) = self.frame_max_conns else { return Ok(()) };
        if self.conns.count(src) >= max {
            if observe {
                self.counters.would_drop[DropReason::ConnLimit.index()] += 1;
            } else {
                return Err(DropReason::ConnLimit);
            }
        }
        Ok(())
    }

    /// Count a new session of `src` against `max-conns` (when its rule has one): sets the
    /// session's counted bit and slot.
    #[inline]
    fn conn_count(&mut self, src: &[u8; 16], s: &mut Session) {
        if self.frame_max_conns.is_some() {
            match self.conns.acquire(src) {
                Some(slot) => {
                    s.svc |= SVC_COUNTED;
                    s.conn_slot = slot;
                }
                None => self.counters.conn_count_collisions += 1,
            }
        }
    }

    /// The effective SYN handling of service `svc` for a SYN arriving now (`syn auto`
    /// counts it). Observe mode never answers.
    #[inline]
    fn syn_proxy(&mut self, svc: usize, now: u64) -> bool {
        if self.observe {
            return false;
        }
        let Some(s) = self.pol.services.get_mut(svc) else { return false };
        match s.syn {
            SynPolicy::Proxy => true,
            SynPolicy::Track => false,
            SynPolicy::Auto { per_sec } => {
                if now.saturating_sub(s.win_start) >= 1_000_000_000 {
                    s.win_start = now;
                    s.win_syns = 0;
                }
                s.win_syns += 1;
                if s.win_syns > per_sec && now >= s.proxy_until {
                    self.counters.auto_proxy_engaged += 1;
                }
                if s.win_syns > per_sec {
                    s.proxy_until = s.win_start + 2_000_000_000;
                }
                now < s.proxy_until
            }
        }
    }

    /// Whether ACKs towards service `svc` may carry cookies (it answers SYNs with them, at
    /// least sometimes).
    #[inline]
    fn cookies_possible(&self, svc: usize) -> bool {
        !self.observe && self.pol.services.get(svc).is_some_and(|s| s.syn != SynPolicy::Track)
    }

    /// Learn the options a backend uses from its SYN-ACK (services that say `learn`; once
    /// per policy).
    fn learn(&mut self, svc: usize, v6: bool, o: &TcpOptions) {
        let Some(s) = self.pol.services.get_mut(svc) else { return };
        if s.learned || !s.learn.any() {
            return;
        }
        s.learned = true;
        if s.learn.mss {
            if let Some(m) = o.mss.filter(|&m| m >= 536) {
                if v6 {
                    s.adv.mss_v6 = m.max(1220);
                } else {
                    s.adv.mss_v4 = m;
                }
            }
        }
        if s.learn.wscale {
            if let Some(w) = o.wscale {
                s.adv.wscale = w.min(14);
            }
        }
        if s.learn.sack {
            s.adv.sack = o.sack_permitted;
        }
        if s.learn.timestamps {
            s.adv.timestamps = o.timestamp.is_some();
        }
    }

    fn judge(
        &mut self,
        now: u64,
        dir: Direction,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
    ) -> (Verdict, Option<usize>) {
        let len = frame.len.min(frame.buf.len());
        frame.len = len;
        let d = match dissect(&frame.buf[..len]) {
            Ok(d) => d,
            Err(e) => return (Verdict::Drop(dissect_reason(e)), None),
        };
        if d.vlans > 0 {
            self.counters.vlan_tagged += 1;
        }
        match d.net {
            Net::Arp => {
                self.counters.passed_arp_nd += 1;
                return (Verdict::Forward, None);
            }
            Net::Other => {
                self.counters.passed_other_ethertype += 1;
                return (Verdict::Forward, None);
            }
            Net::Ipv4 | Net::Ipv6 => {}
        }
        if dir == Direction::Inbound && !d.nd && self.judge_rules {
            if let Some(r) = self.rules(now, &d, frame) {
                // `default deny` does not cut TCP connections the table tracks (e.g. ones a
                // protected server opened itself); explicit rules do.
                if !(r == DropReason::DefaultDeny && self.tracked_tcp(now, &d, frame)) {
                    return (Verdict::Drop(r), self.target_of(&d, frame));
                }
            }
        }
        // The service side of the frame.
        let svc = match dir {
            Direction::Inbound => &d.dst,
            Direction::Outbound => &d.src,
        };
        if d.proto != IPPROTO_TCP {
            if d.nd {
                self.counters.passed_arp_nd += 1;
            } else if d.frag != Frag::None {
                self.counters.passed_fragments += 1;
            } else {
                self.counters.passed_non_tcp += 1;
            }
            return (Verdict::Forward, None);
        }
        if d.frag != Frag::None {
            if self.pol.compiled.is_protected(d.v6, svc) {
                return (Verdict::Drop(DropReason::TcpFragment), None);
            }
            self.counters.passed_fragments += 1;
            return (Verdict::Forward, None);
        }
        let h = match SegHead::read(&d, frame) {
            Ok(h) => h,
            Err(r) => return (Verdict::Drop(r), None),
        };
        let svc_port = match dir {
            Direction::Inbound => h.dport,
            Direction::Outbound => h.sport,
        };
        let target = match self.pol.compiled.service(d.v6, svc, IPPROTO_TCP, svc_port) {
            Some(t) => usize::from(t),
            None => {
                self.counters.passed_unprotected += 1;
                return (Verdict::Forward, None);
            }
        };
        let v = match dir {
            Direction::Inbound => self.tcp_inbound(now, &d, &h, frame, target),
            Direction::Outbound => self.tcp_outbound(now, &d, &h, frame, extra, target),
        };
        (v, Some(target))
    }

    /// Whether an inbound frame is TCP of a session in the table.
    fn tracked_tcp(&mut self, now: u64, d: &Dissected, frame: &FrameBuf<'_>) -> bool {
        if d.proto != IPPROTO_TCP || d.frag != Frag::None {
            return false;
        }
        match SegHead::read(d, frame) {
            Ok(h) => self.table.lookup(&h.key(d, Direction::Inbound), tick(now)).is_some(),
            Err(_) => false,
        }
    }

    /// The service a dropped inbound TCP or UDP frame was aimed at, for per-target counters.
    fn target_of(&self, d: &Dissected, frame: &FrameBuf<'_>) -> Option<usize> {
        if d.frag == Frag::Later || !matches!(d.proto, IPPROTO_TCP | IPPROTO_UDP) {
            return None;
        }
        let l4 = frame.buf.get(d.l4_off + 2..d.l4_off + 4)?;
        let port = u16::from_be_bytes([l4[0], l4[1]]);
        self.pol.compiled.service(d.v6, &d.dst, d.proto, port).map(usize::from)
    }

    /// Flag sanity shared by both directions: `Err` for combinations no TCP stack sends.
    #[inline]
    fn check_flags(f: u8) -> Result<(), DropReason> {
        let f = f & !(tf::ECE | tf::CWR);
        if f == 0 {
            return Err(DropReason::TcpNull);
        }
        if f & (tf::FIN | tf::PSH | tf::URG) == (tf::FIN | tf::PSH | tf::URG) {
            return Err(DropReason::TcpXmas);
        }
        if f & (tf::SYN | tf::FIN) == (tf::SYN | tf::FIN) {
            return Err(DropReason::TcpSynFin);
        }
        if f & (tf::SYN | tf::RST) == (tf::SYN | tf::RST) {
            return Err(DropReason::TcpSynRst);
        }
        let ok = match f & !tf::PSH {
            x if x == tf::SYN => f & tf::PSH == 0,
            x if x == tf::SYN | tf::ACK => f & tf::PSH == 0,
            x if x == tf::RST || x == tf::RST | tf::ACK => true,
            x if x == tf::ACK
                || x == tf::ACK | tf::FIN
                || x == tf::ACK | tf::URG
                || x == tf::ACK | tf::FIN | tf::URG =>
            {
                true
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(DropReason::TcpBadFlags)
        }
    }

    // ------------------------------------------------------------------ ext → int

    fn tcp_inbound(&mut self, now: u64, d: &Dissected, h: &SegHead, frame: &mut FrameBuf<'_>, svc: usize) -> Verdict {
        let tk = tick(now);
        self.counters.tcp_flags_inbound[h.flags as usize] += 1;
        if let Err(r) = Self::check_flags(h.flags) {
            return Verdict::Drop(r);
        }
        let key = h.key(d, Direction::Inbound);
        let SegHead { seq, ack, flags: fl, window: win, payload_len, .. } = *h;
        let (syn, is_ack, rst, fin) = h.flag_bits();

        let mut found = self.table.lookup(&key, tk);

        // ---- SYN (no ACK): a new connection, a retransmission, or port reuse.
        if syn && !is_ack {
            let mode = if self.syn_proxy(svc, now) { SynMode::Proxy } else { SynMode::Track };
            if let Some(id) = found {
                let s = *self.table.get(id);
                let retransmit = seq.wrapping_add(1) == s.next_c;
                match (s.state.class(), mode) {
                    (StateClass::Closing, _) => {
                        self.table.remove(id);
                        self.counters.sessions_reused += 1;
                        found = None;
                    }
                    (_, SynMode::Track) if retransmit && s.state == SessionState::SynSent => {
                        self.table.get_mut(id).last_seen = tk;
                        return Verdict::Forward;
                    }
                    (_, SynMode::Track) if retransmit => return Verdict::Drop(DropReason::SynInSession),
                    (_, SynMode::Track) => {
                        // A new ISN on a live 4-tuple: the client lost its state.
                        self.table.remove(id);
                        self.counters.sessions_reused += 1;
                        found = None;
                    }
                    (_, SynMode::Proxy) if retransmit => return Verdict::Drop(DropReason::SynInSession),
                    // Proxy: answer statelessly; the session is replaced only when the client
                    // proves itself with the cookie ACK (see FAR_SEQ below).
                    (_, SynMode::Proxy) => {}
                }
            }
            if let Err(r) = self.conn_admit(&d.src) {
                return Verdict::Drop(r);
            }
            return match mode {
                SynMode::Proxy => self.answer_cookie(now, d, frame, &key, seq, fl, svc),
                SynMode::Track => {
                    if found.is_some() {
                        return Verdict::Drop(DropReason::SynInSession);
                    }
                    let o = match self.options(d, frame) {
                        Ok(o) => o,
                        Err(r) => return Verdict::Drop(r),
                    };
                    let mut flags = 0;
                    if o.timestamp.is_some() {
                        flags |= F_TS;
                    }
                    if o.sack_permitted {
                        flags |= F_SACK;
                    }
                    let mut s = Session {
                        last_seen: tk,
                        state: SessionState::SynSent,
                        flags,
                        client_ws: o.wscale.unwrap_or(WS_NONE),
                        server_ws: WS_NONE,
                        adv_ws: WS_NONE,
                        svc: svc as u8,
                        win_c: win,
                        next_c: seq.wrapping_add(1),
                        ..Session::default()
                    };
                    self.conn_count(&d.src, &mut s);
                    match self.table.insert(&key, s) {
                        Ok(_) => {
                            self.counters.sessions_tracked += 1;
                            Verdict::Forward
                        }
                        Err(_) => Verdict::Drop(DropReason::SessionTableFull),
                    }
                }
            };
        }

        // ---- SYN-ACK from outside: only for connections a protected server opened.
        if syn {
            let Some(id) = found else { return Verdict::Drop(DropReason::SynAckNoSession) };
            let s = self.table.get_mut(id);
            return match s.state {
                SessionState::OutSynSent | SessionState::OutSynRecv => {
                    if ack != s.next_s {
                        return Verdict::Drop(DropReason::SynAckBadAck);
                    }
                    s.state = SessionState::OutSynRecv;
                    s.next_c = seq.wrapping_add(1);
                    s.win_c = win;
                    s.last_seen = tk;
                    Verdict::Forward
                }
                _ => Verdict::Drop(DropReason::SynAckNoSession),
            };
        }

        // ---- Everything else needs a session (or, in proxy mode, a cookie).
        let id = match found {
            Some(id) if self.table.get(id).state != SessionState::Closed => {
                let s = self.table.get(id);
                // A far-away sequence number on a live proxied session with a pure ACK: the
                // client may have reopened the 4-tuple (its SYN was answered statelessly).
                if self.cookies_possible(svc)
                    && is_ack
                    && !rst
                    && !fin
                    && s.state != SessionState::ProxySynSent
                    && seq.wrapping_sub(s.next_c).min(s.next_c.wrapping_sub(seq)) > FAR_SEQ
                {
                    if let Some(v) =
                        self.try_cookie_ack(now, d, frame, &key, (seq, ack, win, payload_len), Some(id), svc)
                    {
                        return v;
                    }
                }
                id
            }
            _ => {
                if rst {
                    return Verdict::Drop(DropReason::RstNoSession);
                }
                if fin {
                    return Verdict::Drop(DropReason::FinNoSession);
                }
                if self.cookies_possible(svc) {
                    if let Some(v) = self.try_cookie_ack(now, d, frame, &key, (seq, ack, win, payload_len), found, svc)
                    {
                        return v;
                    }
                }
                if let Some(v) = self.pickup(now, d, h, &key, svc) {
                    return v;
                }
                if self.cookies_possible(svc) {
                    self.counters.cookies_failed += 1;
                }
                return Verdict::Drop(DropReason::AckNoSession);
            }
        };

        let s = *self.table.get(id);
        match s.state {
            SessionState::ProxySynSent => {
                if rst {
                    if seq != s.next_c {
                        return Verdict::Drop(DropReason::RstOutOfWindow);
                    }
                    // Tell the backend: a bare RST in the sequence space it knows.
                    bare_rst(d, frame, seq);
                    let s = self.table.get_mut(id);
                    s.state = SessionState::Closed;
                    s.last_seen = tk;
                    self.counters.sessions_closed += 1;
                    self.counters.rst_forwarded_inbound += 1;
                    return Verdict::Forward;
                }
                // The client was told a zero window; what arrives now are its ACK
                // retransmissions and window probes. Use one to re-send the backend SYN if the
                // backend has been silent for a while.
                if tk.wrapping_sub(s.last_seen) >= BACKEND_SYN_RETRY_MS {
                    let tsval = self.options(d, frame).ok().and_then(|o| o.timestamp).map(|t| t.0);
                    let s = self.table.get_mut(id);
                    s.last_seen = tk;
                    if let Some(tv) = tsval {
                        s.next_s = tv;
                    }
                    let s = *s;
                    if self.write_backend_syn(d, frame, &key, &s).is_err() {
                        return Verdict::Drop(DropReason::NoBufferRoom);
                    }
                    self.counters.backend_syns_retransmitted += 1;
                    return Verdict::Forward;
                }
                Verdict::Drop(DropReason::ProxyHandshakePending)
            }
            SessionState::SynSent | SessionState::OutSynSent => Verdict::Drop(DropReason::AckBeforeSynAck),
            _ => {
                // SynRecv, OutSynRecv, Established, FinWait, Closing.
                if rst {
                    let w = ((s.win_s as u64) << eff_ws(s.server_ws)).clamp(1, 1 << 30) as u32;
                    let lo = s.next_c.wrapping_sub(w);
                    if seq.wrapping_sub(lo) > w.saturating_mul(2) {
                        return Verdict::Drop(DropReason::RstOutOfWindow);
                    }
                }
                let proxied = s.flags & F_PROXIED != 0;
                if proxied {
                    if let Err(r) = self.translate_inbound(d, frame, &s) {
                        return Verdict::Drop(r);
                    }
                }
                let s = self.table.get_mut(id);
                s.last_seen = tk;
                s.win_c = win;
                let end = seq.wrapping_add(payload_len as u32).wrapping_add(fin as u32);
                if seq_after(end, s.next_c) {
                    s.next_c = end;
                }
                if rst {
                    s.state = SessionState::Closed;
                    self.counters.sessions_closed += 1;
                    self.counters.rst_forwarded_inbound += 1;
                } else if fin {
                    s.flags |= F_FIN_CLIENT;
                    s.state = if s.flags & F_FIN_SERVER != 0 { SessionState::Closing } else { SessionState::FinWait };
                    if s.state == SessionState::Closing {
                        self.counters.sessions_closed += 1;
                    }
                } else if s.state == SessionState::SynRecv && is_ack && ack == s.next_s {
                    s.state = SessionState::Established;
                }
                Verdict::Forward
            }
        }
    }

    /// Parse the TCP options of the frame's segment.
    fn options(&self, d: &Dissected, frame: &FrameBuf<'_>) -> Result<TcpOptions, DropReason> {
        let t =
            TcpPacket::new_checked(&frame.buf[d.l4_off..d.l4_off + d.l4_len]).map_err(|_| DropReason::TcpMalformed)?;
        tcp::parse_options(t.options()).map_err(|_| DropReason::TcpBadOptions)
    }

    /// Options advertised to clients of service `svc`.
    #[inline]
    fn advertise(&self, svc: usize) -> Advertise {
        self.pol.services.get(svc).map(|s| s.adv).unwrap_or_default()
    }

    /// Mid-stream pickup: during the pickup window after start (the service's `pickup`, or
    /// the global `learning-window` if longer), a session-less ACK (no SYN, RST or FIN) towards
    /// a service is taken up as an established, tracked session instead of being dropped, so
    /// connections that were open before a restart survive. Counted in
    /// `sessions_picked_up`; an established pickup never evicts an established session.
    fn pickup(&mut self, now: u64, d: &Dissected, h: &SegHead, key: &FlowKey, svc: usize) -> Option<Verdict> {
        let (syn, _, rst, fin) = h.flag_bits();
        if syn || rst || fin || h.flags & tf::ACK == 0 {
            return None;
        }
        let window = self
            .pol
            .services
            .get(svc)?
            .pickup_ns
            .max(self.pol.compiled.settings().learning_window.as_nanos().min(u128::from(u64::MAX)) as u64);
        let start = self.started_ns?;
        if window == 0 || now.saturating_sub(start) >= window {
            return None;
        }
        if self.conn_admit(&d.src).is_err() {
            return Some(Verdict::Drop(DropReason::ConnLimit));
        }
        let mut s = Session {
            last_seen: tick(now),
            state: SessionState::Established,
            flags: 0,
            // Scales are unknown mid-stream: assume the largest so in-window RSTs pass.
            client_ws: 14,
            server_ws: 14,
            adv_ws: WS_NONE,
            svc: svc as u8,
            win_c: h.window,
            win_s: u16::MAX,
            next_c: h.seq.wrapping_add(h.payload_len as u32),
            next_s: h.ack,
            ..Session::default()
        };
        self.conn_count(&d.src, &mut s);
        match self.table.insert(key, s) {
            Ok(_) => {
                self.counters.sessions_picked_up += 1;
                Some(Verdict::Forward)
            }
            Err(_) => Some(Verdict::Drop(DropReason::SessionTableFull)),
        }
    }

    /// Proxy mode: turn the SYN into the cookie SYN-ACK, in place.
    #[allow(clippy::too_many_arguments)]
    fn answer_cookie(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        key: &FlowKey,
        seq: u32,
        fl: u8,
        svc: usize,
    ) -> Verdict {
        let o = match self.options(d, frame) {
            Ok(o) => o,
            Err(r) => return Verdict::Drop(r),
        };
        let adv = self.advertise(svc);
        let ts = o.timestamp.filter(|_| adv.timestamps);
        let syn = SynOptions {
            mss: o.mss.unwrap_or(0),
            wscale: o.wscale,
            sack_permitted: o.sack_permitted && adv.sack,
            timestamps: ts.is_some(),
            ecn: fl & (tf::ECE | tf::CWR) == (tf::ECE | tf::CWR),
        };
        let issued = self.cookies.issue(now, key, seq, &syn);
        let mut opts = OptionsRepr {
            mss: Some(if d.v6 { adv.mss_v6 } else { adv.mss_v4 }),
            wscale: o.wscale.map(|_| adv.wscale),
            sack_permitted: syn.sack_permitted,
            ..OptionsRepr::default()
        };
        if let (Some((client_tsval, _)), Some(tsval)) = (ts, issued.tsval) {
            opts.timestamp = Some((tsval, client_tsval));
        }
        let (sport, dport) = (key.client_port, key.server_port);
        let seg = Segment {
            src: d.dst,
            dst: d.src,
            sport: dport,
            dport: sport,
            seq: issued.isn,
            ack: seq.wrapping_add(1),
            flags: tf::SYN | tf::ACK | if syn.ecn { tf::ECE } else { 0 },
            window: 0,
            opts,
        };
        swap_macs(frame.buf);
        match write_segment(frame, d, &seg) {
            Ok(()) => {
                self.counters.cookies_sent += 1;
                Verdict::Reply
            }
            Err(()) => Verdict::Drop(DropReason::NoBufferRoom),
        }
    }

    /// Proxy mode: a session-less ACK (or one far outside a live session). `Some(verdict)` when
    /// `ack - 1` is a valid cookie: the session is created (replacing `old`) and the frame
    /// rewritten into the SYN towards the backend. `None` when the cookie does not validate.
    ///
    /// A bare ACK is also tried as a zero-window probe (`seq = ISN`, RFC 9293 §3.8.6.1): the
    /// cookie SYN-ACK advertised a zero window, so a client whose handshake ACK was lost
    /// probes with the sequence number just below `ISN + 1`.
    #[allow(clippy::too_many_arguments)]
    fn try_cookie_ack(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        key: &FlowKey,
        (seq, ack, win, payload_len): (u32, u32, u16, usize),
        old: Option<crate::session::SlotId>,
        svc: usize,
    ) -> Option<Verdict> {
        let o = self.options(d, frame).ok()?;
        let tsecr = o.timestamp.map(|t| t.1);
        let cookie = ack.wrapping_sub(1);
        let (dec, next_c) = match self.cookies.validate(now, key, seq.wrapping_sub(1), cookie, tsecr) {
            Ok(dec) => (dec, seq),
            Err(_) if payload_len == 0 => {
                (self.cookies.validate(now, key, seq, cookie, tsecr).ok()?, seq.wrapping_add(1))
            }
            Err(_) => return None,
        };
        if let Err(r) = self.conn_admit(&d.src) {
            return Some(Verdict::Drop(r));
        }
        if let Some(id) = old {
            self.table.remove(id);
            self.counters.sessions_reused += 1;
        }
        let mut flags = F_PROXIED;
        if dec.timestamps {
            flags |= F_TS;
        }
        if dec.sack_permitted {
            flags |= F_SACK;
        }
        if dec.ecn {
            flags |= F_ECN;
        }
        let adv_wscale = self.advertise(svc).wscale;
        let mut s = Session {
            last_seen: tick(now),
            state: SessionState::ProxySynSent,
            flags,
            client_ws: dec.wscale.unwrap_or(WS_NONE),
            server_ws: WS_NONE,
            adv_ws: if dec.wscale.is_some() { adv_wscale } else { WS_NONE },
            svc: svc as u8,
            conn_slot: 0,
            win_c: win,
            win_s: dec.mss,
            next_c,
            next_s: o.timestamp.map(|t| t.0).unwrap_or(0),
            seq_off: cookie,
            ts_off: tsecr.unwrap_or(0),
        };
        self.counters.cookies_validated += 1;
        self.conn_count(&d.src, &mut s);
        if self.table.insert(key, s).is_err() {
            return Some(Verdict::Drop(DropReason::SessionTableFull));
        }
        self.counters.sessions_proxied += 1;
        if self.write_backend_syn(d, frame, key, &s).is_err() {
            return Some(Verdict::Drop(DropReason::NoBufferRoom));
        }
        self.counters.backend_syns_sent += 1;
        Some(Verdict::Forward)
    }

    /// Rewrite the client's frame into the SYN it would have sent to the backend.
    fn write_backend_syn(&self, d: &Dissected, frame: &mut FrameBuf<'_>, key: &FlowKey, s: &Session) -> Result<(), ()> {
        let ts = s.flags & F_TS != 0;
        let client_ws = if s.client_ws == WS_NONE { None } else { Some(s.client_ws) };
        let window = ((s.win_c as u32) << eff_ws(s.client_ws)).min(0xffff) as u16;
        let seg = Segment {
            src: d.src,
            dst: d.dst,
            sport: key.client_port,
            dport: key.server_port,
            seq: s.next_c.wrapping_sub(1),
            ack: 0,
            flags: tf::SYN | if s.flags & F_ECN != 0 { tf::ECE | tf::CWR } else { 0 },
            window,
            opts: OptionsRepr {
                mss: Some(s.win_s), // ProxySynSent keeps the client's MSS here
                wscale: client_ws,
                sack_permitted: s.flags & F_SACK != 0,
                timestamp: if ts { Some((s.next_s, 0)) } else { None },
                ..OptionsRepr::default()
            },
        };
        write_segment(frame, d, &seg)
    }

    /// Client → backend translation of a proxied session: ack and SACK blocks from the cookie
    /// sequence space to the backend's, TSecr from the scrubber's clock to the backend's.
    fn translate_inbound(&self, d: &Dissected, frame: &mut FrameBuf<'_>, s: &Session) -> Result<(), DropReason> {
        let seg = &mut frame.buf[d.l4_off..d.l4_off + d.l4_len];
        let mut t = TcpPacket::new_checked(&mut *seg).map_err(|_| DropReason::TcpMalformed)?;
        let mut ck = t.checksum();
        if t.flags() & tf::ACK != 0 {
            let a = t.ack_number();
            let na = a.wrapping_sub(s.seq_off);
            t.set_ack_number(na);
            ck = checksum::update32(ck, a, na);
        }
        // Window: the client scales by its own shift; the backend assumes that shift only if
        // it negotiated scaling itself.
        let backend_view = if s.server_ws == WS_NONE { 0 } else { eff_ws(s.client_ws) };
        let w = t.window_len();
        let nw = rescale(w, eff_ws(s.client_ws), backend_view);
        if nw != w {
            t.set_window_len(nw);
            ck = checksum::update16(ck, w, nw);
        }
        let hl = t.header_len();
        t.set_checksum(ck);
        if hl > 20 {
            let o = tcp::parse_options(&seg[20..hl]).map_err(|_| DropReason::TcpBadOptions)?;
            let opts = &mut seg[20..hl];
            if let Some(off) = o.ts_offset {
                if s.flags & F_TS_STRIP != 0 {
                    // The backend did not negotiate timestamps: blank the option (kind and
                    // length sit just before TSval) so the segment keeps its length.
                    ck = blank_option(opts, off.wrapping_sub(2), 10, ck);
                } else {
                    // TSecr follows TSval.
                    ck = patch_u32(opts, off + 4, ck, |v| v.wrapping_sub(s.ts_off));
                }
            }
            if let Some(off) = o.sack_offset {
                for i in 0..o.sack_blocks as usize {
                    ck = patch_u32(opts, off + 8 * i, ck, |v| v.wrapping_sub(s.seq_off));
                    ck = patch_u32(opts, off + 8 * i + 4, ck, |v| v.wrapping_sub(s.seq_off));
                }
            }
            seg[16..18].copy_from_slice(&ck.to_be_bytes());
        }
        Ok(())
    }

    /// Backend → client translation of a proxied session: seq into the cookie sequence space,
    /// TSval into the scrubber's clock, window to the scale advertised to the client.
    fn translate_outbound(&self, d: &Dissected, frame: &mut FrameBuf<'_>, s: &Session) -> Result<(), DropReason> {
        let seg = &mut frame.buf[d.l4_off..d.l4_off + d.l4_len];
        let mut t = TcpPacket::new_checked(&mut *seg).map_err(|_| DropReason::TcpMalformed)?;
        let mut ck = t.checksum();
        let q = t.seq_number();
        let nq = q.wrapping_add(s.seq_off);
        t.set_seq_number(nq);
        ck = checksum::update32(ck, q, nq);
        let w = t.window_len();
        let nw = rescale(w, eff_ws(s.server_ws), eff_ws(s.adv_ws));
        if nw != w {
            t.set_window_len(nw);
            ck = checksum::update16(ck, w, nw);
        }
        let hl = t.header_len();
        t.set_checksum(ck);
        if hl > 20 && s.ts_off != 0 {
            let o = tcp::parse_options(&seg[20..hl]).map_err(|_| DropReason::TcpBadOptions)?;
            if let Some(off) = o.ts_offset {
                ck = patch_u32(&mut seg[20..hl], off, ck, |v| v.wrapping_add(s.ts_off));
                seg[16..18].copy_from_slice(&ck.to_be_bytes());
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ int → ext

    fn tcp_outbound(
        &mut self,
        now: u64,
        d: &Dissected,
        h: &SegHead,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
        svc: usize,
    ) -> Verdict {
        let tk = tick(now);
        if let Err(r) = Self::check_flags(h.flags) {
            return Verdict::Drop(r);
        }
        let key = h.key(d, Direction::Outbound);
        let SegHead { seq, ack, window: win, payload_len, .. } = *h;
        let (syn, is_ack, rst, fin) = h.flag_bits();
        let found = self.table.lookup(&key, tk);

        if syn && !is_ack {
            // A protected server opens a connection itself.
            if let Some(id) = found {
                let s = *self.table.get(id);
                if s.state == SessionState::OutSynSent && s.next_s == seq.wrapping_add(1) {
                    // Retransmission of the same SYN.
                    self.table.get_mut(id).last_seen = tk;
                    return Verdict::Forward;
                }
                // A server reusing the 4-tuple has lost (or closed) the old connection.
                self.counters.sessions_reused += 1;
                self.table.remove(id);
            }
            let o = self.options(d, frame).unwrap_or_default();
            let s = Session {
                last_seen: tk,
                state: SessionState::OutSynSent,
                flags: F_OUTBOUND,
                client_ws: WS_NONE,
                server_ws: o.wscale.unwrap_or(WS_NONE),
                adv_ws: WS_NONE,
                svc: svc as u8,
                win_s: win,
                next_s: seq.wrapping_add(1),
                ..Session::default()
            };
            return match self.table.insert(&key, s) {
                Ok(_) => {
                    self.counters.sessions_outbound += 1;
                    Verdict::Forward
                }
                Err(_) => Verdict::Drop(DropReason::SessionTableFull),
            };
        }

        let Some(id) = found else {
            if syn {
                return Verdict::Drop(DropReason::SynAckNoSession);
            }
            if rst {
                self.counters.rst_forwarded_outbound += 1;
            }
            self.counters.outbound_no_session += 1;
            return Verdict::Forward;
        };
        let s = *self.table.get(id);

        if syn {
            // SYN-ACK from the backend.
            return match s.state {
                SessionState::ProxySynSent => self.consume_backend_synack(tk, d, h, &key, frame, extra, id),
                SessionState::SynSent | SessionState::SynRecv => {
                    if ack != s.next_c {
                        return Verdict::Drop(DropReason::SynAckBadAck);
                    }
                    let o = self.options(d, frame).unwrap_or_default();
                    self.learn(svc, d.v6, &o);
                    let s = self.table.get_mut(id);
                    s.state = SessionState::SynRecv;
                    s.next_s = seq.wrapping_add(1);
                    s.win_s = win;
                    s.server_ws = o.wscale.unwrap_or(WS_NONE);
                    s.last_seen = tk;
                    Verdict::Forward
                }
                _ if s.flags & F_PROXIED != 0 && seq.wrapping_add(1) == s.next_s => {
                    // The backend did not get our ACK and retransmits its SYN-ACK: ACK again.
                    self.reack_backend(d, &key, frame, &s)
                }
                _ => Verdict::Drop(DropReason::SynAckNoSession),
            };
        }

        let proxied = s.flags & F_PROXIED != 0;
        if proxied {
            if s.state == SessionState::ProxySynSent {
                // Nothing but the SYN-ACK is expected yet. A RST (port closed, backend
                // refusing) goes to the client in the sequence space it knows.
                if !rst {
                    return Verdict::Drop(DropReason::ProxyHandshakePending);
                }
                bare_rst(d, frame, s.seq_off.wrapping_add(1));
            } else if let Err(r) = self.translate_outbound(d, frame, &s) {
                return Verdict::Drop(r);
            }
        }
        let s = self.table.get_mut(id);
        s.last_seen = tk;
        s.win_s = win;
        let end = seq.wrapping_add(payload_len as u32).wrapping_add(fin as u32);
        if s.state != SessionState::ProxySynSent && seq_after(end, s.next_s) {
            s.next_s = end;
        }
        if rst {
            if s.state != SessionState::Closed {
                self.counters.sessions_closed += 1;
            }
            s.state = SessionState::Closed;
            self.counters.rst_forwarded_outbound += 1;
        } else if fin {
            s.flags |= F_FIN_SERVER;
            if s.state != SessionState::Closed {
                let was = s.state;
                s.state = if s.flags & F_FIN_CLIENT != 0 { SessionState::Closing } else { SessionState::FinWait };
                if s.state == SessionState::Closing && was != SessionState::Closing {
                    self.counters.sessions_closed += 1;
                }
            }
        } else if s.state == SessionState::OutSynRecv && is_ack && ack == s.next_c {
            s.state = SessionState::Established;
        }
        Verdict::Forward
    }

    /// The backend answered the proxied SYN: record the offsets, ACK the backend (into
    /// `extra`, sent back out int) and give the client its window (the frame, sent out ext).
    #[allow(clippy::too_many_arguments)]
    fn consume_backend_synack(
        &mut self,
        tk: u32,
        d: &Dissected,
        h: &SegHead,
        key: &FlowKey,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
        id: crate::session::SlotId,
    ) -> Verdict {
        let SegHead { seq, ack, window: win, .. } = *h;
        let s0 = *self.table.get(id);
        if ack != s0.next_c {
            return Verdict::Drop(DropReason::SynAckBadAck);
        }
        let o = match self.options(d, frame) {
            Ok(o) => o,
            Err(r) => return Verdict::Drop(r),
        };
        self.learn(usize::from(s0.svc & 0x7f), d.v6, &o);
        let client_tsval = s0.next_s;
        let our_tsval = s0.ts_off;
        let cookie_isn = s0.seq_off;
        let ts = s0.flags & F_TS != 0;
        let server_tsval = o.timestamp.map(|t| t.0);
        let s = self.table.get_mut(id);
        s.seq_off = cookie_isn.wrapping_sub(seq);
        s.ts_off = match (ts, server_tsval) {
            (true, Some(sv)) => our_tsval.wrapping_sub(sv),
            _ => 0,
        };
        s.server_ws = o.wscale.unwrap_or(WS_NONE);
        if ts && server_tsval.is_none() {
            s.flags |= F_TS_STRIP;
        }
        s.win_s = win;
        s.next_s = seq.wrapping_add(1);
        s.state = SessionState::Established;
        s.last_seen = tk;
        let s = *s;

        // The ACK to the backend, built from a copy of the SYN-ACK.
        if extra.buf.len() < frame.len {
            return Verdict::Drop(DropReason::NoBufferRoom);
        }
        extra.buf[..frame.len].copy_from_slice(&frame.buf[..frame.len]);
        extra.len = frame.len;
        swap_macs(extra.buf);
        let backend_ack = Segment {
            src: d.dst,
            dst: d.src,
            sport: key.client_port,
            dport: key.server_port,
            seq: s.next_c,
            ack: seq.wrapping_add(1),
            flags: tf::ACK,
            window: s.win_c,
            opts: OptionsRepr {
                timestamp: match (ts, server_tsval) {
                    (true, Some(sv)) => Some((client_tsval, sv)),
                    _ => None,
                },
                ..OptionsRepr::default()
            },
        };
        if write_segment(extra, d, &backend_ack).is_err() {
            return Verdict::Drop(DropReason::NoBufferRoom);
        }
        // The window update to the client.
        // A SYN-ACK's window is never scaled.
        let window = rescale(win, 0, eff_ws(s.adv_ws));
        let update = Segment {
            src: d.src,
            dst: d.dst,
            sport: key.server_port,
            dport: key.client_port,
            seq: cookie_isn.wrapping_add(1),
            ack: s.next_c,
            flags: tf::ACK,
            window,
            opts: OptionsRepr {
                timestamp: match (ts, server_tsval) {
                    (true, Some(sv)) => Some((sv.wrapping_add(s.ts_off), client_tsval)),
                    _ => None,
                },
                ..OptionsRepr::default()
            },
        };
        if write_segment(frame, d, &update).is_err() {
            return Verdict::Drop(DropReason::NoBufferRoom);
        }
        self.counters.backend_synacks_consumed += 1;
        Verdict::ForwardWithReply
    }

    /// A retransmitted backend SYN-ACK on an open proxied session: ACK it again.
    fn reack_backend(&mut self, d: &Dissected, key: &FlowKey, frame: &mut FrameBuf<'_>, s: &Session) -> Verdict {
        let o = self.options(d, frame).unwrap_or_default();
        let seg = Segment {
            src: d.dst,
            dst: d.src,
            sport: key.client_port,
            dport: key.server_port,
            seq: s.next_c,
            ack: s.next_s,
            flags: tf::ACK,
            window: s.win_c,
            opts: OptionsRepr {
                timestamp: match (s.flags & F_TS != 0, o.timestamp) {
                    // TSval: what the backend recorded from the client (its TSecr), so PAWS passes.
                    (true, Some((sv, se))) => Some((se, sv)),
                    _ => None,
                },
                ..OptionsRepr::default()
            },
        };
        swap_macs(frame.buf);
        if write_segment(frame, d, &seg).is_err() {
            return Verdict::Drop(DropReason::NoBufferRoom);
        }
        self.counters.backend_synacks_reacked += 1;
        Verdict::Reply
    }
}

/// Turn the frame's segment into a bare RST (no ACK) with sequence number `seq`, checksum
/// recomputed; addresses and ports stay.
fn bare_rst(d: &Dissected, frame: &mut FrameBuf<'_>, seq: u32) {
    let seg = &mut frame.buf[d.l4_off..d.l4_off + d.l4_len];
    if let Ok(mut t) = TcpPacket::new_checked(&mut *seg) {
        t.set_seq_number(seq);
        t.set_ack_number(0);
        t.set_flags(tf::RST);
    }
    tcp::fill_checksum(seg, &d.src, &d.dst, d.v6);
}

fn dissect_reason(e: DissectError) -> DropReason {
    match e {
        DissectError::Ethernet => DropReason::EthTruncated,
        DissectError::Vlan => DropReason::VlanMalformed,
        DissectError::Ipv4 => DropReason::Ipv4Malformed,
        DissectError::Ipv4Checksum => DropReason::Ipv4BadChecksum,
        DissectError::Ipv6 => DropReason::Ipv6Malformed,
        DissectError::Tcp => DropReason::TcpMalformed,
        DissectError::L4 => DropReason::L4Truncated,
    }
}

fn swap_macs(buf: &mut [u8]) {
    if buf.len() >= 12 {
        let (a, b) = buf.split_at_mut(6);
        a.swap_with_slice(&mut b[..6]);
    }
}

/// Read a big-endian u32 at `off` in `b`, replace it with `f(old)` and return the updated
/// checksum.
#[inline]
fn patch_u32(b: &mut [u8], off: usize, ck: u16, f: impl Fn(u32) -> u32) -> u16 {
    let Some(field) = b.get_mut(off..off + 4) else { return ck };
    let old = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
    let new = f(old);
    field.copy_from_slice(&new.to_be_bytes());
    checksum::update32(ck, old, new)
}

/// Overwrite `len` bytes at `at` in the TCP options (which start at an even offset of the
/// header, 20) with NOP options and return the updated checksum.
fn blank_option(opts: &mut [u8], at: usize, len: usize, ck: u16) -> u16 {
    let Some(end) = at.checked_add(len).filter(|&e| e <= opts.len()) else { return ck };
    // Work on 16-bit words aligned to the TCP header (options start at byte 20).
    let (lo, hi) = (at & !1, (end + 1) & !1);
    let mut old = [0u8; 16];
    let span = hi.min(opts.len()) - lo;
    if span > old.len() {
        return ck;
    }
    old[..span].copy_from_slice(&opts[lo..lo + span]);
    opts[at..end].fill(tcp::kind::NOP);
    let mut ck = ck;
    for i in (0..span).step_by(2) {
        let o = u16::from_be_bytes([old[i], *old.get(i + 1).unwrap_or(&0)]);
        let n = u16::from_be_bytes([opts[lo + i], *opts.get(lo + i + 1).unwrap_or(&0)]);
        if o != n {
            ck = checksum::update16(ck, o, n);
        }
    }
    ck
}

/// Write a fresh IP header (no options, no extension headers) and a TCP segment without
/// payload at the frame's L3 offset; the Ethernet header and VLAN tags are left as they are.
fn write_segment(frame: &mut FrameBuf<'_>, d: &Dissected, s: &Segment) -> Result<(), ()> {
    let opt_len = s.opts.buffer_len();
    let tcp_len = 20 + opt_len;
    let ip_len = if d.v6 { 40 } else { 20 };
    let total = d.l3_off + ip_len + tcp_len;
    if total > frame.buf.len() || opt_len > 40 {
        return Err(());
    }
    let b = &mut frame.buf[d.l3_off..total];
    if d.v6 {
        b[0] = 0x60;
        b[1] = 0;
        b[2] = 0;
        b[3] = 0;
        b[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        b[6] = IPPROTO_TCP;
        b[7] = 64;
        b[8..24].copy_from_slice(&s.src);
        b[24..40].copy_from_slice(&s.dst);
    } else {
        b[0] = 0x45;
        b[1] = 0;
        b[2..4].copy_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
        b[4..6].copy_from_slice(&[0, 0]);
        b[6..8].copy_from_slice(&[0x40, 0]);
        b[8] = 64;
        b[9] = IPPROTO_TCP;
        b[10..12].copy_from_slice(&[0, 0]);
        b[12..16].copy_from_slice(&s.src[..4]);
        b[16..20].copy_from_slice(&s.dst[..4]);
        let ck = checksum::finish(checksum::sum(&b[..20]));
        b[10..12].copy_from_slice(&ck.to_be_bytes());
    }
    let t = &mut b[ip_len..];
    t[0..2].copy_from_slice(&s.sport.to_be_bytes());
    t[2..4].copy_from_slice(&s.dport.to_be_bytes());
    t[4..8].copy_from_slice(&s.seq.to_be_bytes());
    t[8..12].copy_from_slice(&s.ack.to_be_bytes());
    t[12] = ((tcp_len / 4) as u8) << 4;
    t[13] = s.flags;
    t[14..16].copy_from_slice(&s.window.to_be_bytes());
    t[16..20].copy_from_slice(&[0, 0, 0, 0]);
    if s.opts.emit(&mut t[20..]) != opt_len {
        return Err(());
    }
    tcp::fill_checksum(t, &s.src, &s.dst, d.v6);
    frame.len = total;
    Ok(())
}
