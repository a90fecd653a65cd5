//! Plaintext HTTP/1.x request-head checks for services with an `http` line (DESIGN.md,
//! "Plaintext HTTP").
//!
//! The engine follows every client request of such a service in sequence order, byte by byte,
//! with a fixed [`HttpState`] per connection (48 bytes in an [`HttpTable`] beside the session
//! table): the request line (method, target, version), each header line (its length, the
//! header count, `Content-Length`, `Transfer-Encoding`, `Upgrade`), the blank line that ends
//! the head, then the body — `Content-Length` bytes, or a chunked body followed chunk by chunk
//! — and the next request of a keep-alive or pipelined connection. Nothing is buffered:
//! a head split over many segments is followed across them, and a segment that arrives ahead
//! of the next byte the checker expects (out of order) is not checked — the engine drops it
//! while a head is being read, and the client's retransmission brings it in order.
//!
//! What cannot be followed — a transfer coding other than `chunked`, a chunk size or extension
//! beyond the limits — switches the connection to *unchecked* (counted). A successful
//! `Upgrade` (101) or `CONNECT` (2xx) does too, when the server's answer says so
//! ([`HttpState::server_answer`]). TLS cannot be read at all: these checks are for port 80,
//! or for servers behind a TLS terminator.
//!
//! [`feed`] never allocates, never panics on any byte sequence and touches only the state it
//! is given (property-tested in `tests/http.rs`).

use rulespec::HttpCheck;

use super::flow::FlowKey;
use super::verdict::DropReason;

/// Why a request broke the service's checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// The head passed `max-header-bytes`.
    HeaderTooLarge,
    /// A line of the head passed `max-header-line`.
    LineTooLong,
    /// More header fields than `max-headers`.
    TooManyHeaders,
    /// The request line is not `METHOD SP TARGET SP HTTP/D.D`.
    BadRequestLine,
    /// The method is not in `methods`.
    Method,
    /// A header line is malformed (no colon, space before the colon, folded, control
    /// characters), or its framing is ambiguous (two `Content-Length`s, one with
    /// `Transfer-Encoding`, a `Content-Length` that is not a number).
    BadHeader,
    /// The source is over its `per-source requests` limit.
    RequestLimit,
}

impl Violation {
    /// The drop reason counted for it.
    pub fn reason(self) -> DropReason {
        match self {
            Violation::HeaderTooLarge => DropReason::HttpHeaderTooLarge,
            Violation::LineTooLong => DropReason::HttpHeaderLineTooLong,
            Violation::TooManyHeaders => DropReason::HttpTooManyHeaders,
            Violation::BadRequestLine => DropReason::HttpBadRequestLine,
            Violation::Method => DropReason::HttpMethod,
            Violation::BadHeader => DropReason::HttpBadHeader,
            Violation::RequestLimit => DropReason::HttpRequestLimit,
        }
    }
}

/// The limits of one service, ready for [`feed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most bytes of a head.
    pub max_head: u32,
    /// Most bytes of one line of the head.
    pub max_line: u32,
    /// Most header fields.
    pub max_headers: u32,
    /// Allowed methods (empty: any token).
    methods: Vec<Vec<u8>>,
    /// Bit `i` set for every method `i` (the candidates a new method starts with).
    all_methods: u32,
}

impl HttpLimits {
    /// The limits of a compiled `http` line.
    pub fn new(c: &HttpCheck) -> HttpLimits {
        let methods: Vec<Vec<u8>> = c
            .methods
            .iter()
            .take(32)
            .map(|m| m.as_bytes()[..m.len().min(HttpCheck::MAX_METHOD_LEN)].to_vec())
            .collect();
        let all_methods = if methods.len() >= 32 { u32::MAX } else { (1u32 << methods.len()) - 1 };
        HttpLimits {
            max_head: c.max_header_bytes.max(1),
            max_line: c.max_header_line.max(1),
            max_headers: c.max_headers,
            methods,
            all_methods,
        }
    }
}

/// Where a connection's request stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Phase {
    /// Free slot.
    #[default]
    Free = 0,
    /// Reading a request head (or waiting for the next request).
    Head,
    /// Skipping a `Content-Length` body.
    Body,
    /// Inside a chunked body (see the chunk sub-states).
    Chunked,
    /// Not followed any more (counted once).
    Unchecked,
}

