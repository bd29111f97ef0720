//! The command line through the real binary: `--check` output, exit codes, messages,
//! `--help` and the README that copies it.

use std::net::TcpListener;
use std::process::{Command, Output};

use crate::common::BIN;

const SEE_HELP: &str = "  see `sidekick --help`";

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
fn bad_input_exits_2_with_the_error_first_then_hints() {
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
        let lines: Vec<&str> = err.lines().collect();
        assert!(lines[0].starts_with("error: "), "{args:?}: {err}");
        assert!(
            lines[0].contains(needle),
            "{args:?} should name {needle} first: {err}"
        );
        assert_eq!(lines.last(), Some(&SEE_HELP), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
}

/// stderr of a bad command line, which must exit 2 and print nothing on stdout.
fn refused(args: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    let out = Command::new(BIN)
        .args(["--address", "127.0.0.1:0"])
        .args(args)
        .env_remove("SIDEKICK_ADDRESS")
        .envs(env.iter().copied())
        .output()
        .expect("run sidekick");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    err.lines().map(str::to_string).collect()
}

#[test]
fn hints_name_the_close_flag_the_valid_values_and_the_ellipses() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--helth-path", "/x", "http://a"],
            &[
                "error: unexpected argument '--helth-path' found",
                "  did you mean `--health-path`?",
                SEE_HELP,
            ],
        ),
        // Go's flag package takes one dash; clap would read `-h` (help) out of it.
        (
            &["-health-path", "/x", "http://a"],
            &[
                "error: unexpected argument '-health-path' found",
                "  did you mean `--health-path`?",
                SEE_HELP,
            ],
        ),
        (
            &["--bogus", "http://a"],
            &["error: unexpected argument '--bogus' found", SEE_HELP],
        ),
        (
            &["--host-balance", "rr", "http://a"],
            &[
                "error: invalid value 'rr' for '--host-balance <HOST_BALANCE>'",
                "  valid values: least, random, p2c",
                SEE_HELP,
            ],
        ),
        (
            &["--host-balance", "randon", "http://a"],
            &[
                "error: invalid value 'randon' for '--host-balance <HOST_BALANCE>'",
                "  did you mean `random`?",
                "  valid values: least, random, p2c",
                SEE_HELP,
            ],
        ),
        (
            &["--trace", "everything", "http://a"],
            &[
                "error: invalid value 'everything' for '--trace <MODE>'",
                "  valid values: all, application, minio",
                SEE_HELP,
            ],
        ),
        (
            &["http://m{1..4}:9000"],
            &[
                "error: invalid ellipses range '{1..4}' in endpoint 'http://m{1..4}:9000'",
                "  use three dots: {1...4}",
                SEE_HELP,
            ],
        ),
        (
            &[],
            &[
                "error: no endpoint given: sidekick needs at least one SITE",
                SEE_HELP,
            ],
        ),
    ];
    for (args, want) in cases {
        assert_eq!(refused(args, &[]), *want, "{args:?}");
    }

    let env = refused(&["http://a"], &[("SIDEKICK_INSECURE", "yes")]);
    assert_eq!(env[1], "  valid values: true, false", "{env:?}");

    // Conflicting flags are named on the one line of the error.
    let conflict = refused(
        &[
            "--auto-tls-host",
            "x",
            "--cert",
            "c",
            "--key",
            "k",
            "http://a",
        ],
        &[],
    );
    assert_eq!(conflict.len(), 1, "{conflict:?}");
    for flag in ["--auto-tls-host", "--cert", "--key"] {
        assert!(conflict[0].contains(flag), "{conflict:?}");
    }
}

/// Runs sidekick expecting it to exit by itself; returns its code, stdout and stderr.
fn exits(args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    crate::common::exits(cmd)
}

