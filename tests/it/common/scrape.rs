//! Reading sidekick's Prometheus scrape.

use super::Sidekick;

/// The value of the sample `name{endpoint="url",...}` in a scrape.
pub fn sample(scrape: &str, name: &str, url: &str) -> Option<f64> {
    let prefix = format!("{name}{{endpoint=\"{url}\",");
    scrape
        .lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

impl Sidekick {
    /// The value of `name{endpoint="url",...}` in a fresh scrape.
    pub fn sample(&self, name: &str, url: &str) -> Option<f64> {
        sample(&self.get("/.prometheus/metrics").text(), name, url)
    }
}
