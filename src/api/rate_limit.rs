//! Submission rate limits (log-go's rate-limit configuration): per submitter key, per
//! configured domain, or per registered domain under a public suffix, counted in fixed
//! 24-hour windows. The domain comes from a verified submit token (`submit_token`).

use crate::api::domain::normalize_domain;
use crate::api::public_suffix::{suffixes, SuffixList};
use crate::merkle::Hash;
use crate::sigsum::ascii::parse_digits;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Length of a counting window.
const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// A submission refused by the rate limits; the message is sent with the 429.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// A rate-limit configuration or public suffix list that cannot be used.
#[derive(Debug, Error)]
pub enum RateLimitError {
    /// The configuration file could not be read.
    #[error("cannot read rate-limit config {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configuration line is malformed.
    #[error("rate-limit config line {line}: {message}")]
    Config {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The public suffix list named on a `public` line could not be read.
    #[error("cannot read public suffix list {path} (rate-limit config line {line}): {source}")]
    ReadSuffixList {
        /// The suffix list file, resolved against the config directory.
        path: PathBuf,
        /// The `public` line naming it.
        line: usize,
        #[source]
        source: std::io::Error,
    },
    /// A rule in the public suffix list is malformed.
    #[error("public suffix list {path} {source}")]
    SuffixList {
        /// The suffix list file.
        path: PathBuf,
        #[source]
        source: crate::api::public_suffix::SuffixListError,
    },
}

/// Per-registered-domain limit under a public suffix list.
#[derive(Debug)]
struct PublicRule {
    limit: u64,
    list: SuffixList,
}

/// What a charge was counted against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Counter {
    Key(Hash),
    Domain(String),
    Public(String),
}

/// Counters of the current window.
#[derive(Debug, Default)]
struct Counts {
    window: u64,
    used: HashMap<Counter, u64>,
}

/// A configured rate limiter (as opposed to an unlimited one).
#[derive(Debug)]
struct Limits {
    keys: HashMap<Hash, u64>,
    domains: HashMap<String, u64>,
    public: Option<PublicRule>,
    start: Instant,
    counts: Mutex<Counts>,
}

/// Limits on unique leaves per submitter per 24 hours, counted in memory.
#[derive(Debug)]
pub struct RateLimiter {
    /// None: every submission is allowed.
    limits: Option<Limits>,
}

/// One leaf counted against a limit, kept so it can be refunded.
#[derive(Debug)]
pub struct Charge {
    /// None for an unlimited limiter.
    counted: Option<(Counter, u64)>,
}

fn parse_limit(s: &str) -> Result<u64, String> {
    parse_digits(s).map_err(|e| format!("limit {s:?} is {e}"))
}

impl RateLimiter {
    /// A limiter that allows every submission.
    pub fn unlimited() -> RateLimiter {
        RateLimiter { limits: None }
    }

    /// Reads a configuration file; relative suffix-list paths are resolved against its
    /// directory.
    pub fn load(path: &Path) -> Result<RateLimiter, RateLimitError> {
        let text = std::fs::read_to_string(path).map_err(|source| RateLimitError::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        RateLimiter::parse(&text, base_dir)
    }

    /// Parses configuration text; relative suffix-list paths are resolved against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<RateLimiter, RateLimitError> {
        RateLimiter::parse_with_clock(text, base_dir, Instant::now())
    }

