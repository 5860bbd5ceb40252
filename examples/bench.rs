//! A first benchmark of vectorgate on its embedded stores, at a small scale:
//!
//!   cargo run --release --example bench -- [ROWS] [QUERIES]
//!
//! It starts the release `vectorgate` binary on a fresh data directory, loads clustered
//! 384-d unit vectors with COPY, then measures over the wire (prepared statements,
//! binary results, one client): `vector_search` with no filter and with filters passing
//! 10% and 1% of rows, through the index and through the exact row scan. Recall@10 is
//! against an exact oracle computed here. After stopping the server it runs the same
//! searches directly on the stores, in process (index search + row fetch), for the
//! proxy's overhead. Figures go to stdout and BENCHMARKS.md. No pass/fail: timings on a
//! shared 2-core machine are noisy; read the medians and the ratios of one run.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vectorgate::store::{Predicate, RowStore, SearchParams, VectorIndex};

const DIM: usize = 384;
const K: usize = 10;

fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.gen_range(1e-7..1.0);
    let u2: f32 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A filter: its label, its SQL, and which row ids pass it.
type Filter = (&'static str, &'static str, fn(usize) -> bool);

struct Row {
    label: String,
    p50: f64,
    p99: f64,
    recall: f64,
}

fn summarize(label: &str, mut ms: Vec<f64>, recall: f64) -> Row {
    ms.sort_by(|a, b| a.total_cmp(b));
    Row {
        label: label.to_string(),
        p50: percentile(&ms, 0.5),
        p99: percentile(&ms, 0.99),
        recall,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let queries: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200);
    // The server under test: VECTORGATE_BIN, else the binary built beside this example.
    let bin = match std::env::var_os("VECTORGATE_BIN") {
        Some(b) => std::path::PathBuf::from(b),
        None => std::env::current_exe()?
            .parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("vectorgate"))
            .ok_or_else(|| anyhow::anyhow!("cannot find the vectorgate binary"))?,
    };
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");

    // Data: clustered unit vectors; `cat` gives filters of known selectivity.
    let mut rng = StdRng::seed_from_u64(2024);
    let centers: Vec<Vec<f32>> = (0..50)
        .map(|_| (0..DIM).map(|_| gaussian(&mut rng)).collect())
        .collect();
    let vectors: Vec<Vec<f32>> = (0..n)
        .map(|_| {
            let c = &centers[rng.gen_range(0..centers.len())];
            unit(c.iter().map(|x| x + 0.6 * gaussian(&mut rng)).collect())
        })
        .collect();
    let qs: Vec<Vec<f32>> = (0..queries)
        .map(|_| {
            let c = &centers[rng.gen_range(0..centers.len())];
            unit(c.iter().map(|x| x + 0.6 * gaussian(&mut rng)).collect())
        })
        .collect();

    let mut child = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("RUST_LOG", "warn,vectorgate=info")
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(i) = line.find("listen=") {
                let _ = tx.send(
                    line[i + 7..]
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string(),
                );
                sent = true;
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60))?;
    let (client, conn) = tokio_postgres::connect(
        &format!("postgres://bench@{addr}/vectorgate"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE TABLE bench (id bigint PRIMARY KEY, cat int, embedding vector({DIM})) WITH (distance = 'cosine')"
        ))
        .await?;

    // Ingest through COPY.
    let started = Instant::now();
    for (chunk_no, chunk) in vectors.chunks(5000).enumerate() {
        use futures::SinkExt;
        let mut text = String::with_capacity(chunk.len() * DIM * 12);
        for (j, v) in chunk.iter().enumerate() {
            let id = chunk_no * 5000 + j;
            let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            text.push_str(&format!("{id}\t{}\t[{}]\n", id % 100, items.join(",")));
        }
        let sink = client
            .copy_in::<_, bytes::Bytes>("COPY bench FROM STDIN")
            .await?;
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(text)).await?;
        sink.finish().await?;
    }
    let ingest = n as f64 / started.elapsed().as_secs_f64();
    // Let the background optimiser build the graph before measuring searches.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let filters: [Filter; 3] = [
        ("no filter", "TRUE", |_| true),
        ("10% pass", "cat < 10", |id| id % 100 < 10),
        ("1% pass", "cat = 7", |id| id % 100 == 7),
    ];
    let oracle = |q: &[f32], pass: fn(usize) -> bool| -> Vec<i64> {
        let mut d: Vec<(f32, i64)> = vectors
            .iter()
            .enumerate()
            .filter(|(i, _)| pass(*i))
            .map(|(i, v)| {
                (
                    1.0 - v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(),
                    i as i64,
                )
            })
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        d.into_iter().take(K).map(|x| x.1).collect()
    };
    let truth: Vec<Vec<Vec<i64>>> = filters
        .iter()
        .map(|(_, _, p)| qs.iter().map(|q| oracle(q, *p)).collect())
        .collect();

    let mut rows = Vec::new();
    for mode in ["index", "exact row scan"] {
        client
            .batch_execute(if mode == "index" {
                "SET vectorgate.row_scan = off"
            } else {
                "SET vectorgate.row_scan = on"
            })
            .await?;
        for (fi, (label, sql_filter, _)) in filters.iter().enumerate() {
            let stmt = client
                .prepare(&format!(
                    "SELECT id, distance FROM vector_search('bench', $1, {K}) WHERE {sql_filter}"
                ))
                .await?;
            let reps = if mode == "index" {
                qs.len()
            } else {
                qs.len().min(30)
            };
            let mut ms = Vec::with_capacity(reps);
            let mut hit = 0usize;
            let mut total = 0usize;
            for (qi, q) in qs.iter().take(reps).enumerate() {
                let t = Instant::now();
                let got = client.query(&stmt, &[q]).await?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                let ids: Vec<i64> = got.iter().map(|r| r.get(0)).collect();
                hit += truth[fi][qi].iter().filter(|t| ids.contains(t)).count();
                total += truth[fi][qi].len();
            }
            rows.push(summarize(
                &format!("proxy, {mode}, {label}"),
                ms,
                hit as f64 / total.max(1) as f64,
            ));
        }
    }
    drop(client);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait()?;

    // The same index searches and row fetches, in process, without the proxy.
    let rows_store: Arc<dyn RowStore> = Arc::new(
        vectorgate::store::embedded_rows::EmbeddedRows::open(&data.join("rows.redb"))?,
    );
    let index = vectorgate::store::edge_index::EdgeIndex::open(&data.join("vectors"))?;
    let def = rows_store
        .list_tables()
        .await?
        .into_iter()
        .find(|d| d.name == "bench")
        .ok_or_else(|| anyhow::anyhow!("no table"))?;
    let direct_filters: [(&str, Option<Predicate>); 3] = [
        ("no filter", None),
        (
            "10% pass",
            Some(Predicate::Compare {
                column: "cat".into(),
                op: vectorgate::store::filter::CmpOp::Lt,
                value: vectorgate::store::filter::Scalar::Int(10),
            }),
        ),
        (
            "1% pass",
            Some(Predicate::Compare {
                column: "cat".into(),
                op: vectorgate::store::filter::CmpOp::Eq,
                value: vectorgate::store::filter::Scalar::Int(7),
            }),
        ),
    ];
    for (fi, (label, pred)) in direct_filters.iter().enumerate() {
        let mut ms = Vec::with_capacity(qs.len());
        let mut hit = 0usize;
        let mut total = 0usize;
        for (qi, q) in qs.iter().enumerate() {
            let t = Instant::now();
            let hits = index
                .search(&def, q, pred.as_ref(), K, 0, &SearchParams::default())
                .await?;
            let keys: Vec<_> = hits.into_iter().map(|h| h.key).collect();
            let fetched = rows_store.get(&def, &keys).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            let ids: Vec<i64> = fetched
                .iter()
                .flatten()
                .filter_map(|r| {
                    if let vectorgate::types::Value::Int(i) = r[0] {
                        Some(i)
                    } else {
                        None
                    }
                })
                .collect();
            hit += truth[fi][qi].iter().filter(|t| ids.contains(t)).count();
            total += truth[fi][qi].len();
        }
        rows.push(summarize(
            &format!("direct (in process), index, {label}"),
            ms,
            hit as f64 / total.max(1) as f64,
        ));
    }

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1048576.0))
        .unwrap_or_default();
    let date = chrono::Utc::now().format("%Y-%m-%d");
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str(&format!(
        "A first, small run on the embedded stores: {n} clustered {DIM}-d unit vectors (cosine), {queries} queries, k = {K}, one client over the wire with prepared statements and binary results; the exact row scan is timed on the first 30 queries. Recall@10 is against an exact oracle. The direct rows call the same index and row store in process (index search plus the k row fetches), after the server stopped.\n\n"
    ));
    out.push_str(&format!(
        "Command: `cargo run --release --example bench -- {n} {queries}`. Machine: {cores} cores, {mem}. Date: {date}.\n\n"
    ));
    if cfg!(debug_assertions) {
        out.push_str(&format!(
            "This run's client (and so the direct rows) was a debug build; the server was `{}`. Only the proxy rows are figures of an optimised server.\n\n",
            bin.display()
        ));
    }
    out.push_str(&format!("Ingest through COPY: {ingest:.0} rows/s.\n\n"));
    out.push_str("| path | p50 ms | p99 ms | recall@10 |\n|---|---|---|---|\n");
    for r in &rows {
        out.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.3} |\n",
            r.label, r.p50, r.p99, r.recall
        ));
    }
    std::io::stdout().write_all(out.as_bytes())?;
    // Sections other commands keep in the file (between <!-- name --> markers) stay.
    let previous = std::fs::read_to_string("BENCHMARKS.md").unwrap_or_default();
    for name in ["quantization", "load"] {
        let (open, close) = (format!("<!-- {name} -->"), format!("<!-- /{name} -->"));
        if let (Some(a), Some(b)) = (previous.find(&open), previous.find(&close)) {
            out.push('\n');
            out.push_str(&previous[a..b + close.len()]);
            out.push('\n');
        }
    }
    let mut f = std::fs::File::create("BENCHMARKS.md")?;
    f.write_all(out.as_bytes())?;
    Ok(())
}
