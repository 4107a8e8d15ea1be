//! The PostgreSQL + pgvector store: a KB is one schema of a database.
//!
//! - Location: `postgres://user@host:port/db?schema=NAME` (or `postgresql://`); the schema
//!   defaults to `lorag`. The password comes from the URL, `PGPASSWORD` or `~/.pgpass`
//!   (`PGPASSFILE`), as libpq finds it; it is never printed: every message shows the URL without it.
//! - Schema: versioned migrations run at open (under an advisory lock, in one transaction); a KB
//!   whose version is newer than this lorag knows is refused. `meta` holds the schema version,
//!   the embedding model and dimension, and the generation (+1 per committed change).
//! - Chunks hold their text, byte offsets, page, section and title; documents their metadata as
//!   JSONB. A generated `tsvector` column (text weighted A, section and title B) under a GIN index
//!   serves lexical search, ranked by BM25 as the embedded store's FTS5 ranks (see [`BM25_SQL`]:
//!   k1 = 1.2, b = 0.75, text 1.0 and section/title 0.5 as FTS5's column weights; the chunk count
//!   and mean length cached per handle for 30 s, and dropped after the handle's own writes); the
//!   vectors live in a `vector(d)` column (typed when the model is recorded) under an HNSW index
//!   (cosine, m = 16, ef_construction = 128, as the embedded index), and each dense query sets
//!   `hnsw.ef_search` (96, or k when larger) for its own transaction.
//! - A source is replaced in one transaction under a per-source advisory lock: two writers of
//!   one source wait for each other, and a killed writer's transaction is rolled back by the
//!   server. `UNIQUE` constraints on the source name and on (document, ordinal) forbid duplicates.
//! - Every operation runs on a pooled connection; when the connection is lost (or the server
//!   rolls the transaction back for a serialisation failure or a deadlock) the operation is
//!   retried on a new connection, at most [`RETRIES`] times, and each retry is reported on stderr.

use crate::{
    glob_parts, query_words, unix_now, Access, ChunkId, DocumentChunks, Error, ExportedDocument,
    ExportedSource, Filter, GlobPart, Result, SourceInfo, SourceRecord, Store, StoreStats,
    StoredChunk,
};
use lorag_core::{Chunk, Document};
use pgvector::Vector;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The schema version this lorag creates and reads; `MIGRATIONS[i]` brings version `i` to `i + 1`.
pub const SCHEMA_VERSION: u32 = 1;
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE sources(
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    hash TEXT NOT NULL,
    mtime BIGINT NOT NULL,
    size BIGINT NOT NULL,
    ingested_at BIGINT NOT NULL
);
CREATE TABLE documents(
    id BIGSERIAL PRIMARY KEY,
    source_id BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    ordinal INT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT,
    metadata JSONB NOT NULL,
    UNIQUE (source_id, ordinal)
);
CREATE TABLE chunks(
    id BIGSERIAL PRIMARY KEY,
    source_id BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    document_id BIGINT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INT NOT NULL,
    text TEXT NOT NULL,
    title TEXT,
    section TEXT,
    page INT,
    start_byte BIGINT NOT NULL,
    end_byte BIGINT NOT NULL,
    tokens INT NOT NULL,
    embedding vector NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, text), 'A')
        || setweight(to_tsvector('english'::regconfig, coalesce(section, '')), 'B')
        || setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'B')
    ) STORED,
    UNIQUE (document_id, ordinal)
);
CREATE INDEX chunks_source ON chunks(source_id);
CREATE INDEX chunks_tsv ON chunks USING gin(tsv);
"#];

/// Times an operation is retried after its connection was lost.
pub const RETRIES: u32 = 3;
/// HNSW parameters, as the embedded index (`hnsw.rs`).
const HNSW_M: u32 = 16;
const HNSW_EF_CONSTRUCTION: u32 = 128;
const EF_SEARCH: usize = 96;
/// Below this many filtered candidates, dense search is exact (as in the embedded store).
const EXACT_BELOW: i64 = 4096;
/// Ids per `= ANY($1)` query when chunks or vectors are read by id.
const BATCH: usize = 5000;
/// Chunks per `INSERT ... SELECT FROM unnest(...)`.
const INSERT_BATCH: usize = 1000;
/// Idle connections kept per handle.
const MAX_IDLE: usize = 16;
/// How long the chunk count and mean chunk length that BM25 needs are reused (another process's
/// writes change them; this handle's own writes drop them at once).
const BM25_STATS_TTL: Duration = Duration::from_secs(30);

