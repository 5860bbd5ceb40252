//! Correlated subqueries in a select list, run once per outer row (an "apply"), as
//! Postgres evaluates them: LangGraph's checkpointer reads each checkpoint with
//!
//! ```sql
//! SELECT thread_id, checkpoint, ...,
//!   (SELECT array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
//!      FROM jsonb_each_text(checkpoint -> 'channel_versions')
//!      JOIN checkpoint_blobs bl ON bl.thread_id = checkpoints.thread_id AND ...
//!   ) AS channel_values, ...
//! FROM checkpoints WHERE thread_id = $1 ...
//! ```
//!
//! which DataFusion cannot decorrelate (the outer row reaches into FROM and ON).
//!
//! At Parse such an item becomes a marker, `vg_apply('<subquery>', outer, ...)`: the
//! subquery's text with each reference to the outer row (and each parameter) replaced
//! by `__vg_o<k>`, and those references as arguments, so that binding parameters and
//! every rewrite reach them. At Execute the outer query runs with the arguments as
//! extra columns; then for each distinct set of their values the subquery runs with
//! them as typed literals (0 rows: NULL; more than one: 21000). Only a plain SELECT
//! (no DISTINCT, GROUP BY or aggregate outside the subqueries) over tables is taken
//! so; anything else keeps the refusal.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query, Select,
    SelectItem, SetExpr, Statement, TableFactor, Value as SqlValue, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::statements::ident_name;
use super::{Output, Session};
use crate::engine::Core;
use crate::error::{Error, Result};

/// The marker function's name.
const MARKER: &str = "vg_apply";
/// The prefix of a reference to the outer row inside a subquery's text.
const SLOT: &str = "__vg_o";
/// The prefix of the outer query's extra columns.
const ARG: &str = "__vg_apply_";

/// A relation in a FROM clause: the names it answers to and its columns (`None`:
/// unknown).
#[derive(Clone)]
struct Relation {
    names: Vec<String>,
    columns: Option<Vec<String>>,
}

/// The relations a SELECT reads, if each is one whose columns are known here.
fn relations(sel: &Select, core: &Core) -> Option<Vec<Relation>> {
    let mut out = Vec::new();
    for twj in &sel.from {
        for f in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
            out.push(relation(f, core)?);
        }
    }
    Some(out)
}

/// The names a query's rows have (`None` for a `*`).
fn output_names(q: &Query) -> Option<Vec<String>> {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    sel.projection
        .iter()
        .map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
            SelectItem::UnnamedExpr(SqlExpr::Identifier(i)) => Some(ident_name(i)),
            SelectItem::UnnamedExpr(SqlExpr::CompoundIdentifier(p)) => p.last().map(ident_name),
            SelectItem::UnnamedExpr(SqlExpr::Function(f)) => {
                f.name.0.last().and_then(|p| p.as_ident()).map(ident_name)
            }
            SelectItem::UnnamedExpr(_) => Some("?column?".into()),
            _ => None,
        })
        .collect()
}

