//! The parsed flags become a `Config`: endpoints expanded and checked, TLS material
//! loaded, paths and the listen address normalised. An error's first line names the
//! bad value; hints follow.

use crate::config::endpoints::{parse_sites, Endpoint};
use crate::config::flags::Cli;
use crate::config::settings::{Config, Listen};
use crate::config::usage_error::{with_hints, SEE_HELP};

fn parse_listen(addr: &str) -> Result<Listen, String> {
    let bad = |why: &str| {
        with_hints(
            &format!("error: invalid --address '{addr}': {why}"),
            [SEE_HELP],
        )
    };
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
    pub fn validate(self) -> Result<Config, String> {
        let listen = parse_listen(&self.address)?;
        let sites = parse_sites(&self.sites).map_err(|e| {
            with_hints(
                &format!("error: {e}"),
                e.hint.iter().map(String::as_str).chain([SEE_HELP]),
            )
        })?;
        let https = sites.iter().flatten().any(Endpoint::is_https);
        let cache = self.cache.validate()?;
        let https = https
            || cache
                .iter()
                .flat_map(|c| &c.endpoints)
                .any(Endpoint::is_https);
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
            hedge: self.hedge,
            retry_buffer: self.retry_buffer,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            backend_idle_timeout: self.backend_idle_timeout,
            client_header_timeout: self.client_header_timeout,
            keepalive_timeout: self.keepalive_timeout,
            upgrade_idle_timeout: self.upgrade_idle_timeout,
            drain_timeout: self.drain_timeout,
            max_header_size: self.max_header_size,
            max_headers: self.max_headers,
            max_conns: self.max_conns,
            forward_loopback_addr: self.forward_loopback_addr,
            tls,
            cache,
            check: self.check,
            trace: self.trace,
        })
    }
}
