//! Real TCP peers for the lab (std only): a server, a connection storm and a bulk transfer.
//!
//! They run as the hidden `scrubber peer …` subcommand inside the lab's namespaces, so the TCP
//! stacks on both ends are the Linux kernel's.
//!
//! * [`serve`]: a threaded TCP server. Minimal HTTP/1.0 and 1.1 `GET` (`/` a small page,
//!   `/bytes/N` N deterministic pseudorandom bytes), usable by curl and wrk (HTTP/1.1
//!   keep-alive is honoured). Raw mode for transfers: the client sends `PUT N\n` and N bytes,
//!   the server answers `OK <xxh3-128 hex>\n`; or `GET N\n`, and the server sends N bytes.
//! * [`connect`]: N short connections (HTTP/1.0 `GET /`, the server closes first), optionally
//!   paced to R per second over P threads; reports ok / failed / stalled (> 1 s) and latency.
//! * [`transfer`]: one bulk transfer up or down; the receiver hashes, the hashes are compared.
//!
//! The payload bytes are a fixed pseudorandom stream ([`pattern_fill`]): byte *k* of every
//! transfer is the same, so either side can compute the expected hash of N bytes on its own.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::Xxh3;

/// Errors of the peers.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: is another server using the port, or is the address not on this host?")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A size such as `50M` could not be parsed.
    #[error("bad size '{0}': use a number with an optional K, M or G suffix (powers of 1024), e.g. 50M")]
    BadSize(String),
    /// Some other argument is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Largest body `/bytes/N` or a raw `GET N` serves, and largest raw `PUT N` accepted: 16 GiB.
pub const MAX_BYTES: u64 = 16 << 30;
/// Largest HTTP request head accepted (bytes up to the blank line).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most connections served at once; more are closed at once.
pub const MAX_CONNS: usize = 2048;
/// A connection that took longer than this is reported as stalled.
pub const STALL: Duration = Duration::from_secs(1);

const PAGE: &[u8] = b"<html><body><h1>scrubber lab server</h1><p>hello</p></body></html>\n";

// ---------------------------------------------------------------------------------------------
// The payload stream.

fn mix(mut z: u64) -> u64 {
    // splitmix64 finaliser.
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fill `buf` with bytes `offset .. offset + buf.len()` of the fixed pseudorandom stream.
pub fn pattern_fill(offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0;
    while i < buf.len() {
        let word = mix(pos / 8).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[start..start + n]);
        i += n;
        pos += n as u64;
    }
}

/// The xxh3-128 hash of the first `n` bytes of the stream.
pub fn pattern_hash(n: u64) -> u128 {
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0;
    while off < n {
        let len = (n - off).min(buf.len() as u64) as usize;
        pattern_fill(off, &mut buf[..len]);
        h.update(&buf[..len]);
        off += len as u64;
    }
    h.digest128()
}

fn send_pattern(w: &mut impl Write, n: u64, hash: Option<&mut Xxh3>, pace: Option<u64>) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0;
    let mut hash = hash;
    let t0 = Instant::now();
    while off < n {
        wait_pace(t0, off, pace);
        let len = (n - off).min(buf.len() as u64) as usize;
        pattern_fill(off, &mut buf[..len]);
        if let Some(h) = hash.as_deref_mut() {
            h.update(&buf[..len]);
        }
        w.write_all(&buf[..len])?;
        off += len as u64;
    }
    w.flush()
}

/// With a pace of `bytes_per_s`, sleep until `done` bytes are due since `t0`.
fn wait_pace(t0: Instant, done: u64, pace: Option<u64>) {
    if let Some(r) = pace.filter(|r| *r > 0) {
        let due = Duration::from_secs_f64(done as f64 / r as f64);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// Read exactly `n` bytes, hashing them; fails on early EOF.
fn recv_hash(r: &mut impl Read, n: u64, pace: Option<u64>) -> io::Result<u128> {
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let t0 = Instant::now();
    while got < n {
        wait_pace(t0, got, pace);
        let want = (n - got).min(buf.len() as u64) as usize;
        let k = r.read(&mut buf[..want])?;
        if k == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed after {got} of {n} bytes"),
            ));
        }
        h.update(&buf[..k]);
        got += k as u64;
    }
    Ok(h.digest128())
}

