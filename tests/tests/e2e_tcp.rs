//! TCP corner cases with real Linux TCP stacks through `scrubber run`, each also through a plain
//! Linux bridge as the control (every probe must pass there): a blind in-window RST (hping3 from
//! the attacker, spoofing the client), a lost server RST, a reconnect from the same port while
//! the server keeps the old connection, an int link with MTU 1280 under a 10 MB upload, and the
//! time of TCP Fast Open requests. The client and server probes are Python with the kernel's TCP
//! (`tests/scripts/tcp_probe.py`). Root only (see `scrubber_tests::e2e::begin`).

use scrubber::tools::lab::exec::{ns_argv, run_argv_status, run_ns, NsChild};
use scrubber::tools::lab::topo::{Middle, Role};
use scrubber_tests::e2e::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The port the probe server listens on (besides the lab server on 80).
const PORT: u16 = 8080;
const TO: &str = "198.18.0.10:8080";

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tcp_probe.py").to_string()
}

/// A lab with the probe server; the scrubber (SYN proxy for ports 80 and 8080) when `middle` is
/// `Open`, else a plain bridge.
fn lab(middle: Middle) -> (Lab, NsChild) {
    let mut lab = Lab::new(middle, None);
    let srv = NsChild::spawn(
        Some(&lab.topo.ns(Role::Server)),
        "python3",
        &[script(), "server".into(), "--port".into(), PORT.to_string()],
        true,
    )
    .expect("start the probe server");
    // The probe server listens before any probe runs (a race seen in CI otherwise).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run_ns(&lab.topo.ns(Role::Server), "ss", &["-ltnH", "sport", "=", ":8080"]).is_ok_and(|o| o.contains("8080"))
    {
        assert!(Instant::now() < deadline, "the probe server never listened on port {PORT}");
        std::thread::sleep(Duration::from_millis(50));
    }
    if middle == Middle::Open {
        lab.start_scrubber_with(&["--protect", "198.18.0.10:80", "--protect", TO, "--syn-mode", "proxy"]);
    }
    lab.wait_path(V4_80, Duration::from_secs(15));
    (lab, srv)
}

/// Run a client probe in the client namespace; its JSON report.
fn probe(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let mut v = vec![script()];
    v.extend(args.iter().map(|a| a.to_string()));
    let mut c = NsChild::spawn(Some(&lab.topo.ns(Role::Client)), "python3", &v, true).expect("start the probe");
    report(&mut c)
}

fn report(c: &mut NsChild) -> serde_json::Value {
    let out = c.finish(Duration::from_secs(60)).expect("the probe finishes");
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("bad probe report ({e}): {} / {}", out.stdout, out.stderr))
}

/// The scrubber's total of one engine counter (`scrubber stats --json`), once it reached `min`
/// (workers publish every 100 ms), or as it is after 2 s.
fn counter(lab: &Lab, name: &str, min: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let out = run_ns(&lab.topo.ns(Role::Middle), &lab.exe, &["stats", "--socket", &lab.socket, "--json"])
            .expect("scrubber stats");
        let v: serde_json::Value = serde_json::from_str(&out).expect("stats JSON");
        let n = v["workers"].as_array().unwrap().iter().map(|w| w["counters"][name].as_u64().unwrap_or(0)).sum();
        if n >= min || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn label(middle: Middle) -> &'static str {
    if middle == Middle::Open {
        "scrubber"
    } else {
        "bridge"
    }
}

