//! The proxy under test: a `vectorgate serve` child process, the workloads sent to it over
//! the wire (tokio-postgres, prepared statements, binary results), and its CPU and memory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::SinkExt;
use tokio_postgres::Client;

use crate::data::{self, Dataset};
use crate::stats::{Run, summarize};

pub struct Server {
    child: Child,
    pub addr: String,
}

impl Server {
    /// Start `bin serve` on a free loopback port with its data in `data`, and rows in
    /// Cassandra when `cql` is given (`HOST:PORT`, keyspace `keyspace`).
    pub fn start(bin: &Path, data: &Path, cql: Option<(&str, &str)>) -> anyhow::Result<Server> {
        Server::start_with(bin, data, cql, &[])
    }

    /// [`Server::start`] with more flags (`--qdrant URL`, ...).
    pub fn start_with(
        bin: &Path,
        data: &Path,
        cql: Option<(&str, &str)>,
        extra: &[&str],
    ) -> anyhow::Result<Server> {
        Server::start_env(bin, data, cql, extra, &[])
    }

    /// [`Server::start_with`] with environment variables set for the server.
    pub fn start_env(
        bin: &Path,
        data: &Path,
        cql: Option<(&str, &str)>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Server> {
        let mut cmd = Command::new(bin);
        cmd.envs(env.iter().copied());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--auth",
            "trust",
            "--data",
        ])
        .arg(data)
        .env("RUST_LOG", "warn,vectorgate=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if let Some((hosts, ks)) = cql {
            cmd.args(["--scylla", hosts, "--keyspace", ks]);
        }
        cmd.args(extra);
        let mut child = cmd.spawn()?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(i) = line.find("listen=") {
                    let addr = line[i + 7..].split_whitespace().next().unwrap_or("");
                    let _ = tx.send(addr.to_string());
                    sent = true;
                }
                if line.contains("ERROR")
                    || (line.contains("WARN")
                        && !line.contains("qdrant_edge")
                        && !line.contains("tombstone"))
                {
                    eprintln!("server: {line}");
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(120))?;
        Ok(Server { child, addr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        connect(&self.addr).await
    }

    /// Wait until the index optimiser is done: the server quiet (under a quarter of a
    /// core: an optimisation keeps at least one busy) for `quiet` in a row, at most
    /// `limit`. Its log cannot say so: it writes a line when an optimisation ends, and
    /// is silent through a build of several minutes. Not idle: a proxy on a CQL cluster
    /// asks for the catalog's version 40 times a second, about 8% of a core in a debug
    /// build (with a 5% threshold the CI smoke run waited out its hour).
    pub async fn wait_for_index(&self, quiet: Duration, limit: Duration) {
        let started = Instant::now();
        let mut idle = Duration::ZERO;
        let mut last = self.cpu();
        while started.elapsed() < limit && idle < quiet {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.cpu();
            idle = if now.saturating_sub(last) < Duration::from_millis(250) {
                idle + Duration::from_secs(1)
            } else {
                Duration::ZERO
            };
            last = now;
        }
    }

    /// CPU time (user + system) the server has used so far.
    pub fn cpu(&self) -> Duration {
        cpu_time(self.child.id()).unwrap_or_default()
    }

    /// Peak and current resident memory, in MiB.
    pub fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// SIGTERM, then wait for the exit (the server flushes its index first).
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "server exited with {status}");
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub async fn connect(addr: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(
        &format!("postgres://bench@{addr}/vectorgate"),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(conn);
    Ok(client)
}

fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime is the 14th field,
    // stime the 15th, both in clock ticks (USER_HZ, 100 on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

pub fn create_table_sql(table: &str, d: &Dataset, options: &str) -> String {
    format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, cat int, title text, embedding vector({})) WITH (distance = '{}'{options})",
        d.dim(),
        d.distance.name()
    )
}

/// Load rows `range` of `d` into `table` with COPY, `chunk` rows per COPY; rows/s.
pub async fn copy_rows(
    client: &Client,
    table: &str,
    d: &Dataset,
    range: std::ops::Range<usize>,
    chunk: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut at = range.start;
    while at < range.end {
        let end = (at + chunk).min(range.end);
        let text = data::copy_text(d, at..end);
        let sink = client
            .copy_in::<_, bytes::Bytes>(&format!("COPY {table} FROM STDIN"))
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
    Ok(range.len() as f64 / started.elapsed().as_secs_f64())
}

/// Load rows `range` of `d` into `table` with multi-row INSERTs of `batch` rows; rows/s.
pub async fn insert_rows(
    client: &Client,
    table: &str,
    d: &Dataset,
    range: std::ops::Range<usize>,
    batch: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let ids: Vec<usize> = range.clone().collect();
    for chunk in ids.chunks(batch) {
        let mut sql = format!("INSERT INTO {table} (id, cat, title, embedding) VALUES ");
        for (j, &i) in chunk.iter().enumerate() {
            if j > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("({i}, {}, 'doc {i}', '", d.cats[i]));
            data::vector_literal(&mut sql, &d.vectors[i]);
            sql.push_str("')");
        }
        let n = client.execute(sql.as_str(), &[]).await?;
        anyhow::ensure!(
            n as usize == chunk.len(),
            "INSERT stored {n} of {} rows",
            chunk.len()
        );
    }
    Ok(range.len() as f64 / started.elapsed().as_secs_f64())
}

