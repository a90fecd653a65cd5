//! Live statistics of a running scrubber: what each worker publishes, the snapshot a reader
//! gets, and the unix-socket server that hands it out (read by `scrubber stats`).
//!
//! Each worker owns a [`Publisher`] ([`crate::dataplane::stats`]). About every 100 ms — never per packet — it copies its engine
//! counters, ring statistics and session count into the publisher's slot
//! ([`Publisher::update`]). The slot is a `Mutex` held only for that copy and for the copy a
//! reader takes, so a worker never waits longer than one copy of the stats, and never on a
//! reader's I/O.
//!
//! [`StatsServer::start`] serves a unix stream socket (default [`DEFAULT_SOCKET`]) from its own
//! thread: every connection receives the current [`Snapshot`] as one JSON object followed by a
//! newline, then the server closes it. [`fetch`] is the client side.
//!
//! Format stability: the JSON carries [`Snapshot::version`] ([`SNAPSHOT_VERSION`]); a reader
//! refuses other versions with an error that says so. Drop reasons are keyed by their stable
//! names ([`crate::DropReason::as_str`]); names a reader does not know are ignored. The per-flag
//! TCP counters ([`Counters::tcp_flags_inbound`]) are not part of the snapshot.

use super::links::LinkStats;
use super::reload::ReloadStats;
use crate::dataplane::stats::{Publisher, RingStats, WorkerStats};
use crate::engine::counters::{Counters, Group};
use crate::engine::policy::limiter::LimiterStats;
use crate::engine::session::TableStats;
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where `scrubber run` listens and `scrubber stats` connects unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/scrubber/scrubber.sock";

/// Version of the [`Snapshot`] JSON layout. Bumped on any incompatible change.
pub const SNAPSHOT_VERSION: u32 = 2;

/// How long the server waits for a slow reader before giving up on that connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`fetch`] waits for the server's answer.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest snapshot [`fetch`] accepts (a guard against reading from something that is not a
/// scrubber and never closes).
const MAX_SNAPSHOT_BYTES: u64 = 64 << 20;

/// The sum over all workers (see [`Snapshot::total`]).
#[derive(Clone, Debug)]
pub struct Totals {
    /// Number of workers summed.
    pub workers: usize,
    /// Engine counters summed with [`Counters::merge`].
    pub counters: Counters,
    /// Session tables summed.
    pub table: TableStats,
    /// Limiters summed.
    pub limiter: LimiterStats,
    /// Rings and hand-offs summed.
    pub rings: RingStats,
    /// HTTP connection-state tables summed.
    pub http: crate::engine::http::HttpTableStats,
    /// Session streaming summed.
    pub sync: crate::engine::sync::SyncStats,
}

impl Totals {
    /// One worker's numbers as a block of totals.
    pub fn of(w: &WorkerStats) -> Totals {
        Totals {
            workers: 1,
            counters: w.counters.clone(),
            table: w.table,
            limiter: w.limiter,
            rings: w.rings,
            http: w.http,
            sync: w.sync,
        }
    }
}

/// What a reader of the stats socket receives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// Layout version, [`SNAPSHOT_VERSION`].
    pub version: u32,
    /// Process id of the scrubber.
    pub pid: u32,
    /// When the scrubber started, in seconds since the Unix epoch.
    pub started_unix: u64,
    /// Seconds since the scrubber started (monotonic clock, millisecond precision), taken when
    /// the snapshot was made. Readers divide counter differences by differences of this.
    pub uptime_secs: f64,
    /// The policy in force: a description and its generation (set with
    /// [`StatsServer::set_policy`] on start and on every reload).
    pub policy: String,
    /// Reloads of the rule file (all zero with `--protect`).
    pub reload: ReloadStats,
    /// Link events of ext and int (see `control::links`).
    #[serde(default)]
    pub links: LinkStats,
    /// Attack events and their delivery (see `control::events`).
    #[serde(default)]
    pub events: super::events::EventStats,
    /// Targets under attack now.
    #[serde(default)]
    pub under_attack: Vec<String>,
    /// Sampled frames written (`--sample-dir`).
    #[serde(default)]
    pub samples: super::samples::SampleStats,
    /// The ban table (see `scrubber ban`).
    #[serde(default)]
    pub bans: crate::engine::ban::BanStats,
    /// The live bans expiring first (at most [`BANNED_LISTED`]; `scrubber ban list` has all).
    #[serde(default)]
    pub banned: Vec<super::bans::Listed>,
    /// Session streaming to the fleet's other boxes (`--sync-peer`).
    #[serde(default)]
    pub sync: super::sync::SyncNetStats,
    /// One entry per worker, in worker order.
    pub workers: Vec<WorkerStats>,
}

