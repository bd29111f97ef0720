//! The live console table, on a real terminal: sidekick runs in a detached tmux
//! session and the test reads the screen with `capture-pane`.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(30);

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

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "sk"]).stdout).into_owned()
    }

    fn running(&self) -> bool {
        self.tmux(&["has-session", "-t", "sk"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
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

#[test]
fn table_shows_every_backend_and_a_killed_one_as_down() {
    let tmux = Tmux::new();
    let mut backends: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("c{i}"))).collect();
    let urls: Vec<String> = backends.iter().map(Backend::url).collect();
    let port = free_port("127.0.0.1");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let command = format!(
        "{BIN} --address {addr} --health-duration 1s {} {}",
        urls[..2].join(","),
        urls[2..].join(",")
    );
    let started = tmux.tmux(&[
        "new-session",
        "-d",
        "-s",
        "sk",
        "-x",
        "200",
        "-y",
        "50",
        &command,
    ]);
    assert!(started.status.success(), "{started:?}");

    wait_for("four backends up", LIMIT, || {
        let screen = tmux.screen();
        urls.iter().all(|u| shows(&screen, u, "UP"))
    });
    let screen = tmux.screen();
    let header = screen
        .lines()
        .find(|l| l.starts_with("SITE"))
        .unwrap_or_else(|| panic!("no header:\n{screen}"));
    let mut at = 0;
    for column in [
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
    ] {
        let found = header[at..]
            .find(column)
            .unwrap_or_else(|| panic!("{column}: {header}"));
        at += found + column.len();
    }
    for (i, url) in urls.iter().enumerate() {
        let line = row(&screen, url).unwrap();
        let site = if i < 2 { "1" } else { "2" };
        assert_eq!(line.split_whitespace().next(), Some(site), "{line}");
    }

    // Traffic shows in CALLS and the latency columns.
    wait_for("serving", LIMIT, || {
        TcpStream::connect(addr).is_ok() && request(addr, "GET", "/x", &[], b"").status == 200
    });
    wait_for("one call counted", LIMIT, || {
        let screen = tmux.screen();
        urls[..2]
            .iter()
            .any(|u| row(&screen, u).is_some_and(|l| l.split_whitespace().nth(3) == Some("1")))
    });

    backends[1].kill();
    wait_for("killed backend shown down", LIMIT, || {
        let screen = tmux.screen();
        shows(&screen, &urls[1], "DOWN")
            && [0, 2, 3].iter().all(|&i| shows(&screen, &urls[i], "UP"))
    });

    // Ctrl-C stops sidekick gracefully and gives the terminal back.
    tmux.tmux(&["send-keys", "-t", "sk", "C-c"]);
    wait_for("sidekick stopped", LIMIT, || !tmux.running());
}

#[test]
fn no_table_when_stdout_is_not_a_terminal() {
    let b = Backend::start("nt");
    let port = free_port("127.0.0.1");
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args(["--address", &addr, "--health-duration", "1s", &b.url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("serving", LIMIT, || {
        TcpStream::connect(&addr).is_ok()
            && request(addr.parse().unwrap(), "GET", "/v1/health", &[], b"").status == 200
    });
    wait_for("a few health checks", LIMIT, || b.health_checks() >= 2);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}
