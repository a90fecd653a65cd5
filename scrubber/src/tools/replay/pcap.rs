//! Reading pcap and pcapng captures record by record, and writing pcap outputs that appear
//! under their names only when complete.

use super::summary::OutputSummary;
use super::{ReplayError, FRAME_BUF};
use pcap_file::pcap::{PcapHeader, PcapReader, PcapWriter, RawPcapPacket};
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::PcapNgReader;
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One packet record, its data copied into the caller's buffer (`min(caplen, buf.len())` bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    pub(crate) ts_ns: u64,
    pub(crate) caplen: usize,
    pub(crate) orig_len: u32,
}

pub(crate) enum ReadError {
    /// Stop reading; outputs so far are kept.
    Stop { offset: u64, detail: String },
    /// Fail the whole replay.
    Fatal(ReplayError),
}

pub(crate) enum Input {
    Pcap { r: PcapReader<File>, header: PcapHeader, offset: u64, path: PathBuf },
    PcapNg { r: PcapNgReader<File>, offset: u64, last_ts: u64, path: PathBuf, packets: u64 },
}

impl Input {
    pub(crate) fn open(path: &Path) -> Result<Input, ReplayError> {
        let open_err = |source| ReplayError::Open { path: path.to_path_buf(), source };
        // Look before opening: opening a FIFO would wait for a writer, and replay needs a file
        // it can seek in.
        let meta = std::fs::metadata(path).map_err(open_err)?;
        if !meta.is_file() {
            let what = if meta.is_dir() { "a directory" } else { "not a regular file (a FIFO, socket or device)" };
            return Err(open_err(std::io::Error::other(format!(
                "it is {what}: replay reads capture files; save the capture to a file first"
            ))));
        }
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
                Ok(Input::Pcap { r, header, offset: 24, path: path.to_path_buf() })
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

    pub(crate) fn format(&self) -> &'static str {
        match self {
            Input::Pcap { .. } => "pcap",
            Input::PcapNg { .. } => "pcapng",
        }
    }

    /// Resolution for the outputs: the input's for pcap, nanoseconds for pcapng.
    pub(crate) fn ts_resolution(&self) -> TsResolution {
        match self {
            Input::Pcap { header, .. } => header.ts_resolution,
            Input::PcapNg { .. } => TsResolution::NanoSecond,
        }
    }

    pub(crate) fn next(&mut self, buf: &mut [u8]) -> Result<Option<Record>, ReadError> {
        match self {
            Input::Pcap { r, header, offset, path } => {
                let raw = match r.next_raw_packet() {
                    None => return Ok(None),
                    Some(Ok(raw)) => raw,
                    Some(Err(e)) => {
                        let big = header.endianness == Endianness::Big;
                        let detail = diagnose(path, *offset, 8, big).unwrap_or_else(|| read_error_detail(e));
                        return Err(ReadError::Stop { offset: *offset, detail });
                    }
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
                    Some(Err(e)) => {
                        let big = endianness == Endianness::Big;
                        let detail = diagnose(path, *offset, 4, big).unwrap_or_else(|| read_error_detail(e));
                        return Err(ReadError::Stop { offset: *offset, detail });
                    }
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

/// Largest record the capture reader takes (its read buffer, 8,000,000 bytes).
pub(crate) const MAX_RECORD: u64 = 8_000_000;

/// Why the record at `offset` could not be read, from its length field (a u32 at `offset +
/// len_at`, pcap's `incl_len` or pcapng's block length): a record longer than the reader takes,
/// or one that runs past the end of the file. `None` when the length explains nothing.
fn diagnose(path: &Path, offset: u64, len_at: u64, big_endian: bool) -> Option<String> {
    let mut f = File::open(path).ok()?;
    let size = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(offset + len_at)).ok()?;
    let mut b = [0u8; 4];
    if f.read_exact(&mut b).is_err() {
        return Some("the file ends inside this record's header: the capture is truncated".to_string());
    }
    let len = u64::from(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) });
    let header = if len_at == 8 { 16 } else { 0 };
    let left = size.saturating_sub(offset + header);
    if len > MAX_RECORD {
        Some(format!(
            "this record says it holds {len} bytes, more than the {MAX_RECORD} a record may have here (a frame \
             is at most 65,535 bytes{}): its length field is corrupt, or the capture holds records \
             no Ethernet capture has",
            if len > left { format!("; and only {left} bytes follow in the file") } else { String::new() }
        ))
    } else if len > left {
        Some(format!(
            "this record says it holds {len} bytes but only {left} follow: the capture is truncated (or \
             the record's length field is corrupt)"
        ))
    } else {
        None
    }
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
pub(crate) struct Output {
    kind: &'static str,
    tmp: PathBuf,
    path: PathBuf,
    writer: Option<PcapWriter<BufWriter<File>>>,
    frames: u64,
    ts_resolution: TsResolution,
    published: bool,
}

impl Output {
    pub(crate) fn create(path: &Path, kind: &'static str, ts_resolution: TsResolution) -> Result<Output, ReplayError> {
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
        let mut out =
            Output { kind, tmp, path: path.to_path_buf(), writer: None, frames: 0, ts_resolution, published: false };
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

    pub(crate) fn write(&mut self, ts_ns: u64, data: &[u8], orig_len: usize) -> Result<(), ReplayError> {
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

    /// Flush and sync the temporary file (it stays under its temporary name).
    pub(crate) fn finish(&mut self) -> Result<(), ReplayError> {
        let err = |path: &Path, source| ReplayError::Output { path: path.to_path_buf(), source };
        if let Some(w) = self.writer.take() {
            let file = w.into_writer().into_inner().map_err(|e| err(&self.path, e.into_error()))?;
            file.sync_all().map_err(|e| err(&self.path, e))?;
        }
        Ok(())
    }
}

/// Move finished outputs to their final names, all or none: when one cannot be moved, those
/// already moved are removed again and every temporary file goes.
pub(crate) fn publish_all(mut outs: Vec<Output>) -> Result<Vec<OutputSummary>, ReplayError> {
    let mut done: Vec<OutputSummary> = Vec::with_capacity(outs.len());
    for o in outs.iter_mut() {
        if let Err(source) = std::fs::rename(&o.tmp, &o.path) {
            let e = ReplayError::Output { path: o.path.clone(), source };
            for d in &done {
                let _ = std::fs::remove_file(&d.path);
            }
            return Err(e); // `outs` drop: the remaining temporary files are removed
        }
        o.published = true;
        done.push(OutputSummary { kind: o.kind, path: o.path.display().to_string(), frames: o.frames });
    }
    Ok(done)
}

impl Drop for Output {
    fn drop(&mut self) {
        self.writer = None;
        if !self.published {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::FRAME_BUF;
    use super::*;

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
}
