//! The real sidekick binary as a child process that dies with the test, and the
//! waiting and port helpers every test uses.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{request, Response};

pub const BIN: &str = env!("CARGO_BIN_EXE_sidekick");

/// Polls `cond` until it holds or `limit` passes; the pause only paces the polling.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    wait_until(what, limit, || cond().then_some(()).ok_or_else(String::new));
}

/// Polls `poll` until it gives a value or `limit` passes; a timeout fails the test
/// with the last reason `poll` gave. The pause only paces the polling.
pub fn wait_until<T>(
    what: &str,
    limit: Duration,
    mut poll: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match poll() {
            Ok(value) => return value,
            Err(why) => assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{why}"
            ),
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Kills the child if the test ends before it does.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` expecting it to exit by itself within 20 s (one still running is
/// killed and fails the test: it would have served); its code, stdout and stderr.
pub fn exits(mut cmd: Command) -> (Option<i32>, String, String) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let mut guard = ChildGuard(child);
    let code = wait_until(
        "the command to exit",
        Duration::from_secs(20),
        || match guard.0.try_wait().expect("wait") {
            Some(status) => Ok(status.code()),
            None => Err(format!("{cmd:?} still runs")),
        },
    );
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut stdout) = guard.0.stdout.take() {
        stdout.read_to_string(&mut out).expect("read stdout");
    }
    if let Some(mut stderr) = guard.0.stderr.take() {
        stderr.read_to_string(&mut err).expect("read stderr");
    }
    (code, out, err)
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
    /// Every stderr line so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Every stdout line so far (the trace).
    pub out: Arc<Mutex<Vec<String>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Sidekick {
    /// Starts sidekick on a kernel-chosen port with `args` and waits until it listens.
    pub fn start(args: &[&str]) -> Sidekick {
        let mut cmd = Command::new(BIN);
        cmd.args(["--address", "127.0.0.1:0", "--log"]).args(args);
        Self::spawn(cmd)
    }

    /// Starts sidekick like `start`, listening on `address` (port 0: the kernel picks).
    pub fn start_on(address: &str, args: &[&str]) -> Sidekick {
        let mut cmd = Command::new(BIN);
        cmd.args(["--address", address, "--log"]).args(args);
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
    /// root: see `require_private_hosts`), so that test names resolve to test addresses.
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
        use rustix::process::{setrlimit, Resource, Rlimit};
        let limit = Rlimit {
            current: Some(soft),
            maximum: Some(hard),
        };
        // SAFETY: the closure runs between fork and exec and only makes the setrlimit
        // system call, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || Ok(setrlimit(Resource::Nofile, limit)?));
        }
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Sidekick {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sidekick");
        let out = Arc::new(Mutex::new(Vec::new()));
        let stdout = read_lines(child.stdout.take().expect("stdout"), out.clone(), |_| {});
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = read_lines(
            child.stderr.take().expect("stderr"),
            log.clone(),
            move |line| {
                if let Some(addr) = line.strip_prefix("sidekick listening on ") {
                    let _ = tx.send(addr.parse::<SocketAddr>().expect("address"));
                }
            },
        );
        let mut sk = Sidekick {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
            out,
            readers: vec![stderr, stdout],
        };
        sk.addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("sidekick did not start: {:?}", sk.log.lock().unwrap()));
        sk
    }

    /// Starts sidekick as a sidecar runs: no flag but `args` (no `--log`), stdout and
    /// stderr both pipes (no terminal) whose lines land in `out` and `log`. It listens
    /// on a port picked here, and is up once that port accepts.
    pub fn start_piped(args: &[&str]) -> Sidekick {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")));
        let mut child = Command::new(BIN)
            .arg("--address")
            .arg(addr.to_string())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sidekick");
        let (log, out) = (Arc::default(), Arc::default());
        let readers = vec![
            read_lines(
                child.stderr.take().expect("stderr"),
                Arc::clone(&log),
                |_| {},
            ),
            read_lines(
                child.stdout.take().expect("stdout"),
                Arc::clone(&out),
                |_| {},
            ),
        ];
        let mut sk = Sidekick {
            child,
            addr,
            log,
            out,
            readers,
        };
        wait_for("sidekick listening", Duration::from_secs(20), || {
            assert!(sk.child.try_wait().expect("wait").is_none(), "{:?}", sk.log);
            TcpStream::connect(addr).is_ok()
        });
        sk
    }

    /// SIGTERM, then every line sidekick wrote: (stdout, stderr) once both are closed.
    pub fn stop(mut self) -> (Vec<String>, Vec<String>) {
        self.signal("TERM");
        assert_eq!(self.wait_exit(Duration::from_secs(40)), Some(0));
        for reader in self.readers.drain(..) {
            reader.join().expect("reader");
        }
        let out = self.out.lock().unwrap().clone();
        let log = self.log.lock().unwrap().clone();
        (out, log)
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
        wait_until("sidekick to exit", limit, || {
            match self.child.try_wait().expect("wait") {
                Some(status) => Ok(status.code()),
                None => Err(String::new()),
            }
        })
    }

    /// The process has not exited.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[], b"")
    }

    pub fn health(&self) -> u16 {
        self.get("/v1/health").status
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.proc_status_kib("VmHWM:")
    }

    /// Resident memory now (VmRSS) in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.proc_status_kib("VmRSS:")
    }

    fn proc_status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/{}/status", self.pid()))
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

    /// Whether a line on stdout (the trace) satisfies `line`.
    pub fn out_has(&self, line: impl Fn(&str) -> bool) -> bool {
        self.out.lock().unwrap().iter().any(|l| line(l))
    }
}

/// Collects the lines of `stream` into `lines`, showing each to `seen` first.
fn read_lines(
    stream: impl Read + Send + 'static,
    lines: Arc<Mutex<Vec<String>>>,
    mut seen: impl FnMut(&str) + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            seen(&line);
            lines.lock().unwrap().push(line);
        }
    })
}

impl Drop for Sidekick {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
