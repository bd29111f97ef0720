//! The command line and what it becomes: flags (`flags.rs`, `trace_flags.rs`), help
//! text, validation into the `Config` every other layer reads, endpoints and their
//! ellipses, sizes and durations, and sidekick's own fixed paths.

pub mod cache_flags;
pub mod endpoints;
mod flags;
mod help;
pub mod hints;
pub mod paths;
mod settings;
pub mod trace_flags;
mod units;
mod usage_error;
mod validate;

use std::ffi::OsString;

use clap::{Command, CommandFactory, FromArgMatches};

use flags::Cli;
pub use settings::{Balance, Config, Listen};

/// How parsing ended when it did not yield a config.
pub enum Exit {
    /// `--help` or `--version`: print to stdout, exit 0.
    Info(String),
    /// Bad input: one line for stderr, exit 2.
    Usage(String),
}

/// Parses `args` (program name first) into a validated `Config`.
pub fn parse<I, T>(args: I) -> Result<Config, Exit>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cmd = command();
    if let Some(line) = usage_error::single_dash_long(&cmd, &args) {
        return Err(Exit::Usage(line));
    }
    let from_clap = |e: clap::Error| {
        use clap::error::ErrorKind::*;
        match e.kind() {
            DisplayHelp | DisplayVersion => Exit::Info(e.render().to_string()),
            _ => Exit::Usage(usage_error::from_clap(&e)),
        }
    };
    let matches = cmd.try_get_matches_from(args).map_err(from_clap)?;
    let cli = Cli::from_arg_matches(&matches).map_err(from_clap)?;
    cli.validate().map_err(Exit::Usage)
}

/// The clap command. clap renders an unset variable as `[env: NAME=]`; only a set one
/// shows its value (the reason a flag is on).
fn command() -> Command {
    Cli::command().mut_args(|arg| {
        let unset = match arg.get_env() {
            Some(name) => std::env::var_os(name).map_or(true, |v| v.is_empty()),
            None => false,
        };
        if unset {
            arg.hide_env_values(true)
        } else {
            arg
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::parse_size;
    use std::time::Duration;

    fn ok(args: &[&str]) -> Config {
        match parse(std::iter::once("sidekick").chain(args.iter().copied())) {
            Ok(c) => c,
            Err(Exit::Info(s) | Exit::Usage(s)) => panic!("{s}"),
        }
    }

    fn usage(args: &[&str]) -> String {
        match parse(std::iter::once("sidekick").chain(args.iter().copied())) {
            Err(Exit::Usage(s)) => s,
            _ => panic!("expected a usage error for {args:?}"),
        }
    }

    #[test]
    fn defaults_match_the_go_tool() {
        let c = ok(&["http://m{1...4}:9000"]);
        assert_eq!(c.listen, Listen::Any(8080));
        assert_eq!(c.health_path, "/health/ready");
        assert_eq!(c.read_health_path, "/health/ready");
        assert_eq!(c.health_duration, Duration::from_secs(5));
        assert_eq!(c.health_timeout, Duration::from_secs(10));
        assert_eq!(c.balance, Balance::P2c);
        assert_eq!(c.sites[0].len(), 4);
    }

    #[test]
    fn every_balance_policy_is_a_flag_value() {
        for (value, balance) in [
            ("least", Balance::Least),
            ("random", Balance::Random),
            ("p2c", Balance::P2c),
        ] {
            assert_eq!(ok(&["--host-balance", value, "http://a"]).balance, balance);
        }
    }

    #[test]
    fn paths_addresses_and_durations() {
        let c = ok(&[
            "-a",
            "127.0.0.1:9",
            "-p",
            "minio/health/ready",
            "-r",
            "ro",
            "-d",
            "1m30s",
            "http://a",
            "http://b",
        ]);
        assert_eq!(c.listen, Listen::Host("127.0.0.1".into(), 9));
        assert_eq!(c.health_path_for(0), "/minio/health/ready");
        assert_eq!(c.health_path_for(1), "/ro");
        assert_eq!(c.health_duration, Duration::from_secs(90));
        assert_eq!(
            ok(&["-a", "[::1]:80", "http://a"]).listen,
            Listen::Host("::1".into(), 80)
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2 k"), Ok(2048));
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn bad_values_are_named_on_the_first_line() {
        for (args, needle) in [
            (&["-d", "abc", "http://a"][..], "abc"),
            (&["-d", "0s", "http://a"][..], "0s"),
            (&["-a", "nonsense", "http://a"][..], "nonsense"),
            (&["-a", ":99999", "http://a"][..], "99999"),
            (&["--health-port", "70000", "http://a"][..], "70000"),
            (&["--host-balance", "rr", "http://a"][..], "rr"),
            (&["--workers", "0", "http://a"][..], "0"),
            (&["--retry-buffer", "64XB", "http://a"][..], "64XB"),
            (&["--max-headers", "200", "http://a"][..], "200"),
            (&["--health-rise", "0", "http://a"][..], "0"),
            (&["http://m{1..4}"][..], "{1..4}"),
            (&[][..], "no endpoint"),
        ] {
            let msg = usage(args);
            let first = msg.lines().next().unwrap_or_default();
            assert!(first.contains(needle), "{args:?}: {msg}");
            assert_eq!(msg.lines().last(), Some("  see `sidekick --help`"), "{msg}");
        }
    }

    #[test]
    fn go_style_single_dash_flags_are_refused_but_short_clusters_still_parse() {
        assert_eq!(
            usage(&["-log", "http://a"]),
            "error: unexpected argument '-log' found\n  \
             did you mean `--log`?\n  \
             see `sidekick --help`"
        );
        assert!(usage(&["-health-path=/x", "http://a"]).contains("`--health-path`"));
        let c = ok(&["-li", "http://a"]);
        assert!(c.log && c.insecure);
    }
}
