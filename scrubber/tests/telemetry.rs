//! The stats socket end to end: a [`StatsServer`] publishing the counters of a real engine run
//! (the committed sample capture replayed through it), read back by the `scrubber stats`
//! binary as text, as JSON and with `--watch`; and the socket's life cycle (already running,
//! stale file, not a socket, mode, removal).

use scrubber::control::telemetry::{self, ServerInfo, StatsServer, TelemetryError};
use scrubber::dataplane::stats::{Publisher, WorkerStats};
use scrubber::tools::replay::{self, ReplayFiles};
use scrubber::{DropReason, Engine, EngineConfig, Protected};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_scrubber");

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("telemetry-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create test dir");
    d
}

fn stats(args: &[&str]) -> Output {
    Command::new(BIN).arg("stats").args(args).output().expect("run scrubber stats")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An engine that has judged samples/sample.pcap (track mode, the sample's two targets).
fn engine_after_sample() -> Engine {
    let protect = ["198.18.0.10:80", "[2001:2::10]:80"]
        .iter()
        .map(|t| {
            let t = rulespec::parse_target(t).expect("target");
            Protected { addr: t.addr, port: t.port }
        })
        .collect();
    let mut e = Engine::new(EngineConfig { protect, ..EngineConfig::default() }).expect("engine");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/sample.pcap");
    let opts = ReplayFiles { input: sample, pass: None, drop: None, answers: None };
    replay::replay(&mut e, &opts).expect("replay sample");
    e
}

/// Two workers: worker 0 published the engine's counters, worker 1 the same plus ring stats.
fn publishers(e: &Engine) -> Vec<Publisher> {
    let targets: Vec<String> = e.counters().per_target.iter().map(|t| t.label.clone()).collect();
    (0..2)
        .map(|i| {
            let p = Publisher::new(WorkerStats::new(i, &targets));
            p.update(|s| {
                s.core = Some(i);
                s.ext_mode = "copy".into();
                s.int_mode = "copy".into();
                s.counters.clone_from(e.counters());
                s.table = e.table().stats();
                s.rings.fill_ring_empty = 11 * (i as u64 + 1);
                s.rings.handoffs_out = i as u64;
            });
            p
        })
        .collect()
}

#[test]
fn stats_json_matches_the_engine_counters_summed() {
    let dir = tmpdir("json");
    let sock = dir.join("s.sock");
    let e = engine_after_sample();
    let _srv = StatsServer::start(&sock, publishers(&e), ServerInfo::new("sample gen 1")).expect("start");
    let o = stats(&["--socket", sock.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let snap = telemetry::decode(&sock, &o.stdout).expect("snapshot JSON");
    assert_eq!(snap.policy, "sample gen 1");
    assert_eq!(snap.workers.len(), 2);
    let t = snap.total();
    let c = e.counters();
    assert!(c.rx_inbound > 0 && c.dropped_total() > 0, "the sample should exercise the engine");
    assert_eq!(t.counters.rx_inbound, 2 * c.rx_inbound);
    assert_eq!(t.counters.forwarded_inbound, 2 * c.forwarded_inbound);
    assert_eq!(t.counters.dropped_total(), 2 * c.dropped_total());
    for r in DropReason::ALL {
        assert_eq!(t.counters.dropped[r.index()], 2 * c.dropped[r.index()], "{r}");
    }
    for (a, b) in t.counters.per_target.iter().zip(&c.per_target) {
        assert_eq!((a.rx, a.dropped), (2 * b.rx, 2 * b.dropped), "{}", b.label);
    }
    assert_eq!(t.rings.fill_ring_empty, 33);
    assert_eq!(t.table.live, 2 * e.sessions() as u64);
    assert_eq!(t.rings.handoffs_out, 1);
}

#[test]
fn stats_text_shows_reasons_targets_and_modes() {
    let dir = tmpdir("text");
    let sock = dir.join("s.sock");
    let e = engine_after_sample();
    let _srv = StatsServer::start(&sock, publishers(&e), ServerInfo::new("sample gen 1")).expect("start");
    let o = stats(&["--socket", sock.to_str().unwrap()]);
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let out = text(&o.stdout);
    println!("{out}");
    assert!(out.contains("policy: sample gen 1"), "{out}");
    assert!(out.contains("worker 1 (core 1, ext copy, int copy)"), "{out}");
    for r in DropReason::ALL {
        let n = e.counters().dropped[r.index()];
        // Reasons that occurred are listed with their description; the others are not.
        assert_eq!(out.contains(&format!("  {} ", r.as_str())), n > 0, "{r} ({n}):\n{out}");
    }
    assert!(out.contains("[2001:2::10]:80"), "{out}");
    assert!(out.contains("fill_ring_empty"), "{out}");
    assert!(!out.contains('\x1b'), "no terminal codes when stdout is not a tty");
}

#[test]
fn stats_watch_shows_rates() {
    let dir = tmpdir("watch");
    let sock = dir.join("s.sock");
    let p = Publisher::new(WorkerStats::new(0, &[]));
    let _srv = StatsServer::start(&sock, vec![p.clone()], ServerInfo::new("w")).expect("start");
    let mut child = Command::new(BIN)
        .args(["stats", "--socket", sock.to_str().unwrap(), "--watch", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scrubber stats --watch");
    // Read what it prints as it prints it (a refresh is tens of kilobytes: a pipe left unread
    // would stop the watcher at its second).
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut v);
        v
    });
    // Count up while the watcher samples, for at most ~1.5 s.
    for i in 1..=15u64 {
        p.update(|s| s.counters.rx_inbound = i * 10_000);
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let out = text(&reader.join().expect("reader"));
    assert!(out.matches("== all workers ==").count() >= 3, "expected several refreshes:\n{out}");
    let rate_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("rx_inbound ") && l.contains("/s") && !l.contains(" 0/s"))
        .unwrap_or_else(|| panic!("no non-zero rx rate:\n{out}"));
    assert!(rate_line.contains("/s"), "{rate_line}");
}

#[test]
fn stats_without_server_says_so_and_exits_1() {
    let dir = tmpdir("none");
    let sock = dir.join("nothing.sock");
    let o = stats(&["--socket", sock.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains(&format!("no scrubber running at {}", sock.display())), "{err}");
    assert!(err.contains("scrubber run"), "{err}");
    let o = stats(&["--socket", sock.to_str().unwrap(), "--watch", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--watch"), "{}", text(&o.stderr));
}

#[test]
fn socket_life_cycle() {
    let dir = tmpdir("life");
    let sock = dir.join("run/sub/s.sock");
    let srv = StatsServer::start(&sock, vec![], ServerInfo::new("a")).expect("start creates the directory");
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    // A second instance on the same path is refused, and the first keeps serving.
    let e = StatsServer::start(&sock, vec![], ServerInfo::new("b")).unwrap_err();
    assert!(matches!(e, TelemetryError::AlreadyRunning { .. }), "{e}");
    assert!(e.to_string().contains("another scrubber instance is running"), "{e}");
    assert!(e.to_string().contains("--socket"), "{e}");
    assert_eq!(telemetry::fetch(&sock).unwrap().policy, "a");
    drop(srv);
    assert!(!sock.exists(), "socket removed on drop");
    assert!(matches!(telemetry::fetch(&sock), Err(TelemetryError::NotRunning { .. })));

    // A stale socket (bound, nobody listening) is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    assert!(matches!(telemetry::fetch(&sock), Err(TelemetryError::NotRunning { .. })));
    let srv = StatsServer::start(&sock, vec![], ServerInfo::new("c")).expect("stale socket replaced");
    assert_eq!(telemetry::fetch(&sock).unwrap().policy, "c");
    drop(srv);

    // A regular file is not touched.
    std::fs::write(&sock, "not a socket").unwrap();
    let e = StatsServer::start(&sock, vec![], ServerInfo::new("d")).unwrap_err();
    assert!(matches!(e, TelemetryError::NotASocket { .. }), "{e}");
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "not a socket");
    let o = stats(&["--socket", sock.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn many_readers_in_a_row() {
    let dir = tmpdir("many");
    let sock = dir.join("s.sock");
    let p = Publisher::new(WorkerStats::new(0, &[]));
    let _srv = StatsServer::start(&sock, vec![p.clone()], ServerInfo::new("m")).expect("start");
    for i in 0..200u64 {
        p.update(|s| s.counters.replies = i);
        assert_eq!(telemetry::fetch(&sock).expect("fetch").workers[0].counters.replies, i);
    }
}
