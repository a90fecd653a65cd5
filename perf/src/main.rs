//! `scrubber-perf`: benchmarks for scrubber. Figures are ratios and rates measured in one run;
//! nothing here is a pass/fail test.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::time::Duration;

mod engine_bench;
mod policy_bench;
mod wire_bench;

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
    },
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
        Cmd::Engine { json, sessions, ms, core, paths, single } => {
            if sessions.is_empty() || sessions.iter().any(|&s| s > 8_000_000) {
                bail!("--sessions takes populations between 0 and 8000000");
            }
            if let Some(c) = core {
                pin(c).with_context(|| format!("pinning to core {c}"))?;
            }
            if cfg!(debug_assertions) {
                eprintln!("warning: this is a debug build; run with `cargo run --release -p scrubber-perf -- engine`");
            }
            let report =
                engine_bench::run(&sessions, Duration::from_millis(ms), &paths, single, &mut |m| eprintln!("… {m}"));
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
