//! The HTTP request-stream checker (`engine::http`): golden tables of request streams, cut into
//! segments every way, and a property test over arbitrary bytes.

use proptest::prelude::*;
use rulespec::HttpCheck;
use scrubber::engine::http::{feed, HttpLimits, HttpState, Phase, Violation};

fn limits(methods: &[&str]) -> HttpLimits {
    HttpLimits::new(&HttpCheck {
        max_header_bytes: 8192,
        max_header_line: 4096,
        max_headers: 64,
        methods: methods.iter().map(|m| m.to_string()).collect(),
        ban: None,
    })
}

/// What a stream comes to: the requests started and the final phase, or the violation.
#[derive(Debug, PartialEq)]
enum Out {
    Ok(u32, Phase),
    Bad(Violation),
}

fn run_parts(l: &HttpLimits, parts: &[&[u8]]) -> Out {
    let mut st = HttpState::open(1, 0, 0);
    let mut n = 0;
    for p in parts {
        match feed(&mut st, l, p, &mut || true) {
            Ok(f) => n += f.requests,
            Err(v) => return Out::Bad(v),
        }
    }
    Out::Ok(n, st.phase())
}

/// The stream fed whole, one byte at a time, and cut at every position into two: all alike.
fn run(l: &HttpLimits, stream: &[u8]) -> Out {
    let whole = run_parts(l, &[stream]);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run_parts(l, &bytes), whole, "byte by byte: {:?}", String::from_utf8_lossy(stream));
    for cut in 0..stream.len() {
        let (a, b) = stream.split_at(cut);
        assert_eq!(run_parts(l, &[a, b]), whole, "cut at {cut}: {:?}", String::from_utf8_lossy(stream));
    }
    whole
}

