//! One stored block: a 16-byte header (`SKB1`, the data's length, its CRC32C) and the
//! data. A block is checked whole before any of its bytes is sent.

use bytes::{BufMut, Bytes, BytesMut};

const MAGIC: &[u8; 4] = b"SKB1";
pub const HEADER: usize = 16;

#[cfg(test)]
pub fn encode(data: &[u8]) -> Bytes {
    let mut out = start(data.len());
    out.put_slice(data);
    seal(out)
}

/// A buffer for a block of `len` bytes: room for the header, then the data is
/// appended (so that the block is copied once, out of the answer).
pub fn start(len: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(HEADER + len);
    out.put_bytes(0, HEADER);
    out
}

/// The block in `buf` (from `start`, data appended), its header written.
pub fn seal(mut buf: BytesMut) -> Bytes {
    let data = buf.get(HEADER..).unwrap_or_default();
    let (len, crc) = (data.len() as u64, crc32c::crc32c(data));
    let mut header = &mut buf[..HEADER];
    header.put_slice(MAGIC);
    header.put_u64(len);
    header.put_u32(crc);
    buf.freeze()
}

/// The data of a stored block that should hold `expected` bytes, if it is intact.
pub fn decode(stored: Bytes, expected: u64) -> Result<Bytes, &'static str> {
    if stored.len() < HEADER || &stored[..4] != MAGIC {
        return Err("not a sidekick block");
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&stored[4..12]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&stored[12..16]);
    let len = u64::from_be_bytes(len);
    if len != expected || stored.len() as u64 != HEADER as u64 + len {
        return Err("block has the wrong length");
    }
    let data = stored.slice(HEADER..);
    if crc32c::crc32c(&data) != u32::from_be_bytes(crc) {
        return Err("block fails its CRC32C");
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intact_blocks_only() {
        let block = encode(b"hello");
        assert_eq!(
            decode(block.clone(), 5).unwrap(),
            Bytes::from_static(b"hello")
        );
        assert!(decode(block.clone(), 6).is_err());
        let mut flipped = block.to_vec();
        flipped[HEADER] ^= 1;
        assert!(decode(Bytes::from(flipped), 5).is_err());
        assert!(decode(block.slice(..HEADER + 4), 5).is_err());
        assert!(decode(Bytes::from_static(b"garbage garbage garbage"), 7).is_err());
    }
}
