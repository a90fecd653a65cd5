//! Running a capture through the engine: `scrubber replay`.
//!
//! [`replay`] reads a pcap or pcapng file of Ethernet frames, hands every frame to
//! [`Engine::process`] with the capture's own timestamp as the clock, and writes what the engine
//! decided into up to three pcap files:
//!
//! * **pass** — frames the engine sent on ([`Verdict::Forward`] and the main frame of
//!   [`Verdict::ForwardWithReply`]), *as rewritten* by the engine;
//! * **drop** — dropped frames exactly as they were received;
//! * **answers** — frames sent back out of the arrival interface ([`Verdict::Reply`] frames and
//!   the `extra` frame of [`Verdict::ForwardWithReply`]).
//!
//! # Direction
//!
//! A capture holds both directions mixed. Each frame's direction comes from
//! [`Engine::classify`]: destination protected → inbound, source protected → outbound. Frames
//! that are neither (traffic between unprotected hosts, ARP, other non-IP frames) are fed as
//! **inbound** — they are what arrives on the ext interface — and the engine passes them.
//!
//! # Truncated or corrupt input
//!
//! A bad file header, an unknown format or an unsupported link type is an error before anything
//! is written. A record that cannot be read *after* the header (the file ends inside a record, or
//! a length field is nonsense) stops the replay: the outputs are completed and moved into place —
//! they hold every frame processed before the bad record, and are valid captures — and
//! [`ReplayError::Stopped`] is returned with the packet index, byte offset and the partial
//! [`Summary`]. Any other failure (e.g. a full disk while writing) removes the outputs: they are
//! written to temporary files in the same directory and renamed only at the end, so a file that
//! exists under the requested name is always complete.
//!
//! # Frames the capture cut short
//!
//! Frames whose captured length is below their original length (a capture taken with a small
//! snap length) are still fed to the engine, which judges them as they are (usually malformed);
//! they are counted in [`Summary::snapped`]. Captured frames longer than 65,535 bytes (offload
//! super-frames recorded on a host) cannot be on the wire; they are skipped and counted in
//! [`Summary::oversize_skipped`].

mod pcap;
mod summary;

pub use crate::control::config::ReplayFiles;
use crate::engine::{Direction, Engine, Job, Verdict, MAX_BATCH};
use pcap::{Input, Output, ReadError, Record};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use summary::Progress;
pub use summary::{OutputSummary, ReasonCounts, Summary};

/// Largest frame fed to the engine.
pub const MAX_FRAME: usize = 65_535;
/// Size of each frame buffer: the largest frame plus room for the engine to grow it.
pub const FRAME_BUF: usize = MAX_FRAME + 256;

