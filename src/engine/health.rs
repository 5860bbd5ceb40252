//! The vector index's circuit breaker. Rows are the source of truth, so the proxy keeps
//! answering when the index is unreachable, slow or failing:
//!
//! - **closed**: searches use the index; writes go to the rows, then to the index.
//! - **open** (after an index failure): searches are answered by an exact scan of the
//!   rows (with a NOTICE); writes are acknowledged once the rows have them, and their
//!   outbox entries (in the row store, so they survive a restart) stay pending.
//! - **recovering**: the probe found the index healthy again; missing collections are
//!   created and filled from the rows, and every pending outbox entry is replayed, while
//!   writes already go to the index and searches still scan; then the breaker closes.
//!
//! A background probe checks the index while the breaker is not closed.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Core;
use crate::error::{Error, Result};
use crate::store::TableDef;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const RECOVERING: u8 = 2;

#[derive(Debug, Default)]
pub struct IndexHealth {
    state: AtomicU8,
}

/// Whether an error means the index failed (as opposed to the statement being wrong).
pub fn is_index_failure(e: &Error) -> bool {
    matches!(
        e,
        Error::Unavailable {
            store: "vector index",
            ..
        } | Error::Timeout {
            store: "vector index",
            ..
        } | Error::Backend {
            store: "vector index",
            ..
        }
    )
}

impl IndexHealth {
    /// Searches may use the index.
    pub fn searchable(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }

    /// Writes should be sent to the index.
    pub fn writable(&self) -> bool {
        self.state.load(Ordering::Acquire) != OPEN
    }

    pub fn state_name(&self) -> &'static str {
        match self.state.load(Ordering::Acquire) {
            CLOSED => "closed",
            OPEN => "open",
            _ => "recovering",
        }
    }

    /// Open the breaker after an index failure.
    pub fn trip(&self, e: &Error) {
        if self.state.swap(OPEN, Ordering::AcqRel) != OPEN {
            tracing::warn!(error = %e, "vector index failed: answering searches from exact scans of the rows until it is back");
        }
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Release);
    }
}

/// Probe the index every `period` while the breaker is not closed, and bring it back.
pub fn spawn_probe(shared: Weak<Core>, period: Duration, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(period) => {}
            }
            let Some(shared) = shared.upgrade() else {
                break;
            };
            if shared.health.searchable() {
                continue;
            }
            if shared.index.health().await.is_err() {
                continue;
            }
            shared.health.set(RECOVERING);
            match recover(&shared).await {
                Ok(n) => {
                    shared.health.set(CLOSED);
                    tracing::info!(
                        tables_resent = n,
                        "vector index is back: searches use it again"
                    );
                }
                Err(e) => shared.health.trip(&e),
            }
        }
    });
}

/// Create missing collections (filled from the rows) and replay every outbox entry;
/// returns how many tables were filled from their rows.
pub(crate) async fn recover(shared: &Core) -> Result<usize> {
    let defs: Vec<Arc<TableDef>> = shared.tables();
    let mut resent = 0;
    for def in defs.iter().filter(|d| d.indexed()) {
        let missing = !shared.index.has_collection(def).await?;
        if missing {
            shared.index.create_collection(def).await?;
        }
        if missing {
            super::sync::backfill(shared.rows.as_ref(), shared.index.as_ref(), def).await?;
            resent += 1;
        } else {
            // Writes the index missed: replay the outbox now, before searches use it.
            super::sync::reconcile(
                shared.rows.as_ref(),
                shared.index.as_ref(),
                def,
                std::time::Duration::ZERO,
            )
            .await?;
        }
    }
    Ok(resent)
}
