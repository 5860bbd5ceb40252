//! The outbox in CQL: an entry per written key of an indexed table, stamped before the
//! row changes and cleared once the index has the change.
//!
//! Entries are partitioned by table and by [`BUCKET`] of their stamp, and clustered by
//! (stamp, writer, key): the entries of one write share a partition and a clustering
//! prefix, so the writer clears them with one range deletion, not a tombstone per key,
//! and a partition holds only the entries of a few seconds. A table's low mark (in
//! [`MARK_TABLE`]) is the first bucket that may still hold entries; readers start there,
//! and a bucket that is empty and closed (no entry can land in it any more, see
//! [`LANDING`]) moves the mark past it for good. So the reconciler's reads touch the
//! tombstones of the last few seconds' clears, whatever the table's write history; with
//! one partition per table, a 100K-row load left 100K tombstones that every read went
//! through (Cassandra fails a read at 100,000).

use std::time::Duration;

use futures::stream::{StreamExt, TryStreamExt};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;

use super::{CONCURRENCY, ScyllaRows, cql_err, q};
use crate::error::{Error, Result};
use crate::store::{OutboxEntry, RowStore, TableDef, keys, now_micros};
use crate::types::Value;

/// Pending index changes, partitioned by (table, bucket of their stamp).
pub const OUTBOX_TABLE: &str = "vectorgate_outbox_by_time";
pub(super) const OUTBOX_COLUMNS: &str = "(tbl text, bucket bigint, ts bigint, writer bigint, key blob, PRIMARY KEY ((tbl, bucket), ts, writer, key))";
/// Cleared entries are gone from reads once the mark passes their bucket; a cleared
/// entry that comes back after the grace period is only replayed again.
pub(super) const OUTBOX_WITH: &str = " WITH gc_grace_seconds = 600";
/// Each table's low mark: the first bucket that may hold its entries.
pub const MARK_TABLE: &str = "vectorgate_outbox_low";
pub(super) const MARK_COLUMNS: &str = "(tbl text PRIMARY KEY, bucket bigint)";
/// The outbox of earlier versions (one partition per table, a tombstone per cleared
/// entry): its entries are moved into [`OUTBOX_TABLE`] when a proxy opens the keyspace.
pub const OLD_OUTBOX_TABLE: &str = "vectorgate_outbox";

/// The span of stamps one partition holds, in microseconds.
const BUCKET: i64 = 2_000_000;
/// How late after its stamp an entry may land: a writer whose entries took longer
/// writes them again under a new stamp. A bucket closes twice this long after its end
/// (the rest allows for proxies' clocks that differ).
const LANDING: Duration = Duration::from_secs(5);
/// How many buckets are read at once.
const READ_AHEAD: usize = 8;

fn bucket_of(ts: i64) -> i64 {
    ts.div_euclid(BUCKET)
}

/// Whether no entry can land in `bucket` any more at `now`.
fn closed(bucket: i64, now: i64) -> bool {
    (bucket + 1) * BUCKET + 2 * LANDING.as_micros() as i64 <= now
}

impl ScyllaRows {
    /// Stamp outbox entries for `keys` (before the rows change), as one write of
    /// `table` stamped `ts`.
    pub(super) async fn outbox_add(
        &self,
        table: &TableDef,
        keys_: &[Vec<Value>],
        ts: i64,
    ) -> Result<()> {
        // A table without a vector column has no index to keep in step.
        if !table.indexed() || keys_.is_empty() {
            return Ok(());
        }
        let stmt = self
            .prepare(format!(
                "INSERT INTO {}.{} (tbl, bucket, ts, writer, key) VALUES (?, ?, ?, ?, ?)",
                q(&self.ks),
                q(OUTBOX_TABLE)
            ))
            .await?;
        let landing = LANDING.as_micros() as i64;
        // A stamp from long ago (a commit finished from its log) is placed now.
        let mut stamp = if now_micros() - ts > landing / 2 {
            now_micros()
        } else {
            ts
        };
        loop {
            let values = keys_
                .iter()
                .map(|k| {
                    vec![
                        Some(CqlValue::Text(table.stored_name().to_string())),
                        Some(CqlValue::BigInt(bucket_of(stamp))),
                        Some(CqlValue::BigInt(stamp)),
                        Some(CqlValue::BigInt(self.writer)),
                        Some(CqlValue::Blob(keys::encode(k))),
                    ]
                })
                .collect();
            self.execute_batched(stmt.clone(), values).await?;
            // Landed late: a reader may have passed the bucket; again, under a new stamp
            // (these are not cleared by the writer; the reconciler replays them).
            if now_micros() - stamp <= landing {
                return Ok(());
            }
            tracing::warn!(table = %table.name, "outbox entries were slow to land; written again");
            stamp = now_micros();
        }
    }

