//! `vector_search(ns, embedding, k)`: a table function whose rows are the k nearest rows
//! of table `ns` that satisfy the WHERE clause, with every column plus `distance`.
//!
//! Pushable predicates (see [`super::pushdown`]) are sent to the vector index as a
//! filter. Every predicate, pushed or not, is then re-checked against the rows fetched
//! from the row store; rows missing there are dropped; and the index is asked for
//! further hits until k rows pass or it is exhausted. Distances are recomputed exactly
//! from the stored vectors.
//!
//! Two more arguments, `vector_search(ns, [column,] embedding, k, 'c1, c2', (SELECT
//! struct(a, b) FROM ...))`, restrict the search to rows whose columns `c1, c2` are
//! among the subquery's rows: what pgvector's search shape over a join becomes (see
//! [`super::pgvector`]), the keys of the joined table's rows that pass its conditions.
//! A subquery of one table's keys under a WHERE clause is not run: the rows the hits
//! point at are read by key and checked ([`Lookup`]) until that misses too often.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, BooleanArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};

use super::pushdown::to_predicate;
use super::tables::{single_partition_props, table_schema};
use crate::engine::{Core, Notices};
use crate::error::{Error, Result};
use crate::store::{Distance, Predicate, QueryVector, Row, SearchParams, SearchQuery, TableDef};
use crate::types::{Value, check_vector, value_from_array};

/// Name of the extra output column.
pub const DISTANCE: &str = "distance";

/// Per-session search settings, kept in DataFusion's session config.
#[derive(Debug, Clone, Default)]
pub struct SearchSettings {
    pub hnsw_ef: Option<usize>,
    pub exact: bool,
    /// Answer from an exact scan of the row store instead of the index.
    pub row_scan: bool,
    pub oversampling: Option<f64>,
    pub rescore: Option<bool>,
    /// NOTICE messages for the client of this session (sent with the next response).
    pub notices: Notices,
    /// The session may not write (a read-only user or `default_transaction_read_only`).
    pub read_only: bool,
}

impl SearchSettings {
    /// What the index is asked to search with.
    pub(crate) fn params(&self) -> SearchParams {
        SearchParams {
            hnsw_ef: self.hnsw_ef,
            exact: self.exact,
            oversampling: self.oversampling,
            rescore: self.rescore,
        }
    }
}

/// Messages a statement leaves for the client as NOTICEs.
#[derive(Debug)]
pub struct VectorSearchFunction {
    pub shared: Weak<Core>,
}

/// Evaluate a constant expression (a literal, a cast, `ARRAY[...]`).
pub(crate) fn eval_const(session: &dyn Session, e: &Expr) -> Result<Option<Value>> {
    // A parameter (also under a cast, `$1::vector`) is known only once bound.
    if e.exists(|x| Ok(matches!(x, Expr::Placeholder(_))))? {
        return Ok(None);
    }
    // `(SELECT embedding FROM t WHERE id = 1)`: the subquery runs now, once.
    if let Expr::ScalarSubquery(sq) = e {
        return scalar_subquery(session, &sq.subquery);
    }
    // `'[1,2,3]'::vector`: the text is parsed as a vector here (Arrow cannot cast it).
    if let Expr::Cast(datafusion::logical_expr::Cast { expr, field })
    | Expr::TryCast(datafusion::logical_expr::TryCast { expr, field }) = e
        && matches!(
            field.data_type(),
            DataType::List(_) | DataType::FixedSizeList(..)
        )
    {
        return eval_const(session, expr);
    }
    let phys = session.create_physical_expr(e.clone(), &DFSchema::empty())?;
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .map_err(Error::internal)?;
    let arr = phys.evaluate(&batch)?.into_array(1)?;
    Ok(Some(value_from_array(&arr, 0)?))
}

/// The value of an uncorrelated scalar subquery (NULL for no row), run while the search
/// is planned; `None` while it waits for a parameter (at Describe).
fn scalar_subquery(
    session: &dyn Session,
    plan: &datafusion::logical_expr::LogicalPlan,
) -> Result<Option<Value>> {
    let Some(batches) = run_subquery(session, plan)? else {
        return Ok(None);
    };
    let mut found = None;
    for b in &batches {
        for row in 0..b.num_rows() {
            if found.is_some() {
                return Err(Error::CardinalityViolation(
                    "more than one row returned by a subquery used as an expression".into(),
                ));
            }
            found = Some(value_from_array(b.column(0), row)?);
        }
    }
    Ok(Some(found.unwrap_or(Value::Null)))
}

/// The rows of an uncorrelated subquery, run while the search is planned; `None` while
/// it waits for a parameter (at Describe).
fn run_subquery(
    session: &dyn Session,
    plan: &datafusion::logical_expr::LogicalPlan,
) -> Result<Option<Vec<RecordBatch>>> {
    if plan.get_parameter_types().is_ok_and(|p| !p.is_empty()) {
        return Ok(None);
    }
    let handle = tokio::runtime::Handle::current();
    Ok(Some(tokio::task::block_in_place(|| {
        handle.block_on(collect(session, plan))
    })?))
}

/// Every row of `plan`, planned and run in `session`.
async fn collect(
    session: &dyn Session,
    plan: &datafusion::logical_expr::LogicalPlan,
) -> Result<Vec<RecordBatch>> {
    let physical = session.create_physical_plan(plan).await?;
    Ok(datafusion::physical_plan::collect(physical, session.task_ctx()).await?)
}

/// The rows a search may answer, by the values of some of its columns (the keys of a
/// joined table's rows that pass that table's conditions).
#[derive(Debug)]
pub(crate) struct Allowed {
    columns: Vec<usize>,
    keys: HashSet<String>,
    /// The keys' values, while there are at most [`PUSHED_KEYS`] of them.
    few: Vec<Vec<Value>>,
    /// Instead of the keys, read while planning: the joined table's rows are read by
    /// key as the index's hits arrive and checked against its conditions (`keys` is
    /// empty, and [`Allowed::admits`] leaves the check to [`Lookup::admit`]).
    lookup: Option<Lookup>,
}

