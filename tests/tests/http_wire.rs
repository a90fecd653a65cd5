//! HTTP checks, request limits and bans through the engine on the virtual wire: proxied
//! connections to a service with `http`, requests split over segments, keep-alive and
//! pipelined, junk headers reset both ways, out-of-order heads, request limits, bans and their
//! expiry, observe mode.

use std::sync::Arc;

use rulespec::{check, compile, MemSource};
use scrubber::engine::verdict::DropReason;
use scrubber::engine::SynMode;
use scrubber::wire::tcp::flags as tf;
use scrubber_tests::vw::*;

const RULES: &str = "service web\n  dst 198.18.0.10\n  ports 80\n  \
                     http max-header-bytes 8k max-header-line 4k max-headers 64 methods GET,HEAD,POST ban 10m after 2\n\
                     end\n\
                     limit service web per-source requests 5/s burst 5 ban 1m after 3\n";

fn wire(rules: &str) -> Wire {
    let mut src = MemSource::new();
    src.insert("t.rules", rules);
    let c = check("t.rules", &src);
    assert!(!c.has_errors(), "{}", c.render());
    let compiled = compile(&c.policy.unwrap()).unwrap();
    let (_, si) = addrs(false);
    let mut cfg = Wire::config(SynMode::Proxy, si, 80);
    cfg.policy = Some(Arc::new(compiled));
    Wire::with(cfg, vec![])
}

fn case() -> Case {
    Case { v6: false, vlans: vec![], server_ws: 7, server_ts: true }
}

/// A proxied connection from client port `port` (client address `n`).
fn connect(w: &mut Wire, port: u16) -> (Peer, Peer) {
    let (mut c, mut s) = peers(false, port, (0x0100_0000 + u32::from(port), 7, 10), (0x0900_0000, 7, 20));
    proxy_handshake(w, &mut c, &mut s, &case());
    w.advance(1);
    (c, s)
}

/// Send `data` from the client; what came out.
fn send(w: &mut Wire, c: &mut Peer, s: &mut Peer, data: &[u8]) -> Vec<(To, scrubber::wire::builder::TcpFrame)> {
    let f = c.data(w.now, data);
    let out = w.send(To::Client, f);
    let out = deliver(out, c, s);
    // The server acknowledges what it got.
    if out.iter().any(|(t, f)| *t == To::Server && f.flags & tf::RST == 0) {
        deliver(w.send(To::Server, s.ack(w.now)), c, s);
    }
    out
}

