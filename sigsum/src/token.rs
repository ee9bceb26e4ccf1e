//! Submit tokens (log.md section 4): the optional `sigsum-token` header a submitter sends to
//! be rate-limited by domain instead of as an unknown submitter.

use super::ascii::parse_hex;
use super::crypto::{namespaced, BadSignature, PublicKey, Signature};
use thiserror::Error;

/// Namespace of the token signature.
pub const TOKEN_NAMESPACE: &str = "sigsum.org/v1/submit-token";
/// Name of the HTTP header carrying the token (matched case-insensitively).
pub const TOKEN_HEADER: &str = "sigsum-token";

/// A `sigsum-token` header value that is not `<domain> <hex signature>`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid sigsum-token header: {0}")]
pub struct BadTokenHeader(pub String);

/// A parsed `sigsum-token` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmitToken {
    /// Domain whose `_sigsum_v1` TXT record lists the rate-limit key.
    pub domain: String,
    /// Signature by the rate-limit key over [`token_message`] for this log.
    pub signature: Signature,
}

/// `"sigsum.org/v1/submit-token" || 0x00 || log public key` (59 bytes). The token signs the
/// log's public key, not its key hash as the prose of log.md says.
pub fn token_message(log_key: &PublicKey) -> Vec<u8> {
    namespaced(TOKEN_NAMESPACE, &log_key.0)
}

impl SubmitToken {
    /// Parses a header value: exactly two parts separated by one space, a non-empty domain.
    pub fn parse_header(value: &str) -> Result<SubmitToken, BadTokenHeader> {
        let parts: Vec<&str> = value.split(' ').collect();
        let [domain, sig] = parts[..] else {
            return Err(BadTokenHeader(format!(
                "expected \"<domain> <hex signature>\", got {} parts",
                parts.len()
            )));
        };
        if domain.is_empty() {
            return Err(BadTokenHeader("empty domain".into()));
        }
        Ok(SubmitToken {
            domain: domain.to_string(),
            signature: Signature(parse_hex::<64>(sig).map_err(BadTokenHeader)?),
        })
    }

    /// Checks the token against a rate-limit key published for the domain.
    pub fn verify(
        &self,
        rate_limit_key: &PublicKey,
        log_key: &PublicKey,
    ) -> Result<(), BadSignature> {
        rate_limit_key.verify(&token_message(log_key), &self.signature, "submit token")
    }
}