/// Why a replay failed. Each message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input could not be opened or read.
    #[error("cannot read capture {path}")]
    Open {
        /// The input file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The input is shorter than any capture header.
    #[error("{path}: only {len} bytes: too short to be a capture (the file is empty or truncated)")]
    TooShort {
        /// The input file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The input does not start with a pcap or pcapng magic number.
    #[error(
        "{path}: not a pcap or pcapng capture (starts with {magic}); give a file written by \
         tcpdump -w, dumpcap/Wireshark or scapy's wrpcap"
    )]
    NotACapture {
        /// The input file.
        path: PathBuf,
        /// The first four bytes, in hex.
        magic: String,
    },
    /// The capture's file header (pcap) or section header (pcapng) is unreadable.
    #[error("{path}: bad {format} file header: {detail}")]
    BadHeader {
        /// The input file.
        path: PathBuf,
        /// `pcap` or `pcapng`.
        format: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The capture is not of Ethernet frames.
    #[error(
        "{path}: link type {name} ({code}) is not supported: only Ethernet captures (link type 1, \
         EN10MB) can be replayed; capture on the Ethernet interface itself (`tcpdump -i eth0`, \
         not `-i any`, which records Linux cooked headers)"
    )]
    LinkType {
        /// The input file.
        path: PathBuf,
        /// The link type's name.
        name: String,
        /// The link type's number.
        code: u32,
    },
    /// Two of the files name the same path.
    #[error("{what} both name {path}: give each output its own file, and never the input")]
    SamePath {
        /// Which options collide, e.g. `--pass and --drop`.
        what: String,
        /// The path.
        path: PathBuf,
    },
    /// An output could not be created or written; no output was left behind.
    #[error("cannot write {path}")]
    Output {
        /// The output file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Stopped by a signal (SIGINT/SIGTERM) before the end; no output was left behind.
    #[error("interrupted after {packets} packets: no output was written")]
    Interrupted {
        /// Packets read before the stop.
        packets: u64,
    },
    /// A record after the header could not be read. The frames before it were processed and
    /// the outputs written; `summary` holds the counts so far (with [`Summary::stopped`] set).
    #[error(
        "{path}: stopped at packet {packet} (byte offset {offset}): {detail}; the {packet} packets \
         before it were processed and written to the outputs"
    )]
    Stopped {
        /// The input file.
        path: PathBuf,
        /// Index (0-based) of the record that could not be read = packets processed before it.
        packet: u64,
        /// Byte offset of the record in the file.
        offset: u64,
        /// What is wrong with it.
        detail: String,
        /// Counts for the frames processed before the stop.
        summary: Box<Summary>,
    },
}

/// Run the capture `opts.input` through `engine`, writing the requested outputs.
///
/// See the [module documentation](self) for what goes where and what happens on bad input.
pub fn replay(engine: &mut Engine, opts: &ReplayFiles) -> Result<Summary, ReplayError> {
    replay_until(engine, opts, &AtomicBool::new(false))
}

