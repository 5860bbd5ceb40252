//! String literals that survive being printed and parsed again.
//!
//! sqlparser prints a string value that holds two quotes in a row (`''`) or a quote
//! after a backslash as it is, taking them for escapes already written; parsed back,
//! such a value loses a quote (`'a''''b'`, the value `a''b`, comes back as `a'b`).
//! vectorgate prints statements and parses them again in several places (an `UPDATE`
//! run as a query, a correlated subquery's template, bound parameters), so every
//! statement leaving [`crate::sql::Engine::parse`] and every bound literal carries such
//! values as escape-string literals (`E'a\'\'b'`), which print exactly.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Value, VisitMut, visit_expressions_mut};

/// Make the string literals of a statement (or a query, an expression) print as
/// their values.
pub fn printable<V: VisitMut>(node: &mut V) {
    let _ = visit_expressions_mut(node, |e| {
        printable_expr(e);
        ControlFlow::<()>::Continue(())
    });
}

fn printable_expr(e: &mut Expr) {
    if let Expr::Value(v) = e
        && let Value::SingleQuotedString(s) = &v.value
        && misprints(s)
    {
        let s = s.clone();
        v.value = Value::EscapedStringLiteral(s);
    }
}

/// Whether sqlparser would print this value of a `'...'` literal wrongly.
fn misprints(s: &str) -> bool {
    s.contains("''") || s.contains("\\'")
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn round_trip(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .pop()
            .expect("a statement");
        printable(&mut stmt);
        let again = Parser::parse_sql(&PostgreSqlDialect {}, &stmt.to_string())
            .expect("parses")
            .pop()
            .expect("a statement");
        let mut value = None;
        let _ = datafusion::sql::sqlparser::ast::visit_expressions(&again, |e| {
            if let Expr::Value(v) = e
                && value.is_none()
            {
                value = v.value.clone().into_string();
            }
            ControlFlow::<()>::Continue(())
        });
        value.expect("a literal")
    }

    #[test]
    fn quotes_in_a_row_and_after_a_backslash_survive() {
        assert_eq!(round_trip("SELECT 'a''''b'"), "a''b");
        assert_eq!(round_trip("SELECT ''''''"), "''");
        assert_eq!(round_trip(r"SELECT 'C:\'''"), r"C:\'");
        assert_eq!(round_trip(r"SELECT 'a\b''c\n'"), r"a\b'c\n");
        assert_eq!(
            round_trip("UPDATE t SET v = 'it''''s' WHERE k = 'x'"),
            "it''s"
        );
    }

    #[test]
    fn other_literals_are_left_as_written() {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, "SELECT 'it''s', 'a\\b'")
            .expect("parses")
            .pop()
            .expect("a statement");
        printable(&mut stmt);
        assert_eq!(stmt.to_string(), "SELECT 'it''s', 'a\\b'");
    }
}
