//! `--rr-dns-mode`: resolving an endpoint's name to every address it has, off the
//! actor's thread. Each address is a backend of its own, which the client connects
//! to while the name stays the request's authority (Host, SNI and certificate checks).

use std::net::{IpAddr, ToSocketAddrs};

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
