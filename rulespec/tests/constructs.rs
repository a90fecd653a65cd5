//! Every construct of the language, checked through the public API.

use std::time::Duration;

use rulespec::ast::{flag, Action, AddrRef, Frag, Learnable, LimitSpec, Mode, Proto, RateUnit, SynMode, Toggle};
use rulespec::{check, MemSource, Policy};

fn policy(text: &str) -> Policy {
    let src = MemSource::new()
        .with("p/main.rules", text)
        .with("p/inc/more.rules", "set more = 198.18.9.0/24 # comment\n")
        .with("p/lists/l.txt", "# list\n\n198.18.1.0/24\n  2001:2::/48   # six\n198.18.1.0/24\n");
    let c = check("p/main.rules", &src);
    assert!(!c.has_errors(), "{}", c.render());
    c.policy.unwrap()
}

#[test]
fn sets_inline_file_union_and_include() {
    let p = policy(
        "include \"inc/more.rules\"\nset a = 198.18.0.0/24, 2001:2::1\nset l file \"lists/l.txt\"\nset u = a, l, more\n",
    );
    let find = |n: &str| p.sets.iter().find(|s| s.name == n).unwrap();
    assert_eq!((find("a").v4(), find("a").v6()), (1, 1));
    assert_eq!(find("a").prefixes[1].len, 128);
    assert_eq!(find("l").prefixes.len(), 2, "duplicates in a list count once");
    assert_eq!(find("u").prefixes.len(), 5);
    assert_eq!(find("more").prefixes.len(), 1);
}

#[test]
fn port_sets_merge_ranges() {
    let p = policy("ports a = 80, 81, 82-90, 443\nports b = a, 1000-2000\n");
    assert_eq!(p.port_sets[0].ranges, vec![(80, 90), (443, 443)]);
    assert_eq!(p.port_sets[1].ranges, vec![(80, 90), (443, 443), (1000, 2000)]);
}

#[test]
fn services_with_defaults_and_every_setting() {
    let p = policy(
        "service a\n dst 198.18.0.10\nend\nservice b\n dst any\n proto tcp\n ports 443\n syn auto 5kpps\n mss 1400\n \
         wscale 0\n sack off\n timestamps on\n idle embryonic 500ms\n idle established 2h\n idle closing 1s\n \
         pickup 30s\nend\nservice c\n dst 198.18.0.53\n proto udp\n ports 53\nend\n",
    );
    let a = &p.services[0];
    assert_eq!((a.proto, a.syn, a.mss, a.sack), (Proto::Tcp, SynMode::Proxy, Learnable::Learn, Toggle::Learn));
    assert!(a.ports.is_empty());
    let b = &p.services[1];
    assert_eq!(b.dst, AddrRef::Any);
    assert!(matches!(b.syn, SynMode::Auto(r) if r.value == 5000 && r.unit == RateUnit::Pps));
    assert_eq!(
        (b.mss, b.wscale, b.sack, b.timestamps),
        (Learnable::Value(1400), Learnable::Value(0), Toggle::Off, Toggle::On)
    );
    assert_eq!(b.idle_embryonic, Duration::from_millis(500));
    assert_eq!(b.idle_established, Duration::from_secs(7200));
    assert_eq!(b.pickup, Duration::from_secs(30));
    assert_eq!(p.services[2].proto, Proto::Udp);
}

#[test]
fn rules_and_every_match() {
    let p = policy(
        "set s = 198.18.0.0/24\nports w = 80\nservice web\n dst s\nend\n\
         allow observe from s to 198.18.1.0/24 proto tcp port w sport 1024-65535 flags syn+!ack len 40-60 frag no\n\
         deny proto icmp icmp-type 8\ndeny proto icmpv6 icmpv6-type echo-reply\ndeny frag later\n\
         limit service web per-source 10pps 1Mbps burst 20 aggregate 1kpps new-conns 5/s burst 10 max-conns 8\n\
         default deny\n",
    );
    assert_eq!(p.rules.len(), 5);
    let r = &p.rules[0];
    assert!(r.observe);
    assert_eq!(r.action, Action::Allow);
    assert_eq!(r.dst_ports, Some(vec![(80, 80)]));
    assert_eq!(r.src_ports, Some(vec![(1024, 65535)]));
    let f = r.matches.flags.as_ref().unwrap().node;
    assert_eq!((f.set, f.clear), (flag::SYN, flag::ACK));
    assert_eq!(r.matches.len.as_ref().unwrap().node, (40, 60));
    assert_eq!(r.matches.frag.as_ref().unwrap().node, Frag::No);
    assert_eq!(p.rules[1].matches.icmp_type.as_ref().unwrap().node, 8);
    assert_eq!(p.rules[2].matches.icmpv6_type.as_ref().unwrap().node, 129);
    let l = &p.rules[4];
    assert_eq!(l.limits.len(), 4);
    assert!(matches!(&l.limits[0], LimitSpec::PerSource { rates, burst: Some(b) } if rates.len() == 2 && b.node == 20));
    assert!(matches!(&l.limits[3], LimitSpec::MaxConns(n) if n.node == 8));
    assert_eq!(p.settings.default, Action::Deny);
    assert_eq!(l.location, "p/main.rules:10");
}