/// The joined table's side of a search over a join, read as the search goes: the rows
/// the hits point at are fetched by key and checked against that table's conditions.
/// Cheaper than reading every row that passes them when they pass many; when the hits
/// keep missing (the conditions pass few rows), the search reads those rows after all
/// (see [`LOOKUPS`]).
pub(crate) struct Lookup {
    other: Arc<TableDef>,
    schema: SchemaRef,
    check: Arc<dyn PhysicalExpr>,
    /// The subquery of the keys, and the session it was planned in, for that fallback.
    plan: datafusion::logical_expr::LogicalPlan,
    state: datafusion::execution::SessionState,
}

impl fmt::Debug for Lookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lookup({}: {})", self.other.name, self.check)
    }
}

/// A search over a join looks up at most this many joined rows by key before it reads
/// every joined row that passes the conditions instead.
const LOOKUPS: usize = 2048;

impl Lookup {
    /// The lookup for the keys subquery `plan` (`SELECT struct(keys) FROM t [WHERE
    /// ...]`, as [`super::joined_search`] writes it), if it has that shape.
    fn of(session: &dyn Session, plan: &datafusion::logical_expr::LogicalPlan) -> Option<Lookup> {
        use datafusion::logical_expr::LogicalPlan as P;
        let P::Projection(p) = plan else {
            return None;
        };
        let (predicate, mut scan) = match p.input.as_ref() {
            P::Filter(f) => (f.predicate.clone(), f.input.as_ref()),
            other => (datafusion::logical_expr::lit(true), other),
        };
        let input_schema = scan.schema().clone();
        if let P::SubqueryAlias(a) = scan {
            scan = a.input.as_ref();
        }
        let P::TableScan(ts) = scan else {
            return None;
        };
        if !ts.filters.is_empty() || ts.fetch.is_some() || ts.projection.is_some() {
            return None;
        }
        let provider = datafusion::datasource::source_as_provider(&ts.source).ok()?;
        let other = provider
            .downcast_ref::<super::tables::RowTable>()?
            .def()
            .clone();
        let schema = table_schema(&other);
        if input_schema.fields().len() != schema.fields().len()
            || predicate
                .exists(|e| {
                    Ok(matches!(
                        e,
                        Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
                    ))
                })
                .unwrap_or(true)
        {
            return None;
        }
        // `now()` and its kin become the statement's time, as the planner makes them in
        // the rest of the statement (their functions cannot be called unsimplified).
        let context = datafusion::optimizer::simplify_expressions::SimplifyContext::builder()
            .with_schema(input_schema.clone())
            .with_query_execution_start_time(session.execution_props().query_execution_start_time)
            .with_config_options(Arc::new(session.config_options().clone()))
            .build();
        let predicate = datafusion::optimizer::simplify_expressions::ExprSimplifier::new(context)
            .simplify(predicate)
            .ok()?;
        let check = session
            .create_physical_expr(predicate, &input_schema)
            .ok()?;
        let state = session
            .as_any()
            .downcast_ref::<datafusion::execution::SessionState>()?
            .clone();
        Some(Lookup {
            other,
            schema,
            check,
            plan: plan.clone(),
            state,
        })
    }

    /// Which of `candidates` (rows of the searched table) join a row of the other table
    /// that passes its conditions: their keys (`columns`, in the other table's key
    /// order) are looked up once each, the answers kept in `known`.
    async fn admit(
        &self,
        core: &Core,
        pending: Option<&crate::engine::tx::Pending>,
        columns: &[usize],
        candidates: Vec<(Row, f64)>,
        known: &mut std::collections::HashMap<String, bool>,
    ) -> Result<Vec<(Row, f64)>> {
        let pk = &self.other.primary_key;
        let key_of = |row: &Row| -> Result<Vec<Value>> {
            columns
                .iter()
                .zip(pk)
                .map(|(&c, &k)| crate::types::coerce(row[c].clone(), &self.other.columns[k].ty))
                .collect()
        };
        let mut ask = Vec::new();
        let mut texts = Vec::with_capacity(candidates.len());
        for (row, _) in &candidates {
            let key = key_of(row)?;
            let text = Allowed::key(key.iter());
            if let std::collections::hash_map::Entry::Vacant(e) = known.entry(text.clone()) {
                e.insert(false);
                ask.push(key);
            }
            texts.push(text);
        }
        if !ask.is_empty() {
            let rows = crate::engine::tx::get(core, pending, &self.other, &ask).await?;
            let found: Vec<&Row> = rows.iter().flatten().collect();
            let all: Vec<usize> = (0..self.other.columns.len()).collect();
            let batch = super::tables::rows_to_batch(&self.other, &self.schema, &all, &found)?;
            let pass = passing_with(std::slice::from_ref(&self.check), &batch)?;
            for (row, ok) in found.into_iter().zip(pass) {
                known.insert(Allowed::key(self.other.key_of(row).iter()), ok);
            }
        }
        Ok(candidates
            .into_iter()
            .zip(texts)
            .filter(|(_, text)| known.get(text) == Some(&true))
            .map(|(c, _)| c)
            .collect())
    }

    /// Every key the subquery gives: the fallback when looking up is the longer way.
    async fn keys(&self, columns: &[usize]) -> Result<Allowed> {
        Allowed::of_batches(columns.to_vec(), &collect(&self.state, &self.plan).await?)
    }
}

/// At most this many keys are also sent to the index as a filter (`c IN (...)` per
/// column); more are only checked on the rows fetched.
const PUSHED_KEYS: usize = 1024;

