//! The write protocol, one function per verb. A change goes to the row store first
//! (the source of truth), durably, together with an outbox entry per key; then to the
//! vector index, where searches see it at once; the statement is acknowledged. The
//! entries are cleared once the index has made the change durable: a background task
//! ([`spawn_clearer`]) does that for every writer at once, so a writer never waits for
//! the index's disk. A crash in between leaves the entries, which are replayed at start.
//! If the index fails or its breaker is open, the write still succeeds once the rows
//! have it: the entries stay, and the reconciler ([`super::sync`]) applies them when the
//! index is back.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::store::{
    OutboxEntry, Point, Row, TableChanges, TableDef, WriteMode, keys, point_for_row, write_stamp,
};
use crate::types::Value;

use super::tx::Pending;
use super::{Core, Notices};

/// Insert (or, with [`WriteMode::Upsert`], replace) rows, atomically in the row store.
pub async fn write_rows(
    core: &Core,
    def: &TableDef,
    rows: Vec<Row>,
    mode: WriteMode,
    notices: &Notices,
) -> Result<()> {
    store_rows(core, def, rows, mode)
        .await?
        .index(core, def, notices)
        .await
}

/// [`write_rows`] up to the index: the rows are stored (with their outbox entries);
/// what is left is the index's part. A writer with many batches (a COPY) stores the
/// next batch while the index takes this one.
pub async fn store_rows(
    core: &Core,
    def: &TableDef,
    rows: Vec<Row>,
    mode: WriteMode,
) -> Result<Stored> {
    let points: Vec<_> = rows.iter().filter_map(|r| point_for_row(def, r)).collect();
    let unindexed: Vec<_> = rows
        .iter()
        .filter(|r| without_vector(def, r))
        .map(|r| keys::point_id(def.stored_name(), &def.key_of(r)))
        .collect();
    let ts = write_stamp();
    let entries: Vec<OutboxEntry> = rows
        .iter()
        .map(|r| OutboxEntry::own(def.key_of(r), ts))
        .collect();
    let open = core.pass_gate(def).await?;
    core.rows.write(def, rows, mode, ts).await?;
    drop(open);
    crate::faults::after_row_write();
    Ok(Stored {
        points,
        unindexed,
        entries,
    })
}

/// Rows in the row store whose change the index has yet to take.
#[must_use = "the index has not taken the change yet (the outbox would replay it later)"]
pub struct Stored {
    points: Vec<Point>,
    unindexed: Vec<uuid::Uuid>,
    entries: Vec<OutboxEntry>,
}

impl Stored {
    /// Send the change to `def`'s index.
    pub async fn index(self, core: &Core, def: &TableDef, notices: &Notices) -> Result<()> {
        apply_to_index(
            core,
            def,
            self.points,
            self.unindexed,
            self.entries,
            notices,
        )
        .await
    }
}

/// Delete rows by key (with their outbox entries), then their points; returns how many
/// rows existed.
pub async fn delete_rows(
    core: &Core,
    def: &TableDef,
    keys_: Vec<Vec<Value>>,
    notices: &Notices,
) -> Result<u64> {
    let ts = write_stamp();
    let ids: Vec<_> = keys_
        .iter()
        .map(|k| keys::point_id(def.stored_name(), k))
        .collect();
    let entries: Vec<OutboxEntry> = keys_
        .iter()
        .map(|k| OutboxEntry::own(k.clone(), ts))
        .collect();
    let open = core.pass_gate(def).await?;
    let n = core.rows.delete(def, keys_, ts).await?;
    drop(open);
    crate::faults::after_row_write();
    apply_to_index(core, def, vec![], ids, entries, notices).await?;
    Ok(n)
}

