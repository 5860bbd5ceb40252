//! The embedded vector index: one qdrant-edge shard (Qdrant's own engine, in process)
//! per table under `<data>/vectors/<table>`. Writes, flushes and optimisation of a shard
//! are serialised by a per-shard lock; searches run concurrently.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    AnyVariants, Condition, CreateIndex, EdgeConfig, EdgeShard, EdgeVectorParams, FieldCondition,
    FieldIndexOperations, Filter, JsonPath, Match, PayloadFieldSchema, PayloadSchemaType, PointId,
    PointInsertOperations, PointOperations, PointStruct, Range, SearchRequest, UpdateOperation,
    ValueVariants, WithPayloadInterface,
};

use super::filter::{CmpOp, Predicate, Scalar};
use super::options::{IndexOptions, Quantization};
use super::{
    Distance, EXPIRES_FIELD, HASH_FIELD, Hit, IndexVector, JsonIndexKind, Point, QueryVector,
    SearchQuery, TableDef, VectorIndex, keys,
};
use crate::error::{Error, Result};
use crate::types::ColumnType;

struct Shard {
    shard: EdgeShard,
    /// Serialises update, flush and optimize (qdrant-edge's flush expects no
    /// concurrent writer).
    write: Mutex<()>,
    dirty: AtomicBool,
    unoptimized: AtomicBool,
    /// Bulk loads under way: the optimiser waits for the last one to end.
    loads: AtomicUsize,
    /// Replaced by a rebuilt generation: writers must look the shard up again.
    retired: AtomicBool,
    /// Group commit: updates applied so far, and how many of them a flush has made
    /// durable. A writer waits until a flush covers its update; one flush serves every
    /// writer that queued behind it.
    applied: AtomicU64,
    flushed: AtomicU64,
    flushing: Mutex<()>,
    /// When the last flush began.
    last_flush: Mutex<Instant>,
    /// Held (exclusively) by the optimiser while it rebuilds segments and flushes the
    /// result; deletes wait for it (see [`write_shard`]).
    building: RwLock<()>,
}

impl Shard {
    /// Return once update number `n` is on disk, flushing if no one else is.
    fn durable(&self, n: u64) {
        if self.flushed.load(Ordering::Acquire) >= n {
            return;
        }
        let _f = self.flushing.lock();
        if self.flushed.load(Ordering::Acquire) >= n {
            return;
        }
        let _g = self.write.lock();
        *self.last_flush.lock() = Instant::now();
        let covered = self.applied.load(Ordering::Acquire);
        // A retired shard's points were copied (under the write lock) into its
        // successor, which was flushed when it was built.
        if !self.retired.load(Ordering::Acquire) {
            flush(&self.shard);
        }
        self.flushed.fetch_max(covered, Ordering::AcqRel);
    }
}

pub struct EdgeIndex {
    root: PathBuf,
    shards: Arc<RwLock<HashMap<String, Arc<Shard>>>>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::vector_index(e)
}

impl EdgeIndex {
    /// Open the index under `root`, loading every shard already there.
    pub fn open(root: &Path) -> Result<Arc<EdgeIndex>> {
        std::fs::create_dir_all(root).map_err(err)?;
        let mut shards = HashMap::new();
        let mut tables = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(root).map_err(err)? {
            let entry = entry.map_err(err)?;
            if entry.path().is_dir() {
                let name = entry.file_name().to_string_lossy().to_string();
                tables.insert(name.split('@').next().unwrap_or_default().to_string());
            }
        }
        for table in tables {
            let mut dirs = shard_dirs(root, &table);
            let Some((_, newest)) = dirs.pop() else {
                continue;
            };
            // Older generations were replaced by an ALTER TABLE rebuild.
            for (_, old) in dirs {
                let _ = std::fs::remove_dir_all(old);
            }
            let shard = EdgeShard::load(&newest, None).map_err(err)?;
            shards.insert(table, Arc::new(new_shard(shard)));
        }
        let index = Arc::new(EdgeIndex {
            root: root.to_path_buf(),
            shards: Arc::new(RwLock::new(shards)),
        });
        Ok(index)
    }

