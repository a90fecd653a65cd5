//! `scrubber run` from a resolved [`RunConfig`]: preflight, engines, XDP programs, workers,
//! the stats server, then the control loop until a stop signal, then drain and detach.
//!
//! The control loop is a step function ([`ControlLoop::step`]): given what happened since the
//! last step (a stop or reload signal, a dead worker, the time), it decides what to do and
//! says so as [`Event`]s. It needs no root and no interfaces, so it is tested on its own.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scrubber_xsk::XdpProgram;

use super::config::{PolicySource, RunConfig};
use super::events::EventSink;
use super::handover;
use super::knobs::{KnobConfig, KnobError, Knobs};
use super::links::{LinkEvent, LinkWatch};
use super::metrics::MetricsServer;
use super::preflight::{self, PreflightConfig, PreflightErrors};
use super::reload::Reloader;
use super::signals::{SignalError, Signals};
use super::state::Saved;
use super::telemetry::{ServerInfo, Snapshot, StatsServer, TelemetryError};
use crate::dataplane::inbox::{policy_channels, PolicyInbox};
use crate::dataplane::stats::{Publisher, WorkerStats};
use crate::dataplane::{self, Poll, Shared, WorkerEnd, WorkerSetup};

/// `gro_flush_timeout` for `--poll busy`: how long the kernel waits for a worker to poll
/// before it processes the queue itself (and wakes the worker).
const BUSY_GRO_FLUSH_NS: u64 = 200_000;
use crate::engine::{detect, Engine, EngineError};

/// How often the control loop wakes up.
pub const STEP: Duration = Duration::from_millis(100);
/// How often attack detection reads the workers' counters (two readings over a threshold start
/// an attack: one second of flood).
pub const DETECT_EVERY: Duration = Duration::from_millis(500);
/// How often the rule file and its lists are checked for changes.
pub const FILE_CHECK: Duration = Duration::from_secs(1);
/// Entries of the ban table (fixed memory: 48 bytes each, shared by the workers).
pub const BAN_SLOTS: usize = 65_536;

