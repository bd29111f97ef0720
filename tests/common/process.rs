//! The real sidekick binary as a child process that dies with the test, and the
//! waiting and port helpers every test uses.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{request, Response};

pub const BIN: &str = env!("CARGO_BIN_EXE_sidekick");

/// Polls `cond` until it holds or `limit` passes; the pause only paces the polling.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A port free on `ip` right now, for processes that must be told their port
/// (the rest bind port 0 and report it).
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Sidekick {
    child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Lines on stdout (the trace).
    pub out: Arc<Mutex<Vec<String>>>,
}

impl Sidekick {
    /// Starts sidekick on a kernel-chosen port with `args` and waits until it listens.
    pub fn start(args: &[&str]) -> Sidekick {
        let mut cmd = Command::new(BIN);
        cmd.args(["--address", "127.0.0.1:0", "--log"]).args(args);
        Self::spawn(cmd)
    }

    /// Starts sidekick like `start`, with `env` added to its environment.
    pub fn start_with_env(env: &[(&str, &str)], args: &[&str]) -> Sidekick {
        let mut cmd = Command::new(BIN);
        cmd.envs(env.iter().copied())
            .args(["--address", "127.0.0.1:0", "--log"])
            .args(args);
        Self::spawn(cmd)
    }

    /// Starts sidekick with its own `/etc/hosts` (a private mount namespace; needs
    /// root), so that test names resolve to test addresses.
    pub fn start_with_hosts(hosts: &std::path::Path, args: &[&str]) -> Sidekick {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
        ])
        .arg(hosts)
        .arg(BIN)
        .args(["--address", "127.0.0.1:0", "--log"])
        .args(args);
        Self::spawn(cmd)
    }

    /// Starts sidekick like `start`, with its open-file limit set to `soft`:`hard`.
    pub fn start_with_nofile(soft: u64, hard: u64, args: &[&str]) -> Sidekick {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(BIN);
        cmd.args(["--address", "127.0.0.1:0", "--log"]).args(args);
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: the closure runs between fork and exec and only calls setrlimit,
        // which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Sidekick {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sidekick");
        let stdout = child.stdout.take().expect("stdout");
        let out = Arc::new(Mutex::new(Vec::new()));
        let lines = out.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("sidekick listening on ") {
                    let _ = tx.send(addr.parse::<SocketAddr>().expect("address"));
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("sidekick did not start: {:?}", log.lock().unwrap()));
        Sidekick {
            child,
            addr,
            log,
            out,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "sidekick did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[], b"")
    }

    pub fn health(&self) -> u16 {
        self.get("/v1/health").status
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// Waits until `n` backends have been logged up.
    pub fn wait_up(&self, n: usize) {
        wait_for("backends up", Duration::from_secs(30), || {
            let log = self.log.lock().unwrap();
            log.iter().filter(|l| l.contains(" is up")).count() >= n
        });
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

impl Drop for Sidekick {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
