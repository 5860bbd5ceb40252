//! The same searches without the proxy: the benchmark calls the index and the row store
//! in process (the index search, then the k row fetches), as the proxy does for them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vectorgate::store::filter::{CmpOp, Scalar};
use vectorgate::store::{Predicate, QueryVector, RowStore, SearchParams, SearchQuery, VectorIndex};
use vectorgate::types::Value;

use crate::data::{self, Dataset};
use crate::stats::{Run, summarize};

fn predicate(filter: usize) -> Option<Predicate> {
    let cmp = |op, v| Predicate::Compare {
        column: "cat".into(),
        op,
        value: Scalar::Int(v),
    };
    match data::FILTERS[filter].sql {
        "" => None,
        "cat < 50" => Some(cmp(CmpOp::Lt, 50)),
        "cat < 10" => Some(cmp(CmpOp::Lt, 10)),
        "cat = 7" => Some(cmp(CmpOp::Eq, 7)),
        _ => None,
    }
}

/// Searches of `table` with each filter in `filters` (k), one at a time, on the stores
/// the stopped server left in `data` (rows in Cassandra when `rows` is given). With a
/// `gap`, the process idles that long (untimed) before each search, as a server does
/// between the requests of one client: caches and the CPU cool down meanwhile, which
/// calls made back to back never see.
#[allow(clippy::too_many_arguments)]
pub async fn search(
    data_dir: &Path,
    rows: Option<Arc<dyn RowStore>>,
    table: &str,
    d: &Dataset,
    filters: &[usize],
    k: usize,
    queries: usize,
    gap: Duration,
) -> anyhow::Result<Vec<Run>> {
    let rows: Arc<dyn RowStore> = match rows {
        Some(r) => r,
        None => Arc::new(vectorgate::store::embedded_rows::EmbeddedRows::open(
            &data_dir.join("rows.redb"),
            vectorgate::store::embedded_rows::EmbeddedRows::DEFAULT_CACHE_BYTES,
        )?),
    };
    let index = vectorgate::store::edge_index::EdgeIndex::open(&data_dir.join("vectors"))?;
    let def = rows
        .list_tables()
        .await?
        .into_iter()
        .find(|t| t.name == table)
        .ok_or_else(|| anyhow::anyhow!("no table {table}"))?;
    let mut out = Vec::new();
    for &fi in filters {
        let pred = predicate(fi);
        let mut samples = Vec::new();
        let params = SearchParams::default();
        // A first, untimed pass over every query: the index was just opened from disk,
        // and the server it is compared with had its pages in memory.
        for q in &d.queries {
            let hits = index
                .search(
                    &def,
                    &SearchQuery {
                        using: "",
                        vector: QueryVector::Dense(q),
                        filter: pred.as_ref(),
                        limit: k,
                        offset: 0,
                        params: &params,
                    },
                )
                .await?;
            let keys: Vec<_> = hits.into_iter().map(|h| h.key).collect();
            rows.get(&def, &keys).await?;
        }
        for i in 0..queries + 5 {
            let qi = i % d.queries.len();
            if !gap.is_zero() {
                // The thread sleeps (tokio's timer counts in milliseconds).
                std::thread::sleep(gap);
            }
            let t = Instant::now();
            let hits = index
                .search(
                    &def,
                    &SearchQuery {
                        using: "",
                        vector: QueryVector::Dense(&d.queries[qi]),
                        filter: pred.as_ref(),
                        limit: k,
                        offset: 0,
                        params: &params,
                    },
                )
                .await?;
            let keys: Vec<_> = hits.into_iter().map(|h| h.key).collect();
            let fetched = rows.get(&def, &keys).await?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let ids: Vec<i64> = fetched
                .iter()
                .flatten()
                .filter_map(|r| {
                    if let Value::Int(i) = r[0] {
                        Some(i)
                    } else {
                        None
                    }
                })
                .collect();
            if i >= 5 {
                samples.push((ms, data::recall(&ids, &d.truth[fi][qi], k)));
            }
        }
        out.push(summarize(
            format!("direct, {}", data::FILTERS[fi].label),
            samples,
            Duration::ZERO,
            None,
        ));
    }
    Ok(out)
}
