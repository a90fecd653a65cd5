//! Checks made before `scrubber run` touches the network: the two interfaces exist, are up,
//! differ, fit the UMEM frame size and have equal rx queue counts; the process has the
//! capabilities AF_XDP needs; the locked-memory limit admits the UMEM.
//!
//! Every problem is a [`PreflightError`] whose message says how to fix it. [`preflight`] runs
//! every check and reports all problems at once ([`PreflightErrors`]), so that an operator fixes
//! them in one go. Interfaces are read from sysfs under a root given by the caller (`/sys` in
//! production, a fake tree in tests); process facts from the text of `/proc/self/status` and
//! `/proc/self/limits`.

use std::io;
use std::path::{Path, PathBuf};

/// Bytes the kernel reserves at the start of every AF_XDP frame (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: u32 = 256;
/// Ethernet header plus two VLAN tags (QinQ): the largest L2 overhead the engine parses.
pub const L2_OVERHEAD: u32 = 14 + 2 * 4;
/// Largest AF_XDP frame (UMEM chunk) in aligned mode: one page.
pub const MAX_FRAME_SIZE: u32 = 4096;
/// Smallest AF_XDP frame (UMEM chunk) in aligned mode.
pub const MIN_FRAME_SIZE: u32 = 2048;

/// Capability numbers (linux/capability.h) the checks use.
pub mod cap {
    /// CAP_DAC_OVERRIDE: write the root-owned (mode 0644) NAPI files under /sys/class/net.
    pub const DAC_OVERRIDE: u32 = 1;
    /// CAP_NET_ADMIN: attach XDP programs, bind AF_XDP sockets, change interface settings.
    pub const NET_ADMIN: u32 = 12;
    /// CAP_NET_RAW: create AF_XDP sockets.
    pub const NET_RAW: u32 = 13;
    /// CAP_IPC_LOCK: lock memory beyond RLIMIT_MEMLOCK (the UMEM).
    pub const IPC_LOCK: u32 = 14;
    /// CAP_SYS_ADMIN: accepted instead of CAP_BPF.
    pub const SYS_ADMIN: u32 = 21;
    /// CAP_SYS_NICE: give NAPI threads real-time priority.
    pub const SYS_NICE: u32 = 23;
    /// CAP_BPF: load BPF programs and create BPF maps.
    pub const BPF: u32 = 39;
}

/// What [`preflight`] checks against.
#[derive(Clone, Debug)]
pub struct PreflightConfig {
    /// The internet-facing interface.
    pub ext: String,
    /// The interface facing the protected servers.
    pub int: String,
    /// UMEM frame (chunk) size in bytes.
    pub frame_size: u32,
    /// Headroom the data plane reserves in each frame, in addition to
    /// [`XDP_PACKET_HEADROOM`].
    pub headroom: u32,
    /// Total UMEM size in bytes (frames × frame size).
    pub umem_bytes: u64,
    /// Whether NAPI threads will be given real-time priority (then CAP_SYS_NICE is needed).
    pub needs_sys_nice: bool,
    /// Whether NAPI settings under /sys/class/net will be written (`--napi-tune`, `--poll
    /// busy`): root-owned files, so CAP_DAC_OVERRIDE is needed without root.
    pub writes_sysfs: bool,
}

