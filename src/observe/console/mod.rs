//! The live console table: when stdout is a terminal and no `--log`, `--trace` or
//! `--quiet` is given, a table of every backend refreshed twice a second on the
//! alternate screen. It runs on its own timer and reads the Pool's `Snapshot` and the
//! backends' counters, never anything on the request path. No raw mode: Ctrl-C stays
//! a SIGINT, which stops sidekick gracefully; the terminal is restored on the way out.
//! The title says where sidekick listens and how many backends are up; the columns
//! and how they fit the terminal are `table.rs`.

mod table;

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::style::{Color, Print, ResetColor, SetForegroundColor};
use crossterm::terminal::{self, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::QueueableCommand;

use crate::config::Config;
use crate::observe::console::table::Line;
use crate::pool::messages::{Snapshot, Status};
use crate::pool::Pool;

const REFRESH: Duration = Duration::from_millis(500);

/// Whether the table is shown for this configuration and this stdout.
pub fn wanted(cfg: &Config) -> bool {
    !cfg.log && !cfg.quiet && cfg.trace.trace.is_none() && std::io::stdout().is_terminal()
}

/// Starts the table for a sidekick listening on `listening`; dropping the guard gives
/// the terminal back.
pub fn start(
    cfg: &Config,
    pool: Addr<Pool>,
    cache: Option<Addr<Pool>>,
    listening: &[SocketAddr],
) -> Option<Guard> {
    if !wanted(cfg) {
        return None;
    }
    let mut out = std::io::stdout();
    let _ = out.queue(EnterAlternateScreen).and_then(|o| o.queue(Hide));
    let _ = out.flush();
    let scheme = if cfg.tls.server.is_some() {
        "https"
    } else {
        "http"
    };
    let listening = listening
        .iter()
        .map(|a| format!("{scheme}://{a}"))
        .collect::<Vec<_>>()
        .join(", ");
    Console {
        pool,
        cache,
        cache_status: None,
        listening,
        sites: cfg.sites.len(),
        size: None,
    }
    .start();
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
    /// The cache store's nodes, drawn under the backends, and their last state.
    cache: Option<Addr<Pool>>,
    cache_status: Option<Status>,
    /// Where clients reach sidekick, for the title.
    listening: String,
    sites: usize,
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
        if let Some(cache) = &self.cache {
            cache
                .send(Snapshot)
                .into_actor(self)
                .map(|status, act, _| act.cache_status = status.ok())
                .spawn(ctx);
        }
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
        let mut rows = vec![self.title(status, usize::from(width)), Vec::new()];
        rows.extend(table::fit(
            &table::rows(status),
            usize::from(width),
            self.sites,
        ));
        if let Some(cache) = &self.cache_status {
            let up = cache.backends.iter().filter(|b| b.up).count();
            let total = cache.backends.len();
            let (text, color) = match up {
                0 => (
                    format!("cache store: 0/{total} nodes up: reads go to the origin only"),
                    Color::Red,
                ),
                n if n < total => (format!("cache store: {n}/{total} nodes up"), Color::Yellow),
                n => (format!("cache store: {n}/{total} nodes up"), Color::Green),
            };
            rows.push(Vec::new());
            rows.push(text.chars().map(|c| (c, Some(color))).collect());
            rows.extend(table::fit(&table::rows(cache), usize::from(width), 1));
        }
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

    /// `sidekick 1.0.0  3/4 backends up  listening on http://[::]:8080`: the count
    /// first; on a narrow terminal the addresses lose their words, then go.
    fn title(&self, status: &Status, width: usize) -> Line {
        let (up, total) = (
            status.backends.iter().filter(|b| b.up).count(),
            status.backends.len(),
        );
        let (count, color) = match up {
            0 => (
                format!("0/{total} backends up: requests get 502"),
                Color::Red,
            ),
            n if n < total => (format!("{n}/{total} backends up"), Color::Yellow),
            n => (format!("{n}/{total} backends up"), Color::Green),
        };
        let name = format!("sidekick {}  ", env!("CARGO_PKG_VERSION"));
        let used = name.chars().count() + count.chars().count();
        let mut line: Line = name.chars().map(|c| (c, None)).collect();
        line.extend(count.chars().map(|c| (c, Some(color))));
        let fits = |s: &String| used + s.chars().count() <= width;
        let place = [
            format!("  listening on {}", self.listening),
            format!("  {}", self.listening),
        ]
        .into_iter()
        .find(fits);
        line.extend(place.unwrap_or_default().chars().map(|c| (c, None)));
        line
    }
}
