//! Data-modifying statements in `WITH` (`WITH moved AS (UPDATE ... RETURNING ...)
//! SELECT ... FROM moved`), and a WITH in front of an INSERT, UPDATE or DELETE. Each
//! data-modifying CTE runs once, in order, seeing the CTEs before it; what its RETURNING
//! gave becomes a `VALUES` CTE of the same name for everything after it; then the main
//! statement runs. Unlike Postgres, where every part sees the tables as they were before
//! the statement, a later part here sees the earlier parts' changes.

use std::sync::Arc;

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
    let ctes = with.map(|w| w.cte_tables.as_slice()).unwrap_or_default();
    for (i, cte) in ctes.iter().enumerate() {
        let Some(stmt) = dml(&cte.query.body) else {
            // A query a later data-modifying part reads runs once, as in Postgres (not
            // again for each part that names it), when its rows are few.
            if ctes[i + 1..].iter().any(|c| dml(&c.query.body).is_some())
                && let Some(rows) = materialized(session, &before, cte).await?
            {
                before.push(rows);
            } else {
                before.push(cte.to_string());
            }
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

/// At most this many rows of a query CTE are kept as values (more run again where named).
const MATERIALIZED_ROWS: usize = 1000;

/// A query CTE's rows as a `VALUES` CTE of the same name, run once with the CTEs
/// `before` in scope; `None` for more than [`MATERIALIZED_ROWS`].
async fn materialized(session: &Session, before: &[String], cte: &Cte) -> Result<Option<String>> {
    use futures::TryStreamExt;
    let name = quote_ident(&cte.alias.name.value);
    let mut with = before.to_vec();
    with.push(cte.to_string());
    let sql = format!("WITH {} SELECT * FROM {name}", with.join(", "));
    let stmt = session
        .engine
        .parse(&sql)?
        .pop()
        .ok_or_else(|| Error::internal("empty query"))?;
    let plan = session.plan(stmt).await?;
    let df = session.ctx.execute_logical_plan(plan).await?;
    let schema: datafusion::arrow::datatypes::SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches: Vec<datafusion::arrow::record_batch::RecordBatch> =
        df.execute_stream().await?.try_collect().await?;
    if batches.iter().map(|b| b.num_rows()).sum::<usize>() > MATERIALIZED_ROWS {
        return Ok(None);
    }
    let batch =
        datafusion::arrow::compute::concat_batches(&schema, &batches).map_err(Error::internal)?;
    let renamed = Cte {
        alias: datafusion::sql::sqlparser::ast::TableAlias {
            columns: vec![],
            ..cte.alias.clone()
        },
        ..cte.clone()
    };
    values_cte(&renamed, &schema, &batch).map(Some)
}

/// A data-modifying CTE's RETURNING rows as a CTE of the same name.
fn returned(cte: &Cte, out: Output) -> Result<String> {
    let name = quote_ident(&cte.alias.name.value);
    let Output::Written { schema, batch, .. } = out else {
        // No RETURNING: the CTE has no columns; naming it later is an error, as in
        // Postgres.
        return Ok(format!("{name} AS (SELECT 1 AS \"?column?\" WHERE FALSE)"));
    };
    values_cte(cte, &schema, &batch)
}

/// Rows as a `VALUES` CTE named as `cte` (its column list renaming them), each value
/// cast to its column's type so that the CTE's columns keep their types (jsonb,
/// timestamptz, a vector, ...).
fn values_cte(
    cte: &Cte,
    schema: &datafusion::arrow::datatypes::SchemaRef,
    batch: &datafusion::arrow::record_batch::RecordBatch,
) -> Result<String> {
    let name = quote_ident(&cte.alias.name.value);
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
    let types: Vec<Option<&str>> = schema.fields().iter().map(|f| cast_type(f)).collect();
    let mut rows = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        let values = batch
            .columns()
            .iter()
            .zip(&types)
            .map(|(c, ty)| {
                value_from_array(c, r).map(|v| {
                    let text = super::params::literal(&v);
                    match ty {
                        Some(t) => format!("CAST({text} AS {t})"),
                        None => text,
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        rows.push(format!("({})", values.join(", ")));
    }
    Ok(format!(
        "{name} ({}) AS (VALUES {})",
        columns.join(", "),
        rows.join(", ")
    ))
}

/// The SQL type a value of a column is cast to, to keep its type in a `VALUES` list.
pub(super) fn cast_type(f: &datafusion::arrow::datatypes::Field) -> Option<&'static str> {
    use crate::types::{HALFVEC, PG_TYPE_KEY, PG_UUID_KEY, PG_VECTOR_KEY, SPARSEVEC};
    let pg = f.metadata().get(PG_TYPE_KEY).map(String::as_str);
    Some(match crate::json::kind_of(f) {
        Some(crate::json::Kind::Jsonb) => "jsonb",
        Some(crate::json::Kind::Json) => "json",
        None if pg == Some(HALFVEC) => "halfvec",
        None if pg == Some(SPARSEVEC) => "sparsevec",
        None if f.metadata().contains_key(PG_VECTOR_KEY) => "vector",
        None if f.metadata().contains_key(PG_UUID_KEY) => "uuid",
        None => match f.data_type() {
            DataType::Boolean => "BOOLEAN",
            DataType::Int16 => "SMALLINT",
            DataType::Int32 => "INT",
            DataType::Int64 => "BIGINT",
            DataType::Float32 => "REAL",
            DataType::Float64 => "DOUBLE PRECISION",
            DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ",
            DataType::Timestamp(_, None) => "TIMESTAMP",
            DataType::Date32 => "DATE",
            _ => return None,
        },
    })
}

/// The SQL type of an empty RETURNING column.
pub(super) fn sql_type(t: &DataType) -> &'static str {
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