    /// [`RateLimiter::parse`] with the first window starting at `start`.
    pub(crate) fn parse_with_clock(
        text: &str,
        base_dir: &Path,
        start: Instant,
    ) -> Result<RateLimiter, RateLimitError> {
        let mut keys = HashMap::new();
        let mut domains = HashMap::new();
        let mut public = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |message: String| RateLimitError::Config { line, message };
            let content = raw.split_once('#').map_or(raw, |(before, _)| before);
            let fields: Vec<&str> = content.split_whitespace().collect();
            let [kind, item, limit] = fields[..] else {
                if fields.is_empty() {
                    continue;
                }
                return Err(err(format!(
                    "expected \"<key|domain|public> <value> <limit>\", got {} fields",
                    fields.len()
                )));
            };
            let limit = parse_limit(limit).map_err(err)?;
            match kind {
                "key" => {
                    let mut hash = [0u8; 32];
                    hex::decode_to_slice(item, &mut hash)
                        .map_err(|_| err(format!("{item:?} is not a 32-byte hex key hash")))?;
                    if keys.insert(Hash(hash), limit).is_some() {
                        return Err(err(format!("key hash {item} listed twice")));
                    }
                }
                "domain" => {
                    let domain = normalize_domain(item).map_err(|e| err(e.to_string()))?;
                    if domains.insert(domain, limit).is_some() {
                        return Err(err(format!("domain {item} listed twice")));
                    }
                }
                "public" => {
                    if public.is_some() {
                        return Err(err("only one \"public\" line is allowed".into()));
                    }
                    let path = base_dir.join(item);
                    let list_text = std::fs::read_to_string(&path).map_err(|source| {
                        RateLimitError::ReadSuffixList {
                            path: path.clone(),
                            line,
                            source,
                        }
                    })?;
                    let list = SuffixList::parse(&list_text)
                        .map_err(|source| RateLimitError::SuffixList { path, source })?;
                    public = Some(PublicRule { limit, list });
                }
                other => return Err(err(format!("unknown keyword {other:?}"))),
            }
        }
        Ok(RateLimiter {
            limits: Some(Limits {
                keys,
                domains,
                public,
                start,
                counts: Mutex::new(Counts::default()),
            }),
        })
    }

    /// Charges one leaf; Err(Refused) with a human message for a 429.
    pub fn acquire(
        &self,
        key_hash: &Hash,
        verified_domain: Option<&str>,
    ) -> Result<Charge, Refused> {
        self.acquire_at(key_hash, verified_domain, Instant::now())
    }

    /// [`RateLimiter::acquire`] at a given time, so tests can move the clock.
    pub(crate) fn acquire_at(
        &self,
        key_hash: &Hash,
        verified_domain: Option<&str>,
        now: Instant,
    ) -> Result<Charge, Refused> {
        let Some(limits) = &self.limits else {
            return Ok(Charge { counted: None });
        };
        let (counter, limit, what) = limits.select(key_hash, verified_domain)?;
        let window = limits.window_at(now);
        let mut counts = limits.lock();
        if counts.window != window {
            // Fixed windows: everything starts over at the boundary.
            counts.window = window;
            counts.used.clear();
        }
        let used = counts.used.entry(counter.clone()).or_insert(0);
        if *used >= limit {
            return Err(Refused(format!(
                "rate limit for {what} exceeded ({limit} leaves per 24 hours)"
            )));
        }
        *used += 1;
        Ok(Charge {
            counted: Some((counter, window)),
        })
    }

    /// Gives back a charge (the leaf was already in the log).
    pub fn refund(&self, charge: Charge) {
        let (Some(limits), Some((counter, window))) = (&self.limits, charge.counted) else {
            return;
        };
        let mut counts = limits.lock();
        // A charge from an earlier window was already wiped by the reset.
        if counts.window != window {
            return;
        }
        if let Some(used) = counts.used.get_mut(&counter) {
            *used = used.saturating_sub(1);
        }
    }
}

