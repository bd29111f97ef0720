//! A real Garage cluster (crates.io `garage`) on loopback for the S3 tests.
//!
//! Every node listens on its own address, 127.A.B.1 … 127.A.B.N, with the same S3,
//! RPC and admin ports, so one sidekick `--health-port` reaches every node's admin
//! `/health`. Each cluster gets an address range of its own, so clusters of tests
//! running in parallel never compete for a port.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use super::tls::TempDir;
use super::{read_response, sha256, wait_for};

/// The region Garage is configured with; clients must sign for it.
pub const REGION: &str = "garage";

const SETUP: Duration = Duration::from_secs(60);

struct Node {
    ip: String,
    /// `<public key>@<ip>:<rpc port>`, known once the node has started.
    id: String,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster with a key and a bucket. Dropping it SIGKILLs every node (also
/// when the test panics) and removes its directory.
pub struct Garage {
    nodes: Vec<Node>,
    pub s3_port: u16,
    /// The admin API port of every node (`/health` is its readiness answer).
    pub admin_port: u16,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    admin_token: String,
    // Last: removed after the nodes are dead.
    dir: TempDir,
}

impl Garage {
    /// Starts `n` nodes (replication factor 3, or `n` if smaller), connects them,
    /// applies a layout with every node in it, and creates a key and a bucket.
    pub fn start(n: usize) -> Garage {
        assert!((1..=254).contains(&n));
        let dir = TempDir::new("garage");
        let ips = address_range(n);
        let [s3_port, rpc_port, admin_port] = ports_free_on(&ips);
        let secret = token("rpc");
        let admin_token = token("admin");
        let replication = n.min(3);
        let mut nodes = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            let home = dir.join(&format!("node{}", i + 1));
            fs::create_dir_all(&home).unwrap();
            let config = home.join("garage.toml");
            let h = home.display();
            fs::write(
                &config,
                format!(
                    r#"metadata_dir = "{h}/meta"
data_dir = "{h}/data"
db_engine = "sqlite"
# The cluster lives and dies with one test: durability is not the point.
metadata_fsync = false
data_fsync = false
replication_factor = {replication}
rpc_bind_addr = "{ip}:{rpc_port}"
rpc_public_addr = "{ip}:{rpc_port}"
rpc_bind_outgoing = true
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "{ip}:{s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "{ip}:{admin_port}"
admin_token = "{admin_token}"
"#
                ),
            )
            .unwrap();
            nodes.push(Node {
                ip: ip.clone(),
                id: String::new(),
                config,
                log: home.join("garage.log"),
                child: None,
            });
        }
        let mut g = Garage {
            nodes,
            s3_port,
            admin_port,
            access_key: format!("GK{}", &token("key")[..24]),
            secret_key: token("secret"),
            bucket: "sidekick-test".into(),
            admin_token,
            dir,
        };
        for i in 0..n {
            g.spawn(i);
        }
        g.form_cluster();
        g
    }

    fn form_cluster(&mut self) {
        // The node key appears when a node starts; `node id` reads it from disk.
        let ids: Vec<String> = (0..self.nodes.len())
            .map(|i| {
                let mut id = None;
                wait_for("garage node id", SETUP, || {
                    id = self
                        .try_cli(i, &["node", "id", "-q"])
                        .map(|s| s.trim().to_string());
                    id.is_some()
                });
                id.unwrap()
            })
            .collect();
        for (node, id) in self.nodes.iter_mut().zip(&ids) {
            node.id = id.clone();
        }
        for id in &ids[1..] {
            self.cli_retry(0, &["node", "connect", id]);
        }
        // A node saves the peers it knows once a minute: one restarted sooner would
        // know none. With every peer in its configuration it connects to them at once.
        let peers: Vec<String> = ids.iter().map(|id| format!("{id:?}")).collect();
        let line = format!("bootstrap_peers = [{}]\n", peers.join(", "));
        for node in &self.nodes {
            let config = fs::read_to_string(&node.config).unwrap();
            fs::write(&node.config, format!("{line}{config}")).unwrap();
        }
        let n = self.nodes.len();
        wait_for("every node connected", SETUP, || {
            self.cluster_health(0)
                .is_some_and(|h| h["connectedNodes"].as_u64() == Some(n as u64))
        });
        let mut assign = vec!["layout", "assign", "-z", "dc1", "-c", "1G"];
        let short: Vec<&str> = ids.iter().map(|id| &id[..16]).collect();
        assign.extend(short);
        self.cli_retry(0, &assign);
        self.cli_retry(0, &["layout", "apply", "--version", "1"]);
        self.wait_all_healthy();
        let (key, secret, bucket) = (
            self.access_key.clone(),
            self.secret_key.clone(),
            self.bucket.clone(),
        );
        self.cli_retry(
            0,
            &["key", "import", "--yes", "-n", "sidekick", &key, &secret],
        );
        self.cli_retry(0, &["bucket", "create", &bucket]);
        self.cli_retry(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", &bucket, "--key", &key,
            ],
        );
    }

