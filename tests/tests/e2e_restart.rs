//! Restarts with real TCP through `scrubber run`: a 40 MB download through the SYN proxy
//! survives a SIGINT restart with `--state` (hash compared), and does not without it (the
//! control that shows the state is what carries it). Root only (see
//! `scrubber_tests::e2e::begin`).

use scrubber::tools::lab::exec::run_ns;
use scrubber::tools::lab::flood::Kind;
use scrubber::tools::lab::nft::{Class, Source};
use scrubber::tools::lab::topo::{Middle, Role};
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
