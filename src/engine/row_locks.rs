//! Row locks, as Postgres takes them for `UPDATE`, `DELETE` and `INSERT ... ON
//! CONFLICT`: a session that changes a row holds its key until its transaction ends
//! (the statement, outside a block), and another session that wants to change the same
//! row waits for it, then works on the row as the first one left it. So two sessions'
//! `UPDATE t SET n = n + 1` both count, as in Postgres.
//!
//! The locks live in the proxy's memory: they order the sessions of one proxy (every
//! proxy of one row store has its own table). A waiter that would close a circle of
//! waiting sessions gets 40P01, as Postgres' deadlock detector gives it.
//!
//! A statement reads first and locks after (it learns which rows from the read), so it
//! must know whether a row it read was changed before it got the lock: every release
//! is numbered, and a key remembers the number of its last release for a while
//! ([`REMEMBER`]); [`RowLocks::lock`] says whether any key it took was released after
//! the number the statement saw before it read ([`RowLocks::seen`]). Then the statement
//! reads again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::error::{Error, Result};

/// How long a released key remembers when it was released. A statement that read
/// longer ago than the oldest forgotten release reads again (see [`State::horizon`]).
const REMEMBER: Duration = Duration::from_secs(10);

/// A lock's name: the table and the row's encoded key.
type Name = (String, Vec<u8>);

#[derive(Debug)]
enum Slot {
    Held(u64),
    /// Released (by the release numbered so), at that time.
    Free(u64, Instant),
}

#[derive(Debug)]
struct Owner {
    /// What it holds.
    names: Vec<Name>,
    /// Whom it is waiting for.
    waits_for: Option<u64>,
    /// Bumped when it releases what it holds: its waiters wake.
    released: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<Name, Slot>,
    owners: HashMap<u64, Owner>,
    /// The number of the last release.
    releases: u64,
    /// The newest release a key no longer remembers: a statement that read before it
    /// cannot tell whether its rows changed, and reads again.
    horizon: u64,
    /// When released keys were last forgotten.
    swept: Option<Instant>,
}

/// The row locks of one proxy's sessions on one engine.
#[derive(Debug, Default)]
pub struct RowLocks {
    state: Mutex<State>,
}

/// Clears an owner's "waiting for" when its wait ends, however it ends (a statement
/// cancelled while it waits, too).
struct Waiting<'a> {
    locks: &'a RowLocks,
    owner: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(o) = self.locks.state.lock().owners.get_mut(&self.owner) {
            o.waits_for = None;
        }
    }
}

impl RowLocks {
    /// The number to give [`RowLocks::lock`] for rows read from now on.
    pub fn seen(&self) -> u64 {
        self.state.lock().releases
    }

    /// Take the locks of `keys` (encoded) of `table` for `owner`, waiting for other
    /// owners to release them; keys it already holds are taken again at no cost.
    /// `Ok(true)` when one of them may have changed since `seen` (its rows must be
    /// read again); 40P01 when waiting would close a circle.
    pub async fn lock(
        &self,
        owner: u64,
        table: &str,
        keys: impl IntoIterator<Item = Vec<u8>>,
        seen: u64,
    ) -> Result<bool> {
        let mut keys: Vec<Vec<u8>> = keys.into_iter().collect();
        // One order for everyone: two statements locking the same keys do not deadlock.
        keys.sort_unstable();
        keys.dedup();
        let mut changed = false;
        for key in keys {
            let name = (table.to_string(), key);
            loop {
                let mut wait = {
                    let mut st = self.state.lock();
                    let holder = match st.slots.get(&name) {
                        Some(Slot::Held(h)) if *h == owner => break,
                        Some(Slot::Held(h)) => *h,
                        Some(Slot::Free(at, _)) => {
                            changed |= *at > seen;
                            st.take(owner, name.clone());
                            break;
                        }
                        None => {
                            changed |= seen < st.horizon;
                            st.take(owner, name.clone());
                            break;
                        }
                    };
                    if st.leads_to(holder, owner) {
                        return Err(Error::Detailed {
                            code: "40P01",
                            message: "deadlock detected".into(),
                            detail: format!(
                                "Sessions wait for each other's rows of \"{table}\" (or of \
                                 tables they changed before)."
                            ),
                        });
                    }
                    st.owner(owner).waits_for = Some(holder);
                    st.owner(holder).released.subscribe()
                };
                let _waiting = Waiting { locks: self, owner };
                // Woken by the holder's release (or its end: the sender is dropped).
                let _ = wait.changed().await;
            }
        }
        Ok(changed)
    }

