//! Watching ext and int while `scrubber run` runs: a link that goes down, comes back, or
//! disappears (the interface deleted, e.g. a driver reload or a mistaken `ip link del`) is
//! reported, counted, and — when the interface returns under a new index — the data plane is
//! rebuilt on it with the sessions kept (see `supervisor`).
//!
//! The state is read from sysfs (`/sys/class/net/IF/{ifindex,operstate}`) every control step
//! (100 ms): no netlink socket to keep in sync, and the same view `ip link` gives.

use std::path::{Path, PathBuf};

crate::counters! {
    /// Link events on ext and int.
    pub struct LinkStats("links") {
        /// Times ext or int went down (operstate no longer up).
        counter "links" link_down_events,
        /// Times ext or int came back up.
        counter "links" link_up_events,
        /// Times ext or int disappeared (deleted).
        counter "links" link_gone_events,
        /// Times the data plane was rebuilt on an interface that came back under a new index.
        counter "links" dataplane_rebuilds,
        /// 1 while ext is present and up.
        gauge "links" ext_up,
        /// 1 while int is present and up.
        gauge "links" int_up,
    }
}

/// What sysfs says about one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not there.
    Gone,
    /// There (with this index), up or not.
    Present {
        /// Its index.
        ifindex: u32,
        /// operstate `up` (or `unknown`, which virtual devices without carrier report).
        up: bool,
    },
}

/// Read the state of `ifname` under `sys` (normally `/sys`).
pub fn read_state(sys: &Path, ifname: &str) -> LinkState {
    let dir = sys.join("class/net").join(ifname);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok().map(|s| s.trim().to_string());
    match read("ifindex").and_then(|s| s.parse().ok()) {
        None => LinkState::Gone,
        Some(ifindex) => {
            let up = matches!(read("operstate").as_deref(), Some("up" | "unknown"));
            LinkState::Present { ifindex, up }
        }
    }
}

/// A change worth telling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// The link went down (frames to it are lost until it comes back).
    Down(String),
    /// The link came back up (same interface).
    Up(String),
    /// The interface disappeared.
    Gone(String),
    /// The interface is back under another index: the data plane must be rebuilt on it.
    Returned(String),
}

/// The watcher of ext and int.
#[derive(Debug)]
pub struct LinkWatch {
    sys: PathBuf,
    names: [String; 2],
    last: [LinkState; 2],
    stats: LinkStats,
}

impl LinkWatch {
    /// Watch `ext` and `int` (their state now is the reference).
    pub fn new(sys: &Path, ext: &str, int: &str) -> LinkWatch {
        let last = [read_state(sys, ext), read_state(sys, int)];
        let mut w =
            LinkWatch { sys: sys.to_path_buf(), names: [ext.into(), int.into()], last, stats: LinkStats::default() };
        w.gauges();
        w
    }

    fn gauges(&mut self) {
        let up = |s: &LinkState| u64::from(matches!(s, LinkState::Present { up: true, .. }));
        self.stats.ext_up = up(&self.last[0]);
        self.stats.int_up = up(&self.last[1]);
    }

    /// Read both interfaces again; the changes since the last call, counted.
    pub fn poll(&mut self) -> Vec<LinkEvent> {
        let mut out = Vec::new();
        for i in 0..2 {
            let now = read_state(&self.sys, &self.names[i]);
            let name = self.names[i].clone();
            match (self.last[i], now) {
                (a, b) if a == b => {}
                (LinkState::Present { .. }, LinkState::Gone) => {
                    self.stats.link_gone_events += 1;
                    out.push(LinkEvent::Gone(name));
                }
                (LinkState::Gone, LinkState::Present { .. }) => out.push(LinkEvent::Returned(name)),
                (LinkState::Present { ifindex: a, .. }, LinkState::Present { ifindex: b, up }) if a != b => {
                    // Deleted and re-created between two polls.
                    self.stats.link_gone_events += 1;
                    out.push(LinkEvent::Gone(name.clone()));
                    out.push(LinkEvent::Returned(name.clone()));
                    if !up {
                        self.stats.link_down_events += 1;
                        out.push(LinkEvent::Down(name));
                    }
                }
                (LinkState::Present { up: true, .. }, LinkState::Present { up: false, .. }) => {
                    self.stats.link_down_events += 1;
                    out.push(LinkEvent::Down(name));
                }
                (LinkState::Present { up: false, .. }, LinkState::Present { up: true, .. }) => {
                    self.stats.link_up_events += 1;
                    out.push(LinkEvent::Up(name));
                }
                _ => {}
            }
            self.last[i] = now;
        }
        self.gauges();
        out
    }

    /// Whether both interfaces are present.
    pub fn both_present(&self) -> bool {
        self.last.iter().all(|s| matches!(s, LinkState::Present { .. }))
    }

    /// Count a data plane rebuild.
    pub fn rebuilt(&mut self) {
        self.stats.dataplane_rebuilds += 1;
    }

    /// The counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(sys: &Path, name: &str, state: Option<(u32, &str)>) {
        let d = sys.join("class/net").join(name);
        match state {
            None => {
                let _ = std::fs::remove_dir_all(&d);
            }
            Some((idx, op)) => {
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join("ifindex"), format!("{idx}\n")).unwrap();
                std::fs::write(d.join("operstate"), format!("{op}\n")).unwrap();
            }
        }
    }

    #[test]
    fn down_up_gone_and_back() {
        let sys = std::env::temp_dir().join(format!("scrubber-links-{}", std::process::id()));
        set(&sys, "ext", Some((2, "up")));
        set(&sys, "int", Some((3, "unknown")));
        let mut w = LinkWatch::new(&sys, "ext", "int");
        assert_eq!((w.stats().ext_up, w.stats().int_up), (1, 1));
        assert!(w.poll().is_empty());
        set(&sys, "int", Some((3, "down")));
        assert_eq!(w.poll(), vec![LinkEvent::Down("int".into())]);
        assert_eq!(w.stats().int_up, 0);
        set(&sys, "int", Some((3, "up")));
        assert_eq!(w.poll(), vec![LinkEvent::Up("int".into())]);
        set(&sys, "int", None);
        assert_eq!(w.poll(), vec![LinkEvent::Gone("int".into())]);
        assert!(!w.both_present());
        set(&sys, "int", Some((9, "up")));
        assert_eq!(w.poll(), vec![LinkEvent::Returned("int".into())]);
        // Deleted and re-created between two polls: seen by its new index.
        set(&sys, "ext", Some((10, "up")));
        assert_eq!(w.poll(), vec![LinkEvent::Gone("ext".into()), LinkEvent::Returned("ext".into())]);
        let s = w.stats();
        assert_eq!((s.link_down_events, s.link_up_events, s.link_gone_events), (1, 1, 2));
        std::fs::remove_dir_all(&sys).unwrap();
    }
}
