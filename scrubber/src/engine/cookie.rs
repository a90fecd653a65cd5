//! SYN cookies: a keyed PRF over the connection, rotating time slots.
//!
//! In proxy mode the scrubber answers a client's SYN with a SYN-ACK whose initial sequence
//! number (ISN) is a *cookie*, and keeps no state. A client that really owns its address
//! answers with an ACK whose `ack - 1` is that cookie; [`SynCookies::validate`] checks it and
//! returns the options the SYN had offered, so that the scrubber can open the backend side.
//!
//! # The MAC
//!
//! The cookie's authenticator is SipHash-2-4 keyed with the 128-bit [`CookieKey`] (a keyed PRF,
//! as Linux uses since 4.13; never a plain hash) over the message
//!
//! ```text
//! flow.to_bytes()[..n]  (12 bytes IPv4 / 36 bytes IPv6: client addr, server addr, ports)
//! ‖ client ISN          (u32, big endian)
//! ‖ slot                (u64, big endian: now_ns / (slot_secs · 10⁹))
//! ‖ MSS table index     (u8)
//! ‖ option bits         (u8: bits 0..=3 wscale (15 = none), bit 4 SACK, bit 5 ECN)
//! ‖ variant             (u8: 0 = options in the ISN, 1 = options in the TSval)
//! ```
//!
//! The slot makes the cookie expire: the key never needs to change for cookies to rotate
//! (but it can, and several boxes behind ECMP share it so that any box validates any cookie;
//! they need wall clocks that agree to well within one slot).
//!
//! # The 32-bit ISN
//!
//! | bits | without timestamps | with timestamps (client sent the TS option) |
//! |---|---|---|
//! | 0 | slot parity (`slot & 1`) | slot parity |
//! | 1..=3 | MSS table index | MSS table index |
//! | 4..=7 | wscale (15 = none) | top 28 bits of the MAC |
//! | 8 | SACK-permitted | 〃 |
//! | 9 | ECN | 〃 |
//! | 10..=31 | top 22 bits of the MAC | 〃 |
//!
//! With timestamps the options ride in the low 6 bits of the TSval the SYN-ACK carries (bits
//! 0..=3 wscale, 4 SACK, 5 ECN), as Linux does (`cookie_init_timestamp`); the other 26 bits of
//! the TSval are the scrubber's millisecond clock (`now_ns / 10⁶`, truncated to 32 bits) with
//! its low 6 bits cleared. The client echoes the TSval in the TSecr of its ACK, and the MAC
//! covers the six option bits, so they cannot be altered either.
//!
//! The parity bit tells [`SynCookies::validate`] which slot to recompute the MAC for: the
//! current one when the parity matches, else the previous one. A cookie from two slots ago has
//! the parity of the current slot, is checked against the current slot, and fails: cookies are
//! valid for between one and two slots (`slot_secs` to `2 · slot_secs` seconds).
//!
//! # MSS tables
//!
//! Eight entries per family, sorted; the encoded value is the largest entry not above the
//! client's MSS, or the smallest entry (the RFC 879 / RFC 8200 defaults, 536 and 1220) when the
//! client's MSS is smaller or absent:
//!
//! * IPv4 ([`MSS_TABLE_V4`]): 536, 1220, 1300, 1380, 1400, 1440, 1460 (Ethernet), 8960 (jumbo).
//! * IPv6 ([`MSS_TABLE_V6`]): 1220 (minimum MTU), 1280, 1340, 1380, 1400, 1420 (common
//!   tunnels), 1440 (Ethernet), 8940 (jumbo).
//!
//! Linux encodes only 4 entries per family (2 bits).
//!
//! # Forgery odds
//!
//! A blind attacker who does not know the key must guess the MAC bits: one guess (one forged
//! ACK) succeeds with probability 2⁻²² (≈ 2.4 · 10⁻⁷) for ISN cookies and 2⁻²⁸ (≈ 3.7 · 10⁻⁹)
//! when timestamps carry the options; the parity, MSS index and option bits are free for the
//! attacker to choose but are covered by the MAC. At 1 Mpps of forged ACKs towards one 4-tuple
//! space that is about 0.24 accepted ACKs per second (ISN variant), each of which only opens a
//! half-open backend connection, which the session table times out as embryonic.
//!
//! Linux (`__cookie_v4_init_sequence`, RFC 4987 §3.6) spends 8 bits of its 32-bit ISN on the
//! time counter and 24 on the hash-plus-MSS-index sum, checking the counter against a window
//! of `MAX_SYNCOOKIE_AGE` (2) minutes; a forger must hit the 24-bit value for some counter in
//! the window, about 2⁻²² per guess — the same order as this scheme without timestamps. Linux
//! puts wscale/SACK/ECN only in the TSval (so without timestamps those options are lost); this
//! scheme keeps them in the ISN when there are no timestamps, paying 6 MAC bits for it.
//!
//! # Cost
//!
//! [`SynCookies::issue`] and [`SynCookies::validate`] allocate nothing and compute one SipHash
//! over at most 51 bytes. A TS-variant cookie whose echoed clock is obviously older than the
//! validity window is refused before any hashing ([`CookieReject::Stale`]).

