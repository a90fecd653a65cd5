//! The worker thread: one per core, owning queue *i* of both interfaces and one [`Engine`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;
use scrubber_xsk::{Desc, Side, SocketPair, SocketPairConfig, XdpProgram};

use super::handoff::{flow_owner, hand_off, HandedOff, Handoff, HANDOFF_QUEUE};
use super::inbox::PolicyInbox;
use super::stats::{Publisher, RingStats};
use super::{now_ns, Poll, BATCH};
use crate::engine::{Direction, DropReason, Engine, FrameBuf, Verdict};

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
    pub xsk: SocketPairConfig,
    /// Idle strategy.
    pub poll: Poll,
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
    let mut w = match SocketPair::new(&setup.xsk) {
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
    let mut ls = RingStats::default();
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
                            match hand_off(&mut w, &shared.handoff[owner], &d, dir) {
                                HandedOff::Queued => ls.handoffs_out += 1,
                                HandedOff::Dropped => ls.handoff_dropped += 1,
                            }
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
    w: &mut SocketPair,
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
                if matches!(v, Verdict::ForwardWithReply | Verdict::ReplyTwice) {
                    sp.set_len(x.len);
                }
                v
            }
            None => Verdict::Drop(DropReason::NoBufferRoom),
        },
        None => match w.frame_buf_mut(d) {
            Some(buf) => {
                let mut f = FrameBuf { buf, len };
                let mut x = FrameBuf { buf: &mut empty[..], len: 0 };
                let v = engine.process(now, dir, &mut f, &mut x);
                d.set_len(f.len);
                v
            }
            None => Verdict::Drop(DropReason::NoBufferRoom),
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
        Verdict::ReplyTwice => {
            out.ans[out.nans] = *d;
            out.nans += 1;
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
fn flush(w: &mut SocketPair, out: &mut Out, side: Side, ls: &mut RingStats) {
    if out.nfwd > 0 {
        let sent = w.tx_batch(side.other(), &out.fwd[..out.nfwd]);
        if sent < out.nfwd {
            ls.tx_ring_full += (out.nfwd - sent) as u64;
            w.recycle(&out.fwd[sent..out.nfwd]);
        }
        out.nfwd = 0;
    }
    if out.nans > 0 {
        let sent = w.tx_batch(side, &out.ans[..out.nans]);
        if sent < out.nans {
            ls.tx_ring_full += (out.nans - sent) as u64;
            w.recycle(&out.ans[sent..out.nans]);
        }
        out.nans = 0;
    }
    if out.ndrop > 0 {
        w.recycle(&out.drop[..out.ndrop]);
        out.ndrop = 0;
    }
}

fn publish(p: &Publisher, e: &Engine, w: &SocketPair, ls: &RingStats) {
    let r = w.stats();
    let k = |s: &scrubber_xsk::SideStats| s.kernel.unwrap_or_default();
    let (ke, ki) = (k(&r.ext), k(&r.int));
    let rings = RingStats {
        rx_ring_full: ke.rx_ring_full + ki.rx_ring_full,
        fill_ring_empty: ke.rx_fill_ring_empty_descs + ki.rx_fill_ring_empty_descs,
        rx_dropped: ke.rx_dropped + ki.rx_dropped,
        tx_invalid: ke.tx_invalid_descs + ki.tx_invalid_descs,
        tx_kicks: r.ext.tx_kicks + r.int.tx_kicks,
        ..*ls
    };
    let (table, limiter) = (e.table().stats(), e.limiter_stats());
    p.update(|s| {
        s.counters.clone_from(e.counters());
        s.table = table;
        s.limiter = limiter;
        s.rings = rings;
    });
}
