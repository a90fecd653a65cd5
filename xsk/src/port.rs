//! One AF_XDP socket bound to one device queue, with its four rings: rx and tx for packets,
//! fill and completion for the frames it borrows from the shared UMEM.
//!
//! This module (with [`crate::pair`]) is the only user of `xdpilone`; everything above it sees
//! [`crate::Desc`] values and the [`crate::SocketPair`] API.

use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::RawFd;

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, Errno, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, User};

use crate::desc::Desc;
use crate::stats::KernelStats;
use crate::umem::FramePool;
use crate::{BindMode, XskError};

const SOL_XDP: libc::c_int = 283;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;

/// Most tx kicks (sendto) per [`Port::kick_tx`]: in copy mode each one transmits at most 32
/// frames (the kernel's TX_BATCH_SIZE) synchronously.
const MAX_KICKS: u32 = 8;

pub(crate) fn io_err(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.get_raw().abs())
}

/// Per-socket counters kept by us (plain integers: one worker thread owns the port).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    pub busy_polls: u64,
    pub fill_submitted: u64,
    pub rx_read: u64,
    pub rx_invalid: u64,
    pub tx_queued: u64,
    pub tx_completed: u64,
    pub tx_completion_invalid: u64,
    pub tx_ring_full: u64,
    pub tx_rejected: u64,
    pub tx_kicks: u64,
    pub tx_kick_errors: u64,
    pub fill_short: u64,
    pub fill_wakeups: u64,
}

/// Ring sizes and flags for one socket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PortSizes {
    pub rx: u32,
    pub tx: u32,
    pub fill: u32,
    pub need_wakeup: bool,
}

/// One bound AF_XDP socket.
pub(crate) struct Port {
    pub(crate) ifname: String,
    pub(crate) queue: u32,
    pub(crate) mode: BindMode,
    // Rings first (dropped first), then the socket objects they came from.
    rx: RingRx,
    tx: RingTx,
    dq: DeviceQueue,
    _user: User,
    _socket: Socket,
    fd: RawFd,
    fill_size: u32,
    need_wakeup: bool,
    pub(crate) c: Counters,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("ifname", &self.ifname)
            .field("queue", &self.queue)
            .field("mode", &self.mode)
            .field("fd", &self.fd)
            .field("counters", &self.c)
            .finish_non_exhaustive()
    }
}

/// Map a bind(2) failure to the error an operator can act on.
fn bind_error(e: io::Error, ifname: &str, queue: u32, forced_zc: bool) -> XskError {
    let (ifname, q) = (ifname.to_string(), queue);
    match e.raw_os_error() {
        Some(libc::EBUSY) => XskError::QueueBusy { ifname, queue: q, source: e },
        Some(libc::EOPNOTSUPP | libc::EPROTONOSUPPORT) if forced_zc => {
            XskError::ZeroCopyRefused { ifname, queue: q, source: e }
        }
        Some(libc::ENODEV | libc::ENXIO) => XskError::NoSuchInterface { ifname },
        Some(libc::EPERM | libc::EACCES) => XskError::Permission {
            what: format!("binding an AF_XDP socket to `{ifname}` queue {q}"),
            need: "AF_XDP needs root, or CAP_NET_RAW (and CAP_NET_ADMIN to attach XDP)",
            source: e,
        },
        _ => XskError::Socket { what: "binding the AF_XDP socket", ifname, queue: q, source: e },
    }
}

