//! TCP the way real clients and servers do it, through the engine on the virtual wire: RFC 5961
//! resets, lingering closes, reconnects on a busy port, MSS and path MTU, Fast Open. Each test
//! is one of the failures found with real Linux TCP through `scrubber run` (the e2e tests repeat
//! them with real stacks); each fails on the engine before the fix.

use scrubber::engine::verdict::Verdict;
use scrubber::engine::SynMode;
use scrubber::wire::frame::dissect;
use scrubber::wire::icmp::IcmpPacket;
use scrubber::wire::tcp::flags as tf;
use scrubber::wire::IPPROTO_ICMP;
use scrubber_tests::vw::*;
use std::net::IpAddr;

fn case() -> Case {
    Case { v6: false, vlans: vec![], server_ws: 7, server_ts: true }
}

/// A proxied, established connection with a request delivered and acknowledged.
fn established(port: u16) -> (Wire, Peer, Peer) {
    let (_, si) = addrs(false);
    let mut w = Wire::new(SynMode::Proxy, si, 80, vec![]);
    let (mut c, mut s) = peers(false, port, (0x0100_0000, 7, 10), (0x0900_0000, 7, 20));
    proxy_handshake(&mut w, &mut c, &mut s, &case());
    w.advance(1);
    deliver(w.send(To::Client, c.data(w.now, b"GET / HTTP/1.1\r\n\r\n")), &mut c, &mut s);
    deliver(w.send(To::Server, s.ack(w.now)), &mut c, &mut s);
    (w, c, s)
}

#[test]
fn blind_in_window_rst_does_not_cut_the_connection() {
    let (mut w, mut c, mut s) = established(41_000);
    // An off-path attacker spoofing the client guesses a sequence number inside the window.
    w.advance(1);
    let blind = c.frame(w.now, c.snd_nxt.wrapping_add(1000), tf::RST, &[]);
    let out = w.send(To::Client, blind);
    let at_server = one(&out, To::Server).clone();
    // The server (RFC 5961) answers with a challenge ACK and keeps the connection.
    let (reset, challenge) = s.on_rst(w.now, &at_server);
    assert!(!reset);
    deliver(w.send(To::Server, challenge.expect("challenge ACK")), &mut c, &mut s);
    // The connection goes on through the scrubber.
    w.advance(1);
    deliver(w.send(To::Client, c.data(w.now, b"more")), &mut c, &mut s);
    assert!(s.received.ends_with(b"more"), "the client's data after the blind RST reached the server");
    assert!(w.drops.is_empty(), "{:?}", w.drops);
    let k = w.engine.counters();
    assert_eq!((k.rst_inexact_forwarded, k.sessions_closed), (1, 0));
    // The exact RST does close it.
    let rst = c.frame(w.now, c.snd_nxt, tf::RST, &[]);
    let (reset, _) = s.on_rst(w.now, one(&w.send(To::Client, rst), To::Server));
    assert!(reset);
    assert_eq!(w.engine.counters().sessions_closed, 1);
}

#[test]
fn lost_server_rst_does_not_hang_the_client() {
    let (mut w, mut c, mut s) = established(41_001);
    // The server aborts the connection; its RST is lost before the client.
    w.advance(1);
    let rst = s.frame(w.now, s.snd_nxt, tf::RST | tf::ACK, &[]);
    let _lost = one(&w.send(To::Server, rst), To::Client).clone();
    s.established = false;
    // The client goes on sending: the segment still reaches the server...
    w.advance(200);
    let again = c.data(w.now, b"still there?");
    let out = w.send(To::Client, again);
    let at_server = one(&out, To::Server).clone();
    // ... which resets it again, and the client hears it in its own sequence space.
    let r = s.reset_for(&at_server);
    let out = w.send(To::Server, r);
    let to_client = one(&out, To::Client);
    assert_eq!(to_client.flags & tf::RST, tf::RST);
    assert_eq!(to_client.seq, c.rcv_nxt, "the second RST is exact for the client");
    assert_eq!(w.engine.counters().closed_forwarded, 1);
    assert!(w.drops.is_empty(), "{:?}", w.drops);
}

