//! End-to-end tests: real Linux TCP peers and real flood tools in network namespaces, with the
//! scrubber (or, for the harness self-tests, a kernel bridge) as the middle box.
//!
//! Root only: without root every test prints a loud SKIPPED message and passes. With root the
//! tools must be installed (`scripts/test.sh` installs them) and the scrubber binary built:
//! `SCRUBBER_BIN`, else `<workspace>/target/release/scrubber` (`cargo build --release -p
//! scrubber --locked`, which scripts/test.sh runs first), else `<workspace>/target/debug/scrubber`.
//!
//! Each test builds its own topology (tag `e2e<pid%1000>x<n>`; namespaces removed on drop, also
//! on panic) and the tests run one at a time (a global lock): floods and timing-sensitive
//! connection storms must not share the 2 cores with another test.
//!
//! Addresses: client 198.18.0.1, attacker 198.18.0.66, server 198.18.0.10 (and 2001:2::1, ::66,
//! ::10); spoofed flood sources only in 198.19.0.0/16 and 2001:2:0:ffff::/64. Every flood is
//! bounded in count and time.
//!
//! The `e2e_*` tests run `scrubber run` in the middle. The harness self-tests run a kernel bridge
//! there instead and show that the harness really measures: connections and transfers succeed,
//! and flood frames that cross the middle box ARE counted at the server, so the "zero flood
//! frames at the server" assertions of the scrubber tests can fail. (Pointing SCRUBBER_BIN at a
//! wrapper whose `run` just bridges ext and int makes every `e2e_*` flood assertion fail with
//! the whole flood counted, and the connection/transfer test pass.)

use scrubber::tools::lab::exec::{run_ns, NsChild};
use scrubber::tools::lab::flood::Kind;
use scrubber::tools::lab::nft::{Class, Source};
use scrubber::tools::lab::topo::{self, Middle, Role, TopoOptions, Topology, SERVER4, SERVER6};
use scrubber_tests::e2e::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Harness self-tests (kernel bridge in the middle).

/// Through a plain bridge: connections, a port-reuse storm and transfers succeed, and a bounded
/// spoofed hping3 flood IS counted at the server — so the harness can see flood frames, and the
/// scrubber tests' "zero at the server" assertions are able to fail.
#[test]
fn harness_self_test_bridge_counts_floods() {
    let Some(_g) = begin("harness_self_test_bridge_counts_floods") else { return };
    let mut lab = Lab::new(Middle::Bridge, None);
    lab.wait_path(V4_80, Duration::from_secs(10));

    let r = lab.connect(V4_80, 200, None, 8);
    assert_all_ok("200 connections through the bridge", &r, 200);
    assert!(r.p50_ms > 0.0 && r.p99_ms >= r.p50_ms, "{r:?}");
    assert_intact("5 MiB up", &lab.transfer(V4_80, "5M", "up"));
    assert_intact("5 MiB down", &lab.transfer(V4_80, "5M", "down"));

    // A narrow client port range forces fast 4-tuple reuse; the kernel alone handles it.
    lab.topo.set_port_range(Role::Client, 40000, 40099).expect("port range");
    let r = lab.connect(V4_80, 600, Some(300), 8);
    assert_all_ok("600 connections at 300/s over 100 source ports", &r, 600);
    assert_eq!(r.stalled, 0, "{r:?}");

    let before = lab.counts();
    let f = lab.hping(Kind::AckPsh, 300, 1000);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    eprintln!("hping3 ACK-PSH through the bridge: sent {} seen {}", f.sent, d.get(Source::Spoof4, Class::AckPsh));
    assert!(f.completed && f.sent > 0, "{f:?}");
    assert!(d.get(Source::Spoof4, Class::AckPsh) > 0, "the server counted no flood frame: {d}");
    assert_eq!(d.get(Source::Spoof4, Class::AckPsh), f.sent, "a bridge forwards every frame: {d}");
    assert_eq!(d.get(Source::Spoof4, Class::Syn), 0, "flags classified wrongly: {d}");

    let before = lab.counts();
    let f = lab.trafgen(Kind::Syn, IpAddr::V4(SERVER4), 2000, 20_000).finish().expect("trafgen");
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(f.completed && f.sent == 2000, "{f:?}");
    assert_eq!(d.get(Source::Spoof4, Class::Syn), 2000, "trafgen SYNs through the bridge: {d}");
}