#[test]
fn an_address_in_use_is_named_and_exits_2_before_serving() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (code, out, err) = exits(&["--address", &addr.to_string(), "http://127.0.0.1:1"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!("error: cannot listen on {addr}: address already in use\n")
    );
    assert!(out.is_empty(), "{out}");

    // `:port` must not fall back to a part of the machine's addresses.
    let everywhere = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = everywhere.local_addr().unwrap().port();
    let (code, _, err) = exits(&["--address", &format!(":{port}"), "http://127.0.0.1:1"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!("error: cannot listen on :{port}: address already in use\n")
    );
}

fn help(flag: &str, columns: Option<&str>, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg(flag).env_clear().envs(env.iter().copied());
    if let Some(columns) = columns {
        cmd.env("COLUMNS", columns);
    }
    let out = cmd.output().expect("run sidekick");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_and_version() {
    let text = help("--help", None, &[]);
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
    let want = format!("sidekick {}\n", env!("CARGO_PKG_VERSION"));
    for flag in ["-v", "-V", "--version"] {
        let version = run(&[flag]);
        assert_eq!(version.status.code(), Some(0), "{flag}");
        assert_eq!(String::from_utf8(version.stdout).unwrap(), want, "{flag}");
    }
}

#[test]
fn help_shows_site_required_env_vars_and_the_reference_sections() {
    for flag in ["-h", "--help"] {
        let text = help(flag, Some("80"), &[]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.contains(&"Usage: sidekick [OPTIONS] SITE..."),
            "{text}"
        );
        assert!(
            !text.contains("=]"),
            "{flag}: an unset variable renders as NAME="
        );
        assert!(text.contains("[env: SIDEKICK_ADDRESS]"), "{text}");
        for needle in [
            "500ms",
            "1m30s",
            "64KiB",
            "GET /v1/health ",
            "GET /.prometheus/metrics ",
            "GET /v1/certificates ",
            "SIGTERM, SIGINT ",
            "SIGHUP ",
            "Exit codes:",
        ] {
            assert!(text.contains(needle), "{flag} lacks {needle}");
        }
        for code in ["0", "1", "2"] {
            let line = format!("  {code}  ");
            assert!(
                lines.iter().any(|l| l.starts_with(&line)),
                "exit code {code}"
            );
        }
    }
    // A variable that is set shows its value: the reason a flag is on.
    let set = help(
        "--help",
        Some("80"),
        &[("SIDEKICK_HEALTH_PATH", "/from/env")],
    );
    assert!(
        set.contains("[env: SIDEKICK_HEALTH_PATH=/from/env]"),
        "{set}"
    );
}

/// Every example in `--help`, at the width given, as the arguments after `sidekick`.
/// A line is a description (indent 2, ends with `:`), a command (indent 4), or the
/// continuation of a command that ended with `\` (indent 6); anything else is a line
/// that wrapped.
fn examples(columns: Option<&str>) -> Vec<Vec<String>> {
    let text = help("--help", columns, &[]);
    let section = text
        .split("\nExamples:\n")
        .nth(1)
        .expect("an Examples section");
    let mut commands: Vec<String> = Vec::new();
    let mut continued = false;
    for line in section.lines().take_while(|l| !l.is_empty()) {
        let indent = line.len() - line.trim_start().len();
        match indent {
            6 if continued => commands.last_mut().unwrap().push_str(line.trim()),
            4 if !continued && line.trim_start().starts_with("sidekick ") => {
                commands.push(line.trim().to_string())
            }
            2 if !continued && line.ends_with(':') => {}
            _ => panic!("{columns:?}: example line {line:?} is wrapped:\n{section}"),
        }
        continued = line.ends_with(" \\");
        if continued {
            let cmd = commands.last_mut().unwrap();
            cmd.truncate(cmd.len() - 1);
        }
    }
    commands
        .iter()
        .map(|c| c.split_whitespace().skip(1).map(str::to_string).collect())
        .collect()
}

#[test]
fn help_examples_do_not_wrap_and_each_is_one_valid_command() {
    for columns in [Some("80"), None] {
        let all = examples(columns);
        assert!(all.len() >= 4, "{all:?}");
        for args in all {
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            if !args.contains(&"--check") {
                args.insert(0, "--check");
            }
            let out = run(&args);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn readme_usage_and_flag_table_follow_help() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let text = help("--help", Some("80"), &[]);
    let usage = text
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .expect("a usage line");
    assert!(
        readme.contains(&format!("## Usage\n\n```\n{usage}\n```\n")),
        "README's Usage block should be `{usage}`"
    );
    // Flags start a line of the short help at indent 2 (`-a, --address`) or 6.
    let short = help("-h", Some("80"), &[]);
    let flags: Vec<&str> = short
        .lines()
        .filter_map(|l| {
            let long = match l.get(..4) {
                Some("    ") => l.strip_prefix("      --")?,
                _ => l.strip_prefix("  -")?.get(3..)?.strip_prefix("--")?,
            };
            long.split(' ').next()
        })
        .collect();
    assert!(flags.len() > 40, "{flags:?}");
    let table: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `--")).collect();
    for flag in flags {
        let named = |row: &&str| {
            row.match_indices(&format!("`--{flag}"))
                .any(|(i, m)| matches!(row[i + m.len()..].chars().next(), Some(',' | '`' | ' ')))
        };
        assert!(
            table.iter().any(named),
            "README's flag table lacks --{flag}"
        );
    }
}