/// BM25 over the chunks' tsvectors, as FTS5's `bm25()` ranks in the embedded store (k1 = 1.2,
/// b = 0.75). `$1`: the query's words (space-separated, alphanumeric); `$2`: k; `$3`: the chunk
/// count; `$4`: the mean chunk length in lexemes; `{FROM}`: the chunks table, joined to documents
/// and sources only when a filter needs them. Lexemes come from `to_tsvector('english', words)`,
/// stemmed as the chunks' are; each is alphanumeric, so quoting it needs no escape. A term's
/// document frequency is counted through the GIN index. Its frequency in a chunk comes from
/// `ts_rank` of that one term, which is `w * H(tf) / H(inf)` with `H(n) = 1 + 1/4 + ... + 1/n^2`
/// (`w`: 1.0 for text, 0.5 for section and title, as FTS5's column weights): inverted as
/// `tf = 1 / (pi^2/6 - H) - 1/2`, exact to 0.05 for the first tens of repeats. (Reading the
/// frequencies by unnesting each candidate's tsvector ranked the same and cost 3x the time on
/// 100k chunks.) A chunk's length is its number of distinct lexemes.
const BM25_SQL: &str = "
WITH ql AS MATERIALIZED (
    SELECT DISTINCT lex FROM unnest(tsvector_to_array(to_tsvector('english'::regconfig, $1::text))) AS lex
), dfn AS MATERIALIZED (
    SELECT lex, (SELECT count(*) FROM chunks x WHERE x.tsv @@ ('''' || lex || '''')::tsquery)::float8 AS n
    FROM ql
), df AS MATERIALIZED (
    SELECT ('''' || lex || '''')::tsquery AS q, ln(1.0 + (GREATEST($3::float8, n) - n + 0.5) / (n + 0.5)) AS idf
    FROM dfn
), cand AS MATERIALIZED (
    SELECT c.id, c.tsv FROM {FROM}
    WHERE c.tsv @@ (SELECT string_agg('''' || lex || '''', ' | ')::tsquery FROM ql){cond}
)
SELECT id, sum(idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / GREATEST($4::float8, 1.0))))::float4 AS r
FROM (
    SELECT id, dl, idf, 1.0 / (1.644934 - LEAST(rk / 0.607927, 1.6449)) - 0.5 AS tf
    FROM (
        SELECT cand.id, length(cand.tsv) AS dl, df.idf,
               ts_rank('{0.1, 0.2, 0.5, 1.0}'::float4[], cand.tsv, df.q, 0) AS rk
        FROM cand CROSS JOIN df
    ) m WHERE rk > 0
) t
GROUP BY id ORDER BY r DESC, id LIMIT $2";

/// `postgres://` or `postgresql://`.
pub fn is_postgres(kb: &str) -> bool {
    kb.starts_with("postgres://") || kb.starts_with("postgresql://")
}

/// The URL without its password (for messages).
pub(crate) fn redact(url: &str) -> String {
    match parse(url) {
        Ok(p) => p.target.display(),
        Err(_) => {
            // Not parseable: cut anything that could be a password.
            let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
            let rest = match rest.split_once('@') {
                Some((userinfo, host)) => {
                    format!("{}@{host}", userinfo.split(':').next().unwrap_or(""))
                }
                None => rest.to_string(),
            };
            let rest = match rest.split_once('?') {
                Some((base, _)) => format!("{base}?..."),
                None => rest,
            };
            format!("{scheme}://{rest}")
        }
    }
}

/// Where a KB is: what messages name.
#[derive(Debug, Clone)]
struct Target {
    host: String,
    port: u16,
    db: String,
    user: String,
    schema: String,
}

impl Target {
    fn display(&self) -> String {
        format!(
            "postgres://{}@{}:{}/{}?schema={}",
            self.user, self.host, self.port, self.db, self.schema
        )
    }
}

struct Parsed {
    config: Config,
    target: Target,
}

fn bad_url(url_shown: &str, why: impl std::fmt::Display) -> Error {
    Error::Backend {
        path: PathBuf::from(url_shown),
        message: format!(
            "not a PostgreSQL KB location ({why}); expected postgres://USER@HOST:PORT/DATABASE?schema=NAME"
        ),
    }
}

/// Parse a KB URL: the `schema` parameter is lorag's, the rest goes to the driver. The password
/// is filled from `PGPASSWORD` or the password file when the URL has none.
fn parse(url: &str) -> Result<Parsed> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut schema = None;
    let mut rest = Vec::new();
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("schema", v)) => schema = Some(v.to_string()),
            _ => rest.push(kv),
        }
    }
    let driver_url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    // The shown form never holds the password, even when parsing fails.
    let shown = {
        let (scheme, r) = base.split_once("://").unwrap_or(("postgres", base));
        match r.split_once('@') {
            Some((ui, h)) => format!("{scheme}://{}@{h}", ui.split(':').next().unwrap_or("")),
            None => format!("{scheme}://{r}"),
        }
    };
    let mut config: Config = driver_url
        .parse()
        .map_err(|e: postgres::Error| bad_url(&shown, e))?;
    let schema = schema.unwrap_or_else(|| "lorag".to_string());
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && !schema.starts_with("pg_");
    if !ok {
        return Err(bad_url(
            &shown,
            format!("schema {schema:?}: use lower-case letters, digits and '_', not starting with a digit or pg_"),
        ));
    }
    if config.get_user().is_none() {
        let user = std::env::var("PGUSER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "postgres".into());
        config.user(&user);
    }
    if config.get_hosts().is_empty() {
        config.host(&std::env::var("PGHOST").unwrap_or_else(|_| "localhost".into()));
    }
    let user = config.get_user().unwrap_or_default().to_string();
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or(&user).to_string();
    if config.get_password().is_none() {
        if let Some(pw) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
            config.password(pw);
        } else if let Some(pw) = pgpass(&host, port, &db, &user) {
            config.password(pw);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("lorag");
    }
    Ok(Parsed {
        config,
        target: Target {
            host,
            port,
            db,
            user,
            schema,
        },
    })
}

/// The password for (host, port, db, user) in `PGPASSFILE` or `~/.pgpass`, as libpq reads it:
/// `host:port:database:user:password` lines, `*` matches anything, `\` escapes `:` and `\`; the
/// first matching line wins; a file readable by group or others is ignored (with a warning).
fn pgpass(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let text = std::fs::read_to_string(&path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(&path) {
            if m.permissions().mode() & 0o077 != 0 {
                eprintln!(
                    "warning: password file {} has group or world access; ignored (chmod 0600 it)",
                    path.display()
                );
                return None;
            }
        }
    }
    pgpass_lookup(&text, host, port, db, user)
}

