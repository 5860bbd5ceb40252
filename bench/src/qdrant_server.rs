//! Vectors in a Qdrant server (`--qdrant URL`): the same prepared searches over the wire
//! with vectors in that server and in the embedded index, beside the same searches sent
//! straight to the server with qdrant-client, as an application without the proxy would.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    CollectionStatus, Condition, Filter, PayloadIncludeSelector, Range, SearchPoints,
    WithPayloadSelector, with_payload_selector::SelectorOptions,
};
use vectorgate::store::keys;
use vectorgate::types::Value;

use crate::data::{self, Dataset, FILTERS};
use crate::proxy::{Samples, Server, Workload};
use crate::stats::{Run, summarize};

const TABLE: &str = "items";
/// No filter, 10% and 1% pass.
const SHAPES: [usize; 3] = [0, 2, 3];
const K: usize = 10;

pub struct Settings<'a> {
    pub url: &'a str,
    pub sizes: &'a [usize],
    pub dim: usize,
    pub queries: usize,
    pub rounds: usize,
    pub seed: u64,
    /// Fail when a search answers below recall 0.9 (the CI smoke run).
    pub smoke: bool,
}

/// One size: load rates and, per filter, the three ways of searching.
struct Measured {
    rows: usize,
    load: [f64; 2],
    index_wait: [f64; 2],
    runs: Vec<(usize, [Run; 3])>,
}

fn client(url: &str) -> anyhow::Result<Qdrant> {
    Ok(Qdrant::from_url(url)
        .timeout(Duration::from_secs(60))
        .skip_compatibility_check()
        .build()?)
}

/// The filter as an application would write it for qdrant-client.
fn filter(f: usize) -> Option<Filter> {
    let below = |x: f64| {
        Condition::range(
            "cat",
            Range {
                lt: Some(x),
                ..Default::default()
            },
        )
    };
    match FILTERS[f].sql {
        "" => None,
        "cat < 50" => Some(Filter::must([below(50.0)])),
        "cat < 10" => Some(Filter::must([below(10.0)])),
        "cat = 7" => Some(Filter::must([Condition::matches("cat", 7i64)])),
        other => panic!("no qdrant-client filter for {other}"),
    }
}

/// `queries` searches straight to the collection, one at a time; each returns the row
/// key the proxy stores in the payload, decoded to the id.
async fn direct(
    client: &Qdrant,
    collection: &str,
    d: &Dataset,
    f: usize,
    queries: usize,
) -> anyhow::Result<Samples> {
    let request = |qi: usize| SearchPoints {
        collection_name: collection.to_string(),
        vector: d.queries[qi].clone(),
        filter: filter(f),
        limit: K as u64,
        with_payload: Some(WithPayloadSelector {
            selector_options: Some(SelectorOptions::Include(PayloadIncludeSelector {
                fields: vec![keys::KEY_FIELD.to_string()],
            })),
        }),
        ..Default::default()
    };
    for qi in 0..5.min(d.queries.len()) {
        client.search_points(request(qi)).await?;
    }
    let mut out = Vec::with_capacity(queries);
    for i in 0..queries {
        let qi = i % d.queries.len();
        let r = request(qi);
        let t = Instant::now();
        let found = client.search_points(r).await?;
        let mut ids = Vec::with_capacity(found.result.len());
        for p in &found.result {
            if let Some(qdrant_client::qdrant::value::Kind::StringValue(s)) =
                p.payload.get(keys::KEY_FIELD).and_then(|v| v.kind.as_ref())
                && let Some(Value::Int(id)) = keys::decode_hex(s)?.first()
            {
                ids.push(*id);
            }
        }
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        out.push((ms, data::recall(&ids, &d.truth[f][qi], K)));
    }
    Ok(out)
}

/// Until the collection is green (every segment indexed) three polls in a row.
async fn wait_green(client: &Qdrant, collection: &str, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut green = 0;
    while green < 3 && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let info = client.collection_info(collection).await?;
        green = match info.result.map(|i| i.status) {
            Some(s) if s == CollectionStatus::Green as i32 => green + 1,
            _ => 0,
        };
    }
    Ok(())
}

async fn load(server: &Server, d: &Arc<Dataset>) -> anyhow::Result<f64> {
    let c = server.connect().await?;
    c.batch_execute(&crate::proxy::create_table_sql(TABLE, d, ""))
        .await?;
    crate::proxy::copy_rows(&c, TABLE, d, 0..d.vectors.len(), 5000).await
}

