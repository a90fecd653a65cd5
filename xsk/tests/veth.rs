//! AF_XDP end to end on veth, as root, inside network namespaces these tests create and remove.
//!
//! Topology per test (tag `xskt<pid><letter>`):
//!
//! ```text
//!  ns TAG-e            ns TAG-m (the worker)                 ns TAG-i
//!  TAGef ───veth─── TAGem [XDP]  SocketPair  TAGim [XDP] ───veth─── TAGif
//! ```
//!
//! Frames are raw Ethernet/IPv4/UDP frames built here (198.18.0.0/15 only), sent and counted
//! with AF_PACKET sockets in the outer namespaces. Everything is bounded in count and time.
//! Without root every test prints `SKIPPED` and passes.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use scrubber_xsk::{
    AttachMode, BindMode, Desc, Fallback, Side, SocketPair, SocketPairConfig, XdpProgram, XskError, ZeroCopy,
};

// ---------------------------------------------------------------------------------------------
// Lab: namespaces and veths, removed on drop.

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! need_root {
    ($name:expr) => {
        if !is_root() {
            eprintln!("SKIPPED {}: needs root (network namespaces, CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW)", $name);
            return;
        }
    };
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Lab {
    tag: String,
    created: Vec<String>,
}

impl Lab {
    /// Three namespaces and two veth pairs, all up, IPv6 off (no stray frames).
    fn new(letter: char) -> Lab {
        let tag = format!("xskt{}{letter}", std::process::id());
        let mut lab = Lab { tag, created: Vec::new() };
        for ns in [lab.ns('e'), lab.ns('m'), lab.ns('i')] {
            run("ip", &["netns", "add", &ns]);
            lab.created.push(ns.clone());
            let off = "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; \
                       echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6";
            run("ip", &["netns", "exec", &ns, "sh", "-c", off]);
        }
        for (mid, far, farns) in
            [(lab.ifname("em"), lab.ifname("ef"), lab.ns('e')), (lab.ifname("im"), lab.ifname("if"), lab.ns('i'))]
        {
            run(
                "ip",
                &["-n", &lab.ns('m'), "link", "add", &mid, "type", "veth", "peer", "name", &far, "netns", &farns],
            );
            run("ip", &["-n", &lab.ns('m'), "link", "set", &mid, "up"]);
            run("ip", &["-n", &farns, "link", "set", &far, "up"]);
        }
        lab
    }

    fn ns(&self, which: char) -> String {
        format!("{}-{which}", self.tag)
    }

    fn ifname(&self, which: &str) -> String {
        let n = format!("{}{which}", self.tag);
        assert!(n.len() <= 15, "{n} too long for an interface name");
        n
    }

    fn ext_mid(&self) -> String {
        self.ifname("em")
    }
    fn int_mid(&self) -> String {
        self.ifname("im")
    }
    fn ext_far(&self) -> String {
        self.ifname("ef")
    }
    fn int_far(&self) -> String {
        self.ifname("if")
    }

    /// `ip -d link show` of a middle interface.
    fn link_show(&self, ifname: &str) -> String {
        run("ip", &["-n", &self.ns('m'), "-d", "link", "show", "dev", ifname])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veths in it (and their peers).
        for ns in self.created.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// Run `f` on a new thread that has entered network namespace `ns` (only that thread moves).
fn in_ns<'scope, T: Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    ns: String,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, T> {
    s.spawn(move || {
        enter_ns(&ns);
        f()
    })
}

fn enter_ns(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("namespace file");
    // SAFETY: setns on a valid namespace descriptor; it moves only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

fn in_ns_now<T: Send>(ns: String, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| in_ns(s, ns, f).join().expect("thread in namespace panicked"))
}

// ---------------------------------------------------------------------------------------------
// Raw frames.

const MAGIC: &[u8; 4] = b"XSKT";

/// Ethernet/IPv4/UDP frame 198.18.0.1:4000 → 198.19.0.2:9 carrying MAGIC, `kind`, `seq`.
fn udp_frame(kind: u8, seq: u32) -> Vec<u8> {
    let payload_len = 4 + 1 + 4 + 23; // pad to a 74-byte frame
    let mut f = Vec::with_capacity(14 + 20 + 8 + payload_len);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload_len) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
    ip[16..20].copy_from_slice(&[198, 19, 0, 2]);
    let mut sum: u32 = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&4000u16.to_be_bytes());
    f.extend_from_slice(&9u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(MAGIC);
    f.push(kind);
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(14 + 20 + 8 + payload_len, 0);
    f
}

/// (kind, seq) of one of our frames.
fn parse_frame(f: &[u8]) -> Option<(u8, u32)> {
    let p = f.get(42..51)?;
    (p[..4] == MAGIC[..]).then(|| (p[4], u32::from_be_bytes([p[5], p[6], p[7], p[8]])))
}

/// An AF_PACKET socket bound to one interface of the calling thread's namespace.
struct RawSock {
    fd: OwnedFd,
}

const PACKET_OUTGOING: u8 = 4;

impl RawSock {
    fn open(ifname: &str) -> RawSock {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); checked below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(proto)) };
        assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let idx = scrubber_xsk::ifindex(ifname).expect("ifindex");
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = idx as i32;
        // SAFETY: bind reads a valid sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(rc, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
        let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
        // SAFETY: setsockopt reads a valid timeval.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        RawSock { fd }
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: send reads `frame` for its length.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(rc, frame.len() as isize, "send: {}", std::io::Error::last_os_error());
    }

    /// One incoming frame (outgoing copies skipped), or None after the receive timeout.
    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: sockaddr_ll is plain data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: recvfrom writes at most buf.len() bytes into buf and at most `len` into sll.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut sll as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n < 0 {
            return None;
        }
        if sll.sll_pkttype == PACKET_OUTGOING {
            return Some(0);
        }
        Some(n as usize)
    }
}

