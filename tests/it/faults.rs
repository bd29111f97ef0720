//! Faults: backends that die under load, hang, drop packets or hang up; clients that
//! crawl. sidekick keeps serving and loses nothing it could have saved.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::*;

const LONG: Duration = Duration::from_secs(30);

/// Never answers, keeps the connection open.
fn hang(mut conn: TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
}

/// Reads the request head and hangs up without answering.
fn hang_up(mut conn: TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = conn.read(&mut buf);
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

#[test]
fn killing_one_of_four_backends_under_load_loses_no_request() {
    let mut backends: Vec<Backend> = (0..4).map(|i| Backend::start(&format!("k{i}"))).collect();
    let site = backends
        .iter()
        .map(Backend::url)
        .collect::<Vec<_>>()
        .join(",");
    let sk = Sidekick::start(&["--health-duration", "200ms", &site]);
    sk.wait_up(4);
    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (done, sent, errors, addr) = (done.clone(), sent.clone(), errors.clone(), sk.addr);
            thread::spawn(move || {
                // Keep-alive connection, reopened only if sidekick closes it.
                let mut conn: Option<(TcpStream, std::io::BufReader<TcpStream>)> = None;
                while !done.load(SeqCst) {
                    let (w, r) = conn.get_or_insert_with(|| {
                        let s = TcpStream::connect(addr).unwrap();
                        (s.try_clone().unwrap(), std::io::BufReader::new(s))
                    });
                    let result = w
                        .write_all(b"GET /obj HTTP/1.1\r\nHost: h\r\n\r\n")
                        .and_then(|_| read_response(r, false));
                    sent.fetch_add(1, SeqCst);
                    match result {
                        Ok(resp) if resp.status == 200 => {}
                        Ok(resp) => errors
                            .lock()
                            .unwrap()
                            .push(format!("status {}", resp.status)),
                        Err(e) => {
                            errors.lock().unwrap().push(format!("socket: {e}"));
                            conn = None;
                        }
                    }
                }
            })
        })
        .collect();
    wait_for("load running", LONG, || sent.load(SeqCst) > 500);
    backends[1].kill();
    let at_kill = sent.load(SeqCst);
    wait_for("load after kill", LONG, || {
        sent.load(SeqCst) > at_kill + 1000
    });
    backends[1].restart();
    let at_restart = backends[1].hits();
    wait_for("k1 serves again", LONG, || {
        backends[1].hits() > at_restart + 10
    });
    done.store(true, SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} of {} requests failed: {:?}",
        errors.len(),
        sent.load(SeqCst),
        &errors[..errors.len().min(5)]
    );
}

/// A faulty backend that still passes its health checks (its readiness responder is
/// healthy) next to a good one: requests must move on from the faulty one.
struct FaultySite {
    faulty: SocketAddr,
    _ready: Backend,
    good: Backend,
    health_port: u16,
}

impl FaultySite {
    fn new(faulty: SocketAddr) -> Self {
        // One --health-port for both: each endpoint has its own loopback address.
        let good = Backend::start_on("good", "127.0.0.3:0".parse().unwrap());
        let health_port = good.addr.port();
        let ready = Backend::start_on(
            "ready",
            format!("{}:{health_port}", faulty.ip()).parse().unwrap(),
        );
        FaultySite {
            faulty,
            _ready: ready,
            good,
            health_port,
        }
    }

    fn start(&self, flags: &[&str]) -> Sidekick {
        let port = self.health_port.to_string();
        let site = format!("http://{},{}", self.faulty, self.good.url());
        let args = [
            flags,
            &[
                "--health-port",
                &port,
                "--health-duration",
                "1h",
                "--host-balance",
                "random",
                &site,
            ],
        ]
        .concat();
        let sk = Sidekick::start(&args);
        sk.wait_up(2);
        sk
    }
}

fn on(ip: &str, act: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || act(conn));
        }
    });
    addr
}