/// One problem found before start. Each message says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Not a possible interface name.
    #[error(
        "'{name}' is not a valid interface name (1 to 15 characters, no '/' or spaces); see `ip link` for the names"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// No such interface.
    #[error("interface {name} does not exist; interfaces here: {}", list_or_none(.existing))]
    InterfaceMissing {
        /// The name given.
        name: String,
        /// The interfaces that exist.
        existing: Vec<String>,
    },
    /// The interface is administratively down.
    #[error("interface {name} is down: run `ip link set {name} up`")]
    InterfaceDown {
        /// The interface.
        name: String,
    },
    /// The same interface was given as ext and int.
    #[error("ext and int are the same interface ({name}): the scrubber sits between two interfaces; give two different ones")]
    SameInterface {
        /// The interface.
        name: String,
    },
    /// The frame size is not one AF_XDP accepts.
    #[error("frame size {frame_size} is not usable: AF_XDP frames are a power of two from {MIN_FRAME_SIZE} to {MAX_FRAME_SIZE} bytes; use --frame-size 2048 or 4096")]
    InvalidFrameSize {
        /// The frame size given.
        frame_size: u32,
    },
    /// The interface's MTU does not fit a frame.
    #[error("interface {name} has MTU {mtu}, but a {frame_size}-byte frame (less {XDP_PACKET_HEADROOM} bytes of kernel headroom, {headroom} of headroom and {L2_OVERHEAD} for Ethernet with two VLAN tags) holds at most MTU {max_mtu}: run `ip link set {name} mtu {max_mtu}`{}", frame_hint(*.needed_frame))]
    MtuTooLarge {
        /// The interface.
        name: String,
        /// Its MTU.
        mtu: u32,
        /// The frame size in use.
        frame_size: u32,
        /// The extra headroom in use.
        headroom: u32,
        /// The largest MTU that fits.
        max_mtu: u32,
        /// The smallest frame size that would fit this MTU, if there is one.
        needed_frame: Option<u32>,
    },
    /// ext and int have different rx queue counts.
    #[error("ext {ext} has {ext_queues} rx queue(s) but int {int} has {int_queues}: worker i serves queue i of both, so make them equal, e.g. `ethtool -L {ext} combined {n}` and `ethtool -L {int} combined {n}` (or scripts/nic-setup.sh {ext} {int} --queues {n})", n = (*.ext_queues).min(*.int_queues))]
    QueueMismatch {
        /// ext interface.
        ext: String,
        /// Its rx queues.
        ext_queues: u32,
        /// int interface.
        int: String,
        /// Its rx queues.
        int_queues: u32,
    },
    /// Capabilities AF_XDP needs are missing.
    #[error("missing capabilities: {}; run as root or grant them, e.g. `setcap cap_net_admin,cap_net_raw,cap_bpf,cap_ipc_lock+ep $(command -v scrubber)` (with --napi-tune or --poll busy add cap_sys_nice,cap_dac_override), or AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_IPC_LOCK (CAP_SYS_NICE CAP_DAC_OVERRIDE) in the systemd unit", .missing.join(", "))]
    MissingCapabilities {
        /// Names of what is missing, e.g. `CAP_BPF (or CAP_SYS_ADMIN)`.
        missing: Vec<String>,
    },
    /// The UMEM cannot be locked under the memlock limit.
    #[error("the UMEM needs {} of locked memory but the limit (RLIMIT_MEMLOCK) is {} and the process lacks CAP_IPC_LOCK: run `ulimit -l unlimited` before starting, set LimitMEMLOCK=infinity in the systemd unit, or grant CAP_IPC_LOCK", mib(*.needed), mib(*.limit))]
    MemlockTooLow {
        /// The limit in bytes.
        limit: u64,
        /// Bytes needed.
        needed: u64,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file did not have the expected content.
    #[error("unexpected content in {}: {detail}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn frame_hint(needed: Option<u32>) -> String {
    match needed {
        Some(f) => format!(", or use --frame-size {f}"),
        None => format!(" (AF_XDP frames are at most {MAX_FRAME_SIZE} bytes, so a larger MTU cannot be served)"),
    }
}

fn mib(b: u64) -> String {
    if b % (1 << 20) == 0 {
        format!("{} MiB", b >> 20)
    } else {
        format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20))
    }
}

/// Every problem [`preflight`] found (at least one).
#[derive(Debug)]
pub struct PreflightErrors(pub Vec<PreflightError>);

impl std::fmt::Display for PreflightErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems must be fixed before start:", many.len())?;
                for e in many {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PreflightErrors {}

/// What sysfs says about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its index.
    pub ifindex: u32,
    /// Its MTU.
    pub mtu: u32,
    /// Administratively up (`IFF_UP` in `flags`).
    pub admin_up: bool,
    /// `operstate` (`up`, `down`, `lowerlayerdown`, `unknown`, …).
    pub operstate: String,
    /// Number of rx queues (`queues/rx-*`).
    pub rx_queues: u32,
    /// Number of tx queues (`queues/tx-*`).
    pub tx_queues: u32,
}

