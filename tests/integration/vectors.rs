//! Tables with several vector columns: each column with a dimension is a named vector of
//! the table's collection, searched by its own distance through `vector_search(t, col,
//! q, k)` and `ORDER BY col <op> q LIMIT k`; a column without a dimension is searched by
//! reading the rows. Every answer is checked against an exact oracle computed here,
//! with filters, through both protocols, before and after columns are added and dropped.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::search::{exact, gaussian};
use super::{
    PgHalfVec, PgSparseVec, PgVector, Server, simple_rows, sparse_text, sqlstate, vec_text,
};

const N: usize = 1500;
const K: usize = 10;

/// One row: a scalar to filter on and three vectors, any of which may be NULL.
struct Row {
    id: i64,
    category: String,
    bucket: i32,
    /// vector(16), cosine.
    title: Option<Vec<f32>>,
    /// vector(8), l2 (set by an index's operator class).
    body: Option<Vec<f32>>,
    /// vector without a dimension, inner product (the table's distance).
    raw: Option<Vec<f32>>,
    /// halfvec(12), cosine: kept at half precision (the values here are already
    /// rounded; the query is rounded by the server, as pgvector casts it).
    half: Option<Vec<f32>>,
    /// sparsevec(200), by the table's distance (dot), then by cosine: a few non-zero
    /// elements, held here as the dense vector it equals; a sparse vector of the index.
    sparse: Option<Vec<f32>>,
    /// bit(32), by Hamming distance (`<~>`), which no index serves: computed exactly.
    bits: Option<String>,
}

/// The (id, distance) rows of a query over the simple protocol (text).
async fn simple_pairs(client: &tokio_postgres::Client, sql: &str) -> Vec<(i64, f64)> {
    simple_rows(client, sql)
        .await
        .into_iter()
        .map(|r| {
            let cell = |i: usize| r[i].as_deref().expect("a value");
            (
                cell(0).parse().expect("id"),
                cell(1).parse().expect("distance"),
            )
        })
        .collect()
}

fn random_bits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| if rng.gen_bool(0.5) { '1' } else { '0' })
        .collect()
}

fn hamming(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).filter(|(x, y)| x != y).count()
}

/// The bit column searched by Hamming distance with each filter, through both protocols,
/// against the exact ranking (ties broken by id, as the query asks).
async fn check_bits(client: &tokio_postgres::Client, rows: &[Row], queries: &[String]) {
    for (filter, pred) in FILTERS {
        for (q, query) in queries.iter().enumerate() {
            let mut want: Vec<(i64, f64)> = rows
                .iter()
                .filter(|r| pred(r))
                .filter_map(|r| r.bits.as_ref().map(|b| (r.id, hamming(b, query) as f64)))
                .collect();
            want.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            want.truncate(K);
            let got: Vec<(i64, f64)> = if q % 2 == 0 {
                client
                    .query(
                        &format!(
                            "SELECT id, bits <~> $1 FROM multi WHERE bits IS NOT NULL AND {filter} ORDER BY bits <~> $1, id LIMIT {K}"
                        ),
                        &[query],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("bits {filter}: {e}"))
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect()
            } else {
                simple_pairs(
                    client,
                    &format!(
                        "SELECT id, hamming_distance(bits, '{query}') FROM multi WHERE bits IS NOT NULL AND {filter} ORDER BY bits <~> '{query}', id LIMIT {K}"
                    ),
                )
                .await
            };
            assert_eq!(got, want, "bits <~> {query} where {filter}");
        }
    }
}

/// A sparse vector of `dim` with a few non-zero elements, near one of `centers`' own.
fn sparse(rng: &mut StdRng, dim: usize, centers: &[Vec<usize>]) -> Vec<f32> {
    let mut v = vec![0f32; dim];
    for &i in &centers[rng.gen_range(0..centers.len())] {
        v[i] = 1.0 + gaussian(rng).abs();
    }
    for _ in 0..3 {
        v[rng.gen_range(0..dim)] = gaussian(rng);
    }
    v
}

/// Each element rounded to half precision.
fn to_half(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect()
}

fn clustered(rng: &mut StdRng, centers: &[Vec<f32>]) -> Vec<f32> {
    let c = &centers[rng.gen_range(0..centers.len())];
    c.iter().map(|x| x + 0.3 * gaussian(rng)).collect()
}

fn centers(rng: &mut StdRng, dim: usize) -> Vec<Vec<f32>> {
    (0..12)
        .map(|_| (0..dim).map(|_| gaussian(rng)).collect())
        .collect()
}

