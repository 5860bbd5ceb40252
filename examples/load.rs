//! A bounded load test of vectorgate on loopback: many concurrent connections mixing
//! searches and writes for a fixed time, against a server this program starts on a fresh
//! data directory and stops at the end.
//!
//!   cargo run --release --example load -- [--clients 64] [--seconds 30] [--rows 5000] [--dim 128]
//!
//! The server binary is `$VECTORGATE_BIN`, else the release build next to this example,
//! else the debug one. Prints queries done, errors (there must be none), p50/p99 per kind,
//! the server's peak resident memory, and checks that the row count adds up; the figures
//! replace the `load` section of BENCHMARKS.md. Exits non-zero on any error.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Args {
    clients: usize,
    seconds: u64,
    rows: i64,
    dim: usize,
}

fn args() -> Args {
    let mut a = Args {
        clients: 64,
        seconds: 30,
        rows: 5000,
        dim: 128,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse::<u64>().ok());
        match (pair[0].as_str(), value) {
            ("--clients", Some(v)) => a.clients = v.clamp(1, 1000) as usize,
            // Bounded: at most ten minutes.
            ("--seconds", Some(v)) => a.seconds = v.clamp(1, 600),
            ("--rows", Some(v)) => a.rows = v.clamp(10, 1_000_000) as i64,
            ("--dim", Some(v)) => a.dim = v.clamp(2, 2048) as usize,
            _ => {
                eprintln!(
                    "usage: load [--clients N] [--seconds S] [--rows N] [--dim D] (got {pair:?})"
                );
                std::process::exit(2);
            }
        }
    }
    a
}

fn server_binary() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("VECTORGATE_BIN") {
        return p.into();
    }
    let me = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/load -> target/<profile>/vectorgate
    let profile_dir = me.parent().and_then(|p| p.parent()).expect("target dir");
    let target = profile_dir.parent().expect("target");
    for candidate in [
        target.join("release/vectorgate"),
        profile_dir.join("vectorgate"),
    ] {
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("no vectorgate binary: build it or set VECTORGATE_BIN");
}

fn unit_vector(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.into_iter().map(|x| x / n).collect()
}

