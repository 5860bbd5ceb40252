//! Transaction blocks. Between `BEGIN` and `COMMIT` a session's writes do not reach the
//! stores: they collect here, per table, as the row each written key is left with
//! (`None` for a deleted one). The session's own reads lay them over what the stores
//! answer ([`get`], [`scan`], and the searches of `vector_search`); other sessions see
//! nothing of them. `COMMIT` hands them to the row store as one atomic write
//! ([`super::write::commit`]); `ROLLBACK` and a dropped connection just forget them.
//! Savepoints are copies of the per-table maps, shared until a write after them clones
//! the table it changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::store::{Row, TableDef, WriteMode, keys};
use crate::types::Value;

use super::Core;

/// One written key of a transaction.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Vec<Value>,
    /// The row as the transaction left it; `None` if it deleted the row.
    pub row: Option<Row>,
    /// Inserted where no row was: at commit the key must still be free (23505 if a
    /// concurrent transaction took it meanwhile).
    pub fresh: bool,
}

/// A transaction's changes to one table, by encoded key.
#[derive(Debug, Clone)]
pub struct Pending {
    pub def: Arc<TableDef>,
    pub entries: BTreeMap<Vec<u8>, Entry>,
}

impl Pending {
    fn new(def: Arc<TableDef>) -> Pending {
        Pending {
            def,
            entries: BTreeMap::new(),
        }
    }

    /// What the transaction did to this key: `Some(Some(row))` wrote it, `Some(None)`
    /// deleted it, `None` left it alone (the stores answer).
    pub fn lookup(&self, key: &[u8]) -> Option<Option<&Row>> {
        self.entries.get(key).map(|e| e.row.as_ref())
    }

    /// The rows the transaction wrote (not the ones it deleted).
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.entries.values().filter_map(|e| e.row.as_ref())
    }
}

type Changes = HashMap<String, Arc<Pending>>;

/// An open transaction block.
#[derive(Debug, Default)]
pub struct Transaction {
    changes: Changes,
    savepoints: Vec<(String, Changes)>,
    failed: bool,
    read_only: bool,
    /// Unique values claimed and given up by the block's writes.
    unique: super::unique::UniqueClaims,
    /// When `BEGIN` opened the block: `now()` inside it, as in PostgreSQL.
    started: chrono::DateTime<chrono::Utc>,
}

impl Transaction {
    /// Every table's changes and the unique values the block claimed and gave up.
    pub fn into_parts(self) -> (Vec<Arc<Pending>>, super::unique::UniqueClaims) {
        (self.changes.into_values().collect(), self.unique)
    }

    /// The block ends without its writes: the unique values it claimed go back.
    pub async fn abandon(self, core: &Core) {
        super::unique::give_back(core, &self.unique.taken).await;
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    fn size(&self) -> usize {
        self.changes.values().map(|p| p.entries.len()).sum()
    }
}

/// A session's transaction block, if one is open. Shared with the session's query
/// context, where table scans and searches find it.
#[derive(Debug)]
pub struct TxSlot {
    tx: Mutex<Option<Transaction>>,
    /// Most keys one transaction may change (54000 beyond).
    max_rows: usize,
}

fn savepoint_missing(name: &str) -> Error {
    Error::Transaction {
        code: "3B001",
        message: format!("savepoint \"{name}\" does not exist"),
    }
}

fn no_block(what: &str) -> Error {
    Error::Transaction {
        code: "25P01",
        message: format!("{what} can only be used in transaction blocks"),
    }
}

impl TxSlot {
    pub fn new(max_rows: usize) -> TxSlot {
        TxSlot {
            tx: Mutex::new(None),
            max_rows,
        }
    }

    /// Whether a transaction block is open.
    /// Record unique values a statement of the block claimed and gave up.
    pub fn note_unique(
        &self,
        taken: Vec<super::unique::Claim>,
        given_up: Vec<super::unique::Claim>,
    ) {
        if let Some(tx) = self.tx.lock().as_mut() {
            tx.unique.taken.extend(taken);
            tx.unique.given_up.extend(given_up);
        }
    }

    pub fn active(&self) -> bool {
        self.tx.lock().is_some()
    }

    /// Whether the open block has failed (every statement but its end answers 25P02).
    pub fn failed(&self) -> bool {
        self.tx.lock().as_ref().is_some_and(|t| t.failed)
    }

    /// Whether the open block was begun `READ ONLY`.
    pub fn read_only(&self) -> bool {
        self.tx.lock().as_ref().is_some_and(|t| t.read_only)
    }

    /// `SET TRANSACTION READ ONLY` (or `READ WRITE`); `false` outside a block.
    pub fn set_read_only(&self, on: bool) -> bool {
        match self.tx.lock().as_mut() {
            Some(t) => {
                t.read_only = on;
                true
            }
            None => false,
        }
    }

    /// A statement of the block failed: the block is failed until it ends (or rolls
    /// back to a savepoint).
    pub fn fail(&self) {
        if let Some(t) = self.tx.lock().as_mut() {
            t.failed = true;
        }
    }

