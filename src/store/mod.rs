//! Storage behind the SQL engine, reached only through two traits:
//!
//! - [`RowStore`]: the source of truth for rows and for the table catalog
//!   (embedded: [`embedded_rows`], an on-disk redb database).
//! - [`VectorIndex`]: an approximate-nearest-neighbour index over each table's vector
//!   column with a filter payload per point (embedded: [`edge_index`], Qdrant's engine
//!   in process).
//!
//! [`filter`] holds the backend-neutral predicate that search filters are pushed down
//! as; each index translates it to its own filter language.

pub mod edge_index;
pub mod embedded_rows;
pub mod filter;
pub mod keys;
pub mod options;
pub mod qdrant_index;
pub mod scylla_rows;

/// The names the row store keeps for itself (its catalog, outbox, sequences, ...): no
/// table's rows are kept under one.
pub const RESERVED_PREFIX: &str = "vectorgate_";

/// Whether the row store (a CQL table name) and the index (a collection, a directory)
/// take `name` as it is.
pub fn storable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 48
        && !name.starts_with(RESERVED_PREFIX)
}

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::types::{ColumnType, Value};

pub use filter::Predicate;

/// Run long blocking work (a large row store transaction, a bulk index update) from
/// async code. On a multi-thread runtime it runs on this thread (`block_in_place`: the
/// runtime hands this worker's core, with its queued tasks, to a blocking-pool thread
/// meanwhile, which costs a thread wake-up per call); elsewhere (a current-thread
/// runtime) it goes to the blocking pool. Short work goes through [`run_short`].
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => Ok(tokio::task::block_in_place(f)),
        _ => tokio::task::spawn_blocking(f)
            .await
            .map_err(crate::error::Error::internal),
    }
}

/// Run blocking work on the async worker itself when it is `short` (a transaction of a
/// few rows, one search, an index update of a few points), else through
/// [`run_blocking`]. `block_in_place` costs a thread hand-off on every call (tokio gives the worker's core to a blocking-pool thread it wakes for the
/// purpose, then takes it back), which on two cores is a measurable part of a
/// single-row write or a search; a worker blocked for a fraction of a millisecond has
/// its queued tasks stolen by the other workers meanwhile. `VECTORGATE_SHORT_WORK=handoff`
/// (read once, for side-by-side measurements) sends it through [`run_blocking`] instead.
pub(crate) async fn run_short<T: Send + 'static>(
    short: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    static HANDOFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if short
        && !*HANDOFF
            .get_or_init(|| std::env::var("VECTORGATE_SHORT_WORK").is_ok_and(|v| v == "handoff"))
    {
        Ok(f())
    } else {
        run_blocking(f).await
    }
}

/// Fault injection (set by `crate::faults` for the durability tests): abort the process
/// just before, or just past, a commit's commit point.
pub static CRASH_BEFORE_COMMIT_POINT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
pub static CRASH_AFTER_COMMIT_POINT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Fault injection: the row store fails just past a commit's commit point (the CQL
/// store's marker written, about half of the rows not), as if it went away.
pub static FAIL_AFTER_COMMIT_POINT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Called by a row store's commit just before (`reached` false) and just past its
/// commit point.
pub(crate) fn commit_point(reached: bool) {
    let flag = if reached {
        &CRASH_AFTER_COMMIT_POINT
    } else {
        &CRASH_BEFORE_COMMIT_POINT
    };
    if flag.load(std::sync::atomic::Ordering::SeqCst) {
        tracing::error!(
            reached,
            "fault injection: aborting at a transaction's commit point"
        );
        std::process::abort();
    }
}

/// How vectors are compared. Lower distances are closer, as in pgvector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Distance {
    /// `1 - cos(a, b)`, pgvector's `<=>`.
    Cosine,
    /// Euclidean distance, pgvector's `<->`.
    L2,
    /// Negative inner product, pgvector's `<#>`.
    Dot,
}

