//! Cassandra 5's own vector search, on the same data: a table with a `vector<float, n>`
//! column, a SAI vector index (and a SAI index on `cat` for the filters), loaded with
//! prepared INSERTs and searched with `ORDER BY embedding ANN OF ? LIMIT k`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::value::CqlValue;

use crate::cpu::{Reading, Spent};
use crate::data::{self, Dataset};
use crate::stats::{Run, summarize};

pub const KEYSPACE: &str = "vectorgate_bench_sai";

pub async fn connect(hosts: &str) -> anyhow::Result<Arc<Session>> {
    let mut b = SessionBuilder::new();
    for h in hosts.split(',') {
        b = b.known_node(h);
    }
    Ok(Arc::new(b.build().await?))
}

fn vector(v: &[f32]) -> CqlValue {
    CqlValue::Vector(v.iter().map(|x| CqlValue::Float(*x)).collect())
}

/// Create `KEYSPACE.table` afresh with its SAI indexes and load `d` into it with prepared
/// INSERTs, `inflight` at a time; rows/s.
pub async fn load(
    s: &Arc<Session>,
    table: &str,
    d: &Dataset,
    inflight: usize,
) -> anyhow::Result<f64> {
    Ok(load_into(s, table, d, inflight, true).await?.0)
}

/// [`load`] into a table without indexes (Cassandra's own load rate), dropped after; rows/s
/// and the CPU spent during the inserts alone (not the table's creation or drop).
pub async fn load_plain(
    s: &Arc<Session>,
    table: &str,
    d: &Dataset,
    inflight: usize,
) -> anyhow::Result<(f64, Spent)> {
    let loaded = load_into(s, table, d, inflight, false).await;
    drop_table(s, table).await;
    loaded
}

async fn load_into(
    s: &Arc<Session>,
    table: &str,
    d: &Dataset,
    inflight: usize,
    sai: bool,
) -> anyhow::Result<(f64, Spent)> {
    let ddl = [
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
        format!("DROP TABLE IF EXISTS {KEYSPACE}.{table}"),
        format!(
            "CREATE TABLE {KEYSPACE}.{table} (id bigint PRIMARY KEY, cat int, title text, embedding vector<float, {}>)",
            d.dim()
        ),
        format!(
            "CREATE INDEX {table}_ann ON {KEYSPACE}.{table} (embedding) USING 'sai' WITH OPTIONS = {{'similarity_function': '{}'}}",
            match d.distance {
                vectorgate::store::Distance::Cosine => "cosine",
                vectorgate::store::Distance::L2 => "euclidean",
                vectorgate::store::Distance::Dot => "dot_product",
            }
        ),
        format!("CREATE INDEX {table}_cat ON {KEYSPACE}.{table} (cat) USING 'sai'"),
    ];
    for q in ddl.iter().take(if sai { 5 } else { 3 }) {
        s.query_unpaged(q.as_str(), ()).await?;
    }
    let insert = s
        .prepare(format!(
            "INSERT INTO {KEYSPACE}.{table} (id, cat, title, embedding) VALUES (?, ?, ?, ?)"
        ))
        .await?;
    let started = Instant::now();
    let cpu = Reading::now();
    let results: Vec<_> = futures::stream::iter(0..d.vectors.len())
        .map(|i| {
            let (s, insert) = (s.clone(), insert.clone());
            let values = (
                i as i64,
                d.cats[i],
                format!("doc {i}"),
                vector(&d.vectors[i]),
            );
            async move { s.execute_unpaged(&insert, values).await }
        })
        .buffer_unordered(inflight)
        .collect()
        .await;
    let spent = cpu.spent();
    for r in results {
        r?;
    }
    Ok((
        d.vectors.len() as f64 / started.elapsed().as_secs_f64(),
        spent,
    ))
}

/// ANN searches with filter `filter`, `clients` at a time.
pub async fn search(
    s: &Arc<Session>,
    table: &str,
    d: &Arc<Dataset>,
    filter: usize,
    k: usize,
    clients: usize,
    queries: usize,
) -> anyhow::Result<Run> {
    let f = data::FILTERS[filter];
    let cql = format!(
        "SELECT id, title FROM {KEYSPACE}.{table}{} ORDER BY embedding ANN OF ? LIMIT {k}",
        if f.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", f.sql)
        }
    );
    let stmt = s.prepare(cql).await?;
    for qi in 0..5.min(d.queries.len()) {
        s.execute_unpaged(&stmt, (vector(&d.queries[qi]),)).await?;
    }
    let total = queries.max(clients);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (s, stmt, d) = (s.clone(), stmt.clone(), d.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            let mut i = c;
            while i < total {
                let qi = i % d.queries.len();
                let t = Instant::now();
                let res = s.execute_unpaged(&stmt, (vector(&d.queries[qi]),)).await?;
                let rows = res.into_rows_result()?;
                let ids: Vec<i64> = rows
                    .rows::<(i64, Option<String>)>()?
                    .filter_map(|r| r.ok().map(|r| r.0))
                    .collect();
                out.push((
                    t.elapsed().as_secs_f64() * 1000.0,
                    data::recall(&ids, &d.truth[filter][qi], k),
                ));
                i += clients;
            }
            anyhow::Ok(out)
        });
    }
    let mut samples = Vec::new();
    while let Some(r) = tasks.join_next().await {
        samples.extend(r??);
    }
    Ok(summarize(
        format!(
            "Cassandra SAI, {}, {clients} client{}",
            f.label,
            if clients == 1 { "" } else { "s" }
        ),
        samples,
        started.elapsed(),
        None,
    ))
}

/// Drop the benchmark's keyspace (its SAI indexes hold the vectors in memory).
pub async fn drop_table(s: &Session, table: &str) {
    let _ = s
        .query_unpaged(format!("DROP TABLE IF EXISTS {KEYSPACE}.{table}"), ())
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}
