//! Column defaults: what an INSERT or COPY stores in a column it leaves out (or gives
//! as `DEFAULT`). A table keeps each default as SQL text; a statement evaluates them
//! once before its rows are built: a constant or a stable function (`now()`,
//! `CURRENT_TIMESTAMP`, `current_user`) once for all its rows, as Postgres does within
//! a statement, and a volatile one (`gen_random_uuid()`, `random()`,
//! `clock_timestamp()`) once per row.

use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{Error, Result};
use crate::store::{Row, TableDef};
use crate::types::Value;

use super::Session;
use super::statements::{coerce_into, literal_value};

/// Functions whose value differs from row to row of one statement.
const VOLATILE: &[&str] = &[
    "gen_random_uuid",
    "uuid_generate_v4",
    "random",
    "clock_timestamp",
    "timeofday",
    "nextval",
];

/// The defaults a statement's rows take, evaluated for that statement.
#[derive(Debug, Default)]
pub(crate) struct Defaults {
    columns: Vec<(usize, Source)>,
}

#[derive(Debug)]
enum Source {
    /// One value for every row.
    Same(Value),
    /// A fresh value per row, handed out in order.
    Each(Vec<Value>, AtomicUsize),
    /// A random (version 4) uuid per row, made here.
    Uuid,
}

impl Defaults {
    /// The defaults of `columns` for a statement of up to `rows` rows. Columns without a
    /// default are left out (they stay NULL).
    pub(crate) async fn prepare(
        session: &Session,
        def: &TableDef,
        columns: impl IntoIterator<Item = usize>,
        rows: usize,
    ) -> Result<Defaults> {
        let mut out = Defaults::default();
        for c in columns {
            let Some(text) = &def.columns[c].default else {
                continue;
            };
            let expr = parse(text)?;
            let source = if is_random_uuid(&expr) {
                Source::Uuid
            } else if let Some(seq) = super::sequences::nextval_of(&expr) {
                let values = session.engine.core.nextvals(&seq, rows.max(1)).await?;
                session.sequence_values.note(&seq, &values);
                Source::Each(
                    values.into_iter().map(Value::Int).collect(),
                    AtomicUsize::new(0),
                )
            } else if volatile(&expr) {
                let values = evaluate(session, def, c, &expr, rows.max(1)).await?;
                Source::Each(values, AtomicUsize::new(0))
            } else {
                let mut values = evaluate(session, def, c, &expr, 1).await?;
                Source::Same(values.pop().unwrap_or(Value::Null))
            };
            out.columns.push((c, source));
        }
        Ok(out)
    }

    /// Put the defaults into `row` for the columns `given` does not name.
    pub(crate) fn fill(&self, row: &mut Row, given: &[usize]) -> Result<()> {
        for (c, source) in &self.columns {
            if given.contains(c) {
                continue;
            }
            row[*c] = match source {
                Source::Same(v) => v.clone(),
                Source::Uuid => Value::Uuid(uuid::Uuid::new_v4()),
                Source::Each(values, next) => values
                    .get(next.fetch_add(1, Ordering::Relaxed))
                    .cloned()
                    .ok_or_else(|| Error::internal("more rows than defaults were made for"))?,
            };
        }
        Ok(())
    }
}

/// A default's expression, parsed (42601 if it is not one).
pub(crate) fn parse(text: &str) -> Result<SqlExpr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Error::Syntax(format!("default expression {text}: {e}")))
}

/// Check a default as CREATE TABLE or ALTER TABLE gets it: it must evaluate to a value
/// of the column's type. Returns the text the catalog keeps.
pub(crate) async fn check(
    session: &Session,
    def: &TableDef,
    column: usize,
    expr: &SqlExpr,
) -> Result<String> {
    let text = display(expr, &def.columns[column].ty);
    let expr = parse(&text)?;
    if let Some(seq) = super::sequences::nextval_of(&expr) {
        // The sequence must exist; taking a value to check would use one up.
        session.engine.core.sequence(&seq).await?;
        // As a serial column's default reads (and Postgres prints it).
        return Ok(format!("nextval('{}'::regclass)", seq.replace('\'', "''")));
    } else if !is_random_uuid(&expr) {
        // A cast is evaluated as written (`'abc'::int` fails: a data exception), not
        // only as its column's type (types the query engine lacks, as jsonb, are not).
        if matches!(expr, SqlExpr::Cast { .. })
            && let Err(e) =
                super::statements::collect_values(session, &format!("SELECT {expr}")).await
            && e.sqlstate().starts_with("22")
        {
            return Err(e);
        }
        evaluate(session, def, column, &expr, 1).await?;
    }
    Ok(text)
}

