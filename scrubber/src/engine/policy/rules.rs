//! The policy as the engine applies it to one frame: the rules (first match wins, then the
//! default), their limits, `max-conns`, the services' SYN handling (`syn auto`) and the options
//! they advertise or learn.

use rulespec::ast::Action;
use rulespec::{FragKind, Packet};

use super::limiter::Refusal;
use super::SynPolicy;
use crate::engine::session::{Session, SVC_COUNTED};
use crate::engine::{Advertise, DropReason, Engine};
use crate::wire::frame::{Dissected, Frag};
use crate::wire::tcp::{flags as tf, TcpOptions};

impl Engine {
    /// The rules' verdict on an inbound IP frame: `Some(reason)` to drop it. Counts every rule
    /// met: `observe` rules count what they would have done (a would-drop) and evaluation goes on
    /// to the next rule, as a log action would; the first other rule, or the default, decides.
    #[inline]
    pub(crate) fn rules(&mut self, now: u64, d: &Dissected) -> Option<DropReason> {
        // From the IP header, not the frame: Ethernet padding is not part of the packet.
        let ip_len = d.ip_len().min(usize::from(u16::MAX)) as u16;
        let pkt = Packet {
            v6: d.v6,
            src: &d.src,
            dst: &d.dst,
            proto: d.proto,
            sport: d.sport,
            dport: d.dport,
            tcp_flags: d.tcp.flags,
            ip_len,
            frag: match d.frag {
                Frag::None => FragKind::None,
                Frag::First => FragKind::First,
                Frag::Later => FragKind::Later,
            },
            icmp_type: d.icmp_type,
        };
        // `observe` rules are not terminal: each one met counts (would-drops included) and the
        // evaluation goes on with the next rule.
        let classes = self.pol.compiled.classes_of(&pkt);
        if self.pol.compiled.dst_class_known() {
            self.frame_dst_class = Some(classes.1);
        }
        let mut start = 0;
        loop {
            let hit = self.pol.compiled.judge_classes(&pkt, start, classes);
            let verdict = self.rule_hit(now, d, hit, ip_len);
            match hit.rule {
                Some(i) if hit.observe => start = usize::from(i) + 1,
                _ => return verdict,
            }
        }
    }

    /// Count one rule hit and apply its action: `Some(reason)` to drop. An observe hit counts
    /// what it would have dropped and returns `None`.
    #[inline]
    fn rule_hit(&mut self, now: u64, d: &Dissected, hit: rulespec::Hit, ip_len: u16) -> Option<DropReason> {
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
                    // An enforcing rule's max-conns wins over an observe rule's met before.
                    if !(hit.observe && self.frame_max_conns.is_some_and(|(_, obs)| !obs)) {
                        self.frame_max_conns = Some((n, hit.observe));
                    }
                }
                if rt.requests.is_some() {
                    // Requests are counted where they start, in the service's HTTP checks.
                    if !(hit.observe && self.frame_req_rule.is_some_and(|(_, obs)| !obs)) {
                        self.frame_req_rule = hit.rule.map(|i| (i, hit.observe));
                    }
                }
                let syn = d.tcp.flags & (tf::SYN | tf::ACK) == tf::SYN;
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
        if !hit.observe && matches!(reason, DropReason::RateLimited | DropReason::NewConnLimit) {
            self.ban_strike(now, d, hit.rule);
        }
        let rc = hit.rule.and_then(|i| self.counters.per_rule.get_mut(usize::from(i)));
        if hit.observe {
            if let Some(rc) = rc {
                rc.would_drop += 1;
            }
            self.counters.count_would_drop(reason);
            None
        } else {
            if let Some(rc) = rc {
                rc.dropped += 1;
            }
            Some(reason)
        }
    }

    /// A `limit` rule with `ban` refused a frame of `d`'s source: one strike towards its ban.
    #[inline(never)]
    pub(crate) fn ban_strike(&mut self, now: u64, d: &Dissected, rule: Option<u16>) {
        let Some(i) = rule else { return };
        let Some((dur, after)) = self.pol.rules.get(usize::from(i)).and_then(|r| r.ban) else { return };
        if self.bans.strike(d.v6, &d.src, now, dur, after, crate::engine::ban::BanWhy::Rule(i)) {
            self.counters.bans_made += 1;
        }
    }

    /// `max-conns`: whether the frame being judged may open one more connection for `src`;
    /// `Err` when over the limit (enforced; an observe rule counts a would-drop).
    #[inline]
    pub(crate) fn conn_admit(&mut self, src: &[u8; 16]) -> Result<(), DropReason> {
        let Some((max, observe)) = self.frame_max_conns else { return Ok(()) };
        if self.conns.count(src) >= max {
            if observe {
                self.counters.count_would_drop(DropReason::ConnLimit);
            } else {
                return Err(DropReason::ConnLimit);
            }
        }
        Ok(())
    }

    /// Count a new session of `src` against `max-conns` (when its rule has one): sets the
    /// session's counted bit and slot.
    #[inline]
    pub(crate) fn conn_count(&mut self, src: &[u8; 16], s: &mut Session) {
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
    /// counts it): `true` to answer with a cookie. Observe mode never answers.
    #[inline]
    pub(crate) fn syn_proxy(&mut self, svc: usize, now: u64) -> bool {
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
    pub(crate) fn cookies_possible(&self, svc: usize) -> bool {
        !self.observe && self.pol.services.get(svc).is_some_and(|s| s.syn != SynPolicy::Track)
    }

    /// Options advertised to clients of service `svc`.
    #[inline]
    pub(crate) fn advertise(&self, svc: usize) -> Advertise {
        self.pol.services.get(svc).map(|s| s.adv).unwrap_or_default()
    }

    /// The mid-stream pickup window of service `svc` (its `pickup`, or the global
    /// `learning-window` if longer), in ns.
    #[inline]
    pub(crate) fn pickup_window(&self, svc: usize) -> Option<u64> {
        let global = self.pol.compiled.settings().learning_window.as_nanos().min(u128::from(u64::MAX)) as u64;
        Some(self.pol.services.get(svc)?.pickup_ns.max(global))
    }

    /// Whether service `svc` learns its MSS from its backends (`mss learn`): the MSS each backend
    /// announced then replaces the configured one for that backend.
    #[inline]
    pub(crate) fn learns_mss(&self, svc: usize) -> bool {
        self.pol.services.get(svc).is_some_and(|s| s.learn.mss)
    }

    /// Learn the options a backend uses from its SYN-ACK (services that say `learn`; once
    /// per policy; the MSS is also remembered per backend, from every SYN-ACK).
    pub(crate) fn learn(&mut self, svc: usize, v6: bool, o: &TcpOptions) {
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
}
