//! vectorgate-bench: vectorgate measured side by side with what users would use instead,
//! in one run. See `scripts/bench.sh`, which builds it in release mode, fetches the
//! digits data set and draws the plots.
//!
//! For each data size up to `--scale` it generates clustered 384-d unit vectors, computes
//! (or reads from its cache) the exact nearest neighbours of every query under every
//! filter, loads the rows through the proxy with COPY, and measures over the wire with
//! prepared statements: k = 10 and 100 with no filter and filters passing 50%, 10% and 1%
//! of rows, at 1, 4 and 16 clients; the `hnsw_ef` sweep; the exact row scan (the path
//! searches take when the index is down); then the same searches made directly on the
//! stores in process. With `--cassandra` it also runs the proxy with its rows in
//! Cassandra and Cassandra 5's own SAI vector search on the same data. Figures go to
//! stdout, `--out` (BENCHMARKS.md) and `--json` (for the plots). No pass/fail.

mod cassandra;
mod cpu;
mod data;
mod direct;
mod ingest;
mod jsonb;
mod proxy;
mod qdrant_server;
mod report;
mod statements;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::data::{Dataset, FILTERS};
use crate::proxy::{Server, Workload};
use crate::report::{Ingest, Record, Report};
use crate::stats::Run;

#[derive(Parser, Debug)]
#[command(
    name = "vectorgate-bench",
    about = "Side-by-side benchmarks of vectorgate"
)]
struct Args {
    /// Largest data size (10k, 100k, 1m or a number); every standard size up to it runs.
    #[arg(long, default_value = "10k")]
    scale: String,
    /// Queries per workload.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    #[arg(long, default_value_t = 384)]
    dim: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Cassandra 5 (HOST:PORT) for the rows-in-Cassandra runs and the SAI comparison.
    #[arg(long)]
    cassandra: Option<String>,
    /// Largest size loaded into Cassandra.
    #[arg(long, default_value = "100k")]
    cassandra_max: String,
    /// The digits data set as `label<TAB>v1,...` lines (bench/plot.py digits FILE).
    #[arg(long)]
    digits: Option<PathBuf>,
    /// Markdown report; sections of BENCHMARKS.md written by other commands are kept.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Machine-readable results, for bench/plot.py.
    #[arg(long, default_value = "bench/results/results.json")]
    json: PathBuf,
    /// The command to print in the report (scripts/bench.sh passes its own).
    #[arg(long)]
    command: Option<String>,
    /// Where bench/plot.py draws the PNGs, to link from the report.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Fewer settings per sweep, and a failure when a search answers wrongly (the exact
    /// scan below recall 1, the index below 0.9): a check that the harness and the paths
    /// it measures still work, not a measurement.
    #[arg(long)]
    smoke: bool,
    /// Only the per-statement section (the wire floor, a key lookup, single-row UPDATE
    /// and INSERT, next to `--postgres`), written between `<!-- statements -->` markers.
    #[arg(long)]
    statements: bool,
    /// A PostgreSQL server for the per-statement comparison (a connection string).
    #[arg(long)]
    postgres: Option<String>,
    /// Rows of the per-statement table.
    #[arg(long, default_value_t = 10_000)]
    statement_rows: usize,
    /// Turns each server takes per statement (of `--queries` statements each).
    #[arg(long, default_value_t = 5)]
    statement_rounds: usize,
    /// `KEY=VALUE`: the per-statement section also measures a second server on the
    /// embedded stores started with this environment variable, taking turns with the
    /// others (a setting's effect, side by side in one run).
    #[arg(long)]
    statements_env: Option<String>,
    /// Only the Qdrant-server section: searches with vectors in this Qdrant server (its
    /// gRPC URL) beside direct qdrant-client calls and the embedded index, written
    /// between `<!-- qdrant-server -->` markers.
    #[arg(long)]
    qdrant: Option<String>,
    /// Only the jsonb section: searches filtered on a jsonb column beside the same
    /// filters on ordinary columns, written between `<!-- jsonb -->` markers.
    #[arg(long)]
    jsonb: bool,
    /// Rows of the jsonb section's table.
    #[arg(long, default_value_t = 100_000)]
    jsonb_rows: usize,
    /// Only the ingest section: one COPY of every size up to `--scale` into the embedded
    /// stores, into `--cassandra` and into `--cassandra` with the `--qdrant` server, beside
    /// the stores' own load rates, written between `<!-- ingest -->` markers.
    #[arg(long)]
    ingest: bool,
}

