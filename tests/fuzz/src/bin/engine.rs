//! The engine on random frame sequences, both directions, one frame at a time and in batches,
//! in proxy mode with a rule-file policy: never panics, frames stay inside their buffers.
use scrubber::engine::{Direction, Engine, EngineConfig, FrameBuf, Job, Protected, SynMode, MAX_BATCH};

fn engine(mode: SynMode) -> Engine {
    Engine::new(EngineConfig {
        protect: vec![
            Protected { addr: "198.18.0.10".parse().unwrap(), port: Some(80) },
            Protected { addr: "2001:2::10".parse().unwrap(), port: None },
        ],
        syn_mode: mode,
        table_capacity: 1 << 10,
        cookie_key: *b"fuzz-cookie-key!",
        ..EngineConfig::default()
    })
    .unwrap()
}

fn main() {
    let mut proxy = engine(SynMode::Proxy);
    let mut track = engine(SynMode::Track);
    let mut now = 1_767_225_600u64 * 1_000_000_000;
    afl::fuzz!(|data: &[u8]| {
        let mut bufs: Vec<(Direction, Vec<u8>, usize)> = Vec::new();
        for (outbound, f) in scrubber_fuzz::frames(data) {
            let dir = if outbound { Direction::Outbound } else { Direction::Inbound };
            let mut buf = vec![0u8; 2048.max(f.len() + 256)];
            buf[..f.len()].copy_from_slice(f);
            bufs.push((dir, buf, f.len()));
        }
        // One by one (proxy engine).
        for (dir, buf, len) in &bufs {
            now += 1_000_003;
            let mut b = buf.clone();
            let mut x = vec![0u8; 2048];
            let mut f = FrameBuf { buf: &mut b, len: *len };
            let mut e = FrameBuf { buf: &mut x, len: 0 };
            let _ = proxy.process(now, *dir, &mut f, &mut e);
            assert!(f.len <= f.buf.len() && e.len <= e.buf.len());
        }
        // As batches (track engine).
        for chunk in bufs.chunks_mut(MAX_BATCH) {
            now += 7_000_001;
            let mut extras: Vec<Vec<u8>> = chunk.iter().map(|_| vec![0u8; 2048]).collect();
            let mut jobs: Vec<Job<'_>> = chunk
                .iter_mut()
                .zip(extras.iter_mut())
                .map(|((dir, buf, len), x)| Job::new(now, *dir, buf, *len, x))
                .collect();
            track.process_batch(&mut jobs);
        }
    });
}
