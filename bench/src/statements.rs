//! Per-statement latency, next to PostgreSQL 15 in the same run: the small statements
//! that applications keeping state in a database send all the time (the wire floor, a
//! key lookup, a single-row UPDATE, INSERT and upsert, a 10-statement transaction), each
//! prepared once and run from one
//! client, on vectorgate (embedded stores; rows in Cassandra when given) and on a
//! PostgreSQL server (`--postgres`, which `scripts/bench.sh --statements` starts from
//! Debian's postgresql-15 on loopback). PostgreSQL has no pgvector here, so its table
//! keeps the embedding as `real[]`, without an index; both are durable when they
//! acknowledge a write (PostgreSQL with `synchronous_commit` on, its default;
//! vectorgate with the row and its outbox entry on disk).
//!
//! The targets take turns, a round of each shape at a time, so that a busy moment of
//! the machine falls on all of them alike. Every answer is checked: the row a lookup
//! returns, the count an UPDATE or INSERT reports.

use std::fmt::Write as _;
use std::time::Instant;

use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use crate::data::Rng;
use crate::stats::{Run, summarize};

pub const TABLE: &str = "stmt_bench";

/// One server the statements run on.
pub struct Target {
    pub name: String,
    pub client: Client,
    /// The column type of the embedding (`vector(384)`, or `real[]` on PostgreSQL).
    pub vector_type: String,
    next_id: i64,
}

impl Target {
    pub fn new(name: &str, client: Client, vector_type: &str) -> Target {
        Target {
            name: name.to_string(),
            client,
            vector_type: vector_type.to_string(),
            next_id: 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    Floor,
    Lookup,
    Update,
    Insert,
    Upsert,
    Transaction,
}

impl Shape {
    pub const ALL: [Shape; 6] = [
        Shape::Floor,
        Shape::Lookup,
        Shape::Update,
        Shape::Insert,
        Shape::Upsert,
        Shape::Transaction,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Shape::Floor => "`SELECT $1::int` (the wire floor)",
            Shape::Lookup => "key lookup `SELECT id, title, category, year ... WHERE id = $1`",
            Shape::Update => "single-row `UPDATE ... SET year = $2 WHERE id = $1`",
            Shape::Insert => "single-row `INSERT` of 5 columns with a 384-d vector",
            Shape::Upsert => {
                "single-row `INSERT ... ON CONFLICT (id) DO UPDATE SET year = EXCLUDED.year` of a taken key"
            }
            Shape::Transaction => {
                "a transaction: `BEGIN`, 5 `UPDATE`s, 3 `INSERT`s, a key lookup, `COMMIT` (10 statements)"
            }
        }
    }

    fn sql(self) -> String {
        match self {
            Shape::Floor => "SELECT $1::int".into(),
            Shape::Lookup => format!("SELECT id, title, category, year FROM {TABLE} WHERE id = $1"),
            Shape::Update => format!("UPDATE {TABLE} SET year = $2 WHERE id = $1"),
            Shape::Insert => format!(
                "INSERT INTO {TABLE} (id, title, category, year, embedding) VALUES ($1, $2, $3, $4, $5)"
            ),
            Shape::Upsert => format!(
                "INSERT INTO {TABLE} (id, title, category, year, embedding) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET year = EXCLUDED.year"
            ),
            // Its statements are the lookup's, the UPDATE's and the INSERT's.
            Shape::Transaction => "BEGIN".into(),
        }
    }

    fn types(self) -> Vec<Type> {
        match self {
            Shape::Floor => vec![Type::INT4],
            Shape::Lookup => vec![Type::INT8],
            Shape::Update => vec![Type::INT8, Type::INT4],
            Shape::Insert | Shape::Upsert => vec![
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::INT4,
                Type::FLOAT4_ARRAY,
            ],
            Shape::Transaction => vec![],
        }
    }
}

/// A random unit vector.
pub fn vector(rng: &mut Rng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim).map(|_| rng.gaussian()).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.into_iter().map(|x| x / norm).collect()
}