    /// Take every lock of `names` (table, encoded key) for `owner` if none is held by
    /// another owner, without waiting: `None` when one is (nothing is taken then), or
    /// whether one of them may have changed since `seen` (see [`RowLocks::lock`]).
    pub fn try_take(&self, owner: u64, names: &[(String, Vec<u8>)], seen: u64) -> Option<bool> {
        let mut st = self.state.lock();
        let busy = names
            .iter()
            .any(|n| matches!(st.slots.get(n), Some(Slot::Held(h)) if *h != owner));
        if busy {
            return None;
        }
        let mut changed = false;
        for name in names {
            match st.slots.get(name) {
                Some(Slot::Held(_)) => continue,
                Some(Slot::Free(at, _)) => changed |= *at > seen,
                None => changed |= seen < st.horizon,
            }
            st.take(owner, name.clone());
        }
        Some(changed)
    }

    /// Whether `owner` holds any lock.
    pub fn holds(&self, owner: u64) -> bool {
        self.state
            .lock()
            .owners
            .get(&owner)
            .is_some_and(|o| !o.names.is_empty())
    }

    /// Give up what `owner` holds (its transaction ended): its waiters wake.
    pub fn release(&self, owner: u64) {
        let mut st = self.state.lock();
        let Some(names) = st
            .owners
            .get_mut(&owner)
            .map(|o| std::mem::take(&mut o.names))
        else {
            return;
        };
        if names.is_empty() {
            return;
        }
        st.releases += 1;
        let (at, now) = (st.releases, Instant::now());
        for name in names {
            st.slots.insert(name, Slot::Free(at, now));
        }
        // Its waiters wait for nobody now, though they may not have run yet to say so:
        // a "waits for" left standing would show circles that are not there.
        for o in st.owners.values_mut() {
            if o.waits_for == Some(owner) {
                o.waits_for = None;
            }
        }
        if let Some(o) = st.owners.get(&owner) {
            o.released.send_modify(|n| *n += 1);
        }
        st.sweep(now);
    }

    /// The owner is gone (its session ended): release, and forget it.
    pub fn forget(&self, owner: u64) {
        self.release(owner);
        self.state.lock().owners.remove(&owner);
    }
}

impl State {
    fn owner(&mut self, id: u64) -> &mut Owner {
        self.owners.entry(id).or_insert_with(|| Owner {
            names: Vec::new(),
            waits_for: None,
            released: watch::channel(0).0,
        })
    }

    fn take(&mut self, owner: u64, name: Name) {
        self.slots.insert(name.clone(), Slot::Held(owner));
        self.owner(owner).names.push(name);
    }

    /// Whether `from` waits, directly or through others, for `to` (or is `to`).
    fn leads_to(&self, from: u64, to: u64) -> bool {
        let mut at = from;
        // Each owner waits for one other: a walk longer than the owners is a circle
        // that does not pass `to`.
        for _ in 0..=self.owners.len() {
            if at == to {
                return true;
            }
            match self.owners.get(&at).and_then(|o| o.waits_for) {
                Some(next) => at = next,
                None => return false,
            }
        }
        false
    }

    /// Forget keys released longer than [`REMEMBER`] ago (at most once a second).
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.swept = Some(now);
        let mut horizon = self.horizon;
        self.slots.retain(|_, slot| match slot {
            Slot::Free(at, when) if now.duration_since(*when) > REMEMBER => {
                horizon = horizon.max(*at);
                false
            }
            _ => true,
        });
        self.horizon = horizon;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(n: u8) -> Vec<u8> {
        vec![n]
    }

