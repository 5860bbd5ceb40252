//! Plans kept between executions of a prepared statement.
//!
//! The general path binds every parameter into the statement as a literal and plans it
//! in full through DataFusion: a 384-float literal written out and parsed back, then SQL
//! to logical plan, optimiser, physical plan; several tenths of a millisecond per search,
//! more than the index search itself at 10K rows, and milliseconds for a search joined
//! to another table. Two kinds of statement keep their physical plan here instead:
//!
//! - A search: a prepared `SELECT ... FROM vector_search('t', $1, k) [JOIN u ON ...]
//!   [WHERE ...] [ORDER BY ...] [LIMIT ...]` (pgvector's `ORDER BY embedding <=> $1
//!   LIMIT k`, over one table or joined to one, arrives here in that form). The first
//!   execution plans in full and keeps the physical plan; later executions with the same
//!   other parameters and session settings, under the same catalog, swap the new query
//!   vector into the plan's one `VectorSearchExec`, reset every other operator's state,
//!   and run it. Nothing else in such a plan depends on the vector or was read while it
//!   was planned: the shape admits no function calls but pure ones and no subqueries but
//!   the joined table's keys, which the search reads as it runs ([`PlanCache::put`] keeps
//!   no plan whose search read them while planning), and the joined table is scanned at
//!   each execution.
//! - Any other query planned once at Parse ([`super::params::PreparedPlan`], whose
//!   functions are all immutable): its physical plan serves the next execution with the
//!   same values and settings (an ORM's lookup of one collection by name before every
//!   search), every operator reset; the optimiser and physical planner run only when a
//!   value changes.
//!
//! In both, the tables are read as the plan runs (a transaction block's own writes
//! included), never while it was planned, so the rows are the ones the general path
//! returns; tests compare the two.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, JoinConstraint, JoinOperator, SetExpr,
    Statement, TableFactor, visit_expressions,
};
use parking_lot::Mutex;

use super::params::{placeholder_index, vector_search_args};
use super::vector_search::VectorSearchExec;
use crate::error::Result;

/// A prepared search the cache can serve: `$vector_param` (1-based) is the query vector
/// of its one `vector_search` and appears nowhere else.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchShape {
    pub vector_param: usize,
}

/// Physical operators a cached plan may hold: none was planned from anything but the
/// statement, and none keeps state between executions once [`reset`] has reset it.
/// (A `LIMIT` under `ORDER BY` is a TopK sort, whose dynamic filter carries the last
/// execution's threshold until reset; a hash join keeps the side it built and hands a
/// filter of its keys to the scan of the other side, which reads those keys only. Both
/// start afresh when reset, as does the scan; a plan where another operator took such
/// a filter over is not kept, see [`keeps_run_time_filter`].)
const CACHEABLE: [&str; 22] = [
    "VectorSearchExec",
    "HashJoinExec",
    "RowScanExec",
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
    // (An aggregate that hands a dynamic filter of its min/max down is not kept, see
    // [`keeps_run_time_filter`]; a nested-loop or cross join reads its side again.)
    "AggregateExec",
    "NestedLoopJoinExec",
    "CrossJoinExec",
    "UnionExec",
    "BoundedWindowAggExec",
    "WindowAggExec",
    "PlaceholderRowExec",
    "EmptyExec",
];

