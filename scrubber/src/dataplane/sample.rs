//! Sampled frames for `scrubber run --sample-dir`: a worker copies 1 in N frames of a verdict
//! class (drops, passes, ICMP) into its own lock-free queue; a control thread writes them to
//! pcapng files (`control::samples`). A full queue loses the sample (counted), never a frame;
//! nothing here does I/O.

use crossbeam::queue::ArrayQueue;

use crate::engine::Verdict;

/// Bytes of a frame kept (headers and the start of the payload).
pub const SNAP: usize = 512;
/// Samples a worker's queue holds.
pub const QUEUE: usize = 1024;

/// One sampled frame.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When (ns since the Unix epoch).
    pub ts_ns: u64,
    /// Arrived on ext (`false`) or int (`true`).
    pub from_int: bool,
    /// The verdict: a drop reason's index, or `u8::MAX` for a frame that passed.
    pub reason: u8,
    /// The frame's length on the wire.
    pub len: u16,
    /// Bytes kept (`min(len, SNAP)`).
    pub caplen: u16,
    /// The first bytes.
    pub data: [u8; SNAP],
}

/// How often each class is sampled: 1 in N (0: never).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleRates {
    /// Dropped frames (any reason).
    pub drop: u32,
    /// Frames that passed.
    pub pass: u32,
    /// ICMP and ICMPv6 frames, passed or dropped (sampled apart from the others).
    pub icmp: u32,
}

impl Default for SampleRates {
    /// 1 in 1,000 drops, no passes, 1 in 100 ICMP.
    fn default() -> Self {
        SampleRates { drop: 1000, pass: 0, icmp: 100 }
    }
}

impl SampleRates {
    /// Parse `drop=1000,pass=0,icmp=100` (any subset; the others keep their defaults).
    pub fn parse(s: &str) -> Result<SampleRates, String> {
        let mut r = SampleRates::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| format!("'{part}': give CLASS=N, e.g. drop=1000"))?;
            let n: u32 =
                v.trim().parse().map_err(|_| format!("'{part}': N must be a whole number (1 in N; 0 = never)"))?;
            match k.trim() {
                "drop" => r.drop = n,
                "pass" => r.pass = n,
                "icmp" => r.icmp = n,
                other => return Err(format!("unknown class '{other}': the classes are drop, pass and icmp")),
            }
        }
        Ok(r)
    }
}

/// A worker's sampling counters.
#[derive(Clone, Debug)]
pub struct Sampler {
    rates: SampleRates,
    seen: [u32; 3],
}

/// Whether an Ethernet frame (untagged or with one tag) carries ICMP or ICMPv6.
#[inline]
fn is_icmp(f: &[u8]) -> bool {
    let (et, l3) = match f.get(12..14) {
        Some([0x81, 0x00]) => (f.get(16..18), 18),
        _ => (f.get(12..14), 14),
    };
    match et {
        Some([0x08, 0x00]) => f.get(l3 + 9) == Some(&1),
        Some([0x86, 0xdd]) => f.get(l3 + 6) == Some(&58),
        _ => false,
    }
}

impl Sampler {
    /// A sampler at `rates`.
    pub fn new(rates: SampleRates) -> Sampler {
        Sampler { rates, seen: [0; 3] }
    }

    /// Whether to sample `frame`, judged `v` (counts it either way).
    #[inline]
    pub fn want(&mut self, frame: &[u8], v: Verdict) -> bool {
        let (class, every) = if self.rates.icmp > 0 && is_icmp(frame) {
            (2, self.rates.icmp)
        } else if matches!(v, Verdict::Drop(_)) {
            (0, self.rates.drop)
        } else {
            (1, self.rates.pass)
        };
        if every == 0 {
            return false;
        }
        self.seen[class] += 1;
        if self.seen[class] >= every {
            self.seen[class] = 0;
            true
        } else {
            false
        }
    }
}

/// Copy `frame` into a sample and queue it; `false` when the queue was full.
#[inline]
pub fn push(q: &ArrayQueue<Sample>, ts_ns: u64, from_int: bool, v: Verdict, frame: &[u8]) -> bool {
    let caplen = frame.len().min(SNAP);
    let mut s = Sample {
        ts_ns,
        from_int,
        reason: match v {
            Verdict::Drop(r) => r.index() as u8,
            _ => u8::MAX,
        },
        len: frame.len().min(usize::from(u16::MAX)) as u16,
        caplen: caplen as u16,
        data: [0; SNAP],
    };
    s.data[..caplen].copy_from_slice(&frame[..caplen]);
    q.push(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::DropReason;

    #[test]
    fn rates_and_classes() {
        assert_eq!(SampleRates::parse("drop=10,icmp=0").unwrap(), SampleRates { drop: 10, pass: 0, icmp: 0 });
        assert!(SampleRates::parse("drops=1").unwrap_err().contains("drop, pass and icmp"));
        assert!(SampleRates::parse("drop=x").is_err());
        let mut s = Sampler::new(SampleRates { drop: 10, pass: 0, icmp: 2 });
        let tcp = crate::wire::builder::TcpFrame::new(
            "198.19.1.1".parse().unwrap(),
            1,
            "198.18.0.10".parse().unwrap(),
            80,
            crate::wire::tcp::flags::ACK,
        )
        .build();
        let dropped = (0..100).filter(|_| s.want(&tcp, Verdict::Drop(DropReason::AckNoSession))).count();
        let passed = (0..100).filter(|_| s.want(&tcp, Verdict::Forward)).count();
        assert_eq!((dropped, passed), (10, 0));
        let mut icmp = tcp.clone();
        icmp[23] = 1;
        assert!(is_icmp(&icmp) && !is_icmp(&tcp));
        assert_eq!((0..100).filter(|_| s.want(&icmp, Verdict::Forward)).count(), 50);
        let q = ArrayQueue::new(1);
        assert!(push(&q, 1, false, Verdict::Forward, &tcp));
        assert!(!push(&q, 2, false, Verdict::Forward, &tcp), "a full queue refuses");
        let got = q.pop().unwrap();
        assert_eq!((usize::from(got.caplen), got.reason), (tcp.len(), u8::MAX));
    }
}
