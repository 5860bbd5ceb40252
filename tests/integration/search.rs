//! Search quality against an exact brute-force oracle computed here, for each distance,
//! filters of different selectivity (pushed down, applied after the join, and mixed),
//! through both the simple and the extended protocol.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Server, simple_column, vec_text};

pub const N: usize = 3000;
pub const DIM: usize = 32;
pub const K: usize = 10;

#[derive(Clone)]
pub struct Doc {
    pub id: i64,
    pub title: String,
    pub category: String,
    pub bucket: i32,
    pub year: i32,
    pub tags: Vec<String>,
    pub v: Vec<f32>,
}

pub fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller.
    let u1: f32 = rng.gen_range(1e-7..1.0);
    let u2: f32 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

pub fn dataset(rng: &mut StdRng) -> (Vec<Doc>, Vec<Vec<f32>>) {
    let centers: Vec<Vec<f32>> = (0..20)
        .map(|_| (0..DIM).map(|_| gaussian(rng)).collect())
        .collect();
    let docs = (0..N)
        .map(|i| {
            let c = &centers[rng.gen_range(0..centers.len())];
            Doc {
                id: i as i64,
                title: format!("doc{i}"),
                category: format!("c{}", i % 10),
                bucket: (i % 100) as i32,
                year: 2000 + (i % 25) as i32,
                tags: vec![format!("t{}", i % 5), format!("u{}", i % 7)],
                v: c.iter().map(|x| x + 0.35 * gaussian(rng)).collect(),
            }
        })
        .collect();
    (docs, centers)
}

/// The ids of the k nearest documents passing `pred`, by exact distance.
/// `n` queries drawn like the data: near the centres in turn.
pub fn queries_near(centers: &[Vec<f32>], n: usize, rng: &mut StdRng) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            centers[i % centers.len()]
                .iter()
                .map(|x| x + 0.35 * gaussian(rng))
                .collect()
        })
        .collect()
}

pub fn oracle(
    docs: &[Doc],
    query: &[f32],
    pred: impl Fn(&Doc) -> bool,
    distance: &str,
) -> Vec<i64> {
    let mut all: Vec<(f64, i64)> = docs
        .iter()
        .filter(|d| pred(d))
        .map(|d| (exact(distance, query, &d.v), d.id))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    all.into_iter().take(K).map(|x| x.1).collect()
}

pub fn exact(distance: &str, a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    match distance {
        "cosine" => {
            let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            1.0 - dot / (na * nb)
        }
        "l2" => a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum::<f64>()
            .sqrt(),
        _ => -dot,
    }
}

pub type Filter = (&'static str, fn(&Doc) -> bool);

pub fn filters() -> Vec<Filter> {
    vec![
        ("TRUE", |_| true),
        ("category = 'c3'", |d| d.category == "c3"),
        ("bucket = 7", |d| d.bucket == 7),
        ("bucket < 50 AND category <> 'c1'", |d| {
            d.bucket < 50 && d.category != "c1"
        }),
        ("'t2' = ANY(tags)", |d| d.tags.iter().any(|t| t == "t2")),
        (
            "(year BETWEEN 2005 AND 2010 OR category IN ('c1', 'c2')) AND NOT (bucket >= 90)",
            |d| {
                ((2005..=2010).contains(&d.year) || d.category == "c1" || d.category == "c2")
                    && d.bucket < 90
            },
        ),
        // Not pushable: applied after the join, k still counts passing rows.
        ("title LIKE '%7'", |d| d.title.ends_with('7')),
        ("category = 'c3' AND title LIKE '%13'", |d| {
            d.category == "c3" && d.title.ends_with("13")
        }),
    ]
}

pub async fn load(client: &tokio_postgres::Client, table: &str, distance: &str, docs: &[Doc]) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, title text, category text, bucket int, year int, \
             tags text[], embedding vector({DIM})) WITH (distance = '{distance}', indexing_threshold_kb = 64)"
        ))
        .await
        .expect("create");
    insert(client, table, docs).await;
}

