//! The benchmark line: three namespaces in a row, generator → middle → sink, for
//! `scrubber-perf wire` (the lab's other topology, [`super::topo`], is the five-namespace
//! demonstration and test bed).
//!
//! ```text
//!  gen ns                middle ns                         sink ns
//!  <tag>g  ---veth---  <tag>e (ext) | <tag>i (int)  ---veth---  <tag>s
//!  198.18.0.1/24                                               198.18.0.10/24
//! ```
//!
//! Both ends have static neighbour entries and IPv6 off, so no ARP/ND crosses the middle; the
//! kernel-stack veths (gen, sink) have tx checksum offload off; the middle's veths use threaded
//! NAPI so that their receive work is a thread that can be pinned. The sink drops the floods at
//! its ingress hook (nftables, netdev family) so that its stack costs little; its interface
//! counters still count every frame that reached it. Everything is removed on drop.
//!
//! Also here: [`Watched`], a process whose output lines are collected (waiting for a line, a
//! tail for errors), and [`Interrupt`], Ctrl-C turned into an error at the next check.

use super::{Ctx, LabError};
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The protected service and the sink's address.
pub const SINK_IP: &str = "198.18.0.10";
/// The generator's (legitimate client's) address.
pub const GEN_IP: &str = "198.18.0.1";
/// Protected TCP port (the echo server listens on it).
pub const PORT: u16 = 80;
/// UDP port of the forward-path flood (dropped by the sink's ingress hook).
pub const UDP_PORT: u16 = 9;
/// MAC of the generator's veth (locally administered).
pub const GEN_MAC: [u8; 6] = [0x02, 0x00, 0x5b, 0x00, 0x00, 0x01];
/// MAC of the sink's veth.
pub const SINK_MAC: [u8; 6] = [0x02, 0x00, 0x5b, 0x00, 0x00, 0x02];
/// Traffic a flood sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flood {
    /// TCP ACK+PSH with 10 payload bytes from random spoofed 198.19.0.0/16 sources and ports to
    /// 198.18.0.10:80: no session exists, a scrubber must drop every one.
    AckPsh,
    /// UDP from 198.18.0.1 (64 source ports) to 198.18.0.10:9: valid traffic every middle
    /// forwards.
    Udp,
    /// TCP SYN from random spoofed 198.19.0.0/16 sources and ports to 198.18.0.10:80: a SYN
    /// proxy answers every one with a cookie SYN-ACK.
    Syn,
}

/// Format a MAC address as trafgen and ip(8) read it.
pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The trafgen packet configuration of a flood (64-byte frames).
pub fn trafgen_config(flood: Flood, src_mac: &[u8; 6], dst_mac: &[u8; 6]) -> String {
    let eth = format!("  eth(da={}, sa={}),\n", mac_str(dst_mac), mac_str(src_mac));
    match flood {
        Flood::AckPsh => format!(
            "{{\n{eth}  ipv4(sa=198.19.0.0, sa[2:2]=drnd(), da={SINK_IP}, ttl=64),\n  \
             tcp(sp=drnd(1024, 65535), dp={PORT}, seq=drnd(), aseq=drnd(), ack, psh, win=512),\n  \
             fill(0x41, 10)\n}}\n"
        ),
        Flood::Syn => format!(
            "{{\n{eth}  ipv4(sa=198.19.0.0, sa[2:2]=drnd(), da={SINK_IP}, ttl=64),\n  \
             tcp(sp=drnd(1024, 65535), dp={PORT}, seq=drnd(), syn, win=64240),\n  \
             fill(0x00, 10)\n}}\n"
        ),
        Flood::Udp => format!(
            "{{\n{eth}  ipv4(sa={GEN_IP}, da={SINK_IP}, ttl=64),\n  \
             udp(sp=dinc(10000, 10063), dp={UDP_PORT}),\n  fill(0x42, 22)\n}}\n"
        ),
    }
}

