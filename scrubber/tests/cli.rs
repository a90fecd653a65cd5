//! End-to-end tests of the `scrubber` binary: `replay` over the committed sample capture, and
//! the errors an operator can meet.
//!
//! The expected counts come from `scripts/make-sample.py` (see its header); they are also in
//! `samples/sample.counts.json`, which the sample test cross-checks so that a regenerated sample
//! with different numbers fails loudly here.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_scrubber");

// What scripts/make-sample.py put in samples/sample.pcap.
const FRAMES: u64 = 3918;
const LEGIT_TCP: u64 = 180; // 20 conversations x 9 frames
const OTHER_PASSED: u64 = 38; // DNS 20, ICMP echo 10, ARP 6, neighbour discovery 2
const ACK_PSH: u64 = 1800;
const BARE_ACK: u64 = 500;
const RST: u64 = 300;
const FIN: u64 = 300;
const XMAS: u64 = 100;
const NULL: u64 = 100;
const SYN_FIN: u64 = 100;
const SYN_FLOOD: u64 = 500; // forwarded in track mode
const FLOOD_DROPPED: u64 = ACK_PSH + BARE_ACK + RST + FIN + XMAS + NULL + SYN_FIN;
const FORWARDED: u64 = LEGIT_TCP + OTHER_PASSED + SYN_FLOOD;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn sample() -> PathBuf {
    repo().join("samples/sample.pcap")
}

/// A fresh empty directory for one test.
fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create test dir");
    d
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run scrubber")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Every frame of a pcap file.
fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = pcap_file::pcap::PcapReader::new(f).expect("pcap header");
    let mut v = Vec::new();
    while let Some(pkt) = r.next_raw_packet() {
        v.push(pkt.expect("pcap record").data.into_owned());
    }
    v
}

/// Source IPv4 address and TCP flags of an untagged Ethernet/IPv4/TCP frame.
fn v4_tcp(frame: &[u8]) -> Option<([u8; 4], u8)> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] || frame[23] != 6 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let flags = *frame.get(14 + ihl + 13)?;
    Some(([frame[26], frame[27], frame[28], frame[29]], flags))
}

fn replay_sample(dir: &Path, input: &Path, extra: &[&str]) -> Output {
    let pass = dir.join("pass.pcap");
    let drop = dir.join("drop.pcap");
    let mut args = vec![
        "replay",
        p(input),
        "--protect",
        "198.18.0.10:80",
        "--protect",
        "[2001:2::10]:80",
        "--syn-mode",
        "track",
        "--pass",
        p(&pass),
        "--drop",
        p(&drop),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn check_sample_summary(j: &Value) {
    assert_eq!(j["frames"], FRAMES, "{j}");
    assert_eq!(j["dropped"], FLOOD_DROPPED, "{j}");
    assert_eq!(j["forwarded"], FORWARDED, "{j}");
    assert_eq!(j["replied"], 0, "{j}");
    let r = &j["dropped_by_reason"];
    assert_eq!(r["ack_no_session"], ACK_PSH + BARE_ACK, "{r}");
    assert_eq!(r["rst_no_session"], RST, "{r}");
    assert_eq!(r["fin_no_session"], FIN, "{r}");
    assert_eq!(r["tcp_xmas"], XMAS, "{r}");
    assert_eq!(r["tcp_null"], NULL, "{r}");
    assert_eq!(r["tcp_syn_fin"], SYN_FIN, "{r}");
    let total: u64 = r.as_object().expect("reasons map").values().map(|v| v.as_u64().expect("count")).sum();
    assert_eq!(total, FLOOD_DROPPED, "a frame was dropped for a reason the sample does not contain: {r}");
    // The engine's own counters agree.
    assert_eq!(j["counters"]["dropped"]["ack_no_session"], ACK_PSH + BARE_ACK, "{j}");
    assert_eq!(j["inbound"].as_u64().unwrap() + j["outbound"].as_u64().unwrap(), FRAMES);
    assert!(j["snapped"] == 0 && j["oversize_skipped"] == 0, "{j}");
    assert!(j["stopped"].is_null(), "{j}");
}

#[test]
fn sample_counts_match_the_script() {
    let c: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("samples/sample.counts.json")).unwrap()).unwrap();
    assert_eq!(c["frames"], FRAMES);
    assert_eq!(c["legit_tcp_frames"], LEGIT_TCP);
    assert_eq!(c["other_passed_frames"], OTHER_PASSED);
    assert_eq!(c["track_mode"]["forwarded"], FORWARDED);
    assert_eq!(c["track_mode"]["dropped"], FLOOD_DROPPED);
    assert_eq!(c["floods"]["syn"], SYN_FLOOD);
    assert_eq!(read_pcap(&sample()).len() as u64, FRAMES);
}

