//! Command line: clap derive `Cli` (flags, `SIDEKICK_*` env vars, help) → validated `Config`.

use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

use crate::config::endpoints::{parse_sites, Endpoint};

const ABOUT: &str = "High-performance sidecar HTTP load balancer.

Listens on one address and spreads the application's HTTP traffic over the \
endpoints of the first SITE that has a backend up, avoiding servers that fail \
their readiness check or fail requests. When every backend of SITE1 is down, \
SITE2 serves, and so on.";

const AFTER: &str = "SITE is a comma-separated list of endpoints, each with optional \
ellipses: http://minio{1...4}:9000,http://minio{5...8}:9000

EXAMPLES:
  Load balance across 4 MinIO servers (http://minio1:9000 to http://minio4:9000):
    sidekick --address :8000 http://minio{1...4}:9000
  Load balance across 16 MinIO servers:
    sidekick --health-path=/minio/health/ready http://minio{1...16}:9000
  Fail over to a second site when every server of the first is down:
    sidekick --health-path=/minio/health/ready http://site1-minio{1...4}:9000 http://site2-minio{1...4}:9000";

#[derive(Parser, Debug)]
#[command(
    name = "sidekick",
    version,
    about = ABOUT,
    after_help = AFTER,
    disable_version_flag = true
)]
struct Cli {
    /// Listening address for sidekick (":port" listens on all interfaces)
    #[arg(short = 'a', long, env = "SIDEKICK_ADDRESS", default_value = ":8080")]
    address: String,