impl Distance {
    pub fn parse(s: &str) -> Option<Distance> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cosine" | "cos" => Some(Distance::Cosine),
            "l2" | "euclid" | "euclidean" => Some(Distance::L2),
            "dot" | "ip" | "inner_product" => Some(Distance::Dot),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Distance::Cosine => "cosine",
            Distance::L2 => "l2",
            Distance::Dot => "dot",
        }
    }

    /// The exact distance between two vectors, computed in f64.
    pub fn exact(&self, a: &[f32], b: &[f32]) -> f64 {
        match self {
            Distance::Cosine => {
                let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
                for (x, y) in a.iter().zip(b) {
                    let (x, y) = (*x as f64, *y as f64);
                    dot += x * y;
                    na += x * x;
                    nb += y * y;
                }
                if na == 0.0 || nb == 0.0 {
                    // pgvector answers NaN here; 1.0 (orthogonal) keeps ordering total.
                    1.0
                } else {
                    1.0 - dot / (na.sqrt() * nb.sqrt())
                }
            }
            Distance::L2 => a
                .iter()
                .zip(b)
                .map(|(x, y)| {
                    let d = *x as f64 - *y as f64;
                    d * d
                })
                .sum::<f64>()
                .sqrt(),
            Distance::Dot => -a
                .iter()
                .zip(b)
                .map(|(x, y)| *x as f64 * *y as f64)
                .sum::<f64>(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    /// The column's DEFAULT expression, as SQL text (evaluated by each INSERT or COPY
    /// that leaves the column out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// An identity column: `a` (GENERATED ALWAYS) or `d` (BY DEFAULT), as
    /// `pg_attribute.attidentity` says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<char>,
    /// The name of the column in the row store, where it is not `name`: a CQL column
    /// cannot be renamed (only key columns can), so `RENAME COLUMN` renames it in the
    /// catalog only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<String>,
    /// A text column declared `varchar` / `character varying`: `Some(n)` with its
    /// length limit (checked on every write), `Some(0)` without one. `None`: `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub varchar: Option<u32>,
}

/// The name of the hidden key column of a table created without a primary key: one of
/// Postgres' system column names, so no user column can have it. Its values are random
/// UUIDs (a row's identity, as `ctid` is in Postgres); `SELECT *`, `INSERT` and `COPY`
/// without a column list, and the catalog leave it out.
pub const ROW_ID: &str = "ctid";

/// Postgres' system column names: no user column may be named so (42701).
pub const SYSTEM_COLUMNS: [&str; 6] = ["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

impl ColumnDef {
    /// The column's Arrow field: its type's, and for a `varchar` column marked so
    /// (with its length as typmod) for the wire. (A `varchar(n)[]` column goes out as
    /// `text[]`, as a cast to it does.)
    pub fn arrow_field(&self, nullable: bool) -> datafusion::arrow::datatypes::Field {
        let f = self.ty.arrow_field(&self.name, nullable);
        match self.varchar_typmod() {
            Some(typmod) if self.ty.element().is_none() => {
                let mut m = f.metadata().clone();
                m.insert(
                    crate::types::PG_TYPE_KEY.into(),
                    crate::types::VARCHAR.into(),
                );
                m.insert(crate::types::PG_TYPMOD_KEY.into(), typmod.to_string());
                f.with_metadata(m)
            }
            _ => f,
        }
    }

    /// A `varchar` (or `varchar[]`) column's `atttypmod`: its length + 4, or -1 without one; `None` for
    /// any other column.
    pub fn varchar_typmod(&self) -> Option<i32> {
        self.varchar.map(|n| match n {
            0 => -1,
            n => i32::try_from(n).map_or(i32::MAX, |n| n.saturating_add(4)),
        })
    }

    /// The hidden key column of a table created without a primary key.
    pub fn hidden(&self) -> bool {
        self.name == ROW_ID
    }

    /// The column's name in the row store.
    pub fn stored_name(&self) -> &str {
        self.stored.as_deref().unwrap_or(&self.name)
    }
}

/// The name a relation `rel` of `schema` has in the catalog: `rel` itself in
/// `public`, `schema.rel` in any other schema.
pub fn qualified(schema: &str, rel: &str) -> String {
    if schema == "public" {
        rel.to_string()
    } else {
        format!("{schema}.{rel}")
    }
}

/// The relation's own name within its schema: `name` without the `schema.` that
/// [`qualified`] put in front of it.
fn relation_name<'a>(schema: Option<&str>, name: &'a str) -> &'a str {
    schema
        .and_then(|s| name.strip_prefix(s))
        .and_then(|n| n.strip_prefix('.'))
        .unwrap_or(name)
}

/// A table as the proxy knows it: columns, primary key, the vector column and its
/// index settings. Stored in the row store's catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    /// The table's name in the catalog: its name in SQL, qualified by its schema when
    /// that is not `public` (see [`qualified`]).
    pub name: String,
    /// The schema, when it is not `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The name its rows, points and index are kept under, when that is not `name`: a
    /// table renamed since it was made, or one whose name the row store or the index
    /// cannot take (see [`TableDef::stored_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<String>,
    /// The primary key constraint's name, when it is not `<name>_pkey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pk_constraint: Option<String>,
    pub columns: Vec<ColumnDef>,
    /// Indexes into `columns`, in key order.
    pub primary_key: Vec<usize>,
    /// Index into `columns` of the first indexed vector column (the one a search that
    /// names none uses); `None` for a table of rows only (no collection, no outbox
    /// entries: the index never hears of it).
    pub vector_column: Option<usize>,
    /// The distance `vector_column` is indexed by.
    pub distance: Distance,
    /// The other indexed vector columns (positions) and their distances: a table with
    /// several keeps one collection with a named vector per column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_vectors: Vec<(usize, Distance)>,
    /// Options given at CREATE TABLE, kept for later issues (hnsw m, quantization...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// UNIQUE constraints besides the primary key, enforced on every write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique: Vec<UniqueDef>,
    /// CHECK constraints, tested on every row written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckDef>,
    /// FOREIGN KEY constraints of this table (the referencing side).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_keys: Vec<ForeignKeyDef>,
    /// Indexes on values inside json columns: payload indexes of the vector index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_indexes: Vec<JsonIndexDef>,
    /// Other indexes `CREATE INDEX` made: kept for the catalog (rows are found by key,
    /// by a scan or by the vector index, which has a payload index of every filterable
    /// column).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexDef>,
}

/// An index as `CREATE INDEX` wrote it, for the catalog (`pg_get_indexdef`, `\d`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexDef {
    pub name: String,
    /// `btree`, `gin`, `hnsw`, ...
    pub method: String,
    /// Written `UNIQUE` (over expressions or with WHERE: not enforced).
    pub unique: bool,
    pub keys: Vec<IndexKey>,
    /// Positions of the `INCLUDE` columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<usize>,
    /// `NULLS NOT DISTINCT`, `WITH (...)` as written.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub clauses: String,
    /// The `WHERE` of a partial index, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<String>,
}

/// One key of an [`IndexDef`]: a column (by position) or an expression, and what
/// follows it (operator class, `DESC`, `NULLS FIRST`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// An expression as `pg_get_indexdef` prints it: a function call bare, anything
    /// else in parentheses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tail: String,
}

impl IndexDef {
    /// `pg_get_indexdef`: the statement that makes it, with the columns' names of now.
    pub fn definition(&self, table: &TableDef) -> String {
        let name_of = |c: usize| {
            table
                .columns
                .get(c)
                .map_or_else(|| "?".to_string(), |c| c.name.clone())
        };
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|k| {
                let key = match (k.column, &k.expr) {
                    (Some(c), _) => name_of(c),
                    (None, Some(e)) => e.clone(),
                    (None, None) => "?".into(),
                };
                format!("{key}{}", k.tail)
            })
            .collect();
        let mut out = format!(
            "CREATE {}INDEX {} ON {}.{} USING {} ({})",
            if self.unique { "UNIQUE " } else { "" },
            self.name,
            table.schema(),
            table.relname(),
            self.method,
            keys.join(", ")
        );
        if !self.include.is_empty() {
            let names: Vec<String> = self.include.iter().map(|&c| name_of(c)).collect();
            out.push_str(&format!(" INCLUDE ({})", names.join(", ")));
        }
        out.push_str(&self.clauses);
        if let Some(p) = &self.predicate {
            out.push_str(&format!(" WHERE ({p})"));
        }
        out
    }
}

