//! The session table: fixed capacity, preallocated, open addressing.
//!
//! The [`Session`] record, its [`SessionState`]s, [`StateClass`]es and [`Timeouts`] are the
//! engine's contract; [`SessionTable`] stores them.
//!
//! # Layout
//!
//! * Slots are grouped in buckets of 16. A parallel array of 16-bit *tags* (0 = empty,
//!   otherwise 16 nonzero bits of the key's hash), 32 bytes per bucket and aligned to 32 bytes
//!   (one cache line), lets a probe scan a whole bucket before touching any entry.
//! * An entry is the 16-byte key plus the 32-byte [`Session`]: 48 bytes. With its tag a slot
//!   costs [`SessionTable::BYTES_PER_SLOT`] = 50 bytes; 2²⁰ slots take 50 MiB, allocated once
//!   by [`SessionTable::new`] and never again.
//! * Keys: an IPv4 flow is stored exactly, as one 128-bit number (client address, server
//!   address, client port, server port, from the low bits up; the top 32 bits zero). An IPv6 flow is stored as a 128-bit xxh3
//!   fingerprint of [`FlowKey::to_bytes`] seeded with the table's seed, with its top bit
//!   forced to 1 — the marker that keeps it from ever equalling an IPv4 key, whose top byte is
//!   0. Two IPv6 flows share a fingerprint with probability about 2⁻¹²⁷ per pair (for 2²⁰ live
//!   flows, ≈ 2⁻⁸⁸ for the whole table): they would then share a session. That is the price
//!   of 48-byte entries instead of 64; an attacker cannot aim at a collision without the seed,
//!   and would gain no more than a (cookie-checked) spoofed connection can.
//! * Placement is two-choice hashing: the key's hash (for IPv4 two rounds of 64×64→128-bit
//!   multiply-and-fold keyed by four words derived from the seed, computed in registers; the
//!   fingerprint itself for IPv6) gives two candidate buckets and the tag. A new
//!   key goes to the candidate bucket with more free slots (which keeps bucket loads far more
//!   even than "first bucket first": no insert failed in simulation up to 95 % load). When
//!   both are full and the table is less than 31/32 full, one resident entry of either bucket
//!   may move to its own other bucket to make room (one cuckoo step, at most 32 hashes).
//!
//! # Expiry and eviction
//!
//! An entry whose idle time `now_tick - last_seen` (wrapping, in ms, see [`tick`]) exceeds
//! [`Timeouts::for_state`] is expired: lookups treat it as absent and free it, inserts reuse
//! it, and [`SessionTable::sweep`] reclaims it even if its flow is never seen again. An idle
//! time of 2³¹ ms or more (i.e. a `last_seen` in the future, after the clock stepped back) is
//! taken as 0: a clock step back never expires the table. Timeouts of 2³¹ ms or more never fire.
//!
//! When both candidate buckets are full of live entries, an insert evicts, by preference: a
//! Closing-class entry (FinWait, Closing, Closed; oldest first), then an Embryonic one (oldest
//! first), then — only when the new session is itself Established — the least recently seen
//! Established entry. Otherwise the insert fails with [`TableFull`].
//!
//! A batch of lookups goes faster in three steps ([`SessionTable::probe`] to hash,
//! [`SessionTable::prefetch_tags`], [`SessionTable::prefetch_entries`]) before the lookups
//! ([`SessionTable::lookup_probe`]): see `engine::batch`.
//!
//! Every operation is O(1): at most two buckets (plus, in the cuckoo step, one bucket per
//! resident entry of those two) are examined, and nothing is allocated.

use super::flow::FlowKey;
use super::tcp::seq::SeqNumber;

/// Life-cycle state of a session.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(u8)]
pub enum SessionState {
    /// Unused slot.
    #[default]
    Free = 0,
    /// Track mode: the client's SYN was seen and forwarded.
    SynSent = 1,
    /// Track mode: the server's SYN-ACK was seen and forwarded.
    SynRecv = 2,
    /// Proxy mode: the client completed the handshake with a valid cookie; the SYN towards the
    /// backend was sent; its SYN-ACK is awaited.
    ProxySynSent = 3,
    /// Data may flow both ways.
    Established = 4,
    /// One side sent a FIN.
    FinWait = 5,
    /// Both sides sent a FIN.
    Closing = 6,
    /// A RST was forwarded, or the close completed; kept briefly so that late segments are
    /// recognised, and replaced at once by a new SYN on the same 4-tuple.
    Closed = 7,
    /// A protected server sent a SYN to an outside peer (connection opened from the int side).
    OutSynSent = 8,
    /// The outside peer answered a server-opened connection with a SYN-ACK.
    OutSynRecv = 9,
}

/// How the table treats a state for eviction and timeouts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StateClass {
    /// Handshake in progress: evicted first.
    Embryonic,
    /// Open connection: evicted last, and only by another established session.
    Established,
    /// Closing or closed: evicted first.
    Closing,
}

impl SessionState {
    /// Eviction / timeout class.
    #[inline]
    pub fn class(self) -> StateClass {
        match self {
            SessionState::SynSent
            | SessionState::SynRecv
            | SessionState::ProxySynSent
            | SessionState::OutSynSent
            | SessionState::OutSynRecv => StateClass::Embryonic,
            SessionState::Established => StateClass::Established,
            SessionState::Free | SessionState::FinWait | SessionState::Closing | SessionState::Closed => {
                StateClass::Closing
            }
        }
    }
}

/// Session flag: the session was opened through the SYN proxy (sequence numbers and timestamps
/// are translated).
pub const F_PROXIED: u8 = 1 << 0;
/// Session flag: the client negotiated timestamps.
pub const F_TS: u8 = 1 << 1;
/// Session flag: the client offered SACK.
pub const F_SACK: u8 = 1 << 2;
/// Session flag: the client asked for ECN.
pub const F_ECN: u8 = 1 << 3;
/// Session flag: the client sent a FIN.
pub const F_FIN_CLIENT: u8 = 1 << 4;
/// Session flag: the server sent a FIN.
pub const F_FIN_SERVER: u8 = 1 << 5;
/// Session flag: the session was opened by a protected server (int side).
pub const F_OUTBOUND: u8 = 1 << 6;
/// Session flag: the client negotiated timestamps with the proxy but the backend did not; the
/// client's timestamp options are blanked (NOPs) on the way to the backend.
pub const F_TS_STRIP: u8 = 1 << 7;

/// Window scale value meaning "no window scale option".
pub const WS_NONE: u8 = 0xff;

/// What the engine keeps per connection: 32 bytes (plus the table's key and tag).
///
/// Some fields hold handshake data while the session is in [`SessionState::ProxySynSent`] and
/// their steady-state meaning afterwards, as noted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(C)]
pub struct Session {
    /// Time of the last frame, in milliseconds (wrapping; see [`tick`]).
    pub last_seen: u32,
    /// Life-cycle state.
    pub state: SessionState,
    /// `F_*` flags.
    pub flags: u8,
    /// Client's window scale (from its SYN), or [`WS_NONE`].
    pub client_ws: u8,
    /// Backend's window scale (from its SYN-ACK), or [`WS_NONE`].
    pub server_ws: u8,
    /// Window scale the scrubber advertised to the client in the cookie SYN-ACK, or [`WS_NONE`].
    pub adv_ws: u8,
    /// Index of the service the session belongs to (bits 0–6, see
    /// [`SessionTable::set_service_timeouts`]); bit 7 ([`SVC_COUNTED`]) set when the session is
    /// counted in a per-source live-connection limit at [`Session::conn_slot`].
    pub svc: u8,
    /// Last window field sent by the client (unscaled, as on the wire).
    pub win_c: u16,
    /// Last window field sent by the server (unscaled, as on the wire, server's own scale).
    /// ProxySynSent: the client's MSS (decoded from the cookie) for the backend SYN.
    pub win_s: u16,
    /// Slot of the per-source live-connection counter this session is counted in (when `svc`
    /// has [`SVC_COUNTED`]); reported by [`SessionTable::drain_departed`] when the session
    /// leaves the table.
    pub conn_slot: u16,
    /// Highest client sequence number + segment length seen (client sequence space).
    pub next_c: SeqNumber,
    /// Highest server sequence number + length seen (server sequence space).
    /// ProxySynSent: the client's latest TSval.
    pub next_s: SeqNumber,
    /// Proxied: cookie ISN − backend ISN (added to server→client seq, subtracted from
    /// client→server ack and SACK blocks). ProxySynSent: the cookie ISN.
    pub seq_off: u32,
    /// Proxied with timestamps: scrubber TSval − backend TSval (added to server→client TSval,
    /// subtracted from client→server TSecr). ProxySynSent: the TSval the scrubber sent.
    pub ts_off: u32,
}

