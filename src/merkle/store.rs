//! The RFC 6962 tree persisted in RocksDB: appends, roots at any size, proofs, and the
//! leaf-hash index.

use super::proof::{self, NodeSource};
use super::tile::{self, TileId, TILE_BYTES, TILE_HEIGHT, TILE_WIDTH};
use quorumlog_sigsum::merkle::{empty_root, node_hash, Hash};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, DBPinnableSlice, Options,
    WriteBatch, DB,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use thiserror::Error;

/// Column family holding the tiles of perfect-subtree hashes.
pub const CF_TILES: &str = "merkle_tiles";
/// Column family holding the growing bottom tile, as merge operands over a base value
/// (see `tile.rs`). Kept apart so that reads of every other tile never go through a merge
/// operator (measured: a merge operator on the tiles themselves made proofs 30% slower).
pub const CF_EDGE_TILE: &str = "merkle_edge_tile";
/// Column family mapping a leaf hash to its index (Sigsum deduplicates identical leaves).
pub const CF_LEAF_INDEX: &str = "merkle_leaf_index";
/// Column family holding the tree size.
pub const CF_META: &str = "merkle_meta";
const KEY_SIZE: &[u8] = b"size";

/// Where one tree keeps its data, so a database can hold more than one tree.
#[derive(Debug, Clone, Copy)]
pub struct TreeColumns {
    pub tiles: &'static str,
    pub edge: &'static str,
    /// The leaf-hash index; without one, the tree keeps every leaf appended, repeats
    /// included, and cannot look leaves up by hash.
    pub index: Option<&'static str>,
    pub meta: &'static str,
}

/// The Sigsum log's tree: identical leaves are one leaf.
pub const LOG_TREE: TreeColumns = TreeColumns {
    tiles: CF_TILES,
    edge: CF_EDGE_TILE,
    index: Some(CF_LEAF_INDEX),
    meta: CF_META,
};

/// Errors from the Merkle store.
#[derive(Debug, Error)]
pub enum MerkleError {
    /// RocksDB failed, including a block checksum mismatch on read.
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    /// The database lacks one of the store's column families.
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    /// A hash the tree size says must exist was not stored: the database is damaged.
    #[error("tree data missing or damaged at level {level}, index {index}")]
    Damaged {
        /// Tree level of the missing node.
        level: u32,
        /// Index of the missing node within its level.
        index: u64,
    },
    /// A size beyond the current tree was asked for.
    #[error("tree size {requested} is larger than the current size {current}")]
    SizeTooLarge {
        /// Size asked for.
        requested: u64,
        /// Current size.
        current: u64,
    },
    /// A leaf index at or beyond the tree size was asked for.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// Index asked for.
        index: u64,
        /// Size of the tree it was asked in.
        size: u64,
    },
    /// A leaf hash is not in the tree of the given size.
    #[error("leaf not found in tree of size {size}")]
    LeafNotFound {
        /// Size of the tree searched.
        size: u64,
    },
    /// A consistency proof was asked for sizes that have none.
    #[error("no consistency proof from size {old} to size {new}")]
    InvalidRange {
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The index of each leaf given, in order; a duplicate gets the index it already had.
    pub indexes: Vec<u64>,
    /// How many leaves were new.
    pub added: u64,
    /// The tree size after the append.
    pub size: u64,
}

/// The Merkle tree on RocksDB. Cheap to share: reads take `&self` and run concurrently
/// with one appender.
pub struct MerkleStore {
    db: Arc<DB>,
    cols: TreeColumns,
    size: AtomicU64,
    /// The right-edge tile of every tile level, kept in memory so appends never read
    /// RocksDB. `None` after a failed write: reloaded from disk on the next append.
    edge: Mutex<Option<Edge>>,
    /// Tiles above the bottom level, which nearly every proof and root touches.
    upper: TileCache,
    /// Hashes of right-edge ranges (not perfect subtrees) computed for recent proofs.
    ranges: RangeCache,
}

impl MerkleStore {
    /// The column families the store needs, for callers that open one RocksDB instance
    /// shared with other state (the Raft state machine writes beside the tree atomically).
    pub fn column_families() -> Vec<ColumnFamilyDescriptor> {
        Self::column_families_for(&LOG_TREE)
    }

