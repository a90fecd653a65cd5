//! `scrubber run --state FILE`: the session tables saved on a planned stop and restored on the
//! next start, so that tracked and proxied connections (sequence offsets, timestamps, window
//! scales, states) continue across a restart.
//!
//! # File format (version 1, little-endian)
//!
//! ```text
//! magic      8 bytes  "SCRBSTAT"
//! version    u32      1
//! saved_ms   u64      wall-clock milliseconds at the save
//! services   u32      count, then per service: u16 length + UTF-8 name (index = position)
//! workers    u32      count, then per worker:
//!              check  u64  the table's seed check (IPv6 keys are valid only where it matches)
//!              n      u64  entries, then n × (16-byte key + 32-byte session record)
//! checksum   u64      xxh3-64 of every byte before it
//! ```
//!
//! The file is written to `FILE.tmp`, synced, renamed over `FILE` and the directory synced: a
//! crash while saving leaves the previous file or the new one, never half of one. A file that
//! is not a snapshot, has another version, is truncated or fails its checksum is refused with a
//! message, and the start continues with empty tables. A loaded file is removed once the
//! sessions are in the tables, so that a later crash does not restore them a second time.
//!
//! Sessions go back to the worker that owns their flow: with the same number of workers and
//! the same cookie secret, each to the worker it came from; otherwise IPv4 sessions are re-homed
//! by the flow-owner hash and IPv6 sessions (whose keys are seeded fingerprints) cannot be
//! restored, which the report says.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use crate::dataplane::handoff::owner_of;
use crate::engine::session::{stored_key_v4, Session};
use crate::engine::snapshot::NotRestored;
use crate::engine::Engine;
use crate::wire::IPPROTO_TCP;

const MAGIC: &[u8; 8] = b"SCRBSTAT";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
const ENTRY: usize = 16 + Session::BYTES;

/// Why a state file could not be written or read. Each message says what happens next.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not a scrubber state file.
    #[error(
        "state file {path} is not a scrubber state file (no SCRBSTAT header): not loaded, starting with empty session tables; remove it or give --state another path"
    )]
    NotAState {
        /// The file.
        path: PathBuf,
    },
    /// Written by a build with another format.
    #[error(
        "state file {path} has format version {found}, this build reads version {VERSION}: not loaded, starting with empty session tables"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// Truncated or damaged.
    #[error("state file {path} is damaged ({detail}): not loaded, starting with empty session tables")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// One worker's saved table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedTable {
    /// [`Engine::table_check`] of the engine that saved it.
    pub check: u64,
    /// Stored keys and session records.
    pub entries: Vec<(u128, Session)>,
}

/// The content of a state file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    /// Wall-clock milliseconds at the save.
    pub saved_ms: u64,
    /// Service names by index.
    pub services: Vec<String>,
    /// One table per worker.
    pub tables: Vec<SavedTable>,
}

impl Saved {
    /// The sessions of `engines` (one per worker).
    pub fn of(engines: &[&Engine], now_ms: u64) -> Saved {
        let services = engines.first().map(|e| e.service_names()).unwrap_or_default();
        let tables = engines
            .iter()
            .map(|e| {
                let mut entries = Vec::with_capacity(e.session_count());
                e.for_each_session(|k, s| entries.push((k, *s)));
                SavedTable { check: e.table_check(), entries }
            })
            .collect();
        Saved { saved_ms: now_ms, services, tables }
    }

