//! The XDP redirect program, loaded and attached with the raw `bpf(2)` system call: no clang,
//! no libbpf, no C at build time.
//!
//! The whole in-kernel part of the scrubber is six instruction slots:
//!
//! ```text
//! r2 = *(u32 *)(r1 + 16)        ; xdp_md.rx_queue_index
//! r1 = map_fd ll                ; the XSKMAP (ld_imm64 with BPF_PSEUDO_MAP_FD: two slots)
//! r3 = FALLBACK                 ; returned when no socket is registered for this queue
//! call bpf_redirect_map         ; helper 51
//! exit                          ; r0 = XDP_REDIRECT, or FALLBACK
//! ```
//!
//! It is attached with `BPF_LINK_CREATE`, so the attachment belongs to a file descriptor: when
//! the [`XdpProgram`] is dropped, or the process dies for any reason (SIGKILL included), the
//! kernel closes the descriptor and the program is gone from the interface.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::{iface, last_err, XskError};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_PSEUDO_MAP_FD: u8 = 1;

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// XDP action codes (enum xdp_action).
const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;

/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// Verifier log buffer size used when a load fails.
const LOG_SIZE: usize = 64 * 1024;

/// What the program returns for a frame that arrives on a queue with no registered socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// `XDP_PASS`: the frame goes up the kernel stack as if no program were attached. The
    /// default: queues nobody serves (more queues than workers, a worker still starting or
    /// already gone) keep working like a plain interface instead of black-holing traffic. On a
    /// bump-in-the-wire box without IP addresses on ext/int the kernel then drops such frames
    /// anyway.
    #[default]
    Pass,
    /// `XDP_DROP`: the frame is discarded. Use when nothing may bypass the scrubber, e.g. when
    /// the kernel stack on this box would otherwise forward (bridge or route) unjudged frames.
    Drop,
}

impl Fallback {
    fn action(self) -> i32 {
        match self {
            Fallback::Pass => XDP_PASS,
            Fallback::Drop => XDP_DROP,
        }
    }
}

/// How the program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AttachMode {
    /// In the driver (XDP_FLAGS_DRV_MODE): the fast path; required for zero-copy.
    #[default]
    Native,
    /// In the generic, skb-based hook (XDP_FLAGS_SKB_MODE): works on any device, slowly. Only
    /// when asked for.
    Generic,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        })
    }
}

impl AttachMode {
    fn flags(self) -> u32 {
        match self {
            AttachMode::Native => XDP_FLAGS_DRV_MODE,
            AttachMode::Generic => XDP_FLAGS_SKB_MODE,
        }
    }
}

/// One eBPF instruction (`struct bpf_insn`), 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high nibble (little-endian bitfield).
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn { code, regs: (src << 4) | (dst & 0x0f), off, imm }
    }

    /// Little-endian byte encoding, as the kernel reads it on x86-64 and arm64.
    #[cfg(test)]
    fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// The redirect program for map `map_fd` with fallback action `fallback`.
