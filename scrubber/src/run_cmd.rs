//! `scrubber run`: the AF_XDP data plane between two interfaces.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use scrubber::dataplane::{self, Poll, Shared, WorkerSetup};
use scrubber::engine::{Engine, EngineConfig, SynMode};
use scrubber::knobs::{KnobConfig, Knobs};
use scrubber::preflight::{self, PreflightConfig};
use scrubber::reload::{policy_channels, Reloader};
use scrubber::signals::Signals;
use scrubber::telemetry::{self, Publisher, ServerInfo, StatsServer, WorkerStats};
use scrubber_xsk::{AttachMode, Fallback, WorkerConfig, XdpProgram, ZeroCopy};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Run the scrubber between two interfaces (AF_XDP).
///
/// Every frame arriving on --ext is judged and forwarded out --int, answered back out --ext
/// (SYN cookies), or dropped; replies from --int go back out --ext the same way. One worker per
/// core in --cores; worker i owns rx/tx queue i of both interfaces. Runs until SIGINT/SIGTERM,
/// then drains, detaches and prints the final counters. SIGHUP (and any change of the rule file
/// and the lists it names) reloads --rules; a bad file keeps the running policy.
///
/// Examples:
///   scrubber run --ext eth1 --int eth2 --protect 198.18.0.10:80
///   scrubber run --ext eth1 --int eth2 --rules /etc/scrubber/edge.rules --cores 2-5
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RunArgs {
    /// The internet-facing interface.
    #[arg(long, value_name = "IF")]
    ext: String,
    /// The interface facing the protected servers.
    #[arg(long, value_name = "IF")]
    int: String,
    /// Rule file (services, rules, limits, settings).
    #[arg(long, value_name = "FILE", conflicts_with = "protect", required_unless_present = "protect")]
    rules: Option<PathBuf>,
    /// Protect IP[:PORT] (shorthand for a rule file with one TCP service per target).
    #[arg(long, value_name = "IP[:PORT]")]
    protect: Vec<String>,
    /// SYN handling for --protect targets (rule files set it per service).
    #[arg(long, value_enum, default_value_t = SynArg::Proxy)]
    syn_mode: SynArg,
    /// Cores for the workers, e.g. `0`, `0,1` or `2-5` (worker i serves queue i).
    #[arg(long, value_name = "LIST", default_value = "0")]
    cores: String,
    /// Zero-copy: `auto` tries it and falls back to copy mode per queue.
    #[arg(long, value_name = "auto|on|off", default_value = "auto")]
    zero_copy: String,
    /// UMEM frame size (2048 or 4096); limits the MTU.
    #[arg(long, value_name = "N", default_value_t = 2048)]
    frame_size: u32,
    /// Entries of each rx/tx/fill/completion ring (power of two).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    ring_size: u32,
    /// What a worker does when its rings are empty.
    #[arg(long, value_enum, default_value_t = PollArg::Block)]
    poll: PollArg,
    /// Apply the NAPI knobs (defer hard IRQs 2, GRO flush 20 µs, threaded NAPI, NAPI threads
    /// SCHED_FIFO 50 on the workers' cores); restored at exit.
    #[arg(long)]
    napi_tune: bool,
    /// Attach the XDP program in generic (skb) mode instead of native.
    #[arg(long)]
    generic: bool,
    /// What the XDP program does with frames on queues no worker serves.
    #[arg(long, value_enum, default_value_t = FallbackArg::Pass)]
    fallback: FallbackArg,
    /// Stats socket for `scrubber stats`.
    #[arg(long, value_name = "PATH", default_value = telemetry::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Session table capacity per worker [default: the rule file's `sessions` / workers, or 1M].
    #[arg(long, value_name = "N")]
    sessions: Option<usize>,
    /// SYN-cookie secret file [default: the rule file's `cookie-secret`, or random].
    #[arg(long, value_name = "FILE")]
    cookie_secret: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum SynArg {
    Proxy,
    Track,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PollArg {
    Spin,
    Yield,
    Block,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FallbackArg {
    Pass,
    Drop,
}

fn parse_cores(s: &str) -> Result<Vec<usize>> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: usize = a.parse().with_context(|| format!("--cores {s}: `{part}` is not a core number or range"))?;
        let b: usize = b.parse().with_context(|| format!("--cores {s}: `{part}` is not a core number or range"))?;
        if b < a {
            bail!("--cores {s}: range `{part}` runs backwards");
        }
        v.extend(a..=b);
    }
    if v.is_empty() {
        bail!("--cores: give at least one core, e.g. --cores 0 or --cores 0-3");
    }
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if let Some(c) = v.iter().find(|&&c| c >= n) {
        bail!("--cores {s}: this machine has cores 0-{} only (core {c} does not exist)", n - 1);
    }
    let mut d = v.clone();
    d.sort_unstable();
    d.dedup();
    if d.len() != v.len() {
        bail!("--cores {s}: a core is listed twice");
    }
    Ok(v)
}

/// Run `scrubber run`.
pub fn run(a: RunArgs) -> Result<()> {
    let cores = parse_cores(&a.cores)?;
    let workers = cores.len();
    let zero_copy: ZeroCopy = a.zero_copy.parse().map_err(|e| anyhow::anyhow!("--zero-copy: {e}"))?;
    if !a.ring_size.is_power_of_two() || !(64..=16384).contains(&a.ring_size) {
        bail!("--ring-size {}: give a power of two from 64 to 16384", a.ring_size);
    }

    // The policy.
    let (protect, loaded) = crate::policy_from_args(a.rules.as_deref(), &a.protect)?;
    let settings = loaded.as_ref().map(|l| l.compiled.settings().clone());
    let cookie_key =
        crate::cookie_key(a.cookie_secret.as_deref(), settings.as_ref().and_then(|s| s.cookie_secret.as_deref()))?;
    let sessions = a
        .sessions
        .or(settings.as_ref().map(|s| usize::try_from(s.sessions).unwrap_or(usize::MAX) / workers))
        .unwrap_or(1 << 20)
        .max(1024);

    // Checks before touching anything.
    let frame_count = (a.ring_size * 8).max(4096);
    let umem_bytes = u64::from(frame_count) * u64::from(a.frame_size) * workers as u64;
    let _ = scrubber_xsk::raise_memlock();
    let report = preflight::preflight(
        &PreflightConfig {
            ext: a.ext.clone(),
            int: a.int.clone(),
            frame_size: a.frame_size,
            headroom: 0,
            umem_bytes,
            needs_sys_nice: a.napi_tune,
        },
        Path::new("/sys"),
        Path::new("/proc"),
    )
    .map_err(|e| anyhow::anyhow!("cannot start:\n{e}"))?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let queues = scrubber_xsk::rx_queue_count(&a.ext)?;
    if workers as u32 > queues {
        bail!(
            "{} worker(s) on cores {} but {} has {queues} queue(s): give at most {queues} core(s) with --cores, or add queues (`ethtool -L {} combined N`)",
            workers,
            a.cores,
            a.ext,
            a.ext
        );
    }

    // Engines (allocate the session tables now, before attaching).
    let base = EngineConfig {
        protect,
        policy: loaded.as_ref().map(|l| l.compiled.clone()),
        syn_mode: if a.syn_mode == SynArg::Proxy { SynMode::Proxy } else { SynMode::Track },
        table_capacity: sessions,
        cookie_key,
        rate_share: workers as u32,
        ..EngineConfig::default()
    };
    let mut engines = Vec::with_capacity(workers);
    for _ in 0..workers {
        engines.push(Engine::new(base.clone()).context("cannot build the engine")?);
    }
    let targets: Vec<String> = engines[0].counters().per_target.iter().map(|t| t.target.clone()).collect();
    let policy_desc = match &a.rules {
        Some(p) => format!("{} (generation {:016x})", p.display(), engines[0].policy().generation_id()),
        None => format!("--protect {}", targets.join(" ")),
    };

    let signals = Signals::install()?;
    let mode = if a.generic { AttachMode::Generic } else { AttachMode::Native };
    let fallback = if a.fallback == FallbackArg::Pass { Fallback::Pass } else { Fallback::Drop };
    let ext_prog = Arc::new(XdpProgram::attach(&a.ext, queues, mode, fallback)?);
    let int_queues = scrubber_xsk::rx_queue_count(&a.int)?;
    let int_prog = Arc::new(XdpProgram::attach(&a.int, int_queues, mode, fallback)?);
    let shared = Arc::new(Shared::new(workers, [ext_prog, int_prog]));

    let (feed, inboxes) = policy_channels(workers);
    let publishers: Vec<Publisher> = (0..workers).map(|i| Publisher::new(WorkerStats::new(i, &targets))).collect();
    let server = StatsServer::start(&a.socket, publishers.clone(), ServerInfo::new(policy_desc.clone()))?;

    let poll = match a.poll {
        PollArg::Spin => Poll::Spin,
        PollArg::Yield => Poll::Yield,
        PollArg::Block => Poll::Block,
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut handles = Vec::with_capacity(workers);
    for (i, ((engine, inbox), publisher)) in engines.into_iter().zip(inboxes).zip(publishers).enumerate() {
        let mut xsk = WorkerConfig::new(&a.ext, &a.int, i as u32);
        xsk.frame_size = a.frame_size;
        xsk.frame_count = frame_count;
        xsk.rx_size = a.ring_size;
        xsk.tx_size = a.ring_size;
        xsk.fill_size = a.ring_size * 2;
        xsk.comp_size = a.ring_size * 2;
        xsk.zero_copy = zero_copy;
        let setup = WorkerSetup { index: i, core: Some(cores[i]), xsk, poll };
        let shared = shared.clone();
        let ready = ready_tx.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("scrubber-w{i}"))
                .spawn(move || dataplane::worker_main(setup, engine, inbox, publisher, shared, ready))
                .context("cannot start a worker thread")?,
        );
    }
    drop(ready_tx);
    let mut modes = Vec::new();
    let mut failure = None;
    for _ in 0..workers {
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(m)) => modes.push(m),
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some("a worker did not start within 10 s".into()),
        }
    }
    if let Some(e) = failure {
        shared.running.store(false, Ordering::Relaxed);
        for h in handles {
            let _ = h.join();
        }
        bail!("{e}");
    }
    let mut knobs = if a.napi_tune {
        let ifs = [a.ext.as_str(), a.int.as_str()];
        Some(Knobs::apply(&KnobConfig::recommended(&ifs, &cores))?)
    } else {
        None
    };
    for (i, (e, n)) in modes.iter().enumerate() {
        eprintln!("scrubber: worker {i} on core {} serves queue {i}: {} {e}, {} {n}", cores[i], a.ext, a.int);
    }
    eprintln!(
        "scrubber: running: ext {} int {} ({mode} XDP, fallback {:?}), {workers} worker(s), poll {}, policy {policy_desc}; stats: scrubber stats --socket {}",
        a.ext,
        a.int,
        fallback,
        poll.as_str(),
        a.socket.display()
    );

    // Control loop: reloads, until stopped.
    let mut reloader = loaded.as_ref().zip(a.rules.as_ref()).map(|(l, p)| {
        let mut c = base.clone();
        c.policy = Some(l.compiled.clone());
        Reloader::new(p.clone(), l, vec![c; workers], feed)
    });
    let mut last_check = Instant::now();
    while !signals.stop_requested() {
        std::thread::sleep(Duration::from_millis(100));
        if handles.iter().any(|h| h.is_finished()) {
            eprintln!("scrubber: a worker stopped unexpectedly; shutting down");
            break;
        }
        let Some(r) = reloader.as_mut() else {
            let _ = signals.take_reload();
            continue;
        };
        let hup = signals.take_reload();
        let changed = last_check.elapsed() >= Duration::from_secs(1) && {
            last_check = Instant::now();
            r.changed()
        };
        if hup || changed {
            let why = if hup { "SIGHUP" } else { "file changed" };
            match r.reload(dataplane::now_ns()) {
                Ok(l) => {
                    let d = format!(
                        "{} (generation {:016x})",
                        a.rules.as_ref().unwrap().display(),
                        l.compiled.generation_id()
                    );
                    eprintln!("scrubber: reload ({why}): policy {d} installed in {workers} worker(s)");
                    server.set_policy(d);
                }
                Err(e) => eprintln!("scrubber: reload ({why}) refused, running policy kept: {e}"),
            }
        }
        r.collect();
    }

    eprintln!("scrubber: stopping: draining and detaching");
    shared.running.store(false, Ordering::Relaxed);
    let mut problems = Vec::new();
    for h in handles {
        match h.join() {
            Ok(end) => {
                if let Some(e) = end.accounting_error {
                    problems.push(e);
                }
            }
            Err(_) => problems.push("a worker panicked".into()),
        }
    }
    if let Some(k) = knobs.as_mut() {
        if let Err(e) = k.restore() {
            eprintln!("warning: restoring kernel knobs: {e}");
        }
    }
    let snap = server.snapshot();
    drop(server);
    drop(shared);
    print!("{}", crate::stats_cmd::render(&snap, None));
    if !problems.is_empty() {
        bail!("frame accounting: {}", problems.join("; "));
    }
    Ok(())
}
