//! Domain names as submit tokens and rate-limit rules spell them: one normal form, so one
//! domain never has two spellings (and two rate-limit counters).

use thiserror::Error;
use unicode_normalization::UnicodeNormalization;

/// A name that is not a DNS name the log can look up and count.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid domain name {name:?}: {reason}")]
pub struct InvalidDomain {
    name: String,
    reason: String,
}

impl InvalidDomain {
    fn new(name: &str, reason: impl std::fmt::Display) -> InvalidDomain {
        InvalidDomain {
            name: name.to_string(),
            reason: reason.to_string(),
        }
    }
}

pub fn normalize_domain(d: &str) -> Result<String, InvalidDomain> {
    let folded: String = d.nfkc().collect::<String>().to_lowercase();
    let uts46 = idna::uts46::Uts46::new();
    let ascii = uts46
        .to_ascii(
            folded.as_bytes(),
            idna::uts46::AsciiDenyList::EMPTY,
            idna::uts46::Hyphens::Allow,
            idna::uts46::DnsLength::Verify,
        )
        .map_err(|e| InvalidDomain::new(d, e))?
        .into_owned();
    // The deny list is empty so that underscore labels stay usable; everything else outside
    // letters, digits and hyphens cannot be a DNS name we should query.
    if let Some(c) = ascii
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(InvalidDomain::new(
            d,
            format!("character {c:?} not allowed"),
        ));
    }
    // Hickory cannot encode such a label, so the name could never be looked up.
    if ascii.split('.').any(|label| label.starts_with('-')) {
        return Err(InvalidDomain::new(d, "a label starts with '-'"));
    }
    // An A-label that decodes to unnormalised or uppercase Unicode would give one domain
    // two spellings, i.e. two separate rate-limit counters.
    let (unicode, result) = uts46.to_unicode(
        ascii.as_bytes(),
        idna::uts46::AsciiDenyList::EMPTY,
        idna::uts46::Hyphens::Allow,
    );
    if result.is_err() {
        return Err(InvalidDomain::new(d, format!("cannot decode {ascii:?}")));
    }
    let renormalized: String = unicode.nfkc().collect::<String>().to_lowercase();
    if renormalized != unicode {
        return Err(InvalidDomain::new(
            d,
            format!("{ascii:?} decodes to unnormalised {unicode:?}"),
        ));
    }
    Ok(ascii)
}

/// Whether `domain` is `parent` or a subdomain of it (both normalised).
pub(crate) fn is_within(domain: &str, parent: &str) -> bool {
    domain == parent
        || domain
            .strip_suffix(parent)
            .is_some_and(|rest| rest.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization() {
        assert_eq!(normalize_domain("ExAmple.ORG").unwrap(), "example.org");
        assert_eq!(
            normalize_domain("BÜCHER.example").unwrap(),
            "xn--bcher-kva.example"
        );
        // U+212B ANGSTROM SIGN is a compatibility form of U+00C5.
        assert_eq!(
            normalize_domain("\u{212B}ngstr\u{f6}m.se").unwrap(),
            normalize_domain("\u{e5}ngstr\u{f6}m.se").unwrap()
        );
        assert_eq!(
            normalize_domain("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(normalize_domain("_foo.example").unwrap(), "_foo.example");
        for bad in [
            "",
            "a..b",
            "example.org.",
            "exa mple.org",
            "a/b.org",
            "-a.org",
            "xn--72g.com",
            &format!("{}.org", "a".repeat(64)),
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn within_is_on_label_boundaries() {
        assert!(is_within("test.sigsum.org", "test.sigsum.org"));
        assert!(is_within("a.test.sigsum.org", "test.sigsum.org"));
        assert!(!is_within("atest.sigsum.org", "test.sigsum.org"));
        assert!(!is_within("sigsum.org", "test.sigsum.org"));
    }
}