fn pgpass_lookup(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let host_ok = fields[0] == "*"
            || fields[0] == host
            || (fields[0] == "localhost" && (host.starts_with('/') || host == "127.0.0.1"));
        if host_ok
            && (fields[1] == "*" || fields[1] == port)
            && (fields[2] == "*" || fields[2] == db)
            && (fields[3] == "*" || fields[3] == user)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// What an operation failed with: the server or the connection, or one of ours.
enum Fail {
    Pg(postgres::Error),
    Store(Error),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Store(e)
    }
}

type Op<T> = std::result::Result<T, Fail>;

/// A failure that another attempt on a new connection may not meet: the connection was lost, the
/// server is shutting down or restarting, or it rolled the transaction back (serialisation
/// failure, deadlock).
fn transient(e: &postgres::Error, client: &Client) -> bool {
    if e.is_closed() || client.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_FAILURE,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ]
        .contains(code),
        // No SQL state: an I/O error on the socket.
        None => true,
    }
}

/// The server's words: message, detail and hint.
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = db.message().to_string();
            if let Some(d) = db.detail() {
                m.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!("; hint: {h}"));
            }
            m
        }
        None => {
            let mut m = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                let t = s.to_string();
                if !m.contains(&t) {
                    m.push_str(&format!(": {t}"));
                }
                src = s.source();
            }
            m
        }
    }
}