fn redirect_program(map_fd: RawFd, fallback: Fallback) -> [Insn; 6] {
    // Opcodes: BPF_LDX|BPF_MEM|BPF_W, BPF_LD|BPF_DW|BPF_IMM, BPF_ALU64|BPF_MOV|BPF_K,
    // BPF_JMP|BPF_CALL, BPF_JMP|BPF_EXIT.
    [
        Insn::new(0x61, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        Insn::new(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        Insn::new(0, 0, 0, 0, 0),
        Insn::new(0xb7, 3, 0, 0, fallback.action()),
        Insn::new(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        Insn::new(0x95, 0, 0, 0, 0),
    ]
}

/// `union bpf_attr` for BPF_MAP_CREATE (the leading fields; the kernel zero-fills the rest).
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` for BPF_PROG_LOAD (leading fields).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_MAP_*_ELEM.
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `union bpf_attr` for BPF_LINK_CREATE (leading fields).
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// Call bpf(2) with `attr` and return the new fd or result.
///
/// # Safety
///
/// `T` must be the `#[repr(C)]` attribute layout that command `cmd` expects, with no implicit
/// padding, and every pointer stored in it must be valid for the kernel to read (or, for the
/// log buffer, write) the advertised length for the duration of the call.
unsafe fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller guarantees `attr` is a valid attribute block for `cmd`; we pass its
    // exact size so the kernel reads nothing beyond it.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(last_err())
    } else {
        Ok(rc)
    }
}

/// Wrap a new descriptor returned by the kernel.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful bpf(2) call that creates a descriptor;
    // nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn name16(s: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = s.len().min(15);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

fn is_perm(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

const BPF_NEED: &str = "loading and attaching XDP needs root, or CAP_BPF and CAP_NET_ADMIN (kernels before 5.11 \
                        also need a higher locked-memory limit: `ulimit -l unlimited`)";

fn create_xskmap(entries: u32) -> Result<OwnedFd, XskError> {
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries,
        map_flags: 0,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: name16("scrubber_xsks"),
    };
    // SAFETY: MapCreateAttr is the BPF_MAP_CREATE layout (no padding, no pointers).
    match unsafe { sys_bpf(BPF_MAP_CREATE, &mut attr) } {
        Ok(fd) => Ok(owned(fd)),
        Err(e) if is_perm(&e) => {
            Err(XskError::Permission { what: "creating the XSKMAP".into(), need: BPF_NEED, source: e })
        }
        Err(e) => Err(XskError::Bpf { cmd: "BPF_MAP_CREATE", source: e }),
    }
}

fn load_program(map: &OwnedFd, fallback: Fallback) -> Result<OwnedFd, XskError> {
    load_insns(&redirect_program(map.as_raw_fd(), fallback))
}

/// PROG_LOAD an XDP program; on failure, load again with the verifier log on and return it.
fn load_insns(insns: &[Insn]) -> Result<OwnedFd, XskError> {
    let license = b"Dual MIT/GPL\0";
    let mut log = vec![0u8; LOG_SIZE];
    let mut last = None;
    for log_level in [0u32, 1] {
        let (log_size, log_buf) = if log_level > 0 { (LOG_SIZE as u32, log.as_mut_ptr() as u64) } else { (0, 0) };
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_XDP,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level,
            log_size,
            log_buf,
            kern_version: 0,
            prog_flags: 0,
            prog_name: name16("scrubber_redir"),
            prog_ifindex: 0,
            expected_attach_type: BPF_XDP,
        };
        // SAFETY: ProgLoadAttr is the BPF_PROG_LOAD layout (explicitly 8-byte aligned fields, no
        // implicit padding); `insns`, `license` and `log` outlive the call and `log_size` is the
        // length of `log`.
        match unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) } {
            Ok(fd) => return Ok(owned(fd)),
            // EPERM: no privileges. (EACCES from PROG_LOAD is the verifier refusing.)
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && log_level == 0 => {
                return Err(XskError::Permission { what: "loading the XDP program".into(), need: BPF_NEED, source: e })
            }
            Err(e) => last = Some(e),
        }
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]).trim_end().to_string();
    Err(XskError::Verifier { source: last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)), log: text })
}

fn attach_hint(ifname: &str, mode: AttachMode, e: &io::Error) -> String {
    match (mode, e.raw_os_error()) {
        (AttachMode::Native, Some(libc::EINVAL | libc::ERANGE | libc::ENOSPC)) => format!(
            ". If `{ifname}` is a veth: native XDP attaches only while its peer's MTU is below ~3500 (lower it with \
             `ip link set dev PEER mtu 1500`) and the veth has at least as many rx queues as its peer has tx \
             queues; otherwise try generic mode"
        ),
        (AttachMode::Native, Some(libc::EOPNOTSUPP)) => {
            format!(". The driver of `{ifname}` has no native XDP support: use generic mode")
        }
        (_, Some(libc::ENODEV | libc::ENXIO)) => {
            format!(". `{ifname}` disappeared or is not in this network namespace (`ip link show`)")
        }
        _ => String::new(),
    }
}

