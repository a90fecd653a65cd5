//! Client request streams of `http` services, as the TCP state machine meets them: follow
//! each client segment in sequence order through [`crate::engine::http`], charge the
//! `per-source requests` limit at each request start, and reset both sides of a connection
//! whose request breaks a check (an RST to the backend in the segment's own frame, one to the
//! client in `extra`), striking the source towards a ban.

use super::emit::{swap_macs, write_segment, Segment};
use super::seg_end;
use crate::engine::ban::BanWhy;
use crate::engine::flow::FlowKey;
use crate::engine::http::{feed, HttpState, Phase, Violation};
use crate::engine::session::{tick, Session, SlotId, F_OUTBOUND, F_PROXIED, SVC_COUNTED};
use crate::engine::{DropReason, Engine, FrameBuf, Verdict};
use crate::wire::frame::Dissected;
use crate::wire::tcp::{flags as tf, OptionsRepr};

impl Engine {
    /// Whether client segments of session `s` towards service `svc` are followed.
    #[inline]
    pub(crate) fn http_followed(&self, svc: usize, s: &Session) -> bool {
        svc < 128 && self.http_svcs & (1u128 << svc) != 0 && s.flags & F_OUTBOUND == 0
    }

    /// The HTTP table's tag of `key` (from the session probe the frame already has).
    #[inline]
    fn http_tag(&self, key: &FlowKey) -> Option<u64> {
        let t = self.pol.http.as_ref()?;
        Some(t.tag_of(self.probe(key).stored_key()))
    }

    /// A new client connection of an `http` service: its request stream starts at `next`.
    pub(crate) fn http_open(&mut self, key: &FlowKey, next: u32, now: u64) {
        let tk = tick(now);
        let Some(tag) = self.http_tag(key) else { return };
        if let Some(t) = self.pol.http.as_mut() {
            t.put(HttpState::open(tag, next, tk), tk);
        }
    }

    /// The payload of the frame's segment.
    fn payload<'f>(d: &Dissected, frame: &'f FrameBuf<'_>) -> &'f [u8] {
        let at = d.l4_off + d.tcp.header_len;
        frame.buf.get(at..at + d.tcp.payload_len).unwrap_or(&[])
    }

    /// Data that came with a cookie ACK (kept for the backend): read it as the start of the
    /// request stream. `Err` when it breaks a check (the caller drops the ACK and the session).
    pub(crate) fn http_early_data(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &FrameBuf<'_>,
        key: &FlowKey,
        svc: usize,
    ) -> Result<(), DropReason> {
        self.http_open(key, d.tcp.seq, now);
        let data = Self::payload(d, frame);
        if data.is_empty() {
            return Ok(());
        }
        match self.http_feed(now, d, key, svc, d.tcp.seq, data) {
            Ok(()) => Ok(()),
            Err(v) => {
                self.http_violation(now, d, svc, v);
                if let (Some(tag), Some(t)) = (self.http_tag(key), self.pol.http.as_mut()) {
                    t.remove(tag);
                }
                Err(v.reason())
            }
        }
    }

