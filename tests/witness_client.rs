//! The witness client against the real `sigsum-witness` (Debian sigsum-go 0.11.1; see the
//! Sigsum reference §4.2): each test starts its own witness process on loopback that
//! trusts a log key made here, and grows an RFC 6962 tree kept in a temporary
//! `MerkleStore`, so proofs come from the same code the log serves them from.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use quorumlog::merkle::{empty_root, leaf_hash, Hash, MerkleStore};
use quorumlog::publish::witness::{cosign, WitnessClient, WitnessError};
use quorumlog::sigsum::checkpoint::Checkpoint;
use quorumlog::sigsum::cosignature::Cosignature;
use quorumlog::sigsum::crypto::{PublicKey, Signature};
use quorumlog::sigsum::policy::PolicyWitness;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WITNESS_BIN: &str = "/usr/bin/sigsum-witness";
const KEY_BIN: &str = "/usr/bin/sigsum-key";

/// Kills and reaps the process when dropped, also when a test panics.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `sigsum-witness`. The process goes before its directory (field order).
struct Witness {
    _child: ChildGuard,
    url: String,
    key: PublicKey,
    _dir: tempfile::TempDir,
}

impl Witness {
    /// Starts a witness that trusts `log_key`.
    fn start(log_key: &PublicKey) -> Witness {
        assert!(
            Path::new(WITNESS_BIN).exists() && Path::new(KEY_BIN).exists(),
            "these tests need the sigsum-go tools: \
             apt-get install -t bookworm-backports sigsum-go"
        );
        let dir = tempfile::tempdir().unwrap();
        let wit_key = dir.path().join("wit.key");
        run(Command::new(KEY_BIN)
            .arg("generate")
            .arg("-o")
            .arg(&wit_key));
        let hex_key = run(Command::new(KEY_BIN)
            .arg("to-hex")
            .arg("-k")
            .arg(dir.path().join("wit.key.pub")));
        let key = PublicKey(
            hex::decode(hex_key.trim())
                .unwrap()
                .try_into()
                .expect("a 32-byte witness key"),
        );
        // sigsum-key cannot export a private key, so the log key is made here and only its
        // public half is handed to the witness.
        let log_pub = dir.path().join("log.key.pub");
        std::fs::write(&log_pub, openssh_public_key(log_key)).unwrap();

        // The probed port can be taken before the witness binds it; a witness that exits
        // at startup is retried on another port.
        let log_path = dir.path().join("witness.log");
        for _ in 0..3 {
            let port = free_port();
            let mut child = ChildGuard(
                Command::new(WITNESS_BIN)
                    .arg("-k")
                    .arg(&wit_key)
                    .arg("--log-key")
                    .arg(&log_pub)
                    .arg("--state-file")
                    .arg(dir.path().join("wit.state"))
                    .arg(format!("127.0.0.1:{port}"))
                    // The Debian build defaults to the pre-Go-1.22 mux, which 404s every
                    // request.
                    .env("GODEBUG", "httpmuxgo121=0")
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log_path).unwrap())
                    .spawn()
                    .expect("spawning sigsum-witness"),
            );
            if wait_until_listening(&mut child.0, port, Duration::from_secs(10)) {
                return Witness {
                    _child: child,
                    url: format!("http://127.0.0.1:{port}"),
                    key,
                    _dir: dir,
                };
            }
        }
        panic!(
            "sigsum-witness did not start:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }

    /// The witness as a policy lists it; the trailing slash checks URL joining.
    fn policy_entry(&self) -> PolicyWitness {
        PolicyWitness {
            name: "local".into(),
            public_key: self.key,
            url: Some(format!("{}/", self.url)),
        }
    }
}

