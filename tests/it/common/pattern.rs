//! Pattern data for large bodies, and its checksums.

use std::io::Write;

use sha2::{Digest, Sha256};

/// 1 MiB of pseudo-random bytes; chunk `k` of a large body is this block with `k`
/// in its first 8 bytes, so lost, repeated or reordered chunks change the hash.
pub fn block() -> &'static [u8] {
    static BLOCK: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    })
}

/// Writes `len` bytes of pattern data (a multiple of 1 MiB) to `w`, returning its SHA-256.
pub fn write_pattern(w: &mut impl Write, len: u64) -> std::io::Result<String> {
    let mut chunk = block().to_vec();
    let mut hash = Sha256::new();
    for k in 0..len >> 20 {
        chunk[..8].copy_from_slice(&k.to_le_bytes());
        hash.update(&chunk);
        w.write_all(&chunk)?;
    }
    Ok(hex(&hash.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `len` pseudo-random bytes, different for every `seed`.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
