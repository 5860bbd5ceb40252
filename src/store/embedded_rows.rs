//! The embedded row store: one redb database file, `<data>/rows.redb`. The catalog is
//! the table `vg_catalog` (name → JSON table definition); each SQL table is a redb table
//! `rows:<name>` from the order-preserving key encoding to the bincode-encoded row.
//! Every statement's writes commit as one redb transaction.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{OutboxEntry, Row, RowStore, TableChanges, TableDef, WriteMode, keys};
use crate::error::{Error, Result};
use crate::types::Value;

const CATALOG: TableDefinition<&str, &str> = TableDefinition::new("vg_catalog");
/// Pending index changes: (table name, encoded key) → stamp.
const OUTBOX: TableDefinition<(&str, &[u8]), i64> = TableDefinition::new("vg_outbox");
/// Sequence name -> JSON of its definition and state.
const SEQUENCES: TableDefinition<&str, &str> = TableDefinition::new("vg_sequences");
/// Holders of unique values: (space, value) -> bincode of a [`super::UniqueHolder`].
const UNIQUE: TableDefinition<(&str, &[u8]), &[u8]> = TableDefinition::new("vg_unique");
/// Schema names (CREATE SCHEMA) -> nothing.
const SCHEMAS: TableDefinition<&str, ()> = TableDefinition::new("vg_schemas");
/// Database names (CREATE DATABASE) -> nothing.
const DATABASES: TableDefinition<&str, ()> = TableDefinition::new("vg_databases");

fn names_table(kind: super::Names) -> TableDefinition<'static, &'static str, ()> {
    match kind {
        super::Names::Schema => SCHEMAS,
        super::Names::Database => DATABASES,
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSequence {
    def: super::SequenceDef,
    state: super::SequenceState,
}

/// A change made to each stored row of a table; true if it changed the row.
type RowChange = Box<dyn Fn(&mut Row) -> bool + Send>;

pub struct EmbeddedRows {
    db: Arc<Database>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::row_store(e)
}

fn rows_table(name: &str) -> String {
    format!("rows:{name}")
}

/// A stored row: the bincode row, after its expiry time (8 bytes, big-endian
/// microseconds) in tables with a TTL.
fn encode_row(row: &Row, expires: Option<i64>) -> Result<Vec<u8>> {
    let body = bincode::serialize(row).map_err(Error::internal)?;
    Ok(match expires {
        Some(t) => t.to_be_bytes().into_iter().chain(body).collect(),
        None => body,
    })
}

/// The row, or `None` if it has expired; a row stored before columns were added is
/// padded with NULLs to `width`.
fn decode_row(b: &[u8], ttl: bool, now: i64, width: usize) -> Result<Option<Row>> {
    let body = if ttl {
        let (t, rest) = b
            .split_first_chunk::<8>()
            .ok_or_else(|| Error::internal("corrupt row encoding"))?;
        if i64::from_be_bytes(*t) <= now {
            return Ok(None);
        }
        rest
    } else {
        b
    };
    let mut row: Row =
        bincode::deserialize(body).map_err(|_| Error::internal("corrupt row encoding"))?;
    if row.len() < width {
        row.resize(width, Value::Null);
    }
    Ok(Some(row))
}

/// Reads and write transactions of at most this many keys run on the async worker
/// itself (see `get` and [`super::run_short`]).
const IN_PLACE: usize = 32;

impl EmbeddedRows {
    /// Put `new` in the catalog and, in the same write transaction (which holds off
    /// every other writer meanwhile), pass every stored row of the table through
    /// `change` (which says whether it changed the row).
    async fn change_rows(&self, new: TableDef, change: Option<RowChange>) -> Result<()> {
        self.blocking(move |db| {
            let json = serde_json::to_string(&new).map_err(Error::internal)?;
            let ttl = new.ttl_seconds().is_some();
            let txn = db.begin_write().map_err(err)?;
            {
                let mut cat = txn.open_table(CATALOG).map_err(err)?;
                if cat.get(new.name.as_str()).map_err(err)?.is_none() {
                    return Err(Error::UndefinedTable(new.name.clone()));
                }
                cat.insert(new.name.as_str(), json.as_str()).map_err(err)?;
                if let Some(change) = change {
                    let name = rows_table(new.stored_name());
                    let mut t = txn
                        .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                        .map_err(err)?;
                    let mut changed = Vec::new();
                    for item in t.iter().map_err(err)? {
                        let (k, v) = item.map_err(err)?;
                        let v = v.value();
                        let (prefix, body) = if ttl {
                            v.split_at(8.min(v.len()))
                        } else {
                            (&v[..0], v)
                        };
                        let mut row: Row = bincode::deserialize(body)
                            .map_err(|_| Error::internal("corrupt row encoding"))?;
                        if !change(&mut row) {
                            continue;
                        }
                        let mut bytes = prefix.to_vec();
                        bytes.extend(bincode::serialize(&row).map_err(Error::internal)?);
                        changed.push((k.value().to_vec(), bytes));
                    }
                    for (k, v) in changed {
                        t.insert(k.as_slice(), v.as_slice()).map_err(err)?;
                    }
                }
            }
            txn.commit().map_err(err)
        })
        .await
    }

    /// The page cache's size unless set (redb's own default).
    pub const DEFAULT_CACHE_BYTES: usize = 1 << 30;

    /// Open (or create) the database at `path`, with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<EmbeddedRows> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|e| Error::Unavailable {
                store: "row store",
                message: format!("cannot open the embedded database: {e}"),
            })?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(CATALOG).map_err(err)?;
        txn.open_table(OUTBOX).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(EmbeddedRows { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        super::run_blocking(move || f(&db)).await?
    }

    /// [`Self::blocking`] for a transaction of `keys` keys: a few run on the worker.
    async fn short<T: Send + 'static>(
        &self,
        keys: usize,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        super::run_short(keys <= IN_PLACE, move || f(&db)).await?
    }
}

