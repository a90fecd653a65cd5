//! Counting what reaches the server: nftables named counters in the server's namespace.
//!
//! A table `inet scrubber_lab` with a `prerouting` chain at priority -300 (before conntrack and
//! before any other filtering) counts every IPv4/IPv6 packet by source range and by TCP flag
//! combination. Counters are read back as numbers with `nft -j list counters`.

use super::exec::run_ns;
use super::LabError;
use std::collections::BTreeMap;

/// The table's name (family `inet`).
pub const TABLE: &str = "scrubber_lab";

/// Source ranges that are counted separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// Spoofed IPv4 flood sources, 198.19.0.0/16.
    Spoof4,
    /// Spoofed IPv6 flood sources, 2001:2:0:ffff::/64.
    Spoof6,
    /// The legitimate client, 198.18.0.1.
    Client4,
    /// The legitimate client, 2001:2::1.
    Client6,
    /// The attacker's own addresses, 198.18.0.66 and 2001:2::66.
    Attacker,
}

impl Source {
    /// Every source range.
    pub const ALL: [Source; 5] = [Source::Spoof4, Source::Spoof6, Source::Client4, Source::Client6, Source::Attacker];

    fn name(self) -> &'static str {
        match self {
            Source::Spoof4 => "spoof4",
            Source::Spoof6 => "spoof6",
            Source::Client4 => "client4",
            Source::Client6 => "client6",
            Source::Attacker => "attacker",
        }
    }

    fn matcher(self) -> &'static [&'static str] {
        match self {
            Source::Spoof4 => &["ip saddr 198.19.0.0/16"],
            Source::Spoof6 => &["ip6 saddr 2001:2:0:ffff::/64"],
            Source::Client4 => &["ip saddr 198.18.0.1"],
            Source::Client6 => &["ip6 saddr 2001:2::1"],
            Source::Attacker => &["ip saddr 198.18.0.66", "ip6 saddr 2001:2::66"],
        }
    }
}

/// Packet classes counted per source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Every IP packet (any protocol).
    All,
    /// TCP with exactly SYN among FIN/SYN/RST/PSH/ACK/URG.
    Syn,
    /// TCP with exactly ACK.
    Ack,
    /// TCP with exactly ACK+PSH.
    AckPsh,
    /// TCP with RST set (any other flags).
    Rst,
    /// TCP with FIN set and neither SYN nor RST.
    Fin,
}

impl Class {
    /// Every class.
    pub const ALL: [Class; 6] = [Class::All, Class::Syn, Class::Ack, Class::AckPsh, Class::Rst, Class::Fin];

    fn name(self) -> &'static str {
        match self {
            Class::All => "all",
            Class::Syn => "syn",
            Class::Ack => "ack",
            Class::AckPsh => "ackpsh",
            Class::Rst => "rst",
            Class::Fin => "fin",
        }
    }

    fn matcher(self) -> &'static str {
        match self {
            Class::All => "",
            Class::Syn => "tcp flags & (fin|syn|rst|psh|ack|urg) == syn",
            Class::Ack => "tcp flags & (fin|syn|rst|psh|ack|urg) == ack",
            Class::AckPsh => "tcp flags & (fin|syn|rst|psh|ack|urg) == (psh|ack)",
            Class::Rst => "tcp flags & rst == rst",
            Class::Fin => "tcp flags & (fin|syn|rst) == fin",
        }
    }
}

fn counter_name(s: Source, c: Class) -> String {
    format!("{}_{}", s.name(), c.name())
}

/// The nftables ruleset text that [`ServerCounters::install`] loads.
pub fn ruleset() -> String {
    let mut r = format!("table inet {TABLE} {{\n");
    for s in Source::ALL {
        for c in Class::ALL {
            r.push_str(&format!("  counter {} {{ }}\n", counter_name(s, c)));
        }
    }
    r.push_str("  chain pre {\n    type filter hook prerouting priority -300; policy accept;\n");
    for s in Source::ALL {
        for m in s.matcher() {
            for c in Class::ALL {
                r.push_str(&format!("    {m} {} counter name {}\n", c.matcher(), counter_name(s, c)));
            }
        }
    }
    r.push_str("  }\n}\n");
    r
}

/// A snapshot of every counter: packets per (source, class).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts(BTreeMap<(Source, Class), u64>);

impl Counts {
    /// Packets counted for `source` in `class` (0 if unknown).
    pub fn get(&self, source: Source, class: Class) -> u64 {
        self.0.get(&(source, class)).copied().unwrap_or(0)
    }

