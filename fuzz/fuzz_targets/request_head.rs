//! Request heads as the client sent them: actix's parser, then sidekick's checks and
//! header rules, never panic; an accepted head yields a head a backend can parse.
#![no_main]

use actix_codec::Decoder;
use actix_http::h1::{Codec, Message};
use actix_http::ServiceConfig;
use libfuzzer_sys::fuzz_target;
use sidekick::proxy::validate::{check, Limits};

thread_local! {
    // actix's service config starts a date timer: it needs a runtime that lives on.
    static RUNTIME: actix_rt::Runtime = actix_rt::Runtime::new().expect("runtime");
    static CONFIG: ServiceConfig = RUNTIME.with(|rt| rt.block_on(async { ServiceConfig::default() }));
}

fuzz_target!(|data: &[u8]| {
    let mut codec = Codec::new(CONFIG.with(ServiceConfig::clone));
    let mut buf = bytes::BytesMut::from(data);
    let Ok(Some(Message::Item(req))) = codec.decode(&mut buf) else {
        return;
    };
    let limits = Limits {
        max_header_size: 64 * 1024,
        max_headers: 96,
    };
    if check(req.head(), limits).is_ok() {
        let peer = actix_http::header::HeaderValue::from_static("127.0.0.1");
        let target = sidekick::proxy::headers::Target {
            method: &req.head().method,
            path: req.head().uri.path_and_query().map_or("/", |p| p.as_str()),
            peer: Some(&peer),
            authority: req.head().uri.authority().map(|a| a.as_str()),
            backend: "127.0.0.1:9000",
            framing: sidekick::upstream::request::Framing::Chunked,
        };
        let head = sidekick::proxy::headers::request_head(&req.head().headers, &target);
        // What sidekick writes must parse as one complete request head.
        let mut lines = [httparse::EMPTY_HEADER; 128];
        let parsed = httparse::Request::new(&mut lines).parse(&head);
        assert!(matches!(parsed, Ok(httparse::Status::Complete(n)) if n == head.len()));
        let _ = sidekick::proxy::headers::content_length(&req.head().headers);
    }
});
