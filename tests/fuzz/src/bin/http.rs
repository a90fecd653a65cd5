//! The HTTP request-stream checker on arbitrary bytes, cut into segments where the input says:
//! never panics, and the verdict does not depend on the cuts.
use rulespec::HttpCheck;
use scrubber::engine::http::{feed, HttpLimits, HttpState};

fn run(l: &HttpLimits, parts: &[&[u8]]) -> Result<u32, scrubber::engine::http::Violation> {
    let mut st = HttpState::open(1, 0, 0);
    let mut n = 0;
    for p in parts {
        n += feed(&mut st, l, p, &mut || true)?.requests;
    }
    Ok(n)
}

fn main() {
    let l = HttpLimits::new(&HttpCheck {
        max_header_bytes: 2048,
        max_header_line: 512,
        max_headers: 16,
        methods: vec!["GET".into(), "HEAD".into(), "POST".into()],
        ban: None,
    });
    afl::fuzz!(|data: &[u8]| {
        // The first byte says where to cut (every n-th byte), the rest is the stream.
        let Some((&cut, stream)) = data.split_first() else { return };
        let step = usize::from(cut.max(1));
        let parts: Vec<&[u8]> = stream.chunks(step).collect();
        assert_eq!(run(&l, &[stream]), run(&l, &parts));
    });
}
