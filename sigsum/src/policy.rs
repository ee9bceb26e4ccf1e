//! Sigsum policy files (sigsum-go `doc/policy.md`): the known logs, the known witnesses
//! with their URLs, and the quorum rule a cosigned tree head has to meet.
//!
//! The log reads witness URLs and keys from the policy to collect cosignatures, and the
//! quorum to tell whether a collected set is enough.

use super::ascii::{parse_digits, parse_hex};
use super::crypto::PublicKey;
use crate::merkle::Hash;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The predefined name of the empty group: `quorum none` requires no cosignatures.
pub const NONE: &str = "none";

/// A log listed in a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyLog {
    /// The log's Ed25519 public key.
    pub public_key: PublicKey,
    /// Where the log is served, if the policy says.
    pub url: Option<String>,
}

/// A witness listed in a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyWitness {
    /// The witness's name in the policy; it means nothing outside the file.
    pub name: String,
    /// The witness's Ed25519 public key.
    pub public_key: PublicKey,
    /// The witness's tlog-witness URL prefix, if the policy says.
    pub url: Option<String>,
}

/// A parsed policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Logs, in file order.
    pub logs: Vec<PolicyLog>,
    /// Witnesses, in file order.
    pub witnesses: Vec<PolicyWitness>,
    quorum: Quorum,
}

/// What is wrong with one line of a policy.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LineProblem {
    /// The first word is not `log`, `witness`, `group` or `quorum`.
    #[error("unknown keyword {0:?}")]
    UnknownKeyword(String),
    /// The line has too few or too many words.
    #[error("wrong number of arguments, expected {0}")]
    Arguments(&'static str),
    /// A public key is not 64 hex digits.
    #[error("invalid public key: {0}")]
    BadKey(String),
    /// A witness or group name is already taken (`none` is predefined).
    #[error("duplicate name {0:?}")]
    DuplicateName(String),
    /// A name is used before the line that defines it.
    #[error("undefined name {0:?}")]
    UndefinedName(String),
    /// A group lists the same member twice, which would count one cosignature twice.
    #[error("group member {0:?} listed twice")]
    RepeatedMember(String),
    /// The same log or witness key appears on two lines.
    #[error("duplicate {kind} key {key}")]
    DuplicateKey {
        /// `log` or `witness`.
        kind: &'static str,
        /// The key in hex.
        key: String,
    },
    /// A group threshold is not `any`, `all` or a number from 1 to the member count.
    #[error("invalid threshold {0:?}")]
    BadThreshold(String),
    /// A second `quorum` line.
    #[error("quorum can only be set once")]
    SecondQuorum,
}

/// Why a policy could not be read.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// A line is invalid.
    #[error("policy line {line}: {problem}")]
    Line {
        /// Line number, from 1.
        line: usize,
        /// What is wrong with it.
        problem: LineProblem,
    },
    /// The policy has no `quorum` line.
    #[error("policy has no quorum line")]
    NoQuorum,
    /// The file could not be read.
    #[error("cannot read policy file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One name of the shared witness/group namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    /// Satisfied when the witness with this key hash cosigned.
    Witness(Hash),
    /// Satisfied when at least `k` of the member nodes are.
    Group { k: usize, members: Vec<usize> },
}

/// The quorum rule as a list of nodes in definition order. A group only refers to nodes
/// defined before it, so evaluating front to back sees every member first, and a group
/// used by many others is evaluated once rather than once per use.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Quorum {
    nodes: Vec<Node>,
    root: usize,
}

impl Quorum {
    fn satisfied(&self, cosigners: &[Hash]) -> bool {
        let mut met = Vec::with_capacity(self.root + 1);
        for node in &self.nodes[..=self.root] {
            let ok = match node {
                Node::Witness(h) => cosigners.contains(h),
                Node::Group { k, members } => members.iter().filter(|&&m| met[m]).count() >= *k,
            };
            met.push(ok);
        }
        met[self.root]
    }
}