impl Allowed {
    fn key<'a>(values: impl Iterator<Item = &'a Value>) -> String {
        values
            .map(super::params::literal)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The search's table's columns `names` (`'c1, c2'`), the keys the subquery's rows
    /// give (one struct column, a field per column).
    fn from_subquery(def: &TableDef, names: &str, batches: &[RecordBatch]) -> Result<Allowed> {
        Allowed::of_batches(Allowed::columns_of(def, names)?, batches)
    }

    /// A search over a join whose joined rows are read by key as the hits arrive.
    fn looked_up(def: &TableDef, names: &str, lookup: Lookup) -> Result<Allowed> {
        Ok(Allowed {
            columns: Allowed::columns_of(def, names)?,
            keys: HashSet::new(),
            few: Vec::new(),
            lookup: Some(lookup),
        })
    }

    fn columns_of(def: &TableDef, names: &str) -> Result<Vec<usize>> {
        names
            .split(',')
            .map(|n| {
                def.column_index(n.trim()).ok_or_else(|| {
                    Error::UndefinedColumn(format!(
                        "column \"{}\" of \"{}\" does not exist",
                        n.trim(),
                        def.name
                    ))
                })
            })
            .collect::<Result<Vec<usize>>>()
    }

    fn of_batches(columns: Vec<usize>, batches: &[RecordBatch]) -> Result<Allowed> {
        let mut keys = HashSet::new();
        let mut few = Vec::new();
        for b in batches {
            let Some(fields) = b.columns().first().and_then(|c| {
                c.as_any()
                    .downcast_ref::<datafusion::arrow::array::StructArray>()
            }) else {
                return Err(Error::InvalidParameter(
                    "the keys of vector_search must be a subquery of struct(...)".into(),
                ));
            };
            if fields.num_columns() != columns.len() {
                return Err(Error::InvalidParameter(format!(
                    "vector_search names {} key columns, its subquery gives {}",
                    columns.len(),
                    fields.num_columns()
                )));
            }
            for row in 0..b.num_rows() {
                let values = fields
                    .columns()
                    .iter()
                    .map(|c| value_from_array(c, row))
                    .collect::<Result<Vec<Value>>>()?;
                if keys.insert(Allowed::key(values.iter())) && keys.len() <= PUSHED_KEYS {
                    few.push(values);
                }
            }
        }
        Ok(Allowed {
            columns,
            keys,
            few,
            lookup: None,
        })
    }

    /// No row can pass: the joined table's keys were read and there are none.
    fn none(&self) -> bool {
        self.lookup.is_none() && self.keys.is_empty()
    }

    fn admits(&self, row: &Row) -> bool {
        self.lookup.is_some()
            || self
                .keys
                .contains(&Allowed::key(self.columns.iter().map(|&c| &row[c])))
    }

    /// `c IN (...)` for each column, when the keys are few: a filter the index can plan
    /// by (it admits a superset of the keys; the rows fetched are checked exactly).
    fn predicate(&self, def: &TableDef) -> Option<Predicate> {
        if self.keys.is_empty() || self.keys.len() > PUSHED_KEYS {
            return None;
        }
        let mut parts = Vec::new();
        for (i, &c) in self.columns.iter().enumerate() {
            let mut seen = HashSet::new();
            let mut values = Vec::new();
            for t in &self.few {
                let v = &t[i];
                if !seen.insert(super::params::literal(v)) {
                    continue;
                }
                values.push(match v {
                    Value::Int(x) => datafusion::logical_expr::lit(*x),
                    Value::Text(t) => datafusion::logical_expr::lit(t.clone()),
                    _ => return None,
                });
            }
            let e = datafusion::logical_expr::col(Column::from_name(&def.columns[c].name))
                .in_list(values, false);
            parts.push(to_predicate(&e, def)?);
        }
        Some(match parts.len() {
            1 => parts.pop()?,
            _ => Predicate::And(parts),
        })
    }
}

/// A query vector from a function argument: `'[..]'` text, or a numeric array.
pub fn query_vector(v: Value, dim: usize) -> Result<Vec<f32>> {
    let v = match v {
        Value::Text(s) => crate::types::sparse::dense_of_text(&s)?,
        v @ (Value::Vector(_) | Value::IntArray(_) | Value::Array(_)) => {
            crate::types::vector_of(v)?
        }
        Value::Null => {
            return Err(Error::DataException(
                "the query vector must not be NULL".into(),
            ));
        }
        other => {
            return Err(Error::DatatypeMismatch(format!(
                "vector_search expects a vector, text or real[] argument, got {other:?}"
            )));
        }
    };
    check_vector(&v, dim)?;
    Ok(v)
}

