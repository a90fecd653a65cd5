//! `scrubber run --state`: sessions saved from one engine and restored into a fresh one carry
//! proxied connections on (sequence offsets, timestamps); damaged files are refused.

use scrubber::control::state::{Saved, StateError};
use scrubber::engine::verdict::{Direction, DropReason, Verdict};
use scrubber::engine::{Engine, EngineConfig, FrameBuf, Protected, SynMode};
use scrubber::wire::builder::TcpFrame;
use scrubber::wire::tcp::flags as tf;
use std::net::IpAddr;
use std::path::Path;

const KEY: [u8; 16] = *b"snapshot-testkey";
const NOW: u64 = 1_767_225_600 * 1_000_000_000;
const MS: u64 = 1_000_000;
/// Later than any cookie is valid (so a cold engine cannot take a data segment as a cookie ACK),
/// well within the established timeout.
const LATER: u64 = NOW + 200_000 * MS;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn engine_with(key: [u8; 16]) -> Engine {
    Engine::new(EngineConfig {
        protect: vec![
            Protected { addr: ip("198.18.0.10"), port: Some(80) },
            Protected { addr: ip("2001:2::10"), port: Some(80) },
        ],
        syn_mode: SynMode::Proxy,
        table_capacity: 1 << 12,
        cookie_key: key,
        ..EngineConfig::default()
    })
    .unwrap()
}

fn engine() -> Engine {
    engine_with(KEY)
}

fn run(e: &mut Engine, now: u64, dir: Direction, input: &[u8]) -> (Verdict, Vec<u8>, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    let mut extra = vec![0u8; 2048];
    buf[..input.len()].copy_from_slice(input);
    let mut f = FrameBuf { buf: &mut buf, len: input.len() };
    let mut x = FrameBuf { buf: &mut extra, len: 0 };
    let v = e.process(now, dir, &mut f, &mut x);
    let (n, m) = (f.len, x.len);
    (v, buf[..n].to_vec(), extra[..m].to_vec())
}

/// A proxied connection from `client`:`port` to `server`:80 with timestamps: returns the
/// client's next (seq, ack) and the backend's next (seq, ack) in their own sequence spaces.
struct Conn {
    client: &'static str,
    server: &'static str,
    port: u16,
    c_seq: u32,
    c_ack: u32,
    s_seq: u32,
    ts: u32,
}

fn handshake(e: &mut Engine, client: &'static str, server: &'static str, port: u16) -> Conn {
    let isn = 0x1000_0000 + u32::from(port);
    let mut syn = TcpFrame::new(ip(client), port, ip(server), 80, tf::SYN);
    syn.seq = isn;
    syn.window = 64240;
    syn.options.mss = Some(1400);
    syn.options.wscale = Some(7);
    syn.options.sack_permitted = true;
    syn.options.timestamp = Some((1000, 0));
    let (v, out, _) = run(e, NOW, Direction::Inbound, &syn.build());
    assert_eq!(v, Verdict::Reply, "cookie SYN-ACK");
    let synack = TcpFrame::parse(&out).unwrap();
    let cookie = synack.seq;
    let (tsval, _) = synack.options.timestamp.unwrap();

    let mut ack = TcpFrame::new(ip(client), port, ip(server), 80, tf::ACK);
    ack.seq = isn + 1;
    ack.ack = cookie.wrapping_add(1);
    ack.window = 502;
    ack.options.timestamp = Some((1001, tsval));
    let (v, out, _) = run(e, NOW + MS, Direction::Inbound, &ack.build());
    assert_eq!(v, Verdict::Forward, "the cookie ACK becomes the backend SYN");
    let bsyn = TcpFrame::parse(&out).unwrap();
    assert_eq!(bsyn.flags, tf::SYN);

    let backend_isn = 0x7000_0000u32 + u32::from(port);
    let mut bsa = TcpFrame::new(ip(server), 80, ip(client), port, tf::SYN | tf::ACK);
    bsa.seq = backend_isn;
    bsa.ack = bsyn.seq.wrapping_add(1);
    bsa.window = 65160;
    bsa.options.mss = Some(1400);
    bsa.options.wscale = Some(7);
    bsa.options.sack_permitted = true;
    bsa.options.timestamp = Some((555_000, bsyn.options.timestamp.map_or(0, |t| t.0)));
    let (v, _, _) = run(e, NOW + 2 * MS, Direction::Outbound, &bsa.build());
    assert!(matches!(v, Verdict::ReplyTwice | Verdict::ForwardWithReply | Verdict::Reply), "{v:?}");
    Conn { client, server, port, c_seq: isn + 1, c_ack: cookie.wrapping_add(1), s_seq: backend_isn + 1, ts: 1002 }
}

fn client_data(c: &Conn) -> Vec<u8> {
    let mut f = TcpFrame::new(ip(c.client), c.port, ip(c.server), 80, tf::ACK | tf::PSH);
    f.seq = c.c_seq;
    f.ack = c.c_ack;
    f.window = 502;
    f.options.timestamp = Some((c.ts, 0));
    f.payload = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    f.build()
}

