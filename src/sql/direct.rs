//! Direct paths for the small prepared statements applications send most, where a
//! DataFusion plan per execution costs more than the work itself:
//!
//! - `SELECT $1::int, ...`: parameters and literals, no table;
//! - a key lookup, `SELECT col, ... | * FROM t WHERE pk = $n`;
//! - an `INSERT INTO t [(cols)] VALUES (...)` of parameters and literals, with or
//!   without an `ON CONFLICT` clause that takes no parameter (an upsert);
//! - an `UPDATE t SET col = $n, ... WHERE pk = $m` of parameters and literals;
//! - a search, `SELECT cols FROM vector_search('t', $n, k) [WHERE ...]` whose WHERE
//!   clause the vector index takes whole (integer comparisons, text equality, ANDed).
//!
//! Each is recognised once, when the statement is prepared, and run from the bound
//! values straight against the engine: no SQL text, no planner, no optimiser. Whatever
//! such a path cannot answer exactly as the general path would (a value that does not
//! convert, a changed table, a key that moves) it hands back, and the statement goes
//! the general way. Tests compare the two row for row (`tests/integration/direct.rs`).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, BinaryOperator, Expr as SqlExpr, FunctionArg, FunctionArgExpr, GroupByExpr,
    Insert, ObjectName, OnConflict, OnInsert, Select, SelectItem, SetExpr, Statement, TableFactor,
    TableObject, Update, Value as SqlValue,
};

use super::defaults::Defaults;
use super::params::placeholder_index;
use super::statements::{check_not_null, check_row, coerce_into, ident_name, table_name};
use super::tables::{rows_to_batch, table_schema};
use super::vector_search::{Checks, DISTANCE, Search, query_vector, search_schema};
use super::{Output, Session};
use crate::error::{Error, Result};
use crate::store::filter::{CmpOp, Scalar};
use crate::store::{Predicate, TableDef, WriteMode};
use crate::types::{ColumnType, Value, coerce};

/// A value a statement supplies: a parameter (1-based) or a literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    Param(usize),
    Literal(Value),
}

impl Slot {
    fn of(e: &SqlExpr) -> Option<Slot> {
        if let Some(i) = placeholder_index(e) {
            return Some(Slot::Param(i));
        }
        super::statements::literal_value(e).map(Slot::Literal)
    }

    fn value(&self, values: &[Value]) -> Option<Value> {
        match self {
            Slot::Param(i) => values.get(i - 1).cloned(),
            Slot::Literal(v) => Some(v.clone()),
        }
    }
}

/// A statement with a direct path, as recognised at Parse.
#[derive(Debug, Clone, PartialEq)]
pub enum Direct {
    /// `SELECT $1::int, ...`: each output column is a parameter.
    Params {
        params: Vec<usize>,
        schema: SchemaRef,
    },
    /// `SELECT cols FROM table WHERE pk = key`.
    Lookup {
        table: String,
        columns: Vec<String>,
        key: Slot,
        schema: SchemaRef,
    },
    /// `INSERT INTO table (columns) VALUES rows [ON CONFLICT ...]`.
    Insert {
        table: String,
        columns: Option<Vec<String>>,
        rows: Vec<Vec<Slot>>,
        on_conflict: Option<Box<OnConflict>>,
    },
    /// `UPDATE table SET sets WHERE pk = key`.
    Update {
        table: String,
        sets: Vec<(String, Slot)>,
        key: Slot,
    },
    /// `SELECT cols FROM vector_search('table', $vector, k) [WHERE conds]`, where each
    /// condition compares an integer column (or tests a text column for equality) with
    /// a value: a filter the index takes whole.
    Search {
        table: String,
        vector: usize,
        k: Slot,
        conds: Vec<Cond>,
        /// Columns of the table, or `distance`.
        columns: Vec<String>,
        schema: SchemaRef,
    },
}

/// `column op value`, one condition of a direct search's WHERE clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    column: String,
    op: CmpOp,
    value: Slot,
}

