//! Sessions out of an engine and back in: what `scrubber run --state` saves on a planned stop
//! and restores on the next start (the file itself is `control::state`'s business).
//!
//! A session is saved as its table key and its 32-byte record ([`Session::to_bytes`]); its
//! `last_seen` is wall-clock milliseconds (the engine's clock), so the time the box was down
//! counts as idle time and a session that idled out meanwhile is not restored. Services are
//! saved by name and matched by name on restore (a session whose service is gone is dropped).
//! Live-connection counts (`max-conns`) are rebuilt from the restored IPv4 sessions; restored
//! IPv6 sessions are no longer counted (their client address is not in the key).

use super::flow::FlowKey;
use super::session::{stored_key_v4, tick, Session, SessionState, SVC_COUNTED};
use super::Engine;

/// Why a saved session was not restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotRestored {
    /// It idled out (the time since its last frame passed its state's timeout).
    Expired,
    /// Its service is not in the policy now running.
    NoService,
    /// The table had no room for it.
    Full,
}

impl Engine {
    /// The names of the services, by index (as sessions refer to them).
    pub fn service_names(&self) -> Vec<String> {
        self.pol.services.iter().map(|s| s.name.clone()).collect()
    }

    /// A digest that equals another engine's when both tables hash alike (same cookie
    /// secret): IPv6 sessions can move only between such engines.
    pub fn table_check(&self) -> u64 {
        self.table.seed_check()
    }

    /// Sessions in the table.
    pub fn session_count(&self) -> usize {
        self.table.len()
    }

    /// Calls `f` with every live session (at the engine's latest time) and its table key.
    pub fn for_each_session(&self, mut f: impl FnMut(u128, &Session)) {
        self.table.for_each_live(tick(self.now_ns), |k, s| f(k, s));
    }

    /// Restores a saved session at time `now_ns` (the service index in `s.svc` already mapped
    /// to this engine's policy). IPv4 keys are valid in any engine, IPv6 keys only in one whose
    /// [`Engine::table_check`] equals the saving engine's: the caller checks that.
    pub fn restore_session(&mut self, key: u128, mut s: Session, now_ns: u64) -> Result<(), NotRestored> {
        self.now_ns = self.now_ns.max(now_ns);
        if s.state == SessionState::Free {
            return Err(NotRestored::Expired);
        }
        let svc = usize::from(s.svc & !SVC_COUNTED);
        if svc >= self.pol.services.len() {
            return Err(NotRestored::NoService);
        }
        let now = tick(self.now_ns);
        let idle = now.wrapping_sub(s.last_seen);
        let limit = self.pol.services[svc].timeouts.for_state(s.state);
        if idle < 1 << 31 && idle > limit {
            return Err(NotRestored::Expired);
        }
        let counted = s.svc & SVC_COUNTED != 0;
        s.svc &= !SVC_COUNTED;
        if counted {
            if let Some((client, ..)) = stored_key_v4(key) {
                let mut src = [0u8; 16];
                src[..4].copy_from_slice(&client);
                if let Some(slot) = self.conns.acquire(&src) {
                    s.svc |= SVC_COUNTED;
                    s.conn_slot = slot;
                }
            }
        }
        match self.table.insert_stored(key, s) {
            Ok(_) => Ok(()),
            Err(_) => {
                if s.svc & SVC_COUNTED != 0 {
                    self.conns.release(s.conn_slot);
                }
                Err(NotRestored::Full)
            }
        }
    }
}

/// The flow of a stored IPv4 key (`None` for IPv6).
pub fn key_flow(key: u128) -> Option<FlowKey> {
    let (c, s, cp, sp) = stored_key_v4(key)?;
    Some(FlowKey::v4(c, cp, s, sp))
}
