//! The write protocol, one function per verb. A change goes to the row store first
//! (the source of truth), together with an outbox entry per key; then to the vector
//! index; then the entries are cleared. If the index fails or its breaker is open, the
//! write still succeeds once the rows have it: the entries stay, and the reconciler
//! ([`super::sync`]) applies them when the index is back.

use crate::error::Result;
use crate::store::{OutboxEntry, Point, Row, TableDef, WriteMode, keys, now_micros, point_for_row};
use crate::types::Value;

use super::{Core, Notices};

/// Insert (or, with [`WriteMode::Upsert`], replace) rows, atomically in the row store.
pub async fn write_rows(
    core: &Core,
    def: &TableDef,
    rows: Vec<Row>,
    mode: WriteMode,
    notices: &Notices,
) -> Result<()> {
    let points: Vec<_> = rows.iter().filter_map(|r| point_for_row(def, r)).collect();
    let unindexed: Vec<_> = rows
        .iter()
        .filter(|r| r[def.vector_column].is_null())
        .map(|r| keys::point_id(&def.name, &def.key_of(r)))
        .collect();
    let ts = now_micros();
    let entries: Vec<OutboxEntry> = rows
        .iter()
        .map(|r| OutboxEntry {
            key: def.key_of(r),
            ts,
        })
        .collect();
    core.rows.write(def, rows, mode, ts).await?;
    crate::faults::after_row_write();
    apply_to_index(core, def, points, unindexed, entries, notices).await
}

/// Delete rows by key (with their outbox entries), then their points; returns how many
/// rows existed.
pub async fn delete_rows(
    core: &Core,
    def: &TableDef,
    keys_: Vec<Vec<Value>>,
    notices: &Notices,
) -> Result<u64> {
    let ts = now_micros();
    let ids: Vec<_> = keys_.iter().map(|k| keys::point_id(&def.name, k)).collect();
    let entries: Vec<OutboxEntry> = keys_
        .iter()
        .map(|k| OutboxEntry { key: k.clone(), ts })
        .collect();
    let n = core.rows.delete(def, keys_, ts).await?;
    crate::faults::after_row_write();
    apply_to_index(core, def, vec![], ids, entries, notices).await?;
    Ok(n)
}

/// Send a statement's changes to the index once the rows (and their outbox entries)
/// have them, then clear the entries.
async fn apply_to_index(
    core: &Core,
    def: &TableDef,
    upserts: Vec<Point>,
    deletes: Vec<uuid::Uuid>,
    entries: Vec<OutboxEntry>,
    notices: &Notices,
) -> Result<()> {
    if core.health.writable() {
        let sent = async {
            if !upserts.is_empty() {
                core.index.upsert(def, upserts).await?;
            }
            if !deletes.is_empty() {
                core.index.delete(def, deletes).await?;
            }
            Ok(())
        }
        .await;
        match sent {
            Ok(()) => {
                if let Err(e) = core.rows.outbox_clear(def, &entries).await {
                    // The entries are replayed later: harmless, the change is applied.
                    tracing::warn!(table = %def.name, error = %e, "outbox entries not cleared");
                }
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