/// An index on values inside a json or jsonb column, made by `CREATE INDEX` on an
/// expression (`((meta->>'topic'))`, `(((meta->>'n')::int))`, `((meta->'tags'))`) or
/// `USING gin (meta)`: the vector index keeps a payload index of what it names, so that
/// a selective filter on it is planned by the index rather than found by walking the
/// graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonIndexDef {
    pub name: String,
    /// Position of the json column.
    pub column: usize,
    /// Keys from the column's document down to the indexed value (none for `Keys`).
    pub path: Vec<String>,
    pub kind: JsonIndexKind,
    /// The index as its statement defined it (for the catalog and error messages).
    pub definition: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JsonIndexKind {
    /// Text values (and strings in arrays): `->>` and `->` comparisons, `@>`.
    Keyword,
    /// Numbers: comparisons of `(meta->>'n')::int` and the like.
    Number,
    /// The document's keys (a GIN index on the whole column): `?`, `?|`, `?&`.
    Keys,
}

/// A CHECK constraint: its name and its boolean expression as SQL text over the
/// table's column names. A row passes unless the expression is false (NULL passes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckDef {
    pub name: String,
    pub expr: String,
}

/// What a FOREIGN KEY does to the referencing rows when the referenced row goes
/// (`ON DELETE`) or its key changes (`ON UPDATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefAction {
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

impl RefAction {
    /// The letter `pg_constraint.confdeltype`/`confupdtype` holds.
    pub fn code(self) -> char {
        match self {
            RefAction::NoAction => 'a',
            RefAction::Restrict => 'r',
            RefAction::Cascade => 'c',
            RefAction::SetNull => 'n',
            RefAction::SetDefault => 'd',
        }
    }

    /// As SQL writes it (`information_schema.referential_constraints`).
    pub fn sql(self) -> &'static str {
        match self {
            RefAction::NoAction => "NO ACTION",
            RefAction::Restrict => "RESTRICT",
            RefAction::Cascade => "CASCADE",
            RefAction::SetNull => "SET NULL",
            RefAction::SetDefault => "SET DEFAULT",
        }
    }
}

/// A FOREIGN KEY: `columns` of this table reference `referenced` (column names, in
/// the same order) of `table`, which are that table's primary key or one of its UNIQUE
/// constraints. MATCH SIMPLE: a row with a NULL in any of `columns` references nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForeignKeyDef {
    pub name: String,
    pub columns: Vec<usize>,
    pub table: String,
    pub referenced: Vec<String>,
    pub on_delete: RefAction,
    pub on_update: RefAction,
    /// `DEFERRABLE` and `INITIALLY DEFERRED` as declared, for the catalog and `SET
    /// CONSTRAINTS`; the key is checked at each statement all the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferrable: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub initially_deferred: bool,
}

/// A UNIQUE constraint: its name, its columns (positions), and the space its values are
/// held in (made once, so a constraint made again under the same name starts empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UniqueDef {
    pub name: String,
    pub columns: Vec<usize>,
    pub space: String,
    /// Made by `CREATE UNIQUE INDEX`: an index, not a constraint, in the catalog (and
    /// dropped by `DROP INDEX`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub index_only: bool,
}

impl TableDef {
    /// The name the row store, the index and the outbox know the table by: its first
    /// name, for as long as it lives (a RENAME changes only `name`).
    pub fn stored_name(&self) -> &str {
        self.stored.as_deref().unwrap_or(&self.name)
    }

    /// The table's schema.
    pub fn schema(&self) -> &str {
        self.schema.as_deref().unwrap_or("public")
    }

    /// The table's name within its schema (`pg_class.relname`).
    pub fn relname(&self) -> &str {
        relation_name(self.schema.as_deref(), &self.name)
    }

