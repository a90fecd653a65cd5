//! int → ext: segments from the protected servers. The inside is trusted: segments of
//! connections the scrubber does not know are forwarded (and counted); what the state machine
//! needs from this side is the servers' own connections, the backends' SYN-ACKs of proxied
//! sessions, and the translation of proxied replies.

use super::emit::bare_rst;
use super::{check_flags, flow_key, seg_end, Flags, SeqNumber};
use crate::engine::session::{
    tick, Session, SessionState, SlotId, F_FIN_CLIENT, F_FIN_SERVER, F_OUTBOUND, F_PROXIED, WS_NONE,
};
use crate::engine::{Direction, DropReason, Engine, FrameBuf, Verdict};
use crate::wire::frame::Dissected;

impl Engine {
    /// A TCP segment from int, from service `svc`.
    pub(crate) fn tcp_outbound(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
        svc: usize,
    ) -> Verdict {
        let tk = tick(now);
        if let Err(r) = check_flags(d.tcp.flags) {
            return Verdict::Drop(r);
        }
        let key = flow_key(d, Direction::Outbound);
        let f = Flags::of(d.tcp.flags);
        let found = self.table.lookup(&key, tk);
        if f.syn && !f.ack {
            return self.outbound_syn(tk, d, found, svc);
        }
        let Some(id) = found else {
            if f.syn {
                return Verdict::Drop(DropReason::SynAckNoSession);
            }
            if f.rst {
                self.counters.rst_forwarded_outbound += 1;
            }
            self.counters.outbound_no_session += 1;
            return Verdict::Forward;
        };
        let s = *self.table.get(id);
        if f.syn {
            return self.outbound_synack(tk, d, frame, extra, id, &s, svc);
        }
        self.outbound_open(tk, d, frame, id, &s)
    }

    /// A protected server opens a connection itself.
    fn outbound_syn(&mut self, tk: u32, d: &Dissected, found: Option<SlotId>, svc: usize) -> Verdict {
        let seq = SeqNumber(d.tcp.seq);
        if let Some(id) = found {
            let s = *self.table.get(id);
            if s.state == SessionState::OutSynSent && s.next_s == seq + 1 {
                // Retransmission of the same SYN.
                self.table.get_mut(id).last_seen = tk;
                return Verdict::Forward;
            }
            // A server reusing the 4-tuple has lost (or closed) the old connection.
            self.counters.sessions_reused += 1;
            self.table.remove(id);
        }
        let wscale = d.tcp.options().ok().and_then(|o| o.wscale);
        let s = Session {
            last_seen: tk,
            state: SessionState::OutSynSent,
            flags: F_OUTBOUND,
            client_ws: WS_NONE,
            server_ws: wscale.unwrap_or(WS_NONE),
            adv_ws: WS_NONE,
            svc: svc as u8,
            win_s: d.tcp.window,
            next_s: seq + 1,
            ..Session::default()
        };
        match self.table.insert(&flow_key(d, Direction::Outbound), s) {
            Ok(_) => {
                self.counters.sessions_outbound += 1;
                Verdict::Forward
            }
            Err(_) => Verdict::Drop(DropReason::SessionTableFull),
        }
    }

    /// A SYN-ACK from a backend: of a proxied session (consumed), of a tracked handshake
    /// (forwarded), or a retransmission on an open proxied session (ACKed again).
    #[allow(clippy::too_many_arguments)]
    fn outbound_synack(
        &mut self,
        tk: u32,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
        id: SlotId,
        s: &Session,
        svc: usize,
    ) -> Verdict {
        let key = flow_key(d, Direction::Outbound);
        match s.state {
            SessionState::ProxySynSent => self.consume_backend_synack(tk, d, &key, frame, extra, id),
            SessionState::SynSent | SessionState::SynRecv => {
                if SeqNumber(d.tcp.ack) != s.next_c {
                    return Verdict::Drop(DropReason::SynAckBadAck);
                }
                let o = d.tcp.options().copied().unwrap_or_default();
                self.learn(svc, d.v6, &o);
                let s = self.table.get_mut(id);
                s.state = SessionState::SynRecv;
                s.next_s = SeqNumber(d.tcp.seq) + 1;
                s.win_s = d.tcp.window;
                s.server_ws = o.wscale.unwrap_or(WS_NONE);
                s.last_seen = tk;
                Verdict::Forward
            }
            _ if s.flags & F_PROXIED != 0 && SeqNumber(d.tcp.seq) + 1 == s.next_s => {
                // The backend did not get our ACK and retransmits its SYN-ACK: ACK again.
                self.reack_backend(d, &key, frame, s)
            }
            _ => Verdict::Drop(DropReason::SynAckNoSession),
        }
    }

    /// A segment of a known session from the server side.
    fn outbound_open(&mut self, tk: u32, d: &Dissected, frame: &mut FrameBuf<'_>, id: SlotId, s: &Session) -> Verdict {
        let f = Flags::of(d.tcp.flags);
        if s.flags & F_PROXIED != 0 {
            if s.state == SessionState::ProxySynSent {
                // Nothing but the SYN-ACK is expected yet. A RST (port closed, backend
                // refusing) goes to the client in the sequence space it knows.
                if !f.rst {
                    return Verdict::Drop(DropReason::ProxyHandshakePending);
                }
                bare_rst(d, frame, s.seq_off.wrapping_add(1));
            } else if let Err(r) = super::translate::outbound(d, frame, s) {
                return Verdict::Drop(r);
            }
        }
        let s = self.table.get_mut(id);
        s.last_seen = tk;
        s.win_s = d.tcp.window;
        if s.state != SessionState::ProxySynSent {
            s.next_s = s.next_s.max(seg_end(d));
        }
        if f.rst {
            if s.state != SessionState::Closed {
                self.counters.sessions_closed += 1;
            }
            s.state = SessionState::Closed;
            self.counters.rst_forwarded_outbound += 1;
        } else if f.fin {
            s.flags |= F_FIN_SERVER;
            if s.state != SessionState::Closed {
                let was = s.state;
                s.state = if s.flags & F_FIN_CLIENT != 0 { SessionState::Closing } else { SessionState::FinWait };
                if s.state == SessionState::Closing && was != SessionState::Closing {
                    self.counters.sessions_closed += 1;
                }
            }
        } else if s.state == SessionState::OutSynRecv && f.ack && SeqNumber(d.tcp.ack) == s.next_c {
            s.state = SessionState::Established;
        }
        Verdict::Forward
    }
}
