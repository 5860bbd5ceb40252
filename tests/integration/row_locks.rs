//! Row locks over the wire: a session changing a row makes another that wants to change
//! it wait until its transaction ends, then the second one works on the row as the first
//! left it (so counters count), a circle of waiters is broken with 40P01, and a wait ends
//! with `statement_timeout`.

use std::time::Duration;

use super::{Server, sqlstate};

async fn counters(client: &tokio_postgres::Client) -> Vec<(i32, i64)> {
    client
        .query("SELECT id, n FROM ctr ORDER BY id", &[])
        .await
        .expect("counters")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_waits_and_then_changes_the_row_as_the_first_left_it() {
    let server = Server::start();
    let a = server.client().await;
    let b = server.client().await;
    a.batch_execute(
        "CREATE TABLE ctr (id int PRIMARY KEY, n bigint, note text);
         INSERT INTO ctr VALUES (1, 1, 'one'), (2, 2, 'two'), (3, 3, 'three');",
    )
    .await
    .expect("set up");

    // UPDATE after an UPDATE in an open block: waits, then adds to the committed value.
    a.batch_execute("BEGIN; UPDATE ctr SET n = n + 1 WHERE id = 1")
        .await
        .expect("a's update");
    let waiting = tokio::spawn(async move {
        let n = b
            .execute("UPDATE ctr SET n = n + 10 WHERE id = 1", &[])
            .await
            .expect("b's update");
        (b, n)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "b must wait for a's block");
    a.batch_execute("COMMIT").await.expect("commit");
    let (b, n) = waiting.await.expect("b");
    assert_eq!(n, 1);
    assert_eq!(counters(&a).await[0], (1, 12), "both increments count");

    // A ROLLBACK of the first writer: the second one sees the row as it was.
    a.batch_execute("BEGIN; UPDATE ctr SET n = 100 WHERE id = 2")
        .await
        .expect("a's update");
    let waiting = tokio::spawn(async move {
        b.batch_execute("UPDATE ctr SET n = n * 2 WHERE id = 2")
            .await
            .expect("b's update");
        b
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "b must wait for a's block");
    a.batch_execute("ROLLBACK").await.expect("rollback");
    let b = waiting.await.expect("b");
    assert_eq!(
        counters(&a).await[1],
        (2, 4),
        "b doubled the value a left: 2"
    );

    // The row no longer qualifies after the first writer's change: the second one skips
    // it (UPDATE 0), as Postgres re-checks the WHERE of a row it waited for.
    a.batch_execute("BEGIN; UPDATE ctr SET note = 'changed' WHERE id = 3")
        .await
        .expect("a's update");
    let waiting = tokio::spawn(async move {
        let n = b
            .execute("UPDATE ctr SET n = 0 WHERE note = 'three'", &[])
            .await
            .expect("b's update");
        (b, n)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "b must wait for a's block");
    a.batch_execute("COMMIT").await.expect("commit");
    let (b, n) = waiting.await.expect("b");
    assert_eq!(n, 0, "the row no longer says 'three'");
    assert_eq!(counters(&a).await[2], (3, 3));

    // DELETE waits too; an upsert after it inserts afresh.
    a.batch_execute("BEGIN; DELETE FROM ctr WHERE id = 1")
        .await
        .expect("a's delete");
    let waiting = tokio::spawn(async move {
        b.execute(
            "INSERT INTO ctr VALUES (1, 1, 'again') ON CONFLICT (id) DO UPDATE SET n = ctr.n + 1",
            &[],
        )
        .await
        .expect("b's upsert");
        b
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "b's upsert must wait for a's delete"
    );
    a.batch_execute("COMMIT").await.expect("commit");
    let b = waiting.await.expect("b");
    let note: String = b
        .query_one("SELECT note FROM ctr WHERE id = 1", &[])
        .await
        .expect("row 1")
        .get(0);
    assert_eq!(note, "again", "the upsert inserted: the row was gone");
    assert_eq!(counters(&b).await[0], (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circle_of_waiters_gets_40p01_and_a_wait_ends_with_the_statement_timeout() {
    let server = Server::start();
    let a = server.client().await;
    let b = server.client().await;
    a.batch_execute(
        "CREATE TABLE ctr (id int PRIMARY KEY, n bigint);
         INSERT INTO ctr VALUES (1, 0), (2, 0);",
    )
    .await
    .expect("set up");
    a.batch_execute("BEGIN; UPDATE ctr SET n = n + 1 WHERE id = 1")
        .await
        .expect("a takes 1");
    b.batch_execute("BEGIN; UPDATE ctr SET n = n + 1 WHERE id = 2")
        .await
        .expect("b takes 2");
    let waiting = tokio::spawn(async move {
        let r = a
            .execute("UPDATE ctr SET n = n + 1 WHERE id = $1", &[&2i32])
            .await;
        (a, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a must wait for b's row");
    let e = b
        .batch_execute("UPDATE ctr SET n = n + 1 WHERE id = 1")
        .await
        .expect_err("b closes the circle");
    assert_eq!(sqlstate(&e), "40P01", "{e}");
    // b's block failed; its ROLLBACK lets a go on.
    let e = b
        .batch_execute("SELECT 1")
        .await
        .expect_err("b's block failed");
    assert_eq!(sqlstate(&e), "25P02");
    b.batch_execute("ROLLBACK").await.expect("b rolls back");
    let (a, r) = waiting.await.expect("a");
    assert_eq!(r.expect("a's second update"), 1);
    a.batch_execute("COMMIT").await.expect("a commits");
    assert_eq!(counters(&b).await, vec![(1, 1), (2, 1)]);

    // A wait longer than statement_timeout: 57014, and the session goes on; the lock is
    // not left behind (another session changes the row at once after).
    a.batch_execute("BEGIN; UPDATE ctr SET n = n + 1 WHERE id = 1")
        .await
        .expect("a takes 1");
    b.batch_execute("SET statement_timeout = 200")
        .await
        .expect("timeout");
    let e = b
        .execute("UPDATE ctr SET n = n + 1 WHERE id = $1", &[&1i32])
        .await
        .expect_err("b waits past its timeout");
    assert_eq!(sqlstate(&e), "57014", "{e}");
    a.batch_execute("ROLLBACK").await.expect("a rolls back");
    assert_eq!(
        b.execute("UPDATE ctr SET n = n + 1 WHERE id = $1", &[&1i32])
            .await
            .expect("b's update"),
        1
    );
    // A dropped connection gives back its block's locks.
    a.batch_execute("BEGIN; UPDATE ctr SET n = n + 1 WHERE id = 2")
        .await
        .expect("a takes 2");
    drop(a);
    b.batch_execute("SET statement_timeout = 10000")
        .await
        .expect("timeout");
    b.batch_execute("UPDATE ctr SET n = n + 1 WHERE id = 2")
        .await
        .expect("the dropped session's lock is gone");
    assert_eq!(counters(&b).await, vec![(1, 2), (2, 2)]);
}

/// One increment of counter `key`, four ways: an upsert (extended and simple protocol)
/// and an UPDATE (both protocols; it finds no row until an upsert made one).
async fn increment(
    client: &tokio_postgres::Client,
    key: i32,
    way: u32,
) -> Result<u64, tokio_postgres::Error> {
    match way {
        0 => {
            client
                .execute(
                    "INSERT INTO ctr VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = ctr.n + 1",
                    &[&key],
                )
                .await
        }
        1 => client
            .simple_query(&format!(
                "INSERT INTO ctr VALUES ({key}, 1) ON CONFLICT (id) \
                 DO UPDATE SET n = ctr.n + EXCLUDED.n"
            ))
            .await
            .map(|_| 1),
        2 => {
            client
                .execute("UPDATE ctr SET n = n + 1 WHERE id = $1", &[&key])
                .await
        }
        _ => client
            .simple_query(&format!("UPDATE ctr SET n = n + 1 WHERE id = {key}"))
            .await
            .map(|m| {
                m.iter()
                    .find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
                        _ => None,
                    })
                    .unwrap_or(0)
            }),
    }
}

/// Eight clients add to shared counters at once, by UPDATE and by upsert, in both
/// protocols, alone and in blocks that roll back at random or meet a deadlock: every
/// committed increment counts, no rolled-back one does (Postgres' answer; without row
/// locks, increments were lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_count_every_committed_increment() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    const KEYS: i32 = 4;
    let server = Server::start();
    let setup = server.client().await;
    setup
        .batch_execute("CREATE TABLE ctr (id int PRIMARY KEY, n bigint)")
        .await
        .expect("create");
    let mut tasks = Vec::new();
    for c in 0..8u64 {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(c);
            let mut counted = vec![0i64; KEYS as usize];
            let mut deadlocks = 0;
            for _ in 0..30 {
                if rng.gen_bool(0.5) {
                    let (key, way) = (rng.gen_range(0..KEYS), rng.gen_range(0..4));
                    let n = increment(&client, key, way).await.expect("increment");
                    counted[key as usize] += n as i64;
                    continue;
                }
                client.batch_execute("BEGIN").await.expect("begin");
                let mut block = vec![0i64; KEYS as usize];
                let mut failed = false;
                for _ in 0..rng.gen_range(1..4) {
                    let (key, way) = (rng.gen_range(0..KEYS), rng.gen_range(0..4));
                    match increment(&client, key, way).await {
                        Ok(n) => block[key as usize] += n as i64,
                        Err(e) => {
                            assert_eq!(sqlstate(&e), "40P01", "increment in a block: {e}");
                            deadlocks += 1;
                            failed = true;
                            break;
                        }
                    }
                }
                if failed || rng.gen_bool(0.3) {
                    client.batch_execute("ROLLBACK").await.expect("rollback");
                } else {
                    client.batch_execute("COMMIT").await.expect("commit");
                    for (k, n) in block.into_iter().enumerate() {
                        counted[k] += n;
                    }
                }
            }
            (counted, deadlocks)
        }));
    }
    let mut want = vec![0i64; KEYS as usize];
    let mut deadlocks = 0;
    for t in tasks {
        let (counted, d) = t.await.expect("client task");
        for (k, n) in counted.into_iter().enumerate() {
            want[k] += n;
        }
        deadlocks += d;
    }
    let got = counters(&setup).await;
    let want: Vec<(i32, i64)> = (0..KEYS).zip(want).filter(|(_, n)| *n > 0).collect();
    assert_eq!(got, want, "every committed increment, and only those");
    eprintln!(
        "8 clients: {} increments committed, {deadlocks} blocks broken by 40P01",
        want.iter().map(|(_, n)| n).sum::<i64>()
    );
}

/// `SELECT ... FOR UPDATE` waits for a block that changed the row and returns the row as
/// that block left it; a locking clause in a subquery is refused, not ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_for_update_waits_and_returns_the_row_as_it_was_left() {
    let server = Server::start();
    let a = server.client().await;
    let b = server.client().await;
    a.batch_execute(
        "CREATE TABLE ctr (id int PRIMARY KEY, n bigint);
         INSERT INTO ctr VALUES (1, 5), (2, 0);",
    )
    .await
    .expect("set up");
    a.batch_execute("BEGIN; UPDATE ctr SET n = 6 WHERE id = 1")
        .await
        .expect("a's update");
    let waiting = tokio::spawn(async move {
        // Extended protocol, a parameter: the prepared path locks too.
        b.batch_execute("BEGIN").await.expect("begin");
        let n: i64 = b
            .query_one("SELECT n FROM ctr WHERE id = $1 FOR UPDATE", &[&1i32])
            .await
            .expect("b's select")
            .get(0);
        (b, n)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "FOR UPDATE must wait for a's block");
    a.batch_execute("COMMIT").await.expect("commit");
    let (b, n) = waiting.await.expect("b");
    assert_eq!(n, 6, "the row as a's block left it");
    // Now b holds the row: a waits for it in turn.
    let e = a
        .batch_execute("SELECT n FROM ctr WHERE id = 1 FOR UPDATE NOWAIT")
        .await
        .expect_err("b holds row 1");
    assert_eq!(sqlstate(&e), "55P03", "{e}");
    b.batch_execute("UPDATE ctr SET n = n + 1 WHERE id = 1; COMMIT")
        .await
        .expect("b's update");
    assert_eq!(counters(&a).await, vec![(1, 7), (2, 0)]);
    for sql in [
        "UPDATE ctr SET n = 1 WHERE id IN (SELECT id FROM ctr FOR UPDATE)",
        "WITH c AS (SELECT id FROM ctr FOR UPDATE) SELECT * FROM c",
        "SELECT * FROM (SELECT id FROM ctr FOR UPDATE) s",
    ] {
        let e = a.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "0A000", "{sql}: {e}");
    }
}

/// A job queue as applications build one: four workers each take the next job with
/// `FOR UPDATE SKIP LOCKED`, mark it done and commit. Every job is done exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_take_each_job_once_with_skip_locked() {
    const JOBS: i32 = 60;
    let server = Server::start();
    let setup = server.client().await;
    setup
        .batch_execute(
            "CREATE TABLE jobs (id int PRIMARY KEY, done boolean, taken_by int, takes int)",
        )
        .await
        .expect("create");
    for i in 0..JOBS {
        setup
            .execute("INSERT INTO jobs VALUES ($1, false, NULL, 0)", &[&i])
            .await
            .expect("job");
    }
    let mut workers = Vec::new();
    for w in 0..4i32 {
        let client = server.client().await;
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                client.batch_execute("BEGIN").await.expect("begin");
                let next = client
                    .query(
                        "SELECT id FROM jobs WHERE NOT done ORDER BY id LIMIT 1 \
                         FOR UPDATE SKIP LOCKED",
                        &[],
                    )
                    .await
                    .expect("next job");
                let Some(row) = next.first() else {
                    client.batch_execute("COMMIT").await.expect("commit");
                    break;
                };
                let id: i32 = row.get(0);
                client
                    .execute(
                        "UPDATE jobs SET done = true, taken_by = $2, takes = takes + 1 WHERE id = $1",
                        &[&id, &w],
                    )
                    .await
                    .expect("mark done");
                client.batch_execute("COMMIT").await.expect("commit");
                mine.push(id);
            }
            mine
        }));
    }
    let mut taken = Vec::new();
    for w in workers {
        taken.extend(w.await.expect("worker"));
    }
    taken.sort();
    assert_eq!(taken, (0..JOBS).collect::<Vec<_>>(), "each job taken once");
    let rows = setup
        .query(
            "SELECT id, takes FROM jobs WHERE NOT done OR takes <> 1",
            &[],
        )
        .await
        .expect("check");
    assert!(rows.is_empty(), "every job done exactly once");
}