/// The parts of a stored IPv4 key (client address, server address, client port, server port),
/// or `None` for an IPv6 key (a fingerprint: its flow cannot be recovered from it).
pub fn stored_key_v4(key: u128) -> Option<([u8; 4], [u8; 4], u16, u16)> {
    if key & V6_BIT != 0 || key >> 96 != 0 {
        return None;
    }
    Some(((key as u32).to_be_bytes(), ((key >> 32) as u32).to_be_bytes(), (key >> 64) as u16, (key >> 80) as u16))
}

impl SessionState {
    /// The state stored as `v` (see [`Session::to_bytes`]).
    pub fn from_u8(v: u8) -> Option<SessionState> {
        use SessionState::*;
        Some(match v {
            0 => Free,
            1 => SynSent,
            2 => SynRecv,
            3 => ProxySynSent,
            4 => Established,
            5 => FinWait,
            6 => Closing,
            7 => Closed,
            8 => OutSynSent,
            9 => OutSynRecv,
            _ => return None,
        })
    }
}

impl Session {
    /// Size of [`Session::to_bytes`].
    pub const BYTES: usize = 32;

    /// The session as 32 little-endian bytes (fields in declaration order): the snapshot
    /// format.
    pub fn to_bytes(&self) -> [u8; Session::BYTES] {
        let mut b = [0u8; Session::BYTES];
        b[0..4].copy_from_slice(&self.last_seen.to_le_bytes());
        b[4] = self.state as u8;
        b[5] = self.flags;
        b[6] = self.client_ws;
        b[7] = self.server_ws;
        b[8] = self.adv_ws;
        b[9] = self.svc;
        b[10..12].copy_from_slice(&self.win_c.to_le_bytes());
        b[12..14].copy_from_slice(&self.win_s.to_le_bytes());
        b[14..16].copy_from_slice(&self.conn_slot.to_le_bytes());
        b[16..20].copy_from_slice(&self.next_c.0.to_le_bytes());
        b[20..24].copy_from_slice(&self.next_s.0.to_le_bytes());
        b[24..28].copy_from_slice(&self.seq_off.to_le_bytes());
        b[28..32].copy_from_slice(&self.ts_off.to_le_bytes());
        b
    }

    /// The session [`Session::to_bytes`] wrote; `None` when the state byte is not a state.
    pub fn from_bytes(b: &[u8; Session::BYTES]) -> Option<Session> {
        let u32at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u16at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(Session {
            last_seen: u32at(0),
            state: SessionState::from_u8(b[4])?,
            flags: b[5],
            client_ws: b[6],
            server_ws: b[7],
            adv_ws: b[8],
            svc: b[9],
            win_c: u16at(10),
            win_s: u16at(12),
            conn_slot: u16at(14),
            next_c: SeqNumber(u32at(16)),
            next_s: SeqNumber(u32at(20)),
            seq_off: u32at(24),
            ts_off: u32at(28),
        })
    }
}

/// [`Session::svc`] bit: the session is counted in a live-connection limit.
pub const SVC_COUNTED: u8 = 0x80;
/// Services with their own idle timeouts: [`Session::svc`] & 0x7f indexes them.
pub const MAX_SERVICES: usize = 128;
/// Departures [`SessionTable::drain_departed`] can hold between two drains.
const DEPARTED_CAP: usize = 4096;

/// Milliseconds tick used for `last_seen` and timeouts: `now_ns / 1e6`, truncated to 32 bits.
#[inline]
pub fn tick(now_ns: u64) -> u32 {
    (now_ns / 1_000_000) as u32
}

/// Idle timeouts per state class, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Handshake states.
    pub embryonic_ms: u32,
    /// Established.
    pub established_ms: u32,
    /// FinWait and Closing.
    pub closing_ms: u32,
    /// Closed.
    pub closed_ms: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { embryonic_ms: 10_000, established_ms: 600_000, closing_ms: 60_000, closed_ms: 10_000 }
    }
}

impl Timeouts {
    /// Idle timeout for a state.
    #[inline]
    pub fn for_state(&self, s: SessionState) -> u32 {
        match s {
            SessionState::Established => self.established_ms,
            SessionState::FinWait | SessionState::Closing => self.closing_ms,
            SessionState::Closed | SessionState::Free => self.closed_ms,
            _ => self.embryonic_ms,
        }
    }
}

// ------------------------------------------------------------------------------------------
// The table.
// ------------------------------------------------------------------------------------------

/// Slots per bucket.
const BUCKET: usize = 16;
/// Largest capacity (slots): slot ids are 32-bit.
const MAX_CAPACITY: usize = 1 << 31;
/// Marker bit (the top bit) set in IPv6 fingerprints, clear in IPv4 keys.
const V6_BIT: u128 = 1 << 127;

/// Multiply, fold the 128-bit product.
#[inline]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// SplitMix64: the four mixing keys from the seed.
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One bucket's tags: 0 = empty slot, else 16 bits of the key's hash (never 0).
#[derive(Clone, Copy, Default)]
#[repr(align(32))]
struct Tags([u16; BUCKET]);

/// A slot's content: the stored key and the session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    key: u128,
    s: Session,
}

/// Where a key lives: its two candidate buckets and its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    a: usize,
    b: usize,
    tag: u16,
}

/// A flow key in the table's terms — its stored form and place — computed once by
/// [`SessionTable::probe`] (the hash is most of a probe's arithmetic) and used by
/// [`SessionTable::lookup_probe`], [`SessionTable::insert_probe`] and the prefetches of a batch.
/// It depends only on the key and the table's seed, never on what the table holds, so it stays
/// valid across inserts, removals and sweeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    key: u128,
    place: Place,
    /// Slot + 1 where [`SessionTable::prefetch_entries`] saw the key's tag (0: none): the
    /// lookup checks it first (re-checking tag and key, as the table may have changed since).
    hint: u32,
}

impl Probe {
    /// The key as the table stores it (see [`SessionTable::for_each_live`]).
    #[inline]
    pub fn stored_key(&self) -> u128 {
        self.key
    }
}

/// Bit `i` set when `t[i] == v`.
#[inline]
fn match_mask(t: &Tags, v: u16) -> u32 {
    let mut m = 0u32;
    for (i, &x) in t.0.iter().enumerate() {
        m |= u32::from(x == v) << i;
    }
    m
}

/// Idle time, with "in the future" (≥ 2³¹ ms) read as 0.
#[inline]
fn idle(now: u32, last: u32) -> u32 {
    let a = now.wrapping_sub(last);
    if a > i32::MAX as u32 {
        0
    } else {
        a
    }
}

