//! Every declared counter reaches every output: the `scrubber stats` text, the stats JSON, the
//! replay summary text and its JSON. The lists come from the declarations (`Group::INFO`,
//! `DropReason::ALL`, `Counters::FAMILIES`), so a counter added later is checked too.

use scrubber::control::reload::ReloadStats;
use scrubber::control::stats::render;
use scrubber::control::telemetry::{Snapshot, SNAPSHOT_VERSION};
use scrubber::dataplane::stats::{RingStats, WorkerStats};
use scrubber::engine::counters::{flag_name, Counters, EngineCounters, Group, RuleCounters, RuleCounts, TargetCounts};
use scrubber::engine::policy::limiter::LimiterStats;
use scrubber::engine::session::TableStats;
use scrubber::tools::replay::Summary;
use scrubber::{DropReason, Engine, EngineConfig};

/// Set every counter of `g` to a distinct nonzero value from `seed`.
fn fill<G: Group>(g: &mut G, seed: u64) {
    for i in 0..G::INFO.len() {
        g.set(i, seed + i as u64 + 1);
    }
}

/// Counters with every scalar, every reason (dropped and would-drop), a few flag combinations,
/// a target and a rule set.
fn every_counter() -> Counters {
    let mut c = Counters::new(&["198.18.0.10:80".into()]);
    fill(&mut c.engine, 1000);
    for r in DropReason::ALL {
        c.dropped[r.index()] = 7 + r.index() as u64;
        c.would_drop[r.index()] = 3 + r.index() as u64;
    }
    for f in [0x02u8, 0x10, 0x18, 0x11, 0x04] {
        c.tcp_flags_inbound[usize::from(f)] = 100 + u64::from(f);
    }
    fill(&mut c.per_target[0].n, 50);
    c.per_rule.push(RuleCounters::new("edge.rules:12 deny from blocklist"));
    fill(&mut c.per_rule[0].n, 60);
    c
}

fn group_names<G: Group>() -> Vec<&'static str> {
    G::INFO.iter().map(|i| i.name).collect()
}

/// Every name a text output must show for `c`.
fn family_labels(c: &Counters) -> Vec<String> {
    let mut v: Vec<String> = DropReason::ALL.iter().map(|r| r.as_str().to_string()).collect();
    v.extend(c.tcp_flags().map(|(n, _)| n));
    v.extend(c.per_target.iter().map(|t| t.label.clone()));
    v.extend(c.per_rule.iter().map(|r| r.label.clone()));
    v.extend(Counters::FAMILIES.iter().map(|f| f.name.to_string()));
    v.extend(group_names::<TargetCounts>().iter().map(|s| s.to_string()));
    v.extend(group_names::<RuleCounts>().iter().map(|s| s.to_string()));
    v
}

fn assert_in_text(what: &str, text: &str, names: &[&str]) {
    for n in names {
        assert!(text.contains(n), "{what} lacks the declared counter `{n}`:\n{text}");
    }
}

fn snapshot() -> Snapshot {
    let mut w = WorkerStats::new(0, &["198.18.0.10:80".into()]);
    w.counters = every_counter();
    fill(&mut w.table, 2000);
    fill(&mut w.limiter, 3000);
    fill(&mut w.rings, 4000);
    fill(&mut w.http, 4500);
    fill(&mut w.sync, 4700);
    let mut reload = ReloadStats::default();
    fill(&mut reload, 5000);
    let mut links = scrubber::control::links::LinkStats::default();
    fill(&mut links, 6000);
    let mut bans = scrubber::engine::ban::BanStats::default();
    fill(&mut bans, 7000);
    Snapshot {
        version: SNAPSHOT_VERSION,
        pid: 1,
        started_unix: 0,
        uptime_secs: 1.0,
        policy: "p".into(),
        reload,
        links,
        events: Default::default(),
        under_attack: vec!["web".into()],
        samples: Default::default(),
        bans,
        banned: vec![scrubber::control::bans::Listed {
            addr: "198.19.1.2".into(),
            seconds_left: 42,
            strikes: 3,
            by: "http checks of web".into(),
        }],
        sync: Default::default(),
        workers: vec![w],
    }
}