    /// Open a block; `false` if one is open already.
    pub fn begin(&self, read_only: bool) -> bool {
        let mut tx = self.tx.lock();
        if tx.is_some() {
            return false;
        }
        *tx = Some(Transaction {
            read_only,
            started: chrono::Utc::now(),
            ..Default::default()
        });
        true
    }

    /// When the open block began; `None` outside a block.
    pub fn started(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.tx.lock().as_ref().map(|t| t.started)
    }

    /// End the block, handing back what it wrote.
    pub fn take(&self) -> Option<Transaction> {
        self.tx.lock().take()
    }

    pub fn savepoint(&self, name: &str) -> Result<()> {
        let mut tx = self.tx.lock();
        let t = tx.as_mut().ok_or_else(|| no_block("SAVEPOINT"))?;
        let snapshot = t.changes.clone();
        t.savepoints.push((name.to_string(), snapshot));
        Ok(())
    }

    /// `RELEASE SAVEPOINT`: forget the newest savepoint of that name and every later one.
    pub fn release(&self, name: &str) -> Result<()> {
        let mut tx = self.tx.lock();
        let t = tx.as_mut().ok_or_else(|| no_block("RELEASE SAVEPOINT"))?;
        let at = t
            .savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| savepoint_missing(name))?;
        t.savepoints.truncate(at);
        Ok(())
    }

    /// `ROLLBACK TO SAVEPOINT`: back to the changes as they were at the savepoint, which
    /// stays; a failed block works again.
    pub fn rollback_to(&self, name: &str) -> Result<()> {
        let mut tx = self.tx.lock();
        let t = tx
            .as_mut()
            .ok_or_else(|| no_block("ROLLBACK TO SAVEPOINT"))?;
        let at = t
            .savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| savepoint_missing(name))?;
        t.savepoints.truncate(at + 1);
        t.changes = t.savepoints[at].1.clone();
        t.failed = false;
        Ok(())
    }

    /// The block's changes to a table, as they are now (later writes do not change
    /// what this returns).
    pub fn pending(&self, table: &str) -> Option<Arc<Pending>> {
        self.tx.lock().as_ref()?.changes.get(table).cloned()
    }

    /// Whether the block has written to the table.
    pub fn touches(&self, table: &str) -> bool {
        self.tx
            .lock()
            .as_ref()
            .is_some_and(|t| t.changes.get(table).is_some_and(|p| !p.entries.is_empty()))
    }

    /// Refuse a write that would take the block over its size limit.
    fn check_size(&self, more: usize) -> Result<()> {
        let size = self.tx.lock().as_ref().map_or(0, |t| t.size());
        if size + more > self.max_rows {
            return Err(Error::ProgramLimit(format!(
                "transaction too large: it would change more than {} rows (the proxy's max_transaction_rows); commit in smaller transactions",
                self.max_rows
            )));
        }
        Ok(())
    }

    /// Apply `f` to the block's changes of `def`'s table.
    fn with_pending<T>(&self, def: &Arc<TableDef>, f: impl FnOnce(&mut Pending) -> T) -> Result<T> {
        let mut tx = self.tx.lock();
        let t = tx
            .as_mut()
            .ok_or_else(|| Error::internal("no transaction block"))?;
        let slot = t
            .changes
            .entry(def.name.clone())
            .or_insert_with(|| Arc::new(Pending::new(def.clone())));
        Ok(f(Arc::make_mut(slot)))
    }

    /// Write rows inside the block; with [`WriteMode::InsertNew`] a key that the block
    /// or the store already has is a unique violation, as it would be at once outside.
    pub async fn write(
        &self,
        core: &Core,
        def: &Arc<TableDef>,
        rows: Vec<Row>,
        mode: WriteMode,
    ) -> Result<()> {
        self.check_size(rows.len())?;
        let encoded: Vec<Vec<u8>> = rows.iter().map(|r| keys::encode(&def.key_of(r))).collect();
        let mut fresh = vec![false; rows.len()];
        if mode == WriteMode::InsertNew {
            let mut seen = HashSet::new();
            let pending = self.pending(&def.name);
            let mut unknown = Vec::new();
            for (i, (row, k)) in rows.iter().zip(&encoded).enumerate() {
                let here = pending.as_ref().and_then(|p| p.lookup(k));
                if !seen.insert(k) || matches!(here, Some(Some(_))) {
                    return Err(def.duplicate_key(&def.key_of(row)));
                }
                if here.is_none() {
                    unknown.push(i);
                }
            }
            let ks: Vec<Vec<Value>> = unknown.iter().map(|i| def.key_of(&rows[*i])).collect();
            let stored = core.rows.get(def, &ks).await?;
            for (i, found) in unknown.into_iter().zip(stored) {
                if found.is_some() {
                    return Err(def.duplicate_key(&def.key_of(&rows[i])));
                }
                fresh[i] = true;
            }
        }
        self.with_pending(def, |p| {
            for ((row, k), fresh) in rows.into_iter().zip(encoded).zip(fresh) {
                match p.entries.get_mut(&k) {
                    Some(e) => e.row = Some(row),
                    None => {
                        p.entries.insert(
                            k,
                            Entry {
                                key: def.key_of(&row),
                                row: Some(row),
                                fresh,
                            },
                        );
                    }
                }
            }
        })
    }

    /// Delete rows by key inside the block; how many existed (for the block).
    pub async fn delete(
        &self,
        core: &Core,
        def: &Arc<TableDef>,
        keys_: Vec<Vec<Value>>,
    ) -> Result<u64> {
        self.check_size(keys_.len())?;
        let pending = self.pending(&def.name);
        let mut unknown = Vec::new();
        for k in &keys_ {
            if pending
                .as_ref()
                .and_then(|p| p.lookup(&keys::encode(k)))
                .is_none()
            {
                unknown.push(k.clone());
            }
        }
        let stored: HashSet<Vec<u8>> = core
            .rows
            .get(def, &unknown)
            .await?
            .into_iter()
            .zip(&unknown)
            .filter(|(r, _)| r.is_some())
            .map(|(_, k)| keys::encode(k))
            .collect();
        self.with_pending(def, |p| {
            let mut n = 0;
            for key in keys_ {
                let k = keys::encode(&key);
                match p.entries.get_mut(&k) {
                    Some(e) if e.row.is_some() => {
                        n += 1;
                        if e.fresh {
                            // Inserted by this block: nothing to undo in the store.
                            p.entries.remove(&k);
                        } else {
                            e.row = None;
                        }
                    }
                    Some(_) => {}
                    None if stored.contains(&k) => {
                        n += 1;
                        p.entries.insert(
                            k,
                            Entry {
                                key,
                                row: None,
                                fresh: false,
                            },
                        );
                    }
                    None => {}
                }
            }
            n
        })
    }
}