// Sub-states of the head parser.
const S_START: u8 = 0; // before a request line (empty lines allowed)
const S_START_LF: u8 = 1; // CR of an empty line before the request line seen
const S_METHOD: u8 = 2;
const S_TARGET0: u8 = 3; // first byte of the target
const S_TARGET: u8 = 4;
const S_VERSION: u8 = 5; // "HTTP/d.d", `pos` bytes read
const S_RL_LF: u8 = 6; // CR after the request line seen
const S_LINE: u8 = 7; // start of a header line, or the blank line
const S_NAME: u8 = 8;
const S_VALUE: u8 = 9;
const S_LINE_LF: u8 = 10; // CR after a header line seen
const S_END_LF: u8 = 11; // CR of the blank line seen
                         // Chunked sub-states.
const C_SIZE0: u8 = 20; // first hex digit of a chunk size
const C_SIZE: u8 = 21;
const C_EXT: u8 = 22; // chunk extension, skipped (bounded by the line limit)
const C_SIZE_LF: u8 = 23;
const C_DATA: u8 = 24; // `body` bytes of chunk data left
const C_DATA_CR: u8 = 25; // CRLF after the data
const C_DATA_LF: u8 = 26;

// `flags`.
const F_CL: u8 = 1 << 0; // a Content-Length was seen
const F_TE: u8 = 1 << 1; // a Transfer-Encoding was seen (chunked as the only coding)
const F_TE_OTHER: u8 = 1 << 2; // a Transfer-Encoding other than chunked
const F_UPGRADE: u8 = 1 << 3; // an Upgrade header (or CONNECT): the server may switch
const F_TRAILER: u8 = 1 << 4; // reading the trailer section of a chunked body
const F_CL_DIGIT: u8 = 1 << 5; // the Content-Length value has a digit
const F_CL_END: u8 = 1 << 6; // whitespace after the Content-Length digits
const F_AWAIT_SWITCH: u8 = 1 << 7; // a request asked to switch protocols: watch the answer

// Header names followed (`cand` bits).
const H_CL: u8 = 1 << 0;
const H_TE: u8 = 1 << 1;
const H_UPGRADE: u8 = 1 << 2;
const NAMES: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"upgrade"];
const CHUNKED: &[u8] = b"chunked";

/// One connection's request-stream state: 48 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpState {
    /// Keyed hash of the flow, 0 = free (see [`HttpTable`]).
    tag: u64,
    /// Bytes left of a `Content-Length` body or of a chunk; the `Content-Length` value while it
    /// is read.
    body: u64,
    /// Tick (ms) of the last segment.
    last: u32,
    /// Client sequence number of the next byte to read.
    pub next: u32,
    /// Bytes of the head so far.
    head: u32,
    /// Bytes of the current line so far.
    line: u32,
    /// Method candidates still matching (bit per allowed method).
    mcand: u32,
    /// Header fields so far.
    headers: u16,
    /// [`Phase`].
    phase: Phase,
    /// Parser sub-state (`S_*`, `C_*`).
    st: u8,
    /// Position inside the method, a header name, the version or `chunked`.
    pos: u8,
    /// Header-name candidates still matching (`H_*`); in a value, the header being read.
    cand: u8,
    /// `F_*`.
    flags: u8,
    /// Method is `CONNECT` so far (its bytes matched).
    connect: bool,
}

/// What [`feed`] saw that the engine counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Request heads started (first method byte read).
    pub requests: u32,
    /// The connection was switched to unchecked by this segment.
    pub unchecked: bool,
}

impl HttpState {
    /// A connection whose client stream starts at sequence number `next`.
    pub fn open(tag: u64, next: u32, tick: u32) -> HttpState {
        HttpState { tag, next, last: tick, phase: Phase::Head, st: S_START, ..HttpState::default() }
    }

    /// The segment at `seq` of `len` bytes lies wholly inside the body being skipped, right at
    /// the next byte: skip it (the common case of an upload), `true`. Else nothing changes.
    #[inline]
    pub fn skip_body(&mut self, seq: u32, len: u32) -> bool {
        if self.phase == Phase::Body && seq == self.next && u64::from(len) < self.body {
            self.body -= u64::from(len);
            self.next = self.next.wrapping_add(len);
            return true;
        }
        false
    }

