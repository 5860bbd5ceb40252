//! The direct paths of prepared statements (`sql::direct`: `SELECT $1::int`, key
//! lookups, single-statement INSERT ... VALUES and UPDATE ... WHERE pk = $n, searches
//! whose WHERE clause the index takes whole) and the
//! plans made once at Parse (`sql::params::PreparedPlan`, for other queries) answer
//! exactly as the general path does, which writes the values into the statement's text
//! and plans it again. Two connections run the same random stream of
//! statements, one on table `a` with the direct paths, one on table `b` with
//! `SET vectorgate.direct = off` (every statement through the planner); every answer,
//! command tag and SQLSTATE must match, byte for byte in binary, and so must the two
//! tables at the end. The metrics counter shows that the first connection did take its
//! direct paths and the second did not.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::types::{FromSql, ToSql, Type};

use super::{PgVector, Server, counter, metrics_addr, sqlstate};

/// Any column, as the bytes the server sent.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Raw, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// What a statement answered: its rows (column types and bytes), its count, or its
/// SQLSTATE.
#[derive(Debug, PartialEq)]
enum Answer {
    Rows(Vec<String>, Vec<Vec<Option<Raw>>>),
    Count(u64),
    Error(String),
}

async fn run(
    client: &tokio_postgres::Client,
    sql: &str,
    types: &[Type],
    params: &[&(dyn ToSql + Sync)],
) -> Answer {
    let stmt = match client.prepare_typed(sql, types).await {
        Ok(s) => s,
        Err(e) => return Answer::Error(sqlstate(&e)),
    };
    if stmt.columns().is_empty() {
        return match client.execute(&stmt, params).await {
            Ok(n) => Answer::Count(n),
            Err(e) => Answer::Error(sqlstate(&e)),
        };
    }
    match client.query(&stmt, params).await {
        Ok(rows) => Answer::Rows(
            stmt.columns()
                .iter()
                .map(|c| format!("{} {}", c.name(), c.type_().name()))
                .collect(),
            rows.iter()
                .map(|r| (0..r.len()).map(|i| r.get::<_, Option<Raw>>(i)).collect())
                .collect(),
        ),
        Err(e) => Answer::Error(sqlstate(&e)),
    }
}

/// (direct paths, prepared plans, kept physical plans) taken so far, from `/metrics`.
async fn fast_counts(addr: &str) -> (u64, u64, u64) {
    (
        counter(addr, "vectorgate_direct_statements_total").await,
        counter(addr, "vectorgate_prepared_plans_total").await,
        counter(addr, "vectorgate_plan_cache_hits_total").await,
    )
}

