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

/// The sum of the samples of `name` whose labels include `label` (`result="hit"`),
/// or of every sample of `name` when `label` is empty; `None` when there is none.
pub fn sample_with(scrape: &str, name: &str, label: &str) -> Option<f64> {
    let values: Vec<f64> = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted =
                metric == name && (label.is_empty() || labels.split(',').any(|l| l == label));
            wanted.then(|| value.parse().ok())?
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

impl Sidekick {
    /// `sample_with` on a fresh scrape.
    pub fn sample_with(&self, name: &str, label: &str) -> Option<f64> {
        sample_with(&self.get("/.prometheus/metrics").text(), name, label)
    }

    /// The value of `name{endpoint="url",...}` in a fresh scrape.
    pub fn sample(&self, name: &str, url: &str) -> Option<f64> {
        sample(&self.get("/.prometheus/metrics").text(), name, url)
    }
}