    /// The same state, no longer followed.
    pub fn unchecked(mut self) -> HttpState {
        self.phase = Phase::Unchecked;
        self
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the next client byte is inside a body (its bytes are not parsed), and how many
    /// body bytes follow it (a `Content-Length` body or the data of one chunk).
    pub fn body_ahead(&self) -> u64 {
        match (self.phase, self.st) {
            (Phase::Body, _) | (Phase::Chunked, C_DATA) => self.body,
            _ => 0,
        }
    }

    /// Whether a request asked to switch protocols and the server's answer decides.
    pub fn awaits_switch(&self) -> bool {
        self.flags & F_AWAIT_SWITCH != 0
    }

    /// The first bytes of a server segment while [`HttpState::awaits_switch`]: `101` (or a
    /// `2xx` to `CONNECT`) makes the connection unchecked (it is no longer HTTP); any other
    /// status keeps it followed. Returns whether it switched.
    pub fn server_answer(&mut self, payload: &[u8]) -> bool {
        if self.flags & F_AWAIT_SWITCH == 0 || payload.len() < 12 || !payload.starts_with(b"HTTP/1.") {
            return false;
        }
        self.flags &= !F_AWAIT_SWITCH;
        let code = &payload[9..12];
        let switched = code == b"101" || (self.connect && code[0] == b'2');
        if switched {
            self.phase = Phase::Unchecked;
        }
        switched
    }
}

#[inline]
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// Read `data`, the client's next bytes in sequence order, into `st`. `on_request` is called at
/// the first byte of every request (for the per-source request limit): `false` refuses it.
/// `Err` is the first violation; the state is then meaningless (the engine resets the
/// connection).
pub fn feed(
    st: &mut HttpState,
    lim: &HttpLimits,
    data: &[u8],
    on_request: &mut impl FnMut() -> bool,
) -> Result<Fed, Violation> {
    let mut fed = Fed::default();
    let mut i = 0;
    while i < data.len() {
        match st.phase {
            Phase::Unchecked | Phase::Free => break,
            Phase::Body => {
                let n = (data.len() - i).min(st.body.min(usize::MAX as u64) as usize);
                i += n;
                st.body -= n as u64;
                if st.body == 0 {
                    next_request(st);
                }
                continue;
            }
            Phase::Chunked if st.st == C_DATA => {
                let n = (data.len() - i).min(st.body.min(usize::MAX as u64) as usize);
                i += n;
                st.body -= n as u64;
                if st.body == 0 {
                    st.st = C_DATA_CR;
                }
                continue;
            }
            Phase::Chunked if st.flags & F_TRAILER == 0 => {
                let b = data[i];
                i += 1;
                if chunk_byte(st, lim, b) {
                    fed.unchecked = true;
                    break;
                }
                continue;
            }
            Phase::Head | Phase::Chunked => {}
        }
        // Runs of plain bytes inside a target or an unfollowed header value: counted in bulk.
        if st.st == S_TARGET || (st.st == S_VALUE && st.cand == 0) {
            let target = st.st == S_TARGET;
            let rest = &data[i..];
            let n = rest
                .iter()
                .position(|&b| (b < 0x20 && b != b'\t') || b == 0x7f || (target && b == b' '))
                .unwrap_or(rest.len());
            if n > 0 {
                let n32 = u32::try_from(n).unwrap_or(u32::MAX);
                // The first limit a byte-by-byte count would pass (the head's, at a tie).
                let to_head = lim.max_head.saturating_sub(st.head).saturating_add(1);
                let to_line = lim.max_line.saturating_sub(st.line).saturating_add(1);
                if to_head.min(to_line) <= n32 {
                    return Err(if to_head <= to_line { Violation::HeaderTooLarge } else { Violation::LineTooLong });
                }
                st.head += n32;
                st.line += n32;
                i += n;
                continue;
            }
        }
        let b = data[i];
        i += 1;
        // The head (and a chunked body's trailer section) is bounded byte by byte.
        if st.st != S_START || !matches!(b, b'\r' | b'\n') {
            st.head += 1;
            st.line += 1;
            if st.head > lim.max_head {
                return Err(Violation::HeaderTooLarge);
            }
            if st.line > lim.max_line {
                return Err(Violation::LineTooLong);
            }
        }
        match st.st {
            S_START => match b {
                b'\r' => st.st = S_START_LF,
                b'\n' => {}
                _ => {
                    fed.requests += 1;
                    if !on_request() {
                        return Err(Violation::RequestLimit);
                    }
                    st.st = S_METHOD;
                    st.pos = 0;
                    st.mcand = lim.all_methods;
                    st.connect = true;
                    method_byte(st, lim, b)?;
                }
            },
            S_START_LF => {
                if b != b'\n' {
                    return Err(Violation::BadRequestLine);
                }
                st.st = S_START;
                st.line = 0;
            }
            S_METHOD => {
                if b == b' ' {
                    let pos = usize::from(st.pos);
                    if !lim.methods.is_empty()
                        && !(0..lim.methods.len()).any(|m| st.mcand & (1 << m) != 0 && lim.methods[m].len() == pos)
                    {
                        return Err(Violation::Method);
                    }
                    st.connect &= pos == 7;
                    st.st = S_TARGET0;
                } else {
                    method_byte(st, lim, b)?;
                }
            }
            S_TARGET0 | S_TARGET => {
                if b == b' ' && st.st == S_TARGET {
                    st.st = S_VERSION;
                    st.pos = 0;
                } else if b <= b' ' || b == 0x7f {
                    return Err(Violation::BadRequestLine);
                } else {
                    st.st = S_TARGET;
                }
            }
            S_VERSION => {
                let p = st.pos;
                let ok = match p {
                    0..=4 => b == b"HTTP/"[usize::from(p)],
                    5 | 7 => b.is_ascii_digit(),
                    6 => b == b'.',
                    _ => false,
                };
                if p == 8 && (b == b'\r' || b == b'\n') {
                    if b == b'\r' {
                        st.st = S_RL_LF;
                    } else {
                        start_line(st, S_LINE);
                    }
                } else if !ok {
                    return Err(Violation::BadRequestLine);
                } else {
                    st.pos += 1;
                }
            }
            S_RL_LF => {
                if b != b'\n' {
                    return Err(Violation::BadRequestLine);
                }
                start_line(st, S_LINE);
            }
            S_LINE => match b {
                b'\r' => st.st = S_END_LF,
                b'\n' => {
                    if end_of_head(st, lim) {
                        fed.unchecked = true;
                        break;
                    }
                }
                _ if is_tchar(b) => {
                    st.headers = st.headers.saturating_add(1);
                    if u32::from(st.headers) > lim.max_headers {
                        return Err(Violation::TooManyHeaders);
                    }
                    st.st = S_NAME;
                    st.pos = 0;
                    st.cand = H_CL | H_TE | H_UPGRADE;
                    name_byte(st, b);
                }
                // Folded lines (obsolete), a space before the name, control characters.
                _ => return Err(Violation::BadHeader),
            },
            S_NAME => {
                if b == b':' {
                    // The names whose every byte matched and that end here.
                    let pos = usize::from(st.pos);
                    let mut which = 0;
                    for (k, n) in NAMES.iter().enumerate() {
                        if st.cand & (1 << k) != 0 && n.len() == pos {
                            which = 1 << k;
                        }
                    }
                    st.cand = which;
                    st.pos = 0;
                    if which == H_CL {
                        if st.flags & (F_CL | F_TE | F_TE_OTHER) != 0 {
                            return Err(Violation::BadHeader);
                        }
                        st.flags |= F_CL;
                        st.flags &= !(F_CL_DIGIT | F_CL_END);
                        st.body = 0;
                    } else if which == H_TE {
                        if st.flags & F_CL != 0 {
                            return Err(Violation::BadHeader);
                        }
                        // Chunked unless the value says otherwise.
                        if st.flags & F_TE != 0 {
                            st.flags |= F_TE_OTHER;
                        }
                        st.flags |= F_TE;
                    } else if which == H_UPGRADE {
                        st.flags |= F_UPGRADE;
                    }
                    st.st = S_VALUE;
                } else if is_tchar(b) {
                    name_byte(st, b);
                } else {
                    return Err(Violation::BadHeader);
                }
            }
            S_VALUE => match b {
                b'\r' => {
                    end_value(st)?;
                    st.st = S_LINE_LF;
                }
                b'\n' => {
                    end_value(st)?;
                    start_line(st, S_LINE);
                }
                0..=8 | 10..=31 | 0x7f => return Err(Violation::BadHeader),
                _ => value_byte(st, b)?,
            },
            S_LINE_LF => {
                if b != b'\n' {
                    return Err(Violation::BadHeader);
                }
                start_line(st, S_LINE);
            }
            S_END_LF => {
                if b != b'\n' {
                    return Err(Violation::BadHeader);
                }
                if end_of_head(st, lim) {
                    fed.unchecked = true;
                    break;
                }
            }
            _ => return Err(Violation::BadRequestLine),
        }
    }
    Ok(fed)
}

#[inline]
fn method_byte(st: &mut HttpState, lim: &HttpLimits, b: u8) -> Result<(), Violation> {
    if !is_tchar(b) {
        return Err(Violation::BadRequestLine);
    }
    let p = usize::from(st.pos);
    if p >= HttpCheck::MAX_METHOD_LEN && !lim.methods.is_empty() {
        return Err(Violation::Method);
    }
    if p >= 32 {
        return Err(Violation::BadRequestLine);
    }
    st.connect &= p < 7 && b == b"CONNECT"[p];
    for (m, name) in lim.methods.iter().enumerate() {
        if name.get(p) != Some(&b) {
            st.mcand &= !(1 << m);
        }
    }
    if !lim.methods.is_empty() && st.mcand == 0 {
        return Err(Violation::Method);
    }
    st.pos += 1;
    Ok(())
}

#[inline]
fn name_byte(st: &mut HttpState, b: u8) {
    let p = usize::from(st.pos);
    let lower = b.to_ascii_lowercase();
    for (k, n) in NAMES.iter().enumerate() {
        if n.get(p) != Some(&lower) {
            st.cand &= !(1 << k);
        }
    }
    st.pos = st.pos.saturating_add(1);
}

#[inline]
fn value_byte(st: &mut HttpState, b: u8) -> Result<(), Violation> {
    if st.cand == H_CL {
        match b {
            b' ' | b'\t' if st.flags & F_CL_DIGIT != 0 => st.flags |= F_CL_END,
            b' ' | b'\t' => {}
            b'0'..=b'9' if st.flags & F_CL_END == 0 => {
                st.flags |= F_CL_DIGIT;
                st.body = st.body.saturating_mul(10).saturating_add(u64::from(b - b'0'));
                if st.body > 1 << 40 {
                    return Err(Violation::BadHeader);
                }
            }
            _ => return Err(Violation::BadHeader),
        }
    } else if st.cand == H_TE {
        // Exactly `chunked` (any case, optional whitespace around) is followed.
        match b {
            b' ' | b'\t' => {
                if st.pos > 0 {
                    st.pos = 0xff;
                }
            }
            _ => {
                let p = usize::from(st.pos);
                if CHUNKED.get(p) == Some(&b.to_ascii_lowercase()) {
                    st.pos += 1;
                } else {
                    st.flags |= F_TE_OTHER;
                    st.pos = 0xfe;
                }
            }
        }
    }
    Ok(())
}

/// The end of a header line's value.
#[inline]
fn end_value(st: &mut HttpState) -> Result<(), Violation> {
    if st.cand == H_CL && st.flags & F_CL_DIGIT == 0 {
        return Err(Violation::BadHeader);
    }
    if st.cand == H_TE && !(usize::from(st.pos) == CHUNKED.len() || st.pos == 0xff) {
        st.flags |= F_TE_OTHER;
    }
    Ok(())
}

#[inline]
fn start_line(st: &mut HttpState, s: u8) {
    st.st = s;
    st.line = 0;
    st.cand = 0;
    st.pos = 0;
}

/// The blank line that ends a head (or a trailer section). Returns whether the connection can
/// no longer be followed.
fn end_of_head(st: &mut HttpState, lim: &HttpLimits) -> bool {
    let _ = lim;
    if st.flags & F_TRAILER != 0 {
        next_request(st);
        return false;
    }
    if st.flags & F_TE_OTHER != 0 {
        st.phase = Phase::Unchecked;
        return true;
    }
    if st.flags & (F_UPGRADE) != 0 || st.connect {
        st.flags |= F_AWAIT_SWITCH;
    }
    if st.flags & F_TE != 0 {
        st.phase = Phase::Chunked;
        st.st = C_SIZE0;
        st.line = 0;
        st.body = 0;
        st.pos = 0;
    } else if st.flags & F_CL != 0 && st.body > 0 {
        st.phase = Phase::Body;
    } else {
        next_request(st);
    }
    false
}

/// Ready for the next request of the connection.
#[inline]
fn next_request(st: &mut HttpState) {
    let keep = st.flags & F_AWAIT_SWITCH;
    st.phase = Phase::Head;
    st.st = S_START;
    st.head = 0;
    st.line = 0;
    st.headers = 0;
    st.body = 0;
    st.pos = 0;
    st.cand = 0;
    st.flags = keep;
    // A CONNECT's answer is still awaited: remember it was one.
    st.connect &= keep != 0;
}

/// One byte of a chunked body outside chunk data and trailers. Returns whether the connection
/// became unchecked.
fn chunk_byte(st: &mut HttpState, lim: &HttpLimits, b: u8) -> bool {
    st.line += 1;
    if st.line > lim.max_line {
        st.phase = Phase::Unchecked;
        return true;
    }
    let hex = |b: u8| (b as char).to_digit(16).map(u64::from);
    match st.st {
        C_SIZE0 | C_SIZE => match (hex(b), b) {
            (Some(v), _) => {
                st.pos += 1;
                if st.pos > 15 {
                    st.phase = Phase::Unchecked;
                    return true;
                }
                st.body = (st.body << 4) | v;
                st.st = C_SIZE;
            }
            (None, b';' | b' ' | b'\t') if st.st == C_SIZE => st.st = C_EXT,
            (None, b'\r') if st.st == C_SIZE => st.st = C_SIZE_LF,
            (None, b'\n') if st.st == C_SIZE => chunk_size_done(st),
            _ => {
                st.phase = Phase::Unchecked;
                return true;
            }
        },
        C_EXT => match b {
            b'\r' => st.st = C_SIZE_LF,
            b'\n' => chunk_size_done(st),
            _ => {}
        },
        C_SIZE_LF => {
            if b != b'\n' {
                st.phase = Phase::Unchecked;
                return true;
            }
            chunk_size_done(st);
        }
        C_DATA_CR => match b {
            b'\r' => st.st = C_DATA_LF,
            b'\n' => start_chunk(st),
            _ => {
                st.phase = Phase::Unchecked;
                return true;
            }
        },
        C_DATA_LF => {
            if b != b'\n' {
                st.phase = Phase::Unchecked;
                return true;
            }
            start_chunk(st);
        }
        _ => {
            st.phase = Phase::Unchecked;
            return true;
        }
    }
    false
}

fn chunk_size_done(st: &mut HttpState) {
    st.line = 0;
    st.pos = 0;
    if st.body == 0 {
        // The last chunk: trailer fields, read as header lines, up to the blank line.
        st.flags |= F_TRAILER;
        st.head = 0;
        st.headers = 0;
        start_line(st, S_LINE);
    } else {
        st.st = C_DATA;
    }
}

fn start_chunk(st: &mut HttpState) {
    st.st = C_SIZE0;
    st.line = 0;
    st.pos = 0;
    st.body = 0;
}

/// Ways per set of the [`HttpTable`].
const WAYS: usize = 4;

crate::counters! {
    /// The HTTP state table of one engine.
    pub struct HttpTableStats("http_table") {
        /// Connection states in the table (fixed memory: 48 bytes each).
        gauge "http" http_slots,
        /// States given to a connection by replacing another live one (the table was full in
        /// that set): the replaced connection is no longer followed.
        counter "http" http_states_replaced,
    }
}

/// Request-stream states of the connections of `http` services, in fixed memory: keyed by the
/// flow (the session table moves its entries, so the state cannot live at a fixed slot there),
/// each flow in one of two 4-way sets chosen by its hash (the less loaded one when it is
/// placed: with two choices a set overflows practically never below full load, where one
/// choice overflows sets at a quarter of it). A state unused for longer than the established
/// idle timeout is free; when both sets are full, the least recently used state of the two
/// gives way (counted: that connection is no longer followed).
#[derive(Clone, Debug)]
pub struct HttpTable {
    sets: Vec<[HttpState; WAYS]>,
    mask: usize,
    seed: u64,
    /// States older than this many ms are free.
    idle_ms: u32,
    replaced: u64,
}

impl HttpTable {
    /// A table of at least `slots` states (a power of two, at least 64).
    pub fn new(slots: usize, seed: u64, idle_ms: u32) -> HttpTable {
        let sets = (slots.max(64) / WAYS).next_power_of_two();
        HttpTable {
            sets: vec![[HttpState::default(); WAYS]; sets],
            mask: sets - 1,
            seed,
            idle_ms: idle_ms.max(1),
            replaced: 0,
        }
    }

