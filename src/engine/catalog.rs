//! One catalog for every proxy on a cluster. A row store that other processes share (a
//! CQL cluster) keeps a catalog version that every change to the catalog increases, and
//! gives a lease: a change returns to its client only after the lease has run out.
//! Each proxy reads the version in the background four times per lease while it serves
//! statements (not once none came for [`WATCH_IDLE`]) and reloads the catalog when it
//! moved; a statement uses the catalog as it is when the last read was sent less than a
//! lease ago, and otherwise reads the version itself first. So a statement that starts
//! after a change has returned, on any proxy, sees the change; the hot path pays a
//! clock reading, and an idle proxy sends the store nothing.
//!
//! A proxy with an index of its own (the embedded one) brings it in step with what it
//! learns: collections for tables created elsewhere, built from the rows; a rebuild for
//! a table whose columns or index settings changed; none for a dropped table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::store::{SequenceDef, TableDef};

use super::Core;

/// What this proxy knows of the shared catalog.
#[derive(Debug)]
pub(crate) struct Watch {
    /// `None`: only this process opens the store; nothing to watch.
    lease: Option<Duration>,
    /// The version the catalog in memory was read at, and when that read was sent.
    seen: Mutex<Option<(i64, Instant)>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// When a statement last failed to read the version: for a lease after that,
    /// statements do not wait for the store again (the background reads go on).
    failed: Mutex<Option<Instant>>,
    /// When a statement last asked for the catalog, in milliseconds after `born`.
    asked_ms: AtomicU64,
    born: Instant,
}

/// The background reads stop once no statement asked for the catalog for this long (the
/// next statement then reads the version itself), and start again with it.
const WATCH_IDLE: Duration = Duration::from_secs(5);

impl Watch {
    pub(crate) fn new(lease: Option<Duration>, version: i64, sent: Instant) -> Watch {
        Watch {
            lease,
            seen: Mutex::new(Some((version, sent))),
            reloading: Default::default(),
            failed: Mutex::new(None),
            asked_ms: AtomicU64::new(0),
            born: sent,
        }
    }

    fn asked(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.born).as_millis() as u64;
        self.asked_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Whether no statement asked for the catalog for [`WATCH_IDLE`].
    fn idle(&self, now: Instant) -> bool {
        let asked = self.born + Duration::from_millis(self.asked_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(asked) > WATCH_IDLE
    }

    fn fresh_since(&self, t: Instant) -> bool {
        self.seen.lock().is_some_and(|(_, sent)| sent >= t)
    }
}

/// What one reload found changed, for the proxy's own index.
#[derive(Default)]
struct Changes {
    created: Vec<Arc<TableDef>>,
    altered: Vec<(Arc<TableDef>, Arc<TableDef>)>,
    dropped: Vec<Arc<TableDef>>,
}

impl Core {
    /// Make sure the catalog in memory is the shared one as of now (at most a lease
    /// old). Called before each statement; free while the last background read is
    /// recent.
    ///
    /// If the version cannot be read, the statement goes on with the catalog it has
    /// (one that touches the store then fails on its own), and for a lease the
    /// statements after it do not wait for the store to answer again.
    pub async fn fresh_catalog(self: &Arc<Self>) {
        let Some(lease) = self.watch.lease else {
            return;
        };
        let asked = Instant::now();
        self.watch.asked(asked);
        let recent = self
            .watch
            .seen
            .lock()
            .is_some_and(|(_, sent)| asked.duration_since(sent) < lease);
        let failing = self
            .watch
            .failed
            .lock()
            .is_some_and(|at| asked.duration_since(at) < lease);
        if recent || failing {
            return;
        }
        if let Err(e) = self.reload_catalog(asked).await {
            *self.watch.failed.lock() = Some(Instant::now());
            tracing::debug!(error = %e, "catalog version not read; the catalog in memory is used");
        }
    }