fn parse_size(s: &str) -> anyhow::Result<usize> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(x) = s.strip_suffix('m') {
        (x, 1_000_000)
    } else if let Some(x) = s.strip_suffix('k') {
        (x, 1000)
    } else {
        (s.as_str(), 1)
    };
    Ok(num.parse::<usize>()? * mult)
}

struct Plan {
    ks: Vec<usize>,
    clients: Vec<usize>,
    efs: Vec<usize>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scale = parse_size(&args.scale)?;
    let cassandra_max = parse_size(&args.cassandra_max)?;
    let mut sizes: Vec<usize> = [10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|s| *s <= scale)
        .collect();
    if !sizes.contains(&scale) {
        sizes.push(scale);
    }
    let plan = if args.smoke {
        Plan {
            ks: vec![10],
            clients: vec![1, 4],
            efs: vec![16, 128],
        }
    } else {
        Plan {
            ks: vec![10, 100],
            clients: vec![1, 4, 16],
            efs: vec![8, 16, 32, 64, 128, 256, 512],
        }
    };
    let bin = proxy::server_binary()?;
    let cache = data::cache_dir();
    let work = std::env::temp_dir().join(format!("vectorgate-bench-{}", std::process::id()));
    let command = args
        .command
        .clone()
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    let mut report = Report::new(command.clone(), &bin, args.queries);
    report.plots = args.plots.clone();

    let session = match &args.cassandra {
        Some(hosts) => Some(cassandra::connect(hosts).await?),
        None => None,
    };
    if args.ingest {
        let settings = ingest::Settings {
            sizes: &sizes,
            dim: args.dim,
            seed: args.seed,
            cassandra: args.cassandra.as_deref().zip(session.clone()),
            qdrant: args.qdrant.as_deref(),
        };
        let section = ingest::section(&settings, &bin, &work, &command).await;
        let _ = std::fs::remove_dir_all(&work);
        report::replace_section(&args.out, "ingest", &section?)?;
        eprintln!("wrote the ingest section of {}", args.out.display());
        return Ok(());
    }
    if let Some(url) = &args.qdrant {
        let settings = qdrant_server::Settings {
            url,
            sizes: &sizes,
            dim: args.dim,
            queries: args.queries,
            rounds: if args.smoke { 1 } else { 3 },
            seed: args.seed,
            smoke: args.smoke,
        };
        let section = qdrant_server::section(&settings, &bin, &work, &command).await;
        let _ = std::fs::remove_dir_all(&work);
        report::replace_section(&args.out, "qdrant-server", &section?)?;
        eprintln!("wrote the qdrant-server section of {}", args.out.display());
        return Ok(());
    }
    if args.jsonb {
        let section = jsonb::section(
            &bin,
            &work,
            args.jsonb_rows,
            args.dim,
            args.queries,
            args.seed,
            &command,
        )
        .await;
        let _ = std::fs::remove_dir_all(&work);
        report::replace_section(&args.out, "jsonb", &section?)?;
        eprintln!("wrote the jsonb section of {}", args.out.display());
        return Ok(());
    }
    if args.statements {
        let section = statements_section(&args, &bin, &work, session.as_deref(), &command).await;
        let _ = std::fs::remove_dir_all(&work);
        let section = section?;
        report::replace_section(&args.out, "statements", &section)?;
        eprintln!("wrote the statements section of {}", args.out.display());
        return Ok(());
    }
    for (i, &n) in sizes.iter().enumerate() {
        eprintln!("== {n} rows");
        let d = Arc::new(data::synthetic(
            n,
            args.dim,
            args.queries,
            args.seed,
            &cache,
        ));
        let dir = work.join(d.name.clone());
        embedded(&mut report, &bin, &dir, &d, &plan, i == 0, args.queries).await?;
        if let (Some(hosts), Some(s)) = (&args.cassandra, &session)
            && n <= cassandra_max
        {
            with_cassandra(&mut report, &bin, &dir, hosts, s, &d, i == 0, args.queries).await?;
        }
        let _ = std::fs::remove_dir_all(&dir);
        report.write(&args.out, &args.json)?;
    }
    if let Some(file) = &args.digits {
        let d = Arc::new(data::digits(file, &cache)?);
        let dir = work.join("digits");
        digits(&mut report, &bin, &dir, &d, args.queries).await?;
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&work);
    report.write(&args.out, &args.json)?;
    eprintln!("wrote {} and {}", args.out.display(), args.json.display());
    let wrong = report.wrong_answers();
    for w in &wrong {
        eprintln!("below the smoke run's bounds: {w}");
    }
    anyhow::ensure!(
        !args.smoke || wrong.is_empty(),
        "{} workloads answered wrongly (below the smoke run's recall bounds)",
        wrong.len()
    );
    Ok(())
}

