//! Result column names as Postgres gives them (its `FigureColname`). Drivers and tools
//! read columns by these names, and psql prints them.
//!
//! An unnamed select-list item of the outer query is named after the function it calls
//! (`count`, not `count(*)`), the column it reads, what it casts (or, when that has no
//! name, the type it casts to: `1::int` is `int4`), `case`, `exists` or `array`; anything
//! else is `?column?`. Postgres lets names repeat (`SELECT 1, 2` has two `?column?`s);
//! DataFusion needs them unique, so a repeat is aliased with a hidden suffix that
//! [`wire_name`] takes off again before the name goes to the client.

use datafusion::sql::sqlparser::ast::{
    CastKind, DataType, Expr as SqlExpr, Ident, Query, SelectItem, SetExpr, Statement,
    UnaryOperator, Value,
};

use super::statements::ident_name;

/// Starts the suffix that keeps a repeated name unique inside DataFusion.
const REPEAT: char = '\u{1}';

/// How the compatibility parser renames a column a later wildcard repeats.
const COMPAT_ALIAS: &str = "__alias_";

/// A result column's name as the client sees it.
pub fn wire_name(name: &str) -> &str {
    name.split(REPEAT).next().unwrap_or(name)
}

/// Name the outer query's unnamed select-list items, and make repeats unique.
pub fn postgres_column_names(stmt: &mut Statement) {
    if let Statement::Query(q) = stmt {
        name_query(q);
    }
}

fn name_query(q: &mut Query) {
    let SetExpr::Select(sel) = q.body.as_mut() else {
        return;
    };
    let mut seen: Vec<String> = Vec::new();
    for item in sel.projection.iter_mut() {
        let (expr, name, aliased) = match item {
            // The compatibility parser renames a column a wildcard after it repeats
            // (`c.oid, c.*`, as DBeaver lists tables) `__alias_oid`; to the client it is
            // `oid`, as in Postgres.
            SelectItem::ExprWithAlias { alias, .. } if alias.value.starts_with(COMPAT_ALIAS) => {
                let name = alias.value[COMPAT_ALIAS.len()..].to_string();
                *alias = Ident::with_quote('"', format!("{name}{REPEAT}0"));
                continue;
            }
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(ident_name(alias)), true),
            SelectItem::UnnamedExpr(e) => {
                let name = figure(e).map(|(name, _)| name);
                (e, name, false)
            }
            // The names a wildcard brings are not known before planning.
            _ => continue,
        };
        let Some(name) = name else { continue };
        if int4_literal(expr) {
            *expr = SqlExpr::Cast {
                kind: CastKind::DoubleColon,
                expr: Box::new(expr.clone()),
                array: false,
                data_type: DataType::Int4(None),
                format: None,
            };
        }
        let repeats = seen.iter().filter(|n| **n == name).count();
        seen.push(name.clone());
        let alias = if repeats == 0 {
            // A plain column reference keeps DataFusion's own name (it may be
            // qualified and referred to by ORDER BY).
            if aliased
                || matches!(
                    expr,
                    SqlExpr::Identifier(_) | SqlExpr::CompoundIdentifier(_)
                )
            {
                continue;
            }
            name
        } else {
            format!("{name}{REPEAT}{repeats}")
        };
        *item = SelectItem::ExprWithAlias {
            expr: expr.clone(),
            alias: Ident::with_quote('"', alias),
        };
    }
}

/// An integer literal that fits `int4`, which Postgres types `int4` (DataFusion: int64).
/// Only a select-list item's own literal is retyped: that is where the client sees it.
fn int4_literal(e: &SqlExpr) -> bool {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<i32>().is_ok(),
            _ => false,
        },
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => int4_literal(expr),
        SqlExpr::Nested(inner) => int4_literal(inner),
        _ => false,
    }
}

/// The name Postgres gives an unnamed select-list item of this expression.
pub fn column_name(e: &SqlExpr) -> String {
    figure(e).map_or_else(|| "?column?".into(), |(name, _)| name)
}

