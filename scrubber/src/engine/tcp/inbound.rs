//! ext → int: segments from clients towards a protected service, one function per case of
//! DESIGN.md's table — a SYN, a SYN-ACK from outside, a segment with no session, a segment
//! while the backend handshake is pending, a segment of an open session.

use super::emit::bare_rst;
use super::proxy::write_backend_syn;
use super::{check_flags, eff_ws, flow_key, seg_end, Flags, SeqNumber, BACKEND_SYN_RETRY_MS, FAR_SEQ};
use crate::engine::flow::FlowKey;
use crate::engine::session::{
    tick, Session, SessionState, SlotId, StateClass, F_FIN_CLIENT, F_FIN_SERVER, F_PROXIED, F_SACK, F_TS, WS_NONE,
};
use crate::engine::{Direction, DropReason, Engine, FrameBuf, SynMode, Verdict};
use crate::wire::frame::Dissected;

impl Engine {
    /// A TCP segment from ext towards service `svc`.
    #[inline]
    pub(crate) fn tcp_inbound(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
        svc: usize,
    ) -> Verdict {
        let tk = tick(now);
        self.counters.tcp_flags_inbound[usize::from(d.tcp.flags)] += 1;
        if let Err(r) = check_flags(d.tcp.flags) {
            return Verdict::Drop(r);
        }
        let key = flow_key(d, Direction::Inbound);
        let f = Flags::of(d.tcp.flags);
        let found = self.table.lookup_probe(&self.probe(&key), tk);
        if f.syn && !f.ack {
            return self.inbound_syn(now, d, frame, &key, found, svc);
        }
        if f.syn {
            return self.inbound_synack(tk, d, found);
        }
        let Some(id) = found else { return self.inbound_no_session(now, d, frame, &key, None, svc) };
        let s = *self.table.get(id);
        if s.state == SessionState::Closed {
            return self.inbound_closed(now, d, frame, &key, id, &s, svc);
        }
        // A pure ACK on a live session may be a new connection's cookie ACK: when the client sent
        // a new SYN on this 4-tuple moments ago (a reconnect on a busy port), or when its
        // sequence number is far from the session's (the client reopened the tuple after a close
        // the scrubber did not see).
        if self.cookies_possible(svc) && f.ack && !f.rst && !f.fin && s.state != SessionState::ProxySynSent {
            let reopened = self.recent_syns.recent(&key, tk);
            if reopened || SeqNumber(d.tcp.seq).distance(s.next_c) > FAR_SEQ {
                if reopened {
                    self.counters.reopen_tried += 1;
                }
                if let Some(v) = self.try_cookie_ack(now, d, frame, &key, Some(id), svc) {
                    self.recent_syns.forget(&key);
                    return v;
                }
            }
        }
        match s.state {
            SessionState::ProxySynSent => self.inbound_backend_pending(tk, d, frame, &key, id, &s),
            SessionState::SynSent | SessionState::OutSynSent => Verdict::Drop(DropReason::AckBeforeSynAck),
            // SynRecv, OutSynRecv, Established, FinWait, Closing.
            _ => {
                if d.tcp.payload_len > 0 && self.http_followed(svc, &s) && !f.rst {
                    if let Some(v) = self.http_inbound(now, d, frame, extra, &key, id, &s, svc) {
                        return v;
                    }
                }
                self.inbound_open(now, d, frame, id, &s)
            }
        }
    }

