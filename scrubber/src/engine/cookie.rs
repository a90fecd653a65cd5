//! SYN cookies: a keyed PRF over the connection, rotating time slots.
//!
//! In proxy mode the scrubber answers a client's SYN with a SYN-ACK whose initial sequence
//! number (ISN) is a *cookie*, and keeps no state. A client that really owns its address
//! answers with an ACK whose `ack - 1` is that cookie; [`SynCookies::validate`] checks it and
//! returns the options the SYN had offered, so that the scrubber can open the backend side.
//!
//! # The MAC: AES-128, one block for IPv4
//!
//! The authenticator is AES-128 — a keyed pseudo-random permutation, computed by the CPU's AES
//! instructions (AES-NI; a constant-time software implementation where there are none) — under
//! a key derived per time slot and family from the [`CookieKey`]:
//! `K(slot, family) = AES_key(label ‖ family ‖ slot)`. The derived keys of the current and the
//! previous slot are kept expanded; a new slot costs one key expansion.
//!
//! ```text
//! IPv4: MAC = AES_K(slot,4)( client addr ‖ server addr ‖ client port ‖ server port ‖ isn ⊕ g )
//! IPv6: MAC = CBC-MAC_K(slot,6)( client addr ‖ server addr ‖ ports ‖ isn ⊕ g ‖ 0⁶⁴ )   (3 blocks)
//! g     = MSS index ‖ option bits ‖ variant ‖ clock   (3 + 6 + 1 + 13 bits, see below)
//! ```
//!
//! (IPv6's three-block CBC-MAC has a fixed length under its own keys, which makes it a PRF.)
//! Folding `g` into the client ISN by XOR keeps IPv4 at one block: two inputs that collide
//! there are two (ISN, options) pairs of the same 4-tuple, and a blind forger still has to
//! guess an unknown MAC output; only someone who already holds a valid cookie could trade its
//! MSS or option claims for others — which the client could have sent in its SYN anyway.
//!
//! Why AES and not SipHash (which this module used before): the untracked-ACK path of a flood
//! computes one MAC per frame. SipHash-2-4 over the 31-byte message took ~24 ns, a quarter of
//! the frame's time. One AES block takes a few nanoseconds on its own, and the batch path
//! ([`super::batch`]) computes the MACs of a whole batch in one call that keeps eight blocks in
//! flight in the AES units ([`SynCookies::mac_many`]).
//!
//! # The 32-bit ISN and the TSval
//!
//! | ISN bits | without timestamps | with timestamps (client sent the TS option) |
//! |---|---|---|
//! | 0 | slot parity (`slot & 1`) | slot parity |
//! | 1..=2 | MSS index (4-entry table) | MSS index (8-entry table), bits 1..=3 |
//! | 3..=31 | top 29 bits of the MAC | bits 4..=31: top 28 bits of the MAC |
//!
//! With timestamps the SYN-ACK's TSval carries, as Linux's `cookie_init_timestamp` does, the
//! options — bits 0..=3 wscale (15 = none), 4 SACK, 5 ECN — and also 13 more MAC bits (bits
//! 6..=18) and a 13-bit clock in seconds (bits 19..=31). The client echoes it in the TSecr of
//! its ACK; the MAC covers the options and the clock, so neither can be altered.
//!
//! **Without timestamps the cookie carries no options but the MSS**, as in Linux: the SYN-ACK
//! then offers neither window scaling nor SACK (nor ECN), and the connection runs without them
//! (windows up to 64 KiB). That is the trade-off that buys 29 MAC bits. Most clients send
//! timestamps (Linux, macOS, iOS, Android); Windows does not by default. A service whose
//! clients need large windows without timestamps should use `syn auto`: cookies (and the
//! trade-off) then apply only while a SYN flood is on.
//!
//! The parity bit tells [`SynCookies::validate`] which slot to recompute the MAC for: the
//! current one when the parity matches, else the previous one. A cookie from two slots ago has
//! the parity of the current slot, is checked against the current slot, and fails: cookies are
//! valid for between one and two slots (`slot_secs` to `2 · slot_secs` seconds).
//!
//! # Fleets: clock skew and secret rotation
//!
//! Boxes behind one ECMP router share the secret, so any box validates any handshake; their
//! clocks differ a little. A cookie whose parity is the *next* slot's, arriving within
//! [`SKEW_SECS`] of that slot's start, is also checked against the next slot (a box whose clock
//! is ahead issued it there), and a TS cookie's clock may be up to [`SKEW_SECS`] in the
//! future. [`SynCookies::rotate`] installs a new secret and keeps the old one for two slots
//! plus the skew, so that handshakes in flight complete. Each of these costs a second MAC only
//! for a cookie the first check refused, and only in those windows; a blind forger's odds are
//! at most doubled there (tripled in the rare overlap of both), and unchanged elsewhere.
//!
//! # MSS tables
//!
//! * With timestamps, eight entries per family: IPv4 ([`MSS_TABLE_V4`]) 536, 1220, 1300, 1380,
//!   1400, 1440, 1460 (Ethernet), 8960 (jumbo); IPv6 ([`MSS_TABLE_V6`]) 1220 (minimum MTU),
//!   1280, 1340, 1380, 1400, 1420, 1440 (Ethernet), 8940 (jumbo).
//! * Without, four — Linux's: IPv4 ([`MSS_TABLE4_V4`]) 536, 1300, 1440, 1460; IPv6
//!   ([`MSS_TABLE4_V6`]) 1220, 1420, 1440, 8940.
//!
//! The encoded value is the largest entry not above the client's MSS, or the smallest entry
//! (the RFC 879 / RFC 8200 defaults) when the client's MSS is smaller or absent.
//!
//! # Forgery odds
//!
//! A blind attacker who does not know the key must guess MAC bits (the parity, MSS and option
//! bits are his to choose, but covered by the MAC):
//!
//! * **without timestamps**: 2⁻²⁹ per try. A segment with data gets one try; a bare ACK two
//!   (the second as a zero-window probe, `seq = ISN`, because the cookie SYN-ACK advertised a
//!   zero window): 2⁻²⁸ per forged bare ACK. Linux's cookies (`__cookie_v4_check`: an 8-bit
//!   counter that must be one of 2 values, a 24-bit hash-plus-MSS value that must decode to
//!   one of 4 MSS indexes) accept a random ACK with probability 2⁻⁷ · 2⁻²² = 2⁻²⁹.
//! * **with timestamps**: 28 + 13 = 41 MAC bits, 2⁻⁴¹ per try, and the clock in the TSecr must
//!   fall within the validity window first (about 2·slot/8192 s of a random TSecr does:
//!   2⁻⁶ for 64-second slots) — below 2⁻⁴⁶ per forged ACK.
//!
//! `scrubber-perf cookies` measures these over 10⁹ random ACKs.
//!
//! # Cost
//!
//! [`SynCookies::issue`] and [`SynCookies::validate`] allocate nothing and compute one AES
//! block (IPv4) or three (IPv6); a TS-variant cookie whose echoed clock is outside the validity
//! window is refused before any ([`CookieReject::Stale`]).