impl Interface {
    /// Up with a link, or in a state drivers without carrier reporting use (`unknown`).
    pub fn has_link(&self) -> bool {
        self.admin_up && matches!(self.operstate.as_str(), "up" | "unknown")
    }
}

/// The result of a successful [`preflight`].
#[derive(Clone, Debug)]
pub struct Report {
    /// The ext interface.
    pub ext: Interface,
    /// The int interface.
    pub int: Interface,
    /// Things worth saying that do not stop the start (e.g. no link yet).
    pub warnings: Vec<String>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// Names of the interfaces under `SYSFS/class/net`, sorted (empty if unreadable).
pub fn list_interfaces(sysfs: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sysfs.join("class/net"))
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn read_trim(path: &Path) -> Result<String, PreflightError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| PreflightError::Read { path: path.to_path_buf(), source })
}

fn read_num(path: &Path) -> Result<u32, PreflightError> {
    let s = read_trim(path)?;
    let parsed = match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    };
    parsed.ok_or_else(|| PreflightError::Parse { path: path.to_path_buf(), detail: format!("'{s}' is not a number") })
}

fn count_queues(dir: &Path, prefix: &str) -> Result<u32, PreflightError> {
    let rd = std::fs::read_dir(dir).map_err(|source| PreflightError::Read { path: dir.to_path_buf(), source })?;
    let n = rd.filter_map(|e| e.ok()).filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(prefix))).count();
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Read `SYSFS/class/net/NAME/{ifindex,mtu,flags,operstate,queues/}`.
pub fn interface(sysfs: &Path, name: &str) -> Result<Interface, PreflightError> {
    if !valid_name(name) {
        return Err(PreflightError::InvalidName { name: name.into() });
    }
    let dir = sysfs.join("class/net").join(name);
    if !dir.is_dir() {
        return Err(PreflightError::InterfaceMissing { name: name.into(), existing: list_interfaces(sysfs) });
    }
    let flags = read_num(&dir.join("flags"))?;
    Ok(Interface {
        name: name.into(),
        ifindex: read_num(&dir.join("ifindex"))?,
        mtu: read_num(&dir.join("mtu"))?,
        admin_up: flags & 0x1 != 0,
        operstate: read_trim(&dir.join("operstate"))?,
        rx_queues: count_queues(&dir.join("queues"), "rx-")?,
        tx_queues: count_queues(&dir.join("queues"), "tx-")?,
    })
}

/// Largest MTU a frame of `frame_size` bytes with `headroom` extra headroom can carry.
pub fn max_mtu(frame_size: u32, headroom: u32) -> u32 {
    frame_size.saturating_sub(XDP_PACKET_HEADROOM).saturating_sub(headroom).saturating_sub(L2_OVERHEAD)
}

/// Smallest valid frame size that carries `mtu` with `headroom`, if any.
pub fn frame_size_for(mtu: u32, headroom: u32) -> Option<u32> {
    let need = mtu.checked_add(XDP_PACKET_HEADROOM)?.checked_add(headroom)?.checked_add(L2_OVERHEAD)?;
    let f = need.checked_next_power_of_two()?.max(MIN_FRAME_SIZE);
    (f <= MAX_FRAME_SIZE).then_some(f)
}

fn valid_frame_size(f: u32) -> bool {
    f.is_power_of_two() && (MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&f)
}

