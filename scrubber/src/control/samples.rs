//! `scrubber run --sample-dir DIR`: the frames the workers sampled (`dataplane::sample`),
//! written by a thread of their own to rotating pcapng files with the `pcap-file` crate:
//! `DIR/scrubber-<start>-<n>.pcapng`, a new file every [`ROTATE_BYTES`] or [`ROTATE_SECS`],
//! the oldest removed while the directory's sample files exceed the cap. Each packet's comment
//! names the verdict (`drop: ack_no_session`, `pass`) and the side it arrived on; interface 0
//! is ext, 1 is int. `tcpdump -r` and Wireshark read them. A write error (a full disk) is
//! reported once and counted; samples are then discarded until writing works again.

use std::borrow::Cow;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam::queue::ArrayQueue;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

use crate::dataplane::sample::{Sample, SNAP};
use crate::engine::DropReason;

/// A new file after this many bytes.
pub const ROTATE_BYTES: u64 = 16 << 20;
/// A new file after this many seconds.
pub const ROTATE_SECS: u64 = 60;
/// Default cap of the directory's sample files.
pub const DEFAULT_CAP: u64 = 256 << 20;

crate::counters! {
    /// Sampled frames written by `--sample-dir`.
    pub struct SampleStats("samples") {
        /// Samples written to pcapng files.
        counter "samples" samples_written,
        /// Sample files started.
        counter "samples" sample_files,
        /// Old sample files removed to stay under the cap.
        counter "samples" sample_files_removed,
        /// Samples lost because writing failed (e.g. a full disk).
        counter "samples" sample_write_failures,
    }
}

/// Why the sample directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--sample-dir {path}: {source}")]
pub struct SampleDirError {
    /// The directory.
    pub path: PathBuf,
    /// The error.
    pub source: std::io::Error,
}

/// The writer thread.
#[derive(Debug)]
pub struct SampleWriter {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<SampleStats>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Current {
    w: PcapNgWriter<BufWriter<File>>,
    bytes: u64,
    opened: Instant,
}

fn open(dir: &Path, start: u64, n: u64) -> std::io::Result<Current> {
    let path = dir.join(format!("scrubber-{start}-{n:05}.pcapng"));
    let f = BufWriter::new(File::create(&path)?);
    let err = |e: pcap_file::PcapError| std::io::Error::other(e.to_string());
    let mut w = PcapNgWriter::new(f).map_err(err)?;
    for name in ["ext", "int"] {
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: SNAP as u32,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                InterfaceDescriptionOption::IfTsResol(9),
            ],
        };
        w.write_pcapng_block(idb).map_err(err)?;
    }
    Ok(Current { w, bytes: 0, opened: Instant::now() })
}

/// Remove the oldest `scrubber-*.pcapng` files of `dir` while they total more than `cap`.
fn enforce_cap(dir: &Path, cap: u64, stats: &Mutex<SampleStats>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(PathBuf, u64)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with("scrubber-")
                && e.file_name().to_string_lossy().ends_with(".pcapng")
        })
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
        .collect();
    files.sort(); // names sort by start time and number
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    for (p, len) in files {
        if total <= cap {
            break;
        }
        if std::fs::remove_file(&p).is_ok() {
            total -= len;
            stats.lock().unwrap_or_else(|e| e.into_inner()).sample_files_removed += 1;
        }
    }
}

/// A sample that could not be written: counted, and reported the first time.
fn lost(dir: &Path, e: &dyn std::fmt::Display, warned: &mut bool, stats: &Mutex<SampleStats>) {
    if !*warned {
        tracing::warn!("--sample-dir {}: {e}; samples are counted as lost until writing works", dir.display());
        *warned = true;
    }
    stats.lock().unwrap_or_else(|e| e.into_inner()).sample_write_failures += 1;
}

fn comment(s: &Sample) -> String {
    let side = if s.from_int { "int" } else { "ext" };
    match DropReason::ALL.get(usize::from(s.reason)) {
        Some(r) if s.reason != u8::MAX => format!("drop: {} (from {side})", r.as_str()),
        _ => format!("pass (from {side})"),
    }
}

