//! Real S3 through sidekick: boto3 against a four-node Garage cluster (replication
//! factor 3, SigV4 verified by the servers, each node's admin `/health` as its
//! readiness), with concurrent load while one node is SIGKILLed and restarted.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::garage::{Garage, REGION};
use crate::common::*;

/// sidekick in front of every node, checking each node's admin `/health`.
fn sidekick_for(g: &Garage) -> Sidekick {
    let sk = Sidekick::start(&[
        "--health-port",
        &g.admin_port.to_string(),
        "--health-path",
        "/health",
        "--health-duration",
        "500ms",
        &g.site(),
    ]);
    sk.wait_up(g.len());
    sk
}

fn script(name: &str, sk: &Sidekick, g: &Garage) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(format!("{}/tests/{name}", env!("CARGO_MANIFEST_DIR")))
        .arg(format!("http://{}", sk.addr))
        .args([&g.access_key, &g.secret_key, REGION, &g.bucket]);
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The value of `name{endpoint="url",...}` in a scrape of sidekick's metrics.
fn metric(sk: &Sidekick, name: &str, url: &str) -> f64 {
    let res = sk.get("/.prometheus/metrics");
    assert_eq!(res.status, 200);
    sample(&res.text(), name, url)
        .unwrap_or_else(|| panic!("no {name}{{endpoint=\"{url}\"}} in the scrape"))
}

/// The load script, running until told to stop; killed if the test fails first.
struct Workload {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<thread::JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
}

impl Workload {
    fn start(mut cmd: Command) -> Workload {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run python3");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (lines, stderr) = (Arc::default(), Arc::default());
        let (l, e): (Arc<Mutex<Vec<String>>>, Arc<Mutex<String>>) =
            (Arc::clone(&lines), Arc::clone(&stderr));
        let readers = vec![
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    l.lock().unwrap().push(line);
                }
            }),
            thread::spawn(move || {
                let mut s = String::new();
                let _ = err.read_to_string(&mut s);
                *e.lock().unwrap() = s;
            }),
        ];
        Workload {
            child,
            stdin,
            lines,
            readers,
            stderr,
        }
    }

    fn output(&self) -> String {
        let out = self.lines.lock().unwrap().join("\n");
        format!("{out}\n{}", self.stderr.lock().unwrap())
    }

    fn wait_line(&mut self, line: &str, limit: Duration) {
        wait_for(line, limit, || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("workload exited ({status}) early:\n{}", self.output());
            }
            self.lines.lock().unwrap().iter().any(|l| l == line)
        });
    }

    /// Tells the load to stop, waits for the verification to finish and returns
    /// whether it passed, with everything it printed.
    fn finish(mut self) -> (bool, String) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let status = self.child.wait().expect("wait for python3");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status.success(), self.output())
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn boto3_through_sidekick_to_four_garage_nodes_one_killed_and_restarted() {
    require_s3();
    let mut g = Garage::start(4);
    let sk = sidekick_for(&g);
    let mut load = Workload::start(script("s3_workload.py", &sk, &g));
    load.wait_line("checks done", Duration::from_secs(600));
    load.wait_line("load running", Duration::from_secs(60));

    let urls: Vec<String> = (0..g.len()).map(|i| g.endpoint(i)).collect();
    let requests = |i: usize| metric(&sk, "sidekick_requests_total", &urls[i]);
    let victim = 1;
    let others = || -> f64 { (0..urls.len()).filter(|&i| i != victim).map(requests).sum() };
    let url = &urls[victim];
    wait_for("load on every node", Duration::from_secs(120), || {
        (0..urls.len()).all(|i| requests(i) >= 50.0)
    });

    g.kill(victim);
    wait_for(
        "sidekick to take the killed node down",
        Duration::from_secs(60),
        || metric(&sk, "sidekick_up", url) == 0.0,
    );
    // Traffic leaves the node: its count stands still while the others' grows. (A
    // request picked just as it went down may still count, hence the short head start.)
    let start = others();
    wait_for("load on the other nodes", Duration::from_secs(120), || {
        others() >= start + 20.0
    });
    let frozen = requests(victim);
    let start = others();
    wait_for(
        "more load on the other nodes",
        Duration::from_secs(120),
        || others() >= start + 200.0,
    );
    assert_eq!(requests(victim), frozen, "requests reached the killed node");
    assert_eq!(metric(&sk, "sidekick_up", url), 0.0);

    g.restart(victim);
    wait_for(
        "sidekick to bring the node back",
        Duration::from_secs(120),
        || metric(&sk, "sidekick_up", url) == 1.0,
    );
    // Traffic returns to it.
    wait_for(
        "requests on the restarted node",
        Duration::from_secs(120),
        || requests(victim) >= frozen + 50.0,
    );
    g.wait_all_healthy();

    let (ok, out) = load.finish();
    assert!(ok, "S3 workload failed:\n{out}");
    assert!(out.contains("\nfailed: 0\n"), "{out}");
    assert!(out.contains("s3 workload ok"), "{out}");
    assert!(sk.log_contains(&format!("{url} is down")));
    assert!(sk.log_contains(&format!("{url} is up")));
    let summary: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("progress "))
        .collect();
    eprintln!("{}", summary.join("\n"));
}

#[test]
fn conditional_get_and_bad_signature_through_sidekick_to_garage() {
    require_s3();
    let g = Garage::start(4);
    let sk = sidekick_for(&g);
    let out = script("s3_conditional.py", &sk, &g)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "conditional checks failed:\n{}",
        text(&out)
    );
    assert!(text(&out).contains("s3 conditional ok"), "{}", text(&out));
    eprintln!("{}", text(&out));

    // An unsigned request is refused too.
    let res = request(
        sk.addr,
        "GET",
        &format!("/{}/conditional/obj", g.bucket),
        &[],
        b"",
    );
    assert_eq!(res.status, 403, "{}", res.text());
}