    /// Sessions saved, over all workers.
    pub fn sessions(&self) -> usize {
        self.tables.iter().map(|t| t.entries.len()).sum()
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let n = self.sessions();
        let mut b = Vec::with_capacity(64 + n * ENTRY + self.services.iter().map(|s| s.len() + 2).sum::<usize>());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&self.saved_ms.to_le_bytes());
        b.extend_from_slice(&(self.services.len() as u32).to_le_bytes());
        for s in &self.services {
            let name = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
            b.extend_from_slice(&(name.len() as u16).to_le_bytes());
            b.extend_from_slice(name);
        }
        b.extend_from_slice(&(self.tables.len() as u32).to_le_bytes());
        for t in &self.tables {
            b.extend_from_slice(&t.check.to_le_bytes());
            b.extend_from_slice(&(t.entries.len() as u64).to_le_bytes());
            for (k, s) in &t.entries {
                b.extend_from_slice(&k.to_le_bytes());
                b.extend_from_slice(&s.to_bytes());
            }
        }
        let sum = xxh3_64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    /// Parse a file's bytes (`path` for messages).
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Saved, StateError> {
        let corrupt = |detail: &str| StateError::Corrupt { path: path.to_owned(), detail: detail.to_owned() };
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(StateError::NotAState { path: path.to_owned() });
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != VERSION {
            return Err(StateError::Version { path: path.to_owned(), found: version });
        }
        if bytes.len() < 12 + 8 + 8 {
            return Err(corrupt("truncated"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let mut s8 = [0u8; 8];
        s8.copy_from_slice(sum);
        if xxh3_64(body) != u64::from_le_bytes(s8) {
            return Err(corrupt("checksum mismatch: truncated or modified"));
        }
        let mut r = Reader { b: body, at: 12 };
        let short = || corrupt("shorter than its counts say");
        let saved_ms = r.u64().ok_or_else(short)?;
        let nsvc = r.u32().ok_or_else(short)? as usize;
        let mut services = Vec::with_capacity(nsvc.min(1024));
        for _ in 0..nsvc {
            let len = usize::from(r.u16().ok_or_else(short)?);
            let name = r.take(len).ok_or_else(short)?;
            services.push(String::from_utf8(name.to_vec()).map_err(|_| corrupt("a service name is not UTF-8"))?);
        }
        let nw = r.u32().ok_or_else(short)? as usize;
        if nw > 4096 {
            return Err(corrupt("more than 4096 workers"));
        }
        let mut tables = Vec::with_capacity(nw);
        for _ in 0..nw {
            let check = r.u64().ok_or_else(short)?;
            let n = r.u64().ok_or_else(short)?;
            let n = usize::try_from(n).ok().filter(|n| n.saturating_mul(ENTRY) <= r.left()).ok_or_else(short)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let e = r.take(ENTRY).ok_or_else(short)?;
                let mut k = [0u8; 16];
                k.copy_from_slice(&e[..16]);
                let mut s = [0u8; Session::BYTES];
                s.copy_from_slice(&e[16..]);
                let s = Session::from_bytes(&s).ok_or_else(|| corrupt("a session has an unknown state"))?;
                entries.push((u128::from_le_bytes(k), s));
            }
            tables.push(SavedTable { check, entries });
        }
        if r.left() != 0 {
            return Err(corrupt("bytes after the last table"));
        }
        Ok(Saved { saved_ms, services, tables })
    }

    /// Write atomically to `path` (mode 0600: the file holds sequence offsets).
    pub fn write(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io { path: path.to_owned(), source };
        let tmp = tmp_path(path);
        let res = (|| {
            let mut f = {
                let mut o = OpenOptions::new();
                o.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
                o.open(&tmp)?
            };
            f.write_all(&self.encode())?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(io)
    }

    /// Read `path`: `Ok(None)` when it does not exist (a first start).
    pub fn read(path: &Path) -> Result<Option<Saved>, StateError> {
        let io = |source| StateError::Io { path: path.to_owned(), source };
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        if !meta.is_file() {
            return Err(io(std::io::Error::other("not a regular file")));
        }
        let mut b = Vec::new();
        File::open(path).and_then(|mut f| f.read_to_end(&mut b)).map_err(io)?;
        Saved::decode(&b, path).map(Some)
    }

    /// Put the sessions into `engines` (one per worker) at wall-clock time `now_ns`.
    pub fn restore(&self, engines: &mut [Engine], now_ns: u64) -> RestoreReport {
        let mut rep = RestoreReport { saved: self.sessions(), ..Default::default() };
        if engines.is_empty() {
            return rep;
        }
        let names = engines[0].service_names();
        let map: Vec<Option<u8>> = self
            .services
            .iter()
            .map(|s| names.iter().position(|n| n == s).and_then(|i| u8::try_from(i).ok()))
            .collect();
        let n = engines.len();
        let same_home =
            self.tables.len() == n && self.tables.iter().zip(engines.iter()).all(|(t, e)| t.check == e.table_check());
        for (w, t) in self.tables.iter().enumerate() {
            for &(key, mut s) in &t.entries {
                let Some(svc) = map.get(usize::from(s.svc & 0x7f)).copied().flatten() else {
                    rep.no_service += 1;
                    continue;
                };
                s.svc = (s.svc & 0x80) | svc;
                let home = if same_home {
                    w
                } else if let Some((c, sv, cp, sp)) = stored_key_v4(key) {
                    let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
                    a[..4].copy_from_slice(&c);
                    b[..4].copy_from_slice(&sv);
                    rep.rehomed += 1;
                    owner_of((&a, cp), (&b, sp), IPPROTO_TCP, n)
                } else {
                    rep.v6_skipped += 1;
                    continue;
                };
                match engines[home].restore_session(key, s, now_ns) {
                    Ok(()) => rep.restored += 1,
                    Err(NotRestored::Expired) => rep.expired += 1,
                    Err(NotRestored::NoService) => rep.no_service += 1,
                    Err(NotRestored::Full) => rep.full += 1,
                }
            }
        }
        rep
    }
}

/// What [`Saved::restore`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Sessions in the file.
    pub saved: usize,
    /// Put back into a table.
    pub restored: usize,
    /// Idled out while the box was down.
    pub expired: usize,
    /// Their service is not in the running policy.
    pub no_service: usize,
    /// No room in the table.
    pub full: usize,
    /// IPv4 sessions moved to another worker (worker count or cookie secret changed).
    pub rehomed: usize,
    /// IPv6 sessions that could not be restored (worker count or cookie secret changed).
    pub v6_skipped: usize,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} saved session(s) restored ({} idled out, {} of services no longer in the policy, {} found no room",
            self.restored, self.saved, self.expired, self.no_service, self.full
        )?;
        if self.rehomed > 0 || self.v6_skipped > 0 {
            write!(
                f,
                "; the worker count or cookie secret changed: {} IPv4 session(s) moved to their new worker, {} IPv6 session(s) dropped",
                self.rehomed, self.v6_skipped
            )?;
        }
        write!(f, ")")
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Some(u64::from_le_bytes(a))
    }
}