#[async_trait]
impl RowStore for EmbeddedRows {
    async fn list_tables(&self) -> Result<Vec<TableDef>> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(err)?;
            let t = txn.open_table(CATALOG).map_err(err)?;
            let mut out = Vec::new();
            for item in t.iter().map_err(err)? {
                let (_, v) = item.map_err(err)?;
                out.push(serde_json::from_str(v.value()).map_err(Error::internal)?);
            }
            Ok(out)
        })
        .await
    }

    async fn create_table(&self, def: &TableDef) -> Result<()> {
        let def = def.clone();
        self.blocking(move |db| {
            let json = serde_json::to_string(&def).map_err(Error::internal)?;
            let txn = db.begin_write().map_err(err)?;
            {
                let mut cat = txn.open_table(CATALOG).map_err(err)?;
                if cat.get(def.name.as_str()).map_err(err)?.is_some() {
                    return Err(Error::DuplicateTable(def.name.clone()));
                }
                cat.insert(def.name.as_str(), json.as_str()).map_err(err)?;
                let name = rows_table(def.stored_name());
                txn.open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                    .map_err(err)?;
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn list_names(&self, kind: super::Names) -> Result<Vec<String>> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let t = match txn.open_table(names_table(kind)) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
                Err(e) => return Err(err(e)),
            };
            let mut out = Vec::new();
            for item in t.iter().map_err(err)? {
                out.push(item.map_err(err)?.0.value().to_string());
            }
            Ok(out)
        })
        .await
    }

    async fn add_name(&self, kind: super::Names, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut t = txn.open_table(names_table(kind)).map_err(err)?;
                if t.get(name.as_str()).map_err(err)?.is_some() {
                    return Ok(false);
                }
                t.insert(name.as_str(), ()).map_err(err)?;
            }
            txn.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn remove_name(&self, kind: super::Names, name: &str) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut t = txn.open_table(names_table(kind)).map_err(err)?;
                t.remove(name.as_str()).map_err(err)?;
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn list_sequences(&self) -> Result<Vec<super::SequenceDef>> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(err)?;
            let t = match txn.open_table(SEQUENCES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![]),
                Err(e) => return Err(err(e)),
            };
            let mut out = Vec::new();
            for item in t.iter().map_err(err)? {
                let (_, v) = item.map_err(err)?;
                let s: StoredSequence = serde_json::from_str(v.value()).map_err(Error::internal)?;
                out.push(s.def);
            }
            Ok(out)
        })
        .await
    }

    async fn create_sequence(
        &self,
        def: &super::SequenceDef,
        state: super::SequenceState,
    ) -> Result<()> {
        let stored = StoredSequence {
            def: def.clone(),
            state,
        };
        self.blocking(move |db| {
            let json = serde_json::to_string(&stored).map_err(Error::internal)?;
            let txn = db.begin_write().map_err(err)?;
            {
                let mut t = txn.open_table(SEQUENCES).map_err(err)?;
                if t.get(stored.def.name.as_str()).map_err(err)?.is_some() {
                    return Err(Error::DuplicateTable(stored.def.name.clone()));
                }
                t.insert(stored.def.name.as_str(), json.as_str())
                    .map_err(err)?;
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn drop_sequence(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut t = txn.open_table(SEQUENCES).map_err(err)?;
                t.remove(name.as_str()).map_err(err)?;
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn set_sequence_def(&self, def: &super::SequenceDef) -> Result<bool> {
        let def = def.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut t = txn.open_table(SEQUENCES).map_err(err)?;
                let Some(old) = t
                    .get(def.name.as_str())
                    .map_err(err)?
                    .map(|v| v.value().to_string())
                else {
                    return Ok(false);
                };
                let mut stored: StoredSequence =
                    serde_json::from_str(&old).map_err(Error::internal)?;
                stored.def = def;
                let json = serde_json::to_string(&stored).map_err(Error::internal)?;
                t.insert(stored.def.name.as_str(), json.as_str())
                    .map_err(err)?;
            }
            txn.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn sequence_state(&self, name: &str) -> Result<Option<super::SequenceState>> {
        let name = name.to_string();
        self.short(1, move |db| {
            let txn = db.begin_read().map_err(err)?;
            let t = match txn.open_table(SEQUENCES) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(err(e)),
            };
            let Some(v) = t.get(name.as_str()).map_err(err)? else {
                return Ok(None);
            };
            let s: StoredSequence = serde_json::from_str(v.value()).map_err(Error::internal)?;
            Ok(Some(s.state))
        })
        .await
    }

    async fn sequence_swap(
        &self,
        name: &str,
        old: super::SequenceState,
        new: super::SequenceState,
    ) -> Result<bool> {
        let name = name.to_string();
        self.short(1, move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut t = txn.open_table(SEQUENCES).map_err(err)?;
                let Some(v) = t
                    .get(name.as_str())
                    .map_err(err)?
                    .map(|v| v.value().to_string())
                else {
                    return Err(Error::UndefinedTable(name));
                };
                let mut s: StoredSequence = serde_json::from_str(&v).map_err(Error::internal)?;
                if s.state != old {
                    return Ok(false);
                }
                s.state = new;
                let json = serde_json::to_string(&s).map_err(Error::internal)?;
                t.insert(name.as_str(), json.as_str()).map_err(err)?;
            }
            txn.commit().map_err(err)?;
            Ok(true)
        })
        .await
    }

    async fn unique_swap(
        &self,
        space: &str,
        value: &[u8],
        expected: Option<&super::UniqueHolder>,
        new: Option<&super::UniqueHolder>,
    ) -> Result<std::result::Result<(), Option<super::UniqueHolder>>> {
        let (space, value) = (space.to_string(), value.to_vec());
        let (expected, new) = (expected.cloned(), new.cloned());
        self.short(1, move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut t = txn.open_table(UNIQUE).map_err(err)?;
                let now: Option<super::UniqueHolder> = t
                    .get((space.as_str(), value.as_slice()))
                    .map_err(err)?
                    .map(|v| bincode::deserialize(v.value()))
                    .transpose()
                    .map_err(|_| Error::internal("corrupt unique entry"))?;
                if now != expected {
                    return Ok(Err(now));
                }
                match &new {
                    Some(h) => {
                        let bytes = bincode::serialize(h).map_err(Error::internal)?;
                        t.insert((space.as_str(), value.as_slice()), bytes.as_slice())
                            .map_err(err)?;
                    }
                    None => {
                        t.remove((space.as_str(), value.as_slice())).map_err(err)?;
                    }
                }
            }
            txn.commit().map_err(err)?;
            Ok(Ok(()))
        })
        .await
    }

    async fn add_columns(
        &self,
        old: &TableDef,
        new: &TableDef,
        fill: &[Value],
        _ts: i64,
    ) -> Result<()> {
        // Rows stored before get the added columns' values (a NULL one needs no rewrite:
        // short rows read back padded with NULLs).
        let (old_width, fill) = (old.columns.len(), fill.to_vec());
        let change = fill.iter().any(|v| !v.is_null()).then(|| {
            Box::new(move |row: &mut Row| {
                if row.len() >= old_width + fill.len() {
                    return false;
                }
                row.resize(old_width, Value::Null);
                row.extend(fill.iter().cloned());
                true
            }) as RowChange
        });
        self.change_rows(new.clone(), change).await
    }

    async fn drop_columns(&self, old: &TableDef, new: &TableDef, dropped: &[usize]) -> Result<()> {
        // Rows are positional: every stored row is rewritten without the values.
        let old_width = old.columns.len();
        let mut dropped = dropped.to_vec();
        dropped.sort_unstable_by(|a, b| b.cmp(a));
        let change = Box::new(move |row: &mut Row| {
            row.resize(old_width, Value::Null);
            for &i in &dropped {
                row.remove(i);
            }
            true
        }) as RowChange;
        self.change_rows(new.clone(), Some(change)).await
    }

    async fn update_table(&self, def: &TableDef) -> Result<()> {
        let def = def.clone();
        self.blocking(move |db| {
            let json = serde_json::to_string(&def).map_err(Error::internal)?;
            let txn = db.begin_write().map_err(err)?;
            {
                let mut cat = txn.open_table(CATALOG).map_err(err)?;
                if cat.get(def.name.as_str()).map_err(err)?.is_none() {
                    return Err(Error::UndefinedTable(def.name.clone()));
                }
                cat.insert(def.name.as_str(), json.as_str()).map_err(err)?;
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn rename_table(&self, old: &str, new: &TableDef) -> Result<()> {
        let (old, new) = (old.to_string(), new.clone());
        self.blocking(move |db| {
            let json = serde_json::to_string(&new).map_err(Error::internal)?;
            let txn = db.begin_write().map_err(err)?;
            {
                let mut cat = txn.open_table(CATALOG).map_err(err)?;
                if cat.get(new.name.as_str()).map_err(err)?.is_some() {
                    return Err(Error::DuplicateTable(new.name.clone()));
                }
                if cat.remove(old.as_str()).map_err(err)?.is_none() {
                    return Err(Error::UndefinedTable(old));
                }
                cat.insert(new.name.as_str(), json.as_str()).map_err(err)?;
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn drop_table(&self, def: &TableDef) -> Result<()> {
        let (sql_name, name) = (def.name.clone(), def.stored_name().to_string());
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(err)?;
            {
                let mut cat = txn.open_table(CATALOG).map_err(err)?;
                cat.remove(sql_name.as_str()).map_err(err)?;
                let mut outbox = txn.open_table(OUTBOX).map_err(err)?;
                let lo: (&str, &[u8]) = (name.as_str(), &[]);
                let pending: Vec<Vec<u8>> = outbox
                    .range(lo..)
                    .map_err(err)?
                    .map_while(|item| {
                        let (k, _) = item.ok()?;
                        let (tbl, key) = k.value();
                        (tbl == name).then(|| key.to_vec())
                    })
                    .collect();
                for k in pending {
                    outbox.remove((name.as_str(), k.as_slice())).map_err(err)?;
                }
                let rt = rows_table(&name);
                txn.delete_table(TableDefinition::<&[u8], &[u8]>::new(&rt))
                    .map_err(err)?;
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn write(
        &self,
        table: &TableDef,
        rows: Vec<Row>,
        mode: WriteMode,
        ts: i64,
    ) -> Result<()> {
        let def = table.clone();
        self.short(rows.len(), move |db| {
            let name = rows_table(def.stored_name());
            let txn = db.begin_write().map_err(err)?;
            {
                let mut t = txn
                    .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                    .map_err(err)?;
                let mut outbox = txn.open_table(OUTBOX).map_err(err)?;
                let expires = def
                    .ttl_seconds()
                    .map(|t| super::now_micros() + t as i64 * 1_000_000);
                for row in &rows {
                    let key = def.key_of(row);
                    let k = keys::encode(&key);
                    if def.indexed() {
                        outbox
                            .insert((def.stored_name(), k.as_slice()), ts)
                            .map_err(err)?;
                    }
                    let v = encode_row(row, expires)?;
                    let old = t.insert(k.as_slice(), v.as_slice()).map_err(err)?;
                    // An expired row does not hold its key.
                    let taken = match old {
                        Some(o) => {
                            decode_row(o.value(), expires.is_some(), super::now_micros(), 0)?
                                .is_some()
                        }
                        None => false,
                    };
                    if mode == WriteMode::InsertNew && taken {
                        // Dropping the transaction uncommitted discards every row of it.
                        return Err(def.duplicate_key(&key));
                    }
                }
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn delete(&self, table: &TableDef, keys_: Vec<Vec<Value>>, ts: i64) -> Result<u64> {
        let name = rows_table(table.stored_name());
        let indexed = table.indexed();
        let table = table.stored_name().to_string();
        self.short(keys_.len(), move |db| {
            let txn = db.begin_write().map_err(err)?;
            let mut n = 0;
            {
                let mut t = txn
                    .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                    .map_err(err)?;
                let mut outbox = txn.open_table(OUTBOX).map_err(err)?;
                for k in keys_ {
                    let k = keys::encode(&k);
                    if indexed {
                        outbox
                            .insert((table.as_str(), k.as_slice()), ts)
                            .map_err(err)?;
                    }
                    if t.remove(k.as_slice()).map_err(err)?.is_some() {
                        n += 1;
                    }
                }
            }
            txn.commit().map_err(err)?;
            Ok(n)
        })
        .await
    }

    async fn commit(&self, changes: &[TableChanges], ts: i64) -> Result<bool> {
        let changes = changes.to_vec();
        let keys: usize = changes
            .iter()
            .map(|c| c.new.len() + c.put.len() + c.delete.len())
            .sum();
        self.short(keys, move |db| {
            let txn = db.begin_write().map_err(err)?;
            for c in &changes {
                let def = &c.def;
                let name = rows_table(def.stored_name());
                let mut t = txn
                    .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                    .map_err(err)?;
                let mut outbox = txn.open_table(OUTBOX).map_err(err)?;
                for key in c.keys().into_iter().filter(|_| def.indexed()) {
                    let k = keys::encode(&key);
                    outbox
                        .insert((def.stored_name(), k.as_slice()), ts)
                        .map_err(err)?;
                }
                let expires = def
                    .ttl_seconds()
                    .map(|t| super::now_micros() + t as i64 * 1_000_000);
                let now = super::now_micros();
                for (row, new) in c
                    .new
                    .iter()
                    .map(|r| (r, true))
                    .chain(c.put.iter().map(|r| (r, false)))
                {
                    let key = def.key_of(row);
                    let k = keys::encode(&key);
                    let v = encode_row(row, expires)?;
                    let old = t.insert(k.as_slice(), v.as_slice()).map_err(err)?;
                    let taken = match old {
                        Some(o) => decode_row(o.value(), expires.is_some(), now, 0)?.is_some(),
                        None => false,
                    };
                    if new && taken {
                        // Taken by a transaction that committed since this one looked:
                        // dropping the write transaction discards all of this one.
                        return Err(def.duplicate_key(&key));
                    }
                }
                for key in &c.delete {
                    t.remove(keys::encode(key).as_slice()).map_err(err)?;
                }
            }
            super::commit_point(false);
            txn.commit().map_err(err)?;
            super::commit_point(true);
            Ok(true)
        })
        .await
    }

    async fn purge_expired(&self, table: &TableDef) -> Result<u64> {
        if table.ttl_seconds().is_none() {
            return Ok(0);
        }
        let name = rows_table(table.stored_name());
        self.blocking(move |db| {
            let now = super::now_micros();
            let txn = db.begin_write().map_err(err)?;
            let mut n = 0;
            {
                let mut t = txn
                    .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                    .map_err(err)?;
                let dead: Vec<Vec<u8>> = t
                    .iter()
                    .map_err(err)?
                    .filter_map(|item| {
                        let (k, v) = item.ok()?;
                        let exp = v
                            .value()
                            .first_chunk::<8>()
                            .map(|b| i64::from_be_bytes(*b))?;
                        (exp <= now).then(|| k.value().to_vec())
                    })
                    .collect();
                for k in dead {
                    t.remove(k.as_slice()).map_err(err)?;
                    n += 1;
                }
            }
            txn.commit().map_err(err)?;
            Ok(n)
        })
        .await
    }

    async fn outbox_pending(
        &self,
        table: &TableDef,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>> {
        let name = table.stored_name().to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let t = txn.open_table(OUTBOX).map_err(err)?;
            let mut out = Vec::new();
            let lo: (&str, &[u8]) = (name.as_str(), &[]);
            for item in t.range(lo..).map_err(err)? {
                let (k, v) = item.map_err(err)?;
                let (tbl, key) = k.value();
                if tbl != name || out.len() >= limit {
                    break;
                }
                if v.value() <= upto {
                    out.push(OutboxEntry::own(keys::decode(key)?, v.value()));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn outbox_clear(&self, table: &TableDef, entries: &[OutboxEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let name = table.stored_name().to_string();
        let entries: Vec<(Vec<u8>, i64)> = entries
            .iter()
            .map(|e| (keys::encode(&e.key), e.ts))
            .collect();
        self.blocking(move |db| {
            let mut txn = db.begin_write().map_err(err)?;
            // Losing a clear in a crash only replays an entry already applied.
            txn.set_durability(redb::Durability::None).map_err(err)?;
            {
                let mut t = txn.open_table(OUTBOX).map_err(err)?;
                for (k, ts) in &entries {
                    let current = t
                        .get((name.as_str(), k.as_slice()))
                        .map_err(err)?
                        .map(|v| v.value());
                    if current.is_some_and(|c| c <= *ts) {
                        t.remove((name.as_str(), k.as_slice())).map_err(err)?;
                    }
                }
            }
            txn.commit().map_err(err)
        })
        .await
    }

    async fn get(&self, table: &TableDef, keys_: &[Vec<Value>]) -> Result<Vec<Option<Row>>> {
        let name = rows_table(table.stored_name());
        let ttl = table.ttl_seconds().is_some();
        let width = table.columns.len();
        let encoded: Vec<Vec<u8>> = keys_.iter().map(|k| keys::encode(k)).collect();
        let db = self.db.clone();
        let read = move || {
            let txn = db.begin_read().map_err(err)?;
            let t = txn
                .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                .map_err(err)?;
            let mut out = Vec::with_capacity(encoded.len());
            let now = super::now_micros();
            for k in &encoded {
                out.push(match t.get(k.as_slice()).map_err(err)? {
                    Some(v) => decode_row(v.value(), ttl, now, width)?,
                    None => None,
                });
            }
            Ok(out)
        };
        // A few keys (a lookup, a search's hits) are read on the worker itself: handing
        // the worker off for microseconds of reading costs more than the read (a key
        // lookup's median 0.07-0.17 ms that way against 0.05-0.07 ms in place, and a
        // p99 of 1-4 ms against 0.4 ms: BENCHMARKS.md).
        if keys_.len() <= IN_PLACE {
            read()
        } else {
            super::run_blocking(read).await?
        }
    }

    fn scan(
        &self,
        table: &TableDef,
        batch: usize,
        limit: Option<usize>,
    ) -> BoxStream<'static, Result<Vec<Row>>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<Row>>>(2);
        let db = self.db.clone();
        let name = rows_table(table.stored_name());
        let ttl = table.ttl_seconds().is_some();
        let width = table.columns.len();
        let batch = batch.max(1);
        tokio::task::spawn_blocking(move || {
            let run = || -> Result<()> {
                let txn = db.begin_read().map_err(err)?;
                let t = txn
                    .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))
                    .map_err(err)?;
                let mut buf = Vec::with_capacity(batch);
                let now = super::now_micros();
                let mut seen = 0usize;
                for item in t.iter().map_err(err)? {
                    if limit.is_some_and(|l| seen >= l) {
                        break;
                    }
                    let (_, v) = item.map_err(err)?;
                    let Some(row) = decode_row(v.value(), ttl, now, width)? else {
                        continue;
                    };
                    seen += 1;
                    buf.push(row);
                    if buf.len() >= batch && tx.blocking_send(Ok(std::mem::take(&mut buf))).is_err()
                    {
                        return Ok(());
                    }
                }
                if !buf.is_empty() {
                    let _ = tx.blocking_send(Ok(buf));
                }
                Ok(())
            };
            if let Err(e) = run() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        tokio_stream_from(rx).boxed()
    }
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
