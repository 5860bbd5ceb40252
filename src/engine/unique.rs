//! UNIQUE constraints besides the primary key, enforced across proxies. Each value of a
//! constraint (its columns' values, encoded like a key) has at most one holder, a row
//! key, in the row store; a holder changes only by compare-and-swap (a CQL lightweight
//! transaction, or a redb write transaction). A write claims the values its rows bring
//! before the rows are written and gives back the values they no longer have after:
//!
//! - a value held by another key is a 23505, unless that holder is stale: its row no
//!   longer has the value (a claim left behind by a crash between claim and write, or a
//!   give-back that failed) and it is older than [`GRACE`], or the holder is a row this
//!   transaction itself changed. A stale holder is taken over.
//! - in a transaction block, the values claimed are held from the statement on (a
//!   concurrent writer of the same value gets 23505 at once, where Postgres would make it
//!   wait for the block), and the values given up are given back at COMMIT; a ROLLBACK
//!   gives back what the block claimed and returns what it took over.
//!
//! A row whose constraint columns hold a NULL claims nothing (NULLs are distinct).

use crate::error::{Error, Result};
use crate::store::{Row, TableDef, UniqueDef, UniqueHolder, display_key_value, keys, now_micros};
use crate::types::Value;

use super::Core;
use super::tx::Pending;

/// How old a holder must be before a row that no longer has its value loses it.
pub const GRACE: i64 = 60_000_000;

/// A value a write took (or gives back).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    space: String,
    value: Vec<u8>,
    key: Vec<u8>,
    /// When it was taken (0: not known, for a value given back).
    at: i64,
    /// The stale holder it was taken from, returned if the write is rolled back.
    previous: Option<UniqueHolder>,
}

/// The encoded values of a constraint's columns in `row`; `None` if one is NULL.
fn value_of(u: &UniqueDef, row: &[Value]) -> Option<Vec<u8>> {
    let values: Vec<Value> = u
        .columns
        .iter()
        .map(|&c| row.get(c).cloned().unwrap_or(Value::Null))
        .collect();
    (!values.iter().any(Value::is_null)).then(|| keys::encode(&values))
}

fn violation(def: &TableDef, u: &UniqueDef, row: &[Value]) -> Error {
    let cols: Vec<&str> = u
        .columns
        .iter()
        .map(|&c| def.columns[c].name.as_str())
        .collect();
    let vals: Vec<String> = u
        .columns
        .iter()
        .map(|&c| display_key_value(&row[c]))
        .collect();
    Error::UniqueViolation {
        message: format!(
            "duplicate key value violates unique constraint \"{}\"",
            u.name
        ),
        detail: format!(
            "Key ({})=({}) already exists.",
            cols.join(", "),
            vals.join(", ")
        ),
        table: def.name.clone(),
        constraint: u.name.clone(),
    }
}

/// Claim the values that `rows` (each new row with the row its key had, if any) bring:
/// a value a row already had is not claimed again. `pending`: the transaction block's
/// changes to the table, if the write is in one. On a conflict, 23505 after giving back
/// what this call claimed.
pub async fn claim(
    core: &Core,
    def: &TableDef,
    pending: Option<&Pending>,
    rows: &[(&Row, Option<&Row>)],
) -> Result<Vec<Claim>> {
    let mut made = Vec::new();
    for (new, old) in rows {
        let key = keys::encode(&def.key_of(new));
        for u in &def.unique {
            let Some(value) = value_of(u, new) else {
                continue;
            };
            if old.and_then(|o| value_of(u, o)).as_ref() == Some(&value) {
                continue;
            }
            match take(core, def, pending, u, &value, &key).await {
                Ok(Some(c)) => made.push(c),
                Ok(None) => {}
                Err(Some(())) => {
                    give_back(core, &made).await;
                    return Err(violation(def, u, new));
                }
                Err(None) => {
                    give_back(core, &made).await;
                    return Err(Error::row_store("a unique value could not be claimed"));
                }
            }
            // Two rows of one write with the same value: the second finds the first's
            // claim (young): 23505, as Postgres gives.
        }
    }
    Ok(made)
}

