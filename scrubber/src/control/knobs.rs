//! The kernel knobs the data plane relies on (DESIGN.md, "The worker and the kernel share a
//! core"), applied at start and put back at exit.
//!
//! Per interface (sysfs, `/sys/class/net/IF/…`):
//! * `napi_defer_hard_irqs` — how many empty NAPI polls to make before re-enabling the device
//!   interrupt (2 here);
//! * `gro_flush_timeout` — nanoseconds the deferral may last (20–50 µs; the often-quoted
//!   200 µs is too long for a 256-slot ring);
//! * `threaded` — run the interface's NAPI polls in kernel threads (`napi/IF-ID`) instead of
//!   softirq context, so that they can be scheduled like any thread.
//!
//! Per NAPI kernel thread of those interfaces: `SCHED_FIFO` priority (set with `chrt`) and CPU
//! affinity (set with `taskset`): the thread of queue *i* goes to the core of worker *i*, so the
//! kernel's receive work for a queue runs on the worker's core and preempts the worker instead
//! of being starved by it.
//!
//! [`Knobs::apply`] records every previous value and logs each change on stderr;
//! [`Knobs::restore`] (also run on drop) puts them back in reverse order. If applying fails part
//! way, what was already changed is restored before the error is returned.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What to set. `None` / empty leaves a knob as it is.
#[derive(Clone, Debug)]
pub struct KnobConfig {
    /// Interfaces to tune (normally ext and int).
    pub interfaces: Vec<String>,
    /// `napi_defer_hard_irqs` for each interface.
    pub napi_defer_hard_irqs: Option<u32>,
    /// `gro_flush_timeout` for each interface, in nanoseconds.
    pub gro_flush_timeout_ns: Option<u64>,
    /// `threaded` NAPI for each interface.
    pub threaded_napi: Option<bool>,
    /// SCHED_FIFO priority (1–99) for the interfaces' NAPI threads.
    pub napi_thread_priority: Option<u8>,
    /// CPU for the NAPI thread of queue *i*: `napi_thread_cpus[i % len]`. Empty: leave the
    /// affinity alone.
    pub napi_thread_cpus: Vec<usize>,
    /// sysfs mount point (`/sys`; tests use the sysfs of another network namespace).
    pub sysfs: PathBuf,
    /// procfs mount point (`/proc`).
    pub proc_root: PathBuf,
}

impl KnobConfig {
    /// The settings DESIGN.md measured as best on these machines: deferral 2 polls, 20 µs
    /// flush timeout, threaded NAPI, NAPI threads at SCHED_FIFO 50 on the workers' cores
    /// (`cpus[i]` = core of worker *i*).
    pub fn recommended(interfaces: &[&str], cpus: &[usize]) -> Self {
        KnobConfig {
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            napi_defer_hard_irqs: Some(2),
            gro_flush_timeout_ns: Some(20_000),
            threaded_napi: Some(true),
            napi_thread_priority: Some(50),
            napi_thread_cpus: cpus.to_vec(),
            sysfs: PathBuf::from("/sys"),
            proc_root: PathBuf::from("/proc"),
        }
    }

