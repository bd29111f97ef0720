//! How a bad command line is reported: the first line is the error itself, the lines
//! after it are hints (a close flag, the valid values) and where to read more. clap's
//! own rendering adds a usage block and blank lines; this keeps what a user acts on.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Command;

use crate::config::endpoints::NO_SITE;

pub const SEE_HELP: &str = "see `sidekick --help`";

/// The error line followed by one indented line per hint.
pub fn with_hints<S: AsRef<str>>(error: &str, hints: impl IntoIterator<Item = S>) -> String {
    let mut out = error.to_string();
    for hint in hints {
        out.push_str("\n  ");
        out.push_str(hint.as_ref());
    }
    out
}

/// A clap error as an error line and hints.
pub fn from_clap(e: &clap::Error) -> String {
    let first = match e.kind() {
        ErrorKind::MissingRequiredArgument => missing(e),
        _ => first_line(&e.render().to_string()),
    };
    let mut hints = Vec::new();
    for kind in [ContextKind::SuggestedArg, ContextKind::SuggestedValue] {
        if let Some(ContextValue::String(close)) = e.get(kind) {
            hints.push(format!("did you mean `{close}`?"));
        }
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        // Empty for a missing value of a free-form option.
        if !valid.is_empty() {
            hints.push(format!("valid values: {}", valid.join(", ")));
        }
    }
    hints.push(SEE_HELP.to_string());
    with_hints(&first, hints)
}

/// Go's flag package takes `-health-path` for `--health-path`; clap would read it as a
/// cluster of short flags (`-h` prints the help). Such an argument is refused with
/// the flag it means, before clap sees it.
pub fn single_dash_long(cmd: &Command, args: &[OsString]) -> Option<String> {
    let args = args.iter().skip(1).take_while(|a| *a != "--");
    for arg in args.filter_map(|a| a.to_str()) {
        let Some(word) = arg.strip_prefix('-').filter(|w| !w.starts_with('-')) else {
            continue;
        };
        let name = word.split('=').next().unwrap_or(word);
        let known = name.len() > 1
            && cmd.get_arguments().any(|a| {
                a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|v| v.contains(&name))
            });
        if known {
            return Some(with_hints(
                &format!("error: unexpected argument '{arg}' found"),
                [format!("did you mean `--{name}`?"), SEE_HELP.to_string()],
            ));
        }
    }
    None
}

/// Only SITE is required, and its absence reads as `parse_sites` puts it; any other
/// missing argument is named as clap names it.
fn missing(e: &clap::Error) -> String {
    match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::Strings(args)) if args.iter().all(|a| a.contains("SITE")) => {
            format!("error: {NO_SITE}")
        }
        Some(ContextValue::Strings(args)) => format!("error: missing {}", args.join(", ")),
        _ => first_line(&e.render().to_string()),
    }
}

/// clap's first line; when it ends in a colon (`cannot be used with:`), the indented
/// lines it introduces are joined onto it.
fn first_line(text: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim().is_empty());
    let Some(first) = lines.next() else {
        return "error: invalid arguments".to_string();
    };
    if !first.ends_with(':') {
        return first.to_string();
    }
    let listed: Vec<&str> = lines
        .take_while(|l| l.starts_with(' ') && !l.trim().is_empty())
        .map(str::trim)
        .collect();
    format!("{first} {}", listed.join(", "))
}