    /// The column families of the tree stored in `cols`.
    pub fn column_families_for(cols: &TreeColumns) -> Vec<ColumnFamilyDescriptor> {
        let cache = Cache::new_lru_cache(256 << 20);
        let mut tiles = BlockBasedOptions::default();
        tiles.set_block_cache(&cache);
        tiles.set_block_size(16 << 10);
        let mut index = BlockBasedOptions::default();
        index.set_block_cache(&cache);
        index.set_bloom_filter(10.0, false);
        let cf = |table: &BlockBasedOptions| {
            let mut o = Options::default();
            // Hashes do not compress.
            o.set_compression_type(DBCompressionType::None);
            o.set_block_based_table_factory(table);
            o
        };
        let mut index_opts = cf(&index);
        // Index keys are random hashes. A smaller memtable keeps the skiplist shallow and
        // cache-resident for inserts (measured: 16 MiB beat both the 64 MiB default and a
        // hashed memtable, whose flush-time sort competed for the second core). Most
        // lookups are for new leaves, i.e. misses, which the memtable bloom filter answers
        // without walking the skiplist.
        index_opts.set_write_buffer_size(16 << 20);
        index_opts.set_memtable_prefix_bloom_ratio(0.1);
        index_opts.set_memtable_whole_key_filtering(true);
        let mut edge_opts = cf(&tiles);
        edge_opts.set_merge_operator(
            tile::OVERLAY_MERGE,
            |_key: &[u8], existing: Option<&[u8]>, ops: &rocksdb::MergeOperands| {
                tile::overlay_full(existing, ops)
            },
            |_key: &[u8], _existing: Option<&[u8]>, ops: &rocksdb::MergeOperands| {
                tile::overlay_partial(ops)
            },
        );
        let mut out = vec![
            ColumnFamilyDescriptor::new(cols.tiles, cf(&tiles)),
            ColumnFamilyDescriptor::new(cols.edge, edge_opts),
            ColumnFamilyDescriptor::new(cols.meta, cf(&BlockBasedOptions::default())),
        ];
        if let Some(index) = cols.index {
            out.push(ColumnFamilyDescriptor::new(index, index_opts));
        }
        out
    }

