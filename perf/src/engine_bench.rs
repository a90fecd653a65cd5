//! `scrubber-perf engine`: frames judged per second on one core, in memory, per path.
//!
//! Every path is measured the same way: a pool of prepared frames, 64 at a time copied into
//! 2048-byte buffers (what the NIC's DMA would have done) and handed to `Engine::process_batch`
//! (or one at a time to `Engine::process` with `--single`, the path of the engine before the
//! batch API); the copy is included in the figure. Sessions are opened through the engine
//! itself (real cookie handshakes), so the table holds exactly what it would hold in service.

use rulespec::Compiled;
use scrubber::engine::verdict::{Direction, Verdict};
use scrubber::engine::{Engine, EngineConfig, FrameBuf, Job, Protected, SynMode, MAX_BATCH};
use scrubber::wire::builder::TcpFrame;
use scrubber::wire::tcp::flags as tf;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const T0: u64 = 1_767_225_600 * 1_000_000_000;
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

/// One measured path.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figure {
    pub path: &'static str,
    pub sessions: usize,
    pub mpps: f64,
    pub ns_per_frame: f64,
    pub frames: u64,
}

/// Results of a run.
#[derive(Debug)]
pub struct Report {
    pub figures: Vec<Figure>,
    pub bytes_per_slot: usize,
    pub table_bytes: Vec<(usize, usize, usize)>, // (sessions, capacity, bytes)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

/// Client address and port of flow `i` (64 ports per address, addresses in 198.19.0.0/16
/// and 198.18.128.0/17 — benchmarking ranges only).
fn client(i: usize) -> (IpAddr, u16) {
    let a = (i / 64) as u32;
    let ip = if a < 65536 {
        Ipv4Addr::new(198, 19, (a >> 8) as u8, a as u8)
    } else {
        let b = a - 65536;
        Ipv4Addr::new(198, 18, 128 | ((b >> 8) as u8 & 0x7f), b as u8)
    };
    (IpAddr::V4(ip), 10_000 + (i % 64) as u16)
}

fn syn_frame(i: usize, isn: u32) -> TcpFrame {
    let (c, p) = client(i);
    let mut f = TcpFrame::new(c, p, IpAddr::V4(SERVER), 80, tf::SYN);
    f.seq = isn;
    f.options.mss = Some(1460);
    f.options.wscale = Some(7);
    f.options.sack_permitted = true;
    f.options.timestamp = Some((1000 + i as u32, 0));
    f
}

struct Bench {
    engine: Engine,
    now: u64,
    buf: Vec<u8>,
    extra: Vec<u8>,
    len: usize,
    /// Frame and extra buffers of a batch.
    bufs: Vec<Vec<u8>>,
    extras: Vec<Vec<u8>>,
    /// Judge one frame at a time (`Engine::process`) instead of batches.
    single: bool,
    /// Threads measuring side by side wait here before each measurement.
    sync: Option<Arc<Barrier>>,
    /// Added to the TCP sequence number of every frame as it is copied in (untagged IPv4
    /// without options), growing by the pool's per-session span each pass: streams that go on
    /// instead of repeating themselves (the HTTP paths; see [`http_paths`]).
    seq_add: u32,
}

/// The realistic policy of the "with policy" figure: a 100,000-prefix country-sized blocklist,
/// flag sanity rules, an office allow list, per-source limits and a default deny, in front of the
/// same proxied service as the `--protect` engine.
pub fn realistic_policy() -> Arc<Compiled> {
    let mut rng = Rng(0x5151_aaaa_0303_7777);
    let mut list = String::with_capacity(100_000 * 20);
    let mut n = 0;
    while n < 100_000 {
        let r = rng.next();
        let len = 16 + (r % 9); // /16 – /24
        let a = rng.next() & (u32::MAX << (32 - len));
        let first = (a >> 24) as u8;
        if first == 198 || first == 0 || first >= 224 {
            continue; // keep the benchmark's own addresses out of the blocklist
        }
        list.push_str(&format!("{}/{}\n", Ipv4Addr::from(a), len));
        n += 1;
    }
    let text = "
set blocked file \"country.txt\"
set servers = 198.18.0.0/24
set office = 198.18.200.0/24
service web
  dst servers
  proto tcp
  ports 80
  syn proxy
end
deny from blocked
deny proto tcp flags syn+fin
deny proto tcp flags syn+rst
deny proto tcp flags fin+psh+urg+!ack
deny frag later to servers
allow from office service web
limit service web new-conns 50/s burst 100 max-conns 256
limit to servers proto udp per-source 100pps aggregate 20kpps
allow proto icmp icmp-type echo-request
default deny
";
    let src = rulespec::MemSource::new().with("bench.rules", text).with("country.txt", list);
    let c = rulespec::check("bench.rules", &src);
    assert!(!c.has_errors(), "{}", c.render());
    Arc::new(rulespec::compile(c.policy.as_ref().expect("policy")).expect("compile"))
}

impl Bench {
    fn new(capacity: usize) -> Bench {
        Self::with_policy(capacity, None)
    }