/// Polls until `port` accepts connections; false if the process exits or `limit` passes.
fn wait_until_listening(child: &mut Child, port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command that must succeed; returns its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `ssh-ed25519 <base64(string "ssh-ed25519" || string key)>`, strings being a u32
/// big-endian length and the bytes (RFC 4253 §6.6).
fn openssh_public_key(key: &PublicKey) -> String {
    let mut blob = Vec::new();
    for part in [&b"ssh-ed25519"[..], &key.0[..]] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!("ssh-ed25519 {} quorumlog-test\n", B64.encode(blob))
}

/// The log side: a signing key and a tree.
struct Log {
    key: SigningKey,
    public: PublicKey,
    tree: MerkleStore,
    _dir: tempfile::TempDir,
}

impl Log {
    fn new() -> Log {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let public = PublicKey(key.verifying_key().to_bytes());
        let dir = tempfile::tempdir().unwrap();
        let tree = MerkleStore::open(&dir.path().join("tree")).unwrap();
        Log {
            key,
            public,
            tree,
            _dir: dir,
        }
    }

    fn grow_to(&self, size: u64) {
        let leaves: Vec<Hash> = (self.tree.size()..size)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect();
        assert_eq!(self.tree.append(&leaves).unwrap().size, size);
    }

    /// The checkpoint at the current size and its note signed by `signer`.
    fn checkpoint_signed_by(&self, signer: &SigningKey) -> (Checkpoint, String) {
        let size = self.tree.size();
        let cp = Checkpoint {
            log_key_hash: self.public.key_hash(),
            size,
            root_hash: self.tree.root(size).unwrap(),
        };
        let sig = Signature(signer.sign(cp.body().as_bytes()).to_bytes());
        let signer_pub = PublicKey(signer.verifying_key().to_bytes());
        (cp, cp.signed_note(&signer_pub, &sig))
    }

    fn checkpoint(&self) -> (Checkpoint, String) {
        self.checkpoint_signed_by(&self.key)
    }

    fn proof(&self, old: u64) -> Vec<Hash> {
        self.tree.consistency_proof(old, self.tree.size()).unwrap()
    }
}

fn client() -> WitnessClient {
    WitnessClient::new(Duration::from_secs(10))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A cosignature that verifies, by the witness, with a current timestamp.
fn check(c: &Cosignature, w: &Witness, cp: &Checkpoint) {
    c.verify(&w.key, cp).unwrap();
    assert_eq!(c.key_hash, w.key.key_hash());
    assert!(
        c.timestamp.abs_diff(now()) < 300,
        "timestamp {}",
        c.timestamp
    );
}

/// Takes `witness` from nothing to size 9 in three rounds: 0 (empty), 5, 9.
async fn rounds_to_nine(c: &WitnessClient, w: &Witness, log: &Log) {
    // An empty tree: root SHA-256(""), old 0, no proof.
    let (cp, note) = log.checkpoint();
    assert_eq!(cp.size, 0);
    assert_eq!(cp.root_hash, empty_root());
    let cs = c
        .add_checkpoint(&w.url, &w.key, 0, &[], &note, &cp)
        .await
        .unwrap();
    check(&cs, w, &cp);

    // From 0 the proof is empty.
    log.grow_to(5);
    let (cp, note) = log.checkpoint();
    let cs = c
        .add_checkpoint(&w.url, &w.key, 0, &[], &note, &cp)
        .await
        .unwrap();
    check(&cs, w, &cp);

    log.grow_to(9);
    let (cp, note) = log.checkpoint();
    let proof = log.proof(5);
    assert!(!proof.is_empty());
    let cs = c
        .add_checkpoint(&w.url, &w.key, 5, &proof, &note, &cp)
        .await
        .unwrap();
    check(&cs, w, &cp);
}

#[tokio::test]
async fn grows_from_empty_and_recovers_from_a_conflict() {
    let log = Log::new();
    let w = Witness::start(&log.public);
    let c = client();
    rounds_to_nine(&c, &w, &log).await;

    // A log that forgot the witness's size (a restart, a new leader) sends old 0.
    log.grow_to(12);
    let (cp, note) = log.checkpoint();
    let err = c
        .add_checkpoint(&w.url, &w.key, 0, &[], &note, &cp)
        .await
        .unwrap_err();
    assert_eq!(err, WitnessError::Conflict { witness_size: 9 });

    // cosign() learns the size from the 409 and retries once with a proof from it.
    let asked = Mutex::new(Vec::new());
    let proof_from = |old: u64| -> Result<Vec<Hash>, String> {
        asked.lock().unwrap().push(old);
        log.tree
            .consistency_proof(old, cp.size)
            .map_err(|e| e.to_string())
    };
    let (cs, size) = cosign(&c, &w.policy_entry(), 0, &cp, &note, &proof_from)
        .await
        .unwrap();
    check(&cs, &w, &cp);
    assert_eq!(size, 12);
    assert_eq!(*asked.lock().unwrap(), vec![9]);

    // The same head again (log-go re-requests every interval): old = size, no proof.
    let (again, size) = cosign(&c, &w.policy_entry(), 12, &cp, &note, &proof_from)
        .await
        .unwrap();
    check(&again, &w, &cp);
    assert_eq!(size, 12);
    assert_eq!(*asked.lock().unwrap(), vec![9], "no proof needed");

    // An older checkpoint: the witness is ahead, and there is nothing to retry with.
    let old_cp = Checkpoint {
        size: 9,
        root_hash: log.tree.root(9).unwrap(),
        ..cp
    };
    let sig = Signature(log.key.sign(old_cp.body().as_bytes()).to_bytes());
    let old_note = old_cp.signed_note(&log.public, &sig);
    let err = cosign(&c, &w.policy_entry(), 0, &old_cp, &old_note, &proof_from)
        .await
        .unwrap_err();
    assert_eq!(err, WitnessError::Conflict { witness_size: 12 });
    assert_eq!(*asked.lock().unwrap(), vec![9]);
}

#[tokio::test]
async fn refused_checkpoints_leave_the_witness_state_alone() {
    let log = Log::new();
    let w = Witness::start(&log.public);
    let c = client();
    rounds_to_nine(&c, &w, &log).await;

    log.grow_to(12);
    let proof = log.proof(9);

    // Signed by a key the witness does not trust.
    let stranger = SigningKey::generate(&mut rand_core::OsRng);
    let (cp, forged) = log.checkpoint_signed_by(&stranger);
    let err = c
        .add_checkpoint(&w.url, &w.key, 9, &proof, &forged, &cp)
        .await
        .unwrap_err();
    assert!(
        matches!(err, WitnessError::Status { status: 403, .. }),
        "{err:?}"
    );

    // The right key ID but a signature over something else.
    let (_, good) = log.checkpoint();
    let (other_cp, other_note) = {
        let mut cp9 = cp;
        cp9.size = 9;
        cp9.root_hash = log.tree.root(9).unwrap();
        let sig = Signature(log.key.sign(cp9.body().as_bytes()).to_bytes());
        (cp9, cp9.signed_note(&log.public, &sig))
    };
    let spliced = format!("{}{}", cp.body(), &other_note[other_cp.body().len()..]);
    assert_ne!(spliced, good);
    let err = c
        .add_checkpoint(&w.url, &w.key, 9, &proof, &spliced, &cp)
        .await
        .unwrap_err();
    assert!(
        matches!(err, WitnessError::Status { status: 403, .. }),
        "{err:?}"
    );

    // Properly signed, but the proof does not connect 9 to 12.
    let mut bad_proof = proof.clone();
    bad_proof[0].0[0] ^= 1;
    let err = c
        .add_checkpoint(&w.url, &w.key, 9, &bad_proof, &good, &cp)
        .await
        .unwrap_err();
    assert!(
        matches!(err, WitnessError::Status { status: 422, .. }),
        "{err:?}"
    );

    // The witness is still at 9: a proper round from 9 needs no retry.
    let asked = Mutex::new(Vec::new());
    let proof_from = |old: u64| -> Result<Vec<Hash>, String> {
        asked.lock().unwrap().push(old);
        log.tree
            .consistency_proof(old, cp.size)
            .map_err(|e| e.to_string())
    };
    let (cs, size) = cosign(&c, &w.policy_entry(), 9, &cp, &good, &proof_from)
        .await
        .unwrap();
    check(&cs, &w, &cp);
    assert_eq!(size, 12);
    assert_eq!(*asked.lock().unwrap(), vec![9]);
}
