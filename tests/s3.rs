//! A real S3 workload: boto3 through sidekick to four s3s-fs servers sharing one
//! data directory, with SigV4 verified by the servers.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const ACCESS: &str = "SIDEKICKTESTKEY";
const SECRET: &str = "sidekick-test-secret-key";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The S3 test needs s3s-fs and boto3 (`.ci/run` installs both). Without them it
/// fails in CI and says how to get them elsewhere.
fn tools_present() -> bool {
    let s3s = Command::new("s3s-fs")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let boto = Command::new("python3")
        .args(["-c", "import boto3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if s3s && boto {
        return true;
    }
    let hint =
        "needs `cargo install s3s-fs@0.14.1 --features binary --locked` and `pip install boto3`";
    assert!(std::env::var_os("CI").is_none(), "S3 test {hint}");
    eprintln!("skipping the S3 workload: it {hint}");
    false
}

#[test]
fn boto3_workload_through_sidekick_to_four_s3s_fs_nodes() {
    if !tools_present() {
        return;
    }
    let data = std::env::temp_dir().join(format!("sidekick-s3-{}", std::process::id()));
    std::fs::create_dir_all(&data).unwrap();
    // Each node gets its own loopback address, so one --health-port serves them all.
    let health_port = free_port("127.0.0.2");
    let mut nodes = Vec::new();
    let mut endpoints = Vec::new();
    for n in 2..=5 {
        let ip = format!("127.0.0.{n}");
        let port = free_port(&ip);
        let child = Command::new("s3s-fs")
            .args(["--host", &ip, "--port", &port.to_string()])
            .args(["--access-key", ACCESS, "--secret-key", SECRET])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let ready = Backend::start_on(
            &format!("ready{n}"),
            format!("{ip}:{health_port}").parse().unwrap(),
        );
        ready.probe(addr);
        nodes.push((Killed(child), ready, addr));
        endpoints.push(format!("http://{addr}"));
    }
    for (_, _, addr) in &nodes {
        wait_for("s3s-fs listening", Duration::from_secs(30), || {
            TcpStream::connect(addr).is_ok()
        });
    }
    let sk = Sidekick::start(&[
        "--health-port",
        &health_port.to_string(),
        &endpoints.join(","),
    ]);
    sk.wait_up(4);

    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3_workload.py"))
        .args([&format!("http://{}", sk.addr), ACCESS, SECRET])
        .output()
        .expect("run python3");
    let _ = std::fs::remove_dir_all(&data);
    assert!(
        out.status.success(),
        "S3 workload failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("s3 workload ok"));
}
