//! Data survives a restart: rows and vectors are there and searchable, after a
//! graceful stop and after the process is killed.

use super::{Server, vec_text};

async fn fill(client: &tokio_postgres::Client, n: usize) -> Vec<Vec<f32>> {
    client
        .batch_execute(
            "CREATE TABLE items (id text PRIMARY KEY, n int, embedding vector(4)) WITH (distance = 'l2')",
        )
        .await
        .expect("create");
    let vecs: Vec<Vec<f32>> = (0..n)
        .map(|i| vec![i as f32, (i % 7) as f32, 1.0, -(i as f32) / 3.0])
        .collect();
    let values: Vec<String> = vecs
        .iter()
        .enumerate()
        .map(|(i, v)| format!("('k{i}', {i}, '{}')", vec_text(v)))
        .collect();
    client
        .batch_execute(&format!("INSERT INTO items VALUES {}", values.join(",")))
        .await
        .expect("insert");
    vecs
}

async fn check(server: &Server, vecs: &[Vec<f32>]) {
    let client = server.client().await;
    let count: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count as usize, vecs.len(), "every row is back");
    for probe in [0usize, 17, vecs.len() - 1] {
        let rows = client
            .query(
                "SELECT id, distance FROM vector_search('items', $1, 1)",
                &[&vecs[probe]],
            )
            .await
            .expect("search");
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].get::<_, String>(0),
            format!("k{probe}"),
            "vector {probe} is found again"
        );
        assert!(rows[0].get::<_, f64>(1).abs() < 1e-6);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_and_vectors_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start_on(&data, &[]);
    let vecs = fill(&server.client().await, 300).await;
    server.stop(true);
    let server = Server::start_on(&data, &[]);
    check(&server, &vecs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_killed_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start_on(&data, &[]);
    let vecs = fill(&server.client().await, 120).await;
    server.stop(false);
    let server = Server::start_on(&data, &[]);
    check(&server, &vecs).await;
}

/// Single-row writes are acknowledged before the index has flushed them (their outbox
/// entries wait for the flush): killed right after the last acknowledgement, the proxy
/// comes back with every one of them searchable and the index equal to the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_row_writes_killed_before_the_index_flushes_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = Server::start_on(&data, &[]);
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE items (id text PRIMARY KEY, n int, embedding vector(4)) WITH (distance = 'l2')",
        )
        .await
        .expect("create");
    let insert = client
        .prepare_typed(
            "INSERT INTO items (id, n, embedding) VALUES ($1, $2, $3)",
            &[
                tokio_postgres::types::Type::TEXT,
                tokio_postgres::types::Type::INT4,
                tokio_postgres::types::Type::FLOAT4_ARRAY,
            ],
        )
        .await
        .expect("prepare");
    let update = client
        .prepare_typed(
            "UPDATE items SET embedding = $2 WHERE id = $1",
            &[
                tokio_postgres::types::Type::TEXT,
                tokio_postgres::types::Type::FLOAT4_ARRAY,
            ],
        )
        .await
        .expect("prepare");
    let mut vecs: Vec<Vec<f32>> = Vec::new();
    for i in 0..80i32 {
        let v = vec![i as f32, (i % 5) as f32, 2.0, (i as f32) / 7.0];
        client
            .execute(&insert, &[&format!("k{i}"), &i, &v])
            .await
            .expect("insert");
        vecs.push(v);
    }
    // The last writes move vectors: the index must have the new ones, not the old.
    for (i, slot) in vecs.iter_mut().enumerate().skip(60) {
        let v = vec![-(i as f32), 1.0, (i % 3) as f32, 5.0];
        let n = client
            .execute(&update, &[&format!("k{i}"), &v])
            .await
            .expect("update");
        assert_eq!(n, 1);
        *slot = v;
    }
    server.stop(false);
    let server = Server::start_on(&data, &[]);
    let client = server.client().await;
    client
        .batch_execute("SET vectorgate.exact = on")
        .await
        .expect("set");
    for (i, v) in vecs.iter().enumerate() {
        let rows = client
            .query(
                "SELECT id, distance FROM vector_search('items', $1, 1)",
                &[v],
            )
            .await
            .expect("search");
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].get::<_, String>(0),
            format!("k{i}"),
            "row {i} is found by its vector"
        );
        assert!(rows[0].get::<_, f64>(1).abs() < 1e-6);
    }
    let r = client
        .query_one(
            "SELECT points, missing, stale, orphaned, duplicates FROM vectorgate_reindex('items', 'verify')",
            &[],
        )
        .await
        .expect("verify");
    let got: (i64, i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    assert_eq!(
        got,
        (80, 0, 0, 0, 0),
        "points, missing, stale, orphaned, duplicates"
    );
}