/// A default as Postgres prints it (`\d`, `column_default`): a string literal with its
/// column's type (`'anon'::text`), a cast's type in lower case (`'{}'::jsonb`).
fn display(expr: &SqlExpr, ty: &crate::types::ColumnType) -> String {
    use datafusion::sql::sqlparser::ast::Value as SqlValue;
    match expr {
        SqlExpr::Value(v) if matches!(v.value, SqlValue::SingleQuotedString(_)) => {
            format!("{v}::{}", ty.sql_name())
        }
        SqlExpr::Cast {
            expr: inner,
            data_type,
            kind: datafusion::sql::sqlparser::ast::CastKind::DoubleColon,
            ..
        } if matches!(inner.as_ref(), SqlExpr::Value(_)) => {
            format!("{inner}::{}", data_type.to_string().to_ascii_lowercase())
        }
        other => other.to_string(),
    }
}

/// `rows` values of a default, coerced to its column's type.
async fn evaluate(
    session: &Session,
    def: &TableDef,
    column: usize,
    expr: &SqlExpr,
    rows: usize,
) -> Result<Vec<Value>> {
    let values = match literal_value(expr) {
        Some(v) => vec![v; rows],
        None => {
            let sql = if rows == 1 {
                format!("SELECT {expr}")
            } else {
                format!("SELECT {expr} FROM generate_series(1, {rows})")
            };
            let (found, _) = super::statements::collect_values(session, &sql).await?;
            found
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect()
        }
    };
    values
        .into_iter()
        .map(|v| coerce_into(def, column, v))
        .collect()
}

fn function_names(expr: &SqlExpr) -> Vec<String> {
    struct Names(Vec<String>);
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &SqlExpr) -> std::ops::ControlFlow<()> {
            if let SqlExpr::Function(f) = e {
                self.0.push(f.name.to_string().to_ascii_lowercase());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut names = Names(vec![]);
    let _ = expr.visit(&mut names);
    names.0
}

fn volatile(expr: &SqlExpr) -> bool {
    function_names(expr)
        .iter()
        .any(|n| VOLATILE.contains(&n.rsplit('.').next().unwrap_or_default()))
}

/// `gen_random_uuid()` (or `uuid_generate_v4()`): made without a query.
fn is_random_uuid(expr: &SqlExpr) -> bool {
    match expr {
        SqlExpr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            matches!(
                name.rsplit('.').next(),
                Some("gen_random_uuid" | "uuid_generate_v4")
            )
        }
        SqlExpr::Nested(expr) => is_random_uuid(expr),
        _ => false,
    }
}

/// The value `ALTER TABLE ... ADD COLUMN` gives the rows already stored: the column's
/// default evaluated once (NULL without one). A volatile default would need a value per
/// row, which is refused (0A000).
pub(crate) async fn for_stored_rows(
    session: &Session,
    def: &TableDef,
    column: usize,
) -> Result<Value> {
    let Some(text) = &def.columns[column].default else {
        return Ok(Value::Null);
    };
    let expr = parse(text)?;
    if is_random_uuid(&expr) || volatile(&expr) {
        return Err(Error::FeatureNotSupported(format!(
            "ADD COLUMN \"{}\" with a volatile default ({text}) is not supported: add the column without it, UPDATE the rows, then SET DEFAULT",
            def.columns[column].name
        )));
    }
    let mut values = evaluate(session, def, column, &expr, 1).await?;
    Ok(values.pop().unwrap_or(Value::Null))
}
