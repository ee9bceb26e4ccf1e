//! `quorumlog kt`: a Key Transparency directory client. `get` verifies everything it prints
//! and that the log's tree head is consistent with the last one it saw; `monitor` replays
//! the whole log of mutations and checks every signed map head; `update` signs and queues
//! a change. Output is JSON on stdout.

use crate::kt::verify::Trust;
use crate::kt::wire::{
    Heads, IndexAnswer, Lookup, Parameters, Records, SmhWithLeaf, UpdateAnswer, UpdateRequest,
};
use crate::sigsum::crypto::PublicKey;
use crate::sigsum::policy::Policy;
use crate::sigsum::proofs::{ConsistencyProof, InclusionProof};
use crate::sigsum::tree_head::CosignedTreeHead;
use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use ed25519_dalek::{Signer, SigningKey};
use quorumlog_kt::entry::{commit, Entry, Mutation, NONCE_LEN};
use quorumlog_kt::epoch::{replay, MemoryMap};
use quorumlog_kt::head::SignedMapHead;
use quorumlog_sigsum::merkle::{verify_consistency, verify_inclusion, Hash};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(Debug, Subcommand)]
pub enum KtCommand {
    /// Write a new user key (hex Ed25519 seed, mode 0600) and print its public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Set a user's value: looks the user up, signs a change of the current entry with
    /// --key (and with every --new-key, which then replace the authorised keys).
    Update {
        #[arg(long)]
        id: String,
        #[arg(long)]
        value: String,
        /// A key of the user's current entry (for a new user: the key to authorise).
        #[arg(long)]
        key: PathBuf,
        /// Keys to authorise from now on instead of the current ones (repeatable).
        #[arg(long = "new-key")]
        new_keys: Vec<PathBuf>,
    },
    /// Look a user up at the latest published epoch (or --epoch) and verify the answer.
    Get {
        #[arg(long)]
        id: String,
        #[arg(long)]
        epoch: Option<u64>,
    },
    /// Replay the log of mutations from the start, recompute every epoch's map and check
    /// every signed map head and its place in the Sigsum log.
    Monitor,
}

/// How long a lookup keeps asking a node that answers 503 (catching up, no leader).
const RETRY_503_FOR: std::time::Duration = std::time::Duration::from_secs(15);

/// What a client remembers between runs: the newest tree head it verified.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedState {
    tree_size: u64,
    tree_root: String,
}

pub struct Client {
    http: reqwest::Client,
    url: String,
    log_url: String,
    trust: Trust,
    state_file: Option<PathBuf>,
}

fn read_hex_key(arg: &str) -> anyhow::Result<[u8; 32]> {
    let text = if Path::new(arg).exists() {
        std::fs::read_to_string(arg).with_context(|| format!("read {arg}"))?
    } else {
        arg.to_string()
    };
    let mut k = [0; 32];
    hex::decode_to_slice(text.trim(), &mut k)
        .map_err(|_| anyhow!("{arg}: expected 64 hex characters (or a file holding them)"))?;
    Ok(k)
}

fn read_user_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?,
    );
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), seed.as_mut())
        .map_err(|_| anyhow!("{}: expected a 64-hex-character seed", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// `GET url`: the status and the body.
async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<(u16, String)> {
    let r = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = r.status().as_u16();
    let body = r.text().await.with_context(|| format!("GET {url}"))?;
    Ok((status, body))
}

/// `GET url` as JSON; a status other than 200 with its (trimmed) body.
async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: String,
) -> anyhow::Result<Result<T, (u16, String)>> {
    let (status, body) = get(http, &url).await?;
    if status != 200 {
        return Ok(Err((status, body.trim().to_string())));
    }
    Ok(Ok(serde_json::from_str(&body).with_context(|| {
        format!("GET {url}: not the expected JSON")
    })?))
}

async fn get_ok<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: String,
) -> anyhow::Result<T> {
    get_json(http, url.clone())
        .await?
        .map_err(|(s, b)| anyhow!("GET {url}: {s}: {b}"))
}

