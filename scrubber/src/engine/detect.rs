//! Attack detection per protected target, sans I/O: the engine counts what reaches each target
//! by traffic class ([`TrafficClass`], the `class_*` counters of each target) and keeps its top
//! sources in fixed memory ([`TopSources`], a Space-Saving sketch per target); a
//! [`Detector`] turns per-second readings of those into attack start, update and stop
//! [`Event`]s. Time is passed in, so `scrubber replay` finds the same events in a capture, on
//! the capture's clock, as `scrubber run` finds live.
//!
//! The top sources come from [`super::sources`].

use std::net::IpAddr;

use super::counters::{Group, TargetCounts, TrafficClass};
pub use super::sources::{merge_top, SpaceSaving, TopSources, TOP_K};

/// Count an inbound frame in its target's class counters (frames and bytes) and say whether it
/// passed as legitimate TCP: [`traffic_class`] and [`TargetCounts::add_class`] in one decision
/// tree, without the class as an intermediate value (the drop path runs this for every frame).
#[inline(always)]
pub fn count_class_into(
    c: &mut TargetCounts,
    d: &crate::wire::frame::Dissected,
    v: super::Verdict,
    bytes: u64,
) -> bool {
    use super::DropReason as R;
    use crate::wire::tcp::flags as tf;
    use crate::wire::{IPPROTO_TCP, IPPROTO_UDP};
    macro_rules! add {
        ($f:ident, $b:ident) => {{
            c.$f += 1;
            c.$b += bytes;
        }};
    }
    if d.frag != crate::wire::frame::Frag::None {
        add!(class_fragments, class_fragments_bytes);
        return false;
    }
    match d.proto {
        IPPROTO_TCP => {}
        IPPROTO_UDP => {
            add!(class_udp, class_udp_bytes);
            return false;
        }
        1 | 58 => {
            add!(class_icmp, class_icmp_bytes);
            return false;
        }
        _ => {
            if matches!(v, super::Verdict::Drop(_)) {
                add!(class_rule_drops, class_rule_drops_bytes);
                return false;
            }
            add!(class_legit, class_legit_bytes);
            return true;
        }
    }
    let f = d.tcp.flags;
    if f & (tf::SYN | tf::ACK) == tf::SYN {
        add!(class_syn, class_syn_bytes);
        return false;
    }
    let super::Verdict::Drop(r) = v else {
        add!(class_legit, class_legit_bytes);
        return true;
    };
    match r {
        R::AckNoSession | R::PickupUnverified | R::PickupRejected if f & (tf::RST | tf::FIN) == 0 => {
            if f & tf::PSH != 0 || d.tcp.payload_len > 0 {
                add!(class_ack_psh, class_ack_psh_bytes)
            } else {
                add!(class_ack, class_ack_bytes)
            }
        }
        R::TcpNull | R::TcpXmas | R::TcpSynFin | R::TcpSynRst | R::TcpBadFlags => {
            add!(class_bad_flags, class_bad_flags_bytes)
        }
        _ if f & tf::RST != 0 => add!(class_rst, class_rst_bytes),
        _ if f & tf::FIN != 0 => add!(class_fin, class_fin_bytes),
        R::RuleDeny | R::DefaultDeny | R::RateLimited | R::NewConnLimit | R::ConnLimit => {
            add!(class_rule_drops, class_rule_drops_bytes)
        }
        _ if f & tf::PSH != 0 || d.tcp.payload_len > 0 => add!(class_ack_psh, class_ack_psh_bytes),
        _ => add!(class_ack, class_ack_bytes),
    }
    false
}

