//! The production vector index: a Qdrant server (single node or distributed) reached
//! through `qdrant-client` over gRPC. One collection per table, named
//! `<prefix><table>` unless the table says `WITH (collection = '...')`.
//!
//! Every request is built by a pure function ([`create_request`], [`field_index_requests`],
//! [`update_request`], [`search_request`], [`to_filter`]) so that the translation is
//! unit-tested against Qdrant's own request types without a server; [`QdrantIndex`]
//! only sends them. Payloads carry the encoded key and the filterable columns only;
//! timestamps are RFC 3339 strings under a datetime index.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use qdrant_client::qdrant::{
    self, BinaryQuantization, Condition, CreateCollection, CreateFieldIndexCollection,
    DatetimeRange, DeletePoints, FieldType, Filter, HnswConfigDiff, KeywordIndexParams,
    OptimizersConfigDiff, PayloadIncludeSelector, PayloadIndexParams, PointId, PointStruct,
    PointsIdsList, PointsSelector, ProductQuantization, QuantizationConfig, QuantizationConfigDiff,
    QuantizationSearchParams, QuantizationType, Range, ScalarQuantization, SearchPoints,
    UpdateCollection, UpsertPoints, VectorParams, VectorsConfig, WithPayloadSelector,
    payload_index_params::IndexParams, quantization_config::Quantization as QConfig,
    quantization_config_diff::Quantization as QDiff, vectors_config,
    with_payload_selector::SelectorOptions,
};
use qdrant_client::{Qdrant, QdrantError};

use super::filter::{CmpOp, Predicate, Scalar};
use super::options::{IndexOptions, Quantization};
use super::{
    Distance, EXPIRES_FIELD, HASH_FIELD, Hit, IndexVector, JsonIndexKind, Point, QueryVector,
    SearchQuery, TableDef, VectorIndex, keys,
};
use crate::error::{Error, Result};
use crate::types::{ColumnType, Value};

const STORE: &str = "vector index";
/// How many chunks of one write are sent to the server at once.
const UPSERTS_AT_ONCE: usize = 4;

/// How to reach Qdrant.
#[derive(Debug, Clone)]
pub struct QdrantSettings {
    /// gRPC URL, e.g. `http://127.0.0.1:6334`.
    pub url: String,
    pub api_key: Option<String>,
    /// Prepended to table names to name collections.
    pub collection_prefix: String,
    /// Deadline of each request.
    pub timeout: Duration,
}

pub struct QdrantIndex {
    client: Qdrant,
    settings: QdrantSettings,
    rebuilds: Arc<Rebuilds>,
}

/// Collections that Qdrant is re-optimising after an option change. Until every segment
/// has the new configuration (the collection is green again), a search mixes segments
/// built the old and the new way, and the quantization parameters of the new options
/// can make the old segments answer far worse (recall 0.26 with binary segments searched
/// without oversampling); searches of such a collection are asked for exactly.
#[derive(Default)]
struct Rebuilds {
    active: parking_lot::Mutex<HashMap<String, Rebuild>>,
    /// Collections whose status was looked at since this process started.
    checked: parking_lot::Mutex<HashSet<String>>,
}

#[derive(Default, Clone, Copy)]
struct Rebuild {
    /// Option changes sent and not yet answered.
    updating: u32,
    /// Option changes answered so far: a status read before the last one says nothing.
    answered: u64,
}

impl Rebuilds {
    /// Mark `name` as rebuilding; true if it was not (the caller starts its watcher).
    fn begin(&self, name: &str) -> bool {
        let mut active = self.active.lock();
        let new = !active.contains_key(name);
        active.entry(name.to_string()).or_default().updating += 1;
        new
    }

    fn answered(&self, name: &str) {
        if let Some(r) = self.active.lock().get_mut(name) {
            r.updating -= 1;
            r.answered += 1;
        }
    }

    fn snapshot(&self, name: &str) -> Option<Rebuild> {
        self.active.lock().get(name).copied()
    }

    /// Settled: forget `name` unless an option change was sent or answered since `seen`.
    fn settle(&self, name: &str, seen: Rebuild) -> bool {
        let mut active = self.active.lock();
        match active.get(name) {
            Some(r) if r.updating == 0 && r.answered == seen.answered => {
                active.remove(name);
                true
            }
            Some(_) => false,
            None => true,
        }
    }
}

impl QdrantIndex {
    /// Build the client. No request is made here: an unreachable server is found out
    /// by the first call (and the proxy starts anyway, answering from the rows).
    pub fn connect(settings: QdrantSettings) -> Result<QdrantIndex> {
        let client = Qdrant::from_url(&settings.url)
            .api_key(settings.api_key.clone())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .skip_compatibility_check()
            .build()
            .map_err(|e| Error::InvalidParameter(format!("bad Qdrant URL: {e}")))?;
        Ok(QdrantIndex {
            client,
            settings,
            rebuilds: Arc::default(),
        })
    }

    /// Watch a rebuilding collection until it is green (every segment optimised with
    /// its current configuration), then let searches of it use the index again.
    fn watch(&self, name: String) {
        let (client, rebuilds) = (self.client.clone(), self.rebuilds.clone());
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(50);
            let mut nudged = false;
            loop {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                let Some(seen) = rebuilds.snapshot(&name) else {
                    return;
                };
                let status = match client.collection_info(name.as_str()).await {
                    Ok(info) => info.result.map(|i| i.status),
                    // Dropped meanwhile: nothing left to rebuild.
                    Err(QdrantError::ResponseError { status })
                        if status.code() == tonic::Code::NotFound =>
                    {
                        None
                    }
                    Err(e) => {
                        tracing::debug!(collection = %name, error = %e, "rebuild status unknown");
                        continue;
                    }
                };
                match status.map(qdrant::CollectionStatus::try_from) {
                    Some(Ok(qdrant::CollectionStatus::Green)) | None
                        if rebuilds.settle(&name, seen) =>
                    {
                        tracing::info!(collection = %name, "Qdrant collection rebuilt; searches use the index again");
                        return;
                    }
                    // Optimisations pending but not started (after a Qdrant restart): any
                    // update starts them.
                    Some(Ok(qdrant::CollectionStatus::Grey)) if !nudged => {
                        nudged = true;
                        let _ = client
                            .update_collection(UpdateCollection {
                                collection_name: name.clone(),
                                optimizers_config: Some(OptimizersConfigDiff::default()),
                                ..Default::default()
                            })
                            .await;
                    }
                    _ => {}
                }
            }
        });
    }

    pub fn collection_name(&self, def: &TableDef) -> String {
        collection_name(&self.settings.collection_prefix, def)
    }
}

