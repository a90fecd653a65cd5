//! The worker thread: one per core, owning queue *i* of both interfaces and one [`Engine`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;
use scrubber_xsk::{Desc, Side, SocketPair, SocketPairConfig, Waker, XdpProgram};

use super::handoff::{flow_owner, hand_off, HandedOff, Handoff, HANDOFF_QUEUE};
use super::inbox::PolicyInbox;
use super::sample::{push, Sample, Sampler};
use super::stats::{Publisher, RingStats};
use super::{now_ns, Poll, BATCH};

/// `SO_BUSY_POLL` of `--poll busy`: how long one busy poll may spin in the kernel for frames.
const BUSY_POLL_USECS: u32 = 20;
use arrayvec::ArrayVec;

use crate::engine::{Direction, DropReason, Engine, Job, Verdict};

/// Everything shared between the workers of one run.
#[derive(Debug)]
pub struct Shared {
    /// Cleared to stop every worker.
    pub running: AtomicBool,
    /// Hand-off queue of each worker.
    pub handoff: Vec<ArrayQueue<Handoff>>,
    /// Wake-up of each worker, given with the frames handed to it (a worker asleep in poll(2)
    /// would otherwise see them only at its next frame or timeout).
    pub wakers: Vec<Waker>,
    /// The redirect programs on ext and int.
    pub programs: [Arc<XdpProgram>; 2],
    /// One sample queue per worker (`--sample-dir`), drained by `control::samples`.
    pub samples: Option<Arc<Vec<ArrayQueue<super::sample::Sample>>>>,
    /// Session streaming to the fleet's other boxes (`--sync-peer`), when on.
    pub sync: Option<Arc<super::sync::SyncQueues>>,
}

impl Shared {
    /// For `workers` workers.
    pub fn new(workers: usize, programs: [Arc<XdpProgram>; 2]) -> std::io::Result<Self> {
        Ok(Shared {
            running: AtomicBool::new(true),
            handoff: (0..workers).map(|_| ArrayQueue::new(HANDOFF_QUEUE)).collect(),
            wakers: (0..workers).map(|_| Waker::new()).collect::<std::io::Result<_>>()?,
            programs,
            samples: None,
            sync: None,
        })
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
    /// How long to keep polling after the last frame before sleeping (`Block`, `Busy`).
    pub idle_spin: Duration,
    /// `--sample-dir`: what to sample (the queues are in [`Shared::samples`]).
    pub sample: Option<super::sample::SampleRates>,
}

/// Per-batch output lists, preallocated: what to transmit on each side (forwards out the
/// other side, answers out the arrival side, in arrival order) and what to recycle.
struct Out {
    tx: [[Desc; BATCH * 2]; 2],
    ntx: [usize; 2],
    drop: [Desc; BATCH],
    ndrop: usize,
}

impl Out {
    fn new() -> Self {
        Out { tx: [[Desc::default(); BATCH * 2]; 2], ntx: [0; 2], drop: [Desc::default(); BATCH], ndrop: 0 }
    }

    #[inline]
    fn send(&mut self, side: Side, d: Desc) {
        let i = side as usize;
        if let Some(slot) = self.tx[i].get_mut(self.ntx[i]) {
            *slot = d;
            self.ntx[i] += 1;
        }
    }