/// Functions whose value depends on their arguments only (`'t' = ANY(tags)` arrives
/// here as `array_contains`); any other call keeps a statement off the cache.
const PURE_FUNCTIONS: [&str; 29] = [
    "struct",
    // Casts the compatibility rewrites write (`$2::UUID`, `'{...}'::jsonb`).
    "vg_cast_uuid",
    "vg_cast_json",
    "vg_cast_jsonb",
    // LangChain's PGVector writes its metadata filters with these.
    "jsonb_path_match",
    "jsonb_path_exists",
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
    // The search, or the search joined to one table (pgvector's search over a join,
    // which arrives here as a search restricted to the joined table's keys).
    let factors: Vec<&TableFactor> = match from.joins.as_slice() {
        [] => vec![&from.relation],
        [join] if joined_on(&join.join_operator) => vec![&from.relation, &join.relation],
        _ => return None,
    };
    let mut search_args = None;
    for factor in factors {
        match (vector_search_args(factor), factor) {
            (Some(args), _) if search_args.is_none() => search_args = Some(args),
            (None, TableFactor::Table { args: None, .. }) => {}
            _ => return None,
        }
    }
    let args = search_args?;
    // (table, [column,] vector, k [, key columns, (subquery of their keys)])
    let (vector_at, keys_subquery) = match args.len() {
        3 => (1, false),
        4 => (2, false),
        5 => (1, true),
        6 => (2, true),
        _ => return None,
    };
    if keys_subquery
        && !matches!(
            args.last(),
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(
                SqlExpr::Subquery(_)
            )))
        )
    {
        return None;
    }
    // `$1`, or `$1::vector` / `$1::real[]`.
    let vector_param = match &args[vector_at] {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Cast { expr, .. })) => {
            placeholder_index(expr)?
        }
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => placeholder_index(e)?,
        _ => return None,
    };
    // Everything else: no function calls (the clock, settings, random), no subqueries
    // but the search's keys (its table is read as the search runs, see
    // `vector_search::Lookup`; [`PlanCache::put`] keeps no plan that read it while
    // planning), and the vector parameter used once only.
    let mut uses = 0;
    let mut subqueries = 0;
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
            SqlExpr::Subquery(_) => subqueries += 1,
            SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. } => plain = false,
            e if placeholder_index(e) == Some(vector_param) => uses += 1,
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    (plain && uses == 1 && subqueries == usize::from(keys_subquery))
        .then_some(SearchShape { vector_param })
}

/// A join whose plan the cache may keep: inner or left, on a condition.
fn joined_on(op: &JoinOperator) -> bool {
    matches!(
        op,
        JoinOperator::Join(JoinConstraint::On(_))
            | JoinOperator::Inner(JoinConstraint::On(_))
            | JoinOperator::Left(JoinConstraint::On(_))
            | JoinOperator::LeftOuter(JoinConstraint::On(_))
    )
}

/// The plans a prepared statement last ran with ([`KEPT`] at most, the most recent
/// first), and what each was planned for.
#[derive(Default)]
pub struct PlanCache(Mutex<std::collections::VecDeque<Cached>>);

/// Plans kept per prepared statement: one per set of values (or filter values, for a
/// search) among the last few a statement ran with.
const KEPT: usize = 8;

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlanCache")
    }
}

struct Cached {
    /// The session settings and the other parameters' values it was planned with.
    key: String,
    /// The catalog generation it was planned under ([`crate::engine::Core::generation`]).
    generation: u64,
    plan: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
}

impl PlanCache {
    /// The cached plan for `key`, if the catalog is still the one it was planned under.
    pub(crate) fn get(
        &self,
        key: &str,
        generation: u64,
    ) -> Option<(Arc<dyn ExecutionPlan>, SchemaRef)> {
        let mut kept = self.0.lock();
        let at = kept
            .iter()
            .position(|c| c.key == key && c.generation == generation)?;
        let c = kept.remove(at)?;
        let found = (c.plan.clone(), c.schema.clone());
        kept.push_front(c);
        Some(found)
    }