#[test]
fn settings() {
    let p = policy("mode observe\nsessions 2M\ncookie-secret \"keys/cookie.key\"\nlearning-window 90s\n");
    assert_eq!(p.settings.mode, Mode::Observe);
    assert_eq!(p.settings.sessions, 2_000_000);
    assert_eq!(p.settings.cookie_secret.as_deref(), Some("p/keys/cookie.key"));
    assert_eq!(p.settings.learning_window, Duration::from_secs(90));
    let s = p.summary();
    assert!(s.contains("mode observe") && s.contains("sessions 2000000"), "{s}");
}

#[test]
fn crlf_tabs_and_comments_are_fine() {
    let p = policy("# c\r\n\tset a = 198.18.0.0/24\t# c\r\n\r\ndeny from a # c\r\n");
    assert_eq!(p.rules.len(), 1);
}

#[test]
fn observe_rules_and_narrower_rules_do_not_shadow() {
    let c = check(
        "m",
        &MemSource::new().with(
            "m",
            "allow observe proto udp\nallow proto udp\ndeny proto udp port 53\nallow proto udp port 53-54\n",
        ),
    );
    // Rule 3 is shadowed by rule 2 (broader); rule 2 is not shadowed by the observe rule 1;
    // rule 4 is not covered by rule 3 (53-54 is broader than 53) but by rule 2.
    let lines: Vec<u32> = c.diagnostics.iter().map(|d| d.span.unwrap().line).collect();
    assert_eq!(lines, [3, 4], "{}", c.render());
}

#[test]
fn missing_top_file_is_an_error_without_location() {
    let c = check("nope.rules", &MemSource::new());
    assert!(c.has_errors());
    assert_eq!(c.render(), "error: cannot read 'nope.rules': no such file\n");
}

#[test]
fn a_proxied_service_without_ports_is_warned_about() {
    let check_text = |text: &str| {
        let c = check("m.rules", &MemSource::new().with("m.rules", text));
        assert!(!c.has_errors(), "{}", c.render());
        (c.warning_count(), c.render())
    };
    let (n, text) = check_text("service web\n  dst 198.18.0.10\n  proto tcp\nend\n");
    assert_eq!(n, 1, "{text}");
    assert!(text.contains("proxies every TCP port") && text.contains("m.rules:1:9"), "{text}");
    // With ports, or tracked (nothing is answered for closed ports), nothing to say.
    assert_eq!(check_text("service web\n  dst 198.18.0.10\n  ports 80\nend\n").0, 0);
    assert_eq!(check_text("service web\n  dst 198.18.0.10\n  syn track\nend\n").0, 0);
}

#[test]
fn attack_thresholds_globally_and_per_service() {
    let p = policy(
        "attack-threshold 20kpps 200Mbps\nattack-quiet 15s\n\
         service web\n dst 198.18.0.10\n ports 80\n attack-threshold 5kpps\nend\n",
    );
    assert_eq!((p.settings.attack_pps, p.settings.attack_bps), (Some(20_000), Some(200_000_000)));
    assert_eq!(p.settings.attack_quiet, Some(Duration::from_secs(15)));
    assert_eq!((p.services[0].attack_pps, p.services[0].attack_bps), (Some(5_000), None));
    let c = rulespec::compile(&p).unwrap();
    assert_eq!(c.services()[0].attack_pps, Some(5_000));
    // Nonsense is an error with line and column.
    for (text, line_col, what) in [
        ("attack-threshold 0pps\n", "1:18", "of 0 would report all traffic"),
        ("attack-threshold 10/s\n", "1:18", "a packet or bit rate"),
        ("attack-threshold 1kpps 2kpps\n", "1:24", "a second threshold in the same unit"),
        ("attack-quiet 0s\n", "1:14", "out of range"),
        ("service s\n dst 198.18.0.1\n attack-threshold 1kpps 0bps\nend\n", "3:25", "of 0 would report"),
    ] {
        let src = MemSource::new().with("p.rules", text);
        let c = check("p.rules", &src);
        let r = c.render();
        assert!(c.has_errors(), "{text}: {r}");
        assert!(r.contains(&format!("p.rules:{line_col}")) && r.contains(what), "{text}: {r}");
    }
}
