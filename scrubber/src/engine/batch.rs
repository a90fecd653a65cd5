//! The batch path: [`Engine::process_batch`] judges a whole rx batch in stages, so that the
//! cache misses of its frames overlap instead of queueing one after another.
//!
//! At a million sessions, a frame waits on two or three dependent misses — the tag group of a
//! candidate bucket, then the entry the tag points at (a 48-byte entry straddles two lines half
//! of the time) — about 100 ns each on this class of machine, one frame after another. The
//! stages take every frame of the batch through one step before any goes to the next:
//!
//! 1. **dissect** every frame (once; the result is kept for the judge);
//! 2. **hash**: compute each TCP frame's flow key and its [`Probe`] (stored form, candidate
//!    buckets, tag), and prefetch both candidate tag groups — and the first-level lines of the
//!    policy's prefix tables the rules will read;
//! 3. **probe**: scan the (now arriving) tag groups and prefetch the entries whose tag matches,
//!    and the prefix tables' second level (whose address the root lines give);
//!    for inbound ACKs of flows the table certainly does not hold — the untracked ACKs of a
//!    flood, each checked as a SYN cookie — compute the cookie MACs of the whole batch in one
//!    call ([`super::cookie::SynCookies::mac_many`], AES blocks eight in flight);
//! 4. **judge** every frame in arrival order, with exactly the per-frame code of
//!    [`Engine::process`], whose lookups and inserts reuse the probe of stage 2.
//!
//! Stages 1–3 read the frames and the engine's tables but change nothing (a prefetch is only a
//! hint), and a probe depends on the key and the table's seed alone, so stage 4 sees the same
//! state in the same order as frame-by-frame processing would: every verdict, rewritten frame
//! and counter is identical (the property test `batch_equals_single` checks it on random
//! batches of mixed directions and flows).

use super::cookie::{MacMemo, MacRequest};
use super::flow::FlowKey;
use super::session::Probe;
use super::{tcp, Direction, Engine, FrameBuf, Verdict};
use crate::wire::frame::{dissect_into, DissectError, Dissected, Frag, Net};
use crate::wire::tcp::flags as tf;
use crate::wire::IPPROTO_TCP;

/// Frames judged per stage round; a longer slice is taken in rounds of this many.
pub const MAX_BATCH: usize = 64;

/// One frame of a batch: its arrival time and direction, its buffer, a buffer for a second
/// frame (needed when the verdict is [`Verdict::ForwardWithReply`] or [`Verdict::ReplyTwice`];
/// an empty buffer turns those into a [`super::DropReason::NoBufferRoom`] drop, as in
/// [`Engine::process`]), and, after [`Engine::process_batch`], the verdict.
#[derive(Debug)]
pub struct Job<'a> {
    /// Arrival time, nanoseconds since the UNIX epoch.
    pub now_ns: u64,
    /// Arrival direction.
    pub dir: Direction,
    /// The frame; may be rewritten (see [`Engine::process`]).
    pub frame: FrameBuf<'a>,
    /// The second frame of a two-frame verdict.
    pub extra: FrameBuf<'a>,
    /// The verdict, set by [`Engine::process_batch`].
    pub verdict: Verdict,
}

impl<'a> Job<'a> {
    /// A job for the `len`-byte frame in `buf`, with `extra` as the buffer for a second frame.
    pub fn new(now_ns: u64, dir: Direction, buf: &'a mut [u8], len: usize, extra: &'a mut [u8]) -> Self {
        Job { now_ns, dir, frame: FrameBuf::new(buf, len), extra: FrameBuf::new(extra, 0), verdict: Verdict::Forward }
    }
}

/// What stages 1–3 leave for the judge, per frame of a round.
#[derive(Debug)]
pub(crate) struct Scratch {
    dissected: [Dissected; MAX_BATCH],
    errors: [Option<DissectError>; MAX_BATCH],
    probes: [Option<(FlowKey, Probe)>; MAX_BATCH],
    memos: [MacMemo; MAX_BATCH],
    /// Cookie MACs to compute: the requests, their results, and (frame, try) of each.
    reqs: [MacRequest; 2 * MAX_BATCH],
    macs: [u128; 2 * MAX_BATCH],
    req_of: [(u8, u8); 2 * MAX_BATCH],
}

impl Scratch {
    pub(crate) fn new() -> Box<Scratch> {
        Box::new(Scratch {
            dissected: [Dissected::EMPTY; MAX_BATCH],
            errors: [None; MAX_BATCH],
            probes: [None; MAX_BATCH],
            memos: [MacMemo::EMPTY; MAX_BATCH],
            reqs: [MacRequest::EMPTY; 2 * MAX_BATCH],
            macs: [0; 2 * MAX_BATCH],
            req_of: [(0, 0); 2 * MAX_BATCH],
        })
    }
}