fn relation(f: &TableFactor, core: &Core) -> Option<Relation> {
    let renamed = |alias: &Option<datafusion::sql::sqlparser::ast::TableAlias>| -> Vec<String> {
        alias
            .iter()
            .flat_map(|a| a.columns.iter().map(|c| ident_name(&c.name)))
            .collect()
    };
    let (names, own): (Vec<String>, Option<Vec<String>>) = match f {
        TableFactor::Table {
            name, alias, args, ..
        } => {
            let base = ident_name(name.0.last()?.as_ident()?);
            let mut names: Vec<String> = alias.iter().map(|a| ident_name(&a.name)).collect();
            let own = if args.is_some() {
                // A function in FROM: its columns by name (Postgres names a one-column
                // function's column after its alias, or after itself).
                names.push(base.clone());
                match base.as_str() {
                    "jsonb_each" | "jsonb_each_text" | "json_each" | "json_each_text" => {
                        vec!["key".into(), "value".into()]
                    }
                    "jsonb_array_elements"
                    | "jsonb_array_elements_text"
                    | "json_array_elements"
                    | "json_array_elements_text" => vec!["value".into()],
                    "unnest" | "generate_series" | "regexp_split_to_table" => {
                        vec![names[0].clone()]
                    }
                    _ => return None,
                }
            } else {
                if alias.is_none() {
                    names.push(base.clone());
                }
                let def = core.table(&base).ok()?;
                def.visible()
                    .into_iter()
                    .map(|i| def.columns[i].name.clone())
                    .collect()
            };
            let r = renamed(alias);
            (names, Some(if r.is_empty() { own } else { r }))
        }
        TableFactor::Derived {
            subquery, alias, ..
        } => {
            let names: Vec<String> = alias.iter().map(|a| ident_name(&a.name)).collect();
            let r = renamed(alias);
            (
                names,
                if r.is_empty() {
                    output_names(subquery)
                } else {
                    Some(r)
                },
            )
        }
        TableFactor::UNNEST { alias, .. } => {
            let names: Vec<String> = alias.iter().map(|a| ident_name(&a.name)).collect();
            let r = renamed(alias);
            let own = if r.is_empty() { names.clone() } else { r };
            (names, Some(own))
        }
        _ => return None,
    };
    Some(Relation {
        names,
        columns: own,
    })
}

/// Finds, in an expression evaluated for each row of `outer`, the references to that
/// row (and the parameters), through the scopes of the subqueries inside it, and
/// replaces each by a slot.
struct Resolver<'a> {
    core: &'a Core,
    outer: &'a [Relation],
    refs: Vec<SqlExpr>,
    keys: HashMap<String, usize>,
    /// A name that could not be told apart, or a shape not followed.
    failed: bool,
}

impl Resolver<'_> {
    fn slot(&mut self, e: &SqlExpr) -> SqlExpr {
        let key = e.to_string();
        let n = match self.keys.get(&key) {
            Some(n) => *n,
            None => {
                self.refs.push(e.clone());
                self.keys.insert(key, self.refs.len());
                self.refs.len()
            }
        };
        SqlExpr::Identifier(Ident::new(format!("{SLOT}{n}")))
    }

    /// Whether `e` (seen inside `scopes`, innermost last) names the outer row.
    fn is_outer(&mut self, e: &SqlExpr, scopes: &[Vec<Relation>]) -> bool {
        let inner = || scopes.iter().flatten();
        match e {
            SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => {
                let q = ident_name(&parts[0]);
                !inner().any(|r| r.names.contains(&q))
                    && self.outer.iter().any(|r| r.names.contains(&q))
            }
            SqlExpr::Identifier(i) => {
                let c = ident_name(i);
                if c.starts_with(SLOT) {
                    return false;
                }
                if inner().any(|r| r.columns.is_none()) {
                    self.failed = true;
                    return false;
                }
                !inner().any(|r| r.columns.as_ref().is_some_and(|cs| cs.contains(&c)))
                    && self
                        .outer
                        .iter()
                        .any(|r| r.columns.as_ref().is_some_and(|cs| cs.contains(&c)))
            }
            SqlExpr::Value(v) => matches!(v.value, SqlValue::Placeholder(_)),
            _ => false,
        }
    }

    /// A query inside the expression, seen inside `scopes`.
    fn query(&mut self, q: &mut Query, scopes: &[Vec<Relation>]) {
        if q.with.is_some() {
            self.failed = true;
            return;
        }
        let SetExpr::Select(sel) = q.body.as_mut() else {
            self.failed = true;
            return;
        };
        let Some(rels) = relations(sel, self.core) else {
            self.failed = true;
            return;
        };
        let mut inner = scopes.to_vec();
        inner.push(rels);
        let mut walk = Walk {
            r: self,
            scopes: inner,
            depth: 0,
        };
        let _ = datafusion::sql::sqlparser::ast::VisitMut::visit(q, &mut walk);
    }
}

/// Visits one scope's expressions; each query nested in them is resolved in a scope
/// of its own.
struct Walk<'r, 'a> {
    r: &'r mut Resolver<'a>,
    scopes: Vec<Vec<Relation>>,
    depth: usize,
}

