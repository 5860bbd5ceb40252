//! Keeping the vector index in step with the rows: the outbox replay (the reconciler,
//! and expiry of rows with a TTL), building a table's index from a scan of its rows (a
//! table another proxy created, an attached table, a lost index), and `reindex`.

use futures::StreamExt;

use crate::error::Result;
use crate::store::{RowStore, TableDef, VectorIndex, point_for_row};

/// Index every row of `def` that has a vector; returns how many points were written.
pub async fn backfill(rows: &dyn RowStore, index: &dyn VectorIndex, def: &TableDef) -> Result<u64> {
    Ok(backfill_with_progress(rows, index, def, &mut |_, _| {})
        .await?
        .1)
}

/// [`backfill`], reporting (rows read, points written) after each batch. On a terminal
/// the progress is one updating line; otherwise log lines, at most one every 2 seconds.
pub async fn backfill_with_progress(
    rows: &dyn RowStore,
    index: &dyn VectorIndex,
    def: &TableDef,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<(u64, u64)> {
    let mut stream = rows.scan(def, 1024, None);
    let (mut seen, mut indexed) = (0u64, 0u64);
    let started = std::time::Instant::now();
    let mut last_log = started;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        seen += batch.len() as u64;
        let points: Vec<_> = batch.iter().filter_map(|r| point_for_row(def, r)).collect();
        indexed += points.len() as u64;
        index.upsert(def, points).await?;
        progress(seen, indexed);
        let rate = seen as f64 / started.elapsed().as_secs_f64().max(1e-3);
        if tty {
            eprint!(
                "\r  {}: {seen} rows read, {indexed} vectors indexed ({rate:.0} rows/s)   ",
                def.name
            );
        } else if last_log.elapsed() >= std::time::Duration::from_secs(2) {
            last_log = std::time::Instant::now();
            tracing::info!(table = %def.name, rows = seen, indexed, rate = rate as u64, "building the vector index from the rows");
        }
    }
    if tty && seen > 0 {
        eprintln!();
    }
    tracing::info!(
        table = %def.name,
        rows = seen,
        indexed,
        seconds = started.elapsed().as_secs_f64(),
        "vector index built from the rows"
    );
    Ok((seen, indexed))
}

/// What `vectorgate attach` registers.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    pub cql_table: String,
    pub name: String,
    pub key: Option<Vec<String>>,
    pub vector: String,
    pub distance: crate::store::Distance,
    pub dimension: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Attached {
    pub name: String,
    pub rows: u64,
    pub indexed: u64,
}

/// Register an existing CQL table in the proxy's catalog and build its vector index
/// (under `data`) from the rows already there.
pub async fn attach(
    cql: &crate::store::scylla_rows::ScyllaConfig,
    index: &dyn VectorIndex,
    req: &AttachRequest,
) -> Result<Attached> {
    use crate::error::Error;
    let rows = crate::store::scylla_rows::ScyllaRows::connect(cql).await?;
    let mut def = rows
        .describe_cql_table(&req.cql_table, &req.name, &req.vector, req.dimension)
        .await?;
    def.distance = req.distance;
    if let Some(key) = &req.key {
        let actual: Vec<&str> = def
            .primary_key
            .iter()
            .map(|&i| def.columns[i].name.as_str())
            .collect();
        if actual != key.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(Error::InvalidParameter(format!(
                "--key {} does not match the primary key of {} ({})",
                key.join(","),
                req.cql_table,
                actual.join(",")
            )));
        }
    }
    rows.attach_table(&def).await?;
    index.create_collection(&def).await?;
    let (seen, indexed) = backfill_with_progress(&rows, index, &def, &mut |_, _| {}).await?;
    index.flush().await?;
    Ok(Attached {
        name: def.name,
        rows: seen,
        indexed,
    })
}

/// What the reconciler last did for a table (for `SHOW vectorgate.sync_status`).
#[derive(Debug, Default, Clone)]
pub struct TableSync {
    /// When the table's outbox was last replayed, in microseconds since the epoch.
    pub last_reconcile: Option<i64>,
    /// Entries replayed since the proxy started.
    pub replayed: u64,
}