/// Why `scrubber run` could not start or ended badly. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Preflight found problems (all listed, each with its fix).
    #[error("cannot start:\n{0}")]
    Preflight(PreflightErrors),
    /// More workers than queues.
    #[error(
        "{workers} worker(s) on cores {cores} but {ext} has {queues} queue(s): give at most {queues} core(s) with --cores, or add queues (`ethtool -L {ext} combined N`)"
    )]
    Queues {
        /// Workers asked for.
        workers: usize,
        /// The `--cores` list.
        cores: String,
        /// The ext interface.
        ext: String,
        /// Its queue count.
        queues: u32,
    },
    /// An engine could not be built.
    #[error("cannot build the engine: {0}")]
    Engine(#[from] EngineError),
    /// AF_XDP or BPF set-up failed.
    #[error(transparent)]
    Xsk(#[from] scrubber_xsk::XskError),
    /// The stats socket could not be served.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// Signal handlers could not be installed.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// The NAPI knobs could not be applied.
    #[error(transparent)]
    Knobs(#[from] KnobError),
    /// A worker could not start.
    #[error("{0}")]
    WorkerStart(String),
    /// The sample directory cannot be used.
    #[error(transparent)]
    Samples(#[from] super::samples::SampleDirError),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] super::metrics::MetricsError),
    /// The events file could not be opened.
    #[error(transparent)]
    Events(#[from] super::events::EventsError),
    /// `--take-over` failed.
    #[error(transparent)]
    Handover(#[from] super::handover::HandoverError),
    /// `--on-exit` could not be put in place.
    #[error(transparent)]
    FailOpen(#[from] super::failopen::FailOpenError),
    /// A worker thread could not be created.
    #[error("cannot start a worker thread: {0}")]
    Thread(std::io::Error),
    /// The session-sync socket could not be opened.
    #[error("--sync-listen {addr}: {source} (give an address of this box's management interface and a free UDP port)")]
    Sync {
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The frame accounting check failed at exit (a bug).
    #[error("frame accounting: {0}")]
    Accounting(String),
}

/// What happened since the last step.
#[derive(Clone, Copy, Debug)]
pub struct Tick {
    /// The time now.
    pub now: Instant,
    /// SIGINT or SIGTERM was received.
    pub stop: bool,
    /// SIGHUP was received (taken: it will not be reported again).
    pub hup: bool,
    /// A worker thread has ended.
    pub worker_died: bool,
}

/// What the control loop decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A new policy was installed in every worker.
    Reloaded {
        /// `SIGHUP` or `file changed`.
        why: &'static str,
        /// The policy's description (file and generation).
        policy: String,
    },
    /// A reload was refused; the running policy stays.
    ReloadRefused {
        /// `SIGHUP` or `file changed`.
        why: &'static str,
        /// Why, with every diagnostic.
        error: String,
    },
    /// Stop: a signal asked for it.
    StopRequested,
    /// Stop: a worker ended by itself.
    WorkerDied,
}

/// The control loop's state between steps.
#[derive(Debug)]
pub struct ControlLoop {
    reloader: Option<(PathBuf, Reloader)>,
    last_check: Instant,
}

/// The description of a policy shown in logs and `scrubber stats`.
pub fn policy_description(path: &Path, generation: u64) -> String {
    format!("{} (generation {generation:016x})", path.display())
}

impl ControlLoop {
    /// A loop that reloads `reloader`'s rule file (`None`: `--protect`, nothing to reload).
    pub fn new(reloader: Option<(PathBuf, Reloader)>, now: Instant) -> ControlLoop {
        ControlLoop { reloader, last_check: now }
    }

    /// The reload counters (`None` when there is no rule file to reload).
    pub fn reload_stats(&self) -> Option<super::reload::ReloadStats> {
        self.reloader.as_ref().map(|(_, r)| r.stats())
    }

    /// One step. Returns what happened, in order; a stop event ends the loop.
    pub fn step(&mut self, t: Tick) -> Vec<Event> {
        if t.stop {
            return vec![Event::StopRequested];
        }
        if t.worker_died {
            return vec![Event::WorkerDied];
        }
        let Some((path, r)) = self.reloader.as_mut() else { return Vec::new() };
        let changed = t.now.duration_since(self.last_check) >= FILE_CHECK && {
            self.last_check = t.now;
            r.changed()
        };
        let mut out = Vec::new();
        if t.hup || changed {
            let why = if t.hup { "SIGHUP" } else { "file changed" };
            match r.reload(dataplane::now_ns()) {
                Ok(l) => {
                    out.push(Event::Reloaded { why, policy: policy_description(path, l.compiled.generation_id()) })
                }
                Err(e) => out.push(Event::ReloadRefused { why, error: e.to_string() }),
            }
        }
        r.collect();
        out
    }
}

/// What a run leaves behind: the final statistics, and any problem found while stopping.
#[derive(Debug)]
pub struct RunSummary {
    /// The last snapshot, taken after every worker stopped.
    pub last: Snapshot,
    /// Problems found while stopping (a failed frame-accounting check, a panicked worker):
    /// print the statistics, then report these as [`RunError::Accounting`].
    pub problems: Vec<String>,
}

impl RunSummary {
    /// `Err` when stopping found problems.
    pub fn check(&self) -> Result<(), RunError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(RunError::Accounting(self.problems.join("; ")))
        }
    }
}

/// Run the data plane until SIGINT/SIGTERM. Progress and reloads are reported on stderr.
pub fn run(mut cfg: RunConfig) -> Result<RunSummary, RunError> {
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let workers = cfg.workers();
    // Checks before touching anything.
    let _ = scrubber_xsk::raise_memlock();
    let report = preflight::preflight(
        &PreflightConfig {
            ext: cfg.ext.clone(),
            int: cfg.int.clone(),
            frame_size: cfg.xsk.frame_size,
            headroom: 0,
            umem_bytes: cfg.umem_bytes(),
            needs_sys_nice: cfg.napi_tune,
            writes_sysfs: cfg.napi_tune || cfg.poll == Poll::Busy,
        },
        Path::new("/sys"),
        Path::new("/proc"),
    )
    .map_err(RunError::Preflight)?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    // The links' MTUs: larger frames are answered with ICMP too-big, and cookie SYN-ACKs never
    // promise clients more than the int link carries.
    cfg.engine.int_mtu = u16::try_from(report.int.mtu).unwrap_or(u16::MAX);
    cfg.engine.ext_mtu = u16::try_from(report.ext.mtu).unwrap_or(u16::MAX);
    let queues = scrubber_xsk::rx_queue_count(&cfg.ext)?;
    if workers as u32 > queues {
        return Err(RunError::Queues { workers, cores: cfg.cores_spec.clone(), ext: cfg.ext.clone(), queues });
    }

    // One ban table for every worker (see `engine::ban`).
    let ban_seed = u64::from_le_bytes(cfg.engine.cookie_key[..8].try_into().unwrap_or([0; 8])) ^ 0xba4_7ab1e;
    let bans = Arc::new(crate::engine::ban::BanTable::new(BAN_SLOTS, ban_seed));
    cfg.engine.bans = Some(Arc::clone(&bans));
    // Engines (allocate the session tables now, before attaching).
    let mut engines = Vec::with_capacity(workers);
    for _ in 0..workers {
        engines.push(Engine::new(cfg.engine.clone())?);
    }
    // Sessions saved by the previous run (`--state`), or those of the scrubber this one takes
    // over from (`--take-over`: it detaches when it has sent them).
    let mut state_loaded = false;
    let mut took_over: Option<Instant> = None;
    if cfg.take_over {
        let t = Instant::now();
        let saved = handover::take_over(&handover::handover_path(&cfg.socket), Duration::from_secs(60))?;
        let rep = saved.restore(&mut engines, dataplane::now_ns());
        tracing::info!("took over from the running scrubber: {rep}");
        took_over = Some(t);
    } else if let Some(path) = &cfg.state {
        match Saved::read(path) {
            Ok(Some(saved)) => {
                let rep = saved.restore(&mut engines, dataplane::now_ns());
                tracing::info!("state {}: {rep}", path.display());
                state_loaded = true;
            }
            Ok(None) => {
                tracing::info!("state {}: no file yet, starting with empty session tables", path.display())
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }
    let targets: Vec<String> = engines[0].counters().per_target.iter().map(|t| t.label.clone()).collect();
    let policy_desc = match &cfg.policy {
        PolicySource::Rules { path, .. } => policy_description(path, engines[0].policy().generation_id()),
        PolicySource::Protect(_) => format!("--protect {}", targets.join(" ")),
    };

    let int_queues = scrubber_xsk::rx_queue_count(&cfg.int)?;
    cfg.on_exit.check_queues(&cfg.ext, queues, workers)?;
    cfg.on_exit.check_queues(&cfg.int, int_queues, workers)?;
    let mut sink = EventSink::new(cfg.events.as_deref(), cfg.on_event.as_deref(), true)?;
    let (th, per) = detect::thresholds_of(engines[0].policy());
    let mut detector = detect::Detector::new(th, per);
    let mut last_detect = Instant::now();
    let signals = Signals::install()?;
    let (feed, inboxes) = policy_channels(workers);
    let publishers: Vec<Publisher> = (0..workers).map(|i| Publisher::new(WorkerStats::new(i, &targets))).collect();
    let server = Arc::new(StatsServer::start(&cfg.socket, publishers.clone(), ServerInfo::new(policy_desc.clone()))?);
    let ban_server = match super::bans::BanServer::start(
        &super::bans::ctl_path(&cfg.socket),
        Arc::clone(&bans),
        publishers.first().cloned(),
    ) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(
                "cannot listen on {}: {e}; `scrubber ban` will not reach this scrubber",
                super::bans::ctl_path(&cfg.socket).display()
            );
            None
        }
    };
    let mut bans_seen = 0u64;
    let metrics = match cfg.metrics {
        Some(a) => {
            let m = MetricsServer::start(a, Arc::clone(&server))?;
            tracing::info!("metrics at http://{}/metrics", m.addr());
            Some(m)
        }
        None => None,
    };
    // Sampled frames: one queue per worker, drained by the writer thread.
    let sample_queues = cfg.sample.as_ref().map(|_| {
        Arc::new(
            (0..workers)
                .map(|_| crossbeam::queue::ArrayQueue::new(crate::dataplane::sample::QUEUE))
                .collect::<Vec<_>>(),
        )
    });
    let sample_writer = match (&cfg.sample, &sample_queues) {
        (Some(s), Some(q)) => {
            let w = super::samples::SampleWriter::start(&s.dir, s.cap, Arc::clone(q))?;
            tracing::info!(
                "sampling 1 in {} drops, 1 in {} passes, 1 in {} ICMP to {} (at most {} MiB)",
                s.rates.drop,
                s.rates.pass,
                s.rates.icmp,
                s.dir.display(),
                s.cap >> 20
            );
            Some(w)
        }
        _ => None,
    };
    // Session streaming to the fleet's other boxes.
    let sync_queues = cfg.sync.as_ref().map(|_| Arc::new(crate::dataplane::sync::SyncQueues::new(workers)));
    let sync_thread = match (&cfg.sync, &sync_queues) {
        (Some(sc), Some(q)) => {
            for e in engines.iter_mut() {
                e.enable_sync();
            }
            let t = super::sync::SyncThread::start(sc, &cfg.engine.cookie_key, Arc::clone(q))
                .map_err(|source| RunError::Sync { addr: sc.listen, source })?;
            let peers: Vec<String> = sc.peers.iter().map(|p| p.to_string()).collect();
            tracing::info!("session sync: listening on {}, peers {}", sc.listen, peers.join(", "));
            Some(t)
        }
        _ => None,
    };
    let parts = engines.into_iter().zip(inboxes).collect();
    let mut dp = Some(
        start_dataplane(&cfg, parts, &publishers, queues, int_queues, sample_queues.clone(), sync_queues.clone())
            .map_err(|(e, _)| e)?,
    );
    let modes = dp.as_ref().map(|d| d.modes.clone()).unwrap_or_default();
    // Fail-open or fail-closed, now that the programs take every frame.
    match cfg.on_exit.apply(&cfg.ext, &cfg.int) {
        Ok(said) => said.iter().for_each(|l| tracing::info!("{l}")),
        Err(e) => {
            if let Some(d) = dp.take() {
                stop_dataplane(d);
            }
            return Err(e.into());
        }
    }
    if let Some(t) = took_over {
        tracing::info!("hand-over complete: {} ms from the request to attached and running", t.elapsed().as_millis());
    }
    let handover_listener = match handover::HandoverListener::bind(&handover::handover_path(&cfg.socket)) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!("{e}; `scrubber run --take-over` will not find this scrubber");
            None
        }
    };
    if state_loaded {
        // In the tables now: a crash from here on must not restore these sessions again.
        if let Some(path) = &cfg.state {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!("state {}: cannot remove the loaded file: {e}", path.display());
            }
        }
    }
    let mut knobs = if cfg.napi_tune {
        let ifs = [cfg.ext.as_str(), cfg.int.as_str()];
        let mut k = KnobConfig::recommended(&ifs, &cfg.cores);
        if cfg.poll == Poll::Busy {
            k.gro_flush_timeout_ns = Some(BUSY_GRO_FLUSH_NS);
        }
        Some(Knobs::apply(&k)?)
    } else if cfg.poll == Poll::Busy {
        // Busy polling needs the kernel to leave the NAPI instances to the workers while they
        // poll: hard-IRQ deferral and a GRO flush timeout (the timer that takes over when a
        // worker stops polling).
        let ifs = [cfg.ext.as_str(), cfg.int.as_str()];
        let mut k = KnobConfig::none(&ifs);
        k.napi_defer_hard_irqs = Some(2);
        k.gro_flush_timeout_ns = Some(BUSY_GRO_FLUSH_NS);
        Some(Knobs::apply(&k)?)
    } else {
        None
    };
    for (i, (e, n)) in modes.iter().enumerate() {
        tracing::info!("worker {i} on core {} serves queue {i}: {} {e}, {} {n}", cfg.cores[i], cfg.ext, cfg.int);
    }
    tracing::info!("running: ext {} int {} ({} XDP, fallback {:?}), {workers} worker(s), poll {}, policy {policy_desc}; stats: scrubber stats --socket {}",
        cfg.ext,
        cfg.int,
        cfg.attach,
        cfg.fallback,
        cfg.poll.as_str(),
        cfg.socket.display()
    );

    // The control loop: reloads, until stopped.
    let reloader = match &cfg.policy {
        PolicySource::Rules { path, loaded } => {
            let mut c = cfg.engine.clone();
            c.policy = Some(loaded.compiled.clone());
            Some((
                path.clone(),
                Reloader::with_options(
                    path.clone(),
                    loaded,
                    vec![c; workers],
                    feed,
                    cfg.cookie_secret.clone(),
                    cfg.load,
                ),
            ))
        }
        PolicySource::Protect(_) => None,
    };
    // Reloads run on a thread of their own: reading files (however slow) never delays the
    // handling of SIGTERM/SIGINT, the link watch or a dead worker here.
    let (hup_tx, hup_rx) = std::sync::mpsc::channel::<()>();
    let (ev_tx, ev_rx) = std::sync::mpsc::channel::<(Vec<Event>, Option<super::reload::ReloadStats>)>();
    std::thread::Builder::new()
        .name("scrubber-reload".into())
        .spawn(move || {
            let mut control = ControlLoop::new(reloader, Instant::now());
            loop {
                let hup = match hup_rx.recv_timeout(STEP) {
                    Ok(()) => true,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                };
                let events = control.step(Tick { now: Instant::now(), stop: false, hup, worker_died: false });
                if ev_tx.send((events, control.reload_stats())).is_err() {
                    return;
                }
            }
        })
        .map_err(RunError::Thread)?;
    let mut links = LinkWatch::new(Path::new("/sys"), &cfg.ext, &cfg.int);
    // The workers' engines and inboxes while the data plane is down (an interface vanished).
    let mut parked: Option<Vec<(Engine, PolicyInbox)>> = None;
    let mut problems = Vec::new();
    let mut last_try = Instant::now();
    let mut handing_over: Option<std::os::unix::net::UnixStream> = None;
    'control: loop {
        std::thread::sleep(STEP);
        for ev in links.poll() {
            match ev {
                LinkEvent::Down(i) => {
                    tracing::info!("link {i} is down: frames to it are lost until it comes back")
                }
                LinkEvent::Up(i) => tracing::info!("link {i} is up again"),
                LinkEvent::Gone(i) => {
                    tracing::info!("interface {i} disappeared: the data plane stops (sessions kept) until it returns");
                    if let Some(d) = dp.take() {
                        let (parts, p) = stop_dataplane(d);
                        for x in p {
                            tracing::info!("stopping the data plane on a vanished interface: {x}");
                        }
                        parked = Some(parts);
                    }
                }
                LinkEvent::Returned(i) => tracing::info!("interface {i} is back: rebuilding the data plane"),
            }
        }
        if parked.is_some() && links.both_present() && last_try.elapsed() >= Duration::from_secs(1) {
            last_try = Instant::now();
            let parts = parked.take().unwrap_or_default();
            let q = (scrubber_xsk::rx_queue_count(&cfg.ext), scrubber_xsk::rx_queue_count(&cfg.int));
            let res = match q {
                (Ok(qe), Ok(qi)) => {
                    start_dataplane(&cfg, parts, &publishers, qe, qi, sample_queues.clone(), sync_queues.clone())
                }
                (Err(e), _) | (_, Err(e)) => Err((RunError::from(e), parts)),
            };
            match res {
                Ok(d) => {
                    links.rebuilt();
                    tracing::info!(
                        "data plane rebuilt on {} and {}: {workers} worker(s), sessions kept",
                        cfg.ext,
                        cfg.int
                    );
                    dp = Some(d);
                    // A re-created interface is in no bypass bridge yet.
                    match cfg.on_exit.apply(&cfg.ext, &cfg.int) {
                        Ok(said) => said.iter().for_each(|l| tracing::info!("{l}")),
                        Err(e) => tracing::warn!("{e}"),
                    }
                }
                Err((e, parts)) => {
                    tracing::info!("cannot rebuild the data plane yet ({e}); trying again in 1 s");
                    parked = Some(parts);
                }
            }
        }
        server.set_links(links.stats());
        // Attack detection, once a second, on what the workers published.
        if last_detect.elapsed() >= DETECT_EVERY {
            last_detect = Instant::now();
            let stats: Vec<WorkerStats> = publishers.iter().map(Publisher::read).collect();
            let counters: Vec<&crate::engine::counters::Counters> = stats.iter().map(|w| &w.counters).collect();
            let readings = detect::readings(&counters);
            let events = detector.tick(dataplane::now_ns(), &readings);
            sink.emit(&events);
            let attacked =
                detector.under_attack().into_iter().filter_map(|i| readings.get(i).map(|r| r.label.clone())).collect();
            server.set_events(sink.stats(), attacked);
            if let Some(w) = &sample_writer {
                server.set_samples(w.stats());
            }
            let now = dataplane::now_ns();
            bans.sweep(now);
            let bs = bans.stats(now);
            if bs.bans_added > bans_seen {
                let new = bs.bans_added - bans_seen;
                let first = super::bans::listed(&bans, now, publishers.first(), 3);
                let eg: Vec<String> = first.iter().map(|b| format!("{} ({})", b.addr, b.by)).collect();
                tracing::info!(
                    banned = new,
                    live = bs.bans_live,
                    "{new} source(s) banned; {} live, e.g. {}",
                    bs.bans_live,
                    eg.join(", ")
                );
                bans_seen = bs.bans_added;
            }
            server.set_bans(bs, super::bans::listed(&bans, now, publishers.first(), super::telemetry::BANNED_LISTED));
            if let Some(t) = &sync_thread {
                server.set_sync(t.stats());
            }
        }
        if signals.take_reload() {
            let _ = hup_tx.send(());
        }
        let mut events = Vec::new();
        if let Some(s) = handover_listener.as_ref().and_then(|l| l.poll()) {
            tracing::info!("a new scrubber takes over: handing the sessions over");
            handing_over = Some(s);
            events.push(Event::StopRequested);
        } else if signals.stop_requested() {
            events.push(Event::StopRequested);
        } else if dp.as_ref().is_some_and(|d| d.handles.iter().any(|h| h.is_finished())) {
            events.push(Event::WorkerDied);
        }
        while let Ok((ev, st)) = ev_rx.try_recv() {
            events.extend(ev);
            if let Some(st) = st {
                server.set_reload(st);
            }
        }
        for ev in events {
            match ev {
                Event::Reloaded { why, policy } => {
                    tracing::info!("reload ({why}): policy {policy} installed in {workers} worker(s)");
                    server.set_policy(policy);
                }
                Event::ReloadRefused { why, error } => {
                    tracing::info!("reload ({why}) refused, running policy kept: {error}")
                }
                Event::StopRequested => break 'control,
                Event::WorkerDied => {
                    tracing::info!("a worker stopped unexpectedly; shutting down");
                    break 'control;
                }
            }
        }
    }

    drop(ban_server);
    if let Some(t) = &sync_thread {
        let st = t.stats();
        tracing::info!(
            "session sync: {} datagrams ({} bytes) sent, {} records received, {} refused, {} lost",
            st.sync_datagrams_sent,
            st.sync_bytes_sent,
            st.sync_records_received,
            st.sync_datagrams_refused,
            st.sync_queue_lost
        );
    }
    drop(sync_thread);
    tracing::info!("stopping: draining and detaching");
    let stopped: Vec<(Engine, PolicyInbox)> = match dp.take() {
        Some(d) => {
            let (parts, p) = stop_dataplane(d);
            problems.extend(p);
            parts
        }
        None => parked.take().unwrap_or_default(),
    };
    drop(handover_listener);
    if let Some(stream) = handing_over {
        // The programs are detached and the sockets closed (the data plane stopped above); the
        // stats socket goes before the state, so that the new scrubber can take its path.
        let engines: Vec<&Engine> = stopped.iter().map(|(e, _)| e).collect();
        let saved = Saved::of(&engines, dataplane::now_ns() / 1_000_000);
        let last = server.snapshot();
        drop(metrics);
        drop(server);
        match handover::send_state(stream, &saved) {
            Ok(()) => tracing::info!("{} session(s) handed over; exiting", saved.sessions()),
            Err(e) => problems.push(format!("handing the sessions over: {e}")),
        }
        if let Some(k) = knobs.as_mut() {
            if let Err(e) = k.restore() {
                tracing::warn!("restoring kernel knobs: {e}");
            }
        }
        return Ok(RunSummary { last, problems });
    }
    if let Some(path) = &cfg.state {
        let t = Instant::now();
        let engines: Vec<&Engine> = stopped.iter().map(|(e, _)| e).collect();
        let saved = Saved::of(&engines, dataplane::now_ns() / 1_000_000);
        match saved.write(path) {
            Ok(()) => tracing::info!(
                "state {}: {} session(s) of {} worker(s) saved in {} ms",
                path.display(),
                saved.sessions(),
                engines.len(),
                t.elapsed().as_millis()
            ),
            Err(e) => problems.push(format!("saving the sessions: {e}")),
        }
    }
    if let Some(k) = knobs.as_mut() {
        if let Err(e) = k.restore() {
            tracing::warn!("restoring kernel knobs: {e}");
        }
    }
    let last = server.snapshot();
    drop(metrics);
    drop(server);
    Ok(RunSummary { last, problems })
}

