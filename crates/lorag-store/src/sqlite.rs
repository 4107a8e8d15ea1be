//! The embedded store: SQLite (source of truth) + usearch HNSW (derived).

use crate::hnsw::{self, IndexState};
use crate::{
    blob_to_vec, glob_parts, query_words, unix_now, vec_to_blob, ChunkId, DocumentChunks, Error,
    ExportedDocument, ExportedSource, Filter, GlobPart, Result, SourceInfo, SourceRecord, Store,
    StoreStats, StoredChunk,
};
use lorag_core::{Chunk, Document};
use rusqlite::types::Value;
use rusqlite::{
    params, params_from_iter, Connection, OpenFlags, OptionalExtension, ToSql, TransactionBehavior,
};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub const DB_FILE: &str = "kb.sqlite";
const SCHEMA_VERSION: &str = "1";
/// Below this many filtered candidates, dense search is exact (brute force) instead of HNSW.
const EXACT_BELOW: usize = 4096;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    hash TEXT NOT NULL,
    mtime INTEGER NOT NULL,
    size INTEGER NOT NULL,
    ingested_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS documents(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id INTEGER NOT NULL REFERENCES sources(id),
    ordinal INTEGER NOT NULL,
    kind TEXT NOT NULL,
    title TEXT,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source_id);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id INTEGER NOT NULL REFERENCES sources(id),
    document_id INTEGER NOT NULL REFERENCES documents(id),
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    title TEXT,
    section TEXT,
    page INTEGER,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source_id);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks(document_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, section, title,
    content='chunks', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text, section, title) VALUES (new.id, new.text, new.section, new.title);
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text, section, title) VALUES ('delete', old.id, old.text, old.section, old.title);
END;
"#;

/// Ids per `IN (...)` query when chunks or vectors are read by id.
const BATCH: usize = 500;

/// The in-memory HNSW index and what it reflects.
struct Hnsw {
    index: Option<usearch::Index>,
    /// The chunk ids in `index`.
    keys: HashSet<ChunkId>,
    /// The database generation `index` reflects.
    generation: u64,
    /// `index` holds changes that are not saved yet (never on a read-only handle).
    dirty: bool,
}

impl Hnsw {
    fn none() -> Self {
        Self {
            index: None,
            keys: HashSet::new(),
            generation: 0,
            dirty: false,
        }
    }

    fn current(&self, generation: u64) -> bool {
        self.index.is_some() && self.generation == generation
    }
}

/// The embedded store. One handle may be shared by any number of threads (`Arc<SqliteStore>`).
///
/// Locks, always taken in this order and never the other way: `writer` (this handle's writes,
/// one at a time, so that the index follows its commits in order), `hnsw` (the in-memory index:
/// searches share it, updates take it alone), `conn` (the SQLite connection, held for one
/// statement or one transaction).
pub struct SqliteStore {
    dir: PathBuf,
    db_path: PathBuf,
    /// Opened by [`SqliteStore::open_read`]: nothing is written, to the database or to the index
    /// files.
    read_only: bool,
    writer: Mutex<()>,
    hnsw: RwLock<Hnsw>,
    conn: Mutex<Connection>,
    slots: hnsw::Slots,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn backend(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::Backend {
        path: path.to_path_buf(),
        message: sqlite_message(&e),
    }
}

/// SQLite's message, with what to do when the disk refused a write ("disk I/O error" alone does
/// not say that a full disk, or a file over a size limit, is the usual cause).
fn sqlite_message(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode::{DiskFull, SystemIoFailure};
    match e.sqlite_error_code() {
        Some(DiskFull | SystemIoFailure) => format!(
            "{e} (could not write: is the disk full, or the file over a size limit? The last committed state is intact)"
        ),
        _ => e.to_string(),
    }
}

fn read_meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
        .optional()
}

fn read_generation(conn: &Connection) -> rusqlite::Result<u64> {
    Ok(read_meta(conn, "generation")?
        .and_then(|g| g.parse().ok())
        .unwrap_or(0))
}

fn read_dim(conn: &Connection) -> rusqlite::Result<Option<usize>> {
    Ok(read_meta(conn, "dim")?.and_then(|d| d.parse().ok()))
}

