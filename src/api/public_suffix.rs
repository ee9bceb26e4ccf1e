//! The public suffix list (publicsuffix.org's `public_suffix_list.dat` format): which part
//! of a domain is a public suffix, so a rate limit can count per registered domain.

use crate::api::domain::normalize_domain;
use std::collections::HashSet;
use thiserror::Error;

/// A rule of the list that cannot be used.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct SuffixListError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

/// Public suffix list rules, all in ASCII (`xn--`) form like normalised domains.
#[derive(Debug, Default)]
pub(crate) struct SuffixList {
    /// Plain rules, `example.com`.
    exact: HashSet<String>,
    /// Wildcard rules `*.ck`, stored without the `*.`.
    wildcards: HashSet<String>,
    /// Exception rules `!www.ck`, stored without the `!`.
    exceptions: HashSet<String>,
}

/// `domain` and each parent obtained by dropping leading labels, longest first.
pub(crate) fn suffixes(domain: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(domain), |s| s.split_once('.').map(|(_, rest)| rest))
}

impl SuffixList {
    pub(crate) fn parse(text: &str) -> Result<SuffixList, SuffixListError> {
        let mut list = SuffixList::default();
        for (i, raw) in text.lines().enumerate() {
            let err = |message: String| SuffixListError {
                line: i + 1,
                message,
            };
            // The format reads each line only up to its first whitespace.
            let Some(rule) = raw.split_whitespace().next() else {
                continue;
            };
            if rule.starts_with("//") {
                continue;
            }
            let (set, name) = if let Some(rest) = rule.strip_prefix("*.") {
                (&mut list.wildcards, rest)
            } else if let Some(rest) = rule.strip_prefix('!') {
                (&mut list.exceptions, rest)
            } else {
                (&mut list.exact, rule)
            };
            if name.contains('*') || name.contains('!') {
                return Err(err(format!("unsupported rule {rule:?}")));
            }
            let ascii = normalize_domain(name).map_err(|e| err(e.to_string()))?;
            set.insert(ascii);
        }
        Ok(list)
    }

    /// The public suffix of `domain`, or None when no rule matches it.
    fn public_suffix<'d>(&self, domain: &'d str) -> Option<&'d str> {
        // An exception rule wins over everything; its suffix is the rule minus one label.
        if let Some(exception) = suffixes(domain).find(|s| self.exceptions.contains(*s)) {
            return exception.split_once('.').map(|(_, rest)| rest);
        }
        // Walking from the longest candidate, the first match is the longest rule.
        suffixes(domain).find(|s| {
            self.exact.contains(*s)
                || s.split_once('.')
                    .is_some_and(|(_, parent)| self.wildcards.contains(parent))
        })
    }

    /// The registered domain: the public suffix plus one label. A domain that is itself a
    /// public suffix counts as its own registered domain, as in log-go.
    pub(crate) fn registered_domain<'d>(&self, domain: &'d str) -> Option<&'d str> {
        let suffix = self.public_suffix(domain)?;
        if suffix.len() == domain.len() {
            return Some(domain);
        }
        let head = &domain[..domain.len() - suffix.len() - 1];
        let start = head.rfind('.').map_or(0, |dot| dot + 1);
        Some(&domain[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_domains() {
        let list = SuffixList::parse("// comment\n\norg\nco.uk\nuk\n*.ck\n!www.ck\n").unwrap();
        assert_eq!(
            list.registered_domain("a.b.example.org"),
            Some("example.org")
        );
        assert_eq!(list.registered_domain("org"), Some("org"));
        assert_eq!(list.registered_domain("x.foo.co.uk"), Some("foo.co.uk"));
        assert_eq!(list.registered_domain("x.a.foo.ck"), Some("a.foo.ck"));
        assert_eq!(list.registered_domain("a.www.ck"), Some("www.ck"));
        assert_eq!(list.registered_domain("example.invalid"), None);
    }

    #[test]
    fn bad_rules_name_their_line() {
        let err = SuffixList::parse("org\na.*.org\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        let err = SuffixList::parse("org\n\n!a!b.org\n").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        let err = SuffixList::parse("exa mple\n").map(|_| ());
        assert!(
            err.is_ok(),
            "the format reads a line only up to its first whitespace"
        );
        let err = SuffixList::parse("a/b.org\n").unwrap_err();
        assert!(err.message.contains("invalid domain name"), "{err}");
    }
}