    /// Database-wide options for a database holding the tree. Callers that open a shared
    /// database start from these.
    pub fn db_options() -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Write flushed tables out to disk as they are produced instead of in one fsync at
        // the end: a burst of tens of megabytes in one fsync holds up the Raft log's small
        // fsyncs on the same file system.
        opts.set_bytes_per_sync(1 << 20);
        opts
    }

    /// Opens (or creates) a RocksDB database at `path` that holds only the tree.
    pub fn open(path: &Path) -> Result<MerkleStore, MerkleError> {
        let opts = Self::db_options();
        let db = DB::open_cf_descriptors(&opts, path, Self::column_families())?;
        Self::new(Arc::new(db))
    }

    /// Uses an already open database that has the store's column families.
    pub fn new(db: Arc<DB>) -> Result<MerkleStore, MerkleError> {
        Self::new_in(db, LOG_TREE)
    }

    /// Uses the tree stored in `cols` of an already open database.
    pub fn new_in(db: Arc<DB>, cols: TreeColumns) -> Result<MerkleStore, MerkleError> {
        for name in [cols.tiles, cols.edge, cols.meta]
            .into_iter()
            .chain(cols.index)
        {
            if db.cf_handle(name).is_none() {
                return Err(MerkleError::MissingColumnFamily(name));
            }
        }
        let meta = db.cf_handle(cols.meta).expect("checked above");
        let size = match db.get_cf(meta, KEY_SIZE)? {
            None => 0,
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| MerkleError::Damaged { level: 0, index: 0 })?,
            ),
        };
        Ok(MerkleStore {
            db,
            cols,
            size: AtomicU64::new(size),
            edge: Mutex::new(None),
            upper: TileCache::default(),
            ranges: RangeCache::default(),
        })
    }

    /// The database the tree lives in.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// Number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Appends leaf hashes in one RocksDB write batch. Leaves already in the tree, or
    /// repeated within `leaves`, are not appended again; they report their existing index.
    pub fn append(&self, leaves: &[Hash]) -> Result<AppendOutcome, MerkleError> {
        self.append_with(leaves, |_, _| {})
    }

    /// Like [`append`](Self::append), and lets the caller add its own writes (for example
    /// the Raft `last_applied` index) to the same atomic batch. `extra` sees the outcome.
    pub fn append_with(
        &self,
        leaves: &[Hash],
        extra: impl FnOnce(&mut WriteBatch, &AppendOutcome),
    ) -> Result<AppendOutcome, MerkleError> {
        let mut guard = self.edge.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.load_edge(self.size())?);
        }
        let staged = self.stage(guard.as_mut().expect("loaded above"), leaves);
        let (mut batch, outcome) = match staged {
            Ok(s) => s,
            Err(e) => {
                // The in-memory edge may hold part of the batch; forget it so the next
                // append starts again from what is on disk.
                *guard = None;
                return Err(e);
            }
        };
        extra(&mut batch, &outcome);
        if let Err(e) = self.db.write(batch) {
            *guard = None;
            return Err(e.into());
        }
        self.size.store(outcome.size, Ordering::Release);
        Ok(outcome)
    }

    /// Builds the write batch for an append, updating the in-memory edge as it goes.
    fn stage(
        &self,
        edge: &mut Edge,
        leaves: &[Hash],
    ) -> Result<(WriteBatch, AppendOutcome), MerkleError> {
        let start = self.size();
        let index_cf = match self.cols.index {
            Some(name) => Some(self.cf(name)?),
            None => None,
        };
        let cfs = TileCfs {
            tiles: self.cf(self.cols.tiles)?,
            edge: self.cf(self.cols.edge)?,
        };
        let mut batch = WriteBatch::default();
        let mut indexes = Vec::with_capacity(leaves.len());
        let mut size = start;
        match index_cf {
            None => {
                for leaf in leaves {
                    indexes.push(size);
                    edge.push_leaf(size, *leaf, &mut batch, &cfs);
                    size += 1;
                }
            }
            Some(index_cf) => {
                let known =
                    self.db
                        .batched_multi_get_cf(index_cf, leaves.iter().map(|h| &h.0), false);
                let mut fresh: HashMap<Hash, u64> = HashMap::with_capacity(leaves.len());
                for (leaf, known) in leaves.iter().zip(known) {
                    if let Some(v) = known? {
                        indexes.push(decode_index(&v)?);
                    } else if let Some(&i) = fresh.get(leaf) {
                        indexes.push(i);
                    } else {
                        fresh.insert(*leaf, size);
                        indexes.push(size);
                        edge.push_leaf(size, *leaf, &mut batch, &cfs);
                        size += 1;
                    }
                }
                // Index keys are random hashes; inserting them in key order lets the
                // memtable reuse its position between inserts instead of searching from
                // the top each time.
                let mut fresh: Vec<(Hash, u64)> = fresh.into_iter().collect();
                fresh.sort_unstable();
                for (leaf, i) in fresh {
                    batch.put_cf(index_cf, leaf.0, i.to_be_bytes());
                }
            }
        }
        edge.flush(&mut batch, &cfs);
        batch.put_cf(self.cf(self.cols.meta)?, KEY_SIZE, size.to_be_bytes());
        let outcome = AppendOutcome {
            indexes,
            added: size - start,
            size,
        };
        Ok((batch, outcome))
    }

    /// Root hash of the tree at `size` (any size up to the current one).
    pub fn root(&self, size: u64) -> Result<Hash, MerkleError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        proof::root(&mut self.reader(), size)
    }

    /// Hash of the leaf at `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash, MerkleError> {
        let size = self.size();
        if index >= size {
            return Err(MerkleError::IndexOutOfRange { index, size });
        }
        self.reader().node(0, index)
    }

    /// Index of a leaf hash, if the leaf is anywhere in the current tree.
    pub fn index_of(&self, leaf: &Hash) -> Result<Option<u64>, MerkleError> {
        let Some(index) = self.cols.index else {
            return Ok(None);
        };
        match self.db.get_pinned_cf(self.cf(index)?, leaf.0)? {
            None => Ok(None),
            Some(v) => {
                let i = decode_index(&v)?;
                // An index beyond the visible size belongs to an append still in flight.
                Ok((i < self.size()).then_some(i))
            }
        }
    }

    /// Inclusion proof of the leaf at `index` in the tree of `size`, sibling first.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(size)?;
        if index >= size {
            return Err(MerkleError::IndexOutOfRange { index, size });
        }
        proof::inclusion_path(&mut self.reader(), index, size)
    }

    /// Inclusion proof of a leaf given by hash in the tree of `size`: its index and path.
    pub fn inclusion_proof_by_hash(
        &self,
        leaf: &Hash,
        size: u64,
    ) -> Result<(u64, Vec<Hash>), MerkleError> {
        self.check_size(size)?;
        match self.index_of(leaf)? {
            Some(index) if index < size => Ok((index, self.inclusion_proof(index, size)?)),
            _ => Err(MerkleError::LeafNotFound { size }),
        }
    }

    /// Consistency proof from the tree of `old` leaves to the tree of `new` leaves,
    /// for `0 < old < new <= size`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, MerkleError> {
        self.check_size(new)?;
        if old == 0 || old >= new {
            return Err(MerkleError::InvalidRange { old, new });
        }
        proof::consistency_path(&mut self.reader(), old, new)
    }

    fn check_size(&self, requested: u64) -> Result<(), MerkleError> {
        let current = self.size();
        if requested > current {
            return Err(MerkleError::SizeTooLarge { requested, current });
        }
        Ok(())
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, MerkleError> {
        self.db
            .cf_handle(name)
            .ok_or(MerkleError::MissingColumnFamily(name))
    }

    /// A stored tile: complete and upper tiles first, else the growing bottom tile.
    fn get_tile(&self, id: TileId) -> Result<Option<rocksdb::DBPinnableSlice<'_>>, MerkleError> {
        if let Some(t) = self.db.get_pinned_cf(self.cf(self.cols.tiles)?, id.key())? {
            return Ok(Some(t));
        }
        if id.level > 0 {
            return Ok(None);
        }
        Ok(self.db.get_pinned_cf(self.cf(self.cols.edge)?, id.key())?)
    }

    fn reader(&self) -> TileReader<'_> {
        TileReader {
            store: self,
            tiles: Vec::with_capacity(4),
        }
    }

    /// Reads the right-edge tile of every tile level of a tree of `size` leaves.
    fn load_edge(&self, size: u64) -> Result<Edge, MerkleError> {
        let mut tiles = Vec::new();
        let mut level = 0u32;
        while level == 0 || (size >> (TILE_HEIGHT * level)) > 0 {
            let nodes = size >> (TILE_HEIGHT * level);
            let id = TileId {
                level: level as u8,
                index: nodes / TILE_WIDTH,
            };
            let mut t = EdgeTile::empty(id.index);
            t.width = nodes % TILE_WIDTH;
            if t.width > 0 {
                let stored = self.get_tile(id)?.ok_or(MerkleError::Damaged {
                    level: level * TILE_HEIGHT,
                    index: nodes - 1,
                })?;
                let want = tile::stored_slots(t.width) * Hash::LEN;
                if stored.len() < want {
                    return Err(MerkleError::Damaged {
                        level: level * TILE_HEIGHT,
                        index: nodes - 1,
                    });
                }
                t.buf[..want].copy_from_slice(&stored[..want]);
            }
            tiles.push(t);
            level += 1;
        }
        Ok(Edge { tiles })
    }
}

