//! HTTP/2 from clients (ALPN h2 over TLS, driven by curl): the forwarding rules hold
//! as over HTTP/1.1, with the host taken from `:authority`.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::tls::*;
use crate::common::*;

struct Setup {
    _dir: TempDir,
    ca_file: String,
    backend: Backend,
    sk: Sidekick,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        require_curl_http2();
        let dir = TempDir::new(tag);
        let ca = Ca::new("h2 CA");
        std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
        let (cert, key) = ca
            .issue(&["localhost", "127.0.0.1"])
            .write(dir.path(), "tls");
        let backend = Backend::start("b0");
        let sk = Sidekick::start(&[
            "--cert",
            &cert.display().to_string(),
            "--key",
            &key.display().to_string(),
            &backend.url(),
        ]);
        wait_for("backend up", Duration::from_secs(20), || {
            https_request(sk.addr, None, "GET", "/v1/health", b"").status == 200
        });
        Setup {
            ca_file: dir.arg("ca.pem"),
            _dir: dir,
            backend,
            sk,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.sk.addr.port())
    }

    fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.sk.addr.port())
    }

    /// curl over HTTP/2 (no fallback to HTTP/1.1), verifying sidekick's certificate.
    fn curl(&self, args: &[&str]) -> std::process::Output {
        let out = curl(&[&["--http2", "--cacert", &self.ca_file], args].concat());
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn get_head_and_range_over_http2() {
    let s = Setup::new("h2-get");
    let out = s.curl(&[
        "-w",
        "\n%{http_version}",
        &s.url("/bucket/a%2Fb+c?list-type=2"),
    ]);
    assert_eq!(text(&out), "b0\n2");
    let seen = s.backend.last_seen();
    assert_eq!(seen.target, "/bucket/a%2Fb+c?list-type=2");
    // No Host header over HTTP/2: the backend gets :authority as Host.
    assert_eq!(seen.header("host"), Some(s.authority().as_str()));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(s.authority().as_str())
    );
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(seen
        .raw_head
        .starts_with("GET /bucket/a%2Fb+c?list-type=2 HTTP/1.1\r\n"));

    // HEAD keeps the backend's Content-Length.
    let out = s.curl(&["-I", &s.url("/head")]);
    let head = text(&out).to_ascii_lowercase();
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(head.contains("content-length: 12345"), "{head}");
    assert!(head.contains("etag: \"x\""), "{head}");

    // Range / 206 pass through.
    let out = s.curl(&[
        "-H",
        "Range: bytes=2-5",
        "-w",
        "\n%{http_code}",
        &s.url("/range"),
    ]);
    assert_eq!(text(&out), "2345\n206");

    // Hop-by-hop headers of the backend never reach an HTTP/2 client (where they are
    // forbidden); a chunked answer streams on as DATA frames.
    let out = s.curl(&["-i", &s.url("/hop")]);
    let hop = text(&out).to_ascii_lowercase();
    assert!(hop.starts_with("http/2 200"), "{hop}");
    assert!(
        hop.contains("x-kept: yes") && hop.ends_with("\r\n\r\nok"),
        "{hop}"
    );
    for gone in ["connection", "keep-alive", "upgrade", "x-secret"] {
        assert!(!hop.contains(&format!("{gone}:")), "{gone} in {hop}");
    }
    let out = s.curl(&["-w", "\n%{http_version}", &s.url("/chunked")]);
    assert_eq!(text(&out), "hello world\n2");

    // 204 with no body.
    let out = s.curl(&["-w", "%{http_code}", &s.url("/no-content")]);
    assert_eq!(text(&out), "204");

    // A Host header that contradicts :authority is refused, and never forwarded.
    let before = s.backend.hits();
    let out = curl(&[
        "--http2",
        "--cacert",
        &s.ca_file,
        "-H",
        "Host: other.example",
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &s.url("/x"),
    ]);
    // curl turns a Host header into :authority itself; either way nothing wrong passes.
    let code = text(&out);
    if code == "200" {
        assert_eq!(s.backend.last_seen().header("host"), Some("other.example"));
    } else {
        assert_eq!(code, "400");
        assert_eq!(s.backend.hits(), before);
    }
}

#[test]
fn large_upload_and_download_over_http2() {
    let s = Setup::new("h2-large");
    const SIZE: u64 = 100 << 20;
    let dir = TempDir::new("h2-large-files");
    let upload = dir.join("upload.bin");
    let sha = {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&upload).unwrap());
        let sha = write_pattern(&mut file, SIZE).unwrap();
        std::io::Write::flush(&mut file).unwrap();
        sha
    };
    let out = s.curl(&["-T", upload.to_str().unwrap(), &s.url("/upload")]);
    assert_eq!(text(&out), format!("{SIZE} {sha}"));
    let seen = s.backend.last_seen();
    assert_eq!(
        seen.header("content-length"),
        Some(SIZE.to_string().as_str())
    );
    assert_eq!(seen.header("transfer-encoding"), None);

    let download = dir.join("download.bin");
    let out = s.curl(&[
        "-o",
        download.to_str().unwrap(),
        "-w",
        "%{http_version} %{size_download}",
        &s.url(&format!("/big?size={SIZE}")),
    ]);
    assert_eq!(text(&out), format!("2 {SIZE}"));
    let sent = s
        .backend
        .seen()
        .into_iter()
        .rfind(|x| x.method == "SENT")
        .unwrap();
    assert_eq!(file_sha256(&download), sent.body_sha);
    assert_eq!(sent.body_sha, sha);
}

fn file_sha256(path: &std::path::Path) -> String {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap();
    let mut hash = sha2::Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return hex(&hash.finalize());
        }
        hash.update(&buf[..n]);
    }
}

#[test]
fn upload_without_length_streams_chunked_to_the_backend() {
    let s = Setup::new("h2-stdin");
    let body = vec![42u8; 300_000];
    let mut child = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--http2",
            "--cacert",
            &s.ca_file,
        ])
        .args(["-T", "-", &s.url("/upload")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out), format!("300000 {}", sha256(&body)));
    assert_eq!(
        s.backend.last_seen().header("transfer-encoding"),
        Some("chunked")
    );
}

#[test]
fn many_concurrent_streams_on_one_connection() {
    let s = Setup::new("h2-streams");
    const N: usize = 200;
    let urls: Vec<String> = (0..N).map(|i| s.url(&format!("/obj/{i}"))).collect();
    let mut args: Vec<&str> = vec![
        "-Z",
        "--parallel-max",
        "50",
        "-w",
        "%{http_code} %{http_version} %{num_connects}\n",
    ];
    for url in &urls {
        args.extend(["-o", "/dev/null", url.as_str()]);
    }
    let out = s.curl(&args);
    let lines: Vec<String> = text(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), N, "{lines:?}");
    let mut connects = 0;
    for line in &lines {
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some("200"), "{line}");
        assert_eq!(parts.next(), Some("2"), "{line}");
        connects += parts.next().unwrap().parse::<usize>().unwrap();
    }
    // Every stream multiplexed on the one connection curl opened.
    assert_eq!(connects, 1, "{lines:?}");
    assert_eq!(s.backend.hits(), N);
}

#[test]
fn http1_over_tls_still_works() {
    let s = Setup::new("h1-tls");
    let out = curl(&[
        "--http1.1",
        "--cacert",
        &s.ca_file,
        "-w",
        "\n%{http_version}",
        &s.url("/x"),
    ]);
    assert_eq!(text(&out), "b0\n1.1");
    assert_eq!(
        s.backend.last_seen().header("host"),
        Some(s.authority().as_str())
    );
}