/// The class of an inbound frame towards a target, given the engine's verdict.
#[inline]
pub fn traffic_class(d: &crate::wire::frame::Dissected, v: super::Verdict) -> TrafficClass {
    use super::DropReason as R;
    use crate::wire::tcp::flags as tf;
    use crate::wire::{IPPROTO_TCP, IPPROTO_UDP};
    if d.frag != crate::wire::frame::Frag::None {
        return TrafficClass::Fragments;
    }
    match d.proto {
        IPPROTO_TCP => {}
        IPPROTO_UDP => return TrafficClass::Udp,
        1 | 58 => return TrafficClass::Icmp,
        _ => {
            return if matches!(v, super::Verdict::Drop(_)) { TrafficClass::RuleDrops } else { TrafficClass::Legit };
        }
    }
    let f = d.tcp.flags;
    if f & (tf::SYN | tf::ACK) == tf::SYN {
        return TrafficClass::Syn;
    }
    let super::Verdict::Drop(r) = v else { return TrafficClass::Legit };
    match r {
        R::TcpNull | R::TcpXmas | R::TcpSynFin | R::TcpSynRst | R::TcpBadFlags => TrafficClass::BadFlags,
        _ if f & tf::RST != 0 => TrafficClass::Rst,
        _ if f & tf::FIN != 0 => TrafficClass::Fin,
        R::RuleDeny | R::DefaultDeny | R::RateLimited | R::NewConnLimit | R::ConnLimit => TrafficClass::RuleDrops,
        _ if f & tf::PSH != 0 || d.tcp.payload_len > 0 => TrafficClass::AckPsh,
        _ => TrafficClass::Ack,
    }
}

/// When a target is under attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Frames per second of one attack class (every class but `legit`) that count as a flood.
    pub pps: u64,
    /// Bits per second of one attack class that count as a flood.
    pub bps: u64,
    /// Seconds a class must stay over its threshold before the attack starts (readings over
    /// the threshold covering at least this long).
    pub start_secs: u32,
    /// Seconds every class must stay under its threshold before the attack is over.
    pub quiet_secs: u32,
    /// Seconds between update events of an ongoing attack.
    pub update_secs: u32,
}

impl Default for Thresholds {
    /// 10 kpps or 100 Mbit/s of one class, for 1 s; over after 10 quiet seconds; an update
    /// every 30 s.
    fn default() -> Self {
        Thresholds { pps: 10_000, bps: 100_000_000, start_secs: 1, quiet_secs: 10, update_secs: 30 }
    }
}

/// Start, update or stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The attack began.
    Start,
    /// Still going (periodic, or its types changed).
    Update,
    /// Over.
    Stop,
}

/// One source and its rate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceRate {
    /// The source address.
    pub src: IpAddr,
    /// Its estimated frames per second towards the target.
    pub pps: u64,
}

/// An attack event.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Event {
    /// `start`, `update` or `stop`.
    pub event: EventKind,
    /// The target (service) under attack.
    pub target: String,
    /// When (seconds since the Unix epoch, of the engine's clock: the capture's in a replay).
    pub time: f64,
    /// When the attack started.
    pub started: f64,
    /// The attack types, e.g. `["ack-psh flood"]`, largest first.
    pub types: Vec<&'static str>,
    /// Highest frames per second of all attack classes together, so far.
    pub peak_pps: u64,
    /// Highest bits per second of all attack classes together, so far.
    pub peak_bps: u64,
    /// Frames per second of each attack class in the last second, nonzero ones.
    pub pps_by_class: Vec<(&'static str, u64)>,
    /// Frames towards the target dropped since the attack started.
    pub dropped: u64,
    /// Frames towards the target forwarded since the attack started.
    pub forwarded: u64,
    /// The top sources in the last second.
    pub top_sources: Vec<SourceRate>,
}

/// One target's reading: its counters (summed over workers) and its top sources (merged).
#[derive(Clone, Debug, Default)]
pub struct Reading {
    /// The target's name.
    pub label: String,
    /// Its counters.
    pub counts: TargetCounts,
    /// Its top sources of attack-class traffic in the last complete second, estimated frames
    /// per second.
    pub top: Vec<(IpAddr, u64)>,
    /// Its top sources of traffic that passed, the same way.
    pub top_passed: Vec<(IpAddr, u64)>,
}

/// Rates are taken over at least this long (seconds): bursty floods (a generator that sends a
/// second's frames at once) read the same with readings every 500 ms as every second.
pub const RATE_WINDOW: f64 = 1.0;

#[derive(Clone, Debug, Default)]
struct TargetState {
    /// Readings back to the newest one at least [`RATE_WINDOW`] old.
    history: std::collections::VecDeque<(f64, TargetCounts)>,
    /// Start of the first interval of the current run of readings over a threshold.
    over_since: Option<f64>,
    /// End of the last interval that was over a threshold.
    last_over: f64,
    attack: Option<Ongoing>,
}