fn server_data(c: &Conn) -> Vec<u8> {
    let mut f = TcpFrame::new(ip(c.server), 80, ip(c.client), c.port, tf::ACK | tf::PSH);
    f.seq = c.s_seq;
    f.ack = c.c_seq + 18;
    f.window = 509;
    f.options.timestamp = Some((555_100, c.ts));
    f.payload = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    f.build()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("scrubber-state-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn proxied_connections_continue_in_a_restored_engine() {
    let mut a = engine();
    let conns = [
        handshake(&mut a, "198.18.1.1", "198.18.0.10", 40001),
        handshake(&mut a, "198.18.1.2", "198.18.0.10", 40002),
        handshake(&mut a, "2001:2:0:ff::7", "2001:2::10", 40003),
    ];
    let saved = Saved::of(&[&a], NOW / MS);
    assert_eq!(saved.sessions(), 3);
    let path = tmp("round-trip.state");
    saved.write(&path).unwrap();
    let back = Saved::read(&path).unwrap().expect("the file exists");
    assert_eq!(back, saved, "encode/decode round trip");

    // A fresh engine without the state drops the connections' segments...
    let mut cold = engine();
    for c in &conns {
        let (v, _, _) = run(&mut cold, LATER, Direction::Inbound, &client_data(c));
        assert_eq!(v, Verdict::Drop(DropReason::AckNoSession));
    }
    // ... one with it translates them exactly as the engine that saved it does, both ways.
    let mut b = [engine()];
    let rep = back.restore(&mut b, LATER - 1000 * MS);
    assert_eq!((rep.restored, rep.saved, rep.expired, rep.v6_skipped), (3, 3, 0, 0), "{rep}");
    let [mut b] = b;
    for c in &conns {
        let (va, fa, _) = run(&mut a, LATER, Direction::Inbound, &client_data(c));
        let (vb, fb, _) = run(&mut b, LATER, Direction::Inbound, &client_data(c));
        assert_eq!(va, Verdict::Forward);
        assert_eq!((va, &fa), (vb, &fb), "client → server after the restore");
        let d = TcpFrame::parse(&fb).unwrap();
        assert_eq!(d.ack, c.s_seq, "the client's ack is moved into the backend's sequence space");
        let (va, fa, _) = run(&mut a, LATER + MS, Direction::Outbound, &server_data(c));
        let (vb, fb, _) = run(&mut b, LATER + MS, Direction::Outbound, &server_data(c));
        assert_eq!(vb, Verdict::Forward);
        assert_eq!((va, &fa), (vb, &fb), "server → client after the restore");
        assert_eq!(TcpFrame::parse(&fb).unwrap().seq, c.c_ack, "the backend's seq is moved into the cookie's space");
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn sessions_idle_out_while_down_and_move_with_the_worker_count() {
    let mut a = engine();
    let v4 = handshake(&mut a, "198.18.1.1", "198.18.0.10", 40001);
    handshake(&mut a, "2001:2::99", "2001:2::10", 40002);
    let saved = Saved::of(&[&a], NOW / MS);

    // Ten minutes and more later, the established sessions have idled out.
    let mut late = [engine()];
    let rep = saved.restore(&mut late, NOW + 601_000 * MS);
    assert_eq!((rep.restored, rep.expired), (0, 2), "{rep}");

    // Two workers instead of one: the IPv4 session goes to its flow's owner, the IPv6 one
    // (a seeded fingerprint) cannot move.
    let mut two = [engine(), engine()];
    let rep = saved.restore(&mut two, NOW + 4 * MS);
    assert_eq!((rep.restored, rep.rehomed, rep.v6_skipped), (1, 1, 1), "{rep}");
    assert_eq!(two[0].session_count() + two[1].session_count(), 1);
    let owner = scrubber::dataplane::handoff::flow_owner(&client_data(&v4), 2).unwrap();
    assert_eq!(two[owner].session_count(), 1, "restored in the worker that owns the flow");

    // Another cookie secret: the tables hash differently; IPv4 moves, IPv6 cannot.
    let mut other = [engine_with(*b"another-secret!!")];
    let rep = saved.restore(&mut other, NOW + 4 * MS);
    assert_eq!((rep.restored, rep.v6_skipped), (1, 1), "{rep}");
    let (v, _, _) = run(&mut other[0], NOW + 5 * MS, Direction::Inbound, &client_data(&v4));
    assert_eq!(v, Verdict::Forward);
}

#[test]
fn damaged_foreign_and_truncated_files_are_refused() {
    let mut a = engine();
    handshake(&mut a, "198.18.1.1", "198.18.0.10", 40001);
    let bytes = Saved::of(&[&a], NOW / MS).encode();
    let p = Path::new("s.state");

    assert!(matches!(Saved::decode(b"hello world, not a state", p), Err(StateError::NotAState { .. })));
    let mut v2 = bytes.clone();
    v2[8] = 2;
    let e = Saved::decode(&v2, p).unwrap_err();
    assert!(matches!(e, StateError::Version { found: 2, .. }), "{e}");
    assert!(e.to_string().contains("starting with empty session tables"), "{e}");
    // Every truncation and every single flipped byte after the magic is caught.
    for cut in 0..bytes.len() {
        assert!(Saved::decode(&bytes[..cut], p).is_err(), "truncated at {cut}");
    }
    for i in 12..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x40;
        let e = Saved::decode(&b, p).unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "byte {i}: {e}");
    }
    assert!(Saved::decode(&bytes, p).is_ok());

    // Files: missing is a first start; a directory is refused; the write is atomic (no .tmp).
    assert_eq!(Saved::read(&tmp("missing.state")).unwrap(), None);
    let dir = tmp("a-directory");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(Saved::read(&dir).is_err());
    let f = tmp("written.state");
    Saved::of(&[&a], NOW / MS).write(&f).unwrap();
    assert!(!tmp("written.state.tmp").exists());
    let e = Saved::of(&[&a], NOW / MS).write(Path::new("/nonexistent-dir/x.state")).unwrap_err();
    assert!(matches!(e, StateError::Io { .. }));
}