    /// The table as a statement names it: `"docs"`, or `"vecs"."docs"` outside
    /// `public`.
    pub fn sql_name(&self) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        match &self.schema {
            Some(schema) => format!("{}.{}", quote(schema), quote(self.relname())),
            None => quote(&self.name),
        }
    }

    /// The table's TTL in seconds, if rows expire.
    pub fn ttl_seconds(&self) -> Option<u64> {
        self.options
            .get("ttl")
            .and_then(|t| options::parse_ttl(t).ok())
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// A table created without a primary key (and given none since): its key is the
    /// hidden [`ROW_ID`] column.
    pub fn hidden_key(&self) -> bool {
        matches!(self.primary_key.as_slice(), [k] if self.columns[*k].hidden())
    }

    /// A table with the hidden [`ROW_ID`] column (its key, or what was its key before
    /// `ADD PRIMARY KEY`): `*` over it names the other columns.
    pub fn has_hidden_column(&self) -> bool {
        self.columns.iter().any(ColumnDef::hidden)
    }

    /// Positions of the columns a user sees (`SELECT *`, `INSERT`/`COPY` without a
    /// column list): all but the hidden key.
    pub fn visible(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&c| !self.columns[c].hidden())
            .collect()
    }

    pub fn dimension(&self) -> usize {
        self.vector_column.map_or(0, |v| self.dimension_of(v))
    }

    /// The declared dimension of a vector column (0: none declared, or not a vector).
    pub fn dimension_of(&self, column: usize) -> usize {
        match self.columns.get(column).map(|c| &c.ty) {
            Some(ColumnType::SparseVec(n)) => *n,
            Some(t) => t.vector_dims().unwrap_or(0),
            None => 0,
        }
    }

    /// Every indexed vector column and its distance, `vector_column` first.
    pub fn vectors(&self) -> Vec<(usize, Distance)> {
        self.vector_column
            .map(|v| (v, self.distance))
            .into_iter()
            .chain(self.more_vectors.iter().copied())
            .collect()
    }

    /// Whether an indexed vector column is kept at half precision (`halfvec`).
    pub fn half_precision(&self, column: usize) -> bool {
        matches!(
            self.columns.get(column).map(|c| &c.ty),
            Some(ColumnType::HalfVec(_))
        )
    }

    /// The distance an indexed vector column is searched by; `None` for a column the
    /// index does not hold (not a vector, or a vector without a declared dimension).
    pub fn distance_of(&self, column: usize) -> Option<Distance> {
        self.vectors()
            .into_iter()
            .find(|(c, _)| *c == column)
            .map(|(_, d)| d)
    }

    /// The table's own distance (`WITH (distance = ...)`, cosine by default): what a
    /// vector column is searched by until an index's operator class says otherwise.
    pub fn default_distance(&self) -> Distance {
        self.options
            .get("distance")
            .and_then(|d| Distance::parse(d))
            .unwrap_or(Distance::Cosine)
    }

    /// Make the index hold these vector columns (positions and distances, in column
    /// order): the first becomes `vector_column`.
    pub fn set_vectors(&mut self, mut vectors: Vec<(usize, Distance)>) {
        vectors.sort_by_key(|(c, _)| *c);
        let mut all = vectors.into_iter();
        match all.next() {
            Some((c, d)) => {
                self.vector_column = Some(c);
                self.distance = d;
            }
            None => self.vector_column = None,
        }
        self.more_vectors = all.collect();
    }

    /// Whether the vector index can hold a column searched by `distance`: a dense vector
    /// with a declared dimension (by any distance), a sparsevec by the inner product or
    /// cosine (Qdrant's sparse vectors are scored by the inner product alone).
    pub fn index_holds(&self, column: usize, distance: Distance) -> bool {
        match self.columns.get(column).map(|c| &c.ty) {
            Some(ColumnType::SparseVec(_)) => distance != Distance::L2,
            Some(t) => t.vector_dims().is_some_and(|n| n > 0),
            None => false,
        }
    }

    /// Whether a column is a `sparsevec` (Qdrant's sparse vectors, when it is indexed).
    pub fn is_sparse(&self, column: usize) -> bool {
        matches!(
            self.columns.get(column).map(|c| &c.ty),
            Some(ColumnType::SparseVec(_))
        )
    }

    /// The name of a vector column's vectors in the collection: none (Qdrant's default
    /// vector) when the table indexes one dense vector column, else the column's stored
    /// name (sparse vectors are always named, in Qdrant).
    pub fn index_vector_name(&self, column: usize) -> String {
        if self.more_vectors.is_empty() && !self.is_sparse(column) {
            String::new()
        } else {
            self.columns[column].stored_name().to_string()
        }
    }

    /// Every column of a pgvector type, indexed or not.
    pub fn vector_columns(&self) -> impl Iterator<Item = usize> + '_ {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.ty.is_vector())
            .map(|(i, _)| i)
    }

    /// Whether the table has a vector index (a vector column).
    pub fn indexed(&self) -> bool {
        self.vector_column.is_some()
    }

    /// The vector column's name, if the table has one.
    pub fn vector_name(&self) -> Option<&str> {
        self.vector_column.map(|v| self.columns[v].name.as_str())
    }

    /// The vector index's column, or 42809 naming what needed it: a table of rows only
    /// has no index.
    pub fn require_vector(&self, what: &str) -> crate::error::Result<usize> {
        self.vector_column.ok_or_else(|| {
            crate::error::Error::WrongObjectType(format!(
                "table \"{}\" has no vector column: {what} needs one",
                self.name
            ))
        })
    }

    /// The vector column a search names, or the table's only one when it names none:
    /// 42703 for no such column, 42809 for one that is not a vector (or a table without
    /// one), 42702 when the table has several and none is named.
    pub fn search_column(&self, name: Option<&str>, what: &str) -> crate::error::Result<usize> {
        use crate::error::Error;
        if let Some(name) = name {
            let c = self
                .column_index(name)
                .ok_or_else(|| Error::UndefinedColumnOf(name.to_string(), self.name.clone()))?;
            if !self.columns[c].ty.is_vector() {
                return Err(Error::WrongObjectType(format!(
                    "column \"{name}\" of table \"{}\" is not a vector column: {what} searches a vector column",
                    self.name
                )));
            }
            return Ok(c);
        }
        let all: Vec<usize> = self.vector_columns().collect();
        match all.as_slice() {
            [c] => Ok(*c),
            [] => Err(Error::WrongObjectType(format!(
                "table \"{}\" has no vector column: {what} needs one",
                self.name
            ))),
            several => {
                let names: Vec<&str> = several
                    .iter()
                    .map(|&c| self.columns[c].name.as_str())
                    .collect();
                Err(Error::Ambiguous(format!(
                    "table \"{}\" has {} vector columns ({}): name the one to search, as in vector_search('{}', '{}', query, k)",
                    self.name,
                    several.len(),
                    names.join(", "),
                    self.name,
                    names[0]
                )))
            }
        }
    }

    pub fn key_of(&self, row: &[Value]) -> Vec<Value> {
        self.primary_key.iter().map(|i| row[*i].clone()).collect()
    }

    /// The primary key's constraint (and index) name: `<table>_pkey` as the table was
    /// named when it was made (a RENAME keeps it, as in Postgres).
    pub fn pk_name(&self) -> String {
        self.pk_constraint
            .clone()
            .unwrap_or_else(|| format!("{}_pkey", self.relname()))
    }

    /// The unique violation for a key that is already taken, worded as Postgres does.
    pub fn duplicate_key(&self, key: &[Value]) -> crate::error::Error {
        let cols: Vec<&str> = self
            .primary_key
            .iter()
            .map(|i| self.columns[*i].name.as_str())
            .collect();
        let vals: Vec<String> = key.iter().map(display_key_value).collect();
        crate::error::Error::UniqueViolation {
            message: format!(
                "duplicate key value violates unique constraint \"{}\"",
                self.pk_name()
            ),
            detail: format!(
                "Key ({})=({}) already exists.",
                cols.join(", "),
                vals.join(", ")
            ),
            table: self.name.clone(),
            constraint: self.pk_name(),
        }
    }

    /// Columns that go into the index payload: every scalar or array column that a
    /// pushed-down filter may test (everything but the vectors).
    pub fn payload_columns(&self) -> impl Iterator<Item = (usize, &ColumnDef)> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.ty.is_vector() && !self.kept_out(&c.name))
    }

    /// A table for unit tests: nullable columns, the first the key, the vector column
    /// found by its type, cosine distance, no options or constraints.
    #[cfg(test)]
    pub fn for_tests(name: &str, columns: &[(&str, ColumnType)]) -> TableDef {
        TableDef {
            name: name.into(),
            schema: None,
            stored: None,
            pk_constraint: None,
            columns: columns
                .iter()
                .map(|(n, ty)| ColumnDef {
                    name: n.to_string(),
                    ty: ty.clone(),
                    nullable: true,
                    varchar: None,
                    default: None,
                    identity: None,
                    stored: None,
                })
                .collect(),
            primary_key: vec![0],
            vector_column: columns.iter().position(|(_, ty)| ty.is_vector()),
            distance: Distance::Cosine,
            more_vectors: vec![],
            options: Default::default(),
            unique: vec![],
            checks: vec![],
            foreign_keys: vec![],
            json_indexes: vec![],
            indexes: vec![],
        }
    }

    /// The payload fields the json indexes name (`meta.topic`, the keys field), each
    /// once, with their kind; none for a column kept out of the payload.
    pub fn json_index_fields(&self) -> Vec<(String, JsonIndexKind)> {
        let mut out: Vec<(String, JsonIndexKind)> = Vec::new();
        for ix in &self.json_indexes {
            let Some(col) = self.columns.get(ix.column) else {
                continue;
            };
            if self.kept_out(&col.name) {
                continue;
            }
            let field = match ix.kind {
                JsonIndexKind::Keys => filter::JSON_KEYS_FIELD.to_string(),
                _ => std::iter::once(col.name.as_str())
                    .chain(ix.path.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join("."),
            };
            if !out.iter().any(|(f, k)| *f == field && *k == ix.kind) {
                out.push((field, ix.kind));
            }
        }
        out
    }

    /// Whether the table option `payload_exclude = 'a, b'` keeps a column out of the
    /// index payload: filters on it are then applied after the join.
    pub fn kept_out(&self, column: &str) -> bool {
        self.options
            .get("payload_exclude")
            .is_some_and(|l| l.split(',').any(|c| c.trim() == column))
    }
}