/// Interface counters (from `ip -s -j link show`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IfStats {
    /// Frames received.
    pub rx_packets: u64,
    /// Frames dropped on receive.
    pub rx_dropped: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Frames dropped on transmit.
    pub tx_dropped: u64,
}

impl IfStats {
    /// The counts since `before`.
    pub fn delta(&self, before: &IfStats) -> IfStats {
        IfStats {
            rx_packets: self.rx_packets.saturating_sub(before.rx_packets),
            rx_dropped: self.rx_dropped.saturating_sub(before.rx_dropped),
            tx_packets: self.tx_packets.saturating_sub(before.tx_packets),
            tx_dropped: self.tx_dropped.saturating_sub(before.tx_dropped),
        }
    }
}

/// Parse the output of `ip -s -j link show dev IF` (a JSON array with one interface).
pub fn parse_ip_link_stats(json: &str) -> Result<IfStats, LabError> {
    let bad = |detail: String| LabError::Parse { cmd: "ip -s -j link".into(), detail };
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
    let s = v
        .get(0)
        .and_then(|i| i.get("stats64"))
        .ok_or_else(|| bad("no stats64 object (is iproute2 too old?)".into()))?;
    let get = |dir: &str, k: &str| {
        s.get(dir)
            .and_then(|d| d.get(k))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad(format!("no stats64.{dir}.{k}")))
    };
    Ok(IfStats {
        rx_packets: get("rx", "packets")?,
        rx_dropped: get("rx", "dropped")?,
        tx_packets: get("tx", "packets")?,
        tx_dropped: get("tx", "dropped")?,
    })
}

fn cmd_line(c: &Command) -> String {
    std::iter::once(c.get_program()).chain(c.get_args()).map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" ")
}

/// Run a command to completion; its stdout, or an error naming the command and its stderr.
pub fn run(c: &mut Command) -> Result<String, LabError> {
    let line = cmd_line(c);
    let out = c.stdin(Stdio::null()).output().map_err(|source| LabError::Spawn { cmd: line.clone(), source })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, LabError> {
    run(Command::new("ip").args(args))
}

/// A command run inside a namespace.
pub fn in_ns(ns: &str, prog: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, prog]);
    c
}

/// A shell script run inside a namespace.
pub fn sh_in_ns(ns: &str, script: &str) -> Result<String, LabError> {
    run(in_ns(ns, "sh").args(["-c", script]))
}

