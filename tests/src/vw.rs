//! The virtual wire: whole conversations played through the engine in memory.
//!
//! A client and a server are small TCP endpoint models ([`Peer`]). Every frame either of them
//! sends goes through [`scrubber::Engine::process`] ([`Wire::send`]); every frame the engine
//! emits is parsed (checksums verified) and checked by the endpoint that receives it *in its own
//! sequence space* ([`Peer::receive`]): acknowledgement numbers must acknowledge what it sent,
//! TSecr must echo a TSval it sent, SACK blocks must lie inside its send window, the sequence
//! number must be what it expects or a known retransmission. A translation mistake anywhere in
//! the proxy shows up as a failed check at the far end. The server model also answers RSTs and
//! SYNs the way Linux does (RFC 5961 challenge ACKs: [`Peer::on_rst`], [`Peer::on_syn`]).
#![allow(missing_docs, clippy::missing_panics_doc)]

use scrubber::engine::verdict::{Direction, DropReason, Verdict};
use scrubber::engine::{Advertise, Engine, EngineConfig, FrameBuf, Protected, SynMode};
use scrubber::wire::builder::TcpFrame;
use scrubber::wire::tcp::{flags as tf, SackBlocks};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub const MS: u64 = 1_000_000;
pub const T0: u64 = 1_767_225_600 * 1_000_000_000; // 2026-01-01T00:00:00Z

/// Where a frame the engine emitted goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    Client,
    Server,
}

#[derive(Debug)]
pub struct Wire {
    pub engine: Engine,
    pub now: u64,
    pub buf: Vec<u8>,
    pub extra: Vec<u8>,
    pub vlans: Vec<u16>,
    pub drops: Vec<DropReason>,
}

impl Wire {
    pub fn new(mode: SynMode, server: IpAddr, port: u16, vlans: Vec<u16>) -> Wire {
        Wire::with(Wire::config(mode, server, port), vlans)
    }

    /// The engine configuration [`Wire::new`] uses, to be changed before [`Wire::with`].
    pub fn config(mode: SynMode, server: IpAddr, port: u16) -> EngineConfig {
        EngineConfig {
            protect: vec![Protected { addr: server, port: Some(port) }],
            syn_mode: mode,
            table_capacity: 1 << 12,
            cookie_key: *b"virtual-wire-key",
            advertise: Advertise { mss_v4: 1460, mss_v6: 1440, wscale: 7, sack: true, timestamps: true },
            ..EngineConfig::default()
        }
    }