/// Count our frames of `kind` arriving on `ifname` until `want` distinct ones or `deadline`.
fn count_frames(ifname: &str, kind: u8, want: usize, deadline: Instant, ready: mpsc::Sender<()>) -> usize {
    let s = RawSock::open(ifname);
    ready.send(()).ok();
    let mut seen = std::collections::HashSet::new();
    let mut buf = [0u8; 2048];
    while seen.len() < want && Instant::now() < deadline {
        if let Some(n) = s.recv(&mut buf) {
            if let Some((k, seq)) = parse_frame(&buf[..n]) {
                if k == kind {
                    seen.insert(seq);
                }
            }
        }
    }
    seen.len()
}

fn send_frames(ifname: &str, kind: u8, count: u32) {
    let s = RawSock::open(ifname);
    for seq in 0..count {
        s.send(&udp_frame(kind, seq));
        if seq % 32 == 31 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SocketPair setup in the middle namespace.

struct Mid {
    w: SocketPair,
    _ext: XdpProgram,
    _int: XdpProgram,
}

fn open_mid(lab: &Lab, cfg: &SocketPairConfig) -> Mid {
    scrubber_xsk::raise_memlock();
    let w = SocketPair::new(cfg).expect("worker");
    let qe = scrubber_xsk::rx_queue_count(&lab.ext_mid()).unwrap();
    let qi = scrubber_xsk::rx_queue_count(&lab.int_mid()).unwrap();
    let ext = XdpProgram::attach(&lab.ext_mid(), qe, AttachMode::Native, Fallback::Drop).expect("attach ext");
    let int = XdpProgram::attach(&lab.int_mid(), qi, AttachMode::Native, Fallback::Drop).expect("attach int");
    ext.register(0, w.fd(Side::Ext)).unwrap();
    int.register(0, w.fd(Side::Int)).unwrap();
    Mid { w, _ext: ext, _int: int }
}

/// What the middle does with a received frame.
#[derive(Clone, Copy)]
enum Action {
    /// To the other side.
    Forward,
    /// Back out of the side it came from.
    Answer,
}

/// Run the worker loop until `stop`; checks the frame accounting every iteration.
fn worker_loop(mid: &mut Mid, action: Action, stop: &AtomicBool, deadline: Instant) -> (u64, Vec<String>) {
    let mut batch = [Desc::default(); 64];
    let mut moved = 0u64;
    let mut problems = Vec::new();
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut got = 0;
        for side in Side::BOTH {
            let n = mid.w.rx_batch(side, &mut batch);
            got += n;
            for d in &batch[..n] {
                if mid.w.frame(d).is_none() {
                    problems.push("received frame not readable".into());
                }
            }
            let out = match action {
                Action::Forward => side.other(),
                Action::Answer => side,
            };
            let mut done = 0;
            for _ in 0..100 {
                done += mid.w.tx_batch(out, &batch[done..n]);
                if done == n {
                    break;
                }
                mid.w.service();
            }
            mid.w.recycle(&batch[done..n]);
            moved += done as u64;
        }
        mid.w.service();
        if let Err(e) = mid.w.check_accounting() {
            problems.push(e.to_string());
            break;
        }
        if got == 0 {
            mid.w.poll_wait(5);
        }
    }
    // Let transmissions complete, then the books must still balance.
    let end = Instant::now() + Duration::from_millis(300);
    while Instant::now() < end && (mid.w.tx_pending(Side::Ext) > 0 || mid.w.tx_pending(Side::Int) > 0) {
        mid.w.service();
    }
    mid.w.service();
    if let Err(e) = mid.w.check_accounting() {
        problems.push(e.to_string());
    }
    (moved, problems)
}

/// Send `count` frames of `kind` from the far end of `from`, count them at the far end of `to`.
fn through(lab: &Lab, action: Action, from: Side, count: u32) -> (usize, u64, Mid) {
    let (far_tx_ns, far_tx_if) =
        if from == Side::Ext { (lab.ns('e'), lab.ext_far()) } else { (lab.ns('i'), lab.int_far()) };
    let to = match action {
        Action::Forward => from.other(),
        Action::Answer => from,
    };
    let (far_rx_ns, far_rx_if) =
        if to == Side::Ext { (lab.ns('e'), lab.ext_far()) } else { (lab.ns('i'), lab.int_far()) };
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    let cfg = SocketPairConfig::new(&lab.ext_mid(), &lab.int_mid(), 0);
    let kind = 7;
    std::thread::scope(|s| {
        let (mid_ready_tx, mid_ready) = mpsc::channel();
        let stop = &stop;
        let worker = in_ns(s, lab.ns('m'), move || {
            let mut mid = open_mid(lab, &cfg);
            mid_ready_tx.send(()).unwrap();
            let (moved, problems) = worker_loop(&mut mid, action, stop, deadline);
            (moved, problems, mid)
        });
        mid_ready.recv_timeout(Duration::from_secs(10)).expect("worker did not start");
        let (rx_ready_tx, rx_ready) = mpsc::channel();
        let rx = in_ns(s, far_rx_ns, move || count_frames(&far_rx_if, kind, count as usize, deadline, rx_ready_tx));
        rx_ready.recv_timeout(Duration::from_secs(10)).expect("receiver did not start");
        in_ns(s, far_tx_ns, move || send_frames(&far_tx_if, kind, count)).join().unwrap();
        let got = rx.join().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
        let (moved, problems, mid) = worker.join().unwrap();
        assert!(problems.is_empty(), "worker problems: {problems:?}");
        (got, moved, mid)
    })
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn forwards_ext_to_int_and_back_on_veth() {
    need_root!("forwards_ext_to_int_and_back_on_veth");
    let lab = Lab::new('a');
    let n = 300;
    let (got, moved, mid) = through(&lab, Action::Forward, Side::Ext, n);
    assert_eq!(got, n as usize, "frames arriving in the int namespace");
    assert!(moved >= u64::from(n), "worker moved {moved}");
    // veth has no AF_XDP zero-copy: Auto must have fallen back to copy mode on both sockets.
    assert_eq!(mid.w.mode(Side::Ext), BindMode::Copy);
    assert_eq!(mid.w.mode(Side::Int), BindMode::Copy);
    let st = mid.w.stats();
    assert!(st.ext.rx_packets >= u64::from(n), "{st:?}");
    assert!(st.int.tx_completed >= u64::from(n), "{st:?}");
    assert_eq!(st.int.tx_rejected, 0);
    eprintln!("ext→int stats: {st:#?}");
    drop(mid);

    let (got, _, mid) = through(&lab, Action::Forward, Side::Int, n);
    assert_eq!(got, n as usize, "frames arriving in the ext namespace");
    assert!(mid.w.stats().int.rx_packets >= u64::from(n));
}

#[test]
fn answers_back_out_of_the_arrival_side() {
    need_root!("answers_back_out_of_the_arrival_side");
    let lab = Lab::new('b');
    let n = 200;
    let (got, _, mid) = through(&lab, Action::Answer, Side::Ext, n);
    assert_eq!(got, n as usize, "frames bounced back to the ext namespace");
    let st = mid.w.stats();
    assert!(st.ext.tx_completed >= u64::from(n), "{st:?}");
    assert_eq!(st.int.tx_queued, 0, "nothing should have gone to int: {st:?}");
}

#[test]
fn second_attach_is_refused_with_advice() {
    need_root!("second_attach_is_refused_with_advice");
    let lab = Lab::new('c');
    let ifname = lab.ext_mid();
    in_ns_now(lab.ns('m'), || {
        let first = XdpProgram::attach(&ifname, 1, AttachMode::Native, Fallback::Pass).expect("first attach");
        for mode in [AttachMode::Native, AttachMode::Generic] {
            let err = XdpProgram::attach(&ifname, 1, mode, Fallback::Pass).unwrap_err();
            assert!(matches!(err, XskError::XdpBusy { .. }), "{mode}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("ip link set dev {ifname} xdp off")), "{msg}");
            assert!(msg.contains("bpftool net"), "{msg}");
        }
        assert!(lab.link_show(&ifname).contains("xdp"), "program should be attached");
        drop(first);
        assert!(!lab.link_show(&ifname).contains("prog/xdp"), "dropping the handle must detach");
        let again = XdpProgram::attach(&ifname, 1, AttachMode::Native, Fallback::Pass).expect("attach after detach");
        assert_eq!(again.queue_count(), 1);
        let stdin = std::io::stdin();
        let err = again.register(1, std::os::fd::AsFd::as_fd(&stdin)).unwrap_err();
        assert!(matches!(err, XskError::QueueOutsideMap { .. }), "{err:?}");
    });
}

#[test]
fn setup_errors_name_the_problem() {
    need_root!("setup_errors_name_the_problem");
    let lab = Lab::new('d');
    in_ns_now(lab.ns('m'), || {
        let mut cfg = SocketPairConfig::new("xsktnonesuch0", &lab.int_mid(), 0);
        let err = SocketPair::new(&cfg).unwrap_err();
        assert!(matches!(err, XskError::NoSuchInterface { .. }), "{err:?}");
        assert!(err.to_string().contains("xsktnonesuch0"));
        cfg.ext = lab.ext_mid();
        cfg.queue = 5;
        let err = SocketPair::new(&cfg).unwrap_err();
        assert!(matches!(err, XskError::NoSuchQueue { queue: 5, count: 1, .. }), "{err:?}");
        cfg.queue = 0;
        cfg.zero_copy = ZeroCopy::On;
        let err = SocketPair::new(&cfg).unwrap_err();
        assert!(matches!(err, XskError::ZeroCopyRefused { .. }), "veth has no zero-copy: {err:?}");
        cfg.zero_copy = ZeroCopy::Off;
        let w = SocketPair::new(&cfg).expect("copy mode works on veth");
        assert_eq!(w.mode(Side::Ext), BindMode::Copy);
        let err = SocketPair::new(&cfg).unwrap_err();
        assert!(matches!(err, XskError::QueueBusy { .. }), "queue already bound: {err:?}");
        drop(w);
        cfg.frame_size = 3000;
        assert!(matches!(SocketPair::new(&cfg), Err(XskError::Config(_))));
        // Native XDP on a veth whose peer has a large MTU is refused; the error says why.
        run("ip", &["-n", &lab.ns('e'), "link", "set", &lab.ext_far(), "mtu", "9000"]);
        let err = XdpProgram::attach(&lab.ext_mid(), 1, AttachMode::Native, Fallback::Pass).unwrap_err();
        assert!(err.to_string().contains("MTU"), "{err}");
        let generic = XdpProgram::attach(&lab.ext_mid(), 1, AttachMode::Generic, Fallback::Pass);
        assert!(generic.is_ok(), "generic mode ignores the MTU limit: {generic:?}");
    });
}

#[test]
fn frame_accounting_survives_misuse() {
    need_root!("frame_accounting_survives_misuse");
    let lab = Lab::new('f');
    let (ready_tx, ready) = mpsc::channel();
    let kind = 9;
    let want = 40;
    std::thread::scope(|s| {
        let rx = in_ns(s, lab.ns('e'), || {
            count_frames(&lab.ext_far(), kind, want, Instant::now() + Duration::from_secs(8), ready_tx)
        });
        ready.recv_timeout(Duration::from_secs(5)).unwrap();
        in_ns(s, lab.ns('m'), || {
            let mut mid = open_mid(&lab, &SocketPairConfig::new(&lab.ext_mid(), &lab.int_mid(), 0));
            let w = &mut mid.w;
            let a0 = w.check_accounting().unwrap();
            assert_eq!(a0.total, 4096);
            assert_eq!(a0.kernel_rx, [1024, 1024], "both fill rings full at start");
            assert_eq!(a0.free, 4096 - 2048);

            // Take every free frame.
            let mut held = Vec::new();
            while let Some(d) = w.alloc_frame() {
                held.push(d);
            }
            assert_eq!(held.len(), 2048);
            let a = w.check_accounting().unwrap();
            assert_eq!((a.in_hand, a.free), (2048, 0));

            // Build frames in some, transmit them out of ext: they reach the ext namespace.
            let mut out = Vec::new();
            for (i, d) in held.drain(..want).enumerate() {
                let f = udp_frame(kind, i as u32);
                let mut d = d;
                let buf = w.frame_buf_mut(&d).unwrap();
                buf[..f.len()].copy_from_slice(&f);
                d.set_len(f.len());
                assert_eq!(w.frame(&d).unwrap(), &f[..]);
                out.push(d);
            }
            assert_eq!(w.tx_batch(Side::Ext, &out), want);
            // Those descriptors are no longer ours: every misuse is refused and counted.
            assert!(w.frame_mut(&out[0]).is_none(), "a queued frame cannot be borrowed");
            w.recycle(&out[..3]);
            assert_eq!(w.stats().bad_recycles, 3);
            assert_eq!(w.tx_batch(Side::Int, &out[..2]), 2, "refused descriptors are consumed");
            assert_eq!(w.stats().int.tx_rejected, 2);
            assert_eq!(w.stats().int.tx_queued, 0);

            // A bad length on a frame in hand: refused, and the frame is dropped, not lost.
            let mut short = held.pop().unwrap();
            short.set_len(10);
            let mut long = held.pop().unwrap();
            long.set_len(w.capacity(&long) + 1);
            assert!(w.frame_mut(&long).is_none(), "a length beyond the frame is refused");
            assert_eq!(w.tx_batch(Side::Ext, &[short, long]), 2);
            assert_eq!(w.stats().ext.tx_rejected, 2);

            // Two frames at once, the same frame twice refused.
            assert!(w.two_frames_mut(&held[0], &held[1]).is_some());
            assert!(w.two_frames_mut(&held[0], &held[0]).is_none());

            // Recycle everything else; double recycles are ignored.
            w.recycle(&held);
            w.recycle(&held[..5]);
            assert_eq!(w.stats().bad_recycles, 8);
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end && w.stats().ext.tx_completed < want as u64 {
                w.service();
                std::thread::sleep(Duration::from_millis(1));
            }
            let a = w.check_accounting().unwrap();
            assert_eq!(a.in_hand, 0);
            assert_eq!(a.kernel_tx, [0, 0], "all transmissions completed: {a:?}");
            assert_eq!(a.kernel_rx, [1024, 1024]);
            assert_eq!(a.free, 4096 - 2048);
            assert_eq!(a.lost, 0);
        })
        .join()
        .unwrap();
        assert_eq!(rx.join().unwrap(), want, "allocated frames sent out of ext arrive");
    });
}

const HELPER_ENV: &str = "XSKT_HOLD_IF";

/// Not a test by itself: the child process of `program_is_gone_after_sigkill`. Attaches the
/// program and a worker, then waits to be killed (at most 20 s).
#[test]
#[ignore = "helper process for program_is_gone_after_sigkill"]
fn helper_hold_xdp() {
    let Ok(spec) = std::env::var(HELPER_ENV) else { return };
    let (ext, int) = spec.split_once(',').expect("ext,int");
    let w = SocketPair::new(&SocketPairConfig::new(ext, int, 0)).expect("helper worker");
    let p = XdpProgram::attach(ext, 1, AttachMode::Native, Fallback::Pass).expect("helper attach");
    p.register(0, w.fd(Side::Ext)).unwrap();
    println!("XSKT-READY");
    std::thread::sleep(Duration::from_secs(20));
}

#[test]
fn program_is_gone_after_sigkill() {
    need_root!("program_is_gone_after_sigkill");
    let lab = Lab::new('g');
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns('m')])
        .arg(&exe)
        .args(["helper_hold_xdp", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, format!("{},{}", lab.ext_mid(), lab.int_mid()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id() as i32;
    let stdout = child.stdout.take().unwrap();
    let mut child = Reap(child);
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.contains("XSKT-READY") {
            ready = true;
            break;
        }
    }
    if !ready {
        let mut err = String::new();
        use std::io::Read;
        child.0.stderr.take().unwrap().read_to_string(&mut err).ok();
        panic!("helper did not attach: {err}");
    }
    assert!(lab.link_show(&lab.ext_mid()).contains("prog/xdp"), "helper's program is attached");
    // SAFETY: kill(2) on the PID of the child we spawned and have not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let status = child.0.wait().unwrap();
    assert!(!status.success());
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let show = lab.link_show(&lab.ext_mid());
        if !show.contains("prog/xdp") {
            break;
        }
        assert!(Instant::now() < end, "XDP program still attached 5 s after SIGKILL:\n{show}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // And the queue is free again: a new worker binds.
    in_ns_now(lab.ns('m'), || {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            match SocketPair::new(&SocketPairConfig::new(&lab.ext_mid(), &lab.int_mid(), 0)) {
                Ok(_) => break,
                Err(e) if Instant::now() < end => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("queue still busy after the owner died: {e}"),
            }
        }
    });
}
