//! Sigsum-side helpers for integration tests: an HTTP client for the public API, a
//! submitter that signs add-leaf requests, and a real Debian `sigsum-witness` process.

use ed25519_dalek::{Signer, SigningKey};
use quorumlog::merkle::Hash;
use quorumlog::sigsum::crypto::{namespaced, PublicKey, Signature};
use quorumlog::sigsum::leaf::{leaf_signed_message, AddLeafRequest, TreeLeaf};
use quorumlog::sigsum::tree_head::CosignedTreeHead;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// A blocking-free client of one or more nodes' public APIs.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Default for Http {
    fn default() -> Self {
        quorumlog_raft::network::tls::install_crypto_provider();
        Http {
            // No pooled connections: a server that closes a connection after an error answer
            // (a refused oversized body, say) must not fail the next request on it.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        }
    }
}

impl Http {
    pub async fn get(&self, addr: &str, path: &str) -> Result<Answer, String> {
        let r = self
            .client
            .get(format!("http://{addr}/{path}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        Ok(Answer {
            status,
            body: r.text().await.map_err(|e| e.to_string())?,
        })
    }

    pub async fn post(
        &self,
        addr: &str,
        path: &str,
        body: Vec<u8>,
        token: Option<&str>,
    ) -> Result<Answer, String> {
        let mut req = self.client.post(format!("http://{addr}/{path}")).body(body);
        if let Some(t) = token {
            req = req.header("sigsum-token", t);
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        Ok(Answer {
            status,
            body: r.text().await.map_err(|e| e.to_string())?,
        })
    }

    /// The published head of the node at `addr`, if it serves one.
    pub async fn tree_head(&self, addr: &str) -> Option<CosignedTreeHead> {
        let a = self.get(addr, "get-tree-head").await.ok()?;
        (a.status == 200).then(|| CosignedTreeHead::parse(a.body.as_bytes()).unwrap())
    }
}

/// A submitter with its own key.
pub struct Submitter {
    key: SigningKey,
}

impl Submitter {
    pub fn new(seed: u8) -> Submitter {
        Submitter {
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key().to_bytes())
    }

    /// A signed add-leaf request for a message derived from `n`.
    pub fn request(&self, n: u64) -> AddLeafRequest {
        let message = Hash::digest(&n.to_be_bytes()).0;
        let checksum = Hash::digest(&message);
        let signature = Signature(self.key.sign(&leaf_signed_message(&checksum)).to_bytes());
        AddLeafRequest {
            message,
            signature,
            public_key: self.public_key(),
        }
    }

    pub fn leaf(&self, n: u64) -> TreeLeaf {
        self.request(n).leaf()
    }

    /// A submit token for `log_key` under this key (as `sigsum-token create` makes it).
    pub fn token(&self, log_key: &PublicKey) -> String {
        let sig = self
            .key
            .sign(&namespaced("sigsum.org/v1/submit-token", &log_key.0));
        hex::encode(sig.to_bytes())
    }
}

/// A Debian `sigsum-witness` for one log, killed when dropped.
pub struct Witness {
    child: Child,
    pub url: String,
    pub public_hex: String,
    pub dir: PathBuf,
}

/// Generates an OpenSSH key pair with `sigsum-key`; returns the public key in hex.
pub fn sigsum_key(path: &Path) -> String {
    let out = Command::new("sigsum-key")
        .args(["generate", "-o"])
        .arg(path)
        .output()
        .expect("sigsum-key (Debian package sigsum-go) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("sigsum-key")
        .args(["to-hex", "-k"])
        .arg(path.with_extension("key.pub"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Witness {
    /// Writes the witness key in `dir` (before the cluster exists, so the policy can name it).
    pub fn prepare(dir: &Path, port: u16) -> (String, String) {
        let public_hex = sigsum_key(&dir.join("witness.key"));
        (public_hex, format!("http://127.0.0.1:{port}"))
    }

    /// Starts the witness for the log whose OpenSSH public key is `log_key_pub`.
    pub fn start(dir: &Path, port: u16, log_key_pub: &Path) -> Witness {
        let log = std::fs::File::create(dir.join("witness.log")).unwrap();
        let child = Command::new("sigsum-witness")
            .env("GODEBUG", "httpmuxgo121=0")
            .args(["-k"])
            .arg(dir.join("witness.key"))
            .arg("--log-key")
            .arg(log_key_pub)
            .arg("--state-file")
            .arg(dir.join("witness.state"))
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sigsum-witness (Debian package sigsum-go) must be installed");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sigsum-witness did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let public_hex = std::fs::read_to_string(dir.join("witness.hex")).unwrap_or_default();
        Witness {
            child,
            url: format!("http://127.0.0.1:{port}"),
            public_hex,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port below the ephemeral range.
pub fn free_port() -> u16 {
    super::free_base(1)
}