/// Take `value` for `key`: `Some` claim if taken now, `None` if `key` holds it already,
/// `Err(Some(()))` if another row holds it, `Err(None)` if the store failed.
async fn take(
    core: &Core,
    def: &TableDef,
    pending: Option<&Pending>,
    u: &UniqueDef,
    value: &[u8],
    key: &[u8],
) -> std::result::Result<Option<Claim>, Option<()>> {
    let failed = |e: Error| {
        tracing::warn!(error = %e, constraint = %u.name, "unique claim failed");
        None
    };
    loop {
        let now = now_micros();
        let mine = UniqueHolder {
            key: key.to_vec(),
            at: now,
        };
        let claimed = |previous| Claim {
            space: u.space.clone(),
            value: value.to_vec(),
            key: key.to_vec(),
            at: now,
            previous,
        };
        let holder = match core
            .rows
            .unique_swap(&u.space, value, None, Some(&mine))
            .await
            .map_err(failed)?
        {
            Ok(()) => return Ok(Some(claimed(None))),
            Err(None) => continue,
            Err(Some(h)) if h.key == key => return Ok(None),
            Err(Some(h)) => h,
        };
        // Does the holder's row (as this write sees it) still have the value?
        let changed_here = pending.is_some_and(|p| p.lookup(&holder.key).is_some());
        if !changed_here && now - holder.at < GRACE {
            return Err(Some(()));
        }
        let holder_key = keys::decode(&holder.key).map_err(failed)?;
        let row = super::tx::get(core, pending, def, &[holder_key])
            .await
            .map_err(failed)?
            .pop()
            .flatten();
        if row.is_some_and(|r| value_of(u, &r).as_deref() == Some(value)) {
            return Err(Some(()));
        }
        match core
            .rows
            .unique_swap(&u.space, value, Some(&holder), Some(&mine))
            .await
            .map_err(failed)?
        {
            Ok(()) => return Ok(Some(claimed(Some(holder)))),
            Err(_) => continue,
        }
    }
}

/// The values `old` had that `new` (the row its key has after the write; `None` when
/// deleted) does not: to give back once the write stands.
pub fn given_up(def: &TableDef, old: &Row, new: Option<&Row>) -> Vec<Claim> {
    let key = keys::encode(&def.key_of(old));
    def.unique
        .iter()
        .filter_map(|u| {
            let value = value_of(u, old)?;
            if new.and_then(|n| value_of(u, n)).as_ref() == Some(&value) {
                return None;
            }
            Some(Claim {
                space: u.space.clone(),
                value,
                key: key.clone(),
                at: 0,
                previous: None,
            })
        })
        .collect()
}

/// Give back claims: each value its key holds is freed (or returned to the holder it was
/// taken from). Best effort: a failure is logged, and the claim left behind is taken
/// over once it is older than [`GRACE`].
pub async fn give_back(core: &Core, claims: &[Claim]) {
    for c in claims {
        if let Err(e) = give_back_one(core, c).await {
            tracing::warn!(error = %e, "a unique value was not given back; it is freed after the grace period");
        }
    }
}

async fn give_back_one(core: &Core, c: &Claim) -> Result<()> {
    let mut expected = UniqueHolder {
        key: c.key.clone(),
        at: c.at,
    };
    for _ in 0..3 {
        match core
            .rows
            .unique_swap(&c.space, &c.value, Some(&expected), c.previous.as_ref())
            .await?
        {
            Ok(()) => return Ok(()),
            // Held since another time by the same key (a claim made again): that one.
            Err(Some(h)) if h.key == c.key => expected = h,
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// After a transaction block committed: give back the values its rows gave up, and the
/// values it claimed that its rows no longer have (both as the block left the rows).
pub async fn after_commit(core: &Core, pending: &[std::sync::Arc<Pending>], claims: UniqueClaims) {
    let holds = |c: &Claim| {
        pending.iter().any(|p| {
            p.lookup(&c.key).flatten().is_some_and(|row| {
                p.def
                    .unique
                    .iter()
                    .any(|u| u.space == c.space && value_of(u, row).as_deref() == Some(&c.value))
            })
        })
    };
    let free: Vec<Claim> = claims
        .given_up
        .into_iter()
        .chain(claims.taken.into_iter().map(|c| Claim {
            previous: None,
            ..c
        }))
        .filter(|c| !holds(c))
        .collect();
    give_back(core, &free).await;
}

/// What a transaction block claimed and gave up so far.
#[derive(Debug, Default, Clone)]
pub struct UniqueClaims {
    pub taken: Vec<Claim>,
    pub given_up: Vec<Claim>,
}

/// Make a space for a new constraint's values.
pub fn new_space() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
