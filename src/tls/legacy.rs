//! Legacy OpenSSL-encrypted PEM keys (`Proc-Type: 4,ENCRYPTED` with `DEK-Info`), as
//! `openssl genrsa -aes128` or `openssl ec -aes256` wrote them before PKCS#8, and as the
//! Go tool accepts them: the key is OpenSSL's `EVP_BytesToKey` with MD5 (one round,
//! salted with the first 8 bytes of the IV), the cipher AES or DES in CBC mode with
//! PKCS#7 padding, and the plaintext the DER the PEM label names.

use std::path::Path;

use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockCipher, BlockDecryptMut, KeyInit, KeyIvInit};
use md5::{Digest, Md5};
use pkcs8::der::{asn1::AnyRef, Decode, Tag, Tagged};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};

/// The header that marks such a key.
pub const MARKER: &str = "Proc-Type: 4,ENCRYPTED";

/// A `DEK-Info` cipher: its name, key and IV (block) lengths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cipher {
    Des,
    DesEde3,
    Aes128,
    Aes192,
    Aes256,
}

impl Cipher {
    fn from_name(name: &str) -> Option<Cipher> {
        Some(match name {
            "DES-CBC" => Cipher::Des,
            "DES-EDE3-CBC" => Cipher::DesEde3,
            "AES-128-CBC" => Cipher::Aes128,
            "AES-192-CBC" => Cipher::Aes192,
            "AES-256-CBC" => Cipher::Aes256,
            _ => return None,
        })
    }

    fn key_len(self) -> usize {
        match self {
            Cipher::Des => 8,
            Cipher::DesEde3 | Cipher::Aes192 => 24,
            Cipher::Aes128 => 16,
            Cipher::Aes256 => 32,
        }
    }

    fn iv_len(self) -> usize {
        match self {
            Cipher::Des | Cipher::DesEde3 => 8,
            _ => 16,
        }
    }

    /// Decrypts and unpads; `None` when the padding is wrong (a wrong password).
    fn decrypt(self, key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
        match self {
            Cipher::Des => cbc_decrypt::<des::Des>(key, iv, data),
            Cipher::DesEde3 => cbc_decrypt::<des::TdesEde3>(key, iv, data),
            Cipher::Aes128 => cbc_decrypt::<aes::Aes128>(key, iv, data),
            Cipher::Aes192 => cbc_decrypt::<aes::Aes192>(key, iv, data),
            Cipher::Aes256 => cbc_decrypt::<aes::Aes256>(key, iv, data),
        }
    }
}

fn cbc_decrypt<C>(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>>
where
    C: BlockCipher + BlockDecryptMut + KeyInit,
{
    let mut buf = data.to_vec();
    let decryptor = cbc::Decryptor::<C>::new_from_slices(key, iv).ok()?;
    let len = decryptor.decrypt_padded_mut::<Pkcs7>(&mut buf).ok()?.len();
    buf.truncate(len);
    Some(buf)
}

/// OpenSSL's `EVP_BytesToKey` with MD5 and one iteration: D_i = MD5(D_{i-1} ‖ password ‖
/// salt), concatenated until `len` bytes.
fn bytes_to_key(password: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(len + 16);
    let mut block: Vec<u8> = Vec::new();
    while key.len() < len {
        let mut md5 = Md5::new();
        md5.update(&block);
        md5.update(password);
        md5.update(salt);
        block = md5.finalize().to_vec();
        key.extend_from_slice(&block);
    }
    key.truncate(len);
    key
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Opens the first legacy-encrypted key in the PEM file `bytes`. `Err` names the file.
pub fn open(
    path: &Path,
    bytes: &[u8],
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, String> {
    let bad = |why: &str| format!("{}: {why}", path.display());
    let sections =
        ::pem::parse_many(bytes).map_err(|e| bad(&format!("the encrypted key is not PEM: {e}")))?;
    let section = sections
        .iter()
        .find(|s| s.headers().get("Proc-Type") == Some("4,ENCRYPTED"))
        .ok_or_else(|| bad("no PEM section with the Proc-Type: 4,ENCRYPTED header"))?;
    let Some(password) = password else {
        return Err(bad(
            "the key is encrypted: give its password with --key-password",
        ));
    };
    let dek = section
        .headers()
        .get("DEK-Info")
        .ok_or_else(|| bad("the encrypted key has no DEK-Info header"))?;
    let (name, iv) = dek
        .split_once(',')
        .ok_or_else(|| bad(&format!("malformed DEK-Info '{dek}'")))?;
    let cipher = Cipher::from_name(name.trim()).ok_or_else(|| {
        bad(&format!(
            "unsupported key encryption {name} (AES-128/192/256-CBC, DES-EDE3-CBC or DES-CBC)"
        ))
    })?;
    let iv = hex(iv.trim())
        .filter(|iv| iv.len() == cipher.iv_len())
        .ok_or_else(|| bad(&format!("malformed DEK-Info IV '{}'", iv.trim())))?;
    let key = bytes_to_key(password.as_bytes(), &iv[..8], cipher.key_len());
    // A wrong password shows as bad padding or, rarely, as padding that fits around
    // garbage that is not one DER structure.
    let plain = cipher
        .decrypt(&key, &iv, section.contents())
        .filter(|plain| is_one_sequence(plain))
        .ok_or_else(|| bad("the password does not open the key"))?;
    match section.tag() {
        "RSA PRIVATE KEY" => Ok(PrivatePkcs1KeyDer::from(plain).into()),
        "EC PRIVATE KEY" => Ok(PrivateSec1KeyDer::from(plain).into()),
        "PRIVATE KEY" => Ok(PrivatePkcs8KeyDer::from(plain).into()),
        other => Err(bad(&format!(
            "an encrypted '{other}' is not a private key (RSA, EC or PKCS#8)"
        ))),
    }
}

/// True when `der` is exactly one DER SEQUENCE, as every private key is.
fn is_one_sequence(der: &[u8]) -> bool {
    AnyRef::from_der(der).is_ok_and(|any| any.tag() == Tag::Sequence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_to_key_matches_openssl() {
        // `openssl enc -aes-256-cbc -P -md md5 -pass pass:s3cret -S 0102030405060708`
        let key = bytes_to_key(b"s3cret", &[1, 2, 3, 4, 5, 6, 7, 8], 32);
        let want = "04D7471BA4A9314395A3FE2D5788E5B5CB8BA23A1DFD5F1D1DD4D950C54E7194";
        assert_eq!(key, hex(want).unwrap());
        // Shorter keys are its prefix (DES-EDE3-CBC: 24 bytes).
        assert_eq!(
            bytes_to_key(b"s3cret", &[1, 2, 3, 4, 5, 6, 7, 8], 24),
            key[..24]
        );
    }

    #[test]
    fn hex_and_cipher_names() {
        assert_eq!(hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(hex("0"), None);
        assert_eq!(hex("zz"), None);
        assert_eq!(Cipher::from_name("AES-256-CBC"), Some(Cipher::Aes256));
        assert_eq!(
            Cipher::from_name("DES-EDE3-CBC").map(Cipher::key_len),
            Some(24)
        );
        assert_eq!(Cipher::from_name("CAMELLIA-256-CBC"), None);
    }
}
