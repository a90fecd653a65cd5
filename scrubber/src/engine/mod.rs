//! Layer 2, the sans-IO packet engine: one frame and the time in, a [`Verdict`] out.
//!
//! A frame goes through [`Engine::process`] in this order, each step in its own room:
//!
//! 1. **dissect** ([`crate::wire::frame::dissect`]): the one parse of the frame — addresses,
//!    ports, flags, the TCP header and options. Malformed frames are a verdict, never a panic.
//! 2. **rules** ([`policy`]): every inbound IP frame, first match wins, then the default;
//!    limits per source and aggregate ([`policy::limiter`]).
//! 3. **service**: TCP towards a protected service meets its TCP protection; anything else
//!    passes unchanged.
//! 4. **tcp** ([`tcp`]): the state machine of DESIGN.md's TCP table, one function per
//!    session state, in both SYN modes:
//!    * **proxy** — a SYN is answered with a SYN-ACK whose ISN is a SYN cookie ([`cookie`]),
//!      written into the SYN's own frame; nothing is remembered. The client's ACK (`ack - 1` a
//!      valid cookie for its 4-tuple) creates the session and is rewritten into the SYN the
//!      client would have sent to the backend. The backend's SYN-ACK is consumed: the backend
//!      gets its ACK, the client a window update (the cookie SYN-ACK advertised a zero window).
//!      From then on sequence numbers, SACK blocks and timestamps are translated both ways.
//!    * **track** — handshakes are observed and forwarded unchanged; the session table
//!      ([`session`]) remembers them (bounded: embryonic sessions never evict established ones).
//! 5. **count** ([`counters`]): every decision, by reason, target, rule and flag combination.
//!
//! In both modes ACK, ACK-PSH, RST and FIN segments that belong to no session are dropped, RSTs
//! must fall inside the receiver's window, impossible flag combinations are dropped, and
//! connections opened by the protected servers themselves are tracked.
//!
//! The engine allocates nothing per frame, takes no locks and makes no syscalls.

pub mod ban;
pub mod batch;
pub mod config;
pub mod cookie;
pub mod counters;
pub mod detect;
pub mod flow;
pub mod http;
pub mod icmp;
pub mod policy;
pub mod session;
pub mod snapshot;
pub mod sources;
pub mod sync;
pub mod tcp;
pub mod verdict;

use std::sync::Arc;

use rulespec::ast::Action;
use rulespec::Compiled;

pub use batch::{Job, MAX_BATCH};
pub use config::{Advertise, EngineConfig, EngineError, Protected, SynMode};
pub use verdict::{Direction, DropReason, Verdict};

use crate::wire::frame::{dissect, dissect_into, DissectError, Dissected, Frag, Net};
use crate::wire::IPPROTO_TCP;
use cookie::{CookieKey, SynCookies};
use counters::Counters;
use policy::limiter::{BucketState, ConnCounts, TokenBucket};
use policy::{Prepared, Retired, SynPolicy};
use session::{tick, SessionTable};
use tcp::recent::{BackendMss, RecentSyns};
use tcp::stash::Stash;

/// How many sessions' worth of slots the clock hand sweeps every `SWEEP_EVERY` frames.
const SWEEP_SLOTS: usize = 16;
const SWEEP_EVERY: u32 = 256;
/// ICMP too-big answers an engine may send: a flood of large frames from spoofed sources must
/// not turn the box into a reflector.
const ICMP_BUDGET: TokenBucket = TokenBucket { rate: 1000, burst: 100 };

/// A frame buffer: `buf[..len]` is the frame; the engine may rewrite it and change `len`
/// (up to `buf.len()`). Answers need up to 134 bytes from the start of the frame; give every
/// frame a buffer of at least 256 bytes (a UMEM chunk is 2048 or 4096).
#[derive(Debug)]
pub struct FrameBuf<'a> {
    /// The buffer holding the frame.
    pub buf: &'a mut [u8],
    /// The frame's length.
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
    /// Set by the rules for the frame being judged: the address class of its destination.
    frame_dst_class: Option<u32>,
    /// Set by the rules for the frame being judged: the `limit` rule whose `per-source
    /// requests` counts its requests, and whether that rule only observes.
    frame_req_rule: Option<(u16, bool)>,
    /// Bit `i` set when service `i` has `http` checks.
    http_svcs: u128,
    /// Bans, shared by the engines of the process.
    bans: Arc<ban::BanTable>,
    /// Records for the peers of a fleet (session streaming), when enabled.
    sync: Option<Box<sync::SyncRing>>,
    sync_stats: sync::SyncStats,
    cookies: SynCookies,
    table: SessionTable,
    /// New SYNs on live 4-tuples (reconnects on a busy port).
    recent_syns: RecentSyns,
    /// The MSS each backend last announced.
    backend_mss: BackendMss,
    /// Data that came with cookie ACKs, until the backend handshake completes.
    stash: Stash,
    /// MTU of the egress link by arrival direction: [towards int, towards ext]; 0 = unknown.
    mtu: [u16; 2],
    /// ICMP too-big answers left.
    icmp_budget: BucketState,
    counters: Counters,
    /// Latest time seen (the clock never runs backwards inside the engine).
    now_ns: u64,
    frames: u32,
    /// The probe stage 2 of a batch computed for the frame being judged (see [`batch`]).
    frame_probe: Option<(flow::FlowKey, session::Probe)>,
    /// Stages 1–3 of a batch; out of its place only during [`Engine::process_batch`].
    scratch: Option<Box<batch::Scratch>>,
}