    /// Nothing to change, for `interfaces` (fill in the fields you want).
    pub fn none(interfaces: &[&str]) -> Self {
        KnobConfig {
            interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
            napi_defer_hard_irqs: None,
            gro_flush_timeout_ns: None,
            threaded_napi: None,
            napi_thread_priority: None,
            napi_thread_cpus: Vec::new(),
            sysfs: PathBuf::from("/sys"),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Why a knob could not be set or read. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum KnobError {
    /// The interface does not exist (under the configured sysfs).
    #[error("interface {name} does not exist (see `ip link`); cannot tune it")]
    InterfaceMissing {
        /// The interface.
        name: String,
    },
    /// A sysfs or procfs file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A sysfs file could not be written.
    #[error("cannot set {} to {value}: {source}{}", .path.display(), write_hint(.path, .source))]
    Write {
        /// The file.
        path: PathBuf,
        /// The value written.
        value: String,
        /// The OS error.
        source: io::Error,
    },
    /// Priority out of range.
    #[error("NAPI thread priority {0} is out of range: SCHED_FIFO priorities are 1 to 99")]
    BadPriority(u8),
    /// Thread settings were asked for but the interface has no NAPI threads.
    #[error("interface {name} has no NAPI threads (napi/{name}-*), so their priority and CPU cannot be set: enable threaded NAPI (`echo 1 > /sys/class/net/{name}/threaded`, or the threaded setting); on veth NAPI exists only with an XDP program attached or GRO on (`ethtool -K {name} gro on`)")]
    NoNapiThreads {
        /// The interface.
        name: String,
    },
    /// `chrt` or `taskset` failed.
    #[error(
        "`{command}` failed: {detail} (run as root, or grant CAP_SYS_NICE; chrt and taskset come with util-linux)"
    )]
    Command {
        /// The command line.
        command: String,
        /// Its error output or the spawn error.
        detail: String,
    },
}

fn write_hint(path: &Path, e: &io::Error) -> &'static str {
    let threaded = path.file_name().is_some_and(|n| n == "threaded");
    match e.raw_os_error() {
        Some(95) if threaded => {
            " (the driver has no NAPI instance to thread yet: on veth attach the XDP program first or turn GRO on with `ethtool -K IF gro on`)"
        }
        Some(95) | Some(22) => " (the driver does not support this value)",
        Some(1) | Some(13) => {
            " (the files under /sys/class/net are root's, mode 0644: run as root, or grant CAP_DAC_OVERRIDE and CAP_NET_ADMIN)"
        }
        Some(2) => " (this kernel or driver does not have the knob)",
        _ => "",
    }
}

/// Scheduling policy numbers (linux/sched.h), as in `/proc/PID/stat`.
fn policy_flag(policy: u32) -> Option<&'static str> {
    match policy {
        0 => Some("-o"),
        1 => Some("-f"),
        2 => Some("-r"),
        3 => Some("-b"),
        5 => Some("-i"),
        _ => None, // SCHED_DEADLINE and unknown: not restorable with chrt -p
    }
}

fn policy_name(policy: u32) -> &'static str {
    match policy {
        0 => "SCHED_OTHER",
        1 => "SCHED_FIFO",
        2 => "SCHED_RR",
        3 => "SCHED_BATCH",
        5 => "SCHED_IDLE",
        6 => "SCHED_DEADLINE",
        _ => "SCHED_?",
    }
}

/// A NAPI kernel thread as seen in procfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NapiThread {
    /// Its pid.
    pub pid: u32,
    /// Its name (`napi/IF-ID`, cut to 15 characters by the kernel).
    pub comm: String,
    /// The NAPI id from the name, when the name was not cut.
    pub napi_id: Option<u32>,
    /// Scheduling policy number (0 = SCHED_OTHER, 1 = SCHED_FIFO, …).
    pub policy: u32,
    /// Real-time priority (0 for non-real-time policies).
    pub rt_priority: u32,
    /// Allowed CPUs as a list (`0-3,6`).
    pub cpus: String,
}

/// Whether the thread name `comm` is a NAPI thread of `ifname`, allowing for the kernel's cut
/// of names to 15 characters.
fn napi_comm_matches(comm: &str, ifname: &str) -> bool {
    let full = format!("napi/{ifname}-");
    if let Some(id) = comm.strip_prefix(&full) {
        return !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
    }
    // Cut names: "napi/" + a long ifname fills all 15 characters.
    comm.len() == 15 && full.starts_with(comm)
}

/// Read one thread's NAPI-relevant facts; `None` if it vanished or is not a kernel thread.
fn read_thread(proc_root: &Path, pid: u32, ifname: &str) -> Option<NapiThread> {
    let dir = proc_root.join(pid.to_string());
    let comm = std::fs::read_to_string(dir.join("comm")).ok()?.trim_end_matches('\n').to_string();
    if !napi_comm_matches(&comm, ifname) {
        return None;
    }
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // Fields after the last ')': state(3) ppid(4) … rt_priority(40) policy(41).
    let rest: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|s| s.parse::<u32>().ok());
    // Kernel threads are children of kthreadd (pid 2).
    if field(4)? != 2 {
        return None;
    }
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let cpus = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?.trim().to_string();
    let napi_id = comm.strip_prefix(&format!("napi/{ifname}-")).and_then(|s| s.parse().ok());
    Some(NapiThread { pid, comm, napi_id, policy: field(41)?, rt_priority: field(40)?, cpus })
}

