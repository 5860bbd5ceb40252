//! The extended protocol: named and unnamed statements, parameters in binary and text,
//! binary results, and the key types (bigint, int, text, uuid, composite).

use tokio_postgres::types::Type;

use super::{PgVector, Server, simple_column};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_with_binary_and_text_parameters() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE docs (id bigint PRIMARY KEY, title text, year int, score double precision, \
             ok boolean, tags text[], made timestamp, day date, embedding vector(3)) WITH (distance = 'cosine')",
        )
        .await
        .expect("create");

    // A named statement, executed several times with binary parameters.
    let ins = client
        .prepare("INSERT INTO docs (id, title, year, score, ok, tags, embedding) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .await
        .expect("prepare insert");
    // Each parameter is described as its column's type, `vector` too (as Postgres with
    // pgvector does).
    assert_eq!(
        &ins.params()[..6],
        &[
            Type::INT8,
            Type::TEXT,
            Type::INT4,
            Type::FLOAT8,
            Type::BOOL,
            Type::TEXT_ARRAY,
        ]
    );
    assert_eq!(ins.params()[6].name(), "vector");
    for i in 0..20i64 {
        let tags = vec![format!("t{}", i % 3), "all".to_string()];
        let v: Vec<f32> = vec![1.0, i as f32 / 10.0, 0.5];
        let n = client
            .execute(
                &ins,
                &[
                    &i,
                    &format!("title {i}"),
                    &(2000 + i as i32),
                    &(i as f64 * 1.5),
                    &(i % 2 == 0),
                    &tags,
                    &PgVector(v.clone()),
                ],
            )
            .await
            .expect("insert");
        assert_eq!(n, 1);
    }

    // Text parameters through an unnamed statement with declared types.
    client
        .query_typed(
            "INSERT INTO docs (id, title, made, day, embedding) VALUES ($1, $2, $3, $4, $5)",
            &[
                (&"100", Type::TEXT),
                (&"it's text", Type::TEXT),
                (&"2024-05-06 07:08:09", Type::TEXT),
                (&"2024-05-06", Type::TEXT),
                (&"[0.5, 0.5, 0.5]", Type::TEXT),
            ],
        )
        .await
        .expect("insert text params");

    // Binary results of every column type.
    let row = client
        .query_one(
            "SELECT id, title, year, score, ok, tags FROM docs WHERE id = $1",
            &[&4i64],
        )
        .await
        .expect("select");
    assert_eq!(row.get::<_, i64>(0), 4);
    assert_eq!(row.get::<_, String>(1), "title 4");
    assert_eq!(row.get::<_, i32>(2), 2004);
    assert_eq!(row.get::<_, f64>(3), 6.0);
    assert!(row.get::<_, bool>(4));
    assert_eq!(
        row.get::<_, Vec<String>>(5),
        vec!["t1".to_string(), "all".to_string()]
    );
    let row = client
        .query_one("SELECT title, made, day FROM docs WHERE id = 100", &[])
        .await
        .expect("select");
    assert_eq!(row.get::<_, String>(0), "it's text");
    let made: chrono::NaiveDateTime = row.get(1);
    assert_eq!(made.to_string(), "2024-05-06 07:08:09");
    let day: chrono::NaiveDate = row.get(2);
    assert_eq!(day.to_string(), "2024-05-06");

    // The same search prepared once, run with different parameters.
    let search = client
        .prepare("SELECT id, distance FROM vector_search('docs', $1, $2) WHERE ok = $3 AND year >= $4 ORDER BY distance")
        .await
        .expect("prepare search");
    assert_eq!(
        search.params(),
        &[Type::FLOAT4_ARRAY, Type::INT8, Type::BOOL, Type::INT4]
    );
    assert_eq!(search.columns()[1].type_(), &Type::FLOAT8);
    let q: Vec<f32> = vec![1.0, 0.0, 0.5];
    let rows = client
        .query(&search, &[&q, &3i64, &true, &2004i32])
        .await
        .expect("search");
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![4, 6, 8]);
    let rows = client
        .query(&search, &[&q, &2i64, &false, &2000i32])
        .await
        .expect("search");
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 3]);

    // UPDATE and DELETE with parameters.
    let n = client
        .execute(
            "UPDATE docs SET title = $1 WHERE id = $2",
            &[&"renamed", &3i64],
        )
        .await
        .expect("update");
    assert_eq!(n, 1);
    let n = client
        .execute("DELETE FROM docs WHERE year < $1", &[&2005i32])
        .await
        .expect("delete");
    assert_eq!(n, 5);
    let count: i64 = client
        .query_one("SELECT count(*) FROM docs", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 16);

    // Ordinary SQL over the table: aggregates, joins, CTEs, ORDER BY, LIMIT/OFFSET.
    let rows = client
        .query(
            "WITH s AS (SELECT id, year FROM docs WHERE year IS NOT NULL) \
             SELECT a.id, b.year FROM s a JOIN docs b ON a.id = b.id ORDER BY a.id DESC LIMIT 3 OFFSET 1",
            &[],
        )
        .await
        .expect("cte join");
    let got: Vec<(i64, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(18, 2018), (17, 2017), (16, 2016)]);
    let row = client
        .query_one(
            "SELECT ok, count(*), sum(year) FROM docs WHERE ok GROUP BY ok",
            &[],
        )
        .await
        .expect("aggregate");
    assert_eq!(row.get::<_, i64>(1), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_uuid_int_and_composite_keys() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE by_text (k text PRIMARY KEY, e vector(2));
             CREATE TABLE by_uuid (k uuid PRIMARY KEY, e vector(2));
             CREATE TABLE by_int (k int PRIMARY KEY, e vector(2));
             CREATE TABLE by_pair (tenant text, n bigint, e vector(2), PRIMARY KEY (tenant, n)) WITH (distance = 'l2');
             INSERT INTO by_text VALUES ('a', '[1,0]'), ('b', '[0,1]');
             INSERT INTO by_uuid VALUES ('6f1c3e52-3f4b-4c1e-9a34-6f0c2b1d2e3f', '[1,0]'), ('00000000-0000-0000-0000-000000000002', '[0,1]');
             INSERT INTO by_int VALUES (-5, '[1,0]'), (7, '[0,1]');
             INSERT INTO by_pair VALUES ('x', 1, '[0,0]'), ('x', 2, '[1,1]'), ('y', 1, '[2,2]');",
        )
        .await
        .expect("setup");
    let one = |sql: &'static str| {
        let c = &client;
        async move {
            let rows = c
                .simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some(r.get(0).unwrap_or("NULL").to_string())
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        one("SELECT k FROM vector_search('by_text', '[0,1]', 1)").await,
        vec!["b"]
    );
    assert_eq!(
        one("SELECT k FROM vector_search('by_uuid', '[1,0.1]', 1)").await,
        vec!["6f1c3e52-3f4b-4c1e-9a34-6f0c2b1d2e3f"]
    );
    assert_eq!(
        one("SELECT k FROM vector_search('by_int', '[1,0.1]', 1)").await,
        vec!["-5"]
    );
    assert_eq!(one("SELECT k FROM by_int WHERE k = -5").await, vec!["-5"]);
    assert_eq!(one("SELECT n FROM vector_search('by_pair', '[1,1]', 3) WHERE tenant = 'x' ORDER BY distance").await, vec!["2", "1"]);
    assert_eq!(
        one("SELECT tenant FROM by_pair WHERE n = 1 ORDER BY tenant").await,
        vec!["x", "y"]
    );
    client
        .batch_execute("DELETE FROM by_pair WHERE tenant = 'x' AND n = 2")
        .await
        .expect("delete");
    assert_eq!(
        one("SELECT n FROM vector_search('by_pair', '[1,1]', 3) WHERE tenant = 'x'").await,
        vec!["1"]
    );
    let e = client
        .simple_query("INSERT INTO by_pair VALUES ('y', 1, '[0,0]')")
        .await
        .expect_err("duplicate composite key");
    assert_eq!(super::sqlstate(&e), "23505");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_pushed_and_residual_predicates() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE docs (id bigint PRIMARY KEY, title text, category text, year int, embedding vector(2))")
        .await
        .expect("create");
    for protocol in ["simple", "extended"] {
        let sql = "EXPLAIN SELECT id FROM vector_search('docs', '[1,0]', 5) \
                   WHERE category = 'ml' AND year >= 2020 AND title LIKE 'a%' ORDER BY distance";
        let text: String = if protocol == "simple" {
            client
                .simple_query(sql)
                .await
                .expect("explain")
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some(r.get(1).unwrap_or("").to_string())
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            client
                .query(sql, &[])
                .await
                .expect("explain")
                .iter()
                .map(|r| r.get::<_, String>(1))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(
            text.contains("VectorSearchExec: table=docs, k=5"),
            "{protocol}: {text}"
        );
        assert!(
            text.contains("pushed_filter=(category = 'ml' AND year >= 2020)"),
            "{protocol}: {text}"
        );
        assert!(
            text.contains("after_join=[title LIKE"),
            "{protocol}: {text}"
        );
        assert!(
            text.contains("FilterExec: title"),
            "{protocol}: the residual is applied above the search: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_columns_are_described_as_pgvector_vectors() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE v (id int PRIMARY KEY, e vector(3)); INSERT INTO v VALUES (1, '[1,2.5,-3]')")
        .await
        .expect("setup");
    // tokio-postgres resolves the unknown type through the pg_type catalog.
    let stmt = client
        .prepare("SELECT id, e FROM v")
        .await
        .expect("prepare");
    assert_eq!(stmt.columns()[1].type_().name(), "vector");
    // In text format the vector reads as pgvector writes it.
    let text = simple_column(&client, "SELECT e FROM v", 0).await;
    assert_eq!(text, ["[1,2.5,-3]"]);
}

/// A catalog oid column is announced as `oid`; cast to `bigint` or `text` it is
/// announced as what the cast made, and its binary value reads as that type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_oids_cast_to_bigint_or_text_are_announced_as_such() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE oids_t (id int PRIMARY KEY)")
        .await
        .expect("setup");
    let sql =
        "SELECT oid, oid::bigint AS big, oid::text AS t FROM pg_class WHERE relname = 'oids_t'";
    let stmt = client.prepare(sql).await.expect("prepare");
    let types: Vec<&str> = stmt.columns().iter().map(|c| c.type_().name()).collect();
    assert_eq!(types, ["oid", "int8", "text"]);
    let row = client.query_one(&stmt, &[]).await.expect("query");
    let oid: u32 = row.get(0);
    assert_eq!(row.get::<_, i64>(1), i64::from(oid));
    assert_eq!(row.get::<_, String>(2), oid.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytea_values_round_trip_in_both_formats() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute("CREATE TABLE blobs (id int PRIMARY KEY, raw bytea, e vector(2)); INSERT INTO blobs VALUES (1, '\\x00ff10', '[1,0]')")
        .await
        .expect("setup");
    let payload: Vec<u8> = vec![0, 1, 2, 254, 255];
    client
        .execute(
            "INSERT INTO blobs (id, raw, e) VALUES ($1, $2, $3)",
            &[&2i32, &payload, &PgVector(vec![0f32, 1.0])],
        )
        .await
        .expect("binary bytea parameter");
    let rows = client
        .query("SELECT raw FROM blobs ORDER BY id", &[])
        .await
        .expect("select");
    assert_eq!(rows[0].get::<_, Vec<u8>>(0), vec![0, 255, 16]);
    assert_eq!(rows[1].get::<_, Vec<u8>>(0), payload);
    let got = simple_column(&client, "SELECT raw FROM blobs WHERE id = 1", 0).await;
    assert_eq!(got, ["\\x00ff10"]);
}

async fn copy_in(
    client: &tokio_postgres::Client,
    sql: &str,
    data: &str,
) -> Result<u64, tokio_postgres::Error> {
    use futures::SinkExt;
    let sink = client.copy_in::<_, bytes::Bytes>(sql).await?;
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from(data.to_string())).await?;
    sink.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_stdin_in_text_and_csv() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE c (id int PRIMARY KEY, title text, tags text[], embedding vector(2)) WITH (distance = 'l2')",
        )
        .await
        .expect("create");
    let n = copy_in(
        &client,
        "COPY c FROM STDIN",
        "1\tone\t{a,b}\t[1,0]\n2\t\\N\t{}\t[0,1]\n",
    )
    .await
    .expect("text copy");
    assert_eq!(n, 2);
    let n = copy_in(
        &client,
        "COPY c (id, embedding, title) FROM STDIN WITH (FORMAT csv, HEADER true)",
        "id,embedding,title\n3,\"[0.5,0.5]\",\"with, comma\"\n4,\"[1,1]\",\n",
    )
    .await
    .expect("csv copy");
    assert_eq!(n, 2);
    // A malformed line fails the COPY with its line number (the CONTEXT line, as
    // Postgres gives it); outside a block the rows before it stay written, and the
    // context says so.
    let e = copy_in(
        &client,
        "COPY c FROM STDIN",
        "5\tfive\t{}\t[1,0]\n6\tsix\t{}\t[1,0,0]\n7\tseven\t{}\t[1,0]\n",
    )
    .await
    .expect_err("bad line");
    assert_eq!(super::sqlstate(&e), "22000");
    let context = e.as_db_error().and_then(|d| d.where_()).unwrap_or_default();
    assert!(context.contains("COPY c, line 2"), "{e:?}");
    assert!(context.contains("the row before this was written"), "{e:?}");
    // In a block the COPY's rows go with the block.
    client.batch_execute("BEGIN").await.expect("begin");
    let e = copy_in(
        &client,
        "COPY c FROM STDIN",
        "8\teight\t{}\t[1,0]\n9\tnine\t{}\t[x]\n",
    )
    .await
    .expect_err("bad line in a block");
    assert_eq!(super::sqlstate(&e), "22P02", "{e:?}");
    let context = e.as_db_error().and_then(|d| d.where_()).unwrap_or_default();
    assert_eq!(context, "COPY c, line 2", "{e:?}");
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let rows = client
        .query("SELECT id, title FROM c ORDER BY id", &[])
        .await
        .expect("select");
    let got: Vec<(i32, Option<String>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![
            (1, Some("one".into())),
            (2, None),
            (3, Some("with, comma".into())),
            (4, None),
            (5, Some("five".into())),
        ]
    );
    let hits = client
        .query("SELECT id FROM vector_search('c', '[1,1]', 1)", &[])
        .await
        .expect("search");
    assert_eq!(hits[0].get::<_, i32>(0), 4, "copied rows are indexed");
    // The connection is still usable after the failed COPY.
    let one: i64 = client
        .query_one("SELECT 1::bigint", &[])
        .await
        .expect("usable")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_a_running_statement() {
    let server = Server::start();
    let client = server.client().await;
    let other = server.client().await;
    let token = client.cancel_token();
    let started = std::time::Instant::now();
    let slow = tokio::spawn(async move {
        let r = client
            .query_one("SELECT count(*) FROM range(3000000000)", &[])
            .await;
        (r.map(|row| row.get::<_, i64>(0)), client)
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // Another session is not disturbed while the first one runs.
    let one: i64 = other
        .query_one("SELECT 1::bigint", &[])
        .await
        .expect("other session")
        .get(0);
    assert_eq!(one, 1);
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("send CancelRequest");
    let (result, client) = slow.await.expect("join");
    let e = result.expect_err("the statement was cancelled");
    assert_eq!(super::sqlstate(&e), "57014", "{e:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "cancelled promptly"
    );
    let two: i64 = client
        .query_one("SELECT 2::bigint", &[])
        .await
        .expect("the cancelled session goes on")
        .get(0);
    assert_eq!(two, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_columns_are_named_as_postgres_names_them() {
    let server = super::Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE named (id bigint PRIMARY KEY, name text, embedding vector(2)); \
             INSERT INTO named VALUES (1, 'a', '[1,0]')",
        )
        .await
        .expect("setup");
    let sql = "SELECT count(*), max(id), 1, id + 1, name::text, CASE WHEN true THEN 1 END, upper(name), n.id, min(id) AS lowest FROM named n GROUP BY n.id, name";
    let want = [
        "count", "max", "?column?", "?column?", "name", "case", "upper", "id", "lowest",
    ];
    let stmt = client.prepare(sql).await.expect("prepare");
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    // Names may repeat, as in Postgres (`1` and `id + 1` are both `?column?`).
    assert_eq!(names, want, "extended protocol");
    let rows = client.simple_query(sql).await.expect("simple");
    let Some(row) = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    }) else {
        panic!("no row: {rows:?}");
    };
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, want, "simple protocol");
    let n: i64 = client
        .query_one("SELECT count(*) FROM named", &[])
        .await
        .expect("count")
        .try_get("count")
        .expect("a column named count");
    assert_eq!(n, 1);
    // A correlated subquery (run per outer row) is named as Postgres names it too.
    let sql = "SELECT (SELECT max(m.name) FROM named m WHERE m.id = n.id), \
               coalesce((SELECT min(m.name) FROM named m WHERE m.id = n.id), ''), \
               (SELECT max(m.name) || 'x' FROM named m WHERE m.id = n.id) FROM named n";
    let stmt = client.prepare(sql).await.expect("prepare");
    let names: Vec<&str> = stmt.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["max", "coalesce", "?column?"]);
    let row = client.query_one(&stmt, &[]).await.expect("correlated");
    assert_eq!(row.get::<_, String>("coalesce"), "a");
    assert_eq!(row.get::<_, String>(2), "ax");
}

