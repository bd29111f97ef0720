//! The external tools some tests drive. A missing tool fails the test that needs it,
//! naming the tool and how to get it: a test that did nothing must never count as a
//! pass. `scripts/test` installs every one of them.

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
