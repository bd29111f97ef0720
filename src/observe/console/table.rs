//! The console table's cells, and how they fit a terminal's width: when the whole
//! table is wider than the terminal, the headers narrow first, then the least useful
//! columns go, one at a time; a column is shown whole or not at all. REASON (why a
//! backend is down) is there only while one is, and is the one column that is
//! shortened, with `…`, to the room that is left.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crossterm::style::Color;

use crate::observe::human;
use crate::pool::messages::Status;

/// One column: its header, a narrower one for tight terminals, and when it goes as
/// room runs out (1 first; 0 never).
struct Column {
    name: &'static str,
    narrow: &'static str,
    goes: u8,
}

const fn column(name: &'static str, narrow: &'static str, goes: u8) -> Column {
    Column { name, narrow, goes }
}

const COLUMNS: [Column; 12] = [
    column("SITE", "SITE", 9),
    column("HOST", "HOST", 0),
    column("STATUS", "STATUS", 0),
    column("CALLS", "CALLS", 8),
    column("FAILURES", "FAILS", 7),
    column("Rx", "Rx", 2),
    column("Tx", "Tx", 5),
    column("TOTAL DOWNTIME", "DOWNTIME", 6),
    column("LAST DOWNTIME", "LAST DOWN", 3),
    column("MIN LATENCY", "MIN LAT", 1),
    column("MAX LATENCY", "MAX LAT", 4),
    column("REASON", "REASON", 0),
];

const SITE: usize = 0;
const REASON: usize = COLUMNS.len() - 1;
/// REASON's share when columns compete for room; it takes more if there is more.
const REASON_ROOM: usize = 20;
/// Narrower than this, a reason says nothing.
const REASON_LEAST: usize = 8;
const GAP: usize = 2;

/// One cell: its text and colour.
pub type Cell = (String, Option<Color>);

/// A line of coloured characters.
pub type Line = Vec<(char, Option<Color>)>;

/// One row per backend, a cell per column (REASON empty while up).
pub fn rows(status: &Status) -> Vec<Vec<Cell>> {
    let latency = |d: Option<Duration>| d.map_or_else(|| "-".to_string(), human::duration);
    status
        .backends
        .iter()
        .map(|b| {
            let stats = &b.backend.stats;
            let (state, color) = if b.up {
                ("UP", Color::Green)
            } else {
                ("DOWN", Color::Red)
            };
            vec![
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
                (
                    b.reason.as_deref().map(human::reason).unwrap_or_default(),
                    None,
                ),
            ]
        })
        .collect()
}

/// The header and `rows` laid out within `width` columns of text; `sites` is how
/// many sites there are (with one, SITE is the first column to go).
pub fn fit(rows: &[Vec<Cell>], width: usize, sites: usize) -> Vec<Line> {
    let chars = |s: &str| s.chars().count();
    let cells = |c: usize| {
        rows.iter()
            .map(move |r| r.get(c).map_or(0, |(t, _)| chars(t)))
    };
    let widest = |c: usize, narrow: bool| {
        let header = if narrow {
            COLUMNS[c].narrow
        } else {
            COLUMNS[c].name
        };
        cells(c).fold(chars(header), usize::max)
    };
    let mut shown = [true; COLUMNS.len()];
    shown[REASON] = cells(REASON).any(|w| w > 0);
    let mut order: Vec<usize> = (0..COLUMNS.len())
        .filter(|&c| COLUMNS[c].goes > 0)
        .collect();
    order.sort_by_key(|&c| {
        if c == SITE && sites <= 1 {
            0
        } else {
            COLUMNS[c].goes
        }
    });
    let room = |shown: &[bool], narrow: bool| -> usize {
        let used: Vec<usize> = (0..COLUMNS.len())
            .filter(|&c| shown[c])
            .map(|c| match c {
                REASON => widest(c, narrow).min(REASON_ROOM),
                _ => widest(c, narrow),
            })
            .collect();
        used.iter().sum::<usize>() + GAP * used.len().saturating_sub(1)
    };
    let mut narrow = false;
    let mut going = order.into_iter();
    while room(&shown, narrow) > width {
        if !narrow {
            narrow = true;
        } else if let Some(c) = going.next() {
            shown[c] = false;
        } else {
            break;
        }
    }
    let mut widths: Vec<usize> = (0..COLUMNS.len()).map(|c| widest(c, narrow)).collect();
    if shown[REASON] {
        let others = (0..REASON)
            .filter(|&c| shown[c])
            .map(|c| widths[c] + GAP)
            .sum::<usize>();
        widths[REASON] = widths[REASON].min(width.saturating_sub(others));
        shown[REASON] = widths[REASON] >= REASON_LEAST;
    }
    let header: Vec<Cell> = COLUMNS
        .iter()
        .map(|c| ((if narrow { c.narrow } else { c.name }).to_string(), None))
        .collect();
    std::iter::once(&header)
        .chain(rows)
        .map(|row| line(row, &shown, &widths))
        .collect()
}

