//! Sequences: `CREATE SEQUENCE`, the sequences behind `serial` and identity columns, and
//! `nextval`/`setval`. A sequence's state (the last value taken) lives in the row store
//! and is moved only by a compare-and-swap (a CQL lightweight transaction, or a redb
//! write transaction), so no two proxies on one cluster ever hand out the same value.
//! Each proxy takes [`BLOCK`] values at a time and hands them out from memory: values
//! are unique across proxies and increase within one, but proxies interleave their
//! blocks, and a restart leaves the rest of a block unused (as Postgres' `CACHE` does).

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::store::{SequenceDef, SequenceState};

use super::Core;

/// How many values a proxy takes from a sequence's stored state at once.
pub const BLOCK: i64 = 32;

/// The sequences a proxy knows, and the values it has taken but not handed out.
#[derive(Debug, Default)]
pub struct Sequences {
    pub(super) defs: parking_lot::RwLock<HashMap<String, Arc<SequenceDef>>>,
    pub(super) blocks: tokio::sync::Mutex<HashMap<String, Block>>,
}

/// Values taken from a sequence: `next`, `next + increment`, ... (`left` of them).
#[derive(Debug, Clone, Copy)]
pub(super) struct Block {
    next: i64,
    left: i64,
}

impl Sequences {
    pub(crate) fn load(defs: Vec<SequenceDef>) -> Sequences {
        Sequences {
            defs: parking_lot::RwLock::new(
                defs.into_iter()
                    .map(|d| (d.name.clone(), Arc::new(d)))
                    .collect(),
            ),
            blocks: Default::default(),
        }
    }
}

/// The bounds and start a sequence of type `ty` takes by default (Postgres'): 1 up to
/// the type's maximum counting up, down from -1 to its minimum counting down.
pub fn type_bounds(ty: &crate::types::ColumnType) -> (i64, i64) {
    use crate::types::ColumnType;
    match ty {
        ColumnType::SmallInt => (i16::MIN as i64, i16::MAX as i64),
        ColumnType::Int => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    }
}

impl Core {
    /// The sequence of that name (42P01 if there is none). One another proxy created is
    /// found in the row store.
    pub async fn sequence(&self, name: &str) -> Result<Arc<SequenceDef>> {
        if let Some(d) = self.sequences.defs.read().get(name) {
            return Ok(d.clone());
        }
        let all = self.rows.list_sequences().await?;
        let mut defs = self.sequences.defs.write();
        *defs = all
            .into_iter()
            .map(|d| (d.name.clone(), Arc::new(d)))
            .collect();
        defs.get(name)
            .cloned()
            .ok_or_else(|| Error::UndefinedTable(name.to_string()))
    }

    pub fn has_sequence(&self, name: &str) -> bool {
        self.sequences.defs.read().contains_key(name)
    }

    /// Every sequence this proxy knows.
    pub fn sequence_defs(&self) -> Vec<Arc<SequenceDef>> {
        self.sequences.defs.read().values().cloned().collect()
    }

    pub async fn create_sequence(&self, def: SequenceDef) -> Result<()> {
        if self.has_table(&def.name) {
            return Err(Error::DuplicateTable(def.name));
        }
        let state = SequenceState {
            last: def.start,
            called: false,
        };
        self.rows.create_sequence(&def, state).await?;
        self.sequences
            .defs
            .write()
            .insert(def.name.clone(), Arc::new(def));
        Ok(())
    }

    /// Change a sequence's definition (`ALTER SEQUENCE ... OWNED BY`), keeping where it
    /// is.
    pub async fn replace_sequence(&self, def: SequenceDef) -> Result<()> {
        if !self.rows.set_sequence_def(&def).await? {
            return Err(Error::UndefinedTable(def.name.clone()));
        }
        self.sequences
            .defs
            .write()
            .insert(def.name.clone(), Arc::new(def));
        Ok(())
    }

    pub async fn drop_sequence(&self, name: &str) -> Result<()> {
        self.rows.drop_sequence(name).await?;
        self.sequences.defs.write().remove(name);
        self.sequences.blocks.lock().await.remove(name);
        Ok(())
    }

