//! The engine core, below the SQL layer: the catalog of tables, the write protocol
//! (row store + outbox + vector index), the index's circuit breaker and the reconciler.
//! The SQL layer plans statements and calls in here; nothing here knows SQL or the wire.
//!
//! - [`Core`]: what every session shares: the two stores, the catalog, the breaker,
//!   the reconciler's record; its background tasks stop with [`Core::shutdown`].
//! - [`write`]: one function per verb of the write protocol (insert or upsert rows,
//!   delete keys), and the DDL that touches both stores ([`ddl`]).
//! - [`health`]: the breaker (exact answers from the rows while the index is away).
//! - [`sync`]: the outbox replay, backfill, `reindex` and `attach`.

pub mod advisory;
pub mod catalog;
pub mod ddl;
pub mod health;
pub mod progress;
pub mod row_locks;
pub mod sequences;
pub mod sync;
pub mod tx;
pub mod unique;
pub mod write;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::store::{RowStore, TableDef, VectorIndex};

/// Limits and timings of an engine.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_k: usize,
    pub fallback_max_rows: usize,
    /// Most rows one transaction block may change (54000 beyond).
    pub max_transaction_rows: usize,
    /// How often the index is probed while its circuit breaker is open.
    pub probe_interval: Duration,
    /// How often the outbox is replayed, and how old an entry must be to be replayed.
    pub reconcile_interval: Duration,
    pub reconcile_grace: Duration,
}

/// What every session shares: the stores and the catalog of tables.
pub struct Core {
    pub rows: Arc<dyn RowStore>,
    pub index: Arc<dyn VectorIndex>,
    tables: RwLock<HashMap<String, Arc<TableDef>>>,
    /// The schemas CREATE SCHEMA made (`public` is not among them).
    schemas: RwLock<std::collections::BTreeSet<String>>,
    pub max_k: usize,
    /// The vector index's circuit breaker.
    pub health: health::IndexHealth,
    /// Most rows an exact fallback scan may read before it refuses with 53000.
    pub fallback_max_rows: usize,
    /// Most rows one transaction block may change.
    pub max_transaction_rows: usize,
    /// The reconciler's record per table.
    pub sync: Mutex<HashMap<String, sync::TableSync>>,
    /// Outbox entries of changes the index has applied but not yet made durable (see
    /// [`write::spawn_clearer`]).
    pub(crate) unflushed: Arc<write::Unflushed>,
    /// Cancelled on shutdown: the probe, the reconciler and the clearer stop.
    stop: CancellationToken,
    /// Bumped by every change to the catalog: a plan made before is stale.
    generation: std::sync::atomic::AtomicU64,
    /// Tables whose collection is being dropped and built again from the rows (a new
    /// distance): searches of them scan the rows until it is done.
    rebuilding: Mutex<std::collections::HashSet<String>>,
    /// The sequences, and the values taken from them not yet handed out.
    pub(crate) sequences: sequences::Sequences,
    /// The shared catalog's version this proxy has, and when it last asked.
    watch: catalog::Watch,
    /// Tables this proxy is creating, changing or dropping right now.
    changing: Mutex<std::collections::HashSet<String>>,
    /// The advisory locks this proxy's sessions hold.
    pub(crate) advisory: advisory::Held,
    /// The COPYs running on this proxy (`pg_stat_progress_copy`).
    pub copies: progress::Copies,
    /// The rows this proxy's sessions are changing.
    pub(crate) row_locks: row_locks::RowLocks,
    /// Each table's gate for writes to its rows, by stored name (see [`Core::gate`]).
    gates: Mutex<std::collections::HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

/// A table's collection rebuilt from its rows while this lives.
pub(crate) struct RebuildGuard<'a> {
    core: &'a Core,
    table: String,
}

impl Drop for RebuildGuard<'_> {
    fn drop(&mut self) {
        self.core.rebuilding.lock().remove(&self.table);
    }
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core").finish_non_exhaustive()
    }
}

impl Core {
    /// The gate of writes to the rows stored under `stored`: each write to the row store
    /// passes it shared ([`Core::pass_gate`]); a rewrite of the table (ALTER TABLE
    /// moving its rows to a new stored name) holds it closed while it copies the last
    /// changes and swaps the new table in, so that no write of this proxy falls between.
    pub(crate) fn gate(&self, stored: &str) -> Arc<tokio::sync::RwLock<()>> {
        let mut gates = self.gates.lock();
        match gates.get(stored) {
            Some(g) => g.clone(),
            None => gates.entry(stored.to_string()).or_default().clone(),
        }
    }

    /// Pass `def`'s gate, which stays open while the guard lives: 40001 if the table was
    /// rewritten meanwhile (its rows are under another stored name now, maybe of other
    /// types, so the statement's rows cannot go there as they are).
    pub(crate) async fn pass_gate(
        &self,
        def: &TableDef,
    ) -> Result<tokio::sync::OwnedRwLockReadGuard<()>> {
        let open = self.gate(def.stored_name()).read_owned().await;
        match self.table(&def.name) {
            Ok(now) if now.stored_name() != def.stored_name() => Err(Error::Transaction {
                code: "40001",
                message: format!(
                    "table \"{}\" was rewritten by ALTER TABLE while this statement ran: run it again",
                    def.relname()
                ),
            }),
            _ => Ok(open),
        }
    }

