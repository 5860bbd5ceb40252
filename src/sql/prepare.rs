//! SQL-level prepared statements, kept per session as Postgres keeps them:
//! `PREPARE name [(type, ...)] AS statement`, `EXECUTE name [(argument, ...)]` and
//! `DEALLOCATE [PREPARE] name | ALL` (what psql users and `pg_dump` send).
//!
//! An `EXECUTE` runs the prepared statement with each `$n` replaced by its argument,
//! cast to the type `PREPARE` declared for it (as Postgres coerces it); an argument with
//! no declared type takes the type its place in the statement gives it.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{
    CastKind, DataType as SqlDataType, Expr as SqlExpr, Ident, ObjectName, Statement,
    visit_expressions_mut,
};
use parking_lot::Mutex;

use super::Session;
use super::params::placeholder_index;
use super::statements::ident_name;
use crate::error::{Error, Result};

/// A statement `PREPARE` named.
#[derive(Debug)]
pub(crate) struct Prepared {
    statement: Statement,
    types: Vec<SqlDataType>,
    /// How many arguments `EXECUTE` must give: the declared types, or the highest `$n`.
    params: usize,
}

/// A session's SQL-level prepared statements, by name.
#[derive(Debug, Default)]
pub(crate) struct PreparedStatements(Mutex<HashMap<String, Arc<Prepared>>>);

impl PreparedStatements {
    pub(crate) fn clear(&self) {
        self.0.lock().clear();
    }
}