/// Ask the kernel which mode the bound socket got.
fn query_mode(fd: RawFd) -> BindMode {
    let mut opts: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` (4) bytes into `opts`, which lives across the call.
    let rc = unsafe { libc::getsockopt(fd, SOL_XDP, XDP_OPTIONS, (&mut opts as *mut u32).cast(), &mut len) };
    if rc == 0 && opts & XDP_OPTIONS_ZEROCOPY != 0 {
        BindMode::ZeroCopy
    } else {
        BindMode::Copy
    }
}

impl Port {
    /// Create, configure and bind a socket for `ifname` queue `queue` on `umem`.
    ///
    /// `first`: this socket is the UMEM's own descriptor and carries the bind flags; otherwise
    /// it is a new socket bound with XDP_SHARED_UMEM (which takes no flags: mode and
    /// need_wakeup are inherited from the first socket).
    pub(crate) fn open(
        umem: &Umem,
        ifname: &str,
        queue: u32,
        first: bool,
        sizes: PortSizes,
        zero_copy: crate::ZeroCopy,
    ) -> Result<Port, XskError> {
        let sock_err = |what: &'static str| {
            let ifname = ifname.to_string();
            move |e: Errno| {
                let e = io_err(e);
                match e.raw_os_error() {
                    Some(libc::EPERM | libc::EACCES) => XskError::Permission {
                        what: format!("{what} for `{ifname}` queue {queue}"),
                        need: "AF_XDP needs root, or CAP_NET_RAW",
                        source: e,
                    },
                    Some(libc::ENODEV | libc::ENXIO) => XskError::NoSuchInterface { ifname: ifname.clone() },
                    _ => XskError::Socket { what, ifname: ifname.clone(), queue, source: e },
                }
            }
        };
        let cname = CString::new(ifname).map_err(|_| XskError::BadInterfaceName { ifname: ifname.to_string() })?;
        let mut info = IfInfo::invalid();
        info.from_name(&cname).map_err(sock_err("looking up the interface"))?;
        info.set_queue(queue);

        let socket = if first {
            Socket::with_shared(&info, umem).map_err(sock_err("creating the AF_XDP socket"))?
        } else {
            Socket::new(&info).map_err(sock_err("creating the AF_XDP socket"))?
        };
        let dq = umem.fq_cq(&socket).map_err(sock_err("mapping the fill and completion rings"))?;

        let mut bind_flags = 0u16;
        if first {
            if sizes.need_wakeup {
                bind_flags |= SocketConfig::XDP_BIND_NEED_WAKEUP;
            }
            match zero_copy {
                crate::ZeroCopy::Auto => {}
                crate::ZeroCopy::On => bind_flags |= SocketConfig::XDP_BIND_ZEROCOPY,
                crate::ZeroCopy::Off => bind_flags |= SocketConfig::XDP_BIND_COPY,
            }
        }
        let cfg = SocketConfig { rx_size: NonZeroU32::new(sizes.rx), tx_size: NonZeroU32::new(sizes.tx), bind_flags };
        let user = umem.rx_tx(&socket, &cfg).map_err(sock_err("configuring the rx and tx rings"))?;
        umem.bind(&user).map_err(|e| bind_error(io_err(e), ifname, queue, zero_copy == crate::ZeroCopy::On))?;
        let rx = user.map_rx().map_err(sock_err("mapping the rx ring"))?;
        let tx = user.map_tx().map_err(sock_err("mapping the tx ring"))?;
        let fd = user.as_raw_fd();
        // xdpilone opens sockets without SOCK_CLOEXEC: keep them out of child processes, which
        // would otherwise hold the queue bound after this process lets go of it.
        // SAFETY: fcntl on our own open descriptor, setting only its close-on-exec flag.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        Ok(Port {
            ifname: ifname.to_string(),
            queue,
            mode: query_mode(fd),
            rx,
            tx,
            dq,
            _user: user,
            _socket: socket,
            fd,
            fill_size: sizes.fill,
            need_wakeup: sizes.need_wakeup,
            c: Counters::default(),
        })
    }

    /// The socket's descriptor.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// Preferred busy polling (Linux 5.11+): this socket's receive work (the driver's NAPI
    /// poll) runs in the calling thread when it asks ([`Port::busy_poll`], `poll(2)`), up to
    /// `budget` frames at a time, for up to `usecs` µs; with the device's hard-IRQ deferral
    /// and GRO flush timeout set, the kernel leaves the NAPI instance to the application while
    /// it keeps asking.
    pub(crate) fn set_busy_poll(&self, usecs: u32, budget: u16) -> Result<(), XskError> {
        const SO_BUSY_POLL: libc::c_int = 46;
        const SO_PREFER_BUSY_POLL: libc::c_int = 69;
        const SO_BUSY_POLL_BUDGET: libc::c_int = 70;
        for (opt, v, what) in [
            (SO_PREFER_BUSY_POLL, 1i32, "setting SO_PREFER_BUSY_POLL"),
            (SO_BUSY_POLL, i32::try_from(usecs).unwrap_or(i32::MAX), "setting SO_BUSY_POLL"),
            (SO_BUSY_POLL_BUDGET, i32::from(budget), "setting SO_BUSY_POLL_BUDGET"),
        ] {
            // SAFETY: setsockopt on our own open socket with a pointer to a live c_int and its
            // exact size.
            let rc = unsafe {
                libc::setsockopt(
                    self.fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&v as *const i32).cast::<libc::c_void>(),
                    std::mem::size_of::<i32>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(XskError::Socket {
                    what,
                    ifname: self.ifname.clone(),
                    queue: self.queue,
                    source: io::Error::last_os_error(),
                });
            }
        }
        Ok(())
    }

    /// Run the driver's receive processing for this socket now (busy polling; see
    /// [`Port::set_busy_poll`]): one non-blocking `recvfrom`.
    #[inline]
    pub(crate) fn busy_poll(&mut self) {
        self.c.busy_polls += 1;
        // SAFETY: recvfrom with a null, zero-length buffer on our own socket only runs the
        // socket's receive processing (its NAPI busy loop); nothing is written to memory.
        unsafe {
            libc::recvfrom(
                self.fd,
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Read up to `out.len()` received descriptors; their frames pass into our hands.
    #[inline]
    pub(crate) fn rx_batch(&mut self, pool: &mut FramePool, out: &mut [Desc]) -> usize {
        let want = u32::try_from(out.len()).unwrap_or(u32::MAX);
        if want == 0 {
            return 0;
        }
        let mut reader = self.rx.receive(want);
        let mut n = 0;
        while n < out.len() {
            let Some(d) = reader.read() else { break };
            self.c.rx_read += 1;
            if pool.fits(d.addr, u64::from(d.len)) && pool.take_from_kernel(d.addr) {
                out[n] = Desc::new(d.addr, d.len);
                n += 1;
            } else {
                self.c.rx_invalid += 1;
            }
        }
        reader.release();
        n
    }

    /// Queue descriptors for transmission; see [`crate::SocketPair::tx_batch`].
    #[inline]
    pub(crate) fn tx_batch(&mut self, pool: &mut FramePool, descs: &[Desc]) -> usize {
        let mut used = 0usize;
        // Two rounds: the first reservation may be limited by a stale cached view of the
        // kernel's consumer; an exhausted reservation refreshes it.
        for _ in 0..2 {
            if used == descs.len() {
                break;
            }
            let want = u32::try_from(descs.len() - used).unwrap_or(u32::MAX);
            let mut w = self.tx.transmit(want);
            let cap = w.capacity();
            let mut put = 0u32;
            while used < descs.len() && put < cap {
                let d = descs[used];
                used += 1;
                if d.len < 14 || !pool.fits(d.addr, u64::from(d.len)) || !pool.is_owned(d.addr) {
                    // Not a frame in our hands, or not a sendable length: never hand it to the
                    // kernel (an invalid descriptor would be dropped there *and* its frame lost).
                    self.c.tx_rejected += 1;
                    pool.release(d.addr);
                    continue;
                }
                if w.insert_once(XdpDesc { addr: d.addr, len: d.len, options: 0 }) {
                    pool.give_up(d.addr);
                    put += 1;
                } else {
                    used -= 1;
                    break;
                }
            }
            w.commit();
            self.c.tx_queued += u64::from(put);
            if cap == 0 {
                break;
            }
        }
        if used < descs.len() {
            self.c.tx_ring_full += 1;
        }
        used
    }

    /// Move completed transmissions back to the free list.
    #[inline]
    pub(crate) fn reap_completions(&mut self, pool: &mut FramePool) -> u32 {
        let mut r = self.dq.complete(u32::MAX);
        let mut n = 0;
        while let Some(addr) = r.read() {
            n += 1;
            if !pool.complete(addr) {
                self.c.tx_completion_invalid += 1;
            }
        }
        r.release();
        self.c.tx_completed += u64::from(n);
        n
    }

    /// Kick the kernel to transmit, only while the tx ring holds descriptors it has not
    /// consumed and (with need_wakeup) it asks for a kick.
    #[inline]
    pub(crate) fn kick_tx(&mut self) {
        let mut pending = self.tx.pending();
        let mut kicks = 0;
        while pending > 0 && kicks < MAX_KICKS && (!self.need_wakeup || self.tx.needs_wakeup()) {
            // SAFETY: sendto with a null, zero-length buffer and no address only asks the kernel
            // to process the tx ring of our own open socket.
            let rc = unsafe { libc::sendto(self.fd, std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
            kicks += 1;
            self.c.tx_kicks += 1;
            if rc < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    // Busy device, full completion ring, more to send: try again next round.
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS) => {}
                    _ => self.c.tx_kick_errors += 1,
                }
            }
            let now = self.tx.pending();
            if now >= pending {
                break; // no synchronous progress (zero-copy drivers transmit from NAPI)
            }
            pending = now;
        }
    }

    /// Top the fill ring up from the free list, and wake the driver if it asks for it.
    #[inline]
    pub(crate) fn refill(&mut self, pool: &mut FramePool) {
        let in_ring = self.dq.pending();
        let want = self.fill_size.saturating_sub(in_ring);
        if want == 0 {
            return;
        }
        let avail = want.min(u32::try_from(pool.free_len()).unwrap_or(u32::MAX));
        if avail < want {
            self.c.fill_short += 1;
        }
        let mut left = avail;
        for _ in 0..2 {
            if left == 0 {
                break;
            }
            let mut w = self.dq.fill(left);
            let cap = w.capacity().min(left);
            // Exactly `cap` items: xdpilone's insert drops an item it pulled past capacity.
            let n = w.insert((0..cap).filter_map(|_| pool.pop_free()));
            w.commit();
            self.c.fill_submitted += u64::from(n);
            left -= n;
            if cap == 0 {
                break;
            }
        }
        if self.need_wakeup && self.dq.needs_wakeup() {
            self.c.fill_wakeups += 1;
            // SAFETY: recvfrom with a null, zero-length buffer on our own socket only wakes the
            // driver's receive processing.
            unsafe {
                libc::recvfrom(
                    self.fd,
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
    }

    /// Frames in the fill ring the kernel has not taken yet.
    pub(crate) fn fill_level(&self) -> u32 {
        self.dq.pending()
    }

    /// Descriptors in the tx ring the kernel has not consumed.
    pub(crate) fn tx_pending(&self) -> u32 {
        self.tx.pending()
    }

    /// Descriptors waiting in the rx ring (advisory).
    pub(crate) fn rx_available(&self) -> u32 {
        self.rx.available()
    }

    /// The kernel's XDP_STATISTICS for this socket.
    pub(crate) fn kernel_stats(&self) -> Option<KernelStats> {
        let s = self.dq.statistics_v2().ok()?;
        Some(KernelStats {
            rx_dropped: s.rx_dropped,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: s.tx_ring_empty_descs,
        })
    }
}
