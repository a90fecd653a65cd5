//! The batch path judges exactly as the single-frame path: `Engine::process_batch` over random
//! batches (sizes 1–150, so rounds of 64 are crossed) of a random but meaningful conversation —
//! handshakes through cookies and the backend, data both ways, resets, FINs, floods of
//! untracked ACKs (some carrying valid cookies), reconnects, garbage, UDP, ARP, IPv4 and IPv6,
//! time jumps across cookie slots and idle timeouts — gives every frame the verdict, the
//! rewritten bytes and the second frame that `Engine::process` gives it, and leaves the same
//! counters and table.

use proptest::prelude::*;
use scrubber::engine::verdict::{Direction, Verdict};
use scrubber::engine::{Engine, EngineConfig, FrameBuf, Job, Protected, SynMode};

/// The engines compared: `--protect` in either SYN mode, or a rule-file policy.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Proxy,
    Track,
    Policy,
}
use scrubber::wire::builder::{arp_request, udp_frame, TcpFrame};
use scrubber::wire::tcp::flags as tf;
use std::net::IpAddr;

const T0: u64 = 1_767_225_600 * 1_000_000_000;
const MS: u64 = 1_000_000;

/// A rule-file policy in front of the same services: deny lists, flag rules, per-source and
/// aggregate limits (packet rates, new connections, live connections), an observe rule, UDP
/// rules and a default deny — every branch of the rules stage.
const POLICY: &str = "
set servers = 198.18.0.10/32, 2001:2::10/128
set bad = 198.19.0.0/20, 2001:2::ff:0/120
service web
  dst servers
  proto tcp
  ports 80
  syn proxy
end
deny from bad
deny proto tcp flags syn+fin
deny observe proto tcp flags fin
limit service web new-conns 20/s burst 10 max-conns 4
limit to servers proto tcp per-source 200pps
limit to servers proto udp aggregate 50pps
allow proto udp port 53
allow to servers
default deny
";

fn engine(mode: Mode) -> Engine {
    let mode = match mode {
        Mode::Policy => {
            let src = rulespec::MemSource::new().with("p.rules", POLICY);
            let c = rulespec::check("p.rules", &src);
            assert!(!c.has_errors(), "{}", c.render());
            let p = std::sync::Arc::new(rulespec::compile(c.policy.as_ref().unwrap()).unwrap());
            return Engine::new(EngineConfig {
                policy: Some(p),
                table_capacity: 64,
                cookie_key: *b"batch-equals-one",
                cookie_slot_secs: 2,
                ..EngineConfig::default()
            })
            .unwrap();
        }
        Mode::Proxy => SynMode::Proxy,
        Mode::Track => SynMode::Track,
    };
    Engine::new(EngineConfig {
        protect: vec![
            Protected { addr: "198.18.0.10".parse().unwrap(), port: Some(80) },
            Protected { addr: "2001:2::10".parse().unwrap(), port: Some(80) },
        ],
        syn_mode: mode,
        table_capacity: 64,
        cookie_key: *b"batch-equals-one",
        cookie_slot_secs: 2,
        ..EngineConfig::default()
    })
    .unwrap()
}

/// What the generator knows of one flow, learned from the single-frame engine's outputs.
#[derive(Clone, Debug, Default)]
struct Flow {
    client_isn: u32,
    /// The cookie SYN-ACK's ISN and TSval, once answered.
    cookie: Option<(u32, Option<u32>)>,
    /// The SYN the scrubber sent the backend (seq), once sent.
    backend_syn: Option<u32>,
    server_isn: u32,
    c_next: u32,
    s_next: u32,
}

struct Gen {
    flows: Vec<Flow>,
    rng: u64,
}

impl Gen {
    fn next(&mut self) -> u32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as u32
    }
}

fn addrs(f: usize) -> (IpAddr, u16, IpAddr, u16) {
    let v6 = f % 3 == 2;
    let port = 40_000 + f as u16;
    let dport = if f == 7 { 81 } else { 80 }; // flow 7 is not a service
    if v6 {
        (format!("2001:2::1:{f}").parse().unwrap(), port, "2001:2::10".parse().unwrap(), dport)
    } else {
        (format!("198.18.1.{}", f + 1).parse().unwrap(), port, "198.18.0.10".parse().unwrap(), dport)
    }
}