#[test]
fn reconnect_from_the_same_port_while_the_backend_holds_the_old_connection() {
    let (mut w, c, mut s) = established(41_002);
    let (ci, si) = addrs(false);
    // The client crashes and a new one reconnects from the same port within a second: Linux's
    // ISNs for the same 4-tuple then lie close to the old ones (RFC 6528 clock).
    w.advance(300);
    let mut c2 = Peer::new("client2", ci, 41_002, si, 80, c.isn.wrapping_add(250_000), 7, 5_000);
    let syn = c2.syn(w.now);
    let out = w.send(To::Client, syn);
    let sa = one(&out, To::Client).clone();
    assert_eq!(sa.flags, tf::SYN | tf::ACK, "answered with a cookie");
    c2.receive(&sa);
    w.advance(1);
    let ack = c2.ack(w.now);
    let out = w.send(To::Client, ack);
    let bsyn = one(&out, To::Server).clone();
    assert_eq!((bsyn.flags, bsyn.seq), (tf::SYN, c2.isn), "the cookie ACK opened the new connection");
    // The backend still holds the old connection: a challenge ACK. The scrubber resets the stale
    // connection at the ACK's acknowledgement number, as a client in SYN-SENT would, and sends
    // the SYN again right behind the RST.
    w.advance(1);
    let ch = s.on_syn(w.now, &bsyn);
    let out = w.send(To::Server, ch.clone());
    assert_eq!(out.len(), 2, "{out:?}");
    let (rst, bsyn2) = (out[0].1.clone(), out[1].1.clone());
    assert!(out.iter().all(|(to, _)| *to == To::Server));
    assert_eq!((rst.flags, rst.seq), (tf::RST, ch.ack));
    let (reset, _) = s.on_rst(w.now, &rst);
    assert!(reset, "the stale backend connection is gone");
    assert_eq!((bsyn2.flags, bsyn2.seq), (tf::SYN, c2.isn));
    assert_eq!(bsyn2.options.mss, bsyn.options.mss, "the same SYN as before");
    let mut s2 = Peer::new("server2", si, 80, ci, 41_002, 0x7777_0000, 7, 9_000);
    s2.receive(&bsyn2);
    w.advance(1);
    let synack = s2.synack(w.now);
    deliver(w.send(To::Server, synack), &mut c2, &mut s2);
    assert!(c2.established && s2.established);
    w.advance(1);
    deliver(w.send(To::Client, c2.data(w.now, b"hello again")), &mut c2, &mut s2);
    assert_eq!(s2.received, b"hello again");
    let k = w.engine.counters();
    assert_eq!((k.backend_challenge_acks, k.rst_sent, k.reopen_tried), (1, 1, 1));
    assert!(w.drops.is_empty(), "{:?}", w.drops);
}

#[test]
fn advertised_mss_follows_the_backend_and_the_int_link() {
    let (ci, si) = addrs(false);
    // The backend announces 1240 (its link has MTU 1280): the next clients are told 1240, not
    // the configured 1460; when the backend announces more, that is followed too.
    let mut w = Wire::new(SynMode::Proxy, si, 80, vec![]);
    let mut adv = Vec::new();
    for (i, backend_mss) in [1240u16, 1240, 1400].into_iter().enumerate() {
        let port = 42_000 + i as u16;
        let mut c = Peer::new("client", ci, port, si, 80, 1000 * i as u32, 7, 10);
        let mut s = Peer::new("server", si, 80, ci, port, 0x5000_0000, 7, 20);
        s.mss = backend_mss;
        let out = w.send(To::Client, c.syn(w.now));
        let sa = one(&out, To::Client).clone();
        adv.push(sa.options.mss.unwrap());
        c.receive(&sa);
        let bsyn = one(&w.send(To::Client, c.ack(w.now)), To::Server).clone();
        s.receive(&bsyn);
        deliver(w.send(To::Server, s.synack(w.now)), &mut c, &mut s);
        w.advance(10);
    }
    assert_eq!(adv, [1460, 1240, 1240], "learned from the first backend SYN-ACK");
    let mut c = Peer::new("client", ci, 42_100, si, 80, 77, 7, 10);
    let sa = one(&w.send(To::Client, c.syn(w.now)), To::Client).clone();
    assert_eq!(sa.options.mss, Some(1400), "kept current: the latest SYN-ACK counts");

    // An int link with MTU 1280: at most 1240 even before any backend answered, and a frame too
    // large for the link is answered with ICMP fragmentation needed (RFC 1191) from the server.
    let mut cfg = Wire::config(SynMode::Proxy, si, 80);
    cfg.int_mtu = 1280;
    let mut w = Wire::with(cfg, vec![]);
    let (mut c, mut s) = peers(false, 42_200, (0x0100_0000, 7, 10), (0x0900_0000, 7, 20));
    let sa = one(&w.send(To::Client, c.syn(w.now)), To::Client).clone();
    assert_eq!(sa.options.mss, Some(1240));
    c.receive(&sa);
    let bsyn = one(&w.send(To::Client, c.ack(w.now)), To::Server).clone();
    s.receive(&bsyn);
    deliver(w.send(To::Server, s.synack(w.now)), &mut c, &mut s);
    let mut big = c.data(w.now, &[0x42; 1400]).build();
    big[20] |= 0x40; // DF
    let ip = &mut big[14..34];
    ip[10..12].copy_from_slice(&[0, 0]);
    let ck = scrubber::wire::checksum::finish(scrubber::wire::checksum::sum(ip));
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    let (v, out) = w.send_raw(To::Client, &big);
    assert_eq!(v, Verdict::Reply);
    let d = dissect(&out).unwrap();
    assert_eq!((d.proto, d.icmp_type), (IPPROTO_ICMP, Some(3)));
    let m = IcmpPacket::new_checked(d.l4(&out)).unwrap();
    assert_eq!((m.msg_code(), m.rest_of_header()), (4, 1280));
    assert_eq!(w.engine.counters().too_big_answered, 1);
    assert!(w.engine.counters().mss_clamped >= 1);
}