    /// Give a table a low mark if it has none (a table made, or changed): the bucket
    /// before now, since none of its entries is older.
    pub(super) async fn outbox_open(&self, table: &TableDef) -> Result<()> {
        self.session
            .query_unpaged(
                format!(
                    "INSERT INTO {}.{} (tbl, bucket) VALUES (?, ?) IF NOT EXISTS",
                    q(&self.ks),
                    q(MARK_TABLE)
                ),
                (table.stored_name(), bucket_of(now_micros()) - 1),
            )
            .await
            .map_err(cql_err)?;
        Ok(())
    }

    /// Marks for the tables that have none (made before this outbox), then the entries
    /// of the outbox of earlier versions moved over (stamped now, so after the marks).
    /// A move that fails leaves the old outbox for the next start, and says so.
    pub(super) async fn outbox_migrate(&self, existing: &[String]) -> Result<()> {
        let res = self
            .session
            .query_unpaged(
                format!("SELECT tbl FROM {}.{}", q(&self.ks), q(MARK_TABLE)),
                (),
            )
            .await
            .map_err(cql_err)?;
        let rows = res.into_rows_result().map_err(cql_err)?;
        let marked = rows
            .rows::<(String,)>()
            .map_err(cql_err)?
            .map(|r| r.map(|(t,)| t).map_err(cql_err))
            .collect::<Result<std::collections::HashSet<_>>>()?;
        for def in self.list_tables().await? {
            if !marked.contains(def.stored_name()) {
                self.outbox_open(&def).await?;
            }
        }
        if !existing.iter().any(|t| t == OLD_OUTBOX_TABLE) {
            return Ok(());
        }
        match self.move_old_entries().await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(entries = n, "outbox entries moved to the bucketed outbox");
                }
                self.ddl(&format!(
                    "DROP TABLE IF EXISTS {}.{}",
                    q(&self.ks),
                    q(OLD_OUTBOX_TABLE)
                ))
                .await
            }
            Err(e) => {
                tracing::error!(error = %e, "the entries of the earlier outbox could not be moved; the move is tried again at the next start");
                Ok(())
            }
        }
    }

    async fn move_old_entries(&self) -> Result<u64> {
        let mut stmt = scylla::statement::unprepared::Statement::new(format!(
            "SELECT tbl, key FROM {}.{}",
            q(&self.ks),
            q(OLD_OUTBOX_TABLE)
        ));
        stmt.set_page_size(1000);
        let mut pages = self
            .session
            .query_iter(stmt, ())
            .await
            .map_err(cql_err)?
            .rows_stream::<(String, Vec<u8>)>()
            .map_err(cql_err)?;
        let insert = self
            .prepare(format!(
                "INSERT INTO {}.{} (tbl, bucket, ts, writer, key) VALUES (?, ?, ?, ?, ?)",
                q(&self.ks),
                q(OUTBOX_TABLE)
            ))
            .await?;
        let ts = now_micros();
        let mut n = 0u64;
        let mut batch = Vec::new();
        while let Some(row) = pages.next().await {
            let (tbl, key) = row.map_err(cql_err)?;
            batch.push(vec![
                Some(CqlValue::Text(tbl)),
                Some(CqlValue::BigInt(bucket_of(ts))),
                Some(CqlValue::BigInt(ts)),
                Some(CqlValue::BigInt(self.writer)),
                Some(CqlValue::Blob(key)),
            ]);
            n += 1;
            if batch.len() >= 1000 {
                self.execute_many(insert.clone(), std::mem::take(&mut batch))
                    .await?;
            }
        }
        self.execute_many(insert, batch).await?;
        Ok(n)
    }

    /// The table's low mark.
    async fn mark(&self, tbl: &str) -> Result<i64> {
        let stmt = self
            .prepare(format!(
                "SELECT bucket FROM {}.{} WHERE tbl = ?",
                q(&self.ks),
                q(MARK_TABLE)
            ))
            .await?;
        let res = self
            .session
            .execute_unpaged(&stmt, (tbl,))
            .await
            .map_err(cql_err)?;
        let rows = res.into_rows_result().map_err(cql_err)?;
        match rows.maybe_first_row::<(i64,)>().map_err(cql_err)? {
            Some((b,)) => Ok(b),
            None => Err(Error::internal(format!(
                "the outbox has no low mark for \"{tbl}\" (a table made by an earlier version while this one ran? restart the proxy)"
            ))),
        }
    }

    pub(super) async fn outbox_pending_impl(
        &self,
        table: &TableDef,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>> {
        let tbl = table.stored_name();
        let mark = self.mark(tbl).await?;
        let now = now_micros();
        let last = bucket_of(upto.min(now + BUCKET));
        let stmt = self
            .prepare(format!(
                "SELECT ts, writer, key FROM {}.{} WHERE tbl = ? AND bucket = ? LIMIT ?",
                q(&self.ks),
                q(OUTBOX_TABLE)
            ))
            .await?;
        let per_read = limit.clamp(1, i32::MAX as usize) as i32;
        let mut reads = futures::stream::iter(mark..=last)
            .map(|bucket| {
                let stmt = stmt.clone();
                async move {
                    let res = self
                        .session
                        .execute_unpaged(&stmt, (tbl, bucket, per_read))
                        .await
                        .map_err(cql_err)?;
                    let rows = res.into_rows_result().map_err(cql_err)?;
                    let mut out = Vec::new();
                    for r in rows.rows::<(i64, i64, Vec<u8>)>().map_err(cql_err)? {
                        let (ts, writer, key) = r.map_err(cql_err)?;
                        out.push(OutboxEntry {
                            key: keys::decode(&key)?,
                            ts,
                            writer: Some(writer),
                        });
                    }
                    Ok::<_, Error>((bucket, out))
                }
            })
            .buffered(READ_AHEAD);
        let mut out = Vec::new();
        // The buckets read empty and closed ahead of the first with entries.
        let mut passed = None;
        let mut leading = true;
        while let Some(read) = reads.next().await {
            let (bucket, entries) = read?;
            if leading {
                if entries.is_empty() && closed(bucket, now) {
                    passed = Some(bucket);
                } else {
                    leading = false;
                }
            }
            out.extend(entries.into_iter().filter(|e| e.ts <= upto));
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        drop(reads);
        if let Some(bucket) = passed {
            self.session
                .query_unpaged(
                    format!(
                        "UPDATE {}.{} SET bucket = ? WHERE tbl = ?",
                        q(&self.ks),
                        q(MARK_TABLE)
                    ),
                    (bucket + 1, tbl),
                )
                .await
                .map_err(cql_err)?;
        }
        Ok(out)
    }

    pub(super) async fn outbox_clear_impl(
        &self,
        table: &TableDef,
        entries: &[OutboxEntry],
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let tbl = table.stored_name();
        // This process's own writes go a write at a time (one range deletion each);
        // entries read back, one at a time (another write with the same stamp and
        // writer may have more entries than were read).
        let mut writes: Vec<i64> = entries
            .iter()
            .filter(|e| e.writer.is_none())
            .map(|e| e.ts)
            .collect();
        writes.sort_unstable();
        writes.dedup();
        let whole = self
            .prepare(format!(
                "DELETE FROM {}.{} WHERE tbl = ? AND bucket = ? AND ts = ? AND writer = ?",
                q(&self.ks),
                q(OUTBOX_TABLE)
            ))
            .await?;
        let one = self
            .prepare(format!(
                "DELETE FROM {}.{} WHERE tbl = ? AND bucket = ? AND ts = ? AND writer = ? AND key = ?",
                q(&self.ks),
                q(OUTBOX_TABLE)
            ))
            .await?;
        let mut deletes: Vec<(PreparedStatement, Vec<Option<CqlValue>>)> = writes
            .into_iter()
            .map(|ts| {
                (
                    whole.clone(),
                    vec![
                        Some(CqlValue::Text(tbl.to_string())),
                        Some(CqlValue::BigInt(bucket_of(ts))),
                        Some(CqlValue::BigInt(ts)),
                        Some(CqlValue::BigInt(self.writer)),
                    ],
                )
            })
            .collect();
        for e in entries {
            if let Some(writer) = e.writer {
                deletes.push((
                    one.clone(),
                    vec![
                        Some(CqlValue::Text(tbl.to_string())),
                        Some(CqlValue::BigInt(bucket_of(e.ts))),
                        Some(CqlValue::BigInt(e.ts)),
                        Some(CqlValue::BigInt(writer)),
                        Some(CqlValue::Blob(keys::encode(&e.key))),
                    ],
                ));
            }
        }
        self.run_each(deletes).await
    }

    /// Run statements, many at once.
    async fn run_each(&self, stmts: Vec<(PreparedStatement, Vec<Option<CqlValue>>)>) -> Result<()> {
        let session = self.session.clone();
        futures::stream::iter(stmts.into_iter().map(move |(stmt, values)| {
            let session = session.clone();
            async move {
                session
                    .execute_unpaged(&stmt, values)
                    .await
                    .map_err(cql_err)
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
        Ok(())
    }

    /// A dropped table's entries and mark.
    pub(super) async fn outbox_drop(&self, table: &TableDef) -> Result<()> {
        let tbl = table.stored_name();
        let mark = match table.indexed() {
            true => self.mark(tbl).await.ok(),
            false => None,
        };
        // The buckets that may hold entries, and a little beyond now for clocks ahead.
        let last = bucket_of(now_micros()) + 1;
        let buckets = mark.into_iter().flat_map(|m| m..=last);
        let stmt = self
            .prepare(format!(
                "DELETE FROM {}.{} WHERE tbl = ? AND bucket = ?",
                q(&self.ks),
                q(OUTBOX_TABLE)
            ))
            .await?;
        let tbl_ = tbl.to_string();
        self.run_each(
            buckets
                .map(|bucket| {
                    (
                        stmt.clone(),
                        vec![
                            Some(CqlValue::Text(tbl_.clone())),
                            Some(CqlValue::BigInt(bucket)),
                        ],
                    )
                })
                .collect(),
        )
        .await?;
        self.session
            .query_unpaged(
                format!(
                    "DELETE FROM {}.{} WHERE tbl = ?",
                    q(&self.ks),
                    q(MARK_TABLE)
                ),
                (tbl,),
            )
            .await
            .map_err(cql_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_closes_only_after_entries_stamped_in_it_can_no_longer_land() {
        let landing = LANDING.as_micros() as i64;
        let b = bucket_of(10 * BUCKET + 1);
        assert_eq!(b, 10);
        // An entry stamped at the bucket's last microsecond may land `landing` later,
        // and a clock another proxy keeps may be `landing` behind.
        let last_stamp = 11 * BUCKET - 1;
        assert!(!closed(b, last_stamp + landing));
        assert!(!closed(b, last_stamp + 2 * landing));
        assert!(closed(b, last_stamp + 2 * landing + 1));
        assert_eq!(bucket_of(-1), -1);
    }
}
