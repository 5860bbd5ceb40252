//! Bad input gets the right SQLSTATE in both protocols, the connection stays usable,
//! and nothing already stored is damaged.

use super::{Server, sqlstate};

async fn expect_code(client: &tokio_postgres::Client, sql: &str, code: &str) {
    // Simple protocol.
    let e = client.simple_query(sql).await.expect_err(sql);
    assert_eq!(sqlstate(&e), code, "simple: {sql}: {e}");
    // Extended protocol (Parse/Describe/Bind/Execute).
    let e = client.query(sql, &[]).await.expect_err(sql);
    assert_eq!(sqlstate(&e), code, "extended: {sql}: {e}");
    // The connection still answers.
    let one: i64 = client
        .query_one("SELECT 1::bigint", &[])
        .await
        .expect("still usable")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstates_and_keep_the_connection() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id bigint PRIMARY KEY, name text, embedding vector(3));
             CREATE TABLE rowsonly (id int PRIMARY KEY, name text);
             INSERT INTO t VALUES (1, 'one', '[1,0,0]'), (2, 'two', '[0,1,0]');",
        )
        .await
        .expect("setup");

    let cases = [
        ("SELECT * FROM nope", "42P01"),
        ("INSERT INTO nope VALUES (1)", "42P01"),
        ("SELECT * FROM vector_search('nope', '[1,0,0]', 3)", "42P01"),
        ("DROP TABLE nope", "42P01"),
        ("SELECT nope FROM t", "42703"),
        ("INSERT INTO t (id, nope) VALUES (5, 1)", "42703"),
        ("INSERT INTO t VALUES (5, 'x', '[1,2]')", "22000"),
        ("INSERT INTO t VALUES (5, 'x', '[1,NaN,2]')", "22000"),
        ("INSERT INTO t VALUES (5, 'x', '[1,x,2]')", "22P02"),
        ("INSERT INTO t VALUES (5, 'x', 'not a vector')", "22P02"),
        ("SELECT * FROM vector_search('t', '[1,0]', 3)", "22000"),
        (
            "SELECT * FROM vector_search('t', '[1,Infinity,0]', 3)",
            "22000",
        ),
        ("SELECT * FROM vector_search('t', '[1,0,0]', 0)", "22023"),
        (
            "SELECT * FROM vector_search('t', '[1,0,0]', 10001)",
            "22023",
        ),
        (
            "SELECT * FROM vector_search('rowsonly', '[1,0,0]', 1)",
            "42809",
        ),
        ("CREATE TABLE sys (id int PRIMARY KEY, xmin int)", "42701"),
        (
            "CREATE TABLE badtype (id int PRIMARY KEY, a vector(2), g geometry)",
            "42704",
        ),
        (
            "CREATE TABLE baddist (id int PRIMARY KEY, a vector(2)) WITH (distance = 'manhattan')",
            "22023",
        ),
        ("CREATE TABLE t (id int PRIMARY KEY, a vector(2))", "42P07"),
        ("SELEC 1", "42601"),
        ("SELECT * FROM", "42601"),
        ("INSERT INTO t VALUES (1, 'dup', '[0,0,1]')", "23505"),
        (
            "INSERT INTO t VALUES (3, 'x', '[0,0,1]'), (4, 'y', '[0,0,1]'), (2, 'dup', '[0,0,1]')",
            "23505",
        ),
        (
            "INSERT INTO t (name, embedding) VALUES ('nokey', '[0,0,1]')",
            "23502",
        ),
        ("UPDATE t SET id = 2 WHERE id = 1", "23505"),
        ("CREATE VIEW v AS SELECT 1", "0A000"),
    ];
    for (sql, code) in cases {
        expect_code(&client, sql, code).await;
    }

    // Nothing stored was damaged: the failed multi-row insert left no row behind.
    let rows = client
        .query("SELECT id, name FROM t ORDER BY id", &[])
        .await
        .expect("select");
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, "one".to_string()), (2, "two".to_string())]);
    let hits = client
        .query("SELECT id FROM vector_search('t', '[0,0,1]', 10)", &[])
        .await
        .expect("search");
    assert_eq!(
        hits.len(),
        2,
        "the index holds no point of a failed statement"
    );

    // A failing statement in a multi-statement simple query stops the rest, and undoes
    // the ones before it: the string is one implicit transaction, as in Postgres.
    let e = client
        .simple_query("INSERT INTO t VALUES (7, 'seven', '[1,1,1]'); SELECT * FROM nope; INSERT INTO t VALUES (8, 'eight', '[1,1,1]')")
        .await
        .expect_err("second statement fails");
    assert_eq!(sqlstate(&e), "42P01");
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        n, 2,
        "the statement before the error is undone, the one after never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_k_is_configurable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_on(&dir.path().join("d"), &["--max-k", "5"]);
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, e vector(2))")
        .await
        .expect("create");
    client
        .query("SELECT * FROM vector_search('t', '[1,1]', 5)", &[])
        .await
        .expect("k = max is fine");
    expect_code(
        &client,
        "SELECT * FROM vector_search('t', '[1,1]', 6)",
        "22023",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_environment_and_config_file() {
    use std::process::Command;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("vectorgate.toml");
    std::fs::write(&config, "max_k = 3\n").expect("write config");
    // The file sets max_k; the environment sets the data directory.
    let data = dir.path().join("from-env");
    let child = Command::new(env!("CARGO_BIN_EXE_vectorgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .args(super::backend_args(&data, &[]))
        .env("VECTORGATE_DATA", &data)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut server = super::Server::adopt(child, &data);
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, e vector(2))")
        .await
        .expect("create");
    expect_code(
        &client,
        "SELECT * FROM vector_search('t', '[1,1]', 4)",
        "22023",
    )
    .await;
    // The server says which data directory it uses (with rows and vectors both in
    // external stores it keeps nothing there, so the files cannot tell).
    let reported = server
        .log
        .lock()
        .expect("log")
        .iter()
        .find_map(|l| super::log_field(l, "data"));
    assert_eq!(
        reported.as_deref(),
        data.to_str(),
        "VECTORGATE_DATA chose the data directory"
    );
    if super::qdrant().is_none() && super::cassandra().is_none() {
        assert!(data.join("vectors").exists() && data.join("rows.redb").exists());
    }
    server.stop(true);
    // A flag wins over the file.
    let server = super::Server::start_on(
        &data,
        &["--config", config.to_str().expect("utf8"), "--max-k", "4"],
    );
    let client = server.client().await;
    client
        .query("SELECT * FROM vector_search('t', '[1,1]', 4)", &[])
        .await
        .expect("flag wins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_with_53300() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start_on(&dir.path().join("data"), &["--max-connections", "2"]);
    let a = server.client().await;
    let b = server.client().await;
    let e = match tokio_postgres::connect(&server.url(), tokio_postgres::NoTls).await {
        Ok(_) => panic!("a third connection should be refused"),
        Err(e) => e,
    };
    assert_eq!(super::sqlstate(&e), "53300", "{e:?}");
    // psql (which asks for SSL first) gets the same answer.
    let out = std::process::Command::new("psql")
        .arg(server.url())
        .args(["-X", "-c", "SELECT 1"])
        .output()
        .expect("psql");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("too many clients"), "{text}");
    // The two sessions work, and a slot frees when one ends.
    let one: i64 = a
        .query_one("SELECT 1::bigint", &[])
        .await
        .expect("a")
        .get(0);
    assert_eq!(one, 1);
    drop(b);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match tokio_postgres::connect(&server.url(), tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                let two: i64 = c
                    .query_one("SELECT 2::bigint", &[])
                    .await
                    .expect("c")
                    .get(0);
                assert_eq!(two, 2);
                break;
            }
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the freed slot was not reused: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_cancels_slow_statements_with_57014() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute("SET statement_timeout = 300")
        .await
        .expect("set");
    for (name, simple) in [("extended", false), ("simple", true)] {
        let started = std::time::Instant::now();
        let sql = "SELECT count(*) FROM range(3000000000)";
        let e = if simple {
            client.simple_query(sql).await.map(|_| ()).expect_err(name)
        } else {
            client
                .query_one(sql, &[])
                .await
                .map(|_| ())
                .expect_err(name)
        };
        assert_eq!(super::sqlstate(&e), "57014", "{name}: {e:?}");
        assert!(
            e.to_string().contains("statement timeout")
                || format!("{e:?}").contains("statement timeout"),
            "{e:?}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{name}"
        );
    }
    let v = client
        .simple_query("SHOW statement_timeout")
        .await
        .expect("show");
    assert!(v.iter().any(
        |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("300"))
    ));
    let e = client
        .batch_execute("SET statement_timeout = 'soon'")
        .await
        .expect_err("bad value");
    assert_eq!(super::sqlstate(&e), "22023");
    client
        .batch_execute("SET statement_timeout = '1min'")
        .await
        .expect("units");
    client
        .batch_execute("RESET statement_timeout")
        .await
        .expect("reset");
    let n: i64 = client
        .query_one("SELECT count(*) FROM range(1000)", &[])
        .await
        .expect("no timeout")
        .get(0);
    assert_eq!(n, 1000);
}

/// Messages worded as PostgreSQL 15 words them (checked against it by hand: these
/// statements need pgvector or are refused before any data is touched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_read_as_postgres_writes_them() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE mt (id int PRIMARY KEY, body text)")
        .await
        .expect("setup");
    let cases = [
        (
            "VACUUM mt (body)",
            "0A000",
            "ANALYZE option must be specified when a column list is provided",
        ),
        (
            "VACUUM ANALYZE mt (nosuch)",
            "42703",
            "column \"nosuch\" of relation \"mt\" does not exist",
        ),
        (
            "DROP INDEX mt_pkey",
            "2BP01",
            "cannot drop index mt_pkey because constraint mt_pkey on table mt requires it",
        ),
        (
            "CREATE TABLE ts (id int PRIMARY KEY, tsv TSVECTOR)",
            "42704",
            "type \"tsvector\" does not exist",
        ),
    ];
    for (sql, code, message) in cases {
        for extended in [false, true] {
            let e = if extended {
                client.query(sql, &[]).await.map(|_| ()).expect_err(sql)
            } else {
                client.simple_query(sql).await.map(|_| ()).expect_err(sql)
            };
            let db = e.as_db_error().expect("a database error");
            assert_eq!((db.code().code(), db.message()), (code, message), "{sql}");
        }
    }
}
