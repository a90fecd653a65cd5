//! Every default set once, early, with one error path (ripgrep's low args → high args): the
//! command line as typed ([`RunRequest`], [`ReplayRequest`]) plus the rule file become a
//! [`RunConfig`] / [`ReplayConfig`] in which nothing is left to decide.
//!
//! * Defaults that do not depend on anything live in [`defaults`]; the CLI shows them in its
//!   help from there.
//! * Derived defaults are resolved here and only here: the session-table size (`--sessions`,
//!   else the rule file's `sessions`, else [`defaults::SESSIONS`]; a total, divided among the
//!   workers of `run`), the cookie secret (`--cookie-secret`, else the rule file's
//!   `cookie-secret`, else random), the SYN mode (`--syn-mode` for `--protect`; for `--rules`,
//!   the file's per-service setting unless `--syn-mode` overrides it), the UMEM size.

use std::path::{Path, PathBuf};

use scrubber_xsk::{AttachMode, Fallback, SocketPairConfig, ZeroCopy};

use super::reload::{load_policy_with, LoadOptions, LoadedPolicy, PolicyLoadError};
use crate::dataplane::Poll;
use crate::engine::{EngineConfig, Protected, SynMode};

/// Defaults that depend on nothing else.
pub mod defaults {
    use crate::dataplane::Poll;

    /// Cores of the workers (`--cores`).
    pub const CORES: &str = "0";
    /// UMEM frame size (`--frame-size`).
    pub const FRAME_SIZE: u32 = 2048;
    /// Entries of each rx/tx ring (`--ring-size`); fill and completion rings get twice that.
    pub const RING_SIZE: u32 = 1024;
    /// What a worker does when idle (`--poll`); why: README "Performance".
    pub const POLL: Poll = Poll::Block;
    /// The stats socket (`--socket`).
    pub const SOCKET: &str = "/run/scrubber/scrubber.sock";
    /// Session-table slots in total when neither `--sessions` nor the rule file says (the
    /// rule file's own default, `rulespec`'s `Settings::default().sessions`).
    pub const SESSIONS: u64 = 1 << 20;
    /// Fewest session-table slots a `run` worker gets.
    pub const MIN_SESSIONS_PER_WORKER: usize = 1024;
    /// SYN handling of `--protect` targets under `run`.
    pub const RUN_SYN_MODE: crate::engine::SynMode = crate::engine::SynMode::Proxy;
    /// SYN handling of `--protect` targets under `replay`: captures recorded without the
    /// scrubber carry the servers' own ISNs, so only tracking follows them.
    pub const REPLAY_SYN_MODE: crate::engine::SynMode = crate::engine::SynMode::Track;
}

/// Why a configuration could not be resolved. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Session sync without a shared cookie secret.
    #[error("--sync-peer: the boxes of a fleet must share the cookie secret (it also authenticates the session records): give --cookie-secret FILE or `cookie-secret \"FILE\"` in the rule file, the same file on every box (scrubber gen-secret makes one)")]
    SyncWithoutSecret,
    /// Neither `--protect` nor `--rules`.
    #[error("give at least one --protect IP[:PORT] (e.g. --protect 198.18.0.10:80), or --rules FILE")]
    NoPolicy,
    /// A `--protect` value does not parse.
    #[error("bad --protect value '{value}': {detail}")]
    BadTarget {
        /// The value given.
        value: String,
        /// What is wrong.
        detail: String,
    },
    /// The rule file does not load.
    #[error(transparent)]
    Policy(#[from] PolicyLoadError),
    /// The cookie secret could not be read or made.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// `--sessions 0`.
    #[error("--sessions 0: the session table needs at least one slot (default {})", defaults::SESSIONS)]
    ZeroSessions,
    /// A bad `--cores` list.
    #[error("--cores {spec}: {detail}")]
    Cores {
        /// The list given.
        spec: String,
        /// What is wrong.
        detail: String,
    },
    /// A bad `--ring-size`.
    #[error("--ring-size {0}: give a power of two from 64 to 16384")]
    RingSize(u32),
    /// A bad `--idle-spin-us`.
    #[error("--idle-spin-us {0}: give 0 to 1000000 microseconds")]
    IdleSpin(u32),
    /// A bad `--zero-copy`.
    #[error("--zero-copy: {0}")]
    ZeroCopy(String),
}

pub use super::secret::{load_cookie_secret, random_cookie_secret, resolve_cookie_key, SecretError};