    fn with_policy(capacity: usize, policy: Option<Arc<Compiled>>) -> Bench {
        let cfg = EngineConfig {
            protect: vec![Protected { addr: IpAddr::V4(SERVER), port: Some(80) }],
            policy,
            syn_mode: SynMode::Proxy,
            table_capacity: capacity,
            cookie_key: *b"bench-cookie-key",
            ..EngineConfig::default()
        };
        Bench {
            engine: Engine::new(cfg).expect("engine"),
            now: T0,
            buf: vec![0; 2048],
            extra: vec![0; 2048],
            len: 0,
            bufs: vec![vec![0; 2048]; MAX_BATCH],
            extras: vec![vec![0; 2048]; MAX_BATCH],
            single: false,
            sync: None,
            seq_add: 0,
        }
    }

    /// Judge `frames` (at most [`MAX_BATCH`]) as one batch; returns the first verdict.
    #[inline]
    fn process_batch(&mut self, dir: Direction, frames: &[Vec<u8>]) -> Verdict {
        let mut jobs = arrayvec::ArrayVec::<Job<'_>, MAX_BATCH>::new();
        let add = self.seq_add;
        for ((f, b), x) in frames.iter().zip(self.bufs.iter_mut()).zip(self.extras.iter_mut()) {
            b[..f.len()].copy_from_slice(f);
            if add != 0 {
                let seq = u32::from_be_bytes([b[38], b[39], b[40], b[41]]).wrapping_add(add);
                b[38..42].copy_from_slice(&seq.to_be_bytes());
            }
            jobs.push(Job::new(self.now, dir, b, f.len(), x));
        }
        self.engine.process_batch(&mut jobs);
        jobs.first().map_or(Verdict::Forward, |j| j.verdict)
    }

    #[inline]
    fn process(&mut self, dir: Direction, frame: &[u8]) -> Verdict {
        self.buf[..frame.len()].copy_from_slice(frame);
        if self.seq_add != 0 {
            let b = &mut self.buf;
            let seq = u32::from_be_bytes([b[38], b[39], b[40], b[41]]).wrapping_add(self.seq_add);
            b[38..42].copy_from_slice(&seq.to_be_bytes());
        }
        let mut f = FrameBuf { buf: &mut self.buf, len: frame.len() };
        let mut x = FrameBuf { buf: &mut self.extra, len: 0 };
        let v = self.engine.process(self.now, dir, &mut f, &mut x);
        self.len = f.len;
        v
    }

    fn out(&self) -> TcpFrame {
        TcpFrame::parse(&self.buf[..self.len]).expect("engine output parses")
    }

