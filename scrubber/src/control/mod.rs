//! Layer 4, off the packet path: configure, supervise, observe.
//!
//! * [`config`] — every default resolved once: command lines and rule files become a
//!   [`config::RunConfig`] or [`config::ReplayConfig`].
//! * [`supervisor`] — `scrubber run`: preflight, workers, the control-loop step function,
//!   drain and stop.
//! * [`reload`] — loading rule files, and hot reload on SIGHUP or file change.
//! * [`secret`] — the SYN-cookie secret file.
//! * [`telemetry`] — the stats socket: snapshots of every worker's counters.
//! * [`stats`] — the statistics for people (`scrubber stats`, the final counters of `run`).
//! * [`preflight`] — checks before attaching anything (interfaces, MTU, queues, capabilities,
//!   memlock), all reported at once with their fix.
//! * [`knobs`] — kernel NAPI knobs applied at start and restored at exit.
//! * [`signals`] — stop and reload flags set by SIGINT/SIGTERM and SIGHUP.
//! * [`bans`] — `scrubber ban list|add|del` over the control socket.
//! * [`sync`] — session streaming to the other boxes of a fleet.

pub mod bans;
pub mod config;
pub mod events;
pub mod failopen;
pub mod handover;
pub mod knobs;
pub mod links;
pub mod metrics;
pub mod preflight;
pub mod reload;
pub mod samples;
pub mod secret;
pub mod signals;
pub mod state;
pub mod stats;
pub mod supervisor;
pub mod sync;
pub mod telemetry;
pub mod top;
