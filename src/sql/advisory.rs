//! The advisory-lock functions, one set per session: `pg_advisory_lock`,
//! `pg_try_advisory_lock`, `pg_advisory_xact_lock`, `pg_try_advisory_xact_lock`,
//! `pg_advisory_unlock` and `pg_advisory_unlock_all`, each of a `bigint` key or two
//! `int` keys. The locks are exclusive across every proxy (see
//! [`crate::engine::advisory`]); a session counts how often it took each one. Session
//! locks last until unlocked or the session ends, transaction locks until the block
//! ends (outside a block: the statement). Shared locks (`..._shared`) are not offered.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::engine::Core;
use crate::engine::advisory::LockKey;
use crate::error::Error;

/// A session's advisory locks: its id in the lock table, and how often it took each
/// lock (session-level, transaction-level).
#[derive(Debug)]
pub struct SessionLocks {
    id: Vec<u8>,
    counts: parking_lot::Mutex<HashMap<LockKey, (u32, u32)>>,
}

impl Default for SessionLocks {
    fn default() -> Self {
        SessionLocks {
            id: uuid::Uuid::new_v4().as_bytes().to_vec(),
            counts: Default::default(),
        }
    }
}

impl SessionLocks {
    pub fn any(&self) -> bool {
        !self.counts.lock().is_empty()
    }

    pub fn any_xact(&self) -> bool {
        self.counts.lock().values().any(|c| c.1 > 0)
    }

    /// Take a lock (again); `false` if another session holds it and `wait` is false.
    async fn take(
        &self,
        core: &Arc<Core>,
        key: LockKey,
        xact: bool,
        wait: bool,
    ) -> crate::error::Result<bool> {
        let held = self.counts.lock().get(&key).is_some_and(|c| c.0 + c.1 > 0);
        if !held && !core.advisory_lock(key, &self.id, wait).await? {
            return Ok(false);
        }
        let mut counts = self.counts.lock();
        let c = counts.entry(key).or_default();
        if xact {
            c.1 += 1;
        } else {
            c.0 += 1;
        }
        Ok(true)
    }

    /// `pg_advisory_unlock`: one session-level hold less; `false` if there was none.
    async fn unlock(&self, core: &Core, key: LockKey) -> crate::error::Result<bool> {
        let free = {
            let mut counts = self.counts.lock();
            let Some(c) = counts.get_mut(&key).filter(|c| c.0 > 0) else {
                return Ok(false);
            };
            c.0 -= 1;
            let free = *c == (0, 0);
            if free {
                counts.remove(&key);
            }
            free
        };
        if free {
            core.advisory_unlock(key, &self.id).await?;
        }
        Ok(true)
    }

    /// Give up the transaction-level holds (`xact`) or the session-level ones.
    pub async fn release(&self, core: &Core, xact: bool) {
        let freed: Vec<LockKey> = {
            let mut counts = self.counts.lock();
            for c in counts.values_mut() {
                if xact {
                    c.1 = 0;
                } else {
                    c.0 = 0;
                }
            }
            let freed = counts
                .iter()
                .filter(|(_, c)| **c == (0, 0))
                .map(|(k, _)| *k)
                .collect();
            counts.retain(|_, c| *c != (0, 0));
            freed
        };
        for key in freed {
            if let Err(e) = core.advisory_unlock(key, &self.id).await {
                tracing::warn!(error = %e, "an advisory lock was not given back; it lapses with its lease");
            }
        }
    }

