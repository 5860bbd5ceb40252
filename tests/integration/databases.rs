//! Databases over the wire: `CREATE DATABASE` makes one with stores of its own, a
//! connection whose startup packet names it uses it (tables, vectors, searches apart
//! from the server's own database), `pg_database` and `current_database()` say so,
//! `DROP DATABASE` refuses while it is in use and otherwise removes it with its tables.
//! Runs on whichever stores the pass gives (embedded, Cassandra, a Qdrant server).

use std::time::{Duration, Instant};

use super::{Server, sqlstate};

async fn texts(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_are_made_used_listed_and_dropped() {
    let server = Server::start();
    let main = server.client().await;
    main.batch_execute(
        "CREATE TABLE docs (id int PRIMARY KEY, note text); INSERT INTO docs VALUES (1, 'main')",
    )
    .await
    .expect("the server's own database");
    main.batch_execute("CREATE DATABASE tenant_a")
        .await
        .expect("create database");
    let e = main
        .batch_execute("CREATE DATABASE tenant_a")
        .await
        .expect_err("a second time");
    assert_eq!(sqlstate(&e), "42P04");
    main.batch_execute("CREATE DATABASE IF NOT EXISTS tenant_a")
        .await
        .expect("IF NOT EXISTS skips it");

    let a = server.client_to("tenant_a").await;
    assert_eq!(
        texts(&a, "SELECT current_database()::text").await,
        ["tenant_a"]
    );
    let e = a
        .query("SELECT * FROM docs", &[])
        .await
        .expect_err("the new database has none of the server's tables");
    assert_eq!(sqlstate(&e), "42P01");

    // A table of the same name, with vectors, searched against an exact oracle.
    a.batch_execute(
        "CREATE TABLE docs (id int PRIMARY KEY, kind text, e vector(3)) WITH (distance = 'l2')",
    )
    .await
    .expect("a table in tenant_a");
    let points: Vec<(i32, &str, [f32; 3])> = (0..60)
        .map(|i| {
            let kind = if i % 3 == 0 { "x" } else { "y" };
            let f = i as f32;
            (
                i,
                kind,
                [(f * 0.37).sin(), (f * 0.71).cos(), (f % 5.0) / 5.0],
            )
        })
        .collect();
    for (id, kind, e) in &points {
        a.execute(
            "INSERT INTO docs VALUES ($1, $2, $3::text::vector)",
            &[id, kind, &format!("[{},{},{}]", e[0], e[1], e[2])],
        )
        .await
        .expect("insert into tenant_a");
    }
    let q = [0.2f32, -0.4, 0.5];
    let mut oracle: Vec<(f32, i32)> = points
        .iter()
        .filter(|(_, kind, _)| *kind == "x")
        .map(|(id, _, e)| {
            let d: f32 = e.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
            (d, *id)
        })
        .collect();
    oracle.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let want: Vec<i32> = oracle.iter().take(5).map(|x| x.1).collect();
    let got: Vec<i32> = a
        .query(
            "SELECT id FROM docs WHERE kind = $1 ORDER BY e <-> $2::text::vector LIMIT 5",
            &[&"x", &"[0.2,-0.4,0.5]"],
        )
        .await
        .expect("search tenant_a")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got, want);

    // The server's own database is untouched, and lists both.
    assert_eq!(texts(&main, "SELECT note FROM docs").await, ["main"]);
    let listed = texts(
        &main,
        "SELECT datname::text FROM pg_database WHERE datname NOT IN ('postgres', 'vectorgate') ORDER BY 1",
    )
    .await;
    assert_eq!(listed, ["tenant_a"]);

    // Not while a session uses it, nor from inside it.
    let e = main
        .batch_execute("DROP DATABASE tenant_a")
        .await
        .expect_err("in use");
    assert_eq!(sqlstate(&e), "55006");
    let e = a
        .batch_execute("DROP DATABASE tenant_a")
        .await
        .expect_err("the current database");
    assert_eq!(sqlstate(&e), "55006");
    drop(a);
    // Once its session has ended (the server notices the closed socket).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match main.batch_execute("DROP DATABASE tenant_a").await {
            Ok(()) => break,
            Err(e) if sqlstate(&e) == "55006" && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("drop database: {e}"),
        }
    }
    assert!(
        texts(&main, "SELECT datname::text FROM pg_database")
            .await
            .iter()
            .all(|d| d != "tenant_a")
    );
    let e = main
        .batch_execute("DROP DATABASE tenant_a")
        .await
        .expect_err("gone");
    assert_eq!(sqlstate(&e), "3D000");
    main.batch_execute("DROP DATABASE IF EXISTS tenant_a")
        .await
        .expect("IF EXISTS skips it");

    // Made again under the name, it is empty.
    main.batch_execute("CREATE DATABASE tenant_a")
        .await
        .expect("create it again");
    let again = server.client_to("tenant_a").await;
    let e = again
        .query("SELECT * FROM docs", &[])
        .await
        .expect_err("a new database has no tables");
    assert_eq!(sqlstate(&e), "42P01");
    assert_eq!(texts(&main, "SELECT note FROM docs").await, ["main"]);
}
