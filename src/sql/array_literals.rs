//! Array literals written as text and cast (`'{1.5,NULL}'::float8[]`,
//! `'{"a b",c}'::text[]`, `'{2020-01-01 10:00:00+00}'::timestamptz[]`): each element
//! of Postgres' array text becomes a literal of the element type, so the cast is one
//! DataFusion can plan (`ARRAY[CAST('1.5' AS DOUBLE), NULL]::float8[]`), with quoting,
//! escapes and `NULL` read as Postgres reads them. Runs on the statement's text, before
//! the compatibility parser, whose own rule for these literals splits the text at every
//! comma and takes every element for a number.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    ArrayElemTypeDef, CastKind, DataType, Expr, Value, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// `sql` with its array text literals as `ARRAY[...]`, if it has any.
pub fn array_literals(sql: &str) -> Option<String> {
    if !sql.contains("'{") || !sql.contains("[]") {
        return None;
    }
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut changed = false;
    for s in &mut stmts {
        let _ = visit_expressions_mut(s, |e| {
            changed |= rewrite(e);
            ControlFlow::<()>::Continue(())
        });
    }
    if !changed {
        return None;
    }
    for s in &mut stmts {
        super::literals::printable(s);
    }
    Some(
        stmts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Rewrite one `'{...}'::type[]`; whether it was one.
fn rewrite(e: &mut Expr) -> bool {
    let Expr::Cast {
        kind: CastKind::DoubleColon | CastKind::Cast,
        expr,
        data_type: DataType::Array(ArrayElemTypeDef::SquareBracket(element, _)),
        ..
    } = e
    else {
        return false;
    };
    let Expr::Value(v) = expr.as_ref() else {
        return false;
    };
    let (Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text)) = &v.value else {
        return false;
    };
    // A multidimensional literal is not read here.
    let inner = text.trim_start().strip_prefix('{').unwrap_or_default();
    if matches!(**element, DataType::Array(_)) || inner.trim_start().starts_with('{') {
        return false;
    }
    let Ok(items) = crate::types::parse_pg_array(text) else {
        return false;
    };
    let text_elements = matches!(
        **element,
        DataType::Text | DataType::Varchar(_) | DataType::CharacterVarying(_) | DataType::String(_)
    );
    let elem = items
        .into_iter()
        .map(|item| match item {
            None => Expr::value(Value::Null),
            Some(s) if text_elements => Expr::value(Value::SingleQuotedString(s)),
            Some(s) => Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(Expr::value(Value::SingleQuotedString(s))),
                data_type: (**element).clone(),
                array: false,
                format: None,
            },
        })
        .collect();
    **expr = Expr::Array(datafusion::sql::sqlparser::ast::Array { elem, named: true });
    true
}

#[cfg(test)]
mod tests {
    use super::array_literals;

    #[test]
    fn elements_become_literals_of_the_element_type() {
        assert_eq!(
            array_literals("SELECT '{1.5, NULL,\"2\"}'::float8[]").as_deref(),
            Some("SELECT ARRAY[CAST('1.5' AS FLOAT8), NULL, CAST('2' AS FLOAT8)]::FLOAT8[]")
        );
        assert_eq!(
            array_literals(r#"SELECT '{"a b",c,"NULL",NULL}'::text[]"#).as_deref(),
            Some("SELECT ARRAY['a b', 'c', 'NULL', NULL]::TEXT[]")
        );
        assert_eq!(
            array_literals("SELECT CAST('{}' AS date[])").as_deref(),
            Some("SELECT CAST(ARRAY[] AS DATE[])")
        );
        assert_eq!(
            array_literals("INSERT INTO t VALUES ('{2020-01-01 10:00:00+00}'::timestamptz[])")
                .as_deref(),
            Some(
                "INSERT INTO t VALUES (ARRAY[CAST('2020-01-01 10:00:00+00' AS TIMESTAMPTZ)]::TIMESTAMPTZ[])"
            )
        );
    }

    #[test]
    fn other_statements_are_left_alone() {
        assert_eq!(array_literals("SELECT '{1,2}'"), None);
        assert_eq!(array_literals("SELECT '{{1,2},{3,4}}'::int[][]"), None);
        assert_eq!(array_literals("SELECT ARRAY[1]::int[]"), None);
        assert_eq!(array_literals("SELECT '{{1,2},{3,4}}'::int[]"), None);
    }
}
