//! Serving TLS to clients: a `ServerConfig` whose certificate resolver hands out the
//! current certificate from an `ArcSwap`, and a watcher that swaps in rotated files.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::rt::net::TcpStream;
use actix_web::web;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::auto::Certificates;
use super::{pem, ServerTls, Source, Tls, TlsMax};

/// How often the certificate files are looked at.
const POLL: Duration = Duration::from_secs(1);

/// What the HTTP server needs from TLS, set up at start.
pub struct Serving {
    config: Option<ServerConfig>,
    certificates: web::Data<Certificates>,
}

impl Serving {
    /// Builds the server config, starts the certificate watcher (within the running
    /// actix system) and says at start what the operator must know: warnings found
    /// while loading, `--insecure`, and the fingerprints of a generated certificate.
    pub fn start(tls: &Tls, insecure: bool, quiet: bool) -> std::io::Result<Serving> {
        for warning in &tls.warnings {
            log::warn!("{warning}");
        }
        if insecure && !quiet {
            eprintln!(
                "warning: --insecure: certificates of https backends are not verified; \
                 anyone on the path can read and change the traffic"
            );
        }
        let Some(server) = &tls.server else {
            return Ok(Serving {
                config: None,
                certificates: web::Data::new(Certificates::default()),
            });
        };
        let resolver = Arc::new(Resolver(ArcSwap::new(server.key.clone())));
        let certificates = match &server.source {
            Source::Files {
                cert,
                key,
                password,
            } => {
                Watcher::new(cert, key, password.clone(), resolver.clone()).start();
                Certificates::default()
            }
            Source::Generated(generated) => {
                if !quiet {
                    eprintln!(
                        "sidekick generated a TLS certificate for {}: SHA-256 fingerprint {}",
                        generated.names.join(", "),
                        generated.fingerprint
                    );
                    eprintln!(
                        "sidekick TLS public key SHA-256 (SPKI, base64): {}",
                        generated.spki_sha256
                    );
                }
                Certificates(Some(generated.clone()))
            }
        };
        Ok(Serving {
            config: Some(server_config(server, resolver)?),
            certificates: web::Data::new(certificates),
        })
    }

    /// The rustls config for the listeners; `None` serves plain HTTP.
    pub fn config(&self) -> Option<&ServerConfig> {
        self.config.as_ref()
    }

    /// App data for `/v1/certificates`.
    pub fn certificates(&self) -> web::Data<Certificates> {
        self.certificates.clone()
    }
}

/// TLS 1.2 up to `--tls-max`. ALPN (h2, http/1.1) is added by actix-web itself.
fn server_config(server: &ServerTls, resolver: Arc<Resolver>) -> std::io::Result<ServerConfig> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match server.max {
        TlsMax::V1_2 => &[&rustls::version::TLS12],
        TlsMax::V1_3 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let config = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(versions)
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(config)
}

/// The TCP stream under a client connection, plain or TLS (for `on_connect`).
pub fn tcp_stream(conn: &dyn Any) -> Option<&TcpStream> {
    conn.downcast_ref::<TcpStream>().or_else(|| {
        conn.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<TcpStream>>()
            .map(|tls| tls.get_ref().0)
    })
}

/// Every handshake takes the current certificate: a rotation applies to the next
/// connection, and connections already open keep theirs.
#[derive(Debug)]
struct Resolver(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// What identifies one version of a file: where its path leads, and the inode, size
/// and times found there.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    target: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    // `metadata` follows symlinks, so a swapped `..data` link shows as another inode.
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        target: std::fs::canonicalize(path).ok()?,
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    })
}

/// Watches `--cert` and `--key` by polling their metadata every second.
///
/// Polling rather than inotify: certificates are rotated in several ways (rewritten in
/// place, renamed over, or — with Kubernetes secrets — by atomically re-pointing a
/// `..data` symlink at a new directory, so the watched files themselves never change).
/// Catching all of them with inotify means watching parent directories, following
/// symlink chains and re-arming watches on replaced inodes; one `stat` of each resolved
/// path per second catches them all, costs nothing, and a rotation is served at most a
/// second later.
///
/// Files are read and the key decrypted on a blocking thread: an encrypted key takes
/// about a second (scrypt), and this actor shares its thread with the Pool and the
/// health checks, which must not wait for it.
struct Watcher {
    cert: PathBuf,
    key: PathBuf,
    password: Option<String>,
    seen: [Option<Stamp>; 2],
    resolver: Arc<Resolver>,
    /// A reload is under way: the next one waits for it.
    loading: bool,
}

impl Watcher {
    fn new(cert: &Path, key: &Path, password: Option<String>, resolver: Arc<Resolver>) -> Self {
        Watcher {
            seen: [stamp(cert), stamp(key)],
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            password,
            resolver,
            loading: false,
        }
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.loading {
            return;
        }
        let now = [stamp(&self.cert), stamp(&self.key)];
        if now == self.seen {
            return;
        }
        // Remembered even when loading fails: a broken file is reported once, and the
        // next change (the rest of a rotation, a fixed file) is tried again.
        self.seen = now;
        self.loading = true;
        let (cert, key, password) = (self.cert.clone(), self.key.clone(), self.password.clone());
        actix_rt::task::spawn_blocking(move || {
            pem::certified_key(&cert, &key, password.as_deref())
        })
        .into_actor(self)
        .map(|loaded, watcher, _| {
            watcher.loading = false;
            match loaded.map_err(|e| e.to_string()).and_then(|key| key) {
                Ok(key) => {
                    watcher.resolver.0.store(Arc::new(key));
                    log::info!("TLS certificate reloaded from {}", watcher.cert.display());
                }
                Err(e) => log::error!("TLS certificate not reloaded, keeping the old one: {e}"),
            }
        })
        .spawn(ctx);
    }
}

impl Actor for Watcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(POLL, |watcher, ctx| watcher.poll(ctx));
    }
}
