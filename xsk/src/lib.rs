//! AF_XDP for the scrubber: the XSKMAP redirect program (raw `bpf(2)`, no C toolchain), one
//! shared UMEM per socket pair bound to queue *q* of both the **ext** and the **int** device, and a
//! small batched ring API that a worker loop drives without allocating or making a syscall per
//! packet.
//!
//! This is the only crate of the workspace that contains `unsafe` code. Its public API is safe:
//! frames are handed out as [`Desc`] values whose ownership the [`SocketPair`] tracks, so a frame that
//! the kernel may be writing can never be borrowed, and a descriptor can never be queued twice.
//!
//! ```text
//!   ext NIC queue q ──XDP redirect──▶ ext socket ─┐           ┌─ int socket ◀──XDP redirect── int NIC queue q
//!                                    (rx,tx,fq,cq)│  one UMEM │(rx,tx,fq,cq)
//!                                                 └SocketPair─┘
//! ```
//!
//! Typical use (error handling elided):
//!
//! ```no_run
//! use scrubber_xsk::{AttachMode, Desc, Fallback, Side, SocketPair, SocketPairConfig, XdpProgram};
//! # fn main() -> Result<(), scrubber_xsk::XskError> {
//! scrubber_xsk::raise_memlock();
//! let queues = scrubber_xsk::rx_queue_count("ext0")?;
//! let ext = XdpProgram::attach("ext0", queues, AttachMode::Native, Fallback::Pass)?;
//! let int = XdpProgram::attach("int0", queues, AttachMode::Native, Fallback::Pass)?;
//! let mut w = SocketPair::new(&SocketPairConfig::new("ext0", "int0", 0))?;
//! ext.register(0, w.fd(Side::Ext))?;
//! int.register(0, w.fd(Side::Int))?;
//! let mut batch = [Desc::default(); 64];
//! loop {
//!     let n = w.rx_batch(Side::Ext, &mut batch);
//!     // judge batch[..n] with w.frame_mut(&d) ... then forward everything:
//!     let sent = w.tx_batch(Side::Int, &batch[..n]);
//!     w.recycle(&batch[sent..n]); // the tx ring was full: drop the rest
//!     w.service();
//! #   break;
//! }
//! # Ok(()) }
//! ```
//!
//! The AF_XDP rings themselves come from the `xdpilone` crate (EUPL-1.2), kept behind
//! [`port`] and [`pair`] so it can be replaced.

pub mod bpf;
pub mod desc;
pub mod iface;
pub mod pair;
pub mod port;
pub mod single;
pub mod stats;
pub mod umem;
pub mod waker;

use std::fmt;
use std::io;

pub use bpf::{AttachMode, Fallback, XdpProgram};
pub use desc::{Desc, Side};
pub use iface::{ifindex, rx_queue_count};
pub use pair::{SocketPair, SocketPairConfig};
pub use single::{TxSocket, TxSocketConfig};
pub use stats::{KernelStats, RingStats, SideStats};
pub use umem::{FrameAccount, XDP_PACKET_HEADROOM};
pub use waker::Waker;

/// How a socket is bound to its device queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BindMode {
    /// The driver reads and writes the UMEM directly (XDP_ZEROCOPY).
    ZeroCopy,
    /// The kernel copies every frame between its own buffers and the UMEM (XDP_COPY). This is
    /// what veth and drivers without AF_XDP support give.
    Copy,
}

impl fmt::Display for BindMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindMode::ZeroCopy => "zero-copy",
            BindMode::Copy => "copy",
        })
    }
}

/// Which bind mode to ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ZeroCopy {
    /// Zero-copy when the driver supports it, copy mode otherwise (the kernel falls back by
    /// itself; when only one of the two devices supports zero-copy, both sockets are rebuilt in
    /// copy mode, since sockets sharing a UMEM share its mode). [`SocketPair::mode`] says what was
    /// obtained.
    #[default]
    Auto,
    /// Zero-copy or fail.
    On,
    /// Copy mode only.
    Off,
}

impl std::str::FromStr for ZeroCopy {
    type Err = XskError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ZeroCopy::Auto),
            "on" => Ok(ZeroCopy::On),
            "off" => Ok(ZeroCopy::Off),
            other => Err(XskError::Config(format!("zero-copy setting `{other}`: expected auto, on or off"))),
        }
    }
}