/// The PostgreSQL + pgvector store. One handle may be shared by any number of threads: each
/// operation takes a pooled connection of its own.
pub struct PgStore {
    config: Config,
    target: Target,
    read_only: bool,
    /// `SET` statements every new connection runs (search path, read-only).
    setup: String,
    idle: Mutex<Vec<Client>>,
    /// The KB's dimension, once recorded (it never changes after).
    dim: Mutex<Option<usize>>,
    retries: AtomicU64,
    /// BM25's chunk count and mean chunk length, and when they were read.
    bm25_stats: Mutex<Option<(std::time::Instant, f64, f64)>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.target.display())
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl PgStore {
    /// Open the KB at `url` (see the module docs). [`Access::Create`] creates the schema (and the
    /// `vector` extension when the user may) and runs the migrations it lacks; [`Access::Write`]
    /// wants an existing KB (and upgrades it); [`Access::Read`] runs no DDL and opens every
    /// connection read-only.
    pub fn open(url: &str, access: Access) -> Result<Self> {
        let Parsed { config, target } = parse(url)?;
        let read_only = access == Access::Read;
        let mut store = Self {
            config,
            target,
            read_only,
            setup: String::new(),
            idle: Mutex::new(Vec::new()),
            dim: Mutex::new(None),
            retries: AtomicU64::new(0),
            bm25_stats: Mutex::new(None),
        };
        let mut c = store.connect_raw()?;
        let fail = |e: postgres::Error| store.backend("opening the KB", &e);
        let mut ext_schema: Option<String> = c
            .query_opt(
                "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
                &[],
            )
            .map_err(fail)?
            .map(|r| r.get(0));
        let schema = store.target.schema.clone();
        if access == Access::Read {
            store.check_read(&mut c)?;
        } else {
            if ext_schema.is_none() {
                c.batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
                    .map_err(|e| Error::Backend {
                        path: store.path(),
                        message: format!(
                            "the pgvector extension is not installed in database {db} and this user cannot install it ({}): ask an administrator to run `CREATE EXTENSION vector;` in database {db}",
                            pg_message(&e),
                            db = store.target.db
                        ),
                    })?;
                ext_schema = c
                    .query_opt(
                        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
                        &[],
                    )
                    .map_err(fail)?
                    .map(|r| r.get(0));
            }
            store.migrate(&mut c, access == Access::Create, ext_schema.as_deref())?;
        }
        let mut path = vec![quote_ident(&schema)];
        if let Some(e) = ext_schema.filter(|e| *e != schema) {
            path.push(quote_ident(&e));
        }
        let mut setup = format!("SET search_path TO {};", path.join(", "));
        if read_only {
            setup.push_str(" SET default_transaction_read_only = on;");
        }
        c.batch_execute(&setup).map_err(fail)?;
        store.setup = setup;
        store.give_back(c);
        Ok(store)
    }

    /// The URL without its password.
    pub fn url(&self) -> String {
        self.target.display()
    }

    /// Opened with [`Access::Read`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// How many times an operation of this handle was retried after a lost connection.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(self.target.display())
    }

    fn backend(&self, what: &str, e: &postgres::Error) -> Error {
        Error::Backend {
            path: self.path(),
            message: format!("{what}: {}", pg_message(e)),
        }
    }

    fn not_kb(&self, why: String) -> Error {
        Error::NotKb {
            path: self.path(),
            why,
        }
    }

    /// BM25's corpus figures: the chunk count and the mean chunk length in distinct lexemes
    /// (read again after [`BM25_STATS_TTL`], or after this handle wrote).
    fn bm25_stats(&self) -> Result<(f64, f64)> {
        let mut cached = self.bm25_stats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, n, avgdl)) = *cached {
            if at.elapsed() < BM25_STATS_TTL {
                return Ok((n, avgdl));
            }
        }
        let (n, avgdl) = self.run("reading the lexical statistics", |c| {
            let r = c.query_one(
                "SELECT count(*)::float8, coalesce(avg(length(tsv)), 0)::float8 FROM chunks",
                &[],
            )?;
            Ok((r.get::<_, f64>(0), r.get::<_, f64>(1)))
        })?;
        *cached = Some((std::time::Instant::now(), n, avgdl));
        Ok((n, avgdl))
    }

    fn forget_bm25_stats(&self) {
        *self.bm25_stats.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn connect_raw(&self) -> Result<Client> {
        let t = &self.target;
        self.config.connect(NoTls).map_err(|e| Error::Backend {
            path: self.path(),
            message: format!(
                "cannot connect to PostgreSQL at {}:{} (database {}, user {}): {}. Check that the server is running and accepts connections at {}:{}, that database {} exists, and the user and password (PGPASSWORD or ~/.pgpass)",
                t.host, t.port, t.db, t.user, pg_message(&e), t.host, t.port, t.db
            ),
        })
    }

    fn connect(&self) -> Result<Client> {
        let mut c = self.connect_raw()?;
        c.batch_execute(&self.setup)
            .map_err(|e| self.backend("setting up the connection", &e))?;
        Ok(c)
    }

    fn take(&self) -> Result<Client> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.connect(),
        }
    }

    fn give_back(&self, c: Client) {
        if c.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    /// Run `f` on a pooled connection; when the connection is lost (or the server rolled the
    /// transaction back), run it again on a new one, at most [`RETRIES`] times, saying so on
    /// stderr. `f` must be safe to repeat: every write here is one transaction that replaces.
    fn run<T>(&self, what: &str, mut f: impl FnMut(&mut Client) -> Op<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            let mut client = match self.take() {
                Ok(c) => c,
                Err(e) if attempt > 0 && attempt < RETRIES => {
                    attempt += 1;
                    self.note_retry(what, &e.to_string(), attempt);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match f(&mut client) {
                Ok(v) => {
                    self.give_back(client);
                    return Ok(v);
                }
                Err(Fail::Pg(e)) if transient(&e, &client) && attempt < RETRIES => {
                    drop(client);
                    attempt += 1;
                    self.note_retry(what, &pg_message(&e), attempt);
                }
                Err(Fail::Pg(e)) => {
                    let lost = transient(&e, &client);
                    self.give_back(client);
                    let mut err = self.backend(what, &e);
                    if lost {
                        if let Error::Backend { message, .. } = &mut err {
                            message.push_str(&format!(
                                " (the connection to {}:{} was lost {} times; nothing of this operation was committed; check the server and the network, then run it again)",
                                self.target.host, self.target.port, attempt + 1
                            ));
                        }
                    }
                    return Err(err);
                }
                Err(Fail::Store(e)) => {
                    self.give_back(client);
                    return Err(e);
                }
            }
        }
    }

    fn note_retry(&self, what: &str, why: &str, attempt: u32) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        eprintln!(
            "warning: {}: {what}: lost the connection or the transaction ({why}); retrying ({attempt}/{RETRIES})",
            self.target.display()
        );
        std::thread::sleep(Duration::from_millis(100 << attempt));
    }

    fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly { path: self.path() });
        }
        Ok(())
    }

    fn meta_table(&self) -> String {
        format!("{}.meta", quote_ident(&self.target.schema))
    }

    fn check_version(&self, v: &str) -> Result<u32> {
        let n: u32 = v
            .parse()
            .map_err(|_| self.not_kb(format!("unreadable schema version {v:?}")))?;
        if n > SCHEMA_VERSION {
            return Err(self.not_kb(format!(
                "made by a newer lorag (schema version {n}; this lorag knows versions up to {SCHEMA_VERSION}): upgrade lorag to open it"
            )));
        }
        Ok(n)
    }

    fn missing_kb(&self) -> Error {
        self.not_kb(format!(
            "no lorag knowledge base in schema {} of database {}; build one with `lorag ingest PATH --kb {}`",
            self.target.schema,
            self.target.db,
            self.target.display()
        ))
    }

    /// A reader's check: the KB exists and this lorag reads its version. No DDL.
    fn check_read(&self, c: &mut Client) -> Result<()> {
        let exists: bool = c
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.meta_table()])
            .map_err(|e| self.backend("opening the KB", &e))?
            .get(0);
        if !exists {
            return Err(self.missing_kb());
        }
        let v: Option<String> = c
            .query_opt(
                &format!(
                    "SELECT value FROM {} WHERE key = 'schema_version'",
                    self.meta_table()
                ),
                &[],
            )
            .map_err(|e| self.backend("opening the KB", &e))?
            .map(|r| r.get(0));
        let v = v.ok_or_else(|| self.not_kb("no schema version".into()))?;
        if self.check_version(&v)? < SCHEMA_VERSION {
            return Err(self.not_kb(format!(
                "schema version {v} is older than this lorag's ({SCHEMA_VERSION}); open it once for writing (`lorag ingest`) to upgrade it"
            )));
        }
        Ok(())
    }

    /// Create (with `create`) and upgrade the schema, in one transaction under the schema's
    /// advisory lock, so that concurrent openers never run a migration twice.
    fn migrate(&self, c: &mut Client, create: bool, ext_schema: Option<&str>) -> Result<()> {
        let schema = self.target.schema.clone();
        let fail = |e: postgres::Error| self.backend("creating or upgrading the KB schema", &e);
        let mut tx = c.transaction().map_err(fail)?;
        tx.query(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("lorag-schema:{schema}")],
        )
        .map_err(fail)?;
        let has_meta: bool = tx
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.meta_table()])
            .map_err(fail)?
            .get(0);
        if !has_meta {
            if !create {
                return Err(self.missing_kb());
            }
            let tables: i64 = tx
                .query_one(
                    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
                    &[&schema],
                )
                .map_err(fail)?
                .get(0);
            if tables > 0 {
                return Err(self.not_kb(format!(
                    "schema {schema} exists and holds other tables; give the KB a schema of its own (?schema=NAME)"
                )));
            }
        }
        let mut path = vec![quote_ident(&schema)];
        if let Some(e) = ext_schema.filter(|e| *e != schema) {
            path.push(quote_ident(e));
        }
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {q}; SET LOCAL search_path TO {p};
             CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);",
            q = quote_ident(&schema),
            p = path.join(", ")
        ))
        .map_err(fail)?;
        let v: Option<String> = tx
            .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
            .map_err(fail)?
            .map(|r| r.get(0));
        let from = match v {
            None => {
                tx.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', '0'), ('generation', '0')",
                    &[],
                )
                .map_err(fail)?;
                0
            }
            Some(v) => self.check_version(&v)?,
        };
        for (i, m) in MIGRATIONS.iter().enumerate().skip(from as usize) {
            tx.batch_execute(m).map_err(fail)?;
            tx.execute(
                "UPDATE meta SET value = $1 WHERE key = 'schema_version'",
                &[&(i + 1).to_string()],
            )
            .map_err(fail)?;
        }
        tx.commit().map_err(fail)?;
        Ok(())
    }

    fn dim(&self) -> Result<Option<usize>> {
        if let Some(d) = *self.dim.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(Some(d));
        }
        let d = self.embedding_model()?.map(|m| m.1);
        *self.dim.lock().unwrap_or_else(|e| e.into_inner()) = d;
        Ok(d)
    }

    fn lock_key(&self, source: &str) -> String {
        format!("lorag-source:{}:{source}", self.target.schema)
    }
}

