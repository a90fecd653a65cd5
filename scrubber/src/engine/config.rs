//! What an [`crate::Engine`] is built from, and why building one can fail.

use core::net::IpAddr;
use std::sync::Arc;

use rulespec::Compiled;

pub use super::policy::Advertise;
use super::policy::{PolicyError, PrepareOptions, Prepared};
use super::session::{TableError, Timeouts};

/// A protected destination: an address and optionally one port (all ports when `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protected {
    /// The protected address.
    pub addr: IpAddr,
    /// The protected port, or every port.
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

impl SynMode {
    /// `"proxy"` or `"track"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SynMode::Proxy => "proxy",
            SynMode::Track => "track",
        }
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
    /// SYN cookie secret (the AES-128 key the per-slot cookie keys derive from).
    pub cookie_key: [u8; 16],
    /// Cookie time slot length in seconds; the current and previous slot validate.
    pub cookie_slot_secs: u32,
    /// Options advertised in cookie SYN-ACKs.
    pub advertise: Advertise,
    /// Idle timeouts (services of a policy bring their own).
    pub timeouts: Timeouts,
    /// A compiled rule-file policy. When given, it replaces `protect` and `syn_mode`: its
    /// services are the protected destinations, its rules judge every inbound frame.
    pub policy: Option<Arc<Compiled>>,
    /// With a `policy`: handle SYNs of every service this way instead of as each service says
    /// (`replay --rules … --syn-mode track`, for captures recorded without the scrubber).
    pub force_syn_mode: Option<SynMode>,
    /// Engines sharing the traffic (workers): aggregate limits and `syn auto` thresholds are
    /// divided by it.
    pub rate_share: u32,
    /// Entries of each per-source limiter table.
    pub per_source_slots: usize,
    /// MTU of the int link (frames towards the servers), 0 when unknown: larger frames are
    /// answered with ICMP too-big, and cookie SYN-ACKs advertise no larger MSS.
    pub int_mtu: u16,
    /// MTU of the ext link (frames towards the clients), 0 when unknown.
    pub ext_mtu: u16,
    /// The ban table shared by every engine of the process (see [`crate::engine::ban`]);
    /// `None`: the engine makes its own.
    pub bans: Option<Arc<crate::engine::ban::BanTable>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            protect: Vec::new(),
            syn_mode: SynMode::Proxy,
            // A small table for tests and embedding; `run` and `replay` resolve theirs from the
            // rule file's `sessions` setting (see `control::config`).
            table_capacity: 1 << 16,
            cookie_key: [0; 16],
            cookie_slot_secs: 64,
            advertise: Advertise::default(),
            timeouts: Timeouts::default(),
            policy: None,
            force_syn_mode: None,
            rate_share: 1,
            per_source_slots: 65_536,
            int_mtu: 0,
            ext_mtu: 0,
            bans: None,
        }
    }
}

impl EngineConfig {
    /// The compiled policy this configuration stands for: `policy` if given, else the
    /// `--protect` shorthand (one TCP service per target with `syn_mode`, no rules, default
    /// allow).
    pub fn compiled(&self) -> Result<Arc<Compiled>, EngineError> {
        if let Some(p) = &self.policy {
            return Ok(p.clone());
        }
        let targets: Vec<rulespec::Target> =
            self.protect.iter().map(|p| rulespec::Target { addr: p.addr, port: p.port }).collect();
        let syn = match self.syn_mode {
            SynMode::Proxy => rulespec::ast::SynMode::Proxy,
            SynMode::Track => rulespec::ast::SynMode::Track,
        };
        let pol = rulespec::protect_policy(&targets, syn);
        Ok(Arc::new(rulespec::compile(&pol)?))
    }

    /// Check the values an engine cannot work with.
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.advertise.wscale > 14 {
            return Err(EngineError::WindowScale(self.advertise.wscale));
        }
        if self.advertise.mss_v4 < 536 || self.advertise.mss_v6 < 1220 {
            return Err(EngineError::MssBelowMinimum { v4: self.advertise.mss_v4, v6: self.advertise.mss_v6 });
        }
        Ok(())
    }

    /// How a policy is prepared for an engine built from this configuration.
    pub fn prepare_options(&self, now_ns: u64) -> PrepareOptions {
        PrepareOptions {
            per_source_slots: self.per_source_slots,
            rate_share: self.rate_share.max(1),
            seed: limiter_seed(&self.cookie_key),
            advertise: self.advertise,
            fixed_advertise: self.policy.is_none(),
            force_syn: self.force_syn_mode.map(|m| match m {
                SynMode::Proxy => rulespec::ast::SynMode::Proxy,
                SynMode::Track => rulespec::ast::SynMode::Track,
            }),
            now_ns,
            http_slots: self.table_capacity,
        }
    }

    /// Prepare `compiled` for an engine built from this configuration (allocates; do it away
    /// from the packet path, then hand the result to [`crate::Engine::install`]).
    pub fn prepare(&self, compiled: Arc<Compiled>, now_ns: u64) -> Result<Prepared, EngineError> {
        Ok(Prepared::new(compiled, &self.prepare_options(now_ns))?)
    }

    /// The seed of the session table's flow hash: derived from the cookie secret, so it is
    /// secret too.
    pub(crate) fn table_seed(&self) -> u64 {
        u64::from_le_bytes(first8(&self.cookie_key)) ^ 0x5eed_5c4b_b3e4_0001
    }
}

fn first8(key: &[u8; 16]) -> [u8; 8] {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    b
}

fn limiter_seed(key: &[u8; 16]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[8..]);
    u64::from_le_bytes(b) ^ 0x11e1_7e55_0b5e_ed00
}

/// Errors building an engine or preparing a policy for one.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The session table could not be allocated.
    #[error("session table: {0}")]
    Table(#[from] TableError),
    /// The advertised window scale is out of range.
    #[error("window scale {0} is above 14 (RFC 7323)")]
    WindowScale(u8),
    /// An advertised MSS is below the protocol minimum.
    #[error("advertised MSS {v4} (IPv4) / {v6} (IPv6) is below the protocol minimum (536 IPv4, 1220 IPv6)")]
    MssBelowMinimum {
        /// The IPv4 MSS.
        v4: u16,
        /// The IPv6 MSS.
        v6: u16,
    },
    /// The `--protect` shorthand did not compile.
    #[error("the protected targets do not compile: {0}")]
    Compile(#[from] rulespec::CompileError),
    /// The policy cannot be run by an engine.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}
