//! The engine under a rule-file policy: rules on every protocol, limits, services and their
//! SYN modes, observe, hot reload (also with engines running on other threads).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rulespec::{Compiled, MemSource};
use scrubber::dataplane::inbox::policy_channels;
use scrubber::engine::verdict::{Direction, DropReason, Verdict};
use scrubber::engine::{Engine, EngineConfig, FrameBuf};
use scrubber::wire::builder::{self, TcpFrame};
use scrubber::wire::tcp::flags as tf;

const KEY: [u8; 16] = *b"policy-test-key!";
const T0: u64 = 1_767_225_600 * 1_000_000_000;
const MS: u64 = 1_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn compile(text: &str) -> Arc<Compiled> {
    let src = MemSource::new().with("p.rules", text);
    let c = rulespec::check("p.rules", &src);
    assert!(!c.has_errors(), "{}", c.render());
    Arc::new(rulespec::compile(c.policy.as_ref().unwrap()).unwrap())
}

fn cfg(p: &Arc<Compiled>) -> EngineConfig {
    EngineConfig { policy: Some(p.clone()), table_capacity: 1 << 12, cookie_key: KEY, ..EngineConfig::default() }
}

fn engine(text: &str) -> Engine {
    Engine::new(cfg(&compile(text))).unwrap()
}

fn run(e: &mut Engine, now: u64, dir: Direction, input: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; 2048];
    let mut extra = vec![0u8; 2048];
    buf[..input.len()].copy_from_slice(input);
    let mut f = FrameBuf { buf: &mut buf, len: input.len() };
    let mut x = FrameBuf { buf: &mut extra, len: 0 };
    let v = e.process(now, dir, &mut f, &mut x);
    let n = f.len;
    (v, buf[..n].to_vec())
}