    /// Health check path
    #[arg(
        short = 'p',
        long,
        env = "SIDEKICK_HEALTH_PATH",
        default_value = "/health/ready"
    )]
    health_path: String,

    /// Health check path for the last site only [default: the health path]
    #[arg(short = 'r', long, env = "SIDEKICK_READ_HEALTH_PATH")]
    read_health_path: Option<String>,

    /// Port for health checks (0 uses each endpoint's own port)
    #[arg(long, env = "SIDEKICK_HEALTH_PORT", default_value_t = 0)]
    health_port: u16,

    /// Interval between two health checks of one endpoint
    #[arg(short = 'd', long, env = "SIDEKICK_HEALTH_DURATION", default_value = "5s",
          value_parser = positive_duration)]
    health_duration: Duration,

    /// Deadline for one health check
    #[arg(long, env = "SIDEKICK_HEALTH_TIMEOUT", default_value = "10s",
          value_parser = positive_duration)]
    health_timeout: Duration,

    /// How to pick a backend among the up ones of a site
    #[arg(long, env = "SIDEKICK_HOST_BALANCE", value_enum, default_value_t = Balance::Least)]
    host_balance: Balance,

    /// Disable TLS certificate verification of https backends
    #[arg(short = 'i', long, env = "SIDEKICK_INSECURE")]
    insecure: bool,

    /// Log backend up/down transitions and errors
    #[arg(short = 'l', long, env = "SIDEKICK_LOG")]
    log: bool,

    /// No console messages at all
    #[arg(short = 'q', long, env = "SIDEKICK_QUIET")]
    quiet: bool,

    /// Print log lines as JSON objects
    #[arg(long, env = "SIDEKICK_JSON")]
    json: bool,

    /// Worker threads serving clients [default: available CPUs]
    #[arg(long, env = "SIDEKICK_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,

    /// Consecutive passed checks that bring a down backend up
    #[arg(long, env = "SIDEKICK_HEALTH_RISE", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    health_rise: u32,

    /// Consecutive failed checks that take an up backend down
    #[arg(long, env = "SIDEKICK_HEALTH_FALL", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    health_fall: u32,

    /// Check only backends that are down; requests that fail take an up one down
    #[arg(long, env = "SIDEKICK_HEALTH_OPTIMISTIC")]
    health_optimistic: bool,

    /// Balance over every address a host name resolves to, each checked on its own
    #[arg(long, env = "SIDEKICK_RR_DNS_MODE")]
    rr_dns_mode: bool,

    /// How often names are resolved again in --rr-dns-mode (also on SIGHUP)
    #[arg(long, env = "SIDEKICK_DNS_TTL", default_value = "10m", value_parser = positive_duration)]
    dns_ttl: Duration,

    /// Eject a backend after this many consecutive 5xx answers (0 = never)
    #[arg(long = "max-5xx", env = "SIDEKICK_MAX_5XX", default_value_t = 0)]
    max_5xx: u32,

    /// First ejection period; it doubles on each repeat ejection (at most 5m)
    #[arg(long, env = "SIDEKICK_EJECT_DURATION", default_value = "30s",
          value_parser = positive_duration)]
    eject_duration: Duration,

    /// Other backends one request may be retried on, when a retry is safe
    #[arg(long, env = "SIDEKICK_MAX_RETRIES", default_value_t = 2)]
    max_retries: u32,

    /// Retries allowed as a percentage of requests over 10 s (at least 10 per window)
    #[arg(long, env = "SIDEKICK_RETRY_BUDGET", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    retry_budget: u32,

    /// Request bodies up to this size are buffered so that they can be retried
    #[arg(long, env = "SIDEKICK_RETRY_BUFFER", default_value = "64KiB", value_parser = parse_size)]
    retry_buffer: u64,

    /// Deadline for connecting to a backend
    #[arg(long, env = "SIDEKICK_CONNECT_TIMEOUT", default_value = "5s",
          value_parser = positive_duration)]
    connect_timeout: Duration,

    /// Deadline for a backend's response head, counted once the request is sent
    #[arg(long, env = "SIDEKICK_RESPONSE_TIMEOUT", default_value = "60s",
          value_parser = positive_duration)]
    response_timeout: Duration,

    /// How long an idle pooled backend connection is kept
    #[arg(long, env = "SIDEKICK_BACKEND_IDLE_TIMEOUT", default_value = "15s",
          value_parser = positive_duration)]
    backend_idle_timeout: Duration,

    /// Deadline for a client to send a whole request head (slowloris defence)
    #[arg(long, env = "SIDEKICK_CLIENT_HEADER_TIMEOUT", default_value = "10s",
          value_parser = positive_duration)]
    client_header_timeout: Duration,

    /// How long an idle client keep-alive connection is kept
    #[arg(long, env = "SIDEKICK_KEEPALIVE_TIMEOUT", default_value = "75s",
          value_parser = positive_duration)]
    keepalive_timeout: Duration,

    /// Largest request head (request line and headers) accepted
    #[arg(long, env = "SIDEKICK_MAX_HEADER_SIZE", default_value = "64KiB", value_parser = parse_size)]
    max_header_size: u64,

    /// Most request headers accepted (at most 96)
    #[arg(long, env = "SIDEKICK_MAX_HEADERS", default_value_t = 96,
          value_parser = clap::value_parser!(u16).range(1..=96))]
    max_headers: u16,

    /// Most client connections open at once; more are answered 503 and closed
    #[arg(long, env = "SIDEKICK_MAX_CONNS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_conns: u32,

    #[command(flatten)]
    trace: crate::config::trace_flags::Args,

    /// Expand and validate everything, print sites, backends and health URLs, then exit
    #[arg(long)]
    check: bool,

    /// Print the version
    #[arg(short = 'v', long, action = ArgAction::Version)]
    version: Option<bool>,

    #[command(flatten)]
    tls: crate::tls::TlsFlags,

    /// Sites in failover order; each a comma-separated list of endpoints
    #[arg(value_name = "SITE")]
    sites: Vec<String>,
}

/// Selection policy among the up backends of a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Balance {
    /// Fewest requests in flight; ties go to the least recently finished, then random
    Least,
    /// Uniformly random
    Random,
}

/// Where to listen: `:port` means every interface, IPv4 and IPv6.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Any(u16),
    Host(String, u16),
}

/// The validated configuration sidekick runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: Listen,
    pub sites: Vec<Vec<Endpoint>>,
    pub health_path: String,
    pub read_health_path: String,
    pub health_port: u16,
    pub health_duration: Duration,
    pub health_timeout: Duration,
    pub balance: Balance,
    pub insecure: bool,
    pub log: bool,
    pub quiet: bool,
    pub json: bool,
    pub workers: usize,
    pub health_rise: u32,
    pub health_fall: u32,
    pub health_optimistic: bool,
    pub rr_dns_mode: bool,
    pub dns_ttl: Duration,
    pub max_5xx: u32,
    pub eject_duration: Duration,
    pub max_retries: u32,
    pub retry_budget: u32,
    pub retry_buffer: u64,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub backend_idle_timeout: Duration,
    pub client_header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_header_size: u64,
    pub max_headers: u16,
    pub max_conns: u32,
    pub tls: crate::tls::Tls,
    pub check: bool,
    pub trace: crate::config::trace_flags::Args,
}

