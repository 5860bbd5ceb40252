//! One integration-test binary. Every test starts the real `vectorgate` binary on a
//! free port with its own data directory and talks to it over the Postgres wire.

mod cassandra;
mod copy;
mod databases;
mod direct;
mod durability;
mod errors;
mod fallback;
mod faults;
mod fuzz;
mod jsonb_search;
mod ops;
mod pg_dump;
mod plan_cache;
mod protocol;
mod qdrant_server;
mod rawsocket;
mod replay;
mod row_locks;
mod search;
mod security;
mod slt;
mod transactions;
mod vectors;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The CQL contact point the tests should keep rows in, if any.
/// The checkout these tests run from. Read at run time: a target directory shared
/// between checkouts can hold a binary compiled in another (since deleted) one.
pub fn checkout() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

pub fn cassandra() -> Option<String> {
    std::env::var("VECTORGATE_TEST_CASSANDRA")
        .ok()
        .filter(|s| !s.is_empty())
}

/// The Qdrant server (gRPC URL) the tests should keep vectors in, if any.
pub fn qdrant() -> Option<String> {
    std::env::var("VECTORGATE_TEST_QDRANT_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// `extra`, plus the row-store flags: with VECTORGATE_TEST_CASSANDRA set, rows live in
/// that cluster, in a keyspace of the data directory's own (so a restart finds them).
pub fn backend_args(data: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    if let Some(url) = qdrant().filter(|_| !extra.contains(&"--qdrant")) {
        args.push("--qdrant".into());
        args.push(url);
        // Proxies on one keyspace (one cluster) share its collections, as in a deployment.
        let keyspace = extra
            .iter()
            .position(|a| *a == "--keyspace")
            .and_then(|i| extra.get(i + 1))
            .map_or_else(|| keyspace_for(data), |k| k.to_string());
        args.push("--qdrant-collection-prefix".into());
        args.push(format!("{keyspace}_"));
    }
    if let Some(cassandra) = cassandra().filter(|_| !extra.contains(&"--scylla")) {
        args.push("--scylla".into());
        args.push(cassandra);
        if !extra.contains(&"--keyspace") {
            args.push("--keyspace".into());
            args.push(keyspace_for(data));
        }
    }
    args
}

/// A keyspace name derived from a data directory.
pub fn keyspace_for(data: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    std::process::id().hash(&mut h);
    format!("vgtest_{:016x}", h.finish())
}

pub struct Server {
    child: Option<Child>,
    pub addr: String,
    pub data: PathBuf,
    /// Every line the server wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Start a server on a new, empty data directory.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut s = Server::start_on(&data, &[]);
        s._dir = Some(dir);
        s
    }

    /// Start a server on a new, empty data directory with extra flags.
    pub fn start_args(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_on(&dir.path().join("data"), extra);
        s._dir = Some(dir);
        s
    }

    /// Start a server on `data` with extra flags.
    pub fn start_on(data: &Path, extra: &[&str]) -> Server {
        Server::start_with(data, extra, &[])
    }

    /// Start a server on `data` with extra flags and environment variables.
    pub fn start_with(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let args = backend_args(data, extra);
        let child = Command::new(env!("CARGO_BIN_EXE_vectorgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(&args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vectorgate");
        Server::adopt(child, data)
    }

    /// Watch a started server (stderr piped) until it reports its address.
    pub fn adopt(mut child: Child, data: &Path) -> Server {
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(addr) = log_field(&line, "listen") {
                    let _ = tx.send(addr);
                    sent = true;
                }
                if std::env::var_os("VECTORGATE_TEST_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
                if let Ok(mut v) = lines.lock() {
                    v.push(line);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server did not report its address");
        Server {
            child: Some(child),
            addr,
            data: data.to_path_buf(),
            log,
            _dir: None,
        }
    }

    /// The first value of `field` the server logged (text `field=v` or JSON).
    pub fn logged(&self, field: &str) -> Option<String> {
        self.log
            .lock()
            .ok()?
            .iter()
            .find_map(|l| log_field(l, field))
    }

    /// The operating-system process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Send a signal (e.g. "-HUP") to the server.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Wait for the server to exit on its own and return its status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server did not exit within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://tester@{}/vectorgate", self.addr)
    }

    pub fn config(&self) -> tokio_postgres::Config {
        self.url().parse().expect("url")
    }

    /// A client whose NOTICE messages are collected.
    pub async fn client_with_notices(
        &self,
    ) -> (
        tokio_postgres::Client,
        std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        use futures::StreamExt;
        let (client, mut conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect");
        let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = notices.clone();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notice(n) = m
                    && let Ok(mut v) = sink.lock()
                {
                    v.push(n.message().to_string());
                }
            }
        });
        (client, notices)
    }

    /// A client of the database `db` (the startup packet's database name).
    pub async fn client_to(&self, db: &str) -> tokio_postgres::Client {
        let mut config = self.config();
        config.dbname(db);
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect to a database");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    return client;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot connect: {e}"),
            }
        }
    }

    /// Stop with SIGTERM (graceful) or SIGKILL and wait for the process to end.
    pub fn stop(&mut self, graceful: bool) {
        if let Some(mut child) = self.child.take() {
            let sig = if graceful { "-TERM" } else { "-KILL" };
            let _ = Command::new("kill")
                .arg(sig)
                .arg(child.id().to_string())
                .status();
            let status = child.wait().expect("wait");
            if graceful {
                assert!(
                    status.success(),
                    "graceful shutdown should exit 0, got {status}"
                );
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let exited = c.try_wait().ok().flatten();
            let _ = c.kill();
            let _ = c.wait();
            // A failing test shows what its server said last (and whether it had exited).
            if std::thread::panicking() {
                std::thread::sleep(Duration::from_millis(100));
                if let Ok(lines) = self.log.lock() {
                    eprintln!(
                        "--- last lines of the server on {} (exited before the test ended: {exited:?}):",
                        self.addr
                    );
                    for l in lines.iter().rev().take(40).rev() {
                        eprintln!("[server] {l}");
                    }
                }
            }
        }
    }
}