    /// The next `n` values of a sequence.
    pub async fn nextvals(&self, name: &str, n: usize) -> Result<Vec<i64>> {
        let def = self.sequence(name).await?;
        let mut blocks = self.sequences.blocks.lock().await;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if let Some(b) = blocks.get_mut(name).filter(|b| b.left > 0) {
                out.push(b.next);
                b.left -= 1;
                b.next = b.next.wrapping_add(def.increment);
                continue;
            }
            let want = BLOCK.max((n - out.len()) as i64);
            let block = self.reserve(&def, want).await?;
            blocks.insert(name.to_string(), block);
        }
        Ok(out)
    }

    /// Take up to `want` values from the stored state (fewer where the sequence ends).
    async fn reserve(&self, def: &SequenceDef, want: i64) -> Result<Block> {
        loop {
            let old = self
                .rows
                .sequence_state(&def.name)
                .await?
                .ok_or_else(|| Error::UndefinedTable(def.name.clone()))?;
            let first = if old.called {
                let next = old.last as i128 + def.increment as i128;
                if next > def.max as i128 || next < def.min as i128 {
                    if !def.cycle {
                        let (which, bound) = if def.increment > 0 {
                            ("maximum", def.max)
                        } else {
                            ("minimum", def.min)
                        };
                        return Err(Error::SequenceLimit(format!(
                            "nextval: reached {which} value of sequence \"{}\" ({bound})",
                            def.name
                        )));
                    }
                    if def.increment > 0 { def.min } else { def.max }
                } else {
                    next as i64
                }
            } else {
                old.last
            };
            // How many values fit between `first` and the bound it moves towards.
            let room = if def.increment > 0 {
                (def.max as i128 - first as i128) / def.increment as i128 + 1
            } else {
                (first as i128 - def.min as i128) / (-(def.increment as i128)) + 1
            };
            let left = (want as i128).min(room).max(1) as i64;
            let last = (first as i128 + (left as i128 - 1) * def.increment as i128) as i64;
            let new = SequenceState { last, called: true };
            if self.rows.sequence_swap(&def.name, old, new).await? {
                return Ok(Block { next: first, left });
            }
        }
    }

    /// The sequence's state as a reader of it sees it (`SELECT last_value, is_called
    /// FROM seq`, `pg_sequences`): the stored state, which counts the values reserved
    /// in blocks; while the last block reserved is this proxy's, the last value this
    /// proxy handed out of it, as Postgres shows it. `None`: no state stored.
    pub async fn sequence_state(&self, def: &SequenceDef) -> Result<Option<SequenceState>> {
        let name = def.name.as_str();
        let blocks = self.sequences.blocks.lock().await;
        let Some(stored) = self.rows.sequence_state(name).await? else {
            return Ok(None);
        };
        if let Some(b) = blocks.get(name)
            && stored.called
        {
            let end = b.next as i128 + (b.left as i128 - 1) * def.increment as i128;
            if end == stored.last as i128 {
                return Ok(Some(SequenceState {
                    last: b.next.wrapping_sub(def.increment),
                    called: true,
                }));
            }
        }
        Ok(Some(stored))
    }

    /// `setval(name, value, called)`: the sequence goes on after `value` (or at it, when
    /// not `called`). Values this proxy had taken but not handed out are dropped; other
    /// proxies hand out theirs first.
    pub async fn setval(&self, name: &str, value: i64, called: bool) -> Result<i64> {
        let def = self.sequence(name).await?;
        if value < def.min || value > def.max {
            return Err(Error::NumericOutOfRange(format!(
                "setval: value {value} is out of bounds for sequence \"{name}\" ({}..{})",
                def.min, def.max
            )));
        }
        let mut blocks = self.sequences.blocks.lock().await;
        loop {
            let old = self
                .rows
                .sequence_state(name)
                .await?
                .ok_or_else(|| Error::UndefinedTable(name.to_string()))?;
            let new = SequenceState {
                last: value,
                called,
            };
            if self.rows.sequence_swap(name, old, new).await? {
                break;
            }
        }
        blocks.remove(name);
        Ok(value)
    }
}