async fn measure(
    s: &Settings<'_>,
    bin: &Path,
    work: &Path,
    qdrant: &Qdrant,
    n: usize,
) -> anyhow::Result<Measured> {
    let d = Arc::new(data::synthetic(
        n,
        s.dim,
        s.queries,
        s.seed,
        &data::cache_dir(),
    ));
    let prefix = format!("vgbench{}_{}_", std::process::id(), n);
    let collection = format!("{prefix}{TABLE}");
    let in_qdrant = Server::start_with(
        bin,
        &work.join(format!("qdrant-{n}")),
        None,
        &["--qdrant", s.url, "--qdrant-collection-prefix", &prefix],
    )?;
    let embedded = Server::start(bin, &work.join(format!("embedded-{n}")), None)?;
    let mut load_rate = [0.0; 2];
    let mut index_wait = [0.0; 2];
    load_rate[0] = load(&in_qdrant, &d).await?;
    let t = Instant::now();
    wait_green(qdrant, &collection, Duration::from_secs(3600)).await?;
    index_wait[0] = t.elapsed().as_secs_f64();
    load_rate[1] = load(&embedded, &d).await?;
    let t = Instant::now();
    embedded
        .wait_for_index(Duration::from_secs(5), Duration::from_secs(3600))
        .await;
    index_wait[1] = t.elapsed().as_secs_f64();
    eprintln!(
        "qdrant server: {n} rows loaded at {:.0} / {:.0} rows/s (Qdrant server / embedded), indexed after {:.0} / {:.0} s",
        load_rate[0], load_rate[1], index_wait[0], index_wait[1]
    );
    let mut runs = Vec::new();
    for &f in &SHAPES {
        // The three take turns, round by round; each one's samples pooled.
        let mut pooled: [Samples; 3] = Default::default();
        for _ in 0..s.rounds {
            let w = Workload::new(TABLE, f, K, 1, s.queries);
            pooled[0].extend(crate::proxy::search_samples(&in_qdrant, &d, &w).await?.0);
            pooled[1].extend(direct(qdrant, &collection, &d, f, s.queries).await?);
            pooled[2].extend(crate::proxy::search_samples(&embedded, &d, &w).await?.0);
        }
        let [a, b, c] = pooled;
        let run = |label: &str, samples| summarize(label.into(), samples, Duration::ZERO, None);
        let measured = [
            run("vectorgate, vectors in the Qdrant server", a),
            run("qdrant-client, straight to the server", b),
            run("vectorgate, embedded index", c),
        ];
        eprintln!(
            "qdrant server: {n} rows, {}: p50 {:.3} / {:.3} / {:.3} ms",
            FILTERS[f].label, measured[0].p50, measured[1].p50, measured[2].p50
        );
        if s.smoke {
            for r in &measured {
                anyhow::ensure!(
                    r.recall >= 0.9,
                    "{n} rows, {}: {} answered with recall {}",
                    FILTERS[f].label,
                    r.label,
                    r.recall
                );
            }
        }
        runs.push((f, measured));
    }
    in_qdrant.stop()?;
    embedded.stop()?;
    qdrant.delete_collection(&collection).await?;
    Ok(Measured {
        rows: n,
        load: load_rate,
        index_wait,
        runs,
    })
}

/// Measure every size and return the report section (between `<!-- qdrant-server -->`
/// markers).
pub async fn section(
    s: &Settings<'_>,
    bin: &Path,
    work: &Path,
    command: &str,
) -> anyhow::Result<String> {
    let qdrant = client(s.url)?;
    let version = qdrant.health_check().await?.version;
    let mut all = Vec::new();
    for &n in s.sizes {
        all.push(measure(s, bin, work, &qdrant, n).await?);
    }
    Ok(markdown(&all, &version, s, command))
}

fn cell(r: &Run) -> String {
    format!("{:.3} / {:.3} ({:.3})", r.p50, r.p99, r.recall)
}

fn markdown(all: &[Measured], version: &str, s: &Settings<'_>, command: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "<!-- qdrant-server -->");
    let _ = writeln!(o, "## Vectors in a Qdrant server\n");
    let _ = writeln!(
        o,
        "`{command}`: a Qdrant {version} server on loopback; the synthetic data set \
         ({} dimensions, cosine), rows embedded. One client searches k = {K} with a \
         prepared `SELECT id, distance FROM vector_search('items', $1, {K}) [WHERE ...]` \
         over the wire (tokio-postgres, binary results), once with the table's vectors \
         in the Qdrant server and once in the embedded index, and the same searches go \
         straight to the server with qdrant-client (the same filter, the row key from the \
         payload, no row fetched), the three taking turns for {} rounds of {} queries; \
         medians (p50) and p99 in ms, recall@{K} against the exact answer in brackets. \
         The proxy's answer includes the rows, fetched from the row store by key, and \
         distances recomputed from them.\n",
        s.dim, s.rounds, s.queries
    );
    let _ = writeln!(
        o,
        "| rows | filter | vectorgate → Qdrant server | qdrant-client → Qdrant server | proxy over direct (p50) | vectorgate, embedded index |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for m in all {
        for (f, [a, b, c]) in &m.runs {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | +{:.3} ms | {} |",
                data::short(m.rows),
                FILTERS[*f].label,
                cell(a),
                cell(b),
                a.p50 - b.p50,
                cell(c)
            );
        }
    }
    let _ = writeln!(
        o,
        "\nLoading (COPY, 5,000 rows per statement) and waiting for the index: {}.",
        all.iter()
            .map(|m| format!(
                "{} rows at {:.0} rows/s into the Qdrant server (green {:.0} s later), {:.0} rows/s into the embedded index (idle {:.0} s later)",
                data::short(m.rows),
                m.load[0],
                m.index_wait[0],
                m.load[1],
                m.index_wait[1]
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(o, "<!-- /qdrant-server -->");
    o
}