impl Snapshot {
    /// Sum of all workers: counters merged (per-target and per-rule entries by position),
    /// tables, limiters and rings added.
    pub fn total(&self) -> Totals {
        let mut t = match self.workers.first() {
            Some(w) => Totals { counters: w.counters.clone(), ..Totals::of(w) },
            None => Totals {
                workers: 0,
                counters: Counters::new(&[]),
                table: TableStats::default(),
                limiter: LimiterStats::default(),
                rings: RingStats::default(),
                http: Default::default(),
                sync: Default::default(),
            },
        };
        for w in self.workers.iter().skip(1) {
            t.workers += 1;
            t.counters.merge(&w.counters);
            t.table.merge(&w.table);
            t.limiter.merge(&w.limiter);
            t.rings.merge(&w.rings);
            t.http.merge(&w.http);
            t.sync.merge(&w.sync);
        }
        t
    }
}

/// Errors of the stats socket, server and client side. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A live server already answers on the socket path.
    #[error("another scrubber instance is running (socket {}); stop it or pass --socket", .path.display())]
    AlreadyRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// Something that is not a socket occupies the path.
    #[error("{} exists and is not a socket; remove it or pass --socket with another path", .path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// The socket's directory could not be created.
    #[error("cannot create the directory {} for the stats socket: {source} (run as root, or pass --socket with a path in a writable directory)", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A stale socket file could not be removed.
    #[error("cannot remove the stale stats socket {}: {source} (remove it by hand, or pass --socket)", .path.display())]
    RemoveStale {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Binding or setting up the listening socket failed.
    #[error("cannot listen on the stats socket {}: {source} (check the directory's permissions, or pass --socket)", .path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The server thread could not be started.
    #[error("cannot start the stats server thread: {0} (the system is out of threads or memory)")]
    Spawn(#[source] io::Error),
    /// No server listens on the path (client side).
    #[error("no scrubber running at {} (start one with `scrubber run`, or pass --socket)", .path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// Connecting failed for another reason than "nobody listens" (client side).
    #[error("cannot connect to {}: {source} (run as root or as a member of the socket's group, or pass --socket)", .path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Reading the snapshot failed (client side).
    #[error("cannot read the statistics from {}: {source} (is the scrubber stuck? try again)", .path.display())]
    Read {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The answer is not a snapshot (client side).
    #[error("the answer from {} is not a scrubber statistics snapshot: {detail} (is another program listening there?)", .path.display())]
    Decode {
        /// The socket path.
        path: PathBuf,
        /// What did not parse.
        detail: String,
    },
    /// The server speaks another snapshot version (client side).
    #[error("the scrubber at {} sends statistics version {got}, this binary reads version {want}: use the `scrubber` binary of the running version", .path.display())]
    Version {
        /// The socket path.
        path: PathBuf,
        /// Version received.
        got: u64,
        /// Version understood.
        want: u32,
    },
}

/// What the server knows besides the workers' stats.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// Initial policy description (see [`Snapshot::policy`]).
    pub policy: String,
    /// When the scrubber started (wall clock).
    pub started: SystemTime,
    /// When the scrubber started (monotonic clock; uptime is measured from it).
    pub started_mono: Instant,
}

impl ServerInfo {
    /// Info for a scrubber that starts now with policy `policy`.
    pub fn new(policy: impl Into<String>) -> Self {
        ServerInfo { policy: policy.into(), started: SystemTime::now(), started_mono: Instant::now() }
    }
}

#[derive(Debug)]
struct Shared {
    publishers: Vec<Publisher>,
    policy: Mutex<Extra>,
    started_unix: u64,
    started_mono: Instant,
    pid: u32,
}

/// What the control loop sets beside the workers' statistics.
#[derive(Clone, Debug, Default)]
struct Extra {
    policy: String,
    reload: ReloadStats,
    links: LinkStats,
    events: super::events::EventStats,
    under_attack: Vec<String>,
    samples: super::samples::SampleStats,
    bans: crate::engine::ban::BanStats,
    banned: Vec<super::bans::Listed>,
    sync: super::sync::SyncNetStats,
}

/// Bans listed in a snapshot.
pub const BANNED_LISTED: usize = 20;

impl Shared {
    fn policy(&self) -> Extra {
        self.policy.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn snapshot(&self) -> Snapshot {
        let uptime = self.started_mono.elapsed();
        Snapshot {
            version: SNAPSHOT_VERSION,
            pid: self.pid,
            started_unix: self.started_unix,
            uptime_secs: (uptime.as_millis() as f64) / 1000.0,
            policy: self.policy().policy,
            reload: self.policy().reload,
            links: self.policy().links,
            events: self.policy().events,
            under_attack: self.policy().under_attack,
            samples: self.policy().samples,
            bans: self.policy().bans,
            banned: self.policy().banned,
            sync: self.policy().sync,
            workers: self.publishers.iter().map(Publisher::read).collect(),
        }
    }
}

/// The stats socket server. Stops its thread and removes the socket file when dropped.
#[derive(Debug)]
pub struct StatsServer {
    path: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// (device, inode) of the socket file we created, so that drop removes only our own file.
    id: (u64, u64),
}

impl StatsServer {
    /// Listen on `path` and serve snapshots of `publishers` from a new thread.
    ///
    /// Creates the parent directory (mode 0755) if needed. If `path` exists: a live server there
    /// is an error ([`TelemetryError::AlreadyRunning`]); a stale socket file (nobody listening)
    /// is removed; anything else is an error. The socket gets mode 0660.
    pub fn start(path: &Path, publishers: Vec<Publisher>, info: ServerInfo) -> Result<StatsServer, TelemetryError> {
        let path = path.to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(|source| TelemetryError::CreateDir { path: dir.to_path_buf(), source })?;
            }
        }
        clear_stale(&path)?;
        let listener =
            UnixListener::bind(&path).map_err(|source| TelemetryError::Bind { path: path.clone(), source })?;
        let meta = std::fs::metadata(&path).map_err(|source| TelemetryError::Bind { path: path.clone(), source })?;
        let id = (meta.dev(), meta.ino());
        let cleanup = |e: TelemetryError| {
            let _ = std::fs::remove_file(&path);
            e
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
            .map_err(|source| cleanup(TelemetryError::Bind { path: path.clone(), source }))?;

        let shared = Arc::new(Shared {
            publishers,
            policy: Mutex::new(Extra { policy: info.policy, ..Extra::default() }),
            started_unix: info.started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            started_mono: info.started_mono,
            pid: std::process::id(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("stats-server".into())
                .spawn(move || serve(listener, &shared, &stop))
                .map_err(|e| cleanup(TelemetryError::Spawn(e)))?
        };
        Ok(StatsServer { path, shared, stop, thread: Some(thread), id })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replace the policy description (call after a reload, e.g. `"web.rules generation 4"`).
    pub fn set_policy(&self, policy: impl Into<String>) {
        self.shared.policy.lock().unwrap_or_else(|e| e.into_inner()).policy = policy.into();
    }

    /// Replace the event counters and the targets under attack.
    pub fn set_events(&self, events: super::events::EventStats, under_attack: Vec<String>) {
        let mut g = self.shared.policy.lock().unwrap_or_else(|e| e.into_inner());
        g.events = events;
        g.under_attack = under_attack;
    }

    /// Replace the sampling counters.
    pub fn set_samples(&self, samples: super::samples::SampleStats) {
        self.shared.policy.lock().unwrap_or_else(|e| e.into_inner()).samples = samples;
    }

    /// Replace the ban counters and the first bans listed.
    pub fn set_bans(&self, bans: crate::engine::ban::BanStats, banned: Vec<super::bans::Listed>) {
        let mut g = self.shared.policy.lock().unwrap_or_else(|e| e.into_inner());
        g.bans = bans;
        g.banned = banned;
    }

    /// Replace the session-sync counters.
    pub fn set_sync(&self, sync: super::sync::SyncNetStats) {
        self.shared.policy.lock().unwrap_or_else(|e| e.into_inner()).sync = sync;
    }

    /// Replace the link counters.
    pub fn set_links(&self, links: LinkStats) {
        self.shared.policy.lock().unwrap_or_else(|e| e.into_inner()).links = links;
    }

    /// Replace the reload counters.
    pub fn set_reload(&self, reload: ReloadStats) {
        self.shared.policy.lock().unwrap_or_else(|e| e.into_inner()).reload = reload;
    }

    /// The snapshot a reader would get now.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }
}

impl Drop for StatsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept() with a connection of our own. If that fails (the file was removed
        // behind our back) the thread stays parked in accept(): leave it rather than hang.
        let woke = UnixStream::connect(&self.path).is_ok();
        if let Some(t) = self.thread.take() {
            if woke {
                let _ = t.join();
            }
        }
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// If `path` exists: error if a server answers there or if it is not a socket; remove it if
/// it is a socket nobody listens on.
fn clear_stale(path: &Path) -> Result<(), TelemetryError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(TelemetryError::Bind { path: path.to_path_buf(), source }),
    };
    if !meta.file_type().is_socket() {
        return Err(TelemetryError::NotASocket { path: path.to_path_buf() });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(TelemetryError::AlreadyRunning { path: path.to_path_buf() }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)
            .map_err(|source| TelemetryError::RemoveStale { path: path.to_path_buf(), source }),
        Err(source) => Err(TelemetryError::Connect { path: path.to_path_buf(), source }),
    }
}

fn serve(listener: UnixListener, shared: &Shared, stop: &AtomicBool) {
    let mut buf = Vec::with_capacity(4096);
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(mut s) => {
                buf.clear();
                if serde_json::to_writer(&mut buf, &shared.snapshot()).is_err() {
                    continue;
                }
                buf.push(b'\n');
                let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
                // A reader that went away is its own problem; the next one gets served.
                let _ = s.write_all(&buf);
            }
            // Out of file descriptors or similar: do not spin.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Connect to the server at `path` and read one snapshot.
pub fn fetch(path: &Path) -> Result<Snapshot, TelemetryError> {
    let mut s = UnixStream::connect(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => TelemetryError::NotRunning { path: path.into() },
        _ => TelemetryError::Connect { path: path.into(), source },
    })?;
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let mut data = Vec::new();
    (&mut s)
        .take(MAX_SNAPSHOT_BYTES)
        .read_to_end(&mut data)
        .map_err(|source| TelemetryError::Read { path: path.into(), source })?;
    decode(path, &data)
}

/// Parse a snapshot as sent by the server (`path` only names the source in errors).
pub fn decode(path: &Path, data: &[u8]) -> Result<Snapshot, TelemetryError> {
    let bad = |detail: String| TelemetryError::Decode { path: path.into(), detail };
    if data.is_empty() {
        return Err(bad("the connection closed without data".into()));
    }
    let v: serde_json::Value = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
    match v.get("version").and_then(serde_json::Value::as_u64) {
        Some(got) if got == u64::from(SNAPSHOT_VERSION) => {}
        Some(got) => return Err(TelemetryError::Version { path: path.into(), got, want: SNAPSHOT_VERSION }),
        None => return Err(bad("no \"version\" field".into())),
    }
    serde_json::from_value(v).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DropReason;

    fn tmp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("scrubber-tel-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn worker(i: usize, k: u64) -> WorkerStats {
        let mut w = WorkerStats::new(i, &["198.18.0.10:80".to_string(), "[2001:2::10]:443".to_string()]);
        w.core = Some(i);
        w.ext_mode = "copy".into();
        w.int_mode = "zero-copy".into();
        w.counters.rx_inbound = 100 * k;
        w.counters.forwarded_inbound = 60 * k;
        w.counters.drop(DropReason::AckNoSession);
        w.counters.dropped[DropReason::TcpXmas.index()] = k;
        w.counters.cookies_sent = 7 * k;
        w.counters.per_target[1].dropped = 3 * k;
        w.counters.tcp_flags_inbound[0x10] = 5;
        w.rings = RingStats {
            rx_ring_full: k,
            fill_ring_empty: 2 * k,
            polls: 1000 * k,
            handoffs_out: k,
            handoffs_in: 2 * k,
            ..Default::default()
        };
        w.table.live = 10 * k;
        w.limiter.sources_evicted = k;
        w
    }

    #[test]
    fn total_sums_workers() {
        let s = Snapshot {
            version: SNAPSHOT_VERSION,
            pid: 1,
            started_unix: 0,
            uptime_secs: 1.0,
            policy: String::new(),
            reload: ReloadStats::default(),
            links: LinkStats::default(),
            events: Default::default(),
            under_attack: Vec::new(),
            samples: Default::default(),
            bans: Default::default(),
            banned: Vec::new(),
            sync: Default::default(),
            workers: vec![worker(0, 1), worker(1, 3)],
        };
        let t = s.total();
        assert_eq!(t.workers, 2);
        assert_eq!(t.counters.rx_inbound, 400);
        assert_eq!(t.counters.forwarded_inbound, 240);
        assert_eq!(t.counters.dropped[DropReason::AckNoSession.index()], 2);
        assert_eq!(t.counters.dropped[DropReason::TcpXmas.index()], 4);
        assert_eq!(t.counters.per_target[1].dropped, 12);
        assert_eq!(t.counters.per_target[1].label, "[2001:2::10]:443");
        assert_eq!(t.rings.rx_ring_full, 4);
        assert_eq!(t.rings.fill_ring_empty, 8);
        assert_eq!(t.rings.polls, 4000);
        assert_eq!((t.table.live, t.rings.handoffs_out, t.rings.handoffs_in), (40, 4, 8));
        assert_eq!((t.limiter.sources_evicted, t.counters.dropped_total()), (4, 2));
        let empty = Snapshot { workers: vec![], ..s };
        assert_eq!(empty.total().counters.rx_inbound, 0);
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let s = Snapshot {
            version: SNAPSHOT_VERSION,
            pid: 42,
            started_unix: 1_700_000_000,
            uptime_secs: 12.5,
            policy: "web.rules generation 2".into(),
            reload: ReloadStats { reloads_ok: 3, reloads_failed: 1, generation: 9 },
            links: LinkStats::default(),
            events: Default::default(),
            under_attack: Vec::new(),
            samples: Default::default(),
            bans: Default::default(),
            banned: Vec::new(),
            sync: Default::default(),
            workers: vec![worker(0, 2)],
        };
        let json = serde_json::to_vec(&s).unwrap();
        let back = decode(Path::new("x"), &json).unwrap();
        assert_eq!(back.pid, 42);
        assert_eq!(back.policy, "web.rules generation 2");
        let (a, b) = (&s.workers[0], &back.workers[0]);
        assert_eq!(a.counters.dropped, b.counters.dropped);
        assert_eq!(a.counters.rx_inbound, b.counters.rx_inbound);
        assert_eq!(b.counters.per_target[1].dropped, 6);
        assert_eq!(a.rings, b.rings);
        assert_eq!(b.ext_mode, "copy");
        // Per-flag counters, tables, limiters and reloads travel too.
        assert_eq!(b.counters.tcp_flags_inbound[0x10], 5);
        assert_eq!((b.table, b.limiter), (a.table, a.limiter));
        assert_eq!(back.reload, s.reload);
        // Reasons are keyed by name.
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["workers"][0]["counters"]["dropped"]["tcp_xmas"], 2);
    }

    #[test]
    fn decode_rejects_other_versions_and_garbage() {
        let p = Path::new("/x.sock");
        assert!(matches!(decode(p, b""), Err(TelemetryError::Decode { .. })));
        assert!(matches!(decode(p, b"hello"), Err(TelemetryError::Decode { .. })));
        assert!(matches!(decode(p, b"{}"), Err(TelemetryError::Decode { .. })));
        let e = decode(p, br#"{"version": 99}"#).unwrap_err();
        assert!(matches!(e, TelemetryError::Version { got: 99, .. }), "{e}");
        assert!(e.to_string().contains("version 99"));
    }

    #[test]
    fn publisher_update_is_seen_by_server_snapshot() {
        let dir = tmp_dir("pub");
        let path = dir.join("s.sock");
        let p0 = Publisher::new(WorkerStats::new(0, &[]));
        let p1 = Publisher::new(WorkerStats::new(1, &[]));
        let srv = StatsServer::start(&path, vec![p0.clone(), p1.clone()], ServerInfo::new("policy A")).unwrap();
        p0.update(|s| s.counters.rx_inbound = 5);
        p1.publish(&worker(1, 1));
        srv.set_policy("policy B");
        let got = fetch(&path).unwrap();
        assert_eq!(got.workers.len(), 2);
        assert_eq!(got.workers[0].counters.rx_inbound, 5);
        assert_eq!(got.workers[1].counters.rx_inbound, 100);
        assert_eq!(got.policy, "policy B");
        assert_eq!(got.pid, std::process::id());
        assert_eq!(srv.snapshot().workers[1].table.live, 10);
        srv.set_reload(ReloadStats { reloads_failed: 2, ..Default::default() });
        assert_eq!(fetch(&path).unwrap().reload.reloads_failed, 2);
        drop(srv);
        assert!(!path.exists(), "socket file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
