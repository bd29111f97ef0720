//! The paths sidekick answers itself instead of proxying (the Go tool's), fixed.
//! `admin` answers them; tracing leaves them out.

use actix_web::http::Method;
use actix_web::HttpRequest;

pub const HEALTH_PATH: &str = "/v1/health";
pub const METRICS_PATH: &str = "/.prometheus/metrics";
pub const CERTIFICATES_PATH: &str = "/v1/certificates";

/// True for the requests sidekick answers itself rather than proxies.
pub fn is_own(req: &HttpRequest) -> bool {
    let method = req.method();
    match req.path() {
        HEALTH_PATH | CERTIFICATES_PATH => method == Method::GET || method == Method::HEAD,
        METRICS_PATH => method == Method::GET,
        _ => false,
    }
}
