//! More than one core: `scrubber run --cores 0,1` on two-queue veths. Worker *i* owns queue *i*
//! of ext and int; the veths pick a queue per flow and direction independently, so the two
//! directions of many connections arrive on different workers and the frame goes to the flow's
//! owner through the hand-off queue. Real TCP must not notice: connections and transfers
//! succeed, floods are dropped, and hand-offs are counted on both sides. Root only.

use scrubber::tools::lab::exec::run_ns;
use scrubber::tools::lab::flood::Kind;
use scrubber::tools::lab::nft::{Class, Source};
use scrubber::tools::lab::topo::{Middle, Role, TopoOptions, SERVER4};
use scrubber_tests::e2e::{assert_all_ok, assert_intact, begin, s, Lab, V4_80, V6_80};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Per-worker stats (`scrubber stats --json`), once every worker has published `min_rx`
/// received frames, or as they are after 3 s.
fn workers(lab: &Lab, min_rx: u64) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let out = run_ns(&lab.topo.ns(Role::Middle), &lab.exe, &["stats", "--socket", &lab.socket, "--json"])
            .expect("scrubber stats");
        let v: serde_json::Value = serde_json::from_str(&out).expect("stats JSON");
        let w = v["workers"].as_array().expect("workers").clone();
        let rx = |w: &serde_json::Value| {
            w["counters"]["rx_inbound"].as_u64().unwrap_or(0) + w["counters"]["rx_outbound"].as_u64().unwrap_or(0)
        };
        if w.iter().all(|x| rx(x) >= min_rx) || Instant::now() > deadline {
            return w;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn n(w: &serde_json::Value, group: &str, name: &str) -> u64 {
    w[group][name].as_u64().unwrap_or(0)
}

#[test]
fn e2e_two_workers_hand_off_real_tcp() {
    let Some(_g) = begin("e2e_two_workers_hand_off_real_tcp") else { return };
    let mut lab = Lab::with(TopoOptions { middle: Middle::Open, vlan: None, queues: 2 });
    let mut argv = s(&["run", "--ext", "ext", "--int", "int", "--cores", "0,1", "--socket", &lab.socket]);
    argv.extend(s(&scrubber::tools::lab::PROTECT_LAB_SERVER));
    lab.start_scrubber_argv(argv);
    lab.wait_path(V4_80, Duration::from_secs(15));
    let before = lab.counts();

    // Legit traffic both ways, IPv4 and IPv6, with floods of untracked ACK-PSH and spoofed SYNs.
    let up = lab.transfer_bg(V4_80, "10M", "up");
    let down = lab.transfer_bg(V6_80, "10M", "down");
    let conns = lab.connect_bg(V4_80, 300, Some(150), 6);
    let conns6 = lab.connect_bg(V6_80, 100, Some(100), 2);
    let ack = lab.trafgen(Kind::AckPsh, IpAddr::V4(SERVER4), 60_000, 30_000);
    let syn = lab.trafgen(Kind::Syn, IpAddr::V4(SERVER4), 60_000, 30_000);
    let (ack, syn) = (ack.finish().expect("trafgen ACK-PSH"), syn.finish().expect("trafgen SYN"));
    assert_intact("10 MiB up through two workers", &Lab::transfer_done(up));
    assert_intact("10 MiB down (IPv6) through two workers", &Lab::transfer_done(down));
    assert_all_ok("IPv4 connections through two workers", &Lab::connect_done(conns), 300);
    assert_all_ok("IPv6 connections through two workers", &Lab::connect_done(conns6), 100);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(ack.sent > 0 && syn.sent > 0, "the floods did not run: {ack:?} {syn:?}");
    assert_eq!(d.get(Source::Spoof4, Class::All), 0, "flood frames reached the server: {d}");

    // Both workers worked, and frames crossed between them both ways.
    let w = workers(&lab, 100);
    assert_eq!(w.len(), 2, "two workers");
    let rx: Vec<u64> = w.iter().map(|x| n(x, "counters", "rx_inbound") + n(x, "counters", "rx_outbound")).collect();
    let out: Vec<u64> = w.iter().map(|x| n(x, "rings", "handoffs_out")).collect();
    let inn: Vec<u64> = w.iter().map(|x| n(x, "rings", "handoffs_in")).collect();
    let lost: u64 = w.iter().map(|x| n(x, "rings", "handoff_dropped")).sum();
    eprintln!("two workers: judged {rx:?}, handed out {out:?}, taken in {inn:?}, hand-offs dropped {lost}");
    assert!(rx.iter().all(|&r| r > 100), "a worker judged (almost) nothing: {rx:?}");
    assert!(out.iter().sum::<u64>() > 100, "no hand-offs: the directions never met different workers: {out:?}");
    // A hand-off is counted out when queued; the owner counts it in, or lost when it has no
    // frame for it (a full queue is counted lost by the sender, and not out).
    let (o, i) = (out.iter().sum::<u64>(), inn.iter().sum::<u64>());
    assert!(i <= o && o <= i + lost, "hand-offs out {o}, in {i}, lost {lost}: some vanished uncounted");
    let out = lab.stop_scrubber();
    assert!(out.contains("hand-off") || out.contains("handoff"), "final counters show the hand-offs:\n{out}");
}