impl datafusion::sql::sqlparser::ast::VisitorMut for Walk<'_, '_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        // The walk starts at its own query (depth 0 -> 1); a query met below that is a
        // nested one.
        if self.depth == 1 {
            self.r.query(q, &self.scopes);
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &mut Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut SqlExpr) -> ControlFlow<()> {
        if self.depth <= 1 && self.r.is_outer(e, &self.scopes) {
            *e = self.r.slot(e);
        }
        ControlFlow::Continue(())
    }
}

/// [`marked`], for a statement that has a subquery at all.
pub fn marked_if_any(sql: &str, core: &Core) -> Option<String> {
    if sql.to_ascii_lowercase().matches("select").count() < 2 {
        return None;
    }
    marked(sql, core)
}

/// The statement with its correlated select-list subqueries made markers, as SQL
/// text; `None` when it has none, or is not a shape this module runs.
pub fn marked(sql: &str, core: &Core) -> Option<String> {
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [Statement::Query(q)] = stmts.as_mut_slice() else {
        return None;
    };
    if q.with.is_some() || !q.locks.is_empty() {
        return None;
    }
    if !mark_query(q, core)? {
        return None;
    }
    super::literals::printable(&mut stmts[0]);
    Some(stmts[0].to_string())
}

/// Mark a query's select list and its derived tables' (`Some(false)`: nothing to mark;
/// `None`: a correlated subquery this module does not run).
fn mark_query(q: &mut Query, core: &Core) -> Option<bool> {
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return Some(false);
    };
    let mut changed = false;
    for twj in &mut sel.from {
        for f in
            std::iter::once(&mut twj.relation).chain(twj.joins.iter_mut().map(|j| &mut j.relation))
        {
            if let TableFactor::Derived {
                lateral: false,
                subquery,
                ..
            } = f
                && subquery.with.is_none()
            {
                changed |= mark_query(subquery, core)?;
            }
        }
    }
    let has_subquery = sel.projection.iter().any(|item| match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
            contains_subquery(e)
        }
        _ => false,
    });
    if !has_subquery {
        return Some(changed);
    }
    let grouped = sel.distinct.is_some()
        || sel.having.is_some()
        || !matches!(&sel.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty());
    let outer = relations(sel, core)?;
    if outer.is_empty() {
        return Some(changed);
    }
    let mut marked_here = false;
    for item in &mut sel.projection {
        // The item keeps the name Postgres gives it (the marker's would be `vg_apply`).
        if let SelectItem::UnnamedExpr(e) = item
            && contains_subquery(e)
        {
            *item = SelectItem::ExprWithAlias {
                alias: Ident::with_quote('"', super::colnames::column_name(e)),
                expr: e.clone(),
            };
        }
        let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item else {
            continue;
        };
        if !contains_subquery(e) {
            continue;
        }
        let mut resolver = Resolver {
            core,
            outer: &outer,
            refs: Vec::new(),
            keys: HashMap::new(),
            failed: false,
        };
        // A subquery item runs as that query; any other expression as `SELECT <it>`.
        let mut template = match &*e {
            SqlExpr::Subquery(sub) => sub.as_ref().clone(),
            other => {
                let Ok(Statement::Query(q)) = Parser::new(&PostgreSqlDialect {})
                    .try_with_sql(&format!("SELECT {other}"))
                    .and_then(|mut p| p.parse_statement())
                else {
                    return None;
                };
                *q
            }
        };
        resolver.query(&mut template, &[]);
        super::literals::printable(&mut template);
        if resolver.failed {
            return None;
        }
        let refs = resolver.refs;
        // Only the outer row's own columns, or parameters: an uncorrelated subquery
        // is DataFusion's.
        if !refs.iter().any(|r| !matches!(r, SqlExpr::Value(_))) {
            continue;
        }
        if grouped {
            return None;
        }
        let mut args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::value(
            SqlValue::SingleQuotedString(template.to_string()),
        )))];
        args.extend(
            refs.into_iter()
                .map(|r| FunctionArg::Unnamed(FunctionArgExpr::Expr(r))),
        );
        let SqlExpr::Function(mut f) = super::pgvector::call(MARKER, vec![]) else {
            return None;
        };
        f.args = FunctionArguments::List(datafusion::sql::sqlparser::ast::FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses: vec![],
        });
        *e = SqlExpr::Function(f);
        marked_here = true;
    }
    // An aggregate outside the subqueries would group the rows the markers need; a
    // `*` beside them would move their columns.
    if marked_here
        && (aggregates(sel)
            || sel.projection.iter().any(|i| {
                matches!(
                    i,
                    SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                )
            }))
    {
        return None;
    }
    Some(changed || marked_here)
}