#[test]
fn replay_sample_track_mode() {
    let dir = tmpdir("track");
    let o = replay_sample(&dir, &sample(), &["--json"]);
    assert!(o.status.success(), "exit {:?}\nstderr: {}", o.status, stderr(&o));
    let j = json(&o);
    check_sample_summary(&j);

    // Every legitimate frame is in the pass file, and nothing from the attackers but their SYNs.
    let pass = read_pcap(&dir.join("pass.pcap"));
    assert_eq!(pass.len() as u64, FORWARDED);
    let mut spoofed_syns = 0;
    for f in &pass {
        if let Some((src, flags)) = v4_tcp(f) {
            if src[..2] == [198, 19] {
                assert_eq!(flags, 0x02, "a spoofed non-SYN frame was forwarded");
                spoofed_syns += 1;
            }
        }
    }
    assert_eq!(spoofed_syns, SYN_FLOOD);
    // Every dropped frame comes from the attackers' range.
    let dropped = read_pcap(&dir.join("drop.pcap"));
    assert_eq!(dropped.len() as u64, FLOOD_DROPPED);
    for f in &dropped {
        let (src, _) = v4_tcp(f).expect("dropped frame is IPv4/TCP");
        assert_eq!(src[..2], [198, 19], "a legitimate frame was dropped");
    }
    // No temporary files left behind.
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["drop.pcap", "pass.pcap"]);
}

#[test]
fn replay_sample_text_summary() {
    let dir = tmpdir("text");
    let o = replay_sample(&dir, &sample(), &[]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "forwarded",
        "dropped",
        "ack_no_session",
        "2,300",
        "rst_no_session",
        "cookies",
        "sessions",
        "198.18.0.10:80",
        "[2001:2::10]:80",
    ] {
        assert!(out.contains(want), "text summary lacks {want:?}:\n{out}");
    }
    // Reasons that did not occur are not listed in the text form.
    assert!(!out.contains("session_table_full"), "{out}");
}

/// The same frames as a pcapng file (nanosecond interface resolution) give the same verdicts.
#[test]
fn replay_pcapng_matches_pcap() {
    let dir = tmpdir("pcapng");
    let ng = dir.join("sample.pcapng");
    write_pcapng(&sample(), &ng);
    let o = replay_sample(&dir, &ng, &["--json"]);
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let j = json(&o);
    check_sample_summary(&j);
    assert_eq!(j["format"], "pcapng");
    let span = j["capture_seconds"].as_f64().unwrap();
    assert!((span - 8.398039).abs() < 1e-6, "timestamps misread: span {span}");
    assert_eq!(read_pcap(&dir.join("pass.pcap")).len() as u64, FORWARDED);
}

