//! What start-up says about endpoints that look wrong, once, before serving: the
//! sites hint (`config::hints`) and each host name that does not resolve. Both go to
//! the outage log target (`events::TARGET`), which is on without `--log`.
//!
//! A name is looked up once with the system resolver (`getaddrinfo`, blocking), each
//! on a thread of its own; start waits for the answers at most `LOOKUP_WAIT`, so a
//! hanging resolver delays start by that much and no more. A lookup that answers later
//! still warns from its thread.

use std::collections::HashSet;
use std::net::ToSocketAddrs;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use log::warn;

use crate::config::endpoints::Endpoint;
use crate::config::Config;
use crate::pool::events::TARGET;

/// The longest start waits for name lookups.
pub const LOOKUP_WAIT: Duration = Duration::from_secs(1);
/// Host names looked up at start; beyond these, health checks still say what fails.
const MAX_LOOKUPS: usize = 64;

pub fn check(cfg: &Config) {
    // `--quiet`, or the console table on this terminal: nobody would read a warning.
    if !log::log_enabled!(target: TARGET, log::Level::Warn) {
        return;
    }
    if let Some(hint) = crate::config::hints::sites_hint(&cfg.sites) {
        warn!(target: TARGET, "{hint}");
    }
    check_names(cfg.sites.iter().flatten(), LOOKUP_WAIT);
}

/// Looks up every distinct host name of `endpoints` and warns about each that does
/// not resolve, naming the first endpoint that uses it.
fn check_names<'a>(endpoints: impl Iterator<Item = &'a Endpoint>, wait: Duration) {
    let mut seen = HashSet::new();
    let names = endpoints
        .filter(|ep| !ep.is_ip() && seen.insert(ep.host.clone()))
        .take(MAX_LOOKUPS);
    let (done, answers) = mpsc::channel();
    let mut pending = 0usize;
    for ep in names {
        let (done, endpoint, host, port) = (done.clone(), ep.to_string(), ep.host.clone(), ep.port);
        let spawned = std::thread::Builder::new()
            .name("sidekick-lookup".into())
            .spawn(move || {
                if let Some(why) = unresolved(&host, port) {
                    warn!(
                        target: TARGET,
                        "{endpoint}: host '{host}' does not resolve ({why}); \
                         it stays down until it does"
                    );
                }
                let _ = done.send(());
            });
        pending += usize::from(spawned.is_ok());
    }
    drop(done);
    let deadline = Instant::now() + wait;
    while pending > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match answers.recv_timeout(left) {
            Ok(()) => pending -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                warn!(
                    target: TARGET,
                    "the resolver has not answered for {pending} endpoint host name(s) \
                     within {}; starting anyway",
                    humantime::format_duration(wait)
                );
                return;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Why `host` has no address, or `None` when it has one.
fn unresolved(host: &str, port: u16) -> Option<String> {
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs.next().is_none().then(|| "no address".to_string()),
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_resolve_and_names_that_do_not() {
        assert_eq!(unresolved("localhost", 80), None);
        // RFC 6761: `.invalid` never resolves.
        assert!(unresolved("sidekick-test.invalid", 80).is_some());
    }
}
