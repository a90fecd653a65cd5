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

use crate::counters::Counters;
use crate::engine::{Engine, FrameBuf};
use crate::verdict::{Direction, DropReason, Verdict};
use pcap_file::pcap::{PcapHeader, PcapReader, PcapWriter, RawPcapPacket};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::PcapNgReader;
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use serde::Serialize;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest frame fed to the engine.
pub const MAX_FRAME: usize = 65_535;
/// Size of each frame buffer: the largest frame plus room for the engine to grow it.
pub const FRAME_BUF: usize = MAX_FRAME + 256;

/// The files `scrubber replay` reads and writes. Outputs left `None` are not written.
#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    /// Capture to read (pcap or pcapng, Ethernet).
    pub input: PathBuf,
    /// Where to write the frames the engine forwarded (as rewritten).
    pub pass: Option<PathBuf>,
    /// Where to write the dropped frames (as received).
    pub drop: Option<PathBuf>,
    /// Where to write the frames the engine sent back out of the arrival interface.
    pub answers: Option<PathBuf>,
}

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

/// Frames dropped per [`DropReason`]; serialised as a map from reason name to count, every
/// reason present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonCounts(pub [u64; DropReason::COUNT]);

impl Default for ReasonCounts {
    fn default() -> Self {
        ReasonCounts([0; DropReason::COUNT])
    }
}

impl ReasonCounts {
    /// Count for one reason.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r.index()]
    }

    /// Nonzero reasons, largest first (ties in counter order).
    pub fn nonzero_by_count(&self) -> Vec<(DropReason, u64)> {
        let mut v: Vec<(DropReason, u64)> =
            DropReason::ALL.iter().map(|&r| (r, self.get(r))).filter(|&(_, n)| n > 0).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.index().cmp(&b.0.index())));
        v
    }
}

impl Serialize for ReasonCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(DropReason::COUNT))?;
        for r in DropReason::ALL {
            m.serialize_entry(r.as_str(), &self.0[r.index()])?;
        }
        m.end()
    }
}

/// One output file and how many frames went into it.
#[derive(Clone, Debug, Serialize)]
pub struct OutputSummary {
    /// `pass`, `drop` or `answers`.
    pub kind: &'static str,
    /// The file.
    pub path: String,
    /// Frames written.
    pub frames: u64,
}

/// What a replay did. `Serialize` gives the `--json` form; [`Summary::render_text`] the form
/// for people.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The input file.
    pub file: String,
    /// `pcap` or `pcapng`.
    pub format: &'static str,
    /// Frames (packet records) read from the capture.
    pub frames: u64,
    /// Frames fed to the engine as inbound (including `unclassified`).
    pub inbound: u64,
    /// Frames fed to the engine as outbound.
    pub outbound: u64,
    /// Frames whose source and destination are both unprotected, or that are not IP; fed as
    /// inbound.
    pub unclassified: u64,
    /// Frames sent on: [`Verdict::Forward`] plus [`Verdict::ForwardWithReply`].
    pub forwarded: u64,
    /// Of `forwarded`, frames that were inbound (ext → int).
    pub forwarded_inbound: u64,
    /// Of `forwarded`, frames that were outbound (int → ext).
    pub forwarded_outbound: u64,
    /// Frames sent back out of the arrival interface: [`Verdict::Reply`] frames plus the extra
    /// frames of [`Verdict::ForwardWithReply`].
    pub replied: u64,
    /// Verdicts that were [`Verdict::Reply`].
    pub reply_verdicts: u64,
    /// Verdicts that were [`Verdict::ForwardWithReply`].
    pub forward_with_reply_verdicts: u64,
    /// Frames dropped, all reasons.
    pub dropped: u64,
    /// Frames dropped, per reason (every reason, zeros included).
    pub dropped_by_reason: ReasonCounts,
    /// Frames whose captured length was below their length on the wire (fed anyway).
    pub snapped: u64,
    /// Frames longer than 65,535 bytes, skipped.
    pub oversize_skipped: u64,
    /// Sessions live in the engine's table at the end.
    pub sessions_live: usize,
    /// Time between the first and the last frame's timestamps, in seconds.
    pub capture_seconds: f64,
    /// Wall-clock time the replay took, in seconds.
    pub elapsed_seconds: f64,
    /// Frames judged per second of wall-clock time.
    pub frames_per_second: f64,
    /// Files written.
    pub outputs: Vec<OutputSummary>,
    /// Why the replay stopped before the end of the file, when it did.
    pub stopped: Option<String>,
    /// The engine's counters.
    pub counters: Counters,
}