async fn get_text(http: &reqwest::Client, url: String) -> anyhow::Result<String> {
    let (status, body) = get(http, &url).await?;
    if status != 200 {
        bail!("GET {url}: {status}: {}", body.trim());
    }
    Ok(body)
}

impl Client {
    pub async fn connect(
        url: &str,
        log_url: Option<&str>,
        log_key: &str,
        policy: Option<&Path>,
        state_file: Option<PathBuf>,
    ) -> anyhow::Result<Client> {
        quorumlog_raft::network::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let url = url.trim_end_matches('/').to_string();
        let params: Parameters = get_ok(&http, format!("{url}/kt/v1/parameters")).await?;
        let policy = policy
            .map(|p| Policy::load(p).with_context(|| format!("policy {}", p.display())))
            .transpose()?;
        let trust = Trust::from_parameters(&params, PublicKey(read_hex_key(log_key)?), policy)?;
        Ok(Client {
            http,
            log_url: log_url.map_or_else(|| url.clone(), |u| u.trim_end_matches('/').to_string()),
            url,
            trust,
            state_file,
        })
    }

    /// Checks `th` against the saved tree head (consistency proof from the log) and saves
    /// the newer of the two.
    async fn check_consistency(&self, th: &CosignedTreeHead) -> anyhow::Result<()> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        let saved: SavedState = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("state file {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SavedState::default(),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        let saved_root = if saved.tree_size > 0 {
            Some(Hash(
                hex::decode(&saved.tree_root)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| anyhow!("state file {}: bad root", path.display()))?,
            ))
        } else {
            None
        };
        let (new_size, new_root) = (th.head.size, th.head.root_hash);
        if let Some(old_root) = saved_root {
            let (small, small_root, big, big_root) = if saved.tree_size <= new_size {
                (saved.tree_size, old_root, new_size, new_root)
            } else {
                (new_size, new_root, saved.tree_size, old_root)
            };
            let proof = if small == big {
                Vec::new()
            } else {
                let text = get_text(
                    &self.http,
                    format!("{}/get-consistency-proof/{small}/{big}", self.log_url),
                )
                .await?;
                ConsistencyProof::parse(text.as_bytes())
                    .map_err(|e| anyhow!("consistency proof: {e}"))?
                    .path
            };
            verify_consistency(small, big, &small_root, &big_root, &proof).map_err(|e| {
                anyhow!(
                    "the log's tree head of size {new_size} is not consistent with the one \
                     of size {} seen before: {e} (a split view?)",
                    saved.tree_size
                )
            })?;
            if saved.tree_size >= new_size {
                return Ok(());
            }
        }
        let state = SavedState {
            tree_size: new_size,
            tree_root: new_root.to_hex(),
        };
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&state)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    async fn lookup(&self, id: &str, epoch: Option<u64>) -> anyhow::Result<Option<Lookup>> {
        let mut url = reqwest::Url::parse(&format!("{}/kt/v1/lookup", self.url))?;
        url.query_pairs_mut().append_pair("id", id);
        if let Some(e) = epoch {
            url.query_pairs_mut().append_pair("epoch", &e.to_string());
        }
        // A node catching up or between leaders answers 503 for a moment; ask again.
        let deadline = std::time::Instant::now() + RETRY_503_FOR;
        loop {
            match get_json::<Lookup>(&self.http, url.to_string()).await? {
                Ok(l) => return Ok(Some(l)),
                Err((503, b)) if b.contains("no epoch") || b.contains("no tree head") => {
                    return Ok(None)
                }
                Err((503, _)) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
                Err((s, b)) => bail!("lookup of {id}: {s}: {b}"),
            }
        }
    }

    pub async fn get(&self, id: &str, epoch: Option<u64>) -> anyhow::Result<serde_json::Value> {
        let l = self
            .lookup(id, epoch)
            .await?
            .ok_or_else(|| anyhow!("the directory has published no epoch yet"))?;
        let v = self
            .trust
            .lookup(&l)
            .context("the lookup does not verify")?;
        self.check_consistency(&v.tree_head).await?;
        Ok(serde_json::json!({
            "id": id,
            "epoch": v.head.head.epoch,
            "verified": true,
            "present": v.entry.is_some(),
            "value": v.entry.as_ref().map(|(_, val)| String::from_utf8_lossy(val).into_owned()),
            "value_hex": v.entry.as_ref().map(|(_, val)| hex::encode(val)),
            "keys": v.entry.as_ref().map(|(e, _)| e.keys.iter().map(hex::encode).collect::<Vec<_>>()),
            "tree_size": v.tree_head.head.size,
        }))
    }

    pub async fn update(
        &self,
        id: &str,
        value: &[u8],
        key: &SigningKey,
        new_keys: &[SigningKey],
    ) -> anyhow::Result<(u16, String)> {
        let mut url = reqwest::Url::parse(&format!("{}/kt/v1/index", self.url))?;
        url.query_pairs_mut().append_pair("id", id);
        let ia: IndexAnswer = get_ok(&self.http, url.to_string()).await?;
        let index = self.trust.index(&ia)?;
        let current = match self.lookup(id, None).await? {
            Some(l) => {
                self.trust
                    .lookup(&l)
                    .context("the lookup does not verify")?
                    .entry
            }
            None => None,
        };
        let mut nonce = [0u8; NONCE_LEN];
        getrandom(&mut nonce)?;
        let keys: Vec<[u8; 32]> = if new_keys.is_empty() {
            match &current {
                Some((e, _)) => e.keys.clone(),
                None => vec![key.verifying_key().to_bytes()],
            }
        } else {
            new_keys
                .iter()
                .map(|k| k.verifying_key().to_bytes())
                .collect()
        };
        let entry = Entry {
            commitment: commit(id.as_bytes(), value, &nonce),
            keys,
            previous: current.as_ref().map_or([0; 32], |(e, _)| e.hash()),
        };
        let message = Mutation::signed_message(self.trust.map_id, &index, &entry);
        let signatures = std::iter::once(key)
            .chain(new_keys)
            .map(|k| (k.verifying_key().to_bytes(), k.sign(&message).to_bytes()))
            .collect();
        let mutation = Mutation {
            index,
            entry,
            signatures,
        };
        let req = UpdateRequest {
            id: id.to_string(),
            value: hex::encode(value),
            nonce: hex::encode(nonce),
            mutation: hex::encode(mutation.encode()),
        };
        let r = self
            .http
            .post(format!("{}/kt/v1/update", self.url))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&req)?)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    }

    /// Every recorded head up to the newest published one.
    async fn heads(&self) -> anyhow::Result<Vec<SmhWithLeaf>> {
        let mut out = Vec::new();
        let mut start = 1;
        loop {
            let url = format!("{}/kt/v1/heads?start={start}&end={}", self.url, start + 256);
            let h: Heads = match get_json(&self.http, url.clone()).await? {
                Ok(h) => h,
                Err((503, b)) if b.contains("no epoch") => return Ok(out),
                Err((s, b)) => bail!("GET {url}: {s}: {b}"),
            };
            let n = h.heads.len() as u64;
            out.extend(h.heads);
            if start + n > h.latest || n == 0 {
                return Ok(out);
            }
            start += n;
        }
    }

    /// Replays the log of mutations; returns a summary or the first disagreement.
    pub async fn monitor(&self) -> anyhow::Result<serde_json::Value> {
        let th_text = get_text(&self.http, format!("{}/get-tree-head", self.log_url)).await?;
        let th = self.trust.tree_head(&th_text)?;
        let mut heads = BTreeMap::new();
        let mut log_size = 0;
        for h in self.heads().await? {
            let (head, leaf) = self
                .trust
                .head(&h)
                .with_context(|| format!("the head of epoch {}", h.epoch))?;
            if h.leaf_index >= th.head.size {
                // Published after the tree head fetched above; the next run checks it.
                break;
            }
            self.check_in_log(&th, &leaf.leaf_hash(), h.leaf_index)
                .await
                .with_context(|| format!("the head of epoch {} in the Sigsum log", h.epoch))?;
            log_size = head.head.log_size;
            heads.insert(head.head.epoch, head);
        }
        let mut records = Vec::new();
        while (records.len() as u64) < log_size {
            let start = records.len() as u64;
            let url = format!(
                "{}/kt/v1/records?start={start}&end={}",
                self.url,
                log_size.min(start + 256)
            );
            let r: Records = get_ok(&self.http, url).await?;
            if r.records.is_empty() {
                bail!("the directory stopped serving records at {start} of {log_size}");
            }
            for rec in r.records {
                records.push(hex::decode(rec).context("a record is not hex")?);
            }
        }
        let mut map = MemoryMap::new(self.trust.map_id);
        let epochs = replay(&mut map, &records, &heads).map_err(|d| {
            anyhow!("the directory's log of mutations disagrees with its heads: {d}")
        })?;
        if epochs != heads.len() as u64 {
            bail!(
                "replayed {epochs} epochs but the directory published {} heads",
                heads.len()
            );
        }
        self.check_consistency(&th).await?;
        let latest: Option<&SignedMapHead> = heads.values().last();
        Ok(serde_json::json!({
            "verified": true,
            "epochs": epochs,
            "records": records.len(),
            "map_root": latest.map(|h| hex::encode(h.head.map_root)),
            "tree_size": th.head.size,
        }))
    }

    async fn check_in_log(
        &self,
        th: &CosignedTreeHead,
        leaf_hash: &Hash,
        index: u64,
    ) -> anyhow::Result<()> {
        let size = th.head.size;
        let path = if size == 1 {
            Vec::new()
        } else {
            let text = get_text(
                &self.http,
                format!(
                    "{}/get-inclusion-proof/{size}/{}",
                    self.log_url,
                    leaf_hash.to_hex()
                ),
            )
            .await?;
            let p = InclusionProof::parse(text.as_bytes())
                .map_err(|e| anyhow!("inclusion proof: {e}"))?;
            if p.leaf_index != index {
                bail!(
                    "the log places the leaf at {}, the directory at {index}",
                    p.leaf_index
                );
            }
            p.path
        };
        verify_inclusion(leaf_hash, index, size, &path, &th.head.root_hash)
            .map_err(|e| anyhow!("inclusion proof does not verify: {e}"))
    }
}

