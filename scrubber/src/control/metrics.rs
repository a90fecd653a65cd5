//! `scrubber run --metrics ADDR`: the statistics in the Prometheus text exposition format, at
//! `http://ADDR/metrics` (default `127.0.0.1:9477`, loopback only), rendered by the
//! `prometheus-client` crate from the same snapshot `scrubber stats` reads.
//!
//! Every declared counter is exported with its documentation as help text: the engine's
//! counters, the session table, limiters and rings per `worker`; drops and would-drops by
//! `reason`; per `target` (service) the totals and the traffic classes; per `rule`; reloads,
//! links and events; `scrubber_under_attack{target}` (0 or 1) and the top sources of each
//! target in the last second, `scrubber_top_source_pps{target,src,rank}` (the 10 largest).
//!
//! The server is one thread that answers one request at a time (a scrape renders a snapshot:
//! its cost grows with workers × targets × rules, measured in the unit test), with 2 s read
//! and write timeouts; it never touches a worker.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::telemetry::{Snapshot, StatsServer};
use crate::engine::counters::{Group, Kind};
use crate::engine::verdict::DropReason;

/// The default `--metrics` address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9477";
/// Top sources exported per target.
const TOP_N: usize = 10;

type Labels = Vec<(&'static str, String)>;

/// Families being filled for one scrape.
struct Builder {
    reg: Registry,
}

impl Builder {
    fn counter(&mut self, name: &str, help: &str, values: impl IntoIterator<Item = (Labels, u64)>) {
        let f = Family::<Labels, Counter>::default();
        for (l, v) in values {
            f.get_or_create(&l).inc_by(v);
        }
        self.reg.register(name, help.trim(), f);
    }

    fn gauge(&mut self, name: &str, help: &str, values: impl IntoIterator<Item = (Labels, u64)>) {
        let f = Family::<Labels, Gauge>::default();
        for (l, v) in values {
            f.get_or_create(&l).set(i64::try_from(v).unwrap_or(i64::MAX));
        }
        self.reg.register(name, help.trim(), f);
    }

    /// Every counter of group `G`, one series per (labels, group) pair; names prefixed.
    fn group<G: Group>(&mut self, prefix: &str, items: &[(Labels, &G)]) {
        for (i, info) in G::INFO.iter().enumerate() {
            let name = if prefix.is_empty() { info.name.to_string() } else { format!("{prefix}_{}", info.name) };
            let values = items.iter().map(|(l, g)| (l.clone(), g.get(i)));
            match info.kind {
                Kind::Counter => self.counter(&name, info.doc, values),
                Kind::Gauge => self.gauge(&name, info.doc, values),
            }
        }
    }
}

/// The exposition text of `snap`.
pub fn render(snap: &Snapshot) -> String {
    let mut b = Builder { reg: Registry::with_prefix("scrubber") };
    let w = |i: usize| -> Labels { vec![("worker", i.to_string())] };
    let workers = &snap.workers;
    b.group("", &workers.iter().map(|x| (w(x.worker), &x.counters.engine)).collect::<Vec<_>>());
    b.group("table", &workers.iter().map(|x| (w(x.worker), &x.table)).collect::<Vec<_>>());
    b.group("limiter", &workers.iter().map(|x| (w(x.worker), &x.limiter)).collect::<Vec<_>>());
    b.group("rings", &workers.iter().map(|x| (w(x.worker), &x.rings)).collect::<Vec<_>>());
    b.group("http_table", &workers.iter().map(|x| (w(x.worker), &x.http)).collect::<Vec<_>>());
    b.group("sync", &workers.iter().map(|x| (w(x.worker), &x.sync)).collect::<Vec<_>>());
    for (name, help, would) in [
        ("drops_by_reason", "Frames dropped, by reason.", false),
        ("would_drops_by_reason", "Frames a drop was decided for but forwarded (observe), by reason.", true),
    ] {
        let mut v = Vec::new();
        for x in workers {
            let arr = if would { &x.counters.would_drop } else { &x.counters.dropped };
            for r in DropReason::ALL {
                let n = arr[r.index()];
                if n > 0 {
                    v.push((vec![("worker", x.worker.to_string()), ("reason", r.as_str().to_string())], n));
                }
            }
        }
        b.counter(name, help, v);
    }
    let targets: Vec<(Labels, &crate::engine::counters::TargetCounts)> = workers
        .iter()
        .flat_map(|x| {
            x.counters
                .per_target
                .iter()
                .map(move |t| (vec![("worker", x.worker.to_string()), ("target", t.label.clone())], &t.n))
        })
        .collect();
    b.group("target", &targets);
    let rules: Vec<(Labels, &crate::engine::counters::RuleCounts)> = workers
        .iter()
        .flat_map(|x| {
            x.counters
                .per_rule
                .iter()
                .map(move |t| (vec![("worker", x.worker.to_string()), ("rule", t.label.clone())], &t.n))
        })
        .collect();
    b.group("rule", &rules);
    b.group("reload", &[(Vec::new(), &snap.reload)]);
    b.group("links", &[(Vec::new(), &snap.links)]);
    b.group("events", &[(Vec::new(), &snap.events)]);
    b.group("samples", &[(Vec::new(), &snap.samples)]);
    b.group("bans", &[(Vec::new(), &snap.bans)]);
    b.group("sync_net", &[(Vec::new(), &snap.sync)]);
    // Attack state and top sources per target (targets as the first worker lists them).
    if let Some(first) = workers.first() {
        let attacked = first
            .counters
            .per_target
            .iter()
            .map(|t| (vec![("target", t.label.clone())], u64::from(snap.under_attack.contains(&t.label))));
        b.gauge(
            "under_attack",
            "1 while the target is under attack (an attack event started and has not stopped).",
            attacked,
        );
        let counters: Vec<&crate::engine::counters::Counters> = workers.iter().map(|x| &x.counters).collect();
        let mut top = Vec::new();
        let mut passed = Vec::new();
        let mut global: Vec<Vec<(std::net::IpAddr, u64)>> = Vec::new();
        for r in crate::engine::detect::readings(&counters) {
            for (list, out) in [(&r.top, &mut top), (&r.top_passed, &mut passed)] {
                for (rank, (src, pps)) in list.iter().take(TOP_N).enumerate() {
                    out.push((
                        vec![("target", r.label.clone()), ("src", src.to_string()), ("rank", (rank + 1).to_string())],
                        *pps,
                    ));
                }
            }
            global.push(r.top.clone());
        }
        let global = crate::engine::detect::merge_top(&global, TOP_N);
        b.gauge(
            "top_source_pps_all_targets",
            "Estimated frames per second of the top sources of attack-class traffic over all targets, last second.",
            global
                .iter()
                .enumerate()
                .map(|(rank, (src, pps))| (vec![("src", src.to_string()), ("rank", (rank + 1).to_string())], *pps)),
        );
        b.gauge(
            "top_passed_source_pps",
            "Estimated frames per second of the target's top sources of traffic that passed, last second.",
            passed,
        );
        b.gauge(
            "top_source_pps",
            "Estimated frames per second of the target's top sources of attack-class traffic in the last second.",
            top,
        );
    }
    b.gauge("uptime_seconds", "Seconds since the scrubber started.", [(Vec::new(), snap.uptime_secs as u64)]);
    let mut out = String::with_capacity(64 * 1024);
    if encode(&mut out, &b.reg).is_err() {
        out.clear();
        let _ = writeln!(out, "# the metrics could not be encoded");
    }
    out
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("--metrics {addr}: cannot listen ({source}); give another address, or --metrics off")]
pub struct MetricsError {
    /// The address.
    pub addr: SocketAddr,
    /// The error.
    pub source: std::io::Error,
}

/// The running endpoint; stops when dropped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Serve `server`'s snapshots at `addr`.
    pub fn start(addr: SocketAddr, server: Arc<StatsServer>) -> Result<MetricsServer, MetricsError> {
        let l = TcpListener::bind(addr).map_err(|source| MetricsError { addr, source })?;
        let addr = l.local_addr().unwrap_or(addr);
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("scrubber-metrics".into())
            .spawn(move || {
                for c in l.incoming() {
                    if s2.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(c) = c {
                        let _ = answer(c, &server);
                    }
                }
            })
            .map_err(|source| MetricsError { addr, source })?;
        Ok(MetricsServer { addr, stop, thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(c: TcpStream, server: &StatsServer) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    c.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(&c).take(1024).read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, ctype, body) = if line.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render(&server.snapshot()))
    } else {
        ("404 Not Found", "text/plain", "only GET /metrics is served here\n".to_string())
    };
    let mut w = &c;
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    w.write_all(body.as_bytes())
}

