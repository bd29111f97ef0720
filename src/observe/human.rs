//! Human-readable sizes, durations and failure reasons for the console table and trace
//! lines.

use std::time::Duration;

/// `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// Latencies: `850µs`, `12.3ms`, `2.50s`, and from a minute on `1m5s`.
pub fn duration(d: Duration) -> String {
    let micros = d.as_micros();
    if micros < 1_000 {
        format!("{micros}µs")
    } else if micros < 1_000_000 {
        format!("{:.1}ms", d.as_secs_f64() * 1e3)
    } else if micros < 60_000_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        seconds(d)
    }
}

/// Downtimes, to the second: `0s`, `42s`, `1h2m5s`.
pub fn seconds(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
        .to_string()
        .replace(' ', "")
}

/// A failure reason with the words that say nothing on a console: `health check
/// failed: cannot connect: Connection refused (os error 111)` becomes `Connection
/// refused`.
pub fn reason(text: &str) -> String {
    let mut text = text.trim();
    for noise in ["health check failed: ", "cannot connect: "] {
        text = text.strip_prefix(noise).unwrap_or(text);
    }
    if let Some((before, code)) = text.rsplit_once(" (os error ") {
        if code
            .strip_suffix(')')
            .is_some_and(|n| n.parse::<i32>().is_ok())
        {
            text = before;
        }
    }
    text.to_string()
}

/// `text` cut to `width` characters, the last one `…` when anything was cut.
pub fn shorten(text: &str, width: usize) -> std::borrow::Cow<'_, str> {
    if text.chars().count() <= width {
        return text.into();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        cut.push('…');
    }
    cut.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 << 30), "5.0 GiB");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_micros(850)), "850µs");
        assert_eq!(duration(Duration::from_micros(12_340)), "12.3ms");
        assert_eq!(duration(Duration::from_millis(2500)), "2.50s");
        assert_eq!(duration(Duration::from_secs(65)), "1m5s");
        assert_eq!(seconds(Duration::ZERO), "0s");
        assert_eq!(seconds(Duration::from_millis(3_723_900)), "1h2m3s");
    }

    #[test]
    fn reasons() {
        assert_eq!(
            reason("health check failed: cannot connect: Connection refused (os error 111)"),
            "Connection refused"
        );
        assert_eq!(
            reason("cannot connect: Connection refused (os error 111)"),
            "Connection refused"
        );
        assert_eq!(
            reason("health check failed: status 503 Service Unavailable"),
            "status 503 Service Unavailable"
        );
        assert_eq!(
            reason("TLS handshake failed: x (os error z)"),
            "TLS handshake failed: x (os error z)"
        );
        assert_eq!(shorten("Connection refused", 18), "Connection refused");
        assert_eq!(shorten("Connection refused", 8), "Connect…");
        assert_eq!(shorten("abc", 0), "");
    }
}