    #[inline]
    fn drop(&mut self, d: Desc) {
        if let Some(slot) = self.drop.get_mut(self.ndrop) {
            *slot = d;
            self.ndrop += 1;
        }
    }
}

/// Buffers for the second frame of a two-frame verdict, one per frame of a batch. The engine
/// writes the second frame here; the worker copies it into a UMEM frame only when there is
/// one (a backend SYN-ACK, a busy-port reconnect — rare), so no UMEM frame is held in reserve.
struct Extras(Box<[[u8; EXTRA]; BATCH]>);

/// Room for a second frame: the engine's answers are at most 134 bytes plus early data kept
/// for a Fast Open client (up to 1460 bytes) behind headers.
const EXTRA: usize = 2048;

/// What a worker reports when it ends.
#[derive(Debug)]
pub struct WorkerEnd {
    /// Frames unaccounted for, if the frame accounting check failed (should never happen).
    pub accounting_error: Option<String>,
    /// The engine, with its sessions (for `--state`, or a data plane rebuilt).
    pub engine: Box<Engine>,
    /// The worker's policy inbox (for a data plane rebuilt).
    pub inbox: PolicyInbox,
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
            return WorkerEnd { accounting_error: None, engine: Box::new(engine), inbox };
        }
    };
    if setup.poll == Poll::Busy {
        if let Err(e) = w.set_busy_poll(BUSY_POLL_USECS, BATCH as u16) {
            let _ = ready.send(Err(format!(
                "worker {}: --poll busy: {e} (preferred busy polling needs Linux 5.11 or later)",
                setup.index
            )));
            return WorkerEnd { accounting_error: None, engine: Box::new(engine), inbox };
        }
    }
    let q = setup.xsk.queue;
    for (i, side) in Side::BOTH.iter().enumerate() {
        if let Err(e) = shared.programs[i].register(q, w.fd(*side)) {
            let _ =
                ready.send(Err(format!("worker {}: registering queue {q} of {}: {e}", setup.index, w.ifname(*side))));
            return WorkerEnd { accounting_error: None, engine: Box::new(engine), inbox };
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
    let mut sampling: Option<(Sampler, &ArrayQueue<Sample>)> = match (setup.sample, shared.samples.as_ref()) {
        (Some(r), Some(qs)) => qs.get(me).map(|q| (Sampler::new(r), q)),
        _ => None,
    };
    let mut rx = [Desc::default(); BATCH];
    let mut own = [Desc::default(); BATCH];
    let mut out = Out::new();
    let mut extras = Extras(Box::new([[0u8; EXTRA]; BATCH]));
    let mut ls = RingStats::default();
    let mut last_publish = Instant::now();
    let mut last_sweep = Instant::now();
    let mut draining_until: Option<Instant> = None;
    let mut idle_since: Option<Instant> = None;
    let idle_spin = setup.idle_spin;
    let mut dump_seen = 0u64;

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
        if let Some(sq) = shared.sync.as_deref() {
            sync_step(&mut engine, sq, me, &mut dump_seen);
        }
        ls.polls += 1;
        if setup.poll == Poll::Busy {
            w.busy_poll();
        }
        let now = now_ns();
        let mut work = 0;
        for side in Side::BOTH {
            let got = w.rx_batch(side, &mut rx);
            work += got;
            if got == 0 {
                continue;
            }
            let dir = if side == Side::Ext { Direction::Inbound } else { Direction::Outbound };
            let mut m = 0;
            let mut woken = 0u64; // owners to wake, one bit each (at most 64 workers)
            for d in &rx[..got] {
                if n > 1 {
                    if let Some(owner) = w.frame(d).and_then(|f| flow_owner(f, n)) {
                        if owner != me {
                            match hand_off(&mut w, &shared.handoff[owner], d, dir) {
                                HandedOff::Queued => {
                                    ls.handoffs_out += 1;
                                    woken |= 1 << (owner % 64);
                                }
                                HandedOff::Dropped => ls.handoff_dropped += 1,
                            }
                            out.drop(*d);
                            continue;
                        }
                    }
                }
                own[m] = *d;
                m += 1;
            }
            while woken != 0 {
                let o = woken.trailing_zeros() as usize;
                woken &= woken - 1;
                if let Some(wk) = shared.wakers.get(o) {
                    wk.wake();
                }
            }
            let dirs = [dir; BATCH];
            judge_batch(
                &mut w,
                &mut engine,
                now,
                &dirs[..m],
                &mut own[..m],
                &mut extras,
                &mut out,
                &mut ls,
                &mut sampling,
            );
            flush(&mut w, &mut out, &mut ls);
        }
        // Frames other workers handed to us, copied into frames of our UMEM, judged as a batch.
        if n > 1 {
            let mut dirs = [Direction::Inbound; BATCH];
            let mut m = 0;
            while m < BATCH {
                let Some(h) = shared.handoff[me].pop() else { break };
                work += 1;
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
                own[m] = d;
                dirs[m] = h.dir;
                m += 1;
            }
            if m > 0 {
                judge_batch(
                    &mut w,
                    &mut engine,
                    now,
                    &dirs[..m],
                    &mut own[..m],
                    &mut extras,
                    &mut out,
                    &mut ls,
                    &mut sampling,
                );
                flush(&mut w, &mut out, &mut ls);
            }
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
                Poll::Block | Poll::Busy => {
                    // Keep polling (yielding the core) for the idle spin time after the last
                    // frame, then sleep until one arrives.
                    let since = *idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() < idle_spin {
                        std::thread::yield_now();
                    } else if n > 1 {
                        let wk = &shared.wakers[me];
                        let _ = w.poll_wait_with(10, Some(wk.fd()));
                        wk.clear();
                    } else {
                        let _ = w.poll_wait(10);
                    }
                }
            }
        } else {
            idle_since = None;
        }
        if last_publish.elapsed() >= Duration::from_millis(100) {
            publish(&publisher, &engine, &w, &ls);
            last_publish = Instant::now();
        }
    }
    publish(&publisher, &engine, &w, &ls);
    for (i, _) in Side::BOTH.iter().enumerate() {
        let _ = shared.programs[i].unregister(q);
    }
    let accounting_error = w.check_accounting().err().map(|e| e.to_string());
    WorkerEnd { accounting_error, engine: Box::new(engine), inbox }
}

