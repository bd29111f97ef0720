//! The live console table: when stdout is a terminal and no `--log`, `--trace` or
//! `--quiet` is given, a table of every backend refreshed twice a second on the
//! alternate screen. It runs on its own timer and reads the Pool's `Snapshot` and the
//! backends' counters, never anything on the request path. No raw mode: Ctrl-C stays
//! a SIGINT, which stops sidekick gracefully; the terminal is restored on the way out.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use actix::prelude::*;
use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::style::{Color, Print, ResetColor, SetForegroundColor};
use crossterm::terminal::{self, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::QueueableCommand;

use crate::config::Config;
use crate::observe::human;
use crate::pool::messages::{Snapshot, Status};
use crate::pool::Pool;

const REFRESH: Duration = Duration::from_millis(500);

pub const COLUMNS: [&str; 11] = [
    "SITE",
    "HOST",
    "STATUS",
    "CALLS",
    "FAILURES",
    "Rx",
    "Tx",
    "TOTAL DOWNTIME",
    "LAST DOWNTIME",
    "MIN LATENCY",
    "MAX LATENCY",
];

/// Whether the table is shown for this configuration and this stdout.
pub fn wanted(cfg: &Config) -> bool {
    !cfg.log && !cfg.quiet && cfg.trace.trace.is_none() && std::io::stdout().is_terminal()
}

/// Starts the table; dropping the guard gives the terminal back.
pub fn start(cfg: &Config, pool: Addr<Pool>) -> Option<Guard> {
    if !wanted(cfg) {
        return None;
    }
    let mut out = std::io::stdout();
    let _ = out.queue(EnterAlternateScreen).and_then(|o| o.queue(Hide));
    let _ = out.flush();
    Console { pool, size: None }.start();
    Some(Guard)
}

pub struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        let mut out = std::io::stdout();
        let _ = out
            .queue(ResetColor)
            .and_then(|o| o.queue(Show))
            .and_then(|o| o.queue(LeaveAlternateScreen));
        let _ = out.flush();
    }
}

struct Console {
    pool: Addr<Pool>,
    /// The terminal size last drawn at: a resize clears the screen once.
    size: Option<(u16, u16)>,
}

impl Actor for Console {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.refresh(ctx);
        ctx.run_interval(REFRESH, |act, ctx| act.refresh(ctx));
    }
}

impl Console {
    fn refresh(&mut self, ctx: &mut Context<Self>) {
        self.pool
            .send(Snapshot)
            .into_actor(self)
            .map(|status, act, _| {
                if let Ok(status) = status {
                    // A terminal that went away is not worth stopping sidekick for.
                    let _ = act.draw(&status);
                }
            })
            .spawn(ctx);
    }

    fn draw(&mut self, status: &Status) -> std::io::Result<()> {
        let (width, height) = terminal::size().unwrap_or((80, 24));
        let mut buf: Vec<u8> = Vec::new();
        if self.size != Some((width, height)) {
            buf.queue(Clear(ClearType::All))?;
            self.size = Some((width, height));
        }
        let up = status.backends.iter().filter(|b| b.up).count();
        let title = format!(
            "sidekick {}: {up} of {} backends up",
            env!("CARGO_PKG_VERSION"),
            status.backends.len()
        );
        let mut rows = vec![title.chars().map(|c| (c, None)).collect::<Vec<_>>()];
        rows.push(Vec::new());
        rows.extend(layout(&table(status)));
        for (y, row) in rows.iter().take(usize::from(height)).enumerate() {
            buf.queue(MoveTo(0, u16::try_from(y).unwrap_or(u16::MAX)))?;
            let mut color = None;
            for &(c, wanted) in row.iter().take(usize::from(width)) {
                if wanted != color {
                    match wanted {
                        Some(c) => buf.queue(SetForegroundColor(c))?,
                        None => buf.queue(ResetColor)?,
                    };
                    color = wanted;
                }
                buf.queue(Print(c))?;
            }
            if color.is_some() {
                buf.queue(ResetColor)?;
            }
            buf.queue(Clear(ClearType::UntilNewLine))?;
        }
        buf.queue(Clear(ClearType::FromCursorDown))?;
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)?;
        out.flush()
    }
}