/// Conditions over `s` sources, `d` documents, `c` chunks: the semantics of [`Filter`] in
/// PostgreSQL's terms. Parameters are appended to `params` (numbered after those already there).
fn filter_sql(filters: &[Filter], params: &mut Vec<Box<dyn ToSql + Sync>>) -> Result<String> {
    let mut sql = String::new();
    for f in filters {
        f.check()?;
        match f {
            Filter::Source(glob) => {
                // LIKE with `\` as its escape: `%`, `_` and `\` stand for themselves.
                let mut like = String::new();
                for part in glob_parts(glob) {
                    match part {
                        GlobPart::Any => like.push('%'),
                        GlobPart::One => like.push('_'),
                        GlobPart::Lit(c @ ('%' | '_' | '\\')) => {
                            like.push('\\');
                            like.push(c);
                        }
                        GlobPart::Lit(c) => like.push(c),
                    }
                }
                params.push(Box::new(like));
                sql.push_str(&format!(
                    " AND s.source LIKE ${}::text COLLATE \"C\"",
                    params.len()
                ));
            }
            Filter::Kind(k) => {
                params.push(Box::new(k.clone()));
                sql.push_str(&format!(" AND d.kind = ${}::text", params.len()));
            }
            Filter::Field(k, v) => {
                params.push(Box::new(k.clone()));
                let pk = params.len();
                params.push(Box::new(v.clone()));
                let pv = params.len();
                params.push(Box::new(Filter::number(v)));
                let pn = params.len();
                sql.push_str(&format!(
                    " AND (CASE jsonb_typeof(d.metadata -> ${pk}::text)
                        WHEN 'string' THEN d.metadata ->> ${pk}::text = ${pv}::text
                        WHEN 'number' THEN (d.metadata ->> ${pk}::text)::float8 = ${pn}::float8
                        WHEN 'boolean' THEN d.metadata ->> ${pk}::text = ${pv}::text
                        ELSE false END)"
                ));
            }
        }
    }
    Ok(sql)
}

fn refs(params: &[Box<dyn ToSql + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref()).collect()
}

const JOINS: &str =
    "chunks c JOIN documents d ON d.id = c.document_id JOIN sources s ON s.id = c.source_id";

impl Store for PgStore {
    fn embedding_model(&self) -> Result<Option<(String, usize)>> {
        let rows = self.run("reading the embedding model", |c| {
            Ok(c.query(
                "SELECT key, value FROM meta WHERE key IN ('embedding_model', 'dim')",
                &[],
            )?)
        })?;
        let get = |k: &str| {
            rows.iter()
                .find(|r| r.get::<_, &str>(0) == k)
                .map(|r| r.get::<_, String>(1))
        };
        Ok(
            match (
                get("embedding_model"),
                get("dim").and_then(|d| d.parse().ok()),
            ) {
                (Some(m), Some(d)) => Some((m, d)),
                _ => None,
            },
        )
    }