/// The NAPI kernel threads of `ifname`, in NAPI id order (thread *i* serves queue *i* on
/// drivers that create one NAPI instance per queue, in queue order).
pub fn napi_threads(proc_root: &Path, ifname: &str) -> Result<Vec<NapiThread>, KnobError> {
    let rd =
        std::fs::read_dir(proc_root).map_err(|source| KnobError::Read { path: proc_root.to_path_buf(), source })?;
    let mut v: Vec<NapiThread> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter_map(|pid| read_thread(proc_root, pid, ifname))
        .collect();
    v.sort_by_key(|t| (t.napi_id.unwrap_or(u32::MAX), t.pid));
    Ok(v)
}

#[derive(Debug)]
enum Change {
    Sysfs { path: PathBuf, what: String, previous: String },
    Sched { pid: u32, comm: String, policy: u32, rt_priority: u32 },
    Affinity { pid: u32, comm: String, cpus: String },
}

/// The knobs as applied, with what to put back. Restores on drop.
#[derive(Debug)]
pub struct Knobs {
    changes: Vec<Change>,
    proc_root: PathBuf,
}

fn run(cmd: &str, args: &[String]) -> Result<(), KnobError> {
    let line = format!("{cmd} {}", args.join(" "));
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| KnobError::Command { command: line.clone(), detail: e.to_string() })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(KnobError::Command { command: line, detail: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

fn set_sched(pid: u32, policy: u32, prio: u32) -> Result<(), KnobError> {
    let flag = policy_flag(policy).unwrap_or("-o");
    let prio = if matches!(policy, 1 | 2) { prio } else { 0 };
    run("chrt", &[flag.into(), "-p".into(), prio.to_string(), pid.to_string()])
}

fn set_affinity(pid: u32, cpus: &str) -> Result<(), KnobError> {
    run("taskset", &["-pc".into(), cpus.into(), pid.to_string()])
}

impl Knobs {
    /// Apply `cfg`; see the module documentation.
    pub fn apply(cfg: &KnobConfig) -> Result<Knobs, KnobError> {
        let mut k = Knobs { changes: Vec::new(), proc_root: cfg.proc_root.clone() };
        match k.apply_all(cfg) {
            Ok(()) => Ok(k),
            Err(e) => {
                let _ = k.restore();
                Err(e)
            }
        }
    }

    fn apply_all(&mut self, cfg: &KnobConfig) -> Result<(), KnobError> {
        if let Some(p) = cfg.napi_thread_priority {
            if !(1..=99).contains(&p) {
                return Err(KnobError::BadPriority(p));
            }
        }
        for ifname in &cfg.interfaces {
            let dir = cfg.sysfs.join("class/net").join(ifname);
            if ifname.is_empty() || ifname.contains('/') || !dir.is_dir() {
                return Err(KnobError::InterfaceMissing { name: ifname.clone() });
            }
            if let Some(v) = cfg.napi_defer_hard_irqs {
                self.set_sysfs(&dir.join("napi_defer_hard_irqs"), ifname, &v.to_string())?;
            }
            if let Some(v) = cfg.gro_flush_timeout_ns {
                self.set_sysfs(&dir.join("gro_flush_timeout"), ifname, &v.to_string())?;
            }
            if let Some(v) = cfg.threaded_napi {
                self.set_sysfs(&dir.join("threaded"), ifname, if v { "1" } else { "0" })?;
            }
        }
        if cfg.napi_thread_priority.is_none() && cfg.napi_thread_cpus.is_empty() {
            return Ok(());
        }
        for ifname in &cfg.interfaces {
            let threads = napi_threads(&cfg.proc_root, ifname)?;
            if threads.is_empty() {
                return Err(KnobError::NoNapiThreads { name: ifname.clone() });
            }
            for (i, t) in threads.iter().enumerate() {
                if let Some(p) = cfg.napi_thread_priority {
                    if t.policy != 1 || t.rt_priority != u32::from(p) {
                        set_sched(t.pid, 1, u32::from(p))?;
                        tracing::info!(
                            "knobs: {} (pid {}): {} {} -> SCHED_FIFO {p}",
                            t.comm,
                            t.pid,
                            policy_name(t.policy),
                            t.rt_priority
                        );
                        self.changes.push(Change::Sched {
                            pid: t.pid,
                            comm: t.comm.clone(),
                            policy: t.policy,
                            rt_priority: t.rt_priority,
                        });
                    }
                }
                if !cfg.napi_thread_cpus.is_empty() {
                    let cpu = cfg.napi_thread_cpus[i % cfg.napi_thread_cpus.len()].to_string();
                    if t.cpus != cpu {
                        set_affinity(t.pid, &cpu)?;
                        tracing::info!("knobs: {} (pid {}): cpus {} -> {cpu}", t.comm, t.pid, t.cpus);
                        self.changes.push(Change::Affinity { pid: t.pid, comm: t.comm.clone(), cpus: t.cpus.clone() });
                    }
                }
            }
        }
        Ok(())
    }

    fn set_sysfs(&mut self, path: &Path, ifname: &str, value: &str) -> Result<(), KnobError> {
        let previous = std::fs::read_to_string(path)
            .map_err(|source| KnobError::Read { path: path.to_path_buf(), source })?
            .trim()
            .to_string();
        if previous == value {
            return Ok(());
        }
        std::fs::write(path, value).map_err(|source| KnobError::Write {
            path: path.to_path_buf(),
            value: value.into(),
            source,
        })?;
        let what = format!("{ifname}: {}", path.file_name().and_then(|n| n.to_str()).unwrap_or("?"));
        tracing::info!("knobs: {what} {previous} -> {value}");
        self.changes.push(Change::Sysfs { path: path.to_path_buf(), what, previous });
        Ok(())
    }

    /// Whether `pid` is still the thread named `comm` (not gone, not reused).
    fn same_thread(&self, pid: u32, comm: &str) -> bool {
        std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("comm"))
            .is_ok_and(|c| c.trim_end_matches('\n') == comm)
    }

    /// Put every changed knob back, newest first. Threads that have gone meanwhile (e.g.
    /// because threaded NAPI was turned off) are skipped. Tries everything; returns the first
    /// error. Calling it again does nothing.
    pub fn restore(&mut self) -> Result<(), KnobError> {
        let mut first = None;
        while let Some(c) = self.changes.pop() {
            let r = match &c {
                Change::Sysfs { path, what, previous } => std::fs::write(path, previous)
                    .map(|()| tracing::info!("knobs: {what} restored to {previous}"))
                    .map_err(|source| KnobError::Write { path: path.clone(), value: previous.clone(), source }),
                Change::Sched { pid, comm, policy, rt_priority } => {
                    if !self.same_thread(*pid, comm) {
                        continue;
                    }
                    set_sched(*pid, *policy, *rt_priority).map(|()| {
                        tracing::info!("knobs: {comm} (pid {pid}) restored to {} {rt_priority}", policy_name(*policy))
                    })
                }
                Change::Affinity { pid, comm, cpus } => {
                    if !self.same_thread(*pid, comm) {
                        continue;
                    }
                    set_affinity(*pid, cpus)
                        .map(|()| tracing::info!("knobs: {comm} (pid {pid}) cpus restored to {cpus}"))
                }
            };
            if let Err(e) = r {
                tracing::warn!("knobs: could not restore: {e}");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Number of knobs changed (and to be restored).
    pub fn changed(&self) -> usize {
        self.changes.len()
    }
}

impl Drop for Knobs {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_matching() {
        assert!(napi_comm_matches("napi/eth0-8193", "eth0"));
        assert!(!napi_comm_matches("napi/eth0-8193", "eth"));
        assert!(!napi_comm_matches("napi/eth01-8193", "eth0"));
        assert!(!napi_comm_matches("napi/eth0-", "eth0"));
        assert!(!napi_comm_matches("napi/eth0-x1", "eth0"));
        // Cut to 15 characters by the kernel.
        assert!(napi_comm_matches("napi/kb12345a-2", "kb12345a"));
        assert!(napi_comm_matches("napi/enp1s0f0np", "enp1s0f0np0"));
        assert!(!napi_comm_matches("napi/enp1s0f0np", "enp2s0f0np0"));
    }

    #[test]
    fn bad_priority_and_missing_interface_change_nothing() {
        let mut c = KnobConfig::none(&["lo"]);
        c.napi_thread_priority = Some(0);
        assert!(matches!(Knobs::apply(&c), Err(KnobError::BadPriority(0))));
        let mut c = KnobConfig::none(&["no-such-if0"]);
        c.napi_defer_hard_irqs = Some(2);
        let e = Knobs::apply(&c).unwrap_err();
        assert!(matches!(e, KnobError::InterfaceMissing { .. }), "{e}");
    }

    #[test]
    fn write_hints() {
        let e = io::Error::from_raw_os_error(95);
        assert!(write_hint(Path::new("/sys/class/net/x/threaded"), &e).contains("gro on"));
        assert!(write_hint(Path::new("/sys/class/net/x/mtu"), &io::Error::from_raw_os_error(13)).contains("root"));
    }

    /// Root only: a veth pair in a network namespace of our own, with that namespace's sysfs
    /// mounted on a temp dir. Everything is removed on drop (also after a failed assert).
    struct VethNs {
        ns: String,
        a: String,
        b: String,
        sysfs: PathBuf,
    }

    fn sh(args: &[&str]) -> std::process::Output {
        Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn ok(args: &[&str]) {
        let o = sh(args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
    }

    impl VethNs {
        fn new(tag: &str) -> Option<VethNs> {
            if !is_root() {
                eprintln!("skipped: needs root (network namespaces)");
                return None;
            }
            let t = format!("{tag}{}", std::process::id() % 100_000);
            let g = VethNs {
                ns: format!("{t}-ns"),
                a: format!("{t}a"),
                b: format!("{t}b"),
                sysfs: std::env::temp_dir().join(format!("{t}-sysfs")),
            };
            // Leftovers of a crashed earlier run with the same tag.
            let _ = sh(&["umount", "-l", g.sysfs.to_str().unwrap()]);
            let _ = sh(&["ip", "netns", "del", &g.ns]);
            ok(&["ip", "netns", "add", &g.ns]);
            ok(&["ip", "-n", &g.ns, "link", "add", &g.a, "type", "veth", "peer", "name", &g.b]);
            for i in [&g.a, &g.b] {
                ok(&["ip", "-n", &g.ns, "link", "set", i, "up"]);
                // veth has NAPI (and so NAPI threads) only with GRO on or XDP attached.
                ok(&["ip", "netns", "exec", &g.ns, "ethtool", "-K", i, "gro", "on"]);
            }
            std::fs::create_dir_all(&g.sysfs).unwrap();
            let netns = format!("--net=/run/netns/{}", g.ns);
            ok(&["nsenter", &netns, "mount", "-t", "sysfs", "sysfs", g.sysfs.to_str().unwrap()]);
            Some(g)
        }

        fn knob(&self, ifname: &str, knob: &str) -> String {
            let p = self.sysfs.join("class/net").join(ifname).join(knob);
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).trim().to_string()
        }

        fn config(&self) -> KnobConfig {
            let mut c = KnobConfig::recommended(&[&self.a, &self.b], &[last_cpu()]);
            c.sysfs = self.sysfs.clone();
            c
        }
    }

    impl Drop for VethNs {
        fn drop(&mut self) {
            let _ = sh(&["umount", "-l", self.sysfs.to_str().unwrap()]);
            let _ = std::fs::remove_dir(&self.sysfs);
            let _ = sh(&["ip", "netns", "del", &self.ns]);
        }
    }

    fn last_cpu() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
    }

    fn snapshot(g: &VethNs) -> Vec<String> {
        let mut v = Vec::new();
        for i in [&g.a, &g.b] {
            for k in ["napi_defer_hard_irqs", "gro_flush_timeout", "threaded"] {
                v.push(format!("{i} {k} {}", g.knob(i, k)));
            }
        }
        v
    }

    #[test]
    fn veth_knobs_applied_then_restored() {
        let Some(g) = VethNs::new("kn") else { return };
        let before = snapshot(&g);
        assert!(napi_threads(Path::new("/proc"), &g.a).unwrap().is_empty(), "threaded NAPI is off at first");
        let mut k = Knobs::apply(&g.config()).unwrap();
        for i in [&g.a, &g.b] {
            assert_eq!(g.knob(i, "napi_defer_hard_irqs"), "2");
            assert_eq!(g.knob(i, "gro_flush_timeout"), "20000");
            assert_eq!(g.knob(i, "threaded"), "1");
            let th = napi_threads(Path::new("/proc"), i).unwrap();
            assert_eq!(th.len(), 1, "one NAPI thread per veth rx queue: {th:?}");
            assert_eq!((th[0].policy, th[0].rt_priority), (1, 50), "{th:?}");
            assert_eq!(th[0].cpus, last_cpu().to_string());
        }
        // 3 sysfs knobs and 2 thread settings per interface.
        assert_eq!(k.changed(), 10);
        k.restore().unwrap();
        assert_eq!(snapshot(&g), before);
        for i in [&g.a, &g.b] {
            assert!(napi_threads(Path::new("/proc"), i).unwrap().is_empty(), "threads gone with threaded off");
        }
        k.restore().unwrap(); // again: nothing to do
    }

    #[test]
    fn veth_existing_threads_restored_on_drop() {
        let Some(g) = VethNs::new("kt") else { return };
        // Threaded NAPI already on (by someone else): the threads outlive us, so their
        // scheduling must be put back exactly.
        for i in [&g.a, &g.b] {
            std::fs::write(g.sysfs.join("class/net").join(i).join("threaded"), "1").unwrap();
        }
        let proc = Path::new("/proc");
        let before: Vec<NapiThread> = [&g.a, &g.b].iter().flat_map(|i| napi_threads(proc, i).unwrap()).collect();
        assert_eq!(before.len(), 2, "{before:?}");
        let sys_before = snapshot(&g);
        {
            let _k = Knobs::apply(&g.config()).unwrap();
            let during: Vec<NapiThread> = [&g.a, &g.b].iter().flat_map(|i| napi_threads(proc, i).unwrap()).collect();
            assert!(during.iter().all(|t| t.policy == 1 && t.rt_priority == 50), "{during:?}");
        }
        let after: Vec<NapiThread> = [&g.a, &g.b].iter().flat_map(|i| napi_threads(proc, i).unwrap()).collect();
        assert_eq!(after, before);
        assert_eq!(snapshot(&g), sys_before);
    }

    #[test]
    fn veth_failure_part_way_rolls_back() {
        let Some(g) = VethNs::new("kf") else { return };
        let before = snapshot(&g);
        let mut c = g.config();
        c.interfaces.push("kf-missing0".into());
        let e = Knobs::apply(&c).unwrap_err();
        assert!(matches!(e, KnobError::InterfaceMissing { .. }), "{e}");
        assert_eq!(snapshot(&g), before);
    }

    #[test]
    fn nic_setup_script_refuses_veth() {
        let Some(g) = VethNs::new("kv") else { return };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/nic-setup.sh");
        for extra in [&[][..], &["--dry-run"][..]] {
            let mut args = vec!["ip", "netns", "exec", &g.ns, "bash", script.to_str().unwrap(), &g.a, &g.b];
            args.extend_from_slice(extra);
            let o = sh(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "nic-setup.sh accepted veth: {err}");
            assert!(err.contains("veth") && err.contains("virtual"), "{err}");
        }
        // Nothing changed.
        assert_eq!(g.knob(&g.a, "threaded"), "0");
    }
}
