//! The AF_XDP data plane: one pinned worker per core, each owning queue *i* of ext and of int
//! on one shared UMEM ([`scrubber_xsk::Worker`]), judging batches with its own [`Engine`].
//!
//! Per iteration a worker: takes a policy from its inbox if one is waiting; reads up to
//! [`BATCH`] frames from ext and judges them inbound, then from int (outbound); queues
//! forwarded frames on the other side's tx ring (the descriptor moves, nothing is copied),
//! answers on the arrival side, recycles drops; takes frames other workers handed over;
//! services the rings (completions → fill rings, tx kick only when needed); and when idle,
//! spins, yields or blocks in poll() as configured, sweeping expired sessions. Every 100 ms it
//! publishes its counters. Nothing on this path allocates, locks or logs.
//!
//! **Flows and cores.** A TCP flow's two directions must meet the same session table. With a
//! symmetric RSS key and equal queue counts (scripts/nic-setup.sh) they arrive on the same
//! worker. When they do not, the frame goes to the flow's owner — chosen by a symmetric hash
//! of the addresses and ports — through the owner's lock-free queue (a copy of the frame; it
//! is transmitted from the owner's UMEM). Hand-offs are counted on both sides; a full queue
//! drops the frame (counted as `handoff_dropped` in the ring stats' `tx_ring_full`).
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::queue::ArrayQueue;
use scrubber_xsk::{Desc, Side, Worker, WorkerConfig, XdpProgram};
use xxhash_rust::xxh3::xxh3_64;

use crate::engine::{Engine, FrameBuf};
use crate::reload::PolicyInbox;
use crate::telemetry::{Publisher, RingStats};
use crate::verdict::{Direction, Verdict};
use crate::wire::frame::{dissect, Frag};
use crate::wire::{IPPROTO_TCP, IPPROTO_UDP};

/// Frames read from one ring per iteration.
pub const BATCH: usize = 64;
/// Largest frame a hand-off carries.
pub const HANDOFF_FRAME: usize = 2048;
/// Hand-off queue entries per worker.
pub const HANDOFF_QUEUE: usize = 1024;

/// What a worker does when its rings are empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Keep polling the rings (lowest latency; needs the NAPI thread to get CPU time, see
    /// the NAPI knobs).
    Spin,
    /// `sched_yield` between empty polls.
    Yield,
    /// Sleep in poll(2) on both sockets until a frame arrives (at most 10 ms).
    Block,
}

impl Poll {
    /// The setting's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Poll::Spin => "spin",
            Poll::Yield => "yield",
            Poll::Block => "block",
        }
    }
}

/// A frame handed from one worker to the flow's owner.
#[derive(Debug)]
pub struct Handoff {
    dir: Direction,
    len: u16,
    data: [u8; HANDOFF_FRAME],
}

/// Everything shared between the workers of one run.
#[derive(Debug)]
pub struct Shared {
    /// Cleared to stop every worker.
    pub running: AtomicBool,
    /// Hand-off queue of each worker.
    pub handoff: Vec<ArrayQueue<Handoff>>,
    /// The redirect programs on ext and int.
    pub programs: [Arc<XdpProgram>; 2],
}

impl Shared {
    /// For `workers` workers.
    pub fn new(workers: usize, programs: [Arc<XdpProgram>; 2]) -> Self {
        Shared {
            running: AtomicBool::new(true),
            handoff: (0..workers).map(|_| ArrayQueue::new(HANDOFF_QUEUE)).collect(),
            programs,
        }
    }
}

/// One worker's settings.
#[derive(Debug)]
pub struct WorkerSetup {
    /// Index (also the queue it serves).
    pub index: usize,
    /// Core to pin to.
    pub core: Option<usize>,
    /// Sockets and UMEM.
    pub xsk: WorkerConfig,
    /// Idle strategy.
    pub poll: Poll,
}

/// Owner of a frame's flow among `n` workers: a hash of the (address, port) pairs taken in a
/// fixed order so both directions agree. Frames that are not unfragmented TCP or UDP stay where
/// they are (`None`).
#[inline]
pub fn flow_owner(frame: &[u8], n: usize) -> Option<usize> {
    if n <= 1 {
        return None;
    }
    let d = dissect(frame).ok()?;
    if !matches!(d.proto, IPPROTO_TCP | IPPROTO_UDP) || d.frag != Frag::None {
        return None;
    }
    let ports = frame.get(d.l4_off..d.l4_off + 4).filter(|_| d.l4_len >= 4)?;
    let a = (&d.src, [ports[0], ports[1]]);
    let b = (&d.dst, [ports[2], ports[3]]);
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    let mut key = [0u8; 37];
    key[..16].copy_from_slice(x.0);
    key[16..18].copy_from_slice(&x.1);
    key[18..34].copy_from_slice(y.0);
    key[34..36].copy_from_slice(&y.1);
    key[36] = d.proto;
    Some((xxh3_64(&key) % n as u64) as usize)
}