/// [`replay`] that gives up when `stop` becomes true (checked between batches; e.g. set by
/// SIGINT/SIGTERM): [`ReplayError::Interrupted`], and no output is left behind.
pub fn replay_until(engine: &mut Engine, opts: &ReplayFiles, stop_flag: &AtomicBool) -> Result<Summary, ReplayError> {
    check_paths(opts)?;
    let started = Instant::now();
    let mut input = Input::open(&opts.input)?;

    let res = input.ts_resolution();
    let mut pass = opts.pass.as_deref().map(|p| Output::create(p, "pass", res)).transpose()?;
    let mut drop = opts.drop.as_deref().map(|p| Output::create(p, "drop", res)).transpose()?;
    let mut answers = opts.answers.as_deref().map(|p| Output::create(p, "answers", res)).transpose()?;

    let mut s = Summary::new(opts.input.display().to_string(), input.format(), engine);

    // Records are read and judged in batches (the engine's batch path, as on the wire); the
    // outputs are written in capture order.
    let mut frames: Vec<Vec<u8>> = (0..MAX_BATCH).map(|_| vec![0u8; FRAME_BUF]).collect();
    let mut extras: Vec<Vec<u8>> = (0..MAX_BATCH).map(|_| vec![0u8; FRAME_BUF]).collect();
    let mut originals: Vec<Vec<u8>> =
        (0..if drop.is_some() { MAX_BATCH } else { 0 }).map(|_| vec![0u8; FRAME_BUF]).collect();
    let mut meta: Vec<(Record, Direction, usize)> = Vec::with_capacity(MAX_BATCH);
    let mut progress = Progress::new(&opts.input);
    let (mut first_ts, mut last_ts) = (None::<u64>, 0u64);
    let mut stop: Option<(u64, u64, String)> = None;

    // Attack detection on the capture's clock: a reading at every second boundary it crosses.
    let (th, per) = crate::engine::detect::thresholds_of(engine.policy());
    let mut detector = crate::engine::detect::Detector::new(th, per);
    let mut det_sec: Option<u64> = None;
    let mut eof = false;
    while !eof && stop.is_none() {
        if stop_flag.load(Ordering::Relaxed) {
            // The outputs' temporary files go with them (dropped here).
            return Err(ReplayError::Interrupted { packets: s.frames });
        }
        // Read a batch.
        meta.clear();
        while meta.len() < MAX_BATCH {
            let k = meta.len();
            let rec = match input.next(&mut frames[k]) {
                Ok(Some(rec)) => rec,
                Ok(None) => {
                    eof = true;
                    break;
                }
                Err(ReadError::Stop { offset, detail }) => {
                    stop = Some((s.frames, offset, detail));
                    break;
                }
                Err(ReadError::Fatal(e)) => return Err(e),
            };
            s.frames += 1;
            first_ts.get_or_insert(rec.ts_ns);
            last_ts = rec.ts_ns;
            if rec.caplen > MAX_FRAME {
                s.oversize_skipped += 1;
                continue;
            }
            let caplen = rec.caplen;
            let wire_extra = (rec.orig_len as usize).saturating_sub(caplen);
            if wire_extra > 0 {
                s.snapped += 1;
            }
            let dir = match engine.classify(&frames[k][..caplen]) {
                Some(d) => d,
                None => {
                    s.unclassified += 1;
                    Direction::Inbound
                }
            };
            match dir {
                Direction::Inbound => s.inbound += 1,
                Direction::Outbound => s.outbound += 1,
            }
            if let Some(o) = originals.get_mut(k) {
                o[..caplen].copy_from_slice(&frames[k][..caplen]);
            }
            meta.push((rec, dir, wire_extra));
        }
        if meta.is_empty() {
            continue;
        }
        // Judge it.
        let mut verdicts = [Verdict::Forward; MAX_BATCH];
        let mut lens = [(0usize, 0usize); MAX_BATCH];
        {
            let mut jobs: arrayvec::ArrayVec<Job<'_>, MAX_BATCH> = meta
                .iter()
                .zip(frames.iter_mut())
                .zip(extras.iter_mut())
                .map(|((m, f), x)| Job::new(m.0.ts_ns, m.1, f, m.0.caplen, x))
                .collect();
            engine.process_batch(&mut jobs);
            for (k, j) in jobs.iter().enumerate() {
                verdicts[k] = j.verdict;
                lens[k] = (j.frame.len.min(FRAME_BUF), j.extra.len.min(FRAME_BUF));
            }
        }
        // Write it.
        for (k, &(rec, dir, wire_extra)) in meta.iter().enumerate() {
            let (len, xlen) = lens[k];
            let (frame, extra) = (&frames[k], &extras[k]);
            let verdict = verdicts[k];
            match verdict {
                Verdict::Forward | Verdict::ForwardWithReply => {
                    s.forwarded += 1;
                    match dir {
                        Direction::Inbound => s.forwarded_inbound += 1,
                        Direction::Outbound => s.forwarded_outbound += 1,
                    }
                    if let Some(o) = pass.as_mut() {
                        o.write(rec.ts_ns, &frame[..len], len + wire_extra)?;
                    }
                    if verdict == Verdict::ForwardWithReply {
                        s.forward_with_reply_verdicts += 1;
                        s.replied += 1;
                        if let Some(o) = answers.as_mut() {
                            o.write(rec.ts_ns, &extra[..xlen], xlen)?;
                        }
                    }
                }
                Verdict::Reply | Verdict::ReplyTwice => {
                    s.reply_verdicts += 1;
                    s.replied += 1;
                    if let Some(o) = answers.as_mut() {
                        o.write(rec.ts_ns, &frame[..len], len)?;
                    }
                    if verdict == Verdict::ReplyTwice {
                        s.replied += 1;
                        if let Some(o) = answers.as_mut() {
                            o.write(rec.ts_ns, &extra[..xlen], xlen)?;
                        }
                    }
                }
                Verdict::Drop(reason) => {
                    s.dropped += 1;
                    s.dropped_by_reason.0[reason.index()] += 1;
                    if let (Some(o), Some(orig)) = (drop.as_mut(), originals.get(k)) {
                        o.write(rec.ts_ns, &orig[..rec.caplen], rec.orig_len as usize)?;
                    }
                }
                Verdict::Reset(reason) => {
                    // The segment is dropped; the RST to the other side is sent on, the one to
                    // the sender answered.
                    s.dropped += 1;
                    s.dropped_by_reason.0[reason.index()] += 1;
                    s.reset_verdicts += 1;
                    s.replied += 1;
                    if let (Some(o), Some(orig)) = (drop.as_mut(), originals.get(k)) {
                        o.write(rec.ts_ns, &orig[..rec.caplen], rec.orig_len as usize)?;
                    }
                    if let Some(o) = pass.as_mut() {
                        o.write(rec.ts_ns, &frame[..len], len)?;
                    }
                    if let Some(o) = answers.as_mut() {
                        o.write(rec.ts_ns, &extra[..xlen], xlen)?;
                    }
                }
            }
        }
        progress.tick(s.frames);
        let sec = last_ts / 1_000_000_000;
        if det_sec != Some(sec) {
            det_sec = Some(sec);
            let r = crate::engine::detect::readings(&[engine.counters()]);
            s.events.extend(detector.tick(sec * 1_000_000_000, &r));
        }
    }
    progress.finish();

    // All or nothing: every output is flushed and synced first, then all are moved into place
    // (a failure in between removes the ones already moved).
    let mut outs: Vec<Output> = [pass, drop, answers].into_iter().flatten().collect();
    for o in &mut outs {
        o.finish()?;
    }
    s.outputs = pcap::publish_all(outs)?;
    let elapsed = started.elapsed();
    s.elapsed_seconds = elapsed.as_secs_f64();
    s.frames_per_second = if elapsed > Duration::ZERO { s.frames as f64 / elapsed.as_secs_f64() } else { 0.0 };
    s.capture_seconds = first_ts.map_or(0.0, |f| last_ts.saturating_sub(f) as f64 / 1e9);
    s.take_counters(engine);

    match stop {
        None => Ok(s),
        Some((packet, offset, detail)) => {
            s.stopped = Some(format!("stopped at packet {packet} (byte offset {offset}): {detail}"));
            Err(ReplayError::Stopped { path: opts.input.clone(), packet, offset, detail, summary: Box::new(s) })
        }
    }
}