fn contains_subquery(e: &SqlExpr) -> bool {
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(e, |x| {
        if matches!(
            x,
            SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. }
        ) {
            found = true;
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// Whether a select list calls an aggregate (outside the markers' text).
fn aggregates(sel: &Select) -> bool {
    const AGGREGATES: &[&str] = &[
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "array_agg",
        "string_agg",
        "json_agg",
        "jsonb_agg",
        "bool_and",
        "bool_or",
        "every",
        "json_object_agg",
        "jsonb_object_agg",
    ];
    let mut found = false;
    for item in &sel.projection {
        let _ = datafusion::sql::sqlparser::ast::visit_expressions(item, |x| {
            if let SqlExpr::Function(f) = x
                && f.over.is_none()
                && let Some(n) = f.name.0.last().and_then(|p| p.as_ident())
                && AGGREGATES.contains(&ident_name(n).as_str())
            {
                found = true;
            }
            ControlFlow::<()>::Continue(())
        });
    }
    found
}

/// One marker of a query: its position, the subquery's text, its arguments.
struct Marker {
    position: usize,
    name: Option<String>,
    template: String,
    args: Vec<SqlExpr>,
}

fn markers(sel: &Select) -> Vec<Marker> {
    let mut out = Vec::new();
    for (position, item) in sel.projection.iter().enumerate() {
        let (e, name) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(ident_name(alias))),
            _ => continue,
        };
        let SqlExpr::Function(f) = e else { continue };
        if !f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case(MARKER))
        {
            continue;
        }
        let FunctionArguments::List(list) = &f.args else {
            continue;
        };
        let mut args = list.args.iter().filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        });
        let Some(SqlExpr::Value(v)) = args.next() else {
            continue;
        };
        let (SqlValue::SingleQuotedString(template) | SqlValue::EscapedStringLiteral(template)) =
            &v.value
        else {
            continue;
        };
        out.push(Marker {
            position,
            name,
            template: template.clone(),
            args: args.collect(),
        });
    }
    out
}

/// Whether a query carries markers, in its select list or a derived table's (what
/// [`run`] runs).
pub fn is_marked(q: &Query) -> bool {
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return false;
    };
    !markers(sel).is_empty()
        || factors(sel)
            .any(|f| matches!(f, TableFactor::Derived { subquery, .. } if is_marked(subquery)))
}

/// The table factors of a SELECT's FROM, joined ones too.
fn factors(sel: &Select) -> impl Iterator<Item = &TableFactor> {
    sel.from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
}

/// Tables registered for one statement (each in a schema of its own, as the
/// session's schemas take no tables), dropped with it.
struct Registered {
    ctx: datafusion::prelude::SessionContext,
    schemas: Vec<String>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(catalog) = self
            .ctx
            .catalog(&self.ctx.state().config().options().catalog.default_catalog)
        {
            for s in &self.schemas {
                let _ = catalog.deregister_schema(s, true);
            }
        }
    }
}