    #[tokio::test]
    async fn a_second_owner_waits_for_the_first_and_sees_a_change() {
        let locks = Arc::new(RowLocks::default());
        let seen = locks.seen();
        assert!(!locks.lock(1, "t", [key(1)], seen).await.expect("lock"));
        let l2 = locks.clone();
        let second = tokio::spawn(async move { l2.lock(2, "t", [key(1)], seen).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the second owner must wait");
        locks.release(1);
        // Released after the second one read: its rows changed.
        assert!(second.await.expect("task").expect("lock"));
        assert!(locks.holds(2));
        // A key released before a statement read is no change to it.
        locks.release(2);
        let seen = locks.seen();
        assert!(!locks.lock(3, "t", [key(1)], seen).await.expect("lock"));
    }

    #[tokio::test]
    async fn a_woken_waiter_that_has_not_run_yet_closes_no_circle() {
        let locks = Arc::new(RowLocks::default());
        let seen = locks.seen();
        locks.lock(1, "t", [key(1)], seen).await.expect("lock");
        locks.lock(2, "t", [key(2)], seen).await.expect("lock");
        // Owner 2 waits for owner 1, and is not polled again before owner 1 goes on.
        let l2 = locks.clone();
        let mut second = Box::pin(async move { l2.lock(2, "t", [key(1)], seen).await });
        assert!(futures::poll!(second.as_mut()).is_pending());
        locks.release(1);
        // Owner 1, in its next statement, wants owner 2's key: it waits (owner 2 waits
        // for nobody now), it is no deadlock.
        let l1 = locks.clone();
        let first = tokio::spawn(async move { l1.lock(1, "t", [key(2)], seen).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!first.is_finished(), "owner 1 waits for owner 2");
        assert!(second.await.expect("owner 2 takes key 1"));
        locks.release(2);
        assert!(first.await.expect("task").expect("owner 1 takes key 2"));
    }

    #[tokio::test]
    async fn try_take_takes_all_or_nothing() {
        let locks = RowLocks::default();
        let seen = locks.seen();
        let name = |n: u8| ("t".to_string(), key(n));
        assert_eq!(locks.try_take(1, &[name(1)], seen), Some(false));
        assert_eq!(locks.try_take(2, &[name(2), name(1)], seen), None);
        // Key 2 was not taken by the refused attempt.
        assert_eq!(locks.try_take(3, &[name(2)], seen), Some(false));
        assert_eq!(locks.try_take(1, &[name(1)], seen), Some(false));
        locks.release(1);
        assert_eq!(locks.try_take(2, &[name(1)], seen), Some(true));
    }

    #[tokio::test]
    async fn a_circle_of_waiters_is_a_deadlock() {
        let locks = Arc::new(RowLocks::default());
        let seen = locks.seen();
        locks.lock(1, "t", [key(1)], seen).await.expect("lock");
        locks.lock(2, "t", [key(2)], seen).await.expect("lock");
        let l1 = locks.clone();
        let first = tokio::spawn(async move { l1.lock(1, "t", [key(2)], seen).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let e = locks
            .lock(2, "t", [key(1)], seen)
            .await
            .expect_err("a deadlock");
        assert_eq!(e.sqlstate(), "40P01");
        locks.release(2);
        assert!(first.await.expect("task").expect("lock"));
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_no_trace() {
        let locks = Arc::new(RowLocks::default());
        let seen = locks.seen();
        locks.lock(1, "t", [key(1)], seen).await.expect("lock");
        let waited = tokio::time::timeout(
            Duration::from_millis(50),
            locks.lock(2, "t", [key(1)], seen),
        )
        .await;
        assert!(waited.is_err());
        // Owner 2 waits for nobody now: owner 1 may wait for a key owner 2 holds.
        locks.lock(2, "t", [key(2)], seen).await.expect("lock");
        let l1 = locks.clone();
        let first = tokio::spawn(async move { l1.lock(1, "t", [key(2)], seen).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        locks.forget(2);
        assert!(first.await.expect("lock").is_ok());
    }
}