fn check_paths(opts: &ReplayFiles) -> Result<(), ReplayError> {
    let named: Vec<(&str, &Path)> = [
        ("the input", Some(opts.input.as_path())),
        ("--pass", opts.pass.as_deref()),
        ("--drop", opts.drop.as_deref()),
        ("--answers", opts.answers.as_deref()),
    ]
    .into_iter()
    .filter_map(|(n, p)| p.map(|p| (n, p)))
    .collect();
    for (n, p) in &named[1..] {
        if let Ok(m) = std::fs::metadata(p) {
            if !m.is_file() {
                return Err(ReplayError::Output {
                    path: p.to_path_buf(),
                    source: std::io::Error::other(format!(
                        "{n} names a directory or special file, not a capture file: give a file name"
                    )),
                });
            }
        }
    }
    for (i, (a, pa)) in named.iter().enumerate() {
        for (b, pb) in &named[i + 1..] {
            let same = pa == pb || matches!((normalize(pa), normalize(pb)), (Some(x), Some(y)) if x == y);
            if same {
                return Err(ReplayError::SamePath { what: format!("{a} and {b}"), path: pb.to_path_buf() });
            }
        }
    }
    Ok(())
}

/// The absolute form of a path whose directory exists (the file itself need not).
fn normalize(p: &Path) -> Option<PathBuf> {
    if let Ok(c) = p.canonicalize() {
        return Some(c);
    }
    let name = p.file_name()?;
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.canonicalize().ok()?,
        _ => std::env::current_dir().ok()?,
    };
    Some(parent.join(name))
}
