//! DataFusion's view of the engine's tables: the `public` schema lists the proxy's tables, each
//! a [`RowTable`] that scans the row store (full scan, or key lookups when the WHERE
//! clause pins the primary key).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Constraint, Constraints, ScalarValue};
use datafusion::common::{Statistics, config::ConfigOptions};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType, expr::InList,
};
use datafusion::physical_expr::expressions::{
    Column, DynamicFilterPhysicalExpr, InListExpr, Literal,
};
use datafusion::physical_expr::{
    EquivalenceProperties, PhysicalExpr, ScalarFunctionExpr, split_conjunction,
};
use datafusion::physical_expr_common::physical_expr::snapshot_physical_expr;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::engine::Core;
use crate::error::{Error, Result};
use crate::store::{Row, TableDef};
use crate::types::{Value, build_array, coerce, value_from_array};

/// The Arrow schema of a table.
pub fn table_schema(def: &TableDef) -> SchemaRef {
    Arc::new(Schema::new(
        def.columns
            .iter()
            .map(|c| c.arrow_field(c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// Build a record batch of `schema` from rows; `cols[i]` is the row position of the
/// schema's i-th field.
pub fn rows_to_batch(
    def: &TableDef,
    schema: &SchemaRef,
    cols: &[usize],
    rows: &[&Row],
) -> Result<RecordBatch> {
    let arrays = cols
        .iter()
        .map(|&c| build_array(&def.columns[c].ty, rows.iter().map(|r| &r[c])))
        .collect::<Vec<_>>();
    RecordBatch::try_new_with_options(
        schema.clone(),
        arrays,
        &datafusion::arrow::record_batch::RecordBatchOptions::new()
            .with_row_count(Some(rows.len())),
    )
    .map_err(Error::internal)
}

/// The engine's database as DataFusion sees it: the schemas registered in `inner`
/// (`public`, `pg_catalog`, `information_schema`) and those CREATE SCHEMA made.
#[derive(Debug)]
pub struct Database {
    pub inner: Arc<dyn CatalogProvider>,
    pub shared: std::sync::Weak<Core>,
}

impl CatalogProvider for Database {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.inner.schema_names();
        if let Some(shared) = self.shared.upgrade() {
            for s in shared.schema_names() {
                if !names.contains(&s) {
                    names.push(s);
                }
            }
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.inner.schema(name).or_else(|| {
            self.shared
                .upgrade()
                .filter(|s| s.has_schema(name))
                .map(|_| {
                    Arc::new(Tables {
                        shared: self.shared.clone(),
                        schema: name.to_string(),
                        system: System::default(),
                    }) as Arc<dyn SchemaProvider>
                })
        })
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        self.inner.register_schema(name, schema)
    }

    fn deregister_schema(
        &self,
        name: &str,
        cascade: bool,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        self.inner.deregister_schema(name, cascade)
    }
}

/// The tables of one schema.
#[derive(Debug)]
pub struct Tables {
    pub shared: std::sync::Weak<Core>,
    pub schema: String,
    /// `pg_catalog`, once registered: `public` finds the views in [`BY_PUBLIC`] there.
    pub system: System,
}

/// A schema registered after the one that refers to it.
pub type System = Arc<std::sync::OnceLock<Arc<dyn SchemaProvider>>>;

/// `pg_catalog` tables found by their bare names, which the SQL front end does not
/// qualify with `pg_catalog.` itself: those the emulation lacks.
const BY_PUBLIC: [&str; 6] = super::catalog::OWN_TABLES;

#[async_trait]
impl SchemaProvider for Tables {
    fn table_names(&self) -> Vec<String> {
        let Some(shared) = self.shared.upgrade() else {
            return vec![];
        };
        let mut names: Vec<String> = shared
            .tables()
            .iter()
            .filter(|d| d.schema() == self.schema)
            .map(|d| d.relname().to_string())
            .collect();
        names.sort();
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(None);
        };
        let key = crate::store::qualified(&self.schema, name);
        // Not among the catalog names the SQL front end qualifies with `pg_catalog.`.
        if self.schema == "public"
            && !shared.has_table(name)
            && BY_PUBLIC.contains(&name)
            && let Some(system) = self.system.get()
        {
            return system.table(name).await;
        }
        if let Ok(def) = shared.table(&key) {
            return Ok(Some(Arc::new(RowTable::new(def, shared.clone()))));
        }
        // A sequence reads as its one-row relation (`SELECT last_value FROM seq`).
        if shared.has_sequence(&key)
            && let Ok(def) = shared.sequence(&key).await
        {
            return Ok(Some(Arc::new(
                super::catalog::sequences::SequenceRelation::new(def, &shared),
            )));
        }
        Ok(None)
    }

    fn table_exist(&self, name: &str) -> bool {
        (self.schema == "public" && BY_PUBLIC.contains(&name))
            || self.shared.upgrade().is_some_and(|s| {
                let key = crate::store::qualified(&self.schema, name);
                s.has_table(&key) || s.has_sequence(&key)
            })
    }
}

#[derive(Debug)]
pub struct RowTable {
    def: Arc<TableDef>,
    schema: SchemaRef,
    constraints: Constraints,
    shared: Arc<Core>,
}

impl RowTable {
    pub fn def(&self) -> &Arc<TableDef> {
        &self.def
    }

    pub fn new(def: Arc<TableDef>, shared: Arc<Core>) -> RowTable {
        let schema = table_schema(&def);
        let constraints =
            Constraints::new_unverified(vec![Constraint::PrimaryKey(def.primary_key.clone())]);
        RowTable {
            def,
            schema,
            constraints,
            shared,
        }
    }

    /// The values a filter `c = v` or `c IN (...)` pins a key column to: the column's
    /// position in the primary key, and the values.
    fn key_column_values(&self, e: &Expr) -> Option<(usize, Vec<Value>)> {
        let position = |e: &Expr| match e {
            Expr::Column(c) => self
                .def
                .primary_key
                .iter()
                .position(|&k| self.def.columns[k].name == c.name),
            _ => None,
        };
        let lit = |i: usize, e: &Expr| -> Option<Value> {
            let ty = &self.def.columns[self.def.primary_key[i]].ty;
            match e {
                Expr::Literal(v, _) => scalar_to_value(v).and_then(|v| coerce(v, ty).ok()),
                _ => None,
            }
        };
        match e {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => {
                if let Some(i) = position(left) {
                    lit(i, right).map(|v| (i, vec![v]))
                } else if let Some(i) = position(right) {
                    lit(i, left).map(|v| (i, vec![v]))
                } else {
                    None
                }
            }
            Expr::InList(InList {
                expr,
                list,
                negated: false,
            }) => {
                let i = position(expr)?;
                list.iter()
                    .map(|e| lit(i, e))
                    .collect::<Option<Vec<Value>>>()
                    .map(|v| (i, v))
            }
            // A short IN list, as the optimizer writes it: `c = a OR c = b`.
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Or,
                right,
            }) => {
                let (i, mut values) = self.key_column_values(left)?;
                let (j, more) = self.key_column_values(right)?;
                if i != j {
                    return None;
                }
                values.extend(more);
                Some((i, values))
            }
            _ => None,
        }
    }

    /// The keys `filters` pin every primary key column to (their combinations, at most
    /// [`MAX_KEY_LOOKUPS`]), if they do.
    fn key_lookups(&self, filters: &[Expr]) -> Option<Vec<Vec<Value>>> {
        let n = self.def.primary_key.len();
        if n == 0 {
            return None;
        }
        // Per key column, the values every filter on it allows.
        let mut allowed: Vec<Option<Vec<Value>>> = vec![None; n];
        for f in filters {
            if let Some((i, values)) = self.key_column_values(f) {
                allowed[i] = Some(match allowed[i].take() {
                    None => values,
                    Some(prev) => prev.into_iter().filter(|x| values.contains(x)).collect(),
                });
            }
        }
        let mut keys: Vec<Vec<Value>> = vec![vec![]];
        for values in allowed {
            let mut values = values?;
            let mut seen = std::collections::HashSet::new();
            values.retain(|v| seen.insert(crate::sql::params::literal(v)));
            if keys.len().saturating_mul(values.len()) > MAX_KEY_LOOKUPS {
                return None;
            }
            keys = keys
                .iter()
                .flat_map(|k| {
                    values.iter().map(move |v| {
                        let mut k = k.clone();
                        k.push(v.clone());
                        k
                    })
                })
                .collect();
        }
        Some(keys)
    }
}

/// More keys than this are read by a scan instead.
const MAX_KEY_LOOKUPS: usize = 4096;

pub fn scalar_to_value(v: &ScalarValue) -> Option<Value> {
    let arr = v.to_array().ok()?;
    value_from_array(&arr, 0).ok()
}

#[async_trait]
impl TableProvider for RowTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.key_column_values(f).is_some() {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let cols: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..self.def.columns.len()).collect());
        let schema = Arc::new(self.schema.project(&cols)?);
        let mode = match self.key_lookups(filters) {
            Some(k) => ScanMode::Keys(k),
            None if filters.is_empty() => ScanMode::Full(limit),
            None => ScanMode::Full(None),
        };
        Ok(Arc::new(RowScanExec::new(
            self.def.clone(),
            self.shared.clone(),
            schema,
            cols,
            mode,
        )))
    }
}

