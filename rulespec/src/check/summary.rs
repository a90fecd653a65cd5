//! What `scrubber check` prints about a checked policy, and its memory estimate.

use super::*;

/// Per-source limiter table size assumed by the memory estimate (entries per rule).
pub const PER_SOURCE_SLOTS: u64 = 65_536;

impl Policy {
    /// A rough estimate of the memory the compiled policy and session table need, in bytes:
    /// (prefix tables, port bitsets, per-source limiter tables, session table).
    pub fn estimated_memory(&self) -> (u64, u64, u64, u64) {
        let prefixes: u64 = self
            .sets
            .iter()
            .flat_map(|s| &s.prefixes)
            .map(|p| match p.addr {
                IpAddr::V4(_) => 16,
                IpAddr::V6(_) => 40,
            })
            .sum();
        let bitsets = 8192 * (self.port_sets.len() + self.services.len() + self.rules.len()) as u64;
        let limiters: u64 = self
            .rules
            .iter()
            .flat_map(|r| &r.limits)
            .map(|l| match l {
                LimitSpec::Aggregate { .. } => 64,
                _ => PER_SOURCE_SLOTS * 32,
            })
            .sum();
        let sessions = self.settings.sessions.saturating_mul(64);
        (prefixes, bitsets, limiters, sessions)
    }

    /// What `scrubber check FILE` prints: settings, sets with prefix counts, port sets, services,
    /// rules in order, and estimated memory.
    pub fn summary(&self) -> String {
        let mut o = String::new();
        let st = &self.settings;
        let mode = if st.mode == Mode::Enforce { "enforce" } else { "observe" };
        let _ = writeln!(o, "policy {}: mode {mode}, default {}", self.root, st.default);
        let _ = writeln!(
            o,
            "settings: sessions {}, learning-window {}, cookie-secret {}",
            st.sessions,
            fmt_dur(st.learning_window),
            st.cookie_secret.as_deref().unwrap_or("(generated)")
        );
        let _ = writeln!(o, "sets ({}):", self.sets.len());
        for s in &self.sets {
            let _ = writeln!(o, "  {:<20} {} prefixes ({} IPv4, {} IPv6)", s.name, s.prefixes.len(), s.v4(), s.v6());
        }
        let _ = writeln!(o, "port sets ({}):", self.port_sets.len());
        for s in &self.port_sets {
            let n: u32 = s.ranges.iter().map(|&(a, b)| u32::from(b) - u32::from(a) + 1).sum();
            let _ = writeln!(o, "  {:<20} {} ({n} ports)", s.name, fmt_ports(&s.ranges));
        }
        let _ = writeln!(o, "services ({}):", self.services.len());
        for s in &self.services {
            let syn = match s.syn {
                SynMode::Proxy => "proxy".to_string(),
                SynMode::Track => "track".to_string(),
                SynMode::Auto(r) => format!("auto {r}"),
            };
            let l = |v: Learnable| match v {
                Learnable::Value(n) => n.to_string(),
                Learnable::Learn => "learn".into(),
            };
            let t = |v: Toggle| format!("{v:?}").to_lowercase();
            let _ = write!(o, "  {:<20} dst {} {} ports {}", s.name, s.dst, s.proto, fmt_ports(&s.ports));
            if s.proto == Proto::Tcp {
                let _ = write!(
                    o,
                    "; syn {syn}, mss {}, wscale {}, sack {}, timestamps {}",
                    l(s.mss),
                    l(s.wscale),
                    t(s.sack),
                    t(s.timestamps)
                );
            }
            let _ = writeln!(
                o,
                "; idle {}/{}/{}, pickup {}",
                fmt_dur(s.idle_embryonic),
                fmt_dur(s.idle_established),
                fmt_dur(s.idle_closing),
                fmt_dur(s.pickup)
            );
        }
        let _ = writeln!(o, "rules ({}):", self.rules.len());
        for (i, r) in self.rules.iter().enumerate() {
            let obs = if r.observe { " observe" } else { "" };
            let mut line = format!("{}{obs} {}", r.action, describe_match(&r.matches, r));
            for l in &r.limits {
                line.push_str(" ; ");
                line.push_str(&describe_limit(l));
            }
            let _ = writeln!(o, "  {:>3}. {line}  [{}]", i + 1, r.location);
        }
        let _ = writeln!(o, "  default {}", st.default);
        let (px, bits, lim, sess) = self.estimated_memory();
        let total = px + bits + lim + sess;
        let _ = writeln!(
            o,
            "estimated memory: {} (session table {}, prefixes {}, port bitsets {}, limiters {})",
            fmt_bytes(total),
            fmt_bytes(sess),
            fmt_bytes(px),
            fmt_bytes(bits),
            fmt_bytes(lim)
        );
        o
    }
}

pub(crate) fn describe_match(m: &Match, r: &Rule) -> String {
    let mut s = Vec::new();
    if let Some(x) = &m.from {
        s.push(format!("from {}", x.node));
    }
    if let Some(x) = &m.to {
        s.push(format!("to {}", x.node));
    }
    if let Some(x) = &m.service {
        s.push(format!("service {}", x.node));
    }
    if let Some(x) = &m.proto {
        s.push(format!("proto {}", x.node));
    }
    if let Some(x) = &r.dst_ports {
        s.push(format!("port {}", fmt_ports(x)));
    }
    if let Some(x) = &r.src_ports {
        s.push(format!("sport {}", fmt_ports(x)));
    }
    if let Some(x) = &m.flags {
        let mut parts = Vec::new();
        for (n, b) in flag::NAMES {
            if x.node.set & b != 0 {
                parts.push(n.to_string());
            }
            if x.node.clear & b != 0 {
                parts.push(format!("!{n}"));
            }
        }
        s.push(format!("flags {}", parts.join("+")));
    }
    if let Some(x) = &m.len {
        s.push(format!("len {}-{}", x.node.0, x.node.1));
    }
    if let Some(x) = &m.frag {
        s.push(format!("frag {}", format!("{:?}", x.node).to_lowercase()));
    }
    if let Some(x) = &m.icmp_type {
        s.push(format!("icmp-type {}", x.node));
    }
    if let Some(x) = &m.icmpv6_type {
        s.push(format!("icmpv6-type {}", x.node));
    }
    if s.is_empty() {
        "everything".into()
    } else {
        s.join(" ")
    }
}

pub(crate) fn describe_limit(l: &LimitSpec) -> String {
    let rates = |r: &Vec<Spanned<Rate>>| r.iter().map(|x| x.node.to_string()).collect::<Vec<_>>().join(" ");
    let burst = |b: &Option<Spanned<u64>>| b.as_ref().map(|b| format!(" burst {}", b.node)).unwrap_or_default();
    match l {
        LimitSpec::PerSource { rates: r, burst: b } => format!("per-source {}{}", rates(r), burst(b)),
        LimitSpec::Aggregate { rates: r, burst: b } => format!("aggregate {}{}", rates(r), burst(b)),
        LimitSpec::NewConns { rate, burst: b } => format!("new-conns {}{}", rate.node, burst(b)),
        LimitSpec::MaxConns(n) => format!("max-conns {}", n.node),
        LimitSpec::Requests { rate, burst: b } => format!("per-source requests {}{}", rate.node, burst(b)),
    }
}
