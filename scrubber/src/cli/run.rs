//! `scrubber run`.

use anyhow::Result;
use clap::{Args, ValueEnum};
use scrubber::control::config::{defaults, RunConfig, RunRequest};
use scrubber::control::failopen::OnExit;
use scrubber::control::supervisor;
use scrubber::dataplane::Poll;
use scrubber_xsk::Fallback;
use std::path::PathBuf;

use super::SynModeArg;

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
    /// SYN handling for --protect targets (rule files set it per service) [default: proxy].
    #[arg(long, value_enum, conflicts_with = "rules")]
    syn_mode: Option<SynModeArg>,
    /// Cores for the workers, e.g. `0`, `0,1` or `2-5` (worker i serves queue i).
    #[arg(long, value_name = "LIST", default_value = defaults::CORES)]
    cores: String,
    /// Zero-copy: `auto` tries it and falls back to copy mode per queue.
    #[arg(long, value_name = "auto|on|off", default_value = "auto")]
    zero_copy: String,
    /// UMEM frame size (2048 or 4096); limits the MTU.
    #[arg(long, value_name = "N", default_value_t = defaults::FRAME_SIZE)]
    frame_size: u32,
    /// Entries of each rx/tx ring (power of two); fill and completion rings get twice that.
    #[arg(long, value_name = "N", default_value_t = defaults::RING_SIZE)]
    ring_size: u32,
    /// What a worker does when its rings are empty [default: block].
    #[arg(long, value_enum)]
    poll: Option<PollArg>,
    /// With `--poll block` or `busy`: keep polling (yielding the core) this long after the last
    /// frame before sleeping. 0 (the default) sleeps at once: measured best when the worker
    /// shares its core with the kernel's receive work (README "Performance").
    #[arg(long, value_name = "US", default_value_t = 0)]
    idle_spin_us: u32,
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
    #[arg(long, value_name = "PATH", default_value = defaults::SOCKET)]
    socket: PathBuf,
    /// Session table capacity in total, divided among the workers [default: the rule file's
    /// `sessions`, or 1048576].
    #[arg(long, value_name = "N")]
    sessions: Option<usize>,
    /// SYN-cookie secret file [default: the rule file's `cookie-secret`, or random].
    #[arg(long, value_name = "FILE")]
    cookie_secret: Option<PathBuf>,
    /// Save the sessions (proxied sequence offsets included) to FILE when stopped by
    /// SIGTERM/SIGINT, and restore them from FILE at start, so that connections continue
    /// across a planned restart. A damaged or foreign file is refused (the start goes on with
    /// empty tables); a loaded file is removed. Keep the cookie secret and worker count the
    /// same across the restart (IPv6 sessions need both).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// What passes between ext and int while no scrubber is attached (crash, SIGKILL,
    /// restart): `closed` nothing; `open` everything, unfiltered, through a kernel bridge
    /// (`sbr-EXT`) that stops carrying the moment a scrubber attaches. Proxied connections
    /// break across a bypass either way. README "Restarts".
    #[arg(long, value_enum, default_value_t = OnExitArg::Closed)]
    on_exit: OnExitArg,
    /// Take over from the scrubber running with the same --socket (an upgrade without a
    /// stop): this one builds its engines, then the running one hands its sessions over the
    /// socket SOCKET.handover, detaches and exits, and this one attaches at once. README
    /// "Restarts".
    #[arg(long)]
    take_over: bool,
    /// Append attack events (start, update, stop per target: types, peaks, top sources) to
    /// FILE, one JSON object per line. They are also logged.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Run CMD (with `sh -c`) for every attack event, the event's JSON on its stdin; at most
    /// 10 s each, on a thread of its own (e.g. to announce a route through ExaBGP or GoBGP, or
    /// page someone).
    #[arg(long, value_name = "CMD")]
    on_event: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (`off`: none). Loopback by default;
    /// give e.g. 198.18.1.1:9477 to let a Prometheus server on another host scrape it.
    #[arg(long, value_name = "ADDR|off", default_value = scrubber::control::metrics::DEFAULT_ADDR)]
    metrics: String,
    /// Write sampled frames to rotating pcapng files in DIR (read them with tcpdump -r or
    /// Wireshark; each packet's comment names its verdict).
    #[arg(long, value_name = "DIR")]
    sample_dir: Option<PathBuf>,
    /// What --sample-dir samples, 1 in N per class (0: never): drop, pass, icmp.
    #[arg(long, value_name = "SPEC", default_value = "drop=1000,pass=0,icmp=100", requires = "sample_dir")]
    sample_rates: String,
    /// Most bytes of sample files kept in --sample-dir (the oldest go first): 256M, 1G.
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = super::parse_size, requires = "sample_dir")]
    sample_cap: u64,
    /// Stream this box's sessions to the fleet's other boxes and take in theirs (UDP on a
    /// management address, authenticated with the shared cookie secret): a box that dies leaves
    /// its connections to the survivors. Give this box's listen address …
    #[arg(long, value_name = "ADDR:PORT", requires = "sync_peer")]
    sync_listen: Option<std::net::SocketAddr>,
    /// … and every peer's (repeat, or separate with commas).
    #[arg(long, value_name = "ADDR:PORT", value_delimiter = ',', requires = "sync_listen")]
    sync_peer: Vec<std::net::SocketAddr>,
    #[command(flatten)]
    limit: super::FileLimit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PollArg {
    /// Keep polling the rings.
    Spin,
    /// sched_yield between empty polls.
    Yield,
    /// Sleep in poll(2) on both sockets until a frame arrives (at most 10 ms), after
    /// --idle-spin-us of polling.
    Block,
    /// Preferred busy polling: the worker runs its queues' receive processing itself, between
    /// its batches (for a worker sharing its core with that work); idle as `block`. Sets
    /// napi_defer_hard_irqs and gro_flush_timeout on ext and int (restored at exit).
    Busy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OnExitArg {
    /// Fail closed: nothing passes.
    Closed,
    /// Fail open: a kernel bridge passes everything.
    Open,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FallbackArg {
    /// To the kernel stack.
    Pass,
    /// Dropped.
    Drop,
}

/// Run `scrubber run`.
pub fn run(a: RunArgs) -> Result<()> {
    let req = RunRequest {
        ext: a.ext,
        int: a.int,
        rules: a.rules,
        protect: a.protect,
        syn_mode: a.syn_mode.map(Into::into),
        cores: a.cores,
        zero_copy: a.zero_copy,
        frame_size: a.frame_size,
        ring_size: a.ring_size,
        poll: match a.poll {
            None => defaults::POLL,
            Some(PollArg::Spin) => Poll::Spin,
            Some(PollArg::Yield) => Poll::Yield,
            Some(PollArg::Block) => Poll::Block,
            Some(PollArg::Busy) => Poll::Busy,
        },
        idle_spin_us: a.idle_spin_us,
        napi_tune: a.napi_tune,
        generic: a.generic,
        fallback: match a.fallback {
            FallbackArg::Pass => Fallback::Pass,
            FallbackArg::Drop => Fallback::Drop,
        },
        socket: a.socket,
        sessions: a.sessions,
        cookie_secret: a.cookie_secret,
        max_file_size: a.limit.max_file_size,
        state: a.state,
        take_over: a.take_over,
        events: a.events,
        on_event: a.on_event,
        sample: match a.sample_dir {
            Some(dir) => Some(scrubber::control::config::SampleConfig {
                dir,
                rates: scrubber::dataplane::sample::SampleRates::parse(&a.sample_rates)
                    .map_err(|e| anyhow::anyhow!("--sample-rates {}: {e}", a.sample_rates))?,
                cap: a.sample_cap,
            }),
            None => None,
        },
        metrics: match a.metrics.as_str() {
            "off" | "none" => None,
            m => Some(
                m.parse()
                    .map_err(|e| anyhow::anyhow!("--metrics {m}: {e}: give IP:PORT, e.g. 127.0.0.1:9477, or off"))?,
            ),
        },
        on_exit: match a.on_exit {
            OnExitArg::Closed => OnExit::Closed,
            OnExitArg::Open => OnExit::Open,
        },
        sync: a.sync_listen.map(|listen| scrubber::control::sync::SyncConfig { listen, peers: a.sync_peer.clone() }),
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let cfg = RunConfig::resolve(req, cores)?;
    let summary = supervisor::run(cfg)?;
    print!("{}", scrubber::control::stats::render(&summary.last, None));
    summary.check()?;
    Ok(())
}