fn junk_headers(n: usize, each: usize) -> Vec<u8> {
    let mut v = b"GET / HTTP/1.1\r\nHost: web\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\n".to_vec();
    for i in 0..n {
        v.extend_from_slice(format!("X-Array-Buffer-{i}: ").as_bytes());
        v.extend(std::iter::repeat_n(b'i', each));
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v
}

#[test]
fn golden_request_streams() {
    let l = limits(&["GET", "HEAD", "POST"]);
    let many_headers: Vec<u8> = {
        let mut v = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..65 {
            v.extend_from_slice(format!("H{i}: x\r\n").as_bytes());
        }
        v.extend_from_slice(b"\r\n");
        v
    };
    let sixty_four: Vec<u8> = {
        let mut v = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..64 {
            v.extend_from_slice(format!("H{i}: x\r\n").as_bytes());
        }
        v.extend_from_slice(b"\r\n");
        v
    };
    let cases: Vec<(&str, Vec<u8>, Out)> = vec![
        ("one GET", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), Out::Ok(1, Phase::Head)),
        ("bare LF line ends", b"GET / HTTP/1.0\nHost: a\n\n".to_vec(), Out::Ok(1, Phase::Head)),
        ("empty line before the request", b"\r\nGET / HTTP/1.1\r\n\r\n".to_vec(), Out::Ok(1, Phase::Head)),
        (
            "keep-alive: a second request",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /b HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
            Out::Ok(2, Phase::Head),
        ),
        (
            "pipelined: three at once",
            b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n".to_vec(),
            Out::Ok(3, Phase::Head),
        ),
        (
            "Content-Length body, then the next request",
            b"POST /f HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello\r\n\r\nGETGET / HTTP/1.1\r\n\r\n".to_vec(),
            Out::Bad(Violation::Method),
        ),
        (
            "Content-Length body skipped unread",
            b"POST /f HTTP/1.1\r\ncontent-length:  11 \r\n\r\n\x00\x01\r\n\r\nBAD \xffGET / HTTP/1.1\r\n\r\n".to_vec(),
            Out::Ok(2, Phase::Head),
        ),
        ("body not yet complete", b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc".to_vec(), Out::Ok(1, Phase::Body)),
        (
            "chunked body followed, then the next request",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nGET / HTTP/1.1\r\n\r\n"
                .to_vec(),
            Out::Ok(2, Phase::Head),
        ),
        (
            "junk after a chunked body is still checked",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nJUNK / HTTP/1.1\r\n\r\n".to_vec(),
            Out::Bad(Violation::Method),
        ),
        (
            "another transfer coding: unchecked",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\x1f\x8b".to_vec(),
            Out::Ok(1, Phase::Unchecked),
        ),
        (
            "Content-Length and Transfer-Encoding: smuggling",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            Out::Bad(Violation::BadHeader),
        ),
        (
            "two Content-Lengths",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n".to_vec(),
            Out::Bad(Violation::BadHeader),
        ),
        ("Content-Length not a number", b"POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\n".to_vec(), Out::Bad(Violation::BadHeader)),
        ("method not allowed", b"PUT / HTTP/1.1\r\n\r\n".to_vec(), Out::Bad(Violation::Method)),
        ("lower-case method", b"get / HTTP/1.1\r\n\r\n".to_vec(), Out::Bad(Violation::Method)),
        ("no version", b"GET /\r\n\r\n".to_vec(), Out::Bad(Violation::BadRequestLine)),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), Out::Bad(Violation::Method)),
        ("two spaces", b"GET  / HTTP/1.1\r\n\r\n".to_vec(), Out::Bad(Violation::BadRequestLine)),
        ("bad version", b"GET / HTTP/1.x\r\n\r\n".to_vec(), Out::Bad(Violation::BadRequestLine)),
        ("binary junk", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(), Out::Bad(Violation::BadRequestLine)),
        ("space before the colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n".to_vec(), Out::Bad(Violation::BadHeader)),
        ("folded header", b"GET / HTTP/1.1\r\nX: a\r\n  b\r\n\r\n".to_vec(), Out::Bad(Violation::BadHeader)),
        ("no colon", b"GET / HTTP/1.1\r\nHost\r\n\r\n".to_vec(), Out::Bad(Violation::BadHeader)),
        ("64 headers: the limit", sixty_four, Out::Ok(1, Phase::Head)),
        ("65 headers", many_headers, Out::Bad(Violation::TooManyHeaders)),
        ("a 4000-byte header line", junk_headers(1, 3970), Out::Ok(1, Phase::Head)),
        ("a 5000-byte header line", junk_headers(1, 5000), Out::Bad(Violation::LineTooLong)),
        ("junk headers over 8k in all", junk_headers(4, 3000), Out::Bad(Violation::HeaderTooLarge)),
    ];
    let mut failed = Vec::new();
    for (name, stream, want) in &cases {
        let got = run(&l, stream);
        if &got != want {
            failed.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn any_method_when_none_is_listed() {
    let l = limits(&[]);
    assert_eq!(run(&l, b"PROPFIND /x HTTP/1.1\r\n\r\nM-SEARCH * HTTP/1.1\r\n\r\n"), Out::Ok(2, Phase::Head));
    assert_eq!(run(&l, b"G(T / HTTP/1.1\r\n\r\n"), Out::Bad(Violation::BadRequestLine));
}

#[test]
fn request_limit_refuses_at_the_first_byte_of_a_request() {
    let l = limits(&[]);
    let mut st = HttpState::open(1, 0, 0);
    let mut budget = 2;
    let mut take = || {
        budget -= 1;
        budget >= 0
    };
    let r = feed(&mut st, &l, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nG", &mut take);
    assert_eq!(r, Err(Violation::RequestLimit));
}

#[test]
fn upgrade_is_followed_until_the_server_switches() {
    let l = limits(&[]);
    let mut st = HttpState::open(1, 0, 0);
    let req = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    feed(&mut st, &l, req, &mut || true).unwrap();
    assert!(st.awaits_switch());
    // A refusal keeps the connection followed.
    let mut refused = st;
    assert!(!refused.server_answer(b"HTTP/1.1 400 Bad Request\r\n"));
    assert_eq!(refused.phase(), Phase::Head);
    assert!(st.server_answer(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert_eq!(st.phase(), Phase::Unchecked);
    assert_eq!(feed(&mut st, &l, b"\x81\x85binary frame", &mut || true).map(|f| f.requests), Ok(0));
    // CONNECT: a 2xx opens a tunnel.
    let mut c = HttpState::open(1, 0, 0);
    feed(&mut c, &l, b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", &mut || true).unwrap();
    assert!(c.server_answer(b"HTTP/1.1 200 Connection established\r\n\r\n"));
    // A 200 to a plain GET does nothing.
    let mut g = HttpState::open(1, 0, 0);
    feed(&mut g, &l, b"GET / HTTP/1.1\r\n\r\n", &mut || true).unwrap();
    assert!(!g.awaits_switch() && !g.server_answer(b"HTTP/1.1 200 OK\r\n\r\n"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes, cut arbitrarily: no panic, a verdict independent of the cuts, and the
    /// state stays what it is (a fixed 48 bytes; nothing else is touched).
    #[test]
    fn arbitrary_bytes_never_panic_and_cuts_do_not_matter(
        prefix in prop::sample::select(vec![&b""[..], b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"]),
        body in prop::collection::vec(prop::sample::select(b"GET /HTP1.\r\n:0a9;Content-Length chunked \x00\xff".to_vec()), 0..300),
        raw in prop::collection::vec(any::<u8>(), 0..300),
        cuts in prop::collection::vec(0usize..600, 0..6),
    ) {
        let l = limits(&["GET", "POST"]);
        for tail in [&body, &raw] {
            let mut stream = prefix.to_vec();
            stream.extend_from_slice(tail);
            let whole = run_parts(&l, &[&stream]);
            let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            at.sort_unstable();
            let mut parts = Vec::new();
            let mut from = 0;
            for c in at {
                parts.push(&stream[from..c]);
                from = c;
            }
            parts.push(&stream[from..]);
            prop_assert_eq!(run_parts(&l, &parts), whole);
        }
        prop_assert_eq!(core::mem::size_of::<HttpState>(), 48);
    }
}