    /// Flush and optimise dirty shards every `period` until the index is dropped.
    pub fn spawn_maintenance(self: &Arc<Self>, period: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(index) = weak.upgrade() else { break };
                let shards: Vec<Arc<Shard>> = index.shards.read().values().cloned().collect();
                drop(index);
                for s in shards {
                    let _ = tokio::task::spawn_blocking(move || maintain(&s)).await;
                }
            }
        });
    }

    fn shard(&self, table: &str) -> Result<Arc<Shard>> {
        self.shards
            .read()
            .get(table)
            .cloned()
            .ok_or_else(|| Error::vector_index(format!("no collection for table \"{table}\"")))
    }

    fn path_of(&self, table: &str) -> PathBuf {
        self.root.join(table)
    }
}

fn new_shard(shard: EdgeShard) -> Shard {
    Shard {
        shard,
        write: Mutex::new(()),
        dirty: AtomicBool::new(false),
        unoptimized: AtomicBool::new(true),
        loads: AtomicUsize::new(0),
        retired: AtomicBool::new(false),
        applied: AtomicU64::new(0),
        flushed: AtomicU64::new(0),
        flushing: Mutex::new(()),
        last_flush: Mutex::new(Instant::now()),
        building: RwLock::new(()),
    }
}

/// `EdgeShard::flush`, waiting out an optimizer's segment swap. qdrant-edge's flush takes
/// the segment holder's lock with `try_read().expect(..)`, which panics in the moment an
/// optimizer holds it to swap a rebuilt segment in; the optimizer itself runs beside
/// writers and searches (see [`maintain`]). Such a flush wrote nothing yet but the WAL
/// (the write lock keeps updates out), so it is simply tried again.
fn flush(shard: &EdgeShard) {
    quiet_swap_panics();
    let mut tries = 0;
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shard.flush())) {
            Ok(()) => return,
            Err(p) if tries >= 60_000 || !is_swap_panic(p.as_ref()) => std::panic::resume_unwind(p),
            Err(_) => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// While a bulk load runs, the writes waiting to be made durable are flushed at most
/// this often (their outbox entries keep them meanwhile).
const FLUSH_WHILE_LOADING: Duration = Duration::from_secs(5);

const SWAP_PANIC: &str = "segment holder lock acquired";

fn is_swap_panic(payload: &(dyn std::any::Any + Send)) -> bool {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .is_some_and(|m| m.contains(SWAP_PANIC))
}

/// The retried flush panics are expected: keep them out of the log.
fn quiet_swap_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !is_swap_panic(info.payload()) {
                previous(info)
            }
        }));
    });
}

/// Flush a dirty shard; optimise one that took writes. The optimiser (building HNSW
/// graphs, merging segments: seconds to minutes on a large table) runs without the write
/// lock: qdrant's optimizers wrap the segments they rebuild in proxies that take writes
/// meanwhile, so inserts, updates, their flushes and searches go on during a build
/// instead of waiting for it (deletes wait: see [`write_shard`]).
fn maintain(s: &Shard) {
    if s.dirty.swap(false, Ordering::AcqRel) {
        let _g = s.write.lock();
        flush(&s.shard);
    }
    if s.loads.load(Ordering::Acquire) == 0 && s.unoptimized.swap(false, Ordering::AcqRel) {
        let _building = s.building.write();
        // A bulk load that began since the check above waits for this lock before it
        // writes (see `bulk_load`): seen here, it keeps the shard unoptimised; not seen,
        // the optimiser is done before its first row.
        if s.loads.load(Ordering::Acquire) > 0 {
            s.unoptimized.store(true, Ordering::Release);
            return;
        }
        match s.shard.optimize() {
            Ok(true) => {
                let info = s.shard.info();
                tracing::info!(
                    path = %s.shard.path().display(),
                    points = info.points_count,
                    indexed = info.indexed_vectors_count,
                    segments = info.segments_count,
                    "vector index optimised"
                );
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "vector index optimisation failed"),
        }
        let _g = s.write.lock();
        flush(&s.shard);
    }
}