/// Make the index reflect the current rows of `keys`: upsert the point of each row that
/// has a vector, delete the point of each key without one. Idempotent. A row that
/// changed while this ran (another writer) is applied again, so the newest row wins.
pub async fn apply_keys(
    rows: &dyn RowStore,
    index: &dyn VectorIndex,
    def: &TableDef,
    keys: &[Vec<crate::types::Value>],
) -> Result<()> {
    let mut keys = keys.to_vec();
    for _ in 0..3 {
        if keys.is_empty() {
            break;
        }
        let before = rows.get(def, &keys).await?;
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for (k, r) in keys.iter().zip(&before) {
            match r.as_ref().and_then(|r| point_for_row(def, r)) {
                Some(p) => upserts.push(p),
                None => deletes.push(crate::store::keys::point_id(def.stored_name(), k)),
            }
        }
        if !upserts.is_empty() {
            index.upsert(def, upserts).await?;
        }
        if !deletes.is_empty() {
            index.delete(def, deletes).await?;
        }
        let after = rows.get(def, &keys).await?;
        keys = keys
            .into_iter()
            .zip(before.iter().zip(&after))
            .filter(|(_, (b, a))| b != a)
            .map(|(k, _)| k)
            .collect();
    }
    Ok(())
}

/// Replay a table's outbox entries older than `grace` (younger ones belong to writes
/// still in flight); returns how many were replayed.
pub async fn reconcile(
    rows: &dyn RowStore,
    index: &dyn VectorIndex,
    def: &TableDef,
    grace: std::time::Duration,
) -> Result<u64> {
    const PAGE: usize = 512;
    let cutoff = crate::store::now_micros() - grace.as_micros() as i64;
    let mut total = 0u64;
    loop {
        let due = rows.outbox_pending(def, cutoff, PAGE).await?;
        let full = due.len() >= PAGE;
        if due.is_empty() {
            break;
        }
        let keys: Vec<_> = due.iter().map(|e| e.key.clone()).collect();
        apply_keys(rows, index, def, &keys).await?;
        rows.outbox_clear(def, &due).await?;
        total += due.len() as u64;
        if !full {
            break;
        }
    }
    Ok(total)
}

/// Remove expired rows (where the row store keeps them) and the points of expired rows.
async fn expire_rows(shared: &super::Core, def: &TableDef) -> Result<()> {
    let purged = shared.rows.purge_expired(def).await?;
    if def.indexed() {
        shared
            .index
            .delete_expired(def, crate::store::now_micros())
            .await?;
    }
    if purged > 0 {
        tracing::info!(table = %def.name, rows = purged, "expired rows removed");
    }
    Ok(())
}

/// How old a commit the reconciler finishes must be: younger ones may still be being
/// written by the proxy that made them (finishing them twice is harmless, but needless).
const RECOVER_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// A table whose outbox was empty this many rounds in a row is read every
/// [`QUIET_EVERY`] rounds only (its next entry waits the grace period anyway, so a few
/// more seconds change little, and an idle proxy sends the store little).
const QUIET_AFTER: u32 = 3;
const QUIET_EVERY: u64 = 8;

/// Replay every table's outbox every `period` while the index takes writes (a table
/// whose outbox stays empty, every [`QUIET_EVERY`] periods; all of them again as soon
/// as the index comes back from a failure); every fifth round, remove what has expired.
pub fn spawn_reconciler(
    shared: std::sync::Weak<super::Core>,
    period: std::time::Duration,
    grace: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut backoff = period;
        let mut tick = 0u64;
        // Each table's empty rounds in a row.
        let mut quiet: std::collections::HashMap<String, u32> = Default::default();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            let Some(shared) = shared.upgrade() else {
                break;
            };
            let expire = tick.is_multiple_of(5);
            // Commits another proxy left half-done when it crashed.
            if expire {
                match shared.rows.recover(RECOVER_AFTER).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        finished = n,
                        "interrupted commits finished from the commit log"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "finishing interrupted commits failed; retrying later")
                    }
                }
            }
            if !shared.health.writable() {
                tick += 1;
                quiet.clear();
                continue;
            }
            let defs: Vec<_> = shared.tables();
            backoff = period;
            tick += 1;
            for def in defs {
                if expire
                    && def.ttl_seconds().is_some()
                    && let Err(e) = expire_rows(&shared, &def).await
                {
                    if super::health::is_index_failure(&e) {
                        shared.health.trip(&e);
                        break;
                    }
                    tracing::warn!(table = %def.name, error = %e, "expiring rows failed; retrying later");
                }
                // A table without a vector column writes no outbox entries.
                if !def.indexed() {
                    continue;
                }
                let empty_rounds = quiet.get(&def.name).copied().unwrap_or(0);
                if empty_rounds >= QUIET_AFTER && !tick.is_multiple_of(QUIET_EVERY) {
                    continue;
                }
                match reconcile(shared.rows.as_ref(), shared.index.as_ref(), &def, grace).await {
                    Ok(n) => {
                        if n == 0 {
                            quiet.insert(def.name.clone(), empty_rounds.saturating_add(1));
                        } else {
                            quiet.remove(&def.name);
                        }
                        if n > 0 {
                            tracing::info!(table = %def.name, replayed = n, "outbox replayed into the vector index");
                        }
                        let mut sync = shared.sync.lock();
                        let s = sync.entry(def.name.clone()).or_default();
                        s.last_reconcile = Some(crate::store::now_micros());
                        s.replayed += n;
                    }
                    Err(e) if super::health::is_index_failure(&e) => {
                        shared.health.trip(&e);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(table = %def.name, error = %e, "outbox replay failed; retrying later");
                        backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
                    }
                }
            }
        }
    });
}

