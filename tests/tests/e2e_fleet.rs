//! Scrubbers in parallel behind ECMP (`scrubber lab --boxes 2`): BIRD 2 on an edge and an inner
//! router, BGP and BFD through every box, a failover under a spoofed flood. Root only (SKIPPED
//! otherwise).

use scrubber::tools::lab::fleet::FleetReport;
use scrubber_tests::e2e::*;

fn failover(extra: &[&str]) -> (FleetReport, String) {
    let exe = scrubber_bin();
    let mut argv = vec!["lab", "--boxes", "2", "--seconds", "6", "--flood-pps", "20000", "--conn-rate", "50", "--json"];
    argv.extend_from_slice(extra);
    let out = std::process::Command::new(&exe).args(&argv).output().expect("scrubber lab --boxes runs");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scrubber lab --boxes failed:\n{text}");
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string();
    let r: FleetReport =
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("last line is not the report ({e}):\n{text}"));
    (r, text)
}

#[test]
fn failover_behind_ecmp_with_bgp_and_bfd() {
    let Some(_g) = begin("e2e_fleet") else { return };
    let (r, text) = failover(&[]);
    eprintln!("{text}");
    // Both boxes carried traffic before the failure (the ECMP hash spreads the flows).
    assert!(r.per_box_forwarded.iter().all(|&n| n > 100), "{r:?}");
    // BFD took the dead box's path out within a second.
    assert!(r.failover_ms < 1000, "{r:?}");
    // A dead box passes nothing (fail-closed); the survivor drops the flood.
    assert!(r.flood_frames_sent > 50_000, "{r:?}");
    assert_eq!(r.flood_frames_at_server, 0, "{r:?}");
    // New connections all succeed once the path is gone.
    assert_eq!(r.new_connections_failed_after_failover, 0, "{r:?}");
    // The box rejoins while the traffic goes on, and its peers' table walks give it the
    // connections they carried meanwhile (the ones it carried before are among them).
    assert!(r.rejoin_ms < 30_000, "{r:?}");
    assert!(r.sessions_walked >= r.established && r.rejoin_sessions_imported >= r.established, "{r:?}");
    // The connections the dead box carried go on through the survivor, which took in its
    // sessions (proxied: with their sequence offsets), and go back to the restarted box.
    assert!(r.sync && r.established_survived_pct >= 93.0, "{r:?}");
    assert!(r.sync_bytes_per_s > 0.0, "{r:?}");
    // Without session streaming the dead box's connections die with it.
    let (n, text) = failover(&["--no-sync"]);
    eprintln!("{text}");
    assert!(!n.sync && n.established_survived < r.established_survived, "sync {r:?}\nno sync {n:?}");
    assert_eq!(n.flood_frames_at_server, 0, "{n:?}");
}

/// Detection → diversion: the boxes' attack events run the GoBGP hook
/// (examples/hooks/gobgp-blackhole.sh), which announces a blackhole route for the attacked
/// server to the edge router (BIRD) and withdraws it when the attack stops.
#[test]
fn attack_events_divert_through_gobgp() {
    let Some(_g) = begin("e2e_fleet_divert") else { return };
    let exe = scrubber_bin();
    let out = std::process::Command::new(&exe)
        .args(["lab", "--boxes", "2", "--divert", "--seconds", "6", "--flood-pps", "20000", "--json"])
        .output()
        .expect("scrubber lab --boxes --divert runs");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scrubber lab --divert failed:\n{text}");
    eprintln!("{text}");
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").to_string();
    let r: scrubber::tools::lab::fleet::DivertReport =
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("last line is not the report ({e}):\n{text}"));
    assert!(r.route.starts_with("blackhole 198.18.30.10"), "{r:?}");
    assert!(r.announced_ms < 3000, "announced within a few seconds of the flood: {r:?}");
    assert!(r.withdrawn_ms > r.announced_ms, "{r:?}");
}