fn decode_index(v: &[u8]) -> Result<u64, MerkleError> {
    v.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| MerkleError::Damaged { level: 0, index: 0 })
}

/// Merge operands a growing tile may collect before it is written whole again.
const MAX_MERGES: u32 = 16;

/// The rightmost (growing) tile of each tile level.
struct Edge {
    tiles: Vec<EdgeTile>,
}

struct EdgeTile {
    index: u64,
    /// Base hashes present.
    width: u64,
    /// Slots set since the tile was last written.
    pending: Vec<u16>,
    /// Merge operands written since the tile was last written whole.
    merges: u32,
    buf: Box<[u8; TILE_BYTES]>,
}

/// Where tiles are written: complete and upper tiles, and the growing bottom tile.
struct TileCfs<'a> {
    tiles: &'a rocksdb::ColumnFamily,
    edge: &'a rocksdb::ColumnFamily,
}

impl EdgeTile {
    fn empty(index: u64) -> EdgeTile {
        EdgeTile {
            index,
            width: 0,
            pending: Vec::new(),
            merges: 0,
            buf: Box::new([0u8; TILE_BYTES]),
        }
    }

    /// Writes the slots set since the last write as one merge operand.
    fn write_pending(&mut self, level: u8, batch: &mut WriteBatch, cfs: &TileCfs<'_>) {
        if self.pending.is_empty() {
            return;
        }
        let id = TileId {
            level,
            index: self.index,
        };
        // Only the bottom edge tile changes with every append. Upper tiles change once per
        // 256 nodes below them and are read by nearly every proof: write them whole, so
        // those reads find a plain value. The bottom tile is written whole every
        // MAX_MERGES appends, as every read of it merges its operands.
        let stored = tile::stored_slots(self.width.max(1)) * Hash::LEN;
        if level > 0 {
            batch.put_cf(cfs.tiles, id.key(), &self.buf[..stored]);
            self.pending.clear();
            return;
        }
        if self.merges >= MAX_MERGES {
            batch.put_cf(cfs.edge, id.key(), &self.buf[..stored]);
            self.merges = 0;
            self.pending.clear();
            return;
        }
        let mut operand = Vec::with_capacity(self.pending.len() * tile::OVERLAY_ENTRY);
        for &slot in &self.pending {
            let slot = slot as usize;
            tile::push_overlay(
                &mut operand,
                slot,
                &self.buf[slot * Hash::LEN..(slot + 1) * Hash::LEN],
            );
        }
        batch.merge_cf(cfs.edge, id.key(), operand);
        self.merges += 1;
        self.pending.clear();
    }