#[test]
fn syn_with_data_gets_an_open_window() {
    let (ci, si) = addrs(false);
    let mut w = Wire::new(SynMode::Proxy, si, 80, vec![]);
    let mut c = Peer::new("client", ci, 43_000, si, 80, 5000, 7, 10);
    let mut s = Peer::new("server", si, 80, ci, 43_000, 0x4000_0000, 7, 20);
    let req = b"GET / HTTP/1.1\r\n\r\n";
    let mut syn = c.syn(w.now);
    syn.payload = req.to_vec();
    let sa = one(&w.send(To::Client, syn), To::Client).clone();
    assert_eq!(sa.window as usize, req.len(), "room for exactly the SYN's data, not a zero window");
    assert_eq!(sa.ack, c.isn.wrapping_add(1), "the SYN's data is not acknowledged");
    c.receive(&sa);
    // The client sends its data again, with the handshake's ACK: that opens the backend side.
    c.snd_nxt = c.isn.wrapping_add(1);
    w.advance(1);
    let data = c.data(w.now, req);
    let bsyn = one(&w.send(To::Client, data), To::Server).clone();
    assert_eq!((bsyn.flags, bsyn.seq), (tf::SYN, c.isn));
    s.receive(&bsyn);
    // The backend's SYN-ACK: the client gets its window, the backend the ACK with the data.
    w.advance(1);
    let out = deliver(w.send(To::Server, s.synack(w.now)), &mut c, &mut s);
    assert_eq!(out.len(), 2);
    assert_eq!(s.received, req, "the request reached the backend with the handshake");
    deliver(w.send(To::Server, s.ack(w.now)), &mut c, &mut s);
    assert_eq!(c.snd_una, c.snd_nxt, "and the client heard it acknowledged");
    let k = w.engine.counters();
    assert_eq!((k.tfo_syns, k.early_data_delivered), (1, 1));
}

/// Two boxes of a fleet (proxy for port 80 of the server, session streaming on), and the
/// server's address.
fn two_boxes(v6: bool) -> (IpAddr, Wire, Wire) {
    let (_, si) = addrs(v6);
    let mut a = Wire::new(SynMode::Proxy, si, 80, vec![]);
    let mut b = Wire::new(SynMode::Proxy, si, 80, vec![]);
    a.engine.enable_sync();
    b.engine.enable_sync();
    (si, a, b)
}

