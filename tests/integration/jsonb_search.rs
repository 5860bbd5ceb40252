//! Searches filtered on a jsonb metadata column, against an exact oracle computed here:
//! random jsonb predicates (`->>`, `#>>`, numeric casts, `@>`, `?`, `IN`, `IS NULL`,
//! `jsonb_path_match`), combined with each other and with a filter on an ordinary
//! column under AND, OR and NOT, through `vector_search` and through
//! `ORDER BY embedding <-> q LIMIT k`, in both protocols. The oracle applies each
//! predicate in SQL's three-valued logic to the document as generated: the same rows, in
//! the same order, and k of them whenever k pass, down to values that 0.1% of the rows
//! hold. The pushed part runs in the vector index (embedded, or the Qdrant server when
//! the run has one), the rest after the join.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use serde_json::{Value as J, json};

use super::{Server, vec_text};

const ROWS: i64 = 2000;
/// Topics by frequency: "rare" is held by 0.1% of the rows, "few" by 1%.
const TOPICS: [&str; 5] = ["animals", "plants", "rocks", "few", "rare"];
const TAGS: [&str; 4] = ["a", "b", "c", "d"];

#[derive(Debug, Clone)]
struct Row {
    id: i64,
    meta: Option<J>,
    c: Option<String>,
    v: [f32; 4],
}

fn rows() -> Vec<Row> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    (1..=ROWS)
        .map(|id| {
            let meta = if id % 97 == 0 {
                None
            } else if id % 89 == 0 {
                // Documents that are not objects.
                Some(if id % 2 == 0 {
                    json!(["a", "topic"])
                } else {
                    json!("topic")
                })
            } else {
                let mut m = serde_json::Map::new();
                let topic = match id {
                    _ if id % 1000 == 7 => Some(json!("rare")),
                    _ if id % 100 == 3 => Some(json!("few")),
                    _ => match rng.gen_range(0..10) {
                        0 => None,
                        1 => Some(J::Null),
                        2 => Some(json!(5)),
                        r => Some(json!(TOPICS[(r as usize) % 3])),
                    },
                };
                if let Some(t) = topic {
                    m.insert("topic".into(), t);
                }
                match rng.gen_range(0..8) {
                    0 => {}
                    1 => {
                        m.insert("n".into(), J::Null);
                    }
                    2 => {
                        m.insert("n".into(), json!(rng.gen_range(0..20).to_string()));
                    }
                    3 => {
                        m.insert(
                            "n".into(),
                            json!(f64::from(rng.gen_range(0..40)) / 2.0 + 0.5),
                        );
                    }
                    _ => {
                        m.insert("n".into(), json!(rng.gen_range(0..20)));
                    }
                }
                if rng.gen_bool(0.7) {
                    let tags: Vec<J> = TAGS
                        .iter()
                        .filter(|_| rng.gen_bool(0.35))
                        .map(|t| json!(t))
                        .collect();
                    m.insert("tags".into(), J::Array(tags));
                }
                if rng.gen_bool(0.5) {
                    let mut nested = serde_json::Map::new();
                    if rng.gen_bool(0.8) {
                        nested.insert("k".into(), json!(TAGS[rng.gen_range(0..TAGS.len())]));
                    }
                    nested.insert("flag".into(), json!(rng.gen_bool(0.5)));
                    m.insert("nested".into(), J::Object(nested));
                }
                Some(J::Object(m))
            };
            Row {
                id,
                meta,
                c: rng
                    .gen_bool(0.9)
                    .then(|| TAGS[rng.gen_range(0..TAGS.len())].to_string()),
                v: std::array::from_fn(|_| rng.gen_range(-1.0f32..1.0)),
            }
        })
        .collect()
}

/// `->>` of a value: a string's text, null as NULL, numbers and booleans printed.
fn as_text(v: Option<&J>) -> Option<String> {
    match v? {
        J::Null => None,
        J::String(s) => Some(s.clone()),
        J::Bool(b) => Some(b.to_string()),
        J::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

/// `->` by key: NULL unless the document is an object with the key.
fn field<'a>(m: Option<&'a J>, key: &str) -> Option<&'a J> {
    m?.as_object()?.get(key)
}

/// `jsonb ? key`.
fn has_key(v: &J, key: &str) -> bool {
    match v {
        J::Object(m) => m.contains_key(key),
        J::Array(items) => items.iter().any(|i| i.as_str() == Some(key)),
        J::String(s) => s == key,
        _ => false,
    }
}

