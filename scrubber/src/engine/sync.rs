//! Session streaming between the boxes of a fleet (see `control::sync`): what one engine tells
//! its peers about its sessions, and how an engine takes in what its peers told it.
//!
//! When a box dies, ECMP moves its flows to the survivors; a proxied connection's sequence and
//! timestamp offsets exist only in the table of the box that opened it. So every engine with
//! sync enabled records, in a fixed ring (no allocation, no locks: the data plane drains it
//! between batches):
//!
//! * an **upsert** when a session becomes established (proxied: when the backend's SYN-ACK gave
//!   the offsets; tracked: at the client's handshake ACK), and again whenever its last-seen time
//!   crosses a 64-second boundary (so that peers do not idle it out while it lives);
//! * a **delete** when it closes (RST, or FINs both ways).
//!
//! A peer [`Engine::import_synced`]s each record into its own table: the session is there, with
//! its offsets, when the flow moves to it. Records are 72 bytes ([`SyncRecord::encode`]).
//!
//! A box that (re)joins the fleet has heard nothing from before its start, yet ECMP gives it
//! back flows its peers carried meanwhile. So when a peer appears (`control::sync` hears a
//! sender it does not know), every engine walks its whole table once in bounded steps
//! ([`Engine::start_sync_dump`], [`Engine::sync_dump_step`]) and records an upsert for each
//! open session, paced at [`DUMP_RATE`] records a second. An IPv6 session cannot be sent from
//! the table — it keeps only a fingerprint of the flow (see `engine::session`), and a record
//! needs the flow itself — so the walk marks it instead: its last-seen time moves to the next
//! 64-second boundary (never expiring it sooner), and its next segment in either direction
//! crosses that boundary back and sends the refresh upsert, with the flow. The walk begins
//! hundreds of milliseconds before the returning box's BGP session is up, so a connection that
//! is active then reaches the box before its path does.

use super::flow::FlowKey;
use super::session::{stored_key_v4, tick, Session, SessionState};
use super::Engine;

/// Bytes of an encoded record.
pub const RECORD_BYTES: usize = 72;
/// Records an engine holds between two drains (a full ring drops the newest, counted).
pub const RING: usize = 4096;
/// Records a second one engine produces while it walks its table for a (re)joined peer: a
/// million sessions take 10 s, at ~7 MB/s to each peer.
pub const DUMP_RATE: u64 = 100_000;
/// Table slots one [`Engine::sync_dump_step`] looks at, at most.
const DUMP_SCAN: usize = 4096;
/// Records a step may make at most, however long since the last (no burst after a pause).
const DUMP_BURST: u64 = 1024;

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOp {
    /// The session is (still) live, as given.
    Upsert,
    /// The session ended.
    Delete,
}

/// One record: the flow, the operation and the session as the sender holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncRecord {
    /// What happened.
    pub op: SyncOp,
    /// The flow.
    pub key: FlowKey,
    /// The session ([`Session::to_bytes`]).
    pub session: [u8; Session::BYTES],
}

impl SyncRecord {
    /// The fixed 72-byte wire form: op, v6, client port, server port, client address, server
    /// address (16 bytes each), the session (32 bytes).
    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut b = [0u8; RECORD_BYTES];
        b[0] = match self.op {
            SyncOp::Upsert => 1,
            SyncOp::Delete => 2,
        };
        b[1] = u8::from(self.key.v6);
        b[2..4].copy_from_slice(&self.key.client_port.to_be_bytes());
        b[4..6].copy_from_slice(&self.key.server_port.to_be_bytes());
        b[8..24].copy_from_slice(&self.key.client_ip);
        b[24..40].copy_from_slice(&self.key.server_ip);
        b[40..72].copy_from_slice(&self.session);
        b
    }

    /// The record of a wire form; `None` for an unknown operation or family byte.
    pub fn decode(b: &[u8; RECORD_BYTES]) -> Option<SyncRecord> {
        let op = match b[0] {
            1 => SyncOp::Upsert,
            2 => SyncOp::Delete,
            _ => return None,
        };
        if b[1] > 1 {
            return None;
        }
        let mut key = FlowKey {
            v6: b[1] == 1,
            client_port: u16::from_be_bytes([b[2], b[3]]),
            server_port: u16::from_be_bytes([b[4], b[5]]),
            ..FlowKey::default()
        };
        key.client_ip.copy_from_slice(&b[8..24]);
        key.server_ip.copy_from_slice(&b[24..40]);
        if !key.v6 && (key.client_ip[4..].iter().any(|&x| x != 0) || key.server_ip[4..].iter().any(|&x| x != 0)) {
            return None;
        }
        let mut session = [0u8; Session::BYTES];
        session.copy_from_slice(&b[40..72]);
        Some(SyncRecord { op, key, session })
    }
}