/// The direct path of a prepared statement, if it has one; `described` is the result
/// schema Describe reported, which a direct answer must match.
pub fn recognize(
    stmt: &Statement,
    core: &crate::engine::Core,
    described: Option<&SchemaRef>,
) -> Option<Direct> {
    match stmt {
        Statement::Query(_) => select(stmt, core, described?),
        Statement::Insert(ins) => insert(ins),
        Statement::Update(up) => update(up, core),
        _ => None,
    }
}

/// A column named by a bare identifier (or `alias.column`), folded as Postgres does.
fn column_ref(e: &SqlExpr, qualifier: Option<&str>) -> Option<String> {
    match e {
        SqlExpr::Identifier(i) => Some(ident_name(i)),
        SqlExpr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] if Some(ident_name(q).as_str()) == qualifier => Some(ident_name(c)),
            _ => None,
        },
        _ => None,
    }
}

/// `pk = slot` (either way round) on a table with a one-column key.
fn key_equality(e: &SqlExpr, def: &TableDef, qualifier: Option<&str>) -> Option<Slot> {
    let SqlExpr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    } = e
    else {
        return None;
    };
    let [pk] = def.primary_key.as_slice() else {
        return None;
    };
    let pk_name = &def.columns[*pk].name;
    let is_pk = |x: &SqlExpr| column_ref(x, qualifier).as_ref() == Some(pk_name);
    let slot = if is_pk(left) {
        Slot::of(right)?
    } else if is_pk(right) {
        Slot::of(left)?
    } else {
        return None;
    };
    // `pk = NULL` is never true; the general path answers that.
    (!matches!(slot, Slot::Literal(Value::Null))).then_some(slot)
}

/// The table a FROM or UPDATE target names, with its alias.
fn plain_table(f: &TableFactor) -> Option<(&ObjectName, Option<String>)> {
    match f {
        TableFactor::Table {
            name,
            alias,
            args: None,
            with_hints,
            version: None,
            partitions,
            ..
        } if with_hints.is_empty() && partitions.is_empty() => Some((
            name,
            alias
                .as_ref()
                .filter(|a| a.columns.is_empty())
                .map(|a| ident_name(&a.name)),
        )),
        _ => None,
    }
}

fn select(stmt: &Statement, core: &crate::engine::Core, described: &SchemaRef) -> Option<Direct> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    if q.with.is_some()
        || q.order_by.is_some()
        || q.limit_clause.is_some()
        || q.fetch.is_some()
        || !q.locks.is_empty()
    {
        return None;
    }
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return None;
    };
    let grouped = match &sel.group_by {
        GroupByExpr::Expressions(e, m) => !e.is_empty() || !m.is_empty(),
        GroupByExpr::All(_) => true,
    };
    if sel.distinct.is_some()
        || sel.top.is_some()
        || sel.into.is_some()
        || grouped
        || sel.having.is_some()
        || !sel.named_window.is_empty()
        || sel.qualify.is_some()
        || !sel.lateral_views.is_empty()
        || !sel.cluster_by.is_empty()
        || !sel.distribute_by.is_empty()
        || !sel.sort_by.is_empty()
        || sel.prewhere.is_some()
    {
        return None;
    }
    match sel.from.as_slice() {
        [] => {
            if sel.selection.is_some() {
                return None;
            }
            // Every column a parameter, of a type its value converts to exactly.
            let params = sel
                .projection
                .iter()
                .map(|item| match item {
                    // Named or not: the names are Describe's (`int4` for `$1::int`).
                    SelectItem::UnnamedExpr(SqlExpr::Cast { expr, .. })
                    | SelectItem::ExprWithAlias {
                        expr: SqlExpr::Cast { expr, .. },
                        ..
                    } => placeholder_index(expr),
                    _ => None,
                })
                .collect::<Option<Vec<usize>>>()?;
            let simple = described.fields().iter().all(|f| {
                matches!(
                    f.data_type(),
                    DataType::Int16
                        | DataType::Int32
                        | DataType::Int64
                        | DataType::Float32
                        | DataType::Float64
                        | DataType::Utf8
                        | DataType::Utf8View
                        | DataType::LargeUtf8
                        | DataType::Boolean
                )
            });
            (simple && params.len() == described.fields().len()).then(|| Direct::Params {
                params,
                schema: described.clone(),
            })
        }
        [from] if search_args(&from.relation).is_some() => search(sel, core, described),
        [from] => {
            if !from.joins.is_empty() {
                return None;
            }
            let (name, alias) = plain_table(&from.relation)?;
            let table = table_name(name).ok()?;
            let def = core.table(&table).ok()?;
            let qualifier = alias.clone().unwrap_or_else(|| table.clone());
            let key = key_equality(sel.selection.as_ref()?, &def, Some(&qualifier))?;
            let all: Vec<String> = def
                .visible()
                .into_iter()
                .map(|c| def.columns[c].name.clone())
                .collect();
            let (columns, names) = projection(&sel.projection, Some(&qualifier), &all)?;
            // The answer must be what Describe announced: the same names and types.
            let schema = lookup_schema(&def, &columns)?;
            let same = schema.fields().len() == described.fields().len()
                && schema
                    .fields()
                    .iter()
                    .zip(&names)
                    .zip(described.fields())
                    .all(|((a, n), b)| n == b.name() && a.data_type() == b.data_type());
            same.then(|| Direct::Lookup {
                table,
                columns,
                key,
                schema: described.clone(),
            })
        }
        _ => None,
    }
}

