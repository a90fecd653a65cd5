//! `scrubber lab` (build the namespace lab, run legit traffic and floods through the middle box,
//! print live counters and a summary) and the hidden `scrubber peer` subcommand (the TCP peers
//! the lab and the end-to-end tests run inside the namespaces).

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use scrubber::tools::lab::peer::{self, ConnectOptions, Dir};
use scrubber::tools::lab::run::{LabMiddle, LabOptions};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// scrubber peer

/// Lab TCP peers (used by `scrubber lab` and the end-to-end tests).
#[derive(Debug, Args)]
pub struct PeerArgs {
    #[command(subcommand)]
    cmd: PeerCmd,
}

#[derive(Debug, Subcommand)]
enum PeerCmd {
    /// Threaded TCP server: HTTP GET `/` and `/bytes/N`, raw `PUT N` (answers the xxh3-128 hash)
    /// and raw `GET N`. Runs until SIGINT/SIGTERM.
    Serve {
        /// Address to listen on, e.g. `[::]:80` (IPv4 and IPv6) or `198.18.0.10:80`.
        #[arg(long, value_name = "ADDR:PORT")]
        listen: SocketAddr,
        /// Write the requests served (total, junk-header ones, by source) to this JSON file
        /// about every 200 ms.
        #[arg(long, value_name = "FILE")]
        counts: Option<std::path::PathBuf>,
    },
    /// A botnet: HTTP clients from many source addresses (FIRST and the next N−1; the namespace
    /// must own them, e.g. `ip route add local 198.19.16.0/22 dev lo`). Prints a JSON report
    /// {offered, sent, answered, connects, connect_failed, cut, sources, seconds}.
    Botnet {
        /// Server address.
        #[arg(long, value_name = "ADDR:PORT")]
        to: SocketAddr,
        /// First source address.
        #[arg(long, value_name = "IPV4")]
        first: std::net::Ipv4Addr,
        /// Number of source addresses.
        #[arg(long, value_name = "N", default_value_t = 1024)]
        sources: u32,
        /// `get` (a GET flood on keep-alive connections) or `junk` (giant made-up headers).
        #[arg(long, value_enum)]
        kind: BotKind,
        /// Requests per second offered, over all sources.
        #[arg(long, value_name = "R", default_value_t = 3000)]
        rate: u64,
        /// How long, in seconds (at most 600).
        #[arg(long, value_name = "S", default_value_t = 5.0)]
        seconds: f64,
        /// Requests per connection (get).
        #[arg(long, value_name = "K", default_value_t = 10)]
        per_conn: u32,
        /// Client threads.
        #[arg(long, value_name = "T", default_value_t = 64)]
        threads: usize,
        /// Connect and read timeout, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 500)]
        timeout_ms: u64,
        /// Bytes of `i` in each of the four junk headers (junk).
        #[arg(long, value_name = "B", default_value_t = 3000)]
        junk_bytes: usize,
    },
    /// Open N short connections (HTTP/1.0 GET /) and print a JSON report
    /// {ok, failed, stalled, p50_ms, p99_ms, max_ms, secs, errors}. Exit 1 if any failed.
    Connect {
        /// Server address.
        #[arg(long, value_name = "ADDR:PORT")]
        to: SocketAddr,
        /// Number of connections.
        #[arg(long, value_name = "N")]
        count: u64,
        /// Pace new connections at R per second (`300` or `300/s`); default: as fast as possible.
        #[arg(long, value_name = "R/s")]
        rate: Option<String>,
        /// Threads opening connections.
        #[arg(long, value_name = "P", default_value_t = 4)]
        parallel: usize,
        /// Limit for each connection, in milliseconds.
        #[arg(long, value_name = "T", default_value_t = 5000)]
        timeout_ms: u64,
        /// Print `progress ok=… failed=… stalled=…` on stderr every second.
        #[arg(long)]
        progress: bool,
        /// Stop opening connections after this many seconds (even if fewer than N were
        /// opened): a handshake prober for a fixed time.
        #[arg(long, value_name = "S")]
        seconds: Option<f64>,
    },
    /// One bulk transfer with a hash check; prints JSON {bytes, hash_ok, secs, mbit_s, error}.
    /// Exit 1 if the data did not arrive intact.
    Transfer {
        /// Server address.
        #[arg(long, value_name = "ADDR:PORT")]
        to: SocketAddr,
        /// Bytes to move: 123, 64K, 50M, 1G (powers of 1024).
        #[arg(long, value_name = "SIZE")]
        bytes: String,
        /// `up` (client to server) or `down`.
        #[arg(long, value_enum)]
        dir: DirArg,
        /// Longest time any single read or write may wait, in milliseconds.
        #[arg(long, value_name = "T", default_value_t = 10_000)]
        idle_ms: u64,
        /// Send (up) or read (down) no faster than this many Mbit/s.
        #[arg(long, value_name = "MBIT")]
        rate_mbit: Option<f64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BotKind {
    Get,
    Junk,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DirArg {
    Up,
    Down,
}

fn parse_rate(s: &str) -> Result<f64> {
    let t = s.trim().trim_end_matches("/s");
    t.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| anyhow!("bad --rate '{s}': give connections per second, e.g. 300 or 300/s"))
}

/// Run `scrubber peer …`.
pub fn cmd_peer(a: PeerArgs) -> Result<()> {
    match a.cmd {
        PeerCmd::Serve { listen, counts } => {
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install signal handlers")?;
            }
            peer::serve_counting(listen, stop, counts)?;
            Ok(())
        }
        PeerCmd::Botnet { to, first, sources, kind, rate, seconds, per_conn, threads, timeout_ms, junk_bytes } => {
            if !(seconds.is_finite() && seconds > 0.0 && seconds <= 600.0) {
                bail!("--seconds {seconds}: give a time between 0 and 600 seconds (every flood is bounded)");
            }
            if sources == 0 || threads == 0 || threads > 1024 || rate == 0 {
                bail!("--sources, --rate and --threads (at most 1024) must be above 0");
            }
            let rep = scrubber::tools::lab::botnet::run(&scrubber::tools::lab::botnet::BotnetOptions {
                to,
                first,
                sources,
                kind: match kind {
                    BotKind::Get => scrubber::tools::lab::botnet::Kind::Get,
                    BotKind::Junk => scrubber::tools::lab::botnet::Kind::Junk,
                },
                rate,
                duration: Duration::from_secs_f64(seconds),
                per_conn,
                threads,
                timeout: Duration::from_millis(timeout_ms.clamp(10, 60_000)),
                junk_bytes: junk_bytes.min(1 << 20),
            });
            println!("{}", serde_json::to_string(&rep)?);
            Ok(())
        }
        PeerCmd::Connect { to, count, rate, parallel, timeout_ms, progress, seconds } => {
            let rate = rate.as_deref().map(parse_rate).transpose()?;
            let duration = match seconds {
                Some(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Some(Duration::from_secs_f64(s)),
                Some(s) => bail!("--seconds {s}: give a time between 0 and 3600 seconds"),
                None => None,
            };
            let o = ConnectOptions {
                to,
                count,
                rate,
                parallel,
                timeout: Duration::from_millis(timeout_ms),
                progress,
                duration,
            };
            let rep = peer::connect(&o)?;
            println!("{}", serde_json::to_string(&rep)?);
            if rep.failed > 0 {
                bail!("{} of {count} connections to {to} failed", rep.failed);
            }
            Ok(())
        }
        PeerCmd::Transfer { to, bytes, dir, idle_ms, rate_mbit } => {
            let n = peer::parse_size(&bytes)?;
            let dir = match dir {
                DirArg::Up => Dir::Up,
                DirArg::Down => Dir::Down,
            };
            let pace = rate_mbit.filter(|r| *r > 0.0).map(|r| (r * 1e6 / 8.0) as u64);
            let rep = peer::transfer(to, n, dir, Duration::from_millis(idle_ms), pace);
            println!("{}", serde_json::to_string(&rep)?);
            if !rep.hash_ok {
                bail!("transfer of {n} bytes {dir:?} failed: {}", rep.error.as_deref().unwrap_or("hash mismatch"));
            }
            Ok(())
        }
    }
}

/// What sits in the middle of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MiddleArg {
    /// `scrubber run` on ext/int (AF_XDP, SYN proxy).
    Scrubber,
    /// A plain Linux bridge (no protection: the baseline).
    Bridge,
}

/// Build a network-namespace lab and show the scrubber at work.
///
/// Creates namespaces for a legitimate client, an attacker, a switch, the middle box and a
/// server (198.18.0.10, [2001:2::10], port 80), starts a server, starts the middle box (the
/// scrubber with the lab's rule file: SYN proxy, HTTP checks, a country list, request limits and
/// bans; or a plain bridge), then runs four phases of --seconds each: legitimate clients alone;
/// plus a spoofed ACK-PSH flood (sources in 198.19.0.0/16); plus a spoofed SYN flood; plus HTTP
/// floods from a botnet of 1,024 addresses (junk headers, and a GET flood at 3,000 requests/s).
/// Live counters are printed every second; summary tables at the end show the legitimate
/// connections (ok, failed, latency), how many flood frames were sent and how many reached the
/// server (nftables counters in the server namespace), and the HTTP requests offered and served.
///
/// Needs root, iproute2, ethtool, nftables, netsniff-ng (trafgen) and procps. Ctrl-C stops
/// everything and removes the namespaces.
///
/// Example:
///   sudo scrubber lab                       # scrubber in the middle, ~50 s
///   sudo scrubber lab --middle bridge       # the same through a plain bridge
///   sudo scrubber lab --seconds 5 --keep    # keep the lab up afterwards until Ctrl-C
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct LabArgs {
    /// Length of each of the four phases, in seconds (1-600).
    #[arg(long, value_name = "N", default_value_t = 10)]
    seconds: u64,
    /// What sits between the switch and the server.
    #[arg(long, value_enum, default_value_t = MiddleArg::Scrubber)]
    middle: MiddleArg,
    /// After the phases, keep the lab running (server, middle box) until Ctrl-C, and print
    /// commands to try.
    #[arg(long)]
    keep: bool,
    /// Flood rate in frames per second (trafgen, one core).
    #[arg(long, value_name = "PPS", default_value_t = 50_000)]
    flood_pps: u64,
    /// Legitimate new connections per second.
    #[arg(long, value_name = "R", default_value_t = 50)]
    conn_rate: u64,
    /// Instead of the phases: N scrubber boxes in parallel behind an ECMP edge router, steered
    /// by BGP with BFD (BIRD 2), and a failover: box 0 is killed while legitimate connections
    /// and a spoofed flood run, then restarted (see `scrubber lab --help`).
    #[arg(long, value_name = "N")]
    boxes: Option<usize>,
    /// With --boxes: print the report as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// With --boxes: the boxes do not stream their sessions to each other (to see what that
    /// costs a failover).
    #[arg(long)]
    no_sync: bool,
    /// With --boxes: instead of the failover, a flood whose attack events announce a blackhole
    /// route for the attacked server through GoBGP (examples/hooks/gobgp-blackhole.sh) to the
    /// edge router, withdrawn when the attack stops.
    #[arg(long)]
    divert: bool,
}

/// Run `scrubber lab`.
pub fn cmd_lab(a: LabArgs) -> Result<()> {
    let middle = match a.middle {
        MiddleArg::Scrubber => LabMiddle::Scrubber,
        MiddleArg::Bridge => LabMiddle::Bridge,
    };
    if let Some(boxes) = a.boxes {
        let exe = std::env::current_exe().context("cannot find this program's own path")?;
        let o = scrubber::tools::lab::fleet::FleetOptions {
            boxes,
            seconds: a.seconds.max(3),
            flood_pps: a.flood_pps,
            conn_rate: a.conn_rate,
            established: 16,
            sync: !a.no_sync,
        };
        if a.divert {
            let r = scrubber::tools::lab::fleet::run_divert(&o, &exe.to_string_lossy(), &mut |l| println!("{l}"))?;
            println!(
                "\n==> diversion: blackhole route at the edge router {} ms after the flood began, gone {} ms after it began \
                 (the flood ran {} ms)",
                r.announced_ms, r.withdrawn_ms, r.flood_ms
            );
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            }
            return Ok(());
        }
        let r = scrubber::tools::lab::fleet::run_failover(&o, &exe.to_string_lossy(), &mut |l| println!("{l}"))?;
        println!(
            "\n==> failover of box 0 of {} (session sync {}): path withdrawn after {} ms; new connections failed {} of \
             {} ({} after the withdrawal); flood frames at the server {} of {}; box 0 restarted and back in {} ms \
             (took in {} sessions from its peers); established connections survived {} of {} ({:.1} %) through both \
             moves; sync {:.0} bytes/s at {} new connections/s",
            r.boxes,
            if r.sync { "on" } else { "off" },
            r.failover_ms,
            r.new_connections_failed,
            r.new_connections,
            r.new_connections_failed_after_failover,
            r.flood_frames_at_server,
            r.flood_frames_sent,
            r.rejoin_ms,
            r.rejoin_sessions_imported,
            r.established_survived,
            r.established,
            r.established_survived_pct,
            r.sync_bytes_per_s,
            r.conn_rate
        );
        if a.json {
            println!("{}", serde_json::to_string(&r)?);
        }
        return Ok(());
    }
    let o = LabOptions { seconds: a.seconds, middle, keep: a.keep, flood_pps: a.flood_pps, conn_rate: a.conn_rate };
    Ok(scrubber::tools::lab::run::run(&o)?)
}
