//! TLS on both sides: serving HTTPS (and HTTP/2 by ALPN) to clients with a certificate
//! that follows rotations on disk, and verifying https backends. rustls with the *ring*
//! provider throughout; no OpenSSL.
//!
//! Everything a user can get wrong (missing files, a key that does not match, a
//! password that does not open the key) is found here at parse time, so that sidekick
//! exits 2 with one line before it listens.

mod auto;
mod client;
mod legacy;
mod pem;
mod server;

use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::ClientConfig;

pub use auto::certificates;
pub use server::{tcp_stream, Serving};

/// The TLS flags (flattened into the command line).
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "TLS")]
pub struct TlsFlags {
    /// PEM certificate chain to serve clients over TLS (HTTPS, HTTP/2); needs --key.
    /// Rotated files are picked up without a restart
    #[arg(long, env = "SIDEKICK_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// PEM private key of --cert: PKCS#8 (plain or encrypted), PKCS#1 RSA or SEC1 EC
    /// (plain or legacy OpenSSL-encrypted)
    #[arg(long, env = "SIDEKICK_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Password of an encrypted --key: encrypted PKCS#8, or a legacy OpenSSL PEM key
    /// (Proc-Type: 4,ENCRYPTED; AES-128/192/256-CBC, DES-EDE3-CBC, DES-CBC)
    #[arg(
        long,
        env = "SIDEKICK_KEY_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub key_password: Option<String>,

    /// Highest TLS version offered to clients (TLS 1.2 is the lowest)
    #[arg(long, env = "SIDEKICK_TLS_MAX", value_enum, default_value_t = TlsMax::V1_3)]
    pub tls_max: TlsMax,

    /// Serve TLS with a self-signed ECDSA certificate generated at start for NAMES, a
    /// comma-separated list of DNS names and IP addresses (all in its subject
    /// alternative names); its fingerprints are printed and its PEM is served at
    /// /v1/certificates
    #[arg(long, env = "SIDEKICK_AUTO_TLS_HOST", value_name = "NAMES")]
    pub auto_tls_host: Option<String>,

    /// PEM CA certificates trusted for https backends, instead of the system's roots:
    /// with it, only these CAs are trusted
    #[arg(long, env = "SIDEKICK_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// PEM client certificate presented to https backends (mutual TLS); needs --client-key
    #[arg(long, env = "SIDEKICK_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,

    /// PEM private key of --client-cert
    #[arg(long, env = "SIDEKICK_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
}

/// `--tls-max`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TlsMax {
    #[value(name = "1.2")]
    V1_2,
    #[default]
    #[value(name = "1.3")]
    V1_3,
}

/// Where the served certificate comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// `--cert`/`--key` files, watched for rotation.
    Files {
        cert: PathBuf,
        key: PathBuf,
        password: Option<String>,
    },
    /// `--auto-tls-host`: generated at start.
    Generated(Arc<auto::Generated>),
}

/// Serving TLS to clients: the validated first certificate and where it came from.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub source: Source,
    pub key: Arc<CertifiedKey>,
    pub max: TlsMax,
}

/// The validated TLS settings.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// Serving TLS to clients, when asked for.
    pub server: Option<ServerTls>,
    /// TLS towards https backends: one config, hence one session cache, for the whole
    /// process (every worker and the health checkers share it). `None` without https
    /// backends.
    pub client: Option<Arc<ClientConfig>>,
    /// Found while loading, logged at start.
    pub warnings: Vec<String>,
}

