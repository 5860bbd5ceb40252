//! Ingest (`--ingest`): one streamed `COPY items FROM STDIN` of 384-d rows through the
//! proxy (as `psql` restoring a dump sends it), into the embedded stores, into Cassandra
//! with the embedded index, and into Cassandra with a Qdrant server, each with the time
//! until its index is ready; beside the two stores' own load rates of the same rows:
//! Cassandra's prepared INSERTs, many in flight, and Qdrant's batched upserts through
//! qdrant-client. Written between `<!-- ingest -->` markers.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use qdrant_client::Qdrant;
use qdrant_client::qdrant::{
    CollectionStatus, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, Distance,
    FieldType, PointStruct, UpsertPointsBuilder, VectorParamsBuilder,
};
use scylla::client::session::Session;

use crate::cpu::{Reading, Spent};
use crate::data::{self, Dataset};
use crate::proxy::Server;

const TABLE: &str = "items";
/// Rows per CopyData message (psql sends one per line; a driver sends larger ones).
const CHUNK_ROWS: usize = 1000;
/// How long the proxy must be idle to count its index as built.
const QUIET: Duration = Duration::from_secs(5);

pub struct Settings<'a> {
    pub sizes: &'a [usize],
    pub dim: usize,
    pub seed: u64,
    /// Cassandra's CQL address and a session on it.
    pub cassandra: Option<(&'a str, Arc<Session>)>,
    /// A Qdrant server's gRPC URL.
    pub qdrant: Option<&'a str>,
}

/// One load: rows/s, seconds from its end until the index was ready, and the CPU
/// spent while it loaded.
struct Load {
    into: &'static str,
    rate: f64,
    ready: Option<f64>,
    cpu: Spent,
}

struct Measured {
    rows: usize,
    loads: Vec<Load>,
    /// Cassandra's own prepared INSERTs, and Qdrant's own upserts (with its time to green).
    cassandra: Option<(f64, Spent)>,
    qdrant: Option<(f64, f64, Spent)>,
}

/// The rows as COPY text, a message's worth per chunk, made before any clock starts.
fn copy_chunks(d: &Dataset) -> Vec<bytes::Bytes> {
    (0..d.vectors.len())
        .step_by(CHUNK_ROWS)
        .map(|at| {
            let end = (at + CHUNK_ROWS).min(d.vectors.len());
            bytes::Bytes::from(data::copy_text(d, at..end))
        })
        .collect()
}

/// Create the table and send every row in one COPY; rows/s, and the CPU spent meanwhile.
async fn copy_all(
    server: &Server,
    d: &Dataset,
    chunks: &[bytes::Bytes],
) -> anyhow::Result<(f64, Spent)> {
    let c = server.connect().await?;
    c.batch_execute(&crate::proxy::create_table_sql(TABLE, d, ""))
        .await?;
    let started = Instant::now();
    let cpu = Reading::now();
    let sink = c
        .copy_in::<_, bytes::Bytes>(&format!("COPY {TABLE} FROM STDIN"))
        .await?;
    futures::pin_mut!(sink);
    for chunk in chunks {
        sink.feed(chunk.clone()).await?;
    }
    let n = sink.finish().await?;
    let rate = d.vectors.len() as f64 / started.elapsed().as_secs_f64();
    let spent = cpu.spent();
    anyhow::ensure!(
        n as usize == d.vectors.len(),
        "COPY stored {n} of {} rows",
        d.vectors.len()
    );
    Ok((rate, spent))
}

/// Seconds until the embedded index is built (the proxy idle for [`QUIET`], not counted).
async fn embedded_ready(server: &Server) -> f64 {
    let t = Instant::now();
    server
        .wait_for_index(QUIET, Duration::from_secs(7200))
        .await;
    (t.elapsed().saturating_sub(QUIET)).as_secs_f64()
}

