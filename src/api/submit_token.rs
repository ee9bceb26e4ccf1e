//! Checking a `sigsum-token` header: the token's domain publishes rate-limit keys in DNS
//! TXT records, and one of them must have signed this log's public key.

use crate::api::dns::{DnsError, TxtResolver};
use crate::api::domain::{is_within, normalize_domain, InvalidDomain};
use crate::sigsum::crypto::PublicKey;
use crate::sigsum::token::SubmitToken;
use thiserror::Error;

/// Label of the TXT records holding rate-limit keys.
const LABEL_V1: &str = "_sigsum_v1";
/// Older label, consulted only when the v1 name has no records.
const LABEL_V0: &str = "_sigsum_v0";
/// Records examined per lookup, as in sigsum-go: bounds the signature checks one request
/// can cause. Malformed records count towards the limit.
const MAX_KEYS: usize = 10;
/// Domain anyone can make tokens for (its private key is published), refused by default.
const TEST_DOMAIN: &str = "test.sigsum.org";

/// Why a submit token was not accepted. The message is sent to the submitter.
#[derive(Debug, Error)]
pub enum TokenError {
    /// The token's domain is not a valid domain name.
    #[error("sigsum-token: {0}")]
    BadDomain(#[from] InvalidDomain),
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

/// Verifies a token; returns the normalised domain.
pub async fn verify_token(
    resolver: &dyn TxtResolver,
    token: &SubmitToken,
    log_key: &PublicKey,
    allow_test_domain: bool,
) -> Result<String, TokenError> {
    let domain = normalize_domain(&token.domain)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::dns::StaticResolver;
    use crate::sigsum::crypto::Signature;
    use crate::sigsum::token::token_message;
    use ed25519_dalek::{Signer, SigningKey};

    fn keypair(seed: u8) -> (SigningKey, PublicKey) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let pk = PublicKey(sk.verifying_key().to_bytes());
        (sk, pk)
    }

    fn log_key() -> PublicKey {
        keypair(200).1
    }

    fn resolver(entries: &[(&str, Vec<String>)]) -> StaticResolver {
        StaticResolver::new(entries.iter().map(|(n, r)| (n.to_string(), r.clone())))
    }

    fn hex_key(pk: &PublicKey) -> String {
        hex::encode(pk.0)
    }

    /// What the log would say to a token for `domain` signed by `signer` for `log` (the
    /// test log unless given), with the test domain allowed or not.
    struct Check<'a> {
        domain: &'a str,
        signer: &'a SigningKey,
        log: Option<PublicKey>,
        allow_test_domain: bool,
    }

    impl Check<'_> {
        fn against(&self, dns: &dyn TxtResolver) -> Result<String, TokenError> {
            let signed_for = self.log.unwrap_or_else(log_key);
            let token = SubmitToken {
                domain: self.domain.to_string(),
                signature: Signature(self.signer.sign(&token_message(&signed_for)).to_bytes()),
            };
            futures::executor::block_on(verify_token(
                dns,
                &token,
                &log_key(),
                self.allow_test_domain,
            ))
        }
    }

    fn check<'a>(domain: &'a str, signer: &'a SigningKey) -> Check<'a> {
        Check {
            domain,
            signer,
            log: None,
            allow_test_domain: false,
        }
    }

    /// A name server that fails every lookup.
    struct BrokenDns;

    impl TxtResolver for BrokenDns {
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
    fn token_verifies_via_v1_record() {
        let (sk, pk) = keypair(1);
        let r = resolver(&[("_sigsum_v1.example.org", vec![hex_key(&pk)])]);
        assert_eq!(
            check("Example.ORG", &sk).against(&r).unwrap(),
            "example.org"
        );
    }

    #[test]
    fn a_failing_dns_is_transient_and_a_wrong_key_is_not() {
        let (sk, pk) = keypair(1);
        let err = check("example.org", &sk).against(&BrokenDns).unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(matches!(err, TokenError::Dns(_)), "{err:?}");
        assert!(err.to_string().contains("_sigsum_v1.example.org"), "{err}");
        let (other, _) = keypair(2);
        let r = resolver(&[("_sigsum_v1.example.org", vec![hex_key(&pk)])]);
        let err = check("example.org", &other).against(&r).unwrap_err();
        assert!(!err.is_transient(), "{err}");
        let err = check("example.org", &sk)
            .against(&resolver(&[]))
            .unwrap_err();
        assert!(!err.is_transient(), "{err}");
    }

    #[test]
    fn token_falls_back_to_v0_record() {
        let (sk, pk) = keypair(1);
        let r = resolver(&[("_sigsum_v0.example.org", vec![hex_key(&pk)])]);
        assert_eq!(
            check("example.org", &sk).against(&r).unwrap(),
            "example.org"
        );
    }

    #[test]
    fn v0_is_not_consulted_when_v1_has_records() {
        let (sk, pk) = keypair(1);
        let (_, other) = keypair(2);
        let r = resolver(&[
            ("_sigsum_v1.example.org", vec![hex_key(&other)]),
            ("_sigsum_v0.example.org", vec![hex_key(&pk)]),
        ]);
        let got = check("example.org", &sk).against(&r);
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
        let got = check("example.org", &sk).against(&r);
        assert!(
            matches!(got, Err(TokenError::NoMatchingKey { tried: 1, .. })),
            "{got:?}"
        );
    }

    #[test]
    fn token_for_another_log_is_rejected() {
        let (sk, pk) = keypair(1);
        let r = resolver(&[("_sigsum_v1.example.org", vec![hex_key(&pk)])]);
        let got = Check {
            log: Some(keypair(201).1),
            ..check("example.org", &sk)
        }
        .against(&r);
        assert!(
            matches!(got, Err(TokenError::NoMatchingKey { .. })),
            "{got:?}"
        );
    }

    #[test]
    fn domain_without_records_is_rejected() {
        let (sk, _) = keypair(1);
        let got = check("example.org", &sk).against(&resolver(&[]));
        assert!(matches!(got, Err(TokenError::NoKeys { .. })), "{got:?}");
    }

    #[test]
    fn only_the_first_ten_records_are_tried() {
        let (sk, pk) = keypair(1);
        let mut records: Vec<String> = (2..12).map(|s| hex_key(&keypair(s).1)).collect();
        records.push(hex_key(&pk));
        let r = resolver(&[("_sigsum_v1.example.org", records.clone())]);
        let got = check("example.org", &sk).against(&r);
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
        assert_eq!(
            check("example.org", &sk).against(&r).unwrap(),
            "example.org"
        );
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
        assert_eq!(
            check("example.org", &sk).against(&r).unwrap(),
            "example.org"
        );

        let r = resolver(&[("_sigsum_v1.example.org", vec!["zz".repeat(32)])]);
        let got = check("example.org", &sk).against(&r);
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
            let got = check(domain, &sk).against(&r);
            assert!(
                matches!(got, Err(TokenError::TestDomain)),
                "{domain}: {got:?}"
            );
        }
        let got = Check {
            allow_test_domain: true,
            ..check("test.sigsum.org", &sk)
        }
        .against(&r);
        assert_eq!(got.unwrap(), "test.sigsum.org");
    }

    #[test]
    fn invalid_token_domain_is_rejected_before_lookup() {
        let (sk, pk) = keypair(1);
        let r = resolver(&[("_sigsum_v1.exa mple.org", vec![hex_key(&pk)])]);
        let got = check("exa mple.org", &sk).against(&r);
        assert!(matches!(got, Err(TokenError::BadDomain(_))), "{got:?}");
    }
}