/// Parsing state: the policy so far and the names defined so far.
struct Builder {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    nodes: Vec<Node>,
    names: HashMap<String, usize>,
    root: Option<usize>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            logs: Vec::new(),
            witnesses: Vec::new(),
            // `none` is the empty group, which every set of cosignatures satisfies.
            nodes: vec![Node::Group {
                k: 0,
                members: Vec::new(),
            }],
            names: HashMap::from([(NONE.to_string(), 0)]),
            root: None,
        }
    }

    fn define(&mut self, name: &str, node: Node) -> Result<(), LineProblem> {
        if self.names.contains_key(name) {
            return Err(LineProblem::DuplicateName(name.to_string()));
        }
        self.names.insert(name.to_string(), self.nodes.len());
        self.nodes.push(node);
        Ok(())
    }

    fn lookup(&self, name: &str) -> Result<usize, LineProblem> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| LineProblem::UndefinedName(name.to_string()))
    }

    fn line(&mut self, keyword: &str, args: &[&str]) -> Result<(), LineProblem> {
        match keyword {
            "log" => self.log(args),
            "witness" => self.witness(args),
            "group" => self.group(args),
            "quorum" => self.quorum(args),
            other => Err(LineProblem::UnknownKeyword(other.to_string())),
        }
    }

    fn log(&mut self, args: &[&str]) -> Result<(), LineProblem> {
        let (key, url) = match args {
            [key] => (key, None),
            [key, url] => (key, Some(url.to_string())),
            _ => return Err(LineProblem::Arguments("log <pubkey> [<url>]")),
        };
        let public_key = parse_key(key)?;
        if self.logs.iter().any(|l| l.public_key == public_key) {
            return Err(LineProblem::DuplicateKey {
                kind: "log",
                key: hex::encode(public_key.0),
            });
        }
        self.logs.push(PolicyLog { public_key, url });
        Ok(())
    }

    fn witness(&mut self, args: &[&str]) -> Result<(), LineProblem> {
        let (name, key, url) = match args {
            [name, key] => (name, key, None),
            [name, key, url] => (name, key, Some(url.to_string())),
            _ => return Err(LineProblem::Arguments("witness <name> <pubkey> [<url>]")),
        };
        let public_key = parse_key(key)?;
        if self.witnesses.iter().any(|w| w.public_key == public_key) {
            return Err(LineProblem::DuplicateKey {
                kind: "witness",
                key: hex::encode(public_key.0),
            });
        }
        self.define(name, Node::Witness(public_key.key_hash()))?;
        self.witnesses.push(PolicyWitness {
            name: name.to_string(),
            public_key,
            url,
        });
        Ok(())
    }

    fn group(&mut self, args: &[&str]) -> Result<(), LineProblem> {
        let [name, threshold, member_names @ ..] = args else {
            return Err(LineProblem::Arguments(
                "group <name> <k|any|all> <member>...",
            ));
        };
        if member_names.is_empty() {
            return Err(LineProblem::Arguments(
                "group <name> <k|any|all> <member>...",
            ));
        }
        let n = member_names.len();
        let k = match *threshold {
            "any" => 1,
            "all" => n,
            s => parse_digits(s)
                .ok()
                .and_then(|k| usize::try_from(k).ok())
                .filter(|k| (1..=n).contains(k))
                .ok_or_else(|| LineProblem::BadThreshold(s.to_string()))?,
        };
        let mut members = Vec::with_capacity(n);
        for (i, m) in member_names.iter().enumerate() {
            if member_names[..i].contains(m) {
                return Err(LineProblem::RepeatedMember(m.to_string()));
            }
            members.push(self.lookup(m)?);
        }
        self.define(name, Node::Group { k, members })
    }

    fn quorum(&mut self, args: &[&str]) -> Result<(), LineProblem> {
        let [name] = args else {
            return Err(LineProblem::Arguments("quorum <name>"));
        };
        if self.root.is_some() {
            return Err(LineProblem::SecondQuorum);
        }
        self.root = Some(self.lookup(name)?);
        Ok(())
    }
}

fn parse_key(s: &str) -> Result<PublicKey, LineProblem> {
    parse_hex::<32>(s)
        .map(PublicKey)
        .map_err(LineProblem::BadKey)
}