/// Parse a byte count: `123`, `64K`, `50M`, `1G` (K/M/G are powers of 1024; a trailing `B` or
/// `iB` is accepted).
pub fn parse_size(s: &str) -> Result<u64, PeerError> {
    let t = s.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).ok_or_else(|| PeerError::BadSize(s.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Server.

/// Requests the server answered, counted for the tests (written as JSON to a file).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServedCounts {
    /// HTTP requests whose head was read (answered or not).
    pub requests: u64,
    /// Of those, requests with a header line longer than 1 KiB or a head over [`MAX_HEAD`]:
    /// what a junk-header flood looks like at the server.
    pub junk: u64,
    /// Request heads the connection lost (reset or closed) before their blank line: not
    /// counted in `requests` (the server never got the request).
    pub cut: u64,
    /// Requests by source address.
    pub by_source: BTreeMap<String, u64>,
}

/// The live counts behind [`ServedCounts`].
#[derive(Debug, Default)]
struct Counting {
    junk: AtomicU64,
    cut: AtomicU64,
    by_source: Mutex<BTreeMap<std::net::IpAddr, u64>>,
}

impl Counting {
    fn snapshot(&self) -> ServedCounts {
        let m = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        ServedCounts {
            requests: m.values().sum(),
            junk: self.junk.load(Ordering::Relaxed),
            cut: self.cut.load(Ordering::Relaxed),
            by_source: m.iter().map(|(a, n)| (a.to_string(), *n)).collect(),
        }
    }

    fn write(&self, path: &std::path::Path) {
        let tmp = path.with_extension("tmp");
        if let Ok(j) = serde_json::to_vec(&self.snapshot()) {
            if std::fs::write(&tmp, j).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
}

/// Serve on `listen` until `stop` is set (checked about every 100 ms). Each connection gets a
/// thread; at most [`MAX_CONNS`] at once.
pub fn serve(listen: SocketAddr, stop: Arc<AtomicBool>) -> Result<(), PeerError> {
    serve_counting(listen, stop, None)
}

/// [`serve`], writing [`ServedCounts`] to `counts` about every 200 ms and at the end.
pub fn serve_counting(
    listen: SocketAddr,
    stop: Arc<AtomicBool>,
    counts: Option<std::path::PathBuf>,
) -> Result<(), PeerError> {
    let l = TcpListener::bind(listen).map_err(|source| PeerError::Listen { addr: listen, source })?;
    l.set_nonblocking(true).map_err(|source| PeerError::Listen { addr: listen, source })?;
    let live = Arc::new(AtomicUsize::new(0));
    let counting = counts.as_ref().map(|_| Arc::new(Counting::default()));
    let mut last_write = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let (Some(p), Some(c)) = (&counts, &counting) {
            if last_write.elapsed() >= Duration::from_millis(200) {
                c.write(p);
                last_write = Instant::now();
            }
        }
        match l.accept() {
            Ok((s, _)) => {
                if live.load(Ordering::Relaxed) >= MAX_CONNS {
                    drop(s);
                    continue;
                }
                live.fetch_add(1, Ordering::Relaxed);
                let live = Arc::clone(&live);
                let counting = counting.clone();
                let spawned = std::thread::Builder::new().name("peer-conn".into()).spawn(move || {
                    let _ = handle_conn(s, counting.as_deref());
                    live.fetch_sub(1, Ordering::Relaxed);
                });
                if spawned.is_err() {
                    // Out of threads: the connection was dropped with the closure.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    if let (Some(p), Some(c)) = (&counts, &counting) {
        c.write(p);
    }
    Ok(())
}

fn handle_conn(s: TcpStream, counting: Option<&Counting>) -> io::Result<()> {
    let peer = s.peer_addr().map(|a| a.ip().to_canonical()).ok();
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    let _ = s.set_nodelay(true);
    let mut w = s.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, s);
    loop {
        let mut line = Vec::new();
        let n = (&mut r).take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let mut parts = text.split_whitespace();
        let (method, arg, version) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());
        match (method, version) {
            ("GET", Some(v)) if arg.starts_with('/') => {
                let mut junk = false;
                let mut complete = false;
                let keep = http_request(&mut r, &mut w, arg, v, &mut junk, &mut complete);
                if let (Some(c), Some(ip)) = (counting, peer) {
                    if complete {
                        *c.by_source.lock().unwrap_or_else(|e| e.into_inner()).entry(ip).or_insert(0) += 1;
                        if junk {
                            c.junk.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        c.cut.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let keep = keep?;
                if !keep {
                    w.flush()?;
                    return Ok(());
                }
            }
            ("PUT", None) => {
                let Ok(n) = arg.parse::<u64>() else { return w.write_all(b"ERR bad size\n") };
                if n > MAX_BYTES {
                    return w.write_all(b"ERR too large\n");
                }
                let h = recv_hash(&mut r, n, None)?;
                w.write_all(format!("OK {h:032x}\n").as_bytes())?;
                return w.flush();
            }
            ("GET", None) => {
                let Ok(n) = arg.parse::<u64>() else { return w.write_all(b"ERR bad size\n") };
                if n > MAX_BYTES {
                    return w.write_all(b"ERR too large\n");
                }
                send_pattern(&mut w, n, None, None)?;
                return Ok(());
            }
            _ => {
                let _ = w.write_all(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                return Ok(());
            }
        }
    }
}

/// Answer one HTTP GET (request line already read). Returns whether to keep the connection.
fn http_request(
    r: &mut impl BufRead,
    w: &mut impl Write,
    path: &str,
    version: &str,
    junk: &mut bool,
    complete: &mut bool,
) -> io::Result<bool> {
    let mut head = 0usize;
    let mut close = version != "HTTP/1.1";
    loop {
        let mut line = Vec::new();
        let n = r.take((MAX_HEAD - head.min(MAX_HEAD)) as u64 + 1).read_until(b'\n', &mut line)?;
        head += n;
        *junk |= n > 1024 || head > MAX_HEAD;
        if head > MAX_HEAD {
            // Read to its limit: the server got (and refuses) the request.
            *complete = true;
        }
        if n == 0 || head > MAX_HEAD {
            return Ok(false);
        }
        let l = String::from_utf8_lossy(&line).to_ascii_lowercase();
        if l.trim().is_empty() {
            *complete = true;
            break;
        }
        if let Some(v) = l.strip_prefix("connection:") {
            let v = v.trim();
            if v == "close" {
                close = true;
            } else if v == "keep-alive" {
                close = false;
            }
        }
    }
    let conn = if close { "close" } else { "keep-alive" };
    let proto = if version == "HTTP/1.1" { "HTTP/1.1" } else { "HTTP/1.0" };
    if path == "/" || path == "/index.html" {
        let hdr = format!(
            "{proto} 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
            PAGE.len()
        );
        let mut msg = hdr.into_bytes();
        msg.extend_from_slice(PAGE);
        w.write_all(&msg)?;
    } else if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse::<u64>().ok()).filter(|&n| n <= MAX_BYTES)
    {
        let hdr = format!(
            "{proto} 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\nConnection: {conn}\r\n\r\n"
        );
        w.write_all(hdr.as_bytes())?;
        send_pattern(w, n, None, None)?;
    } else {
        let body = b"not found\n";
        let hdr = format!(
            "{proto} 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
            body.len()
        );
        w.write_all(hdr.as_bytes())?;
        w.write_all(body)?;
    }
    w.flush()?;
    Ok(!close)
}

// ---------------------------------------------------------------------------------------------
// Connection storm.

/// What [`connect`] does.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// The server.
    pub to: SocketAddr,
    /// How many connections in total.
    pub count: u64,
    /// Pace: new connections per second (`None`: as fast as the threads go).
    pub rate: Option<f64>,
    /// Threads opening connections.
    pub parallel: usize,
    /// Limit per connection (connect, and then the whole exchange).
    pub timeout: Duration,
    /// Print `progress ok=… failed=… stalled=…` to stderr every second.
    pub progress: bool,
    /// Open no new connection after this long (`None`: until `count` are done).
    pub duration: Option<Duration>,
}

/// The result of [`connect`] (printed as JSON by `scrubber peer connect`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ConnectReport {
    /// Connections that completed with a full, correct HTTP response.
    pub ok: u64,
    /// Connections that failed (refused, reset, timed out, bad response).
    pub failed: u64,
    /// Successful connections that took longer than 1 s (e.g. a SYN retransmission).
    pub stalled: u64,
    /// Median duration of successful connections, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile duration of successful connections, in milliseconds.
    pub p99_ms: f64,
    /// Longest successful connection, in milliseconds.
    pub max_ms: f64,
    /// Wall time of the whole run, in seconds.
    pub secs: f64,
    /// Failures by kind (at most a few kinds kept).
    pub errors: BTreeMap<String, u64>,
}

/// Open `count` short connections (HTTP/1.0 `GET /`, read to the server's close) and report.
pub fn connect(o: &ConnectOptions) -> Result<ConnectReport, PeerError> {
    if o.parallel == 0 || o.parallel > 1024 {
        return Err(PeerError::Invalid(format!("--parallel {}: use 1-1024", o.parallel)));
    }
    if let Some(r) = o.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(PeerError::Invalid(format!("--rate {r}: use a positive number of connections per second")));
        }
    }
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stalled = Arc::new(AtomicU64::new(0));
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let progress = o.progress.then(|| {
        let (ok, failed, stalled, done) =
            (Arc::clone(&ok), Arc::clone(&failed), Arc::clone(&stalled), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut tick = Instant::now();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if tick.elapsed() >= Duration::from_secs(1) {
                    tick = Instant::now();
                    eprintln!(
                        "progress ok={} failed={} stalled={}",
                        ok.load(Ordering::Relaxed),
                        failed.load(Ordering::Relaxed),
                        stalled.load(Ordering::Relaxed)
                    );
                }
            }
        })
    });
    let mut threads = Vec::with_capacity(o.parallel);
    for _ in 0..o.parallel {
        let (next, ok, failed, stalled, errors) =
            (Arc::clone(&next), Arc::clone(&ok), Arc::clone(&failed), Arc::clone(&stalled), Arc::clone(&errors));
        let o = o.clone();
        threads.push(std::thread::spawn(move || {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= o.count || o.duration.is_some_and(|d| start.elapsed() >= d) {
                    break;
                }
                if let Some(rate) = o.rate {
                    let at = start + Duration::from_secs_f64(i as f64 / rate);
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at - now);
                    }
                }
                let t0 = Instant::now();
                match one_get(o.to, o.timeout) {
                    Ok(()) => {
                        let d = t0.elapsed();
                        if d > STALL {
                            stalled.fetch_add(1, Ordering::Relaxed);
                        }
                        ok.fetch_add(1, Ordering::Relaxed);
                        lat.push(d.as_secs_f64() * 1e3);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut m) = errors.lock() {
                            let k = error_kind(&e);
                            if m.len() < 8 || m.contains_key(&k) {
                                *m.entry(k).or_insert(0) += 1;
                            }
                        }
                    }
                }
            }
            lat
        }));
    }
    let mut lat: Vec<f64> = Vec::new();
    for t in threads {
        if let Ok(l) = t.join() {
            lat.extend(l);
        }
    }
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.join();
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let idx = ((lat.len() as f64 - 1.0) * q).round() as usize;
        lat[idx.min(lat.len() - 1)]
    };
    let errors = errors.lock().map(|m| m.clone()).unwrap_or_default();
    Ok(ConnectReport {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        stalled: stalled.load(Ordering::Relaxed),
        p50_ms: round3(pct(0.5)),
        p99_ms: round3(pct(0.99)),
        max_ms: round3(lat.last().copied().unwrap_or(0.0)),
        secs: round3(start.elapsed().as_secs_f64()),
        errors,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn error_kind(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::Other | io::ErrorKind::InvalidData => e.to_string(),
        k => format!("{k:?}"),
    }
}

fn one_get(to: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect_timeout(&to, timeout)?;
    let _ = s.set_nodelay(true);
    let left = |d: Instant| d.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    s.set_write_timeout(Some(left(deadline)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: lab\r\nUser-Agent: scrubber-peer\r\n\r\n")?;
    let mut resp = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    loop {
        s.set_read_timeout(Some(left(deadline)))?;
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if resp.len() + n > 1 << 20 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "response too long"));
        }
        resp.extend_from_slice(&buf[..n]);
    }
    check_page(&resp)
}