impl TableFunctionImpl for VectorSearchFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| Error::internal("engine is shutting down"))?;
        let exprs = args.exprs();
        // The restricting keys, last (not part of the documented function).
        let (exprs, restrict) = if exprs.len() >= 5 {
            exprs.split_at(exprs.len() - 2)
        } else {
            (exprs, &[][..])
        };
        if !(3..=4).contains(&exprs.len()) {
            return Err(Error::UndefinedFunction(format!(
                "function vector_search takes 3 arguments (table, vector, k) or 4 (table, column, vector, k), got {}",
                exprs.len()
            ))
            .into());
        }
        let text_arg = |i: usize, what: &str| -> DfResult<String> {
            match eval_const(args.session(), &exprs[i])? {
                Some(Value::Text(s)) => Ok(s),
                _ => Err(Error::InvalidParameter(format!(
                    "the {what} argument of vector_search must be a {}",
                    if i == 0 { "table name" } else { "column name" }
                ))
                .into()),
            }
        };
        let table = text_arg(0, "first")?;
        let def = shared.table(&table)?;
        let (column, rest) = if exprs.len() == 4 {
            let name = text_arg(1, "second")?;
            (
                def.search_column(Some(&name), "vector_search")?,
                &exprs[2..],
            )
        } else {
            (def.search_column(None, "vector_search")?, &exprs[1..])
        };
        let query = match eval_const(args.session(), &rest[0])? {
            Some(v) => Some(query_vector(v, def.dimension_of(column))?),
            None => None,
        };
        let k = match eval_const(args.session(), &rest[1])? {
            None => None,
            Some(Value::Int(k)) if k >= 1 && (k as u64) <= shared.max_k as u64 => Some(k as usize),
            Some(Value::Int(k)) => {
                return Err(Error::InvalidParameter(format!(
                    "k must be between 1 and {}, got {k}",
                    shared.max_k
                ))
                .into());
            }
            Some(_) => return Err(Error::InvalidParameter("k must be an integer".into()).into()),
        };
        let allowed = match restrict {
            [names, datafusion::logical_expr::Expr::ScalarSubquery(sq)] => {
                let Some(Value::Text(names)) = eval_const(args.session(), names)? else {
                    return Err(Error::InvalidParameter(
                        "the key columns of vector_search must be text".into(),
                    )
                    .into());
                };
                let waiting = sq
                    .subquery
                    .get_parameter_types()
                    .is_ok_and(|p| !p.is_empty());
                match Lookup::of(args.session(), &sq.subquery) {
                    Some(lookup) if !waiting => {
                        Some(Arc::new(Allowed::looked_up(&def, &names, lookup)?))
                    }
                    _ => match run_subquery(args.session(), &sq.subquery)? {
                        Some(batches) => {
                            Some(Arc::new(Allowed::from_subquery(&def, &names, &batches)?))
                        }
                        None => None,
                    },
                }
            }
            [] => None,
            _ => {
                return Err(Error::InvalidParameter(
                    "the keys of vector_search must be a subquery".into(),
                )
                .into());
            }
        };
        let mut table = VectorSearchTable::new(def, column, shared, query, k);
        table.allowed = allowed;
        Ok(Arc::new(table))
    }
}

#[derive(Debug)]
pub struct VectorSearchTable {
    def: Arc<TableDef>,
    /// The vector column searched.
    column: usize,
    shared: Arc<Core>,
    query: Option<Vec<f32>>,
    k: Option<usize>,
    schema: SchemaRef,
    allowed: Option<Arc<Allowed>>,
}

impl VectorSearchTable {
    fn new(
        def: Arc<TableDef>,
        column: usize,
        shared: Arc<Core>,
        query: Option<Vec<f32>>,
        k: Option<usize>,
    ) -> Self {
        VectorSearchTable {
            schema: search_schema(&def),
            def,
            column,
            shared,
            query,
            k,
            allowed: None,
        }
    }
}

/// The rows of a search of `def`: the table's columns, then `distance`.
pub(crate) fn search_schema(def: &TableDef) -> SchemaRef {
    let mut fields: Vec<Field> = table_schema(def)
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(DISTANCE, DataType::Float64, false));
    Arc::new(Schema::new(fields))
}

fn unqualify(e: &Expr) -> DfResult<Expr> {
    Ok(e.clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) if c.relation.is_some() => {
                    Transformed::yes(Expr::Column(Column::from_name(c.name)))
                }
                other => Transformed::no(other),
            })
        })?
        .data)
}

#[async_trait]
impl TableProvider for VectorSearchTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if to_predicate(f, &self.def).is_some() {
                    TableProviderFilterPushDown::Exact
                } else {
                    // Given to the scan too, so that k counts rows that pass it.
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut pushed = Vec::new();
        let mut residual_text = Vec::new();
        let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
        let mut checks = Vec::new();
        let mut pre_checks = Vec::new();
        for f in filters {
            let f = unqualify(f)?;
            match to_predicate(&f, &self.def) {
                Some(p) => pushed.push(p),
                None => residual_text.push(f.to_string()),
            }
            // Every filter is re-checked on fetched rows; one that cannot be compiled
            // here (a subquery) is still applied by the plan above.
            let reads_distance = f.column_refs().iter().any(|c| c.name == DISTANCE);
            if let Ok(p) = state.create_physical_expr(f, &df_schema) {
                if !reads_distance {
                    pre_checks.push(p.clone());
                }
                checks.push(p);
            }
        }
        let pushed = match pushed.len() {
            0 => None,
            1 => pushed.pop(),
            _ => Some(Predicate::And(pushed)),
        };
        let settings = state
            .config()
            .get_extension::<SearchSettings>()
            .map(|s| s.as_ref().clone())
            .unwrap_or_default();
        let cols: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let out_schema = Arc::new(self.schema.project(&cols)?);
        let index_filter = match &pushed {
            Some(p) => Some(self.shared.index.explain_filter(&self.def, p)?),
            None => None,
        };
        Ok(Arc::new(VectorSearchExec {
            index_filter,
            def: self.def.clone(),
            column: self.column,
            shared: self.shared.clone(),
            query: self.query.clone(),
            k: self.k,
            pushed,
            residual_text,
            checks,
            pre_checks,
            // A vector column the index does not hold (no declared dimension) is
            // searched by reading every row.
            row_scan: settings.row_scan || self.def.distance_of(self.column).is_none(),
            full_schema: self.schema.clone(),
            cols,
            props: Arc::new(single_partition_props(&out_schema)),
            schema: out_schema,
            notices: settings.notices.clone(),
            params: settings.params(),
            allowed: self.allowed.clone(),
        }))
    }
}

pub struct VectorSearchExec {
    def: Arc<TableDef>,
    column: usize,
    shared: Arc<Core>,
    query: Option<Vec<f32>>,
    k: Option<usize>,
    pushed: Option<Predicate>,
    residual_text: Vec<String>,
    checks: Vec<Arc<dyn PhysicalExpr>>,
    pre_checks: Vec<Arc<dyn PhysicalExpr>>,
    row_scan: bool,
    full_schema: SchemaRef,
    cols: Vec<usize>,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
    params: SearchParams,
    notices: Notices,
    /// The pushed filter in the index's own notation, as sent.
    index_filter: Option<String>,
    allowed: Option<Arc<Allowed>>,
}