/// The same harness over IPv6 and with 802.1Q tags: connections to [2001:2::10] and a trafgen
/// IPv6 flood (tagged) are counted at the server.
#[test]
fn harness_self_test_bridge_ipv6_vlan() {
    let Some(_g) = begin("harness_self_test_bridge_ipv6_vlan") else { return };
    let mut lab = Lab::new(Middle::Bridge, Some(100));
    lab.wait_path(V6_80, Duration::from_secs(10));
    // The frames crossing the middle box carry the tag.
    let dump = s(&["timeout", "10", "tcpdump", "-c", "20", "-nn", "-i", "ext", "vlan 100 and tcp port 80"]);
    let mut tcpdump =
        NsChild::spawn(Some(&lab.topo.ns(Role::Middle)), &dump[0], &dump[1..], true).expect("start tcpdump");
    std::thread::sleep(Duration::from_millis(500));
    assert_all_ok("IPv6 over VLAN 100", &lab.connect(V6_80, 100, None, 4), 100);
    assert_all_ok("IPv4 over VLAN 100", &lab.connect(V4_80, 100, None, 4), 100);
    let out = tcpdump.finish(Duration::from_secs(12)).expect("tcpdump");
    assert!(out.status.success(), "tcpdump saw no 20 tagged TCP frames on ext: {out:?}");
    let before = lab.counts();
    let f = lab.trafgen(Kind::AckPsh, IpAddr::V6(SERVER6), 1000, 20_000).finish().expect("trafgen");
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert_eq!(f.sent, 1000, "{f:?}");
    assert_eq!(d.get(Source::Spoof6, Class::AckPsh), 1000, "tagged IPv6 flood through the bridge: {d}");
    assert_eq!(d.get(Source::Spoof4, Class::All), 0, "{d}");
}

/// Dropping a Topology removes every namespace, kills what still runs inside, also on panic.
#[test]
fn topology_drop_removes_every_namespace() {
    let Some(_g) = begin("topology_drop_removes_every_namespace") else { return };
    let tag = Topology::new_tag_with("e2e");
    let t = Topology::create(&tag, TopoOptions { middle: Middle::Open, vlan: None, queues: 1 }).expect("topology");
    let names: Vec<String> = t.namespaces().to_vec();
    assert_eq!(names.len(), 5);
    assert!(names.iter().all(|n| topo::netns_exists(n)));
    // A process left running inside (no guard): the drop must kill it.
    let mut stray = std::process::Command::new("ip")
        .args(["netns", "exec", &t.ns(Role::Server), "sleep", "60"])
        .spawn()
        .expect("spawn a stray process");
    std::thread::sleep(Duration::from_millis(200));
    drop(t);
    let t0 = Instant::now();
    let st = stray.wait().expect("reap the stray process");
    assert!(!st.success() && t0.elapsed() < Duration::from_secs(5), "the stray process was not killed: {st}");
    for n in &names {
        assert!(!topo::netns_exists(n), "{n} still exists");
    }
    let listed = topo::list_netns().expect("ip netns list");
    assert!(!listed.iter().any(|n| n.starts_with(&tag)), "{listed:?}");

    // On panic, too.
    let tag2 = Topology::new_tag_with("e2e");
    let tag2c = tag2.clone();
    let res = std::panic::catch_unwind(move || {
        let _t = Topology::create(&tag2c, TopoOptions { middle: Middle::Bridge, vlan: Some(7), queues: 1 })
            .expect("topology");
        panic!("deliberate panic inside a test");
    });
    assert!(res.is_err());
    let listed = topo::list_netns().expect("ip netns list");
    assert!(!listed.iter().any(|n| n.starts_with(&tag2)), "{listed:?}");
}

// ---------------------------------------------------------------------------------------------
// The scrubber in the middle.

/// 1,000 connections through the SYN proxy; 50 MiB up and down intact; one client opening 300
/// new connections per second over a narrow source-port range never stalls.
#[test]
fn e2e_syn_proxy_connections_and_transfers() {
    let Some(_g) = begin("e2e_syn_proxy_connections_and_transfers") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    let r = lab.connect(V4_80, 1000, None, 8);
    eprintln!("1,000 connections: {r:?}");
    assert_all_ok("1,000 connections through the SYN proxy", &r, 1000);
    let (up, down) = (lab.transfer(V4_80, "50M", "up"), lab.transfer(V4_80, "50M", "down"));
    eprintln!("50 MiB up: {up:?}\n50 MiB down: {down:?}");
    assert_intact("50 MiB up", &up);
    assert_intact("50 MiB down", &down);
    lab.topo.set_port_range(Role::Client, 40000, 40199).expect("port range");
    let r = lab.connect(V4_80, 1500, Some(300), 8);
    eprintln!("1,500 connections at 300/s over 200 ports: {r:?}");
    assert_all_ok("1,500 connections at 300/s over 200 source ports", &r, 1500);
    assert_eq!(r.stalled, 0, "connections stalled (> 1 s) under fast source-port reuse: {r:?}");
    assert!(r.secs < 8.0, "300/s was not sustained: {r:?}");
}

