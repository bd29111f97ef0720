//! Credentials never reach a trace line: signature and token query values, the
//! signature of an `Authorization` header, cookies.

use actix_web::http::header::HeaderMap;

const REDACTED: &str = "*REDACTED*";

/// Path and query, with the values of signature and token query parameters redacted.
pub fn redact_target(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| {
            let name = param.split_once('=').map_or(param, |(n, _)| n);
            if secret_param(name) {
                format!("{name}={REDACTED}")
            } else {
                param.to_string()
            }
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

fn secret_param(name: &str) -> bool {
    ["X-Amz-Signature", "X-Amz-Security-Token", "Signature"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
}

/// Header values as text, credentials redacted: the signature of an `Authorization`
/// header (other schemes: the whole value), signature and token headers, cookies.
pub fn redact_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes());
            let shown = match name.as_str() {
                "authorization" | "proxy-authorization" => redact_authorization(&value),
                "x-amz-signature" | "x-amz-security-token" | "cookie" | "set-cookie" => {
                    REDACTED.to_string()
                }
                _ => value.into_owned(),
            };
            (name.as_str().to_string(), shown)
        })
        .collect()
}

/// `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` keeps everything but
/// the signature; any other scheme keeps only the scheme name.
fn redact_authorization(value: &str) -> String {
    if let Some(at) = value.find("Signature=") {
        let end = value[at..].find(',').map_or(value.len(), |e| at + e);
        return format!("{}Signature={REDACTED}{}", &value[..at], &value[end..]);
    }
    match value.split_once(' ') {
        Some((scheme, _)) => format!("{scheme} {REDACTED}"),
        None => REDACTED.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact_target("/b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=abc&x=1&X-Amz-Security-Token=t"),
            "/b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=*REDACTED*&x=1&X-Amz-Security-Token=*REDACTED*"
        );
        assert_eq!(redact_target("/plain"), "/plain");
        let mut h = HeaderMap::new();
        let mut add = |n: &'static str, v: &'static str| {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v))
        };
        add(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=deadbeef",
        );
        add("x-amz-security-token", "tok");
        add("cookie", "session=s3cr3t");
        add("x-amz-date", "20240101T000000Z");
        let shown = redact_headers(&h);
        let text = format!("{shown:?}");
        for secret in ["deadbeef", "tok\"", "s3cr3t"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("Credential=AK/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=*REDACTED*"));
        assert!(text.contains("20240101T000000Z"));
        assert_eq!(
            redact_authorization("Basic dXNlcjpwYXNz"),
            "Basic *REDACTED*"
        );
    }
}