fn count_chunks(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

/// The vectors of the chunks `ids` that exist, in the order asked, `BATCH` ids per query.
fn vectors_in(conn: &Connection, ids: &[ChunkId]) -> rusqlite::Result<Vec<(ChunkId, Vec<f32>)>> {
    let mut found: HashMap<ChunkId, Vec<f32>> = HashMap::with_capacity(ids.len());
    for batch in ids.chunks(BATCH) {
        let sql = format!(
            "SELECT id, embedding FROM chunks WHERE id IN ({})",
            placeholders(batch.len())
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(batch), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            let (id, blob) = row?;
            found.insert(id, blob_to_vec(&blob));
        }
    }
    Ok(ids
        .iter()
        .filter_map(|id| found.get(id).map(|v| (*id, v.clone())))
        .collect())
}

impl SqliteStore {
    /// Open the KB in `dir` for reading and writing. With `create`, a missing KB is created;
    /// without, it is an error.
    pub fn open(dir: &Path, create: bool) -> Result<Self> {
        let db_path = dir.join(DB_FILE);
        if !db_path.exists() {
            if !create {
                return Err(not_kb(dir));
            }
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let sq = backend(&db_path);
        let conn = Connection::open(&db_path).map_err(&sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(&sq)?;
        // A file that is not SQLite fails here, on the first read.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| Error::NotKb {
                path: db_path.clone(),
                why: e.to_string(),
            })?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(&sq)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(&sq)?;
        conn.execute_batch(SCHEMA).map_err(&sq)?;
        let version = read_meta(&conn, "schema_version").map_err(&sq)?;
        match version.as_deref() {
            None => {
                conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?1), ('generation', '0')", [SCHEMA_VERSION])
                    .map_err(&sq)?;
            }
            Some(v) => check_version(&db_path, v)?,
        }
        Ok(Self::with(dir, db_path.clone(), conn, false))
    }

    /// Open the existing KB in `dir` for reading only: the connection is read-only, no schema or
    /// pragma is written, and the HNSW index, when it must be rebuilt, is rebuilt in memory and
    /// never saved. The KB's files are left as they are (SQLite may create its `-wal` and `-shm`
    /// files beside them, as any reader of a WAL database does).
    pub fn open_read(dir: &Path) -> Result<Self> {
        let db_path = dir.join(DB_FILE);
        if !db_path.exists() {
            return Err(not_kb(dir));
        }
        let sq = backend(&db_path);
        let conn = Connection::open_with_flags(
            &db_path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(&sq)?;
        // A file that is not SQLite, or not a KB, fails here, on the first read.
        let version = read_meta(&conn, "schema_version").map_err(|e| Error::NotKb {
            path: db_path.clone(),
            why: e.to_string(),
        })?;
        match version.as_deref() {
            None => {
                return Err(Error::NotKb {
                    path: db_path.clone(),
                    why: "no schema version".into(),
                })
            }
            Some(v) => check_version(&db_path, v)?,
        }
        Ok(Self::with(dir, db_path.clone(), conn, true))
    }

    fn with(dir: &Path, db_path: PathBuf, conn: Connection, read_only: bool) -> Self {
        Self {
            dir: dir.to_path_buf(),
            db_path,
            read_only,
            writer: Mutex::new(()),
            hnsw: RwLock::new(Hnsw::none()),
            conn: Mutex::new(conn),
            slots: hnsw::Slots::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opened with [`SqliteStore::open_read`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        backend(&self.db_path)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.conn)
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    fn hnsw_write(&self) -> RwLockWriteGuard<'_, Hnsw> {
        match self.hnsw.write() {
            Ok(h) => h,
            Err(poisoned) => {
                // A panic in the middle of an update: the index may be half changed; drop it (the
                // next search catches up from SQLite).
                let mut h = poisoned.into_inner();
                *h = Hnsw::none();
                self.hnsw.clear_poison();
                h
            }
        }
    }

    fn hnsw_read(&self) -> RwLockReadGuard<'_, Hnsw> {
        if let Ok(h) = self.hnsw.read() {
            return h;
        }
        drop(self.hnsw_write());
        self.hnsw.read().unwrap_or_else(|e| e.into_inner())
    }

    fn dim(&self) -> Result<Option<usize>> {
        read_dim(&self.conn()).map_err(self.sq())
    }

    pub(crate) fn index_state(&self) -> Result<IndexState> {
        let (generation, dim, count) = {
            let c = self.conn();
            let sq = self.sq();
            (
                read_generation(&c).map_err(&sq)?,
                read_dim(&c).map_err(&sq)?,
                count_chunks(&c).map_err(&sq)?,
            )
        };
        let Some(dim) = dim else {
            return Ok(IndexState::Missing);
        };
        if self.hnsw_read().current(generation) {
            return Ok(IndexState::Fresh);
        }
        Ok(hnsw::state(&self.dir, generation, count, dim))
    }

    /// The in-memory index, caught up with database generation `generation` (read by the caller
    /// just before) when it reflects another.
    fn index_at(&self, generation: u64) -> Result<RwLockReadGuard<'_, Hnsw>> {
        {
            let h = self.hnsw_read();
            if h.current(generation) {
                return Ok(h);
            }
        }
        {
            let mut h = self.hnsw_write();
            self.catch_up(&mut h)?;
        }
        Ok(self.hnsw_read())
    }

    /// Bring the in-memory index to the database as committed now. A loaded index follows the
    /// difference in chunk ids (ids are never reused and a chunk's vector never changes, so the
    /// ids say it all); else the saved index is loaded when it reflects this generation, else the
    /// index is rebuilt from SQLite (and saved, by a writable handle). On an error the index is
    /// dropped, so that a later query starts over.
    fn catch_up(&self, h: &mut Hnsw) -> Result<()> {
        let r = self.catch_up_inner(h);
        if r.is_err() {
            *h = Hnsw::none();
        }
        r
    }

    fn catch_up_inner(&self, h: &mut Hnsw) -> Result<()> {
        let sq = self.sq();
        let mut conn = self.conn();
        // One read transaction: generation, dimension, ids and vectors are one snapshot.
        let tx = conn.transaction().map_err(&sq)?;
        let generation = read_generation(&tx).map_err(&sq)?;
        if h.current(generation) {
            return Ok(());
        }
        let Some(dim) = read_dim(&tx).map_err(&sq)? else {
            *h = Hnsw::none();
            h.generation = generation;
            return Ok(());
        };
        let ids: HashSet<ChunkId> = tx
            .prepare("SELECT id FROM chunks")
            .map_err(&sq)?
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(&sq)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&sq)?;
        if let Some(idx) = h.index.as_ref().filter(|i| i.dimensions() == dim) {
            let mut gone: Vec<ChunkId> = h.keys.difference(&ids).copied().collect();
            let mut new: Vec<ChunkId> = ids.difference(&h.keys).copied().collect();
            gone.sort_unstable();
            new.sort_unstable();
            let vectors = vectors_in(&tx, &new).map_err(&sq)?;
            drop(tx);
            drop(conn);
            for id in &gone {
                idx.remove(*id as u64)
                    .map_err(|e| Error::Index(e.to_string()))?;
            }
            hnsw::reserve(idx, idx.size() + vectors.len())?;
            for (id, v) in &vectors {
                idx.add(*id as u64, v)
                    .map_err(|e| Error::Index(e.to_string()))?;
            }
            h.keys = ids;
            h.generation = generation;
            let changed = !gone.is_empty() || !new.is_empty();
            h.dirty |= changed && !self.read_only;
            return Ok(());
        }
        let count = ids.len();
        if hnsw::state(&self.dir, generation, count as u64, dim) == IndexState::Fresh {
            // Saved for this generation; every id must be in it (two writers saving at once
            // could pair one's index.json with the other's index.usearch).
            if let Some(idx) = hnsw::load(&self.dir, dim, count)
                .filter(|idx| ids.iter().all(|&id| idx.contains(id as u64)))
            {
                *h = Hnsw {
                    index: Some(idx),
                    keys: ids,
                    generation,
                    dirty: false,
                };
                return Ok(());
            }
        }
        let idx = hnsw::new_index(dim, count)?;
        {
            let mut stmt = tx
                .prepare("SELECT id, embedding FROM chunks")
                .map_err(&sq)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
                .map_err(&sq)?;
            for row in rows {
                let (id, blob) = row.map_err(&sq)?;
                idx.add(id as u64, &blob_to_vec(&blob))
                    .map_err(|e| Error::Index(e.to_string()))?;
            }
        }
        drop(tx);
        drop(conn);
        if !self.read_only {
            hnsw::save(&self.dir, &idx, generation)?;
        }
        *h = Hnsw {
            index: Some(idx),
            keys: ids,
            generation,
            dirty: false,
        };
        Ok(())
    }

    /// Before a write: load the index when that is cheap (it is in memory and only behind, or its
    /// saved files are fresh), so that it can follow the write; else leave it to the next query
    /// or `flush` (one rebuild rather than one per source).
    fn prepare_index(&self) -> Result<()> {
        let mut h = self.hnsw_write();
        let generation = read_generation(&self.conn()).map_err(self.sq())?;
        if h.current(generation) {
            return Ok(());
        }
        if h.index.is_some() || self.index_files_fresh(generation)? {
            self.catch_up(&mut h)?;
        }
        Ok(())
    }

    fn index_files_fresh(&self, generation: u64) -> Result<bool> {
        let (dim, count) = {
            let c = self.conn();
            (
                read_dim(&c).map_err(self.sq())?,
                count_chunks(&c).map_err(self.sq())?,
            )
        };
        Ok(dim
            .is_some_and(|dim| hnsw::state(&self.dir, generation, count, dim) == IndexState::Fresh))
    }

    /// After this handle committed generation `before + 1`: let the in-memory index follow,
    /// when it reflected `before`; else the next query catches it up.
    fn follow(
        &self,
        before: u64,
        removed: &[ChunkId],
        added: &[(ChunkId, &Vec<f32>)],
    ) -> Result<()> {
        let mut h = self.hnsw_write();
        if !h.current(before) {
            return Ok(());
        }
        let r = (|| -> Result<()> {
            let Hnsw {
                index,
                keys,
                generation,
                dirty,
            } = &mut *h;
            let idx = index.as_ref().expect("current");
            for id in removed {
                idx.remove(*id as u64)
                    .map_err(|e| Error::Index(e.to_string()))?;
                keys.remove(id);
            }
            hnsw::reserve(idx, idx.size() + added.len())?;
            for (id, v) in added {
                idx.add(*id as u64, v)
                    .map_err(|e| Error::Index(e.to_string()))?;
                keys.insert(*id);
            }
            *generation = before + 1;
            *dirty = true;
            Ok(())
        })();
        if r.is_err() {
            *h = Hnsw::none();
        }
        r
    }

    /// SQL conditions (over `s` sources, `d` documents, `c` chunks) and their parameters: the
    /// semantics of [`Filter`], in SQLite's terms.
    fn filter_sql(filters: &[Filter]) -> Result<(String, Vec<Value>)> {
        let mut sql = String::new();
        let mut params = Vec::new();
        for f in filters {
            f.check()?;
            match f {
                Filter::Source(glob) => {
                    // GLOB, with `[` written as the class `[[]` so that it stands for itself
                    // (outside a class, `]` already does).
                    let mut g = String::new();
                    for part in glob_parts(glob) {
                        match part {
                            GlobPart::Any => g.push('*'),
                            GlobPart::One => g.push('?'),
                            GlobPart::Lit('[') => g.push_str("[[]"),
                            GlobPart::Lit(c) => g.push(c),
                        }
                    }
                    sql.push_str(" AND s.source GLOB ?");
                    params.push(Value::Text(g));
                }
                Filter::Kind(k) => {
                    sql.push_str(" AND d.kind = ?");
                    params.push(Value::Text(k.clone()));
                }
                Filter::Field(k, v) => {
                    let path = format!("$.\"{k}\"");
                    sql.push_str(
                        " AND (CASE json_type(d.metadata, ?)
                            WHEN 'text' THEN json_extract(d.metadata, ?) = ?
                            WHEN 'integer' THEN CAST(json_extract(d.metadata, ?) AS REAL) = ?
                            WHEN 'real' THEN CAST(json_extract(d.metadata, ?) AS REAL) = ?
                            WHEN 'true' THEN ? = 'true'
                            WHEN 'false' THEN ? = 'false'
                            ELSE 0 END)",
                    );
                    let num = Filter::number(v).map_or(Value::Null, Value::Real);
                    let (p, t) = (Value::Text(path), Value::Text(v.clone()));
                    params.extend([
                        p.clone(),
                        p.clone(),
                        t.clone(),
                        p.clone(),
                        num.clone(),
                        p,
                        num,
                        t.clone(),
                        t,
                    ]);
                }
            }
        }
        Ok((sql, params))
    }

    fn allowed_ids(&self, filters: &[Filter]) -> Result<Vec<ChunkId>> {
        let (cond, p) = Self::filter_sql(filters)?;
        let sql = format!(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id JOIN sources s ON s.id = c.source_id WHERE 1=1{cond}"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(self.sq())?;
        let ids = stmt
            .query_map(params_from_iter(p.iter()), |r| r.get::<_, i64>(0))
            .map_err(self.sq())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sq())?;
        Ok(ids)
    }

    fn exact(&self, query: &[f32], ids: &[ChunkId], k: usize) -> Result<Vec<(ChunkId, f32)>> {
        let mut scored: Vec<(ChunkId, f32)> = self
            .vectors(ids)?
            .into_iter()
            .map(|(id, v)| (id, cosine(query, &v)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        Ok(scored)
    }
}

fn not_kb(dir: &Path) -> Error {
    Error::NotKb {
        path: dir.to_path_buf(),
        why: format!(
            "no {DB_FILE}; build one with `lorag ingest PATH --kb {}`",
            dir.display()
        ),
    }
}

fn check_version(db_path: &Path, v: &str) -> Result<()> {
    if v == SCHEMA_VERSION {
        return Ok(());
    }
    let why = match (v.parse::<u32>(), SCHEMA_VERSION.parse::<u32>()) {
        (Ok(n), Ok(known)) if n > known => format!(
            "made by a newer lorag (schema version {n}; this lorag knows versions up to {known}): upgrade lorag to open it"
        ),
        _ => format!("schema version {v}, this lorag reads {SCHEMA_VERSION}"),
    };
    Err(Error::NotKb {
        path: db_path.to_path_buf(),
        why,
    })
}

pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Words of a free-text query as an FTS5 expression: each word quoted (no operators reach FTS5),
/// any word may match (BM25 ranks by how many and how rare).
pub(crate) fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = query_words(q)
        .into_iter()
        .map(|w| format!("\"{w}\""))
        .collect();
    (!words.is_empty()).then(|| words.join(" OR "))
}