/// Everything that can go wrong setting up AF_XDP. Messages say what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XskError {
    /// The interface does not exist (in this network namespace).
    #[error("no network interface named `{ifname}` in this network namespace: check the name with `ip link show`")]
    NoSuchInterface {
        /// The name asked for.
        ifname: String,
    },
    /// The interface name cannot be a Linux interface name.
    #[error("`{ifname}` is not a valid interface name: names are 1 to 15 bytes, without '/', ':', spaces or NUL")]
    BadInterfaceName {
        /// The name given.
        ifname: String,
    },
    /// The device has no such receive queue.
    #[error(
        "interface `{ifname}` has no receive queue {queue} (it has {count}): use a queue below {count}, or add \
         queues with `ethtool -L {ifname} combined N`"
    )]
    NoSuchQueue {
        /// The interface.
        ifname: String,
        /// The queue asked for.
        queue: u32,
        /// How many receive queues it has.
        count: u32,
    },
    /// A configuration value is out of range.
    #[error("invalid AF_XDP configuration: {0}")]
    Config(String),
    /// The kernel refused to pin the UMEM (locked-memory limit).
    #[error(
        "registering the {bytes}-byte UMEM was refused ({source}): the locked-memory limit is too low. Raise it \
         (`ulimit -l unlimited`, or `LimitMEMLOCK=infinity` in the systemd unit), run with CAP_IPC_LOCK, or use \
         fewer or smaller frames"
    )]
    Memlock {
        /// Size of the UMEM that was refused.
        bytes: u64,
        /// The kernel's error (ENOBUFS, EPERM or ENOMEM).
        source: io::Error,
    },
    /// Missing privileges.
    #[error("{what}: permission denied ({source}); {need}")]
    Permission {
        /// What was being done.
        what: String,
        /// Which privileges are needed.
        need: &'static str,
        /// The kernel's error.
        source: io::Error,
    },
    /// Zero-copy was required ([`ZeroCopy::On`]) and the driver refused it.
    #[error(
        "zero-copy was required but `{ifname}` queue {queue} refused it ({source}): this driver has no AF_XDP \
         zero-copy support; use zero-copy `auto` or `off` (copy mode)"
    )]
    ZeroCopyRefused {
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// The kernel's error.
        source: io::Error,
    },
    /// Another AF_XDP socket is already bound to the queue.
    #[error(
        "`{ifname}` queue {queue} is already bound to another AF_XDP socket ({source}): is another scrubber or \
         AF_XDP program running on it? Find it with `ss --xdp -p` (needs the xsk_diag module) and stop it first"
    )]
    QueueBusy {
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// The kernel's error.
        source: io::Error,
    },
    /// Any other socket-level failure.
    #[error("{what} on `{ifname}` queue {queue} failed: {source}")]
    Socket {
        /// What was being done.
        what: &'static str,
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// The kernel's error.
        source: io::Error,
    },
    /// Another XDP program is attached to the interface.
    #[error(
        "another XDP program is already attached to `{ifname}` ({source}): see it with `ip link show dev {ifname}` \
         or `bpftool net`; if nothing else needs it, remove it with `ip link set dev {ifname} xdp off` (or \
         `xdpgeneric off` for a generic-mode program) and start again"
    )]
    XdpBusy {
        /// The interface.
        ifname: String,
        /// The kernel's error (EBUSY or EEXIST).
        source: io::Error,
    },
    /// The verifier rejected the redirect program (a bug here, or a very old kernel).
    #[error("the kernel verifier rejected the XDP redirect program ({source}); verifier log:\n{log}")]
    Verifier {
        /// The kernel's error.
        source: io::Error,
        /// The verifier's log.
        log: String,
    },
    /// Attaching the program failed for another reason.
    #[error("attaching the XDP program to `{ifname}` in {mode} mode failed ({source}){hint}")]
    Attach {
        /// The interface.
        ifname: String,
        /// The mode asked for.
        mode: AttachMode,
        /// The kernel's error.
        source: io::Error,
        /// What to try (may be empty).
        hint: String,
    },
    /// The queue is outside the XSKMAP.
    #[error(
        "queue {queue} is outside the XSKMAP of `{ifname}`, which has {count} entries: attach with the device's \
         receive queue count"
    )]
    QueueOutsideMap {
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// Number of map entries.
        count: u32,
    },
    /// Any other bpf(2) failure.
    #[error("bpf({cmd}) failed: {source}")]
    Bpf {
        /// The bpf command.
        cmd: &'static str,
        /// The kernel's error.
        source: io::Error,
    },
    /// The frame accounting check found a frame in no place or in two (a bug in this crate).
    #[error("UMEM frame accounting is broken (a bug, please report): {0}")]
    Accounting(String),
}

/// The locked-memory limit in force after [`raise_memlock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemlockLimit {
    /// No limit.
    Unlimited,
    /// A limit in bytes (the soft limit).
    Bytes(u64),
}

impl fmt::Display for MemlockLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemlockLimit::Unlimited => f.write_str("unlimited"),
            MemlockLimit::Bytes(b) => write!(f, "{} KiB", b / 1024),
        }
    }
}

/// Raise RLIMIT_MEMLOCK to infinity if permitted, else the soft limit to the hard limit, and
/// return the limit now in force. UMEM registration is charged against this limit unless the
/// process has CAP_IPC_LOCK (kernels before 5.11 also charge BPF maps to it).
pub fn raise_memlock() -> MemlockLimit {
    let inf = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads a valid, initialised rlimit struct that lives across the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &inf) } == 0 {
        return MemlockLimit::Unlimited;
    }
    let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into a valid rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut cur) } != 0 {
        return MemlockLimit::Bytes(0);
    }
    if cur.rlim_cur != cur.rlim_max {
        let raised = libc::rlimit { rlim_cur: cur.rlim_max, rlim_max: cur.rlim_max };
        // SAFETY: as above; a valid rlimit struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } == 0 {
            cur = raised;
        }
    }
    if cur.rlim_cur == libc::RLIM_INFINITY {
        MemlockLimit::Unlimited
    } else {
        MemlockLimit::Bytes(cur.rlim_cur)
    }
}

/// The calling thread's last OS error.
pub(crate) fn last_err() -> io::Error {
    io::Error::last_os_error()
}
