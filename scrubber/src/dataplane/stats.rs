//! The worker's side of the statistics: what one worker publishes about every 100 ms (never
//! per packet) into its [`Publisher`] slot, read by the stats server
//! ([`crate::control::telemetry`]). The slot is a `Mutex` held only for that copy and for the
//! copy a reader takes, so a worker never waits longer than one copy, and never on a reader's
//! I/O.

use crate::engine::counters::Counters;
use crate::engine::policy::limiter::LimiterStats;
use crate::engine::session::TableStats;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, MutexGuard};

crate::counters! {
    /// One worker's rings, sockets and hand-offs (ext and int together).
    pub struct RingStats("rings") {
        /// Frames the kernel could not deliver because the socket's rx ring was full (the
        /// worker fell behind). From the socket's `XDP_STATISTICS` (`rx_ring_full`).
        counter "rings" rx_ring_full,
        /// Times the kernel found the fill ring empty when it needed a buffer for an arriving
        /// frame (the worker did not give buffers back fast enough). From `XDP_STATISTICS`
        /// (`rx_fill_ring_empty_descs`).
        counter "rings" fill_ring_empty,
        /// Frames the worker wanted to transmit but found no free slot in the tx ring for; they
        /// were dropped (counted by the worker).
        counter "rings" tx_ring_full,
        /// Frames the kernel dropped for other reasons before they reached the rx ring (e.g. no
        /// buffer, frame larger than a UMEM chunk). From `XDP_STATISTICS` (`rx_dropped`).
        counter "rings" rx_dropped,
        /// Tx descriptors the kernel rejected as invalid (bad address or length). From
        /// `XDP_STATISTICS` (`tx_invalid_descs`).
        counter "rings" tx_invalid,
        /// Transmit kicks: `sendto` calls made to make the kernel process the tx ring.
        counter "rings" tx_kicks,
        /// Times the worker polled its rings (loop iterations that looked for work).
        counter "rings" polls,
        /// Second frames of two-frame verdicts (the backend's ACK beside a forwarded SYN-ACK,
        /// a reset beside a reconnecting SYN) that found no free UMEM frame: only the first
        /// went out (the peer retransmits).
        counter "rings" second_frame_lost,
        /// Frames this worker handed to another worker because that worker owns the flow.
        counter "hand-offs" handoffs_out,
        /// Frames this worker received from other workers for flows it owns.
        counter "hand-offs" handoffs_in,
        /// Frames that could not be handed over (the owner's queue was full, or the frame too
        /// large): dropped.
        counter "hand-offs" handoff_dropped,
        /// Frames copied for `--sample-dir`.
        counter "samples" samples_taken,
        /// Samples lost because the worker's sample queue was full (the frames were not).
        counter "samples" samples_dropped,
    }
}

/// Everything one worker publishes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Worker index (worker *i* owns rx/tx queue *i* of ext and of int).
    pub worker: usize,
    /// The CPU core the worker is pinned to, if it is pinned.
    pub core: Option<usize>,
    /// How the ext socket is bound, e.g. `zero-copy` or `copy` (empty until bound).
    pub ext_mode: String,
    /// How the int socket is bound, e.g. `zero-copy` or `copy` (empty until bound).
    pub int_mode: String,
    /// The worker's engine counters.
    pub counters: Counters,
    /// The worker's session table.
    pub table: TableStats,
    /// The worker's limiters.
    pub limiter: LimiterStats,
    /// The worker's rings and hand-offs.
    pub rings: RingStats,
    /// The worker's HTTP connection-state table.
    #[serde(default)]
    pub http: crate::engine::http::HttpTableStats,
    /// The worker's session streaming.
    #[serde(default)]
    pub sync: crate::engine::sync::SyncStats,
}

impl WorkerStats {
    /// Zeroed stats for worker `worker`, with one per-target entry per protected target (in
    /// configuration order, as [`Counters::new`]).
    pub fn new(worker: usize, targets: &[String]) -> Self {
        WorkerStats {
            worker,
            core: None,
            ext_mode: String::new(),
            int_mode: String::new(),
            counters: Counters::new(targets),
            table: TableStats::default(),
            limiter: LimiterStats::default(),
            rings: RingStats::default(),
            http: Default::default(),
            sync: Default::default(),
        }
    }
}

/// A worker's slot for its statistics. Cloning gives another handle to the same slot (one for
/// the worker, one for the server).
#[derive(Clone, Debug)]
pub struct Publisher {
    slot: Arc<Mutex<WorkerStats>>,
}

impl Publisher {
    /// A slot holding `initial`.
    pub fn new(initial: WorkerStats) -> Self {
        Publisher { slot: Arc::new(Mutex::new(initial)) }
    }

    fn lock(&self) -> MutexGuard<'_, WorkerStats> {
        // A panic while holding the lock leaves plain counters behind: still readable.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replace the published stats with a copy of `stats`.
    pub fn publish(&self, stats: &WorkerStats) {
        self.lock().clone_from(stats);
    }

    /// Change the published stats in place, e.g.
    /// `p.update(|s| s.counters.clone_from(engine.counters()))`.
    /// Keep `f` short: the server waits for it.
    pub fn update(&self, f: impl FnOnce(&mut WorkerStats)) {
        f(&mut self.lock());
    }

    /// A copy of the stats as last published.
    pub fn read(&self) -> WorkerStats {
        self.lock().clone()
    }
}