/// The columns a select list names (`*` for `all`), and the names they are given: a
/// list of plain column references, aliased or not.
fn projection(
    items: &[SelectItem],
    qualifier: Option<&str>,
    all: &[String],
) -> Option<(Vec<String>, Vec<String>)> {
    let mut columns = Vec::new();
    let mut names = Vec::new();
    for item in items {
        match item {
            SelectItem::UnnamedExpr(e) => {
                let c = column_ref(e, qualifier)?;
                names.push(c.clone());
                columns.push(c);
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                columns.push(column_ref(expr, qualifier)?);
                names.push(ident_name(alias));
            }
            SelectItem::Wildcard(opts)
                if opts.opt_exclude.is_none()
                    && opts.opt_except.is_none()
                    && opts.opt_replace.is_none()
                    && opts.opt_rename.is_none()
                    && opts.opt_ilike.is_none() =>
            {
                columns.extend_from_slice(all);
                names.extend_from_slice(all);
            }
            _ => return None,
        }
    }
    Some((columns, names))
}

/// The arguments and alias of `vector_search(...)` in FROM.
fn search_args(f: &TableFactor) -> Option<(&[FunctionArg], Option<String>)> {
    let TableFactor::Table {
        name,
        args: Some(args),
        alias,
        with_hints,
        version: None,
        partitions,
        ..
    } = f
    else {
        return None;
    };
    let [part] = name.0.as_slice() else {
        return None;
    };
    let is_search = part
        .as_ident()
        .is_some_and(|i| ident_name(i) == "vector_search");
    (is_search && with_hints.is_empty() && partitions.is_empty() && args.settings.is_none())
        .then_some(())?;
    let alias = match alias {
        Some(a) if !a.columns.is_empty() => return None,
        Some(a) => Some(ident_name(&a.name)),
        None => None,
    };
    Some((args.args.as_slice(), alias))
}

/// An unnamed argument's expression.
fn arg_expr(a: &FunctionArg) -> Option<&SqlExpr> {
    match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
        _ => None,
    }
}

/// `$n` or `$n::type`.
fn param_of(e: &SqlExpr) -> Option<usize> {
    match e {
        SqlExpr::Cast { expr, .. } => placeholder_index(expr),
        e => placeholder_index(e),
    }
}

/// Whether the index takes `column op value` whole and a row can be checked against
/// it exactly: integer columns, and equality on text.
fn direct_condition(ty: &ColumnType, op: CmpOp) -> bool {
    matches!(
        ty,
        ColumnType::SmallInt | ColumnType::Int | ColumnType::BigInt
    ) || (matches!(ty, ColumnType::Text) && op == CmpOp::Eq)
}