/// A spoofed hping3 ACK-PSH flood while legitimate transfers and connections run: zero flood
/// frames at the server, every legitimate transfer intact.
#[test]
fn e2e_ack_psh_flood_dropped() {
    let Some(_g) = begin("e2e_ack_psh_flood_dropped") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    let before = lab.counts();
    let up = lab.transfer_bg(V4_80, "20M", "up");
    let down = lab.transfer_bg(V4_80, "20M", "down");
    let conns = lab.connect_bg(V4_80, 300, Some(100), 4);
    let f = lab.hping(Kind::AckPsh, 20_000, 100);
    let tg = lab.trafgen(Kind::AckPsh, IpAddr::V4(SERVER4), 100_000, 50_000).finish().expect("trafgen");
    assert_intact("20 MiB up under flood", &Lab::transfer_done(up));
    assert_intact("20 MiB down under flood", &Lab::transfer_done(down));
    assert_all_ok("connections under flood", &Lab::connect_done(conns), 300);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(f.sent > 0 && tg.sent > 0, "the floods did not run: {f:?} {tg:?}");
    assert_eq!(d.get(Source::Spoof4, Class::All), 0, "flood frames reached the server: {d}");
    assert!(d.get(Source::Client4, Class::All) > 1000, "legit traffic was not counted: {d}");
}

/// A spoofed SYN flood (random sources in 198.19.0.0/16): the server sees no SYN from them;
/// legitimate connections complete.
#[test]
fn e2e_syn_flood_answered_by_proxy() {
    let Some(_g) = begin("e2e_syn_flood_answered_by_proxy") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    let before = lab.counts();
    let conns = lab.connect_bg(V4_80, 400, Some(100), 4);
    let tg = lab.trafgen(Kind::Syn, IpAddr::V4(SERVER4), 150_000, 50_000);
    let f = lab.hping(Kind::Syn, 5_000, 200);
    let tg = tg.finish().expect("trafgen");
    assert_all_ok("connections under SYN flood", &Lab::connect_done(conns), 400);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(f.sent > 0 && tg.sent > 0, "{f:?} {tg:?}");
    assert_eq!(d.get(Source::Spoof4, Class::Syn), 0, "spoofed SYNs reached the server: {d}");
    assert_eq!(d.get(Source::Spoof4, Class::All), 0, "{d}");
}

/// RST and FIN floods without sessions are dropped: zero at the server.
#[test]
fn e2e_rst_fin_floods_dropped() {
    let Some(_g) = begin("e2e_rst_fin_floods_dropped") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    let before = lab.counts();
    let conns = lab.connect_bg(V4_80, 200, Some(100), 4);
    let rst = lab.hping(Kind::Rst, 5_000, 100);
    let fin = lab.hping(Kind::Fin, 5_000, 100);
    let tg_rst = lab.trafgen(Kind::Rst, IpAddr::V4(SERVER4), 50_000, 50_000).finish().expect("trafgen RST");
    let tg_fin = lab.trafgen(Kind::Fin, IpAddr::V4(SERVER4), 50_000, 50_000).finish().expect("trafgen FIN");
    assert_all_ok("connections under RST/FIN floods", &Lab::connect_done(conns), 200);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(rst.sent > 0 && fin.sent > 0 && tg_rst.sent > 0 && tg_fin.sent > 0);
    assert_eq!(d.get(Source::Spoof4, Class::Rst), 0, "{d}");
    assert_eq!(d.get(Source::Spoof4, Class::Fin), 0, "{d}");
    assert_eq!(d.get(Source::Spoof4, Class::All), 0, "{d}");
}

/// IPv6: a batch of connections through the proxy and a spoofed IPv6 ACK-PSH flood dropped.
#[test]
fn e2e_ipv6_connections_and_ack_psh_flood() {
    let Some(_g) = begin("e2e_ipv6_connections_and_ack_psh_flood") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber();
    lab.wait_path(V6_80, Duration::from_secs(15));
    let before = lab.counts();
    let conns = lab.connect_bg(V6_80, 300, Some(100), 4);
    let tg = lab.trafgen(Kind::AckPsh, IpAddr::V6(SERVER6), 100_000, 50_000).finish().expect("trafgen");
    assert_all_ok("IPv6 connections under flood", &Lab::connect_done(conns), 300);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(tg.sent > 0, "{tg:?}");
    assert_eq!(d.get(Source::Spoof6, Class::All), 0, "IPv6 flood frames reached the server: {d}");
    assert!(d.get(Source::Client6, Class::All) > 1000, "{d}");
}

