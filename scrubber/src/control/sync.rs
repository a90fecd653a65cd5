//! Session streaming between the boxes of a fleet (`scrubber run --sync-listen ADDR --sync-peer
//! ADDR …`): the records every worker's engine makes ([`crate::engine::sync`]) go to every
//! peer in UDP datagrams, and what the peers send goes to the worker that owns each flow here.
//!
//! Off the worker path: the workers move 72-byte records through one pair of lock-free queues
//! each (bounded: a full queue loses records, counted); this thread batches them every 2 ms,
//! up to 18 records a datagram. Authenticated with the fleet's shared cookie secret: every
//! datagram carries a SipHash-2-4 128-bit MAC under a key derived from the secret, a sender id,
//! a sequence number and the time; datagrams with a bad MAC, from more than 30 s away, or not
//! newer than the sender's last are dropped and counted. The boxes must share the secret (they
//! already must, for cookies) and should talk over a management network, not the scrubbed one.
//!
//! Every box also sends an empty datagram (a hello) to every peer once a second. A sender heard
//! for the first time — a box that started (each start draws a new sender id) — or heard again
//! after [`SILENT`] of silence (a partition that healed) makes every worker here walk its table
//! and send all its open sessions (`Engine::start_sync_dump`): a box that rejoins learns the
//! connections its peers carried while it was away before ECMP gives them back to it.

use std::collections::HashMap;
use std::hash::Hasher as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use siphasher::sip128::{Hasher128, SipHasher24};

pub use crate::dataplane::sync::SyncQueues;
use crate::engine::sync::{SyncRecord, RECORD_BYTES};

/// Records in one datagram.
pub const PER_DATAGRAM: usize = 18;
const MAGIC: &[u8; 4] = b"SCSY";
const HEADER: usize = 28;
const MAC: usize = 16;
/// Largest clock difference accepted between peers.
const SKEW_MS: u64 = 30_000;
/// How often a box says hello to its peers.
const HELLO: Duration = Duration::from_secs(1);
/// A peer silent this long and heard again gets every session (see the module's docs); one
/// silent for ten minutes is forgotten.
pub const SILENT: Duration = Duration::from_secs(3);
const FORGET: Duration = Duration::from_secs(600);

/// Where this box listens and whom it tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// UDP address to receive peers' records on (a management address).
    pub listen: SocketAddr,
    /// The peers' listen addresses.
    pub peers: Vec<SocketAddr>,
}

crate::counters! {
    /// The sync thread.
    pub struct SyncNetStats("sync_net") {
        /// Datagrams sent to peers (each to every peer counts once per peer).
        counter "sync" sync_datagrams_sent,
        /// Bytes sent to peers (UDP payload).
        counter "sync" sync_bytes_sent,
        /// Records received from peers and handed to the workers.
        counter "sync" sync_records_received,
        /// Datagrams refused: bad MAC, wrong size, from too far in time, or replayed.
        counter "sync" sync_datagrams_refused,
        /// Records lost because a queue between the workers and the thread was full.
        counter "sync" sync_queue_lost,
        /// Sends that failed (a peer unreachable: counted, retried with the next records).
        counter "sync" sync_send_errors,
        /// Peers that appeared (started, or heard again after a silence): each made every
        /// worker send its whole table.
        counter "sync" sync_peers_joined,
    }
}

#[derive(Debug, Default)]
struct Live {
    sent: AtomicU64,
    bytes: AtomicU64,
    received: AtomicU64,
    refused: AtomicU64,
    send_errors: AtomicU64,
    joined: AtomicU64,
}

/// The running sync thread; stops when dropped.
#[derive(Debug)]
pub struct SyncThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    live: Arc<Live>,
    queues: Arc<SyncQueues>,
}

/// The datagram key derived from the fleet's cookie secret.
pub fn derive_key(cookie_key: &[u8; 16]) -> [u8; 16] {
    let mut h = SipHasher24::new_with_key(cookie_key);
    h.write(b"scrubber session sync v1");
    h.finish128().as_bytes()
}

fn mac(key: &[u8; 16], data: &[u8]) -> [u8; MAC] {
    let mut h = SipHasher24::new_with_key(key);
    h.write(data);
    h.finish128().as_bytes()
}

/// One datagram: header, records, MAC.
pub fn seal(key: &[u8; 16], sender: u32, seq: u64, time_ms: u64, recs: &[[u8; RECORD_BYTES]], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(MAGIC);
    out.push(1);
    out.push(recs.len() as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&sender.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&time_ms.to_be_bytes());
    for r in recs {
        out.extend_from_slice(r);
    }
    let m = mac(key, out);
    out.extend_from_slice(&m);
}