/// The query with each derived table that carries markers run (`rows`; else only
/// its columns, for Describe) and read as a table registered for the statement.
async fn materialize(session: &Session, q: &Query, rows: bool) -> Result<(Query, Registered)> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut q = q.clone();
    let mut registered = Registered {
        ctx: session.ctx.clone(),
        schemas: Vec::new(),
    };
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return Ok((q, registered));
    };
    for twj in &mut sel.from {
        for f in
            std::iter::once(&mut twj.relation).chain(twj.joins.iter_mut().map(|j| &mut j.relation))
        {
            let TableFactor::Derived {
                subquery, alias, ..
            } = f
            else {
                continue;
            };
            if !is_marked(subquery) {
                continue;
            }
            let (schema, batch) = if rows {
                Box::pin(run_batch(session, subquery)).await?
            } else {
                let (schema, _) = Box::pin(self::schema(session, subquery)).await?;
                let empty = RecordBatch::new_empty(schema.clone());
                (schema, empty)
            };
            let name = format!(
                "__vg_apply_{}",
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let catalog = session
                .ctx
                .catalog(
                    &session
                        .ctx
                        .state()
                        .config()
                        .options()
                        .catalog
                        .default_catalog,
                )
                .ok_or_else(|| Error::internal("apply: no catalog"))?;
            let schema_provider = Arc::new(datafusion::catalog::MemorySchemaProvider::new());
            catalog.register_schema(&name, schema_provider.clone())?;
            registered.schemas.push(name.clone());
            let table = datafusion::datasource::MemTable::try_new(schema, vec![vec![batch]])?;
            datafusion::catalog::SchemaProvider::register_table(
                schema_provider.as_ref(),
                "t".into(),
                Arc::new(table),
            )?;
            let name = format!("\"{name}\".t");
            let alias = alias
                .as_ref()
                .map(|a| format!(" AS {a}"))
                .unwrap_or_default();
            let Ok(Statement::Query(read)) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&format!("SELECT * FROM {name}{alias}"))
                .and_then(|mut p| p.parse_statement())
            else {
                return Err(Error::internal("apply: derived table"));
            };
            let SetExpr::Select(read) = *read.body else {
                return Err(Error::internal("apply: derived table"));
            };
            if let Some(t) = read.from.into_iter().next() {
                *f = t.relation;
            }
        }
    }
    Ok((q, registered))
}

/// The outer query: each marker a NULL of its name, its arguments extra columns.
fn outer_query(q: &Query, marks: &[Marker]) -> Query {
    let mut q = q.clone();
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return q;
    };
    for m in marks {
        sel.projection[m.position] = SelectItem::ExprWithAlias {
            expr: SqlExpr::value(SqlValue::Null),
            alias: Ident::with_quote('"', m.name.clone().unwrap_or_else(|| "?column?".into())),
        };
    }
    for (i, m) in marks.iter().enumerate() {
        for (k, a) in m.args.iter().enumerate() {
            sel.projection.push(SelectItem::ExprWithAlias {
                expr: a.clone(),
                alias: Ident::with_quote('"', format!("{ARG}{i}_{k}")),
            });
        }
    }
    q
}