/// A point's vectors for the shard: the collection's default vector alone, or named.
fn edge_vectors(vectors: Vec<(String, IndexVector)>) -> Result<qdrant_edge::Vectors> {
    if let [(name, IndexVector::Dense(_))] = vectors.as_slice()
        && name.is_empty()
    {
        let Some((_, IndexVector::Dense(v))) = vectors.into_iter().next() else {
            unreachable!("matched above");
        };
        return Ok(v.into());
    }
    let named = vectors
        .into_iter()
        .map(|(name, v)| {
            let v = match v {
                IndexVector::Dense(v) => qdrant_edge::Vector::new_dense(v),
                IndexVector::Sparse(s) => {
                    qdrant_edge::Vector::new_sparse(s.indices, s.values).map_err(err)?
                }
            };
            Ok((name, v))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(qdrant_edge::Vectors::new_named(named))
}

/// The shard configuration a table's options ask for.
fn edge_config(def: &TableDef) -> Result<EdgeConfig> {
    let o = IndexOptions::parse(&def.options)?;
    let mut builder = EdgeConfig::builder();
    for (column, distance) in def.vectors() {
        if def.is_sparse(column) {
            // Scored by the inner product (normalised vectors for cosine distance).
            builder = builder.sparse_vector(
                def.index_vector_name(column),
                qdrant_edge::EdgeSparseVectorParams::builder().build(),
            );
            continue;
        }
        let mut params =
            EdgeVectorParams::builder(def.dimension_of(column), edge_distance(distance));
        if def.half_precision(column) {
            params = params.datatype(qdrant_edge::VectorStorageDatatype::Float16);
        }
        builder = builder.vector(def.index_vector_name(column), params.build());
    }
    if let Some(kb) = o.indexing_threshold_kb {
        builder = builder.optimizers(qdrant_edge::EdgeOptimizersConfig {
            indexing_threshold: Some(kb),
            ..Default::default()
        });
    }
    if o.m.is_some() || o.ef_construct.is_some() {
        let mut hnsw = qdrant_edge::HnswIndexConfig::default();
        if let Some(m) = o.m {
            hnsw.m = m;
        }
        if let Some(ef) = o.ef_construct {
            hnsw.ef_construct = ef;
        }
        builder = builder.hnsw_config(hnsw);
    }
    // The engine's own JSON notation: its typed wrappers are not all public.
    let quantization = match o.quantization {
        Quantization::None => None,
        Quantization::Int8 => Some(
            serde_json::json!({"scalar": {"type": "int8", "quantile": 0.99, "always_ram": o.always_ram}}),
        ),
        Quantization::Binary => Some(serde_json::json!({"binary": {"always_ram": o.always_ram}})),
        Quantization::Product(r) => Some(
            serde_json::json!({"product": {"compression": format!("x{r}"), "always_ram": o.always_ram}}),
        ),
    };
    if let Some(q) = quantization {
        builder = builder.quantization_config(serde_json::from_value(q).map_err(err)?);
    }
    Ok(builder.build())
}

fn create_payload_indexes(shard: &EdgeShard, def: &TableDef) -> Result<()> {
    let tenant = IndexOptions::parse(&def.options)?.tenant_key;
    if def.ttl_seconds().is_some() {
        shard
            .update(UpdateOperation::FieldIndexOperation(
                FieldIndexOperations::CreateIndex(CreateIndex {
                    field_name: json_path(EXPIRES_FIELD)?,
                    field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Integer)),
                }),
            ))
            .map_err(err)?;
    }
    for (_, col) in def.payload_columns() {
        let Some(schema) = payload_schema(&col.ty) else {
            continue;
        };
        let field_schema = if tenant.as_deref() == Some(col.name.as_str()) {
            let kind = match col.ty {
                ColumnType::Uuid => "uuid",
                _ => "keyword",
            };
            serde_json::from_value(serde_json::json!({"type": kind, "is_tenant": true}))
                .map_err(err)?
        } else {
            PayloadFieldSchema::FieldType(schema)
        };
        shard
            .update(UpdateOperation::FieldIndexOperation(
                FieldIndexOperations::CreateIndex(CreateIndex {
                    field_name: json_path(&col.name)?,
                    field_schema: Some(field_schema),
                }),
            ))
            .map_err(err)?;
    }
    index_json_fields(shard, def)
}

/// The payload indexes of the table's json indexes.
fn index_json_fields(shard: &EdgeShard, def: &TableDef) -> Result<()> {
    for (field, kind) in def.json_index_fields() {
        let schema = match kind {
            JsonIndexKind::Keyword | JsonIndexKind::Keys => PayloadSchemaType::Keyword,
            JsonIndexKind::Number => PayloadSchemaType::Float,
        };
        shard
            .update(UpdateOperation::FieldIndexOperation(
                FieldIndexOperations::CreateIndex(CreateIndex {
                    field_name: json_path(&field)?,
                    field_schema: Some(PayloadFieldSchema::FieldType(schema)),
                }),
            ))
            .map_err(err)?;
    }
    Ok(())
}