#[test]
fn a_backend_that_never_answers_is_left_behind_within_the_response_timeout() {
    let site = FaultySite::new(on("127.0.0.2", hang));
    let sk = site.start(&["--response-timeout", "300ms"]);
    for _ in 0..20 {
        let resp = sk.get("/x");
        assert_eq!((resp.status, resp.text().as_str()), (200, "good"));
    }
    wait_for("logged", LONG, || {
        sk.log_contains(&format!("http://{} is down", site.faulty))
    });
}

#[test]
fn a_blackholed_backend_times_out_on_connect_and_requests_move_on() {
    // A listener whose accept queue is full drops new SYNs: connects hang as they
    // do to a blackholed host.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let hole = socket.local_addr().unwrap().as_socket().unwrap();
    let _fill: Vec<_> = (0..4)
        .filter_map(|_| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
            s.set_nonblocking(true).ok()?;
            let _ = s.connect(&hole.into());
            Some(s)
        })
        .collect();
    let site = FaultySite::new(hole);
    let sk = site.start(&["--connect-timeout", "200ms"]);
    for _ in 0..20 {
        let resp = sk.get("/x");
        assert_eq!((resp.status, resp.text().as_str()), (200, "good"));
    }
    wait_for("logged", LONG, || {
        sk.log_contains(&format!("http://{hole} is down"))
    });
}

#[test]
fn idempotent_requests_with_small_bodies_are_retried_posts_are_not() {
    let site = FaultySite::new(on("127.0.0.2", hang_up));
    let sk = site.start(&[]);
    // A PUT that lands on the backend that hangs up is retried on the good one.
    for _ in 0..10 {
        let resp = request(sk.addr, "PUT", "/upload", &[], b"small body");
        assert_eq!(resp.text(), format!("10 {}", sha256(b"small body")));
    }
    wait_for("logged", LONG, || {
        sk.log_contains(&format!("http://{} is down", site.faulty))
    });

    // A POST may have been acted on: never sent twice, the client gets a 502.
    let site = FaultySite::new(on("127.0.0.2", hang_up));
    let sk = site.start(&[]);
    let mut statuses = Vec::new();
    while !sk.log_contains(&format!("http://{} is down", site.faulty)) {
        statuses.push(request(sk.addr, "POST", "/upload", &[], b"small body").status);
    }
    // Until the Pool has marked the faulty backend down, another POST may go to it
    // and get its own 502; none is sent on to the good one.
    let failed = statuses.iter().filter(|s| **s == 502).count();
    assert!(failed >= 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 502].contains(s)),
        "{statuses:?}"
    );
    let posts = site
        .good
        .seen()
        .iter()
        .filter(|s| s.method == "POST")
        .count();
    assert_eq!(posts, statuses.len() - failed, "a POST was sent twice");
}