    /// `self - earlier`, counter by counter (saturating at 0).
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts(self.0.iter().map(|(k, v)| (*k, v.saturating_sub(earlier.0.get(k).copied().unwrap_or(0)))).collect())
    }
}

impl std::fmt::Display for Counts {
    /// The non-zero counters as `name=packets`, e.g. `spoof4_all=120 spoof4_ackpsh=120`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for ((s, c), v) in &self.0 {
            if *v != 0 {
                write!(f, "{}{}={v}", if first { "" } else { " " }, counter_name(*s, *c))?;
                first = false;
            }
        }
        if first {
            f.write_str("(all zero)")?;
        }
        Ok(())
    }
}

/// The counters installed in a namespace (the table is deleted on drop, if the namespace still
/// exists).
#[derive(Debug)]
pub struct ServerCounters {
    ns: String,
}

impl ServerCounters {
    /// Load the counting table into namespace `ns` (replacing an older one).
    pub fn install(ns: &str) -> Result<ServerCounters, LabError> {
        let _ = run_ns(ns, "nft", &["delete", "table", "inet", TABLE]);
        let dir = std::env::temp_dir().join(format!("scrubber-lab-nft-{}-{ns}", std::process::id()));
        std::fs::write(&dir, ruleset())
            .map_err(|source| LabError::Io { what: format!("cannot write {}", dir.display()), source })?;
        let path = dir.to_string_lossy().into_owned();
        let res = run_ns(ns, "nft", &["-f", &path]);
        let _ = std::fs::remove_file(&dir);
        res?;
        Ok(ServerCounters { ns: ns.to_string() })
    }

    /// Read every counter.
    pub fn read(&self) -> Result<Counts, LabError> {
        let cmd = format!("nft -j list counters table inet {TABLE}");
        let out = run_ns(&self.ns, "nft", &["-j", "list", "counters", "table", "inet", TABLE])?;
        parse_counters(&out).map_err(|detail| LabError::Parse { cmd, detail })
    }

    /// Zero every counter.
    pub fn reset(&self) -> Result<(), LabError> {
        run_ns(&self.ns, "nft", &["reset", "counters", "table", "inet", TABLE])?;
        Ok(())
    }
}

impl Drop for ServerCounters {
    fn drop(&mut self) {
        if super::topo::netns_exists(&self.ns) {
            let _ = run_ns(&self.ns, "nft", &["delete", "table", "inet", TABLE]);
        }
    }
}

/// Parse `nft -j list counters` output into [`Counts`].
pub fn parse_counters(json: &str) -> Result<Counts, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let items = v.get("nftables").and_then(|n| n.as_array()).ok_or("no \"nftables\" array")?;
    let mut by_name = BTreeMap::new();
    for it in items {
        if let Some(c) = it.get("counter") {
            let name = c.get("name").and_then(|n| n.as_str()).ok_or("counter without a name")?;
            let packets = c.get("packets").and_then(|p| p.as_u64()).ok_or("counter without packets")?;
            by_name.insert(name.to_string(), packets);
        }
    }
    let mut out = BTreeMap::new();
    for s in Source::ALL {
        for c in Class::ALL {
            let n = counter_name(s, c);
            let p = by_name.get(&n).copied().ok_or_else(|| format!("counter {n} missing"))?;
            out.insert((s, c), p);
        }
    }
    Ok(Counts(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_names_every_counter_and_parses_back() {
        let r = ruleset();
        let mut json = String::from("{\"nftables\":[{\"metainfo\":{}}");
        for (i, s) in Source::ALL.iter().enumerate() {
            for (j, c) in Class::ALL.iter().enumerate() {
                let n = counter_name(*s, *c);
                assert!(r.contains(&format!("counter name {n}\n")), "{n} not used");
                json.push_str(&format!(
                    ",{{\"counter\":{{\"family\":\"inet\",\"name\":\"{n}\",\"table\":\"{TABLE}\",\"packets\":{},\"bytes\":0}}}}",
                    i * 10 + j
                ));
            }
        }
        json.push_str("]}");
        let c = parse_counters(&json).unwrap();
        assert_eq!(c.get(Source::Spoof4, Class::All), 0);
        assert_eq!(c.get(Source::Spoof6, Class::Syn), 11);
        assert_eq!(c.get(Source::Attacker, Class::Fin), 45);
        let d = c.since(&Counts::default());
        assert_eq!(d, c);
        assert!(c.to_string().starts_with("spoof4_syn=1 spoof4_ack=2"), "{c}");
        assert_eq!(c.since(&c).to_string(), "(all zero)");
        assert!(parse_counters("{\"nftables\":[]}").is_err());
        assert!(parse_counters("nope").is_err());
    }
}