/// Insert documents into a table made by [`load`], 250 rows per statement.
pub async fn insert(client: &tokio_postgres::Client, table: &str, docs: &[Doc]) {
    for chunk in docs.chunks(250) {
        let values: Vec<String> = chunk
            .iter()
            .map(|d| {
                format!(
                    "({}, '{}', '{}', {}, {}, '{{{}}}', '{}')",
                    d.id,
                    d.title,
                    d.category,
                    d.bucket,
                    d.year,
                    d.tags.join(","),
                    vec_text(&d.v)
                )
            })
            .collect();
        client
            .batch_execute(&format!("INSERT INTO {table} VALUES {}", values.join(", ")))
            .await
            .expect("insert");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_search_matches_the_exact_oracle() {
    let server = Server::start();
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(42);
    let (docs, centers) = dataset(&mut rng);
    for distance in ["cosine", "l2", "dot"] {
        let table = format!("docs_{distance}");
        load(&client, &table, distance, &docs).await;
    }
    // Let the background optimiser build the HNSW graphs (any state must answer
    // correctly; this only makes it likelier that the graph, not a scan, answers).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    for distance in ["cosine", "l2", "dot"] {
        let table = format!("docs_{distance}");
        for (sql_filter, pred) in filters() {
            let mut recall_sum = 0.0;
            let queries = 12;
            for q in 0..queries {
                let c = &centers[rng.gen_range(0..centers.len())];
                let query: Vec<f32> = c.iter().map(|x| x + 0.35 * gaussian(&mut rng)).collect();
                let mut oracle: Vec<(f64, i64)> = docs
                    .iter()
                    .filter(|d| pred(d))
                    .map(|d| (exact(distance, &query, &d.v), d.id))
                    .collect();
                oracle.sort_by(|a, b| a.0.total_cmp(&b.0));
                oracle.truncate(K);

                let sql_text = format!(
                    "SELECT id, distance FROM vector_search('{table}', '{}', {K}) WHERE {sql_filter} ORDER BY distance",
                    vec_text(&query)
                );
                let got: Vec<(i64, f64)> = if q % 2 == 0 {
                    // Extended protocol: the vector as a float4[] parameter, binary results.
                    let sql = format!(
                        "SELECT id, distance FROM vector_search('{table}', $1, $2) WHERE {sql_filter} ORDER BY distance"
                    );
                    client
                        .query(&sql, &[&query, &(K as i64)])
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"))
                        .iter()
                        .map(|r| (r.get::<_, i64>(0), r.get::<_, f64>(1)))
                        .collect()
                } else {
                    // Simple protocol: text literal, text results.
                    client
                        .simple_query(&sql_text)
                        .await
                        .unwrap_or_else(|e| panic!("{sql_text}: {e}"))
                        .iter()
                        .filter_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                                r.get(0).and_then(|x| x.parse().ok()).expect("id"),
                                r.get(1).and_then(|x| x.parse().ok()).expect("distance"),
                            )),
                            _ => None,
                        })
                        .collect()
                };
                assert_eq!(
                    got.len(),
                    oracle.len(),
                    "{table} {sql_filter}: k counts rows that pass the filter"
                );
                for (id, d) in &got {
                    let doc = &docs[*id as usize];
                    assert!(
                        pred(doc),
                        "{table} {sql_filter}: row {id} does not satisfy the filter"
                    );
                    let e = exact(distance, &query, &doc.v);
                    assert!(
                        (e - d).abs() < 1e-4,
                        "{table}: distance {d} of row {id} differs from exact {e}"
                    );
                }
                assert!(
                    got.windows(2).all(|w| w[0].1 <= w[1].1),
                    "ordered by distance"
                );
                let hits = got
                    .iter()
                    .filter(|(id, _)| oracle.iter().any(|(_, o)| o == id))
                    .count();
                recall_sum += if oracle.is_empty() {
                    1.0
                } else {
                    hits as f64 / oracle.len() as f64
                };
            }
            let recall = recall_sum / queries as f64;
            eprintln!("{table:12} recall@{K} {recall:.3}  filter: {sql_filter}");
            assert!(
                recall >= 0.95,
                "{table} {sql_filter}: recall@{K} {recall:.3} < 0.95"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_updated_rows_follow_the_row_store() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, kind text, embedding vector(2)) WITH (distance = 'l2');
             INSERT INTO t VALUES (1, 'a', '[0,0]'), (2, 'a', '[1,0]'), (3, 'b', '[2,0]'), (4, 'b', '[3,0]');",
        )
        .await
        .expect("setup");
    let ids = |rows: Vec<tokio_postgres::Row>| {
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>()
    };
    let q = "SELECT id FROM vector_search('t', '[0,0]', 10) ORDER BY distance";
    assert_eq!(
        ids(client.query(q, &[]).await.expect("q")),
        vec![1, 2, 3, 4]
    );
    client
        .execute("DELETE FROM t WHERE kind = 'a'", &[])
        .await
        .expect("delete");
    assert_eq!(ids(client.query(q, &[]).await.expect("q")), vec![3, 4]);
    client
        .execute(
            "UPDATE t SET embedding = '[-1,0]', kind = 'c' WHERE id = 4",
            &[],
        )
        .await
        .expect("update");
    assert_eq!(ids(client.query(q, &[]).await.expect("q")), vec![4, 3]);
    let q2 = "SELECT id FROM vector_search('t', '[0,0]', 10) WHERE kind = 'b'";
    assert_eq!(
        ids(client.query(q2, &[]).await.expect("q")),
        vec![3],
        "the index payload follows updates"
    );
    // A key change moves the row.
    client
        .execute("UPDATE t SET id = 40 WHERE id = 4", &[])
        .await
        .expect("update key");
    assert_eq!(ids(client.query(q, &[]).await.expect("q")), vec![40, 3]);
    client.execute("DROP TABLE t", &[]).await.expect("drop");
    let e = client.query(q, &[]).await.expect_err("dropped");
    assert_eq!(super::sqlstate(&e), "42P01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_order_by_is_the_same_index_search() {
    let server = Server::start();
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(7);
    let (docs, centers) = dataset(&mut rng);
    load(&client, "pg", "cosine", &docs[..1000]).await;
    let plan: Vec<String> = client
        .query(
            "EXPLAIN SELECT id FROM pg WHERE category = 'c3' ORDER BY embedding <=> $1 LIMIT 10",
            &[&super::PgVector(centers[0].clone())],
        )
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("VectorSearchExec: table=pg, k=10"), "{plan}");
    assert!(plan.contains("pushed_filter=category = 'c3'"), "{plan}");
    // SQLAlchemy's spelling (LangChain's PGVector): ordered by the select list's name for
    // the distance, the limit a cast parameter. The same index search.
    let alias = "SELECT id, embedding <=> $1 AS distance FROM pg WHERE category = $2 \
                 ORDER BY distance ASC LIMIT $3::INTEGER";
    let plan = super::explain(
        &client,
        alias,
        &[&super::PgVector(centers[0].clone()), &"c3", &10i32],
    )
    .await;
    assert!(plan.contains("VectorSearchExec: table=pg, k=10"), "{plan}");
    for center in centers.iter().take(6) {
        let query: Vec<f32> = center
            .iter()
            .map(|x| x + 0.3 * gaussian(&mut rng))
            .collect();
        let mut oracle: Vec<(f64, i64)> = docs[..1000]
            .iter()
            .filter(|d| d.category == "c3")
            .map(|d| (exact("cosine", &query, &d.v), d.id))
            .collect();
        oracle.sort_by(|a, b| a.0.total_cmp(&b.0));
        let rows = client
            .query(
                "SELECT id, embedding <=> $1 AS d FROM pg WHERE category = 'c3' ORDER BY embedding <=> $1 LIMIT 10",
                &[&super::PgVector(query.clone())],
            )
            .await
            .expect("pgvector search");
        let got: Vec<(i64, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(got.len(), 10);
        for ((id, d), (od, oid)) in got.iter().zip(&oracle) {
            assert_eq!(id, oid, "same rows as the exact oracle, in order");
            assert!((d - od).abs() < 1e-4);
        }
        let rows = client
            .query(alias, &[&super::PgVector(query.clone()), &"c3", &10i32])
            .await
            .expect("search ordered by the alias");
        let by_alias: Vec<(i64, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(by_alias, got, "ordered by the alias: the same rows");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exact_row_scan_equals_the_oracle() {
    let server = Server::start();
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(11);
    let (docs, centers) = dataset(&mut rng);
    let docs = &docs[..1500];
    load(&client, "scan", "l2", docs).await;
    client
        .batch_execute("SET vectorgate.row_scan = on")
        .await
        .expect("set");
    let plan = client
        .query(
            "EXPLAIN SELECT id FROM vector_search('scan', $1, 5)",
            &[&centers[0]],
        )
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("mode=exact row scan"), "{plan}");
    for (sql_filter, pred) in filters() {
        for center in centers.iter().take(3) {
            let query: Vec<f32> = center
                .iter()
                .map(|x| x + 0.35 * gaussian(&mut rng))
                .collect();
            let mut oracle: Vec<(f64, i64)> = docs
                .iter()
                .filter(|d| pred(d))
                .map(|d| (exact("l2", &query, &d.v), d.id))
                .collect();
            oracle.sort_by(|a, b| a.0.total_cmp(&b.0));
            oracle.truncate(K);
            let sql = format!(
                "SELECT id, distance FROM vector_search('scan', $1, {K}) WHERE {sql_filter} ORDER BY distance"
            );
            let got: Vec<(i64, f64)> = client
                .query(&sql, &[&query])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let ids: Vec<i64> = got.iter().map(|g| g.0).collect();
            let want: Vec<i64> = oracle.iter().map(|o| o.1).collect();
            assert_eq!(ids, want, "{sql_filter}: the scan is exact");
        }
    }
    // A filter on distance is applied after distances are known.
    let rows = client
        .query(
            "SELECT id FROM vector_search('scan', $1, 3) WHERE distance > 0.5",
            &[&centers[1]],
        )
        .await
        .expect("distance filter");
    assert_eq!(rows.len(), 3);
}

/// "More like this one": the query vector is a stored row's, read by a scalar subquery,
/// in `vector_search` and in the pgvector form, with the key as a literal and as a
/// parameter. With exact search the answer is the oracle's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_rows_vector_is_a_query_vector() {
    let server = Server::start();
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(23);
    let (docs, _) = dataset(&mut rng);
    let docs = &docs[..800];
    load(&client, "like_this", "l2", docs).await;
    client
        .batch_execute("SET vectorgate.exact = on")
        .await
        .expect("set");
    for id in [3i64, 141, 599] {
        let v = &docs[id as usize].v;
        let want = oracle(docs, v, |d| d.category != "c1", "l2");
        let searches = [
            format!(
                "SELECT id FROM vector_search('like_this', (SELECT embedding FROM like_this WHERE id = {id}), {K}) \
                 WHERE category <> 'c1' ORDER BY distance"
            ),
            format!(
                "SELECT id FROM like_this WHERE category <> 'c1' \
                 ORDER BY embedding <-> (SELECT embedding FROM like_this WHERE id = {id}) LIMIT {K}"
            ),
        ];
        for sql in &searches {
            let simple: Vec<i64> = client
                .simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
                    _ => None,
                })
                .collect();
            assert_eq!(simple, want, "simple protocol: {sql}");
            let extended: Vec<i64> = client
                .query(sql.as_str(), &[])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(extended, want, "extended protocol: {sql}");
        }
        // The key bound as a parameter inside the subquery.
        let bound: Vec<i64> = client
            .query(
                &format!(
                    "SELECT id FROM vector_search('like_this', (SELECT embedding FROM like_this WHERE id = $1), {K}) \
                     WHERE category <> 'c1' ORDER BY distance"
                ),
                &[&id],
            )
            .await
            .expect("bound key")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(bound, want, "key as a parameter");
    }
    // More than one row: 21000; no row: a NULL vector, 22000. The session goes on.
    for (sql, state) in [
        (
            "SELECT id FROM vector_search('like_this', (SELECT embedding FROM like_this WHERE id < 5), 3)",
            "21000",
        ),
        (
            "SELECT id FROM vector_search('like_this', (SELECT embedding FROM like_this WHERE id = -1), 3)",
            "22000",
        ),
    ] {
        let err = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(
            err.as_db_error().map(|d| d.code().code()),
            Some(state),
            "{sql}: {err}"
        );
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM like_this", &[])
        .await
        .expect("session goes on")
        .get(0);
    assert_eq!(n, docs.len() as i64);
}