/// Wall-clock nanoseconds since the UNIX epoch: the engine's clock.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// Per-batch output lists, preallocated.
struct Out {
    fwd: [Desc; BATCH * 2],
    nfwd: usize,
    ans: [Desc; BATCH * 2],
    nans: usize,
    drop: [Desc; BATCH * 2],
    ndrop: usize,
}

impl Out {
    fn new() -> Self {
        Out {
            fwd: [Desc::default(); BATCH * 2],
            nfwd: 0,
            ans: [Desc::default(); BATCH * 2],
            nans: 0,
            drop: [Desc::default(); BATCH * 2],
            ndrop: 0,
        }
    }
}

/// Counters the loop keeps besides the engine's.
#[derive(Default)]
struct LoopStats {
    polls: u64,
    tx_full_drops: u64,
    handoffs_out: u64,
    handoffs_in: u64,
    handoff_dropped: u64,
}

/// What a worker reports when it ends.
#[derive(Debug)]
pub struct WorkerEnd {
    /// Frames unaccounted for, if the frame accounting check failed (should never happen).
    pub accounting_error: Option<String>,
}

/// Run one worker until `shared.running` is cleared. Builds the sockets on this thread,
/// registers them with both programs, and signals `ready` (Ok or the error).
pub fn worker_main(
    setup: WorkerSetup,
    mut engine: Engine,
    inbox: PolicyInbox,
    publisher: Publisher,
    shared: Arc<Shared>,
    ready: std::sync::mpsc::Sender<Result<(String, String), String>>,
) -> WorkerEnd {
    if let Some(c) = setup.core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let mut w = match Worker::new(&setup.xsk) {
        Ok(w) => w,
        Err(e) => {
            let _ = ready.send(Err(format!("worker {} (queue {}): {e}", setup.index, setup.xsk.queue)));
            return WorkerEnd { accounting_error: None };
        }
    };
    let q = setup.xsk.queue;
    for (i, side) in Side::BOTH.iter().enumerate() {
        if let Err(e) = shared.programs[i].register(q, w.fd(*side)) {
            let _ =
                ready.send(Err(format!("worker {}: registering queue {q} of {}: {e}", setup.index, w.ifname(*side))));
            return WorkerEnd { accounting_error: None };
        }
    }
    let modes = (w.mode(Side::Ext).to_string(), w.mode(Side::Int).to_string());
    publisher.update(|s| {
        s.core = setup.core;
        s.ext_mode = modes.0.clone();
        s.int_mode = modes.1.clone();
    });
    let _ = ready.send(Ok(modes));
    drop(ready);

    let n = shared.handoff.len();
    let me = setup.index;
    let mut rx = [Desc::default(); BATCH];
    let mut out = Out::new();
    let mut ls = LoopStats::default();
    let mut spare: Option<Desc> = w.alloc_frame();
    let mut empty: [u8; 0] = [];
    let mut last_publish = Instant::now();
    let mut last_sweep = Instant::now();
    let mut draining_until: Option<Instant> = None;

    loop {
        if !shared.running.load(Ordering::Relaxed) {
            // Stop receiving; let queued transmissions complete briefly, then leave.
            let until = *draining_until.get_or_insert_with(|| Instant::now() + Duration::from_millis(100));
            w.service();
            if Instant::now() >= until || (w.tx_pending(Side::Ext) == 0 && w.tx_pending(Side::Int) == 0) {
                break;
            }
            std::thread::yield_now();
            continue;
        }
        inbox.poll(&mut engine);
        ls.polls += 1;
        let now = now_ns();
        let mut work = 0;
        for side in Side::BOTH {
            let got = w.rx_batch(side, &mut rx);
            work += got;
            if got == 0 {
                continue;
            }
            let dir = if side == Side::Ext { Direction::Inbound } else { Direction::Outbound };
            for d in &rx[..got] {
                let mut d = *d;
                if n > 1 {
                    if let Some(owner) = w.frame(&d).and_then(|f| flow_owner(f, n)) {
                        if owner != me {
                            hand_off(&mut w, &shared.handoff[owner], &d, dir, &mut ls);
                            out.drop[out.ndrop] = d;
                            out.ndrop += 1;
                            continue;
                        }
                    }
                }
                judge(&mut w, &mut engine, now, dir, &mut d, &mut spare, &mut empty, &mut out);
            }
            flush(&mut w, &mut out, side, &mut ls);
        }
        // Frames other workers handed to us.
        if n > 1 {
            let mut taken = 0;
            while taken < BATCH {
                let Some(h) = shared.handoff[me].pop() else { break };
                taken += 1;
                let Some(mut d) = w.alloc_frame() else {
                    ls.handoff_dropped += 1;
                    continue;
                };
                let len = usize::from(h.len);
                match w.frame_buf_mut(&d) {
                    Some(buf) if buf.len() >= len => buf[..len].copy_from_slice(&h.data[..len]),
                    _ => {
                        w.recycle(&[d]);
                        ls.handoff_dropped += 1;
                        continue;
                    }
                }
                d.set_len(len);
                ls.handoffs_in += 1;
                let side = if h.dir == Direction::Inbound { Side::Ext } else { Side::Int };
                judge(&mut w, &mut engine, now, h.dir, &mut d, &mut spare, &mut empty, &mut out);
                flush(&mut w, &mut out, side, &mut ls);
            }
            work += taken;
        }
        // Drops were recycled by the flushes: a spare judge could not get may be there now.
        if spare.is_none() {
            spare = w.alloc_frame();
        }
        w.service();

        if work == 0 {
            if last_sweep.elapsed() >= Duration::from_millis(10) {
                engine.housekeeping(now, 4096);
                last_sweep = Instant::now();
            }
            match setup.poll {
                Poll::Spin => std::hint::spin_loop(),
                Poll::Yield => std::thread::yield_now(),
                Poll::Block => {
                    let _ = w.poll_wait(10);
                }
            }
        }
        if last_publish.elapsed() >= Duration::from_millis(100) {
            publish(&publisher, &engine, &w, &ls);
            last_publish = Instant::now();
        }
    }
    if let Some(s) = spare.take() {
        w.recycle(&[s]);
    }
    publish(&publisher, &engine, &w, &ls);
    for (i, _) in Side::BOTH.iter().enumerate() {
        let _ = shared.programs[i].unregister(q);
    }
    let accounting_error = w.check_accounting().err().map(|e| e.to_string());
    WorkerEnd { accounting_error }
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn judge(
    w: &mut Worker,
    engine: &mut Engine,
    now: u64,
    dir: Direction,
    d: &mut Desc,
    spare: &mut Option<Desc>,
    empty: &mut [u8; 0],
    out: &mut Out,
) {
    let len = d.len();
    let verdict = match spare {
        Some(sp) => match w.two_frames_mut(d, sp) {
            Some((buf, xbuf)) => {
                let mut f = FrameBuf { buf, len };
                let mut x = FrameBuf { buf: xbuf, len: 0 };
                let v = engine.process(now, dir, &mut f, &mut x);
                d.set_len(f.len);
                if v == Verdict::ForwardWithReply {
                    sp.set_len(x.len);
                }
                v
            }
            None => Verdict::Drop(crate::verdict::DropReason::NoBufferRoom),
        },
        None => match w.frame_buf_mut(d) {
            Some(buf) => {
                let mut f = FrameBuf { buf, len };
                let mut x = FrameBuf { buf: &mut empty[..], len: 0 };
                let v = engine.process(now, dir, &mut f, &mut x);
                d.set_len(f.len);
                v
            }
            None => Verdict::Drop(crate::verdict::DropReason::NoBufferRoom),
        },
    };
    match verdict {
        Verdict::Forward => {
            out.fwd[out.nfwd] = *d;
            out.nfwd += 1;
        }
        Verdict::Reply => {
            out.ans[out.nans] = *d;
            out.nans += 1;
        }
        Verdict::ForwardWithReply => {
            out.fwd[out.nfwd] = *d;
            out.nfwd += 1;
            if let Some(sp) = spare.take() {
                out.ans[out.nans] = sp;
                out.nans += 1;
            }
        }
        Verdict::Drop(_) => {
            out.drop[out.ndrop] = *d;
            out.ndrop += 1;
        }
    }
    // Keep a spare for the next ForwardWithReply; allocated outside the lists.
    if spare.is_none() {
        *spare = w.alloc_frame();
    }
}

/// Transmit what a batch produced: forwards out the other side, answers out `side`, drops
/// back to the free list; frames that do not fit in a tx ring are dropped and counted.
#[inline]
fn flush(w: &mut Worker, out: &mut Out, side: Side, ls: &mut LoopStats) {
    if out.nfwd > 0 {
        let sent = w.tx_batch(side.other(), &out.fwd[..out.nfwd]);
        if sent < out.nfwd {
            ls.tx_full_drops += (out.nfwd - sent) as u64;
            w.recycle(&out.fwd[sent..out.nfwd]);
        }
        out.nfwd = 0;
    }
    if out.nans > 0 {
        let sent = w.tx_batch(side, &out.ans[..out.nans]);
        if sent < out.nans {
            ls.tx_full_drops += (out.nans - sent) as u64;
            w.recycle(&out.ans[sent..out.nans]);
        }
        out.nans = 0;
    }
    if out.ndrop > 0 {
        w.recycle(&out.drop[..out.ndrop]);
        out.ndrop = 0;
    }
}

#[inline]
fn hand_off(w: &mut Worker, q: &ArrayQueue<Handoff>, d: &Desc, dir: Direction, ls: &mut LoopStats) {
    let Some(f) = w.frame(d) else { return };
    if f.len() > HANDOFF_FRAME {
        ls.handoff_dropped += 1;
        return;
    }
    let mut h = Handoff { dir, len: f.len() as u16, data: [0; HANDOFF_FRAME] };
    h.data[..f.len()].copy_from_slice(f);
    if q.push(h).is_ok() {
        ls.handoffs_out += 1;
    } else {
        ls.handoff_dropped += 1;
    }
}

fn publish(p: &Publisher, e: &Engine, w: &Worker, ls: &LoopStats) {
    let r = w.stats();
    let k = |s: &scrubber_xsk::SideStats| s.kernel.unwrap_or_default();
    let (ke, ki) = (k(&r.ext), k(&r.int));
    p.update(|s| {
        s.counters.clone_from(e.counters());
        s.sessions = e.sessions() as u64;
        s.handoffs_out = ls.handoffs_out;
        s.handoffs_in = ls.handoffs_in;
        s.rings = RingStats {
            rx_ring_full: ke.rx_ring_full + ki.rx_ring_full,
            fill_ring_empty: ke.rx_fill_ring_empty_descs + ki.rx_fill_ring_empty_descs,
            tx_ring_full: ls.tx_full_drops + ls.handoff_dropped,
            rx_dropped: ke.rx_dropped + ki.rx_dropped,
            tx_invalid: ke.tx_invalid_descs + ki.tx_invalid_descs,
            tx_kicks: r.ext.tx_kicks + r.int.tx_kicks,
            polls: ls.polls,
        };
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::builder::{udp_frame, TcpFrame};

    #[test]
    fn flow_owner_is_symmetric_and_spreads() {
        let mut seen = [0usize; 4];
        for p in 1000..1400u16 {
            let a = TcpFrame::new("198.19.0.1".parse().unwrap(), p, "198.18.0.10".parse().unwrap(), 80, 0x10).build();
            let b = TcpFrame::new("198.18.0.10".parse().unwrap(), 80, "198.19.0.1".parse().unwrap(), p, 0x10).build();
            let oa = flow_owner(&a, 4).unwrap();
            assert_eq!(Some(oa), flow_owner(&b, 4));
            seen[oa] += 1;
            let v6 = TcpFrame::new("2001:2::1".parse().unwrap(), p, "2001:2::10".parse().unwrap(), 80, 0x10).build();
            let v6r = TcpFrame::new("2001:2::10".parse().unwrap(), 80, "2001:2::1".parse().unwrap(), p, 0x10).build();
            assert_eq!(flow_owner(&v6, 4), flow_owner(&v6r, 4));
        }
        assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
        let u = udp_frame("198.19.0.1".parse().unwrap(), 5, "198.18.0.10".parse().unwrap(), 53, b"x");
        assert!(flow_owner(&u, 4).is_some());
        assert_eq!(flow_owner(&u, 1), None);
        assert_eq!(flow_owner(&[0u8; 10], 4), None);
        let arp = crate::wire::builder::arp_request([2, 0, 0, 0, 0, 1], [198, 18, 0, 1], [198, 18, 0, 10]);
        assert_eq!(flow_owner(&arp, 4), None);
    }
}