pub type Row = Vec<Value>;

/// A sequence as `CREATE SEQUENCE`, a `serial` column or an identity column defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceDef {
    /// The sequence's name in the catalog, qualified as a table's is ([`qualified`]).
    pub name: String,
    /// The schema, when it is not `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// `smallint`, `integer` or `bigint` (Postgres' `AS type`).
    pub ty: ColumnType,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cycle: bool,
    /// The `(table, column)` that owns it: dropped with the table. The table is named
    /// by its stored name ([`TableDef::stored_name`]), which a RENAME keeps.
    #[serde(default)]
    pub owned_by: Option<(String, String)>,
    /// A random number given at `CREATE`, which tells a sequence from one made again
    /// under its name (none for sequences made before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<u64>,
}

impl SequenceDef {
    /// Whether `other` is this sequence, perhaps altered (another owner, type or
    /// bounds), rather than one dropped and made again.
    pub fn same_sequence(&self, other: &SequenceDef) -> bool {
        match (self.created, other.created) {
            (Some(a), Some(b)) => a == b && self.name == other.name,
            _ => {
                SequenceDef {
                    owned_by: None,
                    ..self.clone()
                } == SequenceDef {
                    owned_by: None,
                    ..other.clone()
                }
            }
        }
    }

    /// The sequence's schema.
    pub fn schema(&self) -> &str {
        self.schema.as_deref().unwrap_or("public")
    }

    /// The sequence's name within its schema.
    pub fn relname(&self) -> &str {
        relation_name(self.schema.as_deref(), &self.name)
    }
}

/// Where a sequence stands: the last value taken, and whether it was taken (a new
/// sequence, or `setval(s, v, false)`, has `v` still to give).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequenceState {
    pub last: i64,
    pub called: bool,
}

/// Whether an insert may replace an existing row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Fail with a unique violation if any key exists; nothing is written then.
    InsertNew,
    /// Replace rows with the same key.
    Upsert,
}

/// One table's share of a committed transaction.
#[derive(Debug, Clone)]
pub struct TableChanges {
    pub def: std::sync::Arc<TableDef>,
    /// Rows inserted where the transaction found no row: still free at commit, or 23505.
    pub new: Vec<Row>,
    /// Rows written over whatever is there.
    pub put: Vec<Row>,
    /// Keys deleted.
    pub delete: Vec<Vec<Value>>,
}

impl TableChanges {
    /// Every key the changes write or delete.
    pub fn keys(&self) -> Vec<Vec<Value>> {
        self.new
            .iter()
            .chain(&self.put)
            .map(|r| self.def.key_of(r))
            .chain(self.delete.iter().cloned())
            .collect()
    }
}

/// Who holds a value of a unique constraint: a row's encoded key, since `at`
/// (microseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UniqueHolder {
    pub key: Vec<u8>,
    pub at: i64,
}

/// The kinds of names the catalog keeps besides tables and sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    Schema,
    Database,
}

