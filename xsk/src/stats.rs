//! Counters of a socket pair: per side, the kernel's XDP_STATISTICS, and pair-wide ones.

use crate::desc::Side;

/// Counters of one side's socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SideStats {
    /// Frames received (read from the rx ring).
    pub rx_packets: u64,
    /// Received descriptors that named no frame we had given the kernel (never expected).
    pub rx_invalid: u64,
    /// Frames queued on the tx ring.
    pub tx_queued: u64,
    /// Transmissions completed (frames back from the completion ring).
    pub tx_completed: u64,
    /// Calls to [`crate::SocketPair::tx_batch`] that could not queue everything (tx ring full).
    pub tx_ring_full: u64,
    /// Descriptors [`crate::SocketPair::tx_batch`] refused (not in hand, or a bad length); those in hand
    /// were dropped.
    pub tx_rejected: u64,
    /// Transmit kicks (sendto) made.
    pub tx_kicks: u64,
    /// Kicks that failed with an unexpected error.
    pub tx_kick_errors: u64,
    /// Busy-poll calls made ([`crate::SocketPair::busy_poll`]).
    pub busy_polls: u64,
    /// Times the fill ring could not be topped up completely (free list short).
    pub fill_short: u64,
    /// Fill-ring wake-ups made because the driver asked (need_wakeup).
    pub fill_wakeups: u64,
    /// Frames in the fill ring, not yet taken by the kernel (instantaneous).
    pub fill_level: u64,
    /// The kernel's XDP_STATISTICS, when readable.
    pub kernel: Option<KernelStats>,
}

/// The kernel's per-socket XDP_STATISTICS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames dropped for other reasons (e.g. no fill buffer in copy mode).
    pub rx_dropped: u64,
    /// Invalid descriptors on the fill ring.
    pub rx_invalid_descs: u64,
    /// Invalid descriptors on the tx ring.
    pub tx_invalid_descs: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was empty when a frame arrived.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the tx ring empty when kicked.
    pub tx_ring_empty_descs: u64,
}

/// Counters of both sides, plus pair-wide ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// The ext socket.
    pub ext: SideStats,
    /// The int socket.
    pub int: SideStats,
    /// Descriptors passed to [`crate::SocketPair::recycle`] that were not in hand (ignored).
    pub bad_recycles: u64,
    /// Frames on the free list (instantaneous).
    pub free_frames: u64,
    /// Frames in the worker loop's hands (instantaneous).
    pub in_hand: u64,
}

impl RingStats {
    /// The side's counters.
    pub fn side(&self, side: Side) -> &SideStats {
        match side {
            Side::Ext => &self.ext,
            Side::Int => &self.int,
        }
    }
}
