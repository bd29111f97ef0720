//! `--rr-dns-mode`: resolving an endpoint's name to every address it has, off the
//! actor's thread, and connecting to one chosen address while the name stays the
//! request's authority (Host, SNI and certificate checks).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use actix_tls::connect::{Connector, ConnectorService, Resolve, Resolver};
use futures_util::future::LocalBoxFuture;

/// Resolves every name to one fixed address.
struct Pinned(IpAddr);

impl Resolve for Pinned {
    fn lookup<'a>(
        &'a self,
        _host: &'a str,
        port: u16,
    ) -> LocalBoxFuture<'a, Result<Vec<SocketAddr>, Box<dyn std::error::Error>>> {
        Box::pin(std::future::ready(Ok(vec![SocketAddr::new(self.0, port)])))
    }
}

/// The TCP connector of a client: the system resolver, or pinned to `address`.
pub fn connector(address: Option<IpAddr>) -> ConnectorService {
    let resolver = match address {
        Some(ip) => Resolver::custom(Pinned(ip)),
        None => Resolver::default(),
    };
    Connector::new(resolver).service()
}

/// Every distinct address `host` resolves to, in resolver order.
pub async fn resolve(host: String, port: u16) -> Result<Vec<IpAddr>, String> {
    let lookup = actix_rt::task::spawn_blocking(move || {
        (host.as_str(), port)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>())
            .map_err(|e| format!("cannot resolve {host}: {e}"))
    });
    let mut addrs = lookup.await.map_err(|e| e.to_string())??;
    let mut seen = Vec::with_capacity(addrs.len());
    addrs.retain(|ip| {
        let new = !seen.contains(ip);
        seen.push(*ip);
        new
    });
    if addrs.is_empty() {
        return Err("no address".to_string());
    }
    Ok(addrs)
}
