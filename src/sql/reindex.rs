//! `SELECT * FROM vectorgate_reindex('table' [, 'verify'])`: compare a table's vector
//! index with its rows and repair it (or, with `'verify'`, only report), while traffic
//! continues. One result row: what was found; see [`crate::engine::sync::reindex`].

use std::fmt;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{BooleanArray, Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};

use super::tables::single_partition_props;
use super::vector_search::eval_const;
use crate::engine::Core;
use crate::error::{Error, Result};
use crate::store::TableDef;
use crate::types::Value;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("points", DataType::Int64, false),
        Field::new("missing", DataType::Int64, false),
        Field::new("stale", DataType::Int64, false),
        Field::new("orphaned", DataType::Int64, false),
        Field::new("duplicates", DataType::Int64, false),
        Field::new("repaired", DataType::Boolean, false),
        Field::new("seconds", DataType::Float64, false),
    ]))
}

#[derive(Debug)]
pub struct ReindexFunction {
    pub shared: Weak<Core>,
}

impl TableFunctionImpl for ReindexFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| Error::internal("engine is shutting down"))?;
        let exprs = args.exprs();
        // A parameter ($1) is known only once bound: Describe plans with the schema alone.
        let text = |i: usize| -> Result<Option<String>> {
            match exprs.get(i) {
                None => Ok(None),
                Some(Expr::Placeholder(_)) => Ok(Some(String::new())),
                Some(e) => match eval_const(args.session(), e)? {
                    Some(Value::Text(s)) => Ok(Some(s)),
                    _ => Err(Error::InvalidParameter(
                        "vectorgate_reindex takes a table name and optionally 'verify' or 'repair'"
                            .into(),
                    )),
                },
            }
        };
        if exprs.is_empty() || exprs.len() > 2 {
            return Err(Error::UndefinedFunction(
                "function vectorgate_reindex takes (table [, 'verify' | 'repair'])".into(),
            )
            .into());
        }
        let table = text(0)?.unwrap_or_default();
        let repair = match text(1)?.as_deref() {
            None | Some("repair") | Some("") => true,
            Some("verify") => false,
            Some(other) => {
                return Err(Error::InvalidParameter(format!(
                    "unknown mode \"{other}\": use 'verify' or 'repair'"
                ))
                .into());
            }
        };
        let read_only = args
            .session()
            .config()
            .get_extension::<super::vector_search::SearchSettings>()
            .is_some_and(|s| s.read_only);
        if repair && read_only {
            return Err(Error::ReadOnly(
                "cannot repair an index in a read-only transaction (use 'verify')".into(),
            )
            .into());
        }
        let def = match table.as_str() {
            "" => None,
            name => Some(shared.table(name)?),
        };
        Ok(Arc::new(ReindexTable {
            shared,
            def,
            repair,
        }))
    }
}

#[derive(Debug)]
struct ReindexTable {
    shared: Arc<Core>,
    /// `None` while a parameter names the table (Describe only).
    def: Option<Arc<TableDef>>,
    repair: bool,
}

#[async_trait]
impl TableProvider for ReindexTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let def = self.def.clone().ok_or_else(|| {
            Error::InvalidParameter("vectorgate_reindex needs the table name".into())
        })?;
        let full = schema();
        let cols: Vec<usize> = projection
            .cloned()
            .unwrap_or_else(|| (0..full.fields().len()).collect());
        let out = Arc::new(full.project(&cols)?);
        Ok(Arc::new(ReindexExec {
            shared: self.shared.clone(),
            def,
            repair: self.repair,
            cols,
            props: Arc::new(single_partition_props(&out)),
            schema: out,
        }))
    }
}

struct ReindexExec {
    shared: Arc<Core>,
    def: Arc<TableDef>,
    repair: bool,
    cols: Vec<usize>,
    schema: SchemaRef,
    props: Arc<PlanProperties>,
}

impl fmt::Debug for ReindexExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        DisplayAs::fmt_as(self, DisplayFormatType::Default, f)
    }
}

impl DisplayAs for ReindexExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let mode = if self.repair { "repair" } else { "verify" };
        write!(f, "ReindexExec: table={}, mode={mode}", self.def.name)
    }
}

impl ExecutionPlan for ReindexExec {
    fn name(&self) -> &str {
        "ReindexExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> DfResult<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let (shared, def, repair, cols) = (
            self.shared.clone(),
            self.def.clone(),
            self.repair,
            self.cols.clone(),
        );
        let fut = async move {
            let started = std::time::Instant::now();
            let mut last_log = started;
            let r = crate::engine::sync::reindex(
                shared.rows.as_ref(),
                shared.index.as_ref(),
                &def,
                repair,
                &mut |r| {
                    if last_log.elapsed() >= std::time::Duration::from_secs(2) {
                        last_log = std::time::Instant::now();
                        tracing::info!(table = %def.name, rows = r.rows, points = r.points, missing = r.missing, stale = r.stale, orphaned = r.orphaned, "reindex in progress");
                    }
                },
            )
            .await?;
            tracing::info!(table = %def.name, ?r, "reindex done");
            let batch = RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(StringArray::from(vec![def.name.clone()])),
                    Arc::new(Int64Array::from(vec![r.rows as i64])),
                    Arc::new(Int64Array::from(vec![r.points as i64])),
                    Arc::new(Int64Array::from(vec![r.missing as i64])),
                    Arc::new(Int64Array::from(vec![r.stale as i64])),
                    Arc::new(Int64Array::from(vec![r.orphaned as i64])),
                    Arc::new(Int64Array::from(vec![r.duplicates as i64])),
                    Arc::new(BooleanArray::from(vec![r.repaired])),
                    Arc::new(Float64Array::from(vec![started.elapsed().as_secs_f64()])),
                ],
            )
            .map_err(Error::internal)?;
            batch.project(&cols).map_err(DataFusionError::from)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(fut),
        )))
    }
}