fn signal(target: &str, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A process we started whose stdout and stderr lines are collected: killed (its whole process
/// group when it leads one) on drop.
#[derive(Debug)]
pub struct Watched {
    name: String,
    /// The process.
    pub child: Child,
    group: bool,
    lines: mpsc::Receiver<String>,
    /// Every line printed so far (after [`Watched::drain`]).
    pub log: Vec<String>,
}

impl Watched {
    /// Start `c`; every line of its stdout and stderr is collected.
    pub fn spawn(name: &str, mut c: Command, group: bool) -> Result<Watched, LabError> {
        if group {
            c.process_group(0);
        }
        let line = cmd_line(&c);
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LabError::Spawn { cmd: format!("{name}: {line}"), source })?;
        let (tx, rx) = mpsc::channel();
        if let Some(o) = child.stdout.take() {
            let tx = tx.clone();
            std::thread::spawn(move || BufReader::new(o).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
        }
        if let Some(e) = child.stderr.take() {
            std::thread::spawn(move || BufReader::new(e).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
        }
        Ok(Watched { name: name.into(), child, group, lines: rx, log: Vec::new() })
    }

    /// Collect the lines printed so far.
    pub fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
    }

    /// The last lines printed.
    pub fn tail(&mut self) -> String {
        self.drain();
        let n = self.log.len();
        self.log[n.saturating_sub(12)..].join("\n")
    }

    /// Wait until a line satisfies `ready`; fails if the process exits or `timeout` passes.
    pub fn wait_line(
        &mut self,
        stop: &Interrupt,
        timeout: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> Result<(), LabError> {
        let end = Instant::now() + timeout;
        loop {
            stop.check()?;
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(l) => {
                    let hit = ready(&l);
                    self.log.push(l);
                    if hit {
                        return Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    let t = self.tail();
                    return Err(LabError::Invalid(format!("{} exited before it was ready:\n{t}", self.name)));
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                let t = self.tail();
                return Err(LabError::Invalid(format!("{} exited ({st}) before it was ready:\n{t}", self.name)));
            }
            if Instant::now() > end {
                let t = self.tail();
                return Err(LabError::Invalid(format!(
                    "{} was not ready within {} s:\n{t}",
                    self.name,
                    timeout.as_secs()
                )));
            }
        }
    }

    /// Wait for the process to exit by itself, at most `timeout`; true if it did.
    pub fn wait_exit(&mut self, stop: &Interrupt, timeout: Duration) -> Result<bool, LabError> {
        let end = Instant::now() + timeout;
        loop {
            if self.child.try_wait().ctx("waiting for a process")?.is_some() {
                // Let the reader threads catch the last lines.
                std::thread::sleep(Duration::from_millis(20));
                self.drain();
                return Ok(true);
            }
            stop.check()?;
            if Instant::now() >= end {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Send `sig`, wait up to `grace`, then SIGKILL. Returns whether it exited on `sig`.
    pub fn stop(&mut self, sig: &str, grace: Duration) -> bool {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            self.drain();
            return true;
        }
        let target = if self.group { format!("-{}", self.child.id()) } else { self.child.id().to_string() };
        signal(&target, sig);
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
                self.drain();
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        signal(&target, "KILL");
        let _ = self.child.wait();
        self.drain();
        false
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if self.group {
            // trafgen may leave a child behind: always sweep the group.
            signal(&format!("-{}", self.child.id()), "KILL");
        }
        self.stop("KILL", Duration::from_millis(500));
    }
}

/// Ctrl-C / SIGTERM, turned into an error at the next check.
#[derive(Clone, Debug)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Install the handlers (a second signal while cleaning up ends the process at once).
    pub fn install() -> Result<Interrupt, LabError> {
        let f = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // A second signal while cleaning up ends the process at once.
            signal_hook::flag::register_conditional_shutdown(sig, 1, f.clone())
                .and_then(|_| signal_hook::flag::register(sig, f.clone()))
                .ctx("cannot install the signal handler")?;
        }
        Ok(Interrupt(f))
    }

    /// `Err` once a signal arrived.
    pub fn check(&self) -> Result<(), LabError> {
        if self.0.load(Ordering::Relaxed) {
            return Err(LabError::Invalid("interrupted: cleaning up and stopping".into()));
        }
        Ok(())
    }

    /// Sleep, checking for a signal.
    pub fn sleep(&self, d: Duration) -> Result<(), LabError> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.check()?;
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
        }
        self.check()
    }
}

/// The three namespaces and their veths; all removed on drop.
#[derive(Debug)]
pub struct Line {
    /// The tag every name starts with.
    pub tag: String,
    /// The generator's namespace.
    pub gen_ns: String,
    /// The middle's namespace.
    pub mid_ns: String,
    /// The sink's namespace.
    pub sink_ns: String,
    /// The generator's veth.
    pub gen_if: String,
    /// The middle's ext veth.
    pub ext: String,
    /// The middle's int veth.
    pub int: String,
    /// The sink's veth.
    pub sink_if: String,
    /// A scratch directory (config files), removed on drop.
    pub dir: PathBuf,
    created: Vec<String>,
}

impl Line {
    /// Build the line with names starting with `tag`. On error everything created so far is
    /// removed.
    pub fn create(tag: &str) -> Result<Line, LabError> {
        Self::create_with_queues(tag, 1)
    }

    /// [`Line::create`] with `queues` rx and tx queues on every veth (one per middle worker).
    pub fn create_with_queues(tag: &str, queues: u16) -> Result<Line, LabError> {
        let mut t = Line {
            tag: tag.into(),
            gen_ns: format!("{tag}g"),
            mid_ns: format!("{tag}m"),
            sink_ns: format!("{tag}s"),
            gen_if: format!("{tag}g"),
            ext: format!("{tag}e"),
            int: format!("{tag}i"),
            sink_if: format!("{tag}s"),
            dir: std::env::temp_dir().join(tag),
            created: Vec::new(),
        };
        std::fs::create_dir_all(&t.dir)
            .map_err(|source| LabError::Io { what: format!("cannot create {}", t.dir.display()), source })?;
        for ns in [t.gen_ns.clone(), t.mid_ns.clone(), t.sink_ns.clone()] {
            ip(&["netns", "add", &ns])?;
            t.created.push(ns.clone());
            sh_in_ns(
                &ns,
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
            )?;
        }
        let (g, m, s) = (t.gen_ns.clone(), t.mid_ns.clone(), t.sink_ns.clone());
        let q = queues.max(1).to_string();
        let nq = ["numtxqueues", q.as_str(), "numrxqueues", q.as_str()];
        for (a, an, b, bn) in [(&t.gen_if, &g, &t.ext, &m), (&t.int, &m, &t.sink_if, &s)] {
            let mut argv = vec!["link", "add", a.as_str(), "netns", an.as_str()];
            argv.extend(nq);
            argv.extend(["type", "veth", "peer", "name", b.as_str(), "netns", bn.as_str()]);
            argv.extend(nq);
            ip(&argv)?;
        }
        ip(&["-n", &g, "link", "set", &t.gen_if, "address", &mac_str(&GEN_MAC)])?;
        ip(&["-n", &s, "link", "set", &t.sink_if, "address", &mac_str(&SINK_MAC)])?;
        for (ns, ifn) in [(&g, &t.gen_if), (&m, &t.ext), (&m, &t.int), (&s, &t.sink_if)] {
            ip(&["-n", ns, "link", "set", ifn, "up"])?;
        }
        ip(&["-n", &g, "addr", "add", &format!("{GEN_IP}/24"), "dev", &t.gen_if])?;
        ip(&["-n", &s, "addr", "add", &format!("{SINK_IP}/24"), "dev", &t.sink_if])?;
        ip(&["-n", &g, "neigh", "add", SINK_IP, "lladdr", &mac_str(&SINK_MAC), "dev", &t.gen_if, "nud", "permanent"])?;
        ip(&["-n", &s, "neigh", "add", GEN_IP, "lladdr", &mac_str(&GEN_MAC), "dev", &t.sink_if, "nud", "permanent"])?;
        run(in_ns(&g, "ethtool").args(["-K", &t.gen_if, "tx", "off"]))?;
        run(in_ns(&s, "ethtool").args(["-K", &t.sink_if, "tx", "off"]))?;
        // Threaded NAPI on the middle's veths, so that their receive work is a thread we can
        // pin to the middle's core. veth has a NAPI instance only with GRO on or XDP attached;
        // the setting survives GRO going off and applies to NAPI instances created later.
        for ifn in [&t.ext, &t.int] {
            sh_in_ns(
                &m,
                &format!(
                    "ethtool -K {ifn} gro on && echo 1 > /sys/class/net/{ifn}/threaded && ethtool -K {ifn} gro off"
                ),
            )
            .ctx("enabling threaded NAPI on the middle's veths")?;
        }
        // The sink drops the floods at ingress (its rx counters still see them).
        let rules = format!(
            "table netdev wb {{\n  chain sinkdrop {{\n    type filter hook ingress device \"{}\" priority 0;\n    \
             ip saddr 198.19.0.0/16 drop\n    udp dport {UDP_PORT} drop\n  }}\n}}",
            t.sink_if
        );
        t.nft(&s, "sink.nft", &rules).ctx("installing the sink's ingress drop rules")?;
        Ok(t)
    }

    /// Load an nftables ruleset into namespace `ns` (through a file: nft reads blocks only there).
    pub fn nft(&self, ns: &str, file: &str, rules: &str) -> Result<(), LabError> {
        let f = self.dir.join(file);
        std::fs::write(&f, format!("{rules}\n"))
            .map_err(|source| LabError::Io { what: format!("cannot write {}", f.display()), source })?;
        run(in_ns(ns, "nft").arg("-f").arg(&f))?;
        Ok(())
    }

    /// The counters of `ifn` in `ns`.
    pub fn stats(&self, ns: &str, ifn: &str) -> Result<IfStats, LabError> {
        parse_ip_link_stats(&ip(&["-n", ns, "-s", "-j", "link", "show", "dev", ifn])?)
    }

    /// Counters of gen, ext and sink.
    pub fn snapshot(&self) -> Result<[IfStats; 3], LabError> {
        Ok([
            self.stats(&self.gen_ns, &self.gen_if)?,
            self.stats(&self.mid_ns, &self.ext)?,
            self.stats(&self.sink_ns, &self.sink_if)?,
        ])
    }

    /// Pin the NAPI threads of the middle's veths to `cpu`; with `fifo`, also SCHED_FIFO 50
    /// (else SCHED_OTHER). Returns how many threads were found.
    pub fn pin_napi(&self, cpu: usize, fifo: bool) -> Result<usize, LabError> {
        self.pin_napi_to(&[cpu], fifo)
    }

    /// [`Line::pin_napi`], the thread of queue *i* to `cpus[i % len]`.
    pub fn pin_napi_to(&self, cpus: &[usize], fifo: bool) -> Result<usize, LabError> {
        let mut n = 0;
        for ifn in [&self.ext, &self.int] {
            let threads = crate::control::knobs::napi_threads(Path::new("/proc"), ifn)
                .ctx(&format!("finding the NAPI threads of {ifn}"))?;
            for (i, pid) in threads.iter().map(|t| t.pid).enumerate() {
                let cpu = cpus.get(i % cpus.len().max(1)).copied().unwrap_or(0);
                run(Command::new("taskset").args(["-p", "-c", &cpu.to_string(), &pid.to_string()]))?;
                if fifo {
                    run(Command::new("chrt").args(["-f", "-p", "50", &pid.to_string()]))?;
                } else {
                    run(Command::new("chrt").args(["-o", "-p", "0", &pid.to_string()]))?;
                }
                n += 1;
            }
        }
        Ok(n)
    }

    /// Give `ifn` (in `ns`) a NAPI thread of its own, pinned to `cpu`: its receive work then
    /// runs there instead of on the transmitting CPU (a veth without NAPI receives in the
    /// sender's context). For the line's end hosts, so that what they receive from the middle
    /// (the sink's server traffic, answers towards the generator) is not charged to the middle's
    /// core. GRO stays on: the NAPI instance exists only with GRO (or XDP). Returns the threads
    /// pinned.
    pub fn napi_on_core(&self, ns: &str, ifn: &str, cpu: usize) -> Result<usize, LabError> {
        sh_in_ns(ns, &format!("ethtool -K {ifn} gro on && echo 1 > /sys/class/net/{ifn}/threaded"))
            .ctx(&format!("enabling threaded NAPI on {ifn}"))?;
        let threads = crate::control::knobs::napi_threads(Path::new("/proc"), ifn)
            .ctx(&format!("finding the NAPI threads of {ifn}"))?;
        for t in &threads {
            run(Command::new("taskset").args(["-p", "-c", &cpu.to_string(), &t.pid.to_string()]))?;
        }
        Ok(threads.len())
    }

    /// Keep the end hosts' work off the middle's core: the generator's and the sink's veths
    /// receive in NAPI threads of their own on `host_cpu` (a veth without NAPI receives in the
    /// sender's context — the middle's transmit, on the middle's core), the middle's veths
    /// send without TSO (else a veth bypasses its peer's NAPI), and answers to the spoofed
    /// flood sources die at the generator's ingress. Returns the NAPI threads pinned.
    pub fn isolate_middle_core(&self, host_cpu: usize) -> Result<usize, LabError> {
        let mut n = 0;
        for (ns, ifn) in [(&self.gen_ns, &self.gen_if), (&self.sink_ns, &self.sink_if)] {
            n += self.napi_on_core(ns, ifn, host_cpu)?;
        }
        for ifn in [&self.ext, &self.int] {
            sh_in_ns(&self.mid_ns, &format!("ethtool -K {ifn} tso off gso off"))?;
        }
        let rules = format!(
            "table netdev wbg {{\n  chain answers {{\n    type filter hook ingress device \"{}\" priority 0;\n    \
             ip daddr 198.19.0.0/16 drop\n  }}\n}}",
            self.gen_if
        );
        self.nft(&self.gen_ns, "gen-ingress.nft", &rules).ctx("installing the generator's ingress drop")?;
        Ok(n)
    }

    /// The NAPI deferral knobs of `scrubber run --napi-tune`, on (`true`) or off.
    pub fn napi_defer(&self, on: bool) -> Result<(), LabError> {
        let (d, g) = if on { (2, 20_000) } else { (0, 0) };
        for ifn in [&self.ext, &self.int] {
            sh_in_ns(
                &self.mid_ns,
                &format!(
                    "echo {d} > /sys/class/net/{ifn}/napi_defer_hard_irqs && echo {g} > /sys/class/net/{ifn}/gro_flush_timeout"
                ),
            )?;
        }
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(format!("/run/{}", self.tag));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trafgen_ackpsh_config_spoofs_inside_198_19() {
        let c = trafgen_config(Flood::AckPsh, &GEN_MAC, &SINK_MAC);
        assert!(c.contains("da=02:00:5b:00:00:02, sa=02:00:5b:00:00:01"), "{c}");
        // The source is 198.19.x.y: the first two bytes fixed, only the last two randomised.
        assert!(c.contains("sa=198.19.0.0, sa[2:2]=drnd()"), "{c}");
        assert!(c.contains("da=198.18.0.10"));
        assert!(c.contains("dp=80") && c.contains("ack, psh") && !c.contains("syn"));
        assert_eq!(c.matches('{').count(), c.matches('}').count());
    }

    #[test]
    fn trafgen_udp_config_is_valid_traffic() {
        let c = trafgen_config(Flood::Udp, &[0xaa, 0xbb, 0xcc, 0, 1, 0xff], &SINK_MAC);
        assert!(c.contains("sa=aa:bb:cc:00:01:ff"), "{c}");
        assert!(c.contains("ipv4(sa=198.18.0.1, da=198.18.0.10"));
        assert!(c.contains("dp=9") && !c.contains("drnd"), "{c}");
    }

    #[test]
    fn ip_link_json_counters() {
        let j = r#"[{"ifindex":2,"ifname":"wb1e","stats64":{"rx":{"bytes":116941764,"packets":2000000,"errors":0,"dropped":84272,"over_errors":0,"multicast":0},"tx":{"bytes":10,"packets":3,"errors":0,"dropped":7,"carrier_errors":0,"collisions":0}}}]"#;
        let s = parse_ip_link_stats(j).unwrap();
        assert_eq!(s, IfStats { rx_packets: 2_000_000, rx_dropped: 84_272, tx_packets: 3, tx_dropped: 7 });
        let d = s.delta(&IfStats { rx_packets: 1_000_000, rx_dropped: 84_000, tx_packets: 3, tx_dropped: 9 });
        assert_eq!(d, IfStats { rx_packets: 1_000_000, rx_dropped: 272, tx_packets: 0, tx_dropped: 0 });
        assert!(parse_ip_link_stats("[]").is_err());
        assert!(parse_ip_link_stats(r#"[{"stats64":{"rx":{"packets":1}}}]"#).is_err());
        assert!(parse_ip_link_stats("not json").is_err());
    }
}