/// The directories of a table's shard: `<table>` and rebuilt generations `<table>@<n>`.
fn shard_dirs(root: &Path, table: &str) -> Vec<(u64, PathBuf)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let (base, generation) = match name.split_once('@') {
            Some((b, g)) => match g.parse::<u64>() {
                Ok(g) => (b.to_string(), g),
                Err(_) => continue,
            },
            None => (name.clone(), 0),
        };
        if base == table && e.path().is_dir() {
            out.push((generation, e.path()));
        }
    }
    out.sort();
    out
}

/// Apply changed options by rebuilding the shard from its own points into a new
/// generation. Writers wait on the old shard's lock meanwhile and then find it retired;
/// searches keep using the old shard until the new one is swapped in.
fn reconfigure(s: &Shard, def: &TableDef, root: &Path) -> Result<Option<Shard>> {
    let config = edge_config(def)?;
    let _g = s.write.lock();
    let generation = shard_dirs(root, def.stored_name())
        .last()
        .map(|(g, _)| g + 1)
        .unwrap_or(1);
    let path = root.join(format!("{}@{generation}", def.stored_name()));
    std::fs::create_dir_all(&path).map_err(err)?;
    let new = EdgeShard::new(&path, config).map_err(err)?;
    create_payload_indexes(&new, def)?;
    let mut offset = None;
    loop {
        let (records, next) = s
            .shard
            .scroll(qdrant_edge::ScrollRequest {
                offset,
                limit: Some(1024),
                filter: None,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: qdrant_edge::WithVector::Bool(true),
                order_by: None,
            })
            .map_err(err)?;
        let mut list = Vec::with_capacity(records.len());
        for r in records {
            let Some(vector) = r.vector else {
                return Err(err("a point without its vectors"));
            };
            let payload = r
                .payload
                .map(|p| serde_json::Value::Object(p.0.into_iter().collect()))
                .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
            list.push(PointStruct::new(r.id, vector, payload).into());
        }
        if !list.is_empty() {
            new.update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(list)),
            ))
            .map_err(err)?;
        }
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    new.flush();
    s.retired.store(true, Ordering::Release);
    // The old generation's files go when the old shard is dropped (at the next start,
    // [`EdgeIndex::open`] keeps only the newest generation).
    Ok(Some(new_shard(new)))
}

/// Apply one update to a table's current shard and make it durable before the write is
/// acknowledged (qdrant-edge does not replay its WAL on load). A shard retired by a
/// rebuild while this writer waited for its lock is looked up again.
///
/// A delete also waits for an index build in progress: a point deleted while the
/// optimiser rebuilds its segment is deleted only in the optimiser's in-memory proxy until
/// the rebuilt segment is swapped in and flushed, and a crash before that would bring the
/// point back (qdrant-edge does not replay its WAL). Inserts and updates need no wait: the
/// new version is in the flushed write segment and wins over the old one on load.
fn write_shard(
    shards: &RwLock<HashMap<String, Arc<Shard>>>,
    table: &str,
    deletes: bool,
    durable: bool,
    op: impl Fn() -> UpdateOperation,
) -> Result<()> {
    loop {
        let s =
            shards.read().get(table).cloned().ok_or_else(|| {
                Error::vector_index(format!("no collection for table \"{table}\""))
            })?;
        let n = {
            let _g = s.write.lock();
            if s.retired.load(Ordering::Acquire) {
                continue;
            }
            s.shard.update(op()).map_err(err)?;
            s.unoptimized.store(true, Ordering::Release);
            s.applied.fetch_add(1, Ordering::AcqRel) + 1
        };
        // qdrant-edge does not replay its WAL on load: a durable update is acknowledged
        // (and its outbox entry cleared) only once a flush covers it; other writers
        // call `make_durable` before they clear their outbox entries.
        if durable {
            s.durable(n);
        }
        if deletes {
            drop(s.building.read());
        }
        return Ok(());
    }
}