/// The fixed ring of records an engine has not handed out yet.
#[derive(Debug)]
pub struct SyncRing {
    recs: Vec<SyncRecord>,
    len: usize,
    /// Records lost because the ring was full.
    pub dropped: u64,
    /// The walk over the table in progress, if any.
    dump: Option<Dump>,
}

/// A walk over the table (see [`Engine::sync_dump_step`]).
#[derive(Clone, Copy, Debug)]
struct Dump {
    /// Next slot to look at.
    next: usize,
    /// Slots left to look at.
    left: usize,
    /// Records the walk may make now.
    credit: u64,
    /// When the credit was last topped up.
    at_ns: u64,
}

impl SyncRing {
    fn new() -> SyncRing {
        let empty = SyncRecord { op: SyncOp::Delete, key: FlowKey::default(), session: [0; Session::BYTES] };
        SyncRing { recs: vec![empty; RING], len: 0, dropped: 0, dump: None }
    }

    #[inline]
    fn push(&mut self, r: SyncRecord) {
        match self.recs.get_mut(self.len) {
            Some(slot) => {
                *slot = r;
                self.len += 1;
            }
            None => self.dropped += 1,
        }
    }
}

crate::counters! {
    /// Session streaming of one engine.
    pub struct SyncStats("sync") {
        /// Records this engine produced for its peers (upserts and deletes).
        counter "sync" sync_records_out,
        /// Records lost because the engine's ring was full between two drains.
        counter "sync" sync_records_lost,
        /// Sessions taken in from peers (new or updated).
        counter "sync" sync_sessions_imported,
        /// Sessions removed because a peer said they ended.
        counter "sync" sync_sessions_deleted,
        /// Peer records not taken in (no such service here, expired, or the table full).
        counter "sync" sync_records_refused,
        /// Walks over the whole table begun because a peer (re)joined the fleet.
        counter "sync" sync_dumps,
        /// Upserts those walks made (open IPv4 sessions).
        counter "sync" sync_records_dumped,
        /// Open IPv6 sessions those walks marked to be sent with their next segment.
        counter "sync" sync_sessions_marked,
    }
}

impl Engine {
    /// Start recording sessions for peers (allocates the ring once).
    pub fn enable_sync(&mut self) {
        if self.sync.is_none() {
            self.sync = Some(Box::new(SyncRing::new()));
        }
    }

    /// Hand every record made since the last call to `f` (oldest first) and empty the ring.
    pub fn drain_synced(&mut self, mut f: impl FnMut(&SyncRecord)) {
        if let Some(r) = self.sync.as_mut() {
            for rec in &r.recs[..r.len] {
                f(rec);
            }
            self.sync_stats.sync_records_out += r.len as u64;
            self.sync_stats.sync_records_lost += std::mem::take(&mut r.dropped);
            r.len = 0;
        }
    }

    /// A peer (re)joined: walk the whole table (from the start, also if a walk is under way)
    /// and tell the peers every open session, over the next calls of
    /// [`Engine::sync_dump_step`]. Nothing when sync is off.
    pub fn start_sync_dump(&mut self, now_ns: u64) {
        let cap = self.table.capacity();
        if let Some(r) = self.sync.as_mut() {
            r.dump = Some(Dump { next: 0, left: cap, credit: 0, at_ns: now_ns });
            self.sync_stats.sync_dumps += 1;
        }
    }

