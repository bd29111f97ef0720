//! The HTTP server, wired from actix-server, actix-tls and actix-http as actix-web's
//! `HttpServer` wires them (same timeouts, limits, ALPN and graceful shutdown), with
//! one difference that `HttpServer` has no hook for: every HTTP/1 connection is read
//! through `conn::watched`, which has actix-http refuse a bare LF in a chunked
//! trailer section instead of reading the request behind it as trailer lines.

use std::any::Any;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::{Extensions, HttpService, Protocol, Request, Response};
use actix_server::{GracefulShutdownSignal, ServerBuilder};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt,
};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::AppConfig;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::conn::watched::Watched;

/// Called with each new connection (its TCP or TLS stream) and its data.
pub type OnConnect = Arc<dyn Fn(&dyn Any, &mut Extensions) + Send + Sync>;

/// How the server runs.
#[derive(Clone)]
pub struct Settings {
    pub workers: usize,
    /// Connections each worker serves at once.
    pub max_connections: usize,
    /// Whole seconds in-flight requests get to finish on a graceful stop.
    pub shutdown_timeout: u64,
    pub keep_alive: Duration,
    /// Time a new connection gets to send its first request head.
    pub client_request_timeout: Duration,
    pub on_connect: OnConnect,
}

/// actix-web's default: time a closing connection gets to shut down cleanly.
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A server for `listeners`, over TLS when `tls` is given, serving the application
/// that `app` makes for each worker. Returns it ready to run, with the addresses it
/// listens on.
pub fn build<F, I, S, B>(
    listeners: Vec<TcpListener>,
    tls: Option<&ServerConfig>,
    settings: Settings,
    app: F,
) -> std::io::Result<(ServerBuilder, Vec<SocketAddr>)>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let mut builder = ServerBuilder::default()
        .workers(settings.workers)
        .max_concurrent_connections(settings.max_connections)
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout);
    let shutdown = builder.graceful_shutdown_signal();
    let tls = tls.map(with_alpn);
    let mut addrs = Vec::new();
    for listener in listeners {
        let addr = listener.local_addr()?;
        addrs.push(addr);
        let name = format!("sidekick-{addr}");
        let (app, settings, shutdown) = (app.clone(), settings.clone(), shutdown.clone());
        builder = match tls.clone() {
            None => builder.listen(name, listener, move || {
                fn_service(|io: TcpStream| async move {
                    let peer = io.peer_addr().ok();
                    Ok::<_, ()>((Watched::http1(io), Protocol::Http1, peer))
                })
                .and_then(http(&settings, &shutdown, addr, app()))
            })?,
            Some(tls) => builder.listen(name, listener, move || {
                Acceptor::new(ServerConfig::clone(&tls))
                    .map_err(drop)
                    .and_then(fn_service(|io: TlsStream<TcpStream>| async move {
                        let peer = io.get_ref().0.peer_addr().ok();
                        Ok::<_, ()>(match io.get_ref().1.alpn_protocol() {
                            Some(b"h2") => (Watched::http2(io), Protocol::Http2, peer),
                            _ => (Watched::http1(io), Protocol::Http1, peer),
                        })
                    }))
                    .and_then(http(&settings, &shutdown, addr, app()))
            })?,
        };
    }
    Ok((builder, addrs))
}

/// actix-http's HTTP/1 and HTTP/2 service for one worker, on connections of `T`.
fn http<T, I, S, B>(
    settings: &Settings,
    shutdown: &GracefulShutdownSignal,
    addr: SocketAddr,
    app: I,
) -> impl ServiceFactory<
    (Watched<T>, Protocol, Option<SocketAddr>),
    Config = (),
    Response = (),
    Error = (),
    InitError = (),
>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let on_connect = settings.on_connect.clone();
    let shutdown = shutdown.clone();
    let app = app.into_factory().map_err(|e| e.into().error_response());
    HttpService::build()
        // Lets a stop close idle keep-alive connections at once.
        .graceful_shutdown_signal(move || {
            let shutdown = shutdown.clone();
            async move { shutdown.notified().await }
        })
        .keep_alive(settings.keep_alive)
        .client_request_timeout(settings.client_request_timeout)
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        .local_addr(addr)
        .on_connect_ext(move |io: &Watched<T>, data: &mut Extensions| {
            on_connect(io.get_ref() as &dyn Any, data)
        })
        // sidekick reads nothing of the AppConfig (no connection_info, no url_for).
        .finish(map_config(app, |_| AppConfig::default()))
        .map_err(drop)
}

/// `config` offering h2 and http/1.1 by ALPN, ahead of what it offers already.
fn with_alpn(config: &ServerConfig) -> Arc<ServerConfig> {
    let mut config = config.clone();
    let mut protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    protocols.append(&mut config.alpn_protocols);
    config.alpn_protocols = protocols;
    Arc::new(config)
}