const TABLE: &str = "items";

/// The per-statement comparison (see [`statements`]): vectorgate on the embedded stores,
/// with rows in Cassandra when given, and PostgreSQL when given; then a prepared
/// `vector_search` against direct calls on the same embedded stores.
async fn statements_section(
    args: &Args,
    bin: &std::path::Path,
    work: &std::path::Path,
    cql: Option<&scylla::client::session::Session>,
    command: &str,
) -> anyhow::Result<String> {
    let rows = args.statement_rows;
    let embedded = Server::start(bin, &work.join("statements-embedded"), None)?;
    let mut targets = vec![statements::Target::new(
        "vectorgate (embedded)",
        embedded.connect().await?,
        &format!("vector({})", args.dim),
    )];
    let mut with_env = None;
    if let Some(setting) = &args.statements_env {
        let (key, value) = setting
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--statements-env takes KEY=VALUE"))?;
        let server = Server::start_env(
            bin,
            &work.join("statements-embedded-env"),
            None,
            &[],
            &[(key, value)],
        )?;
        targets.push(statements::Target::new(
            &format!("vectorgate (embedded, {setting})"),
            server.connect().await?,
            &format!("vector({})", args.dim),
        ));
        with_env = Some(server);
    }
    let ks = "vectorgate_bench_statements";
    let mut in_cassandra = None;
    if let (Some(hosts), Some(s)) = (&args.cassandra, cql) {
        s.query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
            .await?;
        let server = Server::start(bin, &work.join("statements-cassandra"), Some((hosts, ks)))?;
        targets.push(statements::Target::new(
            "vectorgate (rows in Cassandra)",
            server.connect().await?,
            &format!("vector({})", args.dim),
        ));
        in_cassandra = Some(server);
    }
    if let Some(url) = &args.postgres {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
        targets.push(statements::Target::new(
            &format!(
                "PostgreSQL {}",
                version.split_whitespace().next().unwrap_or("")
            ),
            client,
            "real[]",
        ));
    } else {
        eprintln!("statements: no --postgres given; vectorgate only");
    }
    let (per_round, rounds) = (
        args.queries,
        if args.smoke { 1 } else { args.statement_rounds },
    );
    let results =
        statements::run(&mut targets, rows, args.dim, rounds, per_round, args.seed).await?;
    drop(targets);
    if let Some(server) = in_cassandra {
        server.stop()?;
        if let Some(s) = cql {
            s.query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
                .await?;
        }
    }
    // A prepared search over the wire, then the same calls in process.
    let d = Arc::new(data::synthetic(
        rows,
        args.dim,
        args.queries,
        args.seed,
        &data::cache_dir(),
    ));
    let rate = load(&embedded, &d).await?;
    eprintln!(
        "statements: loaded {rows} rows for the search at {rate:.0} rows/s; waiting for the index"
    );
    embedded
        .wait_for_index(Duration::from_secs(5), Duration::from_secs(1800))
        .await;
    let wire = proxy::search(
        &embedded,
        &d,
        &Workload::new(TABLE, 0, 10, 1, args.queries * rounds),
        "proxy, k=10".into(),
    )
    .await?;
    embedded.stop()?;
    // The same search on the server with the setting, for the side-by-side comparison.
    let mut env_wire = None;
    if let (Some(server), Some(setting)) = (with_env, &args.statements_env) {
        load(&server, &d).await?;
        server
            .wait_for_index(Duration::from_secs(5), Duration::from_secs(1800))
            .await;
        let run = proxy::search(
            &server,
            &d,
            &Workload::new(TABLE, 0, 10, 1, args.queries * rounds),
            format!("proxy ({setting}), k=10"),
        )
        .await?;
        eprintln!(
            "statements: search p50 {:.3} ms over the wire with {setting}",
            run.p50
        );
        env_wire = Some((setting.clone(), run));
        server.stop()?;
    }
    // The same calls in process: back to back, and paced as one client's requests
    // reach a server (idling for the wire floor's round trip before each).
    let floor = results
        .first()
        .and_then(|(_, runs)| runs.first())
        .map_or(0.0, |r| r.p50);
    let mut direct = Vec::new();
    for gap in [Duration::ZERO, Duration::from_secs_f64(floor / 1000.0)] {
        let run = direct::search(
            &work.join("statements-embedded"),
            None,
            TABLE,
            &d,
            &[0],
            10,
            args.queries * rounds,
            gap,
        )
        .await?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no direct run"))?;
        direct.push(run);
    }
    let [direct, paced] = direct.as_slice() else {
        anyhow::bail!("two direct runs expected");
    };
    eprintln!(
        "statements: search p50 {:.3} ms over the wire, {:.3} ms direct, {:.3} ms direct paced by {floor:.3} ms",
        wire.p50, direct.p50, paced.p50
    );
    if args.smoke {
        anyhow::ensure!(
            wire.recall >= 0.9,
            "the prepared search's recall is {}",
            wire.recall
        );
    }
    let mut section =
        statements::markdown(&results, Some((&wire, direct, paced, floor)), command, rows);
    if let Some((setting, run)) = env_wire {
        // Inside the section, before its closing marker.
        let end = "<!-- /statements -->";
        let line = format!(
            "\nThe same prepared search on the server started with `{setting}`: p50 {:.3} ms over the wire (+{:.3} ms over the direct calls back to back).\n{end}",
            run.p50,
            run.p50 - direct.p50
        );
        section = section.replacen(end, &line, 1);
    }
    Ok(section)
}

