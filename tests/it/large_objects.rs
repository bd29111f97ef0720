//! Multi-GiB bodies stream through in bounded memory, byte for byte.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;
use sha2::{Digest, Sha256};

const GIB: u64 = 1 << 30;

#[test]
fn one_gib_download_and_upload_are_identical_in_bounded_memory() {
    let backend = Backend::start("big");
    let sk = Sidekick::start(&[&backend.url()]);
    wait_for("up", Duration::from_secs(20), || sk.health() == 200);

    // Download.
    let mut stream = TcpStream::connect(sk.addr).unwrap();
    write!(stream, "GET /big?size={GIB} HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let mut r = BufReader::with_capacity(1 << 20, stream.try_clone().unwrap());
    let (start, headers) = read_head(&mut r).unwrap();
    assert!(start.starts_with("HTTP/1.1 200"), "{start}");
    assert!(
        headers.contains(&("content-length".into(), GIB.to_string())),
        "{headers:?}"
    );
    let mut hash = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    let mut got = 0u64;
    while got < GIB {
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0, "download cut at {got} bytes");
        hash.update(&buf[..n]);
        got += n as u64;
    }
    // The backend records what it sent once its last write returns, which may be
    // just after the client has read the last byte.
    let sent = || backend.seen().into_iter().find(|s| s.method == "SENT");
    wait_for(
        "backend's record of the download",
        Duration::from_secs(10),
        || sent().is_some(),
    );
    let sent = sent().expect("backend sent");
    assert_eq!(hex(&hash.finalize()), sent.body_sha, "download differs");

    // Upload on the same keep-alive connection.
    write!(
        stream,
        "PUT /upload HTTP/1.1\r\nHost: h\r\nContent-Length: {GIB}\r\n\r\n"
    )
    .unwrap();
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, stream.try_clone().unwrap());
    let sha = write_pattern(&mut writer, GIB).unwrap();
    writer.flush().unwrap();
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.text(), format!("{GIB} {sha}"), "upload differs");
    let seen = backend.last_seen();
    assert_eq!(
        seen.header("content-length"),
        Some(GIB.to_string().as_str())
    );

    let peak = sk.peak_rss_kib();
    assert!(peak < 64 * 1024, "sidekick peaked at {peak} KiB");
}
