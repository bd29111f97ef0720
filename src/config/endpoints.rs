//! Endpoint arguments: `{N...M}` ellipses expansion, sites and pools, URL validation.

use std::fmt;

use actix_web::http::uri::{Authority, Scheme, Uri};
use derive_more::{Display, Error};

/// More endpoints than any real deployment has; stops `{1...99999999}` from eating memory.
const MAX_ENDPOINTS: usize = 4096;

pub const NO_SITE: &str = "no endpoint given: sidekick needs at least one SITE";

/// What is wrong with an endpoint argument, and how to write it instead when that is
/// clear from what was typed.
#[derive(Debug, Display, Error, PartialEq, Eq)]
#[display("{message}")]
pub struct EndpointError {
    #[error(not(source))]
    pub message: String,
    pub hint: Option<String>,
}

fn err(msg: impl Into<String>) -> EndpointError {
    EndpointError {
        message: msg.into(),
        hint: None,
    }
}

/// One backend server as given on the command line, after expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Host without port (and without IPv6 brackets).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// The URL a health check requests: `--health-port` (0 = the endpoint's) and the path.
    pub fn health_url(&self, health_port: u16, path: &str) -> String {
        let port = if health_port == 0 {
            self.port
        } else {
            health_port
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{}:{}{}", self.scheme, host, port, path)
    }
}