fn check_page(resp: &[u8]) -> io::Result<()> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(bad(if resp.is_empty() { "empty response" } else { "truncated response head" }));
    };
    let head = String::from_utf8_lossy(&resp[..split]);
    if !(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200")) {
        return Err(bad("response status is not 200"));
    }
    if &resp[split + 4..] != PAGE {
        return Err(bad("response body differs from the page served"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Bulk transfer.

/// Direction of a [`transfer`], seen from the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// Client to server (`PUT N`).
    Up,
    /// Server to client (`GET N`).
    Down,
}

/// The result of [`transfer`] (printed as JSON by `scrubber peer transfer`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TransferReport {
    /// Bytes that were to be moved.
    pub bytes: u64,
    /// Whether the receiver's hash matched the sender's.
    pub hash_ok: bool,
    /// Wall time, in seconds.
    pub secs: f64,
    /// Throughput in Mbit/s (0 when the transfer failed).
    pub mbit_s: f64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// Move `bytes` bytes to or from the server at `to`; every read or write may take at most
/// `idle` (a stall longer than that fails the transfer). With `pace` (bytes per second) the
/// client sends or reads no faster than that (a long transfer to restart a scrubber under).
pub fn transfer(to: SocketAddr, bytes: u64, dir: Dir, idle: Duration, pace: Option<u64>) -> TransferReport {
    let t0 = Instant::now();
    let res = transfer_inner(to, bytes, dir, idle, pace);
    let secs = t0.elapsed().as_secs_f64();
    match res {
        Ok(hash_ok) => TransferReport {
            bytes,
            hash_ok,
            secs: round3(secs),
            mbit_s: if secs > 0.0 { round3(bytes as f64 * 8.0 / secs / 1e6) } else { 0.0 },
            error: (!hash_ok).then(|| "hash mismatch: the data arrived corrupted".to_string()),
        },
        Err(e) => TransferReport { bytes, hash_ok: false, secs: round3(secs), mbit_s: 0.0, error: Some(e.to_string()) },
    }
}

fn transfer_inner(to: SocketAddr, bytes: u64, dir: Dir, idle: Duration, pace: Option<u64>) -> io::Result<bool> {
    let s = TcpStream::connect_timeout(&to, idle)?;
    s.set_read_timeout(Some(idle))?;
    s.set_write_timeout(Some(idle))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    match dir {
        Dir::Up => {
            w.write_all(format!("PUT {bytes}\n").as_bytes())?;
            let mut h = Xxh3::new();
            send_pattern(&mut w, bytes, Some(&mut h), pace)?;
            let mut line = String::new();
            (&mut r).take(256).read_line(&mut line)?;
            let _ = w.shutdown(Shutdown::Both);
            let want = format!("OK {:032x}", h.digest128());
            if line.trim().starts_with("ERR") || line.is_empty() {
                return Err(io::Error::other(format!("server answered '{}'", line.trim())));
            }
            Ok(line.trim() == want)
        }
        Dir::Down => {
            w.write_all(format!("GET {bytes}\n").as_bytes())?;
            let got = recv_hash(&mut r, bytes, pace)?;
            // Nothing may follow.
            let mut extra = [0u8; 1];
            let trailing = r.read(&mut extra).map(|n| n > 0).unwrap_or(false);
            Ok(!trailing && got == pattern_hash(bytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn pattern_is_position_addressable() {
        let mut whole = vec![0u8; 1000];
        pattern_fill(0, &mut whole);
        for split in [0, 1, 7, 8, 9, 333, 999, 1000] {
            let mut a = vec![0u8; split];
            let mut b = vec![0u8; 1000 - split];
            pattern_fill(0, &mut a);
            pattern_fill(split as u64, &mut b);
            a.extend_from_slice(&b);
            assert_eq!(a, whole, "split at {split}");
        }
        // Not a constant or short cycle.
        assert_ne!(whole[..8], whole[8..16]);
        assert_ne!(pattern_hash(1000), pattern_hash(999));
        assert_eq!(pattern_hash(1000), xxhash_rust::xxh3::xxh3_128(&whole));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50M").unwrap(), 50 << 20);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("2MB").unwrap(), 2 << 20);
        for bad in ["", "M", "x1", "-1", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    fn server() -> (SocketAddr, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        // Find a free port on loopback, then serve on it.
        let probe = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let h = std::thread::spawn(move || serve(addr, s2).unwrap());
        for _ in 0..100 {
            if TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (addr, stop, h)
    }

    #[test]
    fn loopback_peers() {
        let (addr, stop, h) = server();
        let rep = connect(&ConnectOptions {
            to: addr,
            count: 200,
            rate: None,
            parallel: 4,
            timeout: Duration::from_secs(5),
            progress: false,
            duration: None,
        })
        .unwrap();
        assert_eq!((rep.ok, rep.failed), (200, 0), "{rep:?}");
        assert!(rep.p50_ms > 0.0 && rep.p99_ms >= rep.p50_ms && rep.max_ms >= rep.p99_ms);

        for dir in [Dir::Up, Dir::Down] {
            let t = transfer(addr, 3 << 20, dir, Duration::from_secs(10), None);
            assert!(t.hash_ok && t.error.is_none(), "{dir:?}: {t:?}");
            // Paced: 1 MiB at 4 MiB/s takes a quarter of a second at least.
            let p = transfer(addr, 1 << 20, dir, Duration::from_secs(10), Some(4 << 20));
            assert!(p.hash_ok && p.secs >= 0.2, "{dir:?} paced: {p:?}");
        }

        // HTTP /bytes/N and 404 with keep-alive.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /bytes/100 HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut want = vec![0u8; 100];
        pattern_fill(0, &mut want);
        assert_eq!(&all[split..split + 100], &want[..]);
        assert!(String::from_utf8_lossy(&all[split + 100..]).starts_with("HTTP/1.1 404"));

        // A server that sends wrong bytes is caught: nothing listens on a closed port.
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        let t = transfer(addr, 1000, Dir::Down, Duration::from_secs(2), None);
        assert!(!t.hash_ok && t.error.is_some());
        let rep = connect(&ConnectOptions {
            to: addr,
            count: 3,
            rate: Some(100.0),
            parallel: 1,
            timeout: Duration::from_secs(1),
            progress: false,
            duration: None,
        })
        .unwrap();
        assert_eq!((rep.ok, rep.failed), (0, 3));
    }

    #[test]
    fn page_check_rejects_bad_responses() {
        assert!(check_page(b"").is_err());
        assert!(check_page(b"HTTP/1.0 500 X\r\n\r\n").is_err());
        let mut ok = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
        ok.extend_from_slice(PAGE);
        assert!(check_page(&ok).is_ok());
        ok.pop();
        assert!(check_page(&ok).is_err());
    }
}