/// One search workload over the wire.
pub struct Workload<'a> {
    pub table: &'a str,
    pub filter: usize,
    pub k: usize,
    pub clients: usize,
    /// Session settings sent before preparing (`SET vectorgate.hnsw_ef = 64`, ...).
    pub setup: String,
    /// How many of the data set's queries to time (all at concurrency > 1 repeat them).
    pub queries: usize,
}

impl<'a> Workload<'a> {
    pub fn new(table: &'a str, filter: usize, k: usize, clients: usize, queries: usize) -> Self {
        Workload {
            table,
            filter,
            k,
            clients,
            setup: String::new(),
            queries,
        }
    }

    pub fn setup(mut self, sql: &str) -> Self {
        self.setup = sql.to_string();
        self
    }
}

/// Run `w` against the server at `addr` and return its latencies, QPS and recall. The
/// statement is `SELECT id, distance FROM vector_search(...) [WHERE filter]`, prepared
/// once per connection; every connection first runs a few untimed queries.
pub async fn search(
    server: &Server,
    d: &Arc<Dataset>,
    w: &Workload<'_>,
    label: String,
) -> anyhow::Result<Run> {
    let (samples, wall, cpu) = search_samples(server, d, w).await?;
    Ok(summarize(label, samples, wall, cpu))
}

/// One (latency ms, recall counts) sample per query of [`search`], with the wall time
/// and the server's CPU time over them.
pub async fn search_samples(
    server: &Server,
    d: &Arc<Dataset>,
    w: &Workload<'_>,
) -> anyhow::Result<(Samples, Duration, Option<Duration>)> {
    let f = data::FILTERS[w.filter];
    let sql = format!(
        "SELECT id, distance FROM vector_search('{}', $1, {}){}",
        w.table,
        w.k,
        if f.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", f.sql)
        }
    );
    let total = w.queries.max(w.clients);
    let mut tasks = tokio::task::JoinSet::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(w.clients));
    let cpu_before = Arc::new(Mutex::new(None));
    let started = Arc::new(Mutex::new(None));
    for c in 0..w.clients {
        let client = server.connect().await?;
        let (sql, setup, d, barrier) = (sql.clone(), w.setup.clone(), d.clone(), barrier.clone());
        let (cpu_before, started, pid) = (cpu_before.clone(), started.clone(), server.pid());
        let (clients, filter, k) = (w.clients, w.filter, w.k);
        tasks.spawn(async move {
            if !setup.is_empty() {
                client.batch_execute(&setup).await?;
            }
            let stmt = client.prepare(&sql).await?;
            for qi in 0..5.min(d.queries.len()) {
                client
                    .query(&stmt, &[&d.queries[(qi * 7 + c) % d.queries.len()]])
                    .await?;
            }
            if barrier.wait().await.is_leader() {
                *cpu_before.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = cpu_time(pid);
                *started.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(Instant::now());
            }
            barrier.wait().await;
            let mut out = Vec::new();
            let mut i = c;
            while i < total {
                let qi = i % d.queries.len();
                let t = Instant::now();
                let rows = client.query(&stmt, &[&d.queries[qi]]).await?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                out.push((ms, data::recall(&ids, &d.truth[filter][qi], k)));
                i += clients;
            }
            anyhow::Ok(out)
        });
    }
    let mut samples = Vec::new();
    while let Some(r) = tasks.join_next().await {
        samples.extend(r??);
    }
    let wall = started
        .lock()
        .ok()
        .and_then(|s| *s)
        .map_or(Duration::ZERO, |s| s.elapsed());
    let cpu = cpu_before
        .lock()
        .ok()
        .and_then(|b| *b)
        .map(|b| server.cpu().saturating_sub(b));
    Ok((samples, wall, cpu))
}

/// Latency in ms and (relevant found, relevant), per query.
pub type Samples = Vec<(f64, (usize, usize))>;

/// The release `vectorgate` binary beside this one, or `VECTORGATE_BIN`.
pub fn server_binary() -> anyhow::Result<PathBuf> {
    if let Some(b) = std::env::var_os("VECTORGATE_BIN") {
        return Ok(PathBuf::from(b));
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no directory"))?;
    let bin = dir.join("vectorgate");
    anyhow::ensure!(
        bin.exists(),
        "no vectorgate binary at {} (build it with this profile or set VECTORGATE_BIN)",
        bin.display()
    );
    Ok(bin)
}