/// Seconds until the collection is green (every segment indexed).
async fn green(client: &Qdrant, collection: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    loop {
        let info = client.collection_info(collection).await?;
        if info.result.map(|i| i.status) == Some(CollectionStatus::Green as i32) {
            return Ok(t.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(7200),
            "{collection} not green after two hours"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn qdrant_client(url: &str) -> anyhow::Result<Qdrant> {
    Ok(Qdrant::from_url(url)
        .timeout(Duration::from_secs(120))
        .skip_compatibility_check()
        .build()?)
}

/// Qdrant's own upload of the same points through qdrant-client, as its documentation
/// loads a collection: batches of 256 points, a few in flight, the last ones waited for;
/// rows/s, seconds until green and the CPU spent while loading. The collection is the one the proxy makes for the
/// table: `id`, `cat` and `title` in the payload, each with its payload index (integer,
/// integer, keyword), which the graph build then takes into account.
async fn qdrant_own(
    client: &Qdrant,
    collection: &str,
    d: &Dataset,
) -> anyhow::Result<(f64, f64, Spent)> {
    if client.collection_exists(collection).await? {
        client.delete_collection(collection).await?;
    }
    client
        .create_collection(
            CreateCollectionBuilder::new(collection)
                .vectors_config(VectorParamsBuilder::new(d.dim() as u64, Distance::Cosine)),
        )
        .await?;
    for (field, ty) in [
        ("id", FieldType::Integer),
        ("cat", FieldType::Integer),
        ("title", FieldType::Keyword),
    ] {
        client
            .create_field_index(
                CreateFieldIndexCollectionBuilder::new(collection, field, ty).wait(true),
            )
            .await?;
    }
    let batches: Vec<Vec<PointStruct>> = (0..d.vectors.len())
        .step_by(256)
        .map(|at| {
            (at..(at + 256).min(d.vectors.len()))
                .map(|i| {
                    let payload =
                        serde_json::json!({"id": i, "cat": d.cats[i], "title": format!("doc {i}")});
                    PointStruct::new(
                        i as u64,
                        d.vectors[i].clone(),
                        qdrant_client::Payload::try_from(payload).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let cpu = Reading::now();
    let results: Vec<_> = futures::stream::iter(batches.into_iter().map(|points| {
        client.upsert_points(UpsertPointsBuilder::new(collection, points).wait(true))
    }))
    .buffer_unordered(4)
    .collect()
    .await;
    for r in results {
        r?;
    }
    let rate = d.vectors.len() as f64 / started.elapsed().as_secs_f64();
    let spent = cpu.spent();
    let ready = green(client, collection).await?;
    client.delete_collection(collection).await?;
    Ok((rate, ready, spent))
}

async fn measure(s: &Settings<'_>, bin: &Path, work: &Path, n: usize) -> anyhow::Result<Measured> {
    let d = data::synthetic(n, s.dim, 1, s.seed, &data::cache_dir());
    let chunks = copy_chunks(&d);
    let mut m = Measured {
        rows: n,
        loads: Vec::new(),
        cassandra: None,
        qdrant: None,
    };
    let dir = work.join(format!("ingest-{n}"));

    let server = Server::start(bin, &dir.join("embedded"), None)?;
    let (rate, cpu) = copy_all(&server, &d, &chunks).await?;
    let ready = embedded_ready(&server).await;
    eprintln!("ingest {n}: embedded {rate:.0} rows/s, index built {ready:.0} s later");
    m.loads.push(Load {
        into: "embedded stores",
        rate,
        ready: Some(ready),
        cpu,
    });
    server.stop()?;
    let _ = std::fs::remove_dir_all(&dir);

    let Some((hosts, session)) = &s.cassandra else {
        return Ok(m);
    };
    let ks = format!("vectorgate_bench_ingest_{}", data::short(n));
    let drop_ks = || session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ());
    let _ = drop_ks().await;
    let server = Server::start(bin, &dir.join("cassandra"), Some((hosts, &ks)))?;
    let (rate, cpu) = copy_all(&server, &d, &chunks).await?;
    let ready = embedded_ready(&server).await;
    eprintln!(
        "ingest {n}: Cassandra + embedded index {rate:.0} rows/s, index built {ready:.0} s later"
    );
    m.loads.push(Load {
        into: "Cassandra, embedded index",
        rate,
        ready: Some(ready),
        cpu,
    });
    server.stop()?;
    let _ = drop_ks().await;
    let _ = std::fs::remove_dir_all(&dir);

    let (rate, cpu) =
        crate::cassandra::load_plain(session, &format!("ingest_{}", data::short(n)), &d, 256)
            .await?;
    eprintln!("ingest {n}: Cassandra's own prepared INSERTs {rate:.0} rows/s");
    m.cassandra = Some((rate, cpu));

    let Some(url) = s.qdrant else {
        return Ok(m);
    };
    let client = qdrant_client(url)?;
    let prefix = format!("vgingest{}_{}_", std::process::id(), n);
    let own = qdrant_own(&client, &format!("{prefix}own"), &d).await?;
    eprintln!(
        "ingest {n}: Qdrant's own upserts {:.0} points/s, green {:.0} s later",
        own.0, own.1
    );
    m.qdrant = Some(own);
    let _ = drop_ks().await;
    let server = Server::start_with(
        bin,
        &dir.join("both"),
        Some((hosts, &ks)),
        &["--qdrant", url, "--qdrant-collection-prefix", &prefix],
    )?;
    let (rate, cpu) = copy_all(&server, &d, &chunks).await?;
    let ready = green(&client, &format!("{prefix}{TABLE}")).await?;
    eprintln!("ingest {n}: Cassandra + Qdrant server {rate:.0} rows/s, green {ready:.0} s later");
    m.loads.push(Load {
        into: "Cassandra, Qdrant server",
        rate,
        ready: Some(ready),
        cpu,
    });
    server.stop()?;
    let _ = drop_ks().await;
    let _ = client.delete_collection(format!("{prefix}{TABLE}")).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(m)
}

/// Measure every size and return the report section.
pub async fn section(
    s: &Settings<'_>,
    bin: &Path,
    work: &Path,
    command: &str,
) -> anyhow::Result<String> {
    let mut all = Vec::new();
    for &n in s.sizes {
        all.push(measure(s, bin, work, n).await?);
    }
    Ok(markdown(&all, s, command))
}

fn markdown(all: &[Measured], s: &Settings<'_>, command: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "<!-- ingest -->");
    let _ = writeln!(o, "## Ingest: COPY against the stores' own load rates\n");
    let _ = writeln!(
        o,
        "`{command}`, {}: the synthetic data set ({} dimensions, cosine; columns `id bigint \
         PRIMARY KEY, cat int, title text, embedding vector({})`), sent as one `COPY items \
         FROM STDIN` in text format by tokio-postgres, {CHUNK_ROWS} rows per CopyData \
         message, the text made before the clock starts, into a table created empty. \
         \"Index ready\" is the time from the COPY's end until the index is built: the \
         proxy idle (the embedded index) or the collection green (a Qdrant server). Beside \
         them, the same rows loaded by each store's own client: Cassandra's prepared \
         `INSERT`s (256 in flight) into a table with a `vector<float, {}>` column, and \
         Qdrant's upserts through qdrant-client (256 points per request, 4 requests in \
         flight, each applied before it returns) into a collection with the proxy's payload \
         and payload indexes (`id` and `cat` integer, `title` keyword). One run on a shared 2-core machine.\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        s.dim,
        s.dim,
        s.dim
    );
    let _ = writeln!(
        o,
        "The CPU columns are the CPU seconds each program spent per 10,000 rows while the \
         rows were sent (`/proc`; the index's build after the load is not in them, nor the \
         tables' creation), and the machine's \
         cores kept busy meanwhile by every process on it. Cassandra, the Qdrant server, \
         the proxy and the client all run on the same 2 cores here.\n"
    );
    let _ = writeln!(
        o,
        "| rows | loaded into | rows/s | index ready after (s) | CPU s / 10K rows: Cassandra | Qdrant server | proxy | client | cores busy |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
    let row = |o: &mut String, n: usize, what: String, rate: f64, ready: String, cpu: &Spent| {
        let per = |secs: f64| match secs > 0.0 {
            true => format!("{:.2}", secs / n as f64 * 10_000.0),
            false => "-".into(),
        };
        let _ = writeln!(
            o,
            "| {} | {what} | {rate:.0} | {ready} | {} | {} | {} | {} | {:.2} |",
            data::short(n),
            per(cpu.of("java")),
            per(cpu.of("qdrant")),
            per(cpu.of("vectorgate") - cpu.of("vectorgate-ben")),
            per(cpu.of("vectorgate-ben")),
            cpu.busy_cores
        );
    };
    for m in all {
        for l in &m.loads {
            row(
                &mut o,
                m.rows,
                format!("{} (COPY through vectorgate)", l.into),
                l.rate,
                l.ready.map_or("-".into(), |r| format!("{r:.0}")),
                &l.cpu,
            );
        }
        if let Some((c, cpu)) = &m.cassandra {
            row(
                &mut o,
                m.rows,
                "Cassandra alone (prepared INSERTs)".into(),
                *c,
                "-".into(),
                cpu,
            );
        }
        if let Some((q, ready, cpu)) = &m.qdrant {
            row(
                &mut o,
                m.rows,
                "Qdrant server alone (qdrant-client upserts)".into(),
                *q,
                format!("{ready:.0}"),
                cpu,
            );
        }
    }
    let _ = writeln!(o);
    for m in all {
        let embedded = m.loads.first().map_or(0.0, |l| l.rate);
        let _ = write!(
            o,
            "- {} rows: into the embedded stores {embedded:.0} rows/s (target 20,000: {}).",
            data::short(m.rows),
            if embedded >= 20_000.0 {
                "met"
            } else {
                "missed"
            }
        );
        if let (Some((c, c_cpu)), Some((q, _, q_cpu)), Some(both)) = (
            &m.cassandra,
            &m.qdrant,
            m.loads
                .iter()
                .find(|l| l.into == "Cassandra, Qdrant server"),
        ) {
            let slower = c.min(*q);
            let _ = write!(
                o,
                " Into Cassandra + the Qdrant server {:.0} rows/s against the slower store's \
                 own {slower:.0}: {:.2}x slower (target at most 1.5x: {}).",
                both.rate,
                slower / both.rate,
                if slower / both.rate <= 1.5 {
                    "met"
                } else {
                    "missed"
                }
            );
            // The stores' own work per row, alone, when both must be done on the same cores.
            let per_row = (c_cpu.of("java") + q_cpu.of("qdrant")) / m.rows as f64;
            if per_row > 0.0 {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                let bound = cores / per_row;
                let _ = write!(
                    o,
                    " Cassandra's and Qdrant's own CPU per row, loading alone, add up to {:.0} µs: \
                     on {cores:.0} cores they shared, no client could load both faster than about \
                     {bound:.0} rows/s ({:.2}x the slower store's own rate); the COPY reached \
                     {:.0}% of that.",
                    per_row * 1e6,
                    slower / bound,
                    both.rate / bound * 100.0
                );
            }
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "<!-- /ingest -->");
    o
}