/// Run the capture `opts.input` through `engine`, writing the requested outputs.
///
/// See the [module documentation](self) for what goes where and what happens on bad input.
pub fn replay(engine: &mut Engine, opts: &ReplayOptions) -> Result<Summary, ReplayError> {
    check_paths(opts)?;
    let started = Instant::now();
    let mut input = Input::open(&opts.input)?;

    let res = input.ts_resolution();
    let mut pass = opts.pass.as_deref().map(|p| Output::create(p, "pass", res)).transpose()?;
    let mut drop = opts.drop.as_deref().map(|p| Output::create(p, "drop", res)).transpose()?;
    let mut answers = opts.answers.as_deref().map(|p| Output::create(p, "answers", res)).transpose()?;

    let mut s = Summary {
        file: opts.input.display().to_string(),
        format: input.format(),
        frames: 0,
        inbound: 0,
        outbound: 0,
        unclassified: 0,
        forwarded: 0,
        forwarded_inbound: 0,
        forwarded_outbound: 0,
        replied: 0,
        reply_verdicts: 0,
        forward_with_reply_verdicts: 0,
        dropped: 0,
        dropped_by_reason: ReasonCounts::default(),
        snapped: 0,
        oversize_skipped: 0,
        sessions_live: 0,
        capture_seconds: 0.0,
        elapsed_seconds: 0.0,
        frames_per_second: 0.0,
        outputs: Vec::new(),
        stopped: None,
        counters: engine.counters().clone(),
    };

    let mut frame = vec![0u8; FRAME_BUF];
    let mut extra = vec![0u8; FRAME_BUF];
    let mut original = if drop.is_some() { vec![0u8; FRAME_BUF] } else { Vec::new() };
    let mut progress = Progress::new(&opts.input);
    let (mut first_ts, mut last_ts) = (None::<u64>, 0u64);
    let mut stop: Option<(u64, u64, String)> = None;

    loop {
        let rec = match input.next(&mut frame) {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
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

        let dir = match engine.classify(&frame[..caplen]) {
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
        if drop.is_some() {
            original[..caplen].copy_from_slice(&frame[..caplen]);
        }

        let mut fb = FrameBuf { buf: &mut frame, len: caplen };
        let mut xb = FrameBuf { buf: &mut extra, len: 0 };
        let verdict = engine.process(rec.ts_ns, dir, &mut fb, &mut xb);
        let len = fb.len.min(FRAME_BUF);
        let xlen = xb.len.min(FRAME_BUF);

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
            Verdict::Reply => {
                s.reply_verdicts += 1;
                s.replied += 1;
                if let Some(o) = answers.as_mut() {
                    o.write(rec.ts_ns, &frame[..len], len)?;
                }
            }
            Verdict::Drop(reason) => {
                s.dropped += 1;
                s.dropped_by_reason.0[reason.index()] += 1;
                if let Some(o) = drop.as_mut() {
                    o.write(rec.ts_ns, &original[..caplen], rec.orig_len as usize)?;
                }
            }
        }
        progress.tick(s.frames);
    }
    progress.finish();

    for o in [pass, drop, answers].into_iter().flatten() {
        s.outputs.push(o.commit()?);
    }
    let elapsed = started.elapsed();
    s.elapsed_seconds = elapsed.as_secs_f64();
    s.frames_per_second = if elapsed > Duration::ZERO { s.frames as f64 / elapsed.as_secs_f64() } else { 0.0 };
    s.capture_seconds = first_ts.map_or(0.0, |f| last_ts.saturating_sub(f) as f64 / 1e9);
    s.sessions_live = engine.sessions();
    s.counters = engine.counters().clone();

    match stop {
        None => Ok(s),
        Some((packet, offset, detail)) => {
            s.stopped = Some(format!("stopped at packet {packet} (byte offset {offset}): {detail}"));
            Err(ReplayError::Stopped { path: opts.input.clone(), packet, offset, detail, summary: Box::new(s) })
        }
    }
}

fn check_paths(opts: &ReplayOptions) -> Result<(), ReplayError> {
    let named: Vec<(&str, &Path)> = [
        ("the input", Some(opts.input.as_path())),
        ("--pass", opts.pass.as_deref()),
        ("--drop", opts.drop.as_deref()),
        ("--answers", opts.answers.as_deref()),
    ]
    .into_iter()
    .filter_map(|(n, p)| p.map(|p| (n, p)))
    .collect();
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

// ---------------------------------------------------------------------------------------------
// Input

/// One packet record, its data copied into the caller's buffer (`min(caplen, buf.len())` bytes).
struct Record {
    ts_ns: u64,
    caplen: usize,
    orig_len: u32,
}

enum ReadError {
    /// Stop reading; outputs so far are kept.
    Stop { offset: u64, detail: String },
    /// Fail the whole replay.
    Fatal(ReplayError),
}

enum Input {
    Pcap { r: PcapReader<File>, header: PcapHeader, offset: u64 },
    PcapNg { r: PcapNgReader<File>, offset: u64, last_ts: u64, path: PathBuf, packets: u64 },
}

impl Input {
    fn open(path: &Path) -> Result<Input, ReplayError> {
        let open_err = |source| ReplayError::Open { path: path.to_path_buf(), source };
        let mut f = File::open(path).map_err(open_err)?;
        let len = f.metadata().map_err(open_err)?.len();
        if f.metadata().map_err(open_err)?.is_dir() {
            return Err(open_err(std::io::Error::other("it is a directory")));
        }
        let mut magic = [0u8; 4];
        if len < 4 {
            return Err(ReplayError::TooShort { path: path.to_path_buf(), len });
        }
        f.read_exact(&mut magic).map_err(open_err)?;
        f.seek(SeekFrom::Start(0)).map_err(open_err)?;
        let bad_header = |format, e: PcapError| ReplayError::BadHeader {
            path: path.to_path_buf(),
            format,
            detail: match e {
                PcapError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                    "the file ends inside the header (truncated)".to_string()
                }
                other => other.to_string(),
            },
        };
        match magic {
            [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1] => {
                let r = PcapReader::new(f).map_err(|e| bad_header("pcap", e))?;
                let header = r.header();
                if header.datalink != DataLink::ETHERNET {
                    return Err(link_type_error(path, header.datalink));
                }
                Ok(Input::Pcap { r, header, offset: 24 })
            }
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                // Length of the first section header block, for byte offsets in messages.
                let mut head = [0u8; 12];
                f.read_exact(&mut head).map_err(|_| ReplayError::BadHeader {
                    path: path.to_path_buf(),
                    format: "pcapng",
                    detail: "the file ends inside the section header (truncated)".to_string(),
                })?;
                f.seek(SeekFrom::Start(0)).map_err(open_err)?;
                let len4: [u8; 4] = [head[4], head[5], head[6], head[7]];
                let shb_len = if head[8..12] == [0x1a, 0x2b, 0x3c, 0x4d] {
                    u32::from_be_bytes(len4)
                } else {
                    u32::from_le_bytes(len4)
                };
                let shb_len = u64::from(shb_len);
                let r = PcapNgReader::new(f).map_err(|e| bad_header("pcapng", e))?;
                Ok(Input::PcapNg { r, offset: shb_len, last_ts: 0, path: path.to_path_buf(), packets: 0 })
            }
            m => Err(ReplayError::NotACapture {
                path: path.to_path_buf(),
                magic: format!("{:02x}{:02x}{:02x}{:02x}", m[0], m[1], m[2], m[3]),
            }),
        }
    }

    fn format(&self) -> &'static str {
        match self {
            Input::Pcap { .. } => "pcap",
            Input::PcapNg { .. } => "pcapng",
        }
    }

    /// Resolution for the outputs: the input's for pcap, nanoseconds for pcapng.
    fn ts_resolution(&self) -> TsResolution {
        match self {
            Input::Pcap { header, .. } => header.ts_resolution,
            Input::PcapNg { .. } => TsResolution::NanoSecond,
        }
    }

    fn next(&mut self, buf: &mut [u8]) -> Result<Option<Record>, ReadError> {
        match self {
            Input::Pcap { r, header, offset } => {
                let raw = match r.next_raw_packet() {
                    None => return Ok(None),
                    Some(Ok(raw)) => raw,
                    Some(Err(e)) => return Err(ReadError::Stop { offset: *offset, detail: read_error_detail(e) }),
                };
                *offset += 16 + raw.data.len() as u64;
                let frac_ns = match header.ts_resolution {
                    TsResolution::MicroSecond => u64::from(raw.ts_frac) * 1_000,
                    TsResolution::NanoSecond => u64::from(raw.ts_frac),
                };
                let ts_ns = u64::from(raw.ts_sec) * 1_000_000_000 + frac_ns;
                Ok(Some(copy_record(buf, ts_ns, &raw.data, raw.orig_len)))
            }
            Input::PcapNg { r, offset, last_ts, path, packets } => loop {
                let endianness = r.section().endianness;
                let raw = match r.next_raw_block() {
                    None => return Ok(None),
                    Some(Ok(raw)) => raw,
                    Some(Err(e)) => return Err(ReadError::Stop { offset: *offset, detail: read_error_detail(e) }),
                };
                let block_offset = *offset;
                *offset += u64::from(raw.initial_len);
                if !matches!(raw.type_, 2 | 3 | 6) {
                    continue; // not a packet block (section, interface, statistics, names, ...)
                }
                let (iface, units, data_rec) = match packet_block(raw.type_, &raw.body, endianness, buf) {
                    Ok(p) => p,
                    Err(detail) => return Err(ReadError::Stop { offset: block_offset, detail }),
                };
                let Some(idb) = r.interfaces().get(iface as usize) else {
                    return Err(ReadError::Stop {
                        offset: block_offset,
                        detail: format!(
                            "the packet names interface {iface}, which no interface description block \
                             declared (the file is corrupt)"
                        ),
                    });
                };
                if idb.linktype != DataLink::ETHERNET {
                    let e = link_type_error(path, idb.linktype);
                    return Err(if *packets == 0 {
                        ReadError::Fatal(e)
                    } else {
                        ReadError::Stop { offset: block_offset, detail: e.to_string() }
                    });
                }
                let ts_ns = match units {
                    Some(u) => {
                        let (per_sec, off) = ts_params(&idb.options);
                        let ns = u128::from(u) * 1_000_000_000 / u128::from(per_sec);
                        u64::try_from(ns).unwrap_or(u64::MAX).saturating_add(off.saturating_mul(1_000_000_000))
                    }
                    None => *last_ts, // simple packet blocks carry no timestamp
                };
                *last_ts = ts_ns;
                *packets += 1;
                return Ok(Some(Record { ts_ns, ..data_rec }));
            },
        }
    }
}

