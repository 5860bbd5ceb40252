//! Data-modifying statements in `WITH` (`WITH moved AS (UPDATE ... RETURNING ...)
//! SELECT ... FROM moved`), and a WITH in front of an INSERT, UPDATE or DELETE. Each
//! data-modifying CTE runs once, in order, seeing the CTEs before it; what its RETURNING
//! gave becomes a `VALUES` CTE of the same name for everything after it; then the main
//! statement runs. Unlike Postgres, where every part sees the tables as they were before
//! the statement, a later part here sees the earlier parts' changes.

use datafusion::arrow::datatypes::DataType;
use datafusion::sql::sqlparser::ast::{Cte, Query, SetExpr, Statement};

use super::statements::quote_ident;
use super::{Output, Session};
use crate::error::{Error, Result};
use crate::types::value_from_array;

/// The statement a CTE body or a query body runs, if it changes data.
fn dml(body: &SetExpr) -> Option<&Statement> {
    match body {
        SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) => Some(s),
        _ => None,
    }
}

/// Whether a query changes data: a data-modifying CTE, or a data-modifying body.
pub fn modifies(q: &Query) -> bool {
    dml(&q.body).is_some()
        || q.with
            .as_ref()
            .is_some_and(|w| w.cte_tables.iter().any(|c| dml(&c.query.body).is_some()))
}

/// Run a query that [`modifies`] data.
pub async fn run(session: &Session, q: &Query) -> Result<Output> {
    let with = q.with.as_ref();
    if with.is_some_and(|w| w.recursive) {
        return Err(Error::FeatureNotSupported(
            "WITH RECURSIVE with a data-modifying statement is not supported".into(),
        ));
    }
    let mut before: Vec<String> = Vec::new();
    for cte in with.map(|w| w.cte_tables.as_slice()).unwrap_or_default() {
        let Some(stmt) = dml(&cte.query.body) else {
            before.push(cte.to_string());
            continue;
        };
        let out = under(session, &before, stmt).await?;
        before.push(returned(cte, out)?);
    }
    let main = match dml(&q.body) {
        Some(stmt) => return under(session, &before, stmt).await,
        None => {
            let mut main = q.clone();
            main.with = None;
            main.to_string()
        }
    };
    let sql = if before.is_empty() {
        main
    } else {
        format!("WITH {} {main}", before.join(", "))
    };
    let stmt = session
        .engine
        .parse(&sql)?
        .pop()
        .ok_or_else(|| Error::internal("empty query"))?;
    session.execute(stmt).await
}

/// Run a data-modifying statement with the CTEs `before` in scope of the queries it
/// runs to find its rows.
async fn under(session: &Session, before: &[String], stmt: &Statement) -> Result<Output> {
    let prefix = (!before.is_empty()).then(|| format!("WITH {}", before.join(", ")));
    let previous = std::mem::replace(&mut *session.cte_prefix.lock(), prefix);
    let out = Box::pin(session.execute(stmt.clone())).await;
    *session.cte_prefix.lock() = previous;
    out
}

/// A data-modifying CTE's RETURNING rows as a CTE of the same name.
fn returned(cte: &Cte, out: Output) -> Result<String> {
    let name = quote_ident(&cte.alias.name.value);
    let Output::Written { schema, batch, .. } = out else {
        // No RETURNING: the CTE has no columns; naming it later is an error, as in
        // Postgres.
        return Ok(format!("{name} AS (SELECT 1 AS \"?column?\" WHERE FALSE)"));
    };
    let renamed: Vec<String> = cte
        .alias
        .columns
        .iter()
        .map(|c| c.name.value.clone())
        .collect();
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| quote_ident(renamed.get(i).unwrap_or(f.name())))
        .collect();
    if batch.num_rows() == 0 {
        let nulls: Vec<String> = schema
            .fields()
            .iter()
            .zip(&columns)
            .map(|(f, c)| format!("CAST(NULL AS {}) AS {c}", sql_type(f.data_type())))
            .collect();
        return Ok(format!(
            "{name} AS (SELECT {} WHERE FALSE)",
            nulls.join(", ")
        ));
    }
    let mut rows = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        let values = batch
            .columns()
            .iter()
            .map(|c| value_from_array(c, r).map(|v| super::params::literal(&v)))
            .collect::<Result<Vec<_>>>()?;
        rows.push(format!("({})", values.join(", ")));
    }
    Ok(format!(
        "{name} ({}) AS (VALUES {})",
        columns.join(", "),
        rows.join(", ")
    ))
}

