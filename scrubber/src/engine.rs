//! The sans-IO packet engine (API skeleton; the state machine is being written).

use crate::counters::Counters;
use crate::session::Timeouts;
use crate::verdict::{Direction, Verdict};
use core::net::IpAddr;

/// A protected destination: an address and optionally one port (all ports when `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protected {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

impl core::fmt::Display for Protected {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match (self.addr, self.port) {
            (IpAddr::V4(a), Some(p)) => write!(f, "{a}:{p}"),
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
            (a, None) => write!(f, "{a}"),
        }
    }
}

/// How SYNs towards protected services are handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynMode {
    /// Answer with a cookie SYN-ACK; keep no state until the client proves its address.
    Proxy,
    /// Forward the SYN and remember the handshake in the (bounded) session table.
    Track,
}

/// TCP options the cookie SYN-ACK advertises to clients (they must match what the backend
/// will use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advertise {
    /// MSS advertised on IPv4.
    pub mss_v4: u16,
    /// MSS advertised on IPv6.
    pub mss_v6: u16,
    /// Window scale advertised (when the client offered window scaling).
    pub wscale: u8,
    /// Offer SACK (when the client offered it).
    pub sack: bool,
    /// Echo timestamps (when the client sent them).
    pub timestamps: bool,
}

impl Default for Advertise {
    fn default() -> Self {
        Advertise { mss_v4: 1460, mss_v6: 1440, wscale: 7, sack: true, timestamps: true }
    }
}

/// Engine configuration.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Destinations to protect.
    pub protect: Vec<Protected>,
    /// SYN handling.
    pub syn_mode: SynMode,
    /// Session table capacity (slots; rounded up to a power of two).
    pub table_capacity: usize,
    /// SYN cookie secret (SipHash key).
    pub cookie_key: [u8; 16],
    /// Cookie time slot length in seconds; the current and previous slot validate.
    pub cookie_slot_secs: u32,
    /// Options advertised in cookie SYN-ACKs.
    pub advertise: Advertise,
    /// Idle timeouts.
    pub timeouts: Timeouts,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            protect: Vec::new(),
            syn_mode: SynMode::Proxy,
            table_capacity: 1 << 16,
            cookie_key: [0; 16],
            cookie_slot_secs: 64,
            advertise: Advertise::default(),
            timeouts: Timeouts::default(),
        }
    }
}

/// Errors building an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The session table could not be allocated.
    #[error("session table: {0}")]
    Table(String),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A frame buffer: `buf[..len]` is the frame; the engine may rewrite it and change `len`
/// (up to `buf.len()`). Give at least 128 bytes of room past the frame.
#[derive(Debug)]
pub struct FrameBuf<'a> {
    pub buf: &'a mut [u8],
    pub len: usize,
}

/// The engine: one per worker core.
#[derive(Debug)]
pub struct Engine {
    counters: Counters,
}

impl Engine {
    /// Build an engine (allocates the session table).
    pub fn new(cfg: EngineConfig) -> Result<Engine, EngineError> {
        let names: Vec<String> = cfg.protect.iter().map(|p| p.to_string()).collect();
        Ok(Engine { counters: Counters::new(&names) })
    }

    /// Judge one frame. `now_ns` is nanoseconds since the UNIX epoch (a capture's timestamps
    /// in replay). `extra` receives a second frame when the verdict is
    /// [`Verdict::ForwardWithReply`].
    pub fn process(&mut self, now_ns: u64, dir: Direction, frame: &mut FrameBuf<'_>, extra: &mut FrameBuf<'_>) -> Verdict {
        let _ = (now_ns, dir, frame, extra);
        unimplemented!("engine being written")
    }

    /// Direction of a frame by address: inbound when its destination is protected, outbound
    /// when its source is; `None` for neither (and for frames that are not IP).
    pub fn classify(&self, frame: &[u8]) -> Option<Direction> {
        let _ = frame;
        unimplemented!("engine being written")
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Live sessions in the table.
    pub fn sessions(&self) -> usize {
        0
    }
}