/// One statement of the stream: SQL with `{t}` for the table, parameter types, values.
struct Op {
    sql: String,
    types: Vec<Type>,
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

/// A search answer with its rows in a fixed order: rows at equal distances come back in
/// the order of their points in the index, and tables `a` and `b` number the same rows'
/// points differently.
fn unordered(a: Answer) -> Answer {
    match a {
        Answer::Rows(cols, mut rows) => {
            rows.sort();
            Answer::Rows(cols, rows)
        }
        other => other,
    }
}

fn vector(rng: &mut StdRng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

/// `Some(value)`, or `None` with probability `p_null`.
macro_rules! maybe {
    ($rng:expr, $p_null:expr, $v:expr $(,)?) => {{
        let v = $v;
        (!$rng.gen_bool($p_null)).then_some(v)
    }};
}

/// A random statement of a shape with a direct path (and the cases it hands back: a
/// missing key, a NULL where none may be, a duplicate key, a wrong dimension, a value
/// that does not convert).
fn op(rng: &mut StdRng) -> Op {
    let id = rng.gen_range(0..40i64);
    let b = |v: Box<dyn ToSql + Sync + Send>| v;
    match rng.gen_range(0..20) {
        0 | 1 => {
            let dim = if rng.gen_bool(0.05) { 2 } else { 3 };
            Op {
                sql: "INSERT INTO {t} (id, title, n, score, tags, embedding) VALUES ($1, $2, $3, $4, $5, $6)".into(),
                types: vec![
                    Type::INT8,
                    Type::TEXT,
                    Type::INT4,
                    Type::FLOAT8,
                    Type::TEXT_ARRAY,
                    Type::FLOAT4_ARRAY,
                ],
                values: vec![
                    b(Box::new(id)),
                    b(Box::new(maybe!(rng, 0.1, format!("title {}", rng.gen_range(0..1000))))),
                    b(Box::new(maybe!(rng, 0.2, rng.gen_range(-5..5i32)))),
                    b(Box::new(maybe!(rng, 0.2, rng.gen_range(-1.0..1.0f64)))),
                    b(Box::new(maybe!(
                        rng,
                        0.2,
                        vec![Some("x".to_string()), None, Some("it's".to_string())],
                    ))),
                    b(Box::new(maybe!(rng, 0.2, vector(rng, dim)))),
                ],
            }
        }
        2 => Op {
            // No column list; literals beside parameters; the vector as text.
            sql: "INSERT INTO {t} VALUES ($1, 'literal', $2, NULL, '{a,b}', $3), ($4, 'two', -1, 2.5, NULL, NULL)".into(),
            types: vec![Type::INT8, Type::INT4, Type::TEXT, Type::INT8],
            values: vec![
                b(Box::new(id)),
                b(Box::new(rng.gen_range(0..9i32))),
                b(Box::new(format!("[{}, 0.5, -1]", rng.gen_range(0..3)))),
                b(Box::new(id + 100)),
            ],
        },
        3 | 4 => Op {
            sql: "UPDATE {t} SET n = $2, title = $3 WHERE id = $1".into(),
            types: vec![Type::INT8, Type::INT4, Type::TEXT],
            values: vec![
                b(Box::new(id)),
                b(Box::new(maybe!(rng, 0.2, rng.gen_range(0..100i32)))),
                b(Box::new(maybe!(rng, 0.1, format!("updated {}", rng.gen_range(0..9))))),
            ],
        },
        5 => Op {
            // An alias, a text parameter for an int column (converted, or 22P02), the
            // key on the right, a vector.
            sql: "UPDATE {t} AS x SET n = $2, embedding = $3 WHERE $1 = x.id".into(),
            types: vec![Type::INT8, Type::TEXT, Type::FLOAT4_ARRAY],
            values: vec![
                b(Box::new(id)),
                b(Box::new(if rng.gen_bool(0.2) {
                    "not a number".to_string()
                } else {
                    rng.gen_range(0..9).to_string()
                })),
                b(Box::new(vector(rng, 3))),
            ],
        },
        6 => Op {
            sql: "SELECT id, title AS name, n, score, tags FROM {t} WHERE id = $1".into(),
            types: vec![Type::INT8],
            values: vec![b(Box::new(maybe!(rng, 0.1, id)))],
        },
        7 => Op {
            // Every column, the key as text (converted, or the general path's error).
            sql: "SELECT * FROM {t} WHERE id = $1".into(),
            types: vec![Type::TEXT],
            values: vec![b(Box::new(if rng.gen_bool(0.2) {
                "x1".to_string()
            } else {
                id.to_string()
            }))],
        },
        // Upserts: a taken key is updated from EXCLUDED (or from the stored row), a new
        // one inserted; DO NOTHING keeps the first of two rows of one key; the same key
        // twice under DO UPDATE is 21000; a parameter in the clause goes the general way.
        8 | 15 => Op {
            sql: "INSERT INTO {t} (id, title, n, embedding) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n, title = EXCLUDED.title".into(),
            types: vec![Type::INT8, Type::TEXT, Type::INT4, Type::FLOAT4_ARRAY],
            values: vec![
                b(Box::new(id)),
                b(Box::new(maybe!(rng, 0.1, format!("upserted {}", rng.gen_range(0..9))))),
                b(Box::new(maybe!(rng, 0.2, rng.gen_range(0..100i32)))),
                b(Box::new(maybe!(rng, 0.2, vector(rng, 3)))),
            ],
        },
        16 => Op {
            sql: "INSERT INTO {t} (id, title) VALUES ($1, $2), ($3, 'second') ON CONFLICT (id) DO NOTHING".into(),
            types: vec![Type::INT8, Type::TEXT, Type::INT8],
            values: vec![
                b(Box::new(id)),
                b(Box::new(format!("kept {}", rng.gen_range(0..9)))),
                b(Box::new(if rng.gen_bool(0.3) { id } else { rng.gen_range(0..40i64) })),
            ],
        },
        17 => {
            let sql = if rng.gen_bool(0.3) {
                "INSERT INTO {t} (id, n, title) VALUES ($1, $2, 'x'), ($3, 1, 'y') ON CONFLICT (id) DO UPDATE SET n = $2"
            } else {
                "INSERT INTO {t} (id, n, title) VALUES ($1, $2, 'x'), ($3, 1, 'y') ON CONFLICT (id) DO UPDATE SET n = {t}.n + EXCLUDED.n WHERE {t}.n < 50"
            };
            Op {
                sql: sql.into(),
                types: vec![Type::INT8, Type::INT4, Type::INT8],
                values: vec![
                    b(Box::new(id)),
                    b(Box::new(rng.gen_range(0..9i32))),
                    b(Box::new(if rng.gen_bool(0.5) { id } else { rng.gen_range(0..40i64) })),
                ],
            }
        }
        // Queries without a direct path: planned once at Parse, their values bound into
        // the plan (on the first connection) or into the text (on the second).
        9 => Op {
            sql: "SELECT id, n, title FROM {t} WHERE n > $1 ORDER BY id".into(),
            types: vec![Type::INT4],
            values: vec![b(Box::new(maybe!(rng, 0.1, rng.gen_range(-3..9i32))))],
        },
        10 => Op {
            // Aggregates whose answer does not depend on the order rows arrive in (a sum of
            // floats does, in its last bit).
            sql: "SELECT count(*), count(score), sum(n), max(title), min(n) FROM {t} WHERE title <> $1 AND id < $2".into(),
            types: vec![Type::TEXT, Type::INT8],
            values: vec![
                b(Box::new(format!("title {}", rng.gen_range(0..1000)))),
                b(Box::new(rng.gen_range(0..200i64))),
            ],
        },
        11 => Op {
            sql: "SELECT x.id, y.n FROM {t} x JOIN {t} y ON x.id = y.id WHERE x.n = $1 OR y.title = $2 ORDER BY 1".into(),
            types: vec![Type::INT4, Type::TEXT],
            values: vec![
                b(Box::new(rng.gen_range(0..9i32))),
                b(Box::new("two".to_string())),
            ],
        },
        // Placeholders typed only by their casts, as SQLAlchemy writes them: the plan
        // made at Parse takes the cast's type (a NULL limit is no limit).
        18 => Op {
            sql: "SELECT id, title, n FROM {t} WHERE title = $1::VARCHAR OR n = $2::INTEGER ORDER BY id LIMIT $3::INTEGER".into(),
            types: vec![],
            values: vec![
                b(Box::new(maybe!(rng, 0.1, format!("updated {}", rng.gen_range(0..9))))),
                b(Box::new(maybe!(rng, 0.2, rng.gen_range(0..9i32)))),
                b(Box::new(maybe!(rng, 0.2, [0i32, 2, 5, 100][rng.gen_range(0..4)]))),
            ],
        },
        19 => {
            // The client's own types for cast placeholders: an int4 for `::BIGINT`, text
            // for it (converted, or 22P02).
            let text = rng.gen_bool(0.3);
            let bound = rng.gen_range(0..60i32);
            Op {
                sql: "SELECT count(*), max(n), min(title) FROM {t} WHERE id < $1::BIGINT AND title <> $2::TEXT".into(),
                types: vec![if text { Type::TEXT } else { Type::INT4 }, Type::TEXT],
                values: vec![
                    if !text {
                        b(Box::new(bound))
                    } else if rng.gen_bool(0.3) {
                        b(Box::new("forty".to_string()))
                    } else {
                        b(Box::new(bound.to_string()))
                    },
                    b(Box::new("two".to_string())),
                ],
            }
        }
        // Searches: k = 100 returns every row that passes (an order-free comparison);
        // k = 0, a NULL or a wrong-sized vector and a NULL bound fail or go the general way.
        12 => {
            let dim = if rng.gen_bool(0.05) { 2 } else { 3 };
            Op {
                sql: "SELECT id, title, distance FROM vector_search('{t}', $1, $2) WHERE n < $3".into(),
                types: vec![Type::FLOAT4_ARRAY, Type::INT4, Type::INT4],
                values: vec![
                    b(Box::new(maybe!(rng, 0.05, vector(rng, dim)))),
                    b(Box::new(if rng.gen_bool(0.1) { 0i32 } else { 100 })),
                    b(Box::new(maybe!(rng, 0.1, rng.gen_range(0..6i32)))),
                ],
            }
        }
        13 => Op {
            sql: "SELECT * FROM vector_search('{t}', $1::real[], 100) AS s WHERE s.title = $2 AND 3 > n".into(),
            types: vec![Type::FLOAT4_ARRAY, Type::TEXT],
            values: vec![
                b(Box::new(vector(rng, 3))),
                b(Box::new(if rng.gen_bool(0.3) {
                    "two".to_string()
                } else {
                    format!("updated {}", rng.gen_range(0..9))
                })),
            ],
        },
        14 => Op {
            sql: "SELECT id AS key, distance FROM vector_search('{t}', $1, 100)".into(),
            types: vec![Type::FLOAT4_ARRAY],
            values: vec![b(Box::new(vector(rng, 3)))],
        },
        _ => Op {
            sql: "SELECT $1::int, $2::text, $3::float8, $4::bool, $5::bigint".into(),
            types: vec![],
            values: vec![
                b(Box::new(maybe!(rng, 0.2, rng.gen_range(-9..9i32)))),
                b(Box::new(maybe!(rng, 0.2, "it's".to_string()))),
                b(Box::new(rng.gen_range(-1.0..1.0f64))),
                b(Box::new(rng.gen_bool(0.5))),
                b(Box::new(i64::MAX - rng.gen_range(0..3i64))),
            ],
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_paths_answer_as_the_general_path_does() {
    let server = Server::start_args(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server).await;
    let direct = server.client().await;
    let general = server.client().await;
    general
        .batch_execute("SET vectorgate.direct = off")
        .await
        .expect("set");
    for t in ["a", "b"] {
        direct
            .batch_execute(&format!(
                "CREATE TABLE {t} (id bigint PRIMARY KEY, title text NOT NULL, n int, \
                 score double precision, tags text[], embedding vector(3))"
            ))
            .await
            .expect("create");
    }
    let mut rng = StdRng::seed_from_u64(11);
    let ops: Vec<Op> = (0..240).map(|_| op(&mut rng)).collect();
    let mut answers = [Vec::new(), Vec::new()];
    let mut counts = Vec::new();
    for (i, (client, table)) in [(&direct, "a"), (&general, "b")].into_iter().enumerate() {
        let before = fast_counts(&metrics).await;
        for o in &ops {
            let params: Vec<&(dyn ToSql + Sync)> = o
                .values
                .iter()
                .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let sql = o.sql.replace("{t}", table);
            let mut answer = run(client, &sql, &o.types, &params).await;
            if sql.contains("vector_search") {
                answer = unordered(answer);
            }
            answers[i].push((sql.clone(), answer));
        }
        let after = fast_counts(&metrics).await;
        counts.push((after.0 - before.0, after.1 - before.1, after.2 - before.2));
    }
    let mut kinds = std::collections::BTreeMap::new();
    for ((sql_a, a), (_, b)) in answers[0].iter().zip(&answers[1]) {
        assert_eq!(a, b, "{sql_a}: the direct path and the general path differ");
        let kind = match a {
            Answer::Rows(_, r) if r.is_empty() => "no rows",
            Answer::Rows(..) => "rows",
            Answer::Count(0) => "count 0",
            Answer::Count(_) => "count",
            Answer::Error(code) => code.as_str(),
        };
        *kinds.entry(kind.to_string()).or_insert(0) += 1;
        if sql_a.contains("vector_search") {
            *kinds.entry(format!("search {kind}")).or_insert(0) += 1;
        }
    }
    // The stream covered what it is meant to: found and missing rows, writes, and the
    // errors the direct paths must report as the general path does.
    for k in [
        "rows",
        "no rows",
        "count",
        "count 0",
        "23505",
        "23502",
        "22P02",
        "21000",
        "search rows",
        "search no rows",
        "search 22023",
    ] {
        assert!(kinds.contains_key(k), "no {k} in the stream: {kinds:?}");
    }
    let all = |t: &str| format!("SELECT * FROM {t} ORDER BY id");
    assert_eq!(
        run(&direct, &all("a"), &[], &[]).await,
        run(&direct, &all("b"), &[], &[]).await,
        "the tables differ after the same writes"
    );
    // Every statement that did not fail could take its direct path or its prepared
    // plan (failures go back to the planner, or fail inside the path, uncounted).
    let succeeded = answers[0]
        .iter()
        .filter(|(_, a)| !matches!(a, Answer::Error(_)))
        .count() as u64;
    let (direct_paths, prepared_plans, kept) = counts[0];
    eprintln!(
        "direct paths {direct_paths}, prepared plans {prepared_plans} ({kept} on a kept physical plan), for {succeeded} answers"
    );
    // Values repeat in the stream, with writes between: some answers came from a
    // physical plan kept from the previous execution.
    assert!(kept > 5, "only {kept} executions ran on a kept plan");
    assert!(
        (direct_paths + prepared_plans) * 10 >= succeeded * 9
            && direct_paths > 100
            && prepared_plans > 20,
        "the first connection took {direct_paths} direct paths and {prepared_plans} prepared plans for {succeeded} answers"
    );
    assert_eq!(
        (counts[1].0, counts[1].1),
        (0, 0),
        "vectorgate.direct = off still took direct paths or prepared plans"
    );
    // A query whose placeholders only casts type runs on the plan made at Parse.
    let cast = direct
        .prepare("SELECT id FROM a WHERE title <> $1::VARCHAR ORDER BY id LIMIT $2::INTEGER")
        .await
        .expect("prepare the cast query");
    let before = counter(&metrics, "vectorgate_prepared_plans_total").await;
    for limit in [1i32, 3, 5] {
        let rows = direct
            .query(&cast, &[&"no such title", &limit])
            .await
            .expect("the cast query");
        assert_eq!(rows.len(), limit as usize);
    }
    assert_eq!(
        counter(&metrics, "vectorgate_prepared_plans_total").await - before,
        3,
        "the cast query was planned again at each execution"
    );
    // An upsert of a taken key takes its direct path and updates the row.
    let before = counter(&metrics, "vectorgate_direct_statements_total").await;
    let n = direct
        .execute(
            "INSERT INTO a (id, title) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title",
            &[&7i64, &"direct upsert"],
        )
        .await
        .expect("upsert");
    assert_eq!(n, 1);
    assert_eq!(
        counter(&metrics, "vectorgate_direct_statements_total").await - before,
        1,
        "the upsert did not take its direct path"
    );
    let title: String = direct
        .query_one("SELECT title FROM a WHERE id = 7", &[])
        .await
        .expect("read")
        .get(0);
    assert_eq!(title, "direct upsert");
}

/// A plan made at Parse is not used once the catalog changed: a table dropped and made
/// again with its columns in another order is read as it is now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_plan_follows_a_recreated_table() {
    let server = Server::start();
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE re (id bigint PRIMARY KEY, a text, b int, embedding vector(2));
             INSERT INTO re VALUES (1, 'one', 10, '[1,0]'), (2, 'two', 20, '[0,1]');",
        )
        .await
        .expect("create");
    let stmt = client
        .prepare("SELECT a, b FROM re WHERE b > $1 ORDER BY a")
        .await
        .expect("prepare");
    let read = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, i32)> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let first = read(client.query(&stmt, &[&15i32]).await.expect("query"));
    assert_eq!(first, vec![("two".to_string(), 20)]);
    client
        .batch_execute(
            "DROP TABLE re;
             CREATE TABLE re (id bigint PRIMARY KEY, b int, a text, embedding vector(2));
             INSERT INTO re VALUES (1, 30, 'three', '[1,0]'), (2, 5, 'five', '[0,1]'), (3, 40, 'four', NULL);",
        )
        .await
        .expect("recreate");
    let again = read(client.query(&stmt, &[&15i32]).await.expect("query again"));
    assert_eq!(
        again,
        vec![("four".to_string(), 40), ("three".to_string(), 30)]
    );
}

/// A query planned at Parse keeps its physical plan while its values repeat, and still
/// reads the tables as it runs: a row written in between is in the next answer, a
/// transaction block sees its own writes and a rolled-back write is gone; a join and an
/// aggregate too. A query calling the clock is planned again every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_plan_reads_the_tables_as_it_runs() {
    let server = Server::start_args(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE k (id bigint PRIMARY KEY, n int, title text);
             CREATE TABLE kn (n int PRIMARY KEY, label text);
             INSERT INTO k VALUES (1, 7, 'one'), (2, 8, 'two');
             INSERT INTO kn VALUES (7, 'seven'), (8, 'eight');",
        )
        .await
        .expect("create");
    let by_n = client
        .prepare("SELECT id, title FROM k WHERE n = $1::INTEGER ORDER BY id")
        .await
        .expect("prepare");
    let joined = client
        .prepare(
            "SELECT k.id, kn.label, count(*) OVER () FROM k JOIN kn ON k.n = kn.n \
             WHERE kn.label = $1 ORDER BY k.id",
        )
        .await
        .expect("prepare the join");
    let counted = client
        .prepare("SELECT count(*), sum(n) FROM k WHERE title <> $1")
        .await
        .expect("prepare the aggregate");
    let ids =
        |rows: Vec<tokio_postgres::Row>| -> Vec<i64> { rows.iter().map(|r| r.get(0)).collect() };
    let hits = || counter(&metrics, "vectorgate_plan_cache_hits_total");
    let before = hits().await;
    let mut answers = Vec::new();
    let step = async |client: &tokio_postgres::Client| {
        let a = ids(client.query(&by_n, &[&7i32]).await.expect("by n"));
        let b = ids(client.query(&joined, &[&"seven"]).await.expect("join"));
        let c = client
            .query_one(&counted, &[&"none"])
            .await
            .expect("aggregate");
        (a, b, c.get::<_, i64>(0), c.get::<_, Option<i64>>(1))
    };
    answers.push(step(&client).await);
    client
        .batch_execute("INSERT INTO k VALUES (3, 7, 'three')")
        .await
        .expect("insert");
    answers.push(step(&client).await);
    client
        .batch_execute(
            "BEGIN; INSERT INTO k VALUES (4, 7, 'four'); UPDATE k SET n = 8 WHERE id = 1",
        )
        .await
        .expect("write in a block");
    answers.push(step(&client).await);
    client.batch_execute("ROLLBACK").await.expect("rollback");
    answers.push(step(&client).await);
    client
        .batch_execute("DELETE FROM k WHERE id = 3; UPDATE kn SET label = 'other' WHERE n = 7")
        .await
        .expect("delete");
    answers.push(step(&client).await);
    assert_eq!(
        answers,
        vec![
            (vec![1], vec![1], 2, Some(15)),
            (vec![1, 3], vec![1, 3], 3, Some(22)),
            (vec![3, 4], vec![3, 4], 4, Some(30)),
            (vec![1, 3], vec![1, 3], 3, Some(22)),
            (vec![1], vec![], 2, Some(15)),
        ]
    );
    // Each of the three ran on its kept plan after its first execution.
    assert_eq!(hits().await - before, 12, "kept plans were not reused");
    // The clock is read at each execution, never kept in a plan.
    let timed = client
        .prepare("SELECT id FROM k WHERE n = $1 AND now() > '2000-01-01'::timestamptz")
        .await
        .expect("prepare the clock query");
    let before = hits().await;
    for _ in 0..3 {
        assert_eq!(
            ids(client.query(&timed, &[&7i32]).await.expect("clock")),
            vec![1]
        );
    }
    assert_eq!(
        hits().await - before,
        0,
        "a plan that read the clock was kept"
    );
}

/// A prepared search takes its direct path whichever way the client sends the vector
/// (a `real[]` the server typed, text cast to `vector`), with and without a filter, and
/// answers as the exact brute-force oracle does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_searches_take_the_direct_path_and_answer_exactly() {
    let server = Server::start_args(&["--metrics", "127.0.0.1:0"]);
    let metrics = metrics_addr(&server).await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE s (id bigint PRIMARY KEY, cat int, tag text, embedding vector(4))",
        )
        .await
        .expect("create");
    let mut rng = StdRng::seed_from_u64(5);
    let docs: Vec<(i64, i32, String, Vec<f32>)> = (0..60)
        .map(|i| {
            (
                i,
                (i % 5) as i32,
                format!("t{}", i % 3),
                vector(&mut rng, 4),
            )
        })
        .collect();
    let insert = client
        .prepare("INSERT INTO s VALUES ($1, $2, $3, $4)")
        .await
        .expect("prepare insert");
    for (id, cat, tag, v) in &docs {
        client
            .execute(&insert, &[id, cat, tag, &PgVector(v.clone())])
            .await
            .expect("insert");
    }
    let oracle = |q: &[f32], pass: &dyn Fn(i32, &str) -> bool, k: usize| -> Vec<i64> {
        let mut all: Vec<(f64, i64)> = docs
            .iter()
            .filter(|(_, cat, tag, _)| pass(*cat, tag))
            .map(|(id, _, _, v)| (super::search::exact("cosine", q, v), *id))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        all.into_iter().take(k).map(|x| x.1).collect()
    };
    let plain = client
        .prepare("SELECT id, distance FROM vector_search('s', $1, 5)")
        .await
        .expect("prepare plain");
    let filtered = client
        .prepare_typed(
            "SELECT s.id FROM vector_search('s', $1::vector, 4) AS s WHERE cat < $2 AND s.tag = $3",
            &[Type::TEXT],
        )
        .await
        .expect("prepare filtered");
    let before = counter(&metrics, "vectorgate_direct_statements_total").await;
    for _ in 0..10 {
        let q = vector(&mut rng, 4);
        let rows = client.query(&plain, &[&q]).await.expect("plain search");
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(ids, oracle(&q, &|_, _| true, 5), "plain search");
        for (r, id) in rows.iter().zip(&ids) {
            let v = &docs[*id as usize].3;
            let d: f64 = r.get(1);
            assert!((d - super::search::exact("cosine", &q, v)).abs() < 1e-6);
        }
        let text = format!(
            "[{}]",
            q.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let rows = client
            .query(&filtered, &[&text, &3i32, &"t1"])
            .await
            .expect("filtered search");
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(
            ids,
            oracle(&q, &|cat, tag| cat < 3 && tag == "t1", 4),
            "filtered search"
        );
    }
    let taken = counter(&metrics, "vectorgate_direct_statements_total").await - before;
    assert_eq!(taken, 20, "searches that took the direct path");
}
