//! `--auto-tls-host NAMES`: a self-signed ECDSA P-256 certificate generated at start
//! for a comma-separated list of DNS names and IP addresses. Clients pin it by the
//! fingerprints printed at start, or fetch its PEM from `GET /v1/certificates`.

use std::sync::Arc;

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use sha2::{Digest, Sha256};

/// The generated certificate and what identifies it.
#[derive(Debug)]
pub struct Generated {
    /// Its subject alternative names, as given; the first is also its common name.
    pub names: Vec<String>,
    pub pem: String,
    /// SHA-256 of the certificate (DER), colon-separated hex.
    pub fingerprint: String,
    /// SHA-256 of its SubjectPublicKeyInfo, base64 (what HPKP-style pins use).
    pub spki_sha256: String,
    pub key: Arc<CertifiedKey>,
}

/// The names of `--auto-tls-host`: comma-separated, each a DNS name or an IP address.
fn names(value: &str) -> Result<Vec<String>, String> {
    let bad = |why: String| format!("error: --auto-tls-host '{value}': {why}");
    value
        .split(',')
        .map(str::trim)
        .map(|name| match name {
            "" => Err(bad(
                "an empty name (give DNS names and IP addresses, separated by commas)".into(),
            )),
            // A wildcard is a DNS name whose first label is `*`.
            name => match ServerName::try_from(name.strip_prefix("*.").unwrap_or(name)) {
                Ok(_) => Ok(name.to_string()),
                Err(_) => Err(bad(format!(
                    "'{name}' is neither a DNS name nor an IP address"
                ))),
            },
        })
        .collect()
}

impl Generated {
    /// A certificate for the names in `value` (the flag's text).
    pub fn new(value: &str, provider: &CryptoProvider) -> Result<Generated, String> {
        let names = names(value)?;
        let bad = |e: &dyn std::fmt::Display| format!("error: --auto-tls-host '{value}': {e}");
        let key_pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| bad(&e))?;
        // rcgen makes an IP address SAN of each name that parses as one.
        let mut params = CertificateParams::new(names.clone()).map_err(|e| bad(&e))?;
        let first = names.first().map_or(value, String::as_str);
        params.distinguished_name.push(DnType::CommonName, first);
        let cert = params.self_signed(&key_pair).map_err(|e| bad(&e))?;
        let der = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let signing = provider
            .key_provider
            .load_private_key(der)
            .map_err(|e| bad(&e))?;
        let spki = key_pair.subject_public_key_info();
        Ok(Generated {
            names,
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

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn names_are_split_trimmed_and_checked() {
        assert_eq!(
            names("a.test, 127.0.0.1,::1,*.b.test").unwrap(),
            ["a.test", "127.0.0.1", "::1", "*.b.test"]
        );
        for bad in ["", "a.test,", "a.test,,b.test"] {
            let e = names(bad).unwrap_err();
            assert!(e.contains("an empty name") && e.contains(bad), "{e}");
        }
        assert!(names("a.test,a b")
            .unwrap_err()
            .contains("'a b' is neither"));
    }
}