/// The collection of a table: its `collection` option, or prefix + table name.
pub fn collection_name(prefix: &str, def: &TableDef) -> String {
    def.options
        .get("collection")
        .cloned()
        .unwrap_or_else(|| format!("{prefix}{}", def.stored_name()))
}

/// A client error as the proxy reports it: unreachable and timed-out servers are told
/// apart from errors Qdrant answered with.
pub fn map_error(e: QdrantError) -> Error {
    match e {
        QdrantError::ResponseError { status }
        | QdrantError::ResourceExhaustedError { status, .. } => {
            let message = status.message().to_string();
            match status.code() {
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Error::Timeout {
                    store: STORE,
                    message: "Qdrant did not answer in time".into(),
                },
                tonic::Code::Unavailable | tonic::Code::Unknown
                    if message.contains("transport")
                        || status.code() == tonic::Code::Unavailable =>
                {
                    Error::Unavailable {
                        store: STORE,
                        message: "Qdrant cannot be reached".into(),
                    }
                }
                code => Error::Backend {
                    store: STORE,
                    message: format!("Qdrant answered {code:?}: {message}"),
                },
            }
        }
        other => Error::Unavailable {
            store: STORE,
            message: format!("Qdrant cannot be reached: {other}"),
        },
    }
}

fn distance(d: Distance) -> qdrant::Distance {
    match d {
        Distance::Cosine => qdrant::Distance::Cosine,
        Distance::L2 => qdrant::Distance::Euclid,
        Distance::Dot => qdrant::Distance::Dot,
    }
}

fn hnsw(o: &IndexOptions) -> Option<HnswConfigDiff> {
    if o.m.is_none() && o.ef_construct.is_none() {
        return None;
    }
    Some(HnswConfigDiff {
        m: o.m.map(|m| m as u64),
        ef_construct: o.ef_construct.map(|e| e as u64),
        ..Default::default()
    })
}

#[allow(deprecated)]
fn quantization(o: &IndexOptions) -> Option<QConfig> {
    let always_ram = o.always_ram;
    match o.quantization {
        Quantization::None => None,
        Quantization::Int8 => Some(QConfig::Scalar(ScalarQuantization {
            r#type: QuantizationType::Int8 as i32,
            quantile: Some(0.99),
            always_ram,
            ..Default::default()
        })),
        Quantization::Binary => Some(QConfig::Binary(BinaryQuantization {
            always_ram,
            ..Default::default()
        })),
        Quantization::Product(ratio) => {
            let compression = match ratio {
                4 => qdrant::CompressionRatio::X4,
                8 => qdrant::CompressionRatio::X8,
                32 => qdrant::CompressionRatio::X32,
                64 => qdrant::CompressionRatio::X64,
                _ => qdrant::CompressionRatio::X16,
            };
            Some(QConfig::Product(ProductQuantization {
                compression: compression as i32,
                always_ram,
                ..Default::default()
            }))
        }
    }
}

