//! DNS TXT lookups for submit-token verification, behind a small trait so that token checks
//! can be tested without a network.

use futures::future::BoxFuture;
use futures::FutureExt;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use std::collections::HashMap;
use std::time::Duration;
use thiserror::Error;

/// How long one query to one name server may take. Token checks run while a submitter
/// waits, so a slow or dead resolver must fail fast rather than hold the request open.
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Upper bound on a whole lookup, covering hickory's retries over several name servers.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(6);

/// A failed DNS lookup. "The name does not exist" is not an error: lookups return no records.
#[derive(Debug, Error)]
pub enum DnsError {
    /// The system resolver configuration could not be read.
    #[error(
        "cannot set up the DNS resolver from the system configuration (/etc/resolv.conf): {0}"
    )]
    SystemConfig(String),
    /// The name server answered with an error or could not be reached.
    #[error("DNS lookup of {name} failed: {message}")]
    Lookup {
        name: String,
        /// What went wrong, as the resolver reports it.
        message: String,
    },
    /// No answer arrived in time.
    #[error("DNS lookup of {name} timed out")]
    Timeout { name: String },
}

/// Source of TXT records. Names are absolute: no search domains are appended.
pub trait TxtResolver: Send + Sync {
    /// TXT records of `name`; Ok(empty) when the name does not exist.
    fn lookup_txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, DnsError>>;
}

/// Resolver using the host's DNS configuration (`/etc/resolv.conf`).
#[derive(Clone)]
pub struct SystemResolver {
    resolver: TokioResolver,
}

impl SystemResolver {
    /// Builds a resolver from the system configuration, with short timeouts.
    pub fn new() -> Result<SystemResolver, DnsError> {
        let mut builder =
            TokioResolver::builder_tokio().map_err(|e| DnsError::SystemConfig(e.to_string()))?;
        let opts = builder.options_mut();
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = 1;
        let resolver = builder
            .build()
            .map_err(|e| DnsError::SystemConfig(e.to_string()))?;
        Ok(SystemResolver { resolver })
    }
}

impl std::fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemResolver").finish_non_exhaustive()
    }
}

impl TxtResolver for SystemResolver {
    fn lookup_txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, DnsError>> {
        async move {
            // Names here are already ASCII; hickory's UTF-8 parser would run IDNA with STD3
            // rules again and refuse underscores inside labels. The trailing dot makes the
            // name fully qualified, so resolv.conf search domains are never appended.
            let fqdn = if name.ends_with('.') {
                name.to_string()
            } else {
                format!("{name}.")
            };
            let query = Name::from_ascii(&fqdn).map_err(|e| DnsError::Lookup {
                name: name.to_string(),
                message: e.to_string(),
            })?;
            let lookup = tokio::time::timeout(LOOKUP_DEADLINE, self.resolver.txt_lookup(query))
                .await
                .map_err(|_| DnsError::Timeout {
                    name: name.to_string(),
                })?;
            match lookup {
                Ok(lookup) => Ok(lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::TXT(txt) => Some(txt),
                        _ => None,
                    })
                    .map(|txt| {
                        // A TXT record may be split into several character-strings; like
                        // Go's net.LookupTXT, join them into one value.
                        let bytes: Vec<u8> = txt
                            .txt_data
                            .iter()
                            .flat_map(|s| s.iter().copied())
                            .collect();
                        String::from_utf8_lossy(&bytes).into_owned()
                    })
                    .collect()),
                Err(e) if e.is_no_records_found() => Ok(Vec::new()),
                Err(e) => Err(DnsError::Lookup {
                    name: name.to_string(),
                    message: e.to_string(),
                }),
            }
        }
        .boxed()
    }
}

/// Fixed answers, for tests. Names compare case-insensitively and without a trailing dot.
#[derive(Clone, Debug, Default)]
pub struct StaticResolver {
    records: HashMap<String, Vec<String>>,
}

fn canonical_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl StaticResolver {
    /// A resolver answering each `(name, records)` pair; every other name does not exist.
    pub fn new(records: impl IntoIterator<Item = (String, Vec<String>)>) -> StaticResolver {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (name, values) in records {
            map.entry(canonical_name(&name)).or_default().extend(values);
        }
        StaticResolver { records: map }
    }
}

impl TxtResolver for StaticResolver {
    fn lookup_txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, DnsError>> {
        let answer = self
            .records
            .get(&canonical_name(name))
            .cloned()
            .unwrap_or_default();
        futures::future::ready(Ok(answer)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use std::path::Path;

    #[test]
    fn static_resolver_answers_known_names_only() {
        let r = StaticResolver::new([("_sigsum_v1.Example.org.".to_string(), vec!["ab".into()])]);
        assert_eq!(
            block_on(r.lookup_txt("_sigsum_v1.example.org")).unwrap(),
            vec!["ab".to_string()]
        );
        assert_eq!(
            block_on(r.lookup_txt("_SIGSUM_V1.example.org.")).unwrap(),
            vec!["ab".to_string()]
        );
        assert!(block_on(r.lookup_txt("_sigsum_v0.example.org"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn system_resolver_follows_the_host_configuration() {
        // With a resolv.conf (every supported host has one) the resolver must build; without
        // one, the error must say what it was trying to do.
        match (
            Path::new("/etc/resolv.conf").exists(),
            SystemResolver::new(),
        ) {
            (true, r) => assert!(r.is_ok(), "{r:?}"),
            (false, Ok(_)) => {}
            (false, Err(e)) => assert!(e.to_string().contains("DNS resolver"), "{e}"),
        }
    }
}