/// An expression's column name and whether it is a real name (Postgres' strength: a
/// cast of something unnamed takes the type's name instead). `None` for a scalar
/// subquery whose column is a wildcard or a set operation's, which DataFusion names
/// itself.
fn figure(e: &SqlExpr) -> Option<(String, bool)> {
    Some(match e {
        SqlExpr::Identifier(i) => (ident_name(i), true),
        SqlExpr::CompoundIdentifier(p) => (p.last().map(ident_name)?, true),
        SqlExpr::Function(f) => (
            f.name.0.last().and_then(|p| p.as_ident()).map(ident_name)?,
            true,
        ),
        SqlExpr::Cast {
            expr, data_type, ..
        } => match figure(expr) {
            Some((name, true)) => (name, true),
            _ => (type_name(data_type), true),
        },
        SqlExpr::Nested(inner) => figure(inner)?,
        SqlExpr::CompoundFieldAccess { root, .. } => figure(root)?,
        SqlExpr::Case { .. } => ("case".into(), true),
        // The SQL-syntax functions, by the function Postgres runs.
        SqlExpr::Trim { .. } => ("btrim".into(), true),
        SqlExpr::Substring { .. } => ("substring".into(), true),
        SqlExpr::Position { .. } => ("position".into(), true),
        SqlExpr::Extract { .. } => ("extract".into(), true),
        SqlExpr::Ceil { .. } => ("ceil".into(), true),
        SqlExpr::Floor { .. } => ("floor".into(), true),
        SqlExpr::Overlay { .. } => ("overlay".into(), true),
        SqlExpr::Exists { .. } => ("exists".into(), true),
        SqlExpr::Array(_) => ("array".into(), true),
        // A scalar subquery: the name of its one column (`(SELECT count(*) ...)` is
        // `count`).
        SqlExpr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(sel) => match sel.projection.first()? {
                SelectItem::ExprWithAlias { alias, .. } => (ident_name(alias), true),
                SelectItem::UnnamedExpr(e) => figure(e)?,
                _ => return None,
            },
            _ => return None,
        },
        _ => ("?column?".into(), false),
    })
}

/// The name Postgres gives a type in a column name (`int` is `int4`, `real[]` is
/// `float4`).
fn type_name(t: &DataType) -> String {
    if let DataType::Array(def) = t {
        use datafusion::sql::sqlparser::ast::ArrayElemTypeDef;
        match def {
            ArrayElemTypeDef::AngleBracket(inner)
            | ArrayElemTypeDef::SquareBracket(inner, _)
            | ArrayElemTypeDef::Parenthesis(inner) => return type_name(inner),
            ArrayElemTypeDef::None => {}
        }
    }
    let printed = t.to_string().to_ascii_lowercase();
    let base = printed.split('(').next().unwrap_or(&printed).trim();
    match base {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "real" | "float4" => "float4",
        "double precision" | "float" | "float8" => "float8",
        "boolean" | "bool" => "bool",
        "character varying" | "varchar" => "varchar",
        "character" | "char" | "bpchar" => "bpchar",
        "decimal" | "numeric" => "numeric",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "time with time zone" | "timetz" => "timetz",
        "time" | "time without time zone" => "time",
        other => return other.rsplit('.').next().unwrap_or(other).to_string(),
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> String {
        let mut stmt = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .expect("parses")
        .remove(0);
        postgres_column_names(&mut stmt);
        stmt.to_string().replace(REPEAT, "#")
    }

    #[test]
    fn scalar_subqueries_are_named_by_their_column() {
        assert_eq!(
            names(
                "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), (SELECT x AS y FROM c)"
            ),
            "SELECT (SELECT count(*) FROM a) AS \"count\", (SELECT count(*) FROM b) AS \"count#1\", \
             (SELECT x AS y FROM c) AS \"y\""
        );
    }

    #[test]
    fn unnamed_items_are_named_as_postgres_names_them() {
        assert_eq!(
            names(
                "SELECT 1, count(*), x::text, 1::int, '{1}'::real[], CASE WHEN a THEN 1 END FROM t"
            ),
            "SELECT 1::INT4 AS \"?column?\", count(*) AS \"count\", x::TEXT AS \"x\", 1::INT AS \"int4\", \
             '{1}'::REAL[] AS \"float4\", CASE WHEN a THEN 1 END AS \"case\" FROM t"
        );
    }

    #[test]
    fn repeated_names_get_a_hidden_suffix() {
        assert_eq!(
            names("SELECT 1, 2, id, id, a AS x, b AS x, t.id FROM t"),
            "SELECT 1::INT4 AS \"?column?\", 2::INT4 AS \"?column?#1\", id, id AS \"id#1\", a AS x, \
             b AS \"x#1\", t.id AS \"id#2\" FROM t"
        );
        assert_eq!(wire_name("?column?\u{1}1"), "?column?");
        assert_eq!(wire_name("id"), "id");
    }
}
