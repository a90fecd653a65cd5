//! The generators shipped for benchmarking (`scripts/pktgen/`, `scrubber-perf gen`) send what
//! they promise: on a veth pair in namespaces of this test's own, each flood arrives complete,
//! bounded by its count. Root only (skipped otherwise).

use std::path::PathBuf;
use std::process::Command;

/// Two namespaces joined by a veth, removed on drop (also when the test fails).
struct Pair {
    tag: String,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        let p = Pair { tag: tag.into() };
        p.del();
        for ns in ["s", "r"] {
            let n = format!("{tag}{ns}");
            run("ip", &["netns", "add", &n]);
            // Nothing of the namespaces' own (IPv6 router solicitations, ND) on the link.
            for k in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
                run("ip", &["netns", "exec", &n, "sysctl", "-qw", k]);
            }
        }
        let (s, r) = (format!("{tag}s"), format!("{tag}r"));
        run(
            "ip",
            &[
                "link",
                "add",
                &format!("{tag}a"),
                "netns",
                &s,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{tag}b"),
                "netns",
                &r,
            ],
        );
        run("ip", &["-n", &s, "link", "set", &format!("{tag}a"), "up"]);
        run("ip", &["-n", &r, "link", "set", &format!("{tag}b"), "up"]);
        run("ip", &["-n", &r, "link", "set", &format!("{tag}b"), "address", "02:00:5b:00:00:02"]);
        p
    }

    fn sender(&self) -> (String, String) {
        (format!("{}s", self.tag), format!("{}a", self.tag))
    }

    fn received(&self) -> u64 {
        let out = run("ip", &["-n", &format!("{}r", self.tag), "-s", "-j", "link", "show", &format!("{}b", self.tag)]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
        v[0]["stats64"]["rx"]["packets"].as_u64().expect("rx packets")
    }

    fn del(&self) {
        for ns in ["s", "r"] {
            let _ = Command::new("ip").args(["netns", "del", &format!("{}{ns}", self.tag)]).output();
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.del();
    }
}

fn run(prog: &str, args: &[&str]) -> String {
    let o = Command::new(prog).args(args).output().unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(o.status.success(), "{prog} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn root() -> bool {
    let ok = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false);
    if !ok {
        eprintln!("skipped: needs root (network namespaces)");
    }
    ok
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn wait_for(p: &Pair, n: u64) -> u64 {
    // Frames in flight land within moments.
    for _ in 0..50 {
        if p.received() >= n {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    p.received()
}

#[test]
fn scrubber_perf_gen_sends_each_kind_exactly() {
    if !root() {
        return;
    }
    let p = Pair::new("gtg");
    let (ns, dev) = p.sender();
    let me = env!("CARGO_BIN_EXE_scrubber-perf");
    let mut total = 0;
    for (kind, src, dst) in [
        ("syn", "198.19.0.0/16", "198.18.0.10"),
        ("ack-psh", "198.19.0.0/16", "198.18.0.10"),
        ("rst", "2001:2:0:ffff::/64", "2001:2::10"),
        ("udp", "198.18.0.1/32", "198.18.0.10"),
    ] {
        let out = run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                me,
                "gen",
                "--dev",
                &dev,
                "--kind",
                kind,
                "--src",
                src,
                "--dst",
                dst,
                "--dst-mac",
                "02:00:5b:00:00:02",
                "--count",
                "1000",
                "--rate",
                "50000",
                "--seconds",
                "5",
                "--quiet",
            ],
        );
        let last: serde_json::Value = serde_json::from_str(out.lines().last().expect("a report")).expect("JSON");
        assert_eq!(last["event"], "done");
        assert_eq!(last["sent"], 1000, "{kind}: {out}");
        total += 1000;
        assert_eq!(wait_for(&p, total), total, "{kind}: every frame arrived, no more");
    }
}

#[test]
fn trafgen_profiles_send_the_count() {
    if !root() {
        return;
    }
    if Command::new("trafgen").arg("--version").output().is_err() {
        panic!("trafgen is missing (apt-get install netsniff-ng; scripts/test.sh installs it)");
    }
    let p = Pair::new("gtt");
    let (ns, dev) = p.sender();
    let script = repo().join("scripts/pktgen/trafgen_flood.sh");
    let mut total = 0;
    for kind in ["syn", "ack-psh", "rst", "udp"] {
        let s = script.to_string_lossy();
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns,
                &s,
                "-k",
                kind,
                "-i",
                &dev,
                "-m",
                "02:00:5b:00:00:02",
                "-d",
                "198.18.0.10",
                "-n",
                "500",
                "-T",
                "20",
            ],
        );
        total += 500;
        assert_eq!(wait_for(&p, total), total, "{kind}");
    }
    // Bad input is refused with a reason, before anything is sent.
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            &script.to_string_lossy(),
            "-k",
            "syn",
            "-i",
            &dev,
            "-m",
            "02:00:5b:00:00:02",
            "-d",
            "198.18.0.10",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("-n"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn pktgen_script_sends_or_says_what_is_missing() {
    if !root() {
        return;
    }
    let p = Pair::new("gtp");
    let (ns, dev) = p.sender();
    let script = repo().join("scripts/pktgen/pktgen_udp_flood.sh");
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            &script.to_string_lossy(),
            "-i",
            &dev,
            "-d",
            "198.18.0.10",
            "-m",
            "02:00:5b:00:00:02",
            "-n",
            "300",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    if std::path::Path::new("/proc/net/pktgen").exists() {
        assert!(o.status.success(), "{err}");
        assert_eq!(wait_for(&p, 300), 300);
    } else {
        // This machine has no pktgen module: the script must say so, and what to use instead.
        assert!(!o.status.success());
        assert!(err.contains("pktgen") && err.contains("scrubber-perf gen"), "{err}");
    }
}
