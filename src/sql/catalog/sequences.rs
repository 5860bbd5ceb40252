//! A sequence read as a relation (`SELECT last_value, is_called FROM seq`, what pg_dump
//! reads to write its `setval`) and the `pg_sequences` view. Values are taken from a
//! sequence's stored state in blocks of [`crate::engine::sequences::BLOCK`]: while the
//! last block taken is this proxy's, `last_value` is the last value it handed out, as in
//! Postgres; once another proxy took one after it, the last value reserved, as Postgres
//! shows the last value it cached for a sequence with `CACHE`.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::{Cell, build_rows, memory_exec};
use crate::engine::Core;
use crate::store::{SequenceDef, SequenceState};

/// The state of `def` a reader sees ([`Core::sequence_state`]).
async fn state(core: &Core, def: &SequenceDef) -> DfResult<Option<SequenceState>> {
    core.sequence_state(def)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))
}

/// A sequence as the one-row relation Postgres makes of it.
#[derive(Debug)]
pub struct SequenceRelation {
    def: Arc<SequenceDef>,
    core: Weak<Core>,
}

impl SequenceRelation {
    pub fn new(def: Arc<SequenceDef>, core: &Arc<Core>) -> SequenceRelation {
        SequenceRelation {
            def,
            core: Arc::downgrade(core),
        }
    }
}

#[async_trait]
impl TableProvider for SequenceRelation {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("last_value", DataType::Int64, false),
            Field::new("log_cnt", DataType::Int64, false),
            Field::new("is_called", DataType::Boolean, false),
        ]))
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let core = self
            .core
            .upgrade()
            .ok_or_else(|| DataFusionError::Execution("the server is shutting down".into()))?;
        // A sequence made and not yet written reads as Postgres' fresh one: its start.
        let now = state(&core, &self.def).await?.unwrap_or(SequenceState {
            last: self.def.start,
            called: false,
        });
        let schema = self.schema();
        let batch = build_rows(
            &schema,
            1,
            |c, _| match c {
                "last_value" => Some(Cell::Int(now.last)),
                "log_cnt" => Some(Cell::Int(0)),
                "is_called" => Some(Cell::Bool(now.called)),
                _ => None,
            },
            None,
        )?;
        memory_exec(schema, vec![batch], projection)
    }
}

/// `pg_sequences`: one row per sequence, as Postgres' view has them.
#[derive(Debug)]
pub(super) struct PgSequences {
    pub(super) shared: Weak<Core>,
}

#[async_trait]
impl TableProvider for PgSequences {
    fn schema(&self) -> SchemaRef {
        let text = |n: &str| Field::new(n, DataType::Utf8, true);
        let int = |n: &str| Field::new(n, DataType::Int64, true);
        Arc::new(Schema::new(vec![
            text("schemaname"),
            text("sequencename"),
            text("sequenceowner"),
            text("data_type"),
            int("start_value"),
            int("min_value"),
            int("max_value"),
            int("increment_by"),
            Field::new("cycle", DataType::Boolean, true),
            int("cache_size"),
            int("last_value"),
        ]))
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut seqs = Vec::new();
        if let Some(core) = self.shared.upgrade() {
            let mut defs = core.sequence_defs();
            defs.sort_by(|a, b| a.name.cmp(&b.name));
            for def in defs {
                let now = state(&core, &def).await?;
                seqs.push((def, now));
            }
        }
        let schema = self.schema();
        let batch = build_rows(
            &schema,
            seqs.len(),
            |c, r| {
                let (s, now) = &seqs[r];
                Some(match c {
                    "schemaname" => Cell::Text(s.schema().to_string()),
                    "sequencename" => Cell::Text(s.relname().to_string()),
                    "sequenceowner" => Cell::Text("postgres".into()),
                    "data_type" => Cell::Text(s.ty.sql_name()),
                    "start_value" => Cell::Int(s.start),
                    "min_value" => Cell::Int(s.min),
                    "max_value" => Cell::Int(s.max),
                    "increment_by" => Cell::Int(s.increment),
                    "cycle" => Cell::Bool(s.cycle),
                    "cache_size" => Cell::Int(1),
                    // NULL until a value is taken, as in Postgres.
                    "last_value" => match now {
                        Some(st) if st.called => Cell::Int(st.last),
                        _ => return None,
                    },
                    _ => return None,
                })
            },
            None,
        )?;
        memory_exec(schema, vec![batch], projection)
    }
}