impl Policy {
    /// Parses a policy. Errors name the first bad line.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let mut b = Builder::new();
        for (i, raw) in text.lines().enumerate() {
            // A comment runs from `#` to the end of the line, wherever it starts.
            let content = raw.split_once('#').map_or(raw, |(before, _)| before);
            let words: Vec<&str> = content.split_whitespace().collect();
            let Some((keyword, args)) = words.split_first() else {
                continue;
            };
            b.line(keyword, args).map_err(|problem| PolicyError::Line {
                line: i + 1,
                problem,
            })?;
        }
        let root = b.root.ok_or(PolicyError::NoQuorum)?;
        Ok(Policy {
            logs: b.logs,
            witnesses: b.witnesses,
            quorum: Quorum {
                nodes: b.nodes,
                root,
            },
        })
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Policy::parse(&text)
    }

    /// Whether cosignatures from the witnesses with these key hashes (each already
    /// verified by the caller) meet the quorum. Hashes of unknown keys count for nothing.
    pub fn quorum_satisfied(&self, cosigning_key_hashes: &[Hash]) -> bool {
        self.quorum.satisfied(cosigning_key_hashes)
    }

    /// The witness with this key hash, if the policy lists it.
    pub fn witness_by_key_hash(&self, key_hash: &Hash) -> Option<&PolicyWitness> {
        self.witnesses
            .iter()
            .find(|w| w.public_key.key_hash() == *key_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::cosignature::Cosignature;

    const TV4_LOG: &str = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
    const TV4_WITNESS: &str = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";

    fn key(byte: u8) -> String {
        hex::encode([byte; 32])
    }

    fn kh(byte: u8) -> Hash {
        PublicKey([byte; 32]).key_hash()
    }

    fn line_error(text: &str) -> (usize, LineProblem) {
        match Policy::parse(text) {
            Err(PolicyError::Line { line, problem }) => (line, problem),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn tv5_policy_accepts_the_tv4_cosignature() {
        let text = format!("log {TV4_LOG}\nwitness w1 {TV4_WITNESS}\nquorum w1\n");
        let p = Policy::parse(&text).unwrap();
        assert_eq!(p.logs.len(), 1);
        assert_eq!(hex::encode(p.logs[0].public_key.0), TV4_LOG);
        assert_eq!(p.logs[0].url, None);
        assert_eq!(p.witnesses.len(), 1);
        assert_eq!(p.witnesses[0].name, "w1");
        assert_eq!(p.witnesses[0].url, None);
        let witness = p.witnesses[0].public_key;
        assert_eq!(
            witness.key_hash().to_hex(),
            "6a3803d5f059902a1c6dafbc9ba4729212f7caac08634cc3ae76b27529f03827"
        );

        // The TV5 proof's cosigned head: the cosignature verifies and meets the quorum.
        let log_key = p.logs[0].public_key;
        let checkpoint = Checkpoint {
            log_key_hash: log_key.key_hash(),
            size: 3,
            root_hash: Hash(
                parse_hex("24d8ab74f77842f7065b00ef7a7cac6dac727a7bab6c956cadd35c13c3727b1b")
                    .unwrap(),
            ),
        };
        let cs = Cosignature::parse_wire_value(&[
            "6a3803d5f059902a1c6dafbc9ba4729212f7caac08634cc3ae76b27529f03827",
            "1795303196",
            "c4818342cc333715e588f0a5f1470d2083b9d53815352b89a807210ecb0880bcaa876ba081a95d50dcc38fd727ad3009f686d1f84fc5c486c13abd5f30bfde0f",
        ])
        .unwrap();
        cs.verify(&witness, &checkpoint).unwrap();
        assert!(p.quorum_satisfied(&[cs.key_hash]));
        assert!(!p.quorum_satisfied(&[]));
        assert!(!p.quorum_satisfied(&[log_key.key_hash()]));
        assert_eq!(
            p.witness_by_key_hash(&cs.key_hash).map(|w| w.name.as_str()),
            Some("w1")
        );
    }

    #[test]
    fn urls_comments_and_blank_lines() {
        let text = format!(
            "# a comment\n\n   \nlog {} https://log.example/  # trailing comment\n\
             witness a {} https://a.example/wit\r\nwitness b\t{}\nquorum none # no cosignatures\n",
            key(1),
            key(2),
            key(3)
        );
        let p = Policy::parse(&text).unwrap();
        assert_eq!(p.logs[0].url.as_deref(), Some("https://log.example/"));
        assert_eq!(p.witnesses[0].url.as_deref(), Some("https://a.example/wit"));
        assert_eq!(p.witnesses[1].name, "b");
        assert_eq!(p.witnesses[1].url, None);
        assert!(p.quorum_satisfied(&[]));
    }

    #[test]
    fn nested_groups() {
        // The sigsum-go documentation's example: two of the X witnesses and one of the Y.
        let text = format!(
            "log {}\nwitness X1 {}\nwitness X2 {}\nwitness X3 {}\ngroup X-witnesses 2 X1 X2 X3\n\
             witness Y1 {}\nwitness Y2 {}\nwitness Y3 {}\ngroup Y-witnesses any Y1 Y2 Y3\n\
             group X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n",
            key(1),
            key(11),
            key(12),
            key(13),
            key(21),
            key(22),
            key(23)
        );
        let p = Policy::parse(&text).unwrap();
        assert_eq!(p.witnesses.len(), 6);
        assert!(p.quorum_satisfied(&[kh(11), kh(13), kh(22)]));
        assert!(p.quorum_satisfied(&[kh(11), kh(12), kh(13), kh(21), kh(22), kh(23)]));
        assert!(
            !p.quorum_satisfied(&[kh(11), kh(22)]),
            "one X is not enough"
        );
        assert!(!p.quorum_satisfied(&[kh(11), kh(12)]), "no Y");
        assert!(!p.quorum_satisfied(&[kh(21), kh(22), kh(23)]), "no X");
        // Repeating a hash does not make one witness count twice.
        assert!(!p.quorum_satisfied(&[kh(11), kh(11), kh(22)]));
        // Unknown keys count for nothing.
        assert!(!p.quorum_satisfied(&[kh(11), kh(99), kh(22)]));
    }

    #[test]
    fn single_witness_and_group_thresholds() {
        let base = format!(
            "witness a {}\nwitness b {}\nwitness c {}\n",
            key(1),
            key(2),
            key(3)
        );
        let p = Policy::parse(&format!("{base}quorum b\n")).unwrap();
        assert!(p.logs.is_empty());
        assert!(p.quorum_satisfied(&[kh(2)]));
        assert!(!p.quorum_satisfied(&[kh(1), kh(3)]));

        let p = Policy::parse(&format!("{base}group g all a b c\nquorum g\n")).unwrap();
        assert!(p.quorum_satisfied(&[kh(3), kh(1), kh(2)]));
        assert!(!p.quorum_satisfied(&[kh(1), kh(2)]));

        let p = Policy::parse(&format!("{base}group g any a b c\nquorum g\n")).unwrap();
        assert!(p.quorum_satisfied(&[kh(3)]));
        assert!(!p.quorum_satisfied(&[]));

        let p = Policy::parse(&format!("{base}group g 3 a b c\nquorum g\n")).unwrap();
        assert!(!p.quorum_satisfied(&[kh(1), kh(2)]));
        assert!(p.quorum_satisfied(&[kh(1), kh(2), kh(3)]));

        // `none` inside a group is the always-satisfied empty group.
        let p = Policy::parse(&format!("{base}group g 2 none a\nquorum g\n")).unwrap();
        assert!(p.quorum_satisfied(&[kh(1)]));
        assert!(!p.quorum_satisfied(&[kh(2)]));
    }

    #[test]
    fn deeply_shared_groups_evaluate_quickly() {
        // Each group uses the previous one twice: a tree expansion would be 2^60 nodes.
        let mut text = format!("witness w {}\ngroup g0 all w\n", key(1));
        for i in 1..=60 {
            text.push_str(&format!("group g{i} 1 g{} w\n", i - 1));
        }
        text.push_str("group top all g60 g59\nquorum top\n");
        let p = Policy::parse(&text).unwrap();
        assert!(p.quorum_satisfied(&[kh(1)]));
        assert!(!p.quorum_satisfied(&[]));
    }

    #[test]
    fn bad_lines_name_their_line_number() {
        let w = |name: &str, b: u8| format!("witness {name} {}\n", key(b));
        let cases: Vec<(String, usize, LineProblem)> = vec![
            (
                "# header\n\nfrobnicate x\nquorum none\n".into(),
                3,
                LineProblem::UnknownKeyword("frobnicate".into()),
            ),
            (
                "log\nquorum none\n".into(),
                1,
                LineProblem::Arguments("log <pubkey> [<url>]"),
            ),
            (
                format!("log {} u extra\n", key(1)),
                1,
                LineProblem::Arguments("log <pubkey> [<url>]"),
            ),
            (
                format!("witness a\n{}", w("b", 2)),
                1,
                LineProblem::Arguments("witness <name> <pubkey> [<url>]"),
            ),
            (
                "log 1234\n".into(),
                1,
                LineProblem::BadKey("expected 64 hex digits, got 4".into()),
            ),
            (
                format!("log {}\n", "zz".repeat(32)),
                1,
                LineProblem::BadKey(format!("{:?} is not hex", "zz".repeat(32))),
            ),
            (
                format!("{}{}", w("a", 1), w("a", 2)),
                2,
                LineProblem::DuplicateName("a".into()),
            ),
            (w("none", 1), 1, LineProblem::DuplicateName("none".into())),
            (
                format!("{}group a any a\n", w("a", 1)),
                2,
                LineProblem::DuplicateName("a".into()),
            ),
            (
                format!("{}{}", w("a", 1), w("b", 1)),
                2,
                LineProblem::DuplicateKey {
                    kind: "witness",
                    key: key(1),
                },
            ),
            (
                format!("log {}\n\nlog {}\n", key(1), key(1)),
                3,
                LineProblem::DuplicateKey {
                    kind: "log",
                    key: key(1),
                },
            ),
            (
                format!("group g any a\n{}", w("a", 1)),
                1,
                LineProblem::UndefinedName("a".into()),
            ),
            (
                "quorum w\n".into(),
                1,
                LineProblem::UndefinedName("w".into()),
            ),
            (
                format!("{}{}group g any a b a\n", w("a", 1), w("b", 2)),
                3,
                LineProblem::RepeatedMember("a".into()),
            ),
            (
                format!("{}group g 0 a\n", w("a", 1)),
                2,
                LineProblem::BadThreshold("0".into()),
            ),
            (
                format!("{}group g 2 a\n", w("a", 1)),
                2,
                LineProblem::BadThreshold("2".into()),
            ),
            (
                format!("{}group g +1 a\n", w("a", 1)),
                2,
                LineProblem::BadThreshold("+1".into()),
            ),
            (
                format!("{}group g some a\n", w("a", 1)),
                2,
                LineProblem::BadThreshold("some".into()),
            ),
            (
                format!("{}group g any\n", w("a", 1)),
                2,
                LineProblem::Arguments("group <name> <k|any|all> <member>..."),
            ),
            (
                "quorum none\nquorum none\n".into(),
                2,
                LineProblem::SecondQuorum,
            ),
            (
                "quorum none extra\n".into(),
                1,
                LineProblem::Arguments("quorum <name>"),
            ),
        ];
        for (text, line, problem) in cases {
            assert_eq!(line_error(&text), (line, problem), "policy:\n{text}");
        }
    }

    #[test]
    fn missing_quorum_is_an_error() {
        let err = Policy::parse(&format!("log {}\nwitness a {}\n", key(1), key(2))).unwrap_err();
        assert!(matches!(err, PolicyError::NoQuorum), "{err:?}");
        assert!(matches!(Policy::parse(""), Err(PolicyError::NoQuorum)));
    }

    #[test]
    fn error_messages_are_readable() {
        let err = Policy::parse("quorum none\nquorum none\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy line 2: quorum can only be set once"
        );
    }

    #[test]
    fn load_reads_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.policy");
        std::fs::write(
            &path,
            format!("log {TV4_LOG}\nwitness w1 {TV4_WITNESS}\nquorum w1\n"),
        )
        .unwrap();
        let p = Policy::load(&path).unwrap();
        assert_eq!(p.witnesses[0].name, "w1");
        let err = Policy::load(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, PolicyError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("missing"));
    }
}
