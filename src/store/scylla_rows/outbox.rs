//! The outbox in CQL: the keys of each write to an indexed table, stamped before the
//! rows change and cleared once the index has the change.
//!
//! A write's keys are one row (or a few, [`PART_BYTES`] each): partitioned by table and
//! by [`BUCKET`] of their stamp, clustered by (stamp, writer, part). So a write costs the
//! store one more mutation, not one per key, and the writer clears it with one range
//! deletion. A table's low mark (in [`MARK_TABLE`]) is the first bucket that may still
//! hold entries; readers start there, and a bucket that is empty and closed (no entry can
//! land in it any more, see [`LANDING`]) moves the mark past it for good. So a reader
//! meets the tombstones of the last few seconds' clears, whatever the table's write
//! history. (With one partition per table and a row per key, a 100K-row load left 100K
//! tombstones that every poll of the reconciler read, and Cassandra fails a read at
//! 100,000.) Entries of one write are read and cleared together.

use std::time::Duration;

use futures::stream::StreamExt;
use scylla::value::CqlValue;

use super::{ScyllaRows, cql_err, q};
use crate::error::{Error, Result};
use crate::store::{OutboxEntry, RowStore, TableDef, keys, now_micros, write_stamp};
use crate::types::Value;

/// Pending index changes, partitioned by (table, bucket of their stamp).
pub const OUTBOX_TABLE: &str = "vectorgate_outbox_by_time";
pub(super) const OUTBOX_COLUMNS: &str = "(tbl text, bucket bigint, ts bigint, writer bigint, part int, keys blob, PRIMARY KEY ((tbl, bucket), ts, writer, part))";
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
/// How many buckets are read at once (one request).
const READ_AHEAD: usize = 8;
/// How far (in buckets) a reader's low mark may run ahead of the stored one before it
/// is written.
const MARK_LAG: i64 = 8;
/// About how many bytes of keys one row of the outbox holds.
const PART_BYTES: usize = 64 * 1024;

/// A row of the outbox as read: (stamp, writer, part, keys).
type Stored = (i64, i64, i32, Vec<u8>);

/// A write's encoded keys, in parts of about [`PART_BYTES`]: each key as its length
/// (4 bytes, big-endian) and its bytes.
fn parts(keys_: &[Vec<Value>]) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    for k in keys_ {
        let k = keys::encode(k);
        let last = out.last_mut().expect("a part");
        if !last.is_empty() && last.len() + 4 + k.len() > PART_BYTES {
            out.push(Vec::new());
        }
        let last = out.last_mut().expect("a part");
        last.extend_from_slice(&(k.len() as u32).to_be_bytes());
        last.extend_from_slice(&k);
    }
    out
}

