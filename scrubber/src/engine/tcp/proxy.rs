//! The SYN proxy: a cookie SYN-ACK for every SYN, a session only for a client that proves
//! its address with a valid cookie ACK, the backend side opened with the SYN the client would
//! have sent, the backend's SYN-ACK consumed. Also mid-stream pickup after a restart.

use super::emit::{swap_macs, write_segment, write_segment_with, NoRoom, Segment};
use super::pickup::Gate;
use super::stash::MAX_EARLY;
use super::{eff_ws, rescale, SeqNumber};
use crate::engine::cookie::SynOptions;
use crate::engine::flow::FlowKey;
use crate::engine::session::{
    tick, Session, SessionState, SlotId, F_ECN, F_PROXIED, F_SACK, F_TS, F_TS_STRIP, WS_NONE,
};
use crate::engine::{DropReason, Engine, FrameBuf, Verdict};
use crate::wire::frame::Dissected;
use crate::wire::tcp::{flags as tf, OptionsRepr, TcpOptions};

impl Engine {
    /// Proxy mode: turn the SYN into the cookie SYN-ACK, in place.
    pub(crate) fn answer_cookie(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        key: &FlowKey,
        svc: usize,
    ) -> Verdict {
        let o = match d.tcp.options() {
            Ok(o) => o,
            Err(_) => return Verdict::Drop(DropReason::TcpBadOptions),
        };
        let (seq, fl) = (d.tcp.seq, d.tcp.flags);
        let adv = self.advertise(svc);
        let mss = self.advertised_mss(svc, d, &adv);
        let ts = o.timestamp.filter(|_| adv.timestamps);
        // Without timestamps a cookie keeps no options but the MSS: the SYN-ACK offers none.
        let syn = SynOptions {
            mss: o.mss.unwrap_or(0),
            wscale: o.wscale,
            sack_permitted: o.sack_permitted && adv.sack,
            timestamps: ts.is_some(),
            ecn: fl & (tf::ECE | tf::CWR) == (tf::ECE | tf::CWR),
        }
        .carried();
        let issued = self.cookies.issue(now, key, seq, &syn);
        let mut opts = OptionsRepr {
            mss: Some(mss),
            wscale: syn.wscale.map(|_| adv.wscale),
            sack_permitted: syn.sack_permitted,
            ..OptionsRepr::default()
        };
        if let (Some((client_tsval, _)), Some(tsval)) = (ts, issued.tsval) {
            opts.timestamp = Some((tsval, client_tsval));
        }
        let flags = tf::SYN | tf::ACK | if syn.ecn { tf::ECE } else { 0 };
        // The window: zero, so that the client waits for the backend (the window update follows
        // when its handshake completes) — unless the SYN carried data (TCP Fast Open): such a
        // client holds even its ACK while it cannot resend that data, until its persist timer
        // fires (~200 ms). A window of exactly that data lets it resend it with the ACK at once;
        // the data is kept (see `stash`) and delivered with the backend handshake.
        let window = if d.tcp.payload_len > 0 {
            self.counters.tfo_syns += 1;
            u16::try_from(d.tcp.payload_len).unwrap_or(u16::MAX)
        } else {
            0
        };
        let seg = Segment::new(
            d.dst,
            d.src,
            key.server_port,
            key.client_port,
            issued.isn,
            seq.wrapping_add(1),
            flags,
            window,
            opts,
        );
        swap_macs(frame.buf);
        match write_segment(frame, d, &seg) {
            Ok(()) => {
                self.counters.cookies_sent += 1;
                Verdict::Reply
            }
            Err(NoRoom) => Verdict::Drop(DropReason::NoBufferRoom),
        }
    }

