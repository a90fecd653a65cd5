//! The session table: fixed capacity, preallocated, open addressing.
//!
//! (Table implementation: see the spec in the module body; the `Session` record and states are
//! the engine's contract.)

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
    /// Spare.
    pub _pad: u8,
    /// Last window field sent by the client (unscaled, as on the wire).
    pub win_c: u16,
    /// Last window field sent by the server (unscaled, as on the wire, server's own scale).
    pub win_s: u16,
    /// Client MSS (decoded from the cookie) for the backend SYN.
    pub mss: u16,
    /// Highest client sequence number + segment length seen (client sequence space).
    pub next_c: u32,
    /// Highest server sequence number + length seen (server sequence space).
    /// ProxySynSent: the client's latest TSval.
    pub next_s: u32,
    /// Proxied: cookie ISN − backend ISN (added to server→client seq, subtracted from
    /// client→server ack and SACK blocks). ProxySynSent: the cookie ISN.
    pub seq_off: u32,
    /// Proxied with timestamps: scrubber TSval − backend TSval (added to server→client TSval,
    /// subtracted from client→server TSecr). ProxySynSent: the TSval the scrubber sent.
    pub ts_off: u32,
}

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