/// Upserts of at most this many points that need not wait for a flush run on the async
/// worker ([`super::run_short`]); they wait at most for a flush in progress.
const SHORT_UPDATE: usize = 32;

impl EdgeIndex {
    /// Upsert points; with `durable`, return once a flush covers them.
    async fn upsert_points(
        &self,
        table: &TableDef,
        points: Vec<Point>,
        durable: bool,
    ) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let shards = self.shards.clone();
        let table = table.stored_name().to_string();
        let short = !durable && points.len() <= SHORT_UPDATE;
        let update = move || {
            let list: Vec<_> = points
                .into_iter()
                .map(|p| {
                    Ok(PointStruct::new(
                        PointId::Uuid(p.id),
                        edge_vectors(p.vectors)?,
                        serde_json::Value::Object(p.payload),
                    )
                    .into())
                })
                .collect::<Result<_>>()?;
            write_shard(&shards, &table, false, durable, || {
                UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                    PointInsertOperations::PointsList(list.clone()),
                ))
            })
        };
        super::run_short(short, update).await?
    }

    /// Delete points; with `durable`, return once a flush covers the deletion.
    async fn delete_points(
        &self,
        table: &TableDef,
        ids: Vec<uuid::Uuid>,
        durable: bool,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let shards = self.shards.clone();
        let table = table.stored_name().to_string();
        // Off the worker: a delete may wait for an optimiser's build (see `write_shard`).
        super::run_blocking(move || {
            write_shard(&shards, &table, true, durable, || {
                UpdateOperation::PointOperation(PointOperations::DeletePoints {
                    ids: ids.iter().copied().map(PointId::Uuid).collect(),
                })
            })
        })
        .await
        .map_err(err)?
    }
}

fn edge_distance(d: Distance) -> qdrant_edge::Distance {
    match d {
        Distance::Cosine => qdrant_edge::Distance::Cosine,
        Distance::L2 => qdrant_edge::Distance::Euclid,
        Distance::Dot => qdrant_edge::Distance::Dot,
    }
}

fn payload_schema(ty: &ColumnType) -> Option<PayloadSchemaType> {
    Some(match ty {
        ColumnType::SmallInt
        | ColumnType::Int
        | ColumnType::BigInt
        | ColumnType::Timestamp
        | ColumnType::TimestampTz
        | ColumnType::Date
        | ColumnType::IntArray
        | ColumnType::BigIntArray => PayloadSchemaType::Integer,
        ColumnType::Real | ColumnType::Double | ColumnType::Numeric(..) => PayloadSchemaType::Float,
        ColumnType::Bytea | ColumnType::Jsonb | ColumnType::Json | ColumnType::Array(_) => {
            return None;
        }
        ColumnType::Text | ColumnType::Uuid | ColumnType::TextArray => PayloadSchemaType::Keyword,
        ColumnType::Bool => PayloadSchemaType::Bool,
        ColumnType::Vector(_)
        | ColumnType::HalfVec(_)
        | ColumnType::SparseVec(_)
        | ColumnType::Bit(_)
        | ColumnType::VarBit(_) => return None,
    })
}

fn json_path(name: &str) -> Result<JsonPath> {
    JsonPath::try_from(name)
        .map_err(|_| Error::vector_index(format!("column name \"{name}\" cannot be a payload key")))
}

