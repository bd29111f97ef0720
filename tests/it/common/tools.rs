//! The external tools (and privileges) some tests need. A missing one fails the
//! test that needs it, naming it and how to get it: a test that did nothing must
//! never count as a pass. `scripts/test` installs every tool.

use std::io::Write;
use std::process::{Command, Stdio};

/// How each tool is checked and installed.
struct Tool {
    name: &'static str,
    program: &'static str,
    args: &'static [&'static str],
    /// Present only if the check's stdout contains this.
    needs: &'static str,
    install: &'static str,
}

const GARAGE: Tool = Tool {
    name: "garage",
    program: "garage",
    args: &["--version"],
    needs: "",
    install:
        "cargo install garage@2.5.0 --locked --no-default-features --features bundled-libs,sqlite",
};
const BOTO3: Tool = Tool {
    name: "boto3",
    program: "python3",
    args: &["-c", "import boto3"],
    needs: "",
    install: "pip install boto3",
};
const TMUX: Tool = Tool {
    name: "tmux",
    program: "tmux",
    args: &["-V"],
    needs: "",
    install: "apt-get install tmux",
};
const PROMTOOL: Tool = Tool {
    name: "promtool",
    program: "promtool",
    args: &["--version"],
    needs: "",
    install: "apt-get install prometheus",
};
const CURL_HTTP2: Tool = Tool {
    name: "a curl that speaks HTTP/2",
    program: "curl",
    args: &["-V"],
    needs: "HTTP2",
    install: "apt-get install curl",
};
const OPENSSL: Tool = Tool {
    name: "openssl",
    program: "openssl",
    args: &["version"],
    needs: "",
    install: "apt-get install openssl",
};

fn require(tool: &Tool) {
    let present = Command::new(tool.program)
        .args(tool.args)
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(tool.needs)
        });
    assert!(
        present,
        "this test needs {} (`{}`); `scripts/test` installs every test tool and runs the tests",
        tool.name, tool.install
    );
}

/// The S3 tests: a Garage cluster driven by boto3.
pub fn require_s3() {
    require(&GARAGE);
    require(&BOTO3);
}

pub fn require_tmux() {
    require(&TMUX);
}

pub fn require_promtool() {
    require(&PROMTOOL);
}

pub fn require_curl_http2() {
    require(&CURL_HTTP2);
}

pub fn require_openssl() {
    require(&OPENSSL);
}

/// The `--rr-dns-mode` tests: sidekick gets an `/etc/hosts` of the test's in a
/// private mount namespace (`Sidekick::start_with_hosts`: root, `unshare`, `mount`),
/// and backends listen on loopback addresses besides 127.0.0.1.
pub fn require_private_hosts() {
    let hosts = Command::new("unshare")
        .args(["--mount", "sh", "-c", "mount --bind /etc/hosts /etc/hosts"])
        .output();
    let why = match &hosts {
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        hosts.is_ok_and(|out| out.status.success()),
        "this test needs root and `unshare` (util-linux) to give sidekick an /etc/hosts of \
         its own in a private mount namespace; run the tests as root: {why}"
    );
    assert!(
        std::net::TcpListener::bind("127.0.0.2:0").is_ok(),
        "this test needs loopback addresses besides 127.0.0.1 (127.0.0.2 and up): Linux \
         routes all of 127.0.0.0/8 to lo; elsewhere add them to the loopback interface"
    );
}

/// `promtool check metrics` (Debian package `prometheus`).
pub fn promtool_check(text: &str) {
    require_promtool();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