impl VectorSearchExec {
    /// Whether the joined table's keys were read while the search was planned (so a
    /// later execution of this plan would miss the table's changes since).
    pub(crate) fn keys_read_while_planned(&self) -> bool {
        self.allowed.as_ref().is_some_and(|a| a.lookup.is_none())
    }

    /// The same search for another query vector (the plan cache's substitution), of the
    /// searched column's dimension.
    pub(crate) fn with_query(&self, query: Vec<f32>) -> Result<VectorSearchExec> {
        check_vector(&query, self.def.dimension_of(self.column))?;
        Ok(VectorSearchExec {
            def: self.def.clone(),
            column: self.column,
            shared: self.shared.clone(),
            query: Some(query),
            k: self.k,
            pushed: self.pushed.clone(),
            residual_text: self.residual_text.clone(),
            checks: self.checks.clone(),
            pre_checks: self.pre_checks.clone(),
            row_scan: self.row_scan,
            full_schema: self.full_schema.clone(),
            cols: self.cols.clone(),
            schema: self.schema.clone(),
            props: self.props.clone(),
            params: self.params.clone(),
            notices: self.notices.clone(),
            index_filter: self.index_filter.clone(),
            allowed: self.allowed.clone(),
        })
    }
}

impl fmt::Debug for VectorSearchExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        DisplayAs::fmt_as(self, DisplayFormatType::Default, f)
    }
}

impl DisplayAs for VectorSearchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "VectorSearchExec: table={}, k=", self.def.name)?;
        match self.k {
            Some(k) => write!(f, "{k}")?,
            None => write!(f, "$")?,
        }
        if self.def.vector_columns().nth(1).is_some() {
            write!(f, ", vector={}", self.def.columns[self.column].name)?;
        }
        write!(
            f,
            ", distance={}",
            search_distance(&self.def, self.column).name()
        )?;
        if self.row_scan {
            write!(f, ", mode=exact row scan")?;
        }
        match &self.pushed {
            Some(p) => write!(f, ", pushed_filter={p}")?,
            None => write!(f, ", pushed_filter=none")?,
        }
        if self.residual_text.is_empty() {
            write!(f, ", after_join=none")?;
        } else {
            write!(f, ", after_join=[{}]", self.residual_text.join(", "))?;
        }
        if let Some(q) = &self.index_filter {
            write!(f, ", index_filter={q}")?;
        }
        if let Some(a) = &self.allowed
            && a.lookup.is_some()
        {
            write!(f, ", joined_rows=read by key as hits arrive")?;
        } else if let Some(a) = &self.allowed {
            write!(
                f,
                ", joined_keys={}{}",
                a.keys.len(),
                if a.keys.len() <= PUSHED_KEYS {
                    " (pushed)"
                } else {
                    ""
                }
            )?;
        }
        Ok(())
    }
}

/// The rows a search is expected to answer while its k is not known.
const K_ESTIMATE: usize = 100;

impl ExecutionPlan for VectorSearchExec {
    fn name(&self) -> &str {
        "VectorSearchExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        for c in &self.checks {
            if f(c)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    /// At most k rows (a guess of [`K_ESTIMATE`] while k is a parameter): a join puts a
    /// search on its build side, and the other table's scan then reads only the keys
    /// the search found (see `tables::RowScanExec`).
    fn partition_statistics(
        &self,
        _partition: Option<usize>,
    ) -> DfResult<Arc<datafusion::common::Statistics>> {
        let mut stats = datafusion::common::Statistics::new_unknown(&self.schema);
        stats.num_rows =
            datafusion::common::stats::Precision::Inexact(self.k.unwrap_or(K_ESTIMATE));
        Ok(Arc::new(stats))
    }

    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let (Some(query), Some(k)) = (self.query.clone(), self.k) else {
            return Err(
                Error::InvalidParameter("vector_search needs a query vector and k".into()).into(),
            );
        };
        // The joined keys, when few, go to the index with the other filters.
        let pushed = match (
            self.pushed.clone(),
            self.allowed.as_ref().and_then(|a| a.predicate(&self.def)),
        ) {
            (Some(p), Some(keys)) => Some(Predicate::And(vec![p, keys])),
            (p, keys) => p.or(keys),
        };
        let search = Search {
            def: self.def.clone(),
            vector: self.column,
            distance: search_distance(&self.def, self.column),
            shared: self.shared.clone(),
            query,
            k,
            pushed,
            allowed: self.allowed.clone(),
            checks: Checks::Plan {
                all: self.checks.clone(),
                pre: self.pre_checks.clone(),
            },
            row_scan: self.row_scan,
            full_schema: self.full_schema.clone(),
            params: self.params.clone(),
            notices: self.notices.clone(),
            query_norm2: Default::default(),
            pending: super::tables::pending_in(&context, &self.def.name),
            joined_pending: self
                .allowed
                .as_ref()
                .and_then(|a| a.lookup.as_ref())
                .and_then(|l| super::tables::pending_in(&context, &l.other.name)),
        };
        let cols = self.cols.clone();
        let fut = async move {
            let batch = search.run().await.map_err(DataFusionError::from)?;
            batch.project(&cols).map_err(DataFusionError::from)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(fut),
        )))
    }
}

/// How fetched rows are re-checked against the statement's WHERE clause.
pub(crate) enum Checks {
    /// The plan's filters, compiled: all of them, and those that do not read `distance`
    /// (applied before distances are computed).
    Plan {
        all: Vec<Arc<dyn PhysicalExpr>>,
        pre: Vec<Arc<dyn PhysicalExpr>>,
    },
    /// A direct path's conditions, on a row's own columns (never on `distance`).
    Rows(Box<dyn Fn(&Row) -> bool + Send + Sync>),
}

/// What a search through the index found.
enum Found {
    /// The answer.
    Rows(RecordBatch),
    /// The joined rows it looked up by key missed too often (see [`LOOKUPS`]): run again
    /// after [`Search::read_joined_keys`].
    ReadKeys,
    /// The index cannot rank the rest of the answer (a sparse index past the rows that
    /// share an element with the query): the exact scan answers.
    Exact,
}