/// Units per second and offset in seconds of a pcapng interface's timestamps.
fn ts_params(opts: &[InterfaceDescriptionOption<'_>]) -> (u64, u64) {
    let mut per_sec = 1_000_000u64;
    let mut off = 0u64;
    for o in opts {
        match *o {
            InterfaceDescriptionOption::IfTsResol(r) => {
                let exp = u32::from(r & 0x7f);
                per_sec = if r & 0x80 != 0 { 2u64.checked_pow(exp) } else { 10u64.checked_pow(exp) }
                    .unwrap_or(1_000_000_000)
                    .max(1);
            }
            InterfaceDescriptionOption::IfTsOffset(o) => off = o,
            _ => {}
        }
    }
    (per_sec, off)
}

fn copy_record(buf: &mut [u8], ts_ns: u64, data: &[u8], orig_len: u32) -> Record {
    let n = data.len().min(buf.len());
    buf[..n].copy_from_slice(&data[..n]);
    Record { ts_ns, caplen: data.len(), orig_len }
}

fn read_error_detail(e: PcapError) -> String {
    match e {
        PcapError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the file ends inside this record: the capture is truncated (or the record's length \
             field is corrupt)"
                .to_string()
        }
        PcapError::IoError(io) => format!("read error: {io}"),
        other => format!("the record is corrupt ({other})"),
    }
}

fn link_type_error(path: &Path, dl: DataLink) -> ReplayError {
    ReplayError::LinkType { path: path.to_path_buf(), name: format!("{dl:?}"), code: u32::from(dl) }
}

/// Decode a packet block body (enhanced 6, obsolete packet 2, simple 3): interface, timestamp
/// units (none for simple blocks), and the record with its data copied into `buf`.
fn packet_block(kind: u32, body: &[u8], e: Endianness, buf: &mut [u8]) -> Result<(u32, Option<u64>, Record), String> {
    let u32_at = |i: usize| -> Option<u32> {
        let b: [u8; 4] = body.get(i..i + 4)?.try_into().ok()?;
        Some(match e {
            Endianness::Big => u32::from_be_bytes(b),
            Endianness::Little => u32::from_le_bytes(b),
        })
    };
    let u16_at = |i: usize| -> Option<u16> {
        let b: [u8; 2] = body.get(i..i + 2)?.try_into().ok()?;
        Some(match e {
            Endianness::Big => u16::from_be_bytes(b),
            Endianness::Little => u16::from_le_bytes(b),
        })
    };
    let corrupt = |what: &str| format!("the record is corrupt ({what}); the file is damaged");
    match kind {
        6 | 2 => {
            let name = if kind == 6 { "enhanced packet block" } else { "packet block" };
            let short = || corrupt(&format!("{name} shorter than its fixed fields"));
            let iface = if kind == 6 { u32_at(0).ok_or_else(short)? } else { u32::from(u16_at(0).ok_or_else(short)?) };
            let hi = u64::from(u32_at(4).ok_or_else(short)?);
            let lo = u64::from(u32_at(8).ok_or_else(short)?);
            let caplen = u32_at(12).ok_or_else(short)? as usize;
            let orig_len = u32_at(16).ok_or_else(short)?;
            let data = body
                .get(20..)
                .and_then(|d| d.get(..caplen))
                .ok_or_else(|| corrupt(&format!("{name}: captured length {caplen} runs past the block")))?;
            Ok((iface, Some((hi << 32) | lo), copy_record(buf, 0, data, orig_len)))
        }
        _ => {
            let orig_len = u32_at(0).ok_or_else(|| corrupt("simple packet block shorter than 4 bytes"))?;
            // The body holds padding too; the packet is at most orig_len long.
            let rest = &body[4..];
            let data = &rest[..(orig_len as usize).min(rest.len())];
            Ok((0, None, copy_record(buf, 0, data, orig_len)))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output

/// A pcap being written to a temporary file beside its final name; removed unless committed.
struct Output {
    kind: &'static str,
    tmp: PathBuf,
    path: PathBuf,
    writer: Option<PcapWriter<BufWriter<File>>>,
    frames: u64,
    ts_resolution: TsResolution,
}

impl Output {
    fn create(path: &Path, kind: &'static str, ts_resolution: TsResolution) -> Result<Output, ReplayError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.is_empty() {
            return Err(ReplayError::Output {
                path: path.to_path_buf(),
                source: std::io::Error::other("not a file name"),
            });
        }
        let tmp = path.with_file_name(format!(".{name}.partial-{}", std::process::id()));
        let err = |source| ReplayError::Output { path: path.to_path_buf(), source };
        let file = File::create(&tmp).map_err(err)?;
        let mut out = Output { kind, tmp, path: path.to_path_buf(), writer: None, frames: 0, ts_resolution };
        let header = PcapHeader {
            snaplen: FRAME_BUF as u32,
            datalink: DataLink::ETHERNET,
            ts_resolution,
            endianness: Endianness::native(),
            ..PcapHeader::default()
        };
        out.writer =
            Some(PcapWriter::with_header(BufWriter::with_capacity(1 << 20, file), header).map_err(|e| out.err(e))?);
        Ok(out)
    }

    fn err(&self, e: PcapError) -> ReplayError {
        let source = match e {
            PcapError::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        };
        ReplayError::Output { path: self.path.clone(), source }
    }

    fn write(&mut self, ts_ns: u64, data: &[u8], orig_len: usize) -> Result<(), ReplayError> {
        let secs = ts_ns / 1_000_000_000;
        let frac = (ts_ns % 1_000_000_000) as u32;
        let raw = RawPcapPacket {
            ts_sec: u32::try_from(secs).unwrap_or(u32::MAX),
            ts_frac: match self.ts_resolution {
                TsResolution::MicroSecond => frac / 1_000,
                TsResolution::NanoSecond => frac,
            },
            incl_len: data.len() as u32,
            orig_len: u32::try_from(orig_len.max(data.len())).unwrap_or(u32::MAX),
            data: Cow::Borrowed(data),
        };
        let res = match self.writer.as_mut() {
            Some(w) => w.write_raw_packet(&raw).map(|_| ()),
            None => Ok(()),
        };
        res.map_err(|e| self.err(e))?;
        self.frames += 1;
        Ok(())
    }

    /// Flush, sync and move the file to its final name.
    fn commit(mut self) -> Result<OutputSummary, ReplayError> {
        let err = |path: &Path, source| ReplayError::Output { path: path.to_path_buf(), source };
        if let Some(w) = self.writer.take() {
            let file = w.into_writer().into_inner().map_err(|e| err(&self.path, e.into_error()))?;
            file.sync_all().map_err(|e| err(&self.path, e))?;
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| err(&self.path, e))?;
        Ok(OutputSummary { kind: self.kind, path: self.path.display().to_string(), frames: self.frames })
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.writer = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Progress

/// A progress line on stderr, about once a second, for large inputs when stderr is a terminal.
struct Progress {
    on: bool,
    start: Instant,
    last: Instant,
    printed: bool,
}

impl Progress {
    const LARGE: u64 = 64 << 20;

    fn new(input: &Path) -> Progress {
        let large = std::fs::metadata(input).map(|m| m.len() >= Self::LARGE).unwrap_or(false);
        let now = Instant::now();
        Progress { on: large && std::io::stderr().is_terminal(), start: now, last: now, printed: false }
    }

    #[inline]
    fn tick(&mut self, frames: u64) {
        if !self.on || frames % 8192 != 0 {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.last) >= Duration::from_secs(1) {
            self.last = now;
            let rate = frames as f64 / now.duration_since(self.start).as_secs_f64();
            eprint!("\r{} frames, {} frames/s   ", group(frames), group(rate as u64));
            self.printed = true;
        }
    }

    fn finish(&mut self) {
        if self.printed {
            eprint!("\r{:60}\r", "");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Text rendering

/// `1234567` → `1,234,567` (also used by `scrubber stats`).
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / of as f64)
    }
}

impl Summary {
    /// The summary for people: verdicts, drop reasons by count with their meaning, cookies,
    /// sessions and per-target counters.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let c = &self.counters;
        let _ = writeln!(
            o,
            "{} ({}): {} frames, {:.3} s of traffic; {} inbound, {} outbound ({} neither protected nor IP, fed as inbound)",
            self.file,
            self.format,
            group(self.frames),
            self.capture_seconds,
            group(self.inbound),
            group(self.outbound),
            group(self.unclassified),
        );
        if let Some(stop) = &self.stopped {
            let _ = writeln!(o, "INCOMPLETE: {stop}");
        }
        let judged = self.forwarded + self.reply_verdicts + self.dropped;
        let _ = writeln!(o);
        let _ = writeln!(o, "  {:<24} {:>12} {:>7}", "verdict", "frames", "share");
        let rows = [
            ("forwarded", self.forwarded),
            ("  inbound (ext -> int)", self.forwarded_inbound),
            ("  outbound (int -> ext)", self.forwarded_outbound),
            ("replied (answers sent)", self.replied),
            ("dropped", self.dropped),
        ];
        for (name, n) in rows {
            let _ = writeln!(o, "  {:<24} {:>12} {:>7}", name, group(n), pct(n, judged));
        }
        if self.forward_with_reply_verdicts > 0 {
            let _ = writeln!(
                o,
                "  ({} forwarded frames also sent an answer back)",
                group(self.forward_with_reply_verdicts)
            );
        }

        let reasons = self.dropped_by_reason.nonzero_by_count();
        if !reasons.is_empty() {
            let w = reasons.iter().map(|(r, _)| r.as_str().len()).max().unwrap_or(0).max(17);
            let _ = writeln!(o);
            let _ = writeln!(o, "  {:<w$} {:>12}  meaning", "dropped by reason", "frames");
            for (r, n) in reasons {
                let _ = writeln!(o, "  {:<w$} {:>12}  {}", r.as_str(), group(n), r.describe());
            }
        }

        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "  cookies   sent {}, validated {}, failed {}",
            group(c.cookies_sent),
            group(c.cookies_validated),
            group(c.cookies_failed)
        );
        let _ = writeln!(
            o,
            "  sessions  live {}; created: tracked {}, proxied {}, from inside {}; closed {}, port reuse {}",
            group(self.sessions_live as u64),
            group(c.sessions_tracked),
            group(c.sessions_proxied),
            group(c.sessions_outbound),
            group(c.sessions_closed),
            group(c.sessions_reused)
        );
        let _ = writeln!(
            o,
            "  passed    ARP/ND {}, non-TCP {}, unprotected {}, other ethertype {}, fragments {}; VLAN-tagged {}",
            group(c.passed_arp_nd),
            group(c.passed_non_tcp),
            group(c.passed_unprotected),
            group(c.passed_other_ethertype),
            group(c.passed_fragments),
            group(c.vlan_tagged)
        );

        if !c.per_target.is_empty() {
            let w = c.per_target.iter().map(|t| t.target.len()).max().unwrap_or(0).max(6);
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "  {:<w$} {:>12} {:>12} {:>12} {:>12}",
                "target", "inbound", "forwarded", "answered", "dropped"
            );
            for t in &c.per_target {
                let _ = writeln!(
                    o,
                    "  {:<w$} {:>12} {:>12} {:>12} {:>12}",
                    t.target,
                    group(t.rx),
                    group(t.forwarded),
                    group(t.replied),
                    group(t.dropped)
                );
            }
        }

        let _ = writeln!(o);
        if self.snapped > 0 {
            let _ = writeln!(
                o,
                "  {} frames were cut short by the capture's snap length (judged as captured)",
                group(self.snapped)
            );
        }
        if self.oversize_skipped > 0 {
            let _ = writeln!(
                o,
                "  {} frames over 65,535 bytes skipped (offload super-frames, not wire frames)",
                group(self.oversize_skipped)
            );
        }
        for out in &self.outputs {
            let _ = writeln!(o, "  wrote {:<8} {} frames to {}", out.kind, group(out.frames), out.path);
        }
        let _ = writeln!(
            o,
            "  {} frames in {:.3} s ({} frames/s)",
            group(self.frames),
            self.elapsed_seconds,
            group(self.frames_per_second as u64)
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn tsresol_decoding() {
        assert_eq!(ts_params(&[]), (1_000_000, 0));
        assert_eq!(ts_params(&[InterfaceDescriptionOption::IfTsResol(9)]), (1_000_000_000, 0));
        assert_eq!(ts_params(&[InterfaceDescriptionOption::IfTsResol(0x80 | 10)]), (1024, 0));
        assert_eq!(ts_params(&[InterfaceDescriptionOption::IfTsOffset(5)]), (1_000_000, 5));
        // Absurd resolutions do not panic.
        let _ = ts_params(&[InterfaceDescriptionOption::IfTsResol(0x7f)]);
        let _ = ts_params(&[InterfaceDescriptionOption::IfTsResol(0xff)]);
    }

    /// Read every record of `bytes` (written to a temp file) until the end or a stop.
    fn read_all(name: &str, bytes: &[u8]) -> (usize, bool) {
        let path = std::env::temp_dir().join(format!("scrubber-replay-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let mut buf = vec![0u8; FRAME_BUF];
        let res = match Input::open(&path) {
            Err(_) => (0, true),
            Ok(mut input) => {
                let mut n = 0;
                loop {
                    match input.next(&mut buf) {
                        Ok(Some(_)) => n += 1,
                        Ok(None) => break (n, false),
                        Err(_) => break (n, true),
                    }
                }
            }
        };
        let _ = std::fs::remove_file(&path);
        res
    }

    const PCAP_HEADER: [u8; 24] =
        [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0];

    #[test]
    fn pcap_records_and_truncation() {
        let mut f = PCAP_HEADER.to_vec();
        for i in 0..3u8 {
            f.extend_from_slice(&[i, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 60, 0, 0, 0]);
            f.extend_from_slice(&[i; 20]);
        }
        assert_eq!(read_all("ok", &f), (3, false));
        assert_eq!(read_all("cut", &f[..f.len() - 5]), (2, true));
    }

    #[test]
    fn packet_blocks_are_bounds_checked() {
        let mut buf = vec![0u8; 64];
        // Captured length beyond the block.
        let mut epb = vec![0u8; 20];
        epb[12..16].copy_from_slice(&1000u32.to_le_bytes());
        assert!(packet_block(6, &epb, Endianness::Little, &mut buf).is_err());
        assert!(packet_block(6, &epb[..10], Endianness::Little, &mut buf).is_err());
        assert!(packet_block(3, &[1, 2], Endianness::Big, &mut buf).is_err());
        // A simple packet block whose body includes padding.
        let (_, ts, rec) = packet_block(3, &[0, 0, 0, 2, 7, 7, 0, 0], Endianness::Big, &mut buf).unwrap();
        assert_eq!((ts, rec.caplen, &buf[..2]), (None, 2, &[7u8, 7][..]));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]
        #[test]
        fn garbage_after_a_pcap_header_never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut f = PCAP_HEADER.to_vec();
            f.extend_from_slice(&tail);
            let _ = read_all("fuzz-pcap", &f);
        }

        #[test]
        fn garbage_pcapng_never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            // Section header (little endian) + interface (Ethernet) + arbitrary bytes.
            let mut f = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0];
            f.extend_from_slice(&[0xff; 8]);
            f.extend_from_slice(&[28, 0, 0, 0]);
            f.extend_from_slice(&[1, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0, 0, 20, 0, 0, 0]);
            f.extend_from_slice(&tail);
            let _ = read_all("fuzz-pcapng", &f);
        }

        #[test]
        fn packet_block_never_panics(kind in 0u32..8, body in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let mut buf = vec![0u8; 64];
            let _ = packet_block(kind, &body, Endianness::Little, &mut buf);
        }
    }

    #[test]
    fn reasons_sorted_by_count() {
        let mut r = ReasonCounts::default();
        r.0[DropReason::TcpNull.index()] = 3;
        r.0[DropReason::AckNoSession.index()] = 10;
        r.0[DropReason::TcpXmas.index()] = 3;
        let v = r.nonzero_by_count();
        assert_eq!(v, vec![(DropReason::AckNoSession, 10), (DropReason::TcpNull, 3), (DropReason::TcpXmas, 3)]);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["ack_no_session"], 10);
        assert_eq!(j["rst_no_session"], 0);
    }
}