/// The shown cells of one row, padded to their column's width, `GAP` apart.
fn line(row: &[Cell], shown: &[bool], widths: &[usize]) -> Line {
    let mut line = Vec::new();
    for (c, (text, color)) in row.iter().enumerate().filter(|(c, _)| shown[*c]) {
        if !line.is_empty() {
            line.extend(std::iter::repeat((' ', None)).take(GAP));
        }
        let text = human::shorten(text, widths[c]);
        let pad = widths[c].saturating_sub(text.chars().count());
        line.extend(text.chars().map(|ch| (ch, *color)));
        line.extend(std::iter::repeat((' ', None)).take(pad));
    }
    while line.last().is_some_and(|(c, _)| *c == ' ') {
        line.pop();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::endpoints::parse_endpoint;
    use crate::pool::backend::Backend;
    use crate::pool::messages::BackendStatus;
    use std::sync::Arc;

    fn status(down_reason: Option<&str>) -> Status {
        let backend = |i: usize, up: bool| BackendStatus {
            backend: Arc::new(Backend::new(
                i,
                i / 2,
                parse_endpoint(&format!("http://minio{i}:9000")).unwrap(),
                String::new(),
            )),
            up,
            reason: (!up).then(|| down_reason.unwrap_or_default().to_string()),
            downtime: Duration::from_secs(75),
            last_downtime: Duration::from_secs(5),
        };
        let up1 = down_reason.is_none();
        let status = Status {
            backends: vec![backend(0, true), backend(1, up1), backend(2, true)],
            failovers: 0,
        };
        status.backends[0].backend.stats.latency.record(2_000_000);
        status.backends[0]
            .backend
            .stats
            .tx_bytes
            .store(2048, Relaxed);
        status
    }

    fn text(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| l.iter().map(|(c, _)| c).collect())
            .collect()
    }

    /// The header's column names (two spaces or more apart).
    fn headers(line: &str) -> Vec<&str> {
        line.split("  ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }

    #[test]
    fn wide_terminal_shows_every_column() {
        let lines = text(&fit(&rows(&status(None)), 200, 2));
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
        assert!(lines[3].starts_with("2 "), "{}", lines[3]);
    }

    #[test]
    fn narrow_terminal_narrows_then_drops_columns_whole() {
        for width in [40, 60, 80, 100, 120] {
            let lines = text(&fit(&rows(&status(None)), width, 2));
            for l in &lines {
                assert!(l.chars().count() <= width, "{width}: {l}");
            }
            let names = headers(&lines[0]);
            for name in &names {
                assert!(
                    COLUMNS.iter().any(|c| c.name == *name || c.narrow == *name),
                    "{width}: {name} in {}",
                    lines[0]
                );
            }
            assert_eq!(names[..3], ["SITE", "HOST", "STATUS"], "{width}");
            // Every row has a cell under every header.
            for l in &lines[1..] {
                assert_eq!(headers(l).len(), names.len(), "{width}: {l}");
            }
        }
        let at80 = text(&fit(&rows(&status(None)), 80, 2));
        assert_eq!(
            headers(&at80[0]),
            ["SITE", "HOST", "STATUS", "CALLS", "FAILS", "Tx", "DOWNTIME", "MAX LAT"]
        );
        // One site: SITE goes first.
        let one = text(&fit(&rows(&status(None)), 80, 1));
        assert!(headers(&one[0]).contains(&"LAST DOWN"), "{}", one[0]);
        assert!(!headers(&one[0]).contains(&"SITE"), "{}", one[0]);
    }

    #[test]
    fn a_down_row_shows_its_reason_shortened_to_the_room_left() {
        let why = "health check failed: cannot connect: Connection refused (os error 111)";
        let wide = text(&fit(&rows(&status(Some(why))), 200, 2));
        assert!(wide[0].ends_with("REASON"), "{}", wide[0]);
        assert!(
            wide[2].contains("DOWN") && wide[2].ends_with("Connection refused"),
            "{}",
            wide[2]
        );
        let at80 = text(&fit(&rows(&status(Some(why))), 80, 2));
        assert!(at80.iter().all(|l| l.chars().count() <= 80), "{at80:#?}");
        assert!(at80[2].ends_with("Connection refused"), "{}", at80[2]);
        let tight = text(&fit(&rows(&status(Some(why))), 44, 2));
        assert!(tight.iter().all(|l| l.chars().count() <= 44), "{tight:#?}");
        assert!(tight[2].ends_with("Connection refu…"), "{}", tight[2]);
        // The UP rows have no reason.
        assert!(tight[1].ends_with("UP"), "{}", tight[1]);
    }
}