/// sqlparser prints a string holding two quotes in a row as if they were one escaped
/// quote; statements printed and parsed again (an UPDATE, a bound parameter) must keep
/// such values whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_in_a_row_survive_in_literals_and_parameters() {
    let server = super::Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE quoted (id bigint PRIMARY KEY, v text); \
             INSERT INTO quoted VALUES (1, 'a''''b'), (2, 'plain')",
        )
        .await
        .expect("setup");
    let tricky = ["it''s", "''", r"C:\'", r"\''\", "'"];
    for (i, t) in tricky.iter().enumerate() {
        let id = 10 + i as i64;
        let got: String = client
            .query_one("INSERT INTO quoted VALUES ($1, $2) RETURNING v", &[&id, t])
            .await
            .expect("insert")
            .get(0);
        assert_eq!(&got, t, "insert returning");
        let got: String = client
            .query_one(
                "UPDATE quoted SET v = $2 || '' WHERE id = $1 RETURNING v",
                &[&id, t],
            )
            .await
            .expect("update")
            .get(0);
        assert_eq!(&got, t, "update returning");
        let n = client
            .execute("UPDATE quoted SET v = v WHERE v = $1", &[t])
            .await
            .expect("update where");
        assert_eq!(n, 1, "update where v = {t:?}");
    }
    // The same in the simple protocol, as literals.
    client
        .simple_query("UPDATE quoted SET v = 'x''''y' WHERE id = 2")
        .await
        .expect("update literal");
    let v: String = client
        .query_one("SELECT v FROM quoted WHERE id = 2", &[])
        .await
        .expect("read")
        .get(0);
    assert_eq!(v, "x''y");
    let deleted = client
        .execute("DELETE FROM quoted WHERE v = 'a''''b'", &[])
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
    let left: i64 = client
        .query_one("SELECT count(*) FROM quoted", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 1 + tricky.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_are_postgres_defaults_and_agree_with_show() {
    let server = super::Server::start();
    let (client, conn) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    let reported: Vec<(&str, Option<String>)> = [
        "server_version",
        "standard_conforming_strings",
        "integer_datetimes",
        "client_encoding",
        "DateStyle",
        "TimeZone",
    ]
    .into_iter()
    .map(|p| (p, conn.parameter(p).map(str::to_string)))
    .collect();
    tokio::spawn(conn);
    for (name, value) in reported {
        let value = value.unwrap_or_else(|| panic!("{name} not reported at startup"));
        let shown = simple_column(&client, &format!("SHOW {name}"), 0).await;
        assert_eq!(
            [value],
            shown.as_slice(),
            "{name}: ParameterStatus and SHOW disagree"
        );
    }
    let empty = client
        .simple_query("")
        .await
        .expect("an empty query is fine");
    assert!(
        !empty
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
    );
}

/// `EXECUTE` of a SQL-level prepared statement through the extended protocol: its
/// result columns and its own `$n` are described from the statement it runs, and the
/// values bound to them reach it (binary results).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepared_statements_execute_through_the_extended_protocol() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE prep_x (id int PRIMARY KEY, name text, e vector(2)); \
             INSERT INTO prep_x VALUES (1, 'one', '[1,0]'), (2, 'two', '[0,1]'); \
             PREPARE named(int) AS SELECT id, name FROM prep_x WHERE id = $1",
        )
        .await
        .expect("setup");
    let stmt = client.prepare("EXECUTE named($1)").await.expect("prepare");
    let params: Vec<&str> = stmt.params().iter().map(|t| t.name()).collect();
    assert_eq!(params, ["int4"]);
    let columns: Vec<(&str, &str)> = stmt
        .columns()
        .iter()
        .map(|c| (c.name(), c.type_().name()))
        .collect();
    assert_eq!(columns, [("id", "int4"), ("name", "text")]);
    for (id, name) in [(2, "two"), (1, "one")] {
        let row = client.query_one(&stmt, &[&id]).await.expect("execute");
        assert_eq!(row.get::<_, i32>(0), id);
        assert_eq!(row.get::<_, String>(1), name);
    }
    // A write prepared in SQL, run with a literal argument over the extended protocol.
    client
        .batch_execute("PREPARE gone(int) AS DELETE FROM prep_x WHERE id = $1")
        .await
        .expect("prepare the delete");
    assert_eq!(
        client
            .execute("EXECUTE gone(1)", &[])
            .await
            .expect("delete"),
        1
    );
    let left: Vec<i32> = client
        .query("SELECT id FROM prep_x", &[])
        .await
        .expect("read")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, [2]);
    // An unknown name is 26000 and leaves the connection usable.
    let e = client
        .query("EXECUTE nothing($1)", &[&1i32])
        .await
        .expect_err("unknown");
    assert_eq!(e.code().map(|c| c.code()), Some("26000"));
    assert_eq!(
        client
            .query("EXECUTE named(2)", &[])
            .await
            .expect("again")
            .len(),
        1
    );
}