/// A field of a log line: `name=value` in text logs, `"name":"value"` in JSON logs.
pub fn log_field(line: &str, name: &str) -> Option<String> {
    let text = format!("{name}=");
    let json = format!("\"{name}\":\"");
    if let Some(i) = line.find(&json) {
        let rest = &line[i + json.len()..];
        return rest.split('"').next().map(str::to_string);
    }
    let i = line.find(&text)?;
    if i > 0 && !line[..i].ends_with(' ') {
        return None;
    }
    line[i + text.len()..]
        .split_whitespace()
        .next()
        .map(str::to_string)
}

/// A vector as pgvector's binary format, for parameters the server types `vector`
/// (operands of `<->`, `<=>`, `<#>`), as the pgvector crate sends it: u16 dimension,
/// u16 unused, then big-endian f32s.
#[derive(Debug)]
pub struct PgVector(pub Vec<f32>);

impl tokio_postgres::types::ToSql for PgVector {
    fn to_sql(
        &self,
        _ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        out.put_u16(u16::try_from(self.0.len())?);
        out.put_u16(0);
        for x in &self.0 {
            out.put_f32(*x);
        }
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        ty.name() == "vector"
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A pgvector `sparsevec` (given as the dense vector it equals) in its binary form: i32
/// dimension, i32 count, i32 unused, the 0-based indexes, the values.
#[derive(Debug, Clone, PartialEq)]
pub struct PgSparseVec(pub Vec<f32>);

impl tokio_postgres::types::ToSql for PgSparseVec {
    fn to_sql(
        &self,
        _ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        let nz: Vec<(usize, f32)> = self
            .0
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, x)| *x != 0.0)
            .collect();
        out.put_i32(i32::try_from(self.0.len())?);
        out.put_i32(i32::try_from(nz.len())?);
        out.put_i32(0);
        for (i, _) in &nz {
            out.put_i32(i32::try_from(*i)?);
        }
        for (_, x) in &nz {
            out.put_f32(*x);
        }
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        ty.name() == "sparsevec"
    }

    tokio_postgres::types::to_sql_checked!();
}

/// pgvector's text form of a sparse vector given as the dense vector it equals.
pub fn sparse_text(v: &[f32]) -> String {
    let items: Vec<String> = v
        .iter()
        .enumerate()
        .filter(|(_, x)| **x != 0.0)
        .map(|(i, x)| format!("{}:{x}", i + 1))
        .collect();
    format!("{{{}}}/{}", items.join(","), v.len())
}

/// A pgvector `halfvec` in its binary form (u16 dimension, u16 unused, big-endian
/// binary16s), sent and read.
#[derive(Debug, Clone, PartialEq)]
pub struct PgHalfVec(pub Vec<f32>);

impl tokio_postgres::types::ToSql for PgHalfVec {
    fn to_sql(
        &self,
        _ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        out.put_u16(u16::try_from(self.0.len())?);
        out.put_u16(0);
        for x in &self.0 {
            out.put_slice(&half::f16::from_f32(*x).to_be_bytes());
        }
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        ty.name() == "halfvec"
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> tokio_postgres::types::FromSql<'a> for PgHalfVec {
    fn from_sql(
        _ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let dim = u16::from_be_bytes([raw[0], raw[1]]) as usize;
        if raw.len() != 4 + 2 * dim {
            return Err("malformed halfvec".into());
        }
        Ok(PgHalfVec(
            raw[4..]
                .chunks_exact(2)
                .map(|c| half::f16::from_be_bytes([c[0], c[1]]).to_f32())
                .collect(),
        ))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        ty.name() == "halfvec"
    }
}

/// Format a vector as pgvector text.
/// The first column of a query's rows as ids, over the simple protocol (text) or the
/// extended one.
pub async fn first_column_ids(
    client: &tokio_postgres::Client,
    sql: &str,
    simple: bool,
) -> Result<Vec<i64>, tokio_postgres::Error> {
    if simple {
        Ok(client
            .simple_query(sql)
            .await?
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    r.get(0).and_then(|v| v.parse::<i64>().ok())
                }
                _ => None,
            })
            .collect())
    } else {
        Ok(client
            .query(sql, &[])
            .await?
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect())
    }
}

pub fn vec_text(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

/// The plan of a statement, as EXPLAIN prints it.
pub async fn explain(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> String {
    client
        .query(&format!("EXPLAIN {sql}"), params)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN {sql}: {e}"))
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One column of every row `sql` answers in the simple protocol, as text (NULLs left out).
pub async fn simple_column(
    client: &tokio_postgres::Client,
    sql: &str,
    column: usize,
) -> Vec<String> {
    simple_rows(client, sql)
        .await
        .into_iter()
        .filter_map(|r| r.into_iter().nth(column).flatten())
        .collect()
}

/// Every row of a simple query (the text protocol) as its text cells, in the order sent.
pub async fn simple_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// The address of a server's `/metrics` endpoint (started with `--metrics 127.0.0.1:0`).
pub async fn metrics_addr(server: &Server) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(a) = server.logged("metrics") {
            return a;
        }
        assert!(Instant::now() < deadline, "metrics address not logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A counter's value on the `/metrics` endpoint at `addr`.
pub async fn counter(addr: &str, name: &str) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).await.expect("read");
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} on /metrics"))
}

/// The SQLSTATE of a failed statement.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}
