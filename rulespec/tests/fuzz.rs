//! Property tests: no input, however broken, panics the parser, the checker or the renderer.

use proptest::prelude::*;
use rulespec::{check, parse, FileId, MemSource};

const WEB: &str = include_str!("../../examples/web-frontend.rules");
const DNS: &str = include_str!("../../examples/dns-and-icmp.rules");
const COMMON: &str = include_str!("../../examples/common.rules");

const WORDS: &[&str] = &[
    "include",
    "set",
    "ports",
    "service",
    "end",
    "allow",
    "deny",
    "limit",
    "observe",
    "default",
    "mode",
    "enforce",
    "sessions",
    "cookie-secret",
    "learning-window",
    "from",
    "to",
    "proto",
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "port",
    "sport",
    "flags",
    "syn+!ack",
    "fin+syn",
    "len",
    "0-60",
    "frag",
    "later",
    "icmp-type",
    "echo-request",
    "icmpv6-type",
    "per-source",
    "aggregate",
    "new-conns",
    "max-conns",
    "burst",
    "dst",
    "syn",
    "auto",
    "proxy",
    "track",
    "mss",
    "learn",
    "wscale",
    "sack",
    "timestamps",
    "on",
    "idle",
    "embryonic",
    "pickup",
    "file",
    "any",
    "web",
    "web-servers",
    "dns",
    "198.18.0.0/24",
    "198.18.0.1/24",
    "2001:2::/48",
    "2001:2::1/129",
    "80",
    "443",
    "8000-8099",
    "99999",
    "20kpps",
    "100Mbps",
    "50/s",
    "0pps",
    "30s",
    "5m",
    "10k",
    "4M",
    "=",
    ",",
    "\"a.rules\"",
    "\"main.rules\"",
    "\"lists/x.txt\"",
    "\"",
    "#",
    "\n",
    "\n",
    "\n",
    "\t",
    "é",
    "\r\n",
];

fn files(main: &str) -> MemSource {
    MemSource::new()
        .with("main.rules", main)
        .with("a.rules", main)
        .with("common.rules", COMMON)
        .with("lists/x.txt", "198.18.0.0/24\n2001:2::/48\nbogus\n")
        .with("lists/web-blocklist.txt", "198.18.66.0/24\n")
        .with("lists/bogons.txt", "198.19.250.0/24\n")
        .with("lists/trusted-resolvers.txt", "198.18.100.0/24\n")
}

fn run(main: &str) {
    let (_, diags) = parse(FileId(0), main);
    let _ = diags.len();
    let c = check("main.rules", &files(main));
    let _ = c.render();
    if let Some(p) = &c.policy {
        let _ = p.summary();
    }
}

/// Apply byte-level edits at char boundaries.
fn mutate(base: &str, edits: &[(usize, u8, String)]) -> String {
    let mut s = base.to_string();
    for (pos, op, text) in edits {
        if s.is_empty() {
            s.push_str(text);
            continue;
        }
        let mut at = pos % s.len();
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + 1 + pos % 7).min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        match op % 3 {
            0 => s.insert_str(at, text),
            1 => s.replace_range(at..end, ""),
            _ => s.replace_range(at..end, text),
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC*") {
        run(&s);
    }

    #[test]
    fn arbitrary_bytes_as_text_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        run(&String::from_utf8_lossy(&b));
    }

    #[test]
    fn token_soup_never_panics(idx in proptest::collection::vec(0..WORDS.len(), 0..80)) {
        let s = idx.iter().map(|&i| WORDS[i]).collect::<Vec<_>>().join(" ");
        run(&s);
    }

    #[test]
    fn mutated_examples_never_panic(
        which in 0..2usize,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), "[ -~é\\n\\t\"#,=/:]{0,6}"), 1..8),
    ) {
        let base = if which == 0 { WEB } else { DNS };
        run(&mutate(base, &edits));
    }
}