use std::io::Read as _;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::stats::WorkerStats;

    #[test]
    fn every_counter_is_exported_and_a_scrape_is_cheap() {
        let targets: Vec<String> = (0..16).map(|i| format!("svc{i}")).collect();
        let mut workers = Vec::new();
        for i in 0..4 {
            let mut w = WorkerStats::new(i, &targets);
            w.counters.rx_inbound = 1000 + i as u64;
            w.counters.drop(DropReason::AckNoSession);
            w.counters.per_target[3].class_ack_psh = 77;
            workers.push(w);
        }
        let snap = Snapshot {
            version: 1,
            pid: 1,
            started_unix: 0,
            uptime_secs: 12.5,
            policy: "p".into(),
            reload: Default::default(),
            links: Default::default(),
            events: Default::default(),
            under_attack: vec!["svc3".into()],
            samples: Default::default(),
            bans: Default::default(),
            banned: Vec::new(),
            sync: Default::default(),
            workers,
        };
        let t = std::time::Instant::now();
        let text = render(&snap);
        let cost = t.elapsed();
        eprintln!("one scrape of 4 workers x 16 targets: {} bytes in {cost:?}", text.len());
        assert!(text.contains("scrubber_rx_inbound_total{worker=\"2\"} 1002"), "{}", &text[..text.len().min(2000)]);
        assert!(text.contains("scrubber_drops_by_reason_total{worker=\"0\",reason=\"ack_no_session\"} 1"));
        assert!(text.contains("scrubber_target_class_ack_psh_total{worker=\"1\",target=\"svc3\"} 77"));
        assert!(text.contains("scrubber_under_attack{target=\"svc3\"} 1"));
        assert!(text.contains("# HELP scrubber_rx_inbound Frames handed to the engine from ext."));
        for info in crate::engine::counters::EngineCounters::INFO {
            assert!(text.contains(&format!("scrubber_{}", info.name)), "{} missing", info.name);
        }
    }

    /// Every series the shipped Grafana dashboard queries exists.
    #[test]
    fn the_grafana_dashboard_queries_exported_series() {
        let dash = include_str!("../../../examples/grafana/scrubber-dashboard.json");
        let mut w = WorkerStats::new(0, &["web".to_string()]);
        w.counters.drop(DropReason::AckNoSession);
        let snap = Snapshot {
            version: 1,
            pid: 1,
            started_unix: 0,
            uptime_secs: 1.0,
            policy: String::new(),
            reload: Default::default(),
            links: Default::default(),
            events: Default::default(),
            under_attack: vec![],
            samples: Default::default(),
            bans: Default::default(),
            banned: Vec::new(),
            sync: Default::default(),
            workers: vec![w],
        };
        let text = render(&snap);
        let mut n = 0;
        for part in dash.split("scrubber_").skip(1) {
            let name: String =
                part.chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
            if name.is_empty() {
                continue;
            }
            n += 1;
            assert!(
                text.contains(&format!("scrubber_{name}")),
                "the dashboard queries scrubber_{name}, which is not exported"
            );
        }
        assert!(n >= 10, "{n} series");
    }
}