/// Convert a little-endian classic pcap to pcapng with `if_tsresol` = 9 (nanoseconds).
fn write_pcapng(pcap: &Path, out: &Path) {
    let data = std::fs::read(pcap).unwrap();
    let mut v = Vec::new();
    let block = |v: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let len = (12 + body.len()) as u32;
        v.extend_from_slice(&kind.to_le_bytes());
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(body);
        v.extend_from_slice(&len.to_le_bytes());
    };
    // Section header: byte-order magic, version 1.0, section length unknown.
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4d_u32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut v, 0x0a0d_0d0a, &shb);
    // Interface: Ethernet, snaplen 65535, if_tsresol = 9, end of options.
    let mut idb = Vec::new();
    idb.extend_from_slice(&1u16.to_le_bytes());
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&65535u32.to_le_bytes());
    idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]);
    idb.extend_from_slice(&[0, 0, 0, 0]);
    block(&mut v, 1, &idb);
    let mut off = 24;
    while off + 16 <= data.len() {
        let u = |i: usize| u32::from_le_bytes(data[off + i..off + i + 4].try_into().unwrap());
        let (sec, usec, incl, orig) = (u(0), u(4), u(8) as usize, u(12));
        let frame = &data[off + 16..off + 16 + incl];
        let ns = u64::from(sec) * 1_000_000_000 + u64::from(usec) * 1000;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((ns >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ns as u32).to_le_bytes());
        epb.extend_from_slice(&(incl as u32).to_le_bytes());
        epb.extend_from_slice(&orig.to_le_bytes());
        epb.extend_from_slice(frame);
        epb.resize(epb.len().next_multiple_of(4), 0);
        block(&mut v, 6, &epb);
        off += 16 + incl;
    }
    std::fs::write(out, v).unwrap();
}

/// Byte offsets where the sample's records start.
fn record_offsets(data: &[u8]) -> Vec<usize> {
    let mut offs = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        offs.push(off);
        let incl = u32::from_le_bytes(data[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16 + incl;
    }
    offs
}

/// A capture cut inside its very first record: an error naming the truncation, no output.
#[test]
fn truncated_in_first_record() {
    let dir = tmpdir("trunc0");
    let data = std::fs::read(sample()).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &data[..24 + 16 + 10]).unwrap();
    let o = replay_sample(&dir, &cut, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("truncated"), "{e}");
    assert!(e.contains("packet 0") && e.contains("byte offset 24"), "{e}");
    assert!(e.contains("cut.pcap"), "{e}");
    let j = json(&o);
    assert_eq!(j["frames"], 0);
    assert!(j["stopped"].as_str().unwrap().contains("truncated"), "{j}");
    // The (empty but valid) outputs exist: they hold everything processed before the stop.
    assert!(read_pcap(&dir.join("pass.pcap")).is_empty());
}

/// A capture cut in the middle of a record half way: the frames before it are judged and
/// written, the summary is printed, and the exit status is 1.
#[test]
fn truncated_mid_file_keeps_what_was_processed() {
    let dir = tmpdir("trunc-mid");
    let data = std::fs::read(sample()).unwrap();
    let offs = record_offsets(&data);
    let n = offs.len() / 2;
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &data[..offs[n] + 20]).unwrap();
    let o = replay_sample(&dir, &cut, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("truncated"), "{e}");
    assert!(e.contains(&format!("packet {n} (byte offset {})", offs[n])), "{e}");
    let j = json(&o);
    assert_eq!(j["frames"], n as u64);
    let fwd = j["forwarded"].as_u64().unwrap();
    let dropped = j["dropped"].as_u64().unwrap();
    assert_eq!(fwd + dropped, n as u64);
    assert_eq!(read_pcap(&dir.join("pass.pcap")).len() as u64, fwd);
    assert_eq!(read_pcap(&dir.join("drop.pcap")).len() as u64, dropped);
}

#[test]
fn missing_input_names_the_file() {
    let dir = tmpdir("missing");
    let missing = dir.join("no-such-capture.pcap");
    let o = replay_sample(&dir, &missing, &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.starts_with("error: "), "{e}");
    assert!(e.contains("no-such-capture.pcap"), "{e}");
    assert!(!dir.join("pass.pcap").exists() && !dir.join("drop.pcap").exists());
}

