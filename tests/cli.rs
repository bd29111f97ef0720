//! The command line through the real binary: `--check` output, exit codes, messages.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_sidekick");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SIDEKICK_ADDRESS")
        .output()
        .expect("run sidekick")
}

fn check(args: &[&str]) -> String {
    let out = run(&[&["--check"], args].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn check_expands_sites_pools_and_health_urls() {
    let out = check(&[
        "--health-path=minio/health/ready",
        "--health-port",
        "9001",
        "http://minio{1...4}:9000,http://minio{5...8}:9000",
        "http://dr{01...02}:9000",
    ]);
    assert!(out.contains("site 1: 8 backend(s)"), "{out}");
    assert!(out.contains("site 2: 2 backend(s)"), "{out}");
    assert!(
        out.contains("http://minio8:9000  health http://minio8:9001/minio/health/ready"),
        "{out}"
    );
    assert!(out.contains("http://dr01:9000"), "{out}");
    assert!(out.contains("http://dr02:9000"), "{out}");

    let product = check(&["http://rack{1...2}-node{1...4}:9000"]);
    assert!(product.contains("site 1: 8 backend(s)"), "{product}");
    assert!(product.contains("http://rack2-node4:9000"), "{product}");

    let padded = check(&["http://m{01...16}:9000"]);
    assert!(padded.contains("http://m01:9000") && padded.contains("http://m16:9000"));

    let read = check(&["-r", "/ro", "http://a:1", "http://b:1"]);
    assert!(
        read.contains("http://a:1/health/ready") && read.contains("http://b:1/ro"),
        "{read}"
    );
}

#[test]
fn env_vars_set_flags() {
    let out = Command::new(BIN)
        .args(["--check", "http://a:9000"])
        .env("SIDEKICK_HEALTH_PATH", "/env/path")
        .env("SIDEKICK_ADDRESS", "127.0.0.1:9999")
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.contains("http://a:9000/env/path"), "{out}");
    assert!(out.contains("listen: 127.0.0.1:9999"), "{out}");
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["http://m{1..4}:9000"], "{1..4}"),
        (&["http://m{4...1}:9000"], "{4...1}"),
        (&["http://m{-1...2}:9000"], "{-1...2}"),
        (&["http://m{a...z}:9000"], "{a...z}"),
        (&["http://m{1...2O}:9000"], "{1...2O}"),
        (&["http://m{{1...2}}:9000"], "http://m{{1...2}}:9000"),
        (&["http://m{1...2:9000"], "http://m{1...2:9000"),
        (&["ftp://m:9000"], "ftp"),
        (&["http://:9000"], "http://:9000"),
        (&["http://a:9000,https://b:9000"], "https://b:9000"),
        (&[], "no endpoint"),
        (&["--health-duration", "soon", "http://a"], "soon"),
        (&["--health-timeout=-1s", "http://a"], "-1s"),
        (&["--health-port", "65536", "http://a"], "65536"),
        (&["--host-balance", "roundrobin", "http://a"], "roundrobin"),
        (&["--address", "localhost", "http://a"], "localhost"),
        (&["--workers", "none", "http://a"], "none"),
        (&["--upgrade-idle-timeout", "0s", "http://a"], "0s"),
        (&["--no-such-flag", "http://a"], "--no-such-flag"),
    ];
    for (args, needle) in cases {
        // Never listen on a real port, even if validation were broken.
        let listen: &[&str] = if args.contains(&"--address") {
            &[]
        } else {
            &["--address", "127.0.0.1:0"]
        };
        let out = run(&[listen, *args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?} should name {needle}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
}

#[test]
fn help_and_version() {
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--address",
        "--health-path",
        "--read-health-path",
        "--health-port",
        "--health-duration",
        "--health-timeout",
        "--host-balance",
        "--insecure",
        "--log",
        "--quiet",
        "--json",
        "--workers",
        "--check",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
    let version = run(&["-v"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8(version.stdout)
        .unwrap()
        .contains(env!("CARGO_PKG_VERSION")));
}
