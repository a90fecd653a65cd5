//! int → ext: segments from the protected servers. The inside is trusted: segments of
//! connections the scrubber does not know are forwarded (and counted); what the state machine
//! needs from this side is the servers' own connections, the backends' SYN-ACKs of proxied
//! sessions, and the translation of proxied replies.

use super::emit::{bare_rst, swap_macs, write_segment, Segment};
use super::proxy::write_backend_syn_to;
use super::{check_flags, flow_key, seg_end, Flags, SeqNumber, BACKEND_SYN_RETRY_MS};
use crate::engine::session::{
    tick, Session, SessionState, SlotId, F_FIN_CLIENT, F_FIN_SERVER, F_OUTBOUND, F_PROXIED, WS_NONE,
};
use crate::engine::{Direction, DropReason, Engine, FrameBuf, Verdict};
use crate::wire::frame::Dissected;
use crate::wire::tcp::{flags as tf, OptionsRepr};

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
        let found = self.table.lookup_probe(&self.probe(&key), tk);
        if f.syn && !f.ack {
            return self.outbound_syn(tk, d, found, svc);
        }
        let Some(id) = found else {
            if f.syn {
                return Verdict::Drop(DropReason::SynAckNoSession);
            }
            if let Some(v) = self.pickup_server(now, d, &key, svc) {
                return v;
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
        self.outbound_open(now, d, frame, extra, id, &s)
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
        match self.table.insert_probe(&self.probe(&flow_key(d, Direction::Outbound)), s) {
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
                if let Some(m) = o.mss {
                    self.backend_mss.note(&d.src, m);
                }
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

    /// A segment of a known session from the server side. Server RSTs are forwarded, and close
    /// the session only at the exact sequence number (RFC 5961).
    fn outbound_open(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
        id: SlotId,
        s: &Session,
    ) -> Verdict {
        let tk = tick(now);
        let f = Flags::of(d.tcp.flags);
        if s.state == SessionState::ProxySynSent {
            return self.outbound_backend_pending(tk, d, frame, extra, id, s);
        }
        if let Some(v) = self.too_big(now, Direction::Outbound, d, frame) {
            return v;
        }
        if d.tcp.payload_len >= 12 && self.http_svcs != 0 {
            self.http_outbound(now, d, frame, s);
        }
        if s.flags & F_PROXIED != 0 {
            if let Err(r) = super::translate::outbound(d, frame, s) {
                return Verdict::Drop(r);
            }
        }
        if f.rst {
            self.counters.rst_forwarded_outbound += 1;
            if SeqNumber(d.tcp.seq) != s.next_s {
                self.counters.rst_inexact_forwarded += 1;
                return Verdict::Forward;
            }
            if s.state != SessionState::Closed {
                self.counters.sessions_closed += 1;
            }
            let s = self.table.get_mut(id);
            let was = s.state;
            s.state = SessionState::Closed;
            s.last_seen = tk;
            if self.sync.is_some() {
                let s = *s;
                self.sync_changed(d, Direction::Outbound, was, tk, &s);
            }
            return Verdict::Forward;
        }
        let s = self.table.get_mut(id);
        let (was, seen_before) = (s.state, s.last_seen);
        s.last_seen = tk;
        s.win_s = d.tcp.window;
        s.next_s = s.next_s.max(seg_end(d));
        if f.fin {
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
        if self.sync.is_some() {
            let s = *s;
            self.sync_changed(d, Direction::Outbound, was, seen_before, &s);
        }
        Verdict::Forward
    }

    /// The backend of a proxied session answers the SYN the scrubber sent with something other
    /// than a SYN-ACK. A RST (port closed, backend refusing) goes to the client in the sequence
    /// space it knows, and the session goes. An ACK is the backend's challenge ACK: it still
    /// holds an old connection on this 4-tuple (the client reconnected from the same port). As
    /// a client in SYN-SENT would (RFC 9293 §3.10.7.3), the scrubber answers it with a RST at
    /// the ACK's acknowledgement number, which clears the stale connection, and sends the SYN
    /// again right behind it (into `extra`; without room there, the client's next segment
    /// brings it).
    fn outbound_backend_pending(
        &mut self,
        tk: u32,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
        id: SlotId,
        s: &Session,
    ) -> Verdict {
        let f = Flags::of(d.tcp.flags);
        if f.rst {
            bare_rst(d, frame, s.seq_off.wrapping_add(1));
            self.table.remove(id);
            self.counters.sessions_closed += 1;
            self.counters.rst_forwarded_outbound += 1;
            return Verdict::Forward;
        }
        if !f.ack {
            return Verdict::Drop(DropReason::ProxyHandshakePending);
        }
        let key = flow_key(d, Direction::Outbound);
        let rst = Segment::new(
            d.dst,
            d.src,
            key.client_port,
            key.server_port,
            d.tcp.ack,
            0,
            tf::RST,
            0,
            OptionsRepr::default(),
        );
        self.counters.backend_challenge_acks += 1;
        // The SYN again, from a copy of the frame (so it gets the same Ethernet header).
        let syn_again = extra.buf.len() >= frame.len && {
            extra.buf[..frame.len].copy_from_slice(&frame.buf[..frame.len]);
            extra.len = frame.len;
            swap_macs(extra.buf);
            write_backend_syn_to(&d.dst, &d.src, d, extra, &key, s).is_ok()
        };
        swap_macs(frame.buf);
        if write_segment(frame, d, &rst).is_err() {
            return Verdict::Drop(DropReason::NoBufferRoom);
        }
        self.counters.rst_sent += 1;
        if syn_again {
            self.table.get_mut(id).last_seen = tk;
            self.counters.backend_syns_retransmitted += 1;
            Verdict::ReplyTwice
        } else {
            self.table.get_mut(id).last_seen = tk.wrapping_sub(BACKEND_SYN_RETRY_MS);
            Verdict::Reply
        }
    }
}
