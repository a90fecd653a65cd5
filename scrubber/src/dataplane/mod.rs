//! Layer 3, the AF_XDP data plane: one pinned worker per core, each owning queue *i* of ext and of
//! int on one shared UMEM ([`scrubber_xsk::SocketPair`]), judging batches with its own
//! [`crate::Engine`].
//!
//! * [`worker`] — the worker thread: inbox → rx batch → judge → flush → service rings → idle.
//! * [`handoff`] — the owner of a flow among the workers, and the hand-off queues.
//! * [`stats`] — what a worker publishes (engine counters, ring statistics).
//! * [`inbox`] — how a worker receives a reloaded policy between two batches.
//! * [`clock`] — the engine's clock.
//! * [`sync`] — the queues to and from the session-sync thread of a fleet.
//!
//! Per iteration a worker: takes a policy from its inbox if one is waiting; reads up to
//! [`BATCH`] frames from ext and judges them inbound, then from int (outbound); queues
//! forwarded frames on the other side's tx ring (the descriptor moves, nothing is copied),
//! answers on the arrival side, recycles drops; takes frames other workers handed over;
//! services the rings (completions → fill rings, tx kick only when needed); and when idle,
//! spins, yields or blocks in poll() as configured, sweeping expired sessions. Every 100 ms it
//! publishes its counters. Nothing on this path allocates, locks or logs.
//!
//! **Flows and cores.** A TCP flow's two directions must meet the same session table. With a
//! symmetric RSS key and equal queue counts (scripts/nic-setup.sh) they arrive on the same
//! worker. When they do not, the frame goes to the flow's owner — chosen by a symmetric hash
//! of the addresses and ports — through the owner's lock-free queue (a copy of the frame; it
//! is transmitted from the owner's UMEM). Hand-offs are counted on both sides; a full queue
//! drops the frame (counted as `handoff_dropped` in the ring stats' `tx_ring_full`).

pub mod clock;
pub mod handoff;
pub mod inbox;
pub mod sample;
pub mod stats;
pub mod sync;
pub mod worker;

pub use clock::now_ns;
pub use worker::{worker_main, Shared, WorkerEnd, WorkerSetup};

/// Frames read from one ring per iteration.
pub const BATCH: usize = 64;

/// What a worker does when its rings are empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Keep polling the rings (lowest latency; needs the NAPI thread to get CPU time, see
    /// the NAPI knobs).
    Spin,
    /// `sched_yield` between empty polls.
    Yield,
    /// Sleep in poll(2) on both sockets until a frame arrives (at most 10 ms) — after polling
    /// for the worker's idle spin time (`--idle-spin-us`, default 0), yielding the core.
    Block,
    /// Preferred busy polling: the worker runs its queues' receive processing (the driver's
    /// NAPI poll) itself, a batch at a time, between its own batches, instead of competing
    /// for the core with a NAPI thread or softirq — the setting for a worker that shares its
    /// core with its queues' receive work. Idle, as `Block`. Sets the interfaces'
    /// `napi_defer_hard_irqs` (2) and `gro_flush_timeout` (200 µs), restored at exit.
    Busy,
}

impl Poll {
    /// The setting's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Poll::Spin => "spin",
            Poll::Yield => "yield",
            Poll::Block => "block",
            Poll::Busy => "busy",
        }
    }
}