/// The row store: the source of truth for rows and for the catalog of tables.
#[async_trait]
pub trait RowStore: Send + Sync + 'static {
    async fn list_tables(&self) -> Result<Vec<TableDef>>;
    /// How long a proxy may use the catalog it read without asking whether it changed,
    /// for a store that other processes change the catalog of (a CQL cluster); `None`
    /// for a store that only this process opens. A change to the catalog returns only
    /// after this long, so that every other proxy has seen it by then.
    fn catalog_lease(&self) -> Option<std::time::Duration> {
        None
    }
    /// A number that changes with every change to the catalog (tables and sequences),
    /// for a store with a [`RowStore::catalog_lease`].
    async fn catalog_version(&self) -> Result<i64> {
        Ok(0)
    }
    async fn create_table(&self, def: &TableDef) -> Result<()>;
    /// Drop a table: its catalog entry, its rows and its outbox entries.
    async fn drop_table(&self, def: &TableDef) -> Result<()>;
    /// Replace a table's catalog entry (its options changed).
    async fn update_table(&self, def: &TableDef) -> Result<()>;
    /// Move a table's catalog entry from the name `old` to `new.name` (42P07 if that is
    /// taken, across proxies); its rows stay where they are, under `new.stored_name()`.
    async fn rename_table(&self, old: &str, new: &TableDef) -> Result<()>;
    /// The names of one kind the catalog keeps: the schemas CREATE SCHEMA made
    /// (`public` is always there and not among them), the databases CREATE DATABASE
    /// made.
    async fn list_names(&self, kind: Names) -> Result<Vec<String>>;
    /// Enter a name; false if it is there already (entered by any proxy).
    async fn add_name(&self, kind: Names, name: &str) -> Result<bool>;
    /// Take a name out (what it held is dropped first, by the caller).
    async fn remove_name(&self, kind: Names, name: &str) -> Result<()>;
    /// Every sequence's definition.
    async fn list_sequences(&self) -> Result<Vec<SequenceDef>>;
    /// Create a sequence (42P07 if the name is taken) with `state`.
    async fn create_sequence(&self, def: &SequenceDef, state: SequenceState) -> Result<()>;
    async fn drop_sequence(&self, name: &str) -> Result<()>;
    /// Give a sequence a new definition, its state as it is (one write, so that no
    /// proxy's values are taken twice); false if there is no such sequence.
    async fn set_sequence_def(&self, def: &SequenceDef) -> Result<bool>;
    /// A sequence's state (`None`: no such sequence).
    async fn sequence_state(&self, name: &str) -> Result<Option<SequenceState>>;
    /// Put `new` in place of `old`, atomically across proxies; false if the state is no
    /// longer `old` (another proxy took values first).
    async fn sequence_swap(
        &self,
        name: &str,
        old: SequenceState,
        new: SequenceState,
    ) -> Result<bool>;
    /// Add columns at the end of a table: `new` is `old` with them. The catalog entry
    /// changes, and every row stored before gets `fill` (one value per added column) in
    /// them; a row written from `ts` on keeps its own.
    async fn add_columns(
        &self,
        old: &TableDef,
        new: &TableDef,
        fill: &[Value],
        ts: i64,
    ) -> Result<()>;
    /// Remove columns: `new` is `old` without the columns at `dropped` (positions in
    /// `old`). The catalog entry changes and the values go from every stored row.
    async fn drop_columns(&self, old: &TableDef, new: &TableDef, dropped: &[usize]) -> Result<()>;
    /// Make `new` (`None`: nobody) the holder of `value` in the unique space `space` (a
    /// unique constraint), if `expected` (`None`: nobody) holds it now, atomically across
    /// proxies (a CQL lightweight transaction, or a redb write transaction). `Err` with
    /// the holder there is when it is not `expected`. With both `None` it only reads.
    async fn unique_swap(
        &self,
        space: &str,
        value: &[u8],
        expected: Option<&UniqueHolder>,
        new: Option<&UniqueHolder>,
    ) -> Result<std::result::Result<(), Option<UniqueHolder>>>;
    /// Write rows atomically: all or none. Every written key gets an outbox entry
    /// stamped `ts` (see [`OutboxEntry`]) no later than the row itself.
    async fn write(&self, table: &TableDef, rows: Vec<Row>, mode: WriteMode, ts: i64)
    -> Result<()>;
    /// Delete rows by key, with outbox entries as for `write`; returns how many existed.
    async fn delete(&self, table: &TableDef, keys: Vec<Vec<Value>>, ts: i64) -> Result<u64>;
    /// Apply a transaction's changes to several tables, with an outbox entry stamped
    /// `ts` for every key: all of them or, on an error or a crash before the commit
    /// point, none of them. `Ok(false)`: committed, but the store failed before all the
    /// rows were written; [`RowStore::recover`] finishes them (as after a crash past the
    /// commit point).
    async fn commit(&self, changes: &[TableChanges], ts: i64) -> Result<bool>;
    /// Finish commits that were interrupted at least `min_age` ago, where the store needs
    /// that; how many.
    async fn recover(&self, _min_age: std::time::Duration) -> Result<u64> {
        Ok(0)
    }
    /// Remove rows whose TTL has passed, where the store does not do it by itself;
    /// returns how many.
    async fn purge_expired(&self, _table: &TableDef) -> Result<u64> {
        Ok(0)
    }
    /// Pending outbox entries of a table stamped at or before `upto` (`i64::MAX`: all of
    /// them): `limit` or, where the store keeps a write's entries together (oldest write
    /// first), up to the end of the write that reaches `limit`.
    async fn outbox_pending(
        &self,
        table: &TableDef,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>>;
    /// Clear entries whose change reached the index; an entry of a later write (a larger
    /// `ts`) for the same key stays. A store may clear the other entries of an entry's
    /// write with it: pass a write's entries all at once, as its writer has them or as
    /// [`RowStore::outbox_pending`] returns them.
    async fn outbox_clear(&self, table: &TableDef, entries: &[OutboxEntry]) -> Result<()>;
    /// Fetch rows by key, in the order of `keys`; `None` where a row is missing.
    async fn get(&self, table: &TableDef, keys: &[Vec<Value>]) -> Result<Vec<Option<Row>>>;
    /// Stream every row in batches of about `batch` rows; `limit` stops early.
    fn scan(
        &self,
        table: &TableDef,
        batch: usize,
        limit: Option<usize>,
    ) -> BoxStream<'static, Result<Vec<Row>>>;
}