/// Where the policy comes from.
#[derive(Debug)]
pub enum PolicySource {
    /// `--rules FILE`, loaded, checked and compiled.
    Rules {
        /// The file.
        path: PathBuf,
        /// What it compiled to.
        loaded: LoadedPolicy,
    },
    /// `--protect IP[:PORT]…`: one TCP service per target.
    Protect(Vec<Protected>),
}

impl PolicySource {
    /// The loaded rule file, if the policy is one.
    pub fn loaded(&self) -> Option<&LoadedPolicy> {
        match self {
            PolicySource::Rules { loaded, .. } => Some(loaded),
            PolicySource::Protect(_) => None,
        }
    }
}

/// The policy of a command line: `--rules FILE` (loaded; warnings returned), or the
/// `--protect` targets parsed (ambiguity warnings returned).
pub fn resolve_policy(
    rules: Option<&Path>,
    protect: &[String],
    load: &LoadOptions,
) -> Result<(PolicySource, Vec<String>), ConfigError> {
    if let Some(path) = rules {
        let loaded = load_policy_with(path, load)?;
        let warnings = if loaded.warning_count > 0 { vec![loaded.warnings.clone()] } else { Vec::new() };
        return Ok((PolicySource::Rules { path: path.to_path_buf(), loaded }, warnings));
    }
    if protect.is_empty() {
        return Err(ConfigError::NoPolicy);
    }
    let mut targets = Vec::with_capacity(protect.len());
    let mut warnings = Vec::new();
    for p in protect {
        let t = rulespec::parse_target(p)
            .map_err(|e| ConfigError::BadTarget { value: p.clone(), detail: e.to_string() })?;
        if let Some(w) = rulespec::target_warning(p) {
            warnings.push(format!("warning: --protect {w}"));
        }
        targets.push(Protected { addr: t.addr, port: t.port });
    }
    Ok((PolicySource::Protect(targets), warnings))
}

/// Session-table slots in total: `--sessions`, else the rule file's `sessions`, else the
/// default.
fn total_sessions(arg: Option<usize>, policy: &PolicySource) -> Result<usize, ConfigError> {
    let n = match (arg, policy.loaded()) {
        (Some(n), _) => n,
        (None, Some(l)) => usize::try_from(l.compiled.settings().sessions).unwrap_or(usize::MAX),
        (None, None) => defaults::SESSIONS as usize,
    };
    if n == 0 {
        return Err(ConfigError::ZeroSessions);
    }
    Ok(n)
}

/// The engine configuration every worker (or the replay) starts from.
fn engine_config(
    policy: &PolicySource,
    syn_mode: Option<SynMode>,
    default_syn: SynMode,
    table_capacity: usize,
    cookie_key: [u8; 16],
    rate_share: u32,
) -> EngineConfig {
    let (protect, compiled) = match policy {
        PolicySource::Rules { loaded, .. } => (Vec::new(), Some(loaded.compiled.clone())),
        PolicySource::Protect(t) => (t.clone(), None),
    };
    EngineConfig {
        protect,
        syn_mode: syn_mode.unwrap_or(default_syn),
        force_syn_mode: if compiled.is_some() { syn_mode } else { None },
        policy: compiled,
        table_capacity,
        cookie_key,
        rate_share,
        ..EngineConfig::default()
    }
}