use super::flow::FlowKey;
use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;
use std::path::{Path, PathBuf};

/// MSS values a timestamp-variant cookie can encode for IPv4 (3-bit index).
pub const MSS_TABLE_V4: [u16; 8] = [536, 1220, 1300, 1380, 1400, 1440, 1460, 8960];
/// MSS values a timestamp-variant cookie can encode for IPv6 (3-bit index).
pub const MSS_TABLE_V6: [u16; 8] = [1220, 1280, 1340, 1380, 1400, 1420, 1440, 8940];
/// MSS values a cookie without timestamps can encode for IPv4 (2-bit index; Linux's).
pub const MSS_TABLE4_V4: [u16; 4] = [536, 1300, 1440, 1460];
/// MSS values a cookie without timestamps can encode for IPv6 (2-bit index; Linux's).
pub const MSS_TABLE4_V6: [u16; 4] = [1220, 1420, 1440, 8940];

/// The clock in a TSval: seconds, 13 bits.
const CLOCK_BITS: u32 = 13;
const CLOCK_MASK: u32 = (1 << CLOCK_BITS) - 1;
/// Label of the per-slot key derivation.
const DERIVE_LABEL: &[u8; 7] = b"scrubck";

/// Window-scale code meaning "no window scale option" (in the 4-bit option field).
const WS_CODE_NONE: u8 = 15;
/// Largest window-scale shift (RFC 7323 §2.3: larger values are treated as 14).
const WS_MAX: u8 = 14;
/// How to make a secret file, quoted by errors.
const GEN_HINT: &str = "make one with `scrubber gen-secret > FILE`";

/// The 128-bit secret of the cookie MAC (the AES-128 key the per-slot keys derive from).
///
/// Its `Debug` output does not show the secret.
#[derive(Clone)]
pub struct CookieKey([u8; 16]);

impl core::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CookieKey(<secret>)")
    }
}

impl PartialEq for CookieKey {
    /// Compares without an early exit (the comparison's time does not depend on where the keys
    /// differ).
    fn eq(&self, other: &Self) -> bool {
        self.0.iter().zip(other.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl Eq for CookieKey {}

impl CookieKey {
    /// A key from its 16 bytes.
    pub fn from_bytes(b: [u8; 16]) -> CookieKey {
        CookieKey(b)
    }

    /// The key's 16 bytes.
    pub fn bytes(&self) -> [u8; 16] {
        self.0
    }

    /// Parses a key written as exactly 32 hexadecimal digits (either case). Blank lines, lines
    /// whose first non-blank character is `#`, and whitespace around the digits are ignored;
    /// the digits themselves must be on one line.
    pub fn from_hex(s: &str) -> Result<CookieKey, CookieError> {
        parse_hex(s).map_err(|detail| CookieError::BadHex { path: None, detail })
    }

    /// The key as 32 lowercase hexadecimal digits (the format [`CookieKey::from_hex`] reads,
    /// and `scrubber gen-secret` writes).
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        }
        s
    }

    /// Parses the text of the key file `path` (the [`CookieKey::from_hex`] format); errors
    /// name the file. Reading the file is the caller's business (`control::config`).
    pub fn from_file_text(path: &Path, text: &str) -> Result<CookieKey, CookieError> {
        parse_hex(text).map_err(|detail| CookieError::BadHex { path: Some(path.to_path_buf()), detail })
    }
}

fn parse_hex(s: &str) -> Result<CookieKey, String> {
    let mut digits: Option<&str> = None;
    for (i, line) in s.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if digits.is_some() {
            return Err(format!("line {}: more than one line of key material", i + 1));
        }
        digits = Some(line);
    }
    let Some(d) = digits else {
        return Err("no key found (expected 32 hexadecimal digits)".to_string());
    };
    let count = d.chars().count();
    if count != 32 {
        return Err(format!("expected exactly 32 hexadecimal digits, found {count} characters"));
    }
    let mut out = [0u8; 16];
    let mut nibbles = d.chars().map(|c| c.to_digit(16).map(|v| v as u8).ok_or(c));
    for byte in out.iter_mut() {
        let hi = nibbles.next().unwrap_or(Err('?'));
        let lo = nibbles.next().unwrap_or(Err('?'));
        match (hi, lo) {
            (Ok(h), Ok(l)) => *byte = (h << 4) | l,
            (Err(c), _) | (_, Err(c)) => return Err(format!("{c:?} is not a hexadecimal digit")),
        }
    }
    Ok(CookieKey(out))
}

fn path_prefix(p: &Option<PathBuf>) -> String {
    match p {
        Some(p) => format!("{}: ", p.display()),
        None => String::new(),
    }
}

/// Why a cookie key could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum CookieError {
    /// The key text is not 32 hexadecimal digits.
    #[error("{}bad cookie secret: {detail} ({GEN_HINT})", path_prefix(path))]
    BadHex {
        /// The file, when the text came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        detail: String,
    },
}

/// TCP options of a SYN, as far as a cookie carries them.
///
/// For [`SynCookies::issue`]: what the client's SYN offered — `mss` is the client's MSS option
/// (0 when absent), `wscale` its window-scale shift, `timestamps` whether the SYN-ACK will echo
/// the client's timestamp (the client sent the option and the scrubber answers with one; the
/// options then travel in the TSval), `ecn` whether the SYN had ECE and CWR set. Without
/// timestamps the cookie keeps only the MSS: [`SynOptions::carried`] is what survives.
///
/// From [`SynCookies::validate`]: what the cookie encoded — `mss` the MSS table value,
/// `wscale` in `0..=14` or `None`, `timestamps` whether the options came from the TSecr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SynOptions {
    /// Maximum segment size (0 = option absent, on issue).
    pub mss: u16,
    /// Window-scale shift, `None` when the option is absent. Shifts above 14 are encoded as 14.
    pub wscale: Option<u8>,
    /// SACK-permitted option present.
    pub sack_permitted: bool,
    /// Timestamps in use (the options ride in the TSval).
    pub timestamps: bool,
    /// ECN requested (ECE and CWR on the SYN).
    pub ecn: bool,
}

impl SynOptions {
    /// The options a cookie for these can carry: all of them with timestamps, none but the MSS
    /// without. The SYN-ACK must offer no more than this.
    #[inline]
    pub fn carried(self) -> SynOptions {
        if self.timestamps {
            self
        } else {
            SynOptions { mss: self.mss, ..SynOptions::default() }
        }
    }
}

/// What [`SynCookies::issue`] produced for a SYN-ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The cookie: the SYN-ACK's sequence number.
    pub isn: u32,
    /// The TSval to send, `Some` iff the SYN's options said `timestamps`.
    pub tsval: Option<u32>,
    /// The MSS the cookie encodes (the table entry chosen); at most what the client offered,
    /// unless that is below the table's smallest entry.
    pub mss: u16,
}