/// What one run of workloads is measured on: the report, the data, and the server.
struct Runner<'a> {
    report: &'a mut Report,
    d: &'a Arc<Dataset>,
}

impl Runner<'_> {
    /// Keep a measured run in the report, and print it.
    fn keep(
        &mut self,
        section: &'static str,
        k: usize,
        clients: usize,
        filter: usize,
        ef: Option<usize>,
        run: Run,
    ) {
        eprintln!("{}", report::line(&run));
        self.report.records.push(Record {
            data: self.d.name.clone(),
            n: self.d.vectors.len(),
            section,
            k,
            clients,
            filter,
            ef,
            run,
        });
    }

    /// Run `w` over the wire on `server` and keep it; labels read "`what`, filter".
    async fn wire(
        &mut self,
        server: &Server,
        section: &'static str,
        what: &str,
        w: Workload<'_>,
        ef: Option<usize>,
    ) -> anyhow::Result<()> {
        let label = format!("{what}, {}", FILTERS[w.filter].label);
        let run = proxy::search(server, self.d, &w, label).await?;
        self.keep(section, w.k, w.clients, w.filter, ef, run);
        Ok(())
    }

    /// The same searches made directly on the stores the stopped server left in `data`.
    async fn direct(
        &mut self,
        data: &std::path::Path,
        filters: &[usize],
        queries: usize,
    ) -> anyhow::Result<()> {
        for (run, &f) in direct::search(
            data,
            None,
            TABLE,
            self.d,
            filters,
            10,
            queries,
            Duration::ZERO,
        )
        .await?
        .into_iter()
        .zip(filters)
        {
            self.keep("direct", 10, 1, f, None, run);
        }
        Ok(())
    }
}

