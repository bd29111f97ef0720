//! Every flag and its `SIDEKICK_*` environment variable (clap derive).

use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::config::help::{ABOUT, AFTER};
use crate::config::settings::Balance;
use crate::config::units::{parse_size, positive_duration};

#[derive(Parser, Debug)]
#[command(
    name = "sidekick",
    version,
    override_usage = "sidekick [OPTIONS] SITE...",
    about = ABOUT,
    after_help = AFTER,
    disable_version_flag = true
)]
pub struct Cli {
    /// Listening address for sidekick (":port" listens on all interfaces)
    #[arg(short = 'a', long, env = "SIDEKICK_ADDRESS", default_value = ":8080")]
    pub address: String,

    /// Health check path
    #[arg(
        short = 'p',
        long,
        env = "SIDEKICK_HEALTH_PATH",
        default_value = "/health/ready"
    )]
    pub health_path: String,

    /// Health check path for the last site only [default: the health path]
    #[arg(short = 'r', long, env = "SIDEKICK_READ_HEALTH_PATH")]
    pub read_health_path: Option<String>,

    /// Port for health checks (0 uses each endpoint's own port)
    #[arg(long, env = "SIDEKICK_HEALTH_PORT", default_value_t = 0)]
    pub health_port: u16,

    /// Interval between two health checks of one endpoint
    #[arg(short = 'd', long, env = "SIDEKICK_HEALTH_DURATION", default_value = "5s",
          value_parser = positive_duration)]
    pub health_duration: Duration,

    /// Deadline for one health check
    #[arg(long, env = "SIDEKICK_HEALTH_TIMEOUT", default_value = "10s",
          value_parser = positive_duration)]
    pub health_timeout: Duration,

    /// How to pick a backend among the up ones of a site
    #[arg(long, env = "SIDEKICK_HOST_BALANCE", value_enum, default_value_t = Balance::P2c)]
    pub host_balance: Balance,

    /// Disable TLS certificate verification of https backends
    #[arg(short = 'i', long, env = "SIDEKICK_INSECURE")]
    pub insecure: bool,

    /// Log everything, as the Go tool does (outages are logged without it)
    #[arg(short = 'l', long, env = "SIDEKICK_LOG")]
    pub log: bool,

    /// No console messages at all
    #[arg(short = 'q', long, env = "SIDEKICK_QUIET")]
    pub quiet: bool,

    /// Print log lines as JSON objects
    #[arg(long, env = "SIDEKICK_JSON")]
    pub json: bool,

    /// Worker threads serving clients [default: available CPUs]
    #[arg(long, env = "SIDEKICK_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,

    /// Consecutive passed checks that bring a down backend up
    #[arg(long, env = "SIDEKICK_HEALTH_RISE", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub health_rise: u32,

    /// Consecutive failed checks that take an up backend down
    #[arg(long, env = "SIDEKICK_HEALTH_FALL", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub health_fall: u32,

    /// Check only backends that are down; requests that fail take an up one down
    #[arg(long, env = "SIDEKICK_HEALTH_OPTIMISTIC")]
    pub health_optimistic: bool,

    /// Balance over every address a host name resolves to, each checked on its own
    #[arg(long, env = "SIDEKICK_RR_DNS_MODE")]
    pub rr_dns_mode: bool,

    /// How often names are resolved again in --rr-dns-mode (also on SIGHUP)
    #[arg(long, env = "SIDEKICK_DNS_TTL", default_value = "10m", value_parser = positive_duration)]
    pub dns_ttl: Duration,

    /// Eject a backend after this many consecutive 5xx answers (0 = never)
    #[arg(long = "max-5xx", env = "SIDEKICK_MAX_5XX", default_value_t = 0)]
    pub max_5xx: u32,

    /// First ejection period; it doubles on each repeat ejection (at most 5m)
    #[arg(long, env = "SIDEKICK_EJECT_DURATION", default_value = "30s",
          value_parser = positive_duration)]
    pub eject_duration: Duration,

    /// Other backends one request may be retried on, when a retry is safe
    #[arg(long, env = "SIDEKICK_MAX_RETRIES", default_value_t = 2)]
    pub max_retries: u32,

    /// Send a GET or HEAD without a body whose answer is late (past the site's
    /// recent p95, 10ms to 1s) to a second backend too; charged to the retry budget
    #[arg(long, env = "SIDEKICK_HEDGE")]
    pub hedge: bool,

    /// Retries allowed as a percentage of requests over 10 s (at least 10 per window)
    #[arg(long, env = "SIDEKICK_RETRY_BUDGET", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retry_budget: u32,

    /// Request bodies up to this size are buffered so that they can be retried
    #[arg(long, env = "SIDEKICK_RETRY_BUFFER", default_value = "64KiB", value_parser = parse_size)]
    pub retry_buffer: u64,

    /// Deadline for connecting to a backend
    #[arg(long, env = "SIDEKICK_CONNECT_TIMEOUT", default_value = "5s",
          value_parser = positive_duration)]
    pub connect_timeout: Duration,

    /// Deadline for a backend's response head, counted once the request is sent
    #[arg(long, env = "SIDEKICK_RESPONSE_TIMEOUT", default_value = "60s",
          value_parser = positive_duration)]
    pub response_timeout: Duration,

    /// How long an idle pooled backend connection is kept
    #[arg(long, env = "SIDEKICK_BACKEND_IDLE_TIMEOUT", default_value = "15s",
          value_parser = positive_duration)]
    pub backend_idle_timeout: Duration,

    /// Deadline for a client to send a whole request head (slowloris defence)
    #[arg(long, env = "SIDEKICK_CLIENT_HEADER_TIMEOUT", default_value = "10s",
          value_parser = positive_duration)]
    pub client_header_timeout: Duration,

    /// How long an idle client keep-alive connection is kept
    #[arg(long, env = "SIDEKICK_KEEPALIVE_TIMEOUT", default_value = "75s",
          value_parser = positive_duration)]
    pub keepalive_timeout: Duration,

    /// How long an upgraded (WebSocket) connection may pass no byte either way
    #[arg(long, env = "SIDEKICK_UPGRADE_IDLE_TIMEOUT", default_value = "1h",
          value_parser = positive_duration)]
    pub upgrade_idle_timeout: Duration,

    /// After SIGTERM/SIGINT, how long in-flight requests and open WebSockets may take
    /// to finish before they are closed
    #[arg(long, env = "SIDEKICK_DRAIN_TIMEOUT", default_value = "30s",
          value_parser = positive_duration)]
    pub drain_timeout: Duration,

    /// Largest request head (request line and headers) accepted
    #[arg(long, env = "SIDEKICK_MAX_HEADER_SIZE", default_value = "64KiB", value_parser = parse_size)]
    pub max_header_size: u64,

    /// Most request headers accepted (at most 96)
    #[arg(long, env = "SIDEKICK_MAX_HEADERS", default_value_t = 96,
          value_parser = clap::value_parser!(u16).range(1..=96))]
    pub max_headers: u16,

    /// Send a loopback client's own address (127.0.0.1, ::1) in X-Forwarded-For and
    /// X-Real-IP, instead of this host's address on the connection to the backend
    #[arg(long, env = "SIDEKICK_FORWARD_LOOPBACK_ADDR")]
    pub forward_loopback_addr: bool,

    /// Most client connections open at once; more are answered 503 and closed (lowered to
    /// what the open-file limit holds: (limit - reserve) / 2)
    #[arg(long, env = "SIDEKICK_MAX_CONNS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns: u32,

    #[command(flatten)]
    pub trace: crate::config::trace_flags::Args,

    /// Expand and validate everything, print sites, backends and health URLs, then exit
    #[arg(long)]
    pub check: bool,

    /// Print the version
    // `-v` as in the Go tool, `-V` as in most Rust tools.
    #[arg(short = 'v', visible_short_alias = 'V', long, action = ArgAction::Version)]
    pub version: Option<bool>,

    /// Sites in failover order; each a comma-separated list of endpoints
    #[arg(value_name = "SITE", required = true)]
    pub sites: Vec<String>,

    // Last: the cache and TLS flags open their own help sections, which any argument
    // after them would join.
    #[command(flatten)]
    pub cache: crate::config::cache_flags::CacheArgs,

    #[command(flatten)]
    pub tls: crate::tls::TlsFlags,
}