/// pgvector's search shape over a join by the other table's key (LangGraph's store: its
/// documents, and their vectors in a table of their own) is an index search restricted
/// to the keys of the rows that pass the other table's conditions: the same rows and
/// distances as the exact oracle, through both protocols, with `LIMIT $n`; vectors with
/// no row to join are never counted among the k.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_order_by_over_a_join_is_an_index_search() {
    let server = Server::start();
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(23);
    let (docs, centers) = dataset(&mut rng);
    let docs = &docs[..1000];
    client
        .batch_execute(&format!(
            "CREATE TABLE notes (ns text, key text, kind int, value jsonb NOT NULL, PRIMARY KEY (ns, key));
             CREATE TABLE note_vectors (ns text, key text, field text, embedding vector({DIM}),
               PRIMARY KEY (ns, key, field)) WITH (distance = 'cosine', indexing_threshold_kb = 64)"
        ))
        .await
        .expect("create");
    let ns = |d: &Doc| format!("users.u{}", d.id % 7);
    for chunk in docs.chunks(250) {
        let notes: Vec<String> = chunk
            .iter()
            .map(|d| {
                format!(
                    "('{}', 'm{}', {}, '{{\"category\": \"{}\", \"bucket\": {}}}')",
                    ns(d),
                    d.id,
                    d.bucket % 10,
                    d.category,
                    d.bucket
                )
            })
            .collect();
        // Every document's vector as field "text"; every third one a second vector, and
        // every fifth one's also under a key no note has (a vector with no row).
        let mut vectors = Vec::new();
        for d in chunk {
            vectors.push(format!(
                "('{}', 'm{}', 'text', '{}')",
                ns(d),
                d.id,
                vec_text(&d.v)
            ));
            if d.id % 3 == 0 {
                let w: Vec<f32> = d.v.iter().rev().cloned().collect();
                vectors.push(format!(
                    "('{}', 'm{}', 'title', '{}')",
                    ns(d),
                    d.id,
                    vec_text(&w)
                ));
            }
            if d.id % 5 == 0 {
                vectors.push(format!(
                    "('{}', 'gone{}', 'text', '{}')",
                    ns(d),
                    d.id,
                    vec_text(&d.v)
                ));
            }
        }
        client
            .batch_execute(&format!(
                "INSERT INTO notes VALUES {}; INSERT INTO note_vectors VALUES {}",
                notes.join(", "),
                vectors.join(", ")
            ))
            .await
            .expect("insert");
    }
    // (vector id, doc, field vector) of every vector that has a note.
    let mut all: Vec<(&Doc, String, Vec<f32>)> = Vec::new();
    for d in docs {
        all.push((d, "text".into(), d.v.clone()));
        if d.id % 3 == 0 {
            all.push((d, "title".into(), d.v.iter().rev().cloned().collect()));
        }
    }
    type Pred = fn(&Doc, &str) -> bool;
    let cases: Vec<(&str, Pred)> = vec![
        ("TRUE", |_, _| true),
        ("n.kind = 3", |d, _| d.bucket % 10 == 3),
        (
            "n.value->>'category' = 'c4' AND n.ns LIKE 'users.u2%'",
            |d, _| d.category == "c4" && d.id % 7 == 2,
        ),
        ("value->'bucket' = '17'::jsonb", |d, _| d.bucket == 17),
        ("n.kind = 3 AND v.field = 'title'", |d, f| {
            d.bucket % 10 == 3 && f == "title"
        }),
        ("n.kind = 11", |_, _| false),
        // The statement's time, in a condition checked on the rows looked up by key.
        (
            "n.kind = 3 AND now() > '2000-01-01 00:00:00+00'::timestamptz",
            |d, _| d.bucket % 10 == 3,
        ),
    ];
    let plan = super::explain(
        &client,
        "SELECT n.key FROM notes n JOIN note_vectors v ON n.ns = v.ns AND n.key = v.key \
         WHERE n.kind = 3 ORDER BY v.embedding <=> $1 LIMIT $2",
        &[&super::PgVector(centers[0].clone()), &10i64],
    )
    .await;
    assert!(
        plan.contains("VectorSearchExec: table=note_vectors, k=10"),
        "{plan}"
    );
    assert!(
        plan.contains("joined_rows=read by key as hits arrive"),
        "{plan}"
    );
    // The notes joined to the hits are read by key: the scan of `notes` reads the k
    // keys the search found, not the table.
    let analyze = simple_column(
        &client,
        &format!(
            "EXPLAIN ANALYZE SELECT n.key FROM notes n JOIN note_vectors v \
             ON n.ns = v.ns AND n.key = v.key WHERE n.kind = 3 \
             ORDER BY v.embedding <=> '{}' LIMIT 10",
            vec_text(&centers[0])
        ),
        1,
    )
    .await
    .join("\n");
    let scan = analyze
        .lines()
        .find(|l| l.contains("RowStoreScan: table=notes"))
        .unwrap_or_else(|| panic!("{analyze}"));
    assert!(
        scan.contains("by key when a run-time filter lists the keys"),
        "{analyze}"
    );
    let read: usize = scan
        .split("output_rows=")
        .nth(1)
        .and_then(|r| r.split([',', ']']).next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{scan}"));
    assert!(read <= 10, "read {read} notes for 10 hits: {analyze}");
    for (where_sql, pred) in &cases {
        for center in centers.iter().take(3) {
            let query: Vec<f32> = center
                .iter()
                .map(|x| x + 0.3 * gaussian(&mut rng))
                .collect();
            let mut oracle: Vec<(f64, String)> = all
                .iter()
                .filter(|(d, f, _)| pred(d, f))
                .map(|(d, f, v)| (exact("cosine", &query, v), format!("m{}/{f}", d.id)))
                .collect();
            oracle.sort_by(|a, b| a.0.total_cmp(&b.0));
            oracle.truncate(K);
            let sql = format!(
                "SELECT n.key || '/' || v.field, v.embedding <=> $1 AS d FROM notes n \
                 JOIN note_vectors v ON n.ns = v.ns AND n.key = v.key WHERE {where_sql} \
                 ORDER BY v.embedding <=> $1 LIMIT $2"
            );
            let got: Vec<(String, f64)> = client
                .query(&sql, &[&super::PgVector(query.clone()), &(K as i64)])
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            assert_eq!(
                got.len(),
                oracle.len(),
                "{where_sql}: as many rows as the oracle"
            );
            for ((id, d), (od, oid)) in got.iter().zip(&oracle) {
                assert_eq!(id, oid, "{where_sql}: the oracle's rows, in order");
                assert!((d - od).abs() < 1e-4, "{where_sql}: {d} against {od}");
            }
            // The simple protocol: the same rows, the query vector and k as literals.
            let simple = sql
                .replace("$1", &format!("'{}'", vec_text(&query)))
                .replace("$2", &K.to_string());
            let ids = simple_column(&client, &simple, 0).await;
            let want: Vec<String> = oracle.iter().map(|o| o.1.clone()).collect();
            assert_eq!(ids, want, "{where_sql}: simple protocol");
        }
    }
    // Inside a transaction block the notes read by key are those the block sees: a note
    // it wrote is found, and gone after ROLLBACK.
    let nearest = format!(
        "SELECT n.key FROM notes n JOIN note_vectors v ON n.ns = v.ns AND n.key = v.key \
         WHERE n.kind = 3 ORDER BY v.embedding <=> '{}' LIMIT 1",
        vec_text(&centers[1])
    );
    client
        .batch_execute(&format!(
            "BEGIN; INSERT INTO notes VALUES ('users.new', 'fresh', 3, '{{}}'); \
             INSERT INTO note_vectors VALUES ('users.new', 'fresh', 'text', '{}')",
            vec_text(&centers[1])
        ))
        .await
        .expect("write in a block");
    let key: String = client
        .query_one(&nearest, &[])
        .await
        .expect("search in the block")
        .get(0);
    assert_eq!(key, "fresh", "the block's own note is joined");
    client.batch_execute("ROLLBACK").await.expect("rollback");
    let key: String = client
        .query_one(&nearest, &[])
        .await
        .expect("search after rollback")
        .get(0);
    assert_ne!(key, "fresh", "a rolled-back note is not joined");
}

