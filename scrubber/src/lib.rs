//! scrubber: an inline DDoS scrubbing appliance — the packet engine, the AF_XDP data plane,
//! the control plane and the offline tools.
//!
//! The modules follow a packet's path, and imports point one way only (a test enforces it):
//! `tools / control → dataplane → engine → wire`.
//!
//! 1. [`wire`] — BYTES: checked zero-copy views of Ethernet, 802.1Q, ARP, IPv4, IPv6, TCP, UDP,
//!    ICMP and ICMPv6 with parse and emit, the Internet checksum, and
//!    [`wire::frame::dissect`], the one parse every frame gets.
//! 2. [`engine`] — PURE: `(now, frame) → Verdict`, no syscalls, no allocation per frame. The
//!    rules and limiters ([`engine::policy`]), the TCP state machine ([`engine::tcp`]), SYN
//!    cookies, the session table, and every counter declared once ([`engine::counters`]).
//! 3. [`dataplane`] — AF_XDP: one pinned worker per queue drives one [`Engine`] over
//!    `scrubber-xsk`; hand-offs between workers; the worker's side of statistics and reloads.
//! 4. [`control`] — OFF THE PATH: configuration resolved once ([`control::config`]), the
//!    supervisor and its control loop, rule-file reload, telemetry, preflight checks, kernel
//!    knobs, signals.
//! 5. [`tools`] — OFFLINE and LAB: `scrubber replay` (the same engine over captures) and, with
//!    the `lab` feature, the network-namespace lab shared by `scrubber lab`, the end-to-end
//!    tests and `scrubber-perf wire`.
//!
//! The `scrubber` binary (`main.rs`, `cli/`) holds only clap structs that call into
//! `control` and `tools`.
#![forbid(unsafe_code)]

pub mod wire;

pub mod engine;

pub mod dataplane;

pub mod control;

pub mod tools;

pub use engine::flow::FlowKey;
pub use engine::{Direction, DropReason, Engine, EngineConfig, FrameBuf, Protected, SynMode, Verdict};