fn link_create(prog: &OwnedFd, ifname: &str, ifindex: u32, mode: AttachMode) -> Result<OwnedFd, XskError> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags: mode.flags(),
    };
    // SAFETY: LinkCreateAttr is the BPF_LINK_CREATE layout (four u32, no pointers).
    match unsafe { sys_bpf(BPF_LINK_CREATE, &mut attr) } {
        Ok(fd) => Ok(owned(fd)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) => {
            Err(XskError::XdpBusy { ifname: ifname.to_string(), source: e })
        }
        Err(e) if is_perm(&e) => Err(XskError::Permission {
            what: format!("attaching XDP to `{ifname}`"),
            need: "attaching XDP needs root, or CAP_BPF and CAP_NET_ADMIN",
            source: e,
        }),
        Err(e) => {
            let hint = attach_hint(ifname, mode, &e);
            Err(XskError::Attach { ifname: ifname.to_string(), mode, source: e, hint })
        }
    }
}

/// The redirect program attached to one interface, with its XSKMAP.
///
/// Dropping it detaches the program (the link descriptor closes); so does the death of the
/// process.
#[derive(Debug)]
pub struct XdpProgram {
    // Field order is drop order: detach first, then release the program and the map.
    link: OwnedFd,
    prog: OwnedFd,
    map: OwnedFd,
    ifname: String,
    ifindex: u32,
    queues: u32,
    mode: AttachMode,
    fallback: Fallback,
}

impl XdpProgram {
    /// Create an XSKMAP with `queue_count` entries, load the redirect program and attach it to
    /// `ifname`. `queue_count` is normally [`crate::rx_queue_count`]`(ifname)`.
    ///
    /// Errors: [`XskError::XdpBusy`] when another program (or link) is attached,
    /// [`XskError::Permission`] without CAP_BPF + CAP_NET_ADMIN, [`XskError::Attach`] (with a
    /// hint for veth MTU limits and drivers without native XDP) otherwise.
    pub fn attach(
        ifname: &str,
        queue_count: u32,
        mode: AttachMode,
        fallback: Fallback,
    ) -> Result<XdpProgram, XskError> {
        let ifindex = iface::ifindex(ifname)?;
        if queue_count == 0 {
            return Err(XskError::Config("the XSKMAP needs at least one entry (queue count 0)".into()));
        }
        let map = create_xskmap(queue_count)?;
        let prog = load_program(&map, fallback)?;
        let link = link_create(&prog, ifname, ifindex, mode)?;
        Ok(XdpProgram { link, prog, map, ifname: ifname.to_string(), ifindex, queues: queue_count, mode, fallback })
    }