/// Parse a `--cores` list (`0`, `0,1`, `2-5`) against the cores this machine has.
pub fn parse_cores(s: &str, available: usize) -> Result<Vec<usize>, ConfigError> {
    let err = |detail: String| ConfigError::Cores { spec: s.to_string(), detail };
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let num =
            |x: &str| x.trim().parse::<usize>().map_err(|_| err(format!("`{part}` is not a core number or range")));
        let (a, b) = (num(a)?, num(b)?);
        if b < a {
            return Err(err(format!("range `{part}` runs backwards")));
        }
        v.extend(a..=b);
    }
    if v.is_empty() {
        return Err(err("give at least one core, e.g. --cores 0 or --cores 0-3".into()));
    }
    if let Some(c) = v.iter().find(|&&c| c >= available) {
        return Err(err(format!("this machine has cores 0-{} only (core {c} does not exist)", available - 1)));
    }
    let mut d = v.clone();
    d.sort_unstable();
    d.dedup();
    if d.len() != v.len() {
        return Err(err("a core is listed twice".into()));
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// run

/// The `scrubber run` command line as typed (low args). Fields with a fixed default carry it
/// already (the CLI fills them from [`defaults`]); `None` means "derive it".
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// The internet-facing interface.
    pub ext: String,
    /// The interface facing the protected servers.
    pub int: String,
    /// `--rules FILE`.
    pub rules: Option<PathBuf>,
    /// `--protect IP[:PORT]…`.
    pub protect: Vec<String>,
    /// `--syn-mode`, for `--protect` targets.
    pub syn_mode: Option<SynMode>,
    /// `--cores`.
    pub cores: String,
    /// `--zero-copy auto|on|off`.
    pub zero_copy: String,
    /// `--frame-size`.
    pub frame_size: u32,
    /// `--ring-size`.
    pub ring_size: u32,
    /// `--poll`.
    pub poll: Poll,
    /// `--idle-spin-us`.
    pub idle_spin_us: u32,
    /// `--napi-tune`.
    pub napi_tune: bool,
    /// `--generic`.
    pub generic: bool,
    /// `--fallback pass|drop`.
    pub fallback: Fallback,
    /// `--socket`.
    pub socket: PathBuf,
    /// `--sessions` (total).
    pub sessions: Option<usize>,
    /// `--cookie-secret FILE`.
    pub cookie_secret: Option<PathBuf>,
    /// `--max-file-size`: largest rule or list file read.
    pub max_file_size: u64,
    /// `--state FILE`: sessions saved on stop, restored on start.
    pub state: Option<PathBuf>,
    /// `--on-exit`: what passes while no scrubber is attached.
    pub on_exit: super::failopen::OnExit,
    /// `--take-over`: take the sessions and interfaces of the scrubber running on `socket`.
    pub take_over: bool,
    /// `--events FILE`: attack events, JSON lines.
    pub events: Option<PathBuf>,
    /// `--on-event CMD`: a command run for every attack event.
    pub on_event: Option<String>,
    /// `--metrics ADDR` (`None`: off).
    pub metrics: Option<std::net::SocketAddr>,
    /// `--sample-dir` and its settings.
    pub sample: Option<SampleConfig>,
    /// `--sync-listen` and `--sync-peer`: session streaming to the fleet's other boxes.
    pub sync: Option<super::sync::SyncConfig>,
}

/// `--sample-dir DIR [--sample-rates …] [--sample-cap SIZE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleConfig {
    /// Where the pcapng files go.
    pub dir: PathBuf,
    /// 1 in N per class.
    pub rates: crate::dataplane::sample::SampleRates,
    /// Bytes of sample files kept at most.
    pub cap: u64,
}

impl RunRequest {
    /// A request with every fixed default, for `ext` and `int` and the policy `protect`.
    pub fn new(ext: &str, int: &str) -> RunRequest {
        RunRequest {
            ext: ext.into(),
            int: int.into(),
            rules: None,
            protect: Vec::new(),
            syn_mode: None,
            cores: defaults::CORES.into(),
            zero_copy: "auto".into(),
            frame_size: defaults::FRAME_SIZE,
            ring_size: defaults::RING_SIZE,
            poll: defaults::POLL,
            idle_spin_us: 0,
            napi_tune: false,
            generic: false,
            fallback: Fallback::Pass,
            socket: defaults::SOCKET.into(),
            sessions: None,
            cookie_secret: None,
            max_file_size: rulespec::FsSource::DEFAULT_MAX_BYTES,
            state: None,
            on_exit: super::failopen::OnExit::Closed,
            take_over: false,
            events: None,
            on_event: None,
            metrics: None,
            sample: None,
            sync: None,
        }
    }
}

/// Everything `scrubber run` needs, resolved (high args).
#[derive(Debug)]
pub struct RunConfig {
    /// The internet-facing interface.
    pub ext: String,
    /// The interface facing the protected servers.
    pub int: String,
    /// Core of each worker (worker *i* serves queue *i*).
    pub cores: Vec<usize>,
    /// The cores as given, for messages.
    pub cores_spec: String,
    /// Sockets and UMEM of worker 0 (the others differ only in the queue).
    pub xsk: SocketPairConfig,
    /// Idle strategy.
    pub poll: Poll,
    /// How long a `block` or `busy` worker keeps polling after its last frame before it sleeps.
    pub idle_spin: std::time::Duration,
    /// Apply the NAPI knobs.
    pub napi_tune: bool,
    /// Native or generic XDP.
    pub attach: AttachMode,
    /// What the XDP program does on queues no worker serves.
    pub fallback: Fallback,
    /// The stats socket.
    pub socket: PathBuf,
    /// The policy.
    pub policy: PolicySource,
    /// The engine configuration of every worker (`table_capacity` per worker).
    pub engine: EngineConfig,
    /// Warnings found while resolving (rule-file warnings, ambiguous targets).
    pub warnings: Vec<String>,
    /// `--state FILE`: sessions saved on stop, restored on start.
    pub state: Option<PathBuf>,
    /// `--cookie-secret FILE` (reloads read it again: a changed secret is rotated to).
    pub cookie_secret: Option<PathBuf>,
    /// How rule files are read (also on reload).
    pub load: LoadOptions,
    /// `--on-exit`: what passes while no scrubber is attached.
    pub on_exit: super::failopen::OnExit,
    /// `--take-over`: take over from the scrubber running on `socket`.
    pub take_over: bool,
    /// `--events FILE`: attack events, JSON lines.
    pub events: Option<PathBuf>,
    /// `--on-event CMD`: a command run for every attack event.
    pub on_event: Option<String>,
    /// `--metrics ADDR` (`None`: off).
    pub metrics: Option<std::net::SocketAddr>,
    /// `--sample-dir` and its settings.
    pub sample: Option<SampleConfig>,
    /// `--sync-listen` and `--sync-peer`: session streaming to the fleet's other boxes.
    pub sync: Option<super::sync::SyncConfig>,
}

