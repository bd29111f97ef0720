//! A client connection whose HTTP/1 reads pass through `conn::framing` before
//! actix-http decodes them. Where a chunked trailer section holds a bare LF, actix-http
//! gets the bytes before it, then CR and `!` instead of that LF, then the end of the
//! stream: a CR not followed by LF in a trailer section is a fault its own chunked
//! decoder finds, so the request fails there the way every other malformed chunk does
//! (400, `connection: close`, the body never forwarded as complete) and nothing behind
//! it is read. An HTTP/2 connection is passed through as it is.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::framing::Framing;

/// What actix-http reads in place of a bare LF in a trailer section.
const REFUSED: &[u8] = b"\r!";

pub struct Watched<S> {
    io: S,
    /// `None` on HTTP/2.
    framing: Option<Framing>,
    /// Once a bare LF was found: what is still to be handed over in its place.
    refused: Option<&'static [u8]>,
}

impl<S> Watched<S> {
    /// An HTTP/1 connection, its request framing followed.
    pub fn http1(io: S) -> Self {
        Watched {
            io,
            framing: Some(Framing::default()),
            refused: None,
        }
    }

    /// An HTTP/2 connection: its frames need no watching.
    pub fn http2(io: S) -> Self {
        Watched {
            io,
            framing: None,
            refused: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(refused) = &mut this.refused {
            let n = refused.len().min(buf.remaining());
            buf.put_slice(&refused[..n]);
            *refused = &refused[n..];
            return Poll::Ready(Ok(()));
        }
        let start = buf.filled().len();
        let Some(framing) = &mut this.framing else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            if let Some(at) = framing.scan(&buf.filled()[start..]) {
                // The LF's place is free, so at least one byte of the refusal fits.
                buf.set_filled(start + at);
                let n = REFUSED.len().min(buf.remaining());
                buf.put_slice(&REFUSED[..n]);
                this.refused = Some(&REFUSED[n..]);
                this.framing = None;
            }
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use actix_http::h1::{Codec, Message};
    use bytes::BytesMut;
    use tokio::io::AsyncReadExt;
    use tokio_util::codec::Decoder;

    use super::*;

    /// Everything a watched connection hands over when the client sent `sent`, read
    /// `chunk` bytes at a time.
    async fn handed_over(sent: &[u8], chunk: usize) -> Vec<u8> {
        let mut watched = Watched::http1(sent);
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            let n = watched.read(&mut buf).await.unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// Decodes `bytes` with actix-http's own HTTP/1 server codec: the request paths
    /// and body bytes it yields, and whether it refused something.
    fn decode(bytes: &[u8]) -> (Vec<String>, Vec<u8>, bool) {
        let mut codec = Codec::default();
        let mut buf = BytesMut::from(bytes);
        let (mut paths, mut body) = (Vec::new(), Vec::new());
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(Message::Item(req))) => paths.push(req.path().to_string()),
                Ok(Some(Message::Chunk(Some(data)))) => body.extend_from_slice(&data),
                Ok(Some(Message::Chunk(None))) => {}
                Ok(None) => return (paths, body, false),
                Err(_) => return (paths, body, true),
            }
        }
    }

    const BAD: &[u8] = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        3\r\nabc\r\n0\r\nX-T: v\n\r\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n";
    const GOOD: &[u8] = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        3\r\nabc\r\n0\r\nX-T: v\r\n\r\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n";

    #[actix_rt::test]
    async fn actix_swallows_the_request_behind_a_bare_lf_unless_watched() {
        // What this guards against: unwatched, the GET becomes trailer lines.
        assert_eq!(decode(BAD), (vec!["/x".into()], b"abc".to_vec(), false));
        for chunk in [1, 2, 7, 4096] {
            let handed = handed_over(BAD, chunk).await;
            let cut = BAD.windows(2).position(|w| w == b"v\n").unwrap() + 1;
            assert_eq!(handed, [&BAD[..cut], b"\r!"].concat(), "chunk {chunk}");
            assert_eq!(
                decode(&handed),
                (vec!["/x".into()], b"abc".to_vec(), true),
                "chunk {chunk}"
            );
        }
    }

    #[actix_rt::test]
    async fn well_formed_trailers_are_handed_over_unchanged() {
        for chunk in [1, 2, 7, 4096] {
            let handed = handed_over(GOOD, chunk).await;
            assert_eq!(handed, GOOD, "chunk {chunk}");
        }
        assert_eq!(
            decode(GOOD),
            (vec!["/x".into(), "/y".into()], b"abc".to_vec(), false)
        );
    }

    /// A random request numbered `i`, and whether its trailer section holds a bare LF.
    fn random_request(rng: &mut fastrand::Rng, i: usize) -> (Vec<u8>, bool) {
        let eol: &[u8] = if rng.u8(..8) == 0 { b"\n" } else { b"\r\n" };
        let data = |rng: &mut fastrand::Rng| -> Vec<u8> {
            let pick = b"ab\r\n0;:";
            (0..rng.usize(1..40))
                .map(|_| pick[rng.usize(..pick.len())])
                .collect()
        };
        let mut out = [
            b"PUT /r",
            i.to_string().as_bytes(),
            b" HTTP/1.1",
            eol,
            b"Host: h",
            eol,
        ]
        .concat();
        match rng.u8(..3) {
            0 => {
                out.extend_from_slice(eol);
                (out, false)
            }
            1 => {
                let body = data(rng);
                out.extend_from_slice(format!("Content-Length: {}", body.len()).as_bytes());
                out.extend_from_slice(&[eol, eol, &body].concat());
                (out, false)
            }
            _ => {
                out.extend_from_slice(&[b"Transfer-Encoding: chunked", eol, eol].concat());
                for _ in 0..rng.usize(..3) {
                    let chunk = data(rng);
                    let ext = if rng.bool() { ";x=1" } else { "" };
                    out.extend_from_slice(format!("{:x}{ext}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(&[&chunk, &b"\r\n"[..]].concat());
                }
                out.extend_from_slice(b"0\r\n");
                let lines = rng.usize(..3);
                let bad = rng.u8(..4) == 0;
                let bad_at = rng.usize(..=lines);
                for line in 0..=lines {
                    let end: &[u8] = if bad && line == bad_at {
                        b"\n"
                    } else {
                        b"\r\n"
                    };
                    let field = if line < lines {
                        format!("X-T{line}: v")
                    } else {
                        String::new()
                    };
                    out.extend_from_slice(&[field.as_bytes(), end].concat());
                }
                (out, bad)
            }
        }
    }

    #[actix_rt::test]
    async fn random_pipelines_end_at_the_first_bare_lf_and_nowhere_else() {
        let mut rng = fastrand::Rng::with_seed(9112);
        for round in 0..300 {
            let mut sent = Vec::new();
            let mut expected = Vec::new();
            let mut refused = false;
            for i in 0..rng.usize(1..6) {
                let (req, bad) = random_request(&mut rng, i);
                sent.extend_from_slice(&req);
                if !refused {
                    expected.push(format!("/r{i}"));
                    refused = bad;
                }
            }
            let handed = handed_over(&sent, rng.usize(1..64)).await;
            let (paths, _, failed) = decode(&handed);
            assert_eq!(
                (paths, failed),
                (expected, refused),
                "round {round}: {:?}",
                String::from_utf8_lossy(&sent)
            );
        }
    }

    #[actix_rt::test]
    async fn http2_is_not_watched() {
        let mut watched = Watched::http2(BAD);
        let mut out = Vec::new();
        watched.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, BAD);
    }
}
