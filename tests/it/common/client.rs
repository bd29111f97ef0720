//! A raw HTTP/1.1 client that sees exactly what sidekick sends back.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), response read whole.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw_request(addr, &raw, method == "HEAD")
}

/// Sends raw bytes and parses the response, which must be complete: a body shorter
/// than its framing panics.
pub fn raw_request(addr: SocketAddr, raw: &[u8], head: bool) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to sidekick");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(raw).expect("send");
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, head).expect("complete response")
}

/// Reads one response; `Err` when the connection ends before the framing says.
pub fn read_response(r: &mut impl BufRead, head: bool) -> std::io::Result<Response> {
    let (status, headers) = loop {
        let (status, headers) = read_head(r)?;
        let status: u16 = status
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        if status != 100 {
            break (status, headers);
        }
    };
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head || status == 204 || status == 304 {
        return Ok(resp);
    }
    if resp.header("transfer-encoding") == Some("chunked") {
        resp.body = read_chunked(r, |_| {})?;
    } else if let Some(len) = resp.header("content-length") {
        let mut body = vec![0; len.parse().expect("length")];
        r.read_exact(&mut body)?;
        resp.body = body;
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

/// Reads a start line and headers (names lower-cased).
pub fn read_head(r: &mut impl BufRead) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let start = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok((start, headers));
        }
        let (n, v) = l.split_once(':').expect("header line");
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
}

/// Decodes a chunked body, handing each chunk to `each` and returning the whole
/// body only when `each` does not consume it (small bodies).
pub fn read_chunked(r: &mut impl BufRead, mut each: impl FnMut(&[u8])) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
        let mut chunk = vec![0; size + 2];
        r.read_exact(&mut chunk)?;
        if size == 0 {
            return Ok(body);
        }
        each(&chunk[..size]);
        if body.len() < 1 << 20 {
            body.extend_from_slice(&chunk[..size]);
        }
    }
}