impl Engine {
    /// Build an engine (allocates the session table once).
    pub fn new(cfg: EngineConfig) -> Result<Engine, EngineError> {
        cfg.validate()?;
        let compiled = cfg.compiled()?;
        let pol = cfg.prepare(compiled, 0)?;
        let seed = cfg.table_seed();
        let table = SessionTable::new(cfg.table_capacity, cfg.timeouts, seed)?;
        let mut e = Engine {
            pol,
            observe: false,
            judge_rules: true,
            conns: ConnCounts::new(seed.rotate_left(17)),
            started_ns: None,
            frame_max_conns: None,
            frame_dst_class: None,
            frame_req_rule: None,
            http_svcs: 0,
            bans: cfg.bans.clone().unwrap_or_else(|| Arc::new(ban::BanTable::new(4096, seed.rotate_left(3)))),
            sync: None,
            sync_stats: sync::SyncStats::default(),
            cookies: SynCookies::new(CookieKey::from_bytes(cfg.cookie_key), cfg.cookie_slot_secs),
            table,
            recent_syns: RecentSyns::new(seed.rotate_left(29)),
            backend_mss: BackendMss::new(seed.rotate_left(41)),
            stash: Stash::new(seed.rotate_left(53)),
            mtu: [cfg.int_mtu, cfg.ext_mtu],
            icmp_budget: BucketState::full(&ICMP_BUDGET, 0),
            counters: Counters::new(&[]),
            now_ns: 0,
            frames: 0,
            frame_probe: None,
            scratch: Some(batch::Scratch::new()),
        };
        e.apply_installed(cfg.policy.is_none());
        Ok(e)
    }

    /// Per-target and per-rule counters, table timeouts and the global mode from the policy
    /// just put in `self.pol`.
    fn apply_installed(&mut self, shorthand: bool) {
        core::mem::swap(&mut self.counters.per_target, &mut self.pol.per_target);
        core::mem::swap(&mut self.counters.per_rule, &mut self.pol.per_rule);
        core::mem::swap(&mut self.counters.top_sources, &mut self.pol.top_sources);
        if !shorthand {
            for (i, s) in self.pol.services.iter().enumerate() {
                self.table.set_service_timeouts(i, s.timeouts);
            }
        }
        self.observe = self.pol.compiled.settings().mode == rulespec::ast::Mode::Observe;
        self.http_svcs = 0;
        for (i, s) in self.pol.services.iter().enumerate().take(128) {
            if s.http.is_some() {
                self.http_svcs |= 1 << i;
            }
        }
        self.judge_rules =
            !self.pol.compiled.rules().is_empty() || self.pol.compiled.settings().default != Action::Allow;
    }