fn text_or_null(v: &Option<Vec<f32>>) -> String {
    v.as_ref()
        .map_or_else(|| "NULL".to_string(), |v| format!("'{}'", vec_text(v)))
}

/// The ids of the k rows nearest `query` by `distance` among those with a vector in
/// `column` that pass `pred`, with their exact distances.
fn oracle(
    rows: &[Row],
    column: fn(&Row) -> &Option<Vec<f32>>,
    distance: &str,
    query: &[f32],
    pred: fn(&Row) -> bool,
) -> Vec<(i64, f64)> {
    let mut all: Vec<(i64, f64)> = rows
        .iter()
        .filter(|r| pred(r))
        .filter_map(|r| {
            column(r)
                .as_ref()
                .map(|v| (r.id, exact(distance, query, v)))
        })
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1));
    all.truncate(K);
    all
}

type Column = (
    &'static str,
    fn(&Row) -> &Option<Vec<f32>>,
    &'static str,
    &'static str,
);

const COLUMNS: [Column; 5] = [
    ("title", |r| &r.title, "cosine", "<=>"),
    ("body", |r| &r.body, "l2", "<->"),
    ("raw", |r| &r.raw, "dot", "<#>"),
    ("half", |r| &r.half, "cosine", "<=>"),
    ("sparse", |r| &r.sparse, "dot", "<#>"),
];

