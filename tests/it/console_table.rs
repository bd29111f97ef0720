//! The live console table, on a real terminal: sidekick runs in a detached tmux
//! session of a given size and the test reads the screen with `capture-pane`.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Every column header the table may show, wide and narrow.
const HEADERS: &[&str] = &[
    "SITE",
    "HOST",
    "STATUS",
    "CALLS",
    "FAILURES",
    "FAILS",
    "Rx",
    "Tx",
    "TOTAL DOWNTIME",
    "DOWNTIME",
    "LAST DOWNTIME",
    "LAST DOWN",
    "MIN LATENCY",
    "MIN LAT",
    "MAX LATENCY",
    "MAX LAT",
    "REASON",
];

/// A tmux server of its own (`-L`), so parallel tests never share sessions.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        static N: AtomicUsize = AtomicUsize::new(0);
        require_tmux();
        let socket = format!(
            "sidekick-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, SeqCst)
        );
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux")
    }

    /// Runs `command` in a session `width` columns wide.
    fn run(&self, width: u16, command: &str) {
        let width = width.to_string();
        let started = self.tmux(&[
            "new-session",
            "-d",
            "-s",
            "sk",
            "-x",
            &width,
            "-y",
            "50",
            command,
        ]);
        assert!(started.status.success(), "{started:?}");
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "sk"]).stdout).into_owned()
    }

    fn running(&self) -> bool {
        self.tmux(&["has-session", "-t", "sk"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Ending the server only hangs the pane up, and SIGHUP makes sidekick reload, not
        // stop: kill the pane's process group first (it is gone already after a Ctrl-C).
        let pid = self.tmux(&["display-message", "-p", "-t", "sk", "#{pane_pid}"]);
        let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
        if !pid.is_empty() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The screen line showing `url`.
fn row<'a>(screen: &'a str, url: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(url))
}

fn shows(screen: &str, url: &str, status: &str) -> bool {
    row(screen, url).is_some_and(|l| l.split_whitespace().nth(2) == Some(status))
}

/// The cells of a table line: columns are two spaces or more apart, and no cell
/// holds two spaces in a row.
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

fn header(screen: &str) -> &str {
    screen
        .lines()
        .find(|l| l.starts_with("SITE"))
        .unwrap_or_else(|| panic!("no header:\n{screen}"))
}

/// Four backends on two sites, and sidekick showing them in a `width`-column tmux.
struct Setup {
    tmux: Tmux,
    backends: Vec<Backend>,
    urls: Vec<String>,
    addr: SocketAddr,
}

impl Setup {
    fn start(width: u16) -> Setup {
        let tmux = Tmux::new();
        let backends: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("c{i}"))).collect();
        let urls: Vec<String> = backends.iter().map(Backend::url).collect();
        let port = free_port("127.0.0.1");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        tmux.run(
            width,
            &format!(
                "{BIN} --address {addr} --health-duration 1s {} {}",
                urls[..2].join(","),
                urls[2..].join(",")
            ),
        );
        let setup = Setup {
            tmux,
            backends,
            urls,
            addr,
        };
        wait_for("four backends up", LIMIT, || {
            let screen = setup.tmux.screen();
            setup.urls.iter().all(|u| shows(&screen, u, "UP"))
        });
        setup
    }

    /// The title shows where sidekick listens and how many backends are up.
    fn title_says(&self, up: &str) -> bool {
        let screen = self.tmux.screen();
        let title = screen.lines().next().unwrap_or_default();
        title.contains(&format!("listening on http://{}", self.addr))
            && title.contains(&format!("{up} backends up"))
    }

    fn resize(&self, width: usize) {
        let width = width.to_string();
        let done = self.tmux.tmux(&["resize-window", "-t", "sk", "-x", &width]);
        assert!(done.status.success(), "{done:?}");
    }

    /// Ctrl-C stops sidekick gracefully and gives the terminal back.
    fn stop(&self) {
        self.tmux.tmux(&["send-keys", "-t", "sk", "C-c"]);
        wait_for("sidekick stopped", LIMIT, || !self.tmux.running());
    }
}

#[test]
fn table_at_200_columns_shows_every_column_and_why_a_backend_is_down() {
    let mut s = Setup::start(200);
    assert!(s.title_says("4/4"), "{}", s.tmux.screen());
    let screen = s.tmux.screen();
    let head = header(&screen);
    assert_eq!(
        cells(head),
        [
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
            "MAX LATENCY"
        ],
        "{head}"
    );
    for (i, url) in s.urls.iter().enumerate() {
        let line = row(&screen, url).unwrap();
        let site = if i < 2 { "1" } else { "2" };
        assert_eq!(line.split_whitespace().next(), Some(site), "{line}");
    }

    // Traffic shows in CALLS and the latency columns.
    wait_for("serving", LIMIT, || {
        TcpStream::connect(s.addr).is_ok() && request(s.addr, "GET", "/x", &[], b"").status == 200
    });
    wait_for("one call counted", LIMIT, || {
        let screen = s.tmux.screen();
        s.urls[..2]
            .iter()
            .any(|u| row(&screen, u).is_some_and(|l| l.split_whitespace().nth(3) == Some("1")))
    });

    s.backends[1].kill();
    wait_for("killed backend shown down, with its reason", LIMIT, || {
        let screen = s.tmux.screen();
        shows(&screen, &s.urls[1], "DOWN")
            && row(&screen, &s.urls[1]).is_some_and(|l| l.ends_with("Connection refused"))
            && [0, 2, 3].iter().all(|&i| shows(&screen, &s.urls[i], "UP"))
    });
    let screen = s.tmux.screen();
    assert!(header(&screen).ends_with("  REASON"), "{screen}");
    for i in [0, 2, 3] {
        let line = row(&screen, &s.urls[i]).unwrap();
        assert_eq!(
            cells(line).len(),
            cells(header(&screen)).len() - 1,
            "{line}"
        );
    }
    assert!(s.title_says("3/4"), "{screen}");
    s.stop();
}