    /// Keep `plan` if it can run again: `searches` searches (one for a search's plan,
    /// none for a query planned at Parse), operators [`reset`] can reset, and nothing
    /// read from a table while it was planned.
    pub(crate) fn put(
        &self,
        key: String,
        generation: u64,
        plan: &Arc<dyn ExecutionPlan>,
        schema: SchemaRef,
        searches: usize,
    ) {
        let mut found = 0;
        let mut other = false;
        let _ = plan.apply(|node| {
            if let Some(s) = node.downcast_ref::<VectorSearchExec>() {
                found += 1;
                other |= s.keys_read_while_planned();
            } else if !CACHEABLE.contains(&node.name()) || keeps_run_time_filter(node.as_ref()) {
                other = true;
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if other || found != searches {
            return;
        }
        let mut kept = self.0.lock();
        kept.retain(|c| c.key != key && c.generation == generation);
        kept.push_front(Cached {
            key,
            generation,
            plan: plan.clone(),
            schema,
        });
        kept.truncate(KEPT);
    }
}

/// Operators that make run-time (dynamic) filters, or take them from a join above,
/// and start afresh when reset.
const RESETS_RUN_TIME_FILTERS: [&str; 4] =
    ["HashJoinExec", "SortExec", "SortExec(TopK)", "RowScanExec"];

/// Whether `node` holds a run-time filter that a reset would not renew (one another
/// operator took over while the plan was made): it would keep the last run's values.
fn keeps_run_time_filter(node: &dyn ExecutionPlan) -> bool {
    if RESETS_RUN_TIME_FILTERS.contains(&node.name()) {
        return false;
    }
    let mut found = false;
    let _ = node.apply_expressions(&mut |e: &Arc<dyn PhysicalExpr>| {
        found |= e
            .exists(|x| Ok(x.downcast_ref::<DynamicFilterPhysicalExpr>().is_some()))
            .unwrap_or(true);
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// `plan` ready to run again, every operator rebuilt with its state reset (a TopK
/// sort's dynamic filter starts afresh, a hash join builds its side again) and `query`,
/// if given, as the vector of its search; a join's run-time filter is then handed down
/// again, as when it was planned.
pub(crate) fn reset(
    plan: Arc<dyn ExecutionPlan>,
    query: Option<Vec<f32>>,
    config: &ConfigOptions,
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut joins = false;
    let plan = plan
        .transform_up(|node| {
            joins |= node.name() == "HashJoinExec";
            let node = match (node.downcast_ref::<VectorSearchExec>(), &query) {
                (Some(s), Some(q)) => Arc::new(s.with_query(q.clone())?) as Arc<dyn ExecutionPlan>,
                _ => node.reset_state()?,
            };
            Ok(Transformed::yes(node))
        })?
        .data;
    if !joins {
        return Ok(plan);
    }
    Ok(FilterPushdown::new_post_optimization().optimize(plan, config)?)
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
        // Joined to one table, and pgvector's search over a join as it is rewritten.
        assert_eq!(
            shape(
                "SELECT v.id, u.name FROM vector_search('t', $1, 10) v JOIN u ON v.uid = u.id WHERE u.kind = $2"
            ),
            s
        );
        assert_eq!(
            shape("SELECT * FROM u LEFT JOIN vector_search('t', 'emb', $1, 10) v ON v.uid = u.id"),
            s
        );
        assert_eq!(
            shape(
                "SELECT n.key FROM notes n JOIN vector_search('nv', $1, 10, 'ns, key', \
                 (SELECT struct(n.ns, n.key) FROM notes n WHERE n.kind = 3)) v \
                 ON n.ns = v.ns AND n.key = v.key ORDER BY v.distance LIMIT 10"
            ),
            s
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
            "SELECT 1 FROM vector_search('t', $1, 10) v JOIN u ON v.a = u.a JOIN w ON v.b = w.b",
            "SELECT 1 FROM vector_search('t', $1, 10) v JOIN (SELECT a FROM u) x ON v.a = x.a",
            "SELECT 1 FROM vector_search('t', $1, 10) v JOIN vector_search('t', $2, 10) w ON v.id = w.id",
            "SELECT 1 FROM vector_search('t', $1, 10) v JOIN u ON v.a = u.a AND u.t > now()",
            "SELECT 1 FROM vector_search('t', $1, 10) v JOIN u ON v.a = (SELECT max(a) FROM w)",
            "SELECT 1 FROM vector_search('t', $1, 10, 'a', 'b')",
            "SELECT 1 FROM vector_search('t', $1, 10, 'a', (SELECT struct(u.a) FROM u WHERE u.b IN (SELECT b FROM w)))",
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
