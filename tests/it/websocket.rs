//! WebSocket pass-through with a real WebSocket client and server (tungstenite): echo
//! of text, binary and a 10 MiB message, the close handshake from either side, a
//! backend that refuses the upgrade or dies mid-session, the idle limit, SIGTERM
//! draining, the metrics and trace of an upgraded connection, and an upgrade while
//! sidekick is out of open files.

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::raw_server::RawServer;
use crate::common::*;
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::derive_accept_key;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role};
use tungstenite::{Message, WebSocket};

const LIMIT: Duration = Duration::from_secs(20);

/// A WebSocket echo server on loopback (plain or TLS), one thread per connection. It answers plain
/// requests (health checks) with 200, refuses the upgrade on `/refuse` with a 403,
/// sends a first frame in the same write as its 101 on `/early`, and closes the
/// session itself when it receives the text `close-please`.
struct Echo {
    server: RawServer,
    shared: Arc<EchoShared>,
    https: bool,
}

/// An upgrade request's path and headers (names lower-cased).
type SeenUpgrade = (String, Vec<(String, String)>);

#[derive(Default)]
struct EchoShared {
    /// Path and headers of each upgrade request.
    handshakes: Mutex<Vec<SeenUpgrade>>,
    /// Sessions that ended with a completed close handshake, and in any way.
    closed: AtomicUsize,
    ended: AtomicUsize,
}

impl Echo {
    fn start() -> Echo {
        Self::serve(None)
    }

    fn start_tls(config: Arc<rustls::ServerConfig>) -> Echo {
        Self::serve(Some(config))
    }

    fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> Echo {
        let shared = Arc::new(EchoShared::default());
        let https = tls.is_some();
        let s = shared.clone();
        let server = RawServer::on_free_port(move |conn| serve_echo(conn, tls.clone(), &s));
        Echo {
            server,
            shared,
            https,
        }
    }

    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.server.addr)
    }

    /// Closes the listener and cuts every connection, like a crashed process.
    fn kill(&self) {
        self.server.kill();
    }

    fn handshakes(&self) -> Vec<SeenUpgrade> {
        self.shared.handshakes.lock().unwrap().clone()
    }

    fn closed(&self) -> usize {
        self.shared.closed.load(SeqCst)
    }

    fn ended(&self) -> usize {
        self.shared.ended.load(SeqCst)
    }
}

fn serve_echo(mut conn: TcpStream, tls: Option<Arc<rustls::ServerConfig>>, shared: &EchoShared) {
    let Ok(handle) = conn.try_clone() else { return };
    match tls {
        None => session(conn, shared),
        Some(config) => {
            let Ok(mut server) = rustls::ServerConnection::new(config) else {
                return;
            };
            while server.is_handshaking() {
                if server.complete_io(&mut conn).is_err() {
                    return;
                }
            }
            session(rustls::StreamOwned::new(server, conn), shared);
        }
    }
    // The server closes the TCP connection once the session is over (RFC 6455 §7.1.1).
    let _ = handle.shutdown(Shutdown::Both);
}

/// Plain requests until one asks for a WebSocket, then an echo session.
fn session<S: Read + Write>(conn: S, shared: &EchoShared) {
    let mut r = BufReader::new(conn);
    loop {
        let Ok((start, headers)) = read_head(&mut r) else {
            return;
        };
        let path = start.split(' ').nth(1).unwrap_or("").to_string();
        let get = |n: &str| headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
        let Some(key) = get("sec-websocket-key") else {
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            continue;
        };
        shared
            .handshakes
            .lock()
            .unwrap()
            .push((path.clone(), headers.clone()));
        if path == "/refuse" {
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\nrefused");
            continue;
        }
        let mut head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
            derive_accept_key(key.as_bytes())
        );
        if let Some(protocols) = get("sec-websocket-protocol") {
            let first = protocols.split(',').next().unwrap_or("").trim();
            head.push_str(&format!("Sec-WebSocket-Protocol: {first}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if path == "/early" {
            // An unmasked text frame "early", in the same write as the 101.
            out.extend_from_slice(&[0x81, 5]);
            out.extend_from_slice(b"early");
        }
        if r.get_mut().write_all(&out).is_err() {
            return;
        }
        break;
    }
    let unread = r.buffer().to_vec();
    let mut ws = WebSocket::from_partially_read(r.into_inner(), unread, Role::Server, None);
    loop {
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str() == "close-please" => {
                let bye = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "bye".into(),
                };
                let _ = ws.close(Some(bye));
            }
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).is_err() {
                    break;
                }
            }
            // Pings are answered and a client's close is replied to by tungstenite.
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => {
                shared.closed.fetch_add(1, SeqCst);
                break;
            }
            Err(_) => break,
        }
    }
    shared.ended.fetch_add(1, SeqCst);
}

