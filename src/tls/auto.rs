//! `--auto-tls-host NAME`: a self-signed ECDSA P-256 certificate generated at start.
//! Clients pin it by the fingerprints printed at start, or fetch its PEM from
//! `GET /v1/certificates`.

use std::sync::Arc;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// The generated certificate and what identifies it.
#[derive(Debug)]
pub struct Generated {
    pub name: String,
    pub pem: String,
    /// SHA-256 of the certificate (DER), colon-separated hex.
    pub fingerprint: String,
    /// SHA-256 of its SubjectPublicKeyInfo, base64 (what HPKP-style pins use).
    pub spki_sha256: String,
    pub key: Arc<CertifiedKey>,
}

impl Generated {
    pub fn new(name: &str, provider: &CryptoProvider) -> Result<Generated, String> {
        let bad = |e: &dyn std::fmt::Display| format!("error: --auto-tls-host '{name}': {e}");
        let key_pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| bad(&e))?;
        let mut params = CertificateParams::new(vec![name.to_string()]).map_err(|e| bad(&e))?;
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key_pair).map_err(|e| bad(&e))?;
        let der = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let signing = provider
            .key_provider
            .load_private_key(der)
            .map_err(|e| bad(&e))?;
        let spki = key_pair.subject_public_key_info();
        Ok(Generated {
            name: name.to_string(),
            pem: cert.pem(),
            fingerprint: super::fingerprint(cert.der()),
            spki_sha256: base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&spki)),
            key: Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)),
        })
    }
}

/// What `/v1/certificates` serves: the generated certificate, if there is one.
#[derive(Clone, Default)]
pub struct Certificates(pub Option<Arc<Generated>>);

/// `GET /v1/certificates`: the generated certificate as PEM; 404 without one.
pub fn certificates(req: &HttpRequest) -> HttpResponse {
    match req
        .app_data::<web::Data<Certificates>>()
        .and_then(|c| c.0.as_ref())
    {
        Some(generated) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "application/x-pem-file"))
            .body(generated.pem.clone()),
        None => HttpResponse::NotFound().finish(),
    }
}