/// The conditions of a conjunction, each `column op value` (either way round).
fn conditions(
    e: &SqlExpr,
    def: &TableDef,
    qualifier: Option<&str>,
    out: &mut Vec<Cond>,
) -> Option<()> {
    let SqlExpr::BinaryOp { left, op, right } = e else {
        return match e {
            SqlExpr::Nested(inner) => conditions(inner, def, qualifier, out),
            _ => None,
        };
    };
    if *op == BinaryOperator::And {
        conditions(left, def, qualifier, out)?;
        return conditions(right, def, qualifier, out);
    }
    let op = match op {
        BinaryOperator::Eq => CmpOp::Eq,
        BinaryOperator::NotEq => CmpOp::NotEq,
        BinaryOperator::Lt => CmpOp::Lt,
        BinaryOperator::LtEq => CmpOp::LtEq,
        BinaryOperator::Gt => CmpOp::Gt,
        BinaryOperator::GtEq => CmpOp::GtEq,
        _ => return None,
    };
    let (column, op, value) = match (column_ref(left, qualifier), column_ref(right, qualifier)) {
        (Some(c), None) => (c, op, Slot::of(right)?),
        (None, Some(c)) => (c, op.flip(), Slot::of(left)?),
        _ => return None,
    };
    let i = def.column_index(&column)?;
    (!def.columns[i].ty.is_vector() && direct_condition(&def.columns[i].ty, op)).then_some(())?;
    out.push(Cond { column, op, value });
    Some(())
}

fn search(sel: &Select, core: &crate::engine::Core, described: &SchemaRef) -> Option<Direct> {
    let [from] = sel.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let (args, alias) = search_args(&from.relation)?;
    let [table, vector, k] = args else {
        return None;
    };
    let SqlExpr::Value(v) = arg_expr(table)? else {
        return None;
    };
    let SqlValue::SingleQuotedString(table) = &v.value else {
        return None;
    };
    let def = core.table(table).ok()?;
    // The three-argument form names no column: a table with one indexed vector column
    // only (the planner explains the rest).
    def.vector_column?;
    if def.vector_columns().nth(1).is_some() {
        return None;
    }
    // `distance` is the search's own column: a table with one of that name is left to
    // the planner.
    if def.column_index(DISTANCE).is_some() {
        return None;
    }
    let vector = param_of(arg_expr(vector)?)?;
    let k = Slot::of(arg_expr(k)?)?;
    let qualifier = alias.as_deref();
    let mut conds = Vec::new();
    if let Some(w) = &sel.selection {
        conditions(w, &def, qualifier, &mut conds)?;
    }
    // The vector is the search's only: a statement that reuses it is left to the planner.
    let mentions = |s: &Slot| *s == Slot::Param(vector);
    if mentions(&k) || conds.iter().any(|c| mentions(&c.value)) {
        return None;
    }
    let full = search_schema(&def);
    let all: Vec<String> = full
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != crate::store::ROW_ID)
        .collect();
    let (columns, names) = projection(&sel.projection, qualifier, &all)?;
    // The answer must be what Describe announced: the same names and types.
    let same = columns.len() == described.fields().len()
        && columns
            .iter()
            .zip(&names)
            .zip(described.fields())
            .all(|((c, n), f)| {
                full.field_with_name(c)
                    .is_ok_and(|t| t.data_type() == f.data_type() && n == f.name())
            });
    same.then(|| Direct::Search {
        table: table.clone(),
        vector,
        k,
        conds,
        columns,
        schema: described.clone(),
    })
}

/// The schema of `columns` of `def`, if it has them all.
fn lookup_schema(def: &TableDef, columns: &[String]) -> Option<SchemaRef> {
    let cols = columns
        .iter()
        .map(|c| def.column_index(c))
        .collect::<Option<Vec<usize>>>()?;
    table_schema(def).project(&cols).ok().map(Arc::new)
}

