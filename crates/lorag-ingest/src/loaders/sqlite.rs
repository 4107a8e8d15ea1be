//! SQLite: `sqlite:PATH?table=T` or `sqlite:PATH?query=SELECT ...` (the value percent-decoded;
//! `+` is kept, it is an operator in SQL). The database is opened read-only, a table name is
//! looked up in the schema and quoted (never spliced into SQL), and a query must be read-only.
//! Each row becomes a record document as for CSV (BLOB values are left out); the fingerprint is
//! the SHA-256 of the rendered rows.

use std::path::PathBuf;
use std::time::Duration;

use lorag_core::Document;
use percent_encoding::percent_decode_str;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::records::record_document;
use crate::{Candidate, Fingerprint, IngestError, LoadedSource};

const USAGE: &str = "expected sqlite:PATH?table=TABLE or sqlite:PATH?query=SELECT...";

/// What to read from which database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqliteSpec {
    pub(crate) path: PathBuf,
    pub(crate) what: What,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum What {
    Table(String),
    Query(String),
}

impl SqliteSpec {
    /// Parses what follows `sqlite:`.
    pub(crate) fn parse(spec: &str) -> Result<Self, String> {
        let (path, params) = spec.split_once('?').ok_or_else(|| USAGE.to_string())?;
        if path.is_empty() {
            return Err(format!("no database path; {USAGE}"));
        }
        let decode = |v: &str| -> Result<String, String> {
            let v = percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| "the percent-encoded value is not UTF-8".to_string())?;
            match v.trim() {
                "" => Err(format!("empty value; {USAGE}")),
                t => Ok(t.to_string()),
            }
        };
        let what = if let Some(t) = params.strip_prefix("table=") {
            What::Table(decode(t)?)
        } else if let Some(q) = params.strip_prefix("query=") {
            What::Query(decode(q)?)
        } else {
            return Err(USAGE.to_string());
        };
        Ok(Self {
            path: PathBuf::from(path),
            what,
        })
    }
}

/// Column names and rows, values as JSON.
struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

pub(super) fn fingerprint(c: &Candidate) -> Result<Fingerprint, IngestError> {
    Ok(read(c)?.fingerprint())
}

pub(super) fn load(c: &Candidate) -> Result<LoadedSource, IngestError> {
    let rows = read(c)?;
    let fingerprint = rows.fingerprint();
    let names = super::records::unique_names(rows.columns.iter().cloned());
    let documents: Vec<Document> = rows
        .rows
        .into_iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let fields = names.iter().cloned().zip(row).collect();
            record_document(&c.source, "sqlite", i + 1, fields)
        })
        .collect();
    Ok(LoadedSource {
        source: c.source.clone(),
        kind: c.kind.clone(),
        fingerprint,
        documents,
    })
}

impl Rows {
    fn fingerprint(&self) -> Fingerprint {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut feed = |bytes: &[u8]| {
            hasher.update(bytes);
            size += bytes.len() as u64;
        };
        feed(Value::from(self.columns.clone()).to_string().as_bytes());
        feed(b"\n");
        for row in &self.rows {
            feed(Value::Array(row.clone()).to_string().as_bytes());
            feed(b"\n");
        }
        Fingerprint {
            hash: hex::encode(hasher.finalize()),
            mtime: 0,
            size,
        }
    }
}

fn read(c: &Candidate) -> Result<Rows, IngestError> {
    let err = |reason: String| IngestError::Sqlite {
        input: c.source.clone(),
        reason,
    };
    let spec = c
        .source
        .strip_prefix("sqlite:")
        .ok_or_else(|| err(USAGE.to_string()))
        .and_then(|s| SqliteSpec::parse(s).map_err(err))?;
    // The candidate's path is the database (the same as in the spec, unless a caller moved it).
    let path = &c.path;
    if !path.exists() {
        return Err(IngestError::NotFound {
            input: c.source.clone(),
            hint: format!(" (no database at {})", path.display()),
        });
    }
    let db_error = |e: rusqlite::Error| {
        let msg = e.to_string();
        if msg.contains("not a database") {
            err(format!("{} is not a SQLite database", path.display()))
        } else {
            err(format!("{}: {msg}", path.display()))
        }
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_error)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(db_error)?;
    let sql = match &spec.what {
        What::Table(name) => {
            let tables = table_names(&conn).map_err(db_error)?;
            let Some(found) = tables.iter().find(|t| t.eq_ignore_ascii_case(name)) else {
                let have = if tables.is_empty() {
                    "it has no tables".to_string()
                } else {
                    format!("it has: {}", tables.join(", "))
                };
                return Err(err(format!(
                    "no table or view named `{name}` in {} ({have})",
                    path.display()
                )));
            };
            format!("SELECT * FROM \"{}\"", found.replace('"', "\"\""))
        }
        What::Query(q) => q.clone(),
    };
    let query_error = |e: rusqlite::Error| match db_error(e) {
        IngestError::Sqlite { input, reason } => IngestError::Sqlite {
            input,
            reason: format!("query failed: {reason}"),
        },
        other => other,
    };
    let mut stmt = conn.prepare(&sql).map_err(query_error)?;
    if !stmt.readonly() {
        return Err(err(
            "only read-only queries (SELECT) can be ingested".to_string()
        ));
    }
    // rusqlite panics on a column name that is not UTF-8 (a corrupt database can hold one).
    let columns: Vec<String> =
        super::pdf::catch_quiet(|| stmt.column_names().iter().map(|s| s.to_string()).collect())
            .map_err(|_| {
                err(format!(
                    "a column name in {} is not valid UTF-8 (a corrupt database?)",
                    path.display()
                ))
            })?;
    let mut rows = Vec::new();
    let mut cursor = stmt.query([]).map_err(query_error)?;
    while let Some(row) = cursor.next().map_err(query_error)? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let value = match row.get_ref(i).map_err(query_error)? {
                ValueRef::Null | ValueRef::Blob(_) => Value::Null,
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(x) => Value::from(x),
                ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
            };
            values.push(value);
        }
        rows.push(values);
    }
    Ok(Rows { columns, rows })
}

fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') \
         AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    names.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let s = SqliteSpec::parse("kb.db?table=my%20notes").expect("parses");
        assert_eq!(s.path, PathBuf::from("kb.db"));
        assert_eq!(s.what, What::Table("my notes".into()));
        let s = SqliteSpec::parse("a/b.db?query=SELECT%20a+b%20FROM%20t%20WHERE%20x='?'")
            .expect("parses");
        assert_eq!(s.what, What::Query("SELECT a+b FROM t WHERE x='?'".into()));
        for bad in [
            "kb.db",
            "?table=t",
            "kb.db?name=t",
            "kb.db?table=",
            "kb.db?query=%20",
        ] {
            assert!(SqliteSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