    pub fn with(cfg: EngineConfig, vlans: Vec<u16>) -> Wire {
        Wire {
            engine: Engine::new(cfg).unwrap(),
            now: T0,
            buf: vec![0; 4096],
            extra: vec![0; 4096],
            vlans,
            drops: vec![],
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms * MS;
    }

    /// Send raw frame bytes from `from` through the engine: the verdict and the (main) frame as
    /// it came out.
    pub fn send_raw(&mut self, from: To, bytes: &[u8]) -> (Verdict, Vec<u8>) {
        let dir = match from {
            To::Client => Direction::Inbound,
            To::Server => Direction::Outbound,
        };
        self.buf[..bytes.len()].copy_from_slice(bytes);
        let mut fb = FrameBuf { buf: &mut self.buf, len: bytes.len() };
        let mut eb = FrameBuf { buf: &mut self.extra, len: 0 };
        let v = self.engine.process(self.now, dir, &mut fb, &mut eb);
        let n = fb.len;
        if let Verdict::Drop(r) = v {
            self.drops.push(r);
        }
        (v, self.buf[..n].to_vec())
    }

    /// Send one frame from `from` through the engine; return what comes out and to whom.
    pub fn send(&mut self, from: To, mut f: TcpFrame) -> Vec<(To, TcpFrame)> {
        f.vlans = self.vlans.clone();
        let bytes = f.build();
        let dir = match from {
            To::Client => Direction::Inbound,
            To::Server => Direction::Outbound,
        };
        assert_eq!(self.engine.classify(&bytes), Some(dir));
        self.buf[..bytes.len()].copy_from_slice(&bytes);
        let mut fb = FrameBuf { buf: &mut self.buf, len: bytes.len() };
        let mut eb = FrameBuf { buf: &mut self.extra, len: 0 };
        let v = self.engine.process(self.now, dir, &mut fb, &mut eb);
        let (main_len, extra_len) = (fb.len, eb.len);
        let other = if from == To::Client { To::Server } else { To::Client };
        let parse = |b: &[u8]| {
            let p =
                TcpFrame::parse(b).unwrap_or_else(|e| panic!("engine emitted an unparsable frame ({e:?}): {b:02x?}"));
            assert_eq!(p.vlans, self.vlans, "VLAN tags must be preserved");
            p
        };
        match v {
            Verdict::Forward => vec![(other, parse(&self.buf[..main_len]))],
            Verdict::Reply => vec![(from, parse(&self.buf[..main_len]))],
            Verdict::ReplyTwice => vec![(from, parse(&self.buf[..main_len])), (from, parse(&self.extra[..extra_len]))],
            Verdict::ForwardWithReply => {
                vec![(other, parse(&self.buf[..main_len])), (from, parse(&self.extra[..extra_len]))]
            }
            Verdict::Drop(r) => {
                self.drops.push(r);
                vec![]
            }
            Verdict::Reset(r) => {
                self.drops.push(r);
                vec![(other, parse(&self.buf[..main_len])), (from, parse(&self.extra[..extra_len]))]
            }
        }
    }
}

/// A TCP endpoint model: enough of RFC 9293 / 7323 / 2018 to hold a conversation and to check
/// every segment it receives.
#[derive(Debug)]
pub struct Peer {
    pub name: &'static str,
    pub ip: IpAddr,
    pub port: u16,
    pub peer_ip: IpAddr,
    pub peer_port: u16,
    pub isn: u32,
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub rcv_nxt: u32,
    pub irs: u32,
    pub ws: u8,
    pub peer_ws: u8,
    pub peer_wnd: u32,
    pub mss: u16,
    pub ts_base: u32,
    pub ts_recent: u32,
    pub ts_sent: Vec<u32>,
    pub use_ts: bool,
    pub use_sack: bool,
    /// Bytes received in order.
    pub received: Vec<u8>,
    /// Out-of-order segments by sequence number.
    pub ooo: BTreeMap<u32, Vec<u8>>,
    /// Everything sent, by sequence number (for retransmission).
    pub sent: BTreeMap<u32, Vec<u8>>,
    pub fin_sent: bool,
    pub fin_received: bool,
    pub established: bool,
}

impl Peer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &'static str,
        ip: IpAddr,
        port: u16,
        peer_ip: IpAddr,
        peer_port: u16,
        isn: u32,
        ws: u8,
        ts_base: u32,
    ) -> Peer {
        Peer {
            name,
            ip,
            port,
            peer_ip,
            peer_port,
            isn,
            snd_una: isn,
            snd_nxt: isn,
            rcv_nxt: 0,
            irs: 0,
            ws,
            peer_ws: 0,
            peer_wnd: 0,
            mss: 1460,
            ts_base,
            ts_recent: 0,
            ts_sent: vec![],
            use_ts: true,
            use_sack: true,
            received: vec![],
            ooo: BTreeMap::new(),
            sent: BTreeMap::new(),
            fin_sent: false,
            fin_received: false,
            established: false,
        }
    }

    pub fn tsval(&mut self, now: u64) -> u32 {
        let v = self.ts_base.wrapping_add(((now - T0) / MS) as u32);
        self.ts_sent.push(v);
        v
    }

    pub fn frame(&mut self, now: u64, seq: u32, flags: u8, payload: &[u8]) -> TcpFrame {
        let mut f = TcpFrame::new(self.ip, self.port, self.peer_ip, self.peer_port, flags);
        f.seq = seq;
        f.ack = if flags & tf::ACK != 0 { self.rcv_nxt } else { 0 };
        f.window = ((65535u32 * 16) >> self.ws).min(65535) as u16;
        if self.use_ts && (self.established || flags & tf::SYN != 0) {
            let tv = self.tsval(now);
            f.options.timestamp = Some((tv, if flags & tf::ACK != 0 { self.ts_recent } else { 0 }));
        }
        f.payload = payload.to_vec();
        f
    }

    pub fn syn(&mut self, now: u64) -> TcpFrame {
        let mut f = self.frame(now, self.isn, tf::SYN, &[]);
        f.window = 64240;
        f.options.mss = Some(self.mss);
        f.options.wscale = Some(self.ws);
        f.options.sack_permitted = true;
        self.snd_nxt = self.isn.wrapping_add(1);
        f
    }

    pub fn synack(&mut self, now: u64) -> TcpFrame {
        let mut f = self.frame(now, self.isn, tf::SYN | tf::ACK, &[]);
        f.window = 65160;
        f.options.mss = Some(self.mss);
        f.options.wscale = Some(self.ws);
        f.options.sack_permitted = self.use_sack;
        if !self.use_ts {
            f.options.timestamp = None;
        }
        self.snd_nxt = self.isn.wrapping_add(1);
        f
    }

    pub fn ack(&mut self, now: u64) -> TcpFrame {
        let mut f = self.frame(now, self.snd_nxt, tf::ACK, &[]);
        if self.use_sack && !self.ooo.is_empty() {
            let mut sb = SackBlocks::default();
            for (s, d) in self.ooo.iter().take(if self.use_ts { 3 } else { 4 }) {
                sb.push((*s, s.wrapping_add(d.len() as u32)));
            }
            f.options.sack = sb;
        }
        f
    }

    /// A data segment of new data.
    pub fn data(&mut self, now: u64, payload: &[u8]) -> TcpFrame {
        let seq = self.snd_nxt;
        self.sent.insert(seq, payload.to_vec());
        self.snd_nxt = seq.wrapping_add(payload.len() as u32);
        self.frame(now, seq, tf::ACK | tf::PSH, payload)
    }

    /// A zero-window probe: a bare ACK one below the next sequence number (RFC 9293 §3.8.6.1).
    pub fn zero_window_probe(&mut self, now: u64) -> TcpFrame {
        self.frame(now, self.snd_nxt.wrapping_sub(1), tf::ACK, &[])
    }

    /// Retransmit the segment that starts at `seq`.
    pub fn retransmit(&mut self, now: u64, seq: u32) -> TcpFrame {
        let p = self.sent.get(&seq).expect("retransmitting unsent data").clone();
        self.frame(now, seq, tf::ACK | tf::PSH, &p)
    }

    pub fn fin(&mut self, now: u64) -> TcpFrame {
        let f = self.frame(now, self.snd_nxt, tf::FIN | tf::ACK, &[]);
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        self.fin_sent = true;
        f
    }

    /// A RST arriving for this (established) endpoint, handled as Linux does (RFC 5961 §3.2):
    /// at exactly `rcv_nxt` it resets the connection (`true` is returned, nothing to send); in
    /// the window but elsewhere it is answered with a challenge ACK (returned); outside the
    /// window it is ignored.
    pub fn on_rst(&mut self, now: u64, f: &TcpFrame) -> (bool, Option<TcpFrame>) {
        assert_ne!(f.flags & tf::RST, 0);
        if f.seq == self.rcv_nxt {
            self.established = false;
            return (true, None);
        }
        let wnd = 65535u32 << self.ws;
        if f.seq.wrapping_sub(self.rcv_nxt) < wnd {
            return (false, Some(self.challenge_ack(now)));
        }
        (false, None)
    }

    /// A SYN arriving for this established endpoint (RFC 5961 §4: never a reset, a challenge
    /// ACK), as Linux answers a reconnect while it still holds the old connection.
    pub fn on_syn(&mut self, now: u64, f: &TcpFrame) -> TcpFrame {
        assert_eq!(f.flags & (tf::SYN | tf::ACK), tf::SYN);
        assert!(self.established, "{}: on_syn is for a connection it still holds", self.name);
        self.challenge_ack(now)
    }

    /// `<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>`.
    pub fn challenge_ack(&mut self, now: u64) -> TcpFrame {
        self.frame(now, self.snd_nxt, tf::ACK, &[])
    }

    /// The RST a host answers a segment of a connection it does not know with (RFC 9293
    /// §3.10.7.1): `<SEQ=SEG.ACK><CTL=RST>`.
    pub fn reset_for(&self, f: &TcpFrame) -> TcpFrame {
        let mut r = TcpFrame::new(self.ip, self.port, f.src, f.src_port, tf::RST);
        r.seq = f.ack;
        r
    }

    /// Check and absorb a received segment.
    pub fn receive(&mut self, f: &TcpFrame) {
        let n = self.name;
        assert_eq!(
            (f.src, f.src_port, f.dst, f.dst_port),
            (self.peer_ip, self.peer_port, self.ip, self.port),
            "{n}: addresses"
        );
        let syn = f.flags & tf::SYN != 0;
        if f.flags & tf::ACK != 0 {
            // Acknowledges something this peer sent, in this peer's own sequence space.
            let a = f.ack;
            assert!(
                a.wrapping_sub(self.snd_una) <= self.snd_nxt.wrapping_sub(self.snd_una),
                "{n}: ack {a} outside [{}, {}]",
                self.snd_una,
                self.snd_nxt
            );
            self.snd_una = a;
        }
        if let Some((_, tsecr)) = f.options.timestamp {
            if f.flags & tf::ACK != 0 {
                assert!(
                    self.ts_sent.contains(&tsecr),
                    "{n}: TSecr {tsecr} echoes no TSval this peer sent ({:?})",
                    self.ts_sent
                );
            }
        }
        for &(l, r) in f.options.sack.as_slice() {
            assert!(
                l.wrapping_sub(self.snd_una) < self.snd_nxt.wrapping_sub(self.snd_una)
                    && r.wrapping_sub(self.snd_una) <= self.snd_nxt.wrapping_sub(self.snd_una),
                "{n}: SACK block {l}-{r} outside [{}, {}]",
                self.snd_una,
                self.snd_nxt
            );
        }
        if syn {
            self.irs = f.seq;
            self.rcv_nxt = f.seq.wrapping_add(1);
            self.peer_ws = f.options.wscale.unwrap_or(0);
            self.peer_wnd = f.window as u32;
            if let Some((tv, _)) = f.options.timestamp {
                self.ts_recent = tv;
            }
            if f.flags & tf::ACK != 0 {
                self.established = true;
            }
            return;
        }
        if let Some((tv, _)) = f.options.timestamp {
            // Timestamps from the peer never go backwards (PAWS, RFC 7323 §5).
            assert!(tv.wrapping_sub(self.ts_recent) < 1 << 31, "{n}: TSval went backwards: {tv} < {}", self.ts_recent);
            if f.seq == self.rcv_nxt {
                self.ts_recent = tv;
            }
        }
        self.peer_wnd = (f.window as u32) << self.peer_ws;
        self.established = true;
        let len = f.payload.len() as u32 + (f.flags & tf::FIN != 0) as u32;
        if len == 0 {
            return;
        }
        let off = f.seq.wrapping_sub(self.rcv_nxt);
        if off == 0 {
            self.received.extend_from_slice(&f.payload);
            self.rcv_nxt = self.rcv_nxt.wrapping_add(f.payload.len() as u32);
            if f.flags & tf::FIN != 0 {
                self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                self.fin_received = true;
            }
            // Drain reassembled out-of-order data.
            while let Some(d) = self.ooo.remove(&self.rcv_nxt) {
                self.rcv_nxt = self.rcv_nxt.wrapping_add(d.len() as u32);
                self.received.extend_from_slice(&d);
            }
        } else if off < 1 << 30 {
            self.ooo.insert(f.seq, f.payload.clone());
        } else {
            // A retransmission of data already received: it must lie wholly before rcv_nxt.
            assert!(f.seq.wrapping_add(len).wrapping_sub(self.rcv_nxt) as i32 <= 0, "{n}: overlapping old segment");
        }
    }
}