/// The SQL type of an empty RETURNING column.
fn sql_type(t: &DataType) -> &'static str {
    match t {
        DataType::Boolean => "BOOLEAN",
        DataType::Int16 | DataType::Int32 => "INT",
        DataType::Int64 => "BIGINT",
        DataType::Float32 => "REAL",
        DataType::Float64 => "DOUBLE PRECISION",
        DataType::Timestamp(..) => "TIMESTAMP",
        DataType::Date32 => "DATE",
        _ => "TEXT",
    }
}

/// A query of the same result columns as one that [`modifies`] data, that changes
/// nothing: each data-modifying part replaced by a `SELECT` of its RETURNING items over
/// its tables `WHERE FALSE`. What Describe plans (the statement runs only at Execute).
pub fn stand_in(q: &Query) -> Option<Query> {
    let mut q = q.clone();
    if let Some(with) = q.with.as_mut() {
        for cte in &mut with.cte_tables {
            if let Some(stmt) = dml(&cte.query.body) {
                let sql = select_returning(stmt)?;
                *cte.query = parse_query(&sql)?;
            }
        }
    }
    if let Some(stmt) = dml(&q.body) {
        let inner = parse_query(&select_returning(stmt)?)?;
        q.body = inner.body;
    }
    Some(q)
}

fn parse_query(sql: &str) -> Option<Query> {
    let mut stmts = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        sql,
    )
    .ok()?;
    match stmts.pop()? {
        Statement::Query(q) => Some(*q),
        _ => None,
    }
}

/// `SELECT <RETURNING items> FROM <the statement's tables> WHERE <its WHERE> AND FALSE`.
fn select_returning(stmt: &Statement) -> Option<String> {
    use datafusion::sql::sqlparser::ast::{FromTable, TableObject, UpdateTableFromKind};
    let join = |items: &[String]| items.join(", ");
    let (returning, mut from, selection) = match stmt {
        Statement::Update(u) => {
            let mut from = vec![u.table.to_string()];
            if let Some(UpdateTableFromKind::AfterSet(t) | UpdateTableFromKind::BeforeSet(t)) =
                &u.from
            {
                from.extend(t.iter().map(|t| t.to_string()));
            }
            (u.returning.as_ref(), from, u.selection.as_ref())
        }
        Statement::Delete(d) => {
            let (FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t)) = &d.from;
            let mut from: Vec<String> = t.iter().map(|t| t.to_string()).collect();
            from.extend(d.using.iter().flatten().map(|t| t.to_string()));
            (d.returning.as_ref(), from, d.selection.as_ref())
        }
        Statement::Insert(i) => {
            let TableObject::TableName(name) = &i.table else {
                return None;
            };
            let mut table = name.to_string();
            if let Some(a) = &i.table_alias {
                table.push_str(&format!(" AS {}", a.alias));
            }
            (i.returning.as_ref(), vec![table], None)
        }
        _ => return None,
    };
    let Some(items) = returning else {
        return Some("SELECT 1 AS \"?column?\" WHERE FALSE".into());
    };
    let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    from.dedup();
    let filter = selection.map_or("FALSE".to_string(), |s| format!("({s}) AND FALSE"));
    Some(format!(
        "SELECT {} FROM {} WHERE {filter}",
        join(&items),
        join(&from)
    ))
}