    /// One bounded step of the walk begun by [`Engine::start_sync_dump`]: looks at up to 4,096
    /// slots and records an upsert for each open (established or half-closed) IPv4 session, at
    /// most [`DUMP_RATE`] a second on average and never more than the ring holds, and marks each
    /// open IPv6 session to be sent with its next segment. Returns
    /// whether the walk goes on. Between batches, like [`Engine::drain_synced`].
    pub fn sync_dump_step(&mut self, now_ns: u64) -> bool {
        let Some(r) = self.sync.as_mut() else { return false };
        let Some(mut d) = r.dump else { return false };
        let elapsed = now_ns.saturating_sub(d.at_ns);
        let earned = elapsed.saturating_mul(DUMP_RATE) / 1_000_000_000;
        if earned > 0 {
            d.credit = (d.credit + earned).min(DUMP_BURST);
            // Keep the remainder of a partly earned record.
            d.at_ns = d.at_ns.saturating_add(earned.saturating_mul(1_000_000_000) / DUMP_RATE);
            if d.credit == DUMP_BURST {
                d.at_ns = now_ns;
            }
        }
        let room = (RING - r.len) as u64;
        let mut budget = d.credit.min(room);
        let mut made = 0u64;
        let now_tick = tick(self.now_ns.max(now_ns));
        let mut marked = 0u64;
        let looked = self.table.scan_live(d.next, DUMP_SCAN.min(d.left), now_tick, |key, s| {
            if !matches!(s.state, SessionState::Established | SessionState::FinWait) {
                return true;
            }
            let Some((c, sv, cp, sp)) = stored_key_v4(key) else {
                // IPv6: sent with its next segment (see the module's docs).
                s.last_seen = (now_tick | 0xffff).wrapping_add(1);
                marked += 1;
                return true;
            };
            if budget == 0 {
                return false;
            }
            budget -= 1;
            made += 1;
            r.push(SyncRecord { op: SyncOp::Upsert, key: FlowKey::v4(c, cp, sv, sp), session: s.to_bytes() });
            true
        });
        d.credit -= made;
        d.next = (d.next + looked) & (self.table.capacity() - 1);
        d.left -= looked;
        self.sync_stats.sync_records_dumped += made;
        self.sync_stats.sync_sessions_marked += marked;
        r.dump = (d.left > 0).then_some(d);
        r.dump.is_some()
    }

    /// Session streaming counters.
    pub fn sync_stats(&self) -> SyncStats {
        self.sync_stats
    }

    /// Record session `s` of `key` for the peers (when sync is on).
    #[inline]
    pub(crate) fn sync_note(&mut self, op: SyncOp, key: &FlowKey, s: &Session) {
        if let Some(r) = self.sync.as_mut() {
            r.push(SyncRecord { op, key: *key, session: s.to_bytes() });
        }
    }

    /// Whether a session seen at `new` after `old` crossed a 64-second boundary (time to tell
    /// the peers it lives).
    #[inline]
    pub(crate) fn sync_refresh_due(&self, old: u32, new: u32) -> bool {
        self.sync.is_some() && (old ^ new) >> 16 != 0
    }

    /// Take in a record from a peer at `now_ns`: an upsert puts the session in this engine's
    /// table (last seen now; a local session of the same flow is replaced only if it is not
    /// open here), a delete removes it.
    pub fn import_synced(&mut self, now_ns: u64, rec: &SyncRecord) {
        if now_ns > self.now_ns {
            self.now_ns = now_ns;
        }
        let probe = self.table.probe(&rec.key);
        let found = self.table.lookup_probe(&probe, tick(self.now_ns));
        match rec.op {
            SyncOp::Delete => {
                if let Some(id) = found {
                    self.table.remove(id);
                    self.sync_stats.sync_sessions_deleted += 1;
                }
            }
            SyncOp::Upsert => {
                let Some(mut s) = Session::from_bytes(&rec.session) else {
                    self.sync_stats.sync_records_refused += 1;
                    return;
                };
                if let Some(id) = found {
                    if matches!(self.table.get(id).state, SessionState::Established | SessionState::FinWait) {
                        // Open here: this box carries the flow now; its own state wins.
                        return;
                    }
                    self.table.remove(id);
                }
                s.last_seen = tick(self.now_ns);
                match self.restore_session(probe.stored_key(), s, self.now_ns) {
                    Ok(()) => self.sync_stats.sync_sessions_imported += 1,
                    Err(_) => self.sync_stats.sync_records_refused += 1,
                }
            }
        }
        self.release_departed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let key = FlowKey::v4([198, 18, 11, 2], 40_000, [198, 18, 30, 10], 80);
        let s = Session { state: SessionState::Established, seq_off: 77, ..Session::default() };
        let r = SyncRecord { op: SyncOp::Upsert, key, session: s.to_bytes() };
        assert_eq!(SyncRecord::decode(&r.encode()), Some(r));
        let k6 = FlowKey::v6([0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1], 1, [0x20; 16], 443);
        let r6 = SyncRecord { op: SyncOp::Delete, key: k6, session: [0; 32] };
        assert_eq!(SyncRecord::decode(&r6.encode()), Some(r6));
        let mut bad = r.encode();
        bad[0] = 9;
        assert_eq!(SyncRecord::decode(&bad), None);
        let mut bad = r.encode();
        bad[12] = 1; // bytes of an IPv4 address beyond its four
        assert_eq!(SyncRecord::decode(&bad), None);
    }
}
