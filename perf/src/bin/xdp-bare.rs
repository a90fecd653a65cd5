//! `xdp-bare`: the bare AF_XDP loops, built only from `scrubber-xsk`. No judging, no parsing:
//! `drop` receives and recycles, `forward` moves every frame from ext to int and from int to
//! ext; `reflect` sends every frame back out of the side it came in on (MACs swapped). This is
//! the ceiling of the machine the scrubber is compared against.
//!
//! ```text
//! xdp-bare --ext IF --int IF --mode drop|forward|reflect [--queue 0] [--core N]
//!          [--poll spin|yield|block] [--seconds S] [--json]
//! ```
//!
//! Prints one line per second (packets received and transmitted per side, pps) and a final
//! line with totals, averages and the ring counters (`--json`: one JSON object per line).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use scrubber_xsk::{AttachMode, Desc, Fallback, Side, SocketPair, SocketPairConfig, XdpProgram, ZeroCopy};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Receive on both sides and recycle every frame.
    Drop,
    /// ext → int and int → ext, moving descriptors (no copy).
    Forward,
    /// Back out of the arrival side with the MAC addresses swapped (the bare equivalent of
    /// answering every frame, as a SYN proxy answers SYNs).
    Reflect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Poll {
    /// Busy-loop on the rings.
    Spin,
    /// `sched_yield` when a round found nothing.
    Yield,
    /// `poll(2)` on both sockets when a round found nothing.
    Block,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Attach {
    /// Driver (native) XDP.
    Native,
    /// Generic (skb) XDP.
    Generic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Zc {
    /// Zero-copy when the driver can, else copy.
    Auto,
    /// Zero-copy or fail.
    On,
    /// Copy mode.
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Fb {
    /// Frames on queues without a socket go to the kernel stack.
    Pass,
    /// Frames on queues without a socket are dropped.
    Drop,
}

#[derive(Parser, Debug)]
#[command(name = "xdp-bare", version, about = "Bare AF_XDP drop/forward loops: the ceiling for the scrubber")]
struct Args {
    /// Internet-facing interface.
    #[arg(long)]
    ext: String,
    /// Server-facing interface.
    #[arg(long)]
    int: String,
    /// What to do with received frames.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Queue to serve on both interfaces (the first, with --queues).
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Serve this many queues from --queue on, one thread each (thread i on core --core + i).
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// Pin the loop to this CPU core (thread i of --queues to core + i).
    #[arg(long)]
    core: Option<usize>,
    /// What to do when a round finds no frames.
    #[arg(long, value_enum, default_value_t = Poll::Spin)]
    poll: Poll,
    /// Run time in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = Attach::Native)]
    attach: Attach,
    /// Zero-copy policy.
    #[arg(long, value_enum, default_value_t = Zc::Auto)]
    zero_copy: Zc,
    /// Action of the XDP program for queues without a socket.
    #[arg(long, value_enum, default_value_t = Fb::Pass)]
    fallback: Fb,
    /// UMEM frame size (2048 or 4096).
    #[arg(long, default_value_t = 2048)]
    frame_size: u32,
    /// UMEM frames.
    #[arg(long, default_value_t = 4096)]
    frames: u32,
    /// Entries of each ring (rx, tx, fill, completion).
    #[arg(long, default_value_t = 1024)]
    ring: u32,
    /// Print the ring counters (ours and the kernel's) every second, to stderr.
    #[arg(long)]
    ring_stats: bool,
    /// Frames per rx batch (1..=256).
    #[arg(long, default_value_t = 64)]
    batch: usize,
}

#[derive(Clone, Copy, Default)]
struct Counts {
    rx: [u64; 2],
    tx: [u64; 2],
    /// Frames recycled because the tx ring was full (forward mode).
    tx_full_drops: u64,
}

fn pin(c: usize) -> Result<()> {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let id = ids.into_iter().find(|i| i.id == c).with_context(|| format!("no CPU core {c} to pin to"))?;
    if !core_affinity::set_for_current(id) {
        bail!("pinning to core {c} failed");
    }
    Ok(())
}

/// A loop on one more queue (with --queues): the same as the main loop, without reports.
fn serve_more(
    a: &Args,
    queue: u32,
    core: Option<usize>,
    progs: &[std::sync::Arc<XdpProgram>],
    end: Instant,
) -> Result<Counts> {
    // Not `pin`: this thread inherited the main thread's one-core affinity, which is all
    // `get_core_ids` would list.
    if let Some(c) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
            bail!("pinning queue {queue}'s thread to core {c} failed");
        }
    }
    let mut cfg = SocketPairConfig::new(&a.ext, &a.int, queue);
    cfg.frame_size = a.frame_size;
    cfg.frame_count = a.frames;
    (cfg.rx_size, cfg.tx_size, cfg.fill_size, cfg.comp_size) = (a.ring, a.ring, a.ring, a.ring);
    let mut w = SocketPair::new(&cfg).with_context(|| format!("opening the AF_XDP sockets of queue {queue}"))?;
    for (i, side) in Side::BOTH.iter().enumerate() {
        progs[i].register(queue, w.fd(*side))?;
    }
    let mut batch = [Desc::default(); 256];
    let batch = &mut batch[..a.batch];
    let mut c = Counts::default();
    while Instant::now() < end {
        let got = round(a, &mut w, batch, &mut c);
        w.service();
        if got == 0 {
            match a.poll {
                Poll::Spin => {}
                Poll::Yield => std::thread::yield_now(),
                Poll::Block => {
                    w.poll_wait(100);
                }
            }
        }
    }
    w.service();
    Ok(c)
}

/// One round over both sides: receive, then drop, forward or reflect. Returns frames received.
fn round(a: &Args, w: &mut SocketPair, batch: &mut [Desc], c: &mut Counts) -> usize {
    let mut got = 0;
    for side in Side::BOTH {
        let n = w.rx_batch(side, batch);
        if n == 0 {
            continue;
        }
        got += n;
        c.rx[side as usize] += n as u64;
        match a.mode {
            Mode::Drop => w.recycle(&batch[..n]),
            Mode::Forward | Mode::Reflect => {
                let out = if a.mode == Mode::Reflect {
                    for d in &batch[..n] {
                        if let Some(f) = w.frame_mut(d) {
                            if f.len() >= 12 {
                                let mut mac = [0u8; 6];
                                mac.copy_from_slice(&f[..6]);
                                f.copy_within(6..12, 0);
                                f[6..12].copy_from_slice(&mac);
                            }
                        }
                    }
                    side
                } else {
                    side.other()
                };
                let sent = w.tx_batch(out, &batch[..n]);
                c.tx[out as usize] += sent as u64;
                if sent < n {
                    c.tx_full_drops += (n - sent) as u64;
                    w.recycle(&batch[sent..n]);
                }
            }
        }
    }
    got
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.queues == 0 || a.queues > 64 {
        bail!("--queues takes 1 to 64");
    }
    if !(1..=256).contains(&a.batch) {
        bail!("--batch takes 1 to 256");
    }
    if a.seconds == 0 || a.seconds > 3600 {
        bail!("--seconds takes 1 to 3600");
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; for figures run `cargo run --release -p scrubber-perf --bin xdp-bare -- ...`");
    }
    if let Some(c) = a.core {
        pin(c)?;
    }
    let limit = scrubber_xsk::raise_memlock();
    let mut cfg = SocketPairConfig::new(&a.ext, &a.int, a.queue);
    cfg.frame_size = a.frame_size;
    cfg.frame_count = a.frames;
    (cfg.rx_size, cfg.tx_size, cfg.fill_size, cfg.comp_size) = (a.ring, a.ring, a.ring, a.ring);
    cfg.zero_copy = match a.zero_copy {
        Zc::Auto => ZeroCopy::Auto,
        Zc::On => ZeroCopy::On,
        Zc::Off => ZeroCopy::Off,
    };
    let mut w = SocketPair::new(&cfg).context("opening the AF_XDP sockets")?;
    let mode = match a.attach {
        Attach::Native => AttachMode::Native,
        Attach::Generic => AttachMode::Generic,
    };
    let fallback = match a.fallback {
        Fb::Pass => Fallback::Pass,
        Fb::Drop => Fallback::Drop,
    };
    let mut progs = Vec::new();
    for side in Side::BOTH {
        let ifname = w.ifname(side).to_string();
        let queues = scrubber_xsk::rx_queue_count(&ifname)?;
        let p = XdpProgram::attach(&ifname, queues, mode, fallback)?;
        p.register(a.queue, w.fd(side))?;
        progs.push(std::sync::Arc::new(p));
    }
    // The other queues, one thread each, until the same end.
    let end_all = Instant::now() + Duration::from_secs(a.seconds);
    let more: Vec<std::thread::JoinHandle<Result<Counts>>> = (1..a.queues)
        .map(|i| {
            let (a2, progs2) = (Args::parse(), progs.clone());
            let q = a.queue + i;
            let core = a.core.map(|c| c + i as usize);
            std::thread::spawn(move || serve_more(&a2, q, core, &progs2, end_all))
        })
        .collect();
    let info = format!(
        "xdp-bare {:?} on {} + {} queue {}: ext {} int {}, XDP {mode}, poll {:?}, memlock {limit}",
        a.mode,
        a.ext,
        a.int,
        a.queue,
        w.mode(Side::Ext),
        w.mode(Side::Int),
        a.poll
    );
    if a.json {
        println!(
            "{}",
            serde_json::json!({"event": "start", "mode": format!("{:?}", a.mode).to_lowercase(),
                "ext": a.ext, "int": a.int, "queue": a.queue,
                "bind_ext": w.mode(Side::Ext).to_string(), "bind_int": w.mode(Side::Int).to_string(),
                "xdp": mode.to_string(), "poll": format!("{:?}", a.poll).to_lowercase()})
        );
    } else {
        eprintln!("{info}");
    }

    let mut batch = [Desc::default(); 256];
    let batch = &mut batch[..a.batch];
    let mut c = Counts::default();
    let start = Instant::now();
    let end = start + Duration::from_secs(a.seconds);
    let mut next_report = start + Duration::from_secs(1);
    let mut last = c;
    let mut last_t = start;
    let mut last_kdrops = kernel_drops(&w.stats());
    let mut second = 0u64;
    let mut rounds = 0u32;
    loop {
        let got = round(&a, &mut w, batch, &mut c);
        w.service();
        rounds = rounds.wrapping_add(1);
        if got == 0 {
            match a.poll {
                Poll::Spin => {}
                Poll::Yield => std::thread::yield_now(),
                Poll::Block => {
                    w.poll_wait(100);
                }
            }
        }
        if got == 0 || rounds % 256 == 0 {
            let now = Instant::now();
            if now >= next_report {
                second += 1;
                let dt = now.duration_since(last_t).as_secs_f64();
                let st = w.stats();
                let kdrops = kernel_drops(&st);
                report_second(&a, second, dt, &c, &last, kdrops - last_kdrops);
                last_kdrops = kdrops;
                if a.ring_stats {
                    eprintln!("    {st:?}");
                }
                last = c;
                last_t = now;
                next_report += Duration::from_secs(1);
            }
            if now >= end {
                break;
            }
        }
    }
    // Drain: let queued transmissions complete so the counters are final.
    let drain = Instant::now() + Duration::from_millis(200);
    while Instant::now() < drain && (w.tx_pending(Side::Ext) > 0 || w.tx_pending(Side::Int) > 0) {
        w.service();
    }
    w.service();
    for h in more {
        match h.join() {
            Ok(Ok(m)) => {
                for i in 0..2 {
                    c.rx[i] += m.rx[i];
                    c.tx[i] += m.tx[i];
                }
                c.tx_full_drops += m.tx_full_drops;
            }
            Ok(Err(e)) => bail!(e),
            Err(_) => bail!("a queue's thread panicked"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let st = w.stats();
    let acct = w.check_accounting();
    let k = |s: Side| st.side(s).kernel.unwrap_or_default();
    let (ke, ki) = (k(Side::Ext), k(Side::Int));
    let rx_total = c.rx[0] + c.rx[1];
    let tx_total = c.tx[0] + c.tx[1];
    if a.json {
        println!(
            "{}",
            serde_json::json!({"event": "final", "seconds": round2(secs),
                "rx_ext": c.rx[0], "rx_int": c.rx[1], "tx_ext": c.tx[0], "tx_int": c.tx[1],
                "rx_pps": (rx_total as f64 / secs).round(), "tx_pps": (tx_total as f64 / secs).round(),
                "tx_full_drops": c.tx_full_drops,
                "tx_completed_ext": st.ext.tx_completed, "tx_completed_int": st.int.tx_completed,
                "tx_kicks": st.ext.tx_kicks + st.int.tx_kicks, "fill_short": st.ext.fill_short + st.int.fill_short,
                "kernel_rx_dropped": ke.rx_dropped + ki.rx_dropped,
                "kernel_rx_ring_full": ke.rx_ring_full + ki.rx_ring_full,
                "kernel_fill_empty": ke.rx_fill_ring_empty_descs + ki.rx_fill_ring_empty_descs,
                "accounting_ok": acct.is_ok()})
        );
    } else {
        println!(
            "final: {secs:.2} s  rx ext {} int {} ({:.0} pps)  tx ext {} int {} ({:.0} pps)  tx-full drops {}  \
             kernel: rx_dropped {} rx_ring_full {} fill_empty {}  kicks {}  accounting {}",
            c.rx[0],
            c.rx[1],
            rx_total as f64 / secs,
            c.tx[0],
            c.tx[1],
            tx_total as f64 / secs,
            c.tx_full_drops,
            ke.rx_dropped + ki.rx_dropped,
            ke.rx_ring_full + ki.rx_ring_full,
            ke.rx_fill_ring_empty_descs + ki.rx_fill_ring_empty_descs,
            st.ext.tx_kicks + st.int.tx_kicks,
            if acct.is_ok() { "ok" } else { "BROKEN" },
        );
    }
    if let Err(e) = acct {
        bail!(e);
    }
    drop(progs);
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Frames the kernel dropped at the sockets (no fill buffer, rx ring full), both sides.
fn kernel_drops(st: &scrubber_xsk::RingStats) -> u64 {
    [st.ext.kernel, st.int.kernel].iter().flatten().map(|k| k.rx_dropped + k.rx_ring_full).sum()
}

fn report_second(a: &Args, second: u64, dt: f64, c: &Counts, last: &Counts, kdrops: u64) {
    let d = |x: u64, y: u64| (x - y) as f64 / dt;
    let (rxe, rxi, txe, txi) =
        (d(c.rx[0], last.rx[0]), d(c.rx[1], last.rx[1]), d(c.tx[0], last.tx[0]), d(c.tx[1], last.tx[1]));
    if a.json {
        println!(
            "{}",
            serde_json::json!({"event": "second", "t": second, "rx_ext_pps": rxe.round(), "rx_int_pps": rxi.round(),
                "tx_ext_pps": txe.round(), "tx_int_pps": txi.round(),
                "tx_full_drops": c.tx_full_drops - last.tx_full_drops, "kernel_drops": kdrops})
        );
    } else {
        println!(
            "t={second:>3}s  rx ext {rxe:>10.0} int {rxi:>10.0} pps   tx ext {txe:>10.0} int {txi:>10.0} pps   \
             tx-full drops {}  kernel drops {kdrops}",
            c.tx_full_drops - last.tx_full_drops
        );
    }
}
