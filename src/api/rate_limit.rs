//! Submission rate limits (log-go's rate-limit configuration) and submit-token checks.
//!
//! A token names a domain; the log accepts it if the signature verifies under a key the
//! domain publishes in DNS. Limits then apply per submitter key, per configured domain, or
//! per registered domain under a public suffix, counted in fixed 24-hour windows.

use crate::api::dns::{DnsError, TxtResolver};
use crate::merkle::Hash;
use crate::sigsum::ascii::parse_digits;
use crate::sigsum::crypto::PublicKey;
use crate::sigsum::token::SubmitToken;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use thiserror::Error;
use unicode_normalization::UnicodeNormalization;

/// Label of the TXT records holding rate-limit keys.
const LABEL_V1: &str = "_sigsum_v1";
/// Older label, consulted only when the v1 name has no records.
const LABEL_V0: &str = "_sigsum_v0";
/// Records examined per lookup, as in sigsum-go: bounds the signature checks one request
/// can cause. Malformed records count towards the limit.
const MAX_KEYS: usize = 10;
/// Domain anyone can make tokens for (its private key is published), refused by default.
const TEST_DOMAIN: &str = "test.sigsum.org";
/// Length of a counting window.
const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Normalises a domain name: Unicode NFKC, lowercase, then IDNA to the ASCII (`xn--`)
/// form. Rejects names that are not valid DNS names or that do not survive the round trip.
pub fn normalize_domain(d: &str) -> Result<String, String> {
    let folded: String = d.nfkc().collect::<String>().to_lowercase();
    let uts46 = idna::uts46::Uts46::new();
    let ascii = uts46
        .to_ascii(
            folded.as_bytes(),
            idna::uts46::AsciiDenyList::EMPTY,
            idna::uts46::Hyphens::Allow,
            idna::uts46::DnsLength::Verify,
        )
        .map_err(|e| format!("invalid domain name {d:?}: {e}"))?
        .into_owned();
    // The deny list is empty so that underscore labels stay usable; everything else outside
    // letters, digits and hyphens cannot be a DNS name we should query.
    if let Some(c) = ascii
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "invalid domain name {d:?}: character {c:?} not allowed"
        ));
    }
    // Hickory cannot encode such a label, so the name could never be looked up.
    if ascii.split('.').any(|label| label.starts_with('-')) {
        return Err(format!(
            "invalid domain name {d:?}: a label starts with '-'"
        ));
    }
    // An A-label that decodes to unnormalised or uppercase Unicode would give one domain
    // two spellings, i.e. two separate rate-limit counters.
    let (unicode, result) = uts46.to_unicode(
        ascii.as_bytes(),
        idna::uts46::AsciiDenyList::EMPTY,
        idna::uts46::Hyphens::Allow,
    );
    if result.is_err() {
        return Err(format!(
            "invalid domain name {d:?}: cannot decode {ascii:?}"
        ));
    }
    let renormalized: String = unicode.nfkc().collect::<String>().to_lowercase();
    if renormalized != unicode {
        return Err(format!(
            "invalid domain name {d:?}: {ascii:?} decodes to unnormalised {unicode:?}"
        ));
    }
    Ok(ascii)
}

/// Why a submit token was not accepted. The message is sent to the submitter.
#[derive(Debug, Error)]
pub enum TokenError {
    /// The token's domain is not a valid domain name.
    #[error("sigsum-token: {0}")]
    BadDomain(String),
    /// The public test domain is disabled on this log.
    #[error("sigsum-token: the test domain {TEST_DOMAIN} is not accepted by this log")]
    TestDomain,
    /// DNS could not be consulted.
    #[error("sigsum-token: {0}")]
    Dns(#[from] DnsError),
    /// The domain publishes no rate-limit keys.
    #[error("sigsum-token: no TXT records at {LABEL_V1}.{domain} or {LABEL_V0}.{domain}")]
    NoKeys {
        /// The normalised domain.
        domain: String,
    },
    /// None of the published keys verifies the token.
    #[error(
        "sigsum-token: signature does not verify under any key at {name} \
         ({tried} valid keys tried, {malformed} malformed records, {ignored} records \
         beyond the first {MAX_KEYS} ignored)"
    )]
    NoMatchingKey {
        /// The DNS name the keys came from.
        name: String,
        /// Well-formed keys tried.
        tried: usize,
        /// Records that were not a hex Ed25519 public key.
        malformed: usize,
        /// Records not examined because of the per-lookup limit.
        ignored: usize,
    },
}

