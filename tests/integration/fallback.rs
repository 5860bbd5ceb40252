//! The vector index away: with `--qdrant` pointing at a closed port, or at a listener
//! that accepts and never answers, every search still answers (exactly, from the rows,
//! with a NOTICE), writes are acknowledged, and the index catches up when it is back.
//! Also: index options (ALTER TABLE SET, quantization, tenant_key) on the embedded index.

use std::net::TcpListener;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_postgres::SimpleQueryMessage;

use super::search::{DIM, Doc, K, dataset, filters, gaussian, load, oracle, queries_near};
use super::{Server, sqlstate, vec_text};

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A listener that accepts connections and never answers; kept alive by the returned
/// thread handle's listener.
fn black_hole() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

fn start_with_dead_qdrant(data: &Path, port: u16, max_rows: &str) -> Server {
    let url = format!("http://127.0.0.1:{port}");
    Server::start_on(
        data,
        &[
            "--qdrant",
            &url,
            "--qdrant-timeout-ms",
            "300",
            "--fallback-max-rows",
            max_rows,
        ],
    )
}

fn simple_ids(messages: &[SimpleQueryMessage]) -> Vec<i64> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).and_then(|s| s.parse().ok()),
            _ => None,
        })
        .collect()
}

async fn searches_stay_exact_while_the_index_is_away(port: u16) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_with_dead_qdrant(&dir.path().join("data"), port, "1000");
    let (client, notices) = server.client_with_notices().await;
    let mut rng = StdRng::seed_from_u64(5);
    let (docs, centers) = dataset(&mut rng);
    let docs = &docs[..800];
    // CREATE TABLE and every INSERT are acknowledged: the rows have them.
    load(&client, "away", "cosine", docs).await;
    let stored: i64 = client
        .query_one("SELECT count(*) FROM away", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored, docs.len() as i64);
    assert!(
        notices
            .lock()
            .expect("notices")
            .iter()
            .any(|n| n.contains("indexed when the index is back")),
        "writes should say they wait for the index: {:?}",
        notices.lock().expect("notices")
    );
    let (mut searches, mut exact_answers) = (0, 0);
    for (sql_filter, pred) in filters() {
        for center in centers.iter().take(2) {
            let query: Vec<f32> = center
                .iter()
                .map(|x| x + 0.35 * gaussian(&mut rng))
                .collect();
            let want = oracle(docs, &query, pred, "cosine");
            notices.lock().expect("notices").clear();
            let sql = format!(
                "SELECT id FROM vector_search('away', $1, {K}) WHERE {sql_filter} ORDER BY distance"
            );
            let extended: Vec<i64> = client
                .query(&sql, &[&query])
                .await
                .unwrap_or_else(|e| panic!("extended {sql}: {e}"))
                .iter()
                .map(|r| r.get(0))
                .collect();
            let literal = sql.replace("$1", &format!("'{}'", vec_text(&query)));
            let simple = simple_ids(
                &client
                    .simple_query(&literal)
                    .await
                    .unwrap_or_else(|e| panic!("simple {literal}: {e}")),
            );
            searches += 2;
            exact_answers += (extended == want) as usize + (simple == want) as usize;
            assert_eq!(
                extended, want,
                "{sql_filter}: extended protocol, exact fallback"
            );
            assert_eq!(
                simple, want,
                "{sql_filter}: simple protocol, exact fallback"
            );
            let n = notices.lock().expect("notices").clone();
            assert!(
                n.iter().any(|m| m.contains("answered by an exact scan")),
                "{sql_filter}: a NOTICE should say the fallback was used, got {n:?}"
            );
        }
    }
    eprintln!("index away on port {port}: {searches} searches, {exact_answers} exact, 0 failed");
    // A scan larger than the limit is refused with 53000 and a hint; the session lives.
    client
        .batch_execute(&format!(
            "CREATE TABLE big (id int PRIMARY KEY, embedding vector({DIM}))"
        ))
        .await
        .expect("create big");
    let rows: Vec<String> = (0..1200)
        .map(|i| format!("({i}, '{}')", vec_text(&docs[i % docs.len()].v)))
        .collect();
    client
        .batch_execute(&format!("INSERT INTO big VALUES {}", rows.join(",")))
        .await
        .expect("insert big");
    let err = client
        .query("SELECT id FROM vector_search('big', $1, 5)", &[&centers[0]])
        .await
        .expect_err("over the fallback row limit");
    assert_eq!(sqlstate(&err), "53000", "{err:?}");
    let hint = err
        .as_db_error()
        .and_then(|d| d.hint())
        .unwrap_or_default()
        .to_string();
    assert!(hint.contains("fallback_max_rows"), "hint: {hint}");
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("session survives")
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_answer_exactly_when_qdrant_is_refused() {
    searches_stay_exact_while_the_index_is_away(closed_port()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_answer_exactly_when_qdrant_never_answers() {
    searches_stay_exact_while_the_index_is_away(black_hole()).await;
}

/// Writes acknowledged while the index was away reach it once it is back: here the
/// proxy restarts on the embedded index, finds the table stale, and re-sends its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_made_while_the_index_was_away_are_indexed_when_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut rng = StdRng::seed_from_u64(8);
    let (docs, centers) = dataset(&mut rng);
    let docs = &docs[..600];
    {
        let mut server = start_with_dead_qdrant(&data, closed_port(), "100000");
        let client = server.client().await;
        load(&client, "later", "l2", docs).await;
        client
            .batch_execute("DELETE FROM later WHERE id >= 500")
            .await
            .expect("delete");
        server.stop(true);
    }
    let live = &docs[..500];
    let server = Server::start_on(&data, &[]);
    let (client, notices) = server.client_with_notices().await;
    // Exact search inside the index: it must hold every live row, and no deleted one.
    client
        .batch_execute("SET vectorgate.exact = on")
        .await
        .expect("set");
    let mut checked = 0;
    for center in centers.iter().take(5) {
        let query: Vec<f32> = center
            .iter()
            .map(|x| x + 0.35 * gaussian(&mut rng))
            .collect();
        let got: Vec<i64> = client
            .query(
                &format!("SELECT id FROM vector_search('later', $1, {K}) ORDER BY distance"),
                &[&query],
            )
            .await
            .expect("search")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, oracle(live, &query, |_| true, "l2"));
        checked += 1;
    }
    assert!(
        notices.lock().expect("notices").is_empty(),
        "the index answers again: {:?}",
        notices.lock().expect("notices")
    );
    eprintln!(
        "after recovery: {checked} exact index searches equal the oracle over {} live rows",
        live.len()
    );
}