impl RunConfig {
    /// Resolve `req`: load the rule file and the secret, derive every default. Checks that need
    /// the interfaces or privileges are the supervisor's preflight.
    pub fn resolve(req: RunRequest, available_cores: usize) -> Result<RunConfig, ConfigError> {
        let cores = parse_cores(&req.cores, available_cores)?;
        let workers = cores.len();
        let zero_copy: ZeroCopy =
            req.zero_copy.parse().map_err(|e: scrubber_xsk::XskError| ConfigError::ZeroCopy(e.to_string()))?;
        if !req.ring_size.is_power_of_two() || !(64..=16384).contains(&req.ring_size) {
            return Err(ConfigError::RingSize(req.ring_size));
        }
        if req.idle_spin_us > 1_000_000 {
            return Err(ConfigError::IdleSpin(req.idle_spin_us));
        }
        let load = LoadOptions { max_file_bytes: req.max_file_size, check_secret: req.cookie_secret.is_none() };
        let (policy, warnings) = resolve_policy(req.rules.as_deref(), &req.protect, &load)?;
        let setting = policy.loaded().and_then(|l| l.compiled.settings().cookie_secret.clone());
        if req.sync.is_some() && req.cookie_secret.is_none() && setting.is_none() {
            return Err(ConfigError::SyncWithoutSecret);
        }
        let cookie_key = resolve_cookie_key(req.cookie_secret.as_deref(), setting.as_deref())?;
        let per_worker = (total_sessions(req.sessions, &policy)? / workers).max(defaults::MIN_SESSIONS_PER_WORKER);
        let engine =
            engine_config(&policy, req.syn_mode, defaults::RUN_SYN_MODE, per_worker, cookie_key, workers as u32);
        let mut xsk = SocketPairConfig::new(&req.ext, &req.int, 0);
        xsk.frame_size = req.frame_size;
        xsk.frame_count = (req.ring_size * 8).max(4096);
        xsk.rx_size = req.ring_size;
        xsk.tx_size = req.ring_size;
        xsk.fill_size = req.ring_size * 2;
        xsk.comp_size = req.ring_size * 2;
        xsk.zero_copy = zero_copy;
        Ok(RunConfig {
            ext: req.ext,
            int: req.int,
            cores,
            cores_spec: req.cores,
            xsk,
            poll: req.poll,
            idle_spin: std::time::Duration::from_micros(u64::from(req.idle_spin_us)),
            napi_tune: req.napi_tune,
            attach: if req.generic { AttachMode::Generic } else { AttachMode::Native },
            fallback: req.fallback,
            socket: req.socket,
            policy,
            engine,
            warnings,
            state: req.state,
            cookie_secret: req.cookie_secret,
            load,
            on_exit: req.on_exit,
            take_over: req.take_over,
            events: req.events,
            on_event: req.on_event,
            metrics: req.metrics,
            sample: req.sample,
            sync: req.sync,
        })
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.cores.len()
    }

    /// UMEM bytes of all workers together.
    pub fn umem_bytes(&self) -> u64 {
        self.xsk.umem_bytes() * self.workers() as u64
    }
}

// ---------------------------------------------------------------------------------------------
// replay