/// Session streaming: a proxied connection opened through box A goes on through box B once A's
/// records are in B (the ECMP path moved when A died), sequence numbers translated both ways;
/// a close on B reaches A as a delete.
#[test]
fn a_proxied_connection_moves_to_a_peer_that_took_in_its_records() {
    let (si, mut a, mut b) = two_boxes(false);
    let (mut c, mut s) = peers(false, 43_000, (0x0100_0000, 7, 10), (0x0900_0000, 7, 20));
    proxy_handshake(&mut a, &mut c, &mut s, &case());
    a.advance(1);
    deliver(a.send(To::Client, c.data(a.now, b"GET /1 HTTP/1.1\r\n\r\n")), &mut c, &mut s);
    deliver(a.send(To::Server, s.data(a.now, b"HTTP/1.1 200 OK\r\n\r\n")), &mut c, &mut s);
    let mut recs = Vec::new();
    a.engine.drain_synced(|r| recs.push(*r));
    assert_eq!(recs.len(), 1, "one upsert when the backend handshake gave the offsets: {recs:?}");
    // Without the records, B drops the flow's segments.
    let mut cold = Wire::new(SynMode::Proxy, si, 80, vec![]);
    cold.now = a.now;
    assert!(cold.send(To::Client, c.data(a.now, b"GET /x HTTP/1.1\r\n\r\n")).is_empty());
    c.snd_nxt = c.snd_nxt.wrapping_sub(19);
    // With them, B carries it on.
    b.now = a.now + 1_000_000;
    for r in &recs {
        b.engine.import_synced(b.now, r);
    }
    assert_eq!(b.engine.sync_stats().sync_sessions_imported, 1);
    deliver(b.send(To::Client, c.data(b.now, b"GET /2 HTTP/1.1\r\n\r\n")), &mut c, &mut s);
    assert!(s.received.ends_with(b"GET /2 HTTP/1.1\r\n\r\n"), "B forwarded the client's request");
    deliver(b.send(To::Server, s.data(b.now, b"HTTP/1.1 200 OK\r\n\r\nsecond")), &mut c, &mut s);
    assert!(c.received.ends_with(b"second"), "B translated the server's sequence numbers for the client");
    assert!(b.drops.is_empty(), "{:?}", b.drops);
    // A close through B goes back to A as a delete.
    close(&mut b, &mut c, &mut s);
    let mut back = Vec::new();
    b.engine.drain_synced(|r| back.push(*r));
    assert!(back.iter().any(|r| r.op == scrubber::engine::sync::SyncOp::Delete), "{back:?}");
    for r in &back {
        a.engine.import_synced(b.now, r);
    }
    assert!(a.engine.sync_stats().sync_sessions_deleted >= 1);
}

/// A box that (re)joins the fleet heard none of the records made before its start: its peers
/// walk their tables for it. Here B drops A's records (it was not there); A's walk, paced in
/// time, gives B the proxied connection with its offsets, and B carries it on.
#[test]
fn a_rejoining_peer_learns_open_connections_from_a_table_walk() {
    let (si, mut a, mut b) = two_boxes(false);
    let (mut c, mut s) = peers(false, 43_100, (0x0100_0000, 7, 10), (0x0900_0000, 7, 20));
    proxy_handshake(&mut a, &mut c, &mut s, &case());
    a.advance(1);
    deliver(a.send(To::Client, c.data(a.now, b"GET /1 HTTP/1.1\r\n\r\n")), &mut c, &mut s);
    deliver(a.send(To::Server, s.data(a.now, b"HTTP/1.1 200 OK\r\n\r\n")), &mut c, &mut s);
    a.engine.drain_synced(|_| {}); // B was not there to hear them
                                   // The walk is paced: no time, no records; and it goes on until it has seen every slot.
    a.engine.start_sync_dump(a.now);
    assert!(a.engine.sync_dump_step(a.now), "without credit the walk waits at the open session");
    let mut recs = Vec::new();
    a.engine.drain_synced(|r| recs.push(*r));
    assert!(recs.is_empty(), "no credit yet: {recs:?}");
    let mut t = a.now;
    let mut steps = 0;
    while {
        t += 1_000_000;
        steps += 1;
        a.engine.sync_dump_step(t)
    } {
        assert!(steps < 100_000, "the walk does not end");
    }
    a.engine.drain_synced(|r| recs.push(*r));
    assert_eq!(recs.len(), 1, "one upsert for the one open connection: {recs:?}");
    assert_eq!(recs[0].op, scrubber::engine::sync::SyncOp::Upsert);
    assert_eq!((a.engine.sync_stats().sync_dumps, a.engine.sync_stats().sync_records_dumped), (1, 1));
    b.now = t;
    for r in &recs {
        b.engine.import_synced(b.now, r);
    }
    deliver(b.send(To::Client, c.data(b.now, b"GET /2 HTTP/1.1\r\n\r\n")), &mut c, &mut s);
    assert!(s.received.ends_with(b"GET /2 HTTP/1.1\r\n\r\n"), "B forwarded the client's request");
    deliver(b.send(To::Server, s.data(b.now, b"HTTP/1.1 200 OK\r\n\r\nsecond")), &mut c, &mut s);
    assert!(c.received.ends_with(b"second"), "B translated the server's sequence numbers for the client");
    assert!(b.drops.is_empty(), "{:?}", b.drops);
    // A table of 3,000 open sessions: 100 records a millisecond, all of them in the end.
    let mut f = Wire::new(SynMode::Proxy, si, 80, vec![]);
    f.engine.enable_sync();
    for port in 0..3_000u16 {
        let mut r = recs[0];
        r.key.client_port = 10_000 + port;
        f.engine.import_synced(t, &r);
    }
    assert_eq!(f.engine.sync_stats().sync_sessions_imported, 3_000);
    f.engine.start_sync_dump(t);
    let mut got = 0;
    for ms in 1..=10 {
        f.engine.sync_dump_step(t + ms * 1_000_000);
        f.engine.drain_synced(|_| got += 1);
    }
    assert!((900..=1_100).contains(&got), "10 ms of walk made {got} records, not ~1,000");
    let mut ms = 10;
    while f.engine.sync_dump_step(t + ms * 1_000_000) {
        f.engine.drain_synced(|_| got += 1);
        ms += 1;
    }
    f.engine.drain_synced(|_| got += 1);
    assert_eq!(got, 3_000, "every open session once");
    assert!(ms >= 30, "3,000 records took {ms} ms, faster than 100 a millisecond");
}

