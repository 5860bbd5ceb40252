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