/// Create the table on `t` and fill it with `rows` rows (ids 0..rows), 200 to a statement.
pub async fn load(t: &mut Target, rows: usize, dim: usize, seed: u64) -> anyhow::Result<()> {
    t.client
        .batch_execute(&format!("DROP TABLE IF EXISTS {TABLE}"))
        .await?;
    t.client
        .batch_execute(&format!(
            "CREATE TABLE {TABLE} (id bigint PRIMARY KEY, title text, category text, year int, embedding {})",
            t.vector_type
        ))
        .await?;
    let mut rng = Rng::new(seed);
    let brackets = !t.vector_type.starts_with("vector");
    let mut at = 0;
    while at < rows {
        let end = (at + 200).min(rows);
        let mut sql = format!("INSERT INTO {TABLE} (id, title, category, year, embedding) VALUES ");
        for i in at..end {
            if i > at {
                sql.push(',');
            }
            let v = vector(&mut rng, dim);
            let text: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            let (open, close) = if brackets { ('{', '}') } else { ('[', ']') };
            let _ = write!(
                sql,
                "({i}, 'doc {i}', 'cat{}', {}, '{open}{}{close}')",
                i % 10,
                2000 + i % 25,
                text.join(",")
            );
        }
        let n = t.client.execute(sql.as_str(), &[]).await?;
        anyhow::ensure!(n as usize == end - at, "{}: INSERT stored {n} rows", t.name);
        at = end;
    }
    t.next_id = rows as i64;
    Ok(())
}