fn v_in(e: &mut Engine, now: u64, f: &[u8]) -> Verdict {
    run(e, now, Direction::Inbound, f).0
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> TcpFrame {
    let mut f = TcpFrame::new(ip(src), sport, ip(dst), dport, flags);
    f.seq = 1000;
    f.ack = if flags & tf::ACK != 0 { 5000 } else { 0 };
    f
}

fn syn(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    let mut f = tcp(src, sport, dst, dport, tf::SYN);
    f.options.mss = Some(1460);
    f.build()
}

fn udp(src: &str, dst: &str, dport: u16, len: usize) -> Vec<u8> {
    builder::udp_frame(ip(src), 5353, ip(dst), dport, &vec![0u8; len])
}

const BASE: &str = "
set servers = 198.18.0.0/24, 2001:2::/64
set bad = 198.19.66.0/24
service web
  dst servers
  proto tcp
  ports 80
  syn track
end
";

#[test]
fn deny_allow_and_default_apply_to_every_protocol() {
    let mut e = engine(&format!(
        "{BASE}
deny from bad
allow to servers proto udp port 53
allow to servers proto icmp icmp-type echo-request
allow service web
default deny
"
    ));
    let t = T0;
    // UDP and ICMP judged by the rules.
    assert_eq!(v_in(&mut e, t, &udp("198.19.1.1", "198.18.0.10", 53, 40)), Verdict::Forward);
    assert_eq!(v_in(&mut e, t, &udp("198.19.1.1", "198.18.0.10", 123, 40)), Verdict::Drop(DropReason::DefaultDeny));
    assert_eq!(v_in(&mut e, t, &udp("198.19.66.5", "198.18.0.10", 53, 40)), Verdict::Drop(DropReason::RuleDeny));
    assert_eq!(v_in(&mut e, t, &builder::icmp_echo(ip("198.19.1.1"), ip("198.18.0.10"), 1, 1)), Verdict::Forward);
    // TCP: denied source never reaches the TCP engine; allowed traffic is still validated.
    assert_eq!(v_in(&mut e, t, &syn("198.19.66.5", 4000, "198.18.0.10", 80)), Verdict::Drop(DropReason::RuleDeny));
    assert_eq!(v_in(&mut e, t, &syn("198.19.1.1", 4000, "198.18.0.10", 80)), Verdict::Forward);
    let ackpsh = tcp("198.19.1.1", 4001, "198.18.0.10", 80, tf::ACK | tf::PSH).build();
    assert_eq!(v_in(&mut e, t, &ackpsh), Verdict::Drop(DropReason::AckNoSession));
    // A port no rule allows.
    assert_eq!(v_in(&mut e, t, &syn("198.19.1.1", 4000, "198.18.0.10", 22)), Verdict::Drop(DropReason::DefaultDeny));
    // ARP is not judged by rules.
    let arp = builder::arp_request([2, 0, 0, 0, 0, 1], [198, 19, 1, 1], [198, 18, 0, 10]);
    assert_eq!(v_in(&mut e, t, &arp), Verdict::Forward);
    // Outbound replies are not judged by the rules.
    assert_eq!(run(&mut e, t, Direction::Outbound, &udp("198.18.0.10", "198.19.1.1", 9999, 10)).0, Verdict::Forward);
    let c = e.counters();
    assert_eq!(c.dropped[DropReason::RuleDeny.index()], 2);
    assert_eq!(c.dropped[DropReason::DefaultDeny.index()], 2);
    assert_eq!(c.per_rule[0].dropped, 2, "deny from bad");
    assert_eq!(c.per_rule[1].matched, 1, "allow udp 53");
}

#[test]
fn default_deny_spares_connections_the_server_opened() {
    let mut e = engine(&format!("{BASE}\nallow service web\ndefault deny\n"));
    // The server opens a connection to port 80 of an outside host... its SYN goes out,
    // the answer comes in and must not be cut by `default deny`.
    let mut out = tcp("198.18.0.10", 80, "198.19.1.1", 33000, tf::SYN);
    out.seq = 7000;
    assert_eq!(run(&mut e, T0, Direction::Outbound, &out.build()).0, Verdict::Forward);
    let mut sa = tcp("198.19.1.1", 33000, "198.18.0.10", 80, tf::SYN | tf::ACK);
    sa.ack = 7001;
    assert_eq!(v_in(&mut e, T0, &sa.build()), Verdict::Forward);
    // An unrelated frame from there is still denied.
    assert_eq!(v_in(&mut e, T0, &udp("198.19.1.1", "198.18.0.10", 9, 1)), Verdict::Drop(DropReason::DefaultDeny));
}

#[test]
fn observe_rule_and_observe_mode_forward_but_count() {
    let mut e = engine(&format!("{BASE}\ndeny observe from bad\n"));
    assert_eq!(v_in(&mut e, T0, &udp("198.19.66.5", "198.18.0.10", 53, 10)), Verdict::Forward);
    assert_eq!(e.counters().would_drop[DropReason::RuleDeny.index()], 1);
    assert_eq!(e.counters().per_rule[0].would_drop, 1);
    assert_eq!(e.counters().dropped_total(), 0);

    // An observe rule is a dry run, not a decision: evaluation goes on to the next rule, which
    // decides (here the default deny, then an explicit allow).
    let mut e = engine(&format!(
        "{BASE}\nlimit observe to servers proto udp aggregate 1pps burst 1\nallow from bad proto udp port 53\ndefault deny\n"
    ));
    let u = udp("198.19.1.9", "198.18.0.10", 9, 10);
    for _ in 0..3 {
        assert_eq!(v_in(&mut e, T0, &u), Verdict::Drop(DropReason::DefaultDeny), "observe must not let it through");
    }
    assert_eq!(v_in(&mut e, T0, &udp("198.19.66.5", "198.18.0.10", 53, 10)), Verdict::Forward);
    let c = e.counters();
    assert_eq!((c.per_rule[0].matched, c.per_rule[0].would_drop, c.per_rule[0].dropped), (4, 3, 0));
    assert_eq!((c.per_rule[1].matched, c.dropped[DropReason::DefaultDeny.index()]), (1, 3));
    assert_eq!(c.would_drop[DropReason::RateLimited.index()], 3);

    let mut e =
        engine(&format!("{BASE}\nmode observe\ndeny from bad\nservice p\n dst 198.18.1.0/24\n syn proxy\nend\n"));
    assert_eq!(v_in(&mut e, T0, &udp("198.19.66.5", "198.18.0.10", 53, 10)), Verdict::Forward);
    // Even the TCP engine's drops only count, and proxy services are not answered.
    let ackpsh = tcp("198.19.1.1", 4001, "198.18.0.10", 80, tf::ACK | tf::PSH).build();
    assert_eq!(v_in(&mut e, T0, &ackpsh), Verdict::Forward);
    let (v, out) = run(&mut e, T0, Direction::Inbound, &syn("198.19.1.1", 4000, "198.18.1.5", 80));
    assert_eq!(v, Verdict::Forward);
    assert_eq!(out, syn("198.19.1.1", 4000, "198.18.1.5", 80), "forwarded unchanged, not answered");
    let c = e.counters();
    assert_eq!(c.dropped_total(), 0);
    assert_eq!(c.would_drop[DropReason::RuleDeny.index()], 1);
    assert_eq!(c.would_drop[DropReason::AckNoSession.index()], 1);
}

#[test]
fn per_source_limit_under_random_source_flood() {
    let mut e = engine(&format!("{BASE}\nlimit to servers proto udp per-source 100pps burst 100\n"));
    let legit = udp("198.18.200.1", "198.18.0.10", 53, 64);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let (mut legit_ok, mut legit_sent, mut flood_ok) = (0, 0, 0);
    let mut t = T0;
    for i in 0..200_000u64 {
        t += 10_000; // 100 kpps for 2 s
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let src = format!("198.19.{}.{}", rng as u8, (rng >> 8) as u8);
        if v_in(&mut e, t, &udp(&src, "198.18.0.10", 53, 64)) == Verdict::Forward {
            flood_ok += 1;
        }
        if i % 2_000 == 0 {
            legit_sent += 1; // 50 pps: half its budget
            legit_ok += usize::from(v_in(&mut e, t, &legit) == Verdict::Forward);
        }
    }
    assert_eq!(legit_ok, legit_sent, "a legit source within its budget is never limited");
    assert!(flood_ok > 0);
    // A single source over its budget is limited.
    let mut limited = 0;
    for _ in 0..1000 {
        t += 1_000; // 1 Mpps from one source
        if v_in(&mut e, t, &legit) == Verdict::Drop(DropReason::RateLimited) {
            limited += 1;
        }
    }
    assert!(limited >= 850, "one source at 1000x its rate: {limited} of 1000 limited");
}

#[test]
fn len_is_the_ip_packet_length_not_the_padded_frame() {
    let mut e = engine(&format!("{BASE}\ndeny proto udp len 0-40\n"));
    // 4 bytes of UDP payload: a 32-byte IP packet in a frame padded to the 60-byte minimum.
    let mut f = udp("198.19.1.1", "198.18.0.10", 53, 4);
    assert_eq!(f.len(), 46);
    f.resize(60, 0);
    assert_eq!(v_in(&mut e, T0, &f), Verdict::Drop(DropReason::RuleDeny));
    assert_eq!(
        v_in(&mut e, T0, &udp("198.19.1.1", "198.18.0.10", 53, 12)),
        Verdict::Drop(DropReason::RuleDeny),
        "40 bytes"
    );
    assert_eq!(v_in(&mut e, T0, &udp("198.19.1.1", "198.18.0.10", 53, 13)), Verdict::Forward, "41 bytes");
}

#[test]
fn aggregate_limit_and_bps() {
    let mut e = engine(&format!("{BASE}\nlimit to servers proto udp aggregate 80kbps burst 1000\n"));
    // 1000 bytes of burst: 10 packets of 100-byte IP packets... frames are 28 + payload.
    let f = udp("198.19.1.1", "198.18.0.10", 53, 72); // IP length 100
    let ok = (0..50).filter(|_| v_in(&mut e, T0, &f) == Verdict::Forward).count();
    assert_eq!(ok, 10);
    // 80 kbps = 10 kB/s: after 100 ms, 1000 bytes more.
    let ok = (0..50).filter(|_| v_in(&mut e, T0 + 100 * MS, &f) == Verdict::Forward).count();
    assert_eq!(ok, 10);
}

#[test]
fn new_conns_and_max_conns_per_source() {
    let mut e = engine(&format!("{BASE}\nlimit service web new-conns 5/s burst 5 max-conns 3\n"));
    let c = "198.19.1.1";
    // max-conns 3: the fourth handshake from the same source is refused while 3 are live.
    for port in 0..3u16 {
        assert_eq!(v_in(&mut e, T0, &syn(c, 4000 + port, "198.18.0.10", 80)), Verdict::Forward, "conn {port}");
    }
    assert_eq!(v_in(&mut e, T0, &syn(c, 4003, "198.18.0.10", 80)), Verdict::Drop(DropReason::ConnLimit));
    // Another source is not affected.
    assert_eq!(v_in(&mut e, T0, &syn("198.19.1.2", 4000, "198.18.0.10", 80)), Verdict::Forward);
    // When a session ends (RST from the server), the source may open another.
    let mut rst = tcp("198.18.0.10", 80, c, 4000, tf::RST);
    rst.seq = 0;
    let _ = run(&mut e, T0, Direction::Outbound, &rst.build());
    // Embryonic sessions expire after their idle timeout (default 10 s); advance past it.
    let later = T0 + 30_000 * MS;
    e.housekeeping(later, 1 << 12);
    assert_eq!(v_in(&mut e, later, &syn(c, 5000, "198.18.0.10", 80)), Verdict::Forward);
    // new-conns 5/s burst 5: 5 SYNs pass in a burst, then refused.
    let mut e = engine(&format!("{BASE}\nlimit service web new-conns 5/s burst 5\n"));
    let ok = (0..20u16).filter(|p| v_in(&mut e, T0, &syn(c, 6000 + p, "198.18.0.10", 80)) == Verdict::Forward).count();
    assert_eq!(ok, 5);
    assert_eq!(e.counters().dropped[DropReason::NewConnLimit.index()], 15);
}

#[test]
fn auto_syn_mode_switches_to_proxy_above_the_rate() {
    let mut e = engine("service web\n dst 198.18.0.10\n ports 80\n syn auto 100pps\nend\n");
    let mut answered = 0;
    let mut forwarded = 0;
    for i in 0..300u16 {
        // 300 SYNs within 300 ms.
        match v_in(&mut e, T0 + u64::from(i) * MS, &syn("198.19.1.1", 1000 + i, "198.18.0.10", 80)) {
            Verdict::Reply => answered += 1,
            Verdict::Forward => forwarded += 1,
            v => panic!("{v:?}"),
        }
    }
    assert_eq!(forwarded, 100, "tracked below the threshold");
    assert_eq!(answered, 200, "proxied above it");
    assert_eq!(e.counters().auto_proxy_engaged, 1);
    // Three seconds later, back to tracking.
    assert_eq!(v_in(&mut e, T0 + 3_000 * MS, &syn("198.19.1.1", 9, "198.18.0.10", 80)), Verdict::Forward);
}

#[test]
fn services_choose_mode_and_advertised_options() {
    let mut e = engine(
        "service a\n dst 198.18.0.10\n ports 80\n syn proxy\n mss 1400\n wscale 3\n sack off\n timestamps off\nend\n\
         service b\n dst 198.18.0.10\n ports 81\n syn track\nend\n\
         service c\n dst 198.18.0.10\n ports 83\n syn proxy\n mss 1400\n wscale 3\n sack off\nend\n",
    );
    let mut s = tcp("198.19.1.1", 4000, "198.18.0.10", 80, tf::SYN);
    s.options.mss = Some(1460);
    s.options.wscale = Some(7);
    s.options.sack_permitted = true;
    s.options.timestamp = Some((1, 0));
    let (v, out) = run(&mut e, T0, Direction::Inbound, &s.build());
    assert_eq!(v, Verdict::Reply);
    let sa = TcpFrame::parse(&out).unwrap();
    assert_eq!(sa.options.mss, Some(1400));
    // Without timestamps a cookie carries no options but the MSS: no window scaling offered.
    assert_eq!(sa.options.wscale, None);
    assert!(!sa.options.sack_permitted);
    assert_eq!(sa.options.timestamp, None);
    // With timestamps (service c), the configured window scale is offered.
    let mut s = s.clone();
    s.dst_port = 83;
    let (v, out) = run(&mut e, T0, Direction::Inbound, &s.build());
    assert_eq!(v, Verdict::Reply);
    let sa = TcpFrame::parse(&out).unwrap();
    assert_eq!((sa.options.mss, sa.options.wscale, sa.options.sack_permitted), (Some(1400), Some(3), false));
    assert!(sa.options.timestamp.is_some());
    assert_eq!(v_in(&mut e, T0, &syn("198.19.1.1", 4000, "198.18.0.10", 81)), Verdict::Forward);
    // Port 82 is no service: passed unprotected.
    assert_eq!(v_in(&mut e, T0, &syn("198.19.1.1", 4000, "198.18.0.10", 82)), Verdict::Forward);
    assert_eq!(e.counters().passed_unprotected, 1);
    assert_eq!(e.counters().per_target.iter().map(|t| t.label.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
}

#[test]
fn learned_options_follow_the_backend() {
    let mut e = engine("service web\n dst 198.18.0.10\n ports 80\n syn auto 1pps\nend\n");
    // Below the threshold: tracked; the backend's SYN-ACK teaches the options.
    let mut s = tcp("198.19.1.1", 4000, "198.18.0.10", 80, tf::SYN);
    s.options.mss = Some(1460);
    s.options.wscale = Some(7);
    s.options.timestamp = Some((1, 0));
    assert_eq!(v_in(&mut e, T0, &s.build()), Verdict::Forward);
    let mut sa = tcp("198.18.0.10", 80, "198.19.1.1", 4000, tf::SYN | tf::ACK);
    sa.ack = 1001;
    sa.options.mss = Some(1380);
    sa.options.wscale = Some(9);
    sa.options.timestamp = Some((5, 1));
    assert_eq!(run(&mut e, T0, Direction::Outbound, &sa.build()).0, Verdict::Forward);
    // Over the threshold: proxied, advertising what the backend uses.
    let _ = v_in(&mut e, T0 + MS, &s.build());
    s.src_port = 4001;
    let (v, out) = run(&mut e, T0 + 2 * MS, Direction::Inbound, &s.build());
    assert_eq!(v, Verdict::Reply);
    let a = TcpFrame::parse(&out).unwrap();
    assert_eq!((a.options.mss, a.options.wscale), (Some(1380), Some(9)));
}

#[test]
fn pickup_window_takes_up_live_connections_the_server_confirms() {
    let mut e = engine("service web\n dst 198.18.0.10\n ports 80\n syn track\n pickup 30s\nend\n");
    let mut ack = tcp("198.19.1.1", 4000, "198.18.0.10", 80, tf::ACK | tf::PSH);
    ack.payload = b"GET / HTTP/1.1\r\n\r\n".to_vec();
    ack.options.timestamp = Some((777, 888));
    let ack = ack.build();
    // First sighting: dropped (the client retransmits).
    assert_eq!(v_in(&mut e, T0, &ack), Verdict::Drop(DropReason::PickupUnverified));
    // Seen again: the segment becomes a keep-alive probe to the server (seq − 1, no data, the
    // client's timestamps).
    let (v, out) = run(&mut e, T0 + 300 * MS, Direction::Inbound, &ack);
    assert_eq!(v, Verdict::Forward);
    let probe = TcpFrame::parse(&out).unwrap();
    assert_eq!((probe.seq, probe.ack, probe.flags, probe.payload.len()), (999, 5000, tf::ACK, 0));
    assert_eq!(probe.options.timestamp, Some((777, 888)));
    assert_eq!(e.counters().pickup_probes, 1);
    // While the probe is out, the client's segments wait.
    assert_eq!(v_in(&mut e, T0 + 301 * MS, &ack), Verdict::Drop(DropReason::PickupUnverified));
    // The server has the connection: its (duplicate) ACK confirms it.
    let mut dup = tcp("198.18.0.10", 80, "198.19.1.1", 4000, tf::ACK);
    dup.seq = 5000;
    dup.ack = 1000;
    assert_eq!(run(&mut e, T0 + 302 * MS, Direction::Outbound, &dup.build()).0, Verdict::Forward);
    assert_eq!(e.counters().sessions_picked_up, 1);
    assert_eq!(v_in(&mut e, T0 + 600 * MS, &ack), Verdict::Forward, "the connection resumes");

    // A flow the server does not know: its RST answers the probe, is consumed, and the flow
    // is refused from then on.
    let mut spoof = tcp("198.19.2.2", 5000, "198.18.0.10", 80, tf::ACK | tf::PSH);
    spoof.ack = 0xdead_beef;
    let spoof = spoof.build();
    assert_eq!(v_in(&mut e, T0 + 700 * MS, &spoof), Verdict::Drop(DropReason::PickupUnverified));
    assert_eq!(v_in(&mut e, T0 + 800 * MS, &spoof), Verdict::Forward, "probed");
    let mut rst = tcp("198.18.0.10", 80, "198.19.2.2", 5000, tf::RST);
    rst.seq = 0xdead_beef;
    assert_eq!(
        run(&mut e, T0 + 801 * MS, Direction::Outbound, &rst.build()).0,
        Verdict::Drop(DropReason::PickupRejected)
    );
    assert_eq!(v_in(&mut e, T0 + 900 * MS, &spoof), Verdict::Drop(DropReason::PickupRejected));

    // A server that talks first confirms its connection at once.
    let mut srv = tcp("198.18.0.10", 80, "198.19.3.3", 6000, tf::ACK | tf::PSH);
    srv.payload = vec![b'x'; 100];
    assert_eq!(run(&mut e, T0 + MS, Direction::Outbound, &srv.build()).0, Verdict::Forward);
    assert_eq!(e.counters().sessions_picked_up, 2);
    let mut reply = tcp("198.19.3.3", 6000, "198.18.0.10", 80, tf::ACK);
    reply.seq = 5000;
    reply.ack = 1100;
    assert_eq!(v_in(&mut e, T0 + 2 * MS, &reply.build()), Verdict::Forward);

    // A random-source ACK flood in the window: no session, at most the probe budget probed.
    let before = e.session_count();
    let mut probes = 0;
    for i in 0..20_000u32 {
        let mut f = tcp(
            &format!("198.19.{}.{}", 10 + (i >> 8) % 200, i & 255),
            1024 + (i % 60000) as u16,
            "198.18.0.10",
            80,
            tf::ACK | tf::PSH,
        );
        f.seq = i.wrapping_mul(2_654_435_761);
        if v_in(&mut e, T0 + 1_000 * MS + u64::from(i) * 10_000, &f.build()) == Verdict::Forward {
            probes += 1;
        }
    }
    assert_eq!(e.session_count(), before, "the flood created no session");
    assert_eq!(probes, 0, "no flow of this flood repeated: nothing probed");

    // RST and FIN without a session are never picked up.
    let rst = tcp("198.19.1.1", 4001, "198.18.0.10", 80, tf::RST).build();
    assert_eq!(v_in(&mut e, T0 + MS, &rst), Verdict::Drop(DropReason::RstNoSession));
    // After the window the ACK flood defence is back.
    let late = tcp("198.19.1.1", 4002, "198.18.0.10", 80, tf::ACK).build();
    assert_eq!(v_in(&mut e, T0 + 31_000 * MS, &late), Verdict::Drop(DropReason::AckNoSession));
    assert_eq!(v_in(&mut e, T0 + 31_500 * MS, &late), Verdict::Drop(DropReason::AckNoSession));
}

#[test]
fn install_swaps_policy_and_keeps_state_of_unchanged_rules() {
    let p1 = compile(&format!("{BASE}\nlimit to servers proto udp per-source 10pps burst 10\ndeny from bad\n"));
    let mut e = Engine::new(cfg(&p1)).unwrap();
    let f = udp("198.19.1.1", "198.18.0.10", 53, 10);
    let ok = (0..20).filter(|_| v_in(&mut e, T0, &f) == Verdict::Forward).count();
    assert_eq!(ok, 10);
    // Reload: the limit rule is unchanged (moved), the deny rule is gone, a rule is added.
    let p2 = compile(&format!("{BASE}\nallow from 198.19.9.9\nlimit to servers proto udp per-source 10pps burst 10\n"));
    let prepared = cfg(&p2).prepare(p2.clone(), T0).unwrap();
    let retired = e.install(prepared);
    drop(retired);
    assert_eq!(e.policy().generation_id(), p2.generation_id());
    assert_eq!(v_in(&mut e, T0, &f), Verdict::Drop(DropReason::RateLimited), "bucket state survived the reload");
    assert_eq!(v_in(&mut e, T0, &udp("198.19.66.1", "198.18.0.10", 53, 10)), Verdict::Forward, "deny is gone");
    assert_eq!(e.counters().per_rule.len(), 2);
    assert_eq!(e.counters().per_rule[1].matched, 21 + 1, "counters carried over by rule");
    assert_eq!(e.counters().policy_installs, 1);
    // A changed limit rule starts fresh.
    let p3 = compile(&format!("{BASE}\nlimit to servers proto udp per-source 20pps burst 10\n"));
    let _ = e.install(cfg(&p3).prepare(p3.clone(), T0).unwrap());
    assert_eq!(v_in(&mut e, T0, &f), Verdict::Forward);
}

/// Engines on other threads judge frames continuously while the control thread swaps two
/// policies back and forth through the inboxes: every verdict matches the policy the engine
/// reports in force for that frame (no frame sees half a policy), and every reload arrives.
#[test]
fn reload_with_engines_running_concurrently() {
    let a = compile(&format!("{BASE}\ndeny from bad\nallow to servers\n"));
    let b = compile(&format!("{BASE}\nallow from bad\ndeny to servers proto udp\n"));
    let (ga, gb) = (a.generation_id(), b.generation_id());
    assert_ne!(ga, gb);
    let workers = 2;
    let (feed, inboxes) = policy_channels(workers);
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for inbox in inboxes {
        let stop = stop.clone();
        let a = a.clone();
        handles.push(std::thread::spawn(move || {
            let mut e = Engine::new(cfg(&a)).unwrap();
            let from_bad = udp("198.19.66.5", "198.18.0.10", 53, 10);
            let from_good = udp("198.19.1.1", "198.18.0.10", 53, 10);
            let (mut frames, mut installs, mut seen) = (0u64, 0u64, std::collections::HashSet::new());
            while !stop.load(Ordering::Relaxed) || frames < 1000 {
                if inbox.poll(&mut e) {
                    installs += 1;
                }
                let g = e.policy().generation_id();
                seen.insert(g);
                let vb = v_in(&mut e, T0, &from_bad);
                let vg = v_in(&mut e, T0, &from_good);
                if g == ga {
                    assert_eq!((vb, vg), (Verdict::Drop(DropReason::RuleDeny), Verdict::Forward));
                } else {
                    assert_eq!(g, gb);
                    assert_eq!((vb, vg), (Verdict::Forward, Verdict::Drop(DropReason::RuleDeny)));
                }
                frames += 2;
            }
            (frames, installs, seen.len())
        }));
    }
    let configs = [cfg(&a), cfg(&b)];
    let reloads = 200;
    for i in 0..reloads {
        let (p, c) = if i % 2 == 0 { (&b, &configs[1]) } else { (&a, &configs[0]) };
        let prepared = (0..workers).map(|_| c.prepare(p.clone(), T0).unwrap()).collect();
        feed.send(prepared).unwrap();
    }
    // Wait until both workers took the last one (sync_channel(1): one more send would block).
    let last = (0..workers).map(|_| configs[0].prepare(a.clone(), T0).unwrap()).collect();
    feed.send(last).unwrap();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let (frames, installs, seen) = h.join().unwrap();
        assert!(frames >= 1000);
        assert!(installs >= reloads, "every reload was installed ({installs})");
        assert_eq!(seen, 2);
    }
}

/// The reloader: a change of the file is noticed; a broken file is refused (counted) and the
/// workers keep the policy in force; a good file reaches every worker.
#[test]
fn reloader_refuses_a_bad_file_and_keeps_the_running_policy() {
    use scrubber::control::reload::{load_policy, Reloader};
    let dir = std::env::temp_dir().join(format!("scrubber-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("p.rules");
    std::fs::write(&path, format!("{BASE}\ndeny from bad\n")).unwrap();
    let first = load_policy(&path).unwrap();
    let g1 = first.compiled.generation_id();
    let c = EngineConfig { policy: Some(first.compiled.clone()), table_capacity: 1 << 10, ..EngineConfig::default() };
    let (feed, inboxes) = policy_channels(1);
    let mut r = Reloader::new(path.clone(), &first, vec![c.clone()], feed);
    let mut e = Engine::new(c).unwrap();
    assert!(!r.changed());

    // A broken file: refused, counted, nothing sent.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&path, format!("{BASE}\ndeny from nosuchset\n")).unwrap();
    assert!(r.changed());
    let err = r.reload(T0).unwrap_err().to_string();
    assert!(err.contains("nosuchset"), "{err}");
    assert!(err.contains("p.rules:"), "diagnostic names file:line:col: {err}");
    assert!(!r.changed(), "the broken file is not retried until it changes again");
    assert!(!inboxes[0].poll(&mut e));
    assert_eq!(e.policy().generation_id(), g1);
    assert_eq!(v_in(&mut e, T0, &udp("198.19.66.5", "198.18.0.10", 53, 10)), Verdict::Drop(DropReason::RuleDeny));
    let st = r.stats();
    assert_eq!((st.reloads_ok, st.reloads_failed), (0, 1));

    // Fixed: accepted and installed.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&path, format!("{BASE}\nallow from bad\n")).unwrap();
    assert!(r.changed());
    let l = r.reload(T0).unwrap();
    assert!(inboxes[0].poll(&mut e));
    assert_eq!(e.policy().generation_id(), l.compiled.generation_id());
    assert_eq!(v_in(&mut e, T0, &udp("198.19.66.5", "198.18.0.10", 53, 10)), Verdict::Forward);
    assert_eq!(r.stats().reloads_ok, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