pub fn deliver(out: Vec<(To, TcpFrame)>, client: &mut Peer, server: &mut Peer) -> Vec<(To, TcpFrame)> {
    for (to, f) in &out {
        match to {
            To::Client => client.receive(f),
            To::Server => server.receive(f),
        }
    }
    out
}

pub fn one(out: &[(To, TcpFrame)], to: To) -> &TcpFrame {
    assert_eq!(out.len(), 1, "expected exactly one frame, got {out:?}");
    assert_eq!(out[0].0, to);
    &out[0].1
}

#[derive(Debug, Clone)]
pub struct Case {
    pub v6: bool,
    pub vlans: Vec<u16>,
    pub server_ws: u8,
    pub server_ts: bool,
}

pub fn addrs(v6: bool) -> (IpAddr, IpAddr) {
    if v6 {
        ("2001:2::1:1".parse().unwrap(), "2001:2::10".parse().unwrap())
    } else {
        ("198.18.1.1".parse().unwrap(), "198.18.0.10".parse().unwrap())
    }
}

/// A client on `port` and the protected server on port 80, facing each other: each given as
/// (ISN, window scale, TSval base).
pub fn peers(v6: bool, port: u16, client: (u32, u8, u32), server: (u32, u8, u32)) -> (Peer, Peer) {
    let (ci, si) = addrs(v6);
    (
        Peer::new("client", ci, port, si, 80, client.0, client.1, client.2),
        Peer::new("server", si, 80, ci, port, server.0, server.1, server.2),
    )
}