/// One input frame: (time, direction, bytes).
type Input = (u64, Direction, Vec<u8>);

/// Build the frame of operation `op` on flow `f` (state from the generator).
fn frame(g: &mut Gen, f: usize, op: u8, ts: bool, payload: usize) -> (Direction, Vec<u8>) {
    let (c, cp, s, sp) = addrs(f);
    let r = g.next();
    let fl = g.flows[f].clone();
    let client = |flags: u8| TcpFrame::new(c, cp, s, sp, flags);
    let server = |flags: u8| TcpFrame::new(s, sp, c, cp, flags);
    match op {
        0 => {
            // SYN (a new handshake on the tuple).
            let mut t = client(tf::SYN);
            t.seq = r;
            g.flows[f] = Flow { client_isn: r, ..Flow::default() };
            t.options.mss = Some(1460);
            t.options.wscale = Some(7);
            t.options.sack_permitted = true;
            if ts {
                t.options.timestamp = Some((r ^ 0x55, 0));
            }
            if payload > 0 && payload < 200 {
                t.payload = vec![b'f'; payload]; // Fast Open data
            }
            (Direction::Inbound, t.build())
        }
        1 => {
            // The handshake ACK (valid cookie if the SYN-ACK was seen), maybe with data, maybe
            // as a zero-window probe.
            let mut t = client(if payload > 0 { tf::ACK | tf::PSH } else { tf::ACK });
            let (isn, tsval) = fl.cookie.unwrap_or((r, None));
            t.seq = fl.client_isn.wrapping_add(if r % 5 == 0 && payload == 0 { 0 } else { 1 });
            t.ack = isn.wrapping_add(1);
            if let Some(v) = tsval {
                t.options.timestamp = Some((7, v));
            }
            t.payload = vec![b'a'; payload];
            (Direction::Inbound, t.build())
        }
        2 => {
            // The backend's SYN-ACK to the scrubber's (or the client's) SYN.
            let mut t = server(tf::SYN | tf::ACK);
            t.seq = r;
            g.flows[f].server_isn = r;
            g.flows[f].s_next = r.wrapping_add(1);
            t.ack = fl.backend_syn.unwrap_or(fl.client_isn).wrapping_add(1);
            t.options.mss = Some(1400);
            t.options.wscale = Some(5);
            if ts {
                t.options.timestamp = Some((1000, 3));
            }
            (Direction::Outbound, t.build())
        }
        3 => {
            // Client data.
            let mut t = client(tf::ACK | tf::PSH);
            t.seq = fl.c_next.max(fl.client_isn.wrapping_add(1));
            t.ack = fl.cookie.map(|c| c.0.wrapping_add(1)).unwrap_or(fl.s_next);
            t.payload = vec![b'd'; payload.max(1)];
            g.flows[f].c_next = t.seq.wrapping_add(t.payload.len() as u32);
            if ts {
                t.options.timestamp = Some((9, fl.cookie.and_then(|c| c.1).unwrap_or(0)));
            }
            (Direction::Inbound, t.build())
        }
        4 => {
            // Server data.
            let mut t = server(tf::ACK | tf::PSH);
            t.seq = fl.s_next;
            t.ack = fl.c_next;
            t.payload = vec![b's'; payload.max(1)];
            g.flows[f].s_next = t.seq.wrapping_add(t.payload.len() as u32);
            (Direction::Outbound, t.build())
        }
        5 => {
            // RST or FIN, either side, exact or not.
            let flags = if r & 1 == 0 { tf::RST } else { tf::FIN | tf::ACK };
            let exact = r & 2 == 0;
            if r & 4 == 0 {
                let mut t = client(flags);
                t.seq = if exact { fl.c_next } else { r };
                t.ack = fl.s_next;
                (Direction::Inbound, t.build())
            } else {
                let mut t = server(flags);
                t.seq = if exact { fl.s_next } else { r };
                t.ack = fl.c_next;
                (Direction::Outbound, t.build())
            }
        }
        6 => {
            // An untracked ACK-PSH from a random (spoofed) source and port: the flood.
            let src: IpAddr = if f % 3 == 2 {
                format!("2001:2::ff:{:x}", r & 0xffff).parse().unwrap()
            } else {
                format!("198.19.{}.{}", (r >> 8) & 0xff, r & 0xff).parse().unwrap()
            };
            let mut t = TcpFrame::new(src, 1024 + (r % 60_000) as u16, s, 80, tf::ACK | tf::PSH);
            t.seq = g.next();
            t.ack = g.next();
            if ts {
                t.options.timestamp = Some((1, g.next()));
            }
            t.payload = vec![b'x'; 32];
            (Direction::Inbound, t.build())
        }
        7 => {
            // A bare untracked ACK on the flow's own tuple (two cookie tries).
            let mut t = client(tf::ACK);
            t.seq = r;
            t.ack = g.next();
            (Direction::Inbound, t.build())
        }
        8 => (Direction::Inbound, udp_frame(c, cp, s, 53, &[0; 20])),
        9 => (Direction::Outbound, arp_request([2, 0, 0, 0, 0, 9], [198, 18, 0, 10], [198, 18, 0, 1])),
        _ => {
            // Garbage: a valid frame with a few bytes changed.
            let mut t = client(tf::ACK).build();
            let n = t.len();
            t[(r as usize) % n] ^= (r >> 8) as u8 | 1;
            (if r & 1 == 0 { Direction::Inbound } else { Direction::Outbound }, t)
        }
    }
}