/// Load `d` into a new table through `server` with COPY; rows/s.
async fn load(server: &Server, d: &Arc<Dataset>) -> anyhow::Result<f64> {
    let c = server.connect().await?;
    c.batch_execute(&proxy::create_table_sql(TABLE, d, ""))
        .await?;
    proxy::copy_rows(&c, TABLE, d, 0..d.vectors.len(), 5000).await
}

/// Everything on the embedded stores: load, searches, concurrency, ef sweep, exact scan,
/// memory, then the direct calls after the server stopped.
async fn embedded(
    report: &mut Report,
    bin: &std::path::Path,
    dir: &std::path::Path,
    d: &Arc<Dataset>,
    plan: &Plan,
    first: bool,
    queries: usize,
) -> anyhow::Result<()> {
    let n = d.vectors.len();
    let data_dir = dir.join("embedded");
    let server = Server::start(bin, &data_dir, None)?;
    let rate = load(&server, d).await?;
    eprintln!("loaded {n} rows with COPY: {rate:.0} rows/s; waiting for the index");
    report
        .ingest
        .push(Ingest::new("embedded", "COPY (load)", n, rate));
    let waited = std::time::Instant::now();
    server
        .wait_for_index(Duration::from_secs(5), Duration::from_secs(3600))
        .await;
    report.index_wait.push((n, waited.elapsed().as_secs_f64()));
    if first {
        ingest_pair(report, &server, d, "embedded").await?;
    }
    let mut r = Runner { report, d };
    // Latency at one client, every k and filter.
    for &k in &plan.ks {
        for f in 0..FILTERS.len() {
            r.wire(
                &server,
                "latency",
                &format!("proxy, k={k}"),
                Workload::new(TABLE, f, k, 1, queries),
                None,
            )
            .await?;
        }
    }
    // Throughput with more clients.
    for &clients in plan.clients.iter().filter(|c| **c > 1) {
        for f in [0, 3] {
            let w = Workload::new(TABLE, f, 10, clients, queries * 2);
            r.wire(
                &server,
                "concurrency",
                &format!("proxy, {clients} clients"),
                w,
                None,
            )
            .await?;
        }
    }
    let (peak, rss) = server.memory();
    r.report.memory.push((d.name.clone(), n, peak, rss));
    // Recall against QPS: the hnsw_ef sweep.
    for &ef in &plan.efs {
        for f in [0, 3] {
            let w = Workload::new(TABLE, f, 10, 1, queries)
                .setup(&format!("SET vectorgate.hnsw_ef = {ef}"));
            r.wire(&server, "ef", &format!("proxy, ef={ef}"), w, Some(ef))
                .await?;
        }
    }
    // The exact row scan (the fallback path), on fewer queries as rows grow.
    let reps = queries.min((2_000_000 / n).max(5));
    for f in [0, 2, 3] {
        let w = Workload::new(TABLE, f, 10, 1, reps).setup("SET vectorgate.row_scan = on");
        r.wire(&server, "exact", "proxy, exact row scan", w, None)
            .await?;
    }
    server.stop()?;
    r.direct(&data_dir, &[0, 1, 2, 3], queries).await
}

/// COPY against multi-row INSERT of the same rows (at most 10,000) into fresh tables.
async fn ingest_pair(
    report: &mut Report,
    server: &Server,
    d: &Arc<Dataset>,
    backend: &str,
) -> anyhow::Result<()> {
    let m = d.vectors.len().min(10_000);
    let c = server.connect().await?;
    c.batch_execute(&proxy::create_table_sql("ingest_copy", d, ""))
        .await?;
    c.batch_execute(&proxy::create_table_sql("ingest_insert", d, ""))
        .await?;
    let copy = proxy::copy_rows(&c, "ingest_copy", d, 0..m, 1000).await?;
    let insert = proxy::insert_rows(&c, "ingest_insert", d, 0..m, 100).await?;
    eprintln!("{backend}: COPY {copy:.0} rows/s, INSERT (100 rows each) {insert:.0} rows/s");
    report
        .ingest
        .push(Ingest::new(backend, "COPY, 1,000 rows each", m, copy));
    report
        .ingest
        .push(Ingest::new(backend, "INSERT, 100 rows each", m, insert));
    c.batch_execute("DROP TABLE ingest_copy; DROP TABLE ingest_insert")
        .await?;
    Ok(())
}