impl TokenError {
    /// Whether the token could not be checked at all (DNS unreachable or failing), as
    /// opposed to checked and found wanting: the submitter should retry, not give up.
    pub fn is_transient(&self) -> bool {
        matches!(self, TokenError::Dns(_))
    }
}

fn is_within(domain: &str, parent: &str) -> bool {
    domain == parent
        || domain
            .strip_suffix(parent)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Verifies a token; returns the normalised domain.
pub async fn verify_token(
    resolver: &dyn TxtResolver,
    token: &SubmitToken,
    log_key: &PublicKey,
    allow_test_domain: bool,
) -> Result<String, TokenError> {
    let domain = normalize_domain(&token.domain).map_err(TokenError::BadDomain)?;
    // Subdomains too: anyone holding the test key could publish under them otherwise.
    if !allow_test_domain && is_within(&domain, TEST_DOMAIN) {
        return Err(TokenError::TestDomain);
    }
    let mut name = format!("{LABEL_V1}.{domain}");
    let mut records = resolver.lookup_txt(&name).await?;
    if records.is_empty() {
        name = format!("{LABEL_V0}.{domain}");
        records = resolver.lookup_txt(&name).await?;
    }
    if records.is_empty() {
        return Err(TokenError::NoKeys { domain });
    }
    let ignored = records.len().saturating_sub(MAX_KEYS);
    let (mut tried, mut malformed) = (0, 0);
    for record in records.iter().take(MAX_KEYS) {
        let Some(key) = parse_key(record) else {
            malformed += 1;
            continue;
        };
        tried += 1;
        if token.verify(&key, log_key).is_ok() {
            return Ok(domain);
        }
    }
    Err(TokenError::NoMatchingKey {
        name,
        tried,
        malformed,
        ignored,
    })
}

fn parse_key(record: &str) -> Option<PublicKey> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(record.trim(), &mut key).ok()?;
    Some(PublicKey(key))
}

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
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
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
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A rule in the public suffix list is malformed.
    #[error("public suffix list {path} line {line}: {message}")]
    SuffixList {
        /// The suffix list file.
        path: PathBuf,
        /// 1-based line number in the suffix list.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// Public suffix list rules, all in ASCII (`xn--`) form like normalised domains.
#[derive(Debug, Default)]
struct SuffixList {
    /// Plain rules, `example.com`.
    exact: HashSet<String>,
    /// Wildcard rules `*.ck`, stored without the `*.`.
    wildcards: HashSet<String>,
    /// Exception rules `!www.ck`, stored without the `!`.
    exceptions: HashSet<String>,
}

/// `domain` and each parent obtained by dropping leading labels, longest first.
fn suffixes(domain: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(domain), |s| s.split_once('.').map(|(_, rest)| rest))
}

impl SuffixList {
    fn parse(text: &str, path: &Path) -> Result<SuffixList, RateLimitError> {
        let mut list = SuffixList::default();
        for (i, raw) in text.lines().enumerate() {
            let err = |message: String| RateLimitError::SuffixList {
                path: path.to_path_buf(),
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
            let ascii = normalize_domain(name).map_err(err)?;
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
    fn registered_domain<'d>(&self, domain: &'d str) -> Option<&'d str> {
        let suffix = self.public_suffix(domain)?;
        if suffix.len() == domain.len() {
            return Some(domain);
        }
        let head = &domain[..domain.len() - suffix.len() - 1];
        let start = head.rfind('.').map_or(0, |dot| dot + 1);
        Some(&domain[start..])
    }
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
                    let domain = normalize_domain(item).map_err(err)?;
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
                    let list = SuffixList::parse(&list_text, &path)?;
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
    use crate::api::dns::StaticResolver;
    use crate::sigsum::crypto::Signature;
    use crate::sigsum::token::token_message;
    use ed25519_dalek::{Signer, SigningKey};
    use futures::executor::block_on;

    fn keypair(seed: u8) -> (SigningKey, PublicKey) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let pk = PublicKey(sk.verifying_key().to_bytes());
        (sk, pk)
    }

    fn log_key() -> PublicKey {
        keypair(200).1
    }

