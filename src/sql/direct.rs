//! Direct paths for the small prepared statements applications send most, where a
//! DataFusion plan per execution costs more than the work itself:
//!
//! - `SELECT $1::int, ...`: parameters and literals, no table;
//! - a key lookup, `SELECT col, ... | * FROM t WHERE pk = $n`;
//! - an `INSERT INTO t [(cols)] VALUES (...)` of parameters and literals;
//! - an `UPDATE t SET col = $n, ... WHERE pk = $m` of parameters and literals.
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
    AssignmentTarget, BinaryOperator, Expr as SqlExpr, GroupByExpr, Insert, ObjectName, SelectItem,
    SetExpr, Statement, TableFactor, TableObject, Update,
};

use super::params::placeholder_index;
use super::statements::{check_not_null, check_row, coerce_into, ident_name, table_name};
use super::tables::{rows_to_batch, table_schema};
use super::{Output, Session};
use crate::error::{Error, Result};
use crate::store::{TableDef, WriteMode};
use crate::types::{Value, coerce};

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
    /// `INSERT INTO table (columns) VALUES rows`.
    Insert {
        table: String,
        columns: Option<Vec<String>>,
        rows: Vec<Vec<Slot>>,
    },
    /// `UPDATE table SET sets WHERE pk = key`.
    Update {
        table: String,
        sets: Vec<(String, Slot)>,
        key: Slot,
    },
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
        [from] => {
            if !from.joins.is_empty() {
                return None;
            }
            let (name, alias) = plain_table(&from.relation)?;
            let table = table_name(name).ok()?;
            let def = core.table(&table).ok()?;
            let qualifier = alias.clone().unwrap_or_else(|| table.clone());
            let key = key_equality(sel.selection.as_ref()?, &def, Some(&qualifier))?;
            let mut columns = Vec::new();
            for item in &sel.projection {
                match item {
                    SelectItem::UnnamedExpr(e) => columns.push(column_ref(e, Some(&qualifier))?),
                    SelectItem::Wildcard(opts)
                        if opts.opt_exclude.is_none()
                            && opts.opt_except.is_none()
                            && opts.opt_replace.is_none()
                            && opts.opt_rename.is_none()
                            && opts.opt_ilike.is_none() =>
                    {
                        columns.extend(def.columns.iter().map(|c| c.name.clone()))
                    }
                    _ => return None,
                }
            }
            // The answer must be what Describe announced: the same names and types.
            let schema = lookup_schema(&def, &columns)?;
            let same = schema.fields().len() == described.fields().len()
                && schema
                    .fields()
                    .iter()
                    .zip(described.fields())
                    .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
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
    if ins.on.is_some()
        || ins.returning.is_some()
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
    })
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
                    Some(k) => core.rows.get(&def, &[vec![k]]).await?,
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
            } => {
                if session.read_only() {
                    return Ok(None);
                }
                let Ok(def) = core.table(table) else {
                    return Ok(None);
                };
                let targets: Vec<usize> = match columns {
                    None => (0..def.columns.len()).collect(),
                    Some(cols) => match cols.iter().map(|c| def.column_index(c)).collect() {
                        Some(t) => t,
                        None => return Ok(None),
                    },
                };
                if rows.first().is_some_and(|r| r.len() > targets.len()) {
                    return Ok(None);
                }
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    let Some(vals) = r.iter().map(|s| s.value(values)).collect() else {
                        return Ok(None);
                    };
                    out.push(check_row(&def, &targets, vals)?);
                }
                let n = out.len();
                super::statements::write_rows(session, &def, out, WriteMode::InsertNew).await?;
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
                // A key that changes is a delete and an insert: the general path's.
                if targets.iter().any(|t| def.primary_key.contains(t)) {
                    return Ok(None);
                }
                let Some(key) = key_value(&def, key, values) else {
                    return Ok(None);
                };
                let Some(key) = key else {
                    return Ok(Some(Output::Command("UPDATE 0".into())));
                };
                let Some(mut row) = core.rows.get(&def, &[vec![key]]).await?.pop().flatten() else {
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
        }
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