/// Check the interface pair: names differ, both exist and are up, MTUs fit, rx queue counts
/// match. Returns both interfaces, or every problem found; pushes non-fatal remarks onto
/// `warnings`.
pub fn check_interfaces(
    sysfs: &Path,
    cfg: &PreflightConfig,
    warnings: &mut Vec<String>,
) -> Result<(Interface, Interface), Vec<PreflightError>> {
    let mut errs = Vec::new();
    if cfg.ext == cfg.int {
        errs.push(PreflightError::SameInterface { name: cfg.ext.clone() });
    }
    let frame_ok = valid_frame_size(cfg.frame_size);
    if !frame_ok {
        errs.push(PreflightError::InvalidFrameSize { frame_size: cfg.frame_size });
    }
    let mut found = Vec::with_capacity(2);
    for name in [&cfg.ext, &cfg.int] {
        match interface(sysfs, name) {
            Ok(i) => found.push(i),
            Err(e) => errs.push(e),
        }
    }
    if let [ext, int] = found.as_slice() {
        if ext.ifindex == int.ifindex && ext.name != int.name {
            errs.push(PreflightError::SameInterface { name: format!("{} = {}", ext.name, int.name) });
        }
        if ext.rx_queues != int.rx_queues {
            errs.push(PreflightError::QueueMismatch {
                ext: ext.name.clone(),
                ext_queues: ext.rx_queues,
                int: int.name.clone(),
                int_queues: int.rx_queues,
            });
        }
    }
    for i in &found {
        if !i.admin_up {
            errs.push(PreflightError::InterfaceDown { name: i.name.clone() });
        } else if !i.has_link() {
            warnings.push(format!(
                "interface {} is up but has no link (operstate {}): check the cable or the peer",
                i.name, i.operstate
            ));
        }
        let max = max_mtu(cfg.frame_size, cfg.headroom);
        if frame_ok && i.mtu > max {
            errs.push(PreflightError::MtuTooLarge {
                name: i.name.clone(),
                mtu: i.mtu,
                frame_size: cfg.frame_size,
                headroom: cfg.headroom,
                max_mtu: max,
                needed_frame: frame_size_for(i.mtu, cfg.headroom),
            });
        }
    }
    if errs.is_empty() {
        let mut it = found.into_iter();
        if let (Some(ext), Some(int)) = (it.next(), it.next()) {
            return Ok((ext, int));
        }
    }
    Err(errs)
}

/// The effective capability set of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities(pub u64);

impl Capabilities {
    /// Parse the `CapEff:` line of a `/proc/PID/status` text.
    pub fn from_status(status: &str) -> Option<Capabilities> {
        let line = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
        u64::from_str_radix(line.trim(), 16).ok().map(Capabilities)
    }

    /// Read `/proc/self/status` (under `proc_root`, normally `/proc`).
    pub fn of_self(proc_root: &Path) -> Result<Capabilities, PreflightError> {
        let path = proc_root.join("self/status");
        let text =
            std::fs::read_to_string(&path).map_err(|source| PreflightError::Read { path: path.clone(), source })?;
        Capabilities::from_status(&text)
            .ok_or_else(|| PreflightError::Parse { path, detail: "no readable CapEff line".into() })
    }

    /// Whether capability number `c` (see [`cap`]) is in the set.
    pub fn has(self, c: u32) -> bool {
        c < 64 && self.0 & (1u64 << c) != 0
    }
}

/// Check the capabilities AF_XDP needs: CAP_NET_ADMIN, CAP_BPF (or CAP_SYS_ADMIN),
/// CAP_NET_RAW, and CAP_SYS_NICE when `needs_sys_nice`.
pub fn check_capabilities(caps: Capabilities, needs_sys_nice: bool, writes_sysfs: bool) -> Result<(), PreflightError> {
    let mut missing = Vec::new();
    if !caps.has(cap::NET_ADMIN) {
        missing.push("CAP_NET_ADMIN".to_string());
    }
    if !caps.has(cap::BPF) && !caps.has(cap::SYS_ADMIN) {
        missing.push("CAP_BPF (or CAP_SYS_ADMIN)".to_string());
    }
    if !caps.has(cap::NET_RAW) {
        missing.push("CAP_NET_RAW".to_string());
    }
    if needs_sys_nice && !caps.has(cap::SYS_NICE) {
        missing.push("CAP_SYS_NICE (for real-time NAPI threads)".to_string());
    }
    if writes_sysfs && !caps.has(cap::DAC_OVERRIDE) {
        missing.push(
            "CAP_DAC_OVERRIDE (--napi-tune and --poll busy write NAPI settings to root-owned files under /sys/class/net)"
                .to_string(),
        );
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::MissingCapabilities { missing })
    }
}

