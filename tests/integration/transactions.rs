//! Transaction blocks over the wire: a block's writes are its own until COMMIT (its
//! reads and searches see them, other sessions do not), ROLLBACK and a dropped
//! connection discard them, savepoints undo part of them, a failed statement fails the
//! block (25P02) until it ends, and a block has a size limit (54000).

use super::{PgVector, Server, sqlstate};

/// Rows of `SELECT id ... ORDER BY id` as i32s.
async fn ids(client: &tokio_postgres::Client, sql: &str) -> Vec<i32> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The ids a search with one parameter answers, in order.
async fn ranked(
    client: &tokio_postgres::Client,
    sql: &str,
    param: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Vec<i32> {
    client
        .query(sql, &[param])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| ((*x - *y) as f64).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The k ids nearest `q` among `rows`, exactly (ties by id).
fn nearest(rows: &[(i32, Vec<f32>)], q: &[f32], k: usize) -> Vec<i32> {
    let mut d: Vec<(f64, i32)> = rows.iter().map(|(id, v)| (l2(v, q), *id)).collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(k).map(|(_, id)| id).collect()
}

/// Spread-out vectors without ties in distance.
fn vector_of(i: i32) -> Vec<f32> {
    let x = i as f32;
    vec![
        (x * 0.61).sin() * 9.0,
        (x * 1.37).cos() * 7.0,
        (x * 0.37).fract() * 5.0,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_sees_its_own_writes_and_others_see_them_only_after_commit() {
    let server = Server::start();
    let a = server.client().await;
    let b = server.client().await;
    a.batch_execute(
        "CREATE TABLE tx (id int PRIMARY KEY, tag text, e vector(3)) WITH (distance = 'l2')",
    )
    .await
    .expect("create");
    let mut model: Vec<(i32, Vec<f32>)> = Vec::new();
    for i in 0..60 {
        a.execute(
            "INSERT INTO tx VALUES ($1, 'old', $2)",
            &[&i, &PgVector(vector_of(i))],
        )
        .await
        .expect("insert");
        model.push((i, vector_of(i)));
    }
    let committed = model.clone();

    // Simple protocol writes, extended protocol reads, inside one block.
    a.batch_execute(
        "BEGIN;
         INSERT INTO tx VALUES (100, 'new', '[0,0,0]'), (101, 'new', '[16,12,8]');
         UPDATE tx SET e = '[0,0,0.5]', tag = 'moved' WHERE id = 59;
         DELETE FROM tx WHERE id IN (0, 1, 2);",
    )
    .await
    .expect("block");
    model.retain(|(id, _)| ![0, 1, 2, 59].contains(id));
    model.push((100, vec![0.0, 0.0, 0.0]));
    model.push((101, vec![16.0, 12.0, 8.0]));
    model.push((59, vec![0.0, 0.0, 0.5]));
    model.sort_by_key(|(id, _)| *id);

    let all: Vec<i32> = model.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids(&a, "SELECT id FROM tx ORDER BY id").await, all);
    let count: i64 = a
        .query_one("SELECT count(*) FROM tx WHERE tag = $1", &[&"new"])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 2);
    // Key lookups: a deleted row is gone, a written one is there, in both protocols.
    assert_eq!(
        ids(&a, "SELECT id FROM tx WHERE id = 1").await,
        Vec::<i32>::new()
    );
    let row = a
        .query_opt("SELECT tag FROM tx WHERE id = $1", &[&59i32])
        .await
        .expect("lookup");
    assert_eq!(row.map(|r| r.get::<_, String>(0)), Some("moved".into()));
    // Searches rank the block's rows with the index's, exactly, and skip deleted ones.
    for q in [
        vec![0.0f32, 0.0, 0.0],
        vec![16.0, 12.0, 8.0],
        vec![3.0, 3.0, 1.0],
    ] {
        let want = nearest(&model, &q, 5);
        let got = ranked(
            &a,
            "SELECT id FROM tx ORDER BY e <-> $1 LIMIT 5",
            &PgVector(q.clone()),
        )
        .await;
        assert_eq!(got, want, "ORDER BY <-> inside the block, query {q:?}");
        let got = ranked(
            &a,
            "SELECT id FROM vector_search('tx', $1, 5) WHERE tag <> 'none' ORDER BY distance",
            &q,
        )
        .await;
        assert_eq!(got, want, "vector_search inside the block, query {q:?}");
        // The other session sees only what was committed.
        let theirs = ranked(
            &b,
            "SELECT id FROM tx ORDER BY e <-> $1 LIMIT 5",
            &PgVector(q.clone()),
        )
        .await;
        assert_eq!(
            theirs,
            nearest(&committed, &q, 5),
            "other session, query {q:?}"
        );
    }
    let before: Vec<i32> = committed.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids(&b, "SELECT id FROM tx ORDER BY id").await, before);

    a.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(ids(&b, "SELECT id FROM tx ORDER BY id").await, all);
    let q = vec![0.0f32, 0.0, 0.0];
    let theirs = ranked(
        &b,
        "SELECT id FROM tx ORDER BY e <-> $1 LIMIT 5",
        &PgVector(q.clone()),
    )
    .await;
    assert_eq!(
        theirs,
        nearest(&model, &q, 5),
        "committed rows are searched"
    );

    // ROLLBACK (extended protocol) and a dropped connection leave nothing behind.
    b.execute("BEGIN", &[]).await.expect("begin");
    b.execute("DELETE FROM tx WHERE id >= $1", &[&50i32])
        .await
        .expect("delete");
    b.execute("INSERT INTO tx VALUES (200, 'x', '[1,1,1]')", &[])
        .await
        .expect("insert");
    assert!(
        ids(&b, "SELECT id FROM tx ORDER BY id")
            .await
            .contains(&200)
    );
    b.execute("ROLLBACK", &[]).await.expect("rollback");
    assert_eq!(ids(&b, "SELECT id FROM tx ORDER BY id").await, all);
    {
        let c = server.client().await;
        c.batch_execute("BEGIN; DELETE FROM tx; INSERT INTO tx VALUES (300, 'x', '[2,2,2]')")
            .await
            .expect("block");
        assert_eq!(ids(&c, "SELECT id FROM tx").await, vec![300]);
    }
    // The dropped connection's block is gone (give the server a moment to see it).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(ids(&a, "SELECT id FROM tx ORDER BY id").await, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_blocks_savepoints_and_limits() {
    let server = Server::start_args(&["--max-transaction-rows", "10"]);
    let c = server.client().await;
    c.batch_execute("CREATE TABLE sp (id int PRIMARY KEY, e vector(2))")
        .await
        .expect("create");
    // A unique violation fails the block: every statement is refused with 25P02 until
    // ROLLBACK; COMMIT of a failed block rolls back.
    c.batch_execute("BEGIN; INSERT INTO sp VALUES (1, '[1,1]')")
        .await
        .expect("begin");
    let e = c
        .execute("INSERT INTO sp VALUES ($1, '[1,1]')", &[&1i32])
        .await
        .expect_err("duplicate inside the block");
    assert_eq!(sqlstate(&e), "23505");
    for sql in [
        "SELECT 1",
        "INSERT INTO sp VALUES (2, '[2,2]')",
        "SAVEPOINT x",
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "25P02", "{sql}");
    }
    let e = c.execute("SELECT 1", &[]).await.expect_err("extended");
    assert_eq!(sqlstate(&e), "25P02");
    c.batch_execute("COMMIT")
        .await
        .expect("commit of a failed block");
    assert_eq!(ids(&c, "SELECT id FROM sp").await, Vec::<i32>::new());

    // Savepoints: a nested one rolled back undoes only what came after it, and the
    // block works again after ROLLBACK TO.
    c.batch_execute(
        "BEGIN;
         INSERT INTO sp VALUES (1, '[1,1]');
         SAVEPOINT a;
         INSERT INTO sp VALUES (2, '[2,2]');
         SAVEPOINT b;
         DELETE FROM sp WHERE id = 1;
         INSERT INTO sp VALUES (3, '[3,3]');",
    )
    .await
    .expect("block");
    assert_eq!(ids(&c, "SELECT id FROM sp ORDER BY id").await, vec![2, 3]);
    c.execute("ROLLBACK TO SAVEPOINT b", &[])
        .await
        .expect("to b");
    assert_eq!(ids(&c, "SELECT id FROM sp ORDER BY id").await, vec![1, 2]);
    let e = c
        .batch_execute("INSERT INTO sp VALUES (2, '[2,2]')")
        .await
        .expect_err("duplicate");
    assert_eq!(sqlstate(&e), "23505");
    c.batch_execute("ROLLBACK TO a").await.expect("to a");
    assert_eq!(ids(&c, "SELECT id FROM sp ORDER BY id").await, vec![1]);
    let e = c
        .batch_execute("RELEASE SAVEPOINT b")
        .await
        .expect_err("b went with ROLLBACK TO a");
    assert_eq!(sqlstate(&e), "3B001");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    c.batch_execute("BEGIN; INSERT INTO sp VALUES (1, '[1,1]'); SAVEPOINT a; INSERT INTO sp VALUES (2, '[2,2]'); RELEASE a; COMMIT")
        .await
        .expect("released savepoint commits");
    assert_eq!(ids(&c, "SELECT id FROM sp ORDER BY id").await, vec![1, 2]);
    let e = c.batch_execute("SAVEPOINT z").await.expect_err("outside");
    assert_eq!(sqlstate(&e), "25P01");

    // A block may change at most max_transaction_rows rows.
    c.batch_execute("BEGIN").await.expect("begin");
    let values: Vec<String> = (10..21).map(|i| format!("({i}, '[1,2]')")).collect();
    let e = c
        .batch_execute(&format!("INSERT INTO sp VALUES {}", values.join(", ")))
        .await
        .expect_err("too large");
    assert_eq!(sqlstate(&e), "54000");
    c.batch_execute("ROLLBACK").await.expect("rollback");

    // Table changes inside a block run at once (with a NOTICE), but not on a table the
    // block has written to; READ ONLY blocks refuse writes; stronger isolation is refused.
    c.batch_execute("BEGIN; INSERT INTO sp VALUES (5, '[5,5]')")
        .await
        .expect("begin");
    let e = c
        .batch_execute("DROP TABLE sp")
        .await
        .expect_err("drop of a written table");
    assert_eq!(sqlstate(&e), "55006");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    let e = c
        .batch_execute("BEGIN READ ONLY; INSERT INTO sp VALUES (6, '[6,6]')")
        .await
        .expect_err("read-only block");
    assert_eq!(sqlstate(&e), "25006");
    c.batch_execute("ROLLBACK").await.expect("rollback");
    for sql in [
        "BEGIN ISOLATION LEVEL SERIALIZABLE",
        "START TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "SET default_transaction_isolation = 'serializable'",
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "0A000", "{sql}");
    }
    assert_eq!(ids(&c, "SELECT id FROM sp ORDER BY id").await, vec![1, 2]);

    // Several statements in one query string outside a block are one implicit
    // transaction: a failure undoes the earlier ones too; success commits them together.
    let e = c
        .batch_execute(
            "INSERT INTO sp VALUES (30, '[3,0]'); DELETE FROM sp WHERE id = 1; INSERT INTO sp VALUES (2, '[2,2]')",
        )
        .await
        .expect_err("duplicate in the string");
    assert_eq!(sqlstate(&e), "23505");
    assert_eq!(ids(&c, "SELECT id FROM sp ORDER BY id").await, vec![1, 2]);
    c.batch_execute("INSERT INTO sp VALUES (30, '[3,0]'); DELETE FROM sp WHERE id = 2")
        .await
        .expect("implicit transaction");
    assert_eq!(ids(&c, "SELECT id FROM sp ORDER BY id").await, vec![1, 30]);
}