/// Why [`SynCookies::validate`] refused a cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieReject {
    /// The MAC does not match: a forged or corrupted cookie, a different 4-tuple or client
    /// ISN, a different key, or a cookie issued two or more slots ago (indistinguishable
    /// without a second MAC).
    BadMac,
    /// Timestamp variant only: the clock in the echoed TSecr is outside the validity window
    /// (two slots), so the cookie cannot be valid; refused without computing the MAC. Forged
    /// ACKs with random TSecr values mostly land here.
    Stale,
}

impl CookieReject {
    /// A short name for counters: `"bad_mac"` or `"stale"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CookieReject::BadMac => "bad_mac",
            CookieReject::Stale => "stale",
        }
    }
}

/// One IPv4 MAC to compute ahead (by the batch path): the slot, which selects the key, and
/// the input block. Built by [`SynCookies::batch_request`]; computed in bulk by
/// [`SynCookies::mac_many`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacRequest {
    slot: u64,
    block: u128,
}

impl MacRequest {
    /// A placeholder (for preallocated arrays).
    pub const EMPTY: MacRequest = MacRequest { slot: u64::MAX, block: 0 };
}

/// IPv4 MACs computed ahead for the frame being judged (by the batch path), consulted by
/// [`SynCookies::validate`] before it computes one.
#[derive(Clone, Copy, Debug)]
pub struct MacMemo {
    /// `u64::MAX`: empty.
    slot: [u64; 2],
    block: [u128; 2],
    mac: [u128; 2],
}

impl MacMemo {
    /// An empty memo.
    pub const EMPTY: MacMemo = MacMemo { slot: [u64::MAX; 2], block: [0; 2], mac: [0; 2] };

    /// Remember `mac` for `req` in place `i` (0 or 1).
    #[inline]
    pub fn set(&mut self, i: usize, req: MacRequest, mac: u128) {
        let i = i & 1;
        self.slot[i] = req.slot;
        self.block[i] = req.block;
        self.mac[i] = mac;
    }

    #[inline(always)]
    fn get(&self, slot: u64, block: u128) -> Option<u128> {
        for i in 0..2 {
            if self.slot[i] == slot && self.block[i] == block {
                return Some(self.mac[i]);
            }
        }
        None
    }
}

/// The expanded keys of one slot.
#[derive(Clone)]
struct SlotKeys {
    slot: u64,
    v4: Aes128,
    v6: Aes128,
}

/// The secret a rotation replaced, valid until `until_ns`.
#[derive(Clone)]
struct Previous {
    root: Aes128,
    keys: [SlotKeys; 2],
    until_ns: u64,
}

/// Clock difference between boxes sharing a secret that their cookies tolerate, in seconds:
/// a cookie issued by a box whose clock is up to this much ahead validates (see
/// [`SynCookies::validate`]).
pub const SKEW_SECS: u32 = 5;

/// Issues and validates SYN cookies. One per worker (it caches the per-slot keys).
#[derive(Clone)]
pub struct SynCookies {
    root: Aes128,
    slot_ns: u64,
    /// Largest age (seconds, modulo 2¹³) of a valid TS cookie's clock, or `u32::MAX` when
    /// the window is too large for a 13-bit clock (no stale check).
    stale_s: u32,
    /// Keys of the slots with parity 0 and 1.
    keys: [SlotKeys; 2],
    /// Keys of the next slot, for cookies of a box whose clock is ahead (kept apart so that
    /// they never evict the previous slot's).
    ahead: SlotKeys,
    /// The secret (to tell a rotation from a reload of the same key).
    secret: [u8; 16],
    /// The secret before the last rotation, while cookies issued under it may still arrive.
    prev: Option<Box<Previous>>,
    /// Clock difference tolerated between boxes that share the secret, in ns.
    skew_ns: u64,
    /// MACs the batch path computed for the frame being judged.
    memo: MacMemo,
    /// Blocks of [`SynCookies::mac_many`].
    blocks: Box<[aes::Block; MANY]>,
}

/// Most MACs [`SynCookies::mac_many`] computes in one call.
pub const MANY: usize = 128;

impl core::fmt::Debug for SynCookies {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SynCookies")
            .field("key", &"<secret>")
            .field("slot_secs", &(self.slot_ns / 1_000_000_000))
            .finish()
    }
}

/// Option bits of a [`SynOptions`]: bits 0..=3 wscale (15 = none), bit 4 SACK, bit 5 ECN.
#[inline]
fn opt_bits(o: &SynOptions) -> u8 {
    let ws = match o.wscale {
        Some(w) => w.min(WS_MAX),
        None => WS_CODE_NONE,
    };
    ws | (u8::from(o.sack_permitted) << 4) | (u8::from(o.ecn) << 5)
}

/// The MSS table of a family and variant.
#[inline]
fn mss_table(v6: bool, ts: bool) -> &'static [u16] {
    match (v6, ts) {
        (false, true) => &MSS_TABLE_V4,
        (true, true) => &MSS_TABLE_V6,
        (false, false) => &MSS_TABLE4_V4,
        (true, false) => &MSS_TABLE4_V6,
    }
}

/// Index of the largest entry `<= mss`, or 0.
#[inline]
fn mss_index(table: &[u16], mss: u16) -> u8 {
    let mut idx = 0u8;
    for (i, &m) in table.iter().enumerate() {
        if m <= mss {
            idx = i as u8;
        }
    }
    idx
}

/// The 23 bits folded into the ISN word of the MAC input.
#[inline]
fn fold(idx: u8, opts: u8, ts: bool, clock: u32) -> u32 {
    u32::from(idx & 7) | u32::from(opts & 0x3f) << 3 | u32::from(ts) << 9 | (clock & CLOCK_MASK) << 10
}

#[inline]
fn encrypt(k: &Aes128, x: u128) -> u128 {
    let mut b = GenericArray::from(x.to_be_bytes());
    k.encrypt_block(&mut b);
    u128::from_be_bytes(b.into())
}

fn derive(root: &Aes128, slot: u64, family: u8) -> Aes128 {
    let mut m = [0u8; 16];
    m[..7].copy_from_slice(DERIVE_LABEL);
    m[7] = family;
    m[8..].copy_from_slice(&slot.to_be_bytes());
    let k = encrypt(root, u128::from_be_bytes(m));
    Aes128::new(&GenericArray::from(k.to_be_bytes()))
}

/// The MAC over `x = isn ⊕ g` for `flow` under the keys `k` (no memo).
fn mac_under(k: &SlotKeys, flow: &FlowKey, x: u32) -> u128 {
    if flow.v6 {
        let ports = u128::from(flow.client_port) << 112 | u128::from(flow.server_port) << 96;
        let a = encrypt(&k.v6, u128::from_be_bytes(flow.client_ip));
        let b = encrypt(&k.v6, a ^ u128::from_be_bytes(flow.server_ip));
        encrypt(&k.v6, b ^ ports ^ u128::from(x) << 64)
    } else {
        encrypt(&k.v4, SynCookies::block4(flow, x))
    }
}