    /// A SYN: a new connection, a retransmission, or the reuse of a 4-tuple.
    fn inbound_syn(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        key: &FlowKey,
        mut found: Option<SlotId>,
        svc: usize,
    ) -> Verdict {
        let tk = tick(now);
        let seq = SeqNumber(d.tcp.seq);
        let mode = if self.syn_proxy(svc, now) { SynMode::Proxy } else { SynMode::Track };
        if let Some(id) = found {
            let s = *self.table.get(id);
            let retransmit = seq + 1 == s.next_c;
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
                // proves itself with the cookie ACK, which is looked for first from now on.
                (_, SynMode::Proxy) => self.recent_syns.note(key, tk),
            }
        }
        if let Err(r) = self.conn_admit(&d.src) {
            return Verdict::Drop(r);
        }
        match mode {
            SynMode::Proxy => self.answer_cookie(now, d, frame, key, svc),
            SynMode::Track => {
                if found.is_some() {
                    return Verdict::Drop(DropReason::SynInSession);
                }
                let Ok(o) = d.tcp.options() else { return Verdict::Drop(DropReason::TcpBadOptions) };
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
                    win_c: d.tcp.window,
                    next_c: seq + 1,
                    ..Session::default()
                };
                self.conn_count(&d.src, &mut s);
                match self.table.insert_probe(&self.probe(key), s) {
                    Ok(_) => {
                        self.counters.sessions_tracked += 1;
                        if self.http_followed(svc, &s) {
                            self.http_open(key, d.tcp.seq.wrapping_add(1), now);
                        }
                        Verdict::Forward
                    }
                    Err(_) => Verdict::Drop(DropReason::SessionTableFull),
                }
            }
        }
    }

    /// A SYN-ACK from outside: only for connections a protected server opened.
    fn inbound_synack(&mut self, tk: u32, d: &Dissected, found: Option<SlotId>) -> Verdict {
        let Some(id) = found else { return Verdict::Drop(DropReason::SynAckNoSession) };
        let s = self.table.get_mut(id);
        match s.state {
            SessionState::OutSynSent | SessionState::OutSynRecv => {
                if SeqNumber(d.tcp.ack) != s.next_s {
                    return Verdict::Drop(DropReason::SynAckBadAck);
                }
                s.state = SessionState::OutSynRecv;
                s.next_c = SeqNumber(d.tcp.seq) + 1;
                s.win_c = d.tcp.window;
                s.last_seen = tk;
                Verdict::Forward
            }
            _ => Verdict::Drop(DropReason::SynAckNoSession),
        }
    }

    /// No open session (none, or a closed one): a cookie ACK, a mid-stream pickup, or a drop.
    /// This is where ACK, ACK-PSH, RST and FIN floods end.
    fn inbound_no_session(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        key: &FlowKey,
        found: Option<SlotId>,
        svc: usize,
    ) -> Verdict {
        let f = Flags::of(d.tcp.flags);
        if f.rst {
            return Verdict::Drop(DropReason::RstNoSession);
        }
        if f.fin {
            return Verdict::Drop(DropReason::FinNoSession);
        }
        if self.cookies_possible(svc) {
            if let Some(v) = self.try_cookie_ack(now, d, frame, key, found, svc) {
                return v;
            }
        }
        if let Some(v) = self.pickup(now, d, frame, key, svc) {
            return v;
        }
        if self.cookies_possible(svc) {
            self.counters.cookies_failed += 1;
        }
        Verdict::Drop(DropReason::AckNoSession)
    }

    /// A proxied session whose backend has not answered yet. The client was told a zero
    /// window; what arrives now are its ACK retransmissions and window probes. One of them
    /// re-sends the backend SYN when the backend has been silent for a while; a RST in
    /// sequence ends the session.
    fn inbound_backend_pending(
        &mut self,
        tk: u32,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        key: &FlowKey,
        id: SlotId,
        s: &Session,
    ) -> Verdict {
        if Flags::of(d.tcp.flags).rst {
            if SeqNumber(d.tcp.seq) != s.next_c {
                return Verdict::Drop(DropReason::RstOutOfWindow);
            }
            // Tell the backend: a bare RST in the sequence space it knows. Nothing was
            // established: the session goes (no lingering in the cookie sequence space).
            bare_rst(d, frame, d.tcp.seq);
            self.table.remove(id);
            self.counters.sessions_closed += 1;
            self.counters.rst_forwarded_inbound += 1;
            return Verdict::Forward;
        }
        if tk.wrapping_sub(s.last_seen) >= BACKEND_SYN_RETRY_MS {
            let tsval = d.tcp.options().ok().and_then(|o| o.timestamp).map(|t| t.0);
            let s = self.table.get_mut(id);
            s.last_seen = tk;
            if let Some(tv) = tsval {
                s.next_s = SeqNumber(tv);
            }
            let s = *s;
            if write_backend_syn(d, frame, key, &s).is_err() {
                return Verdict::Drop(DropReason::NoBufferRoom);
            }
            self.counters.backend_syns_retransmitted += 1;
            return Verdict::Forward;
        }
        Verdict::Drop(DropReason::ProxyHandshakePending)
    }

    /// A segment of an open session (handshake seen, established or closing): RSTs must be
    /// in window and only an exact one closes (RFC 5961); proxied sessions are translated; the
    /// session follows FINs and RSTs.
    #[inline]
    fn inbound_open(&mut self, now: u64, d: &Dissected, frame: &mut FrameBuf<'_>, id: SlotId, s: &Session) -> Verdict {
        let tk = tick(now);
        let f = Flags::of(d.tcp.flags);
        let seq = SeqNumber(d.tcp.seq);
        if f.rst {
            let w = ((s.win_s as u64) << eff_ws(s.server_ws)).clamp(1, 1 << 30) as u32;
            if !seq.within(s.next_c - w, w.saturating_mul(2)) {
                return Verdict::Drop(DropReason::RstOutOfWindow);
            }
        }
        if let Some(v) = self.too_big(now, Direction::Inbound, d, frame) {
            return v;
        }
        if s.flags & F_PROXIED != 0 {
            if let Err(r) = super::translate::inbound(d, frame, s) {
                return Verdict::Drop(r);
            }
        }
        if f.rst {
            self.counters.rst_forwarded_inbound += 1;
            if seq != s.next_c {
                // In window, not exact: the server answers with a challenge ACK; the session
                // (and its last-seen time: a blind RST is no sign of life) stays as it is.
                self.counters.rst_inexact_forwarded += 1;
                return Verdict::Forward;
            }
            let s = self.table.get_mut(id);
            s.state = SessionState::Closed;
            s.last_seen = tk;
            let s = *s;
            self.counters.sessions_closed += 1;
            self.sync_close(d, &s);
            return Verdict::Forward;
        }
        let s = self.table.get_mut(id);
        let seen_before = s.last_seen;
        let was = s.state;
        s.last_seen = tk;
        s.win_c = d.tcp.window;
        s.next_c = s.next_c.max(seg_end(d));
        if f.fin {
            s.flags |= F_FIN_CLIENT;
            s.state = if s.flags & F_FIN_SERVER != 0 { SessionState::Closing } else { SessionState::FinWait };
            if s.state == SessionState::Closing {
                self.counters.sessions_closed += 1;
            }
        } else if s.state == SessionState::SynRecv && f.ack && SeqNumber(d.tcp.ack) == s.next_s {
            s.state = SessionState::Established;
        }
        if self.sync.is_some() {
            let s = *s;
            self.sync_changed(d, Direction::Inbound, was, seen_before, &s);
        }
        Verdict::Forward
    }

    /// Tell the fleet's peers (sync on) about a session that changed: established now, or
    /// alive across a 64-second boundary → upsert; closing → delete.
    #[inline(never)]
    pub(crate) fn sync_changed(&mut self, d: &Dissected, dir: Direction, was: SessionState, seen: u32, s: &Session) {
        let key = flow_key(d, dir);
        let op = match s.state {
            SessionState::Closing | SessionState::Closed if was != s.state => crate::engine::sync::SyncOp::Delete,
            SessionState::Established if was != SessionState::Established => crate::engine::sync::SyncOp::Upsert,
            SessionState::Established | SessionState::FinWait if self.sync_refresh_due(seen, s.last_seen) => {
                crate::engine::sync::SyncOp::Upsert
            }
            _ => return,
        };
        self.sync_note(op, &key, s);
    }

    /// A session closed by a RST: the peers forget it (sync on).
    #[inline]
    pub(crate) fn sync_close(&mut self, d: &Dissected, s: &Session) {
        if self.sync.is_some() {
            let key = flow_key(d, Direction::Inbound);
            self.sync_note(crate::engine::sync::SyncOp::Delete, &key, s);
        }
    }

    /// A segment on a session a RST closed, while it lingers: a new connection's cookie ACK
    /// replaces it; anything else from the client is forwarded as it was (translated when
    /// proxied) so that the server, which no longer knows the connection, resets it again —
    /// the client may never have heard the first RST. RSTs are dropped: both ends are reset.
    #[allow(clippy::too_many_arguments)]
    fn inbound_closed(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        key: &FlowKey,
        id: SlotId,
        s: &Session,
        svc: usize,
    ) -> Verdict {
        let f = Flags::of(d.tcp.flags);
        if f.rst {
            return Verdict::Drop(DropReason::RstNoSession);
        }
        if self.cookies_possible(svc) && f.ack && !f.fin {
            if let Some(v) = self.try_cookie_ack(now, d, frame, key, Some(id), svc) {
                return v;
            }
        }
        if let Some(v) = self.too_big(now, Direction::Inbound, d, frame) {
            return v;
        }
        if s.flags & F_PROXIED != 0 {
            if let Err(r) = super::translate::inbound(d, frame, s) {
                return Verdict::Drop(r);
            }
        }
        self.counters.closed_forwarded += 1;
        Verdict::Forward
    }
}
