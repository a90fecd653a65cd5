//! Whole conversations played through the engine in memory.
//!
//! A client and a server are small TCP endpoint models. Every frame either of them sends goes
//! through [`Engine::process`]; every frame the engine emits is parsed (checksums verified) and
//! checked by the endpoint that receives it *in its own sequence space*: acknowledgement numbers
//! must acknowledge what it sent, TSecr must echo a TSval it sent, SACK blocks must lie inside
//! its send window, the sequence number must be what it expects or a known retransmission. A
//! translation mistake anywhere in the proxy shows up as a failed check at the far end.

use scrubber::engine::verdict::DropReason;
use scrubber::engine::SynMode;
use scrubber::wire::tcp::flags as tf;
use scrubber_tests::vw::*;

fn proxy_conversation(case: Case) {
    let (_, si) = addrs(case.v6);
    let mut w = Wire::new(SynMode::Proxy, si, 80, case.vlans.clone());
    let (mut c, mut s) = peers(case.v6, 40_000, (0xfff0_0000, 8, 1_000), (0x1234_5678, 7, 5_000_000));
    proxy_handshake(&mut w, &mut c, &mut s, &case);
    exchange(&mut w, &mut c, &mut s);
    close(&mut w, &mut c, &mut s);
    assert!(w.drops.is_empty(), "no legitimate frame dropped: {:?}", w.drops);

    // Immediate port reuse: same 4-tuple, new ISNs, right after the close.
    w.advance(5);
    let (mut c2, mut s2) = peers(case.v6, 40_000, (0x0000_1000, 8, 90_000), (0x9999_0000, 7, 6_000_000));
    proxy_handshake(&mut w, &mut c2, &mut s2, &case);
    exchange(&mut w, &mut c2, &mut s2);
    close(&mut w, &mut c2, &mut s2);
    assert!(w.drops.is_empty(), "no legitimate frame dropped: {:?}", w.drops);
    let k = w.engine.counters();
    assert_eq!(k.cookies_sent, 2);
    assert_eq!(k.cookies_validated, 2);
    assert_eq!(k.backend_synacks_consumed, 2);
    assert_eq!(k.sessions_reused, 1, "the closing session was replaced at the new SYN");
}

#[test]
fn proxy_v4_same_window_scale() {
    proxy_conversation(Case { v6: false, vlans: vec![], server_ws: 7, server_ts: true });
}

#[test]
fn proxy_v4_backend_with_other_window_scale() {
    proxy_conversation(Case { v6: false, vlans: vec![], server_ws: 2, server_ts: true });
}

#[test]
fn proxy_v4_backend_without_timestamps() {
    proxy_conversation(Case { v6: false, vlans: vec![], server_ws: 7, server_ts: false });
}

#[test]
fn proxy_v6() {
    proxy_conversation(Case { v6: true, vlans: vec![], server_ws: 9, server_ts: true });
}

#[test]
fn proxy_v4_vlan_tagged() {
    proxy_conversation(Case { v6: false, vlans: vec![100], server_ws: 7, server_ts: true });
}

#[test]
fn proxy_v6_qinq() {
    proxy_conversation(Case { v6: true, vlans: vec![200, 100], server_ws: 7, server_ts: true });
}

#[test]
fn track_conversation_passes_frames_unchanged() {
    for v6 in [false, true] {
        let (_, si) = addrs(v6);
        let mut w = Wire::new(SynMode::Track, si, 80, vec![]);
        let (mut c, mut s) = peers(v6, 41_000, (777, 7, 1), (999_999, 7, 1 << 31));
        let syn = c.syn(w.now);
        let out = w.send(To::Client, syn.clone());
        let mut fwd = one(&out, To::Server).clone();
        fwd.vlans.clear();
        assert_eq!(fwd, syn, "track mode forwards the SYN unchanged");
        deliver(out, &mut c, &mut s);
        let sa = s.synack(w.now);
        let out = w.send(To::Server, sa.clone());
        assert_eq!(one(&out, To::Client), &sa);
        deliver(out, &mut c, &mut s);
        deliver(w.send(To::Client, c.ack(w.now)), &mut c, &mut s);
        exchange(&mut w, &mut c, &mut s);
        close(&mut w, &mut c, &mut s);
        assert!(w.drops.is_empty(), "{:?}", w.drops);
        // Port reuse in track mode.
        let (mut c2, mut s2) = peers(v6, 41_000, (5_000_000, 7, 100), (123, 7, 200));
        deliver(w.send(To::Client, c2.syn(w.now)), &mut c2, &mut s2);
        deliver(w.send(To::Server, s2.synack(w.now)), &mut c2, &mut s2);
        deliver(w.send(To::Client, c2.ack(w.now)), &mut c2, &mut s2);
        exchange(&mut w, &mut c2, &mut s2);
        assert!(w.drops.is_empty(), "{:?}", w.drops);
        assert_eq!(w.engine.counters().sessions_reused, 1);
    }
}