impl Config {
    /// The readiness path for a site: the last site uses `--read-health-path`.
    pub fn health_path_for(&self, site: usize) -> &str {
        if site + 1 == self.sites.len() {
            &self.read_health_path
        } else {
            &self.health_path
        }
    }

    /// What `--check` prints: every site, backend and health URL.
    pub fn describe(&self) -> String {
        let mut out = format!("listen: {}\n", self.listen);
        for (i, site) in self.sites.iter().enumerate() {
            out.push_str(&format!("site {}: {} backend(s)\n", i + 1, site.len()));
            for ep in site {
                let health = ep.health_url(self.health_port, self.health_path_for(i));
                out.push_str(&format!("  {ep}  health {health}\n"));
            }
        }
        out
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Any(port) => write!(f, ":{port}"),
            Listen::Host(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            Listen::Host(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

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
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| {
        use clap::error::ErrorKind::*;
        match e.kind() {
            DisplayHelp | DisplayVersion => Exit::Info(e.render().to_string()),
            _ => Exit::Usage(first_line(&e.render().to_string())),
        }
    })?;
    cli.validate().map_err(Exit::Usage)
}

/// clap renders usage hints over several lines; one line that names the value is enough.
fn first_line(text: &str) -> String {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("error: invalid arguments")
        .to_string()
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("'{s}' is not a duration: {e}"))?;
    if d.is_zero() {
        return Err(format!("'{s}' must be greater than zero"));
    }
    Ok(d)
}

/// Byte sizes: `65536`, `64KiB`, `64K`, `1MiB`, `1MB` (binary multiples).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 65536, 64KiB, 1MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "'{s}' has an unknown size unit (use KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn parse_listen(addr: &str) -> Result<Listen, String> {
    let bad = |why: &str| format!("error: invalid --address '{addr}': {why}");
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| bad("expected HOST:PORT or :PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad(&format!("'{port}' is not a port number")))?;
    if host.is_empty() {
        return Ok(Listen::Any(port));
    }
    let host = match host.strip_prefix('[') {
        Some(v6) => {
            let v6 = v6.strip_suffix(']').ok_or_else(|| bad("unbalanced '['"))?;
            v6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad(&format!("'{v6}' is not an IPv6 address")))?;
            v6
        }
        None if host.contains(':') => return Err(bad("put an IPv6 address in brackets")),
        None => host,
    };
    Ok(Listen::Host(host.to_string(), port))
}

fn with_slash(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

impl Cli {
    fn validate(self) -> Result<Config, String> {
        let listen = parse_listen(&self.address)?;
        let sites = parse_sites(&self.sites).map_err(|e| format!("error: {e}"))?;
        let https = sites.iter().flatten().any(Endpoint::is_https);
        let tls = crate::tls::load(self.tls, self.insecure, https)?;
        let health_path = with_slash(&self.health_path);
        let read_health_path = self
            .read_health_path
            .as_deref()
            .map(with_slash)
            .unwrap_or_else(|| health_path.clone());
        let workers = match self.workers {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(Config {
            listen,
            sites,
            health_path,
            read_health_path,
            health_port: self.health_port,
            health_duration: self.health_duration,
            health_timeout: self.health_timeout,
            balance: self.host_balance,
            insecure: self.insecure,
            log: self.log,
            quiet: self.quiet,
            json: self.json,
            workers,
            health_rise: self.health_rise,
            health_fall: self.health_fall,
            health_optimistic: self.health_optimistic,
            rr_dns_mode: self.rr_dns_mode,
            dns_ttl: self.dns_ttl,
            max_5xx: self.max_5xx,
            eject_duration: self.eject_duration,
            max_retries: self.max_retries,
            retry_budget: self.retry_budget,
            retry_buffer: self.retry_buffer,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            backend_idle_timeout: self.backend_idle_timeout,
            client_header_timeout: self.client_header_timeout,
            keepalive_timeout: self.keepalive_timeout,
            max_header_size: self.max_header_size,
            max_headers: self.max_headers,
            max_conns: self.max_conns,
            tls,
            check: self.check,
            trace: self.trace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.balance, Balance::Least);
        assert_eq!(c.sites[0].len(), 4);
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
    fn bad_values_give_one_line_naming_them() {
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
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.contains(needle), "{args:?}: {msg}");
        }
    }
}
