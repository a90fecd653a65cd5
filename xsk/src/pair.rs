//! The socket pair: one UMEM shared by the ext and int sockets of one queue, and a batched,
//! allocation-free ring API. (A "worker" is the thread that drives one; see the scrubber's
//! `dataplane::worker`.)
//!
//! A worker loop looks like this:
//!
//! ```text
//! loop {
//!     n = rx_batch(Ext, &mut batch)          // up to 64 frames now in our hands
//!     for each: frame_mut(&d) → judge        // forward / answer / drop
//!     tx_batch(Int, &fwd)  tx_batch(Ext, &answers)  recycle(&drops)
//!     (same for Int → Ext)
//!     service()                              // completions → free list → fill rings; kick tx
//!     if idle: poll_wait(..) / yield / spin
//! }
//! ```
//!
//! Frames never leak: each is always in exactly one place (see [`crate::umem`]), and
//! [`SocketPair::check_accounting`] proves it.

use std::os::fd::AsRawFd as _;
use std::os::fd::BorrowedFd;

use xdpilone::{Umem, UmemConfig};

use crate::desc::{Desc, Side};
use crate::port::{io_err, Port, PortSizes};
use crate::stats::{RingStats, SideStats};
use crate::umem::{FrameAccount, FramePool, UmemArea, XDP_PACKET_HEADROOM};
use crate::{iface, BindMode, XskError, ZeroCopy};

/// Settings for one socket pair (one queue of ext and int).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketPairConfig {
    /// The internet-facing interface.
    pub ext: String,
    /// The server-facing interface.
    pub int: String,
    /// Queue index on both interfaces.
    pub queue: u32,
    /// Frame size: 2048 or 4096 bytes. The first [`XDP_PACKET_HEADROOM`] bytes are headroom.
    pub frame_size: u32,
    /// Frames in the UMEM (shared by both sockets); at least twice the fill ring size.
    pub frame_count: u32,
    /// Receive ring entries per socket (power of two).
    pub rx_size: u32,
    /// Transmit ring entries per socket (power of two).
    pub tx_size: u32,
    /// Fill ring entries per socket (power of two); kept full from the free list.
    pub fill_size: u32,
    /// Completion ring entries per socket (power of two, at least `tx_size`).
    pub comp_size: u32,
    /// Zero-copy policy.
    pub zero_copy: ZeroCopy,
    /// Bind with XDP_USE_NEED_WAKEUP (kick the kernel only when it asks). Default on.
    pub need_wakeup: bool,
}

impl SocketPairConfig {
    /// Defaults: 4096 frames of 2048 bytes (8 MiB), rings of 1024, zero-copy auto,
    /// need_wakeup on.
    pub fn new(ext: &str, int: &str, queue: u32) -> SocketPairConfig {
        SocketPairConfig {
            ext: ext.to_string(),
            int: int.to_string(),
            queue,
            frame_size: 2048,
            frame_count: 4096,
            rx_size: 1024,
            tx_size: 1024,
            fill_size: 1024,
            comp_size: 1024,
            zero_copy: ZeroCopy::Auto,
            need_wakeup: true,
        }
    }

    /// UMEM size in bytes.
    pub fn umem_bytes(&self) -> u64 {
        u64::from(self.frame_size) * u64::from(self.frame_count)
    }

    fn validate(&self) -> Result<(), XskError> {
        let bad = |m: String| Err(XskError::Config(m));
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return bad(format!("frame size {} (use 2048 or 4096)", self.frame_size));
        }
        for (name, v) in [
            ("rx ring", self.rx_size),
            ("tx ring", self.tx_size),
            ("fill ring", self.fill_size),
            ("completion ring", self.comp_size),
        ] {
            if !v.is_power_of_two() || !(64..=65536).contains(&v) {
                return bad(format!("{name} size {v} (use a power of two from 64 to 65536)"));
            }
        }
        if self.comp_size < self.tx_size {
            return bad(format!("completion ring ({}) smaller than the tx ring ({})", self.comp_size, self.tx_size));
        }
        if u64::from(self.frame_count) < 2 * u64::from(self.fill_size) + 128 {
            return bad(format!(
                "{} frames cannot keep two fill rings of {} full and leave frames to work with (use at least {})",
                self.frame_count,
                self.fill_size,
                2 * u64::from(self.fill_size) + 128
            ));
        }
        if self.umem_bytes() > (1 << 34) {
            return bad(format!("UMEM of {} bytes is too large (max 16 GiB)", self.umem_bytes()));
        }
        if self.ext == self.int {
            return bad(format!("ext and int are the same interface `{}`", self.ext));
        }
        Ok(())
    }
}

