//! Backend responses: sidekick's head parser and body decoders never panic, and a
//! decoder never yields more than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sidekick::upstream::body::{Decoded, Decoder};
use sidekick::upstream::head;

fuzz_target!(|data: &[u8]| {
    let head_request = data.first().is_some_and(|b| b & 1 == 1);
    let Ok(Some((head, len))) = head::parse(data, head_request) else {
        return;
    };
    let mut buf = bytes::BytesMut::from(&data[len..]);
    let mut decoder = Decoder::new(head.framing);
    let mut yielded = 0;
    while let Ok(Decoded::Data(d)) = decoder.decode(&mut buf) {
        yielded += d.len();
    }
    assert!(yielded <= data.len() - len);
});
