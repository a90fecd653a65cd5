//! `scrubber ban`.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use scrubber::control::bans::{send, Command};
use scrubber::control::config::defaults;
use std::net::IpAddr;
use std::path::PathBuf;

/// List, add and lift bans of a running scrubber.
///
/// Sources are banned by `limit` rules and `http` lines that say `ban DURATION [after N]`
/// (see the rule language): every frame from a banned source is dropped (`banned`) until the
/// ban ends. Bans live in the running process only (a restart starts with none).
///
/// Examples:
///   scrubber ban list
///   scrubber ban add 198.19.7.7 --for 1h
///   scrubber ban del 198.19.7.7
///   scrubber ban list --json | jq -r '.bans[].addr'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct BanArgs {
    #[command(subcommand)]
    cmd: BanCmd,

    /// The scrubber's stats socket (as given to `scrubber run --socket`); the ban socket is
    /// beside it (PATH.ctl).
    #[arg(long, value_name = "PATH", default_value = defaults::SOCKET, global = true)]
    socket: PathBuf,

    /// Print the answer as JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum BanCmd {
    /// Every live ban: source, seconds left, what banned it.
    List,
    /// Ban a source.
    Add {
        /// The source address (IPv4 or IPv6).
        addr: IpAddr,
        /// How long: e.g. 90s, 10m, 2h, 1d (at most 30d).
        #[arg(long = "for", value_name = "DURATION", default_value = "10m")]
        duration: String,
    },
    /// Lift a ban.
    Del {
        /// The source address.
        addr: IpAddr,
    },
}

/// `90s`, `10m`, `2h`, `1d` → seconds.
fn secs(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let Ok(n) = n.parse::<u64>() else { bail!("--for {s}: give a duration like 90s, 10m, 2h or 1d") };
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--for {s}: unknown unit '{unit}' (s, m, h or d)"),
    };
    Ok(n.saturating_mul(mult))
}

/// Run `scrubber ban`.
pub fn run(a: BanArgs) -> Result<()> {
    let cmd = match a.cmd {
        BanCmd::List => Command::List,
        BanCmd::Add { addr, duration } => Command::Add { addr, secs: secs(&duration)? },
        BanCmd::Del { addr } => Command::Del { addr },
    };
    let ans = send(&a.socket, &cmd)?;
    if a.json {
        println!("{}", serde_json::to_string(&ans)?);
        return Ok(());
    }
    match cmd {
        Command::List if ans.bans.is_empty() => println!("no bans"),
        Command::List => {
            println!("{:<40} {:>10}  {:>7}  by", "source", "left", "strikes");
            for b in &ans.bans {
                println!("{:<40} {:>9}s  {:>7}  {}", b.addr, b.seconds_left, b.strikes, b.by);
            }
        }
        _ => println!("{}", ans.message),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(secs("90s").unwrap(), 90);
        assert_eq!(secs("10m").unwrap(), 600);
        assert_eq!(secs("1d").unwrap(), 86_400);
        assert_eq!(secs("45").unwrap(), 45);
        assert!(secs("10x").is_err() && secs("m").is_err());
    }
}
