//! `scrubber-perf`: benchmarks for scrubber. Figures are ratios and rates measured in one run;
//! nothing here is a pass/fail test.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::time::Duration;

mod cookie_bench;
mod engine_bench;
mod gen;
mod legit_bench;
mod policy_bench;
mod wire_bench;
mod wire_search;

#[derive(Parser, Debug)]
#[command(name = "scrubber-perf", version, about = "Benchmarks for the scrubber engine and data plane")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Frames judged per second on one core, in memory, per path (untracked ACK-PSH drop,
    /// SYN → cookie SYN-ACK, valid cookie ACK → session, established forward), with the
    /// session table holding each of the given populations of live sessions.
    Engine {
        /// Print one JSON object per path instead of a table.
        #[arg(long)]
        json: bool,
        /// Live sessions to open before measuring, comma-separated.
        #[arg(long, default_value = "1000,1000000", value_delimiter = ',')]
        sessions: Vec<usize>,
        /// Time spent measuring each path, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        ms: u64,
        /// Pin the benchmark to this CPU core.
        #[arg(long)]
        core: Option<usize>,
        /// Measure only these paths (comma-separated names as in the output; default: all).
        #[arg(long, value_delimiter = ',')]
        paths: Vec<String>,
        /// Judge one frame at a time (`Engine::process`) instead of 64-frame batches
        /// (`Engine::process_batch`, what `scrubber run` and `replay` use).
        #[arg(long)]
        single: bool,
        /// Also measure N engines in N threads at once (one per core from 0, each with its
        /// own table and frames, as the workers), and print their sum next to one thread.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// How often forged ACKs validate as SYN cookies (10⁹ random ACKs per kind by default),
    /// against the design's odds, and how fast they are checked.
    Cookies(cookie_bench::Args),
    /// Legitimate traffic (wrk keep-alive, a handshake prober) under spoofed floods through the
    /// scrubber, against an ideal control (bare forward loop, flood into a sink), with the middle
    /// core's load (root).
    Legit(legit_bench::Args),
    /// An AF_XDP traffic generator: TCP/UDP floods from random sources in a prefix, paced,
    /// bounded in count and time, one JSON line per second (root).
    Gen(gen::Args),
    /// Rule-policy compile time, table memory, LPM lookups/s and judge() calls/s for synthetic
    /// country-sized prefix lists in a 10-rule policy.
    Policy(policy_bench::Args),
    /// End to end on veth (root): drop path, forward path and TCP latency through the bare AF_XDP
    /// loops, `scrubber run` and the Linux kernel, in one run, with ratios scrubber / bare.
    Wire(wire_bench::Args),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Engine { json, sessions, ms, core, paths, single, threads } => {
            if sessions.is_empty() || sessions.iter().any(|&s| s > 8_000_000) {
                bail!("--sessions takes populations between 0 and 8000000");
            }
            if let Some(c) = core {
                pin(c).with_context(|| format!("pinning to core {c}"))?;
            }
            if cfg!(debug_assertions) {
                eprintln!("warning: this is a debug build; run with `cargo run --release -p scrubber-perf -- engine`");
            }
            if let Some(t) = threads {
                if t < 2 {
                    bail!("--threads takes 2 or more");
                }
                let cores: Vec<usize> = (0..t).collect();
                let d = Duration::from_millis(ms);
                let one = engine_bench::run_parallel(1, &cores[..1], &sessions, d, &paths, single);
                let many = engine_bench::run_parallel(t, &cores, &sessions, d, &paths, single);
                let rows = one.figures.iter().zip(&many.figures).filter(|(a, _)| a.frames > 0);
                if json {
                    for (a, b) in rows {
                        let r = |x: f64| (x * 100.0).round() / 100.0;
                        println!(
                            "{}",
                            serde_json::json!({"path": a.path, "sessions": a.sessions, "threads": t,
                                "mpps_1": r(a.mpps), "mpps": r(b.mpps), "ratio": r(b.mpps / a.mpps)})
                        );
                    }
                } else {
                    println!(
                        "{:<22} {:>10} {:>12} {:>12} {:>8}",
                        "path",
                        "sessions",
                        "1 thread",
                        format!("{t} threads"),
                        "ratio"
                    );
                    for (a, b) in rows {
                        println!(
                            "{:<22} {:>10} {:>12.2} {:>12.2} {:>8.2}",
                            a.path,
                            a.sessions,
                            a.mpps,
                            b.mpps,
                            b.mpps / a.mpps
                        );
                    }
                }
                return Ok(());
            }
            let report = engine_bench::run(&sessions, Duration::from_millis(ms), &paths, single, None, &mut |m| {
                eprintln!("… {m}")
            });
            if json {
                for f in report.figures.iter().filter(|f| f.frames > 0) {
                    println!(
                        "{}",
                        serde_json::json!({"path": f.path, "sessions": f.sessions, "mpps": (f.mpps * 100.0).round() / 100.0, "ns_per_frame": (f.ns_per_frame * 10.0).round() / 10.0})
                    );
                }
                for (k, cap, bytes) in &report.table_bytes {
                    println!(
                        "{}",
                        serde_json::json!({"table": {"sessions": k, "capacity": cap, "bytes": bytes, "bytes_per_slot": report.bytes_per_slot, "bytes_per_session": if *k > 0 { *bytes as f64 / *k as f64 } else { 0.0 }}})
                    );
                }
            } else {
                println!("{:<22} {:>10} {:>10} {:>10}", "path", "sessions", "Mpps", "ns/frame");
                for f in report.figures.iter().filter(|f| f.frames > 0) {
                    println!("{:<22} {:>10} {:>10.2} {:>10.1}", f.path, f.sessions, f.mpps, f.ns_per_frame);
                }
                println!();
                for (k, cap, bytes) in &report.table_bytes {
                    println!(
                        "table: {k} live sessions in {cap} slots, {:.1} MiB, {} bytes per slot",
                        *bytes as f64 / (1 << 20) as f64,
                        report.bytes_per_slot
                    );
                }
            }
        }
        Cmd::Cookies(args) => {
            if let Some(c) = args.core {
                pin(c).with_context(|| format!("pinning to core {c}"))?;
            }
            let rows = cookie_bench::run(&args, &mut |m| eprintln!("… {m}"));
            if args.json {
                for r in &rows {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else {
                println!(
                    "{:<18} {:>14} {:>9} {:>14} {:>14} {:>10}",
                    "kind", "forged ACKs", "accepted", "per 10^9", "expected/10^9", "M/s"
                );
                for r in &rows {
                    println!(
                        "{:<18} {:>14} {:>9} {:>14.3} {:>14.4} {:>10.1}",
                        r.kind, r.acks, r.accepted, r.per_billion, r.expected_per_billion, r.million_per_second
                    );
                }
            }
        }
        Cmd::Legit(args) => {
            let rows = legit_bench::run(&args)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", legit_bench::render(&rows));
            }
        }
        Cmd::Gen(args) => {
            gen::run(&args, &mut |r| println!("{}", serde_json::to_string(r).unwrap_or_default()))?;
        }
        Cmd::Policy(args) => policy_bench::main(&args)?,
        Cmd::Wire(args) => wire_bench::main(&args)?,
    }
    Ok(())
}

/// Pin the calling thread to one CPU core.
fn pin(core: usize) -> Result<()> {
    let ids = core_affinity::get_core_ids().context("reading the CPU set")?;
    let Some(id) = ids.into_iter().find(|c| c.id == core) else {
        bail!("core {core} is not in this process's CPU set");
    };
    if !core_affinity::set_for_current(id) {
        bail!("sched_setaffinity refused core {core}");
    }
    Ok(())
}
