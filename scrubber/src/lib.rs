//! scrubber: an inline DDoS scrubbing engine.
//!
//! The crate is organised sans-IO: [`engine::Engine`] takes the time and a frame and returns a
//! [`verdict::Verdict`]; it performs no syscalls. The same engine runs under `scrubber replay`
//! (pcap in, pcaps out), in the tests, in the benchmarks, and (later) under AF_XDP.
//!
//! * [`wire`] — checked zero-copy views of Ethernet, 802.1Q, ARP, IPv4, IPv6, TCP, UDP, ICMP and
//!   ICMPv6 headers, with parse and emit, and the Internet checksum.
//! * [`cookie`] — SYN cookies (SipHash keyed PRF, rotating time slots).
//! * [`session`] — the fixed-capacity session table.
//! * [`engine`] — the TCP validation state machine (proxy and track modes).
//! * [`counters`] — every counter the engine keeps, each documented.
//! * [`replay`] — running a capture through the engine.
//! * [`telemetry`] — per-worker statistics, snapshots and the stats socket.
//! * [`preflight`] — checks before start (interfaces, MTU, queues, capabilities, memlock).
//! * [`knobs`] — kernel NAPI knobs applied at start and restored at exit.
//! * [`signals`] — stop and reload flags set by SIGINT/SIGTERM and SIGHUP.
//! * [`lab`] — the network-namespace lab (`scrubber lab`, the end-to-end tests).
#![forbid(unsafe_code)]

pub mod cookie;
pub mod counters;
pub mod dataplane;
pub mod engine;
pub mod flow;
pub mod knobs;
pub mod lab;
pub mod limiter;
pub mod policy;
pub mod preflight;
pub mod reload;
pub mod replay;
pub mod session;
pub mod signals;
pub mod telemetry;
pub mod verdict;
pub mod wire;

pub use engine::{Engine, EngineConfig, Protected, SynMode};
pub use flow::FlowKey;
pub use verdict::{Direction, DropReason, Verdict};
