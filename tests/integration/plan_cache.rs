//! Prepared searches reuse the plan of their previous execution (`sql::plan_cache`):
//! each answer must be exactly the general path's, which binds the vector as a literal
//! and plans in full (the simple protocol, here), under every filter, joined to another
//! table, after settings change, and after the table is dropped and made again.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::search::{K, dataset, filters, gaussian, load, oracle};
use super::{Server, counter, metrics_addr, sqlstate, vec_text};

/// (id, distance, title) rows of the general path: the simple protocol, vector inlined.
async fn general(client: &tokio_postgres::Client, sql: &str) -> Vec<(i64, f64, String)> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                r.get("id").and_then(|x| x.parse().ok()).expect("id"),
                r.get("distance")
                    .and_then(|x| x.parse().ok())
                    .expect("distance"),
                r.get("title").unwrap_or_default().to_string(),
            )),
            _ => None,
        })
        .collect()
}

fn rows(got: &[tokio_postgres::Row]) -> Vec<(i64, f64, String)> {
    got.iter()
        .map(|r| (r.get("id"), r.get("distance"), r.get("title")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_searches_on_a_reused_plan_answer_as_the_general_path_does() {
    let server = Server::start_args(&["--metrics", "127.0.0.1:0"]);
    let addr = metrics_addr(&server).await;
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(7);
    let (docs, centers) = dataset(&mut rng);
    load(&client, "docs", "l2", &docs).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let query = |rng: &mut StdRng| -> Vec<f32> {
        let c = &centers[rng.gen_range(0..centers.len())];
        c.iter().map(|x| x + 0.35 * gaussian(rng)).collect()
    };

    // Every filter of the search tests, pushed down or not; one statement prepared once.
    for (filter, _) in filters() {
        let before = counter(&addr, "vectorgate_plan_cache_hits_total").await;
        let select = "SELECT id, title, category, distance FROM vector_search";
        let stmt = client
            .prepare(&format!(
                "{select}('docs', $1, {K}) WHERE {filter} ORDER BY distance"
            ))
            .await
            .expect("prepare");
        for _ in 0..6 {
            let q = query(&mut rng);
            let got = rows(&client.query(&stmt, &[&q]).await.expect("prepared search"));
            let want = general(
                &client,
                &format!(
                    "{select}('docs', '{}', {K}) WHERE {filter} ORDER BY distance",
                    vec_text(&q)
                ),
            )
            .await;
            assert_eq!(got, want, "{filter}");
            assert!(!got.is_empty(), "{filter}: no rows");
        }
        let hits = counter(&addr, "vectorgate_plan_cache_hits_total").await - before;
        assert_eq!(
            hits, 5,
            "{filter}: every execution after the first reuses the plan"
        );
    }

    // A LIMIT under the ORDER BY is a TopK sort, whose dynamic filter keeps the last
    // execution's threshold unless the reused plan resets it; pgvector's form is
    // rewritten into the same search. Each reuses its plan and answers as planned anew.
    for (filter, _) in filters() {
        for (prepared, inlined, as_vector) in [
            (
                format!(
                    "SELECT id, title, category, distance FROM vector_search('docs', $1, {K}) \
                     WHERE {filter} ORDER BY distance LIMIT 5"
                ),
                format!(
                    "SELECT id, title, category, distance FROM vector_search('docs', '{{v}}', {K}) \
                     WHERE {filter} ORDER BY distance LIMIT 5"
                ),
                false,
            ),
            (
                format!(
                    "SELECT id, title, category, embedding <-> $1 AS distance FROM docs \
                     WHERE {filter} ORDER BY embedding <-> $1 LIMIT 5"
                ),
                format!(
                    "SELECT id, title, category, embedding <-> '{{v}}' AS distance FROM docs \
                     WHERE {filter} ORDER BY embedding <-> '{{v}}' LIMIT 5"
                ),
                // A pgvector operand is a `vector` parameter.
                true,
            ),
            (
                // Ordered by the select list's name for the distance, as LangChain's
                // PGVector writes it.
                format!(
                    "SELECT id, title, category, embedding <-> $1 AS distance FROM docs \
                     WHERE {filter} ORDER BY distance ASC LIMIT 5"
                ),
                format!(
                    "SELECT id, title, category, embedding <-> '{{v}}' AS distance FROM docs \
                     WHERE {filter} ORDER BY distance ASC LIMIT 5"
                ),
                true,
            ),
        ] {
            let before = counter(&addr, "vectorgate_plan_cache_hits_total").await;
            let stmt = client.prepare(&prepared).await.expect("prepare");
            for _ in 0..6 {
                let q = query(&mut rng);
                let want = general(&client, &inlined.replace("{v}", &vec_text(&q))).await;
                let got = if as_vector {
                    client.query(&stmt, &[&super::PgVector(q)]).await
                } else {
                    client.query(&stmt, &[&q]).await
                };
                let got = rows(&got.expect("prepared search"));
                assert_eq!(got, want, "{prepared}");
                assert!(!got.is_empty(), "{prepared}: no rows");
            }
            let hits = counter(&addr, "vectorgate_plan_cache_hits_total").await - before;
            assert_eq!(
                hits, 5,
                "{prepared}: every execution after the first reuses the plan"
            );
        }
    }

    // A search joined to another table (pgvector's form over a join, as LangChain's
    // store sends it, and vector_search joined by hand) keeps its plan too: the joined
    // table is read as each execution runs (its rows changed between executions, and
    // inside a transaction block, are seen), and the hash join's run-time filter of the
    // joined keys is made afresh for each.
    client
        .batch_execute(
            "CREATE TABLE buckets (id int PRIMARY KEY, label text, active boolean); \
             INSERT INTO buckets SELECT i, 'b' || i, i % 3 <> 0 FROM generate_series(0, 99) AS t(i)",
        )
        .await
        .expect("buckets");
    for (prepared, inlined) in [
        (
            "SELECT d.id, d.title || '/' || b.label AS title, d.embedding <-> $1 AS distance \
             FROM docs d JOIN buckets b ON d.bucket = b.id WHERE b.active AND d.year > $2 \
             ORDER BY d.embedding <-> $1 LIMIT 5",
            "SELECT d.id, d.title || '/' || b.label AS title, d.embedding <-> '{v}' AS distance \
             FROM docs d JOIN buckets b ON d.bucket = b.id WHERE b.active AND d.year > 2003 \
             ORDER BY d.embedding <-> '{v}' LIMIT 5",
        ),
        (
            "SELECT d.id, d.title, d.embedding <-> $1 AS distance FROM docs d \
             JOIN buckets b ON d.bucket = b.id WHERE d.year > $2 AND b.active \
             ORDER BY distance LIMIT 5",
            "SELECT d.id, d.title, d.embedding <-> '{v}' AS distance FROM docs d \
             JOIN buckets b ON d.bucket = b.id WHERE d.year > 2003 AND b.active \
             ORDER BY distance LIMIT 5",
        ),
        (
            "SELECT v.id, b.label AS title, v.distance FROM vector_search('docs', $1, 10) v \
             JOIN buckets b ON v.bucket = b.id WHERE b.active AND v.year > $2 ORDER BY v.distance",
            "SELECT v.id, b.label AS title, v.distance FROM vector_search('docs', '{v}', 10) v \
             JOIN buckets b ON v.bucket = b.id WHERE b.active AND v.year > 2003 ORDER BY v.distance",
        ),
    ] {
        let before = counter(&addr, "vectorgate_plan_cache_hits_total").await;
        let stmt = client.prepare(prepared).await.expect("prepare");
        let run = |q: Vec<f32>| {
            let (client, stmt) = (&client, &stmt);
            async move {
                let got = match prepared.contains("<->") {
                    true => client.query(stmt, &[&super::PgVector(q), &2003i32]).await,
                    false => client.query(stmt, &[&q, &2003i32]).await,
                };
                rows(&got.expect("prepared joined search"))
            }
        };
        let mut executions = 0;
        for round in 0..9 {
            let q = query(&mut rng);
            // Between executions the joined rows change: a bucket comes and goes.
            if round == 3 || round == 6 {
                client
                    .batch_execute("UPDATE buckets SET active = NOT active WHERE id % 7 = 1")
                    .await
                    .expect("flip buckets");
            }
            let want = general(&client, &inlined.replace("{v}", &vec_text(&q))).await;
            let got = run(q).await;
            executions += 1;
            assert_eq!(got, want, "{prepared}");
            assert!(!got.is_empty(), "{prepared}: no rows");
        }
        // Inside a block: the block's own change to the joined table is seen, and is
        // gone after ROLLBACK.
        let q = query(&mut rng);
        let outside = run(q.clone()).await;
        client
            .batch_execute("BEGIN; UPDATE buckets SET active = false")
            .await
            .expect("begin");
        assert_eq!(
            run(q.clone()).await,
            vec![],
            "{prepared}: no bucket is active"
        );
        client.batch_execute("ROLLBACK").await.expect("rollback");
        assert_eq!(run(q).await, outside, "{prepared}: after ROLLBACK");
        executions += 3;
        let hits = counter(&addr, "vectorgate_plan_cache_hits_total").await - before;
        assert_eq!(
            hits,
            executions - 1,
            "{prepared}: every execution after the first reuses the plan"
        );
    }

    // A driver that parses the statement again at every execution (tokio-postgres's
    // `query` with text, psycopg's unnamed statements) gets the statement it parsed
    // before, plan included; a change of the catalog or of a setting parses it anew.
    let sql = "SELECT v.id, b.label AS title, v.distance FROM vector_search('docs', $1, 10) v \
               JOIN buckets b ON v.bucket = b.id WHERE b.active ORDER BY v.distance";
    let inlined = |q: &[f32]| sql.replace("$1", &format!("'{}'", vec_text(q)));
    let before = counter(&addr, "vectorgate_plan_cache_hits_total").await;
    for round in 0..6 {
        let q = query(&mut rng);
        let got = rows(&client.query(sql, &[&q]).await.expect("search by text"));
        assert_eq!(got, general(&client, &inlined(&q)).await, "round {round}");
    }
    let hits = counter(&addr, "vectorgate_plan_cache_hits_total").await - before;
    assert_eq!(
        hits, 5,
        "each parse after the first finds the statement and its plan"
    );
    client
        .batch_execute("ALTER TABLE buckets ADD COLUMN note text DEFAULT 'n'")
        .await
        .expect("alter");
    let star = "SELECT b.* FROM vector_search('docs', $1, 3) v JOIN buckets b ON v.bucket = b.id";
    let q = query(&mut rng);
    let got = client.query(star, &[&q]).await.expect("after ALTER");
    assert_eq!(got[0].columns().len(), 4, "the new column is there");
    client
        .batch_execute("ALTER TABLE buckets DROP COLUMN note")
        .await
        .expect("drop column");
    let got = client.query(star, &[&q]).await.expect("after DROP COLUMN");
    assert_eq!(got[0].columns().len(), 3, "the dropped column is gone");

    // Settings change the plan: the same prepared statement with the exact row scan on
    // must give the oracle's answer exactly, and the index's again once it is off.
    let stmt = client
        .prepare("SELECT id, title, distance FROM vector_search('docs', $1, $2) WHERE bucket < 30")
        .await
        .expect("prepare");
    let q = query(&mut rng);
    let indexed = rows(
        &client
            .query(&stmt, &[&q, &(K as i64)])
            .await
            .expect("search"),
    );
    client
        .batch_execute("SET vectorgate.row_scan = on")
        .await
        .expect("set");
    let scanned: Vec<i64> = rows(&client.query(&stmt, &[&q, &(K as i64)]).await.expect("scan"))
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(scanned, oracle(&docs, &q, |d| d.bucket < 30, "l2"));
    client
        .batch_execute("RESET vectorgate.row_scan")
        .await
        .expect("reset");
    assert_eq!(
        rows(
            &client
                .query(&stmt, &[&q, &(K as i64)])
                .await
                .expect("search")
        ),
        indexed
    );
    // Another k is another plan.
    assert_eq!(
        client.query(&stmt, &[&q, &3i64]).await.expect("k=3").len(),
        3
    );

    // A vector of the wrong dimension fails as on the general path; the session goes on.
    let short = vec![0.5f32; 3];
    let fast = client
        .query(&stmt, &[&short, &(K as i64)])
        .await
        .expect_err("dimension");
    let slow = client
        .simple_query(&format!(
            "SELECT id FROM vector_search('docs', '{}', 10) WHERE bucket < 30",
            vec_text(&short)
        ))
        .await
        .expect_err("dimension");
    assert_eq!(sqlstate(&fast), sqlstate(&slow), "{fast} / {slow}");
    assert_eq!(
        client
            .query(&stmt, &[&q, &(K as i64)])
            .await
            .expect("after error")
            .len(),
        K
    );

    // The table dropped and made again with 4 dimensions: the old plan is not used.
    client
        .batch_execute(
            "DROP TABLE docs; \
             CREATE TABLE docs (id bigint PRIMARY KEY, title text, category text, bucket int, year int, \
             tags text[], embedding vector(4)) WITH (distance = 'l2'); \
             INSERT INTO docs (id, title, bucket, embedding) VALUES \
             (1, 'a', 1, '[1,0,0,0]'), (2, 'b', 2, '[0,1,0,0]'), (3, 'c', 50, '[0,0,1,0]')",
        )
        .await
        .expect("recreate");
    let got = rows(
        &client
            .query(&stmt, &[&vec![0.9f32, 0.1, 0.0, 0.0], &(K as i64)])
            .await
            .expect("new table"),
    );
    let ids: Vec<i64> = got.iter().map(|r| r.0).collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(got[0].2, "a");
}
