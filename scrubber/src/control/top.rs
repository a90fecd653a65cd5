//! `scrubber top`: one screen of what an operator needs during an attack, drawn with `ratatui`
//! from two stats snapshots (rates are their differences): targets with their rates and state,
//! the top sources of the target under attack (or the busiest one), drops by reason, sessions,
//! ring stalls and events. Laid out for an 80×24 terminal; larger ones get more rows.

use std::time::Duration;

use ratatui::layout::{Constraint, Direction, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;

use super::telemetry::Snapshot;
use crate::engine::counters::{group, TrafficClass};
use crate::engine::verdict::DropReason;

/// The refresh interval of `scrubber top`.
pub const INTERVAL: Duration = Duration::from_secs(1);

fn rate(cur: u64, prev: Option<u64>, secs: f64) -> u64 {
    match prev {
        Some(p) if secs > 0.0 => (cur.saturating_sub(p) as f64 / secs).round() as u64,
        _ => 0,
    }
}

fn uptime(s: f64) -> String {
    let s = s as u64;
    format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
}

/// Draw one screen of `cur` (rates against `prev`) into `f`.
pub fn draw(f: &mut Frame<'_>, cur: &Snapshot, prev: Option<&Snapshot>) {
    let secs = prev.map_or(0.0, |p| cur.uptime_secs - p.uptime_secs);
    let tot = cur.total();
    let ptot = prev.map(Snapshot::total);
    let area = f.area();
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(1), Constraint::Min(6), Constraint::Length(9), Constraint::Length(2)])
        .split(area);

    // Header.
    let attack = if cur.under_attack.is_empty() { "none".to_string() } else { cur.under_attack.join(", ") };
    let head = format!(
        "scrubber top  up {}  {} worker(s)  under attack: {attack}  (q quits)",
        uptime(cur.uptime_secs),
        cur.workers.len()
    );
    f.render_widget(Paragraph::new(head).style(Style::default().add_modifier(Modifier::BOLD)), rows[0]);

    // Targets.
    let mut trows = Vec::new();
    for (i, t) in tot.counters.per_target.iter().enumerate() {
        let p = ptot.as_ref().and_then(|p| p.counters.per_target.get(i));
        let r = |c: u64, pc: Option<u64>| group(rate(c, pc, secs));
        let top_class = TrafficClass::ALL
            .iter()
            .filter(|c| **c != TrafficClass::Legit)
            .map(|&c| (c, rate(t.class(c).0, p.map(|p| p.class(c).0), secs)))
            .max_by_key(|x| x.1)
            .filter(|x| x.1 > 0)
            .map_or("-".to_string(), |(c, n)| format!("{} {}", c.name(), group(n)));
        let state = if cur.under_attack.contains(&t.label) { "ATTACK" } else { "ok" };
        trows.push(Row::new(vec![
            t.label.clone(),
            r(t.rx, p.map(|p| p.rx)),
            r(t.forwarded, p.map(|p| p.forwarded)),
            r(t.dropped, p.map(|p| p.dropped)),
            top_class,
            state.to_string(),
        ]));
    }
    let targets = Table::new(
        trows,
        [
            Constraint::Length(16),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(10),
            Constraint::Length(20),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new(vec!["target", "rx/s", "fwd/s", "drop/s", "top class/s", "state"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::default().borders(Borders::ALL).title(" targets "));
    f.render_widget(targets, rows[1]);

    // Top sources of the attacked (else busiest) target, and drops by reason.
    let cols = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(rows[2]);
    let counters: Vec<&crate::engine::counters::Counters> = cur.workers.iter().map(|w| &w.counters).collect();
    let readings = crate::engine::detect::readings(&counters);
    let pick = readings
        .iter()
        .position(|r| cur.under_attack.contains(&r.label))
        .or_else(|| (0..readings.len()).max_by_key(|&i| readings[i].top.iter().map(|x| x.1).sum::<u64>()));
    let (title, srows): (String, Vec<Row<'_>>) = match pick.and_then(|i| readings.get(i)) {
        Some(r) => (
            format!(" top sources: {} ", r.label),
            r.top
                .iter()
                .take(usize::from(cols[0].height.saturating_sub(2)))
                .map(|(a, n)| Row::new(vec![a.to_string(), format!("{}/s", group(*n))]))
                .collect(),
        ),
        None => (" top sources ".to_string(), Vec::new()),
    };
    f.render_widget(
        Table::new(srows, [Constraint::Min(16), Constraint::Length(12)])
            .block(Block::default().borders(Borders::ALL).title(title)),
        cols[0],
    );
    let mut reasons: Vec<(&'static str, u64)> = DropReason::ALL
        .iter()
        .map(|r| {
            (
                r.as_str(),
                rate(tot.counters.dropped[r.index()], ptot.as_ref().map(|p| p.counters.dropped[r.index()]), secs),
            )
        })
        .filter(|x| x.1 > 0)
        .collect();
    reasons.sort_by_key(|x| std::cmp::Reverse(x.1));
    let rrows: Vec<Row<'_>> = reasons
        .iter()
        .take(usize::from(cols[1].height.saturating_sub(2)))
        .map(|(n, v)| Row::new(vec![n.to_string(), format!("{}/s", group(*v))]))
        .collect();
    f.render_widget(
        Table::new(rrows, [Constraint::Min(20), Constraint::Length(12)])
            .block(Block::default().borders(Borders::ALL).title(" drops by reason ")),
        cols[1],
    );

    // Footer: sessions, rings, events.
    let rx_full = rate(tot.rings.rx_ring_full, ptot.as_ref().map(|p| p.rings.rx_ring_full), secs);
    let fill_empty = rate(tot.rings.fill_ring_empty, ptot.as_ref().map(|p| p.rings.fill_ring_empty), secs);
    let foot = vec![
        Line::from(format!(
            "sessions {} of {}   rx {}/s   dropped {}/s",
            group(tot.table.live),
            group(tot.table.capacity),
            group(rate(tot.counters.rx_inbound, ptot.as_ref().map(|p| p.counters.rx_inbound), secs)),
            group(rate(tot.counters.dropped_total, ptot.as_ref().map(|p| p.counters.dropped_total), secs)),
        )),
        Line::from(format!(
            "ring stalls: rx full {}/s, fill empty {}/s   attack events {}   bans {}{}",
            group(rx_full),
            group(fill_empty),
            group(cur.events.events),
            group(cur.bans.bans_live),
            cur.banned.first().map(|b| format!(" (e.g. {} {}s)", b.addr, b.seconds_left)).unwrap_or_default()
        )),
    ];
    f.render_widget(Paragraph::new(foot), rows[3]);
}

/// The screen as text (the terminal's cells, row by row), for tests and `--once`.
pub fn render_text(cur: &Snapshot, prev: Option<&Snapshot>, width: u16, height: u16) -> String {
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height)).expect("a test terminal");
    let _ = t.draw(|f| draw(f, cur, prev));
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::stats::WorkerStats;

    #[test]
    fn fits_80_by_24_and_shows_the_attacked_target() {
        let targets = vec!["web".to_string(), "api".to_string()];
        let mut w = WorkerStats::new(0, &targets);
        let mk = |w: &WorkerStats, up: f64, attacked: Vec<String>| Snapshot {
            version: 1,
            pid: 1,
            started_unix: 0,
            uptime_secs: up,
            policy: "p".into(),
            reload: Default::default(),
            links: Default::default(),
            events: Default::default(),
            under_attack: attacked,
            samples: Default::default(),
            bans: Default::default(),
            banned: Vec::new(),
            sync: Default::default(),
            workers: vec![w.clone()],
        };
        let prev = mk(&w, 10.0, vec![]);
        w.counters.per_target[0].rx = 50_000;
        w.counters.per_target[0].dropped = 49_000;
        w.counters.per_target[0].class_ack_psh = 49_000;
        for _ in 0..49_000 {
            w.counters.drop(DropReason::AckNoSession);
        }
        let cur = mk(&w, 11.0, vec!["web".into()]);
        let text = render_text(&cur, Some(&prev), 80, 24);
        eprintln!("{text}");
        assert_eq!(text.lines().count(), 24);
        assert!(text.lines().all(|l| l.chars().count() == 80));
        assert!(text.contains("under attack: web"), "{text}");
        assert!(text.contains("ATTACK"), "{text}");
        assert!(text.contains("ack_psh 49,000"), "{text}");
        assert!(text.contains("ack_no_session"), "{text}");
    }
}