    /// Read the version (with a read sent no earlier than `asked`) and, if it moved,
    /// the catalog.
    async fn reload_catalog(self: &Arc<Self>, asked: Instant) -> Result<()> {
        let _one = self.watch.reloading.lock().await;
        if self.watch.fresh_since(asked) {
            return Ok(());
        }
        // A change made by this proxy while the tables were read makes what was read
        // older than what is in memory: read again.
        for _ in 0..5 {
            let sent = Instant::now();
            let generation = self.generation();
            let version = self.rows.catalog_version().await?;
            let known = self.watch.seen.lock().map(|(v, _)| v);
            if known == Some(version) {
                *self.watch.seen.lock() = Some((version, sent));
                return Ok(());
            }
            let tables = self.rows.list_tables().await?;
            let sequences = self.rows.list_sequences().await?;
            let schemas = self.rows.list_names(crate::store::Names::Schema).await?;
            let Some(changes) = self.install(generation, tables) else {
                continue;
            };
            self.install_sequences(sequences).await;
            self.install_schemas(schemas);
            *self.watch.seen.lock() = Some((version, sent));
            if !changes.is_empty() {
                tracing::info!(
                    version,
                    created = changes.created.len(),
                    altered = changes.altered.len(),
                    dropped = changes.dropped.len(),
                    "catalog changed by another proxy"
                );
            }
            if self.index.shared() {
                // The proxy that made a table made its collection; one this proxy cannot
                // find (another collection prefix) it makes and fills itself.
                let mut missing = Vec::new();
                for def in changes.created.iter().filter(|d| d.indexed()) {
                    if !self.index.has_collection(def).await.unwrap_or(true) {
                        missing.push(def.clone());
                    }
                }
                self.follow(Changes {
                    created: missing,
                    ..Changes::default()
                })
                .await;
            } else {
                self.follow(changes).await;
            }
            return Ok(());
        }
        Ok(())
    }

    /// Put the tables read in place of those in memory, unless the catalog changed here
    /// since `generation`; what changed.
    fn install(&self, generation: u64, defs: Vec<TableDef>) -> Option<Changes> {
        let mut tables = self.tables.write();
        if self.generation() != generation {
            return None;
        }
        let mut changes = Changes::default();
        let mut next: HashMap<String, Arc<TableDef>> = HashMap::with_capacity(defs.len());
        // A table this proxy is changing keeps what is in memory: the change puts its
        // own definition there when it is done.
        let busy = self.changing.lock().clone();
        for name in &busy {
            if let Some(def) = tables.get(name) {
                next.insert(name.clone(), def.clone());
            }
        }
        for def in defs.into_iter().filter(|d| !busy.contains(&d.name)) {
            let def = match tables.get(&def.name) {
                Some(old) if **old == def => old.clone(),
                Some(old) => {
                    let def = Arc::new(def);
                    changes.altered.push((old.clone(), def.clone()));
                    def
                }
                None => {
                    let def = Arc::new(def);
                    changes.created.push(def.clone());
                    def
                }
            };
            next.insert(def.name.clone(), def);
        }
        changes.dropped = tables
            .iter()
            .filter(|(name, _)| !next.contains_key(*name) && !busy.contains(*name))
            .map(|(_, def)| def.clone())
            .collect();
        if !changes.is_empty() {
            *tables = next;
            self.bump();
        }
        Some(changes)
    }

    async fn install_sequences(&self, defs: Vec<SequenceDef>) {
        let defs: HashMap<String, Arc<SequenceDef>> = defs
            .into_iter()
            .map(|d| (d.name.clone(), Arc::new(d)))
            .collect();
        // Values taken from a sequence that was dropped (or dropped and made again) are
        // not handed out; one altered (a table rewritten by ALTER TABLE gives it another
        // owner, or its column's type) is the same sequence.
        let mut blocks = self.sequences.blocks.lock().await;
        let mut known = self.sequences.defs.write();
        blocks.retain(
            |name, _| matches!((known.get(name), defs.get(name)), (Some(a), Some(b)) if a.same_sequence(b)),
        );
        *known = defs;
    }