fn vec_text(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

/// Resident memory of a process now and at its peak, in MiB (Linux /proc).
fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

const KINDS: [&str; 5] = ["search", "filtered search", "insert", "update", "delete"];

#[derive(Default)]
struct Tally {
    latencies_ms: [Vec<f64>; 5],
    errors: Vec<String>,
    inserted: i64,
    deleted: i64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args();
    let bin = server_binary();
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .args(["--max-connections", "1000", "--slow-query-ms", "0"])
        .env("RUST_LOG", "warn,vectorgate=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(i) = line.find("listen=") {
                let addr = line[i + 7..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60))?;
    let url = format!("postgres://load@{addr}/vectorgate");
    eprintln!("server {} (pid {pid}) on {addr}", bin.display());

    // The table and its first rows, through COPY.
    let (setup, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    setup
        .batch_execute(&format!(
            "CREATE TABLE items (id bigint PRIMARY KEY, category int, embedding vector({}))",
            a.dim
        ))
        .await?;
    let mut rng = StdRng::seed_from_u64(42);
    let mut text = String::new();
    for id in 0..a.rows {
        let v = unit_vector(&mut rng, a.dim);
        text.push_str(&format!("{id}\t{}\t{}\n", id % 10, vec_text(&v)));
    }
    let started = Instant::now();
    let sink = setup.copy_in("COPY items FROM STDIN").await?;
    futures::pin_mut!(sink);
    use futures::SinkExt;
    sink.send(bytes::Bytes::from(text)).await?;
    let copied = sink.finish().await?;
    eprintln!(
        "loaded {copied} rows of {} dimensions in {:.1}s",
        a.dim,
        started.elapsed().as_secs_f64()
    );

    // The mixed load.
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicI64::new(a.rows));
    let done = Arc::new(AtomicU64::new(0));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak_rss.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some((rss, _)) = memory_mib(pid) {
                    peak.fetch_max(rss as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let (url, stop, next_id, done) = (url.clone(), stop.clone(), next_id.clone(), done.clone());
        let dim = a.dim;
        let initial = a.rows;
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            let (client, conn) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                Ok(x) => x,
                Err(e) => {
                    t.errors.push(format!("connect: {e}"));
                    return t;
                }
            };
            tokio::spawn(conn);
            let prepared = async {
                Ok::<_, tokio_postgres::Error>((
                    client
                        .prepare("SELECT id, distance FROM vector_search('items', $1, 10)")
                        .await?,
                    client
                        .prepare(
                            "SELECT id, distance FROM vector_search('items', $1, 10) WHERE category = $2",
                        )
                        .await?,
                    client.prepare("INSERT INTO items VALUES ($1, $2, $3)").await?,
                    client
                        .prepare("UPDATE items SET category = $1 WHERE id = $2")
                        .await?,
                    client.prepare("DELETE FROM items WHERE id = $1").await?,
                ))
            };
            let (search, filtered, insert, update, delete) = match prepared.await {
                Ok(p) => p,
                Err(e) => {
                    t.errors.push(format!("prepare: {e}"));
                    return t;
                }
            };
            let mut rng = StdRng::seed_from_u64(1000 + c as u64);
            let mut mine: Vec<i64> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let roll: f64 = rng.r#gen();
                let began = Instant::now();
                let (kind, result) = if roll < 0.5 {
                    let q = unit_vector(&mut rng, dim);
                    (0, client.query(&search, &[&q]).await.map(|r| r.len() as u64))
                } else if roll < 0.8 {
                    let q = unit_vector(&mut rng, dim);
                    let cat: i32 = rng.gen_range(0..10);
                    (1, client.query(&filtered, &[&q, &cat]).await.map(|r| r.len() as u64))
                } else if roll < 0.9 {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let v = unit_vector(&mut rng, dim);
                    let cat: i32 = (id % 10) as i32;
                    let r = client.execute(&insert, &[&id, &cat, &v]).await;
                    if r.is_ok() {
                        mine.push(id);
                        t.inserted += 1;
                    }
                    (2, r)
                } else if roll < 0.95 {
                    let id: i64 = rng.gen_range(0..initial);
                    let cat: i32 = rng.gen_range(0..10);
                    (3, client.execute(&update, &[&cat, &id]).await)
                } else {
                    match mine.pop() {
                        Some(id) => {
                            let r = client.execute(&delete, &[&id]).await;
                            if matches!(r, Ok(1)) {
                                t.deleted += 1;
                            }
                            (4, r)
                        }
                        None => continue,
                    }
                };
                match result {
                    Ok(_) => t.latencies_ms[kind].push(began.elapsed().as_secs_f64() * 1e3),
                    Err(e) => t.errors.push(format!("{}: {e}", KINDS[kind])),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            t
        }));
    }
    let load_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await?;
        for (k, l) in t.latencies_ms.into_iter().enumerate() {
            all.latencies_ms[k].extend(l);
        }
        all.errors.extend(t.errors);
        all.inserted += t.inserted;
        all.deleted += t.deleted;
    }
    let elapsed = load_started.elapsed().as_secs_f64();
    let _ = sampler.await;
    let (_, hwm) = memory_mib(pid).unwrap_or((f64::NAN, f64::NAN));
    let sampled_peak = peak_rss.load(Ordering::Relaxed) as f64;
    let count: i64 = setup
        .query_one("SELECT count(*) FROM items", &[])
        .await?
        .get(0);
    let expected = a.rows + all.inserted - all.deleted;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let status = child.wait()?;

    let total = done.load(Ordering::Relaxed);
    let mut out = String::new();
    out.push_str(&format!(
        "{} clients for {elapsed:.1}s on loopback, {} rows of {} dimensions to start: {total} statements ({:.0}/s), {} errors; rows at the end {count} (expected {expected}); server peak RSS {hwm:.0} MiB (sampled {sampled_peak:.0} MiB); server exit {status}.\n\n",
        a.clients,
        a.rows,
        a.dim,
        total as f64 / elapsed,
        all.errors.len(),
    ));
    out.push_str("| statement | count | p50 ms | p99 ms |\n|---|---|---|---|\n");
    for (k, name) in KINDS.iter().enumerate() {
        let mut l = std::mem::take(&mut all.latencies_ms[k]);
        l.sort_by(f64::total_cmp);
        out.push_str(&format!(
            "| {name} | {} | {:.2} | {:.2} |\n",
            l.len(),
            percentile(&l, 0.5),
            percentile(&l, 0.99)
        ));
    }
    std::io::stdout().write_all(out.as_bytes())?;
    for e in all.errors.iter().take(10) {
        eprintln!("error: {e}");
    }
    let section = format!(
        "<!-- load -->\n## Load: {} connections mixing searches and writes\n\nCommand: `cargo run --release --example load -- --clients {} --seconds {} --rows {} --dim {}` (server: `{}`; this client: a {} build). Machine: {} cores. Date: {}. 50% unfiltered and 30% filtered (10% pass) k = 10 searches, 10% inserts, 5% updates, 5% deletes, prepared statements, each client as fast as it can.\n\n{out}<!-- /load -->",
        a.clients,
        a.clients,
        a.seconds,
        a.rows,
        a.dim,
        bin.display()
            .to_string()
            .replace(&std::env::var("HOME").unwrap_or_default(), "~"),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        chrono::Utc::now().format("%Y-%m-%d"),
    );
    let previous =
        std::fs::read_to_string("BENCHMARKS.md").unwrap_or_else(|_| "# Benchmarks\n".into());
    let text = match (
        previous.find("<!-- load -->"),
        previous.find("<!-- /load -->"),
    ) {
        (Some(s), Some(e)) => format!(
            "{}{section}{}",
            &previous[..s],
            &previous[e + "<!-- /load -->".len()..]
        ),
        _ => format!("{}\n{section}\n", previous.trim_end()),
    };
    std::fs::File::create("BENCHMARKS.md")?.write_all(text.as_bytes())?;
    if !all.errors.is_empty() || count != expected {
        std::process::exit(1);
    }
    Ok(())
}