    /// Creates `bucket` and a key allowed on it alone (e.g. a cache store in the
    /// origin's cluster whose key cannot read the origin's bucket).
    /// Returns (access key, secret key).
    pub fn bucket_with_own_key(&self, bucket: &str) -> (String, String) {
        let (key, secret) = (format!("GK{}", &token("key")[..24]), token("secret"));
        self.cli_retry(0, &["key", "import", "--yes", "-n", bucket, &key, &secret]);
        self.cli_retry(0, &["bucket", "create", bucket]);
        self.cli_retry(
            0,
            &[
                "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", &key,
            ],
        );
        (key, secret)
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} is running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new("garage")
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=info,netapp=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start garage");
        node.child = Some(child);
    }

    /// Runs the CLI against node `i`; its stdout when it succeeded.
    fn try_cli(&self, i: usize, args: &[&str]) -> Option<String> {
        let out = Command::new("garage")
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run garage");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs the CLI until it succeeds: right after start a node may not take
    /// commands yet (its peers are still being connected).
    fn cli_retry(&self, i: usize, args: &[&str]) -> String {
        let mut out = None;
        wait_for(&format!("garage {}", args.join(" ")), SETUP, || {
            out = self.try_cli(i, args);
            out.is_some()
        });
        out.unwrap()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn ip(&self, i: usize) -> &str {
        &self.nodes[i].ip
    }

    /// The S3 endpoint of node `i`, as sidekick is given it.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://{}:{}", self.nodes[i].ip, self.s3_port)
    }

    /// Every node's S3 endpoint, comma-separated: one sidekick site.
    pub fn site(&self) -> String {
        (0..self.len())
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn admin_addr(&self, i: usize) -> SocketAddr {
        format!("{}:{}", self.nodes[i].ip, self.admin_port)
            .parse()
            .unwrap()
    }

    /// Status of node `i`'s `GET /health`, `None` when nothing answers.
    pub fn health(&self, i: usize) -> Option<u16> {
        self.try_get(i, "/health", &[]).map(|(status, _)| status)
    }

    /// The node's view of the cluster (`GET /v2/GetClusterHealth`).
    pub fn cluster_health(&self, i: usize) -> Option<serde_json::Value> {
        let auth = format!("Bearer {}", self.admin_token);
        let (status, body) =
            self.try_get(i, "/v2/GetClusterHealth", &[("Authorization", &auth)])?;
        (status == 200).then(|| serde_json::from_slice(&body).ok())?
    }

    fn try_get(&self, i: usize, path: &str, headers: &[(&str, &str)]) -> Option<(u16, Vec<u8>)> {
        // A node that is not listening yet (or any more) is an answer, not a failure.
        let mut stream =
            TcpStream::connect_timeout(&self.admin_addr(i), Duration::from_secs(1)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).ok()?;
        let r = read_response(&mut BufReader::new(stream), false).ok()?;
        Some((r.status, r.body))
    }

    /// Waits until every running node reports the whole cluster connected.
    pub fn wait_all_healthy(&self) {
        for i in 0..self.len() {
            if self.nodes[i].child.is_some() {
                self.wait_healthy(i);
            }
        }
    }

    /// Waits until node `i` answers `/health` with 200 and sees every storage node.
    pub fn wait_healthy(&self, i: usize) {
        wait_for(&format!("garage node {i} healthy"), SETUP, || {
            self.health(i) == Some(200)
                && self
                    .cluster_health(i)
                    .is_some_and(|h| h["status"] == "healthy")
        });
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        let mut child = self.nodes[i].child.take().expect("node is running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGSTOPs node `i`: it still accepts connections (the kernel does) and answers
    /// nothing, until `resume`.
    pub fn pause(&self, i: usize) {
        self.signal(i, "STOP");
    }

    pub fn resume(&self, i: usize) {
        self.signal(i, "CONT");
    }

    fn signal(&self, i: usize, sig: &str) {
        let child = self.nodes[i].child.as_ref().expect("node is running");
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} garage node {i}");
    }

    /// Starts node `i` again on its data; `wait_healthy` tells when it serves.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        // The restarted node connects to its peers at once, but they count it up
        // only on a connection of their own, and retry a lost peer every 30 s: each
        // is told to connect now, as an operator would.
        let id = self.nodes[i].id.clone();
        for j in 0..self.len() {
            if j != i && self.nodes[j].child.is_some() {
                self.cli_retry(j, &["node", "connect", &id]);
            }
        }
    }

    /// The last lines of node `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> Vec<String> {
        let Ok(f) = File::open(&self.nodes[i].log) else {
            return Vec::new();
        };
        let all: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
        all[all.len().saturating_sub(lines)..].to_vec()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for i in 0..self.nodes.len() {
                eprintln!("--- garage node {i} ({}), last lines:", self.nodes[i].ip);
                for line in self.log_tail(i, 15) {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Addresses 127.A.B.1..=n, A and B from this process and a counter: clusters of one
/// test binary never share a range, and another test process rarely does.
fn address_range(n: usize) -> Vec<String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let k = NEXT.fetch_add(1, SeqCst);
    let a = 1 + (std::process::id() % 200) as u8 + (k / 256) as u8 % 50;
    let b = (k % 256) as u8;
    (1..=n).map(|i| format!("127.{a}.{b}.{i}")).collect()
}

/// Three distinct ports free on every address in `ips` right now.
fn ports_free_on(ips: &[String]) -> [u16; 3] {
    let mut found = Vec::new();
    let deadline = Instant::now() + SETUP;
    while found.len() < 3 {
        assert!(Instant::now() < deadline, "no free ports on {ips:?}");
        let port = super::free_port(&ips[0]);
        if !found.contains(&port)
            && ips
                .iter()
                .all(|ip| TcpListener::bind((ip.as_str(), port)).is_ok())
        {
            found.push(port);
        }
    }
    [found[0], found[1], found[2]]
}

/// 64 hex characters, different for every call.
fn token(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = N.fetch_add(1, SeqCst);
    sha256(format!("{tag} {} {n} {nanos}", std::process::id()).as_bytes())
}