    /// Proxy mode: a session-less ACK (or one far outside a live session). `Some(verdict)` when
    /// `ack - 1` is a valid cookie: the session is created (replacing `old`) and the frame
    /// rewritten into the SYN towards the backend. `None` when the cookie does not validate.
    ///
    /// A bare ACK is also tried as a zero-window probe (`seq = ISN`, RFC 9293 §3.8.6.1): the
    /// cookie SYN-ACK advertised a zero window, so a client whose handshake ACK was lost
    /// probes with the sequence number just below `ISN + 1`.
    pub(crate) fn try_cookie_ack(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        key: &FlowKey,
        old: Option<SlotId>,
        svc: usize,
    ) -> Option<Verdict> {
        let o = d.tcp.options().ok()?;
        let (seq, ack) = (d.tcp.seq, d.tcp.ack);
        let tsecr = o.timestamp.map(|t| t.1);
        let cookie = ack.wrapping_sub(1);
        let (dec, next_c) = match self.cookies.validate(now, key, seq.wrapping_sub(1), cookie, tsecr) {
            Ok(dec) => (dec, seq),
            Err(_) if d.tcp.payload_len == 0 => {
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
            win_c: d.tcp.window,
            win_s: dec.mss,
            next_c: SeqNumber(next_c),
            next_s: SeqNumber(o.timestamp.map(|t| t.0).unwrap_or(0)),
            seq_off: cookie,
            ts_off: tsecr.unwrap_or(0),
        };
        self.counters.cookies_validated += 1;
        self.conn_count(&d.src, &mut s);
        if self.table.insert_probe(&self.probe(key), s).is_err() {
            return Some(Verdict::Drop(DropReason::SessionTableFull));
        }
        self.counters.sessions_proxied += 1;
        if self.http_followed(svc, &s) {
            if let Err(r) = self.http_early_data(now, d, frame, key, svc) {
                if let Some(id) = self.table.lookup_probe(&self.probe(key), tick(now)) {
                    self.table.remove(id);
                }
                self.stash.forget(key);
                return Some(Verdict::Drop(r));
            }
        }
        if d.tcp.payload_len > 0 {
            // Early data (a Fast Open client resending its SYN's data): kept for the backend.
            let at = d.l4_off + d.tcp.header_len;
            if let Some(data) = frame.buf.get(at..at + d.tcp.payload_len) {
                self.stash.put(key, data);
            }
        } else {
            self.stash.forget(key);
        }
        if write_backend_syn(d, frame, key, &s).is_err() {
            return Some(Verdict::Drop(DropReason::NoBufferRoom));
        }
        self.counters.backend_syns_sent += 1;
        Some(Verdict::Forward)
    }

    /// The MSS a cookie SYN-ACK towards service `svc` advertises: the service's (fixed, or
    /// learned), no more than the MSS the backend at the destination last announced, nor than
    /// the int link's MTU carries.
    #[inline]
    fn advertised_mss(&mut self, svc: usize, d: &Dissected, adv: &crate::engine::Advertise) -> u16 {
        let configured = if d.v6 { adv.mss_v6 } else { adv.mss_v4 };
        let mut mss = configured;
        if let Some(b) = self.backend_mss.get(&d.dst) {
            mss = if self.learns_mss(svc) { b } else { mss.min(b) };
        }
        let link = self.mtu[0];
        if link != 0 {
            let hdrs = if d.v6 { 60 } else { 40 };
            mss = mss.min(link.saturating_sub(hdrs).max(if d.v6 { 1220 } else { 536 }));
        }
        if mss < configured {
            self.counters.mss_clamped += 1;
        }
        mss
    }

    /// Whether `now` is inside service `svc`'s pickup window (the service's `pickup`, or the
    /// global `learning-window` if longer, counted from the first frame).
    fn in_pickup_window(&self, now: u64, svc: usize) -> bool {
        match (self.pickup_window(svc), self.started_ns) {
            (Some(w), Some(start)) => w > 0 && now.saturating_sub(start) < w,
            _ => false,
        }
    }

    /// Mid-stream pickup, client side (see [`super::pickup`]): during the pickup window a
    /// session-less ACK (no SYN, RST or FIN) towards a service is dropped the first time its
    /// flow is seen; seen again, it becomes a keep-alive probe to the server (`seq − 1`, no
    /// data), within the probe budget. Only the server's answer creates a session
    /// ([`Engine::pickup_server`]).
    pub(crate) fn pickup(
        &mut self,
        now: u64,
        d: &Dissected,
        frame: &mut FrameBuf<'_>,
        key: &FlowKey,
        svc: usize,
    ) -> Option<Verdict> {
        if d.tcp.flags & (tf::SYN | tf::RST | tf::FIN | tf::ACK) != tf::ACK || !self.in_pickup_window(now, svc) {
            return None;
        }
        let stored = self.probe(key).stored_key();
        let gate = self.pol.pickup.as_mut()?;
        let h = gate.hash(stored);
        Some(match gate.client_ack(h, now) {
            Gate::Probe => {
                let ts = d.tcp.options().ok().and_then(|o| o.timestamp);
                let seg = Segment::new(
                    d.src,
                    d.dst,
                    d.sport,
                    d.dport,
                    d.tcp.seq.wrapping_sub(1),
                    d.tcp.ack,
                    tf::ACK,
                    d.tcp.window,
                    OptionsRepr { timestamp: ts, ..OptionsRepr::default() },
                );
                if write_segment(frame, d, &seg).is_err() {
                    return Some(Verdict::Drop(DropReason::PickupUnverified));
                }
                self.counters.pickup_probes += 1;
                Verdict::Forward
            }
            Gate::Rejected => Verdict::Drop(DropReason::PickupRejected),
            Gate::Budget | Gate::Busy => {
                self.counters.pickup_probes_refused += 1;
                Verdict::Drop(DropReason::PickupUnverified)
            }
            Gate::FirstSighting | Gate::Pending => Verdict::Drop(DropReason::PickupUnverified),
        })
    }

    /// Mid-stream pickup, server side: during the pickup window a session-less segment from a
    /// protected server proves the connection exists, and becomes an established, tracked
    /// session (counted in `sessions_picked_up`); a RST answering one of the scrubber's probes
    /// is consumed. `None`: not in a window, or a RST that answers no probe (forwarded as
    /// before).
    pub(crate) fn pickup_server(&mut self, now: u64, d: &Dissected, key: &FlowKey, svc: usize) -> Option<Verdict> {
        if !self.in_pickup_window(now, svc) || d.tcp.flags & tf::SYN != 0 {
            return None;
        }
        let rst = d.tcp.flags & tf::RST != 0;
        let probe = self.probe(key);
        if let Some(g) = self.pol.pickup.as_mut() {
            let h = g.hash(probe.stored_key());
            if g.server_segment(h, rst, now) == Some(true) {
                return Some(Verdict::Drop(DropReason::PickupRejected));
            }
        }
        if rst {
            return None;
        }
        let s = Session {
            last_seen: tick(now),
            state: SessionState::Established,
            flags: 0,
            // Scales are unknown mid-stream: assume the largest so in-window RSTs pass.
            client_ws: 14,
            server_ws: 14,
            adv_ws: WS_NONE,
            svc: svc as u8,
            win_c: u16::MAX,
            win_s: d.tcp.window,
            next_c: SeqNumber(d.tcp.ack),
            next_s: SeqNumber(d.tcp.seq) + d.tcp.payload_len as u32,
            ..Session::default()
        };
        match self.table.insert_probe(&probe, s) {
            Ok(_) => {
                self.counters.sessions_picked_up += 1;
                Some(Verdict::Forward)
            }
            Err(_) => None,
        }
    }

    /// The backend answered the proxied SYN: record the offsets, ACK the backend (into
    /// `extra`, sent back out int) and give the client its window (the frame, sent out ext).
    pub(crate) fn consume_backend_synack(
        &mut self,
        tk: u32,
        d: &Dissected,
        key: &FlowKey,
        frame: &mut FrameBuf<'_>,
        extra: &mut FrameBuf<'_>,
        id: SlotId,
    ) -> Verdict {
        let (seq, ack, win) = (d.tcp.seq, d.tcp.ack, d.tcp.window);
        let s0 = *self.table.get(id);
        if SeqNumber(ack) != s0.next_c {
            return Verdict::Drop(DropReason::SynAckBadAck);
        }
        let o: TcpOptions = match d.tcp.options() {
            Ok(o) => *o,
            Err(_) => return Verdict::Drop(DropReason::TcpBadOptions),
        };
        self.learn(usize::from(s0.svc & 0x7f), d.v6, &o);
        if let Some(m) = o.mss {
            self.backend_mss.note(&d.src, m);
        }
        let client_tsval = s0.next_s.0;
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
        s.next_s = SeqNumber(seq) + 1;
        s.state = SessionState::Established;
        s.last_seen = tk;
        let s = *s;
        // The offsets exist now: the fleet's other boxes can carry the flow from here on.
        self.sync_note(crate::engine::sync::SyncOp::Upsert, key, &s);
        // Early data the client sent with its cookie ACK goes to the backend with the ACK.
        let mut early = [0u8; MAX_EARLY];
        let early_len = self.stash.take(key, &mut early).unwrap_or(0);
        if early_len > 0 {
            self.table.get_mut(id).next_c = s.next_c + early_len as u32;
            self.counters.early_data_delivered += 1;
        }

        // The ACK to the backend, built from a copy of the SYN-ACK.
        if extra.buf.len() < frame.len {
            return Verdict::Drop(DropReason::NoBufferRoom);
        }
        extra.buf[..frame.len].copy_from_slice(&frame.buf[..frame.len]);
        extra.len = frame.len;
        swap_macs(extra.buf);
        let both_ts = |a: u32, b: u32| match (ts, server_tsval) {
            (true, Some(_)) => Some((a, b)),
            _ => None,
        };
        let sv = server_tsval.unwrap_or(0);
        let backend_ack = Segment::new(
            d.dst,
            d.src,
            key.client_port,
            key.server_port,
            s.next_c.0,
            seq.wrapping_add(1),
            tf::ACK,
            s.win_c,
            OptionsRepr { timestamp: both_ts(client_tsval, sv), ..OptionsRepr::default() },
        );
        if write_segment_with(extra, d, &backend_ack, &early[..early_len]).is_err() {
            return Verdict::Drop(DropReason::NoBufferRoom);
        }
        // The window update to the client. A SYN-ACK's window is never scaled.
        let update = Segment::new(
            d.src,
            d.dst,
            key.server_port,
            key.client_port,
            cookie_isn.wrapping_add(1),
            s.next_c.0,
            tf::ACK,
            rescale(win, 0, eff_ws(s.adv_ws)),
            OptionsRepr { timestamp: both_ts(sv.wrapping_add(s.ts_off), client_tsval), ..OptionsRepr::default() },
        );
        if write_segment(frame, d, &update).is_err() {
            return Verdict::Drop(DropReason::NoBufferRoom);
        }
        self.counters.backend_synacks_consumed += 1;
        Verdict::ForwardWithReply
    }

    /// A retransmitted backend SYN-ACK on an open proxied session: ACK it again.
    pub(crate) fn reack_backend(
        &mut self,
        d: &Dissected,
        key: &FlowKey,
        frame: &mut FrameBuf<'_>,
        s: &Session,
    ) -> Verdict {
        let timestamp = match (s.flags & F_TS != 0, d.tcp.options().ok().and_then(|o| o.timestamp)) {
            // TSval: what the backend recorded from the client (its TSecr), so PAWS passes.
            (true, Some((sv, se))) => Some((se, sv)),
            _ => None,
        };
        let seg = Segment::new(
            d.dst,
            d.src,
            key.client_port,
            key.server_port,
            s.next_c.0,
            s.next_s.0,
            tf::ACK,
            s.win_c,
            OptionsRepr { timestamp, ..OptionsRepr::default() },
        );
        swap_macs(frame.buf);
        if write_segment(frame, d, &seg).is_err() {
            return Verdict::Drop(DropReason::NoBufferRoom);
        }
        self.counters.backend_synacks_reacked += 1;
        Verdict::Reply
    }
}

/// Rewrite the client's frame into the SYN it would have sent to the backend.
pub(crate) fn write_backend_syn(
    d: &Dissected,
    frame: &mut FrameBuf<'_>,
    key: &FlowKey,
    s: &Session,
) -> Result<(), NoRoom> {
    write_backend_syn_to(&d.src, &d.dst, d, frame, key, s)
}

/// Write the SYN the client would have sent to the backend into `frame` (an IP frame of the
/// same family and layers as `d`), from `client` to `server`.
pub(crate) fn write_backend_syn_to(
    client: &[u8; 16],
    server: &[u8; 16],
    d: &Dissected,
    frame: &mut FrameBuf<'_>,
    key: &FlowKey,
    s: &Session,
) -> Result<(), NoRoom> {
    let ts = s.flags & F_TS != 0;
    let client_ws = if s.client_ws == WS_NONE { None } else { Some(s.client_ws) };
    let window = ((s.win_c as u32) << eff_ws(s.client_ws)).min(0xffff) as u16;
    let opts = OptionsRepr {
        mss: Some(s.win_s), // ProxySynSent keeps the client's MSS here
        wscale: client_ws,
        sack_permitted: s.flags & F_SACK != 0,
        timestamp: if ts { Some((s.next_s.0, 0)) } else { None },
        ..OptionsRepr::default()
    };
    let flags = tf::SYN | if s.flags & F_ECN != 0 { tf::ECE | tf::CWR } else { 0 };
    let seg =
        Segment::new(*client, *server, key.client_port, key.server_port, (s.next_c - 1).0, 0, flags, window, opts);
    write_segment(frame, d, &seg)
}
