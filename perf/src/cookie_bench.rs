//! `scrubber-perf cookies`: how often a forged ACK validates as a SYN cookie, measured.
//!
//! Random ACKs — random sources in 198.18.0.0/15, random ports, sequence and acknowledgement
//! numbers (and TSecr) — towards one protected service, checked exactly as the engine's batch
//! path checks untracked ACKs: the batch's MACs computed together (`SynCookies::mac_many`), then
//! `SynCookies::validate` per ACK with its memo. Four kinds, as a flood would send them:
//!
//! * `ack_psh`: ACK-PSH without timestamps — one try (ISN = seq − 1);
//! * `bare_ack`: bare ACK without timestamps — two tries (also ISN = seq, a zero-window probe);
//! * `ack_psh_ts`: ACK-PSH with a random TSecr — mostly refused as stale before any MAC;
//! * `ack_psh_ts_clock`: ACK-PSH with a TSecr carrying the current clock — only the 41 MAC bits
//!   stand in the way.
//!
//! Each row gives the accepted count, the rate per 10⁹, the rate the design predicts, and the
//! validation speed. A benchmark, not a test: it takes about a minute for 10⁹ ACKs per kind.

use scrubber::engine::cookie::{CookieKey, MacMemo, MacRequest, SynCookies};
use scrubber::engine::flow::FlowKey;
use std::time::Instant;

/// Options of `scrubber-perf cookies`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Forged ACKs per kind.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub acks: u64,
    /// Measure only these kinds (comma-separated: ack_psh, bare_ack, ack_psh_ts, ack_psh_ts_clock).
    #[arg(long, value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// Pin to this CPU core.
    #[arg(long)]
    pub core: Option<usize>,
    /// One JSON object per kind.
    #[arg(long)]
    pub json: bool,
}

/// One measured kind.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    pub kind: &'static str,
    pub acks: u64,
    pub accepted: u64,
    pub per_billion: f64,
    pub expected_per_billion: f64,
    pub million_per_second: f64,
}

struct Rng(u64);
impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

const KINDS: [(&str, bool, bool, bool); 4] = [
    // (name, bare ACK (two tries), timestamps, TSecr with the current clock)
    ("ack_psh", false, false, false),
    ("bare_ack", true, false, false),
    ("ack_psh_ts", false, true, false),
    ("ack_psh_ts_clock", false, true, true),
];

/// Predicted acceptance per ACK: 2^-29 per try without timestamps; with, 2^-41 per try times
/// the chance that a random TSecr's clock is inside the validity window.
fn expected(bare: bool, ts: bool, clock: bool, slot_secs: u32) -> f64 {
    let tries = if bare { 2.0 } else { 1.0 };
    if !ts {
        tries * 2f64.powi(-29)
    } else {
        let window = if clock { 1.0 } else { (2.0 * f64::from(slot_secs) + 2.0) / 8192.0 };
        tries * 2f64.powi(-41) * window
    }
}

/// Run the measurement.
pub fn run(args: &Args, progress: &mut dyn FnMut(&str)) -> Vec<Row> {
    let slot_secs = 64;
    let now: u64 = 1_767_225_600 * 1_000_000_000 + 123_456_789;
    let clock = (((now / 1_000_000_000) as u32) & 0x1fff) << 19;
    let mut rows = Vec::new();
    for (kind, bare, ts, with_clock) in KINDS {
        if !args.kinds.is_empty() && !args.kinds.iter().any(|k| k == kind) {
            continue;
        }
        progress(&format!("{kind}: {} forged ACKs", args.acks));
        let mut c = SynCookies::new(CookieKey::from_bytes(*b"forgery-odds-key"), slot_secs);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ kind.len() as u64);
        const B: usize = 64;
        let mut flows = [FlowKey::default(); B];
        let mut acks = [(0u32, 0u32, None::<u32>); B];
        let mut reqs = [MacRequest::EMPTY; 2 * B];
        let mut macs = [0u128; 2 * B];
        let mut of = [(0usize, 0usize); 2 * B];
        let mut memos = [MacMemo::EMPTY; B];
        let mut accepted = 0u64;
        let mut done = 0u64;
        let start = Instant::now();
        let mut last = Instant::now();
        while done < args.acks {
            let n = B.min((args.acks - done) as usize);
            let mut m = 0;
            for k in 0..n {
                let r = rng.next();
                let src = 0xc612_0000u32 | (r as u32 & 0x1_ffff); // 198.18.0.0/15
                flows[k] = FlowKey::v4(src.to_be_bytes(), (r >> 17) as u16, [198, 18, 0, 10], 80);
                let r2 = rng.next();
                let tsecr =
                    ts.then_some(if with_clock { clock | (r2 >> 32) as u32 & 0x7ffff } else { (r2 >> 32) as u32 });
                acks[k] = (r2 as u32, (r >> 33) as u32, tsecr);
                memos[k] = MacMemo::EMPTY;
                let (seq, ack, tsecr) = acks[k];
                for (t, isn) in [seq.wrapping_sub(1), seq].into_iter().enumerate() {
                    if t == 1 && !bare {
                        break;
                    }
                    if let Some(q) = c.batch_request(now, &flows[k], isn, ack.wrapping_sub(1), tsecr) {
                        reqs[m] = q;
                        of[m] = (k, t);
                        m += 1;
                    }
                }
            }
            c.mac_many(&reqs[..m], &mut macs[..m]);
            for i in 0..m {
                memos[of[i].0].set(of[i].1, reqs[i], macs[i]);
            }
            for k in 0..n {
                c.set_memo(memos[k]);
                let (seq, ack, tsecr) = acks[k];
                let cookie = ack.wrapping_sub(1);
                let ok = c.validate(now, &flows[k], seq.wrapping_sub(1), cookie, tsecr).is_ok()
                    || (bare && c.validate(now, &flows[k], seq, cookie, tsecr).is_ok());
                accepted += u64::from(ok);
            }
            done += n as u64;
            if last.elapsed().as_secs() >= 10 {
                progress(&format!("{kind}: {done} done, {accepted} accepted"));
                last = Instant::now();
            }
        }
        c.set_memo(MacMemo::EMPTY);
        let el = start.elapsed().as_secs_f64();
        rows.push(Row {
            kind,
            acks: done,
            accepted,
            per_billion: accepted as f64 * 1e9 / done as f64,
            expected_per_billion: expected(bare, ts, with_clock, slot_secs) * 1e9,
            million_per_second: done as f64 / el / 1e6,
        });
    }
    rows
}