/// What `reindex` found (and, unless verifying only, repaired).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReindexReport {
    /// Rows read from the row store.
    pub rows: u64,
    /// Points found in the index.
    pub points: u64,
    /// Rows with a vector but no point.
    pub missing: u64,
    /// Points whose vector or filter payload differs from their row.
    pub stale: u64,
    /// Points without a live row.
    pub orphaned: u64,
    /// Points beyond the first for one row key.
    pub duplicates: u64,
    pub repaired: bool,
}

/// Compare a table's index with its rows: every row with a vector must have exactly one
/// point with its current vector and payload, and no point may lack a row. With `repair`
/// the differences are fixed. Runs alongside traffic: a point that looks orphaned is
/// checked against the row store again before it counts (a row written since the scan
/// passed it), and repairs go through [`apply_keys`], which re-reads the rows.
pub async fn reindex(
    rows: &dyn RowStore,
    index: &dyn VectorIndex,
    def: &TableDef,
    repair: bool,
    progress: &mut (dyn FnMut(&ReindexReport) + Send),
) -> Result<ReindexReport> {
    use crate::store::HASH_FIELD;
    def.require_vector("reindex")?;
    let mut report = ReindexReport {
        repaired: repair,
        ..Default::default()
    };
    let mut expected = std::collections::HashSet::new();
    let mut stream = rows.scan(def, 1024, None);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        report.rows += batch.len() as u64;
        let points: Vec<_> = batch.iter().filter_map(|r| point_for_row(def, r)).collect();
        let ids: Vec<_> = points.iter().map(|p| p.id).collect();
        expected.extend(ids.iter().copied());
        let have = index.point_hashes(def, &ids).await?;
        let mut fix = Vec::new();
        for (p, row_key) in points
            .iter()
            .zip(batch.iter().filter(|r| point_for_row(def, r).is_some()))
        {
            let want = p.payload.get(HASH_FIELD).and_then(|h| h.as_str());
            match have.get(&p.id) {
                None => report.missing += 1,
                Some(h) if Some(h.as_str()) != want => report.stale += 1,
                Some(_) => continue,
            }
            fix.push(def.key_of(row_key));
        }
        if repair && !fix.is_empty() {
            apply_keys(rows, index, def, &fix).await?;
        }
        progress(&report);
    }
    let mut offset = None;
    let mut seen_keys = std::collections::HashSet::new();
    loop {
        let (page, next) = index.scroll_keys(def, offset, 1024).await?;
        report.points += page.len() as u64;
        let mut suspects = Vec::new();
        for (id, key) in page {
            if let Some(k) = &key
                && !seen_keys.insert(k.clone())
            {
                // Only one of them has the key's own id; the others are orphans below.
                report.duplicates += 1;
            }
            if !expected.contains(&id) {
                suspects.push((
                    id,
                    key.and_then(|k| crate::store::keys::decode_hex(&k).ok()),
                ));
            }
        }
        // A suspect is an orphan unless its row exists now with this very point id.
        let keyed: Vec<Vec<crate::types::Value>> =
            suspects.iter().filter_map(|(_, k)| k.clone()).collect();
        let now = rows.get(def, &keyed).await?;
        let mut live = std::collections::HashSet::new();
        for (k, r) in keyed.iter().zip(now) {
            if r.as_ref().and_then(|r| point_for_row(def, r)).is_some() {
                live.insert(crate::store::keys::point_id(def.stored_name(), k));
            }
        }
        let orphans: Vec<uuid::Uuid> = suspects
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| !live.contains(id))
            .collect();
        report.orphaned += orphans.len() as u64;
        if repair && !orphans.is_empty() {
            index.delete(def, orphans).await?;
        }
        progress(&report);
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    Ok(report)
}