fn slot_keys(root: &Aes128, slot: u64) -> SlotKeys {
    SlotKeys { slot, v4: derive(root, slot, 4), v6: derive(root, slot, 6) }
}

impl SynCookies {
    /// Cookies under `key`, with time slots of `slot_secs` seconds (clamped to at least 1).
    /// A cookie validates during the slot it was issued in and the next one.
    pub fn new(key: CookieKey, slot_secs: u32) -> SynCookies {
        let slot_secs = slot_secs.max(1);
        let window = 2 * u64::from(slot_secs) + 1 + u64::from(SKEW_SECS);
        let stale_s = if window < u64::from(CLOCK_MASK / 2) { window as u32 } else { u32::MAX };
        let root = Aes128::new(&GenericArray::from(key.0));
        let keys = [slot_keys(&root, 0), slot_keys(&root, 1)];
        let ahead = slot_keys(&root, u64::MAX);
        SynCookies {
            root,
            slot_ns: u64::from(slot_secs) * 1_000_000_000,
            stale_s,
            ahead,
            keys,
            secret: key.0,
            prev: None,
            skew_ns: u64::from(SKEW_SECS) * 1_000_000_000,
            memo: MacMemo::EMPTY,
            blocks: Box::new([aes::Block::default(); MANY]),
        }
    }

    /// The slot length in seconds.
    pub fn slot_secs(&self) -> u32 {
        (self.slot_ns / 1_000_000_000) as u32
    }

    /// Rotate to the secret `key` at `now_ns`: cookies are issued under it from now on, and
    /// those issued under the secret it replaces keep validating for two slots (plus the
    /// tolerated skew), so that handshakes in flight survive the change. The same key again
    /// changes nothing. Returns whether the secret changed.
    pub fn rotate(&mut self, key: CookieKey, now_ns: u64) -> bool {
        if key.0 == self.secret {
            return false;
        }
        let root = Aes128::new(&GenericArray::from(key.0));
        let keys = [slot_keys(&root, 0), slot_keys(&root, 1)];
        self.ahead = slot_keys(&root, u64::MAX);
        let old_root = core::mem::replace(&mut self.root, root);
        let old_keys = core::mem::replace(&mut self.keys, keys);
        self.prev = Some(Box::new(Previous {
            root: old_root,
            keys: old_keys,
            until_ns: now_ns.saturating_add(2 * self.slot_ns + self.skew_ns),
        }));
        self.secret = key.0;
        self.memo = MacMemo::EMPTY;
        true
    }

    /// Whether a secret replaced by [`SynCookies::rotate`] is still accepted at `now_ns`.
    pub fn previous_active(&self, now_ns: u64) -> bool {
        self.prev.as_ref().is_some_and(|p| now_ns < p.until_ns)
    }

    /// The slot after the current one, when `now_ns` is within the tolerated skew of its start
    /// and `cookie` has its parity: a box whose clock is ahead may have issued it there.
    #[inline]
    fn ahead_slot(&self, now_ns: u64, cookie: u32) -> Option<u64> {
        let next = now_ns / self.slot_ns + 1;
        (u64::from(cookie & 1) == next & 1 && next * self.slot_ns - now_ns <= self.skew_ns).then_some(next)
    }

    /// The expanded keys of `slot` (derived now if the cache holds another slot of its parity).
    #[inline]
    fn keys(&mut self, slot: u64) -> &SlotKeys {
        let i = (slot & 1) as usize;
        if self.keys[i].slot != slot {
            self.keys[i] = slot_keys(&self.root, slot);
        }
        &self.keys[i]
    }

    /// The IPv4 input block.
    #[inline(always)]
    fn block4(flow: &FlowKey, x: u32) -> u128 {
        let c = u32::from_be_bytes([flow.client_ip[0], flow.client_ip[1], flow.client_ip[2], flow.client_ip[3]]);
        let s = u32::from_be_bytes([flow.server_ip[0], flow.server_ip[1], flow.server_ip[2], flow.server_ip[3]]);
        u128::from(c) << 96
            | u128::from(s) << 64
            | u128::from(flow.client_port) << 48
            | u128::from(flow.server_port) << 32
            | u128::from(x)
    }

    /// The MAC for `flow` in `slot` over `isn ⊕ g` (see the module docs): the memo's, else
    /// computed now.
    #[inline(always)]
    fn mac(&mut self, flow: &FlowKey, slot: u64, isn: u32, g: u32) -> u128 {
        let x = isn ^ g;
        if flow.v6 {
            let k = &self.keys(slot).v6;
            let ports = u128::from(flow.client_port) << 112 | u128::from(flow.server_port) << 96;
            let a = encrypt(k, u128::from_be_bytes(flow.client_ip));
            let b = encrypt(k, a ^ u128::from_be_bytes(flow.server_ip));
            encrypt(k, b ^ ports ^ u128::from(x) << 64)
        } else {
            let block = Self::block4(flow, x);
            match self.memo.get(slot, block) {
                Some(m) => m,
                None => encrypt(&self.keys(slot).v4, block),
            }
        }
    }

    /// Compute the MACs of many IPv4 requests at once (`out[i]` for `reqs[i]`, at most
    /// [`MANY`]): the blocks of each slot's key go to the AES units together, eight in flight.
    /// The results are those [`SynCookies::validate`] would compute.
    pub fn mac_many(&mut self, reqs: &[MacRequest], out: &mut [u128]) {
        let n = reqs.len().min(out.len()).min(MANY);
        // In practice every request of a batch has the same slot: encrypt those together.
        let Some(slot) = reqs[..n].iter().map(|r| r.slot).find(|&s| s != u64::MAX) else { return };
        self.keys(slot);
        let mut m = 0;
        for r in reqs[..n].iter().filter(|r| r.slot == slot) {
            self.blocks[m] = aes::Block::from(r.block.to_be_bytes());
            m += 1;
        }
        self.keys[(slot & 1) as usize].v4.encrypt_blocks(&mut self.blocks[..m]);
        let mut j = 0;
        for (r, o) in reqs[..n].iter().zip(out.iter_mut()) {
            if r.slot == slot {
                *o = u128::from_be_bytes(self.blocks[j].into());
                j += 1;
            } else if r.slot != u64::MAX {
                // A batch straddling a slot boundary: the others one by one.
                *o = encrypt(&self.keys(r.slot).v4, r.block);
            }
        }
    }

    /// Use `memo` (MACs computed ahead for the frame about to be judged) until the next call.
    #[inline]
    pub fn set_memo(&mut self, memo: MacMemo) {
        self.memo = memo;
    }

