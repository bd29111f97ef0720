//! TLS towards https backends: the system roots, or only `--cacert` when it is given
//! (as the Go tool does), verification against
//! the endpoint's host name (also sent as SNI), an optional client certificate for
//! mutual TLS, or no verification at all with `--insecure`. ALPN offers http/1.1 only.
//!
//! One `ClientConfig` serves the whole process, so its in-memory session cache (on by
//! default in rustls) lets every worker resume sessions with a backend.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::pem;

/// Validated backend TLS material.
pub struct Settings {
    /// `--cacert`: when given, the only CAs trusted.
    cacert: Option<RootCertStore>,
    client_key: Option<Arc<CertifiedKey>>,
    insecure: bool,
}

impl Settings {
    /// Reads `--cacert` and `--client-cert`/`--client-key`; `Err` names the file.
    pub fn load(
        cacert: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
        insecure: bool,
    ) -> Result<Settings, String> {
        let cacert = match cacert {
            Some(path) => {
                let certs = pem::certificates(path).map_err(|e| format!("error: {e}"))?;
                let mut store = RootCertStore::empty();
                let (_, bad) = store.add_parsable_certificates(certs.iter().cloned());
                if bad > 0 {
                    return Err(format!(
                        "error: {}: {bad} certificate(s) cannot be used as a CA",
                        path.display()
                    ));
                }
                Some(store)
            }
            None => None,
        };
        let client_key = match (client_cert, client_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                pem::certified_key(cert, key, None).map_err(|e| format!("error: {e}"))?,
            )),
            (Some(cert), None) => {
                return Err(format!(
                    "error: --client-cert {} needs --client-key (its private key)",
                    cert.display()
                ))
            }
            (None, Some(key)) => {
                return Err(format!(
                    "error: --client-key {} needs --client-cert (its certificate)",
                    key.display()
                ))
            }
            (None, None) => None,
        };
        Ok(Settings {
            cacert,
            client_key,
            insecure,
        })
    }

    /// The process-wide client config: `--cacert`, else the system roots (read now), and
    /// warnings to log at start (logging is not set up while the flags are parsed).
    pub fn config(
        &self,
        provider: &Arc<CryptoProvider>,
        warnings: &mut Vec<String>,
    ) -> Result<Arc<ClientConfig>, String> {
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("error: TLS setup: {e}"))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider.clone())))
        } else {
            builder.with_root_certificates(self.roots(warnings))
        };
        let mut config = match &self.client_key {
            Some(key) => builder.with_client_cert_resolver(Arc::new(ClientKey(key.clone()))),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// `--cacert` alone when given: a private CA then cannot be bypassed by a
    /// certificate that some public CA issued for the same name.
    fn roots(&self, warnings: &mut Vec<String>) -> RootCertStore {
        if let Some(cacert) = &self.cacert {
            return cacert.clone();
        }
        let mut store = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            warnings.push(format!("reading the system's CA certificates: {e}"));
        }
        store.add_parsable_certificates(native.certs);
        if store.is_empty() {
            warnings.push(
                "no CA certificate found: https backends cannot be verified (see --cacert)".into(),
            );
        }
        store
    }
}

/// Presents the `--client-cert` chain whenever a backend asks for one.
#[derive(Debug)]
struct ClientKey(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientKey {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `--insecure`: any certificate is accepted; signatures are still checked, so the
/// handshake itself stays sound.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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