/// The request that creates a table's collection.
pub fn create_request(def: &TableDef, name: &str) -> Result<CreateCollection> {
    let o = IndexOptions::parse(&def.options)?;
    let params = |column: usize, d: Distance| VectorParams {
        size: def.dimension_of(column) as u64,
        distance: distance(d) as i32,
        datatype: def
            .half_precision(column)
            .then_some(qdrant::Datatype::Float16 as i32),
        ..Default::default()
    };
    // One vector column: the collection's default (unnamed) vectors; several: one
    // named vector per column. A sparsevec column is a named sparse vector, scored by
    // the inner product (of normalised vectors for cosine distance).
    let (sparse, dense): (Vec<_>, Vec<_>) = def
        .vectors()
        .into_iter()
        .partition(|(c, _)| def.is_sparse(*c));
    let config = match dense.as_slice() {
        [] => None,
        [(column, d)] if def.index_vector_name(*column).is_empty() => {
            Some(vectors_config::Config::Params(params(*column, *d)))
        }
        all => Some(vectors_config::Config::ParamsMap(qdrant::VectorParamsMap {
            map: all
                .iter()
                .map(|&(column, d)| (def.index_vector_name(column), params(column, d)))
                .collect(),
        })),
    };
    Ok(CreateCollection {
        collection_name: name.to_string(),
        vectors_config: config.map(|config| VectorsConfig {
            config: Some(config),
        }),
        sparse_vectors_config: (!sparse.is_empty()).then(|| qdrant::SparseVectorConfig {
            map: sparse
                .iter()
                .map(|&(c, _)| (def.index_vector_name(c), Default::default()))
                .collect(),
        }),
        hnsw_config: hnsw(&o),
        quantization_config: quantization(&o).map(|q| QuantizationConfig {
            quantization: Some(q),
        }),
        optimizers_config: o.indexing_threshold_kb.map(|kb| OptimizersConfigDiff {
            indexing_threshold: Some(kb as u64),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The index type of a column in the payload, if filters can use it.
pub fn field_type(ty: &ColumnType) -> Option<FieldType> {
    Some(match ty {
        ColumnType::SmallInt
        | ColumnType::Int
        | ColumnType::BigInt
        | ColumnType::Date
        | ColumnType::IntArray
        | ColumnType::BigIntArray => FieldType::Integer,
        ColumnType::Timestamp | ColumnType::TimestampTz => FieldType::Datetime,
        ColumnType::Real | ColumnType::Double | ColumnType::Numeric(..) => FieldType::Float,
        ColumnType::Text | ColumnType::TextArray => FieldType::Keyword,
        ColumnType::Uuid => FieldType::Uuid,
        ColumnType::Bool => FieldType::Bool,
        ColumnType::Bytea
        | ColumnType::Array(_)
        | ColumnType::Jsonb
        | ColumnType::Json
        | ColumnType::Vector(_)
        | ColumnType::HalfVec(_)
        | ColumnType::SparseVec(_)
        | ColumnType::Bit(_)
        | ColumnType::VarBit(_) => {
            return None;
        }
    })
}

/// One payload index per filterable column; the tenant key's is marked as such.
pub fn field_index_requests(def: &TableDef, name: &str) -> Result<Vec<CreateFieldIndexCollection>> {
    let o = IndexOptions::parse(&def.options)?;
    let mut out = Vec::new();
    if def.ttl_seconds().is_some() {
        out.push(CreateFieldIndexCollection {
            collection_name: name.to_string(),
            wait: Some(true),
            field_name: EXPIRES_FIELD.to_string(),
            field_type: Some(FieldType::Integer as i32),
            ..Default::default()
        });
    }
    for (_, col) in def.payload_columns() {
        let Some(ft) = field_type(&col.ty) else {
            continue;
        };
        let tenant = o.tenant_key.as_deref() == Some(col.name.as_str());
        let params = match (tenant, ft) {
            (true, FieldType::Keyword) => {
                Some(IndexParams::KeywordIndexParams(KeywordIndexParams {
                    is_tenant: Some(true),
                    ..Default::default()
                }))
            }
            (true, FieldType::Uuid) => {
                Some(IndexParams::UuidIndexParams(qdrant::UuidIndexParams {
                    is_tenant: Some(true),
                    ..Default::default()
                }))
            }
            _ => None,
        };
        out.push(CreateFieldIndexCollection {
            collection_name: name.to_string(),
            wait: Some(true),
            field_name: col.name.clone(),
            field_type: Some(ft as i32),
            field_index_params: params.map(|p| PayloadIndexParams {
                index_params: Some(p),
            }),
            ..Default::default()
        });
    }
    out.extend(json_field_index_requests(def, name));
    Ok(out)
}

/// The payload indexes of the table's json indexes.
fn json_field_index_requests(def: &TableDef, name: &str) -> Vec<CreateFieldIndexCollection> {
    def.json_index_fields()
        .into_iter()
        .map(|(field, kind)| CreateFieldIndexCollection {
            collection_name: name.to_string(),
            wait: Some(true),
            field_name: field,
            field_type: Some(match kind {
                JsonIndexKind::Keyword | JsonIndexKind::Keys => FieldType::Keyword,
                JsonIndexKind::Number => FieldType::Float,
            } as i32),
            ..Default::default()
        })
        .collect()
}

/// The request that moves a collection from the old options to the new ones.
pub fn update_request(new: &TableDef, name: &str) -> Result<UpdateCollection> {
    let o = IndexOptions::parse(&new.options)?;
    Ok(UpdateCollection {
        collection_name: name.to_string(),
        hnsw_config: hnsw(&o),
        quantization_config: Some(QuantizationConfigDiff {
            quantization: Some(match quantization(&o) {
                None => QDiff::Disabled(qdrant::Disabled {}),
                Some(QConfig::Scalar(s)) => QDiff::Scalar(s),
                Some(QConfig::Binary(b)) => QDiff::Binary(b),
                Some(QConfig::Product(p)) => QDiff::Product(p),
                Some(_) => return Err(Error::internal("unexpected quantization")),
            }),
        }),
        optimizers_config: o.indexing_threshold_kb.map(|kb| OptimizersConfigDiff {
            indexing_threshold: Some(kb as u64),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

fn rfc3339(micros: i64) -> serde_json::Value {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|d| serde_json::Value::String(d.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()))
        .unwrap_or(serde_json::Value::Null)
}

/// A point as Qdrant stores it: timestamps become RFC 3339 strings for the datetime
/// index; columns no filter can use (bytea, the vector) are left out.
pub fn point_struct(def: &TableDef, p: Point) -> PointStruct {
    let mut payload = serde_json::Map::new();
    for (k, v) in p.payload {
        let ty = def.column_index(&k).map(|i| &def.columns[i].ty);
        match ty {
            Some(ColumnType::Timestamp | ColumnType::TimestampTz) => {
                payload.insert(
                    k,
                    v.as_i64().map(rfc3339).unwrap_or(serde_json::Value::Null),
                );
            }
            // json values are kept as the nested documents their filters address.
            Some(t)
                if field_type(t).is_none()
                    && !matches!(t, ColumnType::Jsonb | ColumnType::Json) => {}
            _ => {
                payload.insert(k, v);
            }
        }
    }
    let vector = |v: IndexVector| match v {
        IndexVector::Dense(v) => qdrant::Vector::from(v),
        IndexVector::Sparse(s) => qdrant::Vector::new_sparse(s.indices, s.values),
    };
    let vectors: qdrant::Vectors = match p.vectors.as_slice() {
        [(name, IndexVector::Dense(_))] if name.is_empty() => p
            .vectors
            .into_iter()
            .map(|(_, v)| vector(v))
            .next()
            .unwrap_or_default()
            .into(),
        _ => p
            .vectors
            .into_iter()
            .map(|(name, v)| (name, vector(v)))
            .collect::<HashMap<String, qdrant::Vector>>()
            .into(),
    };
    PointStruct::new(PointId::from(p.id), vectors, payload)
}

fn column_type<'a>(def: &'a TableDef, column: &str) -> Option<&'a ColumnType> {
    def.column_index(column).map(|i| &def.columns[i].ty)
}

/// The key value a predicate names, when `column` is the whole primary key.
fn key_value(def: &TableDef, column: &str, v: &Scalar) -> Option<Value> {
    let [k] = def.primary_key.as_slice() else {
        return None;
    };
    let col = &def.columns[*k];
    if col.name != column {
        return None;
    }
    match (&col.ty, v) {
        (ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt, Scalar::Int(i)) => {
            Some(Value::Int(*i))
        }
        (ColumnType::Text, Scalar::Text(s)) => Some(Value::Text(s.clone())),
        (ColumnType::Uuid, Scalar::Text(s)) => uuid::Uuid::parse_str(s).ok().map(Value::Uuid),
        _ => None,
    }
}

fn has_id(def: &TableDef, column: &str, values: &[Scalar]) -> Option<Condition> {
    let ids: Option<Vec<PointId>> = values
        .iter()
        .map(|v| {
            key_value(def, column, v)
                .map(|k| PointId::from(keys::point_id(def.stored_name(), &[k])))
        })
        .collect();
    ids.map(Condition::has_id)
}

/// Translate a predicate into a Qdrant filter. Like the embedded translation, the
/// filter may pass a superset of the rows (NULLs under NOT), never fewer; the SQL
/// layer re-checks every row.
pub fn to_filter(def: &TableDef, p: &Predicate) -> Result<Filter> {
    Ok(match p {
        Predicate::And(ps) => Filter::must(
            ps.iter()
                .map(|p| to_condition(def, p))
                .collect::<Result<Vec<_>>>()?,
        ),
        Predicate::Or(ps) => Filter::should(
            ps.iter()
                .map(|p| to_condition(def, p))
                .collect::<Result<Vec<_>>>()?,
        ),
        Predicate::Not(inner) => Filter::must_not([to_condition(def, inner)?]),
        other => Filter::must([to_condition(def, other)?]),
    })
}

fn to_condition(def: &TableDef, p: &Predicate) -> Result<Condition> {
    Ok(match p {
        Predicate::And(_) | Predicate::Or(_) | Predicate::Not(_) => to_filter(def, p)?.into(),
        Predicate::IsNull { column } => Condition::is_null(column.clone()),
        Predicate::Compare { column, op, value } => compare(def, column, *op, value)?,
        Predicate::Contains { column, value } => compare(def, column, CmpOp::Eq, value)?,
        Predicate::In { column, values } => {
            if let Some(c) = has_id(def, column, values) {
                return Ok(c);
            }
            let timestamps = matches!(
                column_type(def, column),
                Some(ColumnType::Timestamp | ColumnType::TimestampTz)
            );
            let texts: Option<Vec<String>> = values
                .iter()
                .map(|v| match v {
                    Scalar::Text(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            let ints: Option<Vec<i64>> = values
                .iter()
                .map(|v| match v {
                    Scalar::Int(i) => Some(*i),
                    _ => None,
                })
                .collect();
            match (texts, ints) {
                (Some(t), _) => Condition::matches(column.clone(), t),
                (_, Some(i)) if !timestamps => Condition::matches(column.clone(), i),
                _ => Filter::should(
                    values
                        .iter()
                        .map(|v| compare(def, column, CmpOp::Eq, v))
                        .collect::<Result<Vec<_>>>()?,
                )
                .into(),
            }
        }
    })
}

fn compare(def: &TableDef, column: &str, op: CmpOp, value: &Scalar) -> Result<Condition> {
    if op == CmpOp::NotEq {
        // SQL's `<>` is false on NULL: exclude nulls as well as the value.
        return Ok(Filter::must_not([
            compare(def, column, CmpOp::Eq, value)?,
            Condition::is_null(column.to_string()),
        ])
        .into());
    }
    if op == CmpOp::Eq
        && let Some(c) = has_id(def, column, std::slice::from_ref(value))
    {
        return Ok(c);
    }
    let timestamps = matches!(
        column_type(def, column),
        Some(ColumnType::Timestamp | ColumnType::TimestampTz)
    );
    Ok(match (op, value) {
        (_, Scalar::Int(t)) if timestamps => {
            let ts = timestamp(*t);
            let [lt, gt, gte, lte] = op.bounds(ts);
            Condition::datetime_range(column.to_string(), DatetimeRange { lt, gt, gte, lte })
        }
        (CmpOp::Eq, Scalar::Int(i)) => Condition::matches(column.to_string(), *i),
        (CmpOp::Eq, Scalar::Text(s)) => Condition::matches(column.to_string(), s.clone()),
        (CmpOp::Eq, Scalar::Bool(b)) => Condition::matches(column.to_string(), *b),
        (_, Scalar::Int(_) | Scalar::Float(_)) => {
            let x = match value {
                Scalar::Int(i) => *i as f64,
                Scalar::Float(f) => *f,
                _ => 0.0,
            };
            let [lt, gt, gte, lte] = op.bounds(x);
            Condition::range(column.to_string(), Range { lt, gt, gte, lte })
        }
        _ => {
            return Err(Error::internal(
                "predicate cannot be translated to a Qdrant filter",
            ));
        }
    })
}

/// The search request for one page of hits.
pub fn search_request(
    def: &TableDef,
    name: &str,
    query: &SearchQuery<'_>,
    timeout: Duration,
) -> Result<SearchPoints> {
    let SearchQuery {
        using,
        vector,
        filter,
        limit,
        offset,
        params,
    } = *query;
    let quantization = if params.rescore.is_some() || params.oversampling.is_some() {
        Some(QuantizationSearchParams {
            rescore: params.rescore,
            oversampling: params.oversampling,
            ignore: params.exact.then_some(true),
        })
    } else if params.exact {
        // Exact means the original vectors, never quantized ones.
        Some(QuantizationSearchParams {
            ignore: Some(true),
            ..Default::default()
        })
    } else {
        None
    };
    let (vector, sparse_indices) = match vector {
        QueryVector::Dense(v) => (v.to_vec(), None),
        QueryVector::Sparse(s) => (
            s.values.clone(),
            Some(qdrant::SparseIndices {
                data: s.indices.clone(),
            }),
        ),
    };
    Ok(SearchPoints {
        collection_name: name.to_string(),
        vector,
        sparse_indices,
        vector_name: (!using.is_empty()).then(|| using.to_string()),
        filter: filter.map(|p| to_filter(def, p)).transpose()?,
        limit: limit as u64,
        offset: (offset > 0).then_some(offset as u64),
        with_payload: Some(include(keys::KEY_FIELD)),
        params: Some(qdrant::SearchParams {
            hnsw_ef: params.hnsw_ef.map(|e| e as u64),
            exact: params.exact.then_some(true),
            quantization,
            ..Default::default()
        }),
        timeout: Some(timeout.as_secs().max(1)),
        ..Default::default()
    })
}

/// A filter in Qdrant's JSON notation, for EXPLAIN.
pub fn filter_json(f: &Filter) -> serde_json::Value {
    use qdrant::condition::ConditionOneOf as C;
    use qdrant::r#match::MatchValue as M;
    use serde_json::json;
    fn ts(t: &Option<prost_types::Timestamp>) -> serde_json::Value {
        t.map(|t| rfc3339(t.seconds * 1_000_000 + (t.nanos / 1000) as i64))
            .unwrap_or(serde_json::Value::Null)
    }
    fn cond(c: &Condition) -> serde_json::Value {
        match &c.condition_one_of {
            Some(C::Filter(f)) => filter_json(f),
            Some(C::IsNull(n)) => json!({"is_null": {"key": n.key}}),
            Some(C::IsEmpty(n)) => json!({"is_empty": {"key": n.key}}),
            Some(C::HasId(h)) => {
                json!({"has_id": h.has_id.iter().map(|id| match &id.point_id_options {
                Some(qdrant::point_id::PointIdOptions::Uuid(u)) => json!(u),
                Some(qdrant::point_id::PointIdOptions::Num(n)) => json!(n),
                None => serde_json::Value::Null,
            }).collect::<Vec<_>>()})
            }
            Some(C::Field(fc)) => {
                let mut o = serde_json::Map::new();
                o.insert("key".into(), json!(fc.key));
                if let Some(m) = fc.r#match.as_ref().and_then(|m| m.match_value.as_ref()) {
                    let v = match m {
                        M::Keyword(s) => json!({"value": s}),
                        M::Integer(i) => json!({"value": i}),
                        M::Boolean(b) => json!({"value": b}),
                        M::Keywords(k) => json!({"any": k.strings}),
                        M::Integers(k) => json!({"any": k.integers}),
                        M::ExceptKeywords(k) => json!({"except": k.strings}),
                        M::ExceptIntegers(k) => json!({"except": k.integers}),
                        other => json!(format!("{other:?}")),
                    };
                    o.insert("match".into(), v);
                }
                if let Some(r) = &fc.range {
                    o.insert(
                        "range".into(),
                        json!({"lt": r.lt, "gt": r.gt, "gte": r.gte, "lte": r.lte}),
                    );
                }
                if let Some(r) = &fc.datetime_range {
                    o.insert("range".into(), json!({"lt": ts(&r.lt), "gt": ts(&r.gt), "gte": ts(&r.gte), "lte": ts(&r.lte)}));
                }
                if let Some(serde_json::Value::Object(r)) = o.get_mut("range") {
                    r.retain(|_, v| !v.is_null());
                }
                serde_json::Value::Object(o)
            }
            other => json!(format!("{other:?}")),
        }
    }
    let mut o = serde_json::Map::new();
    for (name, list) in [
        ("must", &f.must),
        ("should", &f.should),
        ("must_not", &f.must_not),
    ] {
        if !list.is_empty() {
            o.insert(name.into(), list.iter().map(cond).collect());
        }
    }
    serde_json::Value::Object(o)
}

fn include(field: &str) -> WithPayloadSelector {
    WithPayloadSelector {
        selector_options: Some(SelectorOptions::Include(PayloadIncludeSelector {
            fields: vec![field.to_string()],
        })),
    }
}

fn point_uuid(id: &PointId) -> Option<uuid::Uuid> {
    match &id.point_id_options {
        Some(qdrant::point_id::PointIdOptions::Uuid(u)) => uuid::Uuid::parse_str(u).ok(),
        _ => None,
    }
}

fn payload_text(
    payload: &std::collections::HashMap<String, qdrant::Value>,
    field: &str,
) -> Option<String> {
    match payload.get(field).and_then(|v| v.kind.as_ref()) {
        Some(qdrant::value::Kind::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn hit_key(p: &qdrant::ScoredPoint) -> Result<Vec<Value>> {
    match p.payload.get(keys::KEY_FIELD).and_then(|v| v.kind.as_ref()) {
        Some(qdrant::value::Kind::StringValue(s)) => keys::decode_hex(s),
        _ => Err(Error::vector_index(
            "a Qdrant point without a vectorgate key in its payload",
        )),
    }
}

#[async_trait]
impl VectorIndex for QdrantIndex {
    fn shared(&self) -> bool {
        true
    }

    async fn create_collection(&self, table: &TableDef) -> Result<()> {
        let name = self.collection_name(table);
        let request = create_request(table, &name)?;
        let indexes = field_index_requests(table, &name)?;
        if self
            .client
            .collection_exists(&name)
            .await
            .map_err(map_error)?
        {
            self.client
                .delete_collection(&name)
                .await
                .map_err(map_error)?;
        }
        self.client
            .create_collection(request)
            .await
            .map_err(map_error)?;
        for i in indexes {
            self.client.create_field_index(i).await.map_err(map_error)?;
        }
        tracing::info!(table = %table.name, collection = %name, "Qdrant collection created");
        Ok(())
    }

    async fn index_json_fields(&self, table: &TableDef) -> Result<()> {
        let name = self.collection_name(table);
        for i in json_field_index_requests(table, &name) {
            self.client.create_field_index(i).await.map_err(map_error)?;
        }
        Ok(())
    }

    async fn has_collection(&self, table: &TableDef) -> Result<bool> {
        self.client
            .collection_exists(self.collection_name(table))
            .await
            .map_err(map_error)
    }

    async fn update_collection(&self, table: &TableDef) -> Result<()> {
        let name = self.collection_name(table);
        let request = update_request(table, &name)?;
        // Searches are exact from before the change is sent (a failed request may have
        // been applied all the same) until the watcher sees the collection settled.
        if self.rebuilds.begin(&name) {
            self.watch(name.clone());
        }
        let sent = self.client.update_collection(request).await;
        self.rebuilds.answered(&name);
        sent.map_err(map_error)?;
        Ok(())
    }

    async fn rebuilding(&self, table: &TableDef) -> Result<bool> {
        let name = self.collection_name(table);
        if self.rebuilds.active.lock().contains_key(&name) {
            return Ok(true);
        }
        if self.rebuilds.checked.lock().contains(&name) {
            return Ok(false);
        }
        // First search of this collection since start: a rebuild may have been running
        // when the proxy stopped, or Qdrant may be indexing; either way, not green means
        // some segments may be searched the old way.
        let info = self
            .client
            .collection_info(name.as_str())
            .await
            .map_err(map_error)?;
        self.rebuilds.checked.lock().insert(name.clone());
        let green = info
            .result
            .is_none_or(|i| i.status == qdrant::CollectionStatus::Green as i32);
        if !green && self.rebuilds.begin(&name) {
            self.rebuilds.answered(&name);
            self.watch(name);
        }
        Ok(!green)
    }

    async fn drop_collection(&self, table: &TableDef) -> Result<()> {
        let name = self.collection_name(table);
        if self
            .client
            .collection_exists(&name)
            .await
            .map_err(map_error)?
        {
            self.client
                .delete_collection(&name)
                .await
                .map_err(map_error)?;
        }
        Ok(())
    }

    async fn upsert(&self, table: &TableDef, points: Vec<Point>) -> Result<()> {
        let name = self.collection_name(table);
        // Chunks of distinct points go to the server several at a time, each applied
        // before it returns (with more than one shard, an earlier chunk's points may be
        // on another shard than a later one's, so no chunk can wait for the others);
        // the same point twice keeps its order, one chunk after the other.
        let distinct = {
            let mut seen = HashSet::with_capacity(points.len());
            points.iter().all(|p| seen.insert(p.id))
        };
        let mut points = points
            .into_iter()
            .map(|p| point_struct(table, p))
            .peekable();
        let mut chunks = Vec::new();
        while points.peek().is_some() {
            chunks.push(points.by_ref().take(256).collect::<Vec<PointStruct>>());
        }
        let client = &self.client;
        futures::stream::iter(chunks.into_iter().map(|chunk| {
            client.upsert_points(UpsertPoints {
                collection_name: name.clone(),
                wait: Some(true),
                points: chunk,
                ..Default::default()
            })
        }))
        .buffered(if distinct { UPSERTS_AT_ONCE } else { 1 })
        .map_err(map_error)
        .try_collect::<Vec<_>>()
        .await?;
        Ok(())
    }

    async fn delete(&self, table: &TableDef, ids: Vec<uuid::Uuid>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.client
            .delete_points(DeletePoints {
                collection_name: self.collection_name(table),
                wait: Some(true),
                points: Some(PointsSelector {
                    points_selector_one_of: Some(
                        qdrant::points_selector::PointsSelectorOneOf::Points(PointsIdsList {
                            ids: ids.into_iter().map(PointId::from).collect(),
                        }),
                    ),
                }),
                ..Default::default()
            })
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn search(&self, table: &TableDef, query: &SearchQuery<'_>) -> Result<Vec<Hit>> {
        let request = search_request(
            table,
            &self.collection_name(table),
            query,
            self.settings.timeout,
        )?;
        let response = self
            .client
            .search_points(request)
            .await
            .map_err(map_error)?;
        response
            .result
            .iter()
            .map(|p| {
                Ok(Hit {
                    key: hit_key(p)?,
                    score: p.score,
                })
            })
            .collect()
    }

    async fn point_hashes(
        &self,
        table: &TableDef,
        ids: &[uuid::Uuid],
    ) -> Result<std::collections::HashMap<uuid::Uuid, String>> {
        let response = self
            .client
            .get_points(qdrant::GetPoints {
                collection_name: self.collection_name(table),
                ids: ids.iter().copied().map(PointId::from).collect(),
                with_payload: Some(include(HASH_FIELD)),
                ..Default::default()
            })
            .await
            .map_err(map_error)?;
        Ok(response
            .result
            .iter()
            .filter_map(|p| {
                Some((
                    point_uuid(p.id.as_ref()?)?,
                    payload_text(&p.payload, HASH_FIELD)?,
                ))
            })
            .collect())
    }

    async fn scroll_keys(
        &self,
        table: &TableDef,
        offset: Option<uuid::Uuid>,
        limit: usize,
    ) -> Result<(Vec<(uuid::Uuid, Option<String>)>, Option<uuid::Uuid>)> {
        let response = self
            .client
            .scroll(qdrant::ScrollPoints {
                collection_name: self.collection_name(table),
                offset: offset.map(PointId::from),
                limit: Some(limit.clamp(1, u32::MAX as usize) as u32),
                with_payload: Some(include(keys::KEY_FIELD)),
                ..Default::default()
            })
            .await
            .map_err(map_error)?;
        let page = response
            .result
            .iter()
            .filter_map(|p| {
                Some((
                    point_uuid(p.id.as_ref()?)?,
                    payload_text(&p.payload, keys::KEY_FIELD),
                ))
            })
            .collect();
        Ok((
            page,
            response.next_page_offset.as_ref().and_then(point_uuid),
        ))
    }

    async fn delete_expired(&self, table: &TableDef, now: i64) -> Result<()> {
        self.client
            .delete_points(DeletePoints {
                collection_name: self.collection_name(table),
                wait: Some(true),
                points: Some(PointsSelector::from(Filter::must([Condition::range(
                    EXPIRES_FIELD,
                    Range {
                        lt: Some(now as f64),
                        ..Default::default()
                    },
                )]))),
                ..Default::default()
            })
            .await
            .map_err(map_error)?;
        Ok(())
    }

    fn explain_filter(&self, table: &TableDef, filter: &Predicate) -> Result<String> {
        Ok(filter_json(&to_filter(table, filter)?).to_string())
    }

    async fn health(&self) -> Result<()> {
        self.client.health_check().await.map_err(map_error)?;
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        // Every write waited for Qdrant to apply it.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn table(options: &[(&str, &str)]) -> TableDef {
        let mut def = TableDef::for_tests(
            "docs",
            &[
                ("id", ColumnType::BigInt),
                ("org", ColumnType::Text),
                ("price", ColumnType::Double),
                ("at", ColumnType::TimestampTz),
                ("tags", ColumnType::TextArray),
                ("owner", ColumnType::Uuid),
                ("blob", ColumnType::Bytea),
                ("ok", ColumnType::Bool),
                ("embedding", ColumnType::Vector(3)),
            ],
        );
        def.distance = Distance::L2;
        def.options = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>();
        def
    }

    fn json(p: &Predicate) -> serde_json::Value {
        filter_json(&to_filter(&table(&[]), p).expect("translates"))
    }

    fn cmp(column: &str, op: CmpOp, value: Scalar) -> Predicate {
        Predicate::Compare {
            column: column.into(),
            op,
            value,
        }
    }

    #[test]
    fn equality_becomes_match_value() {
        assert_eq!(
            json(&cmp("org", CmpOp::Eq, Scalar::Text("acme".into()))),
            serde_json::json!({"must": [{"key": "org", "match": {"value": "acme"}}]})
        );
        assert_eq!(
            json(&cmp("ok", CmpOp::Eq, Scalar::Bool(true))),
            serde_json::json!({"must": [{"key": "ok", "match": {"value": true}}]})
        );
    }

    #[test]
    fn ranges_on_numbers_and_datetimes() {
        assert_eq!(
            json(&cmp("price", CmpOp::LtEq, Scalar::Float(9.5))),
            serde_json::json!({"must": [{"key": "price", "range": {"lte": 9.5}}]})
        );
        // 2024-01-02 03:04:05.5 UTC in microseconds.
        let t = 1_704_164_645_500_000;
        assert_eq!(
            json(&cmp("at", CmpOp::Gt, Scalar::Int(t))),
            serde_json::json!({"must": [{"key": "at", "range": {"gt": "2024-01-02T03:04:05.500000Z"}}]})
        );
        let f = to_filter(&table(&[]), &cmp("at", CmpOp::Eq, Scalar::Int(t))).expect("valid");
        let Some(qdrant::condition::ConditionOneOf::Field(fc)) = &f.must[0].condition_one_of else {
            panic!("field condition expected");
        };
        let r = fc.datetime_range.expect("datetime range");
        assert_eq!(r.gte, r.lte);
        assert_eq!(
            r.gte.map(|t| (t.seconds, t.nanos)),
            Some((1_704_164_645, 500_000_000))
        );
    }

    #[test]
    fn in_lists_become_match_any() {
        let p = Predicate::In {
            column: "org".into(),
            values: vec![Scalar::Text("a".into()), Scalar::Text("b".into())],
        };
        assert_eq!(
            json(&p),
            serde_json::json!({"must": [{"key": "org", "match": {"any": ["a", "b"]}}]})
        );
    }

    #[test]
    fn not_equal_excludes_the_value_and_nulls() {
        assert_eq!(
            json(&cmp("org", CmpOp::NotEq, Scalar::Text("x".into()))),
            serde_json::json!({"must": [{"must_not": [
                {"key": "org", "match": {"value": "x"}},
                {"is_null": {"key": "org"}}
            ]}]})
        );
    }

    #[test]
    fn boolean_structure_is_kept() {
        let p = Predicate::And(vec![
            Predicate::Or(vec![
                cmp("org", CmpOp::Eq, Scalar::Text("a".into())),
                Predicate::IsNull {
                    column: "org".into(),
                },
            ]),
            Predicate::Not(Box::new(cmp("price", CmpOp::Gt, Scalar::Int(3)))),
            Predicate::Contains {
                column: "tags".into(),
                value: Scalar::Text("red".into()),
            },
        ]);
        assert_eq!(
            json(&p),
            serde_json::json!({"must": [
                {"should": [{"key": "org", "match": {"value": "a"}}, {"is_null": {"key": "org"}}]},
                {"must_not": [{"key": "price", "range": {"gt": 3.0}}]},
                {"key": "tags", "match": {"value": "red"}}
            ]})
        );
    }

    #[test]
    fn key_predicates_become_has_id() {
        let def = table(&[]);
        let want = keys::point_id("docs", &[Value::Int(42)]).to_string();
        assert_eq!(
            json(&cmp("id", CmpOp::Eq, Scalar::Int(42))),
            serde_json::json!({"must": [{"has_id": [want]}]})
        );
        let p = Predicate::In {
            column: "id".into(),
            values: vec![Scalar::Int(1), Scalar::Int(2)],
        };
        let f = filter_json(&to_filter(&def, &p).expect("valid"));
        assert_eq!(f["must"][0]["has_id"].as_array().map(|a| a.len()), Some(2));
        // A range on the key is a payload range, not ids.
        assert_eq!(
            json(&cmp("id", CmpOp::Lt, Scalar::Int(5))),
            serde_json::json!({"must": [{"key": "id", "range": {"lt": 5.0}}]})
        );
    }

    #[test]
    fn collection_setup_follows_the_options() {
        let def = table(&[
            ("m", "24"),
            ("ef_construct", "300"),
            ("quantization", "int8"),
            ("always_ram", "true"),
            ("tenant_key", "org"),
        ]);
        let name = collection_name("shop_", &def);
        assert_eq!(name, "shop_docs");
        let c = create_request(&def, &name).expect("valid");
        let Some(vectors_config::Config::Params(v)) = c.vectors_config.and_then(|v| v.config)
        else {
            panic!("vector params expected");
        };
        assert_eq!((v.size, v.distance), (3, qdrant::Distance::Euclid as i32));
        let h = c.hnsw_config.expect("hnsw");
        assert_eq!((h.m, h.ef_construct), (Some(24), Some(300)));
        match c.quantization_config.and_then(|q| q.quantization) {
            #[allow(deprecated)]
            Some(QConfig::Scalar(s)) => {
                assert_eq!(s.r#type, QuantizationType::Int8 as i32);
                assert_eq!(s.always_ram, Some(true));
            }
            other => panic!("int8 expected, got {other:?}"),
        }
        let indexes = field_index_requests(&def, &name).expect("valid");
        let by_name: BTreeMap<_, _> = indexes.iter().map(|i| (i.field_name.as_str(), i)).collect();
        // Every filterable column, nothing else (no bytea, no vector).
        assert_eq!(
            by_name.keys().copied().collect::<Vec<_>>(),
            vec!["at", "id", "ok", "org", "owner", "price", "tags"]
        );
        assert_eq!(by_name["at"].field_type, Some(FieldType::Datetime as i32));
        assert_eq!(by_name["owner"].field_type, Some(FieldType::Uuid as i32));
        assert_eq!(by_name["tags"].field_type, Some(FieldType::Keyword as i32));
        match by_name["org"]
            .field_index_params
            .as_ref()
            .and_then(|p| p.index_params.as_ref())
        {
            Some(IndexParams::KeywordIndexParams(k)) => assert_eq!(k.is_tenant, Some(true)),
            other => panic!("tenant keyword index expected, got {other:?}"),
        }
        assert!(by_name["price"].field_index_params.is_none());
        let explicit = table(&[("collection", "custom")]);
        assert_eq!(collection_name("shop_", &explicit), "custom");
    }

    #[test]
    fn alter_requests_switch_quantization() {
        let def = table(&[("quantization", "binary")]);
        let u = update_request(&def, "c").expect("valid");
        assert!(matches!(
            u.quantization_config.and_then(|q| q.quantization),
            Some(QDiff::Binary(_))
        ));
        let def = table(&[("quantization", "none"), ("m", "8")]);
        let u = update_request(&def, "c").expect("valid");
        assert!(matches!(
            u.quantization_config.and_then(|q| q.quantization),
            Some(QDiff::Disabled(_))
        ));
        assert_eq!(u.hnsw_config.and_then(|h| h.m), Some(8));
        let def = table(&[("quantization", "product"), ("compression", "32")]);
        match update_request(&def, "c")
            .expect("valid")
            .quantization_config
            .and_then(|q| q.quantization)
        {
            Some(QDiff::Product(p)) => {
                assert_eq!(p.compression, qdrant::CompressionRatio::X32 as i32)
            }
            other => panic!("product expected, got {other:?}"),
        }
    }

    #[test]
    fn exact_searches_ignore_quantized_vectors() {
        let def = table(&[]);
        for rescore in [None, Some(true)] {
            let params = crate::store::SearchParams {
                exact: true,
                rescore,
                ..Default::default()
            };
            let query = SearchQuery {
                using: "",
                vector: QueryVector::Dense(&[1.0, 2.0, 3.0]),
                filter: None,
                limit: 10,
                offset: 0,
                params: &params,
            };
            let r = search_request(&def, "c", &query, Duration::from_secs(3)).expect("valid");
            let p = r.params.expect("params");
            assert_eq!(p.exact, Some(true));
            assert_eq!(p.quantization.and_then(|q| q.ignore), Some(true));
        }
    }

    #[test]
    fn a_rebuild_settles_only_on_a_status_read_after_the_last_change() {
        let r = Rebuilds::default();
        assert!(r.begin("c"), "the first change starts a watcher");
        let before_answer = r.snapshot("c").expect("active");
        assert!(!r.settle("c", before_answer), "a change is still in flight");
        r.answered("c");
        assert!(
            !r.settle("c", before_answer),
            "read before the change was applied"
        );
        assert!(!r.begin("c"), "one watcher per collection");
        r.answered("c");
        let seen = r.snapshot("c").expect("active");
        assert!(r.settle("c", seen));
        assert!(r.snapshot("c").is_none());
    }

    #[test]
    fn several_vector_columns_are_named_vectors() {
        let mut def = TableDef::for_tests(
            "docs",
            &[
                ("id", ColumnType::BigInt),
                ("title", ColumnType::Vector(3)),
                ("body", ColumnType::HalfVec(2)),
                ("raw", ColumnType::Vector(0)),
            ],
        );
        def.set_vectors(vec![(2, Distance::Dot), (1, Distance::L2)]);
        let c = create_request(&def, "c").expect("valid");
        let Some(vectors_config::Config::ParamsMap(m)) = c.vectors_config.and_then(|v| v.config)
        else {
            panic!("named vector params expected");
        };
        let got: BTreeMap<_, _> = m
            .map
            .iter()
            .map(|(k, v)| (k.as_str(), (v.size, v.distance, v.datatype)))
            .collect();
        // The column without a dimension is not in the index; the halfvec is kept in
        // half precision.
        assert_eq!(
            got,
            BTreeMap::from([
                (
                    "body",
                    (
                        2,
                        qdrant::Distance::Dot as i32,
                        Some(qdrant::Datatype::Float16 as i32)
                    )
                ),
                ("title", (3, qdrant::Distance::Euclid as i32, None)),
            ])
        );
        let row = vec![
            Value::Int(1),
            Value::Vector(vec![1.0, 2.0, 3.0]),
            Value::Null,
            Value::Vector(vec![1.0]),
        ];
        let p = crate::store::point_for_row(&def, &row).expect("a point");
        let vectors = point_struct(&def, p)
            .vectors
            .and_then(|v| v.vectors_options);
        match vectors {
            Some(qdrant::vectors::VectorsOptions::Vectors(n)) => {
                assert_eq!(n.vectors.keys().collect::<Vec<_>>(), vec!["title"]);
            }
            other => panic!("named vectors expected, got {other:?}"),
        }
        let params = crate::store::SearchParams::default();
        let query = SearchQuery {
            using: "body",
            vector: QueryVector::Dense(&[1.0, 0.0]),
            filter: None,
            limit: 3,
            offset: 0,
            params: &params,
        };
        let r = search_request(&def, "c", &query, Duration::from_secs(3)).expect("valid");
        assert_eq!(r.vector_name.as_deref(), Some("body"));
        // A table with one vector column keeps the collection's default vector.
        let single = table(&[]);
        let Some(vectors_config::Config::Params(_)) = create_request(&single, "c")
            .expect("valid")
            .vectors_config
            .and_then(|v| v.config)
        else {
            panic!("default vector params expected");
        };
        let query = SearchQuery { using: "", ..query };
        let r = search_request(&single, "c", &query, Duration::from_secs(3)).expect("valid");
        assert_eq!(r.vector_name, None);
    }

    #[test]
    fn search_requests_carry_the_session_settings() {
        let def = table(&[]);
        let params = crate::store::SearchParams {
            hnsw_ef: Some(128),
            exact: false,
            oversampling: Some(2.0),
            rescore: Some(true),
        };
        let filter = cmp("org", CmpOp::Eq, Scalar::Text("a".into()));
        let query = SearchQuery {
            using: "",
            vector: QueryVector::Dense(&[1.0, 2.0, 3.0]),
            filter: Some(&filter),
            limit: 10,
            offset: 20,
            params: &params,
        };
        let r = search_request(&def, "c", &query, Duration::from_secs(3)).expect("valid");
        assert_eq!((r.limit, r.offset, r.timeout), (10, Some(20), Some(3)));
        let p = r.params.expect("params");
        assert_eq!(p.hnsw_ef, Some(128));
        let q = p.quantization.expect("quantization params");
        assert_eq!((q.rescore, q.oversampling), (Some(true), Some(2.0)));
        assert!(r.filter.is_some());
        match r.with_payload.and_then(|w| w.selector_options) {
            Some(SelectorOptions::Include(i)) => assert_eq!(i.fields, vec![keys::KEY_FIELD]),
            other => panic!("only the key should come back, got {other:?}"),
        }
    }

    #[test]
    fn payloads_hold_filterable_columns_only() {
        let def = table(&[]);
        let row = vec![
            Value::Int(7),
            Value::Text("acme".into()),
            Value::Float(1.5),
            Value::Timestamp(1_704_164_645_500_000),
            Value::TextArray(vec![Some("a".into())]),
            Value::Null,
            Value::Bytes(vec![1, 2, 3]),
            Value::Bool(true),
            Value::Vector(vec![1.0, 0.0, 0.0]),
        ];
        let p = crate::store::point_for_row(&def, &row).expect("point");
        let s = point_struct(&def, p);
        assert!(!s.payload.contains_key("blob"));
        assert!(!s.payload.contains_key("embedding"));
        assert!(s.payload.contains_key(keys::KEY_FIELD));
        match s.payload.get("at").and_then(|v| v.kind.clone()) {
            Some(qdrant::value::Kind::StringValue(t)) => {
                assert_eq!(t, "2024-01-02T03:04:05.500000Z")
            }
            other => panic!("timestamp as RFC 3339 expected, got {other:?}"),
        }
    }

    #[test]
    fn transport_failures_are_outages_and_answers_are_errors() {
        let e = map_error(QdrantError::ResponseError {
            status: tonic::Status::unavailable("connection refused"),
        });
        assert_eq!(e.sqlstate(), "08006");
        let e = map_error(QdrantError::ResponseError {
            status: tonic::Status::deadline_exceeded("slow"),
        });
        assert_eq!(e.sqlstate(), "57014");
        let e = map_error(QdrantError::ResponseError {
            status: tonic::Status::invalid_argument("bad filter"),
        });
        assert_eq!(e.sqlstate(), "58000");
    }
}
