//! Searches filtered on a jsonb metadata column beside the same filters on ordinary
//! columns, in one run on the embedded stores: `meta->>'cat' = $2` against
//! `cat = $2`, at 1% and at 10% of the rows, and `meta @> $2` at 1%. The filters run
//! inside the vector search in both forms (k counts rows that pass); each answer's recall
//! is measured against the exact answer (`vectorgate.exact`, on another connection), and
//! every answer is checked to hold k rows. The jsonb spelling is measured twice: without
//! payload indexes on its keys, then after `CREATE INDEX ON t ((meta->>'cat'))` made
//! them. Written between `<!-- jsonb -->` markers.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use futures::SinkExt;

use crate::data::Rng;
use crate::proxy::Server;
use crate::statements::vector;

const TABLE: &str = "jsonb_bench";

/// One filter shape in its two spellings.
struct Shape {
    label: &'static str,
    plain: &'static str,
    jsonb: &'static str,
    value: fn(usize) -> String,
    json_value: fn(usize) -> String,
}

fn shapes() -> Vec<Shape> {
    vec![
        Shape {
            label: "1% (`= 'c7'`, 1 value in 100)",
            plain: "cat = $2",
            jsonb: "meta->>'cat' = $2",
            value: |q| format!("c{}", q % 100),
            json_value: |q| format!("c{}", q % 100),
        },
        Shape {
            label: "10% (`= 'd3'`, 1 value in 10)",
            plain: "decile = $2",
            jsonb: "meta->>'decile' = $2",
            value: |q| format!("d{}", q % 10),
            json_value: |q| format!("d{}", q % 10),
        },
        Shape {
            label: "1% as containment (`meta @> '{\"cat\": \"c7\"}'`)",
            plain: "cat = $2",
            jsonb: "meta @> $2::jsonb",
            value: |q| format!("c{}", q % 100),
            json_value: |q| format!("{{\"cat\": \"c{}\"}}", q % 100),
        },
    ]
}

/// Latency and recall of one spelling of a shape.
struct Figures {
    p50: f64,
    p95: f64,
    recall: f64,
}

/// Both spellings of a shape, taking turns query by query.
struct Measured {
    plain: Figures,
    jsonb: Figures,
}

async fn measure(
    client: &tokio_postgres::Client,
    exact: &tokio_postgres::Client,
    shape: &Shape,
    dim: usize,
    queries: usize,
    rng: &mut Rng,
) -> anyhow::Result<Measured> {
    let sql = |filter: &str| {
        format!("SELECT id FROM vector_search('{TABLE}', $1, 10) WHERE {filter} ORDER BY distance")
    };
    let plain = client.prepare(&sql(shape.plain)).await?;
    let jsonb = client.prepare(&sql(shape.jsonb)).await?;
    let truth = exact.prepare(&sql(shape.plain)).await?;
    let (mut pm, mut jm) = (Vec::new(), Vec::new());
    let (mut p_hits, mut j_hits, mut relevant) = (0usize, 0usize, 0usize);
    let ids =
        |rows: Vec<tokio_postgres::Row>| -> Vec<i64> { rows.iter().map(|r| r.get(0)).collect() };
    for q in 0..queries + 5 {
        let v = vector(rng, dim);
        let (pv, jv) = ((shape.value)(q), (shape.json_value)(q));
        let t = Instant::now();
        let a = ids(client.query(&plain, &[&v, &pv]).await?);
        let plain_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        let b = ids(client.query(&jsonb, &[&v, &jv]).await?);
        let jsonb_ms = t.elapsed().as_secs_f64() * 1000.0;
        let want = ids(exact.query(&truth, &[&v, &pv]).await?);
        anyhow::ensure!(
            a.len() == 10 && b.len() == 10 && want.len() == 10,
            "{}: k rows expected (column {a:?}, jsonb {b:?})",
            shape.label
        );
        if q >= 5 {
            pm.push(plain_ms);
            jm.push(jsonb_ms);
            p_hits += a.iter().filter(|i| want.contains(i)).count();
            j_hits += b.iter().filter(|i| want.contains(i)).count();
            relevant += want.len();
        }
    }
    let figures = |ms: Vec<f64>, hits: usize| Figures {
        p50: median(ms.clone()),
        p95: p95(ms),
        recall: hits as f64 / relevant.max(1) as f64,
    };
    Ok(Measured {
        plain: figures(pm, p_hits),
        jsonb: figures(jm, j_hits),
    })
}

fn median(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(|a, b| a.total_cmp(b));
    crate::stats::percentile(&ms, 0.5)
}

fn p95(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(|a, b| a.total_cmp(b));
    crate::stats::percentile(&ms, 0.95)
}

