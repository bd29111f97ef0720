//! Health checks through the client that carries requests: a GET of the readiness
//! URL on a connection of its own, closed once the status is read. A fresh
//! connection per check means a kept socket the backend closed can never fail a
//! check, and the host name is resolved again each time. https backends are
//! checked with the TLS settings of requests; a failed handshake fails the check
//! with its reason.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::uri::Scheme;
use actix_web::http::{StatusCode, Uri};
use tokio::io::AsyncWriteExt;
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsConnector;

use super::conn::{self, Conn, Dest};
use super::{read_head, Error};

/// What every health check of a pool is sent with. Needs no worker: it runs
/// wherever its caller does (the Pool's thread).
#[derive(Clone)]
pub struct Prober {
    tls: Option<TlsConnector>,
    timeout: Duration,
}

impl Prober {
    /// `timeout` bounds a whole check: connecting, the handshake and the head.
    pub fn new(timeout: Duration, tls: Option<&Arc<rustls::ClientConfig>>) -> Self {
        Prober {
            tls: conn::tls_connector(tls),
            timeout,
        }
    }

    /// GETs `url` (from `address` when the peer is pinned to one) and returns the
    /// status of the answer; its body is left unread.
    pub async fn get(&self, url: &Uri, address: Option<IpAddr>) -> Result<StatusCode, Error> {
        let deadline = Instant::now() + self.timeout;
        let https = url.scheme() == Some(&Scheme::HTTPS);
        let (Some(host), Some(authority)) = (url.host(), url.authority()) else {
            let missing = io::Error::new(io::ErrorKind::InvalidInput, "no host in the URL");
            return Err(Error::Connect(missing));
        };
        let dest = Dest {
            host: host.trim_start_matches('[').trim_end_matches(']'),
            port: url.port_u16().unwrap_or(if https { 443 } else { 80 }),
            https,
            address,
        };
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let head = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        let opening = Conn::open(dest, self.tls.as_ref(), self.timeout);
        let mut conn = timeout_at(deadline, opening)
            .await
            .map_err(|_| Error::ConnectTimeout)??;
        let exchange = async {
            conn.io
                .write_all(head.as_bytes())
                .await
                .map_err(Error::Send)?;
            conn.io.flush().await.map_err(Error::Send)?;
            read_head(&mut conn, false).await
        };
        let answer = timeout_at(deadline, exchange)
            .await
            .map_err(|_| Error::Timeout)??;
        Ok(answer.status)
    }
}