#[test]
fn stats_text_shows_every_declared_counter() {
    let s = snapshot();
    let text = render(&s, None);
    assert_in_text("scrubber stats", &text, &group_names::<EngineCounters>());
    assert_in_text("scrubber stats", &text, &group_names::<TableStats>());
    assert_in_text("scrubber stats", &text, &group_names::<LimiterStats>());
    assert_in_text("scrubber stats", &text, &group_names::<RingStats>());
    assert_in_text("scrubber stats", &text, &group_names::<ReloadStats>());
    assert_in_text("scrubber stats", &text, &group_names::<scrubber::control::links::LinkStats>());
    assert_in_text("scrubber stats", &text, &group_names::<scrubber::control::events::EventStats>());
    assert_in_text("scrubber stats", &text, &group_names::<scrubber::control::samples::SampleStats>());
    assert_in_text("scrubber stats", &text, &group_names::<scrubber::engine::http::HttpTableStats>());
    assert_in_text("scrubber stats", &text, &group_names::<scrubber::engine::ban::BanStats>());
    assert_in_text("scrubber stats", &text, &group_names::<scrubber::control::sync::SyncNetStats>());
    assert_in_text("scrubber stats", &text, &group_names::<scrubber::engine::sync::SyncStats>());
    assert!(text.contains("198.19.1.2") && text.contains("http checks of web"), "{text}");
    assert!(text.contains("under attack: web"), "{text}");
    let labels = family_labels(&s.workers[0].counters);
    assert_in_text("scrubber stats", &text, &labels.iter().map(String::as_str).collect::<Vec<_>>());
    // With a previous snapshot, counters get rates.
    let mut later = s.clone();
    later.uptime_secs = 2.0;
    later.workers[0].counters.rx_inbound += 500;
    let text = render(&later, Some(&s));
    let line = text.lines().find(|l| l.trim_start().starts_with("rx_inbound")).unwrap();
    assert!(line.contains("500/s"), "{line}");
}

#[test]
fn stats_json_carries_every_declared_counter() {
    let s = snapshot();
    let j = serde_json::to_value(&s).unwrap();
    let w = &j["workers"][0];
    for (obj, names) in [
        (&w["counters"], group_names::<EngineCounters>()),
        (&w["table"], group_names::<TableStats>()),
        (&w["limiter"], group_names::<LimiterStats>()),
        (&w["rings"], group_names::<RingStats>()),
        (&j["reload"], group_names::<ReloadStats>()),
    ] {
        for n in names {
            assert!(obj.get(n).and_then(|v| v.as_u64()).is_some_and(|v| v > 0), "JSON lacks `{n}`: {obj}");
        }
    }
    let c = &w["counters"];
    for f in Counters::FAMILIES {
        assert!(c.get(f.name).is_some(), "JSON lacks the family `{}`", f.name);
    }
    for r in DropReason::ALL {
        assert!(c["dropped"][r.as_str()].as_u64().unwrap() > 0, "dropped lacks {r}");
        assert!(c["would_drop"][r.as_str()].as_u64().unwrap() > 0, "would_drop lacks {r}");
    }
    assert_eq!(c["tcp_flags_inbound"][flag_name(0x18)], 124);
    for n in group_names::<TargetCounts>() {
        assert!(c["per_target"][0][n].as_u64().unwrap() > 0, "per_target lacks {n}");
    }
    for n in group_names::<RuleCounts>() {
        assert!(c["per_rule"][0][n].as_u64().unwrap() > 0, "per_rule lacks {n}");
    }
    // And everything comes back.
    let back: Snapshot = serde_json::from_value(j).unwrap();
    assert_eq!(back.workers[0].counters.engine, s.workers[0].counters.engine);
    assert_eq!(back.workers[0].counters.tcp_flags_inbound, s.workers[0].counters.tcp_flags_inbound);
    assert_eq!((back.workers[0].table, back.workers[0].rings), (s.workers[0].table, s.workers[0].rings));
}

#[test]
fn replay_summary_shows_every_engine_counter() {
    let e = Engine::new(EngineConfig::default()).unwrap();
    let mut s = Summary::new("x.pcap".into(), "pcap", &e);
    s.counters = every_counter();
    fill(&mut s.table, 2000);
    fill(&mut s.limiter, 3000);
    let text = s.render_text();
    assert_in_text("replay text", &text, &group_names::<EngineCounters>());
    assert_in_text("replay text", &text, &group_names::<TableStats>());
    assert_in_text("replay text", &text, &group_names::<LimiterStats>());
    let labels = family_labels(&s.counters);
    assert_in_text("replay text", &text, &labels.iter().map(String::as_str).collect::<Vec<_>>());
    let j = serde_json::to_value(&s).unwrap();
    for n in group_names::<EngineCounters>() {
        assert!(j["counters"][n].as_u64().is_some_and(|v| v > 0), "replay JSON lacks {n}");
    }
    for n in group_names::<TableStats>() {
        assert!(j["table"][n].as_u64().is_some_and(|v| v > 0), "replay JSON lacks table {n}");
    }
    for n in group_names::<LimiterStats>() {
        assert!(j["limiter"][n].as_u64().is_some_and(|v| v > 0), "replay JSON lacks limiter {n}");
    }
    assert!(j["counters"]["tcp_flags_inbound"][flag_name(0x02)].as_u64().is_some());
}