    /// A client segment with payload on open session `id` of a followed service. `None`: go on
    /// (forward); `Some(verdict)`: the segment was dropped or its connection reset.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn http_inbound(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
        key: &FlowKey,
        id: SlotId,
        s: &Session,
        svc: usize,
    ) -> Option<Verdict> {
        let len = d.tcp.payload_len as u32;
        let seq = d.tcp.seq;
        let tag = self.http_tag(key)?;
        let (checked_to, data_from) = {
            let tk = tick(now);
            let t = self.pol.http.as_mut()?;
            let st = match t.get(tag, tk) {
                Some(st) => {
                    // The common case of an upload: body bytes in order, skipped in place.
                    if st.skip_body(seq, len) {
                        return None;
                    }
                    *st
                }
                None => {
                    // Evicted, or a session picked up or restored: follow it again from a
                    // request line when the segment starts like one, else give up on it.
                    self.counters.http_states_lost += 1;
                    let mut st = HttpState::open(tag, seq, tk);
                    if !Self::payload(d, frame).first().is_some_and(u8::is_ascii_uppercase) {
                        st = HttpState::open(tag, seq, tk).unchecked();
                        self.counters.http_unchecked += 1;
                    }
                    t.put(st, tk);
                    st
                }
            };
            if st.phase() == Phase::Unchecked {
                return None;
            }
            // How far into this segment the next unread byte is.
            let off = st.next.wrapping_sub(seq) as i32;
            if off < 0 {
                // A gap before the segment: only body bytes may pass unread.
                if st.body_ahead() >= u64::from(off.unsigned_abs()) + u64::from(len) {
                    return None;
                }
                return Some(Verdict::Drop(DropReason::HttpOutOfOrder));
            }
            if off as u32 >= len {
                // Bytes already read (a retransmission): the receiver keeps what it has.
                return None;
            }
            (st.next, off as usize)
        };
        let data = Self::payload(d, frame);
        let data = &data[data_from.min(data.len())..];
        match self.http_feed(now, d, key, svc, seq.wrapping_add(data_from as u32), data) {
            Ok(()) => None,
            Err(v) => {
                self.http_violation(now, d, svc, v);
                if let Some(t) = self.pol.http.as_mut() {
                    t.remove(tag);
                }
                if self.observe {
                    // Counted as a would-drop by the caller's accounting; the connection goes on,
                    // no longer followed.
                    let tk = tick(now);
                    if let Some(t) = self.pol.http.as_mut() {
                        t.put(HttpState::open(tag, seq, tk).unchecked(), tk);
                    }
                    return Some(Verdict::Drop(v.reason()));
                }
                self.table.remove(id);
                self.counters.sessions_closed += 1;
                self.counters.http_resets += 1;
                if self.reset_both(d, frame, extra, s, checked_to) {
                    Some(Verdict::Reset(v.reason()))
                } else {
                    Some(Verdict::Drop(v.reason()))
                }
            }
        }
    }

    /// Feed `data` (client bytes from sequence number `from`) into the flow's state, charging
    /// the request limit at each request start. Stores the state back.
    fn http_feed(
        &mut self,
        now: u64,
        d: &Dissected,
        key: &FlowKey,
        svc: usize,
        from: u32,
        data: &[u8],
    ) -> Result<(), Violation> {
        let tk = tick(now);
        let Some(tag) = self.http_tag(key) else { return Ok(()) };
        let pol = &mut self.pol;
        let Some(t) = pol.http.as_mut() else { return Ok(()) };
        let Some(lim) = pol.services.get(svc).and_then(|s| s.http.as_deref()) else { return Ok(()) };
        let mut st = match t.get(tag, tk) {
            Some(st) => *st,
            None => HttpState::open(tag, from, tk),
        };
        let rules = &mut pol.rules;
        let req_rule = self.frame_req_rule;
        let mut observed_refusals = 0u64;
        let mut started = 0u64;
        let src = d.src;
        let mut on_request = || {
            started += 1;
            match req_rule {
                Some((i, observe)) => match rules.get_mut(usize::from(i)).and_then(|r| r.requests.as_mut()) {
                    Some(limit) => {
                        let ok = limit.admit(&src, now, 0, true).is_ok();
                        if !ok && observe {
                            observed_refusals += 1;
                        }
                        ok || observe
                    }
                    None => true,
                },
                None => true,
            }
        };
        let r = feed(&mut st, lim, data, &mut on_request);
        // Requests started, also the one that broke a check.
        self.counters.http_requests += started;
        if let Some(c) = self.counters.per_target.get_mut(svc) {
            c.http_requests += started;
        }
        for _ in 0..observed_refusals {
            self.counters.count_would_drop(DropReason::HttpRequestLimit);
            if let Some(rc) = req_rule.and_then(|(i, _)| self.counters.per_rule.get_mut(usize::from(i))) {
                rc.would_drop += 1;
            }
        }
        match r {
            Ok(fed) => {
                st.next = from.wrapping_add(data.len() as u32);
                t.put(st, tk);
                if fed.unchecked {
                    self.counters.http_unchecked += 1;
                }
                Ok(())
            }
            Err(v) => {
                if v == Violation::RequestLimit {
                    if let Some(rc) = req_rule.and_then(|(i, _)| self.counters.per_rule.get_mut(usize::from(i))) {
                        rc.dropped += 1;
                    }
                }
                Err(v)
            }
        }
    }

    /// Count a violation towards its target and strike its source towards a ban (the
    /// service's `http … ban` for check violations, the limit rule's `ban` for the request
    /// limit).
    fn http_violation(&mut self, now: u64, d: &Dissected, svc: usize, v: Violation) {
        if let Some(c) = self.counters.per_target.get_mut(svc) {
            c.http_violations += 1;
        }
        if self.observe {
            return;
        }
        let ban = if v == Violation::RequestLimit {
            self.frame_req_rule.and_then(|(i, observe)| {
                let r = self.pol.rules.get(usize::from(i))?;
                (!observe).then_some(())?;
                r.ban.map(|b| (b, BanWhy::Rule(i)))
            })
        } else {
            self.pol.services.get(svc).and_then(|s| s.http_ban).map(|b| (b, BanWhy::Http(svc as u16)))
        };
        if let Some(((dur, after), why)) = ban {
            if self.bans.strike(d.v6, &d.src, now, dur, after, why) {
                self.counters.bans_made += 1;
            }
        }
    }

    /// Reset both sides of the client segment's connection: the frame becomes a RST to the
    /// backend at `backend_next` (the next byte it expects), `extra` a RST to the client at
    /// the server's next sequence number in the client's space.
    fn reset_both(
        &mut self,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
        s: &Session,
        backend_next: u32,
    ) -> bool {
        let l3 = d.l3_off;
        if extra.buf.len() < l3 + 80 || frame.len < l3 {
            return false;
        }
        extra.buf[..l3].copy_from_slice(&frame.buf[..l3]);
        swap_macs(extra.buf);
        let srv = if s.flags & F_PROXIED != 0 { s.next_s.0.wrapping_add(s.seq_off) } else { s.next_s.0 };
        let none = OptionsRepr::default();
        let to_client = Segment::new(d.dst, d.src, d.dport, d.sport, srv, seg_end(d).0, tf::RST | tf::ACK, 0, none);
        let to_server = Segment::new(d.src, d.dst, d.sport, d.dport, backend_next, 0, tf::RST, 0, none);
        if write_segment(extra, d, &to_client).is_err() || write_segment(frame, d, &to_server).is_err() {
            return false;
        }
        true
    }

    /// A server segment with payload on a followed connection: a `101 Switching Protocols`
    /// (or a 2xx to `CONNECT`) ends the following.
    pub(crate) fn http_outbound(&mut self, now: u64, d: &Dissected, frame: &FrameBuf<'_>, s: &Session) {
        let svc = usize::from(s.svc & !SVC_COUNTED);
        if !self.http_followed(svc, s) {
            return;
        }
        let p = Self::payload(d, frame);
        if !p.starts_with(b"HTTP/1.") || p.len() < 12 || !(p[9] == b'1' || p[9] == b'2') {
            return;
        }
        let key = super::flow_key(d, crate::engine::Direction::Outbound);
        let tk = tick(now);
        let Some(tag) = self.http_tag(&key) else { return };
        if let Some(t) = self.pol.http.as_mut() {
            if let Some(st) = t.get(tag, tk) {
                if st.awaits_switch() && st.server_answer(p) {
                    self.counters.http_switched += 1;
                }
            }
        }
    }
}