/// IPv6 sessions cannot be sent from the table (it keeps a fingerprint of the flow): the walk
/// marks them, and the connection's next segment sends the upsert, flow and all.
#[test]
fn a_table_walk_sends_ipv6_sessions_with_their_next_segment() {
    let (_, mut a, mut b) = two_boxes(true);
    let (mut c, mut s) = peers(true, 43_200, (0x0100_0000, 7, 10), (0x0900_0000, 7, 20));
    proxy_handshake(&mut a, &mut c, &mut s, &Case { v6: true, ..case() });
    a.advance(1);
    deliver(a.send(To::Client, c.data(a.now, b"GET /1 HTTP/1.1\r\n\r\n")), &mut c, &mut s);
    a.engine.drain_synced(|_| {});
    a.engine.start_sync_dump(a.now);
    let mut t = a.now;
    while {
        t += 1_000_000;
        a.engine.sync_dump_step(t)
    } {}
    let mut recs = Vec::new();
    a.engine.drain_synced(|r| recs.push(*r));
    assert!(recs.is_empty(), "{recs:?}");
    assert_eq!((a.engine.sync_stats().sync_records_dumped, a.engine.sync_stats().sync_sessions_marked), (0, 1));
    // The next segment (well within 64 s) carries the session to the peers.
    a.now = t;
    deliver(a.send(To::Server, s.data(a.now, b"HTTP/1.1 200 OK\r\n\r\n")), &mut c, &mut s);
    a.engine.drain_synced(|r| recs.push(*r));
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert!(recs[0].key.v6 && recs[0].op == scrubber::engine::sync::SyncOp::Upsert, "{recs:?}");
    // Only once: the segment after it sends nothing.
    a.advance(1);
    deliver(a.send(To::Client, c.data(a.now, b"GET /2 HTTP/1.1\r\n\r\n")), &mut c, &mut s);
    a.engine.drain_synced(|r| recs.push(*r));
    assert_eq!(recs.len(), 1, "{recs:?}");
    b.now = a.now + 1_000_000;
    b.engine.import_synced(b.now, &recs[0]);
    deliver(b.send(To::Client, c.data(b.now, b"GET /3 HTTP/1.1\r\n\r\n")), &mut c, &mut s);
    assert!(s.received.ends_with(b"GET /3 HTTP/1.1\r\n\r\n"), "B forwarded the client's request");
    deliver(b.send(To::Server, s.data(b.now, b"HTTP/1.1 200 OK\r\n\r\nthird")), &mut c, &mut s);
    assert!(c.received.ends_with(b"third"), "B translated the server's sequence numbers");
    assert!(b.drops.is_empty(), "{:?}", b.drops);
}
