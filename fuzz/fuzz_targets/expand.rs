//! Endpoint arguments: expansion and validation never panic, and whatever they
//! accept is a bounded list of valid endpoints.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(urls) = sidekick::config::endpoints::expand(text) {
        assert!(urls.len() <= 4096);
    }
    let sites: Vec<String> = text.split(' ').map(str::to_string).collect();
    if let Ok(sites) = sidekick::config::endpoints::parse_sites(&sites) {
        for ep in sites.iter().flatten() {
            assert!(!ep.host.is_empty() && ep.port != 0);
            let _ = ep.health_url(0, "/health/ready");
        }
    }
});