fn junk() -> Vec<u8> {
    let mut v = b"GET / HTTP/1.1\r\nHost: web\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36\r\n".to_vec();
    for name in ["X-Array-Buffer", "Ddddd-1", "Ddddd-2"] {
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(b": ");
        v.extend(std::iter::repeat_n(b'i', 3000));
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v
}

#[test]
fn requests_split_keep_alive_and_pipelined_pass() {
    let mut w = wire(RULES);
    let (mut c, mut s) = connect(&mut w, 42_000);
    // A head split over three segments.
    for part in [&b"GET /a HT"[..], b"TP/1.1\r\nHost: web\r\nAcc", b"ept: */*\r\n\r\n"] {
        send(&mut w, &mut c, &mut s, part);
    }
    // A POST with a body, then a keep-alive second request and two pipelined ones.
    send(&mut w, &mut c, &mut s, b"POST /f HTTP/1.1\r\nContent-Length: 4\r\n\r\nab\r\n");
    send(&mut w, &mut c, &mut s, b"HEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n");
    assert!(w.drops.is_empty(), "{:?}", w.drops);
    assert!(s.received.ends_with(b"GET /c HTTP/1.1\r\n\r\n"));
    let k = w.engine.counters();
    assert_eq!(k.http_requests, 4);
    assert_eq!(k.per_target[0].n.http_requests, 4);
    assert_eq!((k.http_resets, k.http_unchecked), (0, 0));
}

#[test]
fn junk_headers_reset_both_sides_and_reach_nothing() {
    let mut w = wire(RULES);
    let (mut c, mut s) = connect(&mut w, 42_001);
    let j = junk();
    // The head comes in MSS-sized segments: three 3,000-byte junk headers pass 8k in all.
    let mut resets = Vec::new();
    for seg in j.chunks(1400) {
        let before = s.received.len();
        let out = send(&mut w, &mut c, &mut s, seg);
        if out.iter().any(|(_, f)| f.flags & tf::RST != 0) {
            resets = out;
            break;
        }
        assert!(s.received.len() > before);
    }
    assert_eq!(w.drops, [DropReason::HttpHeaderTooLarge]);
    assert_eq!(resets.len(), 2, "one RST each way: {resets:?}");
    let to = |t: To| &resets.iter().find(|(x, _)| *x == t).expect("a RST that way").1;
    let (to_server, to_client) = (to(To::Server), to(To::Client));
    assert_eq!(to_server.flags, tf::RST);
    assert_eq!(to_server.seq, s.rcv_nxt, "the backend's RST is exact");
    assert_eq!(to_client.flags, tf::RST | tf::ACK);
    assert_eq!(to_client.seq, c.rcv_nxt, "the client's RST is exact (in its sequence space)");
    assert!(!s.received.windows(4).any(|x| x == b"\r\n\r\n"), "the server never saw a complete head");
    let k = w.engine.counters();
    assert_eq!((k.http_resets, k.rst_sent), (1, 2));
    assert_eq!(k.per_target[0].n.http_violations, 1);
    // The connection is gone: more from the client is dropped as session-less.
    w.advance(1);
    let f = c.data(w.now, b"more junk");
    assert!(w.send(To::Client, f).is_empty());
}

#[test]
fn each_check_has_its_reason() {
    let cases: [(&[u8], DropReason); 5] = [
        (b"PUT / HTTP/1.1\r\n\r\n", DropReason::HttpMethod),
        (b"GET /\r\n\r\n", DropReason::HttpBadRequestLine),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", DropReason::HttpBadHeader),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", DropReason::HttpBadRequestLine),
        (&[b'A'; 20], DropReason::HttpMethod),
    ];
    for (i, (req, reason)) in cases.iter().enumerate() {
        let mut w = wire(RULES);
        let (mut c, mut s) = connect(&mut w, 42_100 + i as u16);
        let out = send(&mut w, &mut c, &mut s, req);
        assert_eq!(w.drops, [*reason], "{:?}", String::from_utf8_lossy(req));
        assert_eq!(out.len(), 2);
    }
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..65 {
        many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
    }
    let mut w = wire(RULES);
    let (mut c, mut s) = connect(&mut w, 42_200);
    send(&mut w, &mut c, &mut s, &many);
    assert_eq!(w.drops, [DropReason::HttpTooManyHeaders]);
}

#[test]
fn out_of_order_head_segments_are_dropped_until_they_come_in_order() {
    let mut w = wire(RULES);
    let (mut c, mut s) = connect(&mut w, 42_300);
    let a = c.data(w.now, b"GET /x HTTP/1.1\r\n");
    let b = c.data(w.now, b"Host: web\r\n\r\n");
    // The second segment overtakes the first: not checked, dropped.
    assert!(w.send(To::Client, b.clone()).is_empty());
    assert_eq!(w.drops, [DropReason::HttpOutOfOrder]);
    deliver(w.send(To::Client, a), &mut c, &mut s);
    deliver(w.send(To::Client, b), &mut c, &mut s);
    assert!(s.received.ends_with(b"GET /x HTTP/1.1\r\nHost: web\r\n\r\n"));
    // A retransmission of what was read passes.
    w.advance(1);
    let again = c.retransmit(w.now, c.isn.wrapping_add(1));
    assert_eq!(w.send(To::Client, again).len(), 1);
    assert_eq!(w.drops.len(), 1);
}

