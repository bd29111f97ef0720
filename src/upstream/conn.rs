//! One connection to a backend: plain TCP or TLS, its local address, the bytes read
//! from it but not yet consumed, and its age.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_rt::net::TcpStream;
use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::io::poll_read_buf;

use super::peer::Peer;
use super::{head, Error};

pub enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub struct Conn {
    pub io: Io,
    /// This host's address on the connection (what the backend sees as its peer),
    /// as text: written into every request head on it, formatted once.
    pub local: Option<Box<str>>,
    /// Read from the backend, not yet consumed.
    pub buf: BytesMut,
    pub opened: Instant,
    pub idle_since: Instant,
}

/// Where a connection goes.
#[derive(Clone, Copy)]
pub struct Dest<'a> {
    /// Resolved now unless `address` is set; SNI and the certificate check use it.
    pub host: &'a str,
    pub port: u16,
    pub https: bool,
    pub address: Option<IpAddr>,
}

impl<'a> Dest<'a> {
    /// A peer's endpoint, at its pinned address in `--rr-dns-mode`.
    pub fn of<P: Peer + ?Sized>(peer: &'a P) -> Self {
        let endpoint = peer.endpoint();
        Dest {
            host: &endpoint.host,
            port: endpoint.port,
            https: endpoint.is_https(),
            address: peer.address(),
        }
    }
}

impl Conn {
    /// Acknowledges what arrives next without delay (`TCP_QUICKACK`, which the
    /// kernel turns off again by itself: set once per request). Best effort.
    pub fn ack_now(&self) {
        let tcp = match &self.io {
            Io::Plain(tcp) => tcp,
            Io::Tls(tls) => tls.get_ref().0,
        };
        let _ = rustix::net::sockopt::set_tcp_quickack(tcp, true);
    }

    /// Connects to `dest` (its pinned address, else its host name, resolved now)
    /// and, for https, completes the TLS handshake; each step has `timeout`.
    pub async fn open(
        dest: Dest<'_>,
        tls: Option<&TlsConnector>,
        timeout: Duration,
    ) -> Result<Conn, Error> {
        let connecting = async {
            match dest.address {
                Some(ip) => TcpStream::connect(SocketAddr::new(ip, dest.port)).await,
                None => TcpStream::connect((dest.host, dest.port)).await,
            }
        };
        let tcp = actix_rt::time::timeout(timeout, connecting)
            .await
            .map_err(|_| Error::ConnectTimeout)?
            .map_err(Error::Connect)?;
        // Heads and bodies are written whole: Nagle would only delay them.
        tcp.set_nodelay(true).map_err(Error::Connect)?;
        let local = tcp
            .local_addr()
            .ok()
            .map(|a| a.ip().to_canonical().to_string().into_boxed_str());
        let io = match tls {
            _ if !dest.https => Io::Plain(tcp),
            None => return Err(Error::Tls(io::Error::other("no TLS client configuration"))),
            Some(tls) => {
                let name = ServerName::try_from(dest.host.to_string())
                    .map_err(|e| Error::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
                let stream = actix_rt::time::timeout(timeout, tls.connect(name, tcp))
                    .await
                    .map_err(|_| Error::ConnectTimeout)?
                    .map_err(Error::Tls)?;
                Io::Tls(Box::new(stream))
            }
        };
        let now = Instant::now();
        Ok(Conn {
            io,
            local,
            buf: BytesMut::new(),
            opened: now,
            idle_since: now,
        })
    }

    /// For an upload the backend has stopped reading: whether it has refused the
    /// rest (a final error answer, or one that closes; RFC 9112 §9.5) or closed.
    /// Reads what is there without waiting, registering `cx` for more; interim
    /// heads are skipped. An answer that still takes the body is left unread.
    pub fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut at = 0;
            // Most waits find nothing read yet: no head to parse.
            while at < self.buf.len() {
                match head::parse(&self.buf[at..], false) {
                    Ok(Some((head, len))) if head.interim() => at += len,
                    Ok(Some((head, _))) if head.status.as_u16() >= 400 || !head.keep_alive => {
                        return Poll::Ready(())
                    }
                    Ok(Some(_)) => return Poll::Pending,
                    Err(_) => return Poll::Ready(()),
                    Ok(None) => break,
                }
            }
            self.buf.reserve(4096);
            match poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(n)) if n > 0 => {}
                Poll::Ready(_) => return Poll::Ready(()),
            }
        }
    }

    /// An idle connection is usable when reading it would block: the backend has
    /// neither closed it nor sent anything unasked. Costs no system call while the
    /// runtime knows the socket is not readable.
    pub fn is_alive(&mut self) -> bool {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The TLS connector every worker shares, from the process-wide client config.
pub fn tls_connector(config: Option<&Arc<rustls::ClientConfig>>) -> Option<TlsConnector> {
    config.map(|c| TlsConnector::from(c.clone()))
}