/// One queue of ext and one of int on a shared UMEM; see the [module docs](self).
pub struct SocketPair {
    // Field order is drop order: sockets and rings, then the UMEM registration, then the memory.
    ports: [Port; 2],
    _umem: Umem,
    pool: FramePool,
    bad_recycles: u64,
    /// Which side refills first (alternates, so that neither starves the other).
    refill_first: usize,
}

// SAFETY: a SocketPair owns its sockets, ring mappings and UMEM mapping outright; the raw pointers
// inside (xdpilone's ring and UMEM pointers, our mapping) refer to process-wide mappings that
// stay valid on any thread, and nothing in it is tied to the creating thread. Moving the whole
// worker to another thread (its pinned worker thread) is therefore sound; it is not `Sync`.
unsafe impl Send for SocketPair {}

impl std::fmt::Debug for SocketPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketPair")
            .field("ext", &self.ports[0])
            .field("int", &self.ports[1])
            .field("pool", &self.pool)
            .field("bad_recycles", &self.bad_recycles)
            .finish_non_exhaustive()
    }
}

impl SocketPair {
    /// Open both sockets on one shared UMEM and fill their fill rings.
    ///
    /// The ext socket owns the UMEM registration; the int socket binds to it with
    /// XDP_SHARED_UMEM and its own fill and completion rings. With [`ZeroCopy::Auto`] the kernel
    /// tries zero-copy and falls back to copy mode; if ext got zero-copy and int cannot share it,
    /// both are rebuilt in copy mode.
    pub fn new(cfg: &SocketPairConfig) -> Result<SocketPair, XskError> {
        cfg.validate()?;
        for ifname in [&cfg.ext, &cfg.int] {
            let count = iface::rx_queue_count(ifname)?;
            if cfg.queue >= count {
                return Err(XskError::NoSuchQueue { ifname: ifname.clone(), queue: cfg.queue, count });
            }
        }
        // The kernel releases a closed socket's hold on its queue a little later (deferred
        // work), so a restart right after the previous owner exited can find the queue busy
        // for a moment: retry for up to a second before reporting it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            match Self::build_any_mode(cfg) {
                Err(XskError::QueueBusy { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    fn build_any_mode(cfg: &SocketPairConfig) -> Result<SocketPair, XskError> {
        match Self::build(cfg, cfg.zero_copy) {
            Err(XskError::Socket { .. } | XskError::ZeroCopyRefused { .. }) if cfg.zero_copy == ZeroCopy::Auto => {
                // Typically: ext bound zero-copy, int's driver cannot; sockets sharing a UMEM
                // share its mode, so retry both in copy mode.
                Self::build(cfg, ZeroCopy::Off)
            }
            r => r,
        }
    }

    fn build(cfg: &SocketPairConfig, zc: ZeroCopy) -> Result<SocketPair, XskError> {
        let bytes = cfg.umem_bytes();
        let area = UmemArea::new(bytes as usize)?;
        let ucfg = UmemConfig {
            fill_size: cfg.fill_size,
            complete_size: cfg.comp_size,
            frame_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: `area` is a fresh page-aligned mapping of exactly `bytes` bytes; it is moved
        // into the SocketPair's `pool`, which is declared after `umem` and `ports`, so it outlives
        // every user of the registration.
        let umem = unsafe { Umem::new(ucfg, area.as_raw()) }.map_err(|e| {
            let e = io_err(e);
            match e.raw_os_error() {
                Some(libc::ENOBUFS | libc::ENOMEM | libc::EPERM) => XskError::Memlock { bytes, source: e },
                Some(libc::EACCES) => XskError::Permission {
                    what: "creating an AF_XDP socket".into(),
                    need: "AF_XDP needs root, or CAP_NET_RAW",
                    source: e,
                },
                Some(libc::EAFNOSUPPORT) => {
                    XskError::Config(format!("this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS): {e}"))
                }
                _ => XskError::Socket {
                    what: "registering the UMEM",
                    ifname: cfg.ext.clone(),
                    queue: cfg.queue,
                    source: e,
                },
            }
        })?;
        let pool = FramePool::new(area, cfg.frame_size, cfg.frame_count);
        let sizes = PortSizes { rx: cfg.rx_size, tx: cfg.tx_size, fill: cfg.fill_size, need_wakeup: cfg.need_wakeup };
        let ext = Port::open(&umem, &cfg.ext, cfg.queue, true, sizes, zc)?;
        let int = Port::open(&umem, &cfg.int, cfg.queue, false, sizes, zc)?;
        let mut w = SocketPair { ports: [ext, int], _umem: umem, pool, bad_recycles: 0, refill_first: 0 };
        for side in Side::BOTH {
            let SocketPair { ports, pool, .. } = &mut w;
            ports[side.idx()].refill(pool);
        }
        Ok(w)
    }

    /// The AF_XDP socket of `side`, to register in that interface's XSKMAP
    /// ([`crate::XdpProgram::register`]) or to poll.
    pub fn fd(&self, side: Side) -> BorrowedFd<'_> {
        // SAFETY: the descriptor belongs to the port's socket, which lives as long as `self`;
        // the returned borrow cannot outlive `self`.
        unsafe { BorrowedFd::borrow_raw(self.ports[side.idx()].fd()) }
    }

    /// The ext socket ([`SocketPair::fd`]`(Side::Ext)`).
    pub fn ext_fd(&self) -> BorrowedFd<'_> {
        self.fd(Side::Ext)
    }

    /// The int socket ([`SocketPair::fd`]`(Side::Int)`).
    pub fn int_fd(&self) -> BorrowedFd<'_> {
        self.fd(Side::Int)
    }

    /// The bind mode the socket of `side` obtained.
    pub fn mode(&self, side: Side) -> BindMode {
        self.ports[side.idx()].mode
    }

    /// Interface name of `side`.
    pub fn ifname(&self, side: Side) -> &str {
        &self.ports[side.idx()].ifname
    }

    /// The queue this worker serves.
    pub fn queue(&self) -> u32 {
        self.ports[0].queue
    }

    /// Frame size in bytes.
    pub fn frame_size(&self) -> usize {
        self.pool.frame_size() as usize
    }

    /// Receive up to `out.len()` frames from `side`; they are in our hands until given to
    /// [`SocketPair::tx_batch`] or [`SocketPair::recycle`]. Returns how many were written to `out`.
    #[inline]
    pub fn rx_batch(&mut self, side: Side, out: &mut [Desc]) -> usize {
        let SocketPair { ports, pool, .. } = self;
        ports[side.idx()].rx_batch(pool, out)
    }

    /// The packet bytes of a frame in hand (`d.len()` bytes), or `None` if `d` is not in hand.
    #[inline]
    pub fn frame_mut(&mut self, d: &Desc) -> Option<&mut [u8]> {
        self.pool.bytes_mut(d.addr, u64::from(d.len))
    }

    /// Read-only view of [`SocketPair::frame_mut`].
    #[inline]
    pub fn frame(&mut self, d: &Desc) -> Option<&[u8]> {
        self.frame_mut(d).map(|b| &*b)
    }

    /// The whole buffer from the packet's start to the end of its frame (for rewriting and
    /// growing a packet; then [`Desc::set_len`]), or `None` if `d` is not in hand.
    #[inline]
    pub fn frame_buf_mut(&mut self, d: &Desc) -> Option<&mut [u8]> {
        let cap = self.capacity(d) as u64;
        self.pool.bytes_mut(d.addr, cap)
    }

    /// Two different frames in hand at once (e.g. copy from a received frame into an allocated
    /// one): the full buffers as in [`SocketPair::frame_buf_mut`].
    pub fn two_frames_mut(&mut self, a: &Desc, b: &Desc) -> Option<(&mut [u8], &mut [u8])> {
        let (ca, cb) = (self.capacity(a) as u64, self.capacity(b) as u64);
        self.pool.two_mut((a.addr, ca), (b.addr, cb))
    }

    /// The full buffers (as [`SocketPair::frame_buf_mut`]) of several different frames in hand at
    /// once, for judging a batch: `out[k]` gets `descs[k]`'s. `false` (and `out` untouched) when
    /// a frame is not in hand or named twice.
    pub fn frames_mut<'a>(&'a mut self, descs: &[Desc], out: &mut [&'a mut [u8]]) -> bool {
        let mut ranges = [(0u64, 0u64); 256];
        if descs.len() > ranges.len() {
            return false;
        }
        for (r, d) in ranges.iter_mut().zip(descs) {
            *r = (d.addr, self.capacity(d) as u64);
        }
        self.pool.many_mut(&ranges[..descs.len()], out)
    }

    /// Bytes available from the packet's start to the end of its frame.
    #[inline]
    pub fn capacity(&self, d: &Desc) -> usize {
        let fs = self.pool.frame_size();
        (fs - (d.addr - self.pool.base(d.addr)).min(fs)) as usize
    }

    /// Queue frames in hand for transmission on `side` (the frame moves, nothing is copied).
    ///
    /// Returns `n`: `descs[..n]` are no longer ours (queued, or, when not in hand or of a bad
    /// length, refused and counted in [`SideStats::tx_rejected`]; refused frames in hand are
    /// dropped); `descs[n..]` did not fit (tx ring full) and are still ours: retry or recycle.
    #[inline]
    pub fn tx_batch(&mut self, side: Side, descs: &[Desc]) -> usize {
        let SocketPair { ports, pool, .. } = self;
        ports[side.idx()].tx_batch(pool, descs)
    }

    /// Give frames in hand back (dropped packets). Descriptors not in hand are ignored and
    /// counted ([`RingStats::bad_recycles`]).
    #[inline]
    pub fn recycle(&mut self, descs: &[Desc]) {
        for d in descs {
            if !self.pool.release(d.addr) {
                self.bad_recycles += 1;
            }
        }
    }

    /// A spare frame (e.g. for a second output packet): length 0, [`SocketPair::capacity`] bytes
    /// after [`XDP_PACKET_HEADROOM`]. `None` when every frame is in use.
    #[inline]
    pub fn alloc_frame(&mut self) -> Option<Desc> {
        let base = self.pool.alloc()?;
        Some(Desc::new(base + u64::from(XDP_PACKET_HEADROOM), 0))
    }

    /// Housekeeping, once per loop iteration: completed transmissions back to the free list,
    /// kick transmission (only when a tx ring holds unconsumed descriptors and the kernel asks
    /// for it), keep both fill rings full. No syscall when there is nothing to kick.
    #[inline]
    pub fn service(&mut self) {
        let SocketPair { ports, pool, refill_first, .. } = self;
        for p in ports.iter_mut() {
            p.reap_completions(pool);
        }
        for p in ports.iter_mut() {
            p.kick_tx();
        }
        let first = *refill_first;
        *refill_first ^= 1;
        ports[first].refill(pool);
        ports[first ^ 1].refill(pool);
    }

    /// Turn on preferred busy polling on both sockets (see the crate docs): the calling worker
    /// then runs both devices' receive processing itself, `budget` frames at a time, whenever it
    /// calls [`SocketPair::busy_poll`] or [`SocketPair::poll_wait`]. Pair it with the devices'
    /// `napi_defer_hard_irqs` and `gro_flush_timeout`, so that the kernel leaves the NAPI
    /// instances to the worker while it polls.
    pub fn set_busy_poll(&self, usecs: u32, budget: u16) -> Result<(), XskError> {
        for p in &self.ports {
            p.set_busy_poll(usecs, budget)?;
        }
        Ok(())
    }

    /// Run both sockets' receive processing now (busy polling): frames that arrived are put on
    /// the rx rings. Two syscalls; only with [`SocketPair::set_busy_poll`] on.
    #[inline]
    pub fn busy_poll(&mut self) {
        for p in self.ports.iter_mut() {
            p.busy_poll();
        }
    }

    /// Wait up to `timeout_ms` (negative: forever) until either socket has frames to read,
    /// using poll(2) on both sockets (which also kicks pending transmissions in copy mode).
    /// Returns whether a socket became readable.
    pub fn poll_wait(&mut self, timeout_ms: i32) -> bool {
        self.poll_wait_with(timeout_ms, None)
    }

    /// [`SocketPair::poll_wait`], also waking when `extra` (e.g. a [`crate::Waker`]) becomes
    /// readable.
    pub fn poll_wait_with(&mut self, timeout_ms: i32, extra: Option<BorrowedFd<'_>>) -> bool {
        let mut fds = [0usize, 1, 2].map(|i| libc::pollfd {
            fd: match i {
                0 | 1 => self.ports[i].fd(),
                _ => extra.map_or(-1, |f| f.as_raw_fd()),
            },
            events: libc::POLLIN | if i < 2 && self.ports[i].tx_pending() > 0 { libc::POLLOUT } else { 0 },
            revents: 0,
        });
        // SAFETY: `fds` is a valid array of three pollfd structs that lives across the call (a
        // negative fd is ignored by poll).
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        rc > 0 && fds.iter().any(|p| p.revents & libc::POLLIN != 0)
    }

    /// Frames waiting in `side`'s rx ring (advisory; no barrier).
    pub fn rx_available(&self, side: Side) -> u32 {
        self.ports[side.idx()].rx_available()
    }

    /// Descriptors in `side`'s tx ring that the kernel has not consumed yet.
    pub fn tx_pending(&self, side: Side) -> u32 {
        self.ports[side.idx()].tx_pending()
    }

    /// Counters, including the kernel's XDP_STATISTICS (one getsockopt per socket: not for
    /// the per-packet path).
    pub fn stats(&self) -> RingStats {
        let side = |p: &Port| SideStats {
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
        };
        RingStats {
            ext: side(&self.ports[0]),
            int: side(&self.ports[1]),
            bad_recycles: self.bad_recycles,
            free_frames: self.pool.free_len() as u64,
            in_hand: self.pool.in_hand(),
        }
    }

    /// Where the frames are, by our counters.
    pub fn frame_account(&self) -> FrameAccount {
        let k = |p: &Port| {
            (
                p.c.fill_submitted.wrapping_sub(p.c.rx_read),
                p.c.tx_queued.wrapping_sub(p.c.tx_completed),
                p.c.rx_invalid + p.c.tx_completion_invalid,
            )
        };
        let (e, i) = (k(&self.ports[0]), k(&self.ports[1]));
        FrameAccount {
            total: self.pool.frames(),
            free: self.pool.free_len() as u64,
            in_hand: self.pool.in_hand(),
            kernel_rx: [e.0, i.0],
            kernel_tx: [e.1, i.1],
            lost: e.2 + i.2,
        }
    }

    /// Verify that every frame is in exactly one place: the places add up to the frame count,
    /// the in-hand bitmap matches its counter, the free list holds distinct frames not in hand,
    /// and the kernel holds no more than its rings can. Allocates; not for the packet path.
    pub fn check_accounting(&self) -> Result<FrameAccount, XskError> {
        let a = self.frame_account();
        self.pool.self_check().map_err(XskError::Accounting)?;
        if a.placed() != a.total {
            return Err(XskError::Accounting(format!(
                "frames placed {} != frames in UMEM {}: {a:?}",
                a.placed(),
                a.total
            )));
        }
        for s in Side::BOTH {
            let p = &self.ports[s.idx()];
            if u64::from(p.fill_level()) > a.kernel_rx[s.idx()] {
                return Err(XskError::Accounting(format!(
                    "{s:?} fill ring holds {} frames but only {} were given for receiving",
                    p.fill_level(),
                    a.kernel_rx[s.idx()]
                )));
            }
            if u64::from(p.tx_pending()) > a.kernel_tx[s.idx()] {
                return Err(XskError::Accounting(format!(
                    "{s:?} tx ring holds {} descriptors but only {} are outstanding",
                    p.tx_pending(),
                    a.kernel_tx[s.idx()]
                )));
            }
        }
        Ok(a)
    }
}