fn insert(ins: &Insert) -> Option<Direct> {
    let TableObject::TableName(name) = &ins.table else {
        return None;
    };
    // An ON CONFLICT clause is carried out as the general path does it; one that takes
    // a parameter needs the values bound into it, which only the general path does.
    let on_conflict = match &ins.on {
        None => None,
        Some(OnInsert::OnConflict(oc)) if !takes_parameters(oc) => Some(Box::new(oc.clone())),
        Some(_) => return None,
    };
    if ins.returning.is_some()
        || ins.overwrite
        || ins.partitioned.is_some()
        || !ins.after_columns.is_empty()
        || ins.or.is_some()
        || ins.table_alias.is_some()
    {
        return None;
    }
    let source = ins.source.as_ref()?;
    if source.with.is_some() || source.order_by.is_some() || source.limit_clause.is_some() {
        return None;
    }
    let SetExpr::Values(values) = source.body.as_ref() else {
        return None;
    };
    let rows = values
        .rows
        .iter()
        .map(|r| r.iter().map(Slot::of).collect::<Option<Vec<_>>>())
        .collect::<Option<Vec<_>>>()?;
    let width = rows.first()?.len();
    if rows.iter().any(|r| r.len() != width) {
        return None;
    }
    let columns = if ins.columns.is_empty() {
        None
    } else {
        Some(
            ins.columns
                .iter()
                .map(|c| c.0.last().and_then(|p| p.as_ident()).map(ident_name))
                .collect::<Option<Vec<_>>>()?,
        )
    };
    Some(Direct::Insert {
        table: table_name(name).ok()?,
        columns,
        rows,
        on_conflict,
    })
}