/// A search over a join reads the joined rows by key as the index's hits arrive; when
/// they keep failing the joined table's conditions (here 2 rows of 3000 pass, and 3 are
/// asked for, so more hits are looked up than it looks up before it gives up), it reads
/// the keys of every row that passes instead, and still answers exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_over_a_join_whose_joined_rows_rarely_pass_reads_their_keys() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE tags (id int PRIMARY KEY, tag text);
             CREATE TABLE tag_vectors (id int PRIMARY KEY, embedding vector(4)) WITH (distance = 'cosine')",
        )
        .await
        .expect("create");
    let mut rng = StdRng::seed_from_u64(31);
    let vectors: Vec<Vec<f32>> = (0..3000)
        .map(|_| (0..4).map(|_| rng.gen_range(-1.0f32..1.0)).collect())
        .collect();
    let rare = |i: usize| i % 2000 == 17;
    for start in (0..3000).step_by(500) {
        let tags: Vec<String> = (start..start + 500)
            .map(|i| format!("({i}, '{}')", if rare(i) { "rare" } else { "common" }))
            .collect();
        let vecs: Vec<String> = (start..start + 500)
            .map(|i| format!("({i}, '{}')", vec_text(&vectors[i])))
            .collect();
        client
            .batch_execute(&format!(
                "INSERT INTO tags VALUES {}; INSERT INTO tag_vectors VALUES {}",
                tags.join(", "),
                vecs.join(", ")
            ))
            .await
            .expect("insert");
    }
    let query = vec![0.5f32, -0.25, 0.75, 0.1];
    let mut oracle: Vec<(f64, i32)> = (0..3000)
        .filter(|&i| rare(i))
        .map(|i| (exact("cosine", &query, &vectors[i]), i as i32))
        .collect();
    oracle.sort_by(|a, b| a.0.total_cmp(&b.0));
    let sql = "SELECT t.id, v.embedding <=> $1 FROM tags t JOIN tag_vectors v ON t.id = v.id \
               WHERE t.tag = 'rare' ORDER BY v.embedding <=> $1 LIMIT 3";
    let plan = super::explain(&client, sql, &[&super::PgVector(query.clone())]).await;
    assert!(
        plan.contains("joined_rows=read by key as hits arrive"),
        "{plan}"
    );
    let got: Vec<(i32, f64)> = client
        .query(sql, &[&super::PgVector(query.clone())])
        .await
        .expect("search")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(got.len(), oracle.len(), "{got:?} against {oracle:?}");
    for ((id, d), (od, oid)) in got.iter().zip(&oracle) {
        assert_eq!(id, oid, "{got:?} against {oracle:?}");
        assert!((d - od).abs() < 1e-4, "{d} against {od}");
    }
}