/// A blind RST inside the window (seq = the client's next + 1000, sent by the attacker with the
/// client's address): the server answers with a challenge ACK and the connection survives.
#[test]
fn e2e_tcp_blind_in_window_rst_does_not_cut_the_connection() {
    let Some(_g) = begin("e2e_tcp_blind_in_window_rst_does_not_cut_the_connection") else { return };
    for middle in [Middle::Bridge, Middle::Open] {
        let (lab, _srv) = lab(middle);
        let mut v = vec![script()];
        v.extend(["blind-rst", "--to", TO, "--sport", "45000"].map(String::from));
        let mut c = NsChild::spawn(Some(&lab.topo.ns(Role::Client)), "python3", &v, true).expect("probe");
        let seq = Arc::new(Mutex::new(None::<u32>));
        let s2 = Arc::clone(&seq);
        c.on_stderr_line(move |l| {
            if let Some(n) = l.strip_prefix("SEQ ") {
                *s2.lock().unwrap() = n.trim().parse().ok();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let next = loop {
            if let Some(n) = *seq.lock().unwrap() {
                break n;
            }
            assert!(Instant::now() < deadline, "{}: the probe never connected", label(middle));
            std::thread::sleep(Duration::from_millis(20));
        };
        let blind = next.wrapping_add(1000).to_string();
        let args =
            ["-q", "-R", "-a", "198.18.0.1", "-s", "45000", "-k", "-p", "8080", "-M", &blind, "-c", "1", "198.18.0.10"];
        // hping3 exits 1 when nothing answers, which is the case for a RST: only the sending counts.
        let argv = ns_argv(Some(&lab.topo.ns(Role::Attacker)), "hping3", &args.map(String::from));
        let sent = run_argv_status(&argv, Duration::from_secs(10)).expect("hping3 runs");
        assert!(sent.stderr.contains("1 packets transmitted"), "hping3: {sent:?}");
        let r = report(&mut c);
        assert_eq!(r["ok"], true, "{}: the connection did not survive a blind in-window RST: {r}", label(middle));
        if middle == Middle::Open {
            assert!(counter(&lab, "rst_inexact_forwarded", 1) >= 1, "the RST reached the scrubber and was forwarded");
        }
        eprintln!("e2e: blind RST through the {}: connection survived ({r})", label(middle));
    }
}

/// The server resets a connection and the RST is lost before the client: the client's next
/// segment still reaches the server, which resets it again, within a few seconds.
#[test]
fn e2e_tcp_lost_server_rst_does_not_hang_the_client() {
    let Some(_g) = begin("e2e_tcp_lost_server_rst_does_not_hang_the_client") else { return };
    for middle in [Middle::Bridge, Middle::Open] {
        let (lab, _srv) = lab(middle);
        let r = probe(&lab, &["lost-rst", "--to", TO, "--sport", "45001"]);
        assert_eq!(r["ok"], true, "{}: the client was not reset again: {r}", label(middle));
        assert!(r["ms"].as_f64().unwrap() < 5000.0, "{r}");
        if middle == Middle::Open {
            assert!(counter(&lab, "closed_forwarded", 1) >= 1);
        }
        eprintln!("e2e: lost RST through the {}: client reset again after {} ms", label(middle), r["ms"]);
    }
}

/// A client vanishes (its RST never leaves) and reconnects from the same port 200 ms later; the
/// server still holds the old connection and answers the new SYN with a challenge ACK.
#[test]
fn e2e_tcp_reconnect_from_the_same_port_while_the_server_keeps_the_old_connection() {
    let Some(_g) = begin("e2e_tcp_reconnect_from_the_same_port_while_the_server_keeps_the_old_connection") else {
        return;
    };
    for middle in [Middle::Bridge, Middle::Open] {
        let (lab, _srv) = lab(middle);
        let r = probe(&lab, &["reconnect", "--to", TO, "--sport", "45002", "--gap-ms", "200"]);
        assert_eq!(r["ok"], true, "{}: the reconnect did not get through: {r}", label(middle));
        if middle == Middle::Open {
            assert!(counter(&lab, "backend_challenge_acks", 1) >= 1, "the stale backend connection was reset");
            assert!(counter(&lab, "rst_sent", 1) >= 1);
        }
        eprintln!("e2e: same-port reconnect through the {}: {} ms", label(middle), r["ms"]);
    }
}

/// The int link carries 1280 bytes: a 10 MB upload through the SYN proxy must not black-hole
/// (clients are told an MSS that fits), and the download direction too.
#[test]
fn e2e_tcp_int_link_mtu_1280_upload() {
    let Some(_g) = begin("e2e_tcp_int_link_mtu_1280_upload") else { return };
    for middle in [Middle::Bridge, Middle::Open] {
        let mut lab = Lab::new(middle, None);
        run_ns(&lab.topo.ns(Role::Middle), "ip", &["link", "set", "int", "mtu", "1280"]).expect("mtu");
        run_ns(&lab.topo.ns(Role::Server), "ip", &["link", "set", "lan", "mtu", "1280"]).expect("mtu");
        if middle == Middle::Open {
            lab.start_scrubber();
        }
        lab.wait_path(V4_80, Duration::from_secs(15));
        let t0 = Instant::now();
        let up = lab.transfer(V4_80, "10M", "up");
        assert_intact(&format!("10 MB up through the {} to an MTU-1280 link", label(middle)), &up);
        assert_intact("5 MB down", &lab.transfer(V4_80, "5M", "down"));
        if middle == Middle::Open {
            assert!(counter(&lab, "mss_clamped", 1) >= 1);
        }
        eprintln!("e2e: MTU 1280 upload through the {}: 10 MB in {:.2} s", label(middle), t0.elapsed().as_secs_f64());
    }
}

/// TCP Fast Open requests (data in the SYN) and plain ones: how long each takes through the
/// scrubber and through the bridge. Through the scrubber the SYN's data is not accepted (the
/// backend handshake comes first); the client must not wait on its persist timer for it.
#[test]
fn e2e_tcp_fast_open_request_time() {
    let Some(_g) = begin("e2e_tcp_fast_open_request_time") else { return };
    let median = |v: &serde_json::Value| {
        let mut x: Vec<f64> = v.as_array().unwrap().iter().map(|n| n.as_f64().unwrap()).collect();
        x.sort_by(|a, b| a.partial_cmp(b).unwrap());
        x[x.len() / 2]
    };
    for middle in [Middle::Bridge, Middle::Open] {
        let (lab, _srv) = lab(middle);
        run_ns(&lab.topo.ns(Role::Client), "sysctl", &["-qw", "net.ipv4.tcp_fastopen=5"]).expect("client TFO");
        run_ns(&lab.topo.ns(Role::Server), "sysctl", &["-qw", "net.ipv4.tcp_fastopen=515"]).expect("server TFO");
        let r = probe(&lab, &["tfo", "--to", TO, "--rounds", "7"]);
        assert_eq!(r["ok"], true, "{}: {r}", label(middle));
        let (tfo, plain) = (median(&r["tfo"]), median(&r["plain"]));
        eprintln!("e2e: TCP Fast Open through the {}: request {tfo} ms (plain {plain} ms) {r}", label(middle));
        if middle == Middle::Open {
            assert!(counter(&lab, "tfo_syns", 1) >= 1);
            assert!(tfo < 150.0, "a Fast Open request through the scrubber took {tfo} ms (plain {plain} ms): {r}");
        }
    }
}