/// One cell: its text and colour.
type Cell = (String, Option<Color>);

/// The header and one row per backend, as text.
fn table(status: &Status) -> Vec<Vec<Cell>> {
    let mut rows = vec![COLUMNS.iter().map(|c| (c.to_string(), None)).collect()];
    for b in &status.backends {
        let stats = &b.backend.stats;
        let (state, color) = if b.up {
            ("UP", Color::Green)
        } else {
            ("DOWN", Color::Red)
        };
        let latency = |d: Option<Duration>| d.map_or_else(|| "-".to_string(), human::duration);
        rows.push(vec![
            ((b.backend.site + 1).to_string(), None),
            (b.backend.name.clone(), None),
            (state.to_string(), Some(color)),
            (stats.calls.load(Relaxed).to_string(), None),
            (stats.failures.load(Relaxed).to_string(), None),
            (human::size(stats.rx_bytes.load(Relaxed)), None),
            (human::size(stats.tx_bytes.load(Relaxed)), None),
            (human::seconds(b.downtime), None),
            (human::seconds(b.last_downtime), None),
            (latency(stats.latency.min()), None),
            (latency(stats.latency.max()), None),
        ]);
    }
    rows
}

/// Pads every column to its widest cell, two spaces apart, as coloured characters.
fn layout(table: &[Vec<Cell>]) -> Vec<Vec<(char, Option<Color>)>> {
    let mut widths = [0usize; COLUMNS.len()];
    for row in table {
        for (w, (text, _)) in widths.iter_mut().zip(row) {
            *w = (*w).max(text.chars().count());
        }
    }
    table
        .iter()
        .map(|row| {
            let mut line = Vec::new();
            for (i, ((text, color), w)) in row.iter().zip(widths).enumerate() {
                if i > 0 {
                    line.extend([(' ', None), (' ', None)]);
                }
                line.extend(text.chars().map(|c| (c, *color)));
                let pad = w.saturating_sub(text.chars().count());
                line.extend(std::iter::repeat((' ', None)).take(pad));
            }
            while line.last().is_some_and(|(c, _)| *c == ' ') {
                line.pop();
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::endpoints::parse_endpoint;
    use crate::pool::backend::Backend;
    use crate::pool::messages::BackendStatus;
    use std::sync::Arc;

    #[test]
    fn every_column_and_a_row_per_backend() {
        let backend = |i: usize, up: bool| BackendStatus {
            backend: Arc::new(Backend::new(
                i,
                i / 2,
                parse_endpoint(&format!("http://minio{i}:9000")).unwrap(),
                String::new(),
            )),
            up,
            downtime: Duration::from_secs(75),
            last_downtime: Duration::from_secs(5),
        };
        let status = Status {
            backends: vec![backend(0, true), backend(1, false), backend(2, true)],
            failovers: 0,
        };
        status.backends[0].backend.stats.latency.record(2_000_000);
        status.backends[0]
            .backend
            .stats
            .tx_bytes
            .store(2048, Relaxed);
        let lines: Vec<String> = layout(&table(&status))
            .iter()
            .map(|l| l.iter().map(|(c, _)| c).collect())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[0],
            "SITE  HOST                STATUS  CALLS  FAILURES  Rx   Tx       TOTAL DOWNTIME  LAST DOWNTIME  MIN LATENCY  MAX LATENCY"
        );
        assert!(
            lines[1].starts_with(
                "1     http://minio0:9000  UP      0      0         0 B  2.0 KiB  1m15s"
            ),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with("2.0ms        2.0ms"), "{}", lines[1]);
        assert!(lines[2].contains("  DOWN  "), "{}", lines[2]);
        assert!(lines[3].starts_with("2 "), "{}", lines[3]);
    }
}