/// A running data plane: the XDP programs (held by `shared`) and the worker threads.
struct Dataplane {
    shared: Arc<Shared>,
    handles: Vec<std::thread::JoinHandle<WorkerEnd>>,
    /// Each worker's socket modes (ext, int).
    modes: Vec<(String, String)>,
}

/// Attach the programs and start one worker per `(engine, inbox)`. On failure everything
/// started is stopped again and the engines come back with the error.
#[allow(clippy::type_complexity)]
fn start_dataplane(
    cfg: &RunConfig,
    parts: Vec<(Engine, PolicyInbox)>,
    publishers: &[Publisher],
    queues: u32,
    int_queues: u32,
    samples: Option<Arc<Vec<crossbeam::queue::ArrayQueue<crate::dataplane::sample::Sample>>>>,
    sync: Option<Arc<crate::dataplane::sync::SyncQueues>>,
) -> Result<Dataplane, (RunError, Vec<(Engine, PolicyInbox)>)> {
    let workers = parts.len();
    let progs = XdpProgram::attach(&cfg.ext, queues, cfg.attach, cfg.fallback)
        .and_then(|e| Ok((e, XdpProgram::attach(&cfg.int, int_queues, cfg.attach, cfg.fallback)?)));
    let (ext_prog, int_prog) = match progs {
        Ok(p) => p,
        Err(e) => return Err((e.into(), parts)),
    };
    let shared = match Shared::new(workers, [Arc::new(ext_prog), Arc::new(int_prog)]) {
        Ok(mut s) => {
            s.samples = samples;
            s.sync = sync;
            Arc::new(s)
        }
        Err(e) => return Err((RunError::Thread(e), parts)),
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut dp = Dataplane { shared, handles: Vec::with_capacity(workers), modes: Vec::new() };
    let mut unstarted = Vec::new();
    let mut failure = None;
    for (i, ((engine, inbox), publisher)) in parts.into_iter().zip(publishers.iter().cloned()).enumerate() {
        if failure.is_some() {
            unstarted.push((engine, inbox));
            continue;
        }
        let mut xsk = cfg.xsk.clone();
        xsk.queue = i as u32;
        let setup = WorkerSetup {
            index: i,
            core: Some(cfg.cores[i]),
            xsk,
            poll: cfg.poll,
            idle_spin: cfg.idle_spin,
            sample: cfg.sample.as_ref().map(|s| s.rates),
        };
        let shared = dp.shared.clone();
        let ready = ready_tx.clone();
        // The engine and inbox travel in a slot the thread takes them from, so that a failed
        // spawn gives them back.
        let slot = Arc::new(std::sync::Mutex::new(Some((engine, inbox))));
        let s2 = Arc::clone(&slot);
        let spawned = std::thread::Builder::new().name(format!("scrubber-w{i}")).spawn(move || {
            let (engine, inbox) = s2.lock().unwrap_or_else(|e| e.into_inner()).take().expect("the worker's engine");
            dataplane::worker_main(setup, engine, inbox, publisher, shared, ready)
        });
        match spawned {
            Ok(h) => dp.handles.push(h),
            Err(e) => {
                failure = Some(RunError::Thread(e));
                if let Some(p) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    unstarted.push(p);
                }
            }
        }
    }
    drop(ready_tx);
    if failure.is_none() {
        for _ in 0..dp.handles.len() {
            match ready_rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(m)) => dp.modes.push(m),
                Ok(Err(e)) => failure = Some(RunError::WorkerStart(e)),
                Err(_) => failure = Some(RunError::WorkerStart("a worker did not start within 10 s".into())),
            }
        }
    }
    match failure {
        None => Ok(dp),
        Some(e) => {
            let (mut parts, _) = stop_dataplane(dp);
            parts.extend(unstarted);
            Err((e, parts))
        }
    }
}