#[test]
fn slowloris_clients_do_not_stop_normal_requests() {
    let b = Backend::start("s");
    let sk = Sidekick::start(&["--client-header-timeout", "2s", &b.url()]);
    wait_for("up", LONG, || sk.health() == 200);
    let mut slow: Vec<TcpStream> = (0..500)
        .filter_map(|_| TcpStream::connect(sk.addr).ok())
        .collect();
    assert!(
        slow.len() >= 450,
        "could open only {} connections",
        slow.len()
    );
    let head = b"GET /slow HTTP/1.1\r\nHost: h\r\nX-Pad: ";
    for round in 0..3 {
        for s in &mut slow {
            let _ = s.write_all(&head[round..=round]);
        }
        for _ in 0..10 {
            assert_eq!(sk.get("/x").status, 200, "round {round}");
        }
        // Paces the crawl: one byte per connection per second.
        thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(b.seen().iter().filter(|s| s.target == "/slow").count(), 0);
    // The crawlers are cut off by the header timeout: sidekick closes them.
    for s in slow.iter_mut().take(10) {
        s.set_read_timeout(Some(LONG)).unwrap();
        let mut rest = Vec::new();
        assert!(
            s.read_to_end(&mut rest).is_ok(),
            "a crawler was never cut off"
        );
    }
}

/// Reads a request head (and whatever body bytes came with it); answers health
/// checks itself, returning None for them.
fn head_unless_health(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    if head.starts_with(b"GET /health") {
        let _ =
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return None;
    }
    Some(head)
}

const TOO_LARGE: &[u8] =
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large";

/// Refuses every upload with 413 as soon as its head is in, without reading the
/// body, and closes, as servers do that reject an upload early.
fn refuse_upload(mut conn: TcpStream) {
    if head_unless_health(&mut conn).is_some() {
        let _ = conn.write_all(TOO_LARGE);
    }
    // Closed with the body unread: the kernel resets the connection.
}

/// Like `refuse_upload`, but keeps the connection open without reading the body, as
/// servers that linger before closing do; an interim 100 comes first.
fn refuse_upload_and_linger(mut conn: TcpStream) {
    if head_unless_health(&mut conn).is_none() {
        return;
    }
    let _ = conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    let _ = conn.write_all(TOO_LARGE);
    // Open, unread, until the test process ends.
    let _open = conn;
    loop {
        thread::park();
    }
}

/// Body bytes `accept_early` has read, over all its connections.
static EARLY_READ: AtomicUsize = AtomicUsize::new(0);

/// Answers 200 as soon as a request's head is in, then reads the whole body slowly:
/// an early answer that still takes the upload.
fn accept_early(mut conn: TcpStream) {
    let Some(head) = head_unless_health(&mut conn) else {
        return;
    };
    let body_start = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    EARLY_READ.fetch_add(head.len() - body_start, SeqCst);
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        EARLY_READ.fetch_add(n, SeqCst);
        // Paced, so that sidekick's writes wait for it with the answer in.
        thread::sleep(Duration::from_millis(1));
    }
}

/// PUTs `size` bytes through sidekick, the body written on a thread of its own while
/// the answer is read (which may come before the body is all out).
fn upload(sk: &Sidekick, size: usize) -> Response {
    let mut client = TcpStream::connect(sk.addr).unwrap();
    client.set_read_timeout(Some(LONG)).unwrap();
    client.set_write_timeout(Some(LONG)).unwrap();
    write!(
        client,
        "PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: {size}\r\n\r\n"
    )
    .unwrap();
    let mut w = client.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 16];
        for _ in 0..size >> 16 {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let resp = read_response(&mut std::io::BufReader::new(client), false).unwrap();
    writer.join().unwrap();
    resp
}

/// sidekick in front of one raw backend, up.
fn only(act: fn(TcpStream)) -> Sidekick {
    let sk = Sidekick::start(&[&format!("http://{}", on("127.0.0.1", act))]);
    wait_for("up", LONG, || sk.health() == 200);
    sk
}

#[test]
fn a_backend_refusing_an_upload_early_is_answered_not_blamed() {
    let sk = only(refuse_upload);
    // Streamed (larger than the retry buffer), and more than socket buffers hold, so
    // sidekick is still sending when the backend resets the connection. Once
    // blamed, the only backend would be down and the next upload a 502.
    for _ in 0..3 {
        let resp = upload(&sk, 64 << 20);
        assert_eq!((resp.status, resp.text().as_str()), (413, "too large"));
    }
}

#[test]
fn a_backend_refusing_an_upload_early_is_answered_while_it_lingers() {
    let sk = only(refuse_upload_and_linger);
    // Far more than the socket buffers hold: sidekick's writes stall, and the answer
    // must reach the client all the same (the interim 100 is skipped).
    let resp = upload(&sk, 64 << 20);
    assert_eq!((resp.status, resp.text().as_str()), (413, "too large"));
}

#[test]
fn an_early_answer_that_takes_the_body_gets_all_of_it() {
    let sk = only(accept_early);
    // Streamed, and read by the backend slower than sidekick sends it.
    const SIZE: usize = 16 << 20;
    let resp = upload(&sk, SIZE);
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    wait_for("the whole upload at the backend", LONG, || {
        EARLY_READ.load(SeqCst) >= SIZE
    });
    assert_eq!(EARLY_READ.load(SeqCst), SIZE);
}
