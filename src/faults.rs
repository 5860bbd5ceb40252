//! Fault injection for the durability tests. Off unless the process starts with
//! `VECTORGATE_FAULT_INJECTION=1`; then two session settings act on the whole process:
//!
//! - `SET vectorgate.fault_index = on`: every call into the vector index fails as if the
//!   index were unreachable (08006), until set `off`.
//! - `SET vectorgate.fault_crash_after_row_write = on`: the next write aborts the process
//!   after the row store has it and before the index is told.
//! - `SET vectorgate.fault_crash_before_commit_point = on`: the next `COMMIT` aborts the
//!   process with every change staged but the store's commit point not yet reached (the
//!   embedded store's write transaction uncommitted; the CQL store's log written, its
//!   commit marker not).
//! - `SET vectorgate.fault_rows_fail_after_commit_point = on`: every `COMMIT` meets a row
//!   store that fails just past its commit point, until set `off`.
//! - `SET vectorgate.fault_crash_after_commit_point = on`: the next `COMMIT` aborts the
//!   process just past its commit point (the embedded store committed; the CQL store's
//!   marker written and about half of the rows applied).
//! - `SET vectorgate.fault_panic_next_search = on`: the next search of the vector index
//!   panics (a bug's stand-in: the statement gets XX000, its session goes on).

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::store::{Hit, Point, Predicate, SearchQuery, TableDef, VectorIndex};

static INDEX_DOWN: AtomicBool = AtomicBool::new(false);
static CRASH_AFTER_ROW_WRITE: AtomicBool = AtomicBool::new(false);
static PANIC_NEXT_SEARCH: AtomicBool = AtomicBool::new(false);

pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("VECTORGATE_FAULT_INJECTION").is_ok_and(|v| v == "1"))
}

/// Apply a `vectorgate.fault_*` setting; `false` if it is not a fault setting.
pub fn set(name: &str, on: bool) -> bool {
    match name {
        "vectorgate.fault_index" => INDEX_DOWN.store(on, Ordering::SeqCst),
        "vectorgate.fault_crash_after_row_write" => {
            CRASH_AFTER_ROW_WRITE.store(on, Ordering::SeqCst)
        }
        "vectorgate.fault_crash_before_commit_point" => {
            crate::store::CRASH_BEFORE_COMMIT_POINT.store(on, Ordering::SeqCst)
        }
        "vectorgate.fault_rows_fail_after_commit_point" => {
            crate::store::FAIL_AFTER_COMMIT_POINT.store(on, Ordering::SeqCst)
        }
        "vectorgate.fault_crash_after_commit_point" => {
            crate::store::CRASH_AFTER_COMMIT_POINT.store(on, Ordering::SeqCst)
        }
        "vectorgate.fault_panic_next_search" => PANIC_NEXT_SEARCH.store(on, Ordering::SeqCst),
        _ => return false,
    }
    true
}

/// Called between the row store write and the index write.
pub fn after_row_write() {
    if CRASH_AFTER_ROW_WRITE.load(Ordering::SeqCst) {
        tracing::error!("fault injection: aborting between the row write and the index write");
        std::process::abort();
    }
}

fn down() -> Result<()> {
    if INDEX_DOWN.load(Ordering::SeqCst) {
        Err(Error::Unavailable {
            store: "vector index",
            message: "fault injection: the index is down".into(),
        })
    } else {
        Ok(())
    }
}

/// A vector index that fails on demand (at the trait boundary, so every caller sees it).
pub struct FaultyIndex {
    pub inner: Arc<dyn VectorIndex>,
}

#[async_trait]
impl VectorIndex for FaultyIndex {
    fn shared(&self) -> bool {
        self.inner.shared()
    }

    async fn create_collection(&self, table: &TableDef) -> Result<()> {
        down()?;
        self.inner.create_collection(table).await
    }
    async fn has_collection(&self, table: &TableDef) -> Result<bool> {
        down()?;
        self.inner.has_collection(table).await
    }
    async fn update_collection(&self, table: &TableDef) -> Result<()> {
        down()?;
        self.inner.update_collection(table).await
    }
    async fn index_json_fields(&self, table: &TableDef) -> Result<()> {
        down()?;
        self.inner.index_json_fields(table).await
    }
    async fn drop_collection(&self, table: &TableDef) -> Result<()> {
        down()?;
        self.inner.drop_collection(table).await
    }
    async fn upsert(&self, table: &TableDef, points: Vec<Point>) -> Result<()> {
        down()?;
        self.inner.upsert(table, points).await
    }
    async fn delete(&self, table: &TableDef, ids: Vec<uuid::Uuid>) -> Result<()> {
        down()?;
        self.inner.delete(table, ids).await
    }
    async fn upsert_unflushed(&self, table: &TableDef, points: Vec<Point>) -> Result<()> {
        down()?;
        self.inner.upsert_unflushed(table, points).await
    }
    async fn delete_unflushed(&self, table: &TableDef, ids: Vec<uuid::Uuid>) -> Result<()> {
        down()?;
        self.inner.delete_unflushed(table, ids).await
    }
    fn bulk_load(&self, table: &TableDef, loading: bool) {
        self.inner.bulk_load(table, loading)
    }
    async fn make_durable(&self, table: &TableDef) -> Result<bool> {
        down()?;
        self.inner.make_durable(table).await
    }
    async fn search(&self, table: &TableDef, query: &SearchQuery<'_>) -> Result<Vec<Hit>> {
        down()?;
        if PANIC_NEXT_SEARCH.swap(false, Ordering::SeqCst) {
            panic!("fault injection: a search panics");
        }
        self.inner.search(table, query).await
    }
    async fn point_hashes(
        &self,
        table: &TableDef,
        ids: &[uuid::Uuid],
    ) -> Result<std::collections::HashMap<uuid::Uuid, String>> {
        down()?;
        self.inner.point_hashes(table, ids).await
    }
    async fn scroll_keys(
        &self,
        table: &TableDef,
        offset: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<(Vec<(uuid::Uuid, Option<String>)>, Option<uuid::Uuid>)> {
        down()?;
        self.inner.scroll_keys(table, offset, limit).await
    }
    async fn delete_expired(&self, table: &TableDef, now: i64) -> Result<()> {
        down()?;
        self.inner.delete_expired(table, now).await
    }
    fn explain_filter(&self, table: &TableDef, filter: &Predicate) -> Result<String> {
        self.inner.explain_filter(table, filter)
    }
    async fn health(&self) -> Result<()> {
        down()?;
        self.inner.health().await
    }
    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }
}