/// Stop the workers (they drain briefly) and detach the programs; the engines and inboxes
/// back, and any problem found (failed frame accounting, a panicked worker).
fn stop_dataplane(dp: Dataplane) -> (Vec<(Engine, PolicyInbox)>, Vec<String>) {
    dp.shared.running.store(false, Ordering::Relaxed);
    let mut parts = Vec::with_capacity(dp.handles.len());
    let mut problems = Vec::new();
    for h in dp.handles {
        match h.join() {
            Ok(end) => {
                problems.extend(end.accounting_error);
                parts.push((*end.engine, end.inbox));
            }
            Err(_) => problems.push("a worker panicked".into()),
        }
    }
    (parts, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::reload::load_policy;

    const GOOD: &str = "service web\n  dst 198.18.0.10\n  proto tcp\n  ports 80\nend\ndeny proto udp\n";

    fn tick(now: Instant) -> Tick {
        Tick { now, stop: false, hup: false, worker_died: false }
    }

    #[test]
    fn control_loop_reloads_refuses_and_stops_without_root() {
        let dir = std::env::temp_dir().join(format!("scrubber-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.rules");
        std::fs::write(&path, GOOD).unwrap();
        let loaded = load_policy(&path).unwrap();
        let cfg = crate::engine::EngineConfig { policy: Some(loaded.compiled.clone()), ..Default::default() };
        let mut engine = Engine::new(cfg.clone()).unwrap();
        let (feed, inboxes) = policy_channels(1);
        let r = Reloader::new(path.clone(), &loaded, vec![cfg], feed);
        let t0 = Instant::now();
        let mut c = ControlLoop::new(Some((path.clone(), r)), t0);

        // Nothing happened: nothing to do.
        assert!(c.step(tick(t0)).is_empty());
        // SIGHUP: the same file is loaded again and handed to the worker.
        let ev = c.step(Tick { hup: true, ..tick(t0) });
        assert!(matches!(&ev[..], [Event::Reloaded { why: "SIGHUP", .. }]), "{ev:?}");
        assert!(inboxes[0].poll(&mut engine));
        // A broken file, noticed by the file check (only once FILE_CHECK has passed).
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "deny from nosuchset\n").unwrap();
        assert!(c.step(tick(t0 + FILE_CHECK / 2)).is_empty(), "checked before FILE_CHECK passed");
        let ev = c.step(tick(t0 + FILE_CHECK * 2));
        match &ev[..] {
            [Event::ReloadRefused { why: "file changed", error }] => assert!(error.contains("nosuchset"), "{error}"),
            other => panic!("{other:?}"),
        }
        assert!(!inboxes[0].poll(&mut engine), "a refused file reaches no worker");
        assert_eq!(c.reload_stats().map(|s| (s.reloads_ok, s.reloads_failed)), Some((1, 1)));
        // Stop and a dead worker end the loop.
        assert_eq!(c.step(Tick { stop: true, ..tick(t0) }), vec![Event::StopRequested]);
        assert_eq!(c.step(Tick { worker_died: true, ..tick(t0) }), vec![Event::WorkerDied]);
        // `--protect`: nothing to reload, SIGHUP is ignored.
        let mut p = ControlLoop::new(None, t0);
        assert!(p.step(Tick { hup: true, ..tick(t0) }).is_empty());
        assert_eq!(p.reload_stats(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_changed_cookie_secret_file_is_rotated_to_on_reload() {
        let dir = std::env::temp_dir().join(format!("scrubber-rotate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("cookie.secret");
        std::fs::write(&secret, "00112233445566778899aabbccddeeff\n").unwrap();
        let path = dir.join("p.rules");
        std::fs::write(&path, format!("cookie-secret \"{}\"\n{GOOD}", secret.display())).unwrap();
        let loaded = load_policy(&path).unwrap();
        let cfg = crate::engine::EngineConfig { policy: Some(loaded.compiled.clone()), ..Default::default() };
        let mut engine = Engine::new(cfg.clone()).unwrap();
        let (feed, inboxes) = policy_channels(1);
        let r = Reloader::with_options(path.clone(), &loaded, vec![cfg], feed, None, Default::default());
        let t0 = Instant::now();
        let mut c = ControlLoop::new(Some((path.clone(), r)), t0);
        // Only the secret file changes (its size too, so the change is seen at once).
        std::fs::write(&secret, "# rotated\nffeeddccbbaa99887766554433221100\n").unwrap();
        let ev = c.step(tick(t0 + FILE_CHECK * 2));
        assert!(matches!(&ev[..], [Event::Reloaded { why: "file changed", .. }]), "{ev:?}");
        assert!(inboxes[0].poll(&mut engine));
        assert_eq!(engine.counters().cookie_secret_rotations, 1);
        // A damaged secret file is refused; the running secret stays.
        std::fs::write(&secret, "not hex at all, and longer\n").unwrap();
        let ev = c.step(tick(t0 + FILE_CHECK * 4));
        assert!(matches!(&ev[..], [Event::ReloadRefused { .. }]), "{ev:?}");
        assert!(!inboxes[0].poll(&mut engine));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