impl Store for SqliteStore {
    fn embedding_model(&self) -> Result<Option<(String, usize)>> {
        let c = self.conn();
        let sq = self.sq();
        Ok(
            match (
                read_meta(&c, "embedding_model").map_err(&sq)?,
                read_dim(&c).map_err(&sq)?,
            ) {
                (Some(m), Some(d)) => Some((m, d)),
                _ => None,
            },
        )
    }

    fn check_embedding_model(&self, model_id: &str, dim: usize) -> Result<()> {
        let _w = (!self.read_only).then(|| lock(&self.writer));
        match self.embedding_model()? {
            Some((m, d)) if m == model_id && d == dim => Ok(()),
            Some((m, _)) => Err(Error::ModelMismatch {
                kb: self.dir.clone(),
                built: m,
                given: model_id.to_string(),
            }),
            // A reader leaves an empty KB as it is: the first writer records its model.
            None if self.read_only => Ok(()),
            None => {
                self.conn()
                    .execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES ('embedding_model', ?1), ('dim', ?2)",
                        params![model_id, dim.to_string()],
                    )
                    .map_err(self.sq())?;
                Ok(())
            }
        }
    }

    fn source_hash(&self, source: &str) -> Result<Option<String>> {
        self.conn()
            .query_row("SELECT hash FROM sources WHERE source=?1", [source], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.sq())
    }

    fn put_source(&self, rec: &SourceRecord, docs: &[DocumentChunks<'_>]) -> Result<usize> {
        self.writable()?;
        let _w = lock(&self.writer);
        let dim = self.dim()?;
        for d in docs {
            assert_eq!(d.chunks.len(), d.vectors.len(), "one vector per chunk");
            for v in d.vectors {
                if let Some(want) = dim {
                    if v.len() != want {
                        return Err(Error::Dimension { want, got: v.len() });
                    }
                }
            }
        }
        self.prepare_index()?;
        let sq = self.sq();
        let now = unix_now();
        let mut conn = self.conn();
        // IMMEDIATE: take the write lock first, so that no other process commits between this
        // transaction's reads and its writes (which SQLite would fail, not wait for).
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sq)?;
        let before = read_generation(&tx).map_err(&sq)?;
        let removed = remove_in(&tx, &rec.source).map_err(&sq)?;
        tx.execute(
            "INSERT INTO sources(source, kind, hash, mtime, size, ingested_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![rec.source, rec.kind, rec.hash, rec.mtime, rec.size as i64, now],
        )
        .map_err(&sq)?;
        let source_id = tx.last_insert_rowid();
        let mut added = Vec::new();
        {
            let mut ins_doc = tx
                .prepare("INSERT INTO documents(source_id, ordinal, kind, title, metadata) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(&sq)?;
            let mut ins_chunk = tx
                .prepare(
                    "INSERT INTO chunks(source_id, document_id, ordinal, text, title, section, page, start, end, tokens, embedding)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(&sq)?;
            for (i, d) in docs.iter().enumerate() {
                let doc = d.document;
                let meta = serde_json::to_string(&doc.metadata).expect("serializable");
                ins_doc
                    .execute(params![source_id, i as i64, doc.kind, doc.title, meta])
                    .map_err(&sq)?;
                let doc_id = tx.last_insert_rowid();
                for (c, v) in d.chunks.iter().zip(d.vectors) {
                    ins_chunk
                        .execute(params![
                            source_id,
                            doc_id,
                            c.ordinal,
                            c.text,
                            doc.title,
                            c.section,
                            c.page,
                            c.start as i64,
                            c.end as i64,
                            c.tokens as i64,
                            vec_to_blob(v)
                        ])
                        .map_err(&sq)?;
                    added.push((tx.last_insert_rowid(), v));
                }
            }
        }
        bump_generation(&tx).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        drop(conn);
        // Committed: let the in-memory index follow.
        self.follow(before, &removed, &added)?;
        Ok(added.len())
    }

    fn remove_source(&self, source: &str) -> Result<bool> {
        self.writable()?;
        let _w = lock(&self.writer);
        self.prepare_index()?;
        let sq = self.sq();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&sq)?;
        let before = read_generation(&tx).map_err(&sq)?;
        let existed: bool = tx
            .query_row(
                "SELECT COUNT(*) FROM sources WHERE source=?1",
                [source],
                |r| r.get::<_, i64>(0),
            )
            .map_err(&sq)?
            > 0;
        if !existed {
            // Nothing changes: no new generation (the transaction rolls back on drop).
            return Ok(false);
        }
        let removed = remove_in(&tx, source).map_err(&sq)?;
        bump_generation(&tx).map_err(&sq)?;
        tx.commit().map_err(&sq)?;
        drop(conn);
        self.follow(before, &removed, &[])?;
        Ok(true)
    }

    fn sources(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT source FROM sources ORDER BY source")
            .map_err(self.sq())?;
        let v = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.sq())?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(self.sq())?;
        Ok(v)
    }

    fn documents(&self) -> Result<Vec<SourceInfo>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT s.source, s.kind, (SELECT COUNT(*) FROM chunks c WHERE c.source_id = s.id), s.ingested_at, s.size
                 FROM sources s ORDER BY s.source",
            )
            .map_err(self.sq())?;
        let v = stmt
            .query_map([], |r| {
                Ok(SourceInfo {
                    source: r.get(0)?,
                    kind: r.get(1)?,
                    chunks: r.get::<_, i64>(2)? as u64,
                    ingested_at: r.get(3)?,
                    size: r.get::<_, i64>(4)? as u64,
                })
            })
            .map_err(self.sq())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sq())?;
        Ok(v)
    }

    fn generation(&self) -> Result<u64> {
        read_generation(&self.conn()).map_err(self.sq())
    }

    fn dense(&self, query: &[f32], k: usize, filters: &[Filter]) -> Result<Vec<(ChunkId, f32)>> {
        // The cheap check: the database's generation (one indexed read) against the index's.
        let (generation, dim) = {
            let c = self.conn();
            (
                read_generation(&c).map_err(self.sq())?,
                read_dim(&c).map_err(self.sq())?,
            )
        };
        let Some(dim) = dim else {
            return Ok(Vec::new());
        };
        if query.len() != dim {
            return Err(Error::Dimension {
                want: dim,
                got: query.len(),
            });
        }
        if k == 0 {
            return Ok(Vec::new());
        }
        let allowed = if filters.is_empty() {
            None
        } else {
            let ids = self.allowed_ids(filters)?;
            if ids.len() <= EXACT_BELOW {
                return self.exact(query, &ids, k);
            }
            Some(ids.into_iter().collect::<HashSet<_>>())
        };
        let h = self.index_at(generation)?;
        let Some(idx) = h.index.as_ref() else {
            return Ok(Vec::new());
        };
        let _slot = self.slots.take();
        let m = match &allowed {
            None => idx.search(query, k),
            Some(set) => idx.filtered_search(query, k, |key| set.contains(&(key as i64))),
        }
        .map_err(|e| Error::Index(e.to_string()))?;
        Ok(m.keys
            .iter()
            .zip(&m.distances)
            .map(|(&key, &d)| (key as i64, 1.0 - d))
            .collect())
    }

    fn lexical(&self, query: &str, k: usize, filters: &[Filter]) -> Result<Vec<(ChunkId, f32)>> {
        let Some(q) = fts_query(query) else {
            return Ok(Vec::new());
        };
        let (cond, p) = Self::filter_sql(filters)?;
        let sql = format!(
            "SELECT f.rowid, -bm25(chunks_fts, 1.0, 0.5, 0.5) FROM chunks_fts f
             JOIN chunks c ON c.id = f.rowid JOIN documents d ON d.id = c.document_id JOIN sources s ON s.id = c.source_id
             WHERE chunks_fts MATCH ?{cond} ORDER BY bm25(chunks_fts, 1.0, 0.5, 0.5) LIMIT {k}"
        );
        let mut args: Vec<&dyn ToSql> = vec![&q];
        args.extend(p.iter().map(|v| v as &dyn ToSql));
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(self.sq())?;
        let v = stmt
            .query_map(args.as_slice(), |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)? as f32))
            })
            .map_err(self.sq())?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sq())?;
        Ok(v)
    }

    fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<StoredChunk>> {
        let conn = self.conn();
        let mut found: HashMap<ChunkId, StoredChunk> = HashMap::with_capacity(ids.len());
        for batch in ids.chunks(BATCH) {
            let sql = format!(
                "SELECT c.id, s.source, d.kind, d.title, c.section, c.page, c.start, c.end, c.text, d.metadata
                 FROM chunks c JOIN documents d ON d.id = c.document_id JOIN sources s ON s.id = c.source_id
                 WHERE c.id IN ({})",
                placeholders(batch.len())
            );
            let mut stmt = conn.prepare(&sql).map_err(self.sq())?;
            let rows = stmt
                .query_map(params_from_iter(batch), |r| {
                    let meta: String = r.get(9)?;
                    Ok(StoredChunk {
                        id: r.get(0)?,
                        source: r.get(1)?,
                        kind: r.get(2)?,
                        title: r.get(3)?,
                        section: r.get(4)?,
                        page: r.get::<_, Option<i64>>(5)?.map(|p| p as u32),
                        start: r.get::<_, i64>(6)? as usize,
                        end: r.get::<_, i64>(7)? as usize,
                        text: r.get(8)?,
                        metadata: serde_json::from_str(&meta).unwrap_or_default(),
                    })
                })
                .map_err(self.sq())?;
            for row in rows {
                let c = row.map_err(self.sq())?;
                found.insert(c.id, c);
            }
        }
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    fn vectors(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkId, Vec<f32>)>> {
        vectors_in(&self.conn(), ids).map_err(self.sq())
    }

    fn stats(&self) -> Result<StoreStats> {
        let count = |sql: &str| -> Result<u64> {
            self.conn()
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(self.sq())
        };
        let model = self.embedding_model()?;
        let bytes = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        Ok(StoreStats {
            backend: "sqlite".into(),
            location: self.location(),
            sources: count("SELECT COUNT(*) FROM sources")?,
            documents: count("SELECT COUNT(*) FROM documents")?,
            chunks: count("SELECT COUNT(*) FROM chunks")?,
            embedding_model: model.as_ref().map(|m| m.0.clone()),
            dim: model.map(|m| m.1),
            index_state: self.index_state()?.as_str().to_string(),
            bytes_on_disk: bytes,
        })
    }

    fn export_source(&self, source: &str) -> Result<Option<ExportedSource>> {
        let sq = self.sq();
        let mut conn = self.conn();
        // One read transaction: the source as one snapshot.
        let tx = conn.transaction().map_err(&sq)?;
        let Some((sid, record)) = tx
            .query_row(
                "SELECT id, source, kind, hash, mtime, size FROM sources WHERE source=?1",
                [source],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        SourceRecord {
                            source: r.get(1)?,
                            kind: r.get(2)?,
                            hash: r.get(3)?,
                            mtime: r.get(4)?,
                            size: r.get::<_, i64>(5)? as u64,
                        },
                    ))
                },
            )
            .optional()
            .map_err(&sq)?
        else {
            return Ok(None);
        };
        let mut documents = Vec::new();
        {
            let mut docs = tx
                .prepare("SELECT id, kind, title, metadata FROM documents WHERE source_id=?1 ORDER BY ordinal, id")
                .map_err(&sq)?;
            let mut chunks = tx
                .prepare(
                    "SELECT ordinal, text, section, page, start, end, tokens, embedding FROM chunks
                     WHERE document_id=?1 ORDER BY ordinal, id",
                )
                .map_err(&sq)?;
            let rows = docs
                .query_map([sid], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .map_err(&sq)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(&sq)?;
            for (did, kind, title, meta) in rows {
                let mut document = Document::new(&record.source, kind, "");
                document.title = title;
                document.metadata = serde_json::from_str(&meta).unwrap_or_default();
                let mut cs = Vec::new();
                let mut vs = Vec::new();
                let rows = chunks
                    .query_map([did], |r| {
                        Ok((
                            Chunk {
                                ordinal: r.get::<_, i64>(0)? as u32,
                                text: r.get(1)?,
                                section: r.get(2)?,
                                page: r.get::<_, Option<i64>>(3)?.map(|p| p as u32),
                                start: r.get::<_, i64>(4)? as usize,
                                end: r.get::<_, i64>(5)? as usize,
                                tokens: r.get::<_, i64>(6)? as usize,
                            },
                            blob_to_vec(&r.get::<_, Vec<u8>>(7)?),
                        ))
                    })
                    .map_err(&sq)?;
                for row in rows {
                    let (c, v) = row.map_err(&sq)?;
                    cs.push(c);
                    vs.push(v);
                }
                documents.push(ExportedDocument {
                    document,
                    chunks: cs,
                    vectors: vs,
                });
            }
        }
        Ok(Some(ExportedSource { record, documents }))
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn flush(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let _w = lock(&self.writer);
        let mut h = self.hnsw_write();
        let generation = {
            let c = self.conn();
            if read_dim(&c).map_err(self.sq())?.is_none() {
                return Ok(());
            }
            read_generation(&c).map_err(self.sq())?
        };
        // Not followed during this session, or changed by another process: catch up (a rebuild
        // saves itself).
        if !h.current(generation) {
            self.catch_up(&mut h)?;
        }
        if h.dirty {
            let idx = h.index.as_ref().expect("dirty implies loaded");
            hnsw::save(&self.dir, idx, h.generation)?;
            h.dirty = false;
        }
        Ok(())
    }
}

fn bump_generation(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'",
        [],
    )
    .map(|_| ())
}

/// Delete a source's chunks, documents and row inside a transaction; returns the chunk ids.
fn remove_in(tx: &rusqlite::Transaction<'_>, source: &str) -> rusqlite::Result<Vec<ChunkId>> {
    let Some(sid) = tx
        .query_row("SELECT id FROM sources WHERE source=?1", [source], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
    else {
        return Ok(Vec::new());
    };
    let ids = tx
        .prepare("SELECT id FROM chunks WHERE source_id=?1")?
        .query_map([sid], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.execute("DELETE FROM chunks WHERE source_id=?1", [sid])?;
    tx.execute("DELETE FROM documents WHERE source_id=?1", [sid])?;
    tx.execute("DELETE FROM sources WHERE id=?1", [sid])?;
    Ok(ids)
}