/// The keys of one part.
fn unpart(mut part: &[u8]) -> Result<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    while !part.is_empty() {
        let (len, rest) = part
            .split_first_chunk::<4>()
            .ok_or_else(|| Error::internal("a truncated outbox entry"))?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(Error::internal("a truncated outbox entry"));
        }
        out.push(keys::decode(&rest[..len])?);
        part = &rest[len..];
    }
    Ok(out)
}

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
        let landing = LANDING.as_micros() as i64;
        // A stamp from long ago (a commit finished from its log) is placed now. (A new
        // stamp comes from `write_stamp`, as `ts` did: two writes of this process never
        // share one, and so never a row of the outbox.)
        let mut stamp = if now_micros() - ts > landing / 2 {
            write_stamp()
        } else {
            ts
        };
        loop {
            self.put_write(table.stored_name(), keys_, stamp).await?;
            // Landed late: a reader may have passed the bucket; again, under a new stamp
            // (these are not cleared by the writer; the reconciler replays them).
            if now_micros() - stamp <= landing {
                return Ok(());
            }
            tracing::warn!(table = %table.name, "outbox entries were slow to land; written again");
            stamp = write_stamp();
        }
    }

    /// Store the keys of one write of `tbl` stamped `stamp` by this process.
    async fn put_write(&self, tbl: &str, keys_: &[Vec<Value>], stamp: i64) -> Result<()> {
        let stmt = self
            .prepare(format!(
                "INSERT INTO {}.{} (tbl, bucket, ts, writer, part, keys) VALUES (?, ?, ?, ?, ?, ?)",
                q(&self.ks),
                q(OUTBOX_TABLE)
            ))
            .await?;
        let values = parts(keys_)
            .into_iter()
            .enumerate()
            .map(|(n, part)| {
                vec![
                    Some(CqlValue::Text(tbl.to_string())),
                    Some(CqlValue::BigInt(bucket_of(stamp))),
                    Some(CqlValue::BigInt(stamp)),
                    Some(CqlValue::BigInt(self.writer)),
                    Some(CqlValue::Int(n as i32)),
                    Some(CqlValue::Blob(part)),
                ]
            })
            .collect();
        self.execute_batched(stmt, values).await
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
        let mut by_table: std::collections::HashMap<String, Vec<Vec<Value>>> = Default::default();
        let mut n = 0u64;
        while let Some(row) = pages.next().await {
            let (tbl, key) = row.map_err(cql_err)?;
            by_table.entry(tbl).or_default().push(keys::decode(&key)?);
            n += 1;
        }
        for (tbl, keys_) in by_table {
            for chunk in keys_.chunks(1000) {
                self.put_write(&tbl, chunk, write_stamp()).await?;
            }
        }
        Ok(n)
    }

    /// The table's low mark: read once, then as this process moved it (another proxy
    /// may have moved the stored one further; reading from an earlier bucket finds the
    /// same entries).
    async fn mark(&self, tbl: &str) -> Result<i64> {
        if let Some(&(m, _)) = self.marks.lock().get(tbl) {
            return Ok(m);
        }
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
            Some((b,)) => {
                self.marks.lock().insert(tbl.to_string(), (b, b));
                Ok(b)
            }
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
        // Up to READ_AHEAD buckets in one request (an idle table's poll is one read).
        let mut stmt = self
            .prepare(format!(
                "SELECT bucket, ts, writer, part, keys FROM {}.{} WHERE tbl = ? AND bucket IN ?",
                q(&self.ks),
                q(OUTBOX_TABLE)
            ))
            .await?;
        stmt.set_page_size(256);
        let mut out: Vec<OutboxEntry> = Vec::new();
        // The buckets read empty and closed ahead of the first with entries.
        let mut passed = None;
        let mut leading = true;
        let mut first = mark;
        'read: while first <= last {
            let group: Vec<i64> = (first..=last).take(READ_AHEAD).collect();
            first += group.len() as i64;
            let mut read = self
                .session
                .execute_iter(stmt.clone(), (tbl, &group))
                .await
                .map_err(cql_err)?
                .rows_stream::<(i64, i64, i64, i32, Vec<u8>)>()
                .map_err(cql_err)?;
            // (The partitions of an IN may come in any order.)
            let mut found: std::collections::BTreeMap<i64, Vec<Stored>> =
                group.iter().map(|&b| (b, Vec::new())).collect();
            while let Some(r) = read.next().await {
                let (bucket, ts, writer, part, keys_) = r.map_err(cql_err)?;
                found
                    .entry(bucket)
                    .or_default()
                    .push((ts, writer, part, keys_));
            }
            for (bucket, mut rows) in found {
                if leading {
                    if rows.is_empty() && closed(bucket, now) {
                        passed = Some(bucket);
                    } else {
                        leading = false;
                    }
                }
                rows.sort_unstable_by_key(|(ts, writer, part, _)| (*ts, *writer, *part));
                for (ts, writer, _, keys_) in rows.into_iter().filter(|r| r.0 <= upto) {
                    // Whole writes: stop only where one ends.
                    if out.len() >= limit
                        && out
                            .last()
                            .is_some_and(|l| (l.ts, l.writer) != (ts, Some(writer)))
                    {
                        break 'read;
                    }
                    out.extend(unpart(&keys_)?.into_iter().map(|key| OutboxEntry {
                        key,
                        ts,
                        writer: Some(writer),
                    }));
                }
            }
        }
        if let Some(bucket) = passed {
            self.pass(tbl, bucket + 1).await?;
        }
        Ok(out)
    }

    /// Move the table's low mark to `bucket`: in memory at once, in the store once it
    /// is [`MARK_LAG`] buckets ahead of the stored one (a reader that starts from the
    /// stored mark reads those few buckets more).
    async fn pass(&self, tbl: &str, bucket: i64) -> Result<()> {
        let stored = {
            let mut marks = self.marks.lock();
            let m = marks.entry(tbl.to_string()).or_insert((bucket, bucket));
            m.0 = m.0.max(bucket);
            m.1
        };
        if bucket < stored + MARK_LAG {
            return Ok(());
        }
        self.session
            .query_unpaged(
                format!(
                    "UPDATE {}.{} SET bucket = ? WHERE tbl = ?",
                    q(&self.ks),
                    q(MARK_TABLE)
                ),
                (bucket, tbl),
            )
            .await
            .map_err(cql_err)?;
        if let Some(m) = self.marks.lock().get_mut(tbl) {
            m.1 = m.1.max(bucket);
        }
        Ok(())
    }

    pub(super) async fn outbox_clear_impl(
        &self,
        table: &TableDef,
        entries: &[OutboxEntry],
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // A write's entries go together, with one range deletion.
        let mut writes: Vec<(i64, i64)> = entries
            .iter()
            .map(|e| (e.ts, e.writer.unwrap_or(self.writer)))
            .collect();
        writes.sort_unstable();
        writes.dedup();
        let stmt = self
            .prepare(format!(
                "DELETE FROM {}.{} WHERE tbl = ? AND bucket = ? AND ts = ? AND writer = ?",
                q(&self.ks),
                q(OUTBOX_TABLE)
            ))
            .await?;
        let deletes = writes
            .into_iter()
            .map(|(ts, writer)| {
                (
                    stmt.clone(),
                    vec![
                        Some(CqlValue::Text(table.stored_name().to_string())),
                        Some(CqlValue::BigInt(bucket_of(ts))),
                        Some(CqlValue::BigInt(ts)),
                        Some(CqlValue::BigInt(writer)),
                    ],
                )
            })
            .collect();
        self.run_all(deletes).await
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
        self.run_all(
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
        self.marks.lock().remove(tbl);
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

    #[test]
    fn a_write_s_keys_round_trip_through_its_parts() {
        let keys_: Vec<Vec<Value>> = (0..5000)
            .map(|i| vec![Value::Int(i), Value::Text("k".repeat(i as usize % 40))])
            .collect();
        let parts = parts(&keys_);
        assert!(parts.len() > 1, "{} parts", parts.len());
        assert!(parts.iter().all(|p| p.len() <= PART_BYTES));
        let back: Vec<Vec<Value>> = parts
            .iter()
            .flat_map(|p| unpart(p).expect("decodes"))
            .collect();
        assert_eq!(back, keys_);
        assert!(unpart(&parts[0][..parts[0].len() - 1]).is_err());
    }
}
