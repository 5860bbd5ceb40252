//! Advisory locks (`pg_advisory_lock` and its kin), exclusive across every session of
//! every proxy on one row store. A lock is a holder in the row store's unique-value
//! table under a space of its own, changed only by compare-and-swap (a CQL lightweight
//! transaction, or a redb write transaction), as UNIQUE values are: the holder names the
//! session (a random id) and when it last showed it was alive. Each proxy renews the
//! holders of its locks every [`RENEW`]; a holder not renewed for [`LEASE`] (its proxy
//! died) may be taken over. Counting (a session may take a lock more than once, and
//! must release it as often) is the session's own business.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::{UniqueHolder, now_micros};
use crate::types::Value;

use super::Core;

/// The unique-value space of advisory locks (UNIQUE constraints' are random hex).
const SPACE: &str = "advisory-lock";
/// How long a holder lives without renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a proxy renews its holders.
const RENEW: Duration = Duration::from_secs(5);

/// A lock's key: `pg_advisory_lock(bigint)` or `pg_advisory_lock(int, int)` (different
/// keys, as in Postgres).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockKey {
    One(i64),
    Two(i32, i32),
}

impl LockKey {
    fn encoded(self) -> Vec<u8> {
        let values = match self {
            LockKey::One(k) => vec![Value::Int(1), Value::Int(k)],
            LockKey::Two(a, b) => vec![Value::Int(2), Value::Int(a.into()), Value::Int(b.into())],
        };
        crate::store::keys::encode(&values)
    }
}

/// The locks this proxy's sessions hold, by encoded key: their holders as stored.
#[derive(Debug, Default)]
pub struct Held {
    holders: parking_lot::Mutex<HashMap<Vec<u8>, UniqueHolder>>,
    renewing: std::sync::atomic::AtomicBool,
}

impl Core {
    /// Take `key` for `session` (a random id): `true` once it holds it, `false` if
    /// another session does and `wait` is false. Waiting polls, up to 100 ms apart.
    pub async fn advisory_lock(
        self: &Arc<Core>,
        key: LockKey,
        session: &[u8],
        wait: bool,
    ) -> Result<bool> {
        let value = key.encoded();
        let mut pause = Duration::from_millis(2);
        loop {
            let mine = UniqueHolder {
                key: session.to_vec(),
                at: now_micros(),
            };
            let current = match self
                .rows
                .unique_swap(SPACE, &value, None, Some(&mine))
                .await?
            {
                Ok(()) => {
                    self.note_held(value, mine);
                    return Ok(true);
                }
                Err(None) => continue,
                Err(Some(h)) if h.key == session => return Ok(true),
                Err(Some(h)) => h,
            };
            if mine.at - current.at > LEASE.as_micros() as i64 {
                // Its proxy stopped renewing it: the holder is gone.
                if self
                    .rows
                    .unique_swap(SPACE, &value, Some(&current), Some(&mine))
                    .await?
                    .is_ok()
                {
                    self.note_held(value, mine);
                    return Ok(true);
                }
                continue;
            }
            if !wait {
                return Ok(false);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Give `key` back; `false` if `session` did not hold it.
    pub async fn advisory_unlock(&self, key: LockKey, session: &[u8]) -> Result<bool> {
        let value = key.encoded();
        let held = self.advisory.holders.lock().get(&value).cloned();
        let Some(holder) = held.filter(|h| h.key == session) else {
            return Ok(false);
        };
        match self
            .rows
            .unique_swap(SPACE, &value, Some(&holder), None)
            .await?
        {
            Ok(()) | Err(None) => {}
            Err(Some(h)) if h.key == session => {
                // Renewed meanwhile: give back the renewed holder.
                let _ = self.rows.unique_swap(SPACE, &value, Some(&h), None).await?;
            }
            Err(Some(_)) => {
                return Err(Error::internal(
                    "an advisory lock was taken over while held (its renewals failed)",
                ));
            }
        }
        self.advisory.holders.lock().remove(&value);
        Ok(true)
    }

    fn note_held(self: &Arc<Core>, value: Vec<u8>, holder: UniqueHolder) {
        self.advisory.holders.lock().insert(value, holder);
        if !self
            .advisory
            .renewing
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            spawn_renewal(Arc::downgrade(self), self.stop.clone());
        }
    }
}

/// Renew the holders of this proxy's locks every [`RENEW`] until shutdown.
fn spawn_renewal(core: Weak<Core>, stop: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RENEW) => {}
            }
            let Some(core) = core.upgrade() else { return };
            let held: Vec<(Vec<u8>, UniqueHolder)> = core
                .advisory
                .holders
                .lock()
                .iter()
                .map(|(k, h)| (k.clone(), h.clone()))
                .collect();
            for (value, old) in held {
                let new = UniqueHolder {
                    key: old.key.clone(),
                    at: now_micros(),
                };
                match core
                    .rows
                    .unique_swap(SPACE, &value, Some(&old), Some(&new))
                    .await
                {
                    Ok(Ok(())) => {
                        let mut holders = core.advisory.holders.lock();
                        // Unless it was given back meanwhile.
                        if holders.get(&value) == Some(&old) {
                            holders.insert(value, new);
                        }
                    }
                    Ok(Err(_)) => {
                        tracing::warn!("an advisory lock was lost: it was not renewed in time");
                        core.advisory.holders.lock().remove(&value);
                    }
                    Err(e) => tracing::warn!(error = %e, "advisory lock renewal failed"),
                }
            }
        }
    });
}