    /// Mark `table` as rebuilt from its rows until the guard is dropped.
    pub(crate) fn begin_rebuild(&self, table: &str) -> RebuildGuard<'_> {
        self.rebuilding.lock().insert(table.to_string());
        RebuildGuard {
            core: self,
            table: table.to_string(),
        }
    }

    /// Whether `table`'s collection is being rebuilt from the rows right now (its index
    /// answers only part of the table meanwhile).
    pub fn rebuilding(&self, table: &str) -> bool {
        self.rebuilding.lock().contains(table)
    }

    /// Load the catalog from the row store, bring the index up to date with the rows
    /// (or open the breaker if it cannot be reached), and start the probe and the
    /// reconciler.
    pub async fn open(
        rows: Arc<dyn RowStore>,
        index: Arc<dyn VectorIndex>,
        limits: &Limits,
    ) -> Result<Arc<Core>> {
        // Commits a crash interrupted are finished before anything reads the rows; if
        // that fails, the reconciler tries again (serving is not held up for it).
        match rows.recover(Duration::ZERO).await {
            Ok(0) => {}
            Ok(finished) => {
                tracing::info!(finished, "interrupted commits finished from the commit log")
            }
            Err(e) => {
                tracing::error!(error = %e, "interrupted commits not finished at start-up; the reconciler retries")
            }
        }
        let sent = std::time::Instant::now();
        let version = rows.catalog_version().await?;
        let watch = catalog::Watch::new(rows.catalog_lease(), version, sent);
        let defs = rows.list_tables().await?;
        let sequence_defs = rows.list_sequences().await?;
        let schemas = rows.list_names(crate::store::Names::Schema).await?;
        let core = Arc::new(Core {
            schemas: RwLock::new(schemas.into_iter().collect()),
            rows,
            index,
            tables: RwLock::new(
                defs.into_iter()
                    .map(|d| (d.name.clone(), Arc::new(d)))
                    .collect(),
            ),
            max_k: limits.max_k,
            health: Default::default(),
            fallback_max_rows: limits.fallback_max_rows,
            max_transaction_rows: limits.max_transaction_rows,
            sync: Default::default(),
            unflushed: Default::default(),
            stop: CancellationToken::new(),
            generation: Default::default(),
            rebuilding: Default::default(),
            sequences: sequences::Sequences::load(sequence_defs),
            watch,
            changing: Default::default(),
            gates: Default::default(),
            advisory: Default::default(),
            copies: Default::default(),
            row_locks: Default::default(),
        });
        // Tables another proxy created, whose index was lost, or that missed writes while
        // the index was away: bring their collections up to date from the rows now, or,
        // if the index cannot be reached, answer from the rows until it can.
        if let Err(e) = health::recover(&core).await {
            if !health::is_index_failure(&e) {
                return Err(e);
            }
            core.health.trip(&e);
        }
        health::spawn_probe(
            Arc::downgrade(&core),
            limits.probe_interval,
            core.stop.clone(),
        );
        sync::spawn_reconciler(
            Arc::downgrade(&core),
            limits.reconcile_interval,
            limits.reconcile_grace,
            core.stop.clone(),
        );
        write::spawn_clearer(
            Arc::downgrade(&core),
            core.unflushed.clone(),
            core.stop.clone(),
        );
        catalog::spawn_watcher(Arc::downgrade(&core), core.stop.clone());
        Ok(core)
    }

    /// Stop the background tasks (the probe, the reconciler, the clearer), then make
    /// the index durable and clear the outbox entries of what it has.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        write::clear_unflushed(self).await;
    }

    /// The table of that name (42P01 if there is none).
    pub fn table(&self, name: &str) -> Result<Arc<TableDef>> {
        self.tables
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UndefinedTable(name.to_string()))
    }

    /// Every schema's name, `public` first, then those CREATE SCHEMA made, sorted.
    pub fn schema_names(&self) -> Vec<String> {
        std::iter::once("public".to_string())
            .chain(self.schemas.read().iter().cloned())
            .collect()
    }

    /// Whether a schema of this name holds tables (`public`, or one CREATE SCHEMA made).
    pub fn has_schema(&self, name: &str) -> bool {
        name == "public" || self.schemas.read().contains(name)
    }

    /// Put the schemas read from the row store in place of those in memory.
    pub(crate) fn install_schemas(&self, names: Vec<String>) {
        let names: std::collections::BTreeSet<String> = names.into_iter().collect();
        let mut schemas = self.schemas.write();
        if *schemas != names {
            *schemas = names;
            self.bump();
        }
    }

    pub fn has_table(&self, name: &str) -> bool {
        self.tables.read().contains_key(name)
    }

    /// Whether some table's definition satisfies `f`.
    pub fn any_table(&self, f: impl Fn(&TableDef) -> bool) -> bool {
        self.tables.read().values().any(|d| f(d))
    }

    /// The table whose rows are kept under `stored` ([`TableDef::stored_name`]).
    pub fn table_stored_as(&self, stored: &str) -> Option<Arc<TableDef>> {
        let tables = self.tables.read();
        tables
            .get(stored)
            .filter(|d| d.stored_name() == stored)
            .cloned()
            .or_else(|| tables.values().find(|d| d.stored_name() == stored).cloned())
    }

    /// Every table, in no particular order.
    pub fn tables(&self) -> Vec<Arc<TableDef>> {
        self.tables.read().values().cloned().collect()
    }

    /// The pgvector type (without its dimension) of a column of this name in one of
    /// `tables`: what a parameter compared with it is typed as.
    pub fn vector_column_type(
        &self,
        tables: &[String],
        name: &str,
    ) -> Option<crate::types::ColumnType> {
        use crate::types::ColumnType;
        let all = self.tables.read();
        tables
            .iter()
            .filter_map(|t| all.get(t))
            .flat_map(|d| d.columns.iter())
            .find(|c| c.name == name && c.ty.is_vector())
            .map(|c| match c.ty {
                ColumnType::HalfVec(_) => ColumnType::HalfVec(0),
                ColumnType::SparseVec(_) => ColumnType::SparseVec(0),
                _ => ColumnType::Vector(0),
            })
    }

    /// Whether `lower_sql` (a statement's text in lower case) contains the name of a
    /// vector column of some table: a cheap test before reading it for vector operands.
    pub fn mentions_vector_column(&self, lower_sql: &str) -> bool {
        self.tables.read().values().any(|d| {
            d.columns
                .iter()
                .any(|c| c.ty.is_vector() && lower_sql.contains(&c.name.to_ascii_lowercase()))
        })
    }

    /// The names of every table, sorted.
    pub fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tables.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// The name a new table `name` keeps its rows and index under, if not `name`
    /// itself: when the stores cannot take `name`, or a table keeps its rows there
    /// already (one renamed from it), `name` made storable with a random suffix.
    pub fn storage_name_for(&self, name: &str) -> Option<String> {
        let taken = |n: &str| self.tables.read().values().any(|d| d.stored_name() == n);
        if crate::store::storable_name(name) && !taken(name) {
            return None;
        }
        let mut base: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(30)
            .collect();
        if !base.starts_with(|c: char| c.is_ascii_alphabetic())
            || base.starts_with(crate::store::RESERVED_PREFIX)
        {
            base.insert_str(0, "t_");
        }
        loop {
            let candidate = format!("{base}_{:08x}", uuid::Uuid::new_v4().as_fields().0);
            if !taken(&candidate) {
                return Some(candidate);
            }
        }
    }

    /// Whether a FOREIGN KEY of any table references `table`.
    pub fn is_referenced(&self, table: &str) -> bool {
        self.tables
            .read()
            .values()
            .any(|d| d.foreign_keys.iter().any(|f| f.table == table))
    }

    /// A snapshot of the catalog, by table name.
    pub fn catalog(&self) -> HashMap<String, Arc<TableDef>> {
        self.tables.read().clone()
    }

    /// Put a table's new definition in the catalog (the stores already have it).
    pub(crate) fn replace_table(&self, def: TableDef) {
        let mut tables = self.tables.write();
        tables.insert(def.name.clone(), Arc::new(def));
        // Inside the lock: a reload of the catalog compares the generation under it.
        self.bump();
    }

    fn remove_table(&self, name: &str) -> Option<Arc<TableDef>> {
        let mut tables = self.tables.write();
        let removed = tables.remove(name);
        self.bump();
        removed
    }

    /// A number that changes whenever the catalog does: a plan made under another
    /// generation may name tables or columns that are no longer what they were.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Messages for the client that a statement leaves behind (sent as NOTICEs after it):
/// a search answered by the exact scan, a write the index will get later.
#[derive(Debug, Clone, Default)]
pub struct Notices(Arc<Mutex<Vec<Notice>>>);

/// One message for the client: a NOTICE (01000) or a WARNING with its SQLSTATE.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
}

impl Notices {
    pub fn push(&self, message: impl Into<String>) {
        self.add(Notice {
            severity: "NOTICE",
            code: "01000",
            message: message.into(),
        });
    }

    /// A WARNING, as Postgres sends for `BEGIN` inside a block or `COMMIT` outside one.
    pub fn push_warning(&self, code: &'static str, message: impl Into<String>) {
        self.add(Notice {
            severity: "WARNING",
            code,
            message: message.into(),
        });
    }

    fn add(&self, n: Notice) {
        let mut v = self.0.lock();
        if !v.contains(&n) {
            v.push(n);
        }
    }

    pub fn take(&self) -> Vec<Notice> {
        std::mem::take(&mut *self.0.lock())
    }
}
