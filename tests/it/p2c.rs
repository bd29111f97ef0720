//! `--host-balance p2c`: traffic leaves a slow backend and comes back when it has
//! recovered; a backend shedding load (429, 503 SlowDown) is left alone for as long
//! as it asks. Each backend is a raw server written here, with switches for its
//! answers, counting what reaches it.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::common::raw_server::{no_body, serve_requests, RawServer};
use crate::common::*;

const LONG: Duration = Duration::from_secs(20);

/// How a node answers requests other than its readiness checks.
#[derive(Default)]
struct Switches {
    /// Each answer waits this long first (milliseconds).
    delay_ms: AtomicU64,
    /// Non-zero: every answer is this status, shedding load, with this Retry-After
    /// (`u64::MAX`: none).
    shed_status: AtomicU64,
    retry_after: AtomicU64,
    hits: AtomicUsize,
}

struct Node {
    switches: Arc<Switches>,
    _server: RawServer,
    url: String,
}

impl Node {
    fn start(name: &'static str) -> Node {
        let switches = Arc::new(Switches::default());
        let s = switches.clone();
        let server = RawServer::on_free_port(move |conn| {
            serve_requests(conn, |req, w| {
                if req.path() == "/health/ready" {
                    no_body(w, "200 OK")?;
                    return Ok(true);
                }
                s.hits.fetch_add(1, SeqCst);
                let delay = s.delay_ms.load(SeqCst);
                if delay > 0 {
                    thread::sleep(Duration::from_millis(delay));
                }
                match s.shed_status.load(SeqCst) {
                    0 => write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{name}")?,
                    status => {
                        let reason = if status == 429 {
                            "Too Many Requests"
                        } else {
                            "Service Unavailable"
                        };
                        let body = "<Error><Code>SlowDown</Code></Error>";
                        write!(w, "HTTP/1.1 {status} {reason}\r\n")?;
                        match s.retry_after.load(SeqCst) {
                            u64::MAX => {}
                            secs => write!(w, "Retry-After: {secs}\r\n")?,
                        }
                        write!(w, "Content-Length: {}\r\n\r\n{body}", body.len())?;
                    }
                }
                Ok(true)
            })
        });
        let url = format!("http://{}", server.addr);
        Node {
            switches,
            _server: server,
            url,
        }
    }

    fn hits(&self) -> usize {
        self.switches.hits.load(SeqCst)
    }
}

/// Four nodes and a sidekick balancing over them with `policy`, every node up.
fn start(policy: &str) -> (Vec<Node>, Sidekick) {
    let nodes: Vec<Node> = ["n0", "n1", "n2", "n3"].map(Node::start).into();
    let site = nodes
        .iter()
        .map(|n| n.url.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let sk = Sidekick::start(&["--host-balance", policy, &site]);
    sk.wait_up(4);
    (nodes, sk)
}

/// A client on one kept connection, one request at a time: traffic at the pace of
/// the answers, as an application's reads come, with no request in flight when the
/// next is picked for (with some always in flight, `least` would avoid a slow node
/// too; a paced load is where it does not).
struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, conn: None }
    }

    fn get(&mut self) -> u16 {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => BufReader::new(TcpStream::connect(self.addr).expect("connect to sidekick")),
        };
        conn.get_mut()
            .write_all(b"GET /obj HTTP/1.1\r\nHost: test.local\r\n\r\n")
            .expect("send");
        let resp = read_response(&mut conn, false).expect("an answer");
        if resp.header("connection") != Some("close") {
            self.conn = Some(conn);
        }
        resp.status
    }
}

#[test]
fn p2c_moves_traffic_off_a_slow_node_and_back_when_it_recovers() {
    let (nodes, sk) = start("p2c");
    nodes[0].switches.delay_ms.store(100, SeqCst);
    let mut client = Client::new(sk.addr);
    for _ in 0..300 {
        assert_eq!(client.get(), 200);
    }
    // Its first answer shows it slow; it is tried again only once that has decayed
    // below the others' (seconds), so it serves a request or two of these 300
    // (`least` and `random` send it a quarter).
    let slow = nodes[0].hits();
    assert!(slow <= 6, "the slow node served {slow} of 300 requests");

    // Fast again: once tried, it is back in the rotation.
    nodes[0].switches.delay_ms.store(0, SeqCst);
    wait_until(
        "the recovered node to win traffic back",
        Duration::from_secs(90),
        || {
            for _ in 0..4 {
                assert_eq!(client.get(), 200);
            }
            let since = nodes[0].hits() - slow;
            (since >= 30).then_some(()).ok_or(format!(
                "it served {since} since it recovered; the others {:?}",
                nodes[1..].iter().map(Node::hits).collect::<Vec<_>>()
            ))
        },
    );
}

/// A node answering `status` with `retry_after` seconds (`None`: no header) to every
/// request gets few of them while it asks to be left alone, and its share back when
/// it answers again.
fn shedding_node_is_left_alone(status: u64, retry_after: Option<u64>) {
    let (nodes, sk) = start("p2c");
    let shedding = &nodes[0].switches;
    shedding
        .retry_after
        .store(retry_after.unwrap_or(u64::MAX), SeqCst);
    shedding.shed_status.store(status, SeqCst);
    let mut client = Client::new(sk.addr);
    let mut refused = 0;
    for _ in 0..200 {
        if client.get() != 200 {
            refused += 1;
        }
    }
    // One request per window it asks for (a second or more; these 200 take well under
    // a second here), where `least` and `random` send it a quarter.
    let shed = nodes[0].hits();
    assert!(
        shed <= 8,
        "{status} with Retry-After {retry_after:?}: the shedding node got {shed} of 200"
    );
    assert!(refused <= shed, "{refused} refused");

    shedding.shed_status.store(0, SeqCst);
    wait_until("the node to serve again", LONG, || {
        for _ in 0..4 {
            assert_eq!(client.get(), 200);
        }
        let since = nodes[0].hits() - shed;
        (since >= 30)
            .then_some(())
            .ok_or(format!("it served {since} since it stopped shedding"))
    });
}

#[test]
fn p2c_leaves_a_node_answering_429_alone_for_its_retry_after() {
    shedding_node_is_left_alone(429, Some(3));
}

#[test]
fn p2c_leaves_a_node_answering_503_slowdown_alone_for_a_second() {
    shedding_node_is_left_alone(503, None);
}