/// Translate a predicate into a qdrant-edge filter condition. The result matches a
/// superset of the rows for which the SQL predicate is true (NULLs make a negated
/// condition looser, never stricter); the SQL layer re-checks every row.
pub fn to_condition(p: &Predicate) -> Result<Condition> {
    Ok(match p {
        Predicate::And(ps) => Condition::Filter(Filter {
            must: Some(ps.iter().map(to_condition).collect::<Result<_>>()?),
            ..Filter::new()
        }),
        Predicate::Or(ps) => Condition::Filter(Filter {
            should: Some(ps.iter().map(to_condition).collect::<Result<_>>()?),
            ..Filter::new()
        }),
        Predicate::Not(inner) => Condition::Filter(Filter::new_must_not(to_condition(inner)?)),
        Predicate::IsNull { column } => Condition::IsNull(json_path(column)?.into()),
        Predicate::Compare { column, op, value } => compare(column, *op, value)?,
        Predicate::Contains { column, value } => compare(column, CmpOp::Eq, value)?,
        Predicate::In { column, values } => {
            let key = json_path(column)?;
            if values.iter().all(|v| matches!(v, Scalar::Text(_))) {
                let set = values
                    .iter()
                    .filter_map(|v| {
                        if let Scalar::Text(s) = v {
                            Some(s.clone())
                        } else {
                            None
                        }
                    })
                    .collect();
                Condition::Field(FieldCondition::new_match(
                    key,
                    Match::new_any(AnyVariants::Strings(set)),
                ))
            } else if values.iter().all(|v| matches!(v, Scalar::Int(_))) {
                let set = values
                    .iter()
                    .filter_map(|v| {
                        if let Scalar::Int(i) = v {
                            Some(*i)
                        } else {
                            None
                        }
                    })
                    .collect();
                Condition::Field(FieldCondition::new_match(
                    key,
                    Match::new_any(AnyVariants::Integers(set)),
                ))
            } else {
                Condition::Filter(Filter {
                    should: Some(
                        values
                            .iter()
                            .map(|v| compare(column, CmpOp::Eq, v))
                            .collect::<Result<_>>()?,
                    ),
                    ..Filter::new()
                })
            }
        }
    })
}

fn compare(column: &str, op: CmpOp, value: &Scalar) -> Result<Condition> {
    let key = json_path(column)?;
    if op == CmpOp::NotEq {
        // SQL's `<>` is false on NULL: exclude nulls as well as the value.
        return Ok(Condition::Filter(Filter {
            must_not: Some(vec![
                compare(column, CmpOp::Eq, value)?,
                Condition::IsNull(key.into()),
            ]),
            ..Filter::new()
        }));
    }
    let number = match value {
        Scalar::Int(i) => Some(*i as f64),
        Scalar::Float(f) => Some(*f),
        _ => None,
    };
    Ok(match (op, value) {
        (CmpOp::Eq, Scalar::Int(i)) => Condition::Field(FieldCondition::new_match(
            key,
            Match::new_value(ValueVariants::Integer(*i)),
        )),
        (CmpOp::Eq, Scalar::Text(s)) => Condition::Field(FieldCondition::new_match(
            key,
            Match::new_value(ValueVariants::String(s.clone())),
        )),
        (CmpOp::Eq, Scalar::Bool(b)) => Condition::Field(FieldCondition::new_match(
            key,
            Match::new_value(ValueVariants::Bool(*b)),
        )),
        (_, Scalar::Int(_) | Scalar::Float(_)) => {
            let x = OrderedFloat(number.unwrap_or_default());
            let [lt, gt, gte, lte] = op.bounds(x);
            Condition::Field(FieldCondition::new_range(key, Range { lt, gt, gte, lte }))
        }
        _ => {
            return Err(Error::internal(
                "predicate cannot be translated to an index filter",
            ));
        }
    })
}

#[async_trait]
impl VectorIndex for EdgeIndex {
    async fn create_collection(&self, table: &TableDef) -> Result<()> {
        let path = self.path_of(table.stored_name());
        let def = table.clone();
        let shard = tokio::task::spawn_blocking(move || -> Result<EdgeShard> {
            for (_, old) in shard_dirs(path.parent().unwrap_or(&path), def.stored_name()) {
                std::fs::remove_dir_all(&old).map_err(err)?;
            }
            std::fs::create_dir_all(&path).map_err(err)?;
            let config = edge_config(&def)?;
            let shard = EdgeShard::new(&path, config).map_err(err)?;
            create_payload_indexes(&shard, &def)?;
            shard.flush();
            Ok(shard)
        })
        .await
        .map_err(err)??;
        self.shards
            .write()
            .insert(table.stored_name().to_string(), Arc::new(new_shard(shard)));
        Ok(())
    }

    async fn has_collection(&self, table: &TableDef) -> Result<bool> {
        Ok(self.shards.read().contains_key(table.stored_name()))
    }

    async fn update_collection(&self, table: &TableDef) -> Result<()> {
        let shard = self.shard(table.stored_name())?;
        let def = table.clone();
        let root = self.root.clone();
        let rebuilt = tokio::task::spawn_blocking(move || reconfigure(&shard, &def, &root))
            .await
            .map_err(err)??;
        if let Some(new) = rebuilt {
            self.shards
                .write()
                .insert(table.stored_name().to_string(), Arc::new(new));
        }
        Ok(())
    }

