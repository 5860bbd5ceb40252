//! Keeping the vector index in step with the rows. Today: building a table's index from
//! a scan of its rows (a table another proxy created, an attached table, a lost index).

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
    data: &std::path::Path,
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
    let index = crate::store::edge_index::EdgeIndex::open(&data.join("vectors"))?;
    index.create_collection(&def).await?;
    let (seen, indexed) =
        backfill_with_progress(&rows, index.as_ref(), &def, &mut |_, _| {}).await?;
    index.flush().await?;
    Ok(Attached {
        name: def.name,
        rows: seen,
        indexed,
    })
}