type Client = WebSocket<TcpStream>;
type Handshake = tungstenite::handshake::client::Response;

/// The client's handshake through sidekick on `path`.
fn try_open(
    sk: &Sidekick,
    path: &str,
    protocol: Option<&str>,
) -> tungstenite::Result<(Client, Handshake)> {
    let stream = TcpStream::connect(sk.addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut req = format!("ws://{}{path}", sk.addr)
        .into_client_request()
        .unwrap();
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    match tungstenite::client::client(req, stream) {
        Ok(done) => Ok(done),
        Err(HandshakeError::Failure(e)) => Err(e),
        Err(HandshakeError::Interrupted(_)) => panic!("handshake interrupted"),
    }
}

fn open(sk: &Sidekick, path: &str) -> Client {
    let (ws, res) = try_open(sk, path, None)
        .unwrap_or_else(|e| panic!("handshake: {e}; sidekick: {:?}", sk.log.lock().unwrap()));
    assert_eq!(res.status(), 101);
    ws
}

fn echo<S: Read + Write>(ws: &mut WebSocket<S>, msg: Message) {
    ws.send(msg.clone()).unwrap();
    let got = ws.read().unwrap();
    assert!(
        got == msg,
        "sent {} bytes, got back {:?}",
        msg.len(),
        short(&got)
    );
}

fn short(m: &Message) -> String {
    let s = format!("{m:?}");
    s.chars().take(200).collect()
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Reads until the session ends, returning the messages that came first; panics
/// if the connection stays open past the socket's read timeout. The TCP connection
/// itself must be closed too.
fn read_until_closed<S: Read + Write>(ws: &mut WebSocket<S>) -> Vec<Message> {
    let mut got = Vec::new();
    loop {
        match ws.read() {
            Ok(m) => got.push(m),
            Err(tungstenite::Error::Io(e)) if timed_out(&e) => {
                panic!("the connection stayed open; got {got:?}")
            }
            Err(_) => break,
        }
    }
    match ws.get_mut().read(&mut [0; 1]) {
        Ok(0) => {}
        Ok(_) => panic!("bytes after the end of the session"),
        Err(e) => assert!(!timed_out(&e), "the TCP connection stayed open"),
    }
    got
}

/// sidekick in front of `echoes` (one site), health-checked on `health`'s port.
fn sidekick(health: &Backend, echoes: &[&Echo], extra: &[&str]) -> Sidekick {
    let port = health.addr.port().to_string();
    let site: Vec<String> = echoes.iter().map(|e| e.url()).collect();
    let site = site.join(",");
    let mut args = vec!["--health-port", port.as_str()];
    args.extend_from_slice(extra);
    args.push(&site);
    let sk = Sidekick::start(&args);
    sk.wait_up(echoes.len());
    sk
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn text_and_binary_messages_echo_through_with_the_handshake_headers_kept() {
    let health = Backend::start("health");
    let e = Echo::start();
    let sk = sidekick(&health, &[&e], &[]);
    let (mut ws, res) = try_open(&sk, "/chat?room=1", Some("chat, superchat")).unwrap();
    assert_eq!(res.status(), 101);
    assert_eq!(res.headers()["upgrade"], "websocket");
    assert_eq!(res.headers()["sec-websocket-protocol"], "chat");
    echo(&mut ws, Message::text("hello, world"));
    echo(&mut ws, Message::binary(vec![0u8, 1, 2, 255, 0]));
    echo(&mut ws, Message::text("ünïcödé"));
    ws.send(Message::Ping(b"p".to_vec().into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Pong(b"p".to_vec().into()));

    // The backend got the upgrade with Connection and Upgrade, and the usual rest.
    let (path, seen) = e.handshakes().pop().unwrap();
    assert_eq!(path, "/chat?room=1");
    assert_eq!(header(&seen, "upgrade"), Some("websocket"));
    assert_eq!(header(&seen, "connection"), Some("upgrade"));
    assert_eq!(header(&seen, "host"), Some(sk.addr.to_string().as_str()));
    assert_eq!(header(&seen, "sec-websocket-version"), Some("13"));
    assert!(header(&seen, "sec-websocket-key").is_some());
    assert_eq!(header(&seen, "x-forwarded-for"), Some("127.0.0.1"));

    // A frame that comes in the backend's first write with the 101 is not lost.
    let mut early = open(&sk, "/early");
    assert_eq!(early.read().unwrap(), Message::text("early"));
    echo(&mut early, Message::text("after"));
}

#[test]
fn a_10_mib_message_echoes_whole_in_bounded_memory() {
    let health = Backend::start("health");
    let e = Echo::start();
    let sk = sidekick(&health, &[&e], &[]);
    let mut ws = open(&sk, "/big");
    let mut data = Vec::with_capacity(10 << 20);
    write_pattern(&mut data, 10 << 20).unwrap();
    ws.send(Message::binary(data.clone())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(got) => {
            assert_eq!(got.len(), data.len());
            assert!(got == data, "the echo differs");
        }
        other => panic!("got {}", short(&other)),
    }
    let peak = sk.peak_rss_kib();
    assert!(peak < 64 * 1024, "sidekick peaked at {peak} KiB");
}

#[test]
fn the_close_handshake_works_from_either_side_and_frees_the_backend() {
    let health = Backend::start("health");
    let e = Echo::start();
    let sk = sidekick(&health, &[&e], &[]);
    let url = e.url();

    // The client closes.
    let mut ws = open(&sk, "/a");
    echo(&mut ws, Message::text("one"));
    ws.close(None).unwrap();
    let got = read_until_closed(&mut ws);
    assert!(
        matches!(got.last(), Some(Message::Close(_))),
        "no close reply: {got:?}"
    );
    wait_for("the backend's clean close", LIMIT, || e.closed() == 1);

    // The backend closes.
    let mut ws = open(&sk, "/b");
    ws.send(Message::text("close-please")).unwrap();
    let got = read_until_closed(&mut ws);
    match got.as_slice() {
        [Message::Close(Some(frame))] => {
            assert_eq!(
                (frame.code, frame.reason.as_str()),
                (CloseCode::Normal, "bye")
            );
        }
        other => panic!("expected the backend's close frame, got {other:?}"),
    }
    wait_for("the backend's clean close", LIMIT, || e.closed() == 2);
    wait_for("nothing in flight", LIMIT, || {
        sk.sample("sidekick_in_flight_requests", &url) == Some(0.0)
            && sk.sample("sidekick_upgraded_connections", &url) == Some(0.0)
    });
}

#[test]
fn a_backend_that_refuses_the_upgrade_is_relayed_as_an_ordinary_response() {
    let health = Backend::start("health");
    let e = Echo::start();
    let sk = sidekick(&health, &[&e], &[]);
    match try_open(&sk, "/refuse", None) {
        Err(tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 403);
            assert_eq!(res.body().as_deref(), Some(&b"refused"[..]));
        }
        Err(other) => panic!("expected the backend's 403, got {other}"),
        Ok(_) => panic!("a refused upgrade switched"),
    }

    // A backend that knows nothing of WebSocket answers as it would any GET: the
    // answer passes as it is, then the connection closes (its body was the tunnel's).
    let plain = Backend::start("plain");
    let sk = Sidekick::start(&[&plain.url()]);
    wait_for("up", LIMIT, || sk.health() == 200);
    let raw = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut stream = TcpStream::connect(sk.addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.write_all(raw).unwrap();
    let mut r = BufReader::new(stream);
    let res = read_response(&mut r, false).unwrap();
    assert_eq!((res.status, res.text().as_str()), (200, "plain"));
    assert_eq!(res.header("upgrade"), None);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    let seen = plain.last_seen();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(seen.header("connection"), Some("upgrade"));
    assert_eq!(
        seen.header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
}

#[test]
fn only_websocket_handshakes_are_switched() {
    let plain = Backend::start("plain");
    let sk = Sidekick::start(&[&plain.url()]);
    wait_for("up", LIMIT, || sk.health() == 200);

    // h2c is not switched: the request is forwarded without its Upgrade.
    let h2c = b"GET /h2c HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let res = raw_request(sk.addr, h2c, false);
    assert_eq!(res.status, 200);
    let seen = plain.last_seen();
    assert_eq!(seen.target, "/h2c");
    for gone in ["upgrade", "connection", "http2-settings"] {
        assert!(seen.header(gone).is_none(), "{gone}: {}", seen.raw_head);
    }

    // What cannot be a WebSocket handshake never reaches the backend.
    let hits = plain.hits();
    let cases: [(&str, &[u8], u16); 6] = [
        ("HTTP/1.0", b"GET /ws HTTP/1.0\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 400),
        ("no Connection: upgrade", b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", 400),
        ("POST", b"POST /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 400),
        ("a body", b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello", 400),
        ("two Upgrades", b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n\r\n", 400),
        ("CONNECT", b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 501),
    ];
    for (what, raw, status) in cases {
        assert_eq!(raw_request(sk.addr, raw, false).status, status, "{what}");
    }
    assert_eq!(plain.hits(), hits, "{:?}", plain.seen());
}

#[test]
fn a_backend_killed_mid_session_closes_the_clients_connection() {
    let health = Backend::start("health");
    let e = Echo::start();
    let sk = sidekick(&health, &[&e], &[]);
    let mut ws = open(&sk, "/doomed");
    echo(&mut ws, Message::text("before"));
    e.kill();
    let got = read_until_closed(&mut ws);
    assert!(got.is_empty(), "{got:?}");
    wait_for("nothing in flight", LIMIT, || {
        sk.sample("sidekick_in_flight_requests", &e.url()) == Some(0.0)
    });
}

#[test]
fn the_idle_limit_closes_a_silent_connection_but_not_a_busy_one() {
    let health = Backend::start("health");
    let e = Echo::start();
    let sk = sidekick(&health, &[&e], &["--upgrade-idle-timeout", "1s"]);
    let mut ws = open(&sk, "/idle");
    // Three times the limit, with a message every quarter of it: the pause paces the
    // traffic, it waits for nothing.
    for i in 0..12 {
        echo(&mut ws, Message::text(format!("tick {i}")));
        thread::sleep(Duration::from_millis(250));
    }
    let got = read_until_closed(&mut ws);
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn sigterm_keeps_an_open_websocket_until_the_drain_deadline() {
    let health = Backend::start("health");
    let e = Echo::start();
    let mut sk = sidekick(&health, &[&e], &["--drain-timeout", "2s"]);
    let mut ws = open(&sk, "/drain");
    echo(&mut ws, Message::text("before"));
    sk.signal("TERM");
    let addr = sk.addr;
    wait_for("listener closed", LIMIT, || {
        TcpStream::connect(addr).is_err()
    });
    // Draining leaves the session alone...
    echo(&mut ws, Message::text("while draining"));
    // ...until the drain deadline closes it.
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    let got = read_until_closed(&mut ws);
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(sk.wait_exit(LIMIT), Some(0));
}

#[test]
fn metrics_and_trace_count_upgraded_connections_and_least_spreads_them() {
    let health = Backend::start("health");
    let (a, b) = (Echo::start(), Echo::start());
    let sk = sidekick(&health, &[&a, &b], &["--trace", "application", "--json"]);
    // An open session counts in flight: the second goes to the other backend.
    let mut one = open(&sk, "/one");
    let mut two = open(&sk, "/two");
    echo(&mut two, Message::text("two"));
    assert_eq!((a.handshakes().len(), b.handshakes().len()), (1, 1));
    let (first, second) = match a.handshakes()[0].0.as_str() {
        "/one" => (&a, &b),
        _ => (&b, &a),
    };
    for e in [first, second] {
        let url = e.url();
        assert_eq!(sk.sample("sidekick_in_flight_requests", &url), Some(1.0));
        assert_eq!(sk.sample("sidekick_upgraded_connections", &url), Some(1.0));
        assert_eq!(sk.sample("sidekick_upgrades_total", &url), Some(1.0));
    }

    echo(&mut one, Message::binary(vec![7u8; 1000]));
    one.close(None).unwrap();
    read_until_closed(&mut one);
    let url = first.url();
    wait_for("the first session over", LIMIT, || {
        sk.sample("sidekick_in_flight_requests", &url) == Some(0.0)
            && sk.sample("sidekick_upgraded_connections", &url) == Some(0.0)
    });
    // Bytes both ways, frame headers and close frames included.
    assert!(sk.sample("sidekick_rx_bytes_total", &url) >= Some(1000.0));
    assert!(sk.sample("sidekick_tx_bytes_total", &url) >= Some(1000.0));
    // The latency is the handshake's, recorded once.
    assert_eq!(
        sk.sample("sidekick_request_duration_seconds_count", &url),
        Some(1.0)
    );
    assert_eq!(sk.sample("sidekick_upgrades_total", &url), Some(1.0));

    let line = || {
        sk.out
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["path"] == "/one")
    };
    wait_for("the trace line of the first session", LIMIT, || {
        line().is_some()
    });
    let v = line().unwrap();
    assert_eq!(v["status"], 101, "{v}");
    assert_eq!(v["backend"], url.as_str(), "{v}");
    assert!(v["bytes_in"].as_u64() >= Some(1000), "{v}");
    assert!(v["bytes_out"].as_u64() >= Some(1000), "{v}");
    assert!(v["error"].is_null(), "{v}");

    // The second session is still open and still in flight.
    echo(&mut two, Message::text("still here"));
    assert_eq!(
        sk.sample("sidekick_in_flight_requests", &second.url()),
        Some(1.0)
    );
}

#[test]
fn a_client_that_goes_away_ends_the_backends_session() {
    let health = Backend::start("health");
    let e = Echo::start();
    let sk = sidekick(&health, &[&e], &[]);
    let mut ws = open(&sk, "/gone");
    echo(&mut ws, Message::text("hello"));
    // No close frame: the client's socket just closes.
    drop(ws);
    wait_for("the backend's session to end", LIMIT, || e.ended() == 1);
    assert_eq!(e.closed(), 0);
    wait_for("nothing in flight", LIMIT, || {
        sk.sample("sidekick_in_flight_requests", &e.url()) == Some(0.0)
            && sk.sample("sidekick_upgraded_connections", &e.url()) == Some(0.0)
    });
}

#[test]
fn an_upgrade_that_cannot_connect_is_retried_on_another_backend() {
    let health = Backend::start("health");
    let (a, b) = (Echo::start(), Echo::start());
    let sk = sidekick(&health, &[&a, &b], &[]);
    // The first session makes its backend the busier one...
    let mut first = open(&sk, "/first");
    let (busy, idle) = match a.handshakes().len() {
        1 => (&a, &b),
        _ => (&b, &a),
    };
    // ...so the next upgrade picks the other, which is dead but still checked up
    // (its health is answered elsewhere).
    idle.kill();
    wait_for("the dead backend's port closed", LIMIT, || {
        TcpStream::connect(idle.server.addr).is_err()
    });
    let mut second = open(&sk, "/second");
    echo(&mut second, Message::text("retried"));
    let paths: Vec<String> = busy.handshakes().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["/first", "/second"]);
    assert_eq!(sk.sample("sidekick_retries_total", &idle.url()), Some(1.0));
    wait_for("the dead backend marked down", LIMIT, || {
        sk.log_contains(&format!("{} is down", idle.url()))
    });
    echo(&mut first, Message::text("untouched"));
}

#[test]
fn wss_through_tls_on_both_sides() {
    let dir = crate::common::tls::TempDir::new("wss");
    let ca = crate::common::tls::Ca::new("backend CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let issued = ca.issue(&["127.0.0.1"]);
    let health = crate::common::tls::https_backend("health", issued.server_config());
    let e = Echo::start_tls(issued.server_config());
    let (cert, key) =
        crate::common::tls::Issued::self_signed(&["localhost"]).write(dir.path(), "front");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let cacert = dir.arg("ca.pem");
    let sk = sidekick(
        &health,
        &[&e],
        &["--cacert", &cacert, "--cert", cert, "--key", key],
    );
    let config =
        crate::common::tls::client_config(None, rustls::ALL_VERSIONS, &[b"http/1.1".as_slice()]);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = rustls::ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(sk.addr).unwrap();
    tcp.set_read_timeout(Some(LIMIT)).unwrap();
    let stream = rustls::StreamOwned::new(tls, tcp);
    let req = format!("wss://localhost:{}/secure", sk.addr.port())
        .into_client_request()
        .unwrap();
    let (mut ws, res) = match tungstenite::client::client(req, stream) {
        Ok(done) => done,
        Err(e) => panic!("handshake: {e}"),
    };
    assert_eq!(res.status(), 101);
    echo(&mut ws, Message::text("secret"));
    let mut data = Vec::new();
    write_pattern(&mut data, 1 << 20).unwrap();
    echo(&mut ws, Message::binary(data));
    assert_eq!(e.handshakes()[0].0, "/secure");
    ws.close(None).unwrap();
    let got = read_until_closed(&mut ws);
    assert!(matches!(got.last(), Some(Message::Close(_))), "{got:?}");
    wait_for("the backend's clean close", LIMIT, || e.closed() == 1);
}

/// Sets the soft open-file limit of the running process `pid` (`None`: unlimited),
/// keeping its hard one (read from `/proc`, as prlimit cannot only read another's).
fn set_soft_nofile(pid: u32, soft: Option<u64>) {
    use rustix::process::{prlimit, Pid, Resource, Rlimit};
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let hard = match line.split_whitespace().nth(4).unwrap() {
        "unlimited" => None,
        n => Some(n.parse::<u64>().unwrap()),
    };
    let current = match (soft, hard) {
        (Some(s), Some(h)) => Some(s.min(h)),
        (s, None) => s,
        (None, h) => h,
    };
    let pid = Pid::from_raw(pid as i32);
    let new = Rlimit {
        current,
        maximum: hard,
    };
    prlimit(pid, Resource::Nofile, new).unwrap_or_else(|e| panic!("prlimit: {e}"));
}

/// A client connection sidekick has accepted: one of its own requests answered on it.
fn accepted(sk: &Sidekick) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(sk.addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut r = BufReader::new(stream);
    r.get_mut()
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let status = read_response(&mut r, false).unwrap().status;
    assert_eq!(status, 200, "{:?}", sk.log.lock().unwrap());
    r
}

#[test]
fn out_of_open_files_an_upgrade_is_refused_503_and_the_backend_stays_up() {
    let health = Backend::start("health");
    let e = Echo::start();
    // Optimistic: an up backend is not checked, so no health check fails meanwhile.
    let sk = sidekick(&health, &[&e], &["--health-optimistic"]);
    // Connections accepted before sidekick runs out of files: it cannot accept then.
    let mut upgrade = accepted(&sk);
    let mut plain = accepted(&sk);

    // No file left: a connection to the backend fails with EMFILE.
    set_soft_nofile(sk.pid(), Some(0));
    upgrade
        .get_mut()
        .write_all(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .unwrap();
    let refused = read_response(&mut upgrade, false);
    // A plain request on the same rule.
    plain
        .get_mut()
        .write_all(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let plain_refused = read_response(&mut plain, false);
    set_soft_nofile(sk.pid(), None);

    for (what, res) in [("upgrade", refused), ("request", plain_refused)] {
        let res = res.unwrap_or_else(|err| panic!("{what}: no answer: {err}"));
        assert_eq!(res.status, 503, "{what}: {}", res.text());
        assert!(
            res.text().contains("<Code>SlowDown</Code>"),
            "{}",
            res.text()
        );
    }
    assert!(e.handshakes().is_empty(), "{:?}", e.handshakes());
    wait_for("the cause in the log", LIMIT, || {
        sk.log_contains("GET /ws: no backend connection, sidekick is out of open files")
    });
    // The backend was never blamed: still up (the Pool answers the scrape after any
    // failure sent before the 503), and the next upgrade reaches it.
    assert_eq!(sk.sample("sidekick_up", &e.url()), Some(1.0));
    assert!(!sk.log_contains("is down"), "{:?}", sk.log.lock().unwrap());
    let mut ws = open(&sk, "/after");
    echo(&mut ws, Message::text("served"));
}
