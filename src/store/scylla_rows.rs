//! The CQL row store: ScyllaDB (or Apache Cassandra 4/5) through the `scylla` driver.
//!
//! Each SQL table is a CQL table in the proxy's keyspace; the first key column is the
//! partition key and the rest are clustering columns. The catalog of tables lives in the
//! keyspace too (`vectorgate_catalog`), so every proxy on the cluster sees the same
//! tables. Rows behind a search are fetched with concurrent prepared single-partition
//! queries (token-aware routing); full scans split the token ring and page. The CQL is
//! portable: no `USING TIMEOUT`, no `BYPASS CACHE`; timeouts are client-side.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use parking_lot::Mutex;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlDate, CqlTimestamp, CqlValue, Row as CqlRow};

use super::{OutboxEntry, Row, RowStore, TableChanges, TableDef, WriteMode};
use crate::error::{Error, Result};
use crate::types::{ColumnType, Value};

mod outbox;
pub use outbox::{MARK_TABLE, OLD_OUTBOX_TABLE, OUTBOX_TABLE};

pub const CATALOG_TABLE: &str = "vectorgate_catalog";
/// Sequences: definition and state, the state changed only by lightweight transactions.
pub const SEQUENCES_TABLE: &str = "vectorgate_sequences";
/// The catalog version is the row of [`SEQUENCES_TABLE`] whose name is a NUL character
/// (which no SQL name can hold): its `last` is increased by a lightweight transaction on every
/// change to the catalog (tables, sequences), so no change is lost to another's.
const VERSION_ROW: &str = "\u{0}";
/// How long a proxy uses the catalog it read before asking for the version again (it
/// asks four times as often in the background), and so how long a change to the
/// catalog waits before it returns: by then every running proxy has read the new
/// version, or will before its next statement.
pub const CATALOG_LEASE: Duration = Duration::from_millis(100);
/// Holders of unique values, one partition per (constraint, value), changed only by
/// lightweight transactions.
pub const UNIQUE_TABLE: &str = "vectorgate_unique";
/// The schemas CREATE SCHEMA made, by name.
pub const SCHEMAS_TABLE: &str = "vectorgate_schemas";
/// The databases CREATE DATABASE made, by name (in the keyspace of the database the
/// proxy was started for).
pub const DATABASES_TABLE: &str = "vectorgate_databases";

fn names_table(kind: super::Names) -> &'static str {
    match kind {
        super::Names::Schema => SCHEMAS_TABLE,
        super::Names::Database => DATABASES_TABLE,
    }
}
/// The commit log of transactions: a transaction's changes are written here in chunks
/// (`seq` 1, 2, ...) before its commit marker (`seq` 0); the marker is the commit point.
/// Then the rows are written and the partition deleted. A marked partition found later
/// was interrupted: [`ScyllaRows::recover`] writes its rows again; an unmarked one older
/// than [`STALE_LOG`] never committed and is removed. Removed logs are tombstones that
/// every recovery scan reads until compaction drops them (after `gc_grace_seconds`, kept
/// short: a removed log that came back would only be applied again, which changes
/// nothing, its writes carrying their commit's time).
pub const TXLOG_TABLE: &str = "vectorgate_txlog";
/// How old an unmarked commit log must be before it counts as abandoned.
const STALE_LOG: Duration = Duration::from_secs(600);
/// About how many bytes of changes go into one commit log chunk.
const LOG_CHUNK_BYTES: usize = 256 * 1024;
const STORE: &str = "row store";
/// How many single-partition requests run at once for one statement.
const CONCURRENCY: usize = 64;
/// How many statements on one partition (the outbox's rows of one write, up to 64 KiB
/// each) go into one unlogged batch: one request and one mutation for the store, of at
/// most 512 KiB (well under the mutation limit of a commit log segment, half of 32 MiB).
const PARTITION_BATCH: usize = 8;
/// How many keys one existence check asks for at once (`key IN ?`): ScyllaDB refuses
/// more than 100 partition key restrictions in one query by default.
const KEYS_PER_READ: usize = 100;
/// How many token-range scans run at once for one full scan.
const SCAN_SPLITS: i64 = 8;

#[derive(Debug, Clone)]
pub enum Replication {
    /// SimpleStrategy with this replication factor.
    Simple(u32),
    /// NetworkTopologyStrategy: replicas per datacenter.
    Network(Vec<(String, u32)>),
}

impl Replication {
    /// `simple:1` (or a bare number), or `dc1:3,dc2:2`.
    pub fn parse(s: &str) -> std::result::Result<Replication, String> {
        let s = s.trim();
        if let Ok(n) = s.parse::<u32>() {
            return Ok(Replication::Simple(n));
        }
        if let Some(n) = s
            .strip_prefix("simple:")
            .or_else(|| s.strip_prefix("SimpleStrategy:"))
        {
            return n
                .parse()
                .map(Replication::Simple)
                .map_err(|_| format!("bad replication factor in \"{s}\""));
        }
        let mut dcs = Vec::new();
        for part in s.split(',') {
            let (dc, n) = part
                .split_once(':')
                .ok_or_else(|| format!("expected dc:factor in \"{part}\""))?;
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| format!("bad replication factor in \"{part}\""))?;
            dcs.push((dc.trim().to_string(), n));
        }
        if dcs.is_empty() {
            return Err("empty replication setting".into());
        }
        Ok(Replication::Network(dcs))
    }

    fn cql(&self) -> String {
        match self {
            Replication::Simple(n) => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {n}}}")
            }
            Replication::Network(dcs) => {
                let parts: Vec<String> = dcs
                    .iter()
                    .map(|(dc, n)| format!("'{}': {n}", dc.replace('\'', "''")))
                    .collect();
                format!(
                    "{{'class': 'NetworkTopologyStrategy', {}}}",
                    parts.join(", ")
                )
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    pub hosts: Vec<String>,
    pub keyspace: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub replication: Replication,
    pub timeout: Duration,
}

pub struct ScyllaRows {
    session: Arc<Session>,
    ks: String,
    prepared: Mutex<HashMap<String, PreparedStatement>>,
    /// This process among the cluster's writers of outbox entries.
    writer: i64,
    /// Each table's outbox low mark as this process reads from it, and as it last read or
    /// stored it: a mark only moves forward, so one older than the stored one only makes
    /// a reader start at an earlier bucket (see `outbox::mark`).
    marks: Mutex<HashMap<String, (i64, i64)>>,
}

/// Run a CQL request, again when Cassandra answers that its prepared statement
/// is not prepared. A schema change's invalidation can evict a statement just
/// (re)prepared; the driver re-prepares once, and a second eviction reaches us.
/// Such a request did not run, so running it again is safe for writes too.
async fn unprepared_retry<T, E, F, Fut>(mut request: F) -> std::result::Result<T, E>
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let mut attempt = 0u32;
    loop {
        match request().await {
            Err(e) if attempt < UNPREPARED_RETRIES && format!("{e:?}").contains("Unprepared") => {
                attempt += 1;
                tracing::debug!(
                    attempt,
                    "a CQL statement was evicted before it ran; retrying"
                );
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            }
            r => return r,
        }
    }
}

/// How many times [`unprepared_retry`] runs a request again.
const UNPREPARED_RETRIES: u32 = 4;

