//! The `--cache-*` command line: bad values exit 2 naming the flag before anything
//! listens, `--check` shows the cache settings with the secret redacted, and with no
//! cache nothing about it shows in answers.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

const SECRET: &str = "s3cr3t-Never-Printed-0123456789abcdef";

fn cache(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec![
        "--cache-endpoint",
        "http://cache{1...2}:9000",
        "--cache-bucket",
        "shared-cache",
        "--cache-access-key",
        "CACHEKEY",
        "--cache-secret-key",
        SECRET,
    ];
    args.extend(extra);
    args
}

/// Runs sidekick on a free port; (exit code, stdout, stderr). A sidekick that does
/// not exit in time is killed and fails the test: it would have served.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let port = free_port("127.0.0.1").to_string();
    let mut cmd = Command::new(BIN);
    cmd.args(["--address", &format!("127.0.0.1:{port}")])
        .args(args)
        .env_remove("SIDEKICK_ADDRESS");
    exits(cmd)
}

#[test]
fn bad_cache_flags_exit_2_naming_the_flag_before_listening() {
    let origin = "http://origin:9000";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--cache-endpoint",
                "http://c:9000",
                "--cache-access-key",
                "k",
                "--cache-secret-key",
                "s",
            ],
            "--cache-bucket",
        ),
        (
            vec![
                "--cache-endpoint",
                "http://c:9000",
                "--cache-bucket",
                "b",
                "--cache-secret-key",
                "s",
            ],
            "--cache-access-key",
        ),
        (
            vec![
                "--cache-endpoint",
                "http://c:9000",
                "--cache-bucket",
                "b",
                "--cache-access-key",
                "k",
            ],
            "--cache-secret-key",
        ),
        (cache(&["--cache-min-size", "lots"]), "--cache-min-size"),
        (cache(&["--cache-max-size=-5MiB"]), "--cache-max-size"),
        (cache(&["--cache-max-size", "5 gigs"]), "--cache-max-size"),
        (cache(&["--cache-block-size", "4KiB"]), "--cache-block-size"),
        (cache(&["--cache-block-size", "1GiB"]), "--cache-block-size"),
        (
            cache(&["--cache-min-size", "2MiB", "--cache-max-size", "1MiB"]),
            "--cache-min-size",
        ),
        (
            vec![
                "--cache-endpoint",
                "http://c{1..3}:9000",
                "--cache-bucket",
                "b",
                "--cache-access-key",
                "k",
                "--cache-secret-key",
                "s",
            ],
            "--cache-endpoint",
        ),
    ];
    for (args, flag) in cases {
        let all = [args.as_slice(), &[origin]].concat();
        let (code, out, err) = run(&all);
        assert_eq!(code, Some(2), "{all:?}: {err}");
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("error: "), "{all:?}: {err}");
        assert!(
            first.contains(flag),
            "{all:?} should name {flag} first: {err}"
        );
        assert!(!err.contains("listening"), "{all:?}: {err}");
        assert!(out.is_empty(), "{all:?} printed to stdout: {out}");
        assert!(
            !err.contains(SECRET) && !out.contains(SECRET),
            "{all:?}: the secret printed"
        );
    }
}

#[test]
fn check_prints_the_cache_settings_and_never_the_secret() {
    let args = cache(&["--cache-prefix", "team-a/", "--cache-block-size", "8MiB"]);
    let (code, out, err) = run(&[&["--check"], args.as_slice(), &["http://origin:9000"]].concat());
    assert_eq!(code, Some(0), "{err}");
    for needle in [
        "shared-cache",
        "CACHEKEY",
        "team-a/",
        "redacted",
        "http://cache1:9000",
        "http://cache2:9000",
        "/minio/health/ready",
        "8388608",
    ] {
        assert!(out.contains(needle), "--check lacks {needle}:\n{out}");
    }
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "the secret printed:\n{out}{err}"
    );

    // Given by environment, the same.
    let out = Command::new(BIN)
        .args(["--check", "http://origin:9000"])
        .env_remove("SIDEKICK_ADDRESS")
        .env("SIDEKICK_CACHE_ENDPOINT", "http://cache:9000")
        .env("SIDEKICK_CACHE_BUCKET", "env-bucket")
        .env("SIDEKICK_CACHE_ACCESS_KEY", "ENVKEY")
        .env("SIDEKICK_CACHE_SECRET_KEY", SECRET)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("env-bucket") && text.contains("ENVKEY"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(!String::from_utf8_lossy(&help.stdout).contains(SECRET));
}

#[test]
fn without_the_cache_no_answer_carries_x_cache() {
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&["--health-duration", "1s", &backend.url()]);
    wait_for("backend up", Duration::from_secs(10), || sk.health() == 200);
    for (method, path) in [("GET", "/bkt/obj"), ("HEAD", "/head"), ("PUT", "/upload")] {
        let res = request(sk.addr, method, path, &[], b"");
        assert_eq!(res.status, 200, "{method} {path}");
        assert_eq!(res.header("x-cache"), None, "{method} {path}");
    }
    let s = sk.get("/.prometheus/metrics").text();
    assert!(
        !s.contains("sidekick_cache_up{"),
        "a cache node with no cache:\n{s}"
    );
}
