//! The directory's replicated state (docs/kt.md): the open epoch's changes, users' entries
//! by epoch, the versioned map, the log of mutations and the signed map heads, all in the
//! node's state database and written in the same batches as Raft's progress.
//!
//! Applying is deterministic: a mutation gets its verdict against the entry current at its
//! place in the log (the open epoch's change of that user, else the last epoch's entry);
//! a marker builds the next epoch of the map from the open epoch's changes; a head is
//! recorded only if it states exactly what this node computed for its epoch.

use super::trie_store::{self, TrieStore};
use crate::merkle::{MerkleStore, TreeColumns};
use crate::sigsum::crypto::PublicKey;
use crate::sigsum::leaf::TreeLeaf;
use quorumlog_kt::entry::{commit, Entry, Mutation, Rejection, NONCE_LEN};
use quorumlog_kt::hasher::{ConiksSha256, Hash as MapHash, Index};
use quorumlog_kt::head::SignedMapHead;
use quorumlog_kt::map::Proof;
use quorumlog_kt::record::Record;
use quorumlog_kt::trie::{self, Reader};
use quorumlog_kt::vrf::PROOF_LEN;
use quorumlog_sigsum::merkle::leaf_hash;
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB};
use sha2::{Digest, Sha256};
use std::io;
use std::sync::{Arc, RwLock};

/// Records of the log of mutations by index (8 bytes, big-endian).
const CF_RECORDS: &str = "kt_records";
/// Entries by `index || !epoch`: the entry a user got at an epoch, with its opening.
const CF_ENTRIES: &str = "kt_entries";
/// The open epoch's applied changes by index.
const CF_PENDING: &str = "kt_pending";
/// User id to index and VRF proof, for users with an entry.
const CF_IDS: &str = "kt_ids";
/// Per epoch: map root, log size at its marker, timestamp.
const CF_EPOCHS: &str = "kt_epochs";
/// Per epoch: the signed map head and the index of its Sigsum leaf.
const CF_HEADS: &str = "kt_heads";
const CF_META: &str = "kt_meta";
const KEY_META: &[u8] = b"meta";

const MUTATION_LOG: TreeColumns = TreeColumns {
    tiles: "kt_log_tiles",
    edge: "kt_log_edge",
    index: None,
    meta: "kt_log_meta",
};

/// The directory's fixed parameters.
#[derive(Debug, Clone)]
pub struct Params {
    pub map_id: u64,
    /// The directory's Ed25519 key (map heads and their Sigsum leaves).
    pub signing_key: PublicKey,
    pub vrf_key: [u8; 32],
}

/// What a user's id, value and nonce are, beside the entry that commits to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub id: Vec<u8>,
    pub value: Vec<u8>,
    pub nonce: [u8; NONCE_LEN],
    pub vrf_proof: [u8; PROOF_LEN],
}

/// A user's entry and its opening, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub entry: Entry,
    pub opening: Opening,
}

fn put_len(b: &mut Vec<u8>, bytes: &[u8]) {
    b.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    b.extend_from_slice(bytes);
}

/// Reads length-prefixed fields; `None` once anything is short.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    fn sized(&mut self) -> Option<&'a [u8]> {
        let n = u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(n)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u64(&mut self) -> Option<u64> {
        self.array::<8>().map(u64::from_be_bytes)
    }
}

impl Opening {
    fn encode_into(&self, b: &mut Vec<u8>) {
        put_len(b, &self.id);
        put_len(b, &self.value);
        b.extend_from_slice(&self.nonce);
        b.extend_from_slice(&self.vrf_proof);
    }

    fn decode_from(f: &mut Fields) -> Option<Opening> {
        Some(Opening {
            id: f.sized()?.to_vec(),
            value: f.sized()?.to_vec(),
            nonce: f.array()?,
            vrf_proof: f.array()?,
        })
    }
}