#[derive(Clone, Debug)]
struct Ongoing {
    started: f64,
    at_start: TargetCounts,
    peak_pps: u64,
    peak_bps: u64,
    types: Vec<&'static str>,
    last_update: f64,
}

/// Turns per-second [`Reading`]s into [`Event`]s. Feed it about once a second with the time of
/// the reading; it works with the differences between readings.
#[derive(Clone, Debug, Default)]
pub struct Detector {
    targets: Vec<TargetState>,
    thresholds: Vec<Thresholds>,
    default: Thresholds,
    last_ns: Option<u64>,
}

impl Detector {
    /// A detector with `default` thresholds, and `per_target` ones by target index (`None`:
    /// the default).
    pub fn new(default: Thresholds, per_target: Vec<Option<Thresholds>>) -> Detector {
        Detector {
            targets: Vec::new(),
            thresholds: per_target.into_iter().map(|t| t.unwrap_or(default)).collect(),
            default,
            last_ns: None,
        }
    }

    /// The readings at `now_ns`, one per target in a fixed order; the events they make. The
    /// first call only records.
    pub fn tick(&mut self, now_ns: u64, readings: &[Reading]) -> Vec<Event> {
        let mut out = Vec::new();
        if self.last_ns.is_some_and(|l| now_ns <= l) {
            return out;
        }
        self.last_ns = Some(now_ns);
        let time = now_ns as f64 / 1e9;
        if self.targets.len() < readings.len() {
            self.targets.resize(readings.len(), TargetState::default());
        }
        for (i, r) in readings.iter().enumerate() {
            let th = self.thresholds.get(i).copied().unwrap_or(self.default);
            let st = &mut self.targets[i];
            st.history.push_back((time, r.counts));
            while st.history.len() > 2 && st.history[1].0 <= time - RATE_WINDOW + 1e-6 {
                st.history.pop_front();
            }
            let (t0, prev) = match st.history.front() {
                Some(&(t0, p)) if st.history.len() >= 2 && time > t0 => (t0, p),
                _ => continue,
            };
            let secs = time - t0;
            // Rates of every attack class in the interval.
            let mut classes: Vec<(TrafficClass, u64, u64)> = TrafficClass::ALL
                .iter()
                .filter(|c| **c != TrafficClass::Legit)
                .map(|&c| {
                    let (f1, b1) = r.counts.class(c);
                    let (f0, b0) = prev.class(c);
                    let pps = (f1.saturating_sub(f0) as f64 / secs).round() as u64;
                    let bps = (b1.saturating_sub(b0) as f64 * 8.0 / secs).round() as u64;
                    (c, pps, bps)
                })
                .collect();
            classes.sort_by_key(|c| std::cmp::Reverse(c.1));
            let over: Vec<&'static str> =
                classes.iter().filter(|(_, p, b)| *p >= th.pps || *b >= th.bps).map(|(c, ..)| c.attack()).collect();
            let (tot_pps, tot_bps) = classes.iter().fold((0, 0), |(p, b), c| (p + c.1, b + c.2));
            let by_class: Vec<(&'static str, u64)> =
                classes.iter().filter(|c| c.1 > 0).map(|(c, p, _)| (c.name(), *p)).collect();
            let top: Vec<SourceRate> = r.top.iter().take(10).map(|&(src, pps)| SourceRate { src, pps }).collect();
            if over.is_empty() {
                st.over_since = None;
            } else {
                st.over_since.get_or_insert(time - secs);
                st.last_over = time;
            }
            let over_for = st.over_since.map_or(0.0, |t| time - t);
            let event = |kind, a: &Ongoing| Event {
                event: kind,
                target: r.label.clone(),
                time,
                started: a.started,
                types: a.types.clone(),
                peak_pps: a.peak_pps,
                peak_bps: a.peak_bps,
                pps_by_class: by_class.clone(),
                dropped: r.counts.dropped.saturating_sub(a.at_start.dropped),
                forwarded: r.counts.forwarded.saturating_sub(a.at_start.forwarded),
                top_sources: top.clone(),
            };
            match st.attack.as_mut() {
                None if !over.is_empty() && over_for + 1e-6 >= f64::from(th.start_secs) => {
                    let a = Ongoing {
                        started: st.over_since.unwrap_or(time),
                        at_start: prev,
                        peak_pps: tot_pps,
                        peak_bps: tot_bps,
                        types: over,
                        last_update: time,
                    };
                    out.push(event(EventKind::Start, &a));
                    st.attack = Some(a);
                }
                None => {}
                Some(a) => {
                    a.peak_pps = a.peak_pps.max(tot_pps);
                    a.peak_bps = a.peak_bps.max(tot_bps);
                    let mut changed = false;
                    for t in &over {
                        if !a.types.contains(t) {
                            a.types.push(t);
                            changed = true;
                        }
                    }
                    if over.is_empty() && time - st.last_over + 1e-6 >= f64::from(th.quiet_secs.max(1)) {
                        out.push(event(EventKind::Stop, a));
                        st.attack = None;
                    } else if changed || time - a.last_update >= f64::from(th.update_secs.max(1)) {
                        a.last_update = time;
                        out.push(event(EventKind::Update, a));
                    }
                }
            }
        }
        out
    }

    /// Targets under attack now.
    pub fn under_attack(&self) -> Vec<usize> {
        self.targets.iter().enumerate().filter(|(_, t)| t.attack.is_some()).map(|(i, _)| i).collect()
    }
}

/// The thresholds a compiled policy sets: its global ones (`attack-threshold`,
/// `attack-quiet`, else [`Thresholds::default`]) and each service's own.
pub fn thresholds_of(c: &rulespec::Compiled) -> (Thresholds, Vec<Option<Thresholds>>) {
    let st = c.settings();
    let mut g = Thresholds::default();
    if st.attack_pps.is_some() || st.attack_bps.is_some() {
        g.pps = st.attack_pps.unwrap_or(u64::MAX);
        g.bps = st.attack_bps.unwrap_or(u64::MAX);
    }
    if let Some(q) = st.attack_quiet {
        g.quiet_secs = u32::try_from(q.as_secs()).unwrap_or(u32::MAX).max(1);
    }
    let per = c
        .services()
        .iter()
        .map(|s| {
            (s.attack_pps.is_some() || s.attack_bps.is_some()).then(|| Thresholds {
                pps: s.attack_pps.unwrap_or(u64::MAX),
                bps: s.attack_bps.unwrap_or(u64::MAX),
                ..g
            })
        })
        .collect();
    (g, per)
}

/// The per-target readings of several engines' counters (one per worker): counters summed,
/// top sources merged (the 16 largest).
pub fn readings(workers: &[&super::counters::Counters]) -> Vec<Reading> {
    let Some(first) = workers.first() else { return Vec::new() };
    first
        .per_target
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut counts = TargetCounts::default();
            let mut tops = Vec::with_capacity(workers.len());
            for w in workers {
                if let Some(x) = w.per_target.get(i) {
                    counts.merge(&x.n);
                }
                if let Some(x) = w.top_sources.get(2 * i) {
                    tops.push(x.per_second());
                }
            }
            let passed: Vec<Vec<(IpAddr, u64)>> =
                workers.iter().filter_map(|w| w.top_sources.get(2 * i + 1).map(|x| x.per_second())).collect();
            Reading {
                label: t.label.clone(),
                counts,
                top: merge_top(&tops, TOP_K),
                top_passed: merge_top(&passed, TOP_K),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(label: &str, ack_psh: u64, legit: u64) -> Reading {
        let c = TargetCounts {
            class_ack_psh: ack_psh,
            class_ack_psh_bytes: ack_psh * 60,
            class_legit: legit,
            dropped: ack_psh,
            forwarded: legit,
            ..Default::default()
        };
        Reading {
            label: label.into(),
            counts: c,
            top: vec![("198.19.7.1".parse().unwrap(), 9_000)],
            top_passed: vec![],
        }
    }

    #[test]
    fn a_flood_starts_updates_and_stops_an_attack_on_its_target_only() {
        let mut d = Detector::new(Thresholds::default(), vec![None, None]);
        let s = 1_000_000_000u64;
        let t0 = 1_767_225_600 * s;
        let (mut flood, mut legit) = (0u64, 0u64);
        let mut events = Vec::new();
        for k in 0..40u64 {
            // 20 kpps of ACK-PSH at "web" from second 3 to 12; steady legit traffic at "api".
            if (3..13).contains(&k) {
                flood += 20_000;
            }
            legit += 500;
            events.extend(d.tick(t0 + k * s, &[reading("web", flood, 0), reading("api", 0, legit)]));
        }
        let kinds: Vec<(EventKind, &str)> = events.iter().map(|e| (e.event, e.target.as_str())).collect();
        assert_eq!(kinds, vec![(EventKind::Start, "web"), (EventKind::Stop, "web")], "{events:#?}");
        let start = &events[0];
        assert_eq!(start.types, vec!["ack-psh flood"]);
        assert_eq!(start.peak_pps, 20_000);
        assert_eq!(start.top_sources[0].src, "198.19.7.1".parse::<IpAddr>().unwrap());
        assert!((start.time - (t0 / s + 3) as f64).abs() < 0.01, "one second over: {}", start.time);
        assert!((start.started - (t0 / s + 2) as f64).abs() < 0.01, "{}", start.started);
        let stop = &events[1];
        assert!((stop.time - (t0 / s + 22) as f64).abs() < 0.01, "ten quiet seconds: {}", stop.time);
        assert_eq!(stop.dropped, 200_000);
        assert!(d.under_attack().is_empty());
    }
}
#[cfg(test)]
mod tick_tests {
    use super::*;
    #[test]
    fn bursty_floods_read_at_half_second_ticks_start_an_attack() {
        let mut d = Detector::new(Thresholds::default(), vec![None]);
        let s = 1_000_000_000u64;
        let t0 = 1_767_225_600 * s;
        let mut c = TargetCounts::default();
        let mut evs = Vec::new();
        for k in 0..12u64 {
            // A generator that sends each second's 30,000 frames at once: every other reading.
            if k >= 2 && k % 2 == 0 {
                c.class_ack_psh += 30_000;
                c.class_ack_psh_bytes += 30_000 * 60;
            }
            evs.extend(
                d.tick(t0 + k * s / 2, &[Reading { label: "w".into(), counts: c, top: vec![], top_passed: vec![] }]),
            );
        }
        assert!(evs.iter().any(|e| e.event == EventKind::Start), "{evs:?}");
    }
}

#[cfg(test)]
mod class_tests {
    use super::*;
    use crate::engine::{DropReason, Verdict};
    use crate::wire::tcp::flags as tf;

    /// The fused counting and the two-step definition agree on every verdict and flag set.
    #[test]
    fn fused_counting_equals_class_then_add() {
        let mut frames = Vec::new();
        for flags in
            [tf::ACK, tf::ACK | tf::PSH, tf::SYN, tf::SYN | tf::ACK, tf::RST, tf::FIN | tf::ACK, 0, tf::SYN | tf::FIN]
        {
            for payload in [0usize, 10] {
                let mut f = crate::wire::builder::TcpFrame::new(
                    "198.19.1.1".parse().unwrap(),
                    1,
                    "198.18.0.10".parse().unwrap(),
                    80,
                    flags,
                );
                f.payload = vec![b'x'; payload];
                frames.push(f.build());
            }
        }
        let mut udp = frames[0].clone();
        udp[23] = 17;
        let mut icmp = frames[0].clone();
        icmp[23] = 1;
        let mut frag = frames[0].clone();
        frag[20] = 0x20; // more fragments
        frames.extend([udp, icmp, frag]);
        let mut verdicts = vec![Verdict::Forward, Verdict::Reply];
        verdicts.extend(DropReason::ALL.iter().map(|r| Verdict::Drop(*r)));
        for f in &frames {
            let Ok(d) = crate::wire::frame::dissect(f) else { continue };
            for &v in &verdicts {
                let (mut a, mut b) = (TargetCounts::default(), TargetCounts::default());
                let legit = count_class_into(&mut a, &d, v, 60);
                let class = traffic_class(&d, v);
                b.add_class(class, 60);
                assert_eq!(a, b, "{v:?} flags {:#x} proto {}", d.tcp.flags, d.proto);
                assert_eq!(legit, class == TrafficClass::Legit);
            }
        }
    }
}