/// Judge frames `descs` (arrived in directions `dirs`) as one batch and sort them into `out`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn judge_batch(
    w: &mut SocketPair,
    engine: &mut Engine,
    now: u64,
    dirs: &[Direction],
    descs: &mut [Desc],
    extras: &mut Extras,
    out: &mut Out,
    ls: &mut RingStats,
    sampling: &mut Option<(Sampler, &ArrayQueue<Sample>)>,
) {
    let m = descs.len().min(BATCH).min(dirs.len());
    let mut verdicts = [Verdict::Drop(DropReason::NoBufferRoom); BATCH];
    let mut lens = [0usize; BATCH];
    let mut xlens = [0usize; BATCH];
    {
        let mut bufs: [&mut [u8]; BATCH] = std::array::from_fn(|_| Default::default());
        if w.frames_mut(&descs[..m], &mut bufs[..m]) {
            let mut jobs = ArrayVec::<Job<'_>, BATCH>::new();
            for (k, (b, x)) in bufs.iter_mut().zip(extras.0.iter_mut()).take(m).enumerate() {
                let len = descs[k].len();
                jobs.push(Job::new(now, dirs[k], core::mem::take(b), len, &mut x[..]));
            }
            engine.process_batch(&mut jobs);
            for (k, j) in jobs.iter().enumerate() {
                verdicts[k] = j.verdict;
                lens[k] = j.frame.len;
                xlens[k] = j.extra.len;
            }
        }
        // Else (a frame not in hand: cannot happen) every frame is dropped as NoBufferRoom.
    }
    for k in 0..m {
        let mut d = descs[k];
        d.set_len(lens[k]);
        let side = match dirs[k] {
            Direction::Inbound => Side::Ext,
            Direction::Outbound => Side::Int,
        };
        if let Some((s, q)) = sampling.as_mut() {
            if let Some(f) = w.frame(&d) {
                if s.want(f, verdicts[k]) {
                    if push(q, now, side == Side::Int, verdicts[k], f) {
                        ls.samples_taken += 1;
                    } else {
                        ls.samples_dropped += 1;
                    }
                }
            }
        }
        match verdicts[k] {
            Verdict::Forward => out.send(side.other(), d),
            Verdict::Reply => out.send(side, d),
            Verdict::ForwardWithReply | Verdict::ReplyTwice | Verdict::Reset(_) => {
                if verdicts[k] != Verdict::ReplyTwice {
                    out.send(side.other(), d);
                } else {
                    out.send(side, d);
                }
                match second_frame(w, &extras.0[k][..xlens[k]]) {
                    Some(x) => out.send(side, x),
                    None => ls.second_frame_lost += 1,
                }
            }
            Verdict::Drop(_) => out.drop(d),
        }
    }
}

/// Between batches: walk the table for a peer that (re)joined (a bounded step, when one is
/// under way), hand the engine's session records to the sync thread, take in (a bounded number
/// of) the peers' records for flows this worker owns.
#[inline]
fn sync_step(engine: &mut Engine, sq: &super::sync::SyncQueues, me: usize, dump_seen: &mut u64) {
    let now = now_ns();
    let d = sq.dump.load(Ordering::Relaxed);
    if d != *dump_seen {
        *dump_seen = d;
        engine.start_sync_dump(now);
    }
    engine.sync_dump_step(now);
    if let Some(out) = sq.out.get(me) {
        engine.drain_synced(|r| {
            if out.push(r.encode()).is_err() {
                sq.lost.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    if let Some(inp) = sq.inp.get(me) {
        for _ in 0..256 {
            let Some(b) = inp.pop() else { break };
            if let Some(r) = crate::engine::sync::SyncRecord::decode(&b) {
                engine.import_synced(now, &r);
            }
        }
    }
}

/// A UMEM frame holding a copy of `bytes`, if one is free.
#[inline]
fn second_frame(w: &mut SocketPair, bytes: &[u8]) -> Option<Desc> {
    let mut x = w.alloc_frame()?;
    match w.frame_buf_mut(&x) {
        Some(buf) if buf.len() >= bytes.len() => buf[..bytes.len()].copy_from_slice(bytes),
        _ => {
            w.recycle(&[x]);
            return None;
        }
    }
    x.set_len(bytes.len());
    Some(x)
}

/// Transmit what a batch produced on each side, recycle the drops; frames that do not fit in a
/// tx ring are dropped and counted.
#[inline]
fn flush(w: &mut SocketPair, out: &mut Out, ls: &mut RingStats) {
    for side in Side::BOTH {
        let i = side as usize;
        let n = out.ntx[i];
        if n > 0 {
            let sent = w.tx_batch(side, &out.tx[i][..n]);
            if sent < n {
                ls.tx_ring_full += (n - sent) as u64;
                w.recycle(&out.tx[i][sent..n]);
            }
            out.ntx[i] = 0;
        }
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
    let (table, limiter, http) = (e.table().stats(), e.limiter_stats(), e.http_table_stats());
    p.update(|s| {
        s.counters.clone_from(e.counters());
        s.table = table;
        s.limiter = limiter;
        s.http = http;
        s.sync = e.sync_stats();
        s.rings = rings;
    });
}