    /// Bring this proxy's own index in step with tables another proxy created,
    /// changed or dropped. A new collection is made at once (so writes through this
    /// proxy reach it) and filled from the rows in the background; searches of the
    /// table scan the rows until it is full.
    async fn follow(self: &Arc<Self>, changes: Changes) {
        for def in changes.dropped.iter().filter(|d| d.indexed()) {
            if let Err(e) = self.index.drop_collection(def).await {
                tracing::warn!(table = %def.name, error = %e, "collection of a dropped table not removed");
            }
        }
        let mut rebuild = Vec::new();
        for def in changes.created.into_iter().filter(|d| d.indexed()) {
            rebuild.push((None, def));
        }
        for (old, new) in changes.altered {
            let same_index = old.columns == new.columns
                && old.vectors() == new.vectors()
                && old.options == new.options
                && old.json_indexes == new.json_indexes;
            if !same_index {
                rebuild.push((Some(old), new));
            }
        }
        for (old, def) in rebuild {
            // Marked before the old collection goes: searches scan the rows until the
            // new one is full.
            let rebuilding = Rebuilding::new(self.clone(), &def.name);
            let made = async {
                if let Some(old) = old.filter(|o| o.indexed()) {
                    self.index.drop_collection(&old).await?;
                }
                self.index.create_collection(&def).await
            };
            if let Err(e) = made.await {
                self.index_not_followed(&def, &e);
                continue;
            }
            tokio::spawn(async move {
                let core = rebuilding.core.clone();
                let filled =
                    super::sync::backfill(core.rows.as_ref(), core.index.as_ref(), &def).await;
                if let Err(e) = filled {
                    core.index_not_followed(&def, &e);
                }
                drop(rebuilding);
            });
        }
    }

    fn index_not_followed(&self, def: &TableDef, e: &crate::error::Error) {
        tracing::warn!(table = %def.name, error = %e, "index of a table another proxy changed not rebuilt; the next start-up builds it");
        if super::health::is_index_failure(e) {
            self.health.trip(e);
        }
    }
}

/// A table's collection rebuilt from its rows (searches scan the rows) while this
/// lives; owned, so that a background task can hold it.
struct Rebuilding {
    core: Arc<Core>,
    table: String,
}

impl Rebuilding {
    fn new(core: Arc<Core>, table: &str) -> Rebuilding {
        core.rebuilding.lock().insert(table.to_string());
        Rebuilding {
            core,
            table: table.to_string(),
        }
    }
}

impl Drop for Rebuilding {
    fn drop(&mut self) {
        self.core.rebuilding.lock().remove(&self.table);
    }
}

/// A table this proxy is creating, changing or dropping while this lives.
pub(crate) struct Changing<'a> {
    core: &'a Core,
    table: String,
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        self.core.changing.lock().remove(&self.table);
    }
}

impl Core {
    /// Mark `table` as being changed by this proxy: a reload of the catalog meanwhile
    /// leaves it as it is in memory.
    pub(crate) fn changing(&self, table: &str) -> Changing<'_> {
        self.changing.lock().insert(table.to_string());
        Changing {
            core: self,
            table: table.to_string(),
        }
    }
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.created.is_empty() && self.altered.is_empty() && self.dropped.is_empty()
    }
}

/// Read the catalog version four times per lease, reloading when it moved, while the
/// proxy serves statements.
pub(crate) fn spawn_watcher(shared: Weak<Core>, stop: CancellationToken) {
    let Some(lease) = shared.upgrade().and_then(|c| c.watch.lease) else {
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(lease / 4) => {}
            }
            let Some(core) = shared.upgrade() else {
                break;
            };
            if core.watch.idle(Instant::now()) {
                continue;
            }
            if let Err(e) = core.reload_catalog(Instant::now()).await {
                tracing::debug!(error = %e, "catalog version not read; statements read it themselves");
            }
        }
    });
}