/// A subquery's text with its slots replaced by these expressions. (Run as it is, not
/// as `SELECT (<subquery>)`, which the compatibility parser would take for a
/// correlated subquery and answer NULL.)
fn instantiate(template: &str, values: &[String]) -> Result<String> {
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, template)
        .map_err(|e| Error::internal(format!("apply template: {e}")))?;
    let mut bad = None;
    for s in &mut stmts {
        let _ = visit_expressions_mut(s, |e| {
            if let SqlExpr::Identifier(i) = e
                && let Some(n) = i.value.strip_prefix(SLOT)
                && let Ok(n) = n.parse::<usize>()
            {
                match values.get(n - 1).map(|v| {
                    Parser::new(&PostgreSqlDialect {})
                        .try_with_sql(v)
                        .and_then(|mut p| p.parse_expr())
                }) {
                    Some(Ok(v)) => *e = v,
                    _ => bad = Some(n),
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }
    if let Some(n) = bad {
        return Err(Error::internal(format!("apply template slot {n}")));
    }
    let [Statement::Query(sub)] = stmts.as_slice() else {
        return Err(Error::internal("apply template is not a query"));
    };
    Ok(sub.to_string())
}

/// Plan and run one query, all its rows in one batch.
async fn collect(session: &Session, sql: &str) -> Result<(SchemaRef, RecordBatch)> {
    use futures::TryStreamExt;
    let stmt = session
        .engine
        .parse(sql)?
        .pop()
        .ok_or_else(|| Error::internal("empty query"))?;
    let plan = session.plan(stmt).await?;
    let df = session.ctx.execute_logical_plan(plan).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches: Vec<RecordBatch> = df.execute_stream().await?.try_collect().await?;
    let batch =
        datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(Error::internal)?;
    Ok((schema, batch))
}

/// A value as a typed SQL literal (`CAST('..' AS jsonb)`).
fn typed_literal(field: &Field, array: &ArrayRef, row: usize) -> Result<String> {
    let v = crate::types::value_from_array(array, row)?;
    let text = super::params::literal(&v);
    Ok(match super::writable_cte::cast_type(field) {
        Some(t) if !matches!(v, crate::types::Value::Null) => format!("CAST({text} AS {t})"),
        Some(t) => format!("CAST(NULL AS {t})"),
        None => text,
    })
}

/// The type of each marker's subquery: planned with typed NULLs for its slots.
async fn marker_fields(
    session: &Session,
    marks: &[Marker],
    outer: &Schema,
    width: usize,
) -> Result<Vec<Field>> {
    let mut out = Vec::with_capacity(marks.len());
    let mut column = width;
    for m in marks {
        let nulls: Vec<String> = (0..m.args.len())
            .map(|k| {
                let f = outer.field(column + k);
                match super::writable_cte::cast_type(f) {
                    Some(t) => format!("CAST(NULL AS {t})"),
                    None => format!(
                        "CAST(NULL AS {})",
                        super::writable_cte::sql_type(f.data_type())
                    ),
                }
            })
            .collect();
        column += m.args.len();
        let sql = instantiate(&m.template, &nulls)?;
        let stmt = session
            .engine
            .parse(&sql)?
            .pop()
            .ok_or_else(|| Error::internal("empty query"))?;
        let plan = session.plan(stmt).await?;
        let schema = plan.schema().as_arrow().clone();
        let f = schema.field(0).clone();
        out.push(
            f.with_name(m.name.clone().unwrap_or_else(|| "?column?".into()))
                .with_nullable(true),
        );
    }
    Ok(out)
}

/// The result columns of a marked query, for Describe, and the plan of its outer
/// query (whose parameters are the statement's).
pub async fn schema(
    session: &Session,
    q: &Query,
) -> Result<(SchemaRef, datafusion::logical_expr::LogicalPlan)> {
    let (q, _tables) = materialize(session, q, false).await?;
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Err(Error::internal("not a marked query"));
    };
    let marks = markers(sel);
    let empty = outer_query(&q, &marks);
    let stmt = session
        .engine
        .parse(&format!("SELECT * FROM ({empty}) AS o WHERE FALSE"))?
        .pop()
        .ok_or_else(|| Error::internal("empty query"))?;
    let plan = session.plan(stmt).await?;
    let outer = plan.schema().as_arrow().clone();
    let width = outer.fields().len() - marks.iter().map(|m| m.args.len()).sum::<usize>();
    let fields = marker_fields(session, &marks, &outer, width).await?;
    Ok((
        Arc::new(result_schema(&outer, width, &marks, &fields)),
        plan,
    ))
}

fn result_schema(outer: &Schema, width: usize, marks: &[Marker], fields: &[Field]) -> Schema {
    let mut out: Vec<Field> = outer
        .fields()
        .iter()
        .take(width)
        .map(|f| f.as_ref().clone())
        .collect();
    for (m, f) in marks.iter().zip(fields) {
        out[m.position] = f.clone();
    }
    Schema::new(out)
}

/// Run a marked query.
pub async fn run(session: &Session, q: &Query) -> Result<Output> {
    let (schema, batch) = run_batch(session, q).await?;
    Ok(Output::batch(schema, batch))
}

/// Run a marked query, all its rows in one batch.
async fn run_batch(session: &Session, q: &Query) -> Result<(SchemaRef, RecordBatch)> {
    let (q, _tables) = materialize(session, q, true).await?;
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Err(Error::internal("not a marked query"));
    };
    let marks = markers(sel);
    if marks.is_empty() {
        return collect(session, &q.to_string()).await;
    }
    // An ORDER BY reading a marker's value sorts the filled rows (the outer query
    // would sort by its NULL stand-in).
    let late = late_sort(&q, sel, &marks)?;
    let outer = match &late {
        Some((stripped, sort)) => {
            let mut outer = outer_query(stripped, &marks);
            if let SetExpr::Select(o) = outer.body.as_mut() {
                for (i, e) in sort.hidden.iter().enumerate() {
                    o.projection.push(SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias: Ident::with_quote('"', format!("{ARG}sort_{i}")),
                    });
                }
            }
            outer
        }
        None => outer_query(&q, &marks),
    };
    let (outer_schema, rows) = collect(session, &outer.to_string()).await?;
    let hidden = late.as_ref().map_or(0, |(_, s)| s.hidden.len());
    let width =
        outer_schema.fields().len() - hidden - marks.iter().map(|m| m.args.len()).sum::<usize>();
    let fields = marker_fields(session, &marks, &outer_schema, width).await?;
    let mut columns: Vec<ArrayRef> = rows.columns().iter().take(width).cloned().collect();
    let mut first_arg = width;
    for (m, field) in marks.iter().zip(&fields) {
        let mut seen: HashMap<Vec<String>, ScalarValue> = HashMap::new();
        let mut values = Vec::with_capacity(rows.num_rows());
        for r in 0..rows.num_rows() {
            let literals = (0..m.args.len())
                .map(|k| {
                    typed_literal(
                        outer_schema.field(first_arg + k),
                        rows.column(first_arg + k),
                        r,
                    )
                })
                .collect::<Result<Vec<String>>>()?;
            let value = match seen.get(&literals) {
                Some(v) => v.clone(),
                None => {
                    let (_, batch) =
                        collect(session, &instantiate(&m.template, &literals)?).await?;
                    let v = match batch.num_rows() {
                        1 => ScalarValue::try_from_array(batch.column(0), 0)?,
                        0 => ScalarValue::try_from(field.data_type())?,
                        _ => {
                            return Err(Error::CardinalityViolation(
                                "more than one row returned by a subquery used as an expression"
                                    .into(),
                            ));
                        }
                    };
                    seen.insert(literals, v.clone());
                    v
                }
            };
            values.push(value);
        }
        first_arg += m.args.len();
        let array = if values.is_empty() {
            datafusion::arrow::array::new_empty_array(field.data_type())
        } else {
            ScalarValue::iter_to_array(values)?
        };
        columns[m.position] = if array.data_type() == field.data_type() {
            array
        } else {
            datafusion::arrow::compute::cast(&array, field.data_type()).map_err(Error::internal)?
        };
    }
    let schema = Arc::new(result_schema(&outer_schema, width, &marks, &fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(Error::internal)?;
    let batch = match late {
        Some((_, sort)) => {
            let first_hidden = outer_schema.fields().len() - hidden;
            sort.apply(&batch, |i| rows.column(first_hidden + i).clone())?
        }
        None => batch,
    };
    Ok((schema, batch))
}

/// An ORDER BY (with its OFFSET and LIMIT) that a marker's value takes part in.
struct LateSort {
    keys: Vec<(SortKey, datafusion::arrow::compute::SortOptions)>,
    /// The ORDER BY expressions that are not result columns, run as extra columns.
    hidden: Vec<SqlExpr>,
    offset: usize,
    limit: Option<usize>,
}

enum SortKey {
    Column(usize),
    Hidden(usize),
}

/// The query without its ORDER BY, OFFSET and LIMIT, and those, when the ORDER BY
/// reads a marker (by its name or position); `None` when it does not.
fn late_sort(q: &Query, sel: &Select, marks: &[Marker]) -> Result<Option<(Query, LateSort)>> {
    use datafusion::sql::sqlparser::ast::{LimitClause, OrderByKind};
    let Some(order_by) = &q.order_by else {
        return Ok(None);
    };
    let OrderByKind::Expressions(exprs) = &order_by.kind else {
        return Ok(None);
    };
    let output_name = |i: usize| match &sel.projection[i] {
        SelectItem::ExprWithAlias { alias, .. } => Some(ident_name(alias)),
        _ => marks
            .iter()
            .find(|m| m.position == i)
            .and_then(|m| m.name.clone()),
    };
    let column = |e: &SqlExpr| -> Option<usize> {
        match e {
            SqlExpr::Value(v) => match &v.value {
                SqlValue::Number(n, _) => n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=sel.projection.len()).contains(n))
                    .map(|n| n - 1),
                _ => None,
            },
            SqlExpr::Identifier(i) => {
                let name = ident_name(i);
                (0..sel.projection.len()).find(|&k| output_name(k).as_deref() == Some(&name))
            }
            _ => None,
        }
    };
    let mut keys = Vec::new();
    let mut hidden = Vec::new();
    let mut reads_marker = false;
    for o in exprs {
        let descending = o.options.asc == Some(false);
        let options = datafusion::arrow::compute::SortOptions {
            descending,
            // Postgres: NULLs sort as larger than any value.
            nulls_first: o.options.nulls_first.unwrap_or(descending),
        };
        let key = match column(&o.expr) {
            Some(i) => {
                reads_marker |= marks.iter().any(|m| m.position == i);
                SortKey::Column(i)
            }
            None => {
                hidden.push(o.expr.clone());
                SortKey::Hidden(hidden.len() - 1)
            }
        };
        keys.push((key, options));
    }
    if !reads_marker {
        return Ok(None);
    }
    let count = |e: &SqlExpr| -> Result<usize> {
        match e {
            SqlExpr::Value(v) => match &v.value {
                SqlValue::Number(n, _) => n.parse::<usize>().ok(),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| {
            Error::FeatureNotSupported(format!(
                "LIMIT or OFFSET {e} beside an ORDER BY on a correlated subquery"
            ))
        })
    };
    let (offset, limit) = match &q.limit_clause {
        None => (0, None),
        Some(LimitClause::LimitOffset { limit, offset, .. }) => (
            offset
                .as_ref()
                .map(|o| count(&o.value))
                .transpose()?
                .unwrap_or(0),
            limit.as_ref().map(count).transpose()?,
        ),
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => {
            (count(offset)?, Some(count(limit)?))
        }
    };
    if q.fetch.is_some() {
        return Err(Error::FeatureNotSupported(
            "FETCH beside an ORDER BY on a correlated subquery".into(),
        ));
    }
    let mut stripped = q.clone();
    stripped.order_by = None;
    stripped.limit_clause = None;
    Ok(Some((
        stripped,
        LateSort {
            keys,
            hidden,
            offset,
            limit,
        },
    )))
}

impl LateSort {
    /// The rows sorted, then cut to the OFFSET and LIMIT (`hidden(i)`: the values of
    /// the i-th hidden expression).
    fn apply(
        &self,
        batch: &RecordBatch,
        hidden: impl Fn(usize) -> ArrayRef,
    ) -> Result<RecordBatch> {
        use datafusion::arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
        let columns: Vec<SortColumn> = self
            .keys
            .iter()
            .map(|(key, options)| SortColumn {
                values: match key {
                    SortKey::Column(i) => batch.column(*i).clone(),
                    SortKey::Hidden(i) => hidden(*i),
                },
                options: Some(*options),
            })
            .collect();
        let rows = batch.num_rows();
        let start = self.offset.min(rows);
        let len = self.limit.map_or(rows - start, |l| l.min(rows - start));
        let indices = lexsort_to_indices(&columns, None).map_err(Error::internal)?;
        let sorted =
            take_record_batch(batch, &indices.slice(start, len)).map_err(Error::internal)?;
        Ok(sorted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_takes_values_for_its_slots() {
        let sql = instantiate(
            "SELECT max(b.n) FROM b WHERE b.k = __vg_o1 AND b.j = __vg_o2",
            &["CAST('x' AS TEXT)".into(), "3".into()],
        )
        .expect("instantiated");
        assert_eq!(
            sql,
            "SELECT max(b.n) FROM b WHERE b.k = CAST('x' AS TEXT) AND b.j = 3"
        );
        assert!(instantiate("SELECT __vg_o2", &["1".into()]).is_err());
    }
}