    fn get(&self, slot: usize) -> Hash {
        Hash::from_slice(&self.buf[slot * Hash::LEN..(slot + 1) * Hash::LEN]).expect("32 bytes")
    }
}

impl Edge {
    /// Adds leaf `index` and every perfect subtree it completes (one hash per leaf amortised).
    fn push_leaf(&mut self, index: u64, leaf: Hash, batch: &mut WriteBatch, cfs: &TileCfs<'_>) {
        self.set(0, index, leaf, batch, cfs);
        let (mut level, mut i, mut cur) = (0u32, index, leaf);
        while i & 1 == 1 {
            let left = self.get(level, i - 1);
            cur = node_hash(&left, &cur);
            level += 1;
            i >>= 1;
            self.set(level, i, cur, batch, cfs);
        }
    }

    fn get(&self, level: u32, index: u64) -> Hash {
        let (id, slot) = tile::locate(level, index);
        let t = &self.tiles[id.level as usize];
        debug_assert_eq!(t.index, id.index, "left sibling is always in the edge tile");
        t.get(slot)
    }

    fn set(
        &mut self,
        level: u32,
        index: u64,
        hash: Hash,
        batch: &mut WriteBatch,
        cfs: &TileCfs<'_>,
    ) {
        let (id, slot) = tile::locate(level, index);
        if id.level as usize == self.tiles.len() {
            self.tiles.push(EdgeTile::empty(id.index));
        }
        let t = &mut self.tiles[id.level as usize];
        if t.index != id.index {
            // The edge moved right: the previous tile is full and final. Write it whole, so
            // reads of complete tiles (nearly all reads) find a plain value and never merge.
            debug_assert_eq!(id.index, t.index + 1);
            let done = TileId {
                level: id.level,
                index: t.index,
            };
            batch.put_cf(cfs.tiles, done.key(), &t.buf[..]);
            if id.level == 0 {
                batch.delete_cf(cfs.edge, done.key());
            }
            *t = EdgeTile::empty(id.index);
        }
        t.buf[slot * Hash::LEN..(slot + 1) * Hash::LEN].copy_from_slice(&hash.0);
        if level.is_multiple_of(TILE_HEIGHT) {
            t.width = (index % TILE_WIDTH) + 1;
        }
        t.pending.push(slot as u16);
    }

    /// Writes every tile changed since the last flush.
    fn flush(&mut self, batch: &mut WriteBatch, cfs: &TileCfs<'_>) {
        for (level, t) in self.tiles.iter_mut().enumerate() {
            t.write_pending(level as u8, batch, cfs);
        }
    }
}

/// Most upper-level tiles kept in memory: 8192 tiles of at most 16 KiB, enough for every
/// upper tile of a tree of half a billion leaves.
const UPPER_CACHE_TILES: usize = 8192;

/// Tiles of tile-level 1 and above, shared by all readers. A cached tile may be a shorter
/// prefix than the one on disk; a node is served from it only if it was complete at the
/// cached width, since the hashes of complete nodes never change.
#[derive(Default)]
struct TileCache {
    tiles: RwLock<HashMap<TileKey, Arc<[u8]>>>,
}

/// Tile level and index.
type TileKey = (u8, u64);

impl TileCache {
    fn get(&self, id: TileId) -> Option<Arc<[u8]>> {
        let tiles = self.tiles.read().unwrap_or_else(|e| e.into_inner());
        tiles.get(&(id.level, id.index)).cloned()
    }