/// Proxy-mode handshake: SYN → cookie SYN-ACK → ACK → backend SYN → backend SYN-ACK consumed.
pub fn proxy_handshake(w: &mut Wire, c: &mut Peer, s: &mut Peer, case: &Case) {
    let syn = c.syn(w.now);
    let out = w.send(To::Client, syn);
    let sa = one(&out, To::Client).clone();
    assert_eq!(sa.flags, tf::SYN | tf::ACK);
    assert_eq!(sa.ack, c.isn.wrapping_add(1));
    assert_eq!(sa.window, 0, "cookie SYN-ACK holds the client back with a zero window");
    assert_eq!(sa.options.mss, Some(if case.v6 { 1440 } else { 1460 }));
    assert_eq!(sa.options.wscale, Some(7));
    assert!(sa.options.sack_permitted);
    assert_eq!(sa.options.timestamp.map(|t| t.1), Some(*c.ts_sent.last().unwrap()));
    deliver(out, c, s);

    w.advance(1);
    let ack = c.ack(w.now);
    let out = w.send(To::Client, ack);
    let bsyn = one(&out, To::Server).clone();
    assert_eq!(bsyn.flags, tf::SYN, "the backend gets the SYN the client would have sent");
    assert_eq!(bsyn.seq, c.isn, "with the client's own ISN");
    assert_eq!(bsyn.options.wscale, Some(c.ws), "and its window scale");
    assert!(bsyn.options.mss.unwrap() <= c.mss && bsyn.options.mss.unwrap() >= 1220.min(c.mss));
    assert!(bsyn.options.sack_permitted);
    assert_eq!(bsyn.options.timestamp.map(|t| t.1), Some(0));
    deliver(out, c, s);
    s.ws = case.server_ws;
    s.use_ts = case.server_ts;

    w.advance(1);
    let synack = s.synack(w.now);
    let out = w.send(To::Server, synack);
    assert_eq!(out.len(), 2, "window update to the client and ACK to the backend");
    let upd = &out.iter().find(|(t, _)| *t == To::Client).unwrap().1;
    let back = &out.iter().find(|(t, _)| *t == To::Server).unwrap().1;
    assert_eq!(upd.flags, tf::ACK);
    assert!(upd.window > 0, "the client now gets a window");
    assert_eq!(back.flags, tf::ACK);
    assert_eq!(back.ack, s.isn.wrapping_add(1));
    if case.server_ts {
        // The SYNPROXY bug: the handshake ACK must echo the backend's own TSval.
        assert_eq!(back.options.timestamp.map(|t| t.1), Some(*s.ts_sent.last().unwrap()));
    }
    deliver(out, c, s);
    assert!(c.established && s.established);
}

