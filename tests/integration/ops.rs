//! Running it: graceful shutdown, idle sessions, limits, metrics and logs.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Server, sqlstate};

/// A client and the handle of its connection task (which ends with the server's FATAL
/// error, if one comes).
async fn client_and_connection(
    server: &Server,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let (client, conn) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    (client, tokio::spawn(conn))
}

/// A `range` length whose count takes about `target` on this machine.
async fn rows_taking(client: &tokio_postgres::Client, target: Duration) -> i64 {
    let mut n: i64 = 1_000_000;
    loop {
        let started = Instant::now();
        client
            .query_one(&format!("SELECT count(*) FROM range({n})"), &[])
            .await
            .expect("calibrate");
        let took = started.elapsed();
        if took >= Duration::from_millis(250) || n > 4_000_000_000 {
            let scale = target.as_secs_f64() / took.as_secs_f64();
            return ((n as f64) * scale) as i64;
        }
        n *= 4;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_statements_finish_and_exits_zero() {
    let mut server = Server::start_args(&["--shutdown-timeout-ms", "30000"]);
    let (idle, idle_conn) = client_and_connection(&server).await;
    let (busy, _busy_conn) = client_and_connection(&server).await;
    idle.batch_execute(
        "CREATE TABLE kept (id bigint PRIMARY KEY, embedding vector(2)); \
         INSERT INTO kept VALUES (1, '[1,0]')",
    )
    .await
    .expect("write");
    let n = rows_taking(&busy, Duration::from_secs(3)).await;
    let running = tokio::spawn(async move {
        busy.query_one(&format!("SELECT count(*) FROM range({n})"), &[])
            .await
            .map(|r| r.get::<_, i64>(0))
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    server.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connections.
    assert!(
        tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
            .await
            .is_err(),
        "a new connection after SIGTERM must fail"
    );
    // The idle session is told why it is closed.
    let e = tokio::time::timeout(Duration::from_secs(10), idle_conn)
        .await
        .expect("idle connection closed")
        .expect("task")
        .expect_err("FATAL");
    assert_eq!(sqlstate(&e), "57P01", "{e:?}");
    // The running statement completes with its answer.
    let counted = running
        .await
        .expect("task")
        .expect("the running statement finishes");
    assert_eq!(counted, n);
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    eprintln!(
        "statement of {n} rows finished; server exited {:?} after SIGTERM",
        signalled.elapsed()
    );
    assert!(
        server
            .log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains("shut down cleanly"))
    );
    // The data is there after a restart.
    let again = Server::start_on(&server.data, &[]);
    let c = again.client().await;
    let ids = c
        .query("SELECT id FROM vector_search('kept', '[1,0]', 1)", &[])
        .await
        .expect("search after restart");
    assert_eq!(ids.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_deadline_bounds_the_wait() {
    let mut server = Server::start_args(&["--shutdown-timeout-ms", "500"]);
    let (busy, _conn) = client_and_connection(&server).await;
    let running = tokio::spawn(async move {
        busy.query_one("SELECT count(*) FROM range(300000000000)", &[])
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = Instant::now();
    server.signal("-INT");
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    assert!(signalled.elapsed() < Duration::from_secs(20));
    assert!(running.await.expect("task").is_err());
    assert!(
        server
            .log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains("shutdown deadline passed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_closed_with_57p05_and_busy_ones_are_not() {
    let server = Server::start_args(&["--idle-session-timeout-ms", "600"]);
    let (idle, idle_conn) = client_and_connection(&server).await;
    let (busy, _busy_conn) = client_and_connection(&server).await;
    idle.query_one("SELECT 1", &[]).await.expect("first");
    for i in 0..8 {
        let v: i32 = busy
            .query_one("SELECT $1::int", &[&i])
            .await
            .expect("a session in use stays open")
            .get(0);
        assert_eq!(v, i);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let e = tokio::time::timeout(Duration::from_secs(10), idle_conn)
        .await
        .expect("closed")
        .expect("task")
        .expect_err("FATAL");
    assert_eq!(sqlstate(&e), "57P05", "{e:?}");
    assert!(idle.query_one("SELECT 1", &[]).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_and_result_limits_have_their_own_sqlstates() {
    let server = Server::start_args(&[
        "--max-query-length",
        "200",
        "--max-result-rows",
        "5",
        "--max-result-bytes",
        "2000",
        "--statement-timeout-ms",
        "300",
        "--max-k",
        "50",
        "--max-copy-bytes",
        "1000",
    ]);
    let client = server.client().await;
    let long = format!("SELECT '{}'", "y".repeat(300));
    let e = client.simple_query(&long).await.expect_err("too long");
    assert_eq!(sqlstate(&e), "54000", "{e:?}");
    let e = client.query(&long, &[]).await.expect_err("too long");
    assert_eq!(sqlstate(&e), "54000", "{e:?}");
    for sql in [
        "SELECT * FROM range(10)",
        "SELECT repeat('x', 1000) FROM range(3)",
    ] {
        let e = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "54000", "extended {sql}: {e:?}");
        let e = client.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "54000", "simple {sql}: {e:?}");
    }
    let rows = client
        .query("SELECT * FROM range(5)", &[])
        .await
        .expect("at the limit");
    assert_eq!(rows.len(), 5);
    // The server's statement timeout applies until the session sets its own.
    let e = client
        .query_one("SELECT count(*) FROM range(3000000000)", &[])
        .await
        .expect_err("timeout");
    assert_eq!(sqlstate(&e), "57014");
    let shown = client
        .simple_query("SHOW statement_timeout")
        .await
        .expect("show");
    assert!(shown.iter().any(
        |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("300"))
    ));
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .expect("set");
    let n: i64 = client
        .query_one("SELECT count(*) FROM range(20000)", &[])
        .await
        .expect("no timeout")
        .get(0);
    assert_eq!(n, 20000);
    // Max k.
    client
        .batch_execute("CREATE TABLE t (id bigint PRIMARY KEY, embedding vector(2))")
        .await
        .expect("create");
    let e = client
        .query("SELECT id FROM vector_search('t', '[1,0]', 51)", &[])
        .await
        .expect_err("k over max_k");
    assert_eq!(sqlstate(&e), "22023", "{e:?}");
    // A COPY over max_copy_bytes fails (this one in its first message, so nothing of it
    // is written); a smaller one goes through.
    async fn copy(
        client: &tokio_postgres::Client,
        rows: i64,
    ) -> Result<u64, tokio_postgres::Error> {
        use futures::SinkExt;
        let text: String = (0..rows).map(|i| format!("{i}\t[{i},1]\n")).collect();
        let sink = client.copy_in("COPY t FROM STDIN").await?;
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(text)).await?;
        sink.finish().await
    }
    let e = copy(&client, 200).await.expect_err("over max_copy_bytes");
    assert_eq!(sqlstate(&e), "54000", "{e:?}");
    assert_eq!(copy(&client, 20).await.expect("small COPY"), 20);
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 20);
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("alive")
        .get(0);
    assert_eq!(one, 1);
}

async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).await.expect("read");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of a metric line that starts with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_json_logs_and_the_slow_query_log() {
    let server = Server::start_args(&[
        "--metrics",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--slow-query-ms",
        "1",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        if let Some(a) = server.logged("metrics") {
            break a;
        }
        assert!(Instant::now() < deadline, "metrics address not logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE m (id bigint PRIMARY KEY, embedding vector(2)); \
             INSERT INTO m VALUES (1, '[1,0]'), (2, '[0,1]')",
        )
        .await
        .expect("setup");
    for _ in 0..7 {
        client
            .query("SELECT id FROM vector_search('m', '[1,0]', 1)", &[])
            .await
            .expect("search");
    }
    let _ = client.simple_query("SELECT * FROM nosuch").await;
    let _ = client.query("SELECT * FROM nosuch", &[]).await;
    let (status, text) = http_get(&addr, "/metrics").await;
    assert_eq!(status, 200);
    let searches = metric(
        &text,
        "vectorgate_queries_total{kind=\"search\",outcome=\"ok\"}",
    )
    .expect("search counter");
    assert!(searches >= 7.0, "{searches}\n{text}");
    let errors = metric(
        &text,
        "vectorgate_queries_total{kind=\"select\",outcome=\"error\"}",
    )
    .expect("error counter");
    assert!(errors >= 1.0, "{text}");
    assert!(metric(&text, "vectorgate_connections ").expect("gauge") >= 1.0);
    assert_eq!(
        metric(&text, "vectorgate_index_breaker{state=\"closed\"}"),
        Some(1.0)
    );
    assert!(metric(&text, "vectorgate_index_pending_writes{table=\"m\"}").is_some());
    assert!(
        metric(
            &text,
            "vectorgate_query_duration_seconds_count{kind=\"search\"}"
        )
        .expect("histogram")
            >= 7.0
    );
    assert!(
        metric(
            &text,
            "vectorgate_backend_duration_seconds_count{store=\"vector_index\",op=\"search\"}"
        )
        .expect("backend histogram")
            >= 7.0,
        "{text}"
    );
    assert_eq!(http_get(&addr, "/healthz").await.0, 200);
    let (ready, body) = http_get(&addr, "/readyz").await;
    assert_eq!(ready, 200, "{body}");
    assert_eq!(http_get(&addr, "/nope").await.0, 404);
    // Every log line is one JSON object; statements over 1 ms are logged with their SQL.
    let lines = server.log.lock().expect("log").clone();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    let slow: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "slow statement")
        .collect();
    assert!(
        slow.iter().any(|v| v["sql"]
            .as_str()
            .is_some_and(|s| s.contains("vector_search('m'"))),
        "{slow:?}"
    );
    assert!(slow.iter().all(|v| v["duration_ms"].as_f64().is_some()));
}