    fn put(&self, id: TileId, bytes: Arc<[u8]>) {
        let mut tiles = self.tiles.write().unwrap_or_else(|e| e.into_inner());
        if tiles.len() < UPPER_CACHE_TILES || tiles.contains_key(&(id.level, id.index)) {
            tiles.insert((id.level, id.index), bytes);
        }
    }
}

/// Most right-edge range hashes remembered before the memo starts over.
const RANGE_CACHE_ENTRIES: usize = 4096;

/// Memo of right-edge range hashes. A range `[start, end)` of leaves has one hash forever,
/// so entries never go stale; the map is simply cleared when it fills.
#[derive(Default)]
struct RangeCache {
    ranges: RwLock<HashMap<(u64, u64), Hash>>,
}

impl RangeCache {
    fn get(&self, start: u64, end: u64) -> Option<Hash> {
        let ranges = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        ranges.get(&(start, end)).copied()
    }

    fn put(&self, start: u64, end: u64, hash: Hash) {
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        if ranges.len() >= RANGE_CACHE_ENTRIES {
            ranges.clear();
        }
        ranges.insert((start, end), hash);
    }
}

/// True if the node at `slot` is complete in a stored tile of `len` bytes.
fn complete_in(slot: usize, len: usize) -> bool {
    let width = (len / Hash::LEN).div_ceil(2) as u64;
    let (local, k) = tile::slot_position(slot);
    (k + 1) << local <= width
}

/// Reads perfect-subtree hashes for one proof or root, fetching each tile once.
struct TileReader<'a> {
    store: &'a MerkleStore,
    tiles: Vec<(TileId, TileBytes<'a>)>,
}

enum TileBytes<'a> {
    Pinned(DBPinnableSlice<'a>),
    Shared(Arc<[u8]>),
}

impl TileBytes<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            TileBytes::Pinned(p) => p,
            TileBytes::Shared(s) => s,
        }
    }
}

impl<'a> TileReader<'a> {
    fn fetch(&mut self, id: TileId, slot: usize) -> Result<TileBytes<'a>, MerkleError> {
        if id.level > 0 {
            if let Some(cached) = self.store.upper.get(id) {
                if complete_in(slot, cached.len()) {
                    return Ok(TileBytes::Shared(cached));
                }
            }
        }
        let pinned = self.store.get_tile(id)?;
        let Some(pinned) = pinned else {
            return Ok(TileBytes::Shared(Arc::from(&[][..])));
        };
        if id.level > 0 {
            let shared: Arc<[u8]> = Arc::from(&pinned[..]);
            self.store.upper.put(id, shared.clone());
            return Ok(TileBytes::Shared(shared));
        }
        Ok(TileBytes::Pinned(pinned))
    }
}

impl TileReader<'_> {
    /// The tile holding `(level, index)` and the node's slot in it.
    fn tile_of(&mut self, level: u32, index: u64) -> Result<(&[u8], usize), MerkleError> {
        let (id, slot) = tile::locate(level, index);
        let pos = match self.tiles.iter().position(|(t, _)| *t == id) {
            // A tile fetched for an earlier node may be a cached prefix too short for this
            // one: fetch it again then.
            Some(p) if complete_in(slot, self.tiles[p].1.bytes().len()) => p,
            found => {
                let bytes = self.fetch(id, slot)?;
                match found {
                    Some(p) => {
                        self.tiles[p].1 = bytes;
                        p
                    }
                    None => {
                        self.tiles.push((id, bytes));
                        self.tiles.len() - 1
                    }
                }
            }
        };
        Ok((self.tiles[pos].1.bytes(), slot))
    }
}

impl NodeSource for TileReader<'_> {
    type Error = MerkleError;

    fn node(&mut self, level: u32, index: u64) -> Result<Hash, MerkleError> {
        let (bytes, slot) = self.tile_of(level, index)?;
        if !complete_in(slot, bytes.len()) {
            return Err(MerkleError::Damaged { level, index });
        }
        Ok(Hash::from_slice(&bytes[slot * Hash::LEN..(slot + 1) * Hash::LEN]).expect("32 bytes"))
    }

    fn cached_range(&mut self, start: u64, end: u64) -> Option<Hash> {
        self.store.ranges.get(start, end)
    }

    fn remember_range(&mut self, start: u64, end: u64, hash: Hash) {
        self.store.ranges.put(start, end, hash);
    }
}
