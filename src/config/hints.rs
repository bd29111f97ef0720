//! Hints about a command line that is valid but is probably not what was meant; said
//! once at start (and by `--check`), never an error.

use crate::config::endpoints::Endpoint;

/// Endpoints listed in full in a hint; longer lists end in `…`.
const LISTED: usize = 4;

/// Several SITEs of one endpoint each that differ only in one number are what an
/// unquoted shell brace makes: `http://h{1..4}:9000` reaches sidekick as four SITE
/// arguments, and sites are failover tiers, not a pool to balance over.
pub fn sites_hint(sites: &[Vec<Endpoint>]) -> Option<String> {
    if sites.len() < 2 || sites.iter().any(|s| s.len() != 1) {
        return None;
    }
    let urls: Vec<String> = sites.iter().flatten().map(Endpoint::to_string).collect();
    let parts: Vec<Vec<&str>> = urls.iter().map(|u| runs(u)).collect();
    let first = &parts[0];
    if parts.iter().any(|p| p.len() != first.len()) {
        return None;
    }
    let differ: Vec<usize> = (0..first.len())
        .filter(|&i| parts.iter().any(|p| p[i] != first[i]))
        .collect();
    let [at] = differ[..] else {
        return None;
    };
    let numbers: Vec<u64> = parts
        .iter()
        .map(|p| p[at].parse().ok())
        .collect::<Option<_>>()?;
    let consecutive = numbers.windows(2).all(|w| w[1] == w[0] + 1);
    let mut list = urls[..urls.len().min(LISTED)].join(",");
    if urls.len() > LISTED {
        list.push_str(",…");
    }
    let mut hint = format!(
        "hint: these {} sites hold one endpoint each, and sites are failover tiers \
         (site 2 serves only while every backend of site 1 is down); to balance over them, ",
        sites.len()
    );
    if consecutive {
        let last = &parts[parts.len() - 1];
        let pattern = format!(
            "{}{{{}...{}}}{}",
            first[..at].concat(),
            first[at],
            last[at],
            first[at + 1..].concat()
        );
        hint.push_str(&format!(
            "quote the pattern as one site: '{pattern}', or use a comma list: {list}"
        ));
    } else {
        hint.push_str(&format!("give them as one site, a comma list: {list}"));
    }
    Some(hint)
}

/// `http://h12:9000` → `["http://h", "12", ":", "9000"]`: runs of digits and of the rest.
fn runs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut digits = None;
    for (i, c) in text.char_indices() {
        let d = c.is_ascii_digit();
        if digits.is_some_and(|was| was != d) {
            out.push(&text[start..i]);
            start = i;
        }
        digits = Some(d);
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::endpoints::parse_sites;

    fn hint(args: &[&str]) -> Option<String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        sites_hint(&parse_sites(&args).unwrap())
    }

    #[test]
    fn one_site_per_host_of_a_pattern_gets_the_hint() {
        let h = hint(&[
            "http://h1:9000",
            "http://h2:9000",
            "http://h3:9000",
            "http://h4:9000",
        ])
        .unwrap();
        assert!(h.contains("these 4 sites"), "{h}");
        assert!(h.contains("'http://h{1...4}:9000'"), "{h}");
        assert!(
            h.contains("http://h1:9000,http://h2:9000,http://h3:9000,http://h4:9000"),
            "{h}"
        );
        let padded = hint(&["http://m08:9000", "http://m09:9000", "http://m10:9000"]).unwrap();
        assert!(padded.contains("'http://m{08...10}:9000'"), "{padded}");
        let ports = hint(&["http://h:9001", "http://h:9002"]).unwrap();
        assert!(ports.contains("'http://h:{9001...9002}'"), "{ports}");
    }

    #[test]
    fn gaps_and_long_lists_get_a_comma_list() {
        let gap = hint(&["http://h1:9000", "http://h3:9000"]).unwrap();
        assert!(!gap.contains("..."), "{gap}");
        assert!(gap.contains("http://h1:9000,http://h3:9000"), "{gap}");
        let many: Vec<String> = (1..=6).map(|i| format!("http://h{i}:9000")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let long = hint(&many).unwrap();
        assert!(long.contains("'http://h{1...6}:9000'"), "{long}");
        assert!(long.ends_with("http://h4:9000,…"), "{long}");
    }

    #[test]
    fn real_failover_tiers_get_no_hint() {
        assert_eq!(hint(&["http://h{1...4}:9000"]), None);
        assert_eq!(hint(&["http://h1:9000,http://h2:9000"]), None);
        assert_eq!(
            hint(&["http://h{1...2}:9000", "http://dr{1...2}:9000"]),
            None
        );
        assert_eq!(hint(&["http://primary:9000", "http://standby:9000"]), None);
        // Two numbers differ: not one brace.
        assert_eq!(hint(&["http://r1-n1:9000", "http://r2-n2:9000"]), None);
        assert_eq!(hint(&["http://h1:9000"]), None);
    }
}
