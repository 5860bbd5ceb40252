//! The CQL row store against a real Cassandra (VECTORGATE_TEST_CASSANDRA=host:port; the
//! test script starts one with scripts/dev-cassandra). Without it these tests say so and
//! return: the rest of the suite runs against both row stores.

use scylla::client::session_builder::SessionBuilder;

use super::{Server, cassandra, keyspace_for, simple_rows, sqlstate};

fn skip(name: &str) -> bool {
    if cassandra().is_none() {
        eprintln!("{name}: VECTORGATE_TEST_CASSANDRA is not set; skipped");
        return true;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_through_cql() {
    if skip("every_type_round_trips_through_cql") {
        return;
    }
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE alltypes (k bigint, c int, s smallint, r real, d double precision, b boolean, \
             t text, u uuid, ts timestamp, dt date, ta text[], ia int[], ba bigint[], e vector(3), \
             raw bytea, n numeric(12,3), j jsonb, f8a float8[], f4a real[], boa boolean[], \
             na numeric(6,2)[], ua uuid[], tsa timestamptz[], da date[], sa smallint[], ja jsonb[], \
             bya bytea[], PRIMARY KEY (k, c));
             INSERT INTO alltypes VALUES (1, 2, 3, 1.5, 2.25, true, 'hé', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', \
             '2024-01-02 03:04:05.678', '2024-01-02', '{x,y}', '{1,2}', '{3000000000}', '[1,2,3]', '\\x0aff', -12.5, '{\"k\": 1}', \
             '{0.1,-2.5e-300}', '{1.5}', '{t,f}', '{1.255,-3}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', \
             '{\"2024-01-02 03:04:05.678+00\"}', '{2024-01-02,1969-12-31}', '{-32768,7}', '{\"{\\\"a\\\": [1]}\"}', '{\"\\\\x0aff\"}'),
             (1, 3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '[0,0,1]', NULL, NULL, NULL, \
             NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
        )
        .await
        .expect("create and insert");
    let rows = client
        .simple_query(
            "SELECT k, c, s, r, d, b, t, u, ts, dt, ta, ia, ba, e, raw, n, j, f8a, f4a, boa, na, ua, tsa, da, sa, ja, bya FROM alltypes ORDER BY c",
        )
        .await
        .expect("select");
    let got: Vec<Vec<Option<String>>> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect();
    let first: Vec<Option<&str>> = got[0].iter().map(|x| x.as_deref()).collect();
    assert_eq!(
        first,
        vec![
            Some("1"),
            Some("2"),
            Some("3"),
            Some("1.5"),
            Some("2.25"),
            Some("t"),
            Some("hé"),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            // CQL keeps milliseconds.
            Some("2024-01-02 03:04:05.678"),
            Some("2024-01-02"),
            Some("{x,y}"),
            Some("{1,2}"),
            Some("{3000000000}"),
            Some("[1,2,3]"),
            Some("\\x0aff"),
            Some("-12.500"),
            Some("{\"k\": 1}"),
            // Arrays of every other type, kept as their text.
            Some("{0.1,-2.5e-300}"),
            Some("{1.5}"),
            Some("{t,f}"),
            Some("{1.26,-3.00}"),
            Some("{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"),
            Some("{\"2024-01-02 03:04:05.678+00\"}"),
            Some("{2024-01-02,1969-12-31}"),
            Some("{-32768,7}"),
            Some("{\"{\\\"a\\\": [1]}\"}"),
            Some("{\"\\\\x0aff\"}"),
        ]
    );
    assert!(
        got[1][2..13]
            .iter()
            .chain(&got[1][14..])
            .all(|v| v.is_none()),
        "NULLs come back as NULL: {:?}",
        got[1]
    );

    // The CQL table has the faithful types, and the catalog lives in the keyspace.
    let session = SessionBuilder::new()
        .known_node(cassandra().expect("addr"))
        .build()
        .await
        .expect("cql");
    let ks = keyspace_for(&server.data);
    let res = session
        .query_unpaged(
            "SELECT column_name, type, kind FROM system_schema.columns WHERE keyspace_name = ? AND table_name = 'alltypes'",
            (ks.as_str(),),
        )
        .await
        .expect("schema");
    let mut cols: Vec<(String, String, String)> = res
        .into_rows_result()
        .expect("rows")
        .rows::<(String, String, String)>()
        .expect("typed")
        .map(|r| r.expect("row"))
        .collect();
    cols.sort();
    let find = |n: &str| {
        cols.iter()
            .find(|c| c.0 == n)
            .map(|c| (c.1.as_str(), c.2.as_str()))
    };
    assert_eq!(find("k"), Some(("bigint", "partition_key")));
    assert_eq!(find("c"), Some(("int", "clustering")));
    assert_eq!(find("r"), Some(("float", "regular")));
    assert_eq!(find("ts"), Some(("timestamp", "regular")));
    assert_eq!(find("ta"), Some(("list<text>", "regular")));
    assert_eq!(find("e"), Some(("vector<float, 3>", "regular")));
    assert_eq!(find("raw"), Some(("blob", "regular")));
    assert_eq!(find("n"), Some(("decimal", "regular")));
    assert_eq!(find("j"), Some(("text", "regular")));
    assert_eq!(find("f8a"), Some(("text", "regular")));
    assert_eq!(find("tsa"), Some(("text", "regular")));
    // Kept as Postgres' array text, such an array holds NULL elements and stays empty
    // when empty (a CQL list can do neither), and its timestamps keep microseconds.
    client
        .execute(
            "INSERT INTO alltypes (k, c, e, f8a, ua, tsa) VALUES (2, 1, '[1,0,0]', '{1.5,NULL}', '{}', \
             '{\"2024-01-02 03:04:05.123456+00\",NULL}')",
            &[],
        )
        .await
        .expect("NULL elements");
    let row = client
        .query_one(
            "SELECT f8a::text, ua::text, tsa::text FROM alltypes WHERE k = 2 AND c = 1",
            &[],
        )
        .await
        .expect("read back");
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ),
        (
            "{1.5,NULL}".to_string(),
            "{}".to_string(),
            "{\"2024-01-02 03:04:05.123456+00\",NULL}".to_string()
        )
    );
    let res = session
        .query_unpaged(format!("SELECT name FROM \"{ks}\".vectorgate_catalog"), ())
        .await
        .expect("catalog");
    let names: Vec<String> = res
        .into_rows_result()
        .expect("rows")
        .rows::<(String,)>()
        .expect("typed")
        .map(|r| r.expect("row").0)
        .collect();
    assert_eq!(names, vec!["alltypes".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_proxy_sees_the_tables_of_the_first() {
    if skip("a_second_proxy_sees_the_tables_of_the_first") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ks = keyspace_for(&dir.path().join("shared"));
    let first = Server::start_on(&dir.path().join("a"), &["--keyspace", &ks]);
    let client = first.client().await;
    client
        .batch_execute(
            "CREATE TABLE shared (id int PRIMARY KEY, kind text, e vector(2)) WITH (distance = 'l2');
             INSERT INTO shared VALUES (1, 'x', '[0,0]'), (2, 'y', '[1,0]'), (3, 'x', '[2,0]');",
        )
        .await
        .expect("setup");
    // The second proxy has its own (empty) embedded index: it builds it from the rows.
    let second = Server::start_on(&dir.path().join("b"), &["--keyspace", &ks]);
    let other = second.client().await;
    let rows = other
        .query("SELECT id FROM vector_search('shared', '[1.9,0]', 2) WHERE kind = 'x' ORDER BY distance", &[])
        .await
        .expect("search through the second proxy");
    let ids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![3, 1]);
    let e = other
        .simple_query("CREATE TABLE shared (id int PRIMARY KEY, e vector(2))")
        .await
        .expect_err("the name is taken cluster-wide");
    assert_eq!(sqlstate(&e), "42P07");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_take_serial_keys_from_one_sequence() {
    if skip("two_proxies_take_serial_keys_from_one_sequence") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ks = keyspace_for(&dir.path().join("shared"));
    let first = Server::start_on(&dir.path().join("a"), &["--keyspace", &ks]);
    first
        .client()
        .await
        .batch_execute("CREATE TABLE tickets (id serial PRIMARY KEY, who text)")
        .await
        .expect("create");
    let second = Server::start_on(&dir.path().join("b"), &["--keyspace", &ks]);
    // Two connections to each proxy insert at the same moment; each statement takes
    // three keys from the sequence (the proxies take blocks of it by turns).
    let mut writers = Vec::new();
    for (p, server) in [&first, &second, &first, &second].into_iter().enumerate() {
        let client = server.client().await;
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                let rows = client
                    .query(
                        "INSERT INTO tickets (who) VALUES ($1), ($1), ($1) RETURNING id",
                        &[&format!("w{p}-{i}")],
                    )
                    .await
                    .expect("insert");
                ids.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.expect("writer"));
    }
    let distinct: std::collections::HashSet<i32> = all.iter().copied().collect();
    assert_eq!(all.len(), 300);
    assert_eq!(distinct.len(), all.len(), "a key was handed out twice");
    assert!(all.iter().all(|&id| id >= 1), "keys start at 1");
    let client = second.client().await;
    let stored: Vec<i32> = client
        .query("SELECT id FROM tickets", &[])
        .await
        .expect("scan")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let stored: std::collections::HashSet<i32> = stored.into_iter().collect();
    assert_eq!(stored, distinct, "every acknowledged row is stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_never_store_one_unique_value_twice() {
    if skip("two_proxies_never_store_one_unique_value_twice") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ks = keyspace_for(&dir.path().join("shared"));
    let first = Server::start_on(&dir.path().join("a"), &["--keyspace", &ks]);
    let second = Server::start_on(&dir.path().join("b"), &["--keyspace", &ks]);
    first
        .client()
        .await
        .batch_execute("CREATE TABLE accounts (id serial PRIMARY KEY, email text UNIQUE, who text)")
        .await
        .expect("create");
    // Four connections, two per proxy, try the same 25 addresses at the same moment,
    // each in its own order: each address is stored once, the other tries get 23505.
    let mut writers = Vec::new();
    for (w, server) in [&first, &second, &first, &second].into_iter().enumerate() {
        let client = server.client().await;
        writers.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for i in 0..25 {
                let email = format!("u{}@x", (i * 7 + w * 5) % 25);
                match client
                    .query_one(
                        "INSERT INTO accounts (email, who) VALUES ($1, $2) RETURNING id",
                        &[&email, &format!("w{w}")],
                    )
                    .await
                {
                    Ok(row) => won.push((row.get::<_, i32>(0), email)),
                    Err(e) => assert_eq!(sqlstate(&e), "23505", "{email}: {e}"),
                }
            }
            won
        }));
    }
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.expect("writer"));
    }
    let emails: std::collections::HashSet<&String> = acked.iter().map(|(_, e)| e).collect();
    assert_eq!(
        emails.len(),
        acked.len(),
        "an address was acknowledged twice"
    );
    assert_eq!(acked.len(), 25, "every address is stored once");
    let stored: Vec<(i32, String)> = second
        .client()
        .await
        .query("SELECT id, email FROM accounts", &[])
        .await
        .expect("scan")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut stored_sorted = stored.clone();
    stored_sorted.sort();
    let mut acked_sorted = acked.clone();
    acked_sorted.sort();
    assert_eq!(
        stored_sorted, acked_sorted,
        "the stored rows are the acknowledged ones"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_through_one_proxy_is_seen_by_another_at_its_next_statement() {
    if skip("ddl_through_one_proxy_is_seen_by_another_at_its_next_statement") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ks = keyspace_for(&dir.path().join("shared"));
    let first = Server::start_on(&dir.path().join("a"), &["--keyspace", &ks]);
    let second = Server::start_on(&dir.path().join("b"), &["--keyspace", &ks]);
    let a = first.client().await;
    let b = second.client().await;
    // Both running, both connected, before any of the DDL.
    b.simple_query("SELECT 1").await.expect("b is up");

    // CREATE through A: B writes (extended protocol) and reads (simple) at once.
    a.batch_execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        .await
        .expect("create through a");
    b.execute("INSERT INTO notes VALUES ($1, $2)", &[&1i32, &"one"])
        .await
        .expect("b inserts into a table a created");
    assert_eq!(
        simple_rows(&a, "SELECT id, body FROM notes").await,
        vec![vec![Some("1".into()), Some("one".into())]]
    );

    // ADD COLUMN through A: B's next writes carry it, with its default when left out.
    a.batch_execute("ALTER TABLE notes ADD COLUMN tag text DEFAULT 'new'")
        .await
        .expect("alter through a");
    b.execute(
        "INSERT INTO notes (id, body, tag) VALUES ($1, $2, $3)",
        &[&2i32, &"two", &"mine"],
    )
    .await
    .expect("b writes the new column");
    b.batch_execute("INSERT INTO notes (id, body) VALUES (3, 'three')")
        .await
        .expect("b fills the new column's default");
    assert_eq!(
        simple_rows(&a, "SELECT id, tag FROM notes ORDER BY id").await,
        vec![
            vec![Some("1".into()), Some("new".into())],
            vec![Some("2".into()), Some("mine".into())],
            vec![Some("3".into()), Some("new".into())],
        ]
    );

    // A table with a vector column: B makes its own index of it and searches it; an
    // added column is a filter B can use at once.
    a.batch_execute(
        "CREATE TABLE docs (id int PRIMARY KEY, kind text, e vector(2)) WITH (distance = 'l2')",
    )
    .await
    .expect("create docs through a");
    let points: Vec<(i32, &str, [f32; 2])> = (0..40)
        .map(|i| {
            let kind = if i % 3 == 0 { "x" } else { "y" };
            (i, kind, [(i % 7) as f32, (i / 7) as f32])
        })
        .collect();
    for (id, kind, e) in &points {
        b.execute(
            "INSERT INTO docs VALUES ($1, $2, $3::text::vector)",
            &[id, kind, &format!("[{},{}]", e[0], e[1])],
        )
        .await
        .expect("b inserts into docs");
    }
    a.batch_execute("ALTER TABLE docs ADD COLUMN score int DEFAULT 5")
        .await
        .expect("alter docs through a");
    b.batch_execute("UPDATE docs SET score = 9 WHERE id = 3")
        .await
        .expect("b updates the new column");
    let q = [2.6f32, 1.2];
    let mut oracle: Vec<(f32, i32)> = points
        .iter()
        .filter(|(id, kind, _)| *kind == "x" && *id != 3)
        .map(|(id, _, e)| ((e[0] - q[0]).powi(2) + (e[1] - q[1]).powi(2), *id))
        .collect();
    oracle.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let want: Vec<i32> = oracle.iter().take(4).map(|x| x.1).collect();
    let got: Vec<i32> = b
        .query(
            "SELECT id FROM vector_search('docs', '[2.6,1.2]', 4) WHERE kind = 'x' AND score = 5 ORDER BY distance, id",
            &[],
        )
        .await
        .expect("b searches with a filter on the added column")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(got, want);

    // RENAME and DROP COLUMN through A: B reads under the new name, writes without the
    // dropped column, and refuses it.
    a.batch_execute(
        "ALTER TABLE notes RENAME COLUMN body TO content; ALTER TABLE docs DROP COLUMN kind",
    )
    .await
    .expect("rename and drop through a");
    assert_eq!(
        simple_rows(&b, "SELECT content FROM notes WHERE id = 1").await,
        vec![vec![Some("one".into())]]
    );
    b.execute(
        "INSERT INTO docs (id, e, score) VALUES ($1, '[9,9]', $2)",
        &[&100i32, &1i32],
    )
    .await
    .expect("b writes docs without the dropped column");
    let e = b
        .execute("INSERT INTO docs (id, kind) VALUES ($1, 'x')", &[&101i32])
        .await
        .expect_err("b no longer has the dropped column");
    assert_eq!(sqlstate(&e), "42703");
    assert_eq!(
        simple_rows(&a, "SELECT count(*), sum(score) FROM docs").await,
        vec![vec![Some("41".into()), Some((5 * 39 + 9 + 1).to_string())]]
    );

    // RENAME TO through A: B no longer has the old name, and writes and searches the
    // table's rows and points under the new one; a new table under the old name is
    // another table, for both.
    a.batch_execute("ALTER TABLE docs RENAME TO papers")
        .await
        .expect("rename through a");
    let e = b
        .execute("INSERT INTO docs (id, e) VALUES ($1, '[1,1]')", &[&102i32])
        .await
        .expect_err("the old name is gone for b");
    assert_eq!(sqlstate(&e), "42P01");
    b.execute(
        "INSERT INTO papers (id, e, score) VALUES ($1, '[2.6,1.2]', $2)",
        &[&102i32, &7i32],
    )
    .await
    .expect("b writes under the new name");
    let nearest: Vec<i32> = b
        .query(
            "SELECT id FROM vector_search('papers', '[2.6,1.2]', 2) ORDER BY distance, id",
            &[],
        )
        .await
        .expect("b searches under the new name")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let nearest_stored = oracle_nearest(&points, q);
    assert_eq!(nearest, vec![102, nearest_stored]);
    b.batch_execute(
        "CREATE TABLE docs (id int PRIMARY KEY, e vector(2)); INSERT INTO docs VALUES (1, '[5,5]')",
    )
    .await
    .expect("b makes a table under the old name");
    assert_eq!(
        simple_rows(
            &a,
            "SELECT (SELECT count(*) FROM docs), (SELECT count(*) FROM papers)"
        )
        .await,
        vec![vec![Some("1".into()), Some("42".into())]]
    );

    // A sequence made through A is B's at once; values never repeat across them.
    a.batch_execute("CREATE SEQUENCE tickets")
        .await
        .expect("create sequence through a");
    let from_b: i64 = b
        .query_one("SELECT nextval('tickets')", &[])
        .await
        .expect("b takes a value")
        .get(0);
    let from_a: i64 = a
        .query_one("SELECT nextval('tickets')", &[])
        .await
        .expect("a takes a value")
        .get(0);
    assert_eq!(from_b, 1);
    assert_ne!(from_a, from_b);

    // DROP through A: B no longer has it; a table B creates under the name is A's.
    a.batch_execute("DROP TABLE notes")
        .await
        .expect("drop through a");
    let e = b
        .simple_query("SELECT * FROM notes")
        .await
        .expect_err("the table is gone for b");
    assert_eq!(sqlstate(&e), "42P01");
    let e = b
        .execute("INSERT INTO notes VALUES ($1, $2)", &[&4i32, &"four"])
        .await
        .expect_err("and for b's writes");
    assert_eq!(sqlstate(&e), "42P01");
    b.batch_execute("CREATE TABLE notes (k text PRIMARY KEY); INSERT INTO notes VALUES ('b')")
        .await
        .expect("b makes it again");
    assert_eq!(
        simple_rows(&a, "SELECT * FROM notes").await,
        vec![vec![Some("b".into())]]
    );

    // CREATE SCHEMA through A: B makes a vector table in it and writes it; B's index
    // search and A's scan of the rows (the embedded index of each proxy has only its own
    // writes) find the same nearest row; a table of the same name in public stays apart.
    a.batch_execute("CREATE SCHEMA app")
        .await
        .expect("create schema through a");
    b.batch_execute(
        "CREATE TABLE app.notes (id int PRIMARY KEY, e vector(2)) WITH (distance = 'l2')",
    )
    .await
    .expect("b creates a table in a's schema");
    for (id, _, e) in &points {
        b.execute(
            "INSERT INTO app.notes VALUES ($1, $2::text::vector)",
            &[id, &format!("[{},{}]", e[0], e[1])],
        )
        .await
        .expect("b inserts into app.notes");
    }
    a.batch_execute("SET vectorgate.row_scan = on")
        .await
        .expect("a searches the rows");
    for proxy in [&a, &b] {
        let nearest: i32 = proxy
            .query_one(
                "SELECT id FROM app.notes ORDER BY e <-> '[2.6,1.2]' LIMIT 1",
                &[],
            )
            .await
            .expect("search app.notes")
            .get(0);
        assert_eq!(nearest, oracle_nearest(&points, q));
    }
    assert_eq!(
        simple_rows(&b, "SELECT * FROM notes").await,
        vec![vec![Some("b".into())]]
    );
    // DROP SCHEMA ... CASCADE through B: A no longer has the schema nor its table.
    b.batch_execute("DROP SCHEMA app CASCADE")
        .await
        .expect("drop schema through b");
    let e = a
        .simple_query("SELECT * FROM app.notes")
        .await
        .expect_err("the schema's table is gone for a");
    assert_eq!(sqlstate(&e), "42P01");
    let e = a
        .simple_query("CREATE TABLE app.t (id int PRIMARY KEY)")
        .await
        .expect_err("and the schema");
    assert_eq!(sqlstate(&e), "3F000");

    // CREATE DATABASE through A: B connects to it at once, and each sees the other's
    // table and rows there (a keyspace of its own), apart from the first database.
    a.batch_execute("CREATE DATABASE tenant")
        .await
        .expect("create database through a");
    let a_tenant = first.client_to("tenant").await;
    a_tenant
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t VALUES (1, 'from a')",
        )
        .await
        .expect("a writes in the new database");
    let b_tenant = second.client_to("tenant").await;
    assert_eq!(
        simple_rows(&b_tenant, "SELECT note FROM t").await,
        vec![vec![Some("from a".into())]]
    );
    b_tenant
        .execute("INSERT INTO t VALUES ($1, 'from b')", &[&2i32])
        .await
        .expect("b writes in the new database");
    assert_eq!(
        simple_rows(&a_tenant, "SELECT count(*) FROM t").await,
        vec![vec![Some("2".into())]]
    );
    let e = b
        .simple_query("SELECT * FROM t")
        .await
        .expect_err("the first database has no t");
    assert_eq!(sqlstate(&e), "42P01");
    drop((a_tenant, b_tenant));
}

/// The id of the point nearest `q` by L2 (ties to the lower id).
fn oracle_nearest(points: &[(i32, &str, [f32; 2])], q: [f32; 2]) -> i32 {
    points
        .iter()
        .map(|(id, _, e)| ((e[0] - q[0]).powi(2) + (e[1] - q[1]).powi(2), *id))
        .min_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)))
        .map(|x| x.1)
        .expect("points")
}

