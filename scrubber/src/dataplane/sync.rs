//! The queues between the workers and the session-sync thread (`control::sync`): one pair per
//! worker, lock-free and bounded, of 72-byte records ([`crate::engine::sync::SyncRecord`]).

use crossbeam::queue::ArrayQueue;
use std::sync::atomic::AtomicU64;

use crate::engine::sync::RECORD_BYTES;

/// Records per worker queue, each way.
pub const QUEUE: usize = 65_536;

/// The queues between the workers and the sync thread.
#[derive(Debug)]
pub struct SyncQueues {
    /// Worker *i* → the thread: records for the peers.
    pub out: Vec<ArrayQueue<[u8; RECORD_BYTES]>>,
    /// The thread → worker *i*: peers' records for flows it owns.
    pub inp: Vec<ArrayQueue<[u8; RECORD_BYTES]>>,
    /// Records lost because a queue was full.
    pub lost: AtomicU64,
    /// Raised by the thread when a peer (re)joins: every worker then walks its table for it
    /// (`Engine::start_sync_dump`). Read once per poll, written once per peer start.
    pub dump: AtomicU64,
}

impl SyncQueues {
    /// Queues for `workers` workers.
    pub fn new(workers: usize) -> SyncQueues {
        SyncQueues {
            out: (0..workers).map(|_| ArrayQueue::new(QUEUE)).collect(),
            inp: (0..workers).map(|_| ArrayQueue::new(QUEUE)).collect(),
            lost: AtomicU64::new(0),
            dump: AtomicU64::new(0),
        }
    }
}