    /// The tag of a flow.
    #[inline]
    pub fn tag(&self, key: &FlowKey) -> u64 {
        let (b, n) = key.to_bytes();
        self.tag_of(u128::from_le_bytes(xxhash_rust::xxh3::xxh3_128(&b[..n]).to_le_bytes()))
    }

    /// The tag of a flow from the session table's stored form of its key
    /// ([`crate::engine::session::Probe::stored_key`], computed once per frame): two rounds of
    /// keyed multiply-fold, a few cycles.
    #[inline]
    pub fn tag_of(&self, stored: u128) -> u64 {
        let mum = |a: u64, b: u64| {
            let r = u128::from(a) * u128::from(b);
            (r as u64) ^ ((r >> 64) as u64)
        };
        let (lo, hi) = (stored as u64, (stored >> 64) as u64);
        let x = mum(lo ^ self.seed, hi ^ 0x9e37_79b9_7f4a_7c15);
        mum(x ^ self.seed.rotate_left(32), lo ^ 0xc2b2_ae3d_27d4_eb4f) | 1
    }

    /// Ask for the lines of the first set of `tag` (where its state almost always is).
    #[inline]
    pub fn prefetch(&self, tag: u64) {
        let (a, _) = self.sets_of(tag);
        if let Some(set) = self.sets.get(a) {
            scrubber_intrin::prefetch(&set[0]);
            scrubber_intrin::prefetch(&set[2]);
            scrubber_intrin::prefetch(&set[3]);
        }
    }