impl SampleWriter {
    /// Check `dir` (created if missing) and start draining `queues` into it, keeping at most
    /// `cap` bytes of sample files.
    pub fn start(dir: &Path, cap: u64, queues: Arc<Vec<ArrayQueue<Sample>>>) -> Result<SampleWriter, SampleDirError> {
        let derr = |source| SampleDirError { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(derr)?;
        let probe = dir.join(".scrubber-write-test");
        File::create(&probe).map_err(derr)?;
        let _ = std::fs::remove_file(&probe);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(SampleStats::default()));
        let (s2, st2, dir) = (Arc::clone(&stop), Arc::clone(&stats), dir.to_path_buf());
        let start =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let thread = std::thread::Builder::new()
            .name("scrubber-samples".into())
            .spawn(move || {
                let mut cur: Option<Current> = None;
                let mut n = 0u64;
                let mut warned = false;
                loop {
                    let mut any = false;
                    for q in queues.iter() {
                        while let Some(s) = q.pop() {
                            any = true;
                            if cur.as_ref().is_some_and(|c| {
                                c.bytes >= ROTATE_BYTES || c.opened.elapsed() >= Duration::from_secs(ROTATE_SECS)
                            }) {
                                cur = None; // closes (flushes) the file
                                enforce_cap(&dir, cap, &st2);
                            }
                            if cur.is_none() {
                                match open(&dir, start, n) {
                                    Ok(c) => {
                                        n += 1;
                                        st2.lock().unwrap_or_else(|e| e.into_inner()).sample_files += 1;
                                        cur = Some(c);
                                    }
                                    Err(e) => {
                                        lost(&dir, &e, &mut warned, &st2);
                                        continue;
                                    }
                                }
                            }
                            let Some(c) = cur.as_mut() else { continue };
                            let epb = EnhancedPacketBlock {
                                interface_id: u32::from(s.from_int),
                                timestamp: Duration::from_nanos(s.ts_ns),
                                original_len: u32::from(s.len),
                                data: Cow::Borrowed(&s.data[..usize::from(s.caplen)]),
                                options: vec![EnhancedPacketOption::Comment(Cow::Owned(comment(&s)))],
                            };
                            match c.w.write_pcapng_block(epb) {
                                Ok(k) => {
                                    c.bytes += k as u64;
                                    st2.lock().unwrap_or_else(|e| e.into_inner()).samples_written += 1;
                                }
                                Err(e) => {
                                    lost(&dir, &e, &mut warned, &st2);
                                    cur = None;
                                }
                            }
                        }
                    }
                    if !any {
                        if s2.load(Ordering::Relaxed) {
                            break;
                        }
                        // Flush now and then so that readers see what was sampled.
                        if let Some(c) = cur.as_mut() {
                            let _ = std::io::Write::flush(c.w.get_mut());
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                drop(cur);
                enforce_cap(&dir, cap, &st2);
            })
            .map_err(derr)?;
        Ok(SampleWriter { stop, stats, thread: Some(thread) })
    }

    /// The counters.
    pub fn stats(&self) -> SampleStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for SampleWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Verdict;

    #[test]
    fn samples_become_readable_pcapng_under_a_cap() {
        let dir = std::env::temp_dir().join(format!("scrubber-samples-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let qs = Arc::new(vec![ArrayQueue::new(64)]);
        let frame = crate::wire::builder::TcpFrame::new(
            "198.19.1.1".parse().unwrap(),
            1,
            "198.18.0.10".parse().unwrap(),
            80,
            crate::wire::tcp::flags::ACK,
        )
        .build();
        let w = SampleWriter::start(&dir, DEFAULT_CAP, Arc::clone(&qs)).unwrap();
        for i in 0..10u64 {
            let v = if i % 2 == 0 { Verdict::Drop(DropReason::AckNoSession) } else { Verdict::Forward };
            assert!(crate::dataplane::sample::push(&qs[0], 1_767_225_600_000_000_000 + i, false, v, &frame));
        }
        std::thread::sleep(Duration::from_millis(200));
        drop(w);
        let files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1);
        let mut r = pcap_file::pcapng::PcapNgReader::new(File::open(&files[0]).unwrap()).unwrap();
        let mut n = 0;
        while let Some(b) = r.next_block() {
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = b.unwrap() {
                assert_eq!(p.data.len(), frame.len());
                n += 1;
            }
        }
        assert_eq!(n, 10);
        // The cap: a tiny one removes the older files.
        for i in 0..3 {
            std::fs::write(dir.join(format!("scrubber-0-{i:05}.pcapng")), vec![0u8; 1000]).unwrap();
        }
        let st = Mutex::new(SampleStats::default());
        enforce_cap(&dir, 1500, &st);
        assert!(st.lock().unwrap().sample_files_removed >= 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