/// The soft `Max locked memory` limit from a `/proc/PID/limits` text: `Some(None)` for
/// unlimited, `Some(Some(bytes))`, or `None` if the line is missing or unreadable.
pub fn memlock_from_limits(limits: &str) -> Option<Option<u64>> {
    let rest = limits.lines().find_map(|l| l.strip_prefix("Max locked memory"))?;
    let soft = rest.split_whitespace().next()?;
    if soft == "unlimited" {
        Some(None)
    } else {
        soft.parse().ok().map(Some)
    }
}

/// Check that `needed` bytes can be locked: fine with CAP_IPC_LOCK or an unlimited / large
/// enough soft limit (`limit`: `None` = unlimited).
pub fn check_memlock(caps: Capabilities, limit: Option<u64>, needed: u64) -> Result<(), PreflightError> {
    match limit {
        Some(l) if !caps.has(cap::IPC_LOCK) && l < needed => Err(PreflightError::MemlockTooLow { limit: l, needed }),
        _ => Ok(()),
    }
}

/// Run every check: interfaces under `sysfs` (normally `/sys`), capabilities and memlock limit
/// of this process under `proc_root` (normally `/proc`).
pub fn preflight(cfg: &PreflightConfig, sysfs: &Path, proc_root: &Path) -> Result<Report, PreflightErrors> {
    let mut warnings = Vec::new();
    let mut errs = Vec::new();
    let pair = check_interfaces(sysfs, cfg, &mut warnings).map_err(|e| errs.extend(e)).ok();
    match Capabilities::of_self(proc_root) {
        Ok(caps) => {
            if let Err(e) = check_capabilities(caps, cfg.needs_sys_nice, cfg.writes_sysfs) {
                errs.push(e);
            }
            let path = proc_root.join("self/limits");
            match std::fs::read_to_string(&path) {
                Ok(text) => match memlock_from_limits(&text) {
                    Some(limit) => {
                        if let Err(e) = check_memlock(caps, limit, cfg.umem_bytes) {
                            errs.push(e);
                        }
                    }
                    None => {
                        errs.push(PreflightError::Parse { path, detail: "no readable 'Max locked memory' line".into() })
                    }
                },
                Err(source) => errs.push(PreflightError::Read { path, source }),
            }
        }
        Err(e) => errs.push(e),
    }
    match pair {
        Some((ext, int)) if errs.is_empty() => Ok(Report { ext, int, warnings }),
        _ => Err(PreflightErrors(errs)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs tree in a temp dir, removed on drop.
    struct FakeSys(PathBuf);

    impl FakeSys {
        fn new(tag: &str) -> Self {
            let d = std::env::temp_dir().join(format!("scrubber-preflight-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(d.join("class/net")).unwrap();
            FakeSys(d)
        }

        fn iface(&self, name: &str, ifindex: u32, mtu: u32, up: bool, oper: &str, rxq: u32) -> &Self {
            let d = self.0.join("class/net").join(name);
            std::fs::create_dir_all(d.join("queues")).unwrap();
            std::fs::write(d.join("ifindex"), format!("{ifindex}\n")).unwrap();
            std::fs::write(d.join("mtu"), format!("{mtu}\n")).unwrap();
            std::fs::write(d.join("flags"), if up { "0x1003\n" } else { "0x1002\n" }).unwrap();
            std::fs::write(d.join("operstate"), format!("{oper}\n")).unwrap();
            for q in 0..rxq {
                std::fs::create_dir_all(d.join(format!("queues/rx-{q}"))).unwrap();
                std::fs::create_dir_all(d.join(format!("queues/tx-{q}"))).unwrap();
            }
            self
        }

        fn proc(&self, capeff: u64, memlock: &str) -> PathBuf {
            let p = self.0.join("proc/self");
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(
                p.join("status"),
                format!("Name:\tscrubber\nCapInh:\t0000000000000000\nCapEff:\t{capeff:016x}\n"),
            )
            .unwrap();
            std::fs::write(
                p.join("limits"),
                format!(
                    "Limit                     Soft Limit           Hard Limit           Units\n\
                     Max locked memory         {memlock:<20} {memlock:<20} bytes\n"
                ),
            )
            .unwrap();
            self.0.join("proc")
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn cfg(ext: &str, int: &str) -> PreflightConfig {
        PreflightConfig {
            ext: ext.into(),
            int: int.into(),
            frame_size: 4096,
            headroom: 0,
            umem_bytes: 16 << 20,
            needs_sys_nice: false,
            writes_sysfs: false,
        }
    }

    const ALL_CAPS: u64 = 0x1ff_ffff_ffff;

    #[test]
    fn good_pair_passes() {
        let s = FakeSys::new("good");
        s.iface("ext0", 2, 1500, true, "up", 2).iface("int0", 3, 1500, true, "unknown", 2);
        let proc = s.proc(ALL_CAPS, "8388608");
        let r = preflight(&cfg("ext0", "int0"), &s.0, &proc).unwrap();
        assert_eq!((r.ext.ifindex, r.int.ifindex, r.ext.rx_queues, r.int.tx_queues), (2, 3, 2, 2));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn missing_interface_lists_existing_ones() {
        let s = FakeSys::new("missing");
        s.iface("ext0", 2, 1500, true, "up", 1).iface("lo", 1, 65536, true, "unknown", 1);
        let mut w = Vec::new();
        let errs = check_interfaces(&s.0, &cfg("ext0", "int9"), &mut w).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        let m = errs[0].to_string();
        assert!(m.contains("interface int9 does not exist"), "{m}");
        assert!(m.contains("ext0, lo"), "{m}");
        let errs = check_interfaces(&s.0, &cfg("ext0", "../x"), &mut w).unwrap_err();
        assert!(matches!(errs[0], PreflightError::InvalidName { .. }), "{errs:?}");
    }

    #[test]
    fn down_interface_and_no_link() {
        let s = FakeSys::new("down");
        s.iface("ext0", 2, 1500, false, "down", 1).iface("int0", 3, 1500, true, "lowerlayerdown", 1);
        let mut w = Vec::new();
        let errs = check_interfaces(&s.0, &cfg("ext0", "int0"), &mut w).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].to_string().contains("`ip link set ext0 up`"), "{}", errs[0]);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("int0") && w[0].contains("no link"), "{w:?}");
    }

    #[test]
    fn same_interface_twice() {
        let s = FakeSys::new("same");
        s.iface("ext0", 2, 1500, true, "up", 1);
        let errs = check_interfaces(&s.0, &cfg("ext0", "ext0"), &mut Vec::new()).unwrap_err();
        assert!(errs.iter().any(|e| matches!(e, PreflightError::SameInterface { .. })), "{errs:?}");
    }

    #[test]
    fn mtu_against_frame_size() {
        assert_eq!(max_mtu(4096, 0), 4096 - 256 - 22);
        assert_eq!(max_mtu(2048, 0), 1770);
        assert_eq!(max_mtu(2048, 4000), 0);
        assert_eq!(frame_size_for(1500, 0), Some(2048));
        assert_eq!(frame_size_for(3000, 0), Some(4096));
        assert_eq!(frame_size_for(9000, 0), None);
        assert_eq!(frame_size_for(u32::MAX, 0), None);

        let s = FakeSys::new("mtu");
        s.iface("ext0", 2, 3000, true, "up", 1).iface("int0", 3, 9000, true, "up", 1);
        let mut c = cfg("ext0", "int0");
        c.frame_size = 2048;
        let errs = check_interfaces(&s.0, &c, &mut Vec::new()).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        let (a, b) = (errs[0].to_string(), errs[1].to_string());
        assert!(a.contains("ext0 has MTU 3000") && a.contains("mtu 1770") && a.contains("--frame-size 4096"), "{a}");
        assert!(b.contains("int0 has MTU 9000") && b.contains("at most 4096 bytes"), "{b}");
        c.frame_size = 3000;
        let errs = check_interfaces(&s.0, &c, &mut Vec::new()).unwrap_err();
        assert!(matches!(errs[0], PreflightError::InvalidFrameSize { frame_size: 3000 }), "{errs:?}");
    }

    #[test]
    fn queue_counts_must_match() {
        let s = FakeSys::new("queues");
        s.iface("ext0", 2, 1500, true, "up", 4).iface("int0", 3, 1500, true, "up", 2);
        let errs = check_interfaces(&s.0, &cfg("ext0", "int0"), &mut Vec::new()).unwrap_err();
        let m = errs[0].to_string();
        assert!(m.contains("ext0 has 4 rx queue(s) but int int0 has 2"), "{m}");
        assert!(m.contains("`ethtool -L ext0 combined 2`"), "{m}");
    }

    #[test]
    fn capabilities() {
        let c = Capabilities::from_status("Name:\tx\nCapEff:\t000001fffeffffff\n").unwrap();
        assert!(c.has(cap::NET_ADMIN) && c.has(cap::BPF) && !c.has(24));
        assert!(check_capabilities(c, true, true).is_ok());
        assert_eq!(Capabilities::from_status("CapEff:\tzz\n"), None);
        assert_eq!(Capabilities::from_status(""), None);
        let none = Capabilities(0);
        let m = check_capabilities(none, true, true).unwrap_err().to_string();
        for n in [
            "CAP_NET_ADMIN",
            "CAP_BPF (or CAP_SYS_ADMIN)",
            "CAP_NET_RAW",
            "CAP_SYS_NICE",
            "CAP_DAC_OVERRIDE",
            "run as root",
            "cap_dac_override",
        ] {
            assert!(m.contains(n), "{n} missing in: {m}");
        }
        // CAP_SYS_ADMIN stands in for CAP_BPF.
        let c = Capabilities((1 << cap::NET_ADMIN) | (1 << cap::NET_RAW) | (1 << cap::SYS_ADMIN));
        assert!(check_capabilities(c, false, false).is_ok());
        // Writing /sys needs CAP_DAC_OVERRIDE besides CAP_NET_ADMIN.
        let m = check_capabilities(c, false, true).unwrap_err().to_string();
        assert!(m.contains("CAP_DAC_OVERRIDE") && !m.contains("CAP_NET_ADMIN,"), "{m}");
        assert!(!Capabilities(u64::MAX).has(64));
    }

    #[test]
    fn memlock() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max locked memory         8388608              unlimited            bytes\n";
        assert_eq!(memlock_from_limits(limits), Some(Some(8 << 20)));
        assert_eq!(memlock_from_limits("Max locked memory         unlimited   unlimited   bytes\n"), Some(None));
        assert_eq!(memlock_from_limits("nothing"), None);
        let no_lock = Capabilities(0);
        let e = check_memlock(no_lock, Some(8 << 20), 16 << 20).unwrap_err().to_string();
        assert!(e.contains("16 MiB") && e.contains("8 MiB") && e.contains("ulimit -l unlimited"), "{e}");
        assert!(e.contains("LimitMEMLOCK=infinity"), "{e}");
        assert!(check_memlock(no_lock, Some(8 << 20), 8 << 20).is_ok());
        assert!(check_memlock(no_lock, None, u64::MAX).is_ok());
        assert!(check_memlock(Capabilities(1 << cap::IPC_LOCK), Some(0), 1 << 30).is_ok());
    }

    #[test]
    fn preflight_reports_every_problem_at_once() {
        let s = FakeSys::new("all");
        s.iface("ext0", 2, 1500, false, "down", 1);
        let proc = s.proc(0, "65536");
        let e = preflight(&cfg("ext0", "nope"), &s.0, &proc).unwrap_err();
        assert_eq!(e.0.len(), 4, "{e}");
        let m = e.to_string();
        assert!(m.starts_with("4 problems must be fixed before start:"), "{m}");
        for part in ["nope does not exist", "ip link set ext0 up", "missing capabilities", "ulimit -l"] {
            assert!(m.contains(part), "{part} missing in: {m}");
        }
    }

    #[test]
    fn real_system_is_readable() {
        // The machine's own /sys and /proc parse (whatever they say).
        let names = list_interfaces(Path::new("/sys"));
        assert!(names.iter().any(|n| n == "lo"), "{names:?}");
        let lo = interface(Path::new("/sys"), "lo").unwrap();
        assert!(lo.ifindex >= 1 && lo.rx_queues >= 1, "{lo:?}");
        Capabilities::of_self(Path::new("/proc")).unwrap();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        assert!(memlock_from_limits(&limits).is_some());
    }
}