    /// The two sets of a tag.
    #[inline]
    fn sets_of(&self, tag: u64) -> (usize, usize) {
        ((tag as usize >> 1) & self.mask, (tag >> 33) as usize & self.mask)
    }

    #[inline]
    fn live(e: &HttpState, tag: u64, tick: u32, idle: u32) -> bool {
        e.tag == tag && e.phase != Phase::Free && tick.wrapping_sub(e.last) <= idle
    }

    /// The state of the flow with tag `tag`, if it has a live one.
    #[inline]
    pub fn get(&mut self, tag: u64, tick: u32) -> Option<&mut HttpState> {
        let idle = self.idle_ms;
        let (a, b) = self.sets_of(tag);
        let w = self.sets[a].iter().position(|e| Self::live(e, tag, tick, idle));
        let (set, w) = match w {
            Some(w) => (a, w),
            None => (b, self.sets[b].iter().position(|e| Self::live(e, tag, tick, idle))?),
        };
        let e = &mut self.sets[set][w];
        e.last = tick;
        Some(e)
    }

    /// Put `st` in the table: where the flow's state is, else in a free or stale slot of the
    /// emptier of its two sets, else over the least recently used state of the two.
    pub fn put(&mut self, st: HttpState, tick: u32) {
        let idle = self.idle_ms;
        let (a, b) = self.sets_of(st.tag);
        for set in [a, b] {
            if let Some(e) = self.sets[set].iter_mut().find(|e| e.tag == st.tag) {
                *e = st;
                return;
            }
        }
        let free = |s: &[HttpState; WAYS]| {
            s.iter().filter(|e| e.phase == Phase::Free || tick.wrapping_sub(e.last) > idle).count()
        };
        let set = if free(&self.sets[b]) > free(&self.sets[a]) { b } else { a };
        let mut w = 0;
        let mut best = 0u32;
        let mut pick = set;
        for cand in [set, if set == a { b } else { a }] {
            for (i, e) in self.sets[cand].iter().enumerate() {
                let age = tick.wrapping_sub(e.last);
                if e.phase == Phase::Free || age > idle {
                    self.sets[cand][i] = st;
                    return;
                }
                if age >= best {
                    best = age;
                    w = i;
                    pick = cand;
                }
            }
        }
        self.replaced += 1;
        self.sets[pick][w] = st;
    }