/// A row whose index point may not reflect it yet: written by the row store together
/// with (or before) the row change, cleared once the index has the change. The
/// reconciler replays entries by reading the row's current state, so replays are
/// idempotent and the newest row wins.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub key: Vec<Value>,
    /// When the change was made, in microseconds since the epoch ([`write_stamp`]).
    pub ts: i64,
    /// Who stamped it: `None` for this process's own writes (which the store knows as
    /// its own), `Some(id)` as read back from a store that tells its writers apart. The
    /// entries of one write share `ts` and `writer`.
    pub writer: Option<i64>,
}

impl OutboxEntry {
    /// An entry of a write made by this process.
    pub fn own(key: Vec<Value>, ts: i64) -> OutboxEntry {
        OutboxEntry {
            key,
            ts,
            writer: None,
        }
    }
}

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// The stamp of a write (its rows' time, its outbox entries'): now, in microseconds
/// since the epoch, and never the same twice in this process, so that the entries of
/// one write are told from another's by their stamp.
pub fn write_stamp() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = now_micros();
    let prev = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or_default();
    now.max(prev + 1)
}

/// A vector as the index holds it: dense (`vector`, `halfvec`), or sparse (`sparsevec`,
/// Qdrant's sparse vectors: its non-zero elements by 0-based index).
#[derive(Debug, Clone, PartialEq)]
pub enum IndexVector {
    Dense(Vec<f32>),
    Sparse(crate::types::sparse::SparseVector),
}

/// The vector a search is nearest to, in the form of the searched column's vectors.
#[derive(Debug, Clone, Copy)]
pub enum QueryVector<'a> {
    Dense(&'a [f32]),
    Sparse(&'a crate::types::sparse::SparseVector),
}

/// One point of the vector index: derived id, vectors and filter payload.
#[derive(Debug, Clone)]
pub struct Point {
    pub id: uuid::Uuid,
    /// The row's vectors by their names in the collection (see
    /// [`TableDef::index_vector_name`]); a NULL vector is absent.
    pub vectors: Vec<(String, IndexVector)>,
    /// Payload values by column name, plus the encoded key.
    pub payload: serde_json::Map<String, serde_json::Value>,
}

/// A search hit: the row key (decoded from the payload) and the index's own score.
#[derive(Debug, Clone)]
pub struct Hit {
    pub key: Vec<Value>,
    pub score: f32,
}

/// Per-query search settings.
#[derive(Debug, Clone, Default)]
pub struct SearchParams {
    pub hnsw_ef: Option<usize>,
    pub exact: bool,
    /// With quantization: fetch this many times more candidates before rescoring.
    pub oversampling: Option<f64>,
    /// With quantization: rescore candidates with the original vectors.
    pub rescore: Option<bool>,
}

/// One page of a nearest-neighbour search: the `limit` points nearest to `vector` that
/// pass `filter`, skipping the first `offset`.
#[derive(Debug, Clone, Copy)]
pub struct SearchQuery<'a> {
    /// The name of the searched vectors in the collection (see
    /// [`TableDef::index_vector_name`]).
    pub using: &'a str,
    pub vector: QueryVector<'a>,
    pub filter: Option<&'a Predicate>,
    pub limit: usize,
    pub offset: usize,
    pub params: &'a SearchParams,
}

