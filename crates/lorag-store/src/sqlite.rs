//! The embedded store: SQLite (source of truth) + usearch HNSW (derived).

use crate::hnsw::{self, IndexState};
use crate::{
    blob_to_vec, vec_to_blob, ChunkId, DocumentChunks, Error, Filter, Result, SourceRecord, Store,
    StoreStats, StoredChunk,
};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, ToSql};
use std::cell::RefCell;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

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

/// Index changes made by committed transactions, not yet in the in-memory index.
struct Hnsw {
    index: Option<usearch::Index>,
    dirty: bool,
}

pub struct SqliteStore {
    dir: PathBuf,
    db_path: PathBuf,
    conn: Connection,
    hnsw: RefCell<Hnsw>,
}

impl SqliteStore {
    /// Open the KB in `dir`. With `create`, a missing KB is created; without, it is an error.
    pub fn open(dir: &Path, create: bool) -> Result<Self> {
        let db_path = dir.join(DB_FILE);
        if !db_path.exists() {
            if !create {
                return Err(Error::NotKb {
                    path: dir.to_path_buf(),
                    why: format!(
                        "no {DB_FILE}; build one with `lorag ingest PATH --kb {}`",
                        dir.display()
                    ),
                });
            }
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let sq = |source| Error::Sqlite {
            path: db_path.clone(),
            source,
        };
        let conn = Connection::open(&db_path).map_err(sq)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(sq)?;
        // A file that is not SQLite fails here, on the first read.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| Error::NotKb {
                path: db_path.clone(),
                why: e.to_string(),
            })?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sq)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(sq)?;
        conn.execute_batch(SCHEMA).map_err(sq)?;
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sq)?;
        match version.as_deref() {
            None => {
                conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', ?1), ('generation', '0')", [SCHEMA_VERSION])
                    .map_err(sq)?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(Error::NotKb {
                    path: db_path,
                    why: format!("schema version {v}, this lorag reads {SCHEMA_VERSION}"),
                })
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            db_path,
            conn,
            hnsw: RefCell::new(Hnsw {
                index: None,
                dirty: false,
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn sq(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |source| Error::Sqlite {
            path: self.db_path.clone(),
            source,
        }
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.sq())
    }

    fn generation(&self) -> Result<u64> {
        Ok(self
            .meta("generation")?
            .and_then(|g| g.parse().ok())
            .unwrap_or(0))
    }

    fn count_chunks(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(self.sq())
    }

    fn dim(&self) -> Result<Option<usize>> {
        Ok(self.meta("dim")?.and_then(|d| d.parse().ok()))
    }

    pub(crate) fn index_state(&self) -> Result<IndexState> {
        let Some(dim) = self.dim()? else {
            return Ok(IndexState::Missing);
        };
        // A loaded index always reflects the database (changes follow each commit); `dirty`
        // only means it is not saved yet.
        if self.hnsw.borrow().index.is_some() {
            return Ok(IndexState::Fresh);
        }
        Ok(hnsw::state(
            &self.dir,
            self.generation()?,
            self.count_chunks()?,
            dim,
        ))
    }

    /// Make sure the in-memory index reflects the database: load it when the files are fresh,
    /// else rebuild it from the vectors in SQLite (and save it).
    fn ensure_index(&self) -> Result<()> {
        if self.hnsw.borrow().index.is_some() {
            return Ok(());
        }
        let Some(dim) = self.dim()? else {
            return Ok(());
        };
        let count = self.count_chunks()?;
        let gen = self.generation()?;
        if hnsw::state(&self.dir, gen, count, dim) == IndexState::Fresh {
            if let Some(idx) = hnsw::load(&self.dir, dim, count as usize) {
                self.hnsw.borrow_mut().index = Some(idx);
                return Ok(());
            }
        }
        let idx = self.build_index(dim, count as usize)?;
        hnsw::save(&self.dir, &idx, gen)?;
        let mut h = self.hnsw.borrow_mut();
        h.index = Some(idx);
        h.dirty = false;
        Ok(())
    }

    fn build_index(&self, dim: usize, count: usize) -> Result<usearch::Index> {
        let idx = hnsw::new_index(dim, count)?;
        let mut stmt = self
            .conn
            .prepare("SELECT id, embedding FROM chunks")
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(self.sq())?;
        for row in rows {
            let (id, blob) = row.map_err(self.sq())?;
            idx.add(id as u64, &blob_to_vec(&blob))
                .map_err(|e| Error::Index(e.to_string()))?;
        }
        Ok(idx)
    }

    /// SQL conditions (over `s` sources, `d` documents, `c` chunks) and their parameters.
    fn filter_sql(filters: &[Filter]) -> Result<(String, Vec<String>)> {
        let mut sql = String::new();
        let mut params = Vec::new();
        for f in filters {
            match f {
                Filter::Source(glob) => {
                    sql.push_str(" AND s.source GLOB ?");
                    params.push(glob.clone());
                }
                Filter::Kind(k) => {
                    sql.push_str(" AND d.kind = ?");
                    params.push(k.clone());
                }
                Filter::Field(k, v) => {
                    if k.contains('"') || k.contains('\\') {
                        return Err(Error::Filter(
                            format!("{k}={v}"),
                            "field names cannot hold quotes or backslashes".into(),
                        ));
                    }
                    sql.push_str(" AND CAST(json_extract(d.metadata, ?) AS TEXT) = ?");
                    params.push(format!("$.\"{k}\""));
                    params.push(v.clone());
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
        let mut stmt = self.conn.prepare(&sql).map_err(self.sq())?;
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
    let mut seen = HashSet::new();
    let words: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| seen.insert(w.clone()))
        .map(|w| format!("\"{w}\""))
        .collect();
    (!words.is_empty()).then(|| words.join(" OR "))
}

impl Store for SqliteStore {
    fn embedding_model(&self) -> Result<Option<(String, usize)>> {
        Ok(match (self.meta("embedding_model")?, self.dim()?) {
            (Some(m), Some(d)) => Some((m, d)),
            _ => None,
        })
    }

    fn check_embedding_model(&mut self, model_id: &str, dim: usize) -> Result<()> {
        match self.embedding_model()? {
            Some((m, d)) if m == model_id && d == dim => Ok(()),
            Some((m, _)) => Err(Error::ModelMismatch {
                kb: self.dir.clone(),
                built: m,
                given: model_id.to_string(),
            }),
            None => {
                self.conn
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
        self.conn
            .query_row("SELECT hash FROM sources WHERE source=?1", [source], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.sq())
    }

    fn put_source(&mut self, rec: &SourceRecord, docs: &[DocumentChunks<'_>]) -> Result<usize> {
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
        // Load the index before changing the database, so that it can follow the change.
        let track = self.index_state()? == IndexState::Fresh;
        if track {
            self.ensure_index()?;
        }
        let sq = |source| Error::Sqlite {
            path: self.db_path.clone(),
            source,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let tx = self.conn.transaction().map_err(sq)?;
        let removed = remove_in(&tx, &rec.source).map_err(sq)?;
        tx.execute(
            "INSERT INTO sources(source, kind, hash, mtime, size, ingested_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![rec.source, rec.kind, rec.hash, rec.mtime, rec.size as i64, now],
        )
        .map_err(sq)?;
        let source_id = tx.last_insert_rowid();
        let mut added = Vec::new();
        {
            let mut ins_doc = tx
                .prepare("INSERT INTO documents(source_id, ordinal, kind, title, metadata) VALUES (?1, ?2, ?3, ?4, ?5)")
                .map_err(sq)?;
            let mut ins_chunk = tx
                .prepare(
                    "INSERT INTO chunks(source_id, document_id, ordinal, text, title, section, page, start, end, tokens, embedding)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(sq)?;
            for (i, d) in docs.iter().enumerate() {
                let doc = d.document;
                let meta = serde_json::to_string(&doc.metadata).expect("serializable");
                ins_doc
                    .execute(params![source_id, i as i64, doc.kind, doc.title, meta])
                    .map_err(sq)?;
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
                        .map_err(sq)?;
                    added.push((tx.last_insert_rowid(), v));
                }
            }
        }
        tx.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'",
            [],
        )
        .map_err(sq)?;
        tx.commit().map_err(sq)?;
        // Committed: let the in-memory index follow.
        let mut h = self.hnsw.borrow_mut();
        if let (true, Some(idx)) = (track, h.index.as_ref()) {
            for id in removed {
                idx.remove(id as u64)
                    .map_err(|e| Error::Index(e.to_string()))?;
            }
            idx.reserve(idx.size() + added.len() + 16)
                .map_err(|e| Error::Index(e.to_string()))?;
            for (id, v) in &added {
                idx.add(*id as u64, v)
                    .map_err(|e| Error::Index(e.to_string()))?;
            }
            h.dirty = true;
        } else {
            h.index = None;
        }
        Ok(added.len())
    }

    fn remove_source(&mut self, source: &str) -> Result<bool> {
        let track = self.index_state()? == IndexState::Fresh;
        if track {
            self.ensure_index()?;
        }
        let sq = |source| Error::Sqlite {
            path: self.db_path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sq)?;
        let existed: bool = tx
            .query_row(
                "SELECT COUNT(*) FROM sources WHERE source=?1",
                [source],
                |r| r.get::<_, i64>(0),
            )
            .map_err(sq)?
            > 0;
        let removed = remove_in(&tx, source).map_err(sq)?;
        tx.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'",
            [],
        )
        .map_err(sq)?;
        tx.commit().map_err(sq)?;
        let mut h = self.hnsw.borrow_mut();
        if let (true, Some(idx)) = (track, h.index.as_ref()) {
            for id in removed {
                idx.remove(id as u64)
                    .map_err(|e| Error::Index(e.to_string()))?;
            }
            h.dirty = true;
        } else {
            h.index = None;
        }
        Ok(existed)
    }

    fn sources(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT source FROM sources ORDER BY source")
            .map_err(self.sq())?;
        let v = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.sq())?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(self.sq())?;
        Ok(v)
    }

    fn dense(&self, query: &[f32], k: usize, filters: &[Filter]) -> Result<Vec<(ChunkId, f32)>> {
        let Some(dim) = self.dim()? else {
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
        self.ensure_index()?;
        let h = self.hnsw.borrow();
        let idx = h.index.as_ref().expect("ensured");
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
        args.extend(p.iter().map(|s| s as &dyn ToSql));
        let mut stmt = self.conn.prepare(&sql).map_err(self.sq())?;
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
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.id, s.source, d.kind, d.title, c.section, c.page, c.start, c.end, c.text, d.metadata
                 FROM chunks c JOIN documents d ON d.id = c.document_id JOIN sources s ON s.id = c.source_id WHERE c.id = ?1",
            )
            .map_err(self.sq())?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = stmt
                .query_row([id], |r| {
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
                .optional()
                .map_err(self.sq())?;
            out.extend(row);
        }
        Ok(out)
    }

    fn vectors(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkId, Vec<f32>)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT embedding FROM chunks WHERE id = ?1")
            .map_err(self.sq())?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(b) = stmt
                .query_row([id], |r| r.get::<_, Vec<u8>>(0))
                .optional()
                .map_err(self.sq())?
            {
                out.push((id, blob_to_vec(&b)));
            }
        }
        Ok(out)
    }

    fn stats(&self) -> Result<StoreStats> {
        let count = |sql: &str| -> Result<u64> {
            self.conn
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
            sources: count("SELECT COUNT(*) FROM sources")?,
            documents: count("SELECT COUNT(*) FROM documents")?,
            chunks: count("SELECT COUNT(*) FROM chunks")?,
            embedding_model: model.as_ref().map(|m| m.0.clone()),
            dim: model.map(|m| m.1),
            index_state: self.index_state()?.as_str().to_string(),
            bytes_on_disk: bytes,
        })
    }

    fn flush(&mut self) -> Result<()> {
        if self.dim()?.is_none() {
            return Ok(());
        }
        let dirty = self.hnsw.borrow().dirty;
        if dirty {
            let gen = self.generation()?;
            let h = self.hnsw.borrow();
            hnsw::save(
                &self.dir,
                h.index.as_ref().expect("dirty implies loaded"),
                gen,
            )?;
            drop(h);
            self.hnsw.borrow_mut().dirty = false;
            return Ok(());
        }
        // Not tracked during this session: rebuild if the files do not match the database.
        self.ensure_index()
    }
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
