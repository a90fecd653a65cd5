//! HTTP floods through `scrubber run`, with real Linux TCP everywhere: a botnet of 1,024
//! source addresses in the attacker namespace (an AnyIP route), a junk-header flood shaped like
//! the seed incident and a GET flood at 3,000 requests/s, half of it from a "country" prefix
//! file; a legitimate curl client (keep-alive and not) all along; requests counted at the
//! server. Root only (SKIPPED otherwise).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use scrubber::tools::lab::botnet::BotnetReport;
use scrubber::tools::lab::exec::{run_ns, NsChild};
use scrubber::tools::lab::topo::{Middle, Role};
use scrubber_tests::e2e::*;

const WEB: &str = "198.18.0.10:80";
/// The botnet's addresses (owned by the attacker namespace).
const BOTS: &str = "198.19.16.0/22";
/// Of those: the "country" in the prefix file (512 sources), GET flooders outside it (32),
/// junk senders (256).
const COUNTRY: &str = "198.19.16.0/23";
const UNLISTED_FIRST: &str = "198.19.18.0";
const JUNK_FIRST: &str = "198.19.19.0";

fn rules(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::write(dir.join("country-x.txt"), format!("# a country's prefixes\n{COUNTRY}\n")).unwrap();
    let p = dir.join("http.rules");
    std::fs::write(
        &p,
        "set country-x file \"country-x.txt\"\n\
         service web\n  dst 198.18.0.10\n  ports 80\n  \
         http max-header-bytes 8k max-header-line 4k max-headers 64 methods GET,HEAD,POST ban 30s after 2\n\
         end\n\
         deny from country-x service web\n\
         limit service web per-source requests 20/s burst 40 ban 5s after 3\n",
    )
    .unwrap();
    p
}

/// A legitimate client in the client namespace: every 500 ms, four requests on one keep-alive
/// connection and one on a connection of its own (10 requests/s, within the budget). Returns
/// (ok, failed) when stopped.
struct Legit {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    h: std::thread::JoinHandle<(u64, u64, Vec<String>)>,
}

impl Legit {
    fn start(ns: String) -> Legit {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let h = std::thread::spawn(move || {
            let (mut ok, mut bad, mut errs) = (0u64, 0u64, Vec::new());
            let url = "http://198.18.0.10/";
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                for args in [
                    vec!["-s", "-o", "/dev/null", "-w", "%{http_code}\\n", "--max-time", "3", url, url, url, url],
                    vec![
                        "-s",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}\\n",
                        "--max-time",
                        "3",
                        "-H",
                        "Connection: close",
                        url,
                    ],
                ] {
                    let out = run_ns(&ns, "curl", &args).unwrap_or_else(|e| e.to_string());
                    let codes: Vec<&str> = out.split_whitespace().collect();
                    let want = args.iter().filter(|a| **a == url).count();
                    let good = codes.iter().filter(|c| **c == "200").count();
                    ok += good as u64;
                    if good < want {
                        bad += (want - good) as u64;
                        errs.push(out.trim().to_string());
                    }
                }
                std::thread::sleep(Duration::from_millis(500).saturating_sub(t.elapsed()));
            }
            (ok, bad, errs)
        });
        Legit { stop, h }
    }

    fn stop(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.h.join().unwrap()
    }
}

fn botnet(lab: &Lab, args: &[&str]) -> NsChild {
    let mut v = s(&["peer", "botnet", "--to", WEB]);
    v.extend(s(args));
    NsChild::spawn(Some(&lab.topo.ns(Role::Attacker)), &lab.exe, &v, true).expect("start the botnet")
}

fn report(mut c: NsChild) -> BotnetReport {
    let out = c.finish(Duration::from_secs(60)).expect("botnet finished");
    assert!(out.status.success(), "botnet failed: {}{}", out.stdout, out.stderr);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("botnet report {e}: {}", out.stdout))
}

fn in_prefix(addr: &str, first: [u8; 3], third_hi: u8) -> bool {
    let o: Vec<u8> = addr.split('.').filter_map(|x| x.parse().ok()).collect();
    o.len() == 4 && o[0] == first[0] && o[1] == first[1] && (first[2]..=third_hi).contains(&o[2])
}

fn ban(lab: &Lab, args: &[&str]) -> String {
    let mut v = s(&["ban"]);
    v.extend(s(args));
    v.extend(s(&["--socket", &lab.socket]));
    let mut c = NsChild::spawn(None, &lab.exe, &v, true).unwrap();
    let o = c.finish(Duration::from_secs(10)).unwrap();
    format!("{}{}", o.stdout, o.stderr)
}

