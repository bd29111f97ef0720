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

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    /// Serves `n` connections on a loopback port, answering each head with `status`;
    /// returns the port and what each connection sent.
    fn backend(n: usize, status: &'static str) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let serve = std::thread::spawn(move || {
            (0..n)
                .map(|_| {
                    let (conn, _) = listener.accept().unwrap();
                    conn.set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut reader = BufReader::new(conn);
                    let mut head = String::new();
                    while !head.ends_with("\r\n\r\n") {
                        assert!(reader.read_line(&mut head).unwrap() > 0, "{head:?}");
                    }
                    let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nno");
                    reader.get_mut().write_all(answer.as_bytes()).unwrap();
                    head
                })
                .collect()
        });
        (port, serve)
    }

    #[actix_rt::test]
    async fn each_check_is_a_get_on_a_connection_of_its_own() {
        let (port, serve) = backend(2, "503 Service Unavailable");
        let prober = Prober::new(Duration::from_secs(10), None);
        // A name pinned to an address, as in `--rr-dns-mode`: the URL's host (an
        // IPv6 literal here) is the Host header, the address is where it goes.
        let url: Uri = format!("http://[::1]:{port}/minio/health/ready?x=1")
            .parse()
            .unwrap();
        let pinned = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..2 {
            let status = prober.get(&url, pinned).await.unwrap();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        }
        let heads = serve.join().unwrap();
        let want = format!(
            "GET /minio/health/ready?x=1 HTTP/1.1\r\nHost: [::1]:{port}\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(heads, [want.clone(), want]);
    }

    #[actix_rt::test]
    async fn a_refused_connection_says_so() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url: Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let prober = Prober::new(Duration::from_secs(10), None);
        let error = prober.get(&url, None).await.unwrap_err();
        assert!(matches!(error, Error::Connect(_)), "{error}");
        assert!(error.to_string().starts_with("cannot connect: "), "{error}");
    }
}
