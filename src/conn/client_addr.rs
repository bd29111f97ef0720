//! The client's address as backends are told it (`X-Forwarded-For`, `X-Real-IP`),
//! worked out once per connection. MinIO takes the leftmost `X-Forwarded-For` as the
//! request's source (audit log, `aws:SourceIp`); a sidecar's client is on loopback,
//! so for it the backend connection's local address stands in: what the backend
//! would see without sidekick. `proxy::headers` writes it.

use std::net::IpAddr;

use actix_web::http::header::HeaderValue;

/// The client's address as backends are told it, worked out once per connection.
#[derive(Debug)]
pub struct ClientAddr {
    /// The client's own address.
    value: HeaderValue,
    /// A client on loopback: the backend connection's local address stands for it.
    this_host: bool,
}

impl ClientAddr {
    /// `ip` is the client's; with `forward_loopback` a loopback address goes as it is.
    pub fn new(ip: IpAddr, forward_loopback: bool) -> Option<ClientAddr> {
        let ip = ip.to_canonical();
        Some(ClientAddr {
            value: HeaderValue::from_str(&ip.to_string()).ok()?,
            this_host: ip.is_loopback() && !forward_loopback,
        })
    }

    /// The address sent for the client on a backend connection whose local address
    /// is `local` (as text, written once per connection).
    pub fn sent<'b>(&'b self, local: Option<&'b str>) -> &'b [u8] {
        match local.filter(|_| self.this_host) {
            Some(local) => local.as_bytes(),
            None => self.value.as_bytes(),
        }
    }
}
