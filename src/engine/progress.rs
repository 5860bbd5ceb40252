//! The COPYs running on this proxy, as `pg_stat_progress_copy` shows them: one entry
//! per COPY, counted by the COPY as it goes, gone when it ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// One running COPY.
#[derive(Debug)]
pub struct CopyProgress {
    /// The session's process id (its BackendKeyData).
    pub pid: i32,
    /// The database's name, as `current_database()` gives it.
    pub database: String,
    /// The table's catalog name (`schema.table` outside `public`).
    pub table: String,
    /// `COPY FROM` or `COPY TO`.
    pub command: &'static str,
    bytes: AtomicU64,
    tuples: AtomicU64,
}

impl CopyProgress {
    /// `bytes` more of the COPY's data were received.
    pub fn received(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// `tuples` more rows were written.
    pub fn written(&self, tuples: usize) {
        self.tuples.fetch_add(tuples as u64, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn tuples(&self) -> u64 {
        self.tuples.load(Ordering::Relaxed)
    }
}

/// The running COPYs. Each is listed while its [`Arc`] lives.
#[derive(Debug, Default)]
pub struct Copies(Mutex<Vec<Weak<CopyProgress>>>);

impl Copies {
    /// List a COPY that starts now; it stays listed until the handle is dropped.
    pub fn start(
        &self,
        pid: i32,
        database: &str,
        table: &str,
        command: &'static str,
    ) -> Arc<CopyProgress> {
        let progress = Arc::new(CopyProgress {
            pid,
            database: database.to_string(),
            table: table.to_string(),
            command,
            bytes: AtomicU64::new(0),
            tuples: AtomicU64::new(0),
        });
        let mut running = self.0.lock();
        running.retain(|c| c.strong_count() > 0);
        running.push(Arc::downgrade(&progress));
        progress
    }

    /// The COPYs running now, oldest first.
    pub fn running(&self) -> Vec<Arc<CopyProgress>> {
        self.0.lock().iter().filter_map(Weak::upgrade).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_listed_while_its_handle_lives() {
        let copies = Copies::default();
        let a = copies.start(7, "vectorgate", "docs", "COPY FROM");
        let b = copies.start(8, "vectorgate", "app.items", "COPY FROM");
        a.received(100);
        a.written(3);
        assert_eq!(copies.running().len(), 2);
        drop(b);
        let running = copies.running();
        assert_eq!(running.len(), 1);
        assert_eq!(
            (running[0].pid, running[0].bytes(), running[0].tuples()),
            (7, 100, 3)
        );
        drop((a, running));
        assert!(copies.running().is_empty());
    }
}