/// The crypto provider sidekick uses everywhere (named explicitly so that no
/// process-wide default has to be installed).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Validates the TLS flags, reading every file they name. `Err` is one line naming the
/// file and what is wrong with it.
pub fn load(flags: TlsFlags, insecure: bool, https_backends: bool) -> Result<Tls, String> {
    let provider = provider();
    let server = match (flags.cert, flags.key, flags.auto_tls_host) {
        (cert, key, Some(names)) if cert.is_some() || key.is_some() => {
            return Err(format!(
                "error: --auto-tls-host '{names}' cannot be used with --cert/--key: it \
                 generates its own certificate; give one or the other"
            ))
        }
        (Some(cert), Some(key), _) => {
            let certified = pem::certified_key(&cert, &key, flags.key_password.as_deref())
                .map_err(|e| format!("error: {e}"))?;
            Some(ServerTls {
                source: Source::Files {
                    cert,
                    key,
                    password: flags.key_password,
                },
                key: Arc::new(certified),
                max: flags.tls_max,
            })
        }
        (Some(cert), None, _) => {
            return Err(format!(
                "error: --cert {} needs --key (its private key)",
                cert.display()
            ))
        }
        (None, Some(key), _) => {
            return Err(format!(
                "error: --key {} needs --cert (its certificate)",
                key.display()
            ))
        }
        (None, None, Some(name)) => {
            let generated = auto::Generated::new(&name, &provider)?;
            Some(ServerTls {
                key: generated.key.clone(),
                source: Source::Generated(Arc::new(generated)),
                max: flags.tls_max,
            })
        }
        (None, None, None) => None,
    };
    let backend = client::Settings::load(
        flags.cacert.as_deref(),
        flags.client_cert.as_deref(),
        flags.client_key.as_deref(),
        insecure,
    )?;
    // The system roots are read only when some backend needs them.
    let mut warnings = Vec::new();
    let client = match https_backends {
        true => Some(backend.config(&provider, &mut warnings)?),
        false => None,
    };
    Ok(Tls {
        server,
        client,
        warnings,
    })
}

/// Hex SHA-256 of `bytes`, colon-separated upper case (as `openssl x509 -fingerprint`).
pub fn fingerprint(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/tls")
            .join(name)
    }

    #[test]
    fn every_key_format_loads() {
        for (name, password) in [
            ("rsa-pkcs1.key", None),
            ("rsa-pkcs8.key", None),
            ("ec-sec1.key", None),
            ("ec-pkcs8.key", None),
            ("ec-pkcs8-aes.key", Some("s3cret")),
            ("rsa-pkcs8-scrypt.key", Some("s3cret")),
        ] {
            let key =
                pem::private_key(&data(name), password).unwrap_or_else(|e| panic!("{name}: {e}"));
            provider()
                .key_provider
                .load_private_key(key)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn encrypted_keys_need_the_right_password() {
        let path = data("ec-pkcs8-aes.key");
        let none = pem::private_key(&path, None).unwrap_err();
        assert!(none.contains("--key-password"), "{none}");
        let wrong = pem::private_key(&path, Some("wrong")).unwrap_err();
        assert!(wrong.contains("password does not open"), "{wrong}");
        assert!(wrong.contains("ec-pkcs8-aes.key"), "{wrong}");
    }

    #[test]
    fn generated_certificate_identifies_itself() {
        let g = auto::Generated::new("sidekick.local", &provider()).unwrap();
        let leaf = g.key.cert[0].as_ref();
        assert_eq!(g.fingerprint, fingerprint(leaf));
        assert_eq!(g.fingerprint.len(), 32 * 3 - 1);
        assert!(g.pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(g.key.keys_match().is_ok());
        // base64 of 32 bytes
        assert_eq!(g.spki_sha256.len(), 44);
    }

    #[test]
    fn halves_of_a_pair_alone_are_refused() {
        let flags = |cert: Option<&str>, key: Option<&str>| TlsFlags {
            cert: cert.map(PathBuf::from),
            key: key.map(PathBuf::from),
            ..TlsFlags::default()
        };
        let e = load(flags(Some("/c.pem"), None), false, false).unwrap_err();
        assert!(e.contains("/c.pem") && e.contains("--key"), "{e}");
        let e = load(flags(None, Some("/k.pem")), false, false).unwrap_err();
        assert!(e.contains("/k.pem") && e.contains("--cert"), "{e}");
        assert!(load(flags(None, None), false, false)
            .unwrap()
            .server
            .is_none());
    }
}