/// A write of another session while `ALTER COLUMN ... TYPE` rewrites the table (its rows
/// copied under a new stored name, then swapped in) is either in the new table or
/// refused with 40001: never acknowledged and lost. Updates, inserts and deletes run
/// throughout the ALTER; the table is compared with what was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_a_table_rewrite_are_kept_or_refused() {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    enum Op {
        Update(i32),
        Insert(i32, i32),
        Delete(i32),
    }
    let server = Server::start();
    let (a, b) = (server.client().await, server.client().await);
    const N: i32 = 40_000;
    a.batch_execute(&format!(
        "CREATE TABLE rw (id int PRIMARY KEY, n int, note text); \
         INSERT INTO rw SELECT g, g, 'r' || g FROM generate_series(1, {N}) g"
    ))
    .await
    .expect("fill");
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut model: BTreeMap<i32, i64> = (1..=N).map(|i| (i, i64::from(i))).collect();
            let (mut acknowledged, mut refused, mut during) = (0u32, 0u32, 0u32);
            let mut i = 0i32;
            while !done.load(Ordering::Relaxed) || i < 50 {
                i += 1;
                let id = 1 + (i * 7919) % N;
                let (sql, op) = match i % 3 {
                    0 => (
                        format!("UPDATE rw SET n = n + 100000 WHERE id = {id}"),
                        Op::Update(id),
                    ),
                    1 => (
                        format!("INSERT INTO rw VALUES ({}, {i}, 'new')", N + i),
                        Op::Insert(N + i, i),
                    ),
                    _ => (format!("DELETE FROM rw WHERE id = {id}"), Op::Delete(id)),
                };
                match b.batch_execute(&sql).await {
                    Ok(()) => {
                        match op {
                            Op::Update(id) => {
                                if let Some(n) = model.get_mut(&id) {
                                    *n += 100_000;
                                }
                            }
                            Op::Insert(id, n) => {
                                model.insert(id, i64::from(n));
                            }
                            Op::Delete(id) => {
                                model.remove(&id);
                            }
                        }
                        acknowledged += 1;
                        if !done.load(Ordering::Relaxed) {
                            during += 1;
                        }
                    }
                    Err(e) if super::sqlstate(&e) == "40001" => refused += 1,
                    Err(e) => panic!("{sql}: {e:?}"),
                }
            }
            (model, acknowledged, refused, during)
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    a.batch_execute("ALTER TABLE rw ALTER COLUMN n TYPE bigint")
        .await
        .expect("alter");
    done.store(true, Ordering::Relaxed);
    let (model, acknowledged, refused, during) = writer.await.expect("writer");
    eprintln!(
        "writes: {acknowledged} acknowledged ({during} while the ALTER ran), {refused} refused (40001)"
    );
    assert!(during > 0, "no write ran beside the rewrite");
    let got: BTreeMap<i32, i64> = a
        .query("SELECT id, n FROM rw", &[])
        .await
        .expect("read")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(got.len(), model.len(), "rows");
    assert!(
        got == model,
        "every acknowledged write is in the table, no other"
    );
}