impl Limits {
    fn window_at(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs() / WINDOW.as_secs()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counters stay consistent under every early return, so a poisoned lock is usable.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counter and limit that apply, and how to name it in a refusal.
    fn select(
        &self,
        key_hash: &Hash,
        verified_domain: Option<&str>,
    ) -> Result<(Counter, u64, String), Refused> {
        if let Some(&limit) = self.keys.get(key_hash) {
            return Ok((Counter::Key(*key_hash), limit, format!("key {key_hash}")));
        }
        let Some(domain) = verified_domain else {
            return Err(Refused(
                "rate limit for unknown domain exceeded (no sigsum-token header)".into(),
            ));
        };
        let domain = domain.to_ascii_lowercase();
        if let Some((configured, &limit)) =
            suffixes(&domain).find_map(|s| self.domains.get_key_value(s))
        {
            return Ok((
                Counter::Domain(configured.clone()),
                limit,
                format!("domain {configured}"),
            ));
        }
        if let Some(public) = &self.public {
            if let Some(registered) = public.list.registered_domain(&domain) {
                return Ok((
                    Counter::Public(registered.to_string()),
                    public.limit,
                    format!("domain {registered}"),
                ));
            }
        }
        Err(Refused(format!(
            "rate limit for unknown domain exceeded ({domain} is not allowed by this log)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> Hash {
        Hash([n; 32])
    }

    fn limiter(text: &str) -> RateLimiter {
        RateLimiter::parse(text, Path::new(".")).unwrap()
    }

    #[test]
    fn key_limit_is_enforced() {
        let l = limiter(&format!("key {} 2\n", hash(1).to_hex()));
        assert!(l.acquire(&hash(1), None).is_ok());
        assert!(l.acquire(&hash(1), None).is_ok());
        let refused = l.acquire(&hash(1), None).unwrap_err();
        assert!(refused.0.contains(&hash(1).to_hex()), "{refused}");
        // Another key has no rule and no token.
        let refused = l.acquire(&hash(2), None).unwrap_err();
        assert!(refused.0.contains("unknown domain"), "{refused}");
    }

    #[test]
    fn key_rule_takes_precedence_over_domain() {
        let l = limiter(&format!(
            "key {} 0\ndomain example.org 5\n",
            hash(1).to_hex()
        ));
        assert!(l.acquire(&hash(1), Some("example.org")).is_err());
        assert!(l.acquire(&hash(2), Some("example.org")).is_ok());
    }

    #[test]
    fn refund_restores_the_count() {
        let l = limiter("domain example.org 1\n");
        let charge = l.acquire(&hash(1), Some("example.org")).unwrap();
        assert!(l.acquire(&hash(2), Some("example.org")).is_err());
        l.refund(charge);
        assert!(l.acquire(&hash(2), Some("example.org")).is_ok());
        assert!(l.acquire(&hash(3), Some("example.org")).is_err());
    }

    #[test]
    fn domain_rule_uses_longest_suffix_on_label_boundaries() {
        let l = limiter("domain example.org 1\ndomain a.example.org 2\n");
        // a.example.org and its subdomains share the more specific counter.
        assert!(l.acquire(&hash(1), Some("a.example.org")).is_ok());
        assert!(l.acquire(&hash(1), Some("x.a.example.org")).is_ok());
        assert!(l.acquire(&hash(1), Some("y.a.example.org")).is_err());
        // Other subdomains count against example.org.
        assert!(l.acquire(&hash(1), Some("b.example.org")).is_ok());
        assert!(l.acquire(&hash(1), Some("example.org")).is_err());
        // Not a label boundary.
        let refused = l.acquire(&hash(1), Some("badexample.org")).unwrap_err();
        assert!(refused.0.contains("unknown domain"), "{refused}");
    }

    #[test]
    fn config_domains_are_normalised() {
        let l = limiter("domain BÜCHER.example 1 # comment\n");
        assert!(l.acquire(&hash(1), Some("xn--bcher-kva.example")).is_ok());
        assert!(l
            .acquire(&hash(1), Some("shop.xn--bcher-kva.example"))
            .is_err());
    }

    fn with_psl(config: &str) -> (tempfile::TempDir, RateLimiter) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("psl.dat"),
            "// comment\n\norg\nco.uk\nuk\n*.ck\n!www.ck\n公司.cn\ncn\n",
        )
        .unwrap();
        let config_path = dir.path().join("rate-limit.conf");
        std::fs::write(&config_path, config).unwrap();
        let l = RateLimiter::load(&config_path).unwrap();
        (dir, l)
    }

    #[test]
    fn public_rule_counts_per_registered_domain() {
        let (_dir, l) = with_psl("public psl.dat 1\n");
        assert!(l.acquire(&hash(1), Some("a.example.org")).is_ok());
        assert!(l.acquire(&hash(1), Some("b.example.org")).is_err());
        assert!(l.acquire(&hash(1), Some("other.org")).is_ok());
        // co.uk is a longer rule than uk.
        assert!(l.acquire(&hash(1), Some("x.foo.co.uk")).is_ok());
        assert!(l.acquire(&hash(1), Some("foo.co.uk")).is_err());
        assert!(l.acquire(&hash(1), Some("bar.co.uk")).is_ok());
        // Wildcard: every label under ck is a public suffix ...
        assert!(l.acquire(&hash(1), Some("x.a.foo.ck")).is_ok());
        assert!(l.acquire(&hash(1), Some("a.foo.ck")).is_err());
        assert!(l.acquire(&hash(1), Some("b.foo.ck")).is_ok());
        // ... except www.ck, which is registered under ck.
        assert!(l.acquire(&hash(1), Some("a.www.ck")).is_ok());
        assert!(l.acquire(&hash(1), Some("www.ck")).is_err());
        // Unicode rules match the ASCII form of normalised domains.
        let shop = normalize_domain("shop.example.公司.cn").unwrap();
        assert!(l.acquire(&hash(1), Some(&shop)).is_ok());
        let other = normalize_domain("www.example.公司.cn").unwrap();
        assert!(l.acquire(&hash(1), Some(&other)).is_err());
        // No rule matches.
        let refused = l.acquire(&hash(1), Some("example.invalid")).unwrap_err();
        assert!(refused.0.contains("unknown domain"), "{refused}");
        // Without a token only a key rule can apply.
        assert!(l.acquire(&hash(1), None).is_err());
    }

    #[test]
    fn domain_rule_overrides_public_rule() {
        let (_dir, l) = with_psl("public psl.dat 1\ndomain big.example.org 3\n");
        for _ in 0..3 {
            assert!(l.acquire(&hash(1), Some("x.big.example.org")).is_ok());
        }
        assert!(l.acquire(&hash(1), Some("big.example.org")).is_err());
        // The rest of example.org falls under the public rule.
        assert!(l.acquire(&hash(1), Some("small.example.org")).is_ok());
        assert!(l.acquire(&hash(1), Some("example.org")).is_err());
    }

    #[test]
    fn unknown_domain_is_refused() {
        let l = limiter("domain example.org 10\n");
        let refused = l.acquire(&hash(1), Some("example.com")).unwrap_err();
        assert!(refused.0.contains("unknown domain"), "{refused}");
        let l = limiter("# nothing configured\n\n");
        assert!(l.acquire(&hash(1), Some("example.com")).is_err());
        assert!(l.acquire(&hash(1), None).is_err());
    }

    #[test]
    fn window_resets_after_24_hours() {
        let start = Instant::now();
        let l =
            RateLimiter::parse_with_clock("domain example.org 1\n", Path::new("."), start).unwrap();
        let day = Duration::from_secs(24 * 60 * 60);
        assert!(l.acquire_at(&hash(1), Some("example.org"), start).is_ok());
        let late = start + day - Duration::from_secs(1);
        assert!(l.acquire_at(&hash(1), Some("example.org"), late).is_err());
        let old_charge = l
            .acquire_at(&hash(1), Some("example.org"), start + day)
            .unwrap();
        assert!(l
            .acquire_at(&hash(1), Some("example.org"), start + day)
            .is_err());
        // Window boundaries are fixed, not sliding from the first submission.
        let charge = l
            .acquire_at(
                &hash(1),
                Some("example.org"),
                start + 2 * day + Duration::from_secs(5),
            )
            .unwrap();
        // A charge from an earlier window must not free capacity in the current one.
        l.refund(old_charge);
        assert!(l
            .acquire_at(
                &hash(1),
                Some("example.org"),
                start + 2 * day + Duration::from_secs(6)
            )
            .is_err());
        l.refund(charge);
        assert!(l
            .acquire_at(
                &hash(1),
                Some("example.org"),
                start + 2 * day + Duration::from_secs(7)
            )
            .is_ok());
    }

    #[test]
    fn malformed_config_lines_name_the_line() {
        let key = hash(1).to_hex();
        let cases = [
            "bogus example.org 1".to_string(),
            "domain example.org".to_string(),
            "domain example.org 1 2".to_string(),
            "domain example.org -1".to_string(),
            "domain example.org +1".to_string(),
            "domain example.org many".to_string(),
            "domain exa/mple.org 1".to_string(),
            "key abcd 1".to_string(),
            format!("key {key}zz 1"),
            format!("key {key} 1\nkey {key} 2"),
            "domain example.org 1\ndomain EXAMPLE.org 2".to_string(),
        ];
        for case in cases {
            let text = format!("# header\n\ndomain ok.example 1\n{case}\n");
            let lines = case.lines().count();
            match RateLimiter::parse(&text, Path::new(".")) {
                Err(RateLimitError::Config { line, .. }) => {
                    assert_eq!(line, 3 + lines, "{case:?}")
                }
                other => panic!("{case:?}: {other:?}"),
            }
        }
        let err = RateLimiter::parse("\n\nkey nope 1\n", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn public_rule_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = RateLimiter::parse("public missing.dat 1\n", dir.path()).unwrap_err();
        assert!(
            matches!(err, RateLimitError::ReadSuffixList { line: 1, .. }),
            "{err:?}"
        );
        std::fs::write(dir.path().join("psl.dat"), "org\n").unwrap();
        let err =
            RateLimiter::parse("public psl.dat 1\npublic psl.dat 2\n", dir.path()).unwrap_err();
        assert!(
            matches!(err, RateLimitError::Config { line: 2, .. }),
            "{err:?}"
        );
        std::fs::write(dir.path().join("bad.dat"), "org\na.*.org\n").unwrap();
        let err = RateLimiter::parse("public bad.dat 1\n", dir.path()).unwrap_err();
        assert!(
            matches!(&err, RateLimitError::SuffixList { source, .. } if source.line == 2),
            "{err:?}"
        );
    }

    #[test]
    fn unlimited_never_refuses() {
        let l = RateLimiter::unlimited();
        for i in 0..1000u32 {
            let domain = (i % 2 == 0).then_some("example.org");
            let charge = l.acquire(&hash(1), domain).unwrap();
            if i % 3 == 0 {
                l.refund(charge);
            }
        }
    }

    #[test]
    fn zero_limit_refuses_everything() {
        let l = limiter("domain example.org 0\n");
        assert!(l.acquire(&hash(1), Some("example.org")).is_err());
    }

    #[test]
    fn limiter_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RateLimiter>();
        assert_send_sync::<Charge>();
    }
}
