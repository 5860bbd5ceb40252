//! A plan cache for the prepared statement that matters most: a search whose only input
//! that changes from one execution to the next is the query vector.
//!
//! The general path binds every parameter into the statement as a literal and plans it
//! in full through DataFusion: a 384-float literal written out and parsed back, then SQL
//! to logical plan, optimiser, physical plan; several tenths of a millisecond per search,
//! more than the index search itself at 10K rows. For a prepared
//! `SELECT ... FROM vector_search('t', $1, k) [WHERE ...] [ORDER BY ...] [LIMIT ...]`
//! the first execution plans in full and keeps the physical plan; later executions with
//! the same other parameters and session settings swap the new query vector into the
//! plan's one `VectorSearchExec` and run it. Nothing else in such a plan depends on the
//! vector (the shape admits no function calls, subqueries or joins, so nothing was
//! folded from the clock or from other tables at planning time), so the rows are the
//! ones the general path returns; tests compare the two.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, SetExpr, Statement, TableFactor,
    visit_expressions,
};
use parking_lot::Mutex;

use super::params::placeholder_index;
use super::vector_search::VectorSearchExec;
use crate::error::Result;
use crate::store::TableDef;

/// A prepared search the cache can serve: `$vector_param` (1-based) is the query vector
/// of its one `vector_search` and appears nowhere else.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchShape {
    pub vector_param: usize,
}

/// Physical operators a cached plan may hold: none was planned from anything but the
/// statement, and none keeps state between executions once [`with_query`] has reset it.
/// (A `LIMIT` under `ORDER BY` is a TopK sort, whose dynamic filter carries the last
/// execution's threshold until reset; no operator below it takes that filter over, as
/// `VectorSearchExec` accepts no pushed filter and a `FilterExec` takes one over only
/// before the filters are dynamic.)
const CACHEABLE: [&str; 12] = [
    "VectorSearchExec",
    "ProjectionExec",
    "FilterExec",
    "SortExec",
    "SortExec(TopK)",
    "GlobalLimitExec",
    "LocalLimitExec",
    "CoalesceBatchesExec",
    "CoalescePartitionsExec",
    "SortPreservingMergeExec",
    "RepartitionExec",
    "CooperativeExec",
];

/// Functions whose value depends on their arguments only (`'t' = ANY(tags)` arrives
/// here as `array_contains`); any other call keeps a statement off the cache.
const PURE_FUNCTIONS: [&str; 23] = [
    "array_has",
    "array_contains",
    "array_has_any",
    "array_has_all",
    "cardinality",
    "array_length",
    "lower",
    "upper",
    "abs",
    "coalesce",
    "nullif",
    "length",
    "char_length",
    "substr",
    "substring",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "concat",
    "round",
    "floor",
    "ceil",
];

/// The statement's search shape, if it has one.
pub fn search_shape(stmt: &Statement) -> Option<SearchShape> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    if q.with.is_some() {
        return None;
    }
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    let [from] = sel.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table {
        name,
        args: Some(args),
        ..
    } = &from.relation
    else {
        return None;
    };
    let is_search = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case("vector_search"));
    if !is_search || args.args.len() != 3 {
        return None;
    }
    // `$1`, or `$1::vector` / `$1::real[]`.
    let vector_param = match &args.args[1] {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Cast { expr, .. })) => {
            placeholder_index(expr)?
        }
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => placeholder_index(e)?,
        _ => return None,
    };
    // Everything else: no function calls (the clock, settings, random), no subqueries,
    // and the vector parameter used once only.
    let mut uses = 0;
    let mut plain = true;
    let _ = visit_expressions(stmt, |e| {
        match e {
            SqlExpr::Function(f)
                if !f.name.0.last().and_then(|p| p.as_ident()).is_some_and(|i| {
                    PURE_FUNCTIONS.contains(&i.value.to_ascii_lowercase().as_str())
                }) =>
            {
                plain = false
            }
            SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. } => {
                plain = false
            }
            e if placeholder_index(e) == Some(vector_param) => uses += 1,
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    (plain && uses == 1).then_some(SearchShape { vector_param })
}

/// The plan a prepared statement last ran with, and what it was planned for.
#[derive(Default)]
pub struct PlanCache(Mutex<Option<Cached>>);

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanCache")
    }
}