use super::flow::FlowKey;
use siphasher::sip::SipHasher24;
use std::path::{Path, PathBuf};

/// MSS values a cookie can encode for IPv4, indexed by the 3-bit table index.
pub const MSS_TABLE_V4: [u16; 8] = [536, 1220, 1300, 1380, 1400, 1440, 1460, 8960];
/// MSS values a cookie can encode for IPv6, indexed by the 3-bit table index.
pub const MSS_TABLE_V6: [u16; 8] = [1220, 1280, 1340, 1380, 1400, 1420, 1440, 8940];

/// Window-scale code meaning "no window scale option" (in the 4-bit option field).
const WS_CODE_NONE: u8 = 15;
/// Largest window-scale shift (RFC 7323 §2.3: larger values are treated as 14).
const WS_MAX: u8 = 14;
/// How to make a secret file, quoted by errors.
const GEN_HINT: &str = "make one with `scrubber gen-secret > FILE`";

/// The 128-bit SipHash-2-4 key of the cookie MAC.
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
/// options then travel in the TSval), `ecn` whether the SYN had ECE and CWR set.
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
    /// Timestamp variant only: the clock in the echoed TSecr is older than the validity
    /// window (two slots), so the cookie cannot be valid; refused without computing the MAC.
    /// Forged ACKs with random TSecr values mostly land here.
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

/// Issues and validates SYN cookies. Cheap to clone (one per worker is fine).
#[derive(Clone)]
pub struct SynCookies {
    sip: SipHasher24,
    slot_ns: u64,
    /// `2 · slot_ms + 64`, or `u32::MAX` when that does not fit in 31 bits (no stale check).
    stale_ms: u32,
}

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

#[inline]
fn mss_table(v6: bool) -> &'static [u16; 8] {
    if v6 {
        &MSS_TABLE_V6
    } else {
        &MSS_TABLE_V4
    }
}

/// Index of the largest entry `<= mss`, or 0.
#[inline]
fn mss_index(table: &[u16; 8], mss: u16) -> u8 {
    let mut idx = 0u8;
    for (i, &m) in table.iter().enumerate() {
        if m <= mss {
            idx = i as u8;
        }
    }
    idx
}

impl SynCookies {
    /// Cookies under `key`, with time slots of `slot_secs` seconds (clamped to at least 1).
    /// A cookie validates during the slot it was issued in and the next one.
    pub fn new(key: CookieKey, slot_secs: u32) -> SynCookies {
        let slot_secs = slot_secs.max(1);
        let slot_ms = u64::from(slot_secs) * 1000;
        let stale = 2 * slot_ms + 64;
        let stale_ms = if stale < (1 << 31) { stale as u32 } else { u32::MAX };
        SynCookies { sip: SipHasher24::new_with_key(&key.0), slot_ns: u64::from(slot_secs) * 1_000_000_000, stale_ms }
    }

    /// The slot length in seconds.
    pub fn slot_secs(&self) -> u32 {
        (self.slot_ns / 1_000_000_000) as u32
    }

    #[inline]
    fn mac(&self, flow: &FlowKey, client_isn: u32, slot: u64, idx: u8, opts: u8, ts: bool) -> u64 {
        let (fb, n) = flow.to_bytes();
        let mut m = [0u8; 36 + 4 + 8 + 3];
        let n = n.min(36);
        m[..n].copy_from_slice(&fb[..n]);
        m[n..n + 4].copy_from_slice(&client_isn.to_be_bytes());
        m[n + 4..n + 12].copy_from_slice(&slot.to_be_bytes());
        m[n + 12] = idx;
        m[n + 13] = opts;
        m[n + 14] = u8::from(ts);
        self.sip.hash(&m[..n + 15])
    }