/// One execution of a search: the index (or, when it is away, an exact scan of the
/// rows), the rows fetched by key and re-checked, distances recomputed exactly.
pub(crate) struct Search {
    pub def: Arc<TableDef>,
    /// The vector column searched.
    pub vector: usize,
    /// How its vectors are compared.
    pub distance: Distance,
    pub shared: Arc<Core>,
    pub query: Vec<f32>,
    pub k: usize,
    pub pushed: Option<Predicate>,
    /// Only rows of these keys are answered.
    pub allowed: Option<Arc<Allowed>>,
    pub checks: Checks,
    pub row_scan: bool,
    /// The table's columns and `distance`.
    pub full_schema: SchemaRef,
    pub params: SearchParams,
    pub notices: Notices,
    /// The session's open transaction block's changes to the table: its written rows
    /// are ranked with the index's hits, the rows it deleted or replaced are not
    /// answered from the store.
    pub pending: Option<Arc<crate::engine::tx::Pending>>,
    /// The same for the joined table whose rows are looked up by key (see [`Lookup`]).
    pub joined_pending: Option<Arc<crate::engine::tx::Pending>>,
    /// The query's squared norm, once a sparse row needs it.
    pub query_norm2: std::sync::OnceLock<f64>,
}

impl Search {
    /// Rows (with distance) into a batch of the full schema.
    fn batch(&self, rows: &[(Row, f64)]) -> Result<RecordBatch> {
        let def = &self.def;
        let mut arrays: Vec<Arc<dyn Array>> = (0..def.columns.len())
            .map(|c| crate::types::build_array(&def.columns[c].ty, rows.iter().map(|(r, _)| &r[c])))
            .collect();
        arrays.push(Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|(_, d)| *d),
        )));
        RecordBatch::try_new(self.full_schema.clone(), arrays).map_err(Error::internal)
    }

    /// Which of `rows` pass the checks; with `pre`, only those that do not read
    /// `distance` (whose value in `rows` is not computed yet).
    fn passing(&self, rows: &[(Row, f64)], pre: bool) -> Result<Vec<bool>> {
        let mut keep = self.checked(rows, pre)?;
        if let Some(a) = &self.allowed {
            for (slot, (row, _)) in keep.iter_mut().zip(rows) {
                *slot = *slot && a.admits(row);
            }
        }
        Ok(keep)
    }

    fn checked(&self, rows: &[(Row, f64)], pre: bool) -> Result<Vec<bool>> {
        match &self.checks {
            Checks::Plan {
                all,
                pre: pre_checks,
            } => {
                let batch = self.batch(rows)?;
                passing_with(if pre { pre_checks } else { all }, &batch)
            }
            Checks::Rows(check) => Ok(rows.iter().map(|(r, _)| check(r)).collect()),
        }
    }

    /// The exact distance of a row's vector from the query; vectors of another length
    /// (a column without a declared dimension) are an error, as in pgvector.
    fn measure(&self, v: &[f32]) -> Result<f64> {
        if v.len() != self.query.len() {
            return Err(Error::DataException(format!(
                "different vector dimensions {} and {}",
                v.len(),
                self.query.len()
            )));
        }
        Ok(self.distance.exact(&self.query, v))
    }

    /// The exact distance of a row's cell in the searched column: its vector, or its
    /// sparse vector (kept as text) measured against the query without making it dense;
    /// `None` for NULL.
    fn measure_cell(&self, cell: &Value) -> Result<Option<f64>> {
        match cell {
            Value::Vector(v) => self.measure(v).map(Some),
            Value::Text(t) if crate::types::sparse::looks_sparse(t) => {
                let s = crate::types::sparse::SparseVector::parse(t)?;
                let q = &self.query;
                if s.dim != q.len() {
                    return Err(Error::DataException(format!(
                        "different sparsevec dimensions {} and {}",
                        s.dim,
                        q.len()
                    )));
                }
                let q_norm2 = *self
                    .query_norm2
                    .get_or_init(|| q.iter().map(|x| (*x as f64) * (*x as f64)).sum());
                let dot = s.dot_dense(q);
                Ok(Some(match self.distance {
                    Distance::Dot => -dot,
                    Distance::Cosine => {
                        let r_norm2 = s.norm2();
                        if q_norm2 == 0.0 || r_norm2 == 0.0 {
                            1.0
                        } else {
                            1.0 - dot / (q_norm2.sqrt() * r_norm2.sqrt())
                        }
                    }
                    Distance::L2 => {
                        // |q|² less the query's squares where the row has elements, plus
                        // the squared differences there.
                        let mut sum = q_norm2;
                        for (i, x) in s.indices.iter().zip(&s.values) {
                            let y = q[*i as usize] as f64;
                            sum += (*x as f64 - y).powi(2) - y * y;
                        }
                        sum.max(0.0).sqrt()
                    }
                }))
            }
            _ => Ok(None),
        }
    }

    pub(crate) async fn run(mut self) -> Result<RecordBatch> {
        // A halfvec column is searched by a halfvec, as pgvector casts the query to the
        // column's type (for every way a search is made).
        if self.def.half_precision(self.vector) {
            self.query = crate::types::to_half(std::mem::take(&mut self.query))?;
        }
        if self.row_scan {
            self.read_joined_keys().await?;
            return self.scan_rows(None).await;
        }
        if self.shared.rebuilding(&self.def.name) {
            self.notices.push(format!(
                "the vector index of \"{}\" is being built again from its rows: vector_search was answered by an exact scan of the rows",
                self.def.name
            ));
            self.read_joined_keys().await?;
            return self.scan_rows(Some(self.shared.fallback_max_rows)).await;
        }
        if self.shared.health.searchable() {
            let mut found = self.index_search().await;
            if matches!(found, Ok(Found::ReadKeys)) {
                // The joined rows looked up missed too often: read their keys instead.
                self.read_joined_keys().await?;
                found = self.index_search().await;
            }
            match found {
                Err(e) if crate::engine::health::is_index_failure(&e) => {
                    self.shared.health.trip(&e)
                }
                Err(e) => return Err(e),
                Ok(Found::Rows(batch)) => return Ok(batch),
                Ok(Found::Exact) => {
                    self.read_joined_keys().await?;
                    return self.scan_rows(None).await;
                }
                Ok(Found::ReadKeys) => {
                    return Err(Error::internal("a search looked up keys it had read"));
                }
            }
        }
        // The index is away: answer from the rows, which are the source of truth.
        self.notices.push(format!(
            "the vector index is unavailable: vector_search on \"{}\" was answered by an exact scan of the rows",
            self.def.name
        ));
        self.read_joined_keys().await?;
        self.scan_rows(Some(self.shared.fallback_max_rows)).await
    }

    /// A search over a join whose joined rows were to be looked up by key reads every
    /// key that passes the joined table's conditions instead (what an exact scan, or a
    /// search whose lookups kept missing, checks its rows against).
    async fn read_joined_keys(&mut self) -> Result<()> {
        if let Some(a) = &self.allowed
            && let Some(lookup) = &a.lookup
        {
            self.allowed = Some(Arc::new(lookup.keys(&a.columns).await?));
        }
        Ok(())
    }

    /// The exact answer: every row is read, filtered first, and only then measured.
    /// With `max_rows`, a scan that would read more rows is refused (53000).
    async fn scan_rows(&self, max_rows: Option<usize>) -> Result<RecordBatch> {
        use futures::StreamExt;
        if self.allowed.as_ref().is_some_and(|a| a.none()) {
            return self.batch(&[]);
        }
        let mut best: Vec<(Row, f64)> = Vec::new();
        let mut read = 0usize;
        let mut stream =
            crate::engine::tx::scan(&self.shared, self.pending.clone(), &self.def, 2048, None);
        while let Some(rows) = stream.next().await {
            let rows = rows?;
            read += rows.len();
            if let Some(max) = max_rows
                && read > max
            {
                return Err(Error::InsufficientResources {
                    message: format!(
                        "the vector index is unavailable and an exact scan of \"{}\" would read more than {max} rows",
                        self.def.name
                    ),
                    hint: "retry when the index is back, or raise the proxy's fallback_max_rows setting".into(),
                });
            }
            // Filters run on the rows before any distance is computed (distance = 0 here
            // only keeps the batch shape; a filter on distance is re-checked below).
            let keep = self.passing(
                &rows.iter().map(|r| (r.clone(), 0.0)).collect::<Vec<_>>(),
                true,
            )?;
            for (row, k) in rows.into_iter().zip(keep) {
                if !k {
                    continue;
                }
                if let Some(d) = self.measure_cell(&row[self.vector])? {
                    best.push((row, d));
                }
            }
            if best.len() > 4 * self.k + 1024 {
                best.sort_by(|a, b| a.1.total_cmp(&b.1));
                best.truncate(2 * self.k + 512);
            }
        }
        best.sort_by(|a, b| a.1.total_cmp(&b.1));
        let keep = self.passing(&best, false)?;
        let mut out: Vec<(Row, f64)> = best
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .map(|(r, _)| r)
            .collect();
        out.truncate(self.k);
        self.batch(&out)
    }

    /// The search through the index (see [`Found`]).
    async fn index_search(&self) -> Result<Found> {
        if self.allowed.as_ref().is_some_and(|a| a.none()) {
            return self.batch(&[]).map(Found::Rows);
        }
        let lookup = self
            .allowed
            .as_ref()
            .and_then(|a| a.lookup.as_ref().map(|l| (l, &a.columns)));
        let mut known = std::collections::HashMap::new();
        // Points of expired rows are skipped in the index (the rows are gone anyway).
        let pushed = match (self.def.ttl_seconds(), &self.pushed) {
            (None, p) => p.clone(),
            (Some(_), p) => {
                let alive = Predicate::Compare {
                    column: crate::store::EXPIRES_FIELD.into(),
                    op: crate::store::filter::CmpOp::Gt,
                    value: crate::store::filter::Scalar::Int(crate::store::now_micros()),
                };
                Some(match p {
                    None => alive,
                    Some(p) => Predicate::And(vec![p.clone(), alive]),
                })
            }
        };
        // While the collection is rebuilt with new options, some of its segments are
        // still searched the old way: ask for an exact search until it has settled.
        let mut params = if self.shared.index.rebuilding(&self.def).await? {
            self.notices.push(format!(
                "the vector index of \"{}\" is being rebuilt with new options: vector_search was answered by an exact search until it is done",
                self.def.name
            ));
            SearchParams {
                exact: true,
                ..self.params.clone()
            }
        } else {
            self.params.clone()
        };
        // The block's own rows are measured exactly, each of them; the index's hits of
        // keys the block touched are not answered (the block's version is here already).
        let mut passed: Vec<(Row, f64)> = Vec::new();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        if let Some(p) = &self.pending {
            seen.extend(p.entries.keys().cloned());
            let mine: Vec<(Row, f64)> = p
                .rows()
                .filter_map(|row| {
                    self.measure_cell(&row[self.vector])
                        .transpose()
                        .map(|d| d.map(|d| (row.clone(), d)))
                })
                .collect::<Result<_>>()?;
            let mine = match lookup {
                Some((l, columns)) => {
                    l.admit(
                        &self.shared,
                        self.joined_pending.as_deref(),
                        columns,
                        mine,
                        &mut known,
                    )
                    .await?
                }
                None => mine,
            };
            if !mine.is_empty() {
                let keep = self.passing(&mine, false)?;
                passed.extend(
                    mine.into_iter()
                        .zip(keep)
                        .filter(|(_, k)| *k)
                        .map(|(c, _)| c),
                );
            }
        }
        let own = passed.len();
        let using = self.def.index_vector_name(self.vector);
        // A sparsevec column's index scores by the inner product (of normalised vectors
        // for cosine distance) and finds only the points that share a non-zero element
        // with the query: its hits are exact while they score above zero, and the rows
        // it cannot find rank after them.
        let sparse_query = if self.def.is_sparse(self.vector) {
            let q = crate::types::sparse::SparseVector::from_dense(&self.query)?;
            Some(if self.distance == Distance::Cosine {
                q.normalized()
            } else {
                q
            })
        } else {
            None
        };
        let vector = match &sparse_query {
            Some(q) => QueryVector::Sparse(q),
            None => QueryVector::Dense(&self.query),
        };
        let mut offset = 0usize;
        let mut fetch = self.k;
        let metrics = crate::metrics::global();
        loop {
            let started = std::time::Instant::now();
            let hits = self
                .shared
                .index
                .search(
                    &self.def,
                    &SearchQuery {
                        using: &using,
                        vector,
                        filter: pushed.as_ref(),
                        limit: fetch,
                        offset,
                        params: &params,
                    },
                )
                .await?;
            metrics.backend("vector index", "search", started.elapsed());
            let mut exhausted = hits.len() < fetch;
            if sparse_query.is_some() && hits.iter().any(|h| h.score <= 0.0) {
                // Past the rows that share an element with the query.
                exhausted = true;
            }
            let keys: Vec<Vec<Value>> = hits
                .into_iter()
                .filter(|h| sparse_query.is_none() || h.score > 0.0)
                .map(|h| h.key)
                .filter(|k| seen.insert(crate::store::keys::encode(k)))
                .collect();
            let started = std::time::Instant::now();
            let rows = self.shared.rows.get(&self.def, &keys).await?;
            metrics.backend("row store", "get", started.elapsed());
            let mut candidates = Vec::with_capacity(rows.len());
            for row in rows.into_iter().flatten() {
                if let Some(d) = self.measure_cell(&row[self.vector])? {
                    candidates.push((row, d));
                }
            }
            if let Some((l, columns)) = lookup {
                candidates = l
                    .admit(
                        &self.shared,
                        self.joined_pending.as_deref(),
                        columns,
                        candidates,
                        &mut known,
                    )
                    .await?;
            }
            if !candidates.is_empty() {
                let keep = self.passing(&candidates, false)?;
                passed.extend(
                    candidates
                        .into_iter()
                        .zip(keep)
                        .filter(|(_, k)| *k)
                        .map(|(c, _)| c),
                );
            }
            let found = passed.len() - own;
            if found >= self.k {
                break;
            }
            if known.len() > LOOKUPS {
                return Ok(Found::ReadKeys);
            }
            if exhausted && sparse_query.is_some() {
                // Fewer than k of the rows the sparse index can rank: the rest rank by
                // rows it does not find, which only the exact scan measures.
                return Ok(Found::Exact);
            }
            if exhausted {
                // A filter on json values has no payload index to plan by, and a graph
                // search with it can stop short of points that pass: an exact search
                // finds every one (the hits seen already are skipped).
                if params.exact || !pushed.as_ref().is_some_and(|p| p.reads_json()) {
                    break;
                }
                params.exact = true;
                offset = 0;
                fetch = self.k;
                continue;
            }
            offset += fetch;
            fetch = next_fetch(
                fetch,
                self.k - found,
                found,
                offset,
                self.shared.max_k.max(self.k) * 4,
            );
        }
        passed.sort_by(|a, b| a.1.total_cmp(&b.1));
        passed.truncate(self.k);
        self.batch(&passed).map(Found::Rows)
    }
}

