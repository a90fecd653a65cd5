//! The example policies in `examples/` check with zero errors and zero warnings.

use rulespec::{check, FsSource};

fn example(name: &str) -> rulespec::Policy {
    let path = rulespec::resolve(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"), &format!("../examples/{name}"));
    let checked = check(&path, &FsSource::default());
    assert!(checked.diagnostics.is_empty(), "{name}:\n{}", checked.render());
    checked.policy.expect("no errors, so a policy")
}

#[test]
fn web_frontend_checks_clean() {
    let p = example("web-frontend.rules");
    let names: Vec<_> = p.sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bogons", "web-servers", "office", "monitoring", "blocklist", "blocked"]);
    let blocked = p.sets.iter().find(|s| s.name == "blocked").unwrap();
    assert_eq!((blocked.v4(), blocked.v6()), (6, 3));
    assert_eq!(p.services.len(), 3);
    assert_eq!(p.rules.len(), 14);
    assert_eq!(p.settings.sessions, 4_000_000);
    let s = p.summary();
    for want in
        ["blocked", "9 prefixes (6 IPv4, 3 IPv6)", "https", "syn auto 20000pps", "estimated memory", "default deny"]
    {
        assert!(s.contains(want), "summary lacks {want}:\n{s}");
    }
}

#[test]
fn dns_and_icmp_checks_clean() {
    let p = example("dns-and-icmp.rules");
    assert_eq!(p.services.len(), 1);
    assert!(p.rules.iter().any(|r| r.observe));
    assert!(p.summary().contains("resolvers-we-trust"));
}