/// Map a driver error to the proxy's error, naming the row store.
fn cql_err(e: impl std::fmt::Debug + std::fmt::Display) -> Error {
    let dbg = format!("{e:?}");
    let msg = e.to_string();
    if dbg.contains("RequestTimeout") || dbg.contains("ReadTimeout") || dbg.contains("WriteTimeout")
    {
        Error::Timeout {
            store: STORE,
            message: "the request timed out".into(),
        }
    } else if dbg.contains("ConnectionPool")
        || dbg.contains("BrokenConnection")
        || dbg.contains("EmptyPlan")
        || dbg.contains("Unavailable")
        || dbg.contains("ConnectionRefused")
        || dbg.contains("IoError")
    {
        Error::Unavailable {
            store: STORE,
            message: "cannot reach the CQL cluster".into(),
        }
    } else {
        tracing::warn!(error = %msg, "row store error");
        Error::Backend {
            store: STORE,
            message: first_line(&msg),
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

fn q(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn cql_type(ty: &ColumnType, list_vectors: bool) -> String {
    match ty {
        ColumnType::SmallInt => "smallint".into(),
        ColumnType::Int => "int".into(),
        ColumnType::BigInt => "bigint".into(),
        ColumnType::Real => "float".into(),
        ColumnType::Double => "double".into(),
        ColumnType::Bool => "boolean".into(),
        ColumnType::Text => "text".into(),
        ColumnType::Uuid => "uuid".into(),
        ColumnType::Timestamp | ColumnType::TimestampTz => "timestamp".into(),
        ColumnType::Date => "date".into(),
        ColumnType::TextArray => "list<text>".into(),
        ColumnType::IntArray => "list<int>".into(),
        ColumnType::BigIntArray => "list<bigint>".into(),
        // Postgres' array text (`{1.5,NULL}`): a CQL list can hold no NULL element and
        // keeps no empty list, an array of these types can.
        ColumnType::Array(_) => "text".into(),
        ColumnType::Bytea => "blob".into(),
        ColumnType::Numeric(..) => "decimal".into(),
        // A sparsevec is its text (`{1:1.5}/5`).
        // A bit string is its `0`s and `1`s.
        ColumnType::Jsonb
        | ColumnType::Json
        | ColumnType::SparseVec(_)
        | ColumnType::Bit(_)
        | ColumnType::VarBit(_) => "text".into(),
        // A halfvec's elements are the f32s they round to (CQL has no half float).
        ColumnType::Vector(0) | ColumnType::HalfVec(0) => "list<float>".into(),
        ColumnType::Vector(_) | ColumnType::HalfVec(_) if list_vectors => "list<float>".into(),
        ColumnType::Vector(n) | ColumnType::HalfVec(n) => format!("vector<float, {n}>"),
    }
}

const EPOCH_DAY: i64 = 1 << 31;

/// Whether a lightweight transaction was applied: the first column of its answer
/// (the others, when it was not, are the row as it is).
fn applied(res: scylla::response::query_result::QueryResult) -> Result<bool> {
    let rows = res.into_rows_result().map_err(cql_err)?;
    let row = rows.maybe_first_row::<CqlRow>().map_err(cql_err)?;
    Ok(match row.as_ref().and_then(|r| r.columns.first()) {
        Some(Some(CqlValue::Boolean(b))) => *b,
        _ => true,
    })
}

/// A value in its CQL form; `None` is NULL.
pub fn to_cql(v: &Value, ty: &ColumnType, list_vectors: bool) -> Result<Option<CqlValue>> {
    Ok(Some(match (v, ty) {
        (Value::Null, _) => return Ok(None),
        (Value::Int(i), ColumnType::SmallInt) => CqlValue::SmallInt(*i as i16),
        (Value::Int(i), ColumnType::Int) => CqlValue::Int(*i as i32),
        (Value::Int(i), _) => CqlValue::BigInt(*i),
        (Value::Float(f), ColumnType::Real) => CqlValue::Float(*f as f32),
        (Value::Float(f), _) => CqlValue::Double(*f),
        (Value::Bool(b), _) => CqlValue::Boolean(*b),
        (Value::Text(s), _) => CqlValue::Text(s.clone()),
        (Value::Uuid(u), _) => CqlValue::Uuid(*u),
        (Value::Timestamp(t), _) => CqlValue::Timestamp(CqlTimestamp(t.div_euclid(1000))),
        (Value::Date(d), _) => CqlValue::Date(CqlDate((*d as i64 + EPOCH_DAY) as u32)),
        (Value::TextArray(a), _) => CqlValue::List(
            a.iter()
                .map(|x| {
                    x.clone().map(CqlValue::Text).ok_or_else(|| {
                        Error::NotNullViolation("a CQL list cannot hold NULL elements".into())
                    })
                })
                .collect::<Result<_>>()?,
        ),
        (Value::IntArray(a), ty) => CqlValue::List(
            a.iter()
                .map(|x| {
                    x.map(|i| {
                        if matches!(ty, ColumnType::IntArray) {
                            CqlValue::Int(i as i32)
                        } else {
                            CqlValue::BigInt(i)
                        }
                    })
                    .ok_or_else(|| {
                        Error::NotNullViolation("a CQL list cannot hold NULL elements".into())
                    })
                })
                .collect::<Result<_>>()?,
        ),
        (Value::Array(a), ty) => {
            let element = ty.element().unwrap_or(ColumnType::Text);
            CqlValue::Text(crate::types::array_value_text(a, &element))
        }
        (Value::Bytes(b), _) => CqlValue::Blob(b.clone()),
        (Value::Decimal(u, sc), _) => CqlValue::Decimal(
            scylla::value::CqlDecimal::from_signed_be_bytes_and_exponent(
                u.to_be_bytes().to_vec(),
                *sc as i32,
            ),
        ),
        (Value::Vector(v), ty) => {
            let items = v.iter().map(|x| CqlValue::Float(*x)).collect();
            if list_vectors || ty.vector_dims() == Some(0) {
                CqlValue::List(items)
            } else {
                CqlValue::Vector(items)
            }
        }
    }))
}

/// A CQL value read back as the column's type.
pub fn from_cql(v: Option<CqlValue>, ty: &ColumnType) -> Result<Value> {
    let Some(v) = v else { return Ok(Value::Null) };
    let bad = |v: &CqlValue| {
        Error::row_store(format!(
            "unexpected CQL value {v:?} for a {} column",
            ty.sql_name()
        ))
    };
    Ok(match v {
        CqlValue::Text(s) if matches!(ty, ColumnType::Array(_)) => {
            crate::types::coerce(Value::Text(s), ty)?
        }
        CqlValue::SmallInt(i) => Value::Int(i as i64),
        CqlValue::TinyInt(i) => Value::Int(i as i64),
        CqlValue::Int(i) => Value::Int(i as i64),
        CqlValue::BigInt(i) => Value::Int(i),
        CqlValue::Float(f) => Value::Float(f as f64),
        CqlValue::Double(f) => Value::Float(f),
        CqlValue::Boolean(b) => Value::Bool(b),
        CqlValue::Text(s) | CqlValue::Ascii(s) => Value::Text(s),
        CqlValue::Uuid(u) => Value::Uuid(u),
        CqlValue::Timeuuid(u) => Value::Uuid(u.into()),
        CqlValue::Timestamp(t) => Value::Timestamp(t.0.saturating_mul(1000)),
        CqlValue::Date(d) => Value::Date((d.0 as i64 - EPOCH_DAY) as i32),
        CqlValue::Blob(b) => Value::Bytes(b),
        CqlValue::Decimal(d) => {
            let (bytes, scale) = d.as_signed_be_bytes_slice_and_exponent();
            let mut buf = [if bytes.first().is_some_and(|b| b & 0x80 != 0) {
                0xff
            } else {
                0
            }; 16];
            if bytes.len() > 16 {
                return Err(Error::NumericOutOfRange(
                    "numeric value out of range".into(),
                ));
            }
            buf[16 - bytes.len()..].copy_from_slice(bytes);
            let unscaled = i128::from_be_bytes(buf);
            let target = match ty {
                ColumnType::Numeric(_, s) => *s,
                _ => scale as i8,
            };
            crate::types::coerce(
                Value::Decimal(unscaled, scale as i8),
                &ColumnType::Numeric(38, target),
            )?
        }
        CqlValue::List(items) | CqlValue::Vector(items) | CqlValue::Set(items) => match ty {
            ColumnType::Vector(_) | ColumnType::HalfVec(_) => Value::Vector(
                items
                    .into_iter()
                    .map(|x| match x {
                        CqlValue::Float(f) => Ok(f),
                        CqlValue::Double(f) => Ok(f as f32),
                        other => Err(bad(&other)),
                    })
                    .collect::<Result<_>>()?,
            ),
            ColumnType::TextArray => Value::TextArray(
                items
                    .into_iter()
                    .map(|x| match x {
                        CqlValue::Text(s) | CqlValue::Ascii(s) => Ok(Some(s)),
                        other => Err(bad(&other)),
                    })
                    .collect::<Result<_>>()?,
            ),
            _ => Value::IntArray(
                items
                    .into_iter()
                    .map(|x| match x {
                        CqlValue::Int(i) => Ok(Some(i as i64)),
                        CqlValue::BigInt(i) => Ok(Some(i)),
                        CqlValue::SmallInt(i) => Ok(Some(i as i64)),
                        other => Err(bad(&other)),
                    })
                    .collect::<Result<_>>()?,
            ),
        },
        other => return Err(bad(&other)),
    })
}

impl ScyllaRows {
    pub async fn connect(cfg: &ScyllaConfig) -> Result<ScyllaRows> {
        let profile = ExecutionProfile::builder()
            .request_timeout(Some(cfg.timeout))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&cfg.hosts)
            .connection_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .default_execution_profile_handle(profile.into_handle());
        if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
            builder = builder.user(u, p);
        }
        let session = builder.build().await.map_err(|e| Error::Unavailable {
            store: STORE,
            message: format!(
                "cannot connect to the CQL cluster at {}: {}",
                cfg.hosts.join(","),
                first_line(&e.to_string())
            ),
        })?;
        let ks = cfg.keyspace.clone();
        let rows = ScyllaRows {
            session: Arc::new(session),
            ks: ks.clone(),
            prepared: Mutex::new(HashMap::new()),
            writer: uuid::Uuid::new_v4().as_u64_pair().0 as i64,
            marks: Mutex::new(HashMap::new()),
        };
        // Schema changes are slow (each waits for agreement across the cluster): only
        // what is missing is created.
        let existing = rows.existing_tables().await?;
        if existing.is_empty() {
            rows.ddl(&format!(
                "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {}",
                q(&ks),
                cfg.replication.cql()
            ))
            .await?;
        }
        let tables = [
            (CATALOG_TABLE, "(name text PRIMARY KEY, def text)", ""),
            (OUTBOX_TABLE, outbox::OUTBOX_COLUMNS, outbox::OUTBOX_WITH),
            (MARK_TABLE, outbox::MARK_COLUMNS, ""),
            (
                TXLOG_TABLE,
                "(id uuid, seq int, tbl text, ts bigint, data blob, PRIMARY KEY (id, seq))",
                " WITH gc_grace_seconds = 300",
            ),
            (
                SEQUENCES_TABLE,
                "(name text PRIMARY KEY, def text, last bigint, called boolean)",
                "",
            ),
            (
                UNIQUE_TABLE,
                "(space text, val blob, key blob, at bigint, PRIMARY KEY ((space, val)))",
                "",
            ),
            (SCHEMAS_TABLE, "(name text PRIMARY KEY)", ""),
            (DATABASES_TABLE, "(name text PRIMARY KEY)", ""),
        ];
        for (name, columns, with) in tables {
            if !existing.iter().any(|t| t == name) {
                rows.ddl(&format!(
                    "CREATE TABLE IF NOT EXISTS {}.{} {columns}{with}",
                    q(&ks),
                    q(name)
                ))
                .await?;
            }
        }
        rows.outbox_migrate(&existing).await?;
        Ok(rows)
    }

    /// The tables of the keyspace (none: it does not exist yet).
    async fn existing_tables(&self) -> Result<Vec<String>> {
        let res = self
            .session
            .query_unpaged(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
                (self.ks.as_str(),),
            )
            .await
            .map_err(cql_err)?;
        let rows = res.into_rows_result().map_err(cql_err)?;
        rows.rows::<(String,)>()
            .map_err(cql_err)?
            .map(|r| r.map(|(t,)| t).map_err(cql_err))
            .collect()
    }

    /// The catalog's version: 0 before its first change.
    async fn read_catalog_version(&self) -> Result<i64> {
        let stmt = self
            .prepare(format!(
                "SELECT last FROM {} WHERE name = ?",
                self.sequences()
            ))
            .await?;
        let res = self
            .session
            .execute_unpaged(&stmt, (VERSION_ROW,))
            .await
            .map_err(cql_err)?;
        let rows = res.into_rows_result().map_err(cql_err)?;
        Ok(rows
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(cql_err)?
            .and_then(|(v,)| v)
            .unwrap_or(0))
    }

    /// Announce a change to the catalog (made before this is called): the version goes
    /// up by a compare-and-swap, then this waits out [`CATALOG_LEASE`], after which
    /// every other running proxy uses the new catalog.
    async fn catalog_changed(&self) -> Result<()> {
        let table = self.sequences();
        loop {
            let old = self.read_catalog_version().await?;
            let res = if old == 0 {
                self.session
                    .query_unpaged(
                        format!("INSERT INTO {table} (name, last) VALUES (?, 1) IF NOT EXISTS"),
                        (VERSION_ROW,),
                    )
                    .await
            } else {
                self.session
                    .query_unpaged(
                        format!("UPDATE {table} SET last = ? WHERE name = ? IF last = ?"),
                        (old + 1, VERSION_ROW, old),
                    )
                    .await
            }
            .map_err(cql_err)?;
            if applied(res)? {
                break;
            }
        }
        tokio::time::sleep(CATALOG_LEASE).await;
        Ok(())
    }

    /// Replace a table's catalog entry (announced by the caller).
    async fn write_def(&self, def: &TableDef) -> Result<()> {
        let json = serde_json::to_string(def).map_err(Error::internal)?;
        self.outbox_open(def).await?;
        self.session
            .query_unpaged(
                format!(
                    "UPDATE {}.{} SET def = ? WHERE name = ?",
                    q(&self.ks),
                    q(CATALOG_TABLE)
                ),
                (json.as_str(), def.name.as_str()),
            )
            .await
            .map_err(cql_err)?;
        Ok(())
    }

    fn sequences(&self) -> String {
        format!("{}.{}", q(&self.ks), q(SEQUENCES_TABLE))
    }

    /// The statements that write a transaction's changes to the rows (the outbox
    /// entries are written before them); with `at`, stamped with that write time, so
    /// that writing them again later never undoes a newer write.
    async fn change_statements(
        &self,
        changes: &[TableChanges],
        at: Option<i64>,
    ) -> Result<Vec<(PreparedStatement, Vec<Option<CqlValue>>)>> {
        let using = if at.is_some() {
            " USING TIMESTAMP ?"
        } else {
            ""
        };
        let stamp = at.map(|t| Some(CqlValue::BigInt(t)));
        let mut out = Vec::new();
        for c in changes {
            let def = &c.def;
            let marks = vec!["?"; def.columns.len()].join(", ");
            let insert = self
                .prepare(format!(
                    "INSERT INTO {} ({}) VALUES ({marks}){using}",
                    self.table(def),
                    Self::columns(def)
                ))
                .await?;
            let delete = self
                .prepare(format!(
                    "DELETE FROM {}{using} WHERE {}",
                    self.table(def),
                    Self::key_where(def)
                ))
                .await?;
            for row in c.new.iter().chain(&c.put) {
                let mut values = Self::row_values(def, row)?;
                values.extend(stamp.clone());
                out.push((insert.clone(), values));
            }
            for key in &c.delete {
                let mut values: Vec<Option<CqlValue>> = stamp.clone().into_iter().collect();
                values.extend(Self::key_values(def, key)?);
                out.push((delete.clone(), values));
            }
        }
        Ok(out)
    }

    /// Run statements concurrently.
    async fn run_all(&self, stmts: Vec<(PreparedStatement, Vec<Option<CqlValue>>)>) -> Result<()> {
        let session = self.session.clone();
        futures::stream::iter(stmts.into_iter().map(move |(stmt, v)| {
            let session = session.clone();
            async move {
                unprepared_retry(|| session.execute_unpaged(&stmt, &v))
                    .await
                    .map_err(cql_err)
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
        Ok(())
    }

    /// Write a committed transaction's outbox entries, then its rows.
    async fn apply(&self, changes: &[TableChanges], ts: i64, at: Option<i64>) -> Result<()> {
        for c in changes {
            self.outbox_add(&c.def, &c.keys(), ts).await?;
        }
        let mut stmts = self.change_statements(changes, at).await?;
        let rest = stmts.split_off(stmts.len() / 2);
        self.run_all(stmts).await?;
        super::commit_point(true);
        if super::FAIL_AFTER_COMMIT_POINT.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Unavailable {
                store: STORE,
                message: "fault injection: the row store went away".into(),
            });
        }
        self.run_all(rest).await
    }

    async fn delete_log(&self, id: uuid::Uuid) -> Result<()> {
        self.session
            .query_unpaged(
                format!(
                    "DELETE FROM {}.{} WHERE id = ?",
                    q(&self.ks),
                    q(TXLOG_TABLE)
                ),
                (id,),
            )
            .await
            .map_err(cql_err)?;
        Ok(())
    }

    async fn ddl(&self, cql: &str) -> Result<()> {
        self.session.query_unpaged(cql, ()).await.map_err(cql_err)?;
        self.session
            .await_schema_agreement()
            .await
            .map_err(cql_err)?;
        Ok(())
    }

    async fn prepare(&self, cql: String) -> Result<PreparedStatement> {
        if let Some(p) = self.prepared.lock().get(&cql) {
            return Ok(p.clone());
        }
        let p = self.session.prepare(cql.as_str()).await.map_err(cql_err)?;
        self.prepared.lock().insert(cql, p.clone());
        Ok(p)
    }

    /// The CQL table behind a SQL table: its own, or the attached `ks.table`.
    fn table(&self, def: &TableDef) -> String {
        match def.options.get("cql_table").and_then(|t| t.split_once('.')) {
            Some((ks, t)) => format!("{}.{}", q(ks), q(t)),
            None => format!("{}.{}", q(&self.ks), q(def.stored_name())),
        }
    }

    /// Describe an existing CQL table (`ks.table`) as a SQL table, for `attach`.
    /// `vector` names the vector column; `dimension` is needed only for `list<float>`.
    pub async fn describe_cql_table(
        &self,
        cql_table: &str,
        name: &str,
        vector: &str,
        dimension: Option<usize>,
    ) -> Result<TableDef> {
        let (ks, table) = cql_table.split_once('.').ok_or_else(|| {
            Error::InvalidParameter(format!("expected keyspace.table, got \"{cql_table}\""))
        })?;
        let res = self
            .session
            .query_unpaged(
                "SELECT column_name, type, kind, position FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
                (ks, table),
            )
            .await
            .map_err(cql_err)?;
        let mut cols: Vec<(String, String, String, i32)> = res
            .into_rows_result()
            .map_err(cql_err)?
            .rows::<(String, String, String, i32)>()
            .map_err(cql_err)?
            .collect::<std::result::Result<_, _>>()
            .map_err(cql_err)?;
        if cols.is_empty() {
            return Err(Error::UndefinedTable(cql_table.to_string()));
        }
        let rank = |kind: &str| match kind {
            "partition_key" => 0,
            "clustering" => 1,
            _ => 2,
        };
        cols.sort_by(|a, b| (rank(&a.2), a.3, &a.0).cmp(&(rank(&b.2), b.3, &b.0)));
        let mut columns = Vec::new();
        let mut primary_key = Vec::new();
        let mut vector_column = None;
        let mut list_vectors = false;
        let mut partition: Vec<String> = Vec::new();
        for (cname, ty, kind, _) in cols {
            let ct = match ty.as_str() {
                "bigint" | "counter" => Some(ColumnType::BigInt),
                "int" => Some(ColumnType::Int),
                "smallint" | "tinyint" => Some(ColumnType::SmallInt),
                "float" => Some(ColumnType::Real),
                "double" => Some(ColumnType::Double),
                "boolean" => Some(ColumnType::Bool),
                "text" | "varchar" | "ascii" => Some(ColumnType::Text),
                "uuid" | "timeuuid" => Some(ColumnType::Uuid),
                "timestamp" => Some(ColumnType::Timestamp),
                "date" => Some(ColumnType::Date),
                "list<text>" | "list<varchar>" => Some(ColumnType::TextArray),
                "list<int>" => Some(ColumnType::IntArray),
                "list<bigint>" => Some(ColumnType::BigIntArray),
                "blob" => Some(ColumnType::Bytea),
                t if cname == vector => {
                    if let Some(n) = t
                        .strip_prefix("vector<float, ")
                        .and_then(|r| r.strip_suffix('>'))
                    {
                        n.trim().parse().ok().map(ColumnType::Vector)
                    } else if t == "list<float>" {
                        list_vectors = true;
                        Some(ColumnType::Vector(dimension.ok_or_else(|| {
                            Error::InvalidParameter(format!(
                                "column \"{cname}\" is a list<float>: give its dimension (--dimension)"
                            ))
                        })?))
                    } else {
                        return Err(Error::DatatypeMismatch(format!(
                            "column \"{cname}\" is {t}, not vector<float, n> or list<float>"
                        )));
                    }
                }
                _ => None,
            };
            let Some(ct) = ct else {
                if kind != "regular" {
                    return Err(Error::FeatureNotSupported(format!(
                        "key column \"{cname}\" has unsupported type {ty}"
                    )));
                }
                tracing::warn!(column = %cname, cql_type = %ty, "column type not supported; the column is not exposed");
                continue;
            };
            if cname == vector {
                vector_column = Some(columns.len());
            }
            if kind != "regular" && kind != "static" {
                primary_key.push(columns.len());
            }
            if kind == "partition_key" {
                partition.push(cname.clone());
            }
            columns.push(super::ColumnDef {
                name: cname,
                ty: ct,
                nullable: kind == "regular" || kind == "static",
                default: None,
                identity: None,
                stored: None,
                varchar: None,
            });
        }
        let vector_column =
            vector_column.ok_or_else(|| Error::UndefinedColumn(vector.to_string()))?;
        let mut options = std::collections::BTreeMap::new();
        options.insert("cql_table".to_string(), format!("{ks}.{table}"));
        if list_vectors {
            options.insert("cql_vector".to_string(), "list".to_string());
        }
        Ok(TableDef {
            name: name.to_string(),
            schema: None,
            stored: None,
            pk_constraint: None,
            columns,
            primary_key,
            vector_column: Some(vector_column),
            distance: super::Distance::Cosine,
            more_vectors: vec![],
            options,
            unique: vec![],
            checks: vec![],
            foreign_keys: vec![],
            json_indexes: vec![],
            indexes: vec![],
        })
    }

    /// Register a table in the catalog (a lightweight transaction: the first proxy to
    /// claim a name wins), without creating any CQL table.
    pub async fn attach_table(&self, def: &TableDef) -> Result<()> {
        self.register_table(def).await?;
        self.catalog_changed().await
    }

    /// Enter a table in the catalog (42P07 if the name is taken, by any proxy).
    async fn register_table(&self, def: &TableDef) -> Result<()> {
        let json = serde_json::to_string(def).map_err(Error::internal)?;
        let res = self
            .session
            .query_unpaged(
                format!(
                    "INSERT INTO {}.{} (name, def) VALUES (?, ?) IF NOT EXISTS",
                    q(&self.ks),
                    q(CATALOG_TABLE)
                ),
                (def.name.as_str(), json.as_str()),
            )
            .await
            .map_err(cql_err)?;
        let applied = applied(res)?;
        if applied {
            self.outbox_open(def).await
        } else {
            Err(Error::DuplicateTable(def.name.clone()))
        }
    }

    /// Take a table's entry out of the catalog (announced by the caller).
    async fn unregister_table(&self, name: &str) -> Result<()> {
        self.delete_named(CATALOG_TABLE, name).await
    }

    /// Delete the row of `name` from one of the proxy's own tables keyed by name.
    async fn delete_named(&self, table: &str, name: &str) -> Result<()> {
        self.session
            .query_unpaged(
                format!("DELETE FROM {}.{} WHERE name = ?", q(&self.ks), q(table)),
                (name,),
            )
            .await
            .map_err(cql_err)?;
        Ok(())
    }

    fn columns(def: &TableDef) -> String {
        def.columns
            .iter()
            .map(|c| q(c.stored_name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn key_where(def: &TableDef) -> String {
        def.primary_key
            .iter()
            .map(|&i| format!("{} = ?", q(def.columns[i].stored_name())))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// The partition key columns: the `partition_key` option, else the first key column.
    fn partition_columns(def: &TableDef) -> Vec<String> {
        match def.options.get("partition_key") {
            Some(cols) => cols
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty())
                .collect(),
            None => vec![def.columns[def.primary_key[0]].stored_name().to_string()],
        }
    }

    fn list_vectors(def: &TableDef) -> bool {
        def.options.get("cql_vector").is_some_and(|v| v == "list")
    }

    /// A row's values as its CQL columns take them.
    fn row_values(def: &TableDef, row: &[Value]) -> Result<Vec<Option<CqlValue>>> {
        let lv = Self::list_vectors(def);
        row.iter()
            .zip(&def.columns)
            .map(|(v, c)| to_cql(v, &c.ty, lv))
            .collect()
    }

    fn key_values(def: &TableDef, key: &[Value]) -> Result<Vec<Option<CqlValue>>> {
        let lv = Self::list_vectors(def);
        key.iter()
            .zip(&def.primary_key)
            .map(|(v, &i)| to_cql(v, &def.columns[i].ty, lv))
            .collect()
    }

    fn decode_row(def: &TableDef, row: CqlRow) -> Result<Row> {
        row.columns
            .into_iter()
            .zip(&def.columns)
            .map(|(v, c)| match (v, &c.ty) {
                // CQL keeps an empty list as no value at all: in a column that cannot
                // be NULL, that was an empty array.
                (None, ColumnType::TextArray) if !c.nullable => Ok(Value::TextArray(vec![])),
                (None, ColumnType::IntArray | ColumnType::BigIntArray) if !c.nullable => {
                    Ok(Value::IntArray(vec![]))
                }
                (v, ty) => from_cql(v, ty),
            })
            .collect()
    }

    /// Run one prepared statement once per set of values, concurrently, in order.
    async fn execute_many(
        &self,
        stmt: PreparedStatement,
        values: Vec<Vec<Option<CqlValue>>>,
    ) -> Result<Vec<QueryResult>> {
        let session = self.session.clone();
        futures::stream::iter(values.into_iter().map(move |v| {
            let session = session.clone();
            let stmt = stmt.clone();
            async move {
                unprepared_retry(|| session.execute_unpaged(&stmt, &v))
                    .await
                    .map_err(cql_err)
            }
        }))
        .buffered(CONCURRENCY)
        .try_collect()
        .await
    }

    /// Statements on one partition, as unlogged batches of up to [`PARTITION_BATCH`],
    /// several at once.
    async fn execute_batched(
        &self,
        stmt: PreparedStatement,
        values: Vec<Vec<Option<CqlValue>>>,
    ) -> Result<()> {
        let session = self.session.clone();
        let mut chunks = Vec::with_capacity(values.len().div_ceil(PARTITION_BATCH));
        let mut values = values.into_iter().peekable();
        while values.peek().is_some() {
            chunks.push(values.by_ref().take(PARTITION_BATCH).collect::<Vec<_>>());
        }
        futures::stream::iter(chunks.into_iter().map(move |chunk| {
            let session = session.clone();
            let mut batch = Batch::new(BatchType::Unlogged);
            for _ in 0..chunk.len() {
                batch.append_statement(stmt.clone());
            }
            async move {
                unprepared_retry(|| session.batch(&batch, &chunk))
                    .await
                    .map_err(cql_err)
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
        Ok(())
    }

    /// The rows stored under each key (`None` where there is none).
    async fn fetch(
        &self,
        def: &TableDef,
        keys: &[Vec<Value>],
        cols: &str,
    ) -> Result<Vec<Option<CqlRow>>> {
        let stmt = self
            .prepare(format!(
                "SELECT {cols} FROM {} WHERE {}",
                self.table(def),
                Self::key_where(def)
            ))
            .await?;
        let values = keys
            .iter()
            .map(|k| Self::key_values(def, k))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(keys.len());
        for res in self.execute_many(stmt, values).await? {
            let rows = res.into_rows_result().map_err(cql_err)?;
            let mut it = rows.rows::<CqlRow>().map_err(cql_err)?;
            out.push(match it.next() {
                Some(r) => Some(r.map_err(cql_err)?),
                None => None,
            });
        }
        Ok(out)
    }

    /// Whether each key exists.
    async fn exists(&self, def: &TableDef, keys: &[Vec<Value>]) -> Result<Vec<bool>> {
        let first_key = q(def.columns[def.primary_key[0]].stored_name());
        if def.primary_key.len() > 1 || keys.len() < 2 {
            return Ok(self
                .fetch(def, keys, &first_key)
                .await?
                .into_iter()
                .map(|r| r.is_some())
                .collect());
        }
        // A one-column key is the partition key: many keys per request.
        let stmt = self
            .prepare(format!(
                "SELECT {first_key} FROM {} WHERE {first_key} IN ?",
                self.table(def)
            ))
            .await?;
        let lv = Self::list_vectors(def);
        let ty = &def.columns[def.primary_key[0]].ty;
        let lists = keys
            .chunks(KEYS_PER_READ)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|k| {
                        to_cql(&k[0], ty, lv)?
                            .ok_or_else(|| Error::internal("a key without a value"))
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(|l| vec![Some(CqlValue::List(l))])
            })
            .collect::<Result<Vec<_>>>()?;
        let mut found = std::collections::HashSet::new();
        for res in self.execute_many(stmt, lists).await? {
            let rows = res.into_rows_result().map_err(cql_err)?;
            for r in rows.rows::<CqlRow>().map_err(cql_err)? {
                let mut r = r.map_err(cql_err)?;
                let v = from_cql(r.columns.pop().flatten(), ty)?;
                found.insert(super::keys::encode(&[v]));
            }
        }
        Ok(keys
            .iter()
            .map(|k| found.contains(&super::keys::encode(k)))
            .collect())
    }
}

impl ScyllaRows {
    /// A lightweight transaction that changes the catalog: false if it did not apply;
    /// the catalog's version moves only when it did.
    async fn catalog_transaction(
        &self,
        cql: String,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<bool> {
        let res = self
            .session
            .query_unpaged(cql, values)
            .await
            .map_err(cql_err)?;
        if !applied(res)? {
            return Ok(false);
        }
        self.catalog_changed().await?;
        Ok(true)
    }
}

#[async_trait]
impl RowStore for ScyllaRows {
    fn catalog_lease(&self) -> Option<Duration> {
        Some(CATALOG_LEASE)
    }

    async fn catalog_version(&self) -> Result<i64> {
        self.read_catalog_version().await
    }

    async fn list_tables(&self) -> Result<Vec<TableDef>> {
        let res = self
            .session
            .query_unpaged(
                format!("SELECT name, def FROM {}.{}", q(&self.ks), q(CATALOG_TABLE)),
                (),
            )
            .await
            .map_err(cql_err)?;
        let rows = res.into_rows_result().map_err(cql_err)?;
        let mut out = Vec::new();
        for r in rows.rows::<(String, String)>().map_err(cql_err)? {
            let (_, def) = r.map_err(cql_err)?;
            out.push(serde_json::from_str(&def).map_err(Error::internal)?);
        }
        Ok(out)
    }

    async fn list_names(&self, kind: super::Names) -> Result<Vec<String>> {
        let res = self
            .session
            .query_unpaged(
                format!("SELECT name FROM {}.{}", q(&self.ks), q(names_table(kind))),
                (),
            )
            .await
            .map_err(cql_err)?;
        let rows = res.into_rows_result().map_err(cql_err)?;
        rows.rows::<(String,)>()
            .map_err(cql_err)?
            .map(|r| r.map(|(n,)| n).map_err(cql_err))
            .collect()
    }

    async fn add_name(&self, kind: super::Names, name: &str) -> Result<bool> {
        self.catalog_transaction(
            format!(
                "INSERT INTO {}.{} (name) VALUES (?) IF NOT EXISTS",
                q(&self.ks),
                q(names_table(kind))
            ),
            (name,),
        )
        .await
    }

    async fn remove_name(&self, kind: super::Names, name: &str) -> Result<()> {
        self.delete_named(names_table(kind), name).await?;
        self.catalog_changed().await
    }

    async fn create_table(&self, def: &TableDef) -> Result<()> {
        if def.stored_name().starts_with(super::RESERVED_PREFIX) {
            return Err(Error::InvalidTableDefinition(format!(
                "\"{}\" is reserved by vectorgate",
                def.stored_name()
            )));
        }
        let mut def = def.clone();
        let key_names: Vec<String> = def
            .primary_key
            .iter()
            .map(|&i| def.columns[i].name.clone())
            .collect();
        let partition = Self::partition_columns(&def);
        if let Some(bad) = partition.iter().find(|c| !key_names.contains(c)) {
            return Err(Error::InvalidTableDefinition(format!(
                "partition_key column \"{bad}\" is not part of the primary key"
            )));
        }
        let clustering: Vec<String> = key_names
            .iter()
            .filter(|k| !partition.contains(k))
            .map(|k| q(k))
            .collect();
        let parts: Vec<String> = partition.iter().map(|p| q(p)).collect();
        let pk = if clustering.is_empty() {
            format!("({})", parts.join(", "))
        } else {
            format!("({}), {}", parts.join(", "), clustering.join(", "))
        };
        let ttl = match def.ttl_seconds() {
            Some(t) => format!(" WITH default_time_to_live = {t}"),
            None => String::new(),
        };
        let table = format!("{}.{}", q(&self.ks), q(def.stored_name()));
        let make = |lv: bool| {
            let cols: Vec<String> = def
                .columns
                .iter()
                .map(|c| format!("{} {}", q(c.stored_name()), cql_type(&c.ty, lv)))
                .collect();
            format!(
                "CREATE TABLE {table} ({}, PRIMARY KEY ({pk})){ttl}",
                cols.join(", ")
            )
        };
        // Register the table first, so that two proxies cannot both create it.
        self.register_table(&def).await?;
        let created = match self.ddl(&make(false)).await {
            Ok(()) => Ok(()),
            // A server without the vector type keeps vectors as list<float>.
            Err(Error::Backend { .. }) => {
                def.options.insert("cql_vector".into(), "list".into());
                self.ddl(&make(true)).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = created {
            let _ = self.unregister_table(&def.name).await;
            return Err(e);
        }
        if Self::list_vectors(&def) {
            self.write_def(&def).await?;
        }
        self.catalog_changed().await
    }

    async fn list_sequences(&self) -> Result<Vec<super::SequenceDef>> {
        let res = self
            .session
            .query_unpaged(format!("SELECT def FROM {}", self.sequences()), ())
            .await
            .map_err(cql_err)?;
        let rows = res.into_rows_result().map_err(cql_err)?;
        let mut out = Vec::new();
        // The catalog version's row has no definition.
        for r in rows.rows::<(Option<String>,)>().map_err(cql_err)? {
            if let (Some(def),) = r.map_err(cql_err)? {
                out.push(serde_json::from_str(&def).map_err(Error::internal)?);
            }
        }
        Ok(out)
    }

    async fn create_sequence(
        &self,
        def: &super::SequenceDef,
        state: super::SequenceState,
    ) -> Result<()> {
        let json = serde_json::to_string(def).map_err(Error::internal)?;
        let res = self
            .session
            .query_unpaged(
                format!(
                    "INSERT INTO {} (name, def, last, called) VALUES (?, ?, ?, ?) IF NOT EXISTS",
                    self.sequences()
                ),
                (def.name.as_str(), json.as_str(), state.last, state.called),
            )
            .await
            .map_err(cql_err)?;
        if !applied(res)? {
            return Err(Error::DuplicateTable(def.name.clone()));
        }
        self.catalog_changed().await
    }

    async fn drop_sequence(&self, name: &str) -> Result<()> {
        self.session
            .query_unpaged(
                format!("DELETE FROM {} WHERE name = ? IF EXISTS", self.sequences()),
                (name,),
            )
            .await
            .map_err(cql_err)?;
        self.catalog_changed().await
    }

    async fn set_sequence_def(&self, def: &super::SequenceDef) -> Result<bool> {
        let json = serde_json::to_string(def).map_err(Error::internal)?;
        self.catalog_transaction(
            format!(
                "UPDATE {} SET def = ? WHERE name = ? IF EXISTS",
                self.sequences()
            ),
            (json.as_str(), def.name.as_str()),
        )
        .await
    }

    async fn sequence_state(&self, name: &str) -> Result<Option<super::SequenceState>> {
        let res = self
            .session
            .query_unpaged(
                format!(
                    "SELECT last, called FROM {} WHERE name = ?",
                    self.sequences()
                ),
                (name,),
            )
            .await
            .map_err(cql_err)?;
        let rows = res.into_rows_result().map_err(cql_err)?;
        Ok(rows
            .maybe_first_row::<(i64, bool)>()
            .map_err(cql_err)?
            .map(|(last, called)| super::SequenceState { last, called }))
    }

    async fn sequence_swap(
        &self,
        name: &str,
        old: super::SequenceState,
        new: super::SequenceState,
    ) -> Result<bool> {
        let res = self
            .session
            .query_unpaged(
                format!(
                    "UPDATE {} SET last = ?, called = ? WHERE name = ? IF last = ? AND called = ?",
                    self.sequences()
                ),
                (new.last, new.called, name, old.last, old.called),
            )
            .await
            .map_err(cql_err)?;
        applied(res)
    }

    async fn unique_swap(
        &self,
        space: &str,
        value: &[u8],
        expected: Option<&super::UniqueHolder>,
        new: Option<&super::UniqueHolder>,
    ) -> Result<std::result::Result<(), Option<super::UniqueHolder>>> {
        let table = format!("{}.{}", q(&self.ks), q(UNIQUE_TABLE));
        let res = match (expected, new) {
            // Only a read: who holds it now.
            (None, None) => None,
            (None, Some(n)) => Some(self.session.query_unpaged(
                format!("INSERT INTO {table} (space, val, key, at) VALUES (?, ?, ?, ?) IF NOT EXISTS"),
                (space, value, n.key.as_slice(), n.at),
            ).await),
            (Some(e), Some(n)) => Some(self.session.query_unpaged(
                format!("UPDATE {table} SET key = ?, at = ? WHERE space = ? AND val = ? IF key = ? AND at = ?"),
                (n.key.as_slice(), n.at, space, value, e.key.as_slice(), e.at),
            ).await),
            (Some(e), None) => Some(self.session.query_unpaged(
                format!("DELETE FROM {table} WHERE space = ? AND val = ? IF key = ? AND at = ?"),
                (space, value, e.key.as_slice(), e.at),
            ).await),
        };
        if let Some(res) = res
            && applied(res.map_err(cql_err)?)?
        {
            return Ok(Ok(()));
        }
        // Not applied: the holder as the transaction found it (read back: the failed
        // round committed what was there).
        let res = self
            .session
            .query_unpaged(
                format!("SELECT key, at FROM {table} WHERE space = ? AND val = ?"),
                (space, value),
            )
            .await
            .map_err(cql_err)?;
        let rows = res.into_rows_result().map_err(cql_err)?;
        let holder = rows
            .maybe_first_row::<(Vec<u8>, i64)>()
            .map_err(cql_err)?
            .map(|(key, at)| super::UniqueHolder { key, at });
        if holder.is_none() && expected.is_none() && new.is_none() {
            return Ok(Ok(()));
        }
        Ok(Err(holder))
    }

    async fn add_columns(
        &self,
        old: &TableDef,
        new: &TableDef,
        fill: &[Value],
        ts: i64,
    ) -> Result<()> {
        if new.options.contains_key("cql_table") {
            return Err(Error::FeatureNotSupported(
                "ALTER TABLE ... ADD COLUMN of an attached CQL table: alter the CQL table and attach it again".into(),
            ));
        }
        let lv = Self::list_vectors(new);
        let added = &new.columns[old.columns.len()..];
        for c in added {
            let cql = format!(
                "ALTER TABLE {} ADD {} {}",
                self.table(new),
                q(c.stored_name()),
                cql_type(&c.ty, lv)
            );
            // A column left by an earlier attempt that failed after this step is reused.
            if let Err(e) = self.ddl(&cql).await {
                let exists = matches!(&e, Error::Backend { message, .. } if message.contains("already exist"));
                if !exists {
                    return Err(e);
                }
            }
        }
        self.write_def(new).await?;
        if fill.iter().all(Value::is_null) {
            return self.catalog_changed().await;
        }
        // Rows stored before get the values, stamped with the ALTER's time: a write made
        // after it (a later timestamp) keeps its own.
        let sets: Vec<String> = added
            .iter()
            .map(|c| format!("{} = ?", q(c.stored_name())))
            .collect();
        let stmt = self
            .prepare(format!(
                "UPDATE {} USING TIMESTAMP ? SET {} WHERE {}",
                self.table(new),
                sets.join(", "),
                Self::key_where(new)
            ))
            .await?;
        let mut fills = Vec::with_capacity(fill.len());
        for (v, c) in fill.iter().zip(added) {
            fills.push(to_cql(v, &c.ty, lv)?);
        }
        let mut rows = self.scan(old, 1000, None);
        while let Some(batch) = rows.next().await {
            let mut values = Vec::new();
            for row in batch? {
                let mut v = vec![Some(CqlValue::BigInt(ts))];
                v.extend(fills.iter().cloned());
                v.extend(Self::key_values(new, &old.key_of(&row))?);
                values.push(v);
            }
            self.execute_many(stmt.clone(), values).await?;
        }
        self.catalog_changed().await
    }

    async fn drop_columns(&self, old: &TableDef, new: &TableDef, dropped: &[usize]) -> Result<()> {
        if new.options.contains_key("cql_table") {
            return Err(Error::FeatureNotSupported(
                "ALTER TABLE ... DROP COLUMN of an attached CQL table: alter the CQL table and attach it again".into(),
            ));
        }
        // The catalog first: once every proxy has it, none writes the columns.
        self.write_def(new).await?;
        self.catalog_changed().await?;
        for &i in dropped {
            let cql = format!(
                "ALTER TABLE {} DROP {}",
                self.table(old),
                q(old.columns[i].stored_name())
            );
            // A column an earlier attempt dropped before it failed is gone already.
            if let Err(e) = self.ddl(&cql).await {
                let gone = matches!(&e, Error::Backend { message, .. } if message.contains("not found") || message.contains("does not exist") || message.contains("doesn't exist"));
                if !gone {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn update_table(&self, def: &TableDef) -> Result<()> {
        self.write_def(def).await?;
        self.catalog_changed().await
    }

    async fn drop_table(&self, def: &TableDef) -> Result<()> {
        // An attached table is only detached: its CQL table and rows stay.
        if !def.options.contains_key("cql_table") {
            self.ddl(&format!("DROP TABLE IF EXISTS {}", self.table(def)))
                .await?;
        }
        self.unregister_table(&def.name).await?;
        self.outbox_drop(def).await?;
        let cql = self.table(def);
        self.prepared.lock().retain(|k, _| !k.contains(&cql));
        self.catalog_changed().await
    }

    async fn rename_table(&self, old: &str, new: &TableDef) -> Result<()> {
        // The new name is taken with a lightweight transaction, so that two proxies
        // cannot both take it; then the old entry goes.
        self.register_table(new).await?;
        self.unregister_table(old).await?;
        self.catalog_changed().await
    }

    async fn write(
        &self,
        table: &TableDef,
        rows: Vec<Row>,
        mode: WriteMode,
        ts: i64,
    ) -> Result<()> {
        if mode == WriteMode::InsertNew {
            let keys: Vec<Vec<Value>> = rows.iter().map(|r| table.key_of(r)).collect();
            let mut seen = std::collections::HashSet::new();
            for k in &keys {
                if !seen.insert(super::keys::encode(k)) {
                    return Err(table.duplicate_key(k));
                }
            }
            for (k, e) in keys.iter().zip(self.exists(table, &keys).await?) {
                if e {
                    return Err(table.duplicate_key(k));
                }
            }
        }
        // The entries go first: no row changes without one.
        let keys: Vec<Vec<Value>> = rows.iter().map(|r| table.key_of(r)).collect();
        self.outbox_add(table, &keys, ts).await?;
        let marks = vec!["?"; table.columns.len()].join(", ");
        let stmt = self
            .prepare(format!(
                "INSERT INTO {} ({}) VALUES ({marks})",
                self.table(table),
                Self::columns(table)
            ))
            .await?;
        let values = rows
            .iter()
            .map(|row| Self::row_values(table, row))
            .collect::<Result<Vec<_>>>()?;
        self.execute_many(stmt, values).await?;
        Ok(())
    }

    async fn delete(&self, table: &TableDef, keys: Vec<Vec<Value>>, ts: i64) -> Result<u64> {
        let existing = self.exists(table, &keys).await?;
        self.outbox_add(table, &keys, ts).await?;
        let stmt = self
            .prepare(format!(
                "DELETE FROM {} WHERE {}",
                self.table(table),
                Self::key_where(table)
            ))
            .await?;
        let n = existing.iter().filter(|e| **e).count() as u64;
        let values = keys
            .iter()
            .zip(existing)
            .filter(|(_, e)| *e)
            .map(|(k, _)| Self::key_values(table, k))
            .collect::<Result<Vec<_>>>()?;
        self.execute_many(stmt, values).await?;
        Ok(n)
    }

    async fn commit(&self, changes: &[TableChanges], ts: i64) -> Result<bool> {
        for c in changes {
            let keys: Vec<Vec<Value>> = c.new.iter().map(|r| c.def.key_of(r)).collect();
            for (k, e) in keys.iter().zip(self.exists(&c.def, &keys).await?) {
                if e {
                    return Err(c.def.duplicate_key(k));
                }
            }
        }
        // The log: each table's changes in chunks, then the marker that commits them.
        let id = uuid::Uuid::new_v4();
        let insert = self
            .prepare(format!(
                "INSERT INTO {}.{} (id, seq, tbl, ts, data) VALUES (?, ?, ?, ?, ?)",
                q(&self.ks),
                q(TXLOG_TABLE)
            ))
            .await?;
        let mut chunks = Vec::new();
        for c in changes {
            let entries: Vec<LogEntry> = c
                .new
                .iter()
                .chain(&c.put)
                .map(|r| (c.def.key_of(r), Some(r.clone())))
                .chain(c.delete.iter().map(|k| (k.clone(), None)))
                .collect();
            let mut chunk: Vec<LogEntry> = Vec::new();
            let mut bytes = 0;
            for e in entries {
                bytes += bincode::serialized_size(&e).map_err(Error::internal)? as usize;
                chunk.push(e);
                if bytes >= LOG_CHUNK_BYTES {
                    chunks.push((c.def.stored_name().to_string(), std::mem::take(&mut chunk)));
                    bytes = 0;
                }
            }
            if !chunk.is_empty() {
                chunks.push((c.def.stored_name().to_string(), chunk));
            }
        }
        let values = chunks
            .iter()
            .enumerate()
            .map(|(i, (tbl, chunk))| {
                Ok(vec![
                    Some(CqlValue::Uuid(id)),
                    Some(CqlValue::Int(i as i32 + 1)),
                    Some(CqlValue::Text(tbl.clone())),
                    Some(CqlValue::BigInt(ts)),
                    Some(CqlValue::Blob(
                        bincode::serialize(chunk).map_err(Error::internal)?,
                    )),
                ])
            })
            .collect::<Result<Vec<_>>>()?;
        if let Err(e) = self.execute_many(insert.clone(), values).await {
            let _ = self.delete_log(id).await;
            return Err(e);
        }
        super::commit_point(false);
        let marker = vec![
            Some(CqlValue::Uuid(id)),
            Some(CqlValue::Int(0)),
            Some(CqlValue::Text(String::new())),
            Some(CqlValue::BigInt(ts)),
            None,
        ];
        if let Err(e) = self.session.execute_unpaged(&insert, marker).await {
            return Err(match cql_err(e) {
                // The marker may have been written: whoever finds it finishes the commit.
                Error::Timeout { message, .. } => Error::Transaction {
                    code: "08007",
                    message: format!(
                        "the row store did not confirm the commit in time ({message}); the transaction is committed if its commit record was written, and will then be completed"
                    ),
                },
                other => {
                    let _ = self.delete_log(id).await;
                    other
                }
            });
        }
        // Committed: a store that fails now leaves the log for `recover` to finish.
        if let Err(e) = self.apply(changes, ts, None).await {
            tracing::warn!(error = %e, "a committed transaction's rows are not all written; the commit log finishes them");
            return Ok(false);
        }
        if let Err(e) = self.delete_log(id).await {
            tracing::warn!(error = %e, "a commit log was not removed; it is replayed later");
        }
        Ok(true)
    }

    async fn recover(&self, min_age: Duration) -> Result<u64> {
        let mut stmt = scylla::statement::unprepared::Statement::new(format!(
            "SELECT id, seq, tbl, ts, data FROM {}.{}",
            q(&self.ks),
            q(TXLOG_TABLE)
        ));
        stmt.set_page_size(100);
        let pager = self.session.query_iter(stmt, ()).await.map_err(cql_err)?;
        let mut rows = pager
            .rows_stream::<(
                uuid::Uuid,
                i32,
                Option<String>,
                Option<i64>,
                Option<Vec<u8>>,
            )>()
            .map_err(cql_err)?;
        // Per log: whether it is marked, its stamp, its chunks.
        let mut logs: HashMap<uuid::Uuid, (bool, i64, Vec<(String, Vec<u8>)>)> = HashMap::new();
        while let Some(r) = rows.next().await {
            let (id, seq, tbl, ts, data) = r.map_err(cql_err)?;
            let log = logs.entry(id).or_insert((false, 0, Vec::new()));
            log.1 = log.1.max(ts.unwrap_or_default());
            if seq == 0 {
                log.0 = true;
            } else if let (Some(t), Some(d)) = (tbl, data) {
                log.2.push((t, d));
            }
        }
        if logs.is_empty() {
            return Ok(0);
        }
        let defs: HashMap<String, Arc<TableDef>> = self
            .list_tables()
            .await?
            .into_iter()
            .map(|d| (d.stored_name().to_string(), Arc::new(d)))
            .collect();
        let mut finished = 0;
        for (id, (marked, ts, chunks)) in logs {
            let age = super::now_micros().saturating_sub(ts);
            if marked && age < min_age.as_micros() as i64 {
                // Perhaps still being written by the proxy that committed it.
                continue;
            }
            if !marked {
                if age > STALE_LOG.as_micros() as i64 {
                    self.delete_log(id).await?;
                }
                continue;
            }
            let mut by_table: HashMap<String, TableChanges> = HashMap::new();
            for (tbl, data) in chunks {
                // A table dropped since took its rows with it.
                let Some(def) = defs.get(&tbl) else {
                    continue;
                };
                let entries: Vec<LogEntry> = bincode::deserialize(&data)
                    .map_err(|_| Error::internal("corrupt commit log"))?;
                let c = by_table.entry(tbl).or_insert_with(|| TableChanges {
                    def: def.clone(),
                    new: vec![],
                    put: vec![],
                    delete: vec![],
                });
                for (key, row) in entries {
                    match row {
                        Some(r) => c.put.push(r),
                        None => c.delete.push(key),
                    }
                }
            }
            let changes: Vec<TableChanges> = by_table.into_values().collect();
            self.apply(&changes, ts, Some(ts)).await?;
            self.delete_log(id).await?;
            finished += 1;
        }
        Ok(finished)
    }

    async fn outbox_pending(
        &self,
        table: &TableDef,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>> {
        self.outbox_pending_impl(table, upto, limit).await
    }

    async fn outbox_clear(&self, table: &TableDef, entries: &[OutboxEntry]) -> Result<()> {
        self.outbox_clear_impl(table, entries).await
    }

    async fn get(&self, table: &TableDef, keys: &[Vec<Value>]) -> Result<Vec<Option<Row>>> {
        self.fetch(table, keys, &Self::columns(table))
            .await?
            .into_iter()
            .map(|r| r.map(|r| Self::decode_row(table, r)).transpose())
            .collect()
    }

    fn scan(
        &self,
        table: &TableDef,
        batch: usize,
        limit: Option<usize>,
    ) -> BoxStream<'static, Result<Vec<Row>>> {
        let def = table.clone();
        let columns = Self::columns(&def);
        let rows: BoxStream<'static, Result<Row>> = match limit {
            // A LIMIT goes into the CQL itself: one paged query, no ring split.
            Some(l) => {
                let cql = format!(
                    "SELECT {columns} FROM {} LIMIT {}",
                    self.table(&def),
                    l.min(i32::MAX as usize)
                );
                paged(self.session.clone(), cql, (), l.clamp(1, 1000) as i32, def)
                    .take(l)
                    .boxed()
            }
            // A full scan reads token ranges in parallel, each paged.
            None => {
                let pk = Self::partition_columns(&def)
                    .iter()
                    .map(|c| q(c))
                    .collect::<Vec<_>>()
                    .join(", ");
                let cql = format!(
                    "SELECT {columns} FROM {} WHERE token({pk}) >= ? AND token({pk}) <= ?",
                    self.table(&def)
                );
                let step = (u64::MAX / SCAN_SPLITS as u64) as i64;
                let streams = (0..SCAN_SPLITS).map(|i| {
                    let lo = i64::MIN.wrapping_add(step.wrapping_mul(i));
                    let hi = if i == SCAN_SPLITS - 1 {
                        i64::MAX
                    } else {
                        lo.wrapping_add(step - 1)
                    };
                    paged(
                        self.session.clone(),
                        cql.clone(),
                        (lo, hi),
                        1000,
                        def.clone(),
                    )
                });
                futures::stream::select_all(streams).boxed()
            }
        };
        rows.chunks(batch.max(1))
            .map(|chunk| chunk.into_iter().collect::<Result<Vec<Row>>>())
            .boxed()
    }
}

/// One change in a commit log: a key and its new row (`None`: deleted).
type LogEntry = (Vec<Value>, Option<Row>);

/// The decoded rows of one paged CQL query.
fn paged<V>(
    session: Arc<Session>,
    cql: String,
    values: V,
    page: i32,
    def: TableDef,
) -> BoxStream<'static, Result<Row>>
where
    V: scylla::serialize::row::SerializeRow + Send + Sync + 'static,
{
    futures::stream::once(async move {
        let mut stmt = scylla::statement::unprepared::Statement::new(cql);
        stmt.set_page_size(page);
        let pager = unprepared_retry(|| session.query_iter(stmt.clone(), &values))
            .await
            .map_err(cql_err)?;
        let rows = pager.rows_stream::<CqlRow>().map_err(cql_err)?;
        Ok::<_, Error>(rows.map(move |r| ScyllaRows::decode_row(&def, r.map_err(cql_err)?)))
    })
    .try_flatten()
    .boxed()
}