#[test]
fn not_a_capture_is_rejected() {
    let dir = tmpdir("notpcap");
    let f = dir.join("notes.txt");
    std::fs::write(&f, "this is not a capture\n").unwrap();
    let o = replay_sample(&dir, &f, &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("not a pcap or pcapng capture") && e.contains("notes.txt"), "{e}");
    // Nothing left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let o = replay_sample(&dir, &empty, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("too short"), "{}", stderr(&o));

    let short_header = dir.join("short.pcap");
    std::fs::write(&short_header, &std::fs::read(sample()).unwrap()[..10]).unwrap();
    let o = replay_sample(&dir, &short_header, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
}

#[test]
fn non_ethernet_link_type_is_named() {
    let dir = tmpdir("linktype");
    let f = dir.join("sll.pcap");
    let mut h = Vec::new();
    h.extend_from_slice(&0xa1b2_c3d4_u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&113u32.to_le_bytes()); // LINUX_SLL
    std::fs::write(&f, &h).unwrap();
    let o = replay_sample(&dir, &f, &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("LINUX_SLL (113)") && e.contains("only Ethernet"), "{e}");
}

#[test]
fn bad_protect_value_is_named() {
    for (bad, want) in [
        ("198.18.0.10:0", "port 0"),
        ("198.18.0.10:70000", "out of range"),
        ("[2001:2::10:80", "missing ]"),
        ("banana", "not an IP address"),
    ] {
        let o = run(&["replay", p(&sample()), "--protect", bad]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        let e = stderr(&o);
        assert!(e.contains(bad) && e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn protect_is_required() {
    let o = run(&["replay", p(&sample())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--protect"), "{}", stderr(&o));
}

#[test]
fn same_output_twice_is_rejected() {
    let dir = tmpdir("same");
    let out = dir.join("out.pcap");
    let o = run(&["replay", p(&sample()), "--protect", "198.18.0.10", "--pass", p(&out), "--drop", p(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--pass and --drop"), "{}", stderr(&o));
    // The same file spelled two ways.
    let other = dir.join(".").join("out.pcap");
    let o = run(&["replay", p(&sample()), "--protect", "198.18.0.10", "--pass", p(&out), "--answers", p(&other)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--pass and --answers"), "{}", stderr(&o));
    let o = run(&["replay", p(&sample()), "--protect", "198.18.0.10", "--pass", p(&sample())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("the input and --pass"), "{}", stderr(&o));
}

#[test]
fn unwritable_output_is_an_error() {
    let dir = tmpdir("unwritable");
    let out = dir.join("no-such-dir").join("pass.pcap");
    let o = run(&["replay", p(&sample()), "--protect", "198.18.0.10", "--pass", p(&out)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot write") && stderr(&o).contains("pass.pcap"), "{}", stderr(&o));
}

/// A capture header with no packets: the engine is built and nothing is judged.
fn empty_capture(dir: &Path) -> PathBuf {
    let f = dir.join("empty.pcap");
    std::fs::write(&f, &std::fs::read(sample()).unwrap()[..24]).unwrap();
    f
}

#[test]
fn gen_secret_output_loads() {
    let dir = tmpdir("secret");
    let o = run(&["gen-secret"]);
    assert!(o.status.success());
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with('#'), "{text}");
    assert_eq!(lines[1].len(), 32);
    assert!(lines[1].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(stdout(&run(&["gen-secret"])), text, "two secrets are the same");

    let secret = dir.join("cookie.secret");
    std::fs::write(&secret, &text).unwrap();
    let input = empty_capture(&dir);
    let o = run(&["replay", p(&input), "--protect", "198.18.0.10:80", "--cookie-secret", p(&secret), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["frames"], 0);

    // A bad secret is refused, naming the file and the way to make a good one.
    std::fs::write(&secret, "# comment\n0123\n").unwrap();
    let o = run(&["replay", p(&input), "--protect", "198.18.0.10:80", "--cookie-secret", p(&secret)]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("cookie.secret") && e.contains("gen-secret"), "{e}");
}

#[test]
fn help_and_version() {
    let o = run(&["--version"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("scrubber "), "{}", stdout(&o));
    let o = run(&["replay", "--help"]);
    assert!(o.status.success());
    let h = stdout(&o);
    for want in
        ["--protect", "--syn-mode", "--pass", "--drop", "--answers", "--json", "--cookie-secret", "--sessions", "track"]
    {
        assert!(h.contains(want), "replay --help lacks {want}:\n{h}");
    }
    let o = run(&["gen-secret", "--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("cookie.secret"));
}

#[test]
fn check_valid_file_prints_what_was_compiled() {
    let o = run(&["check", repo().join("examples/web-frontend.rules").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in ["services (3):", "rules (14):", "blocklist", "estimated memory:", "compiled:", "OK (0 warning(s))"] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn check_invalid_file_shows_every_error_and_exits_1() {
    let d = tmpdir("check-bad");
    let f = d.join("bad.rules");
    std::fs::write(&f, "set a = 198.18.0.0/33\ndeny from nowhere\nlimit per-source\n").unwrap();
    let o = run(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("bad.rules:1:"), "{err}");
    assert!(err.contains("bad.rules:2:"), "{err}");
    assert!(err.contains('^'), "caret under the span: {err}");
    assert!(err.contains("not valid"), "{err}");
    assert!(stdout(&o).is_empty(), "nothing compiled is printed");
}

#[test]
fn replay_with_rules_matches_protect_shorthand_and_applies_rules() {
    let d = tmpdir("replay-rules");
    let f = d.join("p.rules");
    std::fs::write(
        &f,
        "service web4\n dst 198.18.0.10\n ports 80\n syn track\nend\nservice web6\n dst 2001:2::10\n ports 80\n syn track\nend\n",
    )
    .unwrap();
    let a = json(&run(&["replay", sample().to_str().unwrap(), "--rules", f.to_str().unwrap(), "--json"]));
    let b = json(&run(&[
        "replay",
        sample().to_str().unwrap(),
        "--protect",
        "198.18.0.10:80",
        "--protect",
        "[2001:2::10]:80",
        "--json",
    ]));
    assert_eq!(a["forwarded"], b["forwarded"], "same verdicts as --protect");
    assert_eq!(a["dropped"], b["dropped"]);
    // A rule dropping all UDP changes the outcome by exactly the sample's 20 DNS frames.
    std::fs::write(&f, format!("{}deny proto udp\n", std::fs::read_to_string(&f).unwrap())).unwrap();
    let c = json(&run(&["replay", sample().to_str().unwrap(), "--rules", f.to_str().unwrap(), "--json"]));
    assert_eq!(c["dropped"].as_u64().unwrap(), b["dropped"].as_u64().unwrap() + 20, "{c}");
}

/// `check` runs every check `run` and `replay` run: the engine's service limit, the secret
/// file a policy names; and file reading refuses what would hang or exhaust memory, and names
/// the line of a byte that is not UTF-8.
#[test]
fn check_runs_the_loaders_checks_and_reads_files_safely() {
    let d = tmpdir("check-loaders");
    // 129 services: the engine supports 128.
    let mut many = String::from("set web = 198.18.0.0/24\n");
    for i in 0..129 {
        many.push_str(&format!("service s{i}\n  dst web\n  ports {}\nend\n", 1000 + i));
    }
    let f = d.join("many.rules");
    std::fs::write(&f, &many).unwrap();
    let o = run(&["check", p(&f)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("129 services") && stderr(&o).contains("128"), "{}", stderr(&o));
    let o = run(&["replay", p(&sample()), "--rules", p(&f)]);
    assert!(!o.status.success(), "replay refuses it as check does");

    // A secret file that is not there.
    let f = d.join("secret.rules");
    std::fs::write(&f, "cookie-secret \"/nonexistent/scrubber/cookie.secret\"\ndeny proto 47\n").unwrap();
    let o = run(&["check", p(&f)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cookie.secret") && stderr(&o).contains("gen-secret"), "{}", stderr(&o));
    // ... which --cookie-secret on the command line replaces.
    let key = d.join("k");
    std::fs::write(&key, "000102030405060708090a0b0c0d0e0f\n").unwrap();
    let o = run(&["replay", p(&sample()), "--rules", p(&f), "--cookie-secret", p(&key)]);
    assert!(o.status.success(), "{}", stderr(&o));

    // One Latin-1 byte: named with its line and column.
    let f = d.join("latin1.rules");
    std::fs::write(&f, b"deny proto 47\n# caf\xe9\n").unwrap();
    let o = run(&["check", p(&f)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("line 2, column 6"), "{}", stderr(&o));

    // A list file that is too large for the limit, and one that is a FIFO.
    let list = d.join("big.txt");
    std::fs::write(&list, "198.18.0.0/24\n".repeat(2000)).unwrap();
    let f = d.join("big.rules");
    std::fs::write(&f, "set big file \"big.txt\"\ndeny from big\n").unwrap();
    assert!(run(&["check", p(&f)]).status.success());
    let o = run(&["check", p(&f), "--max-file-size", "10K"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--max-file-size"), "{}", stderr(&o));
    let _ = std::fs::remove_file(&list);
    if Command::new("mkfifo").arg(&list).status().map(|s| s.success()).unwrap_or(false) {
        let t0 = std::time::Instant::now();
        let o = run(&["check", p(&f)]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("FIFO"), "{}", stderr(&o));
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "a FIFO must not block the check");
    }
}

/// Replay outputs are all or nothing: a directory named as an output is refused before
/// anything is written, a FIFO as input is refused at once, and SIGINT in the middle of a long
/// replay leaves neither outputs nor temporary files.
#[test]
fn replay_outputs_are_all_or_nothing_and_fifos_are_refused() {
    let dir = tmpdir("replay-atomic");
    let pass = dir.join("pass.pcap");
    let o = run(&["replay", p(&sample()), "--protect", "198.18.0.10:80", "--pass", p(&pass), "--drop", p(&dir)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("names a directory"), "{}", stderr(&o));
    assert!(!pass.exists(), "no half set of outputs");

    let fifo = dir.join("in.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let t = std::time::Instant::now();
    let o = run(&["replay", p(&fifo), "--protect", "198.18.0.10:80"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "a FIFO must not hang the replay");

    // A long capture (1.5 M frames), interrupted.
    let big = dir.join("big.pcap");
    {
        use std::io::Write;
        let mut w = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let mut hdr = Vec::new();
        for v in [0xa1b2_c3d4u32.to_le_bytes().to_vec(), 2u16.to_le_bytes().to_vec(), 4u16.to_le_bytes().to_vec()] {
            hdr.extend(v);
        }
        hdr.extend([0u8; 8]);
        hdr.extend(65535u32.to_le_bytes());
        hdr.extend(1u32.to_le_bytes());
        w.write_all(&hdr).unwrap();
        let frame = scrubber::wire::builder::TcpFrame::new(
            "198.19.1.1".parse().unwrap(),
            1234,
            "198.18.0.10".parse().unwrap(),
            80,
            scrubber::wire::tcp::flags::ACK,
        )
        .build();
        for i in 0..1_500_000u32 {
            w.write_all(&(1_700_000_000 + i / 1_000_000).to_le_bytes()).unwrap();
            w.write_all(&(i % 1_000_000).to_le_bytes()).unwrap();
            w.write_all(&(frame.len() as u32).to_le_bytes()).unwrap();
            w.write_all(&(frame.len() as u32).to_le_bytes()).unwrap();
            w.write_all(&frame).unwrap();
        }
    }
    let drop = dir.join("drop.pcap");
    let child = std::process::Command::new(BIN)
        .args(["replay", p(&big), "--protect", "198.18.0.10:80", "--pass", p(&pass), "--drop", p(&drop)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is writing (a temporary file appears), then interrupt it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_dir(&dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains(".partial")) {
        assert!(std::time::Instant::now() < deadline, "the replay never started writing");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
    assert!(std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("replay under SIGINT: {}", err.trim());
    if err.contains("interrupted") {
        assert_eq!(out.status.code(), Some(1), "{err}");
    } else {
        // It finished before the signal landed: then both outputs are complete.
        assert!(out.status.success(), "{err}");
    }
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    assert_eq!(pass.exists(), drop.exists(), "both outputs or neither");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The example rule files replay `samples/examples.pcap` (the sample's traffic with their
/// addresses) cleanly with their own SYN settings: no frame of a conversation with their
/// services from a legitimate host is dropped, and the floods are.
#[test]
fn examples_replay_their_sample_cleanly() {
    let dir = tmpdir("examples-replay");
    let input = repo().join("samples/examples.pcap");
    let spoofed = |a: &[u8; 16], v6: bool| {
        if v6 {
            a[..8] == [0x20, 0x01, 0, 2, 0, 0, 0xff, 0xff]
        } else {
            a[..2] == [198, 19]
        }
    };
    for (rules, servers) in
        [("web-frontend.rules", vec!["198.18.10.5", "2001:2::12"]), ("dns-and-icmp.rules", vec!["198.18.53.2"])]
    {
        let servers: Vec<std::net::IpAddr> = servers.iter().map(|s| s.parse().unwrap()).collect();
        let ours = |a: &[u8; 16], v6: bool| {
            servers.iter().any(|s| match s {
                std::net::IpAddr::V4(x) => !v6 && a[..4] == x.octets(),
                std::net::IpAddr::V6(x) => v6 && *a == x.octets(),
            })
        };
        let drop = dir.join("drop.pcap");
        let o = run(&[
            "replay",
            p(&input),
            "--rules",
            p(&repo().join("examples").join(rules)),
            "--drop",
            p(&drop),
            "--json",
        ]);
        assert!(o.status.success(), "{rules}: {}", stderr(&o));
        let mut legit_dropped = Vec::new();
        let mut flood_dropped = 0;
        for f in read_pcap(&drop) {
            let Ok(d) = scrubber::wire::frame::dissect(&f) else { continue };
            let (s, t) = (ours(&d.src, d.v6), ours(&d.dst, d.v6));
            if !(s || t) {
                continue; // another policy's traffic: not this example's business
            }
            let peer = if t { &d.src } else { &d.dst };
            if spoofed(peer, d.v6) {
                flood_dropped += 1;
            } else {
                legit_dropped.push(format!("{:?} {}:{} -> {}:{}", d.proto, d.src[0], d.sport, d.dst[0], d.dport));
            }
        }
        assert!(legit_dropped.is_empty(), "{rules}: legitimate frames dropped: {legit_dropped:?}");
        let j = json(&o);
        eprintln!(
            "{rules}: forwarded {}, dropped {} ({flood_dropped} flood frames at its servers)",
            j["forwarded"], j["dropped"]
        );
        if rules.starts_with("web") {
            assert!(flood_dropped >= 3_000, "{rules}: the floods at the web server were dropped ({flood_dropped})");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The attack events `scrubber replay` finds in `samples/sample.pcap` (with the low thresholds
/// of `samples/sample-events.rules`) are a golden file. `UPDATE_GOLDEN=1` rewrites it.
#[test]
fn replay_events_of_the_sample_are_golden() {
    let dir = tmpdir("events-golden");
    let out = dir.join("events.jsonl");
    let o =
        run(&["replay", p(&sample()), "--rules", p(&repo().join("samples/sample-events.rules")), "--events", p(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("attack started on web: ack-psh flood"), "{}", stderr(&o));
    let got = std::fs::read_to_string(&out).unwrap();
    let golden = repo().join("samples/sample.events.jsonl");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    assert_eq!(got, std::fs::read_to_string(&golden).unwrap(), "events differ from {}", golden.display());
    let first: Value = serde_json::from_str(got.lines().next().unwrap()).unwrap();
    assert_eq!((first["event"].as_str(), first["target"].as_str()), (Some("start"), Some("web")));
    assert_eq!(first["types"][0], "ack-psh flood");
    // Top talkers by passed traffic too: the legitimate clients (198.18.1.x), not the floods.
    let o = run(&["replay", p(&sample()), "--rules", p(&repo().join("samples/sample-events.rules")), "--json"]);
    let t = &json(&o)["counters"]["top_sources"][0];
    let passed: Vec<&str> = t["passed"].as_array().unwrap().iter().filter_map(|s| s["src"].as_str()).collect();
    assert!(!passed.is_empty() && passed.iter().all(|s| s.starts_with("198.18.1.")), "{passed:?}");
    let dropped: Vec<&str> = t["sources"].as_array().unwrap().iter().filter_map(|s| s["src"].as_str()).collect();
    assert!(dropped.iter().any(|s| s.starts_with("198.19.")), "{dropped:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A capture of three HTTP conversations towards an `http` service, written here: a plain GET,
/// a request with giant junk headers (in 1,400-byte segments) and a PUT.
fn http_capture(path: &Path) {
    use scrubber::wire::builder::TcpFrame;
    use scrubber::wire::tcp::flags as tf;
    let f = std::fs::File::create(path).unwrap();
    let mut w = pcap_file::pcap::PcapWriter::new(f).unwrap();
    let server: std::net::IpAddr = "198.18.0.10".parse().unwrap();
    let mut t = 1_767_225_600_000_000u64; // 2026-01-01, in µs
    let mut put = |w: &mut pcap_file::pcap::PcapWriter<std::fs::File>, fr: &TcpFrame| {
        t += 1000;
        let data = fr.build();
        let pkt = pcap_file::pcap::PcapPacket::new(std::time::Duration::from_micros(t), data.len() as u32, &data);
        w.write_packet(&pkt).unwrap();
    };
    let mut junk = b"GET / HTTP/1.1\r\nHost: web\r\nUser-Agent: Mozilla/5.0 Chrome/120.0\r\n".to_vec();
    for name in ["X-Array-Buffer", "Ddddd-1", "Ddddd-2"] {
        junk.extend_from_slice(format!("{name}: {}\r\n", "i".repeat(3000)).as_bytes());
    }
    junk.extend_from_slice(b"\r\n");
    let requests: [&[u8]; 3] = [b"GET / HTTP/1.1\r\nHost: web\r\n\r\n", &junk, b"PUT /x HTTP/1.1\r\nHost: web\r\n\r\n"];
    for (i, req) in requests.iter().enumerate() {
        let client: std::net::IpAddr = format!("198.18.1.{}", i + 1).parse().unwrap();
        let (cp, cisn, sisn) = (40_000 + i as u16, 1000u32, 9000u32);
        let c = |flags: u8, seq: u32, ack: u32, payload: &[u8]| {
            let mut fr = TcpFrame::new(client, cp, server, 80, flags);
            (fr.seq, fr.ack, fr.window, fr.payload) = (seq, ack, 64_000, payload.to_vec());
            fr
        };
        let mut sa = TcpFrame::new(server, 80, client, cp, tf::SYN | tf::ACK);
        (sa.seq, sa.ack, sa.window) = (sisn, cisn + 1, 64_000);
        put(&mut w, &c(tf::SYN, cisn, 0, &[]));
        put(&mut w, &sa);
        put(&mut w, &c(tf::ACK, cisn + 1, sisn + 1, &[]));
        let mut seq = cisn + 1;
        for seg in req.chunks(1400) {
            put(&mut w, &c(tf::ACK | tf::PSH, seq, sisn + 1, seg));
            seq += seg.len() as u32;
        }
    }
}

#[test]
fn replay_reports_http_violations_by_reason() {
    let dir = tmpdir("replay-http");
    let cap = dir.join("http.pcap");
    http_capture(&cap);
    let rules = dir.join("http.rules");
    std::fs::write(
        &rules,
        "service web\n  dst 198.18.0.10\n  ports 80\n  syn track\n  \
         http max-header-bytes 8k max-header-line 4k max-headers 64 methods GET,HEAD,POST\nend\n",
    )
    .unwrap();
    let o = run(&["replay", p(&cap), "--rules", p(&rules), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    let by = &j["dropped_by_reason"];
    assert_eq!(by["http_header_too_large"], 1, "{j}");
    assert_eq!(by["http_method"], 1, "{j}");
    assert_eq!(j["reset_verdicts"], 2, "{j}");
    assert_eq!(
        j["counters"]["engine"]["http_requests"].as_u64().or(j["counters"]["http_requests"].as_u64()),
        Some(3),
        "{j}"
    );
    // And for people: the reasons with what they mean.
    let o = run(&["replay", p(&cap), "--rules", p(&rules)]);
    let text = stdout(&o);
    assert!(text.contains("http_header_too_large") && text.contains("max-header-bytes"), "{text}");
    assert!(text.contains("http_method") && text.contains("reset their connection both ways"), "{text}");
}
