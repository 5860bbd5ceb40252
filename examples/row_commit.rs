//! What one single-row write costs the embedded row store's engine (redb) on this
//! machine, the way vectorgate commits it: a 1,600-byte row and its outbox entry in one
//! write transaction, into a table of 10,000 rows.
//!
//!   cargo run --release --example row_commit -- [DIR]
//!
//! Three ways, twice each, 1,500 commits per round, p50 and p90 in ms: `immediate` (redb
//! makes each commit durable: what vectorgate does), `none` (redb's non-durable commit,
//! made durable every 200 commits: the engine's work without the wait for the disk) and
//! `none+log` (the same plus the row appended to a log file and `fdatasync`ed: what a
//! write-ahead log in front of redb would cost per commit). DIR (default a directory
//! under the system's temporary directory) is emptied first.

use std::io::Write;
use std::time::Instant;

use redb::{Database, Durability, TableDefinition};

const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows:t");
const OUTBOX: TableDefinition<(&str, &[u8]), i64> = TableDefinition::new("vg_outbox");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("vectorgate-row-commit"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = Database::create(dir.join("rows.redb"))?;
    let row = vec![7u8; 1600];
    let txn = db.begin_write()?;
    {
        let mut t = txn.open_table(ROWS)?;
        for i in 0..10_000u64 {
            t.insert(i.to_be_bytes().as_slice(), row.as_slice())?;
        }
        txn.open_table(OUTBOX)?;
    }
    txn.commit()?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))?;
    for way in ["immediate", "none", "none+log"].repeat(2) {
        let mut ms = Vec::with_capacity(1500);
        for n in 0..1500u64 {
            let key = ((n * 7919) % 10_000).to_be_bytes();
            let started = Instant::now();
            let mut txn = db.begin_write()?;
            if way != "immediate" {
                txn.set_durability(Durability::None)?;
            }
            {
                let mut t = txn.open_table(ROWS)?;
                t.insert(key.as_slice(), row.as_slice())?;
                let mut o = txn.open_table(OUTBOX)?;
                o.insert(("t", key.as_slice()), n as i64)?;
            }
            txn.commit()?;
            if way == "none+log" {
                log.write_all(&row)?;
                log.sync_data()?;
            }
            ms.push(started.elapsed().as_secs_f64() * 1e3);
            if way != "immediate" && n % 200 == 199 {
                db.begin_write()?.commit()?;
            }
        }
        ms.sort_by(f64::total_cmp);
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{way:10} p50 {:.3} ms  p90 {:.3} ms",
            ms[ms.len() / 2],
            ms[ms.len() * 9 / 10]
        )?;
    }
    Ok(())
}
