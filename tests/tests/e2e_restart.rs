//! Restarts with real TCP through `scrubber run`: a 40 MB download through the SYN proxy
//! survives a SIGINT restart with `--state` (hash compared), and does not without it (the
//! control that shows the state is what carries it). Root only (see
//! `scrubber_tests::e2e::begin`).

use scrubber::tools::lab::exec::{run_ns, NsChild};
use scrubber::tools::lab::flood::Kind;
use scrubber::tools::lab::nft::{Class, Source};
use scrubber::tools::lab::topo::{Middle, Role, SERVER4};
use scrubber_tests::e2e::*;
use std::time::{Duration, Instant};

/// Download 40 MB at 64 Mbit/s (about 5 s) and restart the scrubber 1.5 s into it; the
/// scrubber's output of the second run.
fn restart_during_transfer(
    lab: &mut Lab,
    args: &[&str],
) -> (scrubber::tools::lab::peer::TransferReport, String, String) {
    let t = lab.transfer_paced_bg(V4_80, "40M", "down", 64);
    std::thread::sleep(Duration::from_millis(1500));
    let first = lab.stop_scrubber();
    let t0 = Instant::now();
    lab.start_scrubber_with(args);
    eprintln!("e2e: scrubber restarted in {} ms", t0.elapsed().as_millis());
    let rep = Lab::transfer_done(t);
    let second = lab.stop_scrubber();
    (rep, first, second)
}