type Filter = (&'static str, fn(&Row) -> bool);

const FILTERS: [Filter; 3] = [
    ("TRUE", |_| true),
    ("category = 'c2'", |r| r.category == "c2"),
    ("bucket < 30 AND category <> 'c1'", |r| {
        r.bucket < 30 && r.category != "c1"
    }),
];

/// Search every column with every filter, both protocols and both query forms, and
/// compare with the oracle: each answer passes its filter, carries exact distances in
/// order, and finds (nearly) every row the oracle finds (all of them for the column
/// the index does not hold, which is read exactly).
async fn check_all(
    client: &tokio_postgres::Client,
    rows: &[Row],
    columns: &[Column],
    queries: &[(usize, Vec<f32>)],
) {
    for &(name, column, distance, op) in columns {
        let dim = rows.iter().find_map(|r| column(r).as_ref()).map(Vec::len);
        for (filter, pred) in FILTERS {
            let mut found = 0usize;
            let mut wanted = 0usize;
            for (q, (_, query)) in queries.iter().filter(|(d, _)| Some(*d) == dim).enumerate() {
                // What the oracle compares with: a halfvec's query at half precision.
                let exact_query = if name == "half" {
                    to_half(query)
                } else {
                    query.clone()
                };
                let expected = oracle(rows, column, distance, &exact_query, pred);
                let (vector_param, half_param, sparse_param) = (
                    PgVector(query.clone()),
                    PgHalfVec(query.clone()),
                    PgSparseVec(query.clone()),
                );
                let got: Vec<(i64, f64)> = match q % 3 {
                    // Extended protocol: the named column, the vector as a real[].
                    0 => client
                        .query(
                            &format!(
                                "SELECT id, distance FROM vector_search('multi', '{name}', $1, {K}) WHERE {filter} ORDER BY distance"
                            ),
                            &[query],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("{name} {filter}: {e}"))
                        .iter()
                        .map(|r| (r.get(0), r.get(1)))
                        .collect(),
                    // Extended protocol: pgvector's operator, the vector in its binary
                    // format.
                    // (A halfvec column's operand is a halfvec, as pgvector types it.)
                    1 => client
                        .query(
                            &format!(
                                "SELECT id, ({name} {op} $1)::float8 FROM multi WHERE {filter} ORDER BY {name} {op} $1 LIMIT {K}"
                            ),
                            &[match name {
                                "half" => &half_param as &(dyn tokio_postgres::types::ToSql + Sync),
                                "sparse" => &sparse_param,
                                _ => &vector_param,
                            }],
                        )
                        .await
                        .unwrap_or_else(|e| panic!("{name} {op} {filter}: {e}"))
                        .iter()
                        .map(|r| (r.get(0), r.get(1)))
                        .collect(),
                    // Simple protocol: text in, text out.
                    _ => {
                        simple_pairs(
                            client,
                            &format!(
                                "SELECT id, {name} {op} '{v}' FROM multi WHERE {filter} ORDER BY {name} {op} '{v}' LIMIT {K}",
                                v = vec_text(query)
                            ),
                        )
                        .await
                    }
                };
                assert_eq!(
                    got.len(),
                    expected.len(),
                    "{name} {filter}: k counts the rows with a vector that pass"
                );
                for (id, d) in &got {
                    let row = &rows[*id as usize];
                    assert!(pred(row), "{name} {filter}: row {id} fails the filter");
                    let v = column(row).as_ref().expect("a row with a vector");
                    let e = exact(distance, &exact_query, v);
                    assert!(
                        (e - d).abs() < 1e-3 * (1.0 + e.abs()),
                        "{name}: distance {d} of row {id}, exactly {e}"
                    );
                }
                assert!(got.windows(2).all(|w| w[0].1 <= w[1].1), "{name}: ordered");
                wanted += expected.len();
                found += got
                    .iter()
                    .filter(|(id, _)| expected.iter().any(|(e, _)| e == id))
                    .count();
            }
            let recall = found as f64 / wanted.max(1) as f64;
            eprintln!("multi.{name:6} recall@{K} {recall:.3}  filter: {filter}");
            let floor = if name == "raw" || name == "sparse" {
                1.0
            } else {
                0.95
            };
            assert!(
                recall >= floor,
                "{name} {filter}: recall@{K} {recall:.3} < {floor}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vector_column_is_searched_by_its_own_distance() {
    let server = Server::start();
    let (client, notices) = server.client_with_notices().await;
    let mut rng = StdRng::seed_from_u64(1616);
    let (ct, cb, cr, ch) = (
        centers(&mut rng, 16),
        centers(&mut rng, 8),
        centers(&mut rng, 4),
        centers(&mut rng, 12),
    );
    let cs: Vec<Vec<usize>> = (0..12)
        .map(|_| (0..5).map(|_| rng.gen_range(0..200)).collect())
        .collect();
    let mut rows: Vec<Row> = (0..N)
        .map(|i| Row {
            id: i as i64,
            category: format!("c{}", i % 5),
            bucket: (i % 100) as i32,
            title: (i % 7 != 0).then(|| clustered(&mut rng, &ct)),
            body: (i % 5 != 1).then(|| clustered(&mut rng, &cb)),
            raw: (i % 3 != 2).then(|| clustered(&mut rng, &cr)),
            half: (i % 4 != 3).then(|| to_half(&clustered(&mut rng, &ch))),
            sparse: (i % 6 != 5).then(|| sparse(&mut rng, 200, &cs)),
            bits: (i % 8 != 7).then(|| random_bits(&mut rng, 32)),
        })
        .collect();
    client
        .batch_execute(
            "CREATE TABLE multi (id bigint PRIMARY KEY, category text, bucket int, \
             title vector(16), body vector(8), raw vector, half halfvec(12), \
             sparse sparsevec(200), bits bit(32)) \
             WITH (distance = 'dot', indexing_threshold_kb = 16)",
        )
        .await
        .expect("create");
    assert!(
        notices
            .lock()
            .expect("notices")
            .iter()
            .any(|n| n.contains("\"raw\" has no dimension")),
        "a column without a dimension is announced as read row by row"
    );
    for chunk in rows.chunks(250) {
        let values: Vec<String> = chunk
            .iter()
            .map(|r| {
                format!(
                    "({}, '{}', {}, {}, {}, {}, {}, {}, {})",
                    r.id,
                    r.category,
                    r.bucket,
                    text_or_null(&r.title),
                    text_or_null(&r.body),
                    text_or_null(&r.raw),
                    text_or_null(&r.half),
                    r.sparse
                        .as_ref()
                        .map_or_else(|| "NULL".to_string(), |v| format!("'{}'", sparse_text(v))),
                    r.bits
                        .as_ref()
                        .map_or_else(|| "NULL".to_string(), |b| format!("'{b}'"))
                )
            })
            .collect();
        client
            .batch_execute(&format!("INSERT INTO multi VALUES {}", values.join(", ")))
            .await
            .expect("insert");
    }
    // The title column by cosine (its own operator class), body by l2: the table's
    // default (dot) is what a column gets until an index says otherwise.
    client
        .batch_execute(
            "CREATE INDEX ON multi USING hnsw (title vector_cosine_ops);
             CREATE INDEX ON multi USING hnsw (body vector_l2_ops);
             CREATE INDEX ON multi USING hnsw (half halfvec_cosine_ops);",
        )
        .await
        .expect("indexes");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    // Without a column named, a table with several is ambiguous.
    let e = client
        .query("SELECT id FROM vector_search('multi', '[1,2]', 3)", &[])
        .await
        .expect_err("ambiguous");
    assert_eq!(sqlstate(&e), "42702");
    let e = client
        .query(
            "SELECT id FROM vector_search('multi', 'category', '[1,2]', 3)",
            &[],
        )
        .await
        .expect_err("not a vector");
    assert_eq!(sqlstate(&e), "42809");
    let e = client
        .query(
            "SELECT id FROM vector_search('multi', 'body', '[1,2]', 3)",
            &[],
        )
        .await
        .expect_err("wrong dimension");
    assert_eq!(sqlstate(&e), "22000");

    // Each column's search is its own index search, or a row scan for `raw`.
    let plan = super::explain(
        &client,
        "SELECT id FROM multi WHERE category = 'c2' ORDER BY body <-> $1 LIMIT 5",
        &[&PgVector(vec![0.0; 8])],
    )
    .await;
    assert!(
        plan.contains("VectorSearchExec: table=multi, k=5, vector=body, distance=l2"),
        "{plan}"
    );
    let plan = super::explain(
        &client,
        "SELECT id FROM multi ORDER BY half <=> $1 LIMIT 5",
        &[&PgHalfVec(vec![0.5; 12])],
    )
    .await;
    assert!(
        plan.contains("VectorSearchExec: table=multi, k=5, vector=half, distance=cosine"),
        "{plan}"
    );
    // A halfvec comes back in its own binary form, as it was written (the values here
    // are already at half precision).
    for id in [0i64, 1, 2, 3] {
        let got: Option<PgHalfVec> = client
            .query_one("SELECT half FROM multi WHERE id = $1", &[&id])
            .await
            .expect("read a halfvec")
            .get(0);
        assert_eq!(got.map(|h| h.0), rows[id as usize].half, "row {id}");
    }
    let plan = super::explain(
        &client,
        "SELECT id FROM vector_search('multi', 'raw', '[1,0,0,0]', 5)",
        &[],
    )
    .await;
    assert!(
        plan.contains("vector=raw, distance=dot, mode=exact row scan"),
        "{plan}"
    );

    // A sparsevec column is searched through the index's sparse vectors.
    let plan = super::explain(
        &client,
        "SELECT id FROM multi WHERE bucket < 30 ORDER BY sparse <#> $1 LIMIT 5",
        &[&PgSparseVec(vec![1.0; 200])],
    )
    .await;
    assert!(
        plan.contains("VectorSearchExec: table=multi, k=5, vector=sparse, distance=dot")
            && !plan.contains("exact row scan"),
        "{plan}"
    );

    let mut queries: Vec<(usize, Vec<f32>)> = Vec::new();
    for _ in 0..9 {
        queries.push((16, clustered(&mut rng, &ct)));
        queries.push((8, clustered(&mut rng, &cb)));
        queries.push((4, clustered(&mut rng, &cr)));
        queries.push((12, clustered(&mut rng, &ch)));
        queries.push((200, sparse(&mut rng, 200, &cs)));
    }
    check_all(&client, &rows, &COLUMNS, &queries).await;
    // By cosine, once an index's operator class says so (the index holds the vectors
    // normalised).
    client
        .batch_execute("CREATE INDEX ON multi USING hnsw (sparse sparsevec_cosine_ops)")
        .await
        .expect("sparsevec_cosine_ops");
    const SPARSE_COSINE: [Column; 1] = [("sparse", |r| &r.sparse, "cosine", "<=>")];
    check_all(&client, &rows, &SPARSE_COSINE, &queries).await;
    let bit_queries: Vec<String> = (0..6).map(|_| random_bits(&mut rng, 32)).collect();
    check_bits(&client, &rows, &bit_queries).await;

    // A row's vectors change one at a time: each column's search follows its own.
    client
        .batch_execute(&format!(
            "UPDATE multi SET body = NULL WHERE id = 3; UPDATE multi SET title = '{}' WHERE id = 3;",
            vec_text(&queries[0].1)
        ))
        .await
        .expect("update");
    rows[3].body = None;
    rows[3].title = Some(queries[0].1.clone());
    check_all(&client, &rows, &COLUMNS[..2], &queries).await;

    // A vector column added later is indexed from the rows it is given; dropping
    // another leaves the rest searchable.
    client
        .batch_execute(
            "ALTER TABLE multi ADD COLUMN extra vector(16);
             UPDATE multi SET extra = title WHERE bucket < 50;
             ALTER TABLE multi DROP COLUMN body;",
        )
        .await
        .expect("add and drop");
    for r in &mut rows {
        r.body = if r.bucket < 50 { r.title.clone() } else { None };
    }
    const AFTER: [Column; 2] = [
        ("title", |r| &r.title, "cosine", "<=>"),
        // `extra` took `body`'s place in the rows above; searched by the table's dot.
        ("extra", |r| &r.body, "dot", "<#>"),
    ];
    let queries: Vec<(usize, Vec<f32>)> = queries.into_iter().filter(|(d, _)| *d == 16).collect();
    check_all(&client, &rows, &AFTER, &queries).await;
    let e = client
        .query(
            "SELECT id FROM vector_search('multi', 'body', $1, 3)",
            &[&vec![0f32; 8]],
        )
        .await
        .expect_err("dropped");
    assert_eq!(sqlstate(&e), "42703");
}

/// pgvector's order of two vectors: element by element, then the shorter first.
fn pgvector_order(a: &[f32], b: &[f32]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        match x.partial_cmp(y) {
            Some(std::cmp::Ordering::Equal) | None => {}
            Some(o) => return o,
        }
    }
    a.len().cmp(&b.len())
}

fn parse_vec(text: &str) -> Vec<f32> {
    text.trim_matches(['[', ']'])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("a float"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_operators_on_columns_and_parameters_match_an_oracle() {
    let server = Server::start();
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(4242);
    // Halves from -8 to 8: every sum, difference and product is exact in a float4.
    let mut value = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| rng.gen_range(-16i32..=16) as f32 / 2.0)
            .collect()
    };
    let rows: Vec<(i64, Vec<f32>, Vec<f32>)> = (0..60).map(|i| (i, value(4), value(4))).collect();
    client
        .batch_execute("CREATE TABLE ops (id bigint PRIMARY KEY, a vector(4), b vector(4))")
        .await
        .expect("create");
    for (id, a, b) in &rows {
        client
            .execute(
                "INSERT INTO ops VALUES ($1, $2, $3)",
                &[id, &PgVector(a.clone()), &PgVector(b.clone())],
            )
            .await
            .expect("insert");
    }
    let q = value(4);
    let elementwise = |f: fn(f32, f32) -> f32, x: &[f32], y: &[f32]| -> Vec<f32> {
        x.iter().zip(y).map(|(a, b)| f(*a, *b)).collect()
    };
    // Columns with columns (simple protocol), and columns with a parameter (extended,
    // pgvector's binary form, and text as a driver without pgvector's types sends it).
    let simple = client
        .simple_query("SELECT id, (a + b)::text, (a - b)::text, (a * b)::text, (a || b)::text FROM ops ORDER BY id")
        .await
        .expect("simple");
    let got: Vec<Vec<String>> = simple
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..5)
                    .map(|i| r.get(i).unwrap_or_default().to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), rows.len());
    for ((id, a, b), g) in rows.iter().zip(&got) {
        assert_eq!(g[0], id.to_string());
        assert_eq!(
            parse_vec(&g[1]),
            elementwise(|x, y| x + y, a, b),
            "a + b of {id}"
        );
        assert_eq!(
            parse_vec(&g[2]),
            elementwise(|x, y| x - y, a, b),
            "a - b of {id}"
        );
        assert_eq!(
            parse_vec(&g[3]),
            elementwise(|x, y| x * y, a, b),
            "a * b of {id}"
        );
        assert_eq!(
            parse_vec(&g[4]),
            [a.clone(), b.clone()].concat(),
            "a || b of {id}"
        );
    }
    let sums = client
        .query(
            "SELECT id, (a + $1::vector)::text FROM ops ORDER BY id",
            &[&PgVector(q.clone())],
        )
        .await
        .expect("a + $1::vector");
    for ((id, a, _), r) in rows.iter().zip(&sums) {
        assert_eq!(r.get::<_, i64>(0), *id);
        assert_eq!(parse_vec(r.get(1)), elementwise(|x, y| x + y, a, &q));
    }
    // An uncast parameter beside a vector column is a vector, as Postgres infers it.
    let minus = client
        .prepare("SELECT id, (b - $1)::text FROM ops ORDER BY id")
        .await
        .expect("prepare b - $1");
    assert_eq!(minus.params()[0].name(), "vector");
    let diffs = client
        .query(&minus, &[&PgVector(q.clone())])
        .await
        .expect("b - $1");
    for ((_, _, b), r) in rows.iter().zip(&diffs) {
        assert_eq!(parse_vec(r.get(1)), elementwise(|x, y| x - y, b, &q));
    }
    // Comparisons and ORDER BY follow pgvector's order.
    let below: Vec<i64> = client
        .query(
            "SELECT id FROM ops WHERE a < $1::vector ORDER BY id",
            &[&PgVector(q.clone())],
        )
        .await
        .expect("a < $1")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i64> = rows
        .iter()
        .filter(|(_, a, _)| pgvector_order(a, &q).is_lt())
        .map(|(id, _, _)| *id)
        .collect();
    assert_eq!(below, expected);
    let ordered: Vec<i64> = client
        .query("SELECT id FROM ops ORDER BY a, id", &[])
        .await
        .expect("ORDER BY a")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut expected: Vec<&(i64, Vec<f32>, Vec<f32>)> = rows.iter().collect();
    expected.sort_by(|x, y| pgvector_order(&x.1, &y.1).then(x.0.cmp(&y.0)));
    assert_eq!(ordered, expected.iter().map(|r| r.0).collect::<Vec<i64>>());
    // Bad operands are errors with pgvector's SQLSTATEs; the connection goes on.
    let e = client
        .query("SELECT a + $1::vector FROM ops", &[&PgVector(vec![1.0])])
        .await
        .expect_err("dimensions");
    assert_eq!(sqlstate(&e), "22000");
    let e = client
        .query("SELECT a + 1 FROM ops", &[])
        .await
        .expect_err("vector + integer");
    assert_eq!(sqlstate(&e), "42883");
    let n: i64 = client
        .query_one("SELECT count(*) FROM ops WHERE a + b = b + a", &[])
        .await
        .expect("still connected")
        .get(0);
    assert_eq!(n, rows.len() as i64);
}

/// Whether a row (by id) passes a filter.
type IdFilter = fn(i64) -> bool;

/// The rows of a sparsevec search and the oracle's: the same distances rank by rank,
/// and the same row wherever its distance is not tied with another row's.
fn assert_ranked_as(got: &[(i64, f64)], all: &[(i64, f64)], k: usize, what: &str) {
    let want = &all[..k.min(all.len())];
    assert_eq!(got.len(), want.len(), "{what}: {got:?} against {want:?}");
    for (i, ((gid, gd), (wid, wd))) in got.iter().zip(want).enumerate() {
        assert!(
            (gd - wd).abs() < 1e-6,
            "{what}: rank {i} is {gd}, exactly {wd}"
        );
        let tied = all.iter().filter(|(_, d)| (d - wd).abs() < 1e-9).count() > 1;
        if !tied {
            assert_eq!(gid, wid, "{what}: rank {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_index_search_ranks_the_rows_it_cannot_find_exactly() {
    // Qdrant scores a sparse vector by its inner product with the query and finds only
    // the points that share an element with it: rows sharing none (inner product 0)
    // and rows whose product is negative rank after the index's positive hits, and a
    // search that needs them is answered from the rows.
    let server = Server::start();
    let (client, notices) = server.client_with_notices().await;
    client
        .batch_execute(
            "CREATE TABLE sp (id bigint PRIMARY KEY, s sparsevec(10), b bit(4)) WITH (distance = 'dot')",
        )
        .await
        .expect("create");
    // Rows 1-20: one element, at (id % 10) + 1, of value id; rows 21-25: -id at 1;
    // row 26: NULL.
    let mut rows: Vec<(i64, Option<Vec<f32>>)> = (1..=20)
        .map(|id| {
            let mut v = vec![0f32; 10];
            v[(id % 10) as usize] = id as f32;
            (id, Some(v))
        })
        .collect();
    for id in 21..=25 {
        let mut v = vec![0f32; 10];
        v[0] = -(id as f32);
        rows.push((id, Some(v)));
    }
    rows.push((26, None));
    let values: Vec<String> = rows
        .iter()
        .map(|(id, v)| match v {
            Some(v) => format!("({id}, '{}', '1010')", sparse_text(v)),
            None => format!("({id}, NULL, NULL)"),
        })
        .collect();
    client
        .batch_execute(&format!("INSERT INTO sp VALUES {}", values.join(", ")))
        .await
        .expect("insert");
    let plan = super::explain(
        &client,
        "SELECT id FROM sp ORDER BY s <#> $1 LIMIT 5",
        &[&PgSparseVec(vec![1.0; 10])],
    )
    .await;
    assert!(
        plan.contains("VectorSearchExec: table=sp, k=5, distance=dot")
            && !plan.contains("exact row scan"),
        "{plan}"
    );

    let oracle = |distance: &str, q: &[f32], pred: &dyn Fn(i64) -> bool| {
        let mut all: Vec<(i64, f64)> = rows
            .iter()
            .filter(|(id, _)| pred(*id))
            .filter_map(|(id, v)| Some((*id, exact(distance, q, v.as_ref()?))))
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1));
        all
    };
    let one_at = |i: usize, x: f32| {
        let mut v = vec![0f32; 10];
        v[i] = x;
        v
    };
    let cases: Vec<(Vec<f32>, usize, &str, IdFilter)> = vec![
        // Two rows share the element: the rest rank by rows the index cannot find.
        (one_at(0, 1.0), 5, "TRUE", |_| true),
        // Answered by the index alone.
        (one_at(0, 1.0), 2, "TRUE", |_| true),
        // Every row: the negative products last.
        (one_at(0, 1.0), 30, "TRUE", |_| true),
        // The negative rows share the element with a positive product.
        (one_at(0, -1.0), 5, "TRUE", |_| true),
        (one_at(0, 1.0), 3, "id > 15", |id| id > 15),
        (one_at(4, 2.0), 4, "id % 2 = 0", |id| id % 2 == 0),
    ];
    for (distance, op) in [("dot", "<#>"), ("cosine", "<=>")] {
        if distance == "cosine" {
            client
                .batch_execute("CREATE INDEX ON sp USING hnsw (s sparsevec_cosine_ops)")
                .await
                .expect("cosine");
        }
        for (q, k, filter, pred) in &cases {
            let all = oracle(distance, q, pred);
            let what = format!("{distance} {} k={k} WHERE {filter}", sparse_text(q));
            let extended: Vec<(i64, f64)> = client
                .query(
                    &format!(
                        "SELECT id, (s {op} $1)::float8 FROM sp WHERE {filter} ORDER BY s {op} $1 LIMIT {k}"
                    ),
                    &[&PgSparseVec(q.clone())],
                )
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            assert_ranked_as(&extended, &all, *k, &format!("{what}, extended"));
            let simple = simple_pairs(
                &client,
                &format!(
                    "SELECT id, distance FROM vector_search('sp', '{}', {k}) WHERE {filter} ORDER BY distance",
                    sparse_text(q)
                ),
            )
            .await;
            assert_ranked_as(&simple, &all, *k, &format!("{what}, simple"));
        }
    }

    // Arrays of pgvector's types are refused, saying so.
    let e = client
        .batch_execute("CREATE TABLE va (id int PRIMARY KEY, v vector(2)[])")
        .await
        .expect_err("an array of vectors");
    assert_eq!(sqlstate(&e), "0A000");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(
        message.contains("arrays of pgvector's types (vector(2)[]) are not supported"),
        "{message}"
    );

    // By L2 distance the index cannot rank a sparse vector: the column leaves it, its
    // searches read the rows, and EXPLAIN says why; so it does for distances no index
    // serves.
    client
        .batch_execute("CREATE INDEX ON sp USING hnsw (s sparsevec_l2_ops)")
        .await
        .expect("l2");
    let q = one_at(0, 1.0);
    let got = simple_pairs(
        &client,
        &format!(
            "SELECT id, s <-> '{v}' FROM sp ORDER BY s <-> '{v}' LIMIT 5",
            v = sparse_text(&q)
        ),
    )
    .await;
    assert_ranked_as(&got, &oracle("l2", &q, &|_| true), 5, "l2");
    notices.lock().expect("notices").clear();
    for (sql, why) in [
        (
            "SELECT id FROM sp ORDER BY s <-> '{1:1}/10' LIMIT 3",
            "sparsevec column \"s\" is not in the vector index, which cannot rank a sparsevec by L2 distance",
        ),
        (
            "SELECT id FROM sp ORDER BY s <+> '{1:1}/10' LIMIT 3",
            "serves no L1 ordering",
        ),
        (
            "SELECT id FROM sp ORDER BY b <~> '1100' LIMIT 3",
            "serves no hamming ordering",
        ),
    ] {
        let plan = super::explain(&client, sql, &[]).await;
        assert!(!plan.contains("VectorSearchExec"), "{sql}: {plan}");
        let said = notices.lock().expect("notices").join("\n");
        assert!(
            said.contains("reads every row of \"sp\" and ranks them exactly") && said.contains(why),
            "{sql}: {said}"
        );
        notices.lock().expect("notices").clear();
    }
}

/// `ALTER COLUMN e TYPE vector(8)` of a column without a dimension: a row of another
/// dimension fails it (the table as it was), then the rows are written again and the
/// column joins the index; `TYPE halfvec(8)` rounds every row to half precision and the
/// index holds those. Each search, through both protocols and with a filter, against an
/// exact oracle of the rows as they are (cosine, the table's distance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vector_column_changes_type_with_its_rows() {
    let server = Server::start();
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(2116);
    let centers = centers(&mut rng, 8);
    client
        .batch_execute("CREATE TABLE retyped (id int PRIMARY KEY, cat int, e vector)")
        .await
        .expect("create");
    let mut rows: Vec<(i64, i32, Vec<f32>)> = Vec::new();
    for id in 0..400i64 {
        let (cat, v) = (rng.gen_range(0..3), clustered(&mut rng, &centers));
        client
            .execute(
                "INSERT INTO retyped VALUES ($1, $2, $3)",
                &[&(id as i32), &cat, &PgVector(v.clone())],
            )
            .await
            .expect("insert");
        rows.push((id, cat, v));
    }
    client
        .batch_execute("INSERT INTO retyped VALUES (400, 0, '[1,2,3]'), (401, 1, NULL)")
        .await
        .expect("a short vector and none");
    let query = clustered(&mut rng, &centers);
    let search =
        "SELECT id, (e <=> $1)::float8 FROM retyped WHERE cat = 1 ORDER BY e <=> $1 LIMIT 10";
    let plan = super::explain(&client, search, &[&PgVector(query.clone())]).await;
    assert!(!plan.contains("VectorSearchExec"), "no index yet: {plan}");

    let e = client
        .batch_execute("ALTER TABLE retyped ALTER COLUMN e TYPE vector(8)")
        .await
        .expect_err("a row of 3 dimensions");
    assert_eq!(sqlstate(&e), "22000", "{e:?}");
    let texts = simple_rows(&client, "SELECT e::text FROM retyped WHERE id = 400").await;
    assert_eq!(texts, vec![vec![Some("[1,2,3]".to_string())]], "as it was");

    client
        .batch_execute(
            "DELETE FROM retyped WHERE id = 400; ALTER TABLE retyped ALTER COLUMN e TYPE vector(8)",
        )
        .await
        .expect("every vector has 8 dimensions");
    let plan = super::explain(&client, search, &[&PgVector(query.clone())]).await;
    assert!(
        plan.contains("VectorSearchExec: table=retyped, k=10, distance=cosine"),
        "{plan}"
    );
    let mut all: Vec<(i64, f64)> = rows
        .iter()
        .filter(|r| r.1 == 1)
        .map(|r| (r.0, exact("cosine", &query, &r.2)))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let extended: Vec<(i64, f64)> = client
        .query(search, &[&PgVector(query.clone())])
        .await
        .expect("search")
        .iter()
        .map(|r| (i64::from(r.get::<_, i32>(0)), r.get(1)))
        .collect();
    assert_ranked_as(&extended, &all, 10, "vector(8), extended");

    // At half precision: each stored vector and the query rounded, as pgvector casts.
    client
        .batch_execute("ALTER TABLE retyped ALTER COLUMN e TYPE halfvec(8)")
        .await
        .expect("to halfvec");
    let half_query = to_half(&query);
    let mut all: Vec<(i64, f64)> = rows
        .iter()
        .filter(|r| r.1 == 1)
        .map(|r| (r.0, exact("cosine", &half_query, &to_half(&r.2))))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let simple = simple_pairs(
        &client,
        &format!(
            "SELECT id, e <=> '{q}' FROM retyped WHERE cat = 1 ORDER BY e <=> '{q}' LIMIT 10",
            q = vec_text(&query)
        ),
    )
    .await;
    assert_ranked_as(&simple, &all, 10, "halfvec(8), simple");
    let plan = super::explain(
        &client,
        "SELECT id FROM retyped ORDER BY e <=> $1 LIMIT 10",
        &[&PgHalfVec(query.clone())],
    )
    .await;
    assert!(
        plan.contains("VectorSearchExec: table=retyped, k=10, distance=cosine"),
        "{plan}"
    );
    let stored: Option<PgHalfVec> = client
        .query_one("SELECT e FROM retyped WHERE id = 7", &[])
        .await
        .expect("read")
        .get(0);
    assert_eq!(stored.map(|h| h.0), Some(to_half(&rows[7].2)));
    let nulls = simple_rows(&client, "SELECT count(*) FROM retyped WHERE e IS NULL").await;
    assert_eq!(nulls, vec![vec![Some("1".to_string())]], "the NULL stays");
}
