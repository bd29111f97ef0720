//! The validated configuration sidekick runs with, and what `--check` prints of it.

use std::time::Duration;

use clap::ValueEnum;

use crate::config::endpoints::Endpoint;

/// Selection policy among the up backends of a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Balance {
    /// Fewest requests in flight; ties go to the least recently finished, then random
    Least,
    /// Uniformly random
    Random,
    /// Of two at random, the lower answer latency (peak-EWMA) times requests in
    /// flight plus one; a backend answering 429 or 503 loses for its Retry-After
    P2c,
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
    pub hedge: bool,
    pub retry_buffer: u64,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub backend_idle_timeout: Duration,
    pub client_header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub upgrade_idle_timeout: Duration,
    pub drain_timeout: Duration,
    pub max_header_size: u64,
    pub max_headers: u16,
    pub max_conns: u32,
    pub forward_loopback_addr: bool,
    pub tls: crate::tls::Tls,
    pub cache: Option<crate::config::cache_flags::CacheConfig>,
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
        if let Some(hint) = crate::config::hints::sites_hint(&self.sites) {
            out.push_str(&hint);
            out.push('\n');
        }
        if let Some(cache) = &self.cache {
            out.push_str(&cache.describe());
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