impl Engine {
    /// Judge a batch of frames, in order: afterwards every job holds the verdict that
    /// [`Engine::process`] would have given it had the frames been processed one by one, in
    /// the same order, with the same times — same rewrites, same counters — only faster (see
    /// the [module documentation](self)).
    pub fn process_batch(&mut self, jobs: &mut [Job<'_>]) {
        // The scratch leaves the engine for the duration (the judge needs `&mut self`); it is
        // put back, so nothing is allocated.
        let Some(mut sc) = self.scratch.take() else {
            // Unreachable (the scratch is always put back), but never worth a panic.
            for j in jobs.iter_mut() {
                j.verdict = self.process(j.now_ns, j.dir, &mut j.frame, &mut j.extra);
            }
            return;
        };
        for round in jobs.chunks_mut(MAX_BATCH) {
            self.round(round, &mut sc);
        }
        self.scratch = Some(sc);
    }

    fn round(&mut self, jobs: &mut [Job<'_>], sc: &mut Scratch) {
        // 1. Dissect.
        for (k, j) in jobs.iter_mut().enumerate() {
            j.frame.len = j.frame.len.min(j.frame.buf.len());
            sc.dissected[k] = Dissected::EMPTY; // `dissect_into` fills in what the frame has
            sc.errors[k] = dissect_into(&j.frame.buf[..j.frame.len], &mut sc.dissected[k]).err();
        }
        // 2. Hash and prefetch the tag groups (and the policy's first lines).
        for (k, j) in jobs.iter().enumerate() {
            sc.probes[k] = None;
            if sc.errors[k].is_some() {
                continue;
            }
            let d = &sc.dissected[k];
            if !matches!(d.net, Net::Ipv4 | Net::Ipv6) {
                continue;
            }
            if j.dir == Direction::Inbound && self.judge_rules {
                self.pol.compiled.prefetch(d.v6, &d.src, &d.dst);
            }
            if d.proto == IPPROTO_TCP && d.frag == Frag::None {
                let key = tcp::flow_key(d, j.dir);
                let p = self.table.probe(&key);
                self.table.prefetch_tags(&p);
                sc.probes[k] = Some((key, p));
            }
        }
        // 3. Probe the tags, prefetch the entries; the cookie MACs of untracked ACKs.
        let mut n = 0;
        let mut now = self.now_ns;
        let mut has_memo = 0u64; // frames of the round with cookie MACs computed ahead
        for (k, j) in jobs.iter().enumerate() {
            now = now.max(j.now_ns);
            if j.dir == Direction::Inbound && self.judge_rules && sc.errors[k].is_none() {
                let d = &sc.dissected[k];
                self.pol.compiled.prefetch_next(d.v6, &d.src, &d.dst);
            }
            let Some((key, p)) = &mut sc.probes[k] else { continue };
            let maybe = self.table.prefetch_entries(p);
            let t = &sc.dissected[k].tcp;
            if self.http_svcs != 0 && maybe && t.payload_len > 0 && j.dir == Direction::Inbound {
                // Client data of a known flow: its HTTP state, if its service has checks.
                if let Some(h) = self.pol.http.as_deref() {
                    h.prefetch(h.tag_of(p.stored_key()));
                }
            }
            if maybe || j.dir != Direction::Inbound || t.flags & (tf::ACK | tf::SYN | tf::RST) != tf::ACK || !t.opts_ok
            {
                continue;
            }
            // As `try_cookie_ack` asks: ISN = seq - 1, and for a bare ACK also ISN = seq.
            let tsecr = t.opts.timestamp.map(|ts| ts.1);
            let cookie = t.ack.wrapping_sub(1);
            for (try_, isn) in [t.seq.wrapping_sub(1), t.seq].into_iter().enumerate() {
                if try_ == 1 && t.payload_len > 0 {
                    break;
                }
                if let Some(r) = self.cookies.batch_request(now, key, isn, cookie, tsecr) {
                    if has_memo & (1 << k) == 0 {
                        has_memo |= 1 << k;
                        sc.memos[k] = MacMemo::EMPTY;
                    }
                    sc.reqs[n] = r;
                    sc.req_of[n] = (k as u8, try_ as u8);
                    n += 1;
                }
            }
        }
        if n > 0 {
            self.cookies.mac_many(&sc.reqs[..n], &mut sc.macs[..n]);
            for i in 0..n {
                let (k, t) = sc.req_of[i];
                sc.memos[usize::from(k)].set(usize::from(t), sc.reqs[i], sc.macs[i]);
            }
        }
        // 4. Judge, in order.
        for (k, j) in jobs.iter_mut().enumerate() {
            self.frame_probe = sc.probes[k];
            let memo = has_memo & (1 << k) != 0;
            if memo {
                self.cookies.set_memo(sc.memos[k]);
            }
            let d = match sc.errors[k] {
                None => Ok(&sc.dissected[k]),
                Some(e) => Err(e),
            };
            j.verdict = self.judge_dissected(j.now_ns, j.dir, d, &mut j.frame, &mut j.extra);
            if memo {
                self.cookies.set_memo(MacMemo::EMPTY);
            }
        }
        self.frame_probe = None;
    }

    /// The probe of `key`: the one stage 2 computed for the frame being judged, if it is that
    /// key's, else computed now. (An IPv4 key is compared in its stored form, built in
    /// registers; comparing the 38-byte `FlowKey`s, just written to the stack byte-wise, costs
    /// a store-forwarding stall.)
    #[inline]
    pub(crate) fn probe(&self, key: &FlowKey) -> Probe {
        if let Some((k, p)) = &self.frame_probe {
            if key.v6 {
                if k == key {
                    return *p;
                }
            } else if self.table.is_probe_of(p, key) {
                return *p;
            }
        }
        self.table.probe(key)
    }
}