    /// Send frames arriving on `queue` to the AF_XDP socket `xsk` (e.g. [`crate::SocketPair::fd`]).
    /// Registering again replaces the previous socket. The kernel removes the entry by itself
    /// when the socket is closed.
    pub fn register(&self, queue: u32, xsk: BorrowedFd<'_>) -> Result<(), XskError> {
        self.check_queue(queue)?;
        let key: u32 = queue;
        let value: u32 = xsk.as_raw_fd() as u32;
        let mut attr = MapElemAttr {
            map_fd: self.map.as_raw_fd() as u32,
            _pad: 0,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            flags: 0, // BPF_ANY
        };
        // SAFETY: MapElemAttr is the BPF_MAP_UPDATE_ELEM layout; `key` and `value` are 4-byte
        // values (the map's key and value sizes) that live across the call.
        match unsafe { sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr) } {
            Ok(_) => Ok(()),
            Err(e) => Err(XskError::Socket {
                what: "registering the AF_XDP socket in the XSKMAP",
                ifname: self.ifname.clone(),
                queue,
                source: e,
            }),
        }
    }

    /// Remove the socket registered for `queue`: its frames get the fallback action again.
    pub fn unregister(&self, queue: u32) -> Result<(), XskError> {
        self.check_queue(queue)?;
        let key: u32 = queue;
        let mut attr = MapElemAttr {
            map_fd: self.map.as_raw_fd() as u32,
            _pad: 0,
            key: &key as *const u32 as u64,
            value: 0,
            flags: 0,
        };
        // SAFETY: MapElemAttr is the BPF_MAP_DELETE_ELEM layout; `key` lives across the call.
        match unsafe { sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr) } {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(XskError::Bpf { cmd: "BPF_MAP_DELETE_ELEM", source: e }),
        }
    }

    fn check_queue(&self, queue: u32) -> Result<(), XskError> {
        if queue >= self.queues {
            return Err(XskError::QueueOutsideMap { ifname: self.ifname.clone(), queue, count: self.queues });
        }
        Ok(())
    }

    /// The interface the program is attached to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Its interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Number of XSKMAP entries (queues).
    pub fn queue_count(&self) -> u32 {
        self.queues
    }

    /// How the program is attached.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// The action for frames on queues without a socket.
    pub fn fallback(&self) -> Fallback {
        self.fallback
    }

    /// The program's descriptor (e.g. for `bpftool prog show`'s id look-up).
    pub fn prog_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.prog.as_fd()
    }

    /// The link's descriptor; closing it detaches the program.
    pub fn link_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.link.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encoding_matches_the_kernel_abi() {
        let p = redirect_program(7, Fallback::Pass);
        let bytes: Vec<[u8; 8]> = p.iter().map(|i| i.to_bytes()).collect();
        // r2 = *(u32 *)(r1 + 16)
        assert_eq!(bytes[0], [0x61, 0x12, 16, 0, 0, 0, 0, 0]);
        // r1 = map fd 7 (src_reg = BPF_PSEUDO_MAP_FD), second half zero
        assert_eq!(bytes[1], [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(bytes[2], [0; 8]);
        // r3 = XDP_PASS (2)
        assert_eq!(bytes[3], [0xb7, 0x03, 0, 0, 2, 0, 0, 0]);
        // call 51
        assert_eq!(bytes[4], [0x85, 0, 0, 0, 51, 0, 0, 0]);
        // exit
        assert_eq!(bytes[5], [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(redirect_program(7, Fallback::Drop)[3].imm, 1);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn attribute_layouts_match_union_bpf_attr() {
        // Offsets checked against linux/bpf.h (offsetof on union bpf_attr).
        assert_eq!(std::mem::size_of::<MapCreateAttr>(), 44);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<MapElemAttr>(), 32);
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 16);
    }

    #[test]
    fn verifier_log_is_captured() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED verifier_log_is_captured: needs root (CAP_BPF)");
            return;
        }
        // `exit` without setting r0: the verifier must refuse it and say why.
        let err = load_insns(&[Insn::new(0x95, 0, 0, 0, 0)]).unwrap_err();
        match &err {
            XskError::Verifier { log, .. } => assert!(log.contains("R0"), "{log}"),
            other => panic!("expected a verifier error, got {other:?}"),
        }
        assert!(err.to_string().contains("verifier log"), "{err}");
        eprintln!("{err}");
        // The real program passes.
        let map = create_xskmap(4).unwrap();
        load_program(&map, Fallback::Pass).unwrap();
        load_program(&map, Fallback::Drop).unwrap();
    }

    #[test]
    fn attach_hints_name_the_fix() {
        let e = io::Error::from_raw_os_error(libc::ERANGE);
        let h = attach_hint("veth0", AttachMode::Native, &e);
        assert!(h.contains("MTU") && h.contains("generic"), "{h}");
        let e = io::Error::from_raw_os_error(libc::EOPNOTSUPP);
        assert!(attach_hint("eth0", AttachMode::Native, &e).contains("generic mode"));
        assert!(attach_hint("eth0", AttachMode::Generic, &io::Error::from_raw_os_error(libc::EINVAL)).is_empty());
    }
}
