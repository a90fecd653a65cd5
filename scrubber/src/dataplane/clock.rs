//! The engine's clock: wall-clock nanoseconds, read once per batch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock nanoseconds since the UNIX epoch: the engine's clock.
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}