/// 802.1Q-tagged frames through the scrubber: connections and a tagged ACK-PSH flood dropped,
/// over IPv4 and IPv6.
#[test]
fn e2e_vlan_connections_and_ack_psh_flood() {
    let Some(_g) = begin("e2e_vlan_connections_and_ack_psh_flood") else { return };
    let mut lab = Lab::new(Middle::Open, Some(100));
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    let before = lab.counts();
    let conns = lab.connect_bg(V4_80, 300, Some(100), 4);
    let tg = lab.trafgen(Kind::AckPsh, IpAddr::V4(SERVER4), 50_000, 50_000).finish().expect("trafgen");
    let tg6 = lab.trafgen(Kind::AckPsh, IpAddr::V6(SERVER6), 50_000, 50_000).finish().expect("trafgen v6");
    assert_all_ok("tagged IPv4 connections under flood", &Lab::connect_done(conns), 300);
    assert_all_ok("tagged IPv6 connections", &lab.connect(V6_80, 100, None, 4), 100);
    std::thread::sleep(Duration::from_millis(300));
    let d = lab.counts().since(&before);
    assert!(tg.sent > 0 && tg6.sent > 0);
    assert_eq!(d.get(Source::Spoof4, Class::All), 0, "{d}");
    assert_eq!(d.get(Source::Spoof6, Class::All), 0, "{d}");
}

/// SIGKILL the scrubber: its XDP program is gone from ext (BPF link released with the process)
/// and a restarted scrubber forwards again.
#[test]
fn e2e_sigkill_detaches_and_restart_works() {
    let Some(_g) = begin("e2e_sigkill_detaches_and_restart_works") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    let ns_m = lab.topo.ns(Role::Middle);
    let link = run_ns(&ns_m, "ip", &["-d", "link", "show", "ext"]).expect("ip link");
    assert!(has_xdp(&link), "no XDP program on ext while the scrubber runs:\n{link}");
    let mut c = lab.scrubber.take().expect("scrubber child");
    c.signal_leader("KILL");
    assert!(c.wait_timeout(Duration::from_secs(5)).is_some(), "the scrubber did not die on SIGKILL");
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let link = run_ns(&ns_m, "ip", &["-d", "link", "show", "ext"]).expect("ip link");
        if !has_xdp(&link) {
            break;
        }
        assert!(Instant::now() < deadline, "XDP program still attached to ext after SIGKILL:\n{link}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&lab.socket);
    lab.start_scrubber();
    lab.wait_path(V4_80, Duration::from_secs(15));
    assert_all_ok("connections after a restart", &lab.connect(V4_80, 200, None, 4), 200);
}

#[test]
fn xdp_detection_reads_ip_link_output() {
    let with = "3: ext@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 xdpgeneric qdisc noqueue state UP\n    prog/xdp id 42 name redirect";
    let without =
        "3: ext@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\n    veth addrgenmode eui64";
    assert!(has_xdp(with));
    assert!(!has_xdp(without));
}

/// Hot reload of a rule file under `scrubber run`: a change of the file is picked up; a broken
/// file is refused and the running policy stays; SIGHUP reloads at once.
#[test]
fn e2e_rules_hot_reload() {
    let Some(_g) = begin("e2e_rules_hot_reload") else { return };
    let mut lab = Lab::new(Middle::Open, None);
    let dir = std::env::temp_dir().join(format!("scrubber-e2e-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("edge.rules");
    let service = "set servers = 198.18.0.10, 2001:2::10\nservice web\n  dst servers\n  proto tcp\n  ports 80\n  syn proxy\nend\n";
    let write = |extra: &str| std::fs::write(&rules, format!("{service}{extra}")).unwrap();
    write("allow proto icmp\n");
    lab.start_scrubber_with(&["--rules", rules.to_str().unwrap()]);
    lab.wait_path(V4_80, Duration::from_secs(15));

    // The client is denied: picked up from the file change within a couple of seconds.
    write("deny from 198.18.0.1\n");
    let deadline = Instant::now() + Duration::from_secs(6);
    while lab.connect(V4_80, 1, None, 1).ok == 1 {
        assert!(Instant::now() < deadline, "the deny rule was not loaded after the file changed");
        std::thread::sleep(Duration::from_millis(300));
    }
    // A broken file is refused: the deny stays in force.
    write("deny from nosuchset\n");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(lab.connect(V4_80, 1, None, 1).ok, 0, "a broken file must leave the running policy in place");
    // SIGHUP with a good file: allowed again at once.
    write("allow from 198.18.0.0/24\n");
    lab.scrubber.as_ref().unwrap().signal_leader("HUP");
    lab.wait_path(V4_80, Duration::from_secs(5));
    let r = lab.connect(V4_80, 50, None, 4);
    assert_all_ok("connections after the reload", &r, 50);
    let out = lab.stop_scrubber();
    assert!(out.contains("refused, running policy kept"), "the refusal is logged:\n{out}");
    assert!(out.contains("nosuchset"), "with its diagnostic:\n{out}");
    assert!(out.contains("reload (SIGHUP)") || out.contains("reload (file changed)"), "{out}");
    assert!(out.contains("rule_deny"), "final counters show the rule drops:\n{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