    /// Forget the flow with tag `tag`.
    pub fn remove(&mut self, tag: u64) {
        let (a, b) = self.sets_of(tag);
        for set in [a, b] {
            for e in self.sets[set].iter_mut().filter(|e| e.tag == tag) {
                *e = HttpState::default();
            }
        }
    }

    /// Statistics.
    pub fn stats(&self) -> HttpTableStats {
        HttpTableStats { http_slots: (self.sets.len() * WAYS) as u64, http_states_replaced: self.replaced }
    }

    /// Heap bytes.
    pub fn memory_bytes(&self) -> usize {
        self.sets.len() * core::mem::size_of::<[HttpState; WAYS]>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(methods: &[&str]) -> HttpLimits {
        HttpLimits::new(&HttpCheck {
            max_header_bytes: 8192,
            max_header_line: 4096,
            max_headers: 64,
            methods: methods.iter().map(|m| m.to_string()).collect(),
            ban: None,
        })
    }

    fn run(l: &HttpLimits, parts: &[&[u8]]) -> (Result<u32, Violation>, HttpState) {
        let mut st = HttpState::open(1, 0, 0);
        let mut n = 0;
        for p in parts {
            match feed(&mut st, l, p, &mut || true) {
                Ok(f) => n += f.requests,
                Err(v) => return (Err(v), st),
            }
        }
        (Ok(n), st)
    }

    #[test]
    fn a_full_table_keeps_every_flow_below_its_capacity() {
        // Half full (one 4-way set per flow loses states from a quarter full on): with two
        // choices no flow loses its state.
        let mut t = HttpTable::new(4096, 7, 300_000);
        let keys: Vec<FlowKey> = (0..2048u32)
            .map(|i| FlowKey::v4([198, 19, (i >> 8) as u8, i as u8], 40_000, [198, 18, 0, 10], 80))
            .collect();
        for (n, k) in keys.iter().enumerate() {
            let tag = t.tag(k);
            t.put(HttpState::open(tag, n as u32, 5), 5);
        }
        for (n, k) in keys.iter().enumerate() {
            let tag = t.tag(k);
            assert_eq!(t.get(tag, 6).map(|s| s.next), Some(n as u32), "flow {n}");
        }
        assert_eq!(t.stats().http_states_replaced, 0);
        // A state written again stays one state.
        let tag = t.tag(&keys[0]);
        let mut st = *t.get(tag, 7).unwrap();
        st.next = 99;
        t.put(st, 7);
        t.remove(tag);
        assert!(t.get(tag, 8).is_none(), "removed, and no older copy left behind");
    }

    #[test]
    fn state_is_48_bytes() {
        assert_eq!(core::mem::size_of::<HttpState>(), 48);
    }

    #[test]
    fn plain_get_then_keep_alive_second_request() {
        let l = lim(&["GET", "HEAD", "POST"]);
        let (r, st) = run(&l, &[b"GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"]);
        assert_eq!(r, Ok(2));
        assert_eq!((st.phase, st.st), (Phase::Head, S_START));
    }

    #[test]
    fn method_list() {
        let l = lim(&["GET", "HEAD", "POST"]);
        assert_eq!(run(&l, &[b"PUT / HTTP/1.1\r\n\r\n"]).0, Err(Violation::Method));
        assert_eq!(run(&l, &[b"GETX / HTTP/1.1\r\n\r\n"]).0, Err(Violation::Method));
        assert_eq!(run(&l, &[b"GE / HTTP/1.1\r\n\r\n"]).0, Err(Violation::Method));
        assert_eq!(run(&l, &[b"G", b"E", b"T / HTTP/1.0\r\n\r\n"]).0, Ok(1));
        assert_eq!(run(&lim(&[]), &[b"PROPFIND / HTTP/1.1\r\n\r\n"]).0, Ok(1));
    }
}
