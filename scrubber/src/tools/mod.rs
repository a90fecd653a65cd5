//! Layer 5, offline and lab: the same engine over files and namespaces instead of NICs.
//!
//! * [`replay`] — `scrubber replay`: a capture through the engine, pcaps out, a summary.
//! * `lab` (cargo feature `lab`, on by default) — the network-namespace lab: topology, peers,
//!   floods, counters; `scrubber lab`, the end-to-end tests and `scrubber-perf wire` share it.

#[cfg(feature = "lab")]
pub mod lab;
pub mod replay;