impl Endpoint {
    /// True when the host is an IP address rather than a name to resolve.
    pub fn is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// Parses every SITE argument: each is a comma-separated list of pools, each pool an
/// endpoint with optional ellipses. Endpoints must be unique across all sites.
pub fn parse_sites(args: &[String]) -> Result<Vec<Vec<Endpoint>>, EndpointError> {
    if args.is_empty() {
        return Err(err(NO_SITE));
    }
    let mut sites = Vec::with_capacity(args.len());
    let mut total = 0usize;
    for arg in args {
        let mut site: Vec<Endpoint> = Vec::new();
        for pool in arg.split(',') {
            let pool = pool.trim();
            if pool.is_empty() {
                return Err(err(format!("empty endpoint in site '{arg}'")));
            }
            for url in expand(pool)? {
                total += 1;
                if total > MAX_ENDPOINTS {
                    return Err(err(format!(
                        "'{pool}' expands to more than {MAX_ENDPOINTS} endpoints"
                    )));
                }
                let ep = parse_endpoint(&url)?;
                if let Some(first) = site.first() {
                    if first.scheme != ep.scheme {
                        return Err(err(format!(
                            "site '{arg}' mixes http and https endpoints ('{first}' and '{ep}')"
                        )));
                    }
                }
                let dup = sites.iter().flatten().chain(site.iter()).any(|e| *e == ep);
                if dup {
                    return Err(err(format!("duplicate endpoint '{ep}'")));
                }
                site.push(ep);
            }
        }
        sites.push(site);
    }
    Ok(sites)
}

/// Expands every `{N...M}` range of one pattern into the product of its ranges,
/// keeping MinIO's zero padding rule: a start with a leading zero pads to the end's width.
pub fn expand(pattern: &str) -> Result<Vec<String>, EndpointError> {
    // Split into literal text and ranges, validating brace structure first.
    let mut parts: Vec<Vec<String>> = Vec::new();
    let mut rest = pattern;
    loop {
        let open = rest.find('{');
        let close = rest.find('}');
        match (open, close) {
            (None, None) => {
                parts.push(vec![rest.to_string()]);
                break;
            }
            (Some(o), Some(c)) if o < c => {
                let inner = &rest[o + 1..c];
                if inner.contains('{') {
                    return Err(err(format!("nested braces in endpoint '{pattern}'")));
                }
                parts.push(vec![rest[..o].to_string()]);
                parts.push(range(&rest[o..=c], inner, pattern)?);
                rest = &rest[c + 1..];
            }
            _ => return Err(err(format!("unbalanced braces in endpoint '{pattern}'"))),
        }
    }
    let count = parts.iter().try_fold(1usize, |n, p| n.checked_mul(p.len()));
    match count {
        Some(n) if n <= MAX_ENDPOINTS => {}
        _ => {
            return Err(err(format!(
                "'{pattern}' expands to more than {MAX_ENDPOINTS} endpoints"
            )))
        }
    }
    let mut out = vec![String::new()];
    for part in parts {
        out = out
            .iter()
            .flat_map(|prefix| part.iter().map(move |p| format!("{prefix}{p}")))
            .collect();
    }
    Ok(out)
}

fn range(braced: &str, inner: &str, pattern: &str) -> Result<Vec<String>, EndpointError> {
    let bad = || EndpointError {
        message: format!("invalid ellipses range '{braced}' in endpoint '{pattern}'"),
        hint: three_dots(inner),
    };
    let (lo, hi) = inner.split_once("...").ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(lo) || !digits(hi) {
        return Err(bad());
    }
    let start: u64 = lo.parse().map_err(|_| bad())?;
    let end: u64 = hi.parse().map_err(|_| bad())?;
    if start > end {
        return Err(err(format!(
            "invalid ellipses range '{braced}' in endpoint '{pattern}': start {start} is bigger than end {end}"
        )));
    }
    if end - start >= MAX_ENDPOINTS as u64 {
        return Err(err(format!(
            "'{pattern}' expands to more than {MAX_ENDPOINTS} endpoints"
        )));
    }
    let pad = if lo.len() > 1 && lo.starts_with('0') {
        hi.len()
    } else {
        0
    };
    Ok((start..=end).map(|i| format!("{i:0pad$}")).collect())
}

/// `{1..4}`, `{1....4}`, `{1…4}`, `{1-4}`: two numbers joined by something other
/// than the three dots MinIO's syntax needs.
fn three_dots(inner: &str) -> Option<String> {
    let lo = inner.len() - inner.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let hi = inner.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if lo == 0 || hi == inner.len() || lo >= hi {
        return None;
    }
    let sep = &inner[lo..hi];
    if sep == "..." || sep.chars().any(char::is_alphanumeric) {
        return None;
    }
    Some(format!(
        "use three dots: {{{}...{}}}",
        &inner[..lo],
        &inner[hi..]
    ))
}

/// Validates one expanded endpoint URL: http or https, a host, an optional port,
/// nothing else (no credentials, path, query or fragment).
pub fn parse_endpoint(url: &str) -> Result<Endpoint, EndpointError> {
    let bad = |why: &str| err(format!("invalid endpoint '{url}': {why}"));
    let lower = url.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        let why = match url.split_once("://") {
            Some((scheme, _)) => format!("unknown scheme '{scheme}' (use http or https)"),
            None => "missing scheme (use http:// or https://)".to_string(),
        };
        return Err(bad(&why));
    }
    let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    let scheme = uri.scheme().cloned().ok_or_else(|| bad("missing scheme"))?;
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| bad("missing host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("credentials are not allowed in an endpoint"));
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.contains(':') {
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("invalid IPv6 address"));
        }
    } else if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err(bad(&format!("invalid host '{host}'")));
    }
    let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
    // What follows the host is ":PORT" or nothing (credentials were refused above).
    let port = match authority.as_str()[authority.host().len()..].strip_prefix(':') {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| bad(&format!("invalid port '{p}'")))?,
    };
    if port == 0 {
        return Err(bad("port 0 is not a valid port"));
    }
    match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("") | Some("/") => {}
        Some(p) => return Err(bad(&format!("unexpected path '{p}'"))),
    }
    Ok(Endpoint {
        scheme,
        authority,
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_ranges_with_padding_and_products() {
        assert_eq!(
            expand("http://m{1...3}:9000").unwrap(),
            ["http://m1:9000", "http://m2:9000", "http://m3:9000"]
        );
        let padded = expand("http://m{01...16}").unwrap();
        assert_eq!(padded.len(), 16);
        assert_eq!(padded[0], "http://m01");
        assert_eq!(padded[15], "http://m16");
        let product = expand("http://rack{1...2}-node{1...4}:9000").unwrap();
        assert_eq!(product.len(), 8);
        assert_eq!(product[0], "http://rack1-node1:9000");
        assert_eq!(product[4], "http://rack2-node1:9000");
        assert_eq!(expand("http://{0...0}x").unwrap(), ["http://0x"]);
    }

    #[test]
    fn rejects_bad_ranges() {
        for bad in [
            "http://m{1..4}",
            "http://m{4...1}",
            "http://m{-1...2}",
            "http://m{a...z}",
            "http://m{1...2O}",
            "http://m{{1...2}}",
            "http://m{1...2",
            "http://m1...2}",
            "http://m{}",
            "http://m{1...99999999}",
        ] {
            let e = expand(bad).unwrap_err();
            assert!(
                e.message.contains(bad) || e.message.contains("range"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_near_miss_range_says_how_to_write_it() {
        for (bad, hint) in [
            ("http://m{1..4}", "use three dots: {1...4}"),
            ("http://m{01....16}", "use three dots: {01...16}"),
            ("http://m{1\u{2026}4}", "use three dots: {1...4}"),
            ("http://m{1-4}:9000", "use three dots: {1...4}"),
        ] {
            assert_eq!(
                expand(bad).unwrap_err().hint.as_deref(),
                Some(hint),
                "{bad}"
            );
        }
        for bad in [
            "http://m{a...z}",
            "http://m{1...2O}",
            "http://m{-1...2}",
            "http://m{12}",
            "http://m{1x4}",
            "http://m{}",
        ] {
            assert_eq!(expand(bad).unwrap_err().hint, None, "{bad}");
        }
    }

    #[test]
    fn validates_urls() {
        let ep = parse_endpoint("http://minio1:9000").unwrap();
        assert_eq!((ep.host.as_str(), ep.port), ("minio1", 9000));
        assert_eq!(parse_endpoint("https://h").unwrap().port, 443);
        assert_eq!(parse_endpoint("http://[::1]:9000").unwrap().host, "::1");
        assert_eq!(
            parse_endpoint("http://h:9000").unwrap().health_url(0, "/x"),
            "http://h:9000/x"
        );
        assert_eq!(
            parse_endpoint("http://[::1]:9000")
                .unwrap()
                .health_url(7000, "/x"),
            "http://[::1]:7000/x"
        );
        for bad in [
            "ftp://h",
            "minio1:9000",
            "http://",
            "http://:9000",
            "http://h:99999",
            "http://u:p@h",
            "http://h/path",
            "http://h:",
            "http://h:0",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_addresses() {
        assert!(!parse_endpoint("https://minio:9000").unwrap().is_ip());
        assert!(parse_endpoint("http://[::1]:9000").unwrap().is_ip());
        assert!(parse_endpoint("http://10.0.0.2").unwrap().is_ip());
    }

    #[test]
    fn sites_reject_mixed_schemes_duplicates_and_empty() {
        let s = |v: &[&str]| parse_sites(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            s(&["http://a{1...4}:9000,http://b{1...4}:9000"]).unwrap()[0].len(),
            8
        );
        assert_eq!(s(&["http://a", "http://b"]).unwrap().len(), 2);
        assert!(s(&["http://a,https://b"])
            .unwrap_err()
            .message
            .contains("mixes"));
        assert!(s(&["http://a", "http://a"])
            .unwrap_err()
            .message
            .contains("duplicate"));
        assert!(s(&["http://a,"]).is_err());
        assert!(s(&[]).is_err());
    }
}