/// Commit a transaction block: its changes ([`commit`]), then the unique values it gave
/// up go back; if the commit fails, the values it claimed do.
pub async fn commit_block(
    core: &Core,
    tx: super::tx::Transaction,
    notices: &Notices,
) -> Result<u64> {
    let (pending, claims) = tx.into_parts();
    match commit(core, pending.clone(), notices).await {
        Ok(n) => {
            super::unique::after_commit(core, &pending, claims).await;
            Ok(n)
        }
        Err(e) => {
            super::unique::give_back(core, &claims.taken).await;
            Err(e)
        }
    }
}

/// Commit a transaction block's changes: all of them into the row store at once (with
/// their outbox entries), then each table's into the index. Once the rows have them the
/// commit stands: an index that fails then leaves the change to the outbox, and the
/// COMMIT succeeds with a NOTICE. Returns how many rows it changed.
pub async fn commit(core: &Core, pending: Vec<Arc<Pending>>, notices: &Notices) -> Result<u64> {
    let mut changes = Vec::new();
    let mut open = Vec::new();
    for p in pending {
        if p.entries.is_empty() {
            continue;
        }
        open.push(core.pass_gate(&p.def).await?);
        match core.table(&p.def.name) {
            Ok(now) if *now == *p.def => {}
            Ok(_) => {
                return Err(Error::Transaction {
                    code: "40001",
                    message: format!(
                        "could not commit: table \"{}\" was altered by another session during this transaction",
                        p.def.name
                    ),
                });
            }
            Err(e) => return Err(e),
        }
        let mut c = TableChanges {
            def: p.def.clone(),
            new: vec![],
            put: vec![],
            delete: vec![],
        };
        for e in p.entries.values() {
            match (&e.row, e.fresh) {
                (Some(r), true) => c.new.push(r.clone()),
                (Some(r), false) => c.put.push(r.clone()),
                (None, _) => c.delete.push(e.key.clone()),
            }
        }
        changes.push(c);
    }
    if changes.is_empty() {
        return Ok(0);
    }
    let ts = write_stamp();
    let committed = core.rows.commit(&changes, ts).await?;
    drop(open);
    if !committed {
        notices.push(
            "the transaction is committed, but the row store failed before all its rows were written: they are written from its commit log within seconds of the store answering again",
        );
    }
    crate::faults::after_row_write();
    let mut n = 0;
    for c in changes {
        n += c.new.len() + c.put.len() + c.delete.len();
        let written = || c.new.iter().chain(&c.put);
        let points: Vec<Point> = written().filter_map(|r| point_for_row(&c.def, r)).collect();
        let gone: Vec<uuid::Uuid> = c
            .delete
            .iter()
            .cloned()
            .chain(
                written()
                    .filter(|r| without_vector(&c.def, r))
                    .map(|r| c.def.key_of(r)),
            )
            .map(|k| keys::point_id(c.def.stored_name(), &k))
            .collect();
        let entries = c
            .keys()
            .into_iter()
            .map(|key| OutboxEntry::own(key, ts))
            .collect();
        if let Err(e) = apply_to_index(core, &c.def, points, gone, entries, notices).await {
            tracing::warn!(table = %c.def.name, error = %e, "a committed change did not reach the index; the outbox replays it");
            notices.push(format!(
                "the vector index did not take the committed change to \"{}\" yet; it is stored and will be indexed",
                c.def.name
            ));
        }
    }
    Ok(n as u64)
}

/// Whether a row of an indexed table has no vector (its point, if any, is deleted).
fn without_vector(def: &TableDef, row: &[Value]) -> bool {
    def.indexed() && def.vectors().iter().all(|(v, _)| row[*v].is_null())
}