    fn check_embedding_model(&self, model_id: &str, dim: usize) -> Result<()> {
        let mismatch = |built: String| Error::ModelMismatch {
            kb: self.path(),
            built,
            given: model_id.to_string(),
        };
        match self.embedding_model()? {
            Some((m, d)) if m == model_id && d == dim => return Ok(()),
            Some((m, _)) => return Err(mismatch(m)),
            None if self.read_only => return Ok(()),
            None => {}
        }
        let schema = self.target.schema.clone();
        self.run("recording the embedding model", |c| {
            let mut tx = c.transaction()?;
            tx.query(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&format!("lorag-schema:{schema}")],
            )?;
            let rows = tx.query(
                "SELECT key, value FROM meta WHERE key IN ('embedding_model', 'dim')",
                &[],
            )?;
            let model = rows
                .iter()
                .find(|r| r.get::<_, &str>(0) == "embedding_model")
                .map(|r| r.get::<_, String>(1));
            let d = rows
                .iter()
                .find(|r| r.get::<_, &str>(0) == "dim")
                .and_then(|r| r.get::<_, String>(1).parse::<usize>().ok());
            match (model, d) {
                (Some(m), Some(d)) if m == model_id && d == dim => return Ok(()),
                (Some(m), _) => return Err(Fail::Store(mismatch(m))),
                _ => {}
            }
            tx.execute(
                "INSERT INTO meta(key, value) VALUES ('embedding_model', $1), ('dim', $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&model_id, &dim.to_string()],
            )?;
            tx.batch_execute(&format!(
                "ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dim});
                 CREATE INDEX IF NOT EXISTS chunks_embedding ON chunks
                     USING hnsw (embedding vector_cosine_ops) WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION});"
            ))?;
            tx.commit()?;
            Ok(())
        })
    }

    fn source_hash(&self, source: &str) -> Result<Option<String>> {
        self.run("reading a source", |c| {
            Ok(
                c.query_opt("SELECT hash FROM sources WHERE source = $1", &[&source])?
                    .map(|r| r.get(0)),
            )
        })
    }

    fn put_source(&self, rec: &SourceRecord, docs: &[DocumentChunks<'_>]) -> Result<usize> {
        self.writable()?;
        let dim = self.dim()?;
        for d in docs {
            assert_eq!(d.chunks.len(), d.vectors.len(), "one vector per chunk");
            if let Some(want) = dim {
                if let Some(v) = d.vectors.iter().find(|v| v.len() != want) {
                    return Err(Error::Dimension { want, got: v.len() });
                }
            }
        }
        // Everything converted once, before the (repeatable) transaction.
        struct Rows {
            meta: String,
            ordinals: Vec<i32>,
            texts: Vec<String>,
            sections: Vec<Option<String>>,
            pages: Vec<Option<i32>>,
            starts: Vec<i64>,
            ends: Vec<i64>,
            tokens: Vec<i32>,
            vectors: Vec<Vector>,
        }
        let rows: Vec<Rows> = docs
            .iter()
            .map(|d| Rows {
                meta: serde_json::to_string(&d.document.metadata).expect("serializable"),
                ordinals: d.chunks.iter().map(|c| c.ordinal as i32).collect(),
                texts: d.chunks.iter().map(|c| c.text.clone()).collect(),
                sections: d.chunks.iter().map(|c| c.section.clone()).collect(),
                pages: d.chunks.iter().map(|c| c.page.map(|p| p as i32)).collect(),
                starts: d.chunks.iter().map(|c| c.start as i64).collect(),
                ends: d.chunks.iter().map(|c| c.end as i64).collect(),
                tokens: d.chunks.iter().map(|c| c.tokens as i32).collect(),
                vectors: d.vectors.iter().map(|v| Vector::from(v.clone())).collect(),
            })
            .collect();
        let key = self.lock_key(&rec.source);
        let now = unix_now();
        let written = self.run(&format!("writing {}", rec.source), |c| {
            let mut tx = c.transaction()?;
            tx.query(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&key],
            )?;
            tx.execute("DELETE FROM sources WHERE source = $1", &[&rec.source])?;
            let sid: i64 = tx
                .query_one(
                    "INSERT INTO sources(source, kind, hash, mtime, size, ingested_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[
                        &rec.source,
                        &rec.kind,
                        &rec.hash,
                        &rec.mtime,
                        &(rec.size as i64),
                        &now,
                    ],
                )?
                .get(0);
            let ins_chunks = tx.prepare(
                "INSERT INTO chunks(source_id, document_id, title, ordinal, text, section, page, start_byte, end_byte, tokens, embedding)
                 SELECT $1::int8, $2::int8, $3::text, u.* FROM unnest($4::int4[], $5::text[], $6::text[], $7::int4[], $8::int8[], $9::int8[], $10::int4[], $11::vector[]) AS u",
            )?;
            let mut n = 0;
            for (i, (d, r)) in docs.iter().zip(&rows).enumerate() {
                let doc = d.document;
                let did: i64 = tx
                    .query_one(
                        "INSERT INTO documents(source_id, ordinal, kind, title, metadata)
                         VALUES ($1, $2, $3, $4, $5::text::jsonb) RETURNING id",
                        &[&sid, &(i as i32), &doc.kind, &doc.title, &r.meta],
                    )?
                    .get(0);
                let total = r.ordinals.len();
                let mut at = 0;
                while at < total {
                    let to = (at + INSERT_BATCH).min(total);
                    n += tx.execute(
                        &ins_chunks,
                        &[
                            &sid,
                            &did,
                            &doc.title,
                            &&r.ordinals[at..to],
                            &&r.texts[at..to],
                            &&r.sections[at..to],
                            &&r.pages[at..to],
                            &&r.starts[at..to],
                            &&r.ends[at..to],
                            &&r.tokens[at..to],
                            &&r.vectors[at..to],
                        ],
                    )? as usize;
                    at = to;
                }
            }
            tx.execute(
                "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation'",
                &[],
            )?;
            tx.commit()?;
            Ok(n)
        });
        self.forget_bm25_stats();
        written
    }

    fn remove_source(&self, source: &str) -> Result<bool> {
        self.writable()?;
        let key = self.lock_key(source);
        let removed = self.run(&format!("removing {source}"), |c| {
            let mut tx = c.transaction()?;
            tx.query(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&key],
            )?;
            if tx.execute("DELETE FROM sources WHERE source = $1", &[&source])? == 0 {
                // Nothing changes: no new generation (the transaction rolls back on drop).
                return Ok(false);
            }
            tx.execute(
                "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation'",
                &[],
            )?;
            tx.commit()?;
            Ok(true)
        });
        self.forget_bm25_stats();
        removed
    }

    fn sources(&self) -> Result<Vec<String>> {
        self.run("listing sources", |c| {
            Ok(c.query(
                "SELECT source FROM sources ORDER BY source COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn documents(&self) -> Result<Vec<SourceInfo>> {
        self.run("listing documents", |c| {
            Ok(c.query(
                "SELECT s.source, s.kind, (SELECT count(*) FROM chunks c WHERE c.source_id = s.id), s.ingested_at, s.size
                 FROM sources s ORDER BY s.source COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(|r| SourceInfo {
                source: r.get(0),
                kind: r.get(1),
                chunks: r.get::<_, i64>(2) as u64,
                ingested_at: r.get(3),
                size: r.get::<_, i64>(4) as u64,
            })
            .collect())
        })
    }

    fn generation(&self) -> Result<u64> {
        self.run("reading the generation", |c| {
            Ok(
                c.query_opt("SELECT value FROM meta WHERE key = 'generation'", &[])?
                    .and_then(|r| r.get::<_, String>(0).parse().ok())
                    .unwrap_or(0),
            )
        })
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
        let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        params.push(Box::new(Vector::from(query.to_vec())));
        params.push(Box::new(k as i64));
        let cond = filter_sql(filters, &mut params)?;
        let ef = EF_SEARCH.max(k).min(1000);
        self.run("dense search", |c| {
            let mut tx = c.transaction()?;
            tx.batch_execute(&format!("SET LOCAL hnsw.ef_search = {ef}"))?;
            let p = refs(&params);
            let sql = if filters.is_empty() {
                "SELECT c.id, (1 - (c.embedding <=> $1))::float4 FROM chunks c ORDER BY c.embedding <=> $1 LIMIT $2".to_string()
            } else {
                let n: i64 = tx
                    .query_one(
                        &format!("SELECT count(*) FROM {JOINS} WHERE $1::vector IS NOT NULL AND $2::int8 > 0{cond}"),
                        &p,
                    )?
                    .get(0);
                if n <= EXACT_BELOW {
                    // Exact: an expression the index cannot serve, so every candidate is scored.
                    format!("SELECT c.id, (1 - (c.embedding <=> $1))::float4 FROM {JOINS} WHERE true{cond} ORDER BY (c.embedding <=> $1) + 0, c.id LIMIT $2")
                } else {
                    tx.batch_execute("SET LOCAL hnsw.iterative_scan = strict_order")?;
                    format!("SELECT c.id, (1 - (c.embedding <=> $1))::float4 FROM {JOINS} WHERE true{cond} ORDER BY c.embedding <=> $1 LIMIT $2")
                }
            };
            let rows = tx.query(&sql, &p)?;
            tx.commit()?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, f32>(1)))
                .collect())
        })
    }

    fn lexical(&self, query: &str, k: usize, filters: &[Filter]) -> Result<Vec<(ChunkId, f32)>> {
        let words = query_words(query);
        if words.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let (n, avgdl) = self.bm25_stats()?;
        let mut params: Vec<Box<dyn ToSql + Sync>> = vec![
            Box::new(words.join(" ")),
            Box::new(k as i64),
            Box::new(n),
            Box::new(avgdl),
        ];
        let cond = filter_sql(filters, &mut params)?;
        let from = if cond.is_empty() { "chunks c" } else { JOINS };
        let sql = BM25_SQL.replace("{FROM}", from).replace("{cond}", &cond);
        self.run("lexical search", |c| {
            Ok(c.query(&sql, &refs(&params))?
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, f32>(1)))
                .collect())
        })
    }

    fn chunks(&self, ids: &[ChunkId]) -> Result<Vec<StoredChunk>> {
        let mut found: HashMap<ChunkId, StoredChunk> = HashMap::with_capacity(ids.len());
        for batch in ids.chunks(BATCH) {
            let rows = self.run("reading chunks", |c| {
                Ok(c.query(
                    &format!(
                        "SELECT c.id, s.source, d.kind, d.title, c.section, c.page, c.start_byte, c.end_byte, c.text, d.metadata::text
                         FROM {JOINS} WHERE c.id = ANY($1)"
                    ),
                    &[&batch],
                )?)
            })?;
            for r in rows {
                let meta: String = r.get(9);
                let c = StoredChunk {
                    id: r.get(0),
                    source: r.get(1),
                    kind: r.get(2),
                    title: r.get(3),
                    section: r.get(4),
                    page: r.get::<_, Option<i32>>(5).map(|p| p as u32),
                    start: r.get::<_, i64>(6) as usize,
                    end: r.get::<_, i64>(7) as usize,
                    text: r.get(8),
                    metadata: serde_json::from_str(&meta).unwrap_or_default(),
                };
                found.insert(c.id, c);
            }
        }
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    fn vectors(&self, ids: &[ChunkId]) -> Result<Vec<(ChunkId, Vec<f32>)>> {
        let mut found: HashMap<ChunkId, Vec<f32>> = HashMap::with_capacity(ids.len());
        for batch in ids.chunks(BATCH) {
            let rows = self.run("reading vectors", |c| {
                Ok(c.query(
                    "SELECT id, embedding FROM chunks WHERE id = ANY($1)",
                    &[&batch],
                )?)
            })?;
            for r in rows {
                found.insert(r.get(0), r.get::<_, Vector>(1).to_vec());
            }
        }
        Ok(ids
            .iter()
            .filter_map(|id| found.get(id).map(|v| (*id, v.clone())))
            .collect())
    }

    fn stats(&self) -> Result<StoreStats> {
        let model = self.embedding_model()?;
        let schema = self.target.schema.clone();
        let (sources, documents, chunks, index, bytes) = self.run("reading statistics", |c| {
            let r = c.query_one(
                "SELECT (SELECT count(*) FROM sources), (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks),
                        (SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = 'chunks_embedding'),
                        (SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 FROM pg_class c
                            JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r')",
                &[&schema],
            )?;
            Ok((
                r.get::<_, i64>(0) as u64,
                r.get::<_, i64>(1) as u64,
                r.get::<_, i64>(2) as u64,
                r.get::<_, i64>(3),
                r.get::<_, i64>(4) as u64,
            ))
        })?;
        Ok(StoreStats {
            backend: "postgres".into(),
            location: self.target.display(),
            sources,
            documents,
            chunks,
            embedding_model: model.as_ref().map(|m| m.0.clone()),
            dim: model.map(|m| m.1),
            index_state: if index > 0 { "ready" } else { "missing" }.into(),
            bytes_on_disk: bytes,
        })
    }

    fn flush(&self) -> Result<()> {
        // Nothing derived lives outside the database: the HNSW index is a table index.
        Ok(())
    }

    fn export_source(&self, source: &str) -> Result<Option<ExportedSource>> {
        self.run(&format!("reading {source}"), |c| {
            // One snapshot for the source, its documents and its chunks.
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let Some(s) = tx.query_opt(
                "SELECT id, source, kind, hash, mtime, size FROM sources WHERE source = $1",
                &[&source],
            )?
            else {
                return Ok(None);
            };
            let sid: i64 = s.get(0);
            let record = SourceRecord {
                source: s.get(1),
                kind: s.get(2),
                hash: s.get(3),
                mtime: s.get(4),
                size: s.get::<_, i64>(5) as u64,
            };
            let mut documents = Vec::new();
            let mut index: HashMap<i64, usize> = HashMap::new();
            for r in tx.query(
                "SELECT id, kind, title, metadata::text FROM documents WHERE source_id = $1 ORDER BY ordinal, id",
                &[&sid],
            )? {
                let mut document = Document::new(&record.source, r.get::<_, String>(1), "");
                document.title = r.get(2);
                document.metadata = serde_json::from_str(r.get::<_, &str>(3)).unwrap_or_default();
                index.insert(r.get(0), documents.len());
                documents.push(ExportedDocument {
                    document,
                    chunks: Vec::new(),
                    vectors: Vec::new(),
                });
            }
            for r in tx.query(
                "SELECT document_id, ordinal, text, section, page, start_byte, end_byte, tokens, embedding
                 FROM chunks WHERE source_id = $1 ORDER BY document_id, ordinal, id",
                &[&sid],
            )? {
                let Some(&i) = index.get(&r.get::<_, i64>(0)) else {
                    continue;
                };
                let d = &mut documents[i];
                d.chunks.push(Chunk {
                    ordinal: r.get::<_, i32>(1) as u32,
                    text: r.get(2),
                    section: r.get(3),
                    page: r.get::<_, Option<i32>>(4).map(|p| p as u32),
                    start: r.get::<_, i64>(5) as usize,
                    end: r.get::<_, i64>(6) as usize,
                    tokens: r.get::<_, i32>(7) as usize,
                });
                d.vectors.push(r.get::<_, Vector>(8).to_vec());
            }
            tx.commit()?;
            Ok(Some(ExportedSource { record, documents }))
        })
    }

    fn location(&self) -> String {
        self.target.display()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let p = parse("postgres://ann:s3cret@db.example:6543/kbs?schema=team_a").unwrap();
        assert_eq!(
            p.target.display(),
            "postgres://ann@db.example:6543/kbs?schema=team_a"
        );
        assert_eq!(p.config.get_password(), Some(&b"s3cret"[..]));
        assert!(!redact("postgres://ann:s3cret@db.example:6543/kbs").contains("s3cret"));
        assert!(!redact("postgres://ann:s3cret@[bad").contains("s3cret"));
        let p = parse("postgresql://ann@h/kbs").unwrap();
        assert_eq!(p.target.schema, "lorag");
        assert_eq!(p.target.port, 5432);
        for bad in [
            "postgres://a@h/d?schema=Bad",
            "postgres://a@h/d?schema=pg_x",
        ] {
            let e = parse(bad).err().unwrap().to_string();
            assert!(e.contains("schema"), "{e}");
        }
        let e = parse("postgres://ann:pw@h/d?bogus=1")
            .err()
            .unwrap()
            .to_string();
        assert!(!e.contains("pw@"), "{e}");
    }

    #[test]
    fn pgpass_lines_match_as_libpq_reads_them() {
        let text = "# comment\nother:5432:*:ann:no\nh:*:kbs:ann:pa\\:ss\n*:*:*:*:fallback\n";
        assert_eq!(
            pgpass_lookup(text, "h", 5432, "kbs", "ann").as_deref(),
            Some("pa:ss")
        );
        assert_eq!(
            pgpass_lookup(text, "x", 1, "y", "z").as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_lookup("h:1:d:u:p\n", "h", 2, "d", "u"), None);
    }
}