    /// The cookie for a SYN from `flow` with sequence number `client_isn` and options `syn`,
    /// at `now_ns` (nanoseconds since the UNIX epoch). Without timestamps only the MSS is
    /// encoded (see [`SynOptions::carried`]). Allocation-free; one AES block (three for IPv6).
    #[inline]
    pub fn issue(&mut self, now_ns: u64, flow: &FlowKey, client_isn: u32, syn: &SynOptions) -> Issued {
        let slot = now_ns / self.slot_ns;
        let table = mss_table(flow.v6, syn.timestamps);
        let idx = mss_index(table, syn.mss);
        let mss = table[usize::from(idx) % table.len()];
        if syn.timestamps {
            let opts = opt_bits(syn);
            let clock = ((now_ns / 1_000_000_000) as u32) & CLOCK_MASK;
            let mac = self.mac(flow, slot, client_isn, fold(idx, opts, true, clock));
            let isn = (slot & 1) as u32 | u32::from(idx) << 1 | ((mac >> 100) as u32) << 4;
            let tsval = clock << 19 | (((mac >> 87) as u32) & 0x1fff) << 6 | u32::from(opts);
            Issued { isn, tsval: Some(tsval), mss }
        } else {
            let mac = self.mac(flow, slot, client_isn, fold(idx, 0, false, 0));
            let isn = (slot & 1) as u32 | u32::from(idx) << 1 | ((mac >> 99) as u32) << 3;
            Issued { isn, tsval: None, mss }
        }
    }

    /// The slot and the folded bits a cookie claims, or the refusal [`SynCookies::validate`]
    /// gives without computing a MAC (wrong slot, stale clock).
    #[inline(always)]
    fn decode(&self, now_ns: u64, cookie: u32, tsecr: Option<u32>) -> Result<(u64, u32), CookieReject> {
        let cur = now_ns / self.slot_ns;
        let slot =
            if u64::from(cookie & 1) == cur & 1 { cur } else { cur.checked_sub(1).ok_or(CookieReject::BadMac)? };
        match tsecr {
            Some(ecr) => {
                let clock = ecr >> 19;
                if self.stale_s != u32::MAX {
                    let now_s = ((now_ns / 1_000_000_000) as u32) & CLOCK_MASK;
                    let age = now_s.wrapping_sub(clock) & CLOCK_MASK;
                    // A clock a little ahead (another box's) wraps to just below 2¹³.
                    if age > self.stale_s && age < CLOCK_MASK + 1 - SKEW_SECS {
                        return Err(CookieReject::Stale);
                    }
                }
                Ok((slot, fold(((cookie >> 1) & 7) as u8, (ecr & 0x3f) as u8, true, clock)))
            }
            None => Ok((slot, fold(((cookie >> 1) & 3) as u8, 0, false, 0))),
        }
    }

    /// The IPv4 MAC [`SynCookies::validate`] would compute for these arguments, to compute
    /// ahead with [`SynCookies::mac_many`]; `None` for IPv6 and for cookies refused without one.
    #[inline]
    pub fn batch_request(
        &self,
        now_ns: u64,
        flow: &FlowKey,
        client_isn: u32,
        cookie: u32,
        tsecr: Option<u32>,
    ) -> Option<MacRequest> {
        if flow.v6 {
            return None;
        }
        let (slot, g) = self.decode(now_ns, cookie, tsecr).ok()?;
        Some(MacRequest { slot, block: Self::block4(flow, client_isn ^ g) })
    }

    /// Checks `cookie` (the ACK's `ack - 1`) for `flow` and `client_isn` (the ACK's `seq - 1`)
    /// at `now_ns`. `tsecr` is the TSecr of the ACK's timestamp option when it has one; the
    /// cookie is then checked as a timestamp-variant cookie. Returns the options the cookie
    /// encodes. Allocation-free; at most one AES block (three for IPv6).
    #[inline]
    pub fn validate(
        &mut self,
        now_ns: u64,
        flow: &FlowKey,
        client_isn: u32,
        cookie: u32,
        tsecr: Option<u32>,
    ) -> Result<SynOptions, CookieReject> {
        let (slot, g) = self.decode(now_ns, cookie, tsecr)?;
        let mac = self.mac(flow, slot, client_isn, g);
        let first = Self::verify(flow, mac, cookie, tsecr);
        if first.is_ok() {
            return first;
        }
        // Rare paths, each one more MAC: a cookie from a box whose clock is ahead (issued in
        // our next slot, near its start), and cookies under the secret a rotation replaced.
        let ahead = self.ahead_slot(now_ns, cookie);
        if let Some(next) = ahead {
            if self.ahead.slot != next {
                self.ahead = slot_keys(&self.root, next);
            }
            let r = Self::verify(flow, mac_under(&self.ahead, flow, client_isn ^ g), cookie, tsecr);
            if r.is_ok() {
                return r;
            }
        }
        if self.previous_active(now_ns) {
            for sl in [Some(slot), ahead].into_iter().flatten() {
                let Some(p) = self.prev.as_mut() else { break };
                let i = (sl & 1) as usize;
                if p.keys[i].slot != sl {
                    p.keys[i] = slot_keys(&p.root, sl);
                }
                let r = Self::verify(flow, mac_under(&p.keys[i], flow, client_isn ^ g), cookie, tsecr);
                if r.is_ok() {
                    return r;
                }
            }
        }
        first
    }

