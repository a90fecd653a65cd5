//! `scrubber top`.

use anyhow::{bail, Context, Result};
use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use scrubber::control::config::defaults;
use scrubber::control::telemetry::fetch;
use scrubber::control::top;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A live view of a running scrubber: targets under attack, rates, top sources, drops by reason.
///
/// Reads the stats socket of `scrubber run` every second and redraws one screen (80×24 is
/// enough; it works over ssh). q, Esc or Ctrl-C quits.
///
/// Examples:
///   scrubber top
///   scrubber top --once        # one screen as text, e.g. for a ticket
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct TopArgs {
    /// The scrubber's stats socket (as given to `scrubber run --socket`).
    #[arg(long, value_name = "PATH", default_value = defaults::SOCKET)]
    socket: PathBuf,
    /// Refresh interval in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    interval: f64,
    /// Print one 80×24 screen as text (rates over one interval) and exit.
    #[arg(long)]
    once: bool,
    /// Exit after this many screens (for scripts and tests).
    #[arg(long, value_name = "N")]
    frames: Option<u64>,
}

/// Run `scrubber top`.
pub fn run(a: TopArgs) -> Result<()> {
    if !(0.1..=3600.0).contains(&a.interval) {
        bail!("--interval {}: give seconds between 0.1 and 3600", a.interval);
    }
    let every = Duration::from_secs_f64(a.interval);
    let get = || fetch(&a.socket).with_context(|| format!("no scrubber answers at {}", a.socket.display()));
    if a.once {
        let prev = get()?;
        std::thread::sleep(every);
        let cur = get()?;
        print!("{}", top::render_text(&cur, Some(&prev), 80, 24));
        return Ok(());
    }
    let mut prev = get()?;
    let mut terminal = ratatui::init();
    let res = (|| -> Result<()> {
        let mut shown = 0u64;
        let mut next = Instant::now();
        loop {
            let cur = get()?;
            terminal.draw(|f| top::draw(f, &cur, Some(&prev)))?;
            shown += 1;
            if a.frames.is_some_and(|n| shown >= n) {
                return Ok(());
            }
            prev = cur;
            next += every;
            while let Some(left) = next.checked_duration_since(Instant::now()) {
                if event::poll(left)? {
                    if let Event::Key(k) = event::read()? {
                        let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                        if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                            return Ok(());
                        }
                    }
                }
            }
        }
    })();
    ratatui::restore();
    res
}