/// The vector index: one collection per table.
#[async_trait]
pub trait VectorIndex: Send + Sync + 'static {
    /// Whether every proxy on a cluster uses this index (a Qdrant server), rather than
    /// one of its own (the embedded index), which it keeps in step with the catalog.
    fn shared(&self) -> bool {
        false
    }
    /// Create the table's collection, replacing one of the same name.
    async fn create_collection(&self, table: &TableDef) -> Result<()>;
    /// Whether the index has a collection for this table.
    async fn has_collection(&self, table: &TableDef) -> Result<bool>;
    /// Apply changed index options (`ALTER TABLE ... SET`) to the table's collection.
    async fn update_collection(&self, table: &TableDef) -> Result<()>;
    /// Make the payload indexes that the table's json indexes name in its existing
    /// collection (after `CREATE INDEX`); those it has already stay.
    async fn index_json_fields(&self, table: &TableDef) -> Result<()>;
    async fn drop_collection(&self, table: &TableDef) -> Result<()>;
    /// Apply points; durable when this returns.
    async fn upsert(&self, table: &TableDef, points: Vec<Point>) -> Result<()>;
    /// Delete points; durable when this returns.
    async fn delete(&self, table: &TableDef, ids: Vec<uuid::Uuid>) -> Result<()>;
    /// [`VectorIndex::upsert`], visible to searches when this returns but durable only
    /// after [`VectorIndex::make_durable`]: writers whose outbox entry keeps the change
    /// until then need not wait for the index to reach the disk. By default, durable at
    /// once.
    async fn upsert_unflushed(&self, table: &TableDef, points: Vec<Point>) -> Result<()> {
        self.upsert(table, points).await
    }
    /// [`VectorIndex::delete`], durable only after [`VectorIndex::make_durable`].
    async fn delete_unflushed(&self, table: &TableDef, ids: Vec<uuid::Uuid>) -> Result<()> {
        self.delete(table, ids).await
    }
    /// A bulk load into the table's collection begins (`true`) or ends (`false`): the
    /// index may leave building its graph until the last load ends, as Qdrant advises
    /// for large uploads, rather than rebuild it over and over while the points arrive.
    /// Searches meanwhile stay exact on what is not built yet. Beginning may wait for a
    /// graph build under way to end (call it where blocking is allowed). By default
    /// nothing changes.
    fn bulk_load(&self, _table: &TableDef, _loading: bool) {}
    /// Make every change applied to the table's collection so far durable; `false` if
    /// the index put that off (a bulk load is under way, and the index flushes it now
    /// and then, not after every batch): the caller keeps what waits on it and asks
    /// again later.
    async fn make_durable(&self, _table: &TableDef) -> Result<bool> {
        Ok(true)
    }
    /// Whether the table's collection is still being rebuilt after an option change, so
    /// that an approximate search of it now could answer worse than the settled index:
    /// searches then ask for an exact one. By default never (an index that has rebuilt
    /// by the time [`VectorIndex::update_collection`] returns).
    async fn rebuilding(&self, _table: &TableDef) -> Result<bool> {
        Ok(false)
    }
    /// One page of nearest points (see [`SearchQuery`]).
    async fn search(&self, table: &TableDef, query: &SearchQuery<'_>) -> Result<Vec<Hit>>;
    /// The content hash (see [`HASH_FIELD`]) of each of these points the index has.
    async fn point_hashes(
        &self,
        table: &TableDef,
        ids: &[uuid::Uuid],
    ) -> Result<std::collections::HashMap<uuid::Uuid, String>>;
    /// A page of every point: its id and encoded row key, from `offset`; the next
    /// offset, or `None` at the end.
    async fn scroll_keys(
        &self,
        table: &TableDef,
        offset: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<(Vec<(uuid::Uuid, Option<String>)>, Option<uuid::Uuid>)>;
    /// Delete the points whose rows have expired (`EXPIRES_FIELD` before `now`).
    async fn delete_expired(&self, table: &TableDef, now: i64) -> Result<()>;
    /// The filter sent for a predicate, in the index's own notation (for EXPLAIN).
    fn explain_filter(&self, table: &TableDef, filter: &Predicate) -> Result<String>;
    /// Whether the index answers at all (the circuit breaker's probe).
    async fn health(&self) -> Result<()>;
    /// Make everything written so far durable.
    async fn flush(&self) -> Result<()>;
}

/// Payload field holding a hash of the point's vector and payload: a point whose hash
/// differs from its row's is stale.
pub const HASH_FIELD: &str = "_vg_hash";
/// Payload field holding when the row expires (microseconds), for tables with a TTL.
pub const EXPIRES_FIELD: &str = "_vg_expires";

/// FNV-1a, 64 bits: stable across builds and platforms.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Build the index point for a row.
pub fn point_for_row(table: &TableDef, row: &[Value]) -> Option<Point> {
    let vectors: Vec<(String, IndexVector)> = table
        .vectors()
        .into_iter()
        .filter_map(|(c, d)| {
            let v = match &row[c] {
                Value::Vector(v) => IndexVector::Dense(v.clone()),
                // A sparsevec is kept as its text; its index holds it normalised when it
                // is searched by cosine distance (Qdrant scores sparse vectors by their
                // dot product alone).
                Value::Text(t) if table.is_sparse(c) => {
                    let s = crate::types::sparse::SparseVector::parse(t).ok()?;
                    IndexVector::Sparse(if d == Distance::Cosine {
                        s.normalized()
                    } else {
                        s
                    })
                }
                _ => return None,
            };
            Some((table.index_vector_name(c), v))
        })
        .collect();
    if vectors.is_empty() {
        return None;
    }
    let key = table.key_of(row);
    let mut payload = serde_json::Map::new();
    let mut json_keys = Vec::new();
    for (i, col) in table.payload_columns() {
        let value = match (&col.ty, &row[i]) {
            (ColumnType::Jsonb | ColumnType::Json, Value::Text(t)) => {
                filter::json_payload(t, &col.name, &mut json_keys)
            }
            (_, v) => filter::payload_value(v),
        };
        payload.insert(col.name.clone(), value);
    }
    if !json_keys.is_empty() {
        json_keys.sort();
        json_keys.dedup();
        payload.insert(
            filter::JSON_KEYS_FIELD.to_string(),
            serde_json::Value::from(json_keys),
        );
    }
    payload.insert(
        keys::KEY_FIELD.to_string(),
        serde_json::Value::String(keys::encode_hex(&key)),
    );
    // The payload map is ordered by key, so its JSON text is canonical.
    let text = serde_json::Value::Object(payload.clone()).to_string();
    let hash = fnv1a(
        vectors
            .iter()
            .flat_map(|(name, v)| {
                let mut bytes: Vec<u8> = name.bytes().collect();
                match v {
                    IndexVector::Dense(v) => bytes.extend(v.iter().flat_map(|x| x.to_le_bytes())),
                    IndexVector::Sparse(s) => bytes.extend(
                        s.indices
                            .iter()
                            .zip(&s.values)
                            .flat_map(|(i, x)| i.to_le_bytes().into_iter().chain(x.to_le_bytes())),
                    ),
                }
                bytes
            })
            .chain(text.bytes()),
    );
    payload.insert(
        HASH_FIELD.to_string(),
        serde_json::Value::String(format!("{hash:016x}")),
    );
    // Not hashed: a point written later for the same row expires later, which is safe
    // (the row itself is gone from the row store at its own expiry).
    if let Some(ttl) = table.ttl_seconds() {
        payload.insert(
            EXPIRES_FIELD.to_string(),
            serde_json::Value::from(now_micros() + ttl as i64 * 1_000_000),
        );
    }
    Some(Point {
        id: keys::point_id(table.stored_name(), &key),
        vectors,
        payload,
    })
}

/// A key value as Postgres prints it in a DETAIL line.
pub fn display_key_value(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => if *b { "t" } else { "f" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Text(s) => s.clone(),
        Value::Uuid(u) => u.to_string(),
        Value::Timestamp(t) => chrono::DateTime::from_timestamp_micros(*t)
            .map(|d| d.naive_utc().to_string())
            .unwrap_or_default(),
        Value::Date(d) => (chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
            + chrono::Duration::days(*d as i64))
        .to_string(),
        Value::Decimal(u, s) => crate::types::format_decimal(*u, *s),
        other => format!("{other:?}"),
    }
}
