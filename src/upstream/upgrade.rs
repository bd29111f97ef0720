//! Upgrade requests (WebSocket) towards a backend: each goes out on a connection of
//! its own, and a `101 Switching Protocols` hands that connection over, split into
//! its two directions. Any other answer is an ordinary response.

use actix_web::http::StatusCode;
use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};

use super::conn::{Conn, Dest, Io};
use super::head::{self, ResponseHead};
use super::idle::IdleKey;
use super::peer::Peer;
use super::{read_final, Error, Response, Upstream};

/// The backend's side of a switched connection, one half per direction.
pub type ReadSide = ReadHalf<Io>;
pub type WriteSide = WriteHalf<Io>;

/// A backend connection that switched protocols.
pub struct Switched {
    /// The 101, its `Upgrade` header kept.
    pub head: ResponseHead,
    /// What the backend sent after its 101 in the same reads: the first bytes of
    /// the new protocol, to go to the client before anything else.
    pub early: BytesMut,
    pub read: ReadSide,
    pub write: WriteSide,
}

pub enum Upgraded {
    Switched(Switched),
    /// The backend answered without switching: relay it like any response.
    Refused(Response),
}

impl Upstream {
    /// Sends an upgrade request head (it has no body; `head` writes it from the
    /// connection's local address, as for `exchange`) and reads the answer within the
    /// response timeout. Never on a kept connection: one the backend is closing would
    /// lose the request, and a new connection costs little beside a session.
    pub async fn upgrade<P: Peer + ?Sized, H: AsRef<[u8]>>(
        &self,
        backend: &P,
        head: impl FnOnce(Option<&str>) -> H,
    ) -> Result<Upgraded, Error> {
        let mut conn =
            Conn::open(Dest::of(backend), self.tls.as_ref(), self.connect_timeout).await?;
        let head = head(conn.local.as_deref());
        let exchange = async {
            conn.io
                .write_all(head.as_ref())
                .await
                .map_err(Error::Send)?;
            conn.io.flush().await.map_err(Error::Send)?;
            read_final(&mut conn, head::parse_upgrade).await
        };
        let head = actix_rt::time::timeout(self.response_timeout, exchange)
            .await
            .map_err(|_| Error::Timeout)??;
        if head.status != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(Upgraded::Refused(self.response(
                conn,
                head,
                IdleKey::of(backend),
            )));
        }
        let Conn { io, buf, .. } = conn;
        let (read, write) = tokio::io::split(io);
        Ok(Upgraded::Switched(Switched {
            head,
            early: buf,
            read,
            write,
        }))
    }
}