impl Stored {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        put_len(&mut b, &self.entry.encode());
        self.opening.encode_into(&mut b);
        b
    }

    fn decode(bytes: &[u8]) -> io::Result<Stored> {
        let mut f = Fields(bytes);
        let parse = |f: &mut Fields| -> Option<Stored> {
            let entry = Entry::decode(f.sized()?).ok()?;
            let opening = Opening::decode_from(f)?;
            f.0.is_empty().then_some(Stored { entry, opening })
        };
        parse(&mut f).ok_or_else(|| io::Error::other("damaged directory entry in the store"))
    }
}

/// A queued update as it travels in a Raft command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub mutation: Mutation,
    pub opening: Opening,
}

impl Update {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        put_len(&mut b, &self.mutation.encode());
        self.opening.encode_into(&mut b);
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Update, String> {
        let mut f = Fields(bytes);
        let m = f.sized().ok_or("truncated update")?;
        let mutation = Mutation::decode(m).map_err(|e| format!("bad mutation: {e}"))?;
        let opening = Opening::decode_from(&mut f).ok_or("truncated update")?;
        if !f.0.is_empty() {
            return Err("trailing bytes after an update".into());
        }
        Ok(Update { mutation, opening })
    }
}

/// One epoch as applied: what its head must state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochInfo {
    pub map_root: [u8; 32],
    pub log_size: u64,
    pub timestamp_ms: u64,
}

impl EpochInfo {
    fn encode(&self) -> Vec<u8> {
        let mut b = self.map_root.to_vec();
        b.extend_from_slice(&self.log_size.to_be_bytes());
        b.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<EpochInfo> {
        let mut f = Fields(b);
        Some(EpochInfo {
            map_root: f.array()?,
            log_size: f.u64()?,
            timestamp_ms: f.u64()?,
        })
    }
}

/// Progress of the directory, kept in memory and in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meta {
    /// The last epoch closed by a marker (0: none yet).
    pub epoch: u64,
    /// Mutations since that marker, applied or not.
    pub pending: u64,
    pub last_timestamp_ms: u64,
    /// The last epoch with a recorded head.
    pub signed_epoch: u64,
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
        [
            self.epoch,
            self.pending,
            self.last_timestamp_ms,
            self.signed_epoch,
        ]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
    }

    fn decode(b: &[u8]) -> Option<Meta> {
        let mut f = Fields(b);
        Some(Meta {
            epoch: f.u64()?,
            pending: f.u64()?,
            last_timestamp_ms: f.u64()?,
            signed_epoch: f.u64()?,
        })
    }
}

/// What applying a directory command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A mutation was logged at `log_index` with this verdict (`None`: applied).
    Mutation {
        log_index: u64,
        verdict: Option<Rejection>,
    },
    /// A marker closed `epoch`.
    Epoch(u64),
}

struct Attached {
    db: Arc<DB>,
    log: Arc<MerkleStore>,
}

/// The directory's state on one node.
pub struct Directory {
    params: Params,
    hasher: ConiksSha256,
    attached: RwLock<Option<Attached>>,
    meta: RwLock<Meta>,
}

