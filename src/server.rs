//! Binds the listen address, then wires the Pool actor, the per-worker clients and the
//! HTTP server (`http_server`) and runs until a signal stops it.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use actix::Actor;
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App};
use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};

use crate::cache::Cache;
use crate::config::{Config, Listen};
use crate::conn::conn_info::ConnInfo;
use crate::http_server::Settings;
use crate::pool::view::PoolView;
use crate::pool::Pool;
use crate::proxy::error::{raw_response, ProxyError};
use crate::proxy::handler as proxy;
use crate::proxy::shared::{Shared, Worker};

/// Pending connections the kernel may queue (nginx and HAProxy use similar figures).
const BACKLOG: i32 = 4096;

/// Binds every address of the listen spec. Called before anything else starts, so that
/// an address in use is a usage error (exit 2) naming it, with nothing served.
pub fn bind(spec: &Listen) -> Result<Vec<TcpListener>, String> {
    listen(spec).map_err(|(addr, e)| {
        let name = match addr {
            Some(addr) if addr.to_string() != spec.to_string() => format!("{spec} ({addr})"),
            _ => spec.to_string(),
        };
        format!("error: cannot listen on {name}: {}", reason(&e))
    })
}

fn reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        AddrInUse => "address already in use".into(),
        AddrNotAvailable => "no such address on this machine".into(),
        PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

pub async fn run(cfg: Config, listeners: Vec<TcpListener>) -> std::io::Result<()> {
    let capacity = crate::limits::apply(&cfg);
    crate::pool::preflight::check(&cfg);
    let tls = crate::tls::Serving::start(&cfg.tls, cfg.insecure, cfg.quiet)?;
    let certificates = tls.certificates();
    let view = Arc::new(ArcSwap::from_pointee(PoolView::default()));
    let pool = Pool::new(
        &cfg,
        view.clone(),
        Some(crate::observe::trace::health::health_check),
    )
    .start();
    let cache = start_cache(&cfg);
    let cache_pool = cache.as_ref().map(|c| c.store.pool.clone());
    let shared = web::Data::new(Shared::new(&cfg, view, pool.clone(), cache));
    let open = Arc::new(AtomicUsize::new(0));
    let max_conns = capacity.max_conns;
    let refusal: Arc<[u8]> = raw_response(ProxyError::TooManyConnections).into();
    let forward_loopback = cfg.forward_loopback_addr;
    let worker_cfg = cfg.clone();
    let traced = crate::observe::trace::requests_on();
    let app = move || {
        App::new()
            .wrap(Condition::new(
                traced,
                from_fn(crate::observe::trace::requests::middleware),
            ))
            .app_data(shared.clone())
            .app_data(certificates.clone())
            .app_data(web::Data::new(Worker::new(&worker_cfg)))
            .default_service(web::to(proxy::handle))
    };
    let settings = Settings {
        workers: cfg.workers,
        // Within the open-file limit, so that accepting never fails.
        max_connections: capacity.per_worker,
        // Whole seconds is all actix takes; a fraction rounds up.
        shutdown_timeout: cfg.drain_timeout.as_secs_f64().ceil() as u64,
        keep_alive: cfg.keepalive_timeout,
        client_request_timeout: cfg.client_header_timeout,
        on_connect: Arc::new(move |conn, data| {
            data.insert(ConnInfo::new(
                conn,
                open.clone(),
                max_conns,
                &refusal,
                forward_loopback,
            ));
        }),
    };
    let (server, addrs) = crate::http_server::build(listeners, tls.config(), settings, app)?;
    if !cfg.quiet {
        for addr in &addrs {
            eprintln!("sidekick listening on {addr}");
        }
    }
    let server = server.run();
    crate::signals::install(server.handle(), pool.clone())?;
    let _console = crate::observe::console::start(&cfg, pool, cache_pool, &addrs);
    server.await
}

/// The cache store's pool and the cache, when `--cache-endpoint` is set; the bucket
/// check runs in the background.
fn start_cache(cfg: &Config) -> Option<Arc<Cache>> {
    let view = Arc::new(ArcSwap::from_pointee(PoolView::default()));
    let pool = Pool::for_cache_store(cfg, view.clone())?.start();
    let cache = Arc::new(Cache::new(cfg.cache.clone()?, view, pool));
    crate::cache::startup::watch(cache.clone(), cfg);
    Some(cache)
}

/// A bind failure, with the socket address it happened on when there was one.
type ListenError = (Option<SocketAddr>, std::io::Error);

/// `:port` is one dual-stack socket when the machine has IPv6, else IPv4 only; a port
/// in use on IPv6 is in use, not a reason to fall back to IPv4.
fn listen(spec: &Listen) -> Result<Vec<TcpListener>, ListenError> {
    use std::io::ErrorKind::{AddrInUse, PermissionDenied};
    match spec {
        Listen::Any(port) => {
            let v6 = SocketAddr::from(([0u16; 8], *port));
            let v4 = SocketAddr::from(([0u8; 4], *port));
            match bind_one(v6) {
                Ok(l) => Ok(vec![l]),
                Err(e) if matches!(e.kind(), AddrInUse | PermissionDenied) => Err((None, e)),
                Err(_) => bind_one(v4).map(|l| vec![l]).map_err(|e| (None, e)),
            }
        }
        Listen::Host(host, port) => {
            let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| (None, e))?
                .collect();
            let mut listeners = Vec::new();
            let mut last_error = None;
            for addr in addrs {
                match bind_one(addr) {
                    Ok(l) => listeners.push(l),
                    Err(e) => last_error = Some((Some(addr), e)),
                }
            }
            match (listeners.is_empty(), last_error) {
                (true, Some(e)) => Err(e),
                (true, None) => Err((
                    None,
                    std::io::Error::other(format!("{host} has no address")),
                )),
                _ => Ok(listeners),
            }
        }
    }
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    let listener: TcpListener = socket.into();
    listener.set_nonblocking(true)?;
    Ok(listener)
}
