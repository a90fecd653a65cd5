//! Cookies across a fleet: two engines sharing a secret with clocks a few seconds apart accept
//! each other's cookies, and a rotated secret keeps the handshakes in flight.

use scrubber::engine::verdict::{Direction, DropReason, Verdict};
use scrubber::engine::{Engine, EngineConfig, FrameBuf, Protected, SynMode};
use scrubber::wire::builder::TcpFrame;
use scrubber::wire::tcp::flags as tf;
use std::net::IpAddr;

const KEY: [u8; 16] = *b"fleet-secret-001";
const NEW_KEY: [u8; 16] = *b"fleet-secret-002";
const S: u64 = 1_000_000_000;
/// Half a second before a 64-second cookie slot boundary.
const NOW: u64 = 27_600_000 * 64 * S - S / 2;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn engine(key: [u8; 16]) -> Engine {
    Engine::new(EngineConfig {
        protect: vec![Protected { addr: ip("198.18.0.10"), port: Some(80) }],
        syn_mode: SynMode::Proxy,
        table_capacity: 1 << 10,
        cookie_key: key,
        ..EngineConfig::default()
    })
    .unwrap()
}

fn run(e: &mut Engine, now: u64, input: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    let mut extra = vec![0u8; 2048];
    buf[..input.len()].copy_from_slice(input);
    let mut f = FrameBuf { buf: &mut buf, len: input.len() };
    let mut x = FrameBuf { buf: &mut extra, len: 0 };
    let v = e.process(now, Direction::Inbound, &mut f, &mut x);
    let n = f.len;
    (v, buf[..n].to_vec())
}

/// The client's SYN to `issuer` at `t`, its cookie ACK: the ACK frame.
fn cookie_ack(issuer: &mut Engine, t: u64, port: u16, ts: bool) -> Vec<u8> {
    let mut syn = TcpFrame::new(ip("198.18.1.1"), port, ip("198.18.0.10"), 80, tf::SYN);
    syn.seq = 1000;
    syn.options.mss = Some(1460);
    if ts {
        syn.options.timestamp = Some((42, 0));
    }
    let (v, out) = run(issuer, t, &syn.build());
    assert_eq!(v, Verdict::Reply);
    let sa = TcpFrame::parse(&out).unwrap();
    let mut ack = TcpFrame::new(ip("198.18.1.1"), port, ip("198.18.0.10"), 80, tf::ACK);
    ack.seq = 1001;
    ack.ack = sa.seq.wrapping_add(1);
    if let Some((tsval, _)) = sa.options.timestamp {
        ack.options.timestamp = Some((43, tsval));
    }
    ack.build()
}

fn opens_backend(v: Verdict, out: &[u8]) -> bool {
    v == Verdict::Forward && TcpFrame::parse(out).is_ok_and(|f| f.flags == tf::SYN)
}

#[test]
fn two_engines_with_skewed_clocks_accept_each_others_cookies() {
    let mut port = 40000;
    for ts in [false, true] {
        // Box A issues just after the slot boundary by its clock; box B's clock is behind by
        // up to four seconds (still in the previous slot), or ahead.
        for skew_ms in [-4000i64, -1000, 0, 1000, 4000] {
            let mut a = engine(KEY);
            let mut b = engine(KEY);
            port += 1;
            let t = NOW + S; // A: half a second into the new slot
            let ack = cookie_ack(&mut a, t, port, ts);
            let at_b = t.checked_add_signed(skew_ms * 1_000_000 + 50_000_000).unwrap();
            let (v, out) = run(&mut b, at_b, &ack);
            assert!(opens_backend(v, &out), "ts {ts} skew {skew_ms} ms: {v:?}");
        }
        // Far apart (30 s): refused, as a forgery would be.
        let (mut a, mut b) = (engine(KEY), engine(KEY));
        port += 1;
        let ack = cookie_ack(&mut a, NOW + S, port, ts);
        let (v, _) = run(&mut b, NOW + S - 30 * S, &ack);
        assert!(matches!(v, Verdict::Drop(DropReason::AckNoSession)), "ts {ts}: {v:?}");
    }
}

#[test]
fn a_rotated_secret_keeps_handshakes_in_flight() {
    let mut e = engine(KEY);
    let ack_old = cookie_ack(&mut e, NOW, 41000, true);
    // The reload brings a new secret.
    let next = EngineConfig { cookie_key: NEW_KEY, ..EngineConfig::default() }
        .prepare(e.policy().clone(), NOW + S)
        .unwrap()
        .with_cookie_key(NEW_KEY, NOW + S);
    drop(e.install(next));
    assert_eq!(e.counters().cookie_secret_rotations, 1);
    // The handshake started under the old secret completes.
    let (v, out) = run(&mut e, NOW + 2 * S, &ack_old);
    assert!(opens_backend(v, &out), "{v:?}");
    // New handshakes are under the new secret: another box that has it accepts them.
    let ack_new = cookie_ack(&mut e, NOW + 3 * S, 41001, true);
    let (v, out) = run(&mut engine(NEW_KEY), NOW + 3 * S, &ack_new);
    assert!(opens_backend(v, &out), "{v:?}");
    let (v, _) = run(&mut engine(KEY), NOW + 3 * S, &ack_new);
    assert!(matches!(v, Verdict::Drop(_)), "the old secret alone does not accept new cookies: {v:?}");
}