/// The proxy with its rows in Cassandra, then Cassandra's own SAI vector search.
#[allow(clippy::too_many_arguments)]
async fn with_cassandra(
    report: &mut Report,
    bin: &std::path::Path,
    dir: &std::path::Path,
    hosts: &str,
    session: &Arc<scylla::client::session::Session>,
    d: &Arc<Dataset>,
    first: bool,
    queries: usize,
) -> anyhow::Result<()> {
    let n = d.vectors.len();
    let ks = format!("vectorgate_bench_{}", d.name);
    let _ = session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await;
    let server = Server::start(bin, &dir.join("cassandra"), Some((hosts, &ks)))?;
    let rate = load(&server, d).await?;
    eprintln!("loaded {n} rows into Cassandra through the proxy: {rate:.0} rows/s");
    let backend = "Cassandra (through the proxy)";
    report
        .ingest
        .push(Ingest::new(backend, "COPY (load)", n, rate));
    server
        .wait_for_index(Duration::from_secs(5), Duration::from_secs(3600))
        .await;
    if first {
        ingest_pair(report, &server, d, backend).await?;
    }
    let mut r = Runner { report, d };
    for f in 0..FILTERS.len() {
        let w = Workload::new(TABLE, f, 10, 1, queries);
        r.wire(
            &server,
            "cassandra-proxy",
            "proxy, rows in Cassandra",
            w,
            None,
        )
        .await?;
    }
    let w = Workload::new(TABLE, 0, 10, 4, queries * 2);
    r.wire(
        &server,
        "cassandra-proxy",
        "proxy, rows in Cassandra, 4 clients",
        w,
        None,
    )
    .await?;
    server.stop()?;
    let _ = session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await;

    let table = format!("items_{}", d.name);
    let rate = cassandra::load(session, &table, d, 64).await?;
    eprintln!("loaded {n} rows into Cassandra with SAI indexes: {rate:.0} rows/s");
    r.report.ingest.push(Ingest::new(
        "Cassandra SAI (direct, prepared INSERT x64 in flight)",
        "INSERT, 1 row each",
        n,
        rate,
    ));
    for (f, clients, reps) in [
        (0, 1, queries),
        (1, 1, queries),
        (2, 1, queries),
        (3, 1, queries),
        (0, 4, queries * 2),
    ] {
        match cassandra::search(session, &table, d, f, 10, clients, reps).await {
            Ok(run) => r.keep("sai", 10, clients, f, None, run),
            Err(e) => {
                let label = FILTERS[f].label;
                eprintln!("Cassandra SAI, {label}: {e}");
                r.report
                    .notes
                    .push(format!("Cassandra SAI at {n} rows, {label}: `{e}`"));
            }
        }
    }
    cassandra::drop_table(session, &table).await;
    Ok(())
}

/// The small real data set: index, exact scan and direct calls, no filter and ~10%.
async fn digits(
    report: &mut Report,
    bin: &std::path::Path,
    dir: &std::path::Path,
    d: &Arc<Dataset>,
    queries: usize,
) -> anyhow::Result<()> {
    let data_dir = dir.join("embedded");
    let server = Server::start(bin, &data_dir, None)?;
    load(&server, d).await?;
    server
        .wait_for_index(Duration::from_secs(5), Duration::from_secs(600))
        .await;
    report.digits_title = Some(d.title.clone());
    let mut r = Runner { report, d };
    for (section, setup) in [("latency", ""), ("exact", "SET vectorgate.row_scan = on")] {
        for f in [0, 2] {
            let w = Workload::new(TABLE, f, 10, 1, queries).setup(setup);
            r.wire(&server, section, &format!("digits, {section}"), w, None)
                .await?;
        }
    }
    server.stop()?;
    r.direct(&data_dir, &[0, 2], queries).await
}