#[test]
fn lost_handshake_ack_recovered_by_zero_window_probe() {
    let (_, si) = addrs(false);
    let mut w = Wire::new(SynMode::Proxy, si, 80, vec![]);
    let (mut c, mut s) = peers(false, 40_001, (42, 7, 10), (4242, 7, 20));
    let out = w.send(To::Client, c.syn(w.now));
    deliver(out, &mut c, &mut s);
    // The handshake ACK is lost. 200 ms later the client probes the zero window with
    // seq = ISN (snd_una - 1).
    w.advance(200);
    let probe = c.zero_window_probe(w.now);
    let out = w.send(To::Client, probe);
    let bsyn = one(&out, To::Server).clone();
    assert_eq!(bsyn.flags, tf::SYN);
    assert_eq!(bsyn.seq, c.isn);
    deliver(out, &mut c, &mut s);
    let out = w.send(To::Server, s.synack(w.now));
    assert_eq!(out.len(), 2);
    deliver(out, &mut c, &mut s);
    exchange(&mut w, &mut c, &mut s);
}

#[test]
fn silent_backend_gets_the_syn_again() {
    let (_, si) = addrs(false);
    let mut w = Wire::new(SynMode::Proxy, si, 80, vec![]);
    let (mut c, mut s) = peers(false, 40_002, (1, 7, 10), (2, 7, 20));
    deliver(w.send(To::Client, c.syn(w.now)), &mut c, &mut s);
    let out = w.send(To::Client, c.ack(w.now));
    one(&out, To::Server); // first SYN lost on the way to the backend
    w.advance(300);
    let probe = c.zero_window_probe(w.now);
    assert!(w.send(To::Client, probe).is_empty(), "too early to retry");
    assert_eq!(w.drops.pop(), Some(DropReason::ProxyHandshakePending));
    w.advance(1_000);
    let probe = c.zero_window_probe(w.now);
    let out = w.send(To::Client, probe);
    assert_eq!(one(&out, To::Server).flags, tf::SYN);
    deliver(out, &mut c, &mut s);
    deliver(w.send(To::Server, s.synack(w.now)), &mut c, &mut s);
    exchange(&mut w, &mut c, &mut s);
    assert_eq!(w.engine.counters().backend_syns_retransmitted, 1);
}

#[test]
fn server_opened_connection_is_tracked() {
    let (_, si) = addrs(false);
    let mut w = Wire::new(SynMode::Proxy, si, 80, vec![]);
    // The protected server (port 80 side) opens a connection to an outside peer's port 40003.
    let (mut c, mut s) = peers(false, 40_003, (20, 7, 2), (10, 7, 1));
    let out = w.send(To::Server, s.syn(w.now));
    deliver(out, &mut c, &mut s);
    let out = w.send(To::Client, c.synack(w.now));
    assert_eq!(out.len(), 1, "the outside peer's SYN-ACK is forwarded");
    deliver(out, &mut c, &mut s);
    deliver(w.send(To::Server, s.ack(w.now)), &mut c, &mut s);
    exchange(&mut w, &mut c, &mut s);
    assert!(w.drops.is_empty(), "{:?}", w.drops);
    assert_eq!(w.engine.counters().sessions_outbound, 1);
}

#[test]
fn in_window_rst_closes_out_of_window_rst_dropped() {
    let (_, si) = addrs(false);
    let mut w = Wire::new(SynMode::Proxy, si, 80, vec![]);
    let (mut c, mut s) = peers(false, 40_004, (100, 7, 10), (200, 7, 20));
    proxy_handshake(&mut w, &mut c, &mut s, &Case { v6: false, vlans: vec![], server_ws: 7, server_ts: true });
    // Blind RST far from the window.
    let blind = c.frame(w.now, c.snd_nxt.wrapping_add(1 << 28), tf::RST, &[]);
    assert!(w.send(To::Client, blind).is_empty());
    assert_eq!(w.drops.pop(), Some(DropReason::RstOutOfWindow));
    let rst = c.frame(w.now, c.snd_nxt, tf::RST | tf::ACK, &[]);
    let out = w.send(To::Client, rst);
    let f = one(&out, To::Server);
    assert_eq!(f.flags & tf::RST, tf::RST);
    assert_eq!(f.seq, c.snd_nxt);
    // After the RST the session is closed but lingers: a late segment still reaches the server
    // (which resets it again, see `lost_rst_does_not_hang_the_client`), then the session expires
    // and further segments are session-less. (The original handshake ACK, seq = ISN + 1, would
    // carry a still-valid cookie and reopen the session, as with Linux cookies; a later segment
    // does not.)
    let late = c.frame(w.now, c.snd_nxt.wrapping_add(1000), tf::ACK | tf::PSH, b"late");
    assert_eq!(one(&w.send(To::Client, late.clone()), To::Server).payload, b"late");
    assert_eq!(w.engine.counters().closed_forwarded, 1);
    w.advance(11_000);
    assert!(w.send(To::Client, late).is_empty());
    assert_eq!(w.drops.pop(), Some(DropReason::AckNoSession));
    assert_eq!(w.engine.counters().rst_forwarded_inbound, 1);
}

#[test]
fn idle_housekeeping_reclaims_expired_sessions() {
    let (ci, si) = addrs(false);
    let mut w = Wire::new(SynMode::Track, si, 80, vec![]);
    for i in 0..50u16 {
        let mut c = Peer::new("client", ci, 42_000 + i, si, 80, 1000, 7, 1);
        w.send(To::Client, c.syn(w.now));
    }
    assert_eq!(w.engine.sessions(), 50);
    // No traffic for longer than the embryonic timeout (10 s): only housekeeping runs.
    let later = w.now + 11_000 * MS;
    let freed = w.engine.housekeeping(later, w.engine.table().capacity());
    assert_eq!(freed, 50);
    assert_eq!(w.engine.sessions(), 0);
    assert_eq!(w.engine.table().stats().expired, 50);
}