#[test]
fn request_limit_then_ban_then_expiry() {
    let mut w = wire(RULES);
    let (mut c, mut s) = connect(&mut w, 42_400);
    // 5 requests of burst pass, the 6th is over the limit: reset, strike 1.
    for i in 0..5 {
        send(&mut w, &mut c, &mut s, format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes());
    }
    assert!(w.drops.is_empty());
    send(&mut w, &mut c, &mut s, b"GET /6 HTTP/1.1\r\n\r\n");
    assert_eq!(w.drops, [DropReason::HttpRequestLimit]);
    // Two more connections over the limit: strikes 2 and 3 ban the source for a minute.
    for port in [42_401, 42_402] {
        let (mut c, mut s) = connect(&mut w, port);
        send(&mut w, &mut c, &mut s, b"GET / HTTP/1.1\r\n\r\n");
    }
    assert_eq!(w.drops.len(), 3);
    assert_eq!(w.engine.counters().bans_made, 1);
    let bans = w.engine.bans().list(w.now);
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].addr, addrs(false).0);
    // Banned: even a SYN is dropped now.
    let (mut c2, _) = peers(false, 42_403, (7, 7, 10), (8, 7, 20));
    let syn = c2.syn(w.now);
    assert!(w.send(To::Client, syn).is_empty());
    assert_eq!(w.drops.last(), Some(&DropReason::Banned));
    // A minute later the ban is over and the budget full again.
    w.advance(61_000);
    let (mut c, mut s) = connect(&mut w, 42_404);
    send(&mut w, &mut c, &mut s, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(w.drops.last(), Some(&DropReason::Banned), "no new drop");
    assert!(s.received.ends_with(b"GET / HTTP/1.1\r\n\r\n"));
}

#[test]
fn check_violations_ban_after_two() {
    let mut w = wire(RULES);
    for port in [42_500, 42_501] {
        let (mut c, mut s) = connect(&mut w, port);
        send(&mut w, &mut c, &mut s, b"DELETE / HTTP/1.1\r\n\r\n");
    }
    assert_eq!(w.drops, [DropReason::HttpMethod, DropReason::HttpMethod]);
    let b = w.engine.bans().list(w.now);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].until_ns, w.now + 600_000_000_000, "ban 10m from the second violation");
}

#[test]
fn observe_mode_counts_and_forwards() {
    let mut w = wire(&format!("mode observe\n{RULES}"));
    // Observe mode answers no SYNs itself: a tracked handshake.
    let (mut c, mut s) = peers(false, 42_600, (0x0100_0000, 7, 10), (0x0900_0000, 7, 20));
    deliver(w.send(To::Client, c.syn(w.now)), &mut c, &mut s);
    deliver(w.send(To::Server, s.synack(w.now)), &mut c, &mut s);
    deliver(w.send(To::Client, c.ack(w.now)), &mut c, &mut s);
    send(&mut w, &mut c, &mut s, b"PUT / HTTP/1.1\r\n\r\n");
    assert!(s.received.ends_with(b"PUT / HTTP/1.1\r\n\r\n"), "forwarded");
    let k = w.engine.counters();
    assert_eq!(k.would_drop[DropReason::HttpMethod.index()], 1);
    assert_eq!(k.http_resets, 0);
    assert!(w.engine.bans().list(w.now).is_empty(), "observe bans no one");
}

#[test]
fn a_long_upload_is_followed_to_its_end() {
    let mut w = wire(RULES);
    let (mut c, mut s) = connect(&mut w, 42_700);
    send(&mut w, &mut c, &mut s, b"POST /up HTTP/1.1\r\nContent-Length: 512000\r\n\r\n");
    for _ in 0..1000 {
        let f = c.data(w.now, &[b'x'; 512]);
        deliver(w.send(To::Client, f), &mut c, &mut s);
        w.advance(1);
    }
    deliver(w.send(To::Server, s.ack(w.now)), &mut c, &mut s);
    send(&mut w, &mut c, &mut s, b"GET /after HTTP/1.1\r\n\r\n");
    let k = w.engine.counters();
    assert_eq!((k.http_states_lost, k.http_unchecked, k.http_requests), (0, 0, 2));
    assert!(w.drops.is_empty(), "{:?}", w.drops);
}
