//! Keeping the vector index in step with the rows. Today: building a table's index from
//! a scan of its rows (a table another proxy created, an attached table, a lost index).

use futures::StreamExt;

use crate::error::Result;
use crate::store::{RowStore, TableDef, VectorIndex, point_for_row};

/// Index every row of `def` that has a vector; returns how many points were written.
pub async fn backfill(rows: &dyn RowStore, index: &dyn VectorIndex, def: &TableDef) -> Result<u64> {
    let mut stream = rows.scan(def, 512, None);
    let (mut seen, mut indexed) = (0u64, 0u64);
    let started = std::time::Instant::now();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        seen += batch.len() as u64;
        let points: Vec<_> = batch.iter().filter_map(|r| point_for_row(def, r)).collect();
        indexed += points.len() as u64;
        index.upsert(def, points).await?;
        tracing::info!(table = %def.name, rows = seen, indexed, "building the vector index from the rows");
    }
    tracing::info!(
        table = %def.name,
        rows = seen,
        indexed,
        seconds = started.elapsed().as_secs_f64(),
        "vector index built from the rows"
    );
    Ok(indexed)
}