    /// Install a new policy between two frames (see [`policy`]): one swap, no allocation or
    /// freeing here. Limiter state of unchanged rules, counters of rules and targets with the
    /// same name, and learned options survive. Returns the old policy, to be dropped away from
    /// the packet path.
    pub fn install(&mut self, mut next: Prepared) -> Retired {
        // Give the outgoing policy its counters back so `adopt` can carry them over.
        core::mem::swap(&mut self.counters.per_target, &mut self.pol.per_target);
        core::mem::swap(&mut self.counters.per_rule, &mut self.pol.per_rule);
        core::mem::swap(&mut self.counters.top_sources, &mut self.pol.top_sources);
        next.adopt(&mut self.pol);
        if let Some((k, at)) = next.cookie_key.take() {
            if self.cookies.rotate(CookieKey::from_bytes(k), self.now_ns.max(at)) {
                self.counters.cookie_secret_rotations += 1;
            }
        }
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

    /// The limiters' statistics, summed over the rules of the policy in force.
    pub fn limiter_stats(&self) -> policy::limiter::LimiterStats {
        let mut l = policy::limiter::LimiterStats::default();
        for t in self.pol.rules.iter().flat_map(|r| r.source.iter().chain(r.requests.iter())) {
            l.add_table(t);
        }
        l
    }

    /// The HTTP state table's statistics (zero without `http` services).
    pub fn http_table_stats(&self) -> http::HttpTableStats {
        self.pol.http.as_ref().map(|t| t.stats()).unwrap_or_default()
    }

    /// The ban table this engine consults.
    pub fn bans(&self) -> &Arc<ban::BanTable> {
        &self.bans
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
        frame.len = frame.len.min(frame.buf.len());
        let mut d = Dissected::EMPTY;
        let r = dissect_into(&frame.buf[..frame.len], &mut d);
        self.judge_dissected(now_ns, dir, r.map(|()| &d), frame, extra)
    }

    /// Everything after the dissection, shared by [`Engine::process`] and the batch path.
    #[inline]
    fn judge_dissected(
        &mut self,
        now_ns: u64,
        dir: Direction,
        d: Result<&Dissected, DissectError>,
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
        self.frame_dst_class = None;
        self.frame_req_rule = None;
        let (verdict, target) = match d {
            Ok(d) => {
                let (v, t) = self.judge(now, dir, d, frame, extra);
                if dir == Direction::Inbound {
                    self.count_class(now, d, v, t);
                }
                (v, t)
            }
            Err(e) => (Verdict::Drop(dissect_reason(e)), None),
        };
        self.release_departed();
        self.account(dir, verdict, target)
    }

    /// Count the verdict (turning a drop into a forward in observe mode) and return it.
    #[inline]
    fn account(&mut self, dir: Direction, mut verdict: Verdict, target: Option<usize>) -> Verdict {
        if let Verdict::Drop(r) = verdict {
            if self.observe {
                self.counters.count_would_drop(r);
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
            Verdict::ReplyTwice => c.replies += 2,
            Verdict::ForwardWithReply => {
                c.replies += 1;
                match dir {
                    Direction::Inbound => c.forwarded_inbound += 1,
                    Direction::Outbound => c.forwarded_outbound += 1,
                }
            }
            Verdict::Drop(r) => c.drop(r),
            Verdict::Reset(r) => {
                c.drop(r);
                c.rst_sent += 2;
            }
        }
        if dir == Direction::Inbound {
            if let Some(t) = target.and_then(|i| c.per_target.get_mut(i)) {
                t.rx += 1;
                match verdict {
                    Verdict::Forward | Verdict::ForwardWithReply => t.forwarded += 1,
                    Verdict::Reply | Verdict::ReplyTwice => t.replied += 1,
                    Verdict::Drop(_) | Verdict::Reset(_) => t.dropped += 1,
                }
            }
        }
        verdict
    }

    /// Stages 2–4 for a dissected frame: the verdict and the service (target) it was aimed at.
    fn judge(
        &mut self,
        now: u64,
        dir: Direction,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
    ) -> (Verdict, Option<usize>) {
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
        if dir == Direction::Inbound && self.bans.any() && self.bans.banned(d.v6, &d.src, now) {
            return (Verdict::Drop(DropReason::Banned), self.target_of(d));
        }
        if dir == Direction::Inbound && !d.nd && self.judge_rules {
            if let Some(r) = self.rules(now, d) {
                // `default deny` does not cut TCP connections the table tracks (e.g. ones a
                // protected server opened itself); explicit rules do.
                if !(r == DropReason::DefaultDeny && self.tracked_tcp(now, d)) {
                    return (Verdict::Drop(r), self.target_of(d));
                }
            }
        }
        // The service side of the frame.
        let (svc_addr, svc_port) = match dir {
            Direction::Inbound => (&d.dst, d.dport),
            Direction::Outbound => (&d.src, d.sport),
        };
        if d.proto != IPPROTO_TCP {
            if d.nd {
                self.counters.passed_arp_nd += 1;
            } else if d.frag != Frag::None {
                self.counters.passed_fragments += 1;
            } else {
                self.counters.passed_non_tcp += 1;
            }
            return (self.pass(now, dir, d, frame), None);
        }
        if d.frag != Frag::None {
            if self.pol.compiled.is_protected(d.v6, svc_addr) {
                return (Verdict::Drop(DropReason::TcpFragment), None);
            }
            self.counters.passed_fragments += 1;
            return (self.pass(now, dir, d, frame), None);
        }
        // The destination's class, if the rules just looked it up (inbound), else now.
        let svc = match (dir, self.frame_dst_class) {
            (Direction::Inbound, Some(dc)) => self.pol.compiled.service_in_class(dc, IPPROTO_TCP, svc_port),
            _ => self.pol.compiled.service(d.v6, svc_addr, IPPROTO_TCP, svc_port),
        };
        let target = match svc {
            Some(t) => usize::from(t),
            None => {
                self.counters.passed_unprotected += 1;
                return (self.pass(now, dir, d, frame), None);
            }
        };
        let v = match dir {
            Direction::Inbound => self.tcp_inbound(now, d, frame, extra, target),
            Direction::Outbound => self.tcp_outbound(now, d, frame, extra, target),
        };
        (v, Some(target))
    }

    /// Forward an IP frame unchanged, unless it is too large for the egress link.
    #[inline]
    fn pass(&mut self, now: u64, dir: Direction, d: &Dissected, frame: &mut FrameBuf<'_>) -> Verdict {
        self.too_big(now, dir, d, frame).unwrap_or(Verdict::Forward)
    }

    /// `Some(verdict)` when the frame (an IP packet of `d`, as it would leave) is larger than the
    /// egress link's MTU: it is answered with ICMP too-big (IPv6, or IPv4 with DF, within the
    /// answer budget) or dropped. The box does not fragment.
    #[inline]
    pub(crate) fn too_big(
        &mut self,
        now: u64,
        dir: Direction,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
    ) -> Option<Verdict> {
        let mtu = self.mtu[match dir {
            Direction::Inbound => 0,
            Direction::Outbound => 1,
        }];
        if mtu == 0 || frame.len.saturating_sub(d.l3_off) <= usize::from(mtu) {
            return None;
        }
        if (d.v6 || d.df) && self.icmp_budget.take(&ICMP_BUDGET, now, 1) && icmp::write_too_big(frame, d, mtu).is_ok() {
            self.counters.too_big_answered += 1;
            return Some(Verdict::Reply);
        }
        Some(Verdict::Drop(DropReason::TooBig))
    }

    /// Whether an inbound frame is TCP of a session in the table.
    fn tracked_tcp(&mut self, now: u64, d: &Dissected) -> bool {
        d.proto == IPPROTO_TCP
            && d.frag == Frag::None
            && self.table.lookup_probe(&self.probe(&tcp::flow_key(d, Direction::Inbound)), tick(now)).is_some()
    }

    /// Count an inbound frame towards its target by traffic class, and its source in the
    /// target's top sources (attack classes only; see [`detect`]).
    #[inline]
    fn count_class(&mut self, now: u64, d: &Dissected, v: Verdict, target: Option<usize>) {
        if d.nd || !matches!(d.net, Net::Ipv4 | Net::Ipv6) {
            return;
        }
        let t = match target {
            Some(t) => t,
            None => match self.class_target(d) {
                Some(t) => t,
                None => return,
            },
        };
        let Some(c) = self.counters.per_target.get_mut(t) else { return };
        let legit = detect::count_class_into(c, d, v, d.ip_len() as u64);
        let k = 2 * t + usize::from(legit);
        if let Some(s) = self.counters.top_sources.get_mut(k) {
            s.frame(now, d.v6, &d.src);
        }
    }

    /// The target of an inbound frame the judging did not attribute (UDP, ICMP, fragments): the
    /// service of its port, else the first service at its address. Out of line: the drop path
    /// of TCP floods never needs it.
    #[inline(never)]
    fn class_target(&self, d: &Dissected) -> Option<usize> {
        if d.proto == IPPROTO_TCP && d.frag == Frag::None {
            return None;
        }
        let c = &self.pol.compiled;
        let by_port = if d.proto == crate::wire::IPPROTO_UDP && d.frag == Frag::None {
            c.service(d.v6, &d.dst, d.proto, d.dport)
        } else {
            None
        };
        by_port.or_else(|| c.service_at(d.v6, &d.dst)).map(usize::from)
    }

    /// The service a dropped inbound TCP or UDP frame was aimed at, for per-target counters.
    fn target_of(&self, d: &Dissected) -> Option<usize> {
        if d.frag == Frag::Later || !matches!(d.proto, IPPROTO_TCP | crate::wire::IPPROTO_UDP) {
            return None;
        }
        self.pol.compiled.service(d.v6, &d.dst, d.proto, d.dport).map(usize::from)
    }
}

/// The drop reason of a frame [`dissect`] refused.
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