async fn recall(
    client: &tokio_postgres::Client,
    table: &str,
    docs: &[Doc],
    queries: &[Vec<f32>],
    filter: (&str, fn(&Doc) -> bool),
) -> f64 {
    let mut found = 0usize;
    let mut wanted = 0usize;
    for q in queries {
        let want = oracle(docs, q, filter.1, "cosine");
        let got: Vec<i64> = client
            .query(
                &format!(
                    "SELECT id FROM vector_search('{table}', $1, {K}) WHERE {} ORDER BY distance",
                    filter.0
                ),
                &[q],
            )
            .await
            .expect("search")
            .iter()
            .map(|r| r.get(0))
            .collect();
        wanted += want.len();
        found += got.iter().filter(|id| want.contains(id)).count();
    }
    found as f64 / wanted.max(1) as f64
}

/// What one search of the continuous searcher saw.
struct Answer {
    phase: usize,
    /// It came with the NOTICE that the index is being rebuilt (so it must be exact).
    rebuilding: bool,
    recall: f64,
    error: Option<String>,
}

/// Whether a NOTICE says the table's index is being rebuilt (so the answer is exact).
fn says_rebuilding(notice: &str) -> bool {
    notice.contains("being rebuilt") || notice.contains("being built again")
}

/// Search table `opts` without pause from its own connection (with the rescoring
/// settings a quantized index is meant to be searched with) until `stop`, each answer
/// measured against the exact oracle of each of `distances` (the best is kept: the
/// distance may change meanwhile); `phase` says which change was last applied.
fn search_continuously(
    client: tokio_postgres::Client,
    notices: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    docs: Vec<Doc>,
    queries: Vec<Vec<f32>>,
    distances: &'static [&'static str],
    phase: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Answer>> {
    use std::sync::atomic::Ordering;
    tokio::spawn(async move {
        client
            .batch_execute("SET vectorgate.rescore = on; SET vectorgate.oversampling = 10")
            .await
            .expect("settings");
        let mut answers = Vec::new();
        let mut i = 0usize;
        while !stop.load(Ordering::SeqCst) {
            let q = &queries[i % queries.len()];
            let (sql, pred): (&str, fn(&Doc) -> bool) = match i % 2 {
                0 => ("TRUE", |_| true),
                _ => ("category = 'c3'", |d| d.category == "c3"),
            };
            i += 1;
            let phase = phase.load(Ordering::SeqCst);
            let before = notices.lock().expect("notices").len();
            let got = client
                .query(
                    &format!("SELECT id FROM vector_search('opts', $1, {K}) WHERE {sql}"),
                    &[q],
                )
                .await;
            let rebuilding = notices.lock().expect("notices")[before..]
                .iter()
                .any(|n| says_rebuilding(n));
            let answer = match got {
                Ok(rows) => {
                    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                    let recall = distances
                        .iter()
                        .map(|d| {
                            let want = oracle(&docs, q, pred, d);
                            ids.iter().filter(|id| want.contains(id)).count() as f64
                                / want.len().max(1) as f64
                        })
                        .fold(0.0, f64::max);
                    Answer {
                        phase,
                        rebuilding,
                        recall,
                        error: None,
                    }
                }
                Err(e) => Answer {
                    phase,
                    rebuilding,
                    recall: 0.0,
                    error: Some(format!("{}: {e}", sqlstate(&e))),
                },
            };
            let failed = answer.error.is_some();
            answers.push(answer);
            // The first failure ends the loop: a client whose connection is gone fails at
            // once, and would fill memory with failures until `stop`.
            if failed {
                break;
            }
        }
        answers
    })
}