/// Data both ways with loss (→ SACK), reordering and duplicate retransmissions.
pub fn exchange(w: &mut Wire, c: &mut Peer, s: &mut Peer) {
    // Client request in three segments; the second is "lost" and delivered last.
    let reqs: Vec<Vec<u8>> = (0..3).map(|i| format!("GET /part{i} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()).collect();
    let segs: Vec<TcpFrame> = reqs.iter().map(|r| c.data(w.now, r)).collect();
    deliver(w.send(To::Client, segs[0].clone()), c, s);
    deliver(w.send(To::Client, segs[2].clone()), c, s);
    // Server sees a hole: dup-ACK with a SACK block (server sequence space == client's, but
    // the ack travels through translation).
    assert_eq!(s.ooo.len(), 1);
    w.advance(1);
    let dup = s.ack(w.now);
    assert_eq!(dup.options.sack.len, 1);
    deliver(w.send(To::Server, dup), c, s);
    // Retransmit the hole, then a duplicate of an already-received segment.
    w.advance(1);
    let rtx = c.retransmit(w.now, segs[1].seq);
    deliver(w.send(To::Client, rtx), c, s);
    let dup0 = c.retransmit(w.now, segs[0].seq);
    deliver(w.send(To::Client, dup0), c, s);
    let want: Vec<u8> = reqs.concat();
    assert_eq!(s.received, want, "server got the request in order");
    deliver(w.send(To::Server, s.ack(w.now)), c, s);

    // Server response: 40 segments of 1000 bytes; segments 5 and 6 lost, 9 and 10 swapped.
    let body: Vec<u8> = (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let segs: Vec<TcpFrame> = body.chunks(1000).map(|ch| s.data(w.now, ch)).collect();
    for (i, f) in segs.iter().enumerate() {
        if i == 5 || i == 6 || i == 9 {
            continue;
        }
        w.advance(1);
        deliver(w.send(To::Server, f.clone()), c, s);
        if i == 10 {
            deliver(w.send(To::Server, segs[9].clone()), c, s);
        }
        if i == 8 {
            // Client SACKs the data above the hole; blocks travel client → server and must be
            // translated into the backend's sequence space.
            let a = c.ack(w.now);
            assert!(a.options.sack.len >= 1);
            deliver(w.send(To::Client, a), c, s);
        }
    }
    for i in [5, 6] {
        w.advance(1);
        let r = s.retransmit(w.now, segs[i].seq);
        deliver(w.send(To::Server, r), c, s);
    }
    assert_eq!(c.received, body, "client got the whole response, in order");
    deliver(w.send(To::Client, c.ack(w.now)), c, s);
    assert_eq!(s.snd_una, s.snd_nxt, "server saw everything acknowledged");
}

pub fn close(w: &mut Wire, c: &mut Peer, s: &mut Peer) {
    w.advance(1);
    deliver(w.send(To::Client, c.fin(w.now)), c, s);
    deliver(w.send(To::Server, s.fin(w.now)), c, s);
    deliver(w.send(To::Client, c.ack(w.now)), c, s);
    assert!(c.fin_received && s.fin_received);
    assert_eq!(c.snd_una, c.snd_nxt);
    assert_eq!(s.snd_una, s.snd_nxt);
}