/// The `scrubber replay` command line as typed (low args).
#[derive(Clone, Debug, Default)]
pub struct ReplayRequest {
    /// The capture.
    pub input: PathBuf,
    /// `--rules FILE`.
    pub rules: Option<PathBuf>,
    /// `--protect IP[:PORT]…`.
    pub protect: Vec<String>,
    /// `--syn-mode`: for `--protect` targets; with `--rules`, overrides every service.
    pub syn_mode: Option<SynMode>,
    /// `--pass OUT`.
    pub pass: Option<PathBuf>,
    /// `--drop OUT`.
    pub drop: Option<PathBuf>,
    /// `--answers OUT`.
    pub answers: Option<PathBuf>,
    /// `--cookie-secret FILE`.
    pub cookie_secret: Option<PathBuf>,
    /// `--sessions N`.
    pub sessions: Option<usize>,
    /// `--max-file-size`: largest rule or list file read.
    pub max_file_size: u64,
}

/// The files `scrubber replay` reads and writes. Outputs left `None` are not written.
#[derive(Clone, Debug, Default)]
pub struct ReplayFiles {
    /// Capture to read (pcap or pcapng, Ethernet).
    pub input: PathBuf,
    /// Where to write the frames the engine forwarded (as rewritten).
    pub pass: Option<PathBuf>,
    /// Where to write the dropped frames (as received).
    pub drop: Option<PathBuf>,
    /// Where to write the frames the engine sent back out of the arrival interface.
    pub answers: Option<PathBuf>,
}

/// Everything `scrubber replay` needs, resolved.
#[derive(Debug)]
pub struct ReplayConfig {
    /// The capture and the outputs.
    pub files: ReplayFiles,
    /// The engine.
    pub engine: EngineConfig,
    /// Warnings found while resolving.
    pub warnings: Vec<String>,
}

impl ReplayConfig {
    /// Resolve `req`.
    pub fn resolve(req: ReplayRequest) -> Result<ReplayConfig, ConfigError> {
        let load = LoadOptions { max_file_bytes: req.max_file_size, check_secret: req.cookie_secret.is_none() };
        let (policy, mut warnings) = resolve_policy(req.rules.as_deref(), &req.protect, &load)?;
        let setting = policy.loaded().and_then(|l| l.compiled.settings().cookie_secret.clone());
        let cookie_key = resolve_cookie_key(req.cookie_secret.as_deref(), setting.as_deref())?;
        let sessions = total_sessions(req.sessions, &policy)?;
        if let (PolicySource::Rules { .. }, Some(m)) = (&policy, req.syn_mode) {
            warnings.push(format!("note: --syn-mode {} applies to every service of the rule file", m.as_str()));
        }
        let engine = engine_config(&policy, req.syn_mode, defaults::REPLAY_SYN_MODE, sessions, cookie_key, 1);
        let files = ReplayFiles { input: req.input, pass: req.pass, drop: req.drop, answers: req.answers };
        Ok(ReplayConfig { files, engine, warnings })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_lists() {
        assert_eq!(parse_cores("0", 2).unwrap(), vec![0]);
        assert_eq!(parse_cores("0-1", 2).unwrap(), vec![0, 1]);
        assert_eq!(parse_cores("1, 0", 2).unwrap(), vec![1, 0]);
        for (bad, what) in
            [("", "at least one"), ("2", "cores 0-1 only"), ("1-0", "backwards"), ("0,0", "twice"), ("x", "not a core")]
        {
            let e = parse_cores(bad, 2).unwrap_err().to_string();
            assert!(e.contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn sessions_resolved_once() {
        let protect = PolicySource::Protect(vec![]);
        assert_eq!(total_sessions(None, &protect).unwrap(), defaults::SESSIONS as usize);
        assert_eq!(total_sessions(Some(5), &protect).unwrap(), 5);
        assert!(matches!(total_sessions(Some(0), &protect), Err(ConfigError::ZeroSessions)));
        // The rule file's default is the same number.
        assert_eq!(rulespec::Settings::default().sessions, defaults::SESSIONS);
        let mut r = RunRequest::new("a", "b");
        r.protect = vec!["198.18.0.10:80".into()];
        r.cores = "0-1".into();
        let c = RunConfig::resolve(r, 2).unwrap();
        assert_eq!(c.engine.table_capacity, defaults::SESSIONS as usize / 2);
        assert_eq!((c.workers(), c.engine.rate_share, c.engine.syn_mode), (2, 2, SynMode::Proxy));
        let rp =
            ReplayConfig::resolve(ReplayRequest { protect: vec!["198.18.0.10".into()], ..Default::default() }).unwrap();
        assert_eq!((rp.engine.table_capacity, rp.engine.syn_mode), (defaults::SESSIONS as usize, SynMode::Track));
        assert!(matches!(ReplayConfig::resolve(ReplayRequest::default()), Err(ConfigError::NoPolicy)));
    }
}
