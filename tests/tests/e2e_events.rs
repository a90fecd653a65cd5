//! Attack events live: an ACK-PSH flood from a heavy source (hping3, one spoofed address) and
//! random spoofed ones (trafgen) at one target while legitimate connections run to another.
//! Root only (see `scrubber_tests::e2e::begin`).

use scrubber::tools::lab::exec::run_ns;
use scrubber::tools::lab::flood::Kind;
use scrubber::tools::lab::topo::{Middle, Role, SERVER4};
use scrubber_tests::e2e::*;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn e2e_events_name_the_target_the_type_and_the_heavy_source() {
    let Some(_g) = begin("e2e_events_name_the_target_the_type_and_the_heavy_source") else { return };
    let dir = std::env::temp_dir().join(format!("e2e-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("events.rules");
    std::fs::write(
        &rules,
        "attack-threshold 3kpps\nattack-quiet 3s\n\
         service web\n  dst 198.18.0.10\n  proto tcp\n  ports 80\n  syn proxy\nend\n\
         service api\n  dst 2001:2::10\n  proto tcp\n  ports 80\n  syn proxy\nend\n",
    )
    .unwrap();
    let events = dir.join("events.jsonl");
    let hook = dir.join("hook.jsonl");
    let (r, e, h) = (rules.to_string_lossy(), events.to_string_lossy(), hook.to_string_lossy());
    let on_event = format!("cat >> {h}");
    let mut lab = Lab::new(Middle::Open, None);
    let samples = dir.join("samples");
    let sd = samples.to_string_lossy().into_owned();
    lab.start_scrubber_with(&[
        "--rules",
        &r,
        "--events",
        &e,
        "--on-event",
        &on_event,
        "--sample-dir",
        &sd,
        "--sample-rates",
        "drop=500,pass=0,icmp=1",
    ]);
    lab.wait_path(V6_80, Duration::from_secs(15));

    // Legitimate connections to api throughout.
    let legit = lab.connect_bg(V6_80, 300, Some(50), 4);
    std::thread::sleep(Duration::from_millis(500));
    let t_flood = now();
    // The heavy source (hping3: one spoofed address, 10 kpps at most) and random ones (trafgen).
    let lab_ref = &lab;
    let (heavy, random) = std::thread::scope(|s| {
        let h = s.spawn(|| lab_ref.hping(Kind::AckPsh, 30_000, 100));
        let r =
            lab_ref.trafgen(Kind::AckPsh, std::net::IpAddr::V4(SERVER4), 120_000, 30_000).finish().expect("trafgen");
        (h.join().unwrap(), r)
    });
    let t_end = now();
    eprintln!("e2e: flood: hping3 {heavy:?}; trafgen {random:?}; {:.1} s", t_end - t_flood);
    // Scraped from the scrubber's namespace right after the flood: the target's drops, and the
    // attack still on (the quiet time has not passed).
    let metrics =
        run_ns(&lab.topo.ns(Role::Middle), "curl", &["-sS", "--max-time", "5", "http://127.0.0.1:9477/metrics"])
            .expect("scrape /metrics");
    let series = |name: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && l.contains("target=\"web\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let acks = series("scrubber_target_class_ack_psh_total");
    eprintln!(
        "e2e: /metrics: {} bytes; web ack_psh {acks}; under_attack {}",
        metrics.len(),
        series("scrubber_under_attack")
    );
    assert!(acks > 10_000, "the target's ACK-PSH drops are in /metrics");
    assert_eq!(series("scrubber_under_attack"), 1, "the attack state is in /metrics");
    // `scrubber top` in a pseudo-terminal of 80x24 (script(1)), as over ssh.
    let cmd = format!("stty cols 80 rows 24; {} top --socket {} --frames 2 --interval 0.5", lab.exe, lab.socket);
    let screen =
        run_ns(&lab.topo.ns(Role::Middle), "script", &["-qec", &cmd, "/dev/null"]).expect("scrubber top in a pty");
    assert!(
        screen.contains("under attack: web") && screen.contains("ATTACK"),
        "scrubber top shows the attack: {screen}"
    );
    eprintln!("e2e: scrubber top drew {} bytes showing the attack on web", screen.len());
    let c = Lab::connect_done(legit);
    // Wait for the stop (quiet 3 s after the flood).
    let deadline = Instant::now() + Duration::from_secs(15);
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an event is JSON"))
            .collect()
    };
    while !read().iter().any(|v| v["event"] == "stop") {
        assert!(Instant::now() < deadline, "no stop event: {:?}", read());
        std::thread::sleep(Duration::from_millis(200));
    }
    let evs = read();
    for v in &evs {
        eprintln!("e2e: event {v}");
    }
    assert!(evs.iter().all(|v| v["target"] == "web"), "only the attacked target raises events: {evs:?}");
    let start = evs.iter().find(|v| v["event"] == "start").expect("a start event");
    let t_start = start["time"].as_f64().unwrap();
    assert!(t_start - t_flood <= 2.5, "the start came {:.1} s after the flood began", t_start - t_flood);
    assert_eq!(start["types"][0], "ack-psh flood");
    let heavy_src = scrubber_tests::e2e::SPOOF.to_string();
    let tops: Vec<String> =
        start["top_sources"].as_array().unwrap().iter().map(|s| s["src"].as_str().unwrap().to_string()).collect();
    assert_eq!(tops.first(), Some(&heavy_src), "the heavy source leads the top sources: {tops:?}");
    let stop = evs.iter().find(|v| v["event"] == "stop").unwrap();
    let t_stop = stop["time"].as_f64().unwrap();
    assert!(t_stop - t_end <= 3.0 + 2.0, "the stop came {:.1} s after the flood ended", t_stop - t_end);
    assert!(stop["dropped"].as_u64().unwrap() > 10_000, "{stop}");
    // The hook got the same events.
    let hooked = std::fs::read_to_string(&hook).unwrap_or_default();
    assert_eq!(hooked.lines().count(), evs.len(), "{hooked}");
    assert!(c.ok > 0 && c.failed == 0, "legitimate connections to api: {c:?}");
    // The sampled drops: pcapng that tcpdump reads, ACK-PSH from the spoofed sources.
    let out = lab.stop_scrubber();
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&samples).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!files.is_empty(), "no sample file: {out}");
    let mut flood_samples = 0;
    for f in &files {
        let o = std::process::Command::new("tcpdump").args(["-nr"]).arg(f).output().unwrap();
        assert!(o.status.success(), "tcpdump -r {}: {}", f.display(), String::from_utf8_lossy(&o.stderr));
        flood_samples +=
            String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.contains("198.19.") && l.contains("[P.]")).count();
    }
    eprintln!("e2e: {} sample file(s), {flood_samples} sampled ACK-PSH flood frames (1 in 500 drops)", files.len());
    assert!(flood_samples >= 100, "about 1 in 500 of ~150,000 drops");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `scrubber lab` shows the attack events and the top talkers as its phases run.
#[test]
fn e2e_events_in_the_lab() {
    let Some(_g) = begin("e2e_events_in_the_lab") else { return };
    let exe = scrubber_bin();
    let out = std::process::Command::new(&exe)
        .args(["lab", "--seconds", "3", "--flood-pps", "30000"])
        .output()
        .expect("scrubber lab runs");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scrubber lab failed:\n{text}");
    assert!(text.contains("attack started on web: ack-psh flood"), "no start event in the lab:\n{text}");
    assert!(text.contains("| ATTACK on web top "), "no attack state in the live lines:\n{text}");
    eprintln!("e2e: scrubber lab shows events and top talkers");
}