/// The outcome of judging one frame: verdict, frame bytes, second frame bytes.
type Outcome = (Verdict, Vec<u8>, Vec<u8>);

fn single(e: &mut Engine, now: u64, dir: Direction, bytes: &[u8]) -> Outcome {
    let mut buf = vec![0u8; 2048];
    let mut extra = vec![0u8; 2048];
    buf[..bytes.len()].copy_from_slice(bytes);
    let mut f = FrameBuf::new(&mut buf, bytes.len());
    let mut x = FrameBuf::new(&mut extra, 0);
    let v = e.process(now, dir, &mut f, &mut x);
    let (fl, xl) = (f.len, x.len);
    let xb = if matches!(v, Verdict::ForwardWithReply | Verdict::ReplyTwice) { extra[..xl].to_vec() } else { vec![] };
    (v, buf[..fl].to_vec(), xb)
}

/// Learn from what the single-frame engine did with a frame (cookie ISNs, backend SYNs).
fn learn(g: &mut Gen, f: usize, op: u8, out: &Outcome) {
    let Ok(t) = TcpFrame::parse(&out.1) else { return };
    match (op, out.0) {
        (0, Verdict::Reply) if t.flags == tf::SYN | tf::ACK || t.flags == tf::SYN | tf::ACK | tf::ECE => {
            g.flows[f].cookie = Some((t.seq, t.options.timestamp.map(|x| x.0)));
        }
        (1, Verdict::Forward) if t.flags & tf::SYN != 0 => {
            g.flows[f].backend_syn = Some(t.seq);
            g.flows[f].c_next = g.flows[f].client_isn.wrapping_add(1);
        }
        _ => {}
    }
}