pub async fn section(
    bin: &Path,
    work: &Path,
    rows: usize,
    dim: usize,
    queries: usize,
    seed: u64,
    command: &str,
) -> anyhow::Result<String> {
    let server = Server::start(bin, &work.join("jsonb"), None)?;
    let client = server.connect().await?;
    let exact = server.connect().await?;
    exact.batch_execute("SET vectorgate.exact = on").await?;
    client
        .batch_execute(&format!(
            "CREATE TABLE {TABLE} (id bigint PRIMARY KEY, cat text, decile text, meta jsonb, embedding vector({dim}))"
        ))
        .await?;
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut at = 0;
    while at < rows {
        let end = (at + 1000).min(rows);
        let mut text = String::new();
        for i in at..end {
            let v: Vec<String> = vector(&mut rng, dim)
                .iter()
                .map(|x| x.to_string())
                .collect();
            let _ = writeln!(
                text,
                "{i}\tc{}\td{}\t{{\"cat\": \"c{}\", \"decile\": \"d{}\", \"n\": {i}, \"tags\": [\"t{}\", \"u{}\"]}}\t[{}]",
                i % 100,
                i % 10,
                i % 100,
                i % 10,
                i % 5,
                i % 7,
                v.join(",")
            );
        }
        let sink = client
            .copy_in::<_, bytes::Bytes>(&format!("COPY {TABLE} FROM STDIN"))
            .await?;
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(text)).await?;
        let n = sink.finish().await?;
        anyhow::ensure!(
            n as usize == end - at,
            "COPY stored {n} of {} rows",
            end - at
        );
        at = end;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    eprintln!("jsonb: loaded {rows} rows at {rate:.0} rows/s; waiting for the index");
    server
        .wait_for_index(
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(600),
        )
        .await;

    // The same filters without and then with payload indexes on the jsonb keys
    // (`CREATE INDEX ON t ((meta->>'cat'))`), each time beside the ordinary columns.
    let mut before = Vec::new();
    for shape in shapes() {
        before.push(measure(&client, &exact, &shape, dim, queries, &mut rng).await?);
    }
    client
        .batch_execute(&format!(
            "CREATE INDEX ON {TABLE} ((meta->>'cat')); CREATE INDEX ON {TABLE} ((meta->>'decile'))"
        ))
        .await?;
    let mut after = Vec::new();
    for shape in shapes() {
        after.push(measure(&client, &exact, &shape, dim, queries, &mut rng).await?);
    }

    let mut out = String::new();
    let _ = writeln!(out, "<!-- jsonb -->");
    let _ = writeln!(
        out,
        "## jsonb filters inside the search, beside ordinary columns\n"
    );
    let _ = writeln!(
        out,
        "`{command}` — {rows} rows of {dim}-d vectors with a `jsonb` metadata column \
         (`{{\"cat\": ..., \"decile\": ..., \"n\": ..., \"tags\": [...]}}`) that repeats two text \
         columns, embedded stores, one client, a prepared `SELECT id FROM vector_search('{TABLE}', $1, 10) \
         WHERE <filter>` per shape, {queries} queries each, the two spellings taking turns query by \
         query. Both filters are pushed into the vector search (EXPLAIN: `pushed_filter`). \
         Recall@10 is against the exact answer of the same filter. The ordinary columns have a \
         payload index in the vector index. The jsonb keys are measured twice: first without \
         an index (the index cannot plan a selective filter by its cardinality and walks the \
         HNSW graph with it), then after `CREATE INDEX ON {TABLE} ((meta->>'cat'))` and \
         `((meta->>'decile'))` made payload indexes of them (the ordinary column measured again \
         beside it).\n"
    );
    let _ = writeln!(
        out,
        "| selectivity | ordinary column p50 / p95 (ms) | recall@10 | jsonb, no index: p50 / p95 (ms) | recall@10 | / column | jsonb after CREATE INDEX: p50 / p95 (ms) | recall@10 | / column |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for ((shape, b), a) in shapes().iter().zip(&before).zip(&after) {
        let _ = writeln!(
            out,
            "| {} | {:.2} / {:.2} | {:.3} | {:.2} / {:.2} | {:.3} | {:.2} | {:.2} / {:.2} | {:.3} | {:.2} |",
            shape.label,
            b.plain.p50,
            b.plain.p95,
            b.plain.recall,
            b.jsonb.p50,
            b.jsonb.p95,
            b.jsonb.recall,
            b.jsonb.p50 / b.plain.p50,
            a.jsonb.p50,
            a.jsonb.p95,
            a.jsonb.recall,
            a.jsonb.p50 / a.plain.p50,
        );
        eprintln!(
            "jsonb: {} column p50 {:.2} ms, jsonb p50 {:.2} ms; with CREATE INDEX: column {:.2} ms, jsonb {:.2} ms",
            shape.label, b.plain.p50, b.jsonb.p50, a.plain.p50, a.jsonb.p50
        );
    }
    let _ = writeln!(out, "<!-- /jsonb -->");
    server.stop()?;
    Ok(out)
}