/// Arrays of every scalar type as a driver binds and reads them in binary: each
/// parameter described as its column's array type, elements (NULLs too) kept exactly
/// (a float8 with all its digits), read back as the same values; `uuid[]` and `jsonb[]`
/// in their binary forms; the same values as text in the simple protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_arrays_round_trip_in_binary() {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE arrays (id int PRIMARY KEY, f8 float8[], f4 real[], flags boolean[], \
             ids uuid[], stamps timestamptz[], naive timestamp[], days date[], small smallint[], \
             docs jsonb[], blobs bytea[])",
        )
        .await
        .expect("create");
    let ins = client
        .prepare(
            "INSERT INTO arrays (id, f8, f4, flags, ids, stamps, naive, days, small, blobs) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .await
        .expect("prepare");
    assert_eq!(
        &ins.params()[1..],
        &[
            Type::FLOAT8_ARRAY,
            Type::FLOAT4_ARRAY,
            Type::BOOL_ARRAY,
            Type::UUID_ARRAY,
            Type::TIMESTAMPTZ_ARRAY,
            Type::TIMESTAMP_ARRAY,
            Type::DATE_ARRAY,
            Type::INT2_ARRAY,
            Type::BYTEA_ARRAY,
        ]
    );
    let f8 = vec![Some(0.1f64), None, Some(1.0 / 3.0), Some(-2.5e-300)];
    let f4 = vec![Some(1.5f32), None];
    let flags = vec![Some(true), None, Some(false)];
    let ids = vec![
        uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").expect("uuid"),
        uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12").expect("uuid"),
    ];
    let stamps: Vec<DateTime<Utc>> = vec![
        DateTime::from_timestamp(1_577_836_800, 500_000_000).expect("time"),
        DateTime::from_timestamp(1_600_000_000, 123_456_000).expect("time"),
    ];
    let naive: Vec<NaiveDateTime> = vec![stamps[0].naive_utc()];
    let days = vec![
        NaiveDate::from_ymd_opt(2020, 2, 3).expect("date"),
        NaiveDate::from_ymd_opt(1969, 12, 31).expect("date"),
    ];
    let small = vec![Some(1i16), Some(-32768), None];
    let blobs = vec![Some(vec![0u8, 255]), None, Some(Vec::new())];
    client
        .execute(
            &ins,
            &[
                &1i32, &f8, &f4, &flags, &ids, &stamps, &naive, &days, &small, &blobs,
            ],
        )
        .await
        .expect("insert");
    client
        .execute(
            "INSERT INTO arrays (id, docs) VALUES (2, ARRAY['{\"a\": [1, 2]}'::jsonb, NULL])",
            &[],
        )
        .await
        .expect("insert jsonb[]");

    let row = client
        .query_one(
            "SELECT f8, f4, flags, ids, stamps, naive, days, small, blobs FROM arrays WHERE id = $1",
            &[&1i32],
        )
        .await
        .expect("select");
    let types: Vec<Type> = row.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(types, ins.params()[1..].to_vec());
    assert_eq!(row.get::<_, Vec<Option<f64>>>(0), f8);
    assert_eq!(row.get::<_, Vec<Option<f32>>>(1), f4);
    assert_eq!(row.get::<_, Vec<Option<bool>>>(2), flags);
    assert_eq!(row.get::<_, Vec<uuid::Uuid>>(3), ids);
    assert_eq!(row.get::<_, Vec<DateTime<Utc>>>(4), stamps);
    assert_eq!(row.get::<_, Vec<NaiveDateTime>>(5), naive);
    assert_eq!(row.get::<_, Vec<NaiveDate>>(6), days);
    assert_eq!(row.get::<_, Vec<Option<i16>>>(7), small);
    assert_eq!(row.get::<_, Vec<Option<Vec<u8>>>>(8), blobs);

    // jsonb[] in binary: one dimension, elements of type jsonb, each its version byte
    // and its text; a NULL element.
    let row = client
        .query_one("SELECT docs FROM arrays WHERE id = 2", &[])
        .await
        .expect("jsonb[]");
    assert_eq!(row.columns()[0].type_(), &Type::JSONB_ARRAY);
    struct Bytes(Vec<u8>);
    impl<'a> tokio_postgres::types::FromSql<'a> for Bytes {
        fn from_sql(
            _: &Type,
            raw: &'a [u8],
        ) -> Result<Bytes, Box<dyn std::error::Error + Sync + Send>> {
            Ok(Bytes(raw.to_vec()))
        }
        fn accepts(_: &Type) -> bool {
            true
        }
    }
    let raw = row.get::<_, Bytes>(0).0;
    let text = br#"{"a": [1, 2]}"#;
    let mut expected = Vec::new();
    for word in [
        1i32,
        1,
        Type::JSONB.oid() as i32,
        2,
        1,
        text.len() as i32 + 1,
    ] {
        expected.extend(word.to_be_bytes());
    }
    expected.push(1);
    expected.extend(text);
    expected.extend((-1i32).to_be_bytes());
    assert_eq!(raw, expected);

    // Parameters in an array's binary form filter too.
    let found = client
        .query(
            "SELECT id FROM arrays WHERE ids = $1 AND f8 = $2",
            &[&ids, &f8],
        )
        .await
        .expect("filter");
    assert_eq!(found.len(), 1);

    // The simple protocol's text.
    assert_eq!(
        simple_column(&client, "SELECT f8::text FROM arrays WHERE id = 1", 0).await,
        vec!["{0.1,NULL,0.3333333333333333,-2.5e-300}".to_string()]
    );
    assert_eq!(
        simple_column(&client, "SELECT stamps FROM arrays WHERE id = 1", 0).await,
        vec!["{\"2020-01-01 00:00:00.5+00\",\"2020-09-13 12:26:40.123456+00\"}".to_string()]
    );
    assert_eq!(
        simple_column(&client, "SELECT docs FROM arrays WHERE id = 2", 0).await,
        vec!["{\"{\\\"a\\\": [1, 2]}\",NULL}".to_string()]
    );
}
