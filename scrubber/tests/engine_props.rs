//! Property tests of the whole engine: no byte string, in any direction or mode, panics or
//! escapes the frame buffer; every frame gets exactly one verdict; emitted frames parse.

use proptest::prelude::*;
use scrubber::engine::verdict::{Direction, Verdict};
use scrubber::engine::{Engine, EngineConfig, FrameBuf, Protected, SynMode};
use scrubber::wire::builder::TcpFrame;
use scrubber::wire::tcp::flags as tf;
use std::net::IpAddr;

fn engine(mode: SynMode) -> Engine {
    Engine::new(EngineConfig {
        protect: vec![
            Protected { addr: "198.18.0.10".parse().unwrap(), port: None },
            Protected { addr: "2001:2::10".parse().unwrap(), port: None },
        ],
        syn_mode: mode,
        table_capacity: 256,
        cookie_key: [7; 16],
        ..EngineConfig::default()
    })
    .unwrap()
}

fn valid_frame(v6: bool, flags: u8, opts: bool, payload: usize, vlans: usize) -> Vec<u8> {
    let (c, s): (IpAddr, IpAddr) = if v6 {
        ("2001:2::1".parse().unwrap(), "2001:2::10".parse().unwrap())
    } else {
        ("198.18.1.1".parse().unwrap(), "198.18.0.10".parse().unwrap())
    };
    let mut f = TcpFrame::new(c, 40000, s, 80, flags);
    f.seq = 1;
    f.ack = 2;
    if opts {
        f.options.mss = Some(1460);
        f.options.wscale = Some(7);
        f.options.sack_permitted = true;
        f.options.timestamp = Some((5, 6));
    }
    f.payload = vec![0x41; payload];
    f.vlans = (0..vlans as u16).map(|i| 10 + i).collect();
    f.build()
}

fn judge(e: &mut Engine, dir: Direction, bytes: &[u8], now: u64) {
    let mut buf = vec![0u8; 2048];
    let mut extra = vec![0u8; 2048];
    let n = bytes.len().min(1800);
    buf[..n].copy_from_slice(&bytes[..n]);
    let mut f = FrameBuf { buf: &mut buf, len: n };
    let mut x = FrameBuf { buf: &mut extra, len: 0 };
    let before = e.counters().clone();
    let v = e.process(now, dir, &mut f, &mut x);
    let len = f.len;
    assert!(len <= 2048);
    let after = e.counters();
    let moved = (after.forwarded_inbound + after.forwarded_outbound + after.replies + after.dropped_total())
        - (before.forwarded_inbound + before.forwarded_outbound + before.replies + before.dropped_total());
    let want = if v == Verdict::ForwardWithReply { 2 } else { 1 };
    assert_eq!(moved, want, "one count per emitted/dropped frame ({v:?})");
    // Frames the engine wrote itself must be well formed.
    if v == Verdict::Reply || v == Verdict::ForwardWithReply {
        TcpFrame::parse(&buf[..len]).expect("an answer the engine wrote parses");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600), outbound in any::<bool>(), proxy in any::<bool>()) {
        let mut e = engine(if proxy { SynMode::Proxy } else { SynMode::Track });
        let dir = if outbound { Direction::Outbound } else { Direction::Inbound };
        judge(&mut e, dir, &bytes, 1);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        v6 in any::<bool>(), flags in any::<u8>(), opts in any::<bool>(), payload in 0usize..300, vlans in 0usize..3,
        muts in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..6),
        cut in any::<u16>(), outbound in any::<bool>(), proxy in any::<bool>(),
    ) {
        let mut f = valid_frame(v6, flags, opts, payload, vlans);
        for (at, b) in muts {
            let i = at as usize % f.len();
            f[i] = b;
        }
        let cut = (cut as usize % (f.len() + 1)).max(f.len() / 2);
        f.truncate(cut);
        let mut e = engine(if proxy { SynMode::Proxy } else { SynMode::Track });
        let dir = if outbound { Direction::Outbound } else { Direction::Inbound };
        judge(&mut e, dir, &f, 10);
    }

    #[test]
    fn random_conversation_fragments_never_panic(
        steps in proptest::collection::vec((any::<bool>(), any::<u8>(), any::<u32>(), any::<u32>(), any::<bool>(), 0usize..64), 1..60),
        proxy in any::<bool>(),
    ) {
        // Random sequences of valid segments on one 4-tuple drive the state machine through
        // arbitrary transitions.
        let mut e = engine(if proxy { SynMode::Proxy } else { SynMode::Track });
        let c: IpAddr = "198.18.1.1".parse().unwrap();
        let s: IpAddr = "198.18.0.10".parse().unwrap();
        for (i, (outbound, flags, seq, ack, opts, payload)) in steps.into_iter().enumerate() {
            let flags = flags & (tf::SYN | tf::ACK | tf::FIN | tf::RST | tf::PSH);
            let mut f = if outbound { TcpFrame::new(s, 80, c, 40000, flags) } else { TcpFrame::new(c, 40000, s, 80, flags) };
            f.seq = seq;
            f.ack = ack;
            if opts {
                f.options.timestamp = Some((seq, ack));
                f.options.sack.push((ack, ack.wrapping_add(100)));
            }
            f.payload = vec![1; payload];
            let dir = if outbound { Direction::Outbound } else { Direction::Inbound };
            judge(&mut e, dir, &f.build(), 1_000_000 * i as u64);
        }
    }
}