/// Send a statement's changes to the index once the rows (and their outbox entries)
/// have them, then clear the entries. A table without a vector column has neither.
async fn apply_to_index(
    core: &Core,
    def: &TableDef,
    upserts: Vec<Point>,
    deletes: Vec<uuid::Uuid>,
    entries: Vec<OutboxEntry>,
    notices: &Notices,
) -> Result<()> {
    if !def.indexed() {
        return Ok(());
    }
    if core.health.writable() {
        let sent = async {
            if !upserts.is_empty() {
                core.index.upsert_unflushed(def, upserts).await?;
            }
            if !deletes.is_empty() {
                core.index.delete_unflushed(def, deletes).await?;
            }
            Ok(())
        }
        .await;
        match sent {
            Ok(()) => {
                core.unflushed.push(&def.name, entries);
                return Ok(());
            }
            Err(e) if super::health::is_index_failure(&e) => core.health.trip(&e),
            Err(e) => return Err(e),
        }
    }
    notices.push(format!(
        "the vector index is unavailable: the change to \"{}\" is stored and will be indexed when the index is back",
        def.name
    ));
    Ok(())
}

/// Outbox entries whose change the index has applied, by table, waiting for the index
/// to make it durable.
#[derive(Debug, Default)]
pub(crate) struct Unflushed {
    entries: Mutex<HashMap<String, Vec<OutboxEntry>>>,
    wake: tokio::sync::Notify,
}

impl Unflushed {
    fn push(&self, table: &str, entries: Vec<OutboxEntry>) {
        if entries.is_empty() {
            return;
        }
        let mut all = self.entries.lock();
        // The first entry since the last round wakes the clearer; it takes the ones
        // that follow in the same round.
        let first = all.is_empty();
        all.entry(table.to_string()).or_default().extend(entries);
        drop(all);
        if first {
            self.wake.notify_one();
        }
    }

    fn take(&self) -> HashMap<String, Vec<OutboxEntry>> {
        std::mem::take(&mut *self.entries.lock())
    }
}

/// Make the index durable for every table with unflushed changes, one flush per table
/// for all the writers since the last round, and clear their outbox entries. An entry
/// that is not cleared is replayed later: harmless, the change is applied.
pub(crate) async fn clear_unflushed(core: &Core) {
    for (table, entries) in core.unflushed.take() {
        // A table dropped since: its entries went with it.
        let Ok(def) = core.table(&table) else {
            continue;
        };
        match core.index.make_durable(&def).await {
            Ok(true) => {
                if let Err(e) = core.rows.outbox_clear(&def, &entries).await {
                    tracing::warn!(table = %def.name, error = %e, "outbox entries not cleared");
                }
            }
            // Put off (a bulk load): the next round asks again.
            Ok(false) => core.unflushed.push(&table, entries),
            Err(e) => {
                if super::health::is_index_failure(&e) {
                    core.health.trip(&e);
                }
                tracing::warn!(table = %def.name, error = %e, "the index did not make writes durable; the outbox replays them");
            }
        }
    }
}

/// How long the clearer gathers writes before it asks the index for one flush. A flush
/// of the embedded index holds its write lock while it syncs every file of the growing
/// segment (about 40 `msync`s and a few `fsync`s, milliseconds), so every writer that
/// arrives meanwhile waits: at 50 ms, one write in ten or so met one (UPDATE p99 9-10 ms
/// against a p50 of 0.45). Once a second the stall is as long and twenty times rarer;
/// the outbox keeps the writes of that second meanwhile (the Qdrant server itself
/// flushes every 5 s by default, its `flush_interval_sec`).
/// `VECTORGATE_INDEX_FLUSH_MS` overrides it (diagnostic, read once, for side-by-side
/// measurements).
fn clear_every() -> std::time::Duration {
    static EVERY: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();
    *EVERY.get_or_init(|| {
        let ms = std::env::var("VECTORGATE_INDEX_FLUSH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        std::time::Duration::from_millis(ms)
    })
}

/// Clear outbox entries as the index makes their changes durable, until `stop`.
pub(crate) fn spawn_clearer(core: Weak<Core>, unflushed: Arc<Unflushed>, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = unflushed.wake.notified() => {}
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(clear_every()) => {}
            }
            let Some(core) = core.upgrade() else {
                break;
            };
            clear_unflushed(&core).await;
        }
    });
}