#[test]
fn e2e_restart_with_state_keeps_a_proxied_transfer() {
    let Some(_g) = begin("e2e_restart_with_state_keeps_a_proxied_transfer") else { return };
    let dir = std::env::temp_dir().join(format!("e2e-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("sessions.state");
    let state_s = state.to_string_lossy().into_owned();
    let policy = ["--protect", "198.18.0.10:80", "--syn-mode", "proxy"];

    // With --state: the connection continues; the file is written on stop and consumed on start.
    let mut lab = Lab::new(Middle::Open, None);
    let mut with: Vec<&str> = policy.to_vec();
    with.extend(["--state", &state_s]);
    lab.start_scrubber_with(&with);
    lab.wait_path(V4_80, Duration::from_secs(15));
    let (rep, first, second) = restart_during_transfer(&mut lab, &with);
    assert!(first.contains("session(s) of 1 worker(s) saved"), "the first run saved its sessions:\n{first}");
    assert!(second.contains("restored"), "the second run restored them:\n{second}");
    assert!(!state.exists() || second.contains("saved"), "a loaded file is consumed");
    assert_intact("40 MB download across a restart with --state", &rep);
    eprintln!("e2e: restart with --state: {rep:?}");
    let restored_line = second.lines().find(|l| l.contains("restored")).unwrap_or_default().to_string();
    eprintln!("e2e: {restored_line}");
    drop(lab);

    // Without it: the same restart cuts the transfer.
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber_with(&policy);
    lab.wait_path(V4_80, Duration::from_secs(15));
    let (rep, _, second) = restart_during_transfer(&mut lab, &policy);
    assert!(rep.error.is_some(), "without --state the transfer should not survive the restart: {rep:?}");
    assert!(second.contains("ack_no_session"), "its segments were dropped as untracked:\n{second}");
    eprintln!("e2e: restart without --state: {rep:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--on-exit open`: SIGKILL the scrubber during a (tracked) download: the kernel bridge
/// carries it on, and new connections, until the next scrubber attaches. With `closed` a
/// SIGKILL stops everything (the control).
#[test]
fn e2e_restart_sigkill_with_on_exit_open_keeps_traffic_flowing() {
    let Some(_g) = begin("e2e_restart_sigkill_with_on_exit_open_keeps_traffic_flowing") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    let middle = lab.topo.ns(Role::Middle);
    let bridge_up = || run_ns(&middle, "ip", &["-o", "link", "show", "dev", "sbr-ext"]).is_ok();
    let open = ["--protect", "198.18.0.10:80", "--syn-mode", "track", "--on-exit", "open"];
    lab.start_scrubber_with(&open);
    lab.wait_path(V4_80, Duration::from_secs(15));
    assert!(bridge_up(), "--on-exit open put the bypass bridge in place");

    // While the scrubber runs, the bridge carries nothing: a flood is still dropped.
    let before = lab.counts();
    let f = lab.hping(Kind::AckPsh, 200, 1000);
    let leaked = lab.counts().since(&before).get(Source::Spoof4, Class::AckPsh);
    assert_eq!(leaked, 0, "a running scrubber lets no flood frame across the bridge ({} sent)", f.sent);

    // SIGKILL in the middle of a download: it completes through the bridge.
    let t = lab.transfer_paced_bg(V4_80, "20M", "down", 64);
    std::thread::sleep(Duration::from_millis(800));
    let t_kill = Instant::now();
    lab.kill_scrubber();
    let r = Lab::transfer_done(t);
    assert_intact("20 MB download across a SIGKILL with --on-exit open", &r);
    let c = lab.connect(V4_80, 20, None, 4);
    assert_all_ok("new connections while no scrubber runs (open)", &c, 20);
    eprintln!(
        "e2e: on-exit open: download across SIGKILL {r:?}; 20/20 new connections ({} ms after the kill)",
        t_kill.elapsed().as_millis()
    );
    // The risk, measured: a flood meanwhile reaches the server in full.
    let before = lab.counts();
    let f = lab.hping(Kind::AckPsh, 200, 1000);
    let leaked = lab.counts().since(&before).get(Source::Spoof4, Class::AckPsh);
    eprintln!("e2e: on-exit open, no scrubber: {leaked} of {} flood frames reached the server", f.sent);
    assert!(leaked > 0);

    // The next scrubber (closed, the default) takes over and removes the bridge.
    lab.start_scrubber_with(&["--protect", "198.18.0.10:80", "--syn-mode", "track"]);
    lab.wait_path(V4_80, Duration::from_secs(15));
    assert!(!bridge_up(), "--on-exit closed removes the bypass bridge");
    // And a SIGKILL now leaves the servers unreachable (fail-closed).
    lab.kill_scrubber();
    let c = lab.connect(V4_80, 3, None, 3);
    assert_eq!(c.ok, 0, "nothing passes while no scrubber runs (closed): {c:?}");
}

/// Stats of the running scrubber: (sum over workers of a counter, of a table gauge).
fn stats(lab: &Lab, counter: &str, table: &str) -> (u64, u64) {
    let out = run_ns(&lab.topo.ns(Role::Middle), &lab.exe, &["stats", "--socket", &lab.socket, "--json"])
        .expect("scrubber stats");
    let v: serde_json::Value = serde_json::from_str(&out).expect("stats JSON");
    let w = v["workers"].as_array().expect("workers");
    let c = w
        .iter()
        .map(|w| {
            let c = &w["counters"];
            c[counter].as_u64().or_else(|| c["dropped"][counter].as_u64()).unwrap_or(0)
        })
        .sum();
    let t = w.iter().map(|w| w["table"][table].as_u64().unwrap_or(0)).sum();
    (c, t)
}

/// A crash restart without `--state`, with a pickup window, and a max-rate random-source
/// ACK-PSH flood right after it: under 1 % of the flood reaches the server, the table never
/// fills, and the connections open before the crash (an upload and a download) resume.
#[test]
fn e2e_restart_pickup_window_under_an_ack_psh_flood() {
    let Some(_g) = begin("e2e_restart_pickup_window_under_an_ack_psh_flood") else { return };
    let dir = std::env::temp_dir().join(format!("e2e-pickup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("pickup.rules");
    std::fs::write(
        &rules,
        "sessions 64k\nservice web\n  dst 198.18.0.10\n  proto tcp\n  ports 80\n  syn track\n  pickup 60s\nend\n",
    )
    .unwrap();
    let rules_s = rules.to_string_lossy().into_owned();
    let args = ["--rules", rules_s.as_str()];
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber_with(&args);
    lab.wait_path(V4_80, Duration::from_secs(15));

    let up = lab.transfer_paced_bg(V4_80, "24M", "up", 24);
    let down = lab.transfer_paced_bg(V4_80, "24M", "down", 24);
    std::thread::sleep(Duration::from_millis(1500));
    lab.kill_scrubber();
    lab.start_scrubber_with(&args);
    let t_start = Instant::now();
    let before = lab.counts();
    let flood = lab.trafgen(Kind::AckPsh, std::net::IpAddr::V4(SERVER4), 800_000, 1_000_000).finish().expect("trafgen");
    let flood_secs = t_start.elapsed().as_secs_f64();
    let d = lab.counts().since(&before);
    let (picked, live) = stats(&lab, "sessions_picked_up", "live");
    let (probes, cap) = stats(&lab, "pickup_probes", "capacity");
    let (unverified, _) = stats(&lab, "pickup_unverified", "live");
    let r_up = Lab::transfer_done(up);
    let r_down = Lab::transfer_done(down);
    let at_server = d.get(Source::Spoof4, Class::AckPsh);
    let probes_at_server = d.get(Source::Spoof4, Class::Ack);
    eprintln!(
        "e2e: pickup under flood: trafgen sent {} ACK-PSH in {flood_secs:.1} s; at the server: {at_server} flood frames ({:.3} %), {probes_at_server} probes; scrubber: {probes} probes, {unverified} unverified drops, {picked} sessions picked up, table {live} of {cap}",
        flood.sent,
        100.0 * at_server as f64 / flood.sent.max(1) as f64
    );
    eprintln!("e2e: upload {r_up:?}\ne2e: download {r_down:?}");
    assert!(flood.sent >= 100_000, "the flood was too small to mean anything: {flood:?}");
    assert!(
        (at_server as f64) < 0.01 * flood.sent as f64,
        "{at_server} of {} flood frames reached the server",
        flood.sent
    );
    assert!(live < cap / 2, "the table filled up: {live} of {cap}");
    assert!(picked >= 2, "both transfers were picked up ({picked})");
    assert_intact("upload across a crash restart with pickup under a flood", &r_up);
    assert_intact("download across a crash restart with pickup under a flood", &r_down);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The server-side link goes down and up, then the interface is deleted and created again
/// while `scrubber run` runs: each is reported and counted, and traffic flows again afterwards
/// (after the re-creation on a data plane rebuilt with the sessions kept).
#[test]
fn e2e_restart_link_loss_is_detected_and_recovered() {
    let Some(_g) = begin("e2e_restart_link_loss_is_detected_and_recovered") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    let middle = lab.topo.ns(Role::Middle);
    lab.start_scrubber_with(&["--protect", "198.18.0.10:80", "--syn-mode", "proxy"]);
    lab.wait_path(V4_80, Duration::from_secs(15));
    let links = |lab: &Lab| -> serde_json::Value {
        let out = run_ns(&lab.topo.ns(Role::Middle), &lab.exe, &["stats", "--socket", &lab.socket, "--json"]).unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["links"].clone()
    };
    let wait = |lab: &Lab, what: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        let t = Instant::now();
        loop {
            let l = links(lab);
            if f(&l) {
                return l;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "{what}: {l}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(links(&lab)["int_up"], 1);

    run_ns(&middle, "ip", &["link", "set", "int", "down"]).unwrap();
    wait(&lab, "int down seen", &|l| l["int_up"] == 0 && l["link_down_events"] == 1);
    run_ns(&middle, "ip", &["link", "set", "int", "up"]).unwrap();
    wait(&lab, "int up seen", &|l| l["int_up"] == 1 && l["link_up_events"] == 1);
    lab.wait_path(V4_80, Duration::from_secs(15));

    // A download across a deletion and re-creation of int: the data plane is rebuilt, the
    // proxied session (its sequence offsets) kept.
    let t = lab.transfer_paced_bg(V4_80, "8M", "down", 16);
    std::thread::sleep(Duration::from_millis(1000));
    lab.topo.recreate_int().expect("re-create int");
    let l = wait(&lab, "int gone and rebuilt", &|l| l["link_gone_events"] == 1 && l["dataplane_rebuilds"] == 1);
    eprintln!("e2e: links after the re-creation: {l}");
    let r = Lab::transfer_done(t);
    assert_intact("download across the re-creation of int", &r);
    let c = lab.connect(V4_80, 10, None, 2);
    assert_all_ok("new connections after the rebuild", &c, 10);
    let out = lab.stop_scrubber();
    assert!(out.contains("disappeared") && out.contains("data plane rebuilt"), "{out}");
}

/// `scrubber run --take-over` while a proxied download and a 1,000/s ping run through the
/// scrubber: the download continues intact, and the pings lost at the wire during the
/// hand-over are counted (the gap between the old program's detach and the new one's attach).
#[test]
fn e2e_restart_take_over_under_load() {
    let Some(_g) = begin("e2e_restart_take_over_under_load") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    let policy = ["--protect", "198.18.0.10:80", "--syn-mode", "proxy"];
    lab.start_scrubber_with(&policy);
    lab.wait_path(V4_80, Duration::from_secs(15));
    let client = lab.topo.ns(Role::Client);
    let ping = NsChild::spawn(
        Some(&client),
        "ping",
        &["-q", "-i", "0.001", "-c", "5000", "-W", "1", "198.18.0.10"].map(String::from),
        true,
    )
    .expect("start ping");
    let t = lab.transfer_paced_bg(V4_80, "12M", "down", 24);
    std::thread::sleep(Duration::from_millis(1500));
    let mut argv = scrubber::tools::lab::run_argv(&lab.socket, &policy);
    argv.push("--take-over".into());
    let new = NsChild::spawn(Some(&lab.topo.ns(Role::Middle)), &lab.exe, &argv, true).expect("start the new scrubber");
    let mut old = lab.scrubber.take().expect("the old scrubber");
    let old_out = old.finish(Duration::from_secs(20)).expect("the old scrubber exits by itself");
    lab.scrubber = Some(new);
    let r = Lab::transfer_done(t);
    let mut ping = ping;
    let p = ping.finish(Duration::from_secs(30)).expect("ping finishes");
    let summary = p.stdout.lines().find(|l| l.contains("packets transmitted")).unwrap_or_default().to_string();
    let nums: Vec<u64> = summary.split(|c: char| !c.is_ascii_digit()).filter_map(|x| x.parse().ok()).collect();
    let (sent, got) = (nums.first().copied().unwrap_or(0), nums.get(1).copied().unwrap_or(0));
    let new_out = lab.stop_scrubber();
    let gap = new_out.lines().find(|l| l.contains("hand-over complete")).unwrap_or_default().to_string();
    eprintln!("e2e: take-over: ping {summary}; {gap}");
    eprintln!("e2e: take-over: download {r:?}");
    assert!(old_out.stderr.contains("handed over"), "the old scrubber handed over:\n{}", old_out.stderr);
    assert!(new_out.contains("took over from the running scrubber"), "{new_out}");
    assert_intact("proxied download across a take-over", &r);
    assert!(sent >= 4_000, "ping ran: {summary}");
    // What the wire lost during the hand-over (both directions of each ping count once).
    eprintln!(
        "e2e: take-over: {} of {sent} pings lost ({:.2} %)",
        sent - got,
        100.0 * (sent - got) as f64 / sent as f64
    );
    assert!(sent - got < sent / 10, "a hand-over loses a moment, not a tenth of the traffic: {summary}");
}