#[test]
fn http_floods_from_a_botnet_are_stopped_and_legit_clients_served() {
    let Some(_g) = begin("e2e_http") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    let (ns_a, ns_s) = (lab.topo.ns(Role::Attacker), lab.topo.ns(Role::Server));
    run_ns(&ns_a, "ip", &["route", "add", "local", BOTS, "dev", "lo"]).unwrap();
    run_ns(&ns_s, "ip", &["route", "add", BOTS, "via", "198.18.0.66"]).unwrap();
    let dir = std::env::temp_dir().join(format!("scrubber-{}-http", lab.topo.tag()));
    std::fs::create_dir_all(&dir).unwrap();
    let r = rules(&dir);
    lab.start_scrubber_with(&["--rules", r.to_str().unwrap()]);
    let web: SocketAddr = WEB.parse().unwrap();
    lab.wait_path(web, Duration::from_secs(10));

    // 1. Junk headers: 300 requests of four 3,000-byte made-up headers from 256 sources.
    let legit = Legit::start(lab.topo.ns(Role::Client));
    let before = lab.served();
    let junk = report(botnet(
        &lab,
        &[
            "--kind",
            "junk",
            "--first",
            JUNK_FIRST,
            "--sources",
            "256",
            "--rate",
            "100",
            "--seconds",
            "3",
            "--threads",
            "16",
        ],
    ));
    std::thread::sleep(Duration::from_millis(400));
    let after = lab.served();
    eprintln!(
        "junk flood: {junk:?}; server: junk requests {} -> {}, heads cut before their end {} -> {}",
        before.junk, after.junk, before.cut, after.cut
    );
    assert!(junk.offered >= 250 && junk.connects >= 100, "the junk flood ran: {junk:?}");
    assert_eq!(after.junk, before.junk, "junk-header requests reached the server");
    assert_eq!(junk.answered, 0, "{junk:?}");

    // 2. GET flood, 3,000 requests/s for 5 s: 1,500/s from the 512 sources of the country
    // list, 1,500/s from 32 sources outside it (47/s each, over their 20/s budget).
    let t0 = Instant::now();
    let listed = botnet(
        &lab,
        &[
            "--kind",
            "get",
            "--first",
            "198.19.16.0",
            "--sources",
            "512",
            "--rate",
            "1500",
            "--seconds",
            "5",
            "--threads",
            "96",
            "--timeout-ms",
            "300",
        ],
    );
    let unlisted = botnet(
        &lab,
        &[
            "--kind",
            "get",
            "--first",
            UNLISTED_FIRST,
            "--sources",
            "32",
            "--rate",
            "1500",
            "--seconds",
            "5",
            "--threads",
            "48",
            "--timeout-ms",
            "300",
        ],
    );
    // Bans show while the flood runs.
    std::thread::sleep(Duration::from_secs(3));
    let during = ban(&lab, &["list"]);
    let (listed, unlisted) = (report(listed), report(unlisted));
    let flood_secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(400));
    let served = lab.served();
    let (ok, bad, errs) = legit.stop();
    let from = |first: [u8; 3], hi: u8| -> u64 {
        served.by_source.iter().filter(|(a, _)| in_prefix(a, first, hi)).map(|(_, n)| n).sum()
    };
    let (srv_listed, srv_unlisted) = (from([198, 19, 16], 17), from([198, 19, 18], 18));
    let stats = lab.stop_scrubber();
    eprintln!(
        "GET flood over {flood_secs:.1} s: listed {listed:?}\n  unlisted {unlisted:?}\n  served: listed {srv_listed}, unlisted {srv_unlisted}; legit ok {ok} failed {bad}"
    );
    eprintln!("bans during the flood:\n{during}");
    let offered = listed.offered + unlisted.offered;
    assert!(offered as f64 >= 3000.0 * 4.5, "3,000 requests/s offered: {offered} in {flood_secs:.1} s");
    assert_eq!(srv_listed, 0, "requests from the listed country reached the server");
    assert!(listed.connects == 0, "no handshake from the country list completes: {listed:?}");
    // Unlisted: at most the burst + 20/s for the flood's time per source (and less once banned).
    let budget = 32 * (40 + 20 * 6);
    assert!(srv_unlisted <= budget, "over-limit sources got {srv_unlisted} requests through (budget {budget})");
    assert!(srv_unlisted < unlisted.offered / 2, "the request limit held back most of {}", unlisted.offered);
    assert!(during.lines().any(|l| l.starts_with("198.19.18.")), "over-limit sources banned: {during}");
    assert!(!during.contains("198.18.0.1 "), "the legit client was banned: {during}");
    assert_eq!(bad, 0, "legit requests failed: {errs:?}");
    assert!(ok >= 50, "legit client ran: {ok}");
    for reason in ["http_request_limit", "rule_deny", "banned", "http_header_too_large"] {
        assert!(stats.contains(reason), "final stats lack {reason}:\n{stats}");
    }

    // 3. Bans expire: after 5 s a banned source is served again; the operator adds and lifts.
    lab.start_scrubber_with(&["--rules", r.to_str().unwrap()]);
    lab.wait_path(web, Duration::from_secs(10));
    let one = || {
        report(botnet(
            &lab,
            &[
                "--kind",
                "get",
                "--first",
                UNLISTED_FIRST,
                "--sources",
                "1",
                "--rate",
                "60",
                "--seconds",
                "2",
                "--threads",
                "1",
                "--per-conn",
                "60",
            ],
        ))
    };
    let first = one();
    assert!(first.answered >= 40 && first.answered < first.offered, "limited: {first:?}");
    let listed_now = ban(&lab, &["list"]);
    assert!(listed_now.contains(UNLISTED_FIRST), "banned: {listed_now}");
    std::thread::sleep(Duration::from_secs(6));
    assert!(!ban(&lab, &["list"]).contains(UNLISTED_FIRST), "the ban expired");
    let again = report(botnet(
        &lab,
        &[
            "--kind",
            "get",
            "--first",
            UNLISTED_FIRST,
            "--sources",
            "1",
            "--rate",
            "5",
            "--seconds",
            "1",
            "--threads",
            "1",
        ],
    ));
    assert!(again.answered >= 3, "served again after the ban: {again:?}");
    let out = ban(&lab, &["add", "198.18.0.1", "--for", "1m"]);
    assert!(out.contains("banned for 60 s"), "{out}");
    let curl = |ns: &str| {
        run_ns(ns, "curl", &["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "http://198.18.0.10/"])
    };
    let ns_c = lab.topo.ns(Role::Client);
    assert!(curl(&ns_c).map(|c| c != "200").unwrap_or(true), "a banned client is not served");
    assert!(ban(&lab, &["del", "198.18.0.1"]).contains("lifted"));
    assert_eq!(curl(&ns_c).unwrap_or_default(), "200", "served again after the ban was lifted");
    let _ = std::fs::remove_dir_all(&dir);
}