/// The records of a datagram that carries a valid MAC: (sender, seq, time, records).
pub fn open(key: &[u8; 16], d: &[u8]) -> Option<(u32, u64, u64, Vec<[u8; RECORD_BYTES]>)> {
    if d.len() < HEADER + MAC || &d[..4] != MAGIC || d[4] != 1 {
        return None;
    }
    let n = usize::from(d[5]);
    if d.len() != HEADER + n * RECORD_BYTES + MAC {
        return None;
    }
    let (body, m) = d.split_at(d.len() - MAC);
    // Constant-time enough for a 16-byte tag compared once per datagram.
    let want = mac(key, body);
    if want.iter().zip(m).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0 {
        return None;
    }
    let be = |r: std::ops::Range<usize>| body[r].iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
    let (sender, seq, time) = (be(8..12) as u32, be(12..20), be(20..28));
    let recs = body[HEADER..]
        .chunks_exact(RECORD_BYTES)
        .map(|c| {
            let mut r = [0u8; RECORD_BYTES];
            r.copy_from_slice(c);
            r
        })
        .collect();
    Some((sender, seq, time, recs))
}

fn now_ms() -> u64 {
    crate::dataplane::now_ns() / 1_000_000
}

impl SyncThread {
    /// Bind `cfg.listen` and start the thread moving records between `queues` and the peers.
    pub fn start(cfg: &SyncConfig, cookie_key: &[u8; 16], queues: Arc<SyncQueues>) -> std::io::Result<SyncThread> {
        let sock = UdpSocket::bind(cfg.listen)?;
        sock.set_nonblocking(true)?;
        let key = derive_key(cookie_key);
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Live::default());
        let (s2, l2, q2, peers) = (Arc::clone(&stop), Arc::clone(&live), Arc::clone(&queues), cfg.peers.clone());
        let mut sender = [0u8; 4];
        let _ = getrandom::getrandom(&mut sender);
        let sender = u32::from_be_bytes(sender);
        let handle = std::thread::Builder::new()
            .name("scrubber-sync".into())
            .spawn(move || run(sock, key, sender, peers, &q2, &l2, &s2))?;
        Ok(SyncThread { stop, handle: Some(handle), live, queues })
    }

    /// Counters.
    pub fn stats(&self) -> SyncNetStats {
        SyncNetStats {
            sync_datagrams_sent: self.live.sent.load(Relaxed),
            sync_bytes_sent: self.live.bytes.load(Relaxed),
            sync_records_received: self.live.received.load(Relaxed),
            sync_datagrams_refused: self.live.refused.load(Relaxed),
            sync_queue_lost: self.queues.lost.load(Relaxed),
            sync_send_errors: self.live.send_errors.load(Relaxed),
            sync_peers_joined: self.live.joined.load(Relaxed),
        }
    }
}