/// What is wrong with the table on the screen, if anything: a header that is not a
/// whole column name (the terminal cut it), a row without a cell under each header,
/// or a DOWN row without its reason. Returns how many columns it shows.
fn unfit(screen: &str, urls: &[String]) -> Result<usize, String> {
    let head = cells(header(screen));
    if head.len() < 3 || head[..3] != ["SITE", "HOST", "STATUS"] {
        return Err(format!("first columns: {head:?}"));
    }
    if let Some(cut) = head.iter().find(|h| !HEADERS.contains(h)) {
        return Err(format!("cut column {cut:?}"));
    }
    for url in urls {
        let line = row(screen, url).ok_or(format!("no row for {url}"))?;
        let n = cells(line).len();
        let down = shows(screen, url, "DOWN");
        let reason = head.last() == Some(&"REASON");
        let expected = if reason && !down {
            head.len() - 1
        } else {
            head.len()
        };
        if n != expected || down && !reason {
            return Err(format!("{n} cells, {} headers: {line}", head.len()));
        }
    }
    Ok(head.len())
}

/// Polls until the table fits a `width`-column screen (a resize is drawn within half
/// a second), or fails with what is wrong with it.
fn fits(s: &Setup, width: usize) -> usize {
    wait_until(&format!("the table to fit {width} columns"), LIMIT, || {
        let screen = s.tmux.screen();
        unfit(&screen, &s.urls).map_err(|e| format!("{e}\n{screen}"))
    })
}

#[test]
fn table_fits_80_columns_with_whole_columns() {
    let mut s = Setup::start(80);
    assert!(s.title_says("4/4"), "{}", s.tmux.screen());
    let shown = fits(&s, 80);
    assert!(
        shown < 11,
        "80 columns cannot hold all 11:\n{}",
        s.tmux.screen()
    );
    // The table follows resizes, whole columns at every width.
    for width in [72, 96, 80] {
        s.resize(width);
        fits(&s, width);
    }

    s.backends[1].kill();
    wait_for("killed backend shown down, with a reason", LIMIT, || {
        let screen = s.tmux.screen();
        let reason = row(&screen, &s.urls[1])
            .filter(|_| shows(&screen, &s.urls[1], "DOWN"))
            .and_then(|l| cells(l).last().copied())
            .map(|c| c.trim_end_matches('…'));
        reason.is_some_and(|r| !r.is_empty() && "Connection refused".starts_with(r))
    });
    fits(&s, 80);
    assert!(header(&s.tmux.screen()).ends_with("REASON"));
    assert!(s.title_says("3/4"), "{}", s.tmux.screen());

    for width in [64, 120] {
        s.resize(width);
        fits(&s, width);
    }
    s.stop();
}

#[test]
fn no_table_when_stdout_is_not_a_terminal() {
    let b = Backend::start("nt");
    let sk = Sidekick::start_piped(&["--health-duration", "1s", &b.url()]);
    wait_for("serving", LIMIT, || sk.health() == 200);
    wait_for("a few health checks", LIMIT, || b.health_checks() >= 2);
    let (out, _) = sk.stop();
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn the_cache_stores_nodes_are_drawn_under_the_backends() {
    let tmux = Tmux::new();
    let backend = Backend::start("origin");
    let store = Backend::start("store");
    let port = free_port("127.0.0.1");
    tmux.run(
        120,
        &format!(
            "{BIN} --address 127.0.0.1:{port} --health-duration 1s --cache-endpoint {} \
             --cache-bucket b --cache-access-key k --cache-secret-key s {}",
            store.url(),
            backend.url()
        ),
    );
    let node = format!("cache node {}", store.url());
    wait_for("the cache node up in the table", LIMIT, || {
        let screen = tmux.screen();
        screen.contains("cache store: 1/1 nodes up")
            && row(&screen, &node).is_some_and(|l| l.contains(" UP "))
    });
    drop(store);
    wait_for("the cache node down in the table", LIMIT, || {
        let screen = tmux.screen();
        screen.contains("cache store: 0/1 nodes up")
            && row(&screen, &node).is_some_and(|l| l.contains(" DOWN "))
    });
    // The backends' count leaves the cache's nodes out.
    let screen = tmux.screen();
    let title = screen.lines().next().unwrap_or_default();
    assert!(title.contains("1/1 backends up"), "{screen}");
}