/// How many hits the next page of a search asks the index for, when `passed` of the
/// `asked` so far passed the conditions the index could not check and `missing` rows
/// are still wanted: as many as the pass rate seen says it takes (a quarter more), and
/// at least twice the last page (`last`), four times when none passed; at most `cap`.
/// The index searches each page from the start (its graph search cannot resume), so a
/// filter that few hits pass costs one or two large pages, not many doubling ones.
fn next_fetch(last: usize, missing: usize, passed: usize, asked: usize, cap: usize) -> usize {
    let by_rate = match passed {
        0 => last.saturating_mul(4),
        _ => {
            missing
                .saturating_mul(asked)
                .div_ceil(passed)
                .saturating_mul(5)
                / 4
        }
    };
    by_rate.max(last.saturating_mul(2)).min(cap).max(1)
}

/// The distance a search of a vector column uses: its index's, or for a column the
/// index does not hold, the table's.
pub(crate) fn search_distance(def: &TableDef, column: usize) -> Distance {
    def.distance_of(column)
        .unwrap_or_else(|| def.default_distance())
}

/// Which rows of `batch` every one of `checks` holds true for (NULL is not true).
fn passing_with(checks: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<bool>> {
    let n = batch.num_rows();
    let mut keep = vec![true; n];
    for c in checks {
        let arr = c.evaluate(batch)?.into_array(n)?;
        let b = arr
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::internal("filter did not evaluate to boolean"))?;
        for (i, slot) in keep.iter_mut().enumerate() {
            *slot = *slot && b.is_valid(i) && b.value(i);
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::next_fetch;

    #[test]
    fn pages_grow_by_the_pass_rate_seen() {
        // 2 of the first 21 hits passed and 19 rows are missing: about 200 more hits
        // are needed at that rate (a quarter more asked), not the next doubling.
        assert_eq!(next_fetch(21, 19, 2, 21, 4096), 250);
        // Half passed: the doubling asks for more than the rate needs.
        assert_eq!(next_fetch(21, 11, 10, 21, 4096), 42);
        // None passed: four times the last page.
        assert_eq!(next_fetch(21, 21, 0, 21, 4096), 84);
        // Never past the cap, never nothing.
        assert_eq!(next_fetch(1000, 10, 1, 100_000, 4096), 4096);
        assert_eq!(next_fetch(0, 0, 0, 0, 4096), 1);
    }
}