/// Handle to a slot of a [`SessionTable`], returned by [`SessionTable::lookup`] and
/// [`SessionTable::insert`].
///
/// It stays valid until the next [`SessionTable::remove`] of that id or the next
/// [`SessionTable::insert`], [`SessionTable::lookup`] or [`SessionTable::sweep`] (any of which
/// may evict, expire or move the entry). Using a stale id never panics, but may name another
/// session or a free slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotId(u32);

impl SlotId {
    /// The slot's index in the table (`0..capacity`).
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// [`SessionTable::insert`] found no slot the new session may take: both candidate buckets
/// hold only live sessions it may not evict (established ones, for a non-established newcomer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

impl core::fmt::Display for TableFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("session table full: no evictable slot for the new session")
    }
}

impl std::error::Error for TableFull {}

/// Why a [`SessionTable`] could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A capacity of 0 was asked for.
    #[error("session table capacity must be at least 1")]
    ZeroCapacity,
    /// More slots than slot ids can address.
    #[error("session table capacity {requested} is above the maximum of {max} slots")]
    TooLarge {
        /// The capacity asked for.
        requested: usize,
        /// The largest capacity accepted.
        max: usize,
    },
    /// The memory could not be allocated.
    #[error("cannot allocate {bytes} bytes for the session table")]
    Alloc {
        /// Bytes asked of the allocator.
        bytes: usize,
    },
}

crate::counters! {
    /// Counters of a [`SessionTable`]. At any time `live == inserts - removed - expired -
    /// evicted_embryonic - evicted_closing - evicted_established`.
    pub struct TableStats("table") {
        /// Sessions in the table now (expired ones not yet reclaimed included).
        gauge "session table" live,
        /// Slots in the table.
        gauge "session table" capacity,
        /// Successful inserts (each one occupied a free slot or replaced a removed, expired or
        /// evicted entry, counted below).
        counter "session table" inserts,
        /// Inserts refused: no slot the new session may take (the frame is dropped).
        counter "session table" insert_failures,
        /// Embryonic sessions evicted to make room for a new one.
        counter "session table" evicted_embryonic,
        /// Closing-class sessions (FinWait, Closing, Closed) evicted to make room for a new
        /// one.
        counter "session table" evicted_closing,
        /// Established sessions evicted (least recently seen) to make room for a new
        /// established one.
        counter "session table" evicted_established,
        /// Sessions freed because their idle timeout had passed (found by lookup, insert or
        /// sweep).
        counter "session table" expired,
        /// Sessions freed by removal, or replaced by an insert of the same key.
        counter "session table" removed,
        /// Entries moved to their other bucket to make room (the cuckoo step).
        counter "session table" cuckoo_moves,
        /// Ends of limit-counted sessions not reported to the `max-conns` counters because the
        /// departure log was full (their counts stay until the slot is reused).
        counter "session table" departures_lost,
    }
}

/// The fixed-capacity session table. See the [module documentation](self) for the design.
pub struct SessionTable {
    tags: Vec<Tags>,
    entries: Vec<Entry>,
    /// Buckets − 1.
    bucket_mask: usize,
    /// Slots − 1.
    slot_mask: usize,
    seed: u64,
    /// Keys of the IPv4 flow hash, from the seed.
    mix: [u64; 4],
    /// Idle timeouts per service index ([`Session::svc`] & 0x7f).
    timeouts: Box<[Timeouts; MAX_SERVICES]>,
    /// Live-connection slots of counted sessions that left the table, not yet drained.
    departed: Vec<u16>,
    /// Departures not recorded because `departed` was full.
    departed_lost: u64,
    /// Next slot [`SessionTable::sweep`] examines.
    hand: usize,
    live: usize,
    stats: TableStats,
    /// Entries moved to their other bucket by the cuckoo step (diagnostics).
    moved: u64,
}