fn getrandom(buf: &mut [u8]) -> anyhow::Result<()> {
    use rand_core::RngCore;
    rand_core::OsRng
        .try_fill_bytes(buf)
        .map_err(|e| anyhow!("no randomness: {e}"))
}

pub async fn run(client: Client, command: KtCommand) -> anyhow::Result<()> {
    let out = match command {
        KtCommand::Keygen { out } => return keygen(&out),
        KtCommand::Update {
            id,
            value,
            key,
            new_keys,
        } => {
            let key = read_user_key(&key)?;
            let new_keys = new_keys
                .iter()
                .map(|p| read_user_key(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (status, body) = client
                .update(&id, value.as_bytes(), &key, &new_keys)
                .await?;
            let answer: UpdateAnswer = serde_json::from_str(&body)
                .map_err(|_| anyhow!("update refused: {status}: {}", body.trim()))?;
            if status != 200 {
                bail!("update logged but rejected: {}", answer.verdict);
            }
            serde_json::to_value(answer)?
        }
        KtCommand::Get { id, epoch } => client.get(&id, epoch).await?,
        KtCommand::Monitor => client.monitor().await?,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `kt keygen`: a new user key.
pub fn keygen(out: &Path) -> anyhow::Result<()> {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let seed = Zeroizing::new(format!("{}\n", hex::encode(key.to_bytes())));
    quorumlog_raft::pki::write_secret(out, seed.as_bytes())?;
    println!("{}", hex::encode(key.verifying_key().to_bytes()));
    Ok(())
}