    fn token(domain: &str, signer: &SigningKey) -> SubmitToken {
        SubmitToken {
            domain: domain.to_string(),
            signature: Signature(signer.sign(&token_message(&log_key())).to_bytes()),
        }
    }

    fn resolver(entries: &[(&str, Vec<String>)]) -> StaticResolver {
        StaticResolver::new(entries.iter().map(|(n, r)| (n.to_string(), r.clone())))
    }

    fn hex_key(pk: &PublicKey) -> String {
        hex::encode(pk.0)
    }

    #[test]
    fn token_verifies_via_v1_record() {
        let (sk, pk) = keypair(1);
        let r = resolver(&[("_sigsum_v1.example.org", vec![hex_key(&pk)])]);
        let got = block_on(verify_token(
            &r,
            &token("Example.ORG", &sk),
            &log_key(),
            false,
        ));
        assert_eq!(got.unwrap(), "example.org");
    }

    /// A name server that fails every lookup.
    struct BrokenDns;

    impl TxtResolver for BrokenDns {
        fn lookup_txt<'a>(
            &'a self,
            name: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<Vec<String>, DnsError>> {
            Box::pin(async move {
                Err(DnsError::Timeout {
                    name: name.to_string(),
                })
            })
        }
    }

    #[test]
    fn a_failing_dns_is_transient_and_a_wrong_key_is_not() {
        let (sk, pk) = keypair(1);
        let err = block_on(verify_token(
            &BrokenDns,
            &token("example.org", &sk),
            &log_key(),
            false,
        ))
        .unwrap_err();
        assert!(err.is_transient(), "{err}");
        let (other, _) = keypair(2);
        let r = resolver(&[("_sigsum_v1.example.org", vec![hex_key(&pk)])]);
        let err = block_on(verify_token(
            &r,
            &token("example.org", &other),
            &log_key(),
            false,
        ))
        .unwrap_err();
        assert!(!err.is_transient(), "{err}");
        let r = resolver(&[]);
        let err = block_on(verify_token(
            &r,
            &token("example.org", &sk),
            &log_key(),
            false,
        ))
        .unwrap_err();
        assert!(!err.is_transient(), "{err}");
    }

    #[test]
    fn token_falls_back_to_v0_record() {
        let (sk, pk) = keypair(1);
        let r = resolver(&[("_sigsum_v0.example.org", vec![hex_key(&pk)])]);
        let got = block_on(verify_token(
            &r,
            &token("example.org", &sk),
            &log_key(),
            false,
        ));
        assert_eq!(got.unwrap(), "example.org");
    }

    #[test]
    fn v0_is_not_consulted_when_v1_has_records() {
        let (sk, pk) = keypair(1);
        let (_, other) = keypair(2);
        let r = resolver(&[
            ("_sigsum_v1.example.org", vec![hex_key(&other)]),
            ("_sigsum_v0.example.org", vec![hex_key(&pk)]),
        ]);
        let got = block_on(verify_token(
            &r,
            &token("example.org", &sk),
            &log_key(),
            false,
        ));
        assert!(
            matches!(got, Err(TokenError::NoMatchingKey { .. })),
            "{got:?}"
        );
    }