fn run(mode: Mode, ops: &[(u8, u8, bool, u16, u16)], batches: &[usize], seed: u64) {
    // 1. The conversation, generated against the single-frame engine.
    let mut a = engine(mode);
    let mut g = Gen { flows: vec![Flow::default(); 8], rng: seed | 1 };
    let mut now = T0;
    let mut inputs: Vec<Input> = Vec::new();
    let mut want: Vec<Outcome> = Vec::new();
    for &(f, op, ts, payload, dt) in ops {
        now += match dt % 50 {
            0 => 3_000 * MS,  // across a cookie slot
            1 => 40_000 * MS, // past the embryonic timeout
            d => u64::from(d),
        };
        let (f, op) = (usize::from(f % 8), op % 11);
        let (dir, bytes) = frame(&mut g, f, op, ts, usize::from(payload % 300));
        let out = single(&mut a, now, dir, &bytes);
        learn(&mut g, f, op, &out);
        inputs.push((now, dir, bytes));
        want.push(out);
    }
    // 2. The same frames, in batches.
    let mut b = engine(mode);
    let mut got: Vec<Outcome> = Vec::new();
    let mut at = 0;
    let mut bi = 0;
    while at < inputs.len() {
        let n = batches[bi % batches.len()].clamp(1, inputs.len() - at);
        bi += 1;
        let mut bufs: Vec<Vec<u8>> = vec![vec![0u8; 2048]; n];
        let mut extras: Vec<Vec<u8>> = vec![vec![0u8; 2048]; n];
        let mut jobs: Vec<Job<'_>> = Vec::with_capacity(n);
        for ((inp, buf), x) in inputs[at..at + n].iter().zip(bufs.iter_mut()).zip(extras.iter_mut()) {
            buf[..inp.2.len()].copy_from_slice(&inp.2);
            jobs.push(Job::new(inp.0, inp.1, buf, inp.2.len(), x));
        }
        b.process_batch(&mut jobs);
        for j in &jobs {
            let xb = if matches!(j.verdict, Verdict::ForwardWithReply | Verdict::ReplyTwice) {
                j.extra.frame().to_vec()
            } else {
                vec![]
            };
            got.push((j.verdict, j.frame.frame().to_vec(), xb));
        }
        at += n;
    }
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        if w != g {
            // Where in its batch, and what the frame was.
            let mut start = 0;
            let mut k = 0;
            while start + batches[k % batches.len()].clamp(1, inputs.len() - start) <= i {
                start += batches[k % batches.len()].clamp(1, inputs.len() - start);
                k += 1;
            }
            let t = TcpFrame::parse(&inputs[i].2).ok();
            eprintln!(
                "frame {i} is #{} of batch {k} starting at {start}; {:?}",
                i - start,
                t.map(|t| (t.src, t.src_port, t.dst, t.dst_port, t.flags, t.seq, t.ack))
            );
            for j in start..i {
                let t = TcpFrame::parse(&inputs[j].2).ok();
                eprintln!(
                    "  earlier #{}: {:?} -> {:?}",
                    j - start,
                    t.map(|t| (t.src, t.src_port, t.dst_port, t.flags)),
                    want[j].0
                );
            }
        }
        assert_eq!(w, g, "frame {i} ({:?}): single vs batch", inputs[i].1);
    }
    assert_eq!(format!("{:?}", a.counters()), format!("{:?}", b.counters()), "counters");
    assert_eq!(format!("{:?}", a.table().stats()), format!("{:?}", b.table().stats()), "table");
    assert_eq!(a.sessions(), b.sessions());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn batch_equals_single(
        mode in 0u8..3,
        ops in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<bool>(), any::<u16>(), any::<u16>()), 1..400),
        batches in proptest::collection::vec(1usize..150, 1..8),
        seed in any::<u64>(),
    ) {
        run([Mode::Proxy, Mode::Track, Mode::Policy][usize::from(mode)], &ops, &batches, seed);
    }
}

/// A scripted case that must reach the interesting paths: handshakes complete through the
/// batch, with floods of untracked ACKs around them.
#[test]
fn handshakes_amid_a_flood_in_batches() {
    let mut ops = Vec::new();
    for round in 0..40u16 {
        let f = (round % 7) as u8;
        for op in [0u8, 1, 2, 3, 4, 3, 4, 5] {
            ops.push((f, op, round % 2 == 0, 40, 3));
            for k in 0..6u8 {
                ops.push((f, 6 + (k % 2), k % 3 == 0, 0, 2));
            }
        }
    }
    run(Mode::Proxy, &ops, &[64, 7, 100, 1], 99);
    run(Mode::Policy, &ops, &[64, 7, 100, 1], 99);
    // And the engine did establish sessions in this script (else it tests nothing).
    let mut a = engine(Mode::Proxy);
    let mut g = Gen { flows: vec![Flow::default(); 8], rng: 99 | 1 };
    let mut now = T0;
    for &(f, op, ts, payload, _) in &ops {
        now += 3;
        let (dir, bytes) = frame(&mut g, usize::from(f), op, ts, usize::from(payload));
        let out = single(&mut a, now, dir, &bytes);
        learn(&mut g, usize::from(f), op, &out);
    }
    let c = a.counters();
    assert!(c.sessions_proxied >= 30, "{} sessions proxied", c.sessions_proxied);
    assert!(c.cookies_validated >= 30);
    assert!(c.forwarded_outbound >= 30);
}
