//! PEM files: certificate chains and private keys (PKCS#8 plain or encrypted, PKCS#1
//! RSA, SEC1 EC, legacy OpenSSL-encrypted PEM), checked against each other. Errors
//! name the file and the reason.

use std::path::Path;

use pkcs8::EncryptedPrivateKeyInfo;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

/// Reads a whole (small) PEM file.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

fn pem_error(path: &Path, e: pem::Error) -> String {
    let why = match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".to_string(),
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".to_string(),
        pem::Error::Base64Decode(e) => format!("bad base64 in a PEM section: {e}"),
        other => other.to_string(),
    };
    format!("{}: {why}", path.display())
}

/// Every certificate in a PEM file, leaf first; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", path.display()));
    }
    Ok(certs)
}

/// The first private key in a PEM file, decrypted with `password` when it is an
/// encrypted PKCS#8 key or a legacy OpenSSL-encrypted one.
pub fn private_key(path: &Path, password: Option<&str>) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    if let Some(start) = text.find(ENCRYPTED_BEGIN) {
        let Some(password) = password else {
            return Err(format!(
                "{}: the key is encrypted: give its password with --key-password",
                path.display()
            ));
        };
        return decrypt(path, &text[start..], password);
    }
    if text.contains(super::legacy::MARKER) {
        return super::legacy::open(path, &bytes, password);
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "{}: no PEM private key found (PKCS#8, PKCS#1 RSA or SEC1 EC)",
            path.display()
        ),
        e => pem_error(path, e),
    })
}

/// Decrypts the encrypted PKCS#8 section at the start of `text`.
fn decrypt(path: &Path, text: &str, password: &str) -> Result<PrivateKeyDer<'static>, String> {
    let bad = |why: String| format!("{}: {why}", path.display());
    let end = text
        .find(ENCRYPTED_END)
        .ok_or_else(|| bad("the encrypted key has no END line".into()))?;
    let section = &text[..end + ENCRYPTED_END.len()];
    let (_, der) = pkcs8::der::pem::decode_vec(section.as_bytes())
        .map_err(|e| bad(format!("the encrypted key is not valid PEM: {e}")))?;
    let info = EncryptedPrivateKeyInfo::try_from(der.as_slice())
        .map_err(|e| bad(format!("the encrypted key is malformed: {e}")))?;
    use pkcs8::pkcs5::Error as Pkcs5;
    let plain = info.decrypt(password).map_err(|e| match e {
        pkcs8::Error::EncryptedPrivateKey(
            e @ (Pkcs5::UnsupportedAlgorithm { .. }
            | Pkcs5::AlgorithmParametersInvalid { .. }
            | Pkcs5::NoPbes1CryptSupport),
        ) => bad(format!("unsupported key encryption: {e}")),
        // A wrong password shows as bad padding (reported by pkcs5 as an encryption
        // failure) or, rarely, as padding that fits around garbage that is not a key.
        _ => bad("the password does not open the key".into()),
    })?;
    Ok(PrivatePkcs8KeyDer::from(plain.as_bytes().to_vec()).into())
}

/// Certificate chain and private key, parsed for signing and checked to belong together.
pub fn certified_key(
    cert: &Path,
    key: &Path,
    password: Option<&str>,
) -> Result<CertifiedKey, String> {
    let chain = certificates(cert)?;
    let der = private_key(key, password)?;
    certify(chain, der, cert, key)
}

/// Pairs a chain with its key: `Err` when the key is of an unsupported kind or does not
/// match the leaf certificate.
pub fn certify(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, String> {
    let provider = super::provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{}: unusable private key: {e}", key_path.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // Some keys cannot tell their public half: nothing to compare then.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(format!(
                "{} does not match the certificate in {}",
                key_path.display(),
                cert_path.display()
            ))
        }
        Err(e) => Err(format!(
            "{}: unusable certificate: {e}",
            cert_path.display()
        )),
    }
}