    #[test]
    fn token_signed_by_unpublished_key_is_rejected() {
        let (sk, _) = keypair(1);
        let (_, other) = keypair(2);
        let r = resolver(&[("_sigsum_v1.example.org", vec![hex_key(&other)])]);
        let got = block_on(verify_token(
            &r,
            &token("example.org", &sk),
            &log_key(),
            false,
        ));
        let err = got.unwrap_err();
        assert!(
            matches!(err, TokenError::NoMatchingKey { tried: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn token_for_another_log_is_rejected() {
        let (sk, pk) = keypair(1);
        let r = resolver(&[("_sigsum_v1.example.org", vec![hex_key(&pk)])]);
        let other_log = keypair(201).1;
        let got = block_on(verify_token(
            &r,
            &token("example.org", &sk),
            &other_log,
            false,
        ));
        assert!(
            matches!(got, Err(TokenError::NoMatchingKey { .. })),
            "{got:?}"
        );
    }

    #[test]
    fn domain_without_records_is_rejected() {
        let (sk, _) = keypair(1);
        let r = resolver(&[]);
        let got = block_on(verify_token(
            &r,
            &token("example.org", &sk),
            &log_key(),
            false,
        ));
        assert!(matches!(got, Err(TokenError::NoKeys { .. })), "{got:?}");
    }

    #[test]
    fn only_the_first_ten_records_are_tried() {
        let (sk, pk) = keypair(1);
        let mut records: Vec<String> = (2..12).map(|s| hex_key(&keypair(s).1)).collect();
        records.push(hex_key(&pk));
        let r = resolver(&[("_sigsum_v1.example.org", records.clone())]);
        let got = block_on(verify_token(
            &r,
            &token("example.org", &sk),
            &log_key(),
            false,
        ));
        assert!(
            matches!(
                got,
                Err(TokenError::NoMatchingKey {
                    tried: 10,
                    ignored: 1,
                    ..
                })
            ),
            "{got:?}"
        );
        // The same key as the tenth record is accepted.
        records.remove(0);
        let r = resolver(&[("_sigsum_v1.example.org", records)]);
        let got = block_on(verify_token(
            &r,
            &token("example.org", &sk),
            &log_key(),
            false,
        ));
        assert_eq!(got.unwrap(), "example.org");
    }

    #[test]
    fn malformed_records_are_skipped() {
        let (sk, pk) = keypair(1);
        let records = vec![
            "not hex at all".to_string(),
            "abcd".to_string(),
            format!("{}00", hex_key(&pk)),
            hex_key(&pk),
        ];
        let r = resolver(&[("_sigsum_v1.example.org", records)]);
        let got = block_on(verify_token(
            &r,
            &token("example.org", &sk),
            &log_key(),
            false,
        ));
        assert_eq!(got.unwrap(), "example.org");

        let r = resolver(&[("_sigsum_v1.example.org", vec!["zz".repeat(32)])]);
        let got = block_on(verify_token(
            &r,
            &token("example.org", &sk),
            &log_key(),
            false,
        ));
        assert!(
            matches!(
                got,
                Err(TokenError::NoMatchingKey {
                    tried: 0,
                    malformed: 1,
                    ..
                })
            ),
            "{got:?}"
        );
    }

    #[test]
    fn test_domain_is_refused_unless_allowed() {
        let (sk, pk) = keypair(1);
        let r = resolver(&[
            ("_sigsum_v1.test.sigsum.org", vec![hex_key(&pk)]),
            ("_sigsum_v1.sub.test.sigsum.org", vec![hex_key(&pk)]),
        ]);
        for domain in ["test.sigsum.org", "TEST.sigsum.org", "sub.test.sigsum.org"] {
            let got = block_on(verify_token(&r, &token(domain, &sk), &log_key(), false));
            assert!(
                matches!(got, Err(TokenError::TestDomain)),
                "{domain}: {got:?}"
            );
        }
        let got = block_on(verify_token(
            &r,
            &token("test.sigsum.org", &sk),
            &log_key(),
            true,
        ));
        assert_eq!(got.unwrap(), "test.sigsum.org");
    }

    #[test]
    fn invalid_token_domain_is_rejected_before_lookup() {
        let (sk, pk) = keypair(1);
        let r = resolver(&[("_sigsum_v1.exa mple.org", vec![hex_key(&pk)])]);
        let got = block_on(verify_token(
            &r,
            &token("exa mple.org", &sk),
            &log_key(),
            false,
        ));
        assert!(matches!(got, Err(TokenError::BadDomain(_))), "{got:?}");
    }

    struct FailingResolver;

    impl TxtResolver for FailingResolver {
        fn lookup_txt<'a>(
            &'a self,
            name: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<Vec<String>, DnsError>> {
            Box::pin(futures::future::ready(Err(DnsError::Timeout {
                name: name.to_string(),
            })))
        }
    }

    #[test]
    fn dns_failure_rejects_token() {
        let (sk, _) = keypair(1);
        let got = block_on(verify_token(
            &FailingResolver,
            &token("example.org", &sk),
            &log_key(),
            false,
        ));
        let err = got.unwrap_err();
        assert!(matches!(err, TokenError::Dns(_)), "{err:?}");
        assert!(err.to_string().contains("_sigsum_v1.example.org"), "{err}");
    }

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
            matches!(err, RateLimitError::SuffixList { line: 2, .. }),
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