    /// Everything, as when the session ends.
    pub async fn release_all(&self, core: &Core) {
        self.release(core, true).await;
        self.release(core, false).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Lock { xact: bool, wait: bool },
    Unlock,
    UnlockAll,
}

const FUNCTIONS: [(&str, Kind); 6] = [
    (
        "pg_advisory_lock",
        Kind::Lock {
            xact: false,
            wait: true,
        },
    ),
    (
        "pg_try_advisory_lock",
        Kind::Lock {
            xact: false,
            wait: false,
        },
    ),
    (
        "pg_advisory_xact_lock",
        Kind::Lock {
            xact: true,
            wait: true,
        },
    ),
    (
        "pg_try_advisory_xact_lock",
        Kind::Lock {
            xact: true,
            wait: false,
        },
    ),
    ("pg_advisory_unlock", Kind::Unlock),
    ("pg_advisory_unlock_all", Kind::UnlockAll),
];

/// The session's advisory-lock functions.
pub fn functions(
    core: Weak<Core>,
    locks: Arc<SessionLocks>,
    notices: crate::engine::Notices,
) -> Vec<ScalarUDF> {
    FUNCTIONS
        .iter()
        .map(|(name, kind)| {
            AsyncScalarUDF::new(Arc::new(LockFunction {
                name,
                kind: *kind,
                signature: if *kind == Kind::UnlockAll {
                    Signature::nullary(Volatility::Volatile)
                } else {
                    Signature::variadic_any(Volatility::Volatile)
                },
                core: core.clone(),
                locks: locks.clone(),
                notices: notices.clone(),
            }))
            .into_scalar_udf()
        })
        .collect()
}

#[derive(Debug)]
struct LockFunction {
    name: &'static str,
    kind: Kind,
    signature: Signature,
    core: Weak<Core>,
    locks: Arc<SessionLocks>,
    notices: crate::engine::Notices,
}

impl PartialEq for LockFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.locks, &other.locks)
    }
}
impl Eq for LockFunction {}
impl std::hash::Hash for LockFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        std::ptr::hash(Arc::as_ptr(&self.locks), state);
    }
}

impl ScalarUDFImpl for LockFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.kind {
            // `void` in Postgres: an empty value.
            Kind::Lock { wait: true, .. } | Kind::UnlockAll => DataType::Utf8,
            _ => DataType::Boolean,
        })
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        Err(DataFusionError::Internal(
            "advisory-lock functions are async".into(),
        ))
    }
}

fn df(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The key of row `i`: one `bigint`, or two `int`s; `None` if one is NULL.
fn key_at(arrays: &[ArrayRef], i: usize) -> DfResult<Option<LockKey>> {
    let int = |a: &ArrayRef| -> DfResult<Option<i64>> {
        let a = datafusion::arrow::compute::cast(a, &DataType::Int64)?;
        let a = a
            .as_any()
            .downcast_ref::<datafusion::arrow::array::PrimitiveArray<Int64Type>>()
            .cloned();
        Ok(a.and_then(|a| (!a.is_null(i)).then(|| a.value(i))))
    };
    Ok(match arrays {
        [k] => int(k)?.map(LockKey::One),
        [a, b] => {
            let (Some(a), Some(b)) = (int(a)?, int(b)?) else {
                return Ok(None);
            };
            let narrow = |v: i64| {
                i32::try_from(v)
                    .map_err(|_| df(Error::NumericOutOfRange("integer out of range".into())))
            };
            Some(LockKey::Two(narrow(a)?, narrow(b)?))
        }
        _ => {
            return Err(df(Error::UndefinedFunction(
                "advisory-lock functions take a bigint key or two integer keys".into(),
            )));
        }
    })
}

#[async_trait]
impl AsyncScalarUDFImpl for LockFunction {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let core = self
            .core
            .upgrade()
            .ok_or_else(|| DataFusionError::Internal("the engine is gone".into()))?;
        let arrays: Vec<ArrayRef> = ColumnarValue::values_to_arrays(&args.args)?;
        if self.kind == Kind::UnlockAll {
            self.locks.release(&core, false).await;
            return Ok(ColumnarValue::Array(std::sync::Arc::new(
                StringArray::from(vec![None::<&str>; n.max(1)]),
            )));
        }
        let mut out: Vec<Option<bool>> = Vec::with_capacity(n);
        for i in 0..n {
            let Some(key) = key_at(&arrays, i)? else {
                out.push(None);
                continue;
            };
            out.push(Some(match self.kind {
                Kind::Lock { xact, wait } => {
                    self.locks.take(&core, key, xact, wait).await.map_err(df)?
                }
                _ => {
                    let held = self.locks.unlock(&core, key).await.map_err(df)?;
                    if !held {
                        self.notices
                            .push_warning("01000", "you don't own a lock of type ExclusiveLock");
                    }
                    held
                }
            }));
        }
        Ok(ColumnarValue::Array(match self.kind {
            Kind::Lock { wait: true, .. } => {
                std::sync::Arc::new(StringArray::from(vec![None::<&str>; out.len()]))
            }
            _ => std::sync::Arc::new(BooleanArray::from(out)),
        }))
    }
}