/// Run `shape` `n` times on `t` (after a few untimed runs), checking every answer;
/// latencies in ms.
pub async fn measure(
    t: &mut Target,
    shape: Shape,
    n: usize,
    rows: usize,
    dim: usize,
    rng: &mut Rng,
) -> anyhow::Result<Vec<f64>> {
    let stmt = t.client.prepare_typed(&shape.sql(), &shape.types()).await?;
    let prepare = |s: Shape| {
        let client = &t.client;
        async move { client.prepare_typed(&s.sql(), &s.types()).await }
    };
    let (lookup, update, insert) = (
        prepare(Shape::Lookup).await?,
        prepare(Shape::Update).await?,
        prepare(Shape::Insert).await?,
    );
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 5 {
        let started;
        match shape {
            Shape::Floor => {
                let x = i as i32;
                started = Instant::now();
                let row = t.client.query_one(&stmt, &[&x]).await?;
                anyhow::ensure!(row.get::<_, i32>(0) == x, "{}: wrong answer", t.name);
            }
            Shape::Lookup => {
                let id = rng.below(rows) as i64;
                started = Instant::now();
                let got = t.client.query(&stmt, &[&id]).await?;
                anyhow::ensure!(
                    got.len() == 1
                        && got[0].get::<_, i64>(0) == id
                        && got[0].get::<_, String>(1) == format!("doc {id}"),
                    "{}: key lookup of {id} answered {} rows",
                    t.name,
                    got.len()
                );
            }
            Shape::Update => {
                let id = rng.below(rows) as i64;
                let year = 1900 + (i % 100) as i32;
                started = Instant::now();
                let count = t.client.execute(&stmt, &[&id, &year]).await?;
                anyhow::ensure!(count == 1, "{}: UPDATE of {id} counted {count}", t.name);
            }
            Shape::Insert => {
                let id = t.next_id;
                t.next_id += 1;
                let (title, cat, year, v) = (
                    format!("doc {id}"),
                    format!("cat{}", id % 10),
                    2000 + (id % 25) as i32,
                    vector(rng, dim),
                );
                let params: [&(dyn ToSql + Sync); 5] = [&id, &title, &cat, &year, &v];
                started = Instant::now();
                let count = t.client.execute(&stmt, &params).await?;
                anyhow::ensure!(count == 1, "{}: INSERT counted {count}", t.name);
            }
            Shape::Upsert => {
                let id = rng.below(rows) as i64;
                let (title, cat, year, v) = (
                    format!("doc {id}"),
                    format!("cat{}", id % 10),
                    1900 + (i % 100) as i32,
                    vector(rng, dim),
                );
                let params: [&(dyn ToSql + Sync); 5] = [&id, &title, &cat, &year, &v];
                started = Instant::now();
                let count = t.client.execute(&stmt, &params).await?;
                anyhow::ensure!(count == 1, "{}: upsert of {id} counted {count}", t.name);
            }
            Shape::Transaction => {
                let keys: Vec<i64> = (0..6).map(|_| rng.below(rows) as i64).collect();
                let fresh: Vec<i64> = (0..3).map(|j| t.next_id + j).collect();
                t.next_id += 3;
                let vectors: Vec<Vec<f32>> = (0..3).map(|_| vector(rng, dim)).collect();
                let year = 1900 + (i % 100) as i32;
                started = Instant::now();
                t.client.batch_execute("BEGIN").await?;
                let mut written = 0;
                for id in &keys[..5] {
                    written += t.client.execute(&update, &[id, &year]).await?;
                }
                for (id, v) in fresh.iter().zip(&vectors) {
                    let (title, cat) = (format!("doc {id}"), format!("cat{}", id % 10));
                    let params: [&(dyn ToSql + Sync); 5] = [id, &title, &cat, &year, v];
                    written += t.client.execute(&insert, &params).await?;
                }
                let got = t.client.query(&lookup, &[&keys[5]]).await?;
                t.client.batch_execute("COMMIT").await?;
                anyhow::ensure!(
                    written == 8 && got.len() == 1,
                    "{}: a transaction wrote {written} rows, its lookup found {}",
                    t.name,
                    got.len()
                );
            }
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if i >= 5 {
            out.push(ms);
        }
    }
    Ok(out)
}

/// Every shape on every target, `rounds` turns of `per_round` statements each.
pub async fn run(
    targets: &mut [Target],
    rows: usize,
    dim: usize,
    rounds: usize,
    per_round: usize,
    seed: u64,
) -> anyhow::Result<Vec<(Shape, Vec<Run>)>> {
    for t in targets.iter_mut() {
        eprintln!("statements: loading {rows} rows into {}", t.name);
        load(t, rows, dim, seed).await?;
    }
    let mut out = Vec::new();
    for shape in Shape::ALL {
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
        let mut rng = Rng::new(seed ^ 0x5eed);
        for _ in 0..rounds {
            for (t, s) in targets.iter_mut().zip(samples.iter_mut()) {
                s.extend(measure(t, shape, per_round, rows, dim, &mut rng).await?);
            }
        }
        let runs: Vec<Run> = targets
            .iter()
            .zip(samples)
            .map(|(t, s)| {
                summarize(
                    t.name.clone(),
                    s.into_iter().map(|ms| (ms, (0, 0))).collect(),
                    std::time::Duration::ZERO,
                    None,
                )
            })
            .collect();
        for r in &runs {
            eprintln!(
                "statements: {:<55} {:<28} p50 {:.3} ms  p99 {:.3} ms",
                shape.label(),
                r.label,
                r.p50,
                r.p99
            );
        }
        out.push((shape, runs));
    }
    Ok(out)
}

/// The BENCHMARKS.md section, between `<!-- statements -->` markers.
pub fn markdown(
    results: &[(Shape, Vec<Run>)],
    search: Option<(&Run, &Run, &Run, f64)>,
    command: &str,
    rows: usize,
) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "<!-- statements -->");
    let _ = writeln!(o, "## Per statement, next to PostgreSQL 15\n");
    let _ = writeln!(
        o,
        "`{command}`: each statement prepared once and run from one client over loopback \
         (tokio-postgres, binary results) on a {rows}-row table, the servers taking turns \
         round by round; medians (p50) and p99 in ms, and each median as a ratio to \
         PostgreSQL's. PostgreSQL 15 (Debian's package, default settings: `fsync` and \
         `synchronous_commit` on) keeps the embedding as `real[]` without an index (no \
         pgvector here); vectorgate acknowledges a write once the row and its outbox \
         entry are durable and the vector index has applied it (the index flushes in the \
         background, the outbox replays what a crash loses).\n"
    );
    let names: Vec<&str> = results
        .first()
        .map(|(_, runs)| runs.iter().map(|r| r.label.as_str()).collect())
        .unwrap_or_default();
    let _ = write!(o, "| statement |");
    for n in &names {
        let _ = write!(o, " {n} p50 / p99 |");
    }
    let _ = writeln!(o);
    let _ = write!(o, "|---|");
    for _ in &names {
        let _ = write!(o, "---|");
    }
    let _ = writeln!(o);
    for (shape, runs) in results {
        let pg = runs.iter().find(|r| r.label.starts_with("PostgreSQL"));
        let _ = write!(o, "| {} |", shape.label());
        for r in runs {
            let ratio = match pg {
                Some(p) if !r.label.starts_with("PostgreSQL") && p.p50 > 0.0 => {
                    format!(" ({:.1}x)", r.p50 / p.p50)
                }
                _ => String::new(),
            };
            let _ = write!(o, " {:.3} / {:.3}{ratio} |", r.p50, r.p99);
        }
        let _ = writeln!(o);
    }
    if let Some((proxy, direct, paced, floor)) = search {
        let _ = writeln!(
            o,
            "\nA prepared `vector_search` (k = 10, no filter) on the embedded stores at {} rows: \
             p50 {:.3} ms over the wire; {:.3} ms as direct calls of the same index and row \
             store in process, back to back ({:+.3} ms for the proxy), and {:.3} ms when each \
             call first idles for the wire floor's round trip ({floor:.3} ms), as a server \
             does between one client's requests ({:+.3} ms for the proxy).",
            rows,
            proxy.p50,
            direct.p50,
            proxy.p50 - direct.p50,
            paced.p50,
            proxy.p50 - paced.p50
        );
    }
    let _ = writeln!(o, "<!-- /statements -->");
    o
}