#[derive(Debug, Clone)]
enum ScanMode {
    Full(Option<usize>),
    Keys(Vec<Vec<Value>>),
}

#[derive(Debug, Clone)]
pub struct RowScanExec {
    def: Arc<TableDef>,
    shared: Arc<Core>,
    schema: SchemaRef,
    cols: Vec<usize>,
    mode: ScanMode,
    props: Arc<PlanProperties>,
    /// Filters a join hands down for the time it runs (a hash join's build-side keys,
    /// known once that side is read): a full scan that finds the whole primary key
    /// pinned in them reads those keys instead.
    runtime: Vec<Arc<dyn PhysicalExpr>>,
    /// Rows read (EXPLAIN ANALYZE's `output_rows`).
    metrics: ExecutionPlanMetricsSet,
}

impl RowScanExec {
    fn new(
        def: Arc<TableDef>,
        shared: Arc<Core>,
        schema: SchemaRef,
        cols: Vec<usize>,
        mode: ScanMode,
    ) -> Self {
        let props = Arc::new(single_partition_props(&schema));
        RowScanExec {
            def,
            shared,
            schema,
            cols,
            mode,
            props,
            runtime: Vec::new(),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The keys a run-time filter pins, read when the scan starts: an `IN` list of the
    /// primary key (one column, or `struct(...)` of all of them in any order), as a
    /// hash join writes its build side's keys.
    fn runtime_keys(&self) -> Option<Vec<Vec<Value>>> {
        self.runtime.iter().find_map(|f| {
            let now = snapshot_physical_expr(f.clone()).ok()?;
            split_conjunction(&now)
                .into_iter()
                .find_map(|part| self.keys_listed(part))
        })
    }

    fn keys_listed(&self, e: &Arc<dyn PhysicalExpr>) -> Option<Vec<Vec<Value>>> {
        let list = e.downcast_ref::<InListExpr>()?;
        if list.negated() || list.list().len() > MAX_KEY_LOOKUPS {
            return None;
        }
        let columns: Vec<&Column> = match list.expr().downcast_ref::<Column>() {
            Some(c) => vec![c],
            None => {
                let f = list.expr().downcast_ref::<ScalarFunctionExpr>()?;
                if f.name() != "struct" {
                    return None;
                }
                f.args()
                    .iter()
                    .map(|a| a.downcast_ref::<Column>())
                    .collect::<Option<_>>()?
            }
        };
        // Each listed column's place in the primary key; together, all of it.
        let pk = &self.def.primary_key;
        let places: Vec<usize> = columns
            .iter()
            .map(|c| {
                let name = self.schema.fields().get(c.index())?.name();
                pk.iter().position(|&k| self.def.columns[k].name == *name)
            })
            .collect::<Option<_>>()?;
        if places.len() != pk.len() || (0..pk.len()).any(|i| !places.contains(&i)) {
            return None;
        }
        let mut seen = std::collections::HashSet::new();
        let mut keys = Vec::with_capacity(list.list().len());
        for item in list.list() {
            let lit = item.downcast_ref::<Literal>()?.value();
            let parts: Vec<ScalarValue> = if places.len() == 1 {
                vec![lit.clone()]
            } else {
                let ScalarValue::Struct(s) = lit else {
                    return None;
                };
                (0..s.num_columns())
                    .map(|i| ScalarValue::try_from_array(s.column(i), 0).ok())
                    .collect::<Option<_>>()?
            };
            if parts.len() != places.len() {
                return None;
            }
            let mut key = vec![Value::Null; pk.len()];
            for (part, &place) in parts.iter().zip(&places) {
                let ty = &self.def.columns[pk[place]].ty;
                key[place] = coerce(scalar_to_value(part)?, ty).ok()?;
            }
            // NULL equals nothing: such a key joins no row.
            if key.iter().any(|v| matches!(v, Value::Null)) {
                continue;
            }
            if seen.insert(crate::store::keys::encode(&key)) {
                keys.push(key);
            }
        }
        Some(keys)
    }

    /// The scan's batches: the rows of `keys`, or all rows (at most `limit`).
    fn batches(
        &self,
        keys: Option<Vec<Vec<Value>>>,
        limit: Option<usize>,
        context: &TaskContext,
    ) -> BoxStream<'static, DfResult<RecordBatch>> {
        let def = self.def.clone();
        let schema = self.schema.clone();
        let cols = self.cols.clone();
        // The session's open transaction block, whose writes it sees.
        let pending = pending_in(context, &def.name);
        match keys {
            Some(keys) => {
                let shared = self.shared.clone();
                let fut = async move {
                    let rows =
                        crate::engine::tx::get(&shared, pending.as_deref(), &def, &keys).await?;
                    let found: Vec<&Row> = rows.iter().flatten().collect();
                    rows_to_batch(&def, &schema, &cols, &found).map_err(DataFusionError::from)
                };
                futures::stream::once(fut).boxed()
            }
            None => crate::engine::tx::scan(&self.shared, pending, &def, 2048, limit)
                .map(move |batch| {
                    let batch = batch?;
                    let refs: Vec<&Row> = batch.iter().collect();
                    rows_to_batch(&def, &schema, &cols, &refs).map_err(DataFusionError::from)
                })
                .boxed(),
        }
    }
}

/// The changes of the session's open transaction block to a table, as a query context
/// carries them.
pub fn pending_in(context: &TaskContext, table: &str) -> Option<Arc<crate::engine::tx::Pending>> {
    context
        .session_config()
        .get_extension::<crate::engine::tx::TxSlot>()?
        .pending(table)
}

pub fn single_partition_props(schema: &SchemaRef) -> PlanProperties {
    PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(1),
        EmissionType::Incremental,
        Boundedness::Bounded,
    )
}