/// Search until a search comes back without the rebuilding NOTICE (the index has
/// settled); how long that took.
async fn until_settled(
    client: &tokio_postgres::Client,
    notices: &std::sync::Mutex<Vec<String>>,
    q: &[f32],
) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let before = notices.lock().expect("notices").len();
        client
            .query("SELECT id FROM vector_search('opts', $1, 1)", &[&q])
            .await
            .expect("search");
        let rebuilding = notices.lock().expect("notices")[before..]
            .iter()
            .any(|n| n.contains("being rebuilt"));
        if !rebuilding {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(180),
            "the index is still rebuilding after 3 minutes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_changes_index_options_and_results_stay_right() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut rng = StdRng::seed_from_u64(21);
    let (docs, centers) = dataset(&mut rng);
    let docs = &docs[..2000];
    let queries = queries_near(&centers, 20, &mut rng);
    let mut server = Server::start_on(&data, &[]);
    let (client, notices) = server.client_with_notices().await;
    load(&client, "opts", "cosine", docs).await;
    let all: (&str, fn(&Doc) -> bool) = ("TRUE", |_| true);
    let c3: (&str, fn(&Doc) -> bool) = ("category = 'c3'", |d| d.category == "c3");
    let before = recall(&client, "opts", docs, &queries, all).await;
    // A second connection searches all the while.
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (searcher, searcher_notices) = server.client_with_notices().await;
    let searching = search_continuously(
        searcher,
        searcher_notices,
        docs.to_vec(),
        queries.clone(),
        &["cosine"],
        phase.clone(),
        stop.clone(),
    );
    let server_index = super::qdrant().is_some();
    let alters = [
        (
            "quantization = 'int8', m = 8, ef_construct = 64",
            "SET vectorgate.rescore = on; SET vectorgate.oversampling = 2.0",
        ),
        (
            "quantization = 'binary', always_ram = true",
            "SET vectorgate.rescore = on; SET vectorgate.oversampling = 10",
        ),
        (
            "ef_construct = 128, indexing_threshold_kb = 32",
            "SET vectorgate.rescore = on; SET vectorgate.oversampling = 10",
        ),
        (
            "quantization = 'none', m = 16",
            "RESET vectorgate.rescore; RESET vectorgate.oversampling",
        ),
    ];
    let mut announced = 0;
    for (i, (alter, settings)) in alters.iter().enumerate() {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        phase.store(i + 1, Ordering::SeqCst);
        let before = notices.lock().expect("notices").len();
        client
            .batch_execute(&format!("ALTER TABLE opts SET ({alter})"))
            .await
            .unwrap_or_else(|e| panic!("ALTER TABLE opts SET ({alter}): {e}"));
        if notices.lock().expect("notices")[before..]
            .iter()
            .any(|n| n.contains("being rebuilt"))
        {
            announced += 1;
        }
        client.batch_execute(settings).await.expect("settings");
        // Right after the ALTER, searches are exact or the rebuilt index's.
        let r_now = recall(&client, "opts", docs, &queries, all).await;
        let settled = until_settled(&client, &notices, &queries[0]).await;
        let r_all = recall(&client, "opts", docs, &queries, all).await;
        let r_c3 = recall(&client, "opts", docs, &queries, c3).await;
        eprintln!(
            "{alter}: recall@{K} {r_now:.3} at once, settled after {settled:?}: {r_all:.3} unfiltered, {r_c3:.3} at 10%"
        );
        assert!(
            r_now >= 0.95 && r_all >= 0.95 && r_c3 >= 0.95,
            "{alter}: recall {r_now} at once, {r_all} / {r_c3} settled"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let answers = searching.await.expect("searcher");
    // Every answer the second connection got: exact while the index was rebuilt (it said
    // so), as good as a settled index otherwise; never an error.
    let exact = answers.iter().filter(|a| a.rebuilding).count();
    for (i, (alter, _)) in std::iter::once(&("(before)", ""))
        .chain(&alters)
        .enumerate()
    {
        let of: Vec<&Answer> = answers.iter().filter(|a| a.phase == i).collect();
        let worst = of.iter().map(|a| a.recall).fold(1.0f64, f64::min);
        let mean = of.iter().map(|a| a.recall).sum::<f64>() / of.len().max(1) as f64;
        eprintln!(
            "searcher during {alter}: {} answers ({} exact while rebuilding), recall@{K} mean {mean:.3}, worst {worst:.2}",
            of.len(),
            of.iter().filter(|a| a.rebuilding).count()
        );
        assert!(mean >= 0.95, "searcher during {alter}: mean recall {mean}");
    }
    for a in &answers {
        assert!(a.error.is_none(), "a search failed: {:?}", a.error);
        if a.rebuilding {
            assert_eq!(
                a.recall, 1.0,
                "an exact answer during a rebuild was not exact"
            );
        } else {
            assert!(
                a.recall >= 0.7,
                "phase {}: an answer with recall {} (a stale index)",
                a.phase,
                a.recall
            );
        }
    }
    if server_index {
        // Qdrant rebuilds in the background: the ALTER and the searches meanwhile say so.
        assert!(
            announced >= 1 && exact >= 1,
            "{announced} ALTERs announced a rebuild, {exact} exact answers"
        );
    } else {
        // The embedded index is rebuilt before the ALTER returns.
        assert_eq!((announced, exact), (0, 0));
    }
    // Writes after the rebuild land in the new index.
    client
        .batch_execute(&format!(
            "INSERT INTO opts (id, title, category, bucket, year, tags, embedding) VALUES (99999, 'new', 'c3', 1, 2001, '{{}}', '{}')",
            vec_text(&queries[0])
        ))
        .await
        .expect("insert after alter");
    let top: i64 = client
        .query_one(
            "SELECT id FROM vector_search('opts', $1, 1)",
            &[&queries[0]],
        )
        .await
        .expect("search")
        .get(0);
    assert_eq!(top, 99999);
    // Bad values and options that fix the layout are refused; the table is unchanged.
    for (sql, code) in [
        ("ALTER TABLE opts SET (quantization = 'int4')", "22023"),
        ("ALTER TABLE opts SET (m = 0)", "22023"),
        ("ALTER TABLE opts SET (distance = 'l2')", "0A000"),
        ("ALTER TABLE opts RENAME TO opts", "42P07"),
        ("ALTER TABLE nope SET (m = 4)", "42P01"),
    ] {
        let e = client.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql}");
    }
    client
        .batch_execute("ALTER TABLE IF EXISTS nope SET (m = 4)")
        .await
        .expect("if exists");
    // The options and the rebuilt index survive a restart.
    server.stop(true);
    let server = Server::start_on(&data, &[]);
    let client = server.client().await;
    let after = recall(&client, "opts", docs, &queries, all).await;
    assert!(
        after >= 0.95,
        "after restart: {after} (before any ALTER: {before})"
    );
}

/// CREATE INDEX with another operator class drops the table's collection and builds it
/// again from the rows: a search meanwhile scans the rows (and says so), never answers
/// from the half-built collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_during_a_distance_change_are_exact() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let server = Server::start();
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(22);
    let (docs, centers) = dataset(&mut rng);
    let queries = queries_near(&centers, 20, &mut rng);
    load(&client, "opts", "cosine", &docs).await;
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (searcher, notices) = server.client_with_notices().await;
    let searching = search_continuously(
        searcher,
        notices,
        docs.clone(),
        queries.clone(),
        &["cosine", "l2"],
        phase.clone(),
        stop.clone(),
    );
    for (i, opclass) in ["vector_l2_ops", "vector_cosine_ops", "vector_l2_ops"]
        .iter()
        .enumerate()
    {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        phase.store(i + 1, Ordering::SeqCst);
        let rebuilt = tokio::time::timeout(
            std::time::Duration::from_secs(300),
            client.batch_execute(&format!(
                "CREATE INDEX ON opts USING hnsw (embedding {opclass})"
            )),
        )
        .await;
        if rebuilt.is_err() || searching.is_finished() {
            stop.store(true, Ordering::SeqCst);
            let answers = searching.await.expect("searcher");
            panic!(
                "CREATE INDEX {opclass}: {rebuilt:?} after {} answers, the last {:?}",
                answers.len(),
                answers.last().map(|a| &a.error)
            );
        }
        rebuilt.expect("in time").expect("create index");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let answers = searching.await.expect("searcher");
    let exact = answers.iter().filter(|a| a.rebuilding).count();
    let worst = answers.iter().map(|a| a.recall).fold(1.0f64, f64::min);
    eprintln!(
        "{} answers during 3 distance changes, {exact} of them exact while the index was built again, worst recall {worst:.2}",
        answers.len()
    );
    for a in &answers {
        assert!(a.error.is_none(), "a search failed: {:?}", a.error);
        if a.rebuilding {
            assert_eq!(
                a.recall, 1.0,
                "an exact answer during a rebuild was not exact"
            );
        } else {
            assert!(a.recall >= 0.7, "phase {}: recall {}", a.phase, a.recall);
        }
    }
    // The last distance stuck: l2 oracle answers.
    let q = &queries[3];
    let got: Vec<i64> = client
        .query(
            &format!("SELECT id FROM vector_search('opts', $1, {K})"),
            &[q],
        )
        .await
        .expect("search")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want = oracle(&docs, q, |_| true, "l2");
    assert!(got.iter().filter(|id| want.contains(id)).count() >= K - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_key_filter_searches_that_tenant_only() {
    let server = Server::start();
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(31);
    let (docs, centers) = dataset(&mut rng);
    let docs = &docs[..1500];
    client
        .batch_execute(&format!(
            "CREATE TABLE tenants (id bigint PRIMARY KEY, org text, embedding vector({DIM})) \
             WITH (tenant_key = 'org', indexing_threshold_kb = 64)"
        ))
        .await
        .expect("create");
    for chunk in docs.chunks(250) {
        let values: Vec<String> = chunk
            .iter()
            .map(|d| format!("({}, 'org{}', '{}')", d.id, d.id % 5, vec_text(&d.v)))
            .collect();
        client
            .batch_execute(&format!("INSERT INTO tenants VALUES {}", values.join(",")))
            .await
            .expect("insert");
    }
    let plan = super::explain(
        &client,
        "SELECT id FROM vector_search('tenants', $1, 10) WHERE org = 'org3'",
        &[&centers[0]],
    )
    .await;
    assert!(plan.contains("index_filter="), "{plan}");
    assert!(plan.contains("org3"), "{plan}");
    for center in centers.iter().take(4) {
        let query: Vec<f32> = center
            .iter()
            .map(|x| x + 0.35 * gaussian(&mut rng))
            .collect();
        let rows = client
            .query(
                "SELECT id, org FROM vector_search('tenants', $1, 10) WHERE org = 'org3' ORDER BY distance",
                &[&query],
            )
            .await
            .expect("search");
        assert!(rows.iter().all(|r| r.get::<_, String>(1) == "org3"));
        let got: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let want = oracle(docs, &query, |d| d.id % 5 == 3, "cosine");
        assert_eq!(got, want);
    }
    for (sql, code) in [
        (
            "CREATE TABLE t2 (id int PRIMARY KEY, n int, e vector(2)) WITH (tenant_key = 'n')",
            "42P16",
        ),
        (
            "CREATE TABLE t3 (id int PRIMARY KEY, e vector(2)) WITH (tenant_key = 'missing')",
            "42703",
        ),
    ] {
        let e = client.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), code, "{sql}");
    }
}