/// The row of `cc` nearest to `v`, by the index.
async fn nearest_id(client: &tokio_postgres::Client, v: &[f32]) -> i32 {
    client
        .query_one(
            "SELECT id FROM cc ORDER BY e <-> $1 LIMIT 1",
            &[&PgVector(v.to_vec())],
        )
        .await
        .expect("search")
        .get(0)
}

/// One write a client made: its tag is unique, so the final rows say whose write won.
#[derive(Debug, Clone)]
struct Write {
    key: i32,
    owner: i32,
    seq: i32,
    vector: Vec<f32>,
}

/// Eight clients upsert overlapping keys (`INSERT ... ON CONFLICT DO UPDATE`), alone and in
/// blocks that commit or roll back at random, and keep private keys of their own. After:
/// every shared key holds one of the committed writes to it (none that rolled back), every
/// private key holds exactly its owner's last committed write, and every row is found by
/// a search with its own vector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_upsert_and_roll_back_against_a_model() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let server = Server::start();
    let setup = server.client().await;
    setup
        .batch_execute(
            "CREATE TABLE cc (id int PRIMARY KEY, owner int, seq int, e vector(3)) WITH (distance = 'l2')",
        )
        .await
        .expect("create");
    const UPSERT: &str = "INSERT INTO cc VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE \
         SET owner = EXCLUDED.owner, seq = EXCLUDED.seq, e = EXCLUDED.e";
    let mut tasks = Vec::new();
    for owner in 0..8i32 {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(owner as u64);
            let (mut committed, mut rolled_back) = (Vec::new(), Vec::new());
            let mut seq = 0;
            let mut write = |rng: &mut StdRng, key: i32| {
                seq += 1;
                Write {
                    key,
                    owner,
                    seq,
                    vector: (0..3).map(|_| rng.gen_range(-10.0..10.0)).collect(),
                }
            };
            for _ in 0..25 {
                if rng.gen_bool(0.4) {
                    let key = rng.gen_range(0..10);
                    let w = write(&mut rng, key);
                    client
                        .execute(
                            UPSERT,
                            &[&w.key, &w.owner, &w.seq, &PgVector(w.vector.clone())],
                        )
                        .await
                        .expect("upsert");
                    committed.push(w);
                    continue;
                }
                client.batch_execute("BEGIN").await.expect("begin");
                let mut block = Vec::new();
                for _ in 0..rng.gen_range(1..4) {
                    let key = rng.gen_range(0..10);
                    block.push(write(&mut rng, key));
                }
                for j in 0..rng.gen_range(1..3) {
                    block.push(write(&mut rng, 100 + owner * 10 + j));
                }
                let mut deadlocked = false;
                for w in &block {
                    let done = client
                        .execute(
                            UPSERT,
                            &[&w.key, &w.owner, &w.seq, &PgVector(w.vector.clone())],
                        )
                        .await;
                    // Blocks take shared keys in any order: two can wait for each other,
                    // and one of them is told so (40P01), as Postgres tells it.
                    if let Err(e) = done {
                        assert_eq!(sqlstate(&e), "40P01", "upsert in a block: {e}");
                        deadlocked = true;
                        break;
                    }
                }
                if deadlocked {
                    client.batch_execute("ROLLBACK").await.expect("rollback");
                    rolled_back.extend(block);
                } else if rng.gen_bool(0.5) {
                    client.batch_execute("COMMIT").await.expect("commit");
                    committed.extend(block);
                } else {
                    client.batch_execute("ROLLBACK").await.expect("rollback");
                    rolled_back.extend(block);
                }
            }
            (committed, rolled_back)
        }));
    }
    let (mut committed, mut rolled_back) = (Vec::new(), Vec::new());
    for t in tasks {
        let (c, r) = t.await.expect("client task");
        committed.extend(c);
        rolled_back.extend(r);
    }
    // Read as text (simple protocol): `[x,y,z]` with each f32 printed exactly.
    let rows: Vec<(i32, i32, i32, Vec<f32>)> = setup
        .simple_query("SELECT id, owner, seq, e FROM cc ORDER BY id")
        .await
        .expect("rows")
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                let int = |i: usize| r.get(i).and_then(|v| v.parse().ok()).expect("int");
                let vector = r
                    .get(3)
                    .expect("vector")
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .map(|x| x.parse().expect("float"))
                    .collect();
                Some((int(0), int(1), int(2), vector))
            }
            _ => None,
        })
        .collect();
    let tag = |w: &Write| (w.key, w.owner, w.seq);
    let kept: std::collections::HashSet<_> = committed.iter().map(tag).collect();
    let undone: std::collections::HashSet<_> = rolled_back.iter().map(tag).collect();
    let mut keys: Vec<i32> = committed.iter().map(|w| w.key).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        keys,
        "exactly the keys some committed write reached"
    );
    for (id, owner, seq, vector) in &rows {
        assert!(
            !undone.contains(&(*id, *owner, *seq)),
            "rolled-back write {id}/{owner}/{seq} present"
        );
        assert!(
            kept.contains(&(*id, *owner, *seq)),
            "row {id} holds no committed write"
        );
        if *id >= 100 {
            // A private key: its owner's last committed write, and nothing else.
            let last = committed
                .iter()
                .filter(|w| w.key == *id)
                .max_by_key(|w| w.seq)
                .expect("a committed write");
            assert_eq!((*owner, *seq), (last.owner, last.seq), "private key {id}");
        }
        let w = committed
            .iter()
            .find(|w| tag(w) == (*id, *owner, *seq))
            .expect("the write");
        assert_eq!(vector, &w.vector, "row {id} carries its write's vector");
    }
    // The index: two writers of one key at the same moment can apply their points in the
    // other order than their rows (README, Known gaps), so a shared key's point may be
    // stale, never a private key's; a repair brings every point to its row.
    let stale_keys: Vec<i32> = {
        let mut out = Vec::new();
        for (id, _, _, vector) in &rows {
            if nearest_id(&setup, vector).await != *id {
                out.push(*id);
            }
        }
        out
    };
    assert!(
        stale_keys.iter().all(|k| *k < 100),
        "a private key's point is stale: {stale_keys:?}"
    );
    setup
        .batch_execute("SELECT * FROM vectorgate_reindex('cc')")
        .await
        .expect("repair");
    for (id, _, _, vector) in &rows {
        assert_eq!(
            nearest_id(&setup, vector).await,
            *id,
            "after a repair the index has row {id}'s vector"
        );
    }
    eprintln!(
        "8 clients: {} committed writes, {} rolled back, {} rows, {} stale points before the repair",
        committed.len(),
        rolled_back.len(),
        rows.len(),
        stale_keys.len()
    );
}