/// Where the statement of `PREPARE name [(types)] AS statement` begins in `sql`, so that
/// it is read as any statement is (with every compatibility rewrite); `None` if `sql`
/// is not a PREPARE.
pub(crate) fn split(sql: &str) -> Option<usize> {
    let b = sql.as_bytes();
    let mut i = skip_space(b, 0);
    if !b.get(i..i + 7)?.eq_ignore_ascii_case(b"prepare") {
        return None;
    }
    i += 7;
    let start = skip_space(b, i);
    if start == i {
        return None;
    }
    i = start;
    // The name: an identifier, maybe quoted.
    if b.get(i) == Some(&b'"') {
        i += 1;
        while i < b.len() {
            if b[i] == b'"' {
                if b.get(i + 1) == Some(&b'"') {
                    i += 2;
                    continue;
                }
                break;
            }
            i += 1;
        }
        i += 1;
    } else {
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
            i += 1;
        }
    }
    i = skip_space(b, i);
    if b.get(i) == Some(&b'(') {
        let mut depth = 0usize;
        let mut quoted = false;
        while i < b.len() {
            match b[i] {
                b'"' => quoted = !quoted,
                b'(' if !quoted => depth += 1,
                b')' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i = skip_space(b, i);
    }
    if !b.get(i..i + 2)?.eq_ignore_ascii_case(b"as") {
        return None;
    }
    let after = i + 2;
    let body = skip_space(b, after);
    (body > after).then_some(body)
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// `PREPARE`: the statement is checked now, as Postgres analyses it (a table that does
/// not exist is 42P01 here, not at `EXECUTE`).
pub(crate) async fn prepare(
    session: &Session,
    name: &Ident,
    types: &[SqlDataType],
    statement: &Statement,
) -> Result<super::Output> {
    if !matches!(
        statement,
        Statement::Query(_) | Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
    ) {
        return Err(Error::Syntax(
            "PREPARE takes SELECT, VALUES, INSERT, UPDATE or DELETE".into(),
        ));
    }
    let key = ident_name(name);
    if session.sql_prepared.0.lock().contains_key(&key) {
        return Err(Error::Detailed {
            code: "42P05",
            message: format!("prepared statement \"{key}\" already exists"),
            detail: String::new(),
        });
    }
    let params = types.len().max(super::params::count_params(statement));
    // Checked with the declared types in place, as EXECUTE will run it.
    let typed = bind(statement, types, &vec![None; params]);
    super::params::describe(session, &typed).await?;
    let prepared = Prepared {
        statement: statement.clone(),
        types: types.to_vec(),
        params,
    };
    session
        .sql_prepared
        .0
        .lock()
        .insert(key, Arc::new(prepared));
    Ok(super::Output::Command("PREPARE".into()))
}

/// The statement `EXECUTE name (arguments)` runs: the prepared one, its `$n` replaced by
/// the arguments.
pub(crate) fn bound(
    session: &Session,
    name: &ObjectName,
    arguments: &[SqlExpr],
) -> Result<Statement> {
    let key = match name.0.as_slice() {
        [part] => part.as_ident().map(ident_name),
        _ => None,
    }
    .unwrap_or_else(|| name.to_string());
    let prepared = session
        .sql_prepared
        .0
        .lock()
        .get(&key)
        .cloned()
        .ok_or_else(|| undefined(&key))?;
    if arguments.len() != prepared.params {
        return Err(Error::Detailed {
            code: "42601",
            message: format!("wrong number of parameters for prepared statement \"{key}\""),
            detail: format!(
                "Expected {} parameters but got {}.",
                prepared.params,
                arguments.len()
            ),
        });
    }
    let arguments: Vec<Option<SqlExpr>> = arguments.iter().cloned().map(Some).collect();
    Ok(bind(&prepared.statement, &prepared.types, &arguments))
}

/// `statement` with each `$n` replaced by `arguments[n - 1]` (or left a placeholder where
/// it is `None`), cast to `types[n - 1]` where declared.
fn bind(statement: &Statement, types: &[SqlDataType], arguments: &[Option<SqlExpr>]) -> Statement {
    let mut out = statement.clone();
    let _ = visit_expressions_mut(&mut out, |e| {
        if let Some(i) = placeholder_index(e)
            && i >= 1
        {
            let value = match arguments.get(i - 1).cloned().flatten() {
                // A parameter of the EXECUTE itself stays bare, for its type to be
                // inferred from the cast (`$1::int`).
                Some(a) if placeholder_index(&a).is_some() => a,
                Some(a) => SqlExpr::Nested(Box::new(a)),
                None => e.clone(),
            };
            *e = match types.get(i - 1) {
                Some(t) => SqlExpr::Cast {
                    kind: CastKind::DoubleColon,
                    expr: Box::new(value),
                    data_type: t.clone(),
                    array: false,
                    format: None,
                },
                None => value,
            };
        }
        ControlFlow::<()>::Continue(())
    });
    out
}

/// `DEALLOCATE name` (or `ALL`). A name this session did not PREPARE may be a statement
/// the driver prepared over the protocol (psycopg deallocates those this way), which
/// is replaced when prepared again: it is let be.
pub(crate) fn deallocate(session: &Session, name: &Ident) -> super::Output {
    if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
        session.sql_prepared.clear();
        return super::Output::Command("DEALLOCATE ALL".into());
    }
    session.sql_prepared.0.lock().remove(&ident_name(name));
    super::Output::Command("DEALLOCATE".into())
}

fn undefined(name: &str) -> Error {
    Error::Detailed {
        code: "26000",
        message: format!("prepared statement \"{name}\" does not exist"),
        detail: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_prepared_statement_after_its_header() {
        let sql = "PREPARE q(pg_catalog.oid, int) AS\n\tSELECT $1, $2";
        assert_eq!(&sql[split(sql).expect("a prepare")..], "SELECT $1, $2");
        let sql = "  prepare \"Odd \"\"name\"\"\" as select 1";
        assert_eq!(&sql[split(sql).expect("a prepare")..], "select 1");
        let sql = "PREPARE p (text, \"my type\") AS INSERT INTO t VALUES ($1)";
        assert_eq!(
            &sql[split(sql).expect("a prepare")..],
            "INSERT INTO t VALUES ($1)"
        );
        assert_eq!(split("PREPARED x"), None);
        assert_eq!(split("SELECT 1"), None);
        assert_eq!(split("PREPARE TRANSACTION 'x'"), None);
    }

    #[test]
    fn binds_arguments_with_their_declared_types() {
        use datafusion::sql::sqlparser::{dialect::PostgreSqlDialect, parser::Parser};
        let parse = |sql: &str| {
            Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .expect("parse")
                .pop()
                .expect("one")
        };
        let Statement::Prepare {
            statement,
            data_types,
            ..
        } = parse("PREPARE q(int) AS SELECT a FROM t WHERE a = $1 AND b = $2")
        else {
            panic!("a prepare");
        };
        let Statement::Execute { parameters, .. } = parse("EXECUTE q('7', 'x' || 'y')") else {
            panic!("an execute");
        };
        let args: Vec<Option<SqlExpr>> = parameters.into_iter().map(Some).collect();
        assert_eq!(
            bind(&statement, &data_types, &args).to_string(),
            "SELECT a FROM t WHERE a = ('7')::INT AND b = ('x' || 'y')"
        );
        assert_eq!(
            bind(&statement, &data_types, &[None, None]).to_string(),
            "SELECT a FROM t WHERE a = $1::INT AND b = $2"
        );
    }
}