/// Rows by key as a transaction sees them: its own changes over the store's rows.
pub async fn get(
    core: &Core,
    pending: Option<&Pending>,
    def: &TableDef,
    keys_: &[Vec<Value>],
) -> Result<Vec<Option<Row>>> {
    let Some(p) = pending.filter(|p| !p.entries.is_empty()) else {
        return core.rows.get(def, keys_).await;
    };
    let encoded: Vec<Vec<u8>> = keys_.iter().map(|k| keys::encode(k)).collect();
    let ask: Vec<Vec<Value>> = keys_
        .iter()
        .zip(&encoded)
        .filter(|(_, e)| p.lookup(e).is_none())
        .map(|(k, _)| k.clone())
        .collect();
    let mut stored = core.rows.get(def, &ask).await?.into_iter();
    Ok(encoded
        .iter()
        .map(|e| match p.lookup(e) {
            Some(row) => row.cloned(),
            None => stored.next().flatten(),
        })
        .collect())
}

/// Every row of a table as a transaction sees it: the store's rows the transaction did
/// not touch, then the ones it wrote. `limit` stops early.
pub fn scan(
    core: &Core,
    pending: Option<Arc<Pending>>,
    def: &TableDef,
    batch: usize,
    limit: Option<usize>,
) -> BoxStream<'static, Result<Vec<Row>>> {
    let Some(p) = pending.filter(|p| !p.entries.is_empty()) else {
        return core.rows.scan(def, batch, limit);
    };
    // The store may answer rows the transaction deleted or replaced: ask for as many
    // more as it touched.
    let stored = core
        .rows
        .scan(def, batch, limit.map(|l| l + p.entries.len()));
    let key_of = {
        let def = def.clone();
        move |r: &Row| keys::encode(&def.key_of(r))
    };
    let untouched = {
        let p = p.clone();
        stored.map(move |b| {
            b.map(|rows| {
                rows.into_iter()
                    .filter(|r| p.lookup(&key_of(r)).is_none())
                    .collect::<Vec<_>>()
            })
        })
    };
    let written: Vec<Row> = p.rows().cloned().collect();
    let mut left = limit.unwrap_or(usize::MAX);
    untouched
        .chain(futures::stream::iter(
            written
                .chunks(batch.max(1))
                .map(|c| Ok(c.to_vec()))
                .collect::<Vec<_>>(),
        ))
        .filter_map(move |b| {
            let out = match b {
                Ok(mut rows) if left > 0 => {
                    rows.truncate(left);
                    left -= rows.len();
                    Some(Ok(rows))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savepoints_restore_and_stay() {
        let slot = TxSlot::new(10);
        assert!(slot.begin(false));
        assert!(!slot.begin(false), "a second BEGIN opens nothing");
        slot.savepoint("a").expect("savepoint");
        slot.fail();
        assert!(slot.failed());
        slot.rollback_to("a").expect("rollback to");
        assert!(
            !slot.failed(),
            "ROLLBACK TO makes a failed block work again"
        );
        // The savepoint stays after ROLLBACK TO; RELEASE forgets it.
        slot.rollback_to("a").expect("rollback to");
        slot.release("a").expect("release");
        assert_eq!(
            slot.rollback_to("a").expect_err("gone").sqlstate(),
            "3B001",
            "a released savepoint is gone"
        );
        assert!(slot.take().is_some());
        assert_eq!(
            slot.savepoint("b").expect_err("outside").sqlstate(),
            "25P01"
        );
    }
}