    /// Whether `mac` is the MAC `cookie` (and the TSecr's MAC bits) carry; the options then.
    #[inline(always)]
    fn verify(flow: &FlowKey, mac: u128, cookie: u32, tsecr: Option<u32>) -> Result<SynOptions, CookieReject> {
        match tsecr {
            Some(ecr) => {
                if cookie >> 4 != (mac >> 100) as u32 || (ecr >> 6) & 0x1fff != ((mac >> 87) as u32) & 0x1fff {
                    return Err(CookieReject::BadMac);
                }
                let idx = ((cookie >> 1) & 7) as usize;
                let opts = (ecr & 0x3f) as u8;
                // 4 bits: 0..=14 are shifts, 15 means "none"; no invalid value remains.
                let ws = opts & 15;
                Ok(SynOptions {
                    mss: mss_table(flow.v6, true)[idx],
                    wscale: if ws == WS_CODE_NONE { None } else { Some(ws) },
                    sack_permitted: opts & 0x10 != 0,
                    timestamps: true,
                    ecn: opts & 0x20 != 0,
                })
            }
            None => {
                if cookie >> 3 != (mac >> 99) as u32 {
                    return Err(CookieReject::BadMac);
                }
                let idx = ((cookie >> 1) & 3) as usize;
                Ok(SynOptions { mss: mss_table(flow.v6, false)[idx], ..SynOptions::default() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_760_000_000_123_456_789;
    const SLOT: u32 = 60;
    const SLOT_NS: u64 = SLOT as u64 * 1_000_000_000;

    fn cookies() -> SynCookies {
        SynCookies::new(CookieKey::from_bytes(*b"0123456789abcdef"), SLOT)
    }

    fn v4() -> FlowKey {
        FlowKey::v4([198, 18, 0, 1], 40000, [198, 18, 0, 10], 443)
    }

    fn v6() -> FlowKey {
        let mut c = [0u8; 16];
        c[..4].copy_from_slice(&[0x20, 0x01, 0, 2]);
        c[15] = 1;
        let mut s = c;
        s[15] = 10;
        FlowKey::v6(c, 40000, s, 443)
    }

    fn combos() -> Vec<SynOptions> {
        let mut v = Vec::new();
        for ws in [None, Some(0), Some(7), Some(14)] {
            for sack in [false, true] {
                for ecn in [false, true] {
                    for ts in [false, true] {
                        v.push(SynOptions { mss: 1460, wscale: ws, sack_permitted: sack, timestamps: ts, ecn });
                    }
                }
            }
        }
        v
    }

    fn round_trip(c: &mut SynCookies, flow: &FlowKey, syn: &SynOptions, at: u64) -> Result<SynOptions, CookieReject> {
        let isn = 0x1234_5678;
        let out = c.issue(NOW, flow, isn, syn);
        assert_eq!(out.tsval.is_some(), syn.timestamps);
        c.validate(at, flow, isn, out.isn, out.tsval)
    }

    #[test]
    fn round_trip_all_options_v4_v6() {
        let mut c = cookies();
        for flow in [v4(), v6()] {
            for syn in combos() {
                let got = round_trip(&mut c, &flow, &syn, NOW).unwrap();
                // With timestamps every option comes back; without, none but the MSS.
                let want = syn.carried();
                assert_eq!(got.wscale, want.wscale);
                assert_eq!(got.sack_permitted, want.sack_permitted);
                assert_eq!(got.ecn, want.ecn);
                assert_eq!(got.timestamps, syn.timestamps);
                if !syn.timestamps {
                    assert_eq!((got.wscale, got.sack_permitted, got.ecn), (None, false, false));
                }
                assert_eq!(got.mss, if flow.v6 { 1440 } else { 1460 });
            }
        }
    }

    #[test]
    fn every_mss_table_entry_round_trips() {
        let mut c = cookies();
        for flow in [v4(), v6()] {
            for ts in [false, true] {
                let table = mss_table(flow.v6, ts);
                for (i, &m) in table.iter().enumerate() {
                    // Exactly the entry, and one above it (rounds down to it).
                    for offered in [m, m.saturating_add(1)] {
                        if i + 1 < table.len() && offered >= table[i + 1] {
                            continue;
                        }
                        let syn = SynOptions { mss: offered, timestamps: ts, ..Default::default() };
                        let issued = c.issue(NOW, &flow, 7, &syn);
                        assert_eq!(issued.mss, m);
                        let got = c.validate(NOW, &flow, 7, issued.isn, issued.tsval).unwrap();
                        assert_eq!(got.mss, m);
                    }
                }
                // Absent and tiny MSS: the smallest entry.
                for offered in [0, 100] {
                    let syn = SynOptions { mss: offered, timestamps: ts, ..Default::default() };
                    let issued = c.issue(NOW, &flow, 7, &syn);
                    assert_eq!(issued.mss, table[0]);
                    assert_eq!(c.validate(NOW, &flow, 7, issued.isn, issued.tsval).unwrap().mss, table[0]);
                }
                let syn = SynOptions { mss: u16::MAX, timestamps: ts, ..Default::default() };
                assert_eq!(c.issue(NOW, &flow, 7, &syn).mss, table[table.len() - 1]);
            }
        }
        assert_eq!(mss_table(false, true)[0], 536);
        assert_eq!(mss_table(true, true)[0], 1220);
        assert_eq!(mss_table(false, false), &[536, 1300, 1440, 1460], "Linux's");
    }

    #[test]
    fn large_wscale_is_clamped_to_14() {
        let mut c = cookies();
        let syn = SynOptions { mss: 1460, wscale: Some(200), timestamps: true, ..Default::default() };
        assert_eq!(round_trip(&mut c, &v4(), &syn, NOW).unwrap().wscale, Some(14));
    }

    #[test]
    fn tsval_carries_clock_mac_and_options() {
        let mut c = cookies();
        let syn = SynOptions { mss: 1460, wscale: Some(7), sack_permitted: true, timestamps: true, ecn: false };
        let out = c.issue(NOW, &v4(), 1, &syn);
        let ts = out.tsval.unwrap();
        assert_eq!(ts & 0x3f, 7 | 0x10);
        assert_eq!(ts >> 19, ((NOW / 1_000_000_000) as u32) & 0x1fff, "13-bit seconds clock on top");
        // The 13 MAC bits of the TSval are checked: each flipped bit is refused.
        for bit in 6..19 {
            assert_eq!(c.validate(NOW, &v4(), 1, out.isn, Some(ts ^ (1 << bit))), Err(CookieReject::BadMac));
        }
    }

    #[test]
    fn next_slot_validates_two_slots_later_expires() {
        let mut c = cookies();
        let start = NOW - NOW % SLOT_NS; // start of a slot
        for ts in [false, true] {
            let syn = SynOptions { mss: 1460, wscale: Some(7), sack_permitted: true, timestamps: ts, ecn: false };
            for issue_at in [start, start + SLOT_NS - 1] {
                let out = c.issue(issue_at, &v4(), 99, &syn);
                for at in [issue_at, start + SLOT_NS, start + 2 * SLOT_NS - 1] {
                    assert!(c.validate(at, &v4(), 99, out.isn, out.tsval).is_ok(), "ts={ts} at={at}");
                }
                for at in [start + 2 * SLOT_NS, start + 3 * SLOT_NS + 5, start + 10 * SLOT_NS] {
                    assert!(c.validate(at, &v4(), 99, out.isn, out.tsval).is_err(), "ts={ts} at={at}");
                }
                // Before it was issued (previous slot): accepted within the tolerated clock
                // skew of the slot's start (another box's clock may be ahead), refused before.
                let early = start - u64::from(SKEW_SECS) * 1_000_000_000 - 1;
                assert!(c.validate(early, &v4(), 99, out.isn, out.tsval).is_err());
                if issue_at == start {
                    assert!(c.validate(start - 1, &v4(), 99, out.isn, out.tsval).is_ok());
                }
            }
        }
        // The ISN variant cannot tell expiry from forgery.
        let syn = SynOptions::default();
        let out = c.issue(start, &v4(), 99, &syn);
        assert_eq!(c.validate(start + 2 * SLOT_NS, &v4(), 99, out.isn, None), Err(CookieReject::BadMac));
        // The TS variant sees the stale clock.
        let syn = SynOptions { timestamps: true, ..Default::default() };
        let out = c.issue(start, &v4(), 99, &syn);
        assert_eq!(c.validate(start + 3 * SLOT_NS, &v4(), 99, out.isn, out.tsval), Err(CookieReject::Stale));
    }

    #[test]
    fn slot_zero_and_clamped_slot_length() {
        let mut c = SynCookies::new(CookieKey::from_bytes([1; 16]), 0);
        assert_eq!(c.slot_secs(), 1);
        let out = c.issue(0, &v4(), 5, &SynOptions::default());
        assert!(c.validate(0, &v4(), 5, out.isn, None).is_ok());
        // A cookie claiming the slot before slot 0.
        assert_eq!(c.validate(0, &v4(), 5, out.isn ^ 1, None), Err(CookieReject::BadMac));
        let mut big = SynCookies::new(CookieKey::from_bytes([1; 16]), u32::MAX);
        let out = big.issue(NOW, &v6(), 5, &SynOptions { timestamps: true, ..Default::default() });
        assert!(big.validate(NOW, &v6(), 5, out.isn, out.tsval).is_ok());
        assert!(big.validate(u64::MAX, &v6(), 5, out.isn, Some(0)).is_err());
    }

    /// Small deterministic generator for the tests (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn random_forgeries_rejected() {
        let mut c = cookies();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        let clock = ((NOW / 1_000_000_000) as u32 & 0x1fff) << 19;
        for i in 0..10_000 {
            let flow = if i % 2 == 0 { v4() } else { v6() };
            let r = rng.next();
            // Half of the TS forgeries carry a current clock (they reach the MAC check).
            let tsecr = if i % 4 < 2 { None } else { Some(clock | (r >> 32) as u32 & 0x7ffff) };
            if c.validate(NOW, &flow, 1000, r as u32, tsecr).is_ok() {
                accepted += 1;
            }
        }
        assert!(accepted < 3, "{accepted} forgeries accepted");
    }

    #[test]
    fn bit_flips_and_neighbours_rejected() {
        let mut c = cookies();
        for flow in [v4(), v6()] {
            for syn in combos() {
                let out = c.issue(NOW, &flow, 42, &syn);
                for bit in 0..32 {
                    assert!(c.validate(NOW, &flow, 42, out.isn ^ (1 << bit), out.tsval).is_err(), "bit {bit}");
                }
                for cookie in [out.isn.wrapping_add(1), out.isn.wrapping_sub(1)] {
                    assert!(c.validate(NOW, &flow, 42, cookie, out.tsval).is_err());
                }
                if let Some(ts) = out.tsval {
                    for bit in 0..32 {
                        assert!(c.validate(NOW, &flow, 42, out.isn, Some(ts ^ (1 << bit))).is_err(), "TSval bit {bit}");
                    }
                    // TS cookie validated as an ISN cookie (ACK without the TS option).
                    assert!(c.validate(NOW, &flow, 42, out.isn, None).is_err());
                } else {
                    // ISN cookie validated with a made-up TSecr.
                    let ecr = Some(((NOW / 1_000_000_000) as u32 & 0x1fff) << 19 | (out.isn >> 4) & 0x3f);
                    assert!(c.validate(NOW, &flow, 42, out.isn, ecr).is_err());
                }
            }
        }
    }

    #[test]
    fn wrong_tuple_isn_or_key_rejected() {
        let mut c = cookies();
        for ts in [false, true] {
            let syn = SynOptions { mss: 1400, wscale: Some(8), sack_permitted: true, timestamps: ts, ecn: true };
            for base in [v4(), v6()] {
                let out = c.issue(NOW, &base, 42, &syn);
                assert!(c.validate(NOW, &base, 42, out.isn, out.tsval).is_ok());
                let mut variants = Vec::new();
                let mut k = base;
                k.client_ip[3] ^= 1;
                variants.push(k);
                let mut k = base;
                k.server_ip[3] ^= 1;
                variants.push(k);
                let mut k = base;
                k.client_port ^= 1;
                variants.push(k);
                let mut k = base;
                k.server_port ^= 1;
                variants.push(k);
                let mut k = base;
                k.v6 = !k.v6;
                variants.push(k);
                let mut k = base;
                core::mem::swap(&mut k.client_port, &mut k.server_port);
                variants.push(k);
                for k in variants {
                    assert!(c.validate(NOW, &k, 42, out.isn, out.tsval).is_err(), "{k:?}");
                }
                assert!(c.validate(NOW, &base, 43, out.isn, out.tsval).is_err());
                assert!(c.validate(NOW, &base, 41, out.isn, out.tsval).is_err());
                let mut other = SynCookies::new(CookieKey::from_bytes(*b"0123456789abcdeF"), SLOT);
                assert!(other.validate(NOW, &base, 42, out.isn, out.tsval).is_err());
                // Same key, another instance: accepted (boxes sharing the secret).
                let mut twin = SynCookies::new(CookieKey::from_bytes(*b"0123456789abcdef"), SLOT);
                assert!(twin.validate(NOW, &base, 42, out.isn, out.tsval).is_ok());
            }
        }
    }

    #[test]
    fn mac_many_equals_one_by_one_and_memo_is_exact() {
        let mut c = cookies();
        let mut rng = Rng(7);
        let start = NOW - NOW % SLOT_NS;
        // Requests around a slot boundary (two slots in one call) and forged ones.
        let mut reqs = Vec::new();
        let mut args = Vec::new();
        for i in 0..100u64 {
            let now = if i % 3 == 0 { start - 1 } else { start + i };
            let r = rng.next();
            let mut flow = v4();
            flow.client_port = r as u16;
            let tsecr =
                (i % 2 == 0).then_some((((now / 1_000_000_000) as u32 & 0x1fff) << 19) | (r >> 40) as u32 & 0x7ffff);
            let (isn, cookie) = ((r >> 16) as u32, (r >> 24) as u32);
            if let Some(q) = c.batch_request(start + 5, &flow, isn, cookie, tsecr) {
                reqs.push(q);
                args.push((flow, isn, cookie, tsecr));
            }
            let _ = now;
        }
        assert!(reqs.len() > 40);
        assert!(reqs.iter().any(|r| r.slot != reqs[0].slot), "both parities present");
        let mut out = vec![0u128; reqs.len()];
        c.mac_many(&reqs, &mut out);
        for (r, m) in reqs.iter().zip(&out) {
            assert_eq!(*m, encrypt(&c.keys(r.slot).v4.clone(), r.block));
        }
        // A memo answers exactly its own request: a wrong MAC in the memo makes that cookie
        // fail, and is not used for any other.
        let syn = SynOptions { mss: 1460, timestamps: true, ..Default::default() };
        let out = c.issue(NOW, &v4(), 9, &syn);
        let r = c.batch_request(NOW, &v4(), 9, out.isn, out.tsval).unwrap();
        let mut memo = MacMemo::EMPTY;
        memo.set(0, r, 12345);
        c.set_memo(memo);
        assert_eq!(c.validate(NOW, &v4(), 9, out.isn, out.tsval), Err(CookieReject::BadMac));
        let other = c.issue(NOW, &v4(), 10, &syn);
        assert!(c.validate(NOW, &v4(), 10, other.isn, other.tsval).is_ok());
        c.set_memo(MacMemo::EMPTY);
        assert!(c.validate(NOW, &v4(), 9, out.isn, out.tsval).is_ok());
        // IPv6 is never batched.
        assert!(c.batch_request(NOW, &v6(), 9, out.isn, out.tsval).is_none());
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let k = CookieKey::from_bytes(*b"\x8a\x01random-ish\xffkey");
        assert_eq!(CookieKey::from_hex(&k.to_hex()).unwrap(), k);
        assert_eq!(k.to_hex().len(), 32);
        let text = format!("# cookie secret\n\n  {}  \n# end\n", k.to_hex().to_uppercase());
        assert_eq!(CookieKey::from_hex(&text).unwrap().bytes(), k.bytes());
        let k2 = CookieKey::from_hex("000102030405060708090a0b0c0d0e0f").unwrap();
        assert_eq!(k2.bytes(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        for bad in [
            "",
            "# only a comment\n",
            "000102030405060708090a0b0c0d0e0",
            "000102030405060708090a0b0c0d0e0f0",
            "000102030405060708090a0b0c0d0e0g",
            "00010203040506070809 0a0b0c0d0e0f",
            "0001020304050607\n08090a0b0c0d0e0f",
            "000102030405060708090a0b0c0d0eé",
        ] {
            let e = CookieKey::from_hex(bad).unwrap_err();
            assert!(matches!(e, CookieError::BadHex { path: None, .. }), "{bad:?}");
            assert!(e.to_string().contains("scrubber gen-secret"), "{e}");
        }
        assert_eq!(format!("{k:?}"), "CookieKey(<secret>)");
        assert!(!format!("{:?}", SynCookies::new(k.clone(), 1)).contains(&k.to_hex()));
    }

    /// Rough cost per call; prints, asserts nothing about time. Run with
    /// `cargo test --release -p scrubber --lib cookie::tests::bench -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_issue_validate() {
        let mut c = cookies();
        let n = 2_000_000u32;
        for (name, flow) in [("v4", v4()), ("v6", v6())] {
            for ts in [false, true] {
                let syn = SynOptions { mss: 1460, wscale: Some(7), sack_permitted: true, timestamps: ts, ecn: false };
                let t0 = std::time::Instant::now();
                let mut acc = 0u32;
                for i in 0..n {
                    acc ^= c.issue(NOW + u64::from(i), &flow, i, &syn).isn;
                }
                let issue = t0.elapsed().as_nanos() as f64 / f64::from(n);
                let out = c.issue(NOW, &flow, 1, &syn);
                let t0 = std::time::Instant::now();
                let mut ok = 0u32;
                for i in 0..n {
                    ok += u32::from(c.validate(NOW + u64::from(i), &flow, 1, out.isn ^ (i & 1), out.tsval).is_ok());
                }
                let validate = t0.elapsed().as_nanos() as f64 / f64::from(n);
                std::hint::black_box(acc);
                eprintln!("{name} ts={ts}: issue {issue:.1} ns, validate {validate:.1} ns ({ok} ok)");
            }
        }
    }

    /// Two boxes sharing the secret, the validating one's clock `skew_s` seconds off the
    /// issuing one's, at every second of a slot (both variants, both families).
    #[test]
    fn boxes_with_clocks_a_few_seconds_apart_validate_each_others_cookies() {
        let (mut a, mut b) = (cookies(), cookies());
        let base = (NOW / SLOT_NS) * SLOT_NS; // a slot boundary
        for flow in [v4(), v6()] {
            for ts in [false, true] {
                let syn = SynOptions { mss: 1460, timestamps: ts, ..SynOptions::default() };
                for at in (0..2 * u64::from(SLOT)).map(|s| base + s * 1_000_000_000 + 123_456) {
                    let c = a.issue(at, &flow, 77, &syn);
                    for skew in -i64::from(SKEW_SECS)..=i64::from(SKEW_SECS) {
                        // The ACK arrives 200 ms later, at the other box.
                        let there = at.checked_add_signed(skew * 1_000_000_000 + 200_000_000).unwrap();
                        let r = b.validate(there, &flow, 77, c.isn, c.tsval);
                        assert!(
                            r.is_ok(),
                            "v6 {} ts {ts} at +{}s skew {skew}s: {r:?}",
                            flow.v6,
                            (at - base) / 1_000_000_000
                        );
                    }
                }
            }
        }
        // Beyond the tolerance, a cookie issued just after a boundary by a box 30 s ahead is
        // refused by one still before the boundary (its previous slot is two slots back).
        let syn = SynOptions { mss: 1460, ..SynOptions::default() };
        let at = base + 1_000_000_000;
        let c = a.issue(at, &v4(), 77, &syn);
        assert_eq!(b.validate(at - 30_000_000_000, &v4(), 77, c.isn, None), Err(CookieReject::BadMac));
        assert!(b.validate(at - 4_000_000_000, &v4(), 77, c.isn, None).is_ok());
    }

    #[test]
    fn rotation_keeps_handshakes_in_flight_for_two_slots() {
        let mut c = cookies();
        let syn = SynOptions { mss: 1460, timestamps: true, wscale: Some(7), ..SynOptions::default() };
        let before = c.issue(NOW, &v4(), 5, &syn);
        let old_v6 = c.issue(NOW, &v6(), 5, &syn);
        let t = NOW + 1_000_000_000;
        assert!(!c.rotate(CookieKey::from_bytes(*b"0123456789abcdef"), t), "the same secret is no rotation");
        assert!(c.rotate(CookieKey::from_bytes(*b"fedcba9876543210"), t));
        assert!(c.previous_active(t));
        // Issued under the old secret, validated after the rotation: still good.
        assert_eq!(c.validate(t + 1, &v4(), 5, before.isn, before.tsval).unwrap().wscale, Some(7));
        assert!(c.validate(t + 1, &v6(), 5, old_v6.isn, old_v6.tsval).is_ok());
        // New cookies are under the new secret: a box that still has only the old one refuses
        // them, one with the new one accepts them.
        let after = c.issue(t + 2, &v4(), 5, &syn);
        assert!(cookies().validate(t + 3, &v4(), 5, after.isn, after.tsval).is_err());
        let mut fresh = SynCookies::new(CookieKey::from_bytes(*b"fedcba9876543210"), SLOT);
        assert!(fresh.validate(t + 3, &v4(), 5, after.isn, after.tsval).is_ok());
        // Two slots (and the skew) later the old secret is gone.
        let gone = t + 2 * SLOT_NS + u64::from(SKEW_SECS) * 1_000_000_000 + 1;
        assert!(!c.previous_active(gone));
        let late = cookies().issue(gone - SLOT_NS / 2, &v4(), 5, &syn);
        assert!(c.validate(gone, &v4(), 5, late.isn, late.tsval).is_err());
        let mut old = cookies();
        assert!(old.validate(gone, &v4(), 5, late.isn, late.tsval).is_ok(), "valid under the old secret itself");
    }
}