    async fn index_json_fields(&self, table: &TableDef) -> Result<()> {
        let shard = self.shard(table.stored_name())?;
        let def = table.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let _g = shard.write.lock();
            index_json_fields(&shard.shard, &def)?;
            flush(&shard.shard);
            Ok(())
        })
        .await
        .map_err(err)?
    }

    async fn drop_collection(&self, table: &TableDef) -> Result<()> {
        let table = table.stored_name();
        let removed = self.shards.write().remove(table);
        let root = self.root.clone();
        let table = table.to_string();
        tokio::task::spawn_blocking(move || -> Result<()> {
            if let Some(s) = removed {
                // Let running maintenance or searches finish before the files go.
                for _ in 0..600 {
                    if Arc::strong_count(&s) == 1 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                drop(s);
            }
            for (_, dir) in shard_dirs(&root, &table) {
                std::fs::remove_dir_all(&dir).map_err(err)?;
            }
            Ok(())
        })
        .await
        .map_err(err)?
    }

    async fn upsert(&self, table: &TableDef, points: Vec<Point>) -> Result<()> {
        self.upsert_points(table, points, true).await
    }

    async fn delete(&self, table: &TableDef, ids: Vec<uuid::Uuid>) -> Result<()> {
        self.delete_points(table, ids, true).await
    }

    async fn upsert_unflushed(&self, table: &TableDef, points: Vec<Point>) -> Result<()> {
        self.upsert_points(table, points, false).await
    }

    async fn delete_unflushed(&self, table: &TableDef, ids: Vec<uuid::Uuid>) -> Result<()> {
        self.delete_points(table, ids, false).await
    }

    fn bulk_load(&self, table: &TableDef, loading: bool) {
        let Ok(s) = self.shard(table.stored_name()) else {
            return;
        };
        if loading {
            s.loads.fetch_add(1, Ordering::AcqRel);
            // An optimisation that began before the count went up ends before the load
            // writes: its graph would make the load's searches approximate meanwhile.
            drop(s.building.read());
        } else if s
            .loads
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            s.unoptimized.store(true, Ordering::Release);
        }
    }

    async fn make_durable(&self, table: &TableDef) -> Result<bool> {
        let Some(s) = self.shards.read().get(table.stored_name()).cloned() else {
            return Ok(true);
        };
        // A flush holds the write lock and writes every file of the growing segment:
        // after each batch of a bulk load it would cost the load a third of its time.
        if s.loads.load(Ordering::Acquire) > 0
            && s.last_flush.lock().elapsed() < FLUSH_WHILE_LOADING
        {
            return Ok(false);
        }
        tokio::task::spawn_blocking(move || s.durable(s.applied.load(Ordering::Acquire)))
            .await
            .map_err(err)?;
        Ok(true)
    }

    async fn search(&self, table: &TableDef, query: &SearchQuery<'_>) -> Result<Vec<Hit>> {
        let SearchQuery {
            using,
            vector,
            filter,
            limit,
            offset,
            params,
        } = *query;
        let shard = self.shard(table.stored_name())?;
        let filter = match filter {
            Some(p) => Some(Filter::new_must(to_condition(p)?)),
            None => None,
        };
        let query = match vector {
            QueryVector::Dense(v) if using.is_empty() => {
                qdrant_edge::NamedQuery::default_dense(v.to_vec())
            }
            QueryVector::Dense(v) => {
                qdrant_edge::NamedQuery::new(qdrant_edge::VectorInternal::Dense(v.to_vec()), using)
            }
            QueryVector::Sparse(s) => qdrant_edge::NamedQuery::new(
                qdrant_edge::Vector::new_sparse(s.indices.clone(), s.values.clone())
                    .map_err(err)?
                    .0,
                using,
            ),
        };
        let request = SearchRequest {
            query: qdrant_edge::QueryEnum::Nearest(query),
            filter,
            params: Some(qdrant_edge::SearchParams {
                hnsw_ef: params.hnsw_ef,
                exact: params.exact,
                quantization: (params.rescore.is_some() || params.oversampling.is_some())
                    .then_some(qdrant_edge::QuantizationSearchParams {
                        ignore: false,
                        rescore: params.rescore,
                        oversampling: params.oversampling,
                    }),
                ..Default::default()
            }),
            limit,
            offset,
            with_payload: Some(WithPayloadInterface::Fields(vec![json_path(
                keys::KEY_FIELD,
            )?])),
            with_vector: None,
            score_threshold: None,
        };
        // An approximate search takes a fraction of a millisecond: on the worker. An
        // exact one reads every vector: off it.
        let search = move || shard.shard.search(request);
        let points = super::run_short(!params.exact, search)
            .await?
            .map_err(err)?;
        let mut hits = Vec::with_capacity(points.len());
        for p in points {
            let key = p
                .payload
                .as_ref()
                .and_then(|pl| pl.0.get(keys::KEY_FIELD))
                .and_then(|v| v.as_str())
                .ok_or_else(|| Error::vector_index("point without a key in its payload"))?;
            hits.push(Hit {
                key: keys::decode_hex(key)?,
                score: p.score,
            });
        }
        Ok(hits)
    }

    async fn point_hashes(
        &self,
        table: &TableDef,
        ids: &[uuid::Uuid],
    ) -> Result<HashMap<uuid::Uuid, String>> {
        let shard = self.shard(table.stored_name())?;
        let ids: Vec<PointId> = ids.iter().copied().map(PointId::Uuid).collect();
        let records = tokio::task::spawn_blocking(move || {
            shard
                .shard
                .retrieve(
                    &ids,
                    Some(WithPayloadInterface::Fields(vec![json_path(HASH_FIELD)?])),
                    None,
                )
                .map_err(err)
        })
        .await
        .map_err(err)??;
        Ok(records
            .into_iter()
            .filter_map(|r| {
                let PointId::Uuid(id) = r.id else { return None };
                let hash = r.payload?.0.get(HASH_FIELD)?.as_str()?.to_string();
                Some((id, hash))
            })
            .collect())
    }

    async fn scroll_keys(
        &self,
        table: &TableDef,
        offset: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<(Vec<(uuid::Uuid, Option<String>)>, Option<uuid::Uuid>)> {
        let shard = self.shard(table.stored_name())?;
        let (records, next) = tokio::task::spawn_blocking(move || {
            shard
                .shard
                .scroll(qdrant_edge::ScrollRequest {
                    offset: offset.map(PointId::Uuid),
                    limit: Some(limit.max(1)),
                    filter: None,
                    with_payload: Some(WithPayloadInterface::Fields(vec![json_path(
                        keys::KEY_FIELD,
                    )?])),
                    with_vector: qdrant_edge::WithVector::Bool(false),
                    order_by: None,
                })
                .map_err(err)
        })
        .await
        .map_err(err)??;
        let page = records
            .into_iter()
            .filter_map(|r| {
                let PointId::Uuid(id) = r.id else { return None };
                let key = r.payload.and_then(|p| {
                    p.0.get(keys::KEY_FIELD)
                        .and_then(|k| k.as_str().map(str::to_string))
                });
                Some((id, key))
            })
            .collect();
        let next = match next {
            Some(PointId::Uuid(u)) => Some(u),
            _ => None,
        };
        Ok((page, next))
    }

    async fn delete_expired(&self, table: &TableDef, now: i64) -> Result<()> {
        let shards = self.shards.clone();
        let table = table.stored_name().to_string();
        let path = json_path(EXPIRES_FIELD)?;
        tokio::task::spawn_blocking(move || {
            write_shard(&shards, &table, true, true, || {
                UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(
                    Filter::new_must(Condition::Field(FieldCondition::new_range(
                        path.clone(),
                        Range {
                            lt: Some(OrderedFloat(now as f64)),
                            gt: None,
                            gte: None,
                            lte: None,
                        },
                    ))),
                ))
            })
        })
        .await
        .map_err(err)?
    }

    fn explain_filter(&self, _table: &TableDef, filter: &Predicate) -> Result<String> {
        serde_json::to_string(&Filter::new_must(to_condition(filter)?)).map_err(Error::internal)
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        let shards: Vec<Arc<Shard>> = self.shards.read().values().cloned().collect();
        tokio::task::spawn_blocking(move || {
            for s in shards {
                let _g = s.write.lock();
                flush(&s.shard);
                s.dirty.store(false, Ordering::Release);
            }
        })
        .await
        .map_err(err)
    }
}
