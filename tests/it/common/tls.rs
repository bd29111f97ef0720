//! TLS for the tests: certificates made with rcgen, HTTPS backends (the raw backend
//! behind rustls, same thread per connection), a client that sees what sidekick
//! presents in the handshake, HTTPS requests, curl, and scratch directories.

use std::cell::RefCell;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ProtocolVersion, RootCertStore,
    ServerConfig, ServerConnection, SignatureScheme, StreamOwned,
};

use super::{read_response, Conn, Response, Shared};

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------- certificates

/// A certificate authority made for one test.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str]) -> Issued {
        self.issue_with(leaf_params(names), KeyPair::generate().unwrap())
    }

    /// A leaf certificate from `params`, for `key`.
    pub fn issue_with(&self, params: CertificateParams, key: KeyPair) -> Issued {
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued::new(cert.pem(), cert.der().clone(), key)
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        roots
    }
}

/// Parameters of a leaf certificate for `names`, with a random serial.
pub fn leaf_params(names: &[&str]) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("test"));
    params.serial_number = Some(SerialNumber::from(fastrand_u64()));
    params
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, SeqCst) as u64);
    h.finish() >> 1
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A certificate and its key.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Issued {
    pub fn new(cert_pem: String, der: CertificateDer<'static>, key: KeyPair) -> Issued {
        Issued {
            cert_pem,
            key_pem: key.serialize_pem(),
            der,
            key_der: key.serialize_der(),
        }
    }

    /// A self-signed certificate for `names`.
    pub fn self_signed(names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params(names).self_signed(&key).unwrap();
        Issued::new(cert.pem(), cert.der().clone(), key)
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key_der.clone()).into()
    }

    /// Writes `NAME.crt` and `NAME.key` into `dir` (atomically: renamed into place).
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        write_atomic(&cert, self.cert_pem.as_bytes());
        write_atomic(&key, self.key_pem.as_bytes());
        (cert, key)
    }

    /// A server config presenting this certificate (ALPN http/1.1).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server_config_with(None)
    }

    /// A server config that requires a client certificate issued by `client_ca`.
    pub fn server_config_mtls(&self, client_ca: &Ca) -> Arc<ServerConfig> {
        self.server_config_with(Some(client_ca))
    }

    fn server_config_with(&self, client_ca: Option<&Ca>) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider())
                    .build()
                    .unwrap(),
            ),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(vec![self.der.clone()], self.key_der())
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------- scratch directory

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sidekick-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A path as a command-line argument.
    pub fn arg(&self, name: &str) -> String {
        self.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- HTTPS backend

/// One TLS connection, shared by the reading and the writing half of the raw server:
/// they run on one thread and strictly in turn, so a `RefCell` is enough.
#[derive(Clone)]
struct TlsConn(Rc<RefCell<StreamOwned<ServerConnection, TcpStream>>>);

impl Read for TlsConn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

impl Write for TlsConn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

impl Conn for TlsConn {
    fn cut(&self) {
        let _ = self.0.borrow().sock.shutdown(Shutdown::Both);
    }

    fn peer(&self) -> Option<std::net::IpAddr> {
        self.0.borrow().sock.peer_addr().ok().map(|a| a.ip())
    }
}

/// Serves one accepted connection over TLS (called by `Backend` when it has a config).
pub fn serve(mut conn: TcpStream, config: Arc<ServerConfig>, shared: &Shared, name: &str) {
    let Ok(mut server) = ServerConnection::new(config) else {
        return;
    };
    while server.is_handshaking() {
        if server.complete_io(&mut conn).is_err() {
            return;
        }
    }
    shared.tls_handshakes.fetch_add(1, SeqCst);
    if server.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        shared.tls_resumed.fetch_add(1, SeqCst);
    }
    let conn = TlsConn(Rc::new(RefCell::new(StreamOwned::new(server, conn))));
    super::serve_conn(conn.clone(), conn, shared, name);
}

/// An HTTPS backend with `config`.
pub fn https_backend(name: &str, config: Arc<ServerConfig>) -> super::Backend {
    super::Backend::start_tls(name, config)
}

// ---------------------------------------------------------------- client side

/// What a server showed in a handshake.
pub struct Presented {
    pub certs: Vec<CertificateDer<'static>>,
    pub alpn: Option<Vec<u8>>,
    pub version: Option<ProtocolVersion>,
}

/// Accepts any certificate (the tests compare what they got instead).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client config trusting `roots`, or anything when `None`.
pub fn client_config(
    roots: Option<RootCertStore>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap();
    let mut config = match roots {
        Some(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Handshakes with `addr` (accepting any certificate) and reports what it presented.
pub fn handshake_with(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> Result<Presented, rustls::Error> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(config, name)?;
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|e| match e.into_inner() {
                Some(inner) => match inner.downcast::<rustls::Error>() {
                    Ok(tls) => *tls,
                    Err(other) => rustls::Error::General(other.to_string()),
                },
                None => rustls::Error::General("connection closed".into()),
            })?;
    }
    Ok(Presented {
        certs: conn
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default(),
        alpn: conn.alpn_protocol().map(|p| p.to_vec()),
        version: conn.protocol_version(),
    })
}

/// What sidekick presents to a TLS 1.2/1.3 client offering h2 and http/1.1.
pub fn handshake(addr: SocketAddr) -> Presented {
    let config = client_config(
        None,
        rustls::ALL_VERSIONS,
        &[b"h2".as_slice(), b"http/1.1".as_slice()],
    );
    handshake_with(addr, config).expect("handshake")
}

/// A TLS connection to `addr` offering `alpn`, verified against `roots` (`None`: any
/// certificate); the handshake happens with the first write.
pub fn connect(
    addr: SocketAddr,
    roots: Option<RootCertStore>,
    alpn: &[&[u8]],
) -> StreamOwned<ClientConnection, TcpStream> {
    let config = client_config(roots, rustls::ALL_VERSIONS, alpn);
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(addr).expect("connect to sidekick");
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    StreamOwned::new(conn, tcp)
}

/// One HTTP/1.1 request over TLS on a fresh connection, verified against `roots`
/// (`None`: any certificate).
pub fn https_request(
    addr: SocketAddr,
    roots: Option<RootCertStore>,
    method: &str,
    path: &str,
    body: &[u8],
) -> Response {
    let mut stream = connect(addr, roots, &[b"http/1.1".as_slice()]);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n");
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send");
    stream.write_all(body).expect("send body");
    stream.flush().unwrap();
    read_response(&mut BufReader::new(stream), method == "HEAD").expect("complete response")
}

/// Runs curl with `args`; the output is returned whatever the exit code.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "120"])
        .args(args)
        .output()
        .expect("run curl")
}