    /// The cookie for a SYN from `flow` with sequence number `client_isn` and options `syn`,
    /// at `now_ns` (nanoseconds since the UNIX epoch). Allocation-free; one SipHash.
    #[inline]
    pub fn issue(&self, now_ns: u64, flow: &FlowKey, client_isn: u32, syn: &SynOptions) -> Issued {
        let slot = now_ns / self.slot_ns;
        let table = mss_table(flow.v6);
        let idx = mss_index(table, syn.mss);
        let opts = opt_bits(syn);
        let head = (slot & 1) as u32 | (u32::from(idx) << 1);
        let mac = self.mac(flow, client_isn, slot, idx, opts, syn.timestamps);
        let mss = table[usize::from(idx & 7)];
        if syn.timestamps {
            let clock = ((now_ns / 1_000_000) as u32) & !0x3f;
            Issued { isn: head | (((mac >> 36) as u32) << 4), tsval: Some(clock | u32::from(opts)), mss }
        } else {
            let isn = head | (u32::from(opts) << 4) | (((mac >> 42) as u32) << 10);
            Issued { isn, tsval: None, mss }
        }
    }

    /// Checks `cookie` (the ACK's `ack - 1`) for `flow` and `client_isn` (the ACK's `seq - 1`)
    /// at `now_ns`. `tsecr` is the TSecr of the ACK's timestamp option when it has one; the
    /// cookie is then checked as a timestamp-variant cookie. Returns the options the cookie
    /// encodes. Allocation-free; at most one SipHash.
    #[inline]
    pub fn validate(
        &self,
        now_ns: u64,
        flow: &FlowKey,
        client_isn: u32,
        cookie: u32,
        tsecr: Option<u32>,
    ) -> Result<SynOptions, CookieReject> {
        let cur = now_ns / self.slot_ns;
        let slot =
            if u64::from(cookie & 1) == cur & 1 { cur } else { cur.checked_sub(1).ok_or(CookieReject::BadMac)? };
        let idx = ((cookie >> 1) & 7) as u8;
        let opts = match tsecr {
            Some(ecr) => {
                let now_ms = (now_ns / 1_000_000) as u32;
                let age = now_ms.wrapping_sub(ecr & !0x3f);
                if age < (1 << 31) && age > self.stale_ms {
                    return Err(CookieReject::Stale);
                }
                let opts = (ecr & 0x3f) as u8;
                let mac = self.mac(flow, client_isn, slot, idx, opts, true);
                if (cookie >> 4) != (mac >> 36) as u32 {
                    return Err(CookieReject::BadMac);
                }
                opts
            }
            None => {
                let opts = ((cookie >> 4) & 0x3f) as u8;
                let mac = self.mac(flow, client_isn, slot, idx, opts, false);
                if (cookie >> 10) != (mac >> 42) as u32 {
                    return Err(CookieReject::BadMac);
                }
                opts
            }
        };
        // 4 bits: 0..=14 are shifts, 15 means "none"; no invalid value remains.
        let ws = opts & 15;
        Ok(SynOptions {
            mss: mss_table(flow.v6)[usize::from(idx & 7)],
            wscale: if ws == WS_CODE_NONE { None } else { Some(ws) },
            sack_permitted: opts & 0x10 != 0,
            timestamps: tsecr.is_some(),
            ecn: opts & 0x20 != 0,
        })
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

    fn round_trip(c: &SynCookies, flow: &FlowKey, syn: &SynOptions, at: u64) -> Result<SynOptions, CookieReject> {
        let isn = 0x1234_5678;
        let out = c.issue(NOW, flow, isn, syn);
        assert_eq!(out.tsval.is_some(), syn.timestamps);
        c.validate(at, flow, isn, out.isn, out.tsval)
    }

    #[test]
    fn round_trip_all_options_v4_v6() {
        let c = cookies();
        for flow in [v4(), v6()] {
            for syn in combos() {
                let got = round_trip(&c, &flow, &syn, NOW).unwrap();
                assert_eq!(got.wscale, syn.wscale);
                assert_eq!(got.sack_permitted, syn.sack_permitted);
                assert_eq!(got.ecn, syn.ecn);
                assert_eq!(got.timestamps, syn.timestamps);
                assert_eq!(got.mss, if flow.v6 { 1440 } else { 1460 });
            }
        }
    }

    #[test]
    fn every_mss_table_entry_round_trips() {
        let c = cookies();
        for flow in [v4(), v6()] {
            let table = mss_table(flow.v6);
            for ts in [false, true] {
                for (i, &m) in table.iter().enumerate() {
                    // Exactly the entry, and one above it (rounds down to it).
                    for offered in [m, m.saturating_add(1)] {
                        if i + 1 < 8 && offered >= table[i + 1] {
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
                assert_eq!(c.issue(NOW, &flow, 7, &syn).mss, table[7]);
            }
        }
        assert_eq!(mss_table(false)[0], 536);
        assert_eq!(mss_table(true)[0], 1220);
    }

    #[test]
    fn large_wscale_is_clamped_to_14() {
        let c = cookies();
        let syn = SynOptions { mss: 1460, wscale: Some(200), ..Default::default() };
        assert_eq!(round_trip(&c, &v4(), &syn, NOW).unwrap().wscale, Some(14));
    }

    #[test]
    fn tsval_carries_clock_and_options() {
        let c = cookies();
        let syn = SynOptions { mss: 1460, wscale: Some(7), sack_permitted: true, timestamps: true, ecn: false };
        let ts = c.issue(NOW, &v4(), 1, &syn).tsval.unwrap();
        assert_eq!(ts & 0x3f, 7 | 0x10);
        assert_eq!(ts & !0x3f, ((NOW / 1_000_000) as u32) & !0x3f);
    }

    #[test]
    fn next_slot_validates_two_slots_later_expires() {
        let c = cookies();
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
                // Before it was issued (previous slot): refused.
                assert!(c.validate(start - 1, &v4(), 99, out.isn, out.tsval).is_err());
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
        let c = SynCookies::new(CookieKey::from_bytes([1; 16]), 0);
        assert_eq!(c.slot_secs(), 1);
        let out = c.issue(0, &v4(), 5, &SynOptions::default());
        assert!(c.validate(0, &v4(), 5, out.isn, None).is_ok());
        // A cookie claiming the slot before slot 0.
        assert_eq!(c.validate(0, &v4(), 5, out.isn ^ 1, None), Err(CookieReject::BadMac));
        let big = SynCookies::new(CookieKey::from_bytes([1; 16]), u32::MAX);
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
        let c = cookies();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for i in 0..10_000 {
            let flow = if i % 2 == 0 { v4() } else { v6() };
            let r = rng.next();
            let tsecr = if i % 4 < 2 { None } else { Some((NOW / 1_000_000) as u32 & !0x3f | (r >> 32) as u32 & 0x3f) };
            if c.validate(NOW, &flow, 1000, r as u32, tsecr).is_ok() {
                accepted += 1;
            }
        }
        assert!(accepted < 3, "{accepted} forgeries accepted");
    }

    #[test]
    fn bit_flips_and_neighbours_rejected() {
        let c = cookies();
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
                    for bit in 0..6 {
                        assert!(c.validate(NOW, &flow, 42, out.isn, Some(ts ^ (1 << bit))).is_err());
                    }
                    // TS cookie validated as an ISN cookie (ACK without the TS option).
                    assert!(c.validate(NOW, &flow, 42, out.isn, None).is_err());
                } else {
                    // ISN cookie validated with a made-up TSecr.
                    let ecr = Some((NOW / 1_000_000) as u32 & !0x3f | (out.isn >> 4) & 0x3f);
                    assert!(c.validate(NOW, &flow, 42, out.isn, ecr).is_err());
                }
            }
        }
    }

    #[test]
    fn wrong_tuple_isn_or_key_rejected() {
        let c = cookies();
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
                let other = SynCookies::new(CookieKey::from_bytes(*b"0123456789abcdeF"), SLOT);
                assert!(other.validate(NOW, &base, 42, out.isn, out.tsval).is_err());
                // Same key, another instance: accepted (boxes sharing the secret).
                let twin = SynCookies::new(CookieKey::from_bytes(*b"0123456789abcdef"), SLOT);
                assert!(twin.validate(NOW, &base, 42, out.isn, out.tsval).is_ok());
            }
        }
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
        let c = cookies();
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
}