    /// Run the client side of a handshake up to the ACK that carries the cookie; return the
    /// ACK (not yet sent).
    fn cookie_ack(&mut self, i: usize) -> TcpFrame {
        let isn = 0x1000_0000u32.wrapping_add(i as u32 * 7919);
        let syn = syn_frame(i, isn).build();
        assert_eq!(self.process(Direction::Inbound, &syn), Verdict::Reply);
        let sa = self.out();
        let (c, p) = client(i);
        let mut a = TcpFrame::new(c, p, IpAddr::V4(SERVER), 80, tf::ACK);
        a.seq = isn.wrapping_add(1);
        a.ack = sa.seq.wrapping_add(1);
        a.window = 502;
        a.options.timestamp = Some((1001 + i as u32, sa.options.timestamp.map(|t| t.0).unwrap_or(0)));
        a
    }

    /// Open flow `i` completely (client handshake, backend handshake); returns a client data
    /// segment for it.
    fn open(&mut self, i: usize) -> Vec<u8> {
        self.open_frame(i).build()
    }

    /// [`Bench::open`], the data segment as a frame (its sequence number is the client's next).
    fn open_frame(&mut self, i: usize) -> TcpFrame {
        let a = self.cookie_ack(i);
        assert_eq!(self.process(Direction::Inbound, &a.build()), Verdict::Forward);
        let bsyn = self.out();
        let (c, p) = client(i);
        let mut sa = TcpFrame::new(IpAddr::V4(SERVER), 80, c, p, tf::SYN | tf::ACK);
        sa.seq = 0x7000_0000u32.wrapping_add(i as u32 * 104_729);
        sa.ack = bsyn.seq.wrapping_add(1);
        sa.options.mss = Some(1460);
        sa.options.wscale = Some(7);
        sa.options.sack_permitted = true;
        sa.options.timestamp = Some((50_000, bsyn.options.timestamp.map(|t| t.0).unwrap_or(0)));
        assert_eq!(self.process(Direction::Outbound, &sa.build()), Verdict::ForwardWithReply);
        let mut d = a.clone();
        d.flags = tf::ACK | tf::PSH;
        d.payload = b"GET /index.html HTTP/1.1\r\nHost: bench\r\nUser-Agent: perf\r\nAccept: */*\r\n\r\n".to_vec();
        d
    }

    fn measure(
        &mut self,
        path: &'static str,
        sessions: usize,
        dir: Direction,
        pool: &[Vec<u8>],
        budget: Duration,
        expect: Verdict,
    ) -> Figure {
        self.measure_span(path, sessions, dir, pool, budget, expect, 0)
    }

    /// [`Bench::measure`]; with `span` > 0 every pass over the pool moves each frame's sequence
    /// number on by `span` (the bytes one pass sends per session), so that streams advance.
    #[allow(clippy::too_many_arguments)]
    fn measure_span(
        &mut self,
        path: &'static str,
        sessions: usize,
        dir: Direction,
        pool: &[Vec<u8>],
        budget: Duration,
        expect: Verdict,
        span: u32,
    ) -> Figure {
        // Warm-up and verdict check.
        if budget.is_zero() {
            return Figure { path, sessions, mpps: 0.0, ns_per_frame: 0.0, frames: 0 };
        }
        if span == 0 {
            for f in pool.iter().take(1024) {
                let v = self.process(dir, f);
                assert_eq!(v, expect, "{path}: unexpected verdict");
            }
        } else {
            // One whole pass, checked (the streams must stay in order).
            for f in pool {
                let v = self.process(dir, f);
                assert_eq!(v, expect, "{path}: unexpected verdict");
            }
            self.seq_add = self.seq_add.wrapping_add(span);
        }
        if let Some(b) = &self.sync {
            b.wait();
        }
        let mut n = 0u64;
        let start = Instant::now();
        'outer: loop {
            if span != 0 && n > 0 && n % pool.len() as u64 == 0 {
                self.seq_add = self.seq_add.wrapping_add(span);
            }
            for chunk in pool.chunks(4096) {
                if self.single {
                    for f in chunk {
                        let v = self.process(dir, f);
                        std::hint::black_box(v);
                    }
                } else {
                    for b in chunk.chunks(MAX_BATCH) {
                        let v = self.process_batch(dir, b);
                        std::hint::black_box(v);
                    }
                }
                n += chunk.len() as u64;
                if start.elapsed() >= budget {
                    break 'outer;
                }
            }
        }
        let el = start.elapsed().as_secs_f64();
        Figure { path, sessions, mpps: n as f64 / el / 1e6, ns_per_frame: el * 1e9 / n as f64, frames: n }
    }
}