fn dev_cassandra(port: u16, verb: &str) {
    let status = std::process::Command::new(super::checkout().join("scripts/dev-cassandra"))
        .arg(verb)
        .env("CASSANDRA_PORT", port.to_string())
        .status()
        .expect("run scripts/dev-cassandra");
    assert!(status.success(), "dev-cassandra {verb} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cassandra_outage_is_reported_and_survived() {
    if skip("a_cassandra_outage_is_reported_and_survived") {
        return;
    }
    // A Cassandra of this test's own, so that stopping it disturbs no other test.
    let port = 19143;
    dev_cassandra(port, "wipe");
    dev_cassandra(port, "start");
    struct StopOnDrop(u16);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            dev_cassandra(self.0, "stop");
        }
    }
    let _guard = StopOnDrop(port);
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{port}");
    let server = Server::start_on(
        &dir.path().join("d"),
        &[
            "--scylla",
            &addr,
            "--keyspace",
            "outage",
            "--scylla-timeout-ms",
            "3000",
        ],
    );
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE o (id int PRIMARY KEY, e vector(2));
             INSERT INTO o VALUES (1, '[1,0]'), (2, '[0,1]');",
        )
        .await
        .expect("setup");

    dev_cassandra(port, "stop");
    for sql in [
        "SELECT count(*) FROM o",
        "SELECT id FROM vector_search('o', '[1,0]', 1)",
        "INSERT INTO o VALUES (3, '[1,1]')",
    ] {
        let e = client
            .query(sql, &[])
            .await
            .expect_err("the row store is down");
        let code = sqlstate(&e);
        assert!(
            code == "08006" || code == "57014",
            "{sql}: got {code}: {e:?}"
        );
        let db = e.as_db_error().expect("a database error");
        assert!(
            db.hint().is_some_and(|h| h.contains("row store")),
            "the hint names the row store: {db:?}"
        );
    }
    let one: i64 = client
        .query_one("SELECT 1::bigint", &[])
        .await
        .expect("the connection survives")
        .get(0);
    assert_eq!(one, 1);

    dev_cassandra(port, "start");
    // The driver reconnects by itself; no restart of the proxy.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let count: i64 = loop {
        match client.query_one("SELECT count(*) FROM o", &[]).await {
            Ok(r) => break r.get(0),
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => panic!("the proxy did not recover: {e}"),
        }
    };
    assert_eq!(count, 2);
    let rows = client
        .query("SELECT id FROM vector_search('o', '[1,0]', 1)", &[])
        .await
        .expect("search again");
    assert_eq!(rows[0].get::<_, i32>(0), 1);
    // Writes go on; the write refused during the outage left nothing behind: the rows
    // are exactly the acknowledged ones, and the index agrees with them point by point.
    for i in 10..30 {
        client
            .execute(&format!("INSERT INTO o VALUES ({i}, '[{i},1]')"), &[])
            .await
            .expect("insert after the outage");
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM o", &[])
        .await
        .expect("count")
        .get(0);
    let r = client
        .query_one(
            "SELECT points, missing, stale, orphaned, duplicates FROM vectorgate_reindex('o', 'verify')",
            &[],
        )
        .await
        .expect("verify");
    let report: (i64, i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    eprintln!(
        "Cassandra stopped mid-stream: writes acknowledged 22, rows {count}, (points, missing, stale, orphans, duplicates) = {report:?}"
    );
    assert_eq!(count, 22);
    assert_eq!(report, (22, 0, 0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_written_over_cql_can_be_attached_and_searched() {
    if skip("tables_written_over_cql_can_be_attached_and_searched") {
        return;
    }
    let addr = cassandra().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let ext = keyspace_for(&dir.path().join("external"));
    let ks = keyspace_for(&dir.path().join("proxy"));
    let session = SessionBuilder::new()
        .known_node(&addr)
        .build()
        .await
        .expect("cql");
    for cql in [
        format!(
            "CREATE KEYSPACE {ext} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        ),
        format!(
            "CREATE TABLE {ext}.items_v (id int PRIMARY KEY, cat text, e vector<float, 3>, extra map<text, text>)"
        ),
        format!(
            "CREATE TABLE {ext}.items_l (id bigint, n int, e list<float>, PRIMARY KEY (id, n))"
        ),
    ] {
        session.query_unpaged(cql, ()).await.expect("schema");
    }
    session.await_schema_agreement().await.expect("agreement");
    let ins_v = session
        .prepare(format!(
            "INSERT INTO {ext}.items_v (id, cat, e) VALUES (?, ?, ?)"
        ))
        .await
        .expect("prepare");
    let ins_l = session
        .prepare(format!(
            "INSERT INTO {ext}.items_l (id, n, e) VALUES (?, ?, ?)"
        ))
        .await
        .expect("prepare");
    let vec_of = |i: i32| vec![(i % 17) as f32, (i % 5) as f32 - 2.0, (i as f32).sin()];
    for i in 0..200i32 {
        let v = vec_of(i);
        let cat = if i % 4 == 0 { "a" } else { "b" };
        session
            .execute_unpaged(
                &ins_v,
                (
                    i,
                    cat,
                    scylla::value::CqlValue::Vector(
                        v.iter()
                            .map(|x| scylla::value::CqlValue::Float(*x))
                            .collect(),
                    ),
                ),
            )
            .await
            .expect("insert v");
        session
            .execute_unpaged(&ins_l, (i as i64, i % 3, v.clone()))
            .await
            .expect("insert l");
    }

    let data = dir.path().join("data");
    let attach = |table: &str, extra: &[&str]| {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_vectorgate"))
            .args([
                "attach",
                "--scylla",
                &addr,
                "--keyspace",
                &ks,
                "--table",
                table,
                "--vector",
                "e",
                "--distance",
                "l2",
                "--data",
            ])
            .arg(&data)
            .args(extra)
            .status()
            .expect("run attach");
        assert!(status.success(), "attach {table}");
    };
    attach(&format!("{ext}.items_v"), &["--key", "id"]);
    attach(
        &format!("{ext}.items_l"),
        &["--dimension", "3", "--name", "listed"],
    );

    let server = Server::start_on(&data, &["--keyspace", &ks]);
    let client = server.client().await;
    let q = vec![3.0f32, -1.0, 0.5];
    let l2 = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| ((*x - *y) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut oracle: Vec<(f64, i32)> = (0..200)
        .filter(|i| i % 4 == 0)
        .map(|i| (l2(&q, &vec_of(i)), i))
        .collect();
    oracle.sort_by(|a, b| a.0.total_cmp(&b.0));
    let rows = client
        .query("SELECT id, distance FROM vector_search('items_v', $1, 5) WHERE cat = 'a' ORDER BY distance", &[&q])
        .await
        .expect("search the attached table");
    let got: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let want: Vec<i32> = oracle.iter().take(5).map(|(_, i)| *i).collect();
    let got_d: Vec<f64> = rows.iter().map(|r| r.get(1)).collect();
    let want_d: Vec<f64> = oracle.iter().take(5).map(|(d, _)| *d).collect();
    for (g, w) in got_d.iter().zip(&want_d) {
        assert!((g - w).abs() < 1e-4, "distances {got_d:?} vs {want_d:?}");
    }
    assert_eq!(got.len(), 5, "{got:?} vs {want:?}");
    let n: i64 = client
        .query_one("SELECT count(*) FROM listed WHERE n = 1", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, (0..200).filter(|i| i % 3 == 1).count() as i64);
    let rows = client
        .query(
            "SELECT id FROM vector_search('listed', $1, 1)",
            &[&vec_of(42)],
        )
        .await
        .expect("search list<float> vectors");
    assert_eq!(rows[0].get::<_, i64>(0), 42);

    // DROP TABLE detaches; the owner's CQL table and rows stay.
    client
        .batch_execute("DROP TABLE items_v")
        .await
        .expect("detach");
    let res = session
        .query_unpaged(format!("SELECT count(*) FROM {ext}.items_v"), ())
        .await
        .expect("count");
    let (count,): (i64,) = res
        .into_rows_result()
        .expect("rows")
        .first_row()
        .expect("row");
    assert_eq!(count, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_partition_key_from_the_table_option() {
    if skip("a_composite_partition_key_from_the_table_option") {
        return;
    }
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE events (tenant text, day date, seq int, e vector(2), PRIMARY KEY (tenant, day, seq)) \
             WITH (partition_key = 'tenant,day', distance = 'l2');
             INSERT INTO events VALUES ('a', '2024-01-01', 1, '[0,0]'), ('a', '2024-01-01', 2, '[1,0]'), \
             ('a', '2024-01-02', 1, '[2,0]'), ('b', '2024-01-01', 1, '[3,0]');",
        )
        .await
        .expect("setup");
    let session = SessionBuilder::new()
        .known_node(cassandra().expect("addr"))
        .build()
        .await
        .expect("cql");
    let res = session
        .query_unpaged(
            "SELECT column_name, kind FROM system_schema.columns WHERE keyspace_name = ? AND table_name = 'events'",
            (keyspace_for(&server.data),),
        )
        .await
        .expect("schema");
    let mut kinds: Vec<(String, String)> = res
        .into_rows_result()
        .expect("rows")
        .rows::<(String, String)>()
        .expect("typed")
        .map(|r| r.expect("row"))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("day".into(), "partition_key".into()),
            ("e".into(), "regular".into()),
            ("seq".into(), "clustering".into()),
            ("tenant".into(), "partition_key".into()),
        ]
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .expect("scan")
        .get(0);
    assert_eq!(n, 4, "the token-range scan covers composite partition keys");
    let rows = client
        .query("SELECT seq FROM vector_search('events', '[1.9,0]', 2) WHERE tenant = 'a' ORDER BY distance", &[])
        .await
        .expect("search");
    let seqs: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(seqs, vec![1, 2]);
    let e = client
        .simple_query("CREATE TABLE bad (a int, b int, e vector(2), PRIMARY KEY (a)) WITH (partition_key = 'b')")
        .await
        .expect_err("partition key outside the primary key");
    assert_eq!(sqlstate(&e), "42P16");
}

/// A keyspace written by an earlier version keeps its outbox in `vectorgate_outbox`
/// (one partition per table). A proxy that opens it moves the pending entries into the
/// bucketed outbox, drops the old table, and replays them: a row whose index write was
/// missed is found by a search that only the index answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_of_an_earlier_version_is_moved_and_replayed() {
    if skip("the_outbox_of_an_earlier_version_is_moved_and_replayed") {
        return;
    }
    let addr = cassandra().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ks = keyspace_for(&data);
    let server = Server::start_on(&data, &[]);
    server
        .client()
        .await
        .batch_execute(
            "CREATE TABLE docs (id bigint PRIMARY KEY, e vector(2)) WITH (distance = 'l2');
             INSERT INTO docs VALUES (1, '[0,0]'), (2, '[1,0]');",
        )
        .await
        .expect("setup");
    drop(server);
    // As the earlier version left it: a row written, its index write missed, its entry
    // pending in the old outbox.
    let session = SessionBuilder::new()
        .known_node(&addr)
        .build()
        .await
        .expect("cql");
    let key = vectorgate::store::keys::encode(&[vectorgate::types::Value::Int(3)]);
    for cql in [
        format!(
            "CREATE TABLE {ks}.vectorgate_outbox (tbl text, key blob, ts bigint, PRIMARY KEY (tbl, key))"
        ),
        format!("INSERT INTO {ks}.docs (id, e) VALUES (3, [5.0, 5.0])"),
    ] {
        session.query_unpaged(cql, ()).await.expect("cql");
    }
    session
        .query_unpaged(
            format!("INSERT INTO {ks}.vectorgate_outbox (tbl, key, ts) VALUES ('docs', ?, 1)"),
            (key,),
        )
        .await
        .expect("old entry");
    session
        .await_schema_agreement()
        .await
        .expect("schema agreement");

    let server = Server::start_on(&data, &[]);
    let client = server.client().await;
    client
        .batch_execute("SET vectorgate.exact = on")
        .await
        .expect("set");
    let hit: i64 = client
        .query_one("SELECT id FROM vector_search('docs', '[5,5]', 1)", &[])
        .await
        .expect("search")
        .get(0);
    assert_eq!(hit, 3, "the moved entry was replayed into the index");
    let old = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'vectorgate_outbox'",
            (ks.as_str(),),
        )
        .await
        .expect("schema")
        .into_rows_result()
        .expect("rows")
        .rows_num();
    assert_eq!(old, 0, "the old outbox is dropped");
    let pending = client
        .simple_query("SHOW vectorgate.sync_status")
        .await
        .expect("sync_status")
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("docs") => {
                r.get(1).map(str::to_string)
            }
            _ => None,
        });
    assert_eq!(pending.as_deref(), Some("0"));
}
