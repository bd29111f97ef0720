//! The systemd unit (`deploy/systemd/`): its `ExecStart` line expanded as systemd
//! expands it, from the environment file, runs the real binary with the flags and
//! sites that file gives, including an `/etc/default/sidekick` written for the Go
//! sidekick's unit (`SIDEKICK_OPTIONS`).
//!
//! No systemd runs here to start the unit, so the expansion follows
//! systemd.service(5) and systemd.exec(5), for what these files use: the file's
//! `KEY=VALUE` lines (quotes removed), `Environment=` overridden by
//! `EnvironmentFile=`, and in the command line a `$NAME` word replaced by the
//! value split at whitespace (quotes grouping words; unset or empty: no argument).

use std::collections::HashMap;
use std::process::Command;

use crate::common::*;

const UNIT: &str = include_str!("../../deploy/systemd/sidekick.service");
const DEFAULT: &str = include_str!("../../deploy/systemd/sidekick.default");

/// Words of a value split at whitespace, quotes removed and grouping (systemd's
/// `EXTRACT_UNQUOTE|EXTRACT_RELAX`).
fn split_unquote(value: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    for c in value.chars() {
        match (quote, c) {
            (None, '"' | '\'') => (quote, in_word) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            (_, c) => (word.push(c), in_word = true).1,
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The `KEY=VALUE` assignments of an environment file.
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let value = split_unquote(v.trim()).join(" ");
            (k.trim().to_string(), value)
        })
        .collect()
}

/// The unit's `ExecStart` argv, with the environment it would run with when
/// `/etc/default/sidekick` holds `file`.
fn exec_start(file: &str) -> (Vec<String>, HashMap<String, String>) {
    let mut env = HashMap::new();
    let (mut exec, mut files) = (None, Vec::new());
    for line in UNIT.lines() {
        if let Some(assignment) = line.strip_prefix("Environment=") {
            let (k, v) = assignment.split_once('=').expect("NAME=VALUE");
            env.insert(k.to_string(), v.to_string());
        } else if let Some(path) = line.strip_prefix("EnvironmentFile=") {
            files.push(path);
        } else if let Some(cmd) = line.strip_prefix("ExecStart=") {
            exec = Some(cmd);
        }
    }
    assert_eq!(files, ["-/etc/default/sidekick"]);
    // Read after every Environment= line, wherever it stands: the file wins.
    env.extend(env_file(file));
    let cmd = exec.expect("an ExecStart line");
    // The emulation below covers unquoted words only.
    assert!(!cmd.contains(['"', '\'', '\\', '%']), "{cmd}");
    let mut argv = Vec::new();
    for word in cmd.split_whitespace() {
        match word.strip_prefix('$') {
            Some(name) if !name.starts_with(['{', '$']) => {
                argv.extend(env.get(name).map(|v| split_unquote(v)).unwrap_or_default())
            }
            _ => {
                assert!(
                    !word.contains('$'),
                    "{word}: only whole-word $NAME is emulated"
                );
                argv.push(word.to_string());
            }
        }
    }
    (argv, env)
}

/// What `--check` prints for the unit's command line with `file` as
/// `/etc/default/sidekick`.
fn check_with(file: &str) -> String {
    let (argv, env) = exec_start(file);
    assert_eq!(argv[0], "/usr/local/bin/sidekick");
    let mut cmd = Command::new(BIN);
    cmd.env_clear().envs(&env).arg("--check").args(&argv[1..]);
    let (code, out, err) = exits(cmd);
    assert_eq!(code, Some(0), "{argv:?}\n{err}");
    out
}

#[test]
fn exec_start_splits_as_systemd_does() {
    let (argv, _) = exec_start(
        "SIDEKICK_OPTIONS=\"-a :1 --health-path '/a b'\"\nSIDEKICK_SITES=\"http://a:1 http://b:1\"",
    );
    assert_eq!(
        argv,
        [
            "/usr/local/bin/sidekick",
            "-a",
            ":1",
            "--health-path",
            "/a b",
            "http://a:1",
            "http://b:1"
        ]
    );
    // Unset or empty: no argument at all (an empty one would be a SITE).
    let (argv, _) = exec_start("SIDEKICK_SITES=http://a:1");
    assert_eq!(argv, ["/usr/local/bin/sidekick", "http://a:1"]);
}

/// The file the Go sidekick's systemd README has users write.
#[test]
fn a_go_sidekick_environment_file_keeps_its_flags() {
    let out = check_with(
        "# Sidekick options\n\
         SIDEKICK_OPTIONS=\"--health-path=/minio/health/ready --address :8000\"\n\n\
         # Sidekick sites\n\
         SIDEKICK_SITES=\"http://172.17.0.{11...18}:9000 http://172.18.0.{11...18}:9000\"\n",
    );
    assert!(out.starts_with("listen: :8000\n"), "{out}");
    assert!(out.contains("site 1: 8 backend(s)") && out.contains("site 2: 8 backend(s)"));
    assert!(
        out.contains("http://172.18.0.18:9000  health http://172.18.0.18:9000/minio/health/ready"),
        "{out}"
    );
}

/// SIDEKICK_OPTIONS wins over a variable setting the same flag, as the shipped
/// file says; the variables still set what it leaves alone.
#[test]
fn sidekick_options_win_over_the_variables() {
    let out = check_with(
        "SIDEKICK_SITES=http://m{1...2}:9000\n\
         SIDEKICK_ADDRESS=127.0.0.1:8080\n\
         SIDEKICK_HEALTH_PATH=/minio/health/ready\n\
         SIDEKICK_HEALTH_PORT=9001\n\
         SIDEKICK_OPTIONS=\"--address :8000 -p /minio/health/live\"\n",
    );
    assert!(out.starts_with("listen: :8000\n"), "{out}");
    assert!(
        out.contains("health http://m2:9001/minio/health/live"),
        "{out}"
    );
}

/// The shipped file: its variables alone, SIDEKICK_OPTIONS commented out; and with
/// that line enabled, its own words hold.
#[test]
fn the_shipped_environment_file() {
    let out = check_with(DEFAULT);
    assert!(out.starts_with("listen: 127.0.0.1:8080\n"), "{out}");
    assert!(out.contains("http://minio4:9000  health http://minio4:9000/minio/health/ready"));
    let enabled = DEFAULT.replace("#SIDEKICK_OPTIONS=", "SIDEKICK_OPTIONS=");
    assert_ne!(enabled, DEFAULT);
    assert!(check_with(&enabled).starts_with("listen: :8000\n"));
}