/// The service of the `--protect` engine as a rule file, with `http` checks or without, and a
/// `per-source requests` limit (generous: it charges every request and refuses none).
fn http_policy(http: bool, limit: bool) -> Arc<Compiled> {
    let mut text = String::from("service web\n  dst 198.18.0.10\n  ports 80\n  syn proxy\n");
    if http {
        text.push_str("  http max-header-bytes 8k max-header-line 4k max-headers 64 methods GET,HEAD,POST\n");
    }
    text.push_str("end\n");
    if limit {
        text.push_str("limit service web per-source requests 1000000/s burst 1000000\n");
    }
    let src = rulespec::MemSource::new().with("http.rules", text);
    let c = rulespec::check("http.rules", &src);
    assert!(!c.has_errors(), "{}", c.render());
    Arc::new(rulespec::compile(c.policy.as_ref().expect("policy")).expect("compile"))
}

const HTTP_PATHS: [&str; 5] =
    ["body_forward", "body_forward_http", "head_forward", "head_forward_http", "head_forward_http_limit"];

/// The HTTP paths at `k` sessions, each engine with the same rule-file service: client segments
/// of established connections that are not request heads (512-byte pieces of a POST body
/// declared by `Content-Length`), with the service's `http` checks and without; segments that
/// are each one whole small GET head, without checks, with them, and with a `per-source
/// requests` limit charged per request. The streams advance pass after pass (no segment is
/// seen twice), each session's segments in order.
fn http_paths(
    k: usize,
    budget_of: &dyn Fn(&str) -> Duration,
    single: bool,
    sync: &Option<Arc<Barrier>>,
    progress: &mut dyn FnMut(&str),
    figures: &mut Vec<Figure>,
) {
    let capacity = (k * 5 / 4).next_power_of_two().max(1 << 12);
    let head: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: bench\r\nUser-Agent: perf\r\nAccept: */*\r\n\r\n";
    let post: &[u8] = b"POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Length: 1000000000000\r\n\r\n";
    let in_pool = k.min(65536);
    let per = (65536 / in_pool).max(1);
    // (path, http, limit, body?)
    let runs: [(&'static str, bool, bool, bool); 5] = [
        ("body_forward", false, false, true),
        ("body_forward_http", true, false, true),
        ("head_forward", false, false, false),
        ("head_forward_http", true, false, false),
        ("head_forward_http_limit", true, true, false),
    ];
    for (path, http, limit, body) in runs {
        if budget_of(path).is_zero() {
            continue;
        }
        let mut b = Bench::with_policy(capacity, Some(http_policy(http, limit)));
        b.single = single;
        b.sync = sync.clone();
        progress(&format!("{path}: opening {k} sessions"));
        let mut firsts = Vec::with_capacity(in_pool);
        for i in 0..k {
            let mut d = b.open_frame(i);
            if body {
                // The head of the upload, once.
                d.payload = post.to_vec();
                assert_eq!(b.process(Direction::Inbound, &d.build()), Verdict::Forward);
                d.seq = d.seq.wrapping_add(post.len() as u32);
            }
            if i < in_pool {
                firsts.push(d);
            }
        }
        let seg: Vec<u8> = if body { vec![b'x'; 512] } else { head.to_vec() };
        let mut pool = Vec::with_capacity(in_pool * per);
        for j in 0..per {
            for f in &firsts {
                let mut d = f.clone();
                d.payload = seg.clone();
                d.seq = d.seq.wrapping_add((j * seg.len()) as u32);
                pool.push(d.build());
            }
        }
        progress(&format!("measuring {path}"));
        figures.push(b.measure_span(
            path,
            k,
            Direction::Inbound,
            &pool,
            budget_of(path),
            Verdict::Forward,
            (per * seg.len()) as u32,
        ));
        if http {
            let c = b.engine.counters();
            assert_eq!(
                (c.http_resets, c.http_unchecked),
                (0, 0),
                "{path}: every request passed, followed: lost {} requests {} drops {:?}",
                c.http_states_lost,
                c.http_requests,
                c.dropped_total
            );
        }
    }
}

/// Run the engine benchmark for each table population in `populations`.
pub fn run(
    populations: &[usize],
    budget: Duration,
    only: &[String],
    single: bool,
    sync: Option<Arc<Barrier>>,
    progress: &mut dyn FnMut(&str),
) -> Report {
    let budget_of =
        |path: &str| if only.is_empty() || only.iter().any(|p| p == path) { budget } else { Duration::ZERO };
    let mut figures = vec![];
    let mut table_bytes = vec![];
    let mut bytes_per_slot = 0;
    for &k in populations {
        // Room for the live sessions plus the sessions the cookie-ACK path creates.
        let fresh = 200_000usize;
        let capacity = ((k + fresh) * 5 / 4).next_power_of_two();
        let mut b = Bench::new(capacity);
        b.single = single;
        b.sync = sync.clone();
        progress(&format!("opening {k} sessions through real cookie handshakes (table {capacity} slots)"));
        let mut data = Vec::with_capacity(k.min(65536));
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..k {
            let d = b.open(i);
            if data.len() < 65536 {
                data.push(d);
            } else {
                // Reservoir sample so the pool spreads over the whole table.
                let j = rng.next() as usize % (i + 1);
                if j < data.len() {
                    data[j] = d;
                }
            }
        }
        assert_eq!(b.engine.sessions(), k);
        bytes_per_slot = b.engine.table().memory_bytes() / b.engine.table().capacity();
        table_bytes.push((k, b.engine.table().capacity(), b.engine.table().memory_bytes()));

        // Untracked ACK-PSH: spoofed sources, random seq/ack, payload; each is checked against
        // the cookie and dropped.
        let mut ackpsh = Vec::with_capacity(65536);
        for _ in 0..65536 {
            let r = rng.next();
            let src = IpAddr::V4(Ipv4Addr::new(198, 19, (r >> 8) as u8, r as u8));
            let mut f =
                TcpFrame::new(src, 1024 + (rng.next() % 60000) as u16, IpAddr::V4(SERVER), 80, tf::ACK | tf::PSH);
            f.seq = rng.next();
            f.ack = rng.next();
            f.payload = vec![b'x'; 64];
            ackpsh.push(f.build());
        }
        progress("measuring untracked ACK-PSH drop");
        figures.push(b.measure(
            "ack_psh_drop",
            k,
            Direction::Inbound,
            &ackpsh,
            budget_of("ack_psh_drop"),
            Verdict::Drop(scrubber::DropReason::AckNoSession),
        ));

        // The same flood through an engine with the realistic policy (rules, LPM lookups of
        // both addresses, limits) in front of the same service: the policy's cost on the drop
        // path, measured back to back with the figure above.
        if !figures.iter().any(|f: &Figure| f.path == "ack_psh_drop_policy") {
            progress("compiling the realistic policy (100,000-prefix blocklist, 10 rules)");
            let mut p = Bench::with_policy(1 << 16, Some(realistic_policy()));
            p.single = single;
            p.sync = sync.clone();
            progress("measuring untracked ACK-PSH drop with the policy");
            figures.push(p.measure(
                "ack_psh_drop_policy",
                0,
                Direction::Inbound,
                &ackpsh,
                budget_of("ack_psh_drop_policy"),
                Verdict::Drop(scrubber::DropReason::AckNoSession),
            ));
            drop(p);
            progress("measuring untracked ACK-PSH drop without a policy, 0 sessions (same table size)");
            let mut q = Bench::new(1 << 16);
            q.single = single;
            q.sync = sync.clone();
            figures.push(q.measure(
                "ack_psh_drop_nopolicy",
                0,
                Direction::Inbound,
                &ackpsh,
                budget_of("ack_psh_drop_nopolicy"),
                Verdict::Drop(scrubber::DropReason::AckNoSession),
            ));
            drop(q);
        }

        // SYN → cookie SYN-ACK.
        let syns: Vec<Vec<u8>> = (0..65536).map(|i| syn_frame(k + fresh + i, rng.next()).build()).collect();
        progress("measuring SYN → cookie SYN-ACK");
        figures.push(b.measure(
            "syn_cookie_answer",
            k,
            Direction::Inbound,
            &syns,
            budget_of("syn_cookie_answer"),
            Verdict::Reply,
        ));

        // Established forward (client data, seq/ack/TS translated), random sessions.
        progress("measuring established forward");
        figures.push(b.measure(
            "established_forward",
            k,
            Direction::Inbound,
            &data,
            budget_of("established_forward"),
            Verdict::Forward,
        ));

        if HTTP_PATHS.iter().any(|p| !budget_of(p).is_zero()) {
            http_paths(k, &budget_of, single, &sync, progress, &mut figures);
        }

        // Valid cookie ACK → session + backend SYN: every frame must be a fresh handshake, so
        // this path runs over a fixed number of frames rather than a time budget.
        progress("preparing cookie ACKs");
        if budget_of("cookie_ack_session").is_zero() {
            continue;
        }
        let acks: Vec<Vec<u8>> = (0..fresh).map(|i| b.cookie_ack(k + i).build()).collect();
        progress("measuring valid cookie ACK → session");
        if let Some(s) = &sync {
            s.wait();
        }
        let start = Instant::now();
        if single {
            for f in &acks {
                let v = b.process(Direction::Inbound, f);
                debug_assert_eq!(v, Verdict::Forward);
                std::hint::black_box(v);
            }
        } else {
            for c in acks.chunks(MAX_BATCH) {
                let v = b.process_batch(Direction::Inbound, c);
                debug_assert_eq!(v, Verdict::Forward);
                std::hint::black_box(v);
            }
        }
        let el = start.elapsed().as_secs_f64();
        assert_eq!(b.engine.sessions(), k + fresh, "every cookie ACK opened a session");
        let n = acks.len() as u64;
        figures.push(Figure {
            path: "cookie_ack_session",
            sessions: k,
            mpps: n as f64 / el / 1e6,
            ns_per_frame: el * 1e9 / n as f64,
            frames: n,
        });
    }
    Report { figures, bytes_per_slot, table_bytes }
}

/// Run the benchmark in `threads` threads at once, thread *i* pinned to `cores[i]` (if given),
/// each with its own engine, table and frames (as the data plane's workers); the figures of
/// each path are summed over the threads.
pub fn run_parallel(
    threads: usize,
    cores: &[usize],
    populations: &[usize],
    budget: Duration,
    only: &[String],
    single: bool,
) -> Report {
    let sync = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (sync, pops, only, core) = (sync.clone(), populations.to_vec(), only.to_vec(), cores.get(i).copied());
            std::thread::spawn(move || {
                if let Some(c) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id: c });
                }
                run(&pops, budget, &only, single, Some(sync), &mut |m| {
                    if i == 0 {
                        eprintln!("… [{threads} threads] {m}");
                    }
                })
            })
        })
        .collect();
    let mut reports: Vec<Report> = handles.into_iter().map(|h| h.join().expect("bench thread")).collect();
    let mut total = reports.remove(0);
    for r in reports {
        for (t, f) in total.figures.iter_mut().zip(r.figures) {
            t.mpps += f.mpps;
            t.frames += f.frames;
        }
    }
    for f in &mut total.figures {
        f.ns_per_frame = if f.mpps > 0.0 { 1e3 / f.mpps } else { 0.0 };
    }
    total
}