fn storage(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn entry_key(index: &Index, epoch: u64) -> [u8; 40] {
    let mut k = [0; 40];
    k[..32].copy_from_slice(index);
    k[32..].copy_from_slice(&(!epoch).to_be_bytes());
    k
}

impl Directory {
    pub fn new(params: Params) -> Directory {
        Directory {
            hasher: ConiksSha256::new(params.map_id),
            params,
            attached: RwLock::default(),
            meta: RwLock::default(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn meta(&self) -> Meta {
        *self.meta.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn column_families() -> Vec<ColumnFamilyDescriptor> {
        let mut cfs = MerkleStore::column_families_for(&MUTATION_LOG);
        cfs.push(trie_store::column_family());
        for name in [
            CF_RECORDS, CF_ENTRIES, CF_PENDING, CF_IDS, CF_EPOCHS, CF_HEADS, CF_META,
        ] {
            cfs.push(ColumnFamilyDescriptor::new(name, Options::default()));
        }
        cfs
    }

    pub fn attach(&self, db: Arc<DB>) -> io::Result<()> {
        let log = MerkleStore::new_in(db.clone(), MUTATION_LOG).map_err(storage)?;
        let meta = match db.get_cf(cf(&db, CF_META)?, KEY_META).map_err(storage)? {
            Some(b) => Meta::decode(&b).ok_or_else(|| storage("damaged directory progress"))?,
            None => Meta::default(),
        };
        *self.attached.write().unwrap_or_else(|e| e.into_inner()) = Some(Attached {
            db,
            log: Arc::new(log),
        });
        *self.meta.write().unwrap_or_else(|e| e.into_inner()) = meta;
        Ok(())
    }

    fn db(&self) -> io::Result<(Arc<DB>, Arc<MerkleStore>)> {
        let a = self.attached.read().unwrap_or_else(|e| e.into_inner());
        let a = a
            .as_ref()
            .ok_or_else(|| storage("state database not attached"))?;
        Ok((a.db.clone(), a.log.clone()))
    }

    /// The log of mutations as an RFC 6962 tree.
    pub fn mutation_log(&self) -> io::Result<Arc<MerkleStore>> {
        Ok(self.db()?.1)
    }

    /// The entry a mutation of `index` is checked against now: the open epoch's change,
    /// else the latest epoch's entry.
    pub fn current(&self, index: &Index) -> io::Result<Option<Stored>> {
        let (db, _) = self.db()?;
        if let Some(b) = db.get_cf(cf(&db, CF_PENDING)?, index).map_err(storage)? {
            return Stored::decode(&b).map(Some);
        }
        self.entry_at(index, u64::MAX)
    }

    /// The user's entry in the map at `epoch` (the newest one set at or before it).
    pub fn entry_at(&self, index: &Index, epoch: u64) -> io::Result<Option<Stored>> {
        let (db, _) = self.db()?;
        let from = entry_key(index, epoch);
        let mut it = db.iterator_cf(
            cf(&db, CF_ENTRIES)?,
            IteratorMode::From(&from, Direction::Forward),
        );
        match it.next() {
            Some(Ok((k, v))) if k[..32] == index[..] => Stored::decode(&v).map(Some),
            Some(Err(e)) => Err(storage(e)),
            _ => Ok(None),
        }
    }

    /// The epochs in `[from, to]` at which the user's entry changed, newest first.
    pub fn history(&self, index: &Index, from: u64, to: u64) -> io::Result<Vec<(u64, Stored)>> {
        let (db, _) = self.db()?;
        let start = entry_key(index, to);
        let mut out = Vec::new();
        for item in db.iterator_cf(
            cf(&db, CF_ENTRIES)?,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (k, v) = item.map_err(storage)?;
            if k.len() != 40 || k[..32] != index[..] {
                break;
            }
            let epoch = !u64::from_be_bytes(k[32..].try_into().expect("8 bytes"));
            if epoch < from {
                break;
            }
            out.push((epoch, Stored::decode(&v)?));
        }
        Ok(out)
    }

    /// The index and VRF proof of a user who has (or had) an entry.
    pub fn known_id(&self, id: &[u8]) -> io::Result<Option<(Index, [u8; PROOF_LEN])>> {
        let (db, _) = self.db()?;
        Ok(db
            .get_cf(cf(&db, CF_IDS)?, id)
            .map_err(storage)?
            .and_then(|b| {
                let mut f = Fields(&b);
                Some((f.array()?, f.array()?))
            }))
    }

    /// The map proof for `index` at `epoch`, and the user's leaf hash if present.
    pub fn prove(&self, index: &Index, epoch: u64) -> io::Result<(Proof, Option<MapHash>)> {
        let (db, _) = self.db()?;
        let store = TrieStore::new(&db);
        Reader::new(&self.hasher, &store, epoch)
            .prove(index)
            .map_err(storage)
    }

    pub fn epoch(&self, epoch: u64) -> io::Result<Option<EpochInfo>> {
        let (db, _) = self.db()?;
        db.get_cf(cf(&db, CF_EPOCHS)?, epoch.to_be_bytes())
            .map_err(storage)?
            .map(|b| EpochInfo::decode(&b).ok_or_else(|| storage("damaged epoch record")))
            .transpose()
    }

    /// The signed head of `epoch` and the index of its Sigsum leaf.
    pub fn head(&self, epoch: u64) -> io::Result<Option<(SignedMapHead, u64)>> {
        let (db, _) = self.db()?;
        db.get_cf(cf(&db, CF_HEADS)?, epoch.to_be_bytes())
            .map_err(storage)?
            .map(|b| {
                let (head, index) = b.split_at(b.len().saturating_sub(8));
                let head = SignedMapHead::decode(head).map_err(storage)?;
                Ok((head, u64::from_be_bytes(index.try_into().map_err(storage)?)))
            })
            .transpose()
    }

    /// The newest epoch whose head's Sigsum leaf is below `tree_size` (so a tree head of
    /// that size covers it).
    pub fn newest_head_within(&self, tree_size: u64) -> io::Result<Option<u64>> {
        let mut e = self.meta().signed_epoch;
        while e > 0 {
            if let Some((_, leaf)) = self.head(e)? {
                if leaf < tree_size {
                    return Ok(Some(e));
                }
            }
            e -= 1;
        }
        Ok(None)
    }

    /// Records `[start, end)` of the log of mutations.
    pub fn records(&self, start: u64, end: u64) -> io::Result<Vec<Vec<u8>>> {
        let (db, _) = self.db()?;
        let cf = cf(&db, CF_RECORDS)?;
        (start..end)
            .map(|i| {
                db.get_cf(cf, i.to_be_bytes())
                    .map_err(storage)?
                    .ok_or_else(|| storage(format!("record {i} missing from the store")))
            })
            .collect()
    }

    /// Applies a queued update.
    pub fn apply_update(
        &self,
        update: &Update,
        progress: &mut dyn FnMut(&mut WriteBatch),
    ) -> io::Result<Result<Applied, String>> {
        let (db, log) = self.db()?;
        let m = &update.mutation;
        let o = &update.opening;
        if commit(&o.id, &o.value, &o.nonce) != m.entry.commitment {
            return Ok(Err("the update's value does not open its commitment".into()));
        }
        let current = self.current(&m.index)?;
        let verdict = m
            .check(self.params.map_id, current.as_ref().map(|s| &s.entry))
            .err();
        let record = Record::Mutation {
            mutation: m.clone(),
            verdict,
        }
        .encode();
        let mut meta = self.meta();
        meta.pending += 1;
        let (records, pending, ids, meta_cf) = (
            cf(&db, CF_RECORDS)?,
            cf(&db, CF_PENDING)?,
            cf(&db, CF_IDS)?,
            cf(&db, CF_META)?,
        );
        let outcome = log
            .append_with(&[leaf_hash(&record)], |batch, out| {
                batch.put_cf(records, out.indexes[0].to_be_bytes(), &record);
                if verdict.is_none() {
                    let stored = Stored {
                        entry: m.entry.clone(),
                        opening: o.clone(),
                    };
                    batch.put_cf(pending, m.index, stored.encode());
                    let mut id = m.index.to_vec();
                    id.extend_from_slice(&o.vrf_proof);
                    batch.put_cf(ids, &o.id, id);
                }
                batch.put_cf(meta_cf, KEY_META, meta.encode());
                progress(batch);
            })
            .map_err(storage)?;
        *self.meta.write().unwrap_or_else(|e| e.into_inner()) = meta;
        Ok(Ok(Applied::Mutation {
            log_index: outcome.indexes[0],
            verdict,
        }))
    }

    /// Applies an epoch marker: the open epoch's changes become epoch `epoch` of the map.
    pub fn apply_marker(
        &self,
        epoch: u64,
        timestamp_ms: u64,
        progress: &mut dyn FnMut(&mut WriteBatch),
    ) -> io::Result<Result<Applied, String>> {
        let (db, log) = self.db()?;
        let mut meta = self.meta();
        if epoch != meta.epoch + 1 {
            // A marker from an earlier leader that lost the race: the epoch is closed.
            return Ok(Err(format!(
                "marker for epoch {epoch}, but the next epoch is {}",
                meta.epoch + 1
            )));
        }
        // Time never runs backwards across epochs, whichever leader stamped them.
        let timestamp_ms = timestamp_ms.max(meta.last_timestamp_ms);
        let pending_cf = cf(&db, CF_PENDING)?;
        let mut changed = Vec::new();
        for item in db.iterator_cf(pending_cf, IteratorMode::Start) {
            let (k, v) = item.map_err(storage)?;
            let index: Index = k[..].try_into().map_err(storage)?;
            changed.push((index, v));
        }
        let mut changes = Vec::with_capacity(changed.len());
        for (index, v) in &changed {
            let stored = Stored::decode(v)?;
            changes.push((*index, self.hasher.leaf(index, &stored.entry.encode())));
        }
        let store = TrieStore::new(&db);
        let (root, writes) =
            trie::update(&self.hasher, &store, epoch, &changes).map_err(storage)?;
        let record = Record::Marker {
            epoch,
            timestamp_ms,
        }
        .encode();
        meta.epoch = epoch;
        meta.pending = 0;
        meta.last_timestamp_ms = timestamp_ms;
        let (records, entries, epochs, meta_cf) = (
            cf(&db, CF_RECORDS)?,
            cf(&db, CF_ENTRIES)?,
            cf(&db, CF_EPOCHS)?,
            cf(&db, CF_META)?,
        );
        let mut failed = None;
        log.append_with(&[leaf_hash(&record)], |batch, out| {
            batch.put_cf(records, out.indexes[0].to_be_bytes(), &record);
            if let Err(e) = store.put(batch, epoch, &writes) {
                failed = Some(e);
            }
            for (index, v) in &changed {
                batch.put_cf(entries, entry_key(index, epoch), v);
                batch.delete_cf(pending_cf, index);
            }
            let info = EpochInfo {
                map_root: root.0,
                log_size: out.size,
                timestamp_ms,
            };
            batch.put_cf(epochs, epoch.to_be_bytes(), info.encode());
            batch.put_cf(meta_cf, KEY_META, meta.encode());
            progress(batch);
        })
        .map_err(storage)?;
        if let Some(e) = failed {
            return Err(storage(e));
        }
        *self.meta.write().unwrap_or_else(|e| e.into_inner()) = meta;
        Ok(Ok(Applied::Epoch(epoch)))
    }

    /// Checks a signed head and the Sigsum leaf carrying it before they are recorded: the
    /// next unsigned epoch, exactly what this node computed for it, signed by the
    /// directory key.
    pub fn check_head(&self, head: &SignedMapHead, leaf: &TreeLeaf) -> Result<(), String> {
        let meta = self.meta();
        let h = &head.head;
        if h.epoch != meta.signed_epoch + 1 || h.epoch > meta.epoch {
            return Err(format!(
                "a head for epoch {}, but the next epoch to sign is {} (closed: {})",
                h.epoch,
                meta.signed_epoch + 1,
                meta.epoch
            ));
        }
        let info = self
            .epoch(h.epoch)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("epoch {} is not in the store", h.epoch))?;
        let log_root = self
            .mutation_log()
            .and_then(|l| l.root(info.log_size).map_err(storage))
            .map_err(|e| e.to_string())?;
        let expected = quorumlog_kt::head::MapHead {
            map_id: self.params.map_id,
            epoch: h.epoch,
            map_root: info.map_root,
            log_size: info.log_size,
            log_root: log_root.0,
            timestamp_ms: info.timestamp_ms,
        };
        if *h != expected {
            return Err(format!(
                "the head of epoch {} does not state the epoch this node applied",
                h.epoch
            ));
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.params.signing_key.0)
            .map_err(|_| "the directory key is not a valid Ed25519 key".to_string())?;
        head.verify(&key).map_err(|e| e.to_string())?;
        let checksum = Sha256::digest(head.checksum());
        if leaf.checksum.0[..] != checksum[..]
            || leaf.key_hash != self.params.signing_key.key_hash()
        {
            return Err("the Sigsum leaf does not carry this head".into());
        }
        leaf.verify(&self.params.signing_key)
            .map_err(|e| format!("the head's Sigsum leaf: {e}"))
    }

    /// Adds a checked head, whose Sigsum leaf got `leaf_index`, to `batch`; call
    /// [`Directory::headed`] once the batch is written.
    pub fn put_head(
        &self,
        batch: &mut WriteBatch,
        head: &SignedMapHead,
        leaf_index: u64,
    ) -> io::Result<Meta> {
        let (db, _) = self.db()?;
        let mut v = head.encode();
        v.extend_from_slice(&leaf_index.to_be_bytes());
        batch.put_cf(cf(&db, CF_HEADS)?, head.head.epoch.to_be_bytes(), v);
        let mut meta = self.meta();
        meta.signed_epoch = head.head.epoch;
        batch.put_cf(cf(&db, CF_META)?, KEY_META, meta.encode());
        Ok(meta)
    }

    /// Takes the progress [`Directory::put_head`] wrote.
    pub fn headed(&self, meta: Meta) {
        *self.meta.write().unwrap_or_else(|e| e.into_inner()) = meta;
    }
}

fn cf<'a>(db: &'a DB, name: &'static str) -> io::Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| storage(format!("column family {name} missing")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::signer::LogSigner;
    use crate::replicated::{decode_result, encode, ApplyOutcome, LeafState, LogCommand};
    use ed25519_dalek::Signer;
    use quorumlog_kt::epoch::{replay, MemoryMap};
    use quorumlog_kt::head::MapHead;
    use std::collections::BTreeMap;

    const MAP_ID: u64 = 7;

    fn open(dir: &std::path::Path, signer: &LogSigner) -> LeafState {
        let keys = signer.directory().public();
        let state =
            LeafState::new(signer.public_key()).with_directory(Arc::new(Directory::new(Params {
                map_id: MAP_ID,
                signing_key: PublicKey(keys.signing),
                vrf_key: keys.vrf,
            })));
        let mut opts = state.db_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = DB::open_cf_descriptors(&opts, dir, state.column_families()).unwrap();
        state.attach(Arc::new(db)).unwrap();
        state
    }

    fn run(state: &LeafState, cmd: LogCommand) -> ApplyOutcome {
        decode_result(&state.apply(&[&encode(&cmd)], &mut |_, _| {}).unwrap()[0]).unwrap()
    }

    /// An update of user `n` from `previous` to value `v`, signed by `key`.
    fn update(
        signer: &LogSigner,
        user: u8,
        value: &[u8],
        previous: Option<&Entry>,
        key: &ed25519_dalek::SigningKey,
    ) -> Update {
        let id = vec![b'u', user];
        let (index, vrf_proof) = signer.directory().index(&id);
        let nonce = [user; NONCE_LEN];
        let entry = Entry {
            commitment: commit(&id, value, &nonce),
            keys: vec![key.verifying_key().to_bytes()],
            previous: previous.map_or([0; 32], Entry::hash),
        };
        let sig = key.sign(&Mutation::signed_message(MAP_ID, &index, &entry));
        Update {
            mutation: Mutation {
                index,
                entry,
                signatures: vec![(key.verifying_key().to_bytes(), sig.to_bytes())],
            },
            opening: Opening {
                id,
                value: value.to_vec(),
                nonce,
                vrf_proof,
            },
        }
    }

    fn sign_head(state: &LeafState, signer: &LogSigner, epoch: u64) -> LogCommand {
        let dir = state.directory().unwrap();
        let info = dir.epoch(epoch).unwrap().unwrap();
        let head = signer.directory().sign_map_head(MapHead {
            map_id: MAP_ID,
            epoch,
            map_root: info.map_root,
            log_size: info.log_size,
            log_root: dir.mutation_log().unwrap().root(info.log_size).unwrap().0,
            timestamp_ms: info.timestamp_ms,
        });
        let leaf = signer.directory().head_leaf(&head);
        LogCommand::KtHead { head, leaf }
    }

    #[test]
    fn epochs_apply_like_the_reference_map_and_replay_from_the_log() {
        let tmp = tempfile::tempdir().unwrap();
        let signer = LogSigner::from_seed(&[3; 32]);
        let state = open(tmp.path(), &signer);
        let dir = state.directory().unwrap().clone();
        let k1 = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let k2 = ed25519_dalek::SigningKey::from_bytes(&[2; 32]);
        let mut reference = MemoryMap::new(MAP_ID);

        // Epoch 1: two users; a replay of user 1's first update is stale.
        let u1 = update(&signer, 1, b"a", None, &k1);
        let u2 = update(&signer, 2, b"b", None, &k2);
        let mut verdicts = Vec::new();
        for u in [&u1, &u2, &u1] {
            match run(&state, LogCommand::KtUpdate(u.clone())) {
                ApplyOutcome::KtUpdate { verdict, .. } => verdicts.push(verdict),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(verdicts, vec![0, 0, Rejection::Stale.code()]);
        // Not in the map until the marker.
        assert!(dir.entry_at(&u1.mutation.index, 1).unwrap().is_none());
        assert_eq!(
            run(
                &state,
                LogCommand::KtMarker {
                    epoch: 1,
                    timestamp_ms: 10
                }
            ),
            ApplyOutcome::KtEpoch(1)
        );
        reference.apply(&[
            u1.mutation.clone(),
            u2.mutation.clone(),
            u1.mutation.clone(),
        ]);
        assert_eq!(dir.epoch(1).unwrap().unwrap().map_root, reference.root().0);
        // A second marker for a closed epoch (a deposed leader's) is refused.
        assert!(matches!(
            run(
                &state,
                LogCommand::KtMarker {
                    epoch: 1,
                    timestamp_ms: 11
                }
            ),
            ApplyOutcome::Invalid(_)
        ));

        // Epoch 2: user 1 changes, chaining two changes in one epoch; user 2 by a stranger.
        let u1b = update(&signer, 1, b"a2", Some(&u1.mutation.entry), &k1);
        let u1c = update(&signer, 1, b"a3", Some(&u1b.mutation.entry), &k1);
        let evil = update(&signer, 2, b"x", Some(&u2.mutation.entry), &k1);
        for u in [&u1b, &u1c, &evil] {
            run(&state, LogCommand::KtUpdate(u.clone()));
        }
        // The clock of a new leader is behind: the epoch keeps the later time.
        run(
            &state,
            LogCommand::KtMarker {
                epoch: 2,
                timestamp_ms: 5,
            },
        );
        let v2 = reference.apply(&[
            u1b.mutation.clone(),
            u1c.mutation.clone(),
            evil.mutation.clone(),
        ]);
        assert_eq!(v2, vec![None, None, Some(Rejection::NotAuthorised)]);
        let info2 = dir.epoch(2).unwrap().unwrap();
        assert_eq!(info2.map_root, reference.root().0);
        assert_eq!(info2.timestamp_ms, 10);
        let at = |i, e| dir.entry_at(&i, e).unwrap().map(|s| s.opening.value);
        assert_eq!(at(u1.mutation.index, 1), Some(b"a".to_vec()));
        assert_eq!(at(u1.mutation.index, 2), Some(b"a3".to_vec()));
        assert_eq!(at(u2.mutation.index, 2), Some(b"b".to_vec()));
        assert_eq!(dir.history(&u1.mutation.index, 1, 2).unwrap().len(), 2);
        // Proofs at both epochs match the stored roots.
        let hasher = ConiksSha256::new(MAP_ID);
        for e in [1, 2] {
            let (proof, _) = dir.prove(&u1.mutation.index, e).unwrap();
            let stored = dir.entry_at(&u1.mutation.index, e).unwrap().unwrap();
            quorumlog_kt::map::verify(
                &hasher,
                &MapHash(dir.epoch(e).unwrap().unwrap().map_root),
                &u1.mutation.index,
                Some(&stored.entry.encode()),
                &proof,
            )
            .unwrap();
        }

        // Heads: in order, exactly what was applied, and each lands in the Sigsum log.
        assert!(matches!(
            run(&state, sign_head(&state, &signer, 2)),
            ApplyOutcome::Invalid(_)
        ));
        let forged = {
            let LogCommand::KtHead { head, .. } = sign_head(&state, &signer, 1) else {
                unreachable!()
            };
            let mut h = head.head;
            h.map_root = [9; 32];
            let head = signer.directory().sign_map_head(h);
            LogCommand::KtHead {
                leaf: signer.directory().head_leaf(&head),
                head,
            }
        };
        assert!(matches!(run(&state, forged), ApplyOutcome::Invalid(_)));
        let tree = state.tree().unwrap();
        for e in [1, 2] {
            assert_eq!(
                run(&state, sign_head(&state, &signer, e)),
                ApplyOutcome::KtHead { leaf_index: e - 1 }
            );
        }
        assert_eq!(tree.size(), 2);
        assert_eq!(dir.newest_head_within(1).unwrap(), Some(1));
        assert_eq!(dir.newest_head_within(2).unwrap(), Some(2));

        // A monitor replaying the records agrees with both heads.
        let size = dir.mutation_log().unwrap().size();
        let records = dir.records(0, size).unwrap();
        let heads: BTreeMap<u64, SignedMapHead> = [1, 2]
            .into_iter()
            .map(|e| (e, dir.head(e).unwrap().unwrap().0))
            .collect();
        assert_eq!(replay(&mut MemoryMap::new(MAP_ID), &records, &heads), Ok(2));

        // Everything is in the database: a restart sees the same directory.
        let meta = dir.meta();
        drop((tree, dir, state));
        let again = open(tmp.path(), &signer);
        let dir = again.directory().unwrap();
        assert_eq!(dir.meta(), meta);
        assert_eq!(
            dir.entry_at(&u1.mutation.index, 2)
                .unwrap()
                .unwrap()
                .opening
                .value,
            b"a3"
        );
    }

    #[test]
    fn an_update_whose_value_does_not_open_its_commitment_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let signer = LogSigner::from_seed(&[3; 32]);
        let state = open(tmp.path(), &signer);
        let k1 = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let mut u = update(&signer, 1, b"a", None, &k1);
        u.opening.value = b"other".to_vec();
        assert!(matches!(
            run(&state, LogCommand::KtUpdate(u)),
            ApplyOutcome::Invalid(_)
        ));
        let dir = state.directory().unwrap();
        assert_eq!(dir.meta(), Meta::default());
        assert_eq!(dir.mutation_log().unwrap().size(), 0);
        // Undecodable directory commands are refused too.
        let bad = quorumlog_raft::types::Command(vec![0x10, 1, 2, 3]);
        assert!(matches!(
            decode_result(&state.apply(&[&bad], &mut |_, _| {}).unwrap()[0]).unwrap(),
            ApplyOutcome::Invalid(_)
        ));
    }
}