#[derive(Debug, Clone)]
enum Pred {
    TopicEq(String),
    TopicIn(Vec<String>),
    TopicNull(bool),
    NCmp(&'static str, f64),
    ContainsTopic(String),
    ContainsTag(String),
    HasKey(&'static str),
    TagsHas(String),
    NestedEq(String),
    PathGt(i64),
    PathTopic(String),
    CEq(String),
    Not(Box<Pred>),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
}

impl Pred {
    fn sql(&self) -> String {
        match self {
            Pred::TopicEq(w) => format!("meta->>'topic' = '{w}'"),
            Pred::TopicIn(l) => format!(
                "meta->>'topic' IN ({})",
                l.iter()
                    .map(|w| format!("'{w}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Pred::TopicNull(true) => "meta->>'topic' IS NULL".into(),
            Pred::TopicNull(false) => "meta->>'topic' IS NOT NULL".into(),
            Pred::NCmp(op, x) => format!("(meta->>'n')::float8 {op} {x:?}"),
            Pred::ContainsTopic(w) => format!("meta @> '{{\"topic\": \"{w}\"}}'"),
            Pred::ContainsTag(w) => format!("meta @> '{{\"tags\": [\"{w}\"]}}'"),
            Pred::HasKey(k) => format!("meta ? '{k}'"),
            Pred::TagsHas(w) => format!("meta->'tags' ? '{w}'"),
            Pred::NestedEq(w) => format!("meta #>> '{{nested,k}}' = '{w}'"),
            Pred::PathGt(x) => format!("jsonb_path_match(meta, '$.n > $v', '{{\"v\": {x}}}')"),
            Pred::PathTopic(w) => {
                format!("jsonb_path_match(meta, '$.topic == \"{w}\" || $.nested.flag == true')")
            }
            Pred::CEq(w) => format!("c = '{w}'"),
            Pred::Not(p) => format!("NOT ({})", p.sql()),
            Pred::And(l, r) => format!("({}) AND ({})", l.sql(), r.sql()),
            Pred::Or(l, r) => format!("({}) OR ({})", l.sql(), r.sql()),
        }
    }

    /// SQL's three-valued logic; None is unknown.
    fn eval(&self, r: &Row) -> Option<bool> {
        let m = r.meta.as_ref();
        match self {
            Pred::TopicEq(w) => as_text(field(m, "topic")).map(|t| t == *w),
            Pred::TopicIn(l) => as_text(field(m, "topic")).map(|t| l.contains(&t)),
            Pred::TopicNull(null) => Some(as_text(field(m, "topic")).is_none() == *null),
            Pred::NCmp(op, x) => {
                let n: f64 = as_text(field(m, "n"))?.parse().ok()?;
                Some(match *op {
                    "=" => n == *x,
                    "<" => n < *x,
                    "<=" => n <= *x,
                    ">" => n > *x,
                    _ => n >= *x,
                })
            }
            Pred::ContainsTopic(w) => Some(
                m?.as_object()
                    .is_some_and(|o| o.get("topic") == Some(&json!(w))),
            ),
            Pred::ContainsTag(w) => Some(m?.as_object().is_some_and(|o| {
                o.get("tags")
                    .and_then(J::as_array)
                    .is_some_and(|t| t.contains(&json!(w)))
            })),
            Pred::HasKey(k) => Some(has_key(m?, k)),
            Pred::TagsHas(w) => Some(has_key(field(m, "tags")?, w)),
            Pred::NestedEq(w) => as_text(field(field(m, "nested"), "k")).map(|t| t == *w),
            Pred::PathGt(x) => {
                // `$.n > $v`: numbers compare; a string is unknown; missing or null false.
                let doc = m?;
                match field(Some(doc), "n") {
                    Some(J::Number(n)) => Some(n.as_f64()? > *x as f64),
                    Some(J::String(_)) => None,
                    _ => Some(false),
                }
            }
            Pred::PathTopic(w) => {
                let doc = m?;
                let topic = match field(Some(doc), "topic") {
                    Some(J::String(s)) => Some(s == w),
                    Some(J::Null) | None => Some(false),
                    Some(_) => None,
                };
                let flag = match field(field(Some(doc), "nested"), "flag") {
                    Some(J::Bool(b)) => Some(*b),
                    _ => Some(false),
                };
                match (topic, flag) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                }
            }
            Pred::CEq(w) => r.c.as_ref().map(|c| c == w),
            Pred::Not(p) => p.eval(r).map(|b| !b),
            Pred::And(l, r2) => match (l.eval(r), r2.eval(r)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Pred::Or(l, r2) => match (l.eval(r), r2.eval(r)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
        }
    }
}

fn leaf() -> impl Strategy<Value = Pred> {
    let topic = prop::sample::select(TOPICS.to_vec()).prop_map(str::to_string);
    let tag = prop::sample::select(TAGS.to_vec()).prop_map(str::to_string);
    let op = prop::sample::select(vec!["=", "<", "<=", ">", ">="]);
    prop_oneof![
        topic.clone().prop_map(Pred::TopicEq),
        Just(Pred::TopicEq("5".into())),
        prop::collection::vec(topic.clone(), 1..3).prop_map(Pred::TopicIn),
        any::<bool>().prop_map(Pred::TopicNull),
        (op, 0i32..40).prop_map(|(o, x)| Pred::NCmp(o, f64::from(x) / 2.0)),
        topic.clone().prop_map(Pred::ContainsTopic),
        tag.clone().prop_map(Pred::ContainsTag),
        prop::sample::select(vec!["topic", "n", "tags", "nested"]).prop_map(Pred::HasKey),
        tag.clone().prop_map(Pred::TagsHas),
        tag.clone().prop_map(Pred::NestedEq),
        (0i64..20).prop_map(Pred::PathGt),
        topic.prop_map(Pred::PathTopic),
        tag.prop_map(Pred::CEq),
    ]
}

fn predicate() -> impl Strategy<Value = Pred> {
    leaf().prop_recursive(3, 10, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|p| Pred::Not(Box::new(p))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Pred::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner).prop_map(|(l, r)| Pred::Or(Box::new(l), Box::new(r))),
        ]
    })
}

fn l2(a: &[f32; 4], b: &[f32; 4]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum()
}

#[test]
fn jsonb_filtered_searches_match_a_three_valued_oracle() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = Server::start();
    let data = rows();
    let client = rt.block_on(async {
        let c = server.client().await;
        c.batch_execute(
            "CREATE TABLE jd (id bigint PRIMARY KEY, meta jsonb, c text, embedding vector(4)) \
             WITH (distance = 'l2')",
        )
        .await
        .expect("create");
        for chunk in data.chunks(200) {
            let values: Vec<String> = chunk
                .iter()
                .map(|r| {
                    format!(
                        "({}, {}, {}, '{}')",
                        r.id,
                        r.meta
                            .as_ref()
                            .map(|m| format!("'{m}'"))
                            .unwrap_or("NULL".into()),
                        r.c.as_ref()
                            .map(|c| format!("'{c}'"))
                            .unwrap_or("NULL".into()),
                        vec_text(&r.v)
                    )
                })
                .collect();
            c.batch_execute(&format!("INSERT INTO jd VALUES {}", values.join(", ")))
                .await
                .expect("insert");
        }
        // Payload indexes on some of the values the filters read (BTREE on expressions,
        // GIN on the document): the answers must not change.
        c.batch_execute(
            "CREATE INDEX ON jd ((meta->>'topic')); \
             CREATE INDEX jd_n ON jd (((meta->>'n')::float8)); \
             CREATE INDEX ON jd USING gin (meta); \
             CREATE INDEX ON jd USING gin ((meta->'tags'))",
        )
        .await
        .expect("json indexes");
        let e = c
            .batch_execute("CREATE INDEX jd_n ON jd (((meta->>'n')::int))")
            .await
            .expect_err("the name is taken");
        assert_eq!(super::sqlstate(&e), "42P07");
        c.batch_execute(
            "CREATE INDEX IF NOT EXISTS jd_n ON jd (((meta->>'n')::int)); \
             DROP INDEX jd_n; CREATE INDEX jd_n ON jd (((meta->>'n')::float8))",
        )
        .await
        .expect("IF NOT EXISTS, DROP INDEX and again");
        // The catalog lists them (psql's `\d` reads this), as indexes, not constraints.
        let listed: Vec<(String, bool, String)> = c
            .query(
                "SELECT c2.relname::text, i.indisunique, pg_get_indexdef(i.indexrelid) \
                 FROM pg_index i JOIN pg_class c2 ON c2.oid = i.indexrelid \
                 JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname = 'jd' ORDER BY 1",
                &[],
            )
            .await
            .expect("catalog")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let names: Vec<&str> = listed.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(
            names,
            ["jd_expr_idx", "jd_expr_idx1", "jd_meta_idx", "jd_n", "jd_pkey"],
            "{listed:?}"
        );
        assert!(
            listed
                .iter()
                .filter(|l| l.0 != "jd_pkey")
                .all(|l| !l.1 && l.2.starts_with(&format!("CREATE INDEX {} ON public.jd USING ", l.0))),
            "{listed:?}"
        );
        if let Some(url) = super::qdrant() {
            // On a Qdrant server: the collection has the payload indexes they name.
            let qdrant = qdrant_client::Qdrant::from_url(&url)
                .build()
                .expect("qdrant client");
            let name = format!("{}_jd", super::keyspace_for(&server.data));
            let info = qdrant
                .collection_info(name.as_str())
                .await
                .expect("collection info");
            let schema = info.result.expect("info").payload_schema;
            for (field, ty) in [
                ("meta.topic", qdrant_client::qdrant::PayloadSchemaType::Keyword),
                ("meta.n", qdrant_client::qdrant::PayloadSchemaType::Float),
                ("meta.tags", qdrant_client::qdrant::PayloadSchemaType::Keyword),
                ("_vg_json_keys", qdrant_client::qdrant::PayloadSchemaType::Keyword),
            ] {
                assert_eq!(
                    schema.get(field).map(|s| s.data_type),
                    Some(ty as i32),
                    "{field} in {schema:?}"
                );
            }
        }
        c.batch_execute("SET vectorgate.exact = on")
            .await
            .expect("exact");
        // The jsonb filters run in the vector index, not after the join.
        for (filter, pushed) in [
            ("meta->>'topic' = 'rare'", "pushed_filter=meta.topic = 'rare', after_join=none"),
            ("(meta->>'n')::float8 > 3", "pushed_filter=meta.n > 3, after_join=none"),
            ("meta @> '{\"tags\": [\"a\"]}'", "pushed_filter=meta.tags = 'a', after_join=none"),
        ] {
            let plan: Vec<String> = c
                .query(
                    &format!(
                        "EXPLAIN SELECT id FROM jd WHERE {filter} ORDER BY embedding <-> '[0,0,0,1]' LIMIT 5"
                    ),
                    &[],
                )
                .await
                .expect("explain")
                .iter()
                .map(|r| r.get::<_, String>(1))
                .collect();
            assert!(
                plan.iter().any(|l| l.contains(pushed)),
                "{filter}: expected {pushed} in {plan:?}"
            );
        }
        // A column kept out of the payload is filtered after the join, with the same
        // answers: a json column, or any other but a vector (a large text body, say).
        for (table, column, filter) in [("jx", "meta jsonb", "meta->>'k' = '1'"), ("jy", "t text", "t = 'a'")] {
            let name = column.split(' ').next().unwrap_or_default();
            let (a, b) = if table == "jx" {
                ("'{\"k\": 1}'", "'{\"k\": 2}'")
            } else {
                ("'a'", "'b'")
            };
            c.batch_execute(&format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, {column}, embedding vector(2)) \
                 WITH (distance = 'l2', payload_exclude = '{name}'); \
                 INSERT INTO {table} VALUES (1, {a}, '[1,0]'), (2, {b}, '[0,1]'), (3, {a}, '[1,1]')"
            ))
            .await
            .expect("payload_exclude");
            let sql = format!(
                "SELECT id FROM {table} WHERE {filter} ORDER BY embedding <-> '[0,1]' LIMIT 1"
            );
            let plan: Vec<String> = c
                .query(&format!("EXPLAIN {sql}"), &[])
                .await
                .expect("explain")
                .iter()
                .map(|r| r.get::<_, String>(1))
                .collect();
            assert!(
                plan.iter().any(|l| l.contains("pushed_filter=none")),
                "kept out of the payload: {plan:?}"
            );
            let ids: Vec<i64> = c
                .query(&sql, &[])
                .await
                .expect("search")
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert_eq!(ids, vec![3], "{table}");
        }
        let e = c
            .batch_execute(
                "CREATE TABLE jz (id bigint PRIMARY KEY, t text, embedding vector(2)) WITH (payload_exclude = 'embedding')",
            )
            .await
            .expect_err("a vector column");
        assert_eq!(super::sqlstate(&e), "42P16");
        c
    });
    let query = [0.25f32, -0.5, 0.1, 0.3];
    let cases = std::env::var("VECTORGATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/integration/fuzz-regressions.txt",
        ))),
        ..Config::default()
    });
    let result = runner.run(
        &(predicate(), 1usize..=10, any::<bool>(), any::<bool>()),
        |(p, k, simple, pgvector)| {
            let sql_pred = p.sql();
            let mut matching: Vec<&Row> =
                data.iter().filter(|r| p.eval(r) == Some(true)).collect();
            let everyone: BTreeSet<i64> = matching.iter().map(|r| r.id).collect();
            matching.sort_by(|x, y| l2(&x.v, &query).total_cmp(&l2(&y.v, &query)));
            let top: Vec<i64> = matching.iter().take(k).map(|r| r.id).collect();
            let q = vec_text(&query);
            let all_sql = format!(
                "SELECT id FROM vector_search('jd', '{q}', {ROWS}) WHERE {sql_pred}"
            );
            let top_sql = if pgvector {
                format!("SELECT id FROM jd WHERE {sql_pred} ORDER BY embedding <-> '{q}' LIMIT {k}")
            } else {
                format!(
                    "SELECT id FROM vector_search('jd', '{q}', {k}) WHERE {sql_pred} ORDER BY distance"
                )
            };
            let client = &client;
            let (all, first) = rt.block_on(async {
                (
                    super::first_column_ids(client, &all_sql, simple).await,
                    super::first_column_ids(client, &top_sql, simple).await,
                )
            });
            let all = all.map_err(|e| TestCaseError::fail(format!("{all_sql}: {e:?}")))?;
            let first = first.map_err(|e| TestCaseError::fail(format!("{top_sql}: {e:?}")))?;
            let all: BTreeSet<i64> = all.into_iter().collect();
            prop_assert_eq!(&all, &everyone, "{}", all_sql);
            prop_assert_eq!(&first, &top, "{}", top_sql);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "jsonb filters: {} cases agreed with the oracle",
        runner.config().cases
    );
}