/// Whether a parameter (`$n`) appears anywhere in `node`.
fn takes_parameters(node: &impl datafusion::sql::sqlparser::ast::Visit) -> bool {
    datafusion::sql::sqlparser::ast::visit_expressions(node, |e| {
        if placeholder_index(e).is_some() {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
    .is_break()
}

fn update(up: &Update, core: &crate::engine::Core) -> Option<Direct> {
    if up.from.is_some() || up.returning.is_some() || !up.table.joins.is_empty() || up.or.is_some()
    {
        return None;
    }
    let (name, alias) = plain_table(&up.table.relation)?;
    let table = table_name(name).ok()?;
    let def = core.table(&table).ok()?;
    let qualifier = alias.unwrap_or_else(|| table.clone());
    let key = key_equality(up.selection.as_ref()?, &def, Some(&qualifier))?;
    let sets = up
        .assignments
        .iter()
        .map(|a| {
            let AssignmentTarget::ColumnName(c) = &a.target else {
                return None;
            };
            let [part] = c.0.as_slice() else {
                return None;
            };
            Some((ident_name(part.as_ident()?), Slot::of(&a.value)?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Direct::Update { table, sets, key })
}

impl Direct {
    /// Run the statement with its bound values; `None` hands it to the general path.
    pub async fn run(&self, session: &Session, values: &[Value]) -> Result<Option<Output>> {
        let core = &session.engine.core;
        match self {
            Direct::Params { params, schema } => {
                let mut columns = Vec::with_capacity(params.len());
                for (&p, field) in params.iter().zip(schema.fields()) {
                    let Some(v) = values.get(p - 1) else {
                        return Ok(None);
                    };
                    let Some(array) =
                        super::params::scalar(v, field.data_type()).and_then(|s| s.to_array().ok())
                    else {
                        return Ok(None);
                    };
                    columns.push(array);
                }
                let batch =
                    RecordBatch::try_new(schema.clone(), columns).map_err(Error::internal)?;
                Ok(Some(Output::batch(schema.clone(), batch)))
            }
            Direct::Lookup {
                table,
                columns,
                key,
                schema,
            } => {
                let Ok(def) = core.table(table) else {
                    return Ok(None);
                };
                let Some(cols) = columns
                    .iter()
                    .map(|c| def.column_index(c))
                    .collect::<Option<Vec<usize>>>()
                else {
                    return Ok(None);
                };
                let Some(key) = key_value(&def, key, values) else {
                    return Ok(None);
                };
                let found = match key {
                    Some(k) => session.get_rows(&def, &[vec![k]]).await?,
                    None => vec![],
                };
                let rows: Vec<_> = found.iter().flatten().collect();
                let batch = rows_to_batch(&def, schema, &cols, &rows)?;
                Ok(Some(Output::batch(schema.clone(), batch)))
            }
            Direct::Insert {
                table,
                columns,
                rows,
                on_conflict,
            } => {
                if session.read_only() {
                    return Ok(None);
                }
                let Ok(def) = core.table(table) else {
                    return Ok(None);
                };
                let target = on_conflict
                    .as_ref()
                    .map(|oc| super::statements::conflict_target(&def, oc))
                    .transpose()?;
                let targets: Vec<usize> = match columns {
                    None => def.visible(),
                    Some(cols) => match cols.iter().map(|c| def.column_index(c)).collect() {
                        Some(t) => t,
                        None => return Ok(None),
                    },
                };
                if rows.first().is_some_and(|r| r.len() > targets.len()) {
                    return Ok(None);
                }
                let width = rows.first().map_or(0, |r| r.len());
                super::statements::refuse_always_identity(&def, &targets[..width], false)?;
                let missing = (0..def.columns.len()).filter(|c| !targets[..width].contains(c));
                let defaults = Defaults::prepare(session, &def, missing, rows.len()).await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let Some(vals) = r.iter().map(|s| s.value(values)).collect() else {
                        return Ok(None);
                    };
                    out.push(check_row(&def, &targets, vals, &defaults)?);
                }
                let (out, mode) = match (on_conflict, target) {
                    (Some(oc), Some(target)) => (
                        super::statements::upsert_rows(
                            session, &def, None, &oc.action, target, out,
                        )
                        .await?,
                        WriteMode::Upsert,
                    ),
                    _ => (out, WriteMode::InsertNew),
                };
                let n = out.len();
                super::statements::write_rows(session, &def, out, mode).await?;
                Ok(Some(Output::Command(format!("INSERT 0 {n}"))))
            }
            Direct::Update { table, sets, key } => {
                if session.read_only() {
                    return Ok(None);
                }
                let Ok(def) = core.table(table) else {
                    return Ok(None);
                };
                let Some(targets) = sets
                    .iter()
                    .map(|(c, _)| def.column_index(c))
                    .collect::<Option<Vec<usize>>>()
                else {
                    return Ok(None);
                };
                // A key that changes is a delete and an insert, and an identity column
                // refuses the change: the general path's.
                if targets
                    .iter()
                    .any(|&t| def.primary_key.contains(&t) || def.columns[t].identity == Some('a'))
                {
                    return Ok(None);
                }
                let Some(key) = key_value(&def, key, values) else {
                    return Ok(None);
                };
                let Some(key) = key else {
                    return Ok(Some(Output::Command("UPDATE 0".into())));
                };
                // Locked before it is read: the row as the last writer left it.
                let key = vec![key];
                session
                    .lock_rows(&def, [key.as_slice()], session.rows_seen())
                    .await?;
                let Some(mut row) = session.get_rows(&def, &[key]).await?.pop().flatten() else {
                    return Ok(Some(Output::Command("UPDATE 0".into())));
                };
                for ((_, slot), &c) in sets.iter().zip(&targets) {
                    let Some(v) = slot.value(values) else {
                        return Ok(None);
                    };
                    row[c] = coerce_into(&def, c, v)?;
                }
                check_not_null(&def, &row)?;
                super::statements::write_rows(session, &def, vec![row], WriteMode::Upsert).await?;
                Ok(Some(Output::Command("UPDATE 1".into())))
            }
            Direct::Search {
                table,
                vector,
                k,
                conds,
                columns,
                schema,
            } => run_search(session, table, *vector, k, conds, columns, schema, values).await,
        }
    }
}

/// A direct search: the values bound, the filter built as the planner pushes it, the
/// rows checked against the conditions, and the search run as `VectorSearchExec` runs
/// it. Values the planner would convert or refuse differently go the general way.
#[allow(clippy::too_many_arguments)]
async fn run_search(
    session: &Session,
    table: &str,
    vector: usize,
    k: &Slot,
    conds: &[Cond],
    columns: &[String],
    schema: &SchemaRef,
    values: &[Value],
) -> Result<Option<Output>> {
    let core = &session.engine.core;
    let Ok(def) = core.table(table) else {
        return Ok(None);
    };
    let full = search_schema(&def);
    let Some(cols) = columns
        .iter()
        .map(|c| full.index_of(c).ok())
        .collect::<Option<Vec<usize>>>()
    else {
        return Ok(None);
    };
    let Some(vector_column) = def.vector_column else {
        return Ok(None);
    };
    if def.vector_columns().nth(1).is_some() {
        return Ok(None);
    }
    let query = match values.get(vector - 1) {
        Some(v) if !v.is_null() => match query_vector(v.clone(), def.dimension()) {
            Ok(q) => q,
            Err(_) => return Ok(None),
        },
        _ => return Ok(None),
    };
    let k = match k.value(values) {
        Some(Value::Int(k)) if k >= 1 && (k as u64) <= core.max_k as u64 => k as usize,
        _ => return Ok(None),
    };
    let mut checks = Vec::with_capacity(conds.len());
    let mut pushed = Vec::with_capacity(conds.len());
    for c in conds {
        let Some(i) = def.column_index(&c.column) else {
            return Ok(None);
        };
        let ty = &def.columns[i].ty;
        if !direct_condition(ty, c.op) {
            return Ok(None);
        }
        // A text column is compared with text only: the planner compares text with a
        // number as numbers, which this check does not.
        let scalar = match (ty, c.value.value(values)) {
            (ColumnType::Text, Some(Value::Text(t))) => Scalar::Text(t),
            (ColumnType::Text, _) => return Ok(None),
            (_, v) => match v.map(|v| coerce(v, ty)) {
                Some(Ok(Value::Int(x))) => Scalar::Int(x),
                _ => return Ok(None),
            },
        };
        let Some(p) = super::pushdown::compare(&def, &c.column, c.op, scalar.clone()) else {
            return Ok(None);
        };
        pushed.push(p);
        checks.push((i, c.op, scalar));
    }
    let pushed = match pushed.len() {
        0 => None,
        1 => pushed.pop(),
        _ => Some(Predicate::And(pushed)),
    };
    let settings = session.search_settings();
    let search = Search {
        def: def.clone(),
        vector: vector_column,
        distance: def.distance,
        shared: core.clone(),
        query,
        k,
        pushed,
        allowed: None,
        checks: Checks::Rows(Box::new(move |row| {
            checks
                .iter()
                .all(|(i, op, want)| holds(&row[*i], *op, want))
        })),
        row_scan: settings.row_scan,
        full_schema: full,
        params: settings.params(),
        notices: settings.notices,
        query_norm2: Default::default(),
        pending: session.pending(&def.name),
        joined_pending: None,
    };
    let batch = search.run().await?;
    let columns = cols.iter().map(|&c| batch.column(c).clone()).collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(Error::internal)?;
    Ok(Some(Output::batch(schema.clone(), batch)))
}

/// Whether a row's value satisfies `value op want` (NULL never does).
fn holds(value: &Value, op: CmpOp, want: &Scalar) -> bool {
    let ord = match (value, want) {
        (Value::Int(a), Scalar::Int(b)) => a.cmp(b),
        (Value::Text(a), Scalar::Text(b)) => a.as_str().cmp(b.as_str()),
        _ => return false,
    };
    match op {
        CmpOp::Eq => ord.is_eq(),
        CmpOp::NotEq => ord.is_ne(),
        CmpOp::Lt => ord.is_lt(),
        CmpOp::LtEq => ord.is_le(),
        CmpOp::Gt => ord.is_gt(),
        CmpOp::GtEq => ord.is_ge(),
    }
}

/// The key a lookup names: `Some(None)` for a NULL (no row), `None` when the value
/// does not convert to the key's type (the general path says how it fails).
fn key_value(def: &TableDef, key: &Slot, values: &[Value]) -> Option<Option<Value>> {
    let v = key.value(values)?;
    if v.is_null() {
        return Some(None);
    }
    let ty = &def.columns[def.primary_key[0]].ty;
    coerce(v, ty).ok().map(Some)
}