impl Drop for SyncThread {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(
    sock: UdpSocket,
    key: [u8; 16],
    sender: u32,
    peers: Vec<SocketAddr>,
    q: &SyncQueues,
    live: &Live,
    stop: &AtomicBool,
) {
    let mut seq = 0u64;
    let mut batch: Vec<[u8; RECORD_BYTES]> = Vec::with_capacity(PER_DATAGRAM);
    let mut dgram = Vec::with_capacity(HEADER + PER_DATAGRAM * RECORD_BYTES + MAC);
    let mut buf = vec![0u8; 65_536];
    // Sender id → (last sequence number, when last heard).
    let mut last_seq: HashMap<u32, (u64, Instant)> = HashMap::new();
    let mut hello_at = Instant::now();
    let mut forget_at = Instant::now() + FORGET;
    let workers = q.inp.len();
    let mut send = |batch: &mut Vec<[u8; RECORD_BYTES]>, dgram: &mut Vec<u8>| {
        seq += 1;
        seal(&key, sender, seq, now_ms(), batch, dgram);
        for p in &peers {
            match sock.send_to(dgram, p) {
                Ok(n) => {
                    live.sent.fetch_add(1, Relaxed);
                    live.bytes.fetch_add(n as u64, Relaxed);
                }
                Err(_) => {
                    live.send_errors.fetch_add(1, Relaxed);
                }
            }
        }
        batch.clear();
    };
    while !stop.load(Relaxed) {
        for o in &q.out {
            while let Some(r) = o.pop() {
                batch.push(r);
                if batch.len() == PER_DATAGRAM {
                    send(&mut batch, &mut dgram);
                }
            }
        }
        // What is left, or an empty datagram (a hello) when nothing was sent for a second.
        if !batch.is_empty() || Instant::now() >= hello_at {
            send(&mut batch, &mut dgram);
            hello_at = Instant::now() + HELLO;
        }
        while let Ok((n, _from)) = sock.recv_from(&mut buf) {
            let Some((who, s, t, recs)) = open(&key, &buf[..n]) else {
                live.refused.fetch_add(1, Relaxed);
                continue;
            };
            let now = now_ms();
            let heard = Instant::now();
            let known = last_seq.get(&who).copied();
            if t.abs_diff(now) > SKEW_MS || known.is_some_and(|(l, _)| s <= l) {
                live.refused.fetch_add(1, Relaxed);
                continue;
            }
            if known.is_none_or(|(_, at)| heard.duration_since(at) >= SILENT) {
                // A peer (re)joined: every worker sends it the sessions it may be given.
                q.dump.fetch_add(1, Relaxed);
                live.joined.fetch_add(1, Relaxed);
            }
            last_seq.insert(who, (s, heard));
            for r in recs {
                let Some(rec) = SyncRecord::decode(&r) else { continue };
                let k = rec.key;
                let owner = crate::dataplane::handoff::owner_of(
                    (&k.client_ip, k.client_port),
                    (&k.server_ip, k.server_port),
                    crate::wire::IPPROTO_TCP,
                    workers,
                );
                let dest = if workers <= 1 { 0 } else { owner };
                match q.inp.get(dest).map(|qq| qq.push(r)) {
                    Some(Ok(())) => {
                        live.received.fetch_add(1, Relaxed);
                    }
                    _ => {
                        q.lost.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        if Instant::now() >= forget_at {
            // Sender ids of boxes gone for good (every restart draws a new one).
            last_seq.retain(|_, (_, at)| at.elapsed() < FORGET);
            forget_at = Instant::now() + FORGET;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_authenticated() {
        let key = derive_key(b"fleet-secret-key");
        let recs = [[7u8; RECORD_BYTES], [9u8; RECORD_BYTES]];
        let mut d = Vec::new();
        seal(&key, 42, 5, 1000, &recs, &mut d);
        let (who, seq, t, got) = open(&key, &d).unwrap();
        assert_eq!((who, seq, t, got.len()), (42, 5, 1000, 2));
        assert_eq!(got[1], recs[1]);
        let other = derive_key(b"another-secret!!");
        assert!(open(&other, &d).is_none(), "another fleet's key");
        for i in [0, 10, 40, d.len() - 1] {
            let mut bad = d.clone();
            bad[i] ^= 1;
            assert!(open(&key, &bad).is_none(), "flipped byte {i}");
        }
        assert!(open(&key, &d[..d.len() - 1]).is_none());
    }

    #[test]
    fn two_threads_exchange_records() {
        let key = *b"fleet-secret-key";
        let a_addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        // Bind to learn free ports, then start the threads on them.
        let pa = UdpSocket::bind(a_addr).unwrap().local_addr().unwrap();
        let pb = UdpSocket::bind(a_addr).unwrap().local_addr().unwrap();
        let qa = Arc::new(SyncQueues::new(1));
        let qb = Arc::new(SyncQueues::new(1));
        let ta = SyncThread::start(&SyncConfig { listen: pa, peers: vec![pb] }, &key, Arc::clone(&qa)).unwrap();
        let tb = SyncThread::start(&SyncConfig { listen: pb, peers: vec![pa] }, &key, Arc::clone(&qb)).unwrap();
        let rec = SyncRecord {
            op: crate::engine::sync::SyncOp::Upsert,
            key: crate::engine::flow::FlowKey::v4([198, 18, 11, 2], 4000, [198, 18, 30, 10], 80),
            session: [3; 32],
        };
        for _ in 0..40 {
            qa.out[0].push(rec.encode()).unwrap();
        }
        let mut got = 0;
        for _ in 0..200 {
            while qb.inp[0].pop().is_some() {
                got += 1;
            }
            if got == 40 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, 40);
        assert!(ta.stats().sync_datagrams_sent >= 3, "{:?}", ta.stats());
        assert_eq!(tb.stats().sync_records_received, 40);
        // Each heard the other appear (its hello, or its first records): one walk each.
        for _ in 0..200 {
            if qa.dump.load(Relaxed) == 1 && qb.dump.load(Relaxed) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!((qa.dump.load(Relaxed), qb.dump.load(Relaxed)), (1, 1));
        assert_eq!(ta.stats().sync_peers_joined, 1);
        // B restarts (a new sender id): A walks its table again, once.
        drop(tb);
        let qb2 = Arc::new(SyncQueues::new(1));
        let _tb2 = SyncThread::start(&SyncConfig { listen: pb, peers: vec![pa] }, &key, Arc::clone(&qb2)).unwrap();
        for _ in 0..200 {
            if qa.dump.load(Relaxed) == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(1_200)); // a hello more: still one walk
        assert_eq!(qa.dump.load(Relaxed), 2, "A walks for B's return, once");
        assert_eq!(qb2.dump.load(Relaxed), 1, "the new B walks for A");
    }
}