impl DisplayAs for RowScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.mode {
            ScanMode::Full(limit) => {
                write!(f, "RowStoreScan: table={}, full scan", self.def.name)?;
                if let Some(l) = limit {
                    write!(f, ", limit={l}")?;
                }
                if !self.runtime.is_empty() {
                    write!(f, ", or by key when a run-time filter lists the keys")?;
                }
                Ok(())
            }
            ScanMode::Keys(k) => write!(
                f,
                "RowStoreScan: table={}, key lookups={}",
                self.def.name,
                k.len()
            ),
        }
    }
}

impl ExecutionPlan for RowScanExec {
    fn name(&self) -> &str {
        "RowScanExec"
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
        // A join computes its run-time filter only when a node below it shows it.
        for e in &self.runtime {
            if f(e)? == TreeNodeRecursion::Stop {
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

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let read = BaselineMetrics::new(&self.metrics, partition);
        let stream = match &self.mode {
            ScanMode::Keys(keys) => self.batches(Some(keys.clone()), None, &context),
            ScanMode::Full(limit) if self.runtime.is_empty() => {
                self.batches(None, *limit, &context)
            }
            // Run-time filters are complete when the stream is first polled: a hash
            // join reads its build side before it polls this, its probe side.
            ScanMode::Full(limit) => {
                let (this, limit) = (self.clone(), *limit);
                futures::stream::once(
                    async move { this.batches(this.runtime_keys(), limit, &context) },
                )
                .flatten()
                .boxed()
            }
        };
        let stream = stream.inspect(move |b| {
            if let Ok(b) = b {
                read.record_output(b.num_rows());
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn partition_statistics(&self, _partition: Option<usize>) -> DfResult<Arc<Statistics>> {
        let mut stats = Statistics::new_unknown(&self.schema);
        if let ScanMode::Keys(k) = &self.mode {
            stats.num_rows = Precision::Inexact(k.len());
        }
        Ok(Arc::new(stats))
    }

    /// Made ready to run again: the join that handed down the run-time filters makes new
    /// ones (when the filter pushdown runs over the plan again), and these would still
    /// pin the keys of the last run.
    fn reset_state(self: Arc<Self>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut node = self.as_ref().clone();
        node.runtime.clear();
        node.metrics = ExecutionPlanMetricsSet::new();
        Ok(Arc::new(node))
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> DfResult<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let filters: Vec<Arc<dyn PhysicalExpr>> = child_pushdown_result
            .parent_filters
            .into_iter()
            .map(|f| f.filter)
            .collect();
        // Each filter is still applied above: the keys only narrow what is read.
        let propagation = FilterPushdownPropagation::with_parent_pushdown_result(vec![
                PushedDown::No;
                filters.len()
            ]);
        let dynamic = |f: &Arc<dyn PhysicalExpr>| {
            f.exists(|e| Ok(e.downcast_ref::<DynamicFilterPhysicalExpr>().is_some()))
                .unwrap_or(false)
        };
        let runtime: Vec<_> = filters.into_iter().filter(dynamic).collect();
        if phase != FilterPushdownPhase::Post
            || runtime.is_empty()
            || !matches!(self.mode, ScanMode::Full(_))
        {
            return Ok(propagation);
        }
        let mut node = self.clone();
        node.runtime.extend(runtime);
        Ok(propagation.with_updated_node(Arc::new(node)))
    }
}