impl core::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionTable")
            .field("capacity", &self.capacity())
            .field("len", &self.live)
            .field("timeouts", &self.timeouts[0])
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl SessionTable {
    /// Memory per slot: a 48-byte entry (16-byte key + 32-byte [`Session`]) and a 2-byte tag.
    pub const BYTES_PER_SLOT: usize = core::mem::size_of::<Entry>() + core::mem::size_of::<u16>();

    /// A table of `capacity` slots, rounded up to a power of two of at least 16 (at most 2³¹),
    /// all allocated now. `seed` keys the flow hash and the IPv6 fingerprints; use a random one
    /// so that outsiders cannot predict where flows land.
    pub fn new(capacity: usize, timeouts: Timeouts, seed: u64) -> Result<SessionTable, TableError> {
        if capacity == 0 {
            return Err(TableError::ZeroCapacity);
        }
        if capacity > MAX_CAPACITY {
            return Err(TableError::TooLarge { requested: capacity, max: MAX_CAPACITY });
        }
        let cap = capacity.max(BUCKET).next_power_of_two();
        let nb = cap / BUCKET;
        let bytes = cap.saturating_mul(Self::BYTES_PER_SLOT);
        let mut tags: Vec<Tags> = Vec::new();
        let mut entries: Vec<Entry> = Vec::new();
        tags.try_reserve_exact(nb).map_err(|_| TableError::Alloc { bytes })?;
        entries.try_reserve_exact(cap).map_err(|_| TableError::Alloc { bytes })?;
        tags.resize(nb, Tags::default());
        entries.resize(cap, Entry::default());
        Ok(SessionTable {
            tags,
            entries,
            bucket_mask: nb - 1,
            slot_mask: cap - 1,
            seed,
            mix: {
                let mut x = seed;
                [splitmix(&mut x), splitmix(&mut x), splitmix(&mut x), splitmix(&mut x)]
            },
            timeouts: Box::new([timeouts; MAX_SERVICES]),
            departed: Vec::with_capacity(DEPARTED_CAP),
            departed_lost: 0,
            hand: 0,
            live: 0,
            stats: TableStats::default(),
            moved: 0,
        })
    }

    /// The 16 bytes stored for a flow, as one number (kept in registers: built from the
    /// addresses and ports with shifts, never through a byte buffer).
    #[inline(always)]
    fn key_of(&self, k: &FlowKey) -> u128 {
        if k.v6 {
            let (b, n) = k.to_bytes();
            xxhash_rust::xxh3::xxh3_128_with_seed(&b[..n.min(36)], self.seed) | V6_BIT
        } else {
            let c = u32::from_be_bytes([k.client_ip[0], k.client_ip[1], k.client_ip[2], k.client_ip[3]]);
            let s = u32::from_be_bytes([k.server_ip[0], k.server_ip[1], k.server_ip[2], k.server_ip[3]]);
            u128::from(c) | u128::from(s) << 32 | u128::from(k.client_port) << 64 | u128::from(k.server_port) << 80
        }
    }

    /// Candidate buckets and tag of a stored key.
    #[inline(always)]
    fn place(&self, key: u128) -> Place {
        let (lo, hi) = if key & V6_BIT != 0 {
            // Already an xxh3 output: use its bits (not those of the marker) directly.
            (key as u64, (key >> 64) as u64)
        } else {
            // Two rounds of multiply-fold (as wyhash) keyed by the seed: a few cycles, all
            // in registers.
            let (l, h) = (key as u64, (key >> 64) as u64);
            let x = mum(l ^ self.mix[0], h ^ self.mix[1]);
            (x, mum(x ^ self.mix[2], l ^ self.mix[3]))
        };
        let a = lo as usize & self.bucket_mask;
        let mut b = hi as usize & self.bucket_mask;
        if b == a {
            b = (a ^ 1) & self.bucket_mask;
        }
        let tag = ((lo >> 48) as u16).max(1);
        Place { a, b, tag }
    }

    #[inline]
    fn tag_at(&self, i: usize) -> u16 {
        self.tags[i / BUCKET].0[i % BUCKET]
    }

    #[inline]
    fn set_tag(&mut self, i: usize, tag: u16) {
        self.tags[i / BUCKET].0[i % BUCKET] = tag;
    }

    #[inline]
    fn is_expired(&self, s: &Session, now: u32) -> bool {
        idle(now, s.last_seen) > self.timeouts[(s.svc & 0x7f) as usize].for_state(s.state)
    }

    /// Records that the session in occupied slot `i` leaves the table.
    #[inline]
    fn depart(&mut self, i: usize) {
        let s = &self.entries[i].s;
        if s.svc & SVC_COUNTED != 0 {
            if self.departed.len() < DEPARTED_CAP {
                let slot = s.conn_slot;
                self.departed.push(slot);
            } else {
                self.departed_lost += 1;
            }
        }
    }

    /// Frees an occupied slot.
    #[inline]
    fn free(&mut self, i: usize) {
        self.depart(i);
        self.set_tag(i, 0);
        self.live = self.live.saturating_sub(1);
    }

    /// The slot holding `k` in its candidate buckets, if any.
    #[inline]
    fn find(&self, k: &u128, p: Place) -> Option<usize> {
        for (n, bkt) in [p.a, p.b].into_iter().enumerate() {
            if n == 1 && bkt == p.a {
                break;
            }
            let mut m = match_mask(&self.tags[bkt], p.tag);
            while m != 0 {
                let i = bkt * BUCKET + m.trailing_zeros() as usize;
                m &= m - 1;
                if self.entries[i].key == *k {
                    return Some(i);
                }
            }
        }
        None
    }

    /// The slot of `key`'s session, if it has a live one. An entry found expired (idle longer
    /// than its state's timeout at `now_tick`) is freed, counted in
    /// [`TableStats::expired`], and reported absent. Does not update `last_seen`: the caller
    /// does, through [`SessionTable::get_mut`].
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, now_tick: u32) -> Option<SlotId> {
        let p = self.probe(key);
        self.lookup_probe(&p, now_tick)
    }

    /// The stored form and place of `key` (see [`Probe`]).
    #[inline]
    pub fn probe(&self, key: &FlowKey) -> Probe {
        let k = self.key_of(key);
        Probe { key: k, place: self.place(k), hint: 0 }
    }

    /// Whether `p` is the probe of the IPv4 key `key` (cheap: no hashing); always `false` for
    /// an IPv6 key, whose stored form is a hash.
    #[inline]
    pub fn is_probe_of(&self, p: &Probe, key: &FlowKey) -> bool {
        !key.v6 && self.key_of(key) == p.key
    }

    /// [`SessionTable::lookup`] of a probed key.
    #[inline]
    pub fn lookup_probe(&mut self, p: &Probe, now_tick: u32) -> Option<SlotId> {
        let h = p.hint.wrapping_sub(1) as usize;
        let hinted = p.hint != 0
            && h <= self.slot_mask
            && self.tag_at(h) == p.place.tag
            && self.entries.get(h).is_some_and(|e| e.key == p.key);
        let i = if hinted { h } else { self.find(&p.key, p.place)? };
        if self.is_expired(&self.entries[i].s, now_tick) {
            self.free(i);
            self.stats.expired += 1;
            return None;
        }
        Some(SlotId(i as u32))
    }

    /// The session in slot `id`. Never panics; for an id from another table or a stale id it
    /// returns some slot's (possibly free) content.
    #[inline]
    pub fn get(&self, id: SlotId) -> &Session {
        &self.entries[id.0 as usize & self.slot_mask].s
    }

    /// The session in slot `id`, to update. Never panics; see [`SessionTable::get`].
    #[inline]
    pub fn get_mut(&mut self, id: SlotId) -> &mut Session {
        &mut self.entries[id.0 as usize & self.slot_mask].s
    }

    #[inline]
    fn write(&mut self, i: usize, key: u128, tag: u16, s: Session) -> SlotId {
        self.entries[i] = Entry { key, s };
        self.set_tag(i, tag);
        self.stats.inserts += 1;
        SlotId(i as u32)
    }

    /// Stores a new session for `key`; `s.last_seen` is taken as the current tick and
    /// `s.state.class()` decides what it may evict (see the [module documentation](self)).
    ///
    /// The caller should have just looked the key up and found it absent; if it is present
    /// anyway, its entry is replaced (counted as a removal and an insert). May evict, expire
    /// or move other entries, invalidating their [`SlotId`]s. Fails with [`TableFull`] (and
    /// counts [`TableStats::insert_failures`]) when no slot may be taken.
    pub fn insert(&mut self, key: &FlowKey, s: Session) -> Result<SlotId, TableFull> {
        let p = self.probe(key);
        self.insert_probe(&p, s)
    }

    /// [`SessionTable::insert`] of a probed key.
    pub fn insert_probe(&mut self, probe: &Probe, s: Session) -> Result<SlotId, TableFull> {
        let (k, p) = (probe.key, probe.place);
        let now = s.last_seen;
        if let Some(i) = self.find(&k, p) {
            if self.is_expired(&self.entries[i].s, now) {
                self.stats.expired += 1;
            } else {
                self.stats.removed += 1;
            }
            self.depart(i);
            return Ok(self.write(i, k, p.tag, s));
        }

        // A free slot, in the emptier candidate bucket.
        let fa = match_mask(&self.tags[p.a], 0);
        let fb = if p.b != p.a { match_mask(&self.tags[p.b], 0) } else { 0 };
        if fa | fb != 0 {
            let (bkt, m) = if fa.count_ones() >= fb.count_ones() { (p.a, fa) } else { (p.b, fb) };
            let i = bkt * BUCKET + m.trailing_zeros() as usize;
            self.live += 1;
            return Ok(self.write(i, k, p.tag, s));
        }

        // Both full: score every resident (no early exit and no data-dependent branches, so
        // the CPU fetches the entries' cache lines in parallel). Higher is a better victim:
        // expired 4, closing-class 3, embryonic 2, established 1 (only for an established
        // newcomer; else 0 = untouchable); ties go to the longest idle.
        let new_established = s.state.class() == StateClass::Established;
        let mut best_score = 0u64;
        let mut best = usize::MAX;
        for (n, bkt) in [p.a, p.b].into_iter().enumerate() {
            if n == 1 && bkt == p.a {
                break;
            }
            for j in 0..BUCKET {
                let i = bkt * BUCKET + j;
                let e = &self.entries[i].s;
                let age = idle(now, e.last_seen);
                let pref: u64 = if age > self.timeouts[(e.svc & 0x7f) as usize].for_state(e.state) {
                    4
                } else {
                    match e.state.class() {
                        StateClass::Closing => 3,
                        StateClass::Embryonic => 2,
                        StateClass::Established => u64::from(new_established),
                    }
                };
                let score = (pref << 32) | u64::from(age);
                if pref != 0 && score > best_score {
                    best_score = score;
                    best = i;
                }
            }
        }
        if best_score >> 32 == 4 {
            self.stats.expired += 1;
            self.depart(best);
            return Ok(self.write(best, k, p.tag, s));
        }

        // One cuckoo step, while the table has room elsewhere.
        if self.live < self.capacity() - self.capacity() / 32 {
            if let Some(i) = self.make_room(p) {
                self.live += 1;
                return Ok(self.write(i, k, p.tag, s));
            }
        }

        match best_score >> 32 {
            3 => self.stats.evicted_closing += 1,
            2 => self.stats.evicted_embryonic += 1,
            1 => self.stats.evicted_established += 1,
            _ => {
                self.stats.insert_failures += 1;
                return Err(TableFull);
            }
        }
        self.depart(best);
        Ok(self.write(best, k, p.tag, s))
    }

    /// Moves one entry of bucket `p.a` or `p.b` to its other candidate bucket if that has a
    /// free slot; returns the slot vacated.
    fn make_room(&mut self, p: Place) -> Option<usize> {
        for (n, bkt) in [p.a, p.b].into_iter().enumerate() {
            if n == 1 && bkt == p.a {
                break;
            }
            for j in 0..BUCKET {
                let i = bkt * BUCKET + j;
                let q = self.place(self.entries[i].key);
                let alt = if q.a == bkt { q.b } else { q.a };
                if alt == bkt {
                    continue;
                }
                let free = match_mask(&self.tags[alt], 0);
                if free != 0 {
                    let to = alt * BUCKET + free.trailing_zeros() as usize;
                    self.entries[to] = self.entries[i];
                    let tag = self.tag_at(i);
                    self.set_tag(to, tag);
                    self.set_tag(i, 0);
                    self.moved += 1;
                    return Some(i);
                }
            }
        }
        None
    }

    /// Frees slot `id` (counted in [`TableStats::removed`]). A free slot or a foreign id is
    /// ignored.
    pub fn remove(&mut self, id: SlotId) {
        let i = id.0 as usize;
        if i <= self.slot_mask && self.tag_at(i) != 0 {
            self.free(i);
            self.stats.removed += 1;
        }
    }

    /// Advances a clock hand over the next `n` slots (at most the capacity), freeing the
    /// expired sessions it passes (counted in [`TableStats::expired`]); returns how many were
    /// freed. Calling it with a small `n` per packet reclaims the slots of flows never seen
    /// again at O(n) cost.
    pub fn sweep(&mut self, now_tick: u32, n: usize) -> usize {
        let mut freed = 0;
        for _ in 0..n.min(self.capacity()) {
            if self.departed.len() >= DEPARTED_CAP {
                break; // drain first; the hand resumes here next time
            }
            let i = self.hand;
            self.hand = (i + 1) & self.slot_mask;
            if self.tag_at(i) != 0 && self.is_expired(&self.entries[i].s, now_tick) {
                self.free(i);
                self.stats.expired += 1;
                freed += 1;
            }
        }
        freed
    }

    /// Calls `f` with the stored key and session of every entry alive at `now_tick` (for
    /// a snapshot: see [`SessionTable::insert_stored`]). O(capacity).
    pub fn for_each_live(&self, now_tick: u32, mut f: impl FnMut(u128, &Session)) {
        for (b, tags) in self.tags.iter().enumerate() {
            for (j, &t) in tags.0.iter().enumerate() {
                let e = &self.entries[b * BUCKET + j];
                if t != 0 && !self.is_expired(&e.s, now_tick) {
                    f(e.key, &e.s);
                }
            }
        }
    }

    /// Calls `f` with the stored key and (changeable) session of every entry alive at
    /// `now_tick` among the `n` slots from slot `from` on (wrapping at the end of the table), and returns how many
    /// slots it looked at: a walk over the table in bounded steps (see
    /// `Engine::sync_dump_step`). `f` returns `false` to stop early; the slot it refused is not
    /// counted as looked at, so that the next step begins with it.
    pub fn scan_live(
        &mut self,
        from: usize,
        n: usize,
        now_tick: u32,
        mut f: impl FnMut(u128, &mut Session) -> bool,
    ) -> usize {
        let n = n.min(self.capacity());
        for k in 0..n {
            let i = (from + k) & self.slot_mask;
            if self.tag_at(i) == 0 || self.is_expired(&self.entries[i].s, now_tick) {
                continue;
            }
            let e = &mut self.entries[i];
            if !f(e.key, &mut e.s) {
                return k;
            }
        }
        n
    }

    /// Stores a session under a key as [`SessionTable::for_each_live`] gave it. An IPv4 key is
    /// valid in any table; an IPv6 key (a seeded fingerprint) only in a table with the same
    /// seed (see [`SessionTable::seed_check`]). Placement and eviction as
    /// [`SessionTable::insert`].
    pub fn insert_stored(&mut self, key: u128, s: Session) -> Result<SlotId, TableFull> {
        let p = Probe { key, place: self.place(key), hint: 0 };
        self.insert_probe(&p, s)
    }

    /// A one-way digest of the table's seed: equal digests mean IPv6 keys stored by one table
    /// are valid in the other. Reveals nothing usable about the seed (a keyed 64-bit hash).
    pub fn seed_check(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(b"scrubber session table seed check v1", self.seed)
    }

    /// Sessions in the table (including expired ones not yet reclaimed).
    #[inline]
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the table holds no session.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Number of slots (a power of two).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slot_mask + 1
    }

    /// Bytes allocated for the slots: `capacity() * BYTES_PER_SLOT`.
    pub fn memory_bytes(&self) -> usize {
        self.tags.capacity() * core::mem::size_of::<Tags>() + self.entries.capacity() * core::mem::size_of::<Entry>()
    }

    /// The counters.
    pub fn stats(&self) -> TableStats {
        TableStats {
            live: self.live as u64,
            capacity: self.capacity() as u64,
            cuckoo_moves: self.moved,
            departures_lost: self.departed_lost,
            ..self.stats
        }
    }

    /// The idle timeouts of service 0 (the default).
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts[0]
    }

    /// Replaces the idle timeouts of every service; they apply to existing sessions from the
    /// next check.
    pub fn set_timeouts(&mut self, t: Timeouts) {
        *self.timeouts = [t; MAX_SERVICES];
    }

    /// Sets the idle timeouts of service `svc` (sessions whose [`Session::svc`] & 0x7f is
    /// `svc`); ignored for `svc` ≥ [`MAX_SERVICES`]. No allocation: safe between frames.
    pub fn set_service_timeouts(&mut self, svc: usize, t: Timeouts) {
        if let Some(x) = self.timeouts.get_mut(svc) {
            *x = t;
        }
    }

    /// Hands the live-connection slot of every counted session that left the table since the
    /// last call (removed, expired, evicted or replaced) to `f`, in order.
    pub fn drain_departed(&mut self, mut f: impl FnMut(u16)) {
        for &s in &self.departed {
            f(s);
        }
        self.departed.clear();
    }

    /// Departures that could not be recorded (more than 4,096 between two drains).
    pub fn departed_lost(&self) -> u64 {
        self.departed_lost
    }

    /// First prefetch of a batch: ask for the tag groups of `p`'s two candidate buckets (one
    /// cache line each), which [`SessionTable::prefetch_entries`] will scan.
    #[inline]
    pub fn prefetch_tags(&self, p: &Probe) {
        scrubber_intrin::prefetch_at(&self.tags, p.place.a);
        scrubber_intrin::prefetch_at(&self.tags, p.place.b);
    }

    /// Second prefetch of a batch, once the tag groups have arrived: ask for the entries whose
    /// tag matches `p`'s (both cache lines of a 48-byte entry that straddles two) — in
    /// practice the one entry a lookup will compare, or none for an unknown flow.
    /// Returns whether any tag matched (`false`: the key is certainly absent), and notes the
    /// first matching slot in `p` for the lookup.
    #[inline]
    pub fn prefetch_entries(&self, p: &mut Probe) -> bool {
        let mut any = false;
        for (n, bkt) in [p.place.a, p.place.b].into_iter().enumerate() {
            if n == 1 && bkt == p.place.a {
                break;
            }
            let Some(t) = self.tags.get(bkt) else { break };
            let mut m = match_mask(t, p.place.tag);
            any |= m != 0;
            while m != 0 {
                let i = bkt * BUCKET + m.trailing_zeros() as usize;
                m &= m - 1;
                if p.hint == 0 {
                    p.hint = i as u32 + 1;
                }
                if let Some(e) = self.entries.get(i) {
                    scrubber_intrin::prefetch(e);
                    // Entries are 48 bytes: those at 48 and 32 bytes into a 64-byte line (slots
                    // 4n+1, 4n+2) reach into the next line.
                    if matches!(i % 4, 1 | 2) {
                        scrubber_intrin::prefetch(&e.s.ts_off);
                    }
                }
            }
        }
        any
    }

    /// Hint that `key` will be looked up soon: prefetch its candidate buckets' tag groups.
    #[inline]
    pub fn prefetch(&self, key: &FlowKey) {
        self.prefetch_tags(&self.probe(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const T: Timeouts =
        Timeouts { embryonic_ms: 10_000, established_ms: 600_000, closing_ms: 60_000, closed_ms: 10_000 };

    fn k4(i: u32) -> FlowKey {
        let b = i.to_be_bytes();
        FlowKey::v4([198, 18, b[2], b[3]], 1024u16.wrapping_add((i >> 16) as u16), [198, 19, 0, 1], 443)
    }

    fn k6(i: u32) -> FlowKey {
        let mut c = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[12..].copy_from_slice(&i.to_be_bytes());
        let mut s = c;
        s[15] = 1;
        s[11] = 0xff;
        FlowKey::v6(c, 40000, s, 443)
    }

    fn sess(state: SessionState, now: u32) -> Session {
        Session { state, last_seen: now, next_c: SeqNumber(now ^ 0x5555), ..Default::default() }
    }

    /// `live` equals inserts minus everything that freed a slot.
    fn check_accounting(t: &SessionTable) {
        let s = t.stats();
        assert_eq!(
            s.live,
            s.inserts - s.removed - s.expired - s.evicted_embryonic - s.evicted_closing - s.evicted_established,
            "{s:?}"
        );
        assert_eq!(s.live as usize, t.len());
        let occupied = (0..t.capacity()).filter(|&i| t.tag_at(i) != 0).count();
        assert_eq!(occupied, t.len());
    }

    #[test]
    fn sizes() {
        assert_eq!(core::mem::size_of::<Session>(), 32);
        assert_eq!(core::mem::size_of::<Entry>(), 48);
        assert_eq!(core::mem::size_of::<Tags>(), 32);
        assert_eq!(SessionTable::BYTES_PER_SLOT, 50);
    }

    #[test]
    fn capacity_rounding_and_errors() {
        assert!(matches!(SessionTable::new(0, T, 1), Err(TableError::ZeroCapacity)));
        assert!(matches!(SessionTable::new((1 << 31) + 1, T, 1), Err(TableError::TooLarge { .. })));
        assert_eq!(SessionTable::new(1, T, 1).unwrap().capacity(), 16);
        assert_eq!(SessionTable::new(17, T, 1).unwrap().capacity(), 32);
        assert_eq!(SessionTable::new(1 << 16, T, 1).unwrap().capacity(), 1 << 16);
        let t = SessionTable::new(1000, T, 1).unwrap();
        assert_eq!(t.memory_bytes(), 1024 * 50);
        assert!(t.is_empty());
        let dbg = format!("{t:?}");
        assert!(dbg.contains("capacity: 1024") && dbg.len() < 1000, "{dbg}");
        assert!(TableError::TooLarge { requested: 5, max: 4 }.to_string().contains("maximum"));
    }

    #[test]
    fn insert_lookup_remove_v4_v6() {
        let mut t = SessionTable::new(1024, T, 42).unwrap();
        for key in [k4(1), k6(1)] {
            assert_eq!(t.lookup(&key, 100), None);
            let s = sess(SessionState::Established, 100);
            let id = t.insert(&key, s).unwrap();
            assert_eq!(*t.get(id), s);
            assert_eq!(t.lookup(&key, 200), Some(id));
            t.get_mut(id).win_c = 77;
            let id = t.lookup(&key, 300).unwrap();
            assert_eq!(t.get(id).win_c, 77);
        }
        assert_eq!(t.len(), 2);
        // Near misses are absent.
        let mut other = k4(1);
        other.client_port += 1;
        assert_eq!(t.lookup(&other, 300), None);
        let mut other = k6(1);
        other.server_port += 1;
        assert_eq!(t.lookup(&other, 300), None);
        // A v4 key and the v6 key with the same leading bytes are distinct.
        let mut c = [0u8; 16];
        c[..4].copy_from_slice(&[198, 18, 0, 1]);
        let mut sv = [0u8; 16];
        sv[..4].copy_from_slice(&[198, 19, 0, 1]);
        assert_eq!(t.lookup(&FlowKey::v6(c, 1024, sv, 443), 300), None);

        let id = t.lookup(&k4(1), 300).unwrap();
        t.remove(id);
        t.remove(id); // twice: ignored
        t.remove(SlotId(u32::MAX)); // foreign: ignored
        assert_eq!(t.lookup(&k4(1), 300), None);
        assert!(t.lookup(&k6(1), 300).is_some());
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats().removed, 1);
        // get on a foreign id does not panic.
        let _ = t.get(SlotId(u32::MAX));
        let _ = t.get_mut(SlotId(u32::MAX));
        check_accounting(&t);
    }

    #[test]
    fn insert_of_present_key_replaces() {
        let mut t = SessionTable::new(64, T, 3).unwrap();
        let a = t.insert(&k4(5), sess(SessionState::SynSent, 10)).unwrap();
        let b = t.insert(&k4(5), sess(SessionState::Established, 20)).unwrap();
        assert_eq!(a, b);
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(b).state, SessionState::Established);
        check_accounting(&t);
    }

    #[test]
    fn expiry_per_state() {
        let mut t = SessionTable::new(1024, T, 7).unwrap();
        let states = [
            (SessionState::SynSent, T.embryonic_ms),
            (SessionState::SynRecv, T.embryonic_ms),
            (SessionState::ProxySynSent, T.embryonic_ms),
            (SessionState::OutSynSent, T.embryonic_ms),
            (SessionState::OutSynRecv, T.embryonic_ms),
            (SessionState::Established, T.established_ms),
            (SessionState::FinWait, T.closing_ms),
            (SessionState::Closing, T.closing_ms),
            (SessionState::Closed, T.closed_ms),
        ];
        let start = 1_000u32;
        for (n, &(st, timeout)) in states.iter().enumerate() {
            let key = k4(n as u32);
            t.insert(&key, sess(st, start)).unwrap();
            // At exactly the timeout: alive; one ms later: gone.
            assert!(t.lookup(&key, start + timeout).is_some(), "{st:?}");
            assert!(t.lookup(&key, start + timeout + 1).is_none(), "{st:?}");
        }
        assert_eq!(t.stats().expired, states.len() as u64);
        // An embryonic session expires while an established one inserted at the same time lives.
        t.insert(&k4(100), sess(SessionState::SynSent, start)).unwrap();
        t.insert(&k4(101), sess(SessionState::Established, start)).unwrap();
        let later = start + T.embryonic_ms + 1;
        assert!(t.lookup(&k4(100), later).is_none());
        assert!(t.lookup(&k4(101), later).is_some());
        check_accounting(&t);
    }

    #[test]
    fn wrapping_ticks_and_clock_steps_back() {
        let mut t = SessionTable::new(64, T, 9).unwrap();
        let start = u32::MAX - 5;
        t.insert(&k4(1), sess(SessionState::SynSent, start)).unwrap();
        // 16 ms later, across the wrap: alive.
        assert!(t.lookup(&k4(1), 10).is_some());
        assert!(t.lookup(&k4(1), start.wrapping_add(T.embryonic_ms)).is_some());
        assert!(t.lookup(&k4(1), start.wrapping_add(T.embryonic_ms + 1)).is_none());
        // The clock stepping back does not expire anything.
        t.insert(&k4(2), sess(SessionState::SynSent, 50_000)).unwrap();
        assert!(t.lookup(&k4(2), 40_000).is_some());
        assert_eq!(t.sweep(40_000, 64), 0);
        assert!(t.lookup(&k4(2), 50_000 + T.embryonic_ms + 1).is_none());
    }

    #[test]
    fn timeouts_can_change() {
        let mut t = SessionTable::new(64, T, 9).unwrap();
        t.insert(&k4(1), sess(SessionState::Established, 0)).unwrap();
        assert!(t.lookup(&k4(1), 1000).is_some());
        t.set_timeouts(Timeouts { established_ms: 500, ..T });
        assert_eq!(t.timeouts().established_ms, 500);
        assert!(t.lookup(&k4(1), 1000).is_none());
    }

    /// A full single-bucket table (capacity 16: both candidate buckets are bucket 0).
    fn full16(states: &[SessionState], now: u32) -> SessionTable {
        let mut t = SessionTable::new(16, T, 11).unwrap();
        assert_eq!(t.capacity(), 16);
        for i in 0..16u32 {
            let st = states[i as usize % states.len()];
            // Older entries first: entry i was last seen at now - 100 + i.
            t.insert(&k4(i), sess(st, now - 100 + i)).unwrap();
        }
        assert_eq!(t.len(), 16);
        t
    }

    #[test]
    fn eviction_preference() {
        use SessionState::*;
        let now = 1_000_000;
        // Embryonic newcomer, table of established + one closing: the closing one goes.
        let mut states = [Established; 16];
        states[9] = FinWait;
        let mut t = full16(&states, now);
        t.insert(&k4(100), sess(SynSent, now)).unwrap();
        assert!(t.lookup(&k4(9), now).is_none());
        assert_eq!(t.stats().evicted_closing, 1);
        // Next embryonic newcomer evicts the (only) embryonic: the one just inserted.
        t.insert(&k4(101), sess(SynSent, now)).unwrap();
        assert!(t.lookup(&k4(100), now).is_none());
        assert_eq!(t.stats().evicted_embryonic, 1);
        // All established and live: an embryonic newcomer is refused.
        let mut t = full16(&[Established], now);
        assert_eq!(t.insert(&k4(100), sess(SynSent, now)), Err(TableFull));
        assert_eq!(t.insert(&k4(100), sess(Closed, now)), Err(TableFull));
        assert_eq!(t.stats().insert_failures, 2);
        for i in 0..16 {
            assert!(t.lookup(&k4(i), now).is_some());
        }
        // An established newcomer evicts the least recently seen established (entry 0) ...
        let id = t.lookup(&k4(0), now).unwrap();
        t.get_mut(id).last_seen = now; // ... unless it was touched: then entry 1.
        t.insert(&k4(100), sess(Established, now)).unwrap();
        assert!(t.lookup(&k4(1), now).is_none());
        assert!(t.lookup(&k4(0), now).is_some());
        assert_eq!(t.stats().evicted_established, 1);
        check_accounting(&t);

        // Closing beats embryonic, oldest first within a class.
        let mut t = full16(&[SynSent, Established, Closed, SynRecv], now);
        t.insert(&k4(200), sess(SynSent, now)).unwrap(); // oldest closing-class: entry 2
        assert!(t.lookup(&k4(2), now).is_none());
        for i in [6, 10, 14] {
            t.insert(&k4(200 + i), sess(SynSent, now)).unwrap();
            assert!(t.lookup(&k4(i), now).is_none(), "closing entry {i} evicted next");
        }
        t.insert(&k4(300), sess(SynSent, now)).unwrap(); // then the oldest embryonic: entry 0
        assert!(t.lookup(&k4(0), now).is_none());
        assert_eq!(t.stats().evicted_closing, 4);
        assert_eq!(t.stats().evicted_embryonic, 1);
        // Established never go for an embryonic newcomer.
        for i in [1, 5, 9, 13] {
            assert!(t.lookup(&k4(i), now).is_some());
        }
        check_accounting(&t);

        // An expired entry is reused before anything is evicted.
        let mut t = full16(&[Established], now);
        let id = t.lookup(&k4(7), now).unwrap();
        t.get_mut(id).state = SynSent; // idle 93 ms ...
        let later = now - 100 + 7 + T.embryonic_ms + 1; // ... now past the embryonic timeout
        t.insert(&k4(400), sess(SynSent, later)).unwrap();
        assert!(t.lookup(&k4(7), later).is_none());
        assert_eq!(t.stats().expired, 1);
        assert_eq!(t.stats().evicted_embryonic + t.stats().evicted_closing + t.stats().evicted_established, 0);
        check_accounting(&t);
    }

    #[test]
    fn sweep_frees_expired() {
        let mut t = SessionTable::new(256, T, 13).unwrap();
        for i in 0..100 {
            let st = if i % 2 == 0 { SessionState::SynSent } else { SessionState::Established };
            t.insert(&k4(i), sess(st, 0)).unwrap();
        }
        let now = T.embryonic_ms + 1;
        let mut freed = 0;
        for _ in 0..256 / 10 + 1 {
            freed += t.sweep(now, 10);
        }
        assert_eq!(freed, 50);
        assert_eq!(t.len(), 50);
        assert_eq!(t.stats().expired, 50);
        assert_eq!(t.sweep(now, usize::MAX), 0);
        for i in 0..100 {
            assert_eq!(t.lookup(&k4(i), now).is_some(), i % 2 == 1);
        }
        check_accounting(&t);
    }

    #[test]
    fn allocates_once_1m() {
        let mut t = SessionTable::new(1_000_000, T, 17).unwrap();
        assert_eq!(t.capacity(), 1 << 20);
        assert_eq!(t.memory_bytes(), 50 << 20);
        let (p1, p2) = (t.entries.as_ptr(), t.tags.as_ptr());
        for i in 0..1000 {
            t.insert(&k4(i), sess(SessionState::Established, 0)).unwrap();
        }
        assert_eq!((t.entries.as_ptr(), t.tags.as_ptr()), (p1, p2));
        assert_eq!(t.entries.capacity(), 1 << 20);
    }

    fn fill(slots: usize, n: u32, seed: u64) -> SessionTable {
        let mut t = SessionTable::new(slots, T, seed).unwrap();
        let mut x = seed | 1;
        let mut keys = Vec::with_capacity(n as usize);
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = if i % 4 == 0 { k6(x as u32 ^ (x >> 32) as u32) } else { k4(x as u32) };
            keys.push(k);
        }
        keys.sort_unstable_by_key(|k| k.to_bytes());
        keys.dedup();
        for k in &keys {
            if t.lookup(k, 5).is_none() {
                t.insert(k, sess(SessionState::Established, 5)).unwrap();
            }
        }
        let s = t.stats();
        eprintln!("{} keys in {} slots: {:?}, {} moved by the cuckoo step", keys.len(), slots, s, t.moved);
        assert_eq!(s.insert_failures, 0);
        assert_eq!(s.evicted_established + s.evicted_embryonic + s.evicted_closing, 0);
        for k in &keys {
            assert!(t.lookup(k, 6).is_some());
        }
        assert_eq!(t.len(), keys.len());
        t
    }

    #[test]
    fn high_load_60k_in_64k() {
        let t = fill(1 << 16, 60_000, 0x1234_5678_9abc_def1);
        assert!(t.len() > 59_000);
    }

    #[test]
    fn high_load_900k_in_1m() {
        let t = fill(1 << 20, 900_000, 0x0fed_cba9_8765_4321);
        assert!(t.len() > 890_000);
    }

    #[test]
    fn a_stale_probe_hint_is_never_trusted() {
        let mut t = SessionTable::new(64, T, 5).unwrap();
        let a = k4(1);
        let id = t.insert(&a, sess(SessionState::Established, 0)).unwrap();
        let mut p = t.probe(&a);
        assert!(t.prefetch_entries(&mut p));
        assert_eq!(p.hint, id.0 + 1, "the hint names a's slot");
        assert_eq!(t.lookup_probe(&p, 0), Some(id));
        // a leaves; the slot is free (its key bytes remain): the hint must not find a.
        t.remove(id);
        assert_eq!(t.lookup_probe(&p, 0), None);
        // Another key takes the very slot: the hint names it, but the key differs.
        for i in 2..2000 {
            let b = k4(i);
            if let Ok(j) = t.insert(&b, sess(SessionState::Established, 0)) {
                if j == id {
                    assert_eq!(t.lookup_probe(&p, 0), None, "a is gone, b is not a");
                    assert_eq!(t.lookup(&b, 0), Some(j));
                    return;
                }
                t.remove(j);
            }
        }
        panic!("no other key landed in the slot");
    }

    #[test]
    fn prefetch_is_harmless() {
        let mut t = SessionTable::new(64, T, 1).unwrap();
        t.prefetch(&k4(1));
        t.prefetch(&k6(1));
        assert!(t.lookup(&k4(1), 0).is_none());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, u8),
        Lookup(u8),
        Touch(u8),
        Remove(u8),
        Advance(u32),
        Sweep(u8),
    }

    const STATES: [SessionState; 5] = [
        SessionState::SynSent,
        SessionState::Established,
        SessionState::FinWait,
        SessionState::Closed,
        SessionState::ProxySynSent,
    ];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), 0..STATES.len() as u8).prop_map(|(k, s)| Op::Insert(k, s)),
            any::<u8>().prop_map(Op::Lookup),
            any::<u8>().prop_map(Op::Touch),
            any::<u8>().prop_map(Op::Remove),
            // Total idle stays far below 2^31 ms (where ages read as "future"); `start`
            // covers the wrap of the tick.
            prop_oneof![0..100u32, 0..20_000u32, 0..200_000u32].prop_map(Op::Advance),
            any::<u8>().prop_map(Op::Sweep),
        ]
    }

    fn key(k: u8) -> FlowKey {
        // 32 keys, half v4, half v6.
        if k % 2 == 0 {
            k4(u32::from(k % 32))
        } else {
            k6(u32::from(k % 32))
        }
    }

    proptest! {
        #[test]
        fn agrees_with_hashmap(ops in proptest::collection::vec(op(), 1..300), start in any::<u32>(), seed in any::<u64>()) {
            let t_out = Timeouts { embryonic_ms: 1000, established_ms: 30_000, closing_ms: 5000, closed_ms: 2000 };
            let mut t = SessionTable::new(1024, t_out, seed).unwrap();
            let mut model: HashMap<FlowKey, Session> = HashMap::new();
            let mut now = start;
            // Documented semantics: idle times of 2^31 ms or more (last_seen in the future) count as 0.
            let alive = |s: &Session, now: u32| {
                let a = now.wrapping_sub(s.last_seen);
                a >= 1 << 31 || a <= t_out.for_state(s.state)
            };
            for op in ops {
                match op {
                    Op::Insert(k, st) => {
                        let k = key(k);
                        let present = t.lookup(&k, now).is_some();
                        let m = model.get(&k).is_some_and(|s| alive(s, now));
                        prop_assert_eq!(present, m);
                        if !present {
                            let s = Session { state: STATES[usize::from(st)], last_seen: now, next_c: SeqNumber(u32::from(st)), ..Default::default() };
                            t.insert(&k, s).unwrap();
                            model.insert(k, s);
                        }
                    }
                    Op::Lookup(k) | Op::Touch(k) => {
                        let k = key(k);
                        let got = t.lookup(&k, now).map(|id| *t.get(id));
                        let want = model.get(&k).copied().filter(|s| alive(s, now));
                        prop_assert_eq!(got, want);
                        if want.is_none() {
                            model.remove(&k);
                        }
                        if let (Op::Touch(_), Some(id)) = (op, t.lookup(&k, now)) {
                            t.get_mut(id).last_seen = now;
                            model.get_mut(&k).unwrap().last_seen = now;
                        }
                    }
                    Op::Remove(k) => {
                        let k = key(k);
                        if let Some(id) = t.lookup(&k, now) {
                            t.remove(id);
                        }
                        model.remove(&k);
                        prop_assert!(t.lookup(&k, now).is_none());
                    }
                    Op::Advance(d) => now = now.wrapping_add(d),
                    Op::Sweep(n) => {
                        t.sweep(now, usize::from(n));
                    }
                }
            }
            // After a full sweep the table holds exactly the model's live sessions.
            t.sweep(now, t.capacity());
            model.retain(|_, s| alive(s, now));
            prop_assert_eq!(t.len(), model.len());
            let s = t.stats();
            prop_assert_eq!(s.evicted_embryonic + s.evicted_closing + s.evicted_established + s.insert_failures, 0);
            check_accounting(&t);
        }
    }

    /// Rough cost per operation on a 2^20-slot table at 86 % load; prints, asserts nothing
    /// about time. Run with
    /// `cargo test --release -p scrubber --lib session::tests::bench -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_lookup_insert() {
        let t0 = std::time::Instant::now();
        let mut t = fill(1 << 20, 900_000, 99);
        eprintln!("fill 900k: {:?}", t0.elapsed());
        let n = 2_000_000u32;
        for (name, mk) in [("v4", k4 as fn(u32) -> FlowKey), ("v6", k6 as fn(u32) -> FlowKey)] {
            let t0 = std::time::Instant::now();
            let mut hits = 0u32;
            for i in 0..n {
                hits += u32::from(t.lookup(&mk(i.wrapping_mul(0x9e37_79b9)), 6).is_some());
            }
            let miss = t0.elapsed().as_nanos() as f64 / f64::from(n);
            eprintln!("{name} random lookups: {miss:.1} ns each ({hits} hits)");
        }
        let mut fresh = SessionTable::new(1 << 20, T, 5).unwrap();
        let t0 = std::time::Instant::now();
        for i in 0..900_000u32 {
            let _ = fresh.insert(&k4(i.wrapping_mul(0x9e37_79b9)), sess(SessionState::SynSent, 7));
        }
        eprintln!("900k inserts into an empty table: {:.1} ns each", t0.elapsed().as_nanos() as f64 / 900_000.0);
        let t0 = std::time::Instant::now();
        for i in 900_000..1_100_000u32 {
            let _ = fresh.insert(&k4(i.wrapping_mul(0x9e37_79b9)), sess(SessionState::SynSent, 7));
        }
        eprintln!(
            "200k inserts from 86 % to full (cuckoo steps): {:.1} ns each, {} moved",
            t0.elapsed().as_nanos() as f64 / 200_000.0,
            fresh.moved
        );
        let mut ids = 0u64;
        let t0 = std::time::Instant::now();
        for i in 0..n {
            // Full-ish table: evicts embryonic entries in steady state.
            if let Ok(id) = t.insert(&k4(i ^ 0x5a5a_0000), sess(SessionState::SynSent, 7)) {
                ids += id.index() as u64;
            }
        }
        std::hint::black_box(ids);
        eprintln!("inserts: {:.1} ns each; {:?}", t0.elapsed().as_nanos() as f64 / f64::from(n), t.stats());
    }
}
