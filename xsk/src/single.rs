//! One AF_XDP socket on its own UMEM, for transmitting: the traffic generator's
//! (`scrubber-perf gen`) side of the crate. Frames are written into UMEM frames in hand and
//! queued on the tx ring; the same ownership tracking as [`crate::SocketPair`] applies.

use crate::desc::Desc;
use crate::port::{io_err, Port, PortSizes};
use crate::stats::SideStats;
use crate::umem::{FramePool, UmemArea};
use crate::{XskError, ZeroCopy, XDP_PACKET_HEADROOM};
use xdpilone::{Umem, UmemConfig};

/// Settings of a [`TxSocket`].
#[derive(Clone, Debug)]
pub struct TxSocketConfig {
    /// The interface to transmit on.
    pub ifname: String,
    /// Its queue.
    pub queue: u32,
    /// UMEM frames.
    pub frames: u32,
    /// UMEM frame size (2048 or 4096).
    pub frame_size: u32,
    /// Tx and completion ring entries (power of two).
    pub tx_size: u32,
    /// Zero-copy.
    pub zero_copy: ZeroCopy,
}

impl TxSocketConfig {
    /// 4096 frames of 2048 bytes, 2048-entry rings, zero-copy if the driver can.
    pub fn new(ifname: &str, queue: u32) -> Self {
        TxSocketConfig {
            ifname: ifname.into(),
            queue,
            frames: 4096,
            frame_size: 2048,
            tx_size: 2048,
            zero_copy: ZeroCopy::Auto,
        }
    }
}

/// A transmit-only AF_XDP socket (its rx ring exists but no XDP program redirects to it).
pub struct TxSocket {
    // Drop order: the socket before the UMEM registration before the memory.
    port: Port,
    _umem: Umem,
    pool: FramePool,
    bad_recycles: u64,
}

impl std::fmt::Debug for TxSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxSocket").field("port", &self.port).field("free", &self.pool.free_len()).finish()
    }
}

impl TxSocket {
    /// Open the socket. A queue released by a socket that just closed stays busy for a moment
    /// (deferred work in the kernel): that is retried for up to a second.
    pub fn new(cfg: &TxSocketConfig) -> Result<TxSocket, XskError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            match Self::build(cfg) {
                Err(XskError::QueueBusy { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    fn build(cfg: &TxSocketConfig) -> Result<TxSocket, XskError> {
        if !cfg.tx_size.is_power_of_two() || cfg.tx_size < 64 {
            return Err(XskError::Config(format!("tx ring size {}: give a power of two ≥ 64", cfg.tx_size)));
        }
        if !matches!(cfg.frame_size, 2048 | 4096) || cfg.frames < 64 {
            return Err(XskError::Config("frames: at least 64 of 2048 or 4096 bytes".into()));
        }
        let count = crate::iface::rx_queue_count(&cfg.ifname)?;
        if cfg.queue >= count {
            return Err(XskError::NoSuchQueue { ifname: cfg.ifname.clone(), queue: cfg.queue, count });
        }
        let bytes = u64::from(cfg.frames) * u64::from(cfg.frame_size);
        let area = UmemArea::new(bytes as usize)?;
        let ucfg =
            UmemConfig { fill_size: 64, complete_size: cfg.tx_size, frame_size: cfg.frame_size, headroom: 0, flags: 0 };
        // SAFETY: `area` is a fresh page-aligned mapping of exactly `bytes` bytes; it moves into
        // `pool`, which is declared after `_umem` and `port`, so it outlives every user of the
        // registration.
        let umem = unsafe { Umem::new(ucfg, area.as_raw()) }.map_err(|e| {
            let e = io_err(e);
            match e.raw_os_error() {
                Some(libc::ENOBUFS | libc::ENOMEM | libc::EPERM) => XskError::Memlock { bytes, source: e },
                _ => XskError::Socket {
                    what: "registering the UMEM",
                    ifname: cfg.ifname.clone(),
                    queue: cfg.queue,
                    source: e,
                },
            }
        })?;
        let pool = FramePool::new(area, cfg.frame_size, cfg.frames);
        let sizes = PortSizes { rx: 64, tx: cfg.tx_size, fill: 64, need_wakeup: true };
        let port = Port::open(&umem, &cfg.ifname, cfg.queue, true, sizes, cfg.zero_copy)?;
        Ok(TxSocket { port, _umem: umem, pool, bad_recycles: 0 })
    }

    /// A free frame to write a packet into (length 0), if any.
    #[inline]
    pub fn alloc_frame(&mut self) -> Option<Desc> {
        let base = self.pool.alloc()?;
        Some(Desc::new(base + u64::from(XDP_PACKET_HEADROOM), 0))
    }

    /// The writable bytes of a frame in hand, from the packet's start to the frame's end.
    #[inline]
    pub fn frame_buf_mut(&mut self, d: &Desc) -> Option<&mut [u8]> {
        let cap = self.pool.frame_size() - (d.addr - self.pool.base(d.addr));
        self.pool.bytes_mut(d.addr, cap)
    }

    /// Queue frames for transmission; returns how many were taken (the rest did not fit and
    /// are still in hand).
    #[inline]
    pub fn tx_batch(&mut self, descs: &[Desc]) -> usize {
        self.port.tx_batch(&mut self.pool, descs)
    }

    /// Give frames in hand back without sending them.
    pub fn recycle(&mut self, descs: &[Desc]) {
        for d in descs {
            if !self.pool.release(d.addr) {
                self.bad_recycles += 1;
            }
        }
    }

    /// Completed transmissions back to the free list; kick the kernel to transmit what is
    /// queued (copy mode transmits in the kick). Returns the frames completed.
    #[inline]
    pub fn service(&mut self) -> u32 {
        let n = self.port.reap_completions(&mut self.pool);
        self.port.kick_tx();
        n
    }

    /// Frames queued that the kernel has not taken yet.
    pub fn tx_pending(&self) -> u32 {
        self.port.tx_pending()
    }

    /// Free frames.
    pub fn free_frames(&self) -> usize {
        self.pool.free_len()
    }

    /// The bind mode obtained.
    pub fn mode(&self) -> crate::BindMode {
        self.port.mode
    }

    /// Counters.
    pub fn stats(&self) -> SideStats {
        let p = &self.port;
        SideStats {
            rx_packets: p.c.rx_read,
            rx_invalid: p.c.rx_invalid,
            tx_queued: p.c.tx_queued,
            tx_completed: p.c.tx_completed,
            tx_ring_full: p.c.tx_ring_full,
            tx_rejected: p.c.tx_rejected,
            tx_kicks: p.c.tx_kicks,
            tx_kick_errors: p.c.tx_kick_errors,
            busy_polls: p.c.busy_polls,
            fill_short: p.c.fill_short,
            fill_wakeups: p.c.fill_wakeups,
            fill_level: u64::from(p.fill_level()),
            kernel: p.kernel_stats(),
        }
    }
}