struct Cached {
    /// The session settings and the other parameters' values it was planned with.
    key: String,
    def: Arc<TableDef>,
    plan: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
}

impl PlanCache {
    /// The cached plan for `key`, if `current` still describes its table.
    pub(crate) fn get(
        &self,
        key: &str,
        current: impl Fn(&str) -> Option<Arc<TableDef>>,
    ) -> Option<(Arc<TableDef>, Arc<dyn ExecutionPlan>, SchemaRef)> {
        let guard = self.0.lock();
        let c = guard.as_ref().filter(|c| c.key == key)?;
        let now = current(&c.def.name)?;
        (Arc::ptr_eq(&now, &c.def) || *now == *c.def)
            .then(|| (c.def.clone(), c.plan.clone(), c.schema.clone()))
    }

    /// Keep `plan` if it is a plain search plan.
    pub(crate) fn put(&self, key: String, plan: &Arc<dyn ExecutionPlan>, schema: SchemaRef) {
        let mut searches = Vec::new();
        let mut other = false;
        let _ = plan.apply(|node| {
            if let Some(s) = node.downcast_ref::<VectorSearchExec>() {
                searches.push(s.def().clone());
            } else if !CACHEABLE.contains(&node.name()) {
                other = true;
            }
            Ok(TreeNodeRecursion::Continue)
        });
        let mut guard = self.0.lock();
        *guard = match (other, searches.as_slice()) {
            (false, [def]) => Some(Cached {
                key,
                def: def.clone(),
                plan: plan.clone(),
                schema,
            }),
            _ => None,
        };
    }
}

/// `plan` with `query` as the vector of its search, every operator above rebuilt with
/// its state reset (a TopK sort's dynamic filter starts afresh).
pub(crate) fn with_query(
    plan: Arc<dyn ExecutionPlan>,
    query: Vec<f32>,
) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_up(|node| {
            let node = match node.downcast_ref::<VectorSearchExec>() {
                Some(s) => Arc::new(s.with_query(query.clone())?) as Arc<dyn ExecutionPlan>,
                None => node.reset_state()?,
            };
            Ok(Transformed::yes(node))
        })?
        .data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn shape(sql: &str) -> Option<SearchShape> {
        let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap_or_default();
        stmts.first().and_then(search_shape)
    }

    #[test]
    fn plain_searches_have_the_shape() {
        let s = Some(SearchShape { vector_param: 1 });
        assert_eq!(
            shape("SELECT id, distance FROM vector_search('t', $1, 10)"),
            s
        );
        assert_eq!(
            shape(
                "SELECT * FROM vector_search('t', $1, 5) AS v WHERE cat = $2 AND x IN (1, 2) ORDER BY distance LIMIT 3"
            ),
            s
        );
        assert_eq!(
            shape("SELECT id FROM vector_search('t', $1, 5) WHERE array_has(tags, 'x')"),
            s
        );
        assert_eq!(
            shape("SELECT id FROM vector_search('t', $1, 5) WHERE 't2' = ANY(tags)"),
            s
        );
        assert_eq!(
            shape(
                "SELECT id FROM vector_search('t', $1::real[], 5) WHERE array_contains(tags, 'x')"
            ),
            s
        );
        assert_eq!(
            shape("SELECT id FROM vector_search('t', $2, $1) WHERE cat < 10"),
            Some(SearchShape { vector_param: 2 })
        );
    }

    #[test]
    fn anything_planned_from_more_than_the_statement_has_not() {
        for sql in [
            "SELECT id FROM vector_search('t', $1, 10) WHERE ts < now()",
            "SELECT id FROM vector_search('t', $1, 10) WHERE lower(t) < lower(now()::text)",
            "SELECT random(), id FROM vector_search('t', $1, 10)",
            "SELECT id FROM vector_search('t', $1, 10) WHERE id IN (SELECT id FROM u)",
            "SELECT id FROM vector_search('t', $1, 10) JOIN u USING (id)",
            "SELECT id FROM vector_search('t', '[1,2]', 10)",
            "SELECT id, $1 FROM vector_search('t', $1, 10)",
            "WITH x AS (SELECT 1) SELECT id FROM vector_search('t', $1, 10)",
            "SELECT id FROM t WHERE id = $1",
            "EXPLAIN SELECT id FROM vector_search('t', $1, 10)",
        ] {
            assert_eq!(shape(sql), None, "{sql}");
        }
    }
}