/// Without `vectorgate.exact`, on a table big enough for an HNSW graph: a filter on json
/// values (no payload index to plan by) held by 1% of the rows gives k rows, nearly the
/// exact ones. (At 100K rows the graph search alone came back with 1 of 10 rows — the
/// `--jsonb` benchmark found it; a search that comes back short now retries exactly.
/// This smaller table does not reproduce the short answer; it guards the result.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selective_jsonb_filter_on_a_graph_still_gives_k_rows() {
    use rand::{Rng, SeedableRng};
    let server = Server::start();
    let c = server.client().await;
    c.batch_execute(
        "CREATE TABLE jg (id bigint PRIMARY KEY, meta jsonb, embedding vector(8)) \
         WITH (distance = 'l2', indexing_threshold_kb = 16)",
    )
    .await
    .expect("create");
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let rows: Vec<(i64, i64, Vec<f32>)> = (0..4000)
        .map(|i| {
            (
                i,
                i % 100,
                (0..8).map(|_| rng.gen_range(-1.0f32..1.0)).collect(),
            )
        })
        .collect();
    for chunk in rows.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|(i, g, v)| format!("({i}, '{{\"g\": \"g{g}\"}}', '{}')", vec_text(v)))
            .collect();
        c.batch_execute(&format!("INSERT INTO jg VALUES {}", values.join(", ")))
            .await
            .expect("insert");
    }
    // Let the optimiser build the graph.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let query: Vec<f32> = (0..8).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let dist = |v: &[f32]| -> f64 {
        v.iter()
            .zip(&query)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum()
    };
    for g in [7, 42] {
        let mut want: Vec<(f64, i64)> = rows
            .iter()
            .filter(|(_, gg, _)| *gg == g)
            .map(|(i, _, v)| (dist(v), *i))
            .collect();
        want.sort_by(|a, b| a.0.total_cmp(&b.0));
        let want: Vec<i64> = want.iter().take(10).map(|w| w.1).collect();
        let sql = format!(
            "SELECT id FROM jg WHERE meta->>'g' = 'g{g}' ORDER BY embedding <-> '{}' LIMIT 10",
            vec_text(&query)
        );
        let got: Vec<i64> = c
            .query(&sql, &[])
            .await
            .expect("search")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got.len(), 10, "{sql}: k rows");
        let hits = got.iter().filter(|i| want.contains(i)).count();
        assert!(
            hits >= 9,
            "{sql}: {hits} of the exact 10 ({got:?} vs {want:?})"
        );
    }
}
